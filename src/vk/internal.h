/* Functions the runtime's files call on each other; not for use outside src/vk/. */
#ifndef VKA_VK_INTERNAL_H
#define VKA_VK_INTERNAL_H

#include "vk/vk.h"

void vka_mem_init(struct vka_ctx *ctx, uint64_t user_budget);          /* memory.c */
int vka_pipeline_cache_open(struct vka_ctx *ctx, const char *dir);     /* pipeline.c */
void vka_pipeline_cache_close(struct vka_ctx *ctx);
void vka_pipes_destroy(struct vka_ctx *ctx);

#endif
