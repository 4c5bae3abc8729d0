/* vkaccum completion bash: a bash completion script written from the command registry
 * (commands.h) and the options each command's parser takes (cli_cmd_options). It
 * completes commands, subcommands, each command's option names, the fixed choices of an
 * option with choices, file names for an option with a free-form string value, and the
 * operands (bench's benchmarks, plot's run folders, help's commands). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "log.h"
#include "vka_config.h"

/* Names and choices go into the script inside double quotes and case patterns: only
 * letters, digits, '.', '_', '-' (and '|' between choices) may. */
static int check_word(const char *what, const char *s, bool bars)
{
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("._-", *p) || (bars && *p == '|'))) {
            vka_err("%s \"%s\" holds '%c', which the completion script cannot quote", what, s,
                    *p);
            return -EINVAL;
        }
    return 0;
}

/* "a|b|c" as "a b c". */
static void put_words(FILE *f, const char *choices)
{
    for (const char *p = choices; *p; p++)
        fputc(*p == '|' ? ' ' : *p, f);
}

static void put_path(FILE *f, const struct cli_cmd *cmd, const struct cli_cmd *sub)
{
    fprintf(f, "%s%s%s", cmd->name, sub ? " " : "", sub ? sub->name : "");
}

/* The case line of an option that takes a value: its choices, file names, or nothing
 * (numbers). */
static int value_case(FILE *f, const struct cli_cmd *cmd, const struct cli_cmd *sub,
                      const char *name, const struct opt_desc *d)
{
    int ret = check_word("option", name, false);
    if (ret == 0 && d && d->choices)
        ret = check_word("the choices of an option", d->choices, true);
    if (ret || (d && d->type == OPT_BOOL))
        return ret;
    fputs("    \"", f);
    put_path(f, cmd, sub);
    fprintf(f, " --%s\") ", name);
    if (d && d->choices) {
        fputs("_vkaccum_reply -W \"", f);
        put_words(f, d->choices);
        fputs("\"; return ;;\n", f);
    } else if (!d || d->type == OPT_STR) {
        fputs("_vkaccum_files; return ;;\n", f);
    } else {
        fputs("return ;;\n", f); /* a number */
    }
    return 0;
}

static int value_cases(void *user, const struct cli_cmd *cmd, const struct cli_cmd *sub,
                       const struct cli_optset *s)
{
    int ret = 0;
    for (size_t i = 0; i < s->count && !ret; i++)
        ret = value_case(user, cmd, sub, s->opts[i]->name, s->opts[i]);
    for (size_t i = 0; i < s->nextra && !ret; i++)
        ret = value_case(user, cmd, sub, s->extra[i], NULL);
    return ret;
}

static int option_names(void *user, const struct cli_cmd *cmd, const struct cli_cmd *sub,
                        const struct cli_optset *s)
{
    FILE *f = user;
    fputs("    \"", f);
    put_path(f, cmd, sub);
    fputs("\") _vkaccum_reply -W \"", f);
    for (size_t i = 0; i < s->count; i++)
        fprintf(f, "--%s ", s->opts[i]->name);
    for (size_t i = 0; i < s->nextra; i++)
        fprintf(f, "--%s ", s->extra[i]);
    fputs("--help\" ;;\n", f);
    return 0;
}

static void command_names(FILE *f)
{
    for (const struct cli_cmd *c = cli_commands; c->name; c++)
        fprintf(f, "%s%s", c == cli_commands ? "" : " ", c->name);
}

/* Position 1 (commands) and 2 (subcommands), then the command's path in $cmd. */
static int commands(FILE *f)
{
    fputs("    if ((COMP_CWORD == 1)); then\n        _vkaccum_reply -W \"", f);
    command_names(f);
    fputs(" --help --version\"\n        return\n    fi\n    case $cmd in\n", f);
    for (const struct cli_cmd *c = cli_commands; c->name; c++) {
        if (check_word("command", c->name, false))
            return -EINVAL;
        if (!c->subs)
            continue;
        fprintf(f, "    %s)\n        if ((COMP_CWORD == 2)); then\n"
                   "            _vkaccum_reply -W \"", c->name);
        for (const struct cli_cmd *s = c->subs; s->name; s++) {
            if (check_word("subcommand", s->name, false))
                return -EINVAL;
            fprintf(f, "%s ", s->name);
        }
        fprintf(f, "--help\"\n            return\n        fi\n"
                   "        cmd=\"%s ${COMP_WORDS[2]}\" ;;\n", c->name);
    }
    fputs("    esac\n", f);
    return 0;
}

static int operands(FILE *f)
{
    fputs("    if [[ $cur != -* ]]; then\n        case $cmd in\n", f);
    for (const struct cli_cmd *c = cli_commands; c->name; c++) {
        if (c->operand_kind == CLI_NO_OPERANDS)
            continue;
        fprintf(f, "        %s) ", c->name);
        if (c->operand_kind == CLI_OPERAND_WORDS) {
            if (check_word("the operands of a command", c->words, true))
                return -EINVAL;
            fputs("_vkaccum_reply -W \"", f);
            put_words(f, c->words);
            fputs("\"", f);
        } else if (c->operand_kind == CLI_OPERAND_DIRS) {
            fputs("_vkaccum_dirs", f);
        } else {
            fputs("_vkaccum_reply -W \"", f);
            command_names(f);
            fputs("\"", f);
        }
        fputs("; return ;;\n", f);
    }
    fputs("        esac\n    fi\n", f);
    return 0;
}

static const char head[] =
    "# bash completion of vkaccum %s, written by 'vkaccum completion bash' from the\n"
    "# commands and option tables of its command line. Install with\n"
    "#   vkaccum completion bash > ~/.local/share/bash-completion/completions/vkaccum\n"
    "# or source the script from ~/.bashrc.\n"
    "\n"
    "_vkaccum_reply() {\n"
    "    mapfile -t COMPREPLY < <(compgen \"$@\" -- \"$cur\")\n"
    "}\n"
    "\n"
    "_vkaccum_files() {\n"
    "    _vkaccum_reply -f\n"
    "    compopt -o filenames 2>/dev/null\n"
    "}\n"
    "\n"
    "_vkaccum_dirs() {\n"
    "    _vkaccum_reply -d\n"
    "    compopt -o filenames 2>/dev/null\n"
    "}\n"
    "\n"
    "_vkaccum() {\n"
    "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}\n"
    "    local cmd=${COMP_WORDS[1]}\n"
    "    COMPREPLY=()\n"
    "    # --option=value: bash splits the word at '=' (COMP_WORDBREAKS)\n"
    "    if [[ $cur == = ]]; then\n"
    "        cur=\n"
    "    elif [[ $prev == = ]]; then\n"
    "        prev=${COMP_WORDS[COMP_CWORD - 2]}\n"
    "    fi\n";

int cli_completion_bash(FILE *f)
{
    fprintf(f, head, VKA_VERSION);
    int ret = commands(f);
    if (ret == 0) {
        fputs("    case \"$cmd $prev\" in\n", f);
        ret = cli_cmd_each(value_cases, f);
        fputs("    esac\n", f);
    }
    if (ret == 0)
        ret = operands(f);
    if (ret == 0) {
        fputs("    case $cmd in\n", f);
        ret = cli_cmd_each(option_names, f);
        fputs("    esac\n}\n\ncomplete -F _vkaccum vkaccum\n", f);
    }
    return ret;
}

/* ---- vkaccum completion ----------------------------------------------------------------- */

int cli_completion(int argc, char **argv)
{
    bool help;
    int first, ret = cli_opts_parse_operands("completion", argc, argv, NULL, 0, NULL, &help,
                                             &first);
    if (ret)
        return ret;
    if (help) {
        printf("usage: vkaccum completion bash\n\n"
               "Prints a bash completion script of vkaccum's commands and options:\n"
               "  vkaccum completion bash > ~/.local/share/bash-completion/completions/vkaccum\n");
        return 0;
    }
    if (first >= argc)
        return cli_usage_error("completion", "say which shell: bash");
    if (strcmp(argv[first], "bash"))
        return cli_usage_error("completion", "unknown shell '%s' (bash)", argv[first]);
    if (first + 1 < argc)
        return cli_usage_error("completion", "unexpected argument '%s'", argv[first + 1]);
    return cli_print_generated("completion", cli_completion_bash);
}
