/* Class-id masks: PNGs read with libspng (stb_image would expand a palette PNG to RGB
 * and lose the indices), colour palettes for RGB masks (JSON, read with cJSON), and the
 * check of a mask's ids against the classes, which also counts the class histogram. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <spng.h>

#include "datasets/internal.h"

#define PAL_IGNORE 0xffffu

struct pal_entry {
    uint32_t rgb;
    uint32_t id; /* class, or PAL_IGNORE */
};

struct vka_palette {
    uint32_t n, classes;
    struct pal_entry *e; /* sorted by rgb */
    char path[256];
};

static int cmp_entry(const void *a, const void *b)
{
    uint32_t x = ((const struct pal_entry *)a)->rgb, y = ((const struct pal_entry *)b)->rgb;
    return (x > y) - (x < y);
}

static int read_colours(const char *path, const cJSON *list, const char *what, uint32_t id0,
                        bool ignore, struct vka_palette *p, char *err)
{
    if (!cJSON_IsArray(list)) {
        vka_seterr(err, "%s: %s must be a list of [r, g, b] colours", path, what);
        return -EINVAL;
    }
    uint32_t k = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, list)
    {
        int v[3];
        bool ok = cJSON_IsArray(c) && cJSON_GetArraySize(c) == 3;
        for (int j = 0; ok && j < 3; j++) {
            const cJSON *x = cJSON_GetArrayItem(c, j);
            ok = cJSON_IsNumber(x) && x->valuedouble >= 0 && x->valuedouble <= 255 &&
                 x->valuedouble == (double)x->valueint;
            v[j] = ok ? x->valueint : 0;
        }
        if (!ok) {
            vka_seterr(err, "%s: %s entry %u is not [r, g, b] with integers 0..255", path,
                       what, k);
            return -EINVAL;
        }
        if (p->n == VKA_MAX_CLASSES * 2) {
            vka_seterr(err, "%s: more than %u colours", path, VKA_MAX_CLASSES * 2);
            return -EINVAL;
        }
        p->e[p->n++] = (struct pal_entry){ (uint32_t)v[0] << 16 | (uint32_t)v[1] << 8 |
                                               (uint32_t)v[2],
                                           ignore ? PAL_IGNORE : id0 + k };
        k++;
    }
    return 0;
}

static int palette_parse(const char *path, const char *text, struct vka_palette *p, char *err)
{
    cJSON *root = cJSON_Parse(text);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        vka_seterr(err, "%s: not valid JSON (near byte %td)", path, at ? at - text : 0);
        return -EINVAL;
    }
    int ret;
    if (cJSON_IsArray(root)) {
        ret = read_colours(path, root, "the palette", 0, false, p, err);
    } else if (cJSON_IsObject(root) && cJSON_GetObjectItemCaseSensitive(root, "classes")) {
        ret = read_colours(path, cJSON_GetObjectItemCaseSensitive(root, "classes"),
                           "\"classes\"", 0, false, p, err);
        const cJSON *ign = cJSON_GetObjectItemCaseSensitive(root, "ignore");
        if (!ret && ign)
            ret = read_colours(path, ign, "\"ignore\"", 0, true, p, err);
    } else {
        vka_seterr(err, "%s: expected a list of [r, g, b] colours or an object with "
                   "\"classes\"", path);
        ret = -EINVAL;
    }
    cJSON_Delete(root);
    if (ret)
        return ret;
    for (uint32_t i = 0; i < p->n; i++)
        if (p->e[i].id != PAL_IGNORE)
            p->classes++;
    if (!p->classes || p->classes > VKA_MAX_CLASSES) {
        vka_seterr(err, "%s: %u class colours (1..%u needed)", path, p->classes,
                   VKA_MAX_CLASSES);
        return -EINVAL;
    }
    qsort(p->e, p->n, sizeof(*p->e), cmp_entry);
    for (uint32_t i = 1; i < p->n; i++)
        if (p->e[i].rgb == p->e[i - 1].rgb) {
            uint32_t c = p->e[i].rgb;
            vka_seterr(err, "%s: colour (%u, %u, %u) appears twice", path, c >> 16,
                       (c >> 8) & 255, c & 255);
            return -EINVAL;
        }
    return 0;
}

int vka_palette_load_err(const char *path, struct vka_palette **pal, char *err)
{
    *pal = NULL;
    uint8_t *buf;
    size_t len;
    int ret = vka_file_read(path, 1 << 20, &buf, &len, err);
    struct vka_palette *p = NULL;
    char *text = NULL;
    if (ret)
        return ret;
    ret = -ENOMEM;
    text = malloc(len + 1);
    p = calloc(1, sizeof(*p));
    if (!text || !p || !(p->e = calloc(VKA_MAX_CLASSES * 2, sizeof(*p->e)))) {
        vka_seterr(err, "%s: out of memory", path);
        goto fail;
    }
    memcpy(text, buf, len);
    text[len] = '\0';
    snprintf(p->path, sizeof(p->path), "%s", path);
    if ((ret = palette_parse(path, text, p, err)))
        goto fail;
    free(buf);
    free(text);
    *pal = p;
    return 0;
fail:
    free(buf);
    free(text);
    vka_palette_destroy(&p);
    return ret;
}

int vka_palette_load(const char *path, struct vka_palette **pal)
{
    char err[VKA_ERRLEN];
    int ret = vka_palette_load_err(path, pal, err);
    if (ret)
        vka_err("%s", err);
    return ret;
}

void vka_palette_destroy(struct vka_palette **pal)
{
    if (!pal || !*pal)
        return;
    free((*pal)->e);
    free(*pal);
    *pal = NULL;
}

uint32_t vka_palette_classes(const struct vka_palette *pal)
{
    return pal ? pal->classes : 0;
}

static const struct pal_entry *pal_find(const struct vka_palette *p, uint32_t rgb)
{
    struct pal_entry key = { rgb, 0 };
    return bsearch(&key, p->e, p->n, sizeof(*p->e), cmp_entry);
}

static int map_colours(const char *path, const struct vka_palette *pal, uint8_t ignore,
                       const uint8_t *rgba, struct vka_image *mask, char *err)
{
    uint32_t last = 0xffffffffu, id = 0;
    size_t np = (size_t)mask->w * mask->h;
    for (size_t i = 0; i < np; i++) {
        const uint8_t *q = rgba + 4 * i;
        uint32_t rgb = (uint32_t)q[0] << 16 | (uint32_t)q[1] << 8 | q[2];
        if (rgb != last) {
            const struct pal_entry *e = pal_find(pal, rgb);
            if (!e) {
                vka_seterr(err, "%s: colour (%u, %u, %u) at pixel (%zu, %zu) is not in the "
                           "palette %s", path, q[0], q[1], q[2], i % mask->w, i / mask->w,
                           pal->path);
                return -EINVAL;
            }
            last = rgb;
            id = e->id == PAL_IGNORE ? ignore : e->id;
        }
        mask->data[i] = (uint8_t)id;
    }
    return 0;
}

int vka_mask_read_err(const char *path, const struct vka_palette *pal, uint8_t ignore_index,
                      struct vka_image *mask, char *err)
{
    *mask = (struct vka_image){ 0 };
    uint8_t *buf = NULL, *raw = NULL;
    size_t len;
    int ret = vka_file_read(path, VKA_FILE_MAX, &buf, &len, err);
    if (ret)
        return ret;
    struct vka_image_info info;
    spng_ctx *ctx = NULL;
    if ((ret = vka_image_sniff(path, buf, len, &info, err)))
        goto done;
    ret = -EINVAL;
    if (info.format != VKA_FMT_PNG) {
        vka_seterr(err, "%s: masks must be PNG files (this is a %s)", path,
                   info.format == VKA_FMT_JPEG ? "JPEG" : info.format == VKA_FMT_BMP ? "BMP"
                                                                                     : "TGA");
        goto done;
    }
    ctx = spng_ctx_new(0);
    if (!ctx) {
        ret = -ENOMEM;
        vka_seterr(err, "%s: out of memory", path);
        goto done;
    }
    struct spng_ihdr ih;
    int e;
    if ((e = spng_set_png_buffer(ctx, buf, len)) ||
        (e = spng_set_image_limits(ctx, VKA_IMAGE_MAX_SIDE, VKA_IMAGE_MAX_SIDE)) ||
        (e = spng_set_chunk_limits(ctx, 1u << 28, 1u << 28)) || (e = spng_get_ihdr(ctx, &ih))) {
        vka_seterr(err, "%s: corrupt PNG: %s", path, spng_strerror(e));
        goto done;
    }
    bool palette_ids = !pal && ih.color_type == SPNG_COLOR_TYPE_INDEXED;
    bool grey = !pal && ih.color_type == SPNG_COLOR_TYPE_GRAYSCALE;
    if (!pal && !palette_ids && !grey) {
        vka_seterr(err, "%s: an %s mask needs a palette file (a JSON list of [r, g, b]); "
                   "class-id masks are 8-bit grey or indexed PNGs", path,
                   ih.color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA ? "grey+alpha" : "RGB");
        goto done;
    }
    if (grey && ih.bit_depth > 8) {
        vka_seterr(err, "%s: a %u-bit mask; class-id masks are 8-bit", path, ih.bit_depth);
        goto done;
    }
    int fmt = pal ? SPNG_FMT_RGBA8 : SPNG_FMT_PNG;
    size_t out_len;
    if ((e = spng_decoded_image_size(ctx, fmt, &out_len))) {
        vka_seterr(err, "%s: corrupt PNG: %s", path, spng_strerror(e));
        goto done;
    }
    raw = malloc(out_len);
    mask->data = malloc((size_t)ih.width * ih.height);
    if (!raw || !mask->data) {
        ret = -ENOMEM;
        vka_seterr(err, "%s: out of memory", path);
        goto done;
    }
    if ((e = spng_decode_image(ctx, raw, out_len, fmt, 0))) {
        vka_seterr(err, "%s: corrupt or truncated PNG: %s", path, spng_strerror(e));
        goto done;
    }
    mask->w = ih.width;
    mask->h = ih.height;
    mask->c = 1;
    if (pal) {
        ret = map_colours(path, pal, ignore_index, raw, mask, err);
        goto done;
    }
    uint32_t bd = ih.bit_depth;
    size_t row = ((size_t)ih.width * bd + 7) / 8;
    for (uint32_t y = 0; y < ih.height; y++) {
        const uint8_t *r = raw + row * y;
        uint8_t *o = mask->data + (size_t)ih.width * y;
        if (bd == 8) {
            memcpy(o, r, ih.width);
            continue;
        }
        uint32_t per = 8 / bd, m = (1u << bd) - 1;
        for (uint32_t x = 0; x < ih.width; x++)
            o[x] = (uint8_t)((r[x / per] >> (8 - bd * (x % per + 1))) & m);
    }
    ret = 0;
done:
    spng_ctx_free(ctx);
    free(raw);
    free(buf);
    if (ret)
        vka_image_free(mask);
    return ret;
}

int vka_mask_read(const char *path, const struct vka_palette *pal, uint8_t ignore_index,
                  struct vka_image *mask)
{
    char err[VKA_ERRLEN];
    int ret = vka_mask_read_err(path, pal, ignore_index, mask, err);
    if (ret)
        vka_err("%s", err);
    return ret;
}

int vka_mask_check(const struct vka_image *mask, const char *name, uint32_t classes,
                   int32_t ignore_index, struct vka_class_stats *st, char *err)
{
    uint64_t hist[256] = { 0 };
    size_t np = (size_t)mask->w * mask->h;
    for (size_t i = 0; i < np; i++)
        hist[mask->data[i]]++;
    if (classes)
        for (uint32_t v = classes; v < 256; v++) {
            if (!hist[v] || (int32_t)v == ignore_index)
                continue;
            size_t i = 0;
            while (mask->data[i] != v)
                i++;
            vka_seterr(err, "%s: class id %u at pixel (%zu, %zu) is not below the %u classes "
                       "and is not the ignore index %d (%llu pixel%s hold%s it)", name, v,
                       i % mask->w, i / mask->w, classes, ignore_index,
                       (unsigned long long)hist[v], hist[v] > 1 ? "s" : "",
                       hist[v] > 1 ? "" : "s");
            return -EINVAL;
        }
    if (!st)
        return 0;
    uint64_t ign = ignore_index >= 0 && ignore_index < 256 ? hist[ignore_index] : 0;
    st->images++;
    st->ignored += ign;
    for (uint32_t v = 0; v < 256; v++) {
        if (!hist[v] || (int32_t)v == ignore_index)
            continue;
        st->pixels[v] += hist[v];
        st->image_pixels[v] += np - ign;
    }
    return 0;
}
