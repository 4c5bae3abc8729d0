/* Shared by the Criterion tests: a context with the validation layer on (its message
 * count is checked at the end of every test), a seeded RNG whose seed is printed and
 * settable (VKACCUM_TEST_SEED), and NaN/guard helpers that catch unwritten and stray
 * elements. */
#ifndef VKA_TEST_COMMON_H
#define VKA_TEST_COMMON_H

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "log.h"
#include "safetensors.h"
#include "tensor.h"

/* Opens a context on the default device with validation on; fails the test if none. */
struct vka_ctx *test_ctx(void);
struct vka_ctx *test_ctx_params(const struct vka_ctx_params *params);
/* Asserts that the validation layer said nothing, then destroys the context. */
void test_ctx_done(struct vka_ctx **ctx);

/* Seeds from VKACCUM_TEST_SEED or the clock and prints the seed with the test's name. */
void test_seed(const char *name);
uint64_t test_rand_u64(void);
float test_rand_uniform(float lo, float hi);
uint32_t test_rand_range(uint32_t lo, uint32_t hi); /* inclusive */

/* A flat tensor in its own buffer, with GUARD elements of sentinel after it. */
#define TEST_GUARD 64
#define TEST_SENTINEL 12345.678f
struct vka_tensor test_flat_guarded(struct vka_ctx *ctx, uint64_t off, uint64_t n,
                                    const float *data);
/* Downloads the n elements and checks the guard; data may be NULL. */
void test_flat_check_guard(const struct vka_tensor *t, float *data);

/* An NHWC4 activation (N,C,H,W) in its own buffer. With nchw NULL every stored element,
 * padding channels included, is NaN (so an unwritten output element fails a check). */
struct vka_tensor test_act(struct vka_ctx *ctx, uint32_t n, uint32_t c, uint32_t h,
                           uint32_t w, const float *nchw);
/* Downloads to NCHW and asserts that the padding channels hold 0 (writes must zero them). */
void test_act_read(const struct vka_tensor *t, float *nchw);
/* A FLAT f32 tensor (n elements) in its own buffer, from data (NULL: NaN). */
struct vka_tensor test_flat(struct vka_ctx *ctx, uint64_t n, const float *data);

float *test_rand_floats(size_t n, float lo, float hi); /* malloc'ed */
double *test_to_double(const float *a, size_t n);     /* malloc'ed */

/* Asserts |got - ref| <= atol + rtol * |ref| element by element, naming what and the
 * first index that fails, with both values. */
void test_assert_close(const char *what, const float *got, const double *ref, size_t n,
                       double atol, double rtol);

/* Writes a copy of the safetensors file src to dst (metadata kept) with tensor `name`
 * replaced by (dtype, ndim, shape, data): a file as an outside mutation leaves it. */
void test_st_replace(const char *src, const char *dst, const char *name,
                     enum vka_st_dtype dtype, uint32_t ndim, const uint64_t *shape,
                     const void *data);

/* A new folder /tmp/PREFIX_XXXXXX (malloc'd); test_tmpdir_remove deletes it with what it
 * holds and frees the name. */
char *test_tmpdir(const char *prefix);
void test_tmpdir_remove(char **dir);
/* printf into one of 8 rotating static buffers: paths for a few calls at a time. */
const char *test_path(const char *fmt, ...) VKA_PRINTF(1, 2);

/* Runs `PREFIX $VKACCUM_BIN ARGS` in sh (prefix: shell commands ending in "exec ", or
 * "") with stdout and stderr captured into out (size bytes, terminated); returns the
 * exit status, or -1 when a signal ended it. */
int test_vkaccum(const char *prefix, const char *args, char *out, size_t size);

/* The Python of the parity-style checks: $VKACCUM_PYTHON, else Debian's /usr/bin/python3
 * (where apt puts python3-torch, python3-onnx, python3-numpy). */
const char *test_python(void);

/* Asserts that two safetensors files hold the same tensors, bit for bit. */
void test_st_assert_equal(const char *a, const char *b);

/* A float's bits and back (the tests that check encodings bit for bit). */
static inline uint32_t test_float_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}

static inline float test_bits_float(uint32_t b)
{
    float f;
    memcpy(&f, &b, 4);
    return f;
}

/* Ranks simulated by threads (the data-parallel tests): what an MPI allreduce of the
 * trainers' exact accumulators does, behind a barrier. Every rank passes its words and
 * gets back the sum of all ranks' (vka_exact_add, in rank order); calls counts each
 * rank's calls, mismatch is set when ranks pass different element counts. */
struct test_allreduce {
    uint32_t nranks;
    pthread_barrier_t bar;
    uint32_t *words[4];
    uint64_t n[4];
    uint32_t calls[4];
    bool mismatch;
};
void test_allreduce_init(struct test_allreduce *a, uint32_t nranks);
/* fn on each of n items (item_size bytes apart) in a thread of its own; returns when all
 * are done. */
void test_threads(void *(*fn)(void *), void *items, size_t item_size, uint32_t n);
void test_allreduce_destroy(struct test_allreduce *a);
int test_allreduce_exact(struct test_allreduce *a, uint32_t rank, uint32_t *words,
                         uint64_t nelems);
/* A simulated rank's n parameters against one process's: the same bits with the combine,
 * different without it (so the comparison can fail). */
void test_rank_params(const float *got, const float *ref, size_t n, bool combine,
                      uint32_t nranks, uint32_t rank);

/* Runs recorded work and asserts it succeeded. */
void test_run(struct vka_cmd *cmd);

#endif
