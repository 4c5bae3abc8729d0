/* TensorBoard event files (see tb.h): TFRecord framing, CRC-32C and a hand-written
 * protobuf encoder for the few fields written.
 *
 * Field numbers, from tensorboard/compat/proto/event.proto and summary.proto (the copies
 * of tensorflow/core/util/event.proto and tensorflow/core/framework/summary.proto that
 * TensorBoard reads with, package "tensorboard", proto3):
 *   Event         { double wall_time = 1; int64 step = 2;
 *                   oneof what { string file_version = 3; Summary summary = 5; } }
 *   Summary       { repeated Value value = 1; }
 *   Summary.Value { string tag = 1;
 *                   oneof value { float simple_value = 2; Image image = 4; } }
 *   Summary.Image { int32 height = 1; int32 width = 2; int32 colorspace = 3;
 *                   bytes encoded_image_string = 4; }
 * TensorBoard still reads these legacy simple_value and image values: its data_compat.py
 * migrates them to the scalar and image plugins' tensors on load.
 *
 * Encoding is canonical proto3, as protobuf's own serializers emit it: fields in number
 * order; wall_time and step left out when zero (implicit presence), oneof members always
 * written. tools/tb_check.py re-serializes every parsed event and compares the bytes.
 *
 * TFRecord (tensorboard/summary/writer/record_writer.py), all little-endian:
 *   uint64 length, uint32 masked_crc32c(the 8 length bytes), data, uint32 masked_crc32c(data)
 * with masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (mod 2^32). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "tb.h"

#define FILE_VERSION "brain.Event:2"
#define HOST_MAX 64                      /* of the host name in a file name */
#define TAG_MAX 4096                     /* bytes of a tag: a guard, TensorBoard has none */
#define PNG_MAX ((size_t)1 << 30)        /* protobuf messages must stay under 2 GiB */
#define PREFIX_MAX (TAG_MAX + 64)        /* an event's bytes before a PNG's */

/* Protobuf wire types. */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

struct vka_tb {
    FILE *fp;
    char *path;
    int err;                  /* errno of the first failed write; 0 while all is well */
    uint8_t buf[PREFIX_MAX];  /* the event being encoded (an image's PNG stays apart) */
};

/* ---- CRC-32C ---- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        crc_table[i] = c;
    }
}

uint32_t vka_crc32c(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&crc_once, crc_init);
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < len; i++)
        crc = crc_table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
    return ~crc;
}

/* TFRecord masks its CRCs so that a CRC of data that embeds CRCs stays strong. */
static uint32_t crc_mask(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

/* ---- protobuf encoding into a buffer sized beforehand ---- */

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    for (; v >= 0x80; v >>= 7)
        n++;
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    for (; v >= 0x80; v >>= 7)
        *p++ = (uint8_t)(v | 0x80);
    *p++ = (uint8_t)v;
    return p;
}

/* Every field number here is below 16: each key is one byte. */
static uint8_t *put_key(uint8_t *p, unsigned field, unsigned wire_type)
{
    return put_varint(p, (uint64_t)(field << 3 | wire_type));
}

static uint8_t *put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        *p++ = (uint8_t)(v >> 8 * i);
    return p;
}

static uint8_t *put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        *p++ = (uint8_t)(v >> 8 * i);
    return p;
}

/* A length-delimited field's key and length, its payload to follow. */
static uint8_t *put_len(uint8_t *p, unsigned field, size_t len)
{
    return put_varint(put_key(p, field, WT_LEN), len);
}

static size_t len_field_size(size_t len)
{
    return 1 + varint_size(len) + len;
}

/* The value of one summary event: a scalar, or an image whose PNG bytes are written after
 * the encoded prefix, straight from the caller's buffer. */
struct value {
    const char *tag;
    size_t tag_len;
    bool is_image;
    float scalar;
    uint32_t w, h, c;
    size_t png_len;
};

/* Encodes Event{wall_time, step, file_version | summary{value}} into tb->buf, all but
 * the PNG's bytes (they end the event: encoded_image_string is Image's last field, Image
 * Value's last, Value Summary's only, Summary Event's last). Returns the prefix length;
 * the event is prefix + png_len bytes. */
static size_t encode_event(struct vka_tb *tb, double wall_time, int64_t step,
                           const struct value *v)
{
    uint64_t wall_bits;
    memcpy(&wall_bits, &wall_time, sizeof(wall_bits));
    uint8_t *p = tb->buf;
    /* proto3 leaves a zero double out by its bits, so -0.0 is written, as C++ does */
    if (wall_bits != 0) {
        p = put_key(p, 1, WT_I64);
        p = put_le64(p, wall_bits);
    }
    if (step != 0) {
        p = put_key(p, 2, WT_VARINT);
        p = put_varint(p, (uint64_t)step); /* int64: negatives take ten bytes */
    }
    if (!v) {
        size_t n = strlen(FILE_VERSION);
        p = put_len(p, 3, n);
        memcpy(p, FILE_VERSION, n);
        return (size_t)(p + n - tb->buf);
    }
    size_t image = 0;
    if (v->is_image)
        image = 1 + varint_size(v->h) + 1 + varint_size(v->w) + 1 + varint_size(v->c) +
                len_field_size(v->png_len);
    size_t value = len_field_size(v->tag_len) + (v->is_image ? len_field_size(image) : 1 + 4);
    size_t summary = len_field_size(value);
    p = put_len(p, 5, summary);
    p = put_len(p, 1, value);
    p = put_len(p, 1, v->tag_len);
    memcpy(p, v->tag, v->tag_len);
    p += v->tag_len;
    if (v->is_image) {
        p = put_len(p, 4, image);
        p = put_varint(put_key(p, 1, WT_VARINT), v->h);
        p = put_varint(put_key(p, 2, WT_VARINT), v->w);
        p = put_varint(put_key(p, 3, WT_VARINT), v->c);
        p = put_len(p, 4, v->png_len);
    } else {
        uint32_t bits;
        memcpy(&bits, &v->scalar, sizeof(bits));
        p = put_le32(put_key(p, 2, WT_I32), bits);
    }
    return (size_t)(p - tb->buf);
}

/* ---- writing ---- */

/* Refuses to write after a failed write: the file ends in a cut record. */
static int check_failed(const struct vka_tb *tb)
{
    if (!tb->err)
        return 0;
    vka_err("%s: not written: an earlier write failed (%s)", tb->path, strerror(tb->err));
    return -tb->err;
}

static int write_failed(struct vka_tb *tb, const char *what)
{
    /* a short fwrite leaves the errno of the write(2) that failed; EIO if it left none */
    tb->err = errno ? errno : EIO;
    vka_err("%s: cannot write %s: %s", tb->path, what, strerror(tb->err));
    return -tb->err;
}

/* One TFRecord around the event a (na bytes) followed by b (nb bytes). */
static int write_record(struct vka_tb *tb, const void *a, size_t na, const void *b, size_t nb,
                        const char *what)
{
    uint8_t head[12], foot[4];
    put_le64(head, (uint64_t)(na + nb));
    put_le32(head + 8, crc_mask(vka_crc32c(0, head, 8)));
    put_le32(foot, crc_mask(vka_crc32c(vka_crc32c(0, a, na), b, nb)));
    errno = 0;
    if (fwrite(head, 1, sizeof(head), tb->fp) != sizeof(head) ||
        fwrite(a, 1, na, tb->fp) != na || (nb && fwrite(b, 1, nb, tb->fp) != nb) ||
        fwrite(foot, 1, sizeof(foot), tb->fp) != sizeof(foot))
        return write_failed(tb, what);
    return 0;
}

static int flush(struct vka_tb *tb, const char *what)
{
    errno = 0;
    if (fflush(tb->fp) != 0)
        return write_failed(tb, what);
    return 0;
}

/* ---- opening and closing ---- */

/* mkdir -p; the folder must end up a folder. */
static int make_dirs(const char *dir)
{
    size_t n = strlen(dir);
    char *tmp = malloc(n + 1);
    if (!tmp) {
        vka_err("%s: out of memory", dir);
        return -ENOMEM;
    }
    memcpy(tmp, dir, n + 1);
    int ret = 0;
    for (size_t i = 1; i <= n && !ret; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        char keep = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
            ret = -errno;
            vka_err("%s: cannot create the folder %s: %s", dir, tmp, strerror(errno));
        }
        tmp[i] = keep;
    }
    free(tmp);
    if (ret)
        return ret;
    struct stat st;
    if (stat(dir, &st) != 0) {
        vka_err("%s: cannot stat the folder: %s", dir, strerror(errno));
        return -errno;
    }
    if (!S_ISDIR(st.st_mode)) {
        vka_err("%s: not a folder: cannot put TensorBoard event files in it", dir);
        return -ENOTDIR;
    }
    return 0;
}

/* Takes fd; writes the first event. removable: the file is ours (created with O_EXCL)
 * and is removed on a failure, so that a folder holds no event file without one. */
static int start(char *path, int fd, bool removable, struct vka_tb **out)
{
    int ret = 0;
    struct vka_tb *tb = calloc(1, sizeof(*tb));
    if (!tb) {
        vka_err("%s: out of memory", path);
        close(fd);
        ret = -ENOMEM;
        goto fail;
    }
    tb->fp = fdopen(fd, "wb");
    if (!tb->fp) {
        ret = -errno;
        vka_err("%s: cannot open the event file as a stream: %s", path, strerror(-ret));
        close(fd);
        goto fail;
    }
    tb->path = path;
    size_t n = encode_event(tb, vka_tb_wall_time(), 0, NULL);
    if ((ret = write_record(tb, tb->buf, n, NULL, 0, "the file_version event")) < 0 ||
        (ret = flush(tb, "the file_version event")) < 0) {
        fclose(tb->fp); /* its error is the one just reported */
        goto fail;
    }
    *out = tb;
    return 0;

fail:
    if (removable)
        unlink(path);
    free(path);
    free(tb);
    return ret;
}

int vka_tb_open_file(const char *path, struct vka_tb **tb)
{
    if (!tb) {
        vka_err("vka_tb_open_file: tb is NULL");
        return -EINVAL;
    }
    *tb = NULL;
    if (!path || !*path) {
        vka_err("vka_tb_open_file: the path is %s", path ? "empty" : "NULL");
        return -EINVAL;
    }
    char *copy = strdup(path);
    if (!copy) {
        vka_err("%s: out of memory", path);
        return -ENOMEM;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        int e = errno;
        vka_err("%s: cannot create the event file: %s", path, strerror(e));
        free(copy);
        return -e;
    }
    return start(copy, fd, false, tb);
}

/* The host name as it may stand in a file name (TensorFlow puts it there too). */
static void host_name(char *out, size_t size)
{
    if (gethostname(out, size) != 0 || !out[0])
        snprintf(out, size, "localhost");
    out[size - 1] = '\0';
    for (char *s = out; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            *s = '_';
}

int vka_tb_open(const char *dir, struct vka_tb **tb)
{
    static atomic_uint opens;
    if (!tb) {
        vka_err("vka_tb_open: tb is NULL");
        return -EINVAL;
    }
    *tb = NULL;
    if (!dir || !*dir) {
        vka_err("vka_tb_open: the folder is %s", dir ? "empty" : "NULL");
        return -EINVAL;
    }
    int ret = make_dirs(dir);
    if (ret < 0)
        return ret;
    char host[HOST_MAX + 1];
    host_name(host, sizeof(host));
    /* TensorBoard takes any name holding "tfevents"; TensorFlow's own writers start with
     * events.out.tfevents.<10-digit seconds>, which keeps a folder's files in time order */
    const char *fmt = "%s/events.out.tfevents.%010lld.%s.%ld.%u.vkaccum";
    long long secs = (long long)time(NULL);
    long pid = (long)getpid();
    unsigned n = atomic_fetch_add(&opens, 1u);
    int len = snprintf(NULL, 0, fmt, dir, secs, host, pid, n);
    char *path = len > 0 ? malloc((size_t)len + 1) : NULL;
    if (!path) {
        vka_err("%s: out of memory", dir);
        return -ENOMEM;
    }
    snprintf(path, (size_t)len + 1, fmt, dir, secs, host, pid, n);
    /* O_EXCL: a file of another writer (another host on a shared folder) is never
     * truncated */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) {
        int e = errno;
        vka_err("%s: cannot create the event file: %s", path, strerror(e));
        free(path);
        return -e;
    }
    return start(path, fd, true, tb);
}

const char *vka_tb_path(const struct vka_tb *tb)
{
    return tb ? tb->path : NULL;
}

double vka_tb_wall_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int vka_tb_flush(struct vka_tb *tb)
{
    if (!tb) {
        vka_err("vka_tb_flush: tb is NULL");
        return -EINVAL;
    }
    int ret = check_failed(tb);
    return ret ? ret : flush(tb, "buffered events (flush)");
}

int vka_tb_close(struct vka_tb **ptb)
{
    if (!ptb || !*ptb)
        return 0;
    struct vka_tb *tb = *ptb;
    *ptb = NULL;
    int ret = tb->err ? -tb->err : 0;
    if (!ret)
        ret = flush(tb, "buffered events (flush at close)");
    errno = 0;
    if (fclose(tb->fp) != 0 && !ret) {
        ret = errno ? -errno : -EIO;
        vka_err("%s: cannot close the event file: %s", tb->path, strerror(-ret));
    }
    free(tb->path);
    free(tb);
    return ret;
}

/* ---- events ---- */

/* Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF): a proto3
 * string that is not valid UTF-8 makes protobuf's parsers refuse the whole event. */
static bool utf8_valid(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t b = s[i];
        size_t k;
        uint32_t cp, min;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xe0) == 0xc0) {
            k = 1, cp = b & 0x1fu, min = 0x80;
        } else if ((b & 0xf0) == 0xe0) {
            k = 2, cp = b & 0x0fu, min = 0x800;
        } else if ((b & 0xf8) == 0xf0) {
            k = 3, cp = b & 0x07u, min = 0x10000;
        } else {
            return false;
        }
        if (n - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + j] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

/* Checks tb and tag at the public boundary; fills v's tag. */
static int check_tag(const char *fn, const struct vka_tb *tb, const char *tag, struct value *v)
{
    if (!tb) {
        vka_err("%s: tb is NULL", fn);
        return -EINVAL;
    }
    if (!tag || !*tag) {
        vka_err("%s: %s: the tag is %s", fn, tb->path, tag ? "empty" : "NULL");
        return -EINVAL;
    }
    size_t n = strnlen(tag, TAG_MAX + 1);
    if (n > TAG_MAX) {
        vka_err("%s: %s: a tag of over %d bytes (%.40s...)", fn, tb->path, TAG_MAX, tag);
        return -EINVAL;
    }
    if (!utf8_valid((const uint8_t *)tag, n)) {
        vka_err("%s: %s: the tag is not valid UTF-8, which TensorBoard's protobuf parser "
                "refuses", fn, tb->path);
        return -EINVAL;
    }
    v->tag = tag;
    v->tag_len = n;
    return 0;
}

int vka_tb_scalar(struct vka_tb *tb, const char *tag, int64_t step, double wall_time,
                  float value)
{
    struct value v = { .scalar = value };
    int ret = check_tag("vka_tb_scalar", tb, tag, &v);
    if (ret || (ret = check_failed(tb)))
        return ret;
    size_t n = encode_event(tb, wall_time, step, &v);
    char what[96];
    snprintf(what, sizeof(what), "scalar '%.40s' (step %lld)", tag, (long long)step);
    return write_record(tb, tb->buf, n, NULL, 0, what);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The PNG's signature and IHDR (width, height, colour type) against what the caller says:
 * TensorBoard shows the stored size, so a mismatch would mislabel the image. */
static int check_png(const struct vka_tb *tb, const char *tag, uint32_t w, uint32_t h,
                     uint32_t c, const uint8_t *png, size_t len)
{
    static const uint8_t sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
    const char *fn = "vka_tb_image_png";
    if (w < 1 || h < 1 || w > INT32_MAX || h > INT32_MAX || c < 1 || c > 4) {
        vka_err("%s: %s: image '%s' of %ux%u with %u channels: needs 1 to 2^31-1 pixels "
                "a side and 1 to 4 channels", fn, tb->path, tag, w, h, c);
        return -EINVAL;
    }
    if (!png || len > PNG_MAX) {
        vka_err("%s: %s: image '%s': %s", fn, tb->path, tag,
                png ? "a PNG over the 1 GiB cap" : "png is NULL");
        return -EINVAL;
    }
    /* signature, IHDR length and type, 13 bytes of IHDR data: 29 bytes at least */
    if (len < 29 || memcmp(png, sig, 8) != 0 || memcmp(png + 12, "IHDR", 4) != 0) {
        vka_err("%s: %s: image '%s': the %zu bytes given are not a PNG (no signature and "
                "IHDR)", fn, tb->path, tag, len);
        return -EINVAL;
    }
    uint32_t pw = be32(png + 16), ph = be32(png + 20);
    uint8_t type = png[25];
    /* colour types 0 grey, 2 RGB, 3 palette (RGB, RGBA with a tRNS chunk), 4 grey+alpha,
     * 6 RGBA */
    static const int8_t channels[7] = { 1, -1, 3, 3, 2, -1, 4 };
    int pc = type < 7 ? channels[type] : -1;
    bool ok_c = pc > 0 && (c == (uint32_t)pc || (type == 3 && c == 4));
    if (pw != w || ph != h || !ok_c) {
        vka_err("%s: %s: image '%s': the PNG is %ux%u of colour type %u, not %ux%u with %u "
                "channels as given", fn, tb->path, tag, pw, ph, type, w, h, c);
        return -EINVAL;
    }
    return 0;
}

int vka_tb_image_png(struct vka_tb *tb, const char *tag, int64_t step, double wall_time,
                     uint32_t w, uint32_t h, uint32_t c, const void *png, size_t len)
{
    struct value v = { .is_image = true, .w = w, .h = h, .c = c, .png_len = len };
    int ret = check_tag("vka_tb_image_png", tb, tag, &v);
    if (ret || (ret = check_png(tb, tag, w, h, c, png, len)) || (ret = check_failed(tb)))
        return ret;
    size_t n = encode_event(tb, wall_time, step, &v);
    char what[96];
    snprintf(what, sizeof(what), "image '%.40s' (step %lld)", tag, (long long)step);
    return write_record(tb, tb->buf, n, png, len, what);
}
