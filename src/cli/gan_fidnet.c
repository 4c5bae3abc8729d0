/* vkaccum gan fid-net: trains the feature network of the GAN's Fréchet distance once
 * (src/fidnet.c) and writes its checkpoint. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "fidnet.h"
#include "log.h"

#define CMD "gan fid-net"

static const char usage[] =
    "usage: vkaccum gan fid-net --out FILE [options]\n"
    "\n"
    "Trains the small Fashion-MNIST classifier whose penultimate features vkaccum gan\n"
    "measures its Fréchet distance on (AdamW, batch 64, cosine learning rate), then\n"
    "reports its test accuracy on t10k and the floor: the Fréchet distance between the\n"
    "first N t10k images and the first N train images, the best a generator can reach.\n"
    "Images are resized to the GAN's resolution exactly as the GAN's data pipeline does.\n"
    "\n"
    "options:\n"
    "  --out FILE        the checkpoint (.safetensors), replaced atomically\n"
    "  --steps N         optimizer steps of batch 64 (default %u)\n"
    "  --micro-batch b   micro-batch, 1..64 (default 64; the result does not depend on it)\n"
    "  --res R           the GAN's image size, a multiple of 8 (default 32)\n"
    "  --channels C      1 or 3, as the GAN's images (default 1)\n"
    "  --n N             images per side of the floor, 2..10000 (default 5000)\n"
    "  --seed S          initialisation and data order (default 0)\n"
    "  --device D        Vulkan device index or name (vkaccum devices)\n";

static int parse_u32(const char *opt, const char *s, uint32_t lo, uint32_t hi, uint32_t *v)
{
    char *end;
    errno = 0;
    unsigned long long u = strtoull(s, &end, 10);
    if (end == s || *end || errno || s[0] == '-' || u < lo || u > hi)
        return cli_usage_error(CMD, "--%s %s: give a whole number in %u..%u", opt, s, lo, hi);
    *v = (uint32_t)u;
    return 0;
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
    static const struct option lo[] = {
        { "out", required_argument, NULL, 'o' },
        { "steps", required_argument, NULL, 's' },
        { "micro-batch", required_argument, NULL, 'b' },
        { "res", required_argument, NULL, 'r' },
        { "channels", required_argument, NULL, 'c' },
        { "n", required_argument, NULL, 'n' },
        { "seed", required_argument, NULL, 'S' },
        { "device", required_argument, NULL, 'd' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct vka_fidnet_train_params p = { .res = 32, .channels = 1, .micro = 64, .n = 5000,
                                         .steps = VKA_FIDNET_DEFAULT_STEPS };
    const char *device = NULL;
    uint32_t seed = 0;
    int c, ret = 0;
    optind = 1;
    while (ret == 0 && (c = cli_getopt(CMD, argc, argv, ":h", lo)) != -1) {
        switch (c) {
        case 'h':
            printf(usage, VKA_FIDNET_DEFAULT_STEPS);
            return 0;
        case 'o':
            p.out = optarg;
            break;
        case 's':
            ret = parse_u32("steps", optarg, 1, 10000000, &p.steps);
            break;
        case 'b':
            ret = parse_u32("micro-batch", optarg, 1, 64, &p.micro);
            break;
        case 'r':
            ret = parse_u32("res", optarg, 8, 256, &p.res);
            if (ret == 0 && p.res % 8)
                ret = cli_usage_error(CMD, "--res %s: give a multiple of 8 (the GAN's 32 or 64)",
                                      optarg);
            break;
        case 'c':
            ret = parse_u32("channels", optarg, 1, 3, &p.channels);
            if (ret == 0 && p.channels == 2)
                ret = cli_usage_error(CMD, "--channels 2: give 1 or 3");
            break;
        case 'n':
            ret = parse_u32("n", optarg, 2, 10000, &p.n);
            break;
        case 'S':
            ret = parse_u32("seed", optarg, 0, UINT32_MAX, &seed);
            break;
        case 'd':
            device = optarg;
            break;
        default:
            ret = CLI_USAGE;
        }
    }
    if (ret)
        return ret;
    if (optind < argc)
        return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (!p.out)
        return cli_usage_error(CMD, "say where the weights go: --out FILE");
    p.seed = seed;

    struct vka_ctx *ctx = cli_open_ctx(CMD, device ? device : "", 0);
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
