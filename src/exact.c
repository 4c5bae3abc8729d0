/* Exact accumulation: the host reference and the resolve / add kernels; see exact.h. The
 * C functions here and shaders/include/exact.glsl are the same algorithm step for step
 * (tests/test_exact.c holds them to the same bits). */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "exact.h"
#include "log.h"
#include "ops/ops.h"

void vka_exact_add(uint32_t *dst, const uint32_t *src, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++, dst += 4, src += 4) {
        uint64_t x = (uint64_t)dst[0] + src[0];
        uint64_t y = (uint64_t)dst[1] + src[1] + (x >> 32);
        uint64_t z = (uint64_t)dst[2] + src[2] + (y >> 32);
        uint32_t ext = ((dst[3] >> 8) + (src[3] >> 8) + (uint32_t)(z >> 32)) & 0xffffffu;
        dst[0] = (uint32_t)x;
        dst[1] = (uint32_t)y;
        dst[2] = (uint32_t)z;
        dst[3] = ((dst[3] | src[3]) & VKA_EXACT_FLAGS) | ext << 8;
    }
}

void vka_exact_from_float(float v, uint32_t e[4])
{
    uint32_t bits;
    memcpy(&bits, &v, 4);
    uint32_t ex = (bits >> 23) & 0xff, frac = bits & 0x7fffff;
    bool neg = bits >> 31;
    memset(e, 0, 16);
    if (ex == 255) {
        e[3] = frac ? VKA_EXACT_NAN : neg ? VKA_EXACT_NINF : VKA_EXACT_PINF;
        return;
    }
    if (ex >= 158) { /* |v| >= 2^31 */
        e[3] = VKA_EXACT_RANGE;
        return;
    }
    uint32_t m = ex == 0 ? frac : frac | 0x800000;
    int sh = (ex == 0 ? -149 : (int)ex - 150) + 64; /* I = m * 2^sh */
    uint32_t mag[3] = { 0, 0, 0 };
    if (sh >= 0) {
        uint32_t k = (uint32_t)sh >> 5, b = (uint32_t)sh & 31;
        mag[k] = m << b;
        if (k < 2)
            mag[k + 1] = b ? m >> (32 - b) : 0;
    } else {
        uint32_t s = (uint32_t)-sh;
        if (s > 25)
            return;
        uint32_t q = m >> s, r = m & ((1u << s) - 1), half = 1u << (s - 1);
        if (r > half || (r == half && (q & 1)))
            q++;
        mag[0] = q;
    }
    if (!neg || (mag[0] | mag[1] | mag[2]) == 0) {
        memcpy(e, mag, 12);
        return;
    }
    uint64_t x = (uint64_t)(uint32_t)~mag[0] + 1;
    uint64_t y = (uint64_t)(uint32_t)~mag[1] + (x >> 32);
    e[0] = (uint32_t)x;
    e[1] = (uint32_t)y;
    e[2] = ~mag[2] + (uint32_t)(y >> 32);
    e[3] = 0xffffff00u;
}

bool vka_exact_out_of_range(const uint32_t e[4])
{
    uint32_t ext = e[3] >> 8;
    return (e[3] & VKA_EXACT_RANGE) || ext != ((e[2] >> 31) ? 0xffffffu : 0);
}

static int msb(uint32_t v)
{
    return v ? 31 - __builtin_clz(v) : -1;
}

/* bits [pos, pos + 32) of m */
static uint32_t bits_at(const uint32_t m[3], uint32_t pos)
{
    uint32_t k = pos >> 5, b = pos & 31;
    uint32_t lo = m[k] >> b, hi = (b == 0 || k >= 2) ? 0 : m[k + 1] << (32 - b);
    return lo | hi;
}

static bool any_below(const uint32_t m[3], uint32_t pos)
{
    uint32_t k = pos >> 5, b = pos & 31;
    for (uint32_t i = 0; i < k && i < 3; i++)
        if (m[i])
            return true;
    return b && k < 3 && (m[k] & ((1u << b) - 1));
}

static float pow2f(int e) /* 2^e for -149 <= e <= 127, exactly */
{
    uint32_t bits = e >= -126 ? (uint32_t)(e + 127) << 23 : 1u << (e + 149);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float vka_exact_to_float(const uint32_t e[4])
{
    uint32_t f = e[3] & VKA_EXACT_FLAGS;
    bool neg = e[2] >> 31;
    uint32_t bits;
    if ((f & VKA_EXACT_NAN) || (f & 6) == 6)
        bits = 0x7fc00000u;
    else if (f & VKA_EXACT_PINF)
        bits = 0x7f800000u;
    else if (f & VKA_EXACT_NINF)
        bits = 0xff800000u;
    else if (vka_exact_out_of_range(e))
        bits = 0x7fc00000u;
    else {
        uint32_t m[3] = { e[0], e[1], e[2] };
        if (neg) {
            uint64_t x = (uint64_t)(uint32_t)~e[0] + 1;
            uint64_t y = (uint64_t)(uint32_t)~e[1] + (x >> 32);
            m[0] = (uint32_t)x;
            m[1] = (uint32_t)y;
            m[2] = ~e[2] + (uint32_t)(y >> 32);
        }
        int h = m[2] ? 64 + msb(m[2]) : m[1] ? 32 + msb(m[1]) : msb(m[0]);
        if (h < 0)
            return 0.0f;
        float r;
        if (h <= 23) {
            r = (float)m[0] * pow2f(-64);
        } else {
            uint32_t s = (uint32_t)h - 23;
            uint32_t q = bits_at(m, s) & 0xffffffu;
            bool half = bits_at(m, s - 1) & 1, sticky = any_below(m, s - 1);
            if (half && (sticky || (q & 1)))
                q++;
            if (q == 0x1000000u) {
                q >>= 1;
                s++;
            }
            r = (float)q * pow2f((int)s - 64);
        }
        return neg ? -r : r;
    }
    float r;
    memcpy(&r, &bits, 4);
    return r;
}

/* ---- kernels (shaders/exact.comp) --------------------------------------------------- */

struct exact_push {
    uint32_t n, rows, x_base, acc_base;
};

/* Elements per dispatch: an exact binding (16 bytes an element) within the storage range,
 * less its 256-byte alignment. */
static uint64_t chunk_elems(const struct vka_ctx *ctx)
{
    uint64_t c = ctx->profile.max_binding / 16;
    c = c > 32 ? c - 32 : 1;
    return c < (1ull << 28) ? c : 1ull << 28;
}

static int check_pair(const char *op, const struct vka_tensor *ex, const struct vka_tensor *f,
                      uint64_t rows)
{
    if (ex->dtype != VKA_EXACT || f->dtype != VKA_F32 || f->layout != VKA_LAYOUT_FLAT ||
        vka_tensor_stored(f) != rows * vka_tensor_stored(ex)) {
        vka_err("%s: needs an exact tensor of n elements and a flat f32 tensor of %" PRIu64
                " x n, got %" PRIu64 " and %" PRIu64, op, rows, vka_tensor_stored(ex),
                vka_tensor_stored(f));
        return -EINVAL;
    }
    return 0;
}

int vka_exact_resolve(struct vka_cmd *cmd, const struct vka_tensor *x,
                      const struct vka_tensor *out)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    struct vka_pipe *pipe;
    int ret = check_pair("exact_resolve", x, out, 1);
    if (ret < 0 || (ret = vka_pipe_get(ctx, &(struct vka_pipe_params){
                        .shader = "exact_resolve", .nbind = 2,
                        .bind = { VKA_BIND_OUT, VKA_BIND_OUT },
                        .push_size = sizeof(struct exact_push) }, &pipe)) < 0)
        return ret;
    uint64_t n = vka_tensor_stored(x), chunk = chunk_elems(ctx);
    for (uint64_t first = 0; first < n; first += chunk) {
        uint64_t cnt = n - first < chunk ? n - first : chunk;
        struct exact_push pc = { .n = (uint32_t)cnt, .rows = 1 };
        struct vka_binding b[2];
        if ((ret = vka_op_bind_exact(ctx, x, first, cnt, &b[0], &pc.acc_base)) < 0 ||
            (ret = vka_op_bind_out(ctx, out, first, cnt, &b[1], &pc.x_base)) < 0 ||
            (ret = vka_cmd_dispatch_1d(cmd, pipe, b, &pc, cnt)) < 0)
            return ret;
    }
    return 0;
}

int vka_exact_add_rows(struct vka_cmd *cmd, const struct vka_tensor *x, uint32_t rows,
                       const struct vka_tensor *acc)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    struct vka_pipe *pipe;
    int ret = check_pair("exact_add_rows", acc, x, rows);
    if (ret < 0)
        return ret;
    uint64_t n = vka_tensor_stored(acc);
    if (rows == 0 || n == 0)
        return 0;
    if (n % 4 || x->off % 4 || (uint64_t)rows * n * 4 > ctx->profile.max_binding - 256) {
        vka_err("exact_add_rows: %u rows of %" PRIu64 " floats: needs whole vec4s at a vec4 "
                "and one binding", rows, n);
        return -EINVAL;
    }
    if ((ret = vka_pipe_get(ctx, &(struct vka_pipe_params){
             .shader = "exact_add_rows", .nbind = 2, .bind = { VKA_BIND_IN, VKA_BIND_OUT },
             .push_size = sizeof(struct exact_push) }, &pipe)) < 0)
        return ret;
    struct exact_push pc = { .n = (uint32_t)(n / 4), .rows = rows };
    struct vka_binding b[2];
    if ((ret = vka_op_bind_in(ctx, x, 0, (uint64_t)rows * n, &b[0], &pc.x_base)) < 0 ||
        (ret = vka_op_bind_exact(ctx, acc, 0, n, &b[1], &pc.acc_base)) < 0)
        return ret;
    return vka_cmd_dispatch_1d(cmd, pipe, b, &pc, n / 4);
}
