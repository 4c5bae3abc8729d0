/* The op table: one row per line of ops.def. */
#include "ops/ops.h"

const struct vka_op_info vka_ops[VKA_OP_COUNT] = {
#define VKA_OP(name, family) \
    [VKA_OP_##name] = { #name, vka_##name##_shape, vka_##name##_fwd, vka_##name##_bwd },
#include "ops/ops.def"
#undef VKA_OP
};
