/* The op table: one row per line of ops.def. */
#include "ops/ops.h"

/* which families are losses (a new family needs its line here) */
#define IS_LOSS_conv false
#define IS_LOSS_norm false
#define IS_LOSS_act false
#define IS_LOSS_pool false
#define IS_LOSS_loss true

const struct vka_op_info vka_ops[VKA_OP_COUNT] = {
#define VKA_OP(name, family) \
    [VKA_OP_##name] = { #name, vka_##name##_shape, vka_##name##_fwd, vka_##name##_bwd, \
                        IS_LOSS_##family },
#include "ops/ops.def"
#undef VKA_OP
};
