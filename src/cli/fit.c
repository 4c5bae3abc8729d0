/* Fitting a run into device memory; see fit.h. */
#include <stdio.h>
#include <string.h>

#include "cli/fit.h"
#include "log.h"

static const char *const mode_names[] = { "none", "blocks", "all" };

const char *fit_mode_name(enum vka_recompute mode)
{
    return mode_names[mode];
}

enum vka_recompute fit_mode_of(const char *name)
{
    for (int m = 0; m < 3; m++)
        if (!strcmp(name, mode_names[m]))
            return (enum vka_recompute)m;
    return VKA_RECOMPUTE_NONE;
}

static double mib(uint64_t b)
{
    return (double)b / 1048576.0;
}

static void fmt_size(char *buf, size_t n, uint64_t b)
{
    if (b >= (1ull << 30))
        snprintf(buf, n, "%.2f GiB", (double)b / (1ull << 30));
    else
        snprintf(buf, n, "%.1f MiB", mib(b));
}

static int predict_err(const struct fit *f)
{
    fprintf(stderr, "vkaccum %s: predicting device memory: %s\n", f->cmd, vka_last_error());
    return 1;
}

/* The modes to try, in order: the one asked for, or (auto) none first, then the ones
 * that keep less. */
static int modes_of(const struct fit *f, enum vka_recompute modes[3])
{
    for (int m = 0; m < 3; m++)
        if (!strcmp(f->recompute, mode_names[m])) {
            modes[0] = (enum vka_recompute)m;
            return 1;
        }
    modes[0] = VKA_RECOMPUTE_NONE;
    modes[1] = VKA_RECOMPUTE_BLOCKS;
    modes[2] = VKA_RECOMPUTE_ALL;
    return 3;
}

/* The largest micro-batch of mode (up to f->micro when given) and its prediction. */
static int fit_mode(const struct fit *f, enum vka_recompute mode, uint32_t *b,
                    struct vka_mem_plan *m)
{
    if (!f->micro)
        return vka_mem_fit(f->fn, f->user, f->batch, mode, f->budget, b, m);
    int ret = f->fn(f->user, f->micro, mode, m);
    *b = ret == 0 && m->total <= f->budget ? f->micro : 0;
    return ret;
}

static int refuse(const struct fit *f, const struct vka_mem_plan *need, uint32_t b)
{
    char want[32], budget[32], hint[512] = "", alt[128];
    fmt_size(want, sizeof(want), need->total);
    fmt_size(budget, sizeof(budget), f->budget);
    size_t used = 0;
    /* the other recompute modes, at micro-batch 1 */
    for (int m = 0; m < 3; m++) {
        struct vka_mem_plan t;
        uint32_t fb;
        struct fit one = *f;
        one.micro = 1;
        if (!strcmp(f->recompute, mode_names[m]) || fit_mode(&one, (enum vka_recompute)m, &fb, &t) < 0 ||
            !fb)
            continue;
        fmt_size(alt, sizeof(alt), t.total);
        used += (size_t)snprintf(hint + used, sizeof(hint) - used, "%s--recompute %s (%s)",
                                 used ? " or " : "", mode_names[m], alt);
    }
    if (f->smaller && used < sizeof(hint) && f->smaller(f->user, alt, sizeof(alt)) == 0)
        used += (size_t)snprintf(hint + used, sizeof(hint) - used, "%s%s", used ? " or " : "",
                                 alt);
    fprintf(stderr, "vkaccum %s: needs %s of device memory at micro-batch %u (--recompute %s), "
            "the budget (%s) is %s; %s%s\n", f->cmd, want, b, f->recompute, f->budget_from,
            budget, used ? "fits with " : "nothing smaller of these options fits either",
            hint);
    return 1;
}

/* The first mode that fits and its largest micro-batch: 0, 1 when none fits (*micro and
 * *mode untouched, *need the first mode's prediction), or -1. */
static int choose(const struct fit *f, uint32_t *micro, enum vka_recompute *mode,
                  struct vka_mem_plan *need)
{
    enum vka_recompute modes[3];
    int nmodes = modes_of(f, modes);
    struct vka_mem_plan m;
    for (int i = 0; i < nmodes; i++) {
        uint32_t b;
        if (fit_mode(f, modes[i], &b, &m) < 0)
            return predict_err(f), -1;
        if (i == 0)
            *need = m;
        if (b) {
            *micro = b;
            *mode = modes[i];
            return 0;
        }
    }
    return 1;
}

int fit_resolve(const struct fit *f, uint32_t *micro, enum vka_recompute *mode)
{
    struct vka_mem_plan need;
    int ret = choose(f, micro, mode, &need);
    return ret == 1 ? refuse(f, &need, f->micro ? f->micro : 1) : ret ? 1 : 0;
}

int fit_choose(const struct fit *f, uint32_t *micro, enum vka_recompute *mode)
{
    struct vka_mem_plan need;
    return choose(f, micro, mode, &need) < 0 ? 1 : 0;
}

int fit_print_plan(const struct fit *f, uint32_t micro, enum vka_recompute mode)
{
    struct vka_mem_plan m;
    if (f->fn(f->user, micro, mode, &m) < 0)
        return predict_err(f);
    char budget[32];
    fmt_size(budget, sizeof(budget), f->budget);
    printf("memory plan of %s: batch %u as micro-batches of %u, --recompute %s%s%s; budget "
           "%s (%s)\n", f->cmd, f->batch, micro, mode_names[mode],
           f->accumulate ? ", --accumulate " : "", f->accumulate ? f->accumulate : "", budget,
           f->budget_from);
    if (f->accumulate && !strcmp(f->accumulate, "exact"))
        printf("  (gradients hold the exact accumulators: 16 bytes per parameter and loss "
               "value)\n");
    for (int c = 0; c < VKA_MEM_CAT_COUNT; c++)
        printf("  %-16s %10.1f MiB%s\n", vka_mem_cat_name((enum vka_mem_cat)c), mib(m.cat[c]),
               c == VKA_MEM_ACTIVATIONS ? "  (the arena: activations, their gradients, "
                                          "workspace)" : "");
    printf("  %-16s %10.1f MiB\n", "total", mib(m.total));
    const struct vka_plan_mem *t = &m.train;
    printf("alive at the training pass's peak: %.1f MiB (%u forward ops run again)\n",
           mib(t->live_peak), t->recomputed);
    for (uint32_t i = 0; i < t->nblocks; i++)
        if (t->blocks[i].bytes)
            printf("  %-16s %10.1f MiB\n", t->blocks[i].name, mib(t->blocks[i].bytes));
    printf("largest micro-batch within the budget:\n");
    for (int i = 0; i < 3; i++) {
        uint32_t b;
        if (vka_mem_fit(f->fn, f->user, f->batch, (enum vka_recompute)i, f->budget, &b, &m) < 0)
            return predict_err(f);
        char size[32];
        fmt_size(size, sizeof(size), m.total);
        if (b)
            printf("  --recompute %-7s %u (%s)\n", mode_names[i], b, size);
        else
            printf("  --recompute %-7s none (micro-batch 1 needs %s)\n", mode_names[i], size);
    }
    return 0;
}

int fit_apply(const struct fit *f, bool plan, int *micro, char *recompute, size_t n)
{
    uint32_t b = f->micro ? f->micro : 1;
    enum vka_recompute mode = fit_mode_of(f->recompute);
    if (plan ? fit_choose(f, &b, &mode) : fit_resolve(f, &b, &mode))
        return -1;
    *micro = (int)b;
    snprintf(recompute, n, "%s", mode_names[mode]);
    if (!plan)
        return 0;
    return fit_print_plan(f, b, mode) ? -1 : 1;
}
