/* ref_norm.c - reference batch_norm (train/eval) and group_norm (fwd + bwd). */
#include "ref.h"

#include <math.h>
#include <stddef.h>

/*
 * One normalisation statistic covers `nblk` runs of `len` contiguous values
 * (each run is one channel's H*W plane): run j starts at first + j*stride and
 * belongs to channel c0 + j*cstep.
 *   batch_norm channel c: runs over n,   first = c*HW,          stride = C*HW, cstep = 0
 *   group_norm (n,g):     runs over c,   first = (n*C+g*Cg)*HW, stride = HW,   cstep = 1
 */
struct span {
    size_t first, stride;
    int nblk, len, c0, cstep;
};

static size_t span_at(const struct span *sp, int j, int i)
{
    return sp->first + (size_t)j * sp->stride + (size_t)i;
}

static void span_stats(const struct span *sp, const double *x,
                       double *mean, double *var)
{
    double m = (double)sp->nblk * sp->len;
    double s = 0.0, ss = 0.0;
    for (int j = 0; j < sp->nblk; j++)
        for (int i = 0; i < sp->len; i++)
            s += x[span_at(sp, j, i)];
    *mean = s / m;
    for (int j = 0; j < sp->nblk; j++)
        for (int i = 0; i < sp->len; i++) {
            double d = x[span_at(sp, j, i)] - *mean;
            ss += d * d;
        }
    *var = ss / m;
}

static void span_normalise(const struct span *sp, const double *x,
                           const double *gamma, const double *beta,
                           double mean, double invstd, double *y)
{
    for (int j = 0; j < sp->nblk; j++) {
        int c = sp->c0 + j * sp->cstep;
        double g = gamma ? gamma[c] : 1.0, b = beta ? beta[c] : 0.0;
        for (int i = 0; i < sp->len; i++) {
            size_t at = span_at(sp, j, i);
            y[at] = (x[at] - mean) * invstd * g + b;
        }
    }
}

/* dx += invstd * (g - mean(g) - xhat * mean(g*xhat)), g = dy*gamma. */
static void span_bwd(const struct span *sp, const double *x, const double *dy,
                     const double *gamma, double mean, double invstd,
                     double *dx, double *dgamma, double *dbeta)
{
    double m = (double)sp->nblk * sp->len;
    double sg = 0.0, sgx = 0.0;
    for (int j = 0; j < sp->nblk; j++) {
        int c = sp->c0 + j * sp->cstep;
        double gm = gamma ? gamma[c] : 1.0;
        for (int i = 0; i < sp->len; i++) {
            size_t at = span_at(sp, j, i);
            double xhat = (x[at] - mean) * invstd;
            sg += dy[at] * gm;
            sgx += dy[at] * gm * xhat;
            if (dgamma)
                dgamma[c] += dy[at] * xhat;
            if (dbeta)
                dbeta[c] += dy[at];
        }
    }
    if (!dx)
        return;
    sg /= m;
    sgx /= m;
    for (int j = 0; j < sp->nblk; j++) {
        int c = sp->c0 + j * sp->cstep;
        double gm = gamma ? gamma[c] : 1.0;
        for (int i = 0; i < sp->len; i++) {
            size_t at = span_at(sp, j, i);
            double xhat = (x[at] - mean) * invstd;
            dx[at] += invstd * (dy[at] * gm - sg - xhat * sgx);
        }
    }
}

static struct span bn_span(const struct ref_bn *p, int c)
{
    int HW = p->H * p->W;
    struct span sp = { (size_t)c * HW, (size_t)p->C * HW, p->N, HW, c, 0 };
    return sp;
}

static struct span gn_span(const struct ref_gn *p, int n, int g)
{
    int HW = p->H * p->W, Cg = p->C / p->G;
    struct span sp = { ((size_t)n * p->C + (size_t)g * Cg) * HW, (size_t)HW,
                       Cg, HW, g * Cg, 1 };
    return sp;
}

void ref_batch_norm_fwd_train(const struct ref_bn *p,
                              const double *x,        /* (N,C,H,W) */
                              const double *gamma,    /* (C) or NULL */
                              const double *beta,     /* (C) or NULL */
                              double *running_mean,   /* (C) updated or NULL */
                              double *running_var,    /* (C) updated or NULL */
                              double *save_mean,      /* (C) out or NULL */
                              double *save_invstd,    /* (C) out or NULL */
                              double *y)              /* (N,C,H,W) */
{
    double M = (double)p->N * p->H * p->W;
    for (int c = 0; c < p->C; c++) {
        struct span sp = bn_span(p, c);
        double mean, var;
        span_stats(&sp, x, &mean, &var);
        double invstd = 1.0 / sqrt(var + p->eps);
        span_normalise(&sp, x, gamma, beta, mean, invstd, y);
        if (save_mean)
            save_mean[c] = mean;
        if (save_invstd)
            save_invstd[c] = invstd;
        if (running_mean)
            running_mean[c] = (1.0 - p->momentum) * running_mean[c] +
                              p->momentum * mean;
        if (running_var)
            running_var[c] = (1.0 - p->momentum) * running_var[c] +
                             p->momentum * var * M / (M - 1.0);
    }
}

void ref_batch_norm_fwd_eval(const struct ref_bn *p,
                             const double *x,            /* (N,C,H,W) */
                             const double *gamma,        /* (C) or NULL */
                             const double *beta,         /* (C) or NULL */
                             const double *running_mean, /* (C) */
                             const double *running_var,  /* (C) */
                             double *y)                  /* (N,C,H,W) */
{
    for (int c = 0; c < p->C; c++) {
        struct span sp = bn_span(p, c);
        span_normalise(&sp, x, gamma, beta, running_mean[c],
                       1.0 / sqrt(running_var[c] + p->eps), y);
    }
}

void ref_batch_norm_bwd(const struct ref_bn *p,
                        const double *x,           /* (N,C,H,W) */
                        const double *gamma,       /* (C) or NULL */
                        const double *save_mean,   /* (C) from fwd_train */
                        const double *save_invstd, /* (C) from fwd_train */
                        const double *dy,          /* (N,C,H,W) */
                        double *dx,                /* (N,C,H,W) += */
                        double *dgamma,            /* (C) += */
                        double *dbeta)             /* (C) += */
{
    for (int c = 0; c < p->C; c++) {
        struct span sp = bn_span(p, c);
        span_bwd(&sp, x, dy, gamma, save_mean[c], save_invstd[c],
                 dx, dgamma, dbeta);
    }
}

void ref_batch_norm_bwd_eval(const struct ref_bn *p,
                             const double *x,            /* (N,C,H,W) */
                             const double *gamma,        /* (C) or NULL */
                             const double *running_mean, /* (C) */
                             const double *running_var,  /* (C) */
                             const double *dy,           /* (N,C,H,W) */
                             double *dx,                 /* (N,C,H,W) += */
                             double *dgamma,             /* (C) += */
                             double *dbeta)              /* (C) += */
{
    size_t HW = (size_t)p->H * p->W;
    for (int n = 0; n < p->N; n++)
        for (int c = 0; c < p->C; c++) {
            double invstd = 1.0 / sqrt(running_var[c] + p->eps);
            double g = gamma ? gamma[c] : 1.0;
            for (size_t i = 0; i < HW; i++) {
                size_t at = ((size_t)n * p->C + c) * HW + i;
                if (dx)
                    dx[at] += g * invstd * dy[at];
                if (dgamma)
                    dgamma[c] += dy[at] * (x[at] - running_mean[c]) * invstd;
                if (dbeta)
                    dbeta[c] += dy[at];
            }
        }
}

void ref_group_norm_fwd(const struct ref_gn *p,
                        const double *x,        /* (N,C,H,W) */
                        const double *gamma,    /* (C) or NULL */
                        const double *beta,     /* (C) or NULL */
                        double *save_mean,      /* (N,G) out or NULL */
                        double *save_invstd,    /* (N,G) out or NULL */
                        double *y)              /* (N,C,H,W) */
{
    for (int n = 0; n < p->N; n++)
        for (int g = 0; g < p->G; g++) {
            struct span sp = gn_span(p, n, g);
            double mean, var;
            span_stats(&sp, x, &mean, &var);
            double invstd = 1.0 / sqrt(var + p->eps);
            span_normalise(&sp, x, gamma, beta, mean, invstd, y);
            if (save_mean)
                save_mean[n * p->G + g] = mean;
            if (save_invstd)
                save_invstd[n * p->G + g] = invstd;
        }
}

void ref_group_norm_bwd(const struct ref_gn *p,
                        const double *x,           /* (N,C,H,W) */
                        const double *gamma,       /* (C) or NULL */
                        const double *save_mean,   /* (N,G) from fwd */
                        const double *save_invstd, /* (N,G) from fwd */
                        const double *dy,          /* (N,C,H,W) */
                        double *dx,                /* (N,C,H,W) += */
                        double *dgamma,            /* (C) += */
                        double *dbeta)             /* (C) += */
{
    for (int n = 0; n < p->N; n++)
        for (int g = 0; g < p->G; g++) {
            struct span sp = gn_span(p, n, g);
            span_bwd(&sp, x, dy, gamma, save_mean[n * p->G + g],
                     save_invstd[n * p->G + g], dx, dgamma, dbeta);
        }
}
