/* The segmentation engine; see seg.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "log.h"
#include "seg.h"

struct vka_seg {
    struct vka_seg_params p;
    float mean[3], std[3];
    struct vka_graph *g;
    struct vka_unet net;
    int target, weights, loss;
    int predict;              /* the phase of the logits alone */
    struct vka_trainer *tr;   /* NULL for inference */
};

/* The processes sharing each window (vka_seg_params.ranks). */
static uint32_t ranks_of(const struct vka_seg_params *p)
{
    return p->ranks > 1 ? p->ranks : 1;
}

/* The U-Net, and with training its targets, class weights and loss: the graph, not yet
 * allocated. */
static int build_graph(struct vka_ctx *ctx, struct vka_seg *s)
{
    const struct vka_seg_params *p = &s->p;
    int ret = vka_graph_create(ctx, &(struct vka_graph_params){ .seed = p->seed }, &s->g);
    if (ret < 0 || (ret = vka_unet_build(s->g, &p->model, &s->net)) < 0)
        return ret;
    vka_graph_set_recompute(s->g, p->recompute);
    if (p->train && (ret = vka_graph_set_exact(s->g, p->exact)) < 0)
        return ret;
    uint32_t size = p->model.size;
    if (p->train) {
        s->target = vka_graph_input(s->g, "mask", VKA_I32, VKA_LAYOUT_FLAT, 1, size, size);
        if (s->target < 0)
            return s->target;
        if (p->class_weights &&
            (s->weights = vka_graph_state(s->g, "train.class_weights", p->model.classes, 1.0f)) < 0)
            return s->weights;
        union vka_op_params ce = { .loss = { .ignore_index = p->ignore_index, .scale = 1 } };
        s->loss = vka_graph_node(s->g, VKA_OP_cross_entropy, &ce, s->net.logits, s->target,
                                 s->weights);
        if (s->loss < 0)
            return s->loss;
    }
    /* inference must not run the loss: it would add into the training accumulators
     * with targets nobody uploaded */
    if ((ret = s->predict = vka_graph_phase(s->g, &s->net.logits, 1, NULL)) < 0)
        return ret;
    if (!p->train)
        vka_graph_set_training(s->g, false);
    return 0;
}

/* The graph allocated, and with training its trainer. */
static int build(struct vka_ctx *ctx, struct vka_seg *s)
{
    const struct vka_seg_params *p = &s->p;
    int ret = build_graph(ctx, s);
    if (ret < 0 || (ret = vka_graph_alloc(s->g)) < 0)
        return ret;
    if (s->weights >= 0) {
        struct vka_tensor wt = vka_graph_tensor(s->g, s->weights);
        if ((ret = vka_tensor_upload(&wt, p->class_weights)) < 0)
            return ret;
    }
    if (!p->train)
        return 0;
    struct vka_trainer_params tp = {
        .batch = p->batch / ranks_of(p), .drop_last = p->drop_last, .optim = p->optim,
        .micro = p->micro < p->batch / ranks_of(p) ? p->micro : p->batch / ranks_of(p),
        .detect_anomaly = p->detect_anomaly, .exact = p->exact,
        .lr = p->lr, .loss = s->loss, .inputs = { s->net.image, s->target }, .ninputs = 2,
    };
    return vka_trainer_create(s->g, &tp, &s->tr);
}

int vka_seg_create(struct vka_ctx *ctx, const struct vka_seg_params *p, struct vka_seg **out)
{
    *out = NULL;
    struct vka_seg *s = calloc(1, sizeof(*s));
    if (!s) {
        vka_err("seg: out of memory");
        return -ENOMEM;
    }
    s->p = *p;
    memcpy(s->mean, p->mean, sizeof(s->mean));
    memcpy(s->std, p->std, sizeof(s->std));
    s->p.mean = s->mean;
    s->p.std = s->std;
    s->target = s->weights = s->loss = -1;
    int ret = build(ctx, s);
    s->p.class_weights = NULL; /* the caller's, uploaded by build: not kept past this call */
    if (ret < 0) {
        vka_seg_destroy(&s);
        return ret;
    }
    *out = s;
    return 0;
}

int vka_seg_plan_memory(struct vka_ctx *ctx, const struct vka_seg_params *p,
                        struct vka_mem_plan *m)
{
    struct vka_seg s = { .p = *p, .target = -1, .weights = -1, .loss = -1 };
    memset(m, 0, sizeof(*m));
    int ret = build_graph(ctx, &s);
    if (ret == 0) {
        /* training at b (the remainder's smaller micro-batch fits its arena),
         * evaluation and prediction at b tiles */
        uint32_t S = p->model.size, b = p->micro ? p->micro : 1;
        uint32_t n[2] = { b, b };
        int phases[2] = { 0, s.predict };
        bool bwd[2] = { true, false };
        vka_mem_plan_graph(m, s.g);
        ret = p->train ? vka_mem_plan_arena(m, s.g, phases, n, bwd, 2)
                       : vka_mem_plan_arena(m, s.g, phases + 1, n + 1, bwd + 1, 1);
        if (ret == 0 && p->train) {
            struct vka_optim_params op = p->optim;
            op.count = vka_graph_region_bytes(s.g, VKA_VAL_PARAM) / sizeof(float);
            vka_mem_plan_optim(m, ctx, &op);
        }
        const struct vka_val *logits = vka_graph_val(s.g, s.net.logits);
        uint64_t px = (uint64_t)b * S * S;
        vka_mem_plan_transfer(m, px * 4 * sizeof(float));                 /* images */
        vka_mem_plan_transfer(m, px * sizeof(int32_t));                   /* masks */
        vka_mem_plan_transfer(m, px * ((logits->c + 3) / 4 * 4) * sizeof(float));
        vka_mem_plan_sum(m);
    }
    vka_graph_destroy(&s.g);
    return ret;
}

void vka_seg_destroy(struct vka_seg **seg)
{
    struct vka_seg *s = *seg;
    if (!s)
        return;
    vka_trainer_destroy(&s->tr);
    vka_graph_destroy(&s->g);
    free(s);
    *seg = NULL;
}

struct vka_graph *vka_seg_graph(struct vka_seg *seg)
{
    return seg->g;
}

int vka_seg_flops(struct vka_seg *seg, double *flops)
{
    return vka_trainer_flops(seg->tr, flops);
}

void vka_seg_get_stats(const struct vka_seg *seg, struct vka_trainer_stats *s)
{
    vka_trainer_get_stats(seg->tr, s);
}

/* One rank's share of windows (the loader's shard) until a step: the window's index in
 * its epoch comes from the windows closed so far (an epoch has vka_shard_windows of them,
 * stepped or dropped), so a rank whose share of a window is empty still closes it, and
 * with it takes part in the window's sum of gradients. */
static int sharded_window(struct vka_seg *seg, struct vka_loader *loader,
                          const struct vka_shard *sh)
{
    for (bool stepped = false; !stepped;) {
        struct vka_trainer_stats st;
        vka_trainer_get_stats(seg->tr, &st);
        uint32_t first, w = (uint32_t)((st.opt_steps + st.dropped_windows) %
                                       vka_shard_windows(sh));
        uint32_t share = vka_shard_share(sh, w, &first);
        int ret = 0;
        for (uint32_t done = 0; done < share && ret == 0;) {
            uint32_t n = share - done < vka_trainer_next_size(seg->tr)
                       ? share - done : vka_trainer_next_size(seg->tr);
            struct vka_batch bt;
            if ((ret = vka_loader_next(loader, n, &bt)) == 0)
                ret = vka_trainer_micro_step(seg->tr, (const void *[]){ bt.x, bt.y }, bt.n,
                                             &stepped);
            done += n;
        }
        /* a share shorter than the trainer's window: the epoch's last, partial window */
        if (ret == 0 && !stepped && share < sh->window / sh->nranks)
            ret = vka_trainer_end_epoch(seg->tr, &stepped);
        if (ret < 0)
            return ret;
    }
    return 0;
}

struct vka_trainer *vka_seg_trainer(struct vka_seg *seg)
{
    return seg->tr;
}

int vka_seg_window(struct vka_seg *seg, struct vka_loader *loader)
{
    const struct vka_shard *sh = vka_loader_shard(loader);
    if (sh)
        return sharded_window(seg, loader, sh);
    for (bool stepped = false; !stepped;) {
        struct vka_batch bt;
        int ret = vka_loader_next(loader, vka_trainer_next_size(seg->tr), &bt);
        if (ret < 0 ||
            (ret = vka_trainer_micro_step(seg->tr, (const void *[]){ bt.x, bt.y }, bt.n,
                                          &stepped)) < 0)
            return ret;
        if (bt.epoch_end && !stepped && (ret = vka_trainer_end_epoch(seg->tr, &stepped)) < 0)
            return ret;
    }
    return 0;
}

/* ---- inference --------------------------------------------------------------------- */

static void tile_starts(uint32_t len, uint32_t tile, uint32_t *starts, uint32_t *n)
{
    /* tiles every 2/3 of a tile, the last one flush with the end */
    uint32_t stride = tile * 2 / 3 ? tile * 2 / 3 : 1;
    *n = 0;
    if (len <= tile) {
        starts[(*n)++] = 0;
        return;
    }
    for (uint32_t s = 0;; s += stride) {
        if (s + tile >= len) {
            starts[(*n)++] = len - tile;
            return;
        }
        starts[(*n)++] = s;
    }
}

int vka_seg_predict(struct vka_seg *seg, uint32_t batch, const float *x, uint32_t c, uint32_t h,
                    uint32_t w, uint8_t *pred, float *mean_logits)
{
    const struct vka_val *img = vka_graph_val(seg->g, seg->net.image);
    const struct vka_val *lv = vka_graph_val(seg->g, seg->net.logits);
    uint32_t T = img->h, K = lv->c;
    uint32_t *ys = malloc(sizeof(uint32_t) * (h / (T * 2 / 3 ? T * 2 / 3 : 1) + 3));
    uint32_t *xs = malloc(sizeof(uint32_t) * (w / (T * 2 / 3 ? T * 2 / 3 : 1) + 3));
    uint32_t ny, nx;
    float *acc = calloc((size_t)K * h * w, sizeof(float));
    uint16_t *hits = calloc((size_t)h * w, sizeof(uint16_t));
    float *tiles = malloc(sizeof(float) * batch * c * T * T);
    float *logits = malloc(sizeof(float) * batch * K * T * T);
    int ret = 0;
    if (!ys || !xs || !acc || !hits || !tiles || !logits) {
        vka_err("seg: out of memory predicting a %ux%u image", w, h);
        ret = -ENOMEM;
        goto out;
    }
    tile_starts(h, T, ys, &ny);
    tile_starts(w, T, xs, &nx);
    uint32_t total = ny * nx;
    for (uint32_t first = 0; first < total && ret == 0; first += batch) {
        uint32_t nb = total - first < batch ? total - first : batch;
        /* a tile past a small image's edge is the mean colour: 0 after normalisation */
        memset(tiles, 0, sizeof(float) * nb * c * T * T);
        for (uint32_t b = 0; b < nb; b++) {
            uint32_t y0 = ys[(first + b) / nx], x0 = xs[(first + b) % nx];
            for (uint32_t k = 0; k < c; k++)
                for (uint32_t yy = 0; yy < T && y0 + yy < h; yy++)
                    for (uint32_t xx = 0; xx < T && x0 + xx < w; xx++)
                        tiles[((size_t)(b * c + k) * T + yy) * T + xx] =
                            x[((size_t)k * h + y0 + yy) * w + x0 + xx];
        }
        struct vka_plan *plan;
        if ((ret = vka_graph_plan_phase(seg->g, seg->predict, nb, false, &plan)) < 0)
            break;
        struct vka_tensor ti = vka_plan_tensor(plan, seg->net.image);
        struct vka_tensor to = vka_plan_tensor(plan, seg->net.logits);
        if ((ret = vka_tensor_upload(&ti, tiles)) < 0 || (ret = vka_plan_run(plan)) < 0 ||
            (ret = vka_tensor_download(&to, logits)) < 0)
            break;
        for (uint32_t b = 0; b < nb; b++) {
            uint32_t y0 = ys[(first + b) / nx], x0 = xs[(first + b) % nx];
            for (uint32_t yy = 0; yy < T && y0 + yy < h; yy++)
                for (uint32_t xx = 0; xx < T && x0 + xx < w; xx++) {
                    size_t p = (size_t)(y0 + yy) * w + x0 + xx;
                    hits[p]++;
                    for (uint32_t k = 0; k < K; k++)
                        acc[(size_t)k * h * w + p] += logits[((size_t)(b * K + k) * T + yy) * T + xx];
                }
        }
    }
    for (size_t p = 0; ret == 0 && p < (size_t)h * w; p++) {
        uint32_t best = 0;
        for (uint32_t k = 1; k < K; k++)
            if (acc[(size_t)k * h * w + p] > acc[(size_t)best * h * w + p])
                best = k;
        pred[p] = (uint8_t)best;
        for (uint32_t k = 0; mean_logits && k < K; k++)
            mean_logits[(size_t)k * h * w + p] = acc[(size_t)k * h * w + p] / (float)hits[p];
    }
out:
    free(ys);
    free(xs);
    free(acc);
    free(hits);
    free(tiles);
    free(logits);
    return ret;
}

int vka_seg_evaluate(struct vka_seg *seg, struct vka_dataset *ds, uint32_t max_images,
                     uint32_t batch, struct vka_seg_metrics *m, vka_seg_image_fn fn,
                     void *user, uint32_t n_fn)
{
    int ret = vka_seg_evaluate_part(seg, ds, max_images, 0, 1, batch, m, fn, user, n_fn);
    vka_seg_metrics_finish(m);
    return ret;
}

int vka_seg_evaluate_part(struct vka_seg *seg, struct vka_dataset *ds, uint32_t max_images,
                          uint32_t part, uint32_t parts, uint32_t batch,
                          struct vka_seg_metrics *m, vka_seg_image_fn fn, void *user,
                          uint32_t n_fn)
{
    struct vka_augment_params aug = { .mean = seg->mean, .std = seg->std };
    uint64_t n = vka_dataset_count(ds);
    if (max_images && max_images < n)
        n = max_images;
    uint32_t first = (uint32_t)((part * n + parts - 1) / parts),
             last = (uint32_t)(((part + 1) * n + parts - 1) / parts);
    /* the same weights, through the forward-only phase in eval mode */
    vka_graph_set_training(seg->g, false);
    int ret = 0;
    for (uint32_t i = first; i < last && ret == 0; i++) {
        struct vka_sample smp;
        if ((ret = vka_dataset_get(ds, i, 3, &smp)) < 0)
            break;
        uint32_t w = smp.image.w, h = smp.image.h;
        float *x = malloc(sizeof(float) * 3 * w * h);
        int32_t *y = malloc(sizeof(int32_t) * w * h);
        uint8_t *pred = malloc((size_t)w * h);
        if (!x || !y || !pred) {
            vka_err("seg: out of memory evaluating a %ux%u image", w, h);
            ret = -ENOMEM;
        }
        if (ret == 0)
            ret = vka_augment(&aug, 0, &smp.image, &smp.mask, vka_dataset_ignore_index(ds), x, y);
        if (ret == 0)
            ret = vka_seg_predict(seg, batch, x, 3, h, w, pred, NULL);
        if (ret == 0) {
            vka_seg_metrics_add(m, y, pred, (uint64_t)w * h, vka_dataset_ignore_index(ds));
            if (fn && i < n_fn)
                ret = fn(user, i, &smp.image, pred);
        }
        free(x);
        free(y);
        free(pred);
        vka_sample_free(&smp);
    }
    vka_graph_set_training(seg->g, seg->p.train);
    return ret;
}

/* ---- checkpoints ------------------------------------------------------------------- */

int vka_seg_save(struct vka_seg *seg, const char *path, bool state,
                 const struct vka_st_tensor *extra, size_t n_extra,
                 const struct vka_st_meta *meta, size_t n_meta)
{
    bool st = state && seg->tr;
    return vka_ckpt_save(path, seg->g, &seg->tr, st ? 1 : 0, st ? extra : NULL,
                         st ? n_extra : 0, meta, n_meta);
}

int vka_seg_load(struct vka_seg *seg, const char *path, struct vka_st_file **file)
{
    return vka_ckpt_load(path, seg->g, &seg->tr, 1, file);
}

int vka_seg_load_weights(struct vka_seg *seg, const char *path)
{
    return vka_ckpt_load_weights(path, seg->g);
}

/* ---- the parity dump --------------------------------------------------------------- */

struct dump {
    struct vka_st_tensor *t;
    void **data;
    size_t n, cap;
};

/* Adds a tensor that the dump then owns (data freed with it); on failure nothing is
 * added and data stays the caller's. */
static int dump_add(struct dump *d, const char *name, enum vka_st_dtype dtype, uint32_t ndim,
                    const uint64_t *shape, void *data)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 64;
        struct vka_st_tensor *t = realloc(d->t, cap * sizeof(*t));
        if (t)
            d->t = t;
        void **dd = t ? realloc(d->data, cap * sizeof(*dd)) : NULL;
        if (!dd)
            goto oom;
        d->data = dd;
        d->cap = cap;
    }
    char *nm = strdup(name);
    if (!nm)
        goto oom;
    d->t[d->n] = (struct vka_st_tensor){ .name = nm, .dtype = dtype, .ndim = ndim, .data = data };
    memcpy(d->t[d->n].shape, shape, ndim * sizeof(uint64_t));
    d->data[d->n++] = data;
    return 0;
oom:
    vka_err("seg: out of memory for the dump");
    return -ENOMEM;
}

static void dump_free(struct dump *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free((char *)d->t[i].name);
        free(d->data[i]);
    }
    free(d->t);
    free(d->data);
}

/* Every parameter (or its gradient) as prefix + name, divided by div. */
static int dump_params(struct dump *d, struct vka_graph *g, const char *prefix, bool grads,
                       float div)
{
    for (uint32_t i = 0; i < vka_graph_nvals(g); i++) {
        const struct vka_val *v = vka_graph_val(g, (int)i);
        if (v->kind != VKA_VAL_PARAM)
            continue;
        uint64_t count = (uint64_t)v->n * v->c * v->h * v->w, shape[4];
        const uint32_t dims[4] = { v->n, v->c, v->h, v->w };
        float *h = malloc(count * sizeof(float));
        struct vka_tensor t = grads ? vka_graph_grad_tensor(g, (int)i) : vka_graph_tensor(g, (int)i);
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
        if ((ret = dump_add(d, name, VKA_ST_F32, v->file_rank, shape, h)) < 0) {
            free(h);
            return ret;
        }
    }
    return 0;
}

/* The window's micro-batches run by hand (the trainer would step and clear): forward and
 * backward of each, the images and masks kept for the dump. */
static int dump_run_window(struct vka_seg *seg, struct vka_loader *loader, float *xs,
                           int32_t *ys)
{
    uint32_t B = seg->p.batch, S = seg->p.model.size;
    for (uint32_t done = 0; done < B;) {
        uint32_t b = B - done < seg->p.micro ? B - done : seg->p.micro;
        struct vka_batch bt;
        struct vka_plan *plan;
        int ret;
        if ((ret = vka_loader_next(loader, b, &bt)) < 0 ||
            (ret = vka_graph_plan(seg->g, bt.n, true, &plan)) < 0)
            return ret;
        memcpy(xs + (size_t)done * 3 * S * S, bt.x, sizeof(float) * bt.n * 3 * S * S);
        memcpy(ys + (size_t)done * S * S, bt.y, sizeof(int32_t) * bt.n * S * S);
        struct vka_tensor ti = vka_plan_tensor(plan, seg->net.image);
        struct vka_tensor tt = vka_plan_tensor(plan, seg->target);
        if ((ret = vka_tensor_upload(&ti, bt.x)) < 0 || (ret = vka_tensor_upload(&tt, bt.y)) < 0 ||
            (ret = vka_plan_run(plan)) < 0)
            return ret;
        done += bt.n;
    }
    return 0;
}

/* One optimizer step of the accumulated gradient scaled by 1 / count. */
static int dump_step(struct vka_seg *seg, float count, double lr)
{
    struct vka_ctx *ctx = vka_graph_tensor(seg->g, seg->loss).buf->ctx;
    struct vka_optim_params p = seg->p.optim;
    struct vka_tensor params = vka_graph_params_flat(seg->g), grads = vka_graph_grads_flat(seg->g);
    p.count = vka_tensor_stored(&params);
    struct vka_optim *opt = NULL;
    struct vka_cmd *cmd = NULL;
    bool skipped;
    int ret;
    if ((ret = vka_optim_create(ctx, &p, &opt)) == 0 && (ret = vka_cmd_create(ctx, NULL, &cmd)) == 0 &&
        (ret = vka_cmd_begin(cmd)) == 0 &&
        (ret = vka_optim_record_step(cmd, opt, &params, &grads, 1.0f / count, lr)) == 0 &&
        (ret = vka_cmd_run(cmd)) == 0)
        ret = vka_optim_finish_step(opt, &skipped, NULL);
    vka_cmd_destroy(&cmd);
    vka_optim_destroy(&opt);
    return ret;
}

int vka_seg_dump_window(struct vka_seg *seg, struct vka_loader *loader, double lr,
                        const char *path, const struct vka_st_meta *meta, size_t n_meta,
                        double *loss, double *count)
{
    if (!seg->p.train) {
        vka_err("seg: the parity dump needs a training engine");
        return -EINVAL;
    }
    struct dump d = { 0 };
    uint32_t B = seg->p.batch, S = seg->p.model.size;
    float *xs = malloc(sizeof(float) * B * 3 * S * S);
    int32_t *ys = malloc(sizeof(int32_t) * B * S * S);
    float *lc = malloc(2 * sizeof(float));
    int ret = xs && ys && lc ? dump_params(&d, seg->g, "", false, 1.0f) : -ENOMEM;
    if (ret == 0)
        ret = dump_run_window(seg, loader, xs, ys);
    if (ret == 0) /* --accumulate exact: the window's sums are in the exact accumulators */
        ret = vka_trainer_resolve(seg->tr);
    float acc[2] = { 0, 0 };
    uint64_t sx[4] = { B, 3, S, S }, sy[3] = { B, S, S }, two = 2;
    struct vka_tensor lt = vka_graph_tensor(seg->g, seg->loss);
    if (ret == 0 && (ret = dump_add(&d, "input.image", VKA_ST_F32, 4, sx, xs)) == 0) {
        xs = NULL;
        if ((ret = dump_add(&d, "input.mask", VKA_ST_I32, 3, sy, ys)) == 0)
            ys = NULL;
    }
    if (ret == 0 && (ret = vka_tensor_download(&lt, acc)) == 0 &&
        (ret = dump_params(&d, seg->g, "grad.", true, acc[1])) == 0 &&
        (ret = dump_step(seg, acc[1], lr)) == 0)
        ret = dump_params(&d, seg->g, "step.", false, 1.0f);
    if (ret == 0) {
        lc[0] = acc[0] / acc[1];
        lc[1] = acc[1];
        if ((ret = dump_add(&d, "loss_and_count", VKA_ST_F32, 1, &two, lc)) == 0)
            lc = NULL;
    }
    if (ret == 0)
        ret = vka_st_write(path, &(struct vka_st_write_params){
            .tensors = d.t, .n_tensors = d.n, .meta = meta, .n_meta = n_meta });
    if (ret == 0) {
        *loss = (double)acc[0] / acc[1];
        *count = acc[1];
    }
    dump_free(&d);
    free(xs);
    free(ys);
    free(lc);
    return ret;
}
