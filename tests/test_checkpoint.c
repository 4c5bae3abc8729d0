/* Checkpoints: a run resumed from a checkpoint taken mid-window ends bitwise where the
 * uninterrupted run ends; weights round-trip in PyTorch's layouts; a checkpoint with a
 * missing, extra or misshapen tensor is refused by name and loads nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "common.h"
#include "models/unet.h"

enum { SIZE = 16, CLASSES = 3, B = 4, MICRO = 2, STEPS = 10 };

struct run {
    struct vka_graph *g;
    struct vka_unet net;
    int target, loss;
    struct vka_trainer *tr;
};

static void open_run(struct vka_ctx *ctx, struct run *r, uint64_t seed)
{
    cr_assert_eq(vka_graph_create(ctx, &(struct vka_graph_params){ .seed = seed }, &r->g), 0);
    struct vka_unet_params up = { .in_channels = 3, .classes = CLASSES, .depth = 2, .width = 8,
                                  .norm = VKA_UNET_GROUP, .groups = 4, .size = SIZE };
    cr_assert_eq(vka_unet_build(r->g, &up, &r->net), 0, "%s", vka_last_error());
    r->target = vka_graph_input(r->g, "mask", VKA_I32, VKA_LAYOUT_FLAT, 1, SIZE, SIZE);
    union vka_op_params ce = { .loss = { .ignore_index = 255, .scale = 1 } };
    r->loss = vka_graph_node(r->g, VKA_OP_cross_entropy, &ce, r->net.logits, r->target, -1);
    cr_assert_geq(r->loss, 0, "%s", vka_last_error());
    cr_assert_eq(vka_graph_alloc(r->g), 0, "%s", vka_last_error());
    struct vka_trainer_params tp = {
        .batch = B, .micro = MICRO, .optim = vka_optim_defaults(VKA_OPTIM_ADAMW, 1),
        .lr = { .kind = VKA_LR_COSINE, .lr = 1e-2, .t_max = 20 },
        .loss = r->loss, .inputs = { r->net.image, r->target }, .ninputs = 2,
    };
    cr_assert_eq(vka_trainer_create(r->g, &tp, &r->tr), 0, "%s", vka_last_error());
}

static void close_run(struct run *r)
{
    vka_trainer_destroy(&r->tr);
    vka_graph_destroy(&r->g);
}

static float *xs;
static int32_t *ts;

static void make_data(void)
{
    xs = test_rand_floats((size_t)STEPS * MICRO * 3 * SIZE * SIZE, -1, 1);
    ts = malloc(sizeof(int32_t) * STEPS * MICRO * SIZE * SIZE);
    for (int i = 0; i < STEPS * MICRO * SIZE * SIZE; i++)
        ts[i] = test_rand_range(0, 9) == 0 ? 255 : (int32_t)test_rand_range(0, CLASSES - 1);
}

static void micro_steps(struct run *r, int from, int to)
{
    for (int s = from; s < to; s++) {
        const void *in[2] = { xs + (size_t)s * MICRO * 3 * SIZE * SIZE,
                              ts + (size_t)s * MICRO * SIZE * SIZE };
        cr_assert_eq(vka_trainer_micro_step(r->tr, in, MICRO, NULL), 0, "%s", vka_last_error());
    }
}

static float *params_of(struct run *r, uint64_t *n)
{
    struct vka_tensor p = vka_graph_params_flat(r->g);
    *n = vka_tensor_stored(&p);
    float *h = malloc(*n * 4);
    cr_assert_eq(vka_buf_download(p.buf, 0, h, *n * 4), 0);
    return h;
}

Test(checkpoint, resume_mid_window_is_bit_exact)
{
    test_seed("checkpoint resume");
    make_data();
    char path[] = "/tmp/vkaccum-ckpt-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    struct vka_ctx *ctx = test_ctx();

    struct run a;
    open_run(ctx, &a, 3);
    micro_steps(&a, 0, STEPS);
    uint64_t n;
    float *want = params_of(&a, &n);
    struct vka_trainer_stats sa;
    vka_trainer_get_stats(a.tr, &sa);
    close_run(&a);

    /* 5 micro-steps (2 windows and half of the third), save, drop everything */
    struct run b;
    open_run(ctx, &b, 3);
    micro_steps(&b, 0, 5);
    int64_t extra_data[2] = { 42, 5 };
    struct vka_st_tensor extra = { .name = "train.loader", .dtype = VKA_ST_I64, .ndim = 1,
                                   .shape = { 2 }, .data = extra_data };
    cr_assert_eq(vka_ckpt_save(path, b.g, &b.tr, 1, &extra, 1, NULL, 0), 0, "%s", vka_last_error());
    close_run(&b);

    /* a fresh run with another initialisation resumes from the file */
    struct run c;
    open_run(ctx, &c, 99);
    struct vka_st_file *f;
    cr_assert_eq(vka_ckpt_load(path, c.g, &c.tr, 1, &f), 0, "%s", vka_last_error());
    const struct vka_st_tensor *lt = vka_st_find(f, "train.loader");
    cr_assert(lt && ((const int64_t *)lt->data)[0] == 42);
    vka_st_file_destroy(&f);
    struct vka_trainer_stats sc;
    vka_trainer_get_stats(c.tr, &sc);
    cr_assert_eq(sc.micro_steps, 5);
    cr_assert_eq(sc.window_samples, MICRO, "the open window's samples were not restored");
    micro_steps(&c, 5, STEPS);
    float *got = params_of(&c, &n);
    vka_trainer_get_stats(c.tr, &sc);
    cr_assert_eq(sc.opt_steps, sa.opt_steps);
    cr_assert_eq(memcmp(got, want, n * 4), 0, "resumed parameters differ");
    close_run(&c);
    free(want);
    free(got);
    free(xs);
    free(ts);
    unlink(path);
    test_ctx_done(&ctx);
}

Test(checkpoint, weights_round_trip_and_bad_files_are_refused)
{
    test_seed("checkpoint weights");
    char path[] = "/tmp/vkaccum-ckpt-XXXXXX", bad[] = "/tmp/vkaccum-bad-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    fd = mkstemp(bad);
    close(fd);
    struct vka_ctx *ctx = test_ctx();
    struct run a, b;
    open_run(ctx, &a, 1);
    open_run(ctx, &b, 2);
    cr_assert_eq(vka_ckpt_save(path, a.g, NULL, 0, NULL, 0, NULL, 0), 0, "%s", vka_last_error());

    /* PyTorch's shapes: conv OIHW, transposed conv IOHW, the head's bias (C) */
    struct vka_st_file *f;
    cr_assert_eq(vka_st_read(path, &f), 0);
    const struct vka_st_tensor *w = vka_st_find(f, "enc.0.conv1.weight");
    cr_assert(w && w->ndim == 4 && w->shape[0] == 8 && w->shape[1] == 3 && w->shape[2] == 3);
    const struct vka_st_tensor *up = vka_st_find(f, "dec.0.up.weight");
    cr_assert(up && up->shape[0] == 32 && up->shape[1] == 16, "convT weight not IOHW"); /* 32 -> 16 */
    cr_assert(vka_st_find(f, "head.bias") && vka_st_find(f, "head.bias")->ndim == 1);
    cr_assert_null(vka_st_find(f, "train.grads"), "weights-only file holds training state");

    /* a copy with one tensor renamed, one dropped, one reshaped: each refused by name */
    static const char *cases[][2] = { { "head.bias", NULL }, { "head.bias", "head.extra" },
                                      { "enc.0.conv1.weight", "reshape" } };
    uint64_t n;
    float *before = params_of(&b, &n);
    for (int c = 0; c < 3; c++) {
        struct vka_st_tensor *t = calloc(f->n_tensors + 1, sizeof(*t));
        size_t k = 0;
        for (size_t i = 0; i < f->n_tensors; i++) {
            t[k] = f->tensors[i];
            if (!strcmp(t[k].name, cases[c][0])) {
                if (!cases[c][1])
                    continue;
                if (!strcmp(cases[c][1], "reshape")) {
                    t[k].shape[0] = 4;
                    t[k].shape[1] = 6;
                } else {
                    t[k].name = cases[c][1];
                }
            }
            k++;
        }
        cr_assert_eq(vka_st_write(bad, &(struct vka_st_write_params){
                         .tensors = t, .n_tensors = k }), 0);
        free(t);
        cr_assert_lt(vka_ckpt_load_weights(bad, b.g), 0);
        const char *want = c == 0 ? "head.bias is missing" : c == 1 ? "head.bias is missing"
                                                                   : "enc.0.conv1.weight";
        cr_assert(strstr(vka_last_error(), want), "case %d: %s", c, vka_last_error());
        cr_assert(strstr(vka_last_error(), bad), "the message does not name the file");
        float *after = params_of(&b, &n);
        cr_assert_eq(memcmp(before, after, n * 4), 0, "a refused file changed the weights");
        free(after);
    }
    free(before);
    vka_st_file_destroy(&f);

    /* the good file loads, and gives the same bits as the saved model */
    cr_assert_eq(vka_ckpt_load_weights(path, b.g), 0, "%s", vka_last_error());
    float *pa = params_of(&a, &n), *pb = params_of(&b, &n);
    cr_assert_eq(memcmp(pa, pb, n * 4), 0);
    free(pa);
    free(pb);
    close_run(&a);
    close_run(&b);
    unlink(path);
    unlink(bad);
    test_ctx_done(&ctx);
}

/* Every counter read back from a checkpoint is range-checked before anything changes: a
 * window pass past the trainer's passes once indexed out of bounds (UBSan), a window of
 * 10^6 samples underflowed the next micro-step's size. */
Test(checkpoint, out_of_range_counters_are_refused)
{
    test_seed("checkpoint counters");
    make_data();
    char path[] = "/tmp/vkaccum-ckpt-XXXXXX", bad[] = "/tmp/vkaccum-bad-XXXXXX";
    close(mkstemp(path));
    close(mkstemp(bad));
    struct vka_ctx *ctx = test_ctx();
    struct run a, b;
    open_run(ctx, &a, 1);
    micro_steps(&a, 0, 5); /* 2 windows and half of the third */
    cr_assert_eq(vka_ckpt_save(path, a.g, &a.tr, 1, NULL, 0, NULL, 0), 0, "%s", vka_last_error());
    struct vka_st_file *f;
    cr_assert_eq(vka_st_read(path, &f), 0);
    const struct vka_st_tensor *ct = vka_st_find(f, "train.counters");
    cr_assert(ct && ct->dtype == VKA_ST_I64 && ct->shape[0] == 10);
    int64_t good[10];
    memcpy(good, ct->data, sizeof(good));
    vka_st_file_destroy(&f);
    cr_assert_eq(good[5], MICRO, "window_samples is counter 5");

    open_run(ctx, &b, 2);
    uint64_t n;
    float *before = params_of(&b, &n);
    struct vka_trainer_stats sb0;
    vka_trainer_get_stats(b.tr, &sb0);
    /* counter index, bad value, what the message must say */
    static const struct { int i; int64_t v; const char *want; } cases[] = {
        { 9, 4294967295LL, "pass" },         /* window_pass: the UBSan report */
        { 9, -1, "out of range" },
        { 9, 1, "pass 1 of a trainer of 1" },
        { 5, 1000000, "1000000 samples" },   /* window_samples */
        { 5, B, "holds 4 samples" },
        { 6, 0, "micro-steps" },             /* samples in the window but no micro-step */
        { 2, 7, "do not fit" },              /* more skipped steps than steps */
        { 7, 5, "optimizer" },               /* more optimizer steps than windows */
        { 0, -3, "out of range" },
    };
    uint64_t ten = 10;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        int64_t v[10];
        memcpy(v, good, sizeof(v));
        v[cases[c].i] = cases[c].v;
        test_st_replace(path, bad, "train.counters", VKA_ST_I64, 1, &ten, v);
        cr_assert_lt(vka_ckpt_load(bad, b.g, &b.tr, 1, NULL), 0, "case %zu was loaded", c);
        cr_assert(strstr(vka_last_error(), "train.counters") &&
                  strstr(vka_last_error(), cases[c].want) && strstr(vka_last_error(), bad),
                  "case %zu: %s", c, vka_last_error());
        float *after = params_of(&b, &n);
        cr_assert_eq(memcmp(before, after, n * 4), 0, "case %zu changed the weights", c);
        free(after);
        struct vka_trainer_stats sb;
        vka_trainer_get_stats(b.tr, &sb);
        cr_assert_eq(sb.micro_steps, sb0.micro_steps, "case %zu changed the counters", c);
    }
    /* the unchanged counters still load */
    test_st_replace(path, bad, "train.counters", VKA_ST_I64, 1, &ten, good);
    cr_assert_eq(vka_ckpt_load(bad, b.g, &b.tr, 1, NULL), 0, "%s", vka_last_error());
    free(before);
    close_run(&a);
    close_run(&b);
    free(xs);
    free(ts);
    unlink(path);
    unlink(bad);
    test_ctx_done(&ctx);
}

/* A BatchNorm model saves and loads its running statistics and num_batches_tracked (a
 * 0-dimensional tensor: its shape pointer is NULL, which memcpy must never be given;
 * UBSan caught that on every BatchNorm save). This file also runs under ASan/UBSan. */
Test(checkpoint, batchnorm_state_round_trips)
{
    test_seed("checkpoint batchnorm");
    char path[] = "/tmp/vkaccum-ckpt-XXXXXX";
    close(mkstemp(path));
    struct vka_ctx *ctx = test_ctx();
    struct vka_graph *g[2];
    struct vka_unet net[2];
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(vka_graph_create(ctx, &(struct vka_graph_params){ .seed = 5u + i }, &g[i]), 0);
        struct vka_unet_params up = { .in_channels = 3, .classes = CLASSES, .depth = 1,
                                      .width = 4, .norm = VKA_UNET_BATCH, .size = 8 };
        cr_assert_eq(vka_unet_build(g[i], &up, &net[i]), 0, "%s", vka_last_error());
        cr_assert_eq(vka_graph_alloc(g[i]), 0, "%s", vka_last_error());
    }
    int bn = -1;
    for (uint32_t i = 0; i < vka_graph_nvals(g[0]) && bn < 0; i++)
        if (strstr(vka_graph_val(g[0], (int)i)->name, "running_mean"))
            bn = (int)i;
    cr_assert_geq(bn, 0, "the model has no BatchNorm");
    vka_graph_set_batches(g[0], bn, 7);
    cr_assert_eq(vka_ckpt_save(path, g[0], NULL, 0, NULL, 0, NULL, 0), 0, "%s", vka_last_error());
    cr_assert_eq(vka_ckpt_load_weights(path, g[1]), 0, "%s", vka_last_error());
    cr_assert_eq(vka_graph_val(g[1], bn)->batches, 7, "num_batches_tracked was not restored");
    for (int i = 0; i < 2; i++)
        vka_graph_destroy(&g[i]);
    unlink(path);
    test_ctx_done(&ctx);
}
