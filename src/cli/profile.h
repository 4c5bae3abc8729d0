/* --profile (bench train, seg train, gan train): device time per op and pass from
 * timestamp queries (src/timing.h), summed over the profiled windows and printed per
 * optimizer step: the share of each pass, then the 15 (op, pass) rows that took most,
 * with their share and, for the GEMMs, GFLOP/s. */
#ifndef VKA_CLI_PROFILE_H
#define VKA_CLI_PROFILE_H

#include <cjson/cJSON.h>

#include "timing.h"

#define CLI_PROFILE_TOP 15
#define CLI_PROFILE_TOP_KERNELS 10 /* rows of the table by kernel */

/* Starts timing the trainers of ctx (ctx->timing), by op or (--profile-layers) by op and
 * shapes; 1 after printing why not. */
int cli_profile_begin(struct vka_ctx *ctx, bool by_layer);
/* The profile as a table per step of `unit` (a step made of windows_per_step trainer
 * windows: a GAN iteration is d_steps + 1), beside the wall time per step when
 * wall_ms > 0. */
void cli_profile_print(const struct vka_timing *t, uint32_t windows_per_step,
                       const char *unit, double wall_ms);
/* The same rows (all of them) as JSON, per step. */
cJSON *cli_profile_json(const struct vka_timing *t, uint32_t windows_per_step);
/* Stops timing and frees the profile; with print, prints it first (cli_profile_print
 * without a wall time). Nothing when ctx was not profiled. */
void cli_profile_end(struct vka_ctx *ctx, bool print, uint32_t windows_per_step,
                     const char *unit);

#endif
