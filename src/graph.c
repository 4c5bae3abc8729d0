/* Graph building, shape inference, parameter storage and initialisation, autograd and
 * the liveness planner; see graph.h. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "log.h"
#include "rng.h"
#include "ops/basic.h"

#define ALIGN 64 /* elements: 256 bytes, every binding offset stays aligned */

/* What a plan runs: the nodes that are active, and which values get a gradient (for a
 * PARAM: its gradient is accumulated). */
struct mask {
    uint8_t *active; /* per node */
    uint8_t *grad;   /* per value */
};

struct phase {
    int *outputs;
    uint32_t noutputs;
    char *train; /* prefix of the trained parameters; NULL: none */
};

struct vka_plan {
    struct vka_plan *next;
    struct vka_graph *g;
    int phase;
    uint32_t n;
    bool backward;
    struct mask m;
    int *bn_means;      /* the running means of the BatchNorm nodes it runs in training */
    uint32_t nbn;
    struct vka_buf *arena;
    uint64_t *act_off;  /* per value: element offset in the arena, UINT64_MAX = none */
    uint64_t *grad_off;
    struct vka_cmd *cmd;
};

struct vka_graph {
    struct vka_ctx *ctx;
    uint64_t seed;
    struct vka_val *vals;
    uint32_t nvals, cap_vals;
    struct vka_node *nodes;
    uint32_t nnodes, cap_nodes;
    bool training;
    /* regions, made by vka_graph_alloc */
    struct vka_buf *params, *grads, *state, *losses;
    uint64_t params_len, state_len, losses_len;
    struct vka_plan *plans;
    struct phase *phases; /* phases[0] is unused: phase 0 is the whole graph */
    uint32_t nphases;
};

static uint64_t align_up(uint64_t x)
{
    return (x + ALIGN - 1) / ALIGN * ALIGN;
}

int vka_graph_create(struct vka_ctx *ctx, const struct vka_graph_params *params,
                     struct vka_graph **out)
{
    struct vka_graph *g = calloc(1, sizeof(*g));
    *out = NULL;
    if (!g)
        return -ENOMEM;
    g->ctx = ctx;
    g->seed = params ? params->seed : 0;
    g->training = true;
    *out = g;
    return 0;
}

static void plan_free(struct vka_plan *p)
{
    vka_cmd_destroy(&p->cmd);
    vka_buf_destroy(&p->arena);
    free(p->act_off);
    free(p->grad_off);
    free(p->m.active);
    free(p->m.grad);
    free(p->bn_means);
    free(p);
}

void vka_graph_drop_plans(struct vka_graph *g)
{
    while (g->plans) {
        struct vka_plan *p = g->plans;
        g->plans = p->next;
        plan_free(p);
    }
}

void vka_graph_destroy(struct vka_graph **pg)
{
    struct vka_graph *g = *pg;
    if (!g)
        return;
    vka_graph_drop_plans(g);
    vka_buf_destroy(&g->params);
    vka_buf_destroy(&g->grads);
    vka_buf_destroy(&g->state);
    vka_buf_destroy(&g->losses);
    for (uint32_t i = 1; i < g->nphases; i++) {
        free(g->phases[i].outputs);
        free(g->phases[i].train);
    }
    free(g->phases);
    free(g->vals);
    free(g->nodes);
    free(g);
    *pg = NULL;
}

uint32_t vka_graph_nvals(const struct vka_graph *g)
{
    return g->nvals;
}

const struct vka_val *vka_graph_val(const struct vka_graph *g, int v)
{
    return v >= 0 && (uint32_t)v < g->nvals ? &g->vals[v] : NULL;
}

int vka_graph_find(const struct vka_graph *g, const char *name)
{
    for (uint32_t i = 0; i < g->nvals; i++)
        if (!strcmp(g->vals[i].name, name))
            return (int)i;
    return -ENOENT;
}

static int add_val(struct vka_graph *g, const struct vka_val *v)
{
    if (g->params) {
        vka_err("graph: %s added after vka_graph_alloc", v->name);
        return -EINVAL;
    }
    if (v->name[0] && v->kind != VKA_VAL_ACT && vka_graph_find(g, v->name) >= 0) {
        vka_err("graph: the name %s is taken", v->name);
        return -EEXIST;
    }
    if (g->nvals == g->cap_vals) {
        uint32_t cap = g->cap_vals ? 2 * g->cap_vals : 64;
        struct vka_val *vals = realloc(g->vals, cap * sizeof(*vals));
        if (!vals)
            return -ENOMEM;
        g->vals = vals;
        g->cap_vals = cap;
    }
    g->vals[g->nvals] = *v;
    g->vals[g->nvals].producer = -1;
    return (int)g->nvals++;
}

int vka_graph_input(struct vka_graph *g, const char *name, enum vka_dtype dtype,
                    enum vka_layout layout, uint32_t c, uint32_t h, uint32_t w)
{
    struct vka_val v = { .kind = VKA_VAL_INPUT, .layout = layout, .dtype = dtype,
                         .c = c, .h = h, .w = w };
    snprintf(v.name, sizeof(v.name), "%s", name);
    return add_val(g, &v);
}

/* An existing PARAM or STATE value of that name and shape (a module applied again), or
 * -ENOENT; -EEXIST with a message when the name is taken by something else. */
static int shared(const struct vka_graph *g, const struct vka_val *v)
{
    int i = vka_graph_find(g, v->name);
    if (i < 0)
        return -ENOENT;
    const struct vka_val *o = &g->vals[i];
    if (o->kind != v->kind || o->layout != v->layout || o->n != v->n || o->c != v->c ||
        o->h != v->h || o->w != v->w) {
        vka_err("graph: %s (%u,%u,%u,%u) is taken by a value of another kind or shape "
                "(%u,%u,%u,%u)", v->name, v->n, v->c, v->h, v->w, o->n, o->c, o->h, o->w);
        return -EEXIST;
    }
    return i;
}

int vka_graph_param(struct vka_graph *g, const char *name, enum vka_layout layout,
                    uint32_t n, uint32_t c, uint32_t h, uint32_t w, enum vka_init init,
                    float init_arg)
{
    struct vka_val v = { .kind = VKA_VAL_PARAM, .layout = layout, .dtype = VKA_F32,
                         .n = n, .c = c, .h = h, .w = w, .init = init, .init_arg = init_arg,
                         .file_rank = layout == VKA_LAYOUT_WEIGHT ? 4 : 1,
                         .trainable = true, .needs_grad = true };
    snprintf(v.name, sizeof(v.name), "%s", name);
    int i = shared(g, &v);
    return i == -ENOENT ? add_val(g, &v) : i;
}

int vka_graph_state(struct vka_graph *g, const char *name, uint32_t n, float value)
{
    struct vka_val v = { .kind = VKA_VAL_STATE, .layout = VKA_LAYOUT_FLAT, .dtype = VKA_F32,
                         .n = n, .c = 1, .h = 1, .w = 1, .file_rank = 1,
                         .init = value ? VKA_INIT_ONE : VKA_INIT_ZERO };
    snprintf(v.name, sizeof(v.name), "%s", name);
    int i = shared(g, &v);
    return i == -ENOENT ? add_val(g, &v) : i;
}

/* A value as a bare shape (no storage) for shape rules; batched values get N = 1. */
static struct vka_tensor shape_of(const struct vka_val *v)
{
    struct vka_tensor t = { .dtype = v->dtype, .layout = v->layout, .n = v->n ? v->n : 1,
                            .c = v->c, .h = v->h, .w = v->w };
    t.cs = v->layout == VKA_LAYOUT_FLAT ? v->c : (v->c + 3) / 4 * 4;
    return t;
}

static bool batched(const struct vka_val *v)
{
    return v->n == 0;
}

static int add_act(struct vka_graph *g, const char *name, enum vka_layout layout, bool batch,
                   uint32_t n, uint32_t c, uint32_t h, uint32_t w)
{
    struct vka_val v = { .kind = VKA_VAL_ACT, .layout = layout, .dtype = VKA_F32,
                         .n = batch ? 0 : n, .c = c, .h = h, .w = w };
    snprintf(v.name, sizeof(v.name), "%s", name);
    return add_val(g, &v);
}

int vka_graph_node(struct vka_graph *g, enum vka_op op, const union vka_op_params *p,
                   int x0, int x1, int x2)
{
    const char *opname = vka_ops[op].name;
    struct vka_node node = { .op = op, .in = { x0, x1, x2 }, .out = -1,
                             .saved = { -1, -1 }, .state = { -1, -1 } };
    if (p)
        node.p = *p;
    struct vka_tensor shapes[3];
    struct vka_op_args a = { .p = node.p };
    bool batch = false, grad = false;
    for (int i = 0; i < 3; i++) {
        if (node.in[i] < 0)
            continue;
        if ((uint32_t)node.in[i] >= g->nvals) {
            vka_err("%s: input %d is not a value of the graph", opname, i);
            return -EINVAL;
        }
        const struct vka_val *v = &g->vals[node.in[i]];
        shapes[i] = shape_of(v);
        a.x[i] = &shapes[i];
        batch |= batched(v);
        grad |= v->needs_grad;
    }
    uint32_t s[4];
    int ret = vka_ops[op].shape(&a, s);
    if (ret < 0)
        return ret;

    char name[80];
    snprintf(name, sizeof(name), "%s.%u", opname, g->nnodes);
    if (vka_ops[op].flags & VKA_OP_LOSS) {
        struct vka_val v = { .kind = VKA_VAL_LOSS, .layout = VKA_LAYOUT_FLAT, .dtype = VKA_F32,
                             .n = s[0], .c = 1, .h = 1, .w = 1 };
        snprintf(v.name, sizeof(v.name), "%s", name);
        ret = add_val(g, &v);
    } else {
        ret = add_act(g, name, VKA_LAYOUT_NHWC4, batch, s[0], s[1], s[2], s[3]);
    }
    if (ret < 0)
        return ret;
    node.out = ret;
    g->vals[ret].needs_grad = grad;
    g->vals[ret].producer = (int)g->nnodes;

    /* what the forward saves for the backward (the shapes in a come from copies, so
     * add_act moving g->vals does not touch them) */
    char sname[96];
    for (int i = 0; i < 2; i++) {
        struct vka_saved_shape ss;
        if (!vka_op_saved_shape(op, i, &a, s, &ss))
            continue; /* nothing saved: node.saved[i] stays -1 */
        snprintf(sname, sizeof(sname), "%s.saved%d", name, i);
        int sv = add_act(g, sname, VKA_LAYOUT_FLAT, ss.per_sample, ss.n, ss.c, ss.h, ss.w);
        if (sv < 0)
            return sv;
        node.saved[i] = sv;
    }
    if (g->nnodes == g->cap_nodes) {
        uint32_t cap = g->cap_nodes ? 2 * g->cap_nodes : 64;
        struct vka_node *nodes = realloc(g->nodes, cap * sizeof(*nodes));
        if (!nodes)
            return -ENOMEM;
        g->nodes = nodes;
        g->cap_nodes = cap;
    }
    g->nodes[g->nnodes++] = node;
    return node.out;
}

/* ---- layers ---------------------------------------------------------------------- */

static int param2(struct vka_graph *g, const char *prefix, const char *what, enum vka_layout l,
                  uint32_t n, uint32_t c, uint32_t h, uint32_t w, enum vka_init init, float arg)
{
    char name[96];
    snprintf(name, sizeof(name), "%s.%s", prefix, what);
    return vka_graph_param(g, name, l, n, c, h, w, init, arg);
}

static int conv_like(struct vka_graph *g, enum vka_op op, const char *prefix, int x,
                     uint32_t wn, uint32_t wc, uint32_t k, bool bias, uint32_t out_c,
                     const union vka_op_params *p)
{
    /* PyTorch's fan_in is weight.size(1) * kernel area: C_in for conv2d and linear,
     * C_out for conv_transpose2d (whose weight is (C_in, C_out, k, k)) */
    float fan_in = (float)wc * k * k;
    int w = param2(g, prefix, "weight", VKA_LAYOUT_WEIGHT, wn, wc, k, k,
                   VKA_INIT_KAIMING_UNIFORM, fan_in);
    if (w < 0)
        return w;
    int b = -1;
    if (bias && (b = param2(g, prefix, "bias", VKA_LAYOUT_FLAT, out_c, 1, 1, 1,
                            VKA_INIT_UNIFORM_FAN_IN, fan_in)) < 0)
        return b;
    return vka_graph_node(g, op, p, x, w, b);
}

int vka_layer_conv2d(struct vka_graph *g, const char *prefix, int x, uint32_t out_c,
                     uint32_t k, uint32_t stride, uint32_t pad, bool bias)
{
    union vka_op_params p = { .conv = { .stride = { stride, stride }, .pad = { pad, pad } } };
    return conv_like(g, VKA_OP_conv2d, prefix, x, out_c, g->vals[x].c, k, bias, out_c, &p);
}

int vka_layer_conv_transpose2d(struct vka_graph *g, const char *prefix, int x, uint32_t out_c,
                               uint32_t k, uint32_t stride, uint32_t pad, uint32_t out_pad,
                               bool bias)
{
    union vka_op_params p = { .conv = { .stride = { stride, stride }, .pad = { pad, pad },
                                        .out_pad = { out_pad, out_pad } } };
    return conv_like(g, VKA_OP_conv_transpose2d, prefix, x, g->vals[x].c, out_c, k, bias,
                     out_c, &p);
}

int vka_layer_linear(struct vka_graph *g, const char *prefix, int x, uint32_t out_f, bool bias)
{
    int y = conv_like(g, VKA_OP_linear, prefix, x, out_f, g->vals[x].c, 1, bias, out_f, NULL);
    if (y >= 0)
        g->vals[g->nodes[g->nnodes - 1].in[1]].file_rank = 2; /* PyTorch's (out, in) */
    return y;
}

int vka_layer_group_norm(struct vka_graph *g, const char *prefix, int x, uint32_t groups)
{
    uint32_t c = g->vals[x].c;
    int gamma = param2(g, prefix, "weight", VKA_LAYOUT_FLAT, c, 1, 1, 1, VKA_INIT_ONE, 0);
    if (gamma < 0)
        return gamma;
    int beta = param2(g, prefix, "bias", VKA_LAYOUT_FLAT, c, 1, 1, 1, VKA_INIT_ZERO, 0);
    if (beta < 0)
        return beta;
    union vka_op_params p = { .norm = { .groups = groups, .eps = 1e-5f } };
    return vka_graph_node(g, VKA_OP_group_norm, &p, x, gamma, beta);
}

int vka_layer_batch_norm(struct vka_graph *g, const char *prefix, int x)
{
    uint32_t c = g->vals[x].c;
    char name[96];
    int gamma = param2(g, prefix, "weight", VKA_LAYOUT_FLAT, c, 1, 1, 1, VKA_INIT_ONE, 0);
    if (gamma < 0)
        return gamma;
    int beta = param2(g, prefix, "bias", VKA_LAYOUT_FLAT, c, 1, 1, 1, VKA_INIT_ZERO, 0);
    if (beta < 0)
        return beta;
    snprintf(name, sizeof(name), "%s.running_mean", prefix);
    int rm = vka_graph_state(g, name, c, 0.0f);
    if (rm < 0)
        return rm;
    snprintf(name, sizeof(name), "%s.running_var", prefix);
    int rv = vka_graph_state(g, name, c, 1.0f);
    if (rv < 0)
        return rv;
    union vka_op_params p = { .norm = { .eps = 1e-5f, .momentum = 0.1f,
                                        .training = g->training } };
    int y = vka_graph_node(g, VKA_OP_batch_norm, &p, x, gamma, beta);
    if (y >= 0) {
        g->nodes[g->nnodes - 1].state[0] = rm;
        g->nodes[g->nnodes - 1].state[1] = rv;
    }
    return y;
}

int vka_layer_act(struct vka_graph *g, enum vka_op op, int x, float slope)
{
    union vka_op_params p = { .slope = slope };
    return vka_graph_node(g, op, &p, x, -1, -1);
}

static void propagate_grads(struct vka_graph *g)
{
    for (uint32_t i = 0; i < g->nnodes; i++) {
        const struct vka_node *nd = &g->nodes[i];
        bool grad = false;
        for (int k = 0; k < 3; k++)
            if (nd->in[k] >= 0)
                grad |= g->vals[nd->in[k]].needs_grad;
        g->vals[nd->out].needs_grad = grad;
    }
}

void vka_graph_set_trainable(struct vka_graph *g, const char *prefix, bool trainable)
{
    size_t len = strlen(prefix);
    for (uint32_t i = 0; i < g->nvals; i++)
        if (g->vals[i].kind == VKA_VAL_PARAM && !strncmp(g->vals[i].name, prefix, len))
            g->vals[i].trainable = g->vals[i].needs_grad = trainable;
    propagate_grads(g);
    vka_graph_drop_plans(g);
}

void vka_graph_set_training(struct vka_graph *g, bool training)
{
    if (g->training == training)
        return;
    g->training = training;
    for (uint32_t i = 0; i < g->nnodes; i++)
        if (vka_ops[g->nodes[i].op].flags & VKA_OP_RUNNING)
            g->nodes[i].p.norm.training = training;
    vka_graph_drop_plans(g);
}

int vka_graph_set_init(struct vka_graph *g, int v, enum vka_init init, float init_arg)
{
    if (v < 0 || (uint32_t)v >= g->nvals || g->vals[v].kind != VKA_VAL_PARAM || g->params) {
        vka_err("graph: value %d is not a parameter waiting for vka_graph_alloc", v);
        return -EINVAL;
    }
    g->vals[v].init = init;
    g->vals[v].init_arg = init_arg;
    return 0;
}

/* ---- storage ----------------------------------------------------------------------- */

static struct vka_tensor val_view(const struct vka_val *v, struct vka_buf *buf, uint64_t off,
                                  uint32_t n)
{
    struct vka_tensor t = shape_of(v);
    t.n = n;
    t.buf = buf;
    t.off = off;
    return t;
}

static uint64_t stored(const struct vka_val *v, uint32_t n)
{
    struct vka_tensor t = shape_of(v);
    t.n = n ? n : 1;
    return vka_tensor_stored(&t);
}

/* splitmix64 -> uniform doubles: the initialisation's only randomness */
static double rng_uniform(uint64_t *s)
{
    return (double)(vka_rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

static void init_values(const struct vka_val *v, float *data, uint64_t count, uint64_t *rng)
{
    for (uint64_t i = 0; i < count; i++) {
        double u = rng_uniform(rng), r;
        switch (v->init) {
        case VKA_INIT_ONE: r = 1.0; break;
        case VKA_INIT_KAIMING_UNIFORM:
        case VKA_INIT_UNIFORM_FAN_IN: r = (2 * u - 1) / sqrt(v->init_arg); break;
        case VKA_INIT_NORMAL:
        case VKA_INIT_NORMAL_ONE: {
            double u2 = rng_uniform(rng);
            r = v->init_arg * sqrt(-2.0 * log(1.0 - u)) * cos(2 * M_PI * u2) +
                (v->init == VKA_INIT_NORMAL_ONE);
            break;
        }
        default: r = 0.0; break;
        }
        data[i] = (float)r;
    }
}

static int region(struct vka_graph *g, enum vka_val_kind kind, enum vka_mem_cat cat,
                  struct vka_buf **buf, uint64_t *len)
{
    uint64_t off = 0;
    for (uint32_t i = 0; i < g->nvals; i++)
        if (g->vals[i].kind == kind) {
            g->vals[i].region_off = off;
            off = align_up(off + stored(&g->vals[i], g->vals[i].n));
        }
    *len = off;
    return vka_buf_create(g->ctx, &(struct vka_buf_params){ .size = (off ? off : 4) * 4,
                                                            .cat = cat }, buf);
}

int vka_graph_alloc(struct vka_graph *g)
{
    int ret;
    if (g->params) {
        vka_err("graph: vka_graph_alloc called twice");
        return -EINVAL;
    }
    uint64_t grads_len;
    if ((ret = region(g, VKA_VAL_PARAM, VKA_MEM_PARAMS, &g->params, &g->params_len)) < 0 ||
        (ret = region(g, VKA_VAL_PARAM, VKA_MEM_GRADS, &g->grads, &grads_len)) < 0 ||
        (ret = region(g, VKA_VAL_STATE, VKA_MEM_PARAMS, &g->state, &g->state_len)) < 0 ||
        (ret = region(g, VKA_VAL_LOSS, VKA_MEM_OTHER, &g->losses, &g->losses_len)) < 0)
        return ret;
    /* parameters in registration order from the seed; every other region zero */
    uint64_t rng = g->seed * 0x2545f4914f6cdd1dull + 1;
    struct vka_cmd *cmd = NULL;
    if ((ret = vka_cmd_create(g->ctx, NULL, &cmd)) < 0 || (ret = vka_cmd_begin(cmd)) < 0)
        goto out;
    struct vka_buf *zero[] = { g->params, g->grads, g->state, g->losses };
    for (int i = 0; i < 4; i++) {
        struct vka_tensor all = vka_tensor_flat(zero[i], 0, zero[i]->size / 4);
        if ((ret = vka_fill(cmd, &all, 0.0f)) < 0)
            goto out;
    }
    if ((ret = vka_cmd_run(cmd)) < 0)
        goto out;
    for (uint32_t i = 0; i < g->nvals; i++) {
        const struct vka_val *v = &g->vals[i];
        if (v->kind != VKA_VAL_PARAM && v->kind != VKA_VAL_STATE)
            continue;
        uint64_t count = (uint64_t)v->n * v->c * v->h * v->w;
        float *data = malloc((count ? count : 1) * sizeof(float));
        if (!data) {
            ret = -ENOMEM;
            goto out;
        }
        init_values(v, data, count, &rng);
        struct vka_tensor t = vka_graph_tensor(g, (int)i);
        ret = vka_tensor_upload(&t, data);
        free(data);
        if (ret < 0)
            goto out;
    }
out:
    vka_cmd_destroy(&cmd);
    return ret;
}

struct vka_tensor vka_graph_params_flat(const struct vka_graph *g)
{
    return vka_tensor_flat(g->params, 0, g->params_len);
}

struct vka_tensor vka_graph_grads_flat(const struct vka_graph *g)
{
    return vka_tensor_flat(g->grads, 0, g->params_len);
}

struct vka_tensor vka_graph_tensor(const struct vka_graph *g, int v)
{
    const struct vka_val *val = &g->vals[v];
    struct vka_buf *buf = val->kind == VKA_VAL_PARAM ? g->params
                        : val->kind == VKA_VAL_STATE ? g->state
                        : val->kind == VKA_VAL_LOSS  ? g->losses : NULL;
    return val_view(val, buf, val->region_off, val->n);
}

struct vka_tensor vka_graph_grad_tensor(const struct vka_graph *g, int v)
{
    const struct vka_val *val = &g->vals[v];
    return val_view(val, g->grads, val->region_off, val->n);
}

/* ---- phases ------------------------------------------------------------------------ */

int vka_graph_phase(struct vka_graph *g, const int *outputs, uint32_t noutputs,
                    const char *train)
{
    for (uint32_t i = 0; i < noutputs; i++)
        if (outputs[i] < 0 || (uint32_t)outputs[i] >= g->nvals) {
            vka_err("graph: phase output %d is not a value of the graph", outputs[i]);
            return -EINVAL;
        }
    if (g->nphases == 0)
        g->nphases = 1;
    struct phase *ph = realloc(g->phases, (g->nphases + 1) * sizeof(*ph));
    if (!ph)
        return -ENOMEM;
    g->phases = ph;
    ph = &g->phases[g->nphases];
    *ph = (struct phase){ .outputs = malloc((noutputs ? noutputs : 1) * sizeof(int)),
                          .noutputs = noutputs, .train = train ? strdup(train) : NULL };
    if (!ph->outputs || (train && !ph->train)) {
        free(ph->outputs);
        free(ph->train);
        return -ENOMEM;
    }
    memcpy(ph->outputs, outputs, noutputs * sizeof(int));
    return (int)g->nphases++;
}

static bool trains(const struct phase *ph, const struct vka_val *v)
{
    return v->kind == VKA_VAL_PARAM && ph->train &&
           !strncmp(v->name, ph->train, strlen(ph->train));
}

/* Fills m for a phase: phase 0 is every node with the trainable flags; another runs the
 * nodes its outputs need, training the parameters under its prefix. */
static int make_mask(const struct vka_graph *g, int phase, struct mask *m)
{
    m->active = calloc(g->nnodes ? g->nnodes : 1, 1);
    m->grad = calloc(g->nvals ? g->nvals : 1, 1);
    if (!m->active || !m->grad)
        return -ENOMEM;
    if (phase == 0) {
        memset(m->active, 1, g->nnodes);
        for (uint32_t v = 0; v < g->nvals; v++)
            m->grad[v] = g->vals[v].needs_grad;
        return 0;
    }
    const struct phase *ph = &g->phases[phase];
    uint8_t *needed = calloc(g->nvals ? g->nvals : 1, 1);
    if (!needed)
        return -ENOMEM;
    for (uint32_t i = 0; i < ph->noutputs; i++)
        needed[ph->outputs[i]] = 1;
    for (uint32_t i = g->nnodes; i-- > 0;) {
        const struct vka_node *nd = &g->nodes[i];
        if (!needed[nd->out])
            continue;
        m->active[i] = 1;
        for (int k = 0; k < 3; k++)
            if (nd->in[k] >= 0)
                needed[nd->in[k]] = 1;
    }
    free(needed);
    for (uint32_t v = 0; v < g->nvals; v++)
        m->grad[v] = trains(ph, &g->vals[v]);
    for (uint32_t i = 0; i < g->nnodes; i++) {
        const struct vka_node *nd = &g->nodes[i];
        for (int k = 0; k < 3 && m->active[i]; k++)
            if (nd->in[k] >= 0 && m->grad[nd->in[k]])
                m->grad[nd->out] = 1;
    }
    return 0;
}

int vka_graph_span(const struct vka_graph *g, enum vka_val_kind kind, const char *prefix,
                   struct vka_tensor *t)
{
    size_t len = strlen(prefix);
    uint64_t lo = UINT64_MAX, hi = 0;
    for (uint32_t v = 0; v < g->nvals; v++) {
        const struct vka_val *val = &g->vals[v];
        if (val->kind != kind || strncmp(val->name, prefix, len))
            continue;
        lo = val->region_off < lo ? val->region_off : lo;
        uint64_t end = align_up(val->region_off + stored(val, val->n));
        hi = end > hi ? end : hi;
    }
    if (lo == UINT64_MAX) {
        *t = vka_tensor_flat(kind == VKA_VAL_PARAM ? g->params : g->state, 0, 0);
        return 0;
    }
    for (uint32_t v = 0; v < g->nvals; v++) {
        const struct vka_val *val = &g->vals[v];
        if (val->kind == kind && strncmp(val->name, prefix, len) && val->region_off >= lo &&
            val->region_off < hi) {
            vka_err("graph: the values under \"%s\" are not registered together (%s lies "
                    "between them)", prefix, val->name);
            return -EINVAL;
        }
    }
    *t = vka_tensor_flat(kind == VKA_VAL_PARAM ? g->params : g->state, lo, hi - lo);
    return 0;
}

int vka_graph_phase_params(const struct vka_graph *g, int phase, struct vka_tensor *params,
                           struct vka_tensor *grads)
{
    if (phase == 0) {
        *params = vka_graph_params_flat(g);
        *grads = vka_graph_grads_flat(g);
        return 0;
    }
    const char *train = g->phases[phase].train;
    int ret = train ? vka_graph_span(g, VKA_VAL_PARAM, train, params) : 0;
    if (ret < 0)
        return ret;
    if (!train || params->n == 0) {
        vka_err("graph: phase %d trains no parameter (prefix \"%s\")", phase,
                train ? train : "(none)");
        return -EINVAL;
    }
    *grads = vka_tensor_flat(g->grads, params->off, params->n);
    return 0;
}

/* ---- plans --------------------------------------------------------------------------- */

/* One arena item: a value (or a value's gradient) alive over [start, end] in pass time,
 * where forward node i runs at i and its backward at 2F - 1 - i. */
struct item {
    int val;
    bool grad;
    uint64_t size; /* elements, aligned */
    uint32_t start, end;
    uint64_t off;
};

static int cmp_items(const void *a, const void *b)
{
    const struct item *x = a, *y = b;
    if (x->size != y->size)
        return x->size < y->size ? 1 : -1;
    return (x->start > y->start) - (x->start < y->start);
}

static bool in_arena(const struct vka_val *v)
{
    return v->kind == VKA_VAL_INPUT || v->kind == VKA_VAL_ACT;
}

/* Liveness of every arena value and gradient, then first-fit placement of the largest
 * first. Returns the arena size in elements. */
static int place(struct vka_graph *g, const struct mask *m, uint32_t n, bool backward,
                 uint64_t *act_off, uint64_t *grad_off, uint64_t *total)
{
    uint32_t F = g->nnodes, T = backward ? 2 * F : F;
    struct item *items = calloc(2 * (size_t)g->nvals + 1, sizeof(*items));
    if (!items)
        return -ENOMEM;
    uint32_t *start = malloc(g->nvals * sizeof(uint32_t) * 4);
    if (!start) {
        free(items);
        return -ENOMEM;
    }
    uint32_t *end = start + g->nvals, *gstart = end + g->nvals, *gend = gstart + g->nvals;
    for (uint32_t v = 0; v < g->nvals; v++) {
        start[v] = UINT32_MAX;
        end[v] = 0;
        gstart[v] = UINT32_MAX;
        gend[v] = 0;
    }
#define USE(v, t) do { if ((t) > end[v]) end[v] = (t); } while (0)
    for (uint32_t i = 0; i < F; i++) {
        const struct vka_node *nd = &g->nodes[i];
        if (!m->active[i])
            continue;
        uint32_t tb = 2 * F - 1 - i;
        bool bwd = backward && m->grad[nd->out]; /* this node's backward runs */
        start[nd->out] = i;
        for (int k = 0; k < 2; k++)
            if (nd->saved[k] >= 0) {
                start[nd->saved[k]] = i;
                USE(nd->saved[k], bwd ? tb : i);
            }
        for (int k = 0; k < 3; k++) {
            int v = nd->in[k];
            if (v < 0)
                continue;
            if (g->vals[v].kind == VKA_VAL_INPUT)
                start[v] = 0;
            USE(v, i);
            if (bwd) {
                USE(v, tb); /* inputs are read by the node's backward */
                if (m->grad[v] && g->vals[v].kind == VKA_VAL_ACT) {
                    if (tb < gstart[v])
                        gstart[v] = tb;
                    /* the gradient lives until the producer's backward reads it */
                    uint32_t tp = 2 * F - 1 - (uint32_t)g->vals[v].producer;
                    if (tp > gend[v])
                        gend[v] = tp;
                }
            }
        }
        if (bwd)
            USE(nd->out, tb); /* tanh and sigmoid read their output */
    }
#undef USE
    uint32_t nitems = 0;
    for (uint32_t v = 0; v < g->nvals; v++) {
        act_off[v] = grad_off[v] = UINT64_MAX;
        if (!in_arena(&g->vals[v]))
            continue;
        if (start[v] == UINT32_MAX)
            continue; /* never produced: a dangling value */
        /* values nobody reads (the outputs) live to the end, so they can be read back */
        uint32_t e = end[v];
        bool read = false;
        for (uint32_t i = 0; i < F && !read; i++)
            for (int k = 0; k < 3; k++)
                read |= m->active[i] && g->nodes[i].in[k] == (int)v;
        if (!read)
            e = T - 1;
        /* batched values hold n samples, the others (BatchNorm's saved statistics) their
         * own fixed size */
        uint64_t size = align_up(stored(&g->vals[v], batched(&g->vals[v]) ? n : g->vals[v].n));
        items[nitems++] = (struct item){ (int)v, false, size, start[v], e, 0 };
        if (gstart[v] != UINT32_MAX)
            items[nitems++] = (struct item){ (int)v, true, size, gstart[v], gend[v], 0 };
    }
    free(start);
    qsort(items, nitems, sizeof(*items), cmp_items);
    uint64_t top = 0;
    for (uint32_t i = 0; i < nitems; i++) {
        uint64_t off = 0;
        bool moved = true;
        while (moved) { /* first fit: bump past every placed item it collides with */
            moved = false;
            for (uint32_t j = 0; j < i; j++) {
                const struct item *o = &items[j];
                bool time = items[i].start <= o->end && o->start <= items[i].end;
                bool space = off < o->off + o->size && o->off < off + items[i].size;
                if (time && space) {
                    off = o->off + o->size;
                    moved = true;
                }
            }
        }
        items[i].off = off;
        if (off + items[i].size > top)
            top = off + items[i].size;
        (items[i].grad ? grad_off : act_off)[items[i].val] = off;
    }
    free(items);
    *total = top;
    return 0;
}

int vka_graph_plan_bytes(struct vka_graph *g, uint32_t n, bool backward, uint64_t *bytes)
{
    uint64_t *off = malloc(2 * (g->nvals ? g->nvals : 1) * sizeof(uint64_t)), total = 0;
    struct mask m = { 0 };
    int ret = off ? make_mask(g, 0, &m) : -ENOMEM;
    if (ret == 0)
        ret = place(g, &m, n, backward, off, off + g->nvals, &total);
    free(m.active);
    free(m.grad);
    free(off);
    *bytes = total * 4;
    return ret;
}

static struct vka_tensor plan_view(const struct vka_plan *p, int v, bool grad)
{
    const struct vka_val *val = &p->g->vals[v];
    uint64_t off = (grad ? p->grad_off : p->act_off)[v];
    if (off == UINT64_MAX)
        return (struct vka_tensor){ 0 };
    return val_view(val, p->arena, off, batched(val) ? p->n : val->n);
}

struct vka_tensor vka_plan_tensor(const struct vka_plan *p, int v)
{
    if (!in_arena(&p->g->vals[v]))
        return vka_graph_tensor(p->g, v);
    return plan_view(p, v, false);
}

struct vka_tensor vka_plan_grad(const struct vka_plan *p, int v)
{
    if (p->g->vals[v].kind == VKA_VAL_PARAM)
        return vka_graph_grad_tensor(p->g, v);
    return plan_view(p, v, true);
}

/* The tensors of node i, for its forward (dx all NULL) or its backward. */
static void node_args(const struct vka_plan *p, const struct vka_node *nd,
                      struct vka_tensor t[12], struct vka_op_args *a, bool bwd)
{
    *a = (struct vka_op_args){ .p = nd->p };
    for (int k = 0; k < 3; k++)
        if (nd->in[k] >= 0) {
            t[k] = vka_plan_tensor(p, nd->in[k]);
            a->x[k] = &t[k];
        }
    t[3] = vka_plan_tensor(p, nd->out);
    a->y = &t[3];
    for (int k = 0; k < 2; k++) {
        if (nd->saved[k] >= 0) {
            t[4 + k] = vka_plan_tensor(p, nd->saved[k]);
            a->saved[k] = &t[4 + k];
        }
        if (nd->state[k] >= 0) {
            t[6 + k] = vka_graph_tensor(p->g, nd->state[k]);
            a->state[k] = &t[6 + k];
        }
    }
    if (!bwd)
        return;
    const struct vka_val *out = &p->g->vals[nd->out];
    if (out->kind != VKA_VAL_LOSS) {
        t[8] = vka_plan_grad(p, nd->out);
        a->dy = &t[8];
    }
    for (int k = 0; k < 3; k++) {
        int v = nd->in[k];
        if (v < 0 || !p->m.grad[v])
            continue;
        t[9 + k] = vka_plan_grad(p, v);
        a->dx[k] = &t[9 + k];
    }
}

/* With the validation layer on (the tests), a new arena is NaN: a kernel that reads what
 * no kernel of the pass wrote before it poisons the first run's results. */
static int poison(struct vka_buf *arena)
{
    struct vka_cmd *cmd = NULL;
    struct vka_tensor all = vka_tensor_flat(arena, 0, arena->size / 4);
    int ret = vka_cmd_create(arena->ctx, NULL, &cmd);
    if (ret == 0 && (ret = vka_cmd_begin(cmd)) == 0 && (ret = vka_fill(cmd, &all, NAN)) == 0)
        ret = vka_cmd_run(cmd);
    vka_cmd_destroy(&cmd);
    return ret;
}

/* Called after each node's work is recorded into cmd (node i, its backward when bwd). */
typedef int (*node_hook)(struct vka_plan *p, struct vka_cmd *cmd, uint32_t i, bool bwd,
                         const struct vka_op_args *a);

/* Records the plan's forward nodes, then (with backward) their backward in reverse, into
 * cmd; hook, when not NULL, runs after each node. */
static int walk(struct vka_plan *p, struct vka_cmd *cmd, node_hook hook)
{
    struct vka_graph *g = p->g;
    struct vka_tensor t[12];
    struct vka_op_args a;
    int ret = 0;
    for (uint32_t i = 0; i < g->nnodes; i++) {
        if (!p->m.active[i])
            continue;
        node_args(p, &g->nodes[i], t, &a, false);
        if ((ret = vka_ops[g->nodes[i].op].fwd(cmd, &a)) < 0 ||
            (hook && (ret = hook(p, cmd, i, false, &a)) < 0))
            return ret;
    }
    if (p->backward) {
        /* a gradient is zeroed right before the first backward that adds into it (the
         * backward of its last consumer), since the arena reuses memory */
        bool *zeroed = calloc(g->nvals ? g->nvals : 1, sizeof(bool));
        if (!zeroed)
            return -ENOMEM;
        for (uint32_t i = g->nnodes; i-- > 0 && ret == 0;) {
            const struct vka_node *nd = &g->nodes[i];
            if (!p->m.active[i] || !p->m.grad[nd->out])
                continue;
            for (int k = 0; k < 3 && ret == 0; k++) {
                int v = nd->in[k];
                if (v >= 0 && p->grad_off[v] != UINT64_MAX && !zeroed[v]) {
                    struct vka_tensor gt = vka_plan_grad(p, v);
                    struct vka_tensor flat = vka_tensor_flat(gt.buf, gt.off, vka_tensor_stored(&gt));
                    ret = vka_fill(cmd, &flat, 0.0f);
                    zeroed[v] = true;
                }
            }
            if (ret == 0) {
                node_args(p, nd, t, &a, true);
                if ((ret = vka_ops[nd->op].bwd(cmd, &a)) == 0 && hook)
                    ret = hook(p, cmd, i, true, &a);
            }
        }
        free(zeroed);
    }
    return ret;
}

static int record(struct vka_plan *p)
{
    struct vka_graph *g = p->g;
    int ret = vka_cmd_create(g->ctx, NULL, &p->cmd);
    if (ret < 0 || (ret = vka_cmd_begin(p->cmd)) < 0)
        return ret;
    if (!(p->bn_means = malloc((g->nnodes ? g->nnodes : 1) * sizeof(int))))
        return -ENOMEM;
    for (uint32_t i = 0; i < g->nnodes; i++)
        if (p->m.active[i] && (vka_ops[g->nodes[i].op].flags & VKA_OP_RUNNING) &&
            g->nodes[i].p.norm.training)
            p->bn_means[p->nbn++] = g->nodes[i].state[0];
    if ((ret = walk(p, p->cmd, NULL)) < 0)
        return ret;
    return vka_cmd_end(p->cmd);
}

int vka_graph_plan(struct vka_graph *g, uint32_t n, bool backward, struct vka_plan **out)
{
    return vka_graph_plan_phase(g, 0, n, backward, out);
}

int vka_graph_plan_phase(struct vka_graph *g, int phase, uint32_t n, bool backward,
                         struct vka_plan **out)
{
    *out = NULL;
    if (!g->params) {
        vka_err("graph: vka_graph_alloc must come before plans");
        return -EINVAL;
    }
    if (phase < 0 || (phase > 0 && (uint32_t)phase >= g->nphases)) {
        vka_err("graph: there is no phase %d", phase);
        return -EINVAL;
    }
    for (struct vka_plan *p = g->plans; p; p = p->next)
        if (p->phase == phase && p->n == n && p->backward == backward) {
            *out = p;
            return 0;
        }
    struct vka_plan *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->g = g;
    p->phase = phase;
    p->n = n;
    p->backward = backward;
    p->act_off = malloc((g->nvals ? g->nvals : 1) * sizeof(uint64_t));
    p->grad_off = malloc((g->nvals ? g->nvals : 1) * sizeof(uint64_t));
    uint64_t total = 0;
    int ret = !p->act_off || !p->grad_off ? -ENOMEM : make_mask(g, phase, &p->m);
    if (ret == 0)
        ret = place(g, &p->m, n, backward, p->act_off, p->grad_off, &total);
    if (ret == 0)
        ret = vka_buf_create(g->ctx, &(struct vka_buf_params){
            .size = (total ? total : 4) * 4, .cat = VKA_MEM_ACTIVATIONS }, &p->arena);
    if (ret == 0 && g->ctx->validation)
        ret = poison(p->arena);
    if (ret == 0)
        ret = record(p);
    if (ret < 0) {
        plan_free(p);
        return ret;
    }
    p->next = g->plans;
    g->plans = p;
    *out = p;
    return 0;
}

int vka_plan_run(struct vka_plan *p)
{
    int ret = vka_cmd_run(p->cmd); /* ended at recording: a replay */
    for (uint32_t i = 0; ret == 0 && i < p->nbn; i++)
        p->g->vals[p->bn_means[i]].batches++;
    return ret;
}

/* Non-finite elements of t (NaN or infinite), with the count of elements read. */
static int count_nonfinite(const struct vka_tensor *t, uint64_t *bad, uint64_t *n)
{
    *n = (uint64_t)t->n * t->c * t->h * t->w;
    *bad = 0;
    float *h = malloc((*n ? *n : 1) * sizeof(float));
    if (!h) {
        vka_err("graph: out of memory checking a tensor of %llu elements",
                (unsigned long long)*n);
        return -ENOMEM;
    }
    int ret = t->dtype == VKA_F32 ? vka_tensor_download(t, h) : 0;
    for (uint64_t k = 0; ret == 0 && t->dtype == VKA_F32 && k < *n; k++)
        *bad += !isfinite(h[k]);
    free(h);
    return ret;
}

/* The anomaly check after one node: runs what is recorded, reads what the node wrote
 * (its output, or the input gradients of its backward) and names the node when a value
 * is not finite; then begins the next node's recording. */
static int check_node(struct vka_plan *p, struct vka_cmd *cmd, uint32_t i, bool bwd,
                      const struct vka_op_args *a)
{
    int ret = vka_cmd_run(cmd);
    const struct vka_node *nd = &p->g->nodes[i];
    const struct vka_tensor *wrote[3] = { bwd ? a->dx[0] : a->y, bwd ? a->dx[1] : NULL,
                                          bwd ? a->dx[2] : NULL };
    for (int k = 0; k < 3 && ret == 0; k++) {
        uint64_t bad, n;
        if (!wrote[k] || (ret = count_nonfinite(wrote[k], &bad, &n)) < 0 || !bad)
            continue;
        const char *what = bwd ? p->g->vals[nd->in[k]].name : p->g->vals[nd->out].name;
        vka_err("anomaly: the %s of node %u (%s) wrote %llu non-finite values of %llu into "
                "%s%s", bwd ? "backward" : "forward", i, vka_ops[nd->op].name,
                (unsigned long long)bad, (unsigned long long)n, bwd ? "the gradient of " : "",
                what[0] ? what : "its output");
        return -ERANGE;
    }
    return ret < 0 ? ret : vka_cmd_begin(cmd);
}

int vka_plan_run_checked(struct vka_plan *p)
{
    struct vka_cmd *cmd = NULL;
    int ret = vka_cmd_create(p->g->ctx, NULL, &cmd);
    if (ret == 0 && (ret = vka_cmd_begin(cmd)) == 0)
        ret = walk(p, cmd, check_node);
    if (ret == 0)
        ret = vka_cmd_run(cmd); /* what follows the last check: nothing, or zero fills */
    vka_cmd_destroy(&cmd);
    for (uint32_t i = 0; ret == 0 && i < p->nbn; i++)
        p->g->vals[p->bn_means[i]].batches++;
    return ret;
}

void vka_graph_set_batches(struct vka_graph *g, int v, uint64_t batches)
{
    g->vals[v].batches = batches;
}
