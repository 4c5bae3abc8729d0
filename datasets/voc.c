/* The Pascal VOC segmentation layout: DIR/ImageSets/Segmentation/{train,val}.txt lists
 * ids, one a line; sample ID is DIR/JPEGImages/ID.jpg with DIR/SegmentationClass/ID.png,
 * a palette PNG whose INDICES are the class ids (0 background, 1..20 in Pascal VOC
 * itself, 255 the object boundaries, ignored). The class count is not assumed: folders
 * of this layout hold other classes, so it comes from the masks (dataset.c). */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/internal.h"

static char *voc_path(const char *root, const char *dir, const char *id, const char *ext)
{
    size_t n = strlen(root) + strlen(dir) + strlen(id) + strlen(ext) + 3;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/%s/%s%s", root, dir, id, ext);
    return s;
}

int vka_voc_list(struct vka_dataset *ds, const char *root, char *err)
{
    const char *split = ds->split == VKA_SPLIT_VAL ? "val" : "train";
    char *list = voc_path(root, "ImageSets/Segmentation", split, ".txt");
    if (!list) {
        vka_seterr(err, "%s: out of memory", root);
        return -ENOMEM;
    }
    uint8_t *text;
    size_t len;
    int ret = vka_file_read(list, VKA_FILE_MAX, &text, &len, err);
    if (ret) {
        free(list);
        return ret;
    }
    uint32_t cap = 0;
    size_t p = 0;
    for (uint32_t line = 1; p < len; line++) {
        size_t e = p;
        while (e < len && text[e] != '\n')
            e++;
        size_t a = p, b = e;
        p = e + 1;
        while (a < b && isspace(text[a]))
            a++;
        while (b > a && isspace(text[b - 1]))
            b--;
        if (a == b)
            continue;
        char id[256];
        if (b - a >= sizeof(id) || memchr(text + a, '/', b - a) ||
            memchr(text + a, '\0', b - a)) {
            vka_seterr(err, "%s:%u: not an image id", list, line);
            ret = -EINVAL;
            goto done;
        }
        memcpy(id, text + a, b - a);
        id[b - a] = '\0';
        char *img = voc_path(root, "JPEGImages", id, ".jpg");
        char *mask = voc_path(root, "SegmentationClass", id, ".png");
        char from[VKA_ERRLEN / 2];
        snprintf(from, sizeof(from), "listed in %s:%u", list, line);
        if (!img || !mask) {
            free(img);
            free(mask);
            ret = -ENOMEM;
            vka_seterr(err, "%s: out of memory", list);
            goto done;
        }
        if ((ret = vka_sample_add(ds, &cap, img, mask, from, err)))
            goto done;
    }
    if (!ds->count) {
        vka_seterr(err, "%s: empty dataset: no ids listed", list);
        ret = -ENOENT;
    }
done:
    free(text);
    free(list);
    return ret;
}
