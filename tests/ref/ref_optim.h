/*
 * ref_optim.h - plain-C double-precision reference of torch.optim's update formulas
 * (torch 1.13, foreach=False) and of torch.nn.utils.clip_grad_norm_, which vkaccum's
 * optimizer kernels are checked against.
 *
 * Every array is double and n long; a step updates p and the state in place from the
 * gradient g it is given (already scaled and clipped: see ref_clip).
 */
#ifndef VKACCUM_REF_OPTIM_H
#define VKACCUM_REF_OPTIM_H

#include <stddef.h>

struct ref_sgd {
    double lr, momentum, dampening, weight_decay;
    int nesterov;
};

/*
 * d = g + weight_decay * p
 * momentum != 0: buf = first ? d : momentum * buf + (1 - dampening) * d
 *                d = nesterov ? d + momentum * buf : buf
 * p -= lr * d
 * first: no step was taken before (PyTorch's momentum_buffer is None).
 */
void ref_sgd_step(const struct ref_sgd *h, size_t n, double *p, const double *g, double *buf,
                  int first);

struct ref_adam {
    double lr, beta1, beta2, eps, weight_decay;
    int decoupled; /* 1: AdamW */
};

/*
 * Step number t (1 for the first):
 * AdamW: p *= 1 - lr * weight_decay;  Adam: d = g + weight_decay * p
 * m = beta1 * m + (1 - beta1) * d;  v = beta2 * v + (1 - beta2) * d^2
 * p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 */
void ref_adam_step(const struct ref_adam *h, size_t n, double *p, const double *g, double *m,
                   double *v, unsigned long long t);

/*
 * g = scale * acc; norm = ||g||_2; with max_norm > 0, g *= min(max_norm / (norm + 1e-6), 1).
 * Returns norm (before clipping).
 */
double ref_clip(size_t n, const double *acc, double scale, double max_norm, double *g);

#endif
