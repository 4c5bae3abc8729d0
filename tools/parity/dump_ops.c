/* vkaccum-parity-dump: runs every op of src/ops/ops.def forward and backward on one
 * Vulkan device, through the op table, on random inputs of one or two representative
 * shapes per op, and writes one safetensors file per case into OUTDIR for
 * tools/parity/ops.py, which redoes each case in PyTorch.
 *
 * A file holds the slots of struct vka_op_args under their ops.def names, in PyTorch's
 * layouts (NCHW activations, OIHW conv2d and IOHW conv_transpose2d weights, rank-1
 * vectors; linear's x, y and weight as (N, in), (N, out), (out, in)), f32 except the
 * i32 class-id targets (N, H, W):
 *   inputs   x0 x1 x2, state0_in state1_in (running statistics before fwd), dy
 *   outputs  y, saved0 saved1, state0 state1 (after fwd), dx0 dx1 dx2
 * max_pool2d's saved0 (argmax) is reordered from the kernel's (N,P,Q,C) to NCHW.
 * Gradients start at zero, so dx* is vkaccum's gradient itself. Losses accumulate into
 * a zeroed y and run bwd with p.loss.scale = 1 (no dy); dice bwd gets dy =
 * [dL/dinter, dL/dcard] from vka_dice_loss (smooth 1, dloss 1) on fwd's y, stored as dy
 * beside that loss (F64, "loss"). Metadata: op, case, seed, device and every parameter
 * of the op (stride_h, pad_w, eps, groups, ignore_index, ...) as decimal strings.
 *
 * Usage: vkaccum-parity-dump [--device SEL] [--seed N] OUTDIR */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "ops/loss.h"
#include "ops/ops.h"
#include "safetensors.h"

#define MAX_META 24

enum kind { K_NONE, K_ACT, K_WEIGHT, K_FLAT, K_I32 };

struct slot {
    enum kind kind;
    uint32_t d[4];      /* logical (N, C, H, W); FLAT and I32: (count, 1, 1, 1) */
    uint32_t rank;      /* the file's shape */
    uint64_t shape[4];
    float lo, hi;       /* range of random inputs */
    bool grad;          /* an x slot whose gradient bwd computes */
    void *host;         /* NCHW floats, or int32 targets */
    struct vka_tensor t;
};

struct job {
    const char *name;
    enum vka_op op;
    union vka_op_params p;
    struct slot x[3], saved[2], state[2], y, dy, dx[3];
    float *state_in[2];
    bool loss, dice, linear, argmax;
    double dice_loss;
    uint32_t n_meta;
    struct vka_st_meta meta[MAX_META];
    char meta_buf[MAX_META][2][64];
};

static uint64_t rng_state;

static uint64_t rng_u64(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static float rng_uniform(float lo, float hi)
{
    return lo + (hi - lo) * (float)((rng_u64() >> 40) * (1.0 / (1ull << 24)));
}

static void meta_add(struct job *j, const char *key, const char *fmt, ...) VKA_PRINTF(3, 4);

static void meta_add(struct job *j, const char *key, const char *fmt, ...)
{
    if (j->n_meta == MAX_META)
        return;
    char (*kv)[64] = j->meta_buf[j->n_meta];
    snprintf(kv[0], sizeof(kv[0]), "%s", key);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(kv[1], sizeof(kv[1]), fmt, ap);
    va_end(ap);
    j->meta[j->n_meta++] = (struct vka_st_meta){ .key = kv[0], .value = kv[1] };
}

static uint64_t numel(const struct slot *s)
{
    return (uint64_t)s->d[0] * s->d[1] * s->d[2] * s->d[3];
}

/* ---- slot shapes ------------------------------------------------------------------- */

static void set4(struct slot *s, enum kind kind, uint32_t n, uint32_t c, uint32_t h,
                 uint32_t w)
{
    s->kind = kind;
    s->d[0] = n, s->d[1] = c, s->d[2] = h, s->d[3] = w;
    s->rank = 4;
    for (int i = 0; i < 4; i++)
        s->shape[i] = s->d[i];
}

static void act(struct slot *s, uint32_t n, uint32_t c, uint32_t h, uint32_t w, float lo,
                float hi)
{
    set4(s, K_ACT, n, c, h, w);
    s->lo = lo, s->hi = hi, s->grad = true;
}

static void weight(struct slot *s, uint32_t n, uint32_t c, uint32_t h, uint32_t w)
{
    set4(s, K_WEIGHT, n, c, h, w);
    s->lo = -1, s->hi = 1, s->grad = true;
}

static void vec(struct slot *s, uint32_t count, float lo, float hi, bool grad)
{
    set4(s, K_FLAT, count, 1, 1, 1);
    s->rank = 1;
    s->lo = lo, s->hi = hi, s->grad = grad;
}

/* Class ids in [0, C), or ignore_index with probability p_ignore. */
static void targets(struct slot *s, uint32_t n, uint32_t h, uint32_t w, uint32_t classes,
                    int32_t ignore, float p_ignore)
{
    set4(s, K_I32, n * h * w, 1, 1, 1);
    s->rank = 3;
    s->shape[0] = n, s->shape[1] = h, s->shape[2] = w;
    int32_t *t = malloc(numel(s) * sizeof(int32_t));
    if (t)
        for (uint64_t i = 0; i < numel(s); i++)
            t[i] = rng_uniform(0, 1) < p_ignore ? ignore
                                                 : (int32_t)(rng_u64() % classes);
    s->host = t;
}

/* The file shape of a gradient (or dy) is that of its value. */
static void like(struct slot *dst, const struct slot *src)
{
    *dst = (struct slot){ .kind = src->kind, .rank = src->rank };
    memcpy(dst->d, src->d, sizeof(dst->d));
    memcpy(dst->shape, src->shape, sizeof(dst->shape));
}

/* ---- cases ------------------------------------------------------------------------- */

struct conv_case {
    uint32_t N, C, H, W, K, R, S, sh, sw, ph, pw, oph, opw;
    bool bias;
};

static void build_conv(struct job *j, enum vka_op op, struct conv_case c)
{
    j->op = op;
    j->p.conv = (struct vka_conv_desc){ .stride = { c.sh, c.sw }, .pad = { c.ph, c.pw },
                                        .out_pad = { c.oph, c.opw } };
    act(&j->x[0], c.N, c.C, c.H, c.W, -1, 1);
    if (op == VKA_OP_conv_transpose2d)
        weight(&j->x[1], c.C, c.K, c.R, c.S);
    else
        weight(&j->x[1], c.K, c.C, c.R, c.S);
    if (c.bias)
        vec(&j->x[2], c.K, -1, 1, true);
    if (op == VKA_OP_linear) {
        j->linear = true;
        j->x[0].rank = j->x[1].rank = 2;
        return;
    }
    meta_add(j, "stride_h", "%u", c.sh);
    meta_add(j, "stride_w", "%u", c.sw);
    meta_add(j, "pad_h", "%u", c.ph);
    meta_add(j, "pad_w", "%u", c.pw);
    if (op == VKA_OP_conv_transpose2d) {
        meta_add(j, "out_pad_h", "%u", c.oph);
        meta_add(j, "out_pad_w", "%u", c.opw);
    }
}

static void c_conv2d_s2(struct job *j)
{
    build_conv(j, VKA_OP_conv2d, (struct conv_case){ 2, 3, 9, 7, 5, 3, 3, 2, 2, 1, 1, 0, 0, true });
}

static void c_conv2d_k3x2(struct job *j)
{
    build_conv(j, VKA_OP_conv2d, (struct conv_case){ 3, 5, 6, 5, 7, 3, 2, 1, 2, 1, 0, 0, 0, false });
}

static void c_convt_op1(struct job *j)
{
    build_conv(j, VKA_OP_conv_transpose2d,
               (struct conv_case){ 2, 5, 4, 5, 3, 3, 3, 2, 2, 1, 1, 1, 1, true });
}

static void c_convt_k4s2(struct job *j)
{
    build_conv(j, VKA_OP_conv_transpose2d,
               (struct conv_case){ 3, 6, 3, 3, 5, 4, 4, 2, 2, 1, 1, 0, 0, false });
}

static void c_linear(struct job *j)
{
    build_conv(j, VKA_OP_linear, (struct conv_case){ 3, 13, 1, 1, 7, 1, 1, 1, 1, 0, 0, 0, 0, true });
}

static void build_norm(struct job *j, enum vka_op op, uint32_t N, uint32_t C, uint32_t H,
                       uint32_t W, uint32_t G, bool affine, bool training)
{
    j->op = op;
    j->p.norm = (struct vka_norm_desc){ .groups = G, .eps = 1e-5f, .momentum = 0.1f,
                                        .training = training };
    act(&j->x[0], N, C, H, W, -1.5f, 2.5f);
    if (affine) {
        vec(&j->x[1], C, 0.5f, 1.5f, true);
        vec(&j->x[2], C, -0.5f, 0.5f, true);
    }
    uint32_t stats = op == VKA_OP_group_norm ? N * G : C;
    if (op == VKA_OP_batch_norm) {
        vec(&j->state[0], C, -0.5f, 0.5f, false);
        vec(&j->state[1], C, 0.5f, 2.0f, false);
        meta_add(j, "momentum", "%.9g", j->p.norm.momentum);
        meta_add(j, "training", "%d", training);
    } else {
        meta_add(j, "groups", "%u", G);
    }
    if (training) {
        vec(&j->saved[0], stats, 0, 0, false);
        vec(&j->saved[1], stats, 0, 0, false);
    }
    meta_add(j, "eps", "%.9g", j->p.norm.eps);
    meta_add(j, "affine", "%d", affine);
}

static void c_bn_train(struct job *j)
{
    build_norm(j, VKA_OP_batch_norm, 3, 5, 6, 7, 0, true, true);
}

static void c_bn_eval(struct job *j)
{
    build_norm(j, VKA_OP_batch_norm, 2, 7, 5, 3, 0, true, false);
}

static void c_gn_g3(struct job *j)
{
    build_norm(j, VKA_OP_group_norm, 2, 6, 5, 7, 3, true, true);
}

static void c_gn_noaffine(struct job *j)
{
    build_norm(j, VKA_OP_group_norm, 3, 10, 4, 3, 5, false, true);
}

static void build_unary(struct job *j, enum vka_op op, float lo, float hi)
{
    j->op = op;
    act(&j->x[0], 2, 5, 7, 6, lo, hi);
}

static void c_relu(struct job *j) { build_unary(j, VKA_OP_relu, -1, 1); }
static void c_tanh(struct job *j) { build_unary(j, VKA_OP_tanh, -3, 3); }
static void c_sigmoid(struct job *j) { build_unary(j, VKA_OP_sigmoid, -4, 4); }

static void c_leaky_relu(struct job *j)
{
    build_unary(j, VKA_OP_leaky_relu, -1, 1);
    j->p.slope = 0.2f;
    meta_add(j, "slope", "%.9g", j->p.slope);
}

static void c_scale(struct job *j)
{
    build_unary(j, VKA_OP_scale, -1, 1);
    j->p.alpha = -1.7f;
    meta_add(j, "alpha", "%.9g", j->p.alpha);
}

static void c_add(struct job *j)
{
    j->op = VKA_OP_add;
    act(&j->x[0], 3, 5, 4, 7, -1, 1);
    act(&j->x[1], 3, 5, 4, 7, -1, 1);
}

static void c_mul(struct job *j)
{
    j->op = VKA_OP_mul;
    act(&j->x[0], 3, 5, 4, 7, -1, 1);
    act(&j->x[1], 3, 5, 4, 7, -1, 1);
}

static void c_concat(struct job *j)
{
    j->op = VKA_OP_concat;
    act(&j->x[0], 2, 3, 5, 6, -1, 1);
    act(&j->x[1], 2, 6, 5, 6, -1, 1);
}

static void build_pool(struct job *j, enum vka_op op, uint32_t N, uint32_t C, uint32_t H,
                       uint32_t W, uint32_t k, uint32_t stride, uint32_t pad)
{
    j->op = op;
    j->p.pool = (struct vka_pool_desc){ .k = k, .stride = stride, .pad = pad };
    act(&j->x[0], N, C, H, W, -1, 1);
    if (op == VKA_OP_max_pool2d) {
        j->argmax = true; /* saved0's size follows y's */
        vec(&j->saved[0], 1, 0, 0, false);
    }
    meta_add(j, "k", "%u", k);
    meta_add(j, "stride", "%u", stride);
    meta_add(j, "pad", "%u", pad);
}

static void c_max_k2(struct job *j) { build_pool(j, VKA_OP_max_pool2d, 2, 5, 7, 9, 2, 2, 0); }
static void c_max_k3(struct job *j) { build_pool(j, VKA_OP_max_pool2d, 3, 3, 8, 7, 3, 2, 1); }
static void c_avg_k2(struct job *j) { build_pool(j, VKA_OP_avg_pool2d, 2, 5, 7, 9, 2, 2, 0); }
static void c_avg_k3(struct job *j) { build_pool(j, VKA_OP_avg_pool2d, 3, 3, 8, 7, 3, 2, 1); }

static void build_resize(struct job *j, enum vka_op op, uint32_t N, uint32_t C, uint32_t H,
                         uint32_t W, uint32_t oh, uint32_t ow)
{
    j->op = op;
    j->p.resize = (struct vka_resize_desc){ .oh = oh, .ow = ow };
    act(&j->x[0], N, C, H, W, -1, 1);
    meta_add(j, "oh", "%u", oh);
    meta_add(j, "ow", "%u", ow);
}

static void c_near_odd(struct job *j) { build_resize(j, VKA_OP_upsample_nearest, 2, 3, 5, 7, 11, 13); }
static void c_near_down(struct job *j) { build_resize(j, VKA_OP_upsample_nearest, 2, 5, 7, 6, 3, 4); }
static void c_bil_odd(struct job *j) { build_resize(j, VKA_OP_upsample_bilinear, 2, 5, 5, 7, 11, 9); }
static void c_bil_x2(struct job *j) { build_resize(j, VKA_OP_upsample_bilinear, 3, 3, 4, 5, 8, 10); }

static void build_seg_loss(struct job *j, enum vka_op op, uint32_t N, uint32_t C, uint32_t H,
                           uint32_t W, int32_t ignore, float p_ignore, bool weights)
{
    j->op = op;
    j->loss = true;
    j->dice = op == VKA_OP_dice;
    j->p.loss = (struct vka_loss_desc){ .ignore_index = ignore, .scale = 1.0f };
    act(&j->x[0], N, C, H, W, -3, 3);
    targets(&j->x[1], N, H, W, C, ignore, p_ignore);
    if (weights)
        vec(&j->x[2], C, 0.2f, 2.0f, false);
    meta_add(j, "ignore_index", "%d", ignore);
    if (j->dice)
        meta_add(j, "smooth", "1");
    else
        meta_add(j, "scale", "%.9g", j->p.loss.scale);
}

static void c_ce_w(struct job *j)
{
    build_seg_loss(j, VKA_OP_cross_entropy, 2, 5, 6, 7, -100, 0.2f, true);
}

static void c_ce_255(struct job *j)
{
    build_seg_loss(j, VKA_OP_cross_entropy, 3, 3, 5, 4, 255, 0.25f, false);
}

static void c_dice(struct job *j)
{
    build_seg_loss(j, VKA_OP_dice, 2, 4, 5, 6, 255, 0.1f, false);
}

static void build_pix_loss(struct job *j, enum vka_op op, float tlo, float thi)
{
    j->op = op;
    j->loss = true;
    j->p.loss = (struct vka_loss_desc){ .ignore_index = -100, .scale = 1.0f };
    act(&j->x[0], 2, 5, 4, 5, -4, 4);
    act(&j->x[1], 2, 5, 4, 5, tlo, thi);
    j->x[1].grad = false;
    meta_add(j, "scale", "%.9g", j->p.loss.scale);
}

static void c_bce(struct job *j) { build_pix_loss(j, VKA_OP_bce_logits, 0, 1); }
static void c_mse(struct job *j) { build_pix_loss(j, VKA_OP_mse, -4, 4); }
static void c_l1(struct job *j) { build_pix_loss(j, VKA_OP_l1, -4, 4); }

/* Targets 0 or 1; about one logit in ten sits on the kink s*x == 1 (s = 2t - 1), where
 * the subgradient must be torch.relu's 0. */
static void build_hinge(struct job *j, bool linear)
{
    build_pix_loss(j, VKA_OP_hinge, 0, 1);
    j->p.loss.hinge_linear = linear;
    meta_add(j, "hinge_linear", "%d", linear);
    uint64_t n = numel(&j->x[0]);
    float *x = malloc(n * sizeof(float)), *t = malloc(n * sizeof(float));
    if (!x || !t) {
        free(x);
        free(t);
        return; /* slot_create draws both at random instead */
    }
    for (uint64_t i = 0; i < n; i++) {
        t[i] = (float)(rng_u64() & 1);
        x[i] = rng_uniform(0, 1) < 0.1f ? 2 * t[i] - 1 : rng_uniform(-4, 4);
    }
    j->x[0].host = x;
    j->x[1].host = t;
}

static void c_hinge(struct job *j) { build_hinge(j, false); }
static void c_hinge_linear(struct job *j) { build_hinge(j, true); }

/* x1 = NULL: every target is p.loss.target, as the GAN's real / fake labels */
static void build_const_target(struct job *j, enum vka_op op, float target)
{
    build_pix_loss(j, op, 0, 1);
    j->x[1] = (struct slot){ 0 };
    j->p.loss.target = target;
    meta_add(j, "target", "%.9g", target);
    if (op == VKA_OP_hinge)
        meta_add(j, "hinge_linear", "0");
}

static void c_bce_const(struct job *j) { build_const_target(j, VKA_OP_bce_logits, 1); }
static void c_hinge_const(struct job *j) { build_const_target(j, VKA_OP_hinge, 0); }

/* A metric: no targets; bwd gets a zeroed dx0 and must leave it zero. */
static void c_sigmoid_mean(struct job *j)
{
    j->op = VKA_OP_sigmoid_mean;
    j->loss = true;
    act(&j->x[0], 2, 5, 4, 5, -6, 6);
}

static const struct {
    const char *name;
    void (*build)(struct job *j);
} cases[] = {
    { "conv2d_s2", c_conv2d_s2 },
    { "conv2d_k3x2", c_conv2d_k3x2 },
    { "conv_transpose2d_op1", c_convt_op1 },
    { "conv_transpose2d_k4s2", c_convt_k4s2 },
    { "linear", c_linear },
    { "batch_norm_train", c_bn_train },
    { "batch_norm_eval", c_bn_eval },
    { "group_norm_g3", c_gn_g3 },
    { "group_norm_noaffine", c_gn_noaffine },
    { "relu", c_relu },
    { "leaky_relu", c_leaky_relu },
    { "tanh", c_tanh },
    { "sigmoid", c_sigmoid },
    { "add", c_add },
    { "mul", c_mul },
    { "scale", c_scale },
    { "concat", c_concat },
    { "max_pool2d_k2", c_max_k2 },
    { "max_pool2d_k3s2p1", c_max_k3 },
    { "avg_pool2d_k2", c_avg_k2 },
    { "avg_pool2d_k3s2p1", c_avg_k3 },
    { "upsample_nearest_odd", c_near_odd },
    { "upsample_nearest_down", c_near_down },
    { "upsample_bilinear_odd", c_bil_odd },
    { "upsample_bilinear_x2", c_bil_x2 },
    { "cross_entropy_weighted", c_ce_w },
    { "cross_entropy_ignore255", c_ce_255 },
    { "bce_logits", c_bce },
    { "dice", c_dice },
    { "mse", c_mse },
    { "l1", c_l1 },
    { "hinge", c_hinge },
    { "hinge_linear", c_hinge_linear },
    { "bce_logits_target1", c_bce_const },
    { "hinge_target0", c_hinge_const },
    { "sigmoid_mean", c_sigmoid_mean },
};

/* ---- running a case ---------------------------------------------------------------- */

/* The device tensor of s, holding s->host (random in [lo, hi] when random is set and
 * host is NULL, zeros otherwise). */
static int slot_create(struct vka_ctx *ctx, struct slot *s, bool random)
{
    struct vka_tensor_params tp = {
        .n = s->d[0], .c = s->d[1], .h = s->d[2], .w = s->d[3],
        .layout = s->kind == K_ACT ? VKA_LAYOUT_NHWC4
                  : s->kind == K_WEIGHT ? VKA_LAYOUT_WEIGHT : VKA_LAYOUT_FLAT,
        .dtype = s->kind == K_I32 ? VKA_I32 : VKA_F32,
        .cat = VKA_MEM_ACTIVATIONS,
    };
    uint64_t n = numel(s);
    if (!s->host) {
        float *h = calloc(n ? n : 1, sizeof(float));
        if (!h) {
            vka_err("parity dump: out of memory for %" PRIu64 " floats", n);
            return -ENOMEM;
        }
        if (random)
            for (uint64_t i = 0; i < n; i++)
                h[i] = rng_uniform(s->lo, s->hi);
        s->host = h;
    }
    int ret = vka_tensor_create(ctx, &tp, &s->t);
    if (ret < 0)
        return ret;
    return vka_tensor_upload(&s->t, s->host);
}

static int slot_read(struct slot *s)
{
    return vka_tensor_download(&s->t, s->host);
}

static void slot_free(struct slot *s)
{
    vka_tensor_destroy(&s->t);
    free(s->host);
    s->host = NULL;
}

/* NPQC -> NCPQ: max_pool2d's argmax as the NCHW order of y. */
static int argmax_to_nchw(struct slot *s, const struct slot *y)
{
    uint32_t N = y->d[0], C = y->d[1], P = y->d[2], Q = y->d[3];
    float *raw = s->host, *out = malloc(numel(s) * sizeof(float) + 1);
    if (!out) {
        vka_err("parity dump: out of memory");
        return -ENOMEM;
    }
    for (uint32_t n = 0; n < N; n++)
        for (uint32_t c = 0; c < C; c++)
            for (uint32_t p = 0; p < P; p++)
                for (uint32_t q = 0; q < Q; q++)
                    out[(((uint64_t)n * C + c) * P + p) * Q + q] =
                        raw[(((uint64_t)n * P + p) * Q + q) * C + c];
    free(raw);
    s->host = out;
    s->shape[0] = N, s->shape[1] = C, s->shape[2] = P, s->shape[3] = Q;
    s->rank = 4;
    return 0;
}

static void entry(struct vka_st_tensor *e, size_t *n, const char *name, const struct slot *s,
                  const void *data)
{
    if (s->kind == K_NONE)
        return;
    e[*n] = (struct vka_st_tensor){ .name = name, .ndim = s->rank, .data = data,
                                    .dtype = s->kind == K_I32 ? VKA_ST_I32 : VKA_ST_F32 };
    memcpy(e[*n].shape, s->shape, sizeof(s->shape));
    (*n)++;
}

static int write_job(struct job *j, const char *path)
{
    static const char *xn[3] = { "x0", "x1", "x2" }, *dxn[3] = { "dx0", "dx1", "dx2" };
    static const char *sn[2] = { "saved0", "saved1" }, *stn[2] = { "state0", "state1" };
    static const char *stin[2] = { "state0_in", "state1_in" };
    struct vka_st_tensor e[20];
    size_t n = 0;
    for (int i = 0; i < 3; i++)
        entry(e, &n, xn[i], &j->x[i], j->x[i].host);
    for (int i = 0; i < 2; i++)
        entry(e, &n, stin[i], &j->state[i], j->state_in[i]);
    entry(e, &n, "dy", &j->dy, j->dy.host);
    entry(e, &n, "y", &j->y, j->y.host);
    for (int i = 0; i < 2; i++)
        entry(e, &n, sn[i], &j->saved[i], j->saved[i].host);
    for (int i = 0; i < 2; i++)
        entry(e, &n, stn[i], &j->state[i], j->state[i].host);
    for (int i = 0; i < 3; i++)
        entry(e, &n, dxn[i], &j->dx[i], j->dx[i].host);
    if (j->dice)
        e[n++] = (struct vka_st_tensor){ .name = "loss", .dtype = VKA_ST_F64, .ndim = 1,
                                         .shape = { 1 }, .data = &j->dice_loss };
    return vka_st_write(path, &(struct vka_st_write_params){
        .tensors = e, .n_tensors = n, .meta = j->meta, .n_meta = j->n_meta });
}

static int record_run(struct vka_cmd *cmd, vka_op_rec_fn fn, const struct vka_op_args *a)
{
    int ret = vka_cmd_begin(cmd);
    if (ret < 0 || (ret = fn(cmd, a)) < 0)
        return ret;
    return vka_cmd_run(cmd);
}

static int run_job(struct vka_ctx *ctx, struct job *j, const char *path)
{
    const struct vka_op_info *op = &vka_ops[j->op];
    struct vka_op_args a = { .p = j->p };
    struct vka_cmd *cmd = NULL;
    uint32_t ys[4];
    int ret = 0;

    for (int i = 0; i < 3; i++) {
        if (j->x[i].kind == K_NONE)
            continue;
        if ((ret = slot_create(ctx, &j->x[i], true)) < 0)
            goto done;
        a.x[i] = &j->x[i].t;
    }
    for (int i = 0; i < 2; i++) {
        if (j->state[i].kind == K_NONE)
            continue;
        if ((ret = slot_create(ctx, &j->state[i], true)) < 0)
            goto done;
        uint64_t n = numel(&j->state[i]);
        if (!(j->state_in[i] = malloc(n * sizeof(float)))) {
            ret = -ENOMEM;
            goto done;
        }
        memcpy(j->state_in[i], j->state[i].host, n * sizeof(float));
        a.state[i] = &j->state[i].t;
    }
    if ((ret = op->shape(&a, ys)) < 0)
        goto done;
    if (j->loss) {
        vec(&j->y, ys[0], 0, 0, false);
    } else {
        set4(&j->y, K_ACT, ys[0], ys[1], ys[2], ys[3]);
        if (j->linear)
            j->y.rank = 2;
    }
    if (j->argmax)
        vec(&j->saved[0], (uint32_t)numel(&j->y), 0, 0, false);
    if ((ret = slot_create(ctx, &j->y, false)) < 0)
        goto done;
    a.y = &j->y.t;
    for (int i = 0; i < 2; i++) {
        if (j->saved[i].kind == K_NONE)
            continue;
        if ((ret = slot_create(ctx, &j->saved[i], false)) < 0)
            goto done;
        a.saved[i] = &j->saved[i].t;
    }

    if ((ret = vka_cmd_create(ctx, NULL, &cmd)) < 0 ||
        (ret = record_run(cmd, op->fwd, &a)) < 0 || (ret = slot_read(&j->y)) < 0)
        goto done;
    for (int i = 0; i < 2; i++)
        if ((j->saved[i].kind && (ret = slot_read(&j->saved[i])) < 0) ||
            (j->state[i].kind && (ret = slot_read(&j->state[i])) < 0))
            goto done;
    if (j->argmax && (ret = argmax_to_nchw(&j->saved[0], &j->y)) < 0)
        goto done;

    if (j->dice) {
        uint32_t C = j->x[0].d[1];
        vec(&j->dy, 2 * C, 0, 0, false);
        if (!(j->dy.host = calloc(2 * C, sizeof(float)))) {
            ret = -ENOMEM;
            goto done;
        }
        j->dice_loss = vka_dice_loss(j->y.host, C, 1.0, 1.0, j->dy.host);
    } else if (!j->loss) {
        like(&j->dy, &j->y);
        j->dy.lo = -1, j->dy.hi = 1;
    }
    if (j->dy.kind != K_NONE) {
        if ((ret = slot_create(ctx, &j->dy, true)) < 0)
            goto done;
        a.dy = &j->dy.t;
    }
    for (int i = 0; i < 3; i++) {
        if (j->x[i].kind == K_NONE || !j->x[i].grad)
            continue;
        like(&j->dx[i], &j->x[i]);
        if ((ret = slot_create(ctx, &j->dx[i], false)) < 0)
            goto done;
        a.dx[i] = &j->dx[i].t;
    }
    if ((ret = record_run(cmd, op->bwd, &a)) < 0)
        goto done;
    for (int i = 0; i < 3; i++)
        if (j->dx[i].kind && (ret = slot_read(&j->dx[i])) < 0)
            goto done;
    ret = write_job(j, path);

done:
    vka_cmd_destroy(&cmd);
    struct slot *all[] = { &j->x[0], &j->x[1], &j->x[2], &j->saved[0], &j->saved[1],
                           &j->state[0], &j->state[1], &j->y, &j->dy, &j->dx[0], &j->dx[1],
                           &j->dx[2] };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        slot_free(all[i]);
    free(j->state_in[0]);
    free(j->state_in[1]);
    return ret;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: vkaccum-parity-dump [--device SEL] [--seed N] OUTDIR\n"
               "Runs every op forward and backward on random inputs and writes one\n"
               "safetensors file per case into OUTDIR for tools/parity/ops.py.\n");
}

int main(int argc, char **argv)
{
    const char *device = NULL, *outdir = NULL;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) {
            device = argv[++i];
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            char *end;
            seed = strtoull(argv[++i], &end, 0);
            if (*end || !seed) {
                fprintf(stderr, "vkaccum-parity-dump: --seed wants a non-zero integer, not "
                                "'%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] != '-' && !outdir) {
            outdir = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!outdir) {
        usage(stderr);
        return 2;
    }
    if (mkdir(outdir, 0777) < 0 && errno != EEXIST) {
        fprintf(stderr, "vkaccum-parity-dump: cannot create %s: %s\n", outdir,
                strerror(errno));
        return 1;
    }
    rng_state = seed;

    struct vka_ctx *ctx = NULL;
    int ret = vka_ctx_create(&(struct vka_ctx_params){ .device = device, .validation = -1 },
                             &ctx);
    if (ret < 0) {
        fprintf(stderr, "vkaccum-parity-dump: %s\n", vka_last_error());
        return 1;
    }
    printf("device: %s, seed %" PRIu64 "\n", ctx->info.name, seed);

    bool seen[VKA_OP_COUNT] = { 0 };
    int failed = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct job *j = calloc(1, sizeof(*j));
        if (!j) {
            failed++;
            break;
        }
        j->name = cases[i].name;
        meta_add(j, "case", "%s", j->name);
        meta_add(j, "seed", "%" PRIu64, seed);
        meta_add(j, "device", "%s", ctx->info.name);
        cases[i].build(j);
        meta_add(j, "op", "%s", vka_ops[j->op].name);
        seen[j->op] = true;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s.safetensors", outdir, j->name);
        if ((ret = run_job(ctx, j, path)) < 0) {
            fprintf(stderr, "vkaccum-parity-dump: %s: %s\n", j->name, vka_last_error());
            failed++;
        } else {
            printf("wrote %s\n", path);
        }
        free(j);
    }
    for (int op = 0; op < VKA_OP_COUNT; op++)
        if (!seen[op]) {
            fprintf(stderr, "vkaccum-parity-dump: op %s has no case\n", vka_ops[op].name);
            failed++;
        }
    unsigned vmsg = vka_ctx_validation_count(ctx);
    vka_ctx_destroy(&ctx);
    if (vmsg) {
        fprintf(stderr, "vkaccum-parity-dump: the validation layer reported %u messages\n",
                vmsg);
        failed++;
    }
    return failed ? 1 : 0;
}
