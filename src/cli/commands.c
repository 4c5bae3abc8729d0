/* The command registry; see commands.h. */
#include <errno.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "log.h"

/* a subcommand: its command's function dispatches it */
#define SUB(name, summary) { name, summary, NULL, NULL, NULL, CLI_NO_OPERANDS, NULL }
#define END { NULL, NULL, NULL, NULL, NULL, CLI_NO_OPERANDS, NULL }

static const struct cli_cmd seg_subs[] = {
    SUB("train", "train a U-Net with an effective batch run as micro-batches"),
    SUB("eval", "per-class IoU, mIoU and pixel accuracy of a checkpoint"),
    SUB("predict", "class-id masks and colour overlays for images of any size"),
    END,
};

static const struct cli_cmd gan_subs[] = {
    SUB("train", "train a DCGAN with gradient accumulation in both phases"),
    SUB("sample", "generate images or latent interpolations from a checkpoint"),
    SUB("fid-net", "train the Fashion-MNIST feature network of the Frechet distance"),
    END,
};

const struct cli_cmd cli_commands[] = {
    { "devices", "list the Vulkan devices and what vkaccum sees of them", cli_devices, NULL,
      NULL, CLI_NO_OPERANDS, NULL },
    { "selftest", "run the built-in shaders against plain C on this device", cli_selftest, NULL,
      NULL, CLI_NO_OPERANDS, NULL },
    { "bench", "GEMM, per-op and training throughput on this device (gemm, ops, train)",
      cli_bench, NULL, "gemm|ops|train|workloads", CLI_OPERAND_WORDS, "gemm|ops|train|workloads" },
    { "seg", "U-Net segmentation: train, eval, predict", cli_seg, seg_subs, NULL, CLI_NO_OPERANDS,
      NULL },
    { "gan", "DCGAN: train, sample, fid-net", cli_gan, gan_subs, NULL, CLI_NO_OPERANDS, NULL },
    { "plot", "curves of runs (loss, lr, mIoU; D/G losses, FD) as a PNG", cli_plot, NULL,
      "RUN [RUN...]", CLI_OPERAND_DIRS, NULL },
    { "help", "this text; help COMMAND: its options; help --man: the man page", cli_help, NULL,
      "[COMMAND [SUBCOMMAND]]", CLI_OPERAND_COMMANDS, NULL },
    { "completion", "the bash completion script (completion bash)", cli_completion, NULL,
      "bash", CLI_OPERAND_WORDS, "bash" },
    END,
};

const struct cli_env cli_env[] = {
    { "VKACCUM_VALIDATION", "1",
      "load the Khronos validation layer; every message is printed and counted" },
    { "VKACCUM_LOG", "error|warn|info|debug", "log level (default warn)" },
    { "VKACCUM_LOAD_PATH", "texel|storage",
      "force the kernels' input load path (default: texel buffers on CPU devices, storage "
      "buffers on GPUs)" },
    { "VKACCUM_CONV_TILES", "0|1",
      "force the convolutions' GEMMs without or with shared-memory weight tiles (default: on "
      "for GPUs)" },
    { "VKACCUM_WINOGRAD", "0|1",
      "Winograd convolution for conv2d 3x3 stride 1 layers of 64+ channels and 16x16+ "
      "inputs (default 1; 0: the direct GEMMs, other last bits)" },
    { "VKACCUM_CACHE_DIR", "DIR",
      "pipeline cache folder (default $XDG_CACHE_HOME/vkaccum or ~/.cache/vkaccum)" },
    { "VKACCUM_TIMEOUT_MS", "MS",
      "how long to wait for the device before giving up with an error (default 600000)" },
    { "VKACCUM_CURVES", "0", "do not redraw RUN/curves.png during training" },
    { "VKACCUM_PYTHON", "PATH", "the Python interpreter of the curves (default /usr/bin/python3)" },
    { NULL, NULL, NULL },
};

const char cli_about[] =
    "Trains segmentation and GAN models with every op a Vulkan compute shader, with exact "
    "gradient accumulation: k micro-batches of b give the update of one batch of k*b at the "
    "memory cost of b.";

const struct cli_cmd *cli_cmd_find(const struct cli_cmd *list, const char *name)
{
    for (const struct cli_cmd *c = list; c && c->name; c++)
        if (!strcmp(c->name, name))
            return c;
    return NULL;
}

int cli_cmd_options(const struct cli_cmd *cmd, const struct cli_cmd *sub, struct cli_optset *s)
{
    char *argv[3] = { (char *)cmd->name, sub ? (char *)sub->name : NULL, NULL };
    *s = (struct cli_optset){ 0 };
    cli_opts_capture(s);
    cmd->run(sub ? 2 : 1, argv);
    cli_opts_capture(NULL);
    const char *sp = sub ? " " : "", *sn = sub ? sub->name : "";
    if (!s->captured) {
        vka_err("vkaccum %s%s%s: the command reached no option parser (cli_opts_parse)",
                cmd->name, sp, sn);
        return -EINVAL;
    }
    if (s->truncated) {
        vka_err("vkaccum %s%s%s: more than %d options or %d further options (CLI_OPTSET_MAX)",
                cmd->name, sp, sn, CLI_OPTSET_MAX, CLI_OPTSET_EXTRA);
        return -EINVAL;
    }
    return 0;
}

static int each_of(const struct cli_cmd *cmd, const struct cli_cmd *sub, cli_cmd_fn fn,
                   void *user)
{
    struct cli_optset s;
    int ret = cli_cmd_options(cmd, sub, &s);
    return ret ? ret : fn(user, cmd, sub, &s);
}

int cli_cmd_each(cli_cmd_fn fn, void *user)
{
    int ret = 0;
    for (const struct cli_cmd *c = cli_commands; c->name && !ret; c++) {
        if (!c->subs)
            ret = each_of(c, NULL, fn, user);
        for (const struct cli_cmd *sub = c->subs; sub && sub->name && !ret; sub++)
            ret = each_of(c, sub, fn, user);
    }
    return ret;
}
