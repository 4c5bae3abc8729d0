/* The command recorder: one command buffer, its descriptor sets, the barriers between
 * its commands, optional timestamps, and the buffers it owns until its work is done.
 * A recording is submitted with a fence and a timeout, and can be replayed.
 *
 * Also the fault injection of vk/fault.h (allocation, submission, fence wait): its
 * state lives here, next to two of the three events it counts. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "vk/fault.h"
#include "vk/internal.h"

/* ---- fault injection ---------------------------------------------------------------- */

static const struct {
    const char *env, *events;
} fault_names[VKA_FAULT_KIND_COUNT] = {
    [VKA_FAULT_ALLOC] = { "VKACCUM_FAIL_ALLOC", "device memory allocations" },
    [VKA_FAULT_SUBMIT] = { "VKACCUM_FAIL_SUBMIT", "queue submissions" },
    [VKA_FAULT_TIMEOUT] = { "VKACCUM_FAIL_TIMEOUT", "fence waits" },
};

static struct {
    atomic_uint_fast64_t count;   /* events so far */
    atomic_uint_fast64_t fail_at; /* the event to fail, 0 none */
    atomic_bool report;           /* "count": log the total at exit */
} faults[VKA_FAULT_KIND_COUNT];

static pthread_once_t faults_once = PTHREAD_ONCE_INIT;

static void faults_report(void)
{
    for (int k = 0; k < VKA_FAULT_KIND_COUNT; k++)
        if (atomic_load(&faults[k].report))
            vka_warn("%s=count: %" PRIu64 " %s", fault_names[k].env,
                     (uint64_t)atomic_load(&faults[k].count), fault_names[k].events);
}

static void faults_init(void)
{
    bool report = false;
    for (int k = 0; k < VKA_FAULT_KIND_COUNT; k++) {
        const char *s = getenv(fault_names[k].env);
        if (!s || !*s)
            continue;
        char *end;
        unsigned long long n = strtoull(s, &end, 10);
        if (!strcmp(s, "count")) {
            atomic_store(&faults[k].report, true);
            report = true;
        } else if (s[0] >= '0' && s[0] <= '9' && *end == '\0' && n > 0) {
            atomic_store(&faults[k].fail_at, (uint_fast64_t)n);
        } else {
            vka_warn("%s=%s ignored: use a number from 1 (the event to fail) or count",
                     fault_names[k].env, s);
        }
    }
    /* at exit rather than at context destruction: a run may make more than one context,
     * and N counts across the whole process */
    if (report && atexit(faults_report) != 0)
        vka_warn("cannot register the report of VKACCUM_FAIL_*=count");
}

const char *vka_fault_env_name(enum vka_fault_kind kind)
{
    return kind < VKA_FAULT_KIND_COUNT ? fault_names[kind].env : "?";
}

bool vka_fault_hit(enum vka_fault_kind kind, uint64_t *nth)
{
    pthread_once(&faults_once, faults_init);
    uint64_t n = (uint64_t)atomic_fetch_add(&faults[kind].count, 1) + 1;
    uint64_t at = (uint64_t)atomic_load(&faults[kind].fail_at);
    if (nth)
        *nth = n;
    return at && n == at;
}

uint64_t vka_fault_count(enum vka_fault_kind kind)
{
    pthread_once(&faults_once, faults_init);
    return (uint64_t)atomic_load(&faults[kind].count);
}

void vka_fault_set(enum vka_fault_kind kind, uint64_t fail_at)
{
    pthread_once(&faults_once, faults_init);
    atomic_store(&faults[kind].fail_at, (uint_fast64_t)fail_at);
    atomic_store(&faults[kind].count, 0);
}

void vka_fault_note(bool injected, enum vka_fault_kind kind, uint64_t nth, char *buf,
                    size_t size)
{
    if (injected)
        snprintf(buf, size, " (injected by %s=%" PRIu64 ")", vka_fault_env_name(kind), nth);
    else if (size)
        buf[0] = '\0';
}

/* ---- the recorder ------------------------------------------------------------------- */

#define SETS_PER_POOL 256

/* Submissions whose wait failed (a timeout, a lost device) while their work may still
 * run. Until each is waited for, vka_cmd_settle makes every buffer's destruction wait
 * for an idle device first: an error path frees buffers in whatever order its owners
 * go, often before the recorder that still reads them (a crash in the driver's queue
 * thread, found by VKACCUM_FAIL_TIMEOUT). Process-wide: with several contexts, one may
 * wait for a device that had no part in it, which costs nothing after an error. */
static atomic_uint abandoned;

struct vka_cmd {
    struct vka_ctx *ctx;
    VkCommandBuffer cb;
    VkFence fence;
    bool recording, ended;
    /* submitted and its fence not yet seen signalled: what a later wait must wait for.
     * A failed submission leaves the fence reset and never to be signalled, so waiting
     * on "was ever submitted" instead would block for good. */
    bool pending;
    bool abandoned; /* counted in `abandoned` below */
    bool after_work; /* a dispatch or copy was recorded: the next one needs a barrier */

    VkDescriptorPool *pools;
    uint32_t npools, pool_used; /* sets taken from pools[npools - 1] */

    struct vka_buf **owned;
    uint32_t nowned, cap_owned;

    bool dry;                 /* vka_cmd_params.dry */
    struct vka_buf *ws;       /* the workspace scratch comes from, or NULL */
    uint64_t ws_off, ws_cap, ws_used; /* bytes */
    uint64_t scratch_count;   /* bytes handed out since vka_cmd_take_scratch_count */

    VkQueryPool queries;
    uint32_t max_timed, ntimed;
    const char **names; /* the kernel (pipeline variant, or "copy") of each timed command */
    double *ms;
    uint32_t nms;
};

int vka_cmd_create(struct vka_ctx *ctx, const struct vka_cmd_params *params,
                   struct vka_cmd **out)
{
    int ret = 0;
    struct vka_cmd *c = calloc(1, sizeof(*c));
    *out = NULL;
    if (!c)
        return -ENOMEM;
    c->ctx = ctx;
    if (params && params->dry) {
        c->dry = true;
        if (params->timing) {
            vka_err("vka_cmd_create: a dry recorder runs nothing to time");
            free(c);
            return -EINVAL;
        }
        *out = c;
        return 0;
    }
    VkCommandBufferAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = ctx->cmd_pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    VK(vkAllocateCommandBuffers(ctx->dev, &ai, &c->cb));
    VkFenceCreateInfo fci = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
    VK(vkCreateFence(ctx->dev, &fci, NULL, &c->fence));
    if (params && params->timing) {
        if (!ctx->info.timestamps) {
            vka_err("device %s has no timestamps on its compute queue: timing is off",
                    ctx->info.name);
            ret = -ENOTSUP;
            goto fail;
        }
        c->max_timed = params->max_timed ? params->max_timed : 1024;
        VkQueryPoolCreateInfo qci = {
            .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
            .queryType = VK_QUERY_TYPE_TIMESTAMP,
            .queryCount = 2 * c->max_timed,
        };
        VK(vkCreateQueryPool(ctx->dev, &qci, NULL, &c->queries));
        c->ms = calloc(c->max_timed, sizeof(*c->ms));
        c->names = calloc(c->max_timed, sizeof(*c->names));
        if (!c->ms || !c->names) {
            ret = -ENOMEM;
            goto fail;
        }
    }
    *out = c;
    return 0;
fail:
    vka_cmd_destroy(&c);
    return ret;
}

static void release_owned(struct vka_cmd *c)
{
    for (uint32_t i = 0; i < c->nowned; i++)
        vka_buf_destroy(&c->owned[i]);
    c->nowned = 0;
}

/* Waits for the recorder's last submission, if it may still run. */
static VkResult cmd_wait(struct vka_cmd *c)
{
    VkResult r = VK_SUCCESS;
    if (c->pending)
        r = vkWaitForFences(c->ctx->dev, 1, &c->fence, VK_TRUE, UINT64_MAX);
    /* after a lost device nothing runs any more: there is nothing left to wait for */
    c->pending = false;
    if (c->abandoned) {
        c->abandoned = false;
        atomic_fetch_sub(&abandoned, 1);
    }
    return r;
}

void vka_cmd_settle(struct vka_ctx *ctx)
{
    if (atomic_load(&abandoned))
        vkDeviceWaitIdle(ctx->dev);
}

void vka_cmd_destroy(struct vka_cmd **pc)
{
    struct vka_cmd *c = *pc;
    if (!c)
        return;
    VkDevice dev = c->ctx->dev;
    /* the owned buffers and the descriptor pools may be in use by work still running
     * (a submission that timed out); a lost device answers at once */
    cmd_wait(c);
    release_owned(c);
    free(c->owned);
    for (uint32_t i = 0; i < c->npools; i++)
        vkDestroyDescriptorPool(dev, c->pools[i], NULL);
    free(c->pools);
    if (c->queries)
        vkDestroyQueryPool(dev, c->queries, NULL);
    free(c->ms);
    free(c->names);
    if (c->fence)
        vkDestroyFence(dev, c->fence, NULL);
    if (c->cb)
        vkFreeCommandBuffers(dev, c->ctx->cmd_pool, 1, &c->cb);
    free(c);
    *pc = NULL;
}

int vka_cmd_begin(struct vka_cmd *c)
{
    int ret = 0;
    VkDevice dev = c->ctx->dev;
    VK(cmd_wait(c));
    release_owned(c);
    c->recording = true;
    c->ended = false;
    c->after_work = false;
    if (c->dry)
        return 0;
    /* Keep the first descriptor pool, reset; later ones grow again if needed. */
    for (uint32_t i = 1; i < c->npools; i++)
        vkDestroyDescriptorPool(dev, c->pools[i], NULL);
    c->npools = c->npools ? 1 : 0;
    if (c->npools)
        VK(vkResetDescriptorPool(dev, c->pools[0], 0));
    c->pool_used = c->npools ? 0 : SETS_PER_POOL;
    VK(vkResetCommandBuffer(c->cb, 0));
    VkCommandBufferBeginInfo bi = { .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO };
    VK(vkBeginCommandBuffer(c->cb, &bi));
    if (c->queries)
        vkCmdResetQueryPool(c->cb, c->queries, 0, 2 * c->max_timed);
    c->ntimed = 0;
    c->nms = 0;
    return 0;
fail:
    return ret;
}

/* Orders this command after every earlier dispatch and copy of the recorder: their
 * writes (shader or transfer) become visible to its reads and writes (read-after-write,
 * write-after-write and write-after-read hazards all closed by one global barrier). */
static void barrier(struct vka_cmd *c)
{
    if (!c->after_work)
        return;
    VkMemoryBarrier mb = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                         VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
    };
    VkPipelineStageFlags stages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT |
                                  VK_PIPELINE_STAGE_TRANSFER_BIT;
    vkCmdPipelineBarrier(c->cb, stages, stages, 0, 1, &mb, 0, NULL, 0, NULL);
}

static int check_recording(struct vka_cmd *c, const char *what)
{
    if (!c->recording) {
        vka_err("%s: the recorder is not recording (call vka_cmd_begin first)", what);
        return -EINVAL;
    }
    return 0;
}

static int descriptor_set(struct vka_cmd *c, VkDescriptorSetLayout dsl, VkDescriptorSet *set)
{
    int ret = 0;
    VkDevice dev = c->ctx->dev;
    if (c->pool_used == SETS_PER_POOL) {
        VkDescriptorPool *pools = realloc(c->pools, (c->npools + 1) * sizeof(*pools));
        if (!pools)
            return -ENOMEM;
        c->pools = pools;
        VkDescriptorPoolSize sizes[] = {
            { VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, SETS_PER_POOL * VKA_MAX_BINDINGS },
            { VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER, SETS_PER_POOL * VKA_MAX_BINDINGS },
        };
        VkDescriptorPoolCreateInfo ci = {
            .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
            .maxSets = SETS_PER_POOL,
            .poolSizeCount = 2,
            .pPoolSizes = sizes,
        };
        VK(vkCreateDescriptorPool(dev, &ci, NULL, &c->pools[c->npools]));
        c->npools++;
        c->pool_used = 0;
    }
    VkDescriptorSetAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
        .descriptorPool = c->pools[c->npools - 1],
        .descriptorSetCount = 1,
        .pSetLayouts = &dsl,
    };
    VK(vkAllocateDescriptorSets(dev, &ai, set));
    c->pool_used++;
    return 0;
fail:
    return ret;
}

/* Binding i of a dispatch lies inside its buffer and fits the way it is bound. */
static int check_binding(const struct vka_cmd *c, const struct vka_pipe *pipe,
                         const struct vka_binding *b, uint32_t i)
{
    const struct vka_binding *bd = &b[i];
    bool texel = pipe->params.bind[i] == VKA_BIND_IN && pipe->texel;
    VkDeviceSize range = bd->range ? bd->range : bd->buf->size - bd->offset;
    if (bd->offset > bd->buf->size || range > bd->buf->size - bd->offset) {
        vka_err("%s: binding %u (%" PRIu64 " bytes at %" PRIu64 ") passes the end of a "
                "%" PRIu64 "-byte buffer", pipe->variant, i, (uint64_t)range,
                (uint64_t)bd->offset, (uint64_t)bd->buf->size);
        return -EINVAL;
    }
    if (texel && bd->offset) {
        vka_err("%s: binding %u is a texel view of the whole buffer; pass the offset in "
                "push constants", pipe->variant, i);
        return -EINVAL;
    }
    if (!texel && range > c->ctx->info.max_storage_range) {
        vka_err("%s: binding %u spans %" PRIu64 " bytes, past the device's storage range "
                "of %u; the op must split it", pipe->variant, i, (uint64_t)range,
                c->ctx->info.max_storage_range);
        return -EINVAL;
    }
    return 0;
}

/* A timing recorder's timestamp before a command (while the pool has room): whether the
 * command is timed; time_end writes the one after it. */
static bool time_start(struct vka_cmd *c, const char *name)
{
    if (!c->queries || c->ntimed >= c->max_timed)
        return false;
    vkCmdWriteTimestamp(c->cb, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, c->queries, 2 * c->ntimed);
    c->names[c->ntimed] = name;
    return true;
}

static void time_end(struct vka_cmd *c, bool timed)
{
    if (!timed)
        return;
    vkCmdWriteTimestamp(c->cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, c->queries,
                        2 * c->ntimed + 1);
    c->ntimed++;
}

int vka_cmd_dispatch(struct vka_cmd *c, struct vka_pipe *pipe, const struct vka_binding *b,
                     const void *push, const uint32_t groups[3])
{
    struct vka_ctx *ctx = c->ctx;
    int ret = check_recording(c, pipe->variant);
    if (ret < 0)
        return ret;
    for (int i = 0; i < 3; i++)
        if (groups[i] > ctx->info.max_wg_count[i]) {
            vka_err("%s: %u workgroups along %c pass the device's %u", pipe->variant,
                    groups[i], "xyz"[i], ctx->info.max_wg_count[i]);
            return -EINVAL;
        }
    if (!groups[0] || !groups[1] || !groups[2])
        return 0;
    for (uint32_t i = 0; i < pipe->params.nbind; i++)
        if ((ret = check_binding(c, pipe, b, i)) < 0)
            return ret;
    if (c->dry)
        return 0;

    VkDescriptorSet set;
    ret = descriptor_set(c, pipe->dsl, &set);
    if (ret < 0)
        return ret;
    VkWriteDescriptorSet w[VKA_MAX_BINDINGS];
    VkDescriptorBufferInfo bi[VKA_MAX_BINDINGS];
    VkBufferView views[VKA_MAX_BINDINGS];
    for (uint32_t i = 0; i < pipe->params.nbind; i++) {
        const struct vka_binding *bd = &b[i];
        bool texel = pipe->params.bind[i] == VKA_BIND_IN && pipe->texel;
        VkDeviceSize range = bd->range ? bd->range : bd->buf->size - bd->offset;
        w[i] = (VkWriteDescriptorSet){
            .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
            .dstSet = set,
            .dstBinding = i,
            .descriptorCount = 1,
        };
        if (texel) {
            ret = vka_buf_texel_view(bd->buf, &views[i]);
            if (ret < 0)
                return ret;
            w[i].descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER;
            w[i].pTexelBufferView = &views[i];
        } else {
            bi[i] = (VkDescriptorBufferInfo){ bd->buf->buf, bd->offset, range };
            w[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
            w[i].pBufferInfo = &bi[i];
        }
    }
    vkUpdateDescriptorSets(ctx->dev, pipe->params.nbind, w, 0, NULL);

    barrier(c);
    bool timed = time_start(c, pipe->variant);
    vkCmdBindPipeline(c->cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipe->pipe);
    vkCmdBindDescriptorSets(c->cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipe->layout, 0, 1, &set,
                            0, NULL);
    if (pipe->params.push_size)
        vkCmdPushConstants(c->cb, pipe->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0,
                           pipe->params.push_size, push);
    vkCmdDispatch(c->cb, groups[0], groups[1], groups[2]);
    time_end(c, timed);
    c->after_work = true;
    return 0;
}

int vka_cmd_dispatch_1d(struct vka_cmd *c, struct vka_pipe *pipe, const struct vka_binding *b,
                        const void *push, uint64_t n)
{
    uint32_t wg = pipe->params.wg_size ? pipe->params.wg_size : c->ctx->profile.wg_size;
    uint64_t groups = (n + wg - 1) / wg;
    uint32_t maxx = c->ctx->info.max_wg_count[0];
    uint64_t gy = (groups + maxx - 1) / maxx;
    uint64_t gx = gy > 1 ? maxx : groups;
    if (gy > c->ctx->info.max_wg_count[1]) {
        vka_err("%s: %" PRIu64 " invocations are too many for one dispatch", pipe->variant, n);
        return -EINVAL;
    }
    return vka_cmd_dispatch(c, pipe, b, push, (uint32_t[3]){ (uint32_t)gx, (uint32_t)gy, 1 });
}

int vka_cmd_copy(struct vka_cmd *c, struct vka_buf *src, VkDeviceSize src_off,
                 struct vka_buf *dst, VkDeviceSize dst_off, VkDeviceSize size)
{
    int ret = check_recording(c, "vka_cmd_copy");
    if (ret < 0)
        return ret;
    if (src_off > src->size || size > src->size - src_off || dst_off > dst->size ||
        size > dst->size - dst_off) {
        vka_err("vka_cmd_copy: %" PRIu64 " bytes from %" PRIu64 " (of %" PRIu64 ") to %"
                PRIu64 " (of %" PRIu64 ") pass a buffer's end", (uint64_t)size,
                (uint64_t)src_off, (uint64_t)src->size, (uint64_t)dst_off,
                (uint64_t)dst->size);
        return -EINVAL;
    }
    if (!size || c->dry)
        return 0;
    barrier(c);
    bool timed = time_start(c, "copy");
    VkBufferCopy region = { src_off, dst_off, size };
    vkCmdCopyBuffer(c->cb, src->buf, dst->buf, 1, &region);
    time_end(c, timed);
    c->after_work = true;
    return 0;
}

int vka_cmd_fill(struct vka_cmd *c, struct vka_buf *dst, VkDeviceSize off, VkDeviceSize size,
                 uint32_t word)
{
    int ret = check_recording(c, "vka_cmd_fill");
    if (ret < 0)
        return ret;
    if (off % 4 || size % 4 || off > dst->size || size > dst->size - off) {
        vka_err("vka_cmd_fill: %" PRIu64 " bytes at %" PRIu64 " of a %" PRIu64
                "-byte buffer: not whole words inside it", (uint64_t)size, (uint64_t)off,
                (uint64_t)dst->size);
        return -EINVAL;
    }
    if (!size || c->dry)
        return 0;
    barrier(c);
    bool timed = time_start(c, "fill");
    vkCmdFillBuffer(c->cb, dst->buf, off, size, word);
    time_end(c, timed);
    c->after_work = true;
    return 0;
}

struct vka_ctx *vka_cmd_ctx(struct vka_cmd *c)
{
    return c->ctx;
}

int vka_cmd_own(struct vka_cmd *c, struct vka_buf *buf)
{
    if (c->nowned == c->cap_owned) {
        uint32_t cap = c->cap_owned ? 2 * c->cap_owned : 8;
        struct vka_buf **o = realloc(c->owned, cap * sizeof(*o));
        if (!o)
            return -ENOMEM;
        c->owned = o;
        c->cap_owned = cap;
    }
    c->owned[c->nowned++] = buf;
    return 0;
}

int vka_cmd_scratch(struct vka_cmd *c, uint64_t bytes, struct vka_buf **buf, uint64_t *off)
{
    uint64_t aligned = (bytes + 255) & ~255ull;
    c->scratch_count += aligned;
    if (c->ws) {
        if (aligned > c->ws_cap - c->ws_used) {
            vka_err("vka_cmd_scratch: %" PRIu64 " bytes asked of a workspace with %" PRIu64
                    " of %" PRIu64 " left (the plan sized it for less)", bytes,
                    c->ws_cap - c->ws_used, c->ws_cap);
            return -ENOSPC;
        }
        *buf = c->ws;
        *off = c->ws_off + c->ws_used;
        c->ws_used += aligned;
        return 0;
    }
    struct vka_buf *b = NULL;
    int ret = vka_buf_create(c->ctx, &(struct vka_buf_params){
        .size = bytes, .cat = VKA_MEM_OTHER, .dry = c->dry }, &b);
    if (ret == 0 && (ret = vka_cmd_own(c, b)) < 0)
        vka_buf_destroy(&b);
    *buf = b;
    *off = 0;
    return ret;
}

void vka_cmd_set_workspace(struct vka_cmd *c, struct vka_buf *buf, uint64_t off,
                           uint64_t bytes)
{
    c->ws = buf;
    c->ws_off = off;
    c->ws_cap = buf ? bytes : 0;
    c->ws_used = 0;
}

uint64_t vka_cmd_take_scratch_count(struct vka_cmd *c)
{
    uint64_t n = c->scratch_count;
    c->scratch_count = 0;
    return n;
}

int vka_cmd_end(struct vka_cmd *c)
{
    int ret = 0;
    if (c->ended)
        return 0;
    ret = check_recording(c, "vka_cmd_end");
    if (ret < 0)
        return ret;
    if (c->dry) {
        c->recording = false;
        c->ended = true;
        return 0;
    }
    /* Make the last writes visible to the host reads that follow the fence wait. */
    if (c->after_work) {
        VkMemoryBarrier mb = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
            .dstAccessMask = VK_ACCESS_HOST_READ_BIT,
        };
        vkCmdPipelineBarrier(c->cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT |
                             VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1,
                             &mb, 0, NULL, 0, NULL);
    }
    VK(vkEndCommandBuffer(c->cb));
    c->recording = false;
    c->ended = true;
    return 0;
fail:
    return ret;
}

int vka_cmd_submit_wait(struct vka_cmd *c, uint64_t timeout_ms)
{
    int ret = 0;
    struct vka_ctx *ctx = c->ctx;
    char note[64];
    uint64_t nth;
    if (!c->ended || c->dry) {
        vka_err("vka_cmd_submit_wait: %s", c->dry ? "a dry recorder has nothing to run"
                                                  : "nothing recorded (call vka_cmd_end first)");
        return -EINVAL;
    }
    VK(cmd_wait(c));
    VK(vkResetFences(ctx->dev, 1, &c->fence));
    VkSubmitInfo si = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
        .commandBufferCount = 1,
        .pCommandBuffers = &c->cb,
    };
    bool injected = vka_fault_hit(VKA_FAULT_SUBMIT, &nth);
    VkResult r = injected ? VK_ERROR_DEVICE_LOST : vkQueueSubmit(ctx->queue, 1, &si, c->fence);
    if (r == VK_ERROR_DEVICE_LOST) {
        vka_fault_note(injected, VKA_FAULT_SUBMIT, nth, note, sizeof(note));
        vka_err("the device %s was lost at submission (a driver crash or reset)%s",
                ctx->info.name, note);
        return -EIO;
    }
    VK(r);
    c->pending = true;
    /* an injected timeout leaves the work running, as a real one does: it stays pending
     * and whatever frees its buffers waits for it first */
    injected = vka_fault_hit(VKA_FAULT_TIMEOUT, &nth);
    r = injected ? VK_TIMEOUT
                 : vkWaitForFences(ctx->dev, 1, &c->fence, VK_TRUE, timeout_ms * 1000000ull);
    vka_fault_note(injected, VKA_FAULT_TIMEOUT, nth, note, sizeof(note));
    if (r != VK_SUCCESS) {
        c->abandoned = true;
        atomic_fetch_add(&abandoned, 1);
    }
    if (r == VK_TIMEOUT) {
        vka_err("the device %s did not finish its work within %" PRIu64 " ms "
                "(VKACCUM_TIMEOUT_MS sets the limit)%s", ctx->info.name, timeout_ms, note);
        return -ETIMEDOUT;
    }
    if (r == VK_ERROR_DEVICE_LOST) {
        vka_err("the device %s was lost while running (a driver crash or reset)",
                ctx->info.name);
        return -EIO;
    }
    VK(r);
    c->pending = false;
    c->nms = 0;
    if (c->queries && c->ntimed) {
        uint64_t *ts = calloc(2 * c->ntimed, sizeof(*ts));
        if (!ts)
            return -ENOMEM;
        r = vkGetQueryPoolResults(ctx->dev, c->queries, 0, 2 * c->ntimed,
                                  2 * c->ntimed * sizeof(*ts), ts, sizeof(*ts),
                                  VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
        if (r == VK_SUCCESS)
            for (uint32_t i = 0; i < c->ntimed; i++)
                c->ms[i] = (double)(ts[2 * i + 1] - ts[2 * i]) *
                           ctx->info.timestamp_period * 1e-6;
        free(ts);
        VK(r);
        c->nms = c->ntimed;
    }
    return 0;
fail:
    return ret;
}

uint32_t vka_cmd_timings(struct vka_cmd *c, double *ms, uint32_t max)
{
    uint32_t n = c->nms < max ? c->nms : max;
    memcpy(ms, c->ms, n * sizeof(*ms));
    return n;
}

uint32_t vka_cmd_timed_names(struct vka_cmd *c, const char **names, uint32_t max)
{
    uint32_t n = c->nms < max ? c->nms : max;
    memcpy(names, c->names, n * sizeof(*names));
    return n;
}

uint32_t vka_cmd_timed_count(const struct vka_cmd *c)
{
    return c->ntimed;
}

int vka_cmd_run(struct vka_cmd *c)
{
    static uint64_t timeout_ms;
    if (!timeout_ms) {
        const char *s = getenv("VKACCUM_TIMEOUT_MS");
        timeout_ms = s && atoll(s) > 0 ? (uint64_t)atoll(s) : 600000;
    }
    int ret = vka_cmd_end(c);
    return ret < 0 ? ret : vka_cmd_submit_wait(c, timeout_ms);
}
