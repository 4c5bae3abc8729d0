/* Checkpoint save and load; see checkpoint.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "log.h"

#define TRAIN_PREFIX "train."

enum { COUNTERS = 10 };

struct tlist {
    struct vka_st_tensor *t;
    void **owned;
    size_t n, cap;
};

static int tl_add(struct tlist *l, const char *name, enum vka_st_dtype dtype, uint32_t ndim,
                  const uint64_t *shape, void *data)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        struct vka_st_tensor *t = realloc(l->t, cap * sizeof(*t));
        if (!t)
            return -ENOMEM;
        l->t = t;
        void **o = realloc(l->owned, cap * sizeof(*o));
        if (!o)
            return -ENOMEM;
        l->owned = o;
        l->cap = cap;
    }
    struct vka_st_tensor *t = &l->t[l->n];
    memset(t, 0, sizeof(*t));
    t->name = strdup(name);
    t->dtype = dtype;
    t->ndim = ndim;
    if (ndim) /* a scalar's shape may be NULL, and memcpy's source must not be */
        memcpy(t->shape, shape, ndim * sizeof(uint64_t));
    t->data = data;
    l->owned[l->n++] = data;
    return t->name ? 0 : -ENOMEM;
}

static void tl_free(struct tlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free((char *)l->t[i].name);
        free(l->owned[i]);
    }
    free(l->t);
    free(l->owned);
}

/* PyTorch's shape of a PARAM/STATE value. */
static uint32_t file_shape(const struct vka_val *v, uint64_t shape[4])
{
    const uint32_t d[4] = { v->n, v->c, v->h, v->w };
    for (uint32_t i = 0; i < v->file_rank; i++)
        shape[i] = d[i];
    return v->file_rank;
}

static bool is_model_tensor(const struct vka_val *v)
{
    return v->kind == VKA_VAL_PARAM || v->kind == VKA_VAL_STATE;
}

/* "<prefix>.num_batches_tracked" for a "<prefix>.running_mean" state value, else 0. */
static int bn_counter_name(const struct vka_val *v, char *buf, size_t size)
{
    const char *suffix = ".running_mean";
    size_t len = strlen(v->name), sl = strlen(suffix);
    if (v->kind != VKA_VAL_STATE || len <= sl || strcmp(v->name + len - sl, suffix))
        return 0;
    snprintf(buf, size, "%.*s.num_batches_tracked", (int)(len - sl), v->name);
    return 1;
}

/* The model's tensors, as the file holds them (data NULL when want_data is false). */
static int model_tensors(struct vka_graph *g, struct tlist *l, bool want_data)
{
    int ret = 0;
    for (uint32_t i = 0; i < vka_graph_nvals(g) && ret == 0; i++) {
        const struct vka_val *v = vka_graph_val(g, (int)i);
        if (!is_model_tensor(v))
            continue;
        uint64_t shape[4];
        uint32_t rank = file_shape(v, shape);
        uint64_t count = (uint64_t)v->n * v->c * v->h * v->w;
        float *data = NULL;
        if (want_data) {
            data = malloc((count ? count : 1) * sizeof(float));
            if (!data)
                return -ENOMEM;
            struct vka_tensor t = vka_graph_tensor(g, (int)i);
            if ((ret = vka_tensor_download(&t, data)) < 0) {
                free(data);
                return ret;
            }
        }
        ret = tl_add(l, v->name, VKA_ST_F32, rank, shape, data);
        char bn[128];
        if (ret == 0 && bn_counter_name(v, bn, sizeof(bn))) {
            int64_t *c = want_data ? malloc(sizeof(int64_t)) : NULL;
            if (want_data && !c)
                return -ENOMEM;
            if (c)
                *c = (int64_t)v->batches;
            ret = tl_add(l, bn, VKA_ST_I64, 0, NULL, c);
        }
    }
    return ret;
}

static int region_tensor_as(struct tlist *l, const char *name, struct vka_tensor t,
                            enum vka_st_dtype dtype, bool skip_zero);

static int region_tensor(struct tlist *l, const char *name, struct vka_tensor t)
{
    return region_tensor_as(l, name, t, VKA_ST_F32, false);
}

/* t's 32-bit words as a tensor of dtype (F32, or U32 for the exact accumulators); with
 * skip_zero, nothing when every word is zero (accumulators at a window boundary) */
static int region_tensor_as(struct tlist *l, const char *name, struct vka_tensor t,
                            enum vka_st_dtype dtype, bool skip_zero)
{
    uint64_t n = vka_tensor_stored(&t);
    uint32_t *data = malloc((n ? n : 1) * sizeof(uint32_t));
    if (!data)
        return -ENOMEM;
    int ret = vka_buf_download(t.buf, t.off * 4, data, n * 4);
    if (ret < 0) {
        free(data);
        return ret;
    }
    uint64_t i = 0;
    while (skip_zero && i < n && !data[i])
        i++;
    if (skip_zero && i == n) {
        free(data);
        return 0;
    }
    return tl_add(l, name, dtype, 1, &n, data);
}

static struct vka_tensor losses_region(struct vka_graph *g)
{
    /* every LOSS value is in one buffer; it spans from the first to the last */
    struct vka_tensor all = { 0 };
    uint64_t end = 0;
    for (uint32_t i = 0; i < vka_graph_nvals(g); i++) {
        const struct vka_val *v = vka_graph_val(g, (int)i);
        if (v->kind != VKA_VAL_LOSS)
            continue;
        struct vka_tensor t = vka_graph_tensor(g, (int)i);
        all.buf = t.buf;
        if (t.off + vka_tensor_stored(&t) > end)
            end = t.off + vka_tensor_stored(&t);
    }
    return all.buf ? vka_tensor_flat(all.buf, 0, end) : all;
}

/* "train." or "train.NAME." for a trainer's optimizer state and counters */
static void trainer_prefix(const struct vka_trainer *tr, char *buf, size_t size)
{
    const char *name = vka_trainer_name(tr);
    snprintf(buf, size, TRAIN_PREFIX "%s%s", name ? name : "", name ? "." : "");
}

/* One trainer's optimizer state and counters. */
static int trainer_tensors(struct tlist *l, struct vka_trainer *tr)
{
    struct vka_trainer_stats s;
    vka_trainer_get_stats(tr, &s);
    char pre[64], full[128];
    trainer_prefix(tr, pre, sizeof(pre));
    int ret = 0;
    struct vka_optim *opt = vka_trainer_optim(tr);
    for (uint32_t i = 0; ret == 0 && i < vka_optim_state_count(opt); i++) {
        const char *name;
        const struct vka_tensor *st = vka_optim_state(opt, i, &name);
        snprintf(full, sizeof(full), "%soptim.%s", pre, name);
        ret = region_tensor(l, full, *st);
    }
    if (ret < 0)
        return ret;
    int64_t *c = malloc(COUNTERS * sizeof(int64_t));
    if (!c)
        return -ENOMEM;
    struct vka_optim_counters oc;
    vka_optim_get_counters(opt, &oc);
    int64_t v[COUNTERS] = { (int64_t)s.micro_steps, (int64_t)s.opt_steps,
                            (int64_t)s.skipped_steps, (int64_t)s.dropped_windows,
                            (int64_t)s.samples_seen, s.window_samples, s.window_micro,
                            (int64_t)oc.steps, (int64_t)oc.skipped, s.window_pass };
    memcpy(c, v, sizeof(v));
    uint64_t n = COUNTERS;
    snprintf(full, sizeof(full), "%scounters", pre);
    return tl_add(l, full, VKA_ST_I64, 1, &n, c);
}

int vka_ckpt_save(const char *path, struct vka_graph *g, struct vka_trainer *const *tr,
                  size_t ntr, const struct vka_st_tensor *extra, size_t n_extra,
                  const struct vka_st_meta *meta, size_t n_meta)
{
    struct tlist l = { 0 };
    int ret = model_tensors(g, &l, true);
    if (ret == 0 && ntr) {
        struct vka_tensor losses = losses_region(g);
        if ((ret = region_tensor_as(&l, TRAIN_PREFIX "grads", vka_graph_grads_flat(g),
                                    VKA_ST_F32, true)) == 0 && losses.buf)
            ret = region_tensor_as(&l, TRAIN_PREFIX "losses", losses, VKA_ST_F32, true);
        /* --accumulate exact: an open window's sums are in the exact accumulators. All
         * three are kept only when not all zero: at a window boundary (every checkpoint
         * the CLI writes) they are cleared, and an exact one is 16 bytes per parameter */
        struct vka_tensor ex = vka_graph_exact_words(g);
        if (ret == 0 && ex.buf)
            ret = region_tensor_as(&l, TRAIN_PREFIX "exact", ex, VKA_ST_U32, true);
    }
    for (size_t i = 0; ret == 0 && i < ntr; i++)
        ret = trainer_tensors(&l, tr[i]);
    for (size_t i = 0; ret == 0 && i < n_extra; i++) {
        if (strncmp(extra[i].name, TRAIN_PREFIX, strlen(TRAIN_PREFIX))) {
            vka_err("checkpoint %s: extra tensor %s must be named train.*", path, extra[i].name);
            ret = -EINVAL;
            break;
        }
        ret = tl_add(&l, extra[i].name, extra[i].dtype, extra[i].ndim, extra[i].shape, NULL);
        if (ret == 0)
            l.t[l.n - 1].data = extra[i].data; /* the caller's; not freed */
    }
    if (ret == 0) {
        struct vka_st_meta m[17] = { { "format", "vkaccum-checkpoint-1" } };
        size_t nm = 1;
        for (size_t i = 0; i < n_meta && nm < 17; i++)
            m[nm++] = meta[i];
        ret = vka_st_write(path, &(struct vka_st_write_params){
            .tensors = l.t, .n_tensors = l.n, .meta = m, .n_meta = nm });
    }
    tl_free(&l); /* extras were added with no owned data: the caller's stays */
    return ret;
}

/* Checks f against the model (train.* tensors aside) and uploads the model's tensors. */
static int load_model(const struct vka_st_file *f, struct vka_graph *g, bool others_ok)
{
    struct tlist want = { 0 };
    int ret = model_tensors(g, &want, false);
    /* the file's model tensors: everything not under train. */
    size_t nmodel = 0;
    struct vka_st_tensor *model = calloc(f->n_tensors ? f->n_tensors : 1, sizeof(*model));
    if (ret == 0 && !model)
        ret = -ENOMEM;
    for (size_t i = 0; ret == 0 && i < f->n_tensors; i++)
        if (strncmp(f->tensors[i].name, TRAIN_PREFIX, strlen(TRAIN_PREFIX)))
            model[nmodel++] = f->tensors[i];
    if (ret == 0) {
        /* by hand rather than vka_st_check: the file may also hold train.* tensors */
        for (size_t i = 0; i < want.n && ret == 0; i++) {
            const struct vka_st_tensor *t = vka_st_find(f, want.t[i].name);
            char a[64], b[64];
            if (!t) {
                vka_err("checkpoint %s: tensor %s is missing", f->path, want.t[i].name);
                ret = -EINVAL;
            } else if (t->dtype != want.t[i].dtype || t->ndim != want.t[i].ndim ||
                       memcmp(t->shape, want.t[i].shape, t->ndim * sizeof(uint64_t))) {
                vka_err("checkpoint %s: tensor %s is %s %s, the model's is %s %s", f->path,
                        t->name, vka_st_dtype_name(t->dtype), vka_st_shape_str(t, a, sizeof(a)),
                        vka_st_dtype_name(want.t[i].dtype),
                        vka_st_shape_str(&want.t[i], b, sizeof(b)));
                ret = -EINVAL;
            }
        }
        for (size_t i = 0; i < nmodel && ret == 0 && !others_ok; i++) {
            bool known = false;
            for (size_t j = 0; j < want.n && !known; j++)
                known = !strcmp(model[i].name, want.t[j].name);
            if (!known) {
                vka_err("checkpoint %s: tensor %s is not part of this model", f->path,
                        model[i].name);
                ret = -EINVAL;
            }
        }
    }
    for (uint32_t i = 0; ret == 0 && i < vka_graph_nvals(g); i++) {
        const struct vka_val *v = vka_graph_val(g, (int)i);
        if (!is_model_tensor(v))
            continue;
        struct vka_tensor t = vka_graph_tensor(g, (int)i);
        ret = vka_tensor_upload(&t, vka_st_find(f, v->name)->data);
        char bn[128];
        if (ret == 0 && bn_counter_name(v, bn, sizeof(bn)))
            vka_graph_set_batches(g, (int)i, (uint64_t)*(const int64_t *)vka_st_find(f, bn)->data);
    }
    free(model);
    tl_free(&want);
    return ret;
}

int vka_ckpt_load_weights(const char *path, struct vka_graph *g)
{
    struct vka_st_file *f;
    int ret = vka_st_read(path, &f);
    if (ret < 0)
        return ret;
    ret = load_model(f, g, false);
    vka_st_file_destroy(&f);
    return ret;
}

int vka_ckpt_load_weights_file(const struct vka_st_file *f, struct vka_graph *g)
{
    return load_model(f, g, true);
}

static const struct vka_st_tensor *train_tensor(const struct vka_st_file *f, const char *name,
                                                enum vka_st_dtype dtype, uint64_t count)
{
    const struct vka_st_tensor *t = vka_st_find(f, name);
    uint64_t n = 0;
    if (!t || t->dtype != dtype || vka_st_numel(t, &n) < 0 || n != count) {
        vka_err("checkpoint %s: %s %s (%s of %" PRIu64 " elements expected): not a "
                "checkpoint of this run's model and optimizer", f->path, name,
                t ? "has another dtype or size" : "is missing", vka_st_dtype_name(dtype), count);
        return NULL;
    }
    return t;
}

/* One trainer's train.* tensors, checked against it. */
struct trainer_file {
    const char *path;
    const struct vka_st_tensor *counters, *state[4];
};

/* The counters as the trainer's stats; false (after vka_err naming the tensor) when a
 * value is out of range: nothing read from a file is trusted to index or size anything. */
static bool decode_counters(const char *path, const char *name, struct vka_trainer *tr,
                            const int64_t *c, struct vka_trainer_stats *s,
                            struct vka_optim_counters *oc)
{
    static const char *what[COUNTERS] = { "micro_steps", "opt_steps", "skipped_steps",
                                          "dropped_windows", "samples_seen", "window_samples",
                                          "window_micro", "optimizer steps", "optimizer skipped",
                                          "window_pass" };
    for (int i = 0; i < COUNTERS; i++)
        if (c[i] < 0 || ((i == 5 || i == 6 || i == 9) && c[i] > UINT32_MAX)) {
            vka_err("checkpoint %s: %s[%d] (%s) is %" PRId64 ": out of range", path, name, i,
                    what[i], c[i]);
            return false;
        }
    vka_trainer_get_stats(tr, s);
    s->micro_steps = (uint64_t)c[0];
    s->opt_steps = (uint64_t)c[1];
    s->skipped_steps = (uint64_t)c[2];
    s->dropped_windows = (uint64_t)c[3];
    s->samples_seen = (uint64_t)c[4];
    s->window_samples = (uint32_t)c[5];
    s->window_micro = (uint32_t)c[6];
    s->window_pass = (uint32_t)c[9];
    *oc = (struct vka_optim_counters){ (uint64_t)c[7], (uint64_t)c[8] };
    char why[160];
    if (oc->steps > s->opt_steps || oc->skipped > s->skipped_steps ||
        oc->steps + oc->skipped > s->opt_steps)
        snprintf(why, sizeof(why), "the optimizer's %" PRIu64 " steps and %" PRIu64 " skipped "
                 "do not fit the trainer's %" PRIu64 " steps (%" PRIu64 " skipped)", oc->steps,
                 oc->skipped, s->opt_steps, s->skipped_steps);
    else if (vka_trainer_check_stats(tr, s, why, sizeof(why)) == 0)
        return true;
    {
        vka_err("checkpoint %s: %s: %s", path, name, why);
        return false;
    }
}

static bool check_counters(const char *path, const char *name, struct vka_trainer *tr,
                           const int64_t *c)
{
    struct vka_trainer_stats s;
    struct vka_optim_counters oc;
    return decode_counters(path, name, tr, c, &s, &oc);
}

static bool find_trainer(const struct vka_st_file *f, struct vka_trainer *tr,
                         struct trainer_file *tf)
{
    char pre[64], full[128];
    trainer_prefix(tr, pre, sizeof(pre));
    struct vka_optim *opt = vka_trainer_optim(tr);
    tf->path = f->path;
    snprintf(full, sizeof(full), "%scounters", pre);
    bool ok = (tf->counters = train_tensor(f, full, VKA_ST_I64, COUNTERS)) != NULL &&
              check_counters(f->path, full, tr, tf->counters->data);
    for (uint32_t i = 0; ok && i < vka_optim_state_count(opt) && i < 4; i++) {
        const char *name;
        const struct vka_tensor *st = vka_optim_state(opt, i, &name);
        snprintf(full, sizeof(full), "%soptim.%s", pre, name);
        ok = (tf->state[i] = train_tensor(f, full, VKA_ST_F32, vka_tensor_stored(st))) != NULL;
    }
    return ok;
}

static int restore_trainer(struct vka_trainer *tr, const struct trainer_file *tf)
{
    struct vka_optim *opt = vka_trainer_optim(tr);
    for (uint32_t i = 0; i < vka_optim_state_count(opt) && i < 4; i++) {
        const char *name;
        vka_optim_state(opt, i, &name);
        int ret = vka_optim_state_write(opt, name, tf->state[i]->data);
        if (ret < 0)
            return ret;
    }
    struct vka_trainer_stats s;
    struct vka_optim_counters oc;
    /* checked by find_trainer already */
    decode_counters(tf->path, "counters", tr, tf->counters->data, &s, &oc);
    vka_trainer_set_stats(tr, &s);
    return vka_optim_set_counters(opt, &oc);
}

/* A region of accumulators in f: NULL when absent (all zero when saved) or when the
 * graph has none; present, it must match (*ok false otherwise). */
static const struct vka_st_tensor *accumulator(const struct vka_st_file *f, const char *name,
                                               enum vka_st_dtype dtype, struct vka_tensor t,
                                               bool *ok)
{
    if (!t.buf || !vka_st_find(f, name))
        return NULL;
    const struct vka_st_tensor *st = train_tensor(f, name, dtype, vka_tensor_stored(&t));
    *ok = *ok && st;
    return st;
}

/* t's words from st, or zero without it */
static int upload_or_zero(struct vka_tensor t, const struct vka_st_tensor *st)
{
    uint64_t bytes = vka_tensor_stored(&t) * 4;
    if (!t.buf)
        return 0;
    if (st)
        return vka_buf_upload(t.buf, t.off * 4, st->data, bytes);
    void *zero = calloc(bytes ? bytes : 1, 1);
    if (!zero)
        return -ENOMEM;
    int ret = vka_buf_upload(t.buf, t.off * 4, zero, bytes);
    free(zero);
    return ret;
}

int vka_ckpt_restore(const struct vka_st_file *f, struct vka_graph *g,
                     struct vka_trainer *const *tr, size_t ntr)
{
    /* every train.* tensor is checked before anything is changed */
    struct vka_tensor grads = vka_graph_grads_flat(g), losses = losses_region(g);
    const struct vka_st_tensor *tg, *tl;
    struct trainer_file tf[4];
    /* the accumulators are absent where they were all zero (saved at a window boundary) */
    struct vka_tensor ex = vka_graph_exact_words(g);
    bool ok = ntr <= 4;
    tg = accumulator(f, TRAIN_PREFIX "grads", VKA_ST_F32, grads, &ok);
    tl = accumulator(f, TRAIN_PREFIX "losses", VKA_ST_F32, losses, &ok);
    const struct vka_st_tensor *tx = accumulator(f, TRAIN_PREFIX "exact", VKA_ST_U32, ex, &ok);
    for (size_t i = 0; ok && i < ntr; i++)
        ok = find_trainer(f, tr[i], &tf[i]);
    if (!ok)
        return -EINVAL;
    int ret;
    if ((ret = load_model(f, g, false)) < 0 || (ret = upload_or_zero(grads, tg)) < 0 ||
        (ret = upload_or_zero(losses, tl)) < 0 || (ret = upload_or_zero(ex, tx)) < 0)
        return ret;
    for (size_t i = 0; ret == 0 && i < ntr; i++)
        ret = restore_trainer(tr[i], &tf[i]);
    return ret;
}

int vka_ckpt_load(const char *path, struct vka_graph *g, struct vka_trainer *const *tr,
                  size_t ntr, struct vka_st_file **out)
{
    struct vka_st_file *f;
    if (out)
        *out = NULL;
    int ret = vka_st_read(path, &f);
    if (ret < 0)
        return ret;
    ret = vka_ckpt_restore(f, g, tr, ntr);
    if (ret < 0 || !out)
        vka_st_file_destroy(&f);
    else
        *out = f;
    return ret;
}
