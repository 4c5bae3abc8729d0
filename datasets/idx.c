/* IDX files (the MNIST layout) read through zlib's gz* API, the IDX image source for
 * GANs, and where Debian's dataset-fashion-mnist puts its files. The data size the header
 * promises is checked against a cap and against what the file can hold before anything
 * is allocated: a 2 MB gzip of zeros claiming 2 GiB must not make us allocate and fill
 * 2 GiB. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "datasets/internal.h"
#include "file.h"

/* The most data bytes (the product of the dims) an IDX file may promise: 1 GiB, 20 times
 * Fashion-MNIST's training images (47 MB), far below what would exhaust a host. */
#define VKA_IDX_MAX_DATA ((uint64_t)1 << 30)
/* deflate's best case is 258 bytes from 2 bits (1032:1); with a margin for a block's
 * first literal, a gzip file of S bytes (concatenated members included) inflates to at
 * most S * 1032 + 4096 */
#define GZIP_MAX_RATIO 1032
#define GZIP_MAX_EXTRA 4096

static const char *idx_type(uint8_t t)
{
    switch (t) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0b: return "short";
    case 0x0c: return "int";
    case 0x0d: return "float";
    case 0x0e: return "double";
    default: return NULL;
    }
}

/* zlib's message without the path it puts in front. */
static const char *gz_msg(gzFile f, const char *path, int *zerr)
{
    const char *msg = gzerror(f, zerr);
    size_t n = strlen(path);
    if (!strncmp(msg, path, n) && !strncmp(msg + n, ": ", 2))
        msg += n + 2;
    return msg;
}

/* Reads exactly n bytes; a short read names what was being read. */
static int gz_exact(gzFile f, const char *path, void *dst, size_t n, const char *what,
                    char *err)
{
    uint8_t *d = dst;
    size_t got = 0;
    while (got < n) {
        size_t chunk = n - got > (1u << 30) ? 1u << 30 : n - got;
        int r = gzread(f, d + got, (unsigned)chunk);
        if (r < 0) {
            int zerr;
            const char *msg = gz_msg(f, path, &zerr);
            vka_seterr(err, "%s: corrupt gzip data in the %s: %s", path, what, msg);
            return -EINVAL;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    if (got < n) {
        int zerr;
        const char *msg = gz_msg(f, path, &zerr);
        vka_seterr(err, "%s: truncated: the %s needs %zu bytes, only %zu could be read%s%s",
                   path, what, n, got, zerr ? " (" : "", zerr ? msg : "");
        if (zerr)
            strncat(err, ")", VKA_ERRLEN - strlen(err) - 1);
        return -EINVAL;
    }
    return 0;
}

/* "7 x 5 x 6" */
static void dims_str(const struct vka_idx *idx, uint32_t n, char *buf, size_t size)
{
    size_t k = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < n && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%s%u", i ? " x " : "", idx->dims[i]);
}

/* The data size the dims promise, refused when zero, over VKA_IDX_MAX_DATA or more than
 * a file of fsize bytes can hold (plain or gzip). */
static int check_size(const char *path, const struct vka_idx *idx, uint64_t fsize,
                      bool gzip, uint64_t *total, char *err)
{
    char ds[64];
    uint64_t n = 1;
    for (uint32_t i = 0; i < idx->ndim; i++) {
        n *= idx->dims[i]; /* 4 dims of < 2^32 can overflow: stop at the cap */
        if (n > VKA_IDX_MAX_DATA)
            break;
    }
    dims_str(idx, idx->ndim, ds, sizeof(ds));
    if (n == 0) {
        vka_seterr(err, "%s: IDX dims %s: a dimension is zero", path, ds);
        return -EINVAL;
    }
    if (n > VKA_IDX_MAX_DATA) {
        vka_seterr(err, "%s: IDX dims %s promise more than the cap of %llu bytes (1 GiB, "
                   "VKA_IDX_MAX_DATA) of data", path, ds, (unsigned long long)VKA_IDX_MAX_DATA);
        return -EFBIG;
    }
    uint64_t head = 4 + 4 * (uint64_t)idx->ndim;
    uint64_t room = fsize >= VKA_IDX_MAX_DATA ? VKA_IDX_MAX_DATA /* cannot overflow */
                    : gzip ? fsize * GZIP_MAX_RATIO + GZIP_MAX_EXTRA
                    : fsize > head ? fsize - head : 0;
    if (n > room) {
        vka_seterr(err, "%s: truncated: IDX dims %s promise %llu bytes of data, more than "
                   "this %s file of %llu bytes can hold", path, ds, (unsigned long long)n,
                   gzip ? "gzip" : "uncompressed", (unsigned long long)fsize);
        return -EINVAL;
    }
    *total = n;
    return 0;
}

/* Data past the promised payload means wrong dims or not an IDX file. */
static int check_end(gzFile f, const char *path, uint64_t total, char *err)
{
    uint8_t extra;
    int r = gzread(f, &extra, 1);
    if (r == 0)
        return 0;
    if (r < 0) {
        int zerr;
        vka_seterr(err, "%s: corrupt gzip data after the IDX data: %s", path,
                   gz_msg(f, path, &zerr));
        return -EINVAL;
    }
    vka_seterr(err, "%s: data continues past the %llu bytes the IDX dims promise (wrong dims, "
               "or not an IDX file)", path, (unsigned long long)total);
    return -EINVAL;
}

/* gzdopen on a descriptor from vka_open_regular_msg: a FIFO given as the file is
 * refused instead of blocking in gzopen. *fsize: the file's bytes. */
static int open_gz(const char *path, gzFile *out, uint64_t *fsize, char *err)
{
    int fd = vka_open_regular_msg(path, err, VKA_ERRLEN);
    if (fd < 0)
        return fd;
    struct stat st;
    int ret = 0;
    if (fstat(fd, &st) != 0) {
        ret = -errno;
        vka_seterr(err, "%s: cannot stat: %s", path, strerror(errno));
    } else if (!(*out = gzdopen(fd, "rb"))) {
        ret = -ENOMEM; /* gzdopen fails only to allocate */
        vka_seterr(err, "%s: cannot open: out of memory", path);
    }
    if (ret) {
        close(fd);
        return ret;
    }
    *fsize = (uint64_t)st.st_size;
    gzbuffer(*out, 1 << 17);
    return 0;
}

int vka_idx_read_err(const char *path, struct vka_idx *idx, char *err)
{
    *idx = (struct vka_idx){ 0 };
    uint64_t fsize = 0;
    gzFile f = NULL;
    int ret = open_gz(path, &f, &fsize, err);
    if (ret)
        return ret;
    uint8_t head[4], dims[16];
    ret = gz_exact(f, path, head, 4, "header", err);
    if (ret)
        goto done;
    ret = -EINVAL;
    if (head[0] || head[1] || !idx_type(head[2])) {
        vka_seterr(err, "%s: not an IDX file (magic number %02x %02x %02x %02x, expected "
                   "00 00 08 <dims>)", path, head[0], head[1], head[2], head[3]);
        goto done;
    }
    if (head[2] != 0x08) {
        vka_seterr(err, "%s: IDX data of type %s (0x%02x); only unsigned bytes (0x08) are "
                   "read", path, idx_type(head[2]), head[2]);
        goto done;
    }
    if (head[3] < 1 || head[3] > 4) {
        vka_seterr(err, "%s: IDX file with %u dimensions (1..4 are read)", path, head[3]);
        goto done;
    }
    idx->ndim = head[3];
    if ((ret = gz_exact(f, path, dims, 4 * idx->ndim, "header", err)))
        goto done;
    for (uint32_t i = 0; i < idx->ndim; i++) {
        const uint8_t *p = dims + 4 * i;
        idx->dims[i] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    }
    uint64_t total;
    if ((ret = check_size(path, idx, fsize, !gzdirect(f), &total, err)))
        goto done;
    idx->data = malloc(total);
    if (!idx->data) {
        ret = -ENOMEM;
        vka_seterr(err, "%s: out of memory for %llu bytes", path, (unsigned long long)total);
        goto done;
    }
    ret = gz_exact(f, path, idx->data, total, "data", err);
    if (!ret)
        ret = check_end(f, path, total, err);
done:
    gzclose(f);
    if (ret)
        vka_idx_free(idx);
    return ret;
}

int vka_idx_read(const char *path, struct vka_idx *idx)
{
    char err[VKA_ERRLEN];
    int ret = vka_idx_read_err(path, idx, err);
    if (ret)
        vka_err("%s", err);
    return ret;
}

void vka_idx_free(struct vka_idx *idx)
{
    if (!idx)
        return;
    free(idx->data);
    *idx = (struct vka_idx){ 0 };
}

int vka_fashion_path_err(const char *split, const char *what, char *buf, size_t size,
                         char *err)
{
    static const char *dirs[] = { VKA_FASHION_DIRS };
    char name[64];
    snprintf(name, sizeof(name), "%s-%s-idx%d-ubyte.gz", split, what,
             strcmp(what, "images") ? 1 : 3);
    const char *env = getenv("VKACCUM_FASHION_DIR");
    if (env && *env) {
        snprintf(buf, size, "%s/%s", env, name);
        return 0;
    }
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(buf, size, "%s/%s", dirs[i], name);
        if (!access(buf, R_OK))
            return 0;
    }
    snprintf(buf, size, "%s/%s", dirs[0], name);
    vka_seterr(err, "%s not found in %s, %s or %s: install dataset-fashion-mnist "
               "(tools/setup.sh) or set VKACCUM_FASHION_DIR", name, dirs[0], dirs[1], dirs[2]);
    return -ENOENT;
}

int vka_fashion_path(const char *split, const char *what, char *buf, size_t size)
{
    char err[VKA_ERRLEN];
    int ret = vka_fashion_path_err(split, what, buf, size, err);
    if (ret)
        vka_err("%s", err);
    return ret;
}

/* (N,H,W) grey or (N,H,W,C) with C 1 or 3. */
int vka_idx_open(struct vka_dataset *ds, const char *path, char *err)
{
    int ret = vka_idx_read_err(path, &ds->idx, err);
    if (ret)
        return ret;
    const struct vka_idx *x = &ds->idx;
    if (x->ndim < 3 || (x->ndim == 4 && x->dims[3] != 1 && x->dims[3] != 3)) {
        vka_seterr(err, "%s: IDX images must be (N, H, W) or (N, H, W, 1 or 3), not %u "
                   "dimensions%s", path, x->ndim, x->ndim == 1 ? " (a label file?)" : "");
        return -EINVAL;
    }
    ds->count = x->dims[0];
    ds->height = x->dims[1];
    ds->width = x->dims[2];
    ds->channels = x->ndim == 4 ? x->dims[3] : 1;
    return 0;
}

int vka_idx_open_labels(struct vka_dataset *ds, const char *path, char *err)
{
    int ret = vka_idx_read_err(path, &ds->labels, err);
    if (ret)
        return ret;
    const struct vka_idx *l = &ds->labels;
    if (l->ndim != 1) {
        vka_seterr(err, "%s: labels must be (N), one per image, not %u dimensions", path,
                   l->ndim);
        return -EINVAL;
    }
    if (l->dims[0] != ds->count) {
        vka_seterr(err, "%s: %u labels for %u images", path, l->dims[0], ds->count);
        return -EINVAL;
    }
    ds->has_labels = true;
    return 0;
}
