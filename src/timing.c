/* Device time by op and pass; see timing.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timing.h"

int vka_timing_create(struct vka_timing **t)
{
    *t = calloc(1, sizeof(**t));
    return *t ? 0 : -ENOMEM;
}

void vka_timing_destroy(struct vka_timing **t)
{
    if (!*t)
        return;
    free((*t)->rows);
    free((*t)->kernels);
    free(*t);
    *t = NULL;
}

const char *vka_pass_name(enum vka_pass pass)
{
    static const char *const names[VKA_PASS_COUNT] = {
        "forward", "recompute", "input grad", "weight grad", "optimizer", "copies",
    };
    return pass < VKA_PASS_COUNT ? names[pass] : "?";
}

/* The row (op, pass) of a table, added when new. */
static struct vka_timing_row *row_of(struct vka_timing_row **rows, uint32_t *n, uint32_t *cap,
                                     const char *op, enum vka_pass pass)
{
    for (uint32_t i = 0; i < *n; i++)
        if ((*rows)[i].pass == pass && !strcmp((*rows)[i].op, op))
            return &(*rows)[i];
    if (*n == *cap) {
        uint32_t c = *cap ? 2 * *cap : 64;
        struct vka_timing_row *r = realloc(*rows, c * sizeof(*r));
        if (!r)
            return NULL;
        *rows = r;
        *cap = c;
    }
    struct vka_timing_row *r = &(*rows)[(*n)++];
    *r = (struct vka_timing_row){ .pass = pass };
    snprintf(r->op, sizeof(r->op), "%s", op);
    return r;
}

int vka_timing_add(struct vka_timing *t, const char *op, enum vka_pass pass, double ms,
                   double flops, uint64_t dispatches)
{
    struct vka_timing_row *r = row_of(&t->rows, &t->nrows, &t->cap, op, pass);
    if (!r)
        return -ENOMEM;
    r->ms += ms;
    r->flops += flops;
    r->dispatches += dispatches;
    return 0;
}

static bool starts(const char *s, const char *prefix)
{
    return !strncmp(s, prefix, strlen(prefix));
}

/* The pass of a kernel run in an event of pass `pass`. */
static enum vka_pass pass_of(const char *kernel, enum vka_pass pass)
{
    if (starts(kernel, "fill") || starts(kernel, "copy"))
        return VKA_PASS_COPY;
    if (starts(kernel, "optim_"))
        return VKA_PASS_OPTIM;
    if (pass == VKA_PASS_DGRAD && (starts(kernel, "conv_wgrad") || starts(kernel, "conv_bgrad") ||
                                   starts(kernel, "conv_reduce")))
        return VKA_PASS_WGRAD;
    return pass;
}

int vka_timing_add_cmd(struct vka_timing *t, struct vka_cmd *cmd, uint32_t first,
                       uint32_t count, const char *op, enum vka_pass pass)
{
    uint32_t n = first + count;
    double *ms = malloc((n ? n : 1) * sizeof(*ms));
    const char **names = malloc((n ? n : 1) * sizeof(*names));
    int ret = ms && names ? 0 : -ENOMEM;
    if (ret == 0) {
        n = vka_cmd_timings(cmd, ms, n);
        vka_cmd_timed_names(cmd, names, n);
    }
    for (uint32_t i = first; ret == 0 && i < n; i++) {
        enum vka_pass p = pass_of(names[i], pass);
        struct vka_timing_row *k = row_of(&t->kernels, &t->nkernels, &t->kcap, names[i], p);
        ret = k ? vka_timing_add(t, op, p, ms[i], 0, 1) : -ENOMEM;
        if (ret == 0) {
            k->ms += ms[i];
            k->dispatches++;
        }
    }
    free(ms);
    free(names);
    return ret < 0 ? ret : (int)(n > first ? n - first : 0);
}

static int cmp_ms(const void *a, const void *b)
{
    const struct vka_timing_row *x = a, *y = b;
    return (x->ms < y->ms) - (x->ms > y->ms);
}

struct vka_timing_row *vka_timing_sorted(const struct vka_timing *t, bool kernels)
{
    uint32_t n = kernels ? t->nkernels : t->nrows;
    struct vka_timing_row *r = malloc((n ? n : 1) * sizeof(*r));
    if (r) {
        memcpy(r, kernels ? t->kernels : t->rows, n * sizeof(*r));
        qsort(r, n, sizeof(*r), cmp_ms);
    }
    return r;
}
