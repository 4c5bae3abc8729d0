/* Folder sources: the simple segmentation layout DIR/{train,val}/{images,masks}/ and
 * ADE20K's DIR/{images,annotations}/{training,validation}/ (in both an image and its
 * mask share a stem: one pairing, stem_pairs), flat image folders (GANs), plus the
 * folder listing, path and sample-list helpers the other readers use. Names are kept
 * in byte order (strcmp), whatever the locale; files whose extension is not an
 * image's are skipped with one warning naming them. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "datasets/internal.h"

static const char *image_exts[] = { ".png", ".jpg", ".jpeg", ".bmp", ".tga" };
#define IMAGE_EXTS ".png, .jpg, .jpeg, .bmp or .tga"

bool vka_has_ext(const char *name, const char *ext)
{
    size_t n = strlen(name), e = strlen(ext);
    return n > e && !strcasecmp(name + n - e, ext);
}

bool vka_has_image_ext(const char *name)
{
    for (size_t i = 0; i < sizeof(image_exts) / sizeof(image_exts[0]); i++)
        if (vka_has_ext(name, image_exts[i]))
            return true;
    return false;
}

static bool is_png(const char *name)
{
    return vka_has_ext(name, ".png");
}

char *vka_path_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/%s", a, b);
    return s;
}

char *vka_path_join3(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 3;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/%s/%s", a, b, c);
    return s;
}

void vka_names_free(char **names, uint32_t count)
{
    if (!names)
        return;
    for (uint32_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int vka_dir_list(const char *dir, bool (*keep)(const char *), const char *want,
                 char ***names, uint32_t *count, char *err)
{
    *names = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        vka_seterr(err, "%s: cannot open folder: %s", dir, strerror(e));
        return -e;
    }
    char **list = NULL;
    uint32_t n = 0, cap = 0, skipped = 0;
    char first[256] = "";
    int ret = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno) {
                ret = -errno;
                vka_seterr(err, "%s: cannot read folder: %s", dir, strerror(errno));
            }
            break;
        }
        if (de->d_name[0] == '.')
            continue;
        if (!keep(de->d_name)) {
            if (!skipped++)
                snprintf(first, sizeof(first), "%s", de->d_name);
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **grown = realloc(list, cap * sizeof(*list));
            if (!grown) {
                ret = -ENOMEM;
                break;
            }
            list = grown;
        }
        if (!(list[n] = strdup(de->d_name))) {
            ret = -ENOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (ret) {
        if (ret == -ENOMEM)
            vka_seterr(err, "%s: out of memory listing the folder", dir);
        vka_names_free(list, n);
        return ret;
    }
    if (skipped)
        vka_warn("%s: ignoring %u file%s whose name does not end in %s (first: %s)", dir,
                 skipped, skipped > 1 ? "s" : "", want, first);
    if (n)
        qsort(list, n, sizeof(*list), cmp_str);
    *names = list;
    *count = n;
    return 0;
}

static size_t stem_len(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot ? (size_t)(dot - name) : strlen(name);
}

/* An image and its mask are paired by stem: the name with its last extension cut off
 * (the one vka_has_image_ext or is_png accepted), so "a.kk.png" has the stem "a.kk".
 * Stems compare by bytes, as names do. */
static int cmp_stem(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    size_t lx = stem_len(x), ly = stem_len(y);
    int c = strncmp(x, y, lx < ly ? lx : ly);
    return c ? c : (lx > ly) - (lx < ly);
}

/* Stem order, then name order among equal stems, so that files sharing a stem sit
 * next to each other (in name order they need not: a.bmp, a.kk.png, a.png) and the
 * pair reported is the same on every run; still sorted for a bsearch by cmp_stem. */
static int cmp_stem_name(const void *a, const void *b)
{
    int c = cmp_stem(a, b);
    return c ? c : cmp_str(a, b);
}

/* Sorts a copy of names (n) into sorted by cmp_stem_name and refuses two files of one
 * stem, naming both. */
static int sort_stems(const char *dir, const char *what, char **names, uint32_t n,
                      char **sorted, char *err)
{
    if (!n)
        return 0;
    memcpy(sorted, names, n * sizeof(char *));
    qsort(sorted, n, sizeof(char *), cmp_stem_name);
    for (uint32_t i = 1; i < n; i++)
        if (!cmp_stem(&sorted[i - 1], &sorted[i])) {
            vka_seterr(err, "%s/%s and %s/%s: two %s share the stem \"%.*s\" (an image and "
                       "its mask are paired by the name without its extension)", dir,
                       sorted[i - 1], dir, sorted[i], what, (int)stem_len(sorted[i]),
                       sorted[i]);
            return -EINVAL;
        }
    return 0;
}

int vka_sample_push(struct vka_dataset *ds, uint32_t *cap, char *image, char *mask)
{
    if (ds->count == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        char **gi = realloc(ds->images, *cap * sizeof(char *));
        if (gi)
            ds->images = gi;
        char **gm = gi ? realloc(ds->masks, *cap * sizeof(char *)) : NULL;
        if (gm)
            ds->masks = gm;
        if (!gi || !gm) {
            free(image);
            free(mask);
            return -ENOMEM;
        }
    }
    ds->images[ds->count] = image;
    ds->masks[ds->count] = mask;
    ds->count++;
    return 0;
}

int vka_sample_add(struct vka_dataset *ds, uint32_t *cap, char *image, char *mask,
                   const char *from, char *err)
{
    const char *missing = access(image, F_OK) ? image : access(mask, F_OK) ? mask : NULL;
    if (!missing) {
        if (!vka_sample_push(ds, cap, image, mask))
            return 0;
        vka_seterr(err, "%s: out of memory", from);
        return -ENOMEM;
    }
    vka_seterr(err, "%s: missing %s (%s)", missing, missing == image ? "image" : "mask", from);
    free(image);
    free(mask);
    if (!ds->skip_bad)
        return -ENOENT;
    vka_warn("skipping: %s", err);
    return 0;
}

/* The images of folder idir, each with the mask of its stem in folder mdir. */
static int stem_pairs(struct vka_dataset *ds, const char *idir, const char *mdir, char *err)
{
    char **inames = NULL, **mnames = NULL, **msorted = NULL, **isorted = NULL;
    uint32_t ni = 0, nm = 0, cap = 0, used = 0;
    int ret;
    bool *taken = NULL;
    if ((ret = vka_dir_list(idir, vka_has_image_ext, IMAGE_EXTS, &inames, &ni, err)))
        goto fail;
    if ((ret = vka_dir_list(mdir, is_png, ".png", &mnames, &nm, err)))
        goto fail;
    ret = -ENOMEM;
    msorted = malloc((nm ? nm : 1) * sizeof(char *));
    isorted = malloc((ni ? ni : 1) * sizeof(char *));
    taken = calloc(nm ? nm : 1, 1);
    if (!msorted || !isorted || !taken)
        goto fail;
    /* two images of one stem would both train on its mask; two masks of one stem leave
     * its image's mask unknown: neither is a bad sample to skip but a layout to fix */
    if ((ret = sort_stems(mdir, "masks", mnames, nm, msorted, err)) ||
        (ret = sort_stems(idir, "images", inames, ni, isorted, err)))
        goto fail;
    ret = -ENOMEM;
    for (uint32_t i = 0; i < ni; i++) {
        char **hit = nm ? bsearch(&inames[i], msorted, nm, sizeof(char *), cmp_stem) : NULL;
        char *ipath = vka_path_join(idir, inames[i]);
        if (!ipath)
            goto fail;
        if (!hit) {
            vka_seterr(err, "%s: missing mask: no %s/%.*s.png", ipath, mdir,
                       (int)stem_len(inames[i]), inames[i]);
            if (!ds->skip_bad) {
                free(ipath);
                ret = -ENOENT;
                goto fail;
            }
            vka_warn("skipping: %s", err);
            free(ipath);
            continue;
        }
        taken[hit - msorted] = true;
        used++;
        char *mpath = vka_path_join(mdir, *hit);
        if (!mpath) {
            free(ipath);
            goto fail;
        }
        /* it frees both paths when it fails */
        if (vka_sample_push(ds, &cap, ipath, mpath))
            goto fail;
    }
    if (used < nm) {
        uint32_t k = 0;
        while (taken[k])
            k++;
        vka_warn("%s: ignoring %u mask%s without an image (first: %s)", mdir, nm - used,
                 nm - used > 1 ? "s" : "", msorted[k]);
    }
    ret = 0;
    if (!ni) {
        vka_seterr(err, "%s: empty dataset: no images (.png, .jpg, .jpeg, .bmp, .tga)", idir);
        ret = -ENOENT;
    }
fail:
    if (ret == -ENOMEM)
        vka_seterr(err, "%s: out of memory", idir);
    free(taken);
    free(msorted);
    free(isorted);
    vka_names_free(inames, ni);
    vka_names_free(mnames, nm);
    return ret;
}

/* stem_pairs on idir and mdir (malloc'ed paths under root, NULL when out of memory),
 * which it frees */
static int stem_pairs_own(struct vka_dataset *ds, const char *root, char *idir, char *mdir,
                          char *err)
{
    int ret = -ENOMEM;
    if (idir && mdir)
        ret = stem_pairs(ds, idir, mdir, err);
    else
        vka_seterr(err, "%s: out of memory", root);
    free(idir);
    free(mdir);
    return ret;
}

int vka_folder_list(struct vka_dataset *ds, const char *root, char *err)
{
    const char *split = ds->split == VKA_SPLIT_VAL ? "val" : "train";
    return stem_pairs_own(ds, root, vka_path_join3(root, split, "images"),
                          vka_path_join3(root, split, "masks"), err);
}

/* mmsegmentation's ADE20KDataset: images/{training,validation}/NAME.jpg with
 * annotations/{training,validation}/NAME.png; any image extension is taken, as for the
 * folder layout. The ids are shifted by reduce_zero_label in dataset.c. */
int vka_ade20k_list(struct vka_dataset *ds, const char *root, char *err)
{
    const char *split = ds->split == VKA_SPLIT_VAL ? "validation" : "training";
    return stem_pairs_own(ds, root, vka_path_join3(root, "images", split),
                          vka_path_join3(root, "annotations", split), err);
}

int vka_images_list(struct vka_dataset *ds, const char *root, char *err)
{
    char **names;
    uint32_t n;
    int ret = vka_dir_list(root, vka_has_image_ext, IMAGE_EXTS, &names, &n, err);
    if (ret)
        return ret;
    if (!n) {
        vka_seterr(err, "%s: empty dataset: no images (.png, .jpg, .jpeg, .bmp, .tga)", root);
        return -ENOENT;
    }
    ds->images = calloc(n, sizeof(char *));
    if (!ds->images) {
        vka_names_free(names, n);
        vka_seterr(err, "%s: out of memory", root);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (!(ds->images[i] = vka_path_join(root, names[i]))) {
            ds->count = i;
            vka_names_free(names, n);
            vka_seterr(err, "%s: out of memory", root);
            return -ENOMEM;
        }
    }
    ds->count = n;
    vka_names_free(names, n);
    return 0;
}
