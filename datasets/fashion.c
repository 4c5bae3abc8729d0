/* The fashion generator: Fashion-MNIST garments (Debian's dataset-fashion-mnist, train
 * split for VKA_SPLIT_TRAIN, t10k for VAL) composited onto noisy canvases. Each sample
 * holds 2 or 3 garments: a group drawn uniformly (so the classes are balanced), then a
 * garment of that group, scaled to 35..60 % of the canvas (bilinear), tinted by a
 * random colour and placed anywhere inside; a garment pixel is one whose intensity
 * passes 0.15, and a later garment covers an earlier one. Background: a dark random
 * colour; noise +-0.08 over everything. Sample i is a function of (seed, split, i,
 * width, height) and the files. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/internal.h"

#define GARMENT_SIDE 28
#define THRESH 0.15f
#define NOISE 0.08f

uint32_t vka_fashion_group(uint32_t label, bool fine)
{
    /* 0 T-shirt, 1 trouser, 2 pullover, 3 dress, 4 coat, 5 sandal, 6 shirt, 7 sneaker,
     * 8 bag, 9 ankle boot */
    static const uint8_t coarse[10] = { 1, 1, 1, 1, 1, 2, 1, 2, 3, 2 };
    static const uint8_t finer[10] = { 1, 2, 1, 2, 1, 3, 1, 3, 4, 3 };
    return label < 10 ? (fine ? finer : coarse)[label] : 0;
}

int vka_fashion_open(struct vka_dataset *ds, const char *dir, char *err)
{
    const char *split = ds->split == VKA_SPLIT_VAL ? "t10k" : "train";
    char ipath[1024], lpath[1024];
    int ret;
    if (dir) {
        snprintf(ipath, sizeof(ipath), "%s/%s-images-idx3-ubyte.gz", dir, split);
        snprintf(lpath, sizeof(lpath), "%s/%s-labels-idx1-ubyte.gz", dir, split);
    } else if ((ret = vka_fashion_path_err(split, "images", ipath, sizeof(ipath), err)) ||
               (ret = vka_fashion_path_err(split, "labels", lpath, sizeof(lpath), err))) {
        return ret;
    }
    if ((ret = vka_idx_read_err(ipath, &ds->idx, err)) ||
        (ret = vka_idx_read_err(lpath, &ds->labels, err)))
        return ret;
    const struct vka_idx *x = &ds->idx, *l = &ds->labels;
    if (x->ndim != 3 || x->dims[1] != GARMENT_SIDE || x->dims[2] != GARMENT_SIDE) {
        vka_seterr(err, "%s: Fashion-MNIST images must be (N, 28, 28)", ipath);
        return -EINVAL;
    }
    if (l->ndim != 1 || l->dims[0] != x->dims[0]) {
        vka_seterr(err, "%s: %u labels for the %u images of %s", lpath,
                   l->ndim == 1 ? l->dims[0] : 0, x->dims[0], ipath);
        return -EINVAL;
    }
    ds->groups = ds->fine ? 4 : 3;
    ds->group_start = calloc(ds->groups + 2, sizeof(uint32_t));
    ds->group_items = malloc((size_t)x->dims[0] * sizeof(uint32_t));
    if (!ds->group_start || !ds->group_items) {
        vka_seterr(err, "%s: out of memory", ipath);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < x->dims[0]; i++) {
        if (l->data[i] > 9) {
            vka_seterr(err, "%s: label %u of item %u is not 0..9", lpath, l->data[i], i);
            return -EINVAL;
        }
        ds->group_start[vka_fashion_group(l->data[i], ds->fine) + 1]++;
    }
    for (uint32_t g = 1; g <= ds->groups + 1; g++)
        ds->group_start[g] += ds->group_start[g - 1];
    uint32_t *fill = calloc(ds->groups + 1, sizeof(uint32_t));
    if (!fill) {
        vka_seterr(err, "%s: out of memory", ipath);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < x->dims[0]; i++) {
        uint32_t g = vka_fashion_group(l->data[i], ds->fine);
        ds->group_items[ds->group_start[g] + fill[g]++] = i;
    }
    free(fill);
    for (uint32_t g = 1; g <= ds->groups; g++)
        if (ds->group_start[g] == ds->group_start[g + 1]) {
            vka_seterr(err, "%s: no garment of group %u", lpath, g);
            return -EINVAL;
        }
    ds->classes = ds->groups + 1;
    ds->channels = 3;
    return 0;
}

static float garment_at(const uint8_t *src, float sx, float sy)
{
    int x0 = (int)floorf(sx), y0 = (int)floorf(sy);
    float fx = sx - (float)x0, fy = sy - (float)y0, v = 0;
    for (int dy = 0; dy < 2; dy++)
        for (int dx = 0; dx < 2; dx++) {
            int x = x0 + dx, y = y0 + dy;
            if (x < 0 || y < 0 || x >= GARMENT_SIDE || y >= GARMENT_SIDE)
                continue;
            v += (dx ? fx : 1 - fx) * (dy ? fy : 1 - fy) * src[y * GARMENT_SIDE + x];
        }
    return v / 255.0f;
}

int vka_fashion_make(const struct vka_dataset *ds, uint32_t i, struct vka_sample *s,
                     char *err)
{
    uint32_t W = ds->width, H = ds->height;
    s->image = (struct vka_image){ W, H, 3, malloc((size_t)W * H * 3) };
    s->mask = (struct vka_image){ W, H, 1, calloc((size_t)W * H, 1) };
    float *col = malloc((size_t)W * H * 3 * sizeof(float));
    if (!s->image.data || !s->mask.data || !col) {
        free(col);
        vka_sample_free(s);
        vka_seterr(err, "%s#%u: out of memory", ds->name, i);
        return -ENOMEM;
    }
    uint64_t rng = vka_hash3(ds->seed, 0xfa5e0000u + ds->split, i);
    float bg[3];
    for (int k = 0; k < 3; k++)
        bg[k] = vka_rng_range(&rng, 0, 0.35f);
    for (size_t p = 0; p < (size_t)W * H; p++)
        for (int k = 0; k < 3; k++)
            col[p * 3 + k] = bg[k];
    float m = (float)(W < H ? W : H);
    uint32_t n = 2 + vka_rng_below(&rng, 2);
    for (uint32_t j = 0; j < n; j++) {
        uint32_t g = 1 + vka_rng_below(&rng, ds->groups);
        uint32_t lo = ds->group_start[g], cnt = ds->group_start[g + 1] - lo;
        uint32_t item = ds->group_items[lo + vka_rng_below(&rng, cnt)];
        const uint8_t *src = ds->idx.data + (size_t)item * GARMENT_SIDE * GARMENT_SIDE;
        uint32_t sz = (uint32_t)lrintf(vka_rng_range(&rng, 0.35f, 0.6f) * m);
        sz = sz < 8 ? 8 : sz;
        uint32_t x0 = sz < W ? vka_rng_below(&rng, W - sz + 1) : 0;
        uint32_t y0 = sz < H ? vka_rng_below(&rng, H - sz + 1) : 0;
        float tint[3];
        for (int k = 0; k < 3; k++)
            tint[k] = vka_rng_range(&rng, 0.5f, 1.0f);
        float sc = (float)GARMENT_SIDE / (float)sz;
        for (uint32_t y = y0; y < y0 + sz && y < H; y++)
            for (uint32_t x = x0; x < x0 + sz && x < W; x++) {
                float v = garment_at(src, ((float)(x - x0) + 0.5f) * sc - 0.5f,
                                     ((float)(y - y0) + 0.5f) * sc - 0.5f);
                if (v <= THRESH)
                    continue;
                size_t p = (size_t)y * W + x;
                s->mask.data[p] = (uint8_t)g;
                for (int k = 0; k < 3; k++)
                    col[p * 3 + k] = (0.25f + 0.75f * v) * tint[k];
            }
    }
    for (size_t p = 0; p < (size_t)W * H * 3; p++) {
        float v = col[p] + vka_rng_range(&rng, -NOISE, NOISE);
        v = v < 0 ? 0 : v > 1 ? 1 : v;
        s->image.data[p] = (uint8_t)lrintf(v * 255.0f);
    }
    free(col);
    return 0;
}
