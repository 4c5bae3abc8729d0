#version 450
// The act family on NHWC4 activations (src/ops/act.c): one invocation per output vec4,
// i.e. 4 channels of one pixel. Inputs A and B are read through LOAD4, the output Y
// through OUT_BUFFER as floats. Output lanes whose channel is >= c (padding) are written
// as 0. Variants (A, B -> Y):
//   OP_RELU, OP_LEAKY_RELU, OP_TANH, OP_SIGMOID, OP_SCALE   x -> y
//   OP_ADD, OP_MUL                                          x0, x1 -> y
//   OP_RELU_BWD, OP_LEAKY_RELU_BWD   y, dy -> dx += (y > 0 where x > 0: slope >= 0)
//   OP_TANH_BWD, OP_SIGMOID_BWD      y, dy -> dx +=   (f' from the forward output)
//   OP_MUL_BWD                       other factor, dy -> dx += dy * other
//   OP_AXPY_BWD                      dy -> dx += alpha * dy   (scale; add with alpha 1)
//   OP_CONCAT                        x0 (C1 = c), x1 (C2 = c1) -> y (C1 + C2)
//   OP_CONCAT_BWD                    dy -> dx += dy[:, c1 : c1 + c]
// Elementwise variants see A, B and Y with the same stored channels (cs4 vec4s a pixel).
// HAS_B: a variant reads B; ACCUMULATE: it adds into Y (backward), or writes over an input
// it reads when Y is that input's memory (pc.inplace: the planner's dx over dy).
//
// variant act_relu            OP_RELU
// variant act_leaky_relu      OP_LEAKY_RELU
// variant act_tanh            OP_TANH
// variant act_sigmoid         OP_SIGMOID
// variant act_scale           OP_SCALE
// variant act_add             OP_ADD HAS_B
// variant act_mul             OP_MUL HAS_B
// variant act_concat          OP_CONCAT HAS_B
// variant act_relu_bwd        OP_RELU_BWD HAS_B ACCUMULATE
// variant act_leaky_relu_bwd  OP_LEAKY_RELU_BWD HAS_B ACCUMULATE
// variant act_tanh_bwd        OP_TANH_BWD HAS_B ACCUMULATE
// variant act_sigmoid_bwd     OP_SIGMOID_BWD HAS_B ACCUMULATE
// variant act_mul_bwd         OP_MUL_BWD HAS_B ACCUMULATE
// variant act_axpy_bwd        OP_AXPY_BWD ACCUMULATE
// variant act_concat_bwd      OP_CONCAT_BWD ACCUMULATE
#include "common.glsl"
#include "act.glsl"

layout(push_constant) uniform PC {
    uint n4;     // output vec4s in this dispatch (whole pixels)
    uint c;      // output channels (concat: x0's channels C1)
    uint cs4;    // output vec4s per pixel
    uint y_base; // float index of the output's first element in its binding (a vec4's)
    uint a_base; // vec4 index of A's first vec4
    uint b_base; // vec4 index of B's first vec4
    uint a4;     // A's vec4s per pixel (concat)
    uint b4;     // B's vec4s per pixel (concat)
    uint c1;     // concat: x1's channels C2; concat_bwd: dx's first channel in dy
    float alpha; // leaky_relu slope, scale factor
    uint inplace; // ACCUMULATE: the output is an input's memory (dx over dy): Y = zero + v
    float zero;   // 0.0, a constant the compiler cannot fold: zero + v keeps the bits of
                  // v added into an output filled with +0
} pc;

#ifdef HAS_B
IN_BUFFER(0, A)
IN_BUFFER(1, B)
OUT_BUFFER4(2, Y)
#else
IN_BUFFER(0, A)
OUT_BUFFER4(1, Y)
#endif

#if defined(OP_CONCAT)
// Lane j holds channel ch = 4k + j of y. With C1 = 4q + r, channel ch >= C1 is channel
// ch - C1 = 4(k - q) + (j - r) of x1: component j - r of x1's vec4 k - q when j >= r,
// component j - r + 4 of vec4 k - q - 1 when j < r.
vec4 compute(uint p, uint k)
{
    uint q = pc.c / 4u, r = pc.c % 4u;
    vec4 lo = k < pc.a4 ? LOAD4(A, pc.a_base + p * pc.a4 + k) : vec4(0.0);
    int m = int(k) - int(q);
    uint b = pc.b_base + p * pc.b4;
    vec4 hi0 = r > 0u && m >= 1 && m - 1 < int(pc.b4) ? LOAD4(B, b + uint(m - 1)) : vec4(0.0);
    vec4 hi1 = m >= 0 && m < int(pc.b4) ? LOAD4(B, b + uint(m)) : vec4(0.0);
    vec4 v;
    for (uint j = 0u; j < 4u; j++) {
        uint ch = 4u * k + j;
        v[j] = ch < pc.c ? lo[j] : j >= r ? hi1[j - r] : hi0[j + 4u - r];
    }
    return v;
}
#elif defined(OP_CONCAT_BWD)
// dx's lane j is channel c1 + 4k + j of dy; with c1 = 4q + r that is component r + j of
// dy's vec4 q + k when r + j < 4, else component r + j - 4 of vec4 q + k + 1. Lanes of
// dx's valid channels always find their vec4 inside dy's pixel.
vec4 compute(uint p, uint k)
{
    uint q = pc.c1 / 4u, r = pc.c1 % 4u;
    uint m = q + k, a = pc.a_base + p * pc.a4;
    vec4 d0 = LOAD4(A, a + m);
    vec4 d1 = r > 0u && m + 1u < pc.a4 ? LOAD4(A, a + m + 1u) : vec4(0.0);
    vec4 v;
    for (uint j = 0u; j < 4u; j++)
        v[j] = r + j < 4u ? d0[r + j] : d1[r + j - 4u];
    return v;
}
#else
vec4 compute(uint p, uint k)
{
    uint i4 = p * pc.cs4 + k;
    vec4 a = LOAD4(A, pc.a_base + i4);
#ifdef HAS_B
    vec4 b = LOAD4(B, pc.b_base + i4);
#endif
#if defined(OP_RELU)
    return relu_fwd(a);
#elif defined(OP_LEAKY_RELU)
    return leaky_relu_fwd(a, pc.alpha);
#elif defined(OP_TANH)
    // lavapipe's tanh is (e^2x - 1) / (e^2x + 1), which cancels near 0 (a relative error
    // of 1.6e-4 measured); below |x| = 1/8 the series to x^9 is exact to 1e-11 relative
    vec4 a2 = a * a;
    vec4 series = a * (1.0 + a2 * (-1.0 / 3.0 + a2 * (2.0 / 15.0 + a2 * (-17.0 / 315.0 +
                                                                   a2 * (62.0 / 2835.0)))));
    return mix(tanh(a), series, lessThan(abs(a), vec4(0.125)));
#elif defined(OP_SIGMOID)
    // exp(-a) overflows to +inf for a < -88, which gives 0, the rounded answer
    return 1.0 / (1.0 + exp(-a));
#elif defined(OP_SCALE)
    return pc.alpha * a;
#elif defined(OP_ADD)
    return a + b;
#elif defined(OP_MUL)
    return a * b;
#elif defined(OP_RELU_BWD)
    return relu_bwd(a, b);
#elif defined(OP_LEAKY_RELU_BWD)
    return leaky_relu_bwd(a, b, pc.alpha);
#elif defined(OP_TANH_BWD)
    return b * (1.0 - a * a);
#elif defined(OP_SIGMOID_BWD)
    return b * (a * (1.0 - a));
#elif defined(OP_MUL_BWD)
    return b * a;
#elif defined(OP_AXPY_BWD)
    return pc.alpha * a;
#endif
}
#endif

void main()
{
    uint i4 = flat_id();
    if (i4 >= pc.n4)
        return;
    uint p = i4 / pc.cs4, k = i4 - p * pc.cs4; // pixel in this dispatch, vec4 in the pixel
    vec4 v = compute(p, k);
    uint y = pc.y_base / 4u + i4;
#if defined(OP_CONCAT)
    uint c = pc.c + pc.c1;
#else
    uint c = pc.c;
#endif
    bvec4 valid = lessThan(uvec4(4u * k) + uvec4(0u, 1u, 2u, 3u), uvec4(c));
#ifdef ACCUMULATE
    v += pc.inplace != 0u ? vec4(pc.zero) : Y[y];
#endif
    Y[y] = mix(vec4(0.0), v, valid);
}
