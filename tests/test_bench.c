/* vkaccum bench train, bench ops and tools/bench/: one tiny step of each workload kind
 * prints every field, bench ops every row and path (the timings themselves are the
 * benchmark's business, not a test's); the
 * workloads vkaccum embeds are tools/bench/workloads.json; vkaccum and
 * tools/bench/torch_ref.py build the same models (parameters) and count the same FLOPs
 * for them; train's options are refused elsewhere. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* The JSON object that a command printed (after any warnings), or a failed test. */
static cJSON *json_of(const char *out)
{
    const char *start = strchr(out, '{');
    cJSON *j = start ? cJSON_Parse(start) : NULL;
    cr_assert(j, "no JSON object in:\n%s", out);
    return j;
}

static double number(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    cr_assert(cJSON_IsNumber(v), "no number \"%s\"", key);
    return v->valuedouble;
}

static cJSON *bench(const char *args)
{
    static char out[1 << 16];
    int st = test_vkaccum("", args, out, sizeof(out));
    cr_assert_eq(st, 0, "vkaccum %s: exit %d\n%s", args, st, out);
    return json_of(out);
}

/* Every field of one timed step, consistent with each other. */
static void check_step(const cJSON *j, double batch, double micro, double params)
{
    double ms = number(j, "ms_per_step");
    cr_assert_gt(ms, 0);
    cr_assert_float_eq(number(j, "img_per_s"), batch * 1e3 / ms, 1e-9 * batch * 1e3 / ms);
    cr_assert_float_eq(number(j, "gflops"), number(j, "flops_per_step") / (ms * 1e6), 1e-6);
    cr_assert_gt(number(j, "flops_per_step"), 0);
    cr_assert_gt(number(j, "peak_mib"), 0);
    cr_assert_eq(number(j, "batch"), batch);
    cr_assert_eq(number(j, "micro_batch"), micro);
    cr_assert_eq(number(j, "params"), params);
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "overridden")));
    const cJSON *all = cJSON_GetObjectItemCaseSensitive(j, "ms");
    cr_assert(cJSON_IsArray(all) && cJSON_GetArraySize(all) == 1);
}

Test(bench, train_prints_every_field_of_a_step)
{
    /* gan32's DCGAN (width 64) at a batch of 4, micro-batches of 2: two micro-steps */
    cJSON *j = bench("bench train --workload gan32 --batch 4 --micro-batch 2 --steps 1 "
                     "--warmup 0 --json");
    check_step(j, 4, 2, 1732224);
    cJSON_Delete(j);
    /* seg256's U-Net on 32x32 images, the micro-batch chosen by the memory prediction */
    j = bench("bench train --workload seg256 --size 32 --batch 2 --steps 1 --warmup 0 --json");
    check_step(j, 2, 2, 7763140);
    cJSON_Delete(j);
}

/* The definitions built into vkaccum are the file's, key for key. */
Test(bench, embedded_workloads_are_the_file)
{
    const char *root = getenv("VKACCUM_SOURCE_ROOT");
    cr_assert(root);
    FILE *f = fopen(test_path("%s/tools/bench/workloads.json", root), "rb");
    cr_assert(f);
    static char text[1 << 16];
    text[fread(text, 1, sizeof(text) - 1, f)] = '\0';
    fclose(f);
    cJSON *file = json_of(text), *built = bench("bench workloads --json");
    cr_assert(cJSON_Compare(file, built, true), "vkaccum's workloads differ from the file's "
              "(rebuild?)");
    cJSON_Delete(file);
    cJSON_Delete(built);
}

/* vkaccum and torch_ref.py build each workload with the same parameters and count the
 * same FLOPs per step (both from the shapes; the size is made small to keep it quick). */
Test(bench, torch_ref_builds_the_same_workloads)
{
    char cmd[4096], out[1 << 16];
    static const char *const args[] = { "--workload seg256 --size 64 --batch 3",
                                         "--workload gan32 --batch 3" };
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof(cmd), "%s %s/tools/bench/torch_ref.py %s --steps 0 --json 2>&1",
                 test_python(), getenv("VKACCUM_SOURCE_ROOT"), args[i]);
        FILE *p = popen(cmd, "r");
        out[fread(out, 1, sizeof(out) - 1, p)] = '\0';
        int st = pclose(p);
        if (st != 0 && strstr(out, "No module named 'torch'"))
            cr_skip("%s lacks torch (Debian: apt-get install python3-torch)", test_python());
        cr_assert_eq(st, 0, "%s\n%s", cmd, out);
        cJSON *t = json_of(out);
        snprintf(cmd, sizeof(cmd), "bench train %s --steps 0 --json", args[i]);
        cJSON *v = bench(cmd);
        cr_assert_eq(number(v, "params"), number(t, "params"), "%s", args[i]);
        cr_assert_eq(number(v, "flops_per_step"), number(t, "flops_per_step"), "%s: %.0f "
                     "FLOPs in vkaccum, %.0f in PyTorch", args[i], number(v, "flops_per_step"),
                     number(t, "flops_per_step"));
        cJSON_Delete(t);
        cJSON_Delete(v);
    }
}

/* bench ops: the best GEMM, the GEMM of the transposed conv forward's shape, then the three
 * passes of conv2d, conv_transpose2d and linear, each timed on every load path (the tiled
 * one only where the pass is a GEMM: forward and input gradient). */
Test(bench, ops_prints_every_row)
{
    cJSON *j = bench("bench ops --repeats 1 --json");
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(j, "results");
    cr_assert(cJSON_IsArray(res) && cJSON_GetArraySize(res) == 11, "%d rows",
              cJSON_GetArraySize(res));
    static const char *const op[] = { "gemm M=32768 N=64 K=576", "gemm M=65536 N=32 K=64",
                                      "conv2d", "conv_transpose2d", "linear" };
    static const char *const pass[] = { "forward", "input grad", "weight grad" };
    for (int i = 0; i < 11; i++) {
        const cJSON *r = cJSON_GetArrayItem(res, i);
        const char *name = cJSON_GetObjectItemCaseSensitive(r, "op")->valuestring;
        const char *p = cJSON_GetObjectItemCaseSensitive(r, "pass")->valuestring;
        const char *want_op = op[i < 2 ? i : 2 + (i - 2) / 3];
        const char *want_pass = i < 2 ? "forward" : pass[(i - 2) % 3];
        cr_assert(!strncmp(name, want_op, strlen(want_op)) && !strcmp(p, want_pass),
                  "row %d: %s %s, expected %s %s", i, name, p, want_op, want_pass);
        cr_assert_gt(number(r, "gflops_texel"), 0, "row %d", i);
        cr_assert_gt(number(r, "gflops_storage"), 0, "row %d", i);
        bool tiled = cJSON_GetObjectItemCaseSensitive(r, "gflops_tiled") != NULL;
        cr_assert_eq(tiled, strcmp(p, "weight grad") != 0, "row %d (%s %s): tiled %d", i, name,
                     p, tiled);
        if (tiled)
            cr_assert_gt(number(r, "gflops_tiled"), 0, "row %d", i);
    }
    cJSON_Delete(j);
}

Test(bench, train_options_belong_to_train)
{
    char out[1 << 14];
    cr_assert_eq(test_vkaccum("", "bench train", out, sizeof(out)), 2, "%s", out);
    cr_assert(strstr(out, "--workload"), "%s", out);
    cr_assert_eq(test_vkaccum("", "bench gemm --steps 1", out, sizeof(out)), 2, "%s", out);
    cr_assert(strstr(out, "belong to bench train"), "%s", out);
    cr_assert_eq(test_vkaccum("", "bench train --workload seg99", out, sizeof(out)), 2, "%s",
                 out);
    cr_assert_eq(test_vkaccum("", "bench train --workload gan32 --batch 4 --micro-batch 8",
                              out, sizeof(out)), 2, "%s", out);
}

/* --profile's JSON: timed rows of every pass a training step has, their shares summing to 1, a
 * GEMM's GFLOP/s, no more device time than the step's wall time, and the same time by
 * kernel. */
Test(bench, profile_rows_cover_the_step)
{
    cJSON *j = bench("bench train --workload gan32 --batch 4 --micro-batch 2 --steps 1 "
                     "--warmup 0 --profile --json");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "profile"), *r;
    cr_assert(cJSON_IsObject(p));
    double share = 0, dev = number(p, "device_ms_per_step");
    bool seen[6] = { false };
    static const char *const passes[] = { "forward", "input grad", "weight grad",
                                          "optimizer", "copies", "recompute" };
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(p, "rows")) {
        share += number(r, "share");
        const char *pass = cJSON_GetObjectItemCaseSensitive(r, "pass")->valuestring;
        for (int k = 0; k < 6; k++)
            seen[k] |= !strcmp(pass, passes[k]) && number(r, "ms_per_step") > 0;
        if (!strcmp(cJSON_GetObjectItemCaseSensitive(r, "op")->valuestring, "conv2d") &&
            !strcmp(pass, "forward"))
            cr_assert_gt(number(r, "gflops"), 0);
    }
    for (int k = 0; k < 5; k++)
        cr_assert(seen[k], "no row of pass %s", passes[k]);
    cr_assert(!seen[5], "a recompute row without --recompute");
    cr_assert_float_eq(share, 1.0, 1e-9);
    cr_assert(dev > 0 && dev <= number(p, "wall_ms_per_step"), "device %g ms, wall %g ms",
              dev, number(p, "wall_ms_per_step"));
    /* the same time by kernel: shares summing to 1, the GEMM and the optimizer there */
    double kshare = 0;
    bool gemm = false, optim = false;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(p, "kernels")) {
        const char *k = cJSON_GetObjectItemCaseSensitive(r, "kernel")->valuestring;
        kshare += number(r, "share");
        gemm |= !strncmp(k, "conv_gemm", 9) && number(r, "ms_per_step") > 0;
        optim |= !strncmp(k, "optim_adam", 10) && number(r, "dispatches_per_step") > 0;
    }
    cr_assert_float_eq(kshare, 1.0, 1e-9);
    cr_assert(gemm && optim, "no conv_gemm* or optim_adam* kernel row");
    cJSON_Delete(j);
}

/* The (op, pass) rows of a --profile JSON summed by op name (a --profile-layers row's
 * name up to its first space): FLOPs (GFLOP/s times ms) and dispatches per step. */
struct op_sum {
    char op[48], pass[16];
    double flops, dispatches;
};

static int sum_by_op(const cJSON *j, struct op_sum *sums, int max, bool layers)
{
    const cJSON *r;
    int n = 0;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(
                              cJSON_GetObjectItemCaseSensitive(j, "profile"), "rows")) {
        const char *label = cJSON_GetObjectItemCaseSensitive(r, "op")->valuestring;
        const char *pass = cJSON_GetObjectItemCaseSensitive(r, "pass")->valuestring;
        char op[48];
        snprintf(op, sizeof(op), "%s", label);
        char *sp = strchr(op, ' ');
        bool trainer = !strcmp(op, "optimizer") || !strcmp(op, "clear");
        if (layers && !trainer) {
            unsigned c, k, h, w;
            char tail;
            cr_assert(sp && sscanf(sp, " %u>%u %ux%u%c", &c, &k, &h, &w, &tail) == 4 && c && k &&
                          h && w, "row \"%s\" is not \"op C>K HxW\"", label);
        } else {
            cr_assert(!sp, "row \"%s\" of --profile has shapes", label);
        }
        if (sp)
            *sp = 0;
        int i = 0;
        while (i < n && (strcmp(sums[i].op, op) || strcmp(sums[i].pass, pass)))
            i++;
        if (i == n) {
            cr_assert_lt(n, max);
            memset(&sums[n], 0, sizeof(sums[n]));
            snprintf(sums[n].op, sizeof(sums[n].op), "%s", op);
            snprintf(sums[n].pass, sizeof(sums[n].pass), "%s", pass);
            n++;
        }
        sums[i].flops += number(r, "gflops") * number(r, "ms_per_step") * 1e6;
        sums[i].dispatches += number(r, "dispatches_per_step");
    }
    return n;
}

/* --profile-layers splits --profile's rows by shapes: "conv2d 3>64 16x16", each op's
 * layers adding up to its row of --profile in FLOPs and dispatches (both counted from
 * the plan, not timed); only bench train takes it. */
Test(bench, profile_layers_split_the_op_rows)
{
    const char *args = "bench train --workload gan32 --batch 4 --micro-batch 2 --steps 1 "
                       "--warmup 0 --json";
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "%s --profile", args);
    cJSON *a = bench(cmd);
    snprintf(cmd, sizeof(cmd), "%s --profile-layers", args);
    cJSON *b = bench(cmd);
    struct op_sum sa[64], sb[64];
    int na = sum_by_op(a, sa, 64, false), nb = sum_by_op(b, sb, 64, true);
    cr_assert_eq(na, nb, "%d (op, pass) rows, %d by layer summed", na, nb);
    int layers = 0;
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(
                              cJSON_GetObjectItemCaseSensitive(b, "profile"), "rows"))
        layers++;
    cr_assert_gt(layers, na, "no op split into layers");
    /* a layer's passes share its label: every weight-gradient row has its forward's */
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(b, "profile"), "rows"), *r, *f;
    cJSON_ArrayForEach(r, rows) {
        if (strcmp(cJSON_GetObjectItemCaseSensitive(r, "pass")->valuestring, "weight grad"))
            continue;
        const char *label = cJSON_GetObjectItemCaseSensitive(r, "op")->valuestring;
        bool fwd = false;
        cJSON_ArrayForEach(f, rows)
            fwd |= !strcmp(cJSON_GetObjectItemCaseSensitive(f, "op")->valuestring, label) &&
                   !strcmp(cJSON_GetObjectItemCaseSensitive(f, "pass")->valuestring, "forward");
        cr_assert(fwd, "\"%s\" has a weight-gradient row and no forward row", label);
    }
    for (int i = 0; i < na; i++) {
        int j = 0;
        while (j < nb && (strcmp(sb[j].op, sa[i].op) || strcmp(sb[j].pass, sa[i].pass)))
            j++;
        cr_assert_lt(j, nb, "%s %s has no rows by layer", sa[i].op, sa[i].pass);
        cr_assert_float_eq(sb[j].flops, sa[i].flops, 1e-6 * sa[i].flops + 1, "%s %s: %g FLOPs "
                           "by layer, %g", sa[i].op, sa[i].pass, sb[j].flops, sa[i].flops);
        cr_assert_eq(sb[j].dispatches, sa[i].dispatches, "%s %s", sa[i].op, sa[i].pass);
    }
    cJSON_Delete(b);
    char out[1 << 12];
    cr_assert_eq(test_vkaccum("", "bench gemm --profile-layers", out, sizeof(out)), 2, "%s",
                 out);
    cr_assert(strstr(out, "--profile-layers belong to bench train"), "%s", out);
}

/* seg train --profile (and --profile-layers) prints the table and trains the same bits
 * as without it. */
Test(bench, seg_train_profile_prints_and_changes_nothing)
{
    char *dir = test_tmpdir("vka_bench");
    static char out[1 << 16];
    const char *args = "seg train --data shapes --crop 32 --depth 2 --width 8 --batch 3 "
                       "--micro-batch 2 --steps 2 --eval-every 0 --save-every 1 --workers 0";
    cr_assert_eq(test_vkaccum("", test_path("%s --out %s/a", args, dir), out, sizeof(out)), 0,
                 "%s", out);
    cr_assert(!strstr(out, "profile over"), "%s", out);
    /* --profile's conv2d rows; --profile-layers' rows of the U-Net's convolutions at 32x32
     * (its first level has five) */
    static const struct { const char *flag, *run, *row; } with[] = {
        { "--profile", "b", "  conv2d " }, { "--profile-layers", "c", "8 32x32 " },
    };
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(test_vkaccum("", test_path("%s --out %s/%s %s", args, dir, with[i].run,
                                                with[i].flag), out, sizeof(out)), 0, "%s", out);
        cr_assert(strstr(out, "profile over 2 step(s)") && strstr(out, with[i].row) &&
                  strstr(out, "weight grad"), "%s: %s", with[i].flag, out);
        test_st_assert_equal(test_path("%s/a/last.safetensors", dir),
                             test_path("%s/%s/last.safetensors", dir, with[i].run));
    }
    test_tmpdir_remove(&dir);
}
