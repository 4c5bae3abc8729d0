/*
 * ref_misc.c - reference activations, max/avg pooling, nearest/bilinear
 * resize, channel concat and elementwise add/mul/scale (fwd + bwd).
 */
#include "ref.h"

#include <math.h>
#include <stddef.h>

/* ---- activations ---- */

static double sigmoid(double x)
{
    if (x >= 0.0)
        return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

void ref_relu_fwd(int n, const double *x, double *y)
{
    for (int i = 0; i < n; i++)
        y[i] = x[i] > 0.0 ? x[i] : 0.0;
}

void ref_relu_bwd(int n, const double *x, const double *dy, double *dx)
{
    if (!dx)
        return;
    for (int i = 0; i < n; i++)
        dx[i] += x[i] > 0.0 ? dy[i] : 0.0;
}

void ref_leaky_relu_fwd(int n, double slope, const double *x, double *y)
{
    for (int i = 0; i < n; i++)
        y[i] = x[i] > 0.0 ? x[i] : slope * x[i];
}

void ref_leaky_relu_bwd(int n, double slope, const double *x, const double *dy,
                        double *dx)
{
    if (!dx)
        return;
    for (int i = 0; i < n; i++)
        dx[i] += x[i] > 0.0 ? dy[i] : slope * dy[i];
}

void ref_tanh_fwd(int n, const double *x, double *y)
{
    for (int i = 0; i < n; i++)
        y[i] = tanh(x[i]);
}

void ref_tanh_bwd(int n, const double *x, const double *dy, double *dx)
{
    if (!dx)
        return;
    for (int i = 0; i < n; i++) {
        double t = tanh(x[i]);
        dx[i] += dy[i] * (1.0 - t * t);
    }
}

void ref_sigmoid_fwd(int n, const double *x, double *y)
{
    for (int i = 0; i < n; i++)
        y[i] = sigmoid(x[i]);
}

void ref_sigmoid_bwd(int n, const double *x, const double *dy, double *dx)
{
    if (!dx)
        return;
    for (int i = 0; i < n; i++) {
        double s = sigmoid(x[i]);
        dx[i] += dy[i] * s * (1.0 - s);
    }
}

/* ---- pooling ---- */

void ref_pool2d_out_size(const struct ref_pool *p, int *P, int *Q)
{
    *P = (p->H + 2 * p->pad - p->k) / p->stride + 1;
    *Q = (p->W + 2 * p->pad - p->k) / p->stride + 1;
}

/* Offset, inside one (H,W) plane, of the first maximum of window (op, oq). */
static size_t max_window_argmax(const struct ref_pool *p, const double *plane,
                                int op, int oq)
{
    int h0 = op * p->stride - p->pad, w0 = oq * p->stride - p->pad;
    size_t best_at = 0;
    double best = -INFINITY;
    int found = 0;
    for (int r = 0; r < p->k; r++) {
        int h = h0 + r;
        if (h < 0 || h >= p->H)
            continue;
        for (int s = 0; s < p->k; s++) {
            int w = w0 + s;
            if (w < 0 || w >= p->W)
                continue;
            size_t at = (size_t)h * p->W + w;
            double v = plane[at];
            if (!found || v > best || isnan(v)) {
                best = v;
                best_at = at;
                found = 1;
            }
        }
    }
    return best_at;
}

void ref_max_pool2d_fwd(const struct ref_pool *p,
                        const double *x,   /* (N,C,H,W) */
                        double *y)         /* (N,C,P,Q) */
{
    int P, Q;
    ref_pool2d_out_size(p, &P, &Q);
    for (size_t nc = 0; nc < (size_t)p->N * p->C; nc++) {
        const double *plane = x + nc * p->H * p->W;
        for (int op = 0; op < P; op++)
            for (int oq = 0; oq < Q; oq++)
                y[(nc * P + op) * Q + oq] =
                    plane[max_window_argmax(p, plane, op, oq)];
    }
}

void ref_max_pool2d_argmax(const struct ref_pool *p,
                           const double *x,   /* (N,C,H,W) */
                           double *arg)       /* (N,C,P,Q) */
{
    int P, Q;
    ref_pool2d_out_size(p, &P, &Q);
    for (size_t nc = 0; nc < (size_t)p->N * p->C; nc++)
        for (int op = 0; op < P; op++)
            for (int oq = 0; oq < Q; oq++)
                arg[(nc * P + op) * Q + oq] =
                    (double)max_window_argmax(p, x + nc * p->H * p->W, op, oq);
}

void ref_max_pool2d_bwd(const struct ref_pool *p,
                        const double *x,   /* (N,C,H,W) */
                        const double *dy,  /* (N,C,P,Q) */
                        double *dx)        /* (N,C,H,W) += */
{
    if (!dx)
        return;
    int P, Q;
    ref_pool2d_out_size(p, &P, &Q);
    for (size_t nc = 0; nc < (size_t)p->N * p->C; nc++) {
        const double *plane = x + nc * p->H * p->W;
        for (int op = 0; op < P; op++)
            for (int oq = 0; oq < Q; oq++)
                dx[nc * p->H * p->W + max_window_argmax(p, plane, op, oq)] +=
                    dy[(nc * P + op) * Q + oq];
    }
}

void ref_avg_pool2d_fwd(const struct ref_pool *p,
                        const double *x,   /* (N,C,H,W) */
                        double *y)         /* (N,C,P,Q) */
{
    int P, Q;
    ref_pool2d_out_size(p, &P, &Q);
    double inv = 1.0 / ((double)p->k * p->k);
    for (size_t nc = 0; nc < (size_t)p->N * p->C; nc++) {
        const double *plane = x + nc * p->H * p->W;
        for (int op = 0; op < P; op++)
            for (int oq = 0; oq < Q; oq++) {
                double acc = 0.0;
                for (int r = 0; r < p->k; r++) {
                    int h = op * p->stride - p->pad + r;
                    if (h < 0 || h >= p->H)
                        continue;
                    for (int s = 0; s < p->k; s++) {
                        int w = oq * p->stride - p->pad + s;
                        if (w >= 0 && w < p->W)
                            acc += plane[(size_t)h * p->W + w];
                    }
                }
                y[(nc * P + op) * Q + oq] = acc * inv;
            }
    }
}

void ref_avg_pool2d_bwd(const struct ref_pool *p,
                        const double *dy,  /* (N,C,P,Q) */
                        double *dx)        /* (N,C,H,W) += */
{
    if (!dx)
        return;
    int P, Q;
    ref_pool2d_out_size(p, &P, &Q);
    double inv = 1.0 / ((double)p->k * p->k);
    for (size_t nc = 0; nc < (size_t)p->N * p->C; nc++) {
        double *plane = dx + nc * p->H * p->W;
        for (int op = 0; op < P; op++)
            for (int oq = 0; oq < Q; oq++) {
                double g = dy[(nc * P + op) * Q + oq] * inv;
                for (int r = 0; r < p->k; r++) {
                    int h = op * p->stride - p->pad + r;
                    if (h < 0 || h >= p->H)
                        continue;
                    for (int s = 0; s < p->k; s++) {
                        int w = oq * p->stride - p->pad + s;
                        if (w >= 0 && w < p->W)
                            plane[(size_t)h * p->W + w] += g;
                    }
                }
            }
    }
}

/* ---- resize ---- */

static int nearest_src(int dst, int in, int out)
{
    long long s = (long long)dst * in / out;
    return s < in - 1 ? (int)s : in - 1;
}

/* One axis of bilinear, align_corners = False. */
struct lerp {
    int i0, i1;
    double l0, l1;
};

static struct lerp bilinear_src(int dst, int in, int out)
{
    struct lerp t;
    double src = ((double)dst + 0.5) * ((double)in / out) - 0.5;
    if (src < 0.0)
        src = 0.0;
    t.i0 = (int)src;
    if (t.i0 > in - 1)
        t.i0 = in - 1;
    t.i1 = t.i0 < in - 1 ? t.i0 + 1 : t.i0;
    t.l1 = src - t.i0;
    t.l0 = 1.0 - t.l1;
    return t;
}

void ref_upsample_nearest_fwd(const struct ref_resize *p,
                              const double *x,   /* (N,C,H,W) */
                              double *y)         /* (N,C,OH,OW) */
{
    for (size_t nc = 0; nc < (size_t)p->N * p->C; nc++)
        for (int oh = 0; oh < p->OH; oh++) {
            int h = nearest_src(oh, p->H, p->OH);
            for (int ow = 0; ow < p->OW; ow++) {
                int w = nearest_src(ow, p->W, p->OW);
                y[(nc * p->OH + oh) * p->OW + ow] =
                    x[(nc * p->H + h) * p->W + w];
            }
        }
}

void ref_upsample_nearest_bwd(const struct ref_resize *p,
                              const double *dy,  /* (N,C,OH,OW) */
                              double *dx)        /* (N,C,H,W) += */
{
    if (!dx)
        return;
    for (size_t nc = 0; nc < (size_t)p->N * p->C; nc++)
        for (int oh = 0; oh < p->OH; oh++) {
            int h = nearest_src(oh, p->H, p->OH);
            for (int ow = 0; ow < p->OW; ow++) {
                int w = nearest_src(ow, p->W, p->OW);
                dx[(nc * p->H + h) * p->W + w] +=
                    dy[(nc * p->OH + oh) * p->OW + ow];
            }
        }
}

void ref_upsample_bilinear_fwd(const struct ref_resize *p,
                               const double *x,  /* (N,C,H,W) */
                               double *y)        /* (N,C,OH,OW) */
{
    for (size_t nc = 0; nc < (size_t)p->N * p->C; nc++) {
        const double *in = x + nc * p->H * p->W;
        for (int oh = 0; oh < p->OH; oh++) {
            struct lerp th = bilinear_src(oh, p->H, p->OH);
            const double *r0 = in + (size_t)th.i0 * p->W;
            const double *r1 = in + (size_t)th.i1 * p->W;
            for (int ow = 0; ow < p->OW; ow++) {
                struct lerp tw = bilinear_src(ow, p->W, p->OW);
                y[(nc * p->OH + oh) * p->OW + ow] =
                    th.l0 * (tw.l0 * r0[tw.i0] + tw.l1 * r0[tw.i1]) +
                    th.l1 * (tw.l0 * r1[tw.i0] + tw.l1 * r1[tw.i1]);
            }
        }
    }
}

void ref_upsample_bilinear_bwd(const struct ref_resize *p,
                               const double *dy, /* (N,C,OH,OW) */
                               double *dx)       /* (N,C,H,W) += */
{
    if (!dx)
        return;
    for (size_t nc = 0; nc < (size_t)p->N * p->C; nc++) {
        double *out = dx + nc * p->H * p->W;
        for (int oh = 0; oh < p->OH; oh++) {
            struct lerp th = bilinear_src(oh, p->H, p->OH);
            double *r0 = out + (size_t)th.i0 * p->W;
            double *r1 = out + (size_t)th.i1 * p->W;
            for (int ow = 0; ow < p->OW; ow++) {
                struct lerp tw = bilinear_src(ow, p->W, p->OW);
                double g = dy[(nc * p->OH + oh) * p->OW + ow];
                r0[tw.i0] += g * th.l0 * tw.l0;
                r0[tw.i1] += g * th.l0 * tw.l1;
                r1[tw.i0] += g * th.l1 * tw.l0;
                r1[tw.i1] += g * th.l1 * tw.l1;
            }
        }
    }
}

/* ---- concat ---- */

void ref_concat_fwd(int N, int C1, int C2, int H, int W,
                    const double *a,   /* (N,C1,H,W) */
                    const double *b,   /* (N,C2,H,W) */
                    double *y)         /* (N,C1+C2,H,W) */
{
    size_t s1 = (size_t)C1 * H * W, s2 = (size_t)C2 * H * W;
    for (int n = 0; n < N; n++) {
        double *yn = y + n * (s1 + s2);
        for (size_t i = 0; i < s1; i++)
            yn[i] = a[n * s1 + i];
        for (size_t i = 0; i < s2; i++)
            yn[s1 + i] = b[n * s2 + i];
    }
}

void ref_concat_bwd(int N, int C1, int C2, int H, int W,
                    const double *dy,  /* (N,C1+C2,H,W) */
                    double *da,        /* (N,C1,H,W) += */
                    double *db)        /* (N,C2,H,W) += */
{
    size_t s1 = (size_t)C1 * H * W, s2 = (size_t)C2 * H * W;
    for (int n = 0; n < N; n++) {
        const double *dyn = dy + n * (s1 + s2);
        if (da)
            for (size_t i = 0; i < s1; i++)
                da[n * s1 + i] += dyn[i];
        if (db)
            for (size_t i = 0; i < s2; i++)
                db[n * s2 + i] += dyn[s1 + i];
    }
}

/* ---- elementwise ---- */

void ref_add_fwd(int n, const double *a, const double *b, double *y)
{
    for (int i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

void ref_add_bwd(int n, const double *dy, double *da, double *db)
{
    for (int i = 0; i < n; i++) {
        if (da)
            da[i] += dy[i];
        if (db)
            db[i] += dy[i];
    }
}

void ref_mul_fwd(int n, const double *a, const double *b, double *y)
{
    for (int i = 0; i < n; i++)
        y[i] = a[i] * b[i];
}

void ref_mul_bwd(int n, const double *a, const double *b, const double *dy,
                 double *da, double *db)
{
    for (int i = 0; i < n; i++) {
        if (da)
            da[i] += dy[i] * b[i];
        if (db)
            db[i] += dy[i] * a[i];
    }
}

void ref_scale_fwd(int n, double alpha, const double *x, double *y)
{
    for (int i = 0; i < n; i++)
        y[i] = alpha * x[i];
}

void ref_scale_bwd(int n, double alpha, const double *dy, double *dx)
{
    if (!dx)
        return;
    for (int i = 0; i < n; i++)
        dx[i] += alpha * dy[i];
}
