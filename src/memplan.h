/* Device memory predicted before anything is allocated (beside train.c): the bytes per
 * accountant category (vk.h) that an engine's graphs, optimizers, plans and staging
 * buffer will hold at the peak of a run, summed as the accountant sums them. The engines
 * fill one from their graphs built but not allocated (vka_seg_plan_memory,
 * vka_gan_plan_memory); `--plan` prints it, `--micro-batch auto` searches it.
 *
 * What it counts: every graph's regions (parameters and running statistics, gradient
 * accumulators, loss accumulators, and with --accumulate exact their exact twins), each optimizer's state and scratch, each graph's one
 * arena (the largest of its plans: training at the micro-batch, the remainder window's,
 * evaluation's), and the staging buffer (the largest transfer, up to its chunk). */
#ifndef VKA_MEMPLAN_H
#define VKA_MEMPLAN_H

#include "graph.h"
#include "optim.h"

struct vka_mem_plan {
    uint64_t cat[VKA_MEM_CAT_COUNT]; /* bytes per category */
    uint64_t total;                  /* their sum (vka_mem_plan_sum) */
    struct vka_plan_mem train;       /* the (largest) training plan, with its breakdown */
    uint64_t staging_transfer;       /* the largest transfer seen */
};

/* A graph's regions. */
void vka_mem_plan_graph(struct vka_mem_plan *m, struct vka_graph *g);
/* A graph's arena: the largest of the plans (phase, n, backward) given; the largest
 * training plan is kept in m->train for its breakdown. */
int vka_mem_plan_arena(struct vka_mem_plan *m, struct vka_graph *g, const int *phases,
                       const uint32_t *n, const bool *backward, uint32_t nplans);
void vka_mem_plan_optim(struct vka_mem_plan *m, struct vka_ctx *ctx,
                        const struct vka_optim_params *p);
/* A transfer through the staging buffer of `bytes`. */
void vka_mem_plan_transfer(struct vka_mem_plan *m, uint64_t bytes);
/* Fills total (and the staging category). */
void vka_mem_plan_sum(struct vka_mem_plan *m);

/* An engine's prediction for micro-batch b under a recompute mode. */
typedef int (*vka_mem_predict_fn)(void *user, uint32_t b, enum vka_recompute mode,
                                  struct vka_mem_plan *m);
/* The largest micro-batch in [1, max_b] whose prediction fits budget under mode (0 when
 * none does), and its prediction in m (that of micro-batch 1 when none fits). Predictions
 * only: nothing is tried on the device. */
int vka_mem_fit(vka_mem_predict_fn fn, void *user, uint32_t max_b, enum vka_recompute mode,
                uint64_t budget, uint32_t *b, struct vka_mem_plan *m);

#endif
