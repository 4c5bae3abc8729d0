/* The run folder shared by seg train and gan train; see run.h. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/run.h"
#include "dist.h"
#include "file.h"
#include "log.h"
#include "tb.h"

/* metrics.jsonl of a run of a million steps with an evaluation every hundred is about
 * 200 MiB; a file past 1 GiB is not one vkaccum wrote */
#define LOG_MAX_BYTES (1u << 30)

static const struct opt_desc *find_opt(const struct opt_desc *table, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(table[i].name, name))
            return &table[i];
    return NULL;
}

int run_resume_opts(const char *cmd, const struct opt_desc *table, size_t n, void *o,
                    void (*defaults)(void *o), int argc, char **argv, const char **skip)
{
    const struct opt_desc *dr = find_opt(table, n, "resume"), *dout = find_opt(table, n, "out");
    char run[1024], path[1100];
    snprintf(run, sizeof(run), "%s", (const char *)o + dr->off);
    snprintf(path, sizeof(path), "%s/config.json", run);
    defaults(o);
    cJSON *j = cli_read_json(path);
    if (!j || cli_opts_from_json(table, n, o, j, path) < 0) {
        fprintf(stderr, "vkaccum %s: --resume %s: %s\n", cmd, run, vka_last_error());
        cJSON_Delete(j);
        return 1;
    }
    cJSON_Delete(j);
    /* the run continues in RUN, wherever config.json says it was made (a run folder
     * copied or moved, another machine's mount), unless --out is given again */
    ((char *)o + dout->off)[0] = '\0';
    /* the run's accumulation mode (ordered when its config predates the option): its
     * checkpoint holds that mode's accumulators, so it resumes in that mode only */
    const struct opt_desc *da = find_opt(table, n, "accumulate");
    char mode[16] = "";
    if (da)
        snprintf(mode, sizeof(mode), "%s", (const char *)o + da->off);
    bool help;
    int ret = cli_opts_parse(cmd, argc, argv, table, n, o, NULL, skip, NULL, NULL, 0, &help);
    if (ret == 0 && da && strcmp(mode, (const char *)o + da->off)) {
        fprintf(stderr, "vkaccum %s: --resume %s: the run was trained with --accumulate %s "
                "(its config.json); it resumes with that mode only, not --accumulate %s\n",
                cmd, run, mode, (const char *)o + da->off);
        return 1;
    }
    snprintf((char *)o + dr->off, dr->size, "%s", run);
    char *out = (char *)o + dout->off;
    if (!out[0])
        snprintf(out, dout->size, "%s", run);
    return ret;
}

int run_folder_prepare(const char *dir, const struct opt_desc *table, size_t n, const void *o)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/samples", dir);
    int ret = cli_mkdir_p(path);
    if (ret < 0) {
        vka_err("cannot create the run folder %s: %s", path, strerror(-ret));
        return ret;
    }
    snprintf(path, sizeof(path), "%s/config.json", dir);
    cJSON *j = cli_opts_json(table, n, o);
    ret = j ? cli_write_json(path, j) : -ENOMEM;
    cJSON_Delete(j);
    return ret;
}

/* The step of a metrics line, or -1 for a line that is not a whole JSON object with one. */
static long long line_step(const char *line, size_t len)
{
    cJSON *j = cJSON_ParseWithLength(line, len);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "step");
    long long step = cJSON_IsNumber(s) && s->valuedouble >= 0 ? (long long)s->valuedouble : -1;
    cJSON_Delete(j);
    return step;
}

/* Keeps the lines of path up to step (a torn last line has no newline: dropped). */
static int log_cut(struct run_log *l, uint64_t step)
{
    char *text;
    size_t len;
    int ret = vka_read_whole(l->path, LOG_MAX_BYTES, &text, &len);
    if (ret == -ENOENT) {
        vka_clear_error();
        return 0;
    }
    if (ret < 0)
        return ret;
    size_t keep = 0;
    for (size_t at = 0; at < len;) {
        char *nl = memchr(text + at, '\n', len - at);
        size_t n = nl ? (size_t)(nl - (text + at)) : len - at;
        long long s = nl ? line_step(text + at, n) : -1;
        if (s >= 0 && (uint64_t)s <= step) {
            memmove(text + keep, text + at, n + 1);
            keep += n + 1;
        } else {
            l->dropped++;
        }
        at += n + 1;
    }
    ret = l->dropped ? vka_write_atomic(l->path, text, keep) : 0;
    free(text);
    return ret;
}

int run_log_open(struct run_log *l, const char *dir, bool resume, uint64_t step)
{
    *l = (struct run_log){ 0 };
    snprintf(l->path, sizeof(l->path), "%s/metrics.jsonl", dir);
    int ret = resume ? log_cut(l, step) : 0;
    if (ret < 0)
        return ret;
    if (!(l->f = fopen(l->path, resume ? "ab" : "wb"))) {
        ret = -errno;
        vka_err("cannot write %s: %s", l->path, strerror(errno));
    }
    return ret;
}

int run_log_printf(struct run_log *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    errno = 0;
    int n = vfprintf(l->f, fmt, ap);
    va_end(ap);
    if (n >= 0 && fputc('\n', l->f) != EOF && fflush(l->f) == 0)
        return 0;
    int e = errno ? errno : EIO;
    vka_err("cannot write %s: %s", l->path, strerror(e));
    return -e;
}

int run_log_close(struct run_log *l)
{
    if (!l->f)
        return 0;
    int ret = fclose(l->f) == 0 ? 0 : -errno;
    l->f = NULL;
    if (ret < 0)
        vka_err("cannot write %s: %s", l->path, strerror(-ret));
    return ret;
}

struct vka_st_tensor run_loader_tensor(struct vka_loader_pos pos, int64_t buf[2])
{
    buf[0] = (int64_t)pos.epoch;
    buf[1] = (int64_t)pos.index;
    return (struct vka_st_tensor){ .name = "train.loader", .dtype = VKA_ST_I64, .ndim = 1,
                                   .shape = { 2 }, .data = buf };
}

int run_loader_pos(const struct vka_st_file *f, struct vka_loader_pos *pos)
{
    const struct vka_st_tensor *t = vka_st_find(f, "train.loader");
    uint64_t n = 0;
    if (!t || t->dtype != VKA_ST_I64 || vka_st_numel(t, &n) < 0 || n != 2) {
        vka_err("checkpoint %s: train.loader %s (2 int64 values expected: the data loader's "
                "epoch and index)", f->path, t ? "has another dtype or size" : "is missing");
        return -EINVAL;
    }
    const int64_t *v = t->data;
    if (v[0] < 0 || v[1] < 0) {
        vka_err("checkpoint %s: train.loader is (%" PRId64 ", %" PRId64 "): a position "
                "cannot be negative", f->path, v[0], v[1]);
        return -EINVAL;
    }
    *pos = (struct vka_loader_pos){ (uint64_t)v[0], (uint64_t)v[1] };
    return 0;
}

void run_pace_start(struct run_pace *p, uint64_t samples)
{
    *p = (struct run_pace){ .tty = isatty(2), .t0 = vka_now(), .samples_last = samples };
    p->tlast = p->t0;
}

double run_pace_tick(struct run_pace *p, uint64_t samples, double *elapsed)
{
    double t = vka_now(), ips = (double)(samples - p->samples_last) / (t - p->tlast);
    p->tlast = t;
    p->samples_last = samples;
    if (elapsed)
        *elapsed = t - p->t0;
    return ips;
}

double run_pace_elapsed(const struct run_pace *p)
{
    return vka_now() - p->t0;
}

bool run_every(uint64_t step, int n, bool last)
{
    return last || (n > 0 && step % (uint64_t)n == 0);
}

static volatile sig_atomic_t stop_signal;
static bool stop_announce; /* rank 0 says at once what the signal does */

static void on_stop(int sig)
{
    stop_signal = sig;
    /* a window can take minutes (1024x1024 on a CPU): say that it is being finished.
     * write(2) is async-signal-safe; printf is not */
    static const char msg[] = "\nvkaccum: stopping at the end of this window, where "
                              "last.safetensors is saved; a second signal ends the process "
                              "now (the checkpoint on disk stays whole)\n";
    if (stop_announce) {
        ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
        (void)w;
    }
}

void run_signals_install(void)
{
    stop_announce = run_writes();
    /* SA_RESTART: reads, writes and waits of the run go on; SA_RESETHAND: a second
     * signal takes the default action */
    struct sigaction sa = { .sa_handler = on_stop, .sa_flags = SA_RESTART | SA_RESETHAND };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int run_stop_signal(void)
{
    return stop_signal;
}

int run_accumulate_mode(const char *cmd, char *mode, size_t size)
{
    int ranks = vka_dist()->size;
    if (!strcmp(mode, "auto"))
        snprintf(mode, size, "%s", ranks > 1 ? "exact" : "ordered");
    if (ranks > 1 && strcmp(mode, "exact"))
        return cli_usage_error(cmd, "--accumulate %s: the %d ranks of this run sum their "
                               "gradients exactly (--accumulate exact), the one way whose "
                               "bits do not depend on how a window is split", mode, ranks);
    return 0;
}

bool run_writes(void)
{
    return vka_dist()->rank == 0;
}

static double combine_seconds;

int run_combine(void *user, uint32_t *words, uint64_t nelems)
{
    (void)user;
    double t0 = vka_now();
    int ret = vka_dist_sum_exact(words, nelems);
    combine_seconds += vka_now() - t0;
    return ret;
}

void run_print_combine_share(double elapsed)
{
    const struct vka_dist *d = vka_dist();
    if (d->size > 1)
        printf("%d ranks: the sums of the gradients across ranks took %.1f s of %.1f s (%.1f %%) "
               "on rank 0\n", d->size, combine_seconds, elapsed,
               elapsed > 0 ? 100 * combine_seconds / elapsed : 0);
}

int run_boundary_sync(uint64_t *samples, int *sig)
{
    uint64_t v[2] = { *samples, (uint64_t)*sig };
    int ret = vka_dist_sum_u64(v, 1);
    if (ret == 0)
        ret = vka_dist_max_u64(v + 1, 1);
    if (ret < 0)
        return ret;
    *samples = v[0];
    *sig = (int)v[1];
    return 0;
}

const char *run_signal_name(int sig)
{
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
}

int run_tb_open(struct vka_tb **tb, const char *run, bool on)
{
    *tb = NULL;
    if (!on)
        return 0;
    char dir[1100];
    snprintf(dir, sizeof(dir), "%s/tb", run);
    return vka_tb_open(dir, tb);
}

int run_tb_scalars(struct vka_tb *tb, uint64_t step, const char *const *tags,
                   const double *values, size_t n)
{
    double wall = vka_tb_wall_time();
    int ret = 0;
    for (size_t i = 0; tb && i < n && ret == 0; i++)
        ret = vka_tb_scalar(tb, tags[i], (int64_t)step, wall, (float)values[i]);
    return ret < 0 || !tb ? ret : vka_tb_flush(tb);
}

int run_tb_image(struct vka_tb *tb, const char *tag, uint64_t step, uint32_t w, uint32_t h,
                 uint32_t c, const uint8_t *pixels)
{
    if (!tb)
        return 0;
    unsigned char *png;
    size_t len;
    int ret = cli_png_encode(w, h, c, pixels, &png, &len);
    if (ret == 0)
        ret = vka_tb_image_png(tb, tag, (int64_t)step, vka_tb_wall_time(), w, h, c, png, len);
    free(png);
    return ret < 0 ? ret : vka_tb_flush(tb);
}

void run_name_file(const char *path)
{
    char why[1024];
    snprintf(why, sizeof(why), "%s", vka_last_error());
    if (!strstr(why, path))
        vka_err("cannot save %s: %s", path, why);
}
