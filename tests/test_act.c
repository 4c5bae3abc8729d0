/* The act family (src/ops/act.c): relu, leaky_relu, tanh, sigmoid, scale, add, mul and
 * concat, fwd and bwd, against the double references of tests/ref on both load paths.
 * Every tensor lies at a random offset in its own buffer between sentinel elements (a
 * stray write fails), outputs start as NaN (an unwritten element fails), gradients start
 * random (bwd must add), padding channels must come back 0. Shapes cover batch 1 and 5,
 * 1x1 spatial, odd sizes and channel counts that are not multiples of 4; concat covers
 * every C1, C2 residue mod 4. Also: tensors longer than one storage binding (chunks), a
 * batch of 8 run as micro-batches (bitwise equal), NULL gradients, refused shapes. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ops/ops.h"
#include "ref/ref.h"

/* f32 unit roundoff: a correctly rounded +, -, * errs by at most U * |result| */
#define U 0x1p-24
/* tanh and sigmoid on lavapipe, measured on 2^20 points of [-12, 12] (saturated beyond):
 * tanh errs by at most 1.45e-7 absolute and 5.7e-7 relative (near |x| = 1/8, where the
 * kernel switches from its series to the builtin), sigmoid by 1.1e-7 absolute; the
 * bounds leave 2x */
#define TANH_ABS 3e-7
#define TANH_REL 1.2e-6
#define SIGMOID_ABS 2.5e-7

enum kind { RELU, LEAKY_RELU, TANH, SIGMOID, SCALE, ADD, MUL, CONCAT };

/* Inputs: x in [-4, 4] (unary ops also get some values of magnitude 20..95, where tanh
 * and sigmoid saturate and exp overflows), dy and initial gradients in [-1, 1], slope in
 * [0.01, 0.3], alpha in [-3, 3]. Tolerances are abs + rel * |ref| with those bounds. */
struct act_op {
    const char *name;
    enum kind kind;
    vka_op_rec_fn fwd, bwd;
    int nin;
    double fwd_atol, fwd_rtol, bwd_atol, bwd_rtol;
};

static const struct act_op ops[] = {
    /* a select: exact; bwd init + dy rounds once */
    { "relu", RELU, vka_relu_fwd, vka_relu_bwd, 1, 0, 0, 0, U },
    /* slope * x rounds once; bwd: slope * dy (<= 0.3) and the sum (<= 1.3) round once */
    { "leaky_relu", LEAKY_RELU, vka_leaky_relu_fwd, vka_leaky_relu_bwd, 1, 0, U, 2 * U, 0 },
    /* relative, so small outputs are checked too; bwd uses the kernel's y: 1 - y^2 moves
     * by <= 2 |dy| TANH_ABS, plus 4 roundings of values <= 2 */
    { "tanh", TANH, vka_tanh_fwd, vka_tanh_bwd, 1, 0, TANH_REL, 2 * TANH_ABS + 8 * U, 0 },
    /* bwd: y (1 - y) moves by <= |1 - 2y| SIGMOID_ABS, plus 4 roundings of values <= 2 */
    { "sigmoid", SIGMOID, vka_sigmoid_fwd, vka_sigmoid_bwd, 1, SIGMOID_ABS, 0,
      SIGMOID_ABS + 8 * U, 0 },
    /* alpha * x rounds once; bwd: alpha * dy (<= 3) and the sum (<= 4) round once: 7U */
    { "scale", SCALE, vka_scale_fwd, vka_scale_bwd, 1, 0, U, 7 * U, 0 },
    /* the sum rounds once; bwd init + dy rounds once */
    { "add", ADD, vka_add_fwd, vka_add_bwd, 2, 0, U, 0, U },
    /* the product rounds once; bwd: dy * x (<= 4) and the sum (<= 5) round once: 9U */
    { "mul", MUL, vka_mul_fwd, vka_mul_bwd, 2, 0, U, 9 * U, 0 },
    /* a copy: exact; bwd init + dy rounds once */
    { "concat", CONCAT, vka_concat_fwd, vka_concat_bwd, 2, 0, 0, 0, U },
};
#define NOPS (sizeof(ops) / sizeof(ops[0]))

/* (N, C, H, W): batch 1 and 5, 1x1 spatial, odd sizes, C not a multiple of 4 */
static const uint32_t shapes[][4] = {
    { 1, 1, 1, 1 }, { 5, 3, 1, 1 }, { 1, 5, 3, 7 }, { 5, 7, 2, 3 },
    { 1, 13, 5, 5 }, { 5, 4, 3, 1 }, { 2, 1, 9, 11 }, { 1, 8, 6, 5 },
};
#define NSHAPES (sizeof(shapes) / sizeof(shapes[0]))

/* concat (C1, C2): every pair of residues mod 4 and both orders */
static const uint32_t concat_c[][2] = {
    { 1, 1 }, { 1, 3 }, { 3, 1 }, { 2, 2 }, { 4, 4 }, { 4, 5 }, { 5, 4 }, { 3, 5 },
    { 7, 13 }, { 13, 6 }, { 8, 1 }, { 1, 8 }, { 5, 7 }, { 6, 6 }, { 2, 11 }, { 12, 3 },
};
#define NCONCAT (sizeof(concat_c) / sizeof(concat_c[0]))

/* Which gradients a case asks for. */
enum grads { ALL, NO_DX0, NO_DX1, SHAPES_FROM_DX };

static struct vka_ctx *ctx_for(const char *load)
{
    setenv("VKACCUM_LOAD_PATH", load, 1);
    struct vka_ctx *ctx = test_ctx();
    cr_assert_eq(ctx->profile.load, !strcmp(load, "texel") ? VKA_LOAD_TEXEL : VKA_LOAD_STORAGE);
    return ctx;
}

static uint64_t stored(uint32_t n, uint32_t c, uint32_t h, uint32_t w)
{
    return (uint64_t)n * ((c + 3u) & ~3u) * h * w;
}

/* Writes nchw (NULL: NaN everywhere, padding included) into t's elements. */
static void act_set(const struct vka_tensor *t, const float *nchw)
{
    uint64_t m = vka_tensor_stored(t);
    float *raw = malloc((m ? m : 1) * 4);
    if (nchw)
        vka_nchw_to_nhwc4(nchw, raw, t->n, t->c, t->h, t->w);
    else
        for (uint64_t i = 0; i < m; i++)
            raw[i] = NAN;
    cr_assert_eq(vka_buf_upload(t->buf, t->off * 4, raw, m * 4), 0, "%s", vka_last_error());
    free(raw);
}

/* An NHWC4 tensor (n,c,h,w) at element off of its own buffer, TEST_SENTINEL before it
 * and in TEST_GUARD elements after it; data from nchw (NULL: NaN). */
static struct vka_tensor act_at(struct vka_ctx *ctx, uint32_t n, uint32_t c, uint32_t h,
                                uint32_t w, const float *nchw, uint64_t off)
{
    struct vka_tensor t = {
        .off = off, .dtype = VKA_F32, .layout = VKA_LAYOUT_NHWC4,
        .n = n, .c = c, .h = h, .w = w, .cs = (c + 3u) & ~3u, .owns_buf = true,
    };
    uint64_t total = off + stored(n, c, h, w) + TEST_GUARD;
    float *init = malloc(total * 4);
    for (uint64_t i = 0; i < total; i++)
        init[i] = TEST_SENTINEL;
    int ret = vka_buf_create(ctx, &(struct vka_buf_params){
        .size = total * 4, .cat = VKA_MEM_ACTIVATIONS }, &t.buf);
    cr_assert_eq(ret, 0, "%s", vka_last_error());
    cr_assert_eq(vka_buf_upload(t.buf, 0, init, total * 4), 0, "%s", vka_last_error());
    free(init);
    act_set(&t, nchw);
    return t;
}

/* Reads t to NCHW, asserting that the sentinels around it are intact and that its
 * padding channels hold 0. */
static void act_get(const struct vka_tensor *t, float *nchw)
{
    uint64_t m = vka_tensor_stored(t), total = t->off + m + TEST_GUARD;
    float *all = malloc(total * 4);
    cr_assert_eq(vka_buf_download(t->buf, 0, all, total * 4), 0, "%s", vka_last_error());
    for (uint64_t i = 0; i < total; i++) {
        if (i < t->off || i >= t->off + m)
            cr_assert_eq(all[i], TEST_SENTINEL, "stray write at element %llu (tensor at "
                         "%llu..%llu)", (unsigned long long)i, (unsigned long long)t->off,
                         (unsigned long long)(t->off + m));
        else if ((i - t->off) % t->cs >= t->c)
            cr_assert_eq(all[i], 0.0f, "padding channel %u of pixel %llu holds %g, not 0",
                         (unsigned)((i - t->off) % t->cs),
                         (unsigned long long)((i - t->off) / t->cs), all[i]);
    }
    vka_nhwc4_to_nchw(all + t->off, nchw, t->n, t->c, t->h, t->w);
    free(all);
}

static uint64_t in_off(void)
{
    return 4 * test_rand_range(0, 40); /* inputs start at a whole vec4 */
}

static uint64_t out_off(void)
{
    return test_rand_range(0, 160);
}

static float *rand_x(const struct act_op *op, size_t m)
{
    float *x = test_rand_floats(m, -4, 4);
    if (op->nin == 1)
        for (size_t i = 5; i < m; i += 11)
            x[i] = test_rand_uniform(20, 95) * (i % 2 ? 1.0f : -1.0f);
    return x;
}

static void ref_fwd(const struct act_op *op, const union vka_op_params *p,
                    const uint32_t s[4], uint32_t c2, const double *x0, const double *x1,
                    double *y)
{
    int m = (int)((uint64_t)s[0] * s[1] * s[2] * s[3]);
    switch (op->kind) {
    case RELU: ref_relu_fwd(m, x0, y); break;
    case LEAKY_RELU: ref_leaky_relu_fwd(m, p->slope, x0, y); break;
    case TANH: ref_tanh_fwd(m, x0, y); break;
    case SIGMOID: ref_sigmoid_fwd(m, x0, y); break;
    case SCALE: ref_scale_fwd(m, p->alpha, x0, y); break;
    case ADD: ref_add_fwd(m, x0, x1, y); break;
    case MUL: ref_mul_fwd(m, x0, x1, y); break;
    case CONCAT:
        ref_concat_fwd((int)s[0], (int)s[1], (int)c2, (int)s[2], (int)s[3], x0, x1, y);
        break;
    }
}

static void ref_bwd(const struct act_op *op, const union vka_op_params *p,
                    const uint32_t s[4], uint32_t c2, const double *x0, const double *x1,
                    const double *dy, double *dx0, double *dx1)
{
    int m = (int)((uint64_t)s[0] * s[1] * s[2] * s[3]);
    switch (op->kind) {
    case RELU: ref_relu_bwd(m, x0, dy, dx0); break;
    case LEAKY_RELU: ref_leaky_relu_bwd(m, p->slope, x0, dy, dx0); break;
    case TANH: ref_tanh_bwd(m, x0, dy, dx0); break;
    case SIGMOID: ref_sigmoid_bwd(m, x0, dy, dx0); break;
    case SCALE: ref_scale_bwd(m, p->alpha, dy, dx0); break;
    case ADD: ref_add_bwd(m, dy, dx0, dx1); break;
    case MUL: ref_mul_bwd(m, x0, x1, dy, dx0, dx1); break;
    case CONCAT:
        ref_concat_bwd((int)s[0], (int)s[1], (int)c2, (int)s[2], (int)s[3], dy, dx0, dx1);
        break;
    }
}

static union vka_op_params rand_params(const struct act_op *op)
{
    union vka_op_params p = { 0 };
    if (op->kind == LEAKY_RELU)
        p.slope = test_rand_uniform(0.01f, 0.3f);
    else if (op->kind == SCALE)
        p.alpha = test_rand_uniform(-3, 3);
    return p;
}

static void record(struct vka_cmd *cmd, vka_op_rec_fn fn, const struct vka_op_args *a,
                   const char *what)
{
    int ret = fn(cmd, a);
    cr_assert_eq(ret, 0, "%s failed (%d): %s", what, ret, vka_last_error());
}

/* One op on x0 (s[0],s[1],s[2],s[3]) (and x1 with c2 channels for concat, s[1] else):
 * fwd into a NaN y, then bwd into random gradients, both against the reference. */
static void check_case(struct vka_ctx *ctx, struct vka_cmd *cmd, const struct act_op *op,
                       const uint32_t s[4], uint32_t c2, enum grads g)
{
    const uint32_t n = s[0], c = s[1], h = s[2], w = s[3];
    const bool cat = op->kind == CONCAT;
    const uint32_t cx1 = cat ? c2 : c, cy = cat ? c + c2 : c;
    const size_t m0 = (size_t)n * c * h * w, m1 = (size_t)n * cx1 * h * w;
    const size_t my = (size_t)n * cy * h * w;
    char what[160];
    snprintf(what, sizeof(what), "%s (%u,%u,%u,%u)%s%u grads %d", op->name, n, c, h, w,
             cat ? " c2 " : "", cat ? c2 : 0, (int)g);

    union vka_op_params p = rand_params(op);
    float *x0 = rand_x(op, m0), *x1 = rand_x(op, m1), *dy = test_rand_floats(my, -1, 1);
    float *g0 = test_rand_floats(m0, -1, 1), *g1 = test_rand_floats(m1, -1, 1);
    struct vka_tensor tx0 = act_at(ctx, n, c, h, w, x0, in_off());
    struct vka_tensor tx1 = act_at(ctx, n, cx1, h, w, x1, in_off());
    struct vka_tensor ty = act_at(ctx, n, cy, h, w, NULL, in_off()); /* bwd reads it */
    struct vka_tensor tdy = act_at(ctx, n, cy, h, w, dy, in_off());
    struct vka_tensor tdx0 = act_at(ctx, n, c, h, w, g0, out_off());
    struct vka_tensor tdx1 = act_at(ctx, n, cx1, h, w, g1, out_off());

    struct vka_op_args a = { .p = p, .x = { &tx0, op->nin == 2 ? &tx1 : NULL }, .y = &ty };
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    record(cmd, op->fwd, &a, what);
    test_run(cmd);

    double *x0d = test_to_double(x0, m0), *x1d = test_to_double(x1, m1);
    double *yref = malloc(my * sizeof(double));
    float *got = malloc((my > m0 ? my : m0) * 4 + 4);
    ref_fwd(op, &p, s, c2, x0d, x1d, yref);
    act_get(&ty, got);
    test_assert_close(what, got, yref, my, op->fwd_atol, op->fwd_rtol);

    const bool want0 = g != NO_DX0, want1 = op->nin == 2 && g != NO_DX1;
    a.dy = &tdy;
    a.dx[0] = want0 ? &tdx0 : NULL;
    a.dx[1] = want1 ? &tdx1 : NULL;
    if (g == SHAPES_FROM_DX)
        a.x[0] = a.x[1] = NULL;
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    record(cmd, op->bwd, &a, what);
    test_run(cmd);

    double *dyd = test_to_double(dy, my), *d0 = test_to_double(g0, m0);
    double *d1 = test_to_double(g1, m1);
    ref_bwd(op, &p, s, c2, x0d, x1d, dyd, d0, d1);
    const struct { const struct vka_tensor *t; const float *init; const double *ref;
                   size_t m; bool want; const char *name; } dx[2] = {
        { &tdx0, g0, d0, m0, want0, "dx0" }, { &tdx1, g1, d1, m1, want1, "dx1" } };
    for (int i = 0; i < op->nin; i++) {
        char wdx[200];
        snprintf(wdx, sizeof(wdx), "%s: %s", what, dx[i].name);
        act_get(dx[i].t, got);
        if (dx[i].want)
            test_assert_close(wdx, got, dx[i].ref, dx[i].m, op->bwd_atol, op->bwd_rtol);
        else
            cr_assert_eq(memcmp(got, dx[i].init, dx[i].m * 4), 0, "%s: not asked for, "
                         "but changed", wdx);
    }

    struct vka_tensor *all[] = { &tx0, &tx1, &ty, &tdy, &tdx0, &tdx1 };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        vka_tensor_destroy(all[i]);
    float *fl[] = { x0, x1, dy, g0, g1, got };
    for (size_t i = 0; i < sizeof(fl) / sizeof(fl[0]); i++)
        free(fl[i]);
    double *dl[] = { x0d, x1d, yref, dyd, d0, d1 };
    for (size_t i = 0; i < sizeof(dl) / sizeof(dl[0]); i++)
        free(dl[i]);
}

static void rand_shape(uint32_t s[4])
{
    s[0] = test_rand_range(1, 5);
    s[1] = test_rand_range(1, 24);
    s[2] = test_rand_range(1, 9);
    s[3] = test_rand_range(1, 9);
}

/* Every elementwise op (kinds first..last) on every shape and a random one, cycling
 * through the gradient variants. */
static void check_elementwise(const char *load, enum kind first, enum kind last)
{
    struct vka_ctx *ctx = ctx_for(load);
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    for (size_t o = 0; o < NOPS; o++) {
        if (ops[o].kind < first || ops[o].kind > last)
            continue;
        for (size_t i = 0; i <= NSHAPES; i++) {
            uint32_t s[4];
            if (i < NSHAPES)
                memcpy(s, shapes[i], sizeof(s));
            else
                rand_shape(s);
            enum grads g = i % 4 == 1 ? NO_DX0 : i % 4 == 3 && ops[o].nin == 2 ? NO_DX1 : ALL;
            check_case(ctx, cmd, &ops[o], s, 0, g);
        }
    }
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

static void check_concat(const char *load)
{
    struct vka_ctx *ctx = ctx_for(load);
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    for (size_t i = 0; i <= NCONCAT; i++) {
        uint32_t s[4], c2;
        memcpy(s, shapes[i % NSHAPES], sizeof(s));
        if (i < NCONCAT) {
            s[1] = concat_c[i][0];
            c2 = concat_c[i][1];
        } else {
            rand_shape(s);
            c2 = test_rand_range(1, 24);
        }
        check_case(ctx, cmd, &ops[CONCAT], s, c2, (enum grads)(i % 4));
    }
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

/* Bindings of 4 KiB: a (3,13,17,19) tensor (969 pixels of 16 floats) takes 17 chunks,
 * concat's (3,18,17,19) y 21. */
static void check_chunked(const char *load)
{
    struct vka_ctx *ctx = ctx_for(load);
    ctx->profile.max_binding = 4096;
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    const uint32_t s[4] = { 3, 13, 17, 19 }, sc[4] = { 3, 5, 17, 19 };
    for (size_t o = 0; o < NOPS; o++)
        check_case(ctx, cmd, &ops[o], ops[o].kind == CONCAT ? sc : s, 13, ALL);
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

static struct vka_tensor batch_view(const struct vka_tensor *t, uint32_t n0, uint32_t count)
{
    struct vka_tensor v = *t;
    v.off += (uint64_t)n0 * t->h * t->w * t->cs;
    v.n = count;
    v.owns_buf = false;
    return v;
}

/* A batch of 8 run as 8, 4+4, 3+3+2 and 1x8 (views along N into the same tensors, one
 * submission per split) gives bitwise the same y and gradients for every op. */
static void check_microbatch(const char *load)
{
    static const uint32_t splits[][9] = {
        { 8 }, { 4, 4 }, { 3, 3, 2 }, { 1, 1, 1, 1, 1, 1, 1, 1 } };
    const uint32_t N = 8, C = 5, C2 = 7, H = 3, W = 4;
    struct vka_ctx *ctx = ctx_for(load);
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    for (size_t o = 0; o < NOPS; o++) {
        const struct act_op *op = &ops[o];
        const uint32_t cx1 = op->kind == CONCAT ? C2 : C;
        const uint32_t cy = op->kind == CONCAT ? C + C2 : C;
        const size_t m0 = (size_t)N * C * H * W, m1 = (size_t)N * cx1 * H * W;
        const size_t my = (size_t)N * cy * H * W;
        union vka_op_params p = rand_params(op);
        float *x0 = rand_x(op, m0), *x1 = rand_x(op, m1), *dy = test_rand_floats(my, -1, 1);
        float *g0 = test_rand_floats(m0, -1, 1), *g1 = test_rand_floats(m1, -1, 1);
        struct vka_tensor tx0 = act_at(ctx, N, C, H, W, x0, 0);
        struct vka_tensor tx1 = act_at(ctx, N, cx1, H, W, x1, 0);
        struct vka_tensor ty = act_at(ctx, N, cy, H, W, NULL, 0);
        struct vka_tensor tdy = act_at(ctx, N, cy, H, W, dy, 0);
        struct vka_tensor tdx0 = act_at(ctx, N, C, H, W, g0, 0);
        struct vka_tensor tdx1 = act_at(ctx, N, cx1, H, W, g1, 0);
        float *first[3] = { malloc(my * 4), malloc(m0 * 4), malloc(m1 * 4) };
        float *got[3] = { malloc(my * 4), malloc(m0 * 4), malloc(m1 * 4) };
        for (size_t sp = 0; sp < sizeof(splits) / sizeof(splits[0]); sp++) {
            act_set(&ty, NULL);
            act_set(&tdx0, g0);
            act_set(&tdx1, g1);
            cr_assert_eq(vka_cmd_begin(cmd), 0);
            for (int pass = 0; pass < 2; pass++) {
                for (uint32_t i = 0, n0 = 0; n0 < N; n0 += splits[sp][i++]) {
                    uint32_t k = splits[sp][i];
                    struct vka_tensor v[6] = {
                        batch_view(&tx0, n0, k), batch_view(&tx1, n0, k),
                        batch_view(&ty, n0, k), batch_view(&tdy, n0, k),
                        batch_view(&tdx0, n0, k), batch_view(&tdx1, n0, k) };
                    struct vka_op_args a = {
                        .p = p, .x = { &v[0], op->nin == 2 ? &v[1] : NULL }, .y = &v[2],
                        .dy = &v[3], .dx = { &v[4], op->nin == 2 ? &v[5] : NULL } };
                    record(cmd, pass ? op->bwd : op->fwd, &a, op->name);
                }
            }
            test_run(cmd);
            act_get(&ty, got[0]);
            act_get(&tdx0, got[1]);
            act_get(&tdx1, got[2]);
            const size_t len[3] = { my, m0, m1 };
            for (int t = 0; t < 3; t++) {
                if (sp == 0)
                    memcpy(first[t], got[t], len[t] * 4);
                else
                    cr_assert_eq(memcmp(first[t], got[t], len[t] * 4), 0, "%s: %s differs "
                                 "between one batch of 8 and split %zu", op->name,
                                 (const char *[]){ "y", "dx0", "dx1" }[t], sp);
            }
        }
        struct vka_tensor *all[] = { &tx0, &tx1, &ty, &tdy, &tdx0, &tdx1 };
        for (size_t i = 0; i < 6; i++)
            vka_tensor_destroy(all[i]);
        float *fl[] = { x0, x1, dy, g0, g1, first[0], first[1], first[2], got[0], got[1],
                        got[2] };
        for (size_t i = 0; i < sizeof(fl) / sizeof(fl[0]); i++)
            free(fl[i]);
    }
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

/* fn(a) is refused with -EINVAL and a message that starts with "op:" (and holds also
 * when given). */
static void refused(struct vka_cmd *cmd, vka_op_rec_fn fn, const struct vka_op_args *a,
                    const char *op, const char *also)
{
    vka_clear_error();
    int ret = fn(cmd, a);
    const char *err = vka_last_error();
    cr_assert_eq(ret, -EINVAL, "%s: not refused (%d)", op, ret);
    cr_assert(!strncmp(err, op, strlen(op)) && err[strlen(op)] == ':',
              "%s: message does not name the op: %s", op, err);
    cr_assert(!also || strstr(err, also), "%s: message lacks \"%s\": %s", op, also, err);
}

Test(act, refusals)
{
    test_seed("refusals");
    struct vka_ctx *ctx = ctx_for("texel");
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    struct vka_tensor a = test_act(ctx, 2, 5, 3, 4, NULL);  /* (2,5,3,4) */
    struct vka_tensor a2 = test_act(ctx, 2, 5, 3, 4, NULL);
    struct vka_tensor c6 = test_act(ctx, 2, 6, 3, 4, NULL); /* other C */
    struct vka_tensor h2 = test_act(ctx, 2, 5, 2, 4, NULL); /* other H */
    struct vka_tensor w5 = test_act(ctx, 2, 5, 3, 5, NULL); /* other W */
    struct vka_tensor n1 = test_act(ctx, 1, 5, 3, 4, NULL); /* other N */
    struct vka_tensor c11 = test_act(ctx, 2, 11, 3, 4, NULL);
    struct vka_tensor c12 = test_act(ctx, 2, 12, 3, 4, NULL);
    struct vka_tensor flat = test_flat(ctx, 2 * 5 * 3 * 4, NULL);
    flat.n = 2, flat.c = 5, flat.h = 3, flat.w = 4, flat.cs = 5;
    struct vka_tensor odd = a; /* an input view that starts inside a vec4 */
    odd.off = 2;
    odd.n = 1;
    odd.owns_buf = false;
    cr_assert_eq(vka_cmd_begin(cmd), 0);

    refused(cmd, vka_relu_fwd, &(struct vka_op_args){ .x = { &a }, .y = &c6 }, "relu", "y");
    refused(cmd, vka_leaky_relu_fwd, &(struct vka_op_args){ .x = { &flat }, .y = &a },
            "leaky_relu", "flat");
    refused(cmd, vka_tanh_bwd, &(struct vka_op_args){ .x = { &a }, .dy = &a, .dx = { &a2 } },
            "tanh_bwd", "y is missing");
    refused(cmd, vka_sigmoid_bwd, &(struct vka_op_args){ .y = &a, .dy = &h2, .dx = { &a2 } },
            "sigmoid_bwd", "dy");
    refused(cmd, vka_relu_bwd, &(struct vka_op_args){ .x = { &a }, .dy = &a, .dx = { &n1 } },
            "relu_bwd", "dx0");
    refused(cmd, vka_scale_fwd, &(struct vka_op_args){ .x = { &odd }, .y = &n1 }, "scale",
            "not a multiple of 4");
    refused(cmd, vka_scale_bwd, &(struct vka_op_args){ .dy = &a, .dx = { &c6 } },
            "scale_bwd", "dx0");
    refused(cmd, vka_add_fwd, &(struct vka_op_args){ .x = { &a, &w5 }, .y = &a2 }, "add",
            "x1");
    refused(cmd, vka_add_bwd, &(struct vka_op_args){ .dy = &a, .dx = { &a2, &c6 } },
            "add_bwd", "dx1");
    refused(cmd, vka_mul_fwd, &(struct vka_op_args){ .x = { &a, &a2 }, .y = &n1 }, "mul",
            "y");
    refused(cmd, vka_mul_bwd, &(struct vka_op_args){ .x = { &a }, .dy = &a, .dx = { &a2 } },
            "mul_bwd", "x1 is missing");
    refused(cmd, vka_concat_fwd, &(struct vka_op_args){ .x = { &a, &h2 }, .y = &c11 },
            "concat", "x1");
    refused(cmd, vka_concat_fwd, &(struct vka_op_args){ .x = { &a, &c6 }, .y = &c12 },
            "concat", "y");
    refused(cmd, vka_concat_bwd, &(struct vka_op_args){ .x = { &a, &c6 }, .dy = &c12,
            .dx = { &a2 } }, "concat_bwd", "dy has 12 channels, parts 5 + 6");
    refused(cmd, vka_concat_bwd, &(struct vka_op_args){ .x = { NULL, &c6 }, .dy = &c11,
            .dx = { NULL, &c6 } }, "concat_bwd", "x0 or dx0");

    uint32_t s[4];
    cr_assert_eq(vka_concat_shape(&(struct vka_op_args){ .x = { &a, &c6 } }, s), 0);
    cr_assert(s[0] == 2 && s[1] == 11 && s[2] == 3 && s[3] == 4, "concat shape (%u,%u,%u,%u)",
              s[0], s[1], s[2], s[3]);
    cr_assert_eq(vka_sigmoid_shape(&(struct vka_op_args){ .x = { &h2 } }, s), 0);
    cr_assert(s[0] == 2 && s[1] == 5 && s[2] == 2 && s[3] == 4);
    cr_assert_eq(vka_mul_shape(&(struct vka_op_args){ .x = { &a, &n1 } }, s), -EINVAL);
    cr_assert(!strncmp(vka_last_error(), "mul:", 4), "%s", vka_last_error());
    test_run(cmd); /* nothing was recorded */

    struct vka_tensor *all[] = { &a, &a2, &c6, &h2, &w5, &n1, &c11, &c12, &flat };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        vka_tensor_destroy(all[i]);
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

Test(act, unary_texel) { test_seed("unary_texel"); check_elementwise("texel", RELU, SCALE); }
Test(act, unary_storage) { test_seed("unary_storage"); check_elementwise("storage", RELU, SCALE); }
Test(act, binary_texel) { test_seed("binary_texel"); check_elementwise("texel", ADD, MUL); }
Test(act, binary_storage) { test_seed("binary_storage"); check_elementwise("storage", ADD, MUL); }
Test(act, concat_texel) { test_seed("concat_texel"); check_concat("texel"); }
Test(act, concat_storage) { test_seed("concat_storage"); check_concat("storage"); }
Test(act, chunked_texel) { test_seed("chunked_texel"); check_chunked("texel"); }
Test(act, chunked_storage) { test_seed("chunked_storage"); check_chunked("storage"); }
Test(act, microbatch_texel) { test_seed("microbatch_texel"); check_microbatch("texel"); }
Test(act, microbatch_storage) { test_seed("microbatch_storage"); check_microbatch("storage"); }
