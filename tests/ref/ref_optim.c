/*
 * ref_optim.c - reference SGD, Adam, AdamW steps and global-norm clipping in double
 * (formulas in ref_optim.h).
 */
#include "ref_optim.h"

#include <math.h>

void ref_sgd_step(const struct ref_sgd *h, size_t n, double *p, const double *g, double *buf,
                  int first)
{
    for (size_t i = 0; i < n; i++) {
        double d = g[i] + h->weight_decay * p[i];
        if (h->momentum != 0) {
            buf[i] = first ? d : h->momentum * buf[i] + (1 - h->dampening) * d;
            d = h->nesterov ? d + h->momentum * buf[i] : buf[i];
        }
        p[i] -= h->lr * d;
    }
}

void ref_adam_step(const struct ref_adam *h, size_t n, double *p, const double *g, double *m,
                   double *v, unsigned long long t)
{
    double bc1 = 1 - pow(h->beta1, (double)t);
    double bc2 = 1 - pow(h->beta2, (double)t);
    for (size_t i = 0; i < n; i++) {
        double d = g[i];
        if (h->decoupled)
            p[i] *= 1 - h->lr * h->weight_decay;
        else
            d += h->weight_decay * p[i];
        m[i] = h->beta1 * m[i] + (1 - h->beta1) * d;
        v[i] = h->beta2 * v[i] + (1 - h->beta2) * d * d;
        p[i] -= h->lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + h->eps);
    }
}

double ref_clip(size_t n, const double *acc, double scale, double max_norm, double *g)
{
    double ss = 0;
    for (size_t i = 0; i < n; i++) {
        g[i] = scale * acc[i];
        ss += g[i] * g[i];
    }
    double norm = sqrt(ss);
    if (max_norm > 0) {
        double coef = max_norm / (norm + 1e-6);
        if (coef < 1)
            for (size_t i = 0; i < n; i++)
                g[i] *= coef;
    }
    return norm;
}
