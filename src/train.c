/* The accumulation engine; see train.h. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "ops/basic.h"
#include "train.h"

struct vka_trainer {
    struct vka_graph *g;
    struct vka_trainer_params p;
    struct vka_optim *opt;
    struct vka_cmd *cmd;
    struct vka_trainer_stats s;
};

int vka_trainer_create(struct vka_graph *g, const struct vka_trainer_params *params,
                       struct vka_trainer **out)
{
    *out = NULL;
    if (params->batch == 0 || params->micro == 0 || params->micro > params->batch) {
        vka_err("trainer: micro-batch %u and batch %u: need 1 <= micro-batch <= batch",
                params->micro, params->batch);
        return -EINVAL;
    }
    const struct vka_val *loss = vka_graph_val(g, params->loss);
    if (!loss || loss->kind != VKA_VAL_LOSS || loss->n != 2) {
        vka_err("trainer: value %d is not a [sum, count] loss accumulator", params->loss);
        return -EINVAL;
    }
    for (uint32_t i = 0; i < params->ninputs; i++) {
        const struct vka_val *v = vka_graph_val(g, params->inputs[i]);
        if (!v || v->kind != VKA_VAL_INPUT) {
            vka_err("trainer: value %d is not an input", params->inputs[i]);
            return -EINVAL;
        }
    }
    int ret = vka_lr_check(&params->lr);
    if (ret < 0)
        return ret;
    struct vka_trainer *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->g = g;
    t->p = *params;
    struct vka_tensor params_flat = vka_graph_params_flat(g);
    t->p.optim.count = vka_tensor_stored(&params_flat);
    struct vka_ctx *ctx = params_flat.buf->ctx;
    if ((ret = vka_optim_create(ctx, &t->p.optim, &t->opt)) < 0 ||
        (ret = vka_cmd_create(ctx, NULL, &t->cmd)) < 0) {
        vka_trainer_destroy(&t);
        return ret;
    }
    *out = t;
    return 0;
}

void vka_trainer_destroy(struct vka_trainer **pt)
{
    struct vka_trainer *t = *pt;
    if (!t)
        return;
    vka_cmd_destroy(&t->cmd);
    vka_optim_destroy(&t->opt);
    free(t);
    *pt = NULL;
}

uint32_t vka_trainer_next_size(const struct vka_trainer *t)
{
    uint32_t left = t->p.batch - t->s.window_samples;
    return left < t->p.micro ? left : t->p.micro;
}

/* Clears the gradient and loss accumulators: the start of a window. */
static int record_clear(struct vka_trainer *t)
{
    struct vka_tensor grads = vka_graph_grads_flat(t->g);
    struct vka_tensor loss = vka_graph_tensor(t->g, t->p.loss);
    int ret = vka_optim_zero_grads(t->cmd, t->opt, &grads);
    return ret < 0 ? ret : vka_fill(t->cmd, &loss, 0.0f);
}

static int close_window(struct vka_trainer *t, bool step)
{
    float acc[2];
    struct vka_tensor loss = vka_graph_tensor(t->g, t->p.loss);
    int ret = vka_tensor_download(&loss, acc);
    if (ret < 0)
        return ret;
    t->s.loss = acc[1] > 0 ? (double)acc[0] / acc[1] : NAN;
    t->s.count = acc[1];
    struct vka_optim_counters oc;
    vka_optim_get_counters(t->opt, &oc);
    t->s.lr = vka_lr_at(&t->p.lr, oc.steps);
    bool stepping = step && acc[1] > 0;
    struct vka_tensor params = vka_graph_params_flat(t->g), grads = vka_graph_grads_flat(t->g);
    if ((ret = vka_cmd_begin(t->cmd)) < 0)
        return ret;
    if (stepping && (ret = vka_optim_record_step(t->cmd, t->opt, &params, &grads,
                                                 (float)(1.0 / acc[1]), t->s.lr)) < 0)
        return ret;
    if ((ret = record_clear(t)) < 0 || (ret = vka_cmd_run(t->cmd)) < 0) {
        if (stepping)
            vka_optim_abort_step(t->opt);
        return ret;
    }
    if (stepping) {
        bool skipped;
        if ((ret = vka_optim_finish_step(t->opt, &skipped, &t->s.grad_norm)) < 0)
            return ret;
        if (skipped) {
            t->s.skipped_steps++;
            vka_warn("step %llu skipped: the gradient norm is %g (non-finite); the "
                     "accumulators were cleared",
                     (unsigned long long)t->s.opt_steps + 1, t->s.grad_norm);
        }
        t->s.opt_steps++;
    } else if (step) {
        t->s.skipped_steps++;
        t->s.opt_steps++;
        t->s.grad_norm = 0;
        vka_warn("step %llu skipped: the window counted nothing (every pixel ignored?)",
                 (unsigned long long)t->s.opt_steps);
    } else {
        t->s.dropped_windows++;
    }
    t->s.window_samples = 0;
    t->s.window_micro = 0;
    return 0;
}

int vka_trainer_micro_step(struct vka_trainer *t, const void *const *inputs, uint32_t n,
                           bool *stepped)
{
    if (stepped)
        *stepped = false;
    if (n == 0 || n > vka_trainer_next_size(t)) {
        vka_err("trainer: a micro-step of %u samples; the window takes 1 to %u now", n,
                vka_trainer_next_size(t));
        return -EINVAL;
    }
    struct vka_plan *plan;
    int ret = vka_graph_plan(t->g, n, true, &plan);
    if (ret < 0)
        return ret;
    for (uint32_t i = 0; i < t->p.ninputs; i++) {
        struct vka_tensor in = vka_plan_tensor(plan, t->p.inputs[i]);
        if ((ret = vka_tensor_upload(&in, inputs[i])) < 0)
            return ret;
    }
    if ((ret = vka_plan_run(plan)) < 0)
        return ret;
    t->s.micro_steps++;
    t->s.window_micro++;
    t->s.window_samples += n;
    t->s.samples_seen += n;
    if (t->s.window_samples < t->p.batch)
        return 0;
    if (stepped)
        *stepped = true;
    return close_window(t, true);
}

int vka_trainer_end_epoch(struct vka_trainer *t, bool *stepped)
{
    if (stepped)
        *stepped = false;
    if (t->s.window_samples == 0)
        return 0;
    if (stepped)
        *stepped = !t->p.drop_last;
    return close_window(t, !t->p.drop_last);
}

void vka_trainer_get_stats(const struct vka_trainer *t, struct vka_trainer_stats *s)
{
    *s = t->s;
}

void vka_trainer_set_stats(struct vka_trainer *t, const struct vka_trainer_stats *s)
{
    t->s = *s;
}

struct vka_optim *vka_trainer_optim(struct vka_trainer *t)
{
    return t->opt;
}
