/* Tensors (layer 2): a view of a device buffer with a dtype, a logical shape N, C, H, W
 * and a memory layout. Activations are NHWC with C padded to a multiple of 4 (the conv
 * GEMM's K = (kh, kw, C) is then contiguous in vec4s); parameters, gradients and other
 * flat data use the FLAT layout, which stores N*C*H*W elements in NCHW order. Host data
 * is always NCHW; the conversion happens here, at the boundary, and nowhere else.
 *
 * A tensor does not own its buffer unless made by vka_tensor_create. */
#ifndef VKA_TENSOR_H
#define VKA_TENSOR_H

#include "vk/vk.h"

enum vka_dtype {
    VKA_F32,
    VKA_F16, /* reserved for 16-bit storage; no op reads or writes it yet */
    VKA_I32, /* class ids (loss targets), FLAT only */
    VKA_EXACT, /* an exact accumulator element (exact.h): 16 bytes, four 32-bit words;
                  off counts elements; only the graph's views of its exact buffer */
};

enum vka_layout {
    VKA_LAYOUT_FLAT,   /* N*C*H*W elements in NCHW order */
    VKA_LAYOUT_NHWC4,  /* N*H*W*round_up(C, 4) elements, padding channels zero */
    VKA_LAYOUT_WEIGHT, /* a conv/linear weight of PyTorch shape (N, C, H, W) = OIHW for
                          conv2d and linear, IOHW for conv_transpose2d, stored as
                          [H][W][round_up(C, 4)][round_up(N, 4)] (N contiguous in vec4s),
                          padding zero: the GEMM order of src/ops/conv.c */
};

struct vka_tensor {
    struct vka_buf *buf;
    uint64_t off;   /* elements from the start of buf */
    enum vka_dtype dtype;
    enum vka_layout layout;
    uint32_t n, c, h, w;
    uint32_t cs;    /* stored channels: c, or c rounded up to 4 for NHWC4 and WEIGHT */
    bool owns_buf;
};

struct vka_tensor_params {
    uint32_t n, c, h, w;
    enum vka_layout layout;
    enum vka_dtype dtype;
    enum vka_mem_cat cat;
};

int vka_tensor_create(struct vka_ctx *ctx, const struct vka_tensor_params *params,
                      struct vka_tensor *t);
void vka_tensor_destroy(struct vka_tensor *t);

/* A FLAT view of count elements of buf starting at element off. */
struct vka_tensor vka_tensor_flat(struct vka_buf *buf, uint64_t off, uint64_t count);

uint64_t vka_tensor_numel(const struct vka_tensor *t);  /* N*C*H*W */
uint64_t vka_tensor_stored(const struct vka_tensor *t); /* elements in memory */

/* Host NCHW data in and out (float, or int32 for VKA_I32); they convert to and from the
 * tensor's layout. */
int vka_tensor_upload(const struct vka_tensor *t, const void *nchw);
int vka_tensor_download(const struct vka_tensor *t, void *nchw);

/* The layout conversions themselves (host side); the weight ones take PyTorch's order. */
void vka_nchw_to_weight(const float *src, float *dst, uint32_t n, uint32_t c, uint32_t h,
                        uint32_t w);
void vka_weight_to_nchw(const float *src, float *dst, uint32_t n, uint32_t c, uint32_t h,
                        uint32_t w);
void vka_nchw_to_nhwc4(const float *src, float *dst, uint32_t n, uint32_t c, uint32_t h,
                       uint32_t w);
void vka_nhwc4_to_nchw(const float *src, float *dst, uint32_t n, uint32_t c, uint32_t h,
                       uint32_t w);

#endif
