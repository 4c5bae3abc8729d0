/* The accumulation engine: k micro-batches of b give the gradient and the update of one
 * batch of k*b bit for bit (a small U-Net-like graph with GroupNorm and cross-entropy
 * with unevenly ignored pixels), peak memory follows the micro-batch, not the batch. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "datasets_files.h"
#include "exact.h"
#include "train.h"

enum { B = 8, C_IN = 3, HW = 12, CLASSES = 5 };

struct net {
    struct vka_graph *g;
    int x, target, logits, loss;
};

/* GroupNorm, or BatchNorm (its statistics are the micro-batch's: recomputation, not
 * splits, keeps its bits) */
static void build_mode(struct vka_ctx *ctx, struct net *n, enum vka_recompute mode, bool bn,
                       bool exact)
{
    cr_assert_eq(vka_graph_create(ctx, &(struct vka_graph_params){ .seed = 7 }, &n->g), 0);
    struct vka_graph *g = n->g;
    vka_graph_set_recompute(g, mode);
    cr_assert_eq(vka_graph_set_exact(g, exact), 0);
    n->x = vka_graph_input(g, "image", VKA_F32, VKA_LAYOUT_NHWC4, C_IN, HW, HW);
    n->target = vka_graph_input(g, "mask", VKA_I32, VKA_LAYOUT_FLAT, 1, HW, HW);
    cr_assert_eq(vka_graph_mark(g, VKA_MARK_BLOCK, "enc"), 0);
    int h = vka_layer_conv2d(g, "enc.0", n->x, 8, 3, 1, 1, true);
    h = bn ? vka_layer_batch_norm(g, "enc.1", h) : vka_layer_group_norm(g, "enc.1", h, 4);
    int skip = vka_layer_act(g, VKA_OP_relu, h, 0);
    union vka_op_params pool = { .pool = { 2, 2, 0 } };
    cr_assert_eq(vka_graph_mark(g, VKA_MARK_BLOCK, "mid"), 0);
    h = vka_graph_node(g, VKA_OP_max_pool2d, &pool, skip, -1, -1);
    h = vka_layer_conv2d(g, "mid.0", h, 16, 3, 1, 1, false);
    h = bn ? vka_layer_batch_norm(g, "mid.1", h) : vka_layer_group_norm(g, "mid.1", h, 8);
    h = vka_layer_act(g, VKA_OP_leaky_relu, h, 0.1f);
    cr_assert_eq(vka_graph_mark(g, VKA_MARK_BLOCK, "dec"), 0);
    h = vka_layer_conv_transpose2d(g, "up", h, 8, 2, 2, 0, 0, true);
    h = vka_graph_node(g, VKA_OP_concat, NULL, h, skip, -1);
    h = vka_layer_conv2d(g, "dec.0", h, 8, 3, 1, 1, true);
    h = vka_layer_act(g, VKA_OP_tanh, h, 0);
    n->logits = vka_layer_conv2d(g, "head", h, CLASSES, 3, 1, 1, true);
    union vka_op_params ce = { .loss = { .ignore_index = 255, .scale = 1.0f } };
    n->loss = vka_graph_node(g, VKA_OP_cross_entropy, &ce, n->logits, n->target, -1);
    cr_assert_geq(n->loss, 0, "%s", vka_last_error());
    cr_assert_eq(vka_graph_alloc(g), 0, "%s", vka_last_error());
}

static void build_norm(struct vka_ctx *ctx, struct net *n, enum vka_recompute mode, bool bn)
{
    build_mode(ctx, n, mode, bn, false);
}

static void build(struct vka_ctx *ctx, struct net *n)
{
    build_norm(ctx, n, VKA_RECOMPUTE_NONE, false);
}

/* B samples; ignored pixels spread unevenly: sample i has about i * 10 % ignored */
static void data(float **x, int32_t **t)
{
    *x = test_rand_floats((size_t)B * C_IN * HW * HW, -1, 1);
    *t = malloc(sizeof(int32_t) * B * HW * HW);
    for (int i = 0; i < B; i++)
        for (int p = 0; p < HW * HW; p++)
            (*t)[i * HW * HW + p] = test_rand_range(0, 99) < (uint32_t)i * 10
                                        ? 255 : (int32_t)test_rand_range(0, CLASSES - 1);
}

static float *download_all(const struct vka_tensor *t)
{
    uint64_t n = vka_tensor_stored(t);
    float *h = malloc(n * 4);
    cr_assert_eq(vka_buf_download(t->buf, t->off * 4, h, n * 4), 0);
    return h;
}

static const int splits[4][9] = { { 8 }, { 2, 2, 2, 2 }, { 1, 1, 1, 1, 1, 1, 1, 1 },
                                  { 3, 3, 2 } };

Test(train, window_gradient_is_bitwise_the_same_for_any_split)
{
    test_seed("train split");
    float *x;
    int32_t *t;
    data(&x, &t);
    struct vka_ctx *ctx = test_ctx();
    float *ref_grads = NULL, ref_loss[2];
    uint64_t ngrads = 0;
    /* every split under every recompute mode: the same bits as the whole batch */
    for (int run = 0; run < 4 * 3; run++) {
        int sp = run % 4;
        struct net n;
        build_norm(ctx, &n, (enum vka_recompute)(run / 4), false);
        int at = 0;
        for (int k = 0; k < 9 && splits[sp][k]; k++) {
            int b = splits[sp][k];
            struct vka_plan *plan;
            cr_assert_eq(vka_graph_plan(n.g, b, true, &plan), 0, "%s", vka_last_error());
            struct vka_tensor tx = vka_plan_tensor(plan, n.x), tt = vka_plan_tensor(plan, n.target);
            cr_assert_eq(vka_tensor_upload(&tx, x + (size_t)at * C_IN * HW * HW), 0);
            cr_assert_eq(vka_tensor_upload(&tt, t + (size_t)at * HW * HW), 0);
            cr_assert_eq(vka_plan_run(plan), 0, "%s", vka_last_error());
            at += b;
        }
        struct vka_tensor grads = vka_graph_grads_flat(n.g);
        struct vka_tensor loss = vka_graph_tensor(n.g, n.loss);
        float *gr = download_all(&grads), lo[2];
        cr_assert_eq(vka_tensor_download(&loss, lo), 0);
        if (run == 0) {
            ref_grads = gr;
            ngrads = vka_tensor_stored(&grads);
            memcpy(ref_loss, lo, sizeof(lo));
            /* the count is the number of valid pixels of the whole batch */
            int valid = 0;
            for (int i = 0; i < B * HW * HW; i++)
                valid += t[i] != 255;
            cr_assert_eq(lo[1], (float)valid, "count %g, valid pixels %d", lo[1], valid);
            double gsum = 0;
            for (uint64_t i = 0; i < ngrads; i++)
                gsum += fabs(gr[i]);
            cr_assert_gt(gsum, 0, "no gradient at all");
        } else {
            cr_assert_eq(memcmp(lo, ref_loss, sizeof(lo)), 0,
                         "split %d, recompute %d: loss sum/count %a/%a vs %a/%a", sp, run / 4,
                         lo[0], lo[1], ref_loss[0], ref_loss[1]);
            for (uint64_t i = 0; i < ngrads; i++)
                if (memcmp(&gr[i], &ref_grads[i], 4))
                    cr_assert_fail("split %d, recompute %d: gradient element %llu is %a, "
                                   "whole batch %a", sp, run / 4, (unsigned long long)i,
                                   gr[i], ref_grads[i]);
            free(gr);
        }
        vka_graph_destroy(&n.g);
    }
    free(ref_grads);
    free(x);
    free(t);
    test_ctx_done(&ctx);
}

typedef void (*net_builder)(struct vka_ctx *ctx, struct net *n, enum vka_recompute mode);

static void build_bn(struct vka_ctx *ctx, struct net *n, enum vka_recompute mode)
{
    build_norm(ctx, n, mode, true);
}

/* got and ref, n values of mode_window, bit for bit; what names the case and the
 * reference. Frees got. */
static void same_bits(float *got, const float *ref, uint64_t n, const char *what)
{
    for (uint64_t i = 0; i < n; i++)
        if (memcmp(&got[i], &ref[i], 4))
            cr_assert_fail("%s: value %llu of %llu (gradients, running statistics, loss) is "
                           "%a, %a", what, (unsigned long long)i, (unsigned long long)n,
                           got[i], ref[i]);
    free(got);
}

/* Gradients, loss and (BatchNorm) running statistics after micro-batches of split (a
 * zero-ended list) with the net of build under a recompute mode; *mem is the plan's. */
static float *mode_window(struct vka_ctx *ctx, net_builder build, const int *split,
                          enum vka_recompute mode, const float *x, const int32_t *t,
                          uint64_t *count, struct vka_plan_mem *mem)
{
    struct net n;
    build(ctx, &n, mode);
    cr_assert_eq(vka_graph_plan_mem(n.g, 0, (uint32_t)split[0], true, mem), 0, "%s",
                 vka_last_error());
    for (int k = 0, at = 0; split[k]; at += split[k++]) {
        struct vka_plan *plan;
        cr_assert_eq(vka_graph_plan(n.g, (uint32_t)split[k], true, &plan), 0, "%s",
                     vka_last_error());
        struct vka_tensor tx = vka_plan_tensor(plan, n.x), tt = vka_plan_tensor(plan, n.target);
        cr_assert_eq(vka_tensor_upload(&tx, x + (size_t)at * C_IN * HW * HW), 0);
        cr_assert_eq(vka_tensor_upload(&tt, t + (size_t)at * HW * HW), 0);
        cr_assert_eq(vka_plan_run(plan), 0, "%s", vka_last_error());
    }
    struct vka_tensor grads = vka_graph_grads_flat(n.g), state = { 0 };
    struct vka_tensor loss = vka_graph_tensor(n.g, n.loss);
    bool has_state = vka_graph_span(n.g, VKA_VAL_STATE, "", &state) == 0;
    uint64_t ng = vka_tensor_stored(&grads), ns = has_state ? vka_tensor_stored(&state) : 0;
    float *all = malloc((ng + ns + 2) * 4), *gr = download_all(&grads);
    memcpy(all, gr, ng * 4);
    if (has_state) {
        float *st = download_all(&state);
        memcpy(all + ng, st, ns * 4);
        free(st);
    }
    cr_assert_eq(vka_tensor_download(&loss, all + ng + ns), 0);
    *count = ng + ns + 2;
    free(gr);
    vka_graph_destroy(&n.g);
    return all;
}

/* One block of CHAIN layers conv3x3 -> GroupNorm -> ReLU of equal size, then a head
 * outside it: the U-Net's double convolution made longer. */
enum { CHAIN = 5 };
static int chain_conv[CHAIN], chain_norm[CHAIN], chain_relu[CHAIN]; /* build_chain's values */
static bool chain_fused; /* build_chain's ReLUs are its norms' (vka_layer_norm_act) */

static void build_chain(struct vka_ctx *ctx, struct net *n, enum vka_recompute mode)
{
    cr_assert_eq(vka_graph_create(ctx, &(struct vka_graph_params){ .seed = 11 }, &n->g), 0);
    struct vka_graph *g = n->g;
    vka_graph_set_recompute(g, mode);
    n->x = vka_graph_input(g, "image", VKA_F32, VKA_LAYOUT_NHWC4, C_IN, HW, HW);
    n->target = vka_graph_input(g, "mask", VKA_I32, VKA_LAYOUT_FLAT, 1, HW, HW);
    cr_assert_eq(vka_graph_mark(g, VKA_MARK_BLOCK, "chain"), 0);
    int h = n->x;
    for (int i = 0; i < CHAIN; i++) {
        char name[32];
        snprintf(name, sizeof(name), "chain.%d.conv", i);
        h = chain_conv[i] = vka_layer_conv2d(g, name, h, 16, 3, 1, 1, false);
        snprintf(name, sizeof(name), "chain.%d.norm", i);
        h = chain_norm[i] = vka_layer_group_norm(g, name, h, 4);
        h = chain_relu[i] = chain_fused ? vka_layer_norm_act(g, h, VKA_OP_relu, 0)
                                        : vka_layer_act(g, VKA_OP_relu, h, 0);
        cr_assert_geq(h, 0, "%s", vka_last_error());
    }
    cr_assert_eq(vka_graph_mark(g, VKA_MARK_BLOCK, "head"), 0);
    n->logits = vka_layer_conv2d(g, "head", h, CLASSES, 1, 1, 0, true);
    union vka_op_params ce = { .loss = { .ignore_index = 255, .scale = 1.0f } };
    n->loss = vka_graph_node(g, VKA_OP_cross_entropy, &ce, n->logits, n->target, -1);
    cr_assert_geq(n->loss, 0, "%s", vka_last_error());
    cr_assert_eq(vka_graph_alloc(g), 0, "%s", vka_last_error());
}

/* Inside a block, each layer's backward makes again only what it reads, and lets it go
 * after (a norm only its statistics when nothing reads its output again): a block of 5
 * layers then keeps less than keeping every layer's input (all), and all of it is the
 * same bits. Making the block whole again before its first backward
 * would keep every layer's values at once: more than all. */
Test(train, recomputation_inside_a_block_goes_layer_by_layer)
{
    test_seed("train nested recompute");
    float *x;
    int32_t *t;
    data(&x, &t);
    struct vka_ctx *ctx = test_ctx();
    static const int split[] = { 3, 3, 2, 0 };
    uint64_t n0, n;
    struct vka_plan_mem m[3];
    float *ref = mode_window(ctx, build_chain, split, VKA_RECOMPUTE_NONE, x, t, &n0, &m[0]);
    for (int mode = VKA_RECOMPUTE_BLOCKS; mode <= VKA_RECOMPUTE_ALL; mode++) {
        float *got = mode_window(ctx, build_chain, split, (enum vka_recompute)mode, x, t, &n,
                                 &m[mode]);
        cr_assert_eq(n, n0);
        same_bits(got, ref, n, test_path("recompute %d, against none", mode));
    }
    /* one activation of the chain at micro-batch 3: 16 channels of HW x HW */
    uint64_t act = 3ull * 16 * HW * HW * 4;
    cr_assert_lt(m[VKA_RECOMPUTE_BLOCKS].live_peak + act, m[VKA_RECOMPUTE_ALL].live_peak,
                 "blocks keeps %llu bytes at the peak, all %llu (one activation: %llu)",
                 (unsigned long long)m[VKA_RECOMPUTE_BLOCKS].live_peak,
                 (unsigned long long)m[VKA_RECOMPUTE_ALL].live_peak, (unsigned long long)act);
    /* the first layers are made again for each later layer's backward */
    cr_assert_gt(m[VKA_RECOMPUTE_BLOCKS].recomputed, 2u * CHAIN * 3,
                 "blocks ran %u ops again", m[VKA_RECOMPUTE_BLOCKS].recomputed);
    /* a norm writes its input's gradient over its output's (ops.def INPLACE_DX) and a ReLU
     * its output over its input (INPLACE_Y), in every mode: the bits above are those of the
     * op tests' in-place checks */
    for (int mode = VKA_RECOMPUTE_NONE; mode <= VKA_RECOMPUTE_ALL; mode++) {
        struct net net;
        struct vka_plan *plan;
        build_chain(ctx, &net, (enum vka_recompute)mode);
        cr_assert_eq(vka_graph_plan(net.g, 3, true, &plan), 0, "%s", vka_last_error());
        for (int i = 0; i < CHAIN; i++) {
            struct vka_tensor dx = vka_plan_grad(plan, chain_conv[i]);
            struct vka_tensor dy = vka_plan_grad(plan, chain_norm[i]);
            cr_assert(dx.buf && dx.buf == dy.buf && dx.off == dy.off,
                      "recompute %d: layer %d's norm has its input gradient at %llu, its "
                      "output gradient at %llu", mode, i, (unsigned long long)dx.off,
                      (unsigned long long)dy.off);
            struct vka_tensor x = vka_plan_tensor(plan, chain_norm[i]);
            struct vka_tensor y = vka_plan_tensor(plan, chain_relu[i]);
            cr_assert(x.buf && x.buf == y.buf && x.off == y.off, "recompute %d: layer %d's "
                      "ReLU reads %llu and writes %llu", mode, i, (unsigned long long)x.off,
                      (unsigned long long)y.off);
        }
        vka_graph_destroy(&net.g);
    }
    free(ref);
    free(x);
    free(t);
    test_ctx_done(&ctx);
}

/* A ReLU fused into its GroupNorm (vka_layer_norm_act) gives the bits of the two ops, in
 * every recompute mode, and its plan keeps no activation longer than theirs in the same
 * mode (its backward computes the mask again from what the norm's backward reads anyway;
 * that it reads no y, which a block's recomputation would keep alive, the op tests check
 * by poisoning y); what cannot be fused is refused. */
Test(train, a_norm_with_its_activation_fused_keeps_the_bits)
{
    test_seed("train fused activation");
    float *x;
    int32_t *t;
    data(&x, &t);
    struct vka_ctx *ctx = test_ctx();
    static const int split[] = { 3, 3, 2, 0 };
    uint64_t n0, n;
    struct vka_plan_mem m0, m;
    chain_fused = false;
    float *ref = mode_window(ctx, build_chain, split, VKA_RECOMPUTE_NONE, x, t, &n0, &m0);
    for (int mode = VKA_RECOMPUTE_NONE; mode <= VKA_RECOMPUTE_ALL; mode++) {
        chain_fused = false;
        if (mode != VKA_RECOMPUTE_NONE)
            free(mode_window(ctx, build_chain, split, (enum vka_recompute)mode, x, t, &n0, &m0));
        chain_fused = true;
        float *got = mode_window(ctx, build_chain, split, (enum vka_recompute)mode, x, t, &n, &m);
        cr_assert_eq(n, n0);
        same_bits(got, ref, n, test_path("recompute %d, fused against a ReLU node", mode));
        /* no activation kept longer: less than the smallest (a micro-batch of 2) more.
         * What may differ is a few floats: where a block's input is a norm's output, the
         * norm is not run again, so its statistics (N*G floats) stay from the forward */
        uint64_t act = 2ull * 16 * HW * HW * 4;
        cr_assert_lt(m.live_peak, m0.live_peak + act,
                     "recompute %d: fused, %llu bytes at the peak, %llu not", mode,
                     (unsigned long long)m.live_peak, (unsigned long long)m0.live_peak);
    }
    chain_fused = false;

    struct vka_graph *g;
    cr_assert_eq(vka_graph_create(ctx, &(struct vka_graph_params){ .seed = 1 }, &g), 0);
    int in = vka_graph_input(g, "image", VKA_F32, VKA_LAYOUT_NHWC4, C_IN, HW, HW);
    int c = vka_layer_conv2d(g, "conv", in, 8, 3, 1, 1, false);
    vka_clear_error();
    cr_assert_eq(vka_layer_norm_act(g, c, VKA_OP_relu, 0), -EINVAL);
    cr_assert(strstr(vka_last_error(), "not the output of the last node, a batch_norm or "
                                       "group_norm without an activation"), "%s",
              vka_last_error());
    int h = vka_layer_group_norm(g, "norm", c, 4);
    cr_assert_eq(vka_layer_norm_act(g, h, VKA_OP_tanh, 0), -EINVAL);
    cr_assert(strstr(vka_last_error(), "tanh (slope 0) cannot be fused into group_norm"), "%s",
              vka_last_error());
    cr_assert_eq(vka_layer_norm_act(g, h, VKA_OP_leaky_relu, 1.5f), -EINVAL);
    cr_assert_eq(vka_layer_norm_act(g, h, VKA_OP_leaky_relu, 0.2f), h, "%s", vka_last_error());
    cr_assert_eq(vka_layer_norm_act(g, h, VKA_OP_relu, 0), -EINVAL, "fused twice");
    vka_graph_destroy(&g);
    free(ref);
    free(x);
    free(t);
    test_ctx_done(&ctx);
}

/* Recomputation runs forward ops again (a BatchNorm without touching its running
 * statistics) and keeps less alive at the peak, for the same bits. */
Test(train, recomputation_keeps_less_and_changes_no_bits)
{
    test_seed("train recompute");
    float *x;
    int32_t *t;
    data(&x, &t);
    struct vka_ctx *ctx = test_ctx();
    static const int bn_splits[2][4] = { { 8 }, { 3, 3, 2 } };
    for (int sp = 0; sp < 2; sp++) {
        uint64_t n0, n;
        struct vka_plan_mem m0, m;
        float *ref = mode_window(ctx, build_bn, bn_splits[sp], VKA_RECOMPUTE_NONE, x, t, &n0, &m0);
        cr_assert_eq(m0.recomputed, 0);
        for (int mode = VKA_RECOMPUTE_BLOCKS; mode <= VKA_RECOMPUTE_ALL; mode++) {
            float *got = mode_window(ctx, build_bn, bn_splits[sp], (enum vka_recompute)mode, x, t,
                                     &n, &m);
            cr_assert_eq(n, n0);
            same_bits(got, ref, n, test_path("split %d, recompute %d, against none", sp, mode));
            cr_assert_gt(m.recomputed, 0, "recompute %d ran no op again", mode);
            cr_assert_lt(m.live_peak, m0.live_peak, "recompute %d keeps %llu bytes at the "
                         "peak, none %llu", mode, (unsigned long long)m.live_peak,
                         (unsigned long long)m0.live_peak);
        }
        free(ref);
    }
    free(x);
    free(t);
    test_ctx_done(&ctx);
}

/* The trainer over 3 windows of Adam: the parameters are bitwise equal for every split,
 * and the window loss is the mean over the window's valid pixels. */
Test(train, adam_steps_are_bitwise_the_same_for_any_split)
{
    test_seed("train adam");
    float *x[3];
    int32_t *t[3];
    for (int w = 0; w < 3; w++)
        data(&x[w], &t[w]);
    struct vka_ctx *ctx = test_ctx();
    float *ref = NULL;
    double ref_loss[3];
    for (int sp = 0; sp < 4; sp++) {
        struct net n;
        build(ctx, &n);
        struct vka_trainer_params tp = {
            .batch = B, .micro = (uint32_t)splits[sp][0],
            .optim = vka_optim_defaults(VKA_OPTIM_ADAM, 1),
            .lr = { .kind = VKA_LR_CONSTANT, .lr = 1e-2 },
            .loss = n.loss, .inputs = { n.x, n.target }, .ninputs = 2,
        };
        struct vka_trainer *tr;
        cr_assert_eq(vka_trainer_create(n.g, &tp, &tr), 0, "%s", vka_last_error());
        for (int w = 0; w < 3; w++) {
            int at = 0;
            bool stepped = false;
            while (!stepped) {
                uint32_t b = vka_trainer_next_size(tr);
                const void *in[2] = { x[w] + (size_t)at * C_IN * HW * HW, t[w] + (size_t)at * HW * HW };
                cr_assert_eq(vka_trainer_micro_step(tr, in, b, &stepped), 0, "%s", vka_last_error());
                at += b;
            }
            cr_assert_eq(at, B);
            struct vka_trainer_stats st;
            vka_trainer_get_stats(tr, &st);
            cr_assert_eq(st.opt_steps, (uint64_t)w + 1);
            cr_assert_eq(st.window_samples, 0);
            if (sp == 0)
                ref_loss[w] = st.loss;
            else
                cr_assert_eq(st.loss, ref_loss[w], "split %d window %d: loss %.9g vs %.9g",
                             sp, w, st.loss, ref_loss[w]);
            cr_assert(isfinite(st.loss) && st.loss > 0);
        }
        struct vka_tensor params = vka_graph_params_flat(n.g);
        float *p = download_all(&params);
        if (sp == 0)
            ref = p;
        else {
            cr_assert_eq(memcmp(p, ref, vka_tensor_stored(&params) * 4), 0,
                         "split %d: parameters differ after 3 Adam steps", sp);
            free(p);
        }
        vka_trainer_destroy(&tr);
        vka_graph_destroy(&n.g);
    }
    free(ref);
    for (int w = 0; w < 3; w++) {
        free(x[w]);
        free(t[w]);
    }
    test_ctx_done(&ctx);
}

static uint64_t peak_for(uint32_t batch, uint32_t micro)
{
    struct vka_ctx *ctx = test_ctx();
    struct net n;
    build(ctx, &n);
    float *x;
    int32_t *t;
    data(&x, &t);
    struct vka_trainer_params tp = {
        .batch = batch, .micro = micro, .optim = vka_optim_defaults(VKA_OPTIM_ADAM, 1),
        .lr = { .kind = VKA_LR_CONSTANT, .lr = 1e-3 },
        .loss = n.loss, .inputs = { n.x, n.target }, .ninputs = 2,
    };
    struct vka_trainer *tr;
    cr_assert_eq(vka_trainer_create(n.g, &tp, &tr), 0, "%s", vka_last_error());
    for (uint32_t done = 0; done < batch;) {
        uint32_t b = vka_trainer_next_size(tr);
        /* the same 8 samples over and over: only the sizes matter here */
        const void *in[2] = { x, t };
        cr_assert_eq(vka_trainer_micro_step(tr, in, b, NULL), 0, "%s", vka_last_error());
        done += b;
    }
    struct vka_mem_stats ms;
    vka_mem_get_stats(ctx, &ms);
    vka_trainer_destroy(&tr);
    vka_graph_destroy(&n.g);
    free(x);
    free(t);
    test_ctx_done(&ctx);
    return ms.total_peak;
}

Test(train, peak_memory_follows_the_micro_batch)
{
    test_seed("train memory");
    uint64_t b16 = peak_for(16, 2), b4 = peak_for(4, 2), m4 = peak_for(16, 4);
    cr_assert_eq(b16, b4, "peak %llu bytes for B=16 b=2, %llu for B=4 b=2",
                 (unsigned long long)b16, (unsigned long long)b4);
    cr_assert_gt(m4, b16, "peak %llu for b=4 is not above %llu for b=2",
                 (unsigned long long)m4, (unsigned long long)b16);
}

Test(train, bad_windows_are_refused)
{
    struct vka_ctx *ctx = test_ctx();
    struct net n;
    build(ctx, &n);
    struct vka_trainer_params tp = {
        .batch = 4, .micro = 8, .optim = vka_optim_defaults(VKA_OPTIM_SGD, 1),
        .lr = { .kind = VKA_LR_CONSTANT, .lr = 1e-3 },
        .loss = n.loss, .inputs = { n.x, n.target }, .ninputs = 2,
    };
    struct vka_trainer *tr;
    cr_assert_lt(vka_trainer_create(n.g, &tp, &tr), 0);
    cr_assert(strstr(vka_last_error(), "micro-batch 8 and batch 4"), "%s", vka_last_error());
    tp.micro = 3;
    tp.loss = n.logits;
    cr_assert_lt(vka_trainer_create(n.g, &tp, &tr), 0);
    vka_graph_destroy(&n.g);
    test_ctx_done(&ctx);
}

/* An epoch of 10 samples with B = 8, b = 3: the first window is 3+3+2, the epoch's last
 * window holds 2 samples and is stepped with its own count (or dropped with drop_last). */
Test(train, partial_last_window_is_stepped_with_its_count_or_dropped)
{
    test_seed("train partial");
    float *x;
    int32_t *t;
    data(&x, &t);
    struct vka_ctx *ctx = test_ctx();
    for (int drop = 0; drop < 2; drop++) {
        struct net n;
        build(ctx, &n);
        struct vka_trainer_params tp = {
            .batch = B, .micro = 3, .drop_last = drop,
            .optim = vka_optim_defaults(VKA_OPTIM_SGD, 1),
            .lr = { .kind = VKA_LR_CONSTANT, .lr = 1e-2 },
            .loss = n.loss, .inputs = { n.x, n.target }, .ninputs = 2,
        };
        struct vka_trainer *tr;
        cr_assert_eq(vka_trainer_create(n.g, &tp, &tr), 0, "%s", vka_last_error());
        uint32_t sizes[8], nsizes = 0, at = 0;
        bool stepped = false;
        while (at < 10) {
            uint32_t b = vka_trainer_next_size(tr);
            if (b > 10 - at)
                b = 10 - at;
            sizes[nsizes++] = b;
            /* the data holds 8 samples: the epoch's last two reuse the first two */
            const void *in[2] = { x + (size_t)(at % B) * C_IN * HW * HW, t + (size_t)(at % B) * HW * HW };
            cr_assert_eq(vka_trainer_micro_step(tr, in, b, &stepped), 0, "%s", vka_last_error());
            at += b;
        }
        cr_assert_eq(nsizes, 4);
        cr_assert(sizes[0] == 3 && sizes[1] == 3 && sizes[2] == 2 && sizes[3] == 2);
        struct vka_tensor params = vka_graph_params_flat(n.g);
        float *before = download_all(&params);
        cr_assert_eq(vka_trainer_end_epoch(tr, &stepped), 0, "%s", vka_last_error());
        struct vka_trainer_stats st;
        vka_trainer_get_stats(tr, &st);
        float *after = download_all(&params);
        bool moved = memcmp(before, after, vka_tensor_stored(&params) * 4) != 0;
        int valid = 0;
        for (int i = 0; i < 2 * HW * HW; i++)
            valid += t[i] != 255;
        if (!drop) {
            cr_assert(stepped && moved && st.opt_steps == 2, "the partial window was not stepped");
            cr_assert_eq(st.count, (double)valid, "count %g, the window's valid pixels %d",
                         st.count, valid);
        } else {
            cr_assert(!stepped && !moved && st.opt_steps == 1 && st.dropped_windows == 1,
                      "drop_last stepped the partial window");
        }
        cr_assert_eq(st.window_samples, 0);
        free(before);
        free(after);
        vka_trainer_destroy(&tr);
        vka_graph_destroy(&n.g);
    }
    free(x);
    free(t);
    test_ctx_done(&ctx);
}

Test(train, a_phase_runs_only_what_its_outputs_need)
{
    /* inference through a phase of the logits neither runs the loss (it would add into
     * the training accumulators) nor gives the targets a place in the arena */
    test_seed("train::a_phase_runs_only_what_its_outputs_need");
    struct vka_ctx *ctx = test_ctx();
    struct net n;
    build(ctx, &n);
    int predict = vka_graph_phase(n.g, &n.logits, 1, NULL);
    cr_assert_gt(predict, 0, "%s", vka_last_error());
    float *x;
    int32_t *t;
    data(&x, &t);
    struct vka_plan *full, *pred;
    cr_assert_eq(vka_graph_plan(n.g, 2, false, &full), 0, "%s", vka_last_error());
    cr_assert_eq(vka_graph_plan_phase(n.g, predict, 2, false, &pred), 0, "%s", vka_last_error());
    cr_assert_null(vka_plan_tensor(pred, n.target).buf, "the targets have an arena slot");
    struct vka_tensor xi = vka_plan_tensor(pred, n.x), loss = vka_graph_tensor(n.g, n.loss);
    cr_assert_eq(vka_tensor_upload(&xi, x), 0);
    cr_assert_eq(vka_plan_run(pred), 0);
    float acc[2];
    cr_assert_eq(vka_tensor_download(&loss, acc), 0);
    cr_assert(acc[0] == 0 && acc[1] == 0, "the loss ran: [%g, %g]", acc[0], acc[1]);
    float *lp = malloc(sizeof(float) * 2 * CLASSES * HW * HW);
    struct vka_tensor lt = vka_plan_tensor(pred, n.logits);
    cr_assert_eq(vka_tensor_download(&lt, lp), 0);
    /* the whole graph's forward computes the same logits, and does run the loss */
    struct vka_tensor xf = vka_plan_tensor(full, n.x), tf = vka_plan_tensor(full, n.target);
    cr_assert_eq(vka_tensor_upload(&xf, x), 0);
    cr_assert_eq(vka_tensor_upload(&tf, t), 0);
    cr_assert_eq(vka_plan_run(full), 0);
    float *lf = malloc(sizeof(float) * 2 * CLASSES * HW * HW);
    lt = vka_plan_tensor(full, n.logits);
    cr_assert_eq(vka_tensor_download(&lt, lf), 0);
    cr_assert_eq(memcmp(lp, lf, sizeof(float) * 2 * CLASSES * HW * HW), 0);
    cr_assert_eq(vka_tensor_download(&loss, acc), 0);
    cr_assert_gt(acc[1], 0, "the whole graph's forward ran no loss");
    free(lp);
    free(lf);
    free(x);
    free(t);
    vka_graph_destroy(&n.g);
    test_ctx_done(&ctx);
}

/* An AdamW trainer of net n's loss in windows of B as micro-batches of 4. */
static struct vka_trainer *adamw_trainer(const struct net *n, bool detect_anomaly, bool exact)
{
    struct vka_trainer_params tp = {
        .batch = B, .micro = 4, .optim = vka_optim_defaults(VKA_OPTIM_ADAMW, 1),
        .lr = { .kind = VKA_LR_CONSTANT, .lr = 1e-2 }, .detect_anomaly = detect_anomaly,
        .loss = n->loss, .inputs = { n->x, n->target }, .ninputs = 2, .exact = exact,
    };
    struct vka_trainer *tr;
    cr_assert_eq(vka_trainer_create(n->g, &tp, &tr), 0, "%s", vka_last_error());
    return tr;
}

/* A non-finite gradient skips the step (the weights stay, the accumulators are cleared,
 * the next window steps as if nothing happened) and the warning names the step and the
 * first parameter whose gradient holds a NaN (the loss too when it is not finite; here
 * the cross-entropy's clamped log-probabilities keep it finite). */
Test(train, a_non_finite_gradient_is_named_and_skipped)
{
    test_seed("train nonfinite");
    float *x;
    int32_t *t;
    data(&x, &t);
    struct vka_ctx *ctx = test_ctx();
    struct net n;
    build(ctx, &n);
    struct vka_trainer *tr = adamw_trainer(&n, false, false);
    struct vka_tensor params = vka_graph_params_flat(n.g);
    float *before = download_all(&params);
    /* one NaN pixel in the window's first sample */
    float *bad = malloc(sizeof(float) * B * C_IN * HW * HW);
    memcpy(bad, x, sizeof(float) * B * C_IN * HW * HW);
    bad[5] = NAN;
    stderr_begin();
    bool stepped;
    for (int i = 0; i < 2; i++) {
        const void *in[2] = { bad + (size_t)i * 4 * C_IN * HW * HW, t + (size_t)i * 4 * HW * HW };
        cr_assert_eq(vka_trainer_micro_step(tr, in, 4, &stepped), 0, "%s", vka_last_error());
    }
    char *log = stderr_end();
    struct vka_trainer_stats st;
    vka_trainer_get_stats(tr, &st);
    cr_assert(stepped && st.opt_steps == 1 && st.skipped_steps == 1, "the step was not skipped");
    cr_assert(strstr(log, "step 1 skipped") &&
              strstr(log, "first parameter whose gradient holds one: enc.0.weight"), "%s", log);
    free(log);
    float *after = download_all(&params);
    cr_assert_eq(memcmp(before, after, vka_tensor_stored(&params) * 4), 0,
                 "a skipped step changed the weights");
    /* the next, clean window steps from cleared accumulators */
    for (int i = 0; i < 2; i++) {
        const void *in[2] = { x + (size_t)i * 4 * C_IN * HW * HW, t + (size_t)i * 4 * HW * HW };
        cr_assert_eq(vka_trainer_micro_step(tr, in, 4, &stepped), 0, "%s", vka_last_error());
    }
    vka_trainer_get_stats(tr, &st);
    cr_assert(st.opt_steps == 2 && st.skipped_steps == 1 && isfinite(st.grad_norm) &&
              isfinite(st.loss), "the window after the skipped one did not step cleanly");
    free(after);
    free(before);
    free(bad);
    free(x);
    free(t);
    vka_trainer_destroy(&tr);
    vka_graph_destroy(&n.g);
    test_ctx_done(&ctx);
}

/* detect_anomaly: a window of clean data steps to the same bits as without it; a NaN in
 * the input is caught at the first node that writes one, named with its op. */
Test(train, detect_anomaly_names_the_first_node_and_changes_no_bits)
{
    test_seed("train anomaly");
    float *x;
    int32_t *t;
    data(&x, &t);
    struct vka_ctx *ctx = test_ctx();
    float *want = NULL;
    for (int check = 0; check < 2; check++) {
        struct net n;
        build(ctx, &n);
        struct vka_trainer *tr = adamw_trainer(&n, check, false);
        for (int i = 0; i < 2; i++) {
            const void *in[2] = { x + (size_t)i * 4 * C_IN * HW * HW, t + (size_t)i * 4 * HW * HW };
            cr_assert_eq(vka_trainer_micro_step(tr, in, 4, NULL), 0, "%s", vka_last_error());
        }
        struct vka_tensor params = vka_graph_params_flat(n.g);
        float *got = download_all(&params);
        if (!check) {
            want = got;
        } else {
            cr_assert_eq(memcmp(want, got, vka_tensor_stored(&params) * 4), 0,
                         "detect_anomaly changed the bits");
            free(got);
            /* a NaN pixel: the first conv's forward writes the first NaN */
            x[7] = NAN;
            const void *in[2] = { x, t };
            cr_assert_lt(vka_trainer_micro_step(tr, in, 4, NULL), 0, "the NaN went unseen");
            cr_assert(strstr(vka_last_error(), "anomaly: the forward of node 0 (conv2d)"),
                      "%s", vka_last_error());
        }
        vka_trainer_destroy(&tr);
        vka_graph_destroy(&n.g);
    }
    free(want);
    free(x);
    free(t);
    test_ctx_done(&ctx);
}

/* detect_anomaly with exact sums: a loss whose sum passes the exact range (finite as a
 * float, so ordered accumulation would take it) is named at the node that made it, not
 * only at the window's end. */
Test(train, detect_anomaly_reads_exact_sums)
{
    test_seed("train anomaly exact");
    float *x;
    int32_t *t;
    data(&x, &t);
    struct vka_ctx *ctx = test_ctx();
    struct net n;
    build_mode(ctx, &n, VKA_RECOMPUTE_NONE, false, true);
    struct vka_trainer *tr = adamw_trainer(&n, true, true);
    /* class 0's logit 1e10 above the others: a pixel of another class loses about 1e10,
     * a sample's sum passes 2^31 */
    int bias = vka_graph_find(n.g, "head.bias");
    cr_assert_geq(bias, 0);
    float b[CLASSES] = { 1e10f };
    struct vka_tensor bt = vka_graph_tensor(n.g, bias);
    cr_assert_eq(vka_tensor_upload(&bt, b), 0, "%s", vka_last_error());
    const void *in[2] = { x, t };
    cr_assert_lt(vka_trainer_micro_step(tr, in, 4, NULL), 0, "the out-of-range sum went unseen");
    cr_assert(strstr(vka_last_error(), "(cross_entropy) wrote 1 non-finite or out-of-range "
                                       "exact sums"), "%s", vka_last_error());
    vka_trainer_destroy(&tr);
    vka_graph_destroy(&n.g);
    free(x);
    free(t);
    test_ctx_done(&ctx);
}

/* ---- --accumulate exact ------------------------------------------------------------------ */

/* Runs window w's samples [lo, hi) of x/t through tr in micro-steps of at most its micro;
 * returns 0 or the first error (no Criterion asserts: rank threads call it). */
static int feed(struct vka_trainer *tr, float *const *x, int32_t *const *t, int w, int lo,
                int hi)
{
    int at = lo;
    while (at < hi) {
        uint32_t b = vka_trainer_next_size(tr);
        if (b > (uint32_t)(hi - at))
            b = (uint32_t)(hi - at);
        const void *in[2] = { x[w] + (size_t)at * C_IN * HW * HW, t[w] + (size_t)at * HW * HW };
        int ret = vka_trainer_micro_step(tr, in, b, NULL);
        if (ret < 0)
            return ret;
        at += (int)b;
    }
    return 0;
}

static struct vka_trainer_params exact_params(const struct net *n, uint32_t batch,
                                              uint32_t micro)
{
    return (struct vka_trainer_params){
        .batch = batch, .micro = micro, .optim = vka_optim_defaults(VKA_OPTIM_ADAM, 1),
        .lr = { .kind = VKA_LR_CONSTANT, .lr = 1e-2 },
        .loss = n->loss, .inputs = { n->x, n->target }, .ninputs = 2, .exact = true,
    };
}

/* Exact mode with GroupNorm: 3 Adam steps give bitwise the same weights and losses for
 * every split of the window. Catches an exact path that continues one float chain over
 * the samples (conv_wgrad_direct), converts per micro-batch instead of per sample, or
 * resolves with a rounding that depends on anything but the exact sum. */
Test(train, exact_steps_are_bitwise_the_same_for_any_split)
{
    test_seed("train exact splits");
    float *x[3];
    int32_t *t[3];
    for (int w = 0; w < 3; w++)
        data(&x[w], &t[w]);
    struct vka_ctx *ctx = test_ctx();
    float *ref = NULL, *ordered = NULL;
    double ref_loss[3];
    uint64_t np = 0;
    for (int sp = 0; sp < 5; sp++) {
        bool exact = sp < 4; /* the last run: ordered, which must differ somewhere */
        struct net n;
        build_mode(ctx, &n, VKA_RECOMPUTE_NONE, false, exact);
        struct vka_trainer_params tp = exact_params(&n, B, (uint32_t)splits[sp % 4][0]);
        tp.exact = exact;
        struct vka_trainer *tr;
        cr_assert_eq(vka_trainer_create(n.g, &tp, &tr), 0, "%s", vka_last_error());
        for (int w = 0; w < 3; w++) {
            cr_assert_eq(feed(tr, x, t, w, 0, B), 0, "%s", vka_last_error());
            struct vka_trainer_stats st;
            vka_trainer_get_stats(tr, &st);
            cr_assert_eq(st.opt_steps, (uint64_t)w + 1);
            cr_assert_eq(st.skipped_steps, 0);
            cr_assert(isfinite(st.loss) && st.loss > 0);
            if (sp == 0)
                ref_loss[w] = st.loss;
            else if (exact)
                cr_assert_eq(st.loss, ref_loss[w], "split %d window %d: loss %.9g vs %.9g",
                             sp, w, st.loss, ref_loss[w]);
        }
        struct vka_tensor params = vka_graph_params_flat(n.g);
        float *p = download_all(&params);
        np = vka_tensor_stored(&params);
        if (sp == 0)
            ref = p;
        else if (exact) {
            cr_assert_eq(memcmp(p, ref, np * 4), 0, "split %d: parameters differ after 3 "
                         "Adam steps in exact mode", sp);
            free(p);
        } else
            ordered = p;
        vka_trainer_destroy(&tr);
        vka_graph_destroy(&n.g);
    }
    /* the two modes round differently: identical weights would mean exact is not on */
    cr_assert_neq(memcmp(ordered, ref, np * 4), 0, "exact and ordered gave the same bits");
    free(ref);
    free(ordered);
    for (int w = 0; w < 3; w++) {
        free(x[w]);
        free(t[w]);
    }
    test_ctx_done(&ctx);
}

/* Data parallelism in one process: ranks of their own (context, graph, trainer) in
 * threads, each fed its contiguous shard of every window; the combine callback sums
 * every rank's exact words in rank order behind a barrier, as an MPI allreduce would. */
enum { DP_B = 6, DP_WINDOWS = 3, DP_PARTIAL = 2 };

struct world {
    bool combine;
    struct test_allreduce ar;
};

struct rank {
    struct world *w;
    uint32_t r;
    struct vka_ctx *ctx;
    float **x;
    int32_t **t;
    int ret;
    float *params;
    uint64_t nparams;
    double loss[DP_WINDOWS + 1];
};

static int combine(void *user, uint32_t *words, uint64_t nelems)
{
    struct rank *rk = user;
    return test_allreduce_exact(&rk->w->ar, rk->r, words, nelems);
}

/* this rank's share [lo, hi) of n samples */
static void shard(uint32_t r, uint32_t nranks, int n, int *lo, int *hi)
{
    *lo = (int)(r * (uint32_t)n / nranks);
    *hi = (int)((r + 1) * (uint32_t)n / nranks);
}

static void *rank_main(void *arg)
{
    struct rank *rk = arg;
    struct world *w = rk->w;
    struct net n;
    /* build_mode asserts: a failure there ends the test, as it should */
    build_mode(rk->ctx, &n, VKA_RECOMPUTE_NONE, false, true);
    uint32_t batch = DP_B / w->ar.nranks;
    struct vka_trainer_params tp = exact_params(&n, batch, rk->r == 0 ? 1 : batch);
    struct vka_trainer *tr = NULL;
    rk->ret = vka_trainer_create(n.g, &tp, &tr);
    if (rk->ret == 0 && w->combine)
        vka_trainer_set_combine(tr, combine, rk);
    for (int win = 0; rk->ret == 0 && win <= DP_WINDOWS; win++) {
        int lo, hi;
        /* the last window is an epoch's partial one of DP_PARTIAL samples */
        shard(rk->r, w->ar.nranks, win < DP_WINDOWS ? DP_B : DP_PARTIAL, &lo, &hi);
        if ((rk->ret = feed(tr, rk->x, rk->t, win, lo, hi)) == 0 && win == DP_WINDOWS)
            rk->ret = vka_trainer_end_epoch(tr, NULL);
        struct vka_trainer_stats st;
        vka_trainer_get_stats(tr, &st);
        rk->loss[win] = st.loss;
    }
    if (rk->ret == 0) {
        struct vka_tensor params = vka_graph_params_flat(n.g);
        rk->nparams = vka_tensor_stored(&params);
        rk->params = malloc(rk->nparams * 4);
        rk->ret = vka_buf_download(params.buf, 0, rk->params, rk->nparams * 4);
    }
    vka_trainer_destroy(&tr);
    vka_graph_destroy(&n.g);
    return NULL;
}

/* One trainer with micro-batch B: the reference the ranks must reproduce. */
static float *dp_reference(struct vka_ctx *ctx, float **x, int32_t **t, double *loss,
                           uint64_t *np)
{
    struct net n;
    build_mode(ctx, &n, VKA_RECOMPUTE_NONE, false, true);
    struct vka_trainer_params tp = exact_params(&n, DP_B, DP_B);
    struct vka_trainer *tr;
    cr_assert_eq(vka_trainer_create(n.g, &tp, &tr), 0, "%s", vka_last_error());
    for (int win = 0; win <= DP_WINDOWS; win++) {
        cr_assert_eq(feed(tr, x, t, win, 0, win < DP_WINDOWS ? DP_B : DP_PARTIAL), 0, "%s",
                     vka_last_error());
        if (win == DP_WINDOWS) {
            bool stepped;
            cr_assert_eq(vka_trainer_end_epoch(tr, &stepped), 0, "%s", vka_last_error());
            cr_assert(stepped);
        }
        struct vka_trainer_stats st;
        vka_trainer_get_stats(tr, &st);
        cr_assert_eq(st.opt_steps, (uint64_t)win + 1);
        loss[win] = st.loss;
    }
    struct vka_tensor params = vka_graph_params_flat(n.g);
    float *p = download_all(&params);
    *np = vka_tensor_stored(&params);
    vka_trainer_destroy(&tr);
    vka_graph_destroy(&n.g);
    return p;
}

/* 2 and 3 ranks give the weights and every window's loss of one process, bit for bit,
 * over 3 full windows and an epoch's partial one (with 3 ranks, rank 0 has no sample of
 * it and still takes part). Without the combine (each rank steps on its own shard) the
 * weights differ: the check can fail. Catches a combine that misses the accumulators or
 * the gradient span, a window close that skips the callback on an empty rank (the others
 * would wait forever: the test would hang), and sums that depend on the partition. */
Test(train, exact_ranks_give_the_weights_of_one_process, .timeout = 300)
{
    test_seed("train exact ranks");
    float *x[DP_WINDOWS + 1];
    int32_t *t[DP_WINDOWS + 1];
    for (int w = 0; w <= DP_WINDOWS; w++)
        data(&x[w], &t[w]);
    struct vka_ctx *ctx = test_ctx();
    double ref_loss[DP_WINDOWS + 1];
    uint64_t np;
    float *ref = dp_reference(ctx, x, t, ref_loss, &np);
    const uint32_t runs[3][2] = { { 2, 1 }, { 3, 1 }, { 2, 0 } }; /* ranks, combine */
    for (int k = 0; k < 3; k++) {
        struct world w = { .combine = runs[k][1] };
        test_allreduce_init(&w.ar, runs[k][0]);
        struct rank rk[3];
        for (uint32_t r = 0; r < w.ar.nranks; r++)
            rk[r] = (struct rank){ .w = &w, .r = r, .x = x, .t = t, .ctx = test_ctx() };
        test_threads(rank_main, rk, sizeof(rk[0]), w.ar.nranks);
        test_allreduce_destroy(&w.ar);
        for (uint32_t r = 0; r < w.ar.nranks; r++) {
            cr_assert_eq(rk[r].ret, 0, "%u ranks, rank %u: %s", w.ar.nranks, r, vka_last_error());
            cr_assert(!w.ar.mismatch, "the ranks passed different element counts");
            cr_assert_eq(rk[r].nparams, np);
            test_rank_params(rk[r].params, ref, np, w.combine, w.ar.nranks, r);
            if (w.combine) {
                cr_assert_eq(w.ar.calls[r], DP_WINDOWS + 1, "rank %u: %u combines", r,
                             w.ar.calls[r]);
                for (int win = 0; win <= DP_WINDOWS; win++)
                    cr_assert_eq(rk[r].loss[win], ref_loss[win], "%u ranks, rank %u, window "
                                 "%d: loss %.9g, one process %.9g", w.ar.nranks, r, win,
                                 rk[r].loss[win], ref_loss[win]);
            }
            free(rk[r].params);
            test_ctx_done(&rk[r].ctx);
        }
    }
    free(ref);
    for (int w = 0; w <= DP_WINDOWS; w++) {
        free(x[w]);
        free(t[w]);
    }
    test_ctx_done(&ctx);
}
