/* SGD, Adam and AdamW over flat regions (conventions in optim.h), with
 * shaders/optim.comp, and the learning-rate schedules.
 *
 * Scratch buffer (VKA_MEM_OPTIM), in floats: partials of the odd reduction passes at
 * part_off[0], of the even ones at part_off[1], then the stats vec4 (sum of squares,
 * norm, clipping factor, 0) at stats_off; every region starts on 256 bytes. Chunks of
 * the gradient are multiples of the reduction block, so splitting a region that passes
 * max_binding changes neither the tree nor the norm's bits (as vka_sum).
 *
 * What changes from step to step (the gradient scale, the learning rate, the bias
 * corrections of the step number, SGD's first step) is not in the recording: the host
 * writes it into a small host-visible buffer (struct hyper) before each submission, and
 * the kernels read it there, so a recorded step is replayed window after window. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "ops/basic.h"
#include "ops/ops.h"
#include "optim.h"

/* The per-step values the kernels read (the hyper buffer, two vec4s). */
struct hyper {
    float s;        /* gradient scale: 1 / the window's count */
    float lr;       /* SGD: lr; Adam: lr / bias_correction1 */
    float decay;    /* AdamW: 1 - lr * weight_decay */
    float bc2_sqrt; /* Adam: sqrt(bias_correction2) */
    float first;    /* SGD: 1 while no step was taken (the momentum buffer is absent) */
    float pad[3];
};

struct vka_optim {
    struct vka_ctx *ctx;
    struct vka_optim_params p;
    uint32_t nstate;
    struct vka_tensor state[2];
    const char *state_name[2];
    struct vka_buf *scratch;
    struct vka_buf *hyper; /* host-visible: struct hyper */
    uint64_t part_off[2];
    uint64_t stats_off;
    struct vka_optim_counters counters;
    bool pending;
};

/* push constants of OP_SUMSQ */
struct sumsq_push {
    uint32_t n, x_base, out_idx, hy_base4;
    uint32_t square, final_;
    float max_norm;
};

/* push constants of OP_SGD and OP_ADAM: what stays from step to step */
struct update_push {
    uint32_t n, g_base4, st_base4, hy_base4, p_base, s1_base, s2_base;
    uint32_t nesterov;
    float wd;
    float a1, b1, a2, b2;
    float eps;
};

static const char *kind_name(enum vka_optim_kind k)
{
    return k == VKA_OPTIM_SGD ? "sgd" : k == VKA_OPTIM_ADAM ? "adam" : "adamw";
}

struct vka_optim_params vka_optim_defaults(enum vka_optim_kind kind, uint64_t count)
{
    struct vka_optim_params p = { .kind = kind, .count = count };
    if (kind != VKA_OPTIM_SGD) {
        p.beta1 = 0.9;
        p.beta2 = 0.999;
        p.eps = 1e-8;
        p.weight_decay = kind == VKA_OPTIM_ADAMW ? 1e-2 : 0.0;
    }
    return p;
}

/* Elements one dispatch covers: one binding of max_binding, less the up to 63 elements
 * a binding starts before its range, rounded down to whole reduction blocks. */
static uint64_t chunk_elems(const struct vka_ctx *ctx)
{
    uint64_t c = ctx->profile.max_binding / sizeof(float);
    uint64_t block = vka_sum_block(ctx);
    c = c > 64 ? c - 64 : 0;
    c -= c % block;
    if (c == 0)
        c = block; /* a max_binding below two blocks: vka_op_bind_out reports it */
    if (c > (1ull << 30))
        c = 1ull << 30;
    return c;
}

static uint64_t round64(uint64_t n)
{
    return (n + 63) & ~(uint64_t)63;
}

static int check_params(const struct vka_optim_params *p)
{
    const char *k = kind_name(p->kind);
    if (p->kind != VKA_OPTIM_SGD && p->kind != VKA_OPTIM_ADAM && p->kind != VKA_OPTIM_ADAMW) {
        vka_err("optim: unknown optimizer kind %d", (int)p->kind);
        return -EINVAL;
    }
    if (p->count == 0 || p->count > UINT32_MAX) {
        vka_err("%s: count is %" PRIu64 ", needs 1..%" PRIu32 " parameters", k, p->count,
                UINT32_MAX);
        return -EINVAL;
    }
    if (!(p->weight_decay >= 0 && isfinite(p->weight_decay))) {
        vka_err("%s: weight_decay is %g, needs a finite value >= 0", k, p->weight_decay);
        return -EINVAL;
    }
    if (!(p->max_norm >= 0 && isfinite(p->max_norm))) {
        vka_err("%s: max_norm is %g, needs a finite value >= 0 (0: no clipping)", k,
                p->max_norm);
        return -EINVAL;
    }
    if (p->kind == VKA_OPTIM_SGD) {
        if (!(p->momentum >= 0 && isfinite(p->momentum))) {
            vka_err("sgd: momentum is %g, needs a finite value >= 0", p->momentum);
            return -EINVAL;
        }
        if (!isfinite(p->dampening)) {
            vka_err("sgd: dampening is %g, needs a finite value", p->dampening);
            return -EINVAL;
        }
        if (p->nesterov && (p->momentum <= 0 || p->dampening != 0)) {
            vka_err("sgd: nesterov needs momentum > 0 and dampening 0 (momentum %g, "
                    "dampening %g)", p->momentum, p->dampening);
            return -EINVAL;
        }
        return 0;
    }
    if (!(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1)) {
        vka_err("%s: betas are (%g, %g), each needs to lie in [0, 1)", k, p->beta1, p->beta2);
        return -EINVAL;
    }
    if (!(p->eps >= 0 && isfinite(p->eps))) {
        vka_err("%s: eps is %g, needs a finite value >= 0", k, p->eps);
        return -EINVAL;
    }
    return 0;
}

static uint32_t state_count(const struct vka_optim_params *p)
{
    return p->kind != VKA_OPTIM_SGD ? 2 : p->momentum != 0 ? 1 : 0;
}

/* The scratch layout (the file's comment); returns its floats. */
static uint64_t scratch_layout(struct vka_ctx *ctx, uint64_t n, uint64_t part_off[2],
                               uint64_t *stats_off)
{
    uint64_t block = vka_sum_block(ctx);
    uint64_t p1 = (n + block - 1) / block, p2 = (p1 + block - 1) / block;
    part_off[0] = 0;
    part_off[1] = round64(p1);
    *stats_off = part_off[1] + round64(p2);
    return *stats_off + 4;
}

uint64_t vka_optim_bytes(struct vka_ctx *ctx, const struct vka_optim_params *p)
{
    uint64_t part_off[2], stats_off;
    return scratch_layout(ctx, p->count, part_off, &stats_off) * sizeof(float) +
           state_count(p) * p->count * sizeof(float) + sizeof(struct hyper);
}

static int create_buffers(struct vka_optim *o)
{
    struct vka_ctx *ctx = o->ctx;
    uint64_t n = o->p.count;
    scratch_layout(ctx, n, o->part_off, &o->stats_off);
    int ret = vka_buf_create(ctx, &(struct vka_buf_params){
        .size = (o->stats_off + 4) * sizeof(float), .cat = VKA_MEM_OPTIM }, &o->scratch);
    if (ret == 0)
        ret = vka_buf_create(ctx, &(struct vka_buf_params){
            .size = sizeof(struct hyper), .cat = VKA_MEM_OPTIM, .host_visible = true },
            &o->hyper);
    if (ret < 0)
        return ret;
    for (uint32_t i = 0; i < o->nstate; i++) {
        struct vka_buf *buf;
        ret = vka_buf_create(ctx, &(struct vka_buf_params){
            .size = n * sizeof(float), .cat = VKA_MEM_OPTIM }, &buf);
        if (ret < 0)
            return ret;
        o->state[i] = vka_tensor_flat(buf, 0, n);
        o->state[i].owns_buf = true;
    }
    struct vka_cmd *cmd = NULL;
    struct vka_tensor all = vka_tensor_flat(o->scratch, 0, o->stats_off + 4);
    if ((ret = vka_cmd_create(ctx, NULL, &cmd)) < 0)
        return ret;
    if ((ret = vka_cmd_begin(cmd)) < 0 || (ret = vka_fill(cmd, &all, 0.0f)) < 0)
        goto done;
    for (uint32_t i = 0; i < o->nstate; i++)
        if ((ret = vka_fill(cmd, &o->state[i], 0.0f)) < 0)
            goto done;
    ret = vka_cmd_run(cmd);
done:
    vka_cmd_destroy(&cmd);
    return ret;
}

int vka_optim_create(struct vka_ctx *ctx, const struct vka_optim_params *params,
                     struct vka_optim **opt)
{
    *opt = NULL;
    int ret = check_params(params);
    if (ret < 0)
        return ret;
    struct vka_optim *o = calloc(1, sizeof(*o));
    if (!o) {
        vka_err("%s: out of host memory", kind_name(params->kind));
        return -ENOMEM;
    }
    o->ctx = ctx;
    o->p = *params;
    o->nstate = state_count(params);
    o->state_name[0] = o->nstate == 2 ? "exp_avg" : "momentum_buffer";
    o->state_name[1] = "exp_avg_sq";
    ret = create_buffers(o);
    if (ret < 0) {
        vka_optim_destroy(&o);
        return ret;
    }
    *opt = o;
    return 0;
}

void vka_optim_destroy(struct vka_optim **opt)
{
    struct vka_optim *o = *opt;
    if (!o)
        return;
    for (uint32_t i = 0; i < 2; i++)
        if (o->state[i].buf)
            vka_tensor_destroy(&o->state[i]);
    vka_buf_destroy(&o->scratch);
    vka_buf_destroy(&o->hyper);
    free(o);
    *opt = NULL;
}

static int check_region(const struct vka_optim *o, const char *name, const struct vka_tensor *t)
{
    const char *k = kind_name(o->p.kind);
    int ret = vka_op_check(k, name, t, VKA_LAYOUT_FLAT, 0, 0, 0, 0);
    if (ret < 0)
        return ret;
    if (vka_tensor_stored(t) != o->p.count) {
        vka_err("%s: %s holds %" PRIu64 " floats, the optimizer was made for %" PRIu64, k,
                name, vka_tensor_stored(t), o->p.count);
        return -EINVAL;
    }
    if (t->buf->ctx != o->ctx) {
        vka_err("%s: %s belongs to another context", k, name);
        return -EINVAL;
    }
    return 0;
}

/* Pass after pass of OP_SUMSQ until one partial is left; the last writes the stats. */
static int record_norm(struct vka_cmd *cmd, struct vka_optim *o, const struct vka_tensor *grads)
{
    struct vka_ctx *ctx = o->ctx;
    struct vka_pipe *pipe;
    struct vka_tensor hy = vka_tensor_flat(o->hyper, 0, 8);
    struct vka_binding bh;
    uint32_t hy_base;
    int ret = vka_pipe_get(ctx, &(struct vka_pipe_params){
        .shader = "optim_sumsq", .nbind = 3, .bind = { VKA_BIND_IN, VKA_BIND_IN, VKA_BIND_OUT },
        .push_size = sizeof(struct sumsq_push), .nspec = 1,
        .spec = { ctx->profile.reduce_items } }, &pipe);
    if (ret < 0 || (ret = vka_op_bind_in(ctx, &hy, 0, 8, &bh, &hy_base)) < 0)
        return ret;
    uint64_t block = vka_sum_block(ctx), chunk = chunk_elems(ctx);
    struct vka_tensor src = *grads;
    uint64_t n = o->p.count;
    for (uint32_t pass = 0;; pass++) {
        uint64_t parts = (n + block - 1) / block;
        bool final = parts == 1;
        struct vka_tensor dst = final ? vka_tensor_flat(o->scratch, o->stats_off, 4)
                                      : vka_tensor_flat(o->scratch, o->part_off[pass % 2],
                                                        parts);
        for (uint64_t first = 0; first < n; first += chunk) {
            uint64_t count = n - first < chunk ? n - first : chunk;
            uint64_t part0 = first / block, nparts = (count + block - 1) / block;
            struct sumsq_push pc = {
                .n = (uint32_t)count, .hy_base4 = hy_base, .square = pass == 0,
                .final_ = final, .max_norm = (float)o->p.max_norm,
            };
            struct vka_binding b[3] = { [1] = bh };
            if ((ret = vka_op_bind_in(ctx, &src, first, count, &b[0], &pc.x_base)) < 0 ||
                (ret = vka_op_bind_out(ctx, &dst, final ? 0 : part0, final ? 4 : nparts,
                                       &b[2], &pc.out_idx)) < 0 ||
                (ret = vka_cmd_dispatch_1d(cmd, pipe, b, &pc, nparts * ctx->profile.wg_size)) < 0)
                return ret;
        }
        if (final)
            return 0;
        src = dst;
        n = parts;
    }
}

/* The values of step t + 1 (t: steps taken), as torch derives them, in double. */
static struct hyper hyper_of(const struct vka_optim *o, float scale, double lr)
{
    const struct vka_optim_params *p = &o->p;
    struct hyper h = { .s = scale, .lr = (float)lr, .first = o->counters.steps == 0 };
    if (p->kind == VKA_OPTIM_SGD)
        return h;
    double t = (double)(o->counters.steps + 1);
    double bc1 = 1.0 - pow(p->beta1, t), bc2 = 1.0 - pow(p->beta2, t);
    h.lr = (float)(lr / bc1);
    h.bc2_sqrt = (float)sqrt(bc2);
    if (p->kind == VKA_OPTIM_ADAMW)
        h.decay = (float)(1.0 - lr * p->weight_decay);
    return h;
}

static void fill_update_push(const struct vka_optim *o, struct update_push *pc)
{
    const struct vka_optim_params *p = &o->p;
    *pc = (struct update_push){ .nesterov = p->nesterov };
    if (p->kind == VKA_OPTIM_SGD) {
        pc->wd = (float)p->weight_decay;
        pc->a1 = (float)p->momentum;
        pc->b1 = (float)(1.0 - p->dampening);
        return;
    }
    pc->eps = (float)p->eps;
    pc->a1 = (float)p->beta1;
    pc->b1 = (float)(1.0 - p->beta1);
    pc->a2 = (float)p->beta2;
    pc->b2 = (float)(1.0 - p->beta2);
    pc->wd = p->kind == VKA_OPTIM_ADAMW ? 0.0f : (float)p->weight_decay;
}

static int record_update(struct vka_cmd *cmd, struct vka_optim *o,
                         const struct vka_tensor *params, const struct vka_tensor *grads)
{
    struct vka_ctx *ctx = o->ctx;
    bool adam = o->p.kind != VKA_OPTIM_SGD;
    struct vka_pipe *pipe;
    int ret = vka_pipe_get(ctx, &(struct vka_pipe_params){
        .shader = o->p.kind == VKA_OPTIM_SGD ? "optim_sgd"
                  : o->p.kind == VKA_OPTIM_ADAM ? "optim_adam" : "optim_adamw",
        .nbind = adam ? 6 : 5,
        .bind = { VKA_BIND_IN, VKA_BIND_IN, VKA_BIND_IN, VKA_BIND_OUT, VKA_BIND_OUT,
                  VKA_BIND_OUT },
        .push_size = sizeof(struct update_push) }, &pipe);
    if (ret < 0)
        return ret;
    struct update_push pc;
    fill_update_push(o, &pc);
    struct vka_tensor stats = vka_tensor_flat(o->scratch, o->stats_off, 4);
    struct vka_tensor hy = vka_tensor_flat(o->hyper, 0, 8);
    const struct vka_tensor *s1 = o->nstate > 0 ? &o->state[0] : params;
    uint64_t n = o->p.count, chunk = chunk_elems(ctx);
    for (uint64_t first = 0; first < n; first += chunk) {
        uint64_t count = n - first < chunk ? n - first : chunk;
        struct vka_binding b[6];
        pc.n = (uint32_t)count;
        if ((ret = vka_op_bind_in(ctx, grads, first, count, &b[0], &pc.g_base4)) < 0 ||
            (ret = vka_op_bind_in(ctx, &stats, 0, 4, &b[1], &pc.st_base4)) < 0 ||
            (ret = vka_op_bind_in(ctx, &hy, 0, 8, &b[2], &pc.hy_base4)) < 0 ||
            (ret = vka_op_bind_out(ctx, params, first, count, &b[3], &pc.p_base)) < 0 ||
            (ret = vka_op_bind_out(ctx, s1, first, count, &b[4], &pc.s1_base)) < 0 ||
            (adam && (ret = vka_op_bind_out(ctx, &o->state[1], first, count, &b[5],
                                            &pc.s2_base)) < 0) ||
            (ret = vka_cmd_dispatch_1d(cmd, pipe, b, &pc, (count + 3) / 4)) < 0)
            return ret;
    }
    return 0;
}

int vka_optim_prepare_step(struct vka_optim *o, float scale, double lr)
{
    const char *k = kind_name(o->p.kind);
    if (o->pending) {
        vka_err("%s: step %" PRIu64 " was recorded and not finished (call "
                "vka_optim_finish_step after its submission, or vka_optim_abort_step)", k,
                o->counters.steps + 1);
        return -EBUSY;
    }
    if (!(isfinite(scale) && scale >= 0)) {
        vka_err("%s: the gradient scale is %g, needs a finite value >= 0", k, scale);
        return -EINVAL;
    }
    if (!(isfinite(lr) && lr >= 0)) {
        vka_err("%s: the learning rate is %g, needs a finite value >= 0", k, lr);
        return -EINVAL;
    }
    struct hyper h = hyper_of(o, scale, lr);
    memcpy(o->hyper->mapped, &h, sizeof(h));
    o->pending = true;
    return 0;
}

int vka_optim_record(struct vka_cmd *cmd, struct vka_optim *o, const struct vka_tensor *params,
                     const struct vka_tensor *grads)
{
    const char *k = kind_name(o->p.kind);
    if (vka_cmd_ctx(cmd) != o->ctx) {
        vka_err("%s: the recorder belongs to another context", k);
        return -EINVAL;
    }
    int ret;
    if ((ret = check_region(o, "params", params)) < 0 ||
        (ret = check_region(o, "grads", grads)) < 0)
        return ret;
    if (grads->off % 4) {
        vka_err("%s: grads start at element %" PRIu64 ", not a multiple of 4", k, grads->off);
        return -EINVAL;
    }
    if ((ret = record_norm(cmd, o, grads)) < 0)
        return ret;
    return record_update(cmd, o, params, grads);
}

int vka_optim_record_step(struct vka_cmd *cmd, struct vka_optim *o,
                          const struct vka_tensor *params, const struct vka_tensor *grads,
                          float scale, double lr)
{
    int ret = vka_optim_prepare_step(o, scale, lr);
    if (ret == 0 && (ret = vka_optim_record(cmd, o, params, grads)) < 0)
        vka_optim_abort_step(o);
    return ret;
}

int vka_optim_last_norm(struct vka_optim *o, float *norm)
{
    return vka_buf_download(o->scratch, (o->stats_off + 1) * sizeof(float), norm,
                            sizeof(float));
}

int vka_optim_finish_step(struct vka_optim *o, bool *skipped, float *norm)
{
    if (!o->pending) {
        vka_err("%s: no step was recorded (vka_optim_finish_step follows "
                "vka_optim_record_step)", kind_name(o->p.kind));
        return -EINVAL;
    }
    float nrm;
    int ret = vka_optim_last_norm(o, &nrm);
    if (ret < 0)
        return ret;
    o->pending = false;
    bool skip = !isfinite(nrm);
    if (skip)
        o->counters.skipped++;
    else
        o->counters.steps++;
    if (skipped)
        *skipped = skip;
    if (norm)
        *norm = nrm;
    return 0;
}

void vka_optim_abort_step(struct vka_optim *o)
{
    o->pending = false;
}

int vka_optim_zero_grads(struct vka_cmd *cmd, const struct vka_optim *o,
                         const struct vka_tensor *grads)
{
    int ret = check_region(o, "grads", grads);
    return ret < 0 ? ret : vka_fill(cmd, grads, 0.0f);
}

void vka_optim_get_counters(const struct vka_optim *o, struct vka_optim_counters *c)
{
    *c = o->counters;
}

int vka_optim_set_counters(struct vka_optim *o, const struct vka_optim_counters *c)
{
    if (o->pending) {
        vka_err("%s: the counters cannot change while step %" PRIu64 " is recorded and "
                "not finished", kind_name(o->p.kind), o->counters.steps + 1);
        return -EBUSY;
    }
    o->counters = *c;
    return 0;
}

uint32_t vka_optim_state_count(const struct vka_optim *o)
{
    return o->nstate;
}

const struct vka_tensor *vka_optim_state(const struct vka_optim *o, uint32_t i,
                                         const char **name)
{
    if (i >= o->nstate)
        return NULL;
    if (name)
        *name = o->state_name[i];
    return &o->state[i];
}

static const struct vka_tensor *state_find(const struct vka_optim *o, const char *name)
{
    for (uint32_t i = 0; i < o->nstate; i++)
        if (!strcmp(o->state_name[i], name))
            return &o->state[i];
    vka_err("%s: no state tensor named \"%s\" (it keeps %s)", kind_name(o->p.kind), name,
            o->nstate == 2 ? "exp_avg, exp_avg_sq" : o->nstate ? "momentum_buffer" : "none");
    return NULL;
}

int vka_optim_state_read(struct vka_optim *o, const char *name, float *host)
{
    const struct vka_tensor *t = state_find(o, name);
    return t ? vka_buf_download(t->buf, 0, host, o->p.count * sizeof(float)) : -ENOENT;
}

int vka_optim_state_write(struct vka_optim *o, const char *name, const float *host)
{
    const struct vka_tensor *t = state_find(o, name);
    return t ? vka_buf_upload(t->buf, 0, host, o->p.count * sizeof(float)) : -ENOENT;
}

/* ---- learning-rate schedules ------------------------------------------------------ */

/* What makes s unusable, in buf; NULL when nothing does. */
static const char *lr_problem(const struct vka_lr_schedule *s, char *buf, size_t size)
{
    if (!(isfinite(s->lr) && s->lr >= 0))
        snprintf(buf, size, "lr is %g, needs a finite value >= 0", s->lr);
    else if (s->warmup_steps && !(s->warmup_start_factor > 0 && s->warmup_start_factor <= 1))
        snprintf(buf, size, "warmup_start_factor is %g, needs to lie in (0, 1]",
                 s->warmup_start_factor);
    else if (s->kind == VKA_LR_CONSTANT)
        return NULL;
    else if (s->kind == VKA_LR_STEP && (s->step_size == 0 || !(isfinite(s->gamma) &&
                                                               s->gamma >= 0)))
        snprintf(buf, size, "step: step_size is %" PRIu64 " and gamma %g, needs step_size "
                 ">= 1 and a finite gamma >= 0", s->step_size, s->gamma);
    else if (s->kind == VKA_LR_COSINE && (s->t_max == 0 || !(isfinite(s->eta_min) &&
                                                             s->eta_min >= 0)))
        snprintf(buf, size, "cosine: t_max is %" PRIu64 " and eta_min %g, needs t_max >= 1 "
                 "and a finite eta_min >= 0", s->t_max, s->eta_min);
    else if (s->kind == VKA_LR_POLY && (s->total_steps == 0 ||
                                        !(isfinite(s->power) && s->power >= 0) ||
                                        !(isfinite(s->min_lr) && s->min_lr >= 0)))
        snprintf(buf, size, "poly: total_steps is %" PRIu64 ", power %g and min_lr %g, needs "
                 "total_steps >= 1, a finite power >= 0 and a finite min_lr >= 0",
                 s->total_steps, s->power, s->min_lr);
    else if (s->kind != VKA_LR_STEP && s->kind != VKA_LR_COSINE && s->kind != VKA_LR_POLY)
        snprintf(buf, size, "unknown kind %d", (int)s->kind);
    else
        return NULL;
    return buf;
}

int vka_lr_check(const struct vka_lr_schedule *s)
{
    char buf[256];
    if (lr_problem(s, buf, sizeof(buf))) {
        vka_err("lr schedule: %s", buf);
        return -EINVAL;
    }
    return 0;
}

double vka_lr_at(const struct vka_lr_schedule *s, uint64_t t)
{
    char buf[256];
    if (lr_problem(s, buf, sizeof(buf)))
        return NAN;
    double lr;
    switch (s->kind) {
    case VKA_LR_STEP:
        lr = s->lr * pow(s->gamma, (double)(t / s->step_size));
        break;
    case VKA_LR_COSINE:
        lr = s->eta_min + (s->lr - s->eta_min) *
             (1.0 + cos(M_PI * (double)t / (double)s->t_max)) / 2.0;
        break;
    case VKA_LR_POLY: {
        uint64_t c = t < s->total_steps ? t : s->total_steps;
        lr = (s->lr - s->min_lr) * pow(1.0 - (double)c / (double)s->total_steps, s->power) +
             s->min_lr;
        break;
    }
    default:
        lr = s->lr;
    }
    if (s->warmup_steps) {
        uint64_t c = t < s->warmup_steps ? t : s->warmup_steps;
        double f = s->warmup_start_factor +
                   (1.0 - s->warmup_start_factor) * (double)c / (double)s->warmup_steps;
        lr *= f;
    }
    return lr;
}
