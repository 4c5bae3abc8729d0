/* Faults (src/vk/fault.h): an allocation failure injected at every allocation of a
 * training setup ends in -ENOMEM with a message naming the size and category, and
 * nothing leaks; work left running by a timed-out wait is finished before its buffers
 * are freed; the vkaccum command ends with exit 1 and a clear message, never a signal,
 * a hang or a validation message, under an injected out-of-memory, lost device or fence
 * timeout, and a run stopped by one keeps its last checkpoint and resumes from it; a
 * checkpoint that cannot be written (a file-size limit standing in for a full disk) is
 * an error naming the file and the reason, and the previous one is kept byte for byte.
 *
 * Time (2 cores, lavapipe, validation on; about 35 s in all on an idle machine): the
 * library sweep takes every N (8 s); the command line tests take a spread of N (the
 * first three, the last, evenly spaced between), since full sweeps of the two commands
 * take 23 s and 49 s for out-of-memory alone, and about 3 minutes each for submissions
 * and timeouts (all were run once, clean). */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkpoint.h"
#include "common.h"
#include "models/unet.h"
#include "vk/fault.h"

/* ---- library level ----------------------------------------------------------------- */

enum { SIZE = 16, CLASSES = 3, BATCH = 4, MICRO = 2 };

struct setup {
    struct vka_graph *g;
    struct vka_unet net;
    struct vka_trainer *tr;
};

static float xs[BATCH * 3 * SIZE * SIZE];
static int32_t ts[BATCH * SIZE * SIZE];

/* test_checkpoint.c's training setup, every call of which may fail: a U-Net graph, its
 * arena, a trainer, one whole window (the optimizer's first step makes what it makes
 * lazily) and a checkpoint (downloads through the staging buffer). Returns 0 or the first
 * negative errno, with *stage naming the call that returned it. */
static int setup_open(struct vka_ctx *ctx, struct setup *s, const char *ckpt,
                      const char **stage)
{
    int ret;
    *stage = "vka_graph_create";
    if ((ret = vka_graph_create(ctx, &(struct vka_graph_params){ .seed = 5 }, &s->g)) < 0)
        return ret;
    *stage = "vka_unet_build";
    struct vka_unet_params up = { .in_channels = 3, .classes = CLASSES, .depth = 2,
                                  .width = 8, .norm = VKA_UNET_GROUP, .groups = 4,
                                  .size = SIZE };
    if ((ret = vka_unet_build(s->g, &up, &s->net)) < 0)
        return ret;
    *stage = "vka_graph_input";
    int target = vka_graph_input(s->g, "mask", VKA_I32, VKA_LAYOUT_FLAT, 1, SIZE, SIZE);
    if (target < 0)
        return target;
    *stage = "vka_graph_node";
    union vka_op_params ce = { .loss = { .ignore_index = 255, .scale = 1 } };
    int loss = vka_graph_node(s->g, VKA_OP_cross_entropy, &ce, s->net.logits, target, -1);
    if (loss < 0)
        return loss;
    *stage = "vka_graph_alloc";
    if ((ret = vka_graph_alloc(s->g)) < 0)
        return ret;
    *stage = "vka_trainer_create";
    struct vka_trainer_params tp = {
        .batch = BATCH, .micro = MICRO, .optim = vka_optim_defaults(VKA_OPTIM_ADAMW, 1),
        .lr = { .kind = VKA_LR_CONSTANT, .lr = 1e-3 },
        .loss = loss, .inputs = { s->net.image, target }, .ninputs = 2,
    };
    if ((ret = vka_trainer_create(s->g, &tp, &s->tr)) < 0)
        return ret;
    *stage = "vka_trainer_micro_step";
    for (int m = 0; m < BATCH / MICRO; m++) {
        const void *in[2] = { xs + m * MICRO * 3 * SIZE * SIZE, ts + m * MICRO * SIZE * SIZE };
        if ((ret = vka_trainer_micro_step(s->tr, in, MICRO, NULL)) < 0)
            return ret;
    }
    *stage = "vka_ckpt_save";
    return vka_ckpt_save(ckpt, s->g, &s->tr, 1, NULL, 0, NULL, 0);
}

static void setup_close(struct setup *s)
{
    vka_trainer_destroy(&s->tr);
    vka_graph_destroy(&s->g);
}

/* After everything made from ctx is destroyed: nothing charged to the accountant and no
 * buffer alive but the context's own staging buffer, no validation message, and none
 * when the device goes (the layer names every leaked object at vkDestroyDevice, after
 * test_ctx_done has read the count: its messages are caught as the thread's last error
 * instead). vka_ctx_destroy's own report of leaked buffers is a warning counting
 * live_buffers, which is asserted here directly. */
static void assert_clean(struct vka_ctx **ctx, uint64_t n)
{
    struct vka_mem_stats m;
    vka_mem_get_stats(*ctx, &m);
    const struct vka_buf *st = (*ctx)->staging;
    for (int c = 0; c < VKA_MEM_CAT_COUNT; c++) {
        uint64_t own = st && st->cat == (enum vka_mem_cat)c ? st->accounted : 0;
        cr_assert_eq(m.cur[c], own, "VKACCUM_FAIL_ALLOC=%" PRIu64 ": %" PRIu64 " bytes of %s "
                     "still charged after everything was destroyed", n, m.cur[c] - own,
                     vka_mem_cat_name((enum vka_mem_cat)c));
    }
    cr_assert_eq(m.live_buffers, st ? 1u : 0u, "VKACCUM_FAIL_ALLOC=%" PRIu64 ": %u buffers "
                 "leaked", n, m.live_buffers - (st ? 1u : 0u));
    unsigned v = vka_ctx_validation_count(*ctx), before = vka_validation_total();
    cr_assert_eq(v, 0, "VKACCUM_FAIL_ALLOC=%" PRIu64 ": %u validation messages", n, v);
    vka_ctx_destroy(ctx);
    cr_assert_eq(vka_validation_total(), before, "VKACCUM_FAIL_ALLOC=%" PRIu64 ": %u "
                 "validation messages while destroying the device", n,
                 vka_validation_total() - before);
}

Test(faults, every_allocation_of_a_training_setup_fails_cleanly)
{
    test_seed("faults alloc sweep");
    for (size_t i = 0; i < sizeof(xs) / sizeof(xs[0]); i++)
        xs[i] = test_rand_uniform(-1, 1);
    for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++)
        ts[i] = (int32_t)test_rand_range(0, CLASSES - 1);
    char ckpt[] = "/tmp/vkaccum-faults-XXXXXX";
    int fd = mkstemp(ckpt);
    cr_assert_geq(fd, 0);
    close(fd);

    /* a clean run counts the allocations: the sweep's range */
    struct vka_ctx *ctx = test_ctx();
    struct setup s = { 0 };
    const char *stage;
    vka_fault_set(VKA_FAULT_ALLOC, 0);
    int ret = setup_open(ctx, &s, ckpt, &stage);
    cr_assert_eq(ret, 0, "%s: %s", stage, vka_last_error());
    uint64_t total = vka_fault_count(VKA_FAULT_ALLOC);
    setup_close(&s);
    assert_clean(&ctx, 0);
    cr_assert_geq(total, 5, "only %" PRIu64 " allocations counted", total);
    cr_log_info("the setup makes %" PRIu64 " device allocations", total);

    for (uint64_t n = 1; n <= total; n++) {
        ctx = test_ctx();
        s = (struct setup){ 0 };
        vka_fault_set(VKA_FAULT_ALLOC, n);
        vka_clear_error();
        ret = setup_open(ctx, &s, ckpt, &stage);
        char note[64];
        snprintf(note, sizeof(note), "(injected by VKACCUM_FAIL_ALLOC=%" PRIu64 ")", n);
        cr_assert_eq(ret, -ENOMEM, "VKACCUM_FAIL_ALLOC=%" PRIu64 ": %s returned %d: %s", n,
                     stage, ret, vka_last_error());
        cr_assert(strstr(vka_last_error(), "out of device memory") &&
                  strstr(vka_last_error(), note) && strstr(vka_last_error(), " of "),
                  "VKACCUM_FAIL_ALLOC=%" PRIu64 ": %s: the message does not say what failed: "
                  "%s", n, stage, vka_last_error());
        setup_close(&s);
        assert_clean(&ctx, n);
    }
    vka_fault_set(VKA_FAULT_ALLOC, 0);
    unlink(ckpt);
}

/* A timed-out submission's work runs on; its owners' error paths free its buffers before
 * the recorder that would wait for it (the CLI destroys the context's transfer recorder
 * last), so the runtime must wait before freeing. Copies of 64 MiB, each buffer its own
 * mapping in the driver, are still running when the buffers go: freed under them, the
 * driver's queue thread writes into unmapped memory and the test crashes. */
Test(faults, work_left_running_by_a_timeout_ends_before_its_buffers_are_freed)
{
    enum { BYTES = 64 << 20 };
    struct vka_ctx *ctx = test_ctx();
    struct vka_buf *src = NULL, *dst = NULL;
    struct vka_cmd *cmd = NULL;
    cr_assert_eq(vka_buf_create(ctx, &(struct vka_buf_params){ .size = BYTES }, &src), 0,
                 "%s", vka_last_error());
    cr_assert_eq(vka_buf_create(ctx, &(struct vka_buf_params){ .size = BYTES }, &dst), 0,
                 "%s", vka_last_error());
    cr_assert_eq(vka_cmd_create(ctx, NULL, &cmd), 0, "%s", vka_last_error());
    cr_assert_eq(vka_cmd_begin(cmd), 0, "%s", vka_last_error());
    for (int i = 0; i < 4; i++)
        cr_assert_eq(vka_cmd_copy(cmd, i % 2 ? dst : src, 0, i % 2 ? src : dst, 0, BYTES), 0,
                     "%s", vka_last_error());
    vka_fault_set(VKA_FAULT_TIMEOUT, 1);
    int ret = vka_cmd_run(cmd);
    cr_assert_eq(ret, -ETIMEDOUT, "vka_cmd_run returned %d: %s", ret, vka_last_error());
    cr_assert(strstr(vka_last_error(), "did not finish its work within") &&
              strstr(vka_last_error(), "(injected by VKACCUM_FAIL_TIMEOUT=1)"),
              "%s", vka_last_error());
    vka_fault_set(VKA_FAULT_TIMEOUT, 0);
    vka_buf_destroy(&dst);
    vka_buf_destroy(&src);
    vka_cmd_destroy(&cmd);
    test_ctx_done(&ctx);
}

/* ---- the command ------------------------------------------------------------------- */

#define SEG "seg train --data shapes --train-count 8 --crop 32 --depth 2 --width 8 "      \
            "--batch 4 --micro-batch 2 --save-every 1 --eval-every 0 --workers 0 "       \
            "--val-count 2"
#define GAN "gan train --data fashion --width 8 --z-dim 16 --batch 8 --steps 1 "         \
            "--workers 0 --grid 4"

static char out[1 << 16];

/* The folder of the test's runs. The validation layer also writes what it reports to
 * DIR/validation.log (vk_layer_settings.txt there, found through VK_LAYER_SETTINGS_PATH):
 * a channel of its own, whatever vkaccum does with the messages it is given. */
static char dir[] = "/tmp/vkaccum-faults-XXXXXX";
static char layer_log[sizeof(dir) + 32];

static void make_dir(void)
{
    cr_assert(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
    char path[sizeof(dir) + 32];
    snprintf(path, sizeof(path), "%s/vk_layer_settings.txt", dir);
    snprintf(layer_log, sizeof(layer_log), "%s/validation.log", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    fprintf(f, "khronos_validation.debug_action = VK_DBG_LAYER_ACTION_LOG_MSG\n"
               "khronos_validation.log_filename = %s\n"
               "khronos_validation.report_flags = error,warn\n", layer_log);
    cr_assert_eq(fclose(f), 0);
}

static void remove_path(const char *path)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    cr_assert_eq(system(cmd), 0);
}

/* A run here takes a second or two; a hang (a wait for a fence that is never signalled)
 * is killed after this long and fails the test instead of stalling the suite. */
#define RUN_LIMIT_S 60

/* Runs `PREFIX exec timeout env ENV vkaccum ARGS` in sh with stdout and stderr in out;
 * returns the wait status. exec keeps the shell from standing between, and timeout
 * re-raises the signal that killed vkaccum, so a crash is seen as a signal, not as an
 * exit status 128+n. */
static int run_raw(const char *prefix, const char *env, const char *args)
{
    const char *bin = getenv("VKACCUM_BIN");
    cr_assert(bin, "VKACCUM_BIN is not set (meson sets it)");
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "%s exec timeout -s KILL %d env VK_LAYER_SETTINGS_PATH=%s %s "
             "%s %s 2>&1", prefix, RUN_LIMIT_S, dir, env, bin, args);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    return pclose(p);
}

/* The exit status of a run that must end by itself, with nothing from the validation
 * layer and no leaked buffer reported (VKACCUM_VALIDATION=1 is set for the tests). */
static int run_clean(const char *what, const char *prefix, const char *env, const char *args)
{
    unlink(layer_log);
    int st = run_raw(prefix, env, args);
    /* timeout's SIGKILL reaches its whole process group, itself included */
    bool hung = (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) ||
                (WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGKILL);
    cr_assert(!hung, "%s: %s hung: killed after %d s:\n%s", what, env, RUN_LIMIT_S, out);
    cr_assert(!WIFSIGNALED(st), "%s: %s killed by signal %d:\n%s", what, env,
              WTERMSIG(st), out);
    cr_assert(WIFEXITED(st), "%s: %s did not exit", what, env);
    cr_assert_null(strstr(out, "validation:"), "%s: %s: the validation layer spoke:\n%s",
                   what, env, out);
    FILE *f = fopen(layer_log, "r");
    if (f) {
        char said[4096];
        size_t n = fread(said, 1, sizeof(said) - 1, f);
        said[n] = '\0';
        fclose(f);
        cr_assert_eq(n, 0, "%s: %s: the validation layer spoke:\n%s", what, env, said);
    }
    cr_assert_null(strstr(out, "still alive"), "%s: %s: buffers leaked:\n%s", what, env, out);
    return WEXITSTATUS(st);
}

/* Runs with VAR=count and returns the count vkaccum logs at exit. */
static uint64_t count_events(const char *var, const char *args)
{
    char env[64], key[64];
    snprintf(env, sizeof(env), "%s=count", var);
    cr_assert_eq(run_clean("count", "", env, args), 0, "%s", out);
    snprintf(key, sizeof(key), "%s=count: ", var);
    const char *s = strstr(out, key);
    cr_assert(s, "no count logged:\n%s", out);
    return strtoull(s + strlen(key), NULL, 10);
}

/* No "NAME.tmp-HOST-PID" left in dir: a failed write cleans up after itself. */
static void assert_no_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert(d, "cannot open %s", dir);
    struct dirent *e;
    while ((e = readdir(d)))
        cr_assert_null(strstr(e->d_name, ".tmp-"), "%s/%s left behind", dir, e->d_name);
    closedir(d);
}

/* The i-th N of a sweep of 1..total (total > 3): 1, 2, 3, then steps of a (mid + 1)th of
 * the rest up to total. */
static uint64_t spread(uint64_t i, uint64_t total, uint64_t mid, bool *more)
{
    uint64_t step = (total - 3 + mid) / (mid + 1); /* rounded up */
    uint64_t n = i < 3 ? i + 1 : 3 + (i - 2) * step;
    if (n > total)
        n = total;
    *more = n < total;
    return n;
}

static void alloc_sweep(const char *what, const char *args)
{
    uint64_t total = count_events("VKACCUM_FAIL_ALLOC", args);
    cr_assert_geq(total, 5, "%s: only %" PRIu64 " allocations counted", what, total);
    cr_log_info("%s makes %" PRIu64 " device allocations", what, total);
    bool more = true;
    for (uint64_t i = 0; more; i++) {
        uint64_t n = spread(i, total, 6, &more);
        char env[64], note[96];
        snprintf(env, sizeof(env), "VKACCUM_FAIL_ALLOC=%" PRIu64, n);
        snprintf(note, sizeof(note), "(injected by %s)", env);
        cr_assert_eq(run_clean(what, "", env, args), 1, "%s: %s:\n%s", what, env, out);
        cr_assert(strstr(out, "out of device memory") && strstr(out, note),
                  "%s: %s: no clear message:\n%s", what, env, out);
    }
}

Test(faults, out_of_device_memory_ends_train_with_exit_1_and_no_leak)
{
    char args[1024];
    make_dir();
    /* --steps 4 evaluates at the end: its allocations are counted too */
    snprintf(args, sizeof(args), SEG " --steps 4 --out %s/seg", dir);
    alloc_sweep("seg train", args);
    snprintf(args, sizeof(args), GAN " --out %s/gan", dir);
    alloc_sweep("gan train", args);
    remove_path(dir);
}

/* VAR=N for N past the first checkpoint of a 4-step run: exit 1 with `says`, the last
 * checkpoint loads, and a resumed run without VAR finishes. */
static void fault_after_checkpoint(const char *var, const char *says)
{
    char args[1024], run[600], path[700];
    make_dir();
    /* a 1-step run makes every submission up to its checkpoint, and its evaluation's
     * besides (a 4-step run evaluates at step 4 only): N from first + 1 hits a 4-step
     * run after its first checkpoint */
    snprintf(args, sizeof(args), SEG " --steps 1 --out %s/one", dir);
    uint64_t first = count_events(var, args);
    snprintf(args, sizeof(args), SEG " --steps 4 --out %s/four", dir);
    uint64_t total = count_events(var, args);
    cr_assert_lt(first, total);
    const uint64_t ns[] = { first + 1, (first + total) / 2, total };
    snprintf(run, sizeof(run), "%s/run", dir);
    snprintf(path, sizeof(path), "%s/last.safetensors", run);
    for (int i = 0; i < 3; i++) {
        char env[64], note[96];
        snprintf(env, sizeof(env), "%s=%" PRIu64, var, ns[i]);
        snprintf(note, sizeof(note), "(injected by %s)", env);
        remove_path(run);
        snprintf(args, sizeof(args), SEG " --steps 4 --out %s", run);
        cr_assert_eq(run_clean("stopped", "", env, args), 1, "%s:\n%s", env, out);
        cr_assert(strstr(out, says) && strstr(out, note), "%s: no clear message:\n%s", env,
                  out);
        struct vka_st_file *f;
        cr_assert_eq(vka_st_read(path, &f), 0, "%s: %s", env, vka_last_error());
        cr_assert(vka_st_find(f, "train.loader"), "%s: %s holds no training state", env, path);
        vka_st_file_destroy(&f);
        assert_no_tmp(run);
        snprintf(args, sizeof(args), "seg train --resume %s --steps 4", run);
        cr_assert_eq(run_clean("resumed", "", "", args), 0, "%s, then resumed:\n%s", env, out);
        cr_assert(strstr(out, "done: 4 steps"), "%s, then resumed:\n%s", env, out);
    }
    remove_path(dir);
}

Test(faults, lost_device_keeps_the_last_checkpoint_and_resume_finishes)
{
    fault_after_checkpoint("VKACCUM_FAIL_SUBMIT", "was lost");
}

Test(faults, fence_timeout_keeps_the_last_checkpoint_and_resume_finishes)
{
    fault_after_checkpoint("VKACCUM_FAIL_TIMEOUT", "did not finish its work within");
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *d = malloc(n > 0 ? (size_t)n : 1);
    cr_assert(d);
    cr_assert_eq(fread(d, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return d;
}

Test(faults, a_checkpoint_past_the_file_size_limit_fails_and_the_previous_is_kept)
{
    char args[1024], path[600];
    make_dir();
    snprintf(args, sizeof(args), SEG " --steps 2 --out %s/run", dir);
    cr_assert_eq(run_clean("unlimited", "", "", args), 0, "%s", out);
    snprintf(path, sizeof(path), "%s/run/last.safetensors", dir);
    size_t n_before, n_after;
    char *before = slurp(path, &n_before);
    /* a full disk as root in a container: 64 blocks of 512 bytes (dash's unit) hold
     * config.json and metrics.jsonl but not a checkpoint of ~480 KiB; SIGXFSZ ignored,
     * so write() fails with EFBIG as it fails with ENOSPC on a full disk */
    cr_assert_gt(n_before, 64 * 512);
    snprintf(args, sizeof(args), "seg train --resume %s/run --steps 4", dir);
    cr_assert_eq(run_clean("limited", "trap '' XFSZ; ulimit -f 64;", "", args), 1, "%s", out);
    cr_assert(strstr(out, "last.safetensors") && strstr(out, strerror(EFBIG)),
              "the message names neither the file nor the reason:\n%s", out);
    char *after = slurp(path, &n_after);
    cr_assert(n_after == n_before && !memcmp(before, after, n_before),
              "the previous checkpoint changed (%zu bytes, was %zu)", n_after, n_before);
    snprintf(path, sizeof(path), "%s/run", dir);
    assert_no_tmp(path);
    free(before);
    free(after);
    remove_path(dir);
}
