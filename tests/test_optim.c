/* Optimizers (src/optim.c) against the double reference of tests/ref/ref_optim.c over
 * 100 steps of random accumulators, on both load paths and with the chunked path; the
 * gradient norm (clipping, determinism), skipped steps on NaN and Inf gradients,
 * checkpoint state, refusals, and the learning-rate schedules against hand-computed
 * values. The reference itself is checked against two steps computed by hand. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "optim.h"
#include "ref/ref_optim.h"

#define STEPS 100

/* A context on a load path, with storage bindings of at most max_binding bytes (0: the
 * device's): device policy through vka_ctx_params. */
static struct vka_ctx *ctx_bound(const char *load, uint64_t max_binding)
{
    enum vka_load_path path = !strcmp(load, "texel") ? VKA_LOAD_TEXEL : VKA_LOAD_STORAGE;
    struct vka_ctx *ctx = test_ctx_params(&(struct vka_ctx_params){
        .validation = 1, .load = path, .max_binding = max_binding });
    cr_assert_eq(ctx->profile.load, path);
    cr_assert(!max_binding || ctx->profile.max_binding == max_binding);
    return ctx;
}

static struct vka_ctx *ctx_for(const char *load)
{
    return ctx_bound(load, 0);
}

/* ---- the reference against hand-computed numbers ---------------------------------- */

Test(optim, ref_by_hand)
{
    /* SGD lr .1, momentum .9, dampening .5, weight_decay .1, p = 1, g = .5 then -.5:
     *   1: d = .5 + .1 = .6, buf = .6 (undampened), p = 1 - .06 = .94
     *   2: d = -.5 + .094 = -.406, buf = .54 - .203 = .337, p = .94 - .0337 = .9063 */
    struct ref_sgd sgd = { .lr = 0.1, .momentum = 0.9, .dampening = 0.5, .weight_decay = 0.1 };
    double p = 1, buf = 0, g[2] = { 0.5, -0.5 };
    ref_sgd_step(&sgd, 1, &p, &g[0], &buf, 1);
    cr_assert_float_eq(p, 0.94, 1e-15);
    cr_assert_float_eq(buf, 0.6, 1e-15);
    ref_sgd_step(&sgd, 1, &p, &g[1], &buf, 0);
    cr_assert_float_eq(buf, 0.337, 1e-15);
    cr_assert_float_eq(p, 0.9063, 1e-15);

    /* Nesterov, dampening 0: 1: d = .6, buf = .6, d = .6 + .54 = 1.14, p = .886
     *   2: d = -.5 + .0886 = -.4114, buf = .54 - .4114 = .1286,
     *      d = -.4114 + .11574 = -.29566, p = .886 + .029566 = .915566 */
    sgd.dampening = 0;
    sgd.nesterov = 1;
    p = 1;
    ref_sgd_step(&sgd, 1, &p, &g[0], &buf, 1);
    cr_assert_float_eq(p, 0.886, 1e-15);
    ref_sgd_step(&sgd, 1, &p, &g[1], &buf, 0);
    cr_assert_float_eq(buf, 0.1286, 1e-15);
    cr_assert_float_eq(p, 0.915566, 1e-15);

    /* Adam lr .1, betas (.5, .75), eps .1, p = 1, g = 2 then -2:
     *   1: m = 1, v = 1, bc1 = .5, sqrt(bc2) = .5, denom = 1/.5 + .1 = 2.1,
     *      p = 1 - (.1/.5) * 1/2.1 = 19/21
     *   2: m = .5 - 1 = -.5, v = .75 + 1 = 1.75, bc1 = .75, bc2 = .4375,
     *      sqrt(1.75)/sqrt(.4375) = 2, denom = 2.1, p = 19/21 + (.1/.75) * .5/2.1 = 59/63 */
    struct ref_adam adam = { .lr = 0.1, .beta1 = 0.5, .beta2 = 0.75, .eps = 0.1 };
    double m = 0, v = 0, ga[2] = { 2, -2 };
    p = 1;
    ref_adam_step(&adam, 1, &p, &ga[0], &m, &v, 1);
    cr_assert_float_eq(p, 19.0 / 21, 1e-15);
    ref_adam_step(&adam, 1, &p, &ga[1], &m, &v, 2);
    cr_assert_float_eq(m, -0.5, 1e-15);
    cr_assert_float_eq(v, 1.75, 1e-15);
    cr_assert_float_eq(p, 59.0 / 63, 1e-15);

    /* AdamW, weight_decay .5: p is first multiplied by 1 - .05, the moments are Adam's:
     *   1: p = .95 - 2/21;  2: p = (.95 - 2/21) * .95 + 2/63 */
    adam.weight_decay = 0.5;
    adam.decoupled = 1;
    p = 1, m = 0, v = 0;
    ref_adam_step(&adam, 1, &p, &ga[0], &m, &v, 1);
    cr_assert_float_eq(p, 0.95 - 2.0 / 21, 1e-15);
    ref_adam_step(&adam, 1, &p, &ga[1], &m, &v, 2);
    cr_assert_float_eq(p, (0.95 - 2.0 / 21) * 0.95 + 2.0 / 63, 1e-15);

    /* Adam, weight_decay .5 added to the gradient: 1: d = 2.5, m = 1.25, v = 1.5625,
     * denom = 1.25/.5 + .1 = 2.6, p = 1 - .2 * 1.25/2.6 = 47/52 */
    adam.decoupled = 0;
    p = 1, m = 0, v = 0;
    ref_adam_step(&adam, 1, &p, &ga[0], &m, &v, 1);
    cr_assert_float_eq(p, 47.0 / 52, 1e-15);

    /* clipping: g = .5 * (3, 4), norm 2.5, max_norm 1: g *= 1 / (2.5 + 1e-6) */
    double acc[2] = { 3, 4 }, gc[2];
    double norm = ref_clip(2, acc, 0.5, 1.0, gc);
    cr_assert_float_eq(norm, 2.5, 1e-15);
    cr_assert_float_eq(gc[0], 1.5 / 2.500001, 1e-15);
    cr_assert_float_eq(gc[1], 2.0 / 2.500001, 1e-15);
    ref_clip(2, acc, 0.5, 3.0, gc); /* max_norm above the norm: no change */
    cr_assert(gc[0] == 1.5 && gc[1] == 2.0);
}

/* ---- 100 steps against the reference --------------------------------------------- */

struct cfg {
    struct vka_optim_params p;
    double lr;
    bool clip; /* max_norm = sqrt(n / 3), about the median norm of the steps */
};

/* sizes: 1, primes, one not a multiple of 4; the last runs with 8 KiB bindings */
static const uint64_t sizes[] = { 1, 7, 1030, 5003 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

struct errs {
    double p, s1, s2;
    uint32_t clipped, unclipped;
};

/* Runs STEPS steps of c on n parameters and returns the largest errors seen. */
static void run_steps(struct vka_ctx *ctx, const struct cfg *c, uint64_t n, struct errs *e)
{
    struct vka_optim_params op = c->p;
    op.count = n;
    double max_norm = c->clip ? sqrt((double)n / 3) : 0;
    op.max_norm = max_norm;
    struct vka_optim *opt;
    cr_assert_eq(vka_optim_create(ctx, &op, &opt), 0, "%s", vka_last_error());
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);

    /* every step's accumulator in one buffer, at offsets that are multiples of 4 */
    uint64_t npad = (n + 3) & ~3ull, goff = 4 * test_rand_range(0, 3);
    uint64_t total = goff + STEPS * npad;
    float *acc = malloc(total * 4);
    for (uint64_t i = 0; i < total; i++)
        acc[i] = test_rand_uniform(-3, 3);
    for (int t = 0; t < STEPS; t++) {
        float f = test_rand_uniform(0.25f, 1.75f); /* so that clipping comes and goes */
        for (uint64_t i = 0; i < npad; i++)
            acc[goff + t * npad + i] *= f;
    }
    struct vka_buf *accbuf;
    cr_assert_eq(vka_buf_create(ctx, &(struct vka_buf_params){ .size = total * 4,
                 .cat = VKA_MEM_GRADS }, &accbuf), 0);
    cr_assert_eq(vka_buf_upload(accbuf, 0, acc, total * 4), 0);

    float *p0 = test_rand_floats(n, -1, 1);
    /* params at a whole vec4 for n = 7 and 5003 (the kernel's vec4 path, and its last
     * partial vec4 as floats), inside one for the others (floats throughout) */
    uint64_t poff = n % 4 == 3 ? 4 * test_rand_range(0, 1) : 1 + test_rand_range(0, 2);
    struct vka_tensor params = test_flat_guarded(ctx, poff, n, p0);
    double *p = test_to_double(p0, n), *s1 = calloc(n, 8), *s2 = calloc(n, 8);
    double *ad = malloc(n * 8), *g = malloc(n * 8);
    const float scale = 1.0f / 3; /* the window's total count: 3 */
    struct vka_lr_schedule sched = { .kind = VKA_LR_COSINE, .lr = c->lr, .t_max = STEPS,
                                     .eta_min = c->lr / 10 };
    struct ref_sgd rs = { .momentum = op.momentum, .dampening = op.dampening,
                          .weight_decay = op.weight_decay, .nesterov = op.nesterov };
    struct ref_adam ra = { .beta1 = op.beta1, .beta2 = op.beta2, .eps = op.eps,
                           .weight_decay = op.weight_decay,
                           .decoupled = op.kind == VKA_OPTIM_ADAMW };

    for (uint64_t t = 0; t < STEPS; t++) {
        double lr = vka_lr_at(&sched, t);
        struct vka_tensor tg = vka_tensor_flat(accbuf, goff + t * npad, n);
        cr_assert_eq(vka_cmd_begin(cmd), 0);
        cr_assert_eq(vka_optim_record_step(cmd, opt, &params, &tg, scale, lr), 0, "%s",
                     vka_last_error());
        test_run(cmd);
        bool skipped = true;
        float norm;
        cr_assert_eq(vka_optim_finish_step(opt, &skipped, &norm), 0, "%s", vka_last_error());
        cr_assert(!skipped, "step %llu skipped with a finite gradient (norm %g)",
                  (unsigned long long)t + 1, norm);

        for (uint64_t i = 0; i < n; i++)
            ad[i] = acc[goff + t * npad + i];
        double rnorm = ref_clip(n, ad, scale, max_norm, g);
        /* the f32 fixed-tree sum of squares: depth <= log2(n) + 4 roundings of 2^-24
         * each, plus the scale, square and sqrt; 2e-6 relative is a few times that */
        cr_assert_leq(fabs(norm - rnorm), 2e-6 * rnorm, "step %llu n=%llu: norm %.9g, "
                      "reference %.9g", (unsigned long long)t + 1, (unsigned long long)n,
                      norm, rnorm);
        if (max_norm > 0 && max_norm / (rnorm + 1e-6) < 1)
            e->clipped++;
        else
            e->unclipped++;
        rs.lr = ra.lr = lr;
        if (op.kind == VKA_OPTIM_SGD)
            ref_sgd_step(&rs, n, p, g, s1, t == 0);
        else
            ref_adam_step(&ra, n, p, g, s1, s2, t + 1);
    }
    struct vka_optim_counters cnt;
    vka_optim_get_counters(opt, &cnt);
    cr_assert(cnt.steps == STEPS && cnt.skipped == 0);

    float *got = malloc(n * 4);
    test_flat_check_guard(&params, got);
    /* f32 against double over 100 steps. Each step rounds p once (half an ulp, 2^-24
     * |p|) and the increment (|lr * d| < 0.1 here) a few times relative 2^-24, and the
     * errors add up without growing (the gradients do not depend on p; decay shrinks
     * them): at most 100 * 2^-24 * |p| = 6e-6 |p| from the parameter's roundings
     * (|p| may wander to ~10 with momentum) and 100 * 4 * 2^-24 * 0.1 = 2.4e-6 from
     * the increments. A formula error (a bias correction, eps inside the sqrt,
     * dampening on the first step, coupled decay) moves p by 1e-4 or more. */
    test_assert_close("params", got, p, n, 1e-5, 6e-6);
    for (uint64_t i = 0; i < n; i++)
        e->p = fmax(e->p, fabs(got[i] - p[i]) / (1e-5 + 6e-6 * fabs(p[i])));
    if (vka_optim_state_count(opt) > 0) {
        const char *name;
        cr_assert_not_null(vka_optim_state(opt, 0, &name));
        cr_assert_eq(vka_optim_state_read(opt, name, got), 0, "%s", vka_last_error());
        /* momentum_buffer (|buf| < |d| / (1 - momentum) = 10) and exp_avg: each step
         * rounds it ~3 times relative 2^-24 and decays the earlier error by the
         * momentum: |err| < 3 * 6e-8 * 10 / (1 - 0.9) = 2e-5 for SGD, 1e-6 for exp_avg */
        test_assert_close(name, got, s1, n, op.kind == VKA_OPTIM_SGD ? 2e-5 : 2e-6, 1e-6);
        for (uint64_t i = 0; i < n; i++)
            e->s1 = fmax(e->s1, fabs(got[i] - s1[i]));
    }
    if (vka_optim_state_count(opt) > 1) {
        const char *name;
        cr_assert_not_null(vka_optim_state(opt, 1, &name));
        cr_assert_str_eq(name, "exp_avg_sq");
        cr_assert_eq(vka_optim_state_read(opt, name, got), 0, "%s", vka_last_error());
        /* exp_avg_sq: ~4 roundings a step (g's two, the square, the sum) that beta2 =
         * 0.999 hardly decays over 100 steps: 400 * 2^-24 = 2.4e-5 relative */
        test_assert_close(name, got, s2, n, 1e-12, 3e-5);
        for (uint64_t i = 0; i < n; i++)
            e->s2 = fmax(e->s2, fabs(got[i] - s2[i]) / (s2[i] + 1e-30));
    }
    /* the accumulator is only read */
    float *after = malloc(total * 4);
    cr_assert_eq(vka_buf_download(accbuf, 0, after, total * 4), 0);
    cr_assert_eq(memcmp(acc, after, total * 4), 0, "the step changed the accumulator");

    free(after);
    free(got);
    free(p0);
    free(p);
    free(s1);
    free(s2);
    free(ad);
    free(g);
    free(acc);
    vka_tensor_destroy(&params);
    vka_buf_destroy(&accbuf);
    vka_cmd_destroy(&cmd);
    vka_optim_destroy(&opt);
}

static void check_cfg(const char *name, const struct cfg *c)
{
    test_seed(name);
    struct errs e = { 0 };
    for (int path = 0; path < 2; path++) {
        /* the last size also with 8 KiB bindings: many chunks */
        struct vka_ctx *ctx = ctx_for(path ? "storage" : "texel");
        struct vka_ctx *small = ctx_bound(path ? "storage" : "texel", 8192);
        for (size_t s = 0; s < NSIZES; s++)
            run_steps(s == NSIZES - 1 ? small : ctx, c, sizes[s], &e);
        test_ctx_done(&ctx);
        test_ctx_done(&small);
    }
    cr_log_info("%s: param err / tolerance %.3g, |state1 err| %.3g, state2 rel err %.3g, "
                "%u steps clipped, %u not", name, e.p, e.s1, e.s2, e.clipped, e.unclipped);
    fprintf(stderr, "%s: param err / tolerance %.3g, |state1 err| %.3g, state2 rel err %.3g, "
            "%u steps clipped, %u not\n", name, e.p, e.s1, e.s2, e.clipped, e.unclipped);
    if (c->clip)
        cr_assert(e.clipped > 0 && e.unclipped > 0, "clipping: %u steps clipped, %u not",
                  e.clipped, e.unclipped);
}

#define SGD(...) { .p = { .kind = VKA_OPTIM_SGD, __VA_ARGS__ }, .lr = 0.05 }

Test(optim, sgd_plain) { check_cfg("sgd_plain", &(struct cfg)SGD(.momentum = 0)); }
Test(optim, sgd_momentum) { check_cfg("sgd_momentum", &(struct cfg)SGD(.momentum = 0.9)); }
Test(optim, sgd_nesterov)
{
    check_cfg("sgd_nesterov", &(struct cfg)SGD(.momentum = 0.9, .nesterov = true));
}
Test(optim, sgd_dampening)
{
    check_cfg("sgd_dampening", &(struct cfg)SGD(.momentum = 0.8, .dampening = 0.5));
}
Test(optim, sgd_weight_decay_clip)
{
    struct cfg c = SGD(.momentum = 0.9, .weight_decay = 0.05);
    c.clip = true;
    check_cfg("sgd_weight_decay_clip", &c);
}

Test(optim, adam)
{
    struct cfg c = { .p = vka_optim_defaults(VKA_OPTIM_ADAM, 0), .lr = 1e-2 };
    check_cfg("adam", &c);
}

Test(optim, adam_weight_decay_clip)
{
    /* eps 1e-3 makes its place (outside the bias-corrected sqrt) matter */
    struct cfg c = { .p = { .kind = VKA_OPTIM_ADAM, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-3,
                            .weight_decay = 0.1 }, .lr = 1e-2, .clip = true };
    check_cfg("adam_weight_decay_clip", &c);
}

Test(optim, adamw_clip)
{
    struct cfg c = { .p = vka_optim_defaults(VKA_OPTIM_ADAMW, 0), .lr = 1e-2, .clip = true };
    c.p.weight_decay = 0.1;
    check_cfg("adamw_clip", &c);
}

/* ---- non-finite gradients ----------------------------------------------------------- */

struct snap {
    float *p, *s1, *s2;
};

static void snap_take(struct vka_optim *opt, const struct vka_tensor *params, uint64_t n,
                      struct snap *s)
{
    s->p = malloc(n * 4);
    s->s1 = malloc(n * 4);
    s->s2 = malloc(n * 4);
    test_flat_check_guard(params, s->p);
    const char *name;
    for (uint32_t i = 0; i < vka_optim_state_count(opt); i++) {
        vka_optim_state(opt, i, &name);
        cr_assert_eq(vka_optim_state_read(opt, name, i ? s->s2 : s->s1), 0);
    }
}

static void snap_free(struct snap *s)
{
    free(s->p);
    free(s->s1);
    free(s->s2);
}

/* Records, runs and finishes one step of acc; returns whether it was skipped. */
static bool one_step(struct vka_cmd *cmd, struct vka_optim *opt, const struct vka_tensor *params,
                     const struct vka_tensor *acc, const float *host, float scale, double lr,
                     float *norm)
{
    bool skipped;
    cr_assert_eq(vka_buf_upload(acc->buf, acc->off * 4, host, vka_tensor_stored(acc) * 4), 0);
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    cr_assert_eq(vka_optim_record_step(cmd, opt, params, acc, scale, lr), 0, "%s",
                 vka_last_error());
    test_run(cmd);
    cr_assert_eq(vka_optim_finish_step(opt, &skipped, norm), 0, "%s", vka_last_error());
    return skipped;
}

Test(optim, nonfinite_skips_adam)
{
    test_seed("nonfinite_skips_adam");
    struct vka_ctx *ctx = ctx_for("texel");
    const uint64_t n = 1030;
    const float scale = 0.5f;
    const double lr = 1e-2;
    struct vka_optim_params op = vka_optim_defaults(VKA_OPTIM_ADAM, n);
    op.weight_decay = 0.01;
    op.max_norm = 5;
    struct vka_optim *opt;
    struct vka_cmd *cmd;
    cr_assert_eq(vka_optim_create(ctx, &op, &opt), 0, "%s", vka_last_error());
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    float *p0 = test_rand_floats(n, -1, 1), *a = malloc(n * 4);
    struct vka_tensor params = test_flat_guarded(ctx, 3, n, p0);
    struct vka_tensor acc = test_flat_guarded(ctx, 4, n, NULL);
    double *p = test_to_double(p0, n), *m = calloc(n, 8), *v = calloc(n, 8);
    double *ad = malloc(n * 8), *g = malloc(n * 8);
    struct ref_adam ra = { .lr = lr, .beta1 = op.beta1, .beta2 = op.beta2, .eps = op.eps,
                           .weight_decay = op.weight_decay };
    unsigned long long taken = 0;
    float norm;
    for (int t = 0; t < 3; t++) {
        for (uint64_t i = 0; i < n; i++)
            ad[i] = a[i] = test_rand_uniform(-1, 1);
        cr_assert(!one_step(cmd, opt, &params, &acc, a, scale, lr, &norm));
        ref_clip(n, ad, scale, op.max_norm, g);
        ref_adam_step(&ra, n, p, g, m, v, ++taken);
    }
    struct snap before, after;
    snap_take(opt, &params, n, &before);
    const float bad[] = { NAN, INFINITY, -INFINITY, 1e20f /* squares overflow f32 */ };
    for (unsigned k = 0; k < 4; k++) {
        for (uint64_t i = 0; i < n; i++)
            a[i] = test_rand_uniform(-1, 1);
        a[test_rand_range(0, n - 1)] = bad[k];
        cr_assert(one_step(cmd, opt, &params, &acc, a, scale, lr, &norm),
                  "a gradient holding %g was not skipped (norm %g)", bad[k], norm);
        cr_assert(!isfinite(norm), "norm %g", norm);
        float again;
        cr_assert_eq(vka_optim_last_norm(opt, &again), 0);
        cr_assert(!isfinite(again));
        struct vka_optim_counters c;
        vka_optim_get_counters(opt, &c);
        cr_assert(c.steps == 3 && c.skipped == k + 1, "steps %llu skipped %llu",
                  (unsigned long long)c.steps, (unsigned long long)c.skipped);
        snap_take(opt, &params, n, &after);
        cr_assert_eq(memcmp(before.p, after.p, n * 4), 0, "skipped step changed params");
        cr_assert_eq(memcmp(before.s1, after.s1, n * 4), 0, "skipped step changed exp_avg");
        cr_assert_eq(memcmp(before.s2, after.s2, n * 4), 0, "skipped step changed exp_avg_sq");
        snap_free(&after);
    }
    /* the next step is number 4: bias corrections 1 - beta^4 */
    for (uint64_t i = 0; i < n; i++)
        ad[i] = a[i] = test_rand_uniform(-1, 1);
    cr_assert(!one_step(cmd, opt, &params, &acc, a, scale, lr, &norm));
    ref_clip(n, ad, scale, op.max_norm, g);
    ref_adam_step(&ra, n, p, g, m, v, ++taken);
    snap_take(opt, &params, n, &after);
    /* 4 steps: a few roundings of 2^-24 each on |p| < 1.1, |m| < 1, v relative */
    test_assert_close("params after the skips", after.p, p, n, 1e-6, 1e-6);
    test_assert_close("exp_avg after the skips", after.s1, m, n, 1e-7, 1e-6);
    test_assert_close("exp_avg_sq after the skips", after.s2, v, n, 1e-12, 2e-6);
    snap_free(&after);
    snap_free(&before);
    free(p0);
    free(a);
    free(p);
    free(m);
    free(v);
    free(ad);
    free(g);
    vka_tensor_destroy(&params);
    vka_tensor_destroy(&acc);
    vka_cmd_destroy(&cmd);
    vka_optim_destroy(&opt);
    test_ctx_done(&ctx);
}

/* A skipped first step leaves the momentum buffer absent: the first step taken sets it
 * to the gradient undampened. */
Test(optim, nonfinite_skips_sgd_first)
{
    test_seed("nonfinite_skips_sgd_first");
    struct vka_ctx *ctx = ctx_for("storage");
    const uint64_t n = 7;
    struct vka_optim_params op = { .kind = VKA_OPTIM_SGD, .count = n, .momentum = 0.9,
                                   .dampening = 0.5, .weight_decay = 0.1 };
    struct vka_optim *opt;
    struct vka_cmd *cmd;
    cr_assert_eq(vka_optim_create(ctx, &op, &opt), 0, "%s", vka_last_error());
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    float *p0 = test_rand_floats(n, -1, 1), a[7], got[7];
    struct vka_tensor params = test_flat_guarded(ctx, 0, n, p0);
    struct vka_tensor acc = test_flat_guarded(ctx, 8, n, NULL);
    double *p = test_to_double(p0, n), buf[7] = { 0 }, ad[7], g[7];
    struct ref_sgd rs = { .lr = 0.1, .momentum = 0.9, .dampening = 0.5, .weight_decay = 0.1 };
    float norm;
    for (uint64_t i = 0; i < n; i++)
        a[i] = test_rand_uniform(-1, 1);
    a[3] = NAN;
    cr_assert(one_step(cmd, opt, &params, &acc, a, 1.0f, 0.1, &norm));
    cr_assert_eq(vka_optim_state_read(opt, "momentum_buffer", got), 0);
    for (uint64_t i = 0; i < n; i++)
        cr_assert(got[i] == 0.0f && !signbit(got[i]), "momentum_buffer[%llu] = %g after a "
                  "skipped step", (unsigned long long)i, got[i]);
    for (int t = 0; t < 2; t++) {
        for (uint64_t i = 0; i < n; i++)
            ad[i] = a[i] = test_rand_uniform(-1, 1);
        cr_assert(!one_step(cmd, opt, &params, &acc, a, 1.0f, 0.1, &norm));
        ref_clip(n, ad, 1.0, 0, g);
        ref_sgd_step(&rs, n, p, g, buf, t == 0);
        /* two steps: a few roundings of 2^-24 on values below 2; a dampened first step
         * would be off by 0.5 * |d| */
        cr_assert_eq(vka_optim_state_read(opt, "momentum_buffer", got), 0);
        test_assert_close("momentum_buffer", got, buf, n, 1e-6, 1e-6);
        test_flat_check_guard(&params, got);
        test_assert_close("params", got, p, n, 1e-6, 1e-6);
    }
    struct vka_optim_counters c;
    vka_optim_get_counters(opt, &c);
    cr_assert(c.steps == 2 && c.skipped == 1);
    free(p0);
    free(p);
    vka_tensor_destroy(&params);
    vka_tensor_destroy(&acc);
    vka_cmd_destroy(&cmd);
    vka_optim_destroy(&opt);
    test_ctx_done(&ctx);
}

/* ---- the norm: deterministic, chunk-independent, close to double --------------------- */

Test(optim, norm_deterministic)
{
    test_seed("norm_deterministic");
    /* runs 0 and 1 on the device's bindings, run 2 on 8 KiB ones (many chunks) */
    struct vka_ctx *ctxs[2] = { ctx_for("texel"), ctx_bound("texel", 8192) };
    static const uint64_t ns[] = { 1, 1030, 5003, 1048583 /* three passes */ };
    struct vka_cmd *cmds[2];
    for (int c = 0; c < 2; c++)
        cr_assert_eq(vka_cmd_create(ctxs[c], NULL, &cmds[c]), 0);
    for (size_t s = 0; s < sizeof(ns) / sizeof(ns[0]); s++) {
        uint64_t n = ns[s];
        float *a = test_rand_floats(n, -2, 2);
        const float scale = 0.25f;
        float norm[3];
        for (int run = 0; run < 3; run++) {
            int c = run == 2;
            struct vka_optim *opt;
            cr_assert_eq(vka_optim_create(ctxs[c], &(struct vka_optim_params){
                .kind = VKA_OPTIM_SGD, .count = n, .max_norm = 1 }, &opt), 0);
            struct vka_tensor params = test_flat_guarded(ctxs[c], 0, n, a);
            struct vka_tensor acc = test_flat_guarded(ctxs[c], 0, n, a);
            /* lr 0: params stay as they are */
            cr_assert(!one_step(cmds[c], opt, &params, &acc, a, scale, 0.0, &norm[run]));
            vka_tensor_destroy(&params);
            vka_tensor_destroy(&acc);
            vka_optim_destroy(&opt);
        }
        cr_assert_eq(memcmp(&norm[0], &norm[1], 4), 0, "n=%llu: the norm changed between "
                     "runs: %a %a", (unsigned long long)n, norm[0], norm[1]);
        cr_assert_eq(memcmp(&norm[0], &norm[2], 4), 0, "n=%llu: the norm changed with 8 KiB "
                     "bindings: %a %a", (unsigned long long)n, norm[0], norm[2]);
        double ss = 0;
        for (uint64_t i = 0; i < n; i++)
            ss += ((double)scale * a[i]) * ((double)scale * a[i]);
        /* a tree of depth d = ceil(log2 n) + 2 over positive terms rounds the sum at most
         * d times (2^-24 each), squares and scales add 2 more; the sqrt halves it all */
        double d = ceil(log2((double)n + 1)) + 4;
        cr_assert_leq(fabs(norm[0] - sqrt(ss)), d * ldexp(sqrt(ss), -24), "n=%llu: norm %.9g, "
                      "double %.9g", (unsigned long long)n, norm[0], sqrt(ss));
        free(a);
    }
    for (int c = 0; c < 2; c++) {
        vka_cmd_destroy(&cmds[c]);
        test_ctx_done(&ctxs[c]);
    }
}

/* ---- checkpoint state ------------------------------------------------------------------ */

/* An optimizer restored from another's state and counters continues bit-identically. */
Test(optim, checkpoint_restore)
{
    test_seed("checkpoint_restore");
    struct vka_ctx *ctx = ctx_for("texel");
    const uint64_t n = 1030;
    struct vka_optim_params op = vka_optim_defaults(VKA_OPTIM_ADAMW, n);
    op.max_norm = 10;
    struct vka_mem_stats m0, m1;
    vka_mem_get_stats(ctx, &m0);
    struct vka_optim *a, *b;
    struct vka_cmd *cmd;
    cr_assert_eq(vka_optim_create(ctx, &op, &a), 0, "%s", vka_last_error());
    vka_mem_get_stats(ctx, &m1);
    cr_assert_geq(m1.cur[VKA_MEM_OPTIM] - m0.cur[VKA_MEM_OPTIM], 2 * n * 4,
                  "the moments are not charged to the optimizer state");
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    float *p0 = test_rand_floats(n, -1, 1), *g = malloc(n * 4), *buf = malloc(n * 4);
    struct vka_tensor pa = test_flat_guarded(ctx, 1, n, p0);
    struct vka_tensor acc = test_flat_guarded(ctx, 0, n, NULL);
    float norm;
    for (int t = 0; t < 5; t++) {
        for (uint64_t i = 0; i < n; i++)
            g[i] = test_rand_uniform(-1, 1);
        cr_assert(!one_step(cmd, a, &pa, &acc, g, 1.0f, 1e-2, &norm));
    }
    /* save: counters, every state tensor by its name, params */
    struct vka_optim_counters c;
    vka_optim_get_counters(a, &c);
    cr_assert(c.steps == 5 && c.skipped == 0);
    c.skipped = 2; /* restored as saved, whatever it is */
    cr_assert_eq(vka_optim_create(ctx, &op, &b), 0);
    cr_assert_eq(vka_optim_state_count(b), 2);
    for (uint32_t i = 0; i < 2; i++) {
        const char *name;
        const struct vka_tensor *t = vka_optim_state(a, i, &name);
        cr_assert(t && vka_tensor_numel(t) == n);
        cr_assert_str_eq(name, i ? "exp_avg_sq" : "exp_avg");
        cr_assert_eq(vka_optim_state_read(a, name, buf), 0);
        cr_assert_eq(vka_optim_state_write(b, name, buf), 0);
    }
    cr_assert_null(vka_optim_state(a, 2, NULL));
    cr_assert_eq(vka_optim_set_counters(b, &c), 0);
    test_flat_check_guard(&pa, buf);
    struct vka_tensor pb = test_flat_guarded(ctx, 5, n, buf);
    for (int t = 0; t < 5; t++) {
        for (uint64_t i = 0; i < n; i++)
            g[i] = test_rand_uniform(-1, 1);
        cr_assert(!one_step(cmd, a, &pa, &acc, g, 1.0f, 1e-2, &norm));
        cr_assert(!one_step(cmd, b, &pb, &acc, g, 1.0f, 1e-2, &norm));
    }
    struct snap sa, sb;
    snap_take(a, &pa, n, &sa);
    snap_take(b, &pb, n, &sb);
    cr_assert_eq(memcmp(sa.p, sb.p, n * 4), 0, "restored params differ");
    cr_assert_eq(memcmp(sa.s1, sb.s1, n * 4), 0, "restored exp_avg differs");
    cr_assert_eq(memcmp(sa.s2, sb.s2, n * 4), 0, "restored exp_avg_sq differs");
    vka_optim_get_counters(b, &c);
    cr_assert(c.steps == 10 && c.skipped == 2);
    snap_free(&sa);
    snap_free(&sb);

    /* the names of SGD's state */
    struct vka_optim *s;
    const char *name = NULL;
    cr_assert_eq(vka_optim_create(ctx, &(struct vka_optim_params){ .kind = VKA_OPTIM_SGD,
                 .count = 3, .momentum = 0.5 }, &s), 0);
    cr_assert_eq(vka_optim_state_count(s), 1);
    cr_assert_not_null(vka_optim_state(s, 0, &name));
    cr_assert_str_eq(name, "momentum_buffer");
    vka_optim_destroy(&s);
    cr_assert_eq(vka_optim_create(ctx, &(struct vka_optim_params){ .kind = VKA_OPTIM_SGD,
                 .count = 3 }, &s), 0);
    cr_assert_eq(vka_optim_state_count(s), 0);
    cr_assert_eq(vka_optim_state_read(s, "momentum_buffer", buf), -ENOENT);
    vka_optim_destroy(&s);
    vka_optim_destroy(&s); /* NULL is fine */

    free(p0);
    free(g);
    free(buf);
    vka_tensor_destroy(&pa);
    vka_tensor_destroy(&pb);
    vka_tensor_destroy(&acc);
    vka_cmd_destroy(&cmd);
    vka_optim_destroy(&a);
    vka_optim_destroy(&b);
    vka_mem_get_stats(ctx, &m1);
    cr_assert_eq(m1.cur[VKA_MEM_OPTIM], m0.cur[VKA_MEM_OPTIM]);
    test_ctx_done(&ctx);
}

/* ---- zeroing, refusals ------------------------------------------------------------------- */

Test(optim, zero_grads)
{
    test_seed("zero_grads");
    struct vka_ctx *ctx = ctx_for("texel");
    const uint64_t n = 5003;
    struct vka_optim *opt;
    struct vka_optim_params op = vka_optim_defaults(VKA_OPTIM_ADAM, n);
    cr_assert_eq(vka_optim_create(ctx, &op, &opt), 0);
    float *a = test_rand_floats(n, -1, 1);
    struct vka_tensor acc = test_flat_guarded(ctx, 4, n, a);
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    cr_assert_eq(vka_optim_zero_grads(cmd, opt, &acc), 0, "%s", vka_last_error());
    test_run(cmd);
    test_flat_check_guard(&acc, a);
    for (uint64_t i = 0; i < n; i++)
        cr_assert(a[i] == 0.0f, "grads[%llu] = %g after zeroing", (unsigned long long)i, a[i]);
    free(a);
    vka_tensor_destroy(&acc);
    vka_cmd_destroy(&cmd);
    vka_optim_destroy(&opt);
    test_ctx_done(&ctx);
}

static void refuse(int ret, int want, const char *needle)
{
    cr_assert_eq(ret, want, "returned %d, expected %d (%s)", ret, want, vka_last_error());
    cr_assert(strstr(vka_last_error(), needle), "message \"%s\" lacks \"%s\"",
              vka_last_error(), needle);
}

Test(optim, refusals)
{
    test_seed("refusals");
    struct vka_ctx *ctx = ctx_for("texel");
    struct vka_optim *opt = (struct vka_optim *)1;
    refuse(vka_optim_create(ctx, &(struct vka_optim_params){ .kind = VKA_OPTIM_SGD,
           .count = 4, .momentum = 0.9, .dampening = 0.1, .nesterov = true }, &opt),
           -EINVAL, "nesterov needs momentum > 0 and dampening 0");
    cr_assert_null(opt);
    struct vka_optim_params bad = vka_optim_defaults(VKA_OPTIM_ADAM, 4);
    bad.beta1 = 1.0;
    refuse(vka_optim_create(ctx, &bad, &opt), -EINVAL, "betas are (1, 0.999)");
    bad = vka_optim_defaults(VKA_OPTIM_ADAMW, 0);
    refuse(vka_optim_create(ctx, &bad, &opt), -EINVAL, "adamw: count is 0");
    bad = vka_optim_defaults(VKA_OPTIM_SGD, 4);
    bad.max_norm = -1;
    refuse(vka_optim_create(ctx, &bad, &opt), -EINVAL, "max_norm is -1");

    bad = vka_optim_defaults(VKA_OPTIM_ADAM, 10);
    cr_assert_eq(vka_optim_create(ctx, &bad, &opt), 0);
    struct vka_tensor p = test_flat_guarded(ctx, 0, 10, NULL);
    struct vka_tensor p9 = test_flat_guarded(ctx, 0, 9, NULL);
    struct vka_tensor g = test_flat_guarded(ctx, 4, 10, NULL);
    struct vka_tensor g2 = test_flat_guarded(ctx, 2, 10, NULL);
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    refuse(vka_optim_record_step(cmd, opt, &p9, &g, 1, 1e-3), -EINVAL,
           "adam: params holds 9 floats, the optimizer was made for 10");
    refuse(vka_optim_record_step(cmd, opt, &p, &g2, 1, 1e-3), -EINVAL,
           "grads start at element 2, not a multiple of 4");
    refuse(vka_optim_record_step(cmd, opt, &p, &g, 1, NAN), -EINVAL, "learning rate is nan");
    refuse(vka_optim_record_step(cmd, opt, &p, &g, -1, 1e-3), -EINVAL, "gradient scale is -1");
    refuse(vka_optim_finish_step(opt, NULL, NULL), -EINVAL, "no step was recorded");
    refuse(vka_optim_zero_grads(cmd, opt, &p9), -EINVAL, "grads holds 9 floats");
    cr_assert_eq(vka_optim_record_step(cmd, opt, &p, &g, 1, 1e-3), 0, "%s", vka_last_error());
    refuse(vka_optim_record_step(cmd, opt, &p, &g, 1, 1e-3), -EBUSY,
           "step 1 was recorded and not finished");
    refuse(vka_optim_set_counters(opt, &(struct vka_optim_counters){ 0 }), -EBUSY,
           "step 1 is recorded");
    refuse(vka_optim_state_read(opt, "momentum_buffer", NULL), -ENOENT,
           "no state tensor named \"momentum_buffer\" (it keeps exp_avg, exp_avg_sq)");
    vka_optim_abort_step(opt);
    cr_assert_eq(vka_optim_set_counters(opt, &(struct vka_optim_counters){ 0 }), 0);
    test_run(cmd);
    vka_tensor_destroy(&p);
    vka_tensor_destroy(&p9);
    vka_tensor_destroy(&g);
    vka_tensor_destroy(&g2);
    vka_cmd_destroy(&cmd);
    vka_optim_destroy(&opt);
    test_ctx_done(&ctx);
}

/* ---- learning-rate schedules against hand-computed values ------------------------------- */

static void lr_is(const struct vka_lr_schedule *s, uint64_t t, double want)
{
    double got = vka_lr_at(s, t);
    /* closed forms in double: a few ulps of the result */
    cr_assert_leq(fabs(got - want), 1e-15 * fabs(want) + 1e-18, "kind %d step %llu: lr %.17g, "
                  "expected %.17g", (int)s->kind, (unsigned long long)t, got, want);
}

Test(optim, schedules)
{
    struct vka_lr_schedule s = { .kind = VKA_LR_CONSTANT, .lr = 0.1 };
    lr_is(&s, 0, 0.1);
    lr_is(&s, 1000000, 0.1);

    /* StepLR(step_size 3, gamma .5): .1 for steps 0-2, .05 for 3-5, then .025, ... */
    s = (struct vka_lr_schedule){ .kind = VKA_LR_STEP, .lr = 0.1, .step_size = 3, .gamma = 0.5 };
    lr_is(&s, 0, 0.1);
    lr_is(&s, 2, 0.1);
    lr_is(&s, 3, 0.05);
    lr_is(&s, 5, 0.05);
    lr_is(&s, 6, 0.025);
    lr_is(&s, 10, 0.0125);

    /* CosineAnnealingLR(T_max 6, eta_min .1) from 1: .1 + .9 * (1 + cos(pi t / 6)) / 2 */
    s = (struct vka_lr_schedule){ .kind = VKA_LR_COSINE, .lr = 1, .t_max = 6, .eta_min = 0.1 };
    lr_is(&s, 0, 1.0);
    lr_is(&s, 2, 0.775);  /* cos(pi/3) = .5: .1 + .9 * .75 */
    lr_is(&s, 3, 0.55);   /* cos(pi/2) = 0 */
    lr_is(&s, 4, 0.325);  /* cos(2pi/3) = -.5: .1 + .9 * .25 */
    lr_is(&s, 6, 0.1);
    lr_is(&s, 9, 0.55);   /* the closed form goes on past T_max */
    lr_is(&s, 12, 1.0);

    /* PolyLR(power 2, total 100, min .0001) from .01: .0099 * (1 - t/100)^2 + .0001 */
    s = (struct vka_lr_schedule){ .kind = VKA_LR_POLY, .lr = 0.01, .total_steps = 100,
                                  .power = 2, .min_lr = 1e-4 };
    lr_is(&s, 0, 0.01);
    lr_is(&s, 50, 0.002575);  /* .0099 * .25 + .0001 */
    lr_is(&s, 90, 0.000199);  /* .0099 * .01 + .0001 */
    lr_is(&s, 100, 1e-4);
    lr_is(&s, 150, 1e-4);     /* held at min_lr past the end */
    s.power = 0.9;
    lr_is(&s, 50, 0.0099 * 0.53588673126814657 + 1e-4); /* .5^.9 */

    /* LinearLR(start .2, 5 steps) on a constant .1: .1 * (.2 + .8 * min(t, 5) / 5) */
    s = (struct vka_lr_schedule){ .kind = VKA_LR_CONSTANT, .lr = 0.1, .warmup_steps = 5,
                                  .warmup_start_factor = 0.2 };
    lr_is(&s, 0, 0.02);
    lr_is(&s, 1, 0.036);
    lr_is(&s, 4, 0.084);
    lr_is(&s, 5, 0.1);
    lr_is(&s, 100, 0.1);
    /* chained with StepLR(3, .5), 4 warm-up steps from .25: step 3 is .05 * .8125 */
    s = (struct vka_lr_schedule){ .kind = VKA_LR_STEP, .lr = 0.1, .step_size = 3, .gamma = 0.5,
                                  .warmup_steps = 4, .warmup_start_factor = 0.25 };
    lr_is(&s, 0, 0.025);
    lr_is(&s, 3, 0.040625);
    lr_is(&s, 7, 0.025);
    /* and with the cosine: step 2 of T_max 4 from 1 to 0 is .5, warm-up factor .5 + .5/2 */
    s = (struct vka_lr_schedule){ .kind = VKA_LR_COSINE, .lr = 1, .t_max = 4,
                                  .warmup_steps = 4, .warmup_start_factor = 0.5 };
    lr_is(&s, 2, 0.375);

    /* refusals */
    s = (struct vka_lr_schedule){ .kind = VKA_LR_STEP, .lr = 0.1 };
    cr_assert_eq(vka_lr_check(&s), -EINVAL);
    cr_assert(strstr(vka_last_error(), "step_size is 0"), "%s", vka_last_error());
    cr_assert(isnan(vka_lr_at(&s, 3)));
    s = (struct vka_lr_schedule){ .kind = VKA_LR_CONSTANT, .lr = 0.1, .warmup_steps = 3 };
    cr_assert_eq(vka_lr_check(&s), -EINVAL);
    cr_assert(strstr(vka_last_error(), "warmup_start_factor is 0"), "%s", vka_last_error());
    s = (struct vka_lr_schedule){ .kind = VKA_LR_POLY, .lr = 0.1, .power = 1 };
    cr_assert_eq(vka_lr_check(&s), -EINVAL);
    s.total_steps = 10;
    cr_assert_eq(vka_lr_check(&s), 0);
}
