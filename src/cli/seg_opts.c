/* vkaccum seg: the option table, the engine's parameters from the options, overlays;
 * see seg_opts.h. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/fit.h"
#include "cli/seg_opts.h"
#include "log.h"

#define O(n, t, f, ch, h) { n, t, offsetof(struct seg_opts, f), sizeof(((struct seg_opts *)0)->f), ch, h }

const struct opt_desc seg_opt_table[] = {
    O("data", OPT_STR, data, NULL, "DIR, voc:DIR, folder:DIR, shapes or fashion (default shapes)"),
    O("out", OPT_STR, out, NULL, "run folder: config.json, metrics.jsonl, checkpoints, samples/"),
    O("palette", OPT_STR, palette, NULL, "JSON list of [r,g,b] colours: RGB masks, colour k = class k"),
    O("reduce-zero-label", OPT_BOOL, reduce_zero_label, NULL, "mask id 0 is unlabelled (ignored), id k is class k-1 (implied by ade20k:)"),
    O("classes", OPT_INT, classes, NULL, "classes (default: the dataset's)"),
    O("batch", OPT_INT, batch, NULL, "effective batch B: samples per optimizer step (16)"),
    O("micro-batch", OPT_INT, micro, "auto", "micro-batch b: samples per forward/backward, or auto: the largest whose predicted memory fits the budget (auto)"),
    O("recompute", OPT_STR, recompute, "auto|none|blocks|all", "keep for backward everything (none), the inputs of each block or of each layer (all) and recompute the rest; auto: none unless nothing fits (auto)"),
    O("plan", OPT_BOOL, plan, NULL, "print the predicted device memory and the largest micro-batch that fits, and exit"),
    O("accum", OPT_INT, accum, NULL, "micro-batches per step k, instead of --micro-batch (b = B/k)"),
    O("accumulate", OPT_STR, accumulate, "auto|ordered|exact", "how gradients and losses are summed: ordered (float32, in sample order: any micro-batch split gives the same bits) or exact (96-bit fixed point, 16 bytes more per parameter: any split and order, over ranks too, gives the same bits); auto: exact over several ranks (mpirun), else ordered (auto)"),
    O("crop", OPT_INT, crop, NULL, "training crop S, a multiple of 2^depth (64)"),
    O("steps", OPT_LONG, steps, NULL, "optimizer steps to train (default 300 unless --epochs)"),
    O("epochs", OPT_INT, epochs, NULL, "epochs to train, instead of --steps"),
    O("lr", OPT_DOUBLE, lr, NULL, "base learning rate (1e-3)"),
    O("optimizer", OPT_STR, optimizer, "adamw|adam|sgd", "optimizer (adamw)"),
    O("weight-decay", OPT_DOUBLE, weight_decay, NULL, "weight decay (1e-4)"),
    O("momentum", OPT_DOUBLE, momentum, NULL, "SGD momentum (0.9)"),
    O("schedule", OPT_STR, schedule, "poly|cosine|step|constant", "learning-rate schedule over the steps (poly)"),
    O("warmup", OPT_INT, warmup, NULL, "linear warm-up steps (0)"),
    O("clip-norm", OPT_DOUBLE, clip, NULL, "global gradient-norm clipping, 0 off (0)"),
    O("eval-every", OPT_INT, eval_every, NULL, "evaluate every N steps, 0 only at the end (100)"),
    O("save-every", OPT_INT, save_every, NULL, "save last.safetensors every N steps (100)"),
    O("resume", OPT_STR, resume, NULL, "continue the run in RUN from RUN/last.safetensors"),
    O("load-from", OPT_STR, load_from, NULL, "start from the weights of a safetensors file"),
    O("seed", OPT_LONG, seed, NULL, "seed of initialisation, data order and augmentation (0)"),
    O("device", OPT_STR, device, NULL, "device index or a part of its name"),
    O("depth", OPT_INT, depth, NULL, "U-Net down-samplings (4)"),
    O("width", OPT_INT, width, NULL, "U-Net base channels, doubling per level (32)"),
    O("norm", OPT_STR, norm, "group|batch", "normalisation (group: 8 groups)"),
    O("groups", OPT_INT, groups, NULL, "GroupNorm groups (8)"),
    O("up", OPT_STR, up, "convT|bilinear", "up-sampling (convT)"),
    O("ignore-index", OPT_INT, ignore_index, NULL, "mask value left out of loss and metrics (255)"),
    O("class-weights", OPT_STR, class_weights, NULL, "none, auto (median frequency) or w0,w1,..."),
    O("mean", OPT_STR, mean, NULL, "per-channel input mean (0.485,0.456,0.406)"),
    O("std", OPT_STR, std, NULL, "per-channel input std (0.229,0.224,0.225)"),
    O("workers", OPT_INT, workers, NULL, "data loading threads (2)"),
    O("no-augment", OPT_BOOL, no_augment, NULL, "no augmentation; training images in sorted order"),
    O("scale-min", OPT_DOUBLE, scale_min, NULL, "scale jitter range, low (0.75)"),
    O("scale-max", OPT_DOUBLE, scale_max, NULL, "scale jitter range, high (1.25)"),
    O("color-jitter", OPT_DOUBLE, jitter, NULL, "brightness/contrast/saturation jitter (0.2)"),
    O("train-count", OPT_INT, train_count, NULL, "generated training samples (shapes, fashion: 2000)"),
    O("val-count", OPT_INT, val_count, NULL, "validation images evaluated, 0 all (0)"),
    O("tile", OPT_INT, tile, NULL, "inference tile, 0: the crop (0)"),
    O("skip-bad", OPT_BOOL, skip_bad, NULL, "warn and skip bad samples instead of failing"),
    O("drop-last", OPT_BOOL, drop_last, NULL, "drop an epoch's last partial window"),
    O("detect-anomaly", OPT_BOOL, detect_anomaly, NULL, "check every op's output; name the first that is not finite (slow)"),
    O("profile", OPT_BOOL, profile, NULL, "time every op and pass with timestamp queries; print the top 15 per step at the end (slower)"),
    O("profile-layers", OPT_BOOL, profile_layers, NULL, "--profile with a row per layer: op, input>output channels, output size"),
    O("mem-budget", OPT_DOUBLE, mem_budget, NULL, "device memory budget in MiB (default: the device's)"),
    O("dump-grads", OPT_STR, dump_grads, NULL, "write the first window's normalised gradient and exit"),
    O("json", OPT_BOOL, json, NULL, "eval: print JSON"),
    O("logits", OPT_BOOL, logits, NULL, "predict: also write NAME_logits.npy, float32 (classes, H, W): the logits averaged over tiles"),
    O("tensorboard", OPT_BOOL, tensorboard, NULL, "also write TensorBoard event files into RUN/tb/"),
};
const size_t seg_opt_count = sizeof(seg_opt_table) / sizeof(seg_opt_table[0]);

void seg_opts_defaults(struct seg_opts *o)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->data, sizeof(o->data), "shapes");
    snprintf(o->optimizer, sizeof(o->optimizer), "adamw");
    snprintf(o->schedule, sizeof(o->schedule), "poly");
    snprintf(o->norm, sizeof(o->norm), "group");
    snprintf(o->up, sizeof(o->up), "convT");
    snprintf(o->class_weights, sizeof(o->class_weights), "none");
    snprintf(o->mean, sizeof(o->mean), "0.485,0.456,0.406");
    snprintf(o->std, sizeof(o->std), "0.229,0.224,0.225");
    snprintf(o->recompute, sizeof(o->recompute), "auto");
    snprintf(o->accumulate, sizeof(o->accumulate), "auto");
    o->batch = 16;
    o->crop = 64;
    o->lr = 1e-3;
    o->weight_decay = 1e-4;
    o->momentum = 0.9;
    o->eval_every = 100;
    o->save_every = 100;
    o->depth = 4;
    o->width = 32;
    o->groups = 8;
    o->ignore_index = 255;
    o->workers = 2;
    o->scale_min = 0.75;
    o->scale_max = 1.25;
    o->jitter = 0.2;
}

cJSON *seg_opts_json(const struct seg_opts *o)
{
    return cli_opts_json(seg_opt_table, seg_opt_count, o);
}

int seg_opts_from_json(struct seg_opts *o, const cJSON *j, const char *what)
{
    return cli_opts_from_json(seg_opt_table, seg_opt_count, o, j, what);
}

static int parse_triple(const char *cmd, const char *name, const char *s, float v[3])
{
    char *end;
    for (int i = 0; i < 3; i++) {
        v[i] = strtof(s, &end);
        if (end == s || (i < 2 && *end != ',') || (i == 2 && *end))
            return cli_usage_error(cmd, "--%s %s: give three numbers a,b,c", name, s), -EINVAL;
        s = end + 1;
    }
    return 0;
}

int seg_opts_finish(struct seg_opts *o, const char *cmd)
{
    if (parse_triple(cmd, "mean", o->mean, o->mean_v) < 0 ||
        parse_triple(cmd, "std", o->std, o->std_v) < 0)
        return -EINVAL;
    for (int i = 0; i < 3; i++)
        if (!(o->std_v[i] > 0))
            return cli_usage_error(cmd, "--std %s: every value must be above 0", o->std), -EINVAL;
    if (o->batch < 1)
        return cli_usage_error(cmd, "--batch must be at least 1"), -EINVAL;
    if (o->accum && o->micro)
        return cli_usage_error(cmd, "give --micro-batch or --accum, not both"), -EINVAL;
    if (o->accum)
        o->micro = (o->batch + o->accum - 1) / o->accum;
    if (o->micro > o->batch)
        return cli_usage_error(cmd, "--micro-batch %d is larger than --batch %d", o->micro,
                               o->batch), -EINVAL;
    if (o->depth < 1 || o->depth > 6)
        return cli_usage_error(cmd, "--depth %d: give 1 to 6", o->depth), -EINVAL;
    if (o->crop < 1 || o->crop > (int)VKA_IMAGE_MAX_SIDE || o->crop % (1 << o->depth))
        return cli_usage_error(cmd, "--crop %d must be a positive multiple of 2^depth = %d",
                               o->crop, 1 << o->depth), -EINVAL;
    if (o->tile && o->tile % (1 << o->depth))
        return cli_usage_error(cmd, "--tile %d must be a multiple of 2^depth = %d", o->tile,
                               1 << o->depth), -EINVAL;
    if (o->ignore_index > 255)
        return cli_usage_error(cmd, "--ignore-index %d: masks are 8-bit, give 0 to 255",
                               o->ignore_index), -EINVAL;
    if (o->scale_min > o->scale_max)
        return cli_usage_error(cmd, "--scale-min %g is above --scale-max %g", o->scale_min,
                               o->scale_max), -EINVAL;
    /* the augmenter's own limits, checked here so that nothing is written before */
    if (!(o->scale_min > 0) || o->scale_max > 16)
        return cli_usage_error(cmd, "--scale-min %g / --scale-max %g: need 0 < min <= max <= 16",
                               o->scale_min, o->scale_max), -EINVAL;
    if (o->jitter > 1)
        return cli_usage_error(cmd, "--color-jitter %g: give 0 to 1", o->jitter), -EINVAL;
    if (o->classes > (int)VKA_MAX_CLASSES)
        return cli_usage_error(cmd, "--classes %d: at most %u", o->classes, VKA_MAX_CLASSES),
               -EINVAL;
    if (o->workers > 64)
        return cli_usage_error(cmd, "--workers %d: at most 64", o->workers), -EINVAL;
    if (o->width < 1 || (!strcmp(o->norm, "group") && (o->groups < 1 || o->width % o->groups)))
        return cli_usage_error(cmd, "--width %d must be a multiple of --groups %d", o->width,
                               o->groups), -EINVAL;
    return 0;
}

void seg_engine_params(const struct seg_opts *o, bool train, long long steps,
                       const float *class_weights, struct vka_seg_params *p)
{
    *p = (struct vka_seg_params){
        .model = { .in_channels = 3, .classes = (uint32_t)o->classes, .depth = (uint32_t)o->depth,
                   .width = (uint32_t)o->width, .groups = (uint32_t)o->groups,
                   .norm = !strcmp(o->norm, "batch") ? VKA_UNET_BATCH : VKA_UNET_GROUP,
                   .bilinear = !strcmp(o->up, "bilinear"),
                   .size = (uint32_t)(train || !o->tile ? o->crop : o->tile) },
        .train = train, .mean = o->mean_v, .std = o->std_v, .ignore_index = o->ignore_index,
        .seed = (uint64_t)o->seed, .batch = (uint32_t)o->batch, .micro = (uint32_t)o->micro,
        .drop_last = o->drop_last, .class_weights = class_weights,
        .detect_anomaly = o->detect_anomaly,
        .recompute = fit_mode_of(o->recompute), .exact = train && !strcmp(o->accumulate, "exact"),
    };
    if (!train)
        return;
    enum vka_optim_kind kind = !strcmp(o->optimizer, "sgd") ? VKA_OPTIM_SGD
                             : !strcmp(o->optimizer, "adam") ? VKA_OPTIM_ADAM : VKA_OPTIM_ADAMW;
    p->optim = vka_optim_defaults(kind, 1);
    p->optim.weight_decay = o->weight_decay;
    p->optim.max_norm = o->clip;
    if (kind == VKA_OPTIM_SGD)
        p->optim.momentum = o->momentum;
    /* schedules count optimizer steps, over the run's steps */
    if (!strcmp(o->schedule, "poly"))
        p->lr = (struct vka_lr_schedule){ .kind = VKA_LR_POLY, .total_steps = (uint64_t)steps,
                                          .power = 0.9, .min_lr = 1e-4 * o->lr };
    else if (!strcmp(o->schedule, "cosine"))
        p->lr = (struct vka_lr_schedule){ .kind = VKA_LR_COSINE, .t_max = (uint64_t)steps };
    else if (!strcmp(o->schedule, "step"))
        p->lr = (struct vka_lr_schedule){ .kind = VKA_LR_STEP, .gamma = 0.1,
                                          .step_size = (uint64_t)(steps / 3 ? steps / 3 : 1) };
    else
        p->lr = (struct vka_lr_schedule){ .kind = VKA_LR_CONSTANT };
    p->lr.lr = o->lr;
    p->lr.warmup_steps = (uint64_t)o->warmup;
    p->lr.warmup_start_factor = 0.001;
}

void seg_class_colour(uint32_t k, uint8_t rgb[3])
{
    /* Pascal VOC's colour map: the bits of k spread over the channels' high bits */
    rgb[0] = rgb[1] = rgb[2] = 0;
    for (int i = 0; i < 8; i++) {
        rgb[0] |= (uint8_t)(((k >> 0) & 1) << (7 - i));
        rgb[1] |= (uint8_t)(((k >> 1) & 1) << (7 - i));
        rgb[2] |= (uint8_t)(((k >> 2) & 1) << (7 - i));
        k >>= 3;
    }
}

uint8_t *seg_overlay_rgb(const struct vka_image *img, const uint8_t *pred)
{
    size_t n = (size_t)img->w * img->h;
    uint8_t *rgb = malloc(n * 3);
    if (!rgb) {
        vka_err("out of memory for a %ux%u overlay", img->w, img->h);
        return NULL;
    }
    for (size_t p = 0; p < n; p++) {
        uint8_t col[3];
        seg_class_colour(pred[p], col);
        for (int k = 0; k < 3; k++) {
            uint8_t v = img->data[p * img->c + (img->c == 3 ? k : 0)];
            rgb[p * 3 + k] = pred[p] ? (uint8_t)((v + col[k]) / 2) : v;
        }
    }
    return rgb;
}

int seg_write_overlay(const char *path, const struct vka_image *img, const uint8_t *pred)
{
    uint8_t *rgb = seg_overlay_rgb(img, pred);
    int ret = rgb ? cli_png_write(path, img->w, img->h, 3, rgb) : -ENOMEM;
    free(rgb);
    return ret;
}

/* ---- fitting into device memory ----------------------------------------------------- */

struct seg_fit {
    struct vka_ctx *ctx;
    struct vka_seg_params p;
    uint64_t budget;
};

static int seg_predict(void *user, uint32_t b, enum vka_recompute mode, struct vka_mem_plan *m)
{
    struct seg_fit *f = user;
    struct vka_seg_params p = f->p;
    p.micro = b;
    p.recompute = mode;
    return vka_seg_plan_memory(f->ctx, &p, m);
}

/* The largest smaller crop at which micro-batch 1 fits in some recompute mode. */
static int seg_smaller(void *user, char *hint, size_t size)
{
    struct seg_fit *f = user;
    uint32_t step = 1u << f->p.model.depth;
    for (uint32_t s = f->p.model.size / 2 / step * step; s >= step; s = s / 2 / step * step) {
        struct seg_fit t = *f;
        t.p.model.size = s;
        for (int mode = 0; mode < 3; mode++) {
            struct vka_mem_plan m;
            if (seg_predict(&t, 1, (enum vka_recompute)mode, &m) < 0)
                return -1;
            if (m.total <= f->budget) {
                snprintf(hint, size, "--crop %u (%.2f GiB%s%s)", s,
                         (double)m.total / (1ull << 30), mode ? ", --recompute " : "",
                         mode ? fit_mode_name((enum vka_recompute)mode) : "");
                return 0;
            }
        }
    }
    return -1;
}

int seg_opts_fit(struct seg_opts *o, struct vka_ctx *ctx, bool train, const char *cmd)
{
    struct vka_mem_stats ms;
    vka_mem_get_stats(ctx, &ms);
    struct seg_fit f = { .ctx = ctx, .budget = ms.budget };
    seg_engine_params(o, train, 1, NULL, &f.p);
    struct fit fit = {
        .cmd = cmd, .fn = seg_predict, .user = &f, .batch = (uint32_t)o->batch,
        .micro = (uint32_t)o->micro, .recompute = train ? o->recompute : "none",
        .accumulate = train ? o->accumulate : NULL,
        .budget = ms.budget, .budget_from = o->mem_budget > 0 ? "--mem-budget" : "the device's",
        .smaller = train ? seg_smaller : NULL,
    };
    return fit_apply(&fit, train && o->plan, &o->micro, o->recompute, sizeof(o->recompute));
}
