/* Datasets (layer 8), host side: readers, generators, augmentation and the prefetching
 * loader that turn files into float NCHW batches and int32 (N,H,W) class-id masks.
 *
 * Sources (enum vka_data_kind):
 *   FOLDER   DIR/{train,val}/images/NAME.{png,jpg,jpeg,bmp,tga} and DIR/{train,val}/
 *            masks/NAME.png (same stem), in sorted (byte) order of the image names.
 *            The stem is the name without its last extension ("a.kk.png": "a.kk"); two
 *            images, or two masks, of one stem are refused, naming both files.
 *   VOC      DIR/JPEGImages/ID.jpg, DIR/SegmentationClass/ID.png (palette PNGs read as
 *            indices), ids from DIR/ImageSets/Segmentation/{train,val}.txt; classes
 *            from the masks as for FOLDER (21 for Pascal VOC itself).
 *   CITYSCAPES  DIR/leftImg8bit/{train,val}/CITY/NAME_leftImg8bit.png with DIR/gtFine/
 *            {train,val}/CITY/NAME_gtFine_labelIds.png, cities then names sorted; the
 *            labelIds are mapped to the 19 train ids (Cityscapes' table, cityscapes.c),
 *            every other id to the ignore index. 19 classes.
 *   ADE20K   DIR/images/{training,validation}/NAME.jpg with DIR/annotations/{training,
 *            validation}/NAME.png, paired by stem as FOLDER; always reduce_zero_label
 *            (below). 150 classes.
 *   LIST     FILE.csv (image,mask; quoted fields may hold commas) or FILE.txt (image
 *            mask, blank-separated), one pair a line, in file order; relative paths
 *            are relative to FILE's folder; blank lines and '#' lines skipped. The
 *            validation split reads FILE's name with its last "train" replaced by
 *            "val" (FILE itself when there is none). Classes from the masks.
 *   IMAGES   a flat folder of images, no masks (GANs), sorted.
 *   IDX      an MNIST-layout IDX file (.gz or plain) of unsigned bytes (N,H,W) or
 *            (N,H,W,C); path NULL: Debian's Fashion-MNIST images of the split. With
 *            labels (an IDX file of N unsigned bytes; path NULL: the split's own
 *            labels file) each image carries its class label, the only kind that does.
 *   SHAPES   generated: circles (class 1), rectangles (2), triangles (3) on noise,
 *            background 0; sample i depends only on (seed, split, i).
 *   FASHION  generated: Fashion-MNIST garments composited onto noisy canvases, one class
 *            per garment group (vka_fashion_group), background 0.
 *
 * Files. Every file is validated: images by their own header (the format comes from
 * the magic bytes, never from the extension; sizes over VKA_IMAGE_MAX_SIDE are refused
 * before anything is allocated), structure (PNG IEND, JPEG EOI, BMP/TGA data length:
 * truncation is caught even where stb_image would fill in zeros) and, unless
 * header_only, a full decode at open. Masks are 8-bit single-channel PNGs read with
 * libspng: grey values or palette indices ARE the class ids; RGB masks need a palette.
 * Files in the folders whose extension is not an image's (.png .jpg .jpeg .bmp .tga,
 * any case; masks: .png) are ignored with one warning naming them; hidden files
 * (".name") silently. A file with an image extension that is not a valid image is an
 * error. Every error names the file and what is wrong; with skip_bad the sample is
 * dropped with a warning instead (at open; a file that goes bad later is replaced by
 * the next good sample in index order, with a warning).
 *
 * Masks: a pixel equal to the ignore index (default 255) is ignored; any other value
 * must be below the dataset's classes. Both apply to the ids after a layout's map
 * (CITYSCAPES' train ids; reduce_zero_label, mmsegmentation's: 0 and 255 become the
 * ignore index, any other k becomes k - 1), which errors about class ids say; with a
 * map the ignore index must not be a class id, since the map writes it.
 *
 * Threads: vka_dataset_get may be called from any number of threads at once; the
 * first vka_dataset_class_stats of a generated dataset fills a cache, so it must not
 * run beside other calls on that dataset. A loader is used from one thread.
 *
 * Ownership: the caller owns datasets, loaders, palettes and every vka_image it is
 * given (vka_image_free); a loader borrows its dataset, which must outlive it; a batch
 * points into its loader and is valid until the next call on that loader. */
#ifndef VKA_DATASET_H
#define VKA_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VKA_IMAGE_MAX_SIDE 16384u          /* pixels per side, images and masks */
#define VKA_IMAGE_MAX_PIXELS (1u << 28)    /* width * height */
#define VKA_MAX_CLASSES 256u

/* ---- images and masks ----------------------------------------------------------- */

/* 8 bits per channel, rows top to bottom, channels interleaved: data[(y*w + x)*c + k]. */
struct vka_image {
    uint32_t w, h, c;
    uint8_t *data;
};

void vka_image_free(struct vka_image *img);

enum vka_image_format { VKA_FMT_PNG = 1, VKA_FMT_JPEG, VKA_FMT_BMP, VKA_FMT_TGA };

struct vka_image_info {
    enum vka_image_format format;
    uint32_t w, h, c; /* c as stored: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA */
};

/* Reads the header and checks the file's structure, without decoding pixels. */
int vka_image_probe(const char *path, struct vka_image_info *info);
/* Decodes a PNG/JPEG/BMP/TGA file to channels 1 (grey) or 3 (RGB), or 0: as stored,
 * 2 and 4 (alpha) dropped to 1 and 3. 16-bit PNGs are reduced to 8 bits. */
int vka_image_read(const char *path, uint32_t channels, struct vka_image *img);

/* A colour palette for RGB masks: a JSON list [[r,g,b], ...] whose entry k is class k,
 * or an object {"classes": [[r,g,b], ...], "ignore": [[r,g,b], ...]} whose "ignore"
 * colours map to the ignore index. Colours must be distinct. */
struct vka_palette;
int vka_palette_load(const char *path, struct vka_palette **pal);
void vka_palette_destroy(struct vka_palette **pal);
uint32_t vka_palette_classes(const struct vka_palette *pal);

/* Reads a class-id mask (c = 1): an 8-bit (or 1/2/4-bit) grey PNG's values or an
 * indexed PNG's palette INDICES; with pal, any PNG's colours mapped through pal (a
 * colour that is not in it is an error naming the file, the colour and the pixel;
 * "ignore" colours become ignore_index). */
int vka_mask_read(const char *path, const struct vka_palette *pal, uint8_t ignore_index,
                  struct vka_image *mask);

/* ---- IDX files ------------------------------------------------------------------ */

/* An IDX file of unsigned bytes: magic 00 00 08 D, then D big-endian u32 dims. */
struct vka_idx {
    uint32_t ndim;
    uint32_t dims[4];
    uint8_t *data; /* dims[0] * ... * dims[ndim-1] bytes */
};

/* Reads a .gz (zlib's gz* API; a plain file is read as is). Refuses a wrong magic
 * number, a type other than unsigned byte, D outside 1..4, a zero dimension, dimensions
 * that promise more than VKA_IDX_MAX_DATA (1 GiB) or more than the file could hold
 * (checked before anything is allocated), a file that ends before its data (a truncated
 * or corrupt .gz), and data left after it. */
int vka_idx_read(const char *path, struct vka_idx *idx);
void vka_idx_free(struct vka_idx *idx);

/* Debian's dataset-fashion-mnist files (split: "train" or "t10k"; what: "images" or
 * "labels"): writes the path into buf. The folder is $VKACCUM_FASHION_DIR, else the
 * first of VKA_FASHION_DIRS that holds the file. */
#define VKA_FASHION_DIRS "/usr/share/datasets/fashion-mnist", "/usr/share/fashion-mnist", \
                         "/usr/local/share/datasets/fashion-mnist"
int vka_fashion_path(const char *split, const char *what, char *buf, size_t size);

/* Fashion-MNIST label (0..9) -> segmentation class. Coarse (fine false, 4 classes):
 * 1 clothing {T-shirt, trouser, pullover, dress, coat, shirt}, 2 footwear {sandal,
 * sneaker, ankle boot}, 3 bag. Fine (5 classes): 1 tops {T-shirt, pullover, coat,
 * shirt}, 2 trousers and dresses, 3 footwear, 4 bag. Background is 0. */
uint32_t vka_fashion_group(uint32_t label, bool fine);

/* ---- datasets ------------------------------------------------------------------- */

enum vka_data_kind {
    VKA_DATA_FOLDER,
    VKA_DATA_VOC,
    VKA_DATA_CITYSCAPES,
    VKA_DATA_ADE20K,
    VKA_DATA_LIST,
    VKA_DATA_IMAGES,
    VKA_DATA_IDX,
    VKA_DATA_SHAPES,
    VKA_DATA_FASHION,
};

enum vka_split { VKA_SPLIT_TRAIN, VKA_SPLIT_VAL };

struct vka_dataset_params {
    enum vka_data_kind kind;
    const char *path;           /* folder or file; FASHION: the IDX folder (NULL: Debian's) */
    bool labels;                /* IDX: read each image's class label (above) */
    const char *labels_path;    /* IDX with labels and a path: the labels file */
    enum vka_split split;       /* file layouts, IDX/FASHION (val = t10k), generators */
    const char *palette;        /* JSON palette for RGB masks (FOLDER), or NULL */
    uint32_t classes;           /* 0: generators, CITYSCAPES (19), ADE20K (150) theirs;
                                 * FOLDER, VOC, LIST the largest id + 1 */
    const int32_t *ignore_index;/* NULL: 255; 0..255 */
    bool reduce_zero_label;     /* FOLDER (without palette), VOC, LIST; ADE20K always */
    bool skip_bad;              /* drop bad samples with a warning instead of failing */
    bool header_only;           /* verify images by header at open, decode them later */
    uint32_t threads;           /* threads verifying files at open; 0: online CPUs, <= 8 */
    /* generators */
    uint64_t seed;
    uint32_t count;             /* samples; 0: 2000 train, 200 val */
    uint32_t width, height;     /* canvas; 0: 64 */
    bool fine;                  /* FASHION: the fine grouping (5 classes) */
};

struct vka_dataset;

int vka_dataset_open(const struct vka_dataset_params *params, struct vka_dataset **ds);
void vka_dataset_destroy(struct vka_dataset **ds);

/* Parses the CLI's --data: "shapes", "fashion", "voc:DIR", "cityscapes:DIR",
 * "ade20k:DIR", "list:FILE", "idx:FILE", "images:DIR", "folder:DIR" or DIR (FOLDER when
 * seg, else IMAGES), a path ending in .gz (IDX). Sets
 * kind and path (pointing into spec) and leaves the other fields alone. */
int vka_dataset_spec_parse(const char *spec, bool seg, struct vka_dataset_params *params);

uint32_t vka_dataset_count(const struct vka_dataset *ds);
uint32_t vka_dataset_classes(const struct vka_dataset *ds); /* 0 when no masks */
int32_t vka_dataset_ignore_index(const struct vka_dataset *ds);
bool vka_dataset_has_masks(const struct vka_dataset *ds);
bool vka_dataset_has_labels(const struct vka_dataset *ds);
/* 1 or 3: what the source holds (IDX and grey generators 1, the rest 3). */
uint32_t vka_dataset_channels(const struct vka_dataset *ds);
/* The image file of sample i (file layouts), else e.g. "shapes:train#12". */
const char *vka_dataset_name(const struct vka_dataset *ds, uint32_t i);

/* One raw sample. channels: 1 or 3 (0: vka_dataset_channels). mask.data is NULL when
 * the dataset has none, label -1. Thread-safe. The caller frees both images with
 * vka_sample_free. */
struct vka_sample {
    struct vka_image image;
    struct vka_image mask;
    int32_t label;            /* the image's class label (0..255), or -1 */
};
int vka_dataset_get(const struct vka_dataset *ds, uint32_t i, uint32_t channels,
                    struct vka_sample *s);
void vka_sample_free(struct vka_sample *s);

/* Checks that every mask id other than the ignore index is below classes (1..256),
 * e.g. the class count of a model about to train on the dataset; 0 when so. Else
 * -EINVAL, and the error names the first mask in sample order holding an id >= classes
 * (a generated dataset's "shapes:train#i"), the smallest such id in it, the pixel where
 * it first appears and how many pixels hold it. File datasets answer from the counts
 * made at open and read masks only to name the offender; a generated dataset generates
 * every mask on the first call (as vka_dataset_class_stats, whose cache it shares: not
 * beside other calls on that dataset). */
int vka_dataset_check_classes(struct vka_dataset *ds, uint32_t classes);

/* Class frequencies over the whole dataset (masks only, before augmentation). */
struct vka_class_stats {
    uint32_t classes;
    uint64_t images;
    uint64_t ignored;                      /* pixels equal to the ignore index */
    uint64_t pixels[VKA_MAX_CLASSES];      /* pixels of class c */
    uint64_t image_pixels[VKA_MAX_CLASSES];/* non-ignored pixels of the images holding c */
};
/* Counted at open for files (over the samples kept); a generated dataset generates
 * every mask on its first call. */
int vka_dataset_class_stats(struct vka_dataset *ds, struct vka_class_stats *st);

/* Median frequency balancing (Eigen & Fergus 2015, SegNet): freq(c) = pixels[c] /
 * image_pixels[c], w[c] = median over present classes of freq / freq(c). A class that
 * never appears gets weight 0. Writes st->classes weights. */
int vka_class_weights_median_freq(const struct vka_class_stats *st, float *w);

/* ---- augmentation --------------------------------------------------------------- */

enum vka_fit {
    VKA_FIT_CROP,   /* take an S x S window (center, or random with random_crop) */
    VKA_FIT_RESIZE, /* first scale the shorter side to S, then as CROP */
};

/* Zero-initialised, this is "no augmentation": each image taken unchanged at its own
 * size. With size S and no other field set, the S x S center crop (the CLI's
 * --no-augment). Geometry: the image is scaled by s = (VKA_FIT_RESIZE: S / shorter
 * side, else 1) times a draw in [scale_min, scale_max] when scale_max > 0, with an
 * antialiased bilinear filter (PIL's BILINEAR: a triangle filter widened when
 * shrinking) and masks by nearest neighbour; an S x S window is taken from it,
 * centered or at a random position; where the image is smaller than S the window
 * reaches past it and those pixels are 0 after normalisation (the mean colour) and
 * ignore_index in the mask. Then an optional horizontal flip (p = 0.5), colour jitter
 * (factors drawn in [1 - x, 1 + x], applied brightness, contrast (around the mean grey
 * of the window), saturation (around each pixel's grey), clamped to [0, 1]), and
 * normalisation (v / 255 - mean[k]) / std[k]. */
struct vka_augment_params {
    uint32_t size;             /* S; 0: each image at its own (scaled) size */
    enum vka_fit fit;
    bool random_crop;
    bool flip;
    float scale_min, scale_max;
    float brightness, contrast, saturation;
    const float *mean, *std;   /* per channel; NULL: ImageNet's (grey: their averages) */
};

/* The draw of sample index in epoch: a function of (seed, epoch, index) only. */
uint64_t vka_augment_seed(uint64_t seed, uint64_t epoch, uint64_t index);
/* The output size for an image of w x h with that draw (S x S when size is set). */
void vka_augment_size(const struct vka_augment_params *a, uint64_t rng, uint32_t w,
                      uint32_t h, uint32_t *ow, uint32_t *oh);
/* Writes x (c, oh, ow) normalised floats and, when mask is not NULL, y (oh, ow) ids
 * (values kept, padding = ignore_index). rng from vka_augment_seed. */
int vka_augment(const struct vka_augment_params *a, uint64_t rng,
                const struct vka_image *img, const struct vka_image *mask,
                int32_t ignore_index, float *x, int32_t *y);

/* ---- loader --------------------------------------------------------------------- */

/* The loader is a stream of samples: position g = epoch * count + index, where index
 * is the place in that epoch's order (a permutation drawn from (seed, epoch) when
 * shuffle, else sorted order). Sample g is dataset sample order_e[index], augmented
 * with vka_augment_seed(seed, e, that sample): the same whatever the worker count or
 * the sizes asked of vka_loader_next, so k micro-batches of b see exactly the samples
 * of one batch of k*b. */
/* Data-parallel sharding (src/dist.h): each window of `window` samples of an epoch's
 * order (the last one shorter when window does not divide the epoch; endless: of the
 * stream of epochs, every window full) is cut into nranks
 * contiguous shares in rank order, window / nranks samples each (nranks divides window);
 * the last, partial window of R samples gives rank r [ceil(r R / N), ceil((r + 1) R / N)),
 * so rank 0 always has one. A rank reads its shares one after the other: its stream. The
 * samples of a window are the same whatever nranks is, and a sample (its augmentation)
 * depends on its epoch and index only. */
struct vka_shard {
    uint32_t count;  /* samples per epoch */
    uint32_t window; /* the effective batch */
    uint32_t nranks, rank;
    bool endless;    /* windows tile the stream across epochs, all full (the GAN's real
                        images), instead of each epoch */
};

/* Windows per epoch. */
uint32_t vka_shard_windows(const struct vka_shard *s);
/* Rank's share of window w of an epoch: its size, and its first index in the epoch. */
uint32_t vka_shard_share(const struct vka_shard *s, uint32_t w, uint32_t *first);
/* Samples of an epoch in rank's stream, and the epoch index of its j-th. */
uint32_t vka_shard_local(const struct vka_shard *s);
uint32_t vka_shard_global(const struct vka_shard *s, uint32_t j);

struct vka_loader_params {
    struct vka_dataset *dataset;   /* borrowed */
    uint32_t count;                /* its first count samples only; 0: all */
    uint32_t batch;                /* most samples one vka_loader_next asks for */
    uint32_t workers;              /* decoding threads; 0: synchronous */
    uint32_t prefetch;             /* samples made ahead; 0: 2 * batch + workers */
    bool shuffle;
    uint64_t seed;
    bool epoch_batches;            /* a batch ends at an epoch's end (may be short) */
    uint32_t channels;             /* 1 or 3; 0: vka_dataset_channels */
    struct vka_augment_params aug;
    /* nranks > 1: this rank's stream of shard (whose count the loader fills in: count,
     * or the dataset's); positions (tell, seek, vka_batch.pos) stay the epoch's, and a
     * seek goes to a window's start */
    struct vka_shard shard;
};

struct vka_loader_pos {
    uint64_t epoch;
    uint64_t index; /* samples of the epoch already delivered */
};

struct vka_batch {
    uint32_t n, c, h, w;
    float *x;                 /* (n, c, h, w) */
    int32_t *y;               /* (n, h, w) class ids, or NULL without masks */
    int32_t *labels;          /* (n) class labels, or NULL without labels */
    const uint32_t *ids;      /* dataset index of each sample */
    struct vka_loader_pos pos;/* position of the first sample */
    bool epoch_end;           /* its last sample is the last of an epoch */
};

struct vka_loader;

int vka_loader_create(const struct vka_loader_params *params, struct vka_loader **l);
void vka_loader_destroy(struct vka_loader **l);
/* The next n (1..batch) samples; with epoch_batches fewer at an epoch's end. Samples
 * of one batch must share a size (always so with aug.size > 0). */
int vka_loader_next(struct vka_loader *l, uint32_t n, struct vka_batch *b);
struct vka_loader_pos vka_loader_tell(const struct vka_loader *l);
/* The loader's shard, or NULL when it reads every sample. */
const struct vka_shard *vka_loader_shard(const struct vka_loader *l);
int vka_loader_seek(struct vka_loader *l, struct vka_loader_pos pos);

#endif
