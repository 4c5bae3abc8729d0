/* vkaccum-parity-dump: runs every op of src/ops/ops.def forward and backward on one
 * Vulkan device, through the op table, on the parity cases of its entry in
 * tests/opcases.c (OC_PARITY: a few representative shapes and parameters per op, inputs
 * valid for PyTorch), and writes one safetensors file per case into OUTDIR for
 * tools/parity/ops.py, which redoes each case in PyTorch.
 *
 * A file holds the slots of struct vka_op_args under their names, in PyTorch's layouts
 * (NCHW activations; conv weights as PyTorch's OIHW, conv_transpose2d's IOHW; flat
 * tensors rank 1; i32 class-id targets (N, H, W); a saved tensor of one value per
 * element of y, max_pool2d's argmax, in y's NCHW order):
 *   inputs   x0 x1 x2, state0_in state1_in (running statistics before fwd), dy
 *   outputs  y, saved0 saved1, state0 state1 (after fwd), dx0 dx1 dx2
 * Gradients start at zero, so dx* is vkaccum's gradient itself, for each x slot with a
 * gradient; a saved tensor that fwd leaves untouched (batch_norm in eval mode) is not
 * written. A loss adds into a zeroed y and runs bwd with p.loss.scale = 1 (the
 * gradient of the sum); one whose bwd reads dy (dice) gets the dy its entry computes
 * from the reference's sums (opcases.c: vka_dice_loss, smooth 1), stored beside the
 * objective it came from as "loss" (F64). Metadata: op, case, seed, device, loss (1 for
 * the loss family) and the op's parameters by ops.def's params column (stride_h,
 * stride_w, pad_h, pad_w, out_pad_h, out_pad_w; eps, momentum, training, groups; k,
 * stride, pad; oh, ow; ignore_index, scale, hinge_linear, target; slope; alpha), as
 * decimal strings.
 *
 * Usage: vkaccum-parity-dump [--device SEL] [--seed N] OUTDIR */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "ops/ops.h"
#include "safetensors.h"
#include "tests/opcases.h"

#define MAX_META 24

struct meta {
    uint32_t n;
    struct vka_st_meta m[MAX_META];
    char buf[MAX_META][2][64];
};

static void meta_add(struct meta *m, const char *key, const char *fmt, ...) VKA_PRINTF(3, 4);

static void meta_add(struct meta *m, const char *key, const char *fmt, ...)
{
    if (m->n == MAX_META)
        return;
    char (*kv)[64] = m->buf[m->n];
    snprintf(kv[0], sizeof(kv[0]), "%s", key);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(kv[1], sizeof(kv[1]), fmt, ap);
    va_end(ap);
    m->m[m->n++] = (struct vka_st_meta){ .key = kv[0], .value = kv[1] };
}

/* the op's parameters, by the member of union vka_op_params it reads */
static void meta_params(struct meta *m, const struct oc_run *r)
{
    const union vka_op_params *p = &r->p;
    switch (vka_ops[r->op].params) {
    case VKA_PARAMS_conv:
        meta_add(m, "stride_h", "%u", p->conv.stride[0]);
        meta_add(m, "stride_w", "%u", p->conv.stride[1]);
        meta_add(m, "pad_h", "%u", p->conv.pad[0]);
        meta_add(m, "pad_w", "%u", p->conv.pad[1]);
        meta_add(m, "out_pad_h", "%u", p->conv.out_pad[0]);
        meta_add(m, "out_pad_w", "%u", p->conv.out_pad[1]);
        break;
    case VKA_PARAMS_norm:
        meta_add(m, "eps", "%.9g", p->norm.eps);
        meta_add(m, "momentum", "%.9g", p->norm.momentum);
        meta_add(m, "training", "%d", p->norm.training);
        meta_add(m, "groups", "%u", p->norm.groups);
        meta_add(m, "act", "%d", (int)p->norm.act); /* enum vka_norm_act */
        meta_add(m, "act_slope", "%.9g", p->norm.slope);
        break;
    case VKA_PARAMS_pool:
        meta_add(m, "k", "%u", p->pool.k);
        meta_add(m, "stride", "%u", p->pool.stride);
        meta_add(m, "pad", "%u", p->pool.pad);
        break;
    case VKA_PARAMS_resize:
        meta_add(m, "oh", "%u", p->resize.oh);
        meta_add(m, "ow", "%u", p->resize.ow);
        break;
    case VKA_PARAMS_loss:
        meta_add(m, "ignore_index", "%d", p->loss.ignore_index);
        meta_add(m, "scale", "%.9g", p->loss.scale);
        meta_add(m, "hinge_linear", "%d", p->loss.hinge_linear);
        meta_add(m, "target", "%.9g", p->loss.target);
        break;
    case VKA_PARAMS_slope:
        meta_add(m, "slope", "%.9g", p->slope);
        break;
    case VKA_PARAMS_alpha:
        meta_add(m, "alpha", "%.9g", p->alpha);
        break;
    case VKA_PARAMS_none:
        break;
    }
}

/* ---- one case ---------------------------------------------------------------------------- */

/* A tensor of the file: name, shape, host data (owned). */
struct entry {
    char name[16];
    enum vka_st_dtype dtype;
    uint32_t rank;
    uint64_t shape[4];
    void *data;
};

struct file {
    struct entry e[20];
    size_t n;
    struct meta meta;
    double loss;
};

/* adds host data of h's shape (floats, or int32 for I32) under name; takes data */
static void add(struct file *f, const char *name, const struct oc_tensor *h, void *data)
{
    struct entry *e = &f->e[f->n++];
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->dtype = h->kind == OC_I32 ? VKA_ST_I32 : VKA_ST_F32;
    e->data = data;
    if (h->kind == OC_ACT || h->kind == OC_WEIGHT) {
        e->rank = 4;
        uint64_t d[4] = { h->n, h->c, h->h, h->w };
        memcpy(e->shape, d, sizeof(d));
    } else if (h->kind == OC_I32) { /* class ids (N, H, W) */
        e->rank = 3;
        e->shape[0] = h->n, e->shape[1] = h->h, e->shape[2] = h->w;
    } else {
        e->rank = 1;
        e->shape[0] = oc_numel(h);
    }
}

static void *copy_of(const void *src, uint64_t n)
{
    void *d = malloc((n ? n : 1) * 4);
    if (d && n)
        memcpy(d, src, n * 4);
    return d;
}

static int make(struct vka_ctx *ctx, const struct oc_tensor *h, const void *data,
                struct vka_tensor *t)
{
    struct vka_tensor s = oc_tensor_shape(h);
    int ret = vka_tensor_create(ctx, &(struct vka_tensor_params){
        .n = s.n, .c = s.c, .h = s.h, .w = s.w, .layout = s.layout, .dtype = s.dtype,
        .cat = VKA_MEM_ACTIVATIONS }, t);
    return ret < 0 ? ret : vka_tensor_upload(t, data);
}

/* y's (N,H,W,C) order, a LIKE_Y saved tensor's, to NCHW */
static float *nhwc_to_nchw(const float *src, const struct oc_tensor *y)
{
    uint64_t C = y->c, HW = (uint64_t)y->h * y->w, n = oc_numel(y);
    float *out = malloc((n ? n : 1) * sizeof(float));
    if (out)
        for (uint64_t i = 0; i < n; i++)
            out[((i / (HW * C)) * C + i % C) * HW + i / C % HW] = src[i];
    return out;
}

static int record_run(struct vka_cmd *cmd, vka_op_rec_fn fn, const struct vka_op_args *a)
{
    int ret = vka_cmd_begin(cmd);
    if (ret < 0 || (ret = fn(cmd, a)) < 0)
        return ret;
    return vka_cmd_run(cmd);
}

static int run_case(struct vka_ctx *ctx, struct oc_run *r, struct file *f)
{
    const unsigned flags = vka_ops[r->op].flags;
    const struct oc_tensor *h = r->t;
    struct vka_tensor t[OC_NSLOTS] = { 0 };
    struct vka_op_args a = { .p = r->p };
    struct vka_cmd *cmd = NULL;
    static const char *const in_name[OC_NSLOTS] = {
        [OC_X0] = "x0", [OC_X1] = "x1", [OC_X2] = "x2", [OC_STATE0] = "state0_in",
        [OC_STATE1] = "state1_in", [OC_DY] = "dy" };
    int ret = 0;
    uint64_t ny = oc_numel(&h[OC_Y]);
    float *zeros = calloc(ny + 1, sizeof(float)), *nan = NULL;
    if (!zeros)
        return -ENOMEM;

    for (int s = 0; s < OC_NSLOTS && ret == 0; s++) {
        const struct oc_tensor *hs = &h[s];
        bool dev = hs->kind != OC_NONE && !hs->absent &&
                   (s != OC_DY || !(flags & VKA_OP_LOSS) || (flags & VKA_OP_R_DY));
        if (!dev || (s >= OC_DX0 && (r->c.f & (OC_NO_DX0 << (s - OC_DX0)))))
            continue;
        uint64_t n = oc_numel(hs);
        const void *data = hs->f;
        if (s == OC_Y) {
            data = zeros; /* a loss adds into zero; any other op writes y */
        } else if (s == OC_SAVED0 || s == OC_SAVED1) {
            free(nan);
            nan = malloc((n + 1) * sizeof(float));
            for (uint64_t i = 0; nan && i < n; i++)
                nan[i] = NAN; /* what fwd leaves NaN, it did not write */
            data = nan;
        } else if (s >= OC_DX0) {
            data = calloc(n + 1, sizeof(float));
        }
        if (!data)
            ret = -ENOMEM;
        else
            ret = make(ctx, hs, data, &t[s]);
        if (s >= OC_DX0)
            free((void *)data);
        if (ret == 0 && in_name[s])
            add(f, in_name[s], hs, copy_of(hs->f, n));
    }
    if (ret < 0)
        goto done;
    for (int i = 0; i < 3; i++)
        a.x[i] = t[OC_X0 + i].buf ? &t[OC_X0 + i] : NULL;
    a.y = &t[OC_Y];
    for (int i = 0; i < 2; i++) {
        a.saved[i] = t[OC_SAVED0 + i].buf ? &t[OC_SAVED0 + i] : NULL;
        a.state[i] = t[OC_STATE0 + i].buf ? &t[OC_STATE0 + i] : NULL;
    }
    if ((ret = vka_cmd_create(ctx, NULL, &cmd)) < 0 ||
        (ret = record_run(cmd, vka_ops[r->op].fwd, &a)) < 0)
        goto done;
    static const char *const out_name[OC_NSLOTS] = {
        [OC_Y] = "y", [OC_SAVED0] = "saved0", [OC_SAVED1] = "saved1", [OC_STATE0] = "state0",
        [OC_STATE1] = "state1", [OC_DX0] = "dx0", [OC_DX1] = "dx1", [OC_DX2] = "dx2" };
    for (int s = OC_Y; s <= OC_STATE1 && ret == 0; s++) {
        if (!t[s].buf)
            continue;
        uint64_t n = oc_numel(&h[s]);
        float *v = malloc((n + 1) * sizeof(float));
        if (!v || (ret = vka_tensor_download(&t[s], v)) < 0) {
            free(v);
            ret = ret < 0 ? ret : -ENOMEM;
            break;
        }
        bool written = s != OC_SAVED0 && s != OC_SAVED1;
        for (uint64_t i = 0; i < n && !written; i++)
            written = !isnan(v[i]);
        if (!written) {
            free(v);
            continue;
        }
        if ((s == OC_SAVED0 || s == OC_SAVED1) &&
            vka_ops[r->op].saved[s - OC_SAVED0] == VKA_SAVED_LIKE_Y) {
            float *o = nhwc_to_nchw(v, &h[OC_Y]);
            free(v);
            if (!(v = o)) {
                ret = -ENOMEM;
                break;
            }
            add(f, out_name[s], &h[OC_Y], v);
        } else {
            add(f, out_name[s], &h[s], v);
        }
    }
    if (ret < 0)
        goto done;
    a.dy = t[OC_DY].buf ? &t[OC_DY] : NULL;
    for (int i = 0; i < 3; i++)
        a.dx[i] = t[OC_DX0 + i].buf ? &t[OC_DX0 + i] : NULL;
    if ((ret = record_run(cmd, vka_ops[r->op].bwd, &a)) < 0)
        goto done;
    for (int s = OC_DX0; s <= OC_DX2 && ret == 0; s++) {
        if (!t[s].buf)
            continue;
        uint64_t n = oc_numel(&h[s]);
        float *v = malloc((n + 1) * sizeof(float));
        if (!v || (ret = vka_tensor_download(&t[s], v)) < 0)
            free(v), ret = ret < 0 ? ret : -ENOMEM;
        else
            add(f, out_name[s], &h[s], v);
    }
done:
    vka_cmd_destroy(&cmd);
    for (int s = 0; s < OC_NSLOTS; s++)
        if (t[s].buf)
            vka_tensor_destroy(&t[s]);
    free(zeros);
    free(nan);
    return ret;
}

static int write_file(struct file *f, const char *path)
{
    struct vka_st_tensor e[21];
    size_t n = 0;
    for (size_t i = 0; i < f->n; i++) {
        e[n] = (struct vka_st_tensor){ .name = f->e[i].name, .dtype = f->e[i].dtype,
                                       .ndim = f->e[i].rank, .data = f->e[i].data };
        memcpy(e[n].shape, f->e[i].shape, sizeof(f->e[i].shape));
        n++;
    }
    if (!isnan(f->loss))
        e[n++] = (struct vka_st_tensor){ .name = "loss", .dtype = VKA_ST_F64, .ndim = 1,
                                         .shape = { 1 }, .data = &f->loss };
    return vka_st_write(path, &(struct vka_st_write_params){
        .tensors = e, .n_tensors = n, .meta = f->meta.m, .n_meta = f->meta.n });
}

static void usage(FILE *f)
{
    fprintf(f, "usage: vkaccum-parity-dump [--device SEL] [--seed N] OUTDIR\n"
               "Runs every op forward and backward on random inputs and writes one\n"
               "safetensors file per case into OUTDIR for tools/parity/ops.py.\n");
}

int main(int argc, char **argv)
{
    const char *device = NULL, *outdir = NULL;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) {
            device = argv[++i];
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            char *end;
            seed = strtoull(argv[++i], &end, 0);
            if (*end || !seed) {
                fprintf(stderr, "vkaccum-parity-dump: --seed wants a non-zero integer, not "
                                "'%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] != '-' && !outdir) {
            outdir = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!outdir) {
        usage(stderr);
        return 2;
    }
    if (mkdir(outdir, 0777) < 0 && errno != EEXIST) {
        fprintf(stderr, "vkaccum-parity-dump: cannot create %s: %s\n", outdir,
                strerror(errno));
        return 1;
    }
    oc_seed(seed);

    struct vka_ctx *ctx = NULL;
    int ret = vka_ctx_create(&(struct vka_ctx_params){ .device = device, .validation = -1 },
                             &ctx);
    if (ret < 0) {
        fprintf(stderr, "vkaccum-parity-dump: %s\n", vka_last_error());
        return 1;
    }
    printf("device: %s, seed %" PRIu64 "\n", ctx->info.name, seed);

    int failed = 0;
    for (int op = 0; op < VKA_OP_COUNT; op++) {
        const struct oc_entry *e = oc_entry(op);
        int k = 0;
        for (size_t i = 0; e && i < e->ncases; i++) {
            if (!(e->cases[i].f & OC_PARITY))
                continue;
            char name[64], path[4096], err[256];
            snprintf(name, sizeof(name), "%s_%d", vka_ops[op].name, k++);
            snprintf(path, sizeof(path), "%s/%s.safetensors", outdir, name);
            struct oc_run r;
            struct file *f = calloc(1, sizeof(*f));
            if (!f) {
                failed++;
                break;
            }
            if (!oc_run_init(&r, op, &e->cases[i], OC_GEN_PARITY, err, sizeof(err))) {
                fprintf(stderr, "vkaccum-parity-dump: %s: %s\n", name, err);
                free(f);
                failed++;
                continue;
            }
            oc_run_ref_fwd(&r); /* p.loss.scale, dice's dy */
            f->loss = r.loss;
            char desc[256];
            oc_describe(&r, desc, sizeof(desc));
            meta_add(&f->meta, "case", "%s", name);
            meta_add(&f->meta, "seed", "%" PRIu64, seed);
            meta_add(&f->meta, "device", "%s", ctx->info.name);
            meta_add(&f->meta, "op", "%s", vka_ops[op].name);
            meta_add(&f->meta, "loss", "%d", !!(vka_ops[op].flags & VKA_OP_LOSS));
            meta_params(&f->meta, &r);
            if ((ret = run_case(ctx, &r, f)) < 0 || (ret = write_file(f, path)) < 0) {
                fprintf(stderr, "vkaccum-parity-dump: %s (%s): %s\n", name, desc,
                        vka_last_error());
                failed++;
            } else {
                printf("wrote %s: %s\n", path, desc);
            }
            for (size_t j = 0; j < f->n; j++)
                free(f->e[j].data);
            free(f);
            oc_run_free(&r);
        }
        if (!k) {
            fprintf(stderr, "vkaccum-parity-dump: op %s has no parity case in "
                            "tests/opcases.c\n", vka_ops[op].name);
            failed++;
        }
    }
    unsigned vmsg = vka_ctx_validation_count(ctx);
    vka_ctx_destroy(&ctx);
    if (vmsg) {
        fprintf(stderr, "vkaccum-parity-dump: the validation layer reported %u messages\n",
                vmsg);
        failed++;
    }
    return failed ? 1 : 0;
}
