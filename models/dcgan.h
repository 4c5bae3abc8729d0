/* DCGAN (Radford et al. 2016) generator and discriminator for square images of res
 * 32, 64, 128 or 256, as the PyTorch modules of tools/parity/dcgan.py name them.
 *
 * With L = log2(res) - 2 and m(i) = min(2^i, 8) (the channel multiplier, capped at 8
 * as StyleGAN caps its widths), width w:
 *   G  z (N, z_dim, 1, 1) -> ConvT(z_dim, m(L-1) w, 4, 1, 0) [BN] ReLU   (4 x 4)
 *      -> for i = L-1 .. 1: ConvT(m(i) w, m(i-1) w, 4, 2, 1) [BN] ReLU   (doubling)
 *      -> ConvT(w, channels, 4, 2, 1) -> Tanh                             (res x res)
 *   D  x (N, channels, res, res) -> Conv(channels, w, 4, 2, 1) LeakyReLU(0.2)
 *      -> for i = 1 .. L-1: Conv(m(i-1) w, m(i) w, 4, 2, 1) [BN] LeakyReLU(0.2)
 *      -> Conv(m(L-1) w, 1, 4, 1, 0): one logit per image (N, 1, 1, 1), no sigmoid
 * For res 64 and w 64 that is the DCGAN paper's pair (PyTorch's DCGAN example). Each
 * is one nn.Sequential named PREFIX.main: modules are numbered in order (conv, norm,
 * activation), so parameters are PREFIX.main.K.weight as in that example.
 *
 * Norms. BATCH: BatchNorm after every conv but D's first and the outputs', statistics
 * per micro-batch (a micro-batch of b normalises over b samples, not over the
 * effective batch; D normalises real and fake micro-batches separately, as calling
 * netD twice does); convs have no bias. NONE: no norm, convs have biases; then every
 * op is per sample and k micro-batches of b give exactly the update of one batch of kb.
 *
 * Initialisation (the paper's): conv weights N(0, 0.02), BatchNorm weights N(1, 0.02)
 * and biases 0; conv biases keep PyTorch's default. */
#ifndef VKA_MODELS_DCGAN_H
#define VKA_MODELS_DCGAN_H

#include "graph.h"

struct vka_dcgan_params {
    uint32_t res;       /* 32, 64, 128, 256 */
    uint32_t channels;  /* 1 or 3 */
    uint32_t width;     /* w: 64 in the paper */
    uint32_t z_dim;     /* 100 in the paper */
    bool batch_norm;
};

int vka_dcgan_check(const struct vka_dcgan_params *p);
/* G applied to z (N, z_dim, 1, 1): returns the image value (N, channels, res, res). */
int vka_dcgan_generator(struct vka_graph *g, const struct vka_dcgan_params *p,
                        const char *prefix, int z);
/* D applied to x: returns the logits (N, 1, 1, 1). Applied again with the same prefix,
 * it shares its parameters (and BatchNorm statistics). */
int vka_dcgan_discriminator(struct vka_graph *g, const struct vka_dcgan_params *p,
                            const char *prefix, int x);

#endif
