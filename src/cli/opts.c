/* Table-driven options, usage errors and small command helpers; see opts.h. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/opts.h"
#include "file.h"
#include "log.h"

/* The one check of an option's value, shared by the command line and config.json (and
 * a checkpoint's metadata): stores text into o, or returns why it cannot. */
static const char *opt_store(void *o, const struct opt_desc *d, const char *text)
{
    char *p = (char *)o + d->off, *end;
    errno = 0;
    switch (d->type) {
    case OPT_INT:
    case OPT_LONG: {
        /* OPT_LONG up to 2^53: config.json holds it as a JSON number, which cJSON reads
         * as a double */
        static const char *range[] = { "give a whole number from 0 to 1073741824",
                                       "give a whole number from 0 to 9007199254740992" };
        /* choices on a number: one word that stands for 0 ("auto") */
        bool word = d->choices && !strcmp(text, d->choices);
        long long v = word ? 0 : strtoll(text, &end, 10);
        if (!word && (errno || end == text || *end || v < 0 ||
                      v > (d->type == OPT_INT ? 1ll << 30 : 1ll << 53)))
            return range[d->type == OPT_LONG];
        if (d->type == OPT_INT)
            *(int *)p = (int)v;
        else
            *(long long *)p = v;
        return NULL;
    }
    case OPT_DOUBLE: {
        double v = strtod(text, &end);
        if (errno || end == text || *end || !isfinite(v) || v < 0)
            return "give a finite number >= 0";
        *(double *)p = v;
        return NULL;
    }
    case OPT_BOOL:
        if (strcmp(text, "true") && strcmp(text, "false"))
            return "give true or false";
        *(bool *)p = !strcmp(text, "true");
        return NULL;
    case OPT_STR:
        if (strlen(text) >= d->size)
            return "the value is too long";
        for (const char *c = text; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                return "the value holds a control character";
        if (d->choices) {
            /* "a|b|c": text must be one of them */
            size_t n = strlen(text);
            bool ok = false;
            for (const char *c = d->choices; *c && !ok; c = *c == '|' ? c + 1 : c) {
                size_t len = strcspn(c, "|");
                ok = len == n && !strncmp(c, text, n);
                c += len;
            }
            if (!ok)
                return "not one of the choices";
        }
        snprintf(p, d->size, "%s", text);
        return NULL;
    }
    return "unknown option type";
}

int cli_opt_set(void *o, const char *cmd, const struct opt_desc *d, const char *text)
{
    const char *why = opt_store(o, d, d->type == OPT_BOOL ? "true" : text);
    if (!why)
        return 0;
    if (d->choices && d->type != OPT_STR)
        return cli_usage_error(cmd, "--%s %s: %s, or %s", d->name, text, why, d->choices),
               -EINVAL;
    if (d->choices)
        return cli_usage_error(cmd, "--%s %s: choose one of %s", d->name, text, d->choices),
               -EINVAL;
    if (d->type == OPT_STR)
        return cli_usage_error(cmd, "--%s: %s", d->name, why), -EINVAL;
    return cli_usage_error(cmd, "--%s %s: %s", d->name, text, why), -EINVAL;
}

/* cJSON prints a number with 15 significant digits whenever they come within a relative
 * epsilon of it, so that config.json and a checkpoint's metadata lost digits (an lr of
 * 0.88888888888888884 came back as 0.88888888888888895, a seed of 9007199254740991 as
 * 9007199254740990). Numbers go in as raw text instead: a whole number's digits, a
 * double's shortest %.Ng that reads back to it (cJSON's null for a non-finite one). */
static void add_double(cJSON *j, const char *name, double v)
{
    char buf[32];
    if (!isfinite(v)) {
        cJSON_AddNumberToObject(j, name, v);
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    cJSON_AddRawToObject(j, name, buf);
}

cJSON *cli_opts_json(const struct opt_desc *table, size_t n, const void *o)
{
    cJSON *j = cJSON_CreateObject();
    for (size_t i = 0; i < n; i++) {
        const struct opt_desc *d = &table[i];
        const char *p = (const char *)o + d->off;
        char num[32];
        switch (d->type) {
        case OPT_INT: cJSON_AddNumberToObject(j, d->name, *(const int *)p); break;
        case OPT_LONG:
            snprintf(num, sizeof(num), "%lld", *(const long long *)p);
            cJSON_AddRawToObject(j, d->name, num);
            break;
        case OPT_DOUBLE: add_double(j, d->name, *(const double *)p); break;
        case OPT_BOOL: cJSON_AddBoolToObject(j, d->name, *(const bool *)p); break;
        case OPT_STR: cJSON_AddStringToObject(j, d->name, p); break;
        }
    }
    return j;
}

/* A JSON value as the text the command line would have given (NULL: wrong type). */
static const char *json_text(const struct opt_desc *d, const cJSON *it, char *buf, size_t size)
{
    switch (d->type) {
    case OPT_INT:
    case OPT_LONG:
    case OPT_DOUBLE:
        if (!cJSON_IsNumber(it))
            return NULL;
        /* %.17g keeps every digit: 2.5 or 1e+20 are refused as whole numbers, as typed */
        snprintf(buf, size, "%.17g", it->valuedouble);
        return buf;
    case OPT_BOOL:
        return cJSON_IsBool(it) ? (cJSON_IsTrue(it) ? "true" : "false") : NULL;
    case OPT_STR:
        return cJSON_IsString(it) ? it->valuestring : NULL;
    }
    return NULL;
}

int cli_opts_from_json(const struct opt_desc *table, size_t n, void *o, const cJSON *j,
                       const char *what)
{
    static const char *type_names[] = { "a whole number", "a whole number", "a number",
                                        "a string", "true or false" };
    if (!cJSON_IsObject(j)) {
        vka_err("%s: the options must be a JSON object", what);
        return -EINVAL;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, j) {
        const struct opt_desc *d = NULL;
        for (size_t i = 0; i < n && !d; i++)
            if (!strcmp(table[i].name, it->string))
                d = &table[i];
        if (!d) {
            vka_err("%s: unknown option \"%.64s\"", what, it->string);
            return -EINVAL;
        }
        char buf[64];
        const char *text = json_text(d, it, buf, sizeof(buf)), *why;
        if (!text) {
            vka_err("%s: option \"%s\" must be %s", what, d->name, type_names[d->type]);
            return -EINVAL;
        }
        if ((why = opt_store(o, d, text))) {
            if (d->choices && d->type == OPT_STR)
                vka_err("%s: option \"%s\" is \"%.64s\": choose one of %s", what, d->name,
                        text, d->choices);
            else if (d->type == OPT_STR)
                vka_err("%s: option \"%s\": %s", what, d->name, why);
            else
                vka_err("%s: option \"%s\" is %s: %s", what, d->name, text, why);
            return -EINVAL;
        }
    }
    /* vkaccum writes every option: one missing is a file edited by hand, or one written
     * before the option existed; its default is taken, and said */
    for (size_t i = 0; i < n; i++)
        if (!cJSON_GetObjectItemCaseSensitive(j, table[i].name))
            vka_warn("%s: option \"%s\" is missing: its default is used", what,
                     table[i].name);
    return 0;
}

/* ---- usage errors and getopt --------------------------------------------------------- */

static bool usage_quiet;
static struct cli_optset *capture; /* cli_opts_capture */

void cli_usage_quiet(bool quiet)
{
    usage_quiet = quiet;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (usage_quiet || capture) {
        vsnprintf(NULL, 0, fmt, ap); /* formatted all the same: a fuzz target checks that */
        va_end(ap);
        return CLI_USAGE;
    }
    fprintf(stderr, "vkaccum%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun 'vkaccum %s%s--help' for usage.\n", cmd ? cmd : "", cmd ? " " : "");
    return CLI_USAGE;
}

/* getopt_long with its own messages off; an unknown option or a missing value is a
 * usage error naming it. shortopts starts with ':'. Returns the option, -1 at the end,
 * or '?' after reporting. */
static int cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts,
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

/* ---- parsing and --help from a table ------------------------------------------------ */

/* Row d is one of the command's options: in `only` (when given) and not in `skip`. */
static bool opt_selected(const struct opt_desc *d, const char **only, const char **skip)
{
    bool ok = !only;
    for (const char **p = only; p && *p; p++)
        ok |= !strcmp(*p, d->name);
    for (const char **p = skip; p && *p; p++)
        ok &= strcmp(*p, d->name) != 0;
    return ok;
}

void cli_opts_help(const struct opt_desc *table, size_t count, const char *usage,
                   const char **only, const char **skip)
{
    printf("%s\n\noptions:\n", usage);
    for (size_t i = 0; i < count; i++)
        if (opt_selected(&table[i], only, skip))
            printf("  --%-15s %s\n", table[i].name, table[i].help);
}

void cli_opts_capture(struct cli_optset *s)
{
    capture = s;
}

/* Capture mode: records the options the parser would take into *capture. */
static void record(const struct opt_desc *table, size_t count, const char **only,
                   const char **skip, const char *extra_names[], size_t nextra, bool operands)
{
    struct cli_optset *s = capture;
    *s = (struct cli_optset){ .captured = true, .operands = operands };
    for (size_t i = 0; i < count; i++) {
        if (!opt_selected(&table[i], only, skip))
            continue;
        if (s->count == CLI_OPTSET_MAX) {
            s->truncated = true;
            break;
        }
        s->opts[s->count++] = &table[i];
    }
    for (size_t i = 0; i < nextra; i++) {
        if (s->nextra == CLI_OPTSET_EXTRA) {
            s->truncated = true;
            break;
        }
        s->extra[s->nextra++] = extra_names[i];
    }
}

/* The parser of cli_opts_parse and cli_opts_parse_operands: operands NULL refuses them,
 * else *operands is the index of the first (getopt moves them after the options). */
static int parse(const char *cmd, int argc, char **argv, const struct opt_desc *table,
                 size_t count, void *o, const char **only, const char **skip,
                 const char *extra_names[], char *extra_vals[], size_t nextra, bool *help,
                 int *operands)
{
    *help = false;
    if (capture) {
        record(table, count, only, skip, extra_names, nextra, operands != NULL);
        return CLI_USAGE;
    }
    struct option *lo = calloc(count + nextra + 2, sizeof(*lo));
    if (!lo) {
        fprintf(stderr, "vkaccum %s: out of memory\n", cmd);
        return 1;
    }
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        if (opt_selected(&table[i], only, skip))
            lo[n++] = (struct option){ table[i].name,
                                       table[i].type == OPT_BOOL ? no_argument : required_argument,
                                       NULL, 256 + (int)i };
    for (size_t i = 0; i < nextra; i++)
        lo[n++] = (struct option){ extra_names[i], required_argument, NULL, 1024 + (int)i };
    lo[n++] = (struct option){ "help", no_argument, NULL, 'h' };
    int c, ret = 0;
    optind = 1;
    while (ret == 0 && (c = cli_getopt(cmd, argc, argv, ":h", lo)) != -1) {
        if (c == 'h')
            *help = true;
        else if (c >= 1024)
            extra_vals[c - 1024] = optarg;
        else if (c >= 256)
            ret = cli_opt_set(o, cmd, &table[c - 256], optarg) < 0 ? CLI_USAGE : 0;
        else
            ret = CLI_USAGE;
    }
    if (operands)
        *operands = optind;
    else if (ret == 0 && !*help && optind < argc)
        ret = cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    free(lo);
    return ret;
}

int cli_opts_parse(const char *cmd, int argc, char **argv, const struct opt_desc *table,
                   size_t count, void *o, const char **only, const char **skip,
                   const char *extra_names[], char *extra_vals[], size_t nextra, bool *help)
{
    return parse(cmd, argc, argv, table, count, o, only, skip, extra_names, extra_vals, nextra,
                 help, NULL);
}

int cli_opts_parse_operands(const char *cmd, int argc, char **argv,
                            const struct opt_desc *table, size_t count, void *o, bool *help,
                            int *operands)
{
    return parse(cmd, argc, argv, table, count, o, NULL, NULL, NULL, NULL, 0, help, operands);
}

int cli_mkdir_p(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}



/* config.json and a checkpoint's config hold a few dozen options: 1 MiB is far beyond
 * any real one and keeps a wrong path (a dataset, /dev/zero) from being read whole */
#define JSON_MAX_BYTES (1u << 20)

cJSON *cli_read_json(const char *path)
{
    char *text;
    size_t len;
    if (vka_read_whole(path, JSON_MAX_BYTES, &text, &len) < 0)
        return NULL;
    if (memchr(text, '\0', len)) {
        vka_err("%s is not JSON: it holds a NUL byte", path);
        free(text);
        return NULL;
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len + 1, &end, true);
    if (!j)
        vka_err("%s is not JSON (at byte %zu)", path,
                end && end >= text ? (size_t)(end - text) : (size_t)0);
    free(text);
    return j;
}

int cli_write_json(const char *path, const cJSON *j)
{
    char *s = cJSON_Print(j);
    if (!s) {
        vka_err("%s: out of memory printing the JSON", path);
        return -ENOMEM;
    }
    struct vka_atomic a = { 0 };
    int ret = vka_atomic_open(path, &a);
    if (ret == 0) {
        fputs(s, a.fp);
        fputc('\n', a.fp);
        ret = vka_atomic_commit(&a); /* checks the stream's error state */
    }
    free(s);
    return ret;
}
