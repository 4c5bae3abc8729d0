/* vkaccum gan fid-net: trains the feature network of the GAN's Fréchet distance once
 * (src/fidnet.c) and writes its checkpoint. */
#include <stdio.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/opts.h"
#include "fidnet.h"
#include "log.h"

#define CMD "gan fid-net"
/* data loading threads, as gan train's --workers (2); the result does not depend on them */
#define WORKERS 2

/* the default of --steps as its help says it */
_Static_assert(VKA_FIDNET_DEFAULT_STEPS == 800, "the help of --steps says 800");

static const char usage[] =
    "usage: vkaccum gan fid-net --out FILE [options]\n"
    "\n"
    "Trains the small Fashion-MNIST classifier whose penultimate features vkaccum gan\n"
    "measures its Fréchet distance on (AdamW, batch 64, cosine learning rate), then\n"
    "reports its test accuracy on t10k and the floor: the Fréchet distance between the\n"
    "first N t10k images and the first N train images, the best a generator can reach.\n"
    "Images are resized to the GAN's resolution exactly as the GAN's data pipeline does.";

struct fidnet_opts {
    char out[4096], device[128];
    int steps, micro, res, channels, n;
    long long seed;
};

#define ROW(n, t, f, h) OPT_ROW(struct fidnet_opts, n, t, f, NULL, h)
static const struct opt_desc opts[] = {
    ROW("out", OPT_STR, out, "the checkpoint (.safetensors), replaced atomically"),
    ROW("steps", OPT_INT, steps, "optimizer steps of batch 64, 1 to 10000000 (800)"),
    ROW("micro-batch", OPT_INT, micro, "micro-batch, 1 to 64 (64; the result does not depend on it)"),
    ROW("res", OPT_INT, res, "the GAN's image size, a multiple of 8 from 8 to 256 (32)"),
    ROW("channels", OPT_INT, channels, "1 or 3, as the GAN's images (1)"),
    ROW("n", OPT_INT, n, "images per side of the floor, 2 to 10000 (5000)"),
    ROW("seed", OPT_LONG, seed, "initialisation and data order, 0 to 4294967295 (0)"),
    ROW("device", OPT_STR, device, "Vulkan device index or name (vkaccum devices)"),
};

/* The range of a whole-number option, as it was checked before the table: the message
 * names the option, the value and the range. */
static int in_range(const char *opt, long long v, long long lo, long long hi)
{
    if (v < lo || v > hi)
        return cli_usage_error(CMD, "--%s %lld: give a whole number in %lld..%lld", opt, v, lo, hi);
    return 0;
}

/* The training parameters from the options, every range checked. */
static int params_of(const struct fidnet_opts *o, struct vka_fidnet_train_params *p)
{
    int ret = in_range("steps", o->steps, 1, 10000000);
    if (!ret)
        ret = in_range("micro-batch", o->micro, 1, 64);
    if (!ret && !(ret = in_range("res", o->res, 8, 256)) && o->res % 8)
        ret = cli_usage_error(CMD, "--res %d: give a multiple of 8 (the GAN's 32 or 64)", o->res);
    if (!ret && !(ret = in_range("channels", o->channels, 1, 3)) && o->channels == 2)
        ret = cli_usage_error(CMD, "--channels 2: give 1 or 3");
    if (!ret)
        ret = in_range("n", o->n, 2, 10000);
    if (!ret)
        ret = in_range("seed", o->seed, 0, UINT32_MAX);
    if (!ret && !o->out[0])
        ret = cli_usage_error(CMD, "say where the weights go: --out FILE");
    *p = (struct vka_fidnet_train_params){
        .out = o->out, .steps = (uint32_t)o->steps, .micro = (uint32_t)o->micro,
        .res = (uint32_t)o->res, .channels = (uint32_t)o->channels, .n = (uint32_t)o->n,
        .seed = (uint32_t)o->seed, .workers = WORKERS };
    return ret;
}

struct progress {
    bool tty;
};

static void on_step(void *user, uint64_t step, uint64_t steps, double loss)
{
    const struct progress *p = user;
    if (p->tty)
        fprintf(stderr, "\r  step %llu/%llu  loss %.4f ", (unsigned long long)step,
                (unsigned long long)steps, loss);
    else if (step % 100 == 0 || step == steps)
        printf("step %llu/%llu  loss %.4f\n", (unsigned long long)step,
               (unsigned long long)steps, loss);
}

int cli_gan_fidnet(int argc, char **argv)
{
    struct fidnet_opts o = { .steps = VKA_FIDNET_DEFAULT_STEPS, .micro = 64, .res = 32,
                             .channels = 1, .n = 5000 };
    struct vka_fidnet_train_params p;
    bool help;
    int ret = cli_opts_parse(CMD, argc, argv, opts, OPT_COUNT(opts), &o, NULL, NULL, NULL, NULL,
                             0, &help);
    if (ret)
        return ret;
    if (help) {
        cli_opts_help(opts, OPT_COUNT(opts), usage, NULL, NULL);
        return 0;
    }
    if ((ret = params_of(&o, &p)))
        return ret;

    struct vka_ctx *ctx = cli_open_ctx(CMD, o.device, 0);
    if (!ctx)
        return 1;
    struct progress pr = { .tty = isatty(2) };
    p.on_step = on_step;
    p.user = &pr;
    printf("training the fid-net: %u steps of batch 64 as micro-batches of %u, %ux%u, %u "
           "channel%s, device %s\n", p.steps, p.micro, p.res, p.res, p.channels,
           p.channels > 1 ? "s" : "", ctx->info.name);
    struct vka_fidnet_report r;
    ret = vka_fidnet_train(ctx, &p, &r);
    if (pr.tty)
        fprintf(stderr, "\n");
    if (ret < 0) {
        fprintf(stderr, "vkaccum %s: %s\n", CMD, vka_last_error());
        vka_ctx_destroy(&ctx);
        return 1;
    }
    printf("test accuracy %.4f (t10k), floor %.4f (FD of %u t10k vs %u train images), "
           "%llu steps, %.0f s; weights in %s\n", r.accuracy, r.floor, p.n, p.n,
           (unsigned long long)r.steps, r.seconds, p.out);
    vka_ctx_destroy(&ctx);
    return 0;
}
