/* Checkpoint files (src/safetensors.c): round trips of every dtype, the cross-check with
 * tools/parity/st.py, one crafted file per rule of the format the reader enforces (names
 * with NUL or control characters among them), the data checksum, the tensor-set check,
 * the writer's refusals and error paths, the temporary files of dead writers, and atomic
 * replacement under SIGKILL. Everything is host side: no Vulkan device is opened. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <zlib.h>

#include "common.h"
#include "file.h"
#include "safetensors.h"

/* ---- helpers ---- */

static char *tmpdir_make(void)
{
    char *d = strdup("/tmp/vka_st_XXXXXX");
    cr_assert_not_null(mkdtemp(d), "mkdtemp: %s", strerror(errno));
    return d;
}

static void tmpdir_remove(char **dir)
{
    DIR *d = opendir(*dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
                unlinkat(dirfd(d), de->d_name, 0) != 0)
                unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
        closedir(d);
    }
    rmdir(*dir);
    free(*dir);
    *dir = NULL;
}

static char *path_in(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int count_temps(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    struct dirent *de;
    while ((de = readdir(d)))
        n += strstr(de->d_name, ".tmp-") != NULL;
    closedir(d);
    return n;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "%s: %s", path, strerror(errno));
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    cr_assert_eq(fread(b, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return b;
}

/* A file of an 8-byte length hlen, the header text and dlen data bytes. */
static void craft(const char *path, uint64_t hlen, const char *hdr, size_t hdr_bytes, size_t dlen)
{
    FILE *fp = fopen(path, "wb");
    cr_assert_not_null(fp);
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(hlen >> (8 * i));
    fwrite(len, 1, 8, fp);
    fwrite(hdr, 1, hdr_bytes, fp);
    for (size_t i = 0; i < dlen; i++)
        fputc((int)(i * 37 & 0xff), fp);
    cr_assert_eq(fclose(fp), 0);
}

static void assert_error_names(const char *path, const char *tensor, const char *phrase)
{
    const char *msg = vka_last_error();
    for (const char *p = msg; *p; p++)
        cr_assert((unsigned char)*p >= 0x20 && *p != 0x7f,
                  "the error holds the raw control byte 0x%02x: %s", (unsigned char)*p, msg);
    cr_assert(strstr(msg, path), "the error does not name the file %s: %s", path, msg);
    if (tensor) {
        char q[128];
        snprintf(q, sizeof(q), "'%s'", tensor);
        cr_assert(strstr(msg, q), "the error does not name tensor %s: %s", q, msg);
    }
    if (phrase)
        cr_assert(strstr(msg, phrase), "the error does not say \"%s\": %s", phrase, msg);
}

/* Reading path fails with err, returns nothing and names path, tensor (if any), phrase. */
static void expect_refused(const char *path, int err, const char *tensor, const char *phrase)
{
    struct vka_st_file *f = (void *)1;
    vka_clear_error();
    int ret = vka_st_read(path, &f);
    cr_assert_eq(ret, err, "got %d (%s)", ret, vka_last_error());
    cr_assert_null(f, "a refused file still returned something");
    assert_error_names(path, tensor, phrase);
}

/* A file with header hdr (its length as N) and dlen data bytes is refused. */
static void expect_bad(const char *hdr, size_t dlen, const char *tensor, const char *phrase)
{
    char *dir = tmpdir_make();
    char *path = path_in(dir, "bad.safetensors");
    craft(path, strlen(hdr), hdr, strlen(hdr), dlen);
    expect_refused(path, -EINVAL, tensor, phrase);
    free(path);
    tmpdir_remove(&dir);
}

static struct vka_st_tensor tensor(const char *name, enum vka_st_dtype dt, uint32_t ndim,
                                   const uint64_t *shape, const void *data)
{
    struct vka_st_tensor t = { .name = name, .dtype = dt, .ndim = ndim, .data = data };
    for (uint32_t i = 0; i < ndim && i < VKA_ST_MAX_DIMS; i++)
        t.shape[i] = shape[i];
    return t;
}

static uint64_t nbytes_of(const struct vka_st_tensor *t)
{
    uint64_t n;
    cr_assert_eq(vka_st_nbytes(t, &n), 0);
    return n;
}

static void write_ok(const char *path, const struct vka_st_tensor *t, size_t n,
                     const struct vka_st_meta *m, size_t nm)
{
    int ret = vka_st_write(path, &(struct vka_st_write_params){
        .tensors = t, .n_tensors = n, .meta = m, .n_meta = nm });
    cr_assert_eq(ret, 0, "vka_st_write: %s", vka_last_error());
}

static struct vka_st_file *read_ok(const char *path)
{
    struct vka_st_file *f = NULL;
    int ret = vka_st_read(path, &f);
    cr_assert_eq(ret, 0, "vka_st_read: %s", vka_last_error());
    cr_assert_not_null(f);
    return f;
}

/* ---- the value pattern shared with st.py: v_i = (i % 7) - 3, unsigned i % 7, BOOL i % 2,
 * shapes[d % 6] for the dtype d (st.py's DTYPES follow the enum's order) ---- */

static const uint64_t pattern_shapes[6][4] = { { 2, 3, 5 }, { 0 }, { 0 }, { 7 }, { 3, 0, 2 },
                                               { 4, 1, 3, 2 } };
static const uint32_t pattern_ndim[6] = { 3, 0, 1, 1, 3, 4 };

static double pattern_value(enum vka_st_dtype d, uint64_t i)
{
    if (d == VKA_ST_BOOL)
        return (double)(i % 2);
    return vka_st_dtype_name(d)[0] == 'U' ? (double)(i % 7) : (double)(i % 7) - 3.0;
}

static uint16_t half_of(float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    if (!(u & 0x7fffffff))
        return (uint16_t)(u >> 16);
    /* exact for the small integers of the pattern (normal halves, no rounding) */
    return (uint16_t)((u >> 16 & 0x8000) | ((((u >> 23) & 0xff) - 112) << 10) |
                      ((u >> 13) & 0x3ff));
}

static void encode(enum vka_st_dtype d, void *dst, uint64_t i, double v)
{
    unsigned char *p = (unsigned char *)dst + i * vka_st_dtype_size(d);
    float f = (float)v;
    uint32_t fb;
    memcpy(&fb, &f, 4);
    switch (d) {
    case VKA_ST_BOOL: case VKA_ST_U8: *p = (uint8_t)v; break;
    case VKA_ST_I8: *(int8_t *)p = (int8_t)v; break;
    case VKA_ST_I16: *(int16_t *)p = (int16_t)v; break;
    case VKA_ST_U16: *(uint16_t *)p = (uint16_t)v; break;
    case VKA_ST_F16: *(uint16_t *)p = half_of(f); break;
    case VKA_ST_BF16: *(uint16_t *)p = (uint16_t)(fb >> 16); break;
    case VKA_ST_I32: *(int32_t *)p = (int32_t)v; break;
    case VKA_ST_U32: *(uint32_t *)p = (uint32_t)v; break;
    case VKA_ST_F32: *(float *)p = f; break;
    case VKA_ST_F64: *(double *)p = v; break;
    case VKA_ST_I64: *(int64_t *)p = (int64_t)v; break;
    case VKA_ST_U64: *(uint64_t *)p = (uint64_t)v; break;
    default: cr_assert_fail("dtype %d", d);
    }
}

static void lower(char *dst, const char *src)
{
    while ((*dst++ = (char)(*src >= 'A' && *src <= 'Z' ? *src + 32 : *src)))
        src++;
}

static const struct vka_st_meta pattern_meta[] = {
    { "writer", "st.py" },
    { "note", "\xc3\xbcn\xc3\xaf" "code \xe2\x9c\x93" },
};

/* The pattern file, as st.py pattern writes it. Names and data are malloc'ed. */
static void pattern_tensors(struct vka_st_tensor *t)
{
    for (int d = 0; d < VKA_ST_DTYPE_COUNT; d++) {
        char *name = malloc(16);
        snprintf(name, 16, "p.");
        lower(name + 2, vka_st_dtype_name((enum vka_st_dtype)d));
        t[d] = tensor(name, (enum vka_st_dtype)d, pattern_ndim[d % 6], pattern_shapes[d % 6], NULL);
        uint64_t n;
        vka_st_numel(&t[d], &n);
        void *data = malloc(n * vka_st_dtype_size(t[d].dtype) + 1);
        for (uint64_t i = 0; i < n; i++)
            encode(t[d].dtype, data, i, pattern_value(t[d].dtype, i));
        t[d].data = data;
    }
}

static void pattern_free(struct vka_st_tensor *t)
{
    for (int d = 0; d < VKA_ST_DTYPE_COUNT; d++) {
        free((void *)t[d].name);
        free((void *)t[d].data);
    }
}

/* The order the writer stores tensors in: element size 8, 4, 2, 1, the given order
 * within a size. */
static void storage_order(const struct vka_st_tensor *t, size_t n, size_t *order)
{
    size_t k = 0;
    for (size_t size = 8; size; size /= 2)
        for (size_t i = 0; i < n; i++)
            if (vka_st_dtype_size(t[i].dtype) == size)
                order[k++] = i;
}

/* ---- round trips ---- */

Test(safetensors, dtype_table)
{
    static const char *names[] = { "BOOL", "U8", "I8", "I16", "U16", "F16", "BF16",
                                   "I32", "U32", "F32", "F64", "I64", "U64" };
    static const size_t sizes[] = { 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8 };
    for (int d = 0; d < VKA_ST_DTYPE_COUNT; d++) {
        enum vka_st_dtype back;
        cr_assert_str_eq(vka_st_dtype_name((enum vka_st_dtype)d), names[d]);
        cr_assert_eq(vka_st_dtype_size((enum vka_st_dtype)d), sizes[d], "%s", names[d]);
        cr_assert_eq(vka_st_dtype_parse(names[d], &back), 0);
        cr_assert_eq((int)back, d);
    }
    enum vka_st_dtype x;
    cr_assert_eq(vka_st_dtype_parse("F8_E4M3", &x), -EINVAL);
    cr_assert_eq(vka_st_dtype_parse("f32", &x), -EINVAL, "dtype names are case-sensitive");
    cr_assert_null(vka_st_dtype_name(VKA_ST_DTYPE_COUNT));
    char buf[64];
    struct vka_st_tensor t = tensor("x", VKA_ST_F32, 4, (uint64_t[]){ 64, 3, 3, 3 }, NULL);
    cr_assert_str_eq(vka_st_shape_str(&t, buf, sizeof(buf)), "[64, 3, 3, 3]");
    t.ndim = 0;
    cr_assert_str_eq(vka_st_shape_str(&t, buf, sizeof(buf)), "[]");
}

Test(safetensors, round_trip_every_dtype)
{
    test_seed("safetensors.round_trip_every_dtype");
    static const uint64_t shapes[][VKA_ST_MAX_DIMS] = {
        { 0 }, { 0 }, { 3, 0, 2 }, { 5 }, { 2, 3, 4 }, { 1, 2, 1, 1, 2, 1, 1, 3 },
    };
    static const uint32_t ndims[] = { 0, 1, 3, 1, 3, 8 };
    enum { NS = 6, NT = VKA_ST_DTYPE_COUNT * NS + 2 };
    struct vka_st_tensor t[NT];
    char names[NT][48];
    size_t n = 0;
    for (int d = 0; d < VKA_ST_DTYPE_COUNT; d++)
        for (int s = 0; s < NS; s++, n++) {
            snprintf(names[n], sizeof(names[n]), "%s.shape%d", vka_st_dtype_name((enum vka_st_dtype)d), s);
            t[n] = tensor(names[n], (enum vka_st_dtype)d, ndims[s], shapes[s], NULL);
        }
    /* names that JSON must escape, and UTF-8 */
    snprintf(names[n], sizeof(names[n]), "a \"quoted\"\\name /x");
    t[n] = tensor(names[n], VKA_ST_F32, 1, (uint64_t[]){ 3 }, NULL), n++;
    snprintf(names[n], sizeof(names[n]), "gro\xc3\x9f.weight");
    t[n] = tensor(names[n], VKA_ST_U8, 1, (uint64_t[]){ 9 }, NULL), n++;
    for (size_t i = 0; i < n; i++) {
        uint64_t nb = nbytes_of(&t[i]);
        unsigned char *p = malloc(nb + 1);
        for (uint64_t k = 0; k < nb; k++)
            p[k] = (unsigned char)test_rand_u64();
        t[i].data = p;
    }
    const struct vka_st_meta meta[] = {
        { "format", "pt" }, { "quote\"key", "line\nbreak\t\\ \"q\"" }, { "empty", "" },
        { "unicode", "\xe2\x88\x87 \xf0\x9f\x98\x80" },
    };
    char *dir = tmpdir_make();
    char *path = path_in(dir, "rt.safetensors");
    write_ok(path, t, n, meta, 4);
    cr_assert_eq(count_temps(dir), 0, "a temporary file is left after a successful write");

    struct vka_st_file *f = read_ok(path);
    cr_assert_eq(f->n_tensors, n);
    cr_assert(f->checksummed, "the data checksum was not written or not checked");
    cr_assert_eq(f->header_len % 8, 0, "the header is padded to a multiple of 8");
    size_t flen;
    free(slurp(path, &flen));
    cr_assert_eq(flen, 8 + f->header_len + f->data_len);
    size_t order[NT];
    storage_order(t, n, order);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const struct vka_st_tensor *e = &t[order[i]], *g = &f->tensors[i];
        cr_assert_str_eq(g->name, e->name, "file order: tensor %zu", i);
        cr_assert_eq(vka_st_find(f, e->name), g, "lookup of '%s'", e->name);
        cr_assert_eq(g->dtype, e->dtype, "%s", e->name);
        cr_assert_eq(g->ndim, e->ndim, "%s", e->name);
        for (uint32_t k = 0; k < e->ndim; k++)
            cr_assert_eq(g->shape[k], e->shape[k], "%s dim %u", e->name, k);
        cr_assert_not_null(g->data, "%s", e->name);
        cr_assert_eq((uintptr_t)g->data % vka_st_dtype_size(g->dtype), 0,
                     "%s: data not aligned to its element size", e->name);
        uint64_t nb = nbytes_of(e);
        cr_assert_eq(memcmp(g->data, e->data, nb), 0, "%s: the bytes differ", e->name);
        total += nb;
    }
    cr_assert_eq(f->data_len, total);
    cr_assert_eq(f->n_meta, 4);
    for (size_t i = 0; i < 4; i++) {
        cr_assert_str_eq(f->meta[i].key, meta[i].key, "metadata keeps its order");
        cr_assert_str_eq(vka_st_meta_get(f, meta[i].key), meta[i].value);
    }
    cr_assert_null(vka_st_find(f, "nope"));
    cr_assert_null(vka_st_meta_get(f, "nope"));
    cr_assert_eq(vka_st_check(f, t, n), 0, "%s", vka_last_error());
    vka_st_file_destroy(&f);
    cr_assert_null(f);
    vka_st_file_destroy(&f);

    /* rewriting replaces the file */
    write_ok(path, t + NS, 1, NULL, 0);
    f = read_ok(path);
    cr_assert_eq(f->n_tensors, 1);
    cr_assert_eq(f->n_meta, 0);
    cr_assert_str_eq(f->tensors[0].name, t[NS].name);
    vka_st_file_destroy(&f);
    for (size_t i = 0; i < n; i++)
        free((void *)t[i].data);
    free(path);
    tmpdir_remove(&dir);
}

Test(safetensors, empty_file_round_trip)
{
    char *dir = tmpdir_make();
    char *path = path_in(dir, "empty.safetensors");
    write_ok(path, NULL, 0, NULL, 0);
    size_t len;
    unsigned char *b = slurp(path, &len);
    /* 8 bytes of length, the header with the checksum of no data, padded to 8 */
    static const char want[] = "\x30\0\0\0\0\0\0\0"
                               "{\"__metadata__\":{\"" VKA_ST_CRC_KEY "\":\"00000000\"}}   ";
    cr_assert_eq(len, sizeof(want) - 1);
    cr_assert_eq(memcmp(b, want, len), 0, "%.*s", (int)len - 8, b + 8);
    free(b);
    struct vka_st_file *f = read_ok(path);
    cr_assert_eq(f->n_tensors, 0);
    cr_assert_eq(f->n_meta, 0);
    cr_assert(f->checksummed);
    cr_assert_null(vka_st_find(f, "x"));
    cr_assert_eq(vka_st_check(f, NULL, 0), 0);
    vka_st_file_destroy(&f);
    free(path);
    tmpdir_remove(&dir);
}

/* Other writers may leave a tensor unaligned (a U8 [3] before an F32): it is copied to an
 * aligned place. */
Test(safetensors, unaligned_foreign_file_is_realigned)
{
    char *dir = tmpdir_make();
    char *path = path_in(dir, "unaligned.safetensors");
    const char *hdr = "{\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[3,11]}}";
    craft(path, strlen(hdr), hdr, strlen(hdr), 11);
    unsigned char bytes[11];
    for (int i = 0; i < 11; i++)
        bytes[i] = (unsigned char)(i * 37);
    struct vka_st_file *f = read_ok(path);
    cr_assert_str_eq(f->tensors[0].name, "b", "file order follows the offsets");
    const struct vka_st_tensor *a = vka_st_find(f, "a");
    cr_assert_eq((uintptr_t)a->data % 4, 0);
    cr_assert_eq(memcmp(a->data, bytes + 3, 8), 0);
    cr_assert_eq(memcmp(vka_st_find(f, "b")->data, bytes, 3), 0);
    vka_st_file_destroy(&f);
    free(path);
    tmpdir_remove(&dir);
}

/* ---- the cross-check with tools/parity/st.py ---- */

/* tools/parity/st.py, found from this file's path as compiled (relative to the build
 * root, the folder above this executable's, unless absolute) or VKACCUM_SOURCE_ROOT. */
static char *st_py(void)
{
    char src[2 * PATH_MAX], buf[2 * PATH_MAX + 64];
    const char *root = getenv("VKACCUM_SOURCE_ROOT");
    if (root) {
        snprintf(buf, sizeof(buf), "%s/tools/parity/st.py", root);
    } else {
        if (__FILE__[0] == '/') {
            snprintf(src, sizeof(src), "%s", __FILE__);
        } else {
            char exe[PATH_MAX];
            ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
            cr_assert_gt(n, 0);
            exe[n] = '\0';
            for (int up = 0; up < 2; up++)
                *strrchr(exe, '/') = '\0';
            snprintf(src, sizeof(src), "%s/%s", exe, __FILE__);
        }
        *strrchr(src, '/') = '\0';
        snprintf(buf, sizeof(buf), "%s/../tools/parity/st.py", src);
    }
    cr_assert_eq(access(buf, R_OK), 0, "cannot find st.py at %s (set VKACCUM_SOURCE_ROOT)", buf);
    return strdup(buf);
}

static char *run_capture(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "popen %s", cmd);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    size_t got;
    while ((got = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (cap - len < 2)
            out = realloc(out, cap *= 2);
    }
    out[len] = '\0';
    int status = pclose(p);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "`%s` failed: %s", cmd, out);
    return out;
}

/* The header of the file bytes b (its padding cut) and where its data starts. */
static char *header_text(const unsigned char *b, size_t len, size_t *data_at)
{
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--)
        h = h << 8 | b[i];
    cr_assert_leq(8 + h, len);
    char *s = strndup((const char *)b + 8, (size_t)h);
    size_t n = strlen(s);
    while (n && s[n - 1] == ' ')
        s[--n] = '\0';
    *data_at = 8 + (size_t)h;
    return s;
}

/* Needs /usr/bin/python3 with numpy: tools/setup.sh installs python3-numpy (CI runs it). */
Test(safetensors, python_cross_check)
{
    char cmd[4 * PATH_MAX];
    snprintf(cmd, sizeof(cmd), "%s -c 'import numpy' 2>/dev/null", test_python());
    cr_assert_eq(system(cmd), 0,
                 "%s with numpy is needed for this cross-check: run tools/setup.sh (it installs "
                 "python3-numpy) or set VKACCUM_PYTHON", test_python());
    char *st = st_py(), *dir = tmpdir_make();
    char *c_file = path_in(dir, "c.safetensors"), *py_file = path_in(dir, "py.safetensors");
    char *copy = path_in(dir, "copy.safetensors");
    struct vka_st_tensor t[VKA_ST_DTYPE_COUNT];
    pattern_tensors(t);
    write_ok(c_file, t, VKA_ST_DTYPE_COUNT, pattern_meta, 2);

    /* C -> Python: st.py reads the values; sums are of small integers, exact in double */
    snprintf(cmd, sizeof(cmd), "%s %s dump %s", test_python(), st, c_file);
    char *out = run_capture(cmd);
    cJSON *js = cJSON_Parse(out);
    cr_assert_not_null(js, "st.py dump printed no JSON: %s", out);
    cJSON *tl = cJSON_GetObjectItem(js, "tensors"), *md = cJSON_GetObjectItem(js, "metadata");
    cr_assert_eq(cJSON_GetArraySize(tl), VKA_ST_DTYPE_COUNT);
    cr_assert_str_eq(cJSON_GetObjectItem(md, "note")->valuestring, pattern_meta[1].value);
    cr_assert(cJSON_IsString(cJSON_GetObjectItem(md, VKA_ST_CRC_KEY)),
              "Python does not see the checksum as string metadata");
    size_t order[VKA_ST_DTYPE_COUNT];
    storage_order(t, VKA_ST_DTYPE_COUNT, order);
    for (int i = 0; i < VKA_ST_DTYPE_COUNT; i++) {
        const struct vka_st_tensor *e = &t[order[i]];
        cJSON *it = cJSON_GetArrayItem(tl, i);
        cr_assert_str_eq(cJSON_GetObjectItem(it, "name")->valuestring, e->name, "order %d", i);
        cr_assert_str_eq(cJSON_GetObjectItem(it, "dtype")->valuestring,
                         vka_st_dtype_name(e->dtype));
        cJSON *sh = cJSON_GetObjectItem(it, "shape");
        cr_assert_eq((uint32_t)cJSON_GetArraySize(sh), e->ndim, "%s rank", e->name);
        for (uint32_t k = 0; k < e->ndim; k++)
            cr_assert_eq((uint64_t)cJSON_GetArrayItem(sh, (int)k)->valuedouble, e->shape[k]);
        uint64_t n;
        vka_st_numel(e, &n);
        double sum = 0, wsum = 0;
        for (uint64_t k = 0; k < n; k++) {
            sum += pattern_value(e->dtype, k);
            wsum += pattern_value(e->dtype, k) * (double)(k % 5 + 1);
        }
        cr_assert_eq(cJSON_GetObjectItem(it, "sum")->valuedouble, sum, "%s sum", e->name);
        cr_assert_eq(cJSON_GetObjectItem(it, "wsum")->valuedouble, wsum, "%s wsum", e->name);
    }
    cJSON_Delete(js);
    free(out);

    /* Python -> C: st.py's own file holds the pattern, byte for byte what C writes */
    snprintf(cmd, sizeof(cmd), "%s %s pattern %s", test_python(), st, py_file);
    free(run_capture(cmd));
    struct vka_st_file *f = read_ok(py_file);
    cr_assert_eq(vka_st_check(f, t, VKA_ST_DTYPE_COUNT), 0, "%s", vka_last_error());
    for (size_t i = 0; i < f->n_tensors; i++) {
        const struct vka_st_tensor *g = &f->tensors[i];
        cr_assert_str_eq(g->name, t[order[i]].name, "st.py's file order");
        cr_assert_eq(memcmp(g->data, t[order[i]].data, nbytes_of(g)), 0,
                     "%s: st.py's values differ from the pattern", g->name);
    }
    cr_assert_str_eq(vka_st_meta_get(f, "writer"), "st.py");
    cr_assert_str_eq(vka_st_meta_get(f, "note"), pattern_meta[1].value);
    cr_assert_not(f->checksummed, "st.py writes no checksum");
    vka_st_file_destroy(&f);
    size_t la, lb, da, db;
    unsigned char *a = slurp(c_file, &la), *b = slurp(py_file, &lb);
    char *ha = header_text(a, la, &da), *hb = header_text(b, lb, &db);
    /* the same bytes but for C's checksum entry, zlib's crc32 of the data */
    cr_assert(la - da == lb - db && !memcmp(a + da, b + db, la - da),
              "C and st.py write different data for the same tensors");
    char entry[64];
    snprintf(entry, sizeof(entry), ",\"" VKA_ST_CRC_KEY "\":\"%08lx\"",
             crc32(0L, a + da, (uInt)(la - da)));
    char *at = strstr(ha, entry);
    cr_assert_not_null(at, "the C header lacks %s: %s", entry, ha);
    memmove(at, at + strlen(entry), strlen(at + strlen(entry)) + 1);
    cr_assert_str_eq(ha, hb, "C and st.py write different headers (checksum aside)");
    free(ha);
    free(hb);
    free(b);

    /* Python reads and rewrites a C file unchanged */
    snprintf(cmd, sizeof(cmd), "%s %s copy %s %s", test_python(), st, c_file, copy);
    free(run_capture(cmd));
    b = slurp(copy, &lb);
    cr_assert(la == lb && !memcmp(a, b, la), "st.py copy changed the file");
    free(a);
    free(b);
    cr_assert_eq(count_temps(dir), 0);
    pattern_free(t);
    free(st);
    free(c_file);
    free(py_file);
    free(copy);
    tmpdir_remove(&dir);
}

/* ---- refused files: one rule each ---- */

#define ENTRY_A "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

Test(safetensors, refuses_file_shorter_than_length)
{
    char *dir = tmpdir_make();
    char *path = path_in(dir, "short.safetensors");
    FILE *fp = fopen(path, "wb");
    fwrite("\x02\0\0\0\0", 1, 5, fp);
    fclose(fp);
    expect_refused(path, -EINVAL, NULL, "fewer than the 8");
    free(path);
    tmpdir_remove(&dir);
}

Test(safetensors, refuses_header_length_past_end)
{
    char *dir = tmpdir_make();
    char *path = path_in(dir, "hl.safetensors");
    craft(path, 1000, "{}", 2, 0);
    expect_refused(path, -EINVAL, NULL, "runs past the end of the file");
    free(path);
    tmpdir_remove(&dir);
}

Test(safetensors, refuses_header_length_over_limit)
{
    char *dir = tmpdir_make();
    char *path = path_in(dir, "big.safetensors");
    craft(path, 100000001, "{}", 2, 0);
    expect_refused(path, -EINVAL, NULL, "exceeds the format's limit");
    free(path);
    tmpdir_remove(&dir);
}

/* Every proper prefix of a good file is refused, the last tensor named when the cut falls
 * in the data. */
Test(safetensors, refuses_every_truncation)
{
    char *dir = tmpdir_make();
    char *path = path_in(dir, "trunc.safetensors");
    float a[4] = { 1, 2, 3, 4 }, b[100] = { 0 };
    struct vka_st_tensor t[2] = {
        tensor("a", VKA_ST_F32, 1, (uint64_t[]){ 4 }, a),
        tensor("last", VKA_ST_F32, 2, (uint64_t[]){ 10, 10 }, b),
    };
    write_ok(path, t, 2, pattern_meta, 2);
    size_t len;
    free(slurp(path, &len));
    struct vka_st_file *f = read_ok(path);
    uint64_t data_start = 8 + f->header_len;
    vka_st_file_destroy(&f);
    for (size_t cut = len - 1; cut + 1 > 0; cut--) {
        cr_assert_eq(truncate(path, (off_t)cut), 0);
        expect_refused(path, -EINVAL, cut > data_start + 16 ? "last" : NULL, "truncated");
    }
    free(path);
    tmpdir_remove(&dir);
}

Test(safetensors, refuses_invalid_utf8)
{
    expect_bad("{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, NULL,
               "not valid UTF-8");
    /* an overlong '/' and a UTF-16 surrogate */
    expect_bad("{\"a\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
               NULL, "not valid UTF-8");
    expect_bad("{\"a\xed\xa0\x80\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
               NULL, "not valid UTF-8");
}

Test(safetensors, refuses_invalid_json)
{
    expect_bad("{\"a\":{\"dtype\":\"F32\",", 0, NULL, "not valid JSON");
    expect_bad("{\"a\":{\"dtype\":'F32'}}", 0, NULL, "not valid JSON");
}

Test(safetensors, refuses_header_not_an_object)
{
    expect_bad("[1, 2]  ", 0, NULL, "does not start with '{'");
    expect_bad(" {}     ", 0, NULL, "does not start with '{'");
}

Test(safetensors, refuses_text_after_the_object)
{
    expect_bad("{} xx   ", 0, NULL, "text after its JSON object");
}

Test(safetensors, refuses_control_bytes)
{
    expect_bad("{\"a\x01\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, NULL,
               "control byte 0x01");
}

Test(safetensors, refuses_unknown_dtype)
{
    expect_bad("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, "w",
               "unknown dtype \"F8_E4M3\"");
    expect_bad("{\"w\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "w",
               "unknown dtype");
}

Test(safetensors, refuses_entry_without_a_key)
{
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "w", "no \"data_offsets\"");
    expect_bad("{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "w", "no \"dtype\"");
    expect_bad("{\"w\":[1]}", 0, "w", "not a JSON object");
}

Test(safetensors, refuses_negative_or_fractional_shape)
{
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, "w",
               "shape entry 0 is not a non-negative integer");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,2.5],\"data_offsets\":[0,8]}}", 8, "w",
               "shape entry 1 is not a non-negative integer");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, "w",
               "shape entry 0 is not");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, "w",
               "\"shape\" is not an array");
}

Test(safetensors, refuses_rank_above_limit)
{
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
               4, "w", "rank 9 exceeds");
}

Test(safetensors, refuses_shape_overflow)
{
    /* 2^32 * 2^30 * 4 elements overflow 64 bits; 2^31 * 2^31 F32 overflow as bytes */
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,1073741824,4],"
               "\"data_offsets\":[0,0]}}", 0, "w", "overflows 64 bits");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],"
               "\"data_offsets\":[0,0]}}", 0, "w", "overflows 64 bits");
}

Test(safetensors, refuses_offsets_of_wrong_size)
{
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 12, "w",
               "hold 12 bytes, but F32 [2] needs 8");
}

Test(safetensors, refuses_reversed_offsets)
{
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "w",
               "end before they begin");
}

Test(safetensors, refuses_malformed_offsets)
{
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "w",
               "is not [begin, end]");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8, "w",
               "is not [begin, end]");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, "w",
               "is not [begin, end]");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[1e300,1e300]}}", 0,
               "w", "is not [begin, end]");
}

Test(safetensors, refuses_offsets_out_of_range)
{
    expect_bad("{" ENTRY_A "}", 4, "a", "run past the end of the data buffer (4 bytes)");
    expect_bad("{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[9,9]}}", 8, "w",
               "run past the end");
}

Test(safetensors, refuses_overlapping_tensors)
{
    expect_bad("{" ENTRY_A ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               12, "b", "overlap tensor 'a' [0, 8]");
    /* an empty tensor inside another one */
    expect_bad("{" ENTRY_A ",\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}", 8,
               "e", "overlap tensor 'a'");
}

Test(safetensors, refuses_gaps_between_tensors)
{
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, "b",
               "bytes [4, 8) of the data buffer before it belong to no tensor");
    expect_bad("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "b",
               "bytes [0, 4)");
}

Test(safetensors, refuses_trailing_bytes)
{
    expect_bad("{" ENTRY_A "}", 12, NULL, "holds 12 bytes, but the tensors cover only 8");
}

Test(safetensors, refuses_duplicate_tensor_names)
{
    expect_bad("{" ENTRY_A "," ENTRY_A "}", 8, "a", "appears twice");
}

Test(safetensors, refuses_duplicate_keys_in_an_entry)
{
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               8, "a", "key 'dtype' appears twice");
}

Test(safetensors, refuses_bad_metadata)
{
    expect_bad("{\"__metadata__\":\"x\"," ENTRY_A "}", 8, NULL, "\"__metadata__\" is not a JSON object");
    expect_bad("{\"__metadata__\":{\"epoch\":3}," ENTRY_A "}", 8, "epoch",
               "the value is not a string");
    expect_bad("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}," ENTRY_A "}", 8, "k",
               "appears twice");
    expect_bad("{\"__metadata__\":{},\"__metadata__\":{}," ENTRY_A "}", 8, "__metadata__",
               "appears twice");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A named pipe given as the checkpoint (--ckpt): refused at once. Before, fopen waited
 * for a writer for good: the alarm turns that into a failure. */
Test(safetensors, refuses_fifo_at_once)
{
    alarm(10);
    char *dir = tmpdir_make();
    char *path = path_in(dir, "pipe.safetensors");
    cr_assert_eq(mkfifo(path, 0600), 0, "%s", strerror(errno));
    double t0 = now_s();
    expect_refused(path, -EINVAL, NULL, "not a regular file (a FIFO)");
    cr_assert_lt(now_s() - t0, 1.0);
    free(path);
    tmpdir_remove(&dir);
}

/* cJSON ends a string at an escaped NUL: "w\u0000junk" would load as "w". */
Test(safetensors, refuses_nul_in_names_and_metadata)
{
    expect_bad("{\"w\\u0000junk\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               8, NULL, "string \"w\\u0000junk\" (byte 1) holds \\u0000");
    expect_bad("{\"__metadata__\":{\"k\\u0000x\":\"v\"}," ENTRY_A "}", 8, NULL, "holds \\u0000");
    expect_bad("{\"__metadata__\":{\"k\":\"a\\u0000b\"}," ENTRY_A "}", 8, NULL,
               "\"a\\u0000b\"");
    /* an escaped backslash then "u0000" is text, not a NUL */
    char *dir = tmpdir_make();
    char *path = path_in(dir, "text.safetensors");
    const char *hdr = "{\"w\\\\u0000\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    craft(path, strlen(hdr), hdr, strlen(hdr), 8);
    struct vka_st_file *f = read_ok(path);
    cr_assert_not_null(vka_st_find(f, "w\\u0000"));
    vka_st_file_destroy(&f);
    free(path);
    tmpdir_remove(&dir);
}

/* Control characters in a name would reach the terminal in every message naming it. */
Test(safetensors, refuses_control_characters_in_names)
{
    expect_bad("{\"w\\u001b[2J\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               8, "w\\x1b[2J", "the name holds the control character 0x1b (byte 1)");
    expect_bad("{\"w\\n\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
               "w\\x0a", "control character 0x0a");
    expect_bad("{\"del\\u007f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               8, "del\\x7f", "control character 0x7f");
    expect_bad("{\"__metadata__\":{\"k\\u0007\":\"v\"}," ENTRY_A "}", 8, "k\\x07",
               "metadata key 'k\\x07'");
}

Test(safetensors, refuses_missing_file_and_folder)
{
    char *dir = tmpdir_make();
    char *path = path_in(dir, "none.safetensors");
    expect_refused(path, -ENOENT, NULL, "cannot open");
    expect_refused(dir, -EINVAL, NULL, "not a regular file (a folder)");
    free(path);
    tmpdir_remove(&dir);
}

/* ---- the tensor-set check ---- */

static struct vka_st_file *check_file(char **dir)
{
    static float w[12], b[4];
    static int64_t step = 7;
    struct vka_st_tensor t[3] = {
        tensor("conv.weight", VKA_ST_F32, 4, (uint64_t[]){ 4, 3, 1, 1 }, w),
        tensor("conv.bias", VKA_ST_F32, 1, (uint64_t[]){ 4 }, b),
        tensor("step", VKA_ST_I64, 0, NULL, &step),
    };
    *dir = tmpdir_make();
    char *path = path_in(*dir, "check.safetensors");
    write_ok(path, t, 3, NULL, 0);
    struct vka_st_file *f = read_ok(path);
    free(path);
    return f;
}

Test(safetensors, check_accepts_the_exact_set)
{
    char *dir;
    struct vka_st_file *f = check_file(&dir);
    struct vka_st_tensor e[3] = {
        tensor("step", VKA_ST_I64, 0, NULL, NULL),
        tensor("conv.bias", VKA_ST_F32, 1, (uint64_t[]){ 4 }, NULL),
        tensor("conv.weight", VKA_ST_F32, 4, (uint64_t[]){ 4, 3, 1, 1 }, NULL),
    };
    cr_assert_eq(vka_st_check(f, e, 3), 0, "%s", vka_last_error());
    cr_assert_eq(*(const int64_t *)vka_st_find(f, "step")->data, 7);
    vka_st_file_destroy(&f);
    tmpdir_remove(&dir);
}

Test(safetensors, check_reports_missing_tensor)
{
    char *dir;
    struct vka_st_file *f = check_file(&dir);
    struct vka_st_tensor e[4] = {
        tensor("conv.weight", VKA_ST_F32, 4, (uint64_t[]){ 4, 3, 1, 1 }, NULL),
        tensor("norm.weight", VKA_ST_F32, 1, (uint64_t[]){ 4 }, NULL),
        tensor("conv.bias", VKA_ST_F32, 1, (uint64_t[]){ 4 }, NULL),
        tensor("step", VKA_ST_I64, 0, NULL, NULL),
    };
    cr_assert_eq(vka_st_check(f, e, 4), -EINVAL);
    assert_error_names(f->path, "norm.weight", "'norm.weight' (F32 [4]) is missing");
    vka_st_file_destroy(&f);
    tmpdir_remove(&dir);
}

Test(safetensors, check_reports_extra_tensor)
{
    char *dir;
    struct vka_st_file *f = check_file(&dir);
    struct vka_st_tensor e[1] = {
        tensor("conv.weight", VKA_ST_F32, 4, (uint64_t[]){ 4, 3, 1, 1 }, NULL),
    };
    cr_assert_eq(vka_st_check(f, e, 1), -EINVAL);
    /* both extras are named in file order, where the I64 (8-byte elements) comes first */
    assert_error_names(f->path, "step", "unexpected tensor 'step' (I64 [])");
    vka_st_file_destroy(&f);
    tmpdir_remove(&dir);
}

Test(safetensors, check_reports_misshapen_tensor)
{
    char *dir;
    struct vka_st_file *f = check_file(&dir);
    struct vka_st_tensor e[3] = {
        tensor("conv.weight", VKA_ST_F32, 2, (uint64_t[]){ 4, 3 }, NULL),
        tensor("conv.bias", VKA_ST_F32, 1, (uint64_t[]){ 5 }, NULL),
        tensor("step", VKA_ST_I64, 0, NULL, NULL),
    };
    cr_assert_eq(vka_st_check(f, e, 3), -EINVAL);
    assert_error_names(f->path, "conv.weight",
                       "'conv.weight' is F32 [4, 3, 1, 1], expected F32 [4, 3]");
    e[0] = tensor("conv.weight", VKA_ST_F32, 4, (uint64_t[]){ 4, 3, 1, 1 }, NULL);
    cr_assert_eq(vka_st_check(f, e, 3), -EINVAL);
    assert_error_names(f->path, "conv.bias", "is F32 [4], expected F32 [5]");
    e[1] = tensor("conv.bias", VKA_ST_F16, 1, (uint64_t[]){ 4 }, NULL);
    cr_assert_eq(vka_st_check(f, e, 3), -EINVAL);
    assert_error_names(f->path, "conv.bias", "is F32 [4], expected F16 [4]");
    vka_st_file_destroy(&f);
    tmpdir_remove(&dir);
}

/* ---- the writer's refusals and error paths: the old file stays, no temporary file ---- */

static void assert_untouched(const char *dir, const char *path, const unsigned char *old,
                             size_t old_len)
{
    size_t len;
    unsigned char *b = slurp(path, &len);
    cr_assert(len == old_len && !memcmp(b, old, len), "%s changed after a failed write", path);
    free(b);
    cr_assert_eq(count_temps(dir), 0, "a failed write left its temporary file");
}

Test(safetensors, write_refuses_bad_input)
{
    char *dir = tmpdir_make();
    char *path = path_in(dir, "w.safetensors");
    float x[4] = { 0 };
    struct vka_st_tensor good = tensor("x", VKA_ST_F32, 1, (uint64_t[]){ 4 }, x);
    write_ok(path, &good, 1, NULL, 0);
    size_t old_len;
    unsigned char *old = slurp(path, &old_len);
    struct {
        struct vka_st_tensor t[2];
        size_t n;
        struct vka_st_meta m[2];
        size_t nm;
        const char *phrase;
    } cases[] = {
        { { good, good }, 2, { { 0 } }, 0, "tensor 'x' is given twice" },
        { { tensor("n", VKA_ST_F32, 1, (uint64_t[]){ 4 }, NULL) }, 1, { { 0 } }, 0,
          "tensor 'n': F32 [4] has no data" },
        { { tensor("__metadata__", VKA_ST_F32, 1, (uint64_t[]){ 4 }, x) }, 1, { { 0 } }, 0,
          "reserved for metadata" },
        { { tensor("bad\xff", VKA_ST_F32, 1, (uint64_t[]){ 4 }, x) }, 1, { { 0 } }, 0,
          "not valid UTF-8" },
        { { tensor("red\x1b[31m", VKA_ST_F32, 1, (uint64_t[]){ 4 }, x) }, 1, { { 0 } }, 0,
          "tensor 'red\\x1b[31m': the name holds the control character 0x1b (byte 3)" },
        { { tensor("del\x7f", VKA_ST_F32, 1, (uint64_t[]){ 4 }, x) }, 1, { { 0 } }, 0,
          "control character 0x7f" },
        { { good }, 1, { { "k\n", "v" } }, 1, "metadata key 'k\\x0a'" },
        { { good }, 1, { { VKA_ST_CRC_KEY, "00000000" } }, 1, "reserved for the checksum" },
        { { tensor("d", (enum vka_st_dtype)99, 1, (uint64_t[]){ 4 }, x) }, 1, { { 0 } }, 0,
          "dtype 99" },
        { { tensor("r", VKA_ST_F32, 9, (uint64_t[]){ 1, 1, 1, 1, 1, 1, 1, 1 }, x) }, 1, { { 0 } },
          0, "rank 9" },
        { { tensor("o", VKA_ST_F32, 2, (uint64_t[]){ 1ull << 40, 1ull << 40 }, x) }, 1, { { 0 } },
          0, "overflows" },
        { { good }, 1, { { "k", "1" }, { "k", "2" } }, 2, "metadata key 'k' is given twice" },
        { { good }, 1, { { "k", NULL } }, 1, "NULL value" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int ret = vka_st_write(path, &(struct vka_st_write_params){
            .tensors = cases[i].t, .n_tensors = cases[i].n, .meta = cases[i].m,
            .n_meta = cases[i].nm });
        cr_assert_lt(ret, 0, "case %zu was written", i);
        assert_error_names(path, NULL, cases[i].phrase);
        assert_untouched(dir, path, old, old_len);
    }
    free(old);
    free(path);
    tmpdir_remove(&dir);
}

Test(safetensors, write_into_missing_folder_names_path)
{
    char *dir = tmpdir_make();
    char *path = path_in(dir, "no/such/folder/w.safetensors");
    float x = 1;
    struct vka_st_tensor t = tensor("x", VKA_ST_F32, 0, NULL, &x);
    cr_assert_eq(vka_st_write(path, &(struct vka_st_write_params){ .tensors = &t, .n_tensors = 1 }),
                 -ENOENT);
    assert_error_names(path, NULL, "cannot create the temporary file");
    free(path);
    tmpdir_remove(&dir);
}

/* The rename fails when path is a non-empty folder: the temporary file goes away. */
Test(safetensors, write_rename_failure_leaves_nothing)
{
    char *dir = tmpdir_make();
    char *path = path_in(dir, "isdir.safetensors");
    cr_assert_eq(mkdir(path, 0755), 0);
    char *inner = path_in(path, "keep");
    fclose(fopen(inner, "w"));
    float x = 1;
    struct vka_st_tensor t = tensor("x", VKA_ST_F32, 0, NULL, &x);
    int ret = vka_st_write(path, &(struct vka_st_write_params){ .tensors = &t, .n_tensors = 1 });
    cr_assert_lt(ret, 0);
    assert_error_names(path, NULL, "cannot rename");
    cr_assert_eq(count_temps(dir), 0, "the temporary file was left behind");
    cr_assert_eq(access(inner, F_OK), 0);
    unlink(inner);
    free(inner);
    free(path);
    tmpdir_remove(&dir);
}

/* A write that fails halfway (the file size limit: EFBIG) keeps the old file. */
Test(safetensors, write_error_midway_keeps_old_file)
{
    char *dir = tmpdir_make();
    char *path = path_in(dir, "mid.safetensors");
    float x[4] = { 1, 2, 3, 4 };
    struct vka_st_tensor small = tensor("x", VKA_ST_F32, 1, (uint64_t[]){ 4 }, x);
    write_ok(path, &small, 1, NULL, 0);
    size_t old_len;
    unsigned char *old = slurp(path, &old_len);
    size_t n = 1 << 20;
    float *big = calloc(n, sizeof(float));
    struct vka_st_tensor t = tensor("big", VKA_ST_F32, 1, (uint64_t[]){ n }, big);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim;
    getrlimit(RLIMIT_FSIZE, &lim);
    struct rlimit low = { .rlim_cur = 1 << 20, .rlim_max = lim.rlim_max };
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &low), 0);
    int ret = vka_st_write(path, &(struct vka_st_write_params){ .tensors = &t, .n_tensors = 1 });
    setrlimit(RLIMIT_FSIZE, &lim);
    cr_assert_eq(ret, -EFBIG, "got %d: %s", ret, vka_last_error());
    assert_error_names(path, NULL, "File too large");
    assert_untouched(dir, path, old, old_len);
    free(big);
    free(old);
    free(path);
    tmpdir_remove(&dir);
}

static void touch(const char *dir, const char *name)
{
    char *p = path_in(dir, name);
    FILE *fp = fopen(p, "w");
    cr_assert_not_null(fp);
    fclose(fp);
    free(p);
}

static bool exists(const char *dir, const char *name)
{
    char *p = path_in(dir, name);
    bool r = access(p, F_OK) == 0;
    free(p);
    return r;
}

/* The host part of this host's temporary file names, as the writer spells it. */
static char *temp_host(const char *dir)
{
    struct vka_atomic a;
    char *probe = path_in(dir, "probe");
    cr_assert_eq(vka_atomic_open(probe, &a), 0, "%s", vka_last_error());
    const char *h = a.tmp + strlen(probe) + strlen(".tmp-");
    char *host = strndup(h, (size_t)(strrchr(h, '-') - h));
    vka_atomic_abort(&a);
    free(probe);
    return host;
}

/* In a run folder shared across hosts (NFS) a pid says nothing about another host's
 * process: only temporary files of this host whose writer is dead go. */
Test(safetensors, stale_temps_only_of_this_host_and_dead_writers)
{
    pid_t dead = fork();
    if (dead == 0)
        _exit(0);
    cr_assert_gt(dead, 0);
    waitpid(dead, NULL, 0);
    char *dir = tmpdir_make();
    char *path = path_in(dir, "ck.safetensors");
    char *host = temp_host(dir);
    char mine_dead[256], mine_live[256], other_host[256], legacy[256], other_file[256];
    char junk[256];
    snprintf(mine_dead, sizeof(mine_dead), "ck.safetensors.tmp-%s-%d", host, (int)dead);
    snprintf(mine_live, sizeof(mine_live), "ck.safetensors.tmp-%s-%d", host, (int)getppid());
    snprintf(other_host, sizeof(other_host), "ck.safetensors.tmp-other-%s-%d", host, (int)dead);
    snprintf(legacy, sizeof(legacy), "ck.safetensors.tmp-%d", (int)dead);
    snprintf(other_file, sizeof(other_file), "other.safetensors.tmp-%s-%d", host, (int)dead);
    snprintf(junk, sizeof(junk), "ck.safetensors.tmp-%s-12ab", host);
    const char *keep[] = { mine_live, other_host, legacy, other_file, junk };
    touch(dir, mine_dead);
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
        touch(dir, keep[i]);
    float x = 1;
    struct vka_st_tensor t = tensor("x", VKA_ST_F32, 0, NULL, &x);
    write_ok(path, &t, 1, NULL, 0);
    cr_assert_not(exists(dir, mine_dead), "the temporary file of dead pid %d stayed", (int)dead);
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
        cr_assert(exists(dir, keep[i]), "%s was removed", keep[i]);
    free(host);
    free(path);
    tmpdir_remove(&dir);
}

/* ---- the data checksum ---- */

/* Flips bit 0 of byte at of path. */
static void flip(const char *path, size_t at)
{
    FILE *fp = fopen(path, "r+b");
    cr_assert_not_null(fp);
    cr_assert_eq(fseek(fp, (long)at, SEEK_SET), 0);
    int c = fgetc(fp);
    cr_assert_neq(c, EOF);
    cr_assert_eq(fseek(fp, (long)at, SEEK_SET), 0);
    fputc(c ^ 1, fp);
    cr_assert_eq(fclose(fp), 0);
}

Test(safetensors, checksum_refuses_a_flipped_data_byte)
{
    char *dir = tmpdir_make();
    char *path = path_in(dir, "ck.safetensors");
    float w[100];
    for (int i = 0; i < 100; i++)
        w[i] = (float)i * 0.25f;
    int64_t step = 12;
    struct vka_st_tensor t[2] = { tensor("w", VKA_ST_F32, 2, (uint64_t[]){ 10, 10 }, w),
                                  tensor("step", VKA_ST_I64, 0, NULL, &step) };
    const struct vka_st_meta meta = { "config", "{}" };
    write_ok(path, t, 2, &meta, 1);
    struct vka_st_file *f = read_ok(path);
    cr_assert(f->checksummed);
    cr_assert_eq(f->n_meta, 1, "the checksum shows among the metadata");
    cr_assert_str_eq(f->meta[0].key, "config");
    cr_assert_null(vka_st_meta_get(f, VKA_ST_CRC_KEY));
    size_t data_at = 8 + (size_t)f->header_len, n = (size_t)f->data_len;
    vka_st_file_destroy(&f);

    /* the value is zlib's crc32 of the data buffer, as Python would compute it */
    size_t len, at_data;
    unsigned char *b = slurp(path, &len);
    char *hdr = header_text(b, len, &at_data), entry[64];
    snprintf(entry, sizeof(entry), "\"" VKA_ST_CRC_KEY "\":\"%08lx\"",
             crc32(0L, b + data_at, (uInt)n));
    cr_assert(strstr(hdr, entry), "the header lacks %s: %s", entry, hdr);
    free(hdr);
    free(b);

    size_t at[] = { data_at, data_at + n / 2, data_at + n - 1 };
    for (size_t i = 0; i < 3; i++) {
        flip(path, at[i]);
        expect_refused(path, -EINVAL, NULL,
                       "the data does not match its checksum: the file is corrupt");
        flip(path, at[i]);
        f = read_ok(path);
        vka_st_file_destroy(&f);
    }
    free(path);
    tmpdir_remove(&dir);
}

/* Files of other writers (PyTorch's safetensors) carry no checksum: they load as they
 * are, flipped bytes and all; a checksum entry that is not 8 hex digits is refused. */
Test(safetensors, file_without_checksum_loads)
{
    char *dir = tmpdir_make();
    char *path = path_in(dir, "torch.safetensors");
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"}," ENTRY_A "}";
    craft(path, strlen(hdr), hdr, strlen(hdr), 8);
    flip(path, 8 + strlen(hdr) + 3);
    struct vka_st_file *f = read_ok(path);
    cr_assert_not(f->checksummed);
    cr_assert_eq(((const unsigned char *)vka_st_find(f, "a")->data)[3], (3 * 37 & 0xff) ^ 1);
    cr_assert_str_eq(vka_st_meta_get(f, "format"), "pt");
    vka_st_file_destroy(&f);
    free(path);
    tmpdir_remove(&dir);
    expect_bad("{\"__metadata__\":{\"" VKA_ST_CRC_KEY "\":\"12345\"}," ENTRY_A "}", 8, NULL,
               "is \"12345\", not 8 hex digits");
    expect_bad("{\"__metadata__\":{\"" VKA_ST_CRC_KEY "\":\"-1234567\"}," ENTRY_A "}", 8,
               NULL, "not 8 hex digits");
}

/* ---- SIGKILL during a write ---- */

enum { BIG_TENSORS = 50, BIG_ELEMS = 1 << 20 }; /* 50 x 4 MiB = 200 MiB */

struct ckpt {
    struct vka_st_tensor t[BIG_TENSORS + 1];
    char names[BIG_TENSORS][32];
    size_t n;
    struct vka_st_meta meta;
};

static pid_t spawn_write(const char *path, const struct ckpt *c)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        _exit(vka_st_write(path, &(struct vka_st_write_params){
                  .tensors = c->t, .n_tensors = c->n, .meta = &c->meta, .n_meta = 1 }) ? 1 : 0);
    return pid;
}

/* The file at path is complete and equal to old or new; returns which (0 old, 1 new). */
static int assert_old_or_new(const char *path, const struct ckpt *old, const struct ckpt *new)
{
    struct vka_st_file *f = NULL;
    int ret = vka_st_read(path, &f);
    cr_assert_eq(ret, 0, "after a killed write the checkpoint does not load: %s",
                 vka_last_error());
    const char *which = vka_st_meta_get(f, "which");
    cr_assert_not_null(which);
    const struct ckpt *c = !strcmp(which, "new") ? new : old;
    cr_assert_eq(vka_st_check(f, c->t, c->n), 0, "%s", vka_last_error());
    for (size_t i = 0; i < c->n; i++)
        cr_assert_eq(memcmp(vka_st_find(f, c->t[i].name)->data, c->t[i].data,
                            nbytes_of(&c->t[i])), 0, "%s: tensor '%s' differs from the %s file",
                     path, c->t[i].name, which);
    vka_st_file_destroy(&f);
    return c == new;
}

Test(safetensors, sigkill_during_write_is_atomic, .timeout = 300)
{
    test_seed("safetensors.sigkill_during_write_is_atomic");
    char *dir = tmpdir_make();
    char *path = path_in(dir, "last.safetensors");
    static struct ckpt old, new;
    float *big = malloc((size_t)BIG_TENSORS * BIG_ELEMS * sizeof(float));
    for (size_t i = 0; i < (size_t)BIG_TENSORS * BIG_ELEMS; i++)
        big[i] = (float)(i * 2654435761u >> 8);
    for (int i = 0; i < BIG_TENSORS; i++) {
        snprintf(new.names[i], sizeof(new.names[i]), "layer%02d.weight", i);
        new.t[i] = tensor(new.names[i], VKA_ST_F32, 4, (uint64_t[]){ 256, 256, 4, 4 },
                          big + (size_t)i * BIG_ELEMS);
    }
    static const int64_t step_new = 2, step_old = 1;
    static float w_old[1000];
    for (int i = 0; i < 1000; i++)
        w_old[i] = (float)i * 0.5f;
    new.t[BIG_TENSORS] = tensor("step", VKA_ST_I64, 0, NULL, &step_new);
    new.n = BIG_TENSORS + 1;
    new.meta = (struct vka_st_meta){ "which", "new" };
    old.t[0] = tensor("layer00.weight", VKA_ST_F32, 1, (uint64_t[]){ 1000 }, w_old);
    old.t[1] = tensor("step", VKA_ST_I64, 0, NULL, &step_old);
    old.n = 2;
    old.meta = (struct vka_st_meta){ "which", "old" };

    /* one complete write in a child measures how long a write takes */
    write_ok(path, old.t, old.n, &old.meta, 1);
    double t0 = now_s();
    pid_t pid = spawn_write(path, &new);
    int status;
    waitpid(pid, &status, 0);
    double span = now_s() - t0;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the writer child failed");
    cr_assert_eq(assert_old_or_new(path, &old, &new), 1);

    /* kill -9 at moments spread over the whole write (one random moment per slice) */
    enum { KILLS = 5 };
    int saw[2] = { 0, 0 };
    for (int k = 0; k < KILLS; k++) {
        write_ok(path, old.t, old.n, &old.meta, 1);
        double at = span * 1.1 * (k + test_rand_uniform(0, 1)) / KILLS;
        pid = spawn_write(path, &new);
        struct timespec ts = { (time_t)at, (long)((at - (double)(time_t)at) * 1e9) };
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        int got = assert_old_or_new(path, &old, &new);
        saw[got]++;
        cr_log_info("kill %d at %.3f s of %.3f s: %s file, child %s", k, at, span,
                    got ? "new" : "old", WIFSIGNALED(status) ? "killed" : "had finished");
    }
    cr_log_info("after %d kills: old %d, new %d; temporary files now %d", KILLS, saw[0], saw[1],
                count_temps(dir));
    write_ok(path, old.t, old.n, &old.meta, 1);
    cr_assert_eq(count_temps(dir), 0, "temporary files of killed writers survive a write");
    cr_assert_eq(assert_old_or_new(path, &old, &new), 0);
    free(big);
    free(path);
    tmpdir_remove(&dir);
}
