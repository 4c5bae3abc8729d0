/* vkaccum plot RUN [RUN...] --out curves.png: the curves of runs, drawn by tools/plot.py
 * with matplotlib; and the background refresh of RUN/curves.png during training. */
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/opts.h"
#include "cli/run.h"
#include "log.h"
#include "vka_config.h"

extern char **environ;

/* VKACCUM_PLOT_SCRIPT, else the source tree's tools/plot.py, else the installed copy. */
static const char *script_path(void)
{
    static char path[1024];
    const char *env = getenv("VKACCUM_PLOT_SCRIPT");
    struct stat st;
    if (env && *env)
        return env;
    snprintf(path, sizeof(path), "%s/tools/plot.py", VKA_SOURCE_ROOT);
    if (stat(path, &st) == 0)
        return path;
    snprintf(path, sizeof(path), "%s/plot.py", VKA_DATADIR);
    return path;
}

/* The interpreter: VKACCUM_PYTHON, else Debian's /usr/bin/python3 (where apt puts
 * python3-matplotlib; a python3 earlier in PATH, from pyenv or a venv, may lack it), else
 * python3 from PATH. */
static const char *python(void)
{
    const char *env = getenv("VKACCUM_PYTHON");
    if (env && *env)
        return env;
    return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

/* Starts python3 plot.py RUNS --out OUT; its messages go to our stderr. */
static int spawn_plot(const char *const *runs, size_t n, const char *out, const char *title,
                      pid_t *pid)
{
    const char *argv[80];
    size_t k = 0;
    argv[k++] = python();
    argv[k++] = script_path();
    for (size_t i = 0; i < n && k < 72; i++)
        argv[k++] = runs[i];
    argv[k++] = "--out";
    argv[k++] = out;
    if (title) {
        argv[k++] = "--title";
        argv[k++] = title;
    }
    argv[k] = NULL;
    int e = posix_spawnp(pid, argv[0], NULL, NULL, (char *const *)argv, environ);
    if (e) {
        vka_err("cannot run python3 for the curves: %s (Debian: apt-get install python3 "
                "python3-matplotlib)", strerror(e));
        return -e;
    }
    return 0;
}

/* The exit status of the plot script (-1 when a signal ended it). */
static int wait_plot(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char usage[] =
    "usage: vkaccum plot RUN [RUN...] --out curves.png [--title T]\n\n"
    "Curves of runs against optimizer steps, overlaid with a legend: loss, learning rate,\n"
    "validation mIoU and pixel accuracy (seg); D and G losses, D(x), D(G(z)) and the\n"
    "Frechet distance (gan). Drawn by tools/plot.py with matplotlib (python3-matplotlib).";

struct plot_opts {
    char out[4096], title[256];
};

static const struct opt_desc opts[] = {
    OPT_ROW(struct plot_opts, "out", OPT_STR, out, NULL, "the PNG to write"),
    OPT_ROW(struct plot_opts, "title", OPT_STR, title, NULL, "a title above the curves"),
};

#define MAX_RUNS 64

int cli_plot(int argc, char **argv)
{
    struct plot_opts o = { "", "" };
    bool help;
    int first, ret = cli_opts_parse_operands("plot", argc, argv, opts, OPT_COUNT(opts), &o,
                                             &help, &first);
    if (ret)
        return ret;
    if (help) {
        cli_opts_help(opts, OPT_COUNT(opts), usage, NULL, NULL);
        return 0;
    }
    const char *const *runs = (const char *const *)argv + first;
    size_t n = (size_t)(argc - first);
    if (n > MAX_RUNS)
        return cli_usage_error("plot", "at most %d runs", MAX_RUNS);
    if (!n || !o.out[0])
        return cli_usage_error("plot", "give one or more RUN folders and --out FILE.png");
    const char *out = o.out, *title = o.title[0] ? o.title : NULL;
    pid_t pid;
    if (spawn_plot(runs, n, out, title, &pid) < 0) {
        fprintf(stderr, "vkaccum plot: %s\n", vka_last_error());
        return 1;
    }
    int st = wait_plot(pid);
    if (st == 0)
        printf("curves of %zu run(s) in %s\n", n, out);
    return st == 0 ? 0 : st == 2 ? CLI_USAGE : 1;
}

/* ---- during training ---------------------------------------------------------------- */

void run_curves_refresh(struct run_curves *c, const char *run)
{
    const char *env = getenv("VKACCUM_CURVES");
    if (c->off || (env && !strcmp(env, "0")))
        return;
    /* one at a time: a refresh still drawing the previous evaluation is waited for */
    run_curves_finish(c);
    if (c->off)
        return;
    snprintf(c->out, sizeof(c->out), "%s/curves.png", run);
    const char *runs[1] = { run };
    if (spawn_plot(runs, 1, c->out, NULL, &c->pid) < 0) {
        fprintf(stderr, "vkaccum: warning: %s; no curves.png\n", vka_last_error());
        c->off = true;
        c->pid = 0;
    }
}

int run_curves_finish(struct run_curves *c)
{
    if (c->pid <= 0)
        return 0;
    int st = wait_plot(c->pid);
    c->pid = 0;
    if (st == 3)
        c->off = true; /* matplotlib missing: the script said what to install, once */
    return st;
}
