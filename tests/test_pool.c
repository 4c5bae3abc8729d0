/* max_pool2d, avg_pool2d, upsample_nearest and upsample_bilinear (src/ops/pool.c) against
 * the double references of tests/ref, on both load paths: fixed cases (U-Net's 2x2/2,
 * overlapping and gapped windows, padding, 1x1 spatial, up-, down- and mixed resizes)
 * plus random shapes, channel counts that are not multiples of 4, batch 1 and 5.
 * Outputs start as NaN (unwritten elements fail), dx starts random (the += rule), padding
 * channels must read 0. Also: argmax ties and NaNs, dispatches split by a small
 * max_binding (bit-identical to one dispatch), micro-batch splits of a batch of 8
 * (bit-identical), and refusals of bad shapes. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ops/ops.h"
#include "ref/ref.h"

enum { OP_MAX, OP_AVG, OP_NEAREST, OP_BILINEAR, OP_COUNT };

static const char *const op_name[OP_COUNT] = { "max_pool2d", "avg_pool2d",
                                               "upsample_nearest", "upsample_bilinear" };
static const vka_op_shape_fn shape_fn[OP_COUNT] = {
    vka_max_pool2d_shape, vka_avg_pool2d_shape, vka_upsample_nearest_shape,
    vka_upsample_bilinear_shape };
static const vka_op_rec_fn fwd_fn[OP_COUNT] = {
    vka_max_pool2d_fwd, vka_avg_pool2d_fwd, vka_upsample_nearest_fwd,
    vka_upsample_bilinear_fwd };
static const vka_op_rec_fn bwd_fn[OP_COUNT] = {
    vka_max_pool2d_bwd, vka_avg_pool2d_bwd, vka_upsample_nearest_bwd,
    vka_upsample_bilinear_bwd };

struct pcase {
    int op;
    uint32_t n, c, h, w;
    uint32_t k, s, pad; /* pooling */
    uint32_t oh, ow;    /* resizing */
};

/* Host data of one run, NCHW; arg in the kernel's (N,P,Q,C) order. */
struct io {
    uint32_t p, q;
    float *x, *dy, *dx0; /* inputs */
    float *y, *arg, *dx; /* results */
};

static bool pooling(const struct pcase *t)
{
    return t->op == OP_MAX || t->op == OP_AVG;
}

static struct vka_op_args args_of(const struct pcase *t)
{
    struct vka_op_args a = { 0 };
    if (pooling(t))
        a.p.pool = (struct vka_pool_desc){ t->k, t->s, t->pad };
    else
        a.p.resize = (struct vka_resize_desc){ t->oh, t->ow };
    return a;
}

static void describe(const struct pcase *t, const char *load, char *buf, size_t size)
{
    if (pooling(t))
        snprintf(buf, size, "%s N=%u C=%u H=%u W=%u k=%u stride=%u pad=%u (%s)",
                 op_name[t->op], t->n, t->c, t->h, t->w, t->k, t->s, t->pad, load);
    else
        snprintf(buf, size, "%s N=%u C=%u %ux%u -> %ux%u (%s)", op_name[t->op], t->n, t->c,
                 t->h, t->w, t->oh, t->ow, load);
}

/* The output size from the op's shape rule, checked against the reference's. */
static void out_size(const struct pcase *t, uint32_t *p, uint32_t *q)
{
    struct vka_tensor x = { .n = t->n, .c = t->c, .h = t->h, .w = t->w, .cs = (t->c + 3) / 4 * 4,
                            .layout = VKA_LAYOUT_NHWC4, .dtype = VKA_F32 };
    struct vka_buf fake = { .size = vka_tensor_stored(&x) * 4 };
    x.buf = &fake;
    struct vka_op_args a = args_of(t);
    a.x[0] = &x;
    uint32_t s[4];
    cr_assert_eq(shape_fn[t->op](&a, s), 0, "%s", vka_last_error());
    int P = (int)t->oh, Q = (int)t->ow;
    if (pooling(t))
        ref_pool2d_out_size(&(struct ref_pool){ (int)t->n, (int)t->c, (int)t->h, (int)t->w,
                                                (int)t->k, (int)t->s, (int)t->pad }, &P, &Q);
    cr_assert(s[0] == t->n && s[1] == t->c && s[2] == (uint32_t)P && s[3] == (uint32_t)Q,
              "%s: shape (%u,%u,%u,%u), reference %dx%d", op_name[t->op], s[0], s[1], s[2],
              s[3], P, Q);
    *p = s[2];
    *q = s[3];
}

/* Random inputs. ties: x on a grid of 5 values, so windows hold equal maxima. */
static void io_init(const struct pcase *t, struct io *io, bool ties)
{
    out_size(t, &io->p, &io->q);
    size_t nx = (size_t)t->n * t->c * t->h * t->w, ny = (size_t)t->n * t->c * io->p * io->q;
    io->x = test_rand_floats(nx, -1, 1);
    if (ties)
        for (size_t i = 0; i < nx; i++)
            io->x[i] = roundf(io->x[i] * 2) / 2;
    io->dy = test_rand_floats(ny, -1, 1);
    io->dx0 = test_rand_floats(nx, -1, 1);
    io->y = malloc(ny * 4 + 4);
    io->arg = malloc(ny * 4 + 4);
    io->dx = malloc(nx * 4 + 4);
}

static void io_free(struct io *io)
{
    free(io->x);
    free(io->dy);
    free(io->dx0);
    free(io->y);
    free(io->arg);
    free(io->dx);
}

/* A view of samples [n0, n0 + cnt) of an NHWC4 activation. */
static struct vka_tensor act_view(const struct vka_tensor *t, uint32_t n0, uint32_t cnt)
{
    struct vka_tensor v = *t;
    v.owns_buf = false;
    v.off += (uint64_t)n0 * t->h * t->w * t->cs;
    v.n = cnt;
    return v;
}

/* fwd then bwd in one submission, the batch split into micro-batches of split[i]
 * samples (split NULL: one); results into io. */
static void run_op(struct vka_cmd *cmd, const struct pcase *t, struct io *io,
                   const uint32_t *split, int nsplit)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    const uint32_t P = io->p, Q = io->q;
    const uint64_t per_arg = (uint64_t)t->c * P * Q;
    struct vka_tensor tx = test_act(ctx, t->n, t->c, t->h, t->w, io->x);
    struct vka_tensor ty = test_act(ctx, t->n, t->c, P, Q, NULL);
    struct vka_tensor targ = test_flat(ctx, t->n * per_arg, NULL);
    struct vka_tensor tdy = test_act(ctx, t->n, t->c, P, Q, io->dy);
    struct vka_tensor tdx = test_act(ctx, t->n, t->c, t->h, t->w, io->dx0);
    uint32_t whole = t->n;
    if (!split) {
        split = &whole;
        nsplit = 1;
    }
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t i = 0, n0 = 0; i < (uint32_t)nsplit; n0 += split[i++]) {
            struct vka_tensor x = act_view(&tx, n0, split[i]), y = act_view(&ty, n0, split[i]);
            struct vka_tensor dy = act_view(&tdy, n0, split[i]);
            struct vka_tensor dx = act_view(&tdx, n0, split[i]);
            struct vka_tensor arg = vka_tensor_flat(targ.buf, targ.off + n0 * per_arg,
                                                    split[i] * per_arg);
            struct vka_op_args a = args_of(t);
            a.x[0] = &x;
            a.y = &y;
            a.saved[0] = t->op == OP_MAX ? &arg : NULL;
            a.dy = &dy;
            a.dx[0] = &dx;
            int ret = pass ? bwd_fn[t->op](cmd, &a) : fwd_fn[t->op](cmd, &a);
            cr_assert_eq(ret, 0, "%s: %s", op_name[t->op], vka_last_error());
        }
    test_run(cmd);
    test_act_read(&ty, io->y);
    test_act_read(&tdx, io->dx);
    if (t->op == OP_MAX)
        cr_assert_eq(vka_tensor_download(&targ, io->arg), 0, "%s", vka_last_error());
    vka_tensor_destroy(&tx);
    vka_tensor_destroy(&ty);
    vka_tensor_destroy(&targ);
    vka_tensor_destroy(&tdy);
    vka_tensor_destroy(&tdx);
}

/* The reference's argmax rule: first maximum in row-major window order, a NaN takes over. */
static uint32_t first_max(const struct pcase *t, const float *plane, uint32_t p, uint32_t q)
{
    int best = -1;
    for (int r = 0; r < (int)t->k; r++)
        for (int s = 0; s < (int)t->k; s++) {
            int h = (int)(p * t->s + r) - (int)t->pad, w = (int)(q * t->s + s) - (int)t->pad;
            if (h < 0 || h >= (int)t->h || w < 0 || w >= (int)t->w)
                continue;
            float v = plane[h * (int)t->w + w];
            if (best < 0 || v > plane[best] || isnan(v))
                best = h * (int)t->w + w;
        }
    return (uint32_t)best;
}

/* Most outputs that read one input element along an axis: the length of a dx sum. */
static uint32_t users(const struct pcase *t, uint32_t in, uint32_t out)
{
    if (pooling(t))
        return (t->k + t->s - 1) / t->s;
    return (out + in - 1) / in + (t->op == OP_BILINEAR ? 2 : 0);
}

static void check_ref(const struct pcase *t, const struct io *io, const char *what)
{
    const uint32_t P = io->p, Q = io->q;
    const size_t nx = (size_t)t->n * t->c * t->h * t->w, ny = (size_t)t->n * t->c * P * Q;
    double *x = test_to_double(io->x, nx), *dy = test_to_double(io->dy, ny);
    double *dx = test_to_double(io->dx0, nx), *y = malloc(ny * 8 + 8);
    struct ref_pool rp = { (int)t->n, (int)t->c, (int)t->h, (int)t->w, (int)t->k, (int)t->s,
                           (int)t->pad };
    struct ref_resize rr = { (int)t->n, (int)t->c, (int)t->h, (int)t->w, (int)P, (int)Q };
    const double maxdim = fmax(fmax(t->h, t->w), fmax(P, Q));
    char msg[200];

    switch (t->op) {
    case OP_MAX:
        ref_max_pool2d_fwd(&rp, x, y);
        ref_max_pool2d_bwd(&rp, x, dy, dx);
        break;
    case OP_AVG:
        ref_avg_pool2d_fwd(&rp, x, y);
        ref_avg_pool2d_bwd(&rp, dy, dx);
        break;
    case OP_NEAREST:
        ref_upsample_nearest_fwd(&rr, x, y);
        ref_upsample_nearest_bwd(&rr, dy, dx);
        break;
    default:
        ref_upsample_bilinear_fwd(&rr, x, y);
        ref_upsample_bilinear_bwd(&rr, dy, dx);
    }

    snprintf(msg, sizeof(msg), "%s fwd", what);
    if (t->op == OP_MAX || t->op == OP_NEAREST) {
        /* a copy of one input element: exact, NaN included */
        for (size_t i = 0; i < ny; i++)
            cr_assert(io->y[i] == y[i] || (isnan(io->y[i]) && isnan(y[i])),
                      "%s: element %zu: got %.9g, reference %.9g", msg, i, io->y[i], y[i]);
    } else if (t->op == OP_AVG) {
        /* k*k float adds of |x| <= 1 (partials <= k*k, each rounded by 2^-24 of itself),
         * then a division by k*k: at most (k*k + 3) * 2^-24 with a margin for the
         * division's rounding */
        test_assert_close(msg, io->y, y, ny, ldexp(t->k * t->k + 3, -24), 0);
    } else {
        /* source positions in float: up to maxdim cells, off by 2^-24 of that, move the
         * weights by as much, times |x1 - x0| <= 2 on each axis; plus 6 roundings of
         * values <= 1 */
        test_assert_close(msg, io->y, y, ny, ldexp(8 + 8 * maxdim, -24), 0);
    }

    if (t->op == OP_MAX)
        for (uint32_t n = 0; n < t->n; n++)
            for (uint32_t c = 0; c < t->c; c++)
                for (uint32_t p = 0; p < P; p++)
                    for (uint32_t q = 0; q < Q; q++) {
                        const float *plane = io->x + ((size_t)n * t->c + c) * t->h * t->w;
                        uint32_t want = first_max(t, plane, p, q);
                        float got = io->arg[(((size_t)n * P + p) * Q + q) * t->c + c];
                        cr_assert_eq(got, (float)want, "%s argmax (n=%u c=%u p=%u q=%u): got "
                                     "%g, reference %u", what, n, c, p, q, got, want);
                    }

    /* dx = dx0 + a sum of m terms (dy <= 1 times weights <= 1): m + 1 float adds, each
     * rounding a partial <= m + 1 by 2^-24; bilinear adds the weights' float error
     * (above) on each of the m terms */
    uint32_t m = users(t, t->h, P) * users(t, t->w, Q);
    double atol = ldexp((m + 2.0) * (m + 2.0) + (t->op == OP_BILINEAR ? 8.0 * m * maxdim : 0), -24);
    snprintf(msg, sizeof(msg), "%s bwd", what);
    test_assert_close(msg, io->dx, dx, nx, atol, 0);
    free(x);
    free(dy);
    free(dx);
    free(y);
}

static void check_case(struct vka_cmd *cmd, const struct pcase *t, const char *load, bool ties)
{
    char what[160];
    describe(t, load, what, sizeof(what));
    struct io io;
    io_init(t, &io, ties);
    run_op(cmd, t, &io, NULL, 0);
    check_ref(t, &io, what);
    io_free(&io);
}

static struct pcase rand_case(int op)
{
    static const uint32_t chans[] = { 1, 3, 4, 5, 7, 13 };
    struct pcase t = { .op = op, .n = test_rand_range(0, 1) ? 5 : 1,
                       .c = chans[test_rand_range(0, 5)] };
    if (op == OP_MAX || op == OP_AVG) {
        t.k = test_rand_range(1, 4);
        t.s = test_rand_range(1, 3);
        t.pad = test_rand_range(0, t.k / 2);
        uint32_t lo = t.k > 2 * t.pad ? t.k - 2 * t.pad : 1;
        t.h = test_rand_range(lo, 12);
        t.w = test_rand_range(lo, 12);
    } else {
        t.h = test_rand_range(1, 9);
        t.w = test_rand_range(1, 9);
        t.oh = test_rand_range(1, 20);
        t.ow = test_rand_range(1, 20);
    }
    return t;
}

static struct vka_ctx *ctx_for(const char *load)
{
    setenv("VKACCUM_LOAD_PATH", load, 1);
    return test_ctx();
}

static void check_op(int op, const char *load)
{
    /* pooling: U-Net's 2x2/2, odd sizes floor-dropping a row and column, overlapping
     * windows (stride < k) with padding, gaps (stride > k), 1x1 spatial */
    static const struct pcase pool_cases[] = {
        { 0, 1, 4, 8, 8, 2, 2, 0, 0, 0 },   { 0, 5, 3, 7, 5, 2, 2, 0, 0, 0 },
        { 0, 1, 13, 9, 11, 3, 1, 1, 0, 0 }, { 0, 5, 5, 10, 7, 3, 2, 1, 0, 0 },
        { 0, 1, 7, 6, 9, 2, 1, 0, 0, 0 },   { 0, 1, 1, 9, 8, 1, 2, 0, 0, 0 },
        { 0, 5, 5, 11, 6, 4, 3, 2, 0, 0 },  { 0, 5, 3, 1, 1, 1, 1, 0, 0, 0 },
        { 0, 1, 7, 1, 1, 2, 2, 1, 0, 0 },   { 0, 1, 5, 2, 2, 2, 2, 0, 0, 0 },
    };
    /* resizing: 2x up, up by odd factors, down, mixed, from and to 1x1, identity */
    static const struct pcase resize_cases[] = {
        { 0, 1, 4, 8, 8, 0, 0, 0, 16, 16 }, { 0, 5, 3, 5, 7, 0, 0, 0, 13, 3 },
        { 0, 1, 13, 9, 9, 0, 0, 0, 4, 4 },  { 0, 5, 1, 1, 1, 0, 0, 0, 3, 5 },
        { 0, 1, 7, 6, 6, 0, 0, 0, 17, 17 }, { 0, 1, 5, 3, 3, 0, 0, 0, 1, 1 },
        { 0, 5, 5, 4, 6, 0, 0, 0, 4, 6 },   { 0, 1, 3, 7, 2, 0, 0, 0, 10, 9 },
    };
    struct vka_ctx *ctx = ctx_for(load);
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    bool pool = op == OP_MAX || op == OP_AVG;
    const struct pcase *cases = pool ? pool_cases : resize_cases;
    size_t ncases = pool ? sizeof(pool_cases) / sizeof(pool_cases[0])
                         : sizeof(resize_cases) / sizeof(resize_cases[0]);
    for (size_t i = 0; i < ncases + 6; i++) {
        struct pcase t = i < ncases ? cases[i] : rand_case(op);
        t.op = op;
        check_case(cmd, &t, load, op == OP_MAX && i % 2);
    }
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

Test(pool, max_pool2d_texel) { test_seed("max_pool2d_texel"); check_op(OP_MAX, "texel"); }
Test(pool, max_pool2d_storage) { test_seed("max_pool2d_storage"); check_op(OP_MAX, "storage"); }
Test(pool, avg_pool2d_texel) { test_seed("avg_pool2d_texel"); check_op(OP_AVG, "texel"); }
Test(pool, avg_pool2d_storage) { test_seed("avg_pool2d_storage"); check_op(OP_AVG, "storage"); }
Test(pool, nearest_texel) { test_seed("nearest_texel"); check_op(OP_NEAREST, "texel"); }
Test(pool, nearest_storage) { test_seed("nearest_storage"); check_op(OP_NEAREST, "storage"); }
Test(pool, bilinear_texel) { test_seed("bilinear_texel"); check_op(OP_BILINEAR, "texel"); }
Test(pool, bilinear_storage) { test_seed("bilinear_storage"); check_op(OP_BILINEAR, "storage"); }

/* NaNs in max_pool2d windows: y is NaN where the reference's is, the argmax the last NaN
 * (a NaN takes over), and dy follows it. */
Test(pool, max_pool2d_nan)
{
    test_seed("max_pool2d_nan");
    struct vka_ctx *ctx = ctx_for("texel");
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    const struct pcase t = { OP_MAX, 5, 5, 9, 8, 3, 2, 1, 0, 0 };
    struct io io;
    io_init(&t, &io, true);
    size_t nx = (size_t)t.n * t.c * t.h * t.w;
    for (size_t i = 0; i < nx / 8; i++)
        io.x[test_rand_range(0, (uint32_t)nx - 1)] = NAN;
    run_op(cmd, &t, &io, NULL, 0);
    check_ref(&t, &io, "max_pool2d with NaNs (texel)");
    io_free(&io);
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

/* Rows split across dispatches by a small max_binding (chunks crossing samples; on the
 * storage path the inputs are bound per chunk too) give the bits of one dispatch. */
static void check_chunked(const char *load)
{
    static const struct pcase cases[] = {
        { OP_MAX, 3, 5, 21, 21, 2, 2, 0, 0, 0 },     { OP_MAX, 3, 5, 21, 19, 3, 1, 1, 0, 0 },
        { OP_AVG, 3, 5, 21, 21, 3, 2, 1, 0, 0 },     { OP_NEAREST, 3, 5, 21, 21, 0, 0, 0, 9, 30 },
        { OP_NEAREST, 3, 5, 7, 8, 0, 0, 0, 22, 20 }, { OP_BILINEAR, 3, 5, 21, 17, 0, 0, 0, 40, 9 },
        { OP_BILINEAR, 3, 5, 30, 11, 0, 0, 0, 8, 21 },
    };
    struct vka_ctx *ctx = ctx_for(load);
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    const uint64_t full = ctx->profile.max_binding;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct pcase *t = &cases[i];
        char what[160];
        describe(t, load, what, sizeof(what));
        struct io one, split;
        io_init(t, &one, t->op == OP_MAX);
        split = one;
        size_t nx = (size_t)t->n * t->c * t->h * t->w, ny = (size_t)t->n * t->c * one.p * one.q;
        split.y = malloc(ny * 4 + 4);
        split.arg = malloc(ny * 4 + 4);
        split.dx = malloc(nx * 4 + 4);
        run_op(cmd, t, &one, NULL, 0);
        /* 4 KiB: a few rows of these shapes, against tensors of 20 KiB and more */
        ctx->profile.max_binding = 4096;
        run_op(cmd, t, &split, NULL, 0);
        ctx->profile.max_binding = full;
        check_ref(t, &split, what);
        cr_assert_eq(memcmp(one.y, split.y, ny * 4), 0, "%s: y differs when chunked", what);
        cr_assert_eq(memcmp(one.dx, split.dx, nx * 4), 0, "%s: dx differs when chunked", what);
        if (t->op == OP_MAX)
            cr_assert_eq(memcmp(one.arg, split.arg, ny * 4), 0, "%s: argmax differs", what);
        free(split.y);
        free(split.arg);
        free(split.dx);
        io_free(&one);
    }
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

Test(pool, chunked_texel) { test_seed("chunked_texel"); check_chunked("texel"); }
Test(pool, chunked_storage) { test_seed("chunked_storage"); check_chunked("storage"); }

/* A batch of 8 run as 8, 4+4, 3+3+2 and 1x8 (views at sample offsets into the same
 * tensors, dx pre-filled with the same values) gives bit-identical y, argmax and dx. */
Test(pool, microbatch_bitwise)
{
    test_seed("microbatch_bitwise");
    static const struct pcase cases[] = {
        { OP_MAX, 8, 5, 9, 9, 3, 2, 1, 0, 0 },
        { OP_AVG, 8, 5, 9, 9, 3, 2, 1, 0, 0 },
        { OP_NEAREST, 8, 5, 9, 9, 0, 0, 0, 13, 4 },
        { OP_BILINEAR, 8, 5, 9, 9, 0, 0, 0, 20, 6 },
    };
    static const uint32_t s44[] = { 4, 4 }, s332[] = { 3, 3, 2 };
    static const uint32_t s1[] = { 1, 1, 1, 1, 1, 1, 1, 1 };
    static const struct { const uint32_t *s; int n; } splits[] = {
        { s44, 2 }, { s332, 3 }, { s1, 8 } };
    struct vka_ctx *ctx = ctx_for("texel");
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct pcase *t = &cases[i];
        struct io whole, part;
        io_init(t, &whole, t->op == OP_MAX);
        size_t nx = (size_t)t->n * t->c * t->h * t->w, ny = (size_t)t->n * t->c * whole.p * whole.q;
        run_op(cmd, t, &whole, NULL, 0);
        check_ref(t, &whole, op_name[t->op]);
        part = whole;
        part.y = malloc(ny * 4 + 4);
        part.arg = malloc(ny * 4 + 4);
        part.dx = malloc(nx * 4 + 4);
        for (size_t s = 0; s < sizeof(splits) / sizeof(splits[0]); s++) {
            run_op(cmd, t, &part, splits[s].s, splits[s].n);
            cr_assert_eq(memcmp(whole.y, part.y, ny * 4), 0, "%s: y differs for split %zu",
                         op_name[t->op], s);
            cr_assert_eq(memcmp(whole.dx, part.dx, nx * 4), 0, "%s: dx differs for split %zu",
                         op_name[t->op], s);
            if (t->op == OP_MAX)
                cr_assert_eq(memcmp(whole.arg, part.arg, ny * 4), 0,
                             "%s: argmax differs for split %zu", op_name[t->op], s);
        }
        free(part.y);
        free(part.arg);
        free(part.dx);
        io_free(&whole);
    }
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

static void expect_refusal(int ret, const char *op, const char *what)
{
    cr_assert_eq(ret, -EINVAL, "%s: accepted (%d)", what, ret);
    cr_assert(strstr(vka_last_error(), op), "%s: the message does not name %s: %s", what, op,
              vka_last_error());
}

/* Bad shapes and parameters are refused with -EINVAL and a message naming the op; a NULL
 * dx records nothing. */
Test(pool, refusals)
{
    test_seed("refusals");
    struct vka_ctx *ctx = ctx_for("texel");
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    struct vka_tensor x = test_act(ctx, 2, 3, 8, 6, NULL);
    struct vka_tensor y = test_act(ctx, 2, 3, 4, 3, NULL);
    struct vka_tensor bad_y = test_act(ctx, 2, 3, 4, 4, NULL);
    struct vka_tensor bad_dx = test_act(ctx, 2, 5, 8, 6, NULL);
    struct vka_tensor arg = test_flat(ctx, 2 * 3 * 4 * 3, NULL);
    struct vka_tensor short_arg = test_flat(ctx, 2 * 3 * 4 * 3 - 1, NULL);
    struct vka_tensor flat_x = test_flat(ctx, 2 * 3 * 8 * 6, NULL);
    uint32_t s[4];
    cr_assert_eq(vka_cmd_begin(cmd), 0);

    struct vka_op_args a = { .p.pool = { 2, 2, 0 }, .x = { &x }, .y = &y, .saved = { &arg },
                             .dy = &y, .dx = { &x } };
    struct vka_op_args b = a;
    b.y = &bad_y;
    expect_refusal(vka_max_pool2d_fwd(cmd, &b), "max_pool2d_fwd", "y of the wrong size");
    expect_refusal(vka_avg_pool2d_fwd(cmd, &b), "avg_pool2d_fwd", "y of the wrong size");
    b = a;
    b.saved[0] = &short_arg;
    expect_refusal(vka_max_pool2d_fwd(cmd, &b), "max_pool2d_fwd", "a short argmax");
    b.saved[0] = NULL;
    expect_refusal(vka_max_pool2d_bwd(cmd, &b), "max_pool2d_bwd", "no argmax");
    b = a;
    b.dx[0] = &bad_dx;
    expect_refusal(vka_max_pool2d_bwd(cmd, &b), "max_pool2d_bwd", "dx of the wrong C");
    expect_refusal(vka_avg_pool2d_bwd(cmd, &b), "avg_pool2d_bwd", "dx of the wrong C");
    b = a;
    b.dy = &bad_y;
    expect_refusal(vka_avg_pool2d_bwd(cmd, &b), "avg_pool2d_bwd", "dy of the wrong size");
    b = a;
    b.p.pool = (struct vka_pool_desc){ 2, 2, 2 };
    expect_refusal(vka_max_pool2d_shape(&b, s), "max_pool2d", "pad > k/2");
    b.p.pool = (struct vka_pool_desc){ 9, 1, 0 };
    expect_refusal(vka_avg_pool2d_shape(&b, s), "avg_pool2d", "k > W + 2*pad");
    b.p.pool = (struct vka_pool_desc){ 2, 0, 0 };
    expect_refusal(vka_avg_pool2d_fwd(cmd, &b), "avg_pool2d_fwd", "stride 0");

    struct vka_op_args r = { .p.resize = { 4, 3 }, .x = { &x }, .y = &y, .dy = &y,
                             .dx = { &x } };
    b = r;
    b.p.resize = (struct vka_resize_desc){ 0, 3 };
    expect_refusal(vka_upsample_bilinear_shape(&b, s), "upsample_bilinear", "oh = 0");
    b = r;
    b.x[0] = &flat_x;
    expect_refusal(vka_upsample_nearest_fwd(cmd, &b), "upsample_nearest_fwd", "a FLAT x");
    b = r;
    b.y = &bad_y;
    expect_refusal(vka_upsample_nearest_fwd(cmd, &b), "upsample_nearest_fwd", "y of 4x4");
    b = r;
    b.dx[0] = &bad_dx;
    expect_refusal(vka_upsample_bilinear_bwd(cmd, &b), "upsample_bilinear_bwd", "dx of C=5");

    /* accepted: the shape rule, and a bwd without dx (records nothing) */
    cr_assert_eq(vka_upsample_bilinear_shape(&r, s), 0, "%s", vka_last_error());
    cr_assert(s[0] == 2 && s[1] == 3 && s[2] == 4 && s[3] == 3);
    b = a;
    b.dx[0] = NULL;
    cr_assert_eq(vka_max_pool2d_bwd(cmd, &b), 0, "%s", vka_last_error());
    test_run(cmd);

    vka_tensor_destroy(&x);
    vka_tensor_destroy(&y);
    vka_tensor_destroy(&bad_y);
    vka_tensor_destroy(&bad_dx);
    vka_tensor_destroy(&arg);
    vka_tensor_destroy(&short_arg);
    vka_tensor_destroy(&flat_x);
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}
