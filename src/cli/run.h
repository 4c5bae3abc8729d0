/* The run folder that `seg train` and `gan train` share, in one place: the options read
 * back from RUN/config.json (each key checked as the command line checks it), config.json
 * written atomically, metrics.jsonl with every write checked and, on --resume, cut back to
 * the checkpoint's step, and the data loader's position kept in a checkpoint.
 *
 * Errors go through vka_err (vka_last_error()); the caller prints them. */
#ifndef VKA_CLI_RUN_H
#define VKA_CLI_RUN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "cli/opts.h"
#include "datasets/dataset.h"
#include "safetensors.h"

/* --resume RUN (the table's "resume" option, already parsed into o): resets o with
 * defaults, reads RUN/config.json into it (an unknown key, a value of the wrong type or
 * out of range is an error naming the file and the key), then parses this command line
 * on top (skip as for cli_opts_parse); "out" defaults to RUN. Returns 0, CLI_USAGE after
 * a usage error, or 1 after printing "vkaccum CMD: --resume RUN: why". */
int run_resume_opts(const char *cmd, const struct opt_desc *table, size_t n, void *o,
                    void (*defaults)(void *o), int argc, char **argv, const char **skip);

/* Makes RUN and RUN/samples (mkdir -p) and writes RUN/config.json atomically. */
int run_folder_prepare(const char *dir, const struct opt_desc *table, size_t n, const void *o);

/* RUN/metrics.jsonl: one JSON object a line. Opened for a new run it is emptied; for a
 * resumed one, lines past `step` (logged after the checkpoint by a run that was then
 * stopped) and a torn last line are dropped first, so that no step appears twice. */
struct run_log {
    FILE *f;
    char path[1040];
    uint64_t dropped; /* lines dropped on resume */
};
int run_log_open(struct run_log *l, const char *dir, bool resume, uint64_t step);
/* One line (printf-style, without the newline), written and flushed; a failed write
 * (a full disk) is an error naming the file. */
int run_log_printf(struct run_log *l, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
int run_log_close(struct run_log *l); /* 0 when never opened */

/* The clock of a training run: images per second between window boundaries and the
 * elapsed time; tty says whether stderr is a terminal (a progress line there, plain
 * lines every 50 steps on stdout otherwise). */
struct run_pace {
    bool tty;
    double t0, tlast;
    uint64_t samples_last;
};
void run_pace_start(struct run_pace *p, uint64_t samples);
/* Images per second since the last tick (or the start); *elapsed: seconds since start. */
double run_pace_tick(struct run_pace *p, uint64_t samples, double *elapsed);
double run_pace_elapsed(const struct run_pace *p);
/* Whether step is one of every n (n 0: never), or the last. */
bool run_every(uint64_t step, int n, bool last);

/* SIGINT and SIGTERM ask a training run to stop at its next window boundary: it saves
 * last.safetensors there and exits 0 with the command that resumes it. The handler is
 * reset by the first signal, so a second one ends the process at once (the checkpoint on
 * disk stays whole: every save is atomic). */
void run_signals_install(void);
int run_stop_signal(void); /* the signal that asked to stop, or 0 */

/* A run of several processes (mpirun, src/dist.h): rank 0 alone writes the run folder,
 * prints, evaluates and saves (run_writes). At each window boundary every rank calls
 * run_boundary_sync: *samples becomes the run's samples (the sum of the ranks' own
 * counts, which the ranks then keep as rank 0 all, the others none, so the sum stays
 * the run's and rank 0's checkpoint holds it), and *sig the stop signal any rank got, so
 * that all stop at the same boundary. One process: both unchanged. */
bool run_writes(void);
/* --accumulate auto resolved (in place, before anything reads it or config.json records
 * it): exact over several ranks, else ordered; ordered over several ranks is a usage
 * error (CLI_USAGE after printing it), since its sums depend on how a window is split. */
int run_accumulate_mode(const char *cmd, char *mode, size_t size);
/* The trainers' sum of the ranks' exact accumulators (vka_combine_fn: vka_dist_sum_exact). */
int run_combine(void *user, uint32_t *words, uint64_t nelems);
/* With several ranks: prints the time run_combine took (waiting for the other ranks
 * included) against elapsed seconds of training. */
void run_print_combine_share(double elapsed);
int run_boundary_sync(uint64_t *samples, int *sig);
const char *run_signal_name(int sig);

/* RUN/curves.png redrawn (tools/plot.py) at each evaluation, in the background, one
 * drawing at a time; run_curves_finish waits for the last one (its exit status). A
 * missing matplotlib is said once and the run goes on without curves; VKACCUM_CURVES=0
 * turns the refresh off. */
struct run_curves {
    pid_t pid;
    bool off;
    char out[1100];
};
void run_curves_refresh(struct run_curves *c, const char *run);
int run_curves_finish(struct run_curves *c);

/* --tensorboard: event files in RUN/tb/ (src/tb.h). NULL tb: nothing is written. A
 * failed write ends the run like a failed metrics write. */
struct vka_tb;
int run_tb_open(struct vka_tb **tb, const char *run, bool on);
int run_tb_scalars(struct vka_tb *tb, uint64_t step, const char *const *tags,
                   const double *values, size_t n);
/* 8-bit pixels (c channels, rows top to bottom), encoded as PNG. */
int run_tb_image(struct vka_tb *tb, const char *tag, uint64_t step, uint32_t w, uint32_t h,
                 uint32_t c, const uint8_t *pixels);

/* After a failed save of path: makes sure the error names the file (a device error met
 * while the tensors were read back does not). */
void run_name_file(const char *path);

/* The loader's position as the checkpoint tensor "train.loader" (int64 [epoch, index]);
 * buf holds the values and must outlive the tensor. */
struct vka_st_tensor run_loader_tensor(struct vka_loader_pos pos, int64_t buf[2]);
/* The position read back from a checkpoint: train.loader must be int64 with exactly 2
 * elements, both >= 0 (vka_loader_seek checks them against the dataset). */
int run_loader_pos(const struct vka_st_file *f, struct vka_loader_pos *pos);

#endif
