/* The DCGAN builders; see dcgan.h. */
#include <errno.h>
#include <stdio.h>

#include "log.h"
#include "models/dcgan.h"

/* numbers modules as nn.Sequential does */
struct seq {
    struct vka_graph *g;
    const char *prefix;
    const struct vka_dcgan_params *p;
    unsigned k;
};

static int set_init(struct vka_graph *g, const char *module, const char *what,
                    enum vka_init init, float arg)
{
    char name[96];
    snprintf(name, sizeof(name), "%s.%s", module, what);
    int v = vka_graph_find(g, name);
    return v < 0 ? v : vka_graph_set_init(g, v, init, arg);
}

/* conv or convT 4x4, then BatchNorm when norm (and the model has them), then act
 * (VKA_OP_COUNT: none): a block of its own (--recompute blocks and all are alike) */
static int block(struct seq *s, int x, bool transpose, uint32_t out_c, uint32_t stride,
                 uint32_t pad, bool norm, enum vka_op act)
{
    char m[64];
    bool bias = !s->p->batch_norm;
    norm &= s->p->batch_norm;
    snprintf(m, sizeof(m), "%s.%u", s->prefix, s->k);
    if (vka_graph_mark(s->g, VKA_MARK_BLOCK, m) < 0)
        return -ENOMEM;
    snprintf(m, sizeof(m), "%s.main.%u", s->prefix, s->k++);
    int h = transpose ? vka_layer_conv_transpose2d(s->g, m, x, out_c, 4, stride, pad, 0, bias)
                      : vka_layer_conv2d(s->g, m, x, out_c, 4, stride, pad, bias);
    int ret = h < 0 ? h : set_init(s->g, m, "weight", VKA_INIT_NORMAL, 0.02f);
    if (ret == 0 && norm) {
        snprintf(m, sizeof(m), "%s.main.%u", s->prefix, s->k++);
        h = vka_layer_batch_norm(s->g, m, h);
        ret = h < 0 ? h : set_init(s->g, m, "weight", VKA_INIT_NORMAL_ONE, 0.02f);
    }
    if (ret == 0 && act != VKA_OP_COUNT) {
        s->k++;
        h = norm ? vka_layer_norm_act(s->g, h, act, 0.2f) : vka_layer_act(s->g, act, h, 0.2f);
    }
    return ret < 0 ? ret : h;
}

static uint32_t levels(const struct vka_dcgan_params *p)
{
    uint32_t l = 0;
    while ((4u << l) < p->res)
        l++;
    return l; /* log2(res) - 2 */
}

static uint32_t mult(uint32_t i)
{
    return i >= 3 ? 8 : 1u << i;
}

int vka_dcgan_check(const struct vka_dcgan_params *p)
{
    if ((p->res != 32 && p->res != 64 && p->res != 128 && p->res != 256) ||
        (p->channels != 1 && p->channels != 3) || p->width == 0 || p->width > 1024 ||
        p->z_dim == 0 || p->z_dim > 4096) {
        vka_err("dcgan: res %u (32, 64, 128 or 256), channels %u (1 or 3), width %u "
                "(1..1024) and z-dim %u (1..4096) do not make a DCGAN", p->res, p->channels,
                p->width, p->z_dim);
        return -EINVAL;
    }
    return 0;
}

int vka_dcgan_generator(struct vka_graph *g, const struct vka_dcgan_params *p,
                        const char *prefix, int z)
{
    int ret = vka_dcgan_check(p);
    if (ret < 0)
        return ret;
    struct seq s = { g, prefix, p, 0 };
    uint32_t L = levels(p);
    int h = block(&s, z, true, mult(L - 1) * p->width, 1, 0, true, VKA_OP_relu);
    for (uint32_t i = L - 1; i >= 1 && h >= 0; i--)
        h = block(&s, h, true, mult(i - 1) * p->width, 2, 1, true, VKA_OP_relu);
    if (h >= 0)
        h = block(&s, h, true, p->channels, 2, 1, false, VKA_OP_tanh);
    return h;
}

int vka_dcgan_discriminator(struct vka_graph *g, const struct vka_dcgan_params *p,
                            const char *prefix, int x)
{
    int ret = vka_dcgan_check(p);
    if (ret < 0)
        return ret;
    struct seq s = { g, prefix, p, 0 };
    uint32_t L = levels(p);
    int h = block(&s, x, false, p->width, 2, 1, false, VKA_OP_leaky_relu);
    for (uint32_t i = 1; i < L && h >= 0; i++)
        h = block(&s, h, false, mult(i) * p->width, 2, 1, true, VKA_OP_leaky_relu);
    if (h >= 0)
        h = block(&s, h, false, 1, 1, 0, false, VKA_OP_COUNT);
    return h;
}
