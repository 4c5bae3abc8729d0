/* Losses (src/ops/loss.c, shaders/loss.comp): cross_entropy, bce_logits, mse, l1, hinge,
 * dice and the metric sigmoid_mean, recorded through the op table (ops.def lists their
 * slots), and the host helpers below.
 *
 * Accumulation. A loss fwd never writes a mean: it ADDS its unnormalised sum and count
 * into the FLAT accumulator y, so a window of micro-batches ends with the window's
 * totals, reduced per sample by a fixed tree and added in sample order (the same bits
 * however the batch is split):
 *   cross_entropy  y = [sum_valid w[t] * -log softmax(x)[t],  sum_valid w[t]]
 *   bce_logits     y = [sum max(x,0) - x*t + log(1 + exp(-|x|)),  N*C*H*W]
 *   mse            y = [sum (x - t)^2,  N*C*H*W]
 *   l1             y = [sum |x - t|,    N*C*H*W]
 *   hinge          y = [sum max(0, 1 - s*x),  N*C*H*W],  s = 2t - 1 (t = 1 real, 0 fake:
 *                  the discriminator's hinge loss of Lim & Ye 2017 / BigGAN)
 *   hinge with p.loss.hinge_linear
 *                  y = [sum -s*x,  N*C*H*W]  (the generator's -D(G(z)) with t = 1; WGAN's)
 *   sigmoid_mean   y = [sum sigmoid(x), N*C*H*W]  (a metric: mean D(x) or D(G(z)); x1
 *                  is not read)
 * bce_logits and hinge also take x1 = NULL: every target is then p.loss.target (the
 * GAN's constant labels, 1 real and 0 fake).
 *   dice           y = [inter[C], card[C]], inter[c] = sum_valid p_c * [t == c],
 *                  card[c] = sum_valid p_c + [t == c], p = softmax over channels
 * "valid" pixels are those whose target is neither p.loss.ignore_index nor outside
 * [0, C); kernels skip the others (they never index with them). Call
 * vka_loss_check_targets on host targets to refuse out-of-range ids with a message.
 * The mean loss of a window is y[0] / y[1] (dice: vka_dice_loss).
 *
 * Backward (cross_entropy, bce_logits, mse, l1, hinge) ADDS p.loss.scale * d(sum)/dx
 * into dx0; the caller passes scale = 1 / (the window's total count), which gives each
 * micro-batch its share of the gradient of the window's mean loss:
 *   cross_entropy  dx[c] += scale * w[t] * (softmax(x)[c] - [c == t])
 *   bce_logits     dx += scale * (sigmoid(x) - t)
 *   mse            dx += scale * 2 * (x - t)
 *   l1             dx += scale * sign(x - t),  sign(0) = 0
 *   hinge          dx += scale * (s*x < 1 ? -s : 0)  (0 at the kink s*x == 1, as
 *                  torch.relu's backward at 0); hinge_linear: dx += scale * -s
 * sigmoid_mean bwd checks its shapes and records nothing: no gradient flows from a metric.
 *
 * Dice backward. The window loss L = 1 - (1/C) sum_c (2 inter[c] + s) / (card[c] + s)
 * depends on the pixels only through the window totals, which are linear in each
 * pixel's p. So: after the window's fwd passes, download y and call vka_dice_loss,
 * which gives L and dy = [dL/dinter[C], dL/dcard[C]]:
 *   dL/dinter[c] = -(2/C) / (card[c] + s)
 *   dL/dcard[c]  =  (1/C) * (2 inter[c] + s) / (card[c] + s)^2
 * upload dy and run dice bwd on each micro-batch with that same dy; per valid pixel,
 * with g_c = dL/dcard[c] + [c == t] dL/dinter[c] (= dL/dp_c),
 *   dx[c] += p_c * (g_c - sum_j p_j g_j)          (the softmax Jacobian)
 * dice bwd does not read p.loss.scale: the weight of the dice term goes into dloss. */
#ifndef VKA_OPS_LOSS_H
#define VKA_OPS_LOSS_H

#include <stdint.h>

/* 0 when every target is ignore_index or in [0, classes); otherwise -EINVAL with a
 * message naming the first offending value and its index. targets (count) host ids. */
int vka_loss_check_targets(const int32_t *targets, uint64_t count, uint32_t classes,
                           int32_t ignore_index);

/* The Dice loss of a window from its totals acc = [inter[C], card[C]] (as dice fwd
 * accumulated them), smooth s (1 is usual). When dy is not NULL it WRITES
 * dy = dloss * [dL/dinter[C], dL/dcard[C]] (2C floats) for dice bwd. Computed in
 * double. */
double vka_dice_loss(const float *acc, uint32_t classes, double smooth, double dloss,
                     float *dy);

#endif
