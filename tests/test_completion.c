/* `vkaccum completion bash` and `vkaccum help --man` against the option tables the
 * command line parses: every command of the registry is asked for its options in C
 * (cli_cmd_each, the parser's capture mode), and the seg table is read row by row too.
 * The script must parse (bash -n) and, sourced, complete commands, subcommands, every
 * option name of every command, the fixed choices of options with choices, file names
 * for free-form values and nothing for numbers; the man page must name every option of
 * every command and render without a groff warning. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/seg_opts.h"
#include "common.h"

static char out[1 << 18];

/* Runs `sh -c cmd` with stdout and stderr captured into out; returns the exit status. */
static int sh(const char *cmd)
{
    char full[8192];
    snprintf(full, sizeof(full), "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    cr_assert(p, "cannot run %s", cmd);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The words of s (separated by blanks) sorted, joined by single spaces, into buf. */
static const char *sorted_words(const char *s, char *buf, size_t size)
{
    char tmp[8192];
    const char *w[512];
    size_t n = 0, len = 0;
    snprintf(tmp, sizeof(tmp), "%s", s);
    for (char *t = strtok(tmp, " \t"); t && n < 512; t = strtok(NULL, " \t"))
        w[n++] = t;
    qsort(w, n, sizeof(w[0]), cmp_str);
    buf[0] = '\0';
    for (size_t i = 0; i < n && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? " " : "", w[i]);
    return buf;
}

/* A bash driver: each call `c WORDS...` completes the last word and prints the
 * completions on one line; the expected line of each call is kept beside it. */
struct driver {
    FILE *sh;
    char *expect[1024];
    char *what[1024];
    size_t n;
};

static void call(struct driver *d, const char *words, const char *expect)
{
    cr_assert(d->n < 1024);
    fprintf(d->sh, "c vkaccum %s\n", words);
    d->what[d->n] = strdup(words);
    d->expect[d->n++] = strdup(expect);
}

/* The option names of a command as completion must offer them: every option the
 * parser takes, and --help. */
static void names_of(const struct cli_optset *s, char *buf, size_t size)
{
    size_t len = 0;
    for (size_t i = 0; i < s->count; i++)
        len += (size_t)snprintf(buf + len, size - len, "--%s ", s->opts[i]->name);
    for (size_t i = 0; i < s->nextra; i++)
        len += (size_t)snprintf(buf + len, size - len, "--%s ", s->extra[i]);
    snprintf(buf + len, size - len, "--help");
}

/* "a|b|c" as "a b c" into buf. */
static void spaced(const char *choices, char *buf, size_t size)
{
    snprintf(buf, size, "%s", choices);
    for (char *p = buf; *p; p++)
        *p = *p == '|' ? ' ' : *p;
}

/* What completing an empty word after the options of `leaf` gives: its operands, else
 * its option names. The driver's folder holds only.dir/ and only.file. */
static void next_word(const struct cli_cmd *leaf, const char *names, char *buf, size_t size)
{
    size_t len = 0;
    switch (leaf->operand_kind) {
    case CLI_NO_OPERANDS: snprintf(buf, size, "%s", names); break;
    case CLI_OPERAND_WORDS: spaced(leaf->words, buf, size); break;
    case CLI_OPERAND_DIRS: snprintf(buf, size, "only.dir"); break;
    case CLI_OPERAND_COMMANDS:
        for (const struct cli_cmd *c = cli_commands; c->name; c++)
            len += (size_t)snprintf(buf + len, size - len, "%s ", c->name);
        break;
    }
}

/* What completing the value of option d gives: its choices, file names for a string
 * (and for a further option, d NULL), nothing for a number; after a flag, the next
 * word. */
static void value_of(const struct cli_cmd *leaf, const struct opt_desc *d, const char *names,
                     char *buf, size_t size)
{
    if (d && d->choices)
        spaced(d->choices, buf, size);
    else if (!d || d->type == OPT_STR)
        snprintf(buf, size, "only.dir only.file");
    else if (d->type == OPT_BOOL)
        next_word(leaf, names, buf, size);
    else
        buf[0] = '\0';
}

static int each_command(void *user, const struct cli_cmd *cmd, const struct cli_cmd *sub,
                        const struct cli_optset *s)
{
    struct driver *d = user;
    char path[128], names[4096], words[256], expect[4096];
    snprintf(path, sizeof(path), "%s%s%s", cmd->name, sub ? " " : "", sub ? sub->name : "");
    names_of(s, names, sizeof(names));
    snprintf(words, sizeof(words), "%s --", path);
    call(d, words, names);
    for (size_t i = 0; i < s->count + s->nextra; i++) {
        const struct opt_desc *o = i < s->count ? s->opts[i] : NULL;
        snprintf(words, sizeof(words), "%s --%s ''", path, o ? o->name : s->extra[i - s->count]);
        value_of(sub ? sub : cmd, o, names, expect, sizeof(expect));
        call(d, words, expect);
    }
    return 0;
}

/* Calls whose answers a person would check by hand. */
static void examples(struct driver *d)
{
    char all[1024] = "", subs[256] = "";
    size_t len = 0;
    for (const struct cli_cmd *c = cli_commands; c->name; c++)
        len += (size_t)snprintf(all + len, sizeof(all) - len, "%s ", c->name);
    call(d, "''", strcat(all, "--help --version"));
    len = 0;
    for (const struct cli_cmd *s = cli_cmd_find(cli_commands, "seg")->subs; s->name; s++)
        len += (size_t)snprintf(subs + len, sizeof(subs) - len, "%s ", s->name);
    call(d, "seg ''", strcat(subs, "--help"));
    call(d, "s", "selftest seg");
    call(d, "gan train --lo", "--loss");
    call(d, "gan train --loss ''", "bce hinge");
    call(d, "gan train --loss = h", "hinge"); /* --loss=h, as bash splits it */
    call(d, "seg train --opt", "--optimizer");
    call(d, "seg train --optimizer ''", "adamw adam sgd");
    call(d, "seg train --batch 4 --no-aug", "--no-augment");
    call(d, "bench ''", "gemm ops train workloads");
    call(d, "completion ''", "bash");
}

/* Every row of seg's table is an option of some seg subcommand: the table itself, not
 * only what the registry walk found. */
static void seg_rows_offered(void)
{
    for (size_t i = 0; i < seg_opt_count; i++) {
        bool found = false;
        const struct cli_cmd *seg = cli_cmd_find(cli_commands, "seg");
        for (const struct cli_cmd *s = seg->subs; s->name && !found; s++) {
            struct cli_optset set;
            cr_assert_eq(cli_cmd_options(seg, s, &set), 0, "%s", vka_last_error());
            for (size_t k = 0; k < set.count; k++)
                found |= set.opts[k] == &seg_opt_table[i];
        }
        cr_assert(found, "--%s of seg's table is an option of no seg subcommand",
                  seg_opt_table[i].name);
    }
}

Test(completion, bash_script_completes_every_command_option_and_choice)
{
    char *dir = test_tmpdir("vkaccum-completion");
    const char *script = test_path("%s/vkaccum.bash", dir);
    char args[600];
    snprintf(args, sizeof(args), "completion bash > %s", script);
    cr_assert_eq(test_vkaccum("", args, out, sizeof(out)), 0, "%s", out);
    snprintf(args, sizeof(args), "bash -n %s", script);
    cr_assert_eq(sh(args), 0, "the completion script does not parse: %s", out);

    struct driver d = { .n = 0 };
    const char *driver = test_path("%s/driver.bash", dir);
    d.sh = fopen(driver, "w");
    cr_assert(d.sh);
    fprintf(d.sh, "source %s || exit 1\nmkdir -p %s/files/only.dir && cd %s/files && : > only.file\n"
            "c() { COMP_WORDS=(\"$@\"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _vkaccum; "
            "echo \"${COMPREPLY[*]}\"; }\n", script, dir, dir);
    examples(&d);
    cr_assert_eq(cli_cmd_each(each_command, &d), 0, "%s", vka_last_error());
    fclose(d.sh);
    snprintf(args, sizeof(args), "bash %s", driver);
    cr_assert_eq(sh(args), 0, "%s", out);

    char *line = out, got[4096], want[4096];
    for (size_t i = 0; i < d.n; i++) {
        char *end = strchr(line, '\n');
        cr_assert(end, "the driver printed %zu lines, not %zu: %s", i, d.n, out);
        *end = '\0';
        sorted_words(line, got, sizeof(got));
        sorted_words(d.expect[i], want, sizeof(want));
        cr_expect_str_eq(got, want, "vkaccum %s<TAB> completes \"%s\", not \"%s\"", d.what[i],
                         line, d.expect[i]);
        line = end + 1;
        free(d.what[i]);
        free(d.expect[i]);
    }
    seg_rows_offered();
    test_tmpdir_remove(&dir);
}

/* s with each '-' as roff's "\-", appended to buf (size bytes) at *len. */
static void put_roff(char *buf, size_t size, size_t *len, const char *s)
{
    for (const char *p = s; *p && *len + 3 < size; p++) {
        if (*p == '-')
            buf[(*len)++] = '\\';
        buf[(*len)++] = *p;
    }
    buf[*len] = '\0';
}

/* "\fB\-\-name\fR": an option as the man page writes it. */
static void assert_man_names(const char *man, const char *name, const char *where)
{
    char want[256] = "\\fB";
    size_t len = strlen(want);
    put_roff(want, sizeof(want), &len, "--");
    put_roff(want, sizeof(want), &len, name);
    snprintf(want + len, sizeof(want) - len, "\\fR");
    cr_assert(strstr(man, want), "the man page does not name --%s (%s): no %s", name, where,
              want);
}

struct man_check {
    const char *man;
};

static int man_command(void *user, const struct cli_cmd *cmd, const struct cli_cmd *sub,
                       const struct cli_optset *s)
{
    const struct man_check *m = user;
    char where[128] = ".SS \"vkaccum ";
    size_t len = strlen(where);
    put_roff(where, sizeof(where), &len, cmd->name);
    if (sub) {
        put_roff(where, sizeof(where), &len, " ");
        put_roff(where, sizeof(where), &len, sub->name);
    }
    cr_assert(strstr(m->man, where), "the man page has no section %s\"", where);
    for (size_t i = 0; i < s->count; i++)
        assert_man_names(m->man, s->opts[i]->name, where + 5);
    for (size_t i = 0; i < s->nextra; i++)
        assert_man_names(m->man, s->extra[i], where + 5);
    return 0;
}

Test(completion, man_page_names_every_option_and_renders_without_warnings)
{
    char *dir = test_tmpdir("vkaccum-man");
    const char *page = test_path("%s/vkaccum.1", dir);
    char args[600];
    snprintf(args, sizeof(args), "help --man > %s", page);
    cr_assert_eq(test_vkaccum("", args, out, sizeof(out)), 0, "%s", out);
    snprintf(args, sizeof(args), "cat %s", page);
    cr_assert_eq(sh(args), 0);
    char *man = strdup(out);
    cr_assert(!strncmp(man, ".TH VKACCUM 1 ", 14), "not a section 1 man page: %.80s", man);
    struct man_check m = { man };
    cr_assert_eq(cli_cmd_each(man_command, &m), 0, "%s", vka_last_error());
    for (size_t i = 0; i < seg_opt_count; i++)
        assert_man_names(man, seg_opt_table[i].name, "seg's table");
    for (const struct cli_env *e = cli_env; e->name; e++)
        cr_assert(strstr(man, e->name), "the man page does not name %s", e->name);

    if (sh("command -v groff") != 0) {
        cr_log_warn("groff is not installed: the man page's rendering is not checked");
    } else {
        snprintf(args, sizeof(args), "groff -man -Tutf8 -ww -z %s", page);
        cr_assert_eq(sh(args), 0, "%s", out);
        cr_assert_eq(out[0], '\0', "groff warns about the man page: %s", out);
        snprintf(args, sizeof(args), "MANWIDTH=80 man -l %s", page);
        if (sh("command -v man") == 0) {
            cr_assert_eq(sh(args), 0, "%s", out);
            cr_assert(strstr(out, "vkaccum seg train [OPTIONS]") && strstr(out, "--micro-batch"),
                      "man -l renders no seg train section: %.2000s", out);
        }
    }
    free(man);
    test_tmpdir_remove(&dir);
}

Test(completion, usage_errors_and_help_of_a_subcommand)
{
    char buf[1 << 14];
    cr_assert_eq(test_vkaccum("", "completion zsh", buf, sizeof(buf)), 2, "%s", buf);
    cr_assert(strstr(buf, "unknown shell 'zsh'"), "%s", buf);
    cr_assert_eq(test_vkaccum("", "completion", buf, sizeof(buf)), 2, "%s", buf);
    cr_assert_eq(test_vkaccum("", "help --man seg", buf, sizeof(buf)), 2, "%s", buf);
    cr_assert_eq(test_vkaccum("", "help bogus", buf, sizeof(buf)), 2, "%s", buf);
    cr_assert(strstr(buf, "unknown command 'bogus'"), "%s", buf);
    cr_assert_eq(test_vkaccum("", "help seg bogus", buf, sizeof(buf)), 2, "%s", buf);
    cr_assert_eq(test_vkaccum("", "help gan train", buf, sizeof(buf)), 0, "%s", buf);
    cr_assert(strstr(buf, "usage: vkaccum gan train") && strstr(buf, "--ema-kimg"), "%s", buf);
    cr_assert_eq(test_vkaccum("", "help", buf, sizeof(buf)), 0, "%s", buf);
    for (const struct cli_cmd *c = cli_commands; c->name; c++)
        cr_assert(strstr(buf, c->summary), "the usage text lacks %s", c->name);
    /* the commands whose own parsers became tables keep their checks */
    cr_assert_eq(test_vkaccum("", "bench --repeats 0 gemm", buf, sizeof(buf)), 2, "%s", buf);
    cr_assert(strstr(buf, "--repeats 0: give 1 to 1000"), "%s", buf);
    cr_assert_eq(test_vkaccum("", "bench --json", buf, sizeof(buf)), 2, "%s", buf);
    cr_assert(strstr(buf, "gemm, ops, train or workloads"), "%s", buf);
    cr_assert_eq(test_vkaccum("", "bench gemm ops", buf, sizeof(buf)), 2, "%s", buf);
    cr_assert(strstr(buf, "unexpected argument 'ops'"), "%s", buf);
    cr_assert_eq(test_vkaccum("", "gan fid-net --out x --steps 0", buf, sizeof(buf)), 2, "%s", buf);
    cr_assert(strstr(buf, "--steps 0: give a whole number in 1..10000000"), "%s", buf);
    cr_assert_eq(test_vkaccum("", "gan fid-net --out x --channels 2", buf, sizeof(buf)), 2, "%s", buf);
    cr_assert_eq(test_vkaccum("", "gan fid-net --out x --seed 4294967296", buf, sizeof(buf)), 2,
                 "%s", buf);
    cr_assert_eq(test_vkaccum("", "gan fid-net --steps 5", buf, sizeof(buf)), 2, "%s", buf);
    cr_assert(strstr(buf, "--out FILE"), "%s", buf);
    cr_assert_eq(test_vkaccum("", "selftest extra", buf, sizeof(buf)), 2, "%s", buf);
    cr_assert(strstr(buf, "unexpected argument 'extra'"), "%s", buf);
    cr_assert_eq(test_vkaccum("", "plot --title t", buf, sizeof(buf)), 2, "%s", buf);
    cr_assert(strstr(buf, "RUN folders"), "%s", buf);
}
