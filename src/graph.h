/* The graph (layer 4): a static list of op nodes built once by a model builder, automatic
 * backward, a parameter registry with PyTorch's names, and plans: for a micro-batch size
 * and a mode (training or not) a plan places every activation, activation gradient and
 * saved tensor in one arena by liveness, so the bytes a micro-batch needs are known
 * before anything is allocated, and records the forward and backward passes once into a
 * command buffer that every micro-step replays.
 *
 * Values are indices. Inputs and activations have the micro-batch as their N; parameters,
 * running statistics and loss accumulators have fixed shapes and live in buffers of
 * their own (parameters and their gradient accumulators each in one region, in
 * registration order, every tensor 64-element aligned).
 *
 * Owner: a graph owns its parameters, gradients, state, loss accumulators and plans. */
#ifndef VKA_GRAPH_H
#define VKA_GRAPH_H

#include "ops/ops.h"

enum vka_val_kind {
    VKA_VAL_INPUT,  /* data uploaded per micro-step (N = micro-batch) */
    VKA_VAL_ACT,    /* computed by a node (N = micro-batch unless fixed) */
    VKA_VAL_PARAM,  /* trainable parameter */
    VKA_VAL_STATE,  /* persistent, not trained (running statistics) */
    VKA_VAL_LOSS,   /* a loss accumulator: FLAT [sum, count] or dice's [inter, card] */
};

enum vka_init {
    VKA_INIT_ZERO,
    VKA_INIT_ONE,
    VKA_INIT_KAIMING_UNIFORM, /* PyTorch's conv/linear default: U(-1/sqrt(fan_in), ..) */
    VKA_INIT_NORMAL,          /* N(0, init_arg), e.g. DCGAN's 0.02 */
    VKA_INIT_NORMAL_ONE,      /* N(1, init_arg): DCGAN's BatchNorm weights */
    VKA_INIT_UNIFORM_FAN_IN,  /* PyTorch's conv/linear bias: U(-1/sqrt(fan_in), ..) */
};

struct vka_val {
    char name[96];
    enum vka_val_kind kind;
    enum vka_layout layout;
    enum vka_dtype dtype;
    uint32_t n, c, h, w; /* n == 0: the micro-batch */
    enum vka_init init;
    float init_arg;      /* NORMAL: std; fan-in inits: fan_in */
    uint32_t file_rank;  /* PARAM/STATE: rank of PyTorch's tensor (linear weights 2) */
    bool trainable;      /* PARAM: gradients are accumulated (vka_graph_set_trainable) */
    bool needs_grad;     /* derived: a gradient flows to it */
    int producer;        /* node index, or -1 */
    uint64_t region_off; /* PARAM/STATE/LOSS: element offset in its region */
    uint64_t batches;    /* a BatchNorm's running mean: forward passes in training mode,
                            PyTorch's num_batches_tracked (a module applied twice: 2) */
};

struct vka_node {
    enum vka_op op;
    union vka_op_params p;
    int in[3];     /* value indices, -1 = none */
    int out;
    int saved[2];  /* values written by fwd for bwd, -1 = none */
    int state[2];  /* STATE values (batch_norm running statistics), -1 = none */
    uint8_t mark;  /* VKA_MARK_*: the node starts a layer or a block (vka_graph_mark) */
    uint16_t block; /* the block it belongs to (names for a plan's memory breakdown) */
};

enum {
    VKA_MARK_LAYER = 1, /* every conv/linear layer starts one (vka_layer_*) */
    VKA_MARK_BLOCK = 2, /* a model's block of layers (a U-Net level's double conv) */
};

/* What a training plan keeps for backward (--recompute): everything (none), the inputs
 * of each block (blocks) or of each layer (all), the rest made again from them in the
 * backward pass: the backward of each layer of a block is preceded by the forward of
 * what that layer's backward reads (and what that is made from), which is kept only
 * until the layer's backward is done. The gradients are the
 * same bits in every mode: forward kernels are deterministic, and a recomputed BatchNorm
 * normalises with the same batch statistics without updating its running ones. */
enum vka_recompute { VKA_RECOMPUTE_NONE, VKA_RECOMPUTE_BLOCKS, VKA_RECOMPUTE_ALL };

struct vka_graph;
struct vka_plan;

struct vka_graph_params {
    uint64_t seed; /* parameter initialisation */
};

int vka_graph_create(struct vka_ctx *ctx, const struct vka_graph_params *params,
                     struct vka_graph **g);
void vka_graph_destroy(struct vka_graph **g);

/* ---- building (a negative return is an errno; the message names the op and shapes) -- */

int vka_graph_input(struct vka_graph *g, const char *name, enum vka_dtype dtype,
                    enum vka_layout layout, uint32_t c, uint32_t h, uint32_t w);
/* A parameter (or state) whose name exists with the same kind and shape is that value:
 * a module applied twice shares its weights, as calling a PyTorch module twice does. */
int vka_graph_param(struct vka_graph *g, const char *name, enum vka_layout layout,
                    uint32_t n, uint32_t c, uint32_t h, uint32_t w, enum vka_init init,
                    float init_arg);
int vka_graph_state(struct vka_graph *g, const char *name, uint32_t n, float value);
/* A node; its output (and saved tensors) get their shapes from the op's shape rule. */
int vka_graph_node(struct vka_graph *g, enum vka_op op, const union vka_op_params *p,
                   int x0, int x1, int x2);

/* The next node starts a layer or a block (mark: VKA_MARK_*); block, when not NULL,
 * names the block that the next nodes belong to (e.g. "enc.2"). */
int vka_graph_mark(struct vka_graph *g, unsigned mark, const char *block);
/* The recompute mode of the plans made from now on (drops those made before). */
void vka_graph_set_recompute(struct vka_graph *g, enum vka_recompute mode);

/* Layers: parameters named prefix.weight / prefix.bias as PyTorch's modules name them;
 * each starts a layer (VKA_MARK_LAYER). */
int vka_layer_conv2d(struct vka_graph *g, const char *prefix, int x, uint32_t out_c,
                     uint32_t k, uint32_t stride, uint32_t pad, bool bias);
int vka_layer_conv_transpose2d(struct vka_graph *g, const char *prefix, int x, uint32_t out_c,
                               uint32_t k, uint32_t stride, uint32_t pad, uint32_t out_pad,
                               bool bias);
int vka_layer_linear(struct vka_graph *g, const char *prefix, int x, uint32_t out_f, bool bias);
int vka_layer_group_norm(struct vka_graph *g, const char *prefix, int x, uint32_t groups);
int vka_layer_batch_norm(struct vka_graph *g, const char *prefix, int x);
int vka_layer_act(struct vka_graph *g, enum vka_op op, int x, float slope);
/* act (relu, or leaky_relu with a slope in [0, 1]) applied by the norm that made y, the
 * output of the last node added (so nothing has read the value before the activation):
 * the same bits as vka_layer_act after it, without the activation's two passes over the
 * tensor. Returns y, now act's output. */
int vka_layer_norm_act(struct vka_graph *g, int y, enum vka_op act, float slope);

/* Makes every parameter whose name starts with prefix (all if "") trainable or frozen:
 * frozen parameters get no gradient; plans are recorded again after a change. */
void vka_graph_set_trainable(struct vka_graph *g, const char *prefix, bool trainable);
void vka_graph_set_training(struct vka_graph *g, bool training); /* batch_norm mode */
/* Changes how a parameter is initialised (before vka_graph_alloc): a model's own rule,
 * e.g. DCGAN's N(0, 0.02) for every conv weight. */
int vka_graph_set_init(struct vka_graph *g, int v, enum vka_init init, float init_arg);

uint32_t vka_graph_nvals(const struct vka_graph *g);
const struct vka_val *vka_graph_val(const struct vka_graph *g, int v);
int vka_graph_find(const struct vka_graph *g, const char *name);

/* ---- storage -------------------------------------------------------------------------- */

/* Allocates and initialises parameters, their gradient accumulators (zeroed), state and
 * loss accumulators. Called once after building. */
int vka_graph_alloc(struct vka_graph *g);

/* The parameters and gradient accumulators as flat tensors over their whole regions
 * (what the optimizer updates), and one value's view. */
struct vka_tensor vka_graph_params_flat(const struct vka_graph *g);
struct vka_tensor vka_graph_grads_flat(const struct vka_graph *g);
struct vka_tensor vka_graph_tensor(const struct vka_graph *g, int v);       /* PARAM/STATE/LOSS */
struct vka_tensor vka_graph_grad_tensor(const struct vka_graph *g, int v);  /* PARAM */

/* ---- phases -------------------------------------------------------------------------- */

/* A phase is the part of the graph that a plan runs: only the nodes that outputs need
 * (their ancestors), with gradients accumulated for the parameters whose names start
 * with train (NULL: none). Phase 0 is the whole graph with the flags of
 * vka_graph_set_trainable. A GAN has a D phase (G forward only, D on real and fake, D
 * trained) and a G phase (G and D, G trained, D's parameters read but not touched) in
 * one graph whose D parameters are shared by its two applications. Returns the phase. */
int vka_graph_phase(struct vka_graph *g, const int *outputs, uint32_t noutputs,
                    const char *train);
/* The values of kind PARAM or STATE whose names start with prefix, as one flat view of
 * their region (empty when none): -EINVAL when others lie between them. After
 * vka_graph_alloc. Two graphs that register the same values in the same order lay them
 * out alike, so a span of one can be copied into the other's region. */
int vka_graph_span(const struct vka_graph *g, enum vka_val_kind kind, const char *prefix,
                   struct vka_tensor *t);
/* The parameters a phase trains and their gradient accumulators, as flat views of one
 * span of the regions (what its optimizer updates): -EINVAL when other parameters lie
 * between them. Phase 0: the whole regions. After vka_graph_alloc. */
int vka_graph_phase_params(const struct vka_graph *g, int phase, struct vka_tensor *params,
                           struct vka_tensor *grads);

/* Bytes of a region (params: also their gradient accumulators), before or after
 * vka_graph_alloc. */
uint64_t vka_graph_region_bytes(struct vka_graph *g, enum vka_val_kind kind);

/* ---- exact accumulation (--accumulate exact; exact.h) ----------------------------------- */

/* Before vka_graph_alloc: in exact mode the graph holds one more buffer (VKA_MEM_GRADS),
 * an exact element (16 bytes) for every float of the gradient region, then for every
 * float of the loss region, and its training plans (backward) add each parameter's
 * gradient and every loss accumulator there instead of into the floats (forward-only
 * plans, evaluation, keep adding floats). The floats get the exact sums when a trainer
 * resolves them (train.c). */
int vka_graph_set_exact(struct vka_graph *g, bool exact);
bool vka_graph_is_exact(const struct vka_graph *g);
/* Bytes of that buffer (0 when not exact), before or after vka_graph_alloc. */
uint64_t vka_graph_exact_bytes(struct vka_graph *g);
/* The exact twin of a PARAM's gradient or of a LOSS accumulator (a VKA_EXACT tensor of
 * the same shape), and of a flat view of the gradient or loss region (a trainer's span);
 * an empty tensor when the graph is not exact. */
struct vka_tensor vka_graph_exact_tensor(const struct vka_graph *g, int v);
struct vka_tensor vka_graph_exact_span(const struct vka_graph *g, const struct vka_tensor *t);
/* The whole exact buffer as a flat view of its 32-bit words (checkpoints), after
 * vka_graph_alloc; empty when the graph is not exact. */
struct vka_tensor vka_graph_exact_words(const struct vka_graph *g);

/* ---- plans ---------------------------------------------------------------------------- */

/* A plan's arena holds the activations, the activation gradients and the ops' workspace
 * (scratch that an op uses while it runs) of one pass, placed by liveness: a value lives
 * from the event that writes it to the last one that reads it (a backward reads only what
 * its op declares in ops.def), so each copy's memory is reused once it is dead. All plans
 * of a graph share one arena, as large as the largest (they never run at once); a plan
 * that needs a larger one drops the others, so a plan pointer is good until the next
 * vka_graph_plan* call. */

#define VKA_PLAN_MAX_BLOCKS 32

struct vka_plan_mem {
    uint64_t arena;       /* bytes: the arena the plan needs */
    uint64_t live_peak;   /* the most bytes alive at one time (arena >= live_peak) */
    uint64_t work;        /* the largest workspace of one op */
    uint32_t recomputed;  /* forward ops run again in backward (an op may run more than once) */
    uint32_t nblocks;     /* what is alive at the peak by block: "inputs", "workspace", */
    struct {              /* then the graph's blocks (the last one takes any more) */
        char name[32];
        uint64_t bytes;
    } blocks[VKA_PLAN_MAX_BLOCKS];
};

/* What the plan for (phase, n, backward) would need, without allocating anything (before
 * vka_graph_alloc too): its ops are recorded by a dry recorder to size their workspace. */
int vka_graph_plan_mem(struct vka_graph *g, int phase, uint32_t n, bool backward,
                       struct vka_plan_mem *mem);
/* The plan for (n, backward), made and recorded on first use. backward = false records
 * the forward pass only (evaluation, prediction, a GAN's frozen generator). */
int vka_graph_plan(struct vka_graph *g, uint32_t n, bool backward, struct vka_plan **plan);
/* The plan of a phase (vka_graph_plan is phase 0). */
int vka_graph_plan_phase(struct vka_graph *g, int phase, uint32_t n, bool backward,
                         struct vka_plan **plan);
/* Drops every plan (their recordings and the arena). */
void vka_graph_drop_plans(struct vka_graph *g);

/* FLOPs of one sample through the plan of (phase, backward), counted from the shapes:
 * 2 per multiply-add of every convolution, transposed convolution and linear GEMM it
 * runs (the forward; with backward the input gradient where the input gets one and the
 * weight gradient where the weight does). Bias gradients, norms, activations and
 * recomputed forwards are not counted. */
int vka_graph_flops(struct vka_graph *g, int phase, bool backward, double *flops);

/* A value's tensor in a plan (INPUT/ACT), or its gradient (ACT with needs_grad). */
struct vka_tensor vka_plan_tensor(const struct vka_plan *p, int v);
struct vka_tensor vka_plan_grad(const struct vka_plan *p, int v);
/* Replays the plan's recording and waits; counts the BatchNorm passes it ran. */
int vka_plan_run(struct vka_plan *p);
/* The same work, node by node (--detect-anomaly): after each node's forward and backward,
 * what it wrote is read back, and the first node that wrote a NaN or an infinity is named
 * (its index, op and the value it wrote): -ERANGE. The results are the same bits as
 * vka_plan_run's; it is slow (a submission and a download per node). */
int vka_plan_run_checked(struct vka_plan *p);
/* The same work recorded once more into a timing recorder (the plan's own recording
 * stays untimed), run, and what each dispatch took added to t under its node's op and
 * pass, with the FLOPs of the node's GEMMs (timing.h). The same bits as vka_plan_run. */
struct vka_timing;
int vka_plan_run_profiled(struct vka_plan *p, struct vka_timing *t);
/* Restores a running mean's pass count (checkpoints). */
void vka_graph_set_batches(struct vka_graph *g, int v, uint64_t batches);

#endif
