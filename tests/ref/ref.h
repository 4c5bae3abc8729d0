/*
 * ref.h - plain-C double-precision reference implementations of the
 * neural-network ops that vkaccum's GLSL kernels are checked against.
 *
 * Global rules (every function below follows them):
 *  - All arrays are double, logical layout NCHW, row-major, contiguous.
 *    Conv weights are OIHW = (K, C, R, S); transposed-conv weights are
 *    IOHW = (C_in, C_out, R, S); linear weights are (out, in). Same as PyTorch.
 *  - Semantics equal torch.nn.functional (dilation 1, groups 1).
 *  - Forward functions WRITE (=) their outputs.
 *  - Backward functions ADD (+=) into every gradient output they receive
 *    (dx, dw, db, dgamma, dbeta, ...) and never overwrite. A NULL gradient
 *    pointer means "not wanted" and is skipped.
 *  - An optional bias / gamma / beta pointer may be NULL in forward (absent).
 *  - Shapes in comments are written (N,C,H,W); "n" is a flat element count.
 */
#ifndef VKACCUM_REF_H
#define VKACCUM_REF_H

/* ------------------------------------------------------------------------ */
/* Convolution family                                                        */
/* ------------------------------------------------------------------------ */

/*
 * Shape of a conv2d or conv_transpose2d.
 *   conv2d:           x (N,C,H,W), w (K,C,R,S), b (K), y (N,K,P,Q),
 *                     P = (H + 2*pad_h - R) / stride_h + 1 (floor),
 *                     out_pad_h / out_pad_w are ignored.
 *   conv_transpose2d: x (N,C,H,W) with C = input channels,
 *                     w (C,K,R,S) with K = output channels, b (K),
 *                     y (N,K,P,Q), P = (H-1)*stride_h - 2*pad_h + R + out_pad_h.
 *                     PyTorch requires out_pad < stride.
 */
struct ref_conv {
    int N, C, H, W, K, R, S;
    int stride_h, stride_w, pad_h, pad_w, out_pad_h, out_pad_w;
};

void ref_conv2d_out_size(const struct ref_conv *p, int *P, int *Q);
void ref_conv_transpose2d_out_size(const struct ref_conv *p, int *P, int *Q);

/*
 * conv2d (cross-correlation, zero padding):
 *   y[n,k,p,q] = b[k] + sum_{c,r,s} x[n,c, p*stride_h - pad_h + r,
 *                                        q*stride_w - pad_w + s] * w[k,c,r,s]
 * bwd: dx (N,C,H,W), dw (K,C,R,S), db (K); each may be NULL.
 */
void ref_conv2d_fwd(const struct ref_conv *p,
                    const double *x,   /* (N,C,H,W) */
                    const double *w,   /* (K,C,R,S) */
                    const double *b,   /* (K) or NULL */
                    double *y);        /* (N,K,P,Q) */
/*
 * The magnitudes Winograd F(m x m, 3x3) (m = 2 or 4) computes conv2d's y through (3x3,
 * stride 1; the forward of src/ops/conv.c's wino()): for each m x m output tile
 *   out[n,k,tile] = |A^T| [ sum_c (|G| w[k,c] |G^T|) . (|B^T| d[n,c] |B|) ] |A|
 * with d the tile's (m+2) x (m+2) patch of x (zero outside) and the transforms' matrices
 * taken elementwise in magnitude; x and w must hold magnitudes (>= 0). Every rounding of
 * the transformed computation happens at a magnitude below these, which bounds its error
 * (tests/opcases.c). No bias.
 */
void ref_conv2d_wino_abs(const struct ref_conv *p, int m,
                         const double *x,   /* (N,C,H,W), >= 0 */
                         const double *w,   /* (K,C,3,3), >= 0 */
                         double *out);      /* (N,K,P,Q) */
/*
 * The magnitudes Winograd F(3x3, m x m) computes conv2d's dw through (the weight gradient
 * of src/ops/conv.c's wino_wgrad()): for each m x m tile of dy's
 *   out[k,c] = sum over samples of |G^T| [ sum over tiles of (|A| dy[n,k] |A^T|) .
 *              (|B^T| d[n,c] |B|) ] |G|
 * with d the tile's (m+2) x (m+2) patch of x (zero outside); x and dy must hold
 * magnitudes.
 */
void ref_conv2d_wino_dw_abs(const struct ref_conv *p, int m,
                            const double *x,   /* (N,C,H,W), >= 0 */
                            const double *dy,  /* (N,K,P,Q), >= 0 */
                            double *out);      /* (K,C,3,3) */
void ref_conv2d_bwd(const struct ref_conv *p,
                    const double *x,   /* (N,C,H,W) */
                    const double *w,   /* (K,C,R,S) */
                    const double *dy,  /* (N,K,P,Q) */
                    double *dx,        /* (N,C,H,W) += */
                    double *dw,        /* (K,C,R,S) += */
                    double *db);       /* (K) += */

/*
 * conv_transpose2d (the adjoint of conv2d with respect to its input):
 *   y[n,k, h*stride_h - pad_h + r, w*stride_w - pad_w + s]
 *       += x[n,c,h,w] * w[c,k,r,s]   (positions outside [0,P)x[0,Q) dropped)
 *   then y[n,k,.,.] += b[k]. output padding only enlarges P, Q.
 * bwd: dx (N,C,H,W), dw (C,K,R,S), db (K); each may be NULL.
 */
void ref_conv_transpose2d_fwd(const struct ref_conv *p,
                              const double *x,   /* (N,C,H,W) */
                              const double *w,   /* (C,K,R,S) */
                              const double *b,   /* (K) or NULL */
                              double *y);        /* (N,K,P,Q) */
void ref_conv_transpose2d_bwd(const struct ref_conv *p,
                              const double *x,   /* (N,C,H,W) */
                              const double *w,   /* (C,K,R,S) */
                              const double *dy,  /* (N,K,P,Q) */
                              double *dx,        /* (N,C,H,W) += */
                              double *dw,        /* (C,K,R,S) += */
                              double *db);       /* (K) += */

/*
 * linear: y = x W^T + b, i.e. y[n,o] = b[o] + sum_i x[n,i] * w[o,i].
 */
struct ref_linear {
    int N, in, out;
};

void ref_linear_fwd(const struct ref_linear *p,
                    const double *x,   /* (N,in) */
                    const double *w,   /* (out,in) */
                    const double *b,   /* (out) or NULL */
                    double *y);        /* (N,out) */
void ref_linear_bwd(const struct ref_linear *p,
                    const double *x,   /* (N,in) */
                    const double *w,   /* (out,in) */
                    const double *dy,  /* (N,out) */
                    double *dx,        /* (N,in) += */
                    double *dw,        /* (out,in) += */
                    double *db);       /* (out) += */

/* ------------------------------------------------------------------------ */
/* Normalisation                                                             */
/* ------------------------------------------------------------------------ */

/*
 * batch_norm over (N,H,W) per channel c; M = N*H*W elements per channel.
 *
 * Training fwd:
 *   mean[c]   = (1/M) sum x,  var[c] = (1/M) sum (x-mean)^2   (BIASED)
 *   invstd[c] = 1 / sqrt(var[c] + eps)
 *   y = (x - mean) * invstd * gamma[c] + beta[c]   (gamma=1 / beta=0 if NULL)
 *   if running_mean != NULL: running_mean = (1-momentum)*running_mean + momentum*mean
 *   if running_var  != NULL: running_var  = (1-momentum)*running_var
 *                                          + momentum * var * M/(M-1)  (UNBIASED)
 *   save_mean / save_invstd (C) receive mean and invstd for bwd (may be NULL).
 *   PyTorch refuses M == 1 in training; the unbiased variance is then undefined.
 *
 * Eval fwd: y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta.
 *
 * Training bwd (gradient flows through the batch statistics), with
 *   xhat = (x - mean)*invstd, g = dy*gamma (dy if gamma NULL):
 *   dx     += invstd * (g - mean_M(g) - xhat * mean_M(g*xhat))
 *   dgamma += sum_M dy*xhat,   dbeta += sum_M dy.
 */
struct ref_bn {
    int N, C, H, W;
    double eps, momentum;
};

void ref_batch_norm_fwd_train(const struct ref_bn *p,
                              const double *x,        /* (N,C,H,W) */
                              const double *gamma,    /* (C) or NULL */
                              const double *beta,     /* (C) or NULL */
                              double *running_mean,   /* (C) updated or NULL */
                              double *running_var,    /* (C) updated or NULL */
                              double *save_mean,      /* (C) out or NULL */
                              double *save_invstd,    /* (C) out or NULL */
                              double *y);             /* (N,C,H,W) */
void ref_batch_norm_fwd_eval(const struct ref_bn *p,
                             const double *x,            /* (N,C,H,W) */
                             const double *gamma,        /* (C) or NULL */
                             const double *beta,         /* (C) or NULL */
                             const double *running_mean, /* (C) */
                             const double *running_var,  /* (C) */
                             double *y);                 /* (N,C,H,W) */
void ref_batch_norm_bwd(const struct ref_bn *p,
                        const double *x,           /* (N,C,H,W) */
                        const double *gamma,       /* (C) or NULL */
                        const double *save_mean,   /* (C) from fwd_train */
                        const double *save_invstd, /* (C) from fwd_train */
                        const double *dy,          /* (N,C,H,W) */
                        double *dx,                /* (N,C,H,W) += */
                        double *dgamma,            /* (C) += */
                        double *dbeta);            /* (C) += */
/* Eval bwd: the running statistics are constants, so with invstd = 1 / sqrt(running_var
 * + eps) and xhat = (x - running_mean) * invstd:
 *   dx += gamma * invstd * dy,  dgamma += sum_M dy * xhat,  dbeta += sum_M dy. */
void ref_batch_norm_bwd_eval(const struct ref_bn *p,
                             const double *x,            /* (N,C,H,W) */
                             const double *gamma,        /* (C) or NULL */
                             const double *running_mean, /* (C) */
                             const double *running_var,  /* (C) */
                             const double *dy,           /* (N,C,H,W) */
                             double *dx,                 /* (N,C,H,W) += */
                             double *dgamma,             /* (C) += */
                             double *dbeta);             /* (C) += */

/*
 * group_norm: channels split into G contiguous groups of C/G (C % G == 0).
 * Statistics per (n,g) over its C/G*H*W elements, biased variance:
 *   y[n,c] = (x - mean[n,g]) * invstd[n,g] * gamma[c] + beta[c]
 * save_mean / save_invstd are (N,G) (may be NULL in fwd).
 * bwd is the batch_norm formula applied per (n,g) with g = dy*gamma[c]:
 *   dx += invstd * (g - mean(g) - xhat * mean(g*xhat)),
 *   dgamma[c] += sum_{n,h,w} dy*xhat,  dbeta[c] += sum_{n,h,w} dy.
 */
struct ref_gn {
    int N, C, H, W, G;
    double eps;
};

void ref_group_norm_fwd(const struct ref_gn *p,
                        const double *x,        /* (N,C,H,W) */
                        const double *gamma,    /* (C) or NULL */
                        const double *beta,     /* (C) or NULL */
                        double *save_mean,      /* (N,G) out or NULL */
                        double *save_invstd,    /* (N,G) out or NULL */
                        double *y);             /* (N,C,H,W) */
void ref_group_norm_bwd(const struct ref_gn *p,
                        const double *x,           /* (N,C,H,W) */
                        const double *gamma,       /* (C) or NULL */
                        const double *save_mean,   /* (N,G) from fwd */
                        const double *save_invstd, /* (N,G) from fwd */
                        const double *dy,          /* (N,C,H,W) */
                        double *dx,                /* (N,C,H,W) += */
                        double *dgamma,            /* (C) += */
                        double *dbeta);            /* (C) += */

/* ------------------------------------------------------------------------ */
/* Activations (elementwise over n values; bwd takes the fwd INPUT x)         */
/* ------------------------------------------------------------------------ */

/*
 * relu:       y = max(x,0);           dx += dy * (x > 0 ? 1 : 0)   (0 at x == 0)
 * leaky_relu: y = x > 0 ? x : slope*x; dx += dy * (x > 0 ? 1 : slope)
 * tanh:       y = tanh(x);            dx += dy * (1 - tanh(x)^2)
 * sigmoid:    y = 1/(1+exp(-x));      dx += dy * s*(1-s)
 */
void ref_relu_fwd(int n, const double *x, double *y);
void ref_relu_bwd(int n, const double *x, const double *dy, double *dx);
void ref_leaky_relu_fwd(int n, double slope, const double *x, double *y);
void ref_leaky_relu_bwd(int n, double slope, const double *x, const double *dy,
                        double *dx);
void ref_tanh_fwd(int n, const double *x, double *y);
void ref_tanh_bwd(int n, const double *x, const double *dy, double *dx);
void ref_sigmoid_fwd(int n, const double *x, double *y);
void ref_sigmoid_bwd(int n, const double *x, const double *dy, double *dx);

/* ------------------------------------------------------------------------ */
/* Pooling                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * Square window k, stride s, zero/implicit padding pad, floor mode:
 *   P = (H + 2*pad - k) / stride + 1,  Q likewise.   x (N,C,H,W), y (N,C,P,Q).
 *
 * max_pool2d (the suite uses k = 2, stride = 2, pad = 0): padded cells never
 *   win. Window scanned row-major; the FIRST maximum wins (strict '>', a NaN
 *   always takes over, as PyTorch's CPU kernel). bwd routes dy only to that
 *   element: dx[argmax] += dy.
 * avg_pool2d, count_include_pad = true: y = (sum of in-bounds x) / (k*k);
 *   in floor mode with pad <= k/2 (PyTorch's requirement) every window lies
 *   inside the padded image, so the divisor is always k*k.
 *   bwd: every in-bounds element of the window gets dy / (k*k).
 */
struct ref_pool {
    int N, C, H, W, k, stride, pad;
};

void ref_pool2d_out_size(const struct ref_pool *p, int *P, int *Q);
void ref_max_pool2d_fwd(const struct ref_pool *p,
                        const double *x,   /* (N,C,H,W) */
                        double *y);        /* (N,C,P,Q) */
void ref_max_pool2d_bwd(const struct ref_pool *p,
                        const double *x,   /* (N,C,H,W) */
                        const double *dy,  /* (N,C,P,Q) */
                        double *dx);       /* (N,C,H,W) += */
/* The element each max window picks, as its index h*W + w in its (n,c) plane
 * (PyTorch's return_indices). */
void ref_max_pool2d_argmax(const struct ref_pool *p,
                           const double *x,   /* (N,C,H,W) */
                           double *arg);      /* (N,C,P,Q) */
void ref_avg_pool2d_fwd(const struct ref_pool *p,
                        const double *x,   /* (N,C,H,W) */
                        double *y);        /* (N,C,P,Q) */
void ref_avg_pool2d_bwd(const struct ref_pool *p,
                        const double *dy,  /* (N,C,P,Q) */
                        double *dx);       /* (N,C,H,W) += */

/* ------------------------------------------------------------------------ */
/* Resampling, concat, elementwise                                            */
/* ------------------------------------------------------------------------ */

/*
 * Resize (N,C,H,W) -> (N,C,OH,OW), any sizes (no scale_factor argument).
 * nearest:  src_h = min(floor(dst_h * H / OH), H-1), computed exactly in
 *           integers. (PyTorch evaluates dst * (float)(H/OH) in float32; the
 *           two agree except where float rounding crosses an integer.)
 * bilinear, align_corners = False (PyTorch area_pixel_compute_source_index):
 *           src = max((dst + 0.5) * H/OH - 0.5, 0); h0 = floor(src);
 *           h1 = min(h0 + 1, H - 1); l1 = src - h0; l0 = 1 - l1; same in w;
 *           y = l0h*(l0w*x[h0,w0] + l1w*x[h0,w1]) + l1h*(l0w*x[h1,w0] + l1w*x[h1,w1]).
 * bwd scatters dy with the same weights into dx (+=).
 */
struct ref_resize {
    int N, C, H, W, OH, OW;
};

void ref_upsample_nearest_fwd(const struct ref_resize *p,
                              const double *x,   /* (N,C,H,W) */
                              double *y);        /* (N,C,OH,OW) */
void ref_upsample_nearest_bwd(const struct ref_resize *p,
                              const double *dy,  /* (N,C,OH,OW) */
                              double *dx);       /* (N,C,H,W) += */
void ref_upsample_bilinear_fwd(const struct ref_resize *p,
                               const double *x,  /* (N,C,H,W) */
                               double *y);       /* (N,C,OH,OW) */
void ref_upsample_bilinear_bwd(const struct ref_resize *p,
                               const double *dy, /* (N,C,OH,OW) */
                               double *dx);      /* (N,C,H,W) += */

/*
 * concat along channels: y[:, 0:C1] = a, y[:, C1:C1+C2] = b.
 * bwd: da += dy[:, 0:C1], db += dy[:, C1:], either may be NULL.
 */
void ref_concat_fwd(int N, int C1, int C2, int H, int W,
                    const double *a,   /* (N,C1,H,W) */
                    const double *b,   /* (N,C2,H,W) */
                    double *y);        /* (N,C1+C2,H,W) */
void ref_concat_bwd(int N, int C1, int C2, int H, int W,
                    const double *dy,  /* (N,C1+C2,H,W) */
                    double *da,        /* (N,C1,H,W) += */
                    double *db);       /* (N,C2,H,W) += */

/*
 * Elementwise over n values (no broadcasting):
 *   add:   y = a + b;      da += dy,       db += dy
 *   mul:   y = a * b;      da += dy * b,   db += dy * a
 *   scale: y = alpha * x;  dx += alpha * dy
 */
void ref_add_fwd(int n, const double *a, const double *b, double *y);
void ref_add_bwd(int n, const double *dy, double *da, double *db);
void ref_mul_fwd(int n, const double *a, const double *b, double *y);
void ref_mul_bwd(int n, const double *a, const double *b, const double *dy,
                 double *da, double *db);
void ref_scale_fwd(int n, double alpha, const double *x, double *y);
void ref_scale_bwd(int n, double alpha, const double *dy, double *dx);

/* ------------------------------------------------------------------------ */
/* Losses                                                                     */
/* ------------------------------------------------------------------------ */

/*
 * Every loss fwd WRITES an unnormalised *sum and the *count that PyTorch's
 * 'mean' reduction would divide by; it never returns a mean. Every loss bwd
 * takes a caller-chosen scale and ADDS scale * d(sum)/d(input) into the
 * input gradient, so scale = 1/count reproduces reduction='mean' and
 * scale = 1 reproduces reduction='sum'. Gradients w.r.t. targets are not
 * provided.
 */

/*
 * Segmentation losses: logits (N,C,H,W), integer targets (N,H,W).
 * A pixel whose target equals ignore_index contributes nothing. A target that
 * is neither ignore_index nor in [0,C) is the caller's error; such a pixel is
 * skipped silently (no assert). C is limited to 1024 (per-pixel scratch).
 */
struct ref_seg {
    int N, C, H, W, ignore_index;
};

/*
 * softmax cross-entropy over the channel axis (F.cross_entropy):
 *   sum   = sum_valid w[t] * -log softmax(x)[t]
 *   count = sum_valid w[t]           (w = class weights (C), NULL = all 1)
 *   bwd:  dlogits[c] += scale * w[t] * (softmax(x)[c] - [c == t])
 * count == 0 (everything ignored) makes PyTorch's mean NaN; that is the
 * caller's business.
 */
void ref_softmax_ce_fwd(const struct ref_seg *p,
                        const double *logits, /* (N,C,H,W) */
                        const int *target,    /* (N,H,W) */
                        const double *weight, /* (C) or NULL */
                        double *sum, double *count);
void ref_softmax_ce_bwd(const struct ref_seg *p,
                        const double *logits, /* (N,C,H,W) */
                        const int *target,    /* (N,H,W) */
                        const double *weight, /* (C) or NULL */
                        double scale,
                        double *dlogits);     /* (N,C,H,W) += */

/*
 * binary cross-entropy with logits (F.binary_cross_entropy_with_logits),
 * targets t may be soft (any real in [0,1]):
 *   sum = sum max(x,0) - x*t + log(1 + exp(-|x|)),  count = n
 *   bwd: dx += scale * (sigmoid(x) - t)
 */
void ref_bce_logits_fwd(int n, const double *x, const double *t,
                        double *sum, double *count);
void ref_bce_logits_bwd(int n, const double *x, const double *t, double scale,
                        double *dx);

/*
 * Soft Dice over channels, split so it can be accumulated over micro-batches.
 *   p = softmax over channels of logits, o = one-hot(target); valid pixels
 *   only (ignored / out-of-range targets left out entirely).
 *
 * ref_dice_fwd WRITES the per-class sums of one micro-batch:
 *   inter[c] = sum_valid p_c * o_c,   card[c] = sum_valid (p_c + o_c)
 *   The totals of a window are the element-wise sums over its micro-batches.
 *
 * ref_dice_loss_from_sums, on the window totals:
 *   L = 1 - (1/C) sum_c (2*inter[c] + smooth) / (card[c] + smooth)
 *
 * ref_dice_loss_from_sums_bwd ADDS dloss * dL/dinter and dloss * dL/dcard:
 *   dL/dinter[c] = -(2/C) / (card[c] + smooth)
 *   dL/dcard[c]  =  (1/C) * (2*inter[c] + smooth) / (card[c] + smooth)^2
 *
 * ref_dice_bwd, per micro-batch, applies the chain rule with the window's
 * dL/dinter, dL/dcard (arrays of C, from the TOTALS, not the micro-batch):
 *   per valid pixel, g_c = dinter[c] * o_c + dcard[c]      (= dL/dp_c)
 *   dlogits[c] += p_c * (g_c - sum_j p_j * g_j)             (softmax Jacobian)
 *   The result is exact for the window loss because inter and card are linear
 *   in each pixel's p, so every micro-batch sees the same dL/dinter, dL/dcard.
 */
void ref_dice_fwd(const struct ref_seg *p,
                  const double *logits, /* (N,C,H,W) */
                  const int *target,    /* (N,H,W) */
                  double *inter,        /* (C) out */
                  double *card);        /* (C) out */
double ref_dice_loss_from_sums(const double *inter, /* (C) */
                               const double *card,  /* (C) */
                               int C, double smooth);
void ref_dice_loss_from_sums_bwd(const double *inter, /* (C) */
                                 const double *card,  /* (C) */
                                 int C, double smooth, double dloss,
                                 double *dinter,      /* (C) += */
                                 double *dcard);      /* (C) += */
void ref_dice_bwd(const struct ref_seg *p,
                  const double *logits, /* (N,C,H,W) */
                  const int *target,    /* (N,H,W) */
                  const double *dinter, /* (C) dL/dinter */
                  const double *dcard,  /* (C) dL/dcard */
                  double *dlogits);     /* (N,C,H,W) += */

/*
 * MSE: sum = sum (x-t)^2, count = n;  bwd: dx += scale * 2*(x-t)
 * L1:  sum = sum |x-t|,   count = n;  bwd: dx += scale * sign(x-t), sign(0) = 0
 */
void ref_mse_fwd(int n, const double *x, const double *t,
                 double *sum, double *count);
void ref_mse_bwd(int n, const double *x, const double *t, double scale,
                 double *dx);
void ref_l1_fwd(int n, const double *x, const double *t,
                double *sum, double *count);
void ref_l1_bwd(int n, const double *x, const double *t, double scale,
                double *dx);

/*
 * Hinge GAN loss (Lim & Ye 2017, BigGAN), targets t in {0, 1} (1 real,
 * 0 fake), s = 2t - 1:
 *   sum = sum max(0, 1 - s*x),  count = n
 *   bwd: dx += scale * (s*x < 1 ? -s : 0)   (0 at the kink, as relu's bwd)
 * linear != 0 (the generator's loss -D(G(z)), also WGAN's):
 *   sum = sum -s*x,  count = n;  bwd: dx += scale * -s
 */
void ref_hinge_fwd(int n, int linear, const double *x, const double *t,
                   double *sum, double *count);
void ref_hinge_bwd(int n, int linear, const double *x, const double *t,
                   double scale, double *dx);

/*
 * sigmoid_mean, a metric: sum = sum sigmoid(x), count = n. It has no bwd:
 * no gradient flows from a metric.
 */
void ref_sigmoid_mean_fwd(int n, const double *x, double *sum, double *count);

#endif
