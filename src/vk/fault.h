/* Fault injection in the Vulkan runtime, for tests of the error paths that real devices
 * take rarely: an out-of-memory device, a lost device, a hung queue. The counters and
 * plans are process-wide (one vkaccum run holds one context) and defined in command.c.
 *
 * Each kind counts its events from the start of the process and makes one of them fail:
 *   VKACCUM_FAIL_ALLOC=N    the Nth device memory allocation (vka_buf_create) fails with
 *                           VK_ERROR_OUT_OF_DEVICE_MEMORY;
 *   VKACCUM_FAIL_SUBMIT=N   the Nth queue submission (vka_cmd_submit_wait) fails with
 *                           VK_ERROR_DEVICE_LOST, the work never reaching the queue;
 *   VKACCUM_FAIL_TIMEOUT=N  the Nth fence wait of a submission returns VK_TIMEOUT at
 *                           once, as if VKACCUM_TIMEOUT_MS had passed (the work runs on).
 * The error then takes the real error's path and message, with "(injected by
 * VKACCUM_FAIL_...=N)" added. The value "count" injects nothing and logs, at exit, how
 * many events of that kind the process had: the range of N a test sweeps. The
 * environment is read once, on the first event; counters are atomic, so events from
 * several threads are numbered without loss. */
#ifndef VKA_VK_FAULT_H
#define VKA_VK_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vka_fault_kind {
    VKA_FAULT_ALLOC,
    VKA_FAULT_SUBMIT,
    VKA_FAULT_TIMEOUT,
    VKA_FAULT_KIND_COUNT,
};

/* "VKACCUM_FAIL_ALLOC", ... */
const char *vka_fault_env_name(enum vka_fault_kind kind);

/* Counts one event of kind; true when it is the one to fail, with *nth its number. */
bool vka_fault_hit(enum vka_fault_kind kind, uint64_t *nth);

/* Events of kind counted since the start (or the last vka_fault_set). */
uint64_t vka_fault_count(enum vka_fault_kind kind);

/* Writes " (injected by VKACCUM_FAIL_ALLOC=N)" into buf when injected, else "": the tail
 * of the real error's message, so that a user who left the variable set is not misled. */
void vka_fault_note(bool injected, enum vka_fault_kind kind, uint64_t nth, char *buf,
                    size_t size);

/* Replaces the environment's plan for kind (tests): the counter restarts at 0 and the
 * fail_at-th event from now fails; 0 fails none. */
void vka_fault_set(enum vka_fault_kind kind, uint64_t fail_at);

/* What follows a fault: waits for the device to go idle when a submission's wait failed
 * (a timeout, a lost device) and its work may still be running, so that a buffer it uses
 * is not freed under it; nothing otherwise. vka_buf_destroy calls it. */
struct vka_ctx;
void vka_cmd_settle(struct vka_ctx *ctx);

#endif
