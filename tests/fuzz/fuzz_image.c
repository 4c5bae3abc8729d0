/* Fuzz target "image": the dataset's image reader (datasets/image.c) on one file of the
 * fuzzer's bytes, named "in.tga" so that every sniffer is reachable (PNG, JPEG and BMP
 * are recognised by their magic bytes first, anything else is read as a TGA). Each input
 * is probed (vka_image_probe_err: header, structure, the size caps, stb_image's info)
 * and, when its header asks for at most FUZZ_MAX_PIXELS, decoded (vka_image_read_err)
 * to channels 0 (as stored), 1 or 3, chosen by the input's length modulo 3, then
 * converted to the other channel count. The library's caps (VKA_IMAGE_MAX_SIDE,
 * VKA_IMAGE_MAX_PIXELS) are what is under test; FUZZ_MAX_PIXELS only keeps one
 * execution short, since a valid header of up to 2^28 pixels would be decoded whole.
 *
 * Invariants: a probe reports a known format, 1..4 channels and a size within the caps;
 * a decode agrees with its probe and returns exactly w * h * c bytes (all read here). */
#include <string.h>

#include "common.h"
#include "datasets/internal.h"

#define FUZZ_MAX_PIXELS (1u << 18)

static const char *path;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_setup();
    path = fuzz_path("in.tga");
    return 0;
}

static void check_image(const struct vka_image *img, uint32_t w, uint32_t h, uint32_t c)
{
    if (!img->data || img->w != w || img->h != h || img->c != c)
        fuzz_fail("image %ux%ux%u (data %p), expected %ux%ux%u", img->w, img->h, img->c,
                  (const void *)img->data, w, h, c);
    volatile uint32_t sum = fuzz_touch(img->data, (size_t)w * h * c);
    (void)sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t channels[3] = { 0, 1, 3 };
    char err[VKA_ERRLEN];
    struct vka_image_info info;
    fuzz_write(path, data, size);
    if (vka_image_probe_err(path, &info, err))
        return 0;
    if (info.format < VKA_FMT_PNG || info.format > VKA_FMT_TGA || info.c < 1 || info.c > 4 ||
        info.w < 1 || info.h < 1 || info.w > VKA_IMAGE_MAX_SIDE || info.h > VKA_IMAGE_MAX_SIDE ||
        (uint64_t)info.w * info.h > VKA_IMAGE_MAX_PIXELS)
        fuzz_fail("probe accepted format %d, %ux%u, %u channels", (int)info.format, info.w,
                  info.h, info.c);
    if ((uint64_t)info.w * info.h > FUZZ_MAX_PIXELS)
        return 0;
    uint32_t ch = channels[size % 3];
    struct vka_image img;
    if (vka_image_read_err(path, ch, &img, err)) {
        if (img.data)
            fuzz_fail("a failed read left data: %s", err);
        return 0;
    }
    uint32_t c = ch ? ch : info.c >= 3 ? 3 : 1;
    check_image(&img, info.w, info.h, c);
    if (vka_image_convert(&img, c == 1 ? 3 : 1) == 0)
        check_image(&img, info.w, info.h, c == 1 ? 3 : 1);
    vka_image_free(&img);
    return 0;
}
