/* The act family (src/ops/act.c): what only it has. Every op's results against the
 * reference, on both load paths, with NaN outputs, random gradients, guard words, chunked
 * bindings and micro-batch splits, are tests/opcheck.c's (cases in tests/opcases.c);
 * here: the refusal of bad shapes, offsets and missing tensors, with messages that name
 * the op. */
#include <errno.h>
#include <string.h>

#include "common.h"
#include "ops/ops.h"

/* fn(a) is refused with -EINVAL and a message that starts with "op:" (and holds also
 * when given). */
static void refused(struct vka_cmd *cmd, vka_op_rec_fn fn, const struct vka_op_args *a,
                    const char *op, const char *also)
{
    vka_clear_error();
    int ret = fn(cmd, a);
    const char *err = vka_last_error();
    cr_assert_eq(ret, -EINVAL, "%s: not refused (%d)", op, ret);
    cr_assert(!strncmp(err, op, strlen(op)) && err[strlen(op)] == ':',
              "%s: message does not name the op: %s", op, err);
    cr_assert(!also || strstr(err, also), "%s: message lacks \"%s\": %s", op, also, err);
}

Test(act, refusals)
{
    test_seed("refusals");
    struct vka_ctx *ctx = test_ctx();
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0);
    struct vka_tensor a = test_act(ctx, 2, 5, 3, 4, NULL);  /* (2,5,3,4) */
    struct vka_tensor a2 = test_act(ctx, 2, 5, 3, 4, NULL);
    struct vka_tensor c6 = test_act(ctx, 2, 6, 3, 4, NULL); /* other C */
    struct vka_tensor h2 = test_act(ctx, 2, 5, 2, 4, NULL); /* other H */
    struct vka_tensor w5 = test_act(ctx, 2, 5, 3, 5, NULL); /* other W */
    struct vka_tensor n1 = test_act(ctx, 1, 5, 3, 4, NULL); /* other N */
    struct vka_tensor c11 = test_act(ctx, 2, 11, 3, 4, NULL);
    struct vka_tensor c12 = test_act(ctx, 2, 12, 3, 4, NULL);
    struct vka_tensor flat = test_flat(ctx, 2 * 5 * 3 * 4, NULL);
    flat.n = 2, flat.c = 5, flat.h = 3, flat.w = 4, flat.cs = 5;
    struct vka_tensor odd = a; /* an input view that starts inside a vec4 */
    odd.off = 2;
    odd.n = 1;
    odd.owns_buf = false;
    cr_assert_eq(vka_cmd_begin(cmd), 0);

    refused(cmd, vka_relu_fwd, &(struct vka_op_args){ .x = { &a }, .y = &c6 }, "relu", "y");
    refused(cmd, vka_leaky_relu_fwd, &(struct vka_op_args){ .x = { &flat }, .y = &a },
            "leaky_relu", "flat");
    refused(cmd, vka_tanh_bwd, &(struct vka_op_args){ .x = { &a }, .dy = &a, .dx = { &a2 } },
            "tanh_bwd", "y is missing");
    refused(cmd, vka_sigmoid_bwd, &(struct vka_op_args){ .y = &a, .dy = &h2, .dx = { &a2 } },
            "sigmoid_bwd", "dy");
    refused(cmd, vka_relu_bwd, &(struct vka_op_args){ .y = &a, .dy = &a, .dx = { &n1 } },
            "relu_bwd", "dx0");
    refused(cmd, vka_relu_bwd, &(struct vka_op_args){ .x = { &a }, .dy = &a, .dx = { &a2 } },
            "relu_bwd", "y is missing");
    refused(cmd, vka_leaky_relu_fwd,
            &(struct vka_op_args){ .p.slope = -0.1f, .x = { &a }, .y = &a2 }, "leaky_relu",
            "slope -0.1 is negative");
    refused(cmd, vka_scale_fwd, &(struct vka_op_args){ .x = { &odd }, .y = &n1 }, "scale",
            "not a multiple of 4");
    refused(cmd, vka_relu_fwd, &(struct vka_op_args){ .x = { &n1 }, .y = &odd }, "act_relu",
            "the output starts at element 2, not a whole vec4");
    refused(cmd, vka_scale_bwd, &(struct vka_op_args){ .dy = &a, .dx = { &c6 } },
            "scale_bwd", "dx0");
    refused(cmd, vka_add_fwd, &(struct vka_op_args){ .x = { &a, &w5 }, .y = &a2 }, "add",
            "x1");
    refused(cmd, vka_add_bwd, &(struct vka_op_args){ .dy = &a, .dx = { &a2, &c6 } },
            "add_bwd", "dx1");
    refused(cmd, vka_mul_fwd, &(struct vka_op_args){ .x = { &a, &a2 }, .y = &n1 }, "mul",
            "y");
    refused(cmd, vka_mul_bwd, &(struct vka_op_args){ .x = { &a }, .dy = &a, .dx = { &a2 } },
            "mul_bwd", "x1 is missing");
    refused(cmd, vka_concat_fwd, &(struct vka_op_args){ .x = { &a, &h2 }, .y = &c11 },
            "concat", "x1");
    refused(cmd, vka_concat_fwd, &(struct vka_op_args){ .x = { &a, &c6 }, .y = &c12 },
            "concat", "y");
    refused(cmd, vka_concat_bwd, &(struct vka_op_args){ .x = { &a, &c6 }, .dy = &c12,
            .dx = { &a2 } }, "concat_bwd", "dy has 12 channels, parts 5 + 6");
    refused(cmd, vka_concat_bwd, &(struct vka_op_args){ .x = { NULL, &c6 }, .dy = &c11,
            .dx = { NULL, &c6 } }, "concat_bwd", "x0 or dx0");

    uint32_t s[4];
    cr_assert_eq(vka_concat_shape(&(struct vka_op_args){ .x = { &a, &c6 } }, s), 0);
    cr_assert(s[0] == 2 && s[1] == 11 && s[2] == 3 && s[3] == 4, "concat shape (%u,%u,%u,%u)",
              s[0], s[1], s[2], s[3]);
    cr_assert_eq(vka_sigmoid_shape(&(struct vka_op_args){ .x = { &h2 } }, s), 0);
    cr_assert(s[0] == 2 && s[1] == 5 && s[2] == 2 && s[3] == 4);
    cr_assert_eq(vka_mul_shape(&(struct vka_op_args){ .x = { &a, &n1 } }, s), -EINVAL);
    cr_assert(!strncmp(vka_last_error(), "mul:", 4), "%s", vka_last_error());
    test_run(cmd); /* nothing was recorded */

    struct vka_tensor *all[] = { &a, &a2, &c6, &h2, &w5, &n1, &c11, &c12, &flat };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        vka_tensor_destroy(all[i]);
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}
