/* Device memory predicted before allocating; see memplan.h. */
#include <string.h>

#include "memplan.h"

void vka_mem_plan_graph(struct vka_mem_plan *m, struct vka_graph *g)
{
    uint64_t params = vka_graph_region_bytes(g, VKA_VAL_PARAM);
    m->cat[VKA_MEM_PARAMS] += params + vka_graph_region_bytes(g, VKA_VAL_STATE);
    m->cat[VKA_MEM_GRADS] += params;
    m->cat[VKA_MEM_OTHER] += vka_graph_region_bytes(g, VKA_VAL_LOSS);
    /* --accumulate exact: 16 bytes for every gradient and loss float */
    m->cat[VKA_MEM_GRADS] += vka_graph_exact_bytes(g);
    /* a checkpoint reads the parameter and gradient regions whole, and the exact
     * accumulators (which a window's combine reads in part) */
    vka_mem_plan_transfer(m, params);
    vka_mem_plan_transfer(m, vka_graph_exact_bytes(g));
    /* vka_graph_alloc uploads each parameter and state value on its own */
    for (uint32_t v = 0; v < vka_graph_nvals(g); v++) {
        const struct vka_val *val = vka_graph_val(g, (int)v);
        if (val->kind == VKA_VAL_PARAM || val->kind == VKA_VAL_STATE)
            vka_mem_plan_transfer(m, 4ull * val->n * val->c * val->h * val->w);
    }
}

int vka_mem_plan_arena(struct vka_mem_plan *m, struct vka_graph *g, const int *phases,
                       const uint32_t *n, const bool *backward, uint32_t nplans)
{
    uint64_t arena = 0;
    for (uint32_t i = 0; i < nplans; i++) {
        struct vka_plan_mem pm;
        int ret = vka_graph_plan_mem(g, phases[i], n[i], backward[i], &pm);
        if (ret < 0)
            return ret;
        if (pm.arena > arena)
            arena = pm.arena;
        if (backward[i] && pm.arena > m->train.arena)
            m->train = pm;
    }
    m->cat[VKA_MEM_ACTIVATIONS] += arena;
    return 0;
}

void vka_mem_plan_optim(struct vka_mem_plan *m, struct vka_ctx *ctx,
                        const struct vka_optim_params *p)
{
    m->cat[VKA_MEM_OPTIM] += vka_optim_bytes(ctx, p);
    /* checkpoints read and write each state tensor whole */
    vka_mem_plan_transfer(m, p->count * sizeof(float));
}

void vka_mem_plan_transfer(struct vka_mem_plan *m, uint64_t bytes)
{
    if (bytes > m->staging_transfer)
        m->staging_transfer = bytes;
}

void vka_mem_plan_sum(struct vka_mem_plan *m)
{
    m->cat[VKA_MEM_STAGING] = vka_staging_bytes(m->staging_transfer);
    m->total = 0;
    for (int c = 0; c < VKA_MEM_CAT_COUNT; c++)
        m->total += m->cat[c];
}

int vka_mem_fit(vka_mem_predict_fn fn, void *user, uint32_t max_b, enum vka_recompute mode,
                uint64_t budget, uint32_t *b, struct vka_mem_plan *m)
{
    /* memory grows with b: bisect for the last b that fits */
    uint32_t lo = 0, hi = max_b; /* lo fits (0: trivially), hi + 1 does not */
    struct vka_mem_plan t;
    int ret = fn(user, 1, mode, m);
    if (ret < 0)
        return ret;
    if (m->total <= budget)
        lo = 1;
    else
        hi = 0;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2;
        if ((ret = fn(user, mid, mode, &t)) < 0)
            return ret;
        if (t.total <= budget) {
            lo = mid;
            *m = t;
        } else {
            hi = mid - 1;
        }
    }
    *b = lo;
    return 0;
}
