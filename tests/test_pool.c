/* The pool family (src/ops/pool.c): what only it has. Every op's results against the
 * reference (argmax ties and NaNs included), on both load paths, with NaN outputs, random
 * gradients, guard words, chunked bindings and micro-batch splits, are
 * tests/opcheck.c's (cases in tests/opcases.c); here: the refusal of bad shapes and
 * parameters, with messages that name the op, and a bwd without dx that records
 * nothing. */
#include <errno.h>
#include <string.h>

#include "common.h"
#include "ops/ops.h"

static void expect_refusal(int ret, const char *op, const char *what)
{
    cr_assert_eq(ret, -EINVAL, "%s: accepted (%d)", what, ret);
    cr_assert(strstr(vka_last_error(), op), "%s: the message does not name %s: %s", what, op,
              vka_last_error());
}

/* Bad shapes and parameters are refused with -EINVAL and a message naming the op; a NULL
 * dx records nothing. */
Test(pool, refusals)
{
    test_seed("refusals");
    struct vka_ctx *ctx = test_ctx();
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    struct vka_tensor x = test_act(ctx, 2, 3, 8, 6, NULL);
    struct vka_tensor y = test_act(ctx, 2, 3, 4, 3, NULL);
    struct vka_tensor bad_y = test_act(ctx, 2, 3, 4, 4, NULL);
    struct vka_tensor bad_dx = test_act(ctx, 2, 5, 8, 6, NULL);
    struct vka_tensor arg = test_flat(ctx, 2 * 3 * 4 * 3, NULL);
    struct vka_tensor short_arg = test_flat(ctx, 2 * 3 * 4 * 3 - 1, NULL);
    struct vka_tensor flat_x = test_flat(ctx, 2 * 3 * 8 * 6, NULL);
    uint32_t s[4];
    cr_assert_eq(vka_cmd_begin(cmd), 0);

    struct vka_op_args a = { .p.pool = { 2, 2, 0 }, .x = { &x }, .y = &y, .saved = { &arg },
                             .dy = &y, .dx = { &x } };
    struct vka_op_args b = a;
    b.y = &bad_y;
    expect_refusal(vka_max_pool2d_fwd(cmd, &b), "max_pool2d_fwd", "y of the wrong size");
    expect_refusal(vka_avg_pool2d_fwd(cmd, &b), "avg_pool2d_fwd", "y of the wrong size");
    struct vka_tensor odd_y = y; /* y's shape inside bad_y's memory, inside a vec4 */
    odd_y.buf = bad_y.buf;
    odd_y.off = 2;
    odd_y.owns_buf = false;
    b.y = &odd_y;
    expect_refusal(vka_avg_pool2d_fwd(cmd, &b), "avg_pool2d_fwd", "y inside a vec4");
    b = a;
    b.saved[0] = &short_arg;
    expect_refusal(vka_max_pool2d_fwd(cmd, &b), "max_pool2d_fwd", "a short argmax");
    b.saved[0] = NULL;
    expect_refusal(vka_max_pool2d_bwd(cmd, &b), "max_pool2d_bwd", "no argmax");
    b = a;
    b.dx[0] = &bad_dx;
    expect_refusal(vka_max_pool2d_bwd(cmd, &b), "max_pool2d_bwd", "dx of the wrong C");
    expect_refusal(vka_avg_pool2d_bwd(cmd, &b), "avg_pool2d_bwd", "dx of the wrong C");
    b = a;
    b.dy = &bad_y;
    expect_refusal(vka_avg_pool2d_bwd(cmd, &b), "avg_pool2d_bwd", "dy of the wrong size");
    b = a;
    b.p.pool = (struct vka_pool_desc){ 2, 2, 2 };
    expect_refusal(vka_max_pool2d_shape(&b, s), "max_pool2d", "pad > k/2");
    b.p.pool = (struct vka_pool_desc){ 9, 1, 0 };
    expect_refusal(vka_avg_pool2d_shape(&b, s), "avg_pool2d", "k > W + 2*pad");
    b.p.pool = (struct vka_pool_desc){ 2, 0, 0 };
    expect_refusal(vka_avg_pool2d_fwd(cmd, &b), "avg_pool2d_fwd", "stride 0");

    struct vka_op_args r = { .p.resize = { 4, 3 }, .x = { &x }, .y = &y, .dy = &y,
                             .dx = { &x } };
    b = r;
    b.p.resize = (struct vka_resize_desc){ 0, 3 };
    expect_refusal(vka_upsample_bilinear_shape(&b, s), "upsample_bilinear", "oh = 0");
    b = r;
    b.x[0] = &flat_x;
    expect_refusal(vka_upsample_nearest_fwd(cmd, &b), "upsample_nearest_fwd", "a FLAT x");
    b = r;
    b.y = &bad_y;
    expect_refusal(vka_upsample_nearest_fwd(cmd, &b), "upsample_nearest_fwd", "y of 4x4");
    b = r;
    b.dx[0] = &bad_dx;
    expect_refusal(vka_upsample_bilinear_bwd(cmd, &b), "upsample_bilinear_bwd", "dx of C=5");

    /* accepted: the shape rule, and a bwd without dx (records nothing) */
    cr_assert_eq(vka_upsample_bilinear_shape(&r, s), 0, "%s", vka_last_error());
    cr_assert(s[0] == 2 && s[1] == 3 && s[2] == 4 && s[3] == 3);
    b = a;
    b.dx[0] = NULL;
    cr_assert_eq(vka_max_pool2d_bwd(cmd, &b), 0, "%s", vka_last_error());
    test_run(cmd);

    vka_tensor_destroy(&x);
    vka_tensor_destroy(&y);
    vka_tensor_destroy(&bad_y);
    vka_tensor_destroy(&bad_dx);
    vka_tensor_destroy(&arg);
    vka_tensor_destroy(&short_arg);
    vka_tensor_destroy(&flat_x);
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}
