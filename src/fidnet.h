/* The feature network of the GAN's Fréchet distance: the classifier of
 * models/classifier.h trained once on Fashion-MNIST by vkaccum itself, its weights in
 * a checkpoint, and the penultimate features (VKA_CLASSIFIER_FEATURES per image) of
 * images in [-1, 1].
 *
 * Images come through vka_loader with the GAN's own preprocessing: each 28x28
 * Fashion-MNIST image is resized to res x res by vka_augment (VKA_FIT_RESIZE, no random
 * augmentation), grey replicated to 3 channels when channels is 3, and normalised with
 * mean 0.5 and std 0.5; training draws the loader's order from the seed.
 *
 * A checkpoint is a weights-only vka_ckpt_save file whose metadata says what it is
 * ("fidnet": "1", the version of this layout) and holds res, channels, features (the dimension),
 * classes, accuracy (on t10k), floor (the Fréchet distance between the first n t10k
 * and the first n train images: the best a generator can hope for), n, steps.
 *
 * Owner: a vka_fidnet owns its graph and borrows the context, which must outlive it. */
#ifndef VKA_FIDNET_H
#define VKA_FIDNET_H

#include <stdbool.h>
#include <stdint.h>

#include "fid.h"
#include "vk/vk.h"

struct vka_fidnet_train_params {
    const char *out;       /* checkpoint path, written atomically; NULL: not saved */
    uint32_t res;          /* 0: 32 */
    uint32_t channels;     /* 0: 1 */
    uint32_t steps;        /* optimizer steps of batch 64; 0: VKA_FIDNET_DEFAULT_STEPS */
    uint32_t micro;        /* micro-batch, 1..64; 0: 64 */
    uint32_t n;            /* images per side of the floor, 2..10000; 0: 5000 */
    uint32_t train_count;  /* the first train_count training images only; 0: all 60000 */
    uint32_t eval_count;   /* the first eval_count t10k images for accuracy; 0: all */
    uint64_t seed;         /* initialisation and data order */
    uint32_t workers;      /* data loading threads, <= 64 (the result does not depend on
                            * them); 0: the calling thread */
    double lr;             /* AdamW's peak rate, cosine-annealed to 0; 0: 3e-3 */
    /* called after every optimizer step with the window's mean loss; may be NULL */
    void (*on_step)(void *user, uint64_t step, uint64_t steps, double loss);
    void *user;
};

/* 0.85 epoch: 88.6 % on t10k with seed 0 (88.4 % with lr 2e-3 in the data order before
 * vka_loader); 402 s of CPU time on lavapipe, so about 4 minutes on 2 free cores */
#define VKA_FIDNET_DEFAULT_STEPS 800u

struct vka_fidnet_report {
    double accuracy;     /* on the first eval_count t10k images */
    double floor;        /* FD(first n t10k, first n train) */
    uint64_t steps;
    double seconds;      /* the whole call: training, evaluation, floor, save */
    double first_loss;   /* the first window's mean loss */
    double last_loss;    /* the last window's */
};

int vka_fidnet_train(struct vka_ctx *ctx, const struct vka_fidnet_train_params *p,
                     struct vka_fidnet_report *r);

struct vka_fidnet;

/* Errors name path: a missing or unreadable file, a file without the fid-net metadata,
 * tensors that are not this network's. */
int vka_fidnet_load(struct vka_ctx *ctx, const char *path, struct vka_fidnet **net);
void vka_fidnet_destroy(struct vka_fidnet **net);

uint32_t vka_fidnet_dim(const struct vka_fidnet *net);
uint32_t vka_fidnet_res(const struct vka_fidnet *net);
uint32_t vka_fidnet_channels(const struct vka_fidnet *net);
double vka_fidnet_floor(const struct vka_fidnet *net);

/* x (n, channels, res, res) NCHW in [-1, 1] -> feats (n, dim). Any n; runs forward-only
 * plans of at most VKA_FIDNET_CHUNK images. Each image's features depend on that image
 * only: the same bits however many are passed per call. */
#define VKA_FIDNET_CHUNK 100u
int vka_fidnet_features(struct vka_fidnet *net, const float *x, uint32_t n, float *feats);

/* Initialises *s (the caller frees it with vka_fid_stats_free) with the feature
 * statistics of the first n images of Debian's Fashion-MNIST split "train" or "t10k". */
int vka_fidnet_real_stats(struct vka_fidnet *net, const char *split, uint32_t n,
                          struct vka_fid_stats *s);

#endif
