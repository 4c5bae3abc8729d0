/* The dataset object: opening a source by kind, verifying every sample of a file
 * source at open (on threads; results are reported in index order, so what is kept,
 * skipped or refused never depends on the threads), the label maps applied to every
 * mask read (Cityscapes' train ids, reduce_zero_label), raw samples by index, class
 * frequencies and median frequency class weights. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/internal.h"

#define DEFAULT_SIDE 64

/* ---- raw samples ----------------------------------------------------------------- */

void vka_sample_free(struct vka_sample *s)
{
    if (!s)
        return;
    vka_image_free(&s->image);
    vka_image_free(&s->mask);
}

/* Mask i of a file layout through the layout's label map: every reader of masks (open,
 * samples, class checks) goes through here, so all of them see the same ids. */
static int read_mask(const struct vka_dataset *ds, uint32_t i, struct vka_image *m, char *err)
{
    int ret = vka_mask_read_err(ds->masks[i], ds->palette, (uint8_t)ds->ignore_index, m, err);
    if (ret || !ds->mapped)
        return ret;
    size_t n = (size_t)m->w * m->h;
    for (size_t k = 0; k < n; k++)
        m->data[k] = ds->label_map[m->data[k]];
    return 0;
}

/* Mask i alone, into s->mask: a file layout's through read_mask, a generator's without
 * its image where it can (shapes), else the whole sample's. What the class statistics
 * and the class checks read. */
static int get_mask(const struct vka_dataset *ds, uint32_t i, struct vka_sample *s, char *err)
{
    *s = (struct vka_sample){ .label = -1 };
    if (ds->masks)
        return read_mask(ds, i, &s->mask, err);
    if (ds->kind == VKA_DATA_SHAPES)
        return vka_shapes_make(ds, i, true, s, err);
    return vka_dataset_get_err(ds, i, 0, s, err);
}

/* vka_mask_check, saying when the ids it names are not the file's own */
static int check_mask(const struct vka_dataset *ds, const struct vka_image *m, const char *name,
                      uint32_t classes, struct vka_class_stats *st, char *err)
{
    int ret = vka_mask_check(m, name, classes, ds->ignore_index, st, err);
    if (ret && ds->map_note) {
        size_t n = strlen(err);
        snprintf(err + n, VKA_ERRLEN - n, "; %s", ds->map_note);
    }
    return ret;
}

static int get_file_sample(const struct vka_dataset *ds, uint32_t i, uint32_t channels,
                           struct vka_sample *s, struct vka_class_stats *st, char *err)
{
    int ret = vka_image_read_err(ds->images[i], channels, &s->image, err);
    if (ret || !ds->masks)
        return ret;
    if ((ret = read_mask(ds, i, &s->mask, err)))
        return ret;
    if (s->mask.w != s->image.w || s->mask.h != s->image.h) {
        vka_seterr(err, "%s: mask is %ux%u but its image %s is %ux%u", ds->masks[i],
                   s->mask.w, s->mask.h, ds->images[i], s->image.w, s->image.h);
        return -EINVAL;
    }
    return check_mask(ds, &s->mask, ds->masks[i], ds->classes, st, err);
}

int vka_dataset_get_err(const struct vka_dataset *ds, uint32_t i, uint32_t channels,
                        struct vka_sample *s, char *err)
{
    *s = (struct vka_sample){ .label = -1 };
    if (i >= ds->count) {
        vka_seterr(err, "sample %u of a dataset of %u", i, ds->count);
        return -EINVAL;
    }
    if (channels != 0 && channels != 1 && channels != 3) {
        vka_seterr(err, "channels must be 1 or 3, not %u", channels);
        return -EINVAL;
    }
    uint32_t c = channels ? channels : ds->channels;
    int ret;
    switch (ds->kind) {
    case VKA_DATA_FOLDER:
    case VKA_DATA_VOC:
    case VKA_DATA_CITYSCAPES:
    case VKA_DATA_ADE20K:
    case VKA_DATA_LIST:
    case VKA_DATA_IMAGES:
        ret = get_file_sample(ds, i, c, s, NULL, err);
        break;
    case VKA_DATA_IDX: {
        size_t px = (size_t)ds->width * ds->height;
        s->image = (struct vka_image){ ds->width, ds->height, ds->channels, malloc(px * ds->channels) };
        if (!s->image.data) {
            ret = -ENOMEM;
            vka_seterr(err, "%s: out of memory", ds->name);
            break;
        }
        memcpy(s->image.data, ds->idx.data + px * ds->channels * i, px * ds->channels);
        if (ds->has_labels)
            s->label = ds->labels.data[i];
        ret = 0;
        break;
    }
    case VKA_DATA_SHAPES:
        ret = vka_shapes_make(ds, i, false, s, err);
        break;
    default:
        ret = vka_fashion_make(ds, i, s, err);
        break;
    }
    if (!ret && s->image.c != c && (ret = vka_image_convert(&s->image, c)))
        vka_seterr(err, "%s: out of memory", vka_dataset_name(ds, i));
    if (ret)
        vka_sample_free(s);
    return ret;
}

int vka_dataset_get(const struct vka_dataset *ds, uint32_t i, uint32_t channels,
                    struct vka_sample *s)
{
    char err[VKA_ERRLEN];
    int ret = vka_dataset_get_err(ds, i, channels, s, err);
    if (ret)
        vka_err("%s", err);
    return ret;
}

/* ---- verification at open -------------------------------------------------------- */

struct verify {
    struct vka_dataset *ds;
    atomic_uint next;
    int *ret;         /* per sample */
    char **msg;       /* per failed sample */
    pthread_mutex_t lock;
    struct vka_class_stats st;
};

static int verify_one(struct vka_dataset *ds, uint32_t i, struct vka_class_stats *st,
                      char *err)
{
    if (ds->header_only && ds->kind != VKA_DATA_IMAGES) {
        struct vka_image_info info;
        int ret = vka_image_probe_err(ds->images[i], &info, err);
        if (ret)
            return ret;
        struct vka_image mask;
        if ((ret = read_mask(ds, i, &mask, err)))
            return ret;
        if (mask.w != info.w || mask.h != info.h) {
            vka_seterr(err, "%s: mask is %ux%u but its image %s is %ux%u", ds->masks[i],
                       mask.w, mask.h, ds->images[i], info.w, info.h);
            vka_image_free(&mask);
            return -EINVAL;
        }
        ret = check_mask(ds, &mask, ds->masks[i], ds->classes, st, err);
        vka_image_free(&mask);
        return ret;
    }
    if (ds->header_only) {
        struct vka_image_info info;
        return vka_image_probe_err(ds->images[i], &info, err);
    }
    /* zeroed: a failed image read leaves the mask unset, and both are freed */
    struct vka_sample s = { 0 };
    int ret = get_file_sample(ds, i, 0, &s, st, err);
    vka_sample_free(&s);
    return ret;
}

static void *verify_thread(void *arg)
{
    struct verify *v = arg;
    char err[VKA_ERRLEN];
    struct vka_class_stats *st = calloc(1, sizeof(*st));
    for (;;) {
        uint32_t i = atomic_fetch_add(&v->next, 1);
        if (i >= v->ds->count)
            break;
        struct vka_class_stats *one = st ? calloc(1, sizeof(*one)) : NULL;
        if (!one) {
            v->ret[i] = -ENOMEM;
            continue;
        }
        int ret = verify_one(v->ds, i, one, err);
        v->ret[i] = ret;
        if (ret) {
            v->msg[i] = strdup(err);
        } else {
            st->images += one->images;
            st->ignored += one->ignored;
            for (uint32_t c = 0; c < VKA_MAX_CLASSES; c++) {
                st->pixels[c] += one->pixels[c];
                st->image_pixels[c] += one->image_pixels[c];
            }
        }
        free(one);
    }
    if (st) {
        pthread_mutex_lock(&v->lock);
        v->st.images += st->images;
        v->st.ignored += st->ignored;
        for (uint32_t c = 0; c < VKA_MAX_CLASSES; c++) {
            v->st.pixels[c] += st->pixels[c];
            v->st.image_pixels[c] += st->image_pixels[c];
        }
        pthread_mutex_unlock(&v->lock);
        free(st);
    }
    return NULL;
}

static uint32_t default_threads(uint32_t n)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint32_t t = n ? n : cpus > 0 ? (uint32_t)cpus : 1;
    return t > 8 ? 8 : t;
}

static int verify_all(struct vka_dataset *ds, uint32_t threads, char *err)
{
    struct verify v = { .ds = ds };
    atomic_init(&v.next, 0);
    v.ret = calloc(ds->count, sizeof(int));
    v.msg = calloc(ds->count, sizeof(char *));
    pthread_t *th = calloc(threads, sizeof(pthread_t));
    int ret = 0;
    if (!v.ret || !v.msg || !th || pthread_mutex_init(&v.lock, NULL)) {
        free(v.ret);
        free(v.msg);
        free(th);
        vka_seterr(err, "out of memory verifying %u samples", ds->count);
        return -ENOMEM;
    }
    uint32_t started = 0;
    for (; started < threads && started < ds->count; started++)
        if (pthread_create(&th[started], NULL, verify_thread, &v))
            break;
    if (!started)
        verify_thread(&v);
    for (uint32_t t = 0; t < started; t++)
        pthread_join(th[t], NULL);
    pthread_mutex_destroy(&v.lock);
    free(th);
    uint32_t kept = 0;
    for (uint32_t i = 0; i < ds->count; i++) {
        if (!v.ret[i]) {
            ds->images[kept] = ds->images[i];
            if (ds->masks)
                ds->masks[kept] = ds->masks[i];
            kept++;
            continue;
        }
        const char *m = v.msg[i] ? v.msg[i] : "out of memory";
        if (!ret && !ds->skip_bad) {
            vka_seterr(err, "%s", m);
            ret = v.ret[i];
        } else if (!ret) {
            vka_warn("skipping: %s", m);
        }
        free(ds->images[i]);
        if (ds->masks)
            free(ds->masks[i]);
        ds->images[i] = NULL;
        if (ds->masks)
            ds->masks[i] = NULL;
    }
    for (uint32_t i = 0; i < ds->count; i++)
        free(v.msg[i]);
    free(v.msg);
    free(v.ret);
    ds->count = kept;
    if (ret)
        return ret;
    if (!kept) {
        vka_seterr(err, "%s: empty dataset: every sample was bad and skipped", ds->name);
        return -ENOENT;
    }
    if (ds->masks) {
        ds->stats = v.st;
        ds->stats_ready = true;
    }
    return 0;
}

/* ---- open ----------------------------------------------------------------------- */

/* A label map writes the ignore index for unlabelled pixels, so it must not be a class:
 * checked as soon as the class count is known (before verifying, when asked for or
 * fixed by the layout). */
static int ignore_clash(const struct vka_dataset *ds, char *err)
{
    if (!ds->mapped || ds->ignore_index >= (int32_t)ds->classes)
        return 0;
    vka_seterr(err, "%s: ignore index %d is one of the %u classes, but the label map "
               "writes it for unlabelled pixels: choose one of %u..255", ds->name,
               ds->ignore_index, ds->classes, ds->classes);
    return -EINVAL;
}

/* FOLDER, VOC and LIST without a class count asked for: the largest id their masks
 * hold (ignore index aside) + 1, from the counts made at open. */
static int finish_classes(struct vka_dataset *ds, char *err)
{
    if (!ds->has_masks)
        return 0;
    if (!ds->classes && ds->stats_ready) {
        for (uint32_t c = 0; c < VKA_MAX_CLASSES; c++)
            if (ds->stats.pixels[c])
                ds->classes = c + 1;
        if (!ds->classes) {
            vka_seterr(err, "%s: every mask pixel is the ignore index %d", ds->name,
                       ds->ignore_index);
            return -EINVAL;
        }
    }
    ds->stats.classes = ds->classes;
    return ignore_clash(ds, err);
}

static bool is_file_kind(enum vka_data_kind k)
{
    return k == VKA_DATA_FOLDER || k == VKA_DATA_VOC || k == VKA_DATA_CITYSCAPES ||
           k == VKA_DATA_ADE20K || k == VKA_DATA_LIST || k == VKA_DATA_IMAGES;
}

/* The label map of the layout, or of reduce_zero_label, applied by read_mask. */
static int label_map(struct vka_dataset *ds, const struct vka_dataset_params *p, char *err)
{
    uint8_t ign = (uint8_t)ds->ignore_index;
    bool reduce = p->reduce_zero_label || p->kind == VKA_DATA_ADE20K;
    if (p->kind == VKA_DATA_CITYSCAPES) {
        if (p->reduce_zero_label) {
            vka_seterr(err, "%s: reduce_zero_label would drop road, train id 0; the "
                       "labelId map already ignores the unlabelled ids", ds->name);
            return -EINVAL;
        }
        vka_cityscapes_label_map(ds->label_map, ign);
        ds->map_note = "ids are train ids mapped from the file's labelIds";
        ds->mapped = true;
        return ignore_clash(ds, err);
    }
    if (!reduce)
        return 0;
    if (p->kind != VKA_DATA_FOLDER && p->kind != VKA_DATA_VOC && p->kind != VKA_DATA_LIST &&
        p->kind != VKA_DATA_ADE20K) {
        vka_seterr(err, "%s: reduce_zero_label applies to mask files (folder, voc, list; "
                   "ade20k always)", ds->name);
        return -EINVAL;
    }
    if (p->palette) {
        /* a palette names its colours' classes itself: list class 0's colour under
         * "ignore" instead, and the ignore colours would be shifted with the ids */
        vka_seterr(err, "%s: reduce_zero_label with a palette: put the colour of class 0 "
                   "in the palette's \"ignore\" list instead", ds->name);
        return -EINVAL;
    }
    /* mmsegmentation's LoadAnnotations: 0 -> 255, then - 1 with 254 (from 255) back to
     * 255; here 255 stands for the ignore index, whatever it is */
    ds->label_map[0] = ign;
    for (uint32_t v = 1; v < 255; v++)
        ds->label_map[v] = (uint8_t)(v - 1);
    ds->label_map[255] = ign;
    ds->map_note = "ids are after reduce_zero_label: the file's values - 1";
    ds->mapped = true;
    return ignore_clash(ds, err);
}

int vka_dataset_open(const struct vka_dataset_params *p, struct vka_dataset **out)
{
    char err[VKA_ERRLEN] = "";
    *out = NULL;
    struct vka_dataset *ds = calloc(1, sizeof(*ds));
    if (!ds) {
        vka_err("out of memory opening a dataset");
        return -ENOMEM;
    }
    int ret = -EINVAL;
    static const char *kinds[] = {
        [VKA_DATA_FOLDER] = "folder", [VKA_DATA_VOC] = "voc",
        [VKA_DATA_CITYSCAPES] = "cityscapes", [VKA_DATA_ADE20K] = "ade20k",
        [VKA_DATA_LIST] = "list", [VKA_DATA_IMAGES] = "images", [VKA_DATA_IDX] = "idx",
        [VKA_DATA_SHAPES] = "shapes", [VKA_DATA_FASHION] = "fashion",
    };
    ds->kind = p->kind;
    ds->split = p->split;
    ds->skip_bad = p->skip_bad;
    ds->header_only = p->header_only;
    ds->seed = p->seed;
    ds->fine = p->fine;
    ds->classes = p->classes;
    ds->ignore_index = p->ignore_index ? *p->ignore_index : 255;
    ds->channels = 3;
    const char *split = p->split == VKA_SPLIT_VAL ? "val" : "train";
    if ((unsigned)p->kind > VKA_DATA_FASHION) {
        vka_seterr(err, "unknown dataset kind %d", (int)p->kind);
        goto fail;
    }
    snprintf(ds->name, sizeof(ds->name), "%s:%s", kinds[p->kind], split);
    if (ds->ignore_index < 0 || ds->ignore_index > 255) {
        vka_seterr(err, "ignore index %d: must be 0..255 (masks are 8-bit)", ds->ignore_index);
        goto fail;
    }
    if (p->classes > VKA_MAX_CLASSES) {
        vka_seterr(err, "%u classes: at most %u", p->classes, VKA_MAX_CLASSES);
        goto fail;
    }
    if (p->labels && p->kind != VKA_DATA_IDX) {
        vka_seterr(err, "%s: class labels come with IDX datasets only", ds->name);
        goto fail;
    }
    bool files = is_file_kind(p->kind);
    if ((files || p->kind == VKA_DATA_IDX) && !p->path) {
        if (p->kind != VKA_DATA_IDX) {
            vka_seterr(err, "the %s dataset needs a path", kinds[p->kind]);
            goto fail;
        }
    }
    /* the layouts of a known class set; others count their masks' ids */
    if (!ds->classes && p->kind == VKA_DATA_CITYSCAPES)
        ds->classes = VKA_CITYSCAPES_CLASSES;
    if (!ds->classes && p->kind == VKA_DATA_ADE20K)
        ds->classes = VKA_ADE20K_CLASSES;
    if ((ret = label_map(ds, p, err)))
        goto fail;
    ret = -EINVAL;
    if (p->kind == VKA_DATA_SHAPES || p->kind == VKA_DATA_FASHION) {
        ds->width = p->width ? p->width : DEFAULT_SIDE;
        ds->height = p->height ? p->height : DEFAULT_SIDE;
        ds->count = p->count ? p->count : p->split == VKA_SPLIT_VAL ? 200 : 2000;
        if (ds->width > VKA_IMAGE_MAX_SIDE || ds->height > VKA_IMAGE_MAX_SIDE ||
            ds->width < 8 || ds->height < 8) {
            vka_seterr(err, "%s: canvas %ux%u: each side must be 8..%u", ds->name, ds->width,
                       ds->height, VKA_IMAGE_MAX_SIDE);
            goto fail;
        }
    }
    switch (p->kind) {
    case VKA_DATA_FOLDER:
        ret = vka_folder_list(ds, p->path, err);
        break;
    case VKA_DATA_VOC:
        /* no default of 21: a VOC-layout folder may hold any classes, so like a plain
         * folder its count comes from its masks (finish_classes) */
        ret = vka_voc_list(ds, p->path, err);
        break;
    case VKA_DATA_CITYSCAPES:
        ret = vka_cityscapes_list(ds, p->path, err);
        break;
    case VKA_DATA_ADE20K:
        ret = vka_ade20k_list(ds, p->path, err);
        break;
    case VKA_DATA_LIST:
        ret = vka_list_read(ds, p->path, err);
        break;
    case VKA_DATA_IMAGES:
        ret = vka_images_list(ds, p->path, err);
        break;
    case VKA_DATA_IDX: {
        char path[1024];
        const char *f = p->path;
        if (!f) {
            if ((ret = vka_fashion_path_err(p->split == VKA_SPLIT_VAL ? "t10k" : "train",
                                            "images", path, sizeof(path), err)))
                break;
            f = path;
        }
        ret = vka_idx_open(ds, f, err);
        if (ret || !p->labels)
            break;
        f = p->labels_path;
        if (!p->path && (ret = vka_fashion_path_err(p->split == VKA_SPLIT_VAL ? "t10k" : "train",
                                                    "labels", path, sizeof(path), err)))
            break;
        if (!p->path)
            f = path;
        if (!f) {
            vka_seterr(err, "%s: labels asked for without labels_path, the file that holds "
                       "them", p->path);
            ret = -EINVAL;
            break;
        }
        ret = vka_idx_open_labels(ds, f, err);
        break;
    }
    case VKA_DATA_SHAPES:
        ds->classes = ds->classes ? ds->classes : 4;
        ret = ds->classes < 4 ? -EINVAL : 0;
        if (ret)
            vka_seterr(err, "shapes: %u classes; the generator makes 4", ds->classes);
        break;
    case VKA_DATA_FASHION:
        ret = vka_fashion_open(ds, p->path, err);
        if (!ret && p->classes && p->classes < ds->classes) {
            vka_seterr(err, "fashion: %u classes; the generator makes %u", p->classes,
                       ds->classes);
            ret = -EINVAL;
        } else if (!ret && p->classes) {
            ds->classes = p->classes;
        }
        break;
    }
    if (ret)
        goto fail;
    ds->has_masks = p->kind != VKA_DATA_IMAGES && p->kind != VKA_DATA_IDX;
    if (!ds->has_masks)
        ds->classes = 0;
    if (p->palette && p->kind == VKA_DATA_FOLDER &&
        (ret = vka_palette_load_err(p->palette, &ds->palette, err)))
        goto fail;
    if (ds->palette && !ds->classes)
        ds->classes = vka_palette_classes(ds->palette);
    if (files && (ret = verify_all(ds, default_threads(p->threads), err)))
        goto fail;
    if ((ret = finish_classes(ds, err)))
        goto fail;
    if (!ds->count) {
        vka_seterr(err, "%s: empty dataset", ds->name);
        ret = -ENOENT;
        goto fail;
    }
    *out = ds;
    return 0;
fail:
    vka_err("%s", err[0] ? err : "cannot open the dataset");
    vka_dataset_destroy(&ds);
    return ret;
}

void vka_dataset_destroy(struct vka_dataset **pds)
{
    if (!pds || !*pds)
        return;
    struct vka_dataset *ds = *pds;
    for (uint32_t i = 0; i < ds->count; i++) {
        if (ds->images)
            free(ds->images[i]);
        if (ds->masks)
            free(ds->masks[i]);
    }
    free(ds->images);
    free(ds->masks);
    vka_palette_destroy(&ds->palette);
    vka_idx_free(&ds->idx);
    vka_idx_free(&ds->labels);
    free(ds->group_start);
    free(ds->group_items);
    free(ds);
    *pds = NULL;
}

int vka_dataset_spec_parse(const char *spec, bool seg, struct vka_dataset_params *p)
{
    static const struct {
        const char *prefix;
        enum vka_data_kind kind;
    } pre[] = { { "voc:", VKA_DATA_VOC },       { "cityscapes:", VKA_DATA_CITYSCAPES },
                { "ade20k:", VKA_DATA_ADE20K }, { "list:", VKA_DATA_LIST },
                { "idx:", VKA_DATA_IDX },       { "images:", VKA_DATA_IMAGES },
                { "folder:", VKA_DATA_FOLDER } };
    if (!spec || !*spec) {
        vka_err("--data: empty");
        return -EINVAL;
    }
    p->path = NULL;
    if (!strcmp(spec, "shapes")) {
        p->kind = VKA_DATA_SHAPES;
        return 0;
    }
    if (!strcmp(spec, "fashion")) {
        p->kind = seg ? VKA_DATA_FASHION : VKA_DATA_IDX;
        return 0;
    }
    for (size_t i = 0; i < sizeof(pre) / sizeof(pre[0]); i++) {
        size_t n = strlen(pre[i].prefix);
        if (!strncmp(spec, pre[i].prefix, n)) {
            if (!spec[n]) {
                vka_err("--data %s: a path must follow '%s'", spec, pre[i].prefix);
                return -EINVAL;
            }
            p->kind = pre[i].kind;
            p->path = spec + n;
            return 0;
        }
    }
    p->kind = vka_has_ext(spec, ".gz") || vka_has_ext(spec, "-ubyte") ? VKA_DATA_IDX
              : seg                                                  ? VKA_DATA_FOLDER
                                                                     : VKA_DATA_IMAGES;
    p->path = spec;
    return 0;
}

/* ---- accessors and statistics ---------------------------------------------------- */

uint32_t vka_dataset_count(const struct vka_dataset *ds) { return ds->count; }
uint32_t vka_dataset_classes(const struct vka_dataset *ds) { return ds->classes; }
int32_t vka_dataset_ignore_index(const struct vka_dataset *ds) { return ds->ignore_index; }
bool vka_dataset_has_masks(const struct vka_dataset *ds) { return ds->has_masks; }
bool vka_dataset_has_labels(const struct vka_dataset *ds) { return ds->has_labels; }
uint32_t vka_dataset_channels(const struct vka_dataset *ds) { return ds->channels; }

const char *vka_dataset_name(const struct vka_dataset *ds, uint32_t i)
{
    if (ds->images && i < ds->count)
        return ds->images[i];
    return ds->name;
}

int vka_dataset_class_stats(struct vka_dataset *ds, struct vka_class_stats *st)
{
    if (!ds->has_masks) {
        vka_err("%s: no masks, so no class frequencies", ds->name);
        return -EINVAL;
    }
    if (!ds->stats_ready) {
        struct vka_class_stats acc = { .classes = ds->classes };
        char err[VKA_ERRLEN];
        for (uint32_t i = 0; i < ds->count; i++) {
            struct vka_sample s;
            int ret = get_mask(ds, i, &s, err);
            if (!ret)
                ret = vka_mask_check(&s.mask, vka_dataset_name(ds, i), ds->classes,
                                     ds->ignore_index, &acc, err);
            vka_sample_free(&s);
            if (ret) {
                vka_err("%s", err);
                return ret;
            }
        }
        ds->stats = acc;
        ds->stats_ready = true;
    }
    *st = ds->stats;
    st->classes = ds->classes;
    return 0;
}

int vka_dataset_check_classes(struct vka_dataset *ds, uint32_t classes)
{
    if (!ds->has_masks) {
        vka_err("%s: no masks, so no class ids to check", ds->name);
        return -EINVAL;
    }
    if (!classes || classes > VKA_MAX_CLASSES) {
        vka_err("%s: checking the masks against %u classes; 1..%u", ds->name, classes,
                VKA_MAX_CLASSES);
        return -EINVAL;
    }
    /* the counts say whether any mask offends; only then are masks read, to name it */
    struct vka_class_stats st;
    int ret = vka_dataset_class_stats(ds, &st);
    if (ret)
        return ret;
    bool over = false;
    for (uint32_t v = classes; v < VKA_MAX_CLASSES && !over; v++)
        over = (int32_t)v != ds->ignore_index && st.pixels[v];
    if (!over)
        return 0;
    char err[VKA_ERRLEN], name[sizeof(ds->name) + 16];
    for (uint32_t i = 0; i < ds->count; i++) {
        struct vka_sample s = { 0 };
        snprintf(name, sizeof(name), "%s#%u", ds->name, i);
        const char *what = ds->masks ? ds->masks[i] : name;
        ret = get_mask(ds, i, &s, err);
        if (ret && ds->skip_bad && ret != -ENOMEM) {
            /* a mask that went bad after open: the loader skips it too */
            vka_warn("skipping: %s", err);
            continue;
        }
        if (!ret)
            ret = check_mask(ds, &s.mask, what, classes, NULL, err);
        vka_sample_free(&s);
        if (ret) {
            vka_err("%s", err);
            return ret;
        }
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int vka_class_weights_median_freq(const struct vka_class_stats *st, float *w)
{
    if (!st->classes || st->classes > VKA_MAX_CLASSES) {
        vka_err("median frequency weights: %u classes", st->classes);
        return -EINVAL;
    }
    double freq[VKA_MAX_CLASSES], sorted[VKA_MAX_CLASSES];
    uint32_t n = 0;
    for (uint32_t c = 0; c < st->classes; c++) {
        freq[c] = st->image_pixels[c] ? (double)st->pixels[c] / (double)st->image_pixels[c] : 0;
        if (freq[c] > 0)
            sorted[n++] = freq[c];
    }
    if (!n) {
        vka_err("median frequency weights: no class has any pixel");
        return -EINVAL;
    }
    qsort(sorted, n, sizeof(double), cmp_double);
    double med = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
    for (uint32_t c = 0; c < st->classes; c++)
        w[c] = freq[c] > 0 ? (float)(med / freq[c]) : 0.0f;
    return 0;
}
