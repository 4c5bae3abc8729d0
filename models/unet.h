/* U-Net (Ronneberger et al.) for semantic segmentation: depth levels of two 3x3 convs
 * with a norm and ReLU each, max-pooling down, transposed-conv (or bilinear + 1x1 conv)
 * up, skip concatenations, a 1x1 head. Parameter names follow the PyTorch module in
 * tools/parity/unet.py (enc.0.conv1.weight, ..., head.bias). */
#ifndef VKA_MODELS_UNET_H
#define VKA_MODELS_UNET_H

#include "graph.h"

enum vka_unet_norm { VKA_UNET_GROUP, VKA_UNET_BATCH };

struct vka_unet_params {
    uint32_t in_channels; /* 3 */
    uint32_t classes;
    uint32_t depth;       /* down-samplings, default 4 */
    uint32_t width;       /* channels of the first level, doubling per level; 32 */
    enum vka_unet_norm norm;
    uint32_t groups;      /* GroupNorm groups, 8 */
    bool bilinear;        /* up-sampling by bilinear x2 + 1x1 conv instead of convT */
    uint32_t size;        /* input height and width: a multiple of 2^depth */
};

struct vka_unet {
    int image;  /* INPUT (N, in_channels, size, size) */
    int logits; /* (N, classes, size, size) */
};

int vka_unet_build(struct vka_graph *g, const struct vka_unet_params *p, struct vka_unet *net);

#endif
