/* Optimizers (layer 5): SGD (momentum, dampening, Nesterov, weight decay), Adam and
 * AdamW over one flat f32 parameter region and one gradient accumulator region of the
 * same layout, with shaders/optim.comp; and the learning-rate schedules (host side).
 *
 * One step, recorded by vka_optim_record_step (or vka_optim_record once, replayed after
 * each vka_optim_prepare_step) into the caller's recorder, is:
 *   1. the global norm of the scaled gradient g = scale * acc, by a fixed tree of
 *      sums of squares (no atomics: the same bits on every run and for any chunking),
 *      written with the clipping factor to a small device buffer;
 *   2. one update kernel over the whole region that reads that buffer: when the norm is
 *      not finite it leaves parameters and state untouched (a skipped step), otherwise
 *      it applies torch.optim's update (torch 1.13, foreach=False) to
 *      g * min(max_norm / (norm + 1e-6), 1) (clip_grad_norm_; factor 1 when max_norm
 *      is 0).
 * The accumulator is only read; vka_optim_zero_grads clears it. After the submission
 * completes, vka_optim_finish_step reads the norm and counts the step as taken (the
 * bias corrections use the count of steps taken) or skipped. A norm is not finite when
 * a gradient is NaN or infinite, or when the f32 sum of squares overflows (|g| beyond
 * about 1e19).
 *
 * State (momentum_buffer; exp_avg, exp_avg_sq) lives in VKA_MEM_OPTIM buffers, zero at
 * creation, with PyTorch's names so that a checkpoint can save and restore it together
 * with the counters. SGD's momentum buffer counts as absent while no step was taken:
 * the first step taken sets it to the gradient, undampened, as PyTorch does.
 *
 * A vka_optim owns its state and scratch buffers; the caller owns params and grads. */
#ifndef VKA_OPTIM_H
#define VKA_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor.h"

enum vka_optim_kind {
    VKA_OPTIM_SGD,
    VKA_OPTIM_ADAM,
    VKA_OPTIM_ADAMW,
};

/* Hyper-parameters are doubles, as Python floats are: the kernels get them rounded to
 * f32 after the host has derived 1 - beta, the bias corrections and so on in double,
 * which is what torch does. The learning rate is given per step. */
struct vka_optim_params {
    enum vka_optim_kind kind;
    uint64_t count;        /* floats in the parameter (and gradient) region, >= 1 */
    double weight_decay;   /* SGD, Adam: added to the gradient; AdamW: decoupled */
    double momentum;       /* SGD */
    double dampening;      /* SGD */
    bool nesterov;         /* SGD: needs momentum > 0 and dampening 0 */
    double beta1, beta2;   /* Adam, AdamW: in [0, 1) */
    double eps;            /* Adam, AdamW */
    double max_norm;       /* global gradient-norm clipping; 0: off */
};

/* PyTorch's defaults for kind (Adam: betas (0.9, 0.999), eps 1e-8; AdamW: the same and
 * weight_decay 1e-2; SGD: no momentum), no clipping. */
struct vka_optim_params vka_optim_defaults(enum vka_optim_kind kind, uint64_t count);

struct vka_optim;

/* Device bytes an optimizer of these params allocates (its state and scratch). */
uint64_t vka_optim_bytes(struct vka_ctx *ctx, const struct vka_optim_params *params);
int vka_optim_create(struct vka_ctx *ctx, const struct vka_optim_params *params,
                     struct vka_optim **opt);
void vka_optim_destroy(struct vka_optim **opt);

/* Records one step number t + 1 (t: steps taken) into cmd: params (FLAT f32, count
 * elements) is updated from grads (FLAT f32, count elements at an element offset that
 * is a multiple of 4) scaled by scale (1 / the window's total count) with learning rate
 * lr. -EBUSY while an earlier step was recorded and not finished or aborted. */
int vka_optim_record_step(struct vka_cmd *cmd, struct vka_optim *opt,
                          const struct vka_tensor *params, const struct vka_tensor *grads,
                          float scale, double lr);

/* The same in two parts, so that a step is recorded once and replayed every window:
 * vka_optim_record records a step that reads the scale, the learning rate and what the
 * step number gives (bias corrections, SGD's first step) from the optimizer's own small
 * host-visible buffer, and vka_optim_prepare_step writes them there for step t + 1 before
 * each submission (the same checks and -EBUSY as vka_optim_record_step, which is the
 * two in one). */
int vka_optim_prepare_step(struct vka_optim *opt, float scale, double lr);
int vka_optim_record(struct vka_cmd *cmd, struct vka_optim *opt,
                     const struct vka_tensor *params, const struct vka_tensor *grads);

/* After the recorded step's submission completed: reads the norm (NULL: not wanted) and
 * counts the step as taken, or as skipped when the norm is not finite (*skipped). */
int vka_optim_finish_step(struct vka_optim *opt, bool *skipped, float *norm);

/* Forgets a recorded step whose submission failed or was discarded. */
void vka_optim_abort_step(struct vka_optim *opt);

/* The global norm of the scaled gradient of the last submitted step (NaN or Inf for a
 * skipped one); call it after the submission completed. */
int vka_optim_last_norm(struct vka_optim *opt, float *norm);

/* Records grads = 0 (the start of the next accumulation window). */
int vka_optim_zero_grads(struct vka_cmd *cmd, const struct vka_optim *opt,
                         const struct vka_tensor *grads);

/* ---- checkpoint access ----------------------------------------------------------- */

struct vka_optim_counters {
    uint64_t steps;   /* steps taken: the next step is number steps + 1 */
    uint64_t skipped; /* steps skipped for a non-finite gradient norm */
};

void vka_optim_get_counters(const struct vka_optim *opt, struct vka_optim_counters *c);
/* -EBUSY while a step is recorded and not finished. */
int vka_optim_set_counters(struct vka_optim *opt, const struct vka_optim_counters *c);

/* How many state tensors the optimizer keeps: SGD without momentum 0, SGD with
 * momentum 1 ("momentum_buffer"), Adam and AdamW 2 ("exp_avg", "exp_avg_sq"). */
uint32_t vka_optim_state_count(const struct vka_optim *opt);
/* The i-th state tensor (FLAT f32, count elements) and its PyTorch name; NULL past the
 * count. Its buffer belongs to the optimizer. */
const struct vka_tensor *vka_optim_state(const struct vka_optim *opt, uint32_t i,
                                         const char **name);
/* Host copies of a state tensor by name (count floats); -ENOENT for a name this
 * optimizer does not keep. They wait for the copy. */
int vka_optim_state_read(struct vka_optim *opt, const char *name, float *host);
int vka_optim_state_write(struct vka_optim *opt, const char *name, const float *host);

/* ---- learning-rate schedules ------------------------------------------------------ */

enum vka_lr_kind {
    VKA_LR_CONSTANT, /* lr */
    VKA_LR_STEP,     /* StepLR: lr * gamma^floor(t / step_size) */
    VKA_LR_COSINE,   /* CosineAnnealingLR's closed form:
                        eta_min + (lr - eta_min) * (1 + cos(pi * t / t_max)) / 2 */
    VKA_LR_POLY,     /* mmsegmentation's PolyLR:
                        (lr - min_lr) * (1 - min(t, total_steps) / total_steps)^power
                        + min_lr */
};

/* t counts optimizer steps taken: vka_lr_at(s, t) is the rate of step t + 1, the rate
 * a PyTorch scheduler gives after t calls of scheduler.step(). A warm-up multiplies
 * any kind by LinearLR's factor start + (1 - start) * min(t, warmup_steps) /
 * warmup_steps, as LinearLR chained with the schedule does. */
struct vka_lr_schedule {
    enum vka_lr_kind kind;
    double lr;                  /* the base rate */
    uint64_t step_size;         /* STEP, >= 1 */
    double gamma;               /* STEP */
    uint64_t t_max;             /* COSINE, >= 1 */
    double eta_min;             /* COSINE */
    uint64_t total_steps;       /* POLY, >= 1 */
    double power;               /* POLY */
    double min_lr;              /* POLY */
    uint64_t warmup_steps;      /* 0: no warm-up */
    double warmup_start_factor; /* in (0, 1] */
};

/* -EINVAL with a message naming the field when the schedule cannot be evaluated. */
int vka_lr_check(const struct vka_lr_schedule *s);
/* The rate of step t + 1; NaN for a schedule that vka_lr_check refuses. */
double vka_lr_at(const struct vka_lr_schedule *s, uint64_t t);

#endif
