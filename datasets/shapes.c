/* The shapes generator: 2 to 4 filled circles (class 1), axis-aligned rectangles (2)
 * and triangles (3) in random colours on a random background colour, apart from each
 * other (none covers another), then uniform noise of +-0.12 on every pixel
 * and channel; background is class 0. Colours carry no class information (each shape's
 * colour differs from the background by at least 0.3 on average over the channels), so
 * the model must learn the geometry. Sample i of a split is a function of
 * (seed, split, i, width, height) only. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "datasets/internal.h"

#define NOISE 0.12f

struct shape {
    uint32_t kind;
    float col[3];
    float cx, cy, r;          /* circle */
    float x0, y0, x1, y1;     /* rectangle; bounding box of all */
    float vx[3], vy[3];       /* triangle */
};

static bool inside(const struct shape *s, float px, float py)
{
    switch (s->kind) {
    case 1:
        return (px - s->cx) * (px - s->cx) + (py - s->cy) * (py - s->cy) <= s->r * s->r;
    case 2:
        return px >= s->x0 && px < s->x1 && py >= s->y0 && py < s->y1;
    default: {
        float d[3];
        for (int k = 0; k < 3; k++) {
            int j = (k + 1) % 3;
            d[k] = (s->vx[j] - s->vx[k]) * (py - s->vy[k]) - (s->vy[j] - s->vy[k]) * (px - s->vx[k]);
        }
        return (d[0] >= 0 && d[1] >= 0 && d[2] >= 0) || (d[0] <= 0 && d[1] <= 0 && d[2] <= 0);
    }
    }
}

static void make_shape(uint64_t *rng, float W, float H, const float *bg, struct shape *s)
{
    float m = W < H ? W : H;
    s->kind = 1 + vka_rng_below(rng, 3);
    for (int tries = 0; tries < 16; tries++) {
        float d = 0;
        for (int k = 0; k < 3; k++) {
            s->col[k] = vka_rng_float(rng);
            d += fabsf(s->col[k] - bg[k]);
        }
        if (d / 3 >= 0.3f)
            break;
    }
    if (s->kind == 1) {
        s->r = vka_rng_range(rng, 0.10f, 0.22f) * m;
        s->cx = vka_rng_range(rng, s->r, W - s->r);
        s->cy = vka_rng_range(rng, s->r, H - s->r);
        s->x0 = s->cx - s->r;
        s->x1 = s->cx + s->r;
        s->y0 = s->cy - s->r;
        s->y1 = s->cy + s->r;
    } else if (s->kind == 2) {
        float w = vka_rng_range(rng, 0.18f, 0.4f) * m, h = vka_rng_range(rng, 0.18f, 0.4f) * m;
        s->x0 = vka_rng_range(rng, 0, W - w);
        s->y0 = vka_rng_range(rng, 0, H - h);
        s->x1 = s->x0 + w;
        s->y1 = s->y0 + h;
    } else {
        float r = vka_rng_range(rng, 0.15f, 0.3f) * m;
        float cx = vka_rng_range(rng, r, W - r), cy = vka_rng_range(rng, r, H - r);
        float a = vka_rng_range(rng, 0, 6.2831853f);
        s->x0 = s->x1 = cx;
        s->y0 = s->y1 = cy;
        for (int k = 0; k < 3; k++) {
            float ak = a + (float)k * 2.0943951f + (k ? vka_rng_range(rng, -0.4f, 0.4f) : 0);
            s->vx[k] = cx + r * cosf(ak);
            s->vy[k] = cy + r * sinf(ak);
            s->x0 = fminf(s->x0, s->vx[k]);
            s->x1 = fmaxf(s->x1, s->vx[k]);
            s->y0 = fminf(s->y0, s->vy[k]);
            s->y1 = fmaxf(s->y1, s->vy[k]);
        }
    }
}

static uint8_t to_u8(float v)
{
    v = v < 0 ? 0 : v > 1 ? 1 : v;
    return (uint8_t)lrintf(v * 255.0f);
}

int vka_shapes_make(const struct vka_dataset *ds, uint32_t i, bool mask_only,
                    struct vka_sample *s, char *err)
{
    uint32_t W = ds->width, H = ds->height;
    /* the mask is drawn before the noise is, from the same draws: mask_only gives the
     * mask of the whole sample, without the image's colours and noise (at 1024x1024 the
     * class statistics of 2000 samples took 25 s with them, 3 s without) */
    float *col = NULL;
    if (!mask_only) {
        s->image = (struct vka_image){ W, H, 3, malloc((size_t)W * H * 3) };
        col = malloc((size_t)W * H * 3 * sizeof(float));
    }
    s->mask = (struct vka_image){ W, H, 1, calloc((size_t)W * H, 1) };
    if (!s->mask.data || (!mask_only && (!s->image.data || !col))) {
        free(col);
        vka_sample_free(s);
        vka_seterr(err, "%s#%u: out of memory", ds->name, i);
        return -ENOMEM;
    }
    uint64_t rng = vka_hash3(ds->seed, 0x5a9e5000u + ds->split, i);
    float bg[3];
    for (int k = 0; k < 3; k++)
        bg[k] = vka_rng_float(&rng);
    for (size_t p = 0; col && p < (size_t)W * H; p++)
        for (int k = 0; k < 3; k++)
            col[p * 3 + k] = bg[k];
    /* 2 to 4 shapes whose bounding boxes keep 2 pixels apart: every shape is whole, so
     * its class is decidable from its outline (a shape that finds no room is left out) */
    uint32_t n = 2 + vka_rng_below(&rng, 3), placed = 0;
    struct shape done[4];
    for (uint32_t j = 0; j < n; j++) {
        struct shape sh;
        bool free_spot = false;
        for (int tries = 0; tries < 20 && !free_spot; tries++) {
            make_shape(&rng, (float)W, (float)H, bg, &sh);
            free_spot = true;
            for (uint32_t k = 0; k < placed && free_spot; k++)
                free_spot = sh.x1 + 2 < done[k].x0 || done[k].x1 + 2 < sh.x0 ||
                            sh.y1 + 2 < done[k].y0 || done[k].y1 + 2 < sh.y0;
        }
        if (!free_spot)
            continue;
        done[placed++] = sh;
        int x0 = (int)fmaxf(0, floorf(sh.x0)), x1 = (int)fminf((float)W - 1, ceilf(sh.x1));
        int y0 = (int)fmaxf(0, floorf(sh.y0)), y1 = (int)fminf((float)H - 1, ceilf(sh.y1));
        for (int y = y0; y <= y1; y++)
            for (int x = x0; x <= x1; x++) {
                if (!inside(&sh, (float)x + 0.5f, (float)y + 0.5f))
                    continue;
                size_t p = (size_t)y * W + (size_t)x;
                s->mask.data[p] = (uint8_t)sh.kind;
                for (int k = 0; col && k < 3; k++)
                    col[p * 3 + k] = sh.col[k];
            }
    }
    for (size_t p = 0; col && p < (size_t)W * H * 3; p++)
        s->image.data[p] = to_u8(col[p] + vka_rng_range(&rng, -NOISE, NOISE));
    free(col);
    return 0;
}
