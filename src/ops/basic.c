/* fill, scale, axpy (shaders/eltwise.comp) and sum (shaders/reduce.comp).
 *
 * Tensors are bound through vka_op_bind_in/out (ops/common.c). Chunks are multiples of
 * 256 bytes and of the reduction block, so splitting a long tensor changes neither the
 * addresses seen by a kernel's arithmetic nor the sum's tree. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "log.h"
#include "ops/basic.h"
#include "ops/ops.h"

struct eltwise_push {
    uint32_t n;
    uint32_t x_base;
    float a;
    uint32_t y_base;
};

struct sum_push {
    uint32_t n;
    uint32_t x_base;
    uint32_t out_idx;
};

uint64_t vka_sum_block(const struct vka_ctx *ctx)
{
    return (uint64_t)ctx->profile.wg_size * 4 * ctx->profile.reduce_items;
}

static uint64_t chunk_elems(const struct vka_ctx *ctx)
{
    /* less the up to 63 elements a binding starts before its range (256-byte alignment) */
    uint64_t c = ctx->profile.max_binding / sizeof(float) - 64;
    uint64_t block = vka_sum_block(ctx);
    c -= c % block;
    if (c == 0)
        c = block; /* a max_binding below two blocks: vka_op_bind_out reports it */
    if (c > (1ull << 30))
        c = 1ull << 30; /* keeps n and the bases in 32-bit push constants */
    return c;
}

static int check_flat(const char *op, const struct vka_tensor *t, const char *name, bool vec4)
{
    if (t->dtype != VKA_F32 || t->layout != VKA_LAYOUT_FLAT) {
        vka_err("%s: %s must be a flat f32 tensor", op, name);
        return -EINVAL;
    }
    uint64_t n = vka_tensor_stored(t);
    if (t->off * 4 > t->buf->size || n * 4 > t->buf->size - t->off * 4) {
        vka_err("%s: %s (%" PRIu64 " elements at %" PRIu64 ") passes the end of its %"
                PRIu64 "-byte buffer", op, name, n, t->off, (uint64_t)t->buf->size);
        return -EINVAL;
    }
    if (vec4 && t->off % 4) {
        vka_err("%s: %s starts at element %" PRIu64 ", not a multiple of 4", op, name, t->off);
        return -EINVAL;
    }
    return 0;
}

static int eltwise(struct vka_cmd *cmd, const char *shader, float a, const struct vka_tensor *x,
                   const struct vka_tensor *y)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    struct vka_pipe *pipe;
    int ret = check_flat(shader, y, "y", false);
    if (ret < 0 || (x && (ret = check_flat(shader, x, "x", true)) < 0))
        return ret;
    uint64_t n = vka_tensor_stored(y);
    if (x && vka_tensor_stored(x) != n) {
        vka_err("%s: x has %" PRIu64 " elements, y %" PRIu64, shader, vka_tensor_stored(x), n);
        return -EINVAL;
    }
    ret = vka_pipe_get(ctx, &(struct vka_pipe_params){
        .shader = shader, .nbind = x ? 2 : 1,
        .bind = { x ? VKA_BIND_IN : VKA_BIND_OUT, VKA_BIND_OUT },
        .push_size = sizeof(struct eltwise_push) }, &pipe);
    if (ret < 0)
        return ret;
    uint64_t chunk = chunk_elems(ctx);
    for (uint64_t first = 0; first < n; first += chunk) {
        uint64_t count = n - first < chunk ? n - first : chunk;
        struct eltwise_push pc = { .n = (uint32_t)count, .a = a };
        struct vka_binding b[2];
        int yi = x ? 1 : 0;
        if ((x && (ret = vka_op_bind_in(ctx, x, first, count, &b[0], &pc.x_base)) < 0) ||
            (ret = vka_op_bind_out(ctx, y, first, count, &b[yi], &pc.y_base)) < 0 ||
            (ret = vka_cmd_dispatch_1d(cmd, pipe, b, &pc, (count + 3) / 4)) < 0)
            return ret;
    }
    return 0;
}

/* A transfer command, not a kernel: lavapipe runs it as a memset where a kernel stored
 * lane by lane (gan32 at micro-batch 16, the fills of an iteration: 21.0 -> 2.4 ms with
 * --accumulate exact, whose accumulators are 16 bytes a parameter; 5.2 -> 0.7 ordered). */
int vka_fill(struct vka_cmd *cmd, const struct vka_tensor *y, float value)
{
    int ret = check_flat("fill", y, "y", false);
    if (ret < 0)
        return ret;
    uint32_t word;
    memcpy(&word, &value, 4);
    return vka_cmd_fill(cmd, y->buf, y->off * 4, vka_tensor_stored(y) * 4, word);
}

int vka_scale(struct vka_cmd *cmd, const struct vka_tensor *y, float a)
{
    return eltwise(cmd, "scale", a, NULL, y);
}

int vka_axpy(struct vka_cmd *cmd, float a, const struct vka_tensor *x,
             const struct vka_tensor *y)
{
    return eltwise(cmd, "axpy", a, x, y);
}

int vka_sum(struct vka_cmd *cmd, const struct vka_tensor *x, const struct vka_tensor *out)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    struct vka_pipe *pipe;
    int ret = check_flat("sum", x, "x", true);
    if (ret < 0 || (ret = check_flat("sum", out, "out", false)) < 0)
        return ret;
    if (vka_tensor_stored(out) != 1) {
        vka_err("sum: out holds %" PRIu64 " elements, needs 1", vka_tensor_stored(out));
        return -EINVAL;
    }
    uint64_t n = vka_tensor_stored(x);
    if (n == 0)
        return vka_fill(cmd, out, 0.0f);
    ret = vka_pipe_get(ctx, &(struct vka_pipe_params){
        .shader = "sum", .nbind = 2, .bind = { VKA_BIND_IN, VKA_BIND_OUT },
        .push_size = sizeof(struct sum_push), .nspec = 1,
        .spec = { ctx->profile.reduce_items } }, &pipe);
    if (ret < 0)
        return ret;
    uint64_t block = vka_sum_block(ctx);
    uint64_t chunk = chunk_elems(ctx);
    struct vka_tensor src = *x;
    while (true) {
        uint64_t parts = (n + block - 1) / block;
        struct vka_tensor dst = *out;
        if (parts > 1 && (ret = vka_op_scratch(cmd, parts, &dst)) < 0)
            return ret;
        for (uint64_t first = 0; first < n; first += chunk) {
            uint64_t count = n - first < chunk ? n - first : chunk;
            uint64_t part0 = first / block, nparts = (count + block - 1) / block;
            struct sum_push pc = { .n = (uint32_t)count };
            struct vka_binding b[2];
            if ((ret = vka_op_bind_in(ctx, &src, first, count, &b[0], &pc.x_base)) < 0 ||
                (ret = vka_op_bind_out(ctx, &dst, part0, nparts, &b[1], &pc.out_idx)) < 0 ||
                (ret = vka_cmd_dispatch_1d(cmd, pipe, b, &pc, nparts * ctx->profile.wg_size)) < 0)
                return ret;
        }
        if (parts == 1)
            return 0;
        src = dst;
        n = parts;
    }
}
