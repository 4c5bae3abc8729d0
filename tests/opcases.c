/* Every op's test cases; see opcases.h. The generic part (runs, the reference calls,
 * descriptions) comes first, then one section per family: its slots, inputs, reference
 * wrappers, tolerances with their reasons, and case lists; the table of entries ends
 * the file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "ops/loss.h"
#include "opcases.h"
#include "ref/ref.h"

#define U 0x1p-24 /* f32 unit roundoff: a correctly rounded +, -, * errs by <= U |result| */

/* ---- RNG ------------------------------------------------------------------------------ */

static uint64_t rng = 1;

void oc_seed(uint64_t seed)
{
    rng = seed ? seed : 1;
}

uint64_t oc_u64(void)
{
    /* xorshift64* */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dull;
}

float oc_uniform(float lo, float hi)
{
    return lo + (hi - lo) * (float)((oc_u64() >> 40) * (1.0 / (1ull << 24)));
}

uint32_t oc_range(uint32_t lo, uint32_t hi)
{
    return lo + (uint32_t)(oc_u64() % ((uint64_t)hi - lo + 1));
}

/* ---- runs ----------------------------------------------------------------------------- */

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "opcases: out of memory\n");
        abort();
    }
    return p;
}

uint64_t oc_numel(const struct oc_tensor *t)
{
    return t->kind == OC_NONE ? 0 : (uint64_t)t->n * t->c * t->h * t->w;
}

uint64_t oc_per_sample(const struct oc_tensor *t)
{
    return t->n ? oc_numel(t) / t->n : 0;
}

struct vka_tensor oc_tensor_shape(const struct oc_tensor *t)
{
    struct vka_tensor v = { .dtype = t->kind == OC_I32 ? VKA_I32 : VKA_F32,
                            .n = t->n, .c = t->c, .h = t->h, .w = t->w };
    if (t->kind == OC_ACT || t->kind == OC_WEIGHT) {
        v.layout = t->kind == OC_ACT ? VKA_LAYOUT_NHWC4 : VKA_LAYOUT_WEIGHT;
        v.cs = (t->c + 3) & ~3u;
    } else {
        v.layout = VKA_LAYOUT_FLAT;
        v.n = (uint32_t)oc_numel(t);
        v.c = v.h = v.w = v.cs = 1;
    }
    return v;
}

static void set(struct oc_tensor *t, enum oc_kind kind, uint32_t n, uint32_t c, uint32_t h,
                uint32_t w)
{
    *t = (struct oc_tensor){ .kind = kind, .n = n, .c = c, .h = h, .w = w, .lo = -1, .hi = 1 };
}

static void set_like(struct oc_tensor *t, const struct oc_tensor *like)
{
    set(t, like->kind, like->n, like->c, like->h, like->w);
    t->per_sample = like->per_sample;
}

static void fill_uniform(struct oc_tensor *t)
{
    uint64_t n = oc_numel(t);
    t->f = xcalloc(n, sizeof(float));
    if (t->kind != OC_I32)
        for (uint64_t i = 0; i < n; i++)
            t->f[i] = oc_uniform(t->lo, t->hi);
}

static double *to_double(const struct oc_tensor *t)
{
    uint64_t n = oc_numel(t);
    double *d = xcalloc(n, sizeof(double));
    for (uint64_t i = 0; i < n; i++)
        d[i] = t->kind == OC_I32 ? (double)((const int32_t *)t->f)[i] : (double)t->f[i];
    return d;
}

static double *nans(uint64_t n)
{
    double *d = xcalloc(n, sizeof(double));
    for (uint64_t i = 0; i < n; i++)
        d[i] = NAN;
    return d;
}

bool oc_run_init(struct oc_run *r, enum vka_op op, const struct oc_case *c, enum oc_gen gen,
                 char *err, size_t errsize)
{
    const unsigned flags = vka_ops[op].flags;
    *r = (struct oc_run){ .op = op, .e = oc_entry(op), .c = *c, .gen = gen, .loss = NAN };
    if (c->f & OC_RANDOM)
        r->e->rand(r);
    r->p = r->c.p;
    r->e->slots(r);
    static const enum oc_slot in[] = { OC_X0, OC_X1, OC_X2, OC_STATE0, OC_STATE1 };
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
        if (r->t[in[i]].kind != OC_NONE)
            fill_uniform(&r->t[in[i]]);
    if (r->e->gen)
        r->e->gen(r);

    /* y from the shape rule, on bare shapes */
    struct vka_tensor shape[3];
    struct vka_op_args a = { .p = r->p };
    for (int i = 0; i < 3; i++)
        if (r->t[OC_X0 + i].kind != OC_NONE) {
            shape[i] = oc_tensor_shape(&r->t[OC_X0 + i]);
            a.x[i] = r->t[OC_X0 + i].absent ? NULL : &shape[i];
        }
    uint32_t y[4];
    vka_clear_error();
    if (vka_ops[op].shape(&a, y) < 0) {
        snprintf(err, errsize, "%s", vka_last_error());
        return false;
    }
    if (flags & VKA_OP_LOSS) {
        set(&r->t[OC_Y], OC_FLAT, y[0], y[1], y[2], y[3]);
        r->t[OC_Y].lo = 0, r->t[OC_Y].hi = 50; /* an accumulator's earlier sums */
        fill_uniform(&r->t[OC_Y]);
    } else {
        set(&r->t[OC_Y], OC_ACT, y[0], y[1], y[2], y[3]);
    }
    for (int i = 0; i < 2; i++) {
        struct vka_saved_shape ss;
        if (a.x[0] && vka_op_saved_shape(op, i, &a, y, &ss)) {
            set(&r->t[OC_SAVED0 + i], OC_FLAT, ss.n, ss.c, ss.h, ss.w);
            r->t[OC_SAVED0 + i].per_sample = ss.per_sample;
        }
    }
    /* dy like y (a loss's that bwd does not read: [scale, 0], for the reference only) */
    set_like(&r->t[OC_DY], &r->t[OC_Y]);
    fill_uniform(&r->t[OC_DY]);
    for (int i = 0; i < 3; i++)
        if (r->t[OC_X0 + i].kind != OC_NONE && r->t[OC_X0 + i].grad) {
            set_like(&r->t[OC_DX0 + i], &r->t[OC_X0 + i]);
            fill_uniform(&r->t[OC_DX0 + i]); /* earlier gradients: bwd must add */
        }
    for (int s = 0; s < OC_NSLOTS; s++)
        if (r->t[s].f && !r->t[s].d)
            r->t[s].d = to_double(&r->t[s]);
    return true;
}

void oc_run_free(struct oc_run *r)
{
    for (int s = 0; s < OC_NSLOTS; s++) {
        free(r->t[s].f);
        free(r->t[s].d);
        free(r->ref[s]);
        free(r->absref[s]);
    }
    free(r->bsaved[0]);
    free(r->bsaved[1]);
    free(r->by);
    memset(r, 0, sizeof(*r));
}

static double *abs_copy(const struct oc_tensor *t)
{
    if (!t->d)
        return NULL;
    uint64_t n = oc_numel(t);
    double *d = xcalloc(n, sizeof(double));
    for (uint64_t i = 0; i < n; i++)
        d[i] = fabs(t->d[i]);
    return d;
}

/* the reference's arguments from r's inputs (abs: their magnitudes, for absref) */
static void ref_args(struct oc_run *r, struct oc_ref *a, double *xa[3], bool abs)
{
    *a = (struct oc_ref){ .r = r };
    for (int i = 0; i < 3; i++) {
        const struct oc_tensor *t = &r->t[OC_X0 + i];
        xa[i] = abs && t->kind != OC_I32 ? abs_copy(t) : NULL;
        a->x[i] = t->kind == OC_NONE || t->absent ? NULL : xa[i] ? xa[i] : t->d;
    }
}

void oc_run_ref_fwd(struct oc_run *r)
{
    const unsigned flags = vka_ops[r->op].flags;
    struct oc_ref a;
    double *xa[3];
    ref_args(r, &a, xa, false);
    r->ref[OC_Y] = nans(oc_numel(&r->t[OC_Y]));
    a.y = r->ref[OC_Y];
    for (int i = 0; i < 2; i++) {
        const struct oc_tensor *st = &r->t[OC_STATE0 + i];
        r->ref[OC_SAVED0 + i] = nans(oc_numel(&r->t[OC_SAVED0 + i]));
        a.saved[i] = r->ref[OC_SAVED0 + i];
        if (st->kind != OC_NONE) {
            r->ref[OC_STATE0 + i] = xcalloc(oc_numel(st), sizeof(double));
            memcpy(r->ref[OC_STATE0 + i], st->d, oc_numel(st) * sizeof(double));
            a.state[i] = r->ref[OC_STATE0 + i];
        }
    }
    r->e->fwd(&a);
    if (r->e->absref) {
        struct oc_ref b;
        double *xb[3], *saved[2], *state[2] = { NULL, NULL };
        ref_args(r, &b, xb, true);
        r->absref[OC_Y] = xcalloc(oc_numel(&r->t[OC_Y]), sizeof(double));
        b.y = r->absref[OC_Y];
        for (int i = 0; i < 2; i++) {
            saved[i] = xcalloc(oc_numel(&r->t[OC_SAVED0 + i]), sizeof(double));
            state[i] = abs_copy(&r->t[OC_STATE0 + i]);
            b.saved[i] = saved[i];
            b.state[i] = state[i];
        }
        r->e->fwd(&b);
        for (int i = 0; i < 3; i++)
            free(xb[i]);
        for (int i = 0; i < 2; i++)
            free(saved[i]), free(state[i]);
    }
    /* a loss's bwd adds scale * d(sum)/dx: the gradient of the mean, 1 / count (the
     * parity dump: of the sum, scale 1) */
    if ((flags & VKA_OP_LOSS) && !(flags & VKA_OP_R_DY)) {
        double count = r->ref[OC_Y][1];
        float scale = r->gen == OC_GEN_PARITY || !(count > 0) ? 1.0f : (float)(1.0 / count);
        r->p.loss.scale = scale;
        struct oc_tensor *dy = &r->t[OC_DY];
        for (uint64_t i = 0; i < oc_numel(dy); i++)
            dy->f[i] = i ? 0.0f : scale, dy->d[i] = dy->f[i];
    } else if (r->e->dy) {
        r->e->dy(r);
    }
}

void oc_run_ref_bwd(struct oc_run *r, const double *const saved[2], const double *y,
                    const bool which[3])
{
    struct oc_ref a;
    double *xa[3];
    ref_args(r, &a, xa, false);
    a.dy = r->t[OC_DY].d;
    free(r->by);
    r->by = NULL;
    if (y) {
        uint64_t n = oc_numel(&r->t[OC_Y]);
        r->by = xcalloc(n ? n : 1, sizeof(double));
        memcpy(r->by, y, n * sizeof(double));
    }
    a.y = y ? r->by : r->ref[OC_Y];
    for (int i = 0; i < 2; i++) {
        uint64_t n = oc_numel(&r->t[OC_SAVED0 + i]);
        free(r->bsaved[i]);
        r->bsaved[i] = xcalloc(n, sizeof(double));
        if (n)
            memcpy(r->bsaved[i], saved ? saved[i] : r->ref[OC_SAVED0 + i], n * sizeof(double));
        a.saved[i] = r->bsaved[i];
        a.state[i] = r->t[OC_STATE0 + i].d; /* bwd reads them only in eval mode, where
                                               fwd leaves them as they were */
    }
    for (int i = 0; i < 3; i++) {
        const struct oc_tensor *dx = &r->t[OC_DX0 + i];
        if (dx->kind == OC_NONE)
            continue;
        free(r->ref[OC_DX0 + i]);
        r->ref[OC_DX0 + i] = xcalloc(oc_numel(dx), sizeof(double));
        memcpy(r->ref[OC_DX0 + i], dx->d, oc_numel(dx) * sizeof(double));
        a.dx[i] = which[i] ? r->ref[OC_DX0 + i] : NULL;
    }
    r->e->bwd(&a);
    if (r->e->absref) {
        struct oc_ref b;
        double *xb[3];
        ref_args(r, &b, xb, true);
        double *dy = abs_copy(&r->t[OC_DY]);
        b.dy = dy;
        for (int i = 0; i < 2; i++) {
            b.saved[i] = a.saved[i];
            b.state[i] = a.state[i];
        }
        for (int i = 0; i < 3; i++) {
            uint64_t n = oc_numel(&r->t[OC_DX0 + i]);
            if (!n)
                continue;
            free(r->absref[OC_DX0 + i]);
            r->absref[OC_DX0 + i] = xcalloc(n, sizeof(double));
            b.dx[i] = which[i] ? r->absref[OC_DX0 + i] : NULL;
        }
        r->e->bwd(&b);
        free(dy);
        for (int i = 0; i < 3; i++)
            free(xb[i]);
    }
}

const char *oc_slot_name(enum oc_slot s)
{
    static const char *const names[OC_NSLOTS] = {
        "x0", "x1", "x2", "y", "saved0", "saved1", "state0", "state1", "dy", "dx0", "dx1",
        "dx2" };
    return s < OC_NSLOTS ? names[s] : "?";
}

void oc_describe(const struct oc_run *r, char *buf, size_t size)
{
    const struct oc_case *c = &r->c;
    const union vka_op_params *p = &r->p;
    int n = snprintf(buf, size, "%s (%u,%u,%u,%u)", vka_ops[r->op].name, c->n, c->c, c->h,
                     c->w);
    char more[160] = "";
    switch (vka_ops[r->op].params) {
    case VKA_PARAMS_conv:
        snprintf(more, sizeof(more), " K%u %ux%u stride %u,%u pad %u,%u out_pad %u,%u", c->k,
                 c->r, c->s, p->conv.stride[0], p->conv.stride[1], p->conv.pad[0],
                 p->conv.pad[1], p->conv.out_pad[0], p->conv.out_pad[1]);
        break;
    case VKA_PARAMS_norm:
        snprintf(more, sizeof(more), " groups %u eps %g %s%s", p->norm.groups, p->norm.eps,
                 p->norm.training ? "training" : "eval",
                 p->norm.act == VKA_NORM_ACT_RELU         ? " + relu"
                 : p->norm.act == VKA_NORM_ACT_LEAKY_RELU ? " + leaky_relu"
                                                          : "");
        break;
    case VKA_PARAMS_pool:
        snprintf(more, sizeof(more), " k %u stride %u pad %u", p->pool.k, p->pool.stride,
                 p->pool.pad);
        break;
    case VKA_PARAMS_resize:
        snprintf(more, sizeof(more), " -> %ux%u", p->resize.oh, p->resize.ow);
        break;
    case VKA_PARAMS_loss:
        snprintf(more, sizeof(more), " ignore %d%s%s target %g", p->loss.ignore_index,
                 p->loss.hinge_linear ? " linear" : "",
                 r->t[OC_X1].kind == OC_NONE ? " constant" : "", p->loss.target);
        break;
    case VKA_PARAMS_slope:
        snprintf(more, sizeof(more), " slope %g", p->slope);
        break;
    case VKA_PARAMS_alpha:
        snprintf(more, sizeof(more), " alpha %g", p->alpha);
        break;
    case VKA_PARAMS_none:
        if (c->k) /* linear's outputs, concat's x1 channels */
            snprintf(more, sizeof(more), " K%u", c->k);
        break;
    }
    if (n > 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n, "%s%s%s%s", more,
                 c->f & (OC_NO_X1 | OC_NO_X2) ? " (without x1/x2)" : "",
                 c->f & OC_NO_STATE ? " (no state)" : "", c->f & OC_TIES ? " ties" : "");
}

void oc_tol_abs_rel(const struct oc_run *r, enum oc_slot s, double *tol)
{
    const bool bwd = s >= OC_DX0;
    const double *want = r->ref[s];
    for (uint64_t i = 0; i < oc_numel(&r->t[s]); i++)
        tol[i] = r->e->atol[bwd] + r->e->rtol[bwd] * fabs(want[i]);
}

static uint64_t numel_of(const struct oc_ref *a, enum oc_slot s)
{
    return oc_numel(&a->r->t[s]);
}

static double max_abs(const double *a, uint64_t n)
{
    double m = 0;
    for (uint64_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i]));
    return m;
}

/* Values with lo <= |v| <= hi and random sign: away from a kink at 0. */
static void away0(struct oc_tensor *t, float lo, float hi)
{
    for (uint64_t i = 0; i < oc_numel(t); i++)
        t->f[i] = oc_uniform(lo, hi) * (oc_u64() & 1 ? 1.0f : -1.0f);
}

/* ---- act: relu, leaky_relu, tanh, sigmoid, scale, add, mul, concat ---------------------
 * Inputs in [-4, 4]; the unary ops also get values of magnitude 20..95, where tanh and
 * sigmoid saturate and exp overflows. Tolerances are abs + rel * |want| (want: the
 * reference, for dx the initial value plus the gradient). */

/* tanh and sigmoid on lavapipe, measured on 2^20 points of [-12, 12] (saturated beyond):
 * tanh errs by at most 1.45e-7 absolute and 5.7e-7 relative (near |x| = 1/8, where the
 * kernel switches from its series to the builtin), sigmoid by 1.1e-7 absolute; the
 * bounds leave 2x */
#define TANH_ABS 3e-7
#define TANH_REL 1.2e-6
#define SIGMOID_ABS 2.5e-7

/* x0 (N, C, H, W) */
static void unary_slots(struct oc_run *r)
{
    const struct oc_case *c = &r->c;
    struct oc_tensor *x = &r->t[OC_X0];
    set(x, OC_ACT, c->n, c->c, c->h, c->w);
    x->lo = r->gen == OC_GEN_FD ? -2 : -4, x->hi = -x->lo, x->grad = true;
}

/* x0 and x1 (N, C, H, W) */
static void binary_slots(struct oc_run *r)
{
    unary_slots(r);
    r->t[OC_X1] = r->t[OC_X0];
}

/* x0 (N, C, H, W) and x1 (N, K, H, W) */
static void concat_slots(struct oc_run *r)
{
    binary_slots(r);
    r->t[OC_X1].c = r->c.k;
}

/* A slope in [0.01, 0.3], an alpha in [-3, 3] unless the case has one; unary ops also
 * get magnitudes of 20..95, and keep 0.1 from their kinks at 0 for finite differences. */
static void act_gen(struct oc_run *r)
{
    struct oc_tensor *x = &r->t[OC_X0];
    if (vka_ops[r->op].params == VKA_PARAMS_slope && r->p.slope == 0)
        r->p.slope = oc_uniform(0.01f, 0.3f);
    if (vka_ops[r->op].params == VKA_PARAMS_alpha && r->p.alpha == 0)
        r->p.alpha = oc_uniform(-3, 3);
    if (r->t[OC_X1].kind != OC_NONE)
        return;
    if (r->gen == OC_GEN_FD) {
        away0(x, 0.1f, 4.0f); /* 1e5 steps of 1e-6 from the kink */
        return;
    }
    if (r->gen == OC_GEN_CHECK)
        for (uint64_t i = 5; i < oc_numel(x); i += 11)
            x->f[i] = oc_uniform(20, 95) * (i % 2 ? 1.0f : -1.0f);
}

static void act_rand(struct oc_run *r)
{
    struct oc_case *c = &r->c;
    c->n = oc_range(1, 5);
    c->c = oc_range(1, 24);
    c->h = oc_range(1, 9);
    c->w = oc_range(1, 9);
    c->k = oc_range(1, 24);
}

#define ACT_N(a) ((int)numel_of(a, OC_X0))

static void relu_fwd(const struct oc_ref *a) { ref_relu_fwd(ACT_N(a), a->x[0], a->y); }
static void relu_bwd(const struct oc_ref *a) { ref_relu_bwd(ACT_N(a), a->x[0], a->dy, a->dx[0]); }
static void leaky_relu_fwd(const struct oc_ref *a)
{
    ref_leaky_relu_fwd(ACT_N(a), a->r->p.slope, a->x[0], a->y);
}
static void leaky_relu_bwd(const struct oc_ref *a)
{
    ref_leaky_relu_bwd(ACT_N(a), a->r->p.slope, a->x[0], a->dy, a->dx[0]);
}
static void tanh_fwd(const struct oc_ref *a) { ref_tanh_fwd(ACT_N(a), a->x[0], a->y); }
static void tanh_bwd(const struct oc_ref *a) { ref_tanh_bwd(ACT_N(a), a->x[0], a->dy, a->dx[0]); }
static void sigmoid_fwd(const struct oc_ref *a) { ref_sigmoid_fwd(ACT_N(a), a->x[0], a->y); }
static void sigmoid_bwd(const struct oc_ref *a)
{
    ref_sigmoid_bwd(ACT_N(a), a->x[0], a->dy, a->dx[0]);
}
static void scale_fwd(const struct oc_ref *a)
{
    ref_scale_fwd(ACT_N(a), a->r->p.alpha, a->x[0], a->y);
}
static void scale_bwd(const struct oc_ref *a)
{
    ref_scale_bwd(ACT_N(a), a->r->p.alpha, a->dy, a->dx[0]);
}
static void add_fwd(const struct oc_ref *a) { ref_add_fwd(ACT_N(a), a->x[0], a->x[1], a->y); }
static void add_bwd(const struct oc_ref *a) { ref_add_bwd(ACT_N(a), a->dy, a->dx[0], a->dx[1]); }
static void mul_fwd(const struct oc_ref *a) { ref_mul_fwd(ACT_N(a), a->x[0], a->x[1], a->y); }
static void mul_bwd(const struct oc_ref *a)
{
    ref_mul_bwd(ACT_N(a), a->x[0], a->x[1], a->dy, a->dx[0], a->dx[1]);
}

static void concat_fwd(const struct oc_ref *a)
{
    const struct oc_case *c = &a->r->c;
    ref_concat_fwd((int)c->n, (int)c->c, (int)c->k, (int)c->h, (int)c->w, a->x[0], a->x[1],
                   a->y);
}

static void concat_bwd(const struct oc_ref *a)
{
    const struct oc_case *c = &a->r->c;
    ref_concat_bwd((int)c->n, (int)c->c, (int)c->k, (int)c->h, (int)c->w, a->dy, a->dx[0],
                   a->dx[1]);
}

/* (N, C, H, W): batch 1 and 5, 1x1 spatial, odd sizes, C not a multiple of 4; some cases
 * leave dx0 or dx1 out (the unary ops have no dx1) */
static const struct oc_case act_cases[] = {
    { 1, 1, 1, 1, .f = OC_TS },
    { 5, 3, 1, 1, .f = OC_TS | OC_NO_DX0 },
    { 1, 5, 3, 7, .f = OC_TS },
    { 5, 7, 2, 3, .f = OC_TS | OC_NO_DX1 },
    { 1, 13, 5, 5, .f = OC_TS },
    { 5, 4, 3, 1, .f = OC_TS | OC_NO_DX0 },
    { 2, 1, 9, 11, .f = OC_TS },
    { 1, 8, 6, 5, .f = OC_TS | OC_NO_DX1 },
    { .f = OC_TS | OC_RANDOM },
    /* bindings of 4 KiB: 969 pixels of 16 floats take 17 chunks */
    { 3, 13, 17, 19, .f = OC_TS | OC_CHUNKED, .chunk = 4096 },
    { 8, 5, 3, 4, .f = OC_TS | OC_SPLIT },
    { 2, 5, 7, 6, .f = OC_TS | OC_PARITY },
    { 1, 35, 1, 1, .f = OC_FD },
};

/* concat (C1 = c, C2 = k): every pair of residues mod 4 and both orders, on the shapes
 * above; the gradients cycle through all, no dx0, no dx1, and shapes from dx0/dx1 */
static const struct oc_case concat_cases[] = {
    { 1, 1, 1, 1, 1, .f = OC_TS },
    { 5, 1, 1, 1, 3, .f = OC_TS | OC_NO_DX0 },
    { 1, 3, 3, 7, 1, .f = OC_TS | OC_NO_DX1 },
    { 5, 2, 2, 3, 2, .f = OC_TS | OC_BWD_NO_X },
    { 1, 4, 5, 5, 4, .f = OC_TS },
    { 5, 4, 3, 1, 5, .f = OC_TS | OC_NO_DX0 },
    { 2, 5, 9, 11, 4, .f = OC_TS | OC_NO_DX1 },
    { 1, 3, 6, 5, 5, .f = OC_TS | OC_BWD_NO_X },
    { 1, 7, 1, 1, 13, .f = OC_TS },
    { 5, 13, 1, 1, 6, .f = OC_TS | OC_NO_DX0 },
    { 1, 8, 3, 7, 1, .f = OC_TS | OC_NO_DX1 },
    { 5, 1, 2, 3, 8, .f = OC_TS | OC_BWD_NO_X },
    { 1, 5, 5, 5, 7, .f = OC_TS },
    { 5, 6, 3, 1, 6, .f = OC_TS | OC_NO_DX0 },
    { 2, 2, 9, 11, 11, .f = OC_TS | OC_NO_DX1 },
    { 1, 12, 6, 5, 3, .f = OC_TS | OC_BWD_NO_X },
    { .f = OC_TS | OC_RANDOM },
    /* y (3,18,17,19) in 4 KiB bindings: 21 chunks */
    { 3, 5, 17, 19, 13, .f = OC_TS | OC_CHUNKED, .chunk = 4096 },
    { 8, 5, 3, 4, 7, .f = OC_TS | OC_SPLIT },
    { 2, 3, 5, 6, 6, .f = OC_TS | OC_PARITY },
    { 2, 2, 3, 5, 3, .f = OC_FD },
};

#define CASES(list) list, sizeof(list) / sizeof(list[0])
#define ACT(name, list, slots, fa, fr, ba, br, fd0, fd1)                                  \
    { VKA_OP_##name, CASES(list), slots, act_gen, act_rand, name##_fwd, name##_bwd,       \
      NULL, oc_tol_abs_rel, { fa, ba }, { fr, br }, false, true, { fd0, fd1, OC_FD_NONE } }

/* ---- conv: conv2d, conv_transpose2d, linear ----------------------------------------------
 * Inputs, weights, biases, dy in [-1, 1]. Tolerance: f32 accumulation of L products errs
 * by at most about L unit roundoffs of the sum of the products' magnitudes (absref: the
 * same op on |inputs| and |dy|); the result is then added into its accumulator in
 * `adds` steps (1 for y and dx; one per sample for dw and db, which reach it in sample
 * order), each rounding at a magnitude below |initial value| + absref:
 *   tol = (L + 2) u absref + adds u (|init| + absref),  u = 2^-24,
 * with L = C*R*S for y, K*R*S for dx and N*P*Q for dw, db. */

static void conv_slots(struct oc_run *r)
{
    const struct oc_case *c = &r->c;
    struct oc_tensor *x = r->t;
    bool linear = r->op == VKA_OP_linear;
    set(&x[OC_X0], OC_ACT, c->n, c->c, linear ? 1 : c->h, linear ? 1 : c->w);
    if (r->op == VKA_OP_conv_transpose2d)
        set(&x[OC_X1], OC_WEIGHT, c->c, c->k, c->r, c->s);
    else
        set(&x[OC_X1], OC_WEIGHT, c->k, c->c, linear ? 1 : c->r, linear ? 1 : c->s);
    if (!(c->f & OC_NO_X2))
        set(&x[OC_X2], OC_FLAT, c->k, 1, 1, 1);
    x[OC_X0].grad = x[OC_X1].grad = x[OC_X2].grad = true;
}

static struct ref_conv conv_of(const struct oc_run *r)
{
    const struct oc_case *c = &r->c;
    const struct vka_conv_desc *d = &r->p.conv;
    return (struct ref_conv){ (int)c->n, (int)c->c, (int)c->h, (int)c->w, (int)c->k,
                              (int)c->r, (int)c->s, (int)d->stride[0], (int)d->stride[1],
                              (int)d->pad[0], (int)d->pad[1], (int)d->out_pad[0],
                              (int)d->out_pad[1] };
}

static void conv2d_fwd(const struct oc_ref *a)
{
    struct ref_conv p = conv_of(a->r);
    ref_conv2d_fwd(&p, a->x[0], a->x[1], a->x[2], a->y);
}

static void conv2d_bwd(const struct oc_ref *a)
{
    struct ref_conv p = conv_of(a->r);
    ref_conv2d_bwd(&p, a->x[0], a->x[1], a->dy, a->dx[0], a->dx[1], a->dx[2]);
}

static void conv_transpose2d_fwd(const struct oc_ref *a)
{
    struct ref_conv p = conv_of(a->r);
    ref_conv_transpose2d_fwd(&p, a->x[0], a->x[1], a->x[2], a->y);
}

static void conv_transpose2d_bwd(const struct oc_ref *a)
{
    struct ref_conv p = conv_of(a->r);
    ref_conv_transpose2d_bwd(&p, a->x[0], a->x[1], a->dy, a->dx[0], a->dx[1], a->dx[2]);
}

static void linear_fwd(const struct oc_ref *a)
{
    struct ref_linear p = { (int)a->r->c.n, (int)a->r->c.c, (int)a->r->c.k };
    ref_linear_fwd(&p, a->x[0], a->x[1], a->x[2], a->y);
}

static void linear_bwd(const struct oc_ref *a)
{
    struct ref_linear p = { (int)a->r->c.n, (int)a->r->c.c, (int)a->r->c.k };
    ref_linear_bwd(&p, a->x[0], a->x[1], a->dy, a->dx[0], a->dx[1], a->dx[2]);
}

/* |t|'s values, malloc'ed */
static double *abs_of(const struct oc_tensor *t)
{
    uint64_t n = oc_numel(t);
    double *a = xcalloc(n, sizeof(double));
    for (uint64_t i = 0; i < n; i++)
        a[i] = fabs(t->d[i]);
    return a;
}

/* The magnitudes Winograd F(t x t, 3x3) computes y (s = OC_Y: x, w, bias) or dx (OC_DX0:
 * dy and the kernel rotated and transposed, padded by 2 - pad) through, into m. */
static void conv_wino_abs(const struct oc_run *r, enum oc_slot s, int t, double *m)
{
    const struct oc_case *c = &r->c;
    const struct vka_conv_desc *d = &r->p.conv;
    bool y = s == OC_Y;
    const struct oc_tensor *src = &r->t[y ? OC_X0 : OC_DY];
    double *a = abs_of(src), *w = xcalloc((uint64_t)c->k * c->c * 9, sizeof(double));
    /* PyTorch's (K, C, 3, 3); dx's kernel is (C, K, 3, 3) with w'[c,k,r,s] = w[k,c,2-r,2-s] */
    const double *w0 = r->t[OC_X1].d;
    for (uint32_t k = 0; k < c->k; k++)
        for (uint32_t ci = 0; ci < c->c; ci++)
            for (int t = 0; t < 9; t++)
                w[y ? (k * c->c + ci) * 9 + t : (ci * c->k + k) * 9 + 8 - t] =
                    fabs(w0[(k * c->c + ci) * 9 + t]);
    struct ref_conv p = { (int)src->n, (int)src->c, (int)src->h, (int)src->w,
                          (int)(y ? c->k : c->c), 3, 3, 1, 1,
                          (int)(y ? d->pad[0] : 2 - d->pad[0]),
                          (int)(y ? d->pad[1] : 2 - d->pad[1]), 0, 0 };
    ref_conv2d_wino_abs(&p, t, a, w, m);
    const double *b = y && r->t[OC_X2].d ? r->t[OC_X2].d : NULL;
    if (b) {
        uint64_t pq = (uint64_t)r->t[OC_Y].h * r->t[OC_Y].w;
        for (uint64_t i = 0; i < oc_numel(&r->t[OC_Y]); i++)
            m[i] += fabs(b[i / pq % c->k]);
    }
    free(a);
    free(w);
}

/* dw's magnitudes through Winograd F(3x3, t x t), into m (PyTorch's (K, C, 3, 3)) */
static void conv_wino_dw_abs(const struct oc_run *r, int t, double *m)
{
    const struct oc_case *c = &r->c;
    const struct oc_tensor *x = &r->t[OC_X0], *dy = &r->t[OC_DY];
    double *ax = abs_of(x), *ay = abs_of(dy);
    struct ref_conv p = { (int)x->n, (int)x->c, (int)x->h, (int)x->w, (int)c->k, 3, 3, 1, 1,
                          (int)r->p.conv.pad[0], (int)r->p.conv.pad[1], 0, 0 };
    ref_conv2d_wino_dw_abs(&p, t, ax, ay, m);
    free(ax);
    free(ay);
}

static void conv_tol(const struct oc_run *r, enum oc_slot s, double *tol)
{
    const struct oc_case *c = &r->c;
    const struct oc_tensor *y = &r->t[OC_Y];
    double rs = r->op == VKA_OP_linear ? 1 : (double)c->r * c->s, L = 0, adds = 1;
    if (s == OC_Y)
        L = c->c * rs;
    else if (s == OC_DX0)
        L = c->k * rs;
    else if (s == OC_DX1 || s == OC_DX2)
        L = (double)y->n * y->h * y->w, adds = y->n;
    const float *init = s >= OC_DX0 ? r->t[s].f : NULL;
    const double *absref = r->absref[s];
    double *wabs = NULL;
    int t = r->op == VKA_OP_conv2d && (s == OC_Y || s == OC_DX0 || s == OC_DX1)
                ? (int)vka_conv2d_winograd_tile(&r->p.conv, c->c, c->k, c->r, c->s, c->h, c->w,
                                                s != OC_Y)
                : 0;
    if (t) {
        /* Winograd F(t x t, 3x3) (whether or not the device took it: its magnitudes hold
         * every term of the direct sum's, and its depth passes the direct chain's), with
         * the roundings shaders/winograd.comp's transforms take along any one term's path
         * (a rounded constant 1/6 or 1/24 counts as one). y, dx: the chain of L / 9
         * channel products, 1 for the product and 1 for the bias, and in the filter,
         * input and output transforms 4, 2 and 4 (t = 2) or 8, 4 and 6 (t = 4). dw: a
         * sample's chain of tiles (ceil(P/t) x ceil(Q/t)), 1 for the product, and in the
         * input, dy and inverse transforms 2, 2 and 4 (t = 2) or 4, 4 and 10 (t = 4). */
        wabs = xcalloc(oc_numel(&r->t[s]), sizeof(double));
        if (s == OC_DX1) {
            conv_wino_dw_abs(r, t, wabs);
            L = (double)((y->h + t - 1) / t) * ((y->w + t - 1) / t) + (t == 4 ? 19 : 9);
        } else {
            conv_wino_abs(r, s, t, wabs);
            L = L / rs + (t == 4 ? 20 : 12) - 2;
        }
        absref = wabs;
    }
    for (uint64_t i = 0; i < oc_numel(&r->t[s]); i++)
        tol[i] = (L + 2) * U * absref[i] + adds * U * (fabs(init ? init[i] : 0.0) + absref[i]) +
                 1e-30;
    free(wabs);
}

/* Shapes of every kernel path: odd kernels and strides, 1x1 spatial, padding past half
 * the kernel, K >= 128 channels (several vec4 blocks), DCGAN's 4x4/2 layers. The storage
 * path is slow on lavapipe: every other shape. OC_TILED alone: weight tiles past 32
 * channels (the last one partial), output-channel blocks past the last one of a
 * workgroup, batch 1 and 5. */
#define CONV(n, c, h, w, k, r, s, sh, sw, ph, pw, fl)                                      \
    { n, c, h, w, k, r, s, .p.conv = { { sh, sw }, { ph, pw }, { 0, 0 } }, .f = fl }
#define CONVT(n, c, h, w, k, r, s, sh, sw, ph, pw, oph, opw, fl)                           \
    { n, c, h, w, k, r, s, .p.conv = { { sh, sw }, { ph, pw }, { oph, opw } }, .f = fl }
#define ALL3 (OC_TS | OC_TILED)
#define TT (OC_TEXEL | OC_TILED)
/* images past one 4096-pixel chunk of dw, outputs in several 64 KiB bindings (texel
 * loads: storage inputs are bound whole, so they would pass the lowered range) */
#define LARGE (OC_TEXEL | OC_TEXEL_CHUNKED), .chunk = 65536
/* the same in 256 KiB bindings: a 64 x 64 channel 3x3 weight (147 KiB) fits one */
#define LARGE256 (OC_TEXEL | OC_TEXEL_CHUNKED), .chunk = 262144

static const struct oc_case conv2d_cases[] = {
    CONV(2, 3, 5, 7, 4, 3, 3, 1, 1, 1, 1, ALL3),
    CONV(1, 5, 1, 1, 7, 1, 1, 1, 1, 0, 0, TT),
    CONV(5, 13, 9, 6, 6, 3, 2, 2, 1, 1, 0, ALL3 | OC_NO_X2),
    CONV(2, 8, 8, 8, 16, 4, 4, 2, 2, 1, 1, TT | OC_NO_X2),
    CONV(1, 1, 11, 3, 1, 3, 3, 1, 1, 2, 2, ALL3),
    CONV(3, 7, 6, 5, 70, 3, 3, 1, 1, 1, 1, TT),
    CONV(5, 37, 5, 3, 70, 3, 3, 1, 1, 1, 1, OC_TILED),
    CONV(1, 33, 7, 6, 41, 3, 3, 2, 2, 1, 1, OC_TILED | OC_NO_X2),
    CONV(8, 5, 9, 7, 6, 3, 3, 1, 1, 1, 1, OC_TEXEL | OC_SPLIT),
    CONV(2, 4, 70, 70, 8, 3, 3, 1, 1, 1, 1, LARGE),
    CONV(1, 4, 33, 41, 4, 3, 3, 2, 2, 1, 1, LARGE),
    CONV(2, 3, 9, 7, 5, 3, 3, 2, 2, 1, 1, OC_TS | OC_PARITY),
    CONV(3, 5, 6, 5, 7, 3, 2, 1, 2, 1, 0, OC_TS | OC_PARITY | OC_NO_X2),
    CONV(2, 3, 5, 7, 4, 3, 3, 2, 2, 1, 1, OC_FD),
    CONV(1, 2, 6, 5, 3, 2, 3, 1, 2, 0, 1, OC_FD | OC_NO_X2),
    /* down to one pixel (DCGAN's last layer) and to one row: the input gradient's
     * scatter from that row runs one tap per parity class */
    CONV(3, 6, 4, 4, 1, 4, 4, 1, 1, 0, 0, ALL3),
    CONV(2, 5, 3, 6, 36, 3, 2, 2, 1, 0, 0, TT),
    /* Winograd F(2x2, 3x3) (3x3, stride 1, 64 channels and 256 pixels and more): odd
     * sizes end in partial tiles, paddings 0 and 2; in 256 KiB bindings, tiles in chunks
     * that start inside a tile row and the transformed filter in two dispatches */
    CONV(2, 64, 17, 19, 68, 3, 3, 1, 1, 1, 1, ALL3),
    CONV(1, 66, 16, 17, 64, 3, 3, 1, 1, 0, 2, TT | OC_NO_X2),
    CONV(2, 64, 23, 21, 64, 3, 3, 1, 1, 1, 1, LARGE256),
    CONV(8, 64, 16, 16, 64, 3, 3, 1, 1, 1, 1, OC_TEXEL | OC_SPLIT),
    /* Winograd F(4x4, 3x3) for dx and dw (4096 pixels and more): partial tiles both ways,
     * chunks and the filter's 36 positions in three dispatches in 256 KiB bindings;
     * paddings 0 and 2 */
    CONV(1, 64, 66, 63, 64, 3, 3, 1, 1, 1, 1, LARGE256),
    CONV(1, 64, 64, 65, 68, 3, 3, 1, 1, 0, 2, OC_TEXEL | OC_NO_X2),
    /* dw's per-sample partials (2 chunks of 4900 pixels, 72 KiB a sample) past the
     * 256 KiB bindings: samples in groups of 3 and 2, the chunked run's bits those of
     * the unchunked one's single group */
    CONV(5, 32, 70, 70, 32, 3, 3, 1, 1, 1, 1, LARGE256),
};

static const struct oc_case conv_transpose2d_cases[] = {
    CONVT(2, 6, 4, 5, 3, 2, 2, 2, 2, 0, 0, 0, 0, ALL3),
    CONVT(1, 8, 4, 4, 4, 4, 4, 2, 2, 1, 1, 0, 0, TT | OC_NO_X2),
    CONVT(3, 5, 3, 5, 7, 3, 3, 2, 2, 1, 1, 1, 1, ALL3),
    CONVT(5, 3, 1, 1, 9, 4, 4, 1, 1, 0, 0, 0, 0, TT),
    CONVT(1, 37, 3, 3, 9, 4, 4, 2, 2, 1, 1, 0, 0, OC_TILED),
    CONVT(5, 10, 2, 3, 35, 3, 3, 2, 1, 1, 0, 1, 0, OC_TILED | OC_NO_X2),
    CONVT(8, 6, 4, 5, 3, 2, 2, 2, 2, 0, 0, 0, 0, OC_TEXEL | OC_SPLIT),
    CONVT(2, 4, 21, 23, 4, 3, 3, 2, 2, 1, 1, 1, 0, LARGE),
    CONVT(2, 5, 4, 5, 3, 3, 3, 2, 2, 1, 1, 1, 1, OC_TS | OC_PARITY),
    CONVT(3, 6, 3, 3, 5, 4, 4, 2, 2, 1, 1, 0, 0, OC_TS | OC_PARITY | OC_NO_X2),
    CONVT(2, 3, 5, 4, 2, 3, 3, 2, 2, 1, 1, 1, 1, OC_FD),
    CONVT(1, 2, 3, 4, 3, 2, 3, 3, 2, 0, 1, 2, 0, OC_FD | OC_NO_X2),
    /* 1x1 in (one tap per parity class, all classes in one dispatch untiled), DCGAN's
     * first layer, and one input row with padded columns: rows take the one-tap
     * classes, columns do not */
    CONVT(2, 40, 1, 1, 6, 4, 4, 1, 1, 0, 0, 0, 0, ALL3),
    CONVT(3, 100, 1, 1, 20, 4, 4, 1, 1, 0, 0, 0, 0, TT),
    CONVT(2, 33, 1, 3, 5, 3, 2, 2, 2, 0, 1, 0, 1, TT),
    /* dw's per-sample partials (2 chunks of 4356 input pixels, 128 KiB a sample) in
     * 256 KiB bindings: one sample a group */
    CONVT(3, 64, 66, 66, 64, 2, 2, 2, 2, 0, 0, 0, 0, LARGE256),
};

/* linear: (N, in) -> (N, out = k) */
static const struct oc_case linear_cases[] = {
    { 5, 13, 1, 1, 7, .f = ALL3 },
    { 1, 3, 1, 1, 1, .f = TT },
    { 4, 130, 1, 1, 129, .f = ALL3 | OC_NO_X2 },
    { 1, 65, 1, 1, 19, .f = OC_TILED },
    { 8, 13, 1, 1, 7, .f = OC_TEXEL | OC_SPLIT },
    { 3, 13, 1, 1, 7, .f = OC_TS | OC_PARITY },
    { 5, 7, 1, 1, 3, .f = OC_FD },
};

/* y is linear in x, in w and in b separately: finite differences are exact but for
 * rounding */
#define CONV_ENTRY(name)                                                                  \
    { VKA_OP_##name, CASES(name##_cases), conv_slots, NULL, NULL, name##_fwd, name##_bwd,  \
      NULL, conv_tol, { 0, 0 }, { 0, 0 }, true, true, { OC_FD_LIN, OC_FD_LIN, OC_FD_LIN } }

/* ---- norm: batch_norm, group_norm ------------------------------------------------------
 * x has a per-channel offset and scale (so the mean matters), gamma alternates in sign.
 *
 * Tolerances. Every statistic is a float sum over L values: L = N*H*W per channel for
 * batch_norm, C/G*H*W per (sample, group) for group_norm; dgamma/dbeta sum N*H*W values
 * for both. No value passes through more than d = L/64 + Cg + 10 additions on its way
 * into a sum (an invocation adds at most L/WG of a block's pixels in sequence, WG >= 64,
 * then a tree of log2(WG) levels, the blocks and the Cg channels of a group in sequence;
 * dgamma/dbeta: + N for the samples), so a sum is off by at most d * u * sum |terms|,
 * u = 2^-24. Each bound below derives from that; measured errors sit 5x (invstd, running
 * var: a few roundings, no long sum) to 1000x under them (OPCHECK_REPORT=1 prints the
 * worst error / bound of every check). bwd is checked with the statistics fwd wrote (the
 * kernel's, rounded to float) on both sides. */

#define NORM_EPS 1e-5f
#define NORM_MOMENTUM 0.1f

static void norm_slots(struct oc_run *r)
{
    const struct oc_case *c = &r->c;
    struct oc_tensor *x = r->t;
    set(&x[OC_X0], OC_ACT, c->n, c->c, c->h, c->w);
    set(&x[OC_X1], OC_FLAT, c->c, 1, 1, 1);
    set(&x[OC_X2], OC_FLAT, c->c, 1, 1, 1);
    x[OC_X0].lo = -2, x[OC_X0].hi = 3;
    x[OC_X1].lo = 0.5f, x[OC_X1].hi = 1.5f;
    x[OC_X0].grad = x[OC_X1].grad = x[OC_X2].grad = true;
    /* without affine parameters the gradients may still be asked for */
    x[OC_X1].absent = c->f & OC_NO_X1;
    x[OC_X2].absent = c->f & OC_NO_X2;
    if (r->op == VKA_OP_batch_norm && !(c->f & OC_NO_STATE)) {
        set(&x[OC_STATE0], OC_FLAT, c->c, 1, 1, 1);
        set(&x[OC_STATE1], OC_FLAT, c->c, 1, 1, 1);
        x[OC_STATE1].lo = 0.5f, x[OC_STATE1].hi = 2;
    }
}

static void norm_gen(struct oc_run *r)
{
    const struct oc_case *c = &r->c;
    if (r->p.norm.eps == 0)
        r->p.norm.eps = NORM_EPS;
    if (r->op == VKA_OP_batch_norm && r->p.norm.momentum == 0)
        r->p.norm.momentum = NORM_MOMENTUM;
    if (r->gen == OC_GEN_FD)
        return;
    size_t hw = (size_t)c->h * c->w;
    float *x = r->t[OC_X0].f, *gamma = r->t[OC_X1].f;
    for (uint32_t ch = 0; ch < c->c; ch++) {
        float o = oc_uniform(-3, 3), k = oc_uniform(0.5f, 2);
        for (uint32_t n = 0; n < c->n; n++)
            for (size_t i = 0; i < hw; i++)
                x[((size_t)n * c->c + ch) * hw + i] = o + k * oc_uniform(-2, 2);
    }
    for (uint32_t ch = 0; ch < c->c; ch += 2)
        gamma[ch] = -gamma[ch];
}

static void norm_rand(struct oc_run *r)
{
    static const uint32_t cs[] = { 1, 3, 5, 6, 7, 8, 12, 13 };
    struct oc_case *c = &r->c;
    c->n = oc_range(1, 5);
    c->c = cs[oc_range(0, 7)];
    c->h = oc_range(1, 15);
    c->w = oc_range(1, 15);
    if (r->op == VKA_OP_group_norm) {
        do
            c->p.norm.groups = oc_range(1, c->c);
        while (c->c % c->p.norm.groups);
    } else if (c->p.norm.training && (uint64_t)c->n * c->h * c->w < 2) {
        c->h = 2; /* batch_norm's training needs two values per channel */
    }
}

static struct ref_bn bn_of(const struct oc_run *r)
{
    const struct oc_case *c = &r->c;
    return (struct ref_bn){ (int)c->n, (int)c->c, (int)c->h, (int)c->w, r->p.norm.eps,
                            r->p.norm.momentum };
}

static struct ref_gn gn_of(const struct oc_run *r)
{
    const struct oc_case *c = &r->c;
    return (struct ref_gn){ (int)c->n, (int)c->c, (int)c->h, (int)c->w,
                            (int)r->p.norm.groups, r->p.norm.eps };
}

/* eval mode: the kernels add eps to the running variance in float */
static double *eval_var(const struct oc_ref *a)
{
    uint32_t C = a->r->c.c;
    double *v = xcalloc(C, sizeof(double));
    float eps = a->r->p.norm.eps;
    for (uint32_t c = 0; c < C; c++)
        v[c] = (double)((float)a->state[1][c] + eps) - eps;
    return v;
}

/* A norm's activation (p.norm.act): y = act(z) over the normalised z, in place. */
static void norm_act_fwd(const struct oc_ref *a)
{
    const struct vka_norm_desc *d = &a->r->p.norm;
    int n = (int)oc_numel(&a->r->t[OC_Y]);
    if (d->act == VKA_NORM_ACT_RELU)
        ref_relu_fwd(n, a->y, a->y);
    else if (d->act == VKA_NORM_ACT_LEAKY_RELU)
        ref_leaky_relu_fwd(n, d->slope, a->y, a->y);
}

/* dy through the activation, masked by the y bwd is given (opcheck: the kernel's, so a z
 * within rounding of 0 falls on the same side in both; y > 0 exactly where z > 0): a
 * copy to free, or dy itself. */
static const double *norm_act_dy(const struct oc_ref *a, double **copy)
{
    const struct vka_norm_desc *d = &a->r->p.norm;
    int n = (int)oc_numel(&a->r->t[OC_Y]);
    *copy = NULL;
    if (d->act == VKA_NORM_ACT_NONE)
        return a->dy;
    *copy = xcalloc((size_t)n + 1, sizeof(double));
    if (d->act == VKA_NORM_ACT_RELU)
        ref_relu_bwd(n, a->y, a->dy, *copy);
    else
        ref_leaky_relu_bwd(n, d->slope, a->y, a->dy, *copy);
    return *copy;
}

static void batch_norm_fwd(const struct oc_ref *a)
{
    struct ref_bn p = bn_of(a->r);
    if (a->r->p.norm.training) {
        ref_batch_norm_fwd_train(&p, a->x[0], a->x[1], a->x[2], a->state[0], a->state[1],
                                 a->saved[0], a->saved[1], a->y);
    } else {
        double *var = eval_var(a);
        ref_batch_norm_fwd_eval(&p, a->x[0], a->x[1], a->x[2], a->state[0], var, a->y);
        free(var);
    }
    norm_act_fwd(a);
}

static void batch_norm_bwd(const struct oc_ref *a)
{
    struct ref_bn p = bn_of(a->r);
    double *copy;
    const double *dy = norm_act_dy(a, &copy);
    if (a->r->p.norm.training) {
        ref_batch_norm_bwd(&p, a->x[0], a->x[1], a->saved[0], a->saved[1], dy, a->dx[0],
                           a->dx[1], a->dx[2]);
    } else {
        double *var = eval_var(a);
        ref_batch_norm_bwd_eval(&p, a->x[0], a->x[1], a->state[0], var, dy, a->dx[0],
                                a->dx[1], a->dx[2]);
        free(var);
    }
    free(copy);
}

static void group_norm_fwd(const struct oc_ref *a)
{
    struct ref_gn p = gn_of(a->r);
    ref_group_norm_fwd(&p, a->x[0], a->x[1], a->x[2], a->saved[0], a->saved[1], a->y);
    norm_act_fwd(a);
}

static void group_norm_bwd(const struct oc_ref *a)
{
    struct ref_gn p = gn_of(a->r);
    double *copy;
    const double *dy = norm_act_dy(a, &copy);
    ref_group_norm_bwd(&p, a->x[0], a->x[1], a->saved[0], a->saved[1], dy, a->dx[0],
                       a->dx[1], a->dx[2]);
    free(copy);
}

static double sum_depth(double L, double Cg)
{
    return ceil(L / 64) + Cg + 10;
}

/* The statistics a run normalised with: mean and invstd per statistic (batch_norm: per
 * channel, group_norm: per (sample, group)), the depth d of their sums, and the
 * statistic of element i. */
struct norm_stats {
    uint64_t n;
    double *mean, *istd;
    double d;
    bool gn;
    uint32_t K, Cg;
};

static struct norm_stats norm_stats_of(const struct oc_run *r, bool bwd)
{
    const struct oc_case *c = &r->c;
    struct norm_stats s = { .gn = r->op == VKA_OP_group_norm };
    double hw = (double)c->h * c->w;
    s.K = s.gn ? r->p.norm.groups : c->c;
    s.Cg = c->c / s.K;
    s.n = s.gn ? (uint64_t)c->n * s.K : c->c;
    s.d = s.gn ? sum_depth(s.Cg * hw, s.Cg) : sum_depth(c->n * hw, 1);
    s.mean = xcalloc(s.n, sizeof(double));
    s.istd = xcalloc(s.n, sizeof(double));
    for (uint64_t i = 0; i < s.n; i++) {
        if (!r->p.norm.training) { /* eval: the running statistics */
            s.mean[i] = r->t[OC_STATE0].d[i];
            s.istd[i] = 1.0 / sqrt((double)((float)r->t[OC_STATE1].d[i] + r->p.norm.eps));
        } else {
            s.mean[i] = (bwd ? r->bsaved[0] : r->ref[OC_SAVED0])[i];
            s.istd[i] = (bwd ? r->bsaved[1] : r->ref[OC_SAVED1])[i];
        }
    }
    return s;
}

static uint64_t stat_at(const struct oc_run *r, const struct norm_stats *s, uint64_t i)
{
    uint64_t hw = (uint64_t)r->c.h * r->c.w, n = i / (hw * r->c.c), c = i / hw % r->c.c;
    return s->gn ? n * s->K + c / s->Cg : c;
}

static void norm_tol(const struct oc_run *r, enum oc_slot slot, double *tol)
{
    const struct oc_case *c = &r->c;
    const uint64_t nx = oc_numel(&r->t[OC_X0]), hw = (uint64_t)c->h * c->w;
    const double *x = r->t[OC_X0].d;
    const double *gamma = r->t[OC_X1].absent ? NULL : r->t[OC_X1].d;
    const bool eval = !r->p.norm.training;
    struct norm_stats s = norm_stats_of(r, slot >= OC_DX0);
    const double xmax = max_abs(x, nx), is = max_abs(s.istd, s.n);
    const double *want = r->ref[slot];
    const uint64_t n = oc_numel(&r->t[slot]);

    if (slot == OC_Y && eval) {
        /* no sums: x - mean, sqrt, division, product with gamma, + beta: 6 roundings of
         * terms up to |x - mean| istd |gamma| + |beta| (running var >= 0.5, |gamma|
         * <= 1.5, |beta|, |mean| <= 1), 7 with a leaky activation's slope * z (which
         * scales the others by slope <= 1) */
        double iv = 1 / sqrt(0.5 + NORM_EPS);
        for (uint64_t i = 0; i < n; i++)
            tol[i] = 8 * U * ((xmax + 1) * iv * 1.5 + 1);
    } else if (slot == OC_Y) {
        /* y = (x - mean) * istd * g + b with the mean off by d u mean|x| and istd by
         * (d/2 + 4) u relative (var's sum of squares, sqrt, division); the affine step
         * rounds 3 times */
        double dev = xmax + max_abs(s.mean, s.n);
        double g = fmax(gamma ? max_abs(gamma, c->c) : 1, 1);
        /* a fused activation is 1-Lipschitz (slope <= 1); the affine step's roundings are
           relative to |z|, which leaky_relu's y holds times slope (|z| <= max|y| / slope),
           plus one rounding of slope * z */
        double zmax = max_abs(want, n);
        bool leaky = r->p.norm.act == VKA_NORM_ACT_LEAKY_RELU;
        if (leaky && r->p.norm.slope > 0)
            zmax /= r->p.norm.slope;
        double t = g * is * (s.d * U * xmax + dev * (s.d / 2 + 4) * U) + (4 + leaky) * U * zmax;
        for (uint64_t i = 0; i < n; i++)
            tol[i] = t;
    } else if (slot == OC_SAVED0) { /* mean: d u mean|x| + u |mean| */
        for (uint64_t i = 0; i < n; i++)
            tol[i] = s.d * U * xmax + U * fabs(want[i]);
    } else if (slot == OC_SAVED1) { /* invstd: (d/2 + 4) u relative */
        for (uint64_t i = 0; i < n; i++)
            tol[i] = (s.d / 2 + 4) * U * want[i];
    } else if (slot == OC_STATE0 || slot == OC_STATE1) {
        /* eval: untouched. Training: (1-m) r + m v: 3 roundings, plus m times the
         * statistic's bound; var's relative bound is 2 (d/2 + 4) u, twice istd's */
        const double m = r->p.norm.momentum, *old = r->t[slot].d;
        for (uint64_t i = 0; i < n; i++) {
            if (eval)
                tol[i] = 0;
            else if (slot == OC_STATE0)
                tol[i] = m * (s.d * U * xmax + U * fabs(s.mean[i])) +
                         3 * U * (fabs(want[i]) + fabs(old[i]));
            else
                tol[i] = 2 * m * (s.d / 2 + 4) * U * fabs(want[i]) +
                         5 * U * (fabs(want[i]) + fabs(old[i]));
        }
    } else {
        /* sums of |dy xhat| and |dy| per channel, and the scales of dx's terms */
        const double *dy = r->t[OC_DY].d;
        double *sxh = xcalloc(c->c, sizeof(double)), *sdy = xcalloc(c->c, sizeof(double));
        double gdy = 0, xh = 0;
        for (uint64_t i = 0; i < nx; i++) {
            uint64_t ch = i / hw % c->c, st = stat_at(r, &s, i);
            double v = (x[i] - s.mean[st]) * s.istd[st];
            sxh[ch] += fabs(dy[i] * v);
            sdy[ch] += fabs(dy[i]);
            gdy = fmax(gdy, fabs((gamma ? gamma[ch] : 1) * dy[i]));
            xh = fmax(xh, fabs(v));
        }
        double dp = sum_depth((double)c->n * hw, 1) + c->n;
        for (uint64_t i = 0; i < n; i++) {
            if (slot == OC_DX0) /* dx = istd (g dy - mean(g dy) - xhat mean(g dy xhat)): the
                                   two means are off by d u max|g dy| (times 1 + |xhat|),
                                   xhat by 3 u |xhat|, then a dozen roundings of terms up to
                                   istd |g dy| (1 + |xhat|)^2, and the += */
                tol[i] = is * gdy * (1 + xh) * (1 + xh) * (s.d + 12) * U + 2 * U * fabs(want[i]);
            else if (slot == OC_DX1) /* a sum over N*H*W of dy * xhat, xhat off by 3 u,
                                        and the += */
                tol[i] = (dp + 4) * U * sxh[i] + 2 * U * fabs(want[i]);
            else
                tol[i] = dp * U * sdy[i] + 2 * U * fabs(want[i]);
        }
        free(sxh);
        free(sdy);
    }
    free(s.mean);
    free(s.istd);
}

/* The sweep: odd sizes, 1x1 spatial, C = 1, 3, 5, 7, 13, batch 1 and 5, more than one
 * 4096-pixel block per channel (batch_norm) and per sample, and 3 random shapes. Affine
 * parameters, running statistics and the gradients asked for vary over the cases. */
#define NORM(n, c, h, w, g, train, fl) { n, c, h, w, .p.norm = { g, 0, 0, train }, .f = fl }
/* with a fused activation (vka_layer_norm_act) */
#define NORM_ACT(n, c, h, w, g, train, fl, act, slope)                                      \
    { n, c, h, w, .p.norm = { g, 0, 0, train, VKA_NORM_ACT_##act, slope }, .f = fl }
#define NO_AFFINE (OC_NO_X1 | OC_NO_X2)
#define ONLY_DX (OC_NO_DX1 | OC_NO_DX2)

static const struct oc_case batch_norm_cases[] = {
    /* training: (1,1,1,1) has one value per channel, refused (test_norm.c) */
    NORM(5, 3, 1, 1, 0, true, OC_TS | NO_AFFINE),
    NORM(1, 5, 3, 7, 0, true, OC_TS | ONLY_DX),
    NORM(5, 7, 5, 3, 0, true, OC_TS | OC_NO_STATE | OC_NO_DX0),
    NORM(2, 13, 9, 11, 0, true, OC_TS | NO_AFFINE),
    NORM(5, 6, 7, 9, 0, true, OC_TS | OC_NO_DX2),
    NORM(1, 12, 17, 19, 0, true, OC_TS | OC_NO_DX1),
    NORM(3, 16, 8, 8, 0, true, OC_TS | OC_NO_STATE),
    NORM(5, 13, 11, 13, 0, true, OC_TS | NO_AFFINE),
    NORM(2, 5, 23, 29, 0, true, OC_TS | ONLY_DX),
    NORM(2, 5, 47, 53, 0, true, OC_TS | OC_NO_DX0),
    NORM(1, 6, 67, 71, 0, true, OC_TS | NO_AFFINE | OC_NO_STATE),
    NORM(0, 0, 0, 0, 0, true, OC_TS | OC_RANDOM),
    NORM(0, 0, 0, 0, 0, true, OC_TS | OC_RANDOM | OC_NO_DX0),
    NORM(0, 0, 0, 0, 0, true, OC_TS | OC_RANDOM | NO_AFFINE | ONLY_DX),
    /* eval: the running statistics normalise, no gradient through them */
    NORM(1, 1, 1, 1, 0, false, OC_TS),
    NORM(5, 3, 1, 1, 0, false, OC_TS | NO_AFFINE),
    NORM(1, 5, 3, 7, 0, false, OC_TS | ONLY_DX),
    NORM(5, 7, 5, 3, 0, false, OC_TS | OC_NO_DX0),
    NORM(2, 13, 9, 11, 0, false, OC_TS | NO_AFFINE),
    NORM(5, 6, 7, 9, 0, false, OC_TS | OC_NO_DX2),
    NORM(1, 12, 17, 19, 0, false, OC_TS | OC_NO_DX1),
    NORM(3, 16, 8, 8, 0, false, OC_TS),
    NORM(5, 13, 11, 13, 0, false, OC_TS | NO_AFFINE),
    NORM(2, 5, 23, 29, 0, false, OC_TS | ONLY_DX),
    NORM(2, 5, 47, 53, 0, false, OC_TS | OC_NO_DX0),
    NORM(1, 6, 67, 71, 0, false, OC_TS | NO_AFFINE),
    NORM(0, 0, 0, 0, 0, false, OC_TS | OC_RANDOM),
    NORM(0, 0, 0, 0, 0, false, OC_TS | OC_RANDOM | OC_NO_DX1),
    /* bindings of 136 KiB: 4343 pixels of 8 channels, one 4096-pixel block per dispatch
     * (reductions are blocked by pixels, not by binding) */
    { 2, 5, 47, 53, .p.norm = { 0, 0, 0, true }, .f = OC_STORAGE | OC_STORAGE_CHUNKED,
      .chunk = 139264 },
    NORM(3, 5, 6, 7, 0, true, OC_TS | OC_PARITY),
    NORM(2, 7, 5, 3, 0, false, OC_TS | OC_PARITY),
    NORM(2, 3, 5, 7, 0, true, OC_FD | OC_NO_STATE),
    { 5, 2, 1, 3, .p.norm = { 0, 1e-3f, 0, true }, .f = OC_FD | OC_NO_STATE | NO_AFFINE | ONLY_DX },
    /* fused activations: training and eval, chunked bindings, PyTorch */
    NORM_ACT(5, 6, 7, 9, 0, true, OC_TS, RELU, 0),
    NORM_ACT(2, 13, 9, 11, 0, true, OC_TS | OC_NO_DX2, LEAKY_RELU, 0.2f),
    NORM_ACT(0, 0, 0, 0, 0, true, OC_TS | OC_RANDOM | NO_AFFINE, LEAKY_RELU, 0.2f),
    NORM_ACT(3, 16, 8, 8, 0, false, OC_TS, LEAKY_RELU, 0.2f),
    NORM_ACT(0, 0, 0, 0, 0, false, OC_TS | OC_RANDOM, RELU, 0),
    { 2, 5, 47, 53, .p.norm = { 0, 0, 0, true, VKA_NORM_ACT_LEAKY_RELU, 0.2f },
      .f = OC_STORAGE | OC_STORAGE_CHUNKED, .chunk = 139264 },
    NORM_ACT(3, 5, 6, 7, 0, true, OC_TS | OC_PARITY, RELU, 0),
    NORM_ACT(2, 7, 5, 3, 0, false, OC_TS | OC_PARITY, LEAKY_RELU, 0.2f),
};

static const struct oc_case group_norm_cases[] = {
    NORM(1, 1, 1, 1, 1, true, OC_TS),
    NORM(5, 3, 1, 1, 3, true, OC_TS | NO_AFFINE),
    NORM(1, 5, 3, 7, 5, true, OC_TS | ONLY_DX),
    NORM(5, 7, 5, 3, 7, true, OC_TS | OC_NO_DX0),
    NORM(2, 13, 9, 11, 13, true, OC_TS | NO_AFFINE),
    NORM(5, 6, 7, 9, 3, true, OC_TS | OC_NO_DX2),
    NORM(1, 12, 17, 19, 4, true, OC_TS | OC_NO_DX1),
    NORM(3, 16, 8, 8, 2, true, OC_TS),
    NORM(5, 13, 11, 13, 1, true, OC_TS | NO_AFFINE),
    NORM(2, 5, 23, 29, 5, true, OC_TS | ONLY_DX),
    NORM(2, 5, 47, 53, 5, true, OC_TS | OC_NO_DX0),
    NORM(1, 6, 67, 71, 3, true, OC_TS | NO_AFFINE),
    NORM(0, 0, 0, 0, 0, true, OC_TS | OC_RANDOM),
    NORM(0, 0, 0, 0, 0, true, OC_TS | OC_RANDOM | OC_NO_DX1),
    NORM(0, 0, 0, 0, 0, true, OC_TS | OC_RANDOM | NO_AFFINE),
    { 2, 5, 47, 53, .p.norm = { 5, 0, 0, true }, .f = OC_STORAGE | OC_STORAGE_CHUNKED,
      .chunk = 139264 },
    /* a batch of 8: Cg = 2 puts two groups in one vec4; H*W = 4225 is two blocks */
    NORM(8, 6, 65, 65, 3, true, OC_TEXEL | OC_SPLIT),
    NORM(2, 6, 5, 7, 3, true, OC_TS | OC_PARITY),
    NORM(3, 10, 4, 3, 5, true, OC_TS | OC_PARITY | NO_AFFINE | ONLY_DX),
    NORM(2, 6, 5, 7, 3, true, OC_FD),
    NORM(1, 4, 3, 5, 1, true, OC_FD | NO_AFFINE | ONLY_DX),
    NORM(5, 3, 2, 3, 3, true, OC_FD),
    /* fused activations (the U-Net's GroupNorm + ReLU) */
    NORM_ACT(2, 13, 9, 11, 13, true, OC_TS, RELU, 0),
    NORM_ACT(5, 6, 7, 9, 3, true, OC_TS | OC_NO_DX1, LEAKY_RELU, 0.2f),
    NORM_ACT(0, 0, 0, 0, 0, true, OC_TS | OC_RANDOM, RELU, 0),
    NORM_ACT(0, 0, 0, 0, 0, true, OC_TS | OC_RANDOM | NO_AFFINE | ONLY_DX, LEAKY_RELU, 0.01f),
    { 2, 5, 47, 53, .p.norm = { 5, 0, 0, true, VKA_NORM_ACT_RELU, 0 },
      .f = OC_STORAGE | OC_STORAGE_CHUNKED, .chunk = 139264 },
    NORM_ACT(8, 6, 65, 65, 3, true, OC_TEXEL | OC_SPLIT, RELU, 0),
    NORM_ACT(2, 6, 5, 7, 3, true, OC_TS | OC_PARITY, RELU, 0),
    NORM_ACT(3, 10, 4, 3, 5, true, OC_TS | OC_PARITY | ONLY_DX, LEAKY_RELU, 0.2f),
};

/* dx goes through the statistics, nonlinear in x; y is linear in gamma and in beta */
#define NORM_ENTRY(name)                                                                  \
    { VKA_OP_##name, CASES(name##_cases), norm_slots, norm_gen, norm_rand, name##_fwd,     \
      name##_bwd, NULL, norm_tol, { 0, 0 }, { 0, 0 }, false, true,                         \
      { OC_FD_SMOOTH, OC_FD_LIN, OC_FD_LIN } }

/* ---- pool: max_pool2d, avg_pool2d, upsample_nearest, upsample_bilinear -------------------
 * x, dy in [-1, 1]. max_pool2d's saved0 is its argmax in the kernel's (N,P,Q,C) order,
 * exact. */

static bool pooling(enum vka_op op)
{
    return op == VKA_OP_max_pool2d || op == VKA_OP_avg_pool2d;
}

static void pool_slots(struct oc_run *r)
{
    const struct oc_case *c = &r->c;
    set(&r->t[OC_X0], OC_ACT, c->n, c->c, c->h, c->w);
    r->t[OC_X0].grad = true;
}

static void pool_gen(struct oc_run *r)
{
    struct oc_tensor *x = &r->t[OC_X0];
    uint64_t n = oc_numel(x);
    if (r->gen == OC_GEN_FD && r->op == VKA_OP_max_pool2d) {
        /* distinct values 0.01 apart in random order: no ties within 1e-6 steps */
        for (uint64_t i = 0; i < n; i++)
            x->f[i] = 0.01f * (float)i - 1.0f;
        for (uint64_t i = n - 1; i > 0; i--) {
            uint64_t j = oc_u64() % (i + 1);
            float t = x->f[i];
            x->f[i] = x->f[j];
            x->f[j] = t;
        }
    }
    if (r->c.f & OC_TIES) /* a grid of 5 values: windows hold equal maxima */
        for (uint64_t i = 0; i < n; i++)
            x->f[i] = roundf(x->f[i] * 2) / 2;
    if (r->c.f & OC_NANS)
        for (uint64_t i = 0; i < n / 8; i++)
            x->f[oc_u64() % n] = NAN;
}

static void pool_rand(struct oc_run *r)
{
    static const uint32_t chans[] = { 1, 3, 4, 5, 7, 13 };
    struct oc_case *c = &r->c;
    c->n = oc_range(0, 1) ? 5 : 1;
    c->c = chans[oc_range(0, 5)];
    if (pooling(r->op)) {
        struct vka_pool_desc *d = &c->p.pool;
        d->k = oc_range(1, 4);
        d->stride = oc_range(1, 3);
        d->pad = oc_range(0, d->k / 2);
        uint32_t lo = d->k > 2 * d->pad ? d->k - 2 * d->pad : 1;
        c->h = oc_range(lo, 12);
        c->w = oc_range(lo, 12);
    } else {
        c->h = oc_range(1, 9);
        c->w = oc_range(1, 9);
        c->p.resize.oh = oc_range(1, 20);
        c->p.resize.ow = oc_range(1, 20);
    }
}

static struct ref_pool pool_of(const struct oc_run *r)
{
    const struct oc_case *c = &r->c;
    const struct vka_pool_desc *d = &r->p.pool;
    return (struct ref_pool){ (int)c->n, (int)c->c, (int)c->h, (int)c->w, (int)d->k,
                              (int)d->stride, (int)d->pad };
}

static struct ref_resize resize_of(const struct oc_run *r)
{
    const struct oc_case *c = &r->c;
    return (struct ref_resize){ (int)c->n, (int)c->c, (int)c->h, (int)c->w,
                                (int)r->p.resize.oh, (int)r->p.resize.ow };
}

static void max_pool2d_fwd(const struct oc_ref *a)
{
    struct ref_pool p = pool_of(a->r);
    const struct oc_tensor *y = &a->r->t[OC_Y];
    ref_max_pool2d_fwd(&p, a->x[0], a->y);
    /* (N,C,P,Q) -> the kernel's (N,P,Q,C) */
    uint64_t ny = oc_numel(y), C = y->c, PQ = (uint64_t)y->h * y->w;
    double *arg = xcalloc(ny, sizeof(double));
    ref_max_pool2d_argmax(&p, a->x[0], arg);
    for (uint64_t i = 0; i < ny; i++) {
        uint64_t n = i / (C * PQ), c = i / PQ % C, pq = i % PQ;
        a->saved[0][(n * PQ + pq) * C + c] = arg[i];
    }
    free(arg);
}

static void max_pool2d_bwd(const struct oc_ref *a)
{
    struct ref_pool p = pool_of(a->r);
    ref_max_pool2d_bwd(&p, a->x[0], a->dy, a->dx[0]);
}

static void avg_pool2d_fwd(const struct oc_ref *a)
{
    struct ref_pool p = pool_of(a->r);
    ref_avg_pool2d_fwd(&p, a->x[0], a->y);
}

static void avg_pool2d_bwd(const struct oc_ref *a)
{
    struct ref_pool p = pool_of(a->r);
    ref_avg_pool2d_bwd(&p, a->dy, a->dx[0]);
}

static void upsample_nearest_fwd(const struct oc_ref *a)
{
    struct ref_resize p = resize_of(a->r);
    ref_upsample_nearest_fwd(&p, a->x[0], a->y);
}

static void upsample_nearest_bwd(const struct oc_ref *a)
{
    struct ref_resize p = resize_of(a->r);
    ref_upsample_nearest_bwd(&p, a->dy, a->dx[0]);
}

static void upsample_bilinear_fwd(const struct oc_ref *a)
{
    struct ref_resize p = resize_of(a->r);
    ref_upsample_bilinear_fwd(&p, a->x[0], a->y);
}

static void upsample_bilinear_bwd(const struct oc_ref *a)
{
    struct ref_resize p = resize_of(a->r);
    ref_upsample_bilinear_bwd(&p, a->dy, a->dx[0]);
}

/* Most outputs that read one input element along an axis: the length of a dx sum. */
static uint32_t pool_users(const struct oc_run *r, uint32_t in, uint32_t out)
{
    if (pooling(r->op))
        return (r->p.pool.k + r->p.pool.stride - 1) / r->p.pool.stride;
    return (out + in - 1) / in + (r->op == VKA_OP_upsample_bilinear ? 2 : 0);
}

static void pool_tol(const struct oc_run *r, enum oc_slot s, double *tol)
{
    const struct oc_case *c = &r->c;
    const struct oc_tensor *y = &r->t[OC_Y];
    const bool bil = r->op == VKA_OP_upsample_bilinear;
    const double maxdim = fmax(fmax(c->h, c->w), fmax(y->h, y->w));
    const uint32_t k = r->p.pool.k;
    double t = 0;
    if (s == OC_Y && r->op == VKA_OP_avg_pool2d)
        /* k*k float adds of |x| <= 1 (partials <= k*k, each rounded by 2^-24 of itself),
         * then a division by k*k: at most (k*k + 3) * 2^-24 with a margin for the
         * division's rounding */
        t = (k * k + 3) * U;
    else if (s == OC_Y && bil)
        /* source positions in float: up to maxdim cells, off by 2^-24 of that, move the
         * weights by as much, times |x1 - x0| <= 2 on each axis; plus 6 roundings of
         * values <= 1 */
        t = (8 + 8 * maxdim) * U;
    else if (s == OC_DX0) {
        /* dx = dx0 + a sum of m terms (dy <= 1 times weights <= 1): m + 1 float adds,
         * each rounding a partial <= m + 1 by 2^-24; bilinear adds the weights' float
         * error (above) on each of the m terms */
        double m = (double)pool_users(r, c->h, y->h) * pool_users(r, c->w, y->w);
        t = ((m + 2) * (m + 2) + (bil ? 8 * m * maxdim : 0)) * U;
    }
    /* else max_pool2d's and nearest's y copy one input element, and the argmax is an
     * index: exact, NaN included */
    for (uint64_t i = 0; i < oc_numel(&r->t[s]); i++)
        tol[i] = t;
}

/* pooling: U-Net's 2x2/2, odd sizes floor-dropping a row and column, overlapping
 * windows (stride < k) with padding, gaps (stride > k), 1x1 spatial; max_pool2d gets
 * ties on every other case */
#define POOL(n, c, h, w, k, s, pad, fl) { n, c, h, w, .p.pool = { k, s, pad }, .f = fl }
#define POOL_CASES(t)                                                                     \
    POOL(1, 4, 8, 8, 2, 2, 0, OC_TS), POOL(5, 3, 7, 5, 2, 2, 0, OC_TS | (t)),             \
    POOL(1, 13, 9, 11, 3, 1, 1, OC_TS), POOL(5, 5, 10, 7, 3, 2, 1, OC_TS | (t)),          \
    POOL(1, 7, 6, 9, 2, 1, 0, OC_TS), POOL(1, 1, 9, 8, 1, 2, 0, OC_TS | (t)),             \
    POOL(5, 5, 11, 6, 4, 3, 2, OC_TS), POOL(5, 3, 1, 1, 1, 1, 0, OC_TS | (t)),            \
    POOL(1, 7, 1, 1, 2, 2, 1, OC_TS), POOL(1, 5, 2, 2, 2, 2, 0, OC_TS | (t)),             \
    { .f = OC_TS | OC_RANDOM }, { .f = OC_TS | OC_RANDOM | (t) },                         \
    { .f = OC_TS | OC_RANDOM }, { .f = OC_TS | OC_RANDOM | (t) },                         \
    { .f = OC_TS | OC_RANDOM }, { .f = OC_TS | OC_RANDOM | (t) }
/* rows split across 4 KiB bindings (chunks crossing samples; on the storage path the
 * inputs are bound per chunk too), against tensors of 20 KiB and more */
#define CHUNK4K (OC_TS | OC_CHUNKED), .chunk = 4096

static const struct oc_case max_pool2d_cases[] = {
    POOL_CASES(OC_TIES),
    POOL(3, 5, 21, 21, 2, 2, 0, OC_TIES | CHUNK4K),
    POOL(3, 5, 21, 19, 3, 1, 1, OC_TIES | CHUNK4K),
    /* NaNs: y is NaN where the reference's is, the argmax the last NaN (a NaN takes
     * over), and dy follows it */
    POOL(5, 5, 9, 8, 3, 2, 1, OC_TEXEL | OC_TIES | OC_NANS),
    POOL(8, 5, 9, 9, 3, 2, 1, OC_TEXEL | OC_TIES | OC_SPLIT),
    POOL(2, 5, 7, 9, 2, 2, 0, OC_TS | OC_PARITY),
    POOL(3, 3, 8, 7, 3, 2, 1, OC_TS | OC_PARITY),
    POOL(2, 3, 5, 7, 2, 2, 0, OC_FD),
    POOL(1, 2, 6, 5, 3, 2, 1, OC_FD),
};

static const struct oc_case avg_pool2d_cases[] = {
    POOL_CASES(0),
    POOL(3, 5, 21, 21, 3, 2, 1, CHUNK4K),
    POOL(8, 5, 9, 9, 3, 2, 1, OC_TEXEL | OC_SPLIT),
    POOL(2, 5, 7, 9, 2, 2, 0, OC_TS | OC_PARITY),
    POOL(3, 3, 8, 7, 3, 2, 1, OC_TS | OC_PARITY),
    POOL(2, 3, 5, 7, 2, 2, 0, OC_FD),
    POOL(5, 1, 5, 7, 3, 2, 1, OC_FD),
};

/* resizing: 2x up, up by odd factors, down, mixed, from and to 1x1, identity */
#define RESIZE(n, c, h, w, oh, ow, fl) { n, c, h, w, .p.resize = { oh, ow }, .f = fl }
#define RESIZE_CASES                                                                      \
    RESIZE(1, 4, 8, 8, 16, 16, OC_TS), RESIZE(5, 3, 5, 7, 13, 3, OC_TS),                  \
    RESIZE(1, 13, 9, 9, 4, 4, OC_TS), RESIZE(5, 1, 1, 1, 3, 5, OC_TS),                    \
    RESIZE(1, 7, 6, 6, 17, 17, OC_TS), RESIZE(1, 5, 3, 3, 1, 1, OC_TS),                   \
    RESIZE(5, 5, 4, 6, 4, 6, OC_TS), RESIZE(1, 3, 7, 2, 10, 9, OC_TS),                    \
    { .f = OC_TS | OC_RANDOM }, { .f = OC_TS | OC_RANDOM }, { .f = OC_TS | OC_RANDOM },   \
    { .f = OC_TS | OC_RANDOM }, { .f = OC_TS | OC_RANDOM }, { .f = OC_TS | OC_RANDOM }

static const struct oc_case upsample_nearest_cases[] = {
    RESIZE_CASES,
    RESIZE(3, 5, 21, 21, 9, 30, CHUNK4K),
    RESIZE(3, 5, 7, 8, 22, 20, CHUNK4K),
    RESIZE(8, 5, 9, 9, 13, 4, OC_TEXEL | OC_SPLIT),
    RESIZE(2, 3, 5, 7, 11, 13, OC_TS | OC_PARITY),
    RESIZE(2, 5, 7, 6, 3, 4, OC_TS | OC_PARITY),
    RESIZE(2, 3, 3, 5, 7, 4, OC_FD),
    RESIZE(1, 2, 4, 3, 8, 9, OC_FD),
};

static const struct oc_case upsample_bilinear_cases[] = {
    RESIZE_CASES,
    RESIZE(3, 5, 21, 17, 40, 9, CHUNK4K),
    RESIZE(3, 5, 30, 11, 8, 21, CHUNK4K),
    RESIZE(8, 5, 9, 9, 20, 6, OC_TEXEL | OC_SPLIT),
    RESIZE(2, 5, 5, 7, 11, 9, OC_TS | OC_PARITY),
    RESIZE(3, 3, 4, 5, 8, 10, OC_TS | OC_PARITY),
    RESIZE(2, 3, 3, 5, 7, 4, OC_FD),
    RESIZE(1, 2, 4, 3, 8, 9, OC_FD),
};

/* avg and the resizes are linear; max is linear away from ties */
#define POOL_ENTRY(name)                                                                  \
    { VKA_OP_##name, CASES(name##_cases), pool_slots, pool_gen, pool_rand, name##_fwd,     \
      name##_bwd, NULL, pool_tol, { 0, 0 }, { 0, 0 }, false, true,                         \
      { OC_FD_LIN, OC_FD_NONE, OC_FD_NONE } }

/* ---- loss: cross_entropy, bce_logits, dice, mse, l1, hinge, sigmoid_mean -----------------
 * fwd adds [sum, count] (dice: [inter[C], card[C]]) into an accumulator pre-filled with
 * [0, 50] values; bwd adds scale * d(sum)/dx with scale = 1 / count (the gradient of the
 * mean) into pre-filled gradients; dice's bwd takes dy = [dL/dinter, dL/dcard] from
 * vka_dice_loss on the reference's sums. Segmentation targets mix ignore_index (unevenly
 * over samples) and out-of-range ids; hinge targets are 0 and 1 with some logits on the
 * kink s*x == 1; bce_logits and hinge also run with x1 NULL and p.loss.target. A case's
 * ignore_index of 0 means a random one of 255 and -100. */

static bool seg_loss(enum vka_op op)
{
    return op == VKA_OP_cross_entropy || op == VKA_OP_dice;
}

static void loss_slots(struct oc_run *r)
{
    const struct oc_case *c = &r->c;
    struct oc_tensor *x = r->t;
    set(&x[OC_X0], OC_ACT, c->n, c->c, c->h, c->w);
    x[OC_X0].lo = -4, x[OC_X0].hi = 4, x[OC_X0].grad = true;
    if (r->gen != OC_GEN_CHECK)
        x[OC_X0].lo = -3, x[OC_X0].hi = 3;
    if (seg_loss(r->op)) {
        set(&x[OC_X1], OC_I32, c->n, 1, c->h, c->w);
        x[OC_X1].per_sample = true;
        if (!(c->f & OC_NO_X2)) { /* class weights (dice does not read them) */
            set(&x[OC_X2], OC_FLAT, c->c, 1, 1, 1);
            x[OC_X2].lo = 0.2f, x[OC_X2].hi = 2;
        }
    } else if (r->op != VKA_OP_sigmoid_mean && !(c->f & OC_NO_X1)) {
        set_like(&x[OC_X1], &x[OC_X0]);
        bool bce = r->op == VKA_OP_bce_logits;
        x[OC_X1].lo = bce ? 0 : r->gen == OC_GEN_CHECK ? -2 : -1;
        x[OC_X1].hi = bce ? 1 : r->gen == OC_GEN_CHECK ? 2 : 1;
    }
}

static void loss_gen(struct oc_run *r)
{
    const struct oc_case *c = &r->c;
    float *x = r->t[OC_X0].f, *t = r->t[OC_X1].f;
    const uint64_t n = oc_numel(&r->t[OC_X0]), hw = (uint64_t)c->h * c->w;
    struct vka_loss_desc *d = &r->p.loss;
    if (d->ignore_index == 0)
        d->ignore_index = oc_range(0, 1) ? 255 : -100;
    if (seg_loss(r->op)) {
        int32_t *ti = (int32_t *)t;
        for (uint32_t s = 0; s < c->n; s++) {
            /* uneven over samples: 0, 30 %, 60 % ignored; parity 20 % */
            float pignore = r->gen == OC_GEN_CHECK ? 0.3f * (s % 3) : 0.2f;
            for (uint64_t i = 0; i < hw; i++) {
                float u = oc_uniform(0, 1);
                int32_t v = (int32_t)oc_range(0, c->c - 1);
                if (u < pignore)
                    v = d->ignore_index;
                else if (u > 0.95f && r->gen == OC_GEN_CHECK) /* skipped, never read */
                    v = oc_range(0, 1) ? (int32_t)c->c + (int32_t)oc_range(0, 5) : -3;
                ti[s * hw + i] = v;
            }
        }
        if (r->gen == OC_GEN_FD) /* out of range: skipped */
            ti[c->n * hw / 2] = (int32_t)c->c + 3;
        return;
    }
    if (r->op == VKA_OP_hinge) {
        for (uint64_t i = 0; i < n; i++) {
            float ti = t ? (float)oc_range(0, 1) : d->target, s = 2 * ti - 1;
            if (t)
                t[i] = ti;
            if (r->gen == OC_GEN_FD) /* |s*x - 1| >= 0.1: x +- eps stays on one side */
                while (fabsf(s * x[i] - 1) < 0.1f)
                    x[i] = oc_uniform(-3, 3);
            else if (oc_uniform(0, 1) < 0.1f)
                x[i] = s; /* the kink s*x == 1: subgradient 0 */
        }
        return;
    }
    if (r->op == VKA_OP_sigmoid_mean) {
        for (uint64_t i = 0; i < n && r->gen == OC_GEN_CHECK; i++)
            if (oc_uniform(0, 1) < 0.05f) /* saturated: exp(-|x|) underflows */
                x[i] = oc_uniform(-120, 120);
        return;
    }
    for (uint64_t i = 0; t && i < n; i++) {
        float u = oc_uniform(0, 1);
        if (r->op == VKA_OP_bce_logits && u < 0.3f && r->gen == OC_GEN_CHECK)
            t[i] = u < 0.15f ? 0.0f : 1.0f; /* hard labels among soft ones */
        if (r->op == VKA_OP_l1 && r->gen == OC_GEN_FD) /* |x - t| >= 0.1: off the kink */
            x[i] = t[i] + oc_uniform(0.1f, 2) * (oc_u64() & 1 ? 1 : -1);
        else if (r->op == VKA_OP_l1 && u < 0.1f)
            t[i] = x[i]; /* sign(0) = 0 */
    }
}

static void loss_rand(struct oc_run *r)
{
    struct oc_case *c = &r->c;
    c->n = oc_range(1, 5);
    c->c = oc_range(1, 16);
    c->h = oc_range(1, 24);
    c->w = oc_range(1, 24);
}

static struct ref_seg seg_of(const struct oc_run *r)
{
    const struct oc_case *c = &r->c;
    return (struct ref_seg){ (int)c->n, (int)c->c, (int)c->h, (int)c->w,
                             r->p.loss.ignore_index };
}

static const int *targets_of(const struct oc_ref *a)
{
    return (const int *)a->r->t[OC_X1].f;
}

/* f32 targets: x1, or p.loss.target everywhere (malloc'ed, free with free_targets) */
static const double *pix_targets(const struct oc_ref *a)
{
    if (a->x[1])
        return a->x[1];
    uint64_t n = numel_of(a, OC_X0);
    double *t = xcalloc(n, sizeof(double));
    for (uint64_t i = 0; i < n; i++)
        t[i] = a->r->p.loss.target;
    return t;
}

static void free_targets(const struct oc_ref *a, const double *t)
{
    if (t != a->x[1])
        free((double *)t);
}

static void cross_entropy_fwd(const struct oc_ref *a)
{
    struct ref_seg p = seg_of(a->r);
    ref_softmax_ce_fwd(&p, a->x[0], targets_of(a), a->x[2], &a->y[0], &a->y[1]);
}

static void cross_entropy_bwd(const struct oc_ref *a)
{
    struct ref_seg p = seg_of(a->r);
    ref_softmax_ce_bwd(&p, a->x[0], targets_of(a), a->x[2], a->dy[0], a->dx[0]);
}

static void dice_fwd(const struct oc_ref *a)
{
    struct ref_seg p = seg_of(a->r);
    ref_dice_fwd(&p, a->x[0], targets_of(a), a->y, a->y + a->r->c.c);
}

static void dice_bwd(const struct oc_ref *a)
{
    struct ref_seg p = seg_of(a->r);
    ref_dice_bwd(&p, a->x[0], targets_of(a), a->dy, a->dy + a->r->c.c, a->dx[0]);
}

/* the window's dy from the reference's sums: vka_dice_loss (smooth 1, dloss 1) */
static void dice_dy(struct oc_run *r)
{
    uint32_t C = r->c.c;
    float *tot = xcalloc(2 * C, sizeof(float));
    for (uint32_t i = 0; i < 2 * C; i++)
        tot[i] = (float)r->ref[OC_Y][i];
    r->loss = vka_dice_loss(tot, C, 1.0, 1.0, r->t[OC_DY].f);
    for (uint32_t i = 0; i < 2 * C; i++)
        r->t[OC_DY].d[i] = r->t[OC_DY].f[i];
    free(tot);
}

#define PIX_LOSS(name, call_fwd, call_bwd)                                                \
    static void name##_fwd(const struct oc_ref *a)                                        \
    {                                                                                     \
        const double *t = pix_targets(a);                                                 \
        int n = (int)numel_of(a, OC_X0);                                                  \
        call_fwd;                                                                         \
        free_targets(a, t);                                                               \
    }                                                                                     \
    static void name##_bwd(const struct oc_ref *a)                                        \
    {                                                                                     \
        const double *t = pix_targets(a);                                                 \
        int n = (int)numel_of(a, OC_X0);                                                  \
        call_bwd;                                                                         \
        free_targets(a, t);                                                               \
    }

PIX_LOSS(bce_logits, ref_bce_logits_fwd(n, a->x[0], t, &a->y[0], &a->y[1]),
         ref_bce_logits_bwd(n, a->x[0], t, a->dy[0], a->dx[0]))
PIX_LOSS(mse, ref_mse_fwd(n, a->x[0], t, &a->y[0], &a->y[1]),
         ref_mse_bwd(n, a->x[0], t, a->dy[0], a->dx[0]))
PIX_LOSS(l1, ref_l1_fwd(n, a->x[0], t, &a->y[0], &a->y[1]),
         ref_l1_bwd(n, a->x[0], t, a->dy[0], a->dx[0]))
PIX_LOSS(hinge, ref_hinge_fwd(n, a->r->p.loss.hinge_linear, a->x[0], t, &a->y[0], &a->y[1]),
         ref_hinge_bwd(n, a->r->p.loss.hinge_linear, a->x[0], t, a->dy[0], a->dx[0]))

static void sigmoid_mean_fwd(const struct oc_ref *a)
{
    ref_sigmoid_mean_fwd((int)numel_of(a, OC_X0), a->x[0], &a->y[0], &a->y[1]);
}

static void sigmoid_mean_bwd(const struct oc_ref *a)
{
    (void)a; /* a metric: no gradient */
}

static void loss_tol(const struct oc_run *r, enum oc_slot s, double *tol)
{
    const double *ref = r->ref[s];
    const uint32_t C = r->c.c;
    const uint64_t n = oc_numel(&r->t[s]);
    if (s == OC_Y) {
        const float *init = r->t[OC_Y].f;
        for (uint64_t i = 0; i < n; i++) {
            double count = r->op == VKA_OP_dice ? ref[C + i % C] : ref[1];
            if (r->op == VKA_OP_hinge || r->op == VKA_OP_sigmoid_mean) {
                /* |term| <= M: hinge 1 + max|x| = 5, hinge_linear 4, sigmoid 1. A fixed
                 * tree of at most 25 adds (4 per invocation, 6 + 6 tree levels, the
                 * fold's serial steps, 8 samples) errs by 25 * 2^-24 (< 1.5e-6) of the
                 * sum of the terms' magnitudes and |init|. hinge's terms round once;
                 * sigmoid's carry exp's (3 + 2|x|) ulp times e/(1+e)^2 and a division's
                 * 2.5 ulp: < 3e-7 each. */
                bool sig = r->op == VKA_OP_sigmoid_mean;
                double M = sig ? 1 : r->p.loss.hinge_linear ? 4 : 5;
                tol[i] = 1.5e-6 * (M * count + fabs(init[i])) + (sig ? 3e-7 * count : 0) + 1e-6;
            } else {
                /* Per item, exp/log cost a few ulp ((3 + 2|x|) ulp and 2^-21 absolute in
                 * Vulkan's precision rules), under 4e-6 absolute for |x| <= 8; the fixed
                 * tree adds at most depth * 2^-24 relative of the sum of magnitudes (all
                 * terms but BCE's x*t are >= 0, and that one is bounded by the count):
                 * 5e-6 * (count + |sum| + |init|) covers both. Dice inter/card are sums of
                 * probabilities: the same bound per class. */
                tol[i] = 5e-6 * (count + fabs(ref[i]) + fabs(init[i])) + 1e-6;
            }
        }
        return;
    }
    /* dx: init + g with |g| <= ~scale * max w (dice: ~max |dy|): the init rounds to 2^-24
     * relative, g carries the exp error of p (~1e-6 relative). hinge's g is exactly 0 or
     * -s * scale: only the one rounding of init + g. A metric's bwd leaves dx alone, bit
     * for bit. */
    double scale = r->op == VKA_OP_dice ? 1 : r->p.loss.scale;
    for (uint64_t i = 0; i < n; i++)
        tol[i] = r->op == VKA_OP_sigmoid_mean ? 0
                 : r->op == VKA_OP_hinge      ? 1.2e-7 * fabs(ref[i])
                                              : 1e-6 * (1 + scale * 2) + 1e-5 * fabs(ref[i]);
}

/* Batch 1 and 5, 1x1 spatial, C not a multiple of 4, images of several reduction blocks;
 * class weights on every other case; texel, storage, and storage in 32 KiB bindings (one
 * reduction block of a 16-channel image per chunk) */
#define LOSS_RUNS (OC_TS | OC_STORAGE_CHUNKED), .chunk = 32768
#define NO_W OC_NO_X2
/* the cases of every loss, with p.loss = { ... } */
#define LOSS_SHAPES(...)                                                                  \
    { 1, 1, 1, 1, .p.loss = { __VA_ARGS__ }, .f = NO_W | LOSS_RUNS },                     \
    { 1, 3, 1, 1, .p.loss = { __VA_ARGS__ }, .f = LOSS_RUNS },                            \
    { 5, 1, 2, 3, .p.loss = { __VA_ARGS__ }, .f = NO_W | LOSS_RUNS },                     \
    { 5, 5, 3, 7, .p.loss = { __VA_ARGS__ }, .f = LOSS_RUNS },                            \
    { 1, 7, 9, 5, .p.loss = { __VA_ARGS__ }, .f = NO_W | LOSS_RUNS },                     \
    { 2, 13, 5, 3, .p.loss = { __VA_ARGS__ }, .f = LOSS_RUNS },                           \
    { 5, 4, 1, 1, .p.loss = { __VA_ARGS__ }, .f = NO_W | LOSS_RUNS },                     \
    { 1, 3, 23, 19, .p.loss = { __VA_ARGS__ }, .f = LOSS_RUNS },                          \
    { 2, 16, 17, 16, .p.loss = { __VA_ARGS__ }, .f = NO_W | LOSS_RUNS },                  \
    { .p.loss = { __VA_ARGS__ }, .f = OC_RANDOM | LOSS_RUNS },                            \
    { .p.loss = { __VA_ARGS__ }, .f = OC_RANDOM | NO_W | LOSS_RUNS },                     \
    /* a batch of 8 as 8, 4+4, 3+3+2, 1x8 and in 16 KiB chunks: the accumulator's bits; \
     * 23x23: three reduction blocks of pixels per sample (five of the f32 losses' vec4s) */ \
    { 8, 5, 23, 23, .p.loss = { __VA_ARGS__ },                                            \
      .f = OC_TEXEL | OC_SPLIT | OC_TEXEL_CHUNKED, .chunk = 16384 }
/* x1 NULL: every target is p.loss.target, texel and in 32 KiB bindings */
#define CONST_TARGET(...)                                                                 \
    { 1, 1, 1, 1, .p.loss = { __VA_ARGS__ }, .f = OC_NO_X1 | OC_TEXEL | OC_STORAGE_CHUNKED, \
      .chunk = 32768 },                                                                   \
    { 5, 3, 3, 7, .p.loss = { __VA_ARGS__ }, .f = OC_NO_X1 | OC_TEXEL | OC_STORAGE_CHUNKED, \
      .chunk = 32768 },                                                                   \
    { 2, 5, 17, 16, .p.loss = { __VA_ARGS__ }, .f = OC_NO_X1 | OC_TEXEL | OC_STORAGE_CHUNKED, \
      .chunk = 32768 }

static const struct oc_case cross_entropy_cases[] = {
    LOSS_SHAPES(0),
    { 2, 5, 6, 7, .p.loss = { -100 }, .f = OC_TS | OC_PARITY },
    { 3, 3, 5, 4, .p.loss = { 255 }, .f = OC_TS | OC_PARITY | NO_W },
    { 2, 4, 3, 5, .p.loss = { -100 }, .f = OC_FD },
    { 5, 3, 1, 3, .p.loss = { 1 }, .f = OC_FD | NO_W },
};

static const struct oc_case dice_cases[] = {
    LOSS_SHAPES(0),
    { 2, 4, 5, 6, .p.loss = { 255 }, .f = OC_TS | OC_PARITY | NO_W },
    { 2, 4, 3, 5, .p.loss = { 3 }, .f = OC_FD | NO_W },
};

static const struct oc_case bce_logits_cases[] = {
    LOSS_SHAPES(0),
    CONST_TARGET(0, .target = 0),
    CONST_TARGET(0, .target = 1),
    { 2, 5, 4, 5, .p.loss = { -100 }, .f = OC_TS | OC_PARITY },
    { 2, 5, 4, 5, .p.loss = { -100, .target = 1 }, .f = OC_TS | OC_PARITY | OC_NO_X1 },
    { 1, 35, 1, 1, .p.loss = { -100 }, .f = OC_FD },
};

static const struct oc_case mse_cases[] = {
    LOSS_SHAPES(0),
    { 2, 5, 4, 5, .p.loss = { -100 }, .f = OC_TS | OC_PARITY },
    { 1, 35, 1, 1, .p.loss = { -100 }, .f = OC_FD },
};

static const struct oc_case l1_cases[] = {
    LOSS_SHAPES(0),
    { 2, 5, 4, 5, .p.loss = { -100 }, .f = OC_TS | OC_PARITY },
    { 1, 35, 1, 1, .p.loss = { -100 }, .f = OC_FD },
};

static const struct oc_case hinge_cases[] = {
    LOSS_SHAPES(0),
    LOSS_SHAPES(0, .hinge_linear = true),
    CONST_TARGET(0, .target = 0),
    CONST_TARGET(0, .target = 1),
    CONST_TARGET(0, .hinge_linear = true, .target = 0),
    CONST_TARGET(0, .hinge_linear = true, .target = 1),
    { 2, 5, 4, 5, .p.loss = { -100 }, .f = OC_TS | OC_PARITY },
    { 2, 5, 4, 5, .p.loss = { -100, .hinge_linear = true }, .f = OC_TS | OC_PARITY },
    { 2, 5, 4, 5, .p.loss = { -100, .target = 0 }, .f = OC_TS | OC_PARITY | OC_NO_X1 },
    { 1, 97, 1, 1, .p.loss = { -100 }, .f = OC_FD },
    { 1, 97, 1, 1, .p.loss = { -100, .hinge_linear = true }, .f = OC_FD },
};

static const struct oc_case sigmoid_mean_cases[] = {
    LOSS_SHAPES(0),
    { 2, 5, 4, 5, .f = OC_TS | OC_PARITY },
};

/* cross-entropy, BCE, dice: smooth and nonlinear; MSE is quadratic and L1 locally linear
 * (exact for central differences, the smooth bound is loose); hinge is linear on each
 * side of its kink */
#define LOSS_ENTRY(name, dyfn, fd)                                                        \
    { VKA_OP_##name, CASES(name##_cases), loss_slots, loss_gen, loss_rand, name##_fwd,     \
      name##_bwd, dyfn, loss_tol, { 0, 0 }, { 0, 0 }, false, false,                        \
      { fd, OC_FD_NONE, OC_FD_NONE } }

/* ---- the table ------------------------------------------------------------------------ */

/* act tolerances (fwd atol, rtol; bwd atol, rtol), the inputs' bounds as above:
 *   relu      a select: exact; bwd init + dy rounds once
 *   leaky     slope * x rounds once; bwd: slope * dy (<= 0.3) and the sum (<= 1.3) round
 *             once
 *   tanh      relative, so small outputs are checked too; bwd uses the kernel's y: 1 - y^2
 *             moves by <= 2 |dy| TANH_ABS, plus 4 roundings of values <= 2
 *   sigmoid   bwd: y (1 - y) moves by <= |1 - 2y| SIGMOID_ABS, plus 4 roundings of values
 *             <= 2
 *   scale     alpha * x rounds once; bwd: alpha * dy (<= 3) and the sum (<= 4) round once
 *   add       the sum rounds once; bwd init + dy rounds once
 *   mul       the product rounds once; bwd: dy * x (<= 4) and the sum (<= 5) round once
 *   concat    a copy: exact; bwd init + dy rounds once
 * Finite differences: relu and leaky_relu are locally linear away from 0, tanh and
 * sigmoid smooth; the binary ops linear in each argument. */
static const struct oc_entry entries[] = {
    CONV_ENTRY(conv2d),
    CONV_ENTRY(conv_transpose2d),
    CONV_ENTRY(linear),
    NORM_ENTRY(batch_norm),
    NORM_ENTRY(group_norm),
    ACT(relu, act_cases, unary_slots, 0, 0, 0, U, OC_FD_SMOOTH, OC_FD_NONE),
    ACT(leaky_relu, act_cases, unary_slots, 0, U, 2 * U, 0, OC_FD_SMOOTH, OC_FD_NONE),
    ACT(tanh, act_cases, unary_slots, 0, TANH_REL, 2 * TANH_ABS + 8 * U, 0, OC_FD_SMOOTH,
        OC_FD_NONE),
    ACT(sigmoid, act_cases, unary_slots, SIGMOID_ABS, 0, SIGMOID_ABS + 8 * U, 0, OC_FD_SMOOTH,
        OC_FD_NONE),
    ACT(add, act_cases, binary_slots, 0, U, 0, U, OC_FD_LIN, OC_FD_LIN),
    ACT(mul, act_cases, binary_slots, 0, U, 9 * U, 0, OC_FD_LIN, OC_FD_LIN),
    ACT(scale, act_cases, unary_slots, 0, U, 7 * U, 0, OC_FD_LIN, OC_FD_NONE),
    ACT(concat, concat_cases, concat_slots, 0, 0, 0, U, OC_FD_LIN, OC_FD_LIN),
    POOL_ENTRY(max_pool2d),
    POOL_ENTRY(avg_pool2d),
    POOL_ENTRY(upsample_nearest),
    POOL_ENTRY(upsample_bilinear),
    LOSS_ENTRY(cross_entropy, NULL, OC_FD_SMOOTH),
    LOSS_ENTRY(bce_logits, NULL, OC_FD_SMOOTH),
    LOSS_ENTRY(dice, dice_dy, OC_FD_SMOOTH),
    LOSS_ENTRY(mse, NULL, OC_FD_SMOOTH),
    LOSS_ENTRY(l1, NULL, OC_FD_SMOOTH),
    LOSS_ENTRY(hinge, NULL, OC_FD_LIN),
    LOSS_ENTRY(sigmoid_mean, NULL, OC_FD_NONE),
};

const struct oc_entry *oc_entry(enum vka_op op)
{
    for (size_t i = 0; i < sizeof(entries) / sizeof(entries[0]); i++)
        if (entries[i].op == op)
            return &entries[i];
    return NULL;
}
