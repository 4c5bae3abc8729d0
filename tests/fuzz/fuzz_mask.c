/* Fuzz target "mask": the mask reader (datasets/mask.c, libspng) on one file of the
 * fuzzer's bytes, read twice: as class ids (grey values or palette indices, no palette)
 * and through a fixed colour palette (Pascal VOC's first 21 colours as classes, its
 * boundary colour (224, 224, 192) as ignore), each result then checked against 21
 * classes by vka_mask_check, which counts the histogram. Inputs whose header asks for
 * more than FUZZ_MAX_PIXELS are only sniffed: the library's caps are under test, the
 * fuzzer's cap keeps one execution short.
 *
 * Invariants: a mask has one channel and the sniffed size, every byte readable; through
 * the palette every id is a class below the palette's count or the ignore index. */
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "datasets/internal.h"

#define FUZZ_MAX_PIXELS (1u << 18)
#define IGNORE 255u

static const char *path;
static struct vka_palette *palette;

static void voc_colour(uint32_t k, uint32_t rgb[3])
{
    rgb[0] = rgb[1] = rgb[2] = 0;
    for (uint32_t b = 0; b < 8; b++, k >>= 3)
        for (uint32_t j = 0; j < 3; j++)
            rgb[j] |= ((k >> j) & 1) << (7 - b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_setup();
    path = fuzz_path("in.png");
    char json[1024];
    size_t n = (size_t)snprintf(json, sizeof(json), "{\"classes\": [");
    for (uint32_t k = 0; k < 21; k++) {
        uint32_t c[3];
        voc_colour(k, c);
        n += (size_t)snprintf(json + n, sizeof(json) - n, "%s[%u, %u, %u]", k ? ", " : "",
                              c[0], c[1], c[2]);
    }
    snprintf(json + n, sizeof(json) - n, "], \"ignore\": [[224, 224, 192]]}");
    const char *pal_path = fuzz_path("palette.json");
    fuzz_write(pal_path, json, strlen(json));
    char err[VKA_ERRLEN];
    if (vka_palette_load_err(pal_path, &palette, err))
        fuzz_fail("the fixed palette does not load: %s", err);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[VKA_ERRLEN];
    struct vka_image_info info;
    fuzz_write(path, data, size);
    bool sniffed = vka_image_sniff(path, data, size, &info, err) == 0;
    if (sniffed && (uint64_t)info.w * info.h > FUZZ_MAX_PIXELS)
        return 0;
    for (int pass = 0; pass < 2; pass++) {
        const struct vka_palette *pal = pass ? palette : NULL;
        struct vka_image m;
        if (vka_mask_read_err(path, pal, (uint8_t)IGNORE, &m, err)) {
            if (m.data)
                fuzz_fail("a failed mask read left data: %s", err);
            continue;
        }
        if (!sniffed || !m.data || m.c != 1 || m.w != info.w || m.h != info.h)
            fuzz_fail("mask %ux%ux%u (data %p), sniffed %s %ux%u", m.w, m.h, m.c,
                      (const void *)m.data, sniffed ? "as" : "NOT", info.w, info.h);
        size_t np = (size_t)m.w * m.h;
        volatile uint32_t sum = fuzz_touch(m.data, np);
        (void)sum;
        uint32_t classes = vka_palette_classes(palette);
        for (size_t i = 0; pal && i < np; i++)
            if (m.data[i] >= classes && m.data[i] != IGNORE)
                fuzz_fail("palette mask holds id %u at %zu (classes %u)", m.data[i], i,
                          classes);
        struct vka_class_stats st = { .classes = classes };
        if (vka_mask_check(&m, path, classes, (int32_t)IGNORE, &st, err) == 0 &&
            st.images != 1)
            fuzz_fail("vka_mask_check counted %llu images", (unsigned long long)st.images);
        vka_image_free(&m);
    }
    return 0;
}
