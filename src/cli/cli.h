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

/* Prints "vkaccum CMD: MSG" and the hint to run --help, returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* getopt_long with its own messages off; reports an unknown option or a missing value
 * as a usage error naming it. shortopts must start with ':'. Returns the option, -1 at
 * the end, or '?' after reporting. */
struct option;
int cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts,
               const struct option *longopts);

#endif
