/* vkaccum devices: every Vulkan device, as a table or JSON. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/opts.h"
#include "dist.h"
#include "log.h"
#include "vk/vk.h"

static const char usage[] =
    "usage: vkaccum devices [--json]\n"
    "\n"
    "Lists every Vulkan device: index, name, type, driver, API version, memory heaps and\n"
    "budget, subgroup size, workgroup limits, f16/int8 support. '*' marks the device\n"
    "that vkaccum picks by default (discrete GPU, then integrated, virtual, CPU); pick\n"
    "another with --device N or a part of its name on any command.";

struct devices_opts {
    bool json;
};

static const struct opt_desc opts[] = {
    OPT_ROW(struct devices_opts, "json", OPT_BOOL, json, NULL, "one JSON array instead of the table"),
};

static void version_str(uint32_t v, char *buf, size_t size)
{
    snprintf(buf, size, "%u.%u.%u", VK_API_VERSION_MAJOR(v), VK_API_VERSION_MINOR(v),
             VK_API_VERSION_PATCH(v));
}

static cJSON *device_json(const struct vka_device_info *d, bool chosen)
{
    char api[32];
    version_str(d->api_version, api, sizeof(api));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "index", d->index);
    cJSON_AddStringToObject(o, "name", d->name);
    cJSON_AddStringToObject(o, "type", vka_device_type_name(d->type));
    cJSON_AddStringToObject(o, "driver", d->driver);
    cJSON_AddStringToObject(o, "api_version", api);
    cJSON_AddBoolToObject(o, "default", chosen);
    cJSON *heaps = cJSON_AddArrayToObject(o, "heaps");
    for (uint32_t i = 0; i < d->heap_count; i++) {
        cJSON *h = cJSON_CreateObject();
        cJSON_AddNumberToObject(h, "size", (double)d->heap_size[i]);
        cJSON_AddNumberToObject(h, "budget", (double)d->heap_budget[i]);
        cJSON_AddBoolToObject(h, "device_local", d->heap_device_local[i]);
        cJSON_AddItemToArray(heaps, h);
    }
    cJSON_AddBoolToObject(o, "memory_budget_ext", d->has_memory_budget);
    cJSON_AddNumberToObject(o, "subgroup_size", d->subgroup_size);
    cJSON_AddNumberToObject(o, "max_workgroup_invocations", d->max_wg_invocations);
    cJSON *wg = cJSON_AddArrayToObject(o, "max_workgroup_size");
    for (int i = 0; i < 3; i++)
        cJSON_AddItemToArray(wg, cJSON_CreateNumber(d->max_wg_size[i]));
    cJSON_AddNumberToObject(o, "max_storage_buffer_range", d->max_storage_range);
    cJSON_AddNumberToObject(o, "max_texel_buffer_elements", d->max_texel_elements);
    cJSON_AddBoolToObject(o, "float16", d->f16_arith);
    cJSON_AddBoolToObject(o, "int8", d->int8_arith);
    cJSON_AddBoolToObject(o, "storage_16bit", d->storage16);
    cJSON_AddBoolToObject(o, "buffer_device_address", d->bda);
    cJSON_AddBoolToObject(o, "texel_rgba32f", d->texel_rgba32f);
    cJSON_AddBoolToObject(o, "timestamps", d->timestamps);
    return o;
}

static void print_table(const struct vka_device_info *infos, uint32_t n, uint32_t chosen)
{
    printf("  # %-34s %-10s %-26s %-7s %-18s %-7s %-5s %-8s %s\n", "name", "type", "driver",
           "api", "heaps MiB (budget)", "subgrp", "maxwg", "f16/i8", "");
    for (uint32_t i = 0; i < n; i++) {
        const struct vka_device_info *d = &infos[i];
        char api[32], heaps[128] = "";
        version_str(d->api_version, api, sizeof(api));
        size_t used = 0;
        for (uint32_t h = 0; h < d->heap_count && used < sizeof(heaps); h++)
            used += (size_t)snprintf(heaps + used, sizeof(heaps) - used, "%s%llu (%llu)",
                                     h ? ", " : "",
                                     (unsigned long long)(d->heap_size[h] >> 20),
                                     (unsigned long long)(d->heap_budget[h] >> 20));
        printf("%c%2u %-34.34s %-10s %-26.26s %-7s %-18s %-7u %-5u %s/%s\n",
               i == chosen ? '*' : ' ', d->index, d->name, vka_device_type_name(d->type),
               d->driver, api, heaps, d->subgroup_size, d->max_wg_invocations,
               d->f16_arith ? "yes" : "no", d->int8_arith ? "yes" : "no");
    }
}

int cli_devices(int argc, char **argv)
{
    struct devices_opts o = { 0 };
    bool help;
    int ret = cli_opts_parse("devices", argc, argv, opts, OPT_COUNT(opts), &o, NULL, NULL, NULL,
                             NULL, 0, &help);
    if (ret)
        return ret;
    if (help) {
        cli_opts_help(opts, OPT_COUNT(opts), usage, NULL, NULL);
        return 0;
    }

    struct vka_device_info *infos;
    uint32_t n;
    if (vka_devices_query(&infos, &n) < 0) {
        fprintf(stderr, "vkaccum devices: %s\n", vka_last_error());
        return 1;
    }
    uint32_t chosen = UINT32_MAX;
    if (n)
        vka_device_select(infos, n, NULL, &chosen);
    if (o.json) {
        cJSON *arr = cJSON_CreateArray();
        for (uint32_t i = 0; i < n; i++)
            cJSON_AddItemToArray(arr, device_json(&infos[i], i == chosen));
        char *s = cJSON_Print(arr);
        puts(s);
        free(s);
        cJSON_Delete(arr);
    } else if (n == 0) {
        fprintf(stderr, "vkaccum devices: no Vulkan device found: install one "
                        "(Debian: apt-get install mesa-vulkan-drivers)\n");
        free(infos);
        return 1;
    } else {
        print_table(infos, n, chosen);
    }
    free(infos);
    return 0;
}

/* The one place the commands open a device (vka_ctx_params: --device, --mem-budget). */
/* A rank's device (dist.h) into buf: the local rank's entry of a comma list, or with none
 * given the local rank modulo the device count; a single device as it is. -1 after
 * printing why. */
static int rank_device(const char *cmd, const char *device, char *buf, size_t size)
{
    const struct vka_dist *d = vka_dist();
    snprintf(buf, size, "%s", device);
    if (d->size < 2)
        return 0;
    if (strchr(device, ',')) {
        const char *p = device;
        for (int i = 0; i < d->local_rank && p; i++)
            if ((p = strchr(p, ',')))
                p++;
        if (!p) {
            fprintf(stderr, "vkaccum %s: --device %s names fewer devices than the %d ranks on "
                    "this machine (rank %d has none)\n", cmd, device, d->local_size, d->rank);
            return -1;
        }
        size_t len = strcspn(p, ",");
        snprintf(buf, size, "%.*s", (int)len, p);
        return 0;
    }
    if (device[0])
        return 0;
    struct vka_device_info *infos = NULL;
    uint32_t count = 0;
    if (vka_devices_query(&infos, &count) < 0 || count == 0) {
        free(infos);
        fprintf(stderr, "vkaccum %s: %s\n", cmd, vka_last_error()[0] ? vka_last_error()
                : "no Vulkan device found");
        return -1;
    }
    snprintf(buf, size, "%u", (unsigned)d->local_rank % count);
    free(infos);
    return 0;
}

struct vka_ctx *cli_open_ctx(const char *cmd, const char *device, double budget_mib)
{
    struct vka_ctx *ctx;
    char dev[256];
    if (rank_device(cmd, device, dev, sizeof(dev)) < 0)
        return NULL;
    device = dev;
    if (vka_ctx_create(&(struct vka_ctx_params){
            .device = device[0] ? device : NULL, .validation = -1,
            .budget = (uint64_t)(budget_mib * 1048576.0) }, &ctx) < 0) {
        fprintf(stderr, "vkaccum %s: %s\n", cmd, vka_last_error());
        return NULL;
    }
    return ctx;
}
