/*
 * test_ref_grad.c - checks every backward in tests/ref against central finite
 * differences in double, the += accumulation rule of every gradient output,
 * and a few forward values against hand-computed numbers.
 *
 * The finite-difference checks run per op of src/ops/ops.def (ref::<op>_grad),
 * on the OC_FD cases of its entry in tests/opcases.c, whose inputs keep away
 * from kinks and ties and whose fd[] names the tolerance of each gradient;
 * an op with a gradient and no such case fails. Dice over a window of two
 * micro-batches and the host-side Dice loss keep their own checks below.
 *
 * Inputs come from a seeded RNG: REF_SEED (env) overrides the base seed,
 * which is printed once; each test mixes it with its own name.
 *
 * Finite differences: g_num = (L(x+e) - L(x-e)) / (2e), e = 1e-6, with
 * L = sum(dy * y) for a random dy (or the loss itself for losses). The
 * analytic gradient is the INCREASE of a gradient buffer pre-filled with
 * random values, so a backward that overwrites instead of adding fails.
 * A check passes when |g_ana - g_num| <= atol + rtol * max(|g_ana|, |g_num|).
 *   TOL_LIN (rtol 1e-7, atol 1e-7): L is linear (or quadratic) in the checked
 *     input near the point, so the central difference has no truncation
 *     error; what is left is round-off of L divided by 2e: ~1e-16 * |L| *
 *     (a few) / 2e-6, i.e. 1e-9..1e-8 for |L| up to ~30 here. L is summed in
 *     long double so only the op's own double round-off remains.
 *   TOL_SMOOTH (rtol 1e-6, atol 1e-7): smooth nonlinear ops add truncation
 *     e^2/6 * L''' ~ 1e-12 * |L'''| on top of the same round-off.
 * Over 280 seeds the worst err/tol was 0.04 (REF_FD_REPORT=1 prints it per
 * check), and a genuinely wrong term gives errors of 1e-3..1; test
 * checker_catches_errors shows the checker fails on a 1e-5 relative error
 * and on an overwriting backward.
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opcases.h"
#include "ref/ref.h"
#include "rng.h"

#define FD_EPS 1e-6
#define TOL_LIN 1e-7, 1e-7
#define TOL_SMOOTH 1e-6, 1e-7
#define DEFAULT_SEED 20240611ULL

/* ---- RNG, allocation, small helpers ---- */

static uint64_t rng_state;

static unsigned long long base_seed(void)
{
    const char *s = getenv("REF_SEED");
    return s && *s ? strtoull(s, NULL, 0) : DEFAULT_SEED;
}

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    fprintf(stderr, "test_ref_grad: REF_SEED=%llu\n", base_seed());
}

static void seed_for(const char *name)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *name; name++)
        h = (h ^ (unsigned char)*name) * 1099511628211ULL;
    rng_state = base_seed() ^ h;
}

#define SEED() seed_for(__func__)

static uint64_t next_u64(void)
{
    return vka_rng_next(&rng_state);
}

static double urand(double lo, double hi)
{
    return lo + (hi - lo) * ((double)(next_u64() >> 11) * 0x1.0p-53);
}

static int irand(int n)
{
    return (int)(next_u64() % (uint64_t)n);
}

static void *arena[512];
static int narena;

static void free_all(void)
{
    while (narena)
        free(arena[--narena]);
}

TestSuite(ref, .fini = free_all);

static void *track(void *p)
{
    cr_assert(p && narena < 512, "allocation failed");
    arena[narena++] = p;
    return p;
}

static double *zeros(size_t n)
{
    return track(calloc(n ? n : 1, sizeof(double)));
}

static int *izeros(size_t n)
{
    return track(calloc(n ? n : 1, sizeof(int)));
}

static double *rnd(size_t n, double lo, double hi)
{
    double *a = zeros(n);
    for (size_t i = 0; i < n; i++)
        a[i] = urand(lo, hi);
    return a;
}

static double *copy(const double *src, size_t n)
{
    double *a = zeros(n);
    memcpy(a, src, n * sizeof *a);
    return a;
}

/* Long-double accumulation keeps the projection's own round-off out of L. */
static double dot(const double *a, const double *b, size_t n)
{
    long double s = 0.0L;
    for (size_t i = 0; i < n; i++)
        s += (long double)a[i] * b[i];
    return (double)s;
}

static int near(double a, double b, double tol)
{
    return fabs(a - b) <= tol;
}

/* ---- finite-difference checker ---- */

typedef double (*loss_fn)(void *ctx);

static int fd_quiet; /* set while the self-test feeds deliberately wrong gradients */

static int fd_check(const char *what, loss_fn loss, void *ctx, double *x,
                    size_t n, const double *g0, const double *g1,
                    double rtol, double atol)
{
    int fails = 0;
    double worst = 0.0, worst_err = 0.0;
    for (size_t i = 0; i < n; i++) {
        double xi = x[i];
        double xp = xi + FD_EPS, xm = xi - FD_EPS;
        x[i] = xp;
        double lp = loss(ctx);
        x[i] = xm;
        double lm = loss(ctx);
        x[i] = xi;
        double num = (lp - lm) / (xp - xm);
        double ana = g1[i] - g0[i];
        double err = fabs(ana - num);
        double tol = atol + rtol * fmax(fabs(ana), fabs(num));
        if (err / tol > worst)
            worst = err / tol;
        if (err > worst_err)
            worst_err = err;
        if (err > tol) {
            if (fails < 5 && !fd_quiet)
                fprintf(stderr, "%s[%zu]: analytic %.15g numeric %.15g "
                        "err %.3g tol %.3g (REF_SEED=%llu)\n",
                        what, i, ana, num, err, tol, base_seed());
            fails++;
        }
    }
    if (getenv("REF_FD_REPORT"))
        fprintf(stderr, "%-28s n=%-4zu |L| %-8.3g worst err %-8.3g worst err/tol %.3g\n",
                what, n, fabs(loss(ctx)), worst_err, worst);
    return fails;
}

#define EXPECT_GRAD(what, loss, ctx, x, n, g0, g1, tol)                        \
    cr_expect_eq(fd_check(what, loss, ctx, x, n, g0, g1, tol), 0,              \
                 "%s: analytic gradient != central difference (REF_SEED=%llu)", \
                 what, base_seed())

/* L = sum(dy * y) for an op whose forward is wrapped as fwd(ctx, y). */
struct proj {
    void (*fwd)(void *op, double *y);
    void *op;
    const double *dy;
    double *y;
    size_t ny;
};

static double proj_loss(void *v)
{
    struct proj *p = v;
    p->fwd(p->op, p->y);
    return dot(p->dy, p->y, p->ny);
}

/* ---- checker self-test ---- */

struct lin_op {
    int n;
    double *a, *b;
};

static void mul_wrap(void *v, double *y)
{
    struct lin_op *o = v;
    ref_mul_fwd(o->n, o->a, o->b, y);
}

Test(ref, checker_catches_errors)
{
    SEED();
    int n = 12;
    struct lin_op o = { n, rnd(n, -1, 1), rnd(n, 0.5, 1.5) };
    double *dy = rnd(n, -1, 1);
    struct proj pj = { mul_wrap, &o, dy, zeros(n), (size_t)n };
    double *g0 = rnd(n, -1, 1), *g1 = copy(g0, n);
    ref_mul_bwd(n, o.a, o.b, dy, g1, NULL);
    cr_expect_eq(fd_check("self-test exact", proj_loss, &pj, o.a, n, g0, g1, TOL_LIN), 0);

    double *bad = copy(g1, n);
    bad[5] += 1e-5 * fabs(bad[5] - g0[5]) + 1e-7;
    fd_quiet = 1;
    cr_expect_gt(fd_check("self-test 1e-5 error", proj_loss, &pj, o.a, n, g0, bad, TOL_LIN), 0,
                 "checker missed a 1e-5 relative error");

    double *fresh = zeros(n), *over = copy(g0, n);
    ref_mul_bwd(n, o.a, o.b, dy, fresh, NULL);
    memcpy(over, fresh, n * sizeof *over);
    cr_expect_gt(fd_check("self-test overwrite", proj_loss, &pj, o.a, n, g0, over, TOL_LIN), 0,
                 "checker missed an overwriting backward");
    fd_quiet = 0;
}

/* ---- every op's backward: its entry's finite-difference cases ---- */

/* L = sum(dy * y) of the reference's fwd on the run's current inputs (a loss's dy is
 * [scale, 0]: L = scale * sum). */
struct op_fd {
    struct oc_run *r;
    double *y, *saved[2], *state[2];
};

static double op_loss(void *v)
{
    struct op_fd *o = v;
    struct oc_run *r = o->r;
    struct oc_ref a = { .r = r, .y = o->y };
    for (int i = 0; i < 3; i++) {
        const struct oc_tensor *t = &r->t[OC_X0 + i];
        a.x[i] = t->kind == OC_NONE || t->absent ? NULL : t->d;
    }
    for (int i = 0; i < 2; i++) {
        const struct oc_tensor *st = &r->t[OC_STATE0 + i];
        a.saved[i] = o->saved[i];
        if (st->kind != OC_NONE) { /* fresh running statistics every time */
            memcpy(o->state[i], st->d, oc_numel(st) * sizeof(double));
            a.state[i] = o->state[i];
        }
    }
    r->e->fwd(&a);
    return dot(r->t[OC_DY].d, o->y, oc_numel(&r->t[OC_Y]));
}

static void op_grads(enum vka_op op)
{
    const struct oc_entry *e = oc_entry(op);
    cr_assert(e, "%s has no entry in tests/opcases.c", vka_ops[op].name);
    int checked = 0;
    for (size_t ci = 0; ci < e->ncases; ci++) {
        if (!(e->cases[ci].f & OC_FD))
            continue;
        char err[256], desc[256], what[300];
        seed_for(vka_ops[op].name);
        oc_seed(next_u64() + ci);
        struct oc_run r;
        cr_assert(oc_run_init(&r, op, &e->cases[ci], OC_GEN_FD, err, sizeof(err)),
                  "%s FD case %zu: %s", vka_ops[op].name, ci, err);
        oc_run_ref_fwd(&r);
        oc_describe(&r, desc, sizeof(desc));
        bool which[3];
        for (int i = 0; i < 3; i++)
            which[i] = r.t[OC_DX0 + i].kind != OC_NONE && !(e->cases[ci].f & (OC_NO_DX0 << i));
        oc_run_ref_bwd(&r, NULL, NULL, which);
        struct op_fd o = { .r = &r, .y = zeros(oc_numel(&r.t[OC_Y])) };
        for (int i = 0; i < 2; i++) {
            o.saved[i] = zeros(oc_numel(&r.t[OC_SAVED0 + i]));
            o.state[i] = zeros(oc_numel(&r.t[OC_STATE0 + i]));
        }
        for (int i = 0; i < 3; i++) {
            struct oc_tensor *x = &r.t[OC_X0 + i];
            if (!which[i] || x->absent || e->fd[i] == OC_FD_NONE)
                continue;
            snprintf(what, sizeof(what), "%s d%s", desc, oc_slot_name(OC_X0 + i));
            const double *g0 = r.t[OC_DX0 + i].d, *g1 = r.ref[OC_DX0 + i];
            if (e->fd[i] == OC_FD_LIN) {
                EXPECT_GRAD(what, op_loss, &o, x->d, oc_numel(x), g0, g1, TOL_LIN);
            } else {
                EXPECT_GRAD(what, op_loss, &o, x->d, oc_numel(x), g0, g1, TOL_SMOOTH);
            }
            checked++;
        }
        oc_run_free(&r);
    }
    if (e->fd[0] || e->fd[1] || e->fd[2])
        cr_assert(checked, "%s has a gradient but no OC_FD case in tests/opcases.c",
                  vka_ops[op].name);
}

/* one test per row of ops.def */
#define VKA_OP(name, ...)                                                                  \
    Test(ref, name##_grad) { op_grads(VKA_OP_##name); }
#include "ops/ops.def"
#undef VKA_OP

/* ---- forward values ---- */

Test(ref, conv2d_fwd_values)
{
    struct ref_conv p = { .N = 1, .C = 3, .H = 4, .W = 4, .K = 2, .R = 3, .S = 3,
                          .stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1 };
    int P, Q;
    ref_conv2d_out_size(&p, &P, &Q);
    cr_assert(P == 4 && Q == 4);
    double x[48], w[54], b[2] = { 0.5, -1.0 }, y[32];
    for (int i = 0; i < 48; i++)
        x[i] = 1.0;
    for (int i = 0; i < 54; i++)
        w[i] = 1.0;
    ref_conv2d_fwd(&p, x, w, b, y);
    /* ones: each output = C * (in-bounds taps) + b; exact in double. */
    cr_expect_eq(y[0], 3 * 4 + 0.5, "corner");
    cr_expect_eq(y[1], 3 * 6 + 0.5, "edge");
    cr_expect_eq(y[5], 3 * 9 + 0.5, "interior");
    cr_expect_eq(y[16 + 15], 3 * 4 - 1.0, "corner, k=1");

    struct ref_conv s = { .H = 5, .W = 7, .R = 3, .S = 3, .stride_h = 2,
                          .stride_w = 2, .pad_h = 1, .pad_w = 1 };
    ref_conv2d_out_size(&s, &P, &Q);
    cr_expect(P == 3 && Q == 4, "conv out size %dx%d", P, Q);
}

Test(ref, conv_transpose2d_fwd_values)
{
    struct ref_conv p = { .N = 1, .C = 1, .H = 2, .W = 2, .K = 1, .R = 2, .S = 2,
                          .stride_h = 1, .stride_w = 1 };
    double x[4] = { 1, 2, 3, 4 }, w[4] = { 1, 10, 100, 1000 }, y[9];
    int P, Q;
    ref_conv_transpose2d_out_size(&p, &P, &Q);
    cr_assert(P == 3 && Q == 3);
    ref_conv_transpose2d_fwd(&p, x, w, NULL, y);
    /* y[i+r][j+s] += x[i][j] w[r][s]; integer sums, exact. */
    cr_expect_eq(y[0], 1.0);
    cr_expect_eq(y[4], 1 * 1000 + 2 * 100 + 3 * 10 + 4 * 1);
    cr_expect_eq(y[8], 4000.0);
    cr_expect_eq(y[2], 20.0);

    struct ref_conv s = { .H = 5, .W = 4, .R = 3, .S = 3, .stride_h = 2,
                          .stride_w = 2, .pad_h = 1, .pad_w = 1,
                          .out_pad_h = 1, .out_pad_w = 0 };
    ref_conv_transpose2d_out_size(&s, &P, &Q);
    cr_expect(P == 10 && Q == 7, "convT out size %dx%d", P, Q);
}

Test(ref, conv_transpose_is_adjoint_of_conv)
{
    SEED();
    /* <conv(x), u> == <x, convT(u)> with the same (K,C,R,S) tensor, which is
     * exactly PyTorch's relation between the two layouts. */
    struct ref_conv c = { .N = 2, .C = 3, .H = 6, .W = 7, .K = 4, .R = 3, .S = 3,
                          .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1 };
    int P, Q;
    ref_conv2d_out_size(&c, &P, &Q);
    struct ref_conv t = { .N = 2, .C = 4, .H = P, .W = Q, .K = 3, .R = 3, .S = 3,
                          .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1,
                          .out_pad_h = (6 + 2 - 3) % 2, .out_pad_w = (7 + 2 - 3) % 2 };
    int TP, TQ;
    ref_conv_transpose2d_out_size(&t, &TP, &TQ);
    cr_assert(TP == 6 && TQ == 7, "convT size %dx%d", TP, TQ);
    size_t nx = 2 * 3 * 6 * 7, nu = (size_t)2 * 4 * P * Q;
    double *x = rnd(nx, -1, 1), *w = rnd(4 * 3 * 9, -1, 1), *u = rnd(nu, -1, 1);
    double *y = zeros(nu), *z = zeros(nx);
    ref_conv2d_fwd(&c, x, w, NULL, y);
    ref_conv_transpose2d_fwd(&t, u, w, NULL, z);
    double lhs = dot(y, u, nu), rhs = dot(x, z, nx);
    /* same products summed in different orders: rel 1e-12 covers round-off. */
    cr_expect(near(lhs, rhs, 1e-12 * (1 + fabs(lhs))), "%.17g vs %.17g", lhs, rhs);
}

Test(ref, linear_fwd_values)
{
    struct ref_linear p = { 1, 2, 3 };
    double x[2] = { 1, 2 }, w[6] = { 1, 0, 0, 1, 1, 1 }, b[3] = { 0.5, 0, -1 };
    double y[3];
    ref_linear_fwd(&p, x, w, b, y);
    cr_expect(y[0] == 1.5 && y[1] == 2.0 && y[2] == 2.0, "%g %g %g", y[0], y[1], y[2]);
    ref_linear_fwd(&p, x, w, NULL, y);
    cr_expect(y[0] == 1.0 && y[2] == 3.0);
}

Test(ref, batch_norm_fwd_values)
{
    struct ref_bn p = { 2, 1, 1, 2, 1e-5, 0.1 };
    double x[4] = { 1, 2, 3, 4 }, y[4], rm = 0.0, rv = 1.0, m, is;
    ref_batch_norm_fwd_train(&p, x, NULL, NULL, &rm, &rv, &m, &is, y);
    /* mean 2.5, biased var 1.25, unbiased 5/3. */
    cr_expect(near(m, 2.5, 1e-15), "mean %.17g", m);
    cr_expect(near(is, 1.0 / sqrt(1.25 + 1e-5), 1e-15), "invstd %.17g", is);
    cr_expect(near(rm, 0.25, 1e-15), "running_mean %.17g", rm);
    cr_expect(near(rv, 0.9 + 0.1 * 5.0 / 3.0, 1e-15), "running_var %.17g (must use unbiased var)", rv);
    cr_expect(near(y[0], -1.5 / sqrt(1.25 + 1e-5), 1e-15), "y0 %.17g", y[0]);
    cr_expect(near(y[3], 1.5 / sqrt(1.25 + 1e-5), 1e-15), "y3 %.17g", y[3]);

    double g = 2.0, b = -1.0, rm2 = 1.0, rv2 = 4.0;
    ref_batch_norm_fwd_eval(&p, x, &g, &b, &rm2, &rv2, y);
    cr_expect(near(y[2], (3.0 - 1.0) / sqrt(4.0 + 1e-5) * 2.0 - 1.0, 1e-15), "eval y2 %.17g", y[2]);
}

Test(ref, group_norm_fwd_values)
{
    SEED();
    struct ref_gn p = { 2, 4, 3, 5, 2, 1e-5 };
    size_t nx = 120;
    double *x = rnd(nx, -2, 3), *y = zeros(nx), mean[4], invstd[4];
    ref_group_norm_fwd(&p, x, NULL, NULL, mean, invstd, y);
    for (int ng = 0; ng < 4; ng++) {
        const double *xs = x + ng * 30, *ys = y + ng * 30;
        double m = 0, v = 0, ym = 0, yv = 0;
        for (int i = 0; i < 30; i++)
            m += xs[i] / 30;
        for (int i = 0; i < 30; i++) {
            v += (xs[i] - m) * (xs[i] - m) / 30;
            ym += ys[i] / 30;
        }
        for (int i = 0; i < 30; i++)
            yv += ys[i] * ys[i] / 30;
        /* direct two-pass statistics; 1e-12 covers summation-order round-off. */
        cr_expect(near(mean[ng], m, 1e-12), "group %d mean", ng);
        cr_expect(near(invstd[ng], 1 / sqrt(v + 1e-5), 1e-12), "group %d invstd", ng);
        cr_expect(near(ym, 0.0, 1e-12), "group %d output mean %.3g", ng, ym);
        cr_expect(near(yv, v / (v + 1e-5), 1e-12), "group %d output var %.17g", ng, yv);
    }
}

Test(ref, activation_fwd_values)
{
    double x[4] = { 0.0, -2.0, 800.0, -800.0 }, y[4], dy[4] = { 1, 1, 1, 1 }, dx[4] = { 0 };
    ref_relu_fwd(4, x, y);
    cr_expect(y[0] == 0.0 && y[1] == 0.0 && y[2] == 800.0);
    ref_relu_bwd(1, x, dy, dx);
    cr_expect_eq(dx[0], 0.0, "relu'(0) must be 0");
    ref_leaky_relu_fwd(2, 0.1, x, y);
    cr_expect(y[0] == 0.0 && near(y[1], -0.2, 1e-16));
    dx[0] = 0.0;
    ref_leaky_relu_bwd(1, 0.1, x, dy, dx);
    cr_expect_eq(dx[0], 0.1, "leaky'(0) must be slope");
    ref_sigmoid_fwd(4, x, y);
    cr_expect(y[0] == 0.5 && y[2] == 1.0 && y[3] >= 0.0 && y[3] < 1e-300,
              "sigmoid %g %g %g (no overflow at +-800)", y[0], y[2], y[3]);
    ref_tanh_fwd(2, x, y);
    cr_expect(y[0] == 0.0 && near(y[1], -0.96402758007581690, 1e-15));
}

Test(ref, pool_fwd_values)
{
    /* ties: the first maximum in row-major window order receives dy. */
    struct ref_pool p = { 1, 1, 2, 4, 2, 2, 0 };
    double x[8] = { 3, 3, 1, 5, 1, 3, 5, 2 }, y[2], dy[2] = { 1, 1 }, dx[8] = { 0 };
    ref_max_pool2d_fwd(&p, x, y);
    cr_expect(y[0] == 3.0 && y[1] == 5.0);
    ref_max_pool2d_bwd(&p, x, dy, dx);
    cr_expect(dx[0] == 1.0 && dx[1] == 0.0 && dx[5] == 0.0, "tie 3,3,3 -> first");
    cr_expect(dx[3] == 1.0 && dx[6] == 0.0, "tie 5,5 -> first (row 0)");

    /* avg, count_include_pad: ones 4x4, k3 s2 p1 -> in-bounds taps / 9. */
    struct ref_pool a = { 1, 1, 4, 4, 3, 2, 1 };
    double ones[16], ya[4];
    for (int i = 0; i < 16; i++)
        ones[i] = 1.0;
    int P, Q;
    ref_pool2d_out_size(&a, &P, &Q);
    cr_assert(P == 2 && Q == 2);
    ref_avg_pool2d_fwd(&a, ones, ya);
    cr_expect(near(ya[0], 4.0 / 9, 1e-16) && near(ya[1], 6.0 / 9, 1e-16) &&
              near(ya[3], 1.0, 1e-16), "%g %g %g", ya[0], ya[1], ya[3]);
    struct ref_pool f = { 1, 1, 5, 7, 2, 2, 0 };
    ref_pool2d_out_size(&f, &P, &Q);
    cr_expect(P == 2 && Q == 3, "floor mode %dx%d", P, Q);
}

Test(ref, upsample_fwd_values)
{
    struct ref_resize p = { 1, 1, 1, 2, 1, 5 };
    double x[2] = { 10, 20 }, y[5];
    ref_upsample_nearest_fwd(&p, x, y);
    /* src = floor(dst*2/5) = 0,0,0,1,1 */
    cr_expect(y[0] == 10 && y[2] == 10 && y[3] == 20 && y[4] == 20);
    struct ref_resize d = { 1, 1, 1, 5, 1, 2 };
    double x5[5] = { 0, 1, 2, 3, 4 }, y2[2];
    ref_upsample_nearest_fwd(&d, x5, y2);
    cr_expect(y2[0] == 0 && y2[1] == 2, "5->2 picks 0,2; got %g %g", y2[0], y2[1]);
    struct ref_resize b = { 1, 1, 1, 2, 1, 4 };
    double xb[2] = { 0, 1 }, yb[4];
    ref_upsample_bilinear_fwd(&b, xb, yb);
    /* F.interpolate([0,1], 4, 'bilinear', align_corners=False) = 0,.25,.75,1 */
    cr_expect(yb[0] == 0.0 && yb[1] == 0.25 && yb[2] == 0.75 && yb[3] == 1.0,
              "%g %g %g %g", yb[0], yb[1], yb[2], yb[3]);
}

Test(ref, concat_fwd_values)
{
    double a[60], b[90], y[150];
    for (int i = 0; i < 60; i++)
        a[i] = i;
    for (int i = 0; i < 90; i++)
        b[i] = 100 + i;
    ref_concat_fwd(2, 2, 3, 3, 5, a, b, y);
    /* sample 0: a's 30 values, then b's 45; sample 1 likewise */
    cr_expect(y[29] == a[29] && y[30] == b[0] && y[75] == a[30] && y[149] == b[89],
              "channel layout of concat");
}

Test(ref, softmax_ce_fwd_values)
{
    struct ref_seg p = { 1, 4, 1, 5, 255 };
    double logits[20], s, c, w[4] = { 1, 2, 3, 4 };
    for (int i = 0; i < 20; i++)
        logits[i] = 0.7;
    int t[5] = { 0, 3, 255, 2, 9 };
    ref_softmax_ce_fwd(&p, logits, t, NULL, &s, &c);
    /* uniform logits: -log softmax = log C per valid pixel; 255 ignored, 9 skipped. */
    cr_expect(c == 3.0 && near(s, 3 * log(4.0), 1e-14), "sum %.17g count %g", s, c);
    ref_softmax_ce_fwd(&p, logits, t, w, &s, &c);
    cr_expect(c == 1 + 4 + 3 && near(s, 8 * log(4.0), 1e-14), "weighted sum %.17g count %g", s, c);
    struct ref_seg pi = { 1, 4, 1, 5, 2 };
    ref_softmax_ce_fwd(&pi, logits, t, NULL, &s, &c);
    /* ignore_index may be a real class: targets 0,3,255(skipped),2(ignored),9(skipped) */
    cr_expect(c == 2.0 && near(s, 2 * log(4.0), 1e-14), "ignore_index=2: sum %.17g count %g", s, c);
    double big[2] = { 1000.0, 0.0 };
    int t0 = 1;
    struct ref_seg q = { 1, 2, 1, 1, -100 };
    ref_softmax_ce_fwd(&q, big, &t0, NULL, &s, &c);
    cr_expect(near(s, 1000.0, 1e-12), "stable for large logits: %.17g", s);
}

Test(ref, pointwise_loss_fwd_values)
{
    double x[3] = { 0.0, 100.0, -100.0 }, t[3] = { 0.3, 1.0, 1.0 }, s, c;
    ref_bce_logits_fwd(1, x, t, &s, &c);
    cr_expect(near(s, log(2.0), 1e-16) && c == 1.0, "bce(0) = log 2: %.17g", s);
    ref_bce_logits_fwd(1, x + 1, t + 1, &s, &c);
    cr_expect(s >= 0.0 && s < 1e-40, "bce(100,1) ~ 3.7e-44: %g", s);
    ref_bce_logits_fwd(1, x + 2, t + 2, &s, &c);
    cr_expect(near(s, 100.0, 1e-12), "bce(-100,1) = 100: %.17g", s);

    double a[3] = { 1, 2, 3 }, b[3] = { 1, 4, 0 }, g[3] = { 0, 0, 0 };
    ref_mse_fwd(3, a, b, &s, &c);
    cr_expect(s == 13.0 && c == 3.0);
    ref_l1_fwd(3, a, b, &s, &c);
    cr_expect(s == 5.0 && c == 3.0);
    ref_l1_bwd(3, a, b, 0.5, g);
    cr_expect(g[0] == 0.0 && g[1] == -0.5 && g[2] == 0.5, "sign(0) = 0");
}

/* Dice over a window of two micro-batches, L from the summed totals. */
Test(ref, dice_fwd_values)
{
    /* C=2, equal logits -> p = 0.5 each; pixel 0 target 0, pixel 1 ignored. */
    struct ref_seg p = { 1, 2, 1, 2, 255 };
    double logits[4] = { 0.3, 0.3, 0.3, 0.3 }, inter[2], card[2];
    int t[2] = { 0, 255 };
    ref_dice_fwd(&p, logits, t, inter, card);
    cr_expect(inter[0] == 0.5 && inter[1] == 0.0 && card[0] == 1.5 && card[1] == 0.5,
              "inter %g %g card %g %g", inter[0], inter[1], card[0], card[1]);
    double L = ref_dice_loss_from_sums(inter, card, 2, 1.0);
    /* 1 - ((2*.5+1)/(1.5+1) + (0+1)/(.5+1)) / 2 = 1 - (0.8 + 2/3)/2 = 4/15 */
    cr_expect(near(L, 4.0 / 15.0, 1e-15), "dice loss %.17g", L);
}


/* ---- dice over a window of two micro-batches ---- */

/* Random targets: ~1/5 ignored, one pixel out of range (skipped). */
static int *seg_targets(const struct ref_seg *p)
{
    size_t n = (size_t)p->N * p->H * p->W;
    int *t = izeros(n);
    for (size_t i = 0; i < n; i++)
        t[i] = irand(5) == 0 ? p->ignore_index : irand(p->C);
    t[n / 2] = p->C + 3;
    return t;
}

struct dice_op {
    struct ref_seg p;
    double *logits[2];
    int *target[2];
    double smooth;
    int C;
};

static void dice_totals(struct dice_op *o, double *inter, double *card)
{
    double mi[8], mc[8];
    for (int c = 0; c < o->C; c++)
        inter[c] = card[c] = 0.0;
    for (int m = 0; m < 2; m++) {
        ref_dice_fwd(&o->p, o->logits[m], o->target[m], mi, mc);
        for (int c = 0; c < o->C; c++) {
            inter[c] += mi[c];
            card[c] += mc[c];
        }
    }
}

static double dice_window_loss(void *v)
{
    struct dice_op *o = v;
    double inter[8], card[8];
    dice_totals(o, inter, card);
    return ref_dice_loss_from_sums(inter, card, o->C, o->smooth);
}

Test(ref, dice_window_grad)
{
    SEED();
    struct ref_seg p = { 2, 4, 3, 5, 3 };
    size_t nl = 2 * 4 * 15;
    struct dice_op o = { p, { rnd(nl, -3, 3), rnd(nl, -3, 3) },
                         { seg_targets(&p), seg_targets(&p) }, 1.0, 4 };
    double inter[4], card[4], di[4] = { 0 }, dc[4] = { 0 };
    dice_totals(&o, inter, card);
    ref_dice_loss_from_sums_bwd(inter, card, 4, o.smooth, 1.0, di, dc);
    for (int m = 0; m < 2; m++) {
        double *g0 = rnd(nl, -1, 1), *g = copy(g0, nl);
        ref_dice_bwd(&p, o.logits[m], o.target[m], di, dc, g);
        /* TOL_SMOOTH: softmax and the ratio are smooth, nonlinear. */
        EXPECT_GRAD(m ? "dice dlogits mb1" : "dice dlogits mb0", dice_window_loss, &o,
                    o.logits[m], nl, g0, g, TOL_SMOOTH);
    }
}

struct dice_sums_op {
    double inter[5], card[5], smooth, dloss;
};

static double dice_sums_loss(void *v)
{
    struct dice_sums_op *o = v;
    return o->dloss * ref_dice_loss_from_sums(o->inter, o->card, 5, o->smooth);
}

Test(ref, dice_loss_from_sums_grad)
{
    SEED();
    struct dice_sums_op o = { .smooth = 0.5, .dloss = 0.8 };
    for (int c = 0; c < 5; c++) {
        o.inter[c] = urand(0, 10);
        o.card[c] = 2 * o.inter[c] + urand(0.5, 10);
    }
    double *gi0 = rnd(5, -1, 1), *gc0 = rnd(5, -1, 1);
    double *gi = copy(gi0, 5), *gc = copy(gc0, 5);
    ref_dice_loss_from_sums_bwd(o.inter, o.card, 5, o.smooth, o.dloss, gi, gc);
    /* TOL_LIN for dinter (L linear in inter); TOL_SMOOTH for dcard (1/card). */
    EXPECT_GRAD("dice_from_sums dinter", dice_sums_loss, &o, o.inter, 5, gi0, gi, TOL_LIN);
    EXPECT_GRAD("dice_from_sums dcard", dice_sums_loss, &o, o.card, 5, gc0, gc, TOL_SMOOTH);
}
