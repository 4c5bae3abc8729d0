/* vkaccum-parity-gan: trains a small DCGAN pair with src/gan.c for a few iterations on
 * deterministic inputs and writes everything tools/parity/dcgan.py needs to replay the
 * same iterations in PyTorch:
 *   init.safetensors         vka_gan_save before the first iteration; metadata "config"
 *                            holds the run's parameters as JSON
 *   state.K.safetensors      vka_gan_save after iteration K (1-based)
 *   final.safetensors        vka_gan_save after the last iteration
 *   inputs.safetensors       per iteration K: real.K (d_steps * B, channels, res, res),
 *                            the real images of its D windows in the order fed;
 *                            z_d.K (d_steps * B, z_dim, 1, 1), the D phases' noise (stream
 *                            0); z_g.K (B, z_dim, 1, 1), the G phase's (stream 1)
 *   moments.safetensors      K.NAME.exp_avg and K.NAME.exp_avg_sq for every parameter
 *                            of G and D after iteration K: the Adam moments in PyTorch's
 *                            layout (the checkpoint holds them in the device's order),
 *                            from which the script recovers each step's gradient
 *   stats.json               vka_gan_get_stats after each iteration
 * The noise is drawn as src/gan.c's window() draws it: sample k of a stream is the k-th
 * sample that stream has given since the run started, whatever the micro-batch split.
 *
 * Usage: vkaccum-parity-gan OUT_DIR [--res 32] [--channels 1] [--width 8] [--z-dim 16]
 *        [--batch 8] [--micro 4] [--norm batch|none] [--loss bce|hinge]
 *        [--iterations 2] [--d-steps 1] [--ema-kimg 0.02] [--ema-rampup 0.05] [--seed 1] [--lr 2e-4]
 *        [--beta1 0.5] [--beta2 0.999] [--device SEL] */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gan.h"
#include "log.h"
#include "safetensors.h"

struct opts {
    struct vka_gan_params p;
    uint32_t iterations;
    const char *device, *out;
};

/* Real images: image k of the run is a smooth pattern of (seed, k), in [-1, 1]. */
struct reals {
    uint64_t next, seed;
    uint32_t res, channels;
    float *rec;     /* this iteration's images, d_steps * B of them */
    uint32_t rec_n; /* images recorded */
    uint32_t cap;
};

static int make_real(void *user, uint32_t n, float *x)
{
    struct reals *r = user;
    uint32_t plane = r->res * r->res, size = r->channels * plane;
    if (r->rec_n + n > r->cap) {
        vka_err("parity-gan: the D windows asked for %u images, more than the %u that "
                "d_steps * batch allows", r->rec_n + n, r->cap);
        return -EINVAL;
    }
    for (uint32_t i = 0; i < n; i++, r->next++) {
        double phase = 0.37 * (double)(r->next % 23) + 0.5 * (double)(r->seed % 7);
        for (uint32_t j = 0; j < size; j++) {
            uint32_t ch = j / plane, px = j % plane;
            x[(size_t)i * size + j] = (float)sin(phase + 1.3 * ch + 0.11 * (px % r->res) +
                                                 0.07 * (px / r->res) +
                                                 0.013 * (double)(r->next % 5) * (px / r->res));
        }
    }
    memcpy(r->rec + (size_t)r->rec_n * size, x, (size_t)n * size * sizeof(float));
    r->rec_n += n;
    return 0;
}

/* Tensors collected for one output file; every name and data block is owned. */
struct tlist {
    struct vka_st_tensor *t;
    size_t n, cap;
};

static int tl_add(struct tlist *l, const char *name, uint32_t rank, const uint64_t *shape,
                  const float *data, uint64_t count)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        struct vka_st_tensor *t = realloc(l->t, cap * sizeof(*t));
        if (!t)
            return -ENOMEM;
        l->t = t;
        l->cap = cap;
    }
    float *copy = malloc((count ? count : 1) * sizeof(float));
    char *nm = strdup(name);
    if (!copy || !nm) {
        free(copy);
        free(nm);
        return -ENOMEM;
    }
    memcpy(copy, data, count * sizeof(float));
    struct vka_st_tensor *t = &l->t[l->n++];
    *t = (struct vka_st_tensor){ .name = nm, .dtype = VKA_ST_F32, .ndim = rank, .data = copy };
    memcpy(t->shape, shape, rank * sizeof(uint64_t));
    return 0;
}

static void tl_free(struct tlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free((char *)l->t[i].name);
        free((void *)l->t[i].data);
    }
    free(l->t);
    *l = (struct tlist){ 0 };
}

static int tl_write(struct tlist *l, const char *path)
{
    return vka_st_write(path, &(struct vka_st_write_params){ .tensors = l->t,
                                                             .n_tensors = l->n });
}

/* The Adam moments of trainer `who` ("D" or "G") in the checkpoint just written to path,
 * per parameter in PyTorch's layout, as K.NAME.exp_avg / K.NAME.exp_avg_sq. The
 * checkpoint's train.WHO.optim.* are flat copies of the device's optimizer state, which
 * runs parallel to the parameter span WHO.* (same offsets, same layouts). */
static int add_moments(struct tlist *l, struct vka_graph *g, const struct vka_st_file *f,
                       const char *who, uint32_t iter)
{
    static const char *moment[2] = { "exp_avg", "exp_avg_sq" };
    char prefix[8], name[160];
    snprintf(prefix, sizeof(prefix), "%s.", who);
    struct vka_tensor span;
    int ret = vka_graph_span(g, VKA_VAL_PARAM, prefix, &span);
    if (ret < 0)
        return ret;
    for (int m = 0; m < 2; m++) {
        snprintf(name, sizeof(name), "train.%s.optim.%s", who, moment[m]);
        const struct vka_st_tensor *st = vka_st_find(f, name);
        uint64_t stored = 0;
        if (!st || st->dtype != VKA_ST_F32 || vka_st_numel(st, &stored) < 0 ||
            stored != vka_tensor_stored(&span)) {
            vka_err("parity-gan: %s: %s is missing or does not hold the %" PRIu64
                    " floats of the %s parameter span", f->path, name,
                    vka_tensor_stored(&span), prefix);
            return -EINVAL;
        }
        for (uint32_t i = 0; i < vka_graph_nvals(g); i++) {
            const struct vka_val *v = vka_graph_val(g, (int)i);
            if (v->kind != VKA_VAL_PARAM || strncmp(v->name, prefix, strlen(prefix)))
                continue;
            struct vka_tensor t = vka_graph_tensor(g, (int)i);
            const float *src = (const float *)st->data + (t.off - span.off);
            uint64_t count = vka_tensor_numel(&t);
            float *nchw = malloc(count * sizeof(float));
            if (!nchw)
                return -ENOMEM;
            if (t.layout == VKA_LAYOUT_WEIGHT)
                vka_weight_to_nchw(src, nchw, t.n, t.c, t.h, t.w);
            else
                memcpy(nchw, src, count * sizeof(float));
            const uint64_t d[4] = { v->n, v->c, v->h, v->w };
            snprintf(name, sizeof(name), "%u.%s.%s", iter, v->name, moment[m]);
            ret = tl_add(l, name, v->file_rank, d, nchw, count);
            free(nchw);
            if (ret < 0)
                return ret;
        }
    }
    return 0;
}

/* A double as JSON; a non-finite loss as Python's json module reads it. */
static void json_num(FILE *f, const char *key, double v, const char *sep)
{
    if (isnan(v))
        fprintf(f, "\"%s\": NaN%s", key, sep);
    else if (isinf(v))
        fprintf(f, "\"%s\": %sInfinity%s", key, v < 0 ? "-" : "", sep);
    else
        fprintf(f, "\"%s\": %.17g%s", key, v, sep);
}

static void stats_row(FILE *f, uint32_t k, const struct vka_gan_stats *s, bool last)
{
    fprintf(f, "  {\"iteration\": %u, \"d_steps\": %" PRIu64 ", \"g_steps\": %" PRIu64 ", ", k,
            s->d_steps, s->g_steps);
    json_num(f, "d_loss", s->d_loss, ", ");
    json_num(f, "g_loss", s->g_loss, ", ");
    json_num(f, "d_real", s->d_real, ", ");
    json_num(f, "d_fake", s->d_fake, ", ");
    json_num(f, "g_fake", s->g_fake, ", ");
    json_num(f, "d_norm", s->d_norm, ", ");
    json_num(f, "g_norm", s->g_norm, last ? "}\n" : "},\n");
}

static int write_config(char *buf, size_t size, const struct opts *o)
{
    const struct vka_gan_params *p = &o->p;
    return snprintf(buf, size,
                    "{\"res\": %u, \"channels\": %u, \"width\": %u, \"z_dim\": %u, "
                    "\"norm\": \"%s\", \"loss\": \"%s\", \"batch\": %u, \"micro\": %u, "
                    "\"d_steps\": %u, \"iterations\": %u, \"lr_g\": %.17g, \"lr_d\": %.17g, "
                    "\"beta1\": %.17g, \"beta2\": %.17g, \"eps\": 1e-08, \"ema_kimg\": %.17g, "
                    "\"ema_rampup\": %.17g, "
                    "\"seed\": %" PRIu64 "}",
                    p->model.res, p->model.channels, p->model.width, p->model.z_dim,
                    p->model.batch_norm ? "batch" : "none",
                    p->loss == VKA_GAN_HINGE ? "hinge" : "bce", p->batch, p->micro,
                    p->d_steps, o->iterations, p->lr_g, p->lr_d, p->beta1, p->beta2, p->ema_kimg, p->ema_rampup,
                    p->seed) >= (int)size ? -ENAMETOOLONG : 0;
}

static int run(const struct opts *o, struct vka_ctx *ctx)
{
    const struct vka_gan_params *p = &o->p;
    const struct vka_dcgan_params *mp = &p->model;
    struct vka_gan *gan = NULL;
    struct tlist inputs = { 0 }, moments = { 0 };
    uint32_t size = mp->channels * mp->res * mp->res, dn = p->d_steps * p->batch;
    struct reals r = { .seed = p->seed, .res = mp->res, .channels = mp->channels, .cap = dn };
    float *zd = malloc((size_t)dn * mp->z_dim * sizeof(float));
    float *zg = malloc((size_t)p->batch * mp->z_dim * sizeof(float));
    r.rec = malloc((size_t)dn * size * sizeof(float));
    char path[4096], name[64], config[1024];
    FILE *stats = NULL;
    int ret = write_config(config, sizeof(config), o);
    struct vka_st_meta meta[] = { { "config", config }, { "kind", "vkaccum-parity-gan" } };
    if (!zd || !zg || !r.rec)
        ret = -ENOMEM;
    if (ret == 0)
        ret = vka_gan_create(ctx, p, &gan);
    if (ret == 0) {
        snprintf(path, sizeof(path), "%s/init.safetensors", o->out);
        ret = vka_gan_save(gan, path, NULL, 0, meta, 2);
    }
    snprintf(path, sizeof(path), "%s/stats.json", o->out);
    if (ret == 0 && !(stats = fopen(path, "w"))) {
        ret = -errno;
        vka_err("parity-gan: cannot write %s: %s", path, strerror(-ret));
    }
    if (ret == 0)
        fprintf(stats, "[\n");
    for (uint32_t k = 1; ret == 0 && k <= o->iterations; k++) {
        /* the streams' positions before this iteration, as window() counts them */
        vka_gan_noise(p->seed, 0, (uint64_t)(k - 1) * dn, dn, mp->z_dim, zd);
        vka_gan_noise(p->seed, 1, (uint64_t)(k - 1) * p->batch, p->batch, mp->z_dim, zg);
        r.rec_n = 0;
        if ((ret = vka_gan_iteration(gan, make_real, &r)) < 0)
            break;
        if (r.rec_n != dn) {
            vka_err("parity-gan: iteration %u fed %u real images, expected d_steps * batch "
                    "= %u", k, r.rec_n, dn);
            ret = -EINVAL;
            break;
        }
        const uint64_t xs[4] = { dn, mp->channels, mp->res, mp->res };
        const uint64_t zds[4] = { dn, mp->z_dim, 1, 1 }, zgs[4] = { p->batch, mp->z_dim, 1, 1 };
        snprintf(name, sizeof(name), "real.%u", k);
        ret = tl_add(&inputs, name, 4, xs, r.rec, (uint64_t)dn * size);
        snprintf(name, sizeof(name), "z_d.%u", k);
        if (ret == 0)
            ret = tl_add(&inputs, name, 4, zds, zd, (uint64_t)dn * mp->z_dim);
        snprintf(name, sizeof(name), "z_g.%u", k);
        if (ret == 0)
            ret = tl_add(&inputs, name, 4, zgs, zg, (uint64_t)p->batch * mp->z_dim);
        snprintf(path, sizeof(path), "%s/state.%u.safetensors", o->out, k);
        if (ret == 0)
            ret = vka_gan_save(gan, path, NULL, 0, meta, 2);
        struct vka_st_file *f = NULL;
        if (ret == 0)
            ret = vka_st_read(path, &f);
        if (ret == 0)
            ret = add_moments(&moments, vka_gan_graph(gan), f, "D", k);
        if (ret == 0)
            ret = add_moments(&moments, vka_gan_graph(gan), f, "G", k);
        vka_st_file_destroy(&f);
        struct vka_gan_stats s;
        vka_gan_get_stats(gan, &s);
        stats_row(stats, k, &s, k == o->iterations);
    }
    if (stats) {
        fprintf(stats, "]\n");
        if (fclose(stats) != 0 && ret == 0) {
            vka_err("parity-gan: writing %s/stats.json failed: %s", o->out, strerror(errno));
            ret = -EIO;
        }
    }
    if (ret == 0) {
        snprintf(path, sizeof(path), "%s/final.safetensors", o->out);
        ret = vka_gan_save(gan, path, NULL, 0, meta, 2);
    }
    if (ret == 0) {
        snprintf(path, sizeof(path), "%s/inputs.safetensors", o->out);
        ret = tl_write(&inputs, path);
    }
    if (ret == 0) {
        snprintf(path, sizeof(path), "%s/moments.safetensors", o->out);
        ret = tl_write(&moments, path);
    }
    tl_free(&inputs);
    tl_free(&moments);
    vka_gan_destroy(&gan);
    free(zd);
    free(zg);
    free(r.rec);
    return ret;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: vkaccum-parity-gan OUT_DIR [--res 32] [--channels 1] [--width 8]\n"
               "       [--z-dim 16] [--batch 8] [--micro 4] [--norm batch|none]\n"
               "       [--loss bce|hinge] [--iterations 2] [--d-steps 1] [--ema-kimg 0.02] [--ema-rampup 0.05]\n"
               "       [--seed 1] [--lr 2e-4] [--beta1 0.5] [--beta2 0.999] [--device SEL]\n"
               "Trains a DCGAN with src/gan.c on deterministic inputs and writes the initial\n"
               "and final states, the inputs, the Adam moments and the losses into OUT_DIR\n"
               "for tools/parity/dcgan.py.\n");
}

static int parse_u32(const char *opt, const char *s, uint32_t lo, uint32_t *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end || !*s || s[0] == '-' || x < lo || x > UINT32_MAX) {
        fprintf(stderr, "vkaccum-parity-gan: %s wants a whole number >= %u, not '%s'\n", opt,
                lo, s);
        return -1;
    }
    *v = (uint32_t)x;
    return 0;
}

static int parse_f64(const char *opt, const char *s, double *v)
{
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    if (errno || *end || !*s || !isfinite(*v)) {
        fprintf(stderr, "vkaccum-parity-gan: %s wants a number, not '%s'\n", opt, s);
        return -1;
    }
    return 0;
}

static int parse(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){
        .p = { .model = { .res = 32, .channels = 1, .width = 8, .z_dim = 16, .batch_norm = true },
               .loss = VKA_GAN_BCE, .batch = 8, .micro = 4, .d_steps = 1, .lr_g = 2e-4,
               .lr_d = 2e-4, .beta1 = 0.5, .beta2 = 0.999, .ema_kimg = 0.02,
               .ema_rampup = 0.05, .seed = 1 },
        .iterations = 2 };
    struct vka_gan_params *p = &o->p;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 1;
        }
        if (a[0] != '-') {
            if (o->out) {
                fprintf(stderr, "vkaccum-parity-gan: a second OUT_DIR '%s'\n", a);
                return -1;
            }
            o->out = a;
            continue;
        }
        if (!v) {
            fprintf(stderr, "vkaccum-parity-gan: %s wants a value\n", a);
            return -1;
        }
        i++;
        if (!strcmp(a, "--res"))
            bad = parse_u32(a, v, 1, &p->model.res);
        else if (!strcmp(a, "--channels"))
            bad = parse_u32(a, v, 1, &p->model.channels);
        else if (!strcmp(a, "--width"))
            bad = parse_u32(a, v, 1, &p->model.width);
        else if (!strcmp(a, "--z-dim"))
            bad = parse_u32(a, v, 1, &p->model.z_dim);
        else if (!strcmp(a, "--batch"))
            bad = parse_u32(a, v, 1, &p->batch);
        else if (!strcmp(a, "--micro"))
            bad = parse_u32(a, v, 1, &p->micro);
        else if (!strcmp(a, "--iterations"))
            bad = parse_u32(a, v, 1, &o->iterations);
        else if (!strcmp(a, "--d-steps"))
            bad = parse_u32(a, v, 1, &p->d_steps);
        else if (!strcmp(a, "--ema-kimg"))
            bad = parse_f64(a, v, &p->ema_kimg);
        else if (!strcmp(a, "--ema-rampup"))
            bad = parse_f64(a, v, &p->ema_rampup);
        else if (!strcmp(a, "--lr")) {
            bad = parse_f64(a, v, &p->lr_g);
            p->lr_d = p->lr_g;
        } else if (!strcmp(a, "--beta1"))
            bad = parse_f64(a, v, &p->beta1);
        else if (!strcmp(a, "--beta2"))
            bad = parse_f64(a, v, &p->beta2);
        else if (!strcmp(a, "--device"))
            o->device = v;
        else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            p->seed = strtoull(v, &end, 0);
            if (errno || *end || !*v || v[0] == '-') {
                fprintf(stderr, "vkaccum-parity-gan: --seed wants a whole number, not '%s'\n",
                        v);
                bad = -1;
            }
        } else if (!strcmp(a, "--norm")) {
            if (!strcmp(v, "batch") || !strcmp(v, "none"))
                p->model.batch_norm = !strcmp(v, "batch");
            else {
                fprintf(stderr, "vkaccum-parity-gan: --norm %s: give batch or none\n", v);
                bad = -1;
            }
        } else if (!strcmp(a, "--loss")) {
            if (!strcmp(v, "bce") || !strcmp(v, "hinge"))
                p->loss = !strcmp(v, "hinge") ? VKA_GAN_HINGE : VKA_GAN_BCE;
            else {
                fprintf(stderr, "vkaccum-parity-gan: --loss %s: give bce or hinge\n", v);
                bad = -1;
            }
        } else {
            fprintf(stderr, "vkaccum-parity-gan: unknown option %s\n", a);
            bad = -1;
        }
        if (bad)
            return -1;
    }
    if (!o->out) {
        fprintf(stderr, "vkaccum-parity-gan: say where the files go: OUT_DIR\n");
        return -1;
    }
    if (p->micro > p->batch) {
        fprintf(stderr, "vkaccum-parity-gan: --micro %u is larger than --batch %u\n", p->micro,
                p->batch);
        return -1;
    }
    if (p->ema_kimg < 0 || p->ema_rampup < 0) {
        fprintf(stderr, "vkaccum-parity-gan: --ema-kimg %g, --ema-rampup %g: give numbers >= 0\n",
                p->ema_kimg, p->ema_rampup);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    int ret = parse(argc, argv, &o);
    if (ret != 0) {
        if (ret < 0)
            usage(stderr);
        return ret < 0 ? 2 : 0;
    }
    if (mkdir(o.out, 0777) < 0 && errno != EEXIST) {
        fprintf(stderr, "vkaccum-parity-gan: cannot make %s: %s\n", o.out, strerror(errno));
        return 1;
    }
    struct vka_ctx *ctx = NULL;
    ret = vka_ctx_create(&(struct vka_ctx_params){ .device = o.device, .validation = -1 }, &ctx);
    if (ret == 0)
        ret = run(&o, ctx);
    unsigned vmsg = ctx ? vka_ctx_validation_count(ctx) : 0;
    if (ret == 0)
        printf("device: %s; %u iterations written to %s\n", ctx->info.name, o.iterations,
               o.out);
    vka_ctx_destroy(&ctx);
    if (ret < 0) {
        fprintf(stderr, "vkaccum-parity-gan: %s\n", vka_last_error());
        return 1;
    }
    if (vmsg) {
        fprintf(stderr, "vkaccum-parity-gan: %u validation message(s)\n", vmsg);
        return 1;
    }
    return 0;
}
