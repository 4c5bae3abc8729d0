/* src/file.c and its readers: regular files only (a FIFO, a folder or a device is refused
 * at once, never blocked on: each such test has a deadline and checks the time taken),
 * whole-file reads under a cap, atomic replacement and its failure paths; the dataset
 * readers (images, masks, palettes, IDX files, a dataset folder holding a FIFO) and the
 * pipeline cache on a FIFO; the IDX reader's size checks before it allocates. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "common.h"
#include "datasets/dataset.h"
#include "file.h"
#include "vk/vk.h"

/* ---- helpers ---- */

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    cr_assert_not_null(fp, "%s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(data, 1, n, fp), n);
    cr_assert_eq(fclose(fp), 0);
}

static char *read_file(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "%s: %s", path, strerror(errno));
    char *b = malloc(1 << 20);
    *n = fread(b, 1, 1 << 20, fp);
    fclose(fp);
    return b;
}

static void fifo(const char *path)
{
    cr_assert_eq(mkfifo(path, 0600), 0, "mkfifo %s: %s", path, strerror(errno));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void assert_says(const char *msg, const char *path, const char *phrase)
{
    cr_assert(strstr(msg, path), "the message does not name %s: %s", path, msg);
    cr_assert(strstr(msg, phrase), "the message does not say \"%s\": %s", phrase, msg);
}

/* The tests that open FIFOs run under alarm(): a reader that blocks dies of SIGALRM, a
 * failure, instead of hanging the suite. (Criterion's .timeout would do, but its runner
 * then leaks a few bytes now and then, which fails the run under LeakSanitizer.) */
static void deadline(unsigned seconds)
{
    alarm(seconds);
}

/* The refusal was at once: a reader that blocked on the FIFO would hit the test's deadline
 * instead, one that waited on something else the second allowed here. */
static void assert_quick(double t0, const char *what)
{
    double dt = now_s() - t0;
    cr_assert_lt(dt, 1.0, "%s took %.2f s", what, dt);
}

/* A 2x2 24-bit BMP. */
static void write_bmp(const char *path)
{
    uint8_t b[70] = { 'B', 'M', 70, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0, 40, 0, 0, 0, 2, 0, 0, 0,
                      2, 0, 0, 0, 1, 0, 24, 0 };
    for (int i = 54; i < 70; i++)
        b[i] = (uint8_t)(i * 13);
    write_file(path, b, sizeof(b));
}

/* A .gz (or plain, gz false) IDX file of unsigned bytes with dims and n data bytes. */
static void write_idx(const char *path, bool gz, uint32_t ndim, const uint32_t *dims,
                      size_t n)
{
    uint8_t head[20] = { 0, 0, 8, (uint8_t)ndim };
    for (uint32_t i = 0; i < ndim; i++)
        for (int k = 0; k < 4; k++)
            head[4 + 4 * i + k] = (uint8_t)(dims[i] >> (24 - 8 * k));
    uint8_t *data = calloc(n ? n : 1, 1);
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i * 7);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        cr_assert(f);
        cr_assert_eq(gzwrite(f, head, 4 + 4 * ndim), (int)(4 + 4 * ndim));
        if (n)
            cr_assert_eq(gzwrite(f, data, (unsigned)n), (int)n);
        cr_assert_eq(gzclose(f), Z_OK);
    } else {
        FILE *fp = fopen(path, "wb");
        cr_assert(fp);
        fwrite(head, 1, 4 + 4 * ndim, fp);
        fwrite(data, 1, n, fp);
        fclose(fp);
    }
    free(data);
}

/* ---- opening for reading ---- */

Test(file, open_regular_refuses_what_is_not_a_file)
{
    deadline(10);
    char *dir = test_tmpdir("vka_file");
    const char *pipe = test_path("%s/pipe", dir), *reg = test_path("%s/reg", dir), *none = test_path("%s/none", dir);
    fifo(pipe);
    write_file(reg, "abc", 3);

    double t0 = now_s();
    vka_clear_error();
    cr_assert_eq(vka_open_regular(pipe), -EINVAL);
    assert_quick(t0, "opening a FIFO");
    assert_says(vka_last_error(), pipe, "not a regular file (a FIFO)");
    cr_assert_eq(vka_open_regular(dir), -EINVAL);
    assert_says(vka_last_error(), dir, "not a regular file (a folder)");
    cr_assert_eq(vka_open_regular("/dev/null"), -EINVAL);
    assert_says(vka_last_error(), "/dev/null", "not a regular file (a character device)");
    cr_assert_eq(vka_open_regular(none), -ENOENT);
    assert_says(vka_last_error(), none, "cannot open: No such file or directory");

    int fd = vka_open_regular(reg);
    cr_assert_geq(fd, 0, "%s", vka_last_error());
    cr_assert_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0, "O_NONBLOCK was left set");
    cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC, "the fd is not close-on-exec");
    char b[4];
    cr_assert_eq(read(fd, b, 4), 3);
    close(fd);

    /* the _msg variant writes its message and logs nothing */
    char msg[256] = "";
    vka_clear_error();
    cr_assert_eq(vka_open_regular_msg(pipe, msg, sizeof(msg)), -EINVAL);
    assert_says(msg, pipe, "(a FIFO)");
    cr_assert_str_eq(vka_last_error(), "");

    errno = 0;
    cr_assert_null(vka_fopen_regular(pipe));
    cr_assert_eq(errno, EINVAL);
    FILE *fp = vka_fopen_regular(reg);
    cr_assert_not_null(fp, "%s", vka_last_error());
    cr_assert_eq(fread(b, 1, 4, fp), 3);
    fclose(fp);
    test_tmpdir_remove(&dir);
}

Test(file, read_whole_reads_under_a_cap)
{
    deadline(10);
    char *dir = test_tmpdir("vka_file");
    const char *reg = test_path("%s/reg", dir), *empty = test_path("%s/empty", dir), *pipe = test_path("%s/p", dir);
    write_file(reg, "hello", 5);
    write_file(empty, "", 0);
    fifo(pipe);
    char *data = (char *)1;
    size_t len = 99;
    cr_assert_eq(vka_read_whole(reg, 5, &data, &len), 0, "%s", vka_last_error());
    cr_assert_eq(len, 5);
    cr_assert_str_eq(data, "hello", "the data is NUL-terminated");
    free(data);
    cr_assert_eq(vka_read_whole(empty, 0, &data, &len), 0, "%s", vka_last_error());
    cr_assert(len == 0 && data && !data[0]);
    free(data);

    cr_assert_eq(vka_read_whole(reg, 4, &data, &len), -EFBIG);
    cr_assert(!data && !len);
    assert_says(vka_last_error(), reg, "5 bytes, more than the cap of 4 bytes");
    double t0 = now_s();
    cr_assert_eq(vka_read_whole(pipe, 100, &data, &len), -EINVAL);
    assert_quick(t0, "reading a FIFO");
    assert_says(vka_last_error(), pipe, "(a FIFO)");
    char msg[256];
    vka_clear_error();
    cr_assert_eq(vka_read_whole_msg(test_path("%s/none", dir), 100, &data, &len, msg, sizeof(msg)),
                 -ENOENT);
    assert_says(msg, "/none", "cannot open");
    cr_assert_str_eq(vka_last_error(), "", "the _msg variant logged");
    test_tmpdir_remove(&dir);
}

/* ---- atomic replacement ---- */

static int count_temps(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "ls -a '%s' | grep -c '\\.tmp-' > '%s/.count'", dir, dir);
    if (system(cmd)) { /* grep -c exits 1 when it counts 0 */ }
    size_t n;
    char *b = read_file(test_path("%s/.count", dir), &n);
    int c = atoi(b);
    free(b);
    unlink(test_path("%s/.count", dir));
    return c;
}

static void assert_content(const char *path, const char *want)
{
    size_t n;
    char *b = read_file(path, &n);
    cr_assert(n == strlen(want) && !memcmp(b, want, n), "%s holds %zu bytes, not \"%s\"", path,
              n, want);
    free(b);
}

Test(file, atomic_write_replaces_and_names_its_temp)
{
    char *dir = test_tmpdir("vka_file");
    const char *path = test_path("%s/out.bin", dir);
    cr_assert_eq(vka_write_atomic(path, "first", 5), 0, "%s", vka_last_error());
    assert_content(path, "first");
    cr_assert_eq(vka_write_atomic(path, "second!", 7), 0, "%s", vka_last_error());
    assert_content(path, "second!");
    cr_assert_eq(count_temps(dir), 0);

    /* the temporary file: beside path, NAME.tmp-HOST-PID, gone after an abort */
    struct vka_atomic a;
    cr_assert_eq(vka_atomic_open(path, &a), 0, "%s", vka_last_error());
    char host[65] = "";
    gethostname(host, sizeof(host) - 1);
    char want[600];
    snprintf(want, sizeof(want), "%s.tmp-%s-%ld", path, host, (long)getpid());
    cr_assert_str_eq(a.tmp, want);
    cr_assert_str_eq(a.path, path);
    fputs("never", a.fp);
    cr_assert_eq(access(a.tmp, F_OK), 0);
    vka_atomic_abort(&a);
    cr_assert(!a.fp && !a.tmp && !a.path);
    assert_content(path, "second!");
    cr_assert_eq(count_temps(dir), 0, "abort left its temporary file");
    vka_atomic_abort(&a); /* a zeroed struct */

    cr_assert_eq(vka_atomic_open(path, &a), 0);
    fputs("third", a.fp);
    cr_assert_eq(vka_atomic_commit(&a), 0, "%s", vka_last_error());
    cr_assert(!a.fp && !a.tmp && !a.path);
    assert_content(path, "third");
    cr_assert_eq(vka_atomic_commit(&a), -EINVAL, "a commit with nothing open");
    test_tmpdir_remove(&dir);
}

Test(file, atomic_write_failures_keep_the_old_file)
{
    char *dir = test_tmpdir("vka_file");
    const char *path = test_path("%s/keep.bin", dir);
    cr_assert_eq(vka_write_atomic(path, "old", 3), 0);

    /* a write error midway (the file size limit: EFBIG) */
    size_t n = 2 << 20;
    char *big = calloc(n, 1);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim, low;
    getrlimit(RLIMIT_FSIZE, &lim);
    low = (struct rlimit){ .rlim_cur = 1 << 20, .rlim_max = lim.rlim_max };
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &low), 0);
    int ret = vka_write_atomic(path, big, n);
    setrlimit(RLIMIT_FSIZE, &lim);
    free(big);
    cr_assert_eq(ret, -EFBIG, "got %d: %s", ret, vka_last_error());
    assert_says(vka_last_error(), path, "writing the temporary file");
    assert_says(vka_last_error(), ".tmp-", "File too large");
    assert_content(path, "old");
    cr_assert_eq(count_temps(dir), 0);

    /* the rename fails onto a non-empty folder */
    const char *folder = test_path("%s/isdir", dir);
    cr_assert_eq(mkdir(folder, 0755), 0);
    write_file(test_path("%s/inner", folder), "x", 1);
    cr_assert_lt(vka_write_atomic(folder, "new", 3), 0);
    assert_says(vka_last_error(), folder, "cannot rename the temporary file");
    cr_assert_eq(count_temps(dir), 0);

    /* no folder to put the temporary file in */
    const char *lost = test_path("%s/no/such/file", dir);
    cr_assert_eq(vka_write_atomic(lost, "new", 3), -ENOENT);
    assert_says(vka_last_error(), lost, "cannot create the temporary file");
    cr_assert_eq(vka_write_atomic("", "x", 1), -EINVAL);
    test_tmpdir_remove(&dir);
}

/* ---- the dataset readers on a FIFO ---- */

Test(file, image_mask_palette_readers_refuse_fifo)
{
    deadline(10);
    char *dir = test_tmpdir("vka_file");
    const char *pipe = test_path("%s/x.png", dir);
    fifo(pipe);
    struct vka_image img;
    struct vka_image_info info;
    struct vka_palette *pal = NULL;
    for (int k = 0; k < 4; k++) {
        double t0 = now_s();
        vka_clear_error();
        int ret = k == 0 ? vka_image_read(pipe, 3, &img)
                  : k == 1 ? vka_image_probe(pipe, &info)
                  : k == 2 ? vka_mask_read(pipe, NULL, 255, &img)
                           : vka_palette_load(pipe, &pal);
        cr_assert_lt(ret, 0, "reader %d accepted a FIFO", k);
        assert_quick(t0, "an image reader on a FIFO");
        assert_says(vka_last_error(), pipe, "not a regular file (a FIFO)");
    }
    cr_assert_null(pal);
    test_tmpdir_remove(&dir);
}

/* A named pipe among a dataset's images: the open fails naming it, or drops it with
 * skip_bad. */
Test(file, dataset_folder_with_fifo)
{
    deadline(30);
    char *dir = test_tmpdir("vka_file");
    write_bmp(test_path("%s/a.bmp", dir));
    fifo(test_path("%s/b.png", dir));
    struct vka_image img;
    cr_assert_eq(vka_image_read(test_path("%s/a.bmp", dir), 3, &img), 0, "%s", vka_last_error());
    vka_image_free(&img);
    struct vka_dataset *ds = NULL;
    double t0 = now_s();
    vka_clear_error();
    cr_assert_lt(vka_dataset_open(&(struct vka_dataset_params){
                     .kind = VKA_DATA_IMAGES, .path = dir, .threads = 1 }, &ds), 0);
    assert_quick(t0, "opening a dataset folder holding a FIFO");
    assert_says(vka_last_error(), test_path("%s/b.png", dir), "(a FIFO)");
    cr_assert_null(ds);
    cr_assert_eq(vka_dataset_open(&(struct vka_dataset_params){
                     .kind = VKA_DATA_IMAGES, .path = dir, .threads = 1, .skip_bad = true },
                     &ds), 0, "%s", vka_last_error());
    cr_assert_eq(vka_dataset_count(ds), 1);
    vka_dataset_destroy(&ds);
    test_tmpdir_remove(&dir);
}

/* ---- IDX files ---- */

Test(file, idx_reader_refuses_fifo)
{
    deadline(10);
    char *dir = test_tmpdir("vka_file");
    const char *pipe = test_path("%s/x-idx3-ubyte.gz", dir);
    fifo(pipe);
    struct vka_idx idx;
    double t0 = now_s();
    vka_clear_error();
    cr_assert_eq(vka_idx_read(pipe, &idx), -EINVAL);
    assert_quick(t0, "the IDX reader on a FIFO");
    assert_says(vka_last_error(), pipe, "not a regular file (a FIFO)");
    cr_assert_null(idx.data);
    test_tmpdir_remove(&dir);
}

/* A small gzip whose header promises 2 GiB: refused at once, before any allocation,
 * naming the dims and the cap. */
Test(file, idx_refuses_dims_over_the_cap)
{
    deadline(10);
    char *dir = test_tmpdir("vka_file");
    const char *big = test_path("%s/big-idx3-ubyte.gz", dir);
    write_idx(big, true, 3, (uint32_t[]){ 2048, 1024, 1024 }, 1 << 20);
    struct vka_idx idx;
    double t0 = now_s();
    vka_clear_error();
    cr_assert_eq(vka_idx_read(big, &idx), -EFBIG, "%s", vka_last_error());
    assert_quick(t0, "refusing 2 GiB of IDX dims");
    assert_says(vka_last_error(), big, "2048 x 1024 x 1024");
    assert_says(vka_last_error(), "cap of 1073741824 bytes", "1 GiB");
    /* 4 dims whose product overflows 64 bits */
    write_idx(big, true, 4, (uint32_t[]){ 4294967295u, 4294967295u, 4294967295u, 3 }, 10);
    cr_assert_eq(vka_idx_read(big, &idx), -EFBIG, "%s", vka_last_error());
    assert_says(vka_last_error(), big, "cap of");
    test_tmpdir_remove(&dir);
}

/* Under the cap, dims that promise more than the file can hold fail before the
 * allocation too; data past the promised payload is refused. */
Test(file, idx_size_checks)
{
    deadline(10);
    char *dir = test_tmpdir("vka_file");
    const char *gz = test_path("%s/a.gz", dir), *plain = test_path("%s/a.idx", dir);
    struct vka_idx idx;
    write_idx(gz, true, 3, (uint32_t[]){ 512, 1024, 1024 }, 1000);
    double t0 = now_s();
    cr_assert_eq(vka_idx_read(gz, &idx), -EINVAL);
    assert_quick(t0, "refusing 512 MiB in a small gzip");
    assert_says(vka_last_error(), gz, "truncated: IDX dims 512 x 1024 x 1024 promise");
    assert_says(vka_last_error(), "more than this gzip file of", "can hold");
    write_idx(plain, false, 2, (uint32_t[]){ 10, 10 }, 99);
    cr_assert_eq(vka_idx_read(plain, &idx), -EINVAL);
    assert_says(vka_last_error(), plain, "uncompressed file of 111 bytes can hold");

    for (int gzip = 0; gzip < 2; gzip++) {
        const char *p = gzip ? gz : plain;
        write_idx(p, gzip, 3, (uint32_t[]){ 3, 4, 5 }, 60);
        cr_assert_eq(vka_idx_read(p, &idx), 0, "%s", vka_last_error());
        cr_assert(idx.ndim == 3 && idx.dims[2] == 5 && idx.data[59] == (uint8_t)(59 * 7));
        vka_idx_free(&idx);
        write_idx(p, gzip, 3, (uint32_t[]){ 3, 4, 5 }, 61);
        cr_assert_eq(vka_idx_read(p, &idx), -EINVAL);
        assert_says(vka_last_error(), p, "data continues past the 60 bytes");
        cr_assert_null(idx.data);
    }
    test_tmpdir_remove(&dir);
}

/* ---- the pipeline cache ---- */

/* A FIFO where the cache file goes: the context starts (the cache is ignored with a
 * warning), and closing it replaces the FIFO with a cache file. */
Test(file, pipeline_cache_on_fifo_is_ignored)
{
    deadline(120);
    char *dir = test_tmpdir("vka_file");
    struct vka_ctx *ctx = test_ctx_params(&(struct vka_ctx_params){
        .validation = 1, .cache_dir = dir });
    char path[4096];
    snprintf(path, sizeof(path), "%s", ctx->cache_path);
    struct vka_pipe *p;
    cr_assert_eq(vka_pipe_get(ctx, &(struct vka_pipe_params){
                     .shader = "scale", .nbind = 1, .bind = { VKA_BIND_OUT },
                     .push_size = 16 }, &p), 0, "%s", vka_last_error());
    test_ctx_done(&ctx);
    unlink(path);
    fifo(path);
    ctx = test_ctx_params(&(struct vka_ctx_params){ .validation = 1, .cache_dir = dir });
    cr_assert_eq(vka_pipe_get(ctx, &(struct vka_pipe_params){
                     .shader = "scale", .nbind = 1, .bind = { VKA_BIND_OUT },
                     .push_size = 16 }, &p), 0, "%s", vka_last_error());
    test_ctx_done(&ctx);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert(S_ISREG(st.st_mode), "the cache is still not a regular file");
    cr_assert_eq(count_temps(dir), 0);
    test_tmpdir_remove(&dir);
}
