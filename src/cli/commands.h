/* The command registry: every command and subcommand of vkaccum with its one-line
 * summary and operands. main.c dispatches from it; help.c writes the usage text and the
 * man page and completion.c the bash completion from it. A command's options are not
 * listed here: they are what its parser takes, asked of the parser itself
 * (cli_cmd_options), so --help, the man page and completion follow the option tables the
 * command line parses. */
#ifndef VKA_CLI_COMMANDS_H
#define VKA_CLI_COMMANDS_H

#include "cli/opts.h"

enum cli_operand {
    CLI_NO_OPERANDS,
    CLI_OPERAND_WORDS,    /* one of `words` */
    CLI_OPERAND_DIRS,     /* folders */
    CLI_OPERAND_COMMANDS, /* names of commands */
};

struct cli_cmd {
    const char *name, *summary;
    /* a command's function (argv[0] is its name); NULL for a subcommand, which its
     * command's function dispatches */
    int (*run)(int argc, char **argv);
    const struct cli_cmd *subs; /* subcommands up to a NULL name, or NULL */
    const char *operands;       /* synopsis of the operands after the options, or NULL */
    enum cli_operand operand_kind;
    const char *words;          /* CLI_OPERAND_WORDS: "a|b" */
};

extern const struct cli_cmd cli_commands[]; /* up to a NULL name */

/* The entry of list called name, or NULL. */
const struct cli_cmd *cli_cmd_find(const struct cli_cmd *list, const char *name);

/* The options that command cmd (with sub, one of its subcommands, or NULL) takes, as its
 * parser takes them: runs it in the parser's capture mode. -EINVAL with a message
 * (vka_err) when the command never reached a parser. */
int cli_cmd_options(const struct cli_cmd *cmd, const struct cli_cmd *sub,
                    struct cli_optset *s);

/* Calls fn for each command that parses options (a command without subcommands, or a
 * subcommand; sub NULL for the first) with its options, in registry order; stops at the
 * first non-zero return of fn or of cli_cmd_options and returns it. */
typedef int (*cli_cmd_fn)(void *user, const struct cli_cmd *cmd, const struct cli_cmd *sub,
                          const struct cli_optset *opts);
int cli_cmd_each(cli_cmd_fn fn, void *user);

/* Environment variables vkaccum reads, for the usage text and the man page. */
struct cli_env {
    const char *name, *value, *help;
};
extern const struct cli_env cli_env[]; /* up to a NULL name */

/* What vkaccum is, in a paragraph (the usage text and the man page's description). */
extern const char cli_about[];

#endif
