/* Device memory predicted before allocating (memplan.h): for 14 segmentation and GAN
 * runs across GroupNorm and BatchNorm, transposed convolution and bilinear up-sampling,
 * micro-batches, recompute modes and accumulation modes (an exact seg and GAN run), the prediction of vka_seg_plan_memory /
 * vka_gan_plan_memory matches the accountant's peak over a run that trains a window,
 * evaluates (or samples), saves a checkpoint and trains on; and the peak does not grow
 * with the effective batch at a fixed micro-batch. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common.h"
#include "gan.h"
#include "seg.h"

#define MIB (1024.0 * 1024.0)

/* |predicted - measured| <= max(0.5 % of measured, 1 MiB), tighter than the bound the
 * design asks for (3 % or 8 MiB): the prediction counts every buffer a run allocates,
 * from the same functions that size them (plans sized by a dry recording, optimizer
 * state, staging); what it cannot see is the device rounding a buffer's size up
 * (VkMemoryRequirements.size: on lavapipe a multiple of 64 bytes), and no size here
 * depends on data. */
static void check_close(const char *what, const struct vka_mem_plan *m,
                        const struct vka_mem_stats *ms)
{
    double pred = (double)m->total, peak = (double)ms->total_peak;
    double tol = 0.005 * peak > 1 * MIB ? 0.005 * peak : 1 * MIB;
    char cats[512];
    size_t used = 0;
    for (int c = 0; c < VKA_MEM_CAT_COUNT; c++)
        used += (size_t)snprintf(cats + used, sizeof(cats) - used, " %s %.2f/%.2f/%.2f",
                                 vka_mem_cat_name((enum vka_mem_cat)c), m->cat[c] / MIB,
                                 ms->peak[c] / MIB, ms->cur[c] / MIB);
    cr_log_info("%s: predicted %.2f MiB, peak %.2f MiB (%+.2f %%); per category "
                "predicted/peak:%s", what, pred / MIB, peak / MIB, 100 * (pred - peak) / peak,
                cats);
    cr_expect_leq(pred > peak ? pred - peak : peak - pred, tol,
                  "%s: predicted %.2f MiB, the accountant's peak %.2f MiB (tolerance %.2f "
                  "MiB); predicted/peak:%s", what, pred / MIB, peak / MIB, tol / MIB, cats);
}

/* ---- segmentation -------------------------------------------------------------------- */

struct seg_case {
    uint32_t width, depth, crop, batch, micro;
    enum vka_unet_norm norm;
    bool bilinear;
    enum vka_recompute recompute;
    bool exact; /* --accumulate exact: the exact buffer and the per-sample wgrad scratch */
};

static struct vka_seg_params seg_params(const struct seg_case *c)
{
    static const float mean[3] = { 0.5f, 0.5f, 0.5f }, std[3] = { 0.25f, 0.25f, 0.25f };
    struct vka_seg_params p = {
        .model = { .in_channels = 3, .classes = 4, .depth = c->depth, .width = c->width,
                   .groups = 4, .norm = c->norm, .bilinear = c->bilinear, .size = c->crop },
        .train = true, .mean = mean, .std = std, .ignore_index = 255, .seed = 1,
        .batch = c->batch, .micro = c->micro, .optim = vka_optim_defaults(VKA_OPTIM_ADAMW, 1),
        .lr = { .kind = VKA_LR_CONSTANT, .lr = 1e-3 }, .recompute = c->recompute,
        .exact = c->exact,
    };
    return p;
}

/* A window, an evaluation of 2 images in tiles of b, a checkpoint with the state and
 * another window: the peak of a training run. */
static void seg_run(const struct seg_case *c, struct vka_mem_plan *m, struct vka_mem_stats *ms)
{
    struct vka_ctx *ctx = test_ctx();
    struct vka_seg_params p = seg_params(c);
    cr_assert_eq(vka_seg_plan_memory(ctx, &p, m), 0, "%s", vka_last_error());
    vka_mem_get_stats(ctx, ms);
    cr_assert_eq(ms->total_peak, 0, "the prediction allocated %llu bytes",
                 (unsigned long long)ms->total_peak);
    struct vka_dataset *train, *val;
    struct vka_dataset_params dp = { .kind = VKA_DATA_SHAPES, .split = VKA_SPLIT_TRAIN,
                                     .count = c->batch, .width = c->crop, .height = c->crop };
    cr_assert_eq(vka_dataset_open(&dp, &train), 0, "%s", vka_last_error());
    dp.split = VKA_SPLIT_VAL;
    dp.count = 2;
    cr_assert_eq(vka_dataset_open(&dp, &val), 0, "%s", vka_last_error());
    struct vka_loader *loader;
    struct vka_loader_params lp = { .dataset = train, .batch = c->micro, .epoch_batches = true,
                                    .channels = 3, .shuffle = true,
                                    .aug = { .size = c->crop, .mean = p.mean, .std = p.std } };
    cr_assert_eq(vka_loader_create(&lp, &loader), 0, "%s", vka_last_error());
    struct vka_seg *seg;
    cr_assert_eq(vka_seg_create(ctx, &p, &seg), 0, "%s", vka_last_error());
    cr_assert_eq(vka_seg_window(seg, loader), 0, "%s", vka_last_error());
    struct vka_seg_metrics sm = { 0 };
    cr_assert_eq(vka_seg_metrics_init(&sm, 4), 0);
    cr_assert_eq(vka_seg_evaluate(seg, val, 0, c->micro, &sm, NULL, NULL, 0), 0, "%s",
                 vka_last_error());
    char path[] = "/tmp/vka_memplan_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(vka_seg_save(seg, path, true, NULL, 0, NULL, 0), 0, "%s", vka_last_error());
    unlink(path);
    cr_assert_eq(vka_seg_window(seg, loader), 0, "%s", vka_last_error());
    vka_mem_get_stats(ctx, ms);
    vka_seg_metrics_free(&sm);
    vka_seg_destroy(&seg);
    vka_loader_destroy(&loader);
    vka_dataset_destroy(&train);
    vka_dataset_destroy(&val);
    test_ctx_done(&ctx);
}

Test(memplan, seg_prediction_is_within_3_percent_of_the_peak)
{
    static const struct seg_case cases[] = {
        { 16, 3, 128, 4, 2, VKA_UNET_GROUP, false, VKA_RECOMPUTE_NONE, false },
        { 16, 3, 128, 4, 4, VKA_UNET_GROUP, true, VKA_RECOMPUTE_NONE, false },
        { 16, 3, 128, 3, 3, VKA_UNET_BATCH, false, VKA_RECOMPUTE_NONE, false },
        { 16, 3, 128, 4, 2, VKA_UNET_BATCH, true, VKA_RECOMPUTE_BLOCKS, false },
        { 16, 4, 128, 2, 2, VKA_UNET_GROUP, false, VKA_RECOMPUTE_BLOCKS, false },
        { 16, 4, 128, 2, 1, VKA_UNET_GROUP, true, VKA_RECOMPUTE_ALL, false },
        { 8, 2, 256, 2, 2, VKA_UNET_GROUP, false, VKA_RECOMPUTE_ALL, false },
        { 8, 2, 256, 3, 3, VKA_UNET_BATCH, false, VKA_RECOMPUTE_NONE, false },
        { 16, 3, 128, 4, 2, VKA_UNET_GROUP, false, VKA_RECOMPUTE_NONE, true },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct seg_case *c = &cases[i];
        char what[160];
        snprintf(what, sizeof(what), "seg width %u depth %u crop %u B %u b %u %s %s "
                 "recompute %d%s", c->width, c->depth, c->crop, c->batch, c->micro,
                 c->norm == VKA_UNET_GROUP ? "group" : "batch", c->bilinear ? "bilinear" : "convT",
                 (int)c->recompute, c->exact ? " exact" : "");
        struct vka_mem_plan m;
        struct vka_mem_stats ms;
        seg_run(c, &m, &ms);
        check_close(what, &m, &ms);
    }
}

/* ---- GAN --------------------------------------------------------------------------- */

static int make_real(void *user, uint32_t n, float *x)
{
    uint32_t size = *(const uint32_t *)user;
    for (uint64_t i = 0; i < (uint64_t)n * size; i++)
        x[i] = (float)(i % 7) / 3.0f - 1.0f;
    return 0;
}

struct gan_case {
    uint32_t res, width, batch, micro;
    bool bn;
    double ema;
    enum vka_recompute recompute;
    bool exact;
};

static void gan_run(const struct gan_case *c, struct vka_mem_plan *m, struct vka_mem_stats *ms)
{
    struct vka_ctx *ctx = test_ctx();
    struct vka_gan_params p = {
        .model = { .res = c->res, .channels = 3, .width = c->width, .z_dim = 32,
                   .batch_norm = c->bn },
        .loss = VKA_GAN_BCE, .batch = c->batch, .micro = c->micro, .d_steps = 1,
        .lr_g = 2e-4, .lr_d = 2e-4, .beta1 = 0.5, .beta2 = 0.999, .seed = 3,
        .ema_kimg = c->ema, .recompute = c->recompute, .exact = c->exact,
    };
    cr_assert_eq(vka_gan_plan_memory(ctx, &p, m), 0, "%s", vka_last_error());
    vka_mem_get_stats(ctx, ms);
    cr_assert_eq(ms->total_peak, 0);
    struct vka_gan *gan;
    cr_assert_eq(vka_gan_create(ctx, &p, &gan), 0, "%s", vka_last_error());
    uint32_t size = 3 * c->res * c->res;
    cr_assert_eq(vka_gan_iteration(gan, make_real, &size), 0, "%s", vka_last_error());
    /* a sample grid of 64 */
    float *z = calloc(64 * 32, sizeof(float)), *x = malloc(64 * (size_t)size * sizeof(float));
    cr_assert_eq(vka_gan_generate(gan, z, 64, x), 0, "%s", vka_last_error());
    char path[] = "/tmp/vka_memplan_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(vka_gan_save(gan, path, NULL, 0, NULL, 0), 0, "%s", vka_last_error());
    unlink(path);
    cr_assert_eq(vka_gan_iteration(gan, make_real, &size), 0, "%s", vka_last_error());
    vka_mem_get_stats(ctx, ms);
    free(z);
    free(x);
    vka_gan_destroy(&gan);
    test_ctx_done(&ctx);
}

Test(memplan, gan_prediction_is_within_3_percent_of_the_peak)
{
    static const struct gan_case cases[] = {
        { 32, 64, 32, 16, true, 10, VKA_RECOMPUTE_NONE, false },
        { 32, 64, 32, 32, false, 0, VKA_RECOMPUTE_NONE, false },
        { 64, 32, 16, 8, true, 10, VKA_RECOMPUTE_BLOCKS, false },
        { 64, 32, 16, 16, false, 10, VKA_RECOMPUTE_ALL, false },
        { 32, 64, 32, 16, false, 10, VKA_RECOMPUTE_NONE, true },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct gan_case *c = &cases[i];
        char what[160];
        snprintf(what, sizeof(what), "gan res %u width %u B %u b %u %s ema %g recompute %d%s",
                 c->res, c->width, c->batch, c->micro, c->bn ? "batch" : "none", c->ema,
                 (int)c->recompute, c->exact ? " exact" : "");
        struct vka_mem_plan m;
        struct vka_mem_stats ms;
        gan_run(c, &m, &ms);
        check_close(what, &m, &ms);
    }
}

/* The peak of a seg run at micro-batch 2 is the same for B = 2 and B = 6 (k = 1, 3), and
 * so is the prediction. */
Test(memplan, peak_does_not_grow_with_the_batch)
{
    struct seg_case c = { 8, 2, 64, 2, 2, VKA_UNET_GROUP, false, VKA_RECOMPUTE_NONE, false };
    struct vka_mem_plan m2, m6;
    struct vka_mem_stats s2, s6;
    seg_run(&c, &m2, &s2);
    c.batch = 6;
    seg_run(&c, &m6, &s6);
    cr_assert_eq(s2.total_peak, s6.total_peak, "peak %llu bytes at B 2, %llu at B 6",
                 (unsigned long long)s2.total_peak, (unsigned long long)s6.total_peak);
    cr_assert_eq(m2.total, m6.total);
}
