/* Fuzz target "safetensors": the checkpoint reader (vka_st_read, src/safetensors.c, with
 * cJSON for the header) on one file of the fuzzer's bytes. A file that reads is then
 * looked up (vka_st_find, vka_st_meta_get), checked against its own tensor list
 * (vka_st_check), written back with vka_st_write into the temporary folder and read
 * again.
 *
 * Invariants: every tensor's data pointer holds its byte count, readable, aligned to its
 * element size; each name finds its own tensor; the file passes vka_st_check against
 * itself; and what the reader accepts, the writer writes and the reader reads back
 * with the same names, dtypes, shapes, data and metadata. */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "safetensors.h"

static const char *path, *rt_path;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_setup();
    path = fuzz_path("in.safetensors");
    rt_path = fuzz_path("rt.safetensors");
    return 0;
}

static void same_files(const struct vka_st_file *a, const struct vka_st_file *b)
{
    /* the writer orders tensors by element size (largest first), the reader by offset:
     * compare by name */
    if (a->n_tensors != b->n_tensors || a->n_meta != b->n_meta)
        fuzz_fail("round trip: %zu tensors and %zu metadata, back %zu and %zu", a->n_tensors,
                  a->n_meta, b->n_tensors, b->n_meta);
    for (size_t i = 0; i < a->n_tensors; i++) {
        const struct vka_st_tensor *t = &a->tensors[i], *u = vka_st_find(b, t->name);
        uint64_t nb;
        if (!u || u->dtype != t->dtype || u->ndim != t->ndim ||
            memcmp(u->shape, t->shape, t->ndim * sizeof(t->shape[0])) ||
            vka_st_nbytes(t, &nb) || memcmp(u->data, t->data, (size_t)nb))
            fuzz_fail("round trip: tensor '%s' differs", t->name);
    }
    for (size_t i = 0; i < a->n_meta; i++) {
        const char *v = vka_st_meta_get(b, a->meta[i].key);
        if (!v || strcmp(v, a->meta[i].value))
            fuzz_fail("round trip: metadata '%s' differs", a->meta[i].key);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vka_st_file *f = NULL, *g = NULL;
    fuzz_write(path, data, size);
    if (vka_st_read(path, &f)) {
        if (f)
            fuzz_fail("a failed read returned a file: %s", vka_last_error());
        return 0;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const struct vka_st_tensor *t = &f->tensors[i];
        uint64_t nb;
        size_t es = vka_st_dtype_size(t->dtype);
        if (!t->data || !es || (uintptr_t)t->data % es || vka_st_nbytes(t, &nb))
            fuzz_fail("tensor '%s': data %p, element size %zu", t->name, t->data, es);
        volatile uint32_t sum = fuzz_touch(t->data, (size_t)nb);
        (void)sum;
        total += nb;
        if (vka_st_find(f, t->name) != t)
            fuzz_fail("tensor '%s' does not find itself", t->name);
    }
    if (total != f->data_len)
        fuzz_fail("tensors hold %llu bytes, the data buffer %llu", (unsigned long long)total,
                  (unsigned long long)f->data_len);
    for (size_t i = 0; i < f->n_meta; i++)
        if (!vka_st_meta_get(f, f->meta[i].key))
            fuzz_fail("metadata '%s' does not find itself", f->meta[i].key);
    if (vka_st_check(f, f->tensors, f->n_tensors))
        fuzz_fail("the file fails vka_st_check against itself: %s", vka_last_error());
    struct vka_st_write_params wp = { .tensors = f->tensors, .n_tensors = f->n_tensors,
                                      .meta = f->meta, .n_meta = f->n_meta };
    if (vka_st_write(rt_path, &wp))
        fuzz_fail("a file the reader accepts cannot be written: %s", vka_last_error());
    if (vka_st_read(rt_path, &g))
        fuzz_fail("a written file does not read back: %s", vka_last_error());
    same_files(f, g);
    vka_st_file_destroy(&g);
    vka_st_file_destroy(&f);
    return 0;
}
