/* --profile's tables; see profile.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/profile.h"
#include "log.h"

int cli_profile_begin(struct vka_ctx *ctx, bool by_layer)
{
    if (!ctx->info.timestamps) {
        fprintf(stderr, "vkaccum: --profile: device %s has no compute timestamps\n",
                ctx->info.name);
        return 1;
    }
    if (vka_timing_create(&ctx->timing) < 0) {
        fprintf(stderr, "vkaccum: --profile: out of memory\n");
        return 1;
    }
    ctx->timing->by_layer = by_layer;
    return 0;
}

static double steps_of(const struct vka_timing *t, uint32_t windows_per_step)
{
    double s = (double)t->windows / (windows_per_step ? windows_per_step : 1);
    return s > 0 ? s : 1;
}

static double total_ms(const struct vka_timing *t, double *by_pass)
{
    double sum = 0;
    for (int k = 0; k < VKA_PASS_COUNT; k++)
        by_pass[k] = 0;
    for (uint32_t i = 0; i < t->nrows; i++) {
        by_pass[t->rows[i].pass] += t->rows[i].ms;
        sum += t->rows[i].ms;
    }
    return sum > 0 ? sum : 1;
}

void cli_profile_print(const struct vka_timing *t, uint32_t windows_per_step,
                       const char *unit, double wall_ms)
{
    double steps = steps_of(t, windows_per_step), by_pass[VKA_PASS_COUNT];
    double sum = total_ms(t, by_pass);
    struct vka_timing_row *r = vka_timing_sorted(t, false), *k = vka_timing_sorted(t, true);
    if (!r || !k) {
        free(r);
        free(k);
        return;
    }
    printf("profile over %.0f %s(s): %.1f ms of device time per %s", steps, unit, sum / steps,
           unit);
    if (wall_ms > 0)
        printf(" (%.1f ms wall)", wall_ms);
    printf("\n  by pass:");
    for (int k = 0; k < VKA_PASS_COUNT; k++)
        printf(" %s %.1f %%%s", vka_pass_name((enum vka_pass)k), 100 * by_pass[k] / sum,
               k + 1 < VKA_PASS_COUNT ? "," : "\n");
    int w = 20; /* the op column: wider for --profile-layers' labels */
    for (uint32_t i = 0; i < t->nrows && i < CLI_PROFILE_TOP; i++)
        w = (int)strlen(r[i].op) > w ? (int)strlen(r[i].op) : w;
    printf("  %-*s %-12s %12s %7s %8s %11s\n", w, "op", "pass", "ms/step", "share", "GFLOP/s",
           "dispatches");
    for (uint32_t i = 0; i < t->nrows && i < CLI_PROFILE_TOP; i++) {
        char gf[16] = "";
        if (r[i].flops > 0 && r[i].ms > 0)
            snprintf(gf, sizeof(gf), "%.2f", r[i].flops / (r[i].ms * 1e6));
        printf("  %-*s %-12s %12.1f %6.1f%% %8s %11.0f\n", w, r[i].op,
               vka_pass_name(r[i].pass), r[i].ms / steps, 100 * r[i].ms / sum, gf,
               r[i].dispatches / steps);
    }
    printf("  by kernel:\n  %-24s %-12s %8s %7s %11s\n", "kernel", "pass", "ms/step", "share",
           "dispatches");
    for (uint32_t i = 0; i < t->nkernels && i < CLI_PROFILE_TOP_KERNELS; i++)
        printf("  %-24s %-12s %8.1f %6.1f%% %11.0f\n", k[i].op, vka_pass_name(k[i].pass),
               k[i].ms / steps, 100 * k[i].ms / sum, k[i].dispatches / steps);
    free(r);
    free(k);
}

/* The rows of a table (sorted, n of them) into array: their name under key, pass, time
 * and share per step, GFLOP/s (op rows only), dispatches. */
static void rows_json(cJSON *array, const struct vka_timing_row *r, uint32_t n, const char *key,
                      double steps, double sum)
{
    for (uint32_t i = 0; r && i < n; i++) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, key, r[i].op);
        cJSON_AddStringToObject(j, "pass", vka_pass_name(r[i].pass));
        cJSON_AddNumberToObject(j, "ms_per_step", r[i].ms / steps);
        cJSON_AddNumberToObject(j, "share", r[i].ms / sum);
        if (!strcmp(key, "op"))
            cJSON_AddNumberToObject(j, "gflops", r[i].ms > 0 ? r[i].flops / (r[i].ms * 1e6) : 0);
        cJSON_AddNumberToObject(j, "dispatches_per_step", r[i].dispatches / steps);
        cJSON_AddItemToArray(array, j);
    }
}

cJSON *cli_profile_json(const struct vka_timing *t, uint32_t windows_per_step)
{
    double steps = steps_of(t, windows_per_step), by_pass[VKA_PASS_COUNT];
    double sum = total_ms(t, by_pass);
    struct vka_timing_row *r = vka_timing_sorted(t, false), *k = vka_timing_sorted(t, true);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "steps", steps);
    cJSON_AddNumberToObject(o, "device_ms_per_step", sum / steps);
    rows_json(cJSON_AddArrayToObject(o, "rows"), r, t->nrows, "op", steps, sum);
    rows_json(cJSON_AddArrayToObject(o, "kernels"), k, t->nkernels, "kernel", steps, sum);
    free(r);
    free(k);
    return o;
}

void cli_profile_end(struct vka_ctx *ctx, bool print, uint32_t windows_per_step,
                     const char *unit)
{
    if (!ctx || !ctx->timing)
        return;
    if (print)
        cli_profile_print(ctx->timing, windows_per_step, unit, 0);
    vka_timing_destroy(&ctx->timing);
}
