/* ref_conv.c - reference conv2d, conv_transpose2d and linear (fwd + bwd). */
#include "ref.h"

#include <stddef.h>

void ref_conv2d_out_size(const struct ref_conv *p, int *P, int *Q)
{
    *P = (p->H + 2 * p->pad_h - p->R) / p->stride_h + 1;
    *Q = (p->W + 2 * p->pad_w - p->S) / p->stride_w + 1;
}

void ref_conv_transpose2d_out_size(const struct ref_conv *p, int *P, int *Q)
{
    *P = (p->H - 1) * p->stride_h - 2 * p->pad_h + p->R + p->out_pad_h;
    *Q = (p->W - 1) * p->stride_w - 2 * p->pad_w + p->S + p->out_pad_w;
}

static size_t idx4(int d1, int d2, int d3, int a, int b, int c, int d)
{
    return (((size_t)a * d1 + b) * d2 + c) * d3 + d;
}

void ref_conv2d_fwd(const struct ref_conv *p,
                    const double *x,   /* (N,C,H,W) */
                    const double *w,   /* (K,C,R,S) */
                    const double *b,   /* (K) or NULL */
                    double *y)         /* (N,K,P,Q) */
{
    int P, Q;
    ref_conv2d_out_size(p, &P, &Q);
    for (int n = 0; n < p->N; n++)
        for (int k = 0; k < p->K; k++)
            for (int op = 0; op < P; op++)
                for (int oq = 0; oq < Q; oq++) {
                    double acc = b ? b[k] : 0.0;
                    for (int c = 0; c < p->C; c++)
                        for (int r = 0; r < p->R; r++) {
                            int h = op * p->stride_h - p->pad_h + r;
                            if (h < 0 || h >= p->H)
                                continue;
                            for (int s = 0; s < p->S; s++) {
                                int ww = oq * p->stride_w - p->pad_w + s;
                                if (ww < 0 || ww >= p->W)
                                    continue;
                                acc += x[idx4(p->C, p->H, p->W, n, c, h, ww)] *
                                       w[idx4(p->C, p->R, p->S, k, c, r, s)];
                            }
                        }
                    y[idx4(p->K, P, Q, n, k, op, oq)] = acc;
                }
}

/* The 4x4 input patch of Winograd tile (th, tw) of sample n, channel c (zero outside) */
static void wino_patch(const struct ref_conv *p, const double *x, int n, int c, int th,
                       int tw, double d[4][4])
{
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            int h = th * 2 - p->pad_h + i, ww = tw * 2 - p->pad_w + j;
            int in = h >= 0 && h < p->H && ww >= 0 && ww < p->W;
            d[i][j] = in ? x[idx4(p->C, p->H, p->W, n, c, h, ww)] : 0.0;
        }
}

void ref_conv2d_wino_abs(const struct ref_conv *p, const double *x, const double *w,
                         double *m)
{
    static const double G[4][3] = { { 1, 0, 0 }, { .5, .5, .5 }, { .5, .5, .5 }, { 0, 0, 1 } };
    static const double BT[4][4] = { { 1, 0, 1, 0 }, { 0, 1, 1, 0 }, { 0, 1, 1, 0 },
                                     { 0, 1, 0, 1 } };
    static const double AT[2][4] = { { 1, 1, 1, 0 }, { 0, 1, 1, 1 } };
    int P, Q;
    ref_conv2d_out_size(p, &P, &Q);
    for (int n = 0; n < p->N; n++)
        for (int k = 0; k < p->K; k++)
            for (int th = 0; th < (P + 1) / 2; th++)
                for (int tw = 0; tw < (Q + 1) / 2; tw++) {
                    double sum[4][4] = { { 0 } };
                    for (int c = 0; c < p->C; c++) {
                        double u[4][4], v[4][4], d[4][4];
                        wino_patch(p, x, n, c, th, tw, d);
                        for (int i = 0; i < 4; i++)
                            for (int j = 0; j < 4; j++) {
                                u[i][j] = v[i][j] = 0.0;
                                for (int r = 0; r < 3; r++)
                                    for (int s = 0; s < 3; s++)
                                        u[i][j] += G[i][r] * w[idx4(p->C, 3, 3, k, c, r, s)] *
                                                   G[j][s];
                                for (int a = 0; a < 4; a++)
                                    for (int b = 0; b < 4; b++)
                                        v[i][j] += BT[i][a] * d[a][b] * BT[j][b];
                                sum[i][j] += u[i][j] * v[i][j];
                            }
                    }
                    for (int a = 0; a < 2; a++)
                        for (int b = 0; b < 2; b++) {
                            int op = th * 2 + a, oq = tw * 2 + b;
                            if (op >= P || oq >= Q)
                                continue;
                            double t = 0.0;
                            for (int i = 0; i < 4; i++)
                                for (int j = 0; j < 4; j++)
                                    t += AT[a][i] * sum[i][j] * AT[b][j];
                            m[idx4(p->K, P, Q, n, k, op, oq)] = t;
                        }
                }
}

void ref_conv2d_wino_dw_abs(const struct ref_conv *p, const double *x, const double *dy,
                            double *m)
{
    static const double GT[3][4] = { { 1, .5, .5, 0 }, { 0, .5, .5, 0 }, { 0, .5, .5, 1 } };
    static const double BT[4][4] = { { 1, 0, 1, 0 }, { 0, 1, 1, 0 }, { 0, 1, 1, 0 },
                                     { 0, 1, 0, 1 } };
    static const double A[4][2] = { { 1, 0 }, { 1, 1 }, { 1, 1 }, { 0, 1 } };
    int P, Q;
    ref_conv2d_out_size(p, &P, &Q);
    for (int k = 0; k < p->K; k++)
        for (int c = 0; c < p->C; c++) {
            double out[3][3] = { { 0 } };
            for (int n = 0; n < p->N; n++) {
                double sum[4][4] = { { 0 } };
                for (int th = 0; th < (P + 1) / 2; th++)
                    for (int tw = 0; tw < (Q + 1) / 2; tw++) {
                        double d[4][4], e[2][2];
                        wino_patch(p, x, n, c, th, tw, d);
                        for (int u = 0; u < 2; u++)
                            for (int v = 0; v < 2; v++) {
                                int oh = th * 2 + u, ow = tw * 2 + v;
                                e[u][v] = oh < P && ow < Q ? dy[idx4(p->K, P, Q, n, k, oh, ow)]
                                                           : 0.0;
                            }
                        for (int i = 0; i < 4; i++)
                            for (int j = 0; j < 4; j++) {
                                double vd = 0.0, vy = 0.0;
                                for (int a = 0; a < 4; a++)
                                    for (int b = 0; b < 4; b++)
                                        vd += BT[i][a] * d[a][b] * BT[j][b];
                                for (int u = 0; u < 2; u++)
                                    for (int v = 0; v < 2; v++)
                                        vy += A[i][u] * e[u][v] * A[j][v];
                                sum[i][j] += vy * vd;
                            }
                    }
                for (int r = 0; r < 3; r++)
                    for (int s = 0; s < 3; s++)
                        for (int i = 0; i < 4; i++)
                            for (int j = 0; j < 4; j++)
                                out[r][s] += GT[r][i] * sum[i][j] * GT[s][j];
            }
            for (int r = 0; r < 3; r++)
                for (int s = 0; s < 3; s++)
                    m[idx4(p->C, 3, 3, k, c, r, s)] = out[r][s];
        }
}

void ref_conv2d_bwd(const struct ref_conv *p,
                    const double *x,   /* (N,C,H,W) */
                    const double *w,   /* (K,C,R,S) */
                    const double *dy,  /* (N,K,P,Q) */
                    double *dx,        /* (N,C,H,W) += */
                    double *dw,        /* (K,C,R,S) += */
                    double *db)        /* (K) += */
{
    int P, Q;
    ref_conv2d_out_size(p, &P, &Q);
    for (int n = 0; n < p->N; n++)
        for (int k = 0; k < p->K; k++)
            for (int op = 0; op < P; op++)
                for (int oq = 0; oq < Q; oq++) {
                    double g = dy[idx4(p->K, P, Q, n, k, op, oq)];
                    if (db)
                        db[k] += g;
                    for (int c = 0; c < p->C; c++)
                        for (int r = 0; r < p->R; r++) {
                            int h = op * p->stride_h - p->pad_h + r;
                            if (h < 0 || h >= p->H)
                                continue;
                            for (int s = 0; s < p->S; s++) {
                                int ww = oq * p->stride_w - p->pad_w + s;
                                if (ww < 0 || ww >= p->W)
                                    continue;
                                size_t xi = idx4(p->C, p->H, p->W, n, c, h, ww);
                                size_t wi = idx4(p->C, p->R, p->S, k, c, r, s);
                                if (dx)
                                    dx[xi] += g * w[wi];
                                if (dw)
                                    dw[wi] += g * x[xi];
                            }
                        }
                }
}

void ref_conv_transpose2d_fwd(const struct ref_conv *p,
                              const double *x,   /* (N,C,H,W) */
                              const double *w,   /* (C,K,R,S) */
                              const double *b,   /* (K) or NULL */
                              double *y)         /* (N,K,P,Q) */
{
    int P, Q;
    ref_conv_transpose2d_out_size(p, &P, &Q);
    for (int n = 0; n < p->N; n++)
        for (int k = 0; k < p->K; k++)
            for (int i = 0; i < P * Q; i++)
                y[idx4(p->K, P, Q, n, k, 0, 0) + (size_t)i] = b ? b[k] : 0.0;
    for (int n = 0; n < p->N; n++)
        for (int c = 0; c < p->C; c++)
            for (int h = 0; h < p->H; h++)
                for (int ww = 0; ww < p->W; ww++) {
                    double xv = x[idx4(p->C, p->H, p->W, n, c, h, ww)];
                    for (int k = 0; k < p->K; k++)
                        for (int r = 0; r < p->R; r++) {
                            int op = h * p->stride_h - p->pad_h + r;
                            if (op < 0 || op >= P)
                                continue;
                            for (int s = 0; s < p->S; s++) {
                                int oq = ww * p->stride_w - p->pad_w + s;
                                if (oq < 0 || oq >= Q)
                                    continue;
                                y[idx4(p->K, P, Q, n, k, op, oq)] +=
                                    xv * w[idx4(p->K, p->R, p->S, c, k, r, s)];
                            }
                        }
                }
}

void ref_conv_transpose2d_bwd(const struct ref_conv *p,
                              const double *x,   /* (N,C,H,W) */
                              const double *w,   /* (C,K,R,S) */
                              const double *dy,  /* (N,K,P,Q) */
                              double *dx,        /* (N,C,H,W) += */
                              double *dw,        /* (C,K,R,S) += */
                              double *db)        /* (K) += */
{
    int P, Q;
    ref_conv_transpose2d_out_size(p, &P, &Q);
    if (db)
        for (int n = 0; n < p->N; n++)
            for (int k = 0; k < p->K; k++)
                for (int i = 0; i < P * Q; i++)
                    db[k] += dy[idx4(p->K, P, Q, n, k, 0, 0) + (size_t)i];
    for (int n = 0; n < p->N; n++)
        for (int c = 0; c < p->C; c++)
            for (int h = 0; h < p->H; h++)
                for (int ww = 0; ww < p->W; ww++) {
                    size_t xi = idx4(p->C, p->H, p->W, n, c, h, ww);
                    double acc = 0.0;
                    for (int k = 0; k < p->K; k++)
                        for (int r = 0; r < p->R; r++) {
                            int op = h * p->stride_h - p->pad_h + r;
                            if (op < 0 || op >= P)
                                continue;
                            for (int s = 0; s < p->S; s++) {
                                int oq = ww * p->stride_w - p->pad_w + s;
                                if (oq < 0 || oq >= Q)
                                    continue;
                                double g = dy[idx4(p->K, P, Q, n, k, op, oq)];
                                size_t wi = idx4(p->K, p->R, p->S, c, k, r, s);
                                acc += g * w[wi];
                                if (dw)
                                    dw[wi] += g * x[xi];
                            }
                        }
                    if (dx)
                        dx[xi] += acc;
                }
}

void ref_linear_fwd(const struct ref_linear *p,
                    const double *x,   /* (N,in) */
                    const double *w,   /* (out,in) */
                    const double *b,   /* (out) or NULL */
                    double *y)         /* (N,out) */
{
    for (int n = 0; n < p->N; n++)
        for (int o = 0; o < p->out; o++) {
            double acc = b ? b[o] : 0.0;
            for (int i = 0; i < p->in; i++)
                acc += x[(size_t)n * p->in + i] * w[(size_t)o * p->in + i];
            y[(size_t)n * p->out + o] = acc;
        }
}

void ref_linear_bwd(const struct ref_linear *p,
                    const double *x,   /* (N,in) */
                    const double *w,   /* (out,in) */
                    const double *dy,  /* (N,out) */
                    double *dx,        /* (N,in) += */
                    double *dw,        /* (out,in) += */
                    double *db)        /* (out) += */
{
    for (int n = 0; n < p->N; n++)
        for (int o = 0; o < p->out; o++) {
            double g = dy[(size_t)n * p->out + o];
            if (db)
                db[o] += g;
            for (int i = 0; i < p->in; i++) {
                if (dx)
                    dx[(size_t)n * p->in + i] += g * w[(size_t)o * p->in + i];
                if (dw)
                    dw[(size_t)o * p->in + i] += g * x[(size_t)n * p->in + i];
            }
        }
}
