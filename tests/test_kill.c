/* Kills: SIGINT stops a training run at its next window boundary with a checkpoint and
 * exit status 0; SIGKILL at random moments (training, evaluation, checkpoint writes)
 * always leaves a last.safetensors that loads, and resuming until the end reaches the
 * uninterrupted run's checkpoint bit for bit. tools/killtest.sh runs the long version. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static char out[1 << 16];

/* A small run: every step saved (--save-every 1) so that a kill often lands in a write,
 * an evaluation every 4 steps; a poly schedule over the run's steps (24, or
 * VKACCUM_KILL_STEPS), which a resume keeps. */
static const char *common(void)
{
    static char buf[512];
    const char *s = getenv("VKACCUM_KILL_STEPS");
    snprintf(buf, sizeof(buf), "seg train --data shapes --train-count 16 --crop 32 --depth 2 "
             "--width 8 --batch 4 --micro-batch 2 --eval-every 4 --workers 2 --val-count 4 "
             "--steps %d", s && atoi(s) > 0 ? atoi(s) : 24);
    return buf;
}

/* Starts `vkaccum ARGS` with its output into log; returns the pid. */
static pid_t start(const char *args, const char *log)
{
    const char *bin = getenv("VKACCUM_BIN");
    cr_assert(bin, "VKACCUM_BIN is not set (meson sets it)");
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "exec %s %s >%s 2>&1", bin, args, log);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Lines of path (0 when missing). */
static int lines(const char *path)
{
    FILE *f = fopen(path, "rb");
    int n = 0, c;
    if (!f)
        return 0;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

/* Asserts that no temporary file of a writer is left in dir. */
static void assert_no_temps(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert(d);
    struct dirent *de;
    while ((de = readdir(d)))
        cr_assert_null(strstr(de->d_name, ".tmp-"), "%s/%s was left behind", dir, de->d_name);
    closedir(d);
}

/* The uninterrupted run; its wall time in ms. */
static long whole_run(const char *dir)
{
    char args[1024];
    snprintf(args, sizeof(args), "%s --save-every 1 --out %s/whole", common(), dir);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    cr_assert_eq(test_vkaccum("", args, out, sizeof(out)), 0, "%s", out);
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (b.tv_sec - a.tv_sec) * 1000L + (b.tv_nsec - a.tv_nsec) / 1000000L;
}

Test(kill, sigint_stops_at_a_boundary_and_the_run_resumes_bitwise, .timeout = 300)
{
    char dir[] = "/tmp/vkaccum-kill-XXXXXX";
    cr_assert(mkdtemp(dir));
    whole_run(dir);
    char args[1024], log[600], met[600];
    snprintf(args, sizeof(args), "%s --save-every 0 --out %s/part", common(), dir);
    snprintf(log, sizeof(log), "%s/part.log", dir);
    snprintf(met, sizeof(met), "%s/part/metrics.jsonl", dir);
    pid_t pid = start(args, log);
    /* a few steps in, with no checkpoint yet (--save-every 0) */
    for (int i = 0; i < 3000 && lines(met) < 3; i++)
        sleep_ms(10);
    cr_assert_eq(kill(pid, SIGINT), 0);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    FILE *f = fopen(log, "rb");
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    fclose(f);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "SIGINT did not end the run with 0: %s", out);
    cr_assert(strstr(out, "stopped by SIGINT") && strstr(out, "--resume"), "%s", out);
    /* said when the signal came, before the window ended */
    const char *said = strstr(out, "stopping at the end of this window");
    cr_assert(said && said < strstr(out, "stopped by SIGINT"), "%s", out);
    snprintf(args, sizeof(args), "seg train --resume %s/part", dir);
    cr_assert_eq(test_vkaccum("", args, out, sizeof(out)), 0, "%s", out);
    char a[600], b[600];
    snprintf(a, sizeof(a), "%s/whole/last.safetensors", dir);
    snprintf(b, sizeof(b), "%s/part/last.safetensors", dir);
    test_st_assert_equal(a, b);
    snprintf(args, sizeof(args), "rm -rf %s", dir);
    cr_assert_eq(system(args), 0);
}

/* True when dir holds a writer's temporary file (the kill landed in a save). */
static bool has_temp(const char *dir)
{
    DIR *d = opendir(dir);
    bool found = false;
    struct dirent *de;
    while (d && (de = readdir(d)))
        found |= strstr(de->d_name, ".tmp-") != NULL;
    if (d)
        closedir(d);
    return found;
}

/* SIGKILLs at seeded random moments: VKACCUM_KILLS of them (3 here, 20 in
 * tools/killtest.sh), each reported on stderr. */
Test(kill, sigkill_leaves_a_loadable_checkpoint_and_resumes_bitwise, .timeout = 600)
{
    test_seed("kill");
    char dir[] = "/tmp/vkaccum-kill-XXXXXX";
    cr_assert(mkdtemp(dir));
    long whole_ms = whole_run(dir);
    char args[1024], log[600], ck[700], run[600];
    snprintf(run, sizeof(run), "%s/part", dir);
    snprintf(log, sizeof(log), "%s/part.log", dir);
    snprintf(ck, sizeof(ck), "%s/last.safetensors", run);
    const char *nk = getenv("VKACCUM_KILLS");
    int kills = nk && atoi(nk) > 0 ? atoi(nk) : 3;
    char met[700];
    snprintf(met, sizeof(met), "%s/metrics.jsonl", run);
    for (int k = 0; k < kills; k++) {
        struct stat sb;
        bool resume = stat(ck, &sb) == 0;
        if (resume)
            snprintf(args, sizeof(args), "seg train --resume %s", run);
        else
            snprintf(args, sizeof(args), "%s --save-every 1 --out %s", common(), run);
        pid_t pid = start(args, log);
        /* spread so that the kills, each after a restart, cover the whole run */
        long ms = 200 + (long)test_rand_range(0, (uint32_t)(2 * whole_ms / kills + 300));
        sleep_ms(ms);
        kill(pid, SIGKILL);
        int st;
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        bool temp = has_temp(run), loads = false, exited = WIFEXITED(st);
        if (stat(ck, &sb) == 0) {
            struct vka_st_file *f;
            cr_assert_eq(vka_st_read(ck, &f), 0, "kill %d left a checkpoint that does not "
                         "load: %s", k, vka_last_error());
            vka_st_file_destroy(&f);
            loads = true;
        }
        fprintf(stderr, "kill %2d: %s after %4ld ms, %d metrics lines; last.safetensors %s%s\n",
                k + 1, resume ? "resumed run" : "new run", ms, lines(met),
                loads ? "loads" : "not written yet", exited ? " (the run had ended)"
                : temp ? "; killed during a checkpoint write (temporary file left)" : "");
    }
    /* on to the end */
    struct stat sb;
    if (stat(ck, &sb) == 0)
        snprintf(args, sizeof(args), "seg train --resume %s", run);
    else
        snprintf(args, sizeof(args), "%s --save-every 1 --out %s", common(), run);
    cr_assert_eq(test_vkaccum("", args, out, sizeof(out)), 0, "%s", out);
    char a[600];
    snprintf(a, sizeof(a), "%s/whole/last.safetensors", dir);
    test_st_assert_equal(a, ck);
    assert_no_temps(run);
    snprintf(args, sizeof(args), "rm -rf %s", dir);
    cr_assert_eq(system(args), 0);
}
