#version 450
// Elementwise kernels over n floats, four per invocation (a fill is vkCmdFillBuffer,
// vka_cmd_fill):
//   OP_SCALE  y = a * y
//   OP_AXPY   y += a * x   (x read through the load path)
// y is bound at an aligned offset and addressed from y_base; x by its base in vec4s.
//
// variant-no-inputs scale  OP_SCALE
// variant axpy             OP_AXPY
#include "common.glsl"

layout(push_constant) uniform PC {
    uint n;       // elements in this chunk
    uint x_base;  // vec4 index of x[0] in the bound x view
    float a;
    uint y_base;  // index of y[0] in the bound y range
} pc;

#ifdef OP_AXPY
IN_BUFFER(0, X)
OUT_BUFFER(1, Y)
#else
OUT_BUFFER(0, Y)
#endif

void main()
{
    uint i4 = flat_id();
    uint i = i4 * 4u;
    if (i >= pc.n)
        return;
    uint m = min(4u, pc.n - i);
#if defined(OP_AXPY)
    vec4 x = LOAD4(X, pc.x_base + i4);
    for (uint j = 0u; j < m; j++)
        Y[pc.y_base + i + j] = fma(pc.a, x[j], Y[pc.y_base + i + j]);
#else
    for (uint j = 0u; j < m; j++)
        Y[pc.y_base + i + j] = pc.a * Y[pc.y_base + i + j];
#endif
}
