/* Losses: cross_entropy, bce_logits, mse, l1, hinge, dice and the sigmoid_mean metric
 * (conventions in loss.h), with shaders/loss.comp.
 *
 * fwd records two kernels. loss_<kind> writes one partial per block of P = WG * ITEMS
 * items of one sample (items are pixels for cross_entropy and dice, a pixel's vec4s for
 * the others) into a scratch buffer laid out (N, B, V4) vec4; blocks never span samples.
 * loss_fold then reduces each sample's B partials by a fixed tree and adds the results
 * into y in sample order, so the accumulator's bits do not depend on how a batch is
 * split into micro-batches; an exact y (--accumulate exact) takes each sample's result
 * converted and added exactly (loss_fold_exact). bwd records one invocation per item. hinge's two modes are
 * two kinds here (two shader variants), chosen by p.loss.hinge_linear.
 *
 * Long tensors are split into chunks whose storage bindings fit the profile's
 * max_binding: fwd chunks are runs of whole blocks, bwd chunks runs of whole pixels. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>

#include "log.h"
#include "ops/loss.h"
#include "ops/ops.h"

enum loss_kind {
    LOSS_CE, LOSS_BCE, LOSS_MSE, LOSS_L1, LOSS_DICE,
    LOSS_HINGE, LOSS_HINGE_LIN, /* hinge, p.loss.hinge_linear false / true */
    LOSS_SIGMEAN,
};

static const struct {
    const char *op, *part, *bwd;
} kinds[] = {
    [LOSS_CE] = { "cross_entropy", "loss_ce", "loss_ce_bwd" },
    [LOSS_BCE] = { "bce_logits", "loss_bce", "loss_bce_bwd" },
    [LOSS_MSE] = { "mse", "loss_mse", "loss_mse_bwd" },
    [LOSS_L1] = { "l1", "loss_l1", "loss_l1_bwd" },
    [LOSS_DICE] = { "dice", "loss_dice", "loss_dice_bwd" },
    [LOSS_HINGE] = { "hinge", "loss_hinge", "loss_hinge_bwd" },
    [LOSS_HINGE_LIN] = { "hinge", "loss_hinge_linear", "loss_hinge_linear_bwd" },
    [LOSS_SIGMEAN] = { "sigmoid_mean", "loss_sigmoid_mean", NULL },
};

/* push constants of the loss kernels (PC in loss.comp without OP_FOLD) */
struct loss_push {
    uint32_t g0, n0, b0;
    uint32_t B;
    uint32_t per;
    uint32_t count;
    uint32_t x_base, t_base, w_base, o_base;
    uint32_t q4;
    uint32_t C;
    int32_t ignore;
    uint32_t w_shift;
    uint32_t has_w;
    float scale;
    uint32_t t_const;
    float target;
};

struct fold_push {
    uint32_t nsamp, B, V4, p_base, acc_base, Q, cval;
};

/* What the kernels iterate over. */
struct geom {
    uint32_t N, C, q4;
    uint64_t per;  /* items per sample */
    uint32_t fpi;  /* floats of x0 (and of dx0) per item */
    uint32_t V4;   /* vec4s per partial */
    bool seg;      /* i32 targets, pixel items */
};

static bool is_seg(enum loss_kind k)
{
    return k == LOSS_CE || k == LOSS_DICE;
}

/* bce_logits and hinge take x1 = NULL for a constant target p.loss.target (the GAN's
 * real / fake labels), which saves a tensor of ones or zeros the size of D's output. */
static bool const_target_ok(enum loss_kind k)
{
    return k == LOSS_BCE || k == LOSS_HINGE || k == LOSS_HINGE_LIN;
}

/* Floats one binding may cover, less the 256-byte alignment before a range and the
 * rounding after it (vka_op_bind_out). */
static uint64_t chunk_floats(const struct vka_ctx *ctx)
{
    uint64_t c = ctx->profile.max_binding / sizeof(float);
    c = c > 128 ? c - 128 : 0;
    return c < (1ull << 30) ? c : 1ull << 30;
}

/* acc: the accumulator fwd adds into, which may be exact (--accumulate exact) */
static int check_flat_n(const char *op, const char *name, const struct vka_tensor *t,
                        uint64_t n, bool acc)
{
    int ret = acc ? vka_op_check_acc(op, name, t, VKA_LAYOUT_FLAT, 0, 0, 0, 0)
                  : vka_op_check(op, name, t, VKA_LAYOUT_FLAT, 0, 0, 0, 0);
    if (ret < 0)
        return ret;
    if (vka_tensor_numel(t) != n) {
        char have[64];
        vka_op_shape_str(t, have, sizeof(have));
        vka_err("%s: %s is %s, needs %" PRIu64 " flat f32 elements", op, name, have, n);
        return -EINVAL;
    }
    return 0;
}

static int check_vec4_start(const char *op, const char *name, const struct vka_tensor *t)
{
    if (t->off % 4) {
        vka_err("%s: %s starts at element %" PRIu64 ", not a whole vec4", op, name, t->off);
        return -EINVAL;
    }
    return 0;
}

/* Checks the inputs (x0, x1, x2) of a loss and fills g. */
static int check_inputs(enum loss_kind k, const struct vka_op_args *a, struct geom *g)
{
    const char *op = kinds[k].op;
    const struct vka_tensor *x = a->x[0];
    int ret = vka_op_check(op, "x0", x, VKA_LAYOUT_NHWC4, 0, 0, 0, 0);
    if (ret < 0 || (ret = check_vec4_start(op, "x0", x)) < 0)
        return ret;
    if (x->c == 0) {
        vka_err("%s: x0 has no channels", op);
        return -EINVAL;
    }
    *g = (struct geom){ .N = x->n, .C = x->c, .q4 = x->cs / 4, .seg = is_seg(k) };
    uint64_t hw = (uint64_t)x->h * x->w;
    if (g->seg) {
        g->per = hw;
        g->fpi = x->cs;
        g->V4 = k == LOSS_DICE ? 2 * g->q4 : 1;
        ret = vka_op_check_i32(op, "x1 (targets)", a->x[1], (uint64_t)x->n * hw);
        if (ret == 0 && k == LOSS_CE && a->x[2])
            ret = check_flat_n(op, "x2 (class weights)", a->x[2], x->c, false);
    } else {
        g->per = hw * g->q4;
        g->fpi = 4;
        g->V4 = 1;
        if (k != LOSS_SIGMEAN && (a->x[1] || !const_target_ok(k))) {
            ret = vka_op_check(op, "x1 (targets)", a->x[1], VKA_LAYOUT_NHWC4, x->n, x->c,
                               x->h, x->w);
            if (ret == 0)
                ret = check_vec4_start(op, "x1 (targets)", a->x[1]);
        }
    }
    if (ret < 0)
        return ret;
    if (g->per + 65536 > UINT32_MAX || (uint64_t)g->N * g->per > UINT32_MAX) {
        vka_err("%s: x0 (%u,%u,%u,%u) is too large for 32-bit item indices", op, x->n, x->c,
                x->h, x->w);
        return -EINVAL;
    }
    return 0;
}

static uint64_t acc_size(enum loss_kind k, const struct geom *g)
{
    return k == LOSS_DICE ? 2ull * g->C : 2;
}

static int loss_shape(enum loss_kind k, const struct vka_op_args *a, uint32_t shape[4])
{
    struct geom g;
    int ret = check_inputs(k, a, &g);
    if (ret < 0)
        return ret;
    shape[0] = (uint32_t)acc_size(k, &g);
    shape[1] = shape[2] = shape[3] = 1;
    return 0;
}

/* A flat input bound from its vec4-aligned start: *shift is its offset in that vec4. */
static int bind_flat_in(struct vka_ctx *ctx, const struct vka_tensor *t, struct vka_binding *b,
                        uint32_t *base4, uint32_t *shift)
{
    struct vka_tensor v = *t;
    *shift = (uint32_t)(v.off % 4);
    v.off -= *shift;
    return vka_op_bind_in(ctx, &v, 0, vka_tensor_numel(t) + *shift, b, base4);
}

/* Binds x1 for items [first, first + count); without x1, x0's range stands in for it
 * (a binding must be valid) and the kernel reads pc.target instead. */
static int bind_targets(struct vka_ctx *ctx, const struct vka_op_args *a, const struct geom *g,
                        uint64_t first, uint64_t count, struct vka_binding *b,
                        struct loss_push *pc)
{
    if (g->seg)
        return vka_op_bind_out(ctx, a->x[1], first, count, b, &pc->t_base);
    pc->t_const = a->x[1] == NULL;
    pc->target = a->p.loss.target;
    return vka_op_bind_in(ctx, a->x[1] ? a->x[1] : a->x[0], first * 4, count * 4, b,
                          &pc->t_base);
}

/* CE's class weights, or x0 as a stand-in binding when there are none. */
static int bind_weights(struct vka_ctx *ctx, const struct vka_op_args *a,
                        struct vka_binding *b, struct loss_push *pc)
{
    pc->has_w = a->x[2] != NULL;
    if (a->x[2])
        return bind_flat_in(ctx, a->x[2], b, &pc->w_base, &pc->w_shift);
    return vka_op_bind_in(ctx, a->x[0], 0, 4, b, &pc->w_base);
}

static int record_partials(struct vka_cmd *cmd, enum loss_kind k, const struct vka_op_args *a,
                           const struct geom *g, struct vka_tensor *part, uint32_t *blocks)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    const char *op = kinds[k].op;
    const uint64_t P = (uint64_t)ctx->profile.wg_size * ctx->profile.reduce_items;
    const uint64_t B = (g->per + P - 1) / P, total = g->N * B;
    uint64_t G = chunk_floats(ctx) / (P * g->fpi);
    if (G > chunk_floats(ctx) / (4 * g->V4))
        G = chunk_floats(ctx) / (4 * g->V4);
    if (G == 0) {
        vka_err("%s: a block of %" PRIu64 " items of %u floats passes the device's binding "
                "range of %" PRIu64 " bytes", op, P, g->fpi, ctx->profile.max_binding);
        return -E2BIG;
    }
    int ret = vka_op_scratch(cmd, total * g->V4 * 4, part);
    if (ret < 0)
        return ret;
    struct vka_pipe *pipe;
    bool ce = k == LOSS_CE, targets = k != LOSS_SIGMEAN;
    struct vka_pipe_params pp = {
        .shader = kinds[k].part, .nbind = ce ? 4 : targets ? 3 : 2,
        .bind = { VKA_BIND_IN, g->seg || !targets ? VKA_BIND_OUT : VKA_BIND_IN,
                  ce ? VKA_BIND_IN : VKA_BIND_OUT, VKA_BIND_OUT },
        .push_size = sizeof(struct loss_push), .nspec = 1,
        .spec = { ctx->profile.reduce_items } };
    if ((ret = vka_pipe_get(ctx, &pp, &pipe)) < 0)
        return ret;
    for (uint64_t g0 = 0; g0 < total; g0 += G) {
        uint64_t cnt = total - g0 < G ? total - g0 : G, g1 = g0 + cnt - 1;
        uint64_t n0 = g0 / B, b0 = g0 % B, n1 = g1 / B, b1 = g1 % B;
        uint64_t first = n0 * g->per + b0 * P;
        uint64_t end = n1 * g->per + ((b1 + 1) * P < g->per ? (b1 + 1) * P : g->per);
        struct loss_push pc = {
            .g0 = (uint32_t)g0, .n0 = (uint32_t)n0, .b0 = (uint32_t)b0, .B = (uint32_t)B,
            .per = (uint32_t)g->per, .count = (uint32_t)cnt, .q4 = g->q4, .C = g->C,
            .ignore = a->p.loss.ignore_index };
        struct vka_binding b[4];
        int oi = ce ? 3 : targets ? 2 : 1;
        if ((ret = vka_op_bind_in(ctx, a->x[0], first * g->fpi, (end - first) * g->fpi, &b[0],
                                  &pc.x_base)) < 0 ||
            (targets &&
             (ret = bind_targets(ctx, a, g, first, end - first, &b[1], &pc)) < 0) ||
            (ce && (ret = bind_weights(ctx, a, &b[2], &pc)) < 0) ||
            (ret = vka_op_bind_out(ctx, part, g0 * g->V4 * 4, cnt * g->V4 * 4, &b[oi],
                                   &pc.o_base)) < 0 ||
            (ret = vka_cmd_dispatch_1d(cmd, pipe, b, &pc, cnt * ctx->profile.wg_size)) < 0)
            return ret;
    }
    *blocks = (uint32_t)B;
    return 0;
}

/* y += each sample's partials, in sample order */
static int record_fold(struct vka_cmd *cmd, enum loss_kind k, const struct vka_op_args *a,
                       const struct geom *g, const struct vka_tensor *part, uint32_t B)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    uint64_t per_sample = (uint64_t)B * g->V4 * 4;
    uint64_t spc = chunk_floats(ctx) / per_sample;
    if (spc == 0) {
        vka_err("%s: a sample's %" PRIu64 " partials pass the device's binding range of %"
                PRIu64 " bytes", kinds[k].op, per_sample, ctx->profile.max_binding);
        return -E2BIG;
    }
    struct vka_pipe *pipe;
    bool dice = k == LOSS_DICE, exact = a->y->dtype == VKA_EXACT;
    int ret = vka_pipe_get(ctx, &(struct vka_pipe_params){
        .shader = exact ? "loss_fold_exact" : "loss_fold", .nbind = 2,
        .bind = { VKA_BIND_IN, VKA_BIND_OUT }, .push_size = sizeof(struct fold_push) }, &pipe);
    if (ret < 0)
        return ret;
    for (uint64_t s0 = 0; s0 < g->N; s0 += spc) {
        uint64_t ns = g->N - s0 < spc ? g->N - s0 : spc;
        struct fold_push pc = { .nsamp = (uint32_t)ns, .B = B, .V4 = g->V4,
                                .Q = dice ? g->q4 : 1, .cval = dice ? g->C : 2 };
        struct vka_binding b[2];
        if ((ret = vka_op_bind_in(ctx, part, s0 * per_sample, ns * per_sample, &b[0],
                                  &pc.p_base)) < 0 ||
            (ret = exact ? vka_op_bind_exact(ctx, a->y, 0, acc_size(k, g), &b[1], &pc.acc_base)
                         : vka_op_bind_out(ctx, a->y, 0, acc_size(k, g), &b[1], &pc.acc_base)) < 0 ||
            (ret = vka_cmd_dispatch_1d(cmd, pipe, b, &pc,
                                       (uint64_t)g->V4 * ctx->profile.wg_size)) < 0)
            return ret;
    }
    return 0;
}

static int loss_fwd(struct vka_cmd *cmd, enum loss_kind k, const struct vka_op_args *a)
{
    struct geom g;
    int ret = check_inputs(k, a, &g);
    if (ret < 0 || (ret = check_flat_n(kinds[k].op, "y", a->y, acc_size(k, &g), true)) < 0)
        return ret;
    if (g.N == 0 || g.per == 0)
        return 0;
    struct vka_tensor part;
    uint32_t B;
    if ((ret = record_partials(cmd, k, a, &g, &part, &B)) < 0)
        return ret;
    return record_fold(cmd, k, a, &g, &part, B);
}

/* G = [dL/dinter[cs], dL/dcard[cs]] padded from dy (2C) */
static int record_dice_prep(struct vka_cmd *cmd, const struct vka_op_args *a,
                            const struct geom *g, struct vka_tensor *gt)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    int ret = vka_op_scratch(cmd, 8ull * g->q4, gt);
    if (ret < 0)
        return ret;
    struct vka_pipe *pipe;
    ret = vka_pipe_get(ctx, &(struct vka_pipe_params){
        .shader = "loss_dice_prep", .nbind = 2, .bind = { VKA_BIND_IN, VKA_BIND_OUT },
        .push_size = sizeof(struct loss_push) }, &pipe);
    if (ret < 0)
        return ret;
    struct loss_push pc = { .q4 = g->q4, .C = g->C };
    struct vka_binding b[2];
    if ((ret = bind_flat_in(ctx, a->dy, &b[0], &pc.w_base, &pc.w_shift)) < 0 ||
        (ret = vka_op_bind_out(ctx, gt, 0, 8ull * g->q4, &b[1], &pc.o_base)) < 0)
        return ret;
    return vka_cmd_dispatch_1d(cmd, pipe, b, &pc, 8ull * g->q4);
}

static int loss_bwd(struct vka_cmd *cmd, enum loss_kind k, const struct vka_op_args *a)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    const char *op = kinds[k].op;
    struct geom g;
    int ret = check_inputs(k, a, &g);
    if (ret < 0)
        return ret;
    if (k == LOSS_DICE && (ret = check_flat_n(op, "dy", a->dy, 2ull * g.C, false)) < 0)
        return ret;
    const struct vka_tensor *dx = a->dx[0];
    if (dx && (ret = vka_op_check(op, "dx0", dx, VKA_LAYOUT_NHWC4, g.N, g.C, a->x[0]->h,
                                  a->x[0]->w)) < 0)
        return ret;
    uint64_t total = g.N * g.per;
    if (!dx || total == 0 || k == LOSS_SIGMEAN) /* no gradient flows from a metric */
        return 0;
    uint64_t chunk = chunk_floats(ctx) / g.fpi;
    if (!g.seg)
        chunk -= chunk % g.q4; /* whole pixels: the kernel takes the channel quad from i */
    if (chunk == 0) {
        vka_err("%s: a pixel of %u floats passes the device's binding range of %" PRIu64
                " bytes", op, g.q4 * 4, ctx->profile.max_binding);
        return -E2BIG;
    }
    bool ce = k == LOSS_CE, dice = k == LOSS_DICE;
    struct vka_tensor gt;
    if (dice && (ret = record_dice_prep(cmd, a, &g, &gt)) < 0)
        return ret;
    struct vka_pipe *pipe;
    ret = vka_pipe_get(ctx, &(struct vka_pipe_params){
        .shader = kinds[k].bwd, .nbind = g.seg ? 4 : 3,
        .bind = { VKA_BIND_IN, g.seg ? VKA_BIND_OUT : VKA_BIND_IN,
                  g.seg ? VKA_BIND_IN : VKA_BIND_OUT, VKA_BIND_OUT },
        .push_size = sizeof(struct loss_push), .nspec = 1,
        .spec = { ctx->profile.reduce_items } }, &pipe);
    if (ret < 0)
        return ret;
    for (uint64_t first = 0; first < total; first += chunk) {
        uint64_t cnt = total - first < chunk ? total - first : chunk;
        struct loss_push pc = { .count = (uint32_t)cnt, .q4 = g.q4, .C = g.C,
                                .ignore = a->p.loss.ignore_index, .scale = a->p.loss.scale };
        struct vka_binding b[4];
        int oi = g.seg ? 3 : 2;
        if ((ret = vka_op_bind_in(ctx, a->x[0], first * g.fpi, cnt * g.fpi, &b[0],
                                  &pc.x_base)) < 0 ||
            (ret = bind_targets(ctx, a, &g, first, cnt, &b[1], &pc)) < 0 ||
            (ce && (ret = bind_weights(ctx, a, &b[2], &pc)) < 0) ||
            (dice && (ret = vka_op_bind_in(ctx, &gt, 0, 8ull * g.q4, &b[2], &pc.w_base)) < 0) ||
            (ret = vka_op_bind_out(ctx, dx, first * g.fpi, cnt * g.fpi, &b[oi],
                                   &pc.o_base)) < 0 ||
            (ret = vka_cmd_dispatch_1d(cmd, pipe, b, &pc, cnt)) < 0)
            return ret;
    }
    return 0;
}

#define LOSS_OP(name, kind)                                                              \
    int vka_##name##_shape(const struct vka_op_args *a, uint32_t shape[4])               \
    {                                                                                    \
        return loss_shape(kind, a, shape);                                               \
    }                                                                                    \
    int vka_##name##_fwd(struct vka_cmd *cmd, const struct vka_op_args *a)               \
    {                                                                                    \
        return loss_fwd(cmd, kind, a);                                                   \
    }                                                                                    \
    int vka_##name##_bwd(struct vka_cmd *cmd, const struct vka_op_args *a)               \
    {                                                                                    \
        return loss_bwd(cmd, kind, a);                                                   \
    }

LOSS_OP(cross_entropy, LOSS_CE)
LOSS_OP(bce_logits, LOSS_BCE)
LOSS_OP(mse, LOSS_MSE)
LOSS_OP(l1, LOSS_L1)
LOSS_OP(dice, LOSS_DICE)
LOSS_OP(sigmoid_mean, LOSS_SIGMEAN)

static enum loss_kind hinge_kind(const struct vka_op_args *a)
{
    return a->p.loss.hinge_linear ? LOSS_HINGE_LIN : LOSS_HINGE;
}

int vka_hinge_shape(const struct vka_op_args *a, uint32_t shape[4])
{
    return loss_shape(hinge_kind(a), a, shape);
}

int vka_hinge_fwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    return loss_fwd(cmd, hinge_kind(a), a);
}

int vka_hinge_bwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    return loss_bwd(cmd, hinge_kind(a), a);
}

/* ---- host helpers ------------------------------------------------------------------ */

int vka_loss_check_targets(const int32_t *targets, uint64_t count, uint32_t classes,
                           int32_t ignore_index)
{
    for (uint64_t i = 0; i < count; i++) {
        int32_t t = targets[i];
        if (t != ignore_index && (t < 0 || (uint32_t)t >= classes)) {
            vka_err("loss targets: element %" PRIu64 " is %" PRId32 ", outside [0, %u) and "
                    "not ignore_index %" PRId32, i, t, classes, ignore_index);
            return -EINVAL;
        }
    }
    return 0;
}

double vka_dice_loss(const float *acc, uint32_t classes, double smooth, double dloss,
                     float *dy)
{
    const float *inter = acc, *card = acc + classes;
    double sum = 0.0;
    for (uint32_t c = 0; c < classes; c++) {
        double den = card[c] + smooth, num = 2.0 * inter[c] + smooth;
        sum += num / den;
        if (dy) {
            dy[c] = (float)(dloss * (-2.0 / classes) / den);
            dy[classes + c] = (float)(dloss * num / ((double)classes * den * den));
        }
    }
    return classes ? 1.0 - sum / classes : 0.0;
}
