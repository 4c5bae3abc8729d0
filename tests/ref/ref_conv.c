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

/* The transforms' matrices of Winograd F(m x m, 3x3) in magnitude (shaders/winograd.comp
 * writes them with their signs), for m = 2 (index 0) and m = 4 (index 1); an m = 2 matrix
 * uses the first 4 rows and columns. */
static const double WG[2][6][3] = {
    { { 1, 0, 0 }, { .5, .5, .5 }, { .5, .5, .5 }, { 0, 0, 1 } },
    { { 1. / 4, 0, 0 }, { 1. / 6, 1. / 6, 1. / 6 }, { 1. / 6, 1. / 6, 1. / 6 },
      { 1. / 24, 1. / 12, 1. / 6 }, { 1. / 24, 1. / 12, 1. / 6 }, { 0, 0, 1 } },
};
static const double WBT[2][6][6] = {
    { { 1, 0, 1, 0 }, { 0, 1, 1, 0 }, { 0, 1, 1, 0 }, { 0, 1, 0, 1 } },
    { { 4, 0, 5, 0, 1, 0 }, { 0, 4, 4, 1, 1, 0 }, { 0, 4, 4, 1, 1, 0 }, { 0, 2, 1, 2, 1, 0 },
      { 0, 2, 1, 2, 1, 0 }, { 0, 4, 0, 5, 0, 1 } },
};
static const double WAT[2][4][6] = {
    { { 1, 1, 1, 0 }, { 0, 1, 1, 1 } },
    { { 1, 1, 1, 1, 1, 0 }, { 0, 1, 1, 2, 2, 0 }, { 0, 1, 1, 4, 4, 0 }, { 0, 1, 1, 8, 8, 1 } },
};

/* The (m+2) x (m+2) input patch of Winograd tile (th, tw) of sample n, channel c (zero
 * outside) */
static void wino_patch(const struct ref_conv *p, const double *x, int m, int n, int c,
                       int th, int tw, double d[6][6])
{
    for (int i = 0; i < m + 2; i++)
        for (int j = 0; j < m + 2; j++) {
            int h = th * m - p->pad_h + i, ww = tw * m - p->pad_w + j;
            int in = h >= 0 && h < p->H && ww >= 0 && ww < p->W;
            d[i][j] = in ? x[idx4(p->C, p->H, p->W, n, c, h, ww)] : 0.0;
        }
}

void ref_conv2d_wino_abs(const struct ref_conv *p, int m, const double *x, const double *w,
                         double *out)
{
    int P, Q, al = m + 2, mi = m == 4;
    const double(*G)[3] = WG[mi], (*BT)[6] = WBT[mi], (*AT)[6] = WAT[mi];
    ref_conv2d_out_size(p, &P, &Q);
    for (int n = 0; n < p->N; n++)
        for (int k = 0; k < p->K; k++)
            for (int th = 0; th < (P + m - 1) / m; th++)
                for (int tw = 0; tw < (Q + m - 1) / m; tw++) {
                    double sum[6][6] = { { 0 } };
                    for (int c = 0; c < p->C; c++) {
                        double d[6][6];
                        wino_patch(p, x, m, n, c, th, tw, d);
                        for (int i = 0; i < al; i++)
                            for (int j = 0; j < al; j++) {
                                double u = 0.0, v = 0.0;
                                for (int r = 0; r < 3; r++)
                                    for (int s = 0; s < 3; s++)
                                        u += G[i][r] * w[idx4(p->C, 3, 3, k, c, r, s)] * G[j][s];
                                for (int a = 0; a < al; a++)
                                    for (int b = 0; b < al; b++)
                                        v += BT[i][a] * d[a][b] * BT[j][b];
                                sum[i][j] += u * v;
                            }
                    }
                    for (int a = 0; a < m; a++)
                        for (int b = 0; b < m; b++) {
                            int op = th * m + a, oq = tw * m + b;
                            if (op >= P || oq >= Q)
                                continue;
                            double t = 0.0;
                            for (int i = 0; i < al; i++)
                                for (int j = 0; j < al; j++)
                                    t += AT[a][i] * sum[i][j] * AT[b][j];
                            out[idx4(p->K, P, Q, n, k, op, oq)] = t;
                        }
                }
}

void ref_conv2d_wino_dw_abs(const struct ref_conv *p, int m, const double *x,
                            const double *dy, double *out)
{
    int P, Q, al = m + 2, mi = m == 4;
    const double(*G)[3] = WG[mi], (*BT)[6] = WBT[mi], (*AT)[6] = WAT[mi];
    ref_conv2d_out_size(p, &P, &Q);
    for (int k = 0; k < p->K; k++)
        for (int c = 0; c < p->C; c++) {
            double o[3][3] = { { 0 } };
            for (int n = 0; n < p->N; n++) {
                double sum[6][6] = { { 0 } };
                for (int th = 0; th < (P + m - 1) / m; th++)
                    for (int tw = 0; tw < (Q + m - 1) / m; tw++) {
                        double d[6][6], e[4][4];
                        wino_patch(p, x, m, n, c, th, tw, d);
                        for (int u = 0; u < m; u++)
                            for (int v = 0; v < m; v++) {
                                int oh = th * m + u, ow = tw * m + v;
                                e[u][v] = oh < P && ow < Q ? dy[idx4(p->K, P, Q, n, k, oh, ow)]
                                                           : 0.0;
                            }
                        for (int i = 0; i < al; i++)
                            for (int j = 0; j < al; j++) {
                                double vd = 0.0, vy = 0.0;
                                for (int a = 0; a < al; a++)
                                    for (int b = 0; b < al; b++)
                                        vd += BT[i][a] * d[a][b] * BT[j][b];
                                /* A = (A^T)^T */
                                for (int u = 0; u < m; u++)
                                    for (int v = 0; v < m; v++)
                                        vy += AT[u][i] * e[u][v] * AT[v][j];
                                sum[i][j] += vy * vd;
                            }
                    }
                for (int r = 0; r < 3; r++)
                    for (int s = 0; s < 3; s++)
                        for (int i = 0; i < al; i++)
                            for (int j = 0; j < al; j++)
                                o[r][s] += G[i][r] * sum[i][j] * G[j][s];
            }
            for (int r = 0; r < 3; r++)
                for (int s = 0; s < 3; s++)
                    out[idx4(p->C, 3, 3, k, c, r, s)] = o[r][s];
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
