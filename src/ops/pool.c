/* max_pool2d, avg_pool2d, upsample_nearest and upsample_bilinear (shaders/pool.comp).
 *
 * x (N,C,H,W) and y (N,C,P,Q) are NHWC4. Pooling follows PyTorch's floor mode with a
 * square window k, stride and zero padding pad <= k/2 (so every window holds an input
 * element and avg_pool2d always divides by k*k, count_include_pad=True). Resizing follows
 * PyTorch with align_corners=False; nearest takes src = p*H/P in exact integers (see
 * tests/ref/ref.h). One invocation per output vec4; backward kernels gather over the
 * outputs that read each dx element, in a fixed order, without atomics.
 *
 * max_pool2d's saved0 (argmax) is FLAT f32, one float per element of y: the index
 * h*W + w of the window's first maximum inside its (n,c) plane (PyTorch's
 * return_indices), exact because H*W <= 2^24. It is stored in (N,P,Q,C) order, not the
 * NCHW order of a FLAT tensor, so that a range of output rows is contiguous.
 *
 * A dispatch covers a range of output rows (n, row), chosen so that neither the output
 * rows nor the input rows they read pass the profile's max_binding. */
#include <errno.h>
#include <inttypes.h>

#include "log.h"
#include "ops/ops.h"

enum pool_kind { POOL_MAX, POOL_AVG, POOL_NEAREST, POOL_BILINEAR };

/* (i + 2) * out_size and p * H stay below 2^32 in the kernels */
#define POOL_MAX_DIM 32768u

struct pool_geom {
    enum pool_kind kind;
    uint32_t n, c, h, w; /* x */
    uint32_t p, q;       /* y */
    uint32_t k, stride, pad;
};

struct pool_push {
    uint32_t count4;   /* output vec4s of this dispatch */
    uint32_t first4;   /* absolute index of the first of them */
    uint32_t out_base; /* index of its first float in the bound output */
    uint32_t in_delta; /* bound minus absolute vec4 index of the input (mod 2^32) */
    uint32_t a_delta;  /* bound minus absolute element index of the argmax (mod 2^32) */
    uint32_t c, c4;
    uint32_t h, w;
    uint32_t p, q;
    uint32_t k, stride, pad;
};

static const char *const shader_name[4][2] = {
    [POOL_MAX] = { "pool_max_fwd", "pool_max_bwd" },
    [POOL_AVG] = { "pool_avg_fwd", "pool_avg_bwd" },
    [POOL_NEAREST] = { "pool_nearest_fwd", "pool_nearest_bwd" },
    [POOL_BILINEAR] = { "pool_bilinear_fwd", "pool_bilinear_bwd" },
};

/* Checks x0 and the op's parameters and gives the output size. */
static int geom_of(const char *op, enum pool_kind kind, const struct vka_op_args *a,
                   struct pool_geom *g)
{
    int ret = vka_op_check(op, "x", a->x[0], VKA_LAYOUT_NHWC4, 0, 0, 0, 0);
    if (ret < 0)
        return ret;
    const struct vka_tensor *x = a->x[0];
    *g = (struct pool_geom){ .kind = kind, .n = x->n, .c = x->c, .h = x->h, .w = x->w };
    if (x->h > POOL_MAX_DIM || x->w > POOL_MAX_DIM) {
        vka_err("%s: x is %ux%u, sizes above %u are not supported", op, x->h, x->w,
                POOL_MAX_DIM);
        return -EINVAL;
    }
    if (kind == POOL_MAX || kind == POOL_AVG) {
        const struct vka_pool_desc *d = &a->p.pool;
        if (!d->k || !d->stride || d->pad > d->k / 2 || x->h + 2 * d->pad < d->k ||
            x->w + 2 * d->pad < d->k) {
            vka_err("%s: k=%u stride=%u pad=%u do not fit x (%u,%u,%u,%u): needs k >= 1, "
                    "stride >= 1, pad <= k/2, k <= H + 2*pad and k <= W + 2*pad", op, d->k,
                    d->stride, d->pad, x->n, x->c, x->h, x->w);
            return -EINVAL;
        }
        g->k = d->k;
        g->stride = d->stride;
        g->pad = d->pad;
        g->p = (x->h + 2 * d->pad - d->k) / d->stride + 1;
        g->q = (x->w + 2 * d->pad - d->k) / d->stride + 1;
    } else {
        const struct vka_resize_desc *d = &a->p.resize;
        if (!d->oh || !d->ow || d->oh > POOL_MAX_DIM || d->ow > POOL_MAX_DIM) {
            vka_err("%s: output size %ux%u, needs 1..%u on each side", op, d->oh, d->ow,
                    POOL_MAX_DIM);
            return -EINVAL;
        }
        g->p = d->oh;
        g->q = d->ow;
    }
    if (kind == POOL_MAX && (uint64_t)x->h * x->w > (1u << 24)) {
        vka_err("%s: x is %ux%u; argmax indices are floats, exact up to H*W = 2^24", op,
                x->h, x->w);
        return -EINVAL;
    }
    uint64_t cs = (x->c + 3) / 4 * 4;
    if (vka_tensor_stored(x) > UINT32_MAX || (uint64_t)x->n * g->p * g->q * cs > UINT32_MAX) {
        vka_err("%s: x (%u,%u,%u,%u) or its output (%u,%u,%u,%u) has 2^32 elements or more",
                op, x->n, x->c, x->h, x->w, x->n, x->c, g->p, g->q);
        return -EINVAL;
    }
    return 0;
}

static int check_argmax(const char *op, const struct vka_tensor *t, const struct pool_geom *g)
{
    int ret = vka_op_check(op, "saved0 (argmax)", t, VKA_LAYOUT_FLAT, 0, 0, 0, 0);
    if (ret < 0)
        return ret;
    uint64_t need = (uint64_t)g->n * g->c * g->p * g->q;
    if (vka_tensor_stored(t) != need) {
        vka_err("%s: saved0 (argmax) holds %" PRIu64 " floats, needs %" PRIu64 ", one per "
                "element of y (%u,%u,%u,%u)", op, vka_tensor_stored(t), need, g->n, g->c,
                g->p, g->q);
        return -EINVAL;
    }
    return 0;
}

/* Rows [lo, hi) of the kernel's input (x in fwd, dy in bwd) that output row r reads; the
 * same bounds as the kernels' loops, widened to one row at least. */
static void input_rows(const struct pool_geom *g, bool bwd, uint32_t r, uint32_t *lo,
                       uint32_t *hi)
{
    int64_t in_h = bwd ? g->p : g->h, a, b;
    if (g->kind == POOL_MAX || g->kind == POOL_AVG) {
        int64_t top = (int64_t)r + g->pad;
        if (!bwd) {
            a = (int64_t)r * g->stride - g->pad;
            b = a + g->k;
        } else {
            a = top + 1 > g->k ? (top + 1 - g->k + g->stride - 1) / g->stride : 0;
            b = top / g->stride + 1;
        }
    } else if (g->kind == POOL_NEAREST) {
        if (!bwd) {
            a = (int64_t)r * g->h / g->p;
            b = a + 1;
        } else {
            a = ((int64_t)r * g->p + g->h - 1) / g->h;
            b = ((int64_t)(r + 1) * g->p + g->h - 1) / g->h;
        }
    } else if (!bwd) {
        /* taps i0 >= floor(r*H/P) - 1 and i1 <= floor((r+1)*H/P) + 1, each by a margin of
         * half a cell over the float rounding of the source position */
        a = (int64_t)r * g->h / g->p - 1;
        b = (int64_t)(r + 1) * g->h / g->p + 2;
    } else {
        /* bilinear_users() in pool.comp */
        a = r >= 1 ? (int64_t)(r - 1) * g->p / g->h - 1 : 0;
        b = ((int64_t)(r + 2) * g->p + g->h - 1) / g->h + 1;
    }
    a = a < 0 ? 0 : a > in_h - 1 ? in_h - 1 : a;
    b = b < a + 1 ? a + 1 : b > in_h ? in_h : b;
    *lo = (uint32_t)a;
    *hi = (uint32_t)b;
}

/* Records the kernel over every output row, in ranges that fit one binding each.
 * in: x or dy; out: y or dx; argmax: saved0 of max_pool2d, else NULL. */
static int record(struct vka_cmd *cmd, const struct pool_geom *g, bool bwd,
                  const struct vka_tensor *in, const struct vka_tensor *out,
                  const struct vka_tensor *argmax)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    struct vka_pipe *pipe;
    int ret = vka_pipe_get(ctx, &(struct vka_pipe_params){
        .shader = shader_name[g->kind][bwd], .nbind = argmax ? 3 : 2,
        .bind = { VKA_BIND_IN, VKA_BIND_OUT, VKA_BIND_OUT },
        .push_size = sizeof(struct pool_push) }, &pipe);
    if (ret < 0)
        return ret;
    const uint32_t c4 = (g->c + 3) / 4;
    const uint32_t out_h = bwd ? g->h : g->p, out_w = bwd ? g->w : g->q;
    const uint32_t in_h = bwd ? g->p : g->h, in_w = bwd ? g->q : g->w;
    const uint64_t out_row = (uint64_t)out_w * c4 * 4, in_row = (uint64_t)in_w * c4 * 4;
    const uint64_t a_row = (uint64_t)g->q * g->c; /* argmax rows follow y's */
    const uint64_t rows = (uint64_t)g->n * out_h;
    /* elements a binding may span, less its 256-byte aligned start and rounded end */
    const uint64_t limit = ctx->profile.max_binding / 4 > 128 ? ctx->profile.max_binding / 4 - 80
                                                              : 48;
    const uint64_t step = limit / out_row ? limit / out_row : 1;

    for (uint64_t r0 = 0, r1; r0 < rows; r0 = r1) {
        uint64_t in_first, in_end, a_first, a_end;
        r1 = rows - r0 < step ? rows : r0 + step;
        for (;;) {
            uint32_t lo, hi, unused;
            uint64_t n0 = r0 / out_h, n1 = (r1 - 1) / out_h;
            input_rows(g, bwd, (uint32_t)(r0 % out_h), &lo, &unused);
            input_rows(g, bwd, (uint32_t)((r1 - 1) % out_h), &unused, &hi);
            in_first = n0 * in_h + lo;
            in_end = n1 * in_h + hi;
            a_first = (bwd ? in_first : r0) * a_row;
            a_end = (bwd ? in_end : r1) * a_row;
            in_first *= in_row;
            in_end *= in_row;
            if (r1 - r0 == 1 || (in_end - in_first <= limit && (!argmax || a_end - a_first <= limit)))
                break;
            r1 = r0 + (r1 - r0) / 2;
        }
        struct pool_push pc = {
            .count4 = (uint32_t)((r1 - r0) * out_w * c4), .first4 = (uint32_t)(r0 * out_w * c4),
            .c = g->c, .c4 = c4, .h = g->h, .w = g->w, .p = g->p, .q = g->q,
            .k = g->k, .stride = g->stride, .pad = g->pad,
        };
        struct vka_binding b[3];
        uint32_t in_base4, a_base;
        if ((ret = vka_op_bind_in(ctx, in, in_first, in_end - in_first, &b[0], &in_base4)) < 0 ||
            (ret = vka_op_bind_out(ctx, out, r0 * out_row, (r1 - r0) * out_row, &b[1],
                                   &pc.out_base)) < 0 ||
            (argmax && (ret = vka_op_bind_out(ctx, argmax, a_first, a_end - a_first, &b[2],
                                              &a_base)) < 0))
            return ret;
        pc.in_delta = in_base4 - (uint32_t)(in_first / 4);
        pc.a_delta = argmax ? a_base - (uint32_t)a_first : 0;
        if ((ret = vka_cmd_dispatch_1d(cmd, pipe, b, &pc, pc.count4)) < 0)
            return ret;
    }
    return 0;
}

static int shape(const char *op, enum pool_kind kind, const struct vka_op_args *a,
                 uint32_t shape[4])
{
    struct pool_geom g;
    int ret = geom_of(op, kind, a, &g);
    if (ret < 0)
        return ret;
    shape[0] = g.n;
    shape[1] = g.c;
    shape[2] = g.p;
    shape[3] = g.q;
    return 0;
}

static int fwd(struct vka_cmd *cmd, const char *op, enum pool_kind kind,
               const struct vka_op_args *a)
{
    struct pool_geom g;
    int ret = geom_of(op, kind, a, &g);
    if (ret < 0 || (ret = vka_op_check(op, "y", a->y, VKA_LAYOUT_NHWC4, g.n, g.c, g.p, g.q)) < 0 ||
        (ret = vka_op_check_vec4(op, "y", a->y)) < 0 ||
        (kind == POOL_MAX && (ret = check_argmax(op, a->saved[0], &g)) < 0))
        return ret;
    return record(cmd, &g, false, a->x[0], a->y, kind == POOL_MAX ? a->saved[0] : NULL);
}

static int bwd(struct vka_cmd *cmd, const char *op, enum pool_kind kind,
               const struct vka_op_args *a)
{
    struct pool_geom g;
    int ret = geom_of(op, kind, a, &g);
    if (ret < 0 || (ret = vka_op_check(op, "dy", a->dy, VKA_LAYOUT_NHWC4, g.n, g.c, g.p, g.q)) < 0 ||
        (kind == POOL_MAX && (ret = check_argmax(op, a->saved[0], &g)) < 0))
        return ret;
    if (!a->dx[0])
        return 0;
    if ((ret = vka_op_check(op, "dx", a->dx[0], VKA_LAYOUT_NHWC4, g.n, g.c, g.h, g.w)) < 0 ||
        (ret = vka_op_check_vec4(op, "dx", a->dx[0])) < 0)
        return ret;
    return record(cmd, &g, true, a->dy, a->dx[0], kind == POOL_MAX ? a->saved[0] : NULL);
}

int vka_max_pool2d_shape(const struct vka_op_args *a, uint32_t s[4])
{
    return shape("max_pool2d", POOL_MAX, a, s);
}

int vka_max_pool2d_fwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    return fwd(cmd, "max_pool2d_fwd", POOL_MAX, a);
}

int vka_max_pool2d_bwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    return bwd(cmd, "max_pool2d_bwd", POOL_MAX, a);
}

int vka_avg_pool2d_shape(const struct vka_op_args *a, uint32_t s[4])
{
    return shape("avg_pool2d", POOL_AVG, a, s);
}

int vka_avg_pool2d_fwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    return fwd(cmd, "avg_pool2d_fwd", POOL_AVG, a);
}

int vka_avg_pool2d_bwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    return bwd(cmd, "avg_pool2d_bwd", POOL_AVG, a);
}

int vka_upsample_nearest_shape(const struct vka_op_args *a, uint32_t s[4])
{
    return shape("upsample_nearest", POOL_NEAREST, a, s);
}

int vka_upsample_nearest_fwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    return fwd(cmd, "upsample_nearest_fwd", POOL_NEAREST, a);
}

int vka_upsample_nearest_bwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    return bwd(cmd, "upsample_nearest_bwd", POOL_NEAREST, a);
}

int vka_upsample_bilinear_shape(const struct vka_op_args *a, uint32_t s[4])
{
    return shape("upsample_bilinear", POOL_BILINEAR, a, s);
}

int vka_upsample_bilinear_fwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    return fwd(cmd, "upsample_bilinear_fwd", POOL_BILINEAR, a);
}

int vka_upsample_bilinear_bwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    return bwd(cmd, "upsample_bilinear_bwd", POOL_BILINEAR, a);
}
