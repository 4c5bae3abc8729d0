/* Instance, device enumeration and choice, logical device, validation messenger and the
 * device profile. Owns struct vka_ctx; memory.c, pipeline.c and command.c hang their
 * state off it. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "vk/internal.h"

const char *vka_result_name(VkResult r)
{
    switch (r) {
#define R(x) case x: return #x;
    R(VK_SUCCESS) R(VK_NOT_READY) R(VK_TIMEOUT) R(VK_INCOMPLETE)
    R(VK_ERROR_OUT_OF_HOST_MEMORY) R(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    R(VK_ERROR_INITIALIZATION_FAILED) R(VK_ERROR_DEVICE_LOST) R(VK_ERROR_MEMORY_MAP_FAILED)
    R(VK_ERROR_LAYER_NOT_PRESENT) R(VK_ERROR_EXTENSION_NOT_PRESENT)
    R(VK_ERROR_FEATURE_NOT_PRESENT) R(VK_ERROR_INCOMPATIBLE_DRIVER)
    R(VK_ERROR_TOO_MANY_OBJECTS) R(VK_ERROR_FORMAT_NOT_SUPPORTED)
    R(VK_ERROR_FRAGMENTED_POOL) R(VK_ERROR_OUT_OF_POOL_MEMORY) R(VK_ERROR_UNKNOWN)
#undef R
    default: return "VK_ERROR_(other)";
    }
}

int vka_errno_from_result(VkResult r)
{
    switch (r) {
    case VK_SUCCESS: return 0;
    case VK_TIMEOUT: return -ETIMEDOUT;
    case VK_ERROR_OUT_OF_HOST_MEMORY:
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
    case VK_ERROR_OUT_OF_POOL_MEMORY:
    case VK_ERROR_FRAGMENTED_POOL: return -ENOMEM;
    case VK_ERROR_DEVICE_LOST: return -EIO;
    case VK_ERROR_LAYER_NOT_PRESENT:
    case VK_ERROR_EXTENSION_NOT_PRESENT:
    case VK_ERROR_FEATURE_NOT_PRESENT:
    case VK_ERROR_FORMAT_NOT_SUPPORTED:
    case VK_ERROR_INCOMPATIBLE_DRIVER: return -ENOTSUP;
    default: return -EIO;
    }
}

const char *vka_device_type_name(VkPhysicalDeviceType type)
{
    switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "cpu";
    default: return "other";
    }
}

static bool env_flag(const char *name)
{
    const char *s = getenv(name);
    return s && *s && strcmp(s, "0") != 0;
}

static bool has_layer(const char *name)
{
    uint32_t n = 0;
    vkEnumerateInstanceLayerProperties(&n, NULL);
    VkLayerProperties *p = calloc(n ? n : 1, sizeof(*p));
    if (!p)
        return false;
    vkEnumerateInstanceLayerProperties(&n, p);
    bool found = false;
    for (uint32_t i = 0; i < n; i++)
        found |= !strcmp(p[i].layerName, name);
    free(p);
    return found;
}

static bool has_instance_ext(const char *name)
{
    uint32_t n = 0;
    vkEnumerateInstanceExtensionProperties(NULL, &n, NULL);
    VkExtensionProperties *p = calloc(n ? n : 1, sizeof(*p));
    if (!p)
        return false;
    vkEnumerateInstanceExtensionProperties(NULL, &n, p);
    bool found = false;
    for (uint32_t i = 0; i < n; i++)
        found |= !strcmp(p[i].extensionName, name);
    free(p);
    return found;
}

static bool has_device_ext(VkPhysicalDevice phys, const char *name)
{
    uint32_t n = 0;
    vkEnumerateDeviceExtensionProperties(phys, NULL, &n, NULL);
    VkExtensionProperties *p = calloc(n ? n : 1, sizeof(*p));
    if (!p)
        return false;
    vkEnumerateDeviceExtensionProperties(phys, NULL, &n, p);
    bool found = false;
    for (uint32_t i = 0; i < n; i++)
        found |= !strcmp(p[i].extensionName, name);
    free(p);
    return found;
}

/* every context's validation messages, those of destroyed ones included */
static atomic_uint validation_total;

/* Validation messages are printed and counted; a test fails on a non-zero count. */
static VKAPI_ATTR VkBool32 VKAPI_CALL
debug_cb(VkDebugUtilsMessageSeverityFlagBitsEXT sev, VkDebugUtilsMessageTypeFlagsEXT type,
         const VkDebugUtilsMessengerCallbackDataEXT *data, void *user)
{
    struct vka_ctx *ctx = user;
    bool counted = (type & VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT) &&
                   sev >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT;
    if (counted) {
        atomic_fetch_add(&ctx->validation_messages, 1);
        atomic_fetch_add(&validation_total, 1);
        /* counted (tests fail on any) and printed at warning level: an error would replace
         * the error a caller is about to report, and the CLI prints only the errors it
         * gets back */
        vka_warn("validation: %s", data->pMessage);
    } else if (sev >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT) {
        vka_warn("vulkan: %s", data->pMessage);
    }
    return VK_FALSE;
}

static int instance_create(bool validation, struct vka_ctx *ctx, VkInstance *out)
{
    int ret = 0;
    const char *layers[1];
    const char *exts[3];
    uint32_t nlayers = 0, nexts = 0;
    VkInstanceCreateFlags flags = 0;

    if (validation) {
        if (!has_layer("VK_LAYER_KHRONOS_validation")) {
            vka_err("validation was asked for (VKACCUM_VALIDATION=1) but the layer "
                    "VK_LAYER_KHRONOS_validation is not installed "
                    "(Debian: apt-get install vulkan-validationlayers)");
            return -ENOTSUP;
        }
        layers[nlayers++] = "VK_LAYER_KHRONOS_validation";
        exts[nexts++] = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
    }
    if (has_instance_ext(VK_KHR_GET_PHYSICAL_DEVICE_PROPERTIES_2_EXTENSION_NAME))
        exts[nexts++] = VK_KHR_GET_PHYSICAL_DEVICE_PROPERTIES_2_EXTENSION_NAME;
    /* MoltenVK lists its devices only to instances that ask for portability ones. */
    if (has_instance_ext("VK_KHR_portability_enumeration")) {
        exts[nexts++] = "VK_KHR_portability_enumeration";
        flags |= 0x00000001; /* VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR */
    }

    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "vkaccum",
        .pEngineName = "vkaccum",
        .apiVersion = VK_API_VERSION_1_2,
    };
    VkDebugUtilsMessengerCreateInfoEXT dbg = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = debug_cb,
        .pUserData = ctx,
    };
    VkInstanceCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pNext = (validation && ctx) ? &dbg : NULL,
        .flags = flags,
        .pApplicationInfo = &app,
        .enabledLayerCount = nlayers,
        .ppEnabledLayerNames = layers,
        .enabledExtensionCount = nexts,
        .ppEnabledExtensionNames = exts,
    };
    VkResult r = vkCreateInstance(&ci, NULL, out);
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER) {
        vka_err("no Vulkan driver found: install one (Debian: apt-get install "
                "mesa-vulkan-drivers for lavapipe, the CPU device)");
        return -ENODEV;
    }
    VK(r);
    if (validation && ctx) {
        PFN_vkCreateDebugUtilsMessengerEXT create = (PFN_vkCreateDebugUtilsMessengerEXT)
            vkGetInstanceProcAddr(*out, "vkCreateDebugUtilsMessengerEXT");
        if (!create) {
            vka_err("vkCreateDebugUtilsMessengerEXT is missing with validation on");
            ret = -ENOTSUP;
            goto fail;
        }
        VK(create(*out, &dbg, NULL, &ctx->messenger));
    }
    return 0;
fail:
    if (*out)
        vkDestroyInstance(*out, NULL);
    *out = VK_NULL_HANDLE;
    return ret;
}

static void device_info_fill(VkPhysicalDevice phys, uint32_t index, struct vka_device_info *d)
{
    memset(d, 0, sizeof(*d));
    d->index = index;

    VkPhysicalDeviceDriverProperties drv = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES };
    VkPhysicalDeviceSubgroupProperties sg = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES, .pNext = &drv };
    VkPhysicalDeviceProperties2 p2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &sg };
    vkGetPhysicalDeviceProperties2(phys, &p2);
    const VkPhysicalDeviceProperties *p = &p2.properties;

    snprintf(d->name, sizeof(d->name), "%s", p->deviceName);
    d->type = p->deviceType;
    if (drv.driverName[0])
        snprintf(d->driver, sizeof(d->driver), "%s%s%s", drv.driverName,
                 drv.driverInfo[0] ? " " : "", drv.driverInfo);
    else
        snprintf(d->driver, sizeof(d->driver), "0x%x", p->driverVersion);
    d->api_version = p->apiVersion;
    d->subgroup_size = sg.subgroupSize;
    d->max_wg_invocations = p->limits.maxComputeWorkGroupInvocations;
    for (int i = 0; i < 3; i++) {
        d->max_wg_size[i] = p->limits.maxComputeWorkGroupSize[i];
        d->max_wg_count[i] = p->limits.maxComputeWorkGroupCount[i];
    }
    d->max_storage_range = p->limits.maxStorageBufferRange;
    d->max_texel_elements = p->limits.maxTexelBufferElements;
    d->timestamp_period = p->limits.timestampPeriod;

    VkPhysicalDeviceVulkan12Features f12 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES };
    VkPhysicalDeviceVulkan11Features f11 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES, .pNext = &f12 };
    VkPhysicalDeviceFeatures2 f2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f11 };
    vkGetPhysicalDeviceFeatures2(phys, &f2);
    d->f16_arith = f12.shaderFloat16;
    d->int8_arith = f12.shaderInt8;
    d->storage16 = f11.storageBuffer16BitAccess;
    d->bda = f12.bufferDeviceAddress;

    VkFormatProperties fp;
    vkGetPhysicalDeviceFormatProperties(phys, VK_FORMAT_R32G32B32A32_SFLOAT, &fp);
    d->texel_rgba32f = fp.bufferFeatures & VK_FORMAT_FEATURE_UNIFORM_TEXEL_BUFFER_BIT;

    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(phys, &nq, NULL);
    VkQueueFamilyProperties qf[16];
    nq = nq > 16 ? 16 : nq;
    vkGetPhysicalDeviceQueueFamilyProperties(phys, &nq, qf);
    for (uint32_t i = 0; i < nq; i++)
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT)
            d->timestamps |= qf[i].timestampValidBits > 0 &&
                             (p->limits.timestampComputeAndGraphics ||
                              (qf[i].queueFlags & VK_QUEUE_GRAPHICS_BIT) == 0);

    VkPhysicalDeviceMemoryBudgetPropertiesEXT budget = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT };
    d->has_memory_budget = has_device_ext(phys, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
    VkPhysicalDeviceMemoryProperties2 mp2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2,
        .pNext = d->has_memory_budget ? &budget : NULL };
    vkGetPhysicalDeviceMemoryProperties2(phys, &mp2);
    const VkPhysicalDeviceMemoryProperties *mp = &mp2.memoryProperties;
    d->heap_count = mp->memoryHeapCount < VKA_MAX_HEAPS ? mp->memoryHeapCount : VKA_MAX_HEAPS;
    for (uint32_t i = 0; i < d->heap_count; i++) {
        d->heap_size[i] = mp->memoryHeaps[i].size;
        d->heap_budget[i] = d->has_memory_budget ? budget.heapBudget[i] : d->heap_size[i];
        d->heap_device_local[i] = mp->memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT;
    }
}

static int physical_devices(VkInstance inst, VkPhysicalDevice **phys, uint32_t *count)
{
    int ret = 0;
    *phys = NULL;
    VK(vkEnumeratePhysicalDevices(inst, count, NULL));
    *phys = calloc(*count ? *count : 1, sizeof(**phys));
    if (!*phys)
        return -ENOMEM;
    VK(vkEnumeratePhysicalDevices(inst, count, *phys));
    return 0;
fail:
    free(*phys);
    *phys = NULL;
    return ret;
}

int vka_devices_query(struct vka_device_info **infos, uint32_t *count)
{
    VkInstance inst = VK_NULL_HANDLE;
    VkPhysicalDevice *phys = NULL;
    *infos = NULL;
    *count = 0;
    int ret = instance_create(false, NULL, &inst);
    if (ret < 0)
        return ret;
    ret = physical_devices(inst, &phys, count);
    if (ret < 0)
        goto out;
    *infos = calloc(*count ? *count : 1, sizeof(**infos));
    if (!*infos) {
        ret = -ENOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < *count; i++)
        device_info_fill(phys[i], i, &(*infos)[i]);
out:
    free(phys);
    vkDestroyInstance(inst, NULL);
    return ret;
}

static bool contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return true;
    }
    return n == 0;
}

static void list_devices(const struct vka_device_info *infos, uint32_t count, char *buf,
                         size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < count && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%u: %s (%s)", i ? ", " : "",
                                 infos[i].index, infos[i].name,
                                 vka_device_type_name(infos[i].type));
}

int vka_device_select(const struct vka_device_info *infos, uint32_t count, const char *sel,
                      uint32_t *index)
{
    char names[1024];
    list_devices(infos, count, names, sizeof(names));
    if (count == 0) {
        vka_err("no Vulkan device found: install one (Debian: apt-get install "
                "mesa-vulkan-drivers for lavapipe, the CPU device)");
        return -ENODEV;
    }
    if (!sel || !*sel) {
        static const VkPhysicalDeviceType order[] = {
            VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU, VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU,
            VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU, VK_PHYSICAL_DEVICE_TYPE_CPU,
            VK_PHYSICAL_DEVICE_TYPE_OTHER };
        for (size_t t = 0; t < sizeof(order) / sizeof(order[0]); t++)
            for (uint32_t i = 0; i < count; i++)
                if (infos[i].type == order[t]) {
                    *index = i;
                    return 0;
                }
    }
    char *end;
    unsigned long n = strtoul(sel, &end, 10);
    if (isdigit((unsigned char)sel[0]) && *end == '\0') {
        if (n < count) {
            *index = (uint32_t)n;
            return 0;
        }
        vka_err("--device %s: there is no device %lu; devices: %s", sel, n, names);
        return -ENODEV;
    }
    for (uint32_t i = 0; i < count; i++)
        if (contains_nocase(infos[i].name, sel)) {
            *index = i;
            return 0;
        }
    vka_err("--device %s: no device name contains \"%s\"; devices: %s", sel, sel, names);
    return -ENODEV;
}

static int check_required(const struct vka_device_info *d)
{
    if (!d->texel_rgba32f) {
        vka_err("device %u (%s) lacks a required feature: uniform texel buffers of "
                "VK_FORMAT_R32G32B32A32_SFLOAT", d->index, d->name);
        return -ENOTSUP;
    }
    if (VK_API_VERSION_MAJOR(d->api_version) == 1 && VK_API_VERSION_MINOR(d->api_version) < 2) {
        vka_err("device %u (%s) supports Vulkan %u.%u; vkaccum needs 1.2", d->index, d->name,
                VK_API_VERSION_MAJOR(d->api_version), VK_API_VERSION_MINOR(d->api_version));
        return -ENOTSUP;
    }
    if (d->max_wg_invocations < 256) {
        vka_err("device %u (%s) allows %u invocations per workgroup; vkaccum needs 256",
                d->index, d->name, d->max_wg_invocations);
        return -ENOTSUP;
    }
    return 0;
}

static int profile_choose(struct vka_ctx *ctx, const struct vka_ctx_params *prm)
{
    struct vka_profile *p = &ctx->profile;
    bool cpu = ctx->info.type == VK_PHYSICAL_DEVICE_TYPE_CPU;
    /* lavapipe.md: storage-buffer loads are per-lane loops there, texel fetches are
     * straight-line gathers; GPUs want storage buffers. */
    p->load = cpu ? VKA_LOAD_TEXEL : VKA_LOAD_STORAGE;
    p->wg_size = cpu ? 64 : 256;
    p->reduce_items = 4;
    /* a norm's apply and dx read 3-5 coefficient vec4s per invocation: on lavapipe each
     * is a gather as dear as a pixel's, and 32 pixels an invocation instead of 4 made dx
     * 0.56x and apply 0.68x the time single-threaded (tools/bench/NOTES.md, "Norms that
     * apply their activation"); GPUs keep 4 (more invocations; not measured there) */
    p->map_pixels = cpu ? 32 : 4;
    /* one workgroup per channel vec4 does a small batch_norm's three passes: on lavapipe
     * it saves two dispatches a layer; a GPU would run too few workgroups (not measured) */
    p->norm_one_pass = cpu;
    p->max_binding = ctx->info.max_storage_range & ~(uint64_t)255;
    const char *s = getenv("VKACCUM_LOAD_PATH");
    if (s && !strcmp(s, "texel"))
        p->load = VKA_LOAD_TEXEL;
    else if (s && !strcmp(s, "storage"))
        p->load = VKA_LOAD_STORAGE;
    else if (s && *s)
        vka_warn("VKACCUM_LOAD_PATH=%s ignored: use texel or storage", s);
    /* shared-memory loads are per-lane loops on lavapipe too (7-10 GFLOP/s there) */
    p->conv_tiles = !cpu;
    s = getenv("VKACCUM_CONV_TILES");
    if (s && (!strcmp(s, "0") || !strcmp(s, "1")))
        p->conv_tiles = s[0] == '1';
    else if (s && *s)
        vka_warn("VKACCUM_CONV_TILES=%s ignored: use 0 or 1", s);
    p->winograd = true;
    s = getenv("VKACCUM_WINOGRAD");
    if (s && (!strcmp(s, "0") || !strcmp(s, "1")))
        p->winograd = s[0] == '1';
    else if (s && *s)
        vka_warn("VKACCUM_WINOGRAD=%s ignored: use 0 or 1", s);
    if (prm->load > VKA_LOAD_STORAGE || prm->conv_tiles > VKA_ON || prm->winograd > VKA_ON) {
        vka_err("vka_ctx_params: load %d, conv_tiles %d or winograd %d is not a choice",
                (int)prm->load, (int)prm->conv_tiles, (int)prm->winograd);
        return -EINVAL;
    }
    if (prm->load != VKA_LOAD_DEFAULT)
        p->load = prm->load;
    if (prm->conv_tiles != VKA_DEFAULT)
        p->conv_tiles = prm->conv_tiles == VKA_ON;
    if (prm->winograd != VKA_DEFAULT)
        p->winograd = prm->winograd == VKA_ON;
    if (prm->max_binding) {
        /* ops keep room for a 256-byte aligned start and a few vec4s in a binding */
        if (prm->max_binding < 4096 || prm->max_binding > p->max_binding) {
            vka_err("vka_ctx_params: max_binding %" PRIu64 " is outside [4096, %" PRIu64
                    "] (this device's storage range)", prm->max_binding, p->max_binding);
            return -EINVAL;
        }
        p->max_binding = prm->max_binding & ~(uint64_t)255;
    }
    return 0;
}

int vka_ctx_create(const struct vka_ctx_params *params, struct vka_ctx **out)
{
    static const struct vka_ctx_params defaults = { .validation = -1 };
    const struct vka_ctx_params *prm = params ? params : &defaults;
    int ret = 0;
    VkPhysicalDevice *phys = NULL;
    struct vka_device_info *infos = NULL;
    struct vka_ctx *ctx = calloc(1, sizeof(*ctx));
    *out = NULL;
    if (!ctx)
        return -ENOMEM;
    atomic_init(&ctx->validation_messages, 0);
    ctx->validation = prm->validation < 0 ? env_flag("VKACCUM_VALIDATION") : prm->validation;

    ret = instance_create(ctx->validation, ctx, &ctx->instance);
    if (ret < 0)
        goto fail;
    uint32_t count;
    ret = physical_devices(ctx->instance, &phys, &count);
    if (ret < 0)
        goto fail;
    infos = calloc(count ? count : 1, sizeof(*infos));
    if (!infos) {
        ret = -ENOMEM;
        goto fail;
    }
    for (uint32_t i = 0; i < count; i++)
        device_info_fill(phys[i], i, &infos[i]);
    uint32_t index;
    ret = vka_device_select(infos, count, prm->device, &index);
    if (ret < 0)
        goto fail;
    ctx->phys = phys[index];
    ctx->info = infos[index];
    ret = check_required(&ctx->info);
    if (ret < 0)
        goto fail;
    vkGetPhysicalDeviceProperties(ctx->phys, &ctx->props);
    vkGetPhysicalDeviceMemoryProperties(ctx->phys, &ctx->mem_props);

    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(ctx->phys, &nq, NULL);
    VkQueueFamilyProperties qf[16];
    nq = nq > 16 ? 16 : nq;
    vkGetPhysicalDeviceQueueFamilyProperties(ctx->phys, &nq, qf);
    ctx->queue_family = UINT32_MAX;
    for (uint32_t i = 0; i < nq && ctx->queue_family == UINT32_MAX; i++)
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT)
            ctx->queue_family = i;
    if (ctx->queue_family == UINT32_MAX) {
        vka_err("device %s has no compute queue", ctx->info.name);
        ret = -ENOTSUP;
        goto fail;
    }

    const char *exts[2];
    uint32_t nexts = 0;
    if (ctx->info.has_memory_budget)
        exts[nexts++] = VK_EXT_MEMORY_BUDGET_EXTENSION_NAME;
    if (has_device_ext(ctx->phys, "VK_KHR_portability_subset"))
        exts[nexts++] = "VK_KHR_portability_subset";
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = ctx->queue_family,
        .queueCount = 1,
        .pQueuePriorities = &prio,
    };
    VkDeviceCreateInfo dci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &qci,
        .enabledExtensionCount = nexts,
        .ppEnabledExtensionNames = exts,
    };
    VK(vkCreateDevice(ctx->phys, &dci, NULL, &ctx->dev));
    vkGetDeviceQueue(ctx->dev, ctx->queue_family, 0, &ctx->queue);

    VkCommandPoolCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = ctx->queue_family,
    };
    VK(vkCreateCommandPool(ctx->dev, &pci, NULL, &ctx->cmd_pool));

    ret = profile_choose(ctx, prm);
    if (ret < 0)
        goto fail;
    vka_mem_init(ctx, prm->budget);
    ret = vka_pipeline_cache_open(ctx, prm->cache_dir);
    if (ret < 0)
        goto fail;

    vka_info("device %u: %s (%s, %s), %s loads, conv tiles %s", ctx->info.index,
             ctx->info.name, vka_device_type_name(ctx->info.type), ctx->info.driver,
             ctx->profile.load == VKA_LOAD_TEXEL ? "texel-buffer" : "storage-buffer",
             ctx->profile.conv_tiles ? "on" : "off");
    free(phys);
    free(infos);
    *out = ctx;
    return 0;
fail:
    free(phys);
    free(infos);
    vka_ctx_destroy(&ctx);
    return ret;
}

void vka_ctx_destroy(struct vka_ctx **pctx)
{
    struct vka_ctx *ctx = *pctx;
    if (!ctx)
        return;
    if (ctx->dev) {
        vkDeviceWaitIdle(ctx->dev);
        vka_cmd_destroy(&ctx->xfer);
        vka_buf_destroy(&ctx->staging);
        if (ctx->mem.live_buffers)
            vka_warn("%u buffers still alive when the context was destroyed",
                     ctx->mem.live_buffers);
        vka_pipeline_cache_close(ctx);
        vka_pipes_destroy(ctx);
        if (ctx->cmd_pool)
            vkDestroyCommandPool(ctx->dev, ctx->cmd_pool, NULL);
        vkDestroyDevice(ctx->dev, NULL);
    }
    if (ctx->messenger) {
        PFN_vkDestroyDebugUtilsMessengerEXT destroy = (PFN_vkDestroyDebugUtilsMessengerEXT)
            vkGetInstanceProcAddr(ctx->instance, "vkDestroyDebugUtilsMessengerEXT");
        if (destroy)
            destroy(ctx->instance, ctx->messenger, NULL);
    }
    if (ctx->instance)
        vkDestroyInstance(ctx->instance, NULL);
    free(ctx);
    *pctx = NULL;
}

unsigned vka_validation_total(void)
{
    return atomic_load(&validation_total);
}

unsigned vka_ctx_validation_count(struct vka_ctx *ctx)
{
    return atomic_load(&ctx->validation_messages);
}
