/* The feature network of the GAN's Fréchet distance (fidnet.h): its training on
 * Fashion-MNIST with vka_trainer, the checkpoint, and feature extraction.
 *
 * Training and inference use two graphs built by the same builder: the training graph
 * adds the label input and the cross-entropy loss, the inference graph has neither, so
 * its forward-only plans need no targets and touch no loss accumulator. Parameters are
 * registered in the same order in both, so their flat regions have one layout and the
 * trained weights move over as one copy.
 *
 * Data: Debian's Fashion-MNIST through vka_loader, each image with its label. Training
 * reads the first train_count images in the loader's order (a permutation per epoch
 * drawn from (seed, epoch)); windows run across epoch ends, so every window holds 64
 * images. Accuracy and the floor read the first images of a split in order. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "datasets/dataset.h"
#include "fidnet.h"
#include "log.h"
#include "models/classifier.h"
#include "train.h"

#define META_KEY "fidnet" /* its value: the version of this layout */
#define META_VERSION "1"
#define BATCH 64u
#define CLASSES 10u

struct vka_fidnet {
    struct vka_graph *g;
    struct vka_classifier net;
    uint32_t res, channels, classes;
    double floor;
    uint32_t partial_n; /* the size of the plan held beside the full chunk's; 0: none */
};

/* ---- data ---------------------------------------------------------------------------- */

/* Fashion-MNIST's split "train" or "t10k", with its labels when asked for. */
static int split_open(const char *split, bool labels, struct vka_dataset **ds)
{
    bool train = !strcmp(split, "train");
    if (!train && strcmp(split, "t10k")) {
        vka_err("fid-net: split \"%s\": Fashion-MNIST has \"train\" and \"t10k\"", split);
        return -EINVAL;
    }
    struct vka_dataset_params dp = { .kind = VKA_DATA_IDX, .labels = labels,
                                     .split = train ? VKA_SPLIT_TRAIN : VKA_SPLIT_VAL };
    return vka_dataset_open(&dp, ds);
}

/* A loader of ds in sorted order with the GAN's preprocessing: each image resized to
 * res x res (VKA_FIT_RESIZE, no random augmentation), grey replicated to channels,
 * normalised with mean 0.5 and std 0.5. */
static struct vka_loader_params loader_params(struct vka_dataset *ds, uint32_t res,
                                              uint32_t channels, uint32_t batch,
                                              uint32_t workers)
{
    static const float half[3] = { 0.5f, 0.5f, 0.5f };
    return (struct vka_loader_params){
        .dataset = ds, .batch = batch, .workers = workers, .channels = channels,
        .aug = { .size = res, .fit = VKA_FIT_RESIZE, .mean = half, .std = half } };
}

/* Every label of b is a class id below classes. */
static int check_labels(const struct vka_dataset *ds, const struct vka_batch *b,
                        uint32_t classes)
{
    for (uint32_t k = 0; k < b->n; k++)
        if (b->labels[k] < 0 || (uint32_t)b->labels[k] >= classes) {
            vka_err("fid-net: %s: label %d of image %u is not 0..%u",
                    vka_dataset_name(ds, b->ids[k]), b->labels[k], b->ids[k], classes - 1);
            return -EINVAL;
        }
    return 0;
}

/* ---- the inference network --------------------------------------------------------- */

static int fidnet_create(struct vka_ctx *ctx, uint32_t res, uint32_t channels, uint32_t classes,
                         uint64_t seed, struct vka_fidnet **out)
{
    struct vka_fidnet *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    *f = (struct vka_fidnet){ .res = res, .channels = channels, .classes = classes };
    struct vka_classifier_params cp = { .channels = channels, .res = res, .classes = classes };
    int ret = vka_graph_create(ctx, &(struct vka_graph_params){ .seed = seed }, &f->g);
    if (ret == 0)
        ret = vka_classifier_build(f->g, &cp, &f->net);
    if (ret == 0) {
        vka_graph_set_trainable(f->g, "", false);
        ret = vka_graph_alloc(f->g);
    }
    if (ret < 0) {
        vka_fidnet_destroy(&f);
        return ret;
    }
    *out = f;
    return 0;
}

void vka_fidnet_destroy(struct vka_fidnet **pf)
{
    if (!pf || !*pf)
        return;
    vka_graph_destroy(&(*pf)->g);
    free(*pf);
    *pf = NULL;
}

uint32_t vka_fidnet_dim(const struct vka_fidnet *f)
{
    (void)f;
    return VKA_CLASSIFIER_FEATURES;
}
uint32_t vka_fidnet_res(const struct vka_fidnet *f) { return f->res; }
uint32_t vka_fidnet_channels(const struct vka_fidnet *f) { return f->channels; }
double vka_fidnet_floor(const struct vka_fidnet *f) { return f->floor; }

/* feats (m, dim) and logits (m, classes), either NULL when not wanted, of m <=
 * VKA_FIDNET_CHUNK images in one forward pass. Plans of the full chunk and of one other
 * size are kept; a new other size drops both, so memory stays bounded whatever sizes
 * callers pass. */
static int forward_chunk(struct vka_fidnet *f, const float *x, uint32_t m, float *feats,
                         float *logits)
{
    if (m != VKA_FIDNET_CHUNK && m != f->partial_n) {
        if (f->partial_n)
            vka_graph_drop_plans(f->g);
        f->partial_n = m;
    }
    struct vka_plan *plan;
    int ret = vka_graph_plan(f->g, m, false, &plan);
    if (ret < 0)
        return ret;
    struct vka_tensor ti = vka_plan_tensor(plan, f->net.image);
    struct vka_tensor tf = vka_plan_tensor(plan, f->net.features);
    struct vka_tensor tl = vka_plan_tensor(plan, f->net.logits);
    if ((ret = vka_tensor_upload(&ti, x)) < 0 || (ret = vka_plan_run(plan)) < 0 ||
        (feats && (ret = vka_tensor_download(&tf, feats)) < 0))
        return ret;
    return logits ? vka_tensor_download(&tl, logits) : 0;
}

int vka_fidnet_features(struct vka_fidnet *f, const float *x, uint32_t n, float *feats)
{
    if (!f || (n && (!x || !feats))) {
        vka_err("fid-net features: %s is NULL", !f ? "the network" : !x ? "x" : "feats");
        return -EINVAL;
    }
    size_t per = (size_t)f->channels * f->res * f->res;
    for (uint32_t i = 0; i < n; i += VKA_FIDNET_CHUNK) {
        uint32_t m = n - i < VKA_FIDNET_CHUNK ? n - i : VKA_FIDNET_CHUNK;
        int ret = forward_chunk(f, x + i * per, m,
                                feats + (size_t)i * VKA_CLASSIFIER_FEATURES, NULL);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* One pass over the first max(n_stats, n_acc) images of ds (Fashion-MNIST's split, with
 * labels when n_acc > 0): *s (initialised here) gets the features of the first n_stats,
 * *acc (when not NULL) the fraction of the first n_acc whose arg-max logit is their
 * label. */
static int pass(struct vka_fidnet *f, struct vka_dataset *ds, const char *split,
                uint32_t workers, uint32_t n_stats, struct vka_fid_stats *s, uint32_t n_acc,
                double *acc)
{
    uint32_t count = vka_dataset_count(ds), n = n_stats > n_acc ? n_stats : n_acc;
    if (n_stats < 1 || n > count) {
        vka_err("fid-net: %u images of Fashion-MNIST %s: it holds %u (and statistics need "
                "at least 1)", n_stats > count || n_stats < 1 ? n_stats : n, split, count);
        return -EINVAL;
    }
    struct vka_loader_params lp = loader_params(ds, f->res, f->channels, VKA_FIDNET_CHUNK,
                                                workers);
    lp.count = n;
    struct vka_loader *l = NULL;
    float *feats = malloc((size_t)VKA_FIDNET_CHUNK * VKA_CLASSIFIER_FEATURES * sizeof(float));
    float *logits = malloc((size_t)VKA_FIDNET_CHUNK * f->classes * sizeof(float));
    int ret = vka_fid_stats_init(s, VKA_CLASSIFIER_FEATURES);
    if (ret == 0)
        ret = feats && logits ? vka_loader_create(&lp, &l) : -ENOMEM;
    uint32_t right = 0;
    for (uint32_t i = 0; i < n && ret == 0; i += VKA_FIDNET_CHUNK) {
        uint32_t m = n - i < VKA_FIDNET_CHUNK ? n - i : VKA_FIDNET_CHUNK;
        uint32_t ms = i < n_stats ? (n_stats - i < m ? n_stats - i : m) : 0;
        uint32_t ma = i < n_acc ? (n_acc - i < m ? n_acc - i : m) : 0;
        struct vka_batch b;
        if ((ret = vka_loader_next(l, m, &b)) < 0 ||
            (ma && (ret = check_labels(ds, &b, f->classes)) < 0) ||
            (ret = forward_chunk(f, b.x, m, ms ? feats : NULL, ma ? logits : NULL)) < 0)
            break;
        vka_fid_stats_add(s, feats, ms);
        for (uint32_t k = 0; k < ma; k++) {
            const float *lg = logits + (size_t)k * f->classes;
            uint32_t best = 0;
            for (uint32_t c = 1; c < f->classes; c++)
                if (lg[c] > lg[best])
                    best = c;
            right += best == (uint32_t)b.labels[k];
        }
    }
    if (acc)
        *acc = n_acc ? (double)right / n_acc : 0;
    if (ret < 0)
        vka_fid_stats_free(s);
    vka_loader_destroy(&l);
    free(feats);
    free(logits);
    return ret;
}

int vka_fidnet_real_stats(struct vka_fidnet *f, const char *split, uint32_t n,
                          struct vka_fid_stats *s)
{
    if (!f || !split || !s) {
        vka_err("fid-net real stats: %s is NULL", !f ? "the network" : !split ? "split" : "s");
        return -EINVAL;
    }
    struct vka_dataset *ds;
    int ret = split_open(split, false, &ds);
    if (ret < 0)
        return ret;
    ret = pass(f, ds, split, 0, n, s, 0, NULL);
    vka_dataset_destroy(&ds);
    return ret;
}

/* ---- training ---------------------------------------------------------------------- */

static int check_params(struct vka_fidnet_train_params *q)
{
    if (!q->res)
        q->res = 32;
    if (!q->channels)
        q->channels = 1;
    if (!q->steps)
        q->steps = VKA_FIDNET_DEFAULT_STEPS;
    if (!q->micro)
        q->micro = BATCH;
    if (!q->n)
        q->n = 5000;
    if (!q->lr)
        q->lr = 3e-3;
    if (q->micro > BATCH) {
        vka_err("fid-net: micro-batch %u: the batch is %u, so 1..%u", q->micro, BATCH, BATCH);
        return -EINVAL;
    }
    if (q->n < 2 || q->n > 10000) {
        vka_err("fid-net: %u images per side of the floor: 2..10000 (t10k holds 10000)", q->n);
        return -EINVAL;
    }
    if (q->workers > 64) {
        vka_err("fid-net: %u loader threads: at most 64", q->workers);
        return -EINVAL;
    }
    if (q->eval_count > 10000) {
        vka_err("fid-net: accuracy on %u t10k images: t10k holds 10000", q->eval_count);
        return -EINVAL;
    }
    if (!(q->lr > 0)) {
        vka_err("fid-net: learning rate %g: must be positive", q->lr);
        return -EINVAL;
    }
    return 0;
}

/* The trained weights into the inference graph: the same builder, the same layout. */
static int copy_params(struct vka_graph *from, struct vka_graph *to)
{
    struct vka_tensor a = vka_graph_params_flat(from), b = vka_graph_params_flat(to);
    uint64_t n = vka_tensor_stored(&a);
    if (n != vka_tensor_stored(&b)) {
        vka_err("fid-net: the training graph holds %" PRIu64 " parameter floats, the "
                "inference graph %" PRIu64, n, vka_tensor_stored(&b));
        return -EINVAL;
    }
    float *h = malloc(n * sizeof(float));
    int ret = h ? vka_tensor_download(&a, h) : -ENOMEM;
    if (ret == 0)
        ret = vka_tensor_upload(&b, h);
    free(h);
    return ret;
}

static int save(const char *path, struct vka_fidnet *f, const struct vka_fidnet_train_params *q,
                double acc, uint32_t train_count)
{
    char v[9][32];
    snprintf(v[0], 32, "%u", f->res);
    snprintf(v[1], 32, "%u", f->channels);
    snprintf(v[2], 32, "%u", VKA_CLASSIFIER_FEATURES);
    snprintf(v[3], 32, "%u", f->classes);
    snprintf(v[4], 32, "%.17g", acc);
    snprintf(v[5], 32, "%.17g", f->floor);
    snprintf(v[6], 32, "%u", q->n);
    snprintf(v[7], 32, "%u", q->steps);
    snprintf(v[8], 32, "%u", train_count);
    struct vka_st_meta meta[] = {
        { META_KEY, META_VERSION }, { "res", v[0] }, { "channels", v[1] },
        { "features", v[2] }, { "classes", v[3] }, { "accuracy", v[4] }, { "floor", v[5] },
        { "n", v[6] }, { "steps", v[7] }, { "train_images", v[8] },
    };
    return vka_ckpt_save(path, f->g, NULL, 0, NULL, 0, meta, sizeof(meta) / sizeof(meta[0]));
}

int vka_fidnet_train(struct vka_ctx *ctx, const struct vka_fidnet_train_params *p,
                     struct vka_fidnet_report *r)
{
    double t0 = vka_now();
    if (!ctx || !p || !r) {
        vka_err("fid-net train: %s is NULL", !ctx ? "ctx" : !p ? "params" : "report");
        return -EINVAL;
    }
    struct vka_fidnet_train_params q = *p;
    int ret = check_params(&q);
    if (ret < 0)
        return ret;
    struct vka_dataset *train = NULL, *test = NULL;
    struct vka_loader *loader = NULL;
    struct vka_graph *g = NULL;
    struct vka_trainer *tr = NULL;
    struct vka_fidnet *f = NULL;
    struct vka_fid_stats st_test = { 0 }, st_train = { 0 };
    *r = (struct vka_fidnet_report){ 0 };
    if ((ret = split_open("train", true, &train)) < 0 ||
        (ret = split_open("t10k", true, &test)) < 0)
        goto out;
    uint32_t count = vka_dataset_count(train);
    if (q.train_count > count) {
        vka_err("fid-net: %u training images asked for; the train split holds %u",
                q.train_count, count);
        ret = -EINVAL;
        goto out;
    }
    count = q.train_count ? q.train_count : count;
    uint32_t eval_count = q.eval_count ? q.eval_count : vka_dataset_count(test);
    if (q.n > vka_dataset_count(test) || q.n > vka_dataset_count(train) ||
        eval_count > vka_dataset_count(test)) {
        vka_err("fid-net: %u images per side of the floor and %u for accuracy, but t10k "
                "holds %u images", q.n, eval_count, vka_dataset_count(test));
        ret = -EINVAL;
        goto out;
    }

    struct vka_classifier net;
    struct vka_classifier_params cp = { .channels = q.channels, .res = q.res, .classes = CLASSES };
    if ((ret = vka_graph_create(ctx, &(struct vka_graph_params){ .seed = q.seed }, &g)) < 0 ||
        (ret = vka_classifier_build(g, &cp, &net)) < 0)
        goto out;
    int label = vka_graph_input(g, "label", VKA_I32, VKA_LAYOUT_FLAT, 1, 1, 1);
    union vka_op_params ce = { .loss = { .ignore_index = -100, .scale = 1.0f } };
    int loss = label < 0 ? label
                         : vka_graph_node(g, VKA_OP_cross_entropy, &ce, net.logits, label, -1);
    if ((ret = loss) < 0 || (ret = vka_graph_alloc(g)) < 0)
        goto out;
    struct vka_trainer_params tp = {
        .batch = BATCH, .micro = q.micro, .optim = vka_optim_defaults(VKA_OPTIM_ADAMW, 1),
        .lr = { .kind = VKA_LR_COSINE, .lr = q.lr, .t_max = q.steps },
        .loss = loss, .inputs = { net.image, label }, .ninputs = 2,
    };
    struct vka_loader_params lp = loader_params(train, q.res, q.channels, q.micro, q.workers);
    lp.count = count;
    lp.shuffle = true;
    lp.seed = q.seed;
    if ((ret = vka_trainer_create(g, &tp, &tr)) < 0 ||
        (ret = vka_loader_create(&lp, &loader)) < 0)
        goto out;

    struct vka_trainer_stats ts = { 0 };
    while (ts.opt_steps < q.steps) {
        uint32_t m = vka_trainer_next_size(tr);
        struct vka_batch b;
        bool stepped;
        if ((ret = vka_loader_next(loader, m, &b)) < 0 ||
            (ret = check_labels(train, &b, CLASSES)) < 0 ||
            (ret = vka_trainer_micro_step(tr, (const void *[]){ b.x, b.labels }, m,
                                          &stepped)) < 0)
            goto out;
        if (!stepped)
            continue;
        vka_trainer_get_stats(tr, &ts);
        if (ts.opt_steps == 1)
            r->first_loss = ts.loss;
        r->last_loss = ts.loss;
        if (q.on_step)
            q.on_step(q.user, ts.opt_steps, q.steps, ts.loss);
    }
    r->steps = ts.opt_steps;
    vka_loader_destroy(&loader);

    double acc, fd;
    if ((ret = fidnet_create(ctx, q.res, q.channels, CLASSES, q.seed, &f)) < 0 ||
        (ret = copy_params(g, f->g)) < 0)
        goto out;
    vka_trainer_destroy(&tr);
    vka_graph_destroy(&g);
    if ((ret = pass(f, test, "t10k", q.workers, q.n, &st_test, eval_count, &acc)) < 0 ||
        (ret = pass(f, train, "train", q.workers, q.n, &st_train, 0, NULL)) < 0 ||
        (ret = vka_fid_distance(&st_test, &st_train, &fd)) < 0)
        goto out;
    f->floor = fd;
    if (q.out && (ret = save(q.out, f, &q, acc, count)) < 0)
        goto out;
    r->accuracy = acc;
    r->floor = fd;
    r->seconds = vka_now() - t0;
out:
    vka_fid_stats_free(&st_test);
    vka_fid_stats_free(&st_train);
    vka_fidnet_destroy(&f);
    vka_loader_destroy(&loader);
    vka_trainer_destroy(&tr);
    vka_graph_destroy(&g);
    vka_dataset_destroy(&train);
    vka_dataset_destroy(&test);
    return ret;
}

/* ---- loading ----------------------------------------------------------------------- */

static int meta_u32(const struct vka_st_file *file, const char *path, const char *key,
                    uint32_t *v)
{
    const char *s = vka_st_meta_get(file, key);
    char *end;
    unsigned long u = s ? strtoul(s, &end, 10) : 0;
    if (!s || end == s || *end || u > UINT32_MAX) {
        vka_err("fid-net %s: metadata \"%s\" is %s%s%s, not a count", path, key,
                s ? "\"" : "missing", s ? s : "", s ? "\"" : "");
        return -EINVAL;
    }
    *v = (uint32_t)u;
    return 0;
}

int vka_fidnet_load(struct vka_ctx *ctx, const char *path, struct vka_fidnet **out)
{
    if (!ctx || !path || !out) {
        vka_err("fid-net load: %s is NULL", !ctx ? "ctx" : !path ? "path" : "out");
        return -EINVAL;
    }
    *out = NULL;
    struct vka_st_file *file;
    int ret = vka_st_read(path, &file);
    if (ret < 0)
        return ret;
    const char *ver = vka_st_meta_get(file, META_KEY);
    uint32_t res = 0, channels = 0, dim = 0, classes = 0;
    const char *fl = vka_st_meta_get(file, "floor");
    char *end = NULL;
    double floor = fl ? strtod(fl, &end) : 0;
    if (!ver) {
        vka_err("fid-net %s: not a fid-net checkpoint (its metadata has no \"" META_KEY "\" "
                "entry); make one with vkaccum gan fid-net --out FILE", path);
        ret = -EINVAL;
    } else if (strcmp(ver, META_VERSION)) {
        vka_err("fid-net %s: a fid-net of layout %s; this vkaccum reads layout " META_VERSION,
                path, ver);
        ret = -EINVAL;
    } else if ((ret = meta_u32(file, path, "res", &res)) == 0 &&
               (ret = meta_u32(file, path, "channels", &channels)) == 0 &&
               (ret = meta_u32(file, path, "features", &dim)) == 0 &&
               (ret = meta_u32(file, path, "classes", &classes)) == 0) {
        if (dim != VKA_CLASSIFIER_FEATURES) {
            vka_err("fid-net %s: %u features; this network has %u", path, dim,
                    VKA_CLASSIFIER_FEATURES);
            ret = -EINVAL;
        } else if (!fl || end == fl || *end) {
            vka_err("fid-net %s: metadata \"floor\" is %s, not a number", path,
                    fl ? fl : "missing");
            ret = -EINVAL;
        }
    }
    vka_st_file_destroy(&file);
    struct vka_fidnet *f = NULL;
    if (ret == 0 && (ret = fidnet_create(ctx, res, channels, classes, 0, &f)) < 0) {
        char why[512];
        snprintf(why, sizeof(why), "%s", vka_last_error());
        vka_err("fid-net %s: res %u, channels %u, classes %u: %s", path, res, channels,
                classes, why);
    }
    if (ret == 0 && (ret = vka_ckpt_load_weights(path, f->g)) < 0)
        vka_fidnet_destroy(&f);
    if (ret < 0)
        return ret;
    f->floor = floor;
    *out = f;
    return 0;
}
