/* Test helpers; see common.h. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "exact.h"

static uint64_t rng;

void test_seed(const char *name)
{
    const char *s = getenv("VKACCUM_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)clock();
    rng = seed ? seed : 1;
    cr_log_info("%s: seed %llu (set VKACCUM_TEST_SEED to repeat)", name,
                (unsigned long long)seed);
    fprintf(stderr, "%s: VKACCUM_TEST_SEED=%llu\n", name, (unsigned long long)seed);
}

uint64_t test_rand_u64(void)
{
    /* xorshift64* */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dull;
}

float test_rand_uniform(float lo, float hi)
{
    return lo + (hi - lo) * (float)((test_rand_u64() >> 40) * (1.0 / (1ull << 24)));
}

uint32_t test_rand_range(uint32_t lo, uint32_t hi)
{
    return lo + (uint32_t)(test_rand_u64() % ((uint64_t)hi - lo + 1));
}

struct vka_ctx *test_ctx_params(const struct vka_ctx_params *params)
{
    struct vka_ctx *ctx = NULL;
    int ret = vka_ctx_create(params, &ctx);
    cr_assert_eq(ret, 0, "vka_ctx_create failed (%d): %s", ret, vka_last_error());
    cr_assert(ctx->validation, "the validation layer is off");
    return ctx;
}

struct vka_ctx *test_ctx(void)
{
    return test_ctx_params(&(struct vka_ctx_params){ .validation = 1 });
}

void test_ctx_done(struct vka_ctx **ctx)
{
    unsigned n = vka_ctx_validation_count(*ctx), before = vka_validation_total();
    uint32_t live = (*ctx)->mem.live_buffers - ((*ctx)->staging != NULL);
    vka_ctx_destroy(ctx);
    cr_assert_eq(n, 0, "the validation layer reported %u messages", n);
    /* leaked objects are reported while the device is destroyed */
    cr_assert_eq(vka_validation_total(), before, "the validation layer reported %u messages "
                 "while the context was destroyed", vka_validation_total() - before);
    cr_assert_eq(live, 0, "%u buffers leaked", live);
}

struct vka_tensor test_flat_guarded(struct vka_ctx *ctx, uint64_t off, uint64_t n,
                                    const float *data)
{
    struct vka_buf *buf = NULL;
    uint64_t total = off + n + TEST_GUARD;
    int ret = vka_buf_create(ctx, &(struct vka_buf_params){ .size = total * 4 }, &buf);
    cr_assert_eq(ret, 0, "%s", vka_last_error());
    float *init = malloc(total * 4);
    cr_assert(init);
    for (uint64_t i = 0; i < total; i++)
        init[i] = i >= off && i < off + n && data ? data[i - off] : TEST_SENTINEL;
    cr_assert_eq(vka_buf_upload(buf, 0, init, total * 4), 0, "%s", vka_last_error());
    free(init);
    struct vka_tensor t = vka_tensor_flat(buf, off, n);
    t.owns_buf = true;
    return t;
}

void test_flat_check_guard(const struct vka_tensor *t, float *data)
{
    uint64_t n = vka_tensor_stored(t), total = t->off + n + TEST_GUARD;
    float *all = malloc(total * 4);
    cr_assert(all);
    cr_assert_eq(vka_buf_download(t->buf, 0, all, total * 4), 0, "%s", vka_last_error());
    for (uint64_t i = 0; i < total; i++)
        if (i < t->off || i >= t->off + n)
            cr_assert_eq(all[i], TEST_SENTINEL, "stray write at element %llu (tensor "
                         "%llu..%llu)", (unsigned long long)i, (unsigned long long)t->off,
                         (unsigned long long)(t->off + n));
    if (data)
        memcpy(data, all + t->off, n * 4);
    free(all);
}

void test_run(struct vka_cmd *cmd)
{
    int ret = vka_cmd_run(cmd);
    cr_assert_eq(ret, 0, "submission failed (%d): %s", ret, vka_last_error());
}

struct vka_tensor test_act(struct vka_ctx *ctx, uint32_t n, uint32_t c, uint32_t h,
                           uint32_t w, const float *nchw)
{
    struct vka_tensor t;
    int ret = vka_tensor_create(ctx, &(struct vka_tensor_params){
        .n = n, .c = c, .h = h, .w = w, .layout = VKA_LAYOUT_NHWC4,
        .cat = VKA_MEM_ACTIVATIONS }, &t);
    cr_assert_eq(ret, 0, "%s", vka_last_error());
    if (nchw) {
        cr_assert_eq(vka_tensor_upload(&t, nchw), 0, "%s", vka_last_error());
    } else {
        uint64_t m = vka_tensor_stored(&t);
        float *nan = malloc((m ? m : 1) * 4);
        for (uint64_t i = 0; i < m; i++)
            nan[i] = NAN;
        cr_assert_eq(vka_buf_upload(t.buf, 0, nan, m * 4), 0, "%s", vka_last_error());
        free(nan);
    }
    return t;
}

void test_act_read(const struct vka_tensor *t, float *nchw)
{
    uint64_t m = vka_tensor_stored(t);
    float *raw = malloc((m ? m : 1) * 4);
    cr_assert_eq(vka_buf_download(t->buf, t->off * 4, raw, m * 4), 0, "%s", vka_last_error());
    for (uint64_t i = 0; i < m; i++)
        if (i % t->cs >= t->c)
            cr_assert_eq(raw[i], 0.0f, "padding channel %u of pixel %llu holds %g, not 0",
                         (unsigned)(i % t->cs), (unsigned long long)(i / t->cs), raw[i]);
    vka_nhwc4_to_nchw(raw, nchw, t->n, t->c, t->h, t->w);
    free(raw);
}

struct vka_tensor test_flat(struct vka_ctx *ctx, uint64_t n, const float *data)
{
    struct vka_tensor t;
    int ret = vka_tensor_create(ctx, &(struct vka_tensor_params){
        .n = (uint32_t)n, .c = 1, .h = 1, .w = 1, .layout = VKA_LAYOUT_FLAT,
        .cat = VKA_MEM_OTHER }, &t);
    cr_assert_eq(ret, 0, "%s", vka_last_error());
    float *init = malloc((n ? n : 1) * 4);
    for (uint64_t i = 0; i < n; i++)
        init[i] = data ? data[i] : NAN;
    cr_assert_eq(vka_tensor_upload(&t, init), 0, "%s", vka_last_error());
    free(init);
    return t;
}

float *test_rand_floats(size_t n, float lo, float hi)
{
    float *a = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++)
        a[i] = test_rand_uniform(lo, hi);
    return a;
}

double *test_to_double(const float *a, size_t n)
{
    double *d = malloc((n ? n : 1) * sizeof(double));
    for (size_t i = 0; i < n; i++)
        d[i] = a[i];
    return d;
}

void test_assert_close(const char *what, const float *got, const double *ref, size_t n,
                       double atol, double rtol)
{
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - ref[i]);
        if (!(err <= atol + rtol * fabs(ref[i])))
            cr_assert_fail("%s: element %zu of %zu: got %.9g, reference %.9g (|diff| %.3g > "
                           "atol %.3g + rtol %.3g * |ref|)", what, i, n, got[i], ref[i], err,
                           atol, rtol);
    }
}

void test_st_replace(const char *src, const char *dst, const char *name,
                     enum vka_st_dtype dtype, uint32_t ndim, const uint64_t *shape,
                     const void *data)
{
    struct vka_st_file *f;
    cr_assert_eq(vka_st_read(src, &f), 0, "%s", vka_last_error());
    struct vka_st_tensor *t = calloc(f->n_tensors, sizeof(*t));
    bool found = false;
    for (size_t i = 0; i < f->n_tensors; i++) {
        t[i] = f->tensors[i];
        if (!strcmp(t[i].name, name)) {
            t[i].dtype = dtype;
            t[i].ndim = ndim;
            if (ndim)
                memcpy(t[i].shape, shape, ndim * sizeof(uint64_t));
            t[i].data = data;
            found = true;
        }
    }
    cr_assert(found, "%s holds no tensor %s", src, name);
    cr_assert_eq(vka_st_write(dst, &(struct vka_st_write_params){
                     .tensors = t, .n_tensors = f->n_tensors, .meta = f->meta,
                     .n_meta = f->n_meta }), 0, "%s", vka_last_error());
    free(t);
    vka_st_file_destroy(&f);
}

int test_vkaccum(const char *prefix, const char *args, char *out, size_t size)
{
    const char *bin = getenv("VKACCUM_BIN");
    cr_assert(bin, "VKACCUM_BIN is not set (meson sets it)");
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "%s%s %s 2>&1", prefix, bin, args);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

const char *test_python(void)
{
    const char *p = getenv("VKACCUM_PYTHON");
    return p && *p ? p : "/usr/bin/python3";
}

void test_st_assert_equal(const char *a, const char *b)
{
    struct vka_st_file *fa, *fb;
    cr_assert_eq(vka_st_read(a, &fa), 0, "%s", vka_last_error());
    cr_assert_eq(vka_st_read(b, &fb), 0, "%s", vka_last_error());
    cr_assert_eq(fa->n_tensors, fb->n_tensors, "%s holds %zu tensors, %s %zu", a, fa->n_tensors,
                 b, fb->n_tensors);
    for (size_t i = 0; i < fa->n_tensors; i++) {
        const struct vka_st_tensor *x = &fa->tensors[i], *y = vka_st_find(fb, x->name);
        cr_assert(y, "%s holds no %s", b, x->name);
        uint64_t nx = 0, ny = 0;
        vka_st_nbytes(x, &nx);
        vka_st_nbytes(y, &ny);
        cr_assert(x->dtype == y->dtype && x->ndim == y->ndim && nx == ny &&
                  !memcmp(x->shape, y->shape, x->ndim * sizeof(uint64_t)),
                  "%s differs in dtype or shape", x->name);
        cr_assert_eq(memcmp(x->data, y->data, nx), 0, "%s differs between %s and %s", x->name,
                     a, b);
    }
    vka_st_file_destroy(&fa);
    vka_st_file_destroy(&fb);
}

char *test_tmpdir(const char *prefix)
{
    char *d = malloc(strlen(prefix) + 16);
    cr_assert(d);
    sprintf(d, "/tmp/%s_XXXXXX", prefix);
    cr_assert_not_null(mkdtemp(d), "mkdtemp: %s", strerror(errno));
    return d;
}

void test_tmpdir_remove(char **dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", *dir);
    cr_assert_eq(system(cmd), 0);
    free(*dir);
    *dir = NULL;
}

const char *test_path(const char *fmt, ...)
{
    static char buf[8][512];
    static int k;
    char *b = buf[k++ % 8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, 512, fmt, ap);
    va_end(ap);
    return b;
}

void test_allreduce_init(struct test_allreduce *a, uint32_t nranks)
{
    cr_assert(nranks >= 1 && nranks <= 4);
    *a = (struct test_allreduce){ .nranks = nranks };
    pthread_barrier_init(&a->bar, NULL, nranks);
}

void test_allreduce_destroy(struct test_allreduce *a)
{
    pthread_barrier_destroy(&a->bar);
}

int test_allreduce_exact(struct test_allreduce *a, uint32_t rank, uint32_t *words,
                         uint64_t nelems)
{
    a->words[rank] = words;
    a->n[rank] = nelems;
    a->calls[rank]++;
    pthread_barrier_wait(&a->bar);
    uint32_t *sum = calloc(nelems * 4, 4);
    if (!sum)
        return -ENOMEM;
    for (uint32_t r = 0; r < a->nranks; r++) {
        if (a->n[r] != nelems)
            a->mismatch = true;
        else
            vka_exact_add(sum, a->words[r], nelems);
    }
    pthread_barrier_wait(&a->bar); /* every rank has read every rank's words */
    memcpy(words, sum, nelems * 16);
    free(sum);
    return 0;
}

void test_threads(void *(*fn)(void *), void *items, size_t item_size, uint32_t n)
{
    pthread_t th[8];
    cr_assert(n <= 8);
    for (uint32_t i = 0; i < n; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, fn, (char *)items + i * item_size), 0);
    for (uint32_t i = 0; i < n; i++)
        pthread_join(th[i], NULL);
}

void test_rank_params(const float *got, const float *ref, size_t n, bool combine,
                      uint32_t nranks, uint32_t rank)
{
    if (combine)
        cr_assert_eq(memcmp(got, ref, n * 4), 0, "%u ranks, rank %u: the parameters differ "
                     "from one process's", nranks, rank);
    else
        cr_assert_neq(memcmp(got, ref, n * 4), 0, "rank %u without the combine matched one "
                      "process: the check cannot fail", rank);
}
