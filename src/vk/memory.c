/* Buffers, their texel views, staged transfers, and the memory accountant: bytes per
 * category, current and peak, checked against a budget before anything is allocated. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "vk/fault.h"
#include "vk/internal.h"

#define STAGING_CHUNK (8u << 20)

const char *vka_mem_cat_name(enum vka_mem_cat cat)
{
    static const char *names[VKA_MEM_CAT_COUNT] = {
        "parameters", "gradients", "optimizer state", "activations", "staging", "other" };
    return cat < VKA_MEM_CAT_COUNT ? names[cat] : "?";
}

static void fmt_bytes(char *buf, size_t size, uint64_t b)
{
    if (b >= (1ull << 30))
        snprintf(buf, size, "%.2f GiB", (double)b / (1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(buf, size, "%.2f MiB", (double)b / (1ull << 20));
    else if (b >= (1ull << 10))
        snprintf(buf, size, "%.2f KiB", (double)b / (1ull << 10));
    else
        snprintf(buf, size, "%" PRIu64 " B", b);
}

void vka_mem_init(struct vka_ctx *ctx, uint64_t user_budget)
{
    uint64_t budget = 0;
    /* The budget of the largest device-local heap (VK_EXT_memory_budget's, else its
     * size): where parameters and activations live. */
    for (uint32_t i = 0; i < ctx->info.heap_count; i++)
        if (ctx->info.heap_device_local[i] && ctx->info.heap_budget[i] > budget)
            budget = ctx->info.heap_budget[i];
    if (!budget)
        for (uint32_t i = 0; i < ctx->info.heap_count; i++)
            if (ctx->info.heap_budget[i] > budget)
                budget = ctx->info.heap_budget[i];
    if (user_budget)
        budget = user_budget;
    memset(&ctx->mem, 0, sizeof(ctx->mem));
    ctx->mem.budget = budget;
}

void vka_mem_get_stats(struct vka_ctx *ctx, struct vka_mem_stats *stats)
{
    *stats = ctx->mem;
}

void vka_mem_reset_peak(struct vka_ctx *ctx)
{
    for (int c = 0; c < VKA_MEM_CAT_COUNT; c++)
        ctx->mem.peak[c] = ctx->mem.cur[c];
    ctx->mem.total_peak = ctx->mem.total_cur;
}

static int mem_charge(struct vka_ctx *ctx, enum vka_mem_cat cat, uint64_t bytes)
{
    struct vka_mem_stats *m = &ctx->mem;
    if (m->total_cur + bytes > m->budget || m->total_cur + bytes < m->total_cur) {
        char want[32], cur[32], budget[32], detail[512];
        fmt_bytes(want, sizeof(want), bytes);
        fmt_bytes(cur, sizeof(cur), m->total_cur);
        fmt_bytes(budget, sizeof(budget), m->budget);
        size_t used = 0;
        detail[0] = '\0';
        for (int c = 0; c < VKA_MEM_CAT_COUNT && used < sizeof(detail); c++) {
            char v[32];
            fmt_bytes(v, sizeof(v), m->cur[c]);
            used += (size_t)snprintf(detail + used, sizeof(detail) - used, "%s%s %s",
                                     c ? ", " : "", vka_mem_cat_name((enum vka_mem_cat)c), v);
        }
        vka_err("out of device memory budget: %s of %s (%" PRIu64 " bytes) asked for, "
                "%s in use of a %s budget (%s)", want, vka_mem_cat_name(cat), bytes, cur,
                budget, detail);
        return -ENOMEM;
    }
    m->cur[cat] += bytes;
    m->total_cur += bytes;
    if (m->cur[cat] > m->peak[cat])
        m->peak[cat] = m->cur[cat];
    if (m->total_cur > m->total_peak)
        m->total_peak = m->total_cur;
    return 0;
}

static void mem_release(struct vka_ctx *ctx, enum vka_mem_cat cat, uint64_t bytes)
{
    ctx->mem.cur[cat] -= bytes;
    ctx->mem.total_cur -= bytes;
}

static int memory_type(struct vka_ctx *ctx, uint32_t bits, bool host_visible, uint32_t *type)
{
    const VkPhysicalDeviceMemoryProperties *mp = &ctx->mem_props;
    VkMemoryPropertyFlags want[3];
    int nwant = 0;
    if (host_visible) {
        want[nwant++] = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT |
                        VK_MEMORY_PROPERTY_HOST_CACHED_BIT;
        want[nwant++] = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    } else {
        want[nwant++] = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
        want[nwant++] = 0;
    }
    for (int w = 0; w < nwant; w++)
        for (uint32_t i = 0; i < mp->memoryTypeCount; i++)
            if ((bits & (1u << i)) && (mp->memoryTypes[i].propertyFlags & want[w]) == want[w]) {
                *type = i;
                return 0;
            }
    vka_err("device %s has no %s memory type for a buffer", ctx->info.name,
            host_visible ? "host-visible coherent" : "device");
    return -ENOTSUP;
}

int vka_buf_create(struct vka_ctx *ctx, const struct vka_buf_params *params,
                   struct vka_buf **out)
{
    int ret = 0;
    bool charged = false;
    *out = NULL;
    if (params->cat >= VKA_MEM_CAT_COUNT) {
        vka_err("vka_buf_create: unknown memory category %d", (int)params->cat);
        return -EINVAL;
    }
    struct vka_buf *b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->ctx = ctx;
    b->cat = params->cat;
    b->host_visible = params->host_visible;
    b->size = (params->size + 15) & ~(VkDeviceSize)15;
    if (b->size == 0)
        b->size = 16;
    if (b->size < params->size) {
        vka_err("vka_buf_create: size %" PRIu64 " overflows", (uint64_t)params->size);
        free(b);
        return -EINVAL;
    }
    if (params->dry) {
        b->dry = true;
        ctx->mem.live_buffers++;
        *out = b;
        return 0;
    }

    VkBufferCreateInfo bci = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = b->size,
        .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT |
                 VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    VK(vkCreateBuffer(ctx->dev, &bci, NULL, &b->buf));
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(ctx->dev, b->buf, &req);
    ret = mem_charge(ctx, b->cat, req.size);
    if (ret < 0)
        goto fail;
    charged = true;
    b->accounted = req.size;

    uint32_t type;
    ret = memory_type(ctx, req.memoryTypeBits, b->host_visible, &type);
    if (ret < 0)
        goto fail;
    VkMemoryAllocateInfo mai = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
        .allocationSize = req.size,
        .memoryTypeIndex = type,
    };
    uint64_t nth;
    bool injected = vka_fault_hit(VKA_FAULT_ALLOC, &nth);
    VkResult r = injected ? VK_ERROR_OUT_OF_DEVICE_MEMORY
                          : vkAllocateMemory(ctx->dev, &mai, NULL, &b->mem);
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY) {
        char want[32], note[64];
        fmt_bytes(want, sizeof(want), req.size);
        vka_fault_note(injected, VKA_FAULT_ALLOC, nth, note, sizeof(note));
        vka_err("out of device memory: the device refused %s of %s (%s): lower the "
                "micro-batch or --mem-budget%s", want, vka_mem_cat_name(b->cat),
                vka_result_name(r), note);
        ret = -ENOMEM;
        goto fail;
    }
    VK(r);
    VK(vkBindBufferMemory(ctx->dev, b->buf, b->mem, 0));
    if (b->host_visible)
        VK(vkMapMemory(ctx->dev, b->mem, 0, VK_WHOLE_SIZE, 0, &b->mapped));
    ctx->mem.live_buffers++;
    *out = b;
    return 0;
fail:
    if (b->mem)
        vkFreeMemory(ctx->dev, b->mem, NULL);
    if (b->buf)
        vkDestroyBuffer(ctx->dev, b->buf, NULL);
    if (charged)
        mem_release(ctx, b->cat, b->accounted);
    free(b);
    return ret;
}

void vka_buf_destroy(struct vka_buf **pbuf)
{
    struct vka_buf *b = *pbuf;
    if (!b)
        return;
    struct vka_ctx *ctx = b->ctx;
    if (b->dry) {
        ctx->mem.live_buffers--;
        free(b);
        *pbuf = NULL;
        return;
    }
    vka_cmd_settle(ctx); /* work left running by a failed wait may still use it */
    if (b->texel_view)
        vkDestroyBufferView(ctx->dev, b->texel_view, NULL);
    if (b->mapped)
        vkUnmapMemory(ctx->dev, b->mem);
    vkDestroyBuffer(ctx->dev, b->buf, NULL);
    vkFreeMemory(ctx->dev, b->mem, NULL);
    mem_release(ctx, b->cat, b->accounted);
    ctx->mem.live_buffers--;
    free(b);
    *pbuf = NULL;
}

int vka_buf_texel_view(struct vka_buf *b, VkBufferView *view)
{
    int ret = 0;
    if (!b->texel_view) {
        struct vka_ctx *ctx = b->ctx;
        uint64_t texels = b->size / 16;
        if (texels > ctx->info.max_texel_elements) {
            vka_err("a buffer of %" PRIu64 " bytes passes this device's texel-buffer limit "
                    "of %u RGBA32F texels", (uint64_t)b->size, ctx->info.max_texel_elements);
            return -E2BIG;
        }
        VkBufferViewCreateInfo ci = {
            .sType = VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO,
            .buffer = b->buf,
            .format = VK_FORMAT_R32G32B32A32_SFLOAT,
            .offset = 0,
            .range = b->size,
        };
        VK(vkCreateBufferView(ctx->dev, &ci, NULL, &b->texel_view));
    }
    *view = b->texel_view;
    return 0;
fail:
    return ret;
}

uint64_t vka_staging_bytes(uint64_t transfer)
{
    uint64_t want = transfer < STAGING_CHUNK ? transfer : STAGING_CHUNK;
    return want < 65536 ? 65536 : (want + 15) & ~15ull;
}

static int staging_get(struct vka_ctx *ctx, size_t size, struct vka_buf **out)
{
    size_t want = vka_staging_bytes(size);
    if (ctx->staging && ctx->staging->size < want)
        vka_buf_destroy(&ctx->staging);
    if (!ctx->staging) {
        int ret = vka_buf_create(ctx, &(struct vka_buf_params){
            .size = want, .cat = VKA_MEM_STAGING,
            .host_visible = true }, &ctx->staging);
        if (ret < 0)
            return ret;
    }
    *out = ctx->staging;
    return 0;
}

static int bounds_check(const char *what, struct vka_buf *b, VkDeviceSize off, size_t size)
{
    if (off > b->size || size > b->size - off) {
        vka_err("%s: %zu bytes at offset %" PRIu64 " pass the end of a %" PRIu64
                "-byte buffer", what, size, (uint64_t)off, (uint64_t)b->size);
        return -EINVAL;
    }
    return 0;
}

static int staged_copy(struct vka_buf *b, VkDeviceSize off, void *host, size_t size, bool up)
{
    struct vka_ctx *ctx = b->ctx;
    struct vka_buf *stage;
    struct vka_cmd *cmd;
    if (b->dry) {
        vka_err("%s: a dry buffer has no memory", up ? "vka_buf_upload" : "vka_buf_download");
        return -EINVAL;
    }
    int ret = bounds_check(up ? "vka_buf_upload" : "vka_buf_download", b, off, size);
    if (ret < 0 || size == 0)
        return ret;
    ret = staging_get(ctx, size, &stage);
    if (ret < 0)
        return ret;
    if (!ctx->xfer && (ret = vka_cmd_create(ctx, &(struct vka_cmd_params){ 0 }, &ctx->xfer)) < 0)
        return ret;
    cmd = ctx->xfer;
    for (size_t done = 0; done < size; done += stage->size) {
        size_t n = size - done < stage->size ? size - done : stage->size;
        if (up)
            memcpy(stage->mapped, (char *)host + done, n);
        if ((ret = vka_cmd_begin(cmd)) < 0 ||
            (ret = up ? vka_cmd_copy(cmd, stage, 0, b, off + done, n)
                      : vka_cmd_copy(cmd, b, off + done, stage, 0, n)) < 0 ||
            (ret = vka_cmd_run(cmd)) < 0)
            break;
        if (!up)
            memcpy((char *)host + done, stage->mapped, n);
    }
    return ret;
}

int vka_buf_upload(struct vka_buf *b, VkDeviceSize offset, const void *data, size_t size)
{
    return staged_copy(b, offset, (void *)data, size, true);
}

int vka_buf_download(struct vka_buf *b, VkDeviceSize offset, void *data, size_t size)
{
    return staged_copy(b, offset, data, size, false);
}
