/* PNG output (stb_image_write, Debian's libstb-dev), for masks, overlays and grids:
 * encoded in memory, then written through src/file.c (atomically, every write checked:
 * stbi_write_png itself ignores fwrite's errors and would leave a cut file on a full
 * disk). And float arrays as NumPy .npy files (version 1.0, little-endian float32, C
 * order), for what a PNG would round: seg predict's logits, gan sample's images. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int cli_npy_write(const char *path, const uint32_t *shape, uint32_t ndim, const float *data)
{
    /* the header: magic, version 1.0, its length, a Python dict padded with spaces and a
     * newline to a multiple of 64 bytes */
    char dict[256];
    size_t n = (size_t)snprintf(dict, sizeof(dict), "{'descr': '<f4', 'fortran_order': False, "
                                                    "'shape': (");
    uint64_t count = 1;
    for (uint32_t i = 0; i < ndim && n < sizeof(dict); i++) {
        n += (size_t)snprintf(dict + n, sizeof(dict) - n, "%u,%s", shape[i],
                              i + 1 < ndim ? " " : "");
        count *= shape[i];
    }
    n += (size_t)snprintf(dict + n, sizeof(dict) - n, "), }");
    size_t head = (10 + n + 1 + 63) / 64 * 64, len = head + count * sizeof(float);
    unsigned char *buf = n < sizeof(dict) ? malloc(len) : NULL;
    if (!buf) {
        vka_err("%s: out of memory for a .npy file of %llu floats", path,
                (unsigned long long)count);
        return -ENOMEM;
    }
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)((head - 10) & 0xff);
    buf[9] = (unsigned char)((head - 10) >> 8);
    memcpy(buf + 10, dict, n);
    memset(buf + 10 + n, ' ', head - 10 - n - 1);
    buf[head - 1] = '\n';
    memcpy(buf + head, data, count * sizeof(float)); /* little-endian hosts only (x86, arm) */
    int ret = vka_write_atomic(path, buf, len);
    free(buf);
    return ret;
}
