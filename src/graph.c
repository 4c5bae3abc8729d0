/* Graph building, shape inference, parameter storage and initialisation, autograd and
 * the liveness planner; see graph.h. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exact.h"
#include "graph.h"
#include "log.h"
#include "rng.h"
#include "ops/basic.h"
#include "timing.h"

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
    /* --accumulate exact: training plans add every parameter gradient and loss
     * accumulator into exact elements (exact.h) here, the gradients' at their float
     * offsets, then the loss accumulators' at params_len + their offsets */
    bool exact;
    struct vka_buf *exact_buf;
    struct vka_plan *plans;
    struct vka_buf *arena; /* shared by the plans: one runs at a time */
    struct phase *phases;  /* phases[0] is unused: phase 0 is the whole graph */
    uint32_t nphases;
    enum vka_recompute recompute;
    uint8_t next_mark;     /* vka_graph_mark's, for the next node */
    char (*blocks)[32];    /* block names; a node's block indexes them */
    uint32_t nblocks;
};

static void drop_recordings(struct vka_graph *g);

/* Room for one more element in *arr of *cap, n of them in use: doubled when full. */
static int grow(void **arr, uint32_t *cap, uint32_t n, size_t size)
{
    if (n < *cap)
        return 0;
    uint32_t c = *cap ? 2 * *cap : 64;
    void *p = realloc(*arr, c * size);
    if (!p)
        return -ENOMEM;
    *arr = p;
    *cap = c;
    return 0;
}

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

void vka_graph_destroy(struct vka_graph **pg)
{
    struct vka_graph *g = *pg;
    if (!g)
        return;
    vka_graph_drop_plans(g);
    vka_buf_destroy(&g->exact_buf);
    vka_buf_destroy(&g->params);
    vka_buf_destroy(&g->grads);
    vka_buf_destroy(&g->state);
    vka_buf_destroy(&g->losses);
    for (uint32_t i = 1; i < g->nphases; i++) {
        free(g->phases[i].outputs);
        free(g->phases[i].train);
    }
    free(g->phases);
    free(g->blocks);
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
    if (grow((void **)&g->vals, &g->cap_vals, g->nvals, sizeof(*g->vals)) < 0)
        return -ENOMEM;
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
    if (!g->nblocks && vka_graph_mark(g, 0, "model") < 0)
        return -ENOMEM;
    struct vka_node node = { .op = op, .in = { x0, x1, x2 }, .out = -1,
                             .saved = { -1, -1 }, .state = { -1, -1 },
                             .mark = g->next_mark, .block = (uint16_t)(g->nblocks - 1) };
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
        g->vals[sv].producer = (int)g->nnodes;
    }
    if (grow((void **)&g->nodes, &g->cap_nodes, g->nnodes, sizeof(*g->nodes)) < 0)
        return -ENOMEM;
    g->nodes[g->nnodes++] = node;
    g->next_mark = 0;
    return node.out;
}

int vka_graph_mark(struct vka_graph *g, unsigned mark, const char *block)
{
    g->next_mark |= (uint8_t)mark;
    if (!block)
        return 0;
    /* a block no node belongs to yet is renamed, not kept empty */
    bool empty = g->nblocks && (!g->nnodes || g->nodes[g->nnodes - 1].block != g->nblocks - 1);
    if (!empty) {
        if (g->nblocks >= UINT16_MAX)
            return -E2BIG;
        char (*b)[32] = realloc(g->blocks, (g->nblocks + 1) * sizeof(*b));
        if (!b)
            return -ENOMEM;
        g->blocks = b;
        g->nblocks++;
    }
    snprintf(g->blocks[g->nblocks - 1], sizeof(g->blocks[0]), "%s", block);
    return 0;
}

void vka_graph_set_recompute(struct vka_graph *g, enum vka_recompute mode)
{
    if (g->recompute != mode)
        drop_recordings(g);
    g->recompute = mode;
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
    g->next_mark |= VKA_MARK_LAYER;
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

int vka_layer_norm_act(struct vka_graph *g, int y, enum vka_op act, float slope)
{
    struct vka_node *nd = g->nnodes ? &g->nodes[g->nnodes - 1] : NULL;
    if (!nd || nd->out != y || vka_ops[nd->op].params != VKA_PARAMS_norm ||
        nd->p.norm.act != VKA_NORM_ACT_NONE) {
        vka_err("graph: %s fused into a norm: value %d is not the output of the last node, "
                "a batch_norm or group_norm without an activation", vka_ops[act].name, y);
        return -EINVAL;
    }
    if (act == VKA_OP_relu) {
        nd->p.norm.act = VKA_NORM_ACT_RELU;
    } else if (act == VKA_OP_leaky_relu && slope >= 0 && slope <= 1) {
        nd->p.norm.act = VKA_NORM_ACT_LEAKY_RELU;
        nd->p.norm.slope = slope;
    } else {
        vka_err("graph: %s (slope %g) cannot be fused into %s: relu, or leaky_relu with a "
                "slope in [0, 1]", vka_ops[act].name, slope, vka_ops[nd->op].name);
        return -EINVAL;
    }
    return y;
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
    drop_recordings(g);
}

void vka_graph_set_training(struct vka_graph *g, bool training)
{
    if (g->training == training)
        return;
    g->training = training;
    for (uint32_t i = 0; i < g->nnodes; i++)
        if (vka_ops[g->nodes[i].op].flags & VKA_OP_RUNNING)
            g->nodes[i].p.norm.training = training;
    drop_recordings(g);
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

/* Lays out the values of a kind in their region: their offsets, and its length. */
static uint64_t region_layout(struct vka_graph *g, enum vka_val_kind kind)
{
    uint64_t off = 0;
    for (uint32_t i = 0; i < g->nvals; i++)
        if (g->vals[i].kind == kind) {
            g->vals[i].region_off = off;
            off = align_up(off + stored(&g->vals[i], g->vals[i].n));
        }
    return off;
}

uint64_t vka_graph_region_bytes(struct vka_graph *g, enum vka_val_kind kind)
{
    uint64_t len = region_layout(g, kind);
    return (len ? len : 4) * 4;
}

uint64_t vka_graph_exact_bytes(struct vka_graph *g)
{
    if (!g->exact)
        return 0;
    uint64_t n = region_layout(g, VKA_VAL_PARAM) + region_layout(g, VKA_VAL_LOSS);
    return (n ? n : 1) * 16;
}

int vka_graph_set_exact(struct vka_graph *g, bool exact)
{
    if (g->params) {
        vka_err("graph: the accumulation mode is set before vka_graph_alloc");
        return -EINVAL;
    }
    if (g->exact != exact)
        vka_graph_drop_plans(g);
    g->exact = exact;
    return 0;
}

bool vka_graph_is_exact(const struct vka_graph *g)
{
    return g->exact;
}

static struct vka_tensor exact_view(struct vka_tensor t, struct vka_buf *buf, uint64_t off)
{
    t.buf = buf;
    t.off = off;
    t.dtype = VKA_EXACT;
    return t;
}

struct vka_tensor vka_graph_exact_tensor(const struct vka_graph *g, int v)
{
    const struct vka_val *val = &g->vals[v];
    struct vka_tensor t = val_view(val, NULL, 0, val->n);
    if (!g->exact || (val->kind != VKA_VAL_PARAM && val->kind != VKA_VAL_LOSS))
        return (struct vka_tensor){ 0 };
    return exact_view(t, g->exact_buf,
                      (val->kind == VKA_VAL_LOSS ? g->params_len : 0) + val->region_off);
}

struct vka_tensor vka_graph_exact_span(const struct vka_graph *g, const struct vka_tensor *t)
{
    if (!g->exact || (t->buf != g->grads && t->buf != g->losses))
        return (struct vka_tensor){ 0 };
    return exact_view(*t, g->exact_buf, (t->buf == g->losses ? g->params_len : 0) + t->off);
}

struct vka_tensor vka_graph_exact_words(const struct vka_graph *g)
{
    if (!g->exact_buf)
        return (struct vka_tensor){ 0 };
    return vka_tensor_flat(g->exact_buf, 0, g->exact_buf->size / 4);
}

static int region(struct vka_graph *g, enum vka_val_kind kind, enum vka_mem_cat cat,
                  struct vka_buf **buf, uint64_t *len)
{
    *len = region_layout(g, kind);
    return vka_buf_create(g->ctx, &(struct vka_buf_params){ .size = (*len ? *len : 4) * 4,
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
    if (g->exact && (ret = vka_buf_create(g->ctx, &(struct vka_buf_params){
                         .size = vka_graph_exact_bytes(g), .cat = VKA_MEM_GRADS },
                         &g->exact_buf)) < 0)
        return ret;
    /* parameters in registration order from the seed; every other region zero */
    uint64_t rng = g->seed * 0x2545f4914f6cdd1dull + 1;
    struct vka_cmd *cmd = NULL;
    if ((ret = vka_cmd_create(g->ctx, NULL, &cmd)) < 0 || (ret = vka_cmd_begin(cmd)) < 0)
        goto out;
    struct vka_buf *zero[] = { g->params, g->grads, g->state, g->losses, g->exact_buf };
    for (int i = 0; i < 5 && zero[i]; i++) {
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

/* A plan runs a schedule of events: every active node's forward in order, then (with
 * backward) the backward of the nodes whose output has a gradient, in reverse. With
 * recomputation the nodes are cut into segments (at the builders' marks): a value made
 * inside a segment and read only inside it is freed after the forward and made again
 * (EV_REC) when a backward of the segment needs it. Inside a segment, recomputation is
 * nested by layer: the backward of a layer makes again only what the backwards of that
 * layer read (and what those are made from), keeps that until its last reader, and lets
 * the rest go: a block's earlier layers are made again for their own backward instead of
 * being kept through the later layers'. Time is the event's index. */
enum ev_kind { EV_FWD, EV_REC, EV_BWD, EV_WGRAD };

struct event {
    uint32_t node;
    enum ev_kind kind;
    bool saved_only; /* EV_REC of a VKA_OP_SAVED_ONLY op whose output nothing reads again:
                        y NULL, the saved values only */
};

/* The copies of a node's values an event reads or writes: in[0..2], out, saved[0..1].
 * COPY_FWD is the forward's; another number is a recomputed copy (an index into
 * sched.copy_val). */
enum { SLOTS = 6, COPY_FWD = UINT32_MAX };

struct sched {
    struct event *ev;
    uint32_t nev;
    uint8_t *rec;        /* per value: made again (its backward reads come from a copy) */
    uint32_t cap;        /* events ev has room for */
    uint32_t *slot;      /* per event, SLOTS copies (COPY_FWD where the value has none) */
    int *copy_val;       /* per recomputed copy: its value */
    uint32_t ncopies;
};

static void sched_free(struct sched *s)
{
    free(s->ev);
    free(s->rec);
    free(s->slot);
    free(s->copy_val);
    memset(s, 0, sizeof(*s));
}

static int push(struct sched *s, uint32_t node, enum ev_kind kind)
{
    if (grow((void **)&s->ev, &s->cap, s->nev, sizeof(*s->ev)) < 0)
        return -ENOMEM;
    s->ev[s->nev++] = (struct event){ node, kind, false };
    return 0;
}

static bool bwd_runs(const struct vka_graph *g, const struct mask *m, bool backward,
                     uint32_t i)
{
    return backward && m->active[i] && m->grad[g->nodes[i].out];
}

/* A node's backward is one EV_BWD, or for an op whose backward may run in two calls
 * (VKA_OP_SPLIT: a convolution) an EV_WGRAD for its parameters' gradients, which reads
 * its input, then an EV_BWD for its input's gradient, which does not: the input can go
 * before its gradient comes. */
static bool is_bwd(enum ev_kind kind)
{
    return kind == EV_BWD || kind == EV_WGRAD;
}

static bool split_bwd(const struct vka_node *nd)
{
    return vka_ops[nd->op].flags & VKA_OP_SPLIT;
}

/* Whether an event of kind reads the node's input k, and whether it adds into the
 * gradient of input k. */
static bool ev_reads_in(const struct vka_node *nd, enum ev_kind kind, int k)
{
    return !is_bwd(kind) || ((vka_ops[nd->op].flags & (VKA_OP_R_X0 << k)) &&
                             !(kind == EV_BWD && split_bwd(nd) && k == 0));
}

static bool ev_writes_dx(const struct vka_node *nd, enum ev_kind kind, int k)
{
    if (!split_bwd(nd))
        return kind == EV_BWD;
    return kind == EV_WGRAD ? k > 0 : kind == EV_BWD && k == 0;
}

static int push_bwd(const struct vka_graph *g, const struct mask *m, uint32_t i,
                    struct sched *s)
{
    const struct vka_node *nd = &g->nodes[i];
    if (!split_bwd(nd))
        return push(s, i, EV_BWD);
    int ret = 0;
    if ((nd->in[1] >= 0 && m->grad[nd->in[1]]) || (nd->in[2] >= 0 && m->grad[nd->in[2]]))
        ret = push(s, i, EV_WGRAD);
    if (ret == 0 && nd->in[0] >= 0 && m->grad[nd->in[0]])
        ret = push(s, i, EV_BWD);
    return ret;
}

/* The segment of every node under the graph's recompute mode: -1 (never recomputed) for
 * inactive nodes, losses (their forward adds into accumulators) and nodes without a
 * backward; nodes between two marks of the mode share one. lay: the layer of every node
 * (nodes between two marks of any kind). */
static void segments(const struct vka_graph *g, const struct mask *m, bool backward,
                     int32_t *seg, int32_t *lay)
{
    int32_t cur = 0, layer = 0;
    for (uint32_t i = 0; i < g->nnodes; i++) {
        uint8_t mk = g->nodes[i].mark;
        if ((g->recompute == VKA_RECOMPUTE_ALL && mk) ||
            (g->recompute == VKA_RECOMPUTE_BLOCKS && (mk & VKA_MARK_BLOCK)))
            cur++;
        layer += mk != 0;
        bool ok = g->recompute != VKA_RECOMPUTE_NONE && bwd_runs(g, m, backward, i) &&
                  !(vka_ops[g->nodes[i].op].flags & VKA_OP_LOSS);
        seg[i] = ok ? cur : -1;
        lay[i] = layer;
    }
}

/* The values node i's backward reads (ops.def's R_ flags), into v[0..5] (-1: none). */
static void bwd_reads(const struct vka_graph *g, uint32_t i, int v[SLOTS])
{
    const struct vka_node *nd = &g->nodes[i];
    unsigned flags = vka_ops[nd->op].flags;
    for (int k = 0; k < 3; k++)
        v[k] = nd->in[k] >= 0 && (flags & (VKA_OP_R_X0 << k)) ? nd->in[k] : -1;
    v[3] = flags & VKA_OP_R_Y ? nd->out : -1;
    for (int k = 0; k < 2; k++)
        v[4 + k] = flags & VKA_OP_R_SAVED ? nd->saved[k] : -1;
}

/* Marks what the backwards of i's layer, from i down to the segment's first node, read
 * that is made again (leaving out what skip marks, when not NULL). */
static void layer_reads(const struct vka_graph *g, const struct mask *m, bool backward,
                        const int32_t *lay, uint32_t first, uint32_t i, const struct sched *s,
                        const uint8_t *skip, uint8_t *mark)
{
    for (uint32_t j = i + 1; j-- > first && lay[j] == lay[i];) {
        int v[SLOTS];
        if (!bwd_runs(g, m, backward, j))
            continue;
        bwd_reads(g, j, v);
        for (int k = 0; k < SLOTS; k++)
            if (v[k] >= 0 && s->rec[v[k]] && !(skip && skip[v[k]]))
                mark[v[k]] = 1;
    }
}

/* The recomputation before backward i of segment [first, i]: the values the backwards of
 * i's layer read that are made again and not kept (want), and what they are made from;
 * their producers' EV_REC events in node order. Afterwards kept holds what the layer's
 * backwards read. */
static int recompute_for(const struct vka_graph *g, const struct mask *m, bool backward,
                          const int32_t *lay, uint32_t first, uint32_t i, struct sched *s,
                          uint8_t *kept, uint8_t *want)
{
    memset(want, 0, g->nvals);
    layer_reads(g, m, backward, lay, first, i, s, kept, want);
    /* what they are made from: producers come before their consumers */
    uint8_t *run = want + g->nvals; /* per node, after the nvals of want */
    memset(run, 0, g->nnodes);
    for (uint32_t j = i + 1; j-- > first;) {
        const struct vka_node *nd = &g->nodes[j];
        bool need = want[nd->out];
        for (int k = 0; k < 2; k++)
            need |= nd->saved[k] >= 0 && want[nd->saved[k]];
        if (!need || !s->rec[nd->out])
            continue;
        run[j] = !want[nd->out] && (vka_ops[nd->op].flags & VKA_OP_SAVED_ONLY) ? 2 : 1;
        for (int k = 0; k < 3; k++)
            if (nd->in[k] >= 0 && s->rec[nd->in[k]] && !kept[nd->in[k]])
                want[nd->in[k]] = 1;
    }
    for (uint32_t j = first; j <= i; j++) {
        if (run[j] && push(s, j, EV_REC) < 0)
            return -ENOMEM;
        if (run[j])
            s->ev[s->nev - 1].saved_only = run[j] == 2;
    }
    /* kept: what the layer's backwards read, made just now or kept before */
    layer_reads(g, m, backward, lay, first, i, s, NULL, kept);
    return 0;
}

/* Numbers the copies: each EV_REC makes a new copy of the values its node writes; every
 * event reads the newest copy of a value made again (the forward's before that). */
static int number_copies(const struct vka_graph *g, struct sched *s)
{
    uint32_t *cur = malloc((g->nvals ? g->nvals : 1) * sizeof(uint32_t));
    s->slot = malloc(((size_t)s->nev * SLOTS + 1) * sizeof(uint32_t));
    s->copy_val = malloc(((size_t)s->nev * 3 + 1) * sizeof(int));
    if (!cur || !s->slot || !s->copy_val) {
        free(cur);
        return -ENOMEM;
    }
    for (uint32_t v = 0; v < g->nvals; v++)
        cur[v] = COPY_FWD;
    s->ncopies = 0;
    for (uint32_t e = 0; e < s->nev; e++) {
        const struct vka_node *nd = &g->nodes[s->ev[e].node];
        int v[SLOTS] = { nd->in[0], nd->in[1], nd->in[2], nd->out, nd->saved[0], nd->saved[1] };
        for (int k = 0; k < SLOTS; k++) {
            bool writes = k > 3 || !s->ev[e].saved_only;
            if (v[k] >= 0 && k >= 3 && s->ev[e].kind == EV_REC && writes) {
                s->copy_val[s->ncopies] = v[k];
                cur[v[k]] = s->ncopies++;
            }
            s->slot[(size_t)e * SLOTS + k] = v[k] >= 0 ? cur[v[k]] : COPY_FWD;
        }
    }
    free(cur);
    return 0;
}

static int make_sched(const struct vka_graph *g, const struct mask *m, bool backward,
                      struct sched *s)
{
    uint32_t F = g->nnodes;
    s->rec = calloc(g->nvals ? g->nvals : 1, 1);
    int32_t *seg = malloc((F ? F : 1) * 2 * sizeof(int32_t)), *lay = seg + (F ? F : 1);
    uint8_t *kept = calloc((size_t)g->nvals * 2 + F + 1, 1), *want = kept + g->nvals;
    if (!s->rec || !seg || !kept) {
        free(seg);
        free(kept);
        return -ENOMEM;
    }
    segments(g, m, backward, seg, lay);
    /* recomputed: made by a node of a segment, read by active nodes of that one only */
    for (uint32_t i = 0; i < F; i++) {
        const struct vka_node *nd = &g->nodes[i];
        if (seg[i] < 0)
            continue;
        bool inside = false, outside = false;
        for (uint32_t j = i + 1; j < F; j++)
            for (int k = 0; k < 3; k++)
                if (m->active[j] && g->nodes[j].in[k] == nd->out) {
                    inside |= seg[j] == seg[i];
                    outside |= seg[j] != seg[i];
                }
        if (inside && !outside) {
            s->rec[nd->out] = 1;
            for (int k = 0; k < 2; k++)
                if (nd->saved[k] >= 0)
                    s->rec[nd->saved[k]] = 1;
        }
    }
    int ret = 0;
    s->nev = 0;
    for (uint32_t i = 0; i < F && ret == 0; i++)
        if (m->active[i])
            ret = push(s, i, EV_FWD);
    /* a backward that reads what is made again and not kept is preceded by the
     * recomputation for its layer; those reading only what was kept run before, while
     * less is alive */
    int32_t last = -1;
    uint32_t first = 0;
    for (uint32_t i = F; ret == 0 && i-- > 0;) {
        if (!bwd_runs(g, m, backward, i))
            continue;
        if (seg[i] >= 0 && seg[i] != last) { /* entering a segment from its end */
            for (first = i; first > 0 && seg[first - 1] == seg[i];)
                first--;
            memset(kept, 0, g->nvals);
        }
        last = seg[i];
        if (seg[i] >= 0) {
            int v[SLOTS];
            bool missing = false;
            bwd_reads(g, i, v);
            for (int k = 0; k < SLOTS; k++)
                missing |= v[k] >= 0 && s->rec[v[k]] && !kept[v[k]];
            if (missing)
                ret = recompute_for(g, m, backward, lay, first, i, s, kept, want);
        }
        if (ret == 0)
            ret = push_bwd(g, m, i, s);
    }
    free(seg);
    free(kept);
    return ret < 0 ? ret : number_copies(g, s);
}

/* A value's forward copy, a recomputed copy, a value's gradient: what liveness gives a
 * span (span_index). */
enum item_kind { IT_ACT, IT_REC, IT_GRAD };

/* One arena item: a span (copy or gradient, with those that run in place merged into it)
 * or an event's workspace, alive over events [start, end]. */
struct item {
    enum { IT_SPAN, IT_WORK } kind;
    uint32_t idx;  /* span index, or event for IT_WORK */
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

/* Where a plan keeps everything, in arena elements (UINT64_MAX: not kept). */
struct layout {
    uint64_t *act, *grad;       /* per value */
    uint64_t *rec;              /* per recomputed copy */
    uint64_t *work;             /* per event */
    uint64_t total;             /* elements */
    uint64_t live_peak;         /* the most elements alive at one event */
    uint64_t *at_peak;          /* per value: its elements alive then (copies, gradient) */
    uint64_t work_at_peak;
};

struct vka_plan {
    struct vka_plan *next;
    struct vka_graph *g;
    int phase;
    uint32_t n;
    bool backward;
    struct mask m;
    struct sched s;
    struct layout l;
    uint64_t *work;        /* per event: workspace bytes (counted by a dry walk) */
    int *bn_means;         /* the running means of the BatchNorm nodes it runs in training */
    uint32_t nbn;
    struct vka_buf *arena; /* the graph's */
    struct vka_cmd *cmd;
};

static void layout_free(struct layout *l)
{
    free(l->act);
    free(l->rec);
    free(l->grad);
    free(l->work);
    free(l->at_peak);
    memset(l, 0, sizeof(*l));
}

struct span {
    uint32_t start, end;
};

#define SPAN_NONE ((struct span){ UINT32_MAX, 0 })

static void use(struct span *s, uint32_t t)
{
    if (t < s->start)
        s->start = t;
    if (t > s->end)
        s->end = t;
}

/* spans: per value its forward copy's (IT_ACT) and its gradient's (IT_GRAD), then per
 * recomputed copy (IT_REC) */
static size_t span_index(uint32_t V, enum item_kind kind, uint32_t idx)
{
    return kind == IT_ACT ? idx : kind == IT_GRAD ? (size_t)V + idx : 2 * (size_t)V + idx;
}

/* Liveness of every copy, gradient and workspace over the schedule (spans: span_index). */
static void liveness(const struct vka_graph *g, const struct mask *m, const struct sched *s,
                     struct span *spans)
{
    uint32_t V = g->nvals, T = s->nev;
    for (size_t i = 0; i < 2 * (size_t)V + s->ncopies; i++)
        spans[i] = SPAN_NONE;
#define SPAN(kind, v) (&spans[span_index(V, kind, (uint32_t)(v))])
#define COPY(t, k, v) (s->slot[(size_t)(t) * SLOTS + (k)] == COPY_FWD ? SPAN(IT_ACT, v) \
                       : SPAN(IT_REC, s->slot[(size_t)(t) * SLOTS + (k)]))
    uint8_t *read = calloc(V ? V : 1, 1);
    for (uint32_t t = 0; t < T; t++) {
        const struct event *e = &s->ev[t];
        const struct vka_node *nd = &g->nodes[e->node];
        unsigned flags = vka_ops[nd->op].flags;
        bool bwd = is_bwd(e->kind);
        for (int k = 0; k < 3; k++) {
            int v = nd->in[k];
            if (v < 0 || !in_arena(&g->vals[v]))
                continue;
            if (g->vals[v].kind == VKA_VAL_INPUT)
                use(SPAN(IT_ACT, v), 0);
            if (!bwd && read)
                read[v] = 1;
            if (ev_reads_in(nd, e->kind, k))
                use(COPY(t, k, v), t);
            if (ev_writes_dx(nd, e->kind, k) && m->grad[v] &&
                g->vals[v].kind == VKA_VAL_ACT) {
                /* from the first backward adding into it to its producer's backward */
                use(SPAN(IT_GRAD, v), t);
            }
        }
        int outs[3] = { nd->out, nd->saved[0], nd->saved[1] };
        for (int k = 0; k < 3; k++) {
            int v = outs[k];
            if (v < 0 || !in_arena(&g->vals[v]))
                continue;
            bool read_by_bwd = k == 0 ? (flags & VKA_OP_R_Y) : (flags & VKA_OP_R_SAVED);
            if (k == 0 && e->saved_only)
                continue;
            if (!bwd || read_by_bwd)
                use(COPY(t, 3 + k, v), t);
        }
        if (bwd && g->vals[nd->out].kind == VKA_VAL_ACT)
            use(SPAN(IT_GRAD, nd->out), t); /* dy: read here, last */
    }
    /* outputs no forward reads (the plan's results) live to the end, to be read back;
     * saved values end at their backward */
    for (uint32_t i = 0; i < g->nnodes && read; i++) {
        int v = g->nodes[i].out;
        if (m->active[i] && in_arena(&g->vals[v]) && !read[v] &&
            SPAN(IT_ACT, v)->start != UINT32_MAX)
            SPAN(IT_ACT, v)->end = T ? T - 1 : 0;
    }
    free(read);
#undef COPY
#undef SPAN
}

static uint32_t alias_root(const int *alias, uint32_t i)
{
    while (alias[i] >= 0)
        i = (uint32_t)alias[i];
    return i;
}

/* The value of span i (span_index), and where its place goes. */
static uint32_t span_val(const struct sched *s, uint32_t V, uint32_t i)
{
    return i < 2 * V ? i % V : (uint32_t)s->copy_val[i - 2 * V];
}

static uint64_t *span_place(struct layout *l, uint32_t V, uint32_t i)
{
    return i < V ? &l->act[i] : i < 2 * V ? &l->grad[i - V] : &l->rec[i - 2 * V];
}

/* Whether span b may take span a's memory at event t: a's last use is t, b's first, and
 * they hold as much (alias: the spans already merged, a's root stands for it). */
static bool hand_over(const struct vka_graph *g, const struct sched *s, uint32_t n,
                      struct span *spans, const int *alias, uint32_t a, uint32_t b, uint32_t t)
{
    uint32_t V = g->nvals, r = alias_root(alias, a);
    const struct vka_val *va = &g->vals[span_val(s, V, a)], *vb = &g->vals[span_val(s, V, b)];
    return va->kind == VKA_VAL_ACT && vb->kind == VKA_VAL_ACT && spans[r].end == t &&
           spans[b].start == t && alias[b] < 0 &&
           stored(va, batched(va) ? n : va->n) == stored(vb, batched(vb) ? n : vb->n);
}

/* Ops that run in place. A forward of an INPLACE_Y op (a ReLU after a norm, the add of a
 * residual) that reads the last of its input writes its output over it; a backward of an
 * INPLACE_DX op (a norm between a convolution and a ReLU) that is the first to add into
 * its input's gradient and the last to read its output's writes the one over the other.
 * alias[i]: the span whose memory span i takes (-1: its own); the merged span is the
 * root's. */
static void in_place(const struct vka_graph *g, const struct mask *m, const struct sched *s,
                     uint32_t n, struct span *spans, int *alias)
{
    uint32_t V = g->nvals;
    for (uint32_t i = 0; i < 2 * V + s->ncopies; i++)
        alias[i] = -1;
    for (uint32_t t = 0; t < s->nev; t++) {
        const struct event *e = &s->ev[t];
        const struct vka_node *nd = &g->nodes[e->node];
        unsigned flags = vka_ops[nd->op].flags;
        int v0 = nd->in[0];
        uint32_t a, b;
        if (v0 < 0 || e->saved_only)
            continue;
        if (e->kind == EV_BWD && (flags & VKA_OP_INPLACE_DX) && m->grad[v0]) {
            a = (uint32_t)span_index(V, IT_GRAD, (uint32_t)nd->out);
            b = (uint32_t)span_index(V, IT_GRAD, (uint32_t)v0);
        } else if (!is_bwd(e->kind) && (flags & VKA_OP_INPLACE_Y)) {
            uint32_t cx = s->slot[(size_t)t * SLOTS], cy = s->slot[(size_t)t * SLOTS + 3];
            a = cx == COPY_FWD ? (uint32_t)v0 : (uint32_t)span_index(V, IT_REC, cx);
            b = cy == COPY_FWD ? (uint32_t)nd->out : (uint32_t)span_index(V, IT_REC, cy);
        } else {
            continue;
        }
        if (!hand_over(g, s, n, spans, alias, a, b, t))
            continue;
        uint32_t r = alias_root(alias, a);
        spans[r].end = spans[b].end;
        spans[b] = SPAN_NONE;
        alias[b] = (int)r;
    }
}

/* First-fit placement of the largest first: every copy, gradient and (work: bytes per
 * event, or NULL) workspace of the schedule for micro-batch n. */
static int place(const struct vka_graph *g, const struct mask *m, const struct sched *s,
                 uint32_t n, const uint64_t *work, struct layout *l)
{
    uint32_t V = g->nvals, T = s->nev, C = s->ncopies, S = 2 * V + C;
    struct span *spans = malloc((S + 1) * sizeof(*spans));
    int *alias = malloc((S + 1) * sizeof(int));
    struct item *items = calloc(S + T + 1, sizeof(*items));
    l->act = malloc((V + 1) * sizeof(uint64_t));
    l->rec = malloc((C + 1) * sizeof(uint64_t));
    l->grad = malloc((V + 1) * sizeof(uint64_t));
    l->work = malloc((T + 1) * sizeof(uint64_t));
    l->at_peak = calloc(V + 1, sizeof(uint64_t));
    uint64_t *alive = calloc(T + 1, sizeof(uint64_t));
    if (!spans || !alias || !items || !l->act || !l->rec || !l->grad || !l->work ||
        !l->at_peak || !alive) {
        free(spans);
        free(alias);
        free(items);
        free(alive);
        return -ENOMEM;
    }
    liveness(g, m, s, spans);
    in_place(g, m, s, n, spans, alias);
    uint32_t nitems = 0;
    for (uint32_t i = 0; i < S; i++) {
        *span_place(l, V, i) = UINT64_MAX;
        const struct vka_val *val = &g->vals[span_val(s, V, i)];
        if (!in_arena(val) || spans[i].start == UINT32_MAX)
            continue;
        /* batched values hold n samples, the others (BatchNorm's saved statistics)
         * their own fixed size */
        uint64_t size = align_up(stored(val, batched(val) ? n : val->n));
        items[nitems++] = (struct item){ IT_SPAN, i, size, spans[i].start, spans[i].end, 0 };
    }
    for (uint32_t t = 0; t < T; t++) {
        l->work[t] = UINT64_MAX;
        if (work && work[t])
            items[nitems++] = (struct item){ IT_WORK, t, align_up(work[t] / 4), t, t, 0 };
    }
    free(spans);
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
        *(items[i].kind == IT_WORK ? &l->work[items[i].idx] : span_place(l, V, items[i].idx)) =
            off;
        for (uint32_t t = items[i].start; t <= items[i].end && t < T; t++)
            alive[t] += items[i].size;
    }
    for (uint32_t i = 0; i < S; i++)
        if (alias[i] >= 0)
            *span_place(l, V, i) = *span_place(l, V, alias_root(alias, i));
    free(alias);
    l->total = top;
    l->live_peak = 0;
    uint32_t peak = 0;
    for (uint32_t t = 0; t < T; t++)
        if (alive[t] > l->live_peak) {
            l->live_peak = alive[t];
            peak = t;
        }
    for (uint32_t i = 0; i < nitems; i++)
        if (items[i].start <= peak && peak <= items[i].end) {
            if (items[i].kind == IT_WORK)
                l->work_at_peak += items[i].size;
            else
                l->at_peak[span_val(s, V, items[i].idx)] += items[i].size;
        }
    free(items);
    free(alive);
    return 0;
}

/* The tensor of value v: its forward copy (copy COPY_FWD), a recomputed copy, or its
 * gradient (grad). */
static struct vka_tensor plan_view(const struct vka_plan *p, int v, uint32_t copy, bool grad)
{
    const struct vka_val *val = &p->g->vals[v];
    uint64_t off = grad ? p->l.grad[v] : copy == COPY_FWD ? p->l.act[v] : p->l.rec[copy];
    if (off == UINT64_MAX)
        return (struct vka_tensor){ 0 };
    return val_view(val, p->arena, off, batched(val) ? p->n : val->n);
}

struct vka_tensor vka_plan_tensor(const struct vka_plan *p, int v)
{
    if (!in_arena(&p->g->vals[v]))
        return vka_graph_tensor(p->g, v);
    return plan_view(p, v, COPY_FWD, false);
}

struct vka_tensor vka_plan_grad(const struct vka_plan *p, int v)
{
    if (p->g->vals[v].kind == VKA_VAL_PARAM)
        return vka_graph_grad_tensor(p->g, v);
    return plan_view(p, v, COPY_FWD, true);
}

/* Value v in slot k of event e: the copy the event reads or writes. */
static struct vka_tensor ev_tensor(const struct vka_plan *p, uint32_t e, int k, int v)
{
    if (!in_arena(&p->g->vals[v]))
        return vka_graph_tensor(p->g, v);
    return plan_view(p, v, p->s.slot[(size_t)e * SLOTS + k], false);
}

/* The tensors of event e's node: its forward (dx all NULL), its recomputation (the
 * forward without running statistics to update) or its backward. */
static void node_args(const struct vka_plan *p, uint32_t e, struct vka_tensor t[12],
                      struct vka_op_args *a)
{
    const struct vka_node *nd = &p->g->nodes[p->s.ev[e].node];
    enum ev_kind kind = p->s.ev[e].kind;
    *a = (struct vka_op_args){ .p = nd->p };
    /* an input the backward does not read may have no place (a value made again after
     * it): NULL, which such backwards take */
    for (int k = 0; k < 3; k++)
        if (nd->in[k] >= 0) {
            t[k] = ev_tensor(p, e, k, nd->in[k]);
            a->x[k] = t[k].buf ? &t[k] : NULL;
        }
    const struct vka_val *out = &p->g->vals[nd->out];
    /* a training plan of an exact graph adds into the exact accumulators */
    bool exact = p->g->exact && p->backward;
    t[3] = exact && out->kind == VKA_VAL_LOSS ? vka_graph_exact_tensor(p->g, nd->out)
                                               : ev_tensor(p, e, 3, nd->out);
    a->y = p->s.ev[e].saved_only ? NULL : &t[3];
    for (int k = 0; k < 2; k++) {
        if (nd->saved[k] >= 0) {
            t[4 + k] = ev_tensor(p, e, 4 + k, nd->saved[k]);
            a->saved[k] = &t[4 + k];
        }
        if (nd->state[k] >= 0 && kind != EV_REC) {
            t[6 + k] = vka_graph_tensor(p->g, nd->state[k]);
            a->state[k] = &t[6 + k];
        }
    }
    if (!is_bwd(kind))
        return;
    if (out->kind != VKA_VAL_LOSS) {
        t[8] = vka_plan_grad(p, nd->out);
        a->dy = &t[8];
    }
    for (int k = 0; k < 3; k++) {
        int v = nd->in[k];
        if (v < 0 || !p->m.grad[v] || !ev_writes_dx(nd, kind, k))
            continue;
        t[9 + k] = exact && p->g->vals[v].kind == VKA_VAL_PARAM ? vka_graph_exact_tensor(p->g, v)
                                                                 : vka_plan_grad(p, v);
        a->dx[k] = &t[9 + k];
    }
}

/* With the validation layer on (the tests), the arena is NaN before a new plan's first
 * run: a kernel that reads what no kernel of the pass wrote before it poisons the
 * results. */
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

/* Called after each event's work is recorded into cmd, with the walk's user pointer. */
typedef int (*node_hook)(struct vka_plan *p, struct vka_cmd *cmd, const struct event *ev,
                         const struct vka_op_args *a, void *user);

/* Records the plan's schedule into cmd, each event's scratch in its workspace (a dry
 * recorder: counted into p->work instead); hook, when not NULL, runs after each event. */
static int walk(struct vka_plan *p, struct vka_cmd *cmd, bool dry, node_hook hook, void *user)
{
    struct vka_graph *g = p->g;
    struct vka_tensor t[12];
    struct vka_op_args a;
    int ret = 0;
    /* a gradient is zeroed right before the first backward that adds into it (the
     * backward of its last consumer), since the arena reuses memory; a FRESH_DX op's
     * dx[0] is not: it is told to write instead (the same bits) */
    bool *zeroed = calloc(g->nvals ? g->nvals : 1, sizeof(bool));
    if (!zeroed)
        return -ENOMEM;
    for (uint32_t e = 0; e < p->s.nev && ret == 0; e++) {
        const struct event *ev = &p->s.ev[e];
        const struct vka_node *nd = &g->nodes[ev->node];
        bool bwd = is_bwd(ev->kind), fresh = false;
        for (int k = 0; k < 3 && bwd && ret == 0; k++) {
            int v = nd->in[k];
            if (v >= 0 && p->l.grad[v] != UINT64_MAX && !zeroed[v] &&
                ev_writes_dx(nd, ev->kind, k)) {
                zeroed[v] = true;
                if (p->l.grad[v] == p->l.grad[nd->out]) /* in place: dx over dy */
                    continue;
                if (k == 0 && (vka_ops[nd->op].flags & VKA_OP_FRESH_DX)) {
                    fresh = true;
                    continue;
                }
                struct vka_tensor gt = vka_plan_grad(p, v);
                struct vka_tensor flat = vka_tensor_flat(gt.buf, gt.off, vka_tensor_stored(&gt));
                ret = vka_fill(cmd, &flat, 0.0f);
            }
        }
        if (ret < 0)
            break;
        if (!dry && p->l.work[e] != UINT64_MAX)
            vka_cmd_set_workspace(cmd, p->arena, p->l.work[e] * 4, p->work[e]);
        node_args(p, e, t, &a);
        a.dx0_fresh = fresh;
        ret = (bwd ? vka_ops[nd->op].bwd : vka_ops[nd->op].fwd)(cmd, &a);
        vka_cmd_set_workspace(cmd, NULL, 0, 0);
        if (dry)
            p->work[e] = vka_cmd_take_scratch_count(cmd);
        if (ret == 0 && hook)
            ret = hook(p, cmd, ev, &a, user);
    }
    free(zeroed);
    return ret;
}

static void plan_free(struct vka_plan *p)
{
    vka_cmd_destroy(&p->cmd);
    layout_free(&p->l);
    sched_free(&p->s);
    free(p->work);
    free(p->m.active);
    free(p->m.grad);
    free(p->bn_means);
    free(p);
}

/* The plans' recordings, keeping the arena for the plans made after. */
static void drop_recordings(struct vka_graph *g)
{
    while (g->plans) {
        struct vka_plan *p = g->plans;
        g->plans = p->next;
        plan_free(p);
    }
}

void vka_graph_drop_plans(struct vka_graph *g)
{
    drop_recordings(g);
    vka_buf_destroy(&g->arena);
}

/* Dry buffers for the regions of a graph not yet allocated (a prediction), so that a dry
 * walk can bind them; undone by dry_regions_drop. */
static int dry_regions(struct vka_graph *g, bool *made)
{
    *made = !g->params;
    if (!*made)
        return 0;
    struct vka_buf **bufs[] = { &g->params, &g->grads, &g->state, &g->losses };
    const enum vka_val_kind kinds[] = { VKA_VAL_PARAM, VKA_VAL_PARAM, VKA_VAL_STATE,
                                        VKA_VAL_LOSS };
    for (int i = 0; i < 4; i++) {
        uint64_t len = region_layout(g, kinds[i]);
        int ret = vka_buf_create(g->ctx, &(struct vka_buf_params){
            .size = (len ? len : 4) * 4, .dry = true }, bufs[i]);
        if (ret < 0)
            return ret;
    }
    g->params_len = region_layout(g, VKA_VAL_PARAM);
    if (g->exact)
        return vka_buf_create(g->ctx, &(struct vka_buf_params){
            .size = vka_graph_exact_bytes(g), .dry = true }, &g->exact_buf);
    return 0;
}

static void dry_regions_drop(struct vka_graph *g, bool made)
{
    if (!made)
        return;
    vka_buf_destroy(&g->params);
    vka_buf_destroy(&g->grads);
    vka_buf_destroy(&g->state);
    vka_buf_destroy(&g->losses);
    vka_buf_destroy(&g->exact_buf);
    g->params_len = 0;
}

/* Mask, schedule and layout of a plan, its workspace sized by a dry walk of a first
 * layout: everything but the arena and the recording. */
static int plan_layout(struct vka_plan *p)
{
    struct vka_graph *g = p->g;
    struct vka_cmd *dry = NULL;
    bool regions = false;
    int ret = make_mask(g, p->phase, &p->m);
    if (ret == 0)
        ret = make_sched(g, &p->m, p->backward, &p->s);
    if (ret == 0 && !(p->work = calloc(p->s.nev + 1, sizeof(uint64_t))))
        ret = -ENOMEM;
    if (ret == 0)
        ret = place(g, &p->m, &p->s, p->n, NULL, &p->l);
    if (ret == 0)
        ret = vka_buf_create(g->ctx, &(struct vka_buf_params){
            .size = (p->l.total ? p->l.total : 4) * 4, .dry = true }, &p->arena);
    if (ret == 0)
        ret = dry_regions(g, &regions);
    if (ret == 0 && (ret = vka_cmd_create(g->ctx, &(struct vka_cmd_params){ .dry = true },
                                          &dry)) == 0 &&
        (ret = vka_cmd_begin(dry)) == 0)
        ret = walk(p, dry, true, NULL, NULL);
    vka_cmd_destroy(&dry);
    dry_regions_drop(g, regions);
    vka_buf_destroy(&p->arena);
    layout_free(&p->l);
    if (ret == 0)
        ret = place(g, &p->m, &p->s, p->n, p->work, &p->l);
    return ret;
}

static struct vka_plan *plan_new(struct vka_graph *g, int phase, uint32_t n, bool backward)
{
    struct vka_plan *p = calloc(1, sizeof(*p));
    if (p) {
        p->g = g;
        p->phase = phase;
        p->n = n;
        p->backward = backward;
    }
    return p;
}

static int check_phase(const struct vka_graph *g, int phase)
{
    if (phase < 0 || (phase > 0 && (uint32_t)phase >= g->nphases)) {
        vka_err("graph: there is no phase %d", phase);
        return -EINVAL;
    }
    return 0;
}

/* Multiply-adds of one sample through a node: a conv's output pixels (a transposed
 * conv's input pixels, a linear's one) times its weight's elements; 0 for other ops. */
static double node_macs(const struct vka_graph *g, const struct vka_node *nd)
{
    if (nd->op != VKA_OP_conv2d && nd->op != VKA_OP_conv_transpose2d && nd->op != VKA_OP_linear)
        return 0;
    const struct vka_val *w = &g->vals[nd->in[1]];
    const struct vka_val *px = &g->vals[nd->op == VKA_OP_conv_transpose2d ? nd->in[0] : nd->out];
    return (double)px->h * px->w * w->n * w->c * w->h * w->w;
}

/* FLOPs of one sample through node i's GEMMs (2 per multiply-add): its forward, its
 * input gradient when its input gets one, its weight gradient when its weight does. */
static void node_flops(const struct vka_graph *g, const struct mask *m, uint32_t i,
                       double *fwd, double *dgrad, double *wgrad)
{
    const struct vka_node *nd = &g->nodes[i];
    double f = 2 * node_macs(g, nd);
    *fwd = f;
    *dgrad = f > 0 && m->grad[nd->in[0]] ? f : 0;
    *wgrad = f > 0 && m->grad[nd->in[1]] ? f : 0;
}

int vka_graph_flops(struct vka_graph *g, int phase, bool backward, double *flops)
{
    struct mask m = { 0 };
    *flops = 0;
    int ret = check_phase(g, phase);
    if (ret == 0)
        ret = make_mask(g, phase, &m);
    for (uint32_t i = 0; ret == 0 && i < g->nnodes; i++) {
        double f, dx, dw;
        if (!m.active[i])
            continue;
        node_flops(g, &m, i, &f, &dx, &dw);
        *flops += f + (bwd_runs(g, &m, backward, i) ? dx + dw : 0);
    }
    free(m.active);
    free(m.grad);
    return ret;
}

/* What is alive at the plan's peak, by the block of the node that made it. */
static void live_by_block(const struct vka_graph *g, const struct vka_plan *p,
                          struct vka_plan_mem *out)
{
    out->nblocks = g->nblocks + 2;
    if (out->nblocks > VKA_PLAN_MAX_BLOCKS)
        out->nblocks = VKA_PLAN_MAX_BLOCKS;
    snprintf(out->blocks[0].name, sizeof(out->blocks[0].name), "inputs");
    snprintf(out->blocks[1].name, sizeof(out->blocks[1].name), "workspace");
    out->blocks[1].bytes = p->l.work_at_peak * 4;
    for (uint32_t b = 2; b < out->nblocks; b++)
        snprintf(out->blocks[b].name, sizeof(out->blocks[b].name), "%s", g->blocks[b - 2]);
    for (uint32_t v = 0; v < g->nvals; v++) {
        int prod = g->vals[v].producer;
        uint32_t b = prod < 0 ? 0 : 2 + g->nodes[prod].block;
        if (b >= out->nblocks)
            b = out->nblocks - 1;
        out->blocks[b].bytes += p->l.at_peak[v] * 4;
    }
}

int vka_graph_plan_mem(struct vka_graph *g, int phase, uint32_t n, bool backward,
                       struct vka_plan_mem *out)
{
    memset(out, 0, sizeof(*out));
    int ret = check_phase(g, phase);
    struct vka_plan *p = ret < 0 ? NULL : plan_new(g, phase, n, backward);
    if (ret == 0 && !p)
        ret = -ENOMEM;
    if (ret == 0)
        ret = plan_layout(p);
    if (ret == 0) {
        out->arena = p->l.total * 4;
        out->live_peak = p->l.live_peak * 4;
        for (uint32_t e = 0; e < p->s.nev; e++)
            if (p->work[e] > out->work)
                out->work = p->work[e];
        for (uint32_t e = 0; e < p->s.nev; e++)
            out->recomputed += p->s.ev[e].kind == EV_REC;
        live_by_block(g, p, out);
    }
    if (p)
        plan_free(p);
    return ret;
}

int vka_graph_plan(struct vka_graph *g, uint32_t n, bool backward, struct vka_plan **out)
{
    return vka_graph_plan_phase(g, 0, n, backward, out);
}

/* Makes the graph's arena (shared by its plans, which never run at once) hold at least
 * elems elements: a larger one drops the plans recorded on the old one. */
static int arena_reserve(struct vka_graph *g, uint64_t elems)
{
    uint64_t bytes = (elems ? elems : 4) * 4;
    if (g->arena && g->arena->size >= bytes)
        return 0;
    vka_graph_drop_plans(g);
    return vka_buf_create(g->ctx, &(struct vka_buf_params){
        .size = bytes, .cat = VKA_MEM_ACTIVATIONS }, &g->arena);
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
    if ((ret = walk(p, p->cmd, false, NULL, NULL)) < 0)
        return ret;
    return vka_cmd_end(p->cmd);
}

int vka_graph_plan_phase(struct vka_graph *g, int phase, uint32_t n, bool backward,
                         struct vka_plan **out)
{
    *out = NULL;
    if (!g->params) {
        vka_err("graph: vka_graph_alloc must come before plans");
        return -EINVAL;
    }
    int ret = check_phase(g, phase);
    if (ret < 0)
        return ret;
    for (struct vka_plan *p = g->plans; p; p = p->next)
        if (p->phase == phase && p->n == n && p->backward == backward) {
            *out = p;
            return 0;
        }
    struct vka_plan *p = plan_new(g, phase, n, backward);
    if (!p)
        return -ENOMEM;
    ret = plan_layout(p);
    if (ret == 0)
        ret = arena_reserve(g, p->l.total);
    p->arena = g->arena;
    if (ret == 0 && g->ctx->validation)
        ret = poison(g->arena);
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

/* A run's BatchNorm passes, counted in their running means. */
static void count_batches(struct vka_plan *p)
{
    for (uint32_t i = 0; i < p->nbn; i++)
        p->g->vals[p->bn_means[i]].batches++;
}

int vka_plan_run(struct vka_plan *p)
{
    int ret = vka_cmd_run(p->cmd); /* ended at recording: a replay */
    if (ret == 0)
        count_batches(p);
    return ret;
}

/* Non-finite elements of t (NaN or infinite), with the count of elements read. */
static int count_nonfinite(const struct vka_tensor *t, uint64_t *bad, uint64_t *n)
{
    *n = (uint64_t)t->n * t->c * t->h * t->w;
    *bad = 0;
    bool exact = t->dtype == VKA_EXACT;
    /* an exact sum is 4 words: bad when non-finite or out of range (exact.h) */
    void *h = malloc((*n ? *n : 1) * (exact ? 16 : sizeof(float)));
    if (!h) {
        vka_err("graph: out of memory checking a tensor of %llu elements",
                (unsigned long long)*n);
        return -ENOMEM;
    }
    int ret = 0;
    if (exact) {
        const uint32_t *w = h;
        ret = vka_buf_download(t->buf, t->off * 16, h, *n * 16);
        for (uint64_t k = 0; ret == 0 && k < *n; k++)
            *bad += (w[4 * k + 3] & (VKA_EXACT_NAN | VKA_EXACT_PINF | VKA_EXACT_NINF)) ||
                    vka_exact_out_of_range(w + 4 * k);
    } else if (t->dtype == VKA_F32 && (ret = vka_tensor_download(t, h)) == 0) {
        for (uint64_t k = 0; k < *n; k++)
            *bad += !isfinite(((const float *)h)[k]);
    }
    free(h);
    return ret;
}

/* The anomaly check after one node's forward or backward (not its recomputation): runs
 * what is recorded, reads what the node wrote (its output, or the input gradients of its
 * backward) and names the node when a value is not finite; then begins the next node's
 * recording. */
static int check_node(struct vka_plan *p, struct vka_cmd *cmd, const struct event *ev,
                      const struct vka_op_args *a, void *user)
{
    (void)user;
    if (ev->kind == EV_REC)
        return 0;
    uint32_t i = ev->node;
    bool bwd = is_bwd(ev->kind);
    int ret = vka_cmd_run(cmd);
    const struct vka_node *nd = &p->g->nodes[i];
    const struct vka_tensor *wrote[3] = { bwd ? a->dx[0] : a->y, bwd ? a->dx[1] : NULL,
                                          bwd ? a->dx[2] : NULL };
    for (int k = 0; k < 3 && ret == 0; k++) {
        uint64_t bad, n;
        if (!wrote[k] || (ret = count_nonfinite(wrote[k], &bad, &n)) < 0 || !bad)
            continue;
        const char *what = bwd ? p->g->vals[nd->in[k]].name : p->g->vals[nd->out].name;
        vka_err("anomaly: the %s of node %u (%s) wrote %llu %s of %llu into %s%s",
                bwd ? "backward" : "forward", i, vka_ops[nd->op].name, (unsigned long long)bad,
                wrote[k]->dtype == VKA_EXACT ? "non-finite or out-of-range exact sums"
                                             : "non-finite values",
                (unsigned long long)n, bwd ? "the gradient of " : "",
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
        ret = walk(p, cmd, false, check_node, NULL);
    if (ret == 0)
        ret = vka_cmd_run(cmd); /* what follows the last check: nothing, or zero fills */
    vka_cmd_destroy(&cmd);
    if (ret == 0)
        count_batches(p);
    return ret;
}

/* The profiled walk's note after each event: the timed commands recorded so far. */
static int mark_event(struct vka_plan *p, struct vka_cmd *cmd, const struct event *ev,
                      const struct vka_op_args *a, void *user)
{
    (void)a;
    ((uint32_t *)user)[ev - p->s.ev] = vka_cmd_timed_count(cmd);
    return 0;
}

static enum vka_pass event_pass(enum ev_kind kind)
{
    /* a backward's weight-gradient kernels are told apart by name (timing.c) */
    return kind == EV_FWD ? VKA_PASS_FWD : kind == EV_REC ? VKA_PASS_RECOMPUTE : VKA_PASS_DGRAD;
}

/* Each event's timed commands (ends[e]: the count after event e) and its GEMMs' FLOPs,
 * into t under its op (t->by_layer: its op and shapes, "conv2d 64>32 256x256"). */
static int attribute(struct vka_plan *p, struct vka_cmd *cmd, const uint32_t *ends,
                     struct vka_timing *t)
{
    int ret = 0;
    for (uint32_t e = 0, first = 0; ret >= 0 && e < p->s.nev; first = ends[e++]) {
        const struct event *ev = &p->s.ev[e];
        const struct vka_node *n = &p->g->nodes[ev->node];
        const char *op = vka_ops[n->op].name;
        char label[sizeof(t->rows->op)];
        if (t->by_layer) {
            const struct vka_val *x = &p->g->vals[n->in[0]], *y = &p->g->vals[n->out];
            snprintf(label, sizeof(label), "%s %u>%u %ux%u", op, x->c, y->c, y->h, y->w);
            op = label;
        }
        enum vka_pass pass = event_pass(ev->kind);
        double f, dx, dw;
        node_flops(p->g, &p->m, ev->node, &f, &dx, &dw);
        ret = vka_timing_add_cmd(t, cmd, first, ends[e] - first, op, pass);
        if (ret >= 0 && pass != VKA_PASS_DGRAD && f > 0)
            ret = vka_timing_add(t, op, pass, 0, f * p->n, 0);
        if (ret >= 0 && pass == VKA_PASS_DGRAD && dx > 0 && ev_writes_dx(n, ev->kind, 0))
            ret = vka_timing_add(t, op, VKA_PASS_DGRAD, 0, dx * p->n, 0);
        if (ret >= 0 && pass == VKA_PASS_DGRAD && dw > 0 && ev_writes_dx(n, ev->kind, 1))
            ret = vka_timing_add(t, op, VKA_PASS_WGRAD, 0, dw * p->n, 0);
    }
    return ret < 0 ? ret : 0;
}

int vka_plan_run_profiled(struct vka_plan *p, struct vka_timing *t)
{
    struct vka_cmd *cmd = NULL;
    uint32_t *ends = calloc(p->s.nev + 1, sizeof(*ends));
    int ret = ends ? vka_cmd_create(p->g->ctx, &(struct vka_cmd_params){
                         .timing = true, .max_timed = 1u << 16 }, &cmd) : -ENOMEM;
    if (ret == 0 && (ret = vka_cmd_begin(cmd)) == 0 &&
        (ret = walk(p, cmd, false, mark_event, ends)) == 0 && (ret = vka_cmd_run(cmd)) == 0)
        ret = attribute(p, cmd, ends, t);
    vka_cmd_destroy(&cmd);
    free(ends);
    if (ret == 0)
        count_batches(p);
    return ret;
}

void vka_graph_set_batches(struct vka_graph *g, int v, uint64_t batches)
{
    g->vals[v].batches = batches;
}
