/* The Fréchet distance between feature sets (method and accuracy in fid.h): running
 * Gaussian statistics, a cyclic Jacobi eigen-solver and the trace of (S1 S2)^{1/2}.
 * Matrices are dense row-major doubles, (dim,dim); eigenvectors are kept as rows (vt),
 * so that every rotation updates two contiguous rows. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fid.h"
#include "log.h"

/* Convergence is quadratic: about 10 sweeps at dim 256; 60 means the input is broken. */
#define MAX_SWEEPS 60

int vka_fid_stats_init(struct vka_fid_stats *s, uint32_t dim)
{
    *s = (struct vka_fid_stats){ .dim = dim };
    if (!dim) {
        vka_err("fid: stats with 0 features; dim needs to be at least 1");
        return -EINVAL;
    }
    /* mean is followed by the shift, the mean less the shift, and two scratch vectors
     * (the batch mean and a centred row), so that vka_fid_stats_add never allocates and
     * cannot fail. */
    s->mean = calloc(5 * (size_t)dim, sizeof(double));
    s->m2 = calloc((size_t)dim * dim, sizeof(double));
    if (!s->mean || !s->m2) {
        vka_fid_stats_free(s);
        vka_err("fid: out of host memory for the statistics of %" PRIu32 " features", dim);
        return -ENOMEM;
    }
    return 0;
}

void vka_fid_stats_free(struct vka_fid_stats *s)
{
    if (!s)
        return;
    free(s->mean);
    free(s->m2);
    *s = (struct vka_fid_stats){ 0 };
}

/* Rows are shifted by the first row ever added (K) before anything else: x - K of two
 * floats is exact in double (unless they differ by 2^29 in scale), and the running mean
 * is kept as mean - K, whose rounding then scales with the spread of the features, not
 * with their offset from 0. Added one at a time, rows with an offset 1e5 times their
 * spread would otherwise lose 1e-11 of the covariance. */
void vka_fid_stats_add(struct vka_fid_stats *s, const float *feats, uint64_t n)
{
    if (!n)
        return;
    size_t d = s->dim;
    double *mean = s->mean, *shift = mean + d, *smean = mean + 2 * d, *bmean = mean + 3 * d;
    double *c = mean + 4 * d, *m2 = s->m2;
    if (!s->n)
        for (size_t j = 0; j < d; j++)
            shift[j] = feats[j];

    for (size_t j = 0; j < d; j++)
        bmean[j] = 0;
    for (uint64_t r = 0; r < n; r++)
        for (size_t j = 0; j < d; j++)
            bmean[j] += feats[r * d + j] - shift[j];
    for (size_t j = 0; j < d; j++)
        bmean[j] /= (double)n;

    /* Centred sums go straight into m2 (it is a sum over both sets), upper triangle only. */
    for (uint64_t r = 0; r < n; r++) {
        for (size_t j = 0; j < d; j++)
            c[j] = (feats[r * d + j] - shift[j]) - bmean[j];
        for (size_t i = 0; i < d; i++) {
            double ci = c[i], *row = m2 + i * d;
            for (size_t j = i; j < d; j++)
                row[j] += ci * c[j];
        }
    }

    /* Chan et al.: M2 = M2a + M2b + delta delta^T na nb / (na + nb). */
    double na = (double)s->n, nb = (double)n, nt = na + nb, f = na * nb / nt;
    for (size_t i = 0; i < d; i++)
        c[i] = bmean[i] - smean[i];
    for (size_t i = 0; i < d; i++) {
        double fi = f * c[i], *row = m2 + i * d;
        for (size_t j = i; j < d; j++)
            row[j] += fi * c[j];
        smean[i] += c[i] * (nb / nt);
        mean[i] = shift[i] + smean[i];
    }
    for (size_t i = 0; i < d; i++)
        for (size_t j = i + 1; j < d; j++)
            m2[j * d + i] = m2[i * d + j];
    s->n += n;
}

static void rotate(double *restrict x, double *restrict y, size_t n, double c, double s)
{
    for (size_t k = 0; k < n; k++) {
        double xk = x[k], yk = y[k];
        x[k] = c * xk - s * yk;
        y[k] = s * xk + c * yk;
    }
}

/* Cyclic Jacobi on the upper triangle of a (n,n) symmetric: w (n) gets the eigenvalues
 * (unsorted), vt (n,n, NULL: not wanted) the eigenvectors as rows. Rotations follow
 * Rutishauser's stable form (tan of the smaller angle) and only the upper triangle is
 * kept, in a copy whose rows are padded to n + 1 doubles: with a power-of-two stride the
 * column walks of a rotation all land in the same cache sets, and dim 256 ran 2x slower.
 * A rotation is skipped when |a_pq| <= tol / n: all such elements together stay below
 * tol, so skipping cannot prevent convergence. */
static int jacobi(const double *in, uint32_t n, double *w, double *vt)
{
    size_t ld = (size_t)n + 1;
    double *a = malloc(ld * n * sizeof(double)), norm2 = 0, off = 0;
    if (!a) {
        vka_err("fid: out of host memory for a %" PRIu32 "x%" PRIu32 " matrix", n, n);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = i; j < n; j++) {
            a[i * ld + j] = in[i * n + j];
            norm2 += (i == j ? 1 : 2) * in[i * n + j] * in[i * n + j];
        }
    if (!isfinite(norm2)) {
        vka_err("fid: eigen-decomposition of a %" PRIu32 "x%" PRIu32 " matrix: an element is "
                "not finite (or the norm overflows)", n, n);
        free(a);
        return -EINVAL;
    }
    if (vt)
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++)
                vt[i * n + j] = i == j;
    double tol = 1e-14 * sqrt(norm2), skip = tol / n;
    for (int sweep = 0; sweep <= MAX_SWEEPS; sweep++) {
        double off2 = 0;
        for (size_t p = 0; p < n; p++)
            for (size_t q = p + 1; q < n; q++)
                off2 += 2 * a[p * ld + q] * a[p * ld + q];
        off = sqrt(off2);
        if (off <= tol) {
            for (size_t i = 0; i < n; i++)
                w[i] = a[i * ld + i];
            free(a);
            return 0;
        }
        if (sweep == MAX_SWEEPS)
            break;
        for (size_t p = 0; p + 1 < n; p++) {
            for (size_t q = p + 1; q < n; q++) {
                double apq = a[p * ld + q];
                if (fabs(apq) <= skip)
                    continue;
                double theta = (a[q * ld + q] - a[p * ld + p]) / (2 * apq);
                double t = fabs(theta) > 1e150 ? 0.5 / theta
                                                : copysign(1.0, theta) /
                                                      (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                a[p * ld + p] -= t * apq;
                a[q * ld + q] += t * apq;
                a[p * ld + q] = 0;
                /* a_kp, a_kq for k < p, p < k < q, k > q, as stored in the upper triangle */
                for (size_t k = 0; k < p; k++) {
                    double x = a[k * ld + p], y = a[k * ld + q];
                    a[k * ld + p] = c * x - s * y;
                    a[k * ld + q] = s * x + c * y;
                }
                for (size_t k = p + 1; k < q; k++) {
                    double x = a[p * ld + k], y = a[k * ld + q];
                    a[p * ld + k] = c * x - s * y;
                    a[k * ld + q] = s * x + c * y;
                }
                rotate(a + p * ld + q + 1, a + q * ld + q + 1, n - q - 1, c, s);
                if (vt)
                    rotate(vt + p * n, vt + q * n, n, c, s);
            }
        }
    }
    free(a);
    vka_err("fid: Jacobi eigen-decomposition of a %" PRIu32 "x%" PRIu32 " matrix did not "
            "converge in %d sweeps (off-diagonal norm %g, needs <= %g)", n, n, MAX_SWEEPS,
            off, tol);
    return -ERANGE;
}

int vka_fid_eig_sym(const double *a, uint32_t n, double *w, double *vt)
{
    if (!n || !a || !w) {
        vka_err("fid: eig_sym needs a matrix, n >= 1 and w (n %" PRIu32 ")", n);
        return -EINVAL;
    }
    int ret = jacobi(a, n, w, vt);
    /* Selection sort: n swaps of eigenvector rows at most. */
    for (size_t i = 0; i < n && !ret; i++) {
        size_t m = i;
        for (size_t j = i + 1; j < n; j++)
            if (w[j] < w[m])
                m = j;
        if (m == i)
            continue;
        double tmp = w[i];
        w[i] = w[m];
        w[m] = tmp;
        for (size_t k = 0; vt && k < n; k++) {
            tmp = vt[i * n + k];
            vt[i * n + k] = vt[m * n + k];
            vt[m * n + k] = tmp;
        }
    }
    return ret;
}

/* c (n,n) = a (n,n) b (n,n) */
static void matmul(double *c, const double *a, const double *b, size_t n)
{
    memset(c, 0, n * n * sizeof(double));
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < n; k++) {
            double aik = a[i * n + k];
            for (size_t j = 0; j < n; j++)
                c[i * n + j] += aik * b[k * n + j];
        }
}

static int check_set(const struct vka_fid_stats *s, const char *name)
{
    if (!s || !s->mean || !s->m2) {
        vka_err("fid: set %s has no statistics (NULL or not initialised)", name);
        return -EINVAL;
    }
    if (s->n < 2) {
        vka_err("fid: set %s holds %" PRIu64 " feature rows; the unbiased covariance needs "
                "at least 2", name, s->n);
        return -EINVAL;
    }
    return 0;
}

int vka_fid_distance(const struct vka_fid_stats *a, const struct vka_fid_stats *b, double *fd)
{
    int ret = check_set(a, "a");
    if (!ret)
        ret = check_set(b, "b");
    if (ret)
        return ret;
    if (!fd) {
        vka_err("fid: distance needs somewhere to write the result (fd is NULL)");
        return -EINVAL;
    }
    if (a->dim != b->dim) {
        vka_err("fid: set a has %" PRIu32 " features per row, set b %" PRIu32 "; they need "
                "the same feature extractor", a->dim, b->dim);
        return -EINVAL;
    }
    size_t d = a->dim, dd = d * d;
    double *s1 = malloc((5 * dd + d) * sizeof(double));
    if (!s1) {
        vka_err("fid: out of host memory for 5 %zux%zu matrices", d, d);
        return -ENOMEM;
    }
    double *s2 = s1 + dd, *vt = s2 + dd, *t = vt + dd, *half = t + dd, *w = half + dd;

    double dmu2 = 0, tr1 = 0, tr2 = 0, tr_sqrt = 0;
    for (size_t i = 0; i < d; i++)
        dmu2 += (a->mean[i] - b->mean[i]) * (a->mean[i] - b->mean[i]);
    for (size_t i = 0; i < dd; i++) {
        s1[i] = a->m2[i] / (double)(a->n - 1);
        s2[i] = b->m2[i] / (double)(b->n - 1);
    }
    for (size_t i = 0; i < d; i++) {
        tr1 += s1[i * d + i];
        tr2 += s2[i * d + i];
    }
    if (!isfinite(dmu2) || !isfinite(tr1) || !isfinite(tr2)) {
        vka_err("fid: a mean or covariance is not finite (|dmu|^2 %g, tr S1 %g, tr S2 %g): "
                "the features hold NaN or Inf, or overflow", dmu2, tr1, tr2);
        ret = -EINVAL;
        goto done;
    }

    /* half = S1^{1/2} = V D^{1/2} V^T = vt^T (D^{1/2} vt); the clamp drops rounding's
     * negative eigenvalues of a PSD matrix. */
    if ((ret = jacobi(s1, (uint32_t)d, w, vt)))
        goto done;
    for (size_t k = 0; k < d; k++) {
        double r = sqrt(fmax(w[k], 0));
        for (size_t j = 0; j < d; j++)
            t[k * d + j] = r * vt[k * d + j];
    }
    memset(half, 0, dd * sizeof(double));
    for (size_t k = 0; k < d; k++)
        for (size_t i = 0; i < d; i++) {
            double v = vt[k * d + i];
            for (size_t j = 0; j < d; j++)
                half[i * d + j] += v * t[k * d + j];
        }

    /* M = half S2 half is similar to S1 S2 and symmetric PSD; jacobi reads the upper
     * triangle, which gets the mean of both to halve the rounding's asymmetry. */
    matmul(vt, half, s2, d);
    matmul(t, vt, half, d);
    for (size_t i = 0; i < d; i++)
        for (size_t j = i + 1; j < d; j++)
            t[i * d + j] = 0.5 * (t[i * d + j] + t[j * d + i]);
    if ((ret = jacobi(t, (uint32_t)d, w, NULL)))
        goto done;
    for (size_t i = 0; i < d; i++)
        tr_sqrt += sqrt(fmax(w[i], 0));
    *fd = dmu2 + tr1 + tr2 - 2 * tr_sqrt;
done:
    free(s1);
    return ret;
}
