/* Shared inside datasets/: the dataset object, the per-sample error buffer (inner
 * functions write their message there so that the caller decides between an error
 * and, with skip_bad, a warning), file and folder helpers, and the counter-based RNG
 * every random draw goes through. */
#ifndef VKA_DATASETS_INTERNAL_H
#define VKA_DATASETS_INTERNAL_H

#include <stdarg.h>
#include <stdio.h>

#include "datasets/dataset.h"
#include "log.h"
#include "rng.h"

#define VKA_ERRLEN 512
#define VKA_FILE_MAX ((size_t)1 << 30) /* largest image or mask file read, bytes */

void vka_seterr(char *err, const char *fmt, ...) VKA_PRINTF(2, 3);

/* ---- rng: splitmix64 as a counter hash and as a stream ---------------------------- */

static inline uint64_t vka_hash3(uint64_t a, uint64_t b, uint64_t c)
{
    return vka_mix64(a ^ vka_mix64(b ^ vka_mix64(c)));
}

/* [0, 1) with 24 bits */
static inline float vka_rng_float(uint64_t *s)
{
    return (float)(vka_rng_next(s) >> 40) * (1.0f / 16777216.0f);
}

static inline float vka_rng_range(uint64_t *s, float lo, float hi)
{
    return lo + (hi - lo) * vka_rng_float(s);
}

/* [0, n), n > 0 */
static inline uint32_t vka_rng_below(uint64_t *s, uint32_t n)
{
    return (uint32_t)(((vka_rng_next(s) >> 32) * (uint64_t)n) >> 32);
}

/* ---- files (image.c, folder.c) ---------------------------------------------------- */

/* Reads a whole regular file of at most max bytes. */
int vka_file_read(const char *path, size_t max, uint8_t **buf, size_t *len, char *err);
/* "-ENOMEM" safe path join into a malloc'ed string. */
char *vka_path_join(const char *a, const char *b);
char *vka_path_join3(const char *a, const char *b, const char *c);
bool vka_has_image_ext(const char *name);
bool vka_has_ext(const char *name, const char *ext); /* ext ".png", any case */

/* The sorted names in folder dir that keep() accepts; the others are reported in one
 * warning saying they do not end in `want` (hidden files are skipped silently). */
int vka_dir_list(const char *dir, bool (*keep)(const char *), const char *want,
                 char ***names, uint32_t *count, char *err);
void vka_names_free(char **names, uint32_t count);

/* Format, dimensions (refused over the limits) and structure from the file's bytes. */
int vka_image_sniff(const char *path, const uint8_t *b, size_t n,
                    struct vka_image_info *info, char *err);

/* Inner versions of the public readers: messages go to err. */
int vka_image_probe_err(const char *path, struct vka_image_info *info, char *err);
int vka_image_read_err(const char *path, uint32_t channels, struct vka_image *img,
                       char *err);
int vka_mask_read_err(const char *path, const struct vka_palette *pal,
                      uint8_t ignore_index, struct vka_image *mask, char *err);
int vka_palette_load_err(const char *path, struct vka_palette **pal, char *err);
int vka_idx_read_err(const char *path, struct vka_idx *idx, char *err);
int vka_fashion_path_err(const char *split, const char *what, char *buf, size_t size,
                         char *err);

/* Validates augmentation parameters for c channels (logs the reason). */
int vka_augment_check(const struct vka_augment_params *a, uint32_t c);

/* Grey <-> RGB in place of img (realloc'ed); c_out 1 or 3. */
int vka_image_convert(struct vka_image *img, uint32_t c_out);

/* ---- the dataset object --------------------------------------------------------- */

struct vka_dataset {
    enum vka_data_kind kind;
    enum vka_split split;
    uint32_t count, classes, channels;
    int32_t ignore_index;
    bool has_masks, has_labels, skip_bad, header_only;
    char name[64]; /* generators: "shapes:train" */
    uint64_t seed;
    uint32_t width, height;

    /* FOLDER, VOC, IMAGES: one path per sample */
    char **images, **masks;
    struct vka_palette *palette;

    /* IDX (labels when has_labels) and FASHION */
    struct vka_idx idx, labels;
    uint32_t *group_start, *group_items; /* FASHION: garments by group */
    uint32_t groups;
    bool fine;

    /* a mask file's value v is class label_map[v] when mapped (CITYSCAPES' labelIds,
     * reduce_zero_label); map_note says so in class-id errors, which name mapped ids */
    bool mapped;
    uint8_t label_map[256];
    const char *map_note;

    struct vka_class_stats stats;
    bool stats_ready;
    char tmpname[96];
};

/* Sample lists (folder.c). vka_sample_push appends the pair, taking both malloc'ed
 * strings (freed on failure); cap is the capacity of ds->images and ds->masks.
 * vka_sample_add first checks that both files exist: a missing one is an error naming
 * it and `from` (where the pair comes from, e.g. "listed in F:3"), or with skip_bad a
 * warning and the pair is dropped (returning 0). */
int vka_sample_push(struct vka_dataset *ds, uint32_t *cap, char *image, char *mask);
int vka_sample_add(struct vka_dataset *ds, uint32_t *cap, char *image, char *mask,
                   const char *from, char *err);

/* Sources fill ds->images/masks (count) or their own state. */
int vka_folder_list(struct vka_dataset *ds, const char *root, char *err);
int vka_images_list(struct vka_dataset *ds, const char *root, char *err);
int vka_voc_list(struct vka_dataset *ds, const char *root, char *err);
int vka_ade20k_list(struct vka_dataset *ds, const char *root, char *err);
int vka_cityscapes_list(struct vka_dataset *ds, const char *root, char *err);
int vka_list_read(struct vka_dataset *ds, const char *file, char *err);
int vka_idx_open(struct vka_dataset *ds, const char *path, char *err);
/* The labels file of an opened IDX dataset: one unsigned byte per image. */
int vka_idx_open_labels(struct vka_dataset *ds, const char *path, char *err);
int vka_fashion_open(struct vka_dataset *ds, const char *dir, char *err);

/* Generators: sample i as RGB image (c = 3) and mask; shapes with mask_only: its mask
 * alone (the image left empty). */
int vka_shapes_make(const struct vka_dataset *ds, uint32_t i, bool mask_only,
                    struct vka_sample *s, char *err);
int vka_fashion_make(const struct vka_dataset *ds, uint32_t i, struct vka_sample *s,
                     char *err);

/* Cityscapes' labelId -> trainId table: lut[id] is the train id 0..18, else ignore. */
void vka_cityscapes_label_map(uint8_t lut[256], uint8_t ignore);
#define VKA_CITYSCAPES_CLASSES 19u
#define VKA_ADE20K_CLASSES 150u

/* Checks the mask of sample name against classes and adds its histogram to st (when
 * not NULL). classes 0: no upper bound. */
int vka_mask_check(const struct vka_image *mask, const char *name, uint32_t classes,
                   int32_t ignore_index, struct vka_class_stats *st, char *err);

int vka_dataset_get_err(const struct vka_dataset *ds, uint32_t i, uint32_t channels,
                        struct vka_sample *s, char *err);

#endif
