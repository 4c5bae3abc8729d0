/* Checkpoints: a graph's weights, and optionally a trainer's whole state, in one
 * safetensors file (src/safetensors.c writes it atomically).
 *
 * Tensors named as the model's PyTorch state_dict (PyTorch shapes and layouts; BatchNorm
 * also gets num_batches_tracked) load into the equivalent PyTorch module with
 *   sd = {k: v for k, v in load_file(p).items() if not k.startswith("train.")}
 * Everything under "train." is the training state that resumes a run bit-exactly, even
 * mid-window: the gradient and loss accumulators, the optimizer's moments, the counters,
 * and whatever the caller adds (RNG states, the data loader's position). */
#ifndef VKA_CHECKPOINT_H
#define VKA_CHECKPOINT_H

#include "safetensors.h"
#include "train.h"

/* ntr 0: weights only. Several trainers of one graph (a GAN's D and G) keep their
 * optimizer state and counters under train.NAME. (vka_trainer_params.name); the
 * gradient and loss accumulators of the graph are saved once. extra: more "train."
 * tensors (their names must start with it). */
int vka_ckpt_save(const char *path, struct vka_graph *g, struct vka_trainer *const *tr,
                  size_t ntr, const struct vka_st_tensor *extra, size_t n_extra,
                  const struct vka_st_meta *meta, size_t n_meta);

/* Loads the model's tensors (nothing else: mmsegmentation's --load-from): a missing,
 * extra or misshapen tensor is an error naming it, and nothing is loaded then. */
int vka_ckpt_load_weights(const char *path, struct vka_graph *g);

/* The same from a file already read, which may hold more (a GAN checkpoint's G_ema for
 * a sampler): read once, a file replaced in between cannot change under the caller. */
int vka_ckpt_load_weights_file(const struct vka_st_file *f, struct vka_graph *g);

/* Restores weights and the trainers' state from a file already read. Every train.*
 * tensor and counter is checked first (an out-of-range value is refused naming the
 * tensor); nothing is changed on an error. */
int vka_ckpt_restore(const struct vka_st_file *f, struct vka_graph *g,
                     struct vka_trainer *const *tr, size_t ntr);

/* Loads weights and the trainer's state; *file stays open for the caller's extras (NULL
 * allowed) and is the caller's to destroy. Nothing is changed on an error. */
int vka_ckpt_load(const char *path, struct vka_graph *g, struct vka_trainer *const *tr,
                  size_t ntr, struct vka_st_file **file);

#endif
