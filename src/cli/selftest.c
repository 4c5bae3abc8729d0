/* vkaccum selftest: runs the built-in shaders on this device against plain C, so a new
 * machine shows at once whether its Vulkan driver computes what vkaccum expects. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/opts.h"
#include "log.h"
#include "ops/basic.h"

static const char usage[] =
    "usage: vkaccum selftest [--device N|NAME]\n"
    "\n"
    "Runs fill, scale, axpy and the deterministic sum on the device against plain C on\n"
    "random data of several lengths, prints the largest error of each and the time the\n"
    "device took, and exits 1 if any check fails.";

struct selftest_opts {
    char device[128];
};

static const struct opt_desc opts[] = {
    OPT_ROW(struct selftest_opts, "device", OPT_STR, device, NULL,
            "device index or a part of its name (see 'vkaccum devices')"),
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float frand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / (1ull << 24))) * 2.0f - 1.0f;
}

struct check {
    const char *name;
    uint64_t n;
    double err, tol;
};

static int run_one(struct vka_ctx *ctx, uint64_t n, struct check out[4])
{
    int ret;
    size_t bytes = (size_t)(n ? n : 1) * sizeof(float);
    float *x = malloc(bytes), *y = malloc(bytes), *r = malloc(bytes);
    struct vka_buf *bx = NULL, *by = NULL, *bs = NULL;
    struct vka_cmd *cmd = NULL;
    if (!x || !y || !r) {
        vka_err("selftest: out of memory for %llu floats", (unsigned long long)n);
        ret = -ENOMEM;
        goto out;
    }
    for (uint64_t i = 0; i < n; i++) {
        x[i] = frand();
        y[i] = frand();
    }
    if ((ret = vka_buf_create(ctx, &(struct vka_buf_params){ .size = n * 4 }, &bx)) < 0 ||
        (ret = vka_buf_create(ctx, &(struct vka_buf_params){ .size = n * 4 }, &by)) < 0 ||
        (ret = vka_buf_create(ctx, &(struct vka_buf_params){ .size = 16 }, &bs)) < 0 ||
        (ret = vka_cmd_create(ctx, NULL, &cmd)) < 0)
        goto out;
    struct vka_tensor tx = vka_tensor_flat(bx, 0, n), ty = vka_tensor_flat(by, 0, n);
    struct vka_tensor ts = vka_tensor_flat(bs, 0, 1);
    const float a = 0.37f;

    /* fill then scale: y = 2.5 * 0.5 */
    if ((ret = vka_cmd_begin(cmd)) < 0 || (ret = vka_fill(cmd, &ty, 2.5f)) < 0 ||
        (ret = vka_scale(cmd, &ty, 0.5f)) < 0 || (ret = vka_cmd_run(cmd)) < 0 ||
        (ret = vka_buf_download(by, 0, r, n * 4)) < 0)
        goto out;
    double e = 0;
    for (uint64_t i = 0; i < n; i++)
        e = fmax(e, fabs(r[i] - 1.25));
    out[0] = (struct check){ "fill+scale", n, e, 0.0 };

    if ((ret = vka_buf_upload(bx, 0, x, n * 4)) < 0 || (ret = vka_buf_upload(by, 0, y, n * 4)) < 0 ||
        (ret = vka_cmd_begin(cmd)) < 0 || (ret = vka_axpy(cmd, a, &tx, &ty)) < 0 ||
        (ret = vka_sum(cmd, &tx, &ts)) < 0 || (ret = vka_cmd_run(cmd)) < 0 ||
        (ret = vka_buf_download(by, 0, r, n * 4)) < 0)
        goto out;
    e = 0;
    for (uint64_t i = 0; i < n; i++)
        e = fmax(e, fabs(r[i] - ((double)a * x[i] + y[i])));
    /* one rounding of a*x + y, maybe two without fma: |a*x + y| < 2, so 2 ulp of 2 */
    out[1] = (struct check){ "axpy", n, e, 2 * ldexp(1.0, -22) };

    float s;
    if ((ret = vka_buf_download(bs, 0, &s, 4)) < 0)
        goto out;
    double ref = 0, absum = 0;
    for (uint64_t i = 0; i < n; i++) {
        ref += x[i];
        absum += fabs(x[i]);
    }
    /* a tree of depth log2(n) + 1 adds at most that many roundings of the partial sums */
    out[2] = (struct check){ "sum", n, fabs(s - ref),
                             (log2((double)n + 1) + 2) * ldexp(1.0, -24) * absum };
out:
    vka_cmd_destroy(&cmd);
    vka_buf_destroy(&bx);
    vka_buf_destroy(&by);
    vka_buf_destroy(&bs);
    free(x);
    free(y);
    free(r);
    return ret;
}

int cli_selftest(int argc, char **argv)
{
    struct selftest_opts o = { "" };
    bool help;
    int ret = cli_opts_parse("selftest", argc, argv, opts, OPT_COUNT(opts), &o, NULL, NULL, NULL,
                             NULL, 0, &help);
    if (ret)
        return ret;
    if (help) {
        cli_opts_help(opts, OPT_COUNT(opts), usage, NULL, NULL);
        return 0;
    }

    struct vka_ctx *ctx = cli_open_ctx("selftest", o.device, 0);
    if (!ctx)
        return 1;
    printf("device %u: %s (%s), %s loads\n", ctx->info.index, ctx->info.name,
           vka_device_type_name(ctx->info.type),
           ctx->profile.load == VKA_LOAD_TEXEL ? "texel-buffer" : "storage-buffer");
    static const uint64_t sizes[] = { 0, 1, 7, 4099, 1000003, (1u << 21) + 13 };
    int failed = 0;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct check ch[4] = { 0 };
        if (run_one(ctx, sizes[i], ch) < 0) {
            fprintf(stderr, "vkaccum selftest: %s\n", vka_last_error());
            failed++;
            continue;
        }
        for (int k = 0; k < 3; k++) {
            bool ok = ch[k].err <= ch[k].tol;
            failed += !ok;
            printf("  %-10s n=%-8llu max error %.3g (tolerance %.3g)  %s\n", ch[k].name,
                   (unsigned long long)ch[k].n, ch[k].err, ch[k].tol, ok ? "ok" : "FAILED");
        }
    }
    unsigned vmsg = vka_ctx_validation_count(ctx);
    if (vmsg) {
        printf("  %u validation messages\n", vmsg);
        failed++;
    }
    vka_ctx_destroy(&ctx);
    printf(failed ? "selftest: %d checks FAILED\n" : "selftest: all checks passed\n", failed);
    return failed ? 1 : 0;
}
