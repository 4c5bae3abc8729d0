#version 450
// Pooling and resampling over NHWC4 activations (src/ops/pool.c), one invocation per
// output vec4 (four channels of one pixel). x is (N,C,H,W), y (N,C,P,Q). Variants:
//   MAX_FWD       y = the window's first maximum (row-major, strict >, a NaN takes over);
//                 a = its index h*W + w inside the (n,c) plane
//   MAX_BWD       dx += dy of every window whose argmax is this element
//   AVG_FWD       y = (sum of the window's in-bounds x) / (K*K)   (count_include_pad)
//   AVG_BWD       dx += (sum of dy of the windows holding this element) / (K*K)
//   NEAREST_FWD   y = x[min(p*H/P, H-1), min(q*W/Q, W-1)]   (exact integer division)
//   NEAREST_BWD   dx += sum of dy over the outputs that copy this element
//   BILINEAR_FWD  align_corners=False, PyTorch's area_pixel_compute_source_index
//   BILINEAR_BWD  dx += weighted sum of dy over the outputs that read this element
// Backward kernels gather: an invocation owns one dx vec4 and sums the outputs that read
// it in (p, q) row-major order. No atomics, so every run gives the same bits.
//
// Bindings: 0 the LOAD4 input (x, or dy); 1 the output (y, or dx +=); 2 the argmax (max
// only): FLAT, one float per element of y, in (N,P,Q,C) order. A dispatch covers the
// output vec4s [first4, first4 + count4); inputs are addressed by their absolute vec4
// index in the tensor plus a delta that maps it into the bound range. BWD marks the
// backward variants (the input is dy).
//
// variant pool_max_fwd       MAX_FWD
// variant pool_max_bwd       MAX_BWD BWD
// variant pool_avg_fwd       AVG_FWD
// variant pool_avg_bwd       AVG_BWD BWD
// variant pool_nearest_fwd   NEAREST_FWD
// variant pool_nearest_bwd   NEAREST_BWD BWD
// variant pool_bilinear_fwd  BILINEAR_FWD
// variant pool_bilinear_bwd  BILINEAR_BWD BWD
#include "common.glsl"

layout(push_constant) uniform PC {
    uint count4;   // output vec4s of this dispatch
    uint first4;   // absolute index of the first of them in the output tensor
    uint out_base; // index of that vec4's first float in the bound output (a multiple of 4)
    uint in_delta; // bound minus absolute vec4 index of the input (mod 2^32)
    uint a_delta;  // bound minus absolute element index of the argmax (mod 2^32)
    uint C, C4;    // channels, vec4s per pixel
    uint H, W;     // x
    uint P, Q;     // y
    uint K, S, PAD;
} pc;

IN_BUFFER(0, X)
OUT_BUFFER4(1, Y) // whole vec4s: four float stores cost lavapipe four lane-by-lane loops
#if defined(MAX_FWD)
OUT_BUFFER(2, A)
#elif defined(MAX_BWD)
layout(set = 0, binding = 2, std430) readonly buffer A_ssbo { float A[]; };
#endif

#ifdef BWD
// the input is dy (N,C,P,Q)
vec4 load_in(uint n, uint h, uint w, uint c4)
{
    return LOAD4(X, ((n * pc.P + h) * pc.Q + w) * pc.C4 + c4 + pc.in_delta);
}
#else
// the input is x (N,C,H,W)
vec4 load_in(uint n, uint h, uint w, uint c4)
{
    return LOAD4(X, ((n * pc.H + h) * pc.W + w) * pc.C4 + c4 + pc.in_delta);
}
#endif

// First and one-past-last output rows p of the windows holding input row h.
void windows_of(uint h, uint out_size, out uint lo, out uint hi)
{
    uint top = h + pc.PAD; // position of h in the padded input
    lo = top + 1u > pc.K ? (top + 1u - pc.K + pc.S - 1u) / pc.S : 0u;
    hi = min(out_size, top / pc.S + 1u);
}

// One axis of bilinear: source cells i0 <= i1 and the weight l1 of i1 (l0 = 1 - l1).
void lerp_src(uint dst, uint in_size, uint out_size, out uint i0, out uint i1, out float l1)
{
    float src = max((float(dst) + 0.5) * (float(in_size) / float(out_size)) - 0.5, 0.0);
    i0 = min(uint(src), in_size - 1u);
    i1 = min(i0 + 1u, in_size - 1u);
    l1 = src - float(i0);
}

// Output positions whose bilinear taps may reach input position i: those whose i0 lies
// in [i - 1, i], widened by more than half a cell on each side (lerp_src rounds in
// float). pool.c binds the same rows.
void bilinear_users(uint i, uint in_size, uint out_size, out uint lo, out uint hi)
{
    uint a = i >= 1u ? (i - 1u) * out_size / in_size : 0u;
    lo = a >= 1u ? a - 1u : 0u;
    hi = min(out_size, ((i + 2u) * out_size + in_size - 1u) / in_size + 1u);
}

void main()
{
    uint i = flat_id();
    if (i >= pc.count4)
        return;
    uint o4 = pc.first4 + i;
    uint c4 = o4 % pc.C4;
    uint pix = o4 / pc.C4;
#ifdef BWD
    uint w = pix % pc.W, t = pix / pc.W, h = t % pc.H, n = t / pc.H;
#else
    uint q = pix % pc.Q, t = pix / pc.Q, p = t % pc.P, n = t / pc.P;
#endif
    vec4 r = vec4(0.0);

#if defined(MAX_FWD)
    int h0 = int(p * pc.S) - int(pc.PAD), w0 = int(q * pc.S) - int(pc.PAD);
    uvec4 at = uvec4(0u);
    bool first = true;
    for (int dh = 0; dh < int(pc.K); dh++) {
        int hh = h0 + dh;
        if (hh < 0 || hh >= int(pc.H))
            continue;
        for (int dw = 0; dw < int(pc.K); dw++) {
            int ww = w0 + dw;
            if (ww < 0 || ww >= int(pc.W))
                continue;
            vec4 v = load_in(n, uint(hh), uint(ww), c4);
            bvec4 take = bvec4(uvec4(greaterThan(v, r)) | uvec4(isnan(v)) | uvec4(first));
            r = mix(r, v, take);
            at = mix(at, uvec4(uint(hh) * pc.W + uint(ww)), take);
            first = false;
        }
    }
    uint a = pc.a_delta + ((n * pc.P + p) * pc.Q + q) * pc.C + c4 * 4u;
    for (uint j = 0u; j < 4u && c4 * 4u + j < pc.C; j++)
        A[a + j] = float(at[j]);
#elif defined(MAX_BWD)
    uint plo, phi, qlo, qhi;
    windows_of(h, pc.P, plo, phi);
    windows_of(w, pc.Q, qlo, qhi);
    float self = float(h * pc.W + w);
    uint live = min(4u, pc.C - c4 * 4u);
    for (uint p = plo; p < phi; p++)
        for (uint q = qlo; q < qhi; q++) {
            vec4 g = load_in(n, p, q, c4);
            uint a = pc.a_delta + ((n * pc.P + p) * pc.Q + q) * pc.C + c4 * 4u;
            for (uint j = 0u; j < live; j++)
                if (A[a + j] == self)
                    r[j] += g[j];
        }
#elif defined(AVG_FWD)
    int h0 = int(p * pc.S) - int(pc.PAD), w0 = int(q * pc.S) - int(pc.PAD);
    for (int dh = 0; dh < int(pc.K); dh++) {
        int hh = h0 + dh;
        if (hh < 0 || hh >= int(pc.H))
            continue;
        for (int dw = 0; dw < int(pc.K); dw++) {
            int ww = w0 + dw;
            if (ww >= 0 && ww < int(pc.W))
                r += load_in(n, uint(hh), uint(ww), c4);
        }
    }
    r /= float(pc.K * pc.K);
#elif defined(AVG_BWD)
    uint plo, phi, qlo, qhi;
    windows_of(h, pc.P, plo, phi);
    windows_of(w, pc.Q, qlo, qhi);
    for (uint p = plo; p < phi; p++)
        for (uint q = qlo; q < qhi; q++)
            r += load_in(n, p, q, c4);
    r /= float(pc.K * pc.K);
#elif defined(NEAREST_FWD)
    r = load_in(n, min(p * pc.H / pc.P, pc.H - 1u), min(q * pc.W / pc.Q, pc.W - 1u), c4);
#elif defined(NEAREST_BWD)
    // p * H / P == h exactly for p in [ceil(h * P / H), ceil((h + 1) * P / H))
    uint plo = (h * pc.P + pc.H - 1u) / pc.H, phi = ((h + 1u) * pc.P + pc.H - 1u) / pc.H;
    uint qlo = (w * pc.Q + pc.W - 1u) / pc.W, qhi = ((w + 1u) * pc.Q + pc.W - 1u) / pc.W;
    for (uint p = plo; p < phi; p++)
        for (uint q = qlo; q < qhi; q++)
            r += load_in(n, p, q, c4);
#elif defined(BILINEAR_FWD)
    uint h0, h1, w0, w1;
    float lh, lw;
    lerp_src(p, pc.H, pc.P, h0, h1, lh);
    lerp_src(q, pc.W, pc.Q, w0, w1, lw);
    vec4 top = (1.0 - lw) * load_in(n, h0, w0, c4) + lw * load_in(n, h0, w1, c4);
    vec4 bot = (1.0 - lw) * load_in(n, h1, w0, c4) + lw * load_in(n, h1, w1, c4);
    r = (1.0 - lh) * top + lh * bot;
#elif defined(BILINEAR_BWD)
    uint plo, phi, qlo, qhi;
    bilinear_users(h, pc.H, pc.P, plo, phi);
    bilinear_users(w, pc.W, pc.Q, qlo, qhi);
    for (uint p = plo; p < phi; p++) {
        uint h0, h1;
        float lh;
        lerp_src(p, pc.H, pc.P, h0, h1, lh);
        if (h0 != h && h1 != h)
            continue;
        float wh = (h0 == h ? 1.0 - lh : 0.0) + (h1 == h ? lh : 0.0);
        vec4 row = vec4(0.0);
        for (uint q = qlo; q < qhi; q++) {
            uint w0, w1;
            float lw;
            lerp_src(q, pc.W, pc.Q, w0, w1, lw);
            if (w0 != w && w1 != w)
                continue;
            float ww = (w0 == w ? 1.0 - lw : 0.0) + (w1 == w ? lw : 0.0);
            row += ww * load_in(n, p, q, c4);
        }
        r += wh * row;
    }
#endif

    bvec4 live4 = lessThan(uvec4(c4 * 4u) + uvec4(0u, 1u, 2u, 3u), uvec4(pc.C));
    uint o = pc.out_base / 4u + i;
#ifdef BWD
    r = Y[o] + r;
#endif
    Y[o] = mix(vec4(0.0), r, live4);
}
