/* The GAN engine: both phases accumulate exactly (without BatchNorm, micro-batches of
 * 16 x 4 and 64 x 1 give bit-identical G and D after 5 iterations), a resumed run
 * continues bit-exactly, the EMA follows its formula, the G phase leaves D alone, and
 * the parameters carry the PyTorch DCGAN example's names. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "common.h"
#include "exact.h"
#include "gan.h"
#include "train.h"

/* Deterministic "real" images: image k of the stream is a smooth pattern of k. */
struct reals {
    uint64_t next;
    uint32_t size, res;
};

static int make_real(void *user, uint32_t n, float *x)
{
    struct reals *r = user;
    for (uint32_t i = 0; i < n; i++, r->next++)
        for (uint32_t j = 0; j < r->size; j++) {
            uint32_t px = j % (r->res * r->res);
            x[(size_t)i * r->size + j] =
                sinf(0.37f * (float)(r->next % 23) + 0.11f * (float)(px % r->res) +
                     0.07f * (float)(px / r->res));
        }
    return 0;
}

/* ema: the EMA's beta per step without ramp-up (0: no EMA) */
static struct vka_gan_params params(uint32_t batch, uint32_t micro, bool bn, double ema)
{
    return (struct vka_gan_params){
        .model = { .res = 32, .channels = 1, .width = 8, .z_dim = 16, .batch_norm = bn },
        .loss = VKA_GAN_BCE, .batch = batch, .micro = micro, .d_steps = 1,
        .lr_g = 2e-4, .lr_d = 2e-4, .beta1 = 0.5, .beta2 = 0.999, .seed = 3,
        /* 0.5^(B / h) = ema for a half-life of h = B / log2(1 / ema) images */
        .ema_kimg = ema > 0 ? batch / log2(1.0 / ema) / 1000.0 : 0 };
}

/* Every parameter of the training graph, in region order. */
static float *all_params(struct vka_gan *gan, uint64_t *n)
{
    struct vka_tensor p = vka_graph_params_flat(vka_gan_graph(gan));
    *n = vka_tensor_stored(&p);
    float *h = malloc(*n * sizeof(float));
    cr_assert_eq(vka_tensor_download(&p, h), 0);
    return h;
}

static float *span(struct vka_gan *gan, const char *prefix, uint64_t *n)
{
    struct vka_tensor t;
    cr_assert_eq(vka_graph_span(vka_gan_graph(gan), VKA_VAL_PARAM, prefix, &t), 0);
    *n = vka_tensor_stored(&t);
    float *h = malloc(*n * sizeof(float));
    cr_assert_eq(vka_buf_download(t.buf, t.off * 4, h, *n * 4), 0);
    return h;
}

static void iterate(struct vka_gan *gan, struct reals *r, int n)
{
    for (int i = 0; i < n; i++)
        cr_assert_eq(vka_gan_iteration(gan, make_real, r), 0, "%s", vka_last_error());
}

Test(gan, micro_batches_16x4_and_64x1_give_the_same_weights)
{
    struct vka_ctx *ctx = test_ctx();
    float *w[2];
    uint64_t n[2];
    struct vka_gan_stats st[2];
    const uint32_t micro[2] = { 16, 64 };
    for (int k = 0; k < 2; k++) {
        struct vka_gan *gan;
        struct vka_gan_params p = params(64, micro[k], false, 0);
        cr_assert_eq(vka_gan_create(ctx, &p, &gan), 0, "%s", vka_last_error());
        struct reals r = { 0, 32 * 32, 32 };
        iterate(gan, &r, 5);
        vka_gan_get_stats(gan, &st[k]);
        w[k] = all_params(gan, &n[k]);
        vka_gan_destroy(&gan);
    }
    cr_assert_eq(n[0], n[1]);
    cr_assert_eq(st[0].g_steps, 5);
    cr_assert_eq(st[0].d_steps, 5);

    cr_assert(isfinite(st[0].d_loss) && isfinite(st[0].g_loss));
    /* bitwise: every op is per sample and every sum is taken in sample order */
    cr_assert_eq(memcmp(w[0], w[1], n[0] * sizeof(float)), 0,
                 "G and D differ between micro-batches of 16 and 64");
    cr_assert_eq(memcmp(&st[0].d_loss, &st[1].d_loss, sizeof(double)), 0);
    cr_assert_eq(memcmp(&st[0].g_loss, &st[1].g_loss, sizeof(double)), 0);
    free(w[0]);
    free(w[1]);
    test_ctx_done(&ctx);
}

/* Recomputing each layer in backward gives the same G, D, running statistics and EMA
 * (BatchNorm on: a recomputed BatchNorm normalises with the same batch statistics and
 * leaves its running ones alone). */
Test(gan, recomputation_changes_no_bits)
{
    struct vka_ctx *ctx = test_ctx();
    float *w[2], *st[2];
    uint64_t n[2], ns[2];
    for (int k = 0; k < 2; k++) {
        struct vka_gan *gan;
        struct vka_gan_params p = params(32, 16, true, 0.9);
        p.recompute = k ? VKA_RECOMPUTE_BLOCKS : VKA_RECOMPUTE_NONE;
        cr_assert_eq(vka_gan_create(ctx, &p, &gan), 0, "%s", vka_last_error());
        struct reals r = { 0, 32 * 32, 32 };
        iterate(gan, &r, 3);
        w[k] = all_params(gan, &n[k]);
        struct vka_tensor t;
        cr_assert_eq(vka_graph_span(vka_gan_graph(gan), VKA_VAL_STATE, "", &t), 0);
        ns[k] = vka_tensor_stored(&t);
        st[k] = malloc(ns[k] * sizeof(float));
        cr_assert_eq(vka_buf_download(t.buf, t.off * 4, st[k], ns[k] * 4), 0);
        vka_gan_destroy(&gan);
    }
    cr_assert_eq(n[0], n[1]);
    cr_assert_eq(ns[0], ns[1]);
    cr_assert_gt(ns[0], 0, "no running statistics: BatchNorm is off");
    cr_assert_eq(memcmp(w[0], w[1], n[0] * sizeof(float)), 0,
                 "G, D or G_ema differ with recomputation");
    cr_assert_eq(memcmp(st[0], st[1], ns[0] * sizeof(float)), 0,
                 "running statistics differ with recomputation");
    for (int k = 0; k < 2; k++) {
        free(w[k]);
        free(st[k]);
    }
    test_ctx_done(&ctx);
}

Test(gan, resume_continues_bit_exactly)
{
    struct vka_ctx *ctx = test_ctx();
    char path[] = "/tmp/vka_gan_resume_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    /* BatchNorm (running statistics in the checkpoint) and EMA on: the whole state */
    struct vka_gan_params p = params(16, 8, true, 0.9);
    struct vka_gan *a, *b, *c;
    struct reals ra = { 0, 32 * 32, 32 }, rb = { 0, 32 * 32, 32 };
    cr_assert_eq(vka_gan_create(ctx, &p, &a), 0, "%s", vka_last_error());
    iterate(a, &ra, 4);

    cr_assert_eq(vka_gan_create(ctx, &p, &b), 0);
    iterate(b, &rb, 2);
    cr_assert_eq(vka_gan_save(b, path, NULL, 0, NULL, 0), 0, "%s", vka_last_error());
    vka_gan_destroy(&b);
    cr_assert_eq(vka_gan_create(ctx, &p, &c), 0);
    struct vka_st_file *f;
    cr_assert_eq(vka_gan_load(c, path, &f), 0, "%s", vka_last_error());
    vka_st_file_destroy(&f);
    iterate(c, &rb, 2);

    uint64_t na, nc;
    float *wa = all_params(a, &na), *wc = all_params(c, &nc);
    cr_assert_eq(na, nc);
    cr_assert_eq(memcmp(wa, wc, na * sizeof(float)), 0, "the resumed run differs");
    struct vka_gan_stats sa, sc;
    vka_gan_get_stats(a, &sa);
    vka_gan_get_stats(c, &sc);
    cr_assert_eq(sa.iterations, 4);
    cr_assert_eq(sc.iterations, 4);
    cr_assert_eq(memcmp(&sa.g_loss, &sc.g_loss, sizeof(double)), 0);
    free(wa);
    free(wc);
    vka_gan_destroy(&a);
    vka_gan_destroy(&c);
    unlink(path);
    test_ctx_done(&ctx);
}

Test(gan, ema_is_updated_once_per_g_step)
{
    struct vka_ctx *ctx = test_ctx();
    struct vka_gan *gan;
    struct vka_gan_params p = params(16, 4, true, 0.5); /* 4 micro-steps per window */
    cr_assert_eq(vka_gan_create(ctx, &p, &gan), 0, "%s", vka_last_error());
    uint64_t n0, n1, ne;
    float *g0 = span(gan, "G.", &n0), *e0 = span(gan, "G_ema.", &ne);
    cr_assert_eq(n0, ne);
    cr_assert_eq(memcmp(g0, e0, n0 * sizeof(float)), 0, "G_ema starts as a copy of G");
    struct reals r = { 0, 32 * 32, 32 };
    iterate(gan, &r, 1);
    float *g1 = span(gan, "G.", &n1), *e1 = span(gan, "G_ema.", &ne);
    bool moved = false;
    for (uint64_t i = 0; i < n0; i++) {
        /* 0.5 * g0 then + 0.5 * g1: two f32 roundings at most, 2^-23 relative each */
        double want = 0.5 * g0[i] + 0.5 * g1[i];
        cr_assert(fabs(e1[i] - want) <= 2.5e-7 * (fabs(g0[i]) + fabs(g1[i])) + 1e-30,
                  "G_ema[%llu] = %.9g, 0.5 G0 + 0.5 G1 = %.9g", (unsigned long long)i, e1[i], want);
        moved |= g0[i] != g1[i];
    }
    cr_assert(moved, "G did not step");
    free(g0);
    free(g1);
    free(e0);
    free(e1);
    vka_gan_destroy(&gan);
    test_ctx_done(&ctx);
}

static void expect(struct vka_graph *g, const char *name, uint32_t n, uint32_t c, uint32_t h,
                   uint32_t w)
{
    int v = vka_graph_find(g, name);
    cr_assert(v >= 0, "%s is missing", name);
    const struct vka_val *val = vka_graph_val(g, v);
    cr_assert(val->n == n && val->c == c && val->h == h && val->w == w,
              "%s is (%u,%u,%u,%u), PyTorch's is (%u,%u,%u,%u)", name, val->n, val->c, val->h,
              val->w, n, c, h, w);
}

Test(gan, parameters_carry_the_pytorch_dcgan_names)
{
    struct vka_ctx *ctx = test_ctx();
    struct vka_gan *gan;
    struct vka_gan_params p = params(2, 2, true, 0);
    p.model = (struct vka_dcgan_params){ 64, 3, 64, 100, true }; /* the paper's pair */
    cr_assert_eq(vka_gan_create(ctx, &p, &gan), 0, "%s", vka_last_error());
    struct vka_graph *g = vka_gan_graph(gan);
    expect(g, "G.main.0.weight", 100, 512, 4, 4);
    expect(g, "G.main.1.weight", 512, 1, 1, 1);
    expect(g, "G.main.1.running_var", 512, 1, 1, 1);
    expect(g, "G.main.3.weight", 512, 256, 4, 4);
    expect(g, "G.main.12.weight", 64, 3, 4, 4);
    expect(g, "D.main.0.weight", 64, 3, 4, 4);
    expect(g, "D.main.2.weight", 128, 64, 4, 4);
    expect(g, "D.main.3.bias", 128, 1, 1, 1);
    expect(g, "D.main.11.weight", 1, 512, 4, 4);
    cr_assert(vka_graph_find(g, "G.main.0.bias") < 0, "convs before BatchNorm have no bias");
    /* D applied twice has one set of parameters: PyTorch's 3,576,704 + 2,765,568 */
    uint64_t count = 0;
    for (uint32_t i = 0; i < vka_graph_nvals(g); i++) {
        const struct vka_val *v = vka_graph_val(g, (int)i);
        if (v->kind == VKA_VAL_PARAM)
            count += (uint64_t)v->n * v->c * v->h * v->w;
    }
    cr_assert_eq(count, 3576704 + 2765568);
    vka_gan_destroy(&gan);
    test_ctx_done(&ctx);
}

Test(gan, batch_norm_wider_than_the_arena_alignment)
{
    /* 128 channels of saved statistics with micro-batches of 2: the arena holds each
     * BatchNorm's statistics at their own size, not the micro-batch's */
    struct vka_ctx *ctx = test_ctx();
    struct vka_gan *gan;
    struct vka_gan_params p = params(4, 2, true, 0);
    p.model.width = 32;
    cr_assert_eq(vka_gan_create(ctx, &p, &gan), 0, "%s", vka_last_error());
    struct reals r = { 0, 32 * 32, 32 };
    iterate(gan, &r, 1);
    vka_gan_destroy(&gan);
    test_ctx_done(&ctx);
}

Test(gan, the_g_phase_leaves_d_alone)
{
    /* The first iteration's D step comes before any G step, so D after it cannot depend
     * on G's learning rate, unless the G phase touched D's parameters */
    struct vka_ctx *ctx = test_ctx();
    float *d[2], *gw[2];
    uint64_t nd, ng;
    const double lr_g[2] = { 2e-4, 1e-3 };
    for (int k = 0; k < 2; k++) {
        struct vka_gan *gan;
        struct vka_gan_params p = params(8, 4, true, 0);
        p.lr_g = lr_g[k];
        cr_assert_eq(vka_gan_create(ctx, &p, &gan), 0, "%s", vka_last_error());
        struct reals r = { 0, 32 * 32, 32 };
        iterate(gan, &r, 1);
        d[k] = span(gan, "D.", &nd);
        gw[k] = span(gan, "G.", &ng);
        vka_gan_destroy(&gan);
    }
    cr_assert_eq(memcmp(d[0], d[1], nd * sizeof(float)), 0, "the G phase changed D");
    cr_assert_neq(memcmp(gw[0], gw[1], ng * sizeof(float)), 0, "G did not step with its rate");
    for (int k = 0; k < 2; k++) {
        free(d[k]);
        free(gw[k]);
    }
    test_ctx_done(&ctx);
}

/* ---- --accumulate exact -------------------------------------------------------------- */

/* Exact mode, norm none: micro-batches of 12, 4 + 4 + 4, 5 + 5 + 2 and 1 x 12 give
 * bitwise the same G and D after 3 iterations, and the same losses. Catches a per-sample
 * partial that depends on the micro-batch (a float chain continued over samples) or a
 * GAN pass whose accumulators are not exact. */
Test(gan, exact_micro_batches_give_the_same_weights)
{
    struct vka_ctx *ctx = test_ctx();
    const uint32_t micro[4] = { 12, 4, 5, 1 };
    float *ref = NULL;
    uint64_t nref = 0;
    struct vka_gan_stats st0;
    for (int k = 0; k < 4; k++) {
        struct vka_gan *gan;
        struct vka_gan_params p = params(12, micro[k], false, 0);
        p.exact = true;
        cr_assert_eq(vka_gan_create(ctx, &p, &gan), 0, "%s", vka_last_error());
        struct reals r = { 0, 32 * 32, 32 };
        iterate(gan, &r, 3);
        struct vka_gan_stats st;
        vka_gan_get_stats(gan, &st);
        uint64_t n;
        float *w = all_params(gan, &n);
        cr_assert(isfinite(st.d_loss) && isfinite(st.g_loss));
        if (k == 0) {
            ref = w;
            nref = n;
            st0 = st;
        } else {
            cr_assert_eq(n, nref);
            cr_assert_eq(memcmp(w, ref, n * 4), 0, "micro-batch %u: G and D differ", micro[k]);
            cr_assert_eq(memcmp(&st.d_loss, &st0.d_loss, sizeof(double)), 0);
            cr_assert_eq(memcmp(&st.g_loss, &st0.g_loss, sizeof(double)), 0);
            free(w);
        }
        vka_gan_destroy(&gan);
    }
    free(ref);
    test_ctx_done(&ctx);
}

/* Ranks in threads (vka_gan_params.ranks/rank): each its own context and engine, its
 * shard of every window's real images and noise; both trainers combine through a
 * barrier as an MPI allreduce would. */
enum { DPG_B = 12, DPG_ITERS = 3 };

struct gworld {
    bool combine;
    struct test_allreduce ar;
};

struct grank {
    struct gworld *w;
    uint32_t r;
    struct vka_ctx *ctx;
    int ret;
    float *params;
    uint64_t nparams;
    struct vka_gan_stats st;
    uint64_t real_next; /* this rank's real images drawn so far */
};

static int gcombine(void *user, uint32_t *words, uint64_t nelems)
{
    struct grank *rk = user;
    return test_allreduce_exact(&rk->w->ar, rk->r, words, nelems);
}

/* the rank's shard of the stream make_real draws: image k of window j is image
 * j * B + rank * B / ranks + k of one process's stream */
static int shard_real(void *user, uint32_t n, float *x)
{
    struct grank *rk = user;
    uint32_t per = DPG_B / rk->w->ar.nranks;
    for (uint32_t i = 0; i < n; i++, rk->real_next++) {
        struct reals one = { rk->real_next / per * DPG_B + rk->r * per + rk->real_next % per,
                             32 * 32, 32 };
        make_real(&one, 1, x + (size_t)i * 32 * 32);
    }
    return 0;
}

static void *grank_main(void *arg)
{
    struct grank *rk = arg;
    struct vka_gan *gan = NULL;
    struct vka_gan_params p = params(DPG_B, 2, false, 0);
    p.exact = true;
    p.ranks = rk->w->ar.nranks;
    p.rank = rk->r;
    if ((rk->ret = vka_gan_create(rk->ctx, &p, &gan)) < 0)
        return NULL;
    if (rk->w->combine) {
        vka_trainer_set_combine(vka_gan_trainer(gan, false), gcombine, rk);
        vka_trainer_set_combine(vka_gan_trainer(gan, true), gcombine, rk);
    }
    for (int i = 0; rk->ret == 0 && i < DPG_ITERS; i++)
        rk->ret = vka_gan_iteration(gan, shard_real, rk);
    vka_gan_get_stats(gan, &rk->st);
    if (rk->ret == 0) {
        struct vka_tensor t = vka_graph_params_flat(vka_gan_graph(gan));
        rk->nparams = vka_tensor_stored(&t);
        rk->params = malloc(rk->nparams * 4);
        rk->ret = vka_tensor_download(&t, rk->params);
    }
    vka_gan_destroy(&gan);
    return NULL;
}

/* 2 and 3 ranks give G, D and both losses of one process with micro-batch B, bit for
 * bit; without the combine they do not (the check can fail). Catches a rank's noise or
 * real shard that is not the one process's, a combine that misses a trainer's
 * accumulators (the logged losses) or its gradients. */
Test(gan, exact_ranks_give_the_weights_of_one_process, .timeout = 300)
{
    struct vka_ctx *ctx = test_ctx();
    struct vka_gan *gan;
    struct vka_gan_params p = params(DPG_B, DPG_B, false, 0);
    p.exact = true;
    cr_assert_eq(vka_gan_create(ctx, &p, &gan), 0, "%s", vka_last_error());
    struct reals r = { 0, 32 * 32, 32 };
    iterate(gan, &r, DPG_ITERS);
    struct vka_gan_stats st;
    vka_gan_get_stats(gan, &st);
    uint64_t np;
    float *ref = all_params(gan, &np);
    vka_gan_destroy(&gan);
    const uint32_t runs[3][2] = { { 2, 1 }, { 3, 1 }, { 3, 0 } };
    for (int k = 0; k < 3; k++) {
        struct gworld w = { .combine = runs[k][1] };
        test_allreduce_init(&w.ar, runs[k][0]);
        struct grank rk[3];
        for (uint32_t i = 0; i < w.ar.nranks; i++)
            rk[i] = (struct grank){ .w = &w, .r = i, .ctx = test_ctx() };
        test_threads(grank_main, rk, sizeof(rk[0]), w.ar.nranks);
        test_allreduce_destroy(&w.ar);
        for (uint32_t i = 0; i < w.ar.nranks; i++) {
            cr_assert_eq(rk[i].ret, 0, "%u ranks, rank %u: %s", w.ar.nranks, i, vka_last_error());
            cr_assert(!w.ar.mismatch, "the ranks passed different element counts");
            cr_assert_eq(rk[i].nparams, np);
            test_rank_params(rk[i].params, ref, np, w.combine, w.ar.nranks, i);
            if (w.combine) {
                cr_assert_eq(memcmp(&rk[i].st.d_loss, &st.d_loss, sizeof(double)), 0,
                             "rank %u: D loss %.9g, one process %.9g", i, rk[i].st.d_loss,
                             st.d_loss);
                cr_assert_eq(memcmp(&rk[i].st.g_loss, &st.g_loss, sizeof(double)), 0,
                             "rank %u: G loss %.9g, one process %.9g", i, rk[i].st.g_loss,
                             st.g_loss);
            }
            free(rk[i].params);
            test_ctx_done(&rk[i].ctx);
        }
    }
    free(ref);
    test_ctx_done(&ctx);
}
