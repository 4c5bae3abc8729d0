/* fill, scale, axpy and sum against plain C, on both load paths, with outputs pre-filled
 * with NaN (an unwritten element fails), guard elements after every tensor (a stray
 * write fails), tensors at unaligned offsets, and the chunked path for tensors longer
 * than one storage binding. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ops/basic.h"

/* 0, 1, small odd sizes, primes, and a prime past 2^20 */
static const uint64_t sizes[] = { 0, 1, 2, 3, 5, 7, 13, 64, 257, 1021, 4099, 65537, 1048583 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

/* A context on a load path, with bindings of at most max_binding bytes (0: the
 * device's). */
static struct vka_ctx *ctx_for(const char *load, uint64_t max_binding)
{
    enum vka_load_path path = !strcmp(load, "texel") ? VKA_LOAD_TEXEL : VKA_LOAD_STORAGE;
    struct vka_ctx *ctx = test_ctx_params(&(struct vka_ctx_params){
        .validation = 1, .load = path, .max_binding = max_binding });
    cr_assert_eq(ctx->profile.load, path);
    cr_assert(!max_binding || ctx->profile.max_binding == max_binding);
    return ctx;
}

static float *rand_array(uint64_t n)
{
    float *a = malloc((n ? n : 1) * 4);
    for (uint64_t i = 0; i < n; i++)
        a[i] = test_rand_uniform(-2, 2);
    return a;
}

static void check_fill_scale(const char *load, uint64_t max_binding)
{
    struct vka_ctx *ctx = ctx_for(load, max_binding);
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    for (size_t s = 0; s < NSIZES; s++) {
        uint64_t n = sizes[s], off = test_rand_range(0, 7);
        float *y = rand_array(n), *out = malloc((n ? n : 1) * 4);
        for (uint64_t i = 0; i < n / 3; i++)
            y[i] = NAN; /* fill must overwrite them */
        struct vka_tensor ty = test_flat_guarded(ctx, off, n, y);
        const float v = test_rand_uniform(-3, 3);
        cr_assert_eq(vka_cmd_begin(cmd), 0);
        cr_assert_eq(vka_fill(cmd, &ty, v), 0, "%s", vka_last_error());
        test_run(cmd);
        test_flat_check_guard(&ty, out);
        for (uint64_t i = 0; i < n; i++)
            cr_assert_eq(out[i], v, "fill n=%llu off=%llu: [%llu] = %g", (unsigned long long)n,
                         (unsigned long long)off, (unsigned long long)i, out[i]);
        vka_tensor_destroy(&ty);

        /* scale: one correctly rounded float product, so bit-exact against C */
        for (uint64_t i = 0; i < n; i++)
            y[i] = test_rand_uniform(-2, 2);
        ty = test_flat_guarded(ctx, off, n, y);
        const float a = test_rand_uniform(-3, 3);
        cr_assert_eq(vka_cmd_begin(cmd), 0);
        cr_assert_eq(vka_scale(cmd, &ty, a), 0, "%s", vka_last_error());
        test_run(cmd);
        test_flat_check_guard(&ty, out);
        for (uint64_t i = 0; i < n; i++)
            cr_assert_eq(out[i], a * y[i], "scale n=%llu: [%llu] %g != %g",
                         (unsigned long long)n, (unsigned long long)i, out[i], a * y[i]);
        vka_tensor_destroy(&ty);
        free(y);
        free(out);
    }
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

static void check_axpy(const char *load, uint64_t max_binding)
{
    struct vka_ctx *ctx = ctx_for(load, max_binding);
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    for (size_t s = 0; s < NSIZES; s++) {
        uint64_t n = sizes[s];
        uint64_t xoff = 4 * test_rand_range(0, 3), yoff = test_rand_range(0, 7);
        float *x = rand_array(n), *y = rand_array(n), *out = malloc((n ? n : 1) * 4);
        struct vka_tensor tx = test_flat_guarded(ctx, xoff, n, x);
        struct vka_tensor ty = test_flat_guarded(ctx, yoff, n, y);
        const float a = test_rand_uniform(-3, 3);
        cr_assert_eq(vka_cmd_begin(cmd), 0);
        cr_assert_eq(vka_axpy(cmd, a, &tx, &ty), 0, "%s", vka_last_error());
        test_run(cmd);
        test_flat_check_guard(&ty, out);
        test_flat_check_guard(&tx, NULL);
        for (uint64_t i = 0; i < n; i++) {
            double exact = (double)a * x[i] + y[i];
            /* fused: one rounding of the result; unfused: one of a*x and one of the sum,
             * so half an ulp of each, bounded by 2^-24 relative each */
            double tol = ldexp(fabs((double)a * x[i]) + fabs(exact), -24) + 1e-38;
            cr_assert_leq(fabs(out[i] - exact), tol, "axpy n=%llu [%llu]: %.9g vs %.9g",
                          (unsigned long long)n, (unsigned long long)i, out[i], exact);
        }
        vka_tensor_destroy(&tx);
        vka_tensor_destroy(&ty);
        free(x);
        free(y);
        free(out);
    }
    /* refusals: mismatched lengths, an x offset that is not a whole vec4 */
    struct vka_tensor a = test_flat_guarded(ctx, 0, 10, NULL);
    struct vka_tensor b = test_flat_guarded(ctx, 1, 11, NULL);
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    cr_assert_lt(vka_axpy(cmd, 1.0f, &a, &b), 0);
    cr_assert_lt(vka_axpy(cmd, 1.0f, &b, &b), 0);
    cr_assert(strstr(vka_last_error(), "not a multiple of 4"), "%s", vka_last_error());
    test_run(cmd);
    vka_tensor_destroy(&a);
    vka_tensor_destroy(&b);
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

static float device_sum(struct vka_ctx *ctx, struct vka_cmd *cmd, const struct vka_tensor *tx,
                        struct vka_tensor *tout)
{
    float s;
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    cr_assert_eq(vka_sum(cmd, tx, tout), 0, "%s", vka_last_error());
    test_run(cmd);
    test_flat_check_guard(tout, &s);
    (void)ctx;
    return s;
}

static void check_sum(const char *load)
{
    struct vka_ctx *ctx = ctx_for(load, 0), *chunked = ctx_for(load, 8192);
    struct vka_cmd *cmd, *cmd8;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    cr_assert_eq(vka_cmd_create(chunked, NULL, &cmd8), 0);
    for (size_t s = 0; s < NSIZES; s++) {
        uint64_t n = sizes[s], xoff = 4 * test_rand_range(0, 3);
        float *x = rand_array(n);
        struct vka_tensor tx = test_flat_guarded(ctx, xoff, n, x);
        float nan = NAN;
        struct vka_tensor tout = test_flat_guarded(ctx, test_rand_range(0, 5), 1, &nan);
        float got = device_sum(ctx, cmd, &tx, &tout);
        double exact = 0, absum = 0;
        for (uint64_t i = 0; i < n; i++) {
            exact += x[i];
            absum += fabs(x[i]);
        }
        /* a tree of depth d = ceil(log2 n) + 2 (vec4 lanes, items, workgroup, passes)
         * rounds each partial at most d times: |err| <= d * 2^-24 * sum |x| */
        double d = ceil(log2((double)n + 1)) + 2;
        cr_assert_leq(fabs(got - exact), d * ldexp(absum, -24), "sum n=%llu: %.9g vs %.9g",
                      (unsigned long long)n, got, exact);
        /* bitwise the same on a second run */
        float again = device_sum(ctx, cmd, &tx, &tout);
        cr_assert_eq(memcmp(&got, &again, 4), 0, "sum n=%llu changed between runs: %a %a",
                     (unsigned long long)n, got, again);
        /* and the same when the tensor is split into 8 KiB bindings */
        struct vka_tensor tx8 = test_flat_guarded(chunked, xoff, n, x);
        struct vka_tensor tout8 = test_flat_guarded(chunked, test_rand_range(0, 5), 1, &nan);
        float split = device_sum(chunked, cmd8, &tx8, &tout8);
        cr_assert_eq(memcmp(&got, &split, 4), 0, "sum n=%llu differs when chunked: %a %a",
                     (unsigned long long)n, got, split);
        vka_tensor_destroy(&tx);
        vka_tensor_destroy(&tout);
        vka_tensor_destroy(&tx8);
        vka_tensor_destroy(&tout8);
        free(x);
    }
    vka_cmd_destroy(&cmd);
    vka_cmd_destroy(&cmd8);
    test_ctx_done(&ctx);
    test_ctx_done(&chunked);
}

Test(basic, fill_scale_texel) { test_seed("fill_scale_texel"); check_fill_scale("texel", 0); }
Test(basic, fill_scale_storage) { test_seed("fill_scale_storage"); check_fill_scale("storage", 0); }
Test(basic, fill_scale_chunked) { test_seed("fill_scale_chunked"); check_fill_scale("storage", 8192); }
Test(basic, axpy_texel) { test_seed("axpy_texel"); check_axpy("texel", 0); }
Test(basic, axpy_storage) { test_seed("axpy_storage"); check_axpy("storage", 0); }
Test(basic, axpy_chunked_texel) { test_seed("axpy_chunked_texel"); check_axpy("texel", 8192); }
Test(basic, axpy_chunked_storage) { test_seed("axpy_chunked_storage"); check_axpy("storage", 8192); }
Test(basic, sum_texel) { test_seed("sum_texel"); check_sum("texel"); }
Test(basic, sum_storage) { test_seed("sum_storage"); check_sum("storage"); }
