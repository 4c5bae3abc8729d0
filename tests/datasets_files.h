/* File writers for tests/test_datasets.c (datasets_files.c). Every writer asserts that
 * it succeeded; random content comes from test_rand_* (tests/common.h). */
#ifndef VKA_TEST_DATASETS_FILES_H
#define VKA_TEST_DATASETS_FILES_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

/* A fresh folder under /tmp (removing the previous one); tmp_cleanup (the suite's
 * .fini) removes it. */
const char *tmp_make(void);
void tmp_cleanup(void);
void mkdirs(const char *path); /* mkdir -p */

/* printf into one of 16 rotating static buffers (paths). */
const char *P(const char *fmt, ...) VKA_PRINTF(1, 2);

void write_bytes(const char *path, const void *data, size_t n);
uint8_t *read_bytes(const char *path, size_t *n); /* malloc'ed */
void truncate_to(const char *path, double frac); /* keeps that fraction of the bytes */
uint8_t *rand_bytes(size_t n, uint32_t below);   /* malloc'ed, each in [0, below) */

/* 8-bit images, c channels interleaved. */
void png(const char *path, uint32_t w, uint32_t h, uint32_t c, const uint8_t *px);
void write_bmp(const char *path, uint32_t w, uint32_t h, uint32_t c, const uint8_t *px);
void write_tga(const char *path, uint32_t w, uint32_t h, uint32_t c, const uint8_t *px);

/* A baseline JPEG whose 8x8 blocks are flat: each block holds only its DC coefficient
 * (quantiser 1), so a decoder gives back the levels exactly. comps 1 (grey) or 3
 * (YCbCr, no subsampling); lv[(by * bw + bx) * comps + k] is the level of component k
 * in block (bx, by), bw = ceil(w / 8). */
void flat_jpeg(const char *path, uint32_t w, uint32_t h, uint32_t comps, const uint8_t *lv);
/* A flat-block grey JPEG of random levels; px (w*h, may be NULL) gets its pixels. */
void rand_jpeg(const char *path, uint32_t w, uint32_t h, uint8_t *px);

/* A mask of ids below classes with every 7th pixel 255 (ignored); malloc'ed. */
uint8_t *rand_mask(uint32_t w, uint32_t h, uint32_t classes);
/* root/split/{images,masks} with n samples sNN of w x h: images cycle through PNG, BMP
 * and TGA (sNN.png, sNN.bmp, sNN.tga), masks are grey PNGs from rand_mask. */
void make_folder(const char *root, const char *split, uint32_t n, uint32_t w, uint32_t h,
                 uint32_t classes);
/* Cityscapes: root/leftImg8bit/split/city/city_000000_NNNNNN_leftImg8bit.png (random
 * RGB, NNNNNN = n) and root/gtFine/split/city/..._gtFine_labelIds.png holding the
 * labelIds ids (w*h), beside the gtFine files of the download that are no masks
 * (_color.png, _instanceIds.png, _polygons.json). */
void make_cityscapes_sample(const char *root, const char *split, const char *city, uint32_t n,
                            uint32_t w, uint32_t h, const uint8_t *ids);
/* ADE20K: root/images/split/name.jpg (a flat-block grey JPEG) and
 * root/annotations/split/name.png holding ann (w*h); split "training" or "validation". */
void make_ade20k_sample(const char *root, const char *split, const char *name, uint32_t w,
                        uint32_t h, const uint8_t *ann);
/* An 8-bit indexed PNG with the VOC colour map, written with libspng. */
void indexed_png(const char *path, uint32_t w, uint32_t h, const uint8_t *idx);
/* A .gz holding head (hn bytes) then data (n bytes). */
void write_idx(const char *path, const uint8_t *head, size_t hn, const uint8_t *data,
               size_t n);

/* Sends this process's stderr (fd 2, where vka_log writes) into a temporary file until
 * stderr_end, which puts it back and returns what was written (malloc'ed). Every
 * thread that logs must have finished before stderr_end. */
void stderr_begin(void);
char *stderr_end(void);

#endif
