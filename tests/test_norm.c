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
    test_run(cmd); /* nothing was recorded */

    vka_tensor_destroy(&x), vka_tensor_destroy(&y), vka_tensor_destroy(&y2);
    vka_tensor_destroy(&one), vka_tensor_destroy(&one_y), vka_tensor_destroy(&v6);
    vka_tensor_destroy(&v5), vka_tensor_destroy(&v4), vka_tensor_destroy(&v6b);
    vka_tensor_destroy(&xf);
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}
