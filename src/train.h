/* The accumulation engine (layer 6): the window logic shared by both trainers.
 *
 * A window is the effective batch B, run as micro-batches of at most b samples
 * (k = ceil(B / b) micro-steps, the last one smaller when b does not divide B). Each
 * micro-step replays the graph's plan for its size: forward, the loss's unnormalised SUM
 * and COUNT added into the loss accumulator, backward adding into the gradient
 * accumulators. At the window boundary the optimizer scales the accumulated gradients
 * once by 1 / (the window's total count) (valid pixels for cross-entropy, samples for
 * BCE/MSE: whatever the loss counts), clips, steps, and the accumulators are cleared.
 * Never a mean of per-micro-batch means. The learning-rate schedule counts optimizer
 * steps. The last, partial window of an epoch is stepped with its true count (default)
 * or dropped (drop_last).
 *
 * Owner: a trainer owns its optimizer and command recorder; the caller owns the graph. */
#ifndef VKA_TRAIN_H
#define VKA_TRAIN_H

#include "graph.h"
#include "optim.h"

struct vka_trainer_params {
    uint32_t batch;  /* effective batch B */
    uint32_t micro;  /* micro-batch b (<= B) */
    bool drop_last;
    bool detect_anomaly;     /* each micro-step node by node, naming the first node that
                                writes a non-finite value (vka_plan_run_checked): slow */
    struct vka_optim_params optim; /* count is filled in by the trainer */
    struct vka_lr_schedule lr;
    int loss;        /* the LOSS value whose [sum, count] defines the window's loss */
    int inputs[4];   /* the INPUT values fed at every micro-step, in this order */
    uint32_t ninputs;
    /* Several trainers may share a graph (a GAN's D and G): each runs its phase's plan
     * (0: the whole graph) and steps the parameters the phase trains. */
    int phase;
    /* A window may run its B samples through several passes, each a phase with its own
     * inputs: a GAN's D sees the B real images, then the B fakes. Each pass adds into
     * the gradient in sample order, so any micro-batch split gives the same bits (two
     * applications of D interleaved per micro-batch would not). npasses 0: one pass of
     * phase with inputs. The passes' phases must train the same parameters. */
    struct vka_trainer_pass {
        int phase;
        int inputs[4];
        uint32_t ninputs;
    } passes[2];
    uint32_t npasses;
    const char *name;        /* its checkpoint tensors are train.NAME.*; NULL: train.* */
    int extra_losses[3];     /* LOSS values added to loss (the D phase's fake half): */
    uint32_t nextra_losses;  /*   the window's loss is their sums over loss's count */
    int metrics[4];          /* accumulators [sum, count] cleared and read with the */
    uint32_t nmetrics;       /*   losses, not differentiated (sigmoid_mean) */
    /* --accumulate exact (exact.h): the graph was set exact (vka_graph_set_exact) before
     * vka_graph_alloc, its training plans add every sample's gradient and loss partials
     * into exact elements, so a window's sums do not depend on how its samples are split
     * or ordered (micro-batches, ranks); at the window's end they are resolved to the
     * float gradients and accumulators (correctly rounded) and the step is as usual. */
    bool exact;
};

struct vka_trainer_stats {
    uint64_t micro_steps;
    uint64_t opt_steps;      /* windows stepped (skipped ones included) */
    uint64_t skipped_steps;  /* non-finite gradient norm, or a window with count 0 */
    uint64_t dropped_windows;
    uint64_t samples_seen;   /* samples of the first pass */
    uint32_t window_samples; /* samples in the open window */
    uint32_t window_micro;   /* micro-steps in the open window */
    uint32_t window_pass;    /* the pass the open window is in */
    /* the last closed window */
    double loss;             /* (sum + extra losses' sums) / count */
    double count;
    double metric[4];        /* each metric's sum / count */
    float grad_norm;         /* of the scaled gradient, before clipping */
    double lr;
};

struct vka_trainer;

int vka_trainer_create(struct vka_graph *g, const struct vka_trainer_params *params,
                       struct vka_trainer **t);
void vka_trainer_destroy(struct vka_trainer **t);

/* How many samples the next micro-step should hold: min(b, B - samples in the window). */
uint32_t vka_trainer_next_size(const struct vka_trainer *t);

/* The pass the next micro-step belongs to (0 with one pass). */
uint32_t vka_trainer_next_pass(const struct vka_trainer *t);

/* One micro-step of n samples (1 <= n <= vka_trainer_next_size): inputs[i] points to
 * the host data of the next pass's inputs[i] (NCHW float, or int32 for i32 inputs), n
 * samples.
 * When the window is full, it steps: *stepped (may be NULL) says so, and the caller's
 * boundary work (logging, evaluation, checkpoints) belongs right after. */
int vka_trainer_micro_step(struct vka_trainer *t, const void *const *inputs, uint32_t n,
                           bool *stepped);

/* The end of an epoch: a partial window is stepped with its true count, or dropped
 * (accumulators cleared, no step) with drop_last. *stepped says whether it stepped. */
int vka_trainer_end_epoch(struct vka_trainer *t, bool *stepped);

/* FLOPs of one full window: each pass's batch of samples through its phase's plan
 * (vka_graph_flops). */
int vka_trainer_flops(struct vka_trainer *t, double *flops);
void vka_trainer_get_stats(const struct vka_trainer *t, struct vka_trainer_stats *s);
struct vka_optim *vka_trainer_optim(struct vka_trainer *t);
const char *vka_trainer_name(const struct vka_trainer *t); /* params.name, may be NULL */

/* Data-parallel training over exact accumulators (exact mode only). fn gets, at every
 * window close, before the sums are resolved, this rank's exact elements in one array
 * of nelems * 4 words: the trainer's gradient span (its optimizer's order), then its
 * accumulators (loss, extra losses, metrics: [sum, count] each, 2 elements), then one
 * element holding the number of samples this rank put into the window. fn combines them
 * in place across ranks (an allreduce with vka_exact_add as the operation) and returns 0,
 * or a negative errno that the micro-step (or end of epoch) returns. The trainer uploads
 * the result and resolves it: every rank steps with the same bits. fn is called at every
 * window close, stepped, skipped or dropped (drop_last), and vka_trainer_end_epoch closes
 * (and calls fn for) the epoch's last window even when this rank put no sample into it,
 * since another rank may have: every rank calls fn the same number of times when every
 * rank runs the same number of full windows per epoch. When the combined sample count is
 * 0 (no rank had a partial window) nothing is stepped, dropped or counted. fn NULL (the
 * default): nothing is downloaded. */
typedef int (*vka_combine_fn)(void *user, uint32_t *words, uint64_t nelems);
/* Exact mode: the float gradients and accumulators from their exact twins, as a window's
 * close does before stepping (for what runs plans itself: the parity dump); ordered: 0. */
int vka_trainer_resolve(struct vka_trainer *t);
void vka_trainer_set_combine(struct vka_trainer *t, vka_combine_fn fn, void *user);

/* For checkpoints: the counters, restored by vka_trainer_set_stats. */
void vka_trainer_set_stats(struct vka_trainer *t, const struct vka_trainer_stats *s);
/* Whether counters read back from a file fit this trainer (the open window's pass,
 * samples and micro-steps within its batch and passes, no more steps than micro-steps):
 * -EINVAL with the reason in why (nothing logged) when they do not. */
int vka_trainer_check_stats(const struct vka_trainer *t, const struct vka_trainer_stats *s,
                            char *why, size_t size);

#endif
