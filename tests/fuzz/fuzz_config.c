/* Fuzz target "config": the options JSON of `vkaccum seg train` (RUN/config.json, which
 * --resume reads, and a checkpoint's metadata): the fuzzer's bytes as a file read by
 * cli_read_json (src/cli/opts.c: size cap, NUL bytes, cJSON), then checked against the
 * seg option table (src/cli/seg_opts.c) by seg_opts_from_json over the defaults, and
 * finished (seg_opts_finish: the command line's checks and derived values). `gan train`
 * reads its config.json through the same cli_opts_from_json; its table is private to
 * src/cli/gan.c, so the seg table, which holds every option type (whole numbers of both
 * widths, numbers, strings with and without fixed choices, flags), stands for both.
 *
 * Invariant: options that load are written back as config.json is written
 * (seg_opts_json, then cJSON_Print as cli_write_json prints it; a checkpoint's metadata
 * prints the same numbers) and, parsed again, load to the same values: a resumed run
 * must get back the options it was started with.
 *
 * Usage errors (src/cli/opts.c's cli_usage_error, the command's own) are formatted but
 * not printed: an input with a bad value would print one per execution. */
#include <string.h>

#include "cli/cli.h"
#include "cli/seg_opts.h"
#include "common.h"

static const char *path;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_setup();
    cli_usage_quiet(true);
    path = fuzz_path("config.json");
    return 0;
}

/* The options of the table in a and b are equal (bitwise: -0.0 stays -0.0). */
static void same_opts(const struct seg_opts *a, const struct seg_opts *b)
{
    for (size_t i = 0; i < seg_opt_count; i++) {
        const struct opt_desc *d = &seg_opt_table[i];
        const char *x = (const char *)a + d->off, *y = (const char *)b + d->off;
        bool same = d->type == OPT_STR ? !strcmp(x, y) : !memcmp(x, y, d->size);
        if (!same && d->type == OPT_DOUBLE)
            fuzz_fail("option \"%s\" changes when written and read back: %.17g, then %.17g",
                      d->name, *(const double *)(const void *)x, *(const double *)(const void *)y);
        if (!same && d->type == OPT_LONG)
            fuzz_fail("option \"%s\" changes when written and read back: %lld, then %lld",
                      d->name, *(const long long *)(const void *)x,
                      *(const long long *)(const void *)y);
        if (!same)
            fuzz_fail("option \"%s\" changes when written and read back", d->name);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_write(path, data, size);
    cJSON *j = cli_read_json(path);
    if (!j)
        return 0;
    struct seg_opts o, back;
    seg_opts_defaults(&o);
    if (seg_opts_from_json(&o, j, path) == 0) {
        cJSON *w = seg_opts_json(&o);
        char *text = w ? cJSON_Print(w) : NULL;
        cJSON *r = text ? cJSON_Parse(text) : NULL;
        if (!r)
            fuzz_fail("options cannot be written and parsed back (out of memory?)");
        seg_opts_defaults(&back);
        if (seg_opts_from_json(&back, r, "written") != 0)
            fuzz_fail("written options do not load: %s\n%s", vka_last_error(), text);
        same_opts(&o, &back);
        cJSON_Delete(r);
        cJSON_free(text);
        cJSON_Delete(w);
        seg_opts_finish(&o, "seg train");
    }
    cJSON_Delete(j);
    return 0;
}
