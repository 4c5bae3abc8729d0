/* The segmentation engine (layer 9, beside src/gan.c): a U-Net with its cross-entropy
 * loss trained by the accumulation trainer of src/train.c, evaluation (mIoU), tiled
 * prediction of images of any size, and checkpoints. It returns numbers and errors
 * (vka_last_error()) and prints nothing; `vkaccum seg` (src/cli/seg.c) drives it.
 *
 * A window is the effective batch B as micro-batches of b from a vka_loader; the loss of
 * the window is its pixel-weighted sum over its total count of valid (not ignored)
 * pixels, class-weighted as PyTorch's weighted mean, and the gradient is scaled once by
 * 1 / count (train.h). An epoch's last, partial window is stepped with its count, or
 * dropped with drop_last.
 *
 * Evaluation and prediction run a phase of the same graph that computes the logits and
 * nothing else (no loss: it would add into the training accumulators), in eval mode
 * (BatchNorm's running statistics), over overlapping tiles of the model's size.
 *
 * Owner: a vka_seg owns its graph and trainer; the caller owns datasets and loaders. */
#ifndef VKA_SEG_H
#define VKA_SEG_H

#include "datasets/dataset.h"
#include "memplan.h"
#include "metrics.h"
#include "models/unet.h"
#include "safetensors.h"
#include "train.h"

struct vka_seg_params {
    struct vka_unet_params model;  /* model.size: the training crop, or the inference tile */
    bool train;                    /* false: inference only (no loss, no trainer) */
    const float *mean, *std;       /* the input normalisation, 3 each */
    int32_t ignore_index;          /* left out of loss and metrics (0..255) */
    uint64_t seed;                 /* initialisation */
    /* training */
    uint32_t batch, micro;         /* B and b */
    bool drop_last;
    bool detect_anomaly;           /* the trainer's (train.h) */
    struct vka_optim_params optim; /* count is filled in */
    struct vka_lr_schedule lr;
    const float *class_weights;    /* model.classes weights, or NULL: unweighted */
    enum vka_recompute recompute;  /* what training keeps for backward (graph.h) */
    bool exact;                    /* --accumulate exact (train.h, exact.h) */
    uint32_t ranks;                /* processes sharing each window (dist.h), which the
                                      loader's shard must match: each trains batch / ranks
                                      samples a window; 0 or 1: one */
};

/* The device memory of an engine with these parameters at micro-batch p->micro (and
 * evaluation in tiles of as many), predicted without allocating anything. */
int vka_seg_plan_memory(struct vka_ctx *ctx, const struct vka_seg_params *p,
                        struct vka_mem_plan *m);

struct vka_seg;
int vka_seg_create(struct vka_ctx *ctx, const struct vka_seg_params *p, struct vka_seg **seg);
void vka_seg_destroy(struct vka_seg **seg);

/* Micro-steps of the loader's batches until the trainer takes an optimizer step (a
 * dropped partial window goes on into the next epoch). With a sharded loader (ranks),
 * this rank's share of each window. */
int vka_seg_window(struct vka_seg *seg, struct vka_loader *loader);
/* FLOPs of one optimizer step (a full window; vka_trainer_flops). */
int vka_seg_flops(struct vka_seg *seg, double *flops);
void vka_seg_get_stats(const struct vka_seg *seg, struct vka_trainer_stats *s);
/* The engine's trainer (NULL for inference), for what the caller sets on it: the sum of
 * the ranks' accumulators (vka_trainer_set_combine), counters of a run of several. */
struct vka_trainer *vka_seg_trainer(struct vka_seg *seg);

/* Tiled inference of one normalised image x (c, h, w): overlapping tiles of the model's
 * size (stride 2/3 of it), up to `batch` tiles per run, logits averaged where tiles
 * overlap; pred (h, w) gets the argmax class, mean_logits (classes, h, w; NULL: not
 * wanted) the averaged logits. */
int vka_seg_predict(struct vka_seg *seg, uint32_t batch, const float *x, uint32_t c, uint32_t h,
                    uint32_t w, uint8_t *pred, float *mean_logits);

/* Called for the first images of an evaluation with the image and its prediction. */
typedef int (*vka_seg_image_fn)(void *user, uint32_t index, const struct vka_image *img,
                                const uint8_t *pred);
/* Evaluates whole images of ds (max_images 0: all) in tiles of `batch`, into m (inited
 * by the caller with the model's classes); fn sees the first n_fn images. */
int vka_seg_evaluate(struct vka_seg *seg, struct vka_dataset *ds, uint32_t max_images,
                     uint32_t batch, struct vka_seg_metrics *m, vka_seg_image_fn fn,
                     void *user, uint32_t n_fn);

/* One part of an evaluation spread over `parts` processes: images ceil(part n / parts) to
 * ceil((part + 1) n / parts) - 1 of the first n = max_images of ds (part 0 always has
 * one) counted into m's confusion matrix, not finished: the caller adds the parts'
 * m->conf together (integers: any order gives the same counts), then calls
 * vka_seg_metrics_finish. fn sees the part's images whose index is below n_fn.
 * vka_seg_evaluate is part 0 of 1, finished. */
int vka_seg_evaluate_part(struct vka_seg *seg, struct vka_dataset *ds, uint32_t max_images,
                          uint32_t part, uint32_t parts, uint32_t batch,
                          struct vka_seg_metrics *m, vka_seg_image_fn fn, void *user,
                          uint32_t n_fn);

/* Checkpoints: the model's tensors with PyTorch's names (train: also the trainer's state
 * and the caller's extra train.* tensors). vka_seg_load restores a training run (resume)
 * and hands back the file, read once, for the caller's extras (the caller destroys it);
 * vka_seg_load_weights loads the model's tensors only. */
int vka_seg_save(struct vka_seg *seg, const char *path, bool state,
                 const struct vka_st_tensor *extra, size_t n_extra,
                 const struct vka_st_meta *meta, size_t n_meta);
int vka_seg_load(struct vka_seg *seg, const char *path, struct vka_st_file **file);
int vka_seg_load_weights(struct vka_seg *seg, const char *path);

/* The parity dump (tools/parity/accum.py): runs the first window of the loader, then one
 * optimizer step at learning rate lr, and writes to path, with the checkpoint's names and
 * PyTorch's layouts, the initial weights (NAME), the window's inputs (input.image
 * (B,3,S,S), input.mask (B,S,S)), the accumulated gradient normalised by the window's
 * count (grad.NAME), the weights after the step (step.NAME) and loss_and_count; *loss and
 * *count are the window's. */
int vka_seg_dump_window(struct vka_seg *seg, struct vka_loader *loader, double lr,
                        const char *path, const struct vka_st_meta *meta, size_t n_meta,
                        double *loss, double *count);

struct vka_graph *vka_seg_graph(struct vka_seg *seg); /* for tests and tools */

#endif
