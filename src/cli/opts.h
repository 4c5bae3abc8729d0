/* Command-line options described by a table: one table per command drives parsing,
 * --help, the man page, bash completion, config.json and a checkpoint's metadata
 * (seg_opts.c and gan.c hold the training tables, each command file its own). Plus the
 * small helpers every command uses; cli.h declares cli_usage_error and cli_getopt,
 * which live in opts.c too. */
#ifndef VKA_CLI_OPTS_H
#define VKA_CLI_OPTS_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

enum opt_type { OPT_INT, OPT_LONG, OPT_DOUBLE, OPT_STR, OPT_BOOL };

struct opt_desc {
    const char *name;
    enum opt_type type;
    size_t off, size;
    const char *choices; /* "a|b|c" for strings with fixed values, or NULL */
    const char *help;
};

/* The row of option n (type t, choices ch, help h) stored in field f of struct S; and the
 * rows of a table. */
#define OPT_ROW(S, n, t, f, ch, h) { n, t, offsetof(S, f), sizeof(((S *)0)->f), ch, h }
#define OPT_COUNT(table) (sizeof(table) / sizeof((table)[0]))

/* Sets option d of the options struct o from text; a usage error naming it and -EINVAL
 * on a bad value. */
int cli_opt_set(void *o, const char *cmd, const struct opt_desc *d, const char *text);
cJSON *cli_opts_json(const struct opt_desc *table, size_t n, const void *o);
/* Options from a config.json object (or a checkpoint's metadata), every value checked as
 * the command line checks it; an unknown or bad key is an error naming `what` (the file)
 * and the key; a missing one takes its default with a warning naming it. */
int cli_opts_from_json(const struct opt_desc *table, size_t n, void *o, const cJSON *j,
                       const char *what);
/* Parses argv against the table (limited to `only` / without `skip` when given); extra
 * long options with a value go to extra_vals. Returns 0 or CLI_USAGE. */
int cli_opts_parse(const char *cmd, int argc, char **argv, const struct opt_desc *table,
                   size_t count, void *o, const char **only, const char **skip,
                   const char *extra_names[], char *extra_vals[], size_t nextra, bool *help);
/* The same for a command that takes operands (bench WHAT, plot RUN...): they are left in
 * argv[*operands .. argc), whatever their place among the options. */
int cli_opts_parse_operands(const char *cmd, int argc, char **argv,
                            const struct opt_desc *table, size_t count, void *o, bool *help,
                            int *operands);
void cli_opts_help(const struct opt_desc *table, size_t count, const char *usage,
                   const char **only, const char **skip);

/* The options a command's parser takes: the rows of its table that it accepts and the
 * names of its further options with a value (seg predict's ckpt, input, out). */
#define CLI_OPTSET_MAX 128
#define CLI_OPTSET_EXTRA 8
struct cli_optset {
    const struct opt_desc *opts[CLI_OPTSET_MAX];
    size_t count;
    const char *extra[CLI_OPTSET_EXTRA]; /* string literals of the command */
    size_t nextra;
    bool operands;  /* parsed by cli_opts_parse_operands */
    bool captured;  /* a parser was called */
    bool truncated; /* more than the arrays hold */
};
/* Capture mode (commands.c asks each command for its options this way): while s is set,
 * a call of cli_opts_parse or cli_opts_parse_operands fills *s with what it would take
 * and returns CLI_USAGE at once, parsing and printing nothing. NULL ends it. */
void cli_opts_capture(struct cli_optset *s);

/* While quiet, cli_usage_error formats its message but prints nothing (a fuzz target
 * feeding the parsers). */
void cli_usage_quiet(bool quiet);

int cli_mkdir_p(const char *path); /* mkdir -p; -errno */
cJSON *cli_read_json(const char *path);                /* NULL with a message */
int cli_write_json(const char *path, const cJSON *j);  /* -EIO with a message */

#endif
