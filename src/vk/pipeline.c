/* Compute pipelines from the embedded SPIR-V (vka_spirv.h), with their descriptor set
 * layouts, push-constant ranges and specialization constants, built once per context
 * and parameters; and the on-disk pipeline cache, which saves LLVM's compile time (3-27
 * ms a variant on lavapipe) on every later start. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"
#include "log.h"
#include "vk/internal.h"
#include "vka_spirv.h"

static int mkdir_p(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static void cache_dir_default(const char *given, char *out, size_t size)
{
    const char *env = getenv("VKACCUM_CACHE_DIR");
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if (given && *given)
        snprintf(out, size, "%s", given);
    else if (env && *env)
        snprintf(out, size, "%s", env);
    else if (xdg && *xdg)
        snprintf(out, size, "%s/vkaccum", xdg);
    else if (home && *home)
        snprintf(out, size, "%s/.cache/vkaccum", home);
    else
        out[0] = '\0';
}

/* A cache file is used only when its header names this device and driver; anything else
 * (another GPU, a driver update, a truncated file) is ignored and rewritten. */
static bool cache_header_matches(struct vka_ctx *ctx, const unsigned char *d, size_t n)
{
    uint32_t hdr[4];
    if (n < 32)
        return false;
    memcpy(hdr, d, sizeof(hdr));
    return hdr[0] >= 32 && hdr[1] == (uint32_t)VK_PIPELINE_CACHE_HEADER_VERSION_ONE &&
           hdr[2] == ctx->props.vendorID && hdr[3] == ctx->props.deviceID &&
           !memcmp(d + 16, ctx->props.pipelineCacheUUID, VK_UUID_SIZE);
}

int vka_pipeline_cache_open(struct vka_ctx *ctx, const char *dir)
{
    int ret = 0;
    char folder[3800];
    void *data = NULL;
    size_t size = 0;
    cache_dir_default(dir, folder, sizeof(folder));
    ctx->cache_path[0] = '\0';
    if (folder[0]) {
        char uuid[2 * VK_UUID_SIZE + 1];
        for (unsigned i = 0; i < VK_UUID_SIZE; i++)
            snprintf(uuid + 2 * i, 3, "%02x", ctx->props.pipelineCacheUUID[i]);
        snprintf(ctx->cache_path, sizeof(ctx->cache_path), "%s/pipelines-%04x-%04x-%s.bin",
                 folder, ctx->props.vendorID, ctx->props.deviceID, uuid);
        /* a cache is an optimisation: an unreadable one (a FIFO, over 256 MiB) is only
         * worth a warning, a missing one nothing */
        char msg[1024], *bytes;
        int r = vka_read_whole_msg(ctx->cache_path, 256u << 20, &bytes, &size, msg,
                                   sizeof(msg));
        data = bytes;
        if (r < 0 && r != -ENOENT)
            vka_warn("pipeline cache ignored: %s", msg);
        if (size && !cache_header_matches(ctx, data, size)) {
            vka_info("pipeline cache %s is for another device or driver: ignored",
                     ctx->cache_path);
            size = 0;
        }
    }
    VkPipelineCacheCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
        .initialDataSize = size,
        .pInitialData = size ? data : NULL,
    };
    VK(vkCreatePipelineCache(ctx->dev, &ci, NULL, &ctx->pipeline_cache));
fail:
    free(data);
    return ret;
}

/* Replaced atomically (src/file.h), so a crash never leaves half a cache. */
void vka_pipeline_cache_close(struct vka_ctx *ctx)
{
    if (!ctx->pipeline_cache)
        return;
    size_t size = 0;
    void *data = NULL;
    if (ctx->cache_path[0] && ctx->pipes &&
        vkGetPipelineCacheData(ctx->dev, ctx->pipeline_cache, &size, NULL) == VK_SUCCESS &&
        size && (data = malloc(size)) &&
        vkGetPipelineCacheData(ctx->dev, ctx->pipeline_cache, &size, data) == VK_SUCCESS) {
        char folder[4096];
        snprintf(folder, sizeof(folder), "%s", ctx->cache_path);
        char *slash = strrchr(folder, '/');
        if (slash)
            *slash = '\0';
        /* a read-only cache folder is common (a shared home) and only worth a note, a
         * failed write a warning: neither replaces the error a caller is reporting while
         * it closes the context */
        if (mkdir_p(folder) == 0 && access(folder, W_OK) == 0) {
            char err[1024];
            snprintf(err, sizeof(err), "%s", vka_last_error());
            if (vka_write_atomic(ctx->cache_path, data, size) < 0)
                vka_warn("pipeline cache not saved: %s", vka_last_error());
            vka_restore_error(err);
        } else
            vka_info("pipeline cache folder %s is not writable: cache not saved", folder);
    }
    free(data);
    vkDestroyPipelineCache(ctx->dev, ctx->pipeline_cache, NULL);
    ctx->pipeline_cache = VK_NULL_HANDLE;
}

static bool params_equal(const struct vka_pipe_params *a, const struct vka_pipe_params *b)
{
    if (strcmp(a->shader, b->shader) || a->nbind != b->nbind || a->push_size != b->push_size ||
        a->nspec != b->nspec || a->wg_size != b->wg_size)
        return false;
    for (uint32_t i = 0; i < a->nbind; i++)
        if (a->bind[i] != b->bind[i])
            return false;
    for (uint32_t i = 0; i < a->nspec; i++)
        if (a->spec[i] != b->spec[i])
            return false;
    return true;
}

static void pipe_free(struct vka_ctx *ctx, struct vka_pipe *p)
{
    if (p->pipe)
        vkDestroyPipeline(ctx->dev, p->pipe, NULL);
    if (p->layout)
        vkDestroyPipelineLayout(ctx->dev, p->layout, NULL);
    if (p->dsl)
        vkDestroyDescriptorSetLayout(ctx->dev, p->dsl, NULL);
    free((char *)p->params.shader);
    free(p);
}

void vka_pipes_destroy(struct vka_ctx *ctx)
{
    while (ctx->pipes) {
        struct vka_pipe *p = ctx->pipes;
        ctx->pipes = p->next;
        pipe_free(ctx, p);
    }
}

int vka_pipe_get(struct vka_ctx *ctx, const struct vka_pipe_params *params,
                 struct vka_pipe **out)
{
    int ret = 0;
    VkShaderModule module = VK_NULL_HANDLE;
    *out = NULL;
    if (params->nbind > VKA_MAX_BINDINGS || params->nspec > VKA_MAX_SPEC ||
        params->push_size > ctx->props.limits.maxPushConstantsSize) {
        vka_err("pipeline %s: %u bindings, %u constants, %u push bytes exceed the limits",
                params->shader, params->nbind, params->nspec, params->push_size);
        return -EINVAL;
    }
    /* the variant depends on the profile's load path, which benchmarks switch */
    bool has_in = false;
    for (uint32_t i = 0; i < params->nbind; i++)
        has_in |= params->bind[i] == VKA_BIND_IN;
    char variant[sizeof(((struct vka_pipe *)0)->variant)];
    snprintf(variant, sizeof(variant), "%s%s", params->shader,
             !has_in ? "" : ctx->profile.load == VKA_LOAD_TEXEL ? "_tb" : "_sb");
    for (struct vka_pipe *p = ctx->pipes; p; p = p->next)
        if (!strcmp(p->variant, variant) && params_equal(&p->params, params)) {
            *out = p;
            return 0;
        }

    struct vka_pipe *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->params = *params;
    p->params.shader = strdup(params->shader);
    if (!p->params.shader) {
        free(p);
        return -ENOMEM;
    }
    memcpy(p->variant, variant, sizeof(variant));
    p->texel = ctx->profile.load == VKA_LOAD_TEXEL;
    const struct vka_spirv *spv = vka_spirv_find(p->variant);
    if (!spv) {
        vka_err("no embedded shader called %s (a row missing in shaders/meson.build?)",
                p->variant);
        ret = -ENOENT;
        goto fail;
    }

    VkDescriptorSetLayoutBinding binds[VKA_MAX_BINDINGS];
    for (uint32_t i = 0; i < params->nbind; i++) {
        bool texel = params->bind[i] == VKA_BIND_IN && p->texel;
        binds[i] = (VkDescriptorSetLayoutBinding){
            .binding = i,
            .descriptorType = texel ? VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER
                                    : VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .descriptorCount = 1,
            .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        };
    }
    VkDescriptorSetLayoutCreateInfo dslci = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .bindingCount = params->nbind,
        .pBindings = binds,
    };
    VK(vkCreateDescriptorSetLayout(ctx->dev, &dslci, NULL, &p->dsl));
    VkPushConstantRange pcr = {
        .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        .offset = 0,
        .size = params->push_size,
    };
    VkPipelineLayoutCreateInfo plci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .setLayoutCount = 1,
        .pSetLayouts = &p->dsl,
        .pushConstantRangeCount = params->push_size ? 1 : 0,
        .pPushConstantRanges = &pcr,
    };
    VK(vkCreatePipelineLayout(ctx->dev, &plci, NULL, &p->layout));

    VkShaderModuleCreateInfo smci = {
        .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
        .codeSize = spv->size,
        .pCode = spv->code,
    };
    VK(vkCreateShaderModule(ctx->dev, &smci, NULL, &module));

    uint32_t spec[VKA_MAX_SPEC + 1];
    VkSpecializationMapEntry map[VKA_MAX_SPEC + 1];
    spec[0] = params->wg_size ? params->wg_size : ctx->profile.wg_size;
    for (uint32_t i = 0; i < params->nspec; i++)
        spec[i + 1] = params->spec[i];
    for (uint32_t i = 0; i <= params->nspec; i++)
        map[i] = (VkSpecializationMapEntry){
            .constantID = i, .offset = i * 4, .size = 4 };
    VkSpecializationInfo si = {
        .mapEntryCount = params->nspec + 1,
        .pMapEntries = map,
        .dataSize = (params->nspec + 1) * 4,
        .pData = spec,
    };
    VkComputePipelineCreateInfo cpci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {
            .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
            .stage = VK_SHADER_STAGE_COMPUTE_BIT,
            .module = module,
            .pName = "main",
            .pSpecializationInfo = &si,
        },
        .layout = p->layout,
    };
    VK(vkCreateComputePipelines(ctx->dev, ctx->pipeline_cache, 1, &cpci, NULL, &p->pipe));
    vkDestroyShaderModule(ctx->dev, module, NULL);
    p->next = ctx->pipes;
    ctx->pipes = p;
    *out = p;
    return 0;
fail:
    if (module)
        vkDestroyShaderModule(ctx->dev, module, NULL);
    pipe_free(ctx, p);
    return ret;
}
