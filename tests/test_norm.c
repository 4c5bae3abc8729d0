/* batch_norm and group_norm (src/ops/norm.c): what only they have. Both ops' results
 * against the reference (training and eval, with and without affine parameters and
 * running statistics, every subset of gradients), on both load paths, with NaN outputs,
 * random gradients, guard words, chunked bindings and group_norm's micro-batch splits,
 * are tests/opcheck.c's (cases and bounds in tests/opcases.c); here: the refusal of bad
 * shapes, groups and modes, with messages that name the op and the tensor. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ops/ops.h"

#define EPS 1e-5f
#define MOMENTUM 0.1f

/* a flat tensor at a random unaligned offset, with guard elements, NaN */
static struct vka_tensor flat(struct vka_ctx *ctx, size_t n)
{
    float *nan = malloc((n ? n : 1) * 4);
    for (size_t i = 0; i < n; i++)
        nan[i] = NAN;
    struct vka_tensor t = test_flat_guarded(ctx, test_rand_range(0, 7), n, nan);
    free(nan);
    return t;
}

/* ---- refusals -------------------------------------------------------------------- */

#define REFUSED(call, text)                                                               \
    do {                                                                                  \
        vka_clear_error();                                                                \
        cr_assert_eq((call), -EINVAL, "%s was accepted", #call);                          \
        cr_assert(strstr(vka_last_error(), text), "message \"%s\" lacks \"%s\"",          \
                  vka_last_error(), text);                                                \
    } while (0)

Test(norm, bad_shapes_are_refused)
{
    test_seed("bad_shapes_are_refused");
    struct vka_ctx *ctx = test_ctx();
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    struct vka_tensor x = test_act(ctx, 2, 6, 3, 3, NULL), y = test_act(ctx, 2, 6, 3, 3, NULL);
    struct vka_tensor y2 = test_act(ctx, 2, 6, 3, 4, NULL), one = test_act(ctx, 1, 6, 1, 1, NULL);
    struct vka_tensor one_y = test_act(ctx, 1, 6, 1, 1, NULL);
    struct vka_tensor v6 = flat(ctx, 6), v5 = flat(ctx, 5), v4 = flat(ctx, 4);
    struct vka_tensor v6b = flat(ctx, 6), xf = flat(ctx, 108);
    uint32_t shape[4];
    cr_assert_eq(vka_cmd_begin(cmd), 0);

    struct vka_op_args bn = {
        .p.norm = { .eps = EPS, .momentum = MOMENTUM, .training = true },
        .x = { &x, &v6, &v6b }, .y = &y2, .saved = { &v6, &v6b },
    };
    REFUSED(vka_batch_norm_fwd(cmd, &bn), "batch_norm_fwd: y is (2,6,3,4)");
    struct vka_tensor odd = y; /* y's shape inside y2's memory, starting inside a vec4 */
    odd.buf = y2.buf;
    odd.off = 2;
    odd.owns_buf = false;
    bn.y = &odd;
    REFUSED(vka_batch_norm_fwd(cmd, &bn), "batch_norm_fwd: y starts at element 2, not a whole");
    bn.y = &y;
    bn.x[1] = &v5;
    REFUSED(vka_batch_norm_fwd(cmd, &bn), "batch_norm_fwd: gamma holds 5 floats, needs 6");
    REFUSED(vka_batch_norm_shape(&bn, shape), "batch_norm: gamma");
    bn.x[1] = &v6;
    bn.saved[1] = &v5;
    REFUSED(vka_batch_norm_fwd(cmd, &bn), "batch_norm_fwd: saved1 (invstd) holds 5");
    bn.saved[1] = &v6b;
    bn.x[0] = &xf;
    REFUSED(vka_batch_norm_fwd(cmd, &bn), "batch_norm_fwd: x is (108,1,1,1) flat");
    bn.x[0] = &one;
    bn.y = &one_y;
    REFUSED(vka_batch_norm_fwd(cmd, &bn), "batch_norm_fwd: training needs more than one value");
    bn.x[0] = &x;
    bn.y = &y;
    bn.p.norm.training = false;
    REFUSED(vka_batch_norm_fwd(cmd, &bn), "batch_norm_fwd: eval mode needs state0");
    bn.p.norm.training = true;
    bn.dy = &y;
    bn.dx[0] = &y2;
    REFUSED(vka_batch_norm_bwd(cmd, &bn), "batch_norm_bwd: dx is (2,6,3,4)");
    bn.dx[0] = &y;
    bn.saved[0] = NULL;
    REFUSED(vka_batch_norm_bwd(cmd, &bn), "batch_norm_bwd: saved0 (mean) is missing");
    bn.saved[0] = &v6;
    bn.dx[2] = &v4;
    REFUSED(vka_batch_norm_bwd(cmd, &bn), "batch_norm_bwd: dbeta holds 4 floats, needs 6");
    bn.dy = &y2;
    bn.dx[2] = NULL;
    REFUSED(vka_batch_norm_bwd(cmd, &bn), "batch_norm_bwd: dy is (2,6,3,4)");

    struct vka_op_args gn = {
        .p.norm = { .groups = 4, .eps = EPS },
        .x = { &x, NULL, NULL }, .y = &y, .saved = { &v4, &v4 },
    };
    REFUSED(vka_group_norm_shape(&gn, shape), "group_norm: groups=4 does not divide C=6");
    REFUSED(vka_group_norm_fwd(cmd, &gn), "group_norm_fwd: groups=4 does not divide C=6");
    gn.p.norm.groups = 0;
    REFUSED(vka_group_norm_fwd(cmd, &gn), "groups=0");
    gn.p.norm.groups = 3;
    REFUSED(vka_group_norm_fwd(cmd, &gn), "group_norm_fwd: saved0 (mean) holds 4 floats, needs 6");
    gn.saved[0] = gn.saved[1] = &v6;
    gn.state[0] = &v6;
    REFUSED(vka_group_norm_fwd(cmd, &gn), "group_norm has no running statistics");
    gn.state[0] = NULL;
    cr_assert_eq(vka_group_norm_shape(&gn, shape), 0, "%s", vka_last_error());
    cr_assert(shape[0] == 2 && shape[1] == 6 && shape[2] == 3 && shape[3] == 3);
    gn.dy = &y;
    gn.dx[1] = &v5;
    REFUSED(vka_group_norm_bwd(cmd, &gn), "group_norm_bwd: dgamma holds 5 floats, needs 6");
    gn.dx[1] = NULL;
    gn.saved[1] = &v5;
    REFUSED(vka_group_norm_bwd(cmd, &gn), "group_norm_bwd: saved1 (invstd) holds 5 floats, "
                                          "needs 6 (N*G, N=2 G=3)");
    gn.saved[1] = &v6;
    /* a fused activation: known kinds only, a slope in [0, 1], fwd and bwd */
    gn.p.norm.act = VKA_NORM_ACT_LEAKY_RELU;
    gn.p.norm.slope = -0.1f;
    REFUSED(vka_group_norm_fwd(cmd, &gn), "group_norm_fwd: activation 2 (slope -0.1) is none, "
                                         "relu or leaky_relu with a slope in [0, 1]");
    gn.p.norm.slope = NAN;
    REFUSED(vka_group_norm_shape(&gn, shape), "group_norm: activation 2");
    gn.p.norm.act = (enum vka_norm_act)3;
    REFUSED(vka_group_norm_fwd(cmd, &gn), "group_norm_fwd: activation 3");
    REFUSED(vka_group_norm_bwd(cmd, &gn), "group_norm_bwd: activation 3");
    gn.p.norm.act = VKA_NORM_ACT_NONE;
    test_run(cmd); /* nothing was recorded */

    vka_tensor_destroy(&x), vka_tensor_destroy(&y), vka_tensor_destroy(&y2);
    vka_tensor_destroy(&one), vka_tensor_destroy(&one_y), vka_tensor_destroy(&v6);
    vka_tensor_destroy(&v5), vka_tensor_destroy(&v4), vka_tensor_destroy(&v6b);
    vka_tensor_destroy(&xf);
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

/* ---- the planner's shortcuts ------------------------------------------------------ */

static float *read_flat(const struct vka_tensor *t)
{
    float *h = malloc(vka_tensor_numel(t) * 4);
    cr_assert_eq(vka_tensor_download(t, h), 0, "%s", vka_last_error());
    return h;
}

static void same_bits(const float *a, const float *b, size_t n, const char *op,
                      const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], 4))
            cr_assert_fail("%s: %s element %zu is %a, %a the usual way", op, what, i, a[i],
                           b[i]);
}

/* A gradient written over dy (INPLACE_DX: dx[0] == dy) has the bits of one added into a
 * zeroed dx, dgamma and dbeta too; a forward without y (SAVED_ONLY) writes the same
 * statistics as one with it. */
Test(norm, in_place_gradient_and_statistics_only_forward_keep_the_bits)
{
    test_seed("norm in place");
    struct vka_ctx *ctx = test_ctx();
    enum { N = 3, C = 6, H = 5, W = 4, G = 3 };
    size_t n = (size_t)N * C * H * W;
    for (int gn = 0; gn < 2; gn++) {
        const char *op = gn ? "group_norm" : "batch_norm";
        vka_op_rec_fn fwd = gn ? vka_group_norm_fwd : vka_batch_norm_fwd;
        vka_op_rec_fn bwd = gn ? vka_group_norm_bwd : vka_batch_norm_bwd;
        uint32_t ns = gn ? N * G : C;
        float *xh = test_rand_floats(n, -2, 2), *dyh = test_rand_floats(n, -1, 1);
        float *gh = test_rand_floats(C, 0.5f, 1.5f), *bh = test_rand_floats(C, -0.5f, 0.5f);
        float *zero = calloc(n, 4);
        struct vka_tensor x = test_act(ctx, N, C, H, W, xh), y = test_act(ctx, N, C, H, W, NULL);
        struct vka_tensor dy = test_act(ctx, N, C, H, W, dyh), dyx = test_act(ctx, N, C, H, W, dyh);
        struct vka_tensor dx = test_act(ctx, N, C, H, W, zero);
        struct vka_tensor gamma = test_flat(ctx, C, gh), beta = test_flat(ctx, C, bh);
        struct vka_tensor s[4], dg[2], db[2];
        for (int i = 0; i < 4; i++)
            s[i] = test_flat(ctx, ns, NULL);
        for (int i = 0; i < 2; i++) {
            dg[i] = test_flat(ctx, C, zero);
            db[i] = test_flat(ctx, C, zero);
        }
        union vka_op_params p = { .norm = { .eps = EPS, .momentum = MOMENTUM, .training = true,
                                            .groups = gn ? G : 0 } };
        struct vka_op_args f = { .p = p, .x = { &x, &gamma, &beta }, .y = &y,
                                 .saved = { &s[0], &s[1] } };
        struct vka_op_args fs = f;
        fs.y = NULL;
        fs.saved[0] = &s[2];
        fs.saved[1] = &s[3];
        struct vka_op_args b = f;
        b.dy = &dy;
        b.dx[0] = &dx;
        b.dx[1] = &dg[0];
        b.dx[2] = &db[0];
        struct vka_op_args bi = b;
        bi.dy = bi.dx[0] = &dyx;
        bi.dx[1] = &dg[1];
        bi.dx[2] = &db[1];
        struct vka_cmd *cmd;
        cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
        cr_assert_eq(vka_cmd_begin(cmd), 0);
        cr_assert_eq(fwd(cmd, &f), 0, "%s", vka_last_error());
        cr_assert_eq(fwd(cmd, &fs), 0, "%s", vka_last_error());
        cr_assert_eq(bwd(cmd, &b), 0, "%s", vka_last_error());
        cr_assert_eq(bwd(cmd, &bi), 0, "%s", vka_last_error());
        test_run(cmd);
        for (int i = 0; i < 2; i++) {
            float *want = read_flat(&s[i]), *got = read_flat(&s[2 + i]);
            same_bits(got, want, ns, op, i ? "invstd without y" : "mean without y");
            free(want);
            free(got);
        }
        float *want = malloc(n * 4), *got = malloc(n * 4);
        test_act_read(&dx, want);
        test_act_read(&dyx, got);
        same_bits(got, want, n, op, "dx over dy");
        for (int i = 0; i < 2; i++) {
            float *w = read_flat(i ? &db[0] : &dg[0]), *g = read_flat(i ? &db[1] : &dg[1]);
            same_bits(g, w, C, op, i ? "dbeta in place" : "dgamma in place");
            free(w);
            free(g);
        }
        free(want);
        free(got);
        vka_cmd_destroy(&cmd);
        struct vka_tensor *all[] = { &x, &y, &dy, &dyx, &dx, &gamma, &beta, &s[0], &s[1],
                                     &s[2], &s[3], &dg[0], &dg[1], &db[0], &db[1] };
        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
            vka_tensor_destroy(all[i]);
        free(xh);
        free(dyh);
        free(gh);
        free(bh);
        free(zero);
    }
    test_ctx_done(&ctx);
}

/* A batch_norm forward in training whose pixels per channel fit one block runs as one
 * dispatch (norm_bn1, the profile's norm_one_pass): y, the saved statistics and the
 * running ones have the bits of the three dispatches (norm_stats, norm_fin, norm_apply),
 * with every activation, padding channels (C = 10) and a full block (4 x 32 x 32 = 4096
 * pixels, the CPU profile's block). */
Test(norm, one_pass_batch_norm_keeps_the_bits)
{
    test_seed("norm one pass");
    struct vka_ctx *ctx = test_ctx();
    cr_assert(ctx->profile.norm_one_pass, "a CPU device runs small batch norms in one pass");
    uint32_t pb = ctx->profile.wg_size * 16 * ctx->profile.reduce_items; /* norm.c items */
    const uint32_t shapes[][4] = { { 3, 10, 5, 7 }, { 4, 10, 32, 32 } };
    for (int si = 0; si < 2; si++) {
        uint32_t N = shapes[si][0], C = shapes[si][1], H = shapes[si][2], W = shapes[si][3];
        cr_assert(N * H * W <= pb, "shape %d: %u pixels, a block holds %u", si, N * H * W, pb);
        size_t n = (size_t)N * C * H * W;
        float *xh = test_rand_floats(n, -2, 2);
        float *gh = test_rand_floats(C, 0.5f, 1.5f), *bh = test_rand_floats(C, -0.5f, 0.5f);
        float *rm = test_rand_floats(C, -0.2f, 0.2f), *rv = test_rand_floats(C, 0.5f, 2);
        struct vka_tensor x = test_act(ctx, N, C, H, W, xh);
        struct vka_tensor gamma = test_flat(ctx, C, gh), beta = test_flat(ctx, C, bh);
        for (int act = 0; act <= VKA_NORM_ACT_LEAKY_RELU; act++) {
            struct vka_tensor y[2], s[2][4];
            for (int k = 0; k < 2; k++) {
                y[k] = test_act(ctx, N, C, H, W, NULL);
                for (int i = 0; i < 2; i++)
                    s[k][i] = test_flat(ctx, C, NULL);
                s[k][2] = test_flat(ctx, C, rm);
                s[k][3] = test_flat(ctx, C, rv);
                union vka_op_params p = { .norm = { .eps = EPS, .momentum = MOMENTUM,
                                                    .training = true, .act = act,
                                                    .slope = 0.2f } };
                struct vka_op_args f = { .p = p, .x = { &x, &gamma, &beta }, .y = &y[k],
                                         .saved = { &s[k][0], &s[k][1] },
                                         .state = { &s[k][2], &s[k][3] } };
                ctx->profile.norm_one_pass = k == 0;
                struct vka_cmd *cmd;
                cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
                cr_assert_eq(vka_cmd_begin(cmd), 0);
                cr_assert_eq(vka_batch_norm_fwd(cmd, &f), 0, "%s", vka_last_error());
                test_run(cmd);
                vka_cmd_destroy(&cmd);
            }
            ctx->profile.norm_one_pass = true;
            float *got = malloc(n * 4), *want = malloc(n * 4);
            test_act_read(&y[0], got);
            test_act_read(&y[1], want);
            same_bits(got, want, n, act ? "batch_norm with an activation" : "batch_norm",
                      "one-pass y");
            static const char *const what[] = { "one-pass mean", "one-pass invstd",
                                                "one-pass running mean", "one-pass running var" };
            for (int i = 0; i < 4; i++) {
                float *g = read_flat(&s[0][i]), *w = read_flat(&s[1][i]);
                same_bits(g, w, C, "batch_norm", what[i]);
                free(g);
                free(w);
            }
            free(got);
            free(want);
            for (int k = 0; k < 2; k++) {
                vka_tensor_destroy(&y[k]);
                for (int i = 0; i < 4; i++)
                    vka_tensor_destroy(&s[k][i]);
            }
        }
        vka_tensor_destroy(&x), vka_tensor_destroy(&gamma), vka_tensor_destroy(&beta);
        free(xh), free(gh), free(bh), free(rm), free(rv);
    }
    test_ctx_done(&ctx);
}
