/* Exact accumulation (exact.h): the C reference against independent computations, and
 * the kernels (shaders/exact.comp, include/exact.glsl) against the C reference bit for
 * bit, on both load paths.
 *
 * What each test catches:
 *   round_trip      a conversion that truncates instead of rounding to nearest even, a
 *                   wrong subnormal exponent, a sign error, a lost special class, or a
 *                   range test off by one binade (2^31 must flag, just below must not)
 *   order_free      an addition whose carries or flags depend on the order (the
 *                   per-addition overflow test of the first design failed this: see
 *                   range_order)
 *   range_order     out-of-range detected per addition (order-dependent) instead of
 *                   from the total
 *   rounding        a to_float that is not correctly rounded (checked against a
 *                   big-integer reference that picks the nearest float by exact integer
 *                   distances, ties to even)
 *   gpu_*           the GLSL helpers differing from the C reference in any word */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "exact.h"

__extension__ typedef __int128 i128;
__extension__ typedef unsigned __int128 u128;

/* The exact element's integer (120 bits, sign-extended from E) as an i128. */
static i128 ival(const uint32_t e[4])
{
    uint64_t lo = (uint64_t)e[1] << 32 | e[0];
    int64_t hi = (int64_t)(int32_t)(e[3] & 0xffffff00u) >> 8; /* E, signed 24 bits */
    hi = (int64_t)((uint64_t)hi << 32) | e[2];
    return (i128)((u128)(uint64_t)hi << 64 | lo);
}

/* round(v * 2^64) to nearest even, in long double (exact: a float's 24 bits fit) */
static long double scaled_rne(float v)
{
    return rintl(ldexpl((long double)v, 64));
}

/* A value of a random class: mostly normals over many binades, some subnormals, tiny
 * values that round, and numbers near the range's edge. */
static float rand_value(void)
{
    uint32_t k = test_rand_range(0, 99);
    float sign = test_rand_range(0, 1) ? -1.0f : 1.0f;
    if (k < 70)
        return sign * ldexpf(test_rand_uniform(1, 2), (int)test_rand_range(0, 100) - 70);
    if (k < 80)
        return sign * test_bits_float(test_rand_range(1, 0x7fffff)); /* subnormal */
    if (k < 90)
        return sign * ldexpf(test_rand_uniform(1, 2), (int)test_rand_range(0, 6) - 68);
    return sign * ldexpf(test_rand_uniform(1, 2), (int)test_rand_range(20, 28));
}

Test(exact, round_trip)
{
    test_seed("exact.round_trip");
    uint32_t e[4];
    /* every finite in-range float: to_float(from_float(v)) = RNE(v * 2^64) * 2^-64 */
    for (int i = 0; i < 200000; i++) {
        float v = i < 1000 ? test_bits_float(test_rand_range(0, 0x4effffff)) * (i & 1 ? -1.0f : 1.0f)
                           : rand_value();
        vka_exact_from_float(v, e);
        cr_assert(!vka_exact_out_of_range(e), "%a flagged out of range", (double)v);
        cr_assert(ival(e) == (i128)scaled_rne(v), "from_float(%a): wrong integer", (double)v);
        float want = (float)ldexpl(scaled_rne(v), -64), got = vka_exact_to_float(e);
        if (want == 0)
            want = 0.0f; /* -0 comes back as +0 */
        cr_assert_eq(test_float_bits(got), test_float_bits(want), "round trip of %a: %a, want %a", (double)v,
                     (double)got, (double)want);
    }
    /* the edges: 2^-64 exact, 2^-65 ties to 0, 1.5 * 2^-65 rounds up, 3 * 2^-66 to 2^-64 */
    const float tiny[][2] = { { 0x1p-64f, 0x1p-64f }, { 0x1p-65f, 0 }, { 0x1.8p-65f, 0x1p-64f },
                              { 0x1.8p-64f, 0x1p-63f }, { 0x1.4p-63f, 0x1p-63f },
                              { 0x1p-149f, 0 }, { -0x1.8p-65f, -0x1p-64f } };
    for (size_t i = 0; i < sizeof(tiny) / sizeof(tiny[0]); i++) {
        vka_exact_from_float(tiny[i][0], e);
        cr_assert_eq(test_float_bits(vka_exact_to_float(e)), test_float_bits(tiny[i][1] == 0 ? 0.0f : tiny[i][1]),
                     "%a -> %a, want %a", (double)tiny[i][0], (double)vka_exact_to_float(e),
                     (double)tiny[i][1]);
    }
    /* the range: below 2^31 exact, 2^31 and above (and -2^31) out of range: NaN */
    const float big_ok[] = { 0x1.fffffep30f, -0x1.fffffep30f, 1e9f, -1.5e9f };
    for (size_t i = 0; i < 4; i++) {
        vka_exact_from_float(big_ok[i], e);
        cr_assert_eq(test_float_bits(vka_exact_to_float(e)), test_float_bits(big_ok[i]));
    }
    const float big_bad[] = { 0x1p31f, -0x1p31f, 3e38f, -1e10f };
    for (size_t i = 0; i < 4; i++) {
        vka_exact_from_float(big_bad[i], e);
        cr_assert(e[3] & VKA_EXACT_RANGE);
        cr_assert(vka_exact_out_of_range(e));
        cr_assert(isnan(vka_exact_to_float(e)), "%a must resolve to NaN", (double)big_bad[i]);
    }
    /* specials, and what they do to a sum */
    uint32_t a[4], b[4];
    vka_exact_from_float(NAN, a);
    cr_assert(isnan(vka_exact_to_float(a)));
    vka_exact_from_float(INFINITY, a);
    cr_assert_eq(vka_exact_to_float(a), INFINITY);
    vka_exact_from_float(1.0f, b);
    vka_exact_add(a, b, 1);
    cr_assert_eq(vka_exact_to_float(a), INFINITY, "inf + 1");
    vka_exact_from_float(-INFINITY, b);
    cr_assert_eq(vka_exact_to_float(b), -INFINITY);
    vka_exact_add(a, b, 1);
    cr_assert(isnan(vka_exact_to_float(a)), "inf + -inf");
    vka_exact_from_float(-2.5f, a);
    vka_exact_from_float(NAN, b);
    vka_exact_add(a, b, 1);
    cr_assert(isnan(vka_exact_to_float(a)), "-2.5 + NaN");
    vka_exact_from_float(-0.0f, a);
    cr_assert_eq(a[0] | a[1] | a[2] | a[3], 0, "-0 is the zero element");
}

/* sum of vals[idx[i]] for i in [lo, hi) */
static void sum_range(const uint32_t *elems, const uint32_t *idx, uint32_t lo, uint32_t hi,
                      uint32_t out[4])
{
    memset(out, 0, 16);
    for (uint32_t i = lo; i < hi; i++)
        vka_exact_add(out, elems + 4 * idx[i], 1);
}

Test(exact, order_free)
{
    test_seed("exact.order_free");
    enum { N = 300 };
    uint32_t elems[4 * N], idx[N], ref[4], got[4];
    for (int trial = 0; trial < 20; trial++) {
        for (uint32_t i = 0; i < N; i++) {
            float v = rand_value();
            if (trial % 5 == 4 && i % 37 == 0) /* a few specials in some trials */
                v = i % 3 == 0 ? INFINITY : i % 3 == 1 ? -INFINITY : 0x1p31f;
            vka_exact_from_float(v, elems + 4 * i);
            idx[i] = i;
        }
        sum_range(elems, idx, 0, N, ref);
        for (int perm = 0; perm < 30; perm++) {
            for (uint32_t i = N - 1; i > 0; i--) { /* Fisher-Yates */
                uint32_t j = test_rand_range(0, i), t = idx[i];
                idx[i] = idx[j];
                idx[j] = t;
            }
            /* a random partition into contiguous parts of the permuted order, each summed
             * from zero (a rank's local sum), then the parts added in a random order */
            uint32_t cuts[9], nc = test_rand_range(1, 8);
            cuts[0] = 0;
            for (uint32_t c = 1; c < nc; c++)
                cuts[c] = test_rand_range(0, N);
            cuts[nc] = N;
            for (uint32_t c = 1; c < nc; c++) /* sort the inner cuts */
                for (uint32_t d = c + 1; d < nc; d++)
                    if (cuts[d] < cuts[c]) {
                        uint32_t t = cuts[c];
                        cuts[c] = cuts[d];
                        cuts[d] = t;
                    }
            uint32_t parts[4 * 8];
            for (uint32_t c = 0; c < nc; c++)
                sum_range(elems, idx, cuts[c], cuts[c + 1], parts + 4 * c);
            memset(got, 0, 16);
            for (uint32_t c = nc; c-- > 0;)
                vka_exact_add(got, parts + 4 * c, 1);
            cr_assert(!memcmp(got, ref, 16), "trial %d permutation %d (%u parts): %08x %08x "
                      "%08x %08x, in order %08x %08x %08x %08x", trial, perm, nc, got[0],
                      got[1], got[2], got[3], ref[0], ref[1], ref[2], ref[3]);
        }
    }
}

Test(exact, range_order)
{
    /* (a + a) + -a and (a + -a) + a: the first passes 2^31 on the way, the total does
     * not; and 3a is out of range however it is added */
    const float av = 0x1.ep30f; /* 1.875 * 2^30 */
    uint32_t a[4], na[4], s1[4] = { 0 }, s2[4] = { 0 };
    vka_exact_from_float(av, a);
    vka_exact_from_float(-av, na);
    vka_exact_add(s1, a, 1);
    vka_exact_add(s1, a, 1);
    vka_exact_add(s1, na, 1);
    vka_exact_add(s2, a, 1);
    vka_exact_add(s2, na, 1);
    vka_exact_add(s2, a, 1);
    cr_assert(!memcmp(s1, s2, 16));
    cr_assert_eq(vka_exact_to_float(s1), av);
    vka_exact_add(s1, a, 1);
    vka_exact_add(s1, a, 1);
    cr_assert(vka_exact_out_of_range(s1));
    cr_assert(isnan(vka_exact_to_float(s1)));
    /* the same on the negative side */
    memset(s1, 0, 16);
    for (int i = 0; i < 3; i++)
        vka_exact_add(s1, na, 1);
    cr_assert(isnan(vka_exact_to_float(s1)));
}

/* The float nearest to S * 2^-64 (ties to even), found by exact integer distances
 * between S and the candidates around a long double estimate: independent of the
 * shift-and-round code in exact.c. */
static float nearest(i128 S)
{
    float est = (float)ldexpl((long double)S, -64);
    float best = est;
    i128 bestd = -1;
    float cand[5] = { nextafterf(nextafterf(est, -INFINITY), -INFINITY),
                      nextafterf(est, -INFINITY), est, nextafterf(est, INFINITY),
                      nextafterf(nextafterf(est, INFINITY), INFINITY) };
    for (int i = 0; i < 5; i++) {
        /* cand * 2^64 is an integer for |cand| >= 2^-41 and candidates near a sum of
         * multiples of 2^-64; tiny sums are exact anyway */
        long double c = ldexpl((long double)cand[i], 64);
        i128 ci = (i128)c;
        if ((long double)ci != c)
            continue;
        i128 d = S - ci;
        if (d < 0)
            d = -d;
        if (bestd < 0 || d < bestd || (d == bestd && !(test_float_bits(cand[i]) & 1))) {
            best = cand[i];
            bestd = d;
        }
    }
    return best == 0 ? 0.0f : best;
}

Test(exact, rounding)
{
    test_seed("exact.rounding");
    for (int trial = 0; trial < 20000; trial++) {
        uint32_t n = test_rand_range(1, 40), acc[4] = { 0 }, e[4];
        i128 S = 0;
        for (uint32_t i = 0; i < n; i++) {
            float v = rand_value();
            vka_exact_from_float(v, e);
            vka_exact_add(acc, e, 1);
            S += (i128)scaled_rne(v);
        }
        cr_assert(ival(acc) == S, "trial %d: the words are not the exact integer sum", trial);
        if (S >= (i128)1 << 95 || S < -((i128)1 << 95))
            continue; /* out of range: NaN, checked in range_order */
        float got = vka_exact_to_float(acc), want = nearest(S);
        cr_assert_eq(test_float_bits(got), test_float_bits(want), "trial %d: %a, the nearest float is %a", trial,
                     (double)got, (double)want);
    }
    /* ties: 2^24 + 1 units of 2^k round to even (2^24 * 2^k), 2^24 + 3 up */
    uint32_t e[4] = { 0 };
    for (int k = -64 + 8; k < 0; k += 7) {
        i128 S = ((i128)(1 << 24) + 1) << (k + 64);
        memset(e, 0, 16);
        e[0] = (uint32_t)S;
        e[1] = (uint32_t)(S >> 32);
        e[2] = (uint32_t)(S >> 64);
        cr_assert_eq(vka_exact_to_float(e), ldexpf(1 << 24, k), "tie at 2^%d", k);
        S += (i128)2 << (k + 64);
        e[0] = (uint32_t)S;
        e[1] = (uint32_t)(S >> 32);
        e[2] = (uint32_t)(S >> 64);
        cr_assert_eq(vka_exact_to_float(e), ldexpf((1 << 24) + 4, k), "tie up at 2^%d", k);
    }
}

/* ---- kernels ------------------------------------------------------------------------- */

static struct vka_ctx *ctx_for(const char *load)
{
    enum vka_load_path path = !strcmp(load, "texel") ? VKA_LOAD_TEXEL : VKA_LOAD_STORAGE;
    struct vka_ctx *ctx = test_ctx_params(&(struct vka_ctx_params){ .validation = 1,
                                                                    .load = path });
    cr_assert_eq(ctx->profile.load, path);
    return ctx;
}

/* An exact tensor of n elements at element off of its own buffer, holding words. */
static struct vka_tensor exact_tensor(struct vka_ctx *ctx, uint64_t off, uint64_t n,
                                      const uint32_t *words)
{
    struct vka_tensor t = vka_tensor_flat(NULL, off, n);
    t.dtype = VKA_EXACT;
    cr_assert_eq(vka_buf_create(ctx, &(struct vka_buf_params){ .size = (off + n + 1) * 16 },
                                &t.buf), 0);
    t.owns_buf = true;
    cr_assert_eq(vka_buf_upload(t.buf, off * 16, words, n * 16), 0);
    /* a zero guard element after it */
    cr_assert_eq(vka_buf_upload(t.buf, (off + n) * 16, (uint32_t[4]){ 0 }, 16), 0);
    return t;
}

/* n elements of random sums: mixed signs and magnitudes, some specials */
static uint32_t *rand_elems(uint64_t n)
{
    uint32_t *w = calloc(n * 4, 4), e[4];
    for (uint64_t i = 0; i < n; i++) {
        uint32_t k = test_rand_range(1, 4);
        for (uint32_t j = 0; j < k; j++) {
            vka_exact_from_float(rand_value(), e);
            vka_exact_add(w + 4 * i, e, 1);
        }
        uint32_t r = test_rand_range(0, 99);
        if (r < 3) {
            vka_exact_from_float(r == 0 ? NAN : r == 1 ? INFINITY : -0x1p31f, e);
            vka_exact_add(w + 4 * i, e, 1);
        }
    }
    return w;
}

static void gpu_resolve(const char *load)
{
    test_seed("exact.gpu_resolve");
    struct vka_ctx *ctx = ctx_for(load);
    const uint64_t sizes[] = { 1, 3, 64, 1000, 70001 };
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        uint64_t n = sizes[s], off = test_rand_range(0, 20);
        uint32_t *w = rand_elems(n);
        /* some raw integers too: every bit pattern of I, sign-extended E */
        for (uint64_t i = 0; i < n; i += 5) {
            w[4 * i] = (uint32_t)test_rand_u64();
            w[4 * i + 1] = (uint32_t)test_rand_u64();
            w[4 * i + 2] = (uint32_t)test_rand_u64() >> test_rand_range(0, 31);
            if (test_rand_range(0, 1))
                w[4 * i + 2] |= 0x80000000u;
            w[4 * i + 3] = (w[4 * i + 2] >> 31 ? 0xffffff00u : 0) |
                           (test_rand_range(0, 9) == 0 ? test_rand_range(0, 15) : 0);
        }
        struct vka_tensor x = exact_tensor(ctx, off, n, w);
        struct vka_tensor out = test_flat_guarded(ctx, test_rand_range(0, 7), n, NULL);
        float *got = malloc(n * 4);
        cr_assert_eq(vka_cmd_begin(cmd), 0);
        cr_assert_eq(vka_exact_resolve(cmd, &x, &out), 0, "%s", vka_last_error());
        test_run(cmd);
        test_flat_check_guard(&out, got);
        for (uint64_t i = 0; i < n; i++) {
            float want = vka_exact_to_float(w + 4 * i);
            cr_assert(test_float_bits(got[i]) == test_float_bits(want) || (isnan(got[i]) && isnan(want)),
                      "%s n=%llu [%llu] %08x %08x %08x %08x: %a, the C reference %a", load,
                      (unsigned long long)n, (unsigned long long)i, w[4 * i], w[4 * i + 1],
                      w[4 * i + 2], w[4 * i + 3], (double)got[i], (double)want);
        }
        free(got);
        free(w);
        vka_tensor_destroy(&x);
        vka_tensor_destroy(&out);
    }
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

static void gpu_add_rows(const char *load)
{
    test_seed("exact.gpu_add_rows");
    struct vka_ctx *ctx = ctx_for(load);
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    const uint32_t shapes[][2] = { { 1, 4 }, { 3, 8 }, { 7, 1024 }, { 16, 4000 } };
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        uint32_t rows = shapes[s][0], n = shapes[s][1];
        uint64_t off = 4 * test_rand_range(0, 5);
        float *x = malloc((size_t)rows * n * 4);
        /* the conversion's edges first: ties at 2^-64 (to even, both ways), the first
         * value with bits below 2^-64 (2^-40 and just under it), the largest float below
         * 2^31 and 2^31 itself, integers with all 31 bits, zeros, subnormals */
        static const float edge[] = {
            0x1.8p-64f, 0x1.4p-63f, -0x1.8p-64f, 0x1.7ffffep-41f, 0x1p-40f, -0x1.fffffep-41f,
            0x1.fffffep30f, -0x1.fffffep30f, 0x1p31f, -0x1p31f, 2147483520.0f, 0.0f, -0.0f,
            0x1p-149f, -0x1.fffffcp-127f, 0x1p-65f, 0x1.000002p-65f, 1.0f, -1.0f, 0x1.fffffep-1f,
        };
        for (size_t i = 0; i < (size_t)rows * n; i++) {
            uint32_t r = test_rand_range(0, 999);
            x[i] = i < sizeof(edge) / sizeof(edge[0]) ? edge[i]
                   : r == 0 ? NAN : r == 1 ? -INFINITY : r == 2 ? 3e9f : rand_value();
        }
        uint32_t *acc = rand_elems(n), *want = malloc((size_t)n * 16), e[4];
        memcpy(want, acc, (size_t)n * 16);
        for (uint32_t r = 0; r < rows; r++)
            for (uint32_t i = 0; i < n; i++) {
                vka_exact_from_float(x[(size_t)r * n + i], e);
                vka_exact_add(want + 4 * i, e, 1);
            }
        struct vka_tensor tx = test_flat_guarded(ctx, off, (uint64_t)rows * n, x);
        struct vka_tensor ta = exact_tensor(ctx, test_rand_range(0, 9), n, acc);
        cr_assert_eq(vka_cmd_begin(cmd), 0);
        cr_assert_eq(vka_exact_add_rows(cmd, &tx, rows, &ta), 0, "%s", vka_last_error());
        test_run(cmd);
        uint32_t *got = malloc((size_t)(n + 1) * 16);
        cr_assert_eq(vka_buf_download(ta.buf, ta.off * 16, got, (size_t)(n + 1) * 16), 0);
        for (uint32_t i = 0; i < n; i++)
            cr_assert(!memcmp(got + 4 * i, want + 4 * i, 16),
                      "%s rows=%u n=%u [%u]: %08x %08x %08x %08x, the C reference %08x %08x "
                      "%08x %08x", load, rows, n, i, got[4 * i], got[4 * i + 1], got[4 * i + 2],
                      got[4 * i + 3], want[4 * i], want[4 * i + 1], want[4 * i + 2],
                      want[4 * i + 3]);
        cr_assert(!memcmp(got + 4 * n, (uint32_t[4]){ 0 }, 16), "a write past the end");
        free(got);
        free(x);
        free(acc);
        free(want);
        vka_tensor_destroy(&tx);
        vka_tensor_destroy(&ta);
    }
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

Test(exact, gpu_resolve_texel) { gpu_resolve("texel"); }
Test(exact, gpu_resolve_storage) { gpu_resolve("storage"); }
Test(exact, gpu_add_rows_texel) { gpu_add_rows("texel"); }
Test(exact, gpu_add_rows_storage) { gpu_add_rows("storage"); }
