/* src/tb.c: TensorBoard event files read back by a reader of this file's own, which walks
 * the TFRecord framing, checks both masked CRC-32Cs of every record with a bitwise CRC
 * (not the writer's table) and decodes the Event/Summary/Value/Image protobuf fields
 * strictly (an unknown field, a wrong wire type or a non-canonical form is an error:
 * fields out of order, a zero step or wall_time written). Checked: CRC-32C against
 * published check values; the file_version event first; scalars and images back bit for
 * bit; every single-byte corruption of a file found; a full disk (/dev/full) and a write
 * failing mid-run (RLIMIT_FSIZE) reported with strerror and sticky; arguments refused.
 *
 * VKACCUM_TB_KEEP=DIR makes tb.roundtrip write its run under DIR/run/tb and keep it, for
 * tools/tb_check.py DIR/run. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "common.h"
#include "tb.h"

/* ---- helpers ---- */

static void assert_says(const char *msg, const char *a, const char *b)
{
    cr_assert(strstr(msg, a), "\"%s\" does not say \"%s\"", msg, a);
    if (b)
        cr_assert(strstr(msg, b), "\"%s\" does not say \"%s\"", msg, b);
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "%s: %s", path, strerror(errno));
    cr_assert_eq(fseek(fp, 0, SEEK_END), 0);
    long n = ftell(fp);
    cr_assert_geq(n, 0);
    rewind(fp);
    uint8_t *data = malloc((size_t)n + 1);
    cr_assert_not_null(data);
    cr_assert_eq(fread(data, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return data;
}

static void write_all(const char *path, const uint8_t *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    cr_assert_not_null(fp, "%s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(data, 1, len, fp), len);
    cr_assert_eq(fclose(fp), 0);
}

/* The names of the event files in dir (up to max), sorted; returns their count. */
static size_t event_files(const char *dir, char names[][256], size_t max)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s: %s", dir, strerror(errno));
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "events.out.tfevents.", 20) != 0)
            continue;
        cr_assert_lt(n, max);
        snprintf(names[n++], 256, "%s", e->d_name);
    }
    closedir(d);
    qsort(names, n, 256, (int (*)(const void *, const void *))strcmp);
    return n;
}

/* ---- CRC-32C, bit by bit: the reader's own, independent of the writer's table ---- */

static uint32_t crc32c_bitwise(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

static uint32_t masked(uint32_t c)
{
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

/* ---- a PNG made with zlib: rows of random bytes, filter 0 ---- */

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static size_t png_chunk(uint8_t *out, const char *type, const uint8_t *data, uint32_t n)
{
    put_be32(out, n);
    memcpy(out + 4, type, 4);
    if (n)
        memcpy(out + 8, data, n);
    put_be32(out + 8 + n, (uint32_t)crc32(0, out + 4, 4 + n));
    return 12 + (size_t)n;
}

/* level 0 stores the rows uncompressed: a PNG as large as its pixels */
static uint8_t *make_png(uint32_t w, uint32_t h, uint32_t c, int level, size_t *len)
{
    static const uint8_t types[5] = { 0, 0, 4, 2, 6 }; /* by channel count */
    size_t raw_n = (size_t)h * (1 + (size_t)w * c);
    uint8_t *raw = malloc(raw_n);
    cr_assert_not_null(raw);
    for (size_t i = 0; i < raw_n; i++)
        raw[i] = (uint8_t)test_rand_u64();
    for (uint32_t y = 0; y < h; y++)
        raw[(size_t)y * (1 + (size_t)w * c)] = 0;
    uLongf z_n = compressBound((uLong)raw_n);
    uint8_t *z = malloc(z_n);
    cr_assert_not_null(z);
    cr_assert_eq(compress2(z, &z_n, raw, (uLong)raw_n, level), Z_OK);
    uint8_t *png = malloc(8 + 25 + 12 + z_n + 12);
    cr_assert_not_null(png);
    memcpy(png, "\x89PNG\r\n\x1a\n", 8);
    uint8_t ihdr[13] = { 0 };
    put_be32(ihdr, w);
    put_be32(ihdr + 4, h);
    ihdr[8] = 8;
    ihdr[9] = types[c];
    size_t n = 8;
    n += png_chunk(png + n, "IHDR", ihdr, 13);
    n += png_chunk(png + n, "IDAT", z, (uint32_t)z_n);
    n += png_chunk(png + n, "IEND", NULL, 0);
    free(raw);
    free(z);
    *len = n;
    return png;
}

/* ---- the reader: TFRecord framing and a strict protobuf decoder ---- */

struct rvalue {
    char tag[4100]; /* the writer's cap is 4096 bytes */
    int kind; /* 0 none, 1 simple_value, 2 image */
    uint32_t simple_bits;
    int64_t height, width, colorspace;
    const uint8_t *png; /* into the file's bytes */
    size_t png_len;
};

struct revent {
    double wall_time;
    int64_t step;
    bool has_version, has_summary;
    char file_version[64];
    size_t nvalues;
    struct rvalue values[2];
};

struct pb {
    const uint8_t *p, *end;
};

static bool pb_varint(struct pb *b, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (b->p >= b->end)
            return false;
        uint8_t x = *b->p++;
        *v |= (uint64_t)(x & 0x7f) << shift;
        if (!(x & 0x80))
            return shift < 63 || x <= 1; /* a tenth byte carries one bit */
    }
    return false;
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << 8 * i;
    return v;
}

/* One field: its number and wire type; a varint or fixed value in *u, a length-delimited
 * payload in *sub. */
static bool pb_field(struct pb *b, uint32_t *field, uint32_t *wt, uint64_t *u, struct pb *sub)
{
    uint64_t key;
    if (!pb_varint(b, &key) || key >> 3 == 0 || key >> 3 > 0x1fffffff)
        return false;
    *field = (uint32_t)(key >> 3);
    *wt = (uint32_t)(key & 7);
    size_t left = (size_t)(b->end - b->p);
    switch (*wt) {
    case 0:
        return pb_varint(b, u);
    case 1:
    case 5: {
        int n = *wt == 1 ? 8 : 4;
        if (left < (size_t)n)
            return false;
        *u = le(b->p, n);
        b->p += n;
        return true;
    }
    case 2:
        if (!pb_varint(b, u) || *u > (uint64_t)(b->end - b->p))
            return false;
        sub->p = b->p;
        sub->end = b->p + *u;
        b->p += *u;
        return true;
    default:
        return false;
    }
}

#define FAIL(...) (snprintf(err, errsz, __VA_ARGS__), false)
#define FAIL_R(...) (snprintf(err, errsz, __VA_ARGS__), -1)

static bool decode_image(struct pb b, struct rvalue *v, char *err, size_t errsz)
{
    uint32_t f, wt, last = 0;
    uint64_t u;
    struct pb sub;
    while (b.p < b.end) {
        if (!pb_field(&b, &f, &wt, &u, &sub))
            return FAIL("Image: malformed field");
        if (f <= last)
            return FAIL("Image: field %u after field %u (not canonical)", f, last);
        last = f;
        if (f >= 1 && f <= 3 && wt == 0)
            *(f == 1 ? &v->height : f == 2 ? &v->width : &v->colorspace) = (int64_t)u;
        else if (f == 4 && wt == 2)
            v->png = sub.p, v->png_len = (size_t)(sub.end - sub.p);
        else
            return FAIL("Image: unexpected field %u (wire type %u)", f, wt);
    }
    return true;
}

static bool decode_value(struct pb b, struct rvalue *v, char *err, size_t errsz)
{
    uint32_t f, wt, last = 0;
    uint64_t u;
    struct pb sub;
    while (b.p < b.end) {
        if (!pb_field(&b, &f, &wt, &u, &sub))
            return FAIL("Value: malformed field");
        if (f <= last)
            return FAIL("Value: field %u after field %u (not canonical)", f, last);
        last = f;
        if (f == 1 && wt == 2) {
            size_t n = (size_t)(sub.end - sub.p);
            if (n >= sizeof(v->tag))
                return FAIL("Value: tag of %zu bytes", n);
            memcpy(v->tag, sub.p, n);
            v->tag[n] = '\0';
        } else if (f == 2 && wt == 5) {
            v->kind = 1, v->simple_bits = (uint32_t)u;
        } else if (f == 4 && wt == 2) {
            v->kind = 2;
            if (!decode_image(sub, v, err, errsz))
                return false;
        } else {
            return FAIL("Value: unexpected field %u (wire type %u)", f, wt);
        }
    }
    return true;
}

static bool decode_event(struct pb b, struct revent *ev, char *err, size_t errsz)
{
    *ev = (struct revent){ 0 };
    uint32_t f, wt, last = 0;
    uint64_t u;
    struct pb sub, inner;
    while (b.p < b.end) {
        if (!pb_field(&b, &f, &wt, &u, &sub))
            return FAIL("Event: malformed field");
        if (f <= last)
            return FAIL("Event: field %u after field %u (not canonical)", f, last);
        last = f;
        /* proto3 leaves out a zero step and a wall_time of all-zero bits */
        if ((f == 1 || f == 2) && u == 0)
            return FAIL("Event: field %u written as zero (not canonical)", f);
        if (f == 1 && wt == 1) {
            memcpy(&ev->wall_time, &u, 8);
        } else if (f == 2 && wt == 0) {
            ev->step = (int64_t)u;
        } else if (f == 3 && wt == 2) {
            size_t n = (size_t)(sub.end - sub.p);
            if (n >= sizeof(ev->file_version))
                return FAIL("Event: file_version of %zu bytes", n);
            memcpy(ev->file_version, sub.p, n);
            ev->has_version = true;
        } else if (f == 5 && wt == 2) {
            ev->has_summary = true;
            while (sub.p < sub.end) {
                uint32_t sf, swt;
                if (!pb_field(&sub, &sf, &swt, &u, &inner) || sf != 1 || swt != 2)
                    return FAIL("Summary: a field other than value");
                if (ev->nvalues == 2)
                    return FAIL("Summary: more than 2 values");
                if (!decode_value(inner, &ev->values[ev->nvalues++], err, errsz))
                    return false;
            }
        } else {
            return FAIL("Event: unexpected field %u (wire type %u)", f, wt);
        }
    }
    return true;
}

/* Reads every record of data (len bytes); *n: how many decoded before the first error.
 * Returns 0, or -1 with the error in err. */
static int read_events(const uint8_t *data, size_t len, struct revent *ev, size_t max,
                       size_t *n, char *err, size_t errsz)
{
    size_t pos = 0;
    *n = 0;
    err[0] = '\0';
    for (size_t k = 0; pos < len; k++) {
        if (len - pos < 12)
            return FAIL_R("record %zu: truncated header (%zu bytes)", k, len - pos);
        uint64_t dlen = le(data + pos, 8);
        uint32_t hcrc = (uint32_t)le(data + pos + 8, 4);
        if (hcrc != masked(crc32c_bitwise(data + pos, 8)))
            return FAIL_R("record %zu at byte %zu: length CRC mismatch", k, pos);
        if (dlen > len - pos - 12 || len - pos - 12 - dlen < 4)
            return FAIL_R("record %zu: truncated data (%llu bytes announced)", k,
                        (unsigned long long)dlen);
        const uint8_t *d = data + pos + 12;
        uint32_t dcrc = (uint32_t)le(d + dlen, 4);
        if (dcrc != masked(crc32c_bitwise(d, dlen)))
            return FAIL_R("record %zu at byte %zu: data CRC mismatch", k, pos);
        if (*n == max)
            return FAIL_R("more than %zu records", max);
        char sub[200];
        if (!decode_event((struct pb){ d, d + dlen }, &ev[*n], sub, sizeof(sub)))
            return FAIL_R("record %zu: %s", k, sub);
        (*n)++;
        pos += 12 + dlen + 4;
    }
    return 0;
}

/* ---- tests ---- */

Test(tb, crc32c_check_values)
{
    test_seed("tb.crc32c_check_values");
    const char *check = "123456789";
    cr_assert_eq(vka_crc32c(0, check, 9), 0xE3069283u, "crc32c(\"123456789\") = 0x%08X",
                 vka_crc32c(0, check, 9));
    cr_assert_eq(crc32c_bitwise((const uint8_t *)check, 9), 0xE3069283u);
    /* RFC 3720 (iSCSI) B.4: 32 bytes of 0x00, of 0xff, and 0, 1, ..., 31 */
    uint8_t buf[512];
    memset(buf, 0, 32);
    cr_assert_eq(vka_crc32c(0, buf, 32), 0x8A9136AAu);
    memset(buf, 0xff, 32);
    cr_assert_eq(vka_crc32c(0, buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    cr_assert_eq(vka_crc32c(0, buf, 32), 0x46DD794Eu);
    cr_assert_eq(vka_crc32c(0, NULL, 0), 0u);
    /* the table against the bitwise CRC on random bytes, whole and in two parts */
    for (int t = 0; t < 200; t++) {
        size_t n = test_rand_range(0, sizeof(buf));
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)test_rand_u64();
        size_t cut = test_rand_range(0, (uint32_t)n);
        uint32_t ref = crc32c_bitwise(buf, n);
        cr_assert_eq(vka_crc32c(0, buf, n), ref, "%zu bytes", n);
        cr_assert_eq(vka_crc32c(vka_crc32c(0, buf, cut), buf + cut, n - cut), ref,
                     "%zu bytes cut at %zu", n, cut);
    }
}

struct scalar {
    const char *tag;
    int64_t step;
    double wall;
    uint32_t bits;
};

Test(tb, roundtrip)
{
    test_seed("tb.roundtrip");
    const char *keep = getenv("VKACCUM_TB_KEEP");
    char *base = keep ? strdup(keep) : test_tmpdir("vka_tb");
    const char *dir = test_path("%s/run/tb", base); /* neither folder exists yet */
    double t0 = vka_tb_wall_time();
    struct vka_tb *tb = NULL;
    cr_assert_eq(vka_tb_open(dir, &tb), 0, "%s", vka_last_error());
    cr_assert_not_null(tb);

    /* the name: DIR/events.out.tfevents.<10 digits>.<host>.<pid>.<n>.vkaccum */
    const char *path = vka_tb_path(tb);
    size_t dl = strlen(dir);
    cr_assert(strncmp(path, dir, dl) == 0 && path[dl] == '/', "%s", path);
    const char *name = path + dl + 1;
    cr_assert(strncmp(name, "events.out.tfevents.", 20) == 0, "%s", name);
    for (int i = 0; i < 10; i++)
        cr_assert(name[20 + i] >= '0' && name[20 + i] <= '9', "%s", name);
    cr_assert_eq(name[30], '.', "%s", name);
    cr_assert(strstr(name, test_path(".%ld.", (long)getpid())), "%s has no pid", name);
    size_t nl = strlen(name);
    cr_assert(nl > 8 && strcmp(name + nl - 8, ".vkaccum") == 0, "%s", name);

    /* zero step and wall time (fields left out), negative and large steps, a tag of
     * several bytes per character, and values that only a bit-exact path keeps */
    const struct scalar sc[] = {
        { "train/loss", 0, 0.0, test_float_bits(1.0708f) },
        { "train/loss", 1, t0 + 0.125, test_float_bits(-0.0f) },
        { "train/lr", 2, t0 + 1.5, test_float_bits(1.94e-3f) },
        { "train/loss", 3, -0.0, 0x7fc00000u },           /* quiet NaN */
        { "train/loss", 4, t0, 0x7f800000u },             /* +inf */
        { "val/mIoU", 250, t0 + 60.0, 0x00000001u },      /* smallest denormal */
        { "val/mIoU", (int64_t)1 << 40, 1e300, 0x7f7fffffu }, /* FLT_MAX */
        { "x/négatif-Δ", -7, -1.0, test_float_bits(-3.25f) },
    };
    const size_t ns = sizeof(sc) / sizeof(sc[0]);
    for (size_t i = 0; i < ns; i++)
        cr_assert_eq(vka_tb_scalar(tb, sc[i].tag, sc[i].step, sc[i].wall,
                                   test_bits_float(sc[i].bits)), 0, "%s", vka_last_error());

    /* images of 1 to 4 channels; the RGBA one stored uncompressed, bigger than stdio's
     * buffer */
    struct {
        uint32_t w, h, c;
        int level;
        uint8_t *png;
        size_t len;
    } im[4] = { { 13, 7, 3, 6, 0, 0 }, { 5, 4, 1, 9, 0, 0 }, { 3, 2, 2, 1, 0, 0 },
                { 64, 48, 4, 0, 0, 0 } };
    for (int i = 0; i < 4; i++) {
        im[i].png = make_png(im[i].w, im[i].h, im[i].c, im[i].level, &im[i].len);
        cr_assert_eq(vka_tb_image_png(tb, i == 3 ? "samples/grid" : "val/overlay", 100 + i,
                                      t0 + i, im[i].w, im[i].h, im[i].c, im[i].png,
                                      im[i].len),
                     0, "%s", vka_last_error());
    }
    cr_assert_gt(im[3].len, 12000);

    /* after a flush a reader sees every event while the file is still open */
    cr_assert_eq(vka_tb_flush(tb), 0, "%s", vka_last_error());
    char *path_copy = strdup(path);
    size_t len;
    uint8_t *data = read_all(path_copy, &len);
    struct revent ev[32];
    size_t n;
    char err[256];
    cr_assert_eq(read_events(data, len, ev, 32, &n, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(n, 1 + ns + 4);
    free(data);
    cr_assert_eq(vka_tb_close(&tb), 0, "%s", vka_last_error());
    cr_assert_null(tb);

    data = read_all(path_copy, &len);
    cr_assert_eq(read_events(data, len, ev, 32, &n, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(n, 1 + ns + 4);
    cr_assert(ev[0].has_version && !ev[0].has_summary);
    cr_assert_str_eq(ev[0].file_version, "brain.Event:2");
    cr_assert_eq(ev[0].step, 0);
    cr_assert(ev[0].wall_time >= t0 - 1 && ev[0].wall_time <= vka_tb_wall_time() + 1,
              "file_version wall_time %f, opened at %f", ev[0].wall_time, t0);
    for (size_t i = 0; i < ns; i++) {
        const struct revent *e = &ev[1 + i];
        cr_assert(e->has_summary && !e->has_version && e->nvalues == 1, "event %zu", i);
        cr_assert_str_eq(e->values[0].tag, sc[i].tag);
        cr_assert_eq(e->step, sc[i].step, "event %zu: step %lld", i, (long long)e->step);
        cr_assert_eq(memcmp(&e->wall_time, &sc[i].wall, 8), 0, "event %zu: wall_time %.17g",
                     i, e->wall_time);
        cr_assert_eq(e->values[0].kind, 1);
        cr_assert_eq(e->values[0].simple_bits, sc[i].bits, "event %zu: 0x%08x", i,
                     e->values[0].simple_bits);
    }
    for (int i = 0; i < 4; i++) {
        const struct revent *e = &ev[1 + ns + (size_t)i];
        const struct rvalue *v = &e->values[0];
        cr_assert(e->has_summary && e->nvalues == 1 && v->kind == 2, "image %d", i);
        cr_assert_str_eq(v->tag, i == 3 ? "samples/grid" : "val/overlay");
        cr_assert_eq(e->step, 100 + i);
        cr_assert_eq(e->wall_time, t0 + i);
        cr_assert_eq(v->width, im[i].w);
        cr_assert_eq(v->height, im[i].h);
        cr_assert_eq(v->colorspace, im[i].c);
        cr_assert_eq(v->png_len, im[i].len);
        cr_assert_eq(memcmp(v->png, im[i].png, im[i].len), 0, "image %d: PNG bytes differ", i);
        free(im[i].png);
    }
    free(data);

    /* a second open within the same second gets a file of its own */
    cr_assert_eq(vka_tb_open(dir, &tb), 0, "%s", vka_last_error());
    cr_assert_str_neq(vka_tb_path(tb), path_copy);
    cr_assert_eq(vka_tb_close(&tb), 0, "%s", vka_last_error());
    char names[4][256];
    cr_assert_eq(event_files(dir, names, 4), 2);
    free(path_copy);
    if (keep) {
        fprintf(stderr, "tb.roundtrip: kept %s (tools/tb_check.py %s/run)\n", dir, keep);
        free(base);
    } else {
        test_tmpdir_remove(&base);
    }
}

/* Any single changed byte of a file is found: the length CRC guards the 8 length bytes,
 * the data CRC the event, and each CRC guards itself by having to match. */
Test(tb, reader_finds_every_corrupted_byte)
{
    test_seed("tb.reader_finds_every_corrupted_byte");
    char *dir = test_tmpdir("vka_tb");
    struct vka_tb *tb;
    cr_assert_eq(vka_tb_open(dir, &tb), 0, "%s", vka_last_error());
    size_t plen;
    uint8_t *png = make_png(4, 3, 3, 6, &plen);
    cr_assert_eq(vka_tb_scalar(tb, "loss", 1, 1e9, 0.5f), 0);
    cr_assert_eq(vka_tb_image_png(tb, "img", 2, 1e9 + 1, 4, 3, 3, png, plen), 0);
    cr_assert_eq(vka_tb_scalar(tb, "loss", 3, 1e9 + 2, 0.25f), 0);
    char *path = strdup(vka_tb_path(tb));
    cr_assert_eq(vka_tb_close(&tb), 0, "%s", vka_last_error());
    size_t len;
    uint8_t *data = read_all(path, &len);
    struct revent ev[8];
    size_t n;
    char err[256];
    cr_assert_eq(read_events(data, len, ev, 8, &n, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(n, 4);
    size_t first = 12 + le(data, 8) + 4; /* where the scalar's record starts */

    for (size_t i = 0; i < len; i++) {
        uint8_t x = (uint8_t)(1u << test_rand_range(0, 7)) | (uint8_t)test_rand_u64();
        data[i] ^= x;
        int ret = read_events(data, len, ev, 8, &n, err, sizeof(err));
        data[i] ^= x;
        cr_assert_eq(ret, -1, "byte %zu ^ 0x%02x not found", i, x);
        /* a changed length byte breaks the length CRC before anything else */
        if (i >= first && i < first + 8)
            assert_says(err, "record 1 ", "length CRC mismatch");
        if (i >= first + 12 && i < first + 12 + le(data + first, 8) + 4)
            assert_says(err, "record 1 ", "data CRC mismatch");
    }
    /* a cut anywhere but between records is found too, and the whole records before it
     * still read */
    size_t ends[4], whole = 0;
    for (size_t k = 0, pos = 0; k < 4; k++)
        ends[k] = pos += 12 + le(data + pos, 8) + 4;
    cr_assert_eq(ends[3], len);
    for (size_t cut = 1; cut < len; cut++) {
        int ret = read_events(data, cut, ev, 8, &n, err, sizeof(err));
        if (whole < 4 && cut == ends[whole]) {
            whole++;
            cr_assert_eq(ret, 0, "cut at the end of record %zu: %s", whole - 1, err);
            cr_assert_eq(n, whole);
            continue;
        }
        cr_assert_eq(ret, -1, "cut at %zu not found", cut);
        assert_says(err, "truncated", NULL);
        cr_assert_eq(n, whole, "cut at %zu", cut);
    }
    /* the file itself, changed on disk, through the same reader */
    data[len / 2] ^= 0x40;
    write_all(path, data, len);
    free(data);
    data = read_all(path, &len);
    cr_assert_eq(read_events(data, len, ev, 8, &n, err, sizeof(err)), -1);
    assert_says(err, "CRC mismatch", NULL);
    free(data);
    free(png);
    free(path);
    test_tmpdir_remove(&dir);
}

Test(tb, full_disk_reported_at_open)
{
    struct vka_tb *tb = (struct vka_tb *)1;
    vka_clear_error();
    cr_assert_eq(vka_tb_open_file("/dev/full", &tb), -ENOSPC, "%s", vka_last_error());
    cr_assert_null(tb);
    assert_says(vka_last_error(), "/dev/full: cannot write the file_version event",
                strerror(ENOSPC));
    /* /dev/full is still a device, never removed or replaced */
    struct stat st;
    cr_assert_eq(stat("/dev/full", &st), 0);
    cr_assert(S_ISCHR(st.st_mode));
}

/* A write failing mid-run (the file size limit standing for a disk filling up) is
 * reported naming the file and the event, and every later call returns it. */
Test(tb, write_error_mid_run_is_sticky)
{
    test_seed("tb.write_error_mid_run_is_sticky");
    char *dir = test_tmpdir("vka_tb");
    struct vka_tb *tb;
    cr_assert_eq(vka_tb_open(dir, &tb), 0, "%s", vka_last_error());
    char *path = strdup(vka_tb_path(tb));
    cr_assert_eq(vka_tb_scalar(tb, "loss", 1, 1.0, 2.0f), 0);
    cr_assert_eq(vka_tb_flush(tb), 0);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);

    size_t plen;
    uint8_t *png = make_png(64, 64, 4, 0, &plen); /* stored: 16 KiB and more */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim, low;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &lim), 0);
    low = (struct rlimit){ .rlim_cur = (rlim_t)st.st_size + 100, .rlim_max = lim.rlim_max };
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &low), 0);
    vka_clear_error();
    int ret = vka_tb_image_png(tb, "samples/grid", 2, 2.0, 64, 64, 4, png, plen);
    if (ret == 0) /* had stdio kept it all buffered, the flush writes it */
        ret = vka_tb_flush(tb);
    cr_assert_eq(ret, -EFBIG, "got %d: %s", ret, vka_last_error());
    assert_says(vka_last_error(), path, strerror(EFBIG));

    cr_assert_eq(vka_tb_scalar(tb, "loss", 3, 3.0, 1.0f), -EFBIG);
    assert_says(vka_last_error(), path, "an earlier write failed");
    cr_assert_eq(vka_tb_flush(tb), -EFBIG);
    cr_assert_eq(vka_tb_image_png(tb, "samples/grid", 4, 4.0, 64, 64, 4, png, plen), -EFBIG);
    vka_clear_error();
    cr_assert_eq(vka_tb_close(&tb), -EFBIG);
    cr_assert_str_eq(vka_last_error(), "", "close logged the error twice");
    cr_assert_null(tb);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);

    /* what was flushed before the failure still reads; the cut record ends the file */
    size_t len;
    uint8_t *data = read_all(path, &len);
    struct revent ev[8];
    size_t n;
    char err[256];
    cr_assert_eq(read_events(data, len, ev, 8, &n, err, sizeof(err)), -1);
    assert_says(err, "record 2", "truncated");
    cr_assert_eq(n, 2);
    cr_assert_str_eq(ev[0].file_version, "brain.Event:2");
    cr_assert_eq(ev[1].values[0].simple_bits, test_float_bits(2.0f));
    free(data);
    free(png);
    free(path);
    test_tmpdir_remove(&dir);
}

Test(tb, arguments_refused)
{
    test_seed("tb.arguments_refused");
    char *dir = test_tmpdir("vka_tb");
    struct vka_tb *tb = NULL;
    cr_assert_eq(vka_tb_open(NULL, &tb), -EINVAL);
    cr_assert_eq(vka_tb_open("", &tb), -EINVAL);
    cr_assert_eq(vka_tb_open(dir, NULL), -EINVAL);
    cr_assert_eq(vka_tb_open_file("", &tb), -EINVAL);
    cr_assert_null(tb);

    /* a file where the folder should be, or where one of its parents should be */
    const char *file = test_path("%s/file", dir);
    write_all(file, (const uint8_t *)"x", 1);
    cr_assert_eq(vka_tb_open(file, &tb), -ENOTDIR, "%s", vka_last_error());
    assert_says(vka_last_error(), file, "not a folder");
    const char *under = test_path("%s/file/tb", dir);
    cr_assert_eq(vka_tb_open(under, &tb), -ENOTDIR, "%s", vka_last_error());
    assert_says(vka_last_error(), under, "cannot create the folder");
    cr_assert_eq(vka_tb_open_file(test_path("%s/no/such/file", dir), &tb), -ENOENT);
    assert_says(vka_last_error(), "no/such/file", "cannot create the event file");
    cr_assert_null(tb);

    cr_assert_eq(vka_tb_open(dir, &tb), 0, "%s", vka_last_error());
    char *path = strdup(vka_tb_path(tb));
    size_t plen;
    uint8_t *png = make_png(6, 5, 3, 6, &plen);
    cr_assert_eq(vka_tb_scalar(NULL, "a", 0, 0, 0), -EINVAL);
    cr_assert_eq(vka_tb_scalar(tb, NULL, 0, 0, 0), -EINVAL);
    cr_assert_eq(vka_tb_scalar(tb, "", 0, 0, 0), -EINVAL);
    assert_says(vka_last_error(), "the tag is empty", NULL);
    cr_assert_eq(vka_tb_scalar(tb, "bad\xff", 0, 0, 0), -EINVAL);
    assert_says(vka_last_error(), "UTF-8", NULL);
    cr_assert_eq(vka_tb_scalar(tb, "\xed\xa0\x80", 0, 0, 0), -EINVAL); /* a surrogate */
    cr_assert_eq(vka_tb_scalar(tb, "\xc0\xaf", 0, 0, 0), -EINVAL);     /* overlong '/' */
    cr_assert_eq(vka_tb_scalar(tb, "\xe2\x82", 0, 0, 0), -EINVAL);     /* cut short */
    char *long_tag = malloc(5000);
    memset(long_tag, 'a', 4999);
    long_tag[4999] = '\0';
    cr_assert_eq(vka_tb_scalar(tb, long_tag, 0, 0, 0), -EINVAL);
    long_tag[4096] = '\0';
    cr_assert_eq(vka_tb_scalar(tb, long_tag, 5, 0, 0), 0, "%s", vka_last_error());
    free(long_tag);

    cr_assert_eq(vka_tb_image_png(tb, "im", 0, 0, 5, 6, 3, png, plen), -EINVAL);
    assert_says(vka_last_error(), "the PNG is 6x5 of colour type 2", "not 5x6 with 3");
    cr_assert_eq(vka_tb_image_png(tb, "im", 0, 0, 6, 5, 4, png, plen), -EINVAL);
    cr_assert_eq(vka_tb_image_png(tb, "im", 0, 0, 6, 5, 0, png, plen), -EINVAL);
    cr_assert_eq(vka_tb_image_png(tb, "im", 0, 0, 6, 5, 5, png, plen), -EINVAL);
    cr_assert_eq(vka_tb_image_png(tb, "im", 0, 0, 0, 5, 3, png, plen), -EINVAL);
    cr_assert_eq(vka_tb_image_png(tb, "im", 0, 0, 6, 5, 3, NULL, plen), -EINVAL);
    cr_assert_eq(vka_tb_image_png(tb, "im", 0, 0, 6, 5, 3, png, 20), -EINVAL);
    assert_says(vka_last_error(), "not a PNG", NULL);
    png[1] = 'Q';
    cr_assert_eq(vka_tb_image_png(tb, "im", 0, 0, 6, 5, 3, png, plen), -EINVAL);
    png[1] = 'P';
    cr_assert_eq(vka_tb_image_png(tb, "", 0, 0, 6, 5, 3, png, plen), -EINVAL);
    cr_assert_eq(vka_tb_flush(NULL), -EINVAL);

    /* nothing refused reached the file: the first event and the 4096-byte tag only */
    cr_assert_eq(vka_tb_close(&tb), 0, "%s", vka_last_error());
    cr_assert_eq(vka_tb_close(&tb), 0);
    cr_assert_eq(vka_tb_close(NULL), 0);
    size_t len;
    uint8_t *data = read_all(path, &len);
    struct revent ev[8];
    size_t n;
    char err[256];
    cr_assert_eq(read_events(data, len, ev, 8, &n, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(n, 2);
    cr_assert_eq(strlen(ev[1].values[0].tag), 4096);
    cr_assert_eq(ev[1].step, 5);
    cr_assert_eq(len, 12 + le(data, 8) + 4 + 12 + le(data + 12 + le(data, 8) + 4, 8) + 4);
    free(data);
    free(png);
    free(path);
    test_tmpdir_remove(&dir);
}
