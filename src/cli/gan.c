/* vkaccum gan train|sample|fid-net: DCGAN training with gradient accumulation in both
 * phases (src/gan.c), sample grids, and the Fréchet distance of src/fidnet.c. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/fit.h"
#include "cli/profile.h"
#include "cli/opts.h"
#include "cli/run.h"
#include "datasets/dataset.h"
#include "checkpoint.h"
#include "dist.h"
#include "fid.h"
#include "fidnet.h"
#include "gan.h"
#include "log.h"
#include "tb.h"

#define NOISE_GRID 2 /* noise streams: the fixed grid, the Fréchet distance's samples */
#define NOISE_FID 3

struct gan_opts {
    char data[512], out[512], resume[512], device[128], fid_net[512];
    char norm[8], loss[8], recompute[8], accumulate[8];
    int res, channels, width, z_dim, batch, micro, accum, d_steps, workers, grid;
    int sample_every, save_every, eval_every, fid_n;
    long long steps, seed;
    double lr, lr_d, beta1, beta2, ema_kimg, ema_rampup, mem_budget;
    bool skip_bad, tensorboard, detect_anomaly, plan, profile, profile_layers;
};

#define O(n, t, f, ch, h) { n, t, offsetof(struct gan_opts, f), sizeof(((struct gan_opts *)0)->f), ch, h }

static const struct opt_desc gan_opt_table[] = {
    O("data", OPT_STR, data, NULL, "fashion, DIR or images:DIR (any size), FILE.gz or idx:FILE (fashion)"),
    O("out", OPT_STR, out, NULL, "run folder: config.json, metrics.jsonl, samples/, last.safetensors"),
    O("res", OPT_INT, res, NULL, "image size: 32, 64, 128 or 256 (32)"),
    O("channels", OPT_INT, channels, NULL, "1 (grey) or 3 (RGB); 0: the dataset's (0)"),
    O("width", OPT_INT, width, NULL, "base channels of G and D (64)"),
    O("z-dim", OPT_INT, z_dim, NULL, "latent size (100)"),
    O("norm", OPT_STR, norm, "batch|none", "BatchNorm (statistics per micro-batch) or none (batch)"),
    O("loss", OPT_STR, loss, "bce|hinge", "non-saturating BCE with logits or hinge (bce)"),
    O("batch", OPT_INT, batch, NULL, "effective batch B of both phases (64)"),
    O("micro-batch", OPT_INT, micro, "auto", "micro-batch b: samples per forward/backward, or auto: the largest whose predicted memory fits the budget (auto)"),
    O("recompute", OPT_STR, recompute, "auto|none|blocks|all", "keep for backward everything (none) or each layer's input (blocks, all) and recompute the rest; auto: none unless nothing fits (auto)"),
    O("plan", OPT_BOOL, plan, NULL, "print the predicted device memory and the largest micro-batch that fits, and exit"),
    O("accum", OPT_INT, accum, NULL, "micro-batches per step k, instead of --micro-batch (b = B/k)"),
    O("accumulate", OPT_STR, accumulate, "auto|ordered|exact", "how gradients and losses are summed: ordered (float32, in sample order: any micro-batch split gives the same bits) or exact (96-bit fixed point, 16 bytes more per parameter: any split and order, over ranks too, gives the same bits); auto: exact over several ranks (mpirun), else ordered (auto)"),
    O("d-steps", OPT_INT, d_steps, NULL, "D optimizer steps per G step (1)"),
    O("steps", OPT_LONG, steps, NULL, "iterations (G steps) to train (1000)"),
    O("lr", OPT_DOUBLE, lr, NULL, "Adam learning rate of G (2e-4)"),
    O("lr-d", OPT_DOUBLE, lr_d, NULL, "Adam learning rate of D, 0: --lr (0)"),
    O("beta1", OPT_DOUBLE, beta1, NULL, "Adam beta1 (0.5)"),
    O("beta2", OPT_DOUBLE, beta2, NULL, "Adam beta2 (0.999)"),
    O("ema-kimg", OPT_DOUBLE, ema_kimg, NULL, "EMA of G: half-life in thousands of images, 0 off (10)"),
    O("ema-rampup", OPT_DOUBLE, ema_rampup, NULL, "EMA half-life ramp-up: at most this times the images seen, 0 off (0.05)"),
    O("sample-every", OPT_INT, sample_every, NULL, "write samples/step_N.png every N steps (100)"),
    O("grid", OPT_INT, grid, NULL, "images in each sample grid, from a fixed z (64)"),
    O("save-every", OPT_INT, save_every, NULL, "save last.safetensors every N steps (100)"),
    O("eval-every", OPT_INT, eval_every, NULL, "Frechet distance every N steps, 0 only at the end (500)"),
    O("fid-net", OPT_STR, fid_net, NULL, "feature network of `vkaccum gan fid-net`: enables the Frechet distance"),
    O("fid-n", OPT_INT, fid_n, NULL, "generated and test images of the Frechet distance (5000)"),
    O("resume", OPT_STR, resume, NULL, "continue the run in RUN from RUN/last.safetensors"),
    O("seed", OPT_LONG, seed, NULL, "seed of initialisation, noise and data order (0)"),
    O("device", OPT_STR, device, NULL, "device index or a part of its name"),
    O("workers", OPT_INT, workers, NULL, "data loading threads (2)"),
    O("skip-bad", OPT_BOOL, skip_bad, NULL, "warn and skip bad images instead of failing"),
    O("mem-budget", OPT_DOUBLE, mem_budget, NULL, "device memory budget in MiB (default: the device's)"),
    O("tensorboard", OPT_BOOL, tensorboard, NULL, "also write TensorBoard event files into RUN/tb/"),
    O("detect-anomaly", OPT_BOOL, detect_anomaly, NULL, "check every op's output; name the first that is not finite (slow)"),
    O("profile", OPT_BOOL, profile, NULL, "time every op and pass with timestamp queries; print the top 15 per iteration at the end (slower)"),
    O("profile-layers", OPT_BOOL, profile_layers, NULL, "--profile with a row per layer: op, input>output channels, output size"),
};
static const size_t gan_opt_count = sizeof(gan_opt_table) / sizeof(gan_opt_table[0]);
#define GAN_TABLE gan_opt_table, gan_opt_count

static void defaults(void *opts)
{
    struct gan_opts *o = opts;
    memset(o, 0, sizeof(*o));
    snprintf(o->data, sizeof(o->data), "fashion");
    snprintf(o->norm, sizeof(o->norm), "batch");
    snprintf(o->loss, sizeof(o->loss), "bce");
    snprintf(o->recompute, sizeof(o->recompute), "auto");
    snprintf(o->accumulate, sizeof(o->accumulate), "auto");
    o->res = 32;
    o->width = 64;
    o->z_dim = 100;
    o->batch = 64;
    o->d_steps = 1;
    o->steps = 1000;
    o->lr = 2e-4;
    o->beta1 = 0.5;
    o->beta2 = 0.999;
    o->ema_kimg = 10;
    o->ema_rampup = 0.05;
    o->sample_every = 100;
    o->grid = 64;
    o->save_every = 100;
    o->eval_every = 500;
    o->fid_n = 5000;
    o->workers = 2;
}

static int finish(struct gan_opts *o, const char *cmd)
{
    if (o->batch < 1)
        return cli_usage_error(cmd, "--batch %d: give at least 1", o->batch);
    if (o->accum && o->micro)
        return cli_usage_error(cmd, "give --micro-batch or --accum, not both");
    if (o->accum) {
        if (o->batch % o->accum)
            return cli_usage_error(cmd, "--accum %d does not divide --batch %d", o->accum, o->batch);
        o->micro = o->batch / o->accum;
    }
    if (o->micro > o->batch)
        return cli_usage_error(cmd, "--micro-batch %d is larger than --batch %d", o->micro, o->batch);
    if (o->d_steps < 1)
        return cli_usage_error(cmd, "--d-steps %d: give at least 1", o->d_steps);
    if (o->grid < 1 || o->grid > 1024)
        return cli_usage_error(cmd, "--grid %d: give 1 to 1024 images", o->grid);
    if (o->fid_n < 2)
        return cli_usage_error(cmd, "--fid-n %d: give at least 2", o->fid_n);
    struct vka_dcgan_params mp = { (uint32_t)o->res, o->channels ? (uint32_t)o->channels : 1,
                                   (uint32_t)o->width, (uint32_t)o->z_dim, true };
    if (o->channels != 0 && o->channels != 1 && o->channels != 3)
        return cli_usage_error(cmd, "--channels %d: give 1 or 3 (0: the dataset's)", o->channels);
    if (vka_dcgan_check(&mp) < 0)
        return cli_usage_error(cmd, "--res/--width/--z-dim: %s", vka_last_error());
    return 0;
}

static struct vka_dcgan_params model_of(const struct gan_opts *o)
{
    return (struct vka_dcgan_params){ (uint32_t)o->res, (uint32_t)o->channels,
                                      (uint32_t)o->width, (uint32_t)o->z_dim,
                                      !strcmp(o->norm, "batch") };
}

/* ---- images ------------------------------------------------------------------------ */

/* Writes n images x (n, c, res, res) in [-1, 1] as a grid of `cols` columns with a
 * gap of `gap` pixels around each (0 for one image: exactly the model's resolution);
 * also to TensorBoard as samples/grid at step when tb is not NULL. */
static int write_grid(const char *path, const float *x, uint32_t n, uint32_t cols, uint32_t c,
                      uint32_t res, uint32_t gap, struct vka_tb *tb, uint64_t step)
{
    uint32_t rows = (n + cols - 1) / cols;
    uint32_t w = cols * (res + gap) + gap, h = rows * (res + gap) + gap;
    uint8_t *img = calloc((size_t)w * h * c, 1);
    if (!img)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t k = 0; k < c; k++)
            for (uint32_t y = 0; y < res; y++)
                for (uint32_t xx = 0; xx < res; xx++) {
                    float v = x[(((size_t)i * c + k) * res + y) * res + xx];
                    v = (v + 1) * 127.5f + 0.5f;
                    size_t px = (size_t)((i / cols) * (res + gap) + gap + y) * w +
                                (i % cols) * (res + gap) + gap + xx;
                    img[px * c + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
    int ret = cli_png_write(path, w, h, c, img);
    if (ret == 0)
        ret = run_tb_image(tb, "samples/grid", step, w, h, c, img);
    free(img);
    return ret;
}

static uint32_t grid_cols(uint32_t n)
{
    uint32_t c = (uint32_t)ceil(sqrt((double)n));
    return c ? c : 1;
}

/* ---- train ------------------------------------------------------------------------- */

struct real_src {
    struct vka_loader *loader;
    uint32_t size; /* floats per image */
};

static int next_real(void *user, uint32_t n, float *x)
{
    struct real_src *r = user;
    struct vka_batch b;
    int ret = vka_loader_next(r->loader, n, &b);
    if (ret < 0)
        return ret;
    memcpy(x, b.x, (size_t)n * r->size * sizeof(float));
    return 0;
}

/* The checkpoint: the GAN's state, the loader's position and the grid's fixed z. */
static int save(struct vka_gan *gan, const char *path, const struct gan_opts *o,
                struct vka_loader_pos pos, float *zgrid)
{
    cJSON *cfg = cli_opts_json(GAN_TABLE, o);
    char *cfgs = cJSON_PrintUnformatted(cfg);
    struct vka_st_meta meta[] = { { "config", cfgs }, { "kind", "vkaccum-gan" } };
    int64_t lp[2];
    struct vka_st_tensor extra[2] = {
        run_loader_tensor(pos, lp),
        { .name = "train.grid_z", .dtype = VKA_ST_F32, .ndim = 2,
          .shape = { (uint64_t)o->grid, (uint64_t)o->z_dim }, .data = zgrid },
    };
    int ret = vka_gan_save(gan, path, extra, 2, meta, 2);
    free(cfgs);
    cJSON_Delete(cfg);
    return ret;
}

/* The Fréchet distance of n generated images against the real statistics. */
static int frechet(struct vka_gan *gan, struct vka_fidnet *net, const struct vka_fid_stats *real,
                   const struct gan_opts *o, double *fd)
{
    const uint32_t run = 250, zf = (uint32_t)o->z_dim, xf = (uint32_t)(o->channels * o->res * o->res);
    uint32_t dim = vka_fidnet_dim(net);
    float *z = malloc((size_t)run * zf * sizeof(float)), *x = malloc((size_t)run * xf * sizeof(float));
    float *f = malloc((size_t)run * dim * sizeof(float));
    struct vka_fid_stats st = { 0 };
    int ret = !z || !x || !f ? -ENOMEM : vka_fid_stats_init(&st, dim);
    for (uint32_t i = 0; ret == 0 && i < (uint32_t)o->fid_n; i += run) {
        uint32_t n = (uint32_t)o->fid_n - i < run ? (uint32_t)o->fid_n - i : run;
        vka_gan_noise((uint64_t)o->seed, NOISE_FID, i, n, zf, z);
        if ((ret = vka_gan_generate(gan, z, n, x)) == 0 &&
            (ret = vka_fidnet_features(net, x, n, f)) == 0)
            vka_fid_stats_add(&st, f, n);
    }
    if (ret == 0)
        ret = vka_fid_distance(&st, real, fd);
    vka_fid_stats_free(&st);
    free(z);
    free(x);
    free(f);
    return ret;
}

static int write_samples(struct vka_gan *gan, const struct gan_opts *o, const float *zgrid,
                         float *xgrid, uint64_t step, struct vka_tb *tb)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/samples/step_%06llu.png", o->out, (unsigned long long)step);
    int ret = vka_gan_generate(gan, zgrid, (uint32_t)o->grid, xgrid);
    return ret < 0 ? ret : write_grid(path, xgrid, (uint32_t)o->grid, grid_cols((uint32_t)o->grid),
                                      (uint32_t)o->channels, (uint32_t)o->res, 2, tb, step);
}

static void progress(bool tty, const struct vka_gan_stats *s, long long steps, double ips,
                     double elapsed)
{
    if (!tty)
        return;
    int width = 30, done = (int)(width * (double)s->iterations / (double)steps);
    double eta = s->iterations ? elapsed / s->iterations * (steps - (long long)s->iterations) : 0;
    fprintf(stderr, "\r[%.*s%*s] %llu/%lld  D %.3f  G %.3f  D(x) %.2f  D(G(z)) %.2f  %.0f img/s  "
            "eta %d:%02d ", done, "##############################", width - done, "",
            (unsigned long long)s->iterations, steps, s->d_loss, s->g_loss, s->d_real, s->d_fake,
            ips, (int)eta / 60, (int)eta % 60);
}

/* A training run's resources; run_close frees whatever run_open made. */
struct run {
    struct gan_opts *o;
    struct vka_dataset *ds;
    struct vka_loader *loader;
    struct real_src src;
    struct vka_ctx *ctx;
    struct vka_gan *gan;
    struct vka_fidnet *net;       /* NULL without --fid-net */
    struct vka_fid_stats real;    /* the test images' features */
    struct run_log log;
    struct run_curves curves;
    struct vka_tb *tb; /* --tensorboard */
    float *zgrid, *xgrid;         /* the grid's fixed z and its images */
    struct run_pace pace;
};

static void run_close(struct run *r)
{
    vka_tb_close(&r->tb);
    free(r->zgrid);
    free(r->xgrid);
    vka_fid_stats_free(&r->real);
    vka_fidnet_destroy(&r->net);
    vka_gan_destroy(&r->gan);
    vka_loader_destroy(&r->loader);
    vka_dataset_destroy(&r->ds);
    vka_ctx_destroy(&r->ctx);
}

/* Prints "vkaccum gan train: what: the last error" (on a fresh line after a progress
 * bar) and returns -1. */
static int fail(const struct run *r, const char *what);

/* Frees whatever run_open made; a failed close of the metrics or event file is an error
 * too, reported unless the run already failed (it would be the same error again). */
static int run_close_checked(struct run *r, bool report)
{
    int ret = run_log_close(&r->log) < 0 || vka_tb_close(&r->tb) < 0 ? -1 : 0;
    if (ret < 0 && report)
        fail(r, NULL);
    run_close(r);
    return ret;
}

static int fail(const struct run *r, const char *what)
{
    fprintf(stderr, "%svkaccum gan train: %s%s%s\n", r->pace.tty ? "\n" : "", what ? what : "",
            what ? ": " : "", vka_last_error());
    return -1;
}

/* The loader's position and the grid's z from a checkpoint, after vka_gan_load. */
static int resume(struct run *r)
{
    const struct gan_opts *o = r->o;
    struct vka_st_file *f;
    char path[700];
    snprintf(path, sizeof(path), "%s/last.safetensors", o->resume);
    if (vka_gan_load(r->gan, path, &f) < 0)
        return fail(r, "--resume");
    struct vka_loader_pos pos;
    if (run_loader_pos(f, &pos) < 0) {
        vka_st_file_destroy(&f);
        return fail(r, "--resume");
    }
    /* the grid keeps the run's z (a run resumed with another --grid draws anew) */
    const struct vka_st_tensor *zt = vka_st_find(f, "train.grid_z");
    if (zt && zt->dtype == VKA_ST_F32 && zt->ndim == 2 && zt->shape[0] == (uint64_t)o->grid &&
        zt->shape[1] == (uint64_t)o->z_dim)
        memcpy(r->zgrid, zt->data, (size_t)o->grid * o->z_dim * sizeof(float));
    vka_st_file_destroy(&f);
    return vka_loader_seek(r->loader, pos) < 0 ? fail(r, "--resume") : 0;
}

static struct vka_gan_params gan_params_of(const struct gan_opts *o)
{
    return (struct vka_gan_params){
        .model = model_of(o), .loss = !strcmp(o->loss, "hinge") ? VKA_GAN_HINGE : VKA_GAN_BCE,
        .batch = (uint32_t)o->batch, .micro = (uint32_t)o->micro,
        .d_steps = (uint32_t)o->d_steps, .lr_g = o->lr, .lr_d = o->lr_d > 0 ? o->lr_d : o->lr,
        .beta1 = o->beta1, .beta2 = o->beta2, .ema_kimg = o->ema_kimg,
        .ema_rampup = o->ema_rampup, .seed = (uint64_t)o->seed,
        .detect_anomaly = o->detect_anomaly,
        .recompute = fit_mode_of(o->recompute), .exact = !strcmp(o->accumulate, "exact") };
}

/* ---- fitting into device memory ----------------------------------------------------- */

struct gan_fit {
    struct vka_ctx *ctx;
    struct vka_gan_params p;
    uint64_t budget;
};

static int gan_predict(void *user, uint32_t b, enum vka_recompute mode, struct vka_mem_plan *m)
{
    struct gan_fit *f = user;
    struct vka_gan_params p = f->p;
    p.micro = b;
    p.recompute = mode;
    return vka_gan_plan_memory(f->ctx, &p, m);
}

/* The widest narrower model (width halved) at which micro-batch 1 fits. */
static int gan_smaller(void *user, char *hint, size_t size)
{
    struct gan_fit *f = user;
    for (uint32_t w = f->p.model.width / 2; w >= 1; w /= 2) {
        struct gan_fit t = *f;
        t.p.model.width = w;
        struct vka_mem_plan m;
        if (gan_predict(&t, 1, VKA_RECOMPUTE_ALL, &m) < 0)
            return -1;
        if (m.total <= f->budget) {
            snprintf(hint, size, "--width %u", w);
            return 0;
        }
    }
    return -1;
}

/* --micro-batch auto, --recompute auto and --plan; 1 after printing --plan, -1 after
 * printing why nothing fits. */
static int gan_fit(struct gan_opts *o, struct vka_ctx *ctx)
{
    struct vka_mem_stats ms;
    vka_mem_get_stats(ctx, &ms);
    struct gan_fit f = { .ctx = ctx, .p = gan_params_of(o), .budget = ms.budget };
    struct fit fit = {
        .cmd = "gan train", .fn = gan_predict, .user = &f, .batch = (uint32_t)o->batch,
        .micro = (uint32_t)o->micro, .recompute = o->recompute, .accumulate = o->accumulate,
        .budget = ms.budget,
        .budget_from = o->mem_budget > 0 ? "--mem-budget" : "the device's",
        .smaller = gan_smaller,
    };
    return fit_apply(&fit, o->plan, &o->micro, o->recompute, sizeof(o->recompute));
}

/* The real images D's trainer counts as seen (what vka_gan_stats.samples reports). */
static void set_samples(struct vka_gan *gan, uint64_t samples)
{
    struct vka_trainer *td = vka_gan_trainer(gan, false);
    struct vka_trainer_stats s;
    vka_trainer_get_stats(td, &s);
    s.samples_seen = samples;
    vka_trainer_set_stats(td, &s);
}

/* Every rank at an iteration's end (run_boundary_sync): the run's real images, kept as
 * rank 0 all and the others none; whether any rank was asked to stop. */
static int sync_boundary(struct run *r, struct vka_gan_stats *st, int *sig)
{
    if (vka_dist()->size < 2)
        return 0;
    uint64_t samples = st->samples;
    if (run_boundary_sync(&samples, sig) < 0)
        return fail(r, NULL);
    set_samples(r->gan, run_writes() ? samples : 0);
    st->samples = samples;
    return 0;
}

/* Data, device, the micro-batch and recompute mode that fit, GAN, feature network, run
 * folder, resume; -1 after printing why, 1 after printing --plan. */
static int run_open(struct run *r, struct gan_opts *o)
{
    *r = (struct run){ .o = o, .pace = { .tty = run_writes() && isatty(2) } };
    int ranks = vka_dist()->size;
    if (o->batch % ranks) {
        fprintf(stderr, "vkaccum gan train: --batch %d does not split over %d ranks: give a "
                "multiple of %d\n", o->batch, ranks, ranks);
        return -1;
    }
    struct vka_dataset_params dp = { .split = VKA_SPLIT_TRAIN, .seed = (uint64_t)o->seed,
                                     .skip_bad = o->skip_bad };
    if (vka_dataset_spec_parse(o->data, false, &dp) < 0 || vka_dataset_open(&dp, &r->ds) < 0)
        return fail(r, NULL);
    if (!o->channels)
        o->channels = (int)vka_dataset_channels(r->ds);
    if (!(r->ctx = cli_open_ctx("gan train", o->device, o->mem_budget)))
        return -1;
    int fit = gan_fit(o, r->ctx);
    if (fit)
        return fit;
    if (o->micro > o->batch / ranks)
        o->micro = o->batch / ranks; /* a rank trains batch / ranks samples a window */
    static const float half[3] = { 0.5f, 0.5f, 0.5f };
    struct vka_loader_params lp = {
        .dataset = r->ds, .batch = (uint32_t)o->micro, .workers = (uint32_t)o->workers,
        .shuffle = true, .seed = (uint64_t)o->seed, .channels = (uint32_t)o->channels,
        .aug = { .size = (uint32_t)o->res, .fit = VKA_FIT_RESIZE, .mean = half, .std = half },
        .shard = { .window = (uint32_t)o->batch, .nranks = (uint32_t)ranks,
                   .rank = (uint32_t)vka_dist()->rank, .endless = true } };
    if (vka_loader_create(&lp, &r->loader) < 0)
        return fail(r, NULL);
    r->src = (struct real_src){ r->loader, (uint32_t)(o->channels * o->res * o->res) };
    struct vka_gan_params gp = gan_params_of(o);
    gp.ranks = (uint32_t)ranks;
    gp.rank = (uint32_t)vka_dist()->rank;
    if (vka_gan_create(r->ctx, &gp, &r->gan) < 0)
        return fail(r, NULL);
    for (int k = 0; ranks > 1 && k < 2; k++)
        vka_trainer_set_combine(vka_gan_trainer(r->gan, k), run_combine, NULL);
    if (o->fid_net[0]) {
        if (vka_fidnet_load(r->ctx, o->fid_net, &r->net) < 0)
            return fail(r, "--fid-net");
        if (vka_fidnet_res(r->net) != (uint32_t)o->res ||
            vka_fidnet_channels(r->net) != (uint32_t)o->channels) {
            fprintf(stderr, "vkaccum gan train: --fid-net %s takes %ux%u images of %u "
                    "channel(s); this run makes %dx%d of %d\n", o->fid_net,
                    vka_fidnet_res(r->net), vka_fidnet_res(r->net),
                    vka_fidnet_channels(r->net), o->res, o->res, o->channels);
            return -1;
        }
        if (vka_fidnet_real_stats(r->net, "t10k", (uint32_t)o->fid_n, &r->real) < 0)
            return fail(r, "--fid-net");
    }
    r->zgrid = malloc((size_t)o->grid * o->z_dim * sizeof(float));
    r->xgrid = malloc((size_t)o->grid * r->src.size * sizeof(float));
    if (!r->zgrid || !r->xgrid) {
        vka_err("out of memory for a grid of %d images", o->grid);
        return fail(r, NULL);
    }
    vka_gan_noise((uint64_t)o->seed, NOISE_GRID, 0, (uint32_t)o->grid, (uint32_t)o->z_dim,
                  r->zgrid);
    if (o->resume[0] && resume(r) < 0)
        return -1;
    struct vka_gan_stats st;
    vka_gan_get_stats(r->gan, &st);
    if (!run_writes()) /* rank 0 carries the run's samples (run_boundary_sync) */
        set_samples(r->gan, 0);
    if (run_writes() && (run_folder_prepare(o->out, GAN_TABLE, o) < 0 ||
                         run_log_open(&r->log, o->out, o->resume[0], st.iterations) < 0 ||
                         run_tb_open(&r->tb, o->out, o->tensorboard) < 0))
        return fail(r, NULL);
    return 0;
}

static int save_last(struct run *r)
{
    if (!run_writes())
        return 0;
    char path[700];
    snprintf(path, sizeof(path), "%s/last.safetensors", r->o->out);
    if (save(r->gan, path, r->o, vka_loader_tell(r->loader), r->zgrid) == 0)
        return 0;
    run_name_file(path);
    return fail(r, NULL);
}

/* The work of an iteration's end: metrics, progress, samples, Fréchet distance, save. */
static int boundary(struct run *r, const struct vka_gan_stats *st)
{
    const struct gan_opts *o = r->o;
    if (!run_writes())
        return 0;
    double elapsed, ips = run_pace_tick(&r->pace, st->samples, &elapsed);
    struct vka_mem_stats ms;
    vka_mem_get_stats(r->ctx, &ms);
    if (run_log_printf(&r->log, "{\"kind\":\"train\",\"step\":%llu,\"d_loss\":%.9g,"
                       "\"g_loss\":%.9g,\"d_real\":%.9g,\"d_fake\":%.9g,\"d_fake_g\":%.9g,"
                       "\"d_grad_norm\":%.9g,\"g_grad_norm\":%.9g,\"img_per_s\":%.3f,"
                       "\"peak_mib\":%.2f,\"samples\":%llu}",
                       (unsigned long long)st->iterations, st->d_loss, st->g_loss, st->d_real,
                       st->d_fake, st->g_fake, st->d_norm, st->g_norm, ips,
                       ms.total_peak / 1048576.0, (unsigned long long)st->samples) < 0)
        return fail(r, NULL);
    static const char *const tags[] = { "train/d_loss", "train/g_loss", "train/d_real",
                                        "train/d_fake", "train/d_grad_norm",
                                        "train/g_grad_norm", "train/img_per_s" };
    if (run_tb_scalars(r->tb, st->iterations, tags,
                       (const double[]){ st->d_loss, st->g_loss, st->d_real, st->d_fake,
                                         st->d_norm, st->g_norm, ips }, 7) < 0)
        return fail(r, NULL);
    progress(r->pace.tty, st, o->steps, ips, elapsed);
    bool last = (long long)st->iterations == o->steps;
    if (!r->pace.tty && run_every(st->iterations, 50, last))
        printf("step %llu/%lld  D %.4f  G %.4f  D(x) %.3f  D(G(z)) %.3f  %.1f img/s  "
               "peak %.0f MiB  %.0f s\n", (unsigned long long)st->iterations, o->steps,
               st->d_loss, st->g_loss, st->d_real, st->d_fake, ips, ms.total_peak / 1048576.0,
               elapsed);
    bool draw = run_every(st->iterations, o->sample_every, last);
    if (draw && write_samples(r->gan, o, r->zgrid, r->xgrid, st->iterations, r->tb) < 0)
        return fail(r, NULL);
    if (r->net && run_every(st->iterations, o->eval_every, last)) {
        draw = true;
        double fd;
        if (frechet(r->gan, r->net, &r->real, o, &fd) < 0)
            return fail(r, NULL);
        if (run_log_printf(&r->log, "{\"kind\":\"fid\",\"step\":%llu,\"fd\":%.9g,"
                           "\"floor\":%.9g,\"n\":%d,\"seconds\":%.1f}",
                           (unsigned long long)st->iterations, fd, vka_fidnet_floor(r->net),
                           o->fid_n, run_pace_elapsed(&r->pace)) < 0)
            return fail(r, NULL);
        const char *tag = "eval/frechet_distance";
        if (run_tb_scalars(r->tb, st->iterations, &tag, &fd, 1) < 0)
            return fail(r, NULL);
        printf("%sstep %llu: Frechet distance %.3f (%d images; floor, test vs train: %.3f)  "
               "(%.0f s)\n", r->pace.tty ? "\n" : "", (unsigned long long)st->iterations, fd,
               o->fid_n, vka_fidnet_floor(r->net), run_pace_elapsed(&r->pace));
    }
    if (draw)
        run_curves_refresh(&r->curves, o->out);
    return run_every(st->iterations, o->save_every, last) ? save_last(r) : 0;
}

static int gan_train(int argc, char **argv)
{
    struct gan_opts o;
    defaults(&o);
    bool help;
    int ret = cli_opts_parse("gan train", argc, argv, GAN_TABLE, &o, NULL, NULL, NULL, NULL, 0, &help);
    if (ret)
        return ret;
    if (help) {
        cli_opts_help(GAN_TABLE, "usage: vkaccum gan train --out RUN [options]\n\nTrains a DCGAN "
                      "pair; each phase runs the effective batch B as micro-batches of b\nand "
                      "steps once on the gradient of the whole batch.", NULL, NULL);
        return 0;
    }
    /* the run's own options, then this command line's on top */
    if (o.resume[0] &&
        (ret = run_resume_opts("gan train", GAN_TABLE, &o, defaults, argc, argv, NULL)))
        return ret;
    if (!o.out[0])
        return cli_usage_error("gan train", "say where the run goes: --out RUN");
    if ((ret = finish(&o, "gan train")) ||
        (ret = run_accumulate_mode("gan train", o.accumulate, sizeof(o.accumulate))))
        return ret;

    struct run r;
    if ((ret = run_open(&r, &o)) != 0 ||
        ((o.profile || o.profile_layers) &&
         (ret = -cli_profile_begin(r.ctx, o.profile_layers)))) {
        run_close_checked(&r, false);
        return ret > 0 ? 0 : 1;
    }
    struct vka_gan_stats st;
    vka_gan_get_stats(r.gan, &st);
    printf("training %lld iterations: batch %d as micro-batches of %d (%d per step) in both "
           "phases, %d D step(s) per G step, %dx%dx%d, width %d, norm %s, loss %s, lr %g, "
           "ema %g kimg, device %s\n", o.steps, o.batch, o.micro,
           (o.batch + o.micro - 1) / o.micro, o.d_steps, o.channels, o.res, o.res, o.width,
           o.norm, o.loss, o.lr, o.ema_kimg, r.ctx->info.name);
    if (o.resume[0])
        printf("resuming %s at iteration %llu (%llu real images seen)\n", o.resume,
               (unsigned long long)st.iterations, (unsigned long long)st.samples);
    run_pace_start(&r.pace, st.samples);
    run_signals_install();
    ret = 0;
    int sig = 0;
    while (ret == 0 && !sig && (long long)st.iterations < o.steps) {
        if (vka_gan_iteration(r.gan, next_real, &r.src) < 0) {
            ret = fail(&r, NULL);
            break;
        }
        vka_gan_get_stats(r.gan, &st);
        sig = run_stop_signal();
        if ((ret = sync_boundary(&r, &st, &sig)) == 0 && (ret = boundary(&r, &st)) == 0 && sig &&
            (ret = save_last(&r)) == 0)
            printf("%sstopped by %s at iteration %llu of %lld; last.safetensors saved. Resume "
                   "with:\n  vkaccum gan train --resume %s\n", r.pace.tty ? "\n" : "",
                   run_signal_name(sig), (unsigned long long)st.iterations, o.steps, o.out);
    }
    if (ret == 0 && !sig)
        printf("%sdone: %llu iterations, %llu real images, %.0f s; run in %s\n",
               r.pace.tty ? "\n" : "", (unsigned long long)st.iterations,
               (unsigned long long)st.samples, run_pace_elapsed(&r.pace), o.out);
    if (ret == 0)
        run_print_combine_share(run_pace_elapsed(&r.pace));
    if (run_writes() && run_curves_finish(&r.curves) == 0 && r.curves.out[0] && ret == 0)
        printf("curves: %s\n", r.curves.out);
    cli_profile_end(r.ctx, ret == 0, (uint32_t)o.d_steps + 1, "iteration");
    if (run_close_checked(&r, ret == 0) < 0)
        ret = -1;
    return ret < 0 ? 1 : 0;
}

/* ---- sample ------------------------------------------------------------------------ */

/* spherical interpolation between a and b (dim floats) at t */
static void slerp(const float *a, const float *b, uint32_t dim, double t, float *out)
{
    double ab = 0, aa = 0, bb = 0;
    for (uint32_t i = 0; i < dim; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    double c = ab / sqrt(aa * bb), th = acos(c < -1 ? -1 : c > 1 ? 1 : c), s = sin(th);
    for (uint32_t i = 0; i < dim; i++)
        out[i] = s < 1e-6 ? (float)((1 - t) * a[i] + t * b[i])
                          : (float)((sin((1 - t) * th) * a[i] + sin(t * th) * b[i]) / s);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static int gan_sample(int argc, char **argv)
{
    static const char *only[] = { "device", "seed", NULL };
    const char *names[] = { "ckpt", "n", "out", "interpolate", "weights", "raw" };
    char *vals[6] = { NULL, NULL, NULL, NULL, NULL, NULL };
    struct gan_opts cli;
    defaults(&cli);
    bool help;
    int ret = cli_opts_parse("gan sample", argc, argv, GAN_TABLE, &cli, only, NULL, names, vals, 6, &help);
    if (ret)
        return ret;
    if (help) {
        printf("usage: vkaccum gan sample --ckpt F --out DIR|grid.png [--n N] [--seed S] "
               "[--interpolate K] [--weights ema|g] [--raw F.npy]\n\nGenerates N images (default 64) from G_ema (or G) of a "
               "checkpoint of vkaccum gan train:\na grid when --out ends in .png, else one PNG "
               "per image in DIR. --interpolate K: N rows\nof K images along the spherical path "
               "between two random latents. --raw F.npy: the images also\nas float32 "
               "(N, channels, res, res) in [-1, 1], as G makes them.\n\n  --device D  --seed S (0)\n");
        return 0;
    }
    if (!vals[0] || !vals[2])
        return cli_usage_error("gan sample", "give --ckpt F and --out DIR|grid.png");
    char *end;
    long n = vals[1] ? strtol(vals[1], &end, 10) : 64, k = 0;
    if (vals[1] && (*end || n < 1 || n > 100000))
        return cli_usage_error("gan sample", "--n %s: give 1 to 100000 images", vals[1]);
    if (vals[3] && ((k = strtol(vals[3], &end, 10)) < 2 || *end || k > 64))
        return cli_usage_error("gan sample", "--interpolate %s: give 2 to 64 steps", vals[3]);
    if (vals[4] && strcmp(vals[4], "ema") && strcmp(vals[4], "g"))
        return cli_usage_error("gan sample", "--weights %s: choose ema or g", vals[4]);
    if (vka_dist()->rank != 0) /* under mpirun: one set of images, rank 0's */
        return 0;

    struct vka_st_file *f = NULL;
    struct vka_ctx *ctx = NULL;
    struct vka_gan_sampler *s = NULL;
    float *z = NULL, *x = NULL;
    ret = 1;
    struct gan_opts o;
    defaults(&o);
    if (vka_st_read(vals[0], &f) < 0) {
        fprintf(stderr, "vkaccum gan sample: %s\n", vka_last_error());
        goto out;
    }
    const char *cfg = vka_st_meta_get(f, "config"), *kind = vka_st_meta_get(f, "kind");
    cJSON *j = cfg ? cJSON_Parse(cfg) : NULL;
    if (!kind || strcmp(kind, "vkaccum-gan") || !j) {
        fprintf(stderr, "vkaccum gan sample: %s is not a checkpoint of vkaccum gan train\n", vals[0]);
        cJSON_Delete(j);
        goto out;
    }
    bool bad = cli_opts_from_json(GAN_TABLE, &o, j, vals[0]) < 0;
    cJSON_Delete(j);
    if (bad) {
        fprintf(stderr, "vkaccum gan sample: the configuration in the metadata of %s\n",
                vka_last_error());
        goto out;
    }
    bool ema = !vals[4] || !strcmp(vals[4], "ema");
    const char *prefix = ema && vka_st_find(f, "G_ema.main.0.weight") ? "G_ema" : "G";
    struct vka_dcgan_params mp = model_of(&o);
    uint32_t total = (uint32_t)(k ? n * k : n), xf = mp.channels * mp.res * mp.res;
    if (!(ctx = cli_open_ctx("gan sample", cli.device, 0)))
        goto out;
    if (vka_gan_sampler_create(ctx, &mp, prefix, &s) < 0 ||
        vka_ckpt_load_weights_file(f, vka_gan_sampler_graph(s)) < 0) {
        fprintf(stderr, "vkaccum gan sample: %s\n", vka_last_error());
        goto out;
    }
    z = malloc((size_t)total * mp.z_dim * sizeof(float));
    x = malloc((size_t)total * xf * sizeof(float));
    if (!z || !x) {
        fprintf(stderr, "vkaccum gan sample: out of memory for %u images\n", total);
        goto out;
    }
    if (k) {
        float ends[2 * 4096];
        for (uint32_t r = 0; r < (uint32_t)n; r++) {
            vka_gan_noise((uint64_t)cli.seed, NOISE_GRID, 2 * r, 2, mp.z_dim, ends);
            for (uint32_t i = 0; i < (uint32_t)k; i++)
                slerp(ends, ends + mp.z_dim, mp.z_dim, (double)i / (k - 1),
                      z + ((size_t)r * k + i) * mp.z_dim);
        }
    } else {
        vka_gan_noise((uint64_t)cli.seed, NOISE_GRID, 0, total, mp.z_dim, z);
    }
    if (vka_gan_sampler_run(s, z, total, x) < 0) {
        fprintf(stderr, "vkaccum gan sample: %s\n", vka_last_error());
        goto out;
    }
    if (ends_with(vals[2], ".png")) {
        if (write_grid(vals[2], x, total, k ? (uint32_t)k : grid_cols(total), mp.channels,
                       mp.res, 2, NULL, 0) < 0) {
            fprintf(stderr, "vkaccum gan sample: %s\n", vka_last_error());
            goto out;
        }
    } else {
        if ((ret = cli_mkdir_p(vals[2])) < 0) {
            fprintf(stderr, "vkaccum gan sample: cannot create %s: %s\n", vals[2], strerror(-ret));
            ret = 1;
            goto out;
        }
        for (uint32_t i = 0; i < total; i++) {
            char path[700];
            snprintf(path, sizeof(path), "%s/sample_%05u.png", vals[2], i);
            if (write_grid(path, x + (size_t)i * xf, 1, 1, mp.channels, mp.res, 0, NULL, 0) < 0) {
                fprintf(stderr, "vkaccum gan sample: %s\n", vka_last_error());
                goto out;
            }
        }
    }
    const uint32_t shape[4] = { total, mp.channels, mp.res, mp.res };
    if (vals[5] && cli_npy_write(vals[5], shape, 4, x) < 0) {
        fprintf(stderr, "vkaccum gan sample: --raw %s\n", vka_last_error());
        goto out;
    }
    printf("wrote %u image(s) from %s of %s to %s\n", total, prefix, vals[0], vals[2]);
    ret = 0;
out:
    free(z);
    free(x);
    vka_st_file_destroy(&f);
    vka_gan_sampler_destroy(&s);
    vka_ctx_destroy(&ctx);
    return ret;
}

int cli_gan(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = { { "train", gan_train }, { "sample", gan_sample }, { "fid-net", cli_gan_fidnet } };
    if (argc >= 2)
        for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
            if (!strcmp(argv[1], cmds[i].name))
                return cmds[i].fn(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "--help") && strcmp(argv[1], "-h"))
        return cli_usage_error("gan", "unknown command '%s'", argv[1]);
    printf("usage: vkaccum gan train|sample|fid-net [options]\n\n"
           "  train    train a DCGAN with gradient accumulation in both phases\n"
           "  sample   generate images or latent interpolations from a checkpoint\n"
           "  fid-net  train the Fashion-MNIST feature network of the Frechet distance\n\n"
           "vkaccum gan COMMAND --help lists a command's options.\n");
    return argc >= 2 ? 0 : CLI_USAGE;
}
