/* tools/export_onnx.py on tiny runs trained here: a U-Net (GroupNorm and convT; BatchNorm
 * and bilinear) and a DCGAN generator are exported to ONNX, which must pass the checker
 * with opset >= 17 and dynamic axes (checked again here by loading the file), and match
 * `vkaccum seg predict` / `vkaccum gan sample` on the same inputs. A vkaccum that answers
 * with other weights or latents, a misshapen tensor and an extra one must each fail,
 * named. Skipped, saying why, when the Python lacks torch, onnx or PIL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

static char out[1 << 16];

/* Runs cmd in sh, stdout and stderr into out; returns the exit status. */
static int sh(const char *cmd)
{
    char full[4096];
    snprintf(full, sizeof(full), "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    cr_assert(p, "cannot run %s", cmd);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void need_python(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s -c 'import torch, onnx, PIL'", test_python());
    if (sh(cmd) != 0)
        cr_skip("%s lacks torch, onnx or PIL (Debian: apt-get install python3-torch "
                "python3-onnx python3-pil): the ONNX export is not tested: %.300s",
                test_python(), out);
}

/* Runs tools/export_onnx.py ARGS; returns its exit status, its output in out. */
static int export_onnx(const char *args)
{
    const char *root = getenv("VKACCUM_SOURCE_ROOT");
    cr_assert(root, "VKACCUM_SOURCE_ROOT is not set (tests/meson.build sets it)");
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "%s %s/tools/export_onnx.py %s", test_python(), root, args);
    return sh(cmd);
}

/* Trains a tiny run into dir/name with the extra options; returns its folder. */
static const char *train(const char *dir, const char *name, const char *cmd, const char *extra)
{
    static const char *seg = "--data shapes --train-count 8 --crop 32 --depth 2 --width 8 "
                             "--batch 4 --steps 2 --eval-every 2 --workers 0 --val-count 2";
    /* a generator after 2 steps of lr 2e-4 draws near-constant images (|x| < 0.002, near
     * the comparison's 1e-4): 4 steps of 0.02 spread them, so that other latents change
     * the images far beyond it */
    static const char *gan = "--data fashion --width 8 --z-dim 16 --batch 8 --steps 4 "
                             "--lr 0.02 --workers 0 --grid 4";
    char args[1024];
    snprintf(args, sizeof(args), "%s train %s %s --out %s/%s", cmd,
             strcmp(cmd, "seg") ? gan : seg, extra, dir, name);
    cr_assert_eq(test_vkaccum("", args, out, sizeof(out)), 0, "%s", out);
    return test_path("%s/%s", dir, name);
}

/* The ONNX file as onnx reads it: its opset and each graph input's and output's dims
 * (a name for a dynamic axis), one line each. */
static void assert_onnx(const char *path, const char *io)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s -c '"
             "import onnx, sys; m = onnx.load(sys.argv[1]); onnx.checker.check_model(m)\n"
             "print(\"opset\", max(o.version for o in m.opset_import if o.domain in (\"\", \"ai.onnx\")))\n"
             "for v in list(m.graph.input) + list(m.graph.output):\n"
             "    print(v.name, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])"
             "' %s", test_python(), path);
    cr_assert_eq(sh(cmd), 0, "%s", out);
    int opset = 0;
    cr_assert(sscanf(out, "opset %d", &opset) == 1 && opset >= 17, "opset below 17: %s", out);
    cr_assert(strstr(out, io), "%s: expected \"%s\" in\n%s", path, io, out);
}

/* A vkaccum that appends args to every command line (a later option wins). */
static const char *wrapper(const char *dir, const char *args)
{
    const char *path = test_path("%s/fake-vkaccum", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f, "#!/bin/sh\nexec %s \"$@\" %s\n", getenv("VKACCUM_BIN"), args);
    fclose(f);
    cr_assert_eq(chmod(path, 0755), 0);
    return path;
}

static void export_seg(const char *dir, const char *run, const char *name)
{
    char args[1024];
    snprintf(args, sizeof(args), "%s/best.safetensors %s/%s.onnx --vkaccum %s", run, dir, name,
             getenv("VKACCUM_BIN"));
    cr_assert_eq(export_onnx(args), 0, "%s", out);
    cr_assert(strstr(out, "loaded strictly") && strstr(out, "passes onnx.checker") &&
              strstr(out, "vkaccum seg predict --logits: 2 images"), "%s", out);
    assert_onnx(test_path("%s/%s.onnx", dir, name),
                "image ['batch', 3, 'height', 'width']\nlogits ['batch', 4, 'height', 'width']");
}

Test(export, unet_to_onnx_matches_seg_predict)
{
    need_python();
    char *dir = test_tmpdir("vkaccum-export-seg");
    const char *run = strdup(train(dir, "a", "seg", ""));
    export_seg(dir, run, "a");

    /* vkaccum predicting with other weights (another seed) must be caught */
    const char *other = train(dir, "b", "seg", "--seed 7");
    char args[2048];
    snprintf(args, sizeof(args), "%s/best.safetensors %s/x.onnx --vkaccum %s", run, dir,
             wrapper(dir, test_path("--ckpt %s/best.safetensors", other)));
    cr_assert_eq(export_onnx(args), 1, "%s", out);
    cr_assert(strstr(out, "FAILED") && strstr(out, "vkaccum seg predict, ") &&
              strstr(out, "max |diff|"), "%s", out);

    /* strict loading: a misshapen tensor is named, with the file */
    const char *bad = test_path("%s/bad.safetensors", dir);
    float w[4 * 9] = { 0 };
    test_st_replace(test_path("%s/best.safetensors", run), bad, "head.weight", VKA_ST_F32, 4,
                    (const uint64_t[]){ 4, 9, 1, 1 }, w);
    snprintf(args, sizeof(args), "%s %s/x.onnx --no-compare", bad, dir);
    cr_assert_eq(export_onnx(args), 2, "%s", out);
    cr_assert(strstr(out, "bad.safetensors") && strstr(out, "head.weight"), "%s", out);
    free((char *)run);
    test_tmpdir_remove(&dir);
}

Test(export, batchnorm_bilinear_unet_to_onnx_matches_seg_predict)
{
    need_python();
    char *dir = test_tmpdir("vkaccum-export-bn");
    export_seg(dir, train(dir, "a", "seg", "--norm batch --up bilinear"), "a");
    test_tmpdir_remove(&dir);
}

Test(export, generator_to_onnx_matches_gan_sample)
{
    need_python();
    char *dir = test_tmpdir("vkaccum-export-gan");
    const char *run = strdup(train(dir, "g", "gan", ""));
    char args[2048];
    snprintf(args, sizeof(args), "%s/last.safetensors %s/g.onnx --vkaccum %s", run, dir,
             getenv("VKACCUM_BIN"));
    cr_assert_eq(export_onnx(args), 0, "%s", out);
    cr_assert(strstr(out, "generator G_ema,") && strstr(out, "passes onnx.checker") &&
              strstr(out, "vkaccum gan sample --raw: 8 images"), "%s", out);
    assert_onnx(test_path("%s/g.onnx", dir), "z ['batch', 16, 1, 1]\nimages ['batch', 1, 32, 32]");

    /* G instead of G_ema: exported and compared as such */
    snprintf(args, sizeof(args), "%s/last.safetensors %s/g.onnx --weights g --vkaccum %s", run,
             dir, getenv("VKACCUM_BIN"));
    cr_assert_eq(export_onnx(args), 0, "%s", out);
    cr_assert(strstr(out, "generator G,") && strstr(out, "vkaccum gan sample"), "%s", out);

    /* other latents than the module's (another seed) must be caught */
    snprintf(args, sizeof(args), "%s/last.safetensors %s/x.onnx --vkaccum %s", run, dir,
             wrapper(dir, "--seed 4"));
    cr_assert_eq(export_onnx(args), 1, "%s", out);
    cr_assert(strstr(out, "FAILED") && strstr(out, "vkaccum gan sample --raw, 8 images") &&
              strstr(out, "max |diff|"), "%s", out);
    free((char *)run);
    test_tmpdir_remove(&dir);
}
