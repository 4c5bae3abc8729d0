/* The safetensors reader and writer (see safetensors.h for the format and the rules).
 * JSON goes through cJSON both ways; integers are written as raw JSON numbers so that
 * every offset prints as digits. Files are opened and replaced through src/file.h.
 * Errors: "PATH: tensor 'NAME': what is wrong"; a name that breaks the rules is printed
 * with its control bytes escaped, so that no message writes raw bytes to a terminal. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <zlib.h>

#include "file.h"
#include "log.h"
#include "safetensors.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this host is not"
#endif

#define META_KEY "__metadata__"
#define MAX_JSON_INT 9007199254740992.0 /* 2^53: larger integers do not survive a double */

static const struct {
    const char *name;
    size_t size;
} dtypes[VKA_ST_DTYPE_COUNT] = {
    [VKA_ST_BOOL] = { "BOOL", 1 }, [VKA_ST_U8] = { "U8", 1 },   [VKA_ST_I8] = { "I8", 1 },
    [VKA_ST_I16] = { "I16", 2 },   [VKA_ST_U16] = { "U16", 2 }, [VKA_ST_F16] = { "F16", 2 },
    [VKA_ST_BF16] = { "BF16", 2 }, [VKA_ST_I32] = { "I32", 4 }, [VKA_ST_U32] = { "U32", 4 },
    [VKA_ST_F32] = { "F32", 4 },   [VKA_ST_F64] = { "F64", 8 }, [VKA_ST_I64] = { "I64", 8 },
    [VKA_ST_U64] = { "U64", 8 },
};

const char *vka_st_dtype_name(enum vka_st_dtype dtype)
{
    return (unsigned)dtype < VKA_ST_DTYPE_COUNT ? dtypes[dtype].name : NULL;
}

size_t vka_st_dtype_size(enum vka_st_dtype dtype)
{
    return (unsigned)dtype < VKA_ST_DTYPE_COUNT ? dtypes[dtype].size : 0;
}

int vka_st_dtype_parse(const char *name, enum vka_st_dtype *dtype)
{
    for (int i = 0; i < VKA_ST_DTYPE_COUNT; i++)
        if (name && !strcmp(name, dtypes[i].name)) {
            *dtype = (enum vka_st_dtype)i;
            return 0;
        }
    return -EINVAL;
}

int vka_st_numel(const struct vka_st_tensor *t, uint64_t *numel)
{
    uint64_t n = 1;
    for (uint32_t i = 0; i < t->ndim && i < VKA_ST_MAX_DIMS; i++)
        if (__builtin_mul_overflow(n, t->shape[i], &n))
            return -EOVERFLOW;
    *numel = n;
    return 0;
}

int vka_st_nbytes(const struct vka_st_tensor *t, uint64_t *nbytes)
{
    uint64_t n;
    int ret = vka_st_numel(t, &n);
    if (ret < 0)
        return ret;
    if (__builtin_mul_overflow(n, (uint64_t)vka_st_dtype_size(t->dtype), nbytes))
        return -EOVERFLOW;
    return 0;
}

char *vka_st_shape_str(const struct vka_st_tensor *t, char *buf, size_t size)
{
    size_t len = 0;
    if (!size)
        return buf;
    buf[0] = '\0';
    for (uint32_t i = 0; i <= t->ndim && i <= VKA_ST_MAX_DIMS && len < size; i++) {
        int n;
        if (i == t->ndim || i == VKA_ST_MAX_DIMS)
            n = snprintf(buf + len, size - len, "%s]", i ? "" : "[");
        else
            n = snprintf(buf + len, size - len, "%s%" PRIu64, i ? ", " : "[", t->shape[i]);
        if (n < 0)
            break;
        len += (size_t)n;
    }
    return buf;
}

#define SHAPE_STR_LEN 256

/* 0 when s[0..n) is valid UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF); else 1 + the offset of the first bad byte. */
static size_t utf8_check(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80)
            len = 1, cp = c, min = 0;
        else if ((c & 0xe0) == 0xc0)
            len = 2, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0)
            len = 3, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0)
            len = 4, cp = c & 0x07, min = 0x10000;
        else
            return i + 1;
        if (n - i < len)
            return i + 1;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return i + 1;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return i + 1;
        i += len;
    }
    return 0;
}

/* 1 + the offset of the first control byte of s (below 0x20, or 0x7f), or 0. */
static size_t control_at(const char *s)
{
    for (size_t i = 0; s[i]; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return i + 1;
    return 0;
}

#define ESC_LEN 128

/* The first n bytes of s with control bytes written as \xNN, clipped to buf (size at
 * least 5): how a bad name is shown. */
static const char *escaped(const char *s, size_t n, char *buf, size_t size)
{
    size_t k = 0;
    for (size_t i = 0; i < n && s[i] && k + 5 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            k += (size_t)snprintf(buf + k, size - k, "\\x%02x", c);
        else
            buf[k++] = (char)c;
    }
    buf[k] = '\0';
    return buf;
}

/* Refuses a tensor name or metadata key holding a control byte: what says which. */
static int check_name(const char *path, const char *what, const char *name)
{
    size_t bad = control_at(name);
    if (!bad)
        return 0;
    char esc[ESC_LEN];
    vka_err("%s: %s '%s': the name holds the control character 0x%02x (byte %zu)", path, what,
            escaped(name, strlen(name), esc, sizeof(esc)), (unsigned char)name[bad - 1],
            bad - 1);
    return -EINVAL;
}

/* zlib's crc32 of n bytes, in pieces that fit its uInt. */
static uint32_t crc_update(uint32_t crc, const void *data, uint64_t n)
{
    const unsigned char *p = data;
    uLong c = crc;
    while (n) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (uint32_t)c;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first name that occurs twice among names[0..n) (sorted in place), or NULL. */
static const char *find_duplicate(const char **names, size_t n)
{
    if (n < 2)
        return NULL;
    qsort(names, n, sizeof(*names), cmp_str_ptr);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(names[i - 1], names[i]))
            return names[i];
    return NULL;
}

static int oom(const char *path)
{
    vka_err("%s: out of memory", path);
    return -ENOMEM;
}

/* ---- writer ---- */

static int validate_write(const char *path, const struct vka_st_write_params *p,
                          uint64_t *total)
{
    char sh[SHAPE_STR_LEN];
    if ((p->n_tensors && !p->tensors) || (p->n_meta && !p->meta)) {
        vka_err("%s: %zu tensors and %zu metadata entries given, but a list is NULL", path,
                p->n_tensors, p->n_meta);
        return -EINVAL;
    }
    *total = 0;
    for (size_t i = 0; i < p->n_tensors; i++) {
        const struct vka_st_tensor *t = &p->tensors[i];
        uint64_t nbytes;
        if (!t->name) {
            vka_err("%s: tensor %zu has no name", path, i);
            return -EINVAL;
        }
        if (check_name(path, "tensor", t->name) < 0)
            return -EINVAL;
        if (!strcmp(t->name, META_KEY) || utf8_check((const void *)t->name, strlen(t->name))) {
            vka_err("%s: tensor '%s': the name is %s", path, t->name,
                    strcmp(t->name, META_KEY) ? "not valid UTF-8" : "reserved for metadata");
            return -EINVAL;
        }
        if ((unsigned)t->dtype >= VKA_ST_DTYPE_COUNT) {
            vka_err("%s: tensor '%s': dtype %d is not a vka_st_dtype", path, t->name,
                    (int)t->dtype);
            return -EINVAL;
        }
        if (t->ndim > VKA_ST_MAX_DIMS) {
            vka_err("%s: tensor '%s': rank %u exceeds the supported %d", path, t->name,
                    t->ndim, VKA_ST_MAX_DIMS);
            return -EINVAL;
        }
        if (vka_st_nbytes(t, &nbytes) < 0 || __builtin_add_overflow(*total, nbytes, total)) {
            vka_err("%s: tensor '%s': %s %s overflows 64 bits of bytes", path, t->name,
                    dtypes[t->dtype].name, vka_st_shape_str(t, sh, sizeof(sh)));
            return -EOVERFLOW;
        }
        if (nbytes && !t->data) {
            vka_err("%s: tensor '%s': %s %s has no data (NULL)", path, t->name,
                    dtypes[t->dtype].name, vka_st_shape_str(t, sh, sizeof(sh)));
            return -EINVAL;
        }
    }
    for (size_t i = 0; i < p->n_meta; i++) {
        const struct vka_st_meta *m = &p->meta[i];
        if (!m->key || !m->value) {
            vka_err("%s: metadata entry %zu has a NULL %s", path, i, m->key ? "value" : "key");
            return -EINVAL;
        }
        if (check_name(path, "metadata key", m->key) < 0)
            return -EINVAL;
        if (utf8_check((const void *)m->key, strlen(m->key)) ||
            utf8_check((const void *)m->value, strlen(m->value))) {
            vka_err("%s: metadata '%s' is not valid UTF-8", path, m->key);
            return -EINVAL;
        }
        if (!strcmp(m->key, VKA_ST_CRC_KEY)) {
            vka_err("%s: metadata key '%s' is reserved for the checksum the writer adds", path,
                    m->key);
            return -EINVAL;
        }
    }

    size_t n = p->n_tensors > p->n_meta ? p->n_tensors : p->n_meta;
    const char **names = malloc((n ? n : 1) * sizeof(*names));
    if (!names)
        return oom(path);
    for (size_t i = 0; i < p->n_tensors; i++)
        names[i] = p->tensors[i].name;
    const char *dup = find_duplicate(names, p->n_tensors);
    if (dup) {
        vka_err("%s: tensor '%s' is given twice", path, dup);
        free(names);
        return -EINVAL;
    }
    for (size_t i = 0; i < p->n_meta; i++)
        names[i] = p->meta[i].key;
    dup = find_duplicate(names, p->n_meta);
    if (dup)
        vka_err("%s: metadata key '%s' is given twice", path, dup);
    free(names);
    return dup ? -EINVAL : 0;
}

static bool add_uint(cJSON *array, uint64_t v)
{
    char s[24];
    snprintf(s, sizeof(s), "%" PRIu64, v);
    cJSON *item = cJSON_CreateRaw(s);
    if (item && cJSON_AddItemToArray(array, item))
        return true;
    cJSON_Delete(item);
    return false;
}

/* The header JSON, unpadded; the given metadata then the checksum crc of the data;
 * tensors in the order of order[]. NULL when out of memory. */
static char *build_header(const struct vka_st_write_params *p, const size_t *order,
                          uint32_t crc)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *m = root ? cJSON_AddObjectToObject(root, META_KEY) : NULL;
    bool ok = m != NULL;
    for (size_t i = 0; ok && i < p->n_meta; i++)
        ok = cJSON_AddStringToObject(m, p->meta[i].key, p->meta[i].value) != NULL;
    char hex[9];
    snprintf(hex, sizeof(hex), "%08" PRIx32, crc);
    ok = ok && cJSON_AddStringToObject(m, VKA_ST_CRC_KEY, hex);
    uint64_t off = 0;
    for (size_t k = 0; ok && k < p->n_tensors; k++) {
        const struct vka_st_tensor *t = &p->tensors[order[k]];
        uint64_t nbytes = 0;
        vka_st_nbytes(t, &nbytes);
        cJSON *e = cJSON_CreateObject();
        if (!e || !cJSON_AddItemToObject(root, t->name, e)) {
            cJSON_Delete(e);
            ok = false;
            break;
        }
        cJSON *shape = NULL, *offs = NULL;
        ok = cJSON_AddStringToObject(e, "dtype", dtypes[t->dtype].name) &&
             (shape = cJSON_AddArrayToObject(e, "shape")) &&
             (offs = cJSON_AddArrayToObject(e, "data_offsets"));
        for (uint32_t d = 0; ok && d < t->ndim; d++)
            ok = add_uint(shape, t->shape[d]);
        ok = ok && add_uint(offs, off) && add_uint(offs, off + nbytes);
        off += nbytes;
    }
    char *js = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return js;
}

static int write_all(FILE *fp, const void *data, uint64_t n)
{
    const unsigned char *p = data;
    while (n) {
        size_t chunk = n > (64u << 20) ? (64u << 20) : (size_t)n;
        if (fwrite(p, 1, chunk, fp) != chunk)
            return errno ? -errno : -EIO;
        p += chunk;
        n -= chunk;
    }
    return 0;
}

/* The checksum of the data section: the tensors' bytes in the order of order[]. */
static uint32_t data_crc(const struct vka_st_write_params *p, const size_t *order)
{
    uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
    for (size_t i = 0; i < p->n_tensors; i++) {
        const struct vka_st_tensor *t = &p->tensors[order[i]];
        uint64_t nbytes = 0;
        vka_st_nbytes(t, &nbytes);
        crc = crc_update(crc, t->data, nbytes);
    }
    return crc;
}

/* The length, header and data, into fp; stops at the first error, which
 * it leaves in errno and fp's error state for vka_atomic_commit to report. */
static void write_body(FILE *fp, const struct vka_st_write_params *p, const size_t *order,
                       const char *js, uint64_t hlen)
{
    size_t jlen = strlen(js);
    unsigned char head[8 + 8];
    for (int i = 0; i < 8; i++)
        head[i] = (unsigned char)(hlen >> (8 * i));
    memset(head + 8, ' ', 8);
    errno = 0;
    int ret = write_all(fp, head, 8);
    if (!ret)
        ret = write_all(fp, js, jlen);
    if (!ret)
        ret = write_all(fp, head + 8, hlen - jlen);
    for (size_t i = 0; !ret && i < p->n_tensors; i++) {
        const struct vka_st_tensor *t = &p->tensors[order[i]];
        uint64_t nbytes = 0;
        vka_st_nbytes(t, &nbytes);
        ret = write_all(fp, t->data, nbytes);
    }
    if (ret)
        errno = -ret;
}

int vka_st_write(const char *path, const struct vka_st_write_params *params)
{
    if (!path || !*path || !params) {
        vka_err("vka_st_write: %s is NULL or empty", !params ? "params" : "path");
        return -EINVAL;
    }
    uint64_t total;
    int ret = validate_write(path, params, &total);
    if (ret < 0)
        return ret;

    size_t *order = malloc((params->n_tensors ? params->n_tensors : 1) * sizeof(*order));
    char *js = NULL;
    if (!order) {
        vka_err("%s: out of memory building the header", path);
        return -ENOMEM;
    }
    size_t k = 0;
    for (size_t size = 8; size; size /= 2)
        for (size_t i = 0; i < params->n_tensors; i++)
            if (dtypes[params->tensors[i].dtype].size == size)
                order[k++] = i;
    js = build_header(params, order, data_crc(params, order));
    if (!js) {
        vka_err("%s: out of memory building the header", path);
        ret = -ENOMEM;
        goto done;
    }
    uint64_t hlen = (strlen(js) + 7) / 8 * 8;
    if (hlen > VKA_ST_MAX_HEADER) {
        vka_err("%s: the header would be %" PRIu64 " bytes, past the format's limit of %llu "
                "(too many tensors or too much metadata)", path, hlen, VKA_ST_MAX_HEADER);
        ret = -EOVERFLOW;
        goto done;
    }
    struct vka_atomic a;
    ret = vka_atomic_open(path, &a);
    if (ret < 0)
        goto done;
    write_body(a.fp, params, order, js, hlen);
    ret = vka_atomic_commit(&a);
done:
    free(order);
    free(js);
    return ret;
}

/* ---- reader ---- */

struct entry {
    uint64_t begin, end;
    size_t idx;
};

static int cmp_entry(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    const struct vka_st_tensor *x = *(const struct vka_st_tensor *const *)a;
    const struct vka_st_tensor *y = *(const struct vka_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static bool json_uint_of(const cJSON *item, uint64_t *v)
{
    if (!cJSON_IsNumber(item))
        return false;
    double d = item->valuedouble;
    if (!(d >= 0.0) || d > MAX_JSON_INT || d != (double)(uint64_t)d)
        return false;
    *v = (uint64_t)d;
    return true;
}

/* Fails when obj holds a member name twice; what names the object in the message. */
static int check_members(const char *path, const cJSON *obj, const char *what)
{
    size_t n = (size_t)cJSON_GetArraySize(obj);
    if (n < 2)
        return 0;
    const char **names = malloc(n * sizeof(*names));
    if (!names)
        return oom(path);
    size_t k = 0;
    for (const cJSON *c = obj->child; c && k < n; c = c->next)
        names[k++] = c->string ? c->string : "";
    const char *dup = find_duplicate(names, k);
    if (dup)
        vka_err("%s: %s'%s' appears twice in the header", path,
                strcmp(dup, META_KEY) ? what : "", dup);
    free(names);
    return dup ? -EINVAL : 0;
}

static int parse_tensor(const char *path, const cJSON *e, struct vka_st_tensor *t,
                        struct entry *ent, uint64_t data_len)
{
    const char *name = e->string;
    char what[64];
    snprintf(what, sizeof(what), "tensor '%.40s' key ", name);
    if (!cJSON_IsObject(e)) {
        vka_err("%s: tensor '%s': the entry is not a JSON object", path, name);
        return -EINVAL;
    }
    int ret = check_members(path, e, what);
    if (ret < 0)
        return ret;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!dt || !sh || !of) {
        vka_err("%s: tensor '%s': the entry has no \"%s\"", path, name,
                !dt ? "dtype" : !sh ? "shape" : "data_offsets");
        return -EINVAL;
    }
    if (!cJSON_IsString(dt) || vka_st_dtype_parse(dt->valuestring, &t->dtype) < 0) {
        vka_err("%s: tensor '%s': unknown dtype %s%s%s (known: BOOL U8 I8 I16 U16 F16 BF16 "
                "I32 U32 F32 F64 I64 U64)", path, name, cJSON_IsString(dt) ? "\"" : "",
                cJSON_IsString(dt) ? dt->valuestring : "(not a string)",
                cJSON_IsString(dt) ? "\"" : "");
        return -EINVAL;
    }
    if (!cJSON_IsArray(sh)) {
        vka_err("%s: tensor '%s': \"shape\" is not an array", path, name);
        return -EINVAL;
    }
    int nd = cJSON_GetArraySize(sh);
    if (nd > VKA_ST_MAX_DIMS) {
        vka_err("%s: tensor '%s': rank %d exceeds the supported %d", path, name, nd,
                VKA_ST_MAX_DIMS);
        return -EINVAL;
    }
    t->ndim = (uint32_t)nd;
    uint32_t d = 0;
    for (const cJSON *c = sh->child; c; c = c->next, d++)
        if (!json_uint_of(c, &t->shape[d])) {
            vka_err("%s: tensor '%s': shape entry %u is not a non-negative integer (at most "
                    "2^53)", path, name, d);
            return -EINVAL;
        }
    char ss[SHAPE_STR_LEN];
    uint64_t nbytes;
    if (vka_st_nbytes(t, &nbytes) < 0) {
        vka_err("%s: tensor '%s': %s %s overflows 64 bits of bytes", path, name,
                dtypes[t->dtype].name, vka_st_shape_str(t, ss, sizeof(ss)));
        return -EINVAL;
    }
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 ||
        !json_uint_of(of->child, &ent->begin) || !json_uint_of(of->child->next, &ent->end)) {
        vka_err("%s: tensor '%s': \"data_offsets\" is not [begin, end] of two non-negative "
                "integers", path, name);
        return -EINVAL;
    }
    if (ent->end < ent->begin) {
        vka_err("%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end before they "
                "begin", path, name, ent->begin, ent->end);
        return -EINVAL;
    }
    if (ent->end - ent->begin != nbytes) {
        vka_err("%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                " bytes, but %s %s needs %" PRIu64, path, name, ent->begin, ent->end,
                ent->end - ent->begin, dtypes[t->dtype].name,
                vka_st_shape_str(t, ss, sizeof(ss)), nbytes);
        return -EINVAL;
    }
    if (ent->end > data_len) {
        vka_err("%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] run past the end "
                "of the data buffer (%" PRIu64 " bytes): the file is truncated or the "
                "offsets are wrong", path, name, ent->begin, ent->end, data_len);
        return -EINVAL;
    }
    t->name = strdup(name);
    if (!t->name)
        return oom(path);
    return 0;
}

/* The checksum entry: exactly 8 hex digits, kept in f->crc_ (not among f->meta). */
static int parse_crc(const char *path, const char *value, struct vka_st_file *f)
{
    char *end;
    unsigned long v = strtoul(value, &end, 16);
    bool hex = strlen(value) == 8 && !*end;
    for (size_t i = 0; hex && i < 8; i++)
        hex = strchr("0123456789abcdefABCDEF", value[i]) != NULL;
    if (!hex) {
        char esc[ESC_LEN];
        vka_err("%s: metadata '" VKA_ST_CRC_KEY "' is \"%s\", not 8 hex digits: the file is "
                "corrupt", path, escaped(value, 32, esc, sizeof(esc)));
        return -EINVAL;
    }
    f->checksummed = true;
    f->crc_ = (uint32_t)v;
    return 0;
}

static int parse_meta(const char *path, const cJSON *m, struct vka_st_file *f)
{
    if (!cJSON_IsObject(m)) {
        vka_err("%s: \"" META_KEY "\" is not a JSON object", path);
        return -EINVAL;
    }
    for (const cJSON *c = m->child; c; c = c->next)
        if (check_name(path, "metadata key", c->string) < 0)
            return -EINVAL;
    int ret = check_members(path, m, "metadata key ");
    if (ret < 0)
        return ret;
    size_t n = (size_t)cJSON_GetArraySize(m);
    f->meta = calloc(n ? n : 1, sizeof(*f->meta));
    if (!f->meta)
        return oom(path);
    for (const cJSON *c = m->child; c; c = c->next) {
        if (!cJSON_IsString(c)) {
            vka_err("%s: metadata '%s': the value is not a string", path, c->string);
            return -EINVAL;
        }
        if (!strcmp(c->string, VKA_ST_CRC_KEY)) {
            ret = parse_crc(path, c->valuestring, f);
            if (ret < 0)
                return ret;
            continue;
        }
        struct vka_st_meta *e = &f->meta[f->n_meta++];
        e->key = strdup(c->string);
        e->value = strdup(c->valuestring);
        if (!e->key || !e->value)
            return oom(path);
    }
    return 0;
}

/* cJSON turns "\u0000" into a NUL that ends the C string, so that the name "w\u0000junk"
 * would load as "w": refuses any string of the (parsed, hence valid JSON) header holding
 * that escape. */
static int check_nul_escapes(const char *path, const char *hdr, size_t n)
{
    size_t start = 0;
    bool in_str = false, nul = false;
    for (size_t i = 0; i < n; i++) {
        if (!in_str) {
            if (hdr[i] == '"')
                in_str = true, nul = false, start = i;
            continue;
        }
        if (hdr[i] == '\\' && i + 1 < n) {
            nul |= hdr[i + 1] == 'u' && i + 5 < n && !strncmp(hdr + i + 2, "0000", 4);
            i++; /* the escaped character */
        } else if (hdr[i] == '"') {
            in_str = false;
            if (nul) {
                char esc[ESC_LEN];
                vka_err("%s: the header string %s (byte %zu) holds \\u0000, a NUL character: "
                        "names and metadata must not", path,
                        escaped(hdr + start, i + 1 - start, esc, 64), start);
                return -EINVAL;
            }
        }
    }
    return 0;
}

static int parse_header(const char *path, char *hdr, uint64_t hlen, struct vka_st_file *f,
                        struct entry **entries)
{
    size_t bad = utf8_check((const unsigned char *)hdr, (size_t)hlen);
    if (bad) {
        vka_err("%s: the header is not valid UTF-8 (byte %zu)", path, bad - 1);
        return -EINVAL;
    }
    for (size_t i = 0; i < hlen; i++) {
        unsigned char c = (unsigned char)hdr[i];
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
            vka_err("%s: the header holds a control byte 0x%02x at byte %zu (not JSON)", path,
                    c, i);
            return -EINVAL;
        }
    }
    if (hlen == 0 || hdr[0] != '{') {
        vka_err("%s: the header does not start with '{' (not a safetensors file?)", path);
        return -EINVAL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0);
    if (!root) {
        size_t at = end && end >= hdr && end <= hdr + hlen ? (size_t)(end - hdr) : 0;
        vka_err("%s: the header is not valid JSON (near byte %zu of %" PRIu64 ")", path, at,
                hlen);
        return -EINVAL;
    }
    for (const char *p = end; p < hdr + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            vka_err("%s: the header holds text after its JSON object (byte %zu)", path,
                    (size_t)(p - hdr));
            cJSON_Delete(root);
            return -EINVAL;
        }
    int ret = 0;
    if (!cJSON_IsObject(root)) {
        vka_err("%s: the header is not a JSON object", path);
        ret = -EINVAL;
        goto done;
    }
    ret = check_nul_escapes(path, hdr, (size_t)hlen);
    for (const cJSON *c = root->child; c && !ret; c = c->next)
        ret = check_name(path, "tensor", c->string);
    if (ret < 0)
        goto done;
    ret = check_members(path, root, "tensor ");
    if (ret < 0)
        goto done;
    size_t n = (size_t)cJSON_GetArraySize(root);
    f->tensors = calloc(n ? n : 1, sizeof(*f->tensors));
    *entries = calloc(n ? n : 1, sizeof(**entries));
    if (!f->tensors || !*entries) {
        ret = oom(path);
        goto done;
    }
    for (const cJSON *c = root->child; c && !ret; c = c->next) {
        if (!strcmp(c->string, META_KEY)) {
            ret = parse_meta(path, c, f);
            continue;
        }
        struct entry *ent = &(*entries)[f->n_tensors];
        ent->idx = f->n_tensors;
        ret = parse_tensor(path, c, &f->tensors[f->n_tensors], ent, f->data_len);
        if (!ret)
            f->n_tensors++;
    }
done:
    cJSON_Delete(root);
    return ret;
}

/* Sorts entries by offset and checks that they tile [0, data_len) exactly; then puts
 * f->tensors in that order. */
static int check_layout(const char *path, struct vka_st_file *f, struct entry *ent)
{
    size_t n = f->n_tensors;
    qsort(ent, n, sizeof(*ent), cmp_entry);
    uint64_t cursor = 0;
    const struct entry *prev = NULL;
    for (size_t i = 0; i < n; i++) {
        const struct entry *e = &ent[i];
        const char *name = f->tensors[e->idx].name;
        if (e->begin < cursor) {
            vka_err("%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] overlap tensor "
                    "'%s' [%" PRIu64 ", %" PRIu64 "]", path, name, e->begin, e->end,
                    f->tensors[prev->idx].name, prev->begin, prev->end);
            return -EINVAL;
        }
        if (e->begin > cursor) {
            vka_err("%s: tensor '%s': bytes [%" PRIu64 ", %" PRIu64 ") of the data buffer "
                    "before it belong to no tensor", path, name, cursor, e->begin);
            return -EINVAL;
        }
        cursor = e->end;
        if (e->end > e->begin)
            prev = e;
    }
    if (cursor != f->data_len) {
        vka_err("%s: the data buffer holds %" PRIu64 " bytes, but the tensors cover only %"
                PRIu64 " (trailing bytes)", path, f->data_len, cursor);
        return -EINVAL;
    }
    struct vka_st_tensor *sorted = malloc((n ? n : 1) * sizeof(*sorted));
    if (!sorted)
        return oom(path);
    for (size_t i = 0; i < n; i++)
        sorted[i] = f->tensors[ent[i].idx];
    free(f->tensors);
    f->tensors = sorted;
    return 0;
}

static int read_exact(const char *path, FILE *fp, void *dst, uint64_t n, const char *what)
{
    unsigned char *p = dst;
    while (n) {
        size_t chunk = n > (64u << 20) ? (64u << 20) : (size_t)n;
        size_t got = fread(p, 1, chunk, fp);
        if (got != chunk) {
            int err = ferror(fp) ? errno : 0;
            vka_err("%s: reading the %s: %s", path, what,
                    err ? strerror(err) : "the file ended early (it changed while read?)");
            return err ? -err : -EINVAL;
        }
        p += chunk;
        n -= chunk;
    }
    return 0;
}

static void *alloc_aligned(uint64_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? (size_t)n : 1) != 0)
        return NULL;
    return p;
}

/* Points each tensor's data into the buffer (ent in file order), copying the whole buffer
 * to a repacked one when some tensor is not aligned to its element size. */
static int place_data(const char *path, struct vka_st_file *f, const struct entry *ent)
{
    bool aligned = true;
    uint64_t packed = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        size_t es = dtypes[f->tensors[i].dtype].size;
        aligned = aligned && ent[i].begin % es == 0;
        packed = (packed + 7) / 8 * 8 + (ent[i].end - ent[i].begin);
    }
    unsigned char *base = f->buf_;
    if (!aligned) {
        base = alloc_aligned(packed);
        if (!base) {
            vka_err("%s: out of memory (%" PRIu64 " bytes)", path, packed);
            return -ENOMEM;
        }
        uint64_t off = 0;
        for (size_t i = 0; i < f->n_tensors; i++) {
            off = (off + 7) / 8 * 8;
            memcpy(base + off, (unsigned char *)f->buf_ + ent[i].begin,
                   ent[i].end - ent[i].begin);
            f->tensors[i].data = base + off;
            off += ent[i].end - ent[i].begin;
        }
        free(f->buf_);
        f->buf_ = base;
        return 0;
    }
    for (size_t i = 0; i < f->n_tensors; i++)
        f->tensors[i].data = base + ent[i].begin;
    return 0;
}

/* Flipped bits in the data section, which no structural rule sees, are refused here. */
static int check_crc(const char *path, const struct vka_st_file *f)
{
    if (!f->checksummed)
        return 0;
    uint32_t crc = crc_update((uint32_t)crc32(0L, Z_NULL, 0), f->buf_, f->data_len);
    if (crc == f->crc_)
        return 0;
    vka_err("%s: the data does not match its checksum: the file is corrupt (" VKA_ST_CRC_KEY
            " %08" PRIx32 ", the data's %08" PRIx32 ")", path, f->crc_, crc);
    return -EINVAL;
}

int vka_st_read(const char *path, struct vka_st_file **out)
{
    if (!out || !path) {
        vka_err("vka_st_read: %s is NULL", !out ? "out" : "path");
        return -EINVAL;
    }
    *out = NULL;
    struct vka_st_file *f = calloc(1, sizeof(*f));
    struct entry *ent = NULL;
    char *hdr = NULL;
    int ret = 0;
    FILE *fp = NULL;
    if (!f || !(f->path = strdup(path))) {
        ret = oom(path);
        goto done;
    }
    fp = vka_fopen_regular(path);
    if (!fp) {
        ret = -errno;
        goto done;
    }
    struct stat st;
    if (fstat(fileno(fp), &st) != 0) {
        ret = -errno;
        vka_err("%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < 8) {
        vka_err("%s: the file holds %" PRIu64 " bytes, fewer than the 8 of the header length "
                "(truncated, or not a safetensors file)", path, size);
        ret = -EINVAL;
        goto done;
    }
    unsigned char lenb[8];
    ret = read_exact(path, fp, lenb, 8, "header length");
    if (ret < 0)
        goto done;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | lenb[i];
    if (hlen > VKA_ST_MAX_HEADER) {
        vka_err("%s: header length %" PRIu64 " exceeds the format's limit of %llu bytes (not a "
                "safetensors file?)", path, hlen, VKA_ST_MAX_HEADER);
        ret = -EINVAL;
        goto done;
    }
    if (hlen > size - 8) {
        vka_err("%s: header length %" PRIu64 " runs past the end of the file (%" PRIu64
                " bytes follow the length): truncated, or not a safetensors file", path, hlen,
                size - 8);
        ret = -EINVAL;
        goto done;
    }
    f->header_len = hlen;
    f->data_len = size - 8 - hlen;
    hdr = malloc((size_t)hlen + 1);
    if (!hdr) {
        vka_err("%s: out of memory (header of %" PRIu64 " bytes)", path, hlen);
        ret = -ENOMEM;
        goto done;
    }
    ret = read_exact(path, fp, hdr, hlen, "header");
    if (ret < 0)
        goto done;
    hdr[hlen] = '\0';
    ret = parse_header(path, hdr, hlen, f, &ent);
    if (ret < 0)
        goto done;
    ret = check_layout(path, f, ent);
    if (ret < 0)
        goto done;
    f->buf_ = alloc_aligned(f->data_len);
    if (!f->buf_) {
        vka_err("%s: out of memory (%" PRIu64 " bytes of tensor data)", path, f->data_len);
        ret = -ENOMEM;
        goto done;
    }
    ret = read_exact(path, fp, f->buf_, f->data_len, "tensor data");
    if (ret < 0)
        goto done;
    ret = check_crc(path, f);
    if (ret < 0)
        goto done;
    ret = place_data(path, f, ent);
    if (ret < 0)
        goto done;
    f->by_name_ = malloc((f->n_tensors ? f->n_tensors : 1) * sizeof(*f->by_name_));
    if (!f->by_name_) {
        ret = oom(path);
        goto done;
    }
    for (size_t i = 0; i < f->n_tensors; i++)
        f->by_name_[i] = &f->tensors[i];
    qsort(f->by_name_, f->n_tensors, sizeof(*f->by_name_), cmp_tensor_name);
done:
    if (fp)
        fclose(fp);
    free(hdr);
    free(ent);
    if (ret < 0)
        vka_st_file_destroy(&f);
    *out = f;
    return ret;
}

void vka_st_file_destroy(struct vka_st_file **pf)
{
    struct vka_st_file *f = pf ? *pf : NULL;
    if (!f)
        return;
    for (size_t i = 0; i < f->n_tensors; i++)
        free((void *)f->tensors[i].name);
    for (size_t i = 0; i < f->n_meta; i++) {
        free((void *)f->meta[i].key);
        free((void *)f->meta[i].value);
    }
    free(f->tensors);
    free(f->meta);
    free(f->buf_);
    free(f->by_name_);
    free(f->path);
    free(f);
    *pf = NULL;
}

const struct vka_st_tensor *vka_st_find(const struct vka_st_file *f, const char *name)
{
    if (!f || !name || !f->n_tensors)
        return NULL;
    struct vka_st_tensor key = { .name = name };
    const struct vka_st_tensor *kp = &key;
    const struct vka_st_tensor *const *hit =
        bsearch(&kp, f->by_name_, f->n_tensors, sizeof(*f->by_name_), cmp_tensor_name);
    return hit ? *hit : NULL;
}

const char *vka_st_meta_get(const struct vka_st_file *f, const char *key)
{
    if (!f || !key)
        return NULL;
    for (size_t i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[i].key, key))
            return f->meta[i].value;
    return NULL;
}

static bool same_shape(const struct vka_st_tensor *a, const struct vka_st_tensor *b)
{
    if (a->dtype != b->dtype || a->ndim != b->ndim)
        return false;
    for (uint32_t i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

int vka_st_check(const struct vka_st_file *f, const struct vka_st_tensor *expected,
                 size_t n_expected)
{
    char s1[SHAPE_STR_LEN], s2[SHAPE_STR_LEN];
    if (!f || (n_expected && !expected)) {
        vka_err("vka_st_check: %s is NULL", !f ? "the file" : "the expected list");
        return -EINVAL;
    }
    for (size_t i = 0; i < n_expected; i++) {
        const struct vka_st_tensor *e = &expected[i];
        if (!e->name || (unsigned)e->dtype >= VKA_ST_DTYPE_COUNT || e->ndim > VKA_ST_MAX_DIMS) {
            vka_err("%s: expected tensor %zu is malformed (name, dtype or rank)", f->path, i);
            return -EINVAL;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(expected[j].name, e->name)) {
                vka_err("%s: tensor '%s' is expected twice", f->path, e->name);
                return -EINVAL;
            }
        const struct vka_st_tensor *t = vka_st_find(f, e->name);
        if (!t) {
            vka_err("%s: tensor '%s' (%s %s) is missing", f->path, e->name,
                    dtypes[e->dtype].name, vka_st_shape_str(e, s1, sizeof(s1)));
            return -EINVAL;
        }
        if (!same_shape(t, e)) {
            vka_err("%s: tensor '%s' is %s %s, expected %s %s", f->path, e->name,
                    dtypes[t->dtype].name, vka_st_shape_str(t, s1, sizeof(s1)),
                    dtypes[e->dtype].name, vka_st_shape_str(e, s2, sizeof(s2)));
            return -EINVAL;
        }
    }
    if (f->n_tensors == n_expected)
        return 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const struct vka_st_tensor *t = &f->tensors[i];
        size_t j = 0;
        while (j < n_expected && strcmp(expected[j].name, t->name))
            j++;
        if (j == n_expected) {
            vka_err("%s: unexpected tensor '%s' (%s %s)", f->path, t->name,
                    dtypes[t->dtype].name, vka_st_shape_str(t, s1, sizeof(s1)));
            return -EINVAL;
        }
    }
    return 0;
}
