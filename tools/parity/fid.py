#!/usr/bin/env python3
"""The Fréchet distance of two feature files with numpy, to cross-check src/fid.c.

    fid.py A.npy B.npy [--eig]

Each file holds one (n, dim) array, a row per sample (any real dtype; n >= 2, the same dim
in both). The statistics are pytorch-fid's: the mean and numpy.cov(rowvar=False)
(unbiased, n - 1), both in float64 as src/fid.c keeps them (pytorch-fid takes the mean of
its float32 activations in float32, which moves |mu1 - mu2|^2 by about 1e-7 relative).

    FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2})

tr((S1 S2)^{1/2}) is computed as pytorch-fid's calculate_frechet_distance does, with
scipy.linalg.sqrtm of S1 S2 (retried with 1e-6 I added to both when the root is not
finite, imaginary parts dropped), when scipy is importable and --eig is not given. The
eigen method of src/fid.c (S1^{1/2} from numpy.linalg.eigh, then the eigenvalues of
S1^{1/2} S2 S1^{1/2}, negative ones clamped to 0) is always printed as well; with full
rank covariances the two agree to about 1e-12 relative, with rank-deficient ones (n <= dim)
to about 1e-8 (each method's error on the zero eigenvalues).

Prints n, dim, |mu1 - mu2|^2, tr S1, tr S2 and FD with 17 significant digits. Exit 1
on a bad file or shape.
"""
import argparse
import sys

import numpy as np


def stats(path):
    x = np.load(path)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{path}: shape {x.shape}, needs (n, dim) with n >= 2")
    x = x.astype(np.float64)
    return x.shape[0], x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def trace_sqrt_eig(s1, s2):
    w, v = np.linalg.eigh(s1)
    half = (v * np.sqrt(np.maximum(w, 0))) @ v.T
    m = half @ s2 @ half
    return float(np.sum(np.sqrt(np.maximum(np.linalg.eigvalsh((m + m.T) / 2), 0))))


def trace_sqrt_sqrtm(s1, s2):
    from scipy import linalg

    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.max(np.abs(np.diagonal(covmean).imag))
        if imag > 1e-3:
            raise ValueError(f"sqrtm: imaginary component {imag:g} on the diagonal")
        covmean = covmean.real
    return float(np.trace(covmean))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--eig", action="store_true", help="the eigen method even with scipy")
    args = ap.parse_args()
    try:
        n1, mu1, s1 = stats(args.a)
        n2, mu2, s2 = stats(args.b)
        if s1.shape != s2.shape:
            raise ValueError(f"{args.a} has {s1.shape[0]} features per row, {args.b} "
                             f"{s2.shape[0]}")
    except (OSError, ValueError) as e:
        print(f"fid.py: {e}", file=sys.stderr)
        return 1
    diff = mu1 - mu2
    base = float(diff.dot(diff) + np.trace(s1) + np.trace(s2))
    fd_eig = base - 2 * trace_sqrt_eig(s1, s2)
    method, fd = "eigen", fd_eig
    if not args.eig:
        try:
            fd, method = base - 2 * trace_sqrt_sqrtm(s1, s2), "scipy.linalg.sqrtm"
        except ImportError:
            pass
    print(f"n {n1}, {n2}; dim {s1.shape[0]}")
    print(f"|mu1 - mu2|^2 {diff.dot(diff):.17g}")
    print(f"tr S1 {np.trace(s1):.17g}, tr S2 {np.trace(s2):.17g}")
    print(f"FD ({method}) {fd:.17g}")
    if method != "eigen":
        print(f"FD (eigen) {fd_eig:.17g}; difference {abs(fd - fd_eig) / abs(fd):.3g} relative")
    return 0


if __name__ == "__main__":
    sys.exit(main())
