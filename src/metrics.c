/* Segmentation metrics; see metrics.h. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

int vka_seg_metrics_init(struct vka_seg_metrics *s, uint32_t classes)
{
    memset(s, 0, sizeof(*s));
    s->classes = classes;
    s->conf = calloc((size_t)classes * classes, sizeof(uint64_t));
    return s->conf ? 0 : -ENOMEM;
}

void vka_seg_metrics_add(struct vka_seg_metrics *s, const int32_t *target, const uint8_t *pred,
                         uint64_t n, int32_t ignore_index)
{
    for (uint64_t i = 0; i < n; i++)
        if (target[i] != ignore_index && target[i] >= 0 && (uint32_t)target[i] < s->classes &&
            pred[i] < s->classes)
            s->conf[(size_t)target[i] * s->classes + pred[i]]++;
}

void vka_seg_metrics_finish(struct vka_seg_metrics *s)
{
    uint32_t C = s->classes, present = 0;
    uint64_t tp_all = 0, all = 0;
    double sum = 0;
    for (uint32_t k = 0; k < C; k++) {
        uint64_t tp = s->conf[(size_t)k * C + k], row = 0, col = 0;
        for (uint32_t j = 0; j < C; j++) {
            row += s->conf[(size_t)k * C + j];
            col += s->conf[(size_t)j * C + k];
        }
        uint64_t uni = row + col - tp;
        s->present[k] = uni > 0;
        s->iou[k] = uni ? (double)tp / uni : NAN;
        if (uni) {
            sum += s->iou[k];
            present++;
        }
        tp_all += tp;
        all += row;
    }
    s->miou = present ? sum / present : NAN;
    s->pixel_acc = all ? (double)tp_all / all : NAN;
}

void vka_seg_metrics_free(struct vka_seg_metrics *s)
{
    free(s->conf);
    s->conf = NULL;
}
