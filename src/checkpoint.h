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

/* tr NULL: weights only. extra: more "train." tensors (their names must start with it). */
int vka_ckpt_save(const char *path, struct vka_graph *g, struct vka_trainer *tr,
                  const struct vka_st_tensor *extra, size_t n_extra,
                  const struct vka_st_meta *meta, size_t n_meta);

/* Loads the model's tensors (nothing else: mmsegmentation's --load-from): a missing,
 * extra or misshapen tensor is an error naming it, and nothing is loaded then. */
int vka_ckpt_load_weights(const char *path, struct vka_graph *g);

/* Loads weights and the trainer's state; *file stays open for the caller's extras (NULL
 * allowed) and is the caller's to destroy. Nothing is changed on an error. */
int vka_ckpt_load(const char *path, struct vka_graph *g, struct vka_trainer *tr,
                  struct vka_st_file **file);

#endif
