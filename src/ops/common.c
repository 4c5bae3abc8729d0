/* Helpers every op family uses: shape checks with messages that name the op and the
 * shapes, and bindings of tensor ranges for the two load paths. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "log.h"
#include "ops/ops.h"

enum { ALIGN_ELEMS = 64 }; /* 256 bytes: a valid minStorageBufferOffsetAlignment anywhere */

static const char *layout_name(enum vka_layout l)
{
    return l == VKA_LAYOUT_NHWC4 ? "nhwc4" : l == VKA_LAYOUT_WEIGHT ? "weight" : "flat";
}

void vka_op_shape_str(const struct vka_tensor *t, char *buf, size_t size)
{
    if (!t) {
        snprintf(buf, size, "missing");
        return;
    }
    snprintf(buf, size, "(%u,%u,%u,%u) %s%s", t->n, t->c, t->h, t->w,
             layout_name(t->layout),
             t->dtype == VKA_I32 ? " i32" : t->dtype == VKA_EXACT ? " exact" : "");
}

static int check_fits(const char *op, const char *name, const struct vka_tensor *t)
{
    if (!t->buf && !t->owns_buf)
        return 0; /* a shape without storage: the graph checks shapes before planning */
    uint64_t esize = t->dtype == VKA_EXACT ? 16 : 4;
    uint64_t end = (t->off + vka_tensor_stored(t)) * esize;
    if (end > t->buf->size) {
        vka_err("%s: %s (%" PRIu64 " elements at element %" PRIu64 ") passes the end of its "
                "%" PRIu64 "-byte buffer", op, name, vka_tensor_stored(t), t->off,
                t->buf ? (uint64_t)t->buf->size : 0);
        return -EINVAL;
    }
    return 0;
}

int vka_op_check_acc(const char *op, const char *name, const struct vka_tensor *t,
                     enum vka_layout layout, uint32_t n, uint32_t c, uint32_t h, uint32_t w)
{
    if (t && t->dtype == VKA_EXACT) {
        struct vka_tensor f = *t;
        f.dtype = VKA_F32;
        f.buf = NULL; /* the shape as f32; the extent with 16-byte elements below */
        f.owns_buf = false;
        int ret = vka_op_check(op, name, &f, layout, n, c, h, w);
        return ret < 0 ? ret : check_fits(op, name, t);
    }
    return vka_op_check(op, name, t, layout, n, c, h, w);
}

int vka_op_check(const char *op, const char *name, const struct vka_tensor *t,
                 enum vka_layout layout, uint32_t n, uint32_t c, uint32_t h, uint32_t w)
{
    char have[64];
    vka_op_shape_str(t, have, sizeof(have));
    if (!t || t->dtype != VKA_F32 || t->layout != layout || (n && t->n != n) ||
        (c && t->c != c) || (h && t->h != h) || (w && t->w != w)) {
        char want[96], num[4][16];
        const uint32_t d[4] = { n, c, h, w };
        for (int i = 0; i < 4; i++)
            snprintf(num[i], sizeof(num[i]), d[i] ? "%u" : "*", d[i]);
        snprintf(want, sizeof(want), "(%s,%s,%s,%s) %s f32", num[0], num[1], num[2], num[3],
                 layout_name(layout));
        vka_err("%s: %s is %s, needs %s", op, name, have, want);
        return -EINVAL;
    }
    return check_fits(op, name, t);
}

int vka_op_check_i32(const char *op, const char *name, const struct vka_tensor *t,
                     uint64_t count)
{
    char have[64];
    vka_op_shape_str(t, have, sizeof(have));
    if (!t || t->dtype != VKA_I32 || t->layout != VKA_LAYOUT_FLAT ||
        vka_tensor_stored(t) != count) {
        vka_err("%s: %s is %s, needs %" PRIu64 " flat i32 class ids", op, name, have, count);
        return -EINVAL;
    }
    return check_fits(op, name, t);
}

static int check_storage(const struct vka_tensor *t)
{
    if (!t->buf) {
        vka_err("a tensor (%u,%u,%u,%u) without storage was given to a kernel", t->n, t->c,
                t->h, t->w);
        return -EINVAL;
    }
    return 0;
}

/* Elements [first, first + count) of t, of esize bytes each, as a binding that starts on
 * 256 bytes and ends on a vec4; *base: the first element's index in it. */
static int bind_range(struct vka_ctx *ctx, const struct vka_tensor *t, uint64_t first,
                      uint64_t count, uint32_t esize, struct vka_binding *b, uint32_t *base)
{
    int ret = check_storage(t);
    if (ret < 0)
        return ret;
    uint64_t e = t->off + first;
    uint64_t aligned = e - e % (ALIGN_ELEMS * 4 / esize);
    uint64_t end = ((e + count) * esize + 15) & ~(uint64_t)15;
    if (end > t->buf->size)
        end = t->buf->size;
    if (end - aligned * esize > ctx->profile.max_binding) {
        vka_err("a binding of %" PRIu64 " bytes passes this device's storage range of %"
                PRIu64 " bytes", end - aligned * esize, ctx->profile.max_binding);
        return -E2BIG;
    }
    *b = (struct vka_binding){ t->buf, aligned * esize, end - aligned * esize };
    *base = (uint32_t)(e - aligned);
    return 0;
}

int vka_op_check_vec4(const char *op, const char *name, const struct vka_tensor *t)
{
    if (t->off % 4) {
        vka_err("%s: %s starts at element %" PRIu64 ", not a whole vec4", op, name, t->off);
        return -EINVAL;
    }
    return 0;
}

int vka_op_bind_out(struct vka_ctx *ctx, const struct vka_tensor *t, uint64_t first,
                    uint64_t count, struct vka_binding *b, uint32_t *base)
{
    return bind_range(ctx, t, first, count, 4, b, base);
}

int vka_op_bind_in(struct vka_ctx *ctx, const struct vka_tensor *t, uint64_t first,
                   uint64_t count, struct vka_binding *b, uint32_t *base4)
{
    if ((t->off + first) % 4) {
        vka_err("an input range starts at element %" PRIu64 ", not a whole vec4",
                t->off + first);
        return -EINVAL;
    }
    int ret = check_storage(t);
    if (ret < 0)
        return ret;
    if (ctx->profile.load == VKA_LOAD_TEXEL) {
        *b = (struct vka_binding){ t->buf, 0, 0 };
        *base4 = (uint32_t)((t->off + first) / 4);
        return 0;
    }
    uint32_t base;
    ret = vka_op_bind_out(ctx, t, first, count, b, &base);
    *base4 = base / 4;
    return ret;
}

int vka_op_bind_exact(struct vka_ctx *ctx, const struct vka_tensor *t, uint64_t first,
                      uint64_t count, struct vka_binding *b, uint32_t *base)
{
    if (t->dtype != VKA_EXACT) {
        vka_err("an exact accumulator binding was given a tensor that is not exact");
        return -EINVAL;
    }
    return bind_range(ctx, t, first, count, 16, b, base);
}

int vka_op_scratch(struct vka_cmd *cmd, uint64_t floats, struct vka_tensor *t)
{
    struct vka_buf *buf;
    uint64_t off;
    int ret = vka_cmd_scratch(cmd, floats * sizeof(float), &buf, &off);
    if (ret == 0)
        *t = vka_tensor_flat(buf, off / sizeof(float), floats);
    return ret;
}
