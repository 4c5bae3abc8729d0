/* The Fréchet distance between two sets of feature vectors (Heusel et al. 2017, as
 * pytorch-fid computes it), on the host in double. Each set is summarised by a Gaussian:
 * its mean mu and its unbiased covariance S (divided by n - 1, as numpy.cov), and
 *   FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}).
 *
 * Statistics are accumulated per call to vka_fid_stats_add: the batch's own mean and
 * centred sum of outer products, merged into the running ones by Chan et al.'s formula,
 * on rows shifted by the first row added. A large common offset in the features then
 * costs no accuracy (sum of squares minus n mu^2 loses offset^2 / variance * 1e-16), and
 * the statistics do not depend on how the rows are split into calls beyond rounding
 * (1e-14 relative with offset 1e5 times the spread, rows added one at a time or all at once).
 *
 * tr((S1 S2)^{1/2}): with S1 = V D V^T (cyclic Jacobi, run until the off-diagonal
 * Frobenius norm is below 1e-14 of the matrix's), A = V D^{1/2} V^T, the symmetric PSD
 * M = A S2 A has the eigenvalues of S1 S2, so the trace is sum sqrt(max(eig(M), 0)).
 * Accuracy: for covariances of full rank the error of FD is about dim * 1e-16 *
 * (tr S1 + tr S2 + |mu1 - mu2|^2); FD of a set with itself may so come out slightly
 * negative. An eigenvalue of S1 that is 0 (n <= dim, or constant features) comes out as
 * +-1e-16 ||S1|| and its square root as up to 1e-8 sqrt(||S1||), which bounds the error of
 * such a direction's term to about 1e-8 sqrt(||S1|| ||S2||); scipy's sqrtm, which
 * pytorch-fid uses, is no better there. dim 256 takes 0.2 to 0.3 s of one core (-O2).
 *
 * A vka_fid_stats owns its arrays; vka_fid_stats_free releases them. */
#ifndef VKA_FID_H
#define VKA_FID_H

#include <stdint.h>

struct vka_fid_stats {
    uint32_t dim;
    uint64_t n;
    double *mean; /* dim: running mean */
    double *m2;   /* dim*dim: running sum of centred outer products (Welford / Chan's merge) */
};

int vka_fid_stats_init(struct vka_fid_stats *s, uint32_t dim); /* -ENOMEM, -EINVAL for dim 0 */
/* Adds n feature rows (n x dim floats, row-major). */
void vka_fid_stats_add(struct vka_fid_stats *s, const float *feats, uint64_t n);
void vka_fid_stats_free(struct vka_fid_stats *s);
/* The Fréchet distance between the Gaussians of a and b (same dim, n >= 2 each; -EINVAL
 * with a message otherwise, also when a statistic is not finite). */
int vka_fid_distance(const struct vka_fid_stats *a, const struct vka_fid_stats *b, double *fd);

/* The eigen-decomposition that vka_fid_distance uses, for its tests: a (n,n) symmetric,
 * of which only the upper triangle is read; w (n) gets the eigenvalues in ascending order, vt (n,n) (NULL: not wanted)
 * the unit eigenvectors as rows, vt[i] belonging to w[i]. -ENOMEM, -EINVAL for n 0 or a
 * matrix that is not finite, -ERANGE when the sweeps do not converge. */
int vka_fid_eig_sym(const double *a, uint32_t n, double *w, double *vt);

#endif
