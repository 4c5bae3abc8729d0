/* vkaccum: dispatch to the commands of the registry (commands.h), --help and --version. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "dist.h"
#include "log.h"
#include "vka_config.h"

/* A command, in one process or as one rank of several (dist.h): a rank that fails ends
 * them all, naming itself and the cause. */
static int run_command(const struct cli_cmd *c, int argc, char **argv)
{
    if (vka_dist_init(&argc, &argv) < 0) {
        fprintf(stderr, "vkaccum: %s\n", vka_last_error());
        return 1;
    }
    const struct vka_dist *d = vka_dist();
    /* what a run prints comes from rank 0; the others' errors and warnings (tagged with
     * their rank) still reach stderr */
    if (d->rank != 0 && !freopen("/dev/null", "w", stdout)) {
        fprintf(stderr, "vkaccum: rank %d: cannot silence stdout\n", d->rank);
        vka_dist_abort(1, NULL);
        return 1;
    }
    int ret = c->run(argc, argv);
    if (ret != 0)
        vka_dist_abort(ret, vka_last_error()[0] ? vka_last_error() : NULL);
    vka_dist_finalize();
    return ret;
}

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
        if (vka_dist_built())
            printf("several devices: MPI (%s); mpirun -np N vkaccum seg|gan train ...\n",
                   vka_dist_library());
        else
            printf("several devices: not built (no MPI: one process)\n");
        return 0;
    }
    const struct cli_cmd *c = cli_cmd_find(cli_commands, cmd);
    if (c)
        return run_command(c, argc - 1, argv + 1);
    if (cmd[0] == '-')
        return cli_usage_error(NULL, "unknown option '%s'", cmd);
    return cli_usage_error(NULL, "unknown command '%s'", cmd);
}
