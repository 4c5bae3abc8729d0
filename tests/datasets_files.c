/* File writers for tests/test_datasets.c: a temporary folder per test, PNG, BMP and TGA
 * through stb_image_write, flat-block baseline JPEGs, indexed PNGs through libspng,
 * IDX .gz files through zlib, the simple folder layout and Cityscapes and ADE20K
 * samples. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spng.h>
#include <zlib.h>

/* stb_image_write for PNG, BMP and TGA. Its JPEG writer shifts signed ints past the
 * sign bit (stbiw__jpg_writeBits), which UBSan reports, so JPEGs come from flat_jpeg. */
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#endif
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include "datasets_files.h"

static char tmp_root[256];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    chmod(path, 0700);
    return remove(path);
}

void tmp_cleanup(void)
{
    if (tmp_root[0])
        nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    tmp_root[0] = '\0';
}

const char *tmp_make(void)
{
    tmp_cleanup();
    snprintf(tmp_root, sizeof(tmp_root), "/tmp/vka_datasets_XXXXXX");
    cr_assert(mkdtemp(tmp_root), "mkdtemp: %s", strerror(errno));
    return tmp_root;
}

void mkdirs(const char *path)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    mkdir(buf, 0755);
}

const char *P(const char *fmt, ...)
{
    static char ring[16][512];
    static int at;
    char *s = ring[at++ % 16];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s, 512, fmt, ap);
    va_end(ap);
    return s;
}

void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "%s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

uint8_t *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n + 1);
    cr_assert(b);
    cr_assert_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

void truncate_to(const char *path, double frac)
{
    size_t n;
    uint8_t *b = read_bytes(path, &n);
    write_bytes(path, b, (size_t)((double)n * frac));
    free(b);
}

uint8_t *rand_bytes(size_t n, uint32_t below)
{
    uint8_t *b = malloc(n);
    cr_assert(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)test_rand_range(0, below - 1);
    return b;
}

void png(const char *path, uint32_t w, uint32_t h, uint32_t c, const uint8_t *px)
{
    cr_assert(stbi_write_png(path, (int)w, (int)h, (int)c, px, (int)(w * c)), "%s", path);
}

void write_bmp(const char *path, uint32_t w, uint32_t h, uint32_t c, const uint8_t *px)
{
    cr_assert(stbi_write_bmp(path, (int)w, (int)h, (int)c, px), "%s", path);
}

void write_tga(const char *path, uint32_t w, uint32_t h, uint32_t c, const uint8_t *px)
{
    cr_assert(stbi_write_tga(path, (int)w, (int)h, (int)c, px), "%s", path);
}

/* A baseline JPEG whose 8x8 blocks are flat: each block holds only its DC coefficient
 * (quantiser 1), so a decoder gives back the levels exactly. comps 1 (grey) or 3
 * (YCbCr, no subsampling); lv[(by * bw + bx) * comps + k] is the level of component k
 * in block (bx, by), bw = ceil(w / 8). */
struct jbuf {
    uint8_t *b;
    size_t n, cap;
    uint32_t acc;
    int cnt;
};

static void jbyte(struct jbuf *o, uint8_t v)
{
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 1024;
        o->b = realloc(o->b, o->cap);
        cr_assert(o->b);
    }
    o->b[o->n++] = v;
}

static void jbytes(struct jbuf *o, const uint8_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        jbyte(o, v[i]);
}

static void jbits(struct jbuf *o, uint32_t code, int len)
{
    for (int i = len - 1; i >= 0; i--) {
        o->acc = (o->acc << 1) | ((code >> i) & 1);
        if (++o->cnt == 8) {
            jbyte(o, (uint8_t)o->acc);
            if (o->acc == 0xff)
                jbyte(o, 0);
            o->acc = 0;
            o->cnt = 0;
        }
    }
}

void flat_jpeg(const char *path, uint32_t w, uint32_t h, uint32_t comps,
                      const uint8_t *lv)
{
    const uint8_t dc_bits[16] = { 0, 1, 5, 1, 1, 1, 1, 1, 1 };
    uint16_t code[12];
    uint8_t len[12];
    for (uint32_t l = 1, k = 0, c = 0; l <= 16; l++, c <<= 1)
        for (uint32_t i = 0; i < dc_bits[l - 1]; i++, k++, c++) {
            code[k] = (uint16_t)c;
            len[k] = (uint8_t)l;
        }
    struct jbuf o = { 0 };
    const uint8_t soi[] = { 0xff, 0xd8, 0xff, 0xdb, 0, 67, 0 };
    jbytes(&o, soi, sizeof(soi));
    for (int i = 0; i < 64; i++)
        jbyte(&o, 1);
    const uint8_t sof[] = { 0xff, 0xc0, 0, (uint8_t)(8 + 3 * comps), 8, (uint8_t)(h >> 8),
                            (uint8_t)h, (uint8_t)(w >> 8), (uint8_t)w, (uint8_t)comps };
    jbytes(&o, sof, sizeof(sof));
    for (uint32_t k = 0; k < comps; k++) {
        const uint8_t c[3] = { (uint8_t)(k + 1), 0x11, 0 };
        jbytes(&o, c, 3);
    }
    const uint8_t dht_dc[] = { 0xff, 0xc4, 0, 31, 0x00 };
    jbytes(&o, dht_dc, sizeof(dht_dc));
    jbytes(&o, dc_bits, 16);
    for (uint8_t v = 0; v < 12; v++)
        jbyte(&o, v);
    const uint8_t dht_ac[] = { 0xff, 0xc4, 0, 20, 0x10, 1, 0, 0, 0, 0, 0, 0, 0,
                               0,    0,    0, 0,  0,    0, 0, 0, 0x00 }; /* EOB = "0" */
    jbytes(&o, dht_ac, sizeof(dht_ac));
    const uint8_t sos[] = { 0xff, 0xda, 0, (uint8_t)(6 + 2 * comps), (uint8_t)comps };
    jbytes(&o, sos, sizeof(sos));
    for (uint32_t k = 0; k < comps; k++) {
        const uint8_t c[2] = { (uint8_t)(k + 1), 0x00 };
        jbytes(&o, c, 2);
    }
    const uint8_t sos_tail[] = { 0, 63, 0 };
    jbytes(&o, sos_tail, 3);
    int pred[3] = { 0, 0, 0 };
    uint32_t bw = (w + 7) / 8, bh = (h + 7) / 8;
    for (uint32_t b = 0; b < bw * bh; b++)
        for (uint32_t k = 0; k < comps; k++) {
            int dc = 8 * ((int)lv[b * comps + k] - 128), diff = dc - pred[k];
            pred[k] = dc;
            uint32_t mag = (uint32_t)abs(diff), cat = 0;
            while (mag >> cat)
                cat++;
            jbits(&o, code[cat], len[cat]);
            if (cat)
                jbits(&o, (uint32_t)(diff >= 0 ? diff : diff + (1 << cat) - 1), (int)cat);
            jbits(&o, 0, 1); /* EOB */
        }
    while (o.cnt)
        jbits(&o, 1, 1);
    const uint8_t eoi[] = { 0xff, 0xd9 };
    jbytes(&o, eoi, 2);
    write_bytes(path, o.b, o.n);
    free(o.b);
}

/* A flat-block grey JPEG of random levels; writes the expected pixels into px. */
void rand_jpeg(const char *path, uint32_t w, uint32_t h, uint8_t *px)
{
    uint32_t bw = (w + 7) / 8, bh = (h + 7) / 8;
    uint8_t *lv = rand_bytes((size_t)bw * bh, 256);
    flat_jpeg(path, w, h, 1, lv);
    for (uint32_t y = 0; px && y < h; y++)
        for (uint32_t x = 0; x < w; x++)
            px[y * w + x] = lv[(y / 8) * bw + x / 8];
    free(lv);
}

/* A mask of ids below classes with a few 255 (ignored) pixels. */
uint8_t *rand_mask(uint32_t w, uint32_t h, uint32_t classes)
{
    uint8_t *m = rand_bytes((size_t)w * h, classes);
    for (uint32_t i = 0; i < w * h; i += 7)
        m[i] = 255;
    return m;
}

/* DIR/split/{images,masks} with n samples s<i> of w x h, image formats cycling. */
void make_folder(const char *root, const char *split, uint32_t n, uint32_t w,
                        uint32_t h, uint32_t classes)
{
    mkdirs(P("%s/%s/images", root, split));
    mkdirs(P("%s/%s/masks", root, split));
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *img = rand_bytes((size_t)w * h * 3, 256), *m = rand_mask(w, h, classes);
        const char *ip = P("%s/%s/images/s%02u", root, split, i);
        switch (i % 3) {
        case 0: png(P("%s.png", ip), w, h, 3, img); break;
        case 1: write_bmp(P("%s.bmp", ip), w, h, 3, img); break;
        default: write_tga(P("%s.tga", ip), w, h, 3, img); break;
        }
        png(P("%s/%s/masks/s%02u.png", root, split, i), w, h, 1, m);
        free(img);
        free(m);
    }
}

void make_cityscapes_sample(const char *root, const char *split, const char *city, uint32_t n,
                            uint32_t w, uint32_t h, const uint8_t *ids)
{
    const char *idir = P("%s/leftImg8bit/%s/%s", root, split, city);
    const char *mdir = P("%s/gtFine/%s/%s", root, split, city);
    mkdirs(idir);
    mkdirs(mdir);
    const char *stem = P("%s_000000_%06u", city, n);
    uint8_t *rgb = rand_bytes((size_t)w * h * 3, 256);
    png(P("%s/%s_leftImg8bit.png", idir, stem), w, h, 3, rgb);
    png(P("%s/%s_gtFine_labelIds.png", mdir, stem), w, h, 1, ids);
    png(P("%s/%s_gtFine_color.png", mdir, stem), w, h, 3, rgb);
    png(P("%s/%s_gtFine_instanceIds.png", mdir, stem), w, h, 1, ids);
    write_bytes(P("%s/%s_gtFine_polygons.json", mdir, stem), "{}", 2);
    free(rgb);
}

void make_ade20k_sample(const char *root, const char *split, const char *name, uint32_t w,
                        uint32_t h, const uint8_t *ann)
{
    mkdirs(P("%s/images/%s", root, split));
    mkdirs(P("%s/annotations/%s", root, split));
    rand_jpeg(P("%s/images/%s/%s.jpg", root, split, name), w, h, NULL);
    png(P("%s/annotations/%s/%s.png", root, split, name), w, h, 1, ann);
}

void indexed_png(const char *path, uint32_t w, uint32_t h, const uint8_t *idx)
{
    spng_ctx *enc = spng_ctx_new(SPNG_CTX_ENCODER);
    cr_assert(enc);
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    cr_assert_eq(spng_set_png_file(enc, f), 0);
    struct spng_ihdr ih = { .width = w, .height = h, .bit_depth = 8,
                            .color_type = SPNG_COLOR_TYPE_INDEXED };
    cr_assert_eq(spng_set_ihdr(enc, &ih), 0);
    struct spng_plte plte = { .n_entries = 256 };
    for (uint32_t i = 0; i < 256; i++) /* the VOC colour map */
        for (uint32_t b = 0, c = i; b < 8; b++, c >>= 3) {
            plte.entries[i].red |= (uint8_t)(((c >> 0) & 1) << (7 - b));
            plte.entries[i].green |= (uint8_t)(((c >> 1) & 1) << (7 - b));
            plte.entries[i].blue |= (uint8_t)(((c >> 2) & 1) << (7 - b));
        }
    cr_assert_eq(spng_set_plte(enc, &plte), 0);
    int e = spng_encode_image(enc, idx, (size_t)w * h, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
    cr_assert_eq(e, 0, "%s", spng_strerror(e));
    spng_ctx_free(enc);
    fclose(f);
}

void write_idx(const char *path, const uint8_t *head, size_t hn, const uint8_t *data,
                      size_t n)
{
    gzFile f = gzopen(path, "wb");
    cr_assert(f);
    cr_assert_eq(gzwrite(f, head, (unsigned)hn), (int)hn);
    if (n)
        cr_assert_eq(gzwrite(f, data, (unsigned)n), (int)n);
    gzclose(f);
}

static FILE *captured;
static int saved_fd = -1;

void stderr_begin(void)
{
    cr_assert_null(captured, "stderr_begin twice");
    fflush(stderr);
    captured = tmpfile();
    cr_assert(captured, "tmpfile: %s", strerror(errno));
    saved_fd = dup(STDERR_FILENO);
    cr_assert_geq(saved_fd, 0, "dup: %s", strerror(errno));
    cr_assert_geq(dup2(fileno(captured), STDERR_FILENO), 0, "dup2: %s", strerror(errno));
}

char *stderr_end(void)
{
    cr_assert(captured, "stderr_end without stderr_begin");
    fflush(stderr);
    dup2(saved_fd, STDERR_FILENO);
    close(saved_fd);
    saved_fd = -1;
    /* the writes went through fd 2, past this FILE's buffer: its size is the file's */
    struct stat st;
    cr_assert_eq(fstat(fileno(captured), &st), 0);
    size_t n = (size_t)st.st_size;
    char *text = malloc(n + 1);
    cr_assert(text);
    rewind(captured);
    size_t got = fread(text, 1, n, captured);
    text[got] = '\0';
    fclose(captured);
    captured = NULL;
    return text;
}
