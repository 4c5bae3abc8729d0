/* The command-line front end: the only code that prints to stdout or exits. Each
 * subcommand is a function taking its own argv (argv[0] is its name). */
#ifndef VKA_CLI_H
#define VKA_CLI_H

#include <stdint.h>
#include <stdio.h>

#define CLI_USAGE 2 /* exit status of a usage error */

/* 8-bit PNG (c = 1, 3 or 4 channels, rows top to bottom), written atomically; an error
 * names path and the reason. */
int cli_png_write(const char *path, uint32_t w, uint32_t h, uint32_t c, const uint8_t *data);
/* A float32 array of ndim dimensions as a NumPy .npy file, written atomically. */
int cli_npy_write(const char *path, const uint32_t *shape, uint32_t ndim, const float *data);
/* The same PNG in memory (*png malloc'd, the caller's to free). */
int cli_png_encode(uint32_t w, uint32_t h, uint32_t c, const uint8_t *data, unsigned char **png,
                   size_t *len);
int cli_seg(int argc, char **argv);
int cli_gan(int argc, char **argv);
int cli_gan_fidnet(int argc, char **argv); /* vkaccum gan fid-net */

int cli_devices(int argc, char **argv);
int cli_plot(int argc, char **argv);
/* The context on --device (empty: the default) with a --mem-budget in MiB (0: the
 * device's); prints "vkaccum CMD: error" and returns NULL on failure (devices.c: the one
 * place the commands open a device). */
struct vka_ctx;
struct vka_ctx *cli_open_ctx(const char *cmd, const char *device, double budget_mib);
int cli_selftest(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_help(int argc, char **argv);       /* vkaccum help [COMMAND [SUB]] [--man] */
int cli_completion(int argc, char **argv); /* vkaccum completion bash */
/* The top-level usage text, and the man page (-EINVAL after vka_err when a command of the
 * registry reaches no option parser); help.c. */
void cli_usage(FILE *f);
int cli_man(FILE *f);
/* The bash completion script (completion.c; the same failure as cli_man). */
int cli_completion_bash(FILE *f);
/* Writes what gen writes to stdout when it succeeds, else says why on stderr naming
 * "vkaccum cmd"; returns the exit status (help.c). */
int cli_print_generated(const char *cmd, int (*gen)(FILE *f));

/* Prints "vkaccum CMD: MSG" and the hint to run --help, returns CLI_USAGE (opts.c). */
int cli_usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#endif
