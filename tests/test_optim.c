/* Optimizers (src/optim.c) against the double reference of tests/ref/ref_optim.c over
 * 100 steps of random accumulators, on both load paths and with the chunked path; the
 * gradient norm (clipping, determinism), skipped steps on NaN and Inf gradients,
 * checkpoint state, refusals, and the learning-rate schedules against hand-computed
 * values. The reference itself is checked against two steps computed by hand. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "optim.h"
#include "ref/ref_optim.h"

#define STEPS 100

static struct vka_ctx *ctx_for(const char *load)
{
    setenv("VKACCUM_LOAD_PATH", load, 1);
    struct vka_ctx *ctx = test_ctx();
    cr_assert_eq(ctx->profile.load, !strcmp(load, "texel") ? VKA_LOAD_TEXEL : VKA_LOAD_STORAGE);
    return ctx;
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
    struct vka_tensor params = test_flat_guarded(ctx, test_rand_range(0, 7), n, p0);
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
    /* f32 against double over 100 steps. Each step rounds p once (2^-24 |p|, |p| < 2)
     * and the increment (|lr * d| < 0.1) a few times relative 2^-24: at most
     * 100 * (1.2e-7 + 1e-8) = 1.3e-5; the errors do not grow from step to step (the
     * gradients do not depend on p, decay only shrinks them). */
    const double atol_p = 2e-5, rtol_p = 1e-6;
    test_assert_close("params", got, p, n, atol_p, rtol_p);
    for (uint64_t i = 0; i < n; i++)
        e->p = fmax(e->p, fabs(got[i] - p[i]));
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
        struct vka_ctx *ctx = ctx_for(path ? "storage" : "texel");
        uint64_t saved = ctx->profile.max_binding;
        for (size_t s = 0; s < NSIZES; s++) {
            ctx->profile.max_binding = s == NSIZES - 1 ? 8192 : saved;
            run_steps(ctx, c, sizes[s], &e);
        }
        test_ctx_done(&ctx);
    }
    cr_log_info("%s: max |param err| %.3g, |state1 err| %.3g, state2 rel err %.3g, "
                "%u steps clipped, %u not", name, e.p, e.s1, e.s2, e.clipped, e.unclipped);
    fprintf(stderr, "%s: max |param err| %.3g, |state1 err| %.3g, state2 rel err %.3g, "
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
