#version 450
// Convolution as implicit GEMM, register-blocked (lavapipe.md: one invocation computes
// TM output pixels x TN4 vec4s of output channels from vec4 loads along the reduction).
//
// Tensors are NHWC4; weights are "RSAB4": w[(r*S + s)*A4*4 + a][b] with b (the output
// side) contiguous in vec4s, A4/B4 the vec4 counts of a and b.
//
// CONV_GEMM      y[n,o,:] (=, or += with ACCUM) sum over r,s,a of x[n,i(o,r,s),a] * w[r,s,a,:]
//                  GEOM 0 (gather): i = o*stride - pad + r            conv2d fwd, convT dgrad
//                  GEOM 1 (scatter turned gather): i = (o + pad - r) / stride, where
//                  exact; one dispatch per output parity class (oh0, ow0), so the r
//                  loop visits only the taps that can hit               conv2d dgrad, convT fwd
//                WT (specialization constant): the weight is read as the other side's
//                  RSAB4, w[r,s,a,:] gathered from wo[r,s,b,a] (lanes: four rows of
//                  wo), for the taps that need it the other way round (conv2d dgrad,
//                  convT fwd); the same numbers in the same order as from a transposed
//                  copy, without the copy
//                TILED (GPUs): a workgroup covers TKB output-channel blocks x WG/TKB pixel
//                  blocks and stages the weight rows of each (r, s, TA4 vec4s of a) in
//                  shared memory once; every output still sees the same multiply-add
//                  chain (r, s, a in order) as the untiled kernel, so both give the
//                  same bits
// CONV_WGRAD     part[n][chunk][r,s,a,b] = sum over the chunk's pixels o of
//                  g[n, o*stride - pad + r, a] * d[n, o, b]           (dw, per sample)
//                  (bases: g at x_base, d at w_base)
// CONV_BGRAD     part[n][chunk][b] = sum over the chunk's pixels of d[n, o, b]
// CONV_REDUCE    acc[e] += sum over chunks of part[n][chunk][e], for n in order (acc holds
//                  m_count floats): the
//                  per-sample partials reach the accumulator in sample order, so any
//                  split of a batch into micro-batches gives the same bits; with EXACT
//                  (--accumulate exact) Acc holds exact elements (include/exact.glsl)
//                  and each sample's sum is converted and added exactly
//
// variant conv_gemm0         CONV_GEMM GEOM=0
// variant conv_gemm1         CONV_GEMM GEOM=1
// variant conv_gemm0_tiled   CONV_GEMM GEOM=0 TILED=1
// variant conv_gemm1_tiled   CONV_GEMM GEOM=1 TILED=1
// variant conv_wgrad         CONV_WGRAD DIRECT=0
// variant conv_wgrad_direct  CONV_WGRAD DIRECT=1
// variant conv_wgrad_direct_exact  CONV_WGRAD DIRECT=1 EXACT=1
// variant conv_bgrad         CONV_BGRAD
// variant conv_reduce        CONV_REDUCE
// variant conv_reduce_exact  CONV_REDUCE EXACT=1
#include "common.glsl"
#include "exact.glsl"

layout(constant_id = 1) const uint TM = 16;  // pixels per invocation
layout(constant_id = 2) const uint TN4 = 2;  // output vec4s per invocation

layout(push_constant) uniform PC {
    uint N, H, W, A4;        // source (gathered) tensor
    uint P, Q, B4;           // output tensor (GEMM), or pixel-space tensor (WGRAD)
    uint R, S;
    uint sh, sw, ph, pw;
    uint oh0, ow0, Pc, Qc;   // GEOM 1: parity class origin and grid
    uint x_base, w_base, b_base, y_base;
    uint m0, m_count;        // output pixels [m0, m0 + m_count) in this dispatch
    uint o0;                 // GEMM: the output pixel at y_base (first of the binding)
    uint flags;              // GEMM: 1 bias
    uint chunk;              // WGRAD/BGRAD: pixels per chunk; REDUCE: chunks per sample
    uint aux;                // GEMM: true b count (bias lanes past it are 0); WGRAD: true
                             // a count; REDUCE: accumulator vec4s
    uint ncls;               // GEOM 1, untiled: classes in this dispatch (below)
} pc;

#if defined(CONV_GEMM)
IN_BUFFER(0, X)
IN_BUFFER(1, Wt)
IN_BUFFER(2, Bias)
OUT_BUFFER4(3, Y)

#ifndef TILED
#define TILED 0
#endif
// 1: Wt holds the weight the other way round, RSAB4 of B x A (see WT above)
layout(constant_id = 4) const uint WT = 0u;
// 1: y += the product (a constant: with 0 the kernel reads no y)
layout(constant_id = 5) const uint ACCUM = 0u;

// The weight vec4 of row a (the reduction) and output vec4 k4 of tap base wtap: a load,
// or with WT four rows of the transposed weight's column a / 4, lane a % 4.
vec4 wload(uint wtap, uint a, uint k4)
{
    if (WT == 0u)
        return LOAD4(Wt, wtap + a * pc.B4 + k4);
    vec4 v;
    for (uint l = 0u; l < 4u; l++)
        v[l] = LOAD4(Wt, wtap + (k4 * 4u + l) * pc.A4 + a / 4u)[a % 4u];
    return v;
}

#if TILED
layout(constant_id = 3) const uint TKB = 4;  // output-channel blocks per workgroup
const uint TA4 = 8u;                         // a vec4s per staged weight tile
const uint TW = TKB * TN4;                   // vec4 columns of the tile
// rows a of the tile x the workgroup's TW output vec4s, for one tap (r, s)
shared vec4 wtile[TA4 * 4u * TW];
#endif

void main()
{
    uint nkb = (pc.B4 + TN4 - 1u) / TN4;
#if TILED
    // Every invocation stays to the end, dead ones included: they help stage the tiles
    // and must meet each barrier. Pixel blocks past m_count are masked by live[];
    // channel blocks past nkb read clamped columns and write nothing.
    uint lid = gl_LocalInvocationID.x, grp = flat_group();
    uint ngk = (nkb + TKB - 1u) / TKB;
    uint col0 = (grp % ngk) * TW;    // the tile's first output vec4
    uint kb = (grp % ngk) * TKB + lid % TKB;
    uint mb = (grp / ngk) * (WG / TKB) + lid / TKB;
#else
    uint gid = flat_id();
    uint kb = gid % nkb;
    uint mb = gid / nkb;
#if GEOM == 1
    // ncls > 1: every parity class (sh x sw of them, Pc x Qc pixels each) in one
    // dispatch, class cls taking the cls-th run of pixel blocks; 1: the class at oh0, ow0
    uint nmbc = (pc.m_count + TM - 1u) / TM, cls = mb / nmbc;
    if (cls >= pc.ncls)
        return;
    mb -= cls * nmbc;
    uint oh0 = pc.oh0 + cls / pc.sw, ow0 = pc.ow0 + cls % pc.sw;
#endif
    if (mb * TM >= pc.m_count)
        return;
#endif
#if TILED
    uint oh0 = pc.oh0, ow0 = pc.ow0;
#endif

    vec4 acc[TM][TN4];
    int pn[TM], ph0[TM], pw0[TM];
    uint opix[TM];   // the output pixel
    bool live[TM];
    // the block's pixels m0 + mb TM + i as (n, row, column) of the output (GEOM 0) or of
    // its class's grid (GEOM 1): the first by division, the others by counting on (a
    // pixel past m_count is dead: its loads are masked and it is never stored)
#if GEOM == 0
    uint QX = pc.Q, PX = pc.P;
#else
    uint QX = pc.Qc, PX = pc.Pc;
#endif
    // the bias (or 0) each output vec4 starts from, loaded once for the TM pixels
    vec4 init[TN4];
    for (uint j = 0u; j < TN4; j++) {
        uint k4 = kb * TN4 + j;
        init[j] = vec4(0.0);
        if ((pc.flags & 1u) != 0u && k4 < pc.B4) {
            bvec4 real = lessThan(uvec4(k4 * 4u) + uvec4(0u, 1u, 2u, 3u), uvec4(pc.aux));
            init[j] = mix(vec4(0.0), LOAD4(Bias, pc.b_base + k4), real);
        }
    }
    uint mf = pc.m0 + mb * TM;
    uint cq = mf % QX, cp = (mf / QX) % PX, cn = mf / (QX * PX);
    for (uint i = 0u; i < TM; i++) {
        live[i] = mb * TM + i < pc.m_count;
        uint n = cn;
#if GEOM == 0
        uint ow = cq, oh = cp;
        ph0[i] = int(oh * pc.sh) - int(pc.ph);
        pw0[i] = int(ow * pc.sw) - int(pc.pw);
        opix[i] = mf + i;
#else
        uint ww = cq, hh = cp;
        opix[i] = (n * pc.P + oh0 + hh * pc.sh) * pc.Q + ow0 + ww * pc.sw;
        // the source pixel at the class's first tap (r0, s0): (o + pad - r0) / stride,
        // which the division makes exact; each further tap is one row (column) less
        ph0[i] = int(hh + (oh0 + pc.ph) / pc.sh);
        pw0[i] = int(ww + (ow0 + pc.pw) / pc.sw);
#endif
        pn[i] = int(n * pc.H * pc.W);
        cq++;
        bool wrap = cq == QX;
        cq = wrap ? 0u : cq;
        cp = wrap ? cp + 1u : cp;
        bool wrap2 = cp == PX;
        cp = wrap2 ? 0u : cp;
        cn = wrap2 ? cn + 1u : cn;
        for (uint j = 0u; j < TN4; j++)
            acc[i][j] = init[j];
    }

#if GEOM == 0
    uint r0 = 0u, s0 = 0u, rstep = 1u, sstep = 1u;
#else
    uint r0 = (oh0 + pc.ph) % pc.sh, s0 = (ow0 + pc.pw) % pc.sw;
    uint rstep = pc.sh, sstep = pc.sw;
#endif
    for (uint r = r0, kr = 0u; r < pc.R; r += rstep, kr++) {
        for (uint s = s0, ks = 0u; s < pc.S; s += sstep, ks++) {
            uint xi[TM];
            bool ok[TM];
            for (uint i = 0u; i < TM; i++) {
#if GEOM == 0
                int ih = ph0[i] + int(r), iw = pw0[i] + int(s);
#else
                int ih = ph0[i] - int(kr), iw = pw0[i] - int(ks);
#endif
                ok[i] = live[i] && ih >= 0 && ih < int(pc.H) && iw >= 0 && iw < int(pc.W);
                xi[i] = ok[i] ? pc.x_base + uint(pn[i] + ih * int(pc.W) + iw) * pc.A4 : 0u;
            }
#if TILED
            uint wtap = pc.w_base + (r * pc.S + s) * pc.A4 * 4u * pc.B4;
            for (uint ab = 0u; ab < pc.A4; ab += TA4) {
                // WAR: every invocation is done reading the previous tile
                barrier();
                // columns past B4 repeat the last one, as the untiled kernel's clamp
                // does; rows past A4 * 4 are never read
                for (uint e = lid; e < TA4 * 4u * TW; e += WG) {
                    uint a = ab * 4u + e / TW;
                    uint col = min(col0 + e % TW, pc.B4 - 1u);
                    wtile[e] = a < pc.A4 * 4u ? wload(wtap, a, col) : vec4(0.0);
                }
                // RAW: the tile is complete before anyone reads it
                barrier();
                uint a4_end = min(ab + TA4, pc.A4);
                uint wcol = (lid % TKB) * TN4;
#else
            {
                uint ab = 0u, a4_end = pc.A4;
                uint wtap = pc.w_base + (r * pc.S + s) * pc.A4 * 4u * pc.B4;
#endif
                for (uint a4 = ab; a4 < a4_end; a4++) {
                    vec4 xv[TM];
                    for (uint i = 0u; i < TM; i++)
                        xv[i] = ok[i] ? LOAD4(X, xi[i] + a4) : vec4(0.0);
#if !TILED
                    // WT: the four rows of each output vec4 at column a4, read once for
                    // the four c below (columns past B4 repeat the last one)
                    vec4 wt[TN4][4];
                    if (WT != 0u)
                        for (uint j = 0u; j < TN4; j++)
                            for (uint l = 0u; l < 4u; l++)
                                wt[j][l] = LOAD4(Wt, wtap + (min(kb * TN4 + j, pc.B4 - 1u) * 4u + l) * pc.A4 + a4);
#endif
                    // the step's weights first, then each output's four multiply-adds in a
                    // row: acc (TM x TN4 vec4s) does not fit lavapipe's registers, and an
                    // element loaded and stored once per four multiply-adds instead of once
                    // per one ran the 32-channel 256x256 layers in 0.54-0.77x the time (the
                    // same chain per element: the same bits)
                    vec4 wv[4][TN4];
                    for (uint c = 0u; c < 4u; c++) {
#if TILED
                        uint wi = ((a4 - ab) * 4u + c) * TW + wcol;
                        for (uint j = 0u; j < TN4; j++)
                            wv[c][j] = wtile[wi + j];
#else
                        uint wi = wtap + (a4 * 4u + c) * pc.B4 + kb * TN4;
                        for (uint j = 0u; j < TN4; j++)
                            wv[c][j] = WT != 0u
                                ? vec4(wt[j][0][c], wt[j][1][c], wt[j][2][c], wt[j][3][c])
                                : LOAD4(Wt, wi + min(j, pc.B4 - 1u - kb * TN4));
#endif
                    }
                    for (uint i = 0u; i < TM; i++)
                        for (uint j = 0u; j < TN4; j++) {
                            vec4 e = acc[i][j];
                            for (uint c = 0u; c < 4u; c++)
                                e = fma(vec4(xv[i][c]), wv[c][j], e);
                            acc[i][j] = e;
                        }
                }
            }
        }
    }

    for (uint i = 0u; i < TM; i++) {
        if (!live[i])
            continue;
        for (uint j = 0u; j < TN4; j++) {
            uint k4 = kb * TN4 + j;
            if (k4 >= pc.B4)
                break;
            uint yi = pc.y_base + (opix[i] - pc.o0) * pc.B4 + k4;
            Y[yi] = ACCUM != 0u ? Y[yi] + acc[i][j] : acc[i][j];
        }
    }
}

#elif defined(CONV_WGRAD)
// acc[a][b] += g[n_, pixel o at tap (r, s), a] * d[n_, o, b] over the chunk's pixels o in
// order, WU pixels at a time: each element takes its WU multiply-adds in a row (a pixel
// outside the image leaves it as it is), so that it is loaded and stored once per WU
// pixels (acc does not fit lavapipe's registers). Pairs ran seg256's and gan32's weight
// gradients in 0.79-0.92x the time of one pixel at a time; four, in 1.03-1.19x.
const uint WU = 2u;
#define WGRAD_CHUNK(n_)                                                                    \
    {                                                                                      \
        uint pix0 = ch * pc.chunk, pix1 = min(pix0 + pc.chunk, pc.P * pc.Q);               \
        for (uint pix = pix0; pix < pix1; pix += WU) {                                     \
            bool ok[WU];                                                                   \
            vec4 gv[WU][TM / 4u], dv[WU][TN4];                                             \
            for (uint u = 0u; u < WU; u++) {                                               \
                uint px = min(pix + u, pix1 - 1u), p = px / pc.Q, q = px % pc.Q;           \
                int ih = int(p * pc.sh + r) - int(pc.ph), iw = int(q * pc.sw + s) - int(pc.pw); \
                ok[u] = pix + u < pix1 && ih >= 0 && ih < int(pc.H) && iw >= 0 &&          \
                        iw < int(pc.W);                                                    \
                uint gi = ok[u] ? pc.x_base + (((n_) * pc.H + uint(ih)) * pc.W + uint(iw)) * \
                                                  pc.A4 + ab * TA4                         \
                                : 0u;                                                      \
                uint di = pc.w_base + ((n_) * pc.P * pc.Q + px) * pc.B4 + bb * TN4;        \
                for (uint j = 0u; j < TN4; j++)                                            \
                    dv[u][j] = LOAD4(D, di + min(j, pc.B4 - 1u - bb * TN4));               \
                for (uint a4 = 0u; a4 < TA4; a4++)                                         \
                    gv[u][a4] = LOAD4(G, gi + min(a4, pc.A4 - 1u - ab * TA4));             \
            }                                                                              \
            for (uint a4 = 0u; a4 < TA4; a4++)                                             \
                for (uint c = 0u; c < 4u; c++)                                             \
                    for (uint j = 0u; j < TN4; j++) {                                      \
                        vec4 e = acc[a4 * 4u + c][j];                                      \
                        for (uint u = 0u; u < WU; u++)                                     \
                            e = ok[u] ? fma(vec4(gv[u][a4][c]), dv[u][j], e) : e;          \
                        acc[a4 * 4u + c][j] = e;                                           \
                    }                                                                      \
        }                                                                                  \
    }
#endif

#if defined(CONV_WGRAD) && DIRECT == 0
// One invocation: tap (r,s), TM/4 vec4s of a (TM channels) and TN4 vec4s of b, over one
// chunk of one sample's pixels; the partial goes to Part[n][chunk] (RSAB4 blocks) for
// conv_reduce. Grid: (sample, chunk, r*S+s, a-block, b-block).
IN_BUFFER(0, G)   // gathered operand (N, H, W, A4 vec4)
IN_BUFFER(1, D)   // pixel operand (N, P, Q, B4 vec4)
OUT_BUFFER4(2, Part)

void main()
{
    uint gid = flat_id();
    uint TA4 = TM / 4u;
    uint nab = (pc.A4 + TA4 - 1u) / TA4, nbb = (pc.B4 + TN4 - 1u) / TN4;
    uint nchunks = (pc.P * pc.Q + pc.chunk - 1u) / pc.chunk;
    uint bb = gid % nbb;
    uint ab = (gid / nbb) % nab;
    uint rs = (gid / (nbb * nab)) % (pc.R * pc.S);
    uint ch = (gid / (nbb * nab * pc.R * pc.S)) % nchunks;
    uint n = gid / (nbb * nab * pc.R * pc.S * nchunks);
    if (n >= pc.N)
        return;
    uint r = rs / pc.S, s = rs % pc.S;

    vec4 acc[TM][TN4];
    for (uint i = 0u; i < TM; i++)
        for (uint j = 0u; j < TN4; j++)
            acc[i][j] = vec4(0.0);
    WGRAD_CHUNK(n)

    // part[n][ch] holds this chunk's RSAB4 block; rows past the true a count (pc.aux)
    // stay 0, as the weights' padding rows do
    uint per = pc.R * pc.S * pc.A4 * 4u * pc.B4;    // vec4s per (sample, chunk)
    uint base = (n * nchunks + ch) * per;
    for (uint i = 0u; i < TM; i++) {
        uint a = ab * TM + i;
        if (a >= pc.A4 * 4u)
            break;
        for (uint j = 0u; j < TN4; j++) {
            uint b4 = bb * TN4 + j;
            if (b4 < pc.B4)
                Part[base + (rs * pc.A4 * 4u + a) * pc.B4 + b4] = a < pc.aux ? acc[i][j] : vec4(0.0);
        }
    }
}

#elif defined(CONV_WGRAD) && DIRECT == 1
// Images of one chunk: one invocation (tap, a-block, b-block) runs every sample in
// order. Without EXACT, one multiply-add chain continued from the accumulator's value
// (Part bound at y_base), so k micro-batches continue the chain exactly where one batch
// would. With EXACT, each sample's chain starts at 0 and its sum is converted and added
// exactly into the accumulator's elements (Acc, element y_base + (rs, a, b) index): the
// same per-sample sums, in the same order, as conv_wgrad's partials give conv_reduce_exact,
// so the same bits. No partials in memory either way.
IN_BUFFER(0, G)   // gathered operand (N, H, W, A4 vec4)
IN_BUFFER(1, D)   // pixel operand (N, P, Q, B4 vec4)
#ifdef EXACT
EXACT_BUFFER(2, Acc)
#else
OUT_BUFFER4(2, Part)
#endif

void main()
{
    uint gid = flat_id();
    uint TA4 = TM / 4u;
    uint nab = (pc.A4 + TA4 - 1u) / TA4, nbb = (pc.B4 + TN4 - 1u) / TN4;
    uint nchunks = (pc.P * pc.Q + pc.chunk - 1u) / pc.chunk;
    uint bb = gid % nbb;
    uint ab = (gid / nbb) % nab;
    uint rs = (gid / (nbb * nab)) % (pc.R * pc.S);
    uint ch = (gid / (nbb * nab * pc.R * pc.S)) % nchunks;
    uint n = gid / (nbb * nab * pc.R * pc.S * nchunks);
    if (n >= 1u)
        return;
    uint r = rs / pc.S, s = rs % pc.S;
    uint base = pc.y_base;

    vec4 acc[TM][TN4];
#ifdef EXACT
    // rows past the true a count (pc.aux) and vec4s past B4 are not the weight's: their
    // sums are not added
    uvec4 ex[TM][TN4 * 4u];
    for (uint i = 0u; i < TM; i++)
        for (uint j = 0u; j < TN4 * 4u; j++) {
            uint a = min(ab * TM + i, pc.aux - 1u), b4 = min(bb * TN4 + j / 4u, pc.B4 - 1u);
            ex[i][j] = Acc[base + ((rs * pc.A4 * 4u + a) * pc.B4 + b4) * 4u + j % 4u];
        }
#else
    for (uint i = 0u; i < TM; i++)
        for (uint j = 0u; j < TN4; j++) {
            uint a = min(ab * TM + i, pc.A4 * 4u - 1u), b4 = min(bb * TN4 + j, pc.B4 - 1u);
            acc[i][j] = Part[base + (rs * pc.A4 * 4u + a) * pc.B4 + b4];
        }
#endif
    for (uint nn = 0u; nn < pc.N; nn++) {
#ifdef EXACT
        for (uint i = 0u; i < TM; i++)
            for (uint j = 0u; j < TN4; j++)
                acc[i][j] = vec4(0.0);
#endif
        WGRAD_CHUNK(nn)
#ifdef EXACT
        for (uint i = 0u; i < TM; i++)
            for (uint j = 0u; j < TN4 * 4u; j++)
                ex[i][j] = exact_add_float(ex[i][j], acc[i][j / 4u][j % 4u]);
#endif
    }
    // constant loop bounds: acc stays in registers (a data-dependent bound would make its
    // indices dynamic and move it to memory: six times slower on lavapipe)
    for (uint i = 0u; i < TM; i++) {
        uint a = ab * TM + i;
#ifdef EXACT
        for (uint j = 0u; j < TN4 * 4u; j++)
            if (a < pc.aux && bb * TN4 + j / 4u < pc.B4)
                Acc[base + ((rs * pc.A4 * 4u + a) * pc.B4 + bb * TN4 + j / 4u) * 4u + j % 4u] = ex[i][j];
#else
        // rows past the true a count (pc.aux) stay 0, as the weights' padding rows do
        for (uint j = 0u; j < TN4; j++)
            if (a < pc.A4 * 4u && bb * TN4 + j < pc.B4)
                Part[base + (rs * pc.A4 * 4u + a) * pc.B4 + bb * TN4 + j] =
                    a < pc.aux ? acc[i][j] : vec4(0.0);
#endif
    }
}

#elif defined(CONV_BGRAD)
// One invocation: one vec4 of b over one chunk of one sample's pixels.
IN_BUFFER(0, D)
OUT_BUFFER4(1, Part)

void main()
{
    uint gid = flat_id();
    uint nchunks = (pc.P * pc.Q + pc.chunk - 1u) / pc.chunk;
    uint b4 = gid % pc.B4, ch = (gid / pc.B4) % nchunks, n = gid / (pc.B4 * nchunks);
    if (n >= pc.N)
        return;
    vec4 acc = vec4(0.0);
    uint pix0 = ch * pc.chunk, pix1 = min(pix0 + pc.chunk, pc.P * pc.Q);
    for (uint pix = pix0; pix < pix1; pix++)
        acc += LOAD4(D, pc.w_base + (n * pc.P * pc.Q + pix) * pc.B4 + b4);
    Part[(n * nchunks + ch) * pc.B4 + b4] = acc;
}

#elif defined(CONV_REDUCE) && defined(EXACT)
// One invocation per partial vec4 (four exact elements at y_base + 4e + l): each
// sample's sum over its chunks, in the same order as below, converted and added exactly.
IN_BUFFER(0, Part)
EXACT_BUFFER(1, Acc)

void main()
{
    uint e = flat_id();
    if (e >= pc.aux)
        return;
    uvec4 acc[4];
    for (uint l = 0u; l < 4u; l++)
        acc[l] = e * 4u + l < pc.m_count ? Acc[pc.y_base + e * 4u + l] : uvec4(0u);
    for (uint n = 0u; n < pc.N; n++) {
        vec4 sample_sum = vec4(0.0);
        for (uint ch = 0u; ch < pc.chunk; ch++)
            sample_sum += LOAD4(Part, pc.x_base + (n * pc.chunk + ch) * pc.aux + e);
        for (uint l = 0u; l < 4u; l++)
            acc[l] = exact_add_float(acc[l], sample_sum[l]);
    }
    for (uint l = 0u; l < 4u; l++)
        if (e * 4u + l < pc.m_count)
            Acc[pc.y_base + e * 4u + l] = acc[l];
}

#elif defined(CONV_REDUCE)
// One invocation per accumulator vec4: the samples' partials in sample order.
IN_BUFFER(0, Part)
OUT_BUFFER4(1, Acc)

void main()
{
    uint e = flat_id();
    if (e >= pc.aux)
        return;
    vec4 acc = Acc[pc.y_base + e];
    for (uint n = 0u; n < pc.N; n++) {
        vec4 sample_sum = vec4(0.0);
        for (uint ch = 0u; ch < pc.chunk; ch++)
            sample_sum += LOAD4(Part, pc.x_base + (n * pc.chunk + ch) * pc.aux + e);
        acc += sample_sum;
    }
    // a vector of m_count floats (a bias) ends inside its last vec4: write only its lanes
    if (e * 4u + 4u <= pc.m_count) {
        Acc[pc.y_base + e] = acc;
    } else {
        for (uint l = 0u; e * 4u + l < pc.m_count; l++)
            Acc[pc.y_base + e][l] = acc[l];
    }
}

#endif
