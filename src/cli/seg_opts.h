/* vkaccum seg: options (one table drives the command line, config.json and the
 * checkpoint's metadata) and what train, eval and predict draw; the engine is src/seg.h. */
#ifndef VKA_CLI_SEG_OPTS_H
#define VKA_CLI_SEG_OPTS_H

#include <cjson/cJSON.h>

#include "cli/opts.h"
#include "datasets/dataset.h"
#include "seg.h"

struct seg_opts {
    char data[512], out[512], resume[512], load_from[512], dump_grads[512], device[128];
    char palette[512];
    char optimizer[16], schedule[16], norm[16], up[16], class_weights[256];
    char mean[96], std[96], recompute[8], accumulate[8];
    int classes, batch, micro, accum, crop, epochs, warmup, eval_every, save_every;
    int depth, width, groups, ignore_index, workers, val_count, train_count, tile;
    long long steps, seed;
    double lr, weight_decay, momentum, clip, mem_budget, scale_min, scale_max, jitter;
    bool no_augment, skip_bad, drop_last, json, tensorboard, reduce_zero_label, detect_anomaly;
    bool plan, logits, profile, profile_layers;
    /* derived */
    float mean_v[3], std_v[3];
};

extern const struct opt_desc seg_opt_table[];
extern const size_t seg_opt_count;

void seg_opts_defaults(struct seg_opts *o);
cJSON *seg_opts_json(const struct seg_opts *o);
/* Options from a config.json object or a checkpoint's metadata (cli_opts_from_json). */
int seg_opts_from_json(struct seg_opts *o, const cJSON *j, const char *what);
/* Checks and derives (mean/std lists, micro from accum; micro stays 0 for auto). */
int seg_opts_finish(struct seg_opts *o, const char *cmd);

/* --micro-batch auto and --recompute auto resolved from the predicted device memory of
 * the engine on ctx (train: training, else inference in tiles), written back into o;
 * --plan printed (train). Returns 0, 1 after printing the plan, or -1 after printing why
 * nothing fits (fit_apply). */
int seg_opts_fit(struct seg_opts *o, struct vka_ctx *ctx, bool train, const char *cmd);

/* The engine's parameters from the options (classes set): the training crop, or the
 * inference tile when not train; schedules over `steps` optimizer steps. */
void seg_engine_params(const struct seg_opts *o, bool train, long long steps,
                       const float *class_weights, struct vka_seg_params *p);

/* The colour of class k in overlays (Pascal VOC's colour map). */
void seg_class_colour(uint32_t k, uint8_t rgb[3]);
/* img (w x h, RGB) with the classes of pred blended in: malloc'd, NULL after vka_err. */
uint8_t *seg_overlay_rgb(const struct vka_image *img, const uint8_t *pred);
/* The same as a PNG file (vka_err naming path on failure). */
int seg_write_overlay(const char *path, const struct vka_image *img, const uint8_t *pred);

#endif
