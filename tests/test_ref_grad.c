/*
 * test_ref_grad.c - checks every backward in tests/ref against central finite
 * differences in double, the += accumulation rule of every gradient output,
 * and a few forward values against hand-computed numbers.
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

#include "ref/ref.h"

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
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
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

/* Values with lo <= |v| <= hi and random sign: away from kinks at 0. */
static double *rnd_away0(size_t n, double lo, double hi)
{
    double *a = rnd(n, lo, hi);
    for (size_t i = 0; i < n; i++)
        if (next_u64() & 1)
            a[i] = -a[i];
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

/* ---- conv2d / conv_transpose2d ---- */

struct conv_op {
    struct ref_conv p;
    int transpose;
    double *x, *w, *b;
};

static void conv_wrap(void *v, double *y)
{
    struct conv_op *o = v;
    if (o->transpose)
        ref_conv_transpose2d_fwd(&o->p, o->x, o->w, o->b, y);
    else
        ref_conv2d_fwd(&o->p, o->x, o->w, o->b, y);
}

static void conv_grad_case(const char *name, struct ref_conv p, int transpose,
                           int with_bias)
{
    int P, Q;
    if (transpose)
        ref_conv_transpose2d_out_size(&p, &P, &Q);
    else
        ref_conv2d_out_size(&p, &P, &Q);
    size_t nx = (size_t)p.N * p.C * p.H * p.W;
    size_t nw = (size_t)p.K * p.C * p.R * p.S;
    size_t ny = (size_t)p.N * p.K * P * Q;
    struct conv_op o = { p, transpose, rnd(nx, -1, 1), rnd(nw, -1, 1),
                         with_bias ? rnd(p.K, -1, 1) : NULL };
    double *dy = rnd(ny, -1, 1);
    struct proj pj = { conv_wrap, &o, dy, zeros(ny), ny };
    double *dx0 = rnd(nx, -1, 1), *dw0 = rnd(nw, -1, 1), *db0 = rnd(p.K, -1, 1);
    double *dx = copy(dx0, nx), *dw = copy(dw0, nw), *db = copy(db0, p.K);
    if (transpose)
        ref_conv_transpose2d_bwd(&p, o.x, o.w, dy, dx, dw, with_bias ? db : NULL);
    else
        ref_conv2d_bwd(&p, o.x, o.w, dy, dx, dw, with_bias ? db : NULL);
    char what[96];
    /* TOL_LIN: y is linear in x, in w and in b separately. */
    snprintf(what, sizeof what, "%s dx", name);
    EXPECT_GRAD(what, proj_loss, &pj, o.x, nx, dx0, dx, TOL_LIN);
    snprintf(what, sizeof what, "%s dw", name);
    EXPECT_GRAD(what, proj_loss, &pj, o.w, nw, dw0, dw, TOL_LIN);
    if (with_bias) {
        snprintf(what, sizeof what, "%s db", name);
        EXPECT_GRAD(what, proj_loss, &pj, o.b, p.K, db0, db, TOL_LIN);
    } else {
        for (int k = 0; k < p.K; k++)
            cr_expect_eq(db[k], db0[k], "%s: db touched although NULL was passed", name);
    }
}

Test(ref, conv2d_grad)
{
    SEED();
    struct ref_conv a = { .N = 2, .C = 3, .H = 5, .W = 7, .K = 4, .R = 3, .S = 3,
                          .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1 };
    conv_grad_case("conv2d s2p1", a, 0, 1);
    struct ref_conv b = { .N = 1, .C = 2, .H = 6, .W = 5, .K = 3, .R = 2, .S = 3,
                          .stride_h = 1, .stride_w = 2, .pad_h = 0, .pad_w = 1 };
    conv_grad_case("conv2d asym nobias", b, 0, 0);
}

Test(ref, conv_transpose2d_grad)
{
    SEED();
    struct ref_conv a = { .N = 2, .C = 3, .H = 5, .W = 4, .K = 2, .R = 3, .S = 3,
                          .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1,
                          .out_pad_h = 1, .out_pad_w = 1 };
    conv_grad_case("convT s2p1op1", a, 1, 1);
    struct ref_conv b = { .N = 1, .C = 2, .H = 3, .W = 4, .K = 3, .R = 2, .S = 3,
                          .stride_h = 3, .stride_w = 2, .pad_h = 0, .pad_w = 1,
                          .out_pad_h = 2, .out_pad_w = 0 };
    conv_grad_case("convT asym nobias", b, 1, 0);
}

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

/* ---- linear ---- */

struct linear_op {
    struct ref_linear p;
    double *x, *w, *b;
};

static void linear_wrap(void *v, double *y)
{
    struct linear_op *o = v;
    ref_linear_fwd(&o->p, o->x, o->w, o->b, y);
}

Test(ref, linear_grad)
{
    SEED();
    struct ref_linear p = { 5, 7, 3 };
    size_t nx = 35, nw = 21, ny = 15;
    struct linear_op o = { p, rnd(nx, -1, 1), rnd(nw, -1, 1), rnd(3, -1, 1) };
    double *dy = rnd(ny, -1, 1);
    struct proj pj = { linear_wrap, &o, dy, zeros(ny), ny };
    double *dx0 = rnd(nx, -1, 1), *dw0 = rnd(nw, -1, 1), *db0 = rnd(3, -1, 1);
    double *dx = copy(dx0, nx), *dw = copy(dw0, nw), *db = copy(db0, 3);
    ref_linear_bwd(&p, o.x, o.w, dy, dx, dw, db);
    /* TOL_LIN: y is linear in x, w, b separately. */
    EXPECT_GRAD("linear dx", proj_loss, &pj, o.x, nx, dx0, dx, TOL_LIN);
    EXPECT_GRAD("linear dw", proj_loss, &pj, o.w, nw, dw0, dw, TOL_LIN);
    EXPECT_GRAD("linear db", proj_loss, &pj, o.b, 3, db0, db, TOL_LIN);
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

/* ---- batch_norm / group_norm ---- */

struct bn_op {
    struct ref_bn p;
    double *x, *gamma, *beta, *mean, *invstd;
};

static void bn_wrap(void *v, double *y)
{
    struct bn_op *o = v;
    ref_batch_norm_fwd_train(&o->p, o->x, o->gamma, o->beta, NULL, NULL,
                             o->mean, o->invstd, y);
}

static void bn_grad_case(const char *name, struct ref_bn p, int affine)
{
    size_t nx = (size_t)p.N * p.C * p.H * p.W;
    struct bn_op o = { p, rnd(nx, -2, 3), affine ? rnd(p.C, 0.5, 1.5) : NULL,
                       affine ? rnd(p.C, -1, 1) : NULL, zeros(p.C), zeros(p.C) };
    double *dy = rnd(nx, -1, 1);
    struct proj pj = { bn_wrap, &o, dy, zeros(nx), nx };
    bn_wrap(&o, pj.y);
    double *mean = copy(o.mean, p.C), *invstd = copy(o.invstd, p.C);
    double *dx0 = rnd(nx, -1, 1), *dg0 = rnd(p.C, -1, 1), *dbt0 = rnd(p.C, -1, 1);
    double *dx = copy(dx0, nx), *dg = copy(dg0, p.C), *dbt = copy(dbt0, p.C);
    ref_batch_norm_bwd(&p, o.x, o.gamma, mean, invstd, dy, dx,
                       affine ? dg : NULL, affine ? dbt : NULL);
    char what[96];
    /* TOL_SMOOTH: dx goes through mean and 1/sqrt(var+eps), nonlinear in x. */
    snprintf(what, sizeof what, "%s dx", name);
    EXPECT_GRAD(what, proj_loss, &pj, o.x, nx, dx0, dx, TOL_SMOOTH);
    if (affine) {
        /* TOL_LIN: y is linear in gamma and in beta. */
        snprintf(what, sizeof what, "%s dgamma", name);
        EXPECT_GRAD(what, proj_loss, &pj, o.gamma, p.C, dg0, dg, TOL_LIN);
        snprintf(what, sizeof what, "%s dbeta", name);
        EXPECT_GRAD(what, proj_loss, &pj, o.beta, p.C, dbt0, dbt, TOL_LIN);
    }
}

Test(ref, batch_norm_grad)
{
    SEED();
    struct ref_bn a = { 2, 3, 5, 7, 1e-5, 0.1 };
    bn_grad_case("bn affine", a, 1);
    struct ref_bn b = { 5, 2, 1, 3, 1e-3, 0.1 };
    bn_grad_case("bn N=5 plain", b, 0);
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

struct gn_op {
    struct ref_gn p;
    double *x, *gamma, *beta, *mean, *invstd;
};

static void gn_wrap(void *v, double *y)
{
    struct gn_op *o = v;
    ref_group_norm_fwd(&o->p, o->x, o->gamma, o->beta, o->mean, o->invstd, y);
}

static void gn_grad_case(const char *name, struct ref_gn p, int affine)
{
    size_t nx = (size_t)p.N * p.C * p.H * p.W, ns = (size_t)p.N * p.G;
    struct gn_op o = { p, rnd(nx, -2, 3), affine ? rnd(p.C, 0.5, 1.5) : NULL,
                       affine ? rnd(p.C, -1, 1) : NULL, zeros(ns), zeros(ns) };
    double *dy = rnd(nx, -1, 1);
    struct proj pj = { gn_wrap, &o, dy, zeros(nx), nx };
    gn_wrap(&o, pj.y);
    double *mean = copy(o.mean, ns), *invstd = copy(o.invstd, ns);
    double *dx0 = rnd(nx, -1, 1), *dg0 = rnd(p.C, -1, 1), *dbt0 = rnd(p.C, -1, 1);
    double *dx = copy(dx0, nx), *dg = copy(dg0, p.C), *dbt = copy(dbt0, p.C);
    ref_group_norm_bwd(&p, o.x, o.gamma, mean, invstd, dy, dx,
                       affine ? dg : NULL, affine ? dbt : NULL);
    char what[96];
    /* TOL_SMOOTH: nonlinear through the group statistics. */
    snprintf(what, sizeof what, "%s dx", name);
    EXPECT_GRAD(what, proj_loss, &pj, o.x, nx, dx0, dx, TOL_SMOOTH);
    if (affine) {
        /* TOL_LIN: linear in gamma and in beta. */
        snprintf(what, sizeof what, "%s dgamma", name);
        EXPECT_GRAD(what, proj_loss, &pj, o.gamma, p.C, dg0, dg, TOL_LIN);
        snprintf(what, sizeof what, "%s dbeta", name);
        EXPECT_GRAD(what, proj_loss, &pj, o.beta, p.C, dbt0, dbt, TOL_LIN);
    }
}

Test(ref, group_norm_grad)
{
    SEED();
    struct ref_gn a = { 2, 6, 5, 7, 3, 1e-5 };
    gn_grad_case("gn G=3", a, 1);
    struct ref_gn b = { 1, 4, 3, 5, 1, 1e-5 };
    gn_grad_case("gn G=1 N=1 plain", b, 0);
    struct ref_gn c = { 5, 3, 2, 3, 3, 1e-5 };
    gn_grad_case("gn G=C N=5", c, 1);
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

/* ---- activations ---- */

struct act_op {
    int kind, n;
    double slope, *x;
};

static void act_wrap(void *v, double *y)
{
    struct act_op *o = v;
    switch (o->kind) {
    case 0: ref_relu_fwd(o->n, o->x, y); break;
    case 1: ref_leaky_relu_fwd(o->n, o->slope, o->x, y); break;
    case 2: ref_tanh_fwd(o->n, o->x, y); break;
    default: ref_sigmoid_fwd(o->n, o->x, y); break;
    }
}

Test(ref, activation_grad)
{
    SEED();
    static const char *names[4] = { "relu dx", "leaky_relu dx", "tanh dx", "sigmoid dx" };
    int n = 35;
    for (int kind = 0; kind < 4; kind++) {
        /* |x| >= 0.1 keeps relu/leaky 1e5 steps away from their kink. */
        struct act_op o = { kind, n, 0.07, rnd_away0(n, 0.1, 4.0) };
        double *dy = rnd(n, -1, 1);
        struct proj pj = { act_wrap, &o, dy, zeros(n), (size_t)n };
        double *dx0 = rnd(n, -1, 1), *dx = copy(dx0, n);
        switch (kind) {
        case 0: ref_relu_bwd(n, o.x, dy, dx); break;
        case 1: ref_leaky_relu_bwd(n, o.slope, o.x, dy, dx); break;
        case 2: ref_tanh_bwd(n, o.x, dy, dx); break;
        default: ref_sigmoid_bwd(n, o.x, dy, dx); break;
        }
        /* relu/leaky are locally linear (TOL_LIN would do); tanh/sigmoid
         * need TOL_SMOOTH; one tolerance for the loop. */
        EXPECT_GRAD(names[kind], proj_loss, &pj, o.x, n, dx0, dx, TOL_SMOOTH);
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

/* ---- pooling ---- */

struct pool_op {
    struct ref_pool p;
    int max;
    double *x;
};

static void pool_wrap(void *v, double *y)
{
    struct pool_op *o = v;
    if (o->max)
        ref_max_pool2d_fwd(&o->p, o->x, y);
    else
        ref_avg_pool2d_fwd(&o->p, o->x, y);
}

/* Distinct values 0.01 apart in random order: no ties within 1e-6 steps. */
static double *rnd_distinct(size_t n)
{
    double *a = zeros(n);
    for (size_t i = 0; i < n; i++)
        a[i] = 0.01 * (double)i - 1.0;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)irand((int)i + 1);
        double t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
    return a;
}

static void pool_grad_case(const char *name, struct ref_pool p, int max)
{
    int P, Q;
    ref_pool2d_out_size(&p, &P, &Q);
    size_t nx = (size_t)p.N * p.C * p.H * p.W, ny = (size_t)p.N * p.C * P * Q;
    struct pool_op o = { p, max, rnd_distinct(nx) };
    double *dy = rnd(ny, -1, 1);
    struct proj pj = { pool_wrap, &o, dy, zeros(ny), ny };
    double *dx0 = rnd(nx, -1, 1), *dx = copy(dx0, nx);
    if (max)
        ref_max_pool2d_bwd(&p, o.x, dy, dx);
    else
        ref_avg_pool2d_bwd(&p, dy, dx);
    /* TOL_LIN: avg is linear; max is linear away from ties. */
    EXPECT_GRAD(name, proj_loss, &pj, o.x, nx, dx0, dx, TOL_LIN);
}

Test(ref, pool_grad)
{
    SEED();
    struct ref_pool a = { 2, 3, 5, 7, 2, 2, 0 };
    pool_grad_case("max_pool 2x2 dx", a, 1);
    struct ref_pool b = { 1, 2, 6, 5, 3, 2, 1 };
    pool_grad_case("max_pool k3s2p1 dx", b, 1);
    pool_grad_case("avg_pool 2x2 dx", a, 0);
    struct ref_pool c = { 5, 1, 5, 7, 3, 2, 1 };
    pool_grad_case("avg_pool k3s2p1 dx", c, 0);
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

/* ---- upsample ---- */

struct resize_op {
    struct ref_resize p;
    int bilinear;
    double *x;
};

static void resize_wrap(void *v, double *y)
{
    struct resize_op *o = v;
    if (o->bilinear)
        ref_upsample_bilinear_fwd(&o->p, o->x, y);
    else
        ref_upsample_nearest_fwd(&o->p, o->x, y);
}

static void resize_grad_case(const char *name, struct ref_resize p, int bilinear)
{
    size_t nx = (size_t)p.N * p.C * p.H * p.W, ny = (size_t)p.N * p.C * p.OH * p.OW;
    struct resize_op o = { p, bilinear, rnd(nx, -1, 1) };
    double *dy = rnd(ny, -1, 1);
    struct proj pj = { resize_wrap, &o, dy, zeros(ny), ny };
    double *dx0 = rnd(nx, -1, 1), *dx = copy(dx0, nx);
    if (bilinear)
        ref_upsample_bilinear_bwd(&p, dy, dx);
    else
        ref_upsample_nearest_bwd(&p, dy, dx);
    /* TOL_LIN: resampling is linear in x. */
    EXPECT_GRAD(name, proj_loss, &pj, o.x, nx, dx0, dx, TOL_LIN);
}

Test(ref, upsample_grad)
{
    SEED();
    struct ref_resize a = { 2, 3, 3, 5, 7, 4 };
    resize_grad_case("nearest 3x5->7x4 dx", a, 0);
    resize_grad_case("bilinear 3x5->7x4 dx", a, 1);
    struct ref_resize b = { 1, 2, 4, 3, 8, 9 };
    resize_grad_case("nearest 4x3->8x9 dx", b, 0);
    resize_grad_case("bilinear 4x3->8x9 dx", b, 1);
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

/* ---- concat, add, mul, scale ---- */

struct concat_op {
    int N, C1, C2, H, W;
    double *a, *b;
};

static void concat_wrap(void *v, double *y)
{
    struct concat_op *o = v;
    ref_concat_fwd(o->N, o->C1, o->C2, o->H, o->W, o->a, o->b, y);
}

Test(ref, concat_grad)
{
    SEED();
    struct concat_op o = { 2, 2, 3, 3, 5, NULL, NULL };
    size_t na = 2 * 2 * 15, nb = 2 * 3 * 15, ny = na + nb;
    o.a = rnd(na, -1, 1);
    o.b = rnd(nb, -1, 1);
    double *dy = rnd(ny, -1, 1);
    struct proj pj = { concat_wrap, &o, dy, zeros(ny), ny };
    double *da0 = rnd(na, -1, 1), *db0 = rnd(nb, -1, 1);
    double *da = copy(da0, na), *db = copy(db0, nb);
    ref_concat_bwd(2, 2, 3, 3, 5, dy, da, db);
    /* TOL_LIN: concat is linear. */
    EXPECT_GRAD("concat da", proj_loss, &pj, o.a, na, da0, da, TOL_LIN);
    EXPECT_GRAD("concat db", proj_loss, &pj, o.b, nb, db0, db, TOL_LIN);
    concat_wrap(&o, pj.y);
    cr_expect(pj.y[30] == o.b[0] && pj.y[29] == o.a[29] && pj.y[75] == o.a[30],
              "channel layout of concat");
}

struct ew_op {
    int kind, n;
    double alpha, *a, *b;
};

static void ew_wrap(void *v, double *y)
{
    struct ew_op *o = v;
    if (o->kind == 0)
        ref_add_fwd(o->n, o->a, o->b, y);
    else if (o->kind == 1)
        ref_mul_fwd(o->n, o->a, o->b, y);
    else
        ref_scale_fwd(o->n, o->alpha, o->a, y);
}

Test(ref, elementwise_grad)
{
    SEED();
    static const char *names[3][2] = { { "add da", "add db" },
                                       { "mul da", "mul db" },
                                       { "scale dx", "" } };
    int n = 23;
    for (int kind = 0; kind < 3; kind++) {
        struct ew_op o = { kind, n, -1.7, rnd(n, -2, 2), rnd(n, -2, 2) };
        double *dy = rnd(n, -1, 1);
        struct proj pj = { ew_wrap, &o, dy, zeros(n), (size_t)n };
        double *da0 = rnd(n, -1, 1), *db0 = rnd(n, -1, 1);
        double *da = copy(da0, n), *db = copy(db0, n);
        if (kind == 0)
            ref_add_bwd(n, dy, da, db);
        else if (kind == 1)
            ref_mul_bwd(n, o.a, o.b, dy, da, db);
        else
            ref_scale_bwd(n, o.alpha, dy, da);
        /* TOL_LIN: linear in each argument separately. */
        EXPECT_GRAD(names[kind][0], proj_loss, &pj, o.a, n, da0, da, TOL_LIN);
        if (kind < 2)
            EXPECT_GRAD(names[kind][1], proj_loss, &pj, o.b, n, db0, db, TOL_LIN);
    }
}

/* ---- losses ---- */

struct seg_op {
    struct ref_seg p;
    double *logits, *weight, scale;
    int *target;
};

static double ce_loss(void *v)
{
    struct seg_op *o = v;
    double s, c;
    ref_softmax_ce_fwd(&o->p, o->logits, o->target, o->weight, &s, &c);
    return o->scale * s;
}

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

static void ce_grad_case(const char *name, struct ref_seg p, int weighted)
{
    size_t nl = (size_t)p.N * p.C * p.H * p.W;
    struct seg_op o = { p, rnd(nl, -3, 3), weighted ? rnd(p.C, 0.2, 2.0) : NULL,
                        0.0, seg_targets(&p) };
    double s, cnt;
    ref_softmax_ce_fwd(&p, o.logits, o.target, o.weight, &s, &cnt);
    cr_assert(cnt > 0);
    o.scale = 1.0 / cnt;
    double *g0 = rnd(nl, -1, 1), *g = copy(g0, nl);
    ref_softmax_ce_bwd(&p, o.logits, o.target, o.weight, o.scale, g);
    /* TOL_SMOOTH: log-softmax is smooth, nonlinear. */
    EXPECT_GRAD(name, ce_loss, &o, o.logits, nl, g0, g, TOL_SMOOTH);
}

Test(ref, softmax_ce_grad)
{
    SEED();
    struct ref_seg a = { 2, 4, 3, 5, -100 };
    ce_grad_case("ce weighted dlogits", a, 1);
    struct ref_seg b = { 5, 3, 1, 3, 1 };
    ce_grad_case("ce plain N=5 ignore=1 dlogits", b, 0);
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

struct bce_op {
    int n;
    double *x, *t, scale;
    int kind; /* 0 bce, 1 mse, 2 l1 */
};

static double pointwise_loss(void *v)
{
    struct bce_op *o = v;
    double s, c;
    if (o->kind == 0)
        ref_bce_logits_fwd(o->n, o->x, o->t, &s, &c);
    else if (o->kind == 1)
        ref_mse_fwd(o->n, o->x, o->t, &s, &c);
    else
        ref_l1_fwd(o->n, o->x, o->t, &s, &c);
    return o->scale * s;
}

Test(ref, pointwise_loss_grad)
{
    SEED();
    static const char *names[3] = { "bce_logits dx", "mse dx", "l1 dx" };
    int n = 35;
    for (int kind = 0; kind < 3; kind++) {
        double *t = rnd(n, kind == 0 ? 0.0 : -1.0, 1.0);
        double *x = zeros(n);
        if (kind == 2) {
            /* |x - t| >= 0.1: away from the L1 kink. */
            double *d = rnd_away0(n, 0.1, 2.0);
            for (int i = 0; i < n; i++)
                x[i] = t[i] + d[i];
        } else {
            double *r = rnd(n, -4, 4);
            memcpy(x, r, n * sizeof *x);
        }
        struct bce_op o = { n, x, t, 1.0 / n, kind };
        double *g0 = rnd(n, -1, 1), *g = copy(g0, n);
        if (kind == 0)
            ref_bce_logits_bwd(n, x, t, o.scale, g);
        else if (kind == 1)
            ref_mse_bwd(n, x, t, o.scale, g);
        else
            ref_l1_bwd(n, x, t, o.scale, g);
        /* bce: TOL_SMOOTH (smooth, nonlinear); mse quadratic and l1 locally
         * linear are exact for central differences, TOL_SMOOTH is loose. */
        EXPECT_GRAD(names[kind], pointwise_loss, &o, x, n, g0, g, TOL_SMOOTH);
    }
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

Test(ref, dice_grad)
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
