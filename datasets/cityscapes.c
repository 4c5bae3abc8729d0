/* The Cityscapes layout as mmsegmentation's CityscapesDataset reads it:
 * DIR/leftImg8bit/{train,val}/CITY/NAME_leftImg8bit.png with its mask
 * DIR/gtFine/{train,val}/CITY/NAME_gtFine_labelIds.png, cities and names in byte order.
 * The masks hold Cityscapes' labelIds (0..33, 255 for the license plate's -1); they are
 * mapped to the 19 train ids here rather than by a conversion script beforehand, so
 * the dataset as downloaded trains. gtFine's other files (_color.png, _instanceIds.png,
 * _polygons.json) are never listed: the mask path comes from the image's name. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "datasets/internal.h"

#define IMAGE_SUFFIX "_leftImg8bit.png"
#define MASK_SUFFIX "_gtFine_labelIds.png"

/* labelId -> trainId of the 19 evaluated classes, from the official table: the
 * `labels` list of cityscapesscripts/helpers/labels.py (github.com/mcordts/
 * cityscapesScripts, the `id` and `trainId` columns); every other id, -1 (stored as
 * 255) among them, has trainId 255 there and becomes the ignore index here. */
static const struct {
    uint8_t id, train_id;
} train_ids[VKA_CITYSCAPES_CLASSES] = {
    { 7, 0 },   /* road */          { 8, 1 },   /* sidewalk */  { 11, 2 },  /* building */
    { 12, 3 },  /* wall */          { 13, 4 },  /* fence */     { 17, 5 },  /* pole */
    { 19, 6 },  /* traffic light */ { 20, 7 },  /* traffic sign */
    { 21, 8 },  /* vegetation */    { 22, 9 },  /* terrain */   { 23, 10 }, /* sky */
    { 24, 11 }, /* person */        { 25, 12 }, /* rider */     { 26, 13 }, /* car */
    { 27, 14 }, /* truck */         { 28, 15 }, /* bus */       { 31, 16 }, /* train */
    { 32, 17 }, /* motorcycle */    { 33, 18 }, /* bicycle */
};

void vka_cityscapes_label_map(uint8_t lut[256], uint8_t ignore)
{
    memset(lut, ignore, 256);
    for (uint32_t k = 0; k < VKA_CITYSCAPES_CLASSES; k++)
        lut[train_ids[k].id] = train_ids[k].train_id;
}

static bool keep_all(const char *name)
{
    (void)name;
    return true;
}

static bool is_left_image(const char *name)
{
    size_t n = strlen(name), s = strlen(IMAGE_SUFFIX);
    return n > s && !strcmp(name + n - s, IMAGE_SUFFIX);
}

/* Adds the images of one city folder and their masks. */
static int add_city(struct vka_dataset *ds, uint32_t *cap, const char *idir,
                    const char *mdir, char *err)
{
    char **names;
    uint32_t n;
    int ret = vka_dir_list(idir, is_left_image, IMAGE_SUFFIX, &names, &n, err);
    for (uint32_t i = 0; !ret && i < n; i++) {
        size_t stem = strlen(names[i]) - strlen(IMAGE_SUFFIX);
        size_t mlen = strlen(mdir) + stem + strlen(MASK_SUFFIX) + 2;
        char *img = vka_path_join(idir, names[i]), *mask = malloc(mlen);
        if (!img || !mask) {
            free(img);
            free(mask);
            vka_seterr(err, "%s: out of memory", idir);
            ret = -ENOMEM;
            break;
        }
        snprintf(mask, mlen, "%s/%.*s%s", mdir, (int)stem, names[i], MASK_SUFFIX);
        char from[VKA_ERRLEN];
        snprintf(from, sizeof(from), "the labelIds of %s", img);
        ret = vka_sample_add(ds, cap, img, mask, from, err);
    }
    vka_names_free(names, n);
    return ret;
}

int vka_cityscapes_list(struct vka_dataset *ds, const char *root, char *err)
{
    const char *split = ds->split == VKA_SPLIT_VAL ? "val" : "train";
    char *idir = vka_path_join3(root, "leftImg8bit", split);
    char *mdir = vka_path_join3(root, "gtFine", split);
    char **cities = NULL;
    uint32_t nc = 0, cap = 0, others = 0;
    const char *other = NULL;
    int ret = -ENOMEM;
    if (!idir || !mdir) {
        vka_seterr(err, "%s: out of memory", root);
        goto done;
    }
    if ((ret = vka_dir_list(idir, keep_all, "", &cities, &nc, err)))
        goto done;
    for (uint32_t c = 0; c < nc; c++) {
        char *icity = vka_path_join(idir, cities[c]), *mcity = vka_path_join(mdir, cities[c]);
        struct stat st;
        ret = 0;
        if (!icity || !mcity) {
            vka_seterr(err, "%s: out of memory", idir);
            ret = -ENOMEM;
        } else if (stat(icity, &st) || !S_ISDIR(st.st_mode)) {
            /* a stray file beside the city folders is no sample */
            if (!others++)
                other = cities[c];
        } else {
            ret = add_city(ds, &cap, icity, mcity, err);
        }
        free(icity);
        free(mcity);
        if (ret)
            goto done;
    }
    if (others)
        vka_warn("%s: ignoring %u entr%s that %s not a city folder (first: %s)", idir,
                 others, others > 1 ? "ies" : "y", others > 1 ? "are" : "is", other);
    if (!ds->count) {
        vka_seterr(err, "%s: empty dataset: no CITY/NAME%s", idir, IMAGE_SUFFIX);
        ret = -ENOENT;
    }
done:
    vka_names_free(cities, nc);
    free(idir);
    free(mdir);
    return ret;
}
