/* The temporary folder, file writing and invariant failures of the fuzz targets; see
 * common.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

#define MAX_FILES 8

static char tmp_dir[256];
static char files[MAX_FILES][sizeof(tmp_dir) + 32];
static int n_files;

static void cleanup(void)
{
    for (int i = 0; i < n_files; i++)
        unlink(files[i]);
    if (tmp_dir[0])
        rmdir(tmp_dir);
    tmp_dir[0] = '\0';
}

_Noreturn void fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    fputs("fuzz: invariant broken: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

void fuzz_setup(void)
{
    vka_log_set_level(VKA_LOG_ERROR);
    vka_log_keep_errors(true);
    if (tmp_dir[0])
        return;
    const char *base = getenv("TMPDIR");
    struct stat st;
    if (!base || !*base)
        base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && !access("/dev/shm", W_OK)
                   ? "/dev/shm"
                   : "/tmp";
    int n = snprintf(tmp_dir, sizeof(tmp_dir), "%s/vka-fuzz-XXXXXX", base);
    if (n < 0 || (size_t)n >= sizeof(tmp_dir) || !mkdtemp(tmp_dir))
        fuzz_fail("cannot create a temporary folder in %s: %s", base, strerror(errno));
    atexit(cleanup);
}

const char *fuzz_path(const char *name)
{
    if (!tmp_dir[0])
        fuzz_fail("fuzz_path before fuzz_setup");
    if (strlen(name) > 31 || n_files == MAX_FILES)
        fuzz_fail("fuzz_path: name '%s' too long or more than %d files", name, MAX_FILES);
    snprintf(files[n_files], sizeof(files[0]), "%s/%s", tmp_dir, name);
    return files[n_files++];
}

void fuzz_write(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        fuzz_fail("%s: cannot open for writing: %s", path, strerror(errno));
    const char *p = data;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            fuzz_fail("%s: cannot write: %s", path, w < 0 ? strerror(errno) : "no progress");
        p += w;
        n -= (size_t)w;
    }
    if (close(fd) != 0)
        fuzz_fail("%s: cannot close: %s", path, strerror(errno));
}

uint32_t fuzz_touch(const void *data, size_t n)
{
    const uint8_t *p = data;
    uint32_t s = 0;
    for (size_t i = 0; i < n; i++)
        s = s * 31u + p[i];
    return s;
}
