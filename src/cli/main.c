/* vkaccum: dispatch to the commands of the registry (commands.h), --help and --version. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "log.h"
#include "vka_config.h"

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress lines reach a log file as they happen */
    vka_log_keep_errors(true);        /* each command prints the errors it gets, once */
    if (argc < 2) {
        cli_usage(stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        cli_usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("vkaccum %s\n", VKA_VERSION);
        return 0;
    }
    const struct cli_cmd *c = cli_cmd_find(cli_commands, cmd);
    if (c)
        return c->run(argc - 1, argv + 1);
    if (cmd[0] == '-')
        return cli_usage_error(NULL, "unknown option '%s'", cmd);
    return cli_usage_error(NULL, "unknown command '%s'", cmd);
}
