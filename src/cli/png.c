/* PNG output (stb_image_write, Debian's libstb-dev), for masks, overlays and grids. */
#include <errno.h>

#include "cli/cli.h"

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

int cli_png_write(const char *path, uint32_t w, uint32_t h, uint32_t c, const uint8_t *data)
{
    if (!stbi_write_png(path, (int)w, (int)h, (int)c, data, (int)(w * c))) {
        fprintf(stderr, "vkaccum: cannot write %s\n", path);
        return -EIO;
    }
    return 0;
}
