/* The prefetching loader (conventions in dataset.h). Workers claim stream positions in
 * order, make each sample into their own spare buffers (decode, augment), and swap them
 * into the ring slot of that position; the consumer takes slots strictly in position
 * order. A sample is a function of its position alone, so the batches are the same
 * for any number of workers, and a seek (bumping the generation, so that samples made
 * for the old position are dropped) restarts the stream anywhere.
 *
 * Failures: a sample that cannot be made is stored in its slot as an error; the
 * consumer meets it in position order, so the error vka_loader_next returns is the one
 * of the earliest bad position, whichever worker failed first, and it is returned
 * again by every later call until a seek. Workers claim no position past the earliest
 * known bad one: the stream ends there, so no worker decodes samples nobody will take.
 * Every wait is on a predicate read under mu, and every change to one is broadcast
 * under mu. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/internal.h"

struct out {
    float *x;
    int32_t *y;
    size_t xcap, ycap; /* elements */
    uint32_t c, h, w, index;
    int32_t label;
};

struct slot {
    uint64_t pos;
    bool ready;
    int ret;
    char err[VKA_ERRLEN];
    struct out o;
};

struct worker {
    struct vka_loader *l;
    pthread_t th;
    struct out spare;
    uint32_t *perm;
    uint64_t perm_epoch;
    bool has_perm;
};

struct vka_loader {
    struct vka_loader_params p;
    struct vka_dataset *ds;
    uint32_t count, c;
    uint32_t local; /* samples of an epoch in this loader's stream: count, or its shard's */
    bool masks, labels;

    pthread_mutex_t mu;
    pthread_cond_t ready_cv, space_cv;
    uint64_t claim, take, gen;
    uint64_t bad_pos; /* earliest position a worker failed to make; UINT64_MAX: none */
    bool stop;
    uint32_t depth;
    struct slot *slots;
    uint32_t nworkers;
    struct worker *workers;
    struct worker sync;

    float *bx;
    int32_t *by, *blabels;
    uint32_t *ids;
    size_t bxcap, bycap;
    int failed;
    char fail_msg[VKA_ERRLEN];
};

static void out_free(struct out *o)
{
    free(o->x);
    free(o->y);
    *o = (struct out){ 0 };
}

static int grow_f(float **p, size_t *cap, size_t n)
{
    if (n <= *cap)
        return 0;
    float *q = realloc(*p, n * sizeof(float));
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

static int grow_i(int32_t **p, size_t *cap, size_t n)
{
    if (n <= *cap)
        return 0;
    int32_t *q = realloc(*p, n * sizeof(int32_t));
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

static const uint32_t *epoch_order(struct vka_loader *l, struct worker *w, uint64_t e)
{
    if (w->has_perm && w->perm_epoch == e)
        return w->perm;
    uint32_t n = l->count;
    for (uint32_t i = 0; i < n; i++)
        w->perm[i] = i;
    uint64_t rng = vka_hash3(l->p.seed, 0x5e7f1e00u, e);
    for (uint32_t i = n - 1; i > 0; i--) {
        uint32_t j = vka_rng_below(&rng, i + 1), t = w->perm[i];
        w->perm[i] = w->perm[j];
        w->perm[j] = t;
    }
    w->perm_epoch = e;
    w->has_perm = true;
    return w->perm;
}

uint32_t vka_shard_windows(const struct vka_shard *s)
{
    return (s->count + s->window - 1) / s->window;
}

uint32_t vka_shard_share(const struct vka_shard *s, uint32_t w, uint32_t *first)
{
    uint32_t start = w * s->window, len = s->count - start < s->window ? s->count - start
                                                                       : s->window;
    if (len == s->window) {
        *first = start + s->rank * (len / s->nranks);
        return len / s->nranks;
    }
    uint64_t lo = ((uint64_t)s->rank * len + s->nranks - 1) / s->nranks,
             hi = ((uint64_t)(s->rank + 1) * len + s->nranks - 1) / s->nranks;
    *first = start + (uint32_t)lo;
    return (uint32_t)(hi - lo);
}

uint32_t vka_shard_local(const struct vka_shard *s)
{
    uint32_t full = s->count / s->window, first;
    return full * (s->window / s->nranks) +
           (s->count % s->window ? vka_shard_share(s, full, &first) : 0);
}

uint32_t vka_shard_global(const struct vka_shard *s, uint32_t j)
{
    uint32_t per = s->window / s->nranks, full = s->count / s->window, first;
    uint32_t w = j / per < full ? j / per : full;
    vka_shard_share(s, w, &first);
    return first + (j - w * per);
}

/* The position in the one-process stream (epoch * count + index) of this loader's
 * position j: j itself, or where j falls in the rank's shares. */
static uint64_t stream_pos(const struct vka_loader *l, uint64_t j)
{
    const struct vka_shard *s = &l->p.shard;
    if (s->nranks < 2)
        return j;
    uint32_t per = s->window / s->nranks;
    if (s->endless)
        return j / per * s->window + (uint64_t)s->rank * per + j % per;
    return j / l->local * l->count + vka_shard_global(s, (uint32_t)(j % l->local));
}

/* Makes the sample at this loader's position j into o. */
static int make(struct vka_loader *l, struct worker *w, uint64_t j, struct out *o, char *err)
{
    uint64_t g = stream_pos(l, j), e = g / l->count;
    uint32_t i = (uint32_t)(g % l->count);
    uint32_t idx = l->p.shuffle ? epoch_order(l, w, e)[i] : i;
    struct vka_sample s;
    int ret = 0;
    char first[VKA_ERRLEN];
    uint32_t tries = 0;
    for (; tries < l->count; tries++) {
        ret = vka_dataset_get_err(l->ds, idx, l->c, &s, err);
        if (!ret || !l->ds->skip_bad || ret == -ENOMEM)
            break;
        uint32_t next = (idx + 1) % l->count;
        vka_warn("skipping: %s (sample %u replaced by %u)", err, idx, next);
        if (!tries)
            memcpy(first, err, sizeof(first));
        idx = next;
    }
    if (ret && tries == l->count) {
        /* every sample failed: the file of this position is the one to name */
        if (l->count > 1)
            vka_seterr(err, "%s; and none of the other %u samples could replace it", first,
                       l->count - 1);
        else
            memcpy(err, first, sizeof(first));
    }
    if (ret)
        return ret;
    uint64_t rng = vka_augment_seed(l->p.seed, e, idx);
    uint32_t ow, oh;
    vka_augment_size(&l->p.aug, rng, s.image.w, s.image.h, &ow, &oh);
    size_t plane = (size_t)ow * oh;
    if (grow_f(&o->x, &o->xcap, plane * l->c) ||
        (l->masks && grow_i(&o->y, &o->ycap, plane))) {
        vka_sample_free(&s);
        vka_seterr(err, "%s: out of memory for a %ux%u sample", vka_dataset_name(l->ds, idx),
                   ow, oh);
        return -ENOMEM;
    }
    ret = vka_augment(&l->p.aug, rng, &s.image, l->masks ? &s.mask : NULL,
                      l->ds->ignore_index, o->x, l->masks ? o->y : NULL);
    vka_sample_free(&s);
    if (ret) {
        vka_seterr(err, "%s: %s", vka_dataset_name(l->ds, idx), vka_last_error());
        return ret;
    }
    o->c = l->c;
    o->w = ow;
    o->h = oh;
    o->index = idx;
    o->label = s.label;
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct vka_loader *l = w->l;
    char err[VKA_ERRLEN];
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        if (l->failed || l->claim >= l->take + l->depth || l->claim > l->bad_pos) {
            pthread_cond_wait(&l->space_cv, &l->mu);
            continue;
        }
        uint64_t g = l->claim++, gen = l->gen;
        pthread_mutex_unlock(&l->mu);
        err[0] = '\0';
        int ret = make(l, w, g, &w->spare, err);
        pthread_mutex_lock(&l->mu);
        if (gen != l->gen || l->stop)
            continue;
        if (ret && g < l->bad_pos)
            l->bad_pos = g;
        struct slot *s = &l->slots[g % l->depth];
        struct out t = s->o;
        s->o = w->spare;
        w->spare = t;
        s->pos = g;
        s->ret = ret;
        memcpy(s->err, err, sizeof(err));
        s->ready = true;
        pthread_cond_broadcast(&l->ready_cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

int vka_loader_create(const struct vka_loader_params *p, struct vka_loader **out)
{
    *out = NULL;
    if (!p->dataset || !p->batch) {
        vka_err("loader: %s", !p->dataset ? "no dataset" : "batch must be at least 1");
        return -EINVAL;
    }
    uint32_t c = p->channels ? p->channels : vka_dataset_channels(p->dataset);
    if (c != 1 && c != 3) {
        vka_err("loader: channels must be 1 or 3, not %u", p->channels);
        return -EINVAL;
    }
    if (p->workers > 64) {
        vka_err("loader: %u workers; at most 64", p->workers);
        return -EINVAL;
    }
    if (p->count > vka_dataset_count(p->dataset)) {
        vka_err("loader: count %u: the dataset holds %u samples", p->count,
                vka_dataset_count(p->dataset));
        return -EINVAL;
    }
    int ret = vka_augment_check(&p->aug, c);
    if (ret)
        return ret;
    struct vka_shard shard = p->shard;
    shard.count = p->count ? p->count : vka_dataset_count(p->dataset);
    if (shard.nranks > 1 && shard.endless && p->epoch_batches) {
        vka_err("loader: endless shards have no epoch batches");
        return -EINVAL;
    }
    if (shard.nranks > 1 &&
        (!shard.window || shard.window % shard.nranks || shard.rank >= shard.nranks ||
         (!shard.endless && vka_shard_local(&shard) == 0))) {
        vka_err("loader: a batch of %u does not split over %u ranks%s", shard.window,
                shard.nranks, shard.window && shard.window % shard.nranks == 0
                ? " (an epoch leaves a rank no sample)" : "");
        return -EINVAL;
    }
    struct vka_loader *l = calloc(1, sizeof(*l));
    if (!l) {
        vka_err("loader: out of memory");
        return -ENOMEM;
    }
    l->p = *p;
    l->ds = p->dataset;
    l->count = p->count ? p->count : vka_dataset_count(l->ds);
    l->p.shard = shard;
    l->local = shard.nranks > 1 && !shard.endless ? vka_shard_local(&shard) : l->count;
    l->c = c;
    l->masks = vka_dataset_has_masks(l->ds);
    l->labels = vka_dataset_has_labels(l->ds);
    l->depth = p->prefetch ? p->prefetch : 2 * p->batch + p->workers;
    if (l->depth < p->workers + 1)
        l->depth = p->workers + 1;
    l->nworkers = p->workers;
    l->bad_pos = UINT64_MAX;
    ret = -ENOMEM;
    l->ids = calloc(p->batch, sizeof(uint32_t));
    l->blabels = calloc(p->batch, sizeof(int32_t));
    l->sync.l = l;
    l->sync.perm = malloc((size_t)l->count * sizeof(uint32_t));
    if (!l->ids || !l->blabels || !l->sync.perm)
        goto fail;
    if (pthread_mutex_init(&l->mu, NULL)) {
        free(l->ids);
        free(l->blabels);
        free(l->sync.perm);
        free(l);
        vka_err("loader: cannot make a mutex");
        return -ENOMEM;
    }
    pthread_cond_init(&l->ready_cv, NULL);
    pthread_cond_init(&l->space_cv, NULL);
    if (l->nworkers) {
        l->slots = calloc(l->depth, sizeof(*l->slots));
        l->workers = calloc(l->nworkers, sizeof(*l->workers));
        if (!l->slots || !l->workers) {
            l->nworkers = 0;
            goto fail_threads;
        }
        for (uint32_t i = 0; i < l->nworkers; i++) {
            l->workers[i].l = l;
            if (!(l->workers[i].perm = malloc((size_t)l->count * sizeof(uint32_t))))
                goto fail_threads;
        }
        for (uint32_t i = 0; i < l->nworkers; i++)
            if (pthread_create(&l->workers[i].th, NULL, worker_main, &l->workers[i])) {
                l->nworkers = i;
                vka_loader_destroy(&l);
                vka_err("loader: cannot start worker thread %u", i);
                return -EAGAIN;
            }
    }
    *out = l;
    return 0;
fail_threads:
    l->nworkers = 0;
    vka_loader_destroy(&l);
    vka_err("loader: out of memory");
    return ret;
fail:
    free(l->ids);
    free(l->blabels);
    free(l->sync.perm);
    free(l);
    vka_err("loader: out of memory");
    return ret;
}

void vka_loader_destroy(struct vka_loader **pl)
{
    if (!pl || !*pl)
        return;
    struct vka_loader *l = *pl;
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_broadcast(&l->space_cv);
    pthread_cond_broadcast(&l->ready_cv);
    pthread_mutex_unlock(&l->mu);
    for (uint32_t i = 0; i < l->nworkers; i++)
        pthread_join(l->workers[i].th, NULL);
    if (l->workers)
        for (uint32_t i = 0; i < l->p.workers; i++) {
            out_free(&l->workers[i].spare);
            free(l->workers[i].perm);
        }
    if (l->slots)
        for (uint32_t i = 0; i < l->depth; i++)
            out_free(&l->slots[i].o);
    free(l->slots);
    free(l->workers);
    out_free(&l->sync.spare);
    free(l->sync.perm);
    pthread_cond_destroy(&l->ready_cv);
    pthread_cond_destroy(&l->space_cv);
    pthread_mutex_destroy(&l->mu);
    free(l->bx);
    free(l->by);
    free(l->blabels);
    free(l->ids);
    free(l);
    *pl = NULL;
}

/* Copies sample k of the batch being assembled; the first fixes the batch's size. */
static int put(struct vka_loader *l, uint32_t k, uint32_t n, const struct out *o,
               struct vka_batch *b, char *err)
{
    if (k == 0) {
        b->c = o->c;
        b->h = o->h;
        b->w = o->w;
        size_t plane = (size_t)o->h * o->w;
        if (grow_f(&l->bx, &l->bxcap, n * plane * o->c) ||
            (l->masks && grow_i(&l->by, &l->bycap, n * plane))) {
            vka_seterr(err, "loader: out of memory for a batch of %u %ux%u samples", n, o->w,
                       o->h);
            return -ENOMEM;
        }
    } else if (o->h != b->h || o->w != b->w) {
        vka_seterr(err, "%s is %ux%u but %s, earlier in the same batch, is %ux%u: set a crop "
                   "size or use batches of 1", vka_dataset_name(l->ds, o->index), o->w, o->h,
                   vka_dataset_name(l->ds, l->ids[0]), b->w, b->h);
        return -EINVAL;
    }
    size_t plane = (size_t)o->h * o->w;
    memcpy(l->bx + (size_t)k * plane * o->c, o->x, plane * o->c * sizeof(float));
    if (l->masks)
        memcpy(l->by + (size_t)k * plane, o->y, plane * sizeof(int32_t));
    l->ids[k] = o->index;
    l->blabels[k] = o->label;
    return 0;
}

int vka_loader_next(struct vka_loader *l, uint32_t n, struct vka_batch *b)
{
    if (l->failed) {
        vka_err("%s", l->fail_msg);
        return l->failed;
    }
    if (n < 1 || n > l->p.batch) {
        vka_err("loader: asked for %u samples; 1..%u (the batch it was made for)", n,
                l->p.batch);
        return -EINVAL;
    }
    if (l->p.epoch_batches) {
        uint64_t left = l->local - l->take % l->local;
        n = left < n ? (uint32_t)left : n;
    }
    *b = (struct vka_batch){ .n = n, .pos = vka_loader_tell(l) };
    char err[VKA_ERRLEN] = "";
    int ret = 0;
    for (uint32_t k = 0; k < n && !ret; k++) {
        uint64_t g = l->take;
        if (!l->nworkers) {
            ret = make(l, &l->sync, g, &l->sync.spare, err);
            if (!ret)
                ret = put(l, k, n, &l->sync.spare, b, err);
            if (!ret)
                l->take++;
            continue;
        }
        struct slot *s = &l->slots[g % l->depth];
        pthread_mutex_lock(&l->mu);
        while (!(s->ready && s->pos == g))
            pthread_cond_wait(&l->ready_cv, &l->mu);
        pthread_mutex_unlock(&l->mu);
        ret = s->ret;
        if (ret)
            memcpy(err, s->err, sizeof(err));
        else
            ret = put(l, k, n, &s->o, b, err);
        pthread_mutex_lock(&l->mu);
        if (ret) {
            l->failed = ret;
        } else {
            s->ready = false;
            l->take++;
        }
        pthread_cond_broadcast(&l->space_cv);
        pthread_mutex_unlock(&l->mu);
    }
    if (ret) {
        pthread_mutex_lock(&l->mu);
        l->failed = ret;
        pthread_mutex_unlock(&l->mu);
        snprintf(l->fail_msg, sizeof(l->fail_msg), "%s", err);
        vka_err("%s", err);
        return ret;
    }
    b->x = l->bx;
    b->y = l->masks ? l->by : NULL;
    b->labels = l->labels ? l->blabels : NULL;
    b->ids = l->ids;
    b->epoch_end = stream_pos(l, l->take) % l->count == 0;
    return 0;
}

const struct vka_shard *vka_loader_shard(const struct vka_loader *l)
{
    return l->p.shard.nranks > 1 ? &l->p.shard : NULL;
}

struct vka_loader_pos vka_loader_tell(const struct vka_loader *l)
{
    uint64_t g = stream_pos(l, l->take);
    return (struct vka_loader_pos){ g / l->count, g % l->count };
}

int vka_loader_seek(struct vka_loader *l, struct vka_loader_pos pos)
{
    if (pos.index >= l->count || pos.epoch > UINT64_MAX / l->local - 1) {
        vka_err("loader: position (epoch %llu, index %llu) is outside a dataset of %u "
                "samples", (unsigned long long)pos.epoch, (unsigned long long)pos.index,
                l->count);
        return -EINVAL;
    }
    const struct vka_shard *s = &l->p.shard;
    uint64_t g = pos.epoch * l->count + pos.index, j = g;
    if (s->nranks > 1) {
        uint64_t at = s->endless ? g : pos.index, per = s->window / s->nranks;
        if (at % s->window) {
            vka_err("loader: position (epoch %llu, index %llu) is not the start of a window "
                    "of %u", (unsigned long long)pos.epoch, (unsigned long long)pos.index,
                    s->window);
            return -EINVAL;
        }
        j = s->endless ? g / s->window * per : pos.epoch * l->local + at / s->window * per;
    }
    pthread_mutex_lock(&l->mu);
    l->gen++;
    l->take = l->claim = j;
    if (l->slots)
        for (uint32_t i = 0; i < l->depth; i++)
            l->slots[i].ready = false;
    l->failed = 0;
    l->bad_pos = UINT64_MAX;
    pthread_cond_broadcast(&l->space_cv);
    pthread_mutex_unlock(&l->mu);
    return 0;
}
