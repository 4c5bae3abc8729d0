/* The small image classifier whose penultimate features the GAN's Fréchet distance is
 * measured on (src/fidnet.c trains and runs it). Parameter names are those of this
 * PyTorch module, so a checkpoint loads into it with load_state_dict:
 *
 *   nn.Sequential(OrderedDict(
 *       features=nn.Sequential(
 *           nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 0 1 2
 *           nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),         # 3 4 5
 *           nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),        # 6 7 8
 *           nn.Conv2d(128, 128, res // 8), nn.ReLU(), nn.Flatten()),             # 9 10 11
 *       classifier=nn.Linear(128, classes)))
 *
 * features.9 is the fully connected layer written as a conv whose kernel covers the
 * whole res/8 x res/8 map; the output of its ReLU is the feature vector. */
#ifndef VKA_MODELS_CLASSIFIER_H
#define VKA_MODELS_CLASSIFIER_H

#include "graph.h"

#define VKA_CLASSIFIER_FEATURES 128u

struct vka_classifier_params {
    uint32_t channels; /* 1 or 3 */
    uint32_t res;      /* input height and width: a multiple of 8, 8..256 (32 or 64) */
    uint32_t classes;  /* >= 2 */
};

struct vka_classifier {
    int image;    /* INPUT (N, channels, res, res), values in [-1, 1] */
    int features; /* (N, VKA_CLASSIFIER_FEATURES, 1, 1), after the ReLU */
    int logits;   /* (N, classes, 1, 1) */
};

int vka_classifier_build(struct vka_graph *g, const struct vka_classifier_params *p,
                         struct vka_classifier *net);

#endif
