/* batch_norm and group_norm, fwd and bwd (shaders/norm.comp).
 *
 * Both ops are planned as one statistic per (segment s, index k) over the Cg channels of
 * k and the P pixels of s:
 *   batch_norm  S = 1, K = C, Cg = 1,   P = N*H*W  (statistics span the micro-batch)
 *   group_norm  S = N, K = G, Cg = C/G, P = H*W    (statistics per sample)
 * fwd: stats (per block of PB pixels and vec4 of channels) -> fin (per (s, k): mean,
 * invstd, running statistics, per-channel coefficients) -> apply (per vec4); a
 * batch_norm in training whose P fits one block does the three in one dispatch (bn1, on
 * CPUs: the profile's norm_one_pass).
 * bwd: gradsum (per block: sums of dy and dy * xhat) -> finbwd (per k, samples in
 * order: dgamma/dbeta += per-sample partials, dx coefficients) -> dx (per vec4).
 * Blocks are a fixed PB = WG * items pixels of one segment, so a group_norm
 * sample's sums, and with them its y, dx and dgamma/dbeta partials, have the same bits
 * whatever micro-batch it is in. batch_norm in eval mode normalises with state0/state1
 * in fwd and bwd (no gradient through the statistics) and leaves saved untouched.
 *
 * Scratch: one buffer per call, owned by the recorder: PART, two arrays of (S*nblk, Cs)
 * floats, then COEF, S * (3 fwd | 4 bwd) arrays of Cs floats. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "log.h"
#include "ops/ops.h"

enum {
    F_GAMMA = 1, F_BETA = 2, F_MEAN = 4, F_ISTD = 8, F_RMEAN = 16, F_RVAR = 32,
    F_EVAL = 64, F_DGAMMA = 128, F_DBETA = 256,
};

struct reduce_push {
    uint32_t c4s, C, K, Cg, P, nblk, gb0, q0, x_base, dy_base, gbs, part_base;
    uint32_t mean_base, istd_base, flags;
    float eps;
    uint32_t gamma_base, beta_base;
    float slope;
};

struct fin_push {
    uint32_t c4s, C, S, K, Cg, P, nblk, flags;
    float eps, momentum;
    uint32_t part_base, gamma_base, beta_base, mean_base, istd_base, r0_base, r1_base;
    uint32_t coef_base;
    uint32_t x_base, y_base; /* norm_bn1 */
    float slope;             /* norm_bn1 */
};

struct map_push {
    uint32_t n4, e0, c4s, C, P, x_base, dy_base, coef_base, out_base;
    float zero;
    uint32_t ppi, beta_base, flags;
    float slope;
};

struct plan {
    const char *op;       /* for messages: "group_norm_bwd" */
    const struct vka_tensor *x;
    /* gamma, beta (NULL: none): bwd with an activation computes the normalised value
     * again for its mask */
    const struct vka_tensor *gamma, *beta;
    uint32_t act;         /* enum vka_norm_act: the kernels' ACT */
    float slope;
    uint32_t C, Cs, c4s;
    uint32_t S, K, Cg, P; /* see the top of the file */
    uint32_t pb, nblk;    /* pixels per block, blocks per segment */
    struct vka_buf *scratch;
    uint64_t scratch_off; /* element offset of the scratch in its buffer */
    uint64_t coef_off;    /* element offset of COEF in the scratch */
};

/* Pixels one reduction invocation adds in sequence. Every workgroup ends in two trees
 * with a barrier per level, which lavapipe pays for with coroutine switches: 64 pixels
 * per invocation made the stats pass 2.5x faster than 4 on lavapipe. */
static uint32_t items(const struct vka_ctx *ctx)
{
    return 16 * ctx->profile.reduce_items;
}

/* Elements one storage binding may hold, less the start's 256-byte alignment and the
 * end's rounding to 16 bytes (vka_op_bind_out). */
static uint64_t bind_limit(const struct vka_ctx *ctx)
{
    return ctx->profile.max_binding / 4 - 68;
}

/* acc: an accumulator the op adds into (dgamma, dbeta), which may be exact */
static int check_vec_of(const char *op, const char *name, const struct vka_tensor *t,
                        uint64_t count, const char *what, bool acc)
{
    int ret = acc ? vka_op_check_acc(op, name, t, VKA_LAYOUT_FLAT, 0, 0, 0, 0)
                  : vka_op_check(op, name, t, VKA_LAYOUT_FLAT, 0, 0, 0, 0);
    if (ret < 0)
        return ret;
    if (vka_tensor_stored(t) != count) {
        vka_err("%s: %s holds %" PRIu64 " floats, needs %" PRIu64 " (%s)", op, name,
                vka_tensor_stored(t), count, what);
        return -EINVAL;
    }
    return 0;
}

static int check_vec(const char *op, const char *name, const struct vka_tensor *t,
                     uint64_t count, const char *what)
{
    return check_vec_of(op, name, t, count, what, false);
}

/* y, dy or dx: x's shape, starting at a whole vec4 (the kernels read and write vec4s) */
static int check_act(const char *op, const char *name, const struct vka_tensor *t,
                     const struct vka_tensor *x)
{
    int ret = vka_op_check(op, name, t, VKA_LAYOUT_NHWC4, x->n, x->c, x->h, x->w);
    return ret < 0 ? ret : vka_op_check_vec4(op, name, t);
}

/* x, gamma, beta and (group_norm) the groups; fills the plan. */
static int plan_init(const char *op, const struct vka_op_args *a, bool gn, struct plan *pl)
{
    const struct vka_tensor *x = a->x[0];
    char what[48];
    int ret = vka_op_check(op, "x", x, VKA_LAYOUT_NHWC4, 0, 0, 0, 0);
    if (ret < 0)
        return ret;
    uint32_t G = gn ? a->p.norm.groups : x->c;
    if (gn && (G == 0 || x->c % G)) {
        vka_err("%s: groups=%u does not divide C=%u", op, G, x->c);
        return -EINVAL;
    }
    snprintf(what, sizeof(what), "C=%u", x->c);
    if ((a->x[1] && (ret = check_vec(op, "gamma", a->x[1], x->c, what)) < 0) ||
        (a->x[2] && (ret = check_vec(op, "beta", a->x[2], x->c, what)) < 0))
        return ret;
    const struct vka_norm_desc *d = &a->p.norm;
    if (d->act > VKA_NORM_ACT_LEAKY_RELU ||
        (d->act == VKA_NORM_ACT_LEAKY_RELU && !(d->slope >= 0 && d->slope <= 1))) {
        vka_err("%s: activation %d (slope %g) is none, relu or leaky_relu with a slope in "
                "[0, 1]", op, (int)d->act, d->slope);
        return -EINVAL;
    }
    uint64_t hw = (uint64_t)x->h * x->w, pixels = hw * x->n;
    if (pixels * x->cs > UINT32_MAX) {
        vka_err("%s: x (%u,%u,%u,%u) has more than 2^32 elements", op, x->n, x->c, x->h, x->w);
        return -EINVAL;
    }
    *pl = (struct plan){
        .op = op, .x = x, .C = x->c, .Cs = x->cs, .c4s = x->cs / 4,
        .S = gn ? x->n : 1, .K = G, .Cg = x->c / (G ? G : 1),
        .P = (uint32_t)(gn ? hw : pixels), .act = d->act, .slope = d->slope,
        .gamma = a->x[1], .beta = a->x[2],
    };
    return 0;
}

/* Saved (or running) statistics: S*K floats each. */
static int check_stats(const struct plan *pl, const char *name, const struct vka_tensor *t)
{
    char what[64];
    if (pl->S == 1)
        snprintf(what, sizeof(what), "C=%u", pl->C);
    else
        snprintf(what, sizeof(what), "N*G, N=%u G=%u", pl->S, pl->K);
    return check_vec(pl->op, name, t, (uint64_t)pl->S * pl->K, what);
}

static int scratch_create(struct vka_cmd *cmd, struct plan *pl, bool part, uint32_t ncoef)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    pl->pb = ctx->profile.wg_size * items(ctx);
    pl->nblk = pl->P ? (pl->P + pl->pb - 1) / pl->pb : 0;
    uint64_t nparts = part ? 2ull * pl->S * pl->nblk * pl->Cs : 0;
    pl->coef_off = (nparts + 63) & ~63ull;
    uint64_t total = pl->coef_off + (uint64_t)pl->S * ncoef * pl->Cs;
    struct vka_tensor t;
    int ret = vka_op_scratch(cmd, total, &t);
    pl->scratch = t.buf;
    pl->scratch_off = t.off;
    return ret;
}

static struct vka_tensor part_view(const struct plan *pl)
{
    return vka_tensor_flat(pl->scratch, pl->scratch_off, 2ull * pl->S * pl->nblk * pl->Cs);
}

static struct vka_tensor coef_view(const struct plan *pl, uint32_t ncoef)
{
    return vka_tensor_flat(pl->scratch, pl->scratch_off + pl->coef_off, (uint64_t)pl->S * ncoef * pl->Cs);
}

/* An optional storage binding: t, or (flag clear) a harmless stand-in. */
static int bind_opt(struct vka_ctx *ctx, const struct plan *pl, const struct vka_tensor *t,
                    uint32_t flag, uint32_t *flags, struct vka_binding *b, uint32_t *base)
{
    struct vka_tensor dummy = vka_tensor_flat(pl->scratch, pl->scratch_off + pl->coef_off, 4);
    if (t)
        *flags |= flag;
    else
        t = &dummy;
    if (t->dtype == VKA_EXACT)
        return vka_op_bind_exact(ctx, t, 0, vka_tensor_stored(t), b, base);
    return vka_op_bind_out(ctx, t, 0, vka_tensor_stored(t), b, base);
}

/* stats (dy NULL) or gradsum over every block, in dispatches whose x/dy ranges fit one
 * binding. mean/istd: the statistics gradsum normalises with (istd holds the running
 * variance when eval). */
static int record_reduce(struct vka_cmd *cmd, const struct plan *pl, const struct vka_tensor *dy,
                         const struct vka_tensor *mean, const struct vka_tensor *istd,
                         bool eval, float eps)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    struct vka_pipe *pipe;
    bool grad = dy != NULL;
    int ret = vka_pipe_get(ctx, &(struct vka_pipe_params){
        .shader = grad ? "norm_gradsum" : "norm_stats", .nbind = grad ? 7 : 2,
        .bind = { VKA_BIND_IN, grad ? VKA_BIND_IN : VKA_BIND_OUT, VKA_BIND_OUT, VKA_BIND_OUT,
                  VKA_BIND_OUT, VKA_BIND_OUT, VKA_BIND_OUT },
        .push_size = sizeof(struct reduce_push), .nspec = 2,
        .spec = { items(ctx), grad ? pl->act : 0 } }, &pipe);
    if (ret < 0)
        return ret;
    if (pl->c4s > ctx->info.max_wg_count[0]) {
        vka_err("%s: %u vec4s of channels pass the device's %u workgroups along x", pl->op,
                pl->c4s, ctx->info.max_wg_count[0]);
        return -EINVAL;
    }
    struct reduce_push pc = {
        .c4s = pl->c4s, .C = pl->C, .K = pl->K, .Cg = pl->Cg, .P = pl->P, .nblk = pl->nblk,
        .gbs = pl->S * pl->nblk, .flags = eval ? F_EVAL : 0, .eps = eps, .slope = pl->slope,
    };
    struct vka_tensor part = part_view(pl);
    struct vka_binding b[7];
    uint32_t pslot = grad ? 4 : 1;
    if ((ret = vka_op_bind_out(ctx, &part, 0, vka_tensor_stored(&part), &b[pslot],
                               &pc.part_base)) < 0)
        return ret;
    if (grad && ((ret = vka_op_bind_out(ctx, mean, 0, vka_tensor_stored(mean), &b[2],
                                        &pc.mean_base)) < 0 ||
                 (ret = vka_op_bind_out(ctx, istd, 0, vka_tensor_stored(istd), &b[3],
                                        &pc.istd_base)) < 0 ||
                 /* a fused activation's mask: z again, from gamma and beta too */
                 (ret = bind_opt(ctx, pl, pl->act ? pl->gamma : NULL, F_GAMMA, &pc.flags,
                                 &b[5], &pc.gamma_base)) < 0 ||
                 (ret = bind_opt(ctx, pl, pl->act ? pl->beta : NULL, F_BETA, &pc.flags,
                                 &b[6], &pc.beta_base)) < 0))
        return ret;
    uint64_t max_pixels = bind_limit(ctx) / pl->Cs;
    uint32_t max_groups = ctx->info.max_wg_count[1];
    uint32_t total = pl->S * pl->nblk;
    for (uint32_t gb0 = 0; gb0 < total;) {
        /* blocks are in pixel order: the range grows while it fits */
        uint64_t q0 = (uint64_t)(gb0 / pl->nblk) * pl->P + (uint64_t)(gb0 % pl->nblk) * pl->pb;
        uint64_t q1 = q0;
        uint32_t gb1 = gb0;
        while (gb1 < total && gb1 - gb0 < max_groups) {
            uint32_t s = gb1 / pl->nblk, first = (gb1 % pl->nblk) * pl->pb;
            uint64_t end = (uint64_t)s * pl->P + first +
                           (pl->P - first < pl->pb ? pl->P - first : pl->pb);
            if (end - q0 > max_pixels)
                break;
            q1 = end;
            gb1++;
        }
        if (gb1 == gb0) {
            vka_err("%s: a block of %u pixels x %u channels passes the device's storage "
                    "range of %" PRIu64 " bytes", pl->op, pl->pb, pl->Cs,
                    ctx->profile.max_binding);
            return -E2BIG;
        }
        pc.gb0 = gb0;
        pc.q0 = (uint32_t)q0;
        uint64_t first = q0 * pl->Cs, count = (q1 - q0) * pl->Cs;
        if ((ret = vka_op_bind_in(ctx, pl->x, first, count, &b[0], &pc.x_base)) < 0 ||
            (grad && (ret = vka_op_bind_in(ctx, dy, first, count, &b[1], &pc.dy_base)) < 0) ||
            (ret = vka_cmd_dispatch(cmd, pipe, b, &pc,
                                    (uint32_t[3]){ pl->c4s, gb1 - gb0, 1 })) < 0)
            return ret;
        gb0 = gb1;
    }
    return 0;
}

/* The pipeline of fin, finbwd or bn1: binding 0 read through the input path, the other
 * nbind - 1 storage outputs; the push constants are fin_push. */
static int pipe_fin(struct vka_ctx *ctx, const char *shader, uint32_t nbind, uint32_t act,
                    struct vka_pipe **pipe)
{
    struct vka_pipe_params pp = { .shader = shader, .nbind = nbind,
                                  .push_size = sizeof(struct fin_push), .nspec = 2,
                                  .spec = { items(ctx), act } };
    for (uint32_t i = 1; i < nbind; i++)
        pp.bind[i] = VKA_BIND_OUT;
    pp.bind[0] = VKA_BIND_IN;
    return vka_pipe_get(ctx, &pp, pipe);
}

/* The nt storage bindings b[1 .. nt] of fin or bn1 (bwd false: gamma, beta, mean, istd,
 * running mean, running var) or finbwd (gamma, mean, istd, dgamma, dbeta), their bases in
 * pc; flag[i] is set when t[i] is given; t[i] NULL with flag[i] 0 binds a stand-in. */
static int bind_fin_tensors(struct vka_ctx *ctx, const struct plan *pl, bool bwd,
                            struct fin_push *pc, const struct vka_tensor *const *t,
                            const uint32_t *flag, uint32_t nt, struct vka_binding *b)
{
    uint32_t *bases[] = { &pc->gamma_base, &pc->beta_base, &pc->mean_base, &pc->istd_base,
                          &pc->r0_base, &pc->r1_base };
    uint32_t *bwd_bases[] = { &pc->gamma_base, &pc->mean_base, &pc->istd_base, &pc->r0_base,
                              &pc->r1_base };
    for (uint32_t i = 0; i < nt; i++) {
        int ret = bind_opt(ctx, pl, t[i], flag[i], &pc->flags, &b[1 + i],
                           bwd ? bwd_bases[i] : bases[i]);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* fin (bwd false) or finbwd. t[] are the storage bindings after PART, in the shader's
 * order (bind_fin_tensors). */
static int record_fin(struct vka_cmd *cmd, const struct plan *pl, bool bwd, bool has_part,
                      struct fin_push *pc, const struct vka_tensor *const *t,
                      const uint32_t *flag, uint32_t nt)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    struct vka_pipe *pipe;
    uint32_t ncoef = bwd ? 4 : 3;
    struct vka_binding b[VKA_MAX_BINDINGS];
    /* exact dgamma/dbeta (--accumulate exact): t[3], t[4] of finbwd */
    bool exact = bwd && ((t[3] && t[3]->dtype == VKA_EXACT) || (t[4] && t[4]->dtype == VKA_EXACT));
    if (exact && ((t[3] && t[3]->dtype != VKA_EXACT) || (t[4] && t[4]->dtype != VKA_EXACT))) {
        vka_err("%s: dgamma and dbeta must both be exact accumulators or both f32", pl->op);
        return -EINVAL;
    }
    int ret = pipe_fin(ctx, !bwd ? "norm_fin" : exact ? "norm_finbwd_exact" : "norm_finbwd",
                       nt + 2, 0, &pipe);
    if (ret < 0)
        return ret;
    struct vka_tensor part = has_part ? part_view(pl) : coef_view(pl, ncoef);
    struct vka_tensor coef = coef_view(pl, ncoef);
    if ((ret = vka_op_bind_in(ctx, &part, 0, vka_tensor_stored(&part), &b[0],
                              &pc->part_base)) < 0 ||
        (ret = bind_fin_tensors(ctx, pl, bwd, pc, t, flag, nt, b)) < 0)
        return ret;
    if ((ret = vka_op_bind_out(ctx, &coef, 0, vka_tensor_stored(&coef), &b[nt + 1],
                               &pc->coef_base)) < 0)
        return ret;
    pc->c4s = pl->c4s;
    pc->C = pl->C;
    pc->S = pl->S;
    pc->K = pl->K;
    pc->Cg = pl->Cg;
    pc->P = pl->P;
    pc->nblk = pl->nblk;
    return vka_cmd_dispatch_1d(cmd, pipe, b, pc, bwd ? pl->K : (uint64_t)pl->S * pl->K);
}

/* apply (dy NULL: out = y) or dx (out = dx, +=; out may be dy itself, in place: dx = the
 * gradient, with the bits of += into a zeroed dx), in chunks of whole pixels. */
static int record_map(struct vka_cmd *cmd, const struct plan *pl, const struct vka_tensor *dy,
                      const struct vka_tensor *out)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    struct vka_pipe *pipe;
    bool grad = dy != NULL;
    uint32_t ncoef = grad ? 4 : 3, nb = grad ? 5 : 3, ob = grad ? 3 : 2;
    bool inplace = grad && dy->buf == out->buf && dy->off == out->off;
    struct vka_pipe_params pp = {
        .shader = grad ? "norm_dx" : "norm_apply", .nbind = nb,
        .bind = { VKA_BIND_IN, VKA_BIND_IN, VKA_BIND_IN, VKA_BIND_OUT, VKA_BIND_OUT },
        .push_size = sizeof(struct map_push), .nspec = 3, .spec = { 4, pl->act, inplace } };
    pp.bind[ob] = VKA_BIND_OUT;
    int ret = vka_pipe_get(ctx, &pp, &pipe);
    if (ret < 0)
        return ret;
    struct vka_tensor coef = coef_view(pl, ncoef);
    struct vka_binding b[5];
    struct map_push pc = { .c4s = pl->c4s, .C = pl->C, .P = pl->P, .slope = pl->slope };
    if ((ret = vka_op_bind_in(ctx, &coef, 0, vka_tensor_stored(&coef), &b[ob - 1],
                              &pc.coef_base)) < 0)
        return ret;
    /* an invocation takes ppi pixels of one segment, reading their coefficients once:
     * the largest power of two up to the profile's map_pixels that divides the segment
     * and fits a chunk, so that chunks and segments come in whole groups of ppi */
    pc.ppi = ctx->profile.map_pixels;
    while (pc.ppi > 1 && (pl->P % pc.ppi || bind_limit(ctx) / pl->Cs < pc.ppi))
        pc.ppi /= 2;
    uint64_t n = vka_tensor_stored(pl->x);
    uint64_t chunk = bind_limit(ctx) / pl->Cs / pc.ppi * pc.ppi * pl->Cs;
    if (chunk == 0) {
        vka_err("%s: one pixel of %u channels passes the device's storage range", pl->op,
                pl->Cs);
        return -E2BIG;
    }
    for (uint64_t first = 0; first < n; first += chunk) {
        uint64_t count = n - first < chunk ? n - first : chunk;
        pc.n4 = (uint32_t)(count / 4);
        pc.e0 = (uint32_t)(first / 4);
        if ((ret = vka_op_bind_in(ctx, pl->x, first, count, &b[0], &pc.x_base)) < 0 ||
            (grad && (ret = vka_op_bind_in(ctx, dy, first, count, &b[1], &pc.dy_base)) < 0) ||
            (ret = vka_op_bind_out(ctx, out, first, count, &b[ob], &pc.out_base)) < 0 ||
            (grad && (ret = bind_opt(ctx, pl, pl->act ? pl->beta : NULL, F_BETA, &pc.flags,
                                     &b[4], &pc.beta_base)) < 0) ||
            (ret = vka_cmd_dispatch_1d(cmd, pipe, b, &pc,
                                       (count / pl->Cs + pc.ppi - 1) / pc.ppi * pl->c4s)) < 0)
            return ret;
    }
    return 0;
}

/* A batch_norm forward in training whose pixels are one block (P <= pb), x and y within
 * one binding: statistics, their finish and y in one dispatch (norm_bn1, the three
 * kernels' expressions in their order: the same bits), one workgroup per channel vec4.
 * t[] as record_fin's (gamma, beta, mean, istd, running mean, running var). */
static int record_bn1(struct vka_cmd *cmd, const struct plan *pl, float eps, float momentum,
                      const struct vka_tensor *const *t, const uint32_t *flag,
                      const struct vka_tensor *y)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    struct vka_pipe *pipe;
    int ret = pipe_fin(ctx, "norm_bn1", 8, pl->act, &pipe);
    if (ret < 0)
        return ret;
    struct fin_push pc = { .c4s = pl->c4s, .C = pl->C, .S = 1, .K = pl->K, .Cg = 1, .P = pl->P,
                           .nblk = 1, .eps = eps, .momentum = momentum, .slope = pl->slope };
    struct vka_binding b[8];
    uint32_t ybase;
    if ((ret = vka_op_bind_in(ctx, pl->x, 0, vka_tensor_stored(pl->x), &b[0], &pc.x_base)) < 0 ||
        (ret = bind_fin_tensors(ctx, pl, false, &pc, t, flag, 6, b)) < 0 ||
        (ret = vka_op_bind_out(ctx, y, 0, vka_tensor_stored(y), &b[7], &ybase)) < 0)
        return ret;
    pc.y_base = ybase / 4;
    return vka_cmd_dispatch(cmd, pipe, b, &pc, (uint32_t[3]){ pl->c4s, 1, 1 });
}

/* ---- the ops ------------------------------------------------------------------------ */

/* fwd of both ops; bn_eval: normalise with state0/state1. y NULL: the statistics only
 * (saved, running), as a recomputation that needs only them runs it. */
static int norm_fwd(struct vka_cmd *cmd, const struct vka_op_args *a, const char *op, bool gn)
{
    struct plan pl;
    const struct vka_norm_desc *d = &a->p.norm;
    bool eval = !gn && !d->training;
    int ret = plan_init(op, a, gn, &pl);
    if (ret < 0 || (a->y && (ret = check_act(op, "y", a->y, pl.x)) < 0))
        return ret;
    if (!a->y && (eval || !a->saved[0] || !a->saved[1])) {
        vka_err("%s: no y, and no statistics to write instead", op);
        return -EINVAL;
    }
    for (int i = 0; i < 2; i++)
        if (a->saved[i] && !eval &&
            (ret = check_stats(&pl, i ? "saved1 (invstd)" : "saved0 (mean)", a->saved[i])) < 0)
            return ret;
    for (int i = 0; i < 2; i++) {
        const char *name = i ? "state1 (running var)" : "state0 (running mean)";
        if (gn && a->state[i]) {
            vka_err("%s: %s given, group_norm has no running statistics", op, name);
            return -EINVAL;
        }
        if (eval && !a->state[i]) {
            vka_err("%s: eval mode needs %s", op, name);
            return -EINVAL;
        }
        if (a->state[i] && (ret = check_stats(&pl, name, a->state[i])) < 0)
            return ret;
    }
    if (!gn && !eval && (uint64_t)pl.P < 2 && vka_tensor_numel(pl.x)) {
        vka_err("%s: training needs more than one value per channel, x is (%u,%u,%u,%u)", op,
                pl.x->n, pl.x->c, pl.x->h, pl.x->w);
        return -EINVAL;
    }
    if (!vka_tensor_numel(pl.x))
        return 0;
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    bool one_pass = ctx->profile.norm_one_pass && !gn && !eval && a->y &&
                    pl.P <= ctx->profile.wg_size * items(ctx) &&
                    pl.c4s <= ctx->info.max_wg_count[0] &&
                    vka_tensor_stored(pl.x) <= bind_limit(ctx);
    if ((ret = scratch_create(cmd, &pl, !eval && !one_pass, 3)) < 0)
        return ret;
    const struct vka_tensor *t[6] = { a->x[1], a->x[2], eval ? NULL : a->saved[0],
                                      eval ? NULL : a->saved[1], a->state[0], a->state[1] };
    const uint32_t flag[6] = { F_GAMMA, F_BETA, F_MEAN, F_ISTD, F_RMEAN, F_RVAR };
    if (one_pass)
        return record_bn1(cmd, &pl, d->eps, d->momentum, t, flag, a->y);
    if (!eval && (ret = record_reduce(cmd, &pl, NULL, NULL, NULL, false, d->eps)) < 0)
        return ret;
    struct fin_push pc = { .flags = eval ? F_EVAL : 0, .eps = d->eps, .momentum = d->momentum };
    if ((ret = record_fin(cmd, &pl, false, !eval, &pc, t, flag, 6)) < 0)
        return ret;
    return a->y ? record_map(cmd, &pl, NULL, a->y) : 0;
}

static int norm_bwd(struct vka_cmd *cmd, const struct vka_op_args *a, const char *op, bool gn)
{
    struct plan pl;
    const struct vka_norm_desc *d = &a->p.norm;
    bool eval = !gn && !d->training;
    char what[48];
    int ret = plan_init(op, a, gn, &pl);
    if (ret < 0 || (ret = check_act(op, "dy", a->dy, pl.x)) < 0 ||
        (a->dx[0] && (ret = check_act(op, "dx", a->dx[0], pl.x)) < 0))
        return ret;
    snprintf(what, sizeof(what), "C=%u", pl.C);
    if ((a->dx[1] && (ret = check_vec_of(op, "dgamma", a->dx[1], pl.C, what, true)) < 0) ||
        (a->dx[2] && (ret = check_vec_of(op, "dbeta", a->dx[2], pl.C, what, true)) < 0))
        return ret;
    const struct vka_tensor *const *st = eval ? a->state : a->saved;
    for (int i = 0; i < 2; i++) {
        const char *name = eval ? (i ? "state1 (running var)" : "state0 (running mean)")
                                : (i ? "saved1 (invstd)" : "saved0 (mean)");
        if (!st[i]) {
            vka_err("%s: %s is missing (%s)", op, name,
                    eval ? "eval mode normalises with the running statistics"
                         : "fwd writes it for bwd");
            return -EINVAL;
        }
        if ((ret = check_stats(&pl, name, st[i])) < 0)
            return ret;
    }
    if (!vka_tensor_numel(pl.x) || (!a->dx[0] && !a->dx[1] && !a->dx[2]))
        return 0;
    if ((ret = scratch_create(cmd, &pl, true, 4)) < 0 ||
        (ret = record_reduce(cmd, &pl, a->dy, st[0], st[1], eval, d->eps)) < 0)
        return ret;
    struct fin_push pc = { .flags = eval ? F_EVAL : 0, .eps = d->eps };
    const struct vka_tensor *t[5] = { a->x[1], st[0], st[1], a->dx[1], a->dx[2] };
    const uint32_t flag[5] = { F_GAMMA, 0, 0, F_DGAMMA, F_DBETA };
    if ((ret = record_fin(cmd, &pl, true, true, &pc, t, flag, 5)) < 0)
        return ret;
    return a->dx[0] ? record_map(cmd, &pl, a->dy, a->dx[0]) : 0;
}

/* Both norms keep the input's shape; plan_init checks everything else. */
static int norm_shape(const char *op, const struct vka_op_args *a, bool gn, uint32_t shape[4])
{
    struct plan pl;
    int ret = plan_init(op, a, gn, &pl);
    if (ret < 0)
        return ret;
    shape[0] = pl.x->n;
    shape[1] = pl.x->c;
    shape[2] = pl.x->h;
    shape[3] = pl.x->w;
    return 0;
}

int vka_batch_norm_shape(const struct vka_op_args *a, uint32_t shape[4])
{
    return norm_shape("batch_norm", a, false, shape);
}

int vka_batch_norm_fwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    return norm_fwd(cmd, a, "batch_norm_fwd", false);
}

int vka_batch_norm_bwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    return norm_bwd(cmd, a, "batch_norm_bwd", false);
}

int vka_group_norm_shape(const struct vka_op_args *a, uint32_t shape[4])
{
    return norm_shape("group_norm", a, true, shape);
}

int vka_group_norm_fwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    return norm_fwd(cmd, a, "group_norm_fwd", true);
}

int vka_group_norm_bwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    return norm_bwd(cmd, a, "group_norm_bwd", true);
}
