/* The loss family (src/ops/loss.c): what only it has. Every loss's results against the
 * reference (accumulators and gradients pre-filled, segmentation targets with ignored
 * and out-of-range ids, hinge's kink, the constant targets of bce_logits and hinge), on
 * both load paths, with guard words, chunked bindings and the accumulators' bits for
 * any split of a batch, are tests/opcheck.c's (cases and bounds in tests/opcases.c);
 * here: the refusal of bad shapes with messages that name the op and the tensor, a
 * metric's bwd that writes nothing, and the host helpers of loss.h. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "common.h"
#include "ops/loss.h"
#include "ops/ops.h"
#include "ref/ref.h"

static struct vka_tensor i32_tensor(struct vka_ctx *ctx, uint64_t off, uint64_t n,
                                    const int32_t *data)
{
    struct vka_tensor t = test_flat_guarded(ctx, off, n, NULL);
    t.dtype = VKA_I32;
    if (n)
        cr_assert_eq(vka_buf_upload(t.buf, off * 4, data, n * 4), 0, "%s", vka_last_error());
    return t;
}

/* ---- refusals, shapes and host helpers ------------------------------------------- */

static void expect_refused(int ret, const char *op, const char *name)
{
    cr_assert_eq(ret, -EINVAL, "%s accepted a bad %s (%d)", op, name, ret);
    cr_assert(strstr(vka_last_error(), op) && strstr(vka_last_error(), name),
              "message does not name %s and %s: %s", op, name, vka_last_error());
}

Test(loss, refuses_bad_shapes)
{
    test_seed("refuses_bad_shapes");
    struct vka_ctx *ctx = test_ctx();
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    int32_t ids[18] = { 0 };
    struct vka_tensor x = test_act(ctx, 2, 5, 3, 3, NULL), t18 = i32_tensor(ctx, 0, 18, ids);
    struct vka_tensor t17 = i32_tensor(ctx, 0, 17, ids), xf = test_act(ctx, 2, 5, 3, 3, NULL);
    struct vka_tensor tf = test_act(ctx, 2, 5, 3, 4, NULL), dx = test_act(ctx, 2, 4, 3, 3, NULL);
    struct vka_tensor w4 = test_flat(ctx, 4, NULL), y2 = test_flat(ctx, 2, NULL);
    struct vka_tensor y3 = test_flat(ctx, 3, NULL), y10 = test_flat(ctx, 10, NULL);
    struct vka_tensor dy9 = test_flat(ctx, 9, NULL), flat = test_flat(ctx, 90, NULL);
    struct vka_tensor f18 = test_flat(ctx, 18, NULL);

#define ARGS(...) (&(struct vka_op_args){ .p.loss.ignore_index = 255, __VA_ARGS__ })
    expect_refused(vka_cross_entropy_fwd(cmd, ARGS(.x = { &x, &t17 }, .y = &y2)),
                   "cross_entropy", "x1 (targets)");
    expect_refused(vka_cross_entropy_fwd(cmd, ARGS(.x = { &x, &f18 }, .y = &y2)),
                   "cross_entropy", "x1 (targets)");
    expect_refused(vka_cross_entropy_fwd(cmd, ARGS(.x = { &x, &t18, &w4 }, .y = &y2)),
                   "cross_entropy", "x2 (class weights)");
    expect_refused(vka_cross_entropy_fwd(cmd, ARGS(.x = { &x, &t18 }, .y = &y3)),
                   "cross_entropy", "y");
    expect_refused(vka_cross_entropy_fwd(cmd, ARGS(.x = { &flat, &t18 }, .y = &y2)),
                   "cross_entropy", "x0");
    expect_refused(vka_mse_fwd(cmd, ARGS(.x = { &x, &tf }, .y = &y2)), "mse", "x1");
    expect_refused(vka_l1_fwd(cmd, ARGS(.x = { &x, NULL }, .y = &y2)), "l1", "x1");
    expect_refused(vka_bce_logits_bwd(cmd, ARGS(.x = { &x, &xf }, .dx = { &dx })),
                   "bce_logits", "dx0");
    expect_refused(vka_dice_fwd(cmd, ARGS(.x = { &x, &t18 }, .y = &y2)), "dice", "y");
    expect_refused(vka_dice_bwd(cmd, ARGS(.x = { &x, &t18 }, .dy = &dy9, .dx = { &xf })),
                   "dice", "dy");

    uint32_t shape[4];
    cr_assert_eq(vka_cross_entropy_shape(ARGS(.x = { &x, &t18 }), shape), 0);
    cr_assert(shape[0] == 2 && shape[1] == 1 && shape[2] == 1 && shape[3] == 1);
    cr_assert_eq(vka_dice_shape(ARGS(.x = { &x, &t18 }), shape), 0);
    cr_assert(shape[0] == 10 && shape[1] == 1 && shape[2] == 1 && shape[3] == 1);
    cr_assert_eq(vka_mse_shape(ARGS(.x = { &x, &xf }), shape), 0);
    cr_assert_eq(shape[0], 2);
    expect_refused(vka_bce_logits_shape(ARGS(.x = { &x, &tf }), shape), "bce_logits", "x1");
    /* the accepted calls above recorded nothing; the recorder still runs */
    test_run(cmd);

    struct vka_tensor *all[] = { &x, &t18, &t17, &xf, &tf, &dx, &w4, &y2, &y3, &y10,
                                 &dy9, &flat, &f18 };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        vka_tensor_destroy(all[i]);
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

Test(loss, gan_losses_refuse_bad_shapes)
{
    test_seed("gan_losses_refuse_bad_shapes");
    struct vka_ctx *ctx = test_ctx();
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    struct vka_tensor x = test_act(ctx, 2, 5, 3, 3, NULL), t = test_act(ctx, 2, 5, 3, 3, NULL);
    struct vka_tensor tw = test_act(ctx, 2, 5, 3, 4, NULL), dx = test_act(ctx, 2, 4, 3, 3, NULL);
    struct vka_tensor dxok = test_act(ctx, 2, 5, 3, 3, NULL), y2 = test_flat(ctx, 2, NULL);
    struct vka_tensor y3 = test_flat(ctx, 3, NULL), flat = test_flat(ctx, 90, NULL);

    for (int lin = 0; lin < 2; lin++) {
        union vka_op_params p = { .loss = { .hinge_linear = lin } };
        expect_refused(vka_hinge_fwd(cmd, &(struct vka_op_args){ .p = p, .x = { &x, &tw },
                                                                  .y = &y2 }),
                       "hinge", "x1 (targets)");
        expect_refused(vka_hinge_fwd(cmd, &(struct vka_op_args){ .p = p, .x = { &x, &t },
                                                                  .y = &y3 }),
                       "hinge", "y");
        expect_refused(vka_hinge_bwd(cmd, &(struct vka_op_args){ .p = p, .x = { &x, &t },
                                                                  .dx = { &dx } }),
                       "hinge", "dx0");
        expect_refused(vka_hinge_shape(&(struct vka_op_args){ .p = p, .x = { &flat, &t } },
                                       (uint32_t[4]){ 0 }),
                       "hinge", "x0");
    }
    expect_refused(vka_sigmoid_mean_fwd(cmd, &(struct vka_op_args){ .x = { &x }, .y = &y3 }),
                   "sigmoid_mean", "y");
    expect_refused(vka_sigmoid_mean_fwd(cmd, &(struct vka_op_args){ .x = { &flat }, .y = &y2 }),
                   "sigmoid_mean", "x0");
    expect_refused(vka_sigmoid_mean_bwd(cmd, &(struct vka_op_args){ .x = { &x },
                                                                     .dx = { &dx } }),
                   "sigmoid_mean", "dx0");

    uint32_t shape[4];
    cr_assert_eq(vka_hinge_shape(&(struct vka_op_args){ .x = { &x, &t } }, shape), 0);
    cr_assert(shape[0] == 2 && shape[1] == 1 && shape[2] == 1 && shape[3] == 1);
    /* x1 NULL is the constant-target mode, for hinge and bce_logits only */
    cr_assert_eq(vka_hinge_shape(&(struct vka_op_args){ .x = { &x } }, shape), 0, "%s",
                 vka_last_error());
    cr_assert_eq(vka_bce_logits_shape(&(struct vka_op_args){ .x = { &x } }, shape), 0, "%s",
                 vka_last_error());
    expect_refused(vka_mse_shape(&(struct vka_op_args){ .x = { &x } }, shape), "mse",
                   "x1 (targets)");
    cr_assert_eq(vka_sigmoid_mean_shape(&(struct vka_op_args){ .x = { &x } }, shape), 0,
                 "%s", vka_last_error());
    cr_assert(shape[0] == 2 && shape[1] == 1 && shape[2] == 1 && shape[3] == 1);
    /* a metric's bwd with a good dx records nothing: dx stays NaN, padding included */
    cr_assert_eq(vka_sigmoid_mean_bwd(cmd, &(struct vka_op_args){ .x = { &x },
                                                                  .dx = { &dxok } }), 0);
    test_run(cmd);
    float raw[2 * 3 * 3 * 8];
    cr_assert_eq(vka_buf_download(dxok.buf, dxok.off * 4, raw, sizeof(raw)), 0);
    for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++)
        cr_assert(isnan(raw[i]), "sigmoid_mean bwd wrote %g into dx[%zu]", raw[i], i);

    struct vka_tensor *all[] = { &x, &t, &tw, &dx, &dxok, &y2, &y3, &flat };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        vka_tensor_destroy(all[i]);
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

/* vka_dice_loss, the host half of dice's bwd: the loss and dy = [dL/dinter, dL/dcard]
 * against the reference on the same floats. It computes in double from them, so only
 * dy's rounding to float (2^-24 relative) separates the two. */
Test(loss, dice_loss_host_helper)
{
    test_seed("dice_loss_host_helper");
    for (int k = 0; k < 20; k++) {
        uint32_t C = test_rand_range(1, 16);
        float tot[32], dy[32];
        double rt[32], rdy[32] = { 0 };
        for (uint32_t c = 0; c < C; c++) { /* inter <= sum p and <= the class count */
            tot[c] = test_rand_uniform(0, 50);
            tot[C + c] = 2 * tot[c] + test_rand_uniform(0.1f, 50);
        }
        for (uint32_t i = 0; i < 2 * C; i++)
            rt[i] = tot[i];
        double loss = vka_dice_loss(tot, C, 1.0, 1.0, dy);
        ref_dice_loss_from_sums_bwd(rt, rt + C, (int)C, 1.0, 1.0, rdy, rdy + C);
        cr_assert_float_eq(loss, ref_dice_loss_from_sums(rt, rt + C, (int)C, 1.0), 1e-12);
        test_assert_close("vka_dice_loss dy", dy, rdy, 2 * C, 1e-30, 1.2e-7);
    }
}

Test(loss, check_targets_names_the_value)
{
    const int32_t good[] = { 0, 4, 255, 2, 255 }, bad[] = { 0, 1, 255, 7, 2 };
    const int32_t neg[] = { -100, -1 };
    cr_assert_eq(vka_loss_check_targets(good, 5, 5, 255), 0);
    cr_assert_eq(vka_loss_check_targets(bad, 5, 5, 255), -EINVAL);
    cr_assert(strstr(vka_last_error(), "element 3 is 7"), "%s", vka_last_error());
    cr_assert_eq(vka_loss_check_targets(neg, 2, 5, -100), -EINVAL);
    cr_assert(strstr(vka_last_error(), "element 1 is -1"), "%s", vka_last_error());
    cr_assert_eq(vka_loss_check_targets(neg, 1, 5, -100), 0);
}
