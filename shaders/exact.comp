#version 450
// Exact accumulators (src/exact.h, shaders/include/exact.glsl):
//   EXACT_RESOLVE   out[i] = the float of acc[i], correctly rounded (the window's end)
//   EXACT_ADD_ROWS  acc[4e + l] += exact(x[r][4e + l]) for rows r in order, one
//                   invocation per vec4 (what the ops do with per-sample partials)
//
// variant-no-inputs exact_resolve  EXACT_RESOLVE
// variant exact_add_rows           EXACT_ADD_ROWS
#include "common.glsl"
#include "exact.glsl"

layout(push_constant) uniform PC {
    uint n;         // RESOLVE: elements; ADD_ROWS: vec4s per row
    uint rows;
    uint x_base;    // RESOLVE: float index of out[0]; ADD_ROWS: vec4 index of x[0][0]
    uint acc_base;  // element index of acc[0]
} pc;

#if defined(EXACT_RESOLVE)
EXACT_BUFFER(0, ACC)
OUT_BUFFER(1, OUT)

void main()
{
    uint i = flat_id();
    if (i >= pc.n)
        return;
    OUT[pc.x_base + i] = exact_to_float(ACC[pc.acc_base + i]);
}

#elif defined(EXACT_ADD_ROWS)
IN_BUFFER(0, X)
EXACT_BUFFER(1, ACC)

void main()
{
    uint e = flat_id();
    if (e >= pc.n)
        return;
    uvec4 a[4];
    for (uint l = 0u; l < 4u; l++)
        a[l] = ACC[pc.acc_base + e * 4u + l];
    for (uint r = 0u; r < pc.rows; r++) {
        vec4 v = LOAD4(X, pc.x_base + r * pc.n + e);
        for (uint l = 0u; l < 4u; l++)
            a[l] = exact_add_float(a[l], v[l]);
    }
    for (uint l = 0u; l < 4u; l++)
        ACC[pc.acc_base + e * 4u + l] = a[l];
}
#endif
