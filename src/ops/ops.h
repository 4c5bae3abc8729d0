/* The op library (layer 3): conventions shared by every op family and the op table.
 *
 * Layouts. Activations (x, y, dx, dy of every op but linear) are NHWC4 tensors: C
 * padded to a multiple of 4, padding channels zero on output. linear's x/y are NHWC4
 * with H = W = 1 (so (N, features)). Parameters (conv/linear weights, biases, gamma,
 * beta), running statistics, saved statistics and loss accumulators are FLAT f32
 * tensors; conv weights are VKA_LAYOUT_WEIGHT tensors, stored in the GEMM order the
 * kernels want (tensor.h, src/ops/conv.c), not PyTorch's, and converted at the checkpoint
 * boundary. Loss targets are FLAT i32 class
 * ids (N*H*W), or NHWC4 f32 for BCE/MSE/L1.
 *
 * Backward. Every backward recorder ADDS into every gradient it is given (dx, dw, db,
 * dgamma, ...), it never overwrites; a NULL gradient is not computed. The caller zeroes
 * gradient buffers once (activation gradients before a backward pass, parameter
 * gradients once per accumulation window). The one exception: a FRESH_DX op told
 * dx0_fresh writes dx[0] (the first gradient to reach an input; no zero fill needed).
 *
 * Determinism. Parameter gradients and loss accumulators are reduced per sample in a
 * fixed order (no float atomics) and the per-sample partials are added into the
 * accumulator in sample order, acc = ((acc + p_0) + p_1) + ..., so that a batch gives the
 * same bits however it is split into micro-batches.
 *
 * Shapes. Each op's shape rule checks its inputs and gives its output's logical shape;
 * a mismatch is -EINVAL with a message naming the op and the shapes. fwd and bwd check
 * the shapes of every tensor they get before recording anything, so no kernel is
 * dispatched with sizes that pass a buffer's end. */
#ifndef VKA_OPS_H
#define VKA_OPS_H

#include "tensor.h"

struct vka_conv_desc {
    uint32_t stride[2];  /* h, w */
    uint32_t pad[2];
    uint32_t out_pad[2]; /* conv_transpose2d only */
};

/* An activation a norm applies to its own output (vka_layer_norm_act): y = act(z), z the
 * normalised x, from the same pass; bwd masks dy where z > 0 (where relu/leaky_relu's bwd
 * finds y > 0) inside its own passes, computing z again from x, the saved statistics,
 * gamma and beta as fwd did, bit for bit: it reads no more than without an activation. */
enum vka_norm_act {
    VKA_NORM_ACT_NONE,
    VKA_NORM_ACT_RELU,
    VKA_NORM_ACT_LEAKY_RELU, /* slope in [0, 1] */
};

struct vka_norm_desc {
    uint32_t groups;     /* group_norm */
    float eps;           /* 1e-5 */
    float momentum;      /* batch_norm running statistics, 0.1 */
    bool training;       /* batch_norm: batch statistics and running update */
    enum vka_norm_act act;
    float slope;         /* VKA_NORM_ACT_LEAKY_RELU */
};

struct vka_pool_desc {
    uint32_t k, stride, pad; /* max_pool2d: 2, 2, 0 */
};

struct vka_resize_desc {
    uint32_t oh, ow;     /* output size */
};

struct vka_loss_desc {
    int32_t ignore_index; /* cross-entropy, dice: -100 in PyTorch, 255 for masks */
    float scale;          /* bwd: gradient factor (1 / the window's total count) */
    bool hinge_linear;    /* hinge: the generator's -s*x (WGAN's), not max(0, 1 - s*x) */
    float target;         /* bce_logits, hinge with x1 NULL: the target of every element */
};

union vka_op_params {
    struct vka_conv_desc conv;
    struct vka_norm_desc norm;
    struct vka_pool_desc pool;
    struct vka_resize_desc resize;
    struct vka_loss_desc loss;
    float slope;  /* leaky_relu */
    float alpha;  /* scale */
};

/* Which member of union vka_op_params an op reads (ops.def's params column). */
enum vka_op_params_kind {
    VKA_PARAMS_none,
    VKA_PARAMS_conv,
    VKA_PARAMS_norm,
    VKA_PARAMS_pool,
    VKA_PARAMS_resize,
    VKA_PARAMS_loss,
    VKA_PARAMS_slope,
    VKA_PARAMS_alpha,
};

/* What fwd writes into saved[i] for bwd (ops.def's saved columns); the shapes come from
 * vka_op_saved_shape. */
enum vka_op_saved {
    VKA_SAVED_NONE,
    VKA_SAVED_PER_C,  /* one per channel of x0 over the whole batch (batch_norm) */
    VKA_SAVED_PER_NG, /* p.norm.groups per sample (group_norm) */
    VKA_SAVED_LIKE_Y, /* one per element of y, per sample in y's (H, W, C) order */
};

/* ops.def's flags: what bwd reads besides the shapes of its tensors, and the kind of op */
enum {
    VKA_OP_R_X0 = 1 << 0,
    VKA_OP_R_X1 = 1 << 1,
    VKA_OP_R_X2 = 1 << 2,
    VKA_OP_R_Y = 1 << 3,
    VKA_OP_R_SAVED = 1 << 4,
    VKA_OP_R_STATE = 1 << 5,
    VKA_OP_R_DY = 1 << 6,
    VKA_OP_LOSS = 1 << 7,    /* y is a FLAT accumulator fwd adds into, not an activation */
    VKA_OP_RUNNING = 1 << 8, /* state0/1 are running statistics; p.norm.training selects */
    VKA_OP_SPLIT = 1 << 9,   /* bwd may run as two calls: dx[1], dx[2] (reads x0), then dx[0]
                                (does not read x0), so that x0 can go before dx[0] comes */
    VKA_OP_INPLACE_DX = 1 << 10, /* bwd may be given dx[0] == dy (x0 shaped as y): it then
                                    writes the gradient over dy, as += into a zeroed dx */
    VKA_OP_SAVED_ONLY = 1 << 11, /* fwd may be given y NULL: it writes saved[] only */
    VKA_OP_INPLACE_Y = 1 << 12,  /* fwd may be given y == x0: elementwise, y[i] from x0[i] */
    VKA_OP_FRESH_DX = 1 << 13,   /* bwd may be told dx[0] holds nothing yet (dx0_fresh): it
                                    then writes every element of it, the bits += into a
                                    zeroed dx[0] would give, so nobody zeroes it first */
};

/* What one op node records. Which slot holds what is listed per op in ops.def. */
struct vka_op_args {
    union vka_op_params p;
    const struct vka_tensor *x[3];     /* inputs */
    const struct vka_tensor *y;        /* output (losses: FLAT accumulator, += ) */
    const struct vka_tensor *saved[2]; /* written by fwd, read by bwd */
    const struct vka_tensor *state[2]; /* running statistics (batch_norm) */
    const struct vka_tensor *dy;       /* bwd: gradient of y (losses: NULL) */
    const struct vka_tensor *dx[3];    /* bwd: gradients of x[i], += ; NULL = not wanted */
    bool dx0_fresh;                    /* bwd of a FRESH_DX op: dx[0] is written, not += */
};

typedef int (*vka_op_shape_fn)(const struct vka_op_args *a, uint32_t shape[4]);
typedef int (*vka_op_rec_fn)(struct vka_cmd *cmd, const struct vka_op_args *a);

/* A row of ops.def. */
struct vka_op_info {
    const char *name;
    const char *family;
    vka_op_shape_fn shape;
    vka_op_rec_fn fwd;
    vka_op_rec_fn bwd;
    enum vka_op_params_kind params;
    enum vka_op_saved saved[2];
    unsigned flags; /* VKA_OP_R_*, LOSS, RUNNING, SPLIT, INPLACE_DX, SAVED_ONLY, INPLACE_Y,
                       FRESH_DX */
};

enum vka_op {
#define VKA_OP(name, ...) VKA_OP_##name,
#include "ops/ops.def"
#undef VKA_OP
    VKA_OP_COUNT
};

#define VKA_OP(name, ...)                                                               \
    int vka_##name##_shape(const struct vka_op_args *a, uint32_t shape[4]);             \
    int vka_##name##_fwd(struct vka_cmd *cmd, const struct vka_op_args *a);             \
    int vka_##name##_bwd(struct vka_cmd *cmd, const struct vka_op_args *a);
#include "ops/ops.def"
#undef VKA_OP

extern const struct vka_op_info vka_ops[VKA_OP_COUNT];

/* The shape of what op's fwd saves in saved[i] (table.c): a FLAT f32 tensor of
 * n*c*h*w values; per_sample: n is x0's N and a sample's c*h*w values are contiguous
 * (the graph keeps such a tensor per micro-batch), else n is fixed. a holds x0 (a shape
 * is enough) and the params, y is the shape rule's output. False when nothing is saved
 * there. */
struct vka_saved_shape {
    uint32_t n, c, h, w;
    bool per_sample;
};
bool vka_op_saved_shape(enum vka_op op, int i, const struct vka_op_args *a,
                        const uint32_t y[4], struct vka_saved_shape *s);

/* ---- helpers for op implementations (common.c) ----------------------------------- */

/* Checks that t exists, is f32 with the layout and logical shape given, and lies inside
 * its buffer; -EINVAL with "op: name is (..) LAYOUT, needs (..)" otherwise. A shape
 * entry of 0 matches any size. A tensor without a buffer is a bare shape (the graph's
 * shape inference): only its shape is checked. */
int vka_op_check(const char *op, const char *name, const struct vka_tensor *t,
                 enum vka_layout layout, uint32_t n, uint32_t c, uint32_t h, uint32_t w);
/* The same for a gradient or loss accumulator that the op adds into: f32, or VKA_EXACT
 * (--accumulate exact: the op converts each per-sample partial and adds it exactly). */
int vka_op_check_acc(const char *op, const char *name, const struct vka_tensor *t,
                     enum vka_layout layout, uint32_t n, uint32_t c, uint32_t h, uint32_t w);
int vka_op_check_i32(const char *op, const char *name, const struct vka_tensor *t,
                     uint64_t count);
/* t starts at a whole vec4 (an output that a kernel stores as vec4s); -EINVAL otherwise,
 * naming op and name. */
int vka_op_check_vec4(const char *op, const char *name, const struct vka_tensor *t);
/* "(N,C,H,W) nhwc4" for messages. */
void vka_op_shape_str(const struct vka_tensor *t, char *buf, size_t size);

/* Elements [first, first + count) of t bound for storage access (outputs, and inputs
 * that a kernel must read as floats): the binding starts at a 256-byte aligned offset
 * and *base is the index of element `first` in it. -EINVAL when the range passes the
 * profile's max_binding (the op must split its dispatch). */
int vka_op_bind_out(struct vka_ctx *ctx, const struct vka_tensor *t, uint64_t first,
                    uint64_t count, struct vka_binding *b, uint32_t *base);
/* The same for an input read through the profile's load path (LOAD4 in common.glsl),
 * *base4 counting vec4s: on the texel path the whole buffer is bound. t->off + first
 * must be a multiple of 4. */
int vka_op_bind_in(struct vka_ctx *ctx, const struct vka_tensor *t, uint64_t first,
                   uint64_t count, struct vka_binding *b, uint32_t *base4);

/* Elements [first, first + count) of a VKA_EXACT tensor bound for storage access as
 * uvec4s: *base is the index of element `first` in the binding. */
int vka_op_bind_exact(struct vka_ctx *ctx, const struct vka_tensor *t, uint64_t first,
                      uint64_t count, struct vka_binding *b, uint32_t *base);

/* The output tile side m (2 or 4) with which conv2d with a c -> k channel, r x s kernel,
 * d's stride and padding and an h x w input runs its forward (backward: its input and
 * weight gradients) as Winograd (src/ops/conv.c; where the profile's winograd is on:
 * forward and input gradient F(m x m, 3x3), weight gradient F(3x3, m x m)), or 0 where it
 * does not: 3x3, stride 1, padding at most 2, at least 64 channels on both sides and 256
 * input pixels; m = 4 for the backward from 4096 input pixels. */
uint32_t vka_conv2d_winograd_tile(const struct vka_conv_desc *d, uint32_t c, uint32_t k,
                                  uint32_t r, uint32_t s, uint32_t h, uint32_t w,
                                  bool backward);

/* A FLAT scratch tensor of `floats` elements (VKA_MEM_OTHER) owned by the recorder: freed
 * when it is destroyed or begun again, after its work. */
int vka_op_scratch(struct vka_cmd *cmd, uint64_t floats, struct vka_tensor *t);

#endif
