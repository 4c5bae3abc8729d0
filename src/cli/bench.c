/* vkaccum bench: GEMM and per-op throughput on a device, timed with timestamp queries
 * (median over repeats after a warm-up), for both load paths and the shared-memory tiled
 * GEMMs, printed with ratios. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/bench.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "log.h"
#include "ops/ops.h"

static const char help_text[] =
    "usage: vkaccum bench gemm|ops|train|workloads [--device D] [--repeats N] [--json]\n"
    "       vkaccum bench train --workload seg256|seg1024|gan32 [--micro-batch B|auto]\n"
    "           [--steps N] [--warmup N] [--profile|--profile-layers] [--json]\n"
    "\n"
    "  gemm   the device's best GEMM: the conv kernel as a 1x1 convolution with\n"
    "         M=32768 N=64 K=576 (a conv-shaped GEMM), on the paths below\n"
    "  ops    GFLOP/s of conv2d (64->64, 3x3, 128x128, batch 4), conv_transpose2d\n"
    "         (64->32, 2x2 stride 2, 64x64 -> 128x128, batch 4) and linear (1024->1024,\n"
    "         batch 64): forward, input gradient and weight gradient, each beside the\n"
    "         best GEMM and the storage-buffer variant of itself; first, a GEMM of\n"
    "         the transposed conv forward's shape (M=65536 N=32 K=64) as a 1x1 conv\n"
    "  train  a training workload of tools/bench/workloads.json end to end: median ms\n"
    "         per optimizer step (a GAN: per iteration) after warm-up steps, img/s,\n"
    "         GFLOP/s (2 per multiply-add of the conv and linear GEMMs run) and the\n"
    "         device's peak MiB; --steps 0 builds it and prints its size only\n"
    "  workloads  the definitions bench train runs (and tools/bench/torch_ref.py)\n"
    "\n"
    "gemm and ops run every pass on texel-buffer loads, storage-buffer loads and, where\n"
    "it is a GEMM (forward, input gradient), storage loads with shared-memory weight\n"
    "tiles (the GPUs' path; VKACCUM_CONV_TILES). Ratios: texel/storage, tiled/storage.";

static const struct opt_desc opts[] = {
    OPT_ROW(struct bench_opts, "device", OPT_STR, device, NULL, "device index or a part of its name"),
    OPT_ROW(struct bench_opts, "repeats", OPT_INT, repeats, NULL,
            "gemm, ops: timed runs per measurement, 1 to 1000 (7); the median is printed"),
    OPT_ROW(struct bench_opts, "json", OPT_BOOL, json, NULL, "one JSON object instead of the table"),
    OPT_ROW(struct bench_opts, "workload", OPT_STR, workload, "seg256|seg1024|gan32",
            "train: the workload (tools/bench/workloads.json)"),
    OPT_ROW(struct bench_opts, "micro-batch", OPT_INT, micro, "auto",
            "train: the micro-batch, or auto: the largest whose predicted memory fits (auto)"),
    OPT_ROW(struct bench_opts, "steps", OPT_INT, steps, NULL,
            "train: timed optimizer steps (the workload's); 0: build and describe only"),
    OPT_ROW(struct bench_opts, "warmup", OPT_INT, warmup, NULL,
            "train: untimed steps first (the workload's)"),
    OPT_ROW(struct bench_opts, "batch", OPT_INT, batch, NULL,
            "train: override the effective batch (figures then are not the workload's)"),
    OPT_ROW(struct bench_opts, "size", OPT_INT, size, NULL,
            "train: override the image size (figures then are not the workload's)"),
    OPT_ROW(struct bench_opts, "accumulate", OPT_STR, accumulate, "ordered|exact", "how gradients and losses are summed: ordered (float32, in sample order: any micro-batch split gives the same bits) or exact (96-bit fixed point, 16 bytes more per parameter: any split and order, over ranks too, gives the same bits) (ordered)"),
    OPT_ROW(struct bench_opts, "profile", OPT_BOOL, profile, NULL,
            "train: then one more step timed per op and pass (timestamp queries)"),
    OPT_ROW(struct bench_opts, "profile-layers", OPT_BOOL, profile_layers, NULL,
            "train: --profile with a row per layer: op, input>output channels, output size"),
};

enum kind { CONV, CONVT, LINEAR };
enum pass { FWD, DGRAD, WGRAD };

struct bench_shape {
    const char *name;
    enum kind kind;
    uint32_t N, C, H, W, K, R, S, stride, pad;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static float *randn(size_t n, uint64_t *state)
{
    float *a = malloc((n ? n : 1) * 4);
    for (size_t i = 0; i < n; i++) {
        *state = *state * 6364136223846793005ull + 1442695040888963407ull;
        a[i] = (float)((*state >> 40) * (1.0 / (1ull << 24))) - 0.5f;
    }
    return a;
}

struct bench_tensors {
    struct vka_tensor x, w, b, y, dy, dx, dw, db;
    uint32_t P, Q;
};

static int make(struct vka_ctx *ctx, const struct bench_shape *s, struct bench_tensors *t)
{
    uint64_t rng = 42;
    uint32_t P, Q;
    if (s->kind == CONVT) {
        P = (s->H - 1) * s->stride - 2 * s->pad + s->R;
        Q = (s->W - 1) * s->stride - 2 * s->pad + s->S;
    } else {
        P = (s->H + 2 * s->pad - s->R) / s->stride + 1;
        Q = (s->W + 2 * s->pad - s->S) / s->stride + 1;
    }
    t->P = P;
    t->Q = Q;
    uint32_t wn = s->kind == CONVT ? s->C : s->K, wc = s->kind == CONVT ? s->K : s->C;
    struct { struct vka_tensor *t; struct vka_tensor_params p; } all[] = {
        { &t->x, { s->N, s->C, s->H, s->W, VKA_LAYOUT_NHWC4, VKA_F32, VKA_MEM_ACTIVATIONS } },
        { &t->dx, { s->N, s->C, s->H, s->W, VKA_LAYOUT_NHWC4, VKA_F32, VKA_MEM_ACTIVATIONS } },
        { &t->y, { s->N, s->K, P, Q, VKA_LAYOUT_NHWC4, VKA_F32, VKA_MEM_ACTIVATIONS } },
        { &t->dy, { s->N, s->K, P, Q, VKA_LAYOUT_NHWC4, VKA_F32, VKA_MEM_ACTIVATIONS } },
        { &t->w, { wn, wc, s->R, s->S, VKA_LAYOUT_WEIGHT, VKA_F32, VKA_MEM_PARAMS } },
        { &t->dw, { wn, wc, s->R, s->S, VKA_LAYOUT_WEIGHT, VKA_F32, VKA_MEM_GRADS } },
        { &t->b, { s->K, 1, 1, 1, VKA_LAYOUT_FLAT, VKA_F32, VKA_MEM_PARAMS } },
        { &t->db, { s->K, 1, 1, 1, VKA_LAYOUT_FLAT, VKA_F32, VKA_MEM_GRADS } },
    };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        int ret = vka_tensor_create(ctx, &all[i].p, all[i].t);
        if (ret < 0)
            return ret;
        float *data = randn(vka_tensor_numel(all[i].t), &rng);
        ret = vka_tensor_upload(all[i].t, data);
        free(data);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static void destroy(struct bench_tensors *t)
{
    struct vka_tensor *all[] = { &t->x, &t->w, &t->b, &t->y, &t->dy, &t->dx, &t->dw, &t->db };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        vka_tensor_destroy(all[i]);
}

/* Median milliseconds of one pass (all its dispatches) over `repeats` timed replays. */
static int time_pass(struct vka_ctx *ctx, const struct bench_shape *s, enum pass pass,
                     struct bench_tensors *t, int repeats, double *ms_out)
{
    struct vka_cmd *cmd = NULL;
    struct vka_op_args a = {
        .p.conv = { .stride = { s->stride, s->stride }, .pad = { s->pad, s->pad } },
        .x = { &t->x, &t->w, &t->b }, .y = &t->y, .dy = &t->dy,
        .dx = { pass == DGRAD ? &t->dx : NULL, pass == WGRAD ? &t->dw : NULL, NULL },
    };
    int ret = vka_cmd_create(ctx, &(struct vka_cmd_params){ .timing = true }, &cmd);
    if (ret < 0)
        return ret;
    static const vka_op_rec_fn fwd[] = { vka_conv2d_fwd, vka_conv_transpose2d_fwd, vka_linear_fwd };
    static const vka_op_rec_fn bwd[] = { vka_conv2d_bwd, vka_conv_transpose2d_bwd, vka_linear_bwd };
    double *ms = calloc((size_t)repeats, sizeof(double));
    if ((ret = vka_cmd_begin(cmd)) < 0 ||
        (ret = (pass == FWD ? fwd : bwd)[s->kind](cmd, &a)) < 0 ||
        (ret = vka_cmd_run(cmd)) < 0) /* warm-up: pipelines built, caches warm */
        goto out;
    for (int r = 0; r < repeats; r++) {
        if ((ret = vka_cmd_submit_wait(cmd, 600000)) < 0)
            goto out;
        double d[64];
        uint32_t n = vka_cmd_timings(cmd, d, 64);
        for (uint32_t i = 0; i < n; i++)
            ms[r] += d[i];
    }
    qsort(ms, (size_t)repeats, sizeof(double), cmp_double);
    *ms_out = ms[repeats / 2];
out:
    free(ms);
    vka_cmd_destroy(&cmd);
    return ret;
}

static double flops(const struct bench_shape *s, const struct bench_tensors *t)
{
    /* every pass is the same multiply-add count: the conv's */
    uint32_t small_h = s->kind == CONVT ? s->H : t->P, small_w = s->kind == CONVT ? s->W : t->Q;
    return 2.0 * s->N * small_h * small_w * s->K * s->C * s->R * s->S;
}

enum path { TEXEL, STORAGE, TILED, NPATH };

struct result {
    const char *name, *pass;
    double gflops[NPATH]; /* 0: not measured (the weight gradient has no tiled variant) */
};

static int measure(struct vka_ctx *ctx, const struct bench_shape *s, int npass, int repeats,
                   struct result *res)
{
    static const char *pass_names[] = { "forward", "input grad", "weight grad" };
    struct bench_tensors t = { 0 };
    int ret = make(ctx, s, &t);
    for (int p = 0; p < npass && ret == 0; p++) {
        res[p].name = s->name;
        res[p].pass = pass_names[p];
        for (int path = 0; path < NPATH && ret == 0; path++) {
            res[p].gflops[path] = 0;
            if (path == TILED && p == WGRAD)
                continue;
            ctx->profile.load = path == TEXEL ? VKA_LOAD_TEXEL : VKA_LOAD_STORAGE;
            ctx->profile.conv_tiles = path == TILED;
            double ms = 0;
            ret = time_pass(ctx, s, (enum pass)p, &t, repeats, &ms);
            res[p].gflops[path] = ms > 0 ? flops(s, &t) / (ms * 1e6) : 0;
        }
    }
    destroy(&t);
    return ret;
}

static double ratio(double a, double b)
{
    return a > 0 && b > 0 ? a / b : 0;
}

/* Whether the options given fit the benchmark: train's only with train. */
static int check_for(const char *what, const struct bench_opts *o)
{
    bool train = !strcmp(what, "train");
    if (train && !o->workload[0])
        return cli_usage_error("bench", "train: say which --workload (seg256, seg1024, gan32)");
    if (!train && (o->workload[0] || o->micro || o->steps >= 0 || o->warmup >= 0 ||
                   o->batch >= 0 || o->size >= 0 || o->profile || o->profile_layers ||
                   o->accumulate[0]))
        return cli_usage_error("bench", "--workload, --micro-batch, --steps, --warmup, "
                               "--batch, --size, --accumulate, --profile and --profile-layers "
                               "belong to bench train");
    return 0;
}

int cli_bench(int argc, char **argv)
{
    struct bench_opts opt = { .repeats = 7, .steps = -1, .warmup = -1, .batch = -1,
                              .size = -1 };
    bool help;
    int first, ret = cli_opts_parse_operands("bench", argc, argv, opts, OPT_COUNT(opts), &opt,
                                             &help, &first);
    if (ret)
        return ret;
    if (help) {
        cli_opts_help(opts, OPT_COUNT(opts), help_text, NULL, NULL);
        return 0;
    }
    if (opt.repeats < 1 || opt.repeats > 1000)
        return cli_usage_error("bench", "--repeats %d: give 1 to 1000", opt.repeats);
    if (first >= argc)
        return cli_usage_error("bench", "say what to measure: gemm, ops, train or workloads");
    const char *what = argv[first];
    if (strcmp(what, "gemm") && strcmp(what, "ops") && strcmp(what, "train") &&
        strcmp(what, "workloads"))
        return cli_usage_error("bench", "unknown benchmark '%s' (gemm, ops, train or "
                               "workloads)", what);
    if (first + 1 < argc)
        return cli_usage_error("bench", "unexpected argument '%s'", argv[first + 1]);
    if ((ret = check_for(what, &opt)))
        return ret;
    if (!strcmp(what, "train"))
        return bench_train(&opt);
    if (!strcmp(what, "workloads"))
        return bench_workloads(&opt);
    int repeats = opt.repeats;

    struct vka_ctx *ctx;
    if (vka_ctx_create(&(struct vka_ctx_params){ .device = opt.device[0] ? opt.device : NULL,
                                             .validation = -1 }, &ctx) < 0) {
        fprintf(stderr, "vkaccum bench: %s\n", vka_last_error());
        return 1;
    }
    if (!ctx->info.timestamps) {
        fprintf(stderr, "vkaccum bench: device %s has no compute timestamps\n", ctx->info.name);
        vka_ctx_destroy(&ctx);
        return 1;
    }
    static const struct bench_shape gemm = { "gemm M=32768 N=64 K=576", CONV, 1, 576, 128, 256,
                                             64, 1, 1, 1, 0 };
    /* The transposed conv's forward is one GEMM of K = 64 per parity class: this 1x1
     * convolution has the same M, N and K in all, so the two rows tell what the shape
     * costs (one output store per 64 multiply-adds) from what the scatter path adds. */
    static const struct bench_shape gemm_convt = { "gemm M=65536 N=32 K=64", CONV, 4, 64,
                                                   128, 128, 32, 1, 1, 1, 0 };
    static const struct bench_shape ops[] = {
        { "conv2d 64->64 3x3 128x128 b4", CONV, 4, 64, 128, 128, 64, 3, 3, 1, 1 },
        { "conv_transpose2d 64->32 2x2 s2 b4", CONVT, 4, 64, 64, 64, 32, 2, 2, 2, 0 },
        { "linear 1024->1024 b64", LINEAR, 64, 1024, 1, 1, 1024, 1, 1, 1, 0 },
    };
    struct result res[2 + 3 * 3];
    int nres = 0;
    ret = measure(ctx, &gemm, 1, repeats, &res[nres]);
    nres++;
    if (!strcmp(what, "ops")) {
        if (ret == 0)
            ret = measure(ctx, &gemm_convt, 1, repeats, &res[nres++]);
        for (size_t i = 0; i < 3 && ret == 0; i++, nres += 3)
            ret = measure(ctx, &ops[i], 3, repeats, &res[nres]);
    }
    if (ret < 0) {
        fprintf(stderr, "vkaccum bench: %s\n", vka_last_error());
        vka_ctx_destroy(&ctx);
        return 1;
    }
    double top[2 + 3 * 3] = { 0 }; /* each row's fastest path */
    for (int i = 0; i < nres; i++)
        for (int path = 0; path < NPATH; path++)
            if (res[i].gflops[path] > top[i])
                top[i] = res[i].gflops[path];
    double best = top[0];
    if (opt.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "device", ctx->info.name);
        cJSON_AddNumberToObject(o, "repeats", repeats);
        cJSON *arr = cJSON_AddArrayToObject(o, "results");
        for (int i = 0; i < nres; i++) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "op", res[i].name);
            cJSON_AddStringToObject(r, "pass", res[i].pass);
            cJSON_AddNumberToObject(r, "gflops_texel", res[i].gflops[TEXEL]);
            cJSON_AddNumberToObject(r, "gflops_storage", res[i].gflops[STORAGE]);
            if (res[i].gflops[TILED] > 0)
                cJSON_AddNumberToObject(r, "gflops_tiled", res[i].gflops[TILED]);
            cJSON_AddItemToArray(arr, r);
        }
        char *s = cJSON_Print(o);
        puts(s);
        free(s);
        cJSON_Delete(o);
    } else {
        printf("device %s, median of %d runs, GFLOP/s\n", ctx->info.name, repeats);
        printf("%-36s %-12s %9s %9s %9s %9s %10s %10s\n", "op", "pass", "texel", "storage",
               "tiled", "tex/stor", "tiled/stor", "/ bestGEMM");
        for (int i = 0; i < nres; i++) {
            char tiled[16] = "-", tr[16] = "-";
            if (res[i].gflops[TILED] > 0) {
                snprintf(tiled, sizeof(tiled), "%.2f", res[i].gflops[TILED]);
                snprintf(tr, sizeof(tr), "%.2f",
                         ratio(res[i].gflops[TILED], res[i].gflops[STORAGE]));
            }
            printf("%-36s %-12s %9.2f %9.2f %9s %9.2f %10s %10.2f\n", res[i].name, res[i].pass,
                   res[i].gflops[TEXEL], res[i].gflops[STORAGE], tiled,
                   ratio(res[i].gflops[TEXEL], res[i].gflops[STORAGE]), tr, ratio(top[i], best));
        }
    }
    vka_ctx_destroy(&ctx);
    return 0;
}
