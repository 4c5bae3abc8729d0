/* opcheck: every op of src/ops/ops.def on the device against its double reference
 * (tests/ref), checkasm style: one Criterion test per op (opcheck::<op>), over the cases
 * of its entry in tests/opcases.c, each on the paths its flags name (texel loads,
 * storage loads, storage with conv tiles), each path a context of its own
 * (vka_ctx_params). In every run:
 *  - every tensor lies at a random offset in its own buffer between sentinel words (a
 *    stray write fails); inputs and what bwd reads start at a whole vec4, other outputs
 *    anywhere (conv's at a vec4 too: its kernels write whole vec4s);
 *  - y and saved start as NaN, padding channels included (an unwritten element fails;
 *    padding must come back 0); a loss's accumulator and every dx start random (fwd of a
 *    loss and every bwd must add);
 *  - y, saved, state and dx are checked against the reference with the entry's
 *    per-element bounds; bwd's reference reads the saved tensors the device wrote;
 *  - an INPLACE_Y op runs its forward over its input too, an INPLACE_DX op its backward
 *    over dy, and a FRESH_DX op its backward told dx0_fresh over a dx0 of NaN, for the
 *    same bits;
 *  - before bwd, every tensor that ops.def's flags say bwd does not read is overwritten
 *    with NaN, so the flags are checked too;
 *  - a dx the case does not ask for is passed as NULL and must keep its bits.
 * Then *_CHUNKED runs the same inputs with the binding range lowered to the case's chunk
 * (more dispatches): the same bits as the unchunked run on that load path; and OC_SPLIT
 * runs the batch of 8 as micro-batches of 4+4, 3+3+2 and 1x8 on each of its unchunked
 * paths (views along N into the same tensors, fwd of each then bwd of each in one
 * submission): the same bits as the whole batch, parameter gradients and loss
 * accumulators included.
 *
 * OPCHECK_REPORT=1 prints the worst error / bound of every check; VKACCUM_TEST_SEED
 * repeats a run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "opcases.h"
#include "ops/ops.h"

/* ---- contexts: one per device policy --------------------------------------------------- */

struct cfg {
    unsigned flag;
    enum vka_load_path load;
    bool tiles;
    unsigned base; /* chunked: the unchunked run it must equal */
    const char *name;
};

static const struct cfg cfgs[] = {
    { OC_TEXEL, VKA_LOAD_TEXEL, false, 0, "texel" },
    { OC_STORAGE, VKA_LOAD_STORAGE, false, 0, "storage" },
    { OC_TILED, VKA_LOAD_STORAGE, true, 0, "storage, conv tiles" },
    { OC_TEXEL_CHUNKED, VKA_LOAD_TEXEL, false, OC_TEXEL, "texel, chunked" },
    { OC_STORAGE_CHUNKED, VKA_LOAD_STORAGE, false, OC_STORAGE, "storage, chunked" },
};
#define NCFG (sizeof(cfgs) / sizeof(cfgs[0]))

struct ctxs {
    struct {
        enum vka_load_path load;
        bool tiles;
        uint64_t max_binding;
        struct vka_ctx *ctx;
    } c[8];
    int n;
};

static struct vka_ctx *ctx_get(struct ctxs *cs, const struct cfg *cfg, uint64_t max_binding)
{
    for (int i = 0; i < cs->n; i++)
        if (cs->c[i].load == cfg->load && cs->c[i].tiles == cfg->tiles &&
            cs->c[i].max_binding == max_binding)
            return cs->c[i].ctx;
    cr_assert(cs->n < 8, "too many contexts");
    struct vka_ctx *ctx = test_ctx_params(&(struct vka_ctx_params){
        .validation = 1, .load = cfg->load, .conv_tiles = cfg->tiles ? VKA_ON : VKA_OFF,
        .max_binding = max_binding });
    cr_assert(ctx->profile.load == cfg->load && ctx->profile.conv_tiles == cfg->tiles &&
              (!max_binding || ctx->profile.max_binding == max_binding),
              "the context does not follow vka_ctx_params");
    cs->c[cs->n].load = cfg->load;
    cs->c[cs->n].tiles = cfg->tiles;
    cs->c[cs->n].max_binding = max_binding;
    cs->c[cs->n++].ctx = ctx;
    return ctx;
}

static void ctxs_done(struct ctxs *cs)
{
    for (int i = 0; i < cs->n; i++)
        test_ctx_done(&cs->c[i].ctx);
}

/* ---- device tensors -------------------------------------------------------------------- */

static void to_device(const struct oc_tensor *h, const float *src, float *dst)
{
    if (h->kind == OC_ACT)
        vka_nchw_to_nhwc4(src, dst, h->n, h->c, h->h, h->w);
    else if (h->kind == OC_WEIGHT)
        vka_nchw_to_weight(src, dst, h->n, h->c, h->h, h->w);
    else
        memcpy(dst, src, oc_numel(h) * sizeof(float));
}

static bool is_padding(const struct oc_tensor *h, uint64_t i)
{
    uint32_t cs = (h->c + 3) & ~3u;
    if (h->kind == OC_ACT)
        return i % cs >= h->c;
    if (h->kind == OC_WEIGHT) {
        uint32_t ns = (h->n + 3) & ~3u;
        return i % ns >= h->n || i / ns % cs >= h->c;
    }
    return false;
}

/* h's tensor at element off of its own buffer, TEST_SENTINEL before it and in
 * TEST_GUARD elements after it, holding data (NULL: NaN everywhere, padding included) */
static struct vka_tensor dev_make(struct vka_ctx *ctx, const struct oc_tensor *h,
                                  const float *data, uint64_t off)
{
    struct vka_tensor t = oc_tensor_shape(h);
    uint64_t stored = vka_tensor_stored(&t), total = off + stored + TEST_GUARD;
    float *init = malloc(total * sizeof(float));
    cr_assert(init);
    for (uint64_t i = 0; i < total; i++)
        init[i] = i >= off && i < off + stored && !data ? NAN : TEST_SENTINEL;
    if (data)
        to_device(h, data, init + off);
    int ret = vka_buf_create(ctx, &(struct vka_buf_params){
        .size = total * sizeof(float), .cat = VKA_MEM_ACTIVATIONS }, &t.buf);
    cr_assert_eq(ret, 0, "%s", vka_last_error());
    cr_assert_eq(vka_buf_upload(t.buf, 0, init, total * sizeof(float)), 0, "%s",
                 vka_last_error());
    free(init);
    t.off = off;
    t.owns_buf = true;
    return t;
}

/* NaN over t's elements (its guards stay) */
static void dev_poison(const struct vka_tensor *t)
{
    uint64_t n = vka_tensor_stored(t);
    float *nan = malloc((n ? n : 1) * sizeof(float));
    for (uint64_t i = 0; i < n; i++)
        nan[i] = NAN;
    cr_assert_eq(vka_buf_upload(t->buf, t->off * 4, nan, n * 4), 0, "%s", vka_last_error());
    free(nan);
}

/* t's values in h's host order, after checking its guards and padding */
static float *dev_read(const struct vka_tensor *t, const struct oc_tensor *h, const char *what,
                       enum oc_slot s)
{
    uint64_t stored = vka_tensor_stored(t), total = t->off + stored + TEST_GUARD;
    float *all = malloc(total * sizeof(float)), *out = malloc((oc_numel(h) + 1) * sizeof(float));
    cr_assert(all && out);
    cr_assert_eq(vka_buf_download(t->buf, 0, all, total * sizeof(float)), 0, "%s",
                 vka_last_error());
    for (uint64_t i = 0; i < total; i++) {
        if (i < t->off || i >= t->off + stored)
            cr_assert_eq(all[i], TEST_SENTINEL, "%s: stray write at element %llu next to %s "
                         "(elements %llu..%llu)", what, (unsigned long long)i, oc_slot_name(s),
                         (unsigned long long)t->off, (unsigned long long)(t->off + stored));
        else if (is_padding(h, i - t->off))
            cr_assert_eq(all[i], 0.0f, "%s: %s: padding element %llu holds %g, not 0", what,
                         oc_slot_name(s), (unsigned long long)(i - t->off), all[i]);
    }
    const float *src = all + t->off;
    if (h->kind == OC_ACT)
        vka_nhwc4_to_nchw(src, out, h->n, h->c, h->h, h->w);
    else if (h->kind == OC_WEIGHT)
        vka_weight_to_nchw(src, out, h->n, h->c, h->h, h->w);
    else
        memcpy(out, src, oc_numel(h) * sizeof(float));
    free(all);
    return out;
}

/* ---- runs ------------------------------------------------------------------------------ */

struct res {
    float *f[OC_NSLOTS]; /* the device's y, saved, state and dx, host order */
};

static void res_free(struct res *res)
{
    for (int s = 0; s < OC_NSLOTS; s++)
        free(res->f[s]);
    memset(res, 0, sizeof(*res));
}

static bool on_device(const struct oc_run *r, enum oc_slot s)
{
    const unsigned flags = vka_ops[r->op].flags;
    if (r->t[s].kind == OC_NONE)
        return false;
    /* a loss's dy is [scale, 0] for the reference only, unless bwd reads a dy */
    return s != OC_DY || !(flags & VKA_OP_LOSS) || (flags & VKA_OP_R_DY);
}

static unsigned read_flag(enum oc_slot s)
{
    switch (s) {
    case OC_X0: return VKA_OP_R_X0;
    case OC_X1: return VKA_OP_R_X1;
    case OC_X2: return VKA_OP_R_X2;
    case OC_Y: return VKA_OP_R_Y;
    case OC_SAVED0: case OC_SAVED1: return VKA_OP_R_SAVED;
    case OC_STATE0: case OC_STATE1: return VKA_OP_R_STATE;
    default: return VKA_OP_R_DY;
    }
}

/* A view of samples [n0, n0 + k) of a per-sample tensor, the whole tensor otherwise. */
static struct vka_tensor view(const struct vka_tensor *t, const struct oc_tensor *h,
                              uint32_t n0, uint32_t k)
{
    struct vka_tensor v = *t;
    v.owns_buf = false;
    if (h->kind == OC_ACT) {
        v.off += (uint64_t)n0 * h->h * h->w * t->cs;
        v.n = k;
    } else if (h->per_sample) {
        v.off += n0 * oc_per_sample(h);
        v.n = (uint32_t)(k * oc_per_sample(h));
    }
    return v;
}

static void record(struct vka_cmd *cmd, vka_op_rec_fn fn, const struct vka_op_args *a,
                   const char *what, const char *pass)
{
    vka_clear_error();
    int ret = fn(cmd, a);
    cr_assert_eq(ret, 0, "%s: %s failed (%d): %s", what, pass, ret, vka_last_error());
}

/* fwd then bwd of r on ctx, the batch split into micro-batches of split[i] samples
 * (NULL: one); with poison, what bwd does not read is NaN before it, and an op whose bwd
 * may run in two calls (VKA_OP_SPLIT) runs so, x0 NaN before the second. */
static void dev_run(struct vka_ctx *ctx, const struct oc_run *r, const uint32_t *split,
                    bool poison, const bool which[3], struct res *res, const char *what)
{
    const unsigned flags = vka_ops[r->op].flags;
    const struct oc_tensor *h = r->t;
    struct vka_tensor t[OC_NSLOTS] = { 0 };
    for (int s = 0; s < OC_NSLOTS; s++) {
        if (!on_device(r, s))
            continue;
        /* outputs bwd does not read may start anywhere (conv's at a vec4) */
        bool out = !r->e->vec4_outputs && (s >= OC_DX0 || (s == OC_Y && (flags & VKA_OP_LOSS)));
        bool nan = (s == OC_Y && !(flags & VKA_OP_LOSS)) || s == OC_SAVED0 || s == OC_SAVED1;
        t[s] = dev_make(ctx, &h[s], nan ? NULL : h[s].f,
                        out ? oc_range(0, 160) : 4 * oc_range(0, 40));
    }
    uint32_t whole = r->c.n, nsplit = 1;
    if (split)
        for (nsplit = 0; split[nsplit]; nsplit++)
            ;
    else
        split = &whole;

    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    const bool two = poison && (flags & VKA_OP_SPLIT);
    for (int pass = 0; pass < (two ? 3 : 2); pass++) {
        cr_assert_eq(vka_cmd_begin(cmd), 0);
        for (uint32_t i = 0, n0 = 0; i < nsplit; n0 += split[i++]) {
            struct vka_tensor v[OC_NSLOTS];
            for (int s = 0; s < OC_NSLOTS; s++)
                if (t[s].buf)
                    v[s] = view(&t[s], &h[s], n0, split[i]);
            struct vka_op_args a = { .p = r->p };
            for (int k = 0; k < 3; k++) {
                bool given = t[OC_X0 + k].buf && !h[OC_X0 + k].absent;
                if (pass && k < 2 && (r->c.f & OC_BWD_NO_X))
                    given = false;
                a.x[k] = given ? &v[OC_X0 + k] : NULL;
                /* two calls: the parameter gradients, then the input gradient */
                bool part = !two || (pass == 1) == (k > 0);
                a.dx[k] = pass && part && t[OC_DX0 + k].buf && which[k] ? &v[OC_DX0 + k] : NULL;
            }
            a.y = &v[OC_Y];
            for (int k = 0; k < 2; k++) {
                a.saved[k] = t[OC_SAVED0 + k].buf ? &v[OC_SAVED0 + k] : NULL;
                a.state[k] = t[OC_STATE0 + k].buf ? &v[OC_STATE0 + k] : NULL;
            }
            a.dy = pass && t[OC_DY].buf ? &v[OC_DY] : NULL;
            record(cmd, pass ? vka_ops[r->op].bwd : vka_ops[r->op].fwd, &a, what,
                   pass ? "bwd" : "fwd");
        }
        test_run(cmd);
        if (pass == 1 && two && t[OC_X0].buf && !h[OC_X0].absent)
            dev_poison(&t[OC_X0]);
        if (pass)
            continue;
        for (int s = OC_Y; s <= OC_STATE1; s++)
            if (t[s].buf)
                res->f[s] = dev_read(&t[s], &h[s], what, s);
        if (!poison)
            continue;
        for (int s = OC_X0; s <= OC_STATE1; s++)
            if (t[s].buf && h[s].kind != OC_I32 && !h[s].absent && !(flags & read_flag(s)))
                dev_poison(&t[s]);
    }
    for (int s = OC_DX0; s <= OC_DX2; s++)
        if (t[s].buf)
            res->f[s] = dev_read(&t[s], &h[s], what, s);
    vka_cmd_destroy(&cmd);
    for (int s = 0; s < OC_NSLOTS; s++)
        if (t[s].buf)
            vka_tensor_destroy(&t[s]);
}

/* An INPLACE_Y op's forward given y == x0 (the planner's in-place forward) writes over x0
 * the bits want's forward wrote into a y of its own. */
static void check_inplace_fwd(struct vka_ctx *ctx, const struct oc_run *r,
                              const struct res *want, const char *what)
{
    const struct oc_tensor *h = r->t;
    struct vka_tensor t[3] = { 0 };
    struct vka_op_args a = { .p = r->p };
    for (int k = 0; k < 3; k++)
        if (on_device(r, OC_X0 + k) && !h[OC_X0 + k].absent) {
            t[k] = dev_make(ctx, &h[OC_X0 + k], h[OC_X0 + k].f, 4 * oc_range(0, 40));
            a.x[k] = &t[k];
        }
    a.y = &t[0];
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    record(cmd, vka_ops[r->op].fwd, &a, what, "fwd in place");
    test_run(cmd);
    vka_cmd_destroy(&cmd);
    float *got = dev_read(&t[0], &h[OC_Y], what, OC_Y);
    for (uint64_t i = 0; i < oc_numel(&h[OC_Y]); i++)
        if (memcmp(&got[i], &want->f[OC_Y][i], sizeof(float)))
            cr_assert_fail("%s: y element %llu is %a in place, %a into its own y", what,
                           (unsigned long long)i, got[i], want->f[OC_Y][i]);
    free(got);
    for (int k = 0; k < 3; k++)
        if (t[k].buf)
            vka_tensor_destroy(&t[k]);
}

/* An INPLACE_DX op's backward given dx0 == dy (the planner's in-place backward) writes
 * over dy the bits it adds into a dx0 filled with +0; with fresh, a FRESH_DX op's
 * backward told dx0_fresh writes over a dx0 of NaN those bits (every element: a NaN left
 * shows). Forward first, as in dev_run. */
static void check_inplace_bwd(struct vka_ctx *ctx, const struct oc_run *r, bool fresh,
                              const char *what)
{
    const struct oc_tensor *h = r->t;
    struct vka_tensor t[OC_NSLOTS] = { 0 }, dy2, dx0;
    for (int s = 0; s < OC_NSLOTS; s++)
        if (on_device(r, s) && s != OC_DX1 && s != OC_DX2 && s != OC_DX0)
            t[s] = dev_make(ctx, &h[s], s == OC_Y || s == OC_SAVED0 || s == OC_SAVED1 ? NULL
                                                                                   : h[s].f,
                            4 * oc_range(0, 40));
    float *zero = calloc(oc_numel(&h[OC_DX0]) + 1, sizeof(float));
    dx0 = dev_make(ctx, &h[OC_DX0], zero, 4 * oc_range(0, 40));
    dy2 = fresh ? dev_make(ctx, &h[OC_DX0], NULL, 4 * oc_range(0, 40))
                : dev_make(ctx, &h[OC_DY], h[OC_DY].f, 4 * oc_range(0, 40));
    free(zero);
    struct vka_op_args a = { .p = r->p };
    for (int k = 0; k < 3; k++)
        a.x[k] = t[OC_X0 + k].buf && !h[OC_X0 + k].absent ? &t[OC_X0 + k] : NULL;
    a.y = &t[OC_Y];
    for (int k = 0; k < 2; k++) {
        a.saved[k] = t[OC_SAVED0 + k].buf ? &t[OC_SAVED0 + k] : NULL;
        a.state[k] = t[OC_STATE0 + k].buf ? &t[OC_STATE0 + k] : NULL;
    }
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    record(cmd, vka_ops[r->op].fwd, &a, what, "fwd");
    struct vka_op_args b = a, c = a;
    b.dy = &t[OC_DY];
    b.dx[0] = &dx0;
    c.dy = fresh ? &t[OC_DY] : &dy2;
    c.dx[0] = &dy2;
    c.dx0_fresh = fresh;
    record(cmd, vka_ops[r->op].bwd, &b, what, "bwd");
    record(cmd, vka_ops[r->op].bwd, &c, what, fresh ? "bwd fresh" : "bwd in place");
    test_run(cmd);
    vka_cmd_destroy(&cmd);
    float *want = dev_read(&dx0, &h[OC_DX0], what, OC_DX0);
    float *got = dev_read(&dy2, &h[fresh ? OC_DX0 : OC_DY], what, fresh ? OC_DX0 : OC_DY);
    for (uint64_t i = 0; i < oc_numel(&h[OC_DX0]); i++)
        if (memcmp(&got[i], &want[i], sizeof(float)))
            cr_assert_fail("%s: dx0 element %llu is %a %s, %a added into zeros", what,
                           (unsigned long long)i, got[i],
                           fresh ? "written fresh over NaN" : "over dy", want[i]);
    free(want);
    free(got);
    vka_tensor_destroy(&dx0);
    vka_tensor_destroy(&dy2);
    for (int s = 0; s < OC_NSLOTS; s++)
        if (t[s].buf)
            vka_tensor_destroy(&t[s]);
}

/* ---- checks ---------------------------------------------------------------------------- */

static bool report;

static void check_ref(const struct oc_run *r, const struct res *res, const bool which[3],
                      const char *what)
{
    const bool loss = vka_ops[r->op].flags & VKA_OP_LOSS;
    for (int s = OC_Y; s < OC_NSLOTS; s++) {
        const float *got = res->f[s];
        if (!got || s == OC_DY)
            continue;
        uint64_t n = oc_numel(&r->t[s]);
        if (s >= OC_DX0 && !which[s - OC_DX0]) {
            cr_assert_eq(memcmp(got, r->t[s].f, n * sizeof(float)), 0,
                         "%s: %s was not asked for, but changed", what, oc_slot_name(s));
            continue;
        }
        double *tol = calloc(n ? n : 1, sizeof(double)), worst = 0;
        cr_assert(tol);
        r->e->tol(r, s, tol);
        for (uint64_t i = 0; i < n; i++) {
            double want = r->ref[s][i] + (s == OC_Y && loss ? (double)r->t[s].f[i] : 0.0);
            double err = fabs((double)got[i] - want);
            if (isnan(want) ? !isnan(got[i]) : !(err <= tol[i]))
                cr_assert_fail("%s: %s element %llu of %llu: got %.9g, want %.9g (|diff| %.3g "
                               "> bound %.3g)", what, oc_slot_name(s), (unsigned long long)i,
                               (unsigned long long)n, got[i], want, err, tol[i]);
            if (!isnan(want) && err > 0)
                worst = fmax(worst, tol[i] > 0 ? err / tol[i] : INFINITY);
        }
        if (report)
            cr_log_warn("%s: %s: worst error / bound %.3g", what, oc_slot_name(s), worst);
        free(tol);
    }
}

static void check_bits(const struct oc_run *r, const struct res *got, const struct res *want,
                       const char *what, const char *how)
{
    for (int s = OC_Y; s < OC_NSLOTS; s++) {
        if (!got->f[s] || !want->f[s])
            continue;
        uint64_t n = oc_numel(&r->t[s]);
        for (uint64_t i = 0; i < n; i++)
            if (memcmp(&got->f[s][i], &want->f[s][i], sizeof(float)))
                cr_assert_fail("%s: %s element %llu is %a %s, %a in one run", what,
                               oc_slot_name(s), (unsigned long long)i, got->f[s][i], how,
                               want->f[s][i]);
    }
}

static void check_case(struct ctxs *cs, enum vka_op op, const struct oc_case *c, size_t ci)
{
    struct oc_run r;
    char err[512], desc[256], what[400];
    cr_assert(oc_run_init(&r, op, c, OC_GEN_CHECK, err, sizeof(err)),
              "%s case %zu: refused: %s", vka_ops[op].name, ci, err);
    oc_run_ref_fwd(&r);
    oc_describe(&r, desc, sizeof(desc));
    bool which[3];
    for (int i = 0; i < 3; i++)
        which[i] = r.t[OC_DX0 + i].kind != OC_NONE && !(c->f & (OC_NO_DX0 << i));

    struct res res[NCFG] = { 0 };
    for (size_t k = 0; k < NCFG; k++) {
        if (!(c->f & cfgs[k].flag))
            continue;
        snprintf(what, sizeof(what), "%s [%s, case %zu]", desc, cfgs[k].name, ci);
        struct vka_ctx *ctx = ctx_get(cs, &cfgs[k], cfgs[k].base ? c->chunk : 0);
        dev_run(ctx, &r, NULL, true, which, &res[k], what);
        if (vka_ops[op].flags & VKA_OP_INPLACE_Y)
            check_inplace_fwd(ctx, &r, &res[k], what);
        if ((vka_ops[op].flags & VKA_OP_INPLACE_DX) && which[0])
            check_inplace_bwd(ctx, &r, false, what);
        if ((vka_ops[op].flags & VKA_OP_FRESH_DX) && which[0])
            check_inplace_bwd(ctx, &r, true, what);
        double *saved[2] = { NULL, NULL };
        for (int i = 0; i < 2; i++) {
            uint64_t n = oc_numel(&r.t[OC_SAVED0 + i]);
            saved[i] = calloc(n ? n : 1, sizeof(double));
            for (uint64_t j = 0; j < n; j++)
                saved[i][j] = res[k].f[OC_SAVED0 + i][j];
        }
        /* a norm's activation: the reference masks dy with the kernel's y, so that a
         * normalised value within rounding of 0 falls on the same side in both (the
         * kernel's bwd computes its fwd's value again: a mask that differed from its
         * fwd's y would fail here) */
        double *y = NULL;
        if (vka_ops[op].params == VKA_PARAMS_norm && r.p.norm.act != VKA_NORM_ACT_NONE) {
            uint64_t n = oc_numel(&r.t[OC_Y]);
            y = calloc(n ? n : 1, sizeof(double));
            for (uint64_t j = 0; j < n; j++)
                y[j] = res[k].f[OC_Y][j];
        }
        oc_run_ref_bwd(&r, (const double *const *)saved, y, which);
        free(saved[0]);
        free(saved[1]);
        free(y);
        check_ref(&r, &res[k], which, what);
        for (size_t b = 0; b < NCFG; b++)
            if (cfgs[k].base == cfgs[b].flag && (c->f & cfgs[b].flag))
                check_bits(&r, &res[k], &res[b], what, "in chunks");
        if (!(c->f & OC_SPLIT) || cfgs[k].base)
            continue;
        static const uint32_t splits[][9] = { { 4, 4 }, { 3, 3, 2 },
                                              { 1, 1, 1, 1, 1, 1, 1, 1 } };
        cr_assert_eq(r.c.n, 8, "%s: a split case is a batch of 8", desc);
        for (size_t sp = 0; sp < sizeof(splits) / sizeof(splits[0]); sp++) {
            struct res part = { 0 };
            char how[64];
            snprintf(how, sizeof(how), "as micro-batches (split %zu)", sp + 1);
            dev_run(ctx, &r, splits[sp], false, which, &part, what);
            check_bits(&r, &part, &res[k], what, how);
            res_free(&part);
        }
    }
    for (size_t k = 0; k < NCFG; k++)
        res_free(&res[k]);
    oc_run_free(&r);
}

static void check_op(enum vka_op op)
{
    test_seed(vka_ops[op].name);
    oc_seed(test_rand_u64());
    report = getenv("OPCHECK_REPORT") != NULL;
    const struct oc_entry *e = oc_entry(op);
    cr_assert(e, "%s has no entry in tests/opcases.c", vka_ops[op].name);
    struct ctxs cs = { .n = 0 };
    size_t ran = 0;
    for (size_t i = 0; i < e->ncases; i++) {
        if (!(e->cases[i].f & (OC_TEXEL | OC_STORAGE | OC_TILED | OC_CHUNKED)))
            continue;
        check_case(&cs, op, &e->cases[i], i);
        ran++;
    }
    cr_assert(ran, "%s has no device case", vka_ops[op].name);
    ctxs_done(&cs);
}

/* one test per row of ops.def */
#define VKA_OP(name, ...)                                                                 \
    Test(opcheck, name) { check_op(VKA_OP_##name); }
#include "ops/ops.def"
#undef VKA_OP
