/* Fuzz target "idx": the IDX reader (datasets/idx.c, zlib's gz* API: a gzip file or a
 * plain one, told apart by its bytes) on one file of the fuzzer's bytes, through
 * vka_idx_open, the IDX image source of the GAN datasets, which reads the file with
 * vka_idx_read_err and then asks for (N, H, W) or (N, H, W, 1 | 3). The reader's own cap
 * bounds the work: the dims may promise at most what a file of the input's size can
 * hold (1032 bytes per gzip byte).
 *
 * Invariants: a file read has 1..4 non-zero dims whose product is at most 1 GiB and its
 * data holds that many readable bytes; an opened source has the dims it reports. */
#include <string.h>

#include "common.h"
#include "datasets/internal.h"

static const char *path;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_setup();
    path = fuzz_path("in.idx.gz");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[VKA_ERRLEN];
    struct vka_dataset ds;
    memset(&ds, 0, sizeof(ds));
    fuzz_write(path, data, size);
    int ret = vka_idx_open(&ds, path, err);
    const struct vka_idx *x = &ds.idx;
    if (x->data) {
        uint64_t n = 1;
        if (x->ndim < 1 || x->ndim > 4)
            fuzz_fail("IDX of %u dims", x->ndim);
        for (uint32_t i = 0; i < x->ndim; i++) {
            if (!x->dims[i])
                fuzz_fail("IDX dim %u is zero", i);
            n *= x->dims[i];
            if (n > (1ull << 30))
                fuzz_fail("IDX dims promise more than 1 GiB");
        }
        volatile uint32_t sum = fuzz_touch(x->data, (size_t)n);
        (void)sum;
    }
    if (ret == 0 && (x->ndim < 3 || ds.count != x->dims[0] || ds.height != x->dims[1] ||
                     ds.width != x->dims[2] || (ds.channels != 1 && ds.channels != 3)))
        fuzz_fail("IDX source %u x %u x %u x %u from %u dims", ds.count, ds.height, ds.width,
                  ds.channels, x->ndim);
    vka_idx_free(&ds.idx);
    return 0;
}
