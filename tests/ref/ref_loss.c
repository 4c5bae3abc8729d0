/*
 * ref_loss.c - reference losses: softmax cross-entropy, BCE with logits,
 * soft Dice (micro-batch sums + window loss), MSE, L1 and the hinge GAN
 * loss (fwd + bwd), and the sigmoid_mean metric (fwd).
 */
#include "ref.h"

#include <math.h>
#include <stddef.h>

/* Pixel (n, hw) of a segmentation batch: its class-c logit is at base + c*HW. */
static size_t seg_base(const struct ref_seg *p, int n, int hw)
{
    return (size_t)n * p->C * p->H * p->W + (size_t)hw;
}

static int seg_valid(const struct ref_seg *p, int t)
{
    return t != p->ignore_index && t >= 0 && t < p->C;
}

/* prob (C) = softmax over channels of the pixel at base; returns log-sum-exp. */
static double pixel_softmax(const struct ref_seg *p, const double *logits,
                            size_t base, double *prob)
{
    size_t HW = (size_t)p->H * p->W;
    double mx = -INFINITY, z = 0.0;
    for (int c = 0; c < p->C; c++)
        if (logits[base + c * HW] > mx)
            mx = logits[base + c * HW];
    for (int c = 0; c < p->C; c++) {
        prob[c] = exp(logits[base + c * HW] - mx);
        z += prob[c];
    }
    for (int c = 0; c < p->C; c++)
        prob[c] /= z;
    return mx + log(z);
}

/* Per-pixel scratch for C probabilities; C beyond this is not supported. */
enum { REF_SEG_MAX_C = 1024 };

void ref_softmax_ce_fwd(const struct ref_seg *p,
                        const double *logits, /* (N,C,H,W) */
                        const int *target,    /* (N,H,W) */
                        const double *weight, /* (C) or NULL */
                        double *sum, double *count)
{
    double prob[REF_SEG_MAX_C];
    int HW = p->H * p->W;
    double s = 0.0, cnt = 0.0;
    for (int n = 0; n < p->N; n++)
        for (int i = 0; i < HW; i++) {
            int t = target[(size_t)n * HW + i];
            if (!seg_valid(p, t))
                continue;
            size_t base = seg_base(p, n, i);
            double lse = pixel_softmax(p, logits, base, prob);
            double w = weight ? weight[t] : 1.0;
            s += w * (lse - logits[base + (size_t)t * HW]);
            cnt += w;
        }
    *sum = s;
    *count = cnt;
}

void ref_softmax_ce_bwd(const struct ref_seg *p,
                        const double *logits, /* (N,C,H,W) */
                        const int *target,    /* (N,H,W) */
                        const double *weight, /* (C) or NULL */
                        double scale,
                        double *dlogits)      /* (N,C,H,W) += */
{
    double prob[REF_SEG_MAX_C];
    int HW = p->H * p->W;
    if (!dlogits)
        return;
    for (int n = 0; n < p->N; n++)
        for (int i = 0; i < HW; i++) {
            int t = target[(size_t)n * HW + i];
            if (!seg_valid(p, t))
                continue;
            size_t base = seg_base(p, n, i);
            pixel_softmax(p, logits, base, prob);
            double g = scale * (weight ? weight[t] : 1.0);
            for (int c = 0; c < p->C; c++)
                dlogits[base + (size_t)c * HW] +=
                    g * (prob[c] - (c == t ? 1.0 : 0.0));
        }
}

void ref_bce_logits_fwd(int n, const double *x, const double *t,
                        double *sum, double *count)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += fmax(x[i], 0.0) - x[i] * t[i] + log1p(exp(-fabs(x[i])));
    *sum = s;
    *count = n;
}

void ref_bce_logits_bwd(int n, const double *x, const double *t, double scale,
                        double *dx)
{
    if (!dx)
        return;
    for (int i = 0; i < n; i++) {
        double e = exp(-fabs(x[i]));
        double sig = x[i] >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
        dx[i] += scale * (sig - t[i]);
    }
}

void ref_dice_fwd(const struct ref_seg *p,
                  const double *logits, /* (N,C,H,W) */
                  const int *target,    /* (N,H,W) */
                  double *inter,        /* (C) out */
                  double *card)         /* (C) out */
{
    double prob[REF_SEG_MAX_C];
    int HW = p->H * p->W;
    for (int c = 0; c < p->C; c++)
        inter[c] = card[c] = 0.0;
    for (int n = 0; n < p->N; n++)
        for (int i = 0; i < HW; i++) {
            int t = target[(size_t)n * HW + i];
            if (!seg_valid(p, t))
                continue;
            pixel_softmax(p, logits, seg_base(p, n, i), prob);
            for (int c = 0; c < p->C; c++)
                card[c] += prob[c];
            inter[t] += prob[t];
            card[t] += 1.0;
        }
}

double ref_dice_loss_from_sums(const double *inter, /* (C) */
                               const double *card,  /* (C) */
                               int C, double smooth)
{
    double acc = 0.0;
    for (int c = 0; c < C; c++)
        acc += (2.0 * inter[c] + smooth) / (card[c] + smooth);
    return 1.0 - acc / C;
}

void ref_dice_loss_from_sums_bwd(const double *inter, /* (C) */
                                 const double *card,  /* (C) */
                                 int C, double smooth, double dloss,
                                 double *dinter,      /* (C) += */
                                 double *dcard)       /* (C) += */
{
    for (int c = 0; c < C; c++) {
        double den = card[c] + smooth;
        if (dinter)
            dinter[c] += dloss * (-2.0 / C) / den;
        if (dcard)
            dcard[c] += dloss * (2.0 * inter[c] + smooth) / (C * den * den);
    }
}

void ref_dice_bwd(const struct ref_seg *p,
                  const double *logits, /* (N,C,H,W) */
                  const int *target,    /* (N,H,W) */
                  const double *dinter, /* (C) dL/dinter */
                  const double *dcard,  /* (C) dL/dcard */
                  double *dlogits)      /* (N,C,H,W) += */
{
    double prob[REF_SEG_MAX_C];
    int HW = p->H * p->W;
    if (!dlogits)
        return;
    for (int n = 0; n < p->N; n++)
        for (int i = 0; i < HW; i++) {
            int t = target[(size_t)n * HW + i];
            if (!seg_valid(p, t))
                continue;
            size_t base = seg_base(p, n, i);
            pixel_softmax(p, logits, base, prob);
            double pg = prob[t] * dinter[t];
            for (int c = 0; c < p->C; c++)
                pg += prob[c] * dcard[c];
            for (int c = 0; c < p->C; c++) {
                double g = dcard[c] + (c == t ? dinter[c] : 0.0);
                dlogits[base + (size_t)c * HW] += prob[c] * (g - pg);
            }
        }
}

void ref_mse_fwd(int n, const double *x, const double *t,
                 double *sum, double *count)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += (x[i] - t[i]) * (x[i] - t[i]);
    *sum = s;
    *count = n;
}

void ref_mse_bwd(int n, const double *x, const double *t, double scale,
                 double *dx)
{
    if (!dx)
        return;
    for (int i = 0; i < n; i++)
        dx[i] += scale * 2.0 * (x[i] - t[i]);
}

void ref_l1_fwd(int n, const double *x, const double *t,
                double *sum, double *count)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += fabs(x[i] - t[i]);
    *sum = s;
    *count = n;
}

void ref_l1_bwd(int n, const double *x, const double *t, double scale,
                double *dx)
{
    if (!dx)
        return;
    for (int i = 0; i < n; i++) {
        double d = x[i] - t[i];
        dx[i] += scale * (double)((d > 0.0) - (d < 0.0));
    }
}

void ref_hinge_fwd(int n, int linear, const double *x, const double *t,
                   double *sum, double *count)
{
    double s = 0.0;
    for (int i = 0; i < n; i++) {
        double sx = (2.0 * t[i] - 1.0) * x[i];
        s += linear ? -sx : fmax(0.0, 1.0 - sx);
    }
    *sum = s;
    *count = n;
}

void ref_hinge_bwd(int n, int linear, const double *x, const double *t,
                   double scale, double *dx)
{
    if (!dx)
        return;
    for (int i = 0; i < n; i++) {
        double sgn = 2.0 * t[i] - 1.0;
        if (linear || sgn * x[i] < 1.0)
            dx[i] += scale * -sgn;
    }
}

void ref_sigmoid_mean_fwd(int n, const double *x, double *sum, double *count)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += 1.0 / (1.0 + exp(-x[i]));
    *sum = s;
    *count = n;
}
