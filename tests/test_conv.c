/* conv2d, conv_transpose2d and linear (src/ops/conv.c): what only they have. Every op's
 * results against the reference, on both load paths and with the shared-memory tiled
 * GEMMs (the GPUs' path), with NaN outputs, the += rule on pre-filled gradients, guard
 * words, outputs split into several bindings and bit-identical dw/db for any split of a
 * batch, are tests/opcheck.c's (cases and bounds in tests/opcases.c); here: tiled and
 * untiled GEMMs give the same bits, exact dw and db are the exact sums of each sample's
 * own float sums, and mismatched shapes are refused. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "exact.h"
#include "ops/ops.h"
#include "ref/ref.h"

enum kind { CONV, CONVT, LINEAR };

struct shape {
    enum kind kind;
    int N, C, H, W, K, R, S, sh, sw, ph, pw, oph, opw;
    bool bias;
};

static void out_size(const struct shape *s, int *P, int *Q)
{
    struct ref_conv r = { s->N, s->C, s->H, s->W, s->K, s->R, s->S,
                          s->sh, s->sw, s->ph, s->pw, s->oph, s->opw };
    if (s->kind == CONVT)
        ref_conv_transpose2d_out_size(&r, P, Q);
    else
        ref_conv2d_out_size(&r, P, Q);
}

/* weight's PyTorch shape */
static void wshape(const struct shape *s, uint32_t d[4])
{
    if (s->kind == CONVT) {
        d[0] = s->C; d[1] = s->K;
    } else {
        d[0] = s->K; d[1] = s->C;
    }
    d[2] = s->R;
    d[3] = s->S;
}

static struct vka_tensor weight_tensor(struct vka_ctx *ctx, const uint32_t d[4], const float *data)
{
    struct vka_tensor t;
    cr_assert_eq(vka_tensor_create(ctx, &(struct vka_tensor_params){
                     .n = d[0], .c = d[1], .h = d[2], .w = d[3],
                     .layout = VKA_LAYOUT_WEIGHT, .cat = VKA_MEM_PARAMS }, &t), 0);
    cr_assert_eq(vka_tensor_upload(&t, data), 0, "%s", vka_last_error());
    return t;
}

static int op_fwd(enum kind k, struct vka_cmd *cmd, const struct vka_op_args *a)
{
    return k == CONV ? vka_conv2d_fwd(cmd, a) : k == CONVT ? vka_conv_transpose2d_fwd(cmd, a)
                                                           : vka_linear_fwd(cmd, a);
}

static int op_bwd(enum kind k, struct vka_cmd *cmd, const struct vka_op_args *a)
{
    return k == CONV ? vka_conv2d_bwd(cmd, a) : k == CONVT ? vka_conv_transpose2d_bwd(cmd, a)
                                                           : vka_linear_bwd(cmd, a);
}

/* The three paths compared: the untiled GEMMs on texel loads (lavapipe's path), the
 * tiled ones on storage loads (GPUs' path) and on texel loads; each a context. */
static const struct { enum vka_load_path load; enum vka_choice tiles; } cfg[3] = {
    { VKA_LOAD_TEXEL, VKA_OFF }, { VKA_LOAD_STORAGE, VKA_ON }, { VKA_LOAD_TEXEL, VKA_ON },
};

/* y and dx (stored elements, padding included) of one shape on the same inputs from the
 * paths of cfg[] (ctx[k] NULL: skipped): all must be bit-identical, as both GEMMs run
 * every output's multiply-add chain over r, s, a in the same order. */
static void tiled_bitwise_case(struct vka_ctx *const ctx[3], const struct shape *s)
{
    int P, Q;
    out_size(s, &P, &Q);
    uint32_t wd[4];
    wshape(s, wd);
    size_t nx = (size_t)s->N * s->C * s->H * s->W, ny = (size_t)s->N * s->K * P * Q;
    size_t nw = (size_t)wd[0] * wd[1] * wd[2] * wd[3];
    float *x = test_rand_floats(nx, -1, 1), *w = test_rand_floats(nw, -1, 1);
    float *b = test_rand_floats(s->K, -1, 1), *dy = test_rand_floats(ny, -1, 1);
    float *dx0 = test_rand_floats(nx, -1, 1);
    float *ys[3] = { NULL }, *dxs[3] = { NULL };
    uint64_t sy = 0, sx = 0;
    char what[160];
    snprintf(what, sizeof(what), "kind %d N%d C%d %dx%d K%d %dx%d s%d,%d", s->kind, s->N, s->C,
             s->H, s->W, s->K, s->R, s->S, s->sh, s->sw);
    for (int k = 0; k < 3; k++) {
        if (!ctx[k])
            continue;
        struct vka_tensor tx = test_act(ctx[k], s->N, s->C, s->H, s->W, x);
        struct vka_tensor tw = weight_tensor(ctx[k], wd, w);
        struct vka_tensor tb = test_flat(ctx[k], s->K, b);
        struct vka_tensor tdy = test_act(ctx[k], s->N, s->K, P, Q, dy);
        struct vka_tensor ty = test_act(ctx[k], s->N, s->K, P, Q, NULL);
        struct vka_tensor tdx = test_act(ctx[k], s->N, s->C, s->H, s->W, dx0);
        sy = vka_tensor_stored(&tdy);
        sx = vka_tensor_stored(&tx);
        struct vka_op_args a = {
            .p.conv = { .stride = { s->sh, s->sw }, .pad = { s->ph, s->pw },
                        .out_pad = { s->oph, s->opw } },
            .x = { &tx, &tw, s->bias ? &tb : NULL }, .y = &ty, .dy = &tdy,
            .dx = { &tdx, NULL, NULL },
        };
        struct vka_cmd *cmd;
        cr_assert_eq(vka_cmd_create(ctx[k], NULL, &cmd), 0);
        cr_assert_eq(vka_cmd_begin(cmd), 0);
        cr_assert_eq(op_fwd(s->kind, cmd, &a), 0, "%s", vka_last_error());
        cr_assert_eq(op_bwd(s->kind, cmd, &a), 0, "%s", vka_last_error());
        test_run(cmd);
        vka_cmd_destroy(&cmd);
        ys[k] = malloc(sy * 4);
        dxs[k] = malloc(sx * 4);
        cr_assert_eq(vka_buf_download(ty.buf, ty.off * 4, ys[k], sy * 4), 0);
        cr_assert_eq(vka_buf_download(tdx.buf, tdx.off * 4, dxs[k], sx * 4), 0);
        /* y was NaN before: an element left unwritten would also compare equal */
        for (uint64_t i = 0; i < sy; i++)
            cr_assert(isfinite(ys[k][i]), "%s: y element %llu not written (config %d)", what,
                      (unsigned long long)i, k);
        if (k) {
            cr_assert_eq(memcmp(ys[k], ys[0], sy * 4), 0,
                         "%s: y of load %d tiles %d differs from the texel untiled one", what,
                         cfg[k].load, cfg[k].tiles);
            cr_assert_eq(memcmp(dxs[k], dxs[0], sx * 4), 0,
                         "%s: dx of load %d tiles %d differs from the texel untiled one", what,
                         cfg[k].load, cfg[k].tiles);
        }
        struct vka_tensor *ts[] = { &tx, &tw, &tb, &tdy, &ty, &tdx };
        for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++)
            vka_tensor_destroy(ts[i]);
    }
    for (int k = 0; k < 3; k++) {
        free(ys[k]);
        free(dxs[k]);
    }
    free(x); free(w); free(b); free(dy); free(dx0);
}

static void ctx3(struct vka_ctx *ctx[3], uint64_t max_binding, bool texel_only)
{
    for (int k = 0; k < 3; k++)
        ctx[k] = texel_only && cfg[k].load != VKA_LOAD_TEXEL ? NULL
                 : test_ctx_params(&(struct vka_ctx_params){
                       .validation = 1, .load = cfg[k].load, .conv_tiles = cfg[k].tiles,
                       .max_binding = max_binding });
}

static void ctx3_done(struct vka_ctx *ctx[3])
{
    for (int k = 0; k < 3; k++)
        if (ctx[k])
            test_ctx_done(&ctx[k]);
}

Test(conv, tiled_and_untiled_give_the_same_bits)
{
    test_seed("conv tiled bits");
    struct vka_ctx *ctx[3];
    ctx3(ctx, 0, false);
    static const struct shape s[] = {
        /* kind   N  C  H  W  K  R  S sh sw ph pw oph opw bias */
        { CONV,   5, 37, 9, 6, 70, 3, 3, 1, 1, 1, 1, 0, 0, true },
        { CONV,   2, 64, 17, 15, 68, 3, 3, 1, 1, 1, 1, 0, 0, true },  /* Winograd */
        { CONV,   1, 13, 9, 6, 6, 3, 2, 2, 1, 1, 0, 0, 0, false },
        { CONV,   2, 8, 8, 8, 16, 4, 4, 2, 2, 1, 1, 0, 0, true },
        { CONVT,  3, 35, 3, 5, 7, 3, 3, 2, 2, 1, 1, 1, 1, true },
        { CONVT,  1, 64, 4, 4, 32, 2, 2, 2, 2, 0, 0, 0, 0, true },
        { LINEAR, 5, 130, 1, 1, 129, 1, 1, 1, 1, 0, 0, 0, 0, true },
    };
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
        tiled_bitwise_case(ctx, &s[i]);
    ctx3_done(ctx);
    /* outputs in several 16 KiB bindings, one dispatch each; texel loads only, whose
     * inputs are not bound by the storage range */
    ctx3(ctx, 16 << 10, true);
    static const struct shape big[] = {
        { CONV,  2, 4, 33, 41, 4, 3, 3, 1, 1, 1, 1, 0, 0, true },
        { CONVT, 2, 4, 21, 23, 4, 3, 3, 2, 2, 1, 1, 1, 0, true },
    };
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++)
        tiled_bitwise_case(ctx, &big[i]);
    ctx3_done(ctx);
}

/* y and dx of samples [n0, n0 + n) of x, dy (NCHW, of a shape with s->N samples) run as
 * a batch of n: NCHW into y, dx. */
static void conv2d_run(struct vka_ctx *ctx, const struct shape *s, int n0, int n,
                       const float *x, const float *w, const float *b, const float *dy,
                       float *y, float *dx)
{
    int P, Q;
    out_size(s, &P, &Q);
    uint32_t wd[4];
    wshape(s, wd);
    size_t sx = (size_t)s->C * s->H * s->W, sy = (size_t)s->K * P * Q;
    struct vka_tensor tx = test_act(ctx, n, s->C, s->H, s->W, x + n0 * sx);
    struct vka_tensor tw = weight_tensor(ctx, wd, w), tb = test_flat(ctx, s->K, b);
    struct vka_tensor tdy = test_act(ctx, n, s->K, P, Q, dy + n0 * sy);
    struct vka_tensor ty = test_act(ctx, n, s->K, P, Q, NULL);
    struct vka_tensor tdx = test_act(ctx, n, s->C, s->H, s->W, NULL);
    struct vka_op_args a = {
        .p.conv = { .stride = { s->sh, s->sw }, .pad = { s->ph, s->pw } },
        .x = { &tx, &tw, &tb }, .y = &ty, .dy = &tdy, .dx = { &tdx, NULL, NULL },
        .dx0_fresh = true,
    };
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    cr_assert_eq(vka_conv2d_fwd(cmd, &a), 0, "%s", vka_last_error());
    cr_assert_eq(vka_conv2d_bwd(cmd, &a), 0, "%s", vka_last_error());
    test_run(cmd);
    vka_cmd_destroy(&cmd);
    test_act_read(&ty, y);
    test_act_read(&tdx, dx);
    struct vka_tensor *ts[] = { &tx, &tw, &tb, &tdy, &ty, &tdx };
    for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++)
        vka_tensor_destroy(ts[i]);
}

/* Winograd's y and dx of a sample have the same bits whether it runs alone or in a batch
 * (micro-batches give the batch's bits): in 256 KiB bindings the batch's tiles go in
 * chunks that start inside a sample's tile rows, each sample's alone in others. Also: the
 * shape takes Winograd, and Winograd's y differs from the direct GEMM's (profile off) by
 * rounding only. */
static void winograd_batch_case(struct vka_ctx *ctx, struct vka_ctx *direct,
                                const struct shape *sp)
{
    const struct shape s = *sp;
    size_t sx = (size_t)s.C * s.H * s.W, sy = (size_t)s.K * s.H * s.W;
    float *x = test_rand_floats(s.N * sx, -1, 1), *dy = test_rand_floats(s.N * sy, -1, 1);
    float *w = test_rand_floats((size_t)s.K * s.C * 9, -1, 1), *b = test_rand_floats(s.K, -1, 1);
    float *y = malloc(s.N * sy * 4), *dx = malloc(s.N * sx * 4);
    float *y1 = malloc(sy * 4), *dx1 = malloc(sx * 4);
    float *yd = malloc(s.N * sy * 4), *dxd = malloc(s.N * sx * 4);
    conv2d_run(ctx, &s, 0, s.N, x, w, b, dy, y, dx);
    for (int n = 0; n < s.N; n++) {
        conv2d_run(ctx, &s, n, 1, x, w, b, dy, y1, dx1);
        cr_assert_eq(memcmp(y1, y + n * sy, sy * 4), 0, "%dx%d: y of sample %d alone differs",
                     s.H, s.W, n);
        cr_assert_eq(memcmp(dx1, dx + n * sx, sx * 4), 0,
                     "%dx%d: dx of sample %d alone differs", s.H, s.W, n);
    }
    /* |y| is about 24 here (576 products of [-1, 1] values) and both paths err by a few
     * 1e-6 (F(2x2, 3x3)) to a few 1e-5 (F(4x4, 3x3)): 1e-3 separates rounding from a
     * wrong result */
    conv2d_run(direct, &s, 0, s.N, x, w, b, dy, yd, dxd);
    bool differs = false;
    for (size_t i = 0; i < s.N * sy; i++) {
        cr_assert(fabsf(y[i] - yd[i]) < 1e-3f, "%dx%d: y[%zu] %g, direct %g", s.H, s.W, i,
                  y[i], yd[i]);
        differs |= y[i] != yd[i];
    }
    for (size_t i = 0; i < s.N * sx; i++)
        cr_assert(fabsf(dx[i] - dxd[i]) < 1e-3f, "%dx%d: dx[%zu] %g, direct %g", s.H, s.W, i,
                  dx[i], dxd[i]);
    cr_assert(differs, "%dx%d: Winograd's y has the direct GEMM's bits: was it taken?", s.H,
              s.W);
    differs = false;
    for (size_t i = 0; i < s.N * sx; i++)
        differs |= dx[i] != dxd[i];
    cr_assert(differs, "%dx%d: Winograd's dx has the direct GEMM's bits: was it taken?", s.H,
              s.W);
    free(x); free(dy); free(w); free(b); free(y); free(dx); free(y1); free(dx1);
    free(yd); free(dxd);
}

Test(conv, winograd_outputs_do_not_depend_on_the_batch)
{
    test_seed("conv winograd batch");
    /* kind N C H W K R S sh sw ph pw oph opw bias: F(2x2, 3x3), then F(4x4, 3x3)'s dx
     * (4096 pixels and more; 66x63 ends in partial tiles both ways) */
    static const struct shape s[] = {
        { CONV, 3, 64, 17, 16, 64, 3, 3, 1, 1, 1, 1, 0, 0, true },
        { CONV, 2, 64, 66, 63, 64, 3, 3, 1, 1, 1, 1, 0, 0, true },
    };
    const struct vka_conv_desc d = { .stride = { 1, 1 }, .pad = { 1, 1 } };
    /* forward and backward tiles */
    cr_assert_eq(vka_conv2d_winograd_tile(&d, 64, 64, 3, 3, 17, 16, false), 2);
    cr_assert_eq(vka_conv2d_winograd_tile(&d, 64, 64, 3, 3, 17, 16, true), 2);
    cr_assert_eq(vka_conv2d_winograd_tile(&d, 64, 64, 3, 3, 66, 63, false), 2);
    cr_assert_eq(vka_conv2d_winograd_tile(&d, 64, 64, 3, 3, 66, 63, true), 4);
    cr_assert_eq(vka_conv2d_winograd_tile(&d, 64, 64, 3, 3, 64, 63, true), 2);
    for (int bwd = 0; bwd < 2; bwd++) {
        cr_assert_eq(vka_conv2d_winograd_tile(&d, 32, 64, 3, 3, 17, 16, bwd), 0);
        cr_assert_eq(vka_conv2d_winograd_tile(&d, 64, 64, 3, 3, 15, 16, bwd), 0);
        cr_assert_eq(vka_conv2d_winograd_tile(&(struct vka_conv_desc){ .stride = { 2, 2 } },
                                              64, 64, 3, 3, 17, 16, bwd), 0);
    }
    struct vka_ctx *ctx = test_ctx_params(&(struct vka_ctx_params){
        .validation = 1, .winograd = VKA_ON, .max_binding = 256 << 10 });
    struct vka_ctx *direct = test_ctx_params(&(struct vka_ctx_params){
        .validation = 1, .winograd = VKA_OFF });
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
        winograd_batch_case(ctx, direct, &s[i]);
    test_ctx_done(&ctx);
    test_ctx_done(&direct);
}

/* A tensor of t's shape and offset holding exact elements (16 bytes each), set to words. */
static struct vka_tensor exact_like(struct vka_ctx *ctx, const struct vka_tensor *t,
                                    const uint32_t *words)
{
    struct vka_tensor e = *t;
    uint64_t n = vka_tensor_stored(t);
    e.dtype = VKA_EXACT;
    e.owns_buf = true;
    cr_assert_eq(vka_buf_create(ctx, &(struct vka_buf_params){ .size = (e.off + n) * 16 },
                                &e.buf), 0);
    cr_assert_eq(vka_buf_upload(e.buf, e.off * 16, words, n * 16), 0);
    return e;
}

/* dw and db of sample n of x, dy (NCHW) alone, added into zeroed float accumulators:
 * their stored elements into gw, gb. */
static void float_grads(struct vka_ctx *ctx, const struct shape *s, int n,
                        const float *x, const float *w, const float *dy, float *gw, float *gb)
{
    int P, Q;
    out_size(s, &P, &Q);
    uint32_t wd[4];
    wshape(s, wd);
    size_t sx = (size_t)s->C * s->H * s->W, sy = (size_t)s->K * P * Q;
    struct vka_tensor tx = test_act(ctx, 1, s->C, s->H, s->W, x + n * sx);
    struct vka_tensor tdy = test_act(ctx, 1, s->K, P, Q, dy + n * sy);
    struct vka_tensor tw = weight_tensor(ctx, wd, w);
    uint64_t nw = vka_tensor_stored(&tw);
    float *zero = calloc(nw > (uint64_t)s->K ? nw : (uint64_t)s->K, 4);
    struct vka_tensor tdw = weight_tensor(ctx, wd, w), tb = test_flat(ctx, s->K, zero);
    struct vka_tensor tdb = test_flat(ctx, s->K, zero);
    cr_assert_eq(vka_buf_upload(tdw.buf, tdw.off * 4, zero, nw * 4), 0);
    struct vka_op_args a = {
        .p.conv = { .stride = { s->sh, s->sw }, .pad = { s->ph, s->pw },
                    .out_pad = { s->oph, s->opw } },
        .x = { &tx, &tw, &tb }, .dy = &tdy, .dx = { NULL, &tdw, &tdb },
    };
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    cr_assert_eq(op_bwd(s->kind, cmd, &a), 0, "%s", vka_last_error());
    test_run(cmd);
    vka_cmd_destroy(&cmd);
    cr_assert_eq(vka_buf_download(tdw.buf, tdw.off * 4, gw, nw * 4), 0);
    cr_assert_eq(vka_buf_download(tdb.buf, tdb.off * 4, gb, (uint64_t)s->K * 4), 0);
    struct vka_tensor *ts[] = { &tx, &tdy, &tw, &tdw, &tb, &tdb };
    for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++)
        vka_tensor_destroy(ts[i]);
    free(zero);
}

/* words (n elements) += every float of f converted exactly */
static void exact_add_floats(uint32_t *words, const float *f, uint64_t n)
{
    uint32_t e[4];
    for (uint64_t i = 0; i < n; i++) {
        vka_exact_from_float(f[i], e);
        vka_exact_add(words + 4 * i, e, 1);
    }
}

/* --accumulate exact: dw and db of N samples added into exact accumulators that already
 * hold something are, word for word, the old words plus each sample's float dw and db
 * (the ordered path run on that sample alone, from zero) converted exactly. Covers the
 * kernel that converts inside the multiply-add chain (images of one 4096-pixel chunk:
 * conv_wgrad_direct_exact), the per-sample partials of larger images (conv_reduce_exact)
 * and db; catches a chain carried from one sample into the next, a sample's sum added
 * twice or not at all, a wrong element or padding row, and rounding of anything but
 * each sample's sum. */
Test(conv, exact_gradients_are_each_samples_sum_added_exactly)
{
    test_seed("conv exact dw");
    static const struct shape s[] = {
        /* kind   N  C  H  W  K  R  S sh sw ph pw oph opw bias */
        { CONV,   3, 37, 9, 6, 70, 3, 3, 1, 1, 1, 1, 0, 0, true },  /* 54 pixels: direct */
        { CONV,   2, 3, 66, 65, 5, 3, 3, 1, 1, 1, 1, 0, 0, true },  /* 4290: two chunks */
        { CONV,   2, 64, 17, 16, 64, 3, 3, 1, 1, 1, 1, 0, 0, false }, /* Winograd's dw */
        { CONV,   2, 64, 66, 63, 64, 3, 3, 1, 1, 1, 1, 0, 0, false }, /* F(3x3, 4x4)'s */
        { CONVT,  3, 35, 3, 5, 7, 3, 3, 2, 2, 1, 1, 1, 1, true },
        { LINEAR, 5, 130, 1, 1, 129, 1, 1, 1, 1, 0, 0, 0, 0, true },
        /* 70 samples, and out-of-range, infinite and NaN sums planted below */
        { LINEAR, 70, 6, 1, 1, 5, 1, 1, 1, 1, 0, 0, 0, 0, true },
    };
    for (int load = 0; load < 2; load++) {
        struct vka_ctx *ctx = test_ctx_params(&(struct vka_ctx_params){
            .validation = 1, .load = load ? VKA_LOAD_STORAGE : VKA_LOAD_TEXEL });
        for (size_t k = 0; k < sizeof(s) / sizeof(s[0]); k++) {
            int P, Q;
            out_size(&s[k], &P, &Q);
            uint32_t wd[4];
            wshape(&s[k], wd);
            size_t nx = (size_t)s[k].N * s[k].C * s[k].H * s[k].W;
            size_t ny = (size_t)s[k].N * s[k].K * P * Q;
            size_t nw = (size_t)wd[0] * wd[1] * wd[2] * wd[3];
            float *x = test_rand_floats(nx, -1, 1), *w = test_rand_floats(nw, -1, 1);
            float *dy = test_rand_floats(ny, -1, 1);
            if (k == 4) {
                x[3 * 6 + 1] = 3e9f;      /* sample 3: dw row 1 passes 2^31 */
                x[40 * 6 + 2] = INFINITY; /* sample 40: +-inf in row 2 */
                x[65 * 6 + 4] = NAN;      /* sample 65 */
            }
            struct vka_tensor tw = weight_tensor(ctx, wd, w);
            uint64_t sw = vka_tensor_stored(&tw), nb = (uint64_t)s[k].K;
            /* the accumulators' words before: sums of a few floats */
            float *pre = test_rand_floats(sw + nb, -100, 100);
            uint32_t *want_w = calloc(sw * 4, 4), *want_b = calloc(nb * 4, 4);
            exact_add_floats(want_w, pre, sw);
            exact_add_floats(want_b, pre + sw, nb);
            float *zero = calloc(nb, 4);
            struct vka_tensor tx = test_act(ctx, s[k].N, s[k].C, s[k].H, s[k].W, x);
            struct vka_tensor tdy = test_act(ctx, s[k].N, s[k].K, P, Q, dy);
            struct vka_tensor tb = test_flat(ctx, nb, zero);
            struct vka_tensor tdw = exact_like(ctx, &tw, want_w);
            struct vka_tensor tdb = exact_like(ctx, &tb, want_b);
            struct vka_op_args a = {
                .p.conv = { .stride = { s[k].sh, s[k].sw }, .pad = { s[k].ph, s[k].pw },
                            .out_pad = { s[k].oph, s[k].opw } },
                .x = { &tx, &tw, &tb }, .dy = &tdy, .dx = { NULL, &tdw, &tdb },
            };
            struct vka_cmd *cmd;
            cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
            cr_assert_eq(vka_cmd_begin(cmd), 0);
            cr_assert_eq(op_bwd(s[k].kind, cmd, &a), 0, "%s", vka_last_error());
            test_run(cmd);
            vka_cmd_destroy(&cmd);
            float *gw = malloc(sw * 4), *gb = malloc(nb * 4);
            for (int n = 0; n < s[k].N; n++) {
                float_grads(ctx, &s[k], n, x, w, dy, gw, gb);
                exact_add_floats(want_w, gw, sw);
                exact_add_floats(want_b, gb, nb);
            }
            uint32_t *got = malloc(sw * 16);
            cr_assert_eq(vka_buf_download(tdw.buf, tdw.off * 16, got, sw * 16), 0);
            for (uint64_t i = 0; i < sw * 4; i++)
                cr_assert_eq(got[i], want_w[i], "shape %zu load %d: dw element %llu word %llu: "
                             "%08x, the exact sum of the samples' own sums %08x", k, load,
                             (unsigned long long)(i / 4), (unsigned long long)(i % 4), got[i],
                             want_w[i]);
            cr_assert_eq(vka_buf_download(tdb.buf, tdb.off * 16, got, nb * 16), 0);
            for (uint64_t i = 0; i < nb * 4; i++)
                cr_assert_eq(got[i], want_b[i], "shape %zu load %d: db element %llu word %llu",
                             k, load, (unsigned long long)(i / 4), (unsigned long long)(i % 4));
            struct vka_tensor *ts[] = { &tx, &tdy, &tw, &tb, &tdw, &tdb };
            for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++)
                vka_tensor_destroy(ts[i]);
            free(x); free(w); free(dy); free(pre); free(want_w); free(want_b); free(zero);
            free(gw); free(gb); free(got);
        }
        test_ctx_done(&ctx);
    }
}

Test(conv, bad_shapes_are_refused)
{
    struct vka_ctx *ctx = test_ctx();
    struct vka_tensor x = test_act(ctx, 2, 3, 8, 8, NULL);
    float wz[4 * 5 * 9] = { 0 };
    struct vka_tensor w = weight_tensor(ctx, (uint32_t[4]){ 4, 5, 3, 3 }, wz);
    struct vka_tensor y = test_act(ctx, 2, 4, 8, 8, NULL);
    struct vka_op_args a = { .p.conv = { .stride = { 1, 1 }, .pad = { 1, 1 } },
                             .x = { &x, &w, NULL }, .y = &y };
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    cr_assert_eq(vka_conv2d_fwd(cmd, &a), -EINVAL);
    cr_assert(strstr(vka_last_error(), "conv2d: weight is (4,5,3,3) weight"), "%s",
              vka_last_error());
    a.x[1] = NULL;
    cr_assert_eq(vka_conv2d_fwd(cmd, &a), -EINVAL);
    a.x[1] = &w;
    a.p.conv.stride[0] = 0;
    cr_assert_eq(vka_conv2d_fwd(cmd, &a), -EINVAL);
    cr_assert(strstr(vka_last_error(), "stride"), "%s", vka_last_error());
    a.p.conv = (struct vka_conv_desc){ .stride = { 2, 2 }, .out_pad = { 2, 0 } };
    cr_assert_eq(vka_conv_transpose2d_fwd(cmd, &a), -EINVAL);
    cr_assert(strstr(vka_last_error(), "output padding"), "%s", vka_last_error());
    /* the GEMMs write whole vec4s: an output must start at one */
    float w3[4 * 3 * 9] = { 0 };
    struct vka_tensor w43 = weight_tensor(ctx, (uint32_t[4]){ 4, 3, 3, 3 }, w3);
    struct vka_tensor odd = y;
    odd.off = 2;
    odd.n = 1;
    odd.owns_buf = false;
    a = (struct vka_op_args){ .p.conv = { .stride = { 1, 1 }, .pad = { 1, 1 } },
                              .x = { &x, &w43, NULL }, .y = &odd };
    struct vka_tensor x1 = x;
    x1.n = 1;
    x1.owns_buf = false;
    a.x[0] = &x1;
    cr_assert_eq(vka_conv2d_fwd(cmd, &a), -EINVAL);
    cr_assert(strstr(vka_last_error(), "conv2d: output starts at element 2, not a vec4"), "%s",
              vka_last_error());
    test_run(cmd);
    vka_cmd_destroy(&cmd);
    vka_tensor_destroy(&x);
    vka_tensor_destroy(&w);
    vka_tensor_destroy(&w43);
    vka_tensor_destroy(&y);
    test_ctx_done(&ctx);
}
