/* The op table: one row per line of ops.def, and the shapes of what fwd saves. */
#include "ops/ops.h"

/* ops.def's short flag names */
#define R_X0 VKA_OP_R_X0
#define R_X1 VKA_OP_R_X1
#define R_X2 VKA_OP_R_X2
#define R_Y VKA_OP_R_Y
#define R_SAVED VKA_OP_R_SAVED
#define R_STATE VKA_OP_R_STATE
#define R_DY VKA_OP_R_DY
#define LOSS VKA_OP_LOSS
#define RUNNING VKA_OP_RUNNING
#define SPLIT VKA_OP_SPLIT
#define INPLACE_DX VKA_OP_INPLACE_DX
#define SAVED_ONLY VKA_OP_SAVED_ONLY
#define INPLACE_Y VKA_OP_INPLACE_Y
#define FRESH_DX VKA_OP_FRESH_DX

const struct vka_op_info vka_ops[VKA_OP_COUNT] = {
#define VKA_OP(name, family, params, saved0, saved1, flags)                               \
    [VKA_OP_##name] = { #name, #family, vka_##name##_shape, vka_##name##_fwd,             \
                        vka_##name##_bwd, VKA_PARAMS_##params,                            \
                        { VKA_SAVED_##saved0, VKA_SAVED_##saved1 }, (flags) },
#include "ops/ops.def"
#undef VKA_OP
};

bool vka_op_saved_shape(enum vka_op op, int i, const struct vka_op_args *a,
                        const uint32_t y[4], struct vka_saved_shape *s)
{
    const struct vka_tensor *x = a->x[0];
    switch (vka_ops[op].saved[i]) {
    case VKA_SAVED_PER_C:
        *s = (struct vka_saved_shape){ x->c, 1, 1, 1, false };
        return true;
    case VKA_SAVED_PER_NG:
        *s = (struct vka_saved_shape){ x->n, a->p.norm.groups, 1, 1, true };
        return true;
    case VKA_SAVED_LIKE_Y:
        *s = (struct vka_saved_shape){ y[0], y[1], y[2], y[3], true };
        return true;
    case VKA_SAVED_NONE:
        break;
    }
    return false;
}
