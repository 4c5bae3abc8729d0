/* cross_entropy, bce_logits, mse, l1, dice, hinge (both modes) and the sigmoid_mean
 * metric (src/ops/loss.c) against tests/ref in
 * double: fwd sums and counts added into pre-filled accumulators, bwd added into
 * pre-filled gradients with scale = 1 / count (the gradient of the mean), on both load
 * paths and with bindings small enough to split every dispatch into chunks. Shapes
 * cover batch 1 and 5, 1x1 spatial, channel counts that are not multiples of 4 and
 * images of several reduction blocks; segmentation targets mix ignore_index (unevenly
 * over samples) and out-of-range ids; hinge targets mix 0 and 1 and put some logits on
 * the kink s*x == 1; bce_logits and hinge also run with x1 NULL and the constant target
 * p.loss.target. Accumulators are checked to give the same bits for a batch of 8 run as
 * 8, 4+4, 3+3+2, 1x8 and in chunks. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ops/loss.h"
#include "ops/ops.h"
#include "ref/ref.h"

/* HINGE_LIN is hinge with p.loss.hinge_linear */
enum kind { CE, BCE, MSE, L1, DICE, HINGE, HINGE_LIN, SIGMEAN, NKINDS };

static const char *const names[NKINDS] = { "cross_entropy", "bce_logits", "mse", "l1", "dice",
                                           "hinge", "hinge_linear", "sigmoid_mean" };
static const vka_op_rec_fn fwds[NKINDS] = { vka_cross_entropy_fwd, vka_bce_logits_fwd,
                                            vka_mse_fwd, vka_l1_fwd, vka_dice_fwd,
                                            vka_hinge_fwd, vka_hinge_fwd,
                                            vka_sigmoid_mean_fwd };
static const vka_op_rec_fn bwds[NKINDS] = { vka_cross_entropy_bwd, vka_bce_logits_bwd,
                                            vka_mse_bwd, vka_l1_bwd, vka_dice_bwd,
                                            vka_hinge_bwd, vka_hinge_bwd,
                                            vka_sigmoid_mean_bwd };

static bool seg(enum kind k)
{
    return k == CE || k == DICE;
}

static bool has_targets(enum kind k)
{
    return k != SIGMEAN;
}

static bool hinge(enum kind k)
{
    return k == HINGE || k == HINGE_LIN;
}

static struct vka_ctx *ctx_for(const char *load, uint64_t max_binding)
{
    setenv("VKACCUM_LOAD_PATH", load, 1);
    struct vka_ctx *ctx = test_ctx();
    if (max_binding)
        ctx->profile.max_binding = max_binding;
    return ctx;
}

/* Host data of one case, NCHW. */
struct inputs {
    uint32_t N, C, H, W;
    float *x;    /* (N,C,H,W) logits / predictions */
    float *tf;   /* (N,C,H,W) f32 targets (bce, mse, l1, hinge) */
    int32_t *ti; /* (N,H,W) class ids (cross_entropy, dice) */
    float *w;    /* (C) class weights or NULL */
    int32_t ignore;
    bool tconst; /* bce, hinge: x1 NULL, every target p.loss.target (tf holds it too) */
    float target;
};

/* tconst: NAN for a target tensor, else the constant target of bce_logits / hinge */
static void make_inputs(struct inputs *in, enum kind k, uint32_t N, uint32_t C, uint32_t H,
                        uint32_t W, bool weights, float tconst)
{
    size_t n = (size_t)N * C * H * W, hw = (size_t)H * W;
    *in = (struct inputs){ .N = N, .C = C, .H = H, .W = W, .tconst = !isnan(tconst),
                           .target = isnan(tconst) ? 0 : tconst };
    in->x = test_rand_floats(n, -4, 4);
    in->ignore = test_rand_range(0, 1) ? 255 : -100;
    if (seg(k)) {
        in->ti = malloc((N * hw + 1) * sizeof(int32_t));
        for (uint32_t s = 0; s < N; s++) {
            float pignore = 0.3f * (s % 3); /* uneven over samples: 0, 30 %, 60 % */
            for (size_t i = 0; i < hw; i++) {
                float r = test_rand_uniform(0, 1);
                int32_t t = (int32_t)test_rand_range(0, C - 1);
                if (r < pignore)
                    t = in->ignore;
                else if (r > 0.95f) /* out of range: skipped, never read */
                    t = test_rand_range(0, 1) ? (int32_t)C + (int32_t)test_rand_range(0, 5) : -3;
                in->ti[s * hw + i] = t;
            }
        }
        if (weights)
            in->w = test_rand_floats(C, 0.2f, 2.0f);
    } else if (hinge(k)) {
        in->tf = malloc((n ? n : 1) * sizeof(float));
        for (size_t i = 0; i < n; i++) {
            in->tf[i] = in->tconst ? in->target : (float)test_rand_range(0, 1);
            if (test_rand_uniform(0, 1) < 0.1f)
                in->x[i] = 2 * in->tf[i] - 1; /* the kink s*x == 1: subgradient 0 */
        }
    } else if (k == SIGMEAN) {
        for (size_t i = 0; i < n; i++)
            if (test_rand_uniform(0, 1) < 0.05f) /* saturated: exp(-|x|) underflows */
                in->x[i] = test_rand_uniform(-120, 120);
    } else {
        in->tf = test_rand_floats(n, k == BCE ? 0 : -2, k == BCE ? 1 : 2);
        for (size_t i = 0; i < n; i++) {
            float r = test_rand_uniform(0, 1);
            if (k == BCE && r < 0.3f)
                in->tf[i] = r < 0.15f ? 0.0f : 1.0f; /* hard labels among soft ones */
            if (k == L1 && r < 0.1f)
                in->tf[i] = in->x[i]; /* sign(0) = 0 */
            if (in->tconst)
                in->tf[i] = in->target;
        }
    }
}

static void free_inputs(struct inputs *in)
{
    free(in->x);
    free(in->tf);
    free(in->ti);
    free(in->w);
}

static struct vka_tensor i32_tensor(struct vka_ctx *ctx, uint64_t off, uint64_t n,
                                    const int32_t *data)
{
    struct vka_tensor t = test_flat_guarded(ctx, off, n, NULL);
    t.dtype = VKA_I32;
    if (n)
        cr_assert_eq(vka_buf_upload(t.buf, off * 4, data, n * 4), 0, "%s", vka_last_error());
    return t;
}

/* Device copies of one case's inputs. */
struct dev {
    struct vka_tensor x, t, w;
};

static void upload_inputs(struct vka_ctx *ctx, enum kind k, const struct inputs *in,
                          struct dev *d)
{
    memset(d, 0, sizeof(*d));
    d->x = test_act(ctx, in->N, in->C, in->H, in->W, in->x);
    if (seg(k))
        d->t = i32_tensor(ctx, test_rand_range(0, 5), (uint64_t)in->N * in->H * in->W, in->ti);
    else if (has_targets(k) && !in->tconst)
        d->t = test_act(ctx, in->N, in->C, in->H, in->W, in->tf);
    if (in->w)
        d->w = test_flat_guarded(ctx, test_rand_range(0, 5), in->C, in->w);
}

static void free_dev(struct dev *d)
{
    vka_tensor_destroy(&d->x);
    if (d->t.buf)
        vka_tensor_destroy(&d->t);
    if (d->w.buf)
        vka_tensor_destroy(&d->w);
}

static struct vka_op_args args_for(enum kind k, const struct inputs *in, const struct dev *d)
{
    return (struct vka_op_args){
        .p.loss = { .ignore_index = in->ignore, .hinge_linear = k == HINGE_LIN,
                    .target = in->target },
        .x = { &d->x, has_targets(k) && !in->tconst ? &d->t : NULL, d->w.buf ? &d->w : NULL },
    };
}

/* The reference fwd: acc (2, or 2C for dice) and the count of the mean. */
static void ref_fwd(enum kind k, const struct inputs *in, double *acc)
{
    int n = (int)(in->N * in->C * in->H * in->W);
    struct ref_seg p = { (int)in->N, (int)in->C, (int)in->H, (int)in->W, in->ignore };
    double *x = test_to_double(in->x, n), *t = in->tf ? test_to_double(in->tf, n) : NULL;
    double *w = in->w ? test_to_double(in->w, in->C) : NULL;
    switch (k) {
    case CE: ref_softmax_ce_fwd(&p, x, in->ti, w, &acc[0], &acc[1]); break;
    case BCE: ref_bce_logits_fwd(n, x, t, &acc[0], &acc[1]); break;
    case MSE: ref_mse_fwd(n, x, t, &acc[0], &acc[1]); break;
    case L1: ref_l1_fwd(n, x, t, &acc[0], &acc[1]); break;
    case HINGE:
    case HINGE_LIN: ref_hinge_fwd(n, k == HINGE_LIN, x, t, &acc[0], &acc[1]); break;
    case SIGMEAN: ref_sigmoid_mean_fwd(n, x, &acc[0], &acc[1]); break;
    default: ref_dice_fwd(&p, x, in->ti, acc, acc + in->C); break;
    }
    free(x);
    free(t);
    free(w);
}

/* dx += the reference gradient (dice: of the window loss with dL/dinter, dL/dcard dy;
 * sigmoid_mean: none) */
static void ref_bwd(enum kind k, const struct inputs *in, double scale, const float *dy,
                    double *dx)
{
    int n = (int)(in->N * in->C * in->H * in->W);
    struct ref_seg p = { (int)in->N, (int)in->C, (int)in->H, (int)in->W, in->ignore };
    double *x = test_to_double(in->x, n), *t = in->tf ? test_to_double(in->tf, n) : NULL;
    double *w = in->w ? test_to_double(in->w, in->C) : NULL;
    double *g = dy ? test_to_double(dy, 2 * in->C) : NULL;
    switch (k) {
    case CE: ref_softmax_ce_bwd(&p, x, in->ti, w, scale, dx); break;
    case BCE: ref_bce_logits_bwd(n, x, t, scale, dx); break;
    case MSE: ref_mse_bwd(n, x, t, scale, dx); break;
    case L1: ref_l1_bwd(n, x, t, scale, dx); break;
    case HINGE:
    case HINGE_LIN: ref_hinge_bwd(n, k == HINGE_LIN, x, t, scale, dx); break;
    case SIGMEAN: break;
    default: ref_dice_bwd(&p, x, in->ti, g, g + in->C, dx); break;
    }
    free(x);
    free(t);
    free(w);
    free(g);
}

/* One case: fwd into a pre-filled accumulator, bwd into a pre-filled gradient. */
static void check_case(struct vka_ctx *ctx, struct vka_cmd *cmd, enum kind k, uint32_t N,
                       uint32_t C, uint32_t H, uint32_t W, bool weights, float tconst)
{
    struct inputs in;
    struct dev d;
    make_inputs(&in, k, N, C, H, W, weights, tconst);
    upload_inputs(ctx, k, &in, &d);
    const char *what = names[k];
    size_t n = (size_t)N * C * H * W, na = k == DICE ? 2 * C : 2;

    float *init = test_rand_floats(na, 0, 50), *got = malloc(na * sizeof(float));
    double *ref = calloc(na, sizeof(double));
    struct vka_tensor y = test_flat_guarded(ctx, test_rand_range(0, 7), na, init);
    struct vka_op_args a = args_for(k, &in, &d);
    a.y = &y;
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    cr_assert_eq(fwds[k](cmd, &a), 0, "%s fwd: %s", what, vka_last_error());
    test_run(cmd);
    test_flat_check_guard(&y, got);
    ref_fwd(k, &in, ref);
    /* Per item, exp/log cost a few ulp ((3 + 2|x|) ulp and 2^-21 absolute in Vulkan's
     * precision rules), under 4e-6 absolute for |x| <= 8; the fixed tree adds at most
     * depth * 2^-24 relative of the sum of magnitudes (all terms but BCE's x*t are >= 0,
     * and that one is bounded by the count): 5e-6 * (count + |sum| + |init|) covers both.
     * Dice inter/card are sums of probabilities: the same bound per class. */
    for (size_t i = 0; i < na; i++) {
        double count = k == DICE ? ref[C + i % C] : ref[1];
        double exact = (double)init[i] + ref[i];
        double tol = 5e-6 * (count + fabs(ref[i]) + fabs(init[i])) + 1e-6;
        if (k >= HINGE) {
            /* |term| <= M: hinge 1 + max|x| = 5, hinge_linear 4, sigmoid 1. A fixed tree
             * of at most 25 adds (4 per invocation, 6 + 6 tree levels, the fold's serial
             * steps, 8 samples) errs by 25 * 2^-24 (< 1.5e-6) of the sum of the terms'
             * magnitudes and |init|. hinge's terms round once; sigmoid's carry exp's
             * (3 + 2|x|) ulp times e/(1+e)^2 and a division's 2.5 ulp: < 3e-7 each. */
            double M = k == HINGE ? 5 : k == HINGE_LIN ? 4 : 1;
            tol = 1.5e-6 * (M * count + fabs(init[i])) + (k == SIGMEAN ? 3e-7 * count : 0) +
                  1e-6;
        }
        cr_assert_leq(fabs(got[i] - exact), tol,
                      "%s fwd (%u,%u,%u,%u)%s%s: acc[%zu] = %.9g, init %.9g + ref %.9g = %.9g",
                      what, N, C, H, W, weights ? " weighted" : "",
                      in.tconst ? " constant target" : "", i, got[i], init[i], ref[i], exact);
    }

    /* bwd: scale = 1 / count gives the gradient of the mean loss */
    double scale = k != DICE && ref[1] > 0 ? 1.0 / ref[1] : 1.0;
    float *dy = NULL;
    struct vka_tensor tdy = { 0 };
    if (k == DICE) {
        float *tot = malloc(na * sizeof(float));
        for (size_t i = 0; i < na; i++)
            tot[i] = (float)ref[i];
        dy = malloc(na * sizeof(float));
        double loss = vka_dice_loss(tot, C, 1.0, 1.0, dy);
        double *rt = test_to_double(tot, na), *rdy = calloc(na, sizeof(double));
        ref_dice_loss_from_sums_bwd(rt, rt + C, (int)C, 1.0, 1.0, rdy, rdy + C);
        /* the host helper computes in double from the same floats: only dy's rounding
         * to float (2^-24 relative) separates it from the reference */
        cr_assert_float_eq(loss, ref_dice_loss_from_sums(rt, rt + C, (int)C, 1.0), 1e-12);
        test_assert_close("vka_dice_loss dy", dy, rdy, na, 1e-30, 1.2e-7);
        tdy = test_flat_guarded(ctx, test_rand_range(0, 7), na, dy);
        a.dy = &tdy;
        free(tot);
        free(rt);
        free(rdy);
    }
    float *dx0 = test_rand_floats(n, -1, 1), *dxg = malloc((n ? n : 1) * sizeof(float));
    double *dxr = test_to_double(dx0, n);
    struct vka_tensor dx = test_act(ctx, N, C, H, W, dx0);
    a.dx[0] = &dx;
    a.p.loss.scale = (float)scale;
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    cr_assert_eq(bwds[k](cmd, &a), 0, "%s bwd: %s", what, vka_last_error());
    test_run(cmd);
    test_act_read(&dx, dxg);
    ref_bwd(k, &in, (float)scale, dy, dxr);
    /* each gradient is init + g with |g| <= ~scale * max w (dice: ~max |dy|): the init
     * rounds to 2^-24 relative, g carries the exp error of p (~1e-6 relative) */
    char label[128];
    snprintf(label, sizeof(label), "%s bwd (%u,%u,%u,%u)%s%s", what, N, C, H, W,
             weights ? " weighted" : "", in.tconst ? " constant target" : "");
    if (k == SIGMEAN) {
        for (size_t i = 0; i < n; i++) /* a metric's bwd leaves dx alone, bit for bit */
            cr_assert_eq(memcmp(&dxg[i], &dx0[i], 4), 0, "%s: dx[%zu] %a became %a", label, i,
                         dx0[i], dxg[i]);
    } else if (hinge(k)) {
        /* g is exactly 0 or -s * scale (s = +-1): only the one rounding of init + g */
        test_assert_close(label, dxg, dxr, n, 0, 1.2e-7);
    } else {
        test_assert_close(label, dxg, dxr, n, 1e-6 * (1 + scale * 2), 1e-5);
    }
    if (tdy.buf)
        test_flat_check_guard(&tdy, NULL);
    if (d.w.buf)
        test_flat_check_guard(&d.w, NULL);

    vka_tensor_destroy(&dx);
    vka_tensor_destroy(&y);
    if (tdy.buf)
        vka_tensor_destroy(&tdy);
    free_dev(&d);
    free_inputs(&in);
    free(init);
    free(got);
    free(ref);
    free(dy);
    free(dx0);
    free(dxg);
    free(dxr);
}

static const uint32_t shapes[][4] = {
    { 1, 1, 1, 1 }, { 1, 3, 1, 1 }, { 5, 1, 2, 3 }, { 5, 5, 3, 7 }, { 1, 7, 9, 5 },
    { 2, 13, 5, 3 }, { 5, 4, 1, 1 }, { 1, 3, 23, 19 }, { 2, 16, 17, 16 },
};

static void check_kind(enum kind k, const char *load, uint64_t max_binding)
{
    struct vka_ctx *ctx = ctx_for(load, max_binding);
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
        check_case(ctx, cmd, k, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3],
                   s % 2 == 1, NAN);
    for (int r = 0; r < 2; r++) /* random sizes */
        check_case(ctx, cmd, k, test_rand_range(1, 5), test_rand_range(1, 16),
                   test_rand_range(1, 24), test_rand_range(1, 24), r == 0, NAN);
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

/* 32 KiB bindings: one reduction block of a 16-channel image per chunk */
#define SMALL_BINDING 32768

#define KIND_TESTS(tag, k)                                                               \
    Test(loss, tag##_texel) { test_seed(#tag "_texel"); check_kind(k, "texel", 0); }      \
    Test(loss, tag##_storage) { test_seed(#tag "_storage"); check_kind(k, "storage", 0); } \
    Test(loss, tag##_chunked)                                                            \
    {                                                                                    \
        test_seed(#tag "_chunked");                                                      \
        check_kind(k, "storage", SMALL_BINDING);                                         \
    }

KIND_TESTS(cross_entropy, CE)
KIND_TESTS(bce_logits, BCE)
KIND_TESTS(mse, MSE)
KIND_TESTS(l1, L1)
KIND_TESTS(dice, DICE)
KIND_TESTS(hinge, HINGE)
KIND_TESTS(hinge_linear, HINGE_LIN)
KIND_TESTS(sigmoid_mean, SIGMEAN)

/* bce_logits and hinge with x1 NULL: every target is p.loss.target (0 and 1) */
static void check_const_target(const char *load, uint64_t max_binding)
{
    static const enum kind ks[] = { BCE, HINGE, HINGE_LIN };
    static const uint32_t cshapes[][4] = { { 1, 1, 1, 1 }, { 5, 3, 3, 7 }, { 2, 5, 17, 16 } };
    struct vka_ctx *ctx = ctx_for(load, max_binding);
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++)
        for (int target = 0; target < 2; target++)
            for (size_t s = 0; s < sizeof(cshapes) / sizeof(cshapes[0]); s++)
                check_case(ctx, cmd, ks[i], cshapes[s][0], cshapes[s][1], cshapes[s][2],
                           cshapes[s][3], false, (float)target);
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

Test(loss, constant_target_texel)
{
    test_seed("constant_target_texel");
    check_const_target("texel", 0);
}

Test(loss, constant_target_chunked)
{
    test_seed("constant_target_chunked");
    check_const_target("storage", SMALL_BINDING);
}

/* ---- determinism: one batch of 8, split four ways and chunked -------------------- */

static void run_split(struct vka_ctx *ctx, enum kind k, const struct inputs *in,
                      const struct dev *d, const uint32_t *split, const float *init,
                      float *out)
{
    uint32_t hw = in->H * in->W, cs = (in->C + 3) & ~3u;
    size_t na = k == DICE ? 2 * in->C : 2;
    struct vka_tensor y = test_flat_guarded(ctx, 3, na, init);
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    for (uint32_t n0 = 0, i = 0; n0 < in->N; n0 += split[i++]) {
        struct vka_tensor x = d->x, t = d->t;
        x.owns_buf = t.owns_buf = false;
        x.n = split[i];
        x.off += (uint64_t)n0 * hw * cs;
        if (seg(k)) {
            t.n = split[i] * hw;
            t.off += (uint64_t)n0 * hw;
        } else {
            t.n = split[i];
            t.off += (uint64_t)n0 * hw * cs;
        }
        struct vka_op_args a = args_for(k, in, d);
        a.x[0] = &x;
        a.x[1] = has_targets(k) ? &t : NULL;
        a.y = &y;
        cr_assert_eq(fwds[k](cmd, &a), 0, "%s: %s", names[k], vka_last_error());
    }
    test_run(cmd);
    test_flat_check_guard(&y, out);
    vka_cmd_destroy(&cmd);
    vka_tensor_destroy(&y);
}

static void check_determinism(enum kind k)
{
    static const uint32_t splits[][9] = {
        { 8 }, { 4, 4 }, { 3, 3, 2 }, { 1, 1, 1, 1, 1, 1, 1, 1 },
    };
    struct vka_ctx *ctx = ctx_for("texel", 0);
    struct inputs in;
    struct dev d;
    /* 23x23: three reduction blocks of pixels per sample (five of bce/mse/l1's vec4s) */
    make_inputs(&in, k, 8, 5, 23, 23, true, NAN);
    upload_inputs(ctx, k, &in, &d);
    size_t na = k == DICE ? 10 : 2;
    float *init = test_rand_floats(na, 0, 100), first[10], got[10];
    run_split(ctx, k, &in, &d, splits[0], init, first);
    for (size_t s = 1; s <= 4; s++) {
        if (s == 4)
            ctx->profile.max_binding = 16384; /* fwd, fold and bwd split into chunks */
        run_split(ctx, k, &in, &d, splits[s % 4], init, got);
        for (size_t i = 0; i < na; i++)
            cr_assert_eq(memcmp(&got[i], &first[i], 4), 0,
                         "%s: acc[%zu] is %a as 8 and %a as split %zu%s", names[k], i,
                         first[i], got[i], s % 4, s == 4 ? " in chunks" : "");
    }
    free(init);
    free_dev(&d);
    free_inputs(&in);
    test_ctx_done(&ctx);
}

Test(loss, determinism_cross_entropy) { test_seed("determinism_ce"); check_determinism(CE); }
Test(loss, determinism_bce_logits) { test_seed("determinism_bce"); check_determinism(BCE); }
Test(loss, determinism_mse) { test_seed("determinism_mse"); check_determinism(MSE); }
Test(loss, determinism_l1) { test_seed("determinism_l1"); check_determinism(L1); }
Test(loss, determinism_dice) { test_seed("determinism_dice"); check_determinism(DICE); }
Test(loss, determinism_hinge) { test_seed("determinism_hinge"); check_determinism(HINGE); }
Test(loss, determinism_hinge_linear)
{
    test_seed("determinism_hinge_linear");
    check_determinism(HINGE_LIN);
}
Test(loss, determinism_sigmoid_mean)
{
    test_seed("determinism_sigmoid_mean");
    check_determinism(SIGMEAN);
}

/* ---- refusals, shapes and host helpers ------------------------------------------- */

static void expect_refused(int ret, const char *op, const char *name)
{
    cr_assert_eq(ret, -EINVAL, "%s accepted a bad %s (%d)", op, name, ret);
    cr_assert(strstr(vka_last_error(), op) && strstr(vka_last_error(), name),
              "message does not name %s and %s: %s", op, name, vka_last_error());
}

Test(loss, refuses_bad_shapes)
{
    test_seed("refuses_bad_shapes");
    struct vka_ctx *ctx = test_ctx();
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    int32_t ids[18] = { 0 };
    struct vka_tensor x = test_act(ctx, 2, 5, 3, 3, NULL), t18 = i32_tensor(ctx, 0, 18, ids);
    struct vka_tensor t17 = i32_tensor(ctx, 0, 17, ids), xf = test_act(ctx, 2, 5, 3, 3, NULL);
    struct vka_tensor tf = test_act(ctx, 2, 5, 3, 4, NULL), dx = test_act(ctx, 2, 4, 3, 3, NULL);
    struct vka_tensor w4 = test_flat(ctx, 4, NULL), y2 = test_flat(ctx, 2, NULL);
    struct vka_tensor y3 = test_flat(ctx, 3, NULL), y10 = test_flat(ctx, 10, NULL);
    struct vka_tensor dy9 = test_flat(ctx, 9, NULL), flat = test_flat(ctx, 90, NULL);
    struct vka_tensor f18 = test_flat(ctx, 18, NULL);

#define ARGS(...) (&(struct vka_op_args){ .p.loss.ignore_index = 255, __VA_ARGS__ })
    expect_refused(vka_cross_entropy_fwd(cmd, ARGS(.x = { &x, &t17 }, .y = &y2)),
                   "cross_entropy", "x1 (targets)");
    expect_refused(vka_cross_entropy_fwd(cmd, ARGS(.x = { &x, &f18 }, .y = &y2)),
                   "cross_entropy", "x1 (targets)");
    expect_refused(vka_cross_entropy_fwd(cmd, ARGS(.x = { &x, &t18, &w4 }, .y = &y2)),
                   "cross_entropy", "x2 (class weights)");
    expect_refused(vka_cross_entropy_fwd(cmd, ARGS(.x = { &x, &t18 }, .y = &y3)),
                   "cross_entropy", "y");
    expect_refused(vka_cross_entropy_fwd(cmd, ARGS(.x = { &flat, &t18 }, .y = &y2)),
                   "cross_entropy", "x0");
    expect_refused(vka_mse_fwd(cmd, ARGS(.x = { &x, &tf }, .y = &y2)), "mse", "x1");
    expect_refused(vka_l1_fwd(cmd, ARGS(.x = { &x, NULL }, .y = &y2)), "l1", "x1");
    expect_refused(vka_bce_logits_bwd(cmd, ARGS(.x = { &x, &xf }, .dx = { &dx })),
                   "bce_logits", "dx0");
    expect_refused(vka_dice_fwd(cmd, ARGS(.x = { &x, &t18 }, .y = &y2)), "dice", "y");
    expect_refused(vka_dice_bwd(cmd, ARGS(.x = { &x, &t18 }, .dy = &dy9, .dx = { &xf })),
                   "dice", "dy");

    uint32_t shape[4];
    cr_assert_eq(vka_cross_entropy_shape(ARGS(.x = { &x, &t18 }), shape), 0);
    cr_assert(shape[0] == 2 && shape[1] == 1 && shape[2] == 1 && shape[3] == 1);
    cr_assert_eq(vka_dice_shape(ARGS(.x = { &x, &t18 }), shape), 0);
    cr_assert(shape[0] == 10 && shape[1] == 1 && shape[2] == 1 && shape[3] == 1);
    cr_assert_eq(vka_mse_shape(ARGS(.x = { &x, &xf }), shape), 0);
    cr_assert_eq(shape[0], 2);
    expect_refused(vka_bce_logits_shape(ARGS(.x = { &x, &tf }), shape), "bce_logits", "x1");
    /* the accepted calls above recorded nothing; the recorder still runs */
    test_run(cmd);

    struct vka_tensor *all[] = { &x, &t18, &t17, &xf, &tf, &dx, &w4, &y2, &y3, &y10,
                                 &dy9, &flat, &f18 };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        vka_tensor_destroy(all[i]);
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

Test(loss, gan_losses_refuse_bad_shapes)
{
    test_seed("gan_losses_refuse_bad_shapes");
    struct vka_ctx *ctx = test_ctx();
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    struct vka_tensor x = test_act(ctx, 2, 5, 3, 3, NULL), t = test_act(ctx, 2, 5, 3, 3, NULL);
    struct vka_tensor tw = test_act(ctx, 2, 5, 3, 4, NULL), dx = test_act(ctx, 2, 4, 3, 3, NULL);
    struct vka_tensor dxok = test_act(ctx, 2, 5, 3, 3, NULL), y2 = test_flat(ctx, 2, NULL);
    struct vka_tensor y3 = test_flat(ctx, 3, NULL), flat = test_flat(ctx, 90, NULL);

    for (int lin = 0; lin < 2; lin++) {
        union vka_op_params p = { .loss = { .hinge_linear = lin } };
        expect_refused(vka_hinge_fwd(cmd, &(struct vka_op_args){ .p = p, .x = { &x, &tw },
                                                                  .y = &y2 }),
                       "hinge", "x1 (targets)");
        expect_refused(vka_hinge_fwd(cmd, &(struct vka_op_args){ .p = p, .x = { &x, &t },
                                                                  .y = &y3 }),
                       "hinge", "y");
        expect_refused(vka_hinge_bwd(cmd, &(struct vka_op_args){ .p = p, .x = { &x, &t },
                                                                  .dx = { &dx } }),
                       "hinge", "dx0");
        expect_refused(vka_hinge_shape(&(struct vka_op_args){ .p = p, .x = { &flat, &t } },
                                       (uint32_t[4]){ 0 }),
                       "hinge", "x0");
    }
    expect_refused(vka_sigmoid_mean_fwd(cmd, &(struct vka_op_args){ .x = { &x }, .y = &y3 }),
                   "sigmoid_mean", "y");
    expect_refused(vka_sigmoid_mean_fwd(cmd, &(struct vka_op_args){ .x = { &flat }, .y = &y2 }),
                   "sigmoid_mean", "x0");
    expect_refused(vka_sigmoid_mean_bwd(cmd, &(struct vka_op_args){ .x = { &x },
                                                                     .dx = { &dx } }),
                   "sigmoid_mean", "dx0");

    uint32_t shape[4];
    cr_assert_eq(vka_hinge_shape(&(struct vka_op_args){ .x = { &x, &t } }, shape), 0);
    cr_assert(shape[0] == 2 && shape[1] == 1 && shape[2] == 1 && shape[3] == 1);
    /* x1 NULL is the constant-target mode, for hinge and bce_logits only */
    cr_assert_eq(vka_hinge_shape(&(struct vka_op_args){ .x = { &x } }, shape), 0, "%s",
                 vka_last_error());
    cr_assert_eq(vka_bce_logits_shape(&(struct vka_op_args){ .x = { &x } }, shape), 0, "%s",
                 vka_last_error());
    expect_refused(vka_mse_shape(&(struct vka_op_args){ .x = { &x } }, shape), "mse",
                   "x1 (targets)");
    cr_assert_eq(vka_sigmoid_mean_shape(&(struct vka_op_args){ .x = { &x } }, shape), 0,
                 "%s", vka_last_error());
    cr_assert(shape[0] == 2 && shape[1] == 1 && shape[2] == 1 && shape[3] == 1);
    /* a metric's bwd with a good dx records nothing: dx stays NaN, padding included */
    cr_assert_eq(vka_sigmoid_mean_bwd(cmd, &(struct vka_op_args){ .x = { &x },
                                                                  .dx = { &dxok } }), 0);
    test_run(cmd);
    float raw[2 * 3 * 3 * 8];
    cr_assert_eq(vka_buf_download(dxok.buf, dxok.off * 4, raw, sizeof(raw)), 0);
    for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++)
        cr_assert(isnan(raw[i]), "sigmoid_mean bwd wrote %g into dx[%zu]", raw[i], i);

    struct vka_tensor *all[] = { &x, &t, &tw, &dx, &dxok, &y2, &y3, &flat };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        vka_tensor_destroy(all[i]);
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

struct hinge_fd {
    int n, linear;
    double *x, *t;
};

static double hinge_sum(const struct hinge_fd *o)
{
    double sum, count;
    ref_hinge_fwd(o->n, o->linear, o->x, o->t, &sum, &count);
    return sum;
}

/* ref_hinge_bwd against central differences of ref_hinge_fwd, away from the kinks */
Test(loss, hinge_ref_matches_finite_differences)
{
    test_seed("hinge_ref_matches_finite_differences");
    enum { n = 97 };
    const double eps = 1e-4, scale = 0.37;
    double x[n], t[n], dx[n], dx0[n];
    for (int linear = 0; linear < 2; linear++) {
        for (int i = 0; i < n; i++) {
            t[i] = test_rand_range(0, 1);
            do /* |s*x - 1| > 10 eps: x +- eps stays on one side of the kink */
                x[i] = test_rand_uniform(-3, 3);
            while (fabs((2 * t[i] - 1) * x[i] - 1) < 10 * eps);
            dx[i] = dx0[i] = test_rand_uniform(-1, 1);
        }
        struct hinge_fd o = { n, linear, x, t };
        ref_hinge_bwd(n, linear, x, t, scale, dx);
        for (int i = 0; i < n; i++) {
            double xi = x[i];
            x[i] = xi + eps;
            double lp = hinge_sum(&o);
            x[i] = xi - eps;
            double lm = hinge_sum(&o);
            x[i] = xi;
            double fd = scale * (lp - lm) / (2 * eps);
            /* the sum is linear on each side of the kink, so the difference is exact but
             * for rounding: 2^-53 * sum|terms| (< 500) / eps < 1e-9 */
            cr_assert_leq(fabs((dx[i] - dx0[i]) - fd), 1e-9,
                          "hinge%s ref bwd: dx[%d] = %.12g, finite difference %.12g",
                          linear ? " (linear)" : "", i, dx[i] - dx0[i], fd);
        }
    }
}

Test(loss, check_targets_names_the_value)
{
    const int32_t good[] = { 0, 4, 255, 2, 255 }, bad[] = { 0, 1, 255, 7, 2 };
    const int32_t neg[] = { -100, -1 };
    cr_assert_eq(vka_loss_check_targets(good, 5, 5, 255), 0);
    cr_assert_eq(vka_loss_check_targets(bad, 5, 5, 255), -EINVAL);
    cr_assert(strstr(vka_last_error(), "element 3 is 7"), "%s", vka_last_error());
    cr_assert_eq(vka_loss_check_targets(neg, 2, 5, -100), -EINVAL);
    cr_assert(strstr(vka_last_error(), "element 1 is -1"), "%s", vka_last_error());
    cr_assert_eq(vka_loss_check_targets(neg, 1, 5, -100), 0);
}
