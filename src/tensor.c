/* Tensor views, their allocation, and the host-boundary layout conversions. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "tensor.h"

static uint32_t round4(uint32_t c)
{
    return (c + 3u) & ~3u;
}

uint64_t vka_tensor_numel(const struct vka_tensor *t)
{
    return (uint64_t)t->n * t->c * t->h * t->w;
}

uint64_t vka_tensor_stored(const struct vka_tensor *t)
{
    uint64_t n = t->layout == VKA_LAYOUT_WEIGHT ? round4(t->n) : t->n;
    return n * t->cs * t->h * t->w;
}

int vka_tensor_create(struct vka_ctx *ctx, const struct vka_tensor_params *p,
                      struct vka_tensor *t)
{
    memset(t, 0, sizeof(*t));
    if (p->dtype == VKA_F16 || (p->dtype == VKA_I32 && p->layout != VKA_LAYOUT_FLAT)) {
        vka_err("tensor (%u,%u,%u,%u): only f32 tensors and flat i32 tensors exist (f16 is "
                "reserved)", p->n, p->c, p->h, p->w);
        return -ENOTSUP;
    }
    t->dtype = p->dtype;
    t->layout = p->layout;
    t->n = p->n;
    t->c = p->c;
    t->h = p->h;
    t->w = p->w;
    t->cs = p->layout == VKA_LAYOUT_FLAT ? p->c : round4(p->c);
    if ((double)p->n * t->cs * p->h * p->w > (double)(1ull << 40)) {
        vka_err("tensor (%u,%u,%u,%u) is too large", p->n, p->c, p->h, p->w);
        return -EINVAL;
    }
    uint64_t stored = vka_tensor_stored(t);
    int ret = vka_buf_create(ctx, &(struct vka_buf_params){
        .size = stored * sizeof(float), .cat = p->cat }, &t->buf);
    if (ret < 0)
        return ret;
    t->owns_buf = true;
    return 0;
}

void vka_tensor_destroy(struct vka_tensor *t)
{
    if (t->owns_buf)
        vka_buf_destroy(&t->buf);
    memset(t, 0, sizeof(*t));
}

struct vka_tensor vka_tensor_flat(struct vka_buf *buf, uint64_t off, uint64_t count)
{
    return (struct vka_tensor){
        .buf = buf, .off = off, .dtype = VKA_F32, .layout = VKA_LAYOUT_FLAT,
        .n = (uint32_t)count, .c = 1, .h = 1, .w = 1, .cs = 1,
    };
}

void vka_nchw_to_nhwc4(const float *src, float *dst, uint32_t n, uint32_t c, uint32_t h,
                       uint32_t w)
{
    uint32_t cs = round4(c);
    for (uint32_t in = 0; in < n; in++)
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t x = 0; x < w; x++) {
                float *d = dst + (((size_t)in * h + y) * w + x) * cs;
                for (uint32_t ic = 0; ic < cs; ic++)
                    d[ic] = ic < c ? src[(((size_t)in * c + ic) * h + y) * w + x] : 0.0f;
            }
}

void vka_nhwc4_to_nchw(const float *src, float *dst, uint32_t n, uint32_t c, uint32_t h,
                       uint32_t w)
{
    uint32_t cs = round4(c);
    for (uint32_t in = 0; in < n; in++)
        for (uint32_t ic = 0; ic < c; ic++)
            for (uint32_t y = 0; y < h; y++)
                for (uint32_t x = 0; x < w; x++)
                    dst[(((size_t)in * c + ic) * h + y) * w + x] =
                        src[(((size_t)in * h + y) * w + x) * cs + ic];
}

void vka_nchw_to_weight(const float *src, float *dst, uint32_t n, uint32_t c, uint32_t h,
                        uint32_t w)
{
    uint32_t cs = round4(c), ns = round4(n);
    for (uint32_t r = 0; r < h; r++)
        for (uint32_t s = 0; s < w; s++)
            for (uint32_t ic = 0; ic < cs; ic++)
                for (uint32_t in = 0; in < ns; in++)
                    dst[(((size_t)r * w + s) * cs + ic) * ns + in] =
                        ic < c && in < n ? src[(((size_t)in * c + ic) * h + r) * w + s] : 0.0f;
}

void vka_weight_to_nchw(const float *src, float *dst, uint32_t n, uint32_t c, uint32_t h,
                        uint32_t w)
{
    uint32_t cs = round4(c), ns = round4(n);
    for (uint32_t in = 0; in < n; in++)
        for (uint32_t ic = 0; ic < c; ic++)
            for (uint32_t r = 0; r < h; r++)
                for (uint32_t s = 0; s < w; s++)
                    dst[(((size_t)in * c + ic) * h + r) * w + s] =
                        src[(((size_t)r * w + s) * cs + ic) * ns + in];
}

static int transfer(const struct vka_tensor *t, float *nchw, bool up)
{
    uint64_t stored = vka_tensor_stored(t);
    size_t bytes = (size_t)stored * sizeof(float); /* i32 elements are 4 bytes too */
    VkDeviceSize off = t->off * sizeof(float);
    if (t->layout == VKA_LAYOUT_FLAT)
        return up ? vka_buf_upload(t->buf, off, nchw, bytes)
                  : vka_buf_download(t->buf, off, nchw, bytes);
    float *tmp = malloc(bytes ? bytes : 1);
    if (!tmp)
        return -ENOMEM;
    int ret;
    bool weight = t->layout == VKA_LAYOUT_WEIGHT;
    if (up) {
        (weight ? vka_nchw_to_weight : vka_nchw_to_nhwc4)(nchw, tmp, t->n, t->c, t->h, t->w);
        ret = vka_buf_upload(t->buf, off, tmp, bytes);
    } else {
        ret = vka_buf_download(t->buf, off, tmp, bytes);
        if (ret == 0)
            (weight ? vka_weight_to_nchw : vka_nhwc4_to_nchw)(tmp, nchw, t->n, t->c, t->h, t->w);
    }
    free(tmp);
    return ret;
}

int vka_tensor_upload(const struct vka_tensor *t, const void *nchw)
{
    return transfer(t, (float *)nchw, true);
}

int vka_tensor_download(const struct vka_tensor *t, void *nchw)
{
    return transfer(t, nchw, false);
}
