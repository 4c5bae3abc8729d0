/* The vkaccum command: usage errors (exit 2, naming the option), a refused --device,
 * the device table, bad datasets refused by name, and the seg trainer's promise that a
 * run with micro-batch 1 and with micro-batch B (GroupNorm) logs bit-identical losses. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common.h"
#include "file.h"
#include "safetensors.h"

static char out[1 << 16];

/* Runs `PREFIX vkaccum ARGS` in sh (prefix: shell commands ending in "exec ", or "") with
 * stdout and stderr captured into out; returns the exit status. */
static int run_in(const char *prefix, const char *args)
{
    return test_vkaccum(prefix, args, out, sizeof(out));
}

static int run(const char *args)
{
    return run_in("", args);
}

Test(cli, usage_errors_exit_2_and_name_the_problem)
{
    cr_assert_eq(run("--bogus"), 2, "%s", out);
    cr_assert(strstr(out, "unknown option '--bogus'"), "%s", out);
    cr_assert_eq(run("frobnicate"), 2, "%s", out);
    cr_assert(strstr(out, "unknown command 'frobnicate'"), "%s", out);
    cr_assert_eq(run("devices --json --frob"), 2, "%s", out);
    cr_assert(strstr(out, "'--frob'"), "%s", out);
    cr_assert_eq(run("seg train --batch"), 2, "%s", out);
    cr_assert(strstr(out, "'--batch' needs a value"), "%s", out);
    cr_assert_eq(run("seg train --out /tmp/x --batch 4 --micro-batch 8"), 2, "%s", out);
    cr_assert(strstr(out, "--micro-batch 8 is larger than --batch 4"), "%s", out);
    cr_assert_eq(run("seg train --out /tmp/x --optimizer lamb"), 2, "%s", out);
    cr_assert(strstr(out, "adamw|adam|sgd"), "%s", out);
    cr_assert_eq(run("seg train --out /tmp/x --crop 30"), 2, "%s", out);
    cr_assert(strstr(out, "multiple of 2^depth"), "%s", out);
    cr_assert_eq(run("--version"), 0);
    cr_assert(strstr(out, "vkaccum "), "%s", out);
    cr_assert_eq(run("seg train --help"), 0);
    cr_assert(strstr(out, "--micro-batch"), "%s", out);
}

Test(cli, devices_table_and_bad_device)
{
    cr_assert_eq(run("devices"), 0, "%s", out);
    cr_assert(strstr(out, "llvmpipe") || strstr(out, "*"), "%s", out);
    cr_assert_eq(run("devices --json"), 0, "%s", out);
    cr_assert(strstr(out, "\"subgroup_size\""), "%s", out);
    cr_assert_eq(run("selftest --device 77"), 1, "%s", out);
    cr_assert(strstr(out, "there is no device 77"), "%s", out);
}

static void write_png(const char *path, int w, int h, int c, unsigned char v)
{
    /* an 8-bit PNG written by hand (one stored zlib block, every pixel v), so the test
     * depends on no image library of the code under test */
    static const unsigned char sig[8] = { 137, 80, 78, 71, 13, 10, 26, 10 };
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    fwrite(sig, 1, 8, f);
    /* IHDR */
    unsigned char ihdr[13] = { 0, 0, 0, (unsigned char)w, 0, 0, 0, (unsigned char)h, 8,
                               (unsigned char)(c == 3 ? 2 : 0), 0, 0, 0 };
    /* raw scanlines with filter 0, stored in one zlib "stored" block */
    size_t row = (size_t)w * c + 1, raw = row * h;
    unsigned char *z = calloc(raw + 11, 1);
    z[0] = 0x78;
    z[1] = 0x01;
    z[2] = 1;
    z[3] = (unsigned char)(raw & 255);
    z[4] = (unsigned char)(raw >> 8);
    z[5] = (unsigned char)~z[3];
    z[6] = (unsigned char)~z[4];
    unsigned a = 1, b = 0;
    for (size_t i = 0; i < raw; i++) {
        unsigned char byte = i % row == 0 ? 0 : v;
        z[7 + i] = byte;
        a = (a + byte) % 65521;
        b = (b + a) % 65521;
    }
    unsigned adler = (b << 16) | a;
    z[7 + raw] = (unsigned char)(adler >> 24);
    z[8 + raw] = (unsigned char)(adler >> 16);
    z[9 + raw] = (unsigned char)(adler >> 8);
    z[10 + raw] = (unsigned char)adler;
    const struct { const char *type; const unsigned char *data; size_t len; } chunks[] = {
        { "IHDR", ihdr, 13 }, { "IDAT", z, raw + 11 }, { "IEND", NULL, 0 } };
    for (int k = 0; k < 3; k++) {
        unsigned char len[4] = { (unsigned char)(chunks[k].len >> 24), (unsigned char)(chunks[k].len >> 16),
                                 (unsigned char)(chunks[k].len >> 8), (unsigned char)chunks[k].len };
        fwrite(len, 1, 4, f);
        unsigned long crc = 0xffffffffUL;
        unsigned char buf[4];
        memcpy(buf, chunks[k].type, 4);
        fwrite(buf, 1, 4, f);
        for (size_t i = 0; i < 4 + chunks[k].len; i++) {
            unsigned char byte = i < 4 ? buf[i] : chunks[k].data[i - 4];
            crc ^= byte;
            for (int j = 0; j < 8; j++)
                crc = (crc >> 1) ^ (0xedb88320UL & (0UL - (crc & 1)));
        }
        if (chunks[k].len)
            fwrite(chunks[k].data, 1, chunks[k].len, f);
        crc ^= 0xffffffffUL;
        unsigned char c4[4] = { (unsigned char)(crc >> 24), (unsigned char)(crc >> 16),
                                (unsigned char)(crc >> 8), (unsigned char)crc };
        fwrite(c4, 1, 4, f);
    }
    fclose(f);
    free(z);
}

/* The folders of the simple dataset layout under dir. */
static void make_layout(const char *dir)
{
    static const char *sub[] = { "train", "train/images", "train/masks",
                                 "val", "val/images", "val/masks" };
    char p[512];
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, sub[i]);
        cr_assert(mkdir(p, 0755) == 0, "cannot create %s", p);
    }
}

Test(cli, bad_dataset_is_refused_by_name)
{
    char dir[] = "/tmp/vkaccum-cli-XXXXXX";
    cr_assert(mkdtemp(dir));
    char p[512];
    make_layout(dir);
    snprintf(p, sizeof(p), "%s/train/images/a.png", dir);
    write_png(p, 16, 16, 3, 100);
    snprintf(p, sizeof(p), "%s/train/masks/a.png", dir);
    write_png(p, 16, 16, 1, 1);
    snprintf(p, sizeof(p), "%s/train/images/b.png", dir);
    write_png(p, 16, 16, 3, 50);
    /* b.png has no mask */
    char args[1024];
    snprintf(args, sizeof(args), "seg train --data %s --out %s/run --crop 16 --depth 2 --steps 1", dir, dir);
    cr_assert_eq(run(args), 1, "%s", out);
    cr_assert(strstr(out, "b.png"), "the error does not name the file: %s", out);
    /* a mask of another size than its image */
    snprintf(p, sizeof(p), "%s/train/masks/b.png", dir);
    write_png(p, 8, 16, 1, 1);
    cr_assert_eq(run(args), 1, "%s", out);
    cr_assert(strstr(out, "b.png"), "the error does not name the file: %s", out);
    snprintf(args, sizeof(args), "rm -rf %s", dir);
    cr_assert_eq(system(args), 0);
}

/* --plan reads no mask (the memory does not depend on them; at 1024x1024 the built-in
 * dataset took 28 s to make for its class statistics): a mask id past --classes stops
 * training, naming the mask, and not the plan. */
Test(cli, plan_reads_no_mask)
{
    char dir[] = "/tmp/vkaccum-cli-XXXXXX";
    cr_assert(mkdtemp(dir));
    char p[512];
    make_layout(dir);
    const char *split[2] = { "train", "val" };
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof(p), "%s/%s/images/a.png", dir, split[i]);
        write_png(p, 16, 16, 3, 100);
        snprintf(p, sizeof(p), "%s/%s/masks/a.png", dir, split[i]);
        write_png(p, 16, 16, 1, 5);
    }
    char args[1024];
    snprintf(args, sizeof(args), "seg train --data %s --out %s/run --crop 16 --depth 2 "
             "--width 8 --batch 2 --steps 1 --classes 2", dir, dir);
    cr_assert_eq(run(args), 1, "%s", out);
    cr_assert(strstr(out, "a.png") && strstr(out, "--classes 2"), "%s", out);
    strcat(args, " --plan");
    cr_assert_eq(run(args), 0, "%s", out);
    cr_assert(strstr(out, "memory plan of seg train") && !strstr(out, "class frequencies"),
              "%s", out);
    snprintf(args, sizeof(args), "rm -rf %s", dir);
    cr_assert_eq(system(args), 0);
}

/* From each train line of metrics.jsonl, the text from key `from` up to key `to` (the
 * deterministic fields, without the timings), one line each. */
static void train_fields(const char *path, const char *from, const char *to, char *dst,
                         size_t size)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "no %s", path);
    char line[4096];
    size_t used = 0;
    while (fgets(line, sizeof(line), f)) {
        char *l = strstr(line, from), *end = strstr(line, to);
        if (l && end && end > l && strstr(line, "\"kind\":\"train\""))
            used += (size_t)snprintf(dst + used, size - used, "%.*s\n", (int)(end - l), l);
    }
    fclose(f);
    cr_assert(used > 0, "%s has no train lines", path);
}

/* seg: the loss of each step */
static void losses(const char *path, char *dst, size_t size)
{
    train_fields(path, "\"loss\":", "\"lr\":", dst, size);
}

Test(cli, micro_batch_1_and_B_log_identical_losses)
{
    char dir[] = "/tmp/vkaccum-mb-XXXXXX";
    cr_assert(mkdtemp(dir));
    char args[1024], a[8192], b[8192], p[600];
    const char *common = "seg train --data shapes --train-count 16 --crop 32 --depth 2 "
                         "--width 8 --batch 4 --steps 3 --eval-every 0 --save-every 0 "
                         "--workers 0 --val-count 2";
    snprintf(args, sizeof(args), "%s --micro-batch 4 --out %s/b4", common, dir);
    cr_assert_eq(run(args), 0, "%s", out);
    snprintf(args, sizeof(args), "%s --micro-batch 1 --out %s/b1", common, dir);
    cr_assert_eq(run(args), 0, "%s", out);
    snprintf(p, sizeof(p), "%s/b4/metrics.jsonl", dir);
    losses(p, a, sizeof(a));
    snprintf(p, sizeof(p), "%s/b1/metrics.jsonl", dir);
    losses(p, b, sizeof(b));
    cr_assert(strlen(a) > 0, "no losses logged");
    cr_assert_str_eq(a, b, "micro-batch 4:\n%s\nmicro-batch 1:\n%s", a, b);
    snprintf(args, sizeof(args), "rm -rf %s", dir);
    cr_assert_eq(system(args), 0);
}

/* A short run resumed from its checkpoint logs the losses of the uninterrupted run, and
 * its checkpoint evaluates and predicts images of any size. */
Test(cli, resume_eval_and_predict)
{
    char dir[] = "/tmp/vkaccum-rs-XXXXXX";
    cr_assert(mkdtemp(dir));
    char args[2048], a[8192], b[8192], p[700];
    const char *common = "seg train --data shapes --train-count 12 --crop 32 --depth 2 "
                         "--width 8 --batch 4 --micro-batch 2 --eval-every 0 --save-every 1 "
                         "--workers 0 --val-count 2 --schedule constant";
    /* (a constant rate: the poly schedule runs over --steps, which the resume extends) */
    snprintf(args, sizeof(args), "%s --steps 4 --out %s/whole", common, dir);
    cr_assert_eq(run(args), 0, "%s", out);
    snprintf(args, sizeof(args), "%s --steps 2 --out %s/part", common, dir);
    cr_assert_eq(run(args), 0, "%s", out);
    snprintf(args, sizeof(args), "seg train --resume %s/part --steps 4", dir);
    cr_assert_eq(run(args), 0, "%s", out);
    snprintf(p, sizeof(p), "%s/whole/metrics.jsonl", dir);
    losses(p, a, sizeof(a));
    snprintf(p, sizeof(p), "%s/part/metrics.jsonl", dir);
    losses(p, b, sizeof(b));
    cr_assert_str_eq(a, b, "uninterrupted:\n%s\nresumed:\n%s", a, b);
    /* a copied run folder resumes in the copy: the original, named in its config.json,
     * is left as it was */
    snprintf(args, sizeof(args), "cp -r %s/part %s/copy", dir, dir);
    cr_assert_eq(system(args), 0);
    snprintf(p, sizeof(p), "%s/part/metrics.jsonl", dir);
    losses(p, a, sizeof(a));
    snprintf(args, sizeof(args), "seg train --resume %s/copy --steps 5", dir);
    cr_assert_eq(run(args), 0, "%s", out);
    losses(p, b, sizeof(b));
    cr_assert_str_eq(a, b, "resuming the copy changed the original's log:\n%s", b);
    snprintf(p, sizeof(p), "%s/copy/metrics.jsonl", dir);
    train_fields(p, "\"step\":", "\"epoch\":", b, sizeof(b));
    cr_assert(strstr(b, "\"step\":5,"), "the copy's log has no step 5:\n%s", b);
    /* the checkpoint taken after the last evaluation is at a window boundary: the
     * accumulators are cleared (evaluation runs no loss), so the file leaves them out and
     * a resume (above: the same losses) zeroes them */
    snprintf(p, sizeof(p), "%s/whole/last.safetensors", dir);
    struct vka_st_file *ck;
    cr_assert_eq(vka_st_read(p, &ck), 0, "%s", vka_last_error());
    static const char *const cleared[] = { "train.losses", "train.grads", "train.exact" };
    for (size_t i = 0; i < sizeof(cleared) / sizeof(cleared[0]); i++)
        cr_assert_null(vka_st_find(ck, cleared[i]), "%s holds %s", p, cleared[i]);
    cr_assert_not_null(vka_st_find(ck, "train.counters"), "%s lost train.counters", p);
    vka_st_file_destroy(&ck);

    snprintf(args, sizeof(args), "seg eval --ckpt %s/whole/last.safetensors --json", dir);
    cr_assert_eq(run(args), 0, "%s", out);
    cr_assert(strstr(out, "\"miou\"") && strstr(out, "\"confusion\""), "%s", out);

    /* an image that is no multiple of the 32-pixel tile: overlapping tiles */
    snprintf(p, sizeof(p), "%s/in", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/in/odd.png", dir);
    write_png(p, 45, 37, 3, 120);
    snprintf(args, sizeof(args), "seg predict --ckpt %s/whole/last.safetensors --input %s/in "
             "--out %s/pred", dir, dir, dir);
    cr_assert_eq(run(args), 0, "%s", out);
    snprintf(p, sizeof(p), "%s/pred/odd_mask.png", dir);
    FILE *f = fopen(p, "rb");
    cr_assert(f, "no %s: %s", p, out);
    unsigned char hdr[24];
    cr_assert_eq(fread(hdr, 1, 24, f), 24);
    fclose(f);
    /* PNG IHDR: width and height, big-endian, at bytes 16 and 20 */
    cr_assert_eq(hdr[19], 45, "mask width %u", hdr[19]);
    cr_assert_eq(hdr[23], 37, "mask height %u", hdr[23]);
    snprintf(p, sizeof(p), "%s/pred/odd_overlay.png", dir);
    cr_assert_eq(access(p, R_OK), 0, "no overlay");
    /* a checkpoint that is not one is refused by name */
    snprintf(args, sizeof(args), "seg predict --ckpt %s/in/odd.png --input %s/in --out %s/pred",
             dir, dir, dir);
    cr_assert_eq(run(args), 1, "%s", out);
    cr_assert(strstr(out, "odd.png"), "%s", out);
    snprintf(args, sizeof(args), "rm -rf %s", dir);
    cr_assert_eq(system(args), 0);
}

/* RGB colour masks through --palette: known colours train, an unknown one is refused
 * naming the file and the colour. */
Test(cli, rgb_masks_with_a_palette)
{
    char dir[] = "/tmp/vkaccum-pal-XXXXXX";
    cr_assert(mkdtemp(dir));
    char p[512], args[1024];
    make_layout(dir);
    for (int s = 0; s < 2; s++) {
        const char *split = s ? "val" : "train";
        snprintf(p, sizeof(p), "%s/%s/images/a.png", dir, split);
        write_png(p, 16, 16, 3, 90);
        snprintf(p, sizeof(p), "%s/%s/masks/a.png", dir, split);
        write_png(p, 16, 16, 3, 7); /* colour (7,7,7): class 1 */
    }
    snprintf(p, sizeof(p), "%s/palette.json", dir);
    FILE *f = fopen(p, "w");
    fputs("[[0, 0, 0], [7, 7, 7]]\n", f);
    fclose(f);
    snprintf(args, sizeof(args), "seg train --data %s --palette %s/palette.json --classes 2 "
             "--out %s/run --crop 16 --depth 2 --width 8 --batch 1 --steps 1 --workers 0", dir,
             dir, dir);
    cr_assert_eq(run(args), 0, "%s", out);
    snprintf(p, sizeof(p), "%s/train/masks/a.png", dir);
    write_png(p, 16, 16, 3, 9);
    cr_assert_eq(run(args), 1, "%s", out);
    cr_assert(strstr(out, "masks/a.png") && strstr(out, "9"), "%s", out);
    snprintf(args, sizeof(args), "rm -rf %s", dir);
    cr_assert_eq(system(args), 0);
}

/* ---- vkaccum gan ---------------------------------------------------------------- */

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

Test(cli, gan_bad_data_is_refused_by_name)
{
    char dir[] = "/tmp/vkaccum-gan-XXXXXX";
    cr_assert(mkdtemp(dir));
    char p[512], args[1024];
    /* an empty folder */
    snprintf(p, sizeof(p), "%s/empty", dir);
    cr_assert_eq(mkdir(p, 0755), 0);
    snprintf(args, sizeof(args), "gan train --data %s --out %s/run --steps 1", p, dir);
    cr_assert_eq(run(args), 1, "%s", out);
    cr_assert(strstr(out, p), "the error does not name the folder: %s", out);
    /* a corrupt image among good ones */
    snprintf(p, sizeof(p), "%s/imgs", dir);
    cr_assert_eq(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/imgs/good.png", dir);
    write_png(p, 40, 30, 3, 90);
    snprintf(p, sizeof(p), "%s/imgs/broken.png", dir);
    write_file(p, "\x89PNG\r\n\x1a\nnot really", 18);
    snprintf(args, sizeof(args), "gan train --data %s/imgs --out %s/run --steps 1", dir, dir);
    cr_assert_eq(run(args), 1, "%s", out);
    cr_assert(strstr(out, "broken.png"), "the error does not name the file: %s", out);
    /* an IDX file with a wrong magic number */
    static const unsigned char bad_magic[16] = { 0, 0, 9, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2 };
    snprintf(p, sizeof(p), "%s/bad-magic-idx3-ubyte", dir);
    write_file(p, bad_magic, sizeof(bad_magic));
    snprintf(args, sizeof(args), "gan train --data idx:%s --out %s/run --steps 1", p, dir);
    cr_assert_eq(run(args), 1, "%s", out);
    cr_assert(strstr(out, "bad-magic-idx3-ubyte") && strstr(out, "magic"), "%s", out);
    /* a truncated .gz: Debian's Fashion-MNIST test images cut to a third */
    char src[512];
    snprintf(args, sizeof(args), "f=$(ls /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz "
             "/usr/share/fashion-mnist/t10k-images-idx3-ubyte.gz 2>/dev/null | head -1); "
             "head -c 600000 \"$f\" > %s/cut-images-idx3-ubyte.gz", dir);
    cr_assert_eq(system(args), 0);
    snprintf(src, sizeof(src), "%s/cut-images-idx3-ubyte.gz", dir);
    snprintf(args, sizeof(args), "gan train --data %s --out %s/run --steps 1", src, dir);
    cr_assert_eq(run(args), 1, "%s", out);
    cr_assert(strstr(out, "cut-images-idx3-ubyte.gz"), "the error does not name the file: %s", out);
    /* usage errors */
    cr_assert_eq(run("gan train --out /tmp/x --res 48"), 2, "%s", out);
    cr_assert(strstr(out, "res 48"), "%s", out);
    cr_assert_eq(run("gan train --out /tmp/x --loss wgan"), 2, "%s", out);
    cr_assert(strstr(out, "bce|hinge"), "%s", out);
    cr_assert_eq(run("gan sample --ckpt /nonexistent.safetensors --out /tmp/x.png"), 1, "%s", out);
    cr_assert(strstr(out, "/nonexistent.safetensors"), "%s", out);
    snprintf(args, sizeof(args), "rm -rf %s", dir);
    cr_assert_eq(system(args), 0);
}

/* gan: losses, metrics and gradient norms of each iteration */
static void gan_losses(const char *path, char *dst, size_t size)
{
    train_fields(path, "\"d_loss\":", "\"img_per_s\"", dst, size);
}

Test(cli, gan_train_resume_and_sample)
{
    char dir[] = "/tmp/vkaccum-gan-XXXXXX";
    cr_assert(mkdtemp(dir));
    char args[1024], p[600];
    /* 4 iterations of a small BatchNorm DCGAN on Fashion-MNIST, saved at 2 */
    const char *common = "--data fashion --width 8 --z-dim 16 --batch 8 --micro-batch 4 "
                         "--grid 16 --sample-every 2 --save-every 2 --workers 0";
    snprintf(args, sizeof(args), "gan train %s --out %s/a --steps 4", common, dir);
    cr_assert_eq(run(args), 0, "%s", out);
    snprintf(args, sizeof(args), "gan train %s --out %s/b --steps 2", common, dir);
    cr_assert_eq(run(args), 0, "%s", out);
    snprintf(args, sizeof(args), "gan train --resume %s/b --steps 4", dir);
    cr_assert_eq(run(args), 0, "%s", out);
    cr_assert(strstr(out, "resuming"), "%s", out);
    /* the resumed run logs what the uninterrupted one logged at iterations 3 and 4 */
    char la[4096], lb[4096];
    snprintf(p, sizeof(p), "%s/a/metrics.jsonl", dir);
    gan_losses(p, la, sizeof(la));
    snprintf(p, sizeof(p), "%s/b/metrics.jsonl", dir);
    gan_losses(p, lb, sizeof(lb));
    cr_assert_str_eq(la, lb);
    snprintf(p, sizeof(p), "%s/a/samples/step_000004.png", dir);
    struct stat sb;
    cr_assert_eq(stat(p, &sb), 0, "%s was not written", p);
    snprintf(args, sizeof(args), "gan sample --ckpt %s/a/last.safetensors --n 6 --out %s/grid.png", dir, dir);
    cr_assert_eq(run(args), 0, "%s", out);
    cr_assert(strstr(out, "G_ema"), "%s", out);
    snprintf(args, sizeof(args), "gan sample --ckpt %s/a/last.safetensors --n 3 --out %s/each "
             "--interpolate 4", dir, dir);
    cr_assert_eq(run(args), 0, "%s", out);
    snprintf(p, sizeof(p), "%s/each/sample_00011.png", dir);
    cr_assert_eq(stat(p, &sb), 0, "%s was not written", p);
    /* one image per file is exactly the model's 32x32 (grids keep their borders) */
    unsigned char hdr[24];
    FILE *f = fopen(p, "rb");
    cr_assert(f && fread(hdr, 1, 24, f) == 24);
    fclose(f);
    cr_assert(hdr[16] == 0 && hdr[17] == 0 && hdr[18] == 0 && hdr[19] == 32 && hdr[23] == 32,
              "a per-image sample is %ux%u, not 32x32", hdr[19], hdr[23]);

    /* mutated counters and loader positions are refused naming the tensor, before
     * anything is written to the run folder */
    static const struct { const char *name; uint32_t ndim; uint64_t shape[2]; int64_t v[3]; } bad[] = {
        { "train.gan.counters", 1, { 3 }, { -1, 0, 0 } },
        { "train.loader", 2, { 2, 0 }, { 0 } },
        { "train.loader", 1, { 2 }, { 0, -5 } },
    };
    for (size_t c = 0; c < sizeof(bad) / sizeof(bad[0]); c++) {
        snprintf(args, sizeof(args), "rm -rf %s/c && cp -r %s/b %s/c", dir, dir, dir);
        cr_assert_eq(system(args), 0);
        snprintf(p, sizeof(p), "%s/c/last.safetensors", dir);
        test_st_replace(p, p, bad[c].name, VKA_ST_I64, bad[c].ndim, bad[c].shape, bad[c].v);
        snprintf(p, sizeof(p), "%s/c/metrics.jsonl", dir);
        cr_assert_eq(stat(p, &sb), 0);
        off_t before = sb.st_size;
        snprintf(args, sizeof(args), "gan train --resume %s/c --steps 5", dir);
        cr_assert_eq(run(args), 1, "case %zu: %s", c, out);
        cr_assert(strstr(out, bad[c].name) && strstr(out, "last.safetensors"), "case %zu: %s", c, out);
        cr_assert_eq(stat(p, &sb), 0);
        cr_assert_eq(sb.st_size, before, "case %zu: metrics.jsonl changed", c);
    }
    snprintf(args, sizeof(args), "rm -rf %s", dir);
    cr_assert_eq(system(args), 0);
}

Test(cli, gan_frechet_distance_is_logged_at_evaluations)
{
    char dir[] = "/tmp/vkaccum-fd-XXXXXX";
    cr_assert(mkdtemp(dir));
    char args[1024], p[600];
    cr_assert_eq(run("gan fid-net --out /tmp/x.safetensors --res 30"), 2, "%s", out);
    cr_assert(strstr(out, "--res 30"), "%s", out);
    /* a feature network of 5 steps is a poor one, but a real one */
    snprintf(args, sizeof(args), "gan fid-net --out %s/f.safetensors --steps 5 --n 64", dir);
    cr_assert_eq(run(args), 0, "%s", out);
    snprintf(args, sizeof(args), "gan train --data fashion --width 8 --z-dim 16 --batch 8 "
             "--steps 2 --eval-every 1 --fid-net %s/f.safetensors --fid-n 64 --workers 0 "
             "--out %s/run", dir, dir);
    cr_assert_eq(run(args), 0, "%s", out);
    snprintf(p, sizeof(p), "%s/run/metrics.jsonl", dir);
    FILE *f = fopen(p, "rb");
    cr_assert(f);
    char line[4096];
    int evals = 0;
    while (fgets(line, sizeof(line), f)) {
        char *fd = strstr(line, "\"kind\":\"fid\"") ? strstr(line, "\"fd\":") : NULL;
        if (fd) {
            double v = atof(fd + 5);
            cr_assert(v > 0 && v < 1e6, "a Frechet distance of %g: %s", v, line);
            evals++;
        }
    }
    fclose(f);
    cr_assert_eq(evals, 2, "one evaluation per iteration was asked for");
    snprintf(args, sizeof(args), "rm -rf %s", dir);
    cr_assert_eq(system(args), 0);
}

Test(cli, gan_trains_on_a_folder_of_rgb_images_of_any_size)
{
    char dir[] = "/tmp/vkaccum-ganrgb-XXXXXX";
    cr_assert(mkdtemp(dir));
    char p[600], args[1024];
    static const int sizes[4][2] = { { 40, 30 }, { 32, 32 }, { 90, 45 }, { 20, 70 } };
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s/img%d.png", dir, i);
        write_png(p, sizes[i][0], sizes[i][1], 3, (unsigned char)(40 + 50 * i));
    }
    snprintf(args, sizeof(args), "gan train --data %s --out %s/run --width 8 --z-dim 16 "
             "--batch 4 --micro-batch 2 --steps 2 --grid 4 --sample-every 1 --workers 0",
             dir, dir);
    cr_assert_eq(run(args), 0, "%s", out);
    cr_assert(strstr(out, "3x32x32"), "RGB images should train a 3-channel GAN: %s", out);
    /* the grid is an RGB PNG: colour type 2 in its header */
    snprintf(p, sizeof(p), "%s/run/samples/step_000002.png", dir);
    FILE *f = fopen(p, "rb");
    cr_assert(f, "%s was not written", p);
    unsigned char h[26];
    cr_assert_eq(fread(h, 1, sizeof(h), f), sizeof(h));
    fclose(f);
    cr_assert_eq(h[25], 2, "colour type %u, not RGB", h[25]);
    snprintf(args, sizeof(args), "rm -rf %s", dir);
    cr_assert_eq(system(args), 0);
}

/* A small seg run in dir/run: 2 steps, a checkpoint at each. */
static void small_seg_run(const char *dir, const char *more)
{
    char args[1024];
    snprintf(args, sizeof(args), "seg train --data shapes --train-count 8 --crop 32 --depth 2 "
             "--width 8 --batch 4 --micro-batch 2 --steps 2 --eval-every 0 --save-every 1 "
             "--workers 0 --val-count 2 --schedule constant --out %s/run %s", dir, more);
    cr_assert_eq(run(args), 0, "%s", out);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot read %s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strdup(buf);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f && fputs(text, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
}

/* A run's config.json goes through the command line's checks: a bad value is refused
 * naming the file and the key, before anything of the run is written. */
Test(cli, config_json_values_are_checked_like_the_command_line)
{
    char dir[] = "/tmp/vkaccum-cfg-XXXXXX";
    cr_assert(mkdtemp(dir));
    small_seg_run(dir, "");
    char cfg[600], met[600], args[1024];
    snprintf(cfg, sizeof(cfg), "%s/run/config.json", dir);
    snprintf(met, sizeof(met), "%s/run/metrics.jsonl", dir);
    char *good = read_text(cfg), *metrics = read_text(met);
    /* key, JSON value, what the message must say besides the file and the key */
    static const char *cases[][3] = {
        { "micro-batch", "9007199254740994", "0 to 1073741824" },
        { "optimizer", "\"bogus\"", "adamw|adam|sgd" },
        { "norm", "\"bogus\"", "group|batch" },
        { "classes", "-1", "whole number" },
        { "steps", "2.5", "whole number" },
        { "lr", "\"fast\"", "must be a number" },
        { "drop-last", "1", "true or false" },
        { "data", "\"shapes\\u0007\"", "control character" },
        { "width", NULL, "is missing: its default is used" }, /* then 32 channels do not load */
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        cJSON *j = cJSON_Parse(good);
        cr_assert(j);
        if (cases[c][1])
            cJSON_ReplaceItemInObjectCaseSensitive(j, cases[c][0], cJSON_Parse(cases[c][1]));
        else
            cJSON_DeleteItemFromObjectCaseSensitive(j, cases[c][0]);
        char *text = cJSON_Print(j);
        write_text(cfg, text);
        snprintf(args, sizeof(args), "seg train --resume %s/run --steps 3", dir);
        cr_assert_eq(run(args), 1, "case %s: %s", cases[c][0], out);
        char key[64];
        snprintf(key, sizeof(key), "\"%s\"", cases[c][0]);
        cr_assert(strstr(out, cfg) && strstr(out, key) && strstr(out, cases[c][2]),
                  "case %s: %s", cases[c][0], out);
        char *now = read_text(cfg), *mnow = read_text(met);
        cr_assert_str_eq(now, text, "case %s: config.json was rewritten", cases[c][0]);
        cr_assert_str_eq(mnow, metrics, "case %s: metrics.jsonl changed", cases[c][0]);
        free(now);
        free(mnow);
        free(text);
        cJSON_Delete(j);
    }
    /* a value the type check lets through but the run cannot use: refused before the new
     * run folder is made */
    cJSON *j = cJSON_Parse(good);
    cJSON_ReplaceItemInObjectCaseSensitive(j, "color-jitter", cJSON_CreateNumber(9e15));
    char *text = cJSON_Print(j);
    write_text(cfg, text);
    snprintf(args, sizeof(args), "seg train --resume %s/run --out %s/other --steps 3", dir, dir);
    cr_assert_eq(run(args), 2, "%s", out);
    cr_assert(strstr(out, "--color-jitter"), "%s", out);
    snprintf(args, sizeof(args), "%s/other", dir);
    cr_assert_neq(access(args, F_OK), 0, "the run folder was made before the check");
    free(text);
    cJSON_Delete(j);
    /* the good config resumes */
    write_text(cfg, good);
    snprintf(args, sizeof(args), "seg train --resume %s/run --steps 3", dir);
    cr_assert_eq(run(args), 0, "%s", out);
    free(good);
    free(metrics);
    snprintf(args, sizeof(args), "rm -rf %s", dir);
    cr_assert_eq(system(args), 0);
}

/* How many train lines of metrics.jsonl log step s. */
static int step_lines(const char *path, int s)
{
    char *text = read_text(path), key[64];
    snprintf(key, sizeof(key), "\"kind\":\"train\",\"step\":%d,", s);
    int n = 0;
    for (char *p = strstr(text, key); p; p = strstr(p + 1, key))
        n++;
    free(text);
    return n;
}

/* The run's files under faults: config.json is replaced atomically (a write cut by a
 * file-size limit leaves the old one, and the run resumes), a failed metrics write ends
 * the run with the reason, metrics logged after the checkpoint by a run that was then
 * stopped are dropped on resume (no step twice), and a run folder that cannot be made
 * says why. */
Test(cli, run_files_under_faults)
{
    char dir[] = "/tmp/vkaccum-flt-XXXXXX";
    cr_assert(mkdtemp(dir));
    small_seg_run(dir, "");
    char cfg[600], met[600], args[1024];
    snprintf(cfg, sizeof(cfg), "%s/run/config.json", dir);
    snprintf(met, sizeof(met), "%s/run/metrics.jsonl", dir);
    char *good = read_text(cfg);
    cr_assert_gt(strlen(good), 600, "config.json is too short for the 512-byte limit");

    /* a 512-byte file-size limit (SIGXFSZ ignored: writes fail with EFBIG) */
    snprintf(args, sizeof(args), "seg train --resume %s/run --steps 3", dir);
    cr_assert_eq(run_in("trap '' XFSZ; ulimit -f 1; exec ", args), 1, "%s", out);
    cr_assert(strstr(out, "config.json") && strstr(out, "File too large"), "%s", out);
    char *now = read_text(cfg);
    cr_assert_str_eq(now, good, "config.json was not kept whole");
    free(now);

    /* a run stopped after logging step 3 but before saving it, with a torn last line */
    FILE *f = fopen(met, "ab");
    cr_assert(f);
    fputs("{\"kind\":\"train\",\"step\":3,\"epoch\":0,\"loss\":99,\"lr\":0}\n{\"kind\":\"tr", f);
    fclose(f);
    cr_assert_eq(run(args), 0, "%s", out);
    for (int s = 1; s <= 3; s++)
        cr_assert_eq(step_lines(met, s), 1, "step %d is logged %d times", s, step_lines(met, s));
    now = read_text(met);
    cr_assert_null(strstr(now, "\"loss\":99"), "the line logged after the checkpoint stayed");
    cr_assert_null(strstr(now, "{\"kind\":\"tr\n"), "the torn line stayed");
    free(now);

    /* metrics.jsonl on a full disk */
    snprintf(args, sizeof(args), "%s/full", dir);
    cr_assert_eq(mkdir(args, 0755), 0);
    snprintf(args, sizeof(args), "%s/full/metrics.jsonl", dir);
    cr_assert_eq(symlink("/dev/full", args), 0);
    snprintf(args, sizeof(args), "seg train --data shapes --train-count 8 --crop 32 --depth 2 "
             "--width 8 --batch 4 --steps 1 --eval-every 0 --workers 0 --val-count 2 "
             "--out %s/full", dir);
    cr_assert_eq(run(args), 1, "%s", out);
    cr_assert(strstr(out, "metrics.jsonl") && strstr(out, "No space left on device"), "%s", out);

    /* a run folder under a regular file */
    snprintf(args, sizeof(args), "seg train --data shapes --steps 1 --out %s/run/config.json/x", dir);
    cr_assert_eq(run(args), 1, "%s", out);
    cr_assert(strstr(out, "config.json/x") && strstr(out, "Not a directory"), "%s", out);
    free(good);
    snprintf(args, sizeof(args), "rm -rf %s", dir);
    cr_assert_eq(system(args), 0);
}

/* The loader position and the trainer's counters read back from a checkpoint are checked
 * by element count and range: a train.loader of shape [2, 0] once read 16 bytes past
 * its buffer (ASan) and carried on from a garbage position. */
Test(cli, seg_checkpoint_values_are_range_checked)
{
    char dir[] = "/tmp/vkaccum-ckv-XXXXXX";
    cr_assert(mkdtemp(dir));
    small_seg_run(dir, "");
    char ck[300], args[1024];
    snprintf(ck, sizeof(ck), "%s/run/last.safetensors", dir);
    struct vka_st_file *f;
    cr_assert_eq(vka_st_read(ck, &f), 0, "%s", vka_last_error());
    int64_t counters[10];
    memcpy(counters, vka_st_find(f, "train.counters")->data, sizeof(counters));
    vka_st_file_destroy(&f);
    char keep[300];
    snprintf(keep, sizeof(keep), "%s/keep.safetensors", dir);
    snprintf(args, sizeof(args), "cp %s %s", ck, keep);
    cr_assert_eq(system(args), 0);
    int64_t pass_bad[10];
    memcpy(pass_bad, counters, sizeof(pass_bad));
    pass_bad[9] = 4294967295LL;
    static const int64_t zero[2] = { 0, 0 }, neg[2] = { -1, 3 }, far[2] = { 0, 1000000 };
    const struct { const char *name; uint32_t ndim; uint64_t shape[2]; const int64_t *v;
                   const char *want; } cases[] = {
        { "train.loader", 2, { 2, 0 }, zero, "2 int64 values" },
        { "train.loader", 1, { 2 }, neg, "negative" },
        { "train.loader", 1, { 2 }, far, "outside a dataset" },
        { "train.counters", 1, { 10 }, pass_bad, "pass 4294967295" },
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        test_st_replace(keep, ck, cases[c].name, VKA_ST_I64, cases[c].ndim, cases[c].shape,
                        cases[c].v);
        snprintf(args, sizeof(args), "seg train --resume %s/run --steps 3", dir);
        cr_assert_eq(run(args), 1, "case %zu: %s", c, out);
        cr_assert(strstr(out, cases[c].want), "case %zu: %s", c, out);
        if (c < 2 || c == 3)
            cr_assert(strstr(out, cases[c].name) && strstr(out, ck), "case %zu: %s", c, out);
    }
    snprintf(args, sizeof(args), "rm -rf %s", dir);
    cr_assert_eq(system(args), 0);
}

/* Masks as a new user's data has them: a VOC-layout folder of 4 classes trains with
 * --classes 4; an id >= --classes is refused naming the mask file, the id and its
 * pixels; without --classes, a stray id warns that the classes between are empty. */
Test(cli, class_ids_are_read_from_the_masks)
{
    char dir[] = "/tmp/vkaccum-cls-XXXXXX";
    cr_assert(mkdtemp(dir));
    char p[600], args[1024];
    static const char *sub[] = { "voc", "voc/JPEGImages", "voc/SegmentationClass",
                                 "voc/ImageSets", "voc/ImageSets/Segmentation" };
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, sub[i]);
        cr_assert_eq(mkdir(p, 0755), 0);
    }
    /* images are known by their bytes, not their names: a PNG in ID.jpg will do */
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s/voc/JPEGImages/im%d.jpg", dir, i);
        write_png(p, 16, 16, 3, (unsigned char)(40 * i + 20));
        snprintf(p, sizeof(p), "%s/voc/SegmentationClass/im%d.png", dir, i);
        write_png(p, 16, 16, 1, i == 3 ? 255 : (unsigned char)i); /* ids 0-2, 255 ignored */
    }
    snprintf(p, sizeof(p), "%s/voc/ImageSets/Segmentation/train.txt", dir);
    write_text(p, "im0\nim1\nim2\nim3\n");
    snprintf(p, sizeof(p), "%s/voc/ImageSets/Segmentation/val.txt", dir);
    write_text(p, "im1\nim2\n");
    const char *common = "seg train --crop 16 --depth 2 --width 8 --batch 2 --steps 1 "
                         "--eval-every 0 --workers 0 --no-augment";
    snprintf(args, sizeof(args), "%s --data voc:%s/voc --classes 4 --out %s/r1", common, dir, dir);
    cr_assert_eq(run(args), 0, "%s", out);
    cr_assert(strstr(out, "4 classes"), "%s", out);
    snprintf(args, sizeof(args), "%s --data voc:%s/voc --out %s/r2", common, dir, dir);
    cr_assert_eq(run(args), 0, "%s", out);
    cr_assert(strstr(out, "3 classes"), "the class count is not the masks': %s", out);
    /* a stray 7 in one mask of a folder dataset */
    snprintf(p, sizeof(p), "%s/voc/SegmentationClass/im2.png", dir);
    write_png(p, 16, 16, 1, 7);
    snprintf(args, sizeof(args), "%s --data voc:%s/voc --classes 4 --out %s/r3", common, dir, dir);
    cr_assert_eq(run(args), 1, "%s", out);
    cr_assert(strstr(out, "im2.png") && strstr(out, "7") && strstr(out, "256 pixels"), "%s", out);
    snprintf(args, sizeof(args), "%s --data voc:%s/voc --out %s/r4", common, dir, dir);
    cr_assert_eq(run(args), 0, "%s", out);
    cr_assert(strstr(out, "8 classes") && strstr(out, "warning: class 2 is in no training mask"),
              "%s", out);
    snprintf(args, sizeof(args), "rm -rf %s", dir);
    cr_assert_eq(system(args), 0);
}

/* Curves: seg train draws RUN/curves.png at its evaluations (the suite turns that off
 * with VKACCUM_CURVES=0, this test back on); vkaccum plot overlays runs, refuses to mix
 * seg and gan runs and names a missing run; without matplotlib it says what to install. */
Test(cli, curves_of_runs)
{
    char dir[] = "/tmp/vkaccum-plot-XXXXXX";
    cr_assert(mkdtemp(dir));
    char args[2048], p[300];
    const char *common = "seg train --data shapes --train-count 8 --crop 32 --depth 2 "
                         "--width 8 --batch 4 --steps 4 --eval-every 2 --workers 0 --val-count 2";
    snprintf(args, sizeof(args), "%s --out %s/a", common, dir);
    cr_assert_eq(run_in("VKACCUM_CURVES=1 exec ", args), 0, "%s", out);
    cr_assert(strstr(out, "curves: ") && strstr(out, "curves.png"), "%s", out);
    unsigned char sig[8], png[8] = { 137, 80, 78, 71, 13, 10, 26, 10 };
    snprintf(p, sizeof(p), "%s/a/curves.png", dir);
    FILE *f = fopen(p, "rb");
    cr_assert(f && fread(sig, 1, 8, f) == 8 && !memcmp(sig, png, 8), "no PNG in %s", p);
    fclose(f);
    snprintf(args, sizeof(args), "%s --micro-batch 2 --out %s/b", common, dir);
    cr_assert_eq(run(args), 0, "%s", out);
    snprintf(p, sizeof(p), "%s/b/curves.png", dir);
    cr_assert_neq(access(p, F_OK), 0, "VKACCUM_CURVES=0 drew curves");
    snprintf(args, sizeof(args), "plot %s/a %s/b --out %s/ab.png --title two", dir, dir, dir);
    cr_assert_eq(run(args), 0, "%s", out);
    snprintf(p, sizeof(p), "%s/ab.png", dir);
    struct stat sb;
    cr_assert(stat(p, &sb) == 0 && sb.st_size > 1000, "%s", out);
    snprintf(args, sizeof(args), "gan train --data fashion --width 8 --z-dim 16 --batch 8 "
             "--steps 2 --workers 0 --grid 4 --out %s/g", dir);
    cr_assert_eq(run(args), 0, "%s", out);
    snprintf(args, sizeof(args), "plot %s/a %s/g --out %s/x.png", dir, dir, dir);
    cr_assert_eq(run(args), 2, "%s", out);
    cr_assert(strstr(out, "seg and gan runs cannot share"), "%s", out);
    snprintf(args, sizeof(args), "plot %s/nothing --out %s/x.png", dir, dir);
    cr_assert_eq(run(args), 2, "%s", out);
    cr_assert(strstr(out, "nothing") && strstr(out, "No such file"), "%s", out);
    cr_assert_eq(run("plot --out x.png"), 2, "%s", out);
    /* a matplotlib that cannot be imported */
    snprintf(p, sizeof(p), "%s/fake/matplotlib", dir);
    snprintf(args, sizeof(args), "mkdir -p %s && echo 'raise ImportError(\"no\")' > %s/__init__.py",
             p, p);
    cr_assert_eq(system(args), 0);
    char prefix[700];
    snprintf(prefix, sizeof(prefix), "PYTHONPATH=%s/fake exec ", dir);
    snprintf(args, sizeof(args), "plot %s/a --out %s/y.png", dir, dir);
    cr_assert_eq(run_in(prefix, args), 1, "%s", out);
    cr_assert(strstr(out, "install python3-matplotlib"), "%s", out);
    snprintf(args, sizeof(args), "rm -rf %s", dir);
    cr_assert_eq(system(args), 0);
}

/* The bytes of the one event file in dir (malloc'd; *n its size). */
static char *events_file(const char *dir, size_t *n)
{
    char cmd[700], path[700];
    snprintf(cmd, sizeof(cmd), "ls %s/events.out.tfevents.*", dir);
    FILE *p = popen(cmd, "r");
    cr_assert(p && fgets(path, sizeof(path), p), "no event file in %s", dir);
    pclose(p);
    path[strcspn(path, "\n")] = '\0';
    FILE *f = fopen(path, "rb");
    cr_assert(f);
    static char buf[1 << 20];
    *n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    char *copy = malloc(*n);
    memcpy(copy, buf, *n);
    return copy;
}

static bool holds(const char *data, size_t n, const char *what)
{
    size_t k = strlen(what);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(data + i, what, k))
            return true;
    return false;
}

/* --tensorboard: RUN/tb/ holds an event file with the runs' scalars and images (the
 * format itself is checked record by record in tests/test_tb.c). */
Test(cli, tensorboard_events_of_a_run)
{
    char dir[] = "/tmp/vkaccum-tb-XXXXXX";
    cr_assert(mkdtemp(dir));
    char args[1024], p[300];
    snprintf(args, sizeof(args), "seg train --data shapes --train-count 8 --crop 32 --depth 2 "
             "--width 8 --batch 4 --steps 2 --eval-every 2 --workers 0 --val-count 2 "
             "--tensorboard --out %s/s", dir);
    cr_assert_eq(run(args), 0, "%s", out);
    snprintf(p, sizeof(p), "%s/s/tb", dir);
    size_t n;
    char *ev = events_file(p, &n);
    static const char *seg_tags[] = { "brain.Event:2", "train/loss", "train/lr", "val/miou",
                                      "val/overlay_0", "\x89PNG" };
    for (size_t i = 0; i < sizeof(seg_tags) / sizeof(seg_tags[0]); i++)
        cr_assert(holds(ev, n, seg_tags[i]), "the seg events hold no %s", seg_tags[i]);
    free(ev);
    snprintf(args, sizeof(args), "gan train --data fashion --width 8 --z-dim 16 --batch 8 "
             "--steps 2 --sample-every 1 --workers 0 --grid 4 --tensorboard --out %s/g", dir);
    cr_assert_eq(run(args), 0, "%s", out);
    snprintf(p, sizeof(p), "%s/g/tb", dir);
    ev = events_file(p, &n);
    static const char *gan_tags[] = { "train/d_loss", "train/g_loss", "train/d_real",
                                      "samples/grid" };
    for (size_t i = 0; i < sizeof(gan_tags) / sizeof(gan_tags[0]); i++)
        cr_assert(holds(ev, n, gan_tags[i]), "the gan events hold no %s", gan_tags[i]);
    free(ev);
    /* without the flag, no tb/ */
    snprintf(args, sizeof(args), "seg train --data shapes --train-count 8 --crop 32 --depth 2 "
             "--width 8 --batch 4 --steps 1 --eval-every 0 --workers 0 --val-count 2 "
             "--out %s/n", dir);
    cr_assert_eq(run(args), 0, "%s", out);
    snprintf(p, sizeof(p), "%s/n/tb", dir);
    cr_assert_neq(access(p, F_OK), 0, "tb/ was made without --tensorboard");
    snprintf(args, sizeof(args), "rm -rf %s", dir);
    cr_assert_eq(system(args), 0);
}

/* Found by fuzzing (tests/fuzz, "config": options written as config.json and parsed back
 * must load unchanged): cJSON printed numbers with 15 significant digits, so that a
 * resumed run got another lr (0.88888888888888884 came back as 0.88888888888888895) or
 * seed (9007199254740991 as 9007199254740990), and a seed of 10^17, written "1e+17",
 * could not be resumed at all. Whole-number options now stop at 2^53, which a JSON
 * number holds exactly, and numbers are written with every digit they need. */
Test(cli, config_json_keeps_every_digit)
{
    char dir[] = "/tmp/vkaccum-digits-XXXXXX";
    cr_assert(mkdtemp(dir));
    char args[1024], cfg[600];
    /* --crop 30 would be refused after the options are read: no run starts either way */
    snprintf(args, sizeof(args), "seg train --out %s/x --seed 100000000000000000 --crop 30", dir);
    cr_assert_eq(run(args), 2, "%s", out);
    cr_assert(strstr(out, "--seed 100000000000000000") && strstr(out, "0 to 9007199254740992"),
              "%s", out);
    small_seg_run(dir, "--seed 9007199254740991 --lr 0.88888888888888884 --momentum 0.1");
    snprintf(cfg, sizeof(cfg), "%s/run/config.json", dir);
    static const char *want[] = { "\"seed\":\t9007199254740991,", "\"lr\":\t0.8888888888888888,",
                                  "\"momentum\":\t0.1," };
    char *text = read_text(cfg);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_assert(strstr(text, want[i]), "config.json lacks %s:\n%s", want[i], text);
    /* the resumed run reads them back whole and writes them out unchanged */
    snprintf(args, sizeof(args), "seg train --resume %s/run --steps 3", dir);
    cr_assert_eq(run(args), 0, "%s", out);
    free(text);
    text = read_text(cfg);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_assert(strstr(text, want[i]), "config.json after the resume lacks %s:\n%s", want[i],
                  text);
    free(text);
    snprintf(args, sizeof(args), "rm -rf %s", dir);
    cr_assert_eq(system(args), 0);
}

/* The layouts people have reach seg train: a CSV list of pairs with mmsegmentation's
 * --reduce-zero-label (mask values 0..3 train 3 classes; 0 ignored). */
Test(cli, list_layout_with_reduce_zero_label)
{
    char dir[] = "/tmp/vkaccum-lst-XXXXXX";
    cr_assert(mkdtemp(dir));
    char p[300], args[1024];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s/im%d.png", dir, i);
        write_png(p, 16, 16, 3, (unsigned char)(50 * i + 10));
        snprintf(p, sizeof(p), "%s/m%d.png", dir, i);
        write_png(p, 16, 16, 1, (unsigned char)i);
    }
    snprintf(p, sizeof(p), "%s/train.csv", dir);
    write_text(p, "image,mask\nim0.png,m0.png\nim1.png,m1.png\nim2.png,m2.png\nim3.png,m3.png\n");
    snprintf(p, sizeof(p), "%s/val.csv", dir);
    write_text(p, "im1.png,m1.png\nim3.png,m3.png\n");
    const char *common = "seg train --crop 16 --depth 2 --width 8 --batch 2 --steps 1 "
                         "--eval-every 0 --workers 0 --no-augment";
    snprintf(args, sizeof(args), "%s --data list:%s/train.csv --reduce-zero-label --out %s/r",
             common, dir, dir);
    cr_assert_eq(run(args), 0, "%s", out);
    cr_assert(strstr(out, "4 training images, 2 validation images, 3 classes"), "%s", out);
    /* a line that is not a pair is named with its line number */
    snprintf(p, sizeof(p), "%s/bad_train.csv", dir);
    write_text(p, "im0.png,m0.png\nim1.png\n");
    snprintf(p, sizeof(p), "%s/bad_val.csv", dir);
    write_text(p, "im0.png,m0.png\n");
    snprintf(args, sizeof(args), "%s --data list:%s/bad_train.csv --out %s/r2", common, dir, dir);
    cr_assert_eq(run(args), 1, "%s", out);
    cr_assert(strstr(out, "bad_train.csv:2"), "%s", out);
    snprintf(args, sizeof(args), "rm -rf %s", dir);
    cr_assert_eq(system(args), 0);
}

static cJSON *read_json(const char *path)
{
    char *text;
    size_t len;
    cr_assert_eq(vka_read_whole(path, 1 << 20, &text, &len), 0, "%s", vka_last_error());
    cJSON *j = cJSON_Parse(text);
    free(text);
    cr_assert(j, "%s is not JSON", path);
    return j;
}

/* The total of a --plan printout, in MiB. */
static double plan_total(const char *args)
{
    cr_assert_eq(run(args), 0, "%s", out);
    const char *t = strstr(out, "  total ");
    double mib = 0;
    cr_assert(t && sscanf(t, " total %lf MiB", &mib) == 1, "no total in:\n%s", out);
    return mib;
}

/* --plan prints the prediction and writes nothing; --micro-batch auto takes the largest
 * micro-batch whose prediction fits --mem-budget (and the run stays inside it); a
 * configuration that fits nowhere is refused before anything is allocated or written,
 * naming what it needs, the budget and what would fit. */
Test(cli, fitting_into_device_memory)
{
    char *dir = test_tmpdir("vkaccum-fit");
    const char *common = "seg train --data shapes --train-count 8 --crop 64 --depth 2 "
                         "--width 8 --batch 8 --steps 1 --eval-every 0 --save-every 0 "
                         "--workers 0 --val-count 1";
    char args[1024];
    snprintf(args, sizeof(args), "%s --out %s/plan --plan --micro-batch 2", common, dir);
    double b2 = plan_total(args);
    cr_assert(strstr(out, "largest micro-batch within the budget") &&
              strstr(out, "alive at the training pass's peak"), "%s", out);
    struct stat sb;
    cr_assert_neq(stat(test_path("%s/plan", dir), &sb), 0, "--plan made the run folder");
    snprintf(args, sizeof(args), "%s --out %s/plan --plan --micro-batch 3", common, dir);
    double b3 = plan_total(args);
    cr_assert_gt(b3, b2 + 0.5, "micro-batch 3 predicts %.1f MiB, 2 %.1f MiB", b3, b2);

    /* auto between the two: micro-batch 2, recorded in config.json */
    double budget = (b2 + b3) / 2;
    snprintf(args, sizeof(args), "%s --out %s/auto --mem-budget %.1f --recompute none", common,
             dir, budget);
    cr_assert_eq(run(args), 0, "%s", out);
    cr_assert(strstr(out, "batch 8 as micro-batches of 2 (4 per step)"), "%s", out);
    cJSON *cfg = read_json(test_path("%s/auto/config.json", dir));
    cr_assert(cfg);
    cr_assert_eq(cJSON_GetObjectItem(cfg, "micro-batch")->valuedouble, 2);
    cr_assert_str_eq(cJSON_GetObjectItem(cfg, "recompute")->valuestring, "none");
    cJSON_Delete(cfg);

    /* under micro-batch 1's need without recompute: refused, nothing written */
    snprintf(args, sizeof(args), "%s --out %s/plan --plan --micro-batch 1 --recompute none",
             common, dir);
    double b1 = plan_total(args);
    snprintf(args, sizeof(args), "%s --out %s/no --mem-budget %.1f --recompute none "
             "--micro-batch auto", common, dir, b1 - 1);
    cr_assert_eq(run(args), 1, "%s", out);
    cr_assert(strstr(out, "needs ") && strstr(out, "at micro-batch 1") &&
              strstr(out, "the budget (--mem-budget)") && strstr(out, "fits with --recompute "),
              "%s", out);
    cr_assert_neq(stat(test_path("%s/no", dir), &sb), 0, "a refused run made its folder");
    /* --recompute auto takes the mode that fits */
    snprintf(args, sizeof(args), "%s --out %s/rec --mem-budget %.1f --micro-batch 1", common,
             dir, b1 - 1);
    cr_assert_eq(run(args), 0, "%s", out);
    cfg = read_json(test_path("%s/rec/config.json", dir));
    cr_assert(cfg);
    cr_assert_str_neq(cJSON_GetObjectItem(cfg, "recompute")->valuestring, "none");
    cJSON_Delete(cfg);

    /* gan train --plan */
    snprintf(args, sizeof(args), "gan train --out %s/g --plan --batch 16 --width 8", dir);
    cr_assert_gt(plan_total(args), 0);
    cr_assert(strstr(out, "--recompute blocks"), "%s", out);
    test_tmpdir_remove(&dir);
}

/* --dump-grads (tools/parity/accum.py's input) in both accumulation modes: the same
 * window gives the same count and, within float32 summation error, the same loss and
 * gradients. Exact mode's sums are rounded once; ordered mode's float chain over 4
 * samples carries at most a few ulps of each tensor's largest values, so 1e-5 of a
 * tensor's largest magnitude (plus 1e-12) bounds the difference. (The dumped steps are
 * not compared: AdamW's first step is lr * g / (|g| + eps), so a cancelling element with
 * |g| near eps = 1e-8 moves by a good part of lr for a 2e-9 change of g; accum.py checks
 * each mode's step against PyTorch's.) Caught: exact sums not resolved before the dump
 * reads them (a count of 0, an infinite scale). */
Test(cli, dump_grads_in_both_accumulation_modes)
{
    char *dir = test_tmpdir("vkaccum-dump");
    char args[1024];
    const char *mode[2] = { "ordered", "exact" };
    struct vka_st_file *f[2];
    for (int k = 0; k < 2; k++) {
        snprintf(args, sizeof(args), "seg train --data shapes --train-count 4 --crop 32 "
                 "--depth 2 --width 8 --batch 4 --micro-batch 2 --no-augment --accumulate %s "
                 "--dump-grads %s/%s.safetensors", mode[k], dir, mode[k]);
        cr_assert_eq(run(args), 0, "%s", out);
        cr_assert_eq(vka_st_read(test_path("%s/%s.safetensors", dir, mode[k]), &f[k]), 0,
                     "%s", vka_last_error());
    }
    const struct vka_st_tensor *lc0 = vka_st_find(f[0], "loss_and_count"),
                               *lc1 = vka_st_find(f[1], "loss_and_count");
    cr_assert(lc0 && lc1);
    const float *a = lc0->data, *b = lc1->data;
    cr_assert(a[1] > 0 && a[1] == b[1], "counts %g (ordered) and %g (exact)", a[1], b[1]);
    cr_assert_float_eq(a[0], b[0], 1e-6 * fabsf(a[0]), "losses %.9g and %.9g", a[0], b[0]);
    size_t compared = 0;
    for (size_t i = 0; i < f[0]->n_tensors; i++) {
        const struct vka_st_tensor *t = &f[0]->tensors[i];
        if (strncmp(t->name, "grad.", 5))
            continue;
        const struct vka_st_tensor *u = vka_st_find(f[1], t->name);
        uint64_t n;
        cr_assert(u && vka_st_numel(t, &n) == 0);
        const float *x = t->data, *y = u->data;
        float big = 0;
        for (uint64_t j = 0; j < n; j++)
            big = fabsf(x[j]) > big ? fabsf(x[j]) : big;
        for (uint64_t j = 0; j < n; j++)
            cr_assert_leq(fabsf(x[j] - y[j]), 1e-5f * big + 1e-12f, "%s[%llu]: %.9g ordered, "
                          "%.9g exact", t->name, (unsigned long long)j, x[j], y[j]);
        compared++;
    }
    cr_assert_gt(compared, 10);
    vka_st_file_destroy(&f[0]);
    vka_st_file_destroy(&f[1]);
    test_tmpdir_remove(&dir);
}
