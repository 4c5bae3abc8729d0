/* The GAN engine; see gan.h. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "gan.h"
#include "log.h"
#include "rng.h"
#include "ops/basic.h"

#define SAMPLER_RUN 64 /* images per sampler plan */

struct vka_gan_sampler {
    struct vka_graph *g;
    int z, image;
    uint32_t z_dim, size; /* floats per z and per image */
};

struct vka_gan {
    struct vka_ctx *ctx;
    struct vka_gan_params p;
    struct vka_graph *g;
    int z, real;
    int losses[3], metrics[3]; /* D real, D fake, G */
    int phases[3];             /* D's real and fake passes, G */
    struct vka_trainer *td, *tg;
    struct vka_gan_sampler *sampler;
    struct vka_tensor g_params, g_state, ema_params, ema_state; /* spans */
    struct vka_cmd *cmd; /* EMA updates and sampler loads */
    uint64_t iterations;
    uint64_t noise[2];   /* samples drawn from the D and G phase streams */
    float *z_host, *x_host;
};

/* ---- noise ------------------------------------------------------------------------- */

void vka_gan_noise(uint64_t seed, uint32_t stream, uint64_t first, uint32_t n,
                   uint32_t z_dim, float *z)
{
    for (uint32_t i = 0; i < n; i++) {
        uint64_t s = vka_mix64(vka_mix64(seed ^ 0x6761ull) ^
                               vka_mix64(((uint64_t)stream << 56) ^ (first + i)));
        for (uint32_t j = 0; j < z_dim; j += 2) {
            /* Box-Muller on two 53-bit uniforms, u1 in (0, 1] */
            uint64_t a = vka_mix64(s + 2 * j), b = vka_mix64(s + 2 * j + 1);
            double u1 = ((a >> 11) + 1) * (1.0 / 9007199254740992.0);
            double u2 = (b >> 11) * (1.0 / 9007199254740992.0);
            double r = sqrt(-2.0 * log(u1));
            z[(size_t)i * z_dim + j] = (float)(r * cos(2 * M_PI * u2));
            if (j + 1 < z_dim)
                z[(size_t)i * z_dim + j + 1] = (float)(r * sin(2 * M_PI * u2));
        }
    }
}

/* ---- sampler ----------------------------------------------------------------------- */

/* The sampler's graph, not yet allocated. */
static int sampler_graph(struct vka_ctx *ctx, const struct vka_dcgan_params *p,
                         const char *prefix, struct vka_gan_sampler *s)
{
    s->z_dim = p->z_dim;
    s->size = p->channels * p->res * p->res;
    int ret = vka_graph_create(ctx, NULL, &s->g);
    if (ret == 0 && (s->z = vka_graph_input(s->g, "z", VKA_F32, VKA_LAYOUT_NHWC4, p->z_dim,
                                            1, 1)) < 0)
        ret = s->z;
    if (ret == 0 && (s->image = vka_dcgan_generator(s->g, p, prefix, s->z)) < 0)
        ret = s->image;
    if (ret == 0)
        vka_graph_set_training(s->g, false);
    return ret;
}

int vka_gan_sampler_create(struct vka_ctx *ctx, const struct vka_dcgan_params *p,
                           const char *prefix, struct vka_gan_sampler **out)
{
    *out = NULL;
    struct vka_gan_sampler *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    int ret = sampler_graph(ctx, p, prefix, s);
    if (ret == 0)
        ret = vka_graph_alloc(s->g);
    if (ret < 0) {
        vka_gan_sampler_destroy(&s);
        return ret;
    }
    *out = s;
    return 0;
}

void vka_gan_sampler_destroy(struct vka_gan_sampler **ps)
{
    if (!*ps)
        return;
    vka_graph_destroy(&(*ps)->g);
    free(*ps);
    *ps = NULL;
}

struct vka_graph *vka_gan_sampler_graph(struct vka_gan_sampler *s)
{
    return s->g;
}

int vka_gan_sampler_run(struct vka_gan_sampler *s, const float *z, uint32_t n, float *x)
{
    for (uint32_t i = 0; i < n; i += SAMPLER_RUN) {
        uint32_t m = n - i < SAMPLER_RUN ? n - i : SAMPLER_RUN;
        struct vka_plan *plan;
        int ret = vka_graph_plan(s->g, m, false, &plan);
        if (ret < 0)
            return ret;
        struct vka_tensor zt = vka_plan_tensor(plan, s->z), xt = vka_plan_tensor(plan, s->image);
        if ((ret = vka_tensor_upload(&zt, z + (size_t)i * s->z_dim)) < 0 ||
            (ret = vka_plan_run(plan)) < 0 ||
            (ret = vka_tensor_download(&xt, x + (size_t)i * s->size)) < 0)
            return ret;
    }
    return 0;
}

/* ---- building ---------------------------------------------------------------------- */

/* The loss of D's logits against a constant target (1 real, 0 fake); for G's hinge
 * loss the linear form -D(G(z)). */
static int loss_node(struct vka_graph *g, enum vka_gan_loss kind, int logits, float target,
                     bool generator)
{
    union vka_op_params lp = { .loss = { .scale = 1.0f, .target = target,
                                         .hinge_linear = generator } };
    return vka_graph_node(g, kind == VKA_GAN_HINGE ? VKA_OP_hinge : VKA_OP_bce_logits, &lp,
                          logits, -1, -1);
}

static int metric_node(struct vka_graph *g, int logits)
{
    return vka_graph_node(g, VKA_OP_sigmoid_mean, NULL, logits, -1, -1);
}

/* The graph and its phases, not yet allocated. */
static int build_graph(struct vka_gan *gan)
{
    const struct vka_gan_params *p = &gan->p;
    struct vka_graph *g = gan->g;
    vka_graph_set_recompute(g, p->recompute);
    int ret = vka_graph_set_exact(g, p->exact);
    if (ret < 0)
        return ret;
    const struct vka_dcgan_params *mp = &p->model;
    gan->z = vka_graph_input(g, "z", VKA_F32, VKA_LAYOUT_NHWC4, mp->z_dim, 1, 1);
    gan->real = vka_graph_input(g, "real", VKA_F32, VKA_LAYOUT_NHWC4, mp->channels, mp->res,
                                mp->res);
    if (gan->z < 0 || gan->real < 0)
        return -EINVAL;
    int fake = vka_dcgan_generator(g, mp, "G", gan->z);
    int lr = fake < 0 ? fake : vka_dcgan_discriminator(g, mp, "D", gan->real);
    int lf = lr < 0 ? lr : vka_dcgan_discriminator(g, mp, "D", fake);
    if (lf < 0)
        return lf;
    if (p->ema_kimg > 0) {
        int ze = vka_graph_input(g, "z_ema", VKA_F32, VKA_LAYOUT_NHWC4, mp->z_dim, 1, 1);
        int e = ze < 0 ? ze : vka_dcgan_generator(g, mp, "G_ema", ze);
        if (e < 0)
            return e;
    }
    int d_real = loss_node(g, p->loss, lr, 1.0f, false);
    int d_fake = loss_node(g, p->loss, lf, 0.0f, false);
    int g_loss = loss_node(g, p->loss, lf, 1.0f, true);
    int m_real = metric_node(g, lr), m_fake = metric_node(g, lf), m_fake_g = metric_node(g, lf);
    int outs[] = { d_real, m_real, d_fake, m_fake, g_loss, m_fake_g };
    for (size_t i = 0; i < 6; i++)
        if (outs[i] < 0)
            return outs[i];
    /* D's window: a pass over the real images, then one over the fakes */
    static const char *const train[3] = { "D.", "D.", "G." };
    for (int i = 0; i < 3; i++) {
        gan->losses[i] = outs[2 * i];
        gan->metrics[i] = outs[2 * i + 1];
        if ((gan->phases[i] = vka_graph_phase(g, outs + 2 * i, 2, train[i])) < 0)
            return gan->phases[i];
    }
    return 0;
}

/* The processes sharing each window (vka_gan_params.ranks). */
static uint32_t ranks_of(const struct vka_gan_params *p)
{
    return p->ranks > 1 ? p->ranks : 1;
}

/* The graph allocated, and its trainers. */
static int build(struct vka_gan *gan)
{
    const struct vka_gan_params *p = &gan->p;
    struct vka_graph *g = gan->g;
    int ret = build_graph(gan);
    if (ret < 0 || (ret = vka_graph_alloc(g)) < 0)
        return ret;
    int d_real = gan->losses[0], d_fake = gan->losses[1], g_loss = gan->losses[2];
    int m_real = gan->metrics[0], m_fake = gan->metrics[1], m_fake_g = gan->metrics[2];
    int phase_dr = gan->phases[0], phase_df = gan->phases[1], phase_g = gan->phases[2];

    struct vka_trainer_params tp = {
        .batch = p->batch / ranks_of(p),
        .micro = p->micro < p->batch / ranks_of(p) ? p->micro : p->batch / ranks_of(p),
        .optim = vka_optim_defaults(VKA_OPTIM_ADAM, 1),
        .lr = { .kind = VKA_LR_CONSTANT, .lr = p->lr_d },
        .loss = d_real, .passes = { { phase_dr, { gan->real }, 1 }, { phase_df, { gan->z }, 1 } },
        .npasses = 2, .name = "D", .extra_losses = { d_fake }, .nextra_losses = 1,
        .metrics = { m_real, m_fake }, .nmetrics = 2, .detect_anomaly = p->detect_anomaly,
        .exact = p->exact,
    };
    tp.optim.beta1 = p->beta1;
    tp.optim.beta2 = p->beta2;
    if ((ret = vka_trainer_create(g, &tp, &gan->td)) < 0)
        return ret;
    tp.lr.lr = p->lr_g;
    tp.loss = g_loss;
    tp.npasses = 0;
    tp.inputs[0] = gan->z;
    tp.ninputs = 1;
    tp.phase = phase_g;
    tp.name = "G";
    tp.nextra_losses = 0;
    tp.metrics[0] = m_fake_g;
    tp.nmetrics = 1;
    return vka_trainer_create(g, &tp, &gan->tg);
}

/* Records dst span = src span (same layout: see vka_graph_span). */
static int record_copy(struct vka_cmd *cmd, const struct vka_tensor *src,
                       const struct vka_tensor *dst)
{
    if (src->n == 0)
        return 0;
    return vka_cmd_copy(cmd, src->buf, src->off * 4, dst->buf, dst->off * 4,
                        vka_tensor_stored(src) * 4);
}

/* G_ema's BatchNorm pass counts = G's (they are buffers, copied as StyleGAN copies) */
static void copy_batches(struct vka_gan *gan)
{
    struct vka_graph *g = gan->g;
    for (uint32_t i = 0; i < vka_graph_nvals(g); i++) {
        const struct vka_val *v = vka_graph_val(g, (int)i);
        char name[96];
        if (v->kind != VKA_VAL_STATE || strncmp(v->name, "G_ema.", 6))
            continue;
        snprintf(name, sizeof(name), "G.%s", v->name + 6);
        int src = vka_graph_find(g, name);
        if (src >= 0)
            vka_graph_set_batches(g, (int)i, vka_graph_val(g, src)->batches);
    }
}

/* G_ema = G (at creation) */
static int ema_reset(struct vka_gan *gan)
{
    int ret = vka_cmd_begin(gan->cmd);
    if (ret == 0)
        ret = record_copy(gan->cmd, &gan->g_params, &gan->ema_params);
    if (ret == 0)
        ret = record_copy(gan->cmd, &gan->g_state, &gan->ema_state);
    return ret < 0 ? ret : vka_cmd_run(gan->cmd);
}

double vka_gan_ema_beta(const struct vka_gan_params *p, uint64_t steps)
{
    double h = p->ema_kimg * 1000.0;
    if (p->ema_rampup > 0 && (double)steps * p->batch * p->ema_rampup < h)
        h = (double)steps * p->batch * p->ema_rampup;
    return h > 0 ? pow(0.5, p->batch / h) : 0.0;
}

static int ema_update(struct vka_gan *gan)
{
    struct vka_trainer_stats s;
    vka_trainer_get_stats(gan->tg, &s);
    float beta = (float)vka_gan_ema_beta(&gan->p, s.opt_steps - 1);
    int ret = vka_cmd_begin(gan->cmd);
    if (ret == 0)
        ret = vka_scale(gan->cmd, &gan->ema_params, beta);
    if (ret == 0)
        ret = vka_axpy(gan->cmd, 1.0f - beta, &gan->g_params, &gan->ema_params);
    if (ret == 0)
        ret = record_copy(gan->cmd, &gan->g_state, &gan->ema_state);
    if (ret == 0)
        copy_batches(gan);
    return ret < 0 ? ret : vka_cmd_run(gan->cmd);
}

int vka_gan_create(struct vka_ctx *ctx, const struct vka_gan_params *p, struct vka_gan **out)
{
    *out = NULL;
    int ret = vka_dcgan_check(&p->model);
    if (ret < 0)
        return ret;
    if (p->d_steps == 0 || !(p->ema_kimg >= 0) || !(p->ema_rampup >= 0) || !(p->lr_d > 0) ||
        !(p->lr_g > 0)) {
        vka_err("gan: d-steps %u (>= 1), ema-kimg %g, ema-rampup %g (>= 0) and learning "
                "rates %g, %g (> 0)", p->d_steps, p->ema_kimg, p->ema_rampup, p->lr_d, p->lr_g);
        return -EINVAL;
    }
    struct vka_gan *gan = calloc(1, sizeof(*gan));
    if (!gan)
        return -ENOMEM;
    gan->ctx = ctx;
    gan->p = *p;
    const struct vka_dcgan_params *mp = &p->model;
    size_t zf = (size_t)p->micro * mp->z_dim;
    size_t xf = (size_t)p->micro * mp->channels * mp->res * mp->res;
    gan->z_host = malloc(zf * sizeof(float));
    gan->x_host = malloc(xf * sizeof(float));
    if (!gan->z_host || !gan->x_host)
        ret = -ENOMEM;
    if (ret == 0)
        ret = vka_graph_create(ctx, &(struct vka_graph_params){ .seed = p->seed }, &gan->g);
    if (ret == 0)
        ret = build(gan);
    const char *src = p->ema_kimg > 0 ? "G_ema." : "G.";
    if (ret == 0 && (ret = vka_graph_span(gan->g, VKA_VAL_PARAM, "G.", &gan->g_params)) == 0 &&
        (ret = vka_graph_span(gan->g, VKA_VAL_STATE, "G.", &gan->g_state)) == 0 &&
        (ret = vka_graph_span(gan->g, VKA_VAL_PARAM, src, &gan->ema_params)) == 0)
        ret = vka_graph_span(gan->g, VKA_VAL_STATE, src, &gan->ema_state);
    if (ret == 0)
        ret = vka_gan_sampler_create(ctx, mp, p->ema_kimg > 0 ? "G_ema" : "G", &gan->sampler);
    if (ret == 0)
        ret = vka_cmd_create(ctx, NULL, &gan->cmd);
    if (ret == 0 && p->ema_kimg > 0)
        ret = ema_reset(gan);
    if (ret < 0) {
        vka_gan_destroy(&gan);
        return ret;
    }
    *out = gan;
    return 0;
}

/* Elements of the parameters under prefix: what the trainer's optimizer holds. */
static uint64_t span_len(struct vka_graph *g, const char *prefix)
{
    struct vka_tensor t;
    vka_graph_region_bytes(g, VKA_VAL_PARAM); /* lays the region out */
    return vka_graph_span(g, VKA_VAL_PARAM, prefix, &t) < 0 ? 0 : t.n;
}

int vka_gan_plan_memory(struct vka_ctx *ctx, const struct vka_gan_params *p,
                        struct vka_mem_plan *m)
{
    struct vka_gan gan = { .ctx = ctx, .p = *p };
    struct vka_gan_sampler smp = { 0 };
    const struct vka_dcgan_params *mp = &p->model;
    memset(m, 0, sizeof(*m));
    int ret = vka_graph_create(ctx, &(struct vka_graph_params){ .seed = p->seed }, &gan.g);
    if (ret == 0)
        ret = build_graph(&gan);
    uint32_t n[3] = { p->micro, p->micro, p->micro }, run = SAMPLER_RUN;
    bool bwd[3] = { true, true, true }, fwd = false;
    int phase0 = 0;
    if (ret == 0) {
        vka_mem_plan_graph(m, gan.g);
        ret = vka_mem_plan_arena(m, gan.g, gan.phases, n, bwd, 3);
    }
    static const char *const trained[2] = { "D.", "G." };
    for (int i = 0; i < 2 && ret == 0; i++) {
        struct vka_optim_params op = vka_optim_defaults(VKA_OPTIM_ADAM, span_len(gan.g, trained[i]));
        vka_mem_plan_optim(m, ctx, &op);
    }
    if (ret == 0)
        ret = sampler_graph(ctx, mp, p->ema_kimg > 0 ? "G_ema" : "G", &smp);
    if (ret == 0) {
        vka_mem_plan_graph(m, smp.g);
        ret = vka_mem_plan_arena(m, smp.g, &phase0, &run, &fwd, 1);
    }
    uint64_t z4 = (mp->z_dim + 3) / 4 * 4, x4 = (uint64_t)(mp->channels + 3) / 4 * 4 * mp->res * mp->res;
    vka_mem_plan_transfer(m, (uint64_t)p->micro * z4 * sizeof(float));
    vka_mem_plan_transfer(m, (uint64_t)p->micro * x4 * sizeof(float));
    vka_mem_plan_transfer(m, (uint64_t)SAMPLER_RUN * x4 * sizeof(float));
    vka_mem_plan_sum(m);
    vka_graph_destroy(&smp.g);
    vka_graph_destroy(&gan.g);
    return ret;
}

void vka_gan_destroy(struct vka_gan **pg)
{
    struct vka_gan *gan = *pg;
    if (!gan)
        return;
    vka_cmd_destroy(&gan->cmd);
    vka_gan_sampler_destroy(&gan->sampler);
    vka_trainer_destroy(&gan->td);
    vka_trainer_destroy(&gan->tg);
    vka_graph_destroy(&gan->g);
    free(gan->z_host);
    free(gan->x_host);
    free(gan);
    *pg = NULL;
}

/* ---- training ---------------------------------------------------------------------- */

/* Micro-steps of one trainer until its window steps: a pass over real images (D's
 * first) takes them from real, a pass over fakes draws z from the stream. With several
 * ranks, this rank's share of the window: its z are the stream's samples rank * B / ranks
 * onwards of the window's B, the ones one process would draw for them. */
static int window(struct vka_gan *gan, struct vka_trainer *t, uint32_t stream,
                  vka_gan_real_fn real, void *user)
{
    const struct vka_gan_params *p = &gan->p;
    uint64_t first = gan->noise[stream] + (uint64_t)p->rank * (p->batch / ranks_of(p));
    uint64_t drawn = 0;
    bool stepped = false;
    while (!stepped) {
        uint32_t n = vka_trainer_next_size(t);
        bool reals = real && vka_trainer_next_pass(t) == 0;
        int ret = 0;
        if (reals) {
            ret = real(user, n, gan->x_host);
        } else {
            vka_gan_noise(p->seed, stream, first + drawn, n, p->model.z_dim, gan->z_host);
            drawn += n;
        }
        const void *in[1] = { reals ? gan->x_host : gan->z_host };
        if (ret < 0 || (ret = vka_trainer_micro_step(t, in, n, &stepped)) < 0)
            return ret;
    }
    gan->noise[stream] += drawn * ranks_of(p); /* the window's B */
    return 0;
}

int vka_gan_iteration(struct vka_gan *gan, vka_gan_real_fn real, void *user)
{
    int ret = 0;
    for (uint32_t i = 0; i < gan->p.d_steps && ret == 0; i++)
        ret = window(gan, gan->td, 0, real, user);
    if (ret == 0)
        ret = window(gan, gan->tg, 1, NULL, NULL);
    if (ret == 0 && gan->p.ema_kimg > 0)
        ret = ema_update(gan);
    if (ret == 0)
        gan->iterations++;
    return ret;
}

int vka_gan_flops(struct vka_gan *gan, double *flops)
{
    double d, g;
    int ret = vka_trainer_flops(gan->td, &d);
    if (ret == 0)
        ret = vka_trainer_flops(gan->tg, &g);
    *flops = ret == 0 ? gan->p.d_steps * d + g : 0;
    return ret;
}

void vka_gan_get_stats(const struct vka_gan *gan, struct vka_gan_stats *s)
{
    struct vka_trainer_stats d, g;
    vka_trainer_get_stats(gan->td, &d);
    vka_trainer_get_stats(gan->tg, &g);
    *s = (struct vka_gan_stats){
        .iterations = gan->iterations, .d_steps = d.opt_steps, .g_steps = g.opt_steps,
        .samples = d.samples_seen, .d_loss = d.loss, .g_loss = g.loss,
        .d_real = d.metric[0], .d_fake = d.metric[1], .g_fake = g.metric[0],
        .d_norm = d.grad_norm, .g_norm = g.grad_norm,
    };
}

struct vka_trainer *vka_gan_trainer(struct vka_gan *gan, bool g)
{
    return g ? gan->tg : gan->td;
}

struct vka_graph *vka_gan_graph(struct vka_gan *gan)
{
    return gan->g;
}

int vka_gan_generate(struct vka_gan *gan, const float *z, uint32_t n, float *x)
{
    struct vka_graph *sg = gan->sampler->g;
    struct vka_tensor dp = vka_graph_params_flat(sg), ds;
    int ret = vka_graph_span(sg, VKA_VAL_STATE, "", &ds);
    if (ret == 0)
        ret = vka_cmd_begin(gan->cmd);
    if (ret == 0)
        ret = record_copy(gan->cmd, &gan->ema_params, &dp);
    if (ret == 0)
        ret = record_copy(gan->cmd, &gan->ema_state, &ds);
    if (ret == 0)
        ret = vka_cmd_run(gan->cmd);
    return ret < 0 ? ret : vka_gan_sampler_run(gan->sampler, z, n, x);
}

/* ---- checkpoints ------------------------------------------------------------------- */

#define COUNTERS_NAME "train.gan.counters"

int vka_gan_save(struct vka_gan *gan, const char *path, const struct vka_st_tensor *extra,
                 size_t n_extra, const struct vka_st_meta *meta, size_t n_meta)
{
    struct vka_st_tensor *all = calloc(n_extra + 1, sizeof(*all));
    if (!all)
        return -ENOMEM;
    int64_t c[3] = { (int64_t)gan->iterations, (int64_t)gan->noise[0], (int64_t)gan->noise[1] };
    all[0] = (struct vka_st_tensor){ .name = COUNTERS_NAME, .dtype = VKA_ST_I64, .ndim = 1,
                                     .shape = { 3 }, .data = c };
    memcpy(all + 1, extra, n_extra * sizeof(*all));
    struct vka_trainer *tr[2] = { gan->td, gan->tg };
    int ret = vka_ckpt_save(path, gan->g, tr, 2, all, n_extra + 1, meta, n_meta);
    free(all);
    return ret;
}

int vka_gan_load(struct vka_gan *gan, const char *path, struct vka_st_file **out)
{
    struct vka_st_file *f;
    struct vka_trainer *tr[2] = { gan->td, gan->tg };
    *out = NULL;
    int ret = vka_st_read(path, &f);
    if (ret < 0)
        return ret;
    /* the counters are checked before anything is loaded */
    const struct vka_st_tensor *c = vka_st_find(f, COUNTERS_NAME);
    uint64_t n = 0;
    if (!c || c->dtype != VKA_ST_I64 || vka_st_numel(c, &n) < 0 || n != 3) {
        vka_err("checkpoint %s: %s is missing or not 3 int64 values: not a checkpoint of "
                "vkaccum gan train", path, COUNTERS_NAME);
        vka_st_file_destroy(&f);
        return -EINVAL;
    }
    const int64_t *v = c->data;
    if (v[0] < 0 || v[1] < 0 || v[2] < 0) {
        vka_err("checkpoint %s: %s is (%lld, %lld, %lld): counters cannot be negative", path,
                COUNTERS_NAME, (long long)v[0], (long long)v[1], (long long)v[2]);
        vka_st_file_destroy(&f);
        return -EINVAL;
    }
    if ((ret = vka_ckpt_restore(f, gan->g, tr, 2)) < 0) {
        vka_st_file_destroy(&f);
        return ret;
    }
    gan->iterations = (uint64_t)v[0];
    gan->noise[0] = (uint64_t)v[1];
    gan->noise[1] = (uint64_t)v[2];
    *out = f;
    return 0;
}
