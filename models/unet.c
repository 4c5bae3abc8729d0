/* The U-Net builder; see unet.h. */
#include <errno.h>
#include <stdio.h>

#include "log.h"
#include "models/unet.h"

static int norm_relu(struct vka_graph *g, const struct vka_unet_params *p, const char *name,
                     int x)
{
    int h = p->norm == VKA_UNET_GROUP ? vka_layer_group_norm(g, name, x, p->groups)
                                      : vka_layer_batch_norm(g, name, x);
    return h < 0 ? h : vka_layer_norm_act(g, h, VKA_OP_relu, 0);
}

/* conv3x3 -> norm -> relu, twice: prefix.conv1, prefix.norm1, prefix.conv2, prefix.norm2 */
static int double_conv(struct vka_graph *g, const struct vka_unet_params *p,
                       const char *prefix, int x, uint32_t out_c)
{
    char name[64];
    int h = x;
    for (int i = 1; i <= 2 && h >= 0; i++) {
        snprintf(name, sizeof(name), "%s.conv%d", prefix, i);
        h = vka_layer_conv2d(g, name, h, out_c, 3, 1, 1, false);
        snprintf(name, sizeof(name), "%s.norm%d", prefix, i);
        if (h >= 0)
            h = norm_relu(g, p, name, h);
    }
    return h;
}

int vka_unet_build(struct vka_graph *g, const struct vka_unet_params *p, struct vka_unet *net)
{
    if (p->depth < 1 || p->depth > 6 || p->width < 1 || p->classes < 1 ||
        p->in_channels < 1 || p->size % (1u << p->depth) || p->size == 0) {
        vka_err("unet: depth %u (1..6), width %u, classes %u and input size %u (a multiple of "
                "2^depth = %u) do not make a U-Net", p->depth, p->width, p->classes, p->size,
                1u << (p->depth < 31 ? p->depth : 0));
        return -EINVAL;
    }
    if (p->norm == VKA_UNET_GROUP && (p->groups == 0 || p->width % p->groups)) {
        vka_err("unet: GroupNorm with %u groups needs a width that is a multiple of it "
                "(--width %u)", p->groups, p->width);
        return -EINVAL;
    }
    char name[64];
    int skips[7];
    int h = net->image = vka_graph_input(g, "image", VKA_F32, VKA_LAYOUT_NHWC4, p->in_channels,
                                         p->size, p->size);
    union vka_op_params pool = { .pool = { 2, 2, 0 } };
    for (uint32_t i = 0; i <= p->depth && h >= 0; i++) {
        snprintf(name, sizeof(name), "enc.%u", i);
        if (vka_graph_mark(g, VKA_MARK_BLOCK, name) < 0)
            return -ENOMEM;
        if (i > 0)
            h = vka_graph_node(g, VKA_OP_max_pool2d, &pool, h, -1, -1);
        if (h >= 0)
            h = double_conv(g, p, name, h, p->width << i);
        skips[i] = h;
    }
    for (uint32_t i = 0; i < p->depth && h >= 0; i++) {
        uint32_t level = p->depth - 1 - i, c = p->width << level;
        snprintf(name, sizeof(name), "dec.%u", i);
        if (vka_graph_mark(g, VKA_MARK_BLOCK, name) < 0)
            return -ENOMEM;
        snprintf(name, sizeof(name), "dec.%u.up", i);
        if (!p->bilinear) {
            h = vka_layer_conv_transpose2d(g, name, h, c, 2, 2, 0, 0, true);
        } else {
            const struct vka_val *v = vka_graph_val(g, h);
            union vka_op_params up = { .resize = { v->h * 2, v->w * 2 } };
            h = vka_graph_node(g, VKA_OP_upsample_bilinear, &up, h, -1, -1);
            if (h >= 0)
                h = vka_layer_conv2d(g, name, h, c, 1, 1, 0, true);
        }
        if (h >= 0)
            h = vka_graph_node(g, VKA_OP_concat, NULL, h, skips[level], -1);
        snprintf(name, sizeof(name), "dec.%u", i);
        if (h >= 0)
            h = double_conv(g, p, name, h, c);
    }
    if (h >= 0 && vka_graph_mark(g, VKA_MARK_BLOCK, "head") < 0)
        return -ENOMEM;
    if (h >= 0)
        h = vka_layer_conv2d(g, "head", h, p->classes, 1, 1, 0, true);
    net->logits = h;
    return h < 0 ? h : 0;
}
