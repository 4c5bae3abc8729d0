/* Command-line options described by a table: one table per command drives parsing,
 * --help, config.json and a checkpoint's metadata (seg.h and gan.c hold the tables).
 * Plus the small helpers every command uses. */
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
void cli_opts_help(const struct opt_desc *table, size_t count, const char *usage,
                   const char **only, const char **skip);

int cli_mkdir_p(const char *path); /* mkdir -p; -errno */
cJSON *cli_read_json(const char *path);                /* NULL with a message */
int cli_write_json(const char *path, const cJSON *j);  /* -EIO with a message */

#endif
