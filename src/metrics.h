/* Segmentation metrics (mmsegmentation's rules): a confusion matrix over the pixels whose
 * target is not ignored, per-class IoU = TP / (TP + FP + FN), mIoU the mean over the
 * classes whose union is not empty (nanmean), pixel accuracy = sum TP / counted pixels. */
#ifndef VKA_METRICS_H
#define VKA_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "datasets/dataset.h"

struct vka_seg_metrics {
    uint32_t classes;
    uint64_t *conf; /* conf[target * classes + prediction] */
    double miou, pixel_acc;
    double iou[VKA_MAX_CLASSES];
    bool present[VKA_MAX_CLASSES];
};

int vka_seg_metrics_init(struct vka_seg_metrics *s, uint32_t classes); /* -ENOMEM */
/* Counts n pixels; targets equal to ignore_index, or out of range, are left out. */
void vka_seg_metrics_add(struct vka_seg_metrics *s, const int32_t *target, const uint8_t *pred,
                         uint64_t n, int32_t ignore_index);
/* IoU, mIoU and pixel accuracy from the counts so far. */
void vka_seg_metrics_finish(struct vka_seg_metrics *s);
void vka_seg_metrics_free(struct vka_seg_metrics *s);

#endif
