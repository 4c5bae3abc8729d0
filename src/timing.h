/* Device time by op and pass (--profile): the trainers, while a vka_timing is set on the
 * context (ctx->timing), replay their plans and steps through timing recorders (a
 * timestamp before and after every dispatch and copy, vk.h) and add what each dispatch
 * took here, under the op it belongs to and its pass, with the FLOPs of that op's pass
 * (vka_graph_flops' count) so that a row's GFLOP/s can be read off. Summed over every
 * profiled run until read.
 *
 * Passes: forward; recompute (forwards run again before a backward, --recompute); input
 * gradient (a backward's dispatches but those below; a norm's dgamma/dbeta are computed
 * with its dx); weight gradient (a backward's conv_wgrad*, conv_bgrad and conv_reduce
 * kernels: a conv's or linear's dw and db); optimizer (optim_* kernels); copies (fill
 * and copy commands: zeroing gradients and accumulators, EMA and statistics copies).
 *
 * Owner: the caller of vka_timing_create; ctx->timing borrows it. */
#ifndef VKA_TIMING_H
#define VKA_TIMING_H

#include <stdbool.h>
#include <stdint.h>

#include "vk/vk.h"

enum vka_pass {
    VKA_PASS_FWD,
    VKA_PASS_RECOMPUTE,
    VKA_PASS_DGRAD,
    VKA_PASS_WGRAD,
    VKA_PASS_OPTIM,
    VKA_PASS_COPY,
    VKA_PASS_COUNT,
};

struct vka_timing_row {
    char op[48];        /* an op's name (ops.def), or the trainer's "optimizer", "clear";
                           by_layer: the op and its shapes, "conv2d 64>32 256x256" */
    enum vka_pass pass;
    double ms;          /* device time summed */
    double flops;       /* of the GEMMs, summed (0: not counted) */
    uint64_t dispatches;
};

struct vka_timing {
    struct vka_timing_row *rows;
    uint32_t nrows, cap;
    /* the same time by kernel (pipeline variant, "copy", "fill"; op holds its name, pass
     * its pass): which of an op's dispatches take it */
    struct vka_timing_row *kernels;
    uint32_t nkernels, kcap;
    uint64_t windows; /* trainer windows closed while profiled */
    bool by_layer;    /* rows per op and shapes (input > output channels, output size), so
                         that each layer of a model has rows of its own */
};

int vka_timing_create(struct vka_timing **t);
void vka_timing_destroy(struct vka_timing **t);

const char *vka_pass_name(enum vka_pass pass);

/* Adds ms, flops and dispatches to the row (op, pass). */
int vka_timing_add(struct vka_timing *t, const char *op, enum vka_pass pass, double ms,
                   double flops, uint64_t dispatches);
/* Adds the timed commands first .. first + count - 1 of cmd's last submission under op:
 * each in pass, or in the pass its kernel's name says (weight-gradient kernels of a
 * backward, optimizer kernels, fills and copies). Returns how many it added. */
int vka_timing_add_cmd(struct vka_timing *t, struct vka_cmd *cmd, uint32_t first,
                       uint32_t count, const char *op, enum vka_pass pass);

/* The rows (kernels: the kernel rows) sorted by device time, most first (a copy the
 * caller frees). */
struct vka_timing_row *vka_timing_sorted(const struct vka_timing *t, bool kernels);

#endif
