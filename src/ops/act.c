/* The act family on NHWC4 activations: relu, leaky_relu, tanh, sigmoid, scale, add,
 * mul and concat (along channels), forward and backward (shaders/act.comp, one variant
 * per kernel). Slots are those of ops.def; every kernel runs one invocation per output
 * vec4 and writes the output's padding channels as 0.
 *
 * Backward adds into every gradient given (a NULL one is skipped); relu, leaky_relu, tanh
 * and sigmoid may be given dx0 == dy and then write the gradient over dy (INPLACE_DX):
 *   relu, leaky_relu   dx0 += dy * (y > 0 ? 1 : slope)   reads y, dy: y > 0 exactly
 *                      where x0 > 0 (slope >= 0), so x0 need not be kept for backward
 *   tanh, sigmoid      dx0 += dy * f'(.) from y     reads y (the forward output), dy
 *   scale              dx0 += alpha * dy
 *   add                dx0 += dy, dx1 += dy
 *   mul                dx0 += dy * x1, dx1 += dy * x0
 *   concat             dx0 += dy[:, 0:C1], dx1 += dy[:, C1:C1+C2]; C1 and C2 come from
 *                      x0, x1 (shapes only, not read) or, when those are NULL, dx0, dx1
 * Nothing is reduced, so results do not depend on batching or chunking.
 *
 * Inputs are read as vec4s, so an input view must start at a multiple of 4 elements
 * (every NHWC4 view along N does). Tensors longer than one storage binding are split
 * into chunks of whole pixels.
 *
 * Concat is a copy. A zero-copy concat, with x0 and x1 views into channel slices of y's
 * buffer so that their producers write straight into y, cannot be expressed in NHWC4: a
 * pixel stores all its channels together, so y's channels [0, C1) of two neighbouring
 * pixels lie round4(C1 + C2) floats apart, while a view of x0 must have them round4(C1)
 * apart, and a vka_tensor has no pixel stride to state the difference (only N*H*W == 1
 * would work, or a concat along N). It would take a pixel stride in struct vka_tensor
 * honoured by every producer kernel. */
#include <errno.h>
#include <inttypes.h>

#include "log.h"
#include "ops/ops.h"

#define ANY UINT32_MAX

/* shaders/act.comp's push constants */
struct act_push {
    uint32_t n4, c, cs4, y_base, a_base, b_base, a4, b4, c1;
    float alpha;
    uint32_t inplace;
    float zero;
};

/* t is an NHWC4 f32 tensor (n,c,h,w), ANY matching any size; an input (in) starts at a
 * whole vec4. */
static int check(const char *op, const char *name, const struct vka_tensor *t, uint32_t n,
                 uint32_t c, uint32_t h, uint32_t w, bool in)
{
    const uint32_t want[4] = { n, c, h, w };
    int ret = vka_op_check(op, name, t, VKA_LAYOUT_NHWC4, n == ANY ? 0 : n, c == ANY ? 0 : c,
                           h == ANY ? 0 : h, w == ANY ? 0 : w);
    if (ret < 0)
        return ret;
    const uint32_t have[4] = { t->n, t->c, t->h, t->w };
    for (int i = 0; i < 4; i++) {
        if (want[i] != ANY && want[i] != have[i]) { /* a 0 that vka_op_check let through */
            char str[64];
            vka_op_shape_str(t, str, sizeof(str));
            vka_err("%s: %s is %s, needs (%u,%u,%u,%u) nhwc4 f32", op, name, str, n, c, h, w);
            return -EINVAL;
        }
    }
    if (in && t->off % 4) {
        vka_err("%s: %s starts at element %" PRIu64 ", not a multiple of 4 (inputs are read "
                "as vec4s)", op, name, t->off);
        return -EINVAL;
    }
    return 0;
}

static int check_any(const char *op, const char *name, const struct vka_tensor *t, bool in)
{
    return check(op, name, t, ANY, ANY, ANY, ANY, in);
}

static int check_like(const char *op, const char *name, const struct vka_tensor *t,
                      const struct vka_tensor *like, bool in)
{
    return check(op, name, t, like->n, like->c, like->h, like->w, in);
}

/* The same, skipped for a NULL t. */
static int check_opt(const char *op, const char *name, const struct vka_tensor *t,
                     const struct vka_tensor *like, bool in)
{
    return t ? check_like(op, name, t, like, in) : 0;
}

static void shape_of(const struct vka_tensor *t, uint32_t shape[4])
{
    shape[0] = t->n;
    shape[1] = t->c;
    shape[2] = t->h;
    shape[3] = t->w;
}

/* Records `shader` over every pixel of out: inputs a and b (NULL: none) read through the
 * load path, out written. pc brings c, c1 and alpha; the rest is filled here. */
static int dispatch(struct vka_cmd *cmd, const char *shader, const struct vka_tensor *a,
                    const struct vka_tensor *b, const struct vka_tensor *out,
                    struct act_push pc)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    uint64_t pixels = (uint64_t)out->n * out->h * out->w;
    if (!pixels || !out->cs)
        return 0;
    uint32_t widest = out->cs > a->cs ? out->cs : a->cs;
    if (b && b->cs > widest)
        widest = b->cs;
    /* a binding starts up to 63 elements before its range (256-byte alignment) and is
     * rounded up to 16 bytes at its end */
    uint64_t room = ctx->profile.max_binding / sizeof(float);
    room = room > 68 ? room - 68 : 0;
    uint64_t chunk = room / widest;
    if (chunk > (1u << 30) / out->cs)
        chunk = (1u << 30) / out->cs; /* keeps n4 and the bases in 32-bit push constants */
    if (!chunk) {
        vka_err("%s: a pixel of %u floats passes this device's storage range of %" PRIu64
                " bytes", shader, widest, ctx->profile.max_binding);
        return -E2BIG;
    }
    struct vka_pipe *pipe;
    int ret = vka_op_check_vec4(shader, "the output", out);
    if (ret < 0)
        return ret;
    ret = vka_pipe_get(ctx, &(struct vka_pipe_params){
        .shader = shader, .nbind = b ? 3 : 2,
        .bind = { VKA_BIND_IN, b ? VKA_BIND_IN : VKA_BIND_OUT, VKA_BIND_OUT },
        .push_size = sizeof(struct act_push) }, &pipe);
    if (ret < 0)
        return ret;
    pc.cs4 = out->cs / 4;
    /* out over an input (the planner's in-place backward): written, not added to */
    pc.inplace = (out->buf == a->buf && out->off == a->off) ||
                 (b && out->buf == b->buf && out->off == b->off);
    pc.a4 = a->cs / 4;
    pc.b4 = b ? b->cs / 4 : 0;
    for (uint64_t first = 0; first < pixels; first += chunk) {
        uint64_t count = pixels - first < chunk ? pixels - first : chunk;
        struct vka_binding bind[3];
        pc.n4 = (uint32_t)(count * pc.cs4);
        if ((ret = vka_op_bind_in(ctx, a, first * a->cs, count * a->cs, &bind[0],
                                  &pc.a_base)) < 0 ||
            (b && (ret = vka_op_bind_in(ctx, b, first * b->cs, count * b->cs, &bind[1],
                                        &pc.b_base)) < 0) ||
            (ret = vka_op_bind_out(ctx, out, first * out->cs, count * out->cs,
                                   &bind[b ? 2 : 1], &pc.y_base)) < 0 ||
            (ret = vka_cmd_dispatch_1d(cmd, pipe, bind, &pc, pc.n4)) < 0)
            return ret;
    }
    return 0;
}

/* ---- relu, leaky_relu, tanh, sigmoid ------------------------------------------------ */

struct unary {
    const char *fwd, *bwd; /* op names for messages */
    const char *fwd_shader, *bwd_shader;
    bool bwd_from_y;       /* f' from the forward output y instead of x0 */
};

/* leaky_relu's slope (0 for the others): its backward tells x0 > 0 from y > 0 */
static int check_slope(const struct unary *u, float slope)
{
    if (slope >= 0.0f)
        return 0;
    vka_err("%s: slope %g is negative or NaN: give a slope >= 0 (backward reads y, whose "
            "sign is x0's only then)", u->fwd, (double)slope);
    return -EINVAL;
}

static int unary_shape(const struct unary *u, const struct vka_op_args *a, uint32_t shape[4],
                       float alpha)
{
    int ret = check_any(u->fwd, "x0", a->x[0], true);
    if (ret == 0 && (ret = check_slope(u, alpha)) == 0)
        shape_of(a->x[0], shape);
    return ret;
}

/* x0 (N,C,H,W) -> y (N,C,H,W) */
static int unary_fwd(const struct unary *u, struct vka_cmd *cmd, const struct vka_op_args *a,
                     float alpha)
{
    int ret = check_any(u->fwd, "x0", a->x[0], true);
    if (ret < 0 || (ret = check_slope(u, alpha)) < 0 ||
        (ret = check_like(u->fwd, "y", a->y, a->x[0], false)) < 0)
        return ret;
    return dispatch(cmd, u->fwd_shader, a->x[0], NULL, a->y,
                    (struct act_push){ .c = a->y->c, .alpha = alpha });
}

/* x0 or y (N,C,H,W), dy (N,C,H,W) -> dx0 (N,C,H,W) += */
static int unary_bwd(const struct unary *u, struct vka_cmd *cmd, const struct vka_op_args *a,
                     float alpha)
{
    const struct vka_tensor *src = u->bwd_from_y ? a->y : a->x[0];
    const char *src_name = u->bwd_from_y ? "y" : "x0";
    int ret = check_any(u->bwd, src_name, src, true);
    if (ret < 0 || (ret = check_like(u->bwd, "dy", a->dy, src, true)) < 0 ||
        (ret = check_opt(u->bwd, "dx0", a->dx[0], src, false)) < 0 ||
        (u->bwd_from_y && (ret = check_opt(u->bwd, "x0", a->x[0], src, false)) < 0) ||
        (!u->bwd_from_y && (ret = check_opt(u->bwd, "y", a->y, src, false)) < 0))
        return ret;
    if (!a->dx[0])
        return 0;
    return dispatch(cmd, u->bwd_shader, src, a->dy, a->dx[0],
                    (struct act_push){ .c = src->c, .alpha = alpha });
}

/* An elementwise op of act.comp's variants act_NAME and act_NAME_bwd, whose bwd takes f'
 * from y (from_y) or x0, with the push constant alpha (an expression of a). */
#define UNARY(name, from_y, alpha)                                                      \
    static const struct unary name##_u = { #name, #name "_bwd", "act_" #name,           \
                                           "act_" #name "_bwd", from_y };               \
    int vka_##name##_shape(const struct vka_op_args *a, uint32_t shape[4])              \
    {                                                                                   \
        return unary_shape(&name##_u, a, shape, alpha);                                 \
    }                                                                                   \
    int vka_##name##_fwd(struct vka_cmd *cmd, const struct vka_op_args *a)              \
    {                                                                                   \
        return unary_fwd(&name##_u, cmd, a, alpha);                                     \
    }                                                                                   \
    int vka_##name##_bwd(struct vka_cmd *cmd, const struct vka_op_args *a)              \
    {                                                                                   \
        return unary_bwd(&name##_u, cmd, a, alpha);                                     \
    }

UNARY(relu, true, 0.0f)
UNARY(leaky_relu, true, a->p.slope)
UNARY(tanh, true, 0.0f)
UNARY(sigmoid, true, 0.0f)

/* ---- scale ---------------------------------------------------------------------------- */

int vka_scale_shape(const struct vka_op_args *a, uint32_t shape[4])
{
    int ret = check_any("scale", "x0", a->x[0], true);
    if (ret == 0)
        shape_of(a->x[0], shape);
    return ret;
}

/* x0 (N,C,H,W) -> y (N,C,H,W) = alpha * x0 */
int vka_scale_fwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    int ret = check_any("scale", "x0", a->x[0], true);
    if (ret < 0 || (ret = check_like("scale", "y", a->y, a->x[0], false)) < 0)
        return ret;
    return dispatch(cmd, "act_scale", a->x[0], NULL, a->y,
                    (struct act_push){ .c = a->y->c, .alpha = a->p.alpha });
}

/* dy (N,C,H,W) -> dx0 (N,C,H,W) += alpha * dy */
int vka_scale_bwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    int ret = check_any("scale_bwd", "dy", a->dy, true);
    if (ret < 0 || (ret = check_opt("scale_bwd", "dx0", a->dx[0], a->dy, false)) < 0 ||
        (ret = check_opt("scale_bwd", "x0", a->x[0], a->dy, false)) < 0 ||
        (ret = check_opt("scale_bwd", "y", a->y, a->dy, false)) < 0)
        return ret;
    if (!a->dx[0])
        return 0;
    return dispatch(cmd, "act_axpy_bwd", a->dy, NULL, a->dx[0],
                    (struct act_push){ .c = a->dy->c, .alpha = a->p.alpha });
}

/* ---- add, mul --------------------------------------------------------------------------- */

static int binary_shape(const char *op, const struct vka_op_args *a, uint32_t shape[4])
{
    int ret = check_any(op, "x0", a->x[0], true);
    if (ret < 0 || (ret = check_like(op, "x1", a->x[1], a->x[0], true)) < 0)
        return ret;
    shape_of(a->x[0], shape);
    return 0;
}

/* x0, x1 (N,C,H,W) -> y (N,C,H,W) */
static int binary_fwd(const char *op, const char *shader, struct vka_cmd *cmd,
                      const struct vka_op_args *a)
{
    uint32_t shape[4];
    int ret = binary_shape(op, a, shape);
    if (ret < 0 || (ret = check_like(op, "y", a->y, a->x[0], false)) < 0)
        return ret;
    return dispatch(cmd, shader, a->x[0], a->x[1], a->y, (struct act_push){ .c = a->y->c });
}

int vka_add_shape(const struct vka_op_args *a, uint32_t shape[4])
{
    return binary_shape("add", a, shape);
}

int vka_add_fwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    return binary_fwd("add", "act_add", cmd, a);
}

/* dy (N,C,H,W) -> dx0, dx1 (N,C,H,W) += dy */
int vka_add_bwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    const char *op = "add_bwd";
    int ret = check_any(op, "dy", a->dy, true);
    if (ret < 0 || (ret = check_opt(op, "x0", a->x[0], a->dy, false)) < 0 ||
        (ret = check_opt(op, "x1", a->x[1], a->dy, false)) < 0 ||
        (ret = check_opt(op, "y", a->y, a->dy, false)) < 0 ||
        (ret = check_opt(op, "dx0", a->dx[0], a->dy, false)) < 0 ||
        (ret = check_opt(op, "dx1", a->dx[1], a->dy, false)) < 0)
        return ret;
    for (int i = 0; i < 2; i++)
        if (a->dx[i] && (ret = dispatch(cmd, "act_axpy_bwd", a->dy, NULL, a->dx[i],
                                        (struct act_push){ .c = a->dy->c, .alpha = 1.0f })) < 0)
            return ret;
    return 0;
}

int vka_mul_shape(const struct vka_op_args *a, uint32_t shape[4])
{
    return binary_shape("mul", a, shape);
}

int vka_mul_fwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    return binary_fwd("mul", "act_mul", cmd, a);
}

/* x0, x1, dy (N,C,H,W) -> dx0 += dy * x1, dx1 += dy * x0 (N,C,H,W); x1 is needed for
 * dx0 and x0 for dx1 */
int vka_mul_bwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    const char *op = "mul_bwd";
    static const char *const xname[2] = { "x0", "x1" }, *const dxname[2] = { "dx0", "dx1" };
    int ret = check_any(op, "dy", a->dy, true);
    if (ret < 0 || (ret = check_opt(op, "y", a->y, a->dy, false)) < 0)
        return ret;
    for (int i = 0; i < 2; i++) {
        bool needed = a->dx[1 - i] != NULL;
        if ((needed || a->x[i]) && (ret = check_like(op, xname[i], a->x[i], a->dy, true)) < 0)
            return ret;
        if ((ret = check_opt(op, dxname[i], a->dx[i], a->dy, false)) < 0)
            return ret;
    }
    for (int i = 0; i < 2; i++)
        if (a->dx[i] && (ret = dispatch(cmd, "act_mul_bwd", a->x[1 - i], a->dy, a->dx[i],
                                        (struct act_push){ .c = a->dy->c })) < 0)
            return ret;
    return 0;
}

/* ---- concat ------------------------------------------------------------------------------ */

int vka_concat_shape(const struct vka_op_args *a, uint32_t shape[4])
{
    const struct vka_tensor *x0 = a->x[0];
    int ret = check_any("concat", "x0", x0, true);
    if (ret < 0 || (ret = check("concat", "x1", a->x[1], x0->n, ANY, x0->h, x0->w, true)) < 0)
        return ret;
    if ((uint64_t)x0->c + a->x[1]->c > UINT32_MAX - 3) {
        vka_err("concat: %u + %u channels are too many", x0->c, a->x[1]->c);
        return -EINVAL;
    }
    shape[0] = x0->n;
    shape[1] = x0->c + a->x[1]->c;
    shape[2] = x0->h;
    shape[3] = x0->w;
    return 0;
}

/* x0 (N,C1,H,W), x1 (N,C2,H,W) -> y (N,C1+C2,H,W) */
int vka_concat_fwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    uint32_t s[4];
    int ret = vka_concat_shape(a, s);
    if (ret < 0 || (ret = check("concat", "y", a->y, s[0], s[1], s[2], s[3], false)) < 0)
        return ret;
    return dispatch(cmd, "act_concat", a->x[0], a->x[1], a->y,
                    (struct act_push){ .c = a->x[0]->c, .c1 = a->x[1]->c });
}

/* dy (N,C1+C2,H,W) -> dx0 (N,C1,H,W) += dy[:, 0:C1], dx1 (N,C2,H,W) += dy[:, C1:] */
int vka_concat_bwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    const char *op = "concat_bwd";
    static const char *const xname[2] = { "x0", "x1" }, *const dxname[2] = { "dx0", "dx1" };
    const struct vka_tensor *dy = a->dy;
    uint32_t c[2];
    int ret = check_any(op, "dy", dy, true);
    if (ret < 0)
        return ret;
    for (int i = 0; i < 2; i++) {
        const struct vka_tensor *part = a->x[i] ? a->x[i] : a->dx[i];
        if (!part) {
            vka_err("%s: needs %s or %s for the shape of part %d of dy", op, xname[i],
                    dxname[i], i);
            return -EINVAL;
        }
        if ((ret = check(op, a->x[i] ? xname[i] : dxname[i], part, dy->n, ANY, dy->h, dy->w,
                         false)) < 0 ||
            (ret = check_opt(op, dxname[i], a->dx[i], part, false)) < 0)
            return ret;
        c[i] = part->c;
    }
    if ((uint64_t)c[0] + c[1] != dy->c) {
        vka_err("%s: dy has %u channels, parts %u + %u", op, dy->c, c[0], c[1]);
        return -EINVAL;
    }
    if ((ret = check_opt(op, "y", a->y, dy, false)) < 0)
        return ret;
    for (int i = 0; i < 2; i++)
        if (a->dx[i] && (ret = dispatch(cmd, "act_concat_bwd", dy, NULL, a->dx[i],
                                        (struct act_push){ .c = c[i], .c1 = i ? c[0] : 0 })) < 0)
            return ret;
    return 0;
}
