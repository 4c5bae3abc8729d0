/* The Fréchet distance (src/fid.c), host only: no Vulkan context. References are exact
 * or independent of fid.c's method:
 * - commuting covariances from float-exact samples mu +- c h_i, whose columns h_i are
 *   orthogonal (+-1 Hadamard blocks, randomly permuted and signed), so the sample mean
 *   is mu and the sample covariance has eigenvalues 2 |h_i|^2 sum c^2 / (n - 1) on h_i
 *   exactly, and FD = |dmu|^2 + sum (sqrt l1_i - sqrt l2_i)^2;
 * - other covariances against a two-pass long double reference of the statistics and a
 *   Denman-Beavers iteration for (S1 S2)^{1/2};
 * - the Jacobi solver against Q diag(l) Q^T with a random orthogonal Q.
 * Statistics must not depend on how rows are split into calls, even with a feature
 * offset 1e5 times the spread (which sum of squares minus n mu^2 fails). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "fid.h"

static double *dalloc(size_t n)
{
    double *p = calloc(n ? n : 1, sizeof(double));
    cr_assert(p);
    return p;
}

static double rand_normal(void)
{
    double u1 = (test_rand_u64() >> 11) * 0x1.0p-53, u2 = (test_rand_u64() >> 11) * 0x1.0p-53;
    return sqrt(-2 * log(1 - u1)) * cos(6.283185307179586 * u2);
}

/* q (d,d): a random orthogonal matrix (modified Gram-Schmidt, run twice, on Gaussian rows). */
static void rand_orthogonal(double *q, size_t d)
{
    for (size_t i = 0; i < d * d; i++)
        q[i] = rand_normal();
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < d; i++) {
            for (size_t k = 0; k < i; k++) {
                double dot = 0;
                for (size_t j = 0; j < d; j++)
                    dot += q[i * d + j] * q[k * d + j];
                for (size_t j = 0; j < d; j++)
                    q[i * d + j] -= dot * q[k * d + j];
            }
            double nrm = 0;
            for (size_t j = 0; j < d; j++)
                nrm += q[i * d + j] * q[i * d + j];
            for (size_t j = 0; j < d; j++)
                q[i * d + j] /= sqrt(nrm);
        }
}

/* Two-pass mean (d) and unbiased covariance (d,d) of x (n,d) in long double. */
static void ref_stats(const float *x, size_t n, size_t d, double *mean, double *cov)
{
    long double *m = calloc(d, sizeof(long double));
    cr_assert(m);
    for (size_t r = 0; r < n; r++)
        for (size_t j = 0; j < d; j++)
            m[j] += x[r * d + j];
    for (size_t j = 0; j < d; j++)
        m[j] /= n;
    for (size_t i = 0; i < d; i++)
        for (size_t j = 0; j < d; j++) {
            long double s = 0;
            for (size_t r = 0; r < n; r++)
                s += (x[r * d + i] - m[i]) * (x[r * d + j] - m[j]);
            cov[i * d + j] = (double)(s / (n - 1));
        }
    for (size_t j = 0; j < d; j++)
        mean[j] = (double)m[j];
    free(m);
}

/* x (n,d) = mu + z L^T, z standard normal: a full covariance L L^T. */
static float *rand_features(size_t n, size_t d, const double *mu, const double *l)
{
    float *x = malloc(n * d * sizeof(float));
    double *z = dalloc(d);
    cr_assert(x);
    for (size_t r = 0; r < n; r++) {
        for (size_t j = 0; j < d; j++)
            z[j] = rand_normal();
        for (size_t i = 0; i < d; i++) {
            double v = mu[i];
            for (size_t j = 0; j < d; j++)
                v += l[i * d + j] * z[j];
            x[r * d + i] = (float)v;
        }
    }
    free(z);
    return x;
}

/* Adds x (n,d) in chunks of chunk rows (0: random sizes 1..50). */
static void add_chunked(struct vka_fid_stats *s, const float *x, size_t n, size_t chunk)
{
    for (size_t r = 0; r < n;) {
        size_t k = chunk ? chunk : test_rand_range(1, 50);
        k = k < n - r ? k : n - r;
        vka_fid_stats_add(s, x + r * s->dim, k);
        r += k;
    }
}

static void stats_of(struct vka_fid_stats *s, const float *x, size_t n, size_t d, size_t chunk)
{
    cr_assert_eq(vka_fid_stats_init(s, (uint32_t)d), 0, "%s", vka_last_error());
    add_chunked(s, x, n, chunk);
    cr_assert_eq(s->n, n);
}

static double fid(const struct vka_fid_stats *a, const struct vka_fid_stats *b)
{
    double fd = NAN;
    int ret = vka_fid_distance(a, b, &fd);
    cr_assert_eq(ret, 0, "vka_fid_distance failed (%d): %s", ret, vka_last_error());
    return fd;
}

static double trace(const double *m, size_t d)
{
    double t = 0;
    for (size_t i = 0; i < d; i++)
        t += m[i * d + i];
    return t;
}

/* ---- commuting covariances, exact ---- */

/* g (d,d) integer: orthogonal columns of entries +-1 and 0, squared norms in len2. Block
 * diagonal Sylvester-Hadamard blocks (sizes: the binary digits of d), then random row and
 * column permutations and row signs. */
static void hadamard_basis(double *g, double *len2, size_t d)
{
    double *h = dalloc(d * d);
    size_t off = 0;
    for (size_t b = (size_t)1 << 30; b; b >>= 1) {
        if (!(d & b))
            continue;
        for (size_t i = 0; i < b; i++)
            for (size_t j = 0; j < b; j++) {
                size_t bits = 0;
                for (size_t m = i & j; m; m >>= 1)
                    bits += m & 1;
                h[(off + i) * d + off + j] = bits & 1 ? -1 : 1; /* Sylvester: (-1)^<i,j> */
                len2[off + j] = (double)b;
            }
        off += b;
    }
    size_t *rp = malloc(d * sizeof(size_t)), *cp = malloc(d * sizeof(size_t));
    cr_assert(rp && cp);
    for (size_t i = 0; i < d; i++)
        rp[i] = cp[i] = i;
    for (size_t i = d; i > 1; i--) {
        size_t a = test_rand_range(0, (uint32_t)i - 1), b = test_rand_range(0, (uint32_t)i - 1);
        size_t t = rp[i - 1];
        rp[i - 1] = rp[a];
        rp[a] = t;
        t = cp[i - 1];
        cp[i - 1] = cp[b];
        cp[b] = t;
    }
    double *l = dalloc(d);
    memcpy(l, len2, d * sizeof(double));
    for (size_t i = 0; i < d; i++) {
        double sign = test_rand_range(0, 1) ? -1 : 1;
        for (size_t j = 0; j < d; j++)
            g[i * d + j] = sign * h[rp[i] * d + cp[j]];
        len2[i] = l[cp[i]];
    }
    free(l);
    free(h);
    free(rp);
    free(cp);
}

/* A set of rows mu +- c h_i (pairs per column, c dyadic in {0.25 .. 2}, c 0 for the
 * columns flagged in zero) and nzero rows mu, shuffled; every value is exact in float.
 * lam (d) gets the exact eigenvalue of column i. Returns the rows; *n their count. */
static float *commuting_set(const double *g, const double *len2, size_t d, const double *mu,
                            size_t pairs, size_t nzero, const bool *zero, double *lam,
                            size_t *n)
{
    *n = 2 * pairs * d + nzero;
    float *x = malloc(*n * d * sizeof(float));
    cr_assert(x);
    double *csum = dalloc(d);
    size_t r = 0;
    for (size_t i = 0; i < d; i++)
        for (size_t p = 0; p < pairs; p++) {
            double c = zero && zero[i] ? 0 : test_rand_range(1, 8) * 0.25;
            csum[i] += c * c;
            for (int sgn = -1; sgn <= 1; sgn += 2, r++)
                for (size_t j = 0; j < d; j++)
                    x[r * d + j] = (float)(mu[j] + sgn * c * g[j * d + i]);
        }
    for (; r < *n; r++)
        for (size_t j = 0; j < d; j++)
            x[r * d + j] = (float)mu[j];
    for (size_t i = 0; i < d; i++)
        lam[i] = 2 * len2[i] * csum[i] / (double)(*n - 1);
    for (size_t i = *n; i > 1; i--) {
        size_t k = test_rand_range(0, (uint32_t)i - 1);
        for (size_t j = 0; j < d; j++) {
            float t = x[(i - 1) * d + j];
            x[(i - 1) * d + j] = x[k * d + j];
            x[k * d + j] = t;
        }
    }
    free(csum);
    return x;
}

/* Returns the error of FD against the exact value, over tr S1 + tr S2 + |dmu|^2. */
static double commuting_case(size_t d, size_t nzero_dirs, double *seconds)
{
    double *g = dalloc(d * d), *len2 = dalloc(d), *mu1 = dalloc(d), *mu2 = dalloc(d);
    double *l1 = dalloc(d), *l2 = dalloc(d);
    bool *zero = calloc(d, sizeof(bool));
    cr_assert(zero);
    for (size_t k = 0; k < nzero_dirs; k++)
        zero[test_rand_range(0, (uint32_t)d - 1)] = true;
    hadamard_basis(g, len2, d);
    double dmu2 = 0;
    for (size_t j = 0; j < d; j++) {
        mu1[j] = 100 + test_rand_range(0, 64) * 0.125; /* dyadic: exact in float */
        mu2[j] = 100 + test_rand_range(0, 64) * 0.125;
        dmu2 += (mu1[j] - mu2[j]) * (mu1[j] - mu2[j]);
    }
    size_t n1, n2;
    float *x1 = commuting_set(g, len2, d, mu1, 2, 3, zero, l1, &n1);
    float *x2 = commuting_set(g, len2, d, mu2, 1, 8, NULL, l2, &n2);
    struct vka_fid_stats a, b;
    stats_of(&a, x1, n1, d, 0);
    stats_of(&b, x2, n2, d, 0);

    double exact = dmu2, scale = dmu2;
    for (size_t i = 0; i < d; i++) {
        exact += (sqrt(l1[i]) - sqrt(l2[i])) * (sqrt(l1[i]) - sqrt(l2[i]));
        scale += l1[i] + l2[i];
    }
    /* CPU time of this thread: other tests and builds share the machine's two cores. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    double fd = fid(&a, &b);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
    if (seconds)
        *seconds = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    cr_log_info("commuting d=%zu, %zu zero directions: FD %.17g exact %.17g, error / scale %.3g",
                d, nzero_dirs, fd, exact, fabs(fd - exact) / scale);
    double err = fabs(fd - exact) / scale;
    vka_fid_stats_free(&a);
    vka_fid_stats_free(&b);
    free(x1);
    free(x2);
    free(g);
    free(len2);
    free(mu1);
    free(mu2);
    free(l1);
    free(l2);
    free(zero);
    return err;
}

Test(fid, commuting_exact)
{
    test_seed("commuting_exact");
    static const size_t dims[] = { 1, 2, 3, 13, 64, 100 };
    for (size_t k = 0; k < sizeof(dims) / sizeof(dims[0]); k++) {
        double err = commuting_case(dims[k], 0, NULL);
        /* Full-rank covariances: the double eigen-decompositions' backward error (a few
         * dim * 1e-16 relative to ||S||) bounds the error; measured <= 4e-15 here. */
        cr_assert_leq(err, 1e-12, "d=%zu: |FD - exact| / (tr S1 + tr S2 + |dmu|^2) = %g",
                      dims[k], err);
    }
}

Test(fid, commuting_rank_deficient)
{
    test_seed("commuting_rank_deficient");
    static const size_t dims[] = { 2, 9, 40 };
    for (size_t k = 0; k < sizeof(dims) / sizeof(dims[0]); k++) {
        double err = commuting_case(dims[k], 1 + dims[k] / 8, NULL);
        /* S1 has exact zero eigenvalues: they come out as +-1e-16 ||S1||, whose square
         * roots (1e-8 sqrt||S1||) enter tr((S1 S2)^{1/2}) (the bound in fid.h). */
        cr_assert_leq(err, 1e-7, "d=%zu: |FD - exact| / (tr S1 + tr S2 + |dmu|^2) = %g",
                      dims[k], err);
    }
}

Test(fid, dim256_time)
{
    test_seed("dim256_time");
    double sec = 0, err = commuting_case(256, 0, &sec);
    cr_log_info("dim 256: vka_fid_distance took %.3f s of CPU", sec);
    fprintf(stderr, "dim 256: vka_fid_distance took %.3f s of CPU\n", sec);
    cr_assert_leq(err, 1e-12, "dim 256: |FD - exact| / scale = %g (full rank, as above)", err);
    /* Target: well under 1 s; measured 0.2 to 0.35 s here (-O2, machine shared). 1 s
     * leaves room for cache contention; an O(dim^4) or stalled solver takes several. */
    cr_assert_leq(sec, 1.0, "dim 256 took %.3f s of CPU", sec);
}

/* ---- identical sets ---- */

Test(fid, identical_sets)
{
    test_seed("identical_sets");
    const size_t d = 20, n = 300;
    double *mu = dalloc(d), *l = dalloc(d * d), *cov = dalloc(d * d), *mean = dalloc(d);
    for (size_t i = 0; i < d; i++) {
        mu[i] = test_rand_uniform(-3, 3);
        for (size_t j = 0; j < d; j++)
            l[i * d + j] = (i == j) + 0.2 * rand_normal();
    }
    float *x = rand_features(n, d, mu, l);
    ref_stats(x, n, d, mean, cov);
    struct vka_fid_stats a, b;
    stats_of(&a, x, n, d, 0);
    stats_of(&b, x, n, d, 17);
    double tr = trace(cov, d), same = fid(&a, &a), split = fid(&a, &b);
    cr_log_info("identical: FD(a, a) %.3g, FD(a, a in chunks) %.3g, tr S %.6g", same, split, tr);
    /* Exactly 0 in exact arithmetic; tr((S S)^{1/2}) = tr S then holds to the eigen
     * solver's backward error, ~dim * 1e-16 tr S (n > dim: full rank). */
    cr_assert_leq(fabs(same), 1e-9 * tr, "FD(a, a) = %g, tr S %g", same, tr);
    cr_assert_leq(fabs(split), 1e-9 * tr, "FD(a, a chunked) = %g, tr S %g", split, tr);
    vka_fid_stats_free(&a);
    vka_fid_stats_free(&b);
    free(x);
    free(mu);
    free(l);
    free(cov);
    free(mean);
}

/* ---- the Jacobi solver ---- */

/* Checks eigenvalues of Q diag(lam) Q^T against lam and the eigenvectors by residual. */
static void check_eig(size_t n, double *lam)
{
    double *q = dalloc(n * n), *a = dalloc(n * n), *w = dalloc(n), *vt = dalloc(n * n);
    rand_orthogonal(q, n);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t k = 0; k < n; k++)
                s += q[k * n + i] * lam[k] * q[k * n + j];
            a[i * n + j] = s;
        }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            a[i * n + j] = a[j * n + i];
    double norm = 0;
    for (size_t i = 0; i < n * n; i++)
        norm += a[i] * a[i];
    norm = sqrt(norm);
    int ret = vka_fid_eig_sym(a, (uint32_t)n, w, vt);
    cr_assert_eq(ret, 0, "n=%zu: %s", n, vka_last_error());
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && lam[j - 1] > lam[j]; j--) {
            double t = lam[j];
            lam[j] = lam[j - 1];
            lam[j - 1] = t;
        }
    double worst_l = 0, worst_r = 0, worst_o = 0;
    for (size_t i = 0; i < n; i++) {
        worst_l = fmax(worst_l, fabs(w[i] - lam[i]));
        double r2 = 0;
        for (size_t j = 0; j < n; j++) {
            double av = 0, dot = 0;
            for (size_t k = 0; k < n; k++) {
                av += a[j * n + k] * vt[i * n + k];
                dot += vt[j * n + k] * vt[i * n + k];
            }
            r2 += (av - w[i] * vt[i * n + j]) * (av - w[i] * vt[i * n + j]);
            worst_o = fmax(worst_o, fabs(dot - (i == j)));
        }
        worst_r = fmax(worst_r, sqrt(r2));
    }
    cr_log_info("eig n=%zu: max |w - lam| / ||A|| %.3g, max ||A v - w v|| / ||A|| %.3g, "
                "max |V V^T - I| %.3g", n, worst_l / norm, worst_r / norm, worst_o);
    /* Jacobi is backward stable: eigenvalues move by at most the backward error (Weyl),
     * a few sweeps * sqrt(n) * 1e-16 ||A||, as do the residuals; A itself carries
     * n * 1e-16 ||A|| of rounding from its construction. 1e-12 is 10x above n = 64's. */
    cr_assert_leq(worst_l, 1e-12 * norm, "n=%zu: eigenvalue off by %g (||A|| %g)", n, worst_l,
                  norm);
    cr_assert_leq(worst_r, 1e-12 * norm, "n=%zu: residual %g (||A|| %g)", n, worst_r, norm);
    cr_assert_leq(worst_o, 1e-12, "n=%zu: eigenvectors not orthonormal (%g)", n, worst_o);
    free(q);
    free(a);
    free(w);
    free(vt);
}

Test(fid, jacobi_known_eigenvalues)
{
    test_seed("jacobi_known_eigenvalues");
    static const size_t dims[] = { 1, 2, 5, 16, 64 };
    for (size_t k = 0; k < sizeof(dims) / sizeof(dims[0]); k++) {
        size_t n = dims[k];
        double *lam = dalloc(n);
        /* Spread over 1e-6 .. 1e3 with both signs, a zero and a triple eigenvalue. */
        for (size_t i = 0; i < n; i++)
            lam[i] = (test_rand_range(0, 3) ? 1 : -1) * pow(10, test_rand_uniform(-6, 3));
        if (n >= 5) {
            lam[0] = 0;
            lam[1] = lam[2] = lam[3] = 2.5;
        }
        check_eig(n, lam);
        free(lam);
    }
    /* Exact cases: [[2, 1], [1, 2]] has 1 and 3; a diagonal matrix needs no rotation. */
    double a2[4] = { 2, 1, 1, 2 }, w2[2], v2[4];
    cr_assert_eq(vka_fid_eig_sym(a2, 2, w2, v2), 0);
    cr_assert_leq(fabs(w2[0] - 1) + fabs(w2[1] - 3), 1e-15, "got %.17g %.17g", w2[0], w2[1]);
    double a3[9] = { 3, 0, 0, 0, -1, 0, 0, 0, 2 }, w3[3];
    cr_assert_eq(vka_fid_eig_sym(a3, 3, w3, NULL), 0);
    cr_assert(w3[0] == -1 && w3[1] == 2 && w3[2] == 3, "got %g %g %g", w3[0], w3[1], w3[2]);
    a3[4] = NAN;
    cr_assert_eq(vka_fid_eig_sym(a3, 3, w3, NULL), -EINVAL);
    cr_assert_eq(vka_fid_eig_sym(a3, 0, w3, NULL), -EINVAL);
}

/* ---- non-commuting covariances against Denman-Beavers ---- */

/* inv (n,n) = m^-1 by Gauss-Jordan with partial pivoting; m is destroyed. */
static void invert(double *inv, double *m, size_t n)
{
    for (size_t i = 0; i < n * n; i++)
        inv[i] = (i / n) == (i % n);
    for (size_t c = 0; c < n; c++) {
        size_t piv = c;
        for (size_t r = c + 1; r < n; r++)
            if (fabs(m[r * n + c]) > fabs(m[piv * n + c]))
                piv = r;
        cr_assert_gt(fabs(m[piv * n + c]), 0, "singular matrix in the reference");
        for (size_t j = 0; j < n; j++) {
            double t = m[c * n + j];
            m[c * n + j] = m[piv * n + j];
            m[piv * n + j] = t;
            t = inv[c * n + j];
            inv[c * n + j] = inv[piv * n + j];
            inv[piv * n + j] = t;
        }
        double d = m[c * n + c];
        for (size_t j = 0; j < n; j++) {
            m[c * n + j] /= d;
            inv[c * n + j] /= d;
        }
        for (size_t r = 0; r < n; r++) {
            double f = m[r * n + c];
            if (r == c || f == 0)
                continue;
            for (size_t j = 0; j < n; j++) {
                m[r * n + j] -= f * m[c * n + j];
                inv[r * n + j] -= f * inv[c * n + j];
            }
        }
    }
}

static void mul(double *c, const double *a, const double *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t k = 0; k < n; k++)
                s += a[i * n + k] * b[k * n + j];
            c[i * n + j] = s;
        }
}

/* tr((S1 S2)^{1/2}) by Denman-Beavers: Y0 = S1 S2, Z0 = I, Y <- (Y + Z^-1) / 2,
 * Z <- (Z + Y^-1) / 2 (simultaneously); Y converges to the principal square root. */
static double db_trace_sqrt(const double *s1, const double *s2, size_t n)
{
    double *y = dalloc(n * n), *z = dalloc(n * n), *yi = dalloc(n * n), *zi = dalloc(n * n);
    double *tmp = dalloc(n * n), *p = dalloc(n * n);
    mul(y, s1, s2, n);
    memcpy(p, y, n * n * sizeof(double));
    for (size_t i = 0; i < n; i++)
        z[i * n + i] = 1;
    bool converged = false;
    for (int it = 0; it < 100 && !converged; it++) {
        memcpy(tmp, y, n * n * sizeof(double));
        invert(yi, tmp, n);
        memcpy(tmp, z, n * n * sizeof(double));
        invert(zi, tmp, n);
        double diff = 0, norm = 0;
        for (size_t i = 0; i < n * n; i++) {
            double ny = 0.5 * (y[i] + zi[i]);
            diff += (ny - y[i]) * (ny - y[i]);
            norm += ny * ny;
            y[i] = ny;
            z[i] = 0.5 * (z[i] + yi[i]);
        }
        /* The step stalls at rounding, 1e-14 relative for d = 33: stop at 1e-12, where the
         * quadratic convergence has already made the error far smaller than the step. */
        converged = diff <= 1e-24 * norm;
    }
    cr_assert(converged, "Denman-Beavers did not converge in 100 iterations");
    /* The reference checks itself: Y^2 must give back S1 S2. */
    mul(tmp, y, y, n);
    double err = 0, norm = 0;
    for (size_t i = 0; i < n * n; i++) {
        err = fmax(err, fabs(tmp[i] - p[i]));
        norm = fmax(norm, fabs(p[i]));
    }
    cr_log_info("Denman-Beavers: |Y^2 - S1 S2| / |S1 S2| = %.3g", err / norm);
    /* Each step inverts Y and Z, which costs cond(S1 S2) * 1e-16 (cond < 1e3 here):
     * residuals up to 4e-12 over 60 seeds. */
    cr_assert_leq(err, 1e-9 * norm, "Denman-Beavers: |Y^2 - S1 S2| = %g of %g", err, norm);
    double tr = trace(y, n);
    free(y);
    free(z);
    free(yi);
    free(zi);
    free(tmp);
    free(p);
    return tr;
}

Test(fid, noncommuting_vs_denman_beavers)
{
    test_seed("noncommuting_vs_denman_beavers");
    static const size_t dims[] = { 2, 9, 33 };
    for (size_t k = 0; k < sizeof(dims) / sizeof(dims[0]); k++) {
        size_t d = dims[k], n1 = 3 * d + 10, n2 = 2 * d + 30;
        double *mu1 = dalloc(d), *mu2 = dalloc(d), *l1 = dalloc(d * d), *l2 = dalloc(d * d);
        double *m1 = dalloc(d), *m2 = dalloc(d), *c1 = dalloc(d * d), *c2 = dalloc(d * d);
        for (size_t i = 0; i < d; i++) {
            mu1[i] = test_rand_uniform(-2, 2);
            mu2[i] = test_rand_uniform(-2, 2);
            for (size_t j = 0; j < d; j++) {
                l1[i * d + j] = (i == j) + 0.15 * rand_normal();
                l2[i * d + j] = 2.0 * (i == j) + 0.25 * rand_normal();
            }
        }
        float *x1 = rand_features(n1, d, mu1, l1), *x2 = rand_features(n2, d, mu2, l2);
        ref_stats(x1, n1, d, m1, c1);
        ref_stats(x2, n2, d, m2, c2);
        struct vka_fid_stats a, b;
        stats_of(&a, x1, n1, d, 0);
        stats_of(&b, x2, n2, d, 0);
        double dmu2 = 0;
        for (size_t i = 0; i < d; i++)
            dmu2 += (m1[i] - m2[i]) * (m1[i] - m2[i]);
        double tr1 = trace(c1, d), tr2 = trace(c2, d);
        double ref = dmu2 + tr1 + tr2 - 2 * db_trace_sqrt(c1, c2, d), fd = fid(&a, &b);
        double err = fabs(fd - ref) / (tr1 + tr2 + dmu2);
        cr_log_info("non-commuting d=%zu: FD %.17g, Denman-Beavers %.17g, error / scale %.3g", d,
                    fd, ref, err);
        /* Both sides are double; Denman-Beavers loses about cond(S1 S2) * 1e-16 (cond is
         * below 1e3 here) and fid.c dim * 1e-16: at most 6e-14 over 60 seeds. */
        cr_assert_leq(err, 1e-11, "d=%zu: FD %.17g vs Denman-Beavers %.17g", d, fd, ref);
        vka_fid_stats_free(&a);
        vka_fid_stats_free(&b);
        free(x1);
        free(x2);
        free(mu1);
        free(mu2);
        free(l1);
        free(l2);
        free(m1);
        free(m2);
        free(c1);
        free(c2);
    }
}

/* ---- accumulation ---- */

/* Asserts that s holds mean (d) and cov (d,d) within rel: the mean relative to |mean_i|,
 * covariance element ij relative to sqrt(cov_ii cov_jj). Returns the worst ratios. */
static void check_stats(const struct vka_fid_stats *s, const double *mean, const double *cov,
                        double rel, const char *what, double *worst_m, double *worst_c)
{
    size_t d = s->dim;
    for (size_t i = 0; i < d; i++) {
        double e = fabs(s->mean[i] - mean[i]) / fabs(mean[i]);
        *worst_m = fmax(*worst_m, e);
        cr_assert_leq(e, rel, "%s: mean[%zu] %.17g vs %.17g", what, i, s->mean[i], mean[i]);
    }
    for (size_t i = 0; i < d; i++)
        for (size_t j = 0; j < d; j++) {
            double got = s->m2[i * d + j] / (double)(s->n - 1);
            double e = fabs(got - cov[i * d + j]) / sqrt(cov[i * d + i] * cov[j * d + j]);
            *worst_c = fmax(*worst_c, e);
            cr_assert_leq(e, rel, "%s: cov[%zu][%zu] %.17g vs %.17g", what, i, j, got,
                          cov[i * d + j]);
        }
}

Test(fid, batch_split_invariance)
{
    test_seed("batch_split_invariance");
    const size_t d = 24, n = 1000;
    double *mu = dalloc(d), *l = dalloc(d * d), *mean = dalloc(d), *cov = dalloc(d * d);
    /* Offset 1e4, spread 0.05 .. 0.3: x^2 is 1e10 times the variance, so sum of squares
     * minus n mu^2 would lose about 1e-6 relative to cancellation. */
    for (size_t i = 0; i < d; i++) {
        mu[i] = 1e4 * (1 + 0.1 * test_rand_uniform(-1, 1));
        for (size_t j = 0; j < d; j++)
            l[i * d + j] = 0.05 * (i == j) + 0.05 * test_rand_uniform(-1, 1);
    }
    float *x = rand_features(n, d, mu, l);
    ref_stats(x, n, d, mean, cov);
    static const size_t chunks[] = { 1000, 1, 7, 100, 0 };
    struct vka_fid_stats one;
    stats_of(&one, x, n, d, n);
    for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
        struct vka_fid_stats s;
        stats_of(&s, x, n, d, chunks[k]);
        char what[64];
        double wm = 0, wc = 0, om = 0, oc = 0;
        snprintf(what, sizeof(what), "chunks of %zu vs reference", chunks[k]);
        /* Rounding of n additions in double: ~1e-16 * sqrt(n) typical, n * 1e-16 worst. */
        check_stats(&s, mean, cov, 1e-12, what, &wm, &wc);
        snprintf(what, sizeof(what), "chunks of %zu vs one call", chunks[k]);
        check_stats(&s, one.mean, cov, 1e-12, what, &om, &oc);
        for (size_t i = 0; i < d * d; i++) {
            double e = fabs(s.m2[i] - one.m2[i]) / (n - 1) /
                       sqrt(cov[(i / d) * (d + 1)] * cov[(i % d) * (d + 1)]);
            oc = fmax(oc, e);
            cr_assert_leq(e, 1e-12, "%s: m2[%zu] %.17g vs %.17g", what, i, s.m2[i], one.m2[i]);
        }
        cr_log_info("chunks of %zu (0: random): vs reference mean %.3g cov %.3g; vs one call "
                    "mean %.3g cov %.3g", chunks[k], wm, wc, om, oc);
        vka_fid_stats_free(&s);
    }
    /* Adding 0 rows changes nothing. */
    vka_fid_stats_add(&one, x, 0);
    cr_assert_eq(one.n, n);
    vka_fid_stats_free(&one);
    free(x);
    free(mu);
    free(l);
    free(mean);
    free(cov);
}

/* ---- refusals ---- */

static void expect_refusal(const struct vka_fid_stats *a, const struct vka_fid_stats *b,
                           const char *needle)
{
    double fd = 12345;
    vka_clear_error();
    int ret = vka_fid_distance(a, b, &fd);
    cr_assert_eq(ret, -EINVAL, "accepted (%d), expected a refusal mentioning '%s'", ret, needle);
    cr_assert(strstr(vka_last_error(), needle), "message '%s' lacks '%s'", vka_last_error(),
              needle);
    cr_assert_eq(fd, 12345, "fd was written on a refusal");
}

Test(fid, refusals)
{
    test_seed("refusals");
    struct vka_fid_stats s = { 0 }, a, b, c, e;
    vka_clear_error();
    cr_assert_eq(vka_fid_stats_init(&s, 0), -EINVAL);
    cr_assert(strstr(vka_last_error(), "dim"), "message: %s", vka_last_error());
    cr_assert_null(s.mean);
    vka_fid_stats_free(&s);

    float rows[5 * 4];
    for (size_t i = 0; i < 20; i++)
        rows[i] = test_rand_uniform(-1, 1);
    cr_assert_eq(vka_fid_stats_init(&a, 4), 0);
    cr_assert_eq(vka_fid_stats_init(&b, 4), 0);
    cr_assert_eq(vka_fid_stats_init(&c, 3), 0);
    cr_assert_eq(vka_fid_stats_init(&e, 4), 0);
    vka_fid_stats_add(&a, rows, 5);
    vka_fid_stats_add(&c, rows, 5);
    expect_refusal(&a, &e, "set b holds 0 feature rows");
    vka_fid_stats_add(&b, rows, 1);
    expect_refusal(&b, &a, "set a holds 1 feature rows");
    expect_refusal(&a, &c, "set a has 4 features per row, set b 3");
    expect_refusal(NULL, &a, "set a has no statistics");
    vka_fid_stats_add(&b, rows + 4, 1);
    double fd = NAN;
    cr_assert_eq(vka_fid_distance(&a, &b, &fd), 0, "n = 2 is enough: %s", vka_last_error());
    cr_assert(isfinite(fd) && fd >= 0, "fd %g", fd);
    cr_assert_eq(vka_fid_distance(&a, &b, NULL), -EINVAL);
    rows[6] = NAN;
    vka_fid_stats_add(&e, rows, 5);
    expect_refusal(&a, &e, "not finite");
    vka_fid_stats_free(&a);
    vka_fid_stats_free(&b);
    vka_fid_stats_free(&c);
    vka_fid_stats_free(&e);
    vka_fid_stats_free(NULL);
}
