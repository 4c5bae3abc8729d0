/* vkaccum seg train|eval|predict: U-Net segmentation with exact gradient accumulation. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "cli/cli.h"
#include "cli/run.h"
#include "cli/seg.h"
#include "log.h"
#include "train.h"

#define SEG_TABLE seg_opt_table, seg_opt_count

static const char *train_only[] = { "json", NULL };
static const char *eval_opts[] = { "data", "palette", "device", "val-count", "tile",
                                   "micro-batch", "json", "skip-bad", "ignore-index", NULL };
static const char *predict_opts[] = { "device", "tile", "micro-batch", NULL };

static int open_dataset(const struct seg_opts *o, enum vka_split split, struct vka_dataset **ds)
{
    struct vka_dataset_params dp = { .split = split, .seed = (uint64_t)o->seed,
                                     .skip_bad = o->skip_bad,
                                     .width = (uint32_t)o->crop, .height = (uint32_t)o->crop };
    int32_t ignore = o->ignore_index;
    dp.ignore_index = &ignore;
    if (o->palette[0])
        dp.palette = o->palette;
    if (split == VKA_SPLIT_TRAIN)
        dp.count = (uint32_t)o->train_count;
    if (vka_dataset_spec_parse(o->data, true, &dp) < 0)
        return -EINVAL;
    return vka_dataset_open(&dp, ds);
}

static int metrics_json(struct run_log *log, const char *kind, long long step,
                        const struct seg_metrics *m)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "kind", kind);
    cJSON_AddNumberToObject(j, "step", (double)step);
    cJSON_AddNumberToObject(j, "miou", m->miou);
    cJSON_AddNumberToObject(j, "pixel_acc", m->pixel_acc);
    cJSON *iou = cJSON_AddArrayToObject(j, "iou");
    for (uint32_t k = 0; k < m->classes; k++)
        cJSON_AddItemToArray(iou, m->present[k] ? cJSON_CreateNumber(m->iou[k]) : cJSON_CreateNull());
    char *s = cJSON_PrintUnformatted(j);
    int ret = s ? run_log_printf(log, "%s", s) : -ENOMEM;
    free(s);
    cJSON_Delete(j);
    return ret;
}

static int save(const char *path, struct seg_model *m, struct vka_trainer *tr,
                const struct seg_opts *o, struct vka_loader_pos pos, double best)
{
    cJSON *cfg = seg_opts_json(o);
    char *cfgs = cJSON_PrintUnformatted(cfg);
    char bests[32];
    snprintf(bests, sizeof(bests), "%.17g", best);
    struct vka_st_meta meta[] = { { "config", cfgs }, { "best_miou", bests } };
    int64_t lp[2];
    struct vka_st_tensor extra = run_loader_tensor(pos, lp);
    int ret = vka_ckpt_save(path, m->g, &tr, tr ? 1 : 0, tr ? &extra : NULL, tr ? 1 : 0, meta, 2);
    free(cfgs);
    cJSON_Delete(cfg);
    return ret;
}

/* --dump-grads FILE: runs the first window (B samples as micro-batches of b), then one
 * optimizer step, and writes, with the checkpoint's names and PyTorch's layouts: the
 * initial weights (NAME), the window's inputs (input.image (B,3,S,S), input.mask
 * (B,S,S)), the accumulated gradient normalised by the window's count (grad.NAME), the
 * weights after the step (step.NAME), and [loss, count]. tools/parity/accum.py redoes
 * it all in PyTorch from the same file. */
struct dump {
    struct vka_st_tensor *t;
    void **data;
    size_t n, cap;
};

static int dump_add(struct dump *d, const char *name, enum vka_st_dtype dtype, uint32_t ndim,
                    const uint64_t *shape, void *data)
{
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 64;
        d->t = realloc(d->t, d->cap * sizeof(*d->t));
        d->data = realloc(d->data, d->cap * sizeof(*d->data));
        if (!d->t || !d->data)
            return -ENOMEM;
    }
    d->t[d->n] = (struct vka_st_tensor){ .name = strdup(name), .dtype = dtype, .ndim = ndim,
                                         .data = data };
    memcpy(d->t[d->n].shape, shape, ndim * sizeof(uint64_t));
    d->data[d->n++] = data;
    return 0;
}

/* Every parameter as prefix + name, divided by div. */
static int dump_params(struct dump *d, struct seg_model *m, const char *prefix, bool grads,
                       float div)
{
    for (uint32_t i = 0; i < vka_graph_nvals(m->g); i++) {
        const struct vka_val *v = vka_graph_val(m->g, (int)i);
        if (v->kind != VKA_VAL_PARAM)
            continue;
        uint64_t count = (uint64_t)v->n * v->c * v->h * v->w, shape[4];
        const uint32_t dims[4] = { v->n, v->c, v->h, v->w };
        float *h = malloc(count * sizeof(float));
        struct vka_tensor t = grads ? vka_graph_grad_tensor(m->g, (int)i) : vka_graph_tensor(m->g, (int)i);
        int ret = h ? vka_tensor_download(&t, h) : -ENOMEM;
        if (ret < 0) {
            free(h);
            return ret;
        }
        for (uint64_t k = 0; k < count; k++)
            h[k] /= div;
        for (uint32_t k = 0; k < v->file_rank; k++)
            shape[k] = dims[k];
        char name[160];
        snprintf(name, sizeof(name), "%s%s", prefix, v->name);
        if ((ret = dump_add(d, name, VKA_ST_F32, v->file_rank, shape, h)) < 0)
            return ret;
    }
    return 0;
}

static int dump_grads(struct seg_model *m, struct vka_loader *loader, const struct seg_opts *o,
                      const struct vka_optim_params *op, double lr)
{
    struct dump d = { 0 };
    uint32_t B = (uint32_t)o->batch, S = (uint32_t)o->crop;
    float *xs = malloc(sizeof(float) * B * 3 * S * S);
    int32_t *ys = malloc(sizeof(int32_t) * B * S * S);
    int ret = xs && ys ? dump_params(&d, m, "", false, 1.0f) : -ENOMEM;
    for (uint32_t done = 0; done < B && ret == 0;) {
        uint32_t b = B - done < (uint32_t)o->micro ? B - done : (uint32_t)o->micro;
        struct vka_batch bt;
        struct vka_plan *plan;
        if ((ret = vka_loader_next(loader, b, &bt)) < 0 ||
            (ret = vka_graph_plan(m->g, bt.n, true, &plan)) < 0)
            break;
        memcpy(xs + (size_t)done * 3 * S * S, bt.x, sizeof(float) * bt.n * 3 * S * S);
        memcpy(ys + (size_t)done * S * S, bt.y, sizeof(int32_t) * bt.n * S * S);
        struct vka_tensor ti = vka_plan_tensor(plan, m->net.image);
        struct vka_tensor tt = vka_plan_tensor(plan, m->target);
        if ((ret = vka_tensor_upload(&ti, bt.x)) < 0 || (ret = vka_tensor_upload(&tt, bt.y)) < 0 ||
            (ret = vka_plan_run(plan)) < 0)
            break;
        done += bt.n;
    }
    float acc[2] = { 0, 0 };
    struct vka_tensor lt = vka_graph_tensor(m->g, m->loss);
    struct vka_ctx *ctx = lt.buf->ctx;
    struct vka_optim *opt = NULL;
    struct vka_cmd *cmd = NULL;
    if (ret == 0) {
        uint64_t sx[4] = { B, 3, S, S }, sy[3] = { B, S, S };
        if ((ret = dump_add(&d, "input.image", VKA_ST_F32, 4, sx, xs)) == 0)
            ret = dump_add(&d, "input.mask", VKA_ST_I32, 3, sy, ys);
        xs = NULL;
        ys = NULL;
    }
    if (ret == 0 && (ret = vka_tensor_download(&lt, acc)) == 0)
        ret = dump_params(&d, m, "grad.", true, acc[1]);
    if (ret == 0) {
        struct vka_optim_params p = *op;
        struct vka_tensor params = vka_graph_params_flat(m->g), grads = vka_graph_grads_flat(m->g);
        p.count = vka_tensor_stored(&params);
        bool skipped;
        if ((ret = vka_optim_create(ctx, &p, &opt)) == 0 &&
            (ret = vka_cmd_create(ctx, NULL, &cmd)) == 0 && (ret = vka_cmd_begin(cmd)) == 0 &&
            (ret = vka_optim_record_step(cmd, opt, &params, &grads, 1.0f / acc[1], lr)) == 0 &&
            (ret = vka_cmd_run(cmd)) == 0 && (ret = vka_optim_finish_step(opt, &skipped, NULL)) == 0)
            ret = dump_params(&d, m, "step.", false, 1.0f);
    }
    float *lossv = malloc(2 * sizeof(float));
    if (ret == 0 && lossv) {
        lossv[0] = acc[0] / acc[1];
        lossv[1] = acc[1];
        uint64_t two = 2;
        ret = dump_add(&d, "loss_and_count", VKA_ST_F32, 1, &two, lossv);
        lossv = NULL;
    }
    if (ret == 0) {
        char lrs[32];
        snprintf(lrs, sizeof(lrs), "%.17g", lr);
        cJSON *cj = seg_opts_json(o);
        char *cfg = cJSON_PrintUnformatted(cj);
        struct vka_st_meta meta[] = { { "config", cfg }, { "lr", lrs } };
        ret = vka_st_write(o->dump_grads, &(struct vka_st_write_params){
            .tensors = d.t, .n_tensors = d.n, .meta = meta, .n_meta = 2 });
        free(cfg);
        cJSON_Delete(cj);
    }
    if (ret == 0)
        printf("wrote the first window (%u samples as micro-batches of %d: loss %.6f over %.0f "
               "pixels), its gradient and one %s step to %s\n", B, o->micro, acc[0] / acc[1],
               acc[1], o->optimizer, o->dump_grads);
    for (size_t i = 0; i < d.n; i++) {
        free((char *)d.t[i].name);
        free(d.data[i]);
    }
    free(d.t);
    free(d.data);
    free(xs);
    free(ys);
    free(lossv);
    vka_cmd_destroy(&cmd);
    vka_optim_destroy(&opt);
    return ret;
}

static void progress(bool tty, const struct vka_trainer_stats *s, long long total, double ips,
                     double elapsed)
{
    double eta = s->opt_steps ? elapsed / s->opt_steps * (total - (long long)s->opt_steps) : 0;
    if (tty)
        fprintf(stderr, "\r  step %llu/%lld  loss %.4f  lr %.2e  %.1f img/s  ETA %02d:%02d ",
                (unsigned long long)s->opt_steps, total, s->loss, s->lr, ips,
                (int)eta / 60, (int)eta % 60);
}

/* The class histogram of the training masks, and a warning for a class id that looks
 * like a stray one: present in under 0.01 % of the pixels, or absent between present
 * ids (a mask with a 7 among 0-3 makes an 8-class model with four empty classes). */
static void print_class_stats(const struct seg_opts *o, struct vka_dataset *train,
                              struct vka_dataset *val, const struct vka_class_stats *cs)
{
    uint64_t total_px = cs->ignored, labelled = 0;
    for (uint32_t k = 0; k < cs->classes; k++)
        labelled += cs->pixels[k];
    total_px += labelled;
    printf("%s: %u training images, %u validation images, %d classes; class frequencies:",
           o->data, vka_dataset_count(train), val ? vka_dataset_count(val) : 0, o->classes);
    for (uint32_t k = 0; k < cs->classes; k++)
        printf(" %u:%.3f", k, total_px ? (double)cs->pixels[k] / total_px : 0);
    printf(" ignored:%.3f\n", total_px ? (double)cs->ignored / total_px : 0);
    uint32_t last = 0;
    for (uint32_t k = 0; k < cs->classes; k++)
        if (cs->pixels[k])
            last = k;
    for (uint32_t k = 0; k <= last && labelled; k++) {
        if (!cs->pixels[k])
            fprintf(stderr, "vkaccum seg train: warning: class %u is in no training mask, "
                    "though class %u is: a stray id in a mask? (--classes %d trains all "
                    "of them)\n", k, last, o->classes);
        else if ((double)cs->pixels[k] / labelled < 1e-4)
            fprintf(stderr, "vkaccum seg train: warning: class %u is only %llu of %llu "
                    "labelled pixels (under 0.01 %%): a stray id in a mask?\n", k,
                    (unsigned long long)cs->pixels[k], (unsigned long long)labelled);
    }
}

static void defaults(void *o)
{
    seg_opts_defaults(o);
}

/* --resume: the trainer's state, the loader's position and the best mIoU so far, from
 * RUN/last.safetensors read once; every value is checked before anything is changed. */
static int resume(const struct seg_opts *o, struct seg_model *m, struct vka_trainer *tr,
                  struct vka_loader *loader, double *best)
{
    char path[1100];
    struct vka_st_file *f;
    snprintf(path, sizeof(path), "%s/last.safetensors", o->resume);
    if (vka_ckpt_load(path, m->g, &tr, 1, &f) < 0) {
        fprintf(stderr, "vkaccum seg train: --resume: %s\n", vka_last_error());
        return -1;
    }
    const char *b = vka_st_meta_get(f, "best_miou");
    char *end = NULL;
    *best = b ? strtod(b, &end) : -1;
    struct vka_loader_pos pos;
    int ret = run_loader_pos(f, &pos);
    if (ret == 0 && b && (end == b || *end || !(*best >= -1 && *best <= 1))) {
        vka_err("checkpoint %s: best_miou \"%.32s\" is not a number from -1 to 1", path, b);
        ret = -EINVAL;
    }
    vka_st_file_destroy(&f);
    if (ret < 0 || vka_loader_seek(loader, pos) < 0) {
        fprintf(stderr, "vkaccum seg train: --resume: %s\n", vka_last_error());
        return -1;
    }
    return 0;
}

static int seg_train(int argc, char **argv)
{
    struct seg_opts o;
    seg_opts_defaults(&o);
    bool help;
    int ret = cli_opts_parse("seg train", argc, argv, SEG_TABLE, &o, NULL, train_only, NULL, NULL, 0, &help);
    if (ret)
        return ret;
    if (help) {
        cli_opts_help(SEG_TABLE, "usage: vkaccum seg train --out RUN [options]\n\nTrains a "
                   "U-Net on DIR/{train,val}/{images,masks}, a Pascal VOC folder, or a built-in "
                   "dataset,\nwith an effective batch B run as micro-batches of b.", NULL, train_only);
        return 0;
    }
    /* the run's own options, then this command line's on top */
    if (o.resume[0] &&
        (ret = run_resume_opts("seg train", SEG_TABLE, &o, defaults, argc, argv, train_only)))
        return ret;
    if (!o.out[0] && !o.dump_grads[0])
        return cli_usage_error("seg train", "say where the run goes: --out RUN");
    if (seg_opts_finish(&o, "seg train") < 0)
        return CLI_USAGE;

    struct vka_dataset *train = NULL, *val = NULL;
    struct vka_loader *loader = NULL;
    struct vka_ctx *ctx = NULL;
    struct seg_model m = { 0 };
    struct vka_trainer *tr = NULL;
    struct run_log log = { 0 };
    ret = 1;
    if (open_dataset(&o, VKA_SPLIT_TRAIN, &train) < 0 ||
        (!o.dump_grads[0] && open_dataset(&o, VKA_SPLIT_VAL, &val) < 0)) {
        fprintf(stderr, "vkaccum seg train: %s\n", vka_last_error());
        goto out;
    }
    if (!o.classes)
        o.classes = (int)vka_dataset_classes(train);
    /* the ids the masks really hold, checked against the model's classes: the error names
     * the first mask holding one too large */
    if (vka_dataset_check_classes(train, (uint32_t)o.classes) < 0 ||
        (val && vka_dataset_check_classes(val, (uint32_t)o.classes) < 0)) {
        fprintf(stderr, "vkaccum seg train: --classes %d: %s\n", o.classes, vka_last_error());
        goto out;
    }
    struct vka_class_stats cs;
    if (vka_dataset_class_stats(train, &cs) < 0) {
        fprintf(stderr, "vkaccum seg train: %s\n", vka_last_error());
        goto out;
    }
    print_class_stats(&o, train, val, &cs);

    if (!(ctx = cli_open_ctx("seg", o.device, o.mem_budget)))
        goto out;
    if (seg_model_build(ctx, &o, true, &m) < 0) {
        fprintf(stderr, "vkaccum seg train: %s\n", vka_last_error());
        goto out;
    }
    if (!strcmp(o.norm, "batch") && o.micro < 8)
        fprintf(stderr, "vkaccum seg train: warning: BatchNorm statistics come from each "
                        "micro-batch of %d samples, not from the batch of %d; --norm group "
                        "does not depend on the micro-batch\n", o.micro, o.batch);
    if (m.weights >= 0) {
        float w[VKA_MAX_CLASSES];
        if (!strcmp(o.class_weights, "auto")) {
            vka_class_weights_median_freq(&cs, w);
        } else {
            char *s = o.class_weights, *end;
            for (int k = 0; k < o.classes; k++) {
                w[k] = strtof(s, &end);
                if (end == s || (k < o.classes - 1 && *end != ',') || w[k] < 0) {
                    fprintf(stderr, "vkaccum seg train: --class-weights %s: give auto, none or "
                                    "%d non-negative numbers\n", o.class_weights, o.classes);
                    goto out;
                }
                s = end + 1;
            }
        }
        printf("class weights:");
        for (int k = 0; k < o.classes; k++)
            printf(" %.3f", w[k]);
        printf("\n");
        struct vka_tensor wt = vka_graph_tensor(m.g, m.weights);
        if (vka_tensor_upload(&wt, w) < 0)
            goto out;
    }
    if (o.load_from[0] && vka_ckpt_load_weights(o.load_from, m.g) < 0) {
        fprintf(stderr, "vkaccum seg train: --load-from: %s\n", vka_last_error());
        goto out;
    }

    uint64_t count = vka_dataset_count(train);
    long long steps = o.steps ? o.steps : o.epochs ? (long long)((o.epochs * count + o.batch - 1) / o.batch) : 300;
    struct vka_augment_params aug = { .size = (uint32_t)o.crop, .mean = o.mean_v, .std = o.std_v };
    if (!o.no_augment) {
        aug.random_crop = aug.flip = true;
        aug.scale_min = (float)o.scale_min;
        aug.scale_max = (float)o.scale_max;
        aug.brightness = aug.contrast = aug.saturation = (float)o.jitter;
    }
    struct vka_loader_params lp = { .dataset = train, .batch = (uint32_t)o.micro,
                                    .workers = (uint32_t)o.workers, .shuffle = !o.no_augment,
                                    .seed = (uint64_t)o.seed, .epoch_batches = true,
                                    .channels = 3, .aug = aug };
    if (vka_loader_create(&lp, &loader) < 0) {
        fprintf(stderr, "vkaccum seg train: %s\n", vka_last_error());
        goto out;
    }

    enum vka_optim_kind ok = !strcmp(o.optimizer, "sgd") ? VKA_OPTIM_SGD
                           : !strcmp(o.optimizer, "adam") ? VKA_OPTIM_ADAM : VKA_OPTIM_ADAMW;
    struct vka_trainer_params tp = {
        .batch = (uint32_t)o.batch, .micro = (uint32_t)o.micro, .drop_last = o.drop_last,
        .optim = vka_optim_defaults(ok, 1), .loss = m.loss,
        .inputs = { m.net.image, m.target }, .ninputs = 2,
        .lr = { .lr = o.lr, .warmup_steps = (uint64_t)o.warmup, .warmup_start_factor = 0.001 },
    };
    tp.optim.weight_decay = o.weight_decay;
    tp.optim.max_norm = o.clip;
    if (ok == VKA_OPTIM_SGD)
        tp.optim.momentum = o.momentum;
    if (!strcmp(o.schedule, "poly"))
        tp.lr = (struct vka_lr_schedule){ .kind = VKA_LR_POLY, .lr = o.lr, .total_steps = (uint64_t)steps,
                                          .power = 0.9, .min_lr = 1e-4 * o.lr };
    else if (!strcmp(o.schedule, "cosine"))
        tp.lr = (struct vka_lr_schedule){ .kind = VKA_LR_COSINE, .lr = o.lr, .t_max = (uint64_t)steps };
    else if (!strcmp(o.schedule, "step"))
        tp.lr = (struct vka_lr_schedule){ .kind = VKA_LR_STEP, .lr = o.lr, .step_size = (uint64_t)(steps / 3 ? steps / 3 : 1),
                                          .gamma = 0.1 };
    else
        tp.lr = (struct vka_lr_schedule){ .kind = VKA_LR_CONSTANT, .lr = o.lr };
    tp.lr.warmup_steps = (uint64_t)o.warmup;
    tp.lr.warmup_start_factor = 0.001;
    if (o.dump_grads[0]) {
        ret = dump_grads(&m, loader, &o, &tp.optim, vka_lr_at(&tp.lr, 0)) < 0 ? 1 : 0;
        if (ret)
            fprintf(stderr, "vkaccum seg train: %s\n", vka_last_error());
        goto out;
    }
    if (vka_trainer_create(m.g, &tp, &tr) < 0) {
        fprintf(stderr, "vkaccum seg train: %s\n", vka_last_error());
        goto out;
    }

    char path[1200];
    double best = -1;
    if (o.resume[0] && resume(&o, &m, tr, loader, &best) < 0)
        goto out;
    struct vka_trainer_stats st;
    vka_trainer_get_stats(tr, &st);
    if (run_folder_prepare(o.out, SEG_TABLE, &o) < 0 ||
        run_log_open(&log, o.out, o.resume[0], st.opt_steps) < 0) {
        fprintf(stderr, "vkaccum seg train: %s\n", vka_last_error());
        goto out;
    }

    printf("training %lld steps: batch %d as micro-batches of %d (%d per step), crop %d, %s, "
           "lr %g (%s), device %s\n", steps, o.batch, o.micro, (o.batch + o.micro - 1) / o.micro,
           o.crop, o.optimizer, o.lr, o.schedule, ctx->info.name);
    bool tty = isatty(2);
    double t0 = cli_now(), tlast = t0;
    if (o.resume[0])
        printf("resuming %s at step %llu (%llu samples seen, %u in the open window)%s\n",
               o.resume, (unsigned long long)st.opt_steps, (unsigned long long)st.samples_seen,
               st.window_samples, log.dropped ? "; metrics logged after that step dropped" : "");
    uint64_t samples_last = st.samples_seen;
    while ((long long)st.opt_steps < steps) {
        struct vka_batch bt;
        bool stepped = false;
        if (vka_loader_next(loader, vka_trainer_next_size(tr), &bt) < 0 ||
            vka_trainer_micro_step(tr, (const void *[]){ bt.x, bt.y }, bt.n, &stepped) < 0 ||
            (bt.epoch_end && !stepped && vka_trainer_end_epoch(tr, &stepped) < 0)) {
            fprintf(stderr, "%svkaccum seg train: %s\n", tty ? "\n" : "", vka_last_error());
            goto out;
        }
        vka_trainer_get_stats(tr, &st);
        if (!stepped)
            continue;
        /* the window boundary: log, evaluate, save */
        double t = cli_now();
        double ips = (st.samples_seen - samples_last) / (t - tlast);
        tlast = t;
        samples_last = st.samples_seen;
        struct vka_mem_stats ms;
        vka_mem_get_stats(ctx, &ms);
        struct vka_loader_pos pos = vka_loader_tell(loader);
        if (run_log_printf(&log, "{\"kind\":\"train\",\"step\":%llu,\"epoch\":%.4f,"
                           "\"loss\":%.9g,\"lr\":%.9g,\"grad_norm\":%.9g,\"img_per_s\":%.3f,"
                           "\"peak_mib\":%.2f,\"samples\":%llu,\"skipped\":%llu}",
                           (unsigned long long)st.opt_steps, pos.epoch + (double)pos.index / count,
                           st.loss, st.lr, st.grad_norm, ips, ms.total_peak / 1048576.0,
                           (unsigned long long)st.samples_seen,
                           (unsigned long long)st.skipped_steps) < 0) {
            fprintf(stderr, "%svkaccum seg train: %s\n", tty ? "\n" : "", vka_last_error());
            goto out;
        }
        progress(tty, &st, steps, ips, t - t0);
        if (!tty && (st.opt_steps % 50 == 0 || (long long)st.opt_steps == steps))
            printf("step %llu/%lld  loss %.4f  lr %.2e  %.1f img/s  peak %.0f MiB  %.0f s\n",
                   (unsigned long long)st.opt_steps, steps, st.loss, st.lr, ips,
                   ms.total_peak / 1048576.0, t - t0);
        bool last = (long long)st.opt_steps == steps;
        if (last || (o.eval_every && st.opt_steps % (uint64_t)o.eval_every == 0)) {
            struct seg_metrics sm;
            struct seg_model em;
            snprintf(path, sizeof(path), "%s/samples/step_%06llu", o.out,
                     (unsigned long long)st.opt_steps);
            int mk = cli_mkdir_p(path);
            if (mk < 0) {
                fprintf(stderr, "%svkaccum seg train: cannot create %s: %s\n", tty ? "\n" : "",
                        path, strerror(-mk));
                goto out;
            }
            /* evaluation runs the same weights through a forward-only plan */
            vka_graph_set_training(m.g, false);
            em = m;
            if (seg_metrics_init(&sm, (uint32_t)o.classes) < 0 ||
                seg_evaluate(&em, &o, val, (uint32_t)o.val_count, path, 4, &sm) < 0) {
                fprintf(stderr, "%svkaccum seg train: evaluation: %s\n", tty ? "\n" : "",
                        vka_last_error());
                seg_metrics_free(&sm);
                goto out;
            }
            vka_graph_set_training(m.g, true);
            if (metrics_json(&log, "val", (long long)st.opt_steps, &sm) < 0) {
                fprintf(stderr, "%svkaccum seg train: %s\n", tty ? "\n" : "", vka_last_error());
                seg_metrics_free(&sm);
                goto out;
            }
            printf("%sstep %llu: val mIoU %.4f  pixel accuracy %.4f  (%.0f s)\n", tty ? "\n" : "",
                   (unsigned long long)st.opt_steps, sm.miou, sm.pixel_acc, cli_now() - t0);
            if (sm.miou > best) {
                best = sm.miou;
                snprintf(path, sizeof(path), "%s/best.safetensors", o.out);
                if (save(path, &m, NULL, &o, pos, best) < 0) {
                    fprintf(stderr, "vkaccum seg train: %s\n", vka_last_error());
                    seg_metrics_free(&sm);
                    goto out;
                }
            }
            seg_metrics_free(&sm);
        }
        if (last || (o.save_every && st.opt_steps % (uint64_t)o.save_every == 0)) {
            snprintf(path, sizeof(path), "%s/last.safetensors", o.out);
            if (save(path, &m, tr, &o, pos, best) < 0) {
                fprintf(stderr, "vkaccum seg train: %s\n", vka_last_error());
                goto out;
            }
        }
    }
    printf("%sdone: %llu steps, %llu samples, %.0f s, best val mIoU %.4f; run in %s\n",
           tty ? "\n" : "", (unsigned long long)st.opt_steps,
           (unsigned long long)st.samples_seen, cli_now() - t0, best, o.out);
    ret = 0;
out:
    if (run_log_close(&log) < 0 && ret == 0) {
        fprintf(stderr, "vkaccum seg train: %s\n", vka_last_error());
        ret = 1;
    }
    vka_trainer_destroy(&tr);
    vka_loader_destroy(&loader);
    seg_model_destroy(&m);
    vka_dataset_destroy(&train);
    vka_dataset_destroy(&val);
    vka_ctx_destroy(&ctx);
    return ret;
}

/* The options stored in a checkpoint's metadata, for eval and predict. */
static int opts_from_ckpt(const char *cmd, const char *path, struct seg_opts *o)
{
    struct vka_st_file *f;
    if (vka_st_read(path, &f) < 0) {
        fprintf(stderr, "vkaccum %s: %s\n", cmd, vka_last_error());
        return -1;
    }
    const char *cfg = vka_st_meta_get(f, "config");
    cJSON *j = cfg ? cJSON_Parse(cfg) : NULL;
    seg_opts_defaults(o);
    int ret = j ? seg_opts_from_json(o, j, path) : -EINVAL;
    if (ret < 0 && j)
        fprintf(stderr, "vkaccum %s: the configuration in the metadata of %s\n", cmd,
                vka_last_error());
    else if (ret < 0)
        fprintf(stderr, "vkaccum %s: %s holds no vkaccum seg configuration in its metadata\n",
                cmd, path);
    cJSON_Delete(j);
    vka_st_file_destroy(&f);
    return ret;
}

static int seg_eval(int argc, char **argv)
{
    struct seg_opts o, cli;
    seg_opts_defaults(&cli);
    cli.data[0] = '\0';
    const char *names[] = { "ckpt" };
    char *vals[1] = { NULL };
    bool help;
    int ret = cli_opts_parse("seg eval", argc, argv, SEG_TABLE, &cli, eval_opts, NULL, names, vals, 1, &help);
    if (ret)
        return ret;
    if (help) {
        cli_opts_help(SEG_TABLE, "usage: vkaccum seg eval --ckpt F [--data D] [--json]\n\n"
                   "Per-class IoU, mIoU, pixel accuracy and the confusion matrix on the val split.",
                   eval_opts, NULL);
        printf("  --%-15s %s\n", "ckpt", "the checkpoint (last or best .safetensors of a run)");
        return 0;
    }
    if (!vals[0])
        return cli_usage_error("seg eval", "say which checkpoint: --ckpt F");
    if (opts_from_ckpt("seg eval", vals[0], &o) < 0)
        return 1;
    if (cli.data[0])
        snprintf(o.data, sizeof(o.data), "%s", cli.data);
    if (cli.palette[0])
        snprintf(o.palette, sizeof(o.palette), "%s", cli.palette);
    snprintf(o.device, sizeof(o.device), "%s", cli.device);
    o.val_count = cli.val_count;
    o.json = cli.json;
    o.skip_bad = cli.skip_bad;
    if (cli.tile)
        o.tile = cli.tile;
    if (seg_opts_finish(&o, "seg eval") < 0)
        return CLI_USAGE;
    struct vka_dataset *val = NULL;
    struct vka_ctx *ctx = NULL;
    struct seg_model m = { 0 };
    struct seg_metrics sm = { 0 };
    ret = 1;
    if (open_dataset(&o, VKA_SPLIT_VAL, &val) < 0 || !(ctx = cli_open_ctx("seg", o.device, o.mem_budget)) ||
        seg_model_build(ctx, &o, false, &m) < 0 || vka_ckpt_load_weights(vals[0], m.g) < 0 ||
        seg_metrics_init(&sm, (uint32_t)o.classes) < 0 ||
        seg_evaluate(&m, &o, val, (uint32_t)o.val_count, NULL, 0, &sm) < 0) {
        fprintf(stderr, "vkaccum seg eval: %s\n", vka_last_error());
        goto out;
    }
    uint32_t C = sm.classes;
    if (o.json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "miou", sm.miou);
        cJSON_AddNumberToObject(j, "pixel_acc", sm.pixel_acc);
        cJSON *iou = cJSON_AddArrayToObject(j, "iou"), *conf = cJSON_AddArrayToObject(j, "confusion");
        for (uint32_t k = 0; k < C; k++) {
            cJSON_AddItemToArray(iou, sm.present[k] ? cJSON_CreateNumber(sm.iou[k]) : cJSON_CreateNull());
            cJSON *row = cJSON_CreateArray();
            for (uint32_t p = 0; p < C; p++)
                cJSON_AddItemToArray(row, cJSON_CreateNumber((double)sm.conf[k * C + p]));
            cJSON_AddItemToArray(conf, row);
        }
        char *s = cJSON_Print(j);
        puts(s);
        free(s);
        cJSON_Delete(j);
    } else {
        printf("%s on %s (val), %u images\n\n  class    IoU\n", vals[0], o.data,
               o.val_count && (uint32_t)o.val_count < vka_dataset_count(val) ? (uint32_t)o.val_count
                                                                             : vka_dataset_count(val));
        for (uint32_t k = 0; k < C; k++)
            printf(sm.present[k] ? "  %5u  %.4f\n" : "  %5u     -\n", k, sm.iou[k]);
        printf("\n  mIoU %.4f   pixel accuracy %.4f\n\n  confusion (rows: target, columns: "
               "prediction)\n", sm.miou, sm.pixel_acc);
        for (uint32_t k = 0; k < C; k++) {
            printf("  ");
            for (uint32_t p = 0; p < C; p++)
                printf(" %10llu", (unsigned long long)sm.conf[k * C + p]);
            printf("\n");
        }
    }
    ret = 0;
out:
    seg_metrics_free(&sm);
    seg_model_destroy(&m);
    vka_dataset_destroy(&val);
    vka_ctx_destroy(&ctx);
    return ret;
}

static int predict_one(struct seg_model *m, const struct seg_opts *o, const char *in,
                       const char *outdir)
{
    struct vka_image img = { 0 };
    int ret = vka_image_read(in, 3, &img);
    if (ret < 0)
        return ret;
    size_t n = (size_t)img.w * img.h;
    float *x = malloc(n * 3 * sizeof(float));
    uint8_t *pred = malloc(n), *over = malloc(n * 3);
    struct vka_augment_params aug = { .mean = o->mean_v, .std = o->std_v };
    if (!x || !pred || !over)
        ret = -ENOMEM;
    if (ret == 0)
        ret = vka_augment(&aug, 0, &img, NULL, o->ignore_index, x, NULL);
    if (ret == 0)
        ret = seg_predict(m, (uint32_t)o->micro, x, 3, img.h, img.w, pred);
    if (ret == 0) {
        const char *base = strrchr(in, '/') ? strrchr(in, '/') + 1 : in;
        char stem[512], path[1200];
        snprintf(stem, sizeof(stem), "%s", base);
        char *dot = strrchr(stem, '.');
        if (dot)
            *dot = '\0';
        for (size_t p = 0; p < n; p++) {
            uint8_t col[3];
            seg_class_colour(pred[p], col);
            for (int k = 0; k < 3; k++)
                over[p * 3 + k] = pred[p] ? (uint8_t)((img.data[p * 3 + k] + col[k]) / 2)
                                          : img.data[p * 3 + k];
        }
        snprintf(path, sizeof(path), "%s/%s_mask.png", outdir, stem);
        ret = cli_png_write(path, img.w, img.h, 1, pred);
        snprintf(path, sizeof(path), "%s/%s_overlay.png", outdir, stem);
        if (ret == 0)
            ret = cli_png_write(path, img.w, img.h, 3, over);
        if (ret == 0)
            printf("%s: %ux%u -> %s/%s_mask.png\n", in, img.w, img.h, outdir, stem);
    }
    free(x);
    free(pred);
    free(over);
    vka_image_free(&img);
    return ret;
}

static int seg_predict_cmd(int argc, char **argv)
{
    struct seg_opts o, cli;
    seg_opts_defaults(&cli);
    const char *names[] = { "ckpt", "input", "out" };
    char *vals[3] = { NULL, NULL, NULL };
    bool help;
    int ret = cli_opts_parse("seg predict", argc, argv, SEG_TABLE, &cli, predict_opts, NULL, names, vals, 3, &help);
    if (ret)
        return ret;
    if (help) {
        cli_opts_help(SEG_TABLE, "usage: vkaccum seg predict --ckpt F --input FILE|DIR --out DIR\n\n"
                   "Writes NAME_mask.png (class ids) and NAME_overlay.png for each image; images of any\n"
                   "size are predicted in overlapping tiles of --tile (default: the training crop).",
                   predict_opts, NULL);
        return 0;
    }
    for (int i = 0; i < 3; i++)
        if (!vals[i])
            return cli_usage_error("seg predict", "--%s is required", names[i]);
    if (opts_from_ckpt("seg predict", vals[0], &o) < 0)
        return 1;
    snprintf(o.device, sizeof(o.device), "%s", cli.device);
    if (cli.tile)
        o.tile = cli.tile;
    if (cli.micro)
        o.micro = cli.micro;
    if (seg_opts_finish(&o, "seg predict") < 0)
        return CLI_USAGE;
    struct vka_ctx *ctx = NULL;
    struct seg_model m = { 0 };
    if ((ret = cli_mkdir_p(vals[2])) < 0) {
        fprintf(stderr, "vkaccum seg predict: cannot create %s: %s\n", vals[2], strerror(-ret));
        return 1;
    }
    ret = 1;
    if (!(ctx = cli_open_ctx("seg", o.device, o.mem_budget)) || seg_model_build(ctx, &o, false, &m) < 0 ||
        vka_ckpt_load_weights(vals[0], m.g) < 0) {
        fprintf(stderr, "vkaccum seg predict: %s\n", vka_last_error());
        goto out;
    }
    struct stat st;
    if (stat(vals[1], &st) < 0) {
        fprintf(stderr, "vkaccum seg predict: --input %s: no such file or folder\n", vals[1]);
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        struct vka_dataset *ds;
        struct vka_dataset_params dp = { .kind = VKA_DATA_IMAGES, .path = vals[1] };
        if (vka_dataset_open(&dp, &ds) < 0) {
            fprintf(stderr, "vkaccum seg predict: %s\n", vka_last_error());
            goto out;
        }
        int bad = 0;
        for (uint32_t i = 0; i < vka_dataset_count(ds); i++)
            if (predict_one(&m, &o, vka_dataset_name(ds, i), vals[2]) < 0) {
                fprintf(stderr, "vkaccum seg predict: %s\n", vka_last_error());
                bad++;
            }
        vka_dataset_destroy(&ds);
        if (bad)
            goto out;
    } else if (predict_one(&m, &o, vals[1], vals[2]) < 0) {
        fprintf(stderr, "vkaccum seg predict: %s\n", vka_last_error());
        goto out;
    }
    ret = 0;
out:
    seg_model_destroy(&m);
    vka_ctx_destroy(&ctx);
    return ret;
}

int cli_seg(int argc, char **argv)
{
    static const char usage[] =
        "usage: vkaccum seg train|eval|predict [OPTIONS]\n"
        "\n"
        "  train    train a U-Net (vkaccum seg train --help)\n"
        "  eval     per-class IoU, mIoU and pixel accuracy of a checkpoint\n"
        "  predict  class-id masks and colour overlays for images of any size\n";
    if (argc < 2) {
        fputs(usage, stderr);
        return CLI_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "train"))
        return seg_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "eval"))
        return seg_eval(argc - 1, argv + 1);
    if (!strcmp(argv[1], "predict"))
        return seg_predict_cmd(argc - 1, argv + 1);
    return cli_usage_error("seg", "unknown command '%s' (train, eval or predict)", argv[1]);
}
