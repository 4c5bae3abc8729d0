// Exact accumulation (--accumulate exact; the representation is described in src/exact.h,
// whose C functions these mirror bit for bit): an element is a uvec4, x,y,z a 96-bit
// two's-complement integer I (x least significant, value I * 2^-64), w bits 0-7 sticky
// flags (1 NaN, 2 +inf, 4 -inf, 8 a contribution >= 2^31 in magnitude) and bits 8-31 the
// 24-bit extension E of I (carries out of z). Adding is a 120-bit integer add and an OR of
// the flags: associative and commutative. Only 32-bit integer arithmetic.

#define EXACT_BUFFER(binding_, name_) \
    layout(set = 0, binding = binding_, std430) buffer name_##_ssbo { uvec4 name_[]; };

// e + v, v rounded to nearest even at 2^-64 (one contribution): the bits that
// src/exact.c's vka_exact_from_float and then vka_exact_add give, in one step. Branch-free and without indexing by a computed word (on lavapipe a divergent
// branch and a dynamic index into a vector both cost every lane the slow path):
//   |v| = z + y 2^-32 + x 2^-64 with integers z < 2^31 and y, x < 2^32, each the integer
//   part of an exact product of the remainder by 2^32 (a non-negative float minus its
//   floor is exact); only x can have a fraction, when |v| < 2^-40, and then it is below
//   2^24, so rounding it carries nowhere. Subnormals give 0, flushed or not.
//   A negative v adds ~|I| + 1 (its two's complement, with the extension all ones) as
//   one addition with a carry in; -0 adds ~0 + 1 = 2^120, i.e. nothing.
//   NaN, the infinities and |v| >= 2^31 add no value, only their flag.
uvec4 exact_add_float(uvec4 e, float v)
{
    float a = abs(v);
    float z = floor(a), fy = (a - z) * 4294967296.0, y = floor(fy);
    float x = roundEven((fy - y) * 4294967296.0);
    uint bits = floatBitsToUint(v), ex = (bits >> 23u) & 0xffu;
    bool ok = ex < 158u;
    uint m = ok ? uint(int(bits) >> 31) : 0u;      // all ones for a negative v
    uvec3 w = ok ? uvec3(uint(x), uint(y), uint(z)) ^ uvec3(m) : uvec3(0u);
    uint c0, c0b, c1, c1b, c2, c2b;
    uint rx = uaddCarry(uaddCarry(e.x, w.x, c0), m & 1u, c0b);
    uint ry = uaddCarry(uaddCarry(e.y, w.y, c1), c0 + c0b, c1b);
    uint rz = uaddCarry(uaddCarry(e.z, w.z, c2), c1 + c1b, c2b);
    uint ext = ((e.w >> 8u) + (m >> 8u) + c2 + c2b) & 0xffffffu;
    uint flag = ok ? 0u : ex != 255u ? 8u : (bits & 0x7fffffu) != 0u ? 1u : (bits >> 31u) != 0u ? 4u : 2u;
    return uvec4(rx, ry, rz, (e.w & 0xffu) | flag | (ext << 8u));
}

// bits [pos, pos + 32) of m (zeros past bit 95)
uint exact_bits_at(uvec3 m, uint pos)
{
    uint k = pos >> 5u, b = pos & 31u;
    uint lo = m[k] >> b;
    uint hi = (b == 0u || k >= 2u) ? 0u : m[k + 1u] << (32u - b);
    return lo | hi;
}

// whether any of bits [0, pos) of m is set
bool exact_any_below(uvec3 m, uint pos)
{
    uint k = pos >> 5u, b = pos & 31u;
    bool any = false;
    for (uint i = 0u; i < 3u; i++)
        if (i < k)
            any = any || m[i] != 0u;
    if (b != 0u && k < 3u)
        any = any || (m[k] & ((1u << b) - 1u)) != 0u;
    return any;
}

// the element's value correctly rounded (round to nearest even); NaN for a NaN, both
// infinities or out of range, +-inf for one infinity
float exact_to_float(uvec4 e)
{
    uint f = e.w & 0xffu;
    bool neg = (e.z >> 31u) != 0u;
    uint ext = e.w >> 8u;
    if ((f & 1u) != 0u || (f & 6u) == 6u)
        return uintBitsToFloat(0x7fc00000u);
    if ((f & 2u) != 0u)
        return uintBitsToFloat(0x7f800000u);
    if ((f & 4u) != 0u)
        return uintBitsToFloat(0xff800000u);
    if ((f & 8u) != 0u || ext != (neg ? 0xffffffu : 0u))
        return uintBitsToFloat(0x7fc00000u);
    uvec3 m = e.xyz;
    if (neg) {
        uint c0, c1;
        m.x = uaddCarry(~e.x, 1u, c0);
        m.y = uaddCarry(~e.y, c0, c1);
        m.z = ~e.z + c1;
    }
    int h = m.z != 0u ? 64 + findMSB(m.z) : m.y != 0u ? 32 + findMSB(m.y) : findMSB(m.x);
    if (h < 0)
        return 0.0;
    float r;
    if (h <= 23) {
        r = ldexp(float(m.x), -64);
    } else {
        uint s = uint(h) - 23u;
        uint q = exact_bits_at(m, s) & 0xffffffu;
        bool half_ = (exact_bits_at(m, s - 1u) & 1u) != 0u;
        bool sticky = exact_any_below(m, s - 1u);
        if (half_ && (sticky || (q & 1u) != 0u))
            q++;
        if (q == 0x1000000u) {
            q >>= 1u;
            s++;
        }
        r = ldexp(float(q), int(s) - 64);
    }
    return neg ? -r : r;
}
