/* The Vulkan runtime: start-up with validation, device choice, buffers and the memory
 * accountant, tensors and their layouts, pipelines and their cache, the recorder. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "ops/basic.h"

Test(runtime, starts_with_validation)
{
    struct vka_ctx *ctx = test_ctx();
    cr_assert(ctx->dev != VK_NULL_HANDLE);
    cr_assert(ctx->messenger != VK_NULL_HANDLE, "no debug-utils messenger");
    cr_assert(ctx->info.texel_rgba32f);
    cr_assert_gt(ctx->mem.budget, 0);
    test_ctx_done(&ctx);
}

/* The net must catch something: a buffer of size 0 breaks VUID-VkBufferCreateInfo-size-00912. */
Test(runtime, validation_error_is_counted)
{
    struct vka_ctx *ctx = test_ctx();
    cr_assert_eq(vka_ctx_validation_count(ctx), 0);
    VkBufferCreateInfo bci = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = 0,
        .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT,
    };
    VkBuffer b = VK_NULL_HANDLE;
    vkCreateBuffer(ctx->dev, &bci, NULL, &b);
    if (b)
        vkDestroyBuffer(ctx->dev, b, NULL);
    cr_assert_geq(vka_ctx_validation_count(ctx), 1, "the validation layer stayed silent");
    vka_ctx_destroy(&ctx);
}

Test(runtime, device_query_and_default_choice)
{
    struct vka_device_info *infos;
    uint32_t n, idx = 99;
    cr_assert_eq(vka_devices_query(&infos, &n), 0, "%s", vka_last_error());
    cr_assert_geq(n, 1, "no Vulkan device: is mesa-vulkan-drivers installed?");
    cr_assert_eq(vka_device_select(infos, n, NULL, &idx), 0);
    cr_assert_lt(idx, n);
    /* the default prefers discrete over integrated over virtual over CPU */
    for (uint32_t i = 0; i < n; i++)
        if (infos[i].type == VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU)
            cr_assert_eq(infos[idx].type, VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU);
    cr_assert_eq(vka_device_select(infos, n, "0", &idx), 0);
    cr_assert_eq(idx, 0);
    /* a substring of the name, any case */
    char part[8];
    snprintf(part, sizeof(part), "%.3s", infos[0].name);
    for (char *p = part; *p; p++)
        *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    cr_assert_eq(vka_device_select(infos, n, part, &idx), 0, "%s", vka_last_error());
    free(infos);
}

Test(runtime, bad_device_is_refused)
{
    struct vka_ctx *ctx = NULL;
    int ret = vka_ctx_create(&(struct vka_ctx_params){ .device = "999", .validation = 1 }, &ctx);
    cr_assert_eq(ret, -ENODEV);
    cr_assert_null(ctx);
    cr_assert(strstr(vka_last_error(), "there is no device 999"), "%s", vka_last_error());
    ret = vka_ctx_create(&(struct vka_ctx_params){ .device = "no-such-gpu", .validation = 1 },
                         &ctx);
    cr_assert_eq(ret, -ENODEV);
    cr_assert(strstr(vka_last_error(), "no-such-gpu"), "%s", vka_last_error());
    cr_assert(strstr(vka_last_error(), "devices: 0:"), "the message lists no devices: %s",
              vka_last_error());
}

Test(runtime, buffer_round_trip)
{
    struct vka_ctx *ctx = test_ctx();
    test_seed("buffer_round_trip");
    /* sizes around the staging chunk (8 MiB) cross chunk boundaries */
    static const size_t sizes[] = { 4, 12, 4096, 1000003 * 4, (8u << 20) + 20, (32u << 20) + 20 };
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t n = sizes[s];
        unsigned char *a = malloc(n), *b = malloc(n);
        for (size_t i = 0; i < n; i++)
            a[i] = (unsigned char)test_rand_u64();
        memset(b, 0xee, n);
        struct vka_buf *buf;
        cr_assert_eq(vka_buf_create(ctx, &(struct vka_buf_params){ .size = n }, &buf), 0);
        cr_assert_eq(vka_buf_upload(buf, 0, a, n), 0, "%s", vka_last_error());
        cr_assert_eq(vka_buf_download(buf, 0, b, n), 0, "%s", vka_last_error());
        cr_assert(!memcmp(a, b, n), "round trip of %zu bytes differs", n);
        /* a partial read at an offset */
        if (n > 16) {
            memset(b, 0, n);
            cr_assert_eq(vka_buf_download(buf, 8, b, n - 12), 0);
            cr_assert(!memcmp(a + 8, b, n - 12));
        }
        /* out of range is refused, not clamped */
        cr_assert_eq(vka_buf_download(buf, buf->size - 4, b, 8), -EINVAL);
        vka_buf_destroy(&buf);
        cr_assert_null(buf);
        free(a);
        free(b);
    }
    vka_buf_destroy(&(struct vka_buf *){ NULL }); /* NULL is accepted */
    test_ctx_done(&ctx);
}

Test(runtime, tensor_nhwc4_round_trip)
{
    struct vka_ctx *ctx = test_ctx();
    test_seed("tensor_nhwc4_round_trip");
    static const uint32_t shapes[][4] = { { 1, 1, 1, 1 }, { 2, 3, 5, 7 }, { 5, 4, 3, 2 },
                                          { 1, 13, 1, 1 }, { 3, 6, 9, 4 } };
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        const uint32_t *d = shapes[s];
        struct vka_tensor t;
        cr_assert_eq(vka_tensor_create(ctx, &(struct vka_tensor_params){
                         .n = d[0], .c = d[1], .h = d[2], .w = d[3],
                         .layout = VKA_LAYOUT_NHWC4, .cat = VKA_MEM_ACTIVATIONS }, &t), 0);
        cr_assert_eq(t.cs % 4, 0);
        size_t numel = vka_tensor_numel(&t);
        float *a = malloc(numel * 4), *b = malloc(numel * 4);
        float *raw = malloc(vka_tensor_stored(&t) * 4);
        for (size_t i = 0; i < numel; i++)
            a[i] = test_rand_uniform(-1, 1);
        cr_assert_eq(vka_tensor_upload(&t, a), 0);
        cr_assert_eq(vka_tensor_download(&t, b), 0);
        cr_assert(!memcmp(a, b, numel * 4));
        /* the stored layout really is NHWC with zero padding channels */
        cr_assert_eq(vka_buf_download(t.buf, 0, raw, vka_tensor_stored(&t) * 4), 0);
        for (uint32_t n = 0; n < d[0]; n++)
            for (uint32_t y = 0; y < d[2]; y++)
                for (uint32_t x = 0; x < d[3]; x++)
                    for (uint32_t c = 0; c < t.cs; c++) {
                        float v = raw[((n * d[2] + y) * d[3] + x) * t.cs + c];
                        float want = c < d[1] ? a[((n * d[1] + c) * d[2] + y) * d[3] + x] : 0;
                        cr_assert_eq(v, want, "(%u,%u,%u,%u)", n, c, y, x);
                    }
        vka_tensor_destroy(&t);
        free(a);
        free(b);
        free(raw);
    }
    struct vka_tensor t;
    cr_assert_eq(vka_tensor_create(ctx, &(struct vka_tensor_params){
                     .n = 1, .c = 1, .h = 1, .w = 1, .dtype = VKA_F16 }, &t), -ENOTSUP);
    test_ctx_done(&ctx);
}

Test(runtime, budget_is_enforced)
{
    const uint64_t budget = 1 << 20;
    struct vka_ctx *ctx = test_ctx_params(&(struct vka_ctx_params){
        .validation = 1, .budget = budget });
    cr_assert_eq(ctx->mem.budget, budget);
    struct vka_buf *a = NULL, *b = NULL;
    cr_assert_eq(vka_buf_create(ctx, &(struct vka_buf_params){
                     .size = 600 << 10, .cat = VKA_MEM_PARAMS }, &a), 0);
    cr_assert_geq(ctx->mem.cur[VKA_MEM_PARAMS], 600 << 10);
    int ret = vka_buf_create(ctx, &(struct vka_buf_params){
        .size = 600 << 10, .cat = VKA_MEM_ACTIVATIONS }, &b);
    cr_assert_eq(ret, -ENOMEM);
    cr_assert_null(b);
    const char *msg = vka_last_error();
    cr_assert(strstr(msg, "600.00 KiB of activations"), "size/category missing: %s", msg);
    cr_assert(strstr(msg, "1.00 MiB budget"), "budget missing: %s", msg);
    cr_assert(strstr(msg, "in use"), "current use missing: %s", msg);
    /* nothing was charged or leaked by the refusal */
    cr_assert_eq(ctx->mem.cur[VKA_MEM_ACTIVATIONS], 0);
    cr_assert_eq(ctx->mem.live_buffers, 1);
    uint64_t peak = ctx->mem.total_peak;
    vka_buf_destroy(&a);
    cr_assert_eq(ctx->mem.total_cur, 0);
    cr_assert_eq(ctx->mem.total_peak, peak, "the peak must survive a free");
    cr_assert_eq(vka_buf_create(ctx, &(struct vka_buf_params){
                     .size = 600 << 10, .cat = VKA_MEM_ACTIVATIONS }, &b), 0);
    vka_buf_destroy(&b);
    test_ctx_done(&ctx);
}

Test(runtime, pipeline_cache_is_written_and_reused)
{
    char dir[] = "/tmp/vkaccum-cache-XXXXXX";
    cr_assert(mkdtemp(dir));
    struct vka_ctx *ctx = test_ctx_params(&(struct vka_ctx_params){
        .validation = 1, .cache_dir = dir });
    struct vka_pipe *p1, *p2;
    cr_assert_eq(vka_pipe_get(ctx, &(struct vka_pipe_params){
                     .shader = "scale", .nbind = 1, .bind = { VKA_BIND_OUT },
                     .push_size = 16 }, &p1), 0, "%s", vka_last_error());
    cr_assert_eq(vka_pipe_get(ctx, &(struct vka_pipe_params){
                     .shader = "scale", .nbind = 1, .bind = { VKA_BIND_OUT },
                     .push_size = 16 }, &p2), 0);
    cr_assert_eq(p1, p2, "the same parameters built a second pipeline");
    cr_assert_eq(vka_pipe_get(ctx, &(struct vka_pipe_params){
                     .shader = "no_such_shader", .nbind = 1, .bind = { VKA_BIND_OUT } }, &p2),
                 -ENOENT);
    char path[4096];
    snprintf(path, sizeof(path), "%s", ctx->cache_path);
    test_ctx_done(&ctx);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "no cache file at %s", path);
    cr_assert_geq(st.st_size, 32, "the cache file lacks even its header"); /* lavapipe keeps no binaries: header only */
    /* a second start reads it back; a corrupt file is ignored, not fatal */
    ctx = test_ctx_params(&(struct vka_ctx_params){ .validation = 1, .cache_dir = dir });
    test_ctx_done(&ctx);
    FILE *f = fopen(path, "wb");
    fputs("garbage", f);
    fclose(f);
    ctx = test_ctx_params(&(struct vka_ctx_params){ .validation = 1, .cache_dir = dir });
    cr_assert_eq(vka_pipe_get(ctx, &(struct vka_pipe_params){
                     .shader = "scale", .nbind = 1, .bind = { VKA_BIND_OUT },
                     .push_size = 16 }, &p1), 0);
    test_ctx_done(&ctx);
    unlink(path);
    rmdir(dir);
}

Test(runtime, recorder_replays_and_times)
{
    struct vka_ctx *ctx = test_ctx();
    struct vka_cmd *cmd;
    cr_assert_eq(vka_cmd_create(ctx, &(struct vka_cmd_params){ .timing = true }, &cmd), 0,
                 "%s", vka_last_error());
    struct vka_tensor y = test_flat_guarded(ctx, 0, 1000, NULL);
    cr_assert_eq(vka_cmd_begin(cmd), 0);
    cr_assert_eq(vka_fill(cmd, &y, 1.0f), 0);
    cr_assert_eq(vka_scale(cmd, &y, 2.0f), 0);
    test_run(cmd);
    double ms[4];
    cr_assert_eq(vka_cmd_timings(cmd, ms, 4), 2);
    cr_assert(ms[0] >= 0 && ms[1] >= 0 && ms[0] < 10000);
    /* replaying the same recording runs the same work again */
    cr_assert_eq(vka_cmd_submit_wait(cmd, 60000), 0, "%s", vka_last_error());
    float out[1000];
    test_flat_check_guard(&y, out);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(out[i], 2.0f);
    /* dispatching outside a recording is refused */
    cr_assert_eq(vka_fill(cmd, &y, 3.0f), -EINVAL);
    vka_cmd_destroy(&cmd);
    cr_assert_null(cmd);
    vka_tensor_destroy(&y);
    test_ctx_done(&ctx);
}
