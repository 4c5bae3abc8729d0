/* vkaccum seg: options (one table drives the command line, config.json and the
 * checkpoint's metadata), the model built from them, tiled inference and the metrics
 * shared by train, eval and predict. */
#ifndef VKA_CLI_SEG_H
#define VKA_CLI_SEG_H

#include <cjson/cJSON.h>

#include "cli/opts.h"
#include "datasets/dataset.h"
#include "graph.h"
#include "models/unet.h"

struct seg_opts {
    char data[512], out[512], resume[512], load_from[512], dump_grads[512], device[128];
    char palette[512];
    char optimizer[16], schedule[16], norm[16], up[16], class_weights[256];
    char mean[96], std[96];
    int classes, batch, micro, accum, crop, epochs, warmup, eval_every, save_every;
    int depth, width, groups, ignore_index, workers, val_count, train_count, tile;
    long long steps, seed;
    double lr, weight_decay, momentum, clip, mem_budget, scale_min, scale_max, jitter;
    bool no_augment, skip_bad, drop_last, json;
    /* derived */
    float mean_v[3], std_v[3];
};

extern const struct opt_desc seg_opt_table[];
extern const size_t seg_opt_count;

void seg_opts_defaults(struct seg_opts *o);
/* Sets option name from text; CLI_USAGE-style message and -EINVAL on a bad value. */
cJSON *seg_opts_json(const struct seg_opts *o);
/* Options from a config.json object (unknown keys are an error naming them). */
int seg_opts_from_json(struct seg_opts *o, const cJSON *j, const char *what);
/* Checks and derives (mean/std lists, micro from accum). */
int seg_opts_finish(struct seg_opts *o, const char *cmd);

/* The U-Net of the options (classes and crop must be set), with its loss when train. */
struct seg_model {
    struct vka_graph *g;
    struct vka_unet net;
    int target, weights, loss;
    int predict; /* the phase that computes the logits and nothing else (no loss) */
};
int seg_model_build(struct vka_ctx *ctx, const struct seg_opts *o, bool train,
                    struct seg_model *m);
void seg_model_destroy(struct seg_model *m);

/* Tiled inference of one normalised image x (c, h, w): overlapping tile x tile windows
 * (stride 2/3 of the tile), up to `batch` tiles per run of the forward plan, logits
 * averaged where tiles overlap; pred (h, w) gets the argmax class. */
int seg_predict(struct seg_model *m, uint32_t batch, const float *x, uint32_t c, uint32_t h,
                uint32_t w, uint8_t *pred);

/* Confusion matrix counts[t * classes + p] over pixels whose target is not ignored. */
struct seg_metrics {
    uint32_t classes;
    uint64_t *conf;
    double miou, pixel_acc;
    double iou[VKA_MAX_CLASSES];
    bool present[VKA_MAX_CLASSES];
};
int seg_metrics_init(struct seg_metrics *s, uint32_t classes);
void seg_metrics_add(struct seg_metrics *s, const int32_t *target, const uint8_t *pred,
                     uint64_t n, int32_t ignore_index);
void seg_metrics_finish(struct seg_metrics *s);
void seg_metrics_free(struct seg_metrics *s);

/* Evaluates the model on a dataset (whole images, tiled). max_images 0: all. Writes
 * overlays of the first `overlays` images to overlay_dir when not NULL. */
int seg_evaluate(struct seg_model *m, const struct seg_opts *o, struct vka_dataset *ds,
                 uint32_t max_images, const char *overlay_dir, uint32_t overlays,
                 struct seg_metrics *s);

/* The colour of class k in overlays (Pascal VOC's colour map). */
void seg_class_colour(uint32_t k, uint8_t rgb[3]);

#endif
