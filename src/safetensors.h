/* Checkpoint files in the safetensors format (layers 5/6), host side only, owned by
 * src/safetensors.c: an 8-byte little-endian header length N, N bytes of UTF-8 JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"key": "value", ...}}, then the data buffer, offsets relative to its
 * start. The reader enforces every rule of the format and names the file and the tensor
 * in each error; the writer replaces a file atomically (temporary file, fsync, rename,
 * folder fsync) and adds a checksum of the data as metadata, which the reader checks.
 * tools/parity/st.py reads and writes the same files from Python.
 *
 * Layout rule of the checkpoints: model tensors carry PyTorch's state_dict names, shapes
 * (PyTorch's rank, not the device tensor's 4-D N, C, H, W) and memory layouts, so that they
 * load in PyTorch with load_state_dict. A conv2d weight is OIHW (K, C, R, S), a
 * conv_transpose2d weight IOHW (C_in, C_out, R, S), a linear weight (out, in), biases, norm
 * affine parameters and running statistics (C), BatchNorm's num_batches_tracked an I64
 * scalar (shape []). The device layouts (NHWC4 activations, the GEMM-ordered WEIGHT
 * layout) never reach a file: the trainer converts at the boundary with
 * vka_tensor_download / vka_tensor_upload, whose host side is NCHW, i.e. PyTorch's order.
 * State that no PyTorch module holds (optimizer moments, accumulators and counts, step
 * counters, RNG states, the data-order position) goes under a name prefix that no module
 * uses, which a PyTorch-side loader filters out before load_state_dict.
 *
 * Element data is little-endian, as the format requires (and as every host we build for
 * stores it). */
#ifndef VKA_SAFETENSORS_H
#define VKA_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The format's dtypes that this reader and writer know (F8 types are refused). */
enum vka_st_dtype {
    VKA_ST_BOOL,
    VKA_ST_U8,
    VKA_ST_I8,
    VKA_ST_I16,
    VKA_ST_U16,
    VKA_ST_F16,
    VKA_ST_BF16,
    VKA_ST_I32,
    VKA_ST_U32,
    VKA_ST_F32,
    VKA_ST_F64,
    VKA_ST_I64,
    VKA_ST_U64,
    VKA_ST_DTYPE_COUNT,
};

#define VKA_ST_MAX_DIMS 8
#define VKA_ST_MAX_HEADER 100000000ull /* bytes; the format's limit */
/* The metadata entry the writer adds to every file: zlib's crc32 of the whole data
 * buffer as 8 lowercase hex digits ("vkaccum.crc32": "1c291ca3"), a string like any
 * metadata, so that Python's safetensors reads the file unchanged. The key is reserved
 * (refused among the caller's metadata) and hidden from the reader's f->meta. */
#define VKA_ST_CRC_KEY "vkaccum.crc32"

/* One tensor: the writer's input, the reader's output and the checker's expectation. */
struct vka_st_tensor {
    const char *name;
    enum vka_st_dtype dtype;
    uint32_t ndim;                     /* 0: a scalar (one element) */
    uint64_t shape[VKA_ST_MAX_DIMS];
    const void *data;                  /* numel * element size bytes, little-endian;
                                          may be NULL when that is 0 */
};

struct vka_st_meta {
    const char *key;
    const char *value;
};

/* "F32" etc., and its element size in bytes; NULL / 0 for a value out of range. */
const char *vka_st_dtype_name(enum vka_st_dtype dtype);
size_t vka_st_dtype_size(enum vka_st_dtype dtype);
/* The dtype named name; -EINVAL (not logged) when the name is unknown. */
int vka_st_dtype_parse(const char *name, enum vka_st_dtype *dtype);

/* Elements and bytes of t; -EOVERFLOW (not logged) when they do not fit in 64 bits. */
int vka_st_numel(const struct vka_st_tensor *t, uint64_t *numel);
int vka_st_nbytes(const struct vka_st_tensor *t, uint64_t *nbytes);

/* Writes "[64, 3, 3, 3]" into buf (always terminated) and returns buf. */
char *vka_st_shape_str(const struct vka_st_tensor *t, char *buf, size_t size);

struct vka_st_write_params {
    const struct vka_st_tensor *tensors;
    size_t n_tensors;
    const struct vka_st_meta *meta;    /* string metadata, written as "__metadata__" */
    size_t n_meta;
};

/* Writes the tensors and metadata to path, atomically (vka_atomic_*, src/file.h: a
 * temporary file beside path, fsync, rename, folder fsync; on an error an existing path
 * is left as it was; a success removes the temporary files of path that dead writers of
 * this host left). The header is compact JSON, "__metadata__" first (the given entries,
 * then VKA_ST_CRC_KEY), padded with spaces to a multiple of 8 bytes; tensors are stored
 * largest element size first (the given order within one size), so that each tensor's
 * data is aligned to its element size. Names must be distinct, valid UTF-8, free of
 * control characters (bytes below 0x20 and 0x7f) and not "__metadata__"; metadata keys
 * distinct, free of control characters and not VKA_ST_CRC_KEY. Returns 0 or a negative
 * errno; the error names path. */
int vka_st_write(const char *path, const struct vka_st_write_params *params);

/* A file read into memory and validated. */
struct vka_st_file {
    char *path;
    struct vka_st_tensor *tensors;     /* file order (by data offset); data aligned to the
                                          element size, never NULL */
    size_t n_tensors;
    struct vka_st_meta *meta;          /* header order, without VKA_ST_CRC_KEY */
    size_t n_meta;
    uint64_t header_len;               /* N */
    uint64_t data_len;                 /* bytes of the data buffer */
    bool checksummed;                  /* the file had VKA_ST_CRC_KEY and its data matched
                                          (files of other writers have none) */
    /* private */
    uint32_t crc_;
    void *buf_;
    const struct vka_st_tensor **by_name_; /* the tensors sorted by name */
};

/* Reads and validates path: a regular file (a FIFO or a device is refused before any
 * read); header length within the file and at most VKA_ST_MAX_HEADER; valid UTF-8; a JSON
 * object; no string holding \u0000; tensor names and metadata keys free of control
 * characters; every entry a known dtype, a shape of non-negative integers (at most
 * VKA_ST_MAX_DIMS), data_offsets [begin, end] with end - begin = numel * element size;
 * the tensors' data contiguous, non-overlapping and covering the data buffer exactly; no
 * duplicate names; "__metadata__" an object of strings; the data matching
 * VKA_ST_CRC_KEY when the file has it. On any violation *out stays NULL and a negative
 * errno returns (-EINVAL for a malformed or corrupt file) with a message naming the file
 * and the tensor. */
int vka_st_read(const char *path, struct vka_st_file **out);
void vka_st_file_destroy(struct vka_st_file **f);

/* The tensor called name, or NULL. */
const struct vka_st_tensor *vka_st_find(const struct vka_st_file *f, const char *name);
/* The metadata value of key, or NULL. */
const char *vka_st_meta_get(const struct vka_st_file *f, const char *key);

/* Checks that f holds exactly the expected tensors (name, dtype, shape; data ignored).
 * Reports the first expected tensor that is missing or has another dtype or shape (in
 * the order given), else the first tensor of the file not expected (in file order), by
 * name and with both shapes. Returns 0 or -EINVAL. */
int vka_st_check(const struct vka_st_file *f, const struct vka_st_tensor *expected,
                 size_t n_expected);

#endif
