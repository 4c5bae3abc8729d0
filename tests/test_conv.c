/* conv2d, conv_transpose2d and linear against tests/ref on random shapes, both load
 * paths and the shared-memory tiled GEMMs (the GPUs' path); tiled and untiled GEMMs give
 * the same bits; the += rule on pre-filled gradients; bit-identical dw/db for any split
 * of a batch into micro-batches; refusal of mismatched shapes. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ops/ops.h"
#include "ref/ref.h"

enum kind { CONV, CONVT, LINEAR };

struct shape {
    enum kind kind;
    int N, C, H, W, K, R, S, sh, sw, ph, pw, oph, opw;
    bool bias;
};

static struct ref_conv to_ref(const struct shape *s)
{
    return (struct ref_conv){ s->N, s->C, s->H, s->W, s->K, s->R, s->S,
                              s->sh, s->sw, s->ph, s->pw, s->oph, s->opw };
}

static void out_size(const struct shape *s, int *P, int *Q)
{
    struct ref_conv r = to_ref(s);
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

static void ref_fwd(const struct shape *s, const double *x, const double *w, const double *b,
                    double *y)
{
    struct ref_conv r = to_ref(s);
    if (s->kind == CONVT)
        ref_conv_transpose2d_fwd(&r, x, w, b, y);
    else
        ref_conv2d_fwd(&r, x, w, b, y); /* linear is a 1x1 conv on 1x1 images */
}

static void ref_bwd(const struct shape *s, const double *x, const double *w, const double *dy,
                    double *dx, double *dw, double *db)
{
    struct ref_conv r = to_ref(s);
    if (s->kind == CONVT)
        ref_conv_transpose2d_bwd(&r, x, w, dy, dx, dw, db);
    else
        ref_conv2d_bwd(&r, x, w, dy, dx, dw, db);
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

static double *absd(const double *a, size_t n)
{
    double *r = malloc((n ? n : 1) * sizeof(double));
    for (size_t i = 0; i < n; i++)
        r[i] = fabs(a[i]);
    return r;
}

/* got ~ init + ref. f32 accumulation of L products errs by at most about L unit
 * roundoffs (2^-24) of the sum of the products' magnitudes (absref: the same op on
 * |inputs|); the result is then added into the accumulator in `adds` steps (1 for y and
 * dx; one per sample for dw and db, which reach it in sample order), each rounding at a
 * magnitude below |init| + absref. */
static void check(const char *what, const float *got, const float *init, const double *ref,
                  const double *absref, size_t n, double L, int adds)
{
    for (size_t i = 0; i < n; i++) {
        double want = (init ? init[i] : 0.0) + ref[i];
        double tol = (L + 2) * ldexp(absref[i], -24) +
                     adds * ldexp(fabs(init ? init[i] : 0.0) + absref[i], -24) + 1e-30;
        if (!(fabs(got[i] - want) <= tol))
            cr_assert_fail("%s: element %zu of %zu: got %.9g, want %.9g (tol %.3g)", what, i,
                           n, got[i], want, tol);
    }
}

static void run_shape(struct vka_ctx *ctx, const struct shape *s)
{
    int P, Q;
    out_size(s, &P, &Q);
    uint32_t wd[4];
    wshape(s, wd);
    size_t nx = (size_t)s->N * s->C * s->H * s->W, ny = (size_t)s->N * s->K * P * Q;
    size_t nw = (size_t)wd[0] * wd[1] * wd[2] * wd[3];
    float *x = test_rand_floats(nx, -1, 1), *w = test_rand_floats(nw, -1, 1);
    float *b = test_rand_floats(s->K, -1, 1), *dy = test_rand_floats(ny, -1, 1);
    float *dx0 = test_rand_floats(nx, -1, 1), *dw0 = test_rand_floats(nw, -1, 1);
    float *db0 = test_rand_floats(s->K, -1, 1);
    float *y = malloc(ny * 4), *gx = malloc(nx * 4), *gw = malloc(nw * 4), *gb = malloc(s->K * 4);

    struct vka_tensor tx = test_act(ctx, s->N, s->C, s->H, s->W, x);
    struct vka_tensor tw = weight_tensor(ctx, wd, w);
    struct vka_tensor tb = test_flat(ctx, s->K, b);
    struct vka_tensor ty = test_act(ctx, s->N, s->K, P, Q, NULL);
    struct vka_tensor tdy = test_act(ctx, s->N, s->K, P, Q, dy);
    struct vka_tensor tdx = test_act(ctx, s->N, s->C, s->H, s->W, dx0);
    struct vka_tensor tdw = weight_tensor(ctx, wd, dw0);
    struct vka_tensor tdb = test_flat(ctx, s->K, db0);
    struct vka_op_args a = {
        .p.conv = { .stride = { s->sh, s->sw }, .pad = { s->ph, s->pw },
                    .out_pad = { s->oph, s->opw } },
        .x = { &tx, &tw, s->bias ? &tb : NULL }, .y = &ty, .dy = &tdy,
        .dx = { &tdx, &tdw, s->bias ? &tdb : NULL },
    };
    uint32_t shp[4];
    int ret = s->kind == CONV ? vka_conv2d_shape(&a, shp) : s->kind == CONVT
              ? vka_conv_transpose2d_shape(&a, shp) : vka_linear_shape(&a, shp);
    cr_assert_eq(ret, 0, "%s", vka_last_error());
    cr_assert(shp[0] == (uint32_t)s->N && shp[1] == (uint32_t)s->K && shp[2] == (uint32_t)P &&
              shp[3] == (uint32_t)Q, "shape rule gives (%u,%u,%u,%u)", shp[0], shp[1], shp[2],
              shp[3]);

    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    cr_assert_eq(op_fwd(s->kind, cmd, &a), 0, "%s", vka_last_error());
    cr_assert_eq(op_bwd(s->kind, cmd, &a), 0, "%s", vka_last_error());
    test_run(cmd);
    test_act_read(&ty, y);
    test_act_read(&tdx, gx);
    cr_assert_eq(vka_tensor_download(&tdw, gw), 0);
    cr_assert_eq(vka_tensor_download(&tdb, gb), 0);

    double *dxd = test_to_double(x, nx), *dwd = test_to_double(w, nw);
    double *dbd = test_to_double(b, s->K), *dyd = test_to_double(dy, ny);
    double *ry = calloc(ny, 8), *rdx = calloc(nx, 8), *rdw = calloc(nw, 8), *rdb = calloc(s->K, 8);
    double *ay = calloc(ny, 8), *adx = calloc(nx, 8), *adw = calloc(nw, 8), *adb = calloc(s->K, 8);
    ref_fwd(s, dxd, dwd, s->bias ? dbd : NULL, ry);
    ref_bwd(s, dxd, dwd, dyd, rdx, rdw, rdb);
    double *ax = absd(dxd, nx), *aw = absd(dwd, nw), *ab = absd(dbd, s->K), *ady = absd(dyd, ny);
    ref_fwd(s, ax, aw, s->bias ? ab : NULL, ay);
    ref_bwd(s, ax, aw, ady, adx, adw, adb);

    char what[160];
    const char *name = s->kind == CONV ? "conv2d" : s->kind == CONVT ? "conv_transpose2d" : "linear";
    snprintf(what, sizeof(what), "%s N%d C%d %dx%d K%d %dx%d s%d,%d p%d,%d op%d,%d", name, s->N,
             s->C, s->H, s->W, s->K, s->R, s->S, s->sh, s->sw, s->ph, s->pw, s->oph, s->opw);
    char sub[200];
    snprintf(sub, sizeof(sub), "%s: y", what);
    check(sub, y, NULL, ry, ay, ny, (double)s->C * s->R * s->S, 1);
    snprintf(sub, sizeof(sub), "%s: dx", what);
    check(sub, gx, dx0, rdx, adx, nx, (double)s->K * s->R * s->S, 1);
    snprintf(sub, sizeof(sub), "%s: dw", what);
    check(sub, gw, dw0, rdw, adw, nw, (double)s->N * P * Q, s->N);
    if (s->bias) {
        snprintf(sub, sizeof(sub), "%s: db", what);
        check(sub, gb, db0, rdb, adb, s->K, (double)s->N * P * Q, s->N);
    } else {
        cr_assert_eq(memcmp(gb, db0, s->K * 4), 0, "%s: db changed without a bias", what);
    }

    vka_cmd_destroy(&cmd);
    struct vka_tensor *ts[] = { &tx, &tw, &tb, &ty, &tdy, &tdx, &tdw, &tdb };
    for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++)
        vka_tensor_destroy(ts[i]);
    void *fr[] = { x, w, b, dy, dx0, dw0, db0, y, gx, gw, gb, dxd, dwd, dbd, dyd, ry, rdx, rdw,
                   rdb, ay, adx, adw, adb, ax, aw, ab, ady };
    for (size_t i = 0; i < sizeof(fr) / sizeof(fr[0]); i++)
        free(fr[i]);
}

static const struct shape shapes[] = {
    /* kind   N  C  H  W  K  R  S sh sw ph pw oph opw bias */
    { CONV,   2, 3, 5, 7, 4, 3, 3, 1, 1, 1, 1, 0, 0, true },
    { CONV,   1, 5, 1, 1, 7, 1, 1, 1, 1, 0, 0, 0, 0, true },   /* 1x1 spatial */
    { CONV,   5, 13, 9, 6, 6, 3, 2, 2, 1, 1, 0, 0, 0, false }, /* odd kernel, strides */
    { CONV,   2, 8, 8, 8, 16, 4, 4, 2, 2, 1, 1, 0, 0, false }, /* DCGAN discriminator */
    { CONV,   1, 1, 11, 3, 1, 3, 3, 1, 1, 2, 2, 0, 0, true },  /* pad > kernel/2 */
    { CONV,   3, 7, 6, 5, 70, 3, 3, 1, 1, 1, 1, 0, 0, true },  /* K >= 128 / 4 vec4s? */
    { CONVT,  2, 6, 4, 5, 3, 2, 2, 2, 2, 0, 0, 0, 0, true },   /* U-Net up-sampling */
    { CONVT,  1, 8, 4, 4, 4, 4, 4, 2, 2, 1, 1, 0, 0, false },  /* DCGAN generator */
    { CONVT,  3, 5, 3, 5, 7, 3, 3, 2, 2, 1, 1, 1, 1, true },   /* output padding */
    { CONVT,  5, 3, 1, 1, 9, 4, 4, 1, 1, 0, 0, 0, 0, true },   /* 1x1 -> 4x4 projection */
    { LINEAR, 5, 13, 1, 1, 7, 1, 1, 1, 1, 0, 0, 0, 0, true },
    { LINEAR, 1, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, true },
    { LINEAR, 4, 130, 1, 1, 129, 1, 1, 1, 1, 0, 0, 0, 0, false },
};

/* For the tiled GEMMs: several weight tiles along a (C or K past 32, the last one
 * partial), output-channel blocks past the last one in a workgroup, batch 1 and 5. */
static const struct shape tiled_shapes[] = {
    /* kind   N  C  H  W  K  R  S sh sw ph pw oph opw bias */
    { CONV,   5, 37, 5, 3, 70, 3, 3, 1, 1, 1, 1, 0, 0, true },
    { CONV,   1, 33, 7, 6, 41, 3, 3, 2, 2, 1, 1, 0, 0, false },
    { CONVT,  1, 37, 3, 3, 9, 4, 4, 2, 2, 1, 1, 0, 0, true },
    { CONVT,  5, 10, 2, 3, 35, 3, 3, 2, 1, 1, 0, 1, 0, false },
    { LINEAR, 1, 65, 1, 1, 19, 1, 1, 1, 1, 0, 0, 0, 0, true },
};

static void run_all(const char *load, size_t step, bool tiles)
{
    setenv("VKACCUM_LOAD_PATH", load, 1);
    struct vka_ctx *ctx = test_ctx();
    ctx->profile.conv_tiles = tiles;
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i += step)
        run_shape(ctx, &shapes[i]);
    for (size_t i = 0; tiles && i < sizeof(tiled_shapes) / sizeof(tiled_shapes[0]); i++)
        run_shape(ctx, &tiled_shapes[i]);
    test_ctx_done(&ctx);
}

/* the storage path (GPUs' path) is slow on lavapipe: every other shape */
Test(conv, against_reference_texel) { test_seed("conv texel"); run_all("texel", 1, false); }
Test(conv, against_reference_storage) { test_seed("conv storage"); run_all("storage", 2, false); }
Test(conv, against_reference_tiled) { test_seed("conv tiled"); run_all("storage", 1, true); }

/* y and dx (stored elements, padding included) of one shape on the same inputs, from
 * the untiled GEMMs on texel loads (lavapipe's path) and from the tiled ones on storage
 * loads (GPUs' path) and on texel loads: all must be bit-identical, as both GEMMs run
 * every output's multiply-add chain over r, s, a in the same order. texel_only keeps
 * the texel pair, whose inputs are not bound by the storage range. */
static void tiled_bitwise_case(struct vka_ctx *ctx, const struct shape *s, bool texel_only)
{
    static const struct { enum vka_load_path load; bool tiles; } cfg[] = {
        { VKA_LOAD_TEXEL, false }, { VKA_LOAD_STORAGE, true }, { VKA_LOAD_TEXEL, true },
    };
    int P, Q;
    out_size(s, &P, &Q);
    uint32_t wd[4];
    wshape(s, wd);
    size_t nx = (size_t)s->N * s->C * s->H * s->W, ny = (size_t)s->N * s->K * P * Q;
    size_t nw = (size_t)wd[0] * wd[1] * wd[2] * wd[3];
    float *x = test_rand_floats(nx, -1, 1), *w = test_rand_floats(nw, -1, 1);
    float *b = test_rand_floats(s->K, -1, 1), *dy = test_rand_floats(ny, -1, 1);
    float *dx0 = test_rand_floats(nx, -1, 1);
    struct vka_tensor tx = test_act(ctx, s->N, s->C, s->H, s->W, x);
    struct vka_tensor tw = weight_tensor(ctx, wd, w);
    struct vka_tensor tb = test_flat(ctx, s->K, b);
    struct vka_tensor tdy = test_act(ctx, s->N, s->K, P, Q, dy);
    uint64_t sy = vka_tensor_stored(&tdy), sx = vka_tensor_stored(&tx);
    float *ys[3], *dxs[3];
    char what[160];
    snprintf(what, sizeof(what), "kind %d N%d C%d %dx%d K%d %dx%d s%d,%d", s->kind, s->N, s->C,
             s->H, s->W, s->K, s->R, s->S, s->sh, s->sw);
    for (int k = 0; k < 3; k += texel_only ? 2 : 1) {
        ctx->profile.load = cfg[k].load;
        ctx->profile.conv_tiles = cfg[k].tiles;
        struct vka_tensor ty = test_act(ctx, s->N, s->K, P, Q, NULL);
        struct vka_tensor tdx = test_act(ctx, s->N, s->C, s->H, s->W, dx0);
        struct vka_op_args a = {
            .p.conv = { .stride = { s->sh, s->sw }, .pad = { s->ph, s->pw },
                        .out_pad = { s->oph, s->opw } },
            .x = { &tx, &tw, s->bias ? &tb : NULL }, .y = &ty, .dy = &tdy,
            .dx = { &tdx, NULL, NULL },
        };
        struct vka_cmd *cmd;
        cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
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
        vka_tensor_destroy(&ty);
        vka_tensor_destroy(&tdx);
    }
    for (int k = 0; k < 3; k += texel_only ? 2 : 1) {
        free(ys[k]);
        free(dxs[k]);
    }
    struct vka_tensor *ts[] = { &tx, &tw, &tb, &tdy };
    for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++)
        vka_tensor_destroy(ts[i]);
    free(x); free(w); free(b); free(dy); free(dx0);
}

Test(conv, tiled_and_untiled_give_the_same_bits)
{
    test_seed("conv tiled bits");
    struct vka_ctx *ctx = test_ctx();
    static const struct shape s[] = {
        /* kind   N  C  H  W  K  R  S sh sw ph pw oph opw bias */
        { CONV,   5, 37, 9, 6, 70, 3, 3, 1, 1, 1, 1, 0, 0, true },
        { CONV,   1, 13, 9, 6, 6, 3, 2, 2, 1, 1, 0, 0, 0, false },
        { CONV,   2, 8, 8, 8, 16, 4, 4, 2, 2, 1, 1, 0, 0, true },
        { CONVT,  3, 35, 3, 5, 7, 3, 3, 2, 2, 1, 1, 1, 1, true },
        { CONVT,  1, 64, 4, 4, 32, 2, 2, 2, 2, 0, 0, 0, 0, true },
        { LINEAR, 5, 130, 1, 1, 129, 1, 1, 1, 1, 0, 0, 0, 0, true },
    };
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
        tiled_bitwise_case(ctx, &s[i], false);
    /* outputs in several bindings, one dispatch each */
    ctx->profile.max_binding = 16 << 10;
    static const struct shape big[] = {
        { CONV,  2, 4, 33, 41, 4, 3, 3, 1, 1, 1, 1, 0, 0, true },
        { CONVT, 2, 4, 21, 23, 4, 3, 3, 2, 2, 1, 1, 1, 0, true },
    };
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++)
        tiled_bitwise_case(ctx, &big[i], true);
    test_ctx_done(&ctx);
}

/* A batch of 8 as 8, 4+4, 3+3+2 and 1x8 micro-batches into one pre-filled dw/db. */
static void split_case(struct vka_ctx *ctx, const struct shape *s)
{
    int P, Q;
    out_size(s, &P, &Q);
    uint32_t wd[4];
    wshape(s, wd);
    const int N = 8;
    size_t xs = (size_t)s->C * s->H * s->W, ys = (size_t)s->K * P * Q;
    size_t nw = (size_t)wd[0] * wd[1] * wd[2] * wd[3];
    float *x = test_rand_floats(N * xs, -1, 1), *dy = test_rand_floats(N * ys, -1, 1);
    float *w = test_rand_floats(nw, -1, 1), *dw0 = test_rand_floats(nw, -1, 1);
    float *db0 = test_rand_floats(s->K, -1, 1);
    static const int splits[4][9] = { { 8 }, { 4, 4 }, { 3, 3, 2 }, { 1, 1, 1, 1, 1, 1, 1, 1 } };
    float *res_w[4], *res_b[4];
    struct vka_tensor tw = weight_tensor(ctx, wd, w);
    for (int sp = 0; sp < 4; sp++) {
        struct vka_tensor tdw = weight_tensor(ctx, wd, dw0);
        struct vka_tensor tdb = test_flat(ctx, s->K, db0);
        struct vka_cmd *cmd;
        cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
        int at = 0;
        for (int k = 0; k < 9 && splits[sp][k]; k++) {
            int b = splits[sp][k];
            struct vka_tensor tx = test_act(ctx, b, s->C, s->H, s->W, x + at * xs);
            struct vka_tensor tdy = test_act(ctx, b, s->K, P, Q, dy + at * ys);
            struct vka_op_args a = {
                .p.conv = { .stride = { s->sh, s->sw }, .pad = { s->ph, s->pw },
                            .out_pad = { s->oph, s->opw } },
                .x = { &tx, &tw, NULL }, .dy = &tdy, .dx = { NULL, &tdw, &tdb },
            };
            cr_assert_eq(vka_cmd_begin(cmd), 0);
            cr_assert_eq(op_bwd(s->kind, cmd, &a), 0, "%s", vka_last_error());
            test_run(cmd);
            vka_tensor_destroy(&tx);
            vka_tensor_destroy(&tdy);
            at += b;
        }
        res_w[sp] = malloc(vka_tensor_stored(&tdw) * 4);
        res_b[sp] = malloc(s->K * 4);
        cr_assert_eq(vka_buf_download(tdw.buf, 0, res_w[sp], vka_tensor_stored(&tdw) * 4), 0);
        cr_assert_eq(vka_tensor_download(&tdb, res_b[sp]), 0);
        if (sp) {
            cr_assert_eq(memcmp(res_w[sp], res_w[0], vka_tensor_stored(&tdw) * 4), 0,
                         "kind %d: dw of split %d differs from the whole batch", s->kind, sp);
            cr_assert_eq(memcmp(res_b[sp], res_b[0], s->K * 4), 0,
                         "kind %d: db of split %d differs from the whole batch", s->kind, sp);
        }
        vka_cmd_destroy(&cmd);
        vka_tensor_destroy(&tdw);
        vka_tensor_destroy(&tdb);
    }
    /* and the accumulator really moved */
    cr_assert_neq(memcmp(res_b[0], db0, s->K * 4), 0);
    for (int sp = 0; sp < 4; sp++) {
        free(res_w[sp]);
        free(res_b[sp]);
    }
    vka_tensor_destroy(&tw);
    free(x); free(dy); free(w); free(dw0); free(db0);
}

Test(conv, gradients_do_not_depend_on_the_split)
{
    test_seed("conv split");
    struct vka_ctx *ctx = test_ctx();
    static const struct shape s[] = {
        { CONV,   8, 5, 9, 7, 6, 3, 3, 1, 1, 1, 1, 0, 0, true },
        { CONVT,  8, 6, 4, 5, 3, 2, 2, 2, 2, 0, 0, 0, 0, true },
        { LINEAR, 8, 13, 1, 1, 7, 1, 1, 1, 1, 0, 0, 0, 0, true },
    };
    for (size_t i = 0; i < 3; i++)
        split_case(ctx, &s[i]);
    test_ctx_done(&ctx);
}

/* Images past one 4096-pixel chunk of dw, and outputs split into several bindings (the
 * storage range lowered to 64 KiB), for the gather and the strided scatter geometry.
 * Texel loads on every device: storage-buffer inputs are bound whole, so they would
 * pass the lowered range. */
Test(conv, large_images_and_split_bindings)
{
    test_seed("conv large");
    struct vka_ctx *ctx = test_ctx();
    ctx->profile.load = VKA_LOAD_TEXEL;
    ctx->profile.max_binding = 64 << 10;
    struct shape s[] = {
        { CONV,  2, 4, 70, 70, 8, 3, 3, 1, 1, 1, 1, 0, 0, true },
        { CONV,  1, 4, 33, 41, 4, 3, 3, 2, 2, 1, 1, 0, 0, true },
        { CONVT, 2, 4, 21, 23, 4, 3, 3, 2, 2, 1, 1, 1, 0, true },
    };
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
        run_shape(ctx, &s[i]);
    test_ctx_done(&ctx);
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
    test_run(cmd);
    vka_cmd_destroy(&cmd);
    vka_tensor_destroy(&x);
    vka_tensor_destroy(&w);
    vka_tensor_destroy(&y);
    test_ctx_done(&ctx);
}
