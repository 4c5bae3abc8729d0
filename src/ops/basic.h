/* The first kernels, over FLAT tensors of any length (0 included): fill, scale, axpy and
 * a deterministic sum. Each records into a recorder; nothing runs until it is submitted.
 * Tensors longer than the profile's max_binding are split into chunks here. */
#ifndef VKA_OPS_BASIC_H
#define VKA_OPS_BASIC_H

#include "tensor.h"

/* y = value */
int vka_fill(struct vka_cmd *cmd, const struct vka_tensor *y, float value);
/* y = a * y */
int vka_scale(struct vka_cmd *cmd, const struct vka_tensor *y, float a);
/* y += a * x; x->off must be a multiple of 4 (inputs are read as vec4s) */
int vka_axpy(struct vka_cmd *cmd, float a, const struct vka_tensor *x,
             const struct vka_tensor *y);
/* out[0] = sum of x, by a fixed tree: the same bits on every run and for any chunking.
 * out is a one-element view; x->off must be a multiple of 4. */
int vka_sum(struct vka_cmd *cmd, const struct vka_tensor *x, const struct vka_tensor *out);

/* Elements one reduction pass folds into one partial (WG * 4 * ITEMS). */
uint64_t vka_sum_block(const struct vka_ctx *ctx);

#endif
