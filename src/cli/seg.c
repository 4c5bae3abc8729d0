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
#include "cli/profile.h"
#include "cli/run.h"
#include "cli/seg_opts.h"
#include "dist.h"
#include "log.h"
#include "tb.h"
#include "train.h"

#define SEG_TABLE seg_opt_table, seg_opt_count

static const char *train_skip[] = { "json", "logits", NULL }; /* of eval and predict only */
static const char *eval_opts[] = { "data", "palette", "reduce-zero-label", "device", "val-count", "tile",
                                   "micro-batch", "json", "skip-bad", "ignore-index", NULL };
static const char *predict_opts[] = { "device", "tile", "micro-batch", "logits", NULL };

static int open_dataset(const struct seg_opts *o, enum vka_split split, struct vka_dataset **ds)
{
    struct vka_dataset_params dp = { .split = split, .seed = (uint64_t)o->seed,
                                     .skip_bad = o->skip_bad,
                                     .reduce_zero_label = o->reduce_zero_label,
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

/* A training run's resources; train_close frees whatever train_open made. */
struct train_run {
    struct seg_opts *o;
    struct vka_dataset *train, *val;
    struct vka_loader *loader;
    struct vka_ctx *ctx;
    struct vka_seg *seg;
    struct run_log log;
    struct run_pace pace;
    struct run_curves curves;
    struct vka_tb *tb; /* --tensorboard */
    long long steps;
    double best;
};

static void train_close(struct train_run *r)
{
    vka_tb_close(&r->tb);
    vka_seg_destroy(&r->seg);
    vka_loader_destroy(&r->loader);
    vka_dataset_destroy(&r->train);
    vka_dataset_destroy(&r->val);
    vka_ctx_destroy(&r->ctx);
}

/* Prints "vkaccum seg train: what: the last error" (on a fresh line after a progress
 * line) and returns -1. */
static int fail(const struct train_run *r, const char *what)
{
    fprintf(stderr, "%svkaccum seg train: %s%s%s\n", r->pace.tty ? "\n" : "", what ? what : "",
            what ? ": " : "", vka_last_error());
    return -1;
}

/* The class histogram of the training masks, and a warning for a class id that looks
 * like a stray one: present in under 0.01 % of the pixels, or absent between present
 * ids (a mask with a 7 among 0-3 makes an 8-class model with four empty classes). */
static void print_class_stats(const struct train_run *r, const struct vka_class_stats *cs)
{
    uint64_t labelled = 0;
    for (uint32_t k = 0; k < cs->classes; k++)
        labelled += cs->pixels[k];
    uint64_t total = labelled + cs->ignored;
    printf("%s: %u training images, %u validation images, %d classes; class frequencies:",
           r->o->data, vka_dataset_count(r->train), r->val ? vka_dataset_count(r->val) : 0,
           r->o->classes);
    for (uint32_t k = 0; k < cs->classes; k++)
        printf(" %u:%.3f", k, total ? (double)cs->pixels[k] / total : 0);
    printf(" ignored:%.3f\n", total ? (double)cs->ignored / total : 0);
    uint32_t last = 0;
    for (uint32_t k = 0; k < cs->classes; k++)
        if (cs->pixels[k])
            last = k;
    for (uint32_t k = 0; k <= last && labelled; k++) {
        if (!cs->pixels[k])
            fprintf(stderr, "vkaccum seg train: warning: class %u is in no training mask, "
                    "though class %u is: a stray id in a mask? (--classes %d trains all "
                    "of them)\n", k, last, r->o->classes);
        else if ((double)cs->pixels[k] / labelled < 1e-4)
            fprintf(stderr, "vkaccum seg train: warning: class %u is only %llu of %llu "
                    "labelled pixels (under 0.01 %%): a stray id in a mask?\n", k,
                    (unsigned long long)cs->pixels[k], (unsigned long long)labelled);
    }
}

/* --class-weights none|auto|w0,w1,...: w, or NULL for none; -1 after a usage error. */
static int class_weights(const struct seg_opts *o, const struct vka_class_stats *cs,
                         float *w, const float **out)
{
    *out = NULL;
    if (!strcmp(o->class_weights, "none"))
        return 0;
    if (!strcmp(o->class_weights, "auto")) {
        vka_class_weights_median_freq(cs, w);
    } else {
        const char *s = o->class_weights;
        char *end;
        for (int k = 0; k < o->classes; k++) {
            w[k] = strtof(s, &end);
            if (end == s || (k < o->classes - 1 && *end != ',') || w[k] < 0) {
                cli_usage_error("seg train", "--class-weights %s: give auto, none or %d "
                                "non-negative numbers", o->class_weights, o->classes);
                return -1;
            }
            s = end + 1;
        }
    }
    printf("class weights:");
    for (int k = 0; k < o->classes; k++)
        printf(" %.3f", w[k]);
    printf("\n");
    *out = w;
    return 0;
}

/* The checkpoint: the model (and with state, the trainer's and the loader's), the run's
 * options and the best mIoU so far. */
static int save(struct train_run *r, const char *name, bool state)
{
    if (!run_writes())
        return 0;
    char path[1100], bests[32];
    snprintf(path, sizeof(path), "%s/%s", r->o->out, name);
    snprintf(bests, sizeof(bests), "%.17g", r->best);
    cJSON *cfg = seg_opts_json(r->o);
    char *cfgs = cfg ? cJSON_PrintUnformatted(cfg) : NULL;
    struct vka_st_meta meta[] = { { "config", cfgs }, { "best_miou", bests } };
    int64_t lp[2];
    struct vka_st_tensor extra = run_loader_tensor(vka_loader_tell(r->loader), lp);
    int ret = cfgs ? vka_seg_save(r->seg, path, state, &extra, 1, meta, 2) : -ENOMEM;
    free(cfgs);
    cJSON_Delete(cfg);
    if (ret < 0)
        run_name_file(path);
    return ret < 0 ? fail(r, NULL) : 0;
}

/* --resume: the trainer's state, the loader's position and the best mIoU so far, from
 * RUN/last.safetensors read once; every value is checked before training goes on. */
static int resume(struct train_run *r)
{
    char path[1100];
    struct vka_st_file *f;
    snprintf(path, sizeof(path), "%s/last.safetensors", r->o->resume);
    if (vka_seg_load(r->seg, path, &f) < 0)
        return fail(r, "--resume");
    const char *b = vka_st_meta_get(f, "best_miou");
    char *end = NULL;
    r->best = b ? strtod(b, &end) : -1;
    struct vka_loader_pos pos;
    int ret = run_loader_pos(f, &pos);
    if (ret == 0 && b && (end == b || *end || !(r->best >= -1 && r->best <= 1))) {
        vka_err("checkpoint %s: best_miou \"%.32s\" is not a number from -1 to 1", path, b);
        ret = -EINVAL;
    }
    vka_st_file_destroy(&f);
    return ret < 0 || vka_loader_seek(r->loader, pos) < 0 ? fail(r, "--resume") : 0;
}

/* Datasets, classes, device, the micro-batch and recompute mode that fit, engine,
 * loader; with --dump-grads nothing more, else the resumed state and the run folder. -1
 * after printing why, 1 after printing --plan. */
static int train_open(struct train_run *r, struct seg_opts *o)
{
    *r = (struct train_run){ .o = o, .best = -1, .pace = { .tty = run_writes() && isatty(2) } };
    if (open_dataset(o, VKA_SPLIT_TRAIN, &r->train) < 0 ||
        (!o->dump_grads[0] && open_dataset(o, VKA_SPLIT_VAL, &r->val) < 0))
        return fail(r, NULL);
    if (!o->classes)
        o->classes = (int)vka_dataset_classes(r->train);
    /* the ids the masks really hold against the model's classes: the error names the
     * first mask holding one too large. --plan reads no mask (the memory does not depend
     * on them; at 1024x1024 the built-in dataset's 2000 masks take 3 s to draw). */
    float w[VKA_MAX_CLASSES];
    const float *weights = NULL;
    if (!o->plan) {
        if (vka_dataset_check_classes(r->train, (uint32_t)o->classes) < 0 ||
            (r->val && vka_dataset_check_classes(r->val, (uint32_t)o->classes) < 0)) {
            fprintf(stderr, "vkaccum seg train: --classes %d: %s\n", o->classes,
                    vka_last_error());
            return -1;
        }
        struct vka_class_stats cs;
        if (vka_dataset_class_stats(r->train, &cs) < 0)
            return fail(r, NULL);
        print_class_stats(r, &cs);
        if (class_weights(o, &cs, w, &weights) < 0)
            return -1;
    }
    uint64_t count = vka_dataset_count(r->train);
    int ranks = vka_dist()->size;
    if (o->batch % ranks) {
        fprintf(stderr, "vkaccum seg train: --batch %d does not split over %d ranks: give a "
                "multiple of %d\n", o->batch, ranks, ranks);
        return -1;
    }
    r->steps = o->steps ? o->steps
             : o->epochs ? (long long)((o->epochs * count + o->batch - 1) / o->batch) : 300;
    if (!(r->ctx = cli_open_ctx("seg train", o->device, o->mem_budget)))
        return -1;
    int fit = seg_opts_fit(o, r->ctx, true, "seg train");
    if (fit)
        return fit;
    if (o->micro > o->batch / ranks)
        o->micro = o->batch / ranks; /* a rank trains batch / ranks samples a window */
    struct vka_seg_params sp;
    seg_engine_params(o, true, r->steps, weights, &sp);
    sp.ranks = (uint32_t)ranks;
    if (vka_seg_create(r->ctx, &sp, &r->seg) < 0)
        return fail(r, NULL);
    if (ranks > 1)
        vka_trainer_set_combine(vka_seg_trainer(r->seg), run_combine, NULL);
    if (!strcmp(o->norm, "batch") && o->micro < 8)
        fprintf(stderr, "vkaccum seg train: warning: BatchNorm statistics come from each "
                        "micro-batch of %d samples, not from the batch of %d; --norm group "
                        "does not depend on the micro-batch\n", o->micro, o->batch);
    if (o->load_from[0] && vka_seg_load_weights(r->seg, o->load_from) < 0)
        return fail(r, "--load-from");
    struct vka_augment_params aug = { .size = (uint32_t)o->crop, .mean = o->mean_v, .std = o->std_v };
    if (!o->no_augment) {
        aug.random_crop = aug.flip = true;
        aug.scale_min = (float)o->scale_min;
        aug.scale_max = (float)o->scale_max;
        aug.brightness = aug.contrast = aug.saturation = (float)o->jitter;
    }
    struct vka_loader_params lp = { .dataset = r->train, .batch = (uint32_t)o->micro,
                                    .workers = (uint32_t)o->workers, .shuffle = !o->no_augment,
                                    .seed = (uint64_t)o->seed, .epoch_batches = true,
                                    .channels = 3, .aug = aug,
                                    .shard = { .window = (uint32_t)o->batch,
                                               .nranks = (uint32_t)ranks,
                                               .rank = (uint32_t)vka_dist()->rank } };
    if (vka_loader_create(&lp, &r->loader) < 0)
        return fail(r, NULL);
    if (o->dump_grads[0])
        return 0;
    if (o->resume[0] && resume(r) < 0)
        return -1;
    struct vka_trainer_stats st;
    vka_seg_get_stats(r->seg, &st);
    if (!run_writes()) { /* rank 0 carries the run's samples (run_boundary_sync) */
        st.samples_seen = 0;
        vka_trainer_set_stats(vka_seg_trainer(r->seg), &st);
    }
    if (run_writes() && (run_folder_prepare(o->out, SEG_TABLE, o) < 0 ||
                         run_log_open(&r->log, o->out, o->resume[0], st.opt_steps) < 0 ||
                         run_tb_open(&r->tb, o->out, o->tensorboard) < 0))
        return fail(r, NULL);
    return 0;
}

/* --dump-grads FILE: the first window and one step, for tools/parity/accum.py. */
static int dump(struct train_run *r)
{
    const struct seg_opts *o = r->o;
    struct vka_seg_params sp;
    seg_engine_params(o, true, r->steps, NULL, &sp);
    double lr = vka_lr_at(&sp.lr, 0), loss, count;
    char lrs[32];
    snprintf(lrs, sizeof(lrs), "%.17g", lr);
    cJSON *cj = seg_opts_json(o);
    char *cfg = cj ? cJSON_PrintUnformatted(cj) : NULL;
    struct vka_st_meta meta[] = { { "config", cfg }, { "lr", lrs } };
    int ret = cfg ? vka_seg_dump_window(r->seg, r->loader, lr, o->dump_grads, meta, 2, &loss,
                                        &count) : -ENOMEM;
    free(cfg);
    cJSON_Delete(cj);
    if (ret < 0)
        return fail(r, "--dump-grads");
    printf("wrote the first window (%d samples as micro-batches of %d: loss %.6f over %.0f "
           "pixels), its gradient and one %s step to %s\n", o->batch, o->micro, loss, count,
           o->optimizer, o->dump_grads);
    return 0;
}

struct overlay_sink {
    const char *dir;
    struct vka_tb *tb;
    uint64_t step;
};

/* A validation overlay into the step's samples folder (and TensorBoard). */
static int write_val_overlay(void *user, uint32_t i, const struct vka_image *img,
                             const uint8_t *pred)
{
    const struct overlay_sink *s = user;
    char path[1200], tag[32];
    snprintf(path, sizeof(path), "%s/val_%04u.png", s->dir, i);
    snprintf(tag, sizeof(tag), "val/overlay_%u", i);
    uint8_t *rgb = seg_overlay_rgb(img, pred);
    int ret = rgb ? cli_png_write(path, img->w, img->h, 3, rgb) : -ENOMEM;
    if (ret == 0)
        ret = run_tb_image(s->tb, tag, s->step, img->w, img->h, 3, rgb);
    free(rgb);
    return ret;
}

/* An evaluation shared by the ranks of a run (one process: all of it): each evaluates
 * its part of the images, the confusion matrices are summed, and every rank finishes
 * the same metrics. */
static int evaluate_shared(struct vka_seg *seg, struct vka_dataset *ds, uint32_t max,
                           uint32_t batch, struct vka_seg_metrics *m, vka_seg_image_fn fn,
                           void *user, uint32_t n_fn)
{
    const struct vka_dist *d = vka_dist();
    int ret = vka_seg_evaluate_part(seg, ds, max, (uint32_t)d->rank, (uint32_t)d->size, batch,
                                    m, fn, user, n_fn);
    if (ret == 0)
        ret = vka_dist_sum_u64(m->conf, m->classes * m->classes);
    vka_seg_metrics_finish(m);
    return ret;
}

/* Evaluation at a window boundary: metrics line, overlays of the first images, and
 * best.safetensors when the mIoU improves; every rank evaluates its part, rank 0 writes. */
static int evaluate(struct train_run *r, uint64_t step)
{
    const struct seg_opts *o = r->o;
    char dir[1100];
    snprintf(dir, sizeof(dir), "%s/samples/step_%06llu", o->out, (unsigned long long)step);
    int mk = run_writes() ? cli_mkdir_p(dir) : 0;
    if (mk < 0) {
        vka_err("cannot create %s: %s", dir, strerror(-mk));
        return fail(r, NULL);
    }
    struct vka_seg_metrics sm;
    struct overlay_sink sink = { dir, r->tb, step };
    if (vka_seg_metrics_init(&sm, (uint32_t)o->classes) < 0 ||
        evaluate_shared(r->seg, r->val, (uint32_t)o->val_count, (uint32_t)o->micro, &sm,
                        run_writes() ? write_val_overlay : NULL, &sink, 4) < 0) {
        vka_seg_metrics_free(&sm);
        return fail(r, "evaluation");
    }
    if (!run_writes()) {
        vka_seg_metrics_free(&sm);
        return 0;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "kind", "val");
    cJSON_AddNumberToObject(j, "step", (double)step);
    cJSON_AddNumberToObject(j, "miou", sm.miou);
    cJSON_AddNumberToObject(j, "pixel_acc", sm.pixel_acc);
    cJSON *iou = cJSON_AddArrayToObject(j, "iou");
    for (uint32_t k = 0; k < sm.classes; k++)
        cJSON_AddItemToArray(iou, sm.present[k] ? cJSON_CreateNumber(sm.iou[k]) : cJSON_CreateNull());
    char *line = cJSON_PrintUnformatted(j);
    int ret = line ? run_log_printf(&r->log, "%s", line) : -ENOMEM;
    static const char *const tags[] = { "val/miou", "val/pixel_acc" };
    if (ret == 0)
        ret = run_tb_scalars(r->tb, step, tags, (const double[]){ sm.miou, sm.pixel_acc }, 2);
    for (uint32_t k = 0; ret == 0 && r->tb && k < sm.classes; k++) {
        char tag[32];
        snprintf(tag, sizeof(tag), "val/iou_%u", k);
        const char *t = tag;
        if (sm.present[k])
            ret = run_tb_scalars(r->tb, step, &t, &sm.iou[k], 1);
    }
    free(line);
    cJSON_Delete(j);
    printf("%sstep %llu: val mIoU %.4f  pixel accuracy %.4f  (%.0f s)\n", r->pace.tty ? "\n" : "",
           (unsigned long long)step, sm.miou, sm.pixel_acc, run_pace_elapsed(&r->pace));
    bool better = sm.miou > r->best;
    if (better)
        r->best = sm.miou;
    vka_seg_metrics_free(&sm);
    if (ret < 0)
        return fail(r, NULL);
    run_curves_refresh(&r->curves, o->out);
    return better ? save(r, "best.safetensors", false) : 0;
}

/* The work of a window boundary: metrics, progress, evaluation, checkpoint. */
static int boundary(struct train_run *r, const struct vka_trainer_stats *st)
{
    const struct seg_opts *o = r->o;
    if (!run_writes()) /* the other ranks take their part of the evaluations */
        return run_every(st->opt_steps, o->eval_every, (long long)st->opt_steps == r->steps)
               ? evaluate(r, st->opt_steps) : 0;
    double elapsed, ips = run_pace_tick(&r->pace, st->samples_seen, &elapsed);
    struct vka_mem_stats ms;
    vka_mem_get_stats(r->ctx, &ms);
    struct vka_loader_pos pos = vka_loader_tell(r->loader);
    double peak = ms.total_peak / 1048576.0;
    if (run_log_printf(&r->log, "{\"kind\":\"train\",\"step\":%llu,\"epoch\":%.4f,\"loss\":%.9g,"
                       "\"lr\":%.9g,\"grad_norm\":%.9g,\"img_per_s\":%.3f,\"peak_mib\":%.2f,"
                       "\"samples\":%llu,\"skipped\":%llu}", (unsigned long long)st->opt_steps,
                       pos.epoch + (double)pos.index / vka_dataset_count(r->train), st->loss,
                       st->lr, st->grad_norm, ips, peak, (unsigned long long)st->samples_seen,
                       (unsigned long long)st->skipped_steps) < 0)
        return fail(r, NULL);
    static const char *const tags[] = { "train/loss", "train/lr", "train/grad_norm",
                                        "train/img_per_s" };
    if (run_tb_scalars(r->tb, st->opt_steps, tags,
                       (const double[]){ st->loss, st->lr, st->grad_norm, ips }, 4) < 0)
        return fail(r, NULL);
    bool last = (long long)st->opt_steps == r->steps;
    if (r->pace.tty) {
        double eta = elapsed / (double)st->opt_steps * (double)(r->steps - (long long)st->opt_steps);
        fprintf(stderr, "\r  step %llu/%lld  loss %.4f  lr %.2e  %.1f img/s  ETA %02d:%02d ",
                (unsigned long long)st->opt_steps, r->steps, st->loss, st->lr, ips,
                (int)eta / 60, (int)eta % 60);
    } else if (run_every(st->opt_steps, 50, last)) {
        printf("step %llu/%lld  loss %.4f  lr %.2e  %.1f img/s  peak %.0f MiB  %.0f s\n",
               (unsigned long long)st->opt_steps, r->steps, st->loss, st->lr, ips, peak, elapsed);
    }
    if (run_every(st->opt_steps, o->eval_every, last) && evaluate(r, st->opt_steps) < 0)
        return -1;
    if (run_every(st->opt_steps, o->save_every, last))
        return save(r, "last.safetensors", true);
    return 0;
}

/* Every rank at a window boundary (run_boundary_sync): the run's samples, kept as rank 0
 * all and the others none; whether any rank was asked to stop. */
static int sync_boundary(struct train_run *r, struct vka_trainer_stats *st, int *sig)
{
    if (vka_dist()->size < 2)
        return 0;
    struct vka_trainer *tr = vka_seg_trainer(r->seg);
    uint64_t samples = st->samples_seen;
    if (run_boundary_sync(&samples, sig) < 0)
        return fail(r, NULL);
    st->samples_seen = run_writes() ? samples : 0;
    vka_trainer_set_stats(tr, st);
    st->samples_seen = samples;
    return 0;
}

static void defaults(void *o)
{
    seg_opts_defaults(o);
}

static int seg_train(int argc, char **argv)
{
    struct seg_opts o;
    seg_opts_defaults(&o);
    bool help;
    int ret = cli_opts_parse("seg train", argc, argv, SEG_TABLE, &o, NULL, train_skip, NULL, NULL, 0, &help);
    if (ret)
        return ret;
    if (help) {
        cli_opts_help(SEG_TABLE, "usage: vkaccum seg train --out RUN [options]\n\nTrains a "
                   "U-Net on DIR/{train,val}/{images,masks}, a Pascal VOC folder, or a built-in "
                   "dataset,\nwith an effective batch B run as micro-batches of b.", NULL, train_skip);
        return 0;
    }
    /* the run's own options, then this command line's on top */
    if (o.resume[0] &&
        (ret = run_resume_opts("seg train", SEG_TABLE, &o, defaults, argc, argv, train_skip)))
        return ret;
    if (!o.out[0] && !o.dump_grads[0])
        return cli_usage_error("seg train", "say where the run goes: --out RUN");
    if (seg_opts_finish(&o, "seg train") < 0)
        return CLI_USAGE;
    if ((ret = run_accumulate_mode("seg train", o.accumulate, sizeof(o.accumulate))))
        return ret;

    struct train_run r;
    if ((ret = train_open(&r, &o)) != 0 || (o.dump_grads[0] && dump(&r) < 0) ||
        ((o.profile || o.profile_layers) &&
         (ret = -cli_profile_begin(r.ctx, o.profile_layers)))) {
        run_log_close(&r.log);
        train_close(&r);
        return ret > 0 ? 0 : 1;
    }
    struct vka_trainer_stats st;
    vka_seg_get_stats(r.seg, &st);
    if (!o.dump_grads[0]) {
        printf("training %lld steps: batch %d as micro-batches of %d (%d per step), crop %d, "
               "%s, lr %g (%s), device %s\n", r.steps, o.batch, o.micro,
               (o.batch + o.micro - 1) / o.micro, o.crop, o.optimizer, o.lr, o.schedule,
               r.ctx->info.name);
        if (o.resume[0])
            printf("resuming %s at step %llu (%llu samples seen, %u in the open window)%s\n",
                   o.resume, (unsigned long long)st.opt_steps,
                   (unsigned long long)st.samples_seen, st.window_samples,
                   r.log.dropped ? "; metrics logged after that step dropped" : "");
    }
    run_pace_start(&r.pace, st.samples_seen);
    run_signals_install();
    ret = 0;
    int sig = 0;
    while (ret == 0 && !sig && !o.dump_grads[0] && (long long)st.opt_steps < r.steps) {
        if (vka_seg_window(r.seg, r.loader) < 0) {
            ret = fail(&r, NULL);
            break;
        }
        vka_seg_get_stats(r.seg, &st);
        sig = run_stop_signal();
        if ((ret = sync_boundary(&r, &st, &sig)) == 0 && (ret = boundary(&r, &st)) == 0 && sig &&
            (ret = save(&r, "last.safetensors", true)) == 0)
            printf("%sstopped by %s at step %llu of %lld; last.safetensors saved. Resume with:\n"
                   "  vkaccum seg train --resume %s\n", r.pace.tty ? "\n" : "",
                   run_signal_name(sig), (unsigned long long)st.opt_steps, r.steps, o.out);
    }
    if (ret == 0 && !sig && !o.dump_grads[0])
        printf("%sdone: %llu steps, %llu samples, %.0f s, best val mIoU %.4f; run in %s\n",
               r.pace.tty ? "\n" : "", (unsigned long long)st.opt_steps,
               (unsigned long long)st.samples_seen, run_pace_elapsed(&r.pace), r.best, o.out);
    if (ret == 0 && !o.dump_grads[0])
        run_print_combine_share(run_pace_elapsed(&r.pace));
    if (run_writes() && run_curves_finish(&r.curves) == 0 && r.curves.out[0])
        printf("curves: %s (vkaccum plot RUN... --out F.png overlays runs)\n", r.curves.out);
    if ((run_log_close(&r.log) < 0 || vka_tb_close(&r.tb) < 0) && ret == 0)
        ret = fail(&r, NULL);
    cli_profile_end(r.ctx, ret == 0, 1, "step");
    train_close(&r);
    return ret < 0 ? 1 : 0;
}

/* The engine for inference (eval, predict) on the context of --device, with the weights
 * of the checkpoint and o->micro tiles per run (fitted to the budget); -1 after printing
 * why. */
static int open_inference(const char *cmd, struct seg_opts *o, const char *ckpt,
                          struct vka_ctx **ctx, struct vka_seg **seg)
{
    if (!(*ctx = cli_open_ctx(cmd, o->device, o->mem_budget)))
        return -1;
    /* tiles per run: the most, up to --micro-batch, that fit the memory budget */
    struct seg_opts fit = *o;
    fit.batch = o->micro ? o->micro : o->batch;
    fit.micro = 0;
    if (seg_opts_fit(&fit, *ctx, false, cmd) != 0)
        return -1;
    o->micro = fit.micro;
    struct vka_seg_params sp;
    seg_engine_params(&fit, false, 0, NULL, &sp);
    if (vka_seg_create(*ctx, &sp, seg) < 0 || vka_seg_load_weights(*seg, ckpt) < 0) {
        fprintf(stderr, "vkaccum %s: %s\n", cmd, vka_last_error());
        return -1;
    }
    return 0;
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
    struct vka_seg *seg = NULL;
    struct vka_seg_metrics sm = { 0 };
    ret = 1;
    if (open_dataset(&o, VKA_SPLIT_VAL, &val) < 0) {
        fprintf(stderr, "vkaccum seg eval: %s\n", vka_last_error());
        goto out;
    }
    if (open_inference("seg eval", &o, vals[0], &ctx, &seg) < 0)
        goto out;
    if (vka_seg_metrics_init(&sm, (uint32_t)o.classes) < 0 ||
        evaluate_shared(seg, val, (uint32_t)o.val_count, (uint32_t)o.micro, &sm, NULL, NULL,
                        0) < 0) {
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
    vka_seg_metrics_free(&sm);
    vka_seg_destroy(&seg);
    vka_dataset_destroy(&val);
    vka_ctx_destroy(&ctx);
    return ret;
}

static int predict_one(struct vka_seg *seg, const struct seg_opts *o, const char *in,
                       const char *outdir)
{
    struct vka_image img = { 0 };
    int ret = vka_image_read(in, 3, &img);
    if (ret < 0)
        return ret;
    size_t n = (size_t)img.w * img.h;
    float *x = malloc(n * 3 * sizeof(float));
    float *logits = o->logits ? malloc(n * (size_t)o->classes * sizeof(float)) : NULL;
    uint8_t *pred = malloc(n);
    struct vka_augment_params aug = { .mean = o->mean_v, .std = o->std_v };
    if (!x || !pred || (o->logits && !logits)) {
        vka_err("%s: out of memory for a %ux%u image", in, img.w, img.h);
        ret = -ENOMEM;
    }
    if (ret == 0)
        ret = vka_augment(&aug, 0, &img, NULL, o->ignore_index, x, NULL);
    if (ret == 0)
        ret = vka_seg_predict(seg, (uint32_t)o->micro, x, 3, img.h, img.w, pred, logits);
    if (ret == 0) {
        const char *base = strrchr(in, '/') ? strrchr(in, '/') + 1 : in;
        char stem[512], path[1200];
        snprintf(stem, sizeof(stem), "%s", base);
        char *dot = strrchr(stem, '.');
        if (dot)
            *dot = '\0';
        snprintf(path, sizeof(path), "%s/%s_mask.png", outdir, stem);
        ret = cli_png_write(path, img.w, img.h, 1, pred);
        snprintf(path, sizeof(path), "%s/%s_overlay.png", outdir, stem);
        if (ret == 0)
            ret = seg_write_overlay(path, &img, pred);
        snprintf(path, sizeof(path), "%s/%s_logits.npy", outdir, stem);
        const uint32_t shape[3] = { (uint32_t)o->classes, img.h, img.w };
        if (ret == 0 && logits)
            ret = cli_npy_write(path, shape, 3, logits);
        if (ret == 0)
            printf("%s: %ux%u -> %s/%s_mask.png\n", in, img.w, img.h, outdir, stem);
    }
    free(logits);
    free(x);
    free(pred);
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
        cli_opts_help(SEG_TABLE, "usage: vkaccum seg predict --ckpt F --input FILE|DIR --out DIR [--logits]\n\n"
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
    o.logits = cli.logits;
    if (seg_opts_finish(&o, "seg predict") < 0)
        return CLI_USAGE;
    struct vka_ctx *ctx = NULL;
    struct vka_seg *seg = NULL;
    if ((ret = cli_mkdir_p(vals[2])) < 0) {
        fprintf(stderr, "vkaccum seg predict: cannot create %s: %s\n", vals[2], strerror(-ret));
        return 1;
    }
    ret = 1;
    if (open_inference("seg predict", &o, vals[0], &ctx, &seg) < 0)
        goto out;
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
        /* several ranks (mpirun): each predicts every size-th image, from its rank on */
        const struct vka_dist *d = vka_dist();
        int bad = 0;
        for (uint32_t i = (uint32_t)d->rank; i < vka_dataset_count(ds); i += (uint32_t)d->size)
            if (predict_one(seg, &o, vka_dataset_name(ds, i), vals[2]) < 0) {
                fprintf(stderr, "vkaccum seg predict: %s\n", vka_last_error());
                bad++;
            }
        vka_dataset_destroy(&ds);
        if (bad)
            goto out;
    } else if (vka_dist()->rank == 0 && predict_one(seg, &o, vals[1], vals[2]) < 0) {
        fprintf(stderr, "vkaccum seg predict: %s\n", vka_last_error());
        goto out;
    }
    ret = 0;
out:
    vka_seg_destroy(&seg);
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
