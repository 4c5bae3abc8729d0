#version 450
// Deterministic sum: one pass reduces blocks of WG * 4 * ITEMS floats to one partial
// each, in a fixed order (each invocation adds its ITEMS vec4s in index order, then the
// four lanes as (x + y) + (z + w), then a shared-memory tree over the workgroup). The
// host runs passes until one value is left. No atomics: the same bits on every run.
//
// variant sum  OP_SUM
#include "common.glsl"

layout(constant_id = 1) const uint ITEMS = 4;

layout(push_constant) uniform PC {
    uint n;        // elements of x
    uint x_base;   // vec4 index of x[0] in the bound x view
    uint out_idx;  // where this pass writes its first partial
} pc;

IN_BUFFER(0, X)
OUT_BUFFER(1, OUT)

shared float part[WG];

void main()
{
    uint g = flat_group();
    uint t = gl_LocalInvocationID.x;
    uint first4 = g * WG * ITEMS;   // first vec4 of this group's block
    vec4 acc = vec4(0.0);
    for (uint k = 0u; k < ITEMS; k++) {
        uint i4 = first4 + k * WG + t;
        uint i = i4 * 4u;
        if (i < pc.n) {
            vec4 v = LOAD4(X, pc.x_base + i4);
            bvec4 live = lessThan(uvec4(i) + uvec4(0u, 1u, 2u, 3u), uvec4(pc.n));
            acc += mix(vec4(0.0), v, live);
        }
    }
    part[t] = (acc.x + acc.y) + (acc.z + acc.w);
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1u) {
        if (t < s)
            part[t] += part[t + s];
        barrier();
    }
    if (t == 0u)
        OUT[pc.out_idx + g] = part[0];
}
