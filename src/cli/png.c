/* PNG output (stb_image_write, Debian's libstb-dev), for masks, overlays and grids:
 * encoded in memory, then written through src/file.c (atomically, every write checked:
 * stbi_write_png itself ignores fwrite's errors and would leave a cut file on a full
 * disk). */
#include <errno.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "file.h"
#include "log.h"

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#endif
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

int cli_png_encode(uint32_t w, uint32_t h, uint32_t c, const uint8_t *data, unsigned char **png,
                   size_t *len)
{
    int n = 0;
    *png = stbi_write_png_to_mem(data, (int)(w * c), (int)w, (int)h, (int)c, &n);
    *len = (size_t)n;
    if (!*png) {
        vka_err("out of memory encoding a %ux%u PNG", w, h);
        return -ENOMEM;
    }
    return 0;
}

int cli_png_write(const char *path, uint32_t w, uint32_t h, uint32_t c, const uint8_t *data)
{
    unsigned char *png;
    size_t len;
    int ret = cli_png_encode(w, h, c, data, &png, &len);
    if (ret < 0)
        return ret;
    ret = vka_write_atomic(path, png, len);
    free(png);
    return ret;
}
