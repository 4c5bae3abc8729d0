/* The accumulation engine; see train.h. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exact.h"
#include "log.h"
#include "ops/basic.h"
#include "timing.h"
#include "train.h"

struct vka_trainer {
    struct vka_graph *g;
    struct vka_trainer_params p;
    struct vka_tensor params, grads; /* the span the phase trains */
    int accs[8];                     /* loss, extra losses, metrics */
    uint32_t naccs;
    struct vka_optim *opt;
    /* the optimizer step and the clear of the accumulators, each recorded once (on
     * first use) and replayed every window; while profiling, both are recorded anew in
     * `timed`, a recorder with timestamps */
    struct vka_cmd *step, *clear, *timed;
    struct vka_trainer_stats s;
    /* exact mode: the exact twins of grads and accs, resolved into them by `resolve`
     * (recorded once); combine, when set, sees them first */
    struct vka_tensor xgrads, xaccs[8];
    struct vka_cmd *resolve;
    vka_combine_fn combine;
    void *combine_user;
};

static int check_acc(const struct vka_graph *g, int v, const char *what)
{
    const struct vka_val *a = vka_graph_val(g, v);
    if (!a || a->kind != VKA_VAL_LOSS || a->n != 2) {
        vka_err("trainer: %s (value %d) is not a [sum, count] accumulator", what, v);
        return -EINVAL;
    }
    return 0;
}

int vka_trainer_create(struct vka_graph *g, const struct vka_trainer_params *params,
                       struct vka_trainer **out)
{
    *out = NULL;
    if (params->batch == 0 || params->micro == 0 || params->micro > params->batch) {
        vka_err("trainer: micro-batch %u and batch %u: need 1 <= micro-batch <= batch",
                params->micro, params->batch);
        return -EINVAL;
    }
    if (params->nextra_losses > 3 || params->nmetrics > 4 || params->ninputs > 4 ||
        params->npasses > 2 || params->passes[0].ninputs > 4 || params->passes[1].ninputs > 4) {
        vka_err("trainer: at most 3 extra losses, 4 metrics, 2 passes and 4 inputs");
        return -EINVAL;
    }
    int ret = check_acc(g, params->loss, "the loss");
    for (uint32_t i = 0; ret == 0 && i < params->nextra_losses; i++)
        ret = check_acc(g, params->extra_losses[i], "an extra loss");
    for (uint32_t i = 0; ret == 0 && i < params->nmetrics; i++)
        ret = check_acc(g, params->metrics[i], "a metric");
    if (ret < 0)
        return ret;
    struct vka_trainer_pass one = { params->phase, { 0 }, params->ninputs };
    memcpy(one.inputs, params->inputs, sizeof(one.inputs));
    const struct vka_trainer_pass *passes = params->npasses ? params->passes : &one;
    uint32_t npasses = params->npasses ? params->npasses : 1;
    for (uint32_t k = 0; k < npasses; k++)
        for (uint32_t i = 0; i < passes[k].ninputs; i++) {
            const struct vka_val *v = vka_graph_val(g, passes[k].inputs[i]);
            if (!v || v->kind != VKA_VAL_INPUT) {
                vka_err("trainer: value %d is not an input", passes[k].inputs[i]);
                return -EINVAL;
            }
        }
    if ((ret = vka_lr_check(&params->lr)) < 0)
        return ret;
    struct vka_trainer *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->g = g;
    t->p = *params;
    memcpy(t->p.passes, passes, npasses * sizeof(*passes));
    t->p.npasses = npasses;
    struct vka_tensor p1, g1;
    if ((ret = vka_graph_phase_params(g, passes[0].phase, &t->params, &t->grads)) < 0 ||
        (npasses > 1 && (ret = vka_graph_phase_params(g, passes[1].phase, &p1, &g1)) < 0)) {
        free(t);
        return ret;
    }
    if (npasses > 1 && (p1.off != t->params.off || p1.n != t->params.n)) {
        vka_err("trainer: the phases of the two passes train different parameters");
        free(t);
        return -EINVAL;
    }
    t->accs[t->naccs++] = params->loss;
    for (uint32_t i = 0; i < params->nextra_losses; i++)
        t->accs[t->naccs++] = params->extra_losses[i];
    for (uint32_t i = 0; i < params->nmetrics; i++)
        t->accs[t->naccs++] = params->metrics[i];
    if (params->exact != vka_graph_is_exact(g)) {
        vka_err("trainer: --accumulate %s, but the graph was %s set exact before allocation",
                params->exact ? "exact" : "ordered", params->exact ? "not" : "");
        free(t);
        return -EINVAL;
    }
    if (params->exact) {
        t->xgrads = vka_graph_exact_span(g, &t->grads);
        for (uint32_t i = 0; i < t->naccs; i++)
            t->xaccs[i] = vka_graph_exact_tensor(g, t->accs[i]);
    }
    t->p.optim.count = vka_tensor_stored(&t->params);
    struct vka_ctx *ctx = t->params.buf->ctx;
    if ((ret = vka_optim_create(ctx, &t->p.optim, &t->opt)) < 0) {
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
    vka_cmd_destroy(&t->step);
    vka_cmd_destroy(&t->clear);
    vka_cmd_destroy(&t->resolve);
    vka_cmd_destroy(&t->timed);
    vka_optim_destroy(&t->opt);
    free(t);
    *pt = NULL;
}

uint32_t vka_trainer_next_size(const struct vka_trainer *t)
{
    uint32_t left = t->p.batch - t->s.window_samples;
    return left < t->p.micro ? left : t->p.micro;
}

/* An exact tensor's words as floats (a fill with 0.0f clears it). */
static struct vka_tensor exact_words(const struct vka_tensor *x)
{
    return vka_tensor_flat(x->buf, x->off * 4, vka_tensor_stored(x) * 4);
}

/* Clears the gradient and loss accumulators (and their exact twins): the start of a
 * window. */
static int record_clear(struct vka_trainer *t, struct vka_cmd *cmd)
{
    int ret = vka_optim_zero_grads(cmd, t->opt, &t->grads);
    for (uint32_t i = 0; ret == 0 && i < t->naccs; i++) {
        struct vka_tensor a = vka_graph_tensor(t->g, t->accs[i]);
        ret = vka_fill(cmd, &a, 0.0f);
    }
    if (ret == 0 && t->p.exact) {
        struct vka_tensor w = exact_words(&t->xgrads);
        ret = vka_fill(cmd, &w, 0.0f);
        for (uint32_t i = 0; ret == 0 && i < t->naccs; i++) {
            w = exact_words(&t->xaccs[i]);
            ret = vka_fill(cmd, &w, 0.0f);
        }
    }
    return ret;
}

/* The float gradients and accumulators = their exact twins, correctly rounded. */
static int record_resolve(struct vka_trainer *t, struct vka_cmd *cmd)
{
    int ret = vka_exact_resolve(cmd, &t->xgrads, &t->grads);
    for (uint32_t i = 0; ret == 0 && i < t->naccs; i++) {
        struct vka_tensor a = vka_graph_tensor(t->g, t->accs[i]);
        ret = vka_exact_resolve(cmd, &t->xaccs[i], &a);
    }
    return ret;
}

void vka_trainer_set_combine(struct vka_trainer *t, vka_combine_fn fn, void *user)
{
    t->combine = fn;
    t->combine_user = user;
}

/* The exact elements go to the combine callback and back (train.h); *samples is the
 * window's sample count over every rank. */
static int exchange(struct vka_trainer *t, double *samples)
{
    uint64_t ng = vka_tensor_stored(&t->xgrads), n = ng + 2ull * t->naccs + 1;
    uint32_t *w = malloc(n * 16);
    if (!w)
        return -ENOMEM;
    struct vka_buf *xb = t->xgrads.buf;
    int ret = vka_buf_download(xb, t->xgrads.off * 16, w, ng * 16);
    for (uint32_t i = 0; ret == 0 && i < t->naccs; i++)
        ret = vka_buf_download(xb, t->xaccs[i].off * 16, w + 4 * (ng + 2 * i), 32);
    if (ret < 0)
        goto out;
    /* the samples this rank put into the window (of all its passes) */
    uint32_t *ws = w + 4 * (n - 1);
    vka_exact_from_float((float)((uint64_t)t->s.window_pass * t->p.batch +
                                 t->s.window_samples), ws);
    if ((ret = t->combine(t->combine_user, w, n)) < 0) {
        vka_err("trainer: combining the window's exact sums across ranks failed (%d)", ret);
        goto out;
    }
    *samples = vka_exact_to_float(ws);
    ret = vka_buf_upload(xb, t->xgrads.off * 16, w, ng * 16);
    for (uint32_t i = 0; ret == 0 && i < t->naccs; i++)
        ret = vka_buf_upload(xb, t->xaccs[i].off * 16, w + 4 * (ng + 2 * i), 32);
out:
    free(w);
    return ret;
}

/* After a window whose gradient or loss is not finite, in exact mode: the values that
 * passed the representable range (vka_err names how many; they resolved to NaN). */
static void report_out_of_range(struct vka_trainer *t)
{
    uint64_t ng = vka_tensor_stored(&t->xgrads), bad = 0, bad_acc = 0;
    uint32_t *w = malloc((ng ? ng : 1) * 16), a[8];
    if (!w || vka_buf_download(t->xgrads.buf, t->xgrads.off * 16, w, ng * 16) < 0) {
        free(w);
        return;
    }
    for (uint64_t i = 0; i < ng; i++)
        bad += vka_exact_out_of_range(w + 4 * i);
    for (uint32_t i = 0; i < t->naccs; i++)
        if (vka_buf_download(t->xaccs[i].buf, t->xaccs[i].off * 16, a, 32) == 0)
            bad_acc += vka_exact_out_of_range(a) + vka_exact_out_of_range(a + 4);
    free(w);
    if (bad || bad_acc)
        vka_err("step %llu: %llu gradient value(s) and %llu loss accumulator(s) passed +-2^31, "
                "the range of --accumulate exact (they resolve to NaN, so the step is "
                "skipped); --accumulate ordered has the range of float32",
                (unsigned long long)t->s.opt_steps + 1, (unsigned long long)bad,
                (unsigned long long)bad_acc);
}

/* Reads every accumulator of the trainer in one download: acc[2 * i] is accs[i]'s. */
static int read_accs(struct vka_trainer *t, float *acc)
{
    uint64_t lo = UINT64_MAX, hi = 0;
    struct vka_tensor a[8];
    for (uint32_t i = 0; i < t->naccs; i++) {
        a[i] = vka_graph_tensor(t->g, t->accs[i]);
        lo = a[i].off < lo ? a[i].off : lo;
        hi = a[i].off + 2 > hi ? a[i].off + 2 : hi;
    }
    float *span = malloc((hi - lo) * sizeof(float));
    if (!span)
        return -ENOMEM;
    int ret = vka_buf_download(a[0].buf, lo * 4, span, (hi - lo) * 4);
    for (uint32_t i = 0; ret == 0 && i < t->naccs; i++)
        memcpy(acc + 2 * i, span + (a[i].off - lo), 2 * sizeof(float));
    free(span);
    return ret;
}

/* After a step skipped for a non-finite gradient norm: names the first parameter (in
 * registration order) whose accumulated gradient holds a NaN or an infinity, and the
 * window's loss when it is not finite. Runs only then: it reads the gradients back. */
static void report_nonfinite(struct vka_trainer *t)
{
    char first[256] = "";
    uint64_t lo = t->grads.off, hi = lo + vka_tensor_stored(&t->grads);
    for (uint32_t i = 0; i < vka_graph_nvals(t->g) && !first[0]; i++) {
        const struct vka_val *v = vka_graph_val(t->g, (int)i);
        if (v->kind != VKA_VAL_PARAM)
            continue;
        struct vka_tensor gt = vka_graph_grad_tensor(t->g, (int)i);
        if (gt.buf != t->grads.buf || gt.off < lo || gt.off >= hi)
            continue; /* another trainer's parameter */
        uint64_t n = (uint64_t)v->n * v->c * v->h * v->w, bad = 0;
        float *h = malloc((n ? n : 1) * sizeof(float));
        if (!h || vka_tensor_download(&gt, h) < 0) {
            free(h);
            break;
        }
        for (uint64_t k = 0; k < n; k++)
            bad += !isfinite(h[k]);
        free(h);
        if (bad)
            snprintf(first, sizeof(first), "; the first parameter whose gradient holds one: "
                     "%s (%llu of %llu values)", v->name, (unsigned long long)bad,
                     (unsigned long long)n);
    }
    char loss[64] = "";
    if (!isfinite(t->s.loss))
        snprintf(loss, sizeof(loss), "; the window's loss is %g", t->s.loss);
    vka_warn("step %llu skipped: the gradient norm is %g (non-finite)%s%s; the accumulators "
             "were cleared", (unsigned long long)t->s.opt_steps + 1, t->s.grad_norm, loss,
             first);
}

/* The context's timing while profiling (ctx->timing), else NULL. */
static struct vka_timing *timing(const struct vka_trainer *t)
{
    return t->params.buf->ctx->timing;
}

typedef int (*record_fn)(struct vka_trainer *t, struct vka_cmd *cmd);

static int record_step(struct vka_trainer *t, struct vka_cmd *cmd)
{
    return vka_optim_record(cmd, t->opt, &t->params, &t->grads);
}

/* A recorder holding what fn records: *once, recorded on first use and replayed from
 * then on; while profiling, the timed recorder with it recorded anew. */
static int recording(struct vka_trainer *t, struct vka_cmd **once, record_fn fn,
                     struct vka_cmd **out)
{
    struct vka_ctx *ctx = t->params.buf->ctx;
    bool timed = timing(t) != NULL;
    struct vka_cmd **cmd = timed ? &t->timed : once;
    *out = *cmd;
    if (*cmd && !timed)
        return 0;
    int ret = *cmd ? 0 : vka_cmd_create(ctx, &(struct vka_cmd_params){
                             .timing = timed, .max_timed = 4096 }, cmd);
    if (ret == 0 && (ret = vka_cmd_begin(*cmd)) == 0 && (ret = fn(t, *cmd)) == 0)
        ret = vka_cmd_end(*cmd);
    if (ret < 0)
        vka_cmd_destroy(cmd); /* never replay half a recording */
    *out = *cmd;
    return ret;
}

/* Ends, submits and waits; while profiling, adds what it ran under op in pass. */
static int run(struct vka_trainer *t, struct vka_cmd *cmd, const char *op, enum vka_pass pass)
{
    int ret = vka_cmd_run(cmd);
    if (ret == 0 && timing(t))
        ret = vka_timing_add_cmd(timing(t), cmd, 0, vka_cmd_timed_count(cmd), op, pass);
    return ret < 0 ? ret : 0;
}

int vka_trainer_resolve(struct vka_trainer *t)
{
    struct vka_cmd *cmd;
    int ret = 0;
    if (t->p.exact && (ret = recording(t, &t->resolve, record_resolve, &cmd)) == 0)
        ret = run(t, cmd, "resolve", VKA_PASS_COPY);
    return ret;
}

static int close_window(struct vka_trainer *t, bool step)
{
    float acc[16];
    struct vka_cmd *cmd;
    int ret;
    if (t->p.exact) {
        double samples = 1;
        if (t->combine && (ret = exchange(t, &samples)) < 0)
            return ret;
        if (samples == 0) /* an epoch's end where no rank had a partial window */
            return 0;
        if ((ret = vka_trainer_resolve(t)) < 0)
            return ret;
    }
    if ((ret = read_accs(t, acc)) < 0)
        return ret;
    double sum = acc[0];
    for (uint32_t i = 1; i <= t->p.nextra_losses; i++)
        sum += acc[2 * i];
    t->s.loss = acc[1] > 0 ? sum / acc[1] : NAN;
    t->s.count = acc[1];
    for (uint32_t i = 0; i < t->p.nmetrics; i++) {
        const float *m = acc + 2 * (1 + t->p.nextra_losses + i);
        t->s.metric[i] = m[1] > 0 ? (double)m[0] / m[1] : NAN;
    }
    struct vka_optim_counters oc;
    vka_optim_get_counters(t->opt, &oc);
    t->s.lr = vka_lr_at(&t->p.lr, oc.steps);
    bool stepping = step && acc[1] > 0;
    /* the step, then the clear of the accumulators: two submissions, so that a skipped
     * step can still read the gradient that made it skip */
    if (stepping) {
        if ((ret = vka_optim_prepare_step(t->opt, (float)(1.0 / acc[1]), t->s.lr)) < 0)
            return ret;
        if ((ret = recording(t, &t->step, record_step, &cmd)) < 0 ||
            (ret = run(t, cmd, "optimizer", VKA_PASS_OPTIM)) < 0) {
            vka_optim_abort_step(t->opt);
            return ret;
        }
    }
    bool skipped = false;
    if (stepping && (ret = vka_optim_finish_step(t->opt, &skipped, &t->s.grad_norm)) < 0)
        return ret;
    if (skipped)
        report_nonfinite(t);
    if (t->p.exact && (skipped || !isfinite(t->s.loss)))
        report_out_of_range(t);
    if ((ret = recording(t, &t->clear, record_clear, &cmd)) < 0 ||
        (ret = run(t, cmd, "clear", VKA_PASS_COPY)) < 0)
        return ret;
    if (timing(t))
        timing(t)->windows++;
    if (stepping) {
        t->s.skipped_steps += skipped;
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
    t->s.window_pass = 0;
    return 0;
}

uint32_t vka_trainer_next_pass(const struct vka_trainer *t)
{
    return t->s.window_pass;
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
    const struct vka_trainer_pass *pass = &t->p.passes[t->s.window_pass];
    int ret = vka_graph_plan_phase(t->g, pass->phase, n, true, &plan);
    if (ret < 0)
        return ret;
    for (uint32_t i = 0; i < pass->ninputs; i++) {
        struct vka_tensor in = vka_plan_tensor(plan, pass->inputs[i]);
        if ((ret = vka_tensor_upload(&in, inputs[i])) < 0)
            return ret;
    }
    if ((ret = t->p.detect_anomaly ? vka_plan_run_checked(plan)
               : timing(t) ? vka_plan_run_profiled(plan, timing(t)) : vka_plan_run(plan)) < 0)
        return ret;
    t->s.micro_steps++;
    t->s.window_micro++;
    t->s.window_samples += n;
    if (t->s.window_pass == 0)
        t->s.samples_seen += n;
    if (t->s.window_samples < t->p.batch)
        return 0;
    if (t->s.window_pass + 1 < t->p.npasses) {
        t->s.window_pass++;
        t->s.window_samples = 0;
        return 0;
    }
    if (stepped)
        *stepped = true;
    return close_window(t, true);
}

int vka_trainer_end_epoch(struct vka_trainer *t, bool *stepped)
{
    if (stepped)
        *stepped = false;
    bool empty = t->s.window_samples == 0 && t->s.window_pass == 0;
    /* with a combine callback another rank's part of the window may not be empty */
    if (empty && !(t->p.exact && t->combine))
        return 0;
    uint64_t before = t->s.opt_steps + t->s.dropped_windows;
    int ret = close_window(t, !t->p.drop_last);
    if (stepped)
        *stepped = ret == 0 && !t->p.drop_last && t->s.opt_steps + t->s.dropped_windows > before;
    return ret;
}

int vka_trainer_flops(struct vka_trainer *t, double *flops)
{
    *flops = 0;
    for (uint32_t k = 0; k < t->p.npasses; k++) {
        double f;
        int ret = vka_graph_flops(t->g, t->p.passes[k].phase, true, &f);
        if (ret < 0)
            return ret;
        *flops += f * t->p.batch;
    }
    return 0;
}

void vka_trainer_get_stats(const struct vka_trainer *t, struct vka_trainer_stats *s)
{
    *s = t->s;
}

void vka_trainer_set_stats(struct vka_trainer *t, const struct vka_trainer_stats *s)
{
    t->s = *s;
}

int vka_trainer_check_stats(const struct vka_trainer *t, const struct vka_trainer_stats *s,
                            char *why, size_t size)
{
    /* every micro-step holds at least one sample and every window at least one micro-step */
    uint64_t micro_max = (uint64_t)t->p.npasses * t->p.batch;
    if (s->window_pass >= t->p.npasses)
        snprintf(why, size, "the open window is in pass %u of a trainer of %u pass(es)",
                 s->window_pass, t->p.npasses);
    else if (s->window_samples >= t->p.batch)
        snprintf(why, size, "the open window holds %u samples of a batch of %u",
                 s->window_samples, t->p.batch);
    else if (s->window_micro > micro_max || (s->window_micro == 0) != (s->window_samples == 0 &&
                                                                       s->window_pass == 0))
        snprintf(why, size, "the open window counts %u micro-steps for %u samples in pass %u",
                 s->window_micro, s->window_samples, s->window_pass);
    else if (s->skipped_steps > s->opt_steps ||
             s->opt_steps + s->dropped_windows > s->micro_steps ||
             s->window_micro > s->micro_steps)
        snprintf(why, size, "%llu steps (%llu skipped), %llu dropped windows and %llu "
                 "micro-steps do not fit together", (unsigned long long)s->opt_steps,
                 (unsigned long long)s->skipped_steps, (unsigned long long)s->dropped_windows,
                 (unsigned long long)s->micro_steps);
    else
        return 0;
    return -EINVAL;
}

struct vka_optim *vka_trainer_optim(struct vka_trainer *t)
{
    return t->opt;
}

const char *vka_trainer_name(const struct vka_trainer *t)
{
    return t->p.name;
}
