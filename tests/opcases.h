/* Every op's test cases, in one table with one entry per row of src/ops/ops.def: how to
 * build its inputs for a case, its double reference (tests/ref), the tolerance of each
 * result with its reason, and the cases themselves (sizes, parameters, where they run).
 * Three drivers read it:
 *   tests/opcheck.c         the device against the reference, checkasm style: NaN
 *                           outputs, random gradients (+=), guard words, both load
 *                           paths, conv tiles, bindings split into chunks, micro-batch
 *                           splits (bitwise), what bwd reads (ops.def's R_* flags)
 *   tests/test_ref_grad.c   the reference's bwd against central finite differences
 *   tools/parity/dump_ops.c the device's results for PyTorch (tools/parity/ops.py)
 * Nothing here needs Criterion or a device.
 *
 * A new op is one entry in opcases.c: its cases and, when its family's helpers do not
 * fit, its slots/gen/ref/tol functions. */
#ifndef VKA_TEST_OPCASES_H
#define VKA_TEST_OPCASES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ops/ops.h"

/* The tensors of a run: struct vka_op_args's slots. */
enum oc_slot {
    OC_X0, OC_X1, OC_X2, OC_Y, OC_SAVED0, OC_SAVED1, OC_STATE0, OC_STATE1, OC_DY,
    OC_DX0, OC_DX1, OC_DX2,
    OC_NSLOTS
};

enum oc_kind {
    OC_NONE,   /* absent (NULL) */
    OC_ACT,    /* NHWC4 activation (n, c, h, w); host data NCHW */
    OC_WEIGHT, /* conv/linear weight, PyTorch's (n, c, h, w) order on the host */
    OC_FLAT,   /* n*c*h*w f32 */
    OC_I32,    /* n*c*h*w i32 class ids (FLAT on the device) */
};

/* Case flags. Where opcheck runs a case (none of these: nowhere): */
enum {
    OC_TEXEL = 1u << 0,           /* texel-buffer loads (lavapipe's path) */
    OC_STORAGE = 1u << 1,         /* storage-buffer loads (GPUs' path), conv tiles off */
    OC_TILED = 1u << 2,           /* storage-buffer loads, conv tiles on */
    OC_TEXEL_CHUNKED = 1u << 3,   /* texel loads, max_binding = chunk: bitwise as OC_TEXEL */
    OC_STORAGE_CHUNKED = 1u << 4, /* storage loads, max_binding = chunk: as OC_STORAGE */
    OC_SPLIT = 1u << 5,           /* (N = 8) also as 4+4, 3+3+2, 1x8 micro-batches into the
                                     same tensors, on each unchunked path: bitwise */
    /* the other drivers */
    OC_PARITY = 1u << 6,          /* a case of the parity dump */
    OC_FD = 1u << 7,              /* test_ref_grad's finite-difference case */
    /* the case itself */
    OC_RANDOM = 1u << 8,          /* sizes (and parameters) drawn by the entry's rand() */
    OC_NO_X1 = 1u << 9,           /* x1 left out (NULL): no affine, targets, ... */
    OC_NO_X2 = 1u << 10,          /* x2 left out: no bias, beta, class weights */
    OC_NO_STATE = 1u << 11,       /* no running statistics */
    OC_NO_DX0 = 1u << 12,         /* bwd is not asked for dx0 (it must stay untouched) */
    OC_NO_DX1 = 1u << 13,
    OC_NO_DX2 = 1u << 14,
    OC_BWD_NO_X = 1u << 15,       /* bwd gets no x0, x1 (concat: shapes from dx0, dx1) */
    OC_TIES = 1u << 16,           /* inputs on a coarse grid: equal maxima */
    OC_NANS = 1u << 17,           /* some NaN inputs */
};
#define OC_TS (OC_TEXEL | OC_STORAGE)
#define OC_CHUNKED (OC_TEXEL_CHUNKED | OC_STORAGE_CHUNKED)

struct oc_case {
    uint32_t n, c, h, w;   /* x0 */
    uint32_t k, r, s;      /* conv: output channels K and kernel R x S; concat: x1's C */
    union vka_op_params p;
    unsigned f;
    uint32_t chunk;        /* bytes: the max_binding of the *_CHUNKED runs */
};

/* How inputs are drawn: to catch kernel bugs (kinks, saturation, out-of-range class
 * ids), away from kinks and ties (finite differences), or valid for PyTorch. */
enum oc_gen { OC_GEN_CHECK, OC_GEN_FD, OC_GEN_PARITY };

/* One tensor of a run on the host. */
struct oc_tensor {
    enum oc_kind kind;
    uint32_t n, c, h, w;   /* logical; FLAT and I32 hold n*c*h*w values */
    bool per_sample;       /* FLAT/I32: sample i's values are the i-th n-th of them */
    bool grad;             /* x slots: bwd has a gradient for it (its dx slot) */
    bool absent;           /* x slots: passed as NULL though it has a gradient (a
                              norm's dgamma without gamma) */
    float lo, hi;          /* the range of uniform inputs */
    float *f;              /* values (I32: int32_t), NCHW for ACT, PyTorch's for WEIGHT */
    double *d;             /* inputs (x, state before fwd, dy) as double */
};

struct oc_entry;

/* Everything about one case of one op on the host. */
struct oc_run {
    enum vka_op op;
    const struct oc_entry *e;
    struct oc_case c;               /* with OC_RANDOM's draws */
    union vka_op_params p;          /* what fwd and bwd get */
    enum oc_gen gen;
    struct oc_tensor t[OC_NSLOTS];  /* shapes and inputs (dx: the initial values) */
    double *ref[OC_NSLOTS];         /* the reference's y, saved, state after fwd, and
                                       dx (initial values + gradient); NaN: not written */
    double *absref[OC_NSLOTS];      /* the same on |inputs| from zero (entry->absref) */
    double *bsaved[2];              /* the saved tensors the last reference bwd read */
    double *by;                     /* the y it read, when given (NULL: its fwd's) */
    double loss;                    /* dy(): the objective it came from, or NaN */
};

/* The arguments of a reference call, in double, NCHW. */
struct oc_ref {
    const struct oc_run *r;  /* sizes (r->c, r->t) and r->p */
    const double *x[3];      /* NULL: absent */
    double *y;               /* fwd writes (a loss: the fresh [sum, count]) */
    double *saved[2];        /* fwd writes; bwd reads */
    double *state[2];        /* fwd updates (training) or reads; NULL: absent */
    const double *dy;        /* bwd: the gradient of y; a loss: [scale, 0], i.e. L = scale * sum */
    double *dx[3];           /* bwd adds; NULL: not wanted */
};

/* Per-element tolerances of slot s: |got - want| <= tol[i] (want NaN: got must be NaN). */
typedef void (*oc_tol_fn)(const struct oc_run *r, enum oc_slot s, double *tol);

enum oc_fd { OC_FD_NONE, OC_FD_LIN, OC_FD_SMOOTH };

struct oc_entry {
    enum vka_op op;
    const struct oc_case *cases;
    size_t ncases;
    void (*slots)(struct oc_run *r);       /* kinds, sizes, ranges, grads of x0..x2, state */
    void (*gen)(struct oc_run *r);         /* optional: inputs beyond uniform [lo, hi] */
    void (*rand)(struct oc_run *r);        /* OC_RANDOM's draw into r->c */
    void (*fwd)(const struct oc_ref *a);
    void (*bwd)(const struct oc_ref *a);
    void (*dy)(struct oc_run *r);          /* optional: dy from the reference's y */
    oc_tol_fn tol;
    double atol[2], rtol[2];               /* oc_tol_abs_rel's, [fwd results, dx] */
    bool absref;                           /* tol reads r->absref */
    bool vec4_outputs;                     /* every output, dx included, starts at a whole
                                              vec4 (conv, norm, act and pool write whole
                                              vec4s) */
    enum oc_fd fd[3];                      /* test_ref_grad's tolerance per dx slot */
};

/* The entry of op, or NULL. */
const struct oc_entry *oc_entry(enum vka_op op);

/* The run's RNG (xorshift64*): every input and random case comes from it. */
void oc_seed(uint64_t seed);
uint64_t oc_u64(void);
float oc_uniform(float lo, float hi);
uint32_t oc_range(uint32_t lo, uint32_t hi); /* inclusive */

/* Builds a run of case c of op: sizes, y's shape from the op's shape rule, saved from
 * vka_op_saved_shape, inputs, dy and the dx initial values (uniform in [-1, 1]). false
 * with a message in err when the shape rule refuses the case. */
bool oc_run_init(struct oc_run *r, enum vka_op op, const struct oc_case *c, enum oc_gen gen,
                 char *err, size_t errsize);
void oc_run_free(struct oc_run *r);
/* The reference: fwd into r->ref (and r->absref), then the losses' dy ([1 / count, 0],
 * p.loss.scale; parity: [1, 0]) and entry->dy. */
void oc_run_ref_fwd(struct oc_run *r);
/* bwd into r->ref[OC_DX*] (from the initial values), reading saved and y (NULL: the
 * reference's own); which[i]: dx i is wanted. */
void oc_run_ref_bwd(struct oc_run *r, const double *const saved[2], const double *y,
                    const bool which[3]);

uint64_t oc_numel(const struct oc_tensor *t);
/* t's device shape without storage: NHWC4, WEIGHT, or FLAT (count, 1, 1, 1). */
struct vka_tensor oc_tensor_shape(const struct oc_tensor *t);
/* Values per sample of a per-sample tensor (ACT: c*h*w). */
uint64_t oc_per_sample(const struct oc_tensor *t);
/* "conv2d (2,3,5,7) K4 3x3 stride 1,1 pad 1,1 ..." */
void oc_describe(const struct oc_run *r, char *buf, size_t size);
const char *oc_slot_name(enum oc_slot s);
/* The tolerance of results whose error is abs + rel * |want| (entry->atol, rtol). */
void oc_tol_abs_rel(const struct oc_run *r, enum oc_slot s, double *tol);

#endif
