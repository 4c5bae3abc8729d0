/* Opening files for reading and replacing files atomically, owned by src/file.c; every
 * reader and writer of vkaccum's files goes through it.
 *
 * Readers open with O_NONBLOCK and look at the file type before reading: a FIFO, a
 * folder or a device given as a dataset file, a checkpoint or a cache is refused at
 * once instead of blocking for good (a FIFO with no writer) or reading forever (a
 * device). Writers put the bytes in a temporary file beside the target, named
 * "NAME.tmp-HOST-PID", fsync it, rename it onto the target and fsync the folder, so that
 * a crash leaves the old file or the new one, never a mix. A successful commit removes
 * the temporary files of NAME left by dead writers of this host only: a pid says nothing
 * about a process on another host sharing the folder (NFS).
 *
 * Errors: a negative errno, with a message that names the file and says what is wrong,
 * with strerror where an OS call failed. The plain functions report through vka_err
 * (src/log.h); the *_msg variants write the message into msg instead (the datasets'
 * per-sample error buffers, the pipeline cache whose failures are only warnings). */
#ifndef VKA_FILE_H
#define VKA_FILE_H

#include <stddef.h>
#include <stdio.h>

/* Opens path for reading: O_RDONLY|O_NONBLOCK|O_CLOEXEC, fstat, refuses anything but a
 * regular file ("PATH: not a regular file (a FIFO)", "(a folder)", ...: -EINVAL), then
 * clears O_NONBLOCK. Returns the fd, or -errno after vka_err("PATH: cannot open: ..."). */
int vka_open_regular(const char *path);
/* The same, its message written into msg (size bytes) instead of logged. */
int vka_open_regular_msg(const char *path, char *msg, size_t size);

/* The same as a stdio stream ("rb"); NULL after vka_err, with errno set. */
FILE *vka_fopen_regular(const char *path);

/* Reads the whole regular file (at most max bytes, else -EFBIG naming the size and the
 * cap) into a malloc'd buffer with a NUL after the last byte; *len its length. -errno
 * after vka_err; *data NULL and *len 0 then. */
int vka_read_whole(const char *path, size_t max, char **data, size_t *len);
/* The same, its message written into msg (size bytes) instead of logged. */
int vka_read_whole_msg(const char *path, size_t max, char **data, size_t *len, char *msg,
                       size_t size);

/* Atomic replacement of path: a temporary file beside it, written, fflush+fsync'd,
 * renamed onto path, the folder fsync'd. Every failure is reported naming path (and the
 * temporary file) with strerror and leaves the old path intact and no temporary file
 * behind (only a failed fsync of the folder comes after the rename: path then holds the
 * new bytes, which a crash might still lose). */
struct vka_atomic {
    char *path, *tmp;
    FILE *fp;
};

/* a->fp to write to; on failure *a is zeroed. */
int vka_atomic_open(const char *path, struct vka_atomic *a);
/* Checks fp's error state, fsync, rename, folder fsync, removal of stale temporary files;
 * frees *a (zeroed) in every case. A write error found in fp's error state is reported
 * with the errno the failed write left, so call it right after the last write (or set
 * errno to the error a write returned). */
int vka_atomic_commit(struct vka_atomic *a);
/* Removes the temporary file; frees *a (zeroed); safe on a zeroed struct. */
void vka_atomic_abort(struct vka_atomic *a);
/* vka_atomic_open, one fwrite of len bytes, vka_atomic_commit. */
int vka_write_atomic(const char *path, const void *data, size_t len);

#endif
