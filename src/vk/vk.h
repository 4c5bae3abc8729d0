/* The Vulkan runtime (layer 1): context and device choice (context.c), buffers and the
 * memory accountant (memory.c), pipelines from embedded SPIR-V (pipeline.c), command
 * recording and submission (command.c).
 *
 * Conventions: functions return 0 or a negative errno and log the reason (vka_last_error
 * holds it); constructors take a *_params struct; destructors take &handle, accept NULL
 * and reset it. A vka_ctx owns everything created from it except buffers, pipelines held
 * by the caller, and recorders, which the caller destroys before the context. */
#ifndef VKA_VK_H
#define VKA_VK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vulkan/vulkan.h>

/* ---- devices ---------------------------------------------------------------------- */

#define VKA_MAX_HEAPS 16

struct vka_device_info {
    uint32_t index;
    char name[VK_MAX_PHYSICAL_DEVICE_NAME_SIZE];
    VkPhysicalDeviceType type;
    char driver[VK_MAX_DRIVER_NAME_SIZE + VK_MAX_DRIVER_INFO_SIZE + 4];
    uint32_t api_version;
    uint32_t heap_count;
    uint64_t heap_size[VKA_MAX_HEAPS];
    uint64_t heap_budget[VKA_MAX_HEAPS]; /* VK_EXT_memory_budget, else heap_size */
    bool heap_device_local[VKA_MAX_HEAPS];
    bool has_memory_budget;
    uint32_t subgroup_size;
    uint32_t max_wg_invocations;
    uint32_t max_wg_size[3];
    uint32_t max_wg_count[3];
    uint32_t max_storage_range;
    uint32_t max_texel_elements;
    bool f16_arith, int8_arith, storage16, bda;
    bool texel_rgba32f; /* uniform texel buffers of R32G32B32A32_SFLOAT */
    bool timestamps;
    float timestamp_period; /* ns per tick */
};

const char *vka_device_type_name(VkPhysicalDeviceType type);

/* Every Vulkan device the loader reports, in the loader's order; *infos is malloc'ed. */
int vka_devices_query(struct vka_device_info **infos, uint32_t *count);

/* Picks a device: sel NULL or "" takes the first discrete GPU, else integrated, else
 * virtual, else CPU; a decimal number is an index; anything else a case-insensitive
 * substring of the name. -ENODEV with a message listing the devices when none fits. */
int vka_device_select(const struct vka_device_info *infos, uint32_t count, const char *sel,
                      uint32_t *index);

/* ---- memory ------------------------------------------------------------------------ */

enum vka_mem_cat {
    VKA_MEM_PARAMS,
    VKA_MEM_GRADS,
    VKA_MEM_OPTIM,
    VKA_MEM_ACTIVATIONS,
    VKA_MEM_STAGING,
    VKA_MEM_OTHER,
    VKA_MEM_CAT_COUNT,
};

const char *vka_mem_cat_name(enum vka_mem_cat cat);

struct vka_mem_stats {
    uint64_t cur[VKA_MEM_CAT_COUNT];
    uint64_t peak[VKA_MEM_CAT_COUNT];
    uint64_t total_cur, total_peak;
    uint64_t budget;
    uint32_t live_buffers;
};

/* ---- device profile ---------------------------------------------------------------- */

enum vka_load_path {
    VKA_LOAD_DEFAULT, /* vka_ctx_params only: the device's choice */
    VKA_LOAD_TEXEL,   /* uniform texel buffers, RGBA32F texelFetch (lavapipe) */
    VKA_LOAD_STORAGE, /* storage buffers (GPUs) */
};

/* An on/off choice of vka_ctx_params; VKA_DEFAULT leaves it to the device. */
enum vka_choice {
    VKA_DEFAULT,
    VKA_OFF,
    VKA_ON,
};

/* Which kernel variants and sizes this device runs. Filled by vka_ctx_create from the
 * device type (lavapipe.md holds the measurements behind the CPU row), then from the
 * environment (VKACCUM_LOAD_PATH=texel|storage, VKACCUM_CONV_TILES=0|1,
 * VKACCUM_WINOGRAD=0|1: runs and benchmarks), then from vka_ctx_params (load, conv_tiles,
 * winograd, max_binding: tests of every path). Read-only once the context exists. */
struct vka_profile {
    enum vka_load_path load; /* never VKA_LOAD_DEFAULT */
    uint32_t wg_size;      /* 1-D elementwise and reduction workgroups */
    uint32_t reduce_items; /* vec4s per invocation per reduction pass */
    uint32_t map_pixels;   /* pixels per invocation of a norm's apply and dx (at most) */
    bool norm_one_pass;    /* a batch_norm forward whose pixels per channel fit one block
                              runs as one dispatch, not three (src/ops/norm.c) */
    bool conv_tiles;       /* conv GEMMs stage weights in shared memory (GPUs; on lavapipe
                              shared loads are per-lane loops) */
    bool winograd;         /* conv2d 3x3 stride 1 as Winograd F(2x2 or 4x4, 3x3) and, for
                              the weight gradient, F(3x3, 2x2 or 4x4) (src/ops/conv.c; on
                              by default everywhere) */
    uint64_t max_binding;  /* bytes one storage binding may span: maxStorageBufferRange
                              rounded down to 256; ops split larger tensors into chunks */
};

/* ---- context ----------------------------------------------------------------------- */

struct vka_pipe;

struct vka_ctx_params {
    const char *device;     /* see vka_device_select */
    int validation;         /* 1 on, 0 off, -1 from VKACCUM_VALIDATION (default) */
    uint64_t budget;        /* bytes; 0: VK_EXT_memory_budget or the heap size */
    const char *cache_dir;  /* pipeline cache folder; NULL: $VKACCUM_CACHE_DIR,
                               $XDG_CACHE_HOME/vkaccum, ~/.cache/vkaccum */
    /* device policy (struct vka_profile); zero keeps the device's or the environment's */
    enum vka_load_path load;    /* the kernels' input load path */
    enum vka_choice conv_tiles; /* shared-memory weight tiles in the conv GEMMs */
    enum vka_choice winograd;   /* Winograd for conv2d 3x3 stride 1 (see vka_profile) */
    uint64_t max_binding;       /* bytes, at most the device's range and at least 4096:
                                   a smaller one splits ops into more dispatches (tests) */
};

struct vka_timing;

struct vka_ctx {
    VkInstance instance;
    VkDebugUtilsMessengerEXT messenger;
    VkPhysicalDevice phys;
    VkDevice dev;
    VkQueue queue;
    uint32_t queue_family;
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties mem_props;
    struct vka_device_info info;
    struct vka_profile profile;
    bool validation;
    atomic_uint validation_messages; /* warnings and errors from the validation layer */

    struct vka_mem_stats mem;

    VkCommandPool cmd_pool;
    VkPipelineCache pipeline_cache;
    char cache_path[4096];
    struct vka_pipe *pipes; /* every pipeline built, freed with the context */

    struct vka_buf *staging; /* reused by vka_buf_upload/download */
    struct vka_cmd *xfer;    /* their recorder, made once */

    /* While set (--profile), the trainers time their work per op and pass into it
     * (src/timing.h); its owner sets it, and clears it before freeing it. */
    struct vka_timing *timing;
};

int vka_ctx_create(const struct vka_ctx_params *params, struct vka_ctx **ctx);
void vka_ctx_destroy(struct vka_ctx **ctx);

/* Validation-layer warnings and errors seen so far (0 when validation is off). */
unsigned vka_ctx_validation_count(struct vka_ctx *ctx);
/* The same over every context of the process, those destroyed included: the layer
 * reports leaked objects while vka_ctx_destroy destroys the device. */
unsigned vka_validation_total(void);

/* ---- buffers ----------------------------------------------------------------------- */

struct vka_buf {
    struct vka_ctx *ctx;
    VkBuffer buf;
    VkDeviceMemory mem;
    VkDeviceSize size;       /* usable bytes, a multiple of 16 */
    VkDeviceSize accounted;  /* bytes charged to the accountant */
    enum vka_mem_cat cat;
    bool host_visible;
    void *mapped;            /* host-visible buffers stay mapped */
    VkBufferView texel_view; /* RGBA32F view of the whole buffer, made on first use */
    bool dry;                /* a size without memory (vka_buf_params.dry) */
};

struct vka_buf_params {
    VkDeviceSize size;  /* bytes; rounded up to 16; 0 is allowed (a 16-byte buffer) */
    enum vka_mem_cat cat;
    bool host_visible;  /* staging */
    bool dry;           /* a size only: no Vulkan object, no memory, nothing charged; what
                           a dry recorder (vka_cmd_params.dry) binds to size a pass */
};

/* -ENOMEM with a message naming the size, category, use and budget when the allocation
 * would pass the budget; nothing is allocated then. */
int vka_buf_create(struct vka_ctx *ctx, const struct vka_buf_params *params,
                   struct vka_buf **buf);
void vka_buf_destroy(struct vka_buf **buf);

int vka_buf_texel_view(struct vka_buf *buf, VkBufferView *view);

/* The staging buffer a transfer of `transfer` bytes leaves (it grows to the largest
 * transfer, up to a chunk of 8 MiB; larger ones go through it chunk by chunk: measured no
 * slower than 32 MiB chunks for 96 MiB up and down here). */
uint64_t vka_staging_bytes(uint64_t transfer);
/* Host <-> device copies through the context's staging buffer; they wait for the copy. */
int vka_buf_upload(struct vka_buf *buf, VkDeviceSize offset, const void *data, size_t size);
int vka_buf_download(struct vka_buf *buf, VkDeviceSize offset, void *data, size_t size);

void vka_mem_get_stats(struct vka_ctx *ctx, struct vka_mem_stats *stats);
void vka_mem_reset_peak(struct vka_ctx *ctx);

/* ---- pipelines --------------------------------------------------------------------- */

#define VKA_MAX_BINDINGS 8
#define VKA_MAX_SPEC 8

enum vka_bind_kind {
    VKA_BIND_IN,  /* read through the profile's load path (texel or storage) */
    VKA_BIND_OUT, /* storage buffer, read and written */
};

struct vka_pipe_params {
    const char *shader;  /* variant name; "_tb"/"_sb" is appended when it has inputs */
    uint32_t nbind;
    enum vka_bind_kind bind[VKA_MAX_BINDINGS];
    uint32_t push_size;  /* bytes */
    uint32_t nspec;      /* specialization constants 1..nspec (0 is the workgroup size) */
    uint32_t spec[VKA_MAX_SPEC];
    uint32_t wg_size;    /* 0: the profile's */
};

struct vka_pipe {
    struct vka_pipe *next;
    struct vka_pipe_params params;
    char variant[64];
    bool texel; /* its VKA_BIND_IN bindings are texel buffers */
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkPipeline pipe;
};

/* Builds the pipeline once per context and parameters; later calls return the same one. */
int vka_pipe_get(struct vka_ctx *ctx, const struct vka_pipe_params *params,
                 struct vka_pipe **pipe);

/* ---- command recording ------------------------------------------------------------- */

/* A buffer range bound to one binding. range 0 means "to the end of the buffer". */
struct vka_binding {
    struct vka_buf *buf;
    VkDeviceSize offset;
    VkDeviceSize range;
};

struct vka_cmd_params {
    bool timing;        /* timestamp before and after every dispatch and copy */
    uint32_t max_timed; /* dispatches timed; default 1024 */
    bool dry;           /* records nothing: dispatches and copies are checked and dropped,
                           scratch is dry buffers (counted), it can't be submitted. The
                           graph sizes a pass's workspace with one before allocating. */
};

struct vka_cmd;

int vka_cmd_create(struct vka_ctx *ctx, const struct vka_cmd_params *params,
                   struct vka_cmd **cmd);
void vka_cmd_destroy(struct vka_cmd **cmd);

/* Starts (or restarts) recording; what the recorder owned from earlier is released. */
int vka_cmd_begin(struct vka_cmd *cmd);

/* Records a dispatch of groups[0..2] workgroups. A barrier before it orders it after
 * every earlier dispatch and copy of this recorder. Texel-path bindings read through
 * the buffer's whole-buffer texel view, so their offset is 0 and the kernel takes its
 * base from push constants. */
int vka_cmd_dispatch(struct vka_cmd *cmd, struct vka_pipe *pipe, const struct vka_binding *b,
                     const void *push, const uint32_t groups[3]);

/* n invocations as a 2-D grid of 1-D workgroups (see flat_id() in common.glsl). */
int vka_cmd_dispatch_1d(struct vka_cmd *cmd, struct vka_pipe *pipe,
                        const struct vka_binding *b, const void *push, uint64_t n);

int vka_cmd_copy(struct vka_cmd *cmd, struct vka_buf *src, VkDeviceSize src_off,
                 struct vka_buf *dst, VkDeviceSize dst_off, VkDeviceSize size);

/* size bytes of dst from off (both multiples of 4) = word, repeated (vkCmdFillBuffer). */
int vka_cmd_fill(struct vka_cmd *cmd, struct vka_buf *dst, VkDeviceSize off, VkDeviceSize size,
                 uint32_t word);

/* The recorder destroys buf when it is destroyed or begun again, after its work. */
int vka_cmd_own(struct vka_cmd *cmd, struct vka_buf *buf);

/* Scratch memory for the work being recorded, `bytes` at *off of *buf, 256-byte aligned.
 * Inside a workspace (vka_cmd_set_workspace) it is carved from it, -ENOSPC when the
 * workspace is too small; otherwise a buffer of its own (VKA_MEM_OTHER) that the recorder
 * owns, or a dry one for a dry recorder. */
int vka_cmd_scratch(struct vka_cmd *cmd, uint64_t bytes, struct vka_buf **buf, uint64_t *off);
/* Scratch comes from [off, off + bytes) of buf until the next call (buf NULL: own
 * buffers again). Only one op's work may use a workspace: ops after it reuse it, which
 * the barrier between dispatches makes safe. */
void vka_cmd_set_workspace(struct vka_cmd *cmd, struct vka_buf *buf, uint64_t off,
                           uint64_t bytes);
/* Scratch bytes (aligned) handed out since the last call. */
uint64_t vka_cmd_take_scratch_count(struct vka_cmd *cmd);

int vka_cmd_end(struct vka_cmd *cmd);

struct vka_ctx *vka_cmd_ctx(struct vka_cmd *cmd);

/* Submits the recorded work (again, for a replay) and waits; -ETIMEDOUT after
 * timeout_ms, -EIO when the device was lost. */
int vka_cmd_submit_wait(struct vka_cmd *cmd, uint64_t timeout_ms);

/* Milliseconds each timed dispatch (and copy) took in the last submission; returns how
 * many. */
uint32_t vka_cmd_timings(struct vka_cmd *cmd, double *ms, uint32_t max);
/* What each of them ran: its pipeline's variant name ("conv_gemm0_tb"), or "copy". */
uint32_t vka_cmd_timed_names(struct vka_cmd *cmd, const char **names, uint32_t max);
/* Dispatches and copies timed so far in the recording. */
uint32_t vka_cmd_timed_count(const struct vka_cmd *cmd);

/* End, submit and wait with the default timeout (VKACCUM_TIMEOUT_MS, else 600 s). */
int vka_cmd_run(struct vka_cmd *cmd);

/* ---- helpers ----------------------------------------------------------------------- */

const char *vka_result_name(VkResult r);
int vka_errno_from_result(VkResult r);

/* Checks a VkResult: on failure logs the call, the result's name and file:line, sets ret
 * to a negative errno and jumps to the function's cleanup label `fail`. */
#define VK(call)                                                                         \
    do {                                                                                 \
        VkResult vk_res_ = (call);                                                       \
        if (vk_res_ != VK_SUCCESS) {                                                     \
            vka_err("%s failed: %s (%s:%d)", #call, vka_result_name(vk_res_), __FILE__,  \
                    __LINE__);                                                           \
            ret = vka_errno_from_result(vk_res_);                                        \
            goto fail;                                                                   \
        }                                                                                \
    } while (0)

#endif
