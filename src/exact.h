/* Exact, order-free accumulation (--accumulate exact): the representation, its host
 * reference, and the kernels that resolve it to floats (shaders/exact.comp; the ops add
 * into it through shaders/include/exact.glsl).
 *
 * An exact element replaces one accumulated float: four 32-bit words
 *   w[0], w[1], w[2]  a 96-bit two's-complement integer I, w[0] least significant;
 *                     the element's value is I * 2^-64
 *   w[3]              bits 0-7: sticky flags, OR'd by every addition:
 *                       bit 0 a NaN was added, bit 1 +inf, bit 2 -inf,
 *                       bit 3 a contribution of magnitude >= 2^31 was added
 *                     bits 8-31: E, a 24-bit two's-complement extension of I (the bits
 *                       above bit 95: the carries out of w[2]), so that the sum is the
 *                       120-bit integer E * 2^96 + I
 * Zero is four zero words (a fill with 0.0f clears it). Addition is a 120-bit integer add
 * with carries (GLSL uaddCarry: no int64 or float64 needed, so every Vulkan device runs
 * it) and an OR of the flags: associative and commutative, so a sum has the same bits
 * however its contributions are partitioned (micro-batches, ranks) and ordered. A float
 * contribution is converted with round-to-nearest-even at 2^-64, which depends on the
 * value only.
 *
 * Why 2^-64 and +-2^31: the contributions are one sample's float partial sums of an
 * unnormalised gradient or loss (scaled by 1 / count only in the optimizer), so they are
 * large rather than small: a U-Net's per-sample weight gradient or a cross-entropy sum
 * over a 1024x1024 image stays far below 2^31 (2.1e9), and 2^-64 (5.4e-20) keeps every
 * bit of a float down to 2^-41 (4.5e-13), far below what an update of a float32 weight
 * can see. 96 bits are three words, a uvec3 plus the flag word makes one 16-byte uvec4.
 *
 * Why the 24-bit extension (not in the first sketch of the design): an overflow test on
 * each 96-bit addition (the sign of the result differs from the signs of two equal-signed
 * operands) is not associative: (2^30.9 + 2^30.9) - 2^30.9 overflows in one order and not
 * in another, so the flag would depend on the partition. With the carries kept in E the
 * sum is exact modulo 2^120, which no sum of fewer than 2^23 in-range contributions
 * reaches, and "the sum is out of range" (E is not the sign extension of I) is read only
 * at the end, from the exact total: the same answer for every partition.
 *
 * Back to float (vka_exact_to_float, the exact_resolve kernel): the value I * 2^-64
 * correctly rounded (round to nearest even); NaN when a NaN was added or both infinities,
 * +-inf when one infinity was added, and NaN when a contribution or the total passed
 * +-2^31 (out of range: the trainer's non-finite check skips the step and says why).
 * -0.0 comes back as +0.0. */
#ifndef VKA_EXACT_H
#define VKA_EXACT_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor.h"

enum {
    VKA_EXACT_NAN = 1,
    VKA_EXACT_PINF = 2,
    VKA_EXACT_NINF = 4,
    VKA_EXACT_RANGE = 8,  /* a contribution of magnitude >= 2^31 */
    VKA_EXACT_FLAGS = 0xff,
};

/* dst += src, n elements of 4 words each (the MPI_Op of data-parallel training). */
void vka_exact_add(uint32_t *dst, const uint32_t *src, uint64_t n);
float vka_exact_to_float(const uint32_t e[4]);
void vka_exact_from_float(float v, uint32_t e[4]);
/* Whether the element's total passed +-2^31 (a contribution did, or the sum). */
bool vka_exact_out_of_range(const uint32_t e[4]);

/* ---- device side ----------------------------------------------------------------------- */

/* out (floats, FLAT) = the exact elements of x (a VKA_EXACT tensor of the same element
 * count) resolved as vka_exact_to_float does. */
int vka_exact_resolve(struct vka_cmd *cmd, const struct vka_tensor *x,
                      const struct vka_tensor *out);
/* acc (VKA_EXACT, count elements) += each row of x (FLAT f32, rows x count floats,
 * x->off a multiple of 4) converted to exact, rows in order: what the ops do with their
 * per-sample partials, as a kernel of its own (tests, tools). */
int vka_exact_add_rows(struct vka_cmd *cmd, const struct vka_tensor *x, uint32_t rows,
                       const struct vka_tensor *acc);

#endif
