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
OUT_BUFFER(3, P)
OUT_BUFFER(4, S1) // plain SGD keeps no state: params are bound again here, never used
#ifdef OP_ADAM
OUT_BUFFER(5, S2)
#endif

bool finite(float x)
{
    return (floatBitsToUint(x) & 0x7f800000u) != 0x7f800000u;
}

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
    vec4 acc = LOAD4(G, pc.g_base4 + i4);
    for (uint j = 0u; j < m; j++) {
        uint ip = pc.p_base + i + j;
        float g = (s * acc[j]) * st.z;
        float p = P[ip];
#ifdef OP_SGD
        if (pc.wd != 0.0)
            g = g + pc.wd * p;
        if (pc.a1 != 0.0) {
            uint ib = pc.s1_base + i + j;
            float buf = first ? g : pc.a1 * S1[ib] + pc.b1 * g;
            S1[ib] = buf;
            g = pc.nesterov != 0u ? g + pc.a1 * buf : buf;
        }
        P[ip] = p - lr * g;
#else
        uint ib = pc.s1_base + i + j, iv = pc.s2_base + i + j;
#if DECOUPLED
        p = p * decay;
#else
        if (pc.wd != 0.0)
            g = g + pc.wd * p;
#endif
        float mt = pc.a1 * S1[ib] + pc.b1 * g;
        float vt = pc.a2 * S2[iv] + pc.b2 * (g * g);
        S1[ib] = mt;
        S2[iv] = vt;
        float denom = sqrt(vt) / bc2_sqrt + pc.eps;
        P[ip] = p - lr * (mt / denom);
#endif
    }
}
#endif
