/* batch_norm and group_norm (src/ops/norm.c) against the double references of
 * tests/ref/ref_norm.c, on both load paths: fixed and random shapes (odd sizes, 1x1
 * spatial, C = 1, 3, 5, 7, 13, batch 1 and 5, segments longer than one reduction
 * block), outputs pre-filled with NaN, gradients pre-filled with random values (the +=
 * rule), flat tensors at unaligned offsets with guard elements, padding channels 0.
 * Then determinism: group_norm's dgamma/dbeta for a batch of 8 split as 8, 4+4, 3+3+2
 * and 1x8 (bitwise), batch_norm's bits on a second run and with chunked bindings; and
 * the refusal of bad shapes.
 *
 * Tolerances. Every statistic is a float sum over L values: L = N*H*W per channel for
 * batch_norm, C/G*H*W per (sample, group) for group_norm; dgamma/dbeta sum N*H*W values
 * for both. No value passes through more than d = L/64 + Cg + 10 additions on its way
 * into a sum (an invocation adds at most L/WG of a block's pixels in sequence, WG >= 64,
 * then a tree of log2(WG) levels, the blocks and the Cg channels of a group in sequence;
 * dgamma/dbeta: + N for the samples), so a sum is off by at most d * u * sum |terms|,
 * u = 2^-24. Each check derives its bound from that; measured errors sit 5x (invstd,
 * running var: a few roundings, no long sum) to 1000x under them (NORM_REPORT=1 prints
 * the worst error / bound of every check). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ops/ops.h"
#include "ref/ref.h"

#define U 0x1p-24
#define EPS 1e-5f
#define MOMENTUM 0.1f

struct shape {
    uint32_t n, c, h, w, g;
};

/* the fixed sweep; random shapes are added per test */
static const struct shape fixed[] = {
    { 1, 1, 1, 1, 1 },   { 5, 3, 1, 1, 3 },    { 1, 5, 3, 7, 5 },   { 5, 7, 5, 3, 7 },
    { 2, 13, 9, 11, 13 }, { 5, 6, 7, 9, 3 },   { 1, 12, 17, 19, 4 }, { 3, 16, 8, 8, 2 },
    { 5, 13, 11, 13, 1 }, { 2, 5, 23, 29, 5 },
    /* more than one 4096-pixel block per channel (batch_norm) and per sample */
    { 2, 5, 47, 53, 5 },  { 1, 6, 67, 71, 3 },
};
#define NFIXED (sizeof(fixed) / sizeof(fixed[0]))
#define NRAND 3

static struct shape shape_at(size_t i)
{
    if (i < NFIXED)
        return fixed[i];
    static const uint32_t cs[] = { 1, 3, 5, 6, 7, 8, 12, 13 };
    struct shape s = { test_rand_range(1, 5), cs[test_rand_range(0, 7)], test_rand_range(1, 15),
                       test_rand_range(1, 15), 1 };
    do
        s.g = test_rand_range(1, s.c);
    while (s.c % s.g);
    return s;
}

static double sum_depth(double L, double Cg)
{
    return ceil(L / 64) + Cg + 10;
}

/* ---- checks --------------------------------------------------------------------- */

static bool report;

/* |got - ref| <= tol[i] per element (tol NULL: tol1 for all) */
static void check_tol(const char *what, const struct shape *s, const float *got,
                      const double *ref, const double *tol, double tol1, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double t = tol ? tol[i] : tol1, err = fabs((double)got[i] - ref[i]);
        if (!(err <= t))
            cr_assert_fail("%s (%u,%u,%u,%u) G=%u: element %zu of %zu: got %.9g, reference "
                           "%.9g (|diff| %.3g > bound %.3g)", what, s->n, s->c, s->h, s->w,
                           s->g, i, n, got[i], ref[i], err, t);
        if (err / t > worst)
            worst = err / t;
    }
    if (report)
        cr_log_warn("%s (%u,%u,%u,%u) G=%u: worst error / bound %.3g", what, s->n, s->c, s->h,
                    s->w, s->g, worst);
}

static double max_abs(const double *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i]));
    return m;
}

/* ---- data ----------------------------------------------------------------------- */

struct data {
    struct shape s;
    size_t nx;                   /* N*C*H*W */
    float *x, *gamma, *beta, *dy, *dx0, *dg0, *db0, *rm, *rv;
    double *xd, *gd, *bd, *dyd;
};

/* x with a per-channel offset and scale, so that the mean matters */
static void data_init(struct data *d, const struct shape *s)
{
    size_t hw = (size_t)s->h * s->w;
    d->s = *s;
    d->nx = (size_t)s->n * s->c * hw;
    d->x = malloc((d->nx ? d->nx : 1) * 4);
    for (uint32_t c = 0; c < s->c; c++) {
        float o = test_rand_uniform(-3, 3), k = test_rand_uniform(0.5f, 2);
        for (uint32_t n = 0; n < s->n; n++)
            for (size_t i = 0; i < hw; i++)
                d->x[((size_t)n * s->c + c) * hw + i] = o + k * test_rand_uniform(-2, 2);
    }
    d->gamma = test_rand_floats(s->c, 0.5f, 1.5f);
    for (uint32_t c = 0; c < s->c; c += 2)
        d->gamma[c] = -d->gamma[c];
    d->beta = test_rand_floats(s->c, -1, 1);
    d->dy = test_rand_floats(d->nx, -1, 1);
    d->dx0 = test_rand_floats(d->nx, -1, 1);
    d->dg0 = test_rand_floats(s->c, -1, 1);
    d->db0 = test_rand_floats(s->c, -1, 1);
    d->rm = test_rand_floats(s->c, -1, 1);
    d->rv = test_rand_floats(s->c, 0.5f, 2);
    d->xd = test_to_double(d->x, d->nx);
    d->gd = test_to_double(d->gamma, s->c);
    d->bd = test_to_double(d->beta, s->c);
    d->dyd = test_to_double(d->dy, d->nx);
}

static void data_free(struct data *d)
{
    free(d->x), free(d->gamma), free(d->beta), free(d->dy), free(d->dx0), free(d->dg0);
    free(d->db0), free(d->rm), free(d->rv), free(d->xd), free(d->gd), free(d->bd);
    free(d->dyd);
}

static float *nans(size_t n)
{
    float *a = malloc((n ? n : 1) * 4);
    for (size_t i = 0; i < n; i++)
        a[i] = NAN;
    return a;
}

/* a flat tensor at a random unaligned offset, with guard elements (data NULL: NaN) */
static struct vka_tensor flat(struct vka_ctx *ctx, size_t n, const float *data)
{
    float *tmp = data ? NULL : nans(n);
    struct vka_tensor t = test_flat_guarded(ctx, test_rand_range(0, 7), n, data ? data : tmp);
    free(tmp);
    return t;
}

static float *read_flat(const struct vka_tensor *t)
{
    float *a = malloc((vka_tensor_stored(t) ? vka_tensor_stored(t) : 1) * 4);
    test_flat_check_guard(t, a);
    return a;
}

static float *read_act(const struct vka_tensor *t)
{
    float *a = malloc((vka_tensor_numel(t) ? vka_tensor_numel(t) : 1) * 4);
    test_act_read(t, a);
    return a;
}

static double *dalloc(size_t n)
{
    return calloc(n ? n : 1, sizeof(double));
}

static struct vka_ctx *ctx_for(const char *load)
{
    setenv("VKACCUM_LOAD_PATH", load, 1);
    report = getenv("NORM_REPORT") != NULL;
    struct vka_ctx *ctx = test_ctx();
    cr_assert_eq(ctx->profile.load, !strcmp(load, "texel") ? VKA_LOAD_TEXEL : VKA_LOAD_STORAGE);
    return ctx;
}

/* ---- forward -------------------------------------------------------------------- */

/* y against the reference: y = (x - mean) * istd * g + b with the mean off by d u
 * mean|x| and istd by (d/2 + 4) u relative (var's sum of squares, sqrt, division); the
 * affine step rounds 3 times. */
static double y_bound(const struct data *d, const double *istd, size_t nstat, double dd,
                      const double *y, const double *mean)
{
    double xmax = max_abs(d->xd, d->nx), dev = xmax + max_abs(mean, nstat);
    double g = fmax(max_abs(d->gd, d->s.c), 1), is = max_abs(istd, nstat);
    return g * is * (dd * U * xmax + dev * (dd / 2 + 4) * U) + 4 * U * max_abs(y, d->nx);
}

/* mean: d u mean|x| + u |mean|; istd: (d/2 + 4) u relative */
static void stat_bounds(size_t nstat, double dd, double xmax, const double *mean,
                        const double *istd, double *tm, double *ti)
{
    for (size_t i = 0; i < nstat; i++) {
        tm[i] = dd * U * xmax + U * fabs(mean[i]);
        ti[i] = (dd / 2 + 4) * U * istd[i];
    }
}

static void check_bn_fwd(const char *load)
{
    struct vka_ctx *ctx = ctx_for(load);
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    for (size_t k = 0; k < NFIXED + NRAND; k++) {
        struct shape s = shape_at(k);
        if ((uint64_t)s.n * s.h * s.w < 2)
            continue; /* training needs two values per channel: see refusals */
        struct data d;
        data_init(&d, &s);
        bool affine = k % 3 != 1, state = k % 4 != 3;
        struct vka_tensor tx = test_act(ctx, s.n, s.c, s.h, s.w, d.x);
        struct vka_tensor ty = test_act(ctx, s.n, s.c, s.h, s.w, NULL);
        struct vka_tensor tg = flat(ctx, s.c, d.gamma), tb = flat(ctx, s.c, d.beta);
        struct vka_tensor tm = flat(ctx, s.c, NULL), ti = flat(ctx, s.c, NULL);
        struct vka_tensor trm = flat(ctx, s.c, d.rm), trv = flat(ctx, s.c, d.rv);
        struct vka_op_args a = {
            .p.norm = { .eps = EPS, .momentum = MOMENTUM, .training = true },
            .x = { &tx, affine ? &tg : NULL, affine ? &tb : NULL }, .y = &ty,
            .saved = { &tm, &ti }, .state = { state ? &trm : NULL, state ? &trv : NULL },
        };
        cr_assert_eq(vka_cmd_begin(cmd), 0);
        cr_assert_eq(vka_batch_norm_fwd(cmd, &a), 0, "%s", vka_last_error());
        test_run(cmd);

        struct ref_bn p = { (int)s.n, (int)s.c, (int)s.h, (int)s.w, EPS, MOMENTUM };
        double *y = dalloc(d.nx), *mean = dalloc(s.c), *istd = dalloc(s.c);
        double *rm = test_to_double(d.rm, s.c), *rv = test_to_double(d.rv, s.c);
        ref_batch_norm_fwd_train(&p, d.xd, affine ? d.gd : NULL, affine ? d.bd : NULL, rm, rv,
                                 mean, istd, y);
        double dd = sum_depth((double)s.n * s.h * s.w, 1);
        float *gy = read_act(&ty), *gm = read_flat(&tm), *gi = read_flat(&ti);
        float *grm = read_flat(&trm), *grv = read_flat(&trv);
        check_tol("batch_norm y", &s, gy, y, NULL, y_bound(&d, istd, s.c, dd, y, mean), d.nx);
        double *tmb = dalloc(s.c), *tib = dalloc(s.c);
        stat_bounds(s.c, dd, max_abs(d.xd, d.nx), mean, istd, tmb, tib);
        check_tol("batch_norm saved mean", &s, gm, mean, tmb, 0, s.c);
        check_tol("batch_norm saved invstd", &s, gi, istd, tib, 0, s.c);
        if (state) {
            /* (1-m) r + m v: 3 roundings, plus m times the statistic's bound; var's
             * relative bound is 2 (d/2 + 4) u, twice istd's */
            for (uint32_t c = 0; c < s.c; c++) {
                tmb[c] = MOMENTUM * tmb[c] + 3 * U * (fabs(rm[c]) + fabs(d.rm[c]));
                tib[c] = 2 * MOMENTUM * tib[c] / istd[c] * fabs(rv[c]) +
                         5 * U * (fabs(rv[c]) + fabs(d.rv[c]));
            }
            check_tol("batch_norm running mean", &s, grm, rm, tmb, 0, s.c);
            check_tol("batch_norm running var", &s, grv, rv, tib, 0, s.c);
        } else {
            cr_assert_eq(memcmp(grm, d.rm, s.c * 4), 0, "running mean changed");
            cr_assert_eq(memcmp(grv, d.rv, s.c * 4), 0, "running var changed");
        }
        free(gy), free(gm), free(gi), free(grm), free(grv), free(tmb), free(tib);
        free(y), free(mean), free(istd), free(rm), free(rv);
        vka_tensor_destroy(&tx), vka_tensor_destroy(&ty), vka_tensor_destroy(&tg);
        vka_tensor_destroy(&tb), vka_tensor_destroy(&tm), vka_tensor_destroy(&ti);
        vka_tensor_destroy(&trm), vka_tensor_destroy(&trv);
        data_free(&d);
    }
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

static void check_gn_fwd(const char *load)
{
    struct vka_ctx *ctx = ctx_for(load);
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    for (size_t k = 0; k < NFIXED + NRAND; k++) {
        struct shape s = shape_at(k);
        struct data d;
        data_init(&d, &s);
        bool affine = k % 3 != 1;
        size_t ns = (size_t)s.n * s.g;
        struct vka_tensor tx = test_act(ctx, s.n, s.c, s.h, s.w, d.x);
        struct vka_tensor ty = test_act(ctx, s.n, s.c, s.h, s.w, NULL);
        struct vka_tensor tg = flat(ctx, s.c, d.gamma), tb = flat(ctx, s.c, d.beta);
        struct vka_tensor tm = flat(ctx, ns, NULL), ti = flat(ctx, ns, NULL);
        struct vka_op_args a = {
            .p.norm = { .groups = s.g, .eps = EPS },
            .x = { &tx, affine ? &tg : NULL, affine ? &tb : NULL }, .y = &ty,
            .saved = { &tm, &ti },
        };
        cr_assert_eq(vka_cmd_begin(cmd), 0);
        cr_assert_eq(vka_group_norm_fwd(cmd, &a), 0, "%s", vka_last_error());
        test_run(cmd);

        struct ref_gn p = { (int)s.n, (int)s.c, (int)s.h, (int)s.w, (int)s.g, EPS };
        double *y = dalloc(d.nx), *mean = dalloc(ns), *istd = dalloc(ns);
        ref_group_norm_fwd(&p, d.xd, affine ? d.gd : NULL, affine ? d.bd : NULL, mean, istd, y);
        double dd = sum_depth((double)s.c / s.g * s.h * s.w, s.c / s.g);
        float *gy = read_act(&ty), *gm = read_flat(&tm), *gi = read_flat(&ti);
        check_tol("group_norm y", &s, gy, y, NULL, y_bound(&d, istd, ns, dd, y, mean), d.nx);
        double *tmb = dalloc(ns), *tib = dalloc(ns);
        stat_bounds(ns, dd, max_abs(d.xd, d.nx), mean, istd, tmb, tib);
        check_tol("group_norm saved mean", &s, gm, mean, tmb, 0, ns);
        check_tol("group_norm saved invstd", &s, gi, istd, tib, 0, ns);
        free(gy), free(gm), free(gi), free(tmb), free(tib), free(y), free(mean), free(istd);
        vka_tensor_destroy(&tx), vka_tensor_destroy(&ty), vka_tensor_destroy(&tg);
        vka_tensor_destroy(&tb), vka_tensor_destroy(&tm), vka_tensor_destroy(&ti);
        data_free(&d);
    }
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

/* ---- backward ------------------------------------------------------------------- */

/* dx, dgamma, dbeta against the reference, given the same mean/istd (rounded to float)
 * on both sides. which: bit 0 dx, 1 dgamma, 2 dbeta. */
struct bwd_case {
    bool gn, eval, affine;
    unsigned which;
};

static void run_bwd(struct vka_ctx *ctx, struct vka_cmd *cmd, const struct bwd_case *bc,
                    const struct shape *s, struct data *d)
{
    size_t ns = bc->gn ? (size_t)s->n * s->g : s->c;
    uint32_t K = bc->gn ? s->g : s->c;
    /* statistics: the reference's, rounded to float (eval: random running ones) */
    double *mean = dalloc(ns), *istd = dalloc(ns), *y = dalloc(d->nx);
    float *fm = malloc(ns * 4), *fi = malloc(ns * 4);
    if (bc->gn) {
        struct ref_gn p = { (int)s->n, (int)s->c, (int)s->h, (int)s->w, (int)s->g, EPS };
        ref_group_norm_fwd(&p, d->xd, NULL, NULL, mean, istd, y);
    } else if (!bc->eval) {
        struct ref_bn p = { (int)s->n, (int)s->c, (int)s->h, (int)s->w, EPS, MOMENTUM };
        ref_batch_norm_fwd_train(&p, d->xd, NULL, NULL, NULL, NULL, mean, istd, y);
    }
    for (size_t i = 0; i < ns; i++) {
        fm[i] = bc->eval ? d->rm[i] : (float)mean[i];
        fi[i] = bc->eval ? d->rv[i] : (float)istd[i];
        mean[i] = fm[i];
        /* the kernels compute 1/sqrt(var + eps) in float */
        istd[i] = bc->eval ? 1.0 / sqrt((double)(d->rv[i] + EPS)) : fi[i];
    }
    bool wdx = bc->which & 1, wdg = bc->which & 2, wdb = bc->which & 4;
    struct vka_tensor tx = test_act(ctx, s->n, s->c, s->h, s->w, d->x);
    struct vka_tensor tdy = test_act(ctx, s->n, s->c, s->h, s->w, d->dy);
    struct vka_tensor tdx = test_act(ctx, s->n, s->c, s->h, s->w, d->dx0);
    struct vka_tensor tg = flat(ctx, s->c, d->gamma);
    struct vka_tensor tm = flat(ctx, ns, fm), ti = flat(ctx, ns, fi);
    struct vka_tensor tdg = flat(ctx, s->c, d->dg0), tdb = flat(ctx, s->c, d->db0);
    struct vka_op_args a = {
        .p.norm = { .groups = s->g, .eps = EPS, .momentum = MOMENTUM, .training = !bc->eval },
        .x = { &tx, bc->affine ? &tg : NULL, NULL }, .dy = &tdy,
        .dx = { wdx ? &tdx : NULL, wdg ? &tdg : NULL, wdb ? &tdb : NULL },
    };
    if (bc->eval) {
        a.state[0] = &tm;
        a.state[1] = &ti;
    } else {
        a.saved[0] = &tm;
        a.saved[1] = &ti;
    }
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    cr_assert_eq((bc->gn ? vka_group_norm_bwd : vka_batch_norm_bwd)(cmd, &a), 0, "%s",
                 vka_last_error());
    test_run(cmd);

    double *dx = test_to_double(d->dx0, d->nx), *dg = test_to_double(d->dg0, s->c);
    double *db = test_to_double(d->db0, s->c);
    const double *gamma = bc->affine ? d->gd : NULL;
    if (bc->gn) {
        struct ref_gn p = { (int)s->n, (int)s->c, (int)s->h, (int)s->w, (int)s->g, EPS };
        ref_group_norm_bwd(&p, d->xd, gamma, mean, istd, d->dyd, dx, dg, db);
    } else if (!bc->eval) {
        struct ref_bn p = { (int)s->n, (int)s->c, (int)s->h, (int)s->w, EPS, MOMENTUM };
        ref_batch_norm_bwd(&p, d->xd, gamma, mean, istd, d->dyd, dx, dg, db);
    } else {
        /* eval: the statistics are constants, dx = gamma * istd * dy */
        size_t hw = (size_t)s->h * s->w;
        for (size_t i = 0; i < d->nx; i++) {
            size_t c = i / hw % s->c;
            double xh = (d->xd[i] - mean[c]) * istd[c];
            dx[i] += (gamma ? gamma[c] : 1) * istd[c] * d->dyd[i];
            dg[c] += d->dyd[i] * xh;
            db[c] += d->dyd[i];
        }
    }
    /* bounds: sums of |dy xhat| and |dy| per channel, and the scales of dx's terms */
    size_t hw = (size_t)s->h * s->w;
    double *sxh = dalloc(s->c), *sdy = dalloc(s->c), gdy = 0, xh = 0, is = max_abs(istd, ns);
    for (size_t i = 0; i < d->nx; i++) {
        size_t n = i / (hw * s->c), c = i / hw % s->c, st = bc->gn ? n * K + c / (s->c / K) : c;
        double v = (d->xd[i] - mean[st]) * istd[st];
        sxh[c] += fabs(d->dyd[i] * v);
        sdy[c] += fabs(d->dyd[i]);
        gdy = fmax(gdy, fabs((gamma ? gamma[c] : 1) * d->dyd[i]));
        xh = fmax(xh, fabs(v));
    }
    double dd = bc->gn ? sum_depth((double)s->c / s->g * hw, s->c / s->g)
                       : sum_depth((double)s->n * hw, 1);
    double dp = sum_depth((double)s->n * hw, 1) + s->n;
    if (wdx) {
        /* dx = istd (g dy - mean(g dy) - xhat mean(g dy xhat)): the two means are off by
         * d u max|g dy| (times 1 + |xhat|), xhat by 3 u |xhat|, then a dozen roundings of
         * terms up to istd |g dy| (1 + |xhat|)^2, and the += */
        double t = is * gdy * (1 + xh) * (1 + xh) * (dd + 12) * U;
        float *got = read_act(&tdx);
        double *tol = dalloc(d->nx);
        for (size_t i = 0; i < d->nx; i++)
            tol[i] = t + 2 * U * fabs(dx[i]);
        check_tol(bc->gn ? "group_norm dx" : "batch_norm dx", s, got, dx, tol, 0, d->nx);
        free(got), free(tol);
    } else {
        float *got = read_act(&tdx);
        cr_assert_eq(memcmp(got, d->dx0, d->nx * 4), 0, "dx written though not given");
        free(got);
    }
    double *tol = dalloc(s->c);
    if (wdg) {
        /* a sum over N*H*W of dy * xhat, xhat off by 3 u, and the += */
        float *got = read_flat(&tdg);
        for (uint32_t c = 0; c < s->c; c++)
            tol[c] = (dp + 4) * U * sxh[c] + 2 * U * fabs(dg[c]);
        check_tol(bc->gn ? "group_norm dgamma" : "batch_norm dgamma", s, got, dg, tol, 0, s->c);
        free(got);
    }
    if (wdb) {
        float *got = read_flat(&tdb);
        for (uint32_t c = 0; c < s->c; c++)
            tol[c] = dp * U * sdy[c] + 2 * U * fabs(db[c]);
        check_tol(bc->gn ? "group_norm dbeta" : "batch_norm dbeta", s, got, db, tol, 0, s->c);
        free(got);
    }
    /* what was not asked for is untouched */
    float *g = read_flat(&tdg), *b = read_flat(&tdb);
    if (!wdg)
        cr_assert_eq(memcmp(g, d->dg0, s->c * 4), 0, "dgamma written though not given");
    if (!wdb)
        cr_assert_eq(memcmp(b, d->db0, s->c * 4), 0, "dbeta written though not given");
    free(g), free(b), free(tol), free(sxh), free(sdy);
    free(dx), free(dg), free(db), free(mean), free(istd), free(y), free(fm), free(fi);
    vka_tensor_destroy(&tx), vka_tensor_destroy(&tdy), vka_tensor_destroy(&tdx);
    vka_tensor_destroy(&tg), vka_tensor_destroy(&tm), vka_tensor_destroy(&ti);
    vka_tensor_destroy(&tdg), vka_tensor_destroy(&tdb);
}

static void check_bwd(const char *load, bool gn, bool eval)
{
    struct vka_ctx *ctx = ctx_for(load);
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    for (size_t k = 0; k < NFIXED + NRAND; k++) {
        struct shape s = shape_at(k);
        if (!gn && !eval && (uint64_t)s.n * s.h * s.w < 2)
            continue;
        struct data d;
        data_init(&d, &s);
        /* every gradient most of the time; sometimes only some, or no gamma */
        static const unsigned which[] = { 7, 7, 1, 6, 7, 3, 5, 7 };
        struct bwd_case bc = { gn, eval, k % 3 != 1, which[k % 8] };
        run_bwd(ctx, cmd, &bc, &s, &d);
        data_free(&d);
    }
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

/* eval fwd: y from the running statistics; saved and state untouched */
static void check_bn_eval(const char *load)
{
    struct vka_ctx *ctx = ctx_for(load);
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    for (size_t k = 0; k < NFIXED + NRAND; k++) {
        struct shape s = shape_at(k);
        struct data d;
        data_init(&d, &s);
        bool affine = k % 3 != 1;
        struct vka_tensor tx = test_act(ctx, s.n, s.c, s.h, s.w, d.x);
        struct vka_tensor ty = test_act(ctx, s.n, s.c, s.h, s.w, NULL);
        struct vka_tensor tg = flat(ctx, s.c, d.gamma), tb = flat(ctx, s.c, d.beta);
        struct vka_tensor trm = flat(ctx, s.c, d.rm), trv = flat(ctx, s.c, d.rv);
        struct vka_op_args a = {
            .p.norm = { .eps = EPS, .momentum = MOMENTUM, .training = false },
            .x = { &tx, affine ? &tg : NULL, affine ? &tb : NULL }, .y = &ty,
            .state = { &trm, &trv },
        };
        cr_assert_eq(vka_cmd_begin(cmd), 0);
        cr_assert_eq(vka_batch_norm_fwd(cmd, &a), 0, "%s", vka_last_error());
        test_run(cmd);
        struct ref_bn p = { (int)s.n, (int)s.c, (int)s.h, (int)s.w, EPS, MOMENTUM };
        double *y = dalloc(d.nx), *rm = test_to_double(d.rm, s.c), *rv = dalloc(s.c);
        for (uint32_t c = 0; c < s.c; c++)
            rv[c] = (double)(d.rv[c] + EPS) - EPS; /* var + eps rounds once in float */
        ref_batch_norm_fwd_eval(&p, d.xd, affine ? d.gd : NULL, affine ? d.bd : NULL, rm, rv, y);
        /* no sums: x - mean, sqrt, division, product with gamma, + beta: 6 roundings of
         * terms up to |x - mean| istd |gamma| + |beta| */
        double xmax = max_abs(d.xd, d.nx) + 1, is = 1 / sqrt(0.5 + EPS);
        float *gy = read_act(&ty), *grm = read_flat(&trm), *grv = read_flat(&trv);
        check_tol("batch_norm eval y", &s, gy, y, NULL, 8 * U * (xmax * is * 1.5 + 1), d.nx);
        cr_assert_eq(memcmp(grm, d.rm, s.c * 4), 0, "eval changed the running mean");
        cr_assert_eq(memcmp(grv, d.rv, s.c * 4), 0, "eval changed the running var");
        free(gy), free(grm), free(grv), free(y), free(rm), free(rv);
        vka_tensor_destroy(&tx), vka_tensor_destroy(&ty), vka_tensor_destroy(&tg);
        vka_tensor_destroy(&tb), vka_tensor_destroy(&trm), vka_tensor_destroy(&trv);
        data_free(&d);
    }
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

/* ---- determinism ---------------------------------------------------------------- */

/* fwd then bwd (with the saved statistics fwd wrote) on one micro-batch: samples
 * [n0, n0 + s->n) of d, gradients into dg/db. Returns [y | saved0 | saved1 | dx] in
 * NCHW, and (batch_norm) the running statistics in rs[2 * C]. */
static float *run_both(struct vka_ctx *ctx, struct vka_cmd *cmd, bool gn, const struct data *d,
                       uint32_t n0, const struct shape *s, const struct vka_tensor *dg,
                       const struct vka_tensor *db, float *rs)
{
    size_t per = (size_t)s->c * s->h * s->w, nx = per * s->n;
    size_t ns = gn ? (size_t)s->n * s->g : s->c;
    struct vka_tensor tx = test_act(ctx, s->n, s->c, s->h, s->w, d->x + n0 * per);
    struct vka_tensor ty = test_act(ctx, s->n, s->c, s->h, s->w, NULL);
    struct vka_tensor tdy = test_act(ctx, s->n, s->c, s->h, s->w, d->dy + n0 * per);
    struct vka_tensor tdx = test_act(ctx, s->n, s->c, s->h, s->w, d->dx0 + n0 * per);
    struct vka_tensor tg = flat(ctx, s->c, d->gamma), tb = flat(ctx, s->c, d->beta);
    struct vka_tensor tm = flat(ctx, ns, NULL), ti = flat(ctx, ns, NULL);
    struct vka_tensor trm = flat(ctx, s->c, d->rm), trv = flat(ctx, s->c, d->rv);
    struct vka_op_args a = {
        .p.norm = { .groups = s->g, .eps = EPS, .momentum = MOMENTUM, .training = true },
        .x = { &tx, &tg, &tb }, .y = &ty, .saved = { &tm, &ti }, .dy = &tdy,
        .dx = { &tdx, dg, db },
    };
    if (!gn) {
        a.state[0] = &trm;
        a.state[1] = &trv;
    }
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    cr_assert_eq((gn ? vka_group_norm_fwd : vka_batch_norm_fwd)(cmd, &a), 0, "%s",
                 vka_last_error());
    cr_assert_eq((gn ? vka_group_norm_bwd : vka_batch_norm_bwd)(cmd, &a), 0, "%s",
                 vka_last_error());
    test_run(cmd);
    float *out = malloc((2 * nx + 2 * ns) * 4);
    test_act_read(&ty, out);
    test_flat_check_guard(&tm, out + nx);
    test_flat_check_guard(&ti, out + nx + ns);
    test_act_read(&tdx, out + nx + 2 * ns);
    if (rs) {
        test_flat_check_guard(&trm, rs);
        test_flat_check_guard(&trv, rs + s->c);
    }
    vka_tensor_destroy(&tx), vka_tensor_destroy(&ty), vka_tensor_destroy(&tdy);
    vka_tensor_destroy(&tdx), vka_tensor_destroy(&tg), vka_tensor_destroy(&tb);
    vka_tensor_destroy(&tm), vka_tensor_destroy(&ti), vka_tensor_destroy(&trm);
    vka_tensor_destroy(&trv);
    return out;
}

/* group_norm: a batch of 8 run as 8, 4+4, 3+3+2 and 1x8 micro-batches into the same
 * pre-filled dgamma/dbeta gives the same bits there, and in every sample's y, saved
 * statistics and dx. Cg = 2 puts two groups in one vec4; H*W = 4225 is two blocks. */
Test(norm, group_norm_microbatch_bits)
{
    test_seed("group_norm_microbatch_bits");
    struct vka_ctx *ctx = ctx_for("texel");
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    const struct shape full = { 8, 6, 65, 65, 3 };
    struct data d;
    data_init(&d, &full);
    static const uint32_t splits[4][9] = { { 8 }, { 4, 4 }, { 3, 3, 2 },
                                           { 1, 1, 1, 1, 1, 1, 1, 1 } };
    size_t per = (size_t)full.c * full.h * full.w, G = full.g, C = full.c;
    float *want = NULL, *want_p = NULL;
    for (int t = 0; t < 4; t++) {
        struct vka_tensor dg = flat(ctx, C, d.dg0), db = flat(ctx, C, d.db0);
        /* [y | mean | invstd | dx] of the whole batch, gathered per sample */
        float *all = malloc((2 * per * 8 + 2 * 8 * G) * 4), *par = malloc(2 * C * 4);
        uint32_t n0 = 0;
        for (const uint32_t *m = splits[t]; *m; n0 += *m++) {
            struct shape s = full;
            s.n = *m;
            float *o = run_both(ctx, cmd, true, &d, n0, &s, &dg, &db, NULL);
            size_t nx = per * s.n, ns = G * s.n;
            memcpy(all + n0 * per, o, nx * 4);
            memcpy(all + 8 * per + n0 * G, o + nx, ns * 4);
            memcpy(all + 8 * per + 8 * G + n0 * G, o + nx + ns, ns * 4);
            memcpy(all + 8 * per + 16 * G + n0 * per, o + nx + 2 * ns, nx * 4);
            free(o);
        }
        test_flat_check_guard(&dg, par);
        test_flat_check_guard(&db, par + C);
        if (!want) {
            want = all;
            want_p = par;
        } else {
            cr_assert_eq(memcmp(par, want_p, C * 4), 0, "dgamma differs for split %d", t);
            cr_assert_eq(memcmp(par + C, want_p + C, C * 4), 0, "dbeta differs for split %d", t);
            cr_assert_eq(memcmp(all, want, per * 8 * 4), 0, "y differs for split %d", t);
            cr_assert_eq(memcmp(all + 8 * per, want + 8 * per, 16 * G * 4), 0,
                         "saved statistics differ for split %d", t);
            cr_assert_eq(memcmp(all + 8 * per + 16 * G, want + 8 * per + 16 * G, per * 8 * 4),
                         0, "dx differs for split %d", t);
            free(all), free(par);
        }
        vka_tensor_destroy(&dg), vka_tensor_destroy(&db);
    }
    free(want), free(want_p);
    data_free(&d);
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

/* Both ops give the same bits on a second run and when every binding is cut into
 * chunks of about 4300 pixels (reductions are blocked by pixels, not by binding). */
Test(norm, same_bits_rerun_and_chunked)
{
    test_seed("same_bits_rerun_and_chunked");
    struct vka_ctx *ctx = ctx_for("storage");
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    for (int gn = 0; gn < 2; gn++) {
        const struct shape s = { 2, 5, 47, 53, 5 }; /* 2 blocks for batch_norm */
        struct data d;
        data_init(&d, &s);
        size_t n = (2 * (size_t)s.n * s.c * s.h * s.w + 2 * (gn ? s.n * s.g : s.c)) * 4;
        float *first = NULL, rs0[10], rs[10], par0[10], par[10]; /* 2 * C */
        uint64_t saved = ctx->profile.max_binding;
        for (int t = 0; t < 3; t++) {
            /* 136 KiB: 4343 pixels of 8 channels, one 4096-pixel block per dispatch */
            ctx->profile.max_binding = t == 2 ? 139264 : saved;
            struct vka_tensor dg = flat(ctx, s.c, d.dg0), db = flat(ctx, s.c, d.db0);
            float *o = run_both(ctx, cmd, gn, &d, 0, &s, &dg, &db, gn ? NULL : rs);
            test_flat_check_guard(&dg, par);
            test_flat_check_guard(&db, par + s.c);
            vka_tensor_destroy(&dg), vka_tensor_destroy(&db);
            if (!first) {
                first = o;
                memcpy(rs0, rs, sizeof(rs));
                memcpy(par0, par, sizeof(par));
                continue;
            }
            const char *how = t == 1 ? "on a second run" : "when chunked";
            cr_assert_eq(memcmp(o, first, n), 0, "%s: y, saved or dx differ %s",
                         gn ? "group_norm" : "batch_norm", how);
            cr_assert_eq(memcmp(par, par0, sizeof(par)), 0, "%s: dgamma/dbeta differ %s",
                         gn ? "group_norm" : "batch_norm", how);
            if (!gn)
                cr_assert_eq(memcmp(rs, rs0, sizeof(rs)), 0,
                             "batch_norm: running statistics differ %s", how);
            free(o);
        }
        ctx->profile.max_binding = saved;
        free(first);
        data_free(&d);
    }
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

/* ---- refusals -------------------------------------------------------------------- */

#define REFUSED(call, text)                                                               \
    do {                                                                                  \
        vka_clear_error();                                                                \
        cr_assert_eq((call), -EINVAL, "%s was accepted", #call);                          \
        cr_assert(strstr(vka_last_error(), text), "message \"%s\" lacks \"%s\"",          \
                  vka_last_error(), text);                                                \
    } while (0)

Test(norm, bad_shapes_are_refused)
{
    test_seed("bad_shapes_are_refused");
    struct vka_ctx *ctx = ctx_for("texel");
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    struct vka_tensor x = test_act(ctx, 2, 6, 3, 3, NULL), y = test_act(ctx, 2, 6, 3, 3, NULL);
    struct vka_tensor y2 = test_act(ctx, 2, 6, 3, 4, NULL), one = test_act(ctx, 1, 6, 1, 1, NULL);
    struct vka_tensor one_y = test_act(ctx, 1, 6, 1, 1, NULL);
    struct vka_tensor v6 = flat(ctx, 6, NULL), v5 = flat(ctx, 5, NULL), v4 = flat(ctx, 4, NULL);
    struct vka_tensor v6b = flat(ctx, 6, NULL), xf = flat(ctx, 108, NULL);
    uint32_t shape[4];
    cr_assert_eq(vka_cmd_begin(cmd), 0);

    struct vka_op_args bn = {
        .p.norm = { .eps = EPS, .momentum = MOMENTUM, .training = true },
        .x = { &x, &v6, &v6b }, .y = &y2, .saved = { &v6, &v6b },
    };
    REFUSED(vka_batch_norm_fwd(cmd, &bn), "batch_norm_fwd: y is (2,6,3,4)");
    bn.y = &y;
    bn.x[1] = &v5;
    REFUSED(vka_batch_norm_fwd(cmd, &bn), "batch_norm_fwd: gamma holds 5 floats, needs 6");
    REFUSED(vka_batch_norm_shape(&bn, shape), "batch_norm: gamma");
    bn.x[1] = &v6;
    bn.saved[1] = &v5;
    REFUSED(vka_batch_norm_fwd(cmd, &bn), "batch_norm_fwd: saved1 (invstd) holds 5");
    bn.saved[1] = &v6b;
    bn.x[0] = &xf;
    REFUSED(vka_batch_norm_fwd(cmd, &bn), "batch_norm_fwd: x is (108,1,1,1) flat");
    bn.x[0] = &one;
    bn.y = &one_y;
    REFUSED(vka_batch_norm_fwd(cmd, &bn), "batch_norm_fwd: training needs more than one value");
    bn.x[0] = &x;
    bn.y = &y;
    bn.p.norm.training = false;
    REFUSED(vka_batch_norm_fwd(cmd, &bn), "batch_norm_fwd: eval mode needs state0");
    bn.p.norm.training = true;
    bn.dy = &y;
    bn.dx[0] = &y2;
    REFUSED(vka_batch_norm_bwd(cmd, &bn), "batch_norm_bwd: dx is (2,6,3,4)");
    bn.dx[0] = &y;
    bn.saved[0] = NULL;
    REFUSED(vka_batch_norm_bwd(cmd, &bn), "batch_norm_bwd: saved0 (mean) is missing");
    bn.saved[0] = &v6;
    bn.dx[2] = &v4;
    REFUSED(vka_batch_norm_bwd(cmd, &bn), "batch_norm_bwd: dbeta holds 4 floats, needs 6");
    bn.dy = &y2;
    bn.dx[2] = NULL;
    REFUSED(vka_batch_norm_bwd(cmd, &bn), "batch_norm_bwd: dy is (2,6,3,4)");

    struct vka_op_args gn = {
        .p.norm = { .groups = 4, .eps = EPS },
        .x = { &x, NULL, NULL }, .y = &y, .saved = { &v4, &v4 },
    };
    REFUSED(vka_group_norm_shape(&gn, shape), "group_norm: groups=4 does not divide C=6");
    REFUSED(vka_group_norm_fwd(cmd, &gn), "group_norm_fwd: groups=4 does not divide C=6");
    gn.p.norm.groups = 0;
    REFUSED(vka_group_norm_fwd(cmd, &gn), "groups=0");
    gn.p.norm.groups = 3;
    REFUSED(vka_group_norm_fwd(cmd, &gn), "group_norm_fwd: saved0 (mean) holds 4 floats, needs 6");
    gn.saved[0] = gn.saved[1] = &v6;
    gn.state[0] = &v6;
    REFUSED(vka_group_norm_fwd(cmd, &gn), "group_norm has no running statistics");
    gn.state[0] = NULL;
    cr_assert_eq(vka_group_norm_shape(&gn, shape), 0, "%s", vka_last_error());
    cr_assert(shape[0] == 2 && shape[1] == 6 && shape[2] == 3 && shape[3] == 3);
    gn.dy = &y;
    gn.dx[1] = &v5;
    REFUSED(vka_group_norm_bwd(cmd, &gn), "group_norm_bwd: dgamma holds 5 floats, needs 6");
    gn.dx[1] = NULL;
    gn.saved[1] = &v5;
    REFUSED(vka_group_norm_bwd(cmd, &gn), "group_norm_bwd: saved1 (invstd) holds 5 floats, "
                                          "needs 6 (N*G, N=2 G=3)");
    test_run(cmd); /* nothing was recorded */

    vka_tensor_destroy(&x), vka_tensor_destroy(&y), vka_tensor_destroy(&y2);
    vka_tensor_destroy(&one), vka_tensor_destroy(&one_y), vka_tensor_destroy(&v6);
    vka_tensor_destroy(&v5), vka_tensor_destroy(&v4), vka_tensor_destroy(&v6b);
    vka_tensor_destroy(&xf);
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

Test(norm, batch_norm_fwd_texel) { test_seed("batch_norm_fwd_texel"); check_bn_fwd("texel"); }
Test(norm, batch_norm_fwd_storage) { test_seed("batch_norm_fwd_storage"); check_bn_fwd("storage"); }
Test(norm, batch_norm_eval_fwd_texel) { test_seed("batch_norm_eval_fwd_texel"); check_bn_eval("texel"); }
Test(norm, batch_norm_eval_fwd_storage) { test_seed("batch_norm_eval_fwd_storage"); check_bn_eval("storage"); }
Test(norm, batch_norm_bwd_texel) { test_seed("batch_norm_bwd_texel"); check_bwd("texel", false, false); }
Test(norm, batch_norm_bwd_storage) { test_seed("batch_norm_bwd_storage"); check_bwd("storage", false, false); }
Test(norm, batch_norm_eval_bwd_texel) { test_seed("batch_norm_eval_bwd_texel"); check_bwd("texel", false, true); }
Test(norm, batch_norm_eval_bwd_storage) { test_seed("batch_norm_eval_bwd_storage"); check_bwd("storage", false, true); }
Test(norm, group_norm_fwd_texel) { test_seed("group_norm_fwd_texel"); check_gn_fwd("texel"); }
Test(norm, group_norm_fwd_storage) { test_seed("group_norm_fwd_storage"); check_gn_fwd("storage"); }
Test(norm, group_norm_bwd_texel) { test_seed("group_norm_bwd_texel"); check_bwd("texel", true, false); }
Test(norm, group_norm_bwd_storage) { test_seed("group_norm_bwd_storage"); check_bwd("storage", true, false); }
