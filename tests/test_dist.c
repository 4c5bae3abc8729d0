/* Several processes (mpirun, src/dist.h): N ranks train the bits of one process whatever
 * N and the micro-batch (GroupNorm, exact accumulation), a run resumes with another rank
 * count, a rank that fails or is killed ends the job naming it, and the checkpoint on
 * disk stays loadable. Skipped in a build without MPI; CI builds with it. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "safetensors.h"
#include "vka_config.h"

/* mpirun as the tests need it: root allowed (CI), more ranks than cores, no single-copy
 * transport (ptrace is not allowed in containers) */
#define MPIRUN "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 exec mpirun " \
               "--oversubscribe --timeout 300 --mca btl_vader_single_copy_mechanism none "

static char out[1 << 16];

/* vkaccum ARGS under `mpirun -np ranks` (ranks 0: one process, no mpirun). */
static int run(int ranks, const char *args)
{
    char prefix[512] = "";
    if (ranks)
        snprintf(prefix, sizeof(prefix), MPIRUN "-np %d ", ranks);
    return test_vkaccum(prefix, args, out, sizeof(out));
}

static void skip_without_mpi(void)
{
    if (!VKA_HAVE_MPI)
        cr_skip_test("this vkaccum is built without MPI (meson -Dmpi=disabled)");
}

/* The model's tensors (every name not starting "train.") of two checkpoints, bit for bit;
 * the trainer's counters of micro-steps differ with the micro-batch, its optimizer state
 * and loader position are checked by name. */
static void same_model(const char *a, const char *b)
{
    struct vka_st_file *fa, *fb;
    cr_assert_eq(vka_st_read(a, &fa), 0, "%s", vka_last_error());
    cr_assert_eq(vka_st_read(b, &fb), 0, "%s", vka_last_error());
    size_t compared = 0;
    for (size_t i = 0; i < fa->n_tensors; i++) {
        const struct vka_st_tensor *t = &fa->tensors[i];
        bool state = !strncmp(t->name, "train.", 6);
        if (state && !strstr(t->name, "optim") && strcmp(t->name, "train.loader"))
            continue;
        const struct vka_st_tensor *u = vka_st_find(fb, t->name);
        cr_assert(u, "%s has no %s", b, t->name);
        uint64_t bytes, ubytes;
        cr_assert(vka_st_nbytes(t, &bytes) == 0 && vka_st_nbytes(u, &ubytes) == 0);
        cr_assert_eq(bytes, ubytes, "%s: sizes differ", t->name);
        cr_assert_eq(memcmp(t->data, u->data, bytes), 0, "%s differs between %s and %s",
                     t->name, a, b);
        compared++;
    }
    cr_assert_gt(compared, 10);
    vka_st_file_destroy(&fa);
    vka_st_file_destroy(&fb);
}

/* The "loss" and "samples" fields of a run's metrics.jsonl, in order, and (miou) its
 * evaluations' "miou" and "pixel_acc". */
static void losses(const char *path, bool miou, char *dst, size_t size)
{
    FILE *f = fopen(path, "r");
    cr_assert(f, "no %s", path);
    char line[4096];
    size_t used = 0;
    dst[0] = '\0';
    while (fgets(line, sizeof(line), f)) {
        const char *l = strstr(line, "\"loss\":"), *e = l ? strstr(l, ",\"lr\"") : NULL;
        if (l && e)
            used += (size_t)snprintf(dst + used, size - used, "%.*s\n", (int)(e - l), l);
        l = strstr(line, "\"samples\":"); /* the run's, summed over the ranks */
        e = l ? strstr(l, ",\"skipped\"") : NULL;
        if (l && e)
            used += (size_t)snprintf(dst + used, size - used, "%.*s\n", (int)(e - l), l);
        l = miou ? strstr(line, "\"miou\":") : NULL;
        e = l ? strstr(l, ",\"iou\"") : NULL; /* miou and pixel_acc */
        if (l && e)
            used += (size_t)snprintf(dst + used, size - used, "%.*s\n", (int)(e - l), l);
    }
    fclose(f);
}

/* 14 samples in windows of 6: every third window is the epoch's last, of 2 samples,
 * which 3 ranks share as 1, 1 and none */
#define COMMON "seg train --data shapes --train-count 14 --crop 32 --depth 2 --width 8 " \
               "--norm group --batch 6 --eval-every 0 --save-every 1 --workers 0 " \
               "--val-count 3 --schedule constant --accumulate exact"

Test(dist, ranks_train_the_bits_of_one_process, .timeout = 600)
{
    skip_without_mpi();
    char *dir = test_tmpdir("vkaccum-dist");
    char args[2048], a[4096], b[4096];
    snprintf(args, sizeof(args), COMMON " --steps 4 --micro-batch 6 --out %s/one", dir);
    cr_assert_eq(run(0, args), 0, "%s", out);
    losses(test_path("%s/one/metrics.jsonl", dir), true, a, sizeof(a));
    cr_assert(strstr(a, "miou"), "no evaluation logged:\n%s", a);
    /* (the evaluation at the last step is shared by the ranks: 3 validation images,
     * the parts' confusion matrices summed) */
    const int ranks[] = { 2, 3 }, micro[] = { 3, 1 };
    for (int k = 0; k < 2; k++) {
        snprintf(args, sizeof(args), COMMON " --steps 4 --micro-batch %d --out %s/np%d",
                 micro[k], dir, ranks[k]);
        cr_assert_eq(run(ranks[k], args), 0, "%d ranks: %s", ranks[k], out);
        same_model(test_path("%s/one/last.safetensors", dir),
                   test_path("%s/np%d/last.safetensors", dir, ranks[k]));
        losses(test_path("%s/np%d/metrics.jsonl", dir, ranks[k]), true, b, sizeof(b));
        cr_assert_str_eq(a, b, "one process:\n%s\n%d ranks:\n%s", a, ranks[k], b);
    }
    /* seg predict over a folder (the evaluation's 3 overlays as images): 2 ranks share
     * the images and write what one process writes */
    const char *imgs = test_path("%s/one/samples/step_000004", dir);
    char imgdir[600];
    snprintf(imgdir, sizeof(imgdir), "%s", imgs);
    for (int k = 0; k < 2; k++) {
        snprintf(args, sizeof(args), "seg predict --ckpt %s/one/last.safetensors --input %s "
                 "--out %s/pred%d", dir, imgdir, dir, k);
        cr_assert_eq(run(k ? 2 : 0, args), 0, "%s", out);
    }
    for (int i = 0; i < 3; i++) {
        snprintf(args, sizeof(args), "cmp %s/pred0/val_%04d_mask.png %s/pred1/val_%04d_mask.png",
                 dir, i, dir, i);
        cr_assert_eq(system(args), 0, "image %d: the masks of 2 ranks and one process differ", i);
    }
    /* resumed with another rank count: 2 ranks for 2 steps, then one process to 4 */
    snprintf(args, sizeof(args), COMMON " --steps 2 --micro-batch 3 --out %s/part", dir);
    cr_assert_eq(run(2, args), 0, "%s", out);
    snprintf(args, sizeof(args), "seg train --resume %s/part --steps 4", dir);
    cr_assert_eq(run(0, args), 0, "%s", out);
    same_model(test_path("%s/one/last.safetensors", dir),
               test_path("%s/part/last.safetensors", dir));
    /* (the part's run evaluated at its step 2 too: losses only) */
    losses(test_path("%s/one/metrics.jsonl", dir), false, a, sizeof(a));
    losses(test_path("%s/part/metrics.jsonl", dir), false, b, sizeof(b));
    cr_assert_str_eq(a, b, "uninterrupted:\n%s\nresumed:\n%s", a, b);
    test_tmpdir_remove(&dir);
}

/* The GAN (no normalisation, EMA on): D's and G's windows shared by 2 and 4 ranks, the
 * real images of each rank's shard and the z of its share, give the weights of one
 * process at micro-batch B, also when one process resumes what 4 ranks began. */
Test(dist, gan_ranks_train_the_bits_of_one_process, .timeout = 600)
{
    skip_without_mpi();
    char *dir = test_tmpdir("vkaccum-dist");
    char args[2048];
    const char *common = "gan train --data fashion --res 32 --width 8 --z-dim 8 --norm none "
                         "--batch 8 --steps 3 --sample-every 0 --eval-every 0 --save-every 1 "
                         "--workers 0 --ema-kimg 0.01 --accumulate exact";
    snprintf(args, sizeof(args), "%s --micro-batch 8 --out %s/one", common, dir);
    cr_assert_eq(run(0, args), 0, "%s", out);
    const int ranks[] = { 2, 4 }, micro[] = { 4, 1 };
    for (int k = 0; k < 2; k++) {
        snprintf(args, sizeof(args), "%s --micro-batch %d --out %s/np%d", common, micro[k],
                 dir, ranks[k]);
        cr_assert_eq(run(ranks[k], args), 0, "%d ranks: %s", ranks[k], out);
        same_model(test_path("%s/one/last.safetensors", dir),
                   test_path("%s/np%d/last.safetensors", dir, ranks[k]));
    }
    /* 2 iterations on 4 ranks, resumed by one process for the third: the real-image
     * stream and the z streams go on where one process would be */
    snprintf(args, sizeof(args), "%s --micro-batch 2 --steps 2 --out %s/part", common, dir);
    cr_assert_eq(run(4, args), 0, "%s", out);
    snprintf(args, sizeof(args), "gan train --resume %s/part --steps 3", dir);
    cr_assert_eq(run(0, args), 0, "%s", out);
    same_model(test_path("%s/one/last.safetensors", dir),
               test_path("%s/part/last.safetensors", dir));
    test_tmpdir_remove(&dir);
}

/* --version says whether this build can run several processes, and with which MPI */
Test(dist, version_names_the_mpi)
{
    cr_assert_eq(run(0, "--version"), 0, "%s", out);
    if (VKA_HAVE_MPI)
        cr_assert(strstr(out, "several devices: MPI (Open MPI"), "%s", out);
    else
        cr_assert(strstr(out, "several devices: not built"), "%s", out);
}

Test(dist, what_does_not_split_is_refused)
{
    skip_without_mpi();
    char *dir = test_tmpdir("vkaccum-dist");
    char args[2048];
    snprintf(args, sizeof(args), COMMON " --batch 5 --steps 1 --out %s/r", dir);
    cr_assert_neq(run(2, args), 0, "%s", out);
    cr_assert(strstr(out, "--batch 5 does not split over 2 ranks"), "%s", out);
    /* a rank whose device does not exist: it names itself and the cause, all end */
    snprintf(args, sizeof(args), COMMON " --steps 1 --device 0,no-such-gpu --out %s/d", dir);
    cr_assert_neq(run(2, args), 0, "%s", out);
    cr_assert(strstr(out, "rank 1 of 2: failed") && strstr(out, "no-such-gpu"), "%s", out);
    test_tmpdir_remove(&dir);
}

/* A rank killed (SIGKILL) in a long run: mpirun ends the job within the timeout, says
 * which rank died, and last.safetensors on disk evaluates. The rank is found by this
 * run's own folder: the tests run two at a time, and another test's rank 1 matched a
 * pattern of the binary's name alone (and was killed once). */
Test(dist, a_killed_rank_ends_the_job, .timeout = 600)
{
    skip_without_mpi();
    char *dir = test_tmpdir("vkaccum-dist");
    char script[4096];
    const char *bin = getenv("VKACCUM_BIN");
    snprintf(script, sizeof(script),
             "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe "
             "--mca btl_vader_single_copy_mechanism none -np 2 %s " COMMON " --micro-batch 3 "
             "--steps 100000 --out %s/run > %s/log 2>&1 & job=$!; "
             "for i in $(seq 600); do [ -f %s/run/last.safetensors ] && break; sleep 0.5; done; "
             "for p in $(pgrep -f 'seg train .*--out %s/run'); do "
             "  tr '\\0' '\\n' < /proc/$p/environ 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 "
             "  && kill -9 $p; done; "
             "t0=$(date +%%s); wait $job; st=$?; echo \"status $st after $(( $(date +%%s) - t0 )) s\"",
             bin, dir, dir, dir, dir);
    FILE *p = popen(script, "r");
    cr_assert(p);
    char line[256] = "";
    cr_assert(fgets(line, sizeof(line), p), "the script printed nothing");
    pclose(p);
    int st = -1, secs = -1;
    cr_assert_eq(sscanf(line, "status %d after %d s", &st, &secs), 2, "%s", line);
    FILE *f = fopen(test_path("%s/log", dir), "r");
    cr_assert(f);
    out[fread(out, 1, sizeof(out) - 1, f)] = '\0';
    fclose(f);
    cr_assert_neq(st, 0, "mpirun ended with 0 after a rank was killed:\n%s", out);
    cr_log_info("mpirun ended %d s after rank 1 was killed", secs);
    cr_assert_leq(secs, 30, "the job took %d s to end after the kill", secs);
    cr_assert(strstr(out, "rank 1") && strstr(out, "signal 9"), "which rank died?\n%s", out);
    /* the checkpoint on disk is whole: it evaluates */
    char args[1024];
    snprintf(args, sizeof(args), "seg eval --ckpt %s/run/last.safetensors --val-count 2", dir);
    cr_assert_eq(run(0, args), 0, "%s", out);
    test_tmpdir_remove(&dir);
}
