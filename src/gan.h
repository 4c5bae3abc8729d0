/* The GAN engine (layer 6, beside train.c): a DCGAN pair trained with gradient
 * accumulation in both phases, an exponential moving average of the generator, and a
 * sampler.
 *
 * One graph holds G, D applied twice (to the real and to the fake micro-batch: one set
 * of parameters, as calling netD twice does), the losses and metrics, and, with EMA,
 * the parameters of G_ema. Registration order G, D, G_ema keeps each set one span of
 * the parameter region. Two phases of that graph, each driven by its own vka_trainer:
 *   D phase: D's loss = L(D(real), real) + L(D(fake), fake), gradients accumulated
 *            for D only, in two passes over the window (vka_trainer's passes): the B
 *            real images, then B fakes z -> G (forward only: nothing is kept for a
 *            backward) -> D. Each pass reaches D's accumulators in sample order, so
 *            any micro-batch split gives the same bits; interleaving real and fake
 *            per micro-batch would change the order of the sum.
 *   G phase: z -> G -> D -> L(D(G(z)), real); gradients flow through D (its
 *            parameters are read, never updated, their accumulators untouched) into G.
 * One iteration is d_steps D windows, then one G window; a window is the effective
 * batch B as micro-batches of b (vka_trainer): each loss is a SUM over the window, and
 * the gradient is scaled once by 1 / B, so k micro-batches of b give the update of one
 * batch of kb (exactly, bit for bit, without BatchNorm: tests/test_gan.c).
 * Losses: BCE (non-saturating: G's target is "real") or hinge (D: max(0, 1 - D(x)) +
 * max(0, 1 + D(G(z))); G: -D(G(z))). Metrics: mean sigmoid(D(x)) and
 * mean sigmoid(D(G(z))) over each window.
 *
 * EMA (StyleGAN2-ADA's rule): after each G step, G_ema = beta * G_ema + (1 - beta) * G
 * with beta = vka_gan_ema_beta (a half-life of ema_kimg thousand images, shortened to
 * ema_rampup times the images seen so far), and G_ema's BatchNorm statistics are
 * copied from G; never per micro-batch.
 *
 * Noise: z of sample k of stream s is N(0, 1) from (seed, s, k) alone (streams: D
 * phase, G phase, and the caller's fixed grids), so any micro-batch split draws the
 * same z for the same sample, and a resumed run continues the streams.
 *
 * The sampler is a separate forward-only G graph in eval mode (BatchNorm uses running
 * statistics), loaded from G_ema (or G without EMA) before each use.
 *
 * Owner: a vka_gan owns its graph, trainers and sampler. */
#ifndef VKA_GAN_H
#define VKA_GAN_H

#include "memplan.h"
#include "models/dcgan.h"
#include "safetensors.h"
#include "train.h"

enum vka_gan_loss { VKA_GAN_BCE, VKA_GAN_HINGE };

struct vka_gan_params {
    struct vka_dcgan_params model;
    enum vka_gan_loss loss;
    uint32_t batch, micro; /* B and b, both phases */
    uint32_t d_steps;      /* D windows per iteration, >= 1 */
    double lr_g, lr_d;     /* Adam */
    double beta1, beta2;
    double ema_kimg;       /* EMA half-life in thousands of images; 0: no EMA */
    double ema_rampup;     /* ramp-up (StyleGAN2-ADA's 0.05); 0: none */
    uint64_t seed;         /* initialisation and noise */
    bool detect_anomaly;   /* the trainers' (train.h) */
    enum vka_recompute recompute; /* what training keeps for backward (graph.h) */
    bool exact;            /* --accumulate exact (train.h, exact.h) */
    uint32_t ranks, rank;  /* this process of ranks sharing each window (dist.h): each
                              trains batch / ranks samples a window, the z of its share
                              and the real images of its loader's shard; 0 or 1: one */
};

struct vka_gan_stats {
    uint64_t iterations;
    uint64_t d_steps, g_steps;    /* optimizer steps */
    uint64_t samples;             /* real images seen */
    double d_loss, g_loss;        /* the last windows' means */
    double d_real, d_fake;        /* mean sigmoid(D) on real / fake in the last D window */
    double g_fake;                /* mean sigmoid(D(G(z))) in the last G window */
    float d_norm, g_norm;         /* gradient norms */
};

/* Real images for one micro-step: x (n, channels, res, res) in [-1, 1]. */
typedef int (*vka_gan_real_fn)(void *user, uint32_t n, float *x);

struct vka_gan;

int vka_gan_create(struct vka_ctx *ctx, const struct vka_gan_params *p, struct vka_gan **gan);
/* The device memory of an engine with these parameters (training at p->micro, the
 * sampler's runs of 64), predicted without allocating anything. */
int vka_gan_plan_memory(struct vka_ctx *ctx, const struct vka_gan_params *p,
                        struct vka_mem_plan *m);
void vka_gan_destroy(struct vka_gan **gan);

/* d_steps D windows, then one G window (and the EMA update). */
int vka_gan_iteration(struct vka_gan *gan, vka_gan_real_fn real, void *user);
/* FLOPs of one iteration: d_steps D windows and a G window (vka_trainer_flops). */
int vka_gan_flops(struct vka_gan *gan, double *flops);
void vka_gan_get_stats(const struct vka_gan *gan, struct vka_gan_stats *s);
/* The training graph (G.*, D.*, G_ema.* parameters), for tests and tools. */
struct vka_graph *vka_gan_graph(struct vka_gan *gan);
/* D's trainer (g false) or G's, for what the caller sets on them: the sum of the ranks'
 * accumulators (vka_trainer_set_combine), counters of a run of several. */
struct vka_trainer *vka_gan_trainer(struct vka_gan *gan, bool g);

/* x (n, channels, res, res) = G_ema(z) (G without EMA), z (n, z_dim) host floats. */
int vka_gan_generate(struct vka_gan *gan, const float *z, uint32_t n, float *x);

/* The EMA's beta for the G step that follows `steps` G steps: 0.5^(B / h) with the
 * half-life h = ema_kimg * 1000 images, or min(h, steps * B * ema_rampup) with a
 * ramp-up (so the first step copies G). */
double vka_gan_ema_beta(const struct vka_gan_params *p, uint64_t steps);

/* z (n, z_dim): samples first .. first + n - 1 of noise stream `stream` (>= 2 for the
 * caller; 0 and 1 are the D and G phases'). */
void vka_gan_noise(uint64_t seed, uint32_t stream, uint64_t first, uint32_t n,
                   uint32_t z_dim, float *z);

/* Checkpoints: G, D (and G_ema) under their names, both trainers' state under train.D.
 * and train.G., the iteration and noise counters; extra: the caller's train.* tensors.
 * vka_gan_load restores all of it (resume) and hands back the file for the caller's
 * extras (the caller destroys it). */
int vka_gan_save(struct vka_gan *gan, const char *path, const struct vka_st_tensor *extra,
                 size_t n_extra, const struct vka_st_meta *meta, size_t n_meta);
int vka_gan_load(struct vka_gan *gan, const char *path, struct vka_st_file **file);

/* ---- sampler: G alone, forward only, eval mode ----------------------------------- */

struct vka_gan_sampler;

/* prefix: "G_ema" or "G", the names its parameters load from. */
int vka_gan_sampler_create(struct vka_ctx *ctx, const struct vka_dcgan_params *p,
                           const char *prefix, struct vka_gan_sampler **s);
void vka_gan_sampler_destroy(struct vka_gan_sampler **s);
struct vka_graph *vka_gan_sampler_graph(struct vka_gan_sampler *s);
/* x (n, channels, res, res) = G(z), in runs of up to 64 images. */
int vka_gan_sampler_run(struct vka_gan_sampler *s, const float *z, uint32_t n, float *x);

#endif
