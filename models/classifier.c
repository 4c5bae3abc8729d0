/* The classifier builder; see classifier.h. */
#include <errno.h>
#include <stdio.h>

#include "log.h"
#include "models/classifier.h"

int vka_classifier_build(struct vka_graph *g, const struct vka_classifier_params *p,
                         struct vka_classifier *net)
{
    if ((p->channels != 1 && p->channels != 3) || p->res < 8 || p->res > 256 ||
        p->res % 8 || p->classes < 2) {
        vka_err("classifier: %u channels (1 or 3), input size %u (a multiple of 8, 8..256) "
                "and %u classes (>= 2) do not make the classifier", p->channels, p->res,
                p->classes);
        return -EINVAL;
    }
    static const uint32_t widths[3] = { 32, 64, 128 };
    union vka_op_params pool = { .pool = { 2, 2, 0 } };
    char name[32];
    int h = net->image = vka_graph_input(g, "image", VKA_F32, VKA_LAYOUT_NHWC4, p->channels,
                                         p->res, p->res);
    for (int i = 0; i < 3 && h >= 0; i++) {
        snprintf(name, sizeof(name), "features.%d", 3 * i);
        h = vka_layer_conv2d(g, name, h, widths[i], 3, 1, 1, true);
        if (h >= 0)
            h = vka_layer_act(g, VKA_OP_relu, h, 0);
        if (h >= 0)
            h = vka_graph_node(g, VKA_OP_max_pool2d, &pool, h, -1, -1);
    }
    if (h >= 0)
        h = vka_layer_conv2d(g, "features.9", h, VKA_CLASSIFIER_FEATURES, p->res / 8, 1, 0, true);
    if (h >= 0)
        h = vka_layer_act(g, VKA_OP_relu, h, 0);
    net->features = h;
    if (h >= 0)
        h = vka_layer_linear(g, "classifier", h, p->classes, true);
    net->logits = h;
    return h < 0 ? h : 0;
}
