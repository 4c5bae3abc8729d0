/* TensorBoard event files, owned by src/tb.c: scalars and PNG images that
 * `tensorboard --logdir DIR` reads, with no TensorFlow, protobuf or TensorBoard library.
 *
 * An event file is a TFRecord stream of Event protos: the first event carries
 * file_version "brain.Event:2", every later one a Summary of one tagged value (a
 * simple_value scalar or an encoded image). Records are written whole through a stdio
 * buffer: vka_tb_flush makes them visible to a reader; a reader stops at a record cut by
 * a crash and loses nothing before it.
 *
 * One thread at a time per struct vka_tb, which owns its FILE and path. Errors: a negative
 * errno after vka_err (src/log.h) naming the file and, for a failed OS call, strerror.
 * After a failed write the file ends in a cut record, so every later call returns that
 * same error at once and writes nothing: close it. */
#ifndef VKA_TB_H
#define VKA_TB_H

#include <stddef.h>
#include <stdint.h>

struct vka_tb;

/* Creates DIR (and its parents) when missing, and a new file
 * DIR/events.out.tfevents.<unix seconds>.<host>.<pid>.<n>.vkaccum in it (n counts this
 * process's opens, so that two opens within one second never share a name; an existing
 * file is never overwritten), then writes and flushes the file_version event, so that a
 * full disk or an unwritable folder is found here and not mid-training (a file that got
 * no complete first event is removed). */
int vka_tb_open(const char *dir, struct vka_tb **tb);
/* The same into exactly path, created or truncated, and left in place on a failure: for
 * tests (/dev/full) and callers naming their own file. */
int vka_tb_open_file(const char *path, struct vka_tb **tb);
/* The file written to (owned by tb). */
const char *vka_tb_path(const struct vka_tb *tb);

/* Seconds since the Unix epoch (CLOCK_REALTIME): the wall_time TensorBoard expects, where
 * vka_now (src/log.h) is a monotonic clock of no fixed origin. */
double vka_tb_wall_time(void);

/* A scalar event: value (any float, NaN and infinities included) under tag at step.
 * tag: non-empty; TensorBoard groups tags by their part before the first '/'. */
int vka_tb_scalar(struct vka_tb *tb, const char *tag, int64_t step, double wall_time,
                  float value);
/* An image event from an encoded PNG of len bytes: w x h pixels of c channels (1 grey,
 * 2 grey+alpha, 3 RGB, 4 RGBA; TensorBoard's colorspace numbers). The PNG's signature
 * and IHDR are checked against w, h and c (-EINVAL naming both on a mismatch); the bytes
 * are stored as given. */
int vka_tb_image_png(struct vka_tb *tb, const char *tag, int64_t step, double wall_time,
                     uint32_t w, uint32_t h, uint32_t c, const void *png, size_t len);

/* fflush: what was written so far becomes readable. */
int vka_tb_flush(struct vka_tb *tb);
/* Flushes and closes; frees *tb and sets it NULL; accepts NULL and *tb NULL (returns 0).
 * Returns the file's first error: an earlier write's again (not logged twice), or one
 * the last flush or fclose found (logged). */
int vka_tb_close(struct vka_tb **tb);

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of len bytes, continuing crc
 * (0 to start): TFRecord's checksum. crc32c("123456789") = 0xE3069283. */
uint32_t vka_crc32c(uint32_t crc, const void *data, size_t len);

#endif
