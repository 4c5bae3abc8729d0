/* vkaccum help: the usage text, a command's --help and the man page (roff, section 1),
 * written from the command registry (commands.h) and the options each command's parser
 * takes (cli_cmd_options), so that none of them can drift from the command line. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "log.h"
#include "vka_config.h"

#define WIDTH 88 /* the usage text's line length */

/* Prints the words of text (split at spaces and newlines) separated by single spaces,
 * filling lines up to WIDTH columns; lines after the first start with `indent` spaces. */
static void wrap(FILE *f, const char *text, int indent)
{
    int col = 0;
    bool line_start = true;
    for (const char *p = text + strspn(text, " \n"); *p; p += strspn(p, " \n")) {
        int len = (int)strcspn(p, " \n");
        if (!line_start && col + 1 + len > WIDTH) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
            line_start = true;
        }
        if (!line_start) {
            fputc(' ', f);
            col++;
        }
        fwrite(p, 1, (size_t)len, f);
        col += len;
        line_start = false;
        p += len;
    }
    fputc('\n', f);
}

void cli_usage(FILE *f)
{
    fputs("usage: vkaccum [--version] [--help] COMMAND [OPTIONS]\n\n", f);
    wrap(f, cli_about, 0);
    fputs("\ncommands:\n", f);
    for (const struct cli_cmd *c = cli_commands; c->name; c++)
        fprintf(f, "  %-11s %s\n", c->name, c->summary);
    fputs("\nRun 'vkaccum COMMAND --help' for a command's options, 'vkaccum help --man' for the\n"
          "manual.\n", f);
    char env[1024];
    size_t n = (size_t)snprintf(env, sizeof(env), "Environment:");
    for (const struct cli_env *e = cli_env; e->name && n < sizeof(env); e++)
        n += (size_t)snprintf(env + n, sizeof(env) - n, " %s=%s%s", e->name, e->value,
                              e[1].name ? "," : ".");
    wrap(f, env, 2);
}

/* ---- the man page --------------------------------------------------------------------- */

/* One UTF-8 character at s (len bytes) as groff's \[uXXXX]. */
static size_t put_utf8(FILE *f, const unsigned char *s)
{
    unsigned cp = s[0], len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 1;
    cp &= len == 4 ? 0x07 : len == 3 ? 0x0f : len == 2 ? 0x1f : 0xff;
    for (unsigned i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            fputc('?', f); /* not UTF-8: one stand-in for the byte */
            return 1;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (len == 1)
        fputc('?', f);
    else
        fprintf(f, "\\[u%04X]", cp);
    return len;
}

/* Text for roff: backslashes and minus signs escaped, a line never starting with a
 * control character, anything past ASCII as \[uXXXX]. */
static void roff(FILE *f, const char *text)
{
    bool bol = true;
    for (const unsigned char *p = (const unsigned char *)text; *p;) {
        if (bol && (*p == '.' || *p == '\''))
            fputs("\\&", f);
        bol = *p == '\n';
        if (*p >= 0x80) {
            p += put_utf8(f, p);
            continue;
        }
        if (*p == '\\')
            fputs("\\e", f);
        else if (*p == '-')
            fputs("\\-", f);
        else
            fputc(*p, f);
        p++;
    }
}

/* The placeholder of an option's value: N or X for a number (N|auto when a word may
 * stand for one), its choices, or its name in capitals. */
static void value_name(char *buf, size_t size, const char *name, const struct opt_desc *d)
{
    if (d && d->type != OPT_STR) {
        snprintf(buf, size, "%s%s%s", d->type == OPT_DOUBLE ? "X" : "N", d->choices ? "|" : "",
                 d->choices ? d->choices : "");
        return;
    }
    if (d && d->choices) {
        snprintf(buf, size, "%s", d->choices);
        return;
    }
    size_t i = 0;
    for (; name[i] && i + 1 < size; i++)
        buf[i] = name[i] == '-' ? '_' : (char)toupper((unsigned char)name[i]);
    buf[i] = '\0';
}

/* .TP entry of option `name` (d: its row, NULL for a further option of the command). */
static void man_option(FILE *f, const char *name, const struct opt_desc *d, const char *help)
{
    fputs(".TP\n\\fB\\-\\-", f);
    roff(f, name);
    fputs("\\fR", f);
    if (!d || d->type != OPT_BOOL) {
        char v[256];
        value_name(v, sizeof(v), name, d);
        fputs(" \\fI", f);
        roff(f, v);
        fputs("\\fR", f);
    }
    fputc('\n', f);
    roff(f, help);
    fputc('\n', f);
}

static int man_command(void *user, const struct cli_cmd *cmd, const struct cli_cmd *sub,
                       const struct cli_optset *s)
{
    FILE *f = user;
    const struct cli_cmd *leaf = sub ? sub : cmd;
    char title[256];
    snprintf(title, sizeof(title), "vkaccum %s%s%s [OPTIONS]%s%s", cmd->name, sub ? " " : "",
             sub ? sub->name : "", leaf->operands ? " " : "", leaf->operands ? leaf->operands : "");
    fputs(".SS \"", f);
    roff(f, title);
    fprintf(f, "\"\n%c", toupper((unsigned char)leaf->summary[0]));
    roff(f, leaf->summary + 1);
    fputs(".\n", f);
    for (size_t i = 0; i < s->count; i++)
        man_option(f, s->opts[i]->name, s->opts[i], s->opts[i]->help);
    char more[256];
    snprintf(more, sizeof(more), "see vkaccum %s%s%s --help", cmd->name, sub ? " " : "",
             sub ? sub->name : "");
    for (size_t i = 0; i < s->nextra; i++)
        man_option(f, s->extra[i], NULL, more);
    return 0;
}

static void man_head(FILE *f)
{
    fprintf(f, ".TH VKACCUM 1 \"\" \"vkaccum %s\" \"User Commands\"\n", VKA_VERSION);
    fputs(".SH NAME\nvkaccum \\- U\\-Net segmentation and DCGAN training on Vulkan with exact "
          "gradient accumulation\n"
          ".SH SYNOPSIS\n.B vkaccum\n.RB [ \\-\\-version ]\n.RB [ \\-\\-help ]\n"
          ".I COMMAND\n.RI [ SUBCOMMAND ]\n.RI [ OPTIONS ]\n"
          ".SH DESCRIPTION\n", f);
    roff(f, cli_about);
    fputs("\n.PP\nEvery command and subcommand takes \\fB\\-\\-help\\fR, which lists its options. "
          "An option's value follows it as the next argument or after \\fB=\\fR. "
          "\\fBvkaccum completion bash\\fR prints a bash completion script made from the "
          "same options.\n.SH COMMANDS\n", f);
    for (const struct cli_cmd *c = cli_commands; c->name; c++) {
        fputs(".TP\n.B ", f);
        roff(f, c->name);
        fputc('\n', f);
        roff(f, c->summary);
        fputc('\n', f);
    }
}

static void man_tail(FILE *f)
{
    fputs(".SH ENVIRONMENT\n", f);
    for (const struct cli_env *e = cli_env; e->name; e++) {
        fputs(".TP\n\\fB", f);
        roff(f, e->name);
        fputs("\\fR=\\fI", f);
        roff(f, e->value);
        fputs("\\fR\n", f);
        roff(f, e->help);
        fputc('\n', f);
    }
    fputs(".SH EXIT STATUS\n0 on success, 1 when the work failed (the message names the file, "
          "option or device), 2 on a usage error: an unknown command or option, or a bad "
          "value.\n.SH SEE ALSO\nREADME.md in the source tree: datasets, run folders, "
          "checkpoints and what was measured.\n", f);
}

int cli_man(FILE *f)
{
    man_head(f);
    fputs(".SH OPTIONS\n", f);
    int ret = cli_cmd_each(man_command, f);
    if (ret == 0)
        man_tail(f);
    return ret;
}

int cli_print_generated(const char *cmd, int (*gen)(FILE *f))
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    int ret = f ? gen(f) : -ENOMEM;
    if (f && fclose(f) && ret == 0)
        ret = -ENOMEM;
    if (ret == 0)
        fwrite(text, 1, len, stdout);
    else
        fprintf(stderr, "vkaccum %s: %s\n", cmd,
                ret == -ENOMEM ? "out of memory" : vka_last_error());
    free(text);
    return ret ? 1 : 0;
}

/* ---- vkaccum help -------------------------------------------------------------------- */

struct help_opts {
    bool man;
};

static const struct opt_desc help_table[] = {
    OPT_ROW(struct help_opts, "man", OPT_BOOL, man, NULL, "print the man page (roff, section 1)"),
};

/* vkaccum help CMD [SUB]: that command's --help. */
static int command_help(int n, char **names)
{
    const struct cli_cmd *cmd = cli_cmd_find(cli_commands, names[0]);
    if (!cmd)
        return cli_usage_error(NULL, "unknown command '%s'", names[0]);
    if (n > 2)
        return cli_usage_error("help", "unexpected argument '%s'", names[2]);
    if (n == 2 && !cli_cmd_find(cmd->subs, names[1]))
        return cli_usage_error(cmd->name, "unknown command '%s'", names[1]);
    char *argv[4] = { names[0], n == 2 ? names[1] : "--help", n == 2 ? "--help" : NULL, NULL };
    return cmd->run(n + 1, argv);
}

int cli_help(int argc, char **argv)
{
    struct help_opts o = { false };
    bool help;
    int first, ret = cli_opts_parse_operands("help", argc, argv, help_table,
                                             OPT_COUNT(help_table), &o, &help, &first);
    if (ret)
        return ret;
    if (help) {
        cli_opts_help(help_table, OPT_COUNT(help_table),
                      "usage: vkaccum help [COMMAND [SUBCOMMAND]] [--man]\n\n"
                      "The commands, a command's options, or the man page.", NULL, NULL);
        return 0;
    }
    if (o.man && first < argc)
        return cli_usage_error("help", "--man is the whole manual: give no command");
    if (first < argc)
        return command_help(argc - first, argv + first);
    if (!o.man) {
        cli_usage(stdout);
        return 0;
    }
    return cli_print_generated("help", cli_man);
}
