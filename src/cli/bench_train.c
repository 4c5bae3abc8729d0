/* vkaccum bench train and bench workloads: the training workloads of
 * tools/bench/workloads.json (embedded at build time; tools/bench/torch_ref.py reads the
 * same file), built through the engines (src/seg.h with a synthetic `shapes` loader,
 * src/gan.h with uniform noise as its real images) at the micro-batch training would
 * pick (--micro-batch auto: the engine's memory prediction, cli/fit.h), and timed end
 * to end: the median wall time of an optimizer step (a seg window; a GAN iteration:
 * d_steps D windows and one G window) after warm-up steps, images per second (the
 * effective batch per step), achieved GFLOP/s (vka_graph_flops: 2 per multiply-add of
 * every conv, transposed conv and linear GEMM the step runs) and the device's peak
 * memory (the accountant's, vka_mem_get_stats). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/bench.h"
#include "cli/cli.h"
#include "cli/fit.h"
#include "cli/profile.h"
#include "datasets/dataset.h"
#include "gan.h"
#include "log.h"
#include "rng.h"
#include "seg.h"
#include "vka_config.h"

/* The definitions, parsed once; NULL after saying why (the file is embedded: a build
 * bug). */
static const cJSON *definitions(void)
{
    static cJSON *root;
    if (!root && !(root = cJSON_Parse(VKA_BENCH_WORKLOADS)))
        fprintf(stderr, "vkaccum bench: tools/bench/workloads.json as built is not JSON\n");
    return root;
}

/* One workload's definition; bad once a field it was asked for is missing. */
struct wl {
    const cJSON *def;
    const char *name;
    bool bad;
};

static const cJSON *field(struct wl *w, const char *key, cJSON_bool (*is)(const cJSON *),
                          const char *what)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(w->def, key);
    if (is(v))
        return v;
    if (!w->bad)
        fprintf(stderr, "vkaccum bench: workload %s has no %s \"%s\" "
                "(tools/bench/workloads.json)\n", w->name, what, key);
    w->bad = true;
    return NULL;
}

static double num(struct wl *w, const char *key)
{
    const cJSON *v = field(w, key, cJSON_IsNumber, "number");
    return v ? v->valuedouble : 0;
}

static bool is(struct wl *w, const char *key, const char *value)
{
    const cJSON *v = field(w, key, cJSON_IsString, "string");
    return v && !strcmp(v->valuestring, value);
}

/* A workload set up to run. */
struct tb {
    struct vka_ctx *ctx;
    struct wl w;
    bool gan, overridden, exact;
    uint32_t size, batch, micro, steps, warmup;
    enum vka_recompute mode;
    struct vka_seg_params sp;
    struct vka_gan_params gp;
    struct vka_seg *seg;
    struct vka_dataset *ds;
    struct vka_loader *loader;
    struct vka_gan *gan_e;
    uint64_t rng; /* the GAN's real images */
    double flops; /* per step */
    uint64_t params;
};

static void seg_params(struct tb *t)
{
    static const float mean[3] = { 0, 0, 0 }, std[3] = { 1, 1, 1 };
    struct wl *w = &t->w;
    const char *k[] = { "adamw", "adam", "sgd" };
    enum vka_optim_kind kinds[] = { VKA_OPTIM_ADAMW, VKA_OPTIM_ADAM, VKA_OPTIM_SGD };
    enum vka_optim_kind kind = VKA_OPTIM_ADAMW;
    for (int i = 0; i < 3; i++)
        kind = is(w, "optimizer", k[i]) ? kinds[i] : kind;
    t->sp = (struct vka_seg_params){
        .model = { .in_channels = (uint32_t)num(w, "in_channels"),
                   .classes = (uint32_t)num(w, "classes"), .depth = (uint32_t)num(w, "depth"),
                   .width = (uint32_t)num(w, "width"), .groups = (uint32_t)num(w, "groups"),
                   .norm = is(w, "norm", "batch") ? VKA_UNET_BATCH : VKA_UNET_GROUP,
                   .bilinear = is(w, "up", "bilinear"), .size = t->size },
        .train = true, .mean = mean, .std = std, .ignore_index = 255, .batch = t->batch,
        .optim = vka_optim_defaults(kind, 1),
        .lr = { .kind = VKA_LR_CONSTANT, .lr = num(w, "lr") },
    };
    t->sp.optim.weight_decay = num(w, "weight_decay");
    t->sp.optim.beta1 = num(w, "beta1");
    t->sp.optim.beta2 = num(w, "beta2");
    t->sp.optim.eps = num(w, "eps");
}

/* The GAN engine runs Adam (eps 1e-8, no weight decay) with the definition's rates. */
static void gan_params(struct tb *t)
{
    struct wl *w = &t->w;
    t->gp = (struct vka_gan_params){
        .model = { .res = t->size, .channels = (uint32_t)num(w, "channels"),
                   .width = (uint32_t)num(w, "width"), .z_dim = (uint32_t)num(w, "z_dim"),
                   .batch_norm = is(w, "norm", "batch") },
        .loss = is(w, "loss", "hinge") ? VKA_GAN_HINGE : VKA_GAN_BCE, .batch = t->batch,
        .d_steps = (uint32_t)num(w, "d_steps"), .lr_g = num(w, "lr"), .lr_d = num(w, "lr"),
        .beta1 = num(w, "beta1"), .beta2 = num(w, "beta2"), .ema_kimg = num(w, "ema_kimg"),
    };
    if (!is(w, "optimizer", "adam") || num(w, "eps") != 1e-8) {
        fprintf(stderr, "vkaccum bench: workload %s: the GAN engine runs Adam with eps 1e-8\n",
                w->name);
        w->bad = true;
    }
}

static int predict(void *user, uint32_t b, enum vka_recompute mode, struct vka_mem_plan *m)
{
    struct tb *t = user;
    if (t->gan) {
        struct vka_gan_params p = t->gp;
        p.micro = b;
        p.recompute = mode;
        return vka_gan_plan_memory(t->ctx, &p, m);
    }
    struct vka_seg_params p = t->sp;
    p.micro = b;
    p.recompute = mode;
    return vka_seg_plan_memory(t->ctx, &p, m);
}

/* The micro-batch (--micro-batch, or auto) and recompute mode; 1 after printing. */
static int fit(struct tb *t, int micro)
{
    struct vka_mem_stats ms;
    vka_mem_get_stats(t->ctx, &ms);
    struct fit f = { .cmd = "bench train", .fn = predict, .user = t, .batch = t->batch,
                     .micro = (uint32_t)micro, .recompute = "auto", .budget = ms.budget,
                     .budget_from = "the device's" };
    return fit_resolve(&f, &t->micro, &t->mode);
}

static int real_images(void *user, uint32_t n, float *x)
{
    struct tb *t = user;
    size_t len = (size_t)n * t->gp.model.channels * t->size * t->size;
    for (size_t i = 0; i < len; i++)
        x[i] = (float)((vka_rng_next(&t->rng) >> 40) * (2.0 / (1 << 24))) - 1.0f;
    return 0;
}

/* The parameters the workload trains, counted as PyTorch counts them (G_ema is a copy). */
static uint64_t count_params(struct vka_graph *g)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < vka_graph_nvals(g); i++) {
        const struct vka_val *v = vka_graph_val(g, (int)i);
        if (v->kind == VKA_VAL_PARAM && strncmp(v->name, "G_ema.", 6))
            n += (uint64_t)v->n * v->c * v->h * v->w;
    }
    return n;
}

/* The seg engine with a loader of `batch` generated images of the workload's size. */
static int open_seg(struct tb *t)
{
    struct vka_dataset_params dp = { .kind = VKA_DATA_SHAPES, .split = VKA_SPLIT_TRAIN,
                                     .count = t->batch, .width = t->size, .height = t->size };
    t->sp.micro = t->micro;
    t->sp.recompute = t->mode;
    int ret = vka_dataset_open(&dp, &t->ds);
    if (ret == 0)
        ret = vka_loader_create(&(struct vka_loader_params){
            .dataset = t->ds, .batch = t->micro, .aug = { .size = t->size } }, &t->loader);
    if (ret == 0)
        ret = vka_seg_create(t->ctx, &t->sp, &t->seg);
    if (ret == 0)
        ret = vka_seg_flops(t->seg, &t->flops);
    if (ret == 0)
        t->params = count_params(vka_seg_graph(t->seg));
    return ret;
}

static int open_gan(struct tb *t)
{
    t->gp.micro = t->micro;
    t->gp.recompute = t->mode;
    int ret = vka_gan_create(t->ctx, &t->gp, &t->gan_e);
    if (ret == 0)
        ret = vka_gan_flops(t->gan_e, &t->flops);
    if (ret == 0)
        t->params = count_params(vka_gan_graph(t->gan_e));
    return ret;
}

static void tb_close(struct tb *t)
{
    vka_seg_destroy(&t->seg);
    vka_loader_destroy(&t->loader);
    vka_dataset_destroy(&t->ds);
    vka_gan_destroy(&t->gan_e);
    vka_ctx_destroy(&t->ctx);
}

static uint32_t pick(int given, double def)
{
    return given >= 0 ? (uint32_t)given : (uint32_t)def;
}

/* The workload of --workload with the options' overrides, its device and engine; exit
 * status 0, or 1/2 after printing why. */
static int tb_open(struct tb *t, const struct bench_opts *o)
{
    const cJSON *root = definitions();
    if (!root)
        return 1;
    t->w = (struct wl){ .def = cJSON_GetObjectItemCaseSensitive(root, o->workload),
                        .name = o->workload };
    if (!cJSON_IsObject(t->w.def))
        return cli_usage_error("bench", "--workload %s: no such workload (vkaccum bench "
                               "workloads lists them)", o->workload);
    t->gan = is(&t->w, "task", "gan");
    t->size = pick(o->size, num(&t->w, "size"));
    t->batch = pick(o->batch, num(&t->w, "batch"));
    t->steps = pick(o->steps, num(&t->w, "steps"));
    t->warmup = pick(o->warmup, num(&t->w, "warmup"));
    t->overridden = o->size >= 0 || o->batch >= 0;
    if (t->gan)
        gan_params(t);
    else
        seg_params(t);
    if (t->w.bad)
        return 1;
    t->exact = !strcmp(o->accumulate, "exact");
    t->sp.exact = t->gp.exact = t->exact;
    if (t->batch < 1 || (uint32_t)o->micro > t->batch)
        return cli_usage_error("bench", "--micro-batch %d with a batch of %u: give 1 to the "
                               "batch", o->micro, t->batch);
    if (!(t->ctx = cli_open_ctx("bench train", o->device, 0)))
        return 1;
    if (fit(t, o->micro))
        return 1;
    if ((t->gan ? open_gan(t) : open_seg(t)) < 0) {
        fprintf(stderr, "vkaccum bench train: %s\n", vka_last_error());
        return 1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One optimizer step; *ms its wall time. */
static int step(struct tb *t, double *ms)
{
    double t0 = vka_now();
    int ret = t->gan ? vka_gan_iteration(t->gan_e, real_images, t)
                     : vka_seg_window(t->seg, t->loader);
    *ms = (vka_now() - t0) * 1e3;
    return ret;
}

/* ms[steps]: the wall time of each optimizer step after the warm-up ones (none at all
 * with 0 steps). */
static int run_steps(struct tb *t, double *ms)
{
    for (uint32_t i = 0; t->steps && i < t->warmup + t->steps; i++) {
        double d;
        int ret = step(t, &d);
        if (ret < 0)
            return ret;
        if (i >= t->warmup)
            ms[i - t->warmup] = d;
    }
    return 0;
}

struct result {
    double median, min, max; /* ms per step */
    double peak_mib;
    double profile_ms;       /* the profiled step's wall time; 0: none */
};

static uint32_t windows_per_step(const struct tb *t)
{
    return t->gan ? t->gp.d_steps + 1 : 1;
}

/* --profile: one more step, timed per op and pass (after the timed ones: its timing
 * recorders and readbacks slow it down). 1 after printing why not. */
static int profile_step(struct tb *t, struct result *r, bool by_layer)
{
    if (cli_profile_begin(t->ctx, by_layer))
        return 1;
    if (step(t, &r->profile_ms) < 0) {
        fprintf(stderr, "vkaccum bench train: --profile: %s\n", vka_last_error());
        return 1;
    }
    return 0;
}

static void print_json(const struct tb *t, const struct result *r, const double *ms)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "workload", t->w.name);
    cJSON_AddStringToObject(o, "device", t->ctx->info.name);
    cJSON_AddItemToObject(o, "definition", cJSON_Duplicate(t->w.def, true));
    cJSON_AddBoolToObject(o, "overridden", t->overridden);
    cJSON_AddNumberToObject(o, "size", t->size);
    cJSON_AddNumberToObject(o, "batch", t->batch);
    cJSON_AddNumberToObject(o, "micro_batch", t->micro);
    cJSON_AddStringToObject(o, "recompute", fit_mode_name(t->mode));
    cJSON_AddStringToObject(o, "accumulate", t->exact ? "exact" : "ordered");
    cJSON_AddNumberToObject(o, "params", (double)t->params);
    cJSON_AddNumberToObject(o, "flops_per_step", t->flops);
    cJSON_AddNumberToObject(o, "steps", t->steps);
    cJSON_AddNumberToObject(o, "warmup", t->warmup);
    if (t->steps) {
        cJSON_AddItemToObject(o, "ms", cJSON_CreateDoubleArray(ms, (int)t->steps));
        cJSON_AddNumberToObject(o, "ms_per_step", r->median);
        cJSON_AddNumberToObject(o, "img_per_s", t->batch * 1e3 / r->median);
        cJSON_AddNumberToObject(o, "gflops", t->flops / (r->median * 1e6));
        cJSON_AddNumberToObject(o, "peak_mib", r->peak_mib);
    }
    if (t->ctx->timing) {
        cJSON *p = cli_profile_json(t->ctx->timing, windows_per_step(t));
        cJSON_AddNumberToObject(p, "wall_ms_per_step", r->profile_ms);
        cJSON_AddItemToObject(o, "profile", p);
    }
    char *s = cJSON_Print(o);
    puts(s);
    free(s);
    cJSON_Delete(o);
}

static void print_text(const struct tb *t, const struct result *r)
{
    printf("bench train %s%s on %s: %s %ux%u, batch %u as micro-batches of %u "
           "(--recompute %s, --accumulate %s); %.1f GFLOP and %llu parameters per step\n",
           t->w.name, t->overridden ? " (overridden)" : "", t->ctx->info.name,
           t->gan ? "DCGAN" : "U-Net", t->size, t->size, t->batch, t->micro,
           fit_mode_name(t->mode), t->exact ? "exact" : "ordered", t->flops / 1e9,
           (unsigned long long)t->params);
    if (t->steps) {
        printf("  %u steps after %u warm-up: median %.1f ms per step (%.1f to %.1f)\n",
               t->steps, t->warmup, r->median, r->min, r->max);
        printf("  %.2f img/s, %.2f GFLOP/s, device peak %.1f MiB\n",
               t->batch * 1e3 / r->median, t->flops / (r->median * 1e6), r->peak_mib);
    }
    if (t->ctx->timing)
        cli_profile_print(t->ctx->timing, windows_per_step(t), t->gan ? "iteration" : "step",
                          r->profile_ms);
}

/* The median, the extremes and the device's peak of a run of t->steps steps. */
static void summarise(const struct tb *t, const double *ms, struct result *r)
{
    struct vka_mem_stats st;
    vka_mem_get_stats(t->ctx, &st);
    r->peak_mib = (double)st.total_peak / 1048576.0;
    double *sorted = malloc((t->steps + 1) * sizeof(double));
    if (t->steps && sorted) {
        memcpy(sorted, ms, t->steps * sizeof(double));
        qsort(sorted, t->steps, sizeof(double), cmp_double);
        r->median = (sorted[(t->steps - 1) / 2] + sorted[t->steps / 2]) / 2;
        r->min = sorted[0];
        r->max = sorted[t->steps - 1];
    }
    free(sorted);
}

int bench_train(const struct bench_opts *o)
{
    struct tb t = { 0 };
    int status = tb_open(&t, o);
    double *ms = calloc(t.steps + 1, sizeof(double));
    struct result r = { 0 };
    if (status == 0 && (!ms || run_steps(&t, ms) < 0)) {
        fprintf(stderr, "vkaccum bench train: %s\n", ms ? vka_last_error() : "out of memory");
        status = 1;
    }
    if (status == 0)
        summarise(&t, ms, &r); /* the peak before profiling's recorders */
    if (status == 0 && (o->profile || o->profile_layers))
        status = profile_step(&t, &r, o->profile_layers);
    if (status == 0) {
        if (o->json)
            print_json(&t, &r, ms);
        else
            print_text(&t, &r);
    }
    free(ms);
    cli_profile_end(t.ctx, false, 0, NULL);
    tb_close(&t);
    return status;
}

int bench_workloads(const struct bench_opts *o)
{
    const cJSON *root = definitions(), *w;
    if (!root)
        return 1;
    if (o->json) {
        char *s = cJSON_Print(root);
        puts(s);
        free(s);
        return 0;
    }
    cJSON_ArrayForEach(w, root) {
        char *s = cJSON_PrintUnformatted(w);
        printf("%-8s %s\n", w->string, s);
        free(s);
    }
    return 0;
}
