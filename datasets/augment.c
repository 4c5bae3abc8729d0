/* Augmentation and normalisation of one sample (conventions in dataset.h): the scale
 * and window are resampled in one separable pass that only computes the output window
 * (PIL's BILINEAR weights: a triangle filter whose support widens by the shrink factor,
 * normalised per output pixel, so scale 1 is an exact copy), masks by nearest
 * neighbour, then colour jitter and (v - mean) / std into planar floats.
 *
 * Draws, in this order from one splitmix64 stream seeded by vka_augment_seed: scale
 * (when jittered), window x, window y (when random_crop), flip (when flip),
 * brightness, contrast, saturation (each when non-zero). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/internal.h"

static const float imagenet_mean[3] = { 0.485f, 0.456f, 0.406f };
static const float imagenet_std[3] = { 0.229f, 0.224f, 0.225f };
static const float grey_mean = 0.449f, grey_std = 0.226f;

uint64_t vka_augment_seed(uint64_t seed, uint64_t epoch, uint64_t index)
{
    return vka_hash3(seed, epoch ^ 0xa0a0a0a0a0a0a0a0ull, index);
}

struct geometry {
    uint32_t sw, sh;   /* scaled image */
    uint32_t ow, oh;   /* output window */
    int64_t ox, oy;    /* window origin in the scaled image */
    bool flip;
};

static double scale_of(const struct vka_augment_params *a, uint64_t *rng, uint32_t w,
                       uint32_t h)
{
    double s = 1;
    if (a->fit == VKA_FIT_RESIZE && a->size)
        s = (double)a->size / (double)(w < h ? w : h);
    if (a->scale_max > 0)
        s *= (double)vka_rng_range(rng, a->scale_min, a->scale_max);
    return s;
}

static uint32_t scaled(uint32_t n, double s)
{
    double v = floor((double)n * s + 0.5);
    return v < 1 ? 1 : v > VKA_IMAGE_MAX_SIDE ? VKA_IMAGE_MAX_SIDE : (uint32_t)v;
}

static void geometry(const struct vka_augment_params *a, uint64_t *rng, uint32_t w,
                     uint32_t h, struct geometry *g)
{
    double s = scale_of(a, rng, w, h);
    g->sw = scaled(w, s);
    g->sh = scaled(h, s);
    if (a->fit == VKA_FIT_RESIZE && a->size && a->scale_max <= 0) {
        /* the shorter side is exactly S, whatever the rounding */
        if (w <= h)
            g->sw = a->size;
        if (h <= w)
            g->sh = a->size;
    }
    g->ow = a->size ? a->size : g->sw;
    g->oh = a->size ? a->size : g->sh;
    int64_t dx = (int64_t)g->sw - g->ow, dy = (int64_t)g->sh - g->oh;
    if (a->random_crop) {
        int64_t lo = dx < 0 ? dx : 0, span = dx < 0 ? -dx : dx;
        g->ox = lo + vka_rng_below(rng, (uint32_t)span + 1);
        lo = dy < 0 ? dy : 0;
        span = dy < 0 ? -dy : dy;
        g->oy = lo + vka_rng_below(rng, (uint32_t)span + 1);
    } else {
        g->ox = dx >= 0 ? dx / 2 : -((-dx + 1) / 2);
        g->oy = dy >= 0 ? dy / 2 : -((-dy + 1) / 2);
    }
    g->flip = a->flip && (vka_rng_next(rng) >> 63);
}

void vka_augment_size(const struct vka_augment_params *a, uint64_t rng, uint32_t w,
                      uint32_t h, uint32_t *ow, uint32_t *oh)
{
    struct geometry g;
    geometry(a, &rng, w, h, &g);
    *ow = g.ow;
    *oh = g.oh;
}

/* One axis of the resampling: output i reads n[i] source pixels from lo[i] with
 * weights wt[i * K ...]; n[i] = 0 where the window lies outside the image. */
struct taps {
    uint32_t K;
    int32_t *lo, *n;
    float *wt;
    int32_t *nearest;
};

static void taps_free(struct taps *t)
{
    free(t->lo);
    free(t->n);
    free(t->wt);
    free(t->nearest);
}

static int taps_make(struct taps *t, uint32_t in, uint32_t sc, uint32_t out, int64_t off,
                     bool flip)
{
    double scale = (double)in / sc, fscale = scale > 1 ? scale : 1, support = fscale;
    t->K = (uint32_t)ceil(support) * 2 + 1;
    t->lo = calloc(out, sizeof(int32_t));
    t->n = calloc(out, sizeof(int32_t));
    t->wt = calloc((size_t)out * t->K, sizeof(float));
    t->nearest = calloc(out, sizeof(int32_t));
    double *w = malloc(t->K * sizeof(double));
    if (!t->lo || !t->n || !t->wt || !t->nearest || !w) {
        free(w);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < out; i++) {
        int64_t xs = (int64_t)(flip ? out - 1 - i : i) + off;
        if (xs < 0 || xs >= (int64_t)sc)
            continue;
        double center = ((double)xs + 0.5) * scale;
        int64_t nr = (int64_t)floor(center);
        t->nearest[i] = (int32_t)(nr < (int64_t)in ? nr : (int64_t)in - 1);
        int64_t lo = (int64_t)(center - support + 0.5);
        int64_t hi = (int64_t)(center + support + 0.5);
        lo = lo < 0 ? 0 : lo;
        hi = hi > (int64_t)in ? (int64_t)in : hi;
        if (hi - lo > (int64_t)t->K)
            hi = lo + t->K;
        double sum = 0;
        uint32_t n = (uint32_t)(hi - lo);
        for (uint32_t k = 0; k < n; k++) {
            double d = fabs(((double)(lo + k) - center + 0.5) / fscale);
            w[k] = d < 1 ? 1 - d : 0;
            sum += w[k];
        }
        t->lo[i] = (int32_t)lo;
        t->n[i] = (int32_t)n;
        for (uint32_t k = 0; k < n; k++)
            t->wt[(size_t)i * t->K + k] = sum > 0 ? (float)(w[k] / sum) : 0;
    }
    free(w);
    return 0;
}

static float clamp01(float v)
{
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

static void jitter(const struct vka_augment_params *a, uint64_t *rng, uint32_t c,
                   float *x, size_t plane, const uint8_t *valid)
{
    if (a->brightness > 0) {
        float f = vka_rng_range(rng, 1 - a->brightness, 1 + a->brightness);
        for (size_t p = 0; p < plane * c; p++)
            x[p] = clamp01(x[p] * f);
    }
    if (a->contrast > 0) {
        float f = vka_rng_range(rng, 1 - a->contrast, 1 + a->contrast);
        double sum = 0;
        size_t nv = 0;
        for (size_t p = 0; p < plane; p++) {
            if (!valid[p])
                continue;
            sum += c == 3 ? 0.299 * x[p] + 0.587 * x[plane + p] + 0.114 * x[2 * plane + p]
                          : x[p];
            nv++;
        }
        float m = nv ? (float)(sum / (double)nv) : 0;
        for (size_t p = 0; p < plane * c; p++)
            x[p] = clamp01((x[p] - m) * f + m);
    }
    if (a->saturation > 0) {
        float f = vka_rng_range(rng, 1 - a->saturation, 1 + a->saturation);
        if (c == 3)
            for (size_t p = 0; p < plane; p++) {
                float g = 0.299f * x[p] + 0.587f * x[plane + p] + 0.114f * x[2 * plane + p];
                for (uint32_t k = 0; k < 3; k++)
                    x[k * plane + p] = clamp01(g + (x[k * plane + p] - g) * f);
            }
    }
}

static int check_params(const struct vka_augment_params *a, uint32_t c)
{
    if (a->size > VKA_IMAGE_MAX_SIDE) {
        vka_err("augment: size %u is more than %u", a->size, VKA_IMAGE_MAX_SIDE);
        return -EINVAL;
    }
    if (a->scale_max > 0 && !(a->scale_min > 0 && a->scale_min <= a->scale_max &&
                              a->scale_max <= 16)) {
        vka_err("augment: scale range [%g, %g]: need 0 < min <= max <= 16",
                (double)a->scale_min, (double)a->scale_max);
        return -EINVAL;
    }
    if (!(a->brightness >= 0 && a->brightness <= 1) || !(a->contrast >= 0 && a->contrast <= 1) ||
        !(a->saturation >= 0 && a->saturation <= 1)) {
        vka_err("augment: colour jitter (%g, %g, %g): each must be in [0, 1]",
                (double)a->brightness, (double)a->contrast, (double)a->saturation);
        return -EINVAL;
    }
    for (uint32_t k = 0; a->std && k < c; k++)
        if (!(a->std[k] > 0)) {
            vka_err("augment: std[%u] = %g must be positive", k, (double)a->std[k]);
            return -EINVAL;
        }
    return 0;
}

int vka_augment_check(const struct vka_augment_params *a, uint32_t c)
{
    return check_params(a, c);
}

int vka_augment(const struct vka_augment_params *a, uint64_t rng,
                const struct vka_image *img, const struct vka_image *mask,
                int32_t ignore_index, float *x, int32_t *y)
{
    uint32_t c = img->c, W = img->w, H = img->h;
    int ret = check_params(a, c);
    if (ret)
        return ret;
    if (c != 1 && c != 3) {
        vka_err("augment: images must have 1 or 3 channels, not %u", c);
        return -EINVAL;
    }
    if (mask && mask->data && (mask->w != W || mask->h != H)) {
        vka_err("augment: mask %ux%u, image %ux%u", mask->w, mask->h, W, H);
        return -EINVAL;
    }
    struct geometry g;
    geometry(a, &rng, W, H, &g);
    struct taps tx = { 0 }, ty = { 0 };
    size_t plane = (size_t)g.ow * g.oh;
    float *tmp = NULL;
    uint8_t *valid = malloc(plane ? plane : 1);
    ret = -ENOMEM;
    if (!valid || taps_make(&tx, W, g.sw, g.ow, g.ox, g.flip) ||
        taps_make(&ty, H, g.sh, g.oh, g.oy, false))
        goto done;
    int32_t r0 = INT32_MAX, r1 = -1;
    for (uint32_t j = 0; j < g.oh; j++)
        if (ty.n[j]) {
            r0 = ty.lo[j] < r0 ? ty.lo[j] : r0;
            r1 = ty.lo[j] + ty.n[j] - 1 > r1 ? ty.lo[j] + ty.n[j] - 1 : r1;
        }
    size_t rows = r1 >= r0 ? (size_t)(r1 - r0 + 1) : 0;
    tmp = malloc((rows ? rows : 1) * g.ow * c * sizeof(float));
    if (!tmp)
        goto done;
    /* horizontal pass over the source rows the window needs: tmp (rows, ow, c) */
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *src = img->data + ((size_t)r0 + r) * W * c;
        float *dst = tmp + r * g.ow * c;
        for (uint32_t i = 0; i < g.ow; i++) {
            const float *w = tx.wt + (size_t)i * tx.K;
            for (uint32_t k = 0; k < c; k++) {
                float s = 0;
                for (int32_t t = 0; t < tx.n[i]; t++)
                    s += w[t] * src[((size_t)tx.lo[i] + t) * c + k];
                dst[(size_t)i * c + k] = s;
            }
        }
    }
    /* vertical pass into x (c, oh, ow) in [0, 1] */
    for (uint32_t j = 0; j < g.oh; j++)
        for (uint32_t i = 0; i < g.ow; i++) {
            size_t p = (size_t)j * g.ow + i;
            valid[p] = ty.n[j] && tx.n[i];
            for (uint32_t k = 0; k < c; k++) {
                float s = 0;
                if (valid[p]) {
                    const float *w = ty.wt + (size_t)j * ty.K;
                    for (int32_t t = 0; t < ty.n[j]; t++)
                        s += w[t] * tmp[((size_t)(ty.lo[j] - r0 + t) * g.ow + i) * c + k];
                }
                x[k * plane + p] = clamp01(s * (1.0f / 255.0f));
            }
        }
    jitter(a, &rng, c, x, plane, valid);
    for (uint32_t k = 0; k < c; k++) {
        float m = a->mean ? a->mean[k] : c == 3 ? imagenet_mean[k] : grey_mean;
        float inv = 1.0f / (a->std ? a->std[k] : c == 3 ? imagenet_std[k] : grey_std);
        for (size_t p = 0; p < plane; p++)
            x[k * plane + p] = valid[p] ? (x[k * plane + p] - m) * inv : 0.0f;
    }
    if (y) {
        for (uint32_t j = 0; j < g.oh; j++)
            for (uint32_t i = 0; i < g.ow; i++) {
                size_t p = (size_t)j * g.ow + i;
                y[p] = valid[p] && mask && mask->data
                           ? mask->data[(size_t)ty.nearest[j] * W + (size_t)tx.nearest[i]]
                           : ignore_index;
            }
    }
    ret = 0;
done:
    if (ret == -ENOMEM)
        vka_err("augment: out of memory for a %ux%u window", g.ow, g.oh);
    taps_free(&tx);
    taps_free(&ty);
    free(tmp);
    free(valid);
    return ret;
}
