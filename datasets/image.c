/* Image files: reading a file whole, recognising PNG/JPEG/BMP/TGA by their magic bytes,
 * parsing their headers ourselves (so that a header claiming absurd dimensions is
 * refused before stb_image allocates anything), checking their structure for
 * truncation, and decoding with stb_image, compiled here with STBI_MAX_DIMENSIONS and
 * only the four formats (Debian's prebuilt libstb sets no options). */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/internal.h"
#include "file.h"

#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_MAX_DIMENSIONS VKA_IMAGE_MAX_SIDE
#define STBI_NO_STDIO
#define STBI_NO_GIF
#define STBI_NO_PSD
#define STBI_NO_HDR
#define STBI_NO_PIC
#define STBI_NO_PNM
#define STBI_NO_LINEAR
#define STBI_FAILURE_USERMSG
#if defined(__GNUC__)
/* stb_image 2.27 declares stbi_set_unpremultiply_on_load_thread static and never
 * defines it under STB_IMAGE_STATIC; GCC reports that at the end of the file. */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wcast-qual"
#endif
#include <stb/stb_image.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

void vka_seterr(char *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, VKA_ERRLEN, fmt, ap);
    va_end(ap);
}

void vka_image_free(struct vka_image *img)
{
    if (!img)
        return;
    free(img->data);
    *img = (struct vka_image){ 0 };
}

/* src/file.c opens and reads (a FIFO or a device among the images is refused at once);
 * the message goes to err so that the caller chooses between an error and a warning. */
int vka_file_read(const char *path, size_t max, uint8_t **buf, size_t *len, char *err)
{
    char *data;
    int ret = vka_read_whole_msg(path, max, &data, len, err, VKA_ERRLEN);
    *buf = (uint8_t *)data;
    return ret;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t le16(const uint8_t *p) { return (uint32_t)p[1] << 8 | p[0]; }
static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static const char *fmt_name[] = { "?", "PNG", "JPEG", "BMP", "TGA" };

static int check_dims(const char *path, const char *fmt, int64_t w, int64_t h, char *err)
{
    if (w <= 0 || h <= 0) {
        vka_seterr(err, "%s: %s header claims %lldx%lld pixels", path, fmt, (long long)w,
                   (long long)h);
        return -EINVAL;
    }
    if (w > VKA_IMAGE_MAX_SIDE || h > VKA_IMAGE_MAX_SIDE ||
        (uint64_t)w * (uint64_t)h > VKA_IMAGE_MAX_PIXELS) {
        vka_seterr(err, "%s: %s header claims %lldx%lld pixels, more than the limit of %u "
                   "per side and %u pixels (corrupt?)", path, fmt, (long long)w,
                   (long long)h, VKA_IMAGE_MAX_SIDE, VKA_IMAGE_MAX_PIXELS);
        return -EFBIG;
    }
    return 0;
}

/* PNG: signature, IHDR first, and whole chunks up to IEND. */
static int sniff_png(const char *path, const uint8_t *b, size_t n,
                     struct vka_image_info *info, char *err)
{
    if (n < 33 || be32(b + 8) != 13 || memcmp(b + 12, "IHDR", 4)) {
        vka_seterr(err, "%s: PNG without an IHDR chunk (truncated or corrupt)", path);
        return -EINVAL;
    }
    int ret = check_dims(path, "PNG", be32(b + 16), be32(b + 20), err);
    if (ret)
        return ret;
    static const uint8_t chans[7] = { 1, 0, 3, 3, 2, 0, 4 };
    uint8_t ct = b[25];
    if (ct > 6 || !chans[ct]) {
        vka_seterr(err, "%s: PNG colour type %u is not valid", path, ct);
        return -EINVAL;
    }
    for (size_t p = 8;;) {
        if (n - p < 12) {
            vka_seterr(err, "%s: truncated PNG (it ends inside a chunk, before IEND)", path);
            return -EINVAL;
        }
        uint32_t len = be32(b + p);
        if (!memcmp(b + p + 4, "IEND", 4))
            break;
        if (len > n - p - 12) {
            vka_seterr(err, "%s: truncated PNG (a %.4s chunk of %u bytes passes the end)", path,
                       (const char *)(b + p + 4), len);
            return -EINVAL;
        }
        p += 12 + (size_t)len;
    }
    *info = (struct vka_image_info){ VKA_FMT_PNG, be32(b + 16), be32(b + 20), chans[ct] };
    return 0;
}

static uint8_t byte_at(const uint8_t *b, size_t n, size_t i) { return i < n ? b[i] : 0; }

/* stb_image 2.27 trusts a JPEG's Huffman tables (2.28 checks them): the 16 code counts of
 * a DHT table may add up to more than 256, the size of its arrays, which it then writes
 * past; and a scan may use a table that no DHT defined, which it then reads from
 * uninitialised memory (a decode that changes from run to run, shifts past 31 bits).
 * Both are refused before it runs. The segments are walked as the decoder walks them
 * (bytes between segments skipped, a table read on past its segment's end and as zeros
 * past the file's), the entropy-coded data after an SOS skipped to the next marker (FF
 * then neither 00, RSTn nor another FF); where the decoder's walk could part from this
 * one, it stops decoding, so every table and scan it reads is seen here. */
static int jpeg_check_tables(const char *path, const uint8_t *b, size_t n, char *err)
{
    static const char *cls[2] = { "DC", "AC" };
    uint32_t defined = 0; /* bit 4 * class + id: Huffman table id of class (0 DC, 1 AC) */
    int progressive = -1; /* no frame header yet */
    size_t p = 2;
    while (p < n) {
        if (b[p++] != 0xff)
            continue;
        while (p < n && b[p] == 0xff)
            p++;
        if (p >= n)
            break;
        uint8_t m = b[p++];
        if (m == 0xd9)
            break;
        if (m == 0x00 || m == 0x01 || m == 0xd8 || (m >= 0xd0 && m <= 0xd7) || p + 2 > n)
            continue;
        size_t len = be16(b + p);
        for (size_t q = p + 2, left = len > 2 ? len - 2 : 0; m == 0xc4 && left && q < n;) {
            uint32_t codes = 0, tc = b[q] >> 4, th = b[q] & 15;
            for (size_t i = q + 1; i < q + 17 && i < n; i++)
                codes += b[i];
            if (codes > 256) {
                vka_seterr(err, "%s: corrupt JPEG (a Huffman table of %u codes, more than 256)",
                           path, codes);
                return -EINVAL;
            }
            if (tc <= 1 && th <= 3)
                defined |= 1u << (4 * tc + th);
            q += 17 + codes;
            left = left > 17 + codes ? left - 17 - codes : 0;
        }
        if (progressive < 0 && m >= 0xc0 && m <= 0xc2)
            progressive = m == 0xc2;
        uint32_t ns = byte_at(b, n, p + 2);
        size_t ss = p + 3 + 2 * (size_t)ns; /* Ss, Se, Ah << 4 | Al */
        /* sequential scans decode with both tables; progressive ones: DC first scans
         * with the DC table, AC scans with the AC table, DC refinements with none */
        bool first_dc = !byte_at(b, n, ss) && !(byte_at(b, n, ss + 2) >> 4);
        bool use[2] = { progressive == 0 || first_dc, progressive == 0 || byte_at(b, n, ss) };
        for (uint32_t i = 0; m == 0xda && progressive >= 0 && ns <= 4 && i < ns; i++)
            for (uint32_t c = 0; c < 2; c++) {
                uint8_t sel = byte_at(b, n, p + 4 + 2 * i); /* DC << 4 | AC */
                uint32_t id = c ? sel & 15u : sel >> 4;
                if (use[c] && id <= 3 && !(defined >> (4 * c + id) & 1)) {
                    vka_seterr(err, "%s: corrupt JPEG (a scan uses %s Huffman table %u, which "
                               "no DHT segment defines)", path, cls[c], id);
                    return -EINVAL;
                }
            }
        p += len;
        while (m == 0xda && p < n) {
            if (b[p] != 0xff) {
                p++;
                continue;
            }
            size_t q = p + 1;
            while (q < n && b[q] == 0xff)
                q++;
            if (q < n && b[q] != 0x00 && (b[q] < 0xd0 || b[q] > 0xd7))
                break;
            p = q;
        }
    }
    return 0;
}

/* JPEG: walk the markers to the first SOFn; an EOI (FF D9) must follow it. */
static int sniff_jpeg(const char *path, const uint8_t *b, size_t n,
                      struct vka_image_info *info, char *err)
{
    size_t p = 2;
    for (;;) {
        while (p < n && b[p] != 0xff)
            p++;
        while (p < n && b[p] == 0xff)
            p++;
        if (p + 1 >= n) {
            vka_seterr(err, "%s: truncated JPEG (no frame header)", path);
            return -EINVAL;
        }
        uint8_t m = b[p++];
        if (m == 0xd8 || m == 0x01 || (m >= 0xd0 && m <= 0xd7))
            continue;
        if (m == 0xda || m == 0xd9) {
            vka_seterr(err, "%s: corrupt JPEG (scan data before a frame header)", path);
            return -EINVAL;
        }
        if (p + 2 > n) {
            vka_seterr(err, "%s: truncated JPEG (no frame header)", path);
            return -EINVAL;
        }
        uint32_t len = be16(b + p);
        if (len < 2) {
            vka_seterr(err, "%s: corrupt JPEG (segment of length %u)", path, len);
            return -EINVAL;
        }
        if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) {
            if (p + 8 > n || len < 8) {
                vka_seterr(err, "%s: truncated JPEG (frame header)", path);
                return -EINVAL;
            }
            uint32_t h = be16(b + p + 3), w = be16(b + p + 5), c = b[p + 7];
            int ret = check_dims(path, "JPEG", w, h, err);
            if (ret)
                return ret;
            if (c != 1 && c != 3 && c != 4) {
                vka_seterr(err, "%s: JPEG with %u components", path, c);
                return -EINVAL;
            }
            *info = (struct vka_image_info){ VKA_FMT_JPEG, w, h, c == 1 ? 1 : 3 };
            break;
        }
        p += len;
    }
    /* entropy-coded data stuffs every FF with 00 and embedded thumbnails sit inside
     * APPn segments (skipped above), so an FF D9 after the frame header is the end */
    for (const uint8_t *q = b + p; (q = memchr(q, 0xff, (size_t)(b + n - q))) && q + 1 < b + n;
         q++)
        if (q[1] == 0xd9)
            return jpeg_check_tables(path, b, n, err);
    vka_seterr(err, "%s: truncated JPEG (no end-of-image marker)", path);
    return -EINVAL;
}

/* BMP: BITMAPFILEHEADER + an info header; uncompressed data must fit in the file. */
static int sniff_bmp(const char *path, const uint8_t *b, size_t n,
                     struct vka_image_info *info, char *err)
{
    uint32_t hs = n >= 18 ? le32(b + 14) : 0;
    if (n < 26 || n < 14ull + hs) {
        vka_seterr(err, "%s: truncated BMP header", path);
        return -EINVAL;
    }
    uint32_t off = le32(b + 10);
    int64_t w, h;
    uint32_t bpp, comp = 0;
    if (hs == 12) {
        w = le16(b + 18);
        h = le16(b + 20);
        bpp = le16(b + 24);
    } else if (hs >= 40) {
        w = (int32_t)le32(b + 18);
        h = (int32_t)le32(b + 22);
        bpp = le16(b + 28);
        comp = le32(b + 30);
    } else {
        vka_seterr(err, "%s: BMP info header of %u bytes is not supported", path, hs);
        return -EINVAL;
    }
    if (h < 0)
        h = -h;
    int ret = check_dims(path, "BMP", w, h, err);
    if (ret)
        return ret;
    if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 16 && bpp != 24 && bpp != 32) {
        vka_seterr(err, "%s: BMP with %u bits per pixel", path, bpp);
        return -EINVAL;
    }
    if (comp == 0 || comp == 3 || comp == 6) {
        uint64_t row = ((uint64_t)w * bpp + 31) / 32 * 4;
        if ((uint64_t)off + row * (uint64_t)h > n) {
            vka_seterr(err, "%s: truncated BMP (%zu bytes, the pixel data needs %llu)", path,
                       n, (unsigned long long)(off + row * (uint64_t)h));
            return -EINVAL;
        }
    }
    *info = (struct vka_image_info){ VKA_FMT_BMP, (uint32_t)w, (uint32_t)h,
                                     bpp == 32 ? 4u : 3u };
    return 0;
}

/* TGA has no magic: taken only for a .tga name; uncompressed data must fit. */
static int sniff_tga(const char *path, const uint8_t *b, size_t n,
                     struct vka_image_info *info, char *err)
{
    if (n < 18) {
        vka_seterr(err, "%s: truncated TGA header", path);
        return -EINVAL;
    }
    uint32_t type = b[2], bpp = b[16];
    if (type != 1 && type != 2 && type != 3 && type != 9 && type != 10 && type != 11) {
        vka_seterr(err, "%s: not a TGA image (image type %u)", path, type);
        return -EINVAL;
    }
    int ret = check_dims(path, "TGA", le16(b + 12), le16(b + 14), err);
    if (ret)
        return ret;
    if (bpp != 8 && bpp != 15 && bpp != 16 && bpp != 24 && bpp != 32) {
        vka_seterr(err, "%s: TGA with %u bits per pixel", path, bpp);
        return -EINVAL;
    }
    if (type <= 3) {
        uint64_t need = 18ull + b[0] + (uint64_t)le16(b + 5) * ((b[7] + 7u) / 8) +
                        (uint64_t)le16(b + 12) * le16(b + 14) * ((bpp + 7) / 8);
        if (need > n) {
            vka_seterr(err, "%s: truncated TGA (%zu bytes, the pixel data needs %llu)", path,
                       n, (unsigned long long)need);
            return -EINVAL;
        }
    }
    uint32_t c = type == 3 || type == 11 ? 1 : bpp == 32 ? 4 : 3;
    *info = (struct vka_image_info){ VKA_FMT_TGA, le16(b + 12), le16(b + 14), c };
    return 0;
}

int vka_image_sniff(const char *path, const uint8_t *b, size_t n,
                    struct vka_image_info *info, char *err)
{
    if (n == 0) {
        vka_seterr(err, "%s: empty file", path);
        return -EINVAL;
    }
    if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8))
        return sniff_png(path, b, n, info, err);
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        return sniff_jpeg(path, b, n, info, err);
    if (n >= 2 && b[0] == 'B' && b[1] == 'M')
        return sniff_bmp(path, b, n, info, err);
    if (vka_has_ext(path, ".tga"))
        return sniff_tga(path, b, n, info, err);
    char hex[16] = "";
    for (size_t i = 0; i < 4 && i < n; i++)
        snprintf(hex + 3 * i, sizeof(hex) - 3 * i, "%02x ", b[i]);
    vka_seterr(err, "%s: not a PNG, JPEG, BMP or TGA image (it starts with %s)", path, hex);
    return -EINVAL;
}

/* stb_image 2.27 copies each IDAT chunk into a buffer that it allocates at the first
 * non-empty one: an empty IDAT before that makes it offset a null pointer (undefined
 * behaviour, which the fuzz target's UBSan reports). The compressed stream is the same
 * without empty IDATs, so they are dropped before decoding (sniff_png has checked that the
 * chunks are whole up to IEND). */
static void png_drop_empty_idat(uint8_t *b, size_t *n)
{
    size_t p = 8, q = 8; /* read and write offsets */
    for (;;) {
        bool end = !memcmp(b + p + 4, "IEND", 4);
        uint32_t len = be32(b + p);
        size_t sz = end ? *n - p : 12 + (size_t)len;
        if (end || len || memcmp(b + p + 4, "IDAT", 4)) {
            memmove(b + q, b + p, sz);
            q += sz;
        }
        if (end)
            break;
        p += sz;
    }
    *n = q;
}

static int probe_mem(const char *path, const uint8_t *b, size_t n,
                     struct vka_image_info *info, char *err)
{
    int ret = vka_image_sniff(path, b, n, info, err);
    if (ret)
        return ret;
    int w, h, c;
    if (n > INT_MAX || !stbi_info_from_memory(b, (int)n, &w, &h, &c)) {
        vka_seterr(err, "%s: unreadable %s: %s", path, fmt_name[info->format],
                   stbi_failure_reason() ? stbi_failure_reason() : "too large");
        return -EINVAL;
    }
    /* stb_image 2.27's BMP info gives a top-down BMP's height as stored, negative (its
     * loader takes the absolute value); sniff_bmp has refused |h| over the cap */
    if (info->format == VKA_FMT_BMP && h < 0)
        h = -h;
    if ((uint32_t)w != info->w || (uint32_t)h != info->h) {
        vka_seterr(err, "%s: corrupt %s (header says %ux%u, the decoder %dx%d)", path,
                   fmt_name[info->format], info->w, info->h, w, h);
        return -EINVAL;
    }
    return 0;
}

int vka_image_probe_err(const char *path, struct vka_image_info *info, char *err)
{
    uint8_t *b;
    size_t n;
    int ret = vka_file_read(path, VKA_FILE_MAX, &b, &n, err);
    if (ret)
        return ret;
    ret = probe_mem(path, b, n, info, err);
    free(b);
    return ret;
}

int vka_image_read_err(const char *path, uint32_t channels, struct vka_image *img,
                       char *err)
{
    *img = (struct vka_image){ 0 };
    if (channels > 4 || channels == 2) {
        vka_seterr(err, "%s: channels must be 0, 1 or 3 (not %u)", path, channels);
        return -EINVAL;
    }
    uint8_t *b;
    size_t n;
    struct vka_image_info info;
    int ret = vka_file_read(path, VKA_FILE_MAX, &b, &n, err);
    if (ret)
        return ret;
    ret = probe_mem(path, b, n, &info, err);
    if (ret) {
        free(b);
        return ret;
    }
    if (info.format == VKA_FMT_PNG)
        png_drop_empty_idat(b, &n);
    uint32_t c = channels ? channels : info.c >= 3 ? 3 : 1;
    int w, h, c0;
    uint8_t *px = stbi_load_from_memory(b, (int)n, &w, &h, &c0, (int)c);
    free(b);
    if (!px) {
        vka_seterr(err, "%s: corrupt %s: %s", path, fmt_name[info.format],
                   stbi_failure_reason());
        return -EINVAL;
    }
    if ((uint32_t)w != info.w || (uint32_t)h != info.h) {
        stbi_image_free(px);
        vka_seterr(err, "%s: corrupt %s (header says %ux%u, decoded %dx%d)", path,
                   fmt_name[info.format], info.w, info.h, w, h);
        return -EINVAL;
    }
    img->data = px; /* STBI_MALLOC is malloc: vka_image_free's free() releases it */
    img->w = (uint32_t)w;
    img->h = (uint32_t)h;
    img->c = c;
    return 0;
}

int vka_image_probe(const char *path, struct vka_image_info *info)
{
    char err[VKA_ERRLEN];
    int ret = vka_image_probe_err(path, info, err);
    if (ret)
        vka_err("%s", err);
    return ret;
}

int vka_image_read(const char *path, uint32_t channels, struct vka_image *img)
{
    char err[VKA_ERRLEN];
    int ret = vka_image_read_err(path, channels, img, err);
    if (ret)
        vka_err("%s", err);
    return ret;
}

int vka_image_convert(struct vka_image *img, uint32_t c_out)
{
    if (img->c == c_out)
        return 0;
    size_t np = (size_t)img->w * img->h;
    uint8_t *d = malloc(np * c_out);
    if (!d)
        return -ENOMEM;
    const uint8_t *s = img->data;
    uint32_t c = img->c;
    for (size_t i = 0; i < np; i++) {
        if (c_out == 1) {
            /* stb_image's luma: (77 r + 150 g + 29 b) >> 8 */
            d[i] = c >= 3 ? (uint8_t)((s[i * c] * 77u + s[i * c + 1] * 150u +
                                       s[i * c + 2] * 29u) >> 8)
                          : s[i * c];
        } else {
            for (uint32_t k = 0; k < 3; k++)
                d[i * 3 + k] = c >= 3 ? s[i * c + k] : s[i * c];
        }
    }
    free(img->data);
    img->data = d;
    img->c = c_out;
    return 0;
}
