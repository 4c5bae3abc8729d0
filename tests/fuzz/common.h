/* Shared by the libFuzzer targets of tests/fuzz (one fuzz_TARGET.c each, docs/fuzz.md):
 * the readers under test take paths, so each input is written to a file in a private
 * temporary folder (under $TMPDIR, else /dev/shm, else /tmp) that is removed at exit;
 * library logging is silenced (errors are only kept, as the CLI keeps them); a broken
 * invariant is reported with fuzz_fail, which aborts, so that libFuzzer saves the input
 * as a crash. */
#ifndef VKA_FUZZ_COMMON_H
#define VKA_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

/* libFuzzer's entry points (compiler-rt's FuzzerInterface.h, which C cannot include). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Creates the temporary folder and silences logging; call from LLVMFuzzerInitialize. */
void fuzz_setup(void);
/* The path of file name (at most 31 bytes) in the temporary folder; the folder removes
 * it at exit. The string lives until exit. */
const char *fuzz_path(const char *name);
/* Replaces the file at path (from fuzz_path) with n bytes of data; aborts on failure. */
void fuzz_write(const char *path, const void *data, size_t n);
/* Reports a broken invariant and aborts. */
_Noreturn void fuzz_fail(const char *fmt, ...) VKA_PRINTF(1, 2);
/* Reads every byte of data (n bytes), so that AddressSanitizer sees a buffer shorter
 * than the reader claims; returns a sum that the caller ignores. */
uint32_t fuzz_touch(const void *data, size_t n);

#endif
