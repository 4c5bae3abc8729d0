/* Fitting a training run into device memory, for `seg train` and `gan train`: the
 * micro-batch (--micro-batch auto) and recompute mode (--recompute auto) chosen from the
 * engine's predictions (memplan.h) against the budget, --plan's printout, and the
 * refusal that names what would fit. Predictions only: nothing is allocated here and
 * nothing is tried on the device. */
#ifndef VKA_CLI_FIT_H
#define VKA_CLI_FIT_H

#include "memplan.h"

struct fit {
    const char *cmd;          /* "seg train" */
    vka_mem_predict_fn fn;    /* the engine's prediction */
    void *user;
    uint32_t batch;           /* B: the largest micro-batch */
    uint32_t micro;           /* --micro-batch, 0: auto */
    const char *recompute;    /* --recompute: none, blocks, all or auto */
    const char *accumulate;   /* --accumulate (shown by --plan), or NULL */
    uint64_t budget;          /* bytes */
    const char *budget_from;  /* "--mem-budget" or the device's heap */
    /* a smaller configuration to suggest when nothing fits ("--crop 512"), or NULL */
    int (*smaller)(void *user, char *hint, size_t size);
};

/* Resolves *micro and *mode. Returns 0, or 1 after printing why nothing fits (what the
 * configuration needs, the budget, and what would fit). */
int fit_resolve(const struct fit *f, uint32_t *micro, enum vka_recompute *mode);
/* The same without the refusal: *micro and *mode keep what they hold when nothing fits
 * (what --plan shows then). Returns 0, or 1 after printing an error. */
int fit_choose(const struct fit *f, uint32_t *micro, enum vka_recompute *mode);
/* --plan: prints the prediction at the resolved micro-batch and mode (per category and
 * per block at the activation peak) and the largest micro-batch of each mode. */
int fit_print_plan(const struct fit *f, uint32_t micro, enum vka_recompute mode);

const char *fit_mode_name(enum vka_recompute mode);
/* --recompute's value as a mode: none for "auto" (resolved before an engine sees it). */
enum vka_recompute fit_mode_of(const char *name);

/* What both training commands do: resolves f (with plan: shows the plan, never
 * refuses) and writes the micro-batch and mode back into *micro and recompute (n bytes,
 * so that config.json records them). Returns 0 to go on, 1 after printing the plan, -1
 * after printing why nothing fits or an error. */
int fit_apply(const struct fit *f, bool plan, int *micro, char *recompute, size_t n);

#endif
