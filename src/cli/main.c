/* vkaccum: subcommand dispatch, --help and --version. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "log.h"
#include "vka_config.h"

static const char usage[] =
    "usage: vkaccum [--version] [--help] COMMAND [OPTIONS]\n"
    "\n"
    "Trains segmentation and GAN models with every op a Vulkan compute shader, with\n"
    "exact gradient accumulation: k micro-batches of b give the update of one batch of\n"
    "k*b at the memory cost of b.\n"
    "\n"
    "commands:\n"
    "  devices    list the Vulkan devices and what vkaccum sees of them\n"
    "  selftest   run the built-in shaders against plain C on this device\n"
    "  bench      GEMM and per-op throughput on this device (gemm, ops)\n"
    "  seg        U-Net segmentation: train, eval, predict\n"
    "  gan        DCGAN: train, sample, fid-net\n"
    "  plot       curves of runs (loss, lr, mIoU; D/G losses, FD) as a PNG\n"
    "\n"
    "Run 'vkaccum COMMAND --help' for a command's options.\n"
    "Environment: VKACCUM_VALIDATION=1 (Khronos validation layer), VKACCUM_LOG=\n"
    "error|warn|info|debug, VKACCUM_LOAD_PATH=texel|storage, VKACCUM_CACHE_DIR,\n"
    "VKACCUM_TIMEOUT_MS.\n";

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "vkaccum%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun 'vkaccum %s%s--help' for usage.\n", cmd ? cmd : "", cmd ? " " : "");
    return CLI_USAGE;
}

int cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts,
               const struct option *longopts)
{
    opterr = 0;
    int c = getopt_long(argc, argv, shortopts, longopts, NULL);
    if (c == '?' || c == ':') {
        const char *arg = argv[optind - 1];
        if (c == ':')
            cli_usage_error(cmd, "option '%s' needs a value", arg);
        else
            cli_usage_error(cmd, "unknown option '%s'", arg);
        return '?';
    }
    return c;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } cmds[] = {
        { "devices", cli_devices },
        { "selftest", cli_selftest },
        { "bench", cli_bench },
        { "seg", cli_seg },
        { "gan", cli_gan },
        { "plot", cli_plot },
    };
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress lines reach a log file as they happen */
    vka_log_keep_errors(true);        /* each command prints the errors it gets, once */
    if (argc < 2) {
        fputs(usage, stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        if (argc > 2 && strcmp(cmd, "help") == 0) {
            for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
                if (!strcmp(argv[2], cmds[i].name))
                    return cmds[i].run(2, (char *[]){ argv[2], "--help", NULL });
            return cli_usage_error(NULL, "unknown command '%s'", argv[2]);
        }
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("vkaccum %s\n", VKA_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (!strcmp(cmd, cmds[i].name))
            return cmds[i].run(argc - 1, argv + 1);
    if (cmd[0] == '-')
        return cli_usage_error(NULL, "unknown option '%s'", cmd);
    return cli_usage_error(NULL, "unknown command '%s'", cmd);
}
