/* Table-driven options and small command helpers; see opts.h. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/opts.h"
#include "vk/vk.h"
#include "log.h"

int cli_opt_set(void *o, const char *cmd, const struct opt_desc *d, const char *text)
{
    char *p = (char *)o + d->off, *end;
    errno = 0;
    switch (d->type) {
    case OPT_INT:
    case OPT_LONG: {
        long long v = strtoll(text, &end, 10);
        if (errno || end == text || *end || v < 0 || (d->type == OPT_INT && v > 1 << 30))
            return cli_usage_error(cmd, "--%s %s: give a whole number >= 0", d->name, text), -EINVAL;
        if (d->type == OPT_INT)
            *(int *)p = (int)v;
        else
            *(long long *)p = v;
        return 0;
    }
    case OPT_DOUBLE: {
        double v = strtod(text, &end);
        if (errno || end == text || *end || !isfinite(v) || v < 0)
            return cli_usage_error(cmd, "--%s %s: give a number >= 0", d->name, text), -EINVAL;
        *(double *)p = v;
        return 0;
    }
    case OPT_BOOL:
        *(bool *)p = true;
        return 0;
    case OPT_STR:
        if (strlen(text) >= d->size)
            return cli_usage_error(cmd, "--%s: the value is too long", d->name), -EINVAL;
        if (d->choices) {
            char list[96];
            snprintf(list, sizeof(list), "%s", d->choices);
            bool ok = false;
            for (char *t = strtok(list, "|"); t && !ok; t = strtok(NULL, "|"))
                ok = !strcmp(t, text);
            if (!ok)
                return cli_usage_error(cmd, "--%s %s: choose one of %s", d->name, text,
                                       d->choices), -EINVAL;
        }
        snprintf(p, d->size, "%s", text);
        return 0;
    }
    return -EINVAL;
}

cJSON *cli_opts_json(const struct opt_desc *table, size_t n, const void *o)
{
    cJSON *j = cJSON_CreateObject();
    for (size_t i = 0; i < n; i++) {
        const struct opt_desc *d = &table[i];
        const char *p = (const char *)o + d->off;
        switch (d->type) {
        case OPT_INT: cJSON_AddNumberToObject(j, d->name, *(const int *)p); break;
        case OPT_LONG: cJSON_AddNumberToObject(j, d->name, (double)*(const long long *)p); break;
        case OPT_DOUBLE: cJSON_AddNumberToObject(j, d->name, *(const double *)p); break;
        case OPT_BOOL: cJSON_AddBoolToObject(j, d->name, *(const bool *)p); break;
        case OPT_STR: cJSON_AddStringToObject(j, d->name, p); break;
        }
    }
    return j;
}

int cli_opts_from_json(const struct opt_desc *table, size_t n, void *o, const cJSON *j,
                       const char *what)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, j) {
        const struct opt_desc *d = NULL;
        for (size_t i = 0; i < n && !d; i++)
            if (!strcmp(table[i].name, it->string))
                d = &table[i];
        if (!d) {
            vka_err("%s: unknown option \"%s\"", what, it->string);
            return -EINVAL;
        }
        char *p = (char *)o + d->off;
        bool ok = true;
        switch (d->type) {
        case OPT_INT: ok = cJSON_IsNumber(it); if (ok) *(int *)p = it->valueint; break;
        case OPT_LONG: ok = cJSON_IsNumber(it); if (ok) *(long long *)p = (long long)it->valuedouble; break;
        case OPT_DOUBLE: ok = cJSON_IsNumber(it); if (ok) *(double *)p = it->valuedouble; break;
        case OPT_BOOL: ok = cJSON_IsBool(it); if (ok) *(bool *)p = cJSON_IsTrue(it); break;
        case OPT_STR:
            ok = cJSON_IsString(it) && strlen(it->valuestring) < d->size;
            if (ok)
                snprintf(p, d->size, "%s", it->valuestring);
            break;
        }
        if (!ok) {
            vka_err("%s: option \"%s\" has a value of the wrong type", what, it->string);
            return -EINVAL;
        }
    }
    return 0;
}

void cli_opts_help(const struct opt_desc *table, size_t count, const char *usage,
                   const char **only, const char **skip)
{
    printf("%s\n\noptions:\n", usage);
    for (size_t i = 0; i < count; i++) {
        const struct opt_desc *d = &table[i];
        bool show = !only;
        for (const char **p = only; p && *p; p++)
            show |= !strcmp(*p, d->name);
        for (const char **p = skip; p && *p; p++)
            show &= strcmp(*p, d->name) != 0;
        if (show)
            printf("  --%-15s %s\n", d->name, d->help);
    }
}

/* Parses argv against the option table (limited to `only` when given); extra long
 * options (ckpt, input) go to the caller through extra[]. */
int cli_opts_parse(const char *cmd, int argc, char **argv, const struct opt_desc *table,
                   size_t count, void *o, const char **only, const char **skip,
                   const char *extra_names[], char *extra_vals[], size_t nextra, bool *help)
{
    struct option *lo = calloc(count + nextra + 2, sizeof(*lo));
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        const struct opt_desc *d = &table[i];
        bool ok = !only;
        for (const char **p = only; p && *p; p++)
            ok |= !strcmp(*p, d->name);
        for (const char **p = skip; p && *p; p++)
            ok &= strcmp(*p, d->name) != 0;
        if (ok)
            lo[n++] = (struct option){ d->name, d->type == OPT_BOOL ? no_argument : required_argument,
                                       NULL, 256 + (int)i };
    }
    for (size_t i = 0; i < nextra; i++)
        lo[n++] = (struct option){ extra_names[i], required_argument, NULL, 1024 + (int)i };
    lo[n++] = (struct option){ "help", no_argument, NULL, 'h' };
    int c, ret = 0;
    optind = 1;
    *help = false;
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
    if (ret == 0 && !*help && optind < argc)
        ret = cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    free(lo);
    return ret;
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

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}


cJSON *cli_read_json(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        vka_err("cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    static char text[1 << 16];
    size_t len = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[len] = '\0';
    cJSON *j = cJSON_Parse(text);
    if (!j)
        vka_err("%s is not JSON", path);
    return j;
}

int cli_write_json(const char *path, const cJSON *j)
{
    char *s = cJSON_Print(j);
    FILE *f = s ? fopen(path, "wb") : NULL;
    int ret = f && fprintf(f, "%s\n", s) > 0 ? 0 : -EIO;
    if (f && fclose(f) != 0)
        ret = -EIO;
    if (ret < 0)
        vka_err("cannot write %s", path);
    free(s);
    return ret;
}

struct vka_ctx *cli_open_ctx(const char *cmd, const char *device, double budget_mib)
{
    struct vka_ctx *ctx;
    if (vka_ctx_create(&(struct vka_ctx_params){
            .device = device[0] ? device : NULL, .validation = -1,
            .budget = (uint64_t)(budget_mib * 1048576.0) }, &ctx) < 0) {
        fprintf(stderr, "vkaccum %s: %s\n", cmd, vka_last_error());
        return NULL;
    }
    return ctx;
}
