#version 450
// Optimizer kernels over flat regions (src/optim.c):
//   OP_SUMSQ  one pass of the gradient norm: each workgroup folds a block of
//             WG * 4 * ITEMS floats of x (squared after scaling by s in the first pass,
//             as they are in later passes) into one partial by a fixed tree: each
//             invocation adds its ITEMS vec4s in index order, then the lanes as
//             (x + y) + (z + w), then a shared-memory tree. The last pass (one
//             workgroup, FINAL set) writes the stats vec4: sum of squares, norm,
//             clipping factor.
//   OP_SGD    torch.optim.SGD's update, one invocation per 4 elements.
//   OP_ADAM   torch.optim.Adam's (DECOUPLED 0) or AdamW's (DECOUPLED 1) update.
// The update kernels read the stats vec4 first: when the norm is NaN or infinite they
// write nothing (a skipped step). The check is on the float's exponent bits, which no
// floating-point optimisation may fold away. What changes from step to step (gradient
// scale, learning rate, bias correction, SGD's first step) comes from the HY buffer the
// host writes before each submission (src/optim.c struct hyper), so a recorded step is
// replayed as it is.
//
// variant optim_sumsq  OP_SUMSQ
// variant optim_sgd    OP_SGD
// variant optim_adam   OP_ADAM DECOUPLED=0
// variant optim_adamw  OP_ADAM DECOUPLED=1
#include "common.glsl"

#ifdef OP_SUMSQ
layout(constant_id = 1) const uint ITEMS = 4;

layout(push_constant) uniform PC {
    uint n;         // floats of x in this chunk
    uint x_base;    // vec4 index of x[0] in the bound x view
    uint out_idx;   // where this pass writes its first partial (the stats when final)
    uint hy_base;   // vec4 index of the step's values (.x: the gradient scale)
    uint square;    // 1: the first pass, x is the accumulator
    uint final_;    // 1: one workgroup, writes the stats
    float max_norm; // 0: no clipping
} pc;

IN_BUFFER(0, X)
IN_BUFFER(1, HY)
OUT_BUFFER(2, OUT)

shared float part[WG];

void main()
{
    uint g = flat_group();
    uint t = gl_LocalInvocationID.x;
    uint first4 = g * WG * ITEMS;
    vec4 acc = vec4(0.0);
    float s = LOAD4(HY, pc.hy_base).x;
    for (uint k = 0u; k < ITEMS; k++) {
        uint i4 = first4 + k * WG + t;
        uint i = i4 * 4u;
        if (i < pc.n) {
            vec4 v = LOAD4(X, pc.x_base + i4);
            if (pc.square != 0u) {
                v = s * v;
                v = v * v;
            }
            bvec4 live = lessThan(uvec4(i) + uvec4(0u, 1u, 2u, 3u), uvec4(pc.n));
            acc += mix(vec4(0.0), v, live);
        }
    }
    part[t] = (acc.x + acc.y) + (acc.z + acc.w);
    barrier();
    for (uint h = WG / 2u; h > 0u; h >>= 1u) {
        if (t < h)
            part[t] += part[t + h];
        barrier();
    }
    if (t != 0u)
        return;
    if (pc.final_ == 0u) {
        OUT[pc.out_idx + g] = part[0];
        return;
    }
    float sumsq = part[0];
    float norm = sqrt(sumsq);
    float coef = 1.0;
    if (pc.max_norm > 0.0)
        coef = min(pc.max_norm / (norm + 1e-6), 1.0);
    OUT[pc.out_idx] = sumsq;
    OUT[pc.out_idx + 1u] = norm;
    OUT[pc.out_idx + 2u] = coef;
    OUT[pc.out_idx + 3u] = 0.0;
}

#else

layout(push_constant) uniform PC {
    uint n;         // elements in this chunk
    uint g_base4;   // vec4 index of grads[0] in the bound grads view
    uint st_base4;  // vec4 index of the stats in the bound stats view
    uint hy_base4;  // vec4 index of the step's values in the bound HY view
    uint p_base;    // index of params[0] in the bound params range
    uint s1_base;   // momentum_buffer / exp_avg
    uint s2_base;   // exp_avg_sq
    uint nesterov;  // SGD
    float wd;       // weight decay added to the gradient (SGD, Adam)
    float a1, b1;   // SGD: momentum, 1 - dampening; Adam: beta1, 1 - beta1
    float a2, b2;   // Adam: beta2, 1 - beta2
    float eps;      // Adam
} pc;

IN_BUFFER(0, G)
IN_BUFFER(1, ST)
IN_BUFFER(2, HY)  // the step's values: s, lr, decay, bc2_sqrt; first
// params and state as vec4s where they start at whole vec4s (every graph region and
// span: values sit at multiples of 64 elements; one vec4 store where four float stores
// cost lavapipe four lane-by-lane loops), else as floats (a view that starts inside a
// vec4, as the tests' do), as is a region's last, partial vec4 (its floats past n may lie
// past the buffer)
#define STATE(binding_, name_)                                                             \
    layout(set = 0, binding = binding_, std430) buffer name_##_ssbo { float name_[]; };    \
    layout(set = 0, binding = binding_, std430) buffer name_##4_ssbo { vec4 name_##4[]; };
STATE(3, P)
STATE(4, S1) // plain SGD keeps no state: params are bound again here, never used
#ifdef OP_ADAM
STATE(5, S2)
#endif

bool finite(float x)
{
    return (floatBitsToUint(x) & 0x7f800000u) != 0x7f800000u;
}

// v = elements [i, i + m) from base_ (a whole vec4 when v4), written back likewise
#define LOAD_STATE(name_, base_, v_)                                                       \
    if (v4)                                                                                \
        v_ = name_##4[(base_ + i) / 4u];                                                   \
    else                                                                                   \
        for (uint j = 0u; j < m; j++)                                                      \
            v_[j] = name_[base_ + i + j];
#define STORE_STATE(name_, base_, v_)                                                      \
    if (v4)                                                                                \
        name_##4[(base_ + i) / 4u] = v_;                                                   \
    else                                                                                   \
        for (uint j = 0u; j < m; j++)                                                      \
            name_[base_ + i + j] = v_[j];

void main()
{
    uint i4 = flat_id();
    uint i = i4 * 4u;
    if (i >= pc.n)
        return;
    vec4 st = LOAD4(ST, pc.st_base4);
    if (!finite(st.y))
        return;
    vec4 hy = LOAD4(HY, pc.hy_base4);
    float s = hy.x, lr = hy.y, decay = hy.z, bc2_sqrt = hy.w;
    bool first = LOAD4(HY, pc.hy_base4 + 1u).x != 0.0;
    uint m = min(4u, pc.n - i);
    bool v4 = m == 4u && ((pc.p_base | pc.s1_base | pc.s2_base) & 3u) == 0u;
    vec4 g = (s * LOAD4(G, pc.g_base4 + i4)) * st.z;
    vec4 p = vec4(0.0), s1 = vec4(0.0);
    LOAD_STATE(P, pc.p_base, p)
#ifdef OP_SGD
    if (pc.wd != 0.0)
        g = g + pc.wd * p;
    if (pc.a1 != 0.0) {
        if (!first)
            LOAD_STATE(S1, pc.s1_base, s1)
        vec4 buf = first ? g : pc.a1 * s1 + pc.b1 * g;
        STORE_STATE(S1, pc.s1_base, buf)
        g = pc.nesterov != 0u ? g + pc.a1 * buf : buf;
    }
    p = p - lr * g;
#else
    vec4 s2 = vec4(0.0);
    LOAD_STATE(S1, pc.s1_base, s1)
    LOAD_STATE(S2, pc.s2_base, s2)
#if DECOUPLED
    p = p * decay;
#else
    if (pc.wd != 0.0)
        g = g + pc.wd * p;
#endif
    vec4 mt = pc.a1 * s1 + pc.b1 * g;
    vec4 vt = pc.a2 * s2 + pc.b2 * (g * g);
    STORE_STATE(S1, pc.s1_base, mt)
    STORE_STATE(S2, pc.s2_base, vt)
    vec4 denom = sqrt(vt) / bc2_sqrt + pc.eps;
    p = p - lr * (mt / denom);
#endif
    STORE_STATE(P, pc.p_base, p)
}
#endif
