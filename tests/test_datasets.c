/* Datasets (datasets/): every reader on files the tests write into a temporary folder
 * (tests/datasets_files.c: stb_image_write for PNG/BMP/TGA, flat-block JPEGs whose
 * decode is exact, libspng for indexed PNGs, zlib for IDX), each
 * bad input as its own test asserting that the error names the file, the generators'
 * determinism, augmentation against hand-computed outputs, the loader's order across
 * worker counts, batch splits and seeks, and median frequency weights. Host only: no
 * Vulkan. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "datasets/dataset.h"
#include "datasets_files.h"

static struct vka_dataset *open_ok(const struct vka_dataset_params *p)
{
    struct vka_dataset *ds = NULL;
    int ret = vka_dataset_open(p, &ds);
    cr_assert_eq(ret, 0, "open failed (%d): %s", ret, vka_last_error());
    cr_assert(ds);
    return ds;
}

/* The open must fail and the message must name `file` and contain `what`. */
static void open_fails(const struct vka_dataset_params *p, const char *file, const char *what)
{
    struct vka_dataset *ds = NULL;
    vka_clear_error();
    int ret = vka_dataset_open(p, &ds);
    cr_assert_lt(ret, 0, "opened although %s should fail with '%s'", file, what);
    cr_assert_null(ds);
    cr_assert(strstr(vka_last_error(), file), "the error does not name %s: %s", file,
              vka_last_error());
    cr_assert(strstr(vka_last_error(), what), "the error does not say '%s': %s", what,
              vka_last_error());
}

TestSuite(datasets, .fini = tmp_cleanup);

/* ---- images -------------------------------------------------------------------------- */

Test(datasets, image_formats_round_trip)
{
    test_seed("datasets/image_formats_round_trip");
    const char *d = tmp_make();
    uint32_t w = test_rand_range(5, 40), h = test_rand_range(5, 40);
    uint8_t *rgb = rand_bytes((size_t)w * h * 3, 256), *grey = rand_bytes((size_t)w * h, 256);
    png(P("%s/a.png", d), w, h, 3, rgb);
    png(P("%s/g.png", d), w, h, 1, grey);
    write_bmp(P("%s/a.bmp", d), w, h, 3, rgb);
    write_tga(P("%s/a.tga", d), w, h, 3, rgb);
    uint8_t *jgrey = malloc((size_t)w * h);
    rand_jpeg(P("%s/a.jpg", d), w, h, jgrey);
    /* colour: Y per block, Cb = Cr = 128 but for block 0, which is red (Cr 240): R = Y +
     * 1.402 * 112 clamps at 255 and B = Y, so block 0 keeps Y <= 150 for R > B + 60 */
    uint32_t bw = (w + 7) / 8, nb = bw * ((h + 7) / 8);
    uint8_t *ycc = malloc(nb * 3);
    for (uint32_t b = 0; b < nb; b++) {
        ycc[3 * b] = (uint8_t)test_rand_range(40, b ? 200 : 150);
        ycc[3 * b + 1] = 128;
        ycc[3 * b + 2] = b ? 128 : 240;
    }
    flat_jpeg(P("%s/c.jpg", d), w, h, 3, ycc);
    const char *exact[] = { "a.png", "a.bmp", "a.tga" };
    for (int f = 0; f < 3; f++) {
        struct vka_image img;
        const char *path = P("%s/%s", d, exact[f]);
        cr_assert_eq(vka_image_read(path, 0, &img), 0, "%s", vka_last_error());
        cr_assert(img.w == w && img.h == h && img.c == 3, "%s: %ux%ux%u", path, img.w, img.h,
                  img.c);
        cr_assert_eq(memcmp(img.data, rgb, (size_t)w * h * 3), 0, "%s: pixels differ", path);
        vka_image_free(&img);
    }
    struct vka_image img;
    cr_assert_eq(vka_image_read(P("%s/g.png", d), 0, &img), 0, "%s", vka_last_error());
    cr_assert(img.c == 1 && !memcmp(img.data, grey, (size_t)w * h));
    vka_image_free(&img);
    /* grey read as RGB replicates the channel */
    cr_assert_eq(vka_image_read(P("%s/g.png", d), 3, &img), 0);
    for (uint32_t i = 0; i < w * h; i++)
        cr_assert(img.data[3 * i] == grey[i] && img.data[3 * i + 2] == grey[i]);
    vka_image_free(&img);
    /* flat 8x8 blocks with only a DC coefficient decode exactly */
    cr_assert_eq(vka_image_read(P("%s/a.jpg", d), 0, &img), 0, "%s", vka_last_error());
    cr_assert(img.w == w && img.h == h && img.c == 1);
    cr_assert_eq(memcmp(img.data, jgrey, (size_t)w * h), 0, "grey JPEG pixels differ");
    vka_image_free(&img);
    cr_assert_eq(vka_image_read(P("%s/c.jpg", d), 0, &img), 0, "%s", vka_last_error());
    cr_assert(img.w == w && img.h == h && img.c == 3);
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++) {
            uint32_t b = (y / 8) * bw + x / 8;
            const uint8_t *q = img.data + 3 * ((size_t)y * w + x);
            if (b)
                cr_assert(q[0] == ycc[3 * b] && q[1] == ycc[3 * b] && q[2] == ycc[3 * b],
                          "(%u, %u): %u %u %u, want grey %u", x, y, q[0], q[1], q[2],
                          ycc[3 * b]);
            else
                cr_assert(q[0] > q[1] + 60 && q[0] > q[2] + 60, "block 0 is not red");
        }
    vka_image_free(&img);
    free(jgrey);
    free(ycc);
    struct vka_image_info info;
    cr_assert_eq(vka_image_probe(P("%s/a.jpg", d), &info), 0);
    cr_assert(info.format == VKA_FMT_JPEG && info.w == w && info.h == h);
    free(rgb);
    free(grey);
}

/* A PNG may hold empty IDAT chunks (the compressed stream is the concatenation of all
 * IDATs): one before the data and one after it read the same pixels as without them.
 * (stb_image 2.27 offsets a null pointer for the first: datasets/image.c drops them.) */
Test(datasets, png_empty_idat)
{
    test_seed("datasets/png_empty_idat");
    const char *d = tmp_make();
    uint32_t w = test_rand_range(3, 20), h = test_rand_range(3, 20);
    uint8_t *rgb = rand_bytes((size_t)w * h * 3, 256);
    const char *path = P("%s/e.png", d);
    png(path, w, h, 3, rgb);
    size_t n;
    uint8_t *b = read_bytes(path, &n);
    /* length 0, "IDAT", its CRC-32 */
    static const uint8_t empty[12] = { 0, 0, 0, 0, 'I', 'D', 'A', 'T', 0x35, 0xaf, 0x06, 0x1e };
    uint8_t *e = malloc(n + 24);
    memcpy(e, b, 33); /* signature and IHDR */
    memcpy(e + 33, empty, 12);
    memcpy(e + 45, b + 33, n - 45); /* up to IEND */
    memcpy(e + n, empty, 12);
    memcpy(e + n + 12, b + n - 12, 12);
    write_bytes(path, e, n + 24);
    struct vka_image img;
    cr_assert_eq(vka_image_read(path, 0, &img), 0, "%s", vka_last_error());
    cr_assert(img.w == w && img.h == h && img.c == 3, "%ux%ux%u", img.w, img.h, img.c);
    cr_assert_eq(memcmp(img.data, rgb, (size_t)w * h * 3), 0, "pixels differ");
    vka_image_free(&img);
    free(e);
    free(b);
    free(rgb);
}

/* ---- the folder layout ------------------------------------------------------------------ */

Test(datasets, folder_layout_pairs_sorted)
{
    test_seed("datasets/folder_layout_pairs_sorted");
    const char *d = tmp_make();
    make_folder(d, "train", 5, 12, 9, 3);
    make_folder(d, "val", 2, 7, 7, 3);
    struct vka_dataset *ds = open_ok(&(struct vka_dataset_params){ .kind = VKA_DATA_FOLDER,
                                                                   .path = d, .threads = 3 });
    cr_assert_eq(vka_dataset_count(ds), 5);
    cr_assert(vka_dataset_has_masks(ds));
    cr_assert_leq(vka_dataset_classes(ds), 3);
    cr_assert_geq(vka_dataset_classes(ds), 2, "classes inferred as %u",
                  vka_dataset_classes(ds));
    for (uint32_t i = 0; i < 5; i++) {
        const char *ext[] = { "png", "bmp", "tga" };
        const char *want = P("%s/train/images/s%02u.%s", d, i, ext[i % 3]);
        cr_assert_str_eq(vka_dataset_name(ds, i), want);
        struct vka_sample s;
        cr_assert_eq(vka_dataset_get(ds, i, 3, &s), 0, "%s", vka_last_error());
        struct vka_image m;
        cr_assert_eq(vka_mask_read(P("%s/train/masks/s%02u.png", d, i), NULL, 255, &m), 0);
        cr_assert(s.image.w == 12 && s.image.h == 9 && s.image.c == 3);
        cr_assert(s.mask.w == 12 && s.mask.h == 9 && !memcmp(s.mask.data, m.data, 12 * 9));
        vka_image_free(&m);
        vka_sample_free(&s);
    }
    struct vka_class_stats st;
    cr_assert_eq(vka_dataset_class_stats(ds, &st), 0);
    uint64_t total = st.ignored;
    for (uint32_t c = 0; c < st.classes; c++)
        total += st.pixels[c];
    cr_assert_eq(total, 5 * 12 * 9, "class counts cover %llu of %u pixels",
                 (unsigned long long)total, 5 * 12 * 9);
    cr_assert_eq(st.images, 5);
    vka_dataset_destroy(&ds);
    cr_assert_null(ds);
    vka_dataset_destroy(&ds);
    ds = open_ok(&(struct vka_dataset_params){ .kind = VKA_DATA_FOLDER, .path = d,
                                               .split = VKA_SPLIT_VAL, .classes = 3 });
    cr_assert_eq(vka_dataset_count(ds), 2);
    cr_assert_eq(vka_dataset_classes(ds), 3);
    vka_dataset_destroy(&ds);
}

/* Files with other extensions are ignored (with a warning); a file with an image
 * extension that is not an image is refused. */
Test(datasets, non_image_files)
{
    test_seed("datasets/non_image_files");
    const char *d = tmp_make();
    make_folder(d, "train", 3, 8, 8, 2);
    write_bytes(P("%s/train/images/notes.txt", d), "hello", 5);
    write_bytes(P("%s/train/images/.DS_Store", d), "x", 1);
    write_bytes(P("%s/train/masks/readme.md", d), "x", 1);
    struct vka_dataset_params p = { .kind = VKA_DATA_FOLDER, .path = d };
    struct vka_dataset *ds = open_ok(&p);
    cr_assert_eq(vka_dataset_count(ds), 3, "the text files were not ignored");
    vka_dataset_destroy(&ds);
    const char *fake = P("%s/train/images/zz.png", d);
    write_bytes(fake, "<html>not an image</html>", 25);
    uint8_t m[64] = { 0 };
    png(P("%s/train/masks/zz.png", d), 8, 8, 1, m);
    open_fails(&p, fake, "not a PNG, JPEG, BMP or TGA image");
    p.skip_bad = true;
    ds = open_ok(&p);
    cr_assert_eq(vka_dataset_count(ds), 3);
    vka_dataset_destroy(&ds);
}

Test(datasets, missing_mask)
{
    test_seed("datasets/missing_mask");
    const char *d = tmp_make();
    make_folder(d, "train", 4, 8, 8, 2);
    const char *mask = P("%s/train/masks/s02.png", d);
    cr_assert_eq(remove(mask), 0);
    struct vka_dataset_params p = { .kind = VKA_DATA_FOLDER, .path = d };
    open_fails(&p, P("%s/train/images/s02.tga", d), "missing mask");
    p.skip_bad = true;
    struct vka_dataset *ds = open_ok(&p);
    cr_assert_eq(vka_dataset_count(ds), 3);
    for (uint32_t i = 0; i < 3; i++)
        cr_assert_null(strstr(vka_dataset_name(ds, i), "s02"));
    vka_dataset_destroy(&ds);
}

/* An image and its mask are paired by stem (the name without its last extension), so
 * two images of one stem would both train on one mask: refused whatever sorts between
 * them (a.kk.png, stem "a.kk", sorts between a.bmp and a.png). Two masks of one stem
 * likewise, however the names sort. */
Test(datasets, folder_duplicate_stems)
{
    test_seed("datasets/folder_duplicate_stems");
    const char *d = tmp_make();
    make_folder(d, "train", 2, 8, 8, 2);
    uint8_t *img = rand_bytes(8 * 8 * 3, 256), *m = rand_mask(8, 8, 2);
    const char *a_bmp = P("%s/train/images/a.bmp", d), *a_png = P("%s/train/images/a.png", d);
    write_bmp(a_bmp, 8, 8, 3, img);
    png(P("%s/train/images/a.kk.png", d), 8, 8, 3, img);
    png(a_png, 8, 8, 3, img);
    png(P("%s/train/masks/a.png", d), 8, 8, 1, m);
    png(P("%s/train/masks/a.kk.png", d), 8, 8, 1, m);
    struct vka_dataset_params p = { .kind = VKA_DATA_FOLDER, .path = d };
    open_fails(&p, a_bmp, "share the stem \"a\"");
    cr_assert(strstr(vka_last_error(), a_png), "the error names %s but not %s: %s", a_bmp,
              a_png, vka_last_error());
    /* which of the two the mask was made for is unknown, so skip_bad refuses too */
    p.skip_bad = true;
    open_fails(&p, a_bmp, "share the stem \"a\"");
    p.skip_bad = false;
    cr_assert_eq(remove(a_png), 0);
    struct vka_dataset *ds = open_ok(&p);
    cr_assert_eq(vka_dataset_count(ds), 4, "a.bmp, a.kk.png, s00 and s01");
    vka_dataset_destroy(&ds);
    /* masks: s00.PNG and s00.png (the extension's case does not count) with s00.x.png,
     * stem "s00.x", sorting after both in stem order but between them by name */
    const char *m_upper = P("%s/train/masks/s00.PNG", d), *m_lower = P("%s/train/masks/s00.png", d);
    png(m_upper, 8, 8, 1, m);
    png(P("%s/train/masks/s00.x.png", d), 8, 8, 1, m);
    open_fails(&p, m_upper, "share the stem \"s00\"");
    cr_assert(strstr(vka_last_error(), m_lower), "the error names %s but not %s: %s", m_upper,
              m_lower, vka_last_error());
    free(img);
    free(m);
}

Test(datasets, image_mask_size_mismatch)
{
    test_seed("datasets/image_mask_size_mismatch");
    const char *d = tmp_make();
    make_folder(d, "train", 3, 10, 6, 2);
    const char *mask = P("%s/train/masks/s01.png", d);
    uint8_t *m = rand_mask(6, 10, 2);
    png(mask, 6, 10, 1, m);
    free(m);
    struct vka_dataset_params p = { .kind = VKA_DATA_FOLDER, .path = d };
    open_fails(&p, mask, "mask is 6x10 but its image");
    p.header_only = true;
    open_fails(&p, mask, "mask is 6x10 but its image");
    p.skip_bad = true;
    struct vka_dataset *ds = open_ok(&p);
    cr_assert_eq(vka_dataset_count(ds), 2);
    vka_dataset_destroy(&ds);
}

Test(datasets, class_id_out_of_range)
{
    test_seed("datasets/class_id_out_of_range");
    const char *d = tmp_make();
    make_folder(d, "train", 3, 8, 8, 4);
    const char *mask = P("%s/train/masks/s00.png", d);
    uint8_t *m = rand_mask(8, 8, 4);
    m[8 * 3 + 5] = 7;
    png(mask, 8, 8, 1, m);
    free(m);
    struct vka_dataset_params p = { .kind = VKA_DATA_FOLDER, .path = d, .classes = 4 };
    open_fails(&p, mask, "class id 7 at pixel (5, 3)");
    /* 255 is the ignore index by default; with another ignore index it is a bad id */
    p.classes = 8;
    struct vka_dataset *ds = open_ok(&p);
    vka_dataset_destroy(&ds);
    p.ignore_index = &(int32_t){ 0 };
    open_fails(&p, mask, "class id 255");
    p.skip_bad = true;
    p.ignore_index = NULL;
    p.classes = 4;
    ds = open_ok(&p);
    cr_assert_eq(vka_dataset_count(ds), 2);
    vka_dataset_destroy(&ds);
}

static void corrupt_case(const char *name, void (*spoil)(const char *), const char *what)
{
    const char *d = tmp_make();
    make_folder(d, "train", 3, 16, 16, 2);
    const char *img = P("%s/train/images/%s", d, name);
    spoil(img);
    struct vka_dataset_params p = { .kind = VKA_DATA_FOLDER, .path = d };
    open_fails(&p, img, what);
    p.skip_bad = true;
    struct vka_dataset *ds = open_ok(&p);
    cr_assert_eq(vka_dataset_count(ds), 2);
    vka_dataset_destroy(&ds);
    struct vka_image im;
    vka_clear_error();
    cr_assert_lt(vka_image_read(img, 0, &im), 0);
    cr_assert(strstr(vka_last_error(), img), "%s", vka_last_error());
    cr_assert_null(im.data);
}

static void half(const char *path)
{
    truncate_to(path, 0.5);
}

Test(datasets, truncated_png)
{
    test_seed("datasets/truncated_png");
    corrupt_case("s00.png", half, "truncated PNG");
}

Test(datasets, truncated_bmp)
{
    test_seed("datasets/truncated_bmp");
    corrupt_case("s01.bmp", half, "truncated BMP");
}

static void write_jpeg_then_cut(const char *path)
{
    rand_jpeg(path, 40, 32, NULL);
    truncate_to(path, 0.8);
}

Test(datasets, truncated_jpeg)
{
    test_seed("datasets/truncated_jpeg");
    const char *d = tmp_make();
    const char *path = P("%s/cut.jpg", d);
    write_jpeg_then_cut(path);
    struct vka_image im;
    vka_clear_error();
    cr_assert_lt(vka_image_read(path, 0, &im), 0, "a truncated JPEG was decoded");
    cr_assert(strstr(vka_last_error(), path) && strstr(vka_last_error(), "truncated JPEG"),
              "%s", vka_last_error());
}

/* IHDR, IEND and the sizes intact, the compressed data overwritten. */
static void scramble_idat(const char *path)
{
    size_t n;
    uint8_t *b = read_bytes(path, &n);
    for (size_t i = 41; i + 16 < n; i++)
        b[i] = (uint8_t)(i * 37 + 11);
    write_bytes(path, b, n);
    free(b);
}

Test(datasets, corrupt_png)
{
    test_seed("datasets/corrupt_png");
    corrupt_case("s00.png", scramble_idat, "corrupt PNG");
}

/* A PNG whose IHDR claims 100000 x 100000 (a 30 GB decode) is refused from its header. */
static void absurd_png(const char *path)
{
    size_t n;
    uint8_t *b = read_bytes(path, &n);
    const uint8_t big[8] = { 0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0 };
    memcpy(b + 16, big, 8);
    write_bytes(path, b, n);
    free(b);
}

Test(datasets, absurd_dimensions)
{
    test_seed("datasets/absurd_dimensions");
    corrupt_case("s00.png", absurd_png, "header claims 100000x100000");
    const char *d = tmp_make();
    /* a BMP header of 70000 x 2 */
    uint8_t bmp[64] = { 'B', 'M' };
    bmp[10] = 54;
    bmp[14] = 40;
    bmp[18] = 0x70, bmp[19] = 0x11, bmp[20] = 0x01; /* 70000 */
    bmp[22] = 2;
    bmp[28] = 24;
    const char *path = P("%s/big.bmp", d);
    write_bytes(path, bmp, sizeof(bmp));
    struct vka_image_info info;
    vka_clear_error();
    cr_assert_eq(vka_image_probe(path, &info), -EFBIG);
    cr_assert(strstr(vka_last_error(), path) && strstr(vka_last_error(), "70000x2"), "%s",
              vka_last_error());
}

Test(datasets, unreadable_folder)
{
    const char *d = tmp_make();
    struct vka_dataset_params p = { .kind = VKA_DATA_FOLDER, .path = P("%s/nowhere", d) };
    open_fails(&p, P("%s/nowhere/train/images", d), "cannot open folder");
    /* images/ is a file, not a folder */
    mkdirs(P("%s/f/train", d));
    write_bytes(P("%s/f/train/images", d), "x", 1);
    p.path = P("%s/f", d);
    open_fails(&p, P("%s/f/train/images", d), "cannot open folder");
    p = (struct vka_dataset_params){ .kind = VKA_DATA_IMAGES, .path = P("%s/none", d) };
    open_fails(&p, P("%s/none", d), "cannot open folder");
    if (geteuid() != 0) { /* root reads any folder, so this case needs a normal user */
        mkdirs(P("%s/locked/train/images", d));
        chmod(P("%s/locked/train/images", d), 0);
        p = (struct vka_dataset_params){ .kind = VKA_DATA_FOLDER, .path = P("%s/locked", d) };
        open_fails(&p, P("%s/locked/train/images", d), "Permission denied");
    }
}

Test(datasets, empty_dataset)
{
    const char *d = tmp_make();
    mkdirs(P("%s/train/images", d));
    mkdirs(P("%s/train/masks", d));
    struct vka_dataset_params p = { .kind = VKA_DATA_FOLDER, .path = d };
    open_fails(&p, P("%s/train/images", d), "empty dataset");
    p = (struct vka_dataset_params){ .kind = VKA_DATA_IMAGES, .path = P("%s/train/masks", d) };
    open_fails(&p, P("%s/train/masks", d), "empty dataset");
    /* every sample bad and skipped */
    write_bytes(P("%s/train/images/a.png", d), "nope", 4);
    uint8_t m[4] = { 0 };
    png(P("%s/train/masks/a.png", d), 2, 2, 1, m);
    p = (struct vka_dataset_params){ .kind = VKA_DATA_FOLDER, .path = d, .skip_bad = true };
    open_fails(&p, "folder:train", "empty dataset");
}

/* ---- masks: VOC palette PNGs, RGB with a palette ----------------------------------- */

Test(datasets, voc_palette_png_read_as_indices)
{
    test_seed("datasets/voc_palette_png_read_as_indices");
    const char *d = tmp_make();
    mkdirs(P("%s/JPEGImages", d));
    mkdirs(P("%s/SegmentationClass", d));
    mkdirs(P("%s/ImageSets/Segmentation", d));
    const char *ids[] = { "2007_000033", "2007_000042" };
    uint8_t *masks[2];
    for (int i = 0; i < 2; i++) {
        rand_jpeg(P("%s/JPEGImages/%s.jpg", d, ids[i]), 20, 14, NULL);
        masks[i] = rand_mask(20, 14, 21);
        masks[i][0] = 20;
        indexed_png(P("%s/SegmentationClass/%s.png", d, ids[i]), 20, 14, masks[i]);
    }
    write_bytes(P("%s/ImageSets/Segmentation/train.txt", d), "2007_000033\n\n2007_000042\n", 25);
    struct vka_dataset *ds = open_ok(&(struct vka_dataset_params){ .kind = VKA_DATA_VOC,
                                                                   .path = d });
    cr_assert_eq(vka_dataset_count(ds), 2);
    cr_assert_eq(vka_dataset_classes(ds), 21);
    for (uint32_t i = 0; i < 2; i++) {
        struct vka_sample s;
        cr_assert_eq(vka_dataset_get(ds, i, 0, &s), 0, "%s", vka_last_error());
        cr_assert(s.mask.w == 20 && s.mask.h == 14);
        for (uint32_t p = 0; p < 20 * 14; p++)
            cr_assert_eq(s.mask.data[p], masks[i][p], "pixel %u: %u, written index %u", p,
                         s.mask.data[p], masks[i][p]);
        vka_sample_free(&s);
        free(masks[i]);
    }
    vka_dataset_destroy(&ds);
    /* a listed id without its image */
    write_bytes(P("%s/ImageSets/Segmentation/val.txt", d), "2007_000033\nnope\n", 17);
    open_fails(&(struct vka_dataset_params){ .kind = VKA_DATA_VOC, .path = d,
                                             .split = VKA_SPLIT_VAL },
               P("%s/JPEGImages/nope.jpg", d), "missing image");
}

/* DIR/{JPEGImages,SegmentationClass,ImageSets/Segmentation} with ids v0.. listed in
 * train.txt; mask i is masks[i] (w x h). */
static void voc_fixture(const char *d, uint32_t n, uint32_t w, uint32_t h, uint8_t **masks)
{
    mkdirs(P("%s/JPEGImages", d));
    mkdirs(P("%s/SegmentationClass", d));
    mkdirs(P("%s/ImageSets/Segmentation", d));
    char list[256] = "";
    for (uint32_t i = 0; i < n; i++) {
        rand_jpeg(P("%s/JPEGImages/v%u.jpg", d, i), w, h, NULL);
        indexed_png(P("%s/SegmentationClass/v%u.png", d, i), w, h, masks[i]);
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "v%u\n", i);
    }
    write_bytes(P("%s/ImageSets/Segmentation/train.txt", d), list, strlen(list));
}

/* A VOC folder's class count is what its masks hold (the largest id + 1, the ignore
 * index aside), as for a plain folder, not VOC's 21: masks of ids 0..3 and 255 make 4
 * classes. Asked for, the count is a bound the masks must keep. */
Test(datasets, voc_classes_from_masks)
{
    test_seed("datasets/voc_classes_from_masks");
    const char *d = tmp_make();
    uint8_t *masks[3];
    for (uint32_t i = 0; i < 3; i++)
        masks[i] = rand_mask(16, 12, 3); /* ids 0..2 and 255 */
    masks[1][5] = 3;
    voc_fixture(d, 3, 16, 12, masks);
    struct vka_dataset_params p = { .kind = VKA_DATA_VOC, .path = d };
    struct vka_dataset *ds = open_ok(&p);
    cr_assert_eq(vka_dataset_classes(ds), 4, "%s: masks of ids 0..3 and 255 make 4 classes, "
                 "not %u", d, vka_dataset_classes(ds));
    struct vka_class_stats st;
    cr_assert_eq(vka_dataset_class_stats(ds, &st), 0);
    cr_assert(st.classes == 4 && st.pixels[3] == 1 && st.ignored == 3 * ((16 * 12 + 6) / 7),
              "classes %u, pixels of 3: %llu, ignored %llu", st.classes,
              (unsigned long long)st.pixels[3], (unsigned long long)st.ignored);
    vka_dataset_destroy(&ds);
    p.classes = 21;
    ds = open_ok(&p);
    cr_assert_eq(vka_dataset_classes(ds), 21);
    vka_dataset_destroy(&ds);
    p.classes = 3;
    open_fails(&p, P("%s/SegmentationClass/v1.png", d), "class id 3 at pixel (5, 0)");
    for (uint32_t i = 0; i < 3; i++)
        free(masks[i]);
}

Test(datasets, rgb_mask_with_palette)
{
    test_seed("datasets/rgb_mask_with_palette");
    const char *d = tmp_make();
    make_folder(d, "train", 2, 6, 5, 2);
    const uint8_t cols[4][3] = { { 0, 0, 0 }, { 200, 10, 10 }, { 10, 200, 10 }, { 255, 255, 255 } };
    const char *pal = P("%s/palette.json", d);
    const char *json = "{\"classes\": [[0,0,0], [200,10,10], [10,200,10]],\n"
                       " \"ignore\": [[255,255,255]]}";
    write_bytes(pal, json, strlen(json));
    uint8_t ids[2][30];
    for (int i = 0; i < 2; i++) {
        uint8_t rgb[30 * 3];
        for (int p = 0; p < 30; p++) {
            uint32_t k = test_rand_range(0, 3);
            ids[i][p] = k == 3 ? 255 : (uint8_t)k;
            memcpy(rgb + 3 * p, cols[k], 3);
        }
        png(P("%s/train/masks/s%02d.png", d, i), 6, 5, 3, rgb);
    }
    struct vka_dataset_params p = { .kind = VKA_DATA_FOLDER, .path = d, .palette = pal };
    struct vka_dataset *ds = open_ok(&p);
    cr_assert_eq(vka_dataset_classes(ds), 3);
    for (uint32_t i = 0; i < 2; i++) {
        struct vka_sample s;
        cr_assert_eq(vka_dataset_get(ds, i, 0, &s), 0, "%s", vka_last_error());
        cr_assert_eq(memcmp(s.mask.data, ids[i], 30), 0, "mask %u mapped wrongly", i);
        vka_sample_free(&s);
    }
    vka_dataset_destroy(&ds);
    /* a colour outside the palette */
    uint8_t rgb[30 * 3] = { 0 };
    rgb[3 * 7] = 1, rgb[3 * 7 + 1] = 2, rgb[3 * 7 + 2] = 3;
    const char *bad = P("%s/train/masks/s01.png", d);
    png(bad, 6, 5, 3, rgb);
    open_fails(&p, bad, "colour (1, 2, 3) at pixel (1, 1) is not in the palette");
    /* an RGB mask without a palette (s00, the first in order) */
    p.palette = NULL;
    open_fails(&p, P("%s/train/masks/s00.png", d), "needs a palette");
    /* a palette with a bad entry */
    write_bytes(pal, "[[0,0,0],[1,2]]", 15);
    struct vka_palette *pp = NULL;
    cr_assert_lt(vka_palette_load(pal, &pp), 0);
    cr_assert(strstr(vka_last_error(), pal) && strstr(vka_last_error(), "entry 1"), "%s",
              vka_last_error());
    cr_assert_null(pp);
}

/* ---- IDX --------------------------------------------------------------------------- */

Test(datasets, idx_reader_and_bad_files)
{
    test_seed("datasets/idx_reader_and_bad_files");
    const char *d = tmp_make();
    const uint8_t head[16] = { 0, 0, 8, 3, 0, 0, 0, 7, 0, 0, 0, 5, 0, 0, 0, 6 };
    uint8_t *px = rand_bytes(7 * 5 * 6, 256);
    const char *good = P("%s/good-idx3-ubyte.gz", d);
    write_idx(good, head, 16, px, 7 * 5 * 6);
    struct vka_idx idx;
    cr_assert_eq(vka_idx_read(good, &idx), 0, "%s", vka_last_error());
    cr_assert(idx.ndim == 3 && idx.dims[0] == 7 && idx.dims[1] == 5 && idx.dims[2] == 6);
    cr_assert_eq(memcmp(idx.data, px, 7 * 5 * 6), 0);
    vka_idx_free(&idx);
    struct vka_dataset *ds = open_ok(&(struct vka_dataset_params){ .kind = VKA_DATA_IDX,
                                                                   .path = good });
    cr_assert_eq(vka_dataset_count(ds), 7);
    cr_assert_eq(vka_dataset_channels(ds), 1);
    cr_assert(!vka_dataset_has_masks(ds));
    struct vka_sample s;
    cr_assert_eq(vka_dataset_get(ds, 4, 0, &s), 0);
    cr_assert(s.image.w == 6 && s.image.h == 5 && !memcmp(s.image.data, px + 4 * 30, 30));
    cr_assert_null(s.mask.data);
    vka_sample_free(&s);
    vka_dataset_destroy(&ds);

    uint8_t bad[16];
    memcpy(bad, head, 16);
    bad[2] = 0x12;
    const char *magic = P("%s/magic.gz", d);
    write_idx(magic, bad, 16, px, 7 * 5 * 6);
    vka_clear_error();
    cr_assert_lt(vka_idx_read(magic, &idx), 0);
    cr_assert(strstr(vka_last_error(), magic) && strstr(vka_last_error(), "magic number"),
              "%s", vka_last_error());
    cr_assert_null(idx.data);
    bad[2] = 0x0d;
    write_idx(magic, bad, 16, px, 7 * 5 * 6);
    cr_assert_lt(vka_idx_read(magic, &idx), 0);
    cr_assert(strstr(vka_last_error(), "float"), "%s", vka_last_error());

    /* data shorter than the dims say, inside a well-formed .gz */
    const char *shortf = P("%s/short.gz", d);
    write_idx(shortf, head, 16, px, 100);
    cr_assert_lt(vka_idx_read(shortf, &idx), 0);
    cr_assert(strstr(vka_last_error(), shortf) && strstr(vka_last_error(), "truncated"), "%s",
              vka_last_error());
    /* the .gz itself cut short */
    const char *cut = P("%s/cut.gz", d);
    uint8_t *big = rand_bytes(7 * 5 * 6, 4);
    write_idx(cut, head, 16, big, 7 * 5 * 6);
    truncate_to(cut, 0.6);
    vka_clear_error();
    cr_assert_lt(vka_idx_read(cut, &idx), 0);
    cr_assert(strstr(vka_last_error(), cut), "%s", vka_last_error());
    cr_assert(strstr(vka_last_error(), "truncated") || strstr(vka_last_error(), "corrupt"),
              "%s", vka_last_error());
    open_fails(&(struct vka_dataset_params){ .kind = VKA_DATA_IDX, .path = cut }, cut, "");
    free(big);
    free(px);
}

/* dataset-fashion-mnist is installed by tools/setup.sh: missing files are a failure. */
Test(datasets, fashion_mnist_debian_files)
{
    char path[1024];
    cr_assert_eq(vka_fashion_path("t10k", "labels", path, sizeof(path)), 0, "%s",
                 vka_last_error());
    struct vka_idx l;
    cr_assert_eq(vka_idx_read(path, &l), 0, "%s", vka_last_error());
    cr_assert(l.ndim == 1 && l.dims[0] == 10000, "%s: %u dims", path, l.ndim);
    uint32_t hist[10] = { 0 };
    for (uint32_t i = 0; i < 10000; i++) {
        cr_assert_lt(l.data[i], 10);
        hist[l.data[i]]++;
    }
    for (int c = 0; c < 10; c++)
        cr_assert_eq(hist[c], 1000, "Fashion-MNIST t10k holds 1000 of each label");
    struct vka_dataset *ds = open_ok(&(struct vka_dataset_params){
        .kind = VKA_DATA_IDX, .split = VKA_SPLIT_VAL, .labels = true });
    cr_assert_eq(vka_dataset_count(ds), 10000);
    cr_assert(vka_dataset_has_labels(ds));
    /* the split's own labels file, image by image */
    for (uint32_t i = 0; i < 10000; i += 997) {
        struct vka_sample s;
        cr_assert_eq(vka_dataset_get(ds, i, 0, &s), 0, "%s", vka_last_error());
        cr_assert_eq(s.label, l.data[i], "t10k image %u: label %d, the file says %u", i,
                     s.label, l.data[i]);
        vka_sample_free(&s);
    }
    vka_idx_free(&l);
    vka_dataset_destroy(&ds);
}

/* ---- generators -------------------------------------------------------------------- */

static uint64_t sample_hash(const struct vka_dataset *ds, uint32_t i)
{
    struct vka_sample s;
    cr_assert_eq(vka_dataset_get(ds, i, 0, &s), 0, "%s", vka_last_error());
    uint64_t h = 1469598103934665603ull;
    for (size_t p = 0; p < (size_t)s.image.w * s.image.h * s.image.c; p++)
        h = (h ^ s.image.data[p]) * 1099511628211ull;
    for (size_t p = 0; s.mask.data && p < (size_t)s.mask.w * s.mask.h; p++)
        h = (h ^ s.mask.data[p]) * 1099511628211ull;
    vka_sample_free(&s);
    return h;
}

static void generator_checks(enum vka_data_kind kind, uint32_t classes_expected)
{
    uint64_t seed = test_rand_u64();
    struct vka_dataset_params p = { .kind = kind, .seed = seed, .count = 12, .width = 48,
                                    .height = 40, .split = VKA_SPLIT_VAL };
    struct vka_dataset *a = open_ok(&p), *b = open_ok(&p);
    p.seed = seed + 1;
    struct vka_dataset *c = open_ok(&p);
    cr_assert_eq(vka_dataset_classes(a), classes_expected);
    cr_assert_eq(vka_dataset_count(a), 12);
    uint32_t same_as_other_seed = 0;
    for (uint32_t i = 0; i < 12; i++) {
        uint64_t ha = sample_hash(a, 11 - i), hb = sample_hash(b, 11 - i);
        cr_assert_eq(ha, hb, "sample %u differs between two opens with one seed", 11 - i);
        cr_assert_eq(sample_hash(a, 11 - i), ha, "sample %u differs between calls", 11 - i);
        same_as_other_seed += sample_hash(c, 11 - i) == ha;
    }
    cr_assert_eq(same_as_other_seed, 0, "another seed gave the same samples");
    struct vka_sample s;
    cr_assert_eq(vka_dataset_get(a, 3, 0, &s), 0);
    cr_assert(s.image.w == 48 && s.image.h == 40 && s.image.c == 3);
    vka_sample_free(&s);
    struct vka_class_stats st;
    cr_assert_eq(vka_dataset_class_stats(a, &st), 0);
    for (uint32_t k = 0; k < classes_expected; k++)
        cr_assert_gt(st.pixels[k], 0, "class %u never drawn in 12 samples", k);
    uint64_t total = 0;
    for (uint32_t k = 0; k < st.classes; k++)
        total += st.pixels[k];
    cr_assert_eq(total, 12ull * 48 * 40);
    /* the statistics read the masks alone (shapes: drawn without the image): they are
     * the masks of the whole samples */
    uint64_t from_samples[VKA_MAX_CLASSES] = { 0 };
    for (uint32_t i = 0; i < 12; i++) {
        cr_assert_eq(vka_dataset_get(a, i, 0, &s), 0);
        for (size_t p = 0; p < (size_t)s.mask.w * s.mask.h; p++)
            from_samples[s.mask.data[p]]++;
        vka_sample_free(&s);
    }
    for (uint32_t k = 0; k < VKA_MAX_CLASSES; k++)
        cr_assert_eq(st.pixels[k], from_samples[k], "class %u: %llu pixels in the statistics, "
                     "%llu in the samples", k, (unsigned long long)st.pixels[k],
                     (unsigned long long)from_samples[k]);
    vka_dataset_destroy(&a);
    vka_dataset_destroy(&b);
    vka_dataset_destroy(&c);
}

Test(datasets, shapes_deterministic_per_seed)
{
    test_seed("datasets/shapes_deterministic_per_seed");
    generator_checks(VKA_DATA_SHAPES, 4);
}

Test(datasets, fashion_deterministic_per_seed)
{
    test_seed("datasets/fashion_deterministic_per_seed");
    generator_checks(VKA_DATA_FASHION, 4);
    struct vka_dataset *ds = open_ok(&(struct vka_dataset_params){
        .kind = VKA_DATA_FASHION, .split = VKA_SPLIT_VAL, .fine = true, .count = 4 });
    cr_assert_eq(vka_dataset_classes(ds), 5);
    vka_dataset_destroy(&ds);
    cr_assert_eq(vka_fashion_group(8, false), 3);
    cr_assert_eq(vka_fashion_group(9, true), 3);
}

/* ---- augmentation ---------------------------------------------------------------- */

static const float zero3[3] = { 0, 0, 0 }, one3[3] = { 1, 1, 1 };

Test(datasets, augment_identity_and_center_crop)
{
    test_seed("datasets/augment_identity_and_center_crop");
    uint32_t w = test_rand_range(3, 30), h = test_rand_range(3, 30);
    struct vka_image img = { w, h, 3, rand_bytes((size_t)w * h * 3, 256) };
    struct vka_image m = { w, h, 1, rand_mask(w, h, 5) };
    float *x = malloc(sizeof(float) * 3 * 32 * 32);
    int32_t *y = malloc(sizeof(int32_t) * 32 * 32);
    struct vka_augment_params a = { .mean = zero3, .std = one3 };
    cr_assert_eq(vka_augment(&a, 1, &img, &m, 255, x, y), 0);
    for (uint32_t k = 0; k < 3; k++)
        for (uint32_t p = 0; p < w * h; p++) {
            /* exact: weight 1 on one tap, then v / 255 in float */
            cr_assert_eq(x[k * w * h + p], (float)img.data[p * 3 + k] * (1.0f / 255.0f),
                         "pixel %u channel %u", p, k);
            cr_assert_eq(y[p], m.data[p]);
        }
    /* a 32 x 32 center window over a smaller image: padding 0 / ignore */
    a.size = 32;
    cr_assert_eq(vka_augment(&a, 1, &img, &m, 255, x, y), 0);
    uint32_t ox = (32 - w + 1) / 2, oy = (32 - h + 1) / 2;
    for (uint32_t j = 0; j < 32; j++)
        for (uint32_t i = 0; i < 32; i++) {
            bool in = i >= ox && i < ox + w && j >= oy && j < oy + h;
            size_t q = (size_t)(j - oy) * w + (i - ox);
            float want = in ? (float)img.data[q * 3 + 1] * (1.0f / 255.0f) : 0.0f;
            cr_assert_eq(x[32 * 32 + j * 32 + i], want, "(%u, %u)", i, j);
            cr_assert_eq(y[j * 32 + i], in ? m.data[q] : 255, "(%u, %u)", i, j);
        }
    /* normalisation with the ImageNet defaults */
    a = (struct vka_augment_params){ 0 };
    cr_assert_eq(vka_augment(&a, 1, &img, NULL, 255, x, NULL), 0);
    float want = ((float)img.data[2] / 255.0f - 0.406f) / 0.225f;
    cr_assert_float_eq(x[2 * w * h], want, 1e-5, "ImageNet normalisation: %g vs %g",
                       (double)x[2 * w * h], (double)want); /* one float rounding */
    vka_image_free(&img);
    vka_image_free(&m);
    free(x);
    free(y);
}

Test(datasets, augment_flip_scale_and_jitter)
{
    test_seed("datasets/augment_flip_scale_and_jitter");
    uint32_t w = 24, h = 20, S = 16;
    struct vka_image img = { w, h, 3, rand_bytes((size_t)w * h * 3, 256) };
    struct vka_image m = { w, h, 1, rand_mask(w, h, 4) };
    float *x0 = malloc(sizeof(float) * 3 * S * S), *x1 = malloc(sizeof(float) * 3 * S * S);
    int32_t *y0 = malloc(sizeof(int32_t) * S * S), *y1 = malloc(sizeof(int32_t) * S * S);
    /* flip: some draw flips; the flipped output mirrors the unflipped one */
    struct vka_augment_params a = { .size = S, .mean = zero3, .std = one3 };
    cr_assert_eq(vka_augment(&a, 0, &img, &m, 255, x0, y0), 0);
    a.flip = true;
    uint32_t flipped = 0;
    for (uint64_t r = 0; r < 16; r++) {
        cr_assert_eq(vka_augment(&a, vka_augment_seed(7, 0, r), &img, &m, 255, x1, y1), 0);
        bool same = !memcmp(x0, x1, sizeof(float) * 3 * S * S);
        if (same)
            continue;
        flipped++;
        for (uint32_t k = 0; k < 3; k++)
            for (uint32_t j = 0; j < S; j++)
                for (uint32_t i = 0; i < S; i++)
                    cr_assert_eq(x1[(k * S + j) * S + i], x0[(k * S + j) * S + S - 1 - i]);
        for (uint32_t j = 0; j < S; j++)
            for (uint32_t i = 0; i < S; i++)
                cr_assert_eq(y1[j * S + i], y0[j * S + S - 1 - i]);
    }
    cr_assert(flipped > 0 && flipped < 16, "%u of 16 draws flipped", flipped);
    /* scale jitter: masks stay class ids (nearest), a constant image stays constant,
     * and the same draw gives the same bits */
    a = (struct vka_augment_params){ .size = S, .random_crop = true, .flip = true,
                                     .scale_min = 0.5f, .scale_max = 2.0f, .mean = zero3,
                                     .std = one3 };
    memset(img.data, 77, (size_t)w * h * 3);
    for (uint64_t r = 0; r < 8; r++) {
        uint64_t rng = vka_augment_seed(3, r, 5);
        cr_assert_eq(vka_augment(&a, rng, &img, &m, 255, x0, y0), 0);
        cr_assert_eq(vka_augment(&a, rng, &img, &m, 255, x1, y1), 0);
        cr_assert_eq(memcmp(x0, x1, sizeof(float) * 3 * S * S), 0);
        cr_assert_eq(memcmp(y0, y1, sizeof(int32_t) * S * S), 0);
        for (uint32_t p = 0; p < S * S; p++) {
            cr_assert(y0[p] == 255 || (y0[p] >= 0 && y0[p] < 4), "mask value %d", y0[p]);
            /* float weights sum to 1 within a few ulps; 1e-6 is ~30 ulps of 77/255 */
            if (y0[p] != 255 || x0[p] != 0)
                cr_assert_float_eq(x0[p], 77.0f / 255.0f, 1e-6, "%g", (double)x0[p]);
        }
    }
    /* colour jitter moves values, deterministically, within [0, 1] */
    vka_image_free(&img);
    img = (struct vka_image){ w, h, 3, rand_bytes((size_t)w * h * 3, 256) };
    a = (struct vka_augment_params){ .size = S, .brightness = 0.4f, .contrast = 0.4f,
                                     .saturation = 0.4f, .mean = zero3, .std = one3 };
    cr_assert_eq(vka_augment(&a, 11, &img, NULL, 255, x0, NULL), 0);
    cr_assert_eq(vka_augment(&a, 12, &img, NULL, 255, x1, NULL), 0);
    cr_assert_neq(memcmp(x0, x1, sizeof(float) * 3 * S * S), 0, "jitter had no effect");
    for (uint32_t p = 0; p < 3 * S * S; p++)
        cr_assert(x0[p] >= 0 && x0[p] <= 1);
    vka_image_free(&img);
    vka_image_free(&m);
    free(x0);
    free(x1);
    free(y0);
    free(y1);
}

/* Resizing to S: the shorter side becomes S; a linear ramp stays linear inside (the
 * triangle filter reproduces linear functions away from the borders). */
Test(datasets, augment_resize)
{
    uint32_t w = 64, h = 48, S = 24;
    struct vka_image img = { w, h, 1, malloc((size_t)w * h) };
    for (uint32_t j = 0; j < h; j++)
        for (uint32_t i = 0; i < w; i++)
            img.data[j * w + i] = (uint8_t)(2 * i + 40);
    struct vka_augment_params a = { .size = S, .fit = VKA_FIT_RESIZE, .mean = zero3,
                                    .std = one3 };
    uint32_t ow, oh;
    vka_augment_size(&a, 0, w, h, &ow, &oh);
    cr_assert(ow == S && oh == S);
    float x[24 * 24];
    cr_assert_eq(vka_augment(&a, 0, &img, NULL, 0, x, NULL), 0);
    /* scaled to 32 x 24 (factor 2), window x from 4: output i covers source 2(i+4)..+1,
     * whose mean is 2 * (2(i + 4) + 0.5) + 40 */
    for (uint32_t i = 2; i < S - 2; i++) {
        double want = (2.0 * (2.0 * (i + 4) + 0.5) + 40) / 255.0;
        cr_assert_float_eq(x[10 * S + i], want, 1e-5, "column %u: %g vs %g", i,
                           (double)x[10 * S + i], want); /* float sums of 4 taps */
    }
    vka_image_free(&img);
}

/* ---- loader ------------------------------------------------------------------------ */

struct run {
    float *x;
    int32_t *y;
    uint32_t *ids;
    size_t n;
};

static void run_free(struct run *r)
{
    free(r->x);
    free(r->y);
    free(r->ids);
}

/* total samples read in batches of `step` from a loader. */
static struct run read_stream(struct vka_loader *l, uint32_t total, uint32_t step,
                              size_t per_x, size_t per_y)
{
    struct run r = { malloc(total * per_x * sizeof(float)),
                     malloc(total * per_y * sizeof(int32_t)), malloc(total * sizeof(uint32_t)),
                     0 };
    cr_assert(r.x && r.y && r.ids);
    while (r.n < total) {
        struct vka_batch b;
        uint32_t n = total - r.n < step ? (uint32_t)(total - r.n) : step;
        cr_assert_eq(vka_loader_next(l, n, &b), 0, "%s", vka_last_error());
        cr_assert_geq(b.n, 1);
        cr_assert_eq((size_t)b.c * b.h * b.w, per_x);
        memcpy(r.x + r.n * per_x, b.x, b.n * per_x * sizeof(float));
        memcpy(r.y + r.n * per_y, b.y, b.n * per_y * sizeof(int32_t));
        memcpy(r.ids + r.n, b.ids, b.n * sizeof(uint32_t));
        r.n += b.n;
    }
    return r;
}

static void same_run(const struct run *a, const struct run *b, size_t per_x, size_t per_y,
                     const char *what)
{
    cr_assert_eq(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        cr_assert_eq(a->ids[i], b->ids[i], "%s: sample %zu is %u, not %u", what, i,
                     b->ids[i], a->ids[i]);
        cr_assert_eq(memcmp(a->x + i * per_x, b->x + i * per_x, per_x * sizeof(float)), 0,
                     "%s: sample %zu's pixels differ", what, i);
        cr_assert_eq(memcmp(a->y + i * per_y, b->y + i * per_y, per_y * sizeof(int32_t)), 0,
                     "%s: sample %zu's mask differs", what, i);
    }
}

static struct vka_loader_params loader_params(struct vka_dataset *ds, uint64_t seed)
{
    return (struct vka_loader_params){
        .dataset = ds, .batch = 4, .shuffle = true, .seed = seed,
        .aug = { .size = 16, .random_crop = true, .flip = true, .scale_min = 0.75f,
                 .scale_max = 1.5f, .brightness = 0.2f, .contrast = 0.2f, .saturation = 0.2f },
    };
}

Test(datasets, loader_deterministic_across_workers_and_splits)
{
    test_seed("datasets/loader_deterministic_across_workers_and_splits");
    uint64_t seed = test_rand_u64();
    struct vka_dataset *ds = open_ok(&(struct vka_dataset_params){
        .kind = VKA_DATA_SHAPES, .seed = seed, .count = 10, .width = 24, .height = 20 });
    const size_t px = 3 * 16 * 16, py = 16 * 16;
    const uint32_t total = 27; /* 2.7 epochs */
    struct run ref = { 0 };
    const uint32_t workers[] = { 0, 1, 3, 3, 1 }, steps[] = { 4, 4, 4, 1, 3 };
    for (int c = 0; c < 5; c++) {
        struct vka_loader_params p = loader_params(ds, seed);
        p.workers = workers[c];
        p.prefetch = c == 3 ? 2 : 0;
        struct vka_loader *l = NULL;
        cr_assert_eq(vka_loader_create(&p, &l), 0, "%s", vka_last_error());
        struct run r = read_stream(l, total, steps[c], px, py);
        vka_loader_destroy(&l);
        cr_assert_null(l);
        if (!c) {
            ref = r;
            continue;
        }
        char what[64];
        snprintf(what, sizeof(what), "%u workers, batches of %u", workers[c], steps[c]);
        same_run(&ref, &r, px, py, what);
        run_free(&r);
    }
    /* each epoch is a permutation, and two epochs differ in order */
    for (uint32_t e = 0; e < 2; e++) {
        uint32_t seen[10] = { 0 };
        for (uint32_t i = 0; i < 10; i++)
            seen[ref.ids[e * 10 + i]]++;
        for (uint32_t i = 0; i < 10; i++)
            cr_assert_eq(seen[i], 1, "epoch %u holds sample %u %u times", e, i, seen[i]);
    }
    cr_assert_neq(memcmp(ref.ids, ref.ids + 10, 10 * sizeof(uint32_t)), 0,
                  "two epochs in the same order");
    /* another seed gives another stream */
    struct vka_loader_params p = loader_params(ds, seed + 1);
    struct vka_loader *l = NULL;
    cr_assert_eq(vka_loader_create(&p, &l), 0);
    struct run other = read_stream(l, 10, 4, px, py);
    cr_assert_neq(memcmp(other.x, ref.x, 10 * px * sizeof(float)), 0);
    run_free(&other);
    vka_loader_destroy(&l);
    run_free(&ref);
    vka_dataset_destroy(&ds);
}

Test(datasets, loader_seek_resumes_the_stream)
{
    test_seed("datasets/loader_seek_resumes_the_stream");
    uint64_t seed = test_rand_u64();
    struct vka_dataset *ds = open_ok(&(struct vka_dataset_params){
        .kind = VKA_DATA_SHAPES, .seed = seed, .count = 7, .width = 20, .height = 20 });
    const size_t px = 3 * 16 * 16, py = 16 * 16;
    struct vka_loader_params p = loader_params(ds, seed);
    p.workers = 2;
    struct vka_loader *l = NULL;
    cr_assert_eq(vka_loader_create(&p, &l), 0);
    struct run head = read_stream(l, 9, 3, px, py);
    struct vka_loader_pos pos = vka_loader_tell(l);
    cr_assert(pos.epoch == 1 && pos.index == 2, "position (%llu, %llu)",
              (unsigned long long)pos.epoch, (unsigned long long)pos.index);
    struct run tail = read_stream(l, 8, 4, px, py);
    cr_assert_eq(vka_loader_seek(l, pos), 0);
    struct run again = read_stream(l, 8, 2, px, py);
    same_run(&tail, &again, px, py, "after a seek back");
    vka_loader_destroy(&l);
    /* a fresh loader (a resumed run) seeking to the saved position, synchronous */
    p.workers = 0;
    cr_assert_eq(vka_loader_create(&p, &l), 0);
    cr_assert_eq(vka_loader_seek(l, pos), 0);
    struct run resumed = read_stream(l, 8, 4, px, py);
    same_run(&tail, &resumed, px, py, "a new loader after seek");
    cr_assert_lt(vka_loader_seek(l, (struct vka_loader_pos){ 0, 7 }), 0);
    vka_loader_destroy(&l);
    run_free(&head);
    run_free(&tail);
    run_free(&again);
    run_free(&resumed);
    vka_dataset_destroy(&ds);
}

/* Data-parallel shards: ranks reading their shares of each window, put side by side in
 * rank order, are the one-process stream, sample for sample and pixel for pixel, for
 * every rank count that divides the window, an epoch that the window does not divide
 * (the last window of 11 of 23 samples, 2 of 17 for a window of 15), and any workers;
 * rank 0's position at a window's start is the epoch's, and a seek there (a resume with
 * another rank count) goes on with the same shares. Caught: a share taken from the
 * wrong window, a partial window shared unevenly or leaving rank 0 nothing, a position
 * in the rank's own stream written into a checkpoint. */
Test(datasets, loader_shards_are_the_one_process_stream)
{
    test_seed("datasets/loader_shards_are_the_one_process_stream");
    uint64_t seed = test_rand_u64();
    const uint32_t counts[] = { 23, 17 }, windows[] = { 12, 15 };
    for (int c = 0; c < 2; c++) {
        uint32_t count = counts[c], B = windows[c], total = 2 * count; /* 2 epochs */
        struct vka_dataset *ds = open_ok(&(struct vka_dataset_params){
            .kind = VKA_DATA_SHAPES, .seed = seed, .count = count, .width = 16,
            .height = 16 });
        const size_t px = 3 * 16 * 16, py = 16 * 16;
        struct vka_loader_params p = loader_params(ds, seed);
        p.batch = B;
        struct vka_loader *l = NULL;
        cr_assert_eq(vka_loader_create(&p, &l), 0, "%s", vka_last_error());
        struct run ref = read_stream(l, total, 5, px, py);
        vka_loader_destroy(&l);
        for (uint32_t N = 2; N <= B; N++) {
            if (B % N)
                continue;
            struct vka_shard sh = { .count = count, .window = B, .nranks = N };
            struct run got = { calloc(total * px, sizeof(float)), calloc(total * py, 4),
                               calloc(total, 4), total };
            uint32_t local_sum = 0;
            for (uint32_t r = 0; r < N; r++) {
                sh.rank = r;
                uint32_t local = vka_shard_local(&sh);
                local_sum += local;
                cr_assert_geq(local, 1);
                struct vka_loader_params q = p;
                q.shard = sh;
                q.workers = r % 3;
                cr_assert_eq(vka_loader_create(&q, &l), 0, "%s", vka_last_error());
                struct run mine = read_stream(l, 2 * local, 3, px, py);
                vka_loader_destroy(&l);
                /* put each sample where the one-process stream has it */
                for (uint32_t j = 0; j < 2 * local; j++) {
                    uint32_t at = (j / local) * count + vka_shard_global(&sh, j % local);
                    got.ids[at] = mine.ids[j];
                    memcpy(got.x + at * px, mine.x + j * px, px * sizeof(float));
                    memcpy(got.y + at * py, mine.y + j * py, py * sizeof(int32_t));
                }
                run_free(&mine);
            }
            cr_assert_eq(local_sum, count, "%u ranks share %u of %u samples", N, local_sum,
                         count);
            char what[64];
            snprintf(what, sizeof(what), "%u samples, window %u, %u ranks", count, B, N);
            same_run(&ref, &got, px, py, what);
            run_free(&got);
            /* rank 0 after its share of the first window is at the second's start; a
             * fresh rank 1 seeking there reads the one-process samples of its share */
            sh.rank = 0;
            struct vka_loader_params q = p;
            q.shard = sh;
            cr_assert_eq(vka_loader_create(&q, &l), 0);
            struct run head = read_stream(l, B / N, B / N, px, py);
            struct vka_loader_pos pos = vka_loader_tell(l);
            cr_assert(pos.epoch == 0 && pos.index == B, "%s: rank 0 after a window is at "
                      "(%llu, %llu)", what, (unsigned long long)pos.epoch,
                      (unsigned long long)pos.index);
            cr_assert_lt(vka_loader_seek(l, (struct vka_loader_pos){ 0, 1 }), 0,
                         "a seek into a window's middle");
            vka_loader_destroy(&l);
            run_free(&head);
            q.shard.rank = 1;
            cr_assert_eq(vka_loader_create(&q, &l), 0);
            cr_assert_eq(vka_loader_seek(l, pos), 0, "%s", vka_last_error());
            struct vka_batch b;
            cr_assert_eq(vka_loader_next(l, 1, &b), 0);
            struct vka_shard sh1 = q.shard;
            sh1.count = count;
            uint32_t first;
            /* rank 1's share of the second window, or when that is empty (a partial
             * window of fewer samples than ranks) its share of the next epoch's first */
            if (!vka_shard_share(&sh1, 1, &first))
                first = count + B / N;
            cr_assert_eq(b.ids[0], ref.ids[first], "%s: after a seek", what);
            vka_loader_destroy(&l);
        }
        /* endless shards (the GAN's): windows tile the stream across epochs, all full */
        for (uint32_t N = 2; N <= 4; N++) {
            uint32_t per = B / N, windows = total / B;
            struct vka_loader_params q = p;
            for (uint32_t r = 0; r < N && B % N == 0; r++) {
                q.shard = (struct vka_shard){ .window = B, .nranks = N, .rank = r,
                                              .endless = true };
                cr_assert_eq(vka_loader_create(&q, &l), 0, "%s", vka_last_error());
                struct run mine = read_stream(l, windows * per, 2, px, py);
                for (uint32_t j = 0; j < windows * per; j++) {
                    uint32_t at = j / per * B + r * per + j % per;
                    cr_assert_eq(mine.ids[j], ref.ids[at], "endless, %u ranks: rank %u's "
                                 "sample %u is %u, not %u", N, r, j, mine.ids[j], ref.ids[at]);
                    cr_assert_eq(memcmp(mine.x + j * px, ref.x + at * px, px * 4), 0);
                }
                struct vka_loader_pos pos = vka_loader_tell(l);
                cr_assert(r || pos.epoch * count + pos.index == windows * B);
                run_free(&mine);
                vka_loader_destroy(&l);
            }
        }
        /* a window that the ranks do not divide is refused, naming both */
        struct vka_loader_params q = p;
        q.shard = (struct vka_shard){ .window = B, .nranks = B == 12 ? 5 : 4 };
        cr_assert_lt(vka_loader_create(&q, &l), 0);
        cr_assert(strstr(vka_last_error(), "does not split"), "%s", vka_last_error());
        run_free(&ref);
        vka_dataset_destroy(&ds);
    }
}

Test(datasets, loader_epoch_batches_and_sorted_order)
{
    struct vka_dataset *ds = open_ok(&(struct vka_dataset_params){
        .kind = VKA_DATA_SHAPES, .seed = 5, .count = 10, .width = 16, .height = 16 });
    struct vka_loader_params p = { .dataset = ds, .batch = 4, .epoch_batches = true,
                                   .workers = 2, .aug = { .size = 16 } };
    struct vka_loader *l = NULL;
    cr_assert_eq(vka_loader_create(&p, &l), 0);
    const uint32_t sizes[] = { 4, 4, 2, 4 };
    uint32_t next_id = 0;
    for (int k = 0; k < 4; k++) {
        struct vka_batch b;
        cr_assert_eq(vka_loader_next(l, 4, &b), 0, "%s", vka_last_error());
        cr_assert_eq(b.n, sizes[k], "batch %d holds %u", k, b.n);
        cr_assert_eq(b.epoch_end, k == 2);
        cr_assert(b.c == 3 && b.h == 16 && b.w == 16 && b.y);
        for (uint32_t i = 0; i < b.n; i++, next_id++)
            cr_assert_eq(b.ids[i], next_id % 10, "unshuffled order");
        /* no augmentation: the sample as generated, normalised */
        struct vka_sample s;
        cr_assert_eq(vka_dataset_get(ds, b.ids[0], 3, &s), 0);
        float want = ((float)s.image.data[5 * 3] / 255.0f - 0.485f) / 0.229f;
        cr_assert_float_eq(b.x[5], want, 1e-5); /* one float rounding of the same formula */
        cr_assert_eq(b.y[5], s.mask.data[5]);
        vka_sample_free(&s);
    }
    vka_loader_destroy(&l);
    /* variable sizes need batches of 1 */
    p.aug.size = 0;
    p.workers = 0;
    cr_assert_eq(vka_loader_create(&p, &l), 0);
    struct vka_batch b;
    cr_assert_eq(vka_loader_next(l, 1, &b), 0);
    cr_assert(b.h == 16 && b.w == 16);
    cr_assert_lt(vka_loader_next(l, 5, &b), 0, "more than the batch it was made for");
    vka_loader_destroy(&l);
    vka_dataset_destroy(&ds);
}

/* IDX labels: image i of N is flat at 11 * i, so a batch's pixels say which image each
 * sample is, and its label must be that image's, whatever the worker count, the sizes
 * asked of vka_loader_next and the epoch; count limits the loader to the first images. */
Test(datasets, loader_labels_come_with_their_images)
{
    test_seed("datasets/loader_labels_come_with_their_images");
    enum { N = 23, H = 3, W = 2 };
    const char *d = tmp_make();
    const uint8_t head[16] = { 0, 0, 8, 3, 0, 0, 0, N, 0, 0, 0, H, 0, 0, 0, W };
    const uint8_t lhead[8] = { 0, 0, 8, 1, 0, 0, 0, N };
    uint8_t px[N * H * W];
    for (uint32_t i = 0; i < N * H * W; i++)
        px[i] = (uint8_t)(11 * (i / (H * W)));
    uint8_t *lab = rand_bytes(N, 256);
    const char *images = P("%s/x-images-idx3-ubyte.gz", d), *labels = P("%s/x-labels.gz", d);
    write_idx(images, head, 16, px, sizeof(px));
    write_idx(labels, lhead, 8, lab, N);
    struct vka_dataset_params dp = { .kind = VKA_DATA_IDX, .path = images, .labels = true,
                                     .labels_path = labels };
    struct vka_dataset *ds = open_ok(&dp);
    cr_assert(vka_dataset_has_labels(ds) && !vka_dataset_has_masks(ds));
    struct vka_sample s;
    cr_assert_eq(vka_dataset_get(ds, 17, 0, &s), 0);
    cr_assert_eq(s.label, lab[17]);
    vka_sample_free(&s);

    static const float zero[1] = { 0 }, one[1] = { 1 };
    uint64_t seed = test_rand_u64();
    const uint32_t workers[] = { 0, 1, 3, 2 }, steps[] = { 5, 1, 4, 7 }, counts[] = { 0, 0, 0, 9 };
    const uint32_t total = 58; /* 2.5 epochs of 23 */
    int32_t ref[58];
    for (int c = 0; c < 4; c++) {
        struct vka_loader_params p = { .dataset = ds, .count = counts[c], .batch = 7,
                                       .workers = workers[c], .shuffle = true, .seed = seed,
                                       .aug = { .mean = zero, .std = one } };
        struct vka_loader *l = NULL;
        cr_assert_eq(vka_loader_create(&p, &l), 0, "%s", vka_last_error());
        uint32_t n = counts[c] ? counts[c] : N, got = 0, seen[N] = { 0 };
        while (got < total) {
            struct vka_batch b;
            uint32_t m = total - got < steps[c] ? total - got : steps[c];
            cr_assert_eq(vka_loader_next(l, m, &b), 0, "%s", vka_last_error());
            cr_assert(b.n == m && b.c == 1 && b.h == H && b.w == W && !b.y && b.labels);
            for (uint32_t k = 0; k < m; k++, got++) {
                uint32_t i = (uint32_t)lrintf(b.x[k * H * W] * 255.0f) / 11;
                cr_assert_eq(b.ids[k], i, "%u workers, batches of %u: sample %u holds the "
                             "pixels of image %u but says it is %u", workers[c], steps[c], got,
                             i, b.ids[k]);
                cr_assert_lt(i, n, "image %u of the first %u", i, n);
                cr_assert_eq(b.labels[k], lab[i], "%u workers, batches of %u: sample %u (image "
                             "%u) has label %d, the file says %u", workers[c], steps[c], got,
                             i, b.labels[k], lab[i]);
                if (got < n)
                    seen[i]++;
                if (!counts[c] && !c)
                    ref[got] = b.labels[k];
                else if (!counts[c])
                    cr_assert_eq(b.labels[k], ref[got], "%u workers, batches of %u: label %u "
                                 "differs", workers[c], steps[c], got);
            }
        }
        for (uint32_t i = 0; i < n; i++)
            cr_assert_eq(seen[i], 1, "the first epoch holds image %u %u times", i, seen[i]);
        vka_loader_destroy(&l);
    }
    struct vka_loader *l = NULL;
    cr_assert_lt(vka_loader_create(&(struct vka_loader_params){ .dataset = ds, .batch = 1,
                                                                 .count = N + 1 }, &l), 0);
    cr_assert(strstr(vka_last_error(), "24"), "%s", vka_last_error());
    vka_dataset_destroy(&ds);

    /* without labels: none in samples or batches */
    dp.labels = false;
    ds = open_ok(&dp);
    cr_assert(!vka_dataset_has_labels(ds));
    cr_assert_eq(vka_dataset_get(ds, 3, 0, &s), 0);
    cr_assert_eq(s.label, -1);
    vka_sample_free(&s);
    cr_assert_eq(vka_loader_create(&(struct vka_loader_params){ .dataset = ds, .batch = 2 },
                                   &l), 0);
    struct vka_batch b;
    cr_assert_eq(vka_loader_next(l, 2, &b), 0, "%s", vka_last_error());
    cr_assert_null(b.labels);
    vka_loader_destroy(&l);
    vka_dataset_destroy(&ds);

    /* a labels file of another length, none named, labels of a kind that has none */
    const uint8_t short_head[8] = { 0, 0, 8, 1, 0, 0, 0, N - 1 };
    write_idx(labels, short_head, 8, lab, N - 1);
    dp.labels = true;
    open_fails(&dp, labels, "22 labels for 23 images");
    dp.labels_path = NULL;
    open_fails(&dp, images, "labels");
    open_fails(&(struct vka_dataset_params){ .kind = VKA_DATA_SHAPES, .labels = true },
               "shapes", "IDX");
    free(lab);
}

/* A file that passes the header check at open but fails to decode in the loader:
 * an error naming it, or with skip_bad the next sample in its place. */
Test(datasets, loader_bad_file_after_open)
{
    test_seed("datasets/loader_bad_file_after_open");
    const char *d = tmp_make();
    make_folder(d, "train", 3, 16, 16, 2);
    const char *img = P("%s/train/images/s00.png", d);
    scramble_idat(img);
    struct vka_dataset_params dp = { .kind = VKA_DATA_FOLDER, .path = d, .header_only = true };
    struct vka_dataset *ds = open_ok(&dp);
    cr_assert_eq(vka_dataset_count(ds), 3);
    struct vka_loader_params p = { .dataset = ds, .batch = 2, .workers = 1,
                                   .aug = { .size = 16 } };
    struct vka_loader *l = NULL;
    cr_assert_eq(vka_loader_create(&p, &l), 0);
    struct vka_batch b;
    vka_clear_error();
    cr_assert_lt(vka_loader_next(l, 2, &b), 0);
    cr_assert(strstr(vka_last_error(), img), "%s", vka_last_error());
    cr_assert_lt(vka_loader_next(l, 2, &b), 0, "the loader went on after an error");
    vka_loader_destroy(&l);
    vka_dataset_destroy(&ds);
    dp.skip_bad = true;
    ds = open_ok(&dp);
    p.dataset = ds;
    cr_assert_eq(vka_loader_create(&p, &l), 0);
    cr_assert_eq(vka_loader_next(l, 2, &b), 0, "%s", vka_last_error());
    cr_assert(b.ids[0] == 1 && b.ids[1] == 1, "ids %u %u", b.ids[0], b.ids[1]);
    vka_loader_destroy(&l);
    vka_dataset_destroy(&ds);
}

/* ---- the class count a caller asks for ----------------------------------------------- */

/* vka_dataset_check_classes names the first mask (in sample order) holding an id at or
 * above the count asked for, the smallest such id in it and how many of its pixels hold
 * it; the ignore index is never one. */
Test(datasets, check_classes_names_the_first_mask)
{
    test_seed("datasets/check_classes_names_the_first_mask");
    const char *d = tmp_make();
    make_folder(d, "train", 5, 8, 8, 3);
    uint8_t *m = rand_mask(8, 8, 3);
    m[1] = m[2] = m[3] = 4; /* 3 pixels of 4, 2 of 6 */
    m[9] = m[10] = 6;
    const char *m3 = P("%s/train/masks/s03.png", d);
    png(m3, 8, 8, 1, m);
    m[1] = m[2] = m[3] = m[9] = m[10] = 0;
    m[20] = 3;
    const char *m4 = P("%s/train/masks/s04.png", d);
    png(m4, 8, 8, 1, m);
    free(m);
    struct vka_dataset *ds = open_ok(&(struct vka_dataset_params){ .kind = VKA_DATA_FOLDER,
                                                                   .path = d });
    cr_assert_eq(vka_dataset_classes(ds), 7);
    cr_assert_eq(vka_dataset_check_classes(ds, 7), 0, "%s", vka_last_error());
    cr_assert_eq(vka_dataset_check_classes(ds, 256), 0, "%s", vka_last_error());
    vka_clear_error();
    cr_assert_eq(vka_dataset_check_classes(ds, 3), -EINVAL);
    const char *e = vka_last_error();
    cr_assert(strstr(e, m3) && strstr(e, "class id 4 at pixel (1, 0)") &&
              strstr(e, "3 pixels hold it") && strstr(e, "3 classes"),
              "not naming %s, id 4 and its 3 pixels: %s", m3, e);
    vka_clear_error();
    cr_assert_eq(vka_dataset_check_classes(ds, 5), -EINVAL);
    e = vka_last_error();
    cr_assert(strstr(e, m3) && strstr(e, "class id 6") && strstr(e, "2 pixels hold it"),
              "%s", e);
    vka_clear_error();
    cr_assert_eq(vka_dataset_check_classes(ds, 0), -EINVAL);
    cr_assert(strstr(vka_last_error(), "0 classes"), "%s", vka_last_error());
    vka_dataset_destroy(&ds);
    /* with another ignore index, 255 is an id like any other */
    ds = open_ok(&(struct vka_dataset_params){ .kind = VKA_DATA_FOLDER, .path = d,
                                               .ignore_index = &(int32_t){ 6 } });
    cr_assert_eq(vka_dataset_classes(ds), 256);
    vka_clear_error();
    cr_assert_eq(vka_dataset_check_classes(ds, 5), -EINVAL);
    cr_assert(strstr(vka_last_error(), P("%s/train/masks/s00.png", d)) &&
              strstr(vka_last_error(), "class id 255"), "%s", vka_last_error());
    vka_dataset_destroy(&ds);
    /* a generator: shapes makes ids 0..3 */
    ds = open_ok(&(struct vka_dataset_params){ .kind = VKA_DATA_SHAPES, .seed = 3, .count = 20,
                                               .width = 32, .height = 32 });
    cr_assert_eq(vka_dataset_check_classes(ds, 4), 0, "%s", vka_last_error());
    vka_clear_error();
    cr_assert_eq(vka_dataset_check_classes(ds, 3), -EINVAL);
    cr_assert(strstr(vka_last_error(), "shapes:train#") && strstr(vka_last_error(), "class id 3"),
              "%s", vka_last_error());
    vka_dataset_destroy(&ds);
    /* no masks */
    ds = open_ok(&(struct vka_dataset_params){ .kind = VKA_DATA_IMAGES,
                                               .path = P("%s/train/images", d) });
    vka_clear_error();
    cr_assert_eq(vka_dataset_check_classes(ds, 3), -EINVAL);
    cr_assert(strstr(vka_last_error(), "no masks"), "%s", vka_last_error());
    vka_dataset_destroy(&ds);
}

/* ---- the loader meeting bad files mid-epoch ------------------------------------------ */

#define BAD_N 24          /* samples in the folders below */
#define BAD_SECONDS 5.0   /* a bad file must end (or be skipped by) a loader this fast */


/* Damage to sample i of a make_folder folder (16 x 16; images sNN.png/.bmp/.tga by
 * i % 3); each returns the file it changed. */
static const char *image_of(const char *d, uint32_t i)
{
    const char *ext[] = { "png", "bmp", "tga" };
    return P("%s/train/images/s%02u.%s", d, i, ext[i % 3]);
}

/* the image cut after its header and part of its data (a PNG or a BMP: stb_image_write
 * makes run-length TGAs, whose length the header does not give) */
static const char *cut_image(const char *d, uint32_t i)
{
    const char *img = image_of(d, i);
    cr_assert_neq(i % 3, 2, "cut_image cuts a PNG or a BMP");
    size_t n;
    uint8_t *b = read_bytes(img, &n);
    write_bytes(img, b, i % 3 == 0 ? 60 : 54 + 16 * 16 * 3 / 2);
    free(b);
    return img;
}

/* the image replaced by one of other dimensions (16 x 12) */
static const char *resize_image(const char *d, uint32_t i)
{
    const char *img = image_of(d, i);
    uint8_t *px = rand_bytes(16 * 12 * 3, 256);
    cr_assert_eq(i % 3, 1, "resize_image writes a BMP");
    write_bmp(img, 16, 12, 3, px);
    free(px);
    return img;
}

/* the mask replaced by one of other dimensions (8 x 16) */
static const char *resize_mask(const char *d, uint32_t i)
{
    const char *mask = P("%s/train/masks/s%02u.png", d, i);
    uint8_t *m = rand_mask(8, 16, 3);
    png(mask, 8, 16, 1, m);
    free(m);
    return mask;
}

/* the PNG's compressed data scrambled, header, sizes and IEND intact: it passes the
 * header check of a header_only open and fails its decode */
static const char *scramble_image(const char *d, uint32_t i)
{
    const char *img = image_of(d, i);
    cr_assert_eq(i % 3, 0, "scramble_image spoils a PNG");
    scramble_idat(img);
    return img;
}

struct bad_case {
    const char *(*spoil)(const char *d, uint32_t i);
    uint32_t sample;
    const char *what;   /* in the error */
    bool header_only;   /* spoilt before a header_only open, else after a full open */
};

/* Reads from a loader over a folder of BAD_N samples, one of them spoilt, until it
 * fails: it must fail within BAD_SECONDS, the error naming the spoilt file. With
 * skip_bad one whole epoch must come through instead, without the bad sample, and a
 * warning must name the file. */
static void loader_meets_bad_file(const struct bad_case *bc, uint32_t workers, bool skip_bad)
{
    const char *d = tmp_make();
    make_folder(d, "train", BAD_N, 16, 16, 3);
    const char *bad = bc->header_only ? bc->spoil(d, bc->sample) : NULL;
    struct vka_dataset *ds = open_ok(&(struct vka_dataset_params){
        .kind = VKA_DATA_FOLDER, .path = d, .skip_bad = skip_bad,
        .header_only = bc->header_only, .threads = 2 });
    cr_assert_eq(vka_dataset_count(ds), BAD_N);
    if (!bad)
        bad = bc->spoil(d, bc->sample);
    struct vka_loader_params p = { .dataset = ds, .batch = 4, .workers = workers,
                                   .shuffle = true, .seed = 11, .epoch_batches = true,
                                   .aug = { .size = 16 } };
    struct vka_loader *l = NULL;
    struct vka_batch b;
    int ret = 0;
    uint32_t delivered = 0, calls = 0;
    bool seen_bad = false;
    if (skip_bad)
        stderr_begin();
    double t0 = vka_now();
    cr_assert_eq(vka_loader_create(&p, &l), 0, "%s", vka_last_error());
    vka_clear_error();
    /* at most two epochs: the bad sample comes in the first */
    for (; calls < BAD_N / 2 + 2; calls++) {
        if ((ret = vka_loader_next(l, 4, &b)))
            break;
        for (uint32_t k = 0; k < b.n && delivered < BAD_N; k++, delivered++)
            seen_bad |= b.ids[k] == bc->sample;
        if (skip_bad && b.epoch_end)
            break;
    }
    char err[1024];
    snprintf(err, sizeof(err), "%s", vka_last_error());
    vka_loader_destroy(&l);
    double dt = vka_now() - t0;
    char *log = skip_bad ? stderr_end() : NULL;
    cr_log_info("%s sample %u, %u workers%s: %.3f s", bc->what, bc->sample, workers,
                skip_bad ? ", skip_bad" : "", dt);
    cr_assert_lt(dt, BAD_SECONDS, "%s with %u workers%s: %.1f s (more than %.0f)", bad,
                 workers, skip_bad ? " and skip_bad" : "", dt, BAD_SECONDS);
    if (!skip_bad) {
        cr_assert_lt(ret, 0, "%u workers: %u samples came through although %s is bad",
                     workers, delivered, bad);
        cr_assert(strstr(err, bad) && strstr(err, bc->what),
                  "%u workers: the error does not name %s and say '%s': %s", workers, bad,
                  bc->what, err);
    } else {
        cr_assert_eq(ret, 0, "%u workers, skip_bad: %s", workers, err);
        cr_assert_eq(delivered, BAD_N, "%u workers, skip_bad: an epoch of %u samples, not %u",
                     workers, delivered, BAD_N);
        cr_assert(b.epoch_end && !seen_bad, "%u workers, skip_bad: epoch end %d, bad sample "
                  "delivered %d", workers, b.epoch_end, seen_bad);
        cr_assert(strstr(log, "skipping: ") && strstr(log, bad),
                  "%u workers, skip_bad: no warning names %s:\n%s", workers, bad, log);
        free(log);
    }
    vka_dataset_destroy(&ds);
}

static void loader_bad_cases(const struct bad_case *bc)
{
    const uint32_t workers[] = { 0, 2, 8 };
    for (int skip = 0; skip < 2; skip++)
        for (int w = 0; w < 3; w++)
            loader_meets_bad_file(bc, workers[w], skip);
}

Test(datasets, loader_truncated_image_mid_epoch, .timeout = 20)
{
    test_seed("datasets/loader_truncated_image_mid_epoch");
    loader_bad_cases(&(struct bad_case){ cut_image, 9, "truncated PNG", false });
    loader_bad_cases(&(struct bad_case){ cut_image, 13, "truncated BMP", false });
}

Test(datasets, loader_image_size_changed_mid_epoch, .timeout = 20)
{
    test_seed("datasets/loader_image_size_changed_mid_epoch");
    loader_bad_cases(&(struct bad_case){ resize_image, 13, "but its image", false });
}

Test(datasets, loader_mask_size_changed_mid_epoch, .timeout = 20)
{
    test_seed("datasets/loader_mask_size_changed_mid_epoch");
    loader_bad_cases(&(struct bad_case){ resize_mask, 17, "mask is 8x16 but its image", false });
}

Test(datasets, loader_corrupt_data_after_header_only_open, .timeout = 20)
{
    test_seed("datasets/loader_corrupt_data_after_header_only_open");
    loader_bad_cases(&(struct bad_case){ scramble_image, 6, "corrupt PNG", true });
}

/* Two bad files: whatever worker meets its file first, the loader reports the one
 * earlier in the stream, and keeps reporting it. */
Test(datasets, loader_reports_the_first_bad_file, .timeout = 20)
{
    test_seed("datasets/loader_reports_the_first_bad_file");
    const uint32_t workers[] = { 0, 2, 8 };
    for (int w = 0; w < 3; w++) {
        const char *d = tmp_make();
        make_folder(d, "train", BAD_N, 16, 16, 3);
        struct vka_dataset *ds = open_ok(&(struct vka_dataset_params){
            .kind = VKA_DATA_FOLDER, .path = d, .threads = 2 });
        const char *first = cut_image(d, 6), *second = resize_mask(d, 7);
        struct vka_loader_params p = { .dataset = ds, .batch = 4, .workers = workers[w],
                                       .aug = { .size = 16 } };
        struct vka_loader *l = NULL;
        cr_assert_eq(vka_loader_create(&p, &l), 0, "%s", vka_last_error());
        struct vka_batch b;
        cr_assert_eq(vka_loader_next(l, 4, &b), 0, "%s", vka_last_error());
        for (int k = 0; k < 2; k++) {
            vka_clear_error();
            cr_assert_lt(vka_loader_next(l, 4, &b), 0);
            cr_assert(strstr(vka_last_error(), first) && !strstr(vka_last_error(), second),
                      "%u workers, call %d: not the first bad file %s: %s", workers[w], k,
                      first, vka_last_error());
        }
        vka_loader_destroy(&l);
        vka_dataset_destroy(&ds);
    }
    /* skip_bad, every mask deleted after open: no sample can replace the first, whose
     * mask the error must name (not the last one tried in its place) */
    for (int w = 0; w < 3; w++) {
        const char *d = tmp_make();
        make_folder(d, "train", 6, 16, 16, 3);
        struct vka_dataset *ds = open_ok(&(struct vka_dataset_params){
            .kind = VKA_DATA_FOLDER, .path = d, .skip_bad = true, .threads = 2 });
        for (uint32_t i = 0; i < 6; i++)
            cr_assert_eq(remove(P("%s/train/masks/s%02u.png", d, i)), 0);
        struct vka_loader_params p = { .dataset = ds, .batch = 2, .workers = workers[w],
                                       .aug = { .size = 16 } };
        struct vka_loader *l = NULL;
        cr_assert_eq(vka_loader_create(&p, &l), 0, "%s", vka_last_error());
        struct vka_batch b;
        stderr_begin();
        vka_clear_error();
        int ret = vka_loader_next(l, 2, &b);
        char err[1024];
        snprintf(err, sizeof(err), "%s", vka_last_error());
        vka_loader_destroy(&l);
        free(stderr_end());
        const char *first = P("%s/train/masks/s00.png:", d);
        cr_assert_lt(ret, 0, "%u workers: a batch although every mask is gone", workers[w]);
        cr_assert(strstr(err, first) == err && strstr(err, "none of the other 5 samples"),
                  "%u workers: the error does not start with %s: %s", workers[w], first, err);
        vka_dataset_destroy(&ds);
    }
}

/* ---- class weights -------------------------------------------------------------------- */

Test(datasets, median_frequency_weights)
{
    /* 4 images of 100 valid pixels. class 0 in all (200 px), class 1 in 2 images (50 px),
     * class 2 in 1 image (10 px), class 3 never: freq = 200/400, 50/200, 10/100 =
     * 0.5, 0.25, 0.1; median 0.25; weights 0.5, 1, 2.5, 0 */
    struct vka_class_stats st = { .classes = 4, .images = 4 };
    st.pixels[0] = 200, st.image_pixels[0] = 400;
    st.pixels[1] = 50, st.image_pixels[1] = 200;
    st.pixels[2] = 10, st.image_pixels[2] = 100;
    float w[4];
    cr_assert_eq(vka_class_weights_median_freq(&st, w), 0);
    const float want[4] = { 0.5f, 1.0f, 2.5f, 0.0f };
    for (int c = 0; c < 4; c++) /* a double division rounded to float */
        cr_assert_float_eq(w[c], want[c], 1e-6, "class %d: %g, want %g", c, (double)w[c],
                           (double)want[c]);
    /* even count: the median is the mean of the middle two */
    st.classes = 2;
    cr_assert_eq(vka_class_weights_median_freq(&st, w), 0);
    cr_assert_float_eq(w[0], 0.375f / 0.5f, 1e-6);
    cr_assert_float_eq(w[1], 0.375f / 0.25f, 1e-6);
    /* the counts a dataset produces: 2 masks of 4 pixels */
    const char *d = tmp_make();
    mkdirs(P("%s/train/images", d));
    mkdirs(P("%s/train/masks", d));
    const uint8_t m0[4] = { 0, 0, 0, 1 }, m1[4] = { 0, 255, 2, 2 };
    uint8_t rgb[12] = { 0 };
    png(P("%s/train/images/a.png", d), 2, 2, 3, rgb);
    png(P("%s/train/images/b.png", d), 2, 2, 3, rgb);
    png(P("%s/train/masks/a.png", d), 2, 2, 1, m0);
    png(P("%s/train/masks/b.png", d), 2, 2, 1, m1);
    struct vka_dataset *ds = open_ok(&(struct vka_dataset_params){ .kind = VKA_DATA_FOLDER,
                                                                   .path = d });
    cr_assert_eq(vka_dataset_class_stats(ds, &st), 0);
    cr_assert_eq(st.classes, 3);
    cr_assert(st.pixels[0] == 4 && st.pixels[1] == 1 && st.pixels[2] == 2 && st.ignored == 1);
    cr_assert(st.image_pixels[0] == 7 && st.image_pixels[1] == 4 && st.image_pixels[2] == 3);
    vka_dataset_destroy(&ds);
}

Test(datasets, spec_parse)
{
    struct vka_dataset_params p = { 0 };
    cr_assert_eq(vka_dataset_spec_parse("voc:/data/VOC2012", true, &p), 0);
    cr_assert(p.kind == VKA_DATA_VOC && !strcmp(p.path, "/data/VOC2012"));
    cr_assert_eq(vka_dataset_spec_parse("fashion", false, &p), 0);
    cr_assert(p.kind == VKA_DATA_IDX && !p.path);
    cr_assert_eq(vka_dataset_spec_parse("fashion", true, &p), 0);
    cr_assert_eq(p.kind, VKA_DATA_FASHION);
    cr_assert_eq(vka_dataset_spec_parse("d/x-idx3-ubyte.gz", false, &p), 0);
    cr_assert_eq(p.kind, VKA_DATA_IDX);
    cr_assert_eq(vka_dataset_spec_parse("photos", false, &p), 0);
    cr_assert_eq(p.kind, VKA_DATA_IMAGES);
    cr_assert_lt(vka_dataset_spec_parse("voc:", true, &p), 0);
    cr_assert_eq(vka_dataset_spec_parse("cityscapes:/data/cs", true, &p), 0);
    cr_assert(p.kind == VKA_DATA_CITYSCAPES && !strcmp(p.path, "/data/cs"));
    cr_assert_eq(vka_dataset_spec_parse("ade20k:ADEChallengeData2016", true, &p), 0);
    cr_assert(p.kind == VKA_DATA_ADE20K && !strcmp(p.path, "ADEChallengeData2016"));
    cr_assert_eq(vka_dataset_spec_parse("list:splits/train.csv", true, &p), 0);
    cr_assert(p.kind == VKA_DATA_LIST && !strcmp(p.path, "splits/train.csv"));
    cr_assert_lt(vka_dataset_spec_parse("list:", true, &p), 0);
    cr_assert_lt(vka_dataset_spec_parse("cityscapes:", true, &p), 0);
}

/* ---- Cityscapes, ADE20K, lists of pairs, reduce_zero_label -------------------------- */

/* Cityscapes' labelId -> trainId (cityscapesscripts/helpers/labels.py), written out
 * again so that datasets/cityscapes.c is not checked against itself. */
static uint8_t cityscapes_train_id(uint8_t id)
{
    static const uint8_t ids[19] = { 7,  8,  11, 12, 13, 17, 19, 20, 21, 22,
                                     23, 24, 25, 26, 27, 28, 31, 32, 33 };
    for (uint8_t k = 0; k < 19; k++)
        if (ids[k] == id)
            return k;
    return 255;
}

/* Every pixel of sample i's mask is map(ids[p]). */
static void mask_is(const struct vka_dataset *ds, uint32_t i, const uint8_t *ids, uint32_t n,
                    uint8_t (*map)(uint8_t))
{
    struct vka_sample s;
    cr_assert_eq(vka_dataset_get(ds, i, 0, &s), 0, "%s", vka_last_error());
    cr_assert_eq(s.mask.w * s.mask.h, n);
    for (uint32_t p = 0; p < n; p++)
        cr_assert_eq(s.mask.data[p], map(ids[p]), "%s: pixel %u holds %u in the file: %u, "
                     "not %u", vka_dataset_name(ds, i), p, ids[p], s.mask.data[p], map(ids[p]));
    vka_sample_free(&s);
}

static uint64_t count_of(const uint8_t *ids, uint32_t n, uint8_t (*map)(uint8_t), uint8_t v)
{
    uint64_t c = 0;
    for (uint32_t p = 0; p < n; p++)
        c += map(ids[p]) == v;
    return c;
}

Test(datasets, cityscapes_train_ids)
{
    test_seed("datasets/cityscapes_train_ids");
    const char *d = tmp_make();
    enum { W = 9, H = 6, N = W * H };
    /* sample 0: every labelId 0..33, 255 (the license plate's -1), ids past the table,
     * then the pixels 7, 26, 0, 33; the others random labelIds */
    uint8_t ids[4][N];
    static const uint8_t tail[4] = { 7, 26, 0, 33 };
    for (uint32_t p = 0; p < N; p++)
        ids[0][p] = p < 34 ? (uint8_t)p : p == 34 ? 255 : p < 50 ? (uint8_t)test_rand_range(34, 254)
                                                                 : tail[p - 50];
    for (uint32_t k = 1; k < 4; k++)
        for (uint32_t p = 0; p < N; p++)
            ids[k][p] = (uint8_t)test_rand_range(0, 33);
    make_cityscapes_sample(d, "train", "bochum", 7, W, H, ids[2]);
    make_cityscapes_sample(d, "train", "aachen", 19, W, H, ids[0]);
    make_cityscapes_sample(d, "train", "aachen", 21, W, H, ids[1]);
    make_cityscapes_sample(d, "val", "frankfurt", 1, W, H, ids[3]);
    write_bytes(P("%s/leftImg8bit/train/README", d), "x", 1); /* no city: ignored */
    struct vka_dataset_params p = { .kind = VKA_DATA_CITYSCAPES, .path = d };
    struct vka_dataset *ds = open_ok(&p);
    cr_assert_eq(vka_dataset_count(ds), 3);
    cr_assert_eq(vka_dataset_classes(ds), 19);
    const char *order[3] = { "aachen/aachen_000000_000019_leftImg8bit.png",
                             "aachen/aachen_000000_000021_leftImg8bit.png",
                             "bochum/bochum_000000_000007_leftImg8bit.png" };
    const uint8_t *want[3] = { ids[0], ids[1], ids[2] };
    for (uint32_t i = 0; i < 3; i++) {
        cr_assert(strstr(vka_dataset_name(ds, i), order[i]), "sample %u is %s, not %s", i,
                  vka_dataset_name(ds, i), order[i]);
        mask_is(ds, i, want[i], N, cityscapes_train_id);
    }
    struct vka_sample s;
    cr_assert_eq(vka_dataset_get(ds, 0, 0, &s), 0);
    cr_assert(s.mask.data[50] == 0 && s.mask.data[51] == 13 && s.mask.data[52] == 255 &&
              s.mask.data[53] == 18, "labelIds 7, 26, 0, 33 gave %u, %u, %u, %u, not 0, 13, "
              "255, 18", s.mask.data[50], s.mask.data[51], s.mask.data[52], s.mask.data[53]);
    vka_sample_free(&s);
    /* the counts are of train ids; 255 (the ignore index) is in none of them */
    struct vka_class_stats st;
    cr_assert_eq(vka_dataset_class_stats(ds, &st), 0);
    uint64_t ign = 0, car = 0;
    for (uint32_t i = 0; i < 3; i++) {
        ign += count_of(want[i], N, cityscapes_train_id, 255);
        car += count_of(want[i], N, cityscapes_train_id, 13);
    }
    cr_assert(st.classes == 19 && st.ignored == ign && st.pixels[13] == car,
              "classes %u, ignored %llu (want %llu), car %llu (want %llu)", st.classes,
              (unsigned long long)st.ignored, (unsigned long long)ign,
              (unsigned long long)st.pixels[13], (unsigned long long)car);
    cr_assert_eq(vka_dataset_check_classes(ds, 19), 0, "%s", vka_last_error());
    vka_clear_error();
    cr_assert_eq(vka_dataset_check_classes(ds, 13), -EINVAL);
    const char *m0 = P("%s/gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png", d);
    /* train id 13 is labelId 26, first at pixel 26 = (8, 2); labelId 13 is at (4, 1) */
    const char *e = vka_last_error();
    cr_assert(strstr(e, m0) && strstr(e, "class id 13 at pixel (8, 2)") && strstr(e, "labelIds"),
              "%s", e);
    vka_dataset_destroy(&ds);
    /* verified by header at open, the counts are the same */
    p.header_only = true;
    ds = open_ok(&p);
    struct vka_class_stats st2;
    cr_assert_eq(vka_dataset_class_stats(ds, &st2), 0);
    cr_assert(st2.ignored == st.ignored && !memcmp(st2.pixels, st.pixels, sizeof(st.pixels)));
    vka_dataset_destroy(&ds);
    p.header_only = false;
    p.split = VKA_SPLIT_VAL;
    ds = open_ok(&p);
    cr_assert_eq(vka_dataset_count(ds), 1);
    mask_is(ds, 0, ids[3], N, cityscapes_train_id);
    vka_dataset_destroy(&ds);
    /* the unlabelled ids become the ignore index asked for */
    p = (struct vka_dataset_params){ .kind = VKA_DATA_CITYSCAPES, .path = d,
                                     .ignore_index = &(int32_t){ 200 } };
    ds = open_ok(&p);
    cr_assert_eq(vka_dataset_get(ds, 0, 0, &s), 0);
    cr_assert(s.mask.data[0] == 200 && s.mask.data[34] == 200 && s.mask.data[7] == 0);
    vka_sample_free(&s);
    vka_dataset_destroy(&ds);
    /* an ignore index that is a train id would merge the unlabelled pixels into it */
    p.ignore_index = &(int32_t){ 5 };
    open_fails(&p, "cityscapes:train", "ignore index 5 is one of the 19 classes");
    p.ignore_index = NULL;
    p.reduce_zero_label = true;
    open_fails(&p, "cityscapes:train", "road");
    p.reduce_zero_label = false;
    /* a missing labelIds mask names itself and its image */
    const char *m2 = P("%s/gtFine/train/bochum/bochum_000000_000007_gtFine_labelIds.png", d);
    cr_assert_eq(remove(m2), 0);
    open_fails(&p, m2, "missing mask");
    cr_assert(strstr(vka_last_error(), "bochum_000000_000007_leftImg8bit.png"), "%s",
              vka_last_error());
    p.skip_bad = true;
    ds = open_ok(&p);
    cr_assert_eq(vka_dataset_count(ds), 2);
    vka_dataset_destroy(&ds);
}

static uint8_t reduce_zero(uint8_t v)
{
    return v == 0 || v == 255 ? 255 : (uint8_t)(v - 1);
}

Test(datasets, ade20k_reduce_zero_label)
{
    test_seed("datasets/ade20k_reduce_zero_label");
    const char *d = tmp_make();
    enum { W = 10, H = 7, N = W * H };
    uint8_t ann[3][N];
    for (uint32_t k = 0; k < 3; k++)
        for (uint32_t p = 0; p < N; p++)
            ann[k][p] = (uint8_t)test_rand_range(0, 150);
    ann[0][0] = 0;
    ann[0][1] = 1;
    ann[0][2] = 150;
    make_ade20k_sample(d, "training", "ADE_train_00000001", W, H, ann[0]);
    make_ade20k_sample(d, "training", "ADE_train_00000002", W, H, ann[1]);
    make_ade20k_sample(d, "validation", "ADE_val_00000001", W, H, ann[2]);
    struct vka_dataset_params p = { .kind = VKA_DATA_ADE20K, .path = d };
    struct vka_dataset *ds = open_ok(&p);
    cr_assert_eq(vka_dataset_count(ds), 2);
    cr_assert_eq(vka_dataset_classes(ds), 150);
    mask_is(ds, 0, ann[0], N, reduce_zero);
    mask_is(ds, 1, ann[1], N, reduce_zero);
    struct vka_sample s;
    cr_assert_eq(vka_dataset_get(ds, 0, 0, &s), 0);
    cr_assert(s.mask.data[0] == 255 && s.mask.data[1] == 0 && s.mask.data[2] == 149,
              "ADE ids 0, 1, 150 gave %u, %u, %u, not 255, 0, 149", s.mask.data[0],
              s.mask.data[1], s.mask.data[2]);
    vka_sample_free(&s);
    struct vka_class_stats st;
    cr_assert_eq(vka_dataset_class_stats(ds, &st), 0);
    uint64_t zeros = count_of(ann[0], N, reduce_zero, 255) + count_of(ann[1], N, reduce_zero, 255);
    cr_assert(st.ignored == zeros && st.pixels[149] == count_of(ann[0], N, reduce_zero, 149) +
                                                           count_of(ann[1], N, reduce_zero, 149),
              "ignored %llu, want the %llu zeros", (unsigned long long)st.ignored,
              (unsigned long long)zeros);
    vka_dataset_destroy(&ds);
    p.split = VKA_SPLIT_VAL;
    ds = open_ok(&p);
    cr_assert_eq(vka_dataset_count(ds), 1);
    mask_is(ds, 0, ann[2], N, reduce_zero);
    vka_dataset_destroy(&ds);
    /* 151 becomes 150, past the 150 classes; the error says the ids are shifted */
    p.split = VKA_SPLIT_TRAIN;
    const char *a1 = P("%s/annotations/training/ADE_train_00000002.png", d);
    ann[1][N - 1] = 151;
    png(a1, W, H, 1, ann[1]);
    open_fails(&p, a1, "class id 150 at pixel (9, 6)");
    cr_assert(strstr(vka_last_error(), "reduce_zero_label"), "%s", vka_last_error());
    cr_assert_eq(remove(a1), 0);
    open_fails(&p, P("%s/images/training/ADE_train_00000002.jpg", d), "missing mask");
}

/* The pairs a list names, under d/data; masks of ids 0..2 (and 255) whose first 2 is
 * at pixel (3, 0). */
static void list_data(const char *d, uint8_t **masks)
{
    mkdirs(P("%s/data/img", d));
    mkdirs(P("%s/data/we, comma", d));
    mkdirs(P("%s/lists", d));
    const char *img[3] = { "img/a.png", "we, comma/b.png", "img/c.bmp" };
    const char *msk[3] = { "img/a_mask.png", "we, comma/b \"m\".png", "img/c_mask.png" };
    for (uint32_t i = 0; i < 3; i++) {
        uint8_t *rgb = rand_bytes(8 * 6 * 3, 256);
        masks[i] = rand_mask(8, 6, 3);
        masks[i][1] = masks[i][2] = 0;
        masks[i][3] = 2;
        if (i == 2)
            write_bmp(P("%s/data/%s", d, img[i]), 8, 6, 3, rgb);
        else
            png(P("%s/data/%s", d, img[i]), 8, 6, 3, rgb);
        png(P("%s/data/%s", d, msk[i]), 8, 6, 1, masks[i]);
        free(rgb);
    }
}

static void write_text(const char *path, const char *text)
{
    write_bytes(path, text, strlen(text));
}

static uint8_t same(uint8_t v)
{
    return v;
}

Test(datasets, list_csv_and_txt)
{
    test_seed("datasets/list_csv_and_txt");
    const char *d = tmp_make();
    uint8_t *masks[3];
    list_data(d, masks);
    /* a byte order mark, a header, a comment, a blank line, CRLF, spaces around
     * fields, a quoted path holding a comma and a quote, an absolute path */
    char *abs = strdup(P("%s/data/img/c.bmp,%s/data/img/c_mask.png", d, d));
    write_text(P("%s/lists/train.csv", d),
               P("\xef\xbb\xbfImage,Mask\r\n# pairs\r\n\r\n../data/img/a.png,../data/img/a_mask.png\r\n"
                 "  \"../data/we, comma/b.png\" , \"../data/we, comma/b \"\"m\"\".png\"\r\n%s",
                 abs));
    write_text(P("%s/lists/val.csv", d),
               "\"../data/we, comma/b.png\",\"../data/we, comma/b \"\"m\"\".png\"\n");
    struct vka_dataset_params p = { .kind = VKA_DATA_LIST, .path = P("%s/lists/train.csv", d) };
    struct vka_dataset *ds = open_ok(&p);
    cr_assert_eq(vka_dataset_count(ds), 3);
    const char *names[3] = { P("%s/lists/../data/img/a.png", d),
                             P("%s/lists/../data/we, comma/b.png", d), P("%s/data/img/c.bmp", d) };
    for (uint32_t i = 0; i < 3; i++) {
        cr_assert_str_eq(vka_dataset_name(ds, i), names[i]);
        mask_is(ds, i, masks[i], 8 * 6, same);
    }
    cr_assert_eq(vka_dataset_classes(ds), 3, "classes from the masks: 3, not %u",
                 vka_dataset_classes(ds));
    vka_dataset_destroy(&ds);
    p.split = VKA_SPLIT_VAL;
    ds = open_ok(&p);
    cr_assert_eq(vka_dataset_count(ds), 1);
    cr_assert(strstr(vka_dataset_name(ds, 0), "comma/b.png"));
    vka_dataset_destroy(&ds);
    /* .txt: blank-separated, the validation list named by "train" -> "val" */
    write_text(P("%s/lists/pairs_train.txt", d),
               P("../data/img/a.png\t../data/img/a_mask.png\n  %s/data/img/c.bmp   "
                 "../data/img/c_mask.png  \n", d));
    write_text(P("%s/lists/pairs_val.txt", d), "../data/img/a.png ../data/img/a_mask.png");
    p = (struct vka_dataset_params){ .kind = VKA_DATA_LIST,
                                     .path = P("%s/lists/pairs_train.txt", d) };
    ds = open_ok(&p);
    cr_assert_eq(vka_dataset_count(ds), 2);
    mask_is(ds, 1, masks[2], 8 * 6, same);
    vka_dataset_destroy(&ds);
    p.split = VKA_SPLIT_VAL;
    ds = open_ok(&p);
    cr_assert_eq(vka_dataset_count(ds), 1);
    vka_dataset_destroy(&ds);
    /* no "train" in the name: the list serves the validation split too */
    p.path = P("%s/lists/pairs_val.txt", d);
    ds = open_ok(&p);
    cr_assert_eq(vka_dataset_count(ds), 1);
    vka_dataset_destroy(&ds);
    /* reduce_zero_label on a list: 0 ignored, 1..2 -> 0..1 */
    p = (struct vka_dataset_params){ .kind = VKA_DATA_LIST, .path = P("%s/lists/train.csv", d),
                                     .reduce_zero_label = true };
    ds = open_ok(&p);
    cr_assert_eq(vka_dataset_classes(ds), 2);
    for (uint32_t i = 0; i < 3; i++)
        mask_is(ds, i, masks[i], 8 * 6, reduce_zero);
    vka_dataset_destroy(&ds);
    for (uint32_t i = 0; i < 3; i++)
        free(masks[i]);
    free(abs);
}

/* The list at d/lists/train.csv (or name) is text; opening it must fail naming `file`
 * and saying `what`. */
static void list_fails(const char *d, const char *name, const char *text, bool skip_bad,
                       const char *file, const char *what)
{
    const char *list = P("%s/lists/%s", d, name);
    write_text(list, text);
    open_fails(&(struct vka_dataset_params){ .kind = VKA_DATA_LIST, .path = list,
                                             .skip_bad = skip_bad },
               file ? file : list, what);
}

Test(datasets, list_errors)
{
    test_seed("datasets/list_errors");
    const char *d = tmp_make();
    uint8_t *masks[3];
    list_data(d, masks);
    char *csv = strdup(P("%s/lists/train.csv", d)); /* kept past P's rotation */
    const char *ok = "../data/img/a.png,../data/img/a_mask.png\n";
    list_fails(d, "train.csv", P("%sonly_one.png\n", ok), false, P("%s:2", csv), "one field");
    list_fails(d, "train.csv", "\"../data/img/a.png,../data/img/a_mask.png\n", false,
               P("%s:1", csv), "a quoted field does not end");
    list_fails(d, "train.csv", "a.png,m.png,x.png\n", false, P("%s:1", csv),
               "more than two fields");
    list_fails(d, "train.csv", "a\"b.png,m.png\n", false, P("%s:1", csv), "a quote inside");
    list_fails(d, "train.csv", "a.png,\n", false, P("%s:1", csv), "an empty path");
    list_fails(d, "train.txt", "a.png b.png c.png\n", false, P("%s/lists/train.txt:1", d),
               "more than two fields");
    list_fails(d, "train.lst", ok, false, NULL, "must be a .csv");
    /* a missing file: named, with the line listing it; skip_bad drops the pair */
    const char *nope = P("%s/lists/../data/img/nope.png", d);
    list_fails(d, "train.csv", P("%s../data/img/c.bmp,../data/img/nope.png\n", ok), false,
               nope, "missing mask");
    cr_assert(strstr(vka_last_error(), P("listed in %s:2", csv)), "%s", vka_last_error());
    struct vka_dataset *ds = open_ok(&(struct vka_dataset_params){
        .kind = VKA_DATA_LIST, .path = csv, .skip_bad = true });
    cr_assert_eq(vka_dataset_count(ds), 1);
    vka_dataset_destroy(&ds);
    /* a pair listed twice, or a mask given two images: refused, skip_bad or not */
    const char *twice = P("%s../data/img/c.bmp,../data/img/c_mask.png\n#\n%s", ok, ok);
    list_fails(d, "train.csv", twice, true, P("%s:4", csv),
               P("the image %s/lists/../data/img/a.png is listed again (first on line 1)", d));
    list_fails(d, "train.csv", P("%s../data/img/c.bmp,../data/img/a_mask.png\n", ok), false,
               P("%s:2", csv), "the mask");
    /* the validation list must exist beside the training list */
    write_text(csv, ok);
    open_fails(&(struct vka_dataset_params){ .kind = VKA_DATA_LIST, .path = csv,
                                             .split = VKA_SPLIT_VAL },
               P("%s/lists/val.csv", d), "missing validation list");
    /* what every layout checks: regular files, sizes, class ids */
    list_fails(d, "train.csv", "../data/img,../data/img/a_mask.png\n", false,
               P("%s/lists/../data/img", d), "not a regular file");
    uint8_t *small = rand_mask(5, 5, 2);
    png(P("%s/data/img/small.png", d), 5, 5, 1, small);
    free(small);
    list_fails(d, "train.csv", "../data/img/a.png,../data/img/small.png\n", false,
               P("%s/lists/../data/img/small.png", d), "mask is 5x5 but its image");
    write_text(csv, ok);
    open_fails(&(struct vka_dataset_params){ .kind = VKA_DATA_LIST, .path = csv, .classes = 2 },
               P("%s/lists/../data/img/a_mask.png", d), "class id 2 at pixel (3, 0)");
    for (uint32_t i = 0; i < 3; i++)
        free(masks[i]);
    free(csv);
}

/* reduce_zero_label is a dataset parameter of the mask-file layouts */
Test(datasets, reduce_zero_label_param)
{
    test_seed("datasets/reduce_zero_label_param");
    const char *d = tmp_make();
    make_folder(d, "train", 3, 8, 8, 4);
    struct vka_dataset_params p = { .kind = VKA_DATA_FOLDER, .path = d,
                                    .reduce_zero_label = true };
    struct vka_dataset *ds = open_ok(&p);
    cr_assert_eq(vka_dataset_classes(ds), 3, "ids 0..3 reduced make 3 classes, not %u",
                 vka_dataset_classes(ds));
    struct vka_image raw;
    cr_assert_eq(vka_mask_read(P("%s/train/masks/s00.png", d), NULL, 255, &raw), 0);
    mask_is(ds, 0, raw.data, 64, reduce_zero);
    vka_image_free(&raw);
    vka_dataset_destroy(&ds);
    /* ignore index 0 would be class 0 of the reduced ids */
    p.ignore_index = &(int32_t){ 0 };
    open_fails(&p, "folder:train", "ignore index 0 is one of the 3 classes");
    p = (struct vka_dataset_params){ .kind = VKA_DATA_SHAPES, .reduce_zero_label = true };
    open_fails(&p, "shapes:train", "reduce_zero_label applies to mask files");
    const char *pal = P("%s/palette.json", d);
    write_text(pal, "[[0,0,0],[255,0,0]]");
    p = (struct vka_dataset_params){ .kind = VKA_DATA_FOLDER, .path = d, .palette = pal,
                                     .reduce_zero_label = true };
    open_fails(&p, "folder:train", "\"ignore\" list");
}

/* Found with the fuzz seeds (tests/fuzz/make_corpus.py): a top-down BMP (negative height,
 * rows stored top first, as the format allows) was refused as corrupt, stb_image's
 * header query giving its height as stored, negative. */
Test(datasets, bmp_top_down)
{
    test_seed("datasets/bmp_top_down");
    const char *d = tmp_make();
    uint32_t w = test_rand_range(3, 20), h = test_rand_range(2, 20);
    uint8_t *rgb = rand_bytes((size_t)w * h * 3, 256);
    const char *up = P("%s/up.bmp", d), *down = P("%s/down.bmp", d);
    write_bmp(up, w, h, 3, rgb);
    size_t n;
    uint8_t *b = read_bytes(up, &n);
    uint32_t off = b[10] | (uint32_t)b[11] << 8 | (uint32_t)b[12] << 16 | (uint32_t)b[13] << 24;
    size_t row = ((size_t)w * 3 + 3) / 4 * 4;
    cr_assert_eq(n, off + row * h, "stb_image_write's BMP is not 24-bit uncompressed");
    uint8_t *flip = malloc(n);
    cr_assert(flip);
    memcpy(flip, b, off);
    for (uint32_t y = 0; y < h; y++)
        memcpy(flip + off + row * y, b + off + row * (h - 1 - y), row);
    uint32_t neg = (uint32_t)-(int32_t)h;
    for (int k = 0; k < 4; k++)
        flip[22 + k] = (uint8_t)(neg >> (8 * k));
    write_bytes(down, flip, n);
    struct vka_image_info info;
    cr_assert_eq(vka_image_probe(down, &info), 0, "%s", vka_last_error());
    cr_assert(info.format == VKA_FMT_BMP && info.w == w && info.h == h, "%ux%u", info.w,
              info.h);
    struct vka_image img;
    cr_assert_eq(vka_image_read(down, 3, &img), 0, "%s", vka_last_error());
    cr_assert(img.w == w && img.h == h && img.c == 3);
    cr_assert_eq(memcmp(img.data, rgb, (size_t)w * h * 3), 0, "top-down BMP pixels differ");
    vka_image_free(&img);
    free(flip);
    free(b);
    free(rgb);
}

/* Found by fuzzing (tests/fuzz, "image"): a DHT segment whose 16 code counts add up to
 * more than 256 made stb_image 2.27 write past its Huffman tables (UBSan: index 257 out
 * of bounds for stbi_uc[257]); the file must be refused before stb_image reads it, by
 * the probe and by the read, naming the file. */
Test(datasets, jpeg_huffman_table_too_long)
{
    test_seed("datasets/jpeg_huffman_table_too_long");
    const char *d = tmp_make(), *path = P("%s/dht.jpg", d);
    rand_jpeg(path, 16, 16, NULL);
    size_t n;
    uint8_t *b = read_bytes(path, &n);
    size_t at = 0;
    while (at + 1 < n && !(b[at] == 0xff && b[at + 1] == 0xc4))
        at++;
    cr_assert_lt(at + 21, n, "no DHT segment in the test JPEG");
    for (size_t i = 0; i < 16; i++) /* after FF C4, the length and the class/id byte */
        b[at + 5 + i] = 0x20;       /* 16 * 32 = 512 codes */
    write_bytes(path, b, n);
    free(b);
    struct vka_image_info info;
    vka_clear_error();
    cr_assert_lt(vka_image_probe(path, &info), 0);
    cr_assert(strstr(vka_last_error(), path) && strstr(vka_last_error(), "Huffman table"),
              "%s", vka_last_error());
    struct vka_image img;
    vka_clear_error();
    cr_assert_lt(vka_image_read(path, 0, &img), 0);
    cr_assert(strstr(vka_last_error(), "512 codes"), "%s", vka_last_error());
    cr_assert_null(img.data);
}

/* Found by fuzzing (tests/fuzz, "image"): a scan that uses a Huffman table no DHT segment
 * defines made stb_image 2.27 decode with uninitialised memory, differently from run to
 * run (UBSan: shift exponent 37 in stbi__grow_buffer_unsafe, only after other inputs had
 * left their bytes where the table should be); the file must be refused. */
Test(datasets, jpeg_scan_uses_undefined_huffman_table)
{
    test_seed("datasets/jpeg_scan_uses_undefined_huffman_table");
    const char *d = tmp_make(), *path = P("%s/scan.jpg", d);
    rand_jpeg(path, 16, 16, NULL);
    size_t n;
    uint8_t *b = read_bytes(path, &n);
    size_t at = 0;
    while (at + 1 < n && !(b[at] == 0xff && b[at + 1] == 0xda))
        at++;
    cr_assert_lt(at + 6, n, "no SOS segment in the test JPEG");
    cr_assert_eq(b[at + 6], 0x00, "the test JPEG's scan does not use tables 0");
    b[at + 6] = 0x01; /* after FF DA, the length, the count and the component id */
    write_bytes(path, b, n);
    free(b);
    struct vka_image img;
    vka_clear_error();
    cr_assert_lt(vka_image_read(path, 1, &img), 0);
    cr_assert(strstr(vka_last_error(), path) &&
              strstr(vka_last_error(), "AC Huffman table 1, which no DHT segment defines"),
              "%s", vka_last_error());
    cr_assert_null(img.data);
}
