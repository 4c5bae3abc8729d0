/* Opening regular files for reading and replacing files atomically (see file.h). The
 * *_msg functions hold the logic and write their message into a buffer; the plain ones
 * pass that message to vka_err. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"
#include "log.h"

#define MSG_LEN 1024 /* vka_last_error keeps as much */
#define HOST_LEN 64  /* of the host name in a temporary file's name */

static int fail(char *msg, size_t size, int err, const char *fmt, ...) VKA_PRINTF(4, 5);

/* Writes the message into msg (when there is room) and returns -err. */
static int fail(char *msg, size_t size, int err, const char *fmt, ...)
{
    if (msg && size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, size, fmt, ap);
        va_end(ap);
    }
    return -err;
}

static const char *kind_of(mode_t mode)
{
    if (S_ISDIR(mode))
        return "a folder";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISSOCK(mode))
        return "a socket";
    if (S_ISLNK(mode))
        return "a symbolic link";
    return "of an unknown type";
}

/* The fd of regular file path, blocking, and its stat; or -errno. */
static int open_regular(const char *path, struct stat *st, char *msg, size_t size)
{
    if (!path)
        return fail(msg, size, EINVAL, "vka_open_regular: path is NULL");
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        /* a socket cannot be opened at all (ENXIO): say what it is */
        if (e == ENXIO && stat(path, st) == 0 && !S_ISREG(st->st_mode))
            return fail(msg, size, EINVAL, "%s: not a regular file (%s)", path,
                        kind_of(st->st_mode));
        return fail(msg, size, e, "%s: cannot open: %s", path, strerror(e));
    }
    int ret = 0;
    if (fstat(fd, st) != 0)
        ret = fail(msg, size, errno, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(st->st_mode))
        ret = fail(msg, size, EINVAL, "%s: not a regular file (%s)", path,
                   kind_of(st->st_mode));
    if (ret) {
        close(fd);
        return ret;
    }
    /* regular files ignore O_NONBLOCK on Linux, but not every file system (mandatory
     * locks, some network file systems) and stdio/zlib expect blocking reads */
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        ret = fail(msg, size, errno, "%s: cannot clear O_NONBLOCK: %s", path,
                   strerror(errno));
        close(fd);
        return ret;
    }
    return fd;
}

int vka_open_regular_msg(const char *path, char *msg, size_t size)
{
    struct stat st;
    return open_regular(path, &st, msg, size);
}

int vka_open_regular(const char *path)
{
    char msg[MSG_LEN];
    int fd = vka_open_regular_msg(path, msg, sizeof(msg));
    if (fd < 0)
        vka_err("%s", msg);
    return fd;
}

FILE *vka_fopen_regular(const char *path)
{
    int fd = vka_open_regular(path);
    if (fd < 0) {
        errno = -fd;
        return NULL;
    }
    FILE *fp = fdopen(fd, "rb");
    if (!fp) {
        int e = errno;
        vka_err("%s: cannot open as a stream: %s", path, strerror(e));
        close(fd);
        errno = e;
    }
    return fp;
}

/* Reads n bytes of fd into buf; the count read (short at the end of the file) or
 * -errno. */
static ssize_t read_full(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

int vka_read_whole_msg(const char *path, size_t max, char **data, size_t *len, char *msg,
                       size_t size)
{
    *data = NULL;
    *len = 0;
    struct stat st;
    int fd = open_regular(path, &st, msg, size);
    if (fd < 0)
        return fd;
    int ret = 0;
    char *buf = NULL;
    if ((uint64_t)st.st_size > max) {
        ret = fail(msg, size, EFBIG, "%s: %lld bytes, more than the cap of %zu bytes for "
                   "this file", path, (long long)st.st_size, max);
        goto done;
    }
    size_t n = (size_t)st.st_size;
    buf = malloc(n + 1);
    if (!buf) {
        ret = fail(msg, size, ENOMEM, "%s: out of memory for %zu bytes", path, n);
        goto done;
    }
    ssize_t got = read_full(fd, buf, n);
    if (got < 0)
        ret = fail(msg, size, (int)-got, "%s: cannot read: %s", path, strerror((int)-got));
    else if ((size_t)got < n)
        ret = fail(msg, size, EIO, "%s: the file ended after %zd of its %zu bytes (it "
                   "changed while being read?)", path, got, n);
    if (ret)
        goto done;
    buf[n] = '\0';
    *data = buf;
    *len = n;
    buf = NULL;
done:
    free(buf);
    close(fd);
    return ret;
}

int vka_read_whole(const char *path, size_t max, char **data, size_t *len)
{
    char msg[MSG_LEN];
    int ret = vka_read_whole_msg(path, max, data, len, msg, sizeof(msg));
    if (ret < 0)
        vka_err("%s", msg);
    return ret;
}

/* ---- atomic replacement ---- */

/* This host's name as it goes into temporary file names: bytes other than letters,
 * digits, '.', '_' and '-' become '_', so that it stays one path component. */
static void host_name(char *out, size_t size)
{
    char h[HOST_LEN + 1] = "";
    if (gethostname(h, sizeof(h) - 1) != 0 || !h[0])
        snprintf(h, sizeof(h), "unknown-host");
    h[HOST_LEN] = '\0';
    for (char *p = h; *p; p++) {
        unsigned char c = (unsigned char)*p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            *p = '_';
    }
    snprintf(out, size, "%s", h);
}

static char *temp_name(const char *path)
{
    char host[HOST_LEN + 1];
    host_name(host, sizeof(host));
    size_t n = strlen(path) + strlen(host) + 32;
    char *t = malloc(n);
    if (t)
        snprintf(t, n, "%s.tmp-%s-%ld", path, host, (long)getpid());
    return t;
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int ret = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return ret;
}

/* The pid of a temporary file name "HOST-PID" (the part after base.tmp-) when HOST is
 * this host's; else 0. */
static long own_host_pid(const char *s, const char *host)
{
    const char *dash = strrchr(s, '-');
    size_t hlen = strlen(host);
    if (!dash || (size_t)(dash - s) != hlen || strncmp(s, host, hlen))
        return 0;
    const char *digits = dash + 1;
    if (*digits < '0' || *digits > '9')
        return 0;
    char *end;
    errno = 0;
    long pid = strtol(digits, &end, 10);
    return *end || errno || pid <= 0 ? 0 : pid;
}

/* Removes base.tmp-HOST-PID files in dir of this host whose writer no longer runs (a
 * writer killed mid-write). Others stay: another host's pid cannot be checked from
 * here, and a name without a host is of unknown origin. */
static void remove_stale_temps(const char *dir, const char *base)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    char host[HOST_LEN + 1];
    host_name(host, sizeof(host));
    size_t blen = strlen(base);
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *s = de->d_name;
        if (strncmp(s, base, blen) || strncmp(s + blen, ".tmp-", 5))
            continue;
        long pid = own_host_pid(s + blen + 5, host);
        if (!pid || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0)
            vka_info("%s/%s: removed the temporary file of a writer that died (pid %ld)", dir,
                     de->d_name, pid);
    }
    closedir(d);
}

static void atomic_free(struct vka_atomic *a)
{
    free(a->path);
    free(a->tmp);
    *a = (struct vka_atomic){ 0 };
}

int vka_atomic_open(const char *path, struct vka_atomic *a)
{
    if (!a) {
        vka_err("vka_atomic_open: a is NULL");
        return -EINVAL;
    }
    *a = (struct vka_atomic){ 0 };
    if (!path || !*path) {
        vka_err("vka_atomic_open: the path is %s", path ? "empty" : "NULL");
        return -EINVAL;
    }
    a->path = strdup(path);
    a->tmp = temp_name(path);
    if (!a->path || !a->tmp) {
        vka_err("%s: out of memory", path);
        atomic_free(a);
        return -ENOMEM;
    }
    /* O_NOFOLLOW: a link planted at the temporary name would redirect the write */
    int fd = open(a->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd < 0) {
        int e = errno;
        vka_err("%s: cannot create the temporary file %s: %s", path, a->tmp, strerror(e));
        atomic_free(a);
        return -e;
    }
    a->fp = fdopen(fd, "wb");
    if (!a->fp) {
        int e = errno;
        vka_err("%s: cannot open the temporary file %s as a stream: %s", path, a->tmp,
                strerror(e));
        close(fd);
        vka_atomic_abort(a);
        return -e;
    }
    return 0;
}

void vka_atomic_abort(struct vka_atomic *a)
{
    if (!a)
        return;
    if (a->fp)
        fclose(a->fp);
    if (a->tmp)
        unlink(a->tmp);
    atomic_free(a);
}

/* Flushes, fsyncs and closes the temporary file; a->fp is NULL afterwards. */
static int finish_temp(struct vka_atomic *a, int write_errno)
{
    const char *step = "writing";
    int ret = 0;
    if (fflush(a->fp) != 0)
        ret = -errno;
    else if (ferror(a->fp))
        ret = -(write_errno ? write_errno : EIO);
    else if (fsync(fileno(a->fp)) != 0)
        ret = -errno, step = "the fsync of";
    int c = fclose(a->fp);
    a->fp = NULL;
    if (!ret && c != 0)
        ret = -errno, step = "closing";
    if (ret)
        vka_err("%s: %s the temporary file %s failed: %s", a->path, step, a->tmp,
                strerror(-ret));
    return ret;
}

int vka_atomic_commit(struct vka_atomic *a)
{
    int write_errno = errno; /* what the caller's last (failed) write left */
    if (!a || !a->fp) {
        vka_err("vka_atomic_commit: no file is open");
        vka_atomic_abort(a);
        return -EINVAL;
    }
    int ret = finish_temp(a, write_errno);
    if (!ret && rename(a->tmp, a->path) != 0) {
        ret = -errno;
        vka_err("%s: cannot rename the temporary file %s onto it: %s", a->path, a->tmp,
                strerror(errno));
    }
    if (ret) {
        vka_atomic_abort(a);
        return ret;
    }
    char *dir = dir_of(a->path);
    if (!dir) {
        vka_err("%s: written, but out of memory before the fsync of its folder", a->path);
        atomic_free(a);
        return -ENOMEM;
    }
    ret = sync_dir(dir);
    if (ret < 0) {
        vka_err("%s: written, but the fsync of its folder %s failed: %s", a->path, dir,
                strerror(-ret));
    } else {
        const char *base = strrchr(a->path, '/');
        remove_stale_temps(dir, base ? base + 1 : a->path);
    }
    free(dir);
    atomic_free(a);
    return ret;
}

int vka_write_atomic(const char *path, const void *data, size_t len)
{
    struct vka_atomic a;
    int ret = vka_atomic_open(path, &a);
    if (ret < 0)
        return ret;
    errno = 0;
    if (len)
        fwrite(data, 1, len, a.fp); /* a short write leaves fp's error state: commit reports */
    return vka_atomic_commit(&a);
}
