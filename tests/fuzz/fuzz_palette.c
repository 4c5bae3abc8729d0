/* Fuzz target "palette": the colour palette reader (vka_palette_load_err, datasets/
 * mask.c, cJSON) on one file of the fuzzer's bytes; a palette that loads then maps a
 * fixed 4x4 RGB PNG (written once with libspng: Pascal VOC colours 0..14 and white) to
 * class ids, which fails at the first colour the palette lacks.
 *
 * Invariants: a loaded palette has 1..VKA_MAX_CLASSES classes; a mapped mask is 4x4x1
 * with every id below the classes or the ignore index. */
#include <stdlib.h>
#include <string.h>

#include <spng.h>

#include "common.h"
#include "datasets/internal.h"

#define SIDE 4u
#define IGNORE 255u

static const char *path, *png_path;

/* The RGB test image: pixel k is VOC colour k for k < 15, the last one white. */
static void write_png(const char *dst)
{
    uint8_t px[SIDE * SIDE * 3];
    for (uint32_t k = 0; k < SIDE * SIDE; k++) {
        uint32_t c = k, rgb[3] = { 0, 0, 0 };
        for (uint32_t b = 0; b < 8; b++, c >>= 3)
            for (uint32_t j = 0; j < 3; j++)
                rgb[j] |= ((c >> j) & 1) << (7 - b);
        for (uint32_t j = 0; j < 3; j++)
            px[k * 3 + j] = k == SIDE * SIDE - 1 ? 255 : (uint8_t)rgb[j];
    }
    spng_ctx *enc = spng_ctx_new(SPNG_CTX_ENCODER);
    struct spng_ihdr ih = { .width = SIDE, .height = SIDE, .bit_depth = 8,
                            .color_type = SPNG_COLOR_TYPE_TRUECOLOR };
    int e = enc ? spng_set_option(enc, SPNG_ENCODE_TO_BUFFER, 1) : SPNG_EMEM;
    if (!e)
        e = spng_set_ihdr(enc, &ih);
    if (!e)
        e = spng_encode_image(enc, px, sizeof(px), SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
    size_t len = 0;
    void *buf = e ? NULL : spng_get_png_buffer(enc, &len, &e);
    if (!buf)
        fuzz_fail("encoding the test PNG: %s", spng_strerror(e));
    fuzz_write(dst, buf, len);
    free(buf);
    spng_ctx_free(enc);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_setup();
    path = fuzz_path("in.json");
    png_path = fuzz_path("rgb.png");
    write_png(png_path);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[VKA_ERRLEN];
    struct vka_palette *pal;
    fuzz_write(path, data, size);
    if (vka_palette_load_err(path, &pal, err)) {
        if (pal)
            fuzz_fail("a failed palette load returned a palette: %s", err);
        return 0;
    }
    uint32_t classes = vka_palette_classes(pal);
    if (classes < 1 || classes > VKA_MAX_CLASSES)
        fuzz_fail("palette of %u classes", classes);
    struct vka_image m;
    if (vka_mask_read_err(png_path, pal, (uint8_t)IGNORE, &m, err) == 0) {
        if (!m.data || m.w != SIDE || m.h != SIDE || m.c != 1)
            fuzz_fail("mapped mask %ux%ux%u", m.w, m.h, m.c);
        for (uint32_t i = 0; i < SIDE * SIDE; i++)
            if (m.data[i] >= classes && m.data[i] != IGNORE)
                fuzz_fail("mapped id %u at %u, classes %u", m.data[i], i, classes);
        vka_image_free(&m);
    } else if (m.data) {
        fuzz_fail("a failed mask read left data: %s", err);
    }
    vka_palette_destroy(&pal);
    return 0;
}
