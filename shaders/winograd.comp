#version 450
// conv2d 3x3, stride 1, as Winograd F(2x2, 3x3) (Lavin and Gray, 2016): each 2x2 block
// of output pixels ("tile") is
//   y = A^T [ sum over a of (G g_a G^T) . (B^T d_a B) ] A
// with d_a the tile's 4x4 input patch of channel a, g_a the 3x3 kernel, "." the
// elementwise product, and
//   B^T = | 1  0 -1  0 |    G = | 1    0    0   |    A^T = | 1  1  1  0 |
//         | 0  1  1  0 |        | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
//         | 0 -1  1  0 |        | 1/2 -1/2  1/2 |
//         | 0  1  0 -1 |        | 0    0    1   |
// The sum over a is 16 GEMMs (src/ops/conv.c runs them on conv_gemm0 as 1x1
// convolutions), one per position (i, j) of the 4x4 transformed tile: 16 multiplies per
// 4 outputs instead of 36. Every product goes through these kernels:
//
// WINO_FILTER    U[ij][a][b] = (G g_ab G^T)[i][j]: one invocation per (a, vec4 of b)
//                  FLIP 0: g_ab[r][s] = w[r][s][a][b]          (forward: a = in, b = out)
//                  FLIP 1: g_ab[r][s] = w[2-r][2-s][b][a]      (input gradient: a = out,
//                  b = in; the kernel rotated by 180 degrees and transposed)
//                  U is RSAB4-shaped with R = 16, S = 1: (ij * A4 * 4 + a) * B4 + b4;
//                  a dispatch writes positions ij of [t0, t0 + count)
// WINO_IN        V[ij][t][a4] = (B^T d B)[i][j] for tiles t of [t0, t0 + count): one
//                  invocation per (t, a4); tile t is (n, th, tw) of a TH x TW grid whose
//                  patch starts at input pixel (2 th - ph, 2 tw - pw), zero outside
// WINO_OUT       y[n][2 th + u][2 tw + v][b4] (=, or += with flags 2) (A^T M A)[u][v]
//                  + bias (flags 1) for M[ij][t][b4] of the same tiles, pixels inside
//                  the output only
//
// The weight gradient is the same bilinear form read the other way (F(3x3, 2x2)): a
// sample's dw = G^T [ sum over its tiles t of (A dy_t A^T) . (B^T d_t B) ] G, with dy_t
// the tile's 2x2 output gradient. WINO_IN gives B^T d B, the 16 GEMMs (conv_wgrad's 1x1
// kernels) the sums over tiles, and
// WINO_DY        D[ij][t][b4] = (A dy A^T)[i][j] for tiles t of [t0, t0 + count): one
//                  invocation per (t, b4), dy (N, P, Q, B4) zero outside
// WINO_WOUT      part[r][s][a][b4] = (G^T Mw[a][b4] G)[r][s]: one invocation per (a, b4),
//                  Mw[ij][a][b4] one sample's 16 sums, part its RSAB4 block of dw
//
// variant wino_filter  WINO_FILTER
// variant wino_in      WINO_IN
// variant wino_out     WINO_OUT
// variant wino_dy      WINO_DY
// variant wino_wout    WINO_WOUT
#include "common.glsl"

layout(push_constant) uniform PC {
    uint N, H, W, A4;     // source tensor (IN) / GEMM reduction vec4s (FILTER, WOUT)
    uint P, Q, B4;        // output tensor (OUT, DY) / GEMM output vec4s (FILTER, WOUT)
    uint TH, TW;          // tile grid per sample
    uint ph, pw;          // IN: padding
    uint t0, count;       // IN, OUT, DY: tiles [t0, t0 + count) of the N * TH * TW;
                          // FILTER: positions ij
    uint x_base, w_base, y_base;  // vec4 bases: FILTER w, U, -; IN x, -, V;
                                  // OUT M, bias, y; DY dy, -, D; WOUT Mw, -, part
    uint flags;           // FILTER: 1 FLIP; OUT: 1 bias, 2 accumulate into y
    uint aux;             // OUT: the true b count (bias lanes past it are 0)
    uint o0;              // OUT: the output pixel at y_base
} pc;

#if defined(WINO_FILTER)
IN_BUFFER(0, Wt)
OUT_BUFFER4(1, U)

void main()
{
    uint gid = flat_id();
    uint b4 = gid % pc.B4, a = gid / pc.B4;
    if (a >= pc.A4 * 4u)
        return;
    vec4 g[3][3];
    for (uint r = 0u; r < 3u; r++)
        for (uint s = 0u; s < 3u; s++) {
            if ((pc.flags & 1u) == 0u) {
                g[r][s] = LOAD4(Wt, pc.x_base + ((r * 3u + s) * pc.A4 * 4u + a) * pc.B4 + b4);
            } else {
                // w stored [r][s][b (B4 * 4 rows)][a (A4 vec4s)]: lane l is row 4 b4 + l
                uint tap = (2u - r) * 3u + (2u - s);
                for (uint l = 0u; l < 4u; l++)
                    g[r][s][l] = LOAD4(Wt, pc.x_base + (tap * pc.B4 * 4u + b4 * 4u + l) * pc.A4 +
                                               a / 4u)[a % 4u];
            }
        }
    // Gg (4 x 3), then (Gg) G^T (4 x 4)
    vec4 t[4][3];
    for (uint s = 0u; s < 3u; s++) {
        t[0][s] = g[0][s];
        t[1][s] = 0.5 * (g[0][s] + g[1][s] + g[2][s]);
        t[2][s] = 0.5 * (g[0][s] - g[1][s] + g[2][s]);
        t[3][s] = g[2][s];
    }
    // positions ij of [t0, t0 + count) only: U in several bindings when it is large
    uint stride = pc.A4 * 4u * pc.B4, o = pc.w_base + a * pc.B4 + b4;
    for (uint i = 0u; i < 4u; i++) {
        vec4 u[4] = vec4[4](t[i][0], 0.5 * (t[i][0] + t[i][1] + t[i][2]),
                            0.5 * (t[i][0] - t[i][1] + t[i][2]), t[i][2]);
        for (uint j = 0u; j < 4u; j++)
            if (i * 4u + j >= pc.t0 && i * 4u + j < pc.t0 + pc.count)
                U[o + (i * 4u + j - pc.t0) * stride] = u[j];
    }
}

#elif defined(WINO_IN)
IN_BUFFER(0, X)
OUT_BUFFER4(1, V)

void main()
{
    uint gid = flat_id();
    uint a4 = gid % pc.A4, t = gid / pc.A4;
    if (t >= pc.count)
        return;
    uint tg = pc.t0 + t;
    uint tw = tg % pc.TW, th = (tg / pc.TW) % pc.TH, n = tg / (pc.TW * pc.TH);
    int h0 = int(th * 2u) - int(pc.ph), w0 = int(tw * 2u) - int(pc.pw);
    vec4 d[4][4];
    for (uint i = 0u; i < 4u; i++)
        for (uint j = 0u; j < 4u; j++) {
            int ih = h0 + int(i), iw = w0 + int(j);
            bool ok = ih >= 0 && ih < int(pc.H) && iw >= 0 && iw < int(pc.W);
            d[i][j] = ok ? LOAD4(X, pc.x_base + ((n * pc.H + uint(ih)) * pc.W + uint(iw)) * pc.A4 + a4)
                         : vec4(0.0);
        }
    // B^T d (rows), then (B^T d) B (columns)
    vec4 e[4][4];
    for (uint j = 0u; j < 4u; j++) {
        e[0][j] = d[0][j] - d[2][j];
        e[1][j] = d[1][j] + d[2][j];
        e[2][j] = d[2][j] - d[1][j];
        e[3][j] = d[1][j] - d[3][j];
    }
    uint stride = pc.count * pc.A4, o = pc.y_base + t * pc.A4 + a4;
    for (uint i = 0u; i < 4u; i++) {
        V[o + (i * 4u + 0u) * stride] = e[i][0] - e[i][2];
        V[o + (i * 4u + 1u) * stride] = e[i][1] + e[i][2];
        V[o + (i * 4u + 2u) * stride] = e[i][2] - e[i][1];
        V[o + (i * 4u + 3u) * stride] = e[i][1] - e[i][3];
    }
}

#elif defined(WINO_OUT)
IN_BUFFER(0, M)
IN_BUFFER(1, Bias)
OUT_BUFFER4(2, Y)

void main()
{
    uint gid = flat_id();
    uint b4 = gid % pc.B4, t = gid / pc.B4;
    if (t >= pc.count)
        return;
    uint tg = pc.t0 + t;
    uint tw = tg % pc.TW, th = (tg / pc.TW) % pc.TH, n = tg / (pc.TW * pc.TH);
    uint stride = pc.count * pc.B4, o = pc.x_base + t * pc.B4 + b4;
    // M A (4 x 2), then A^T (M A) (2 x 2)
    vec4 e[4][2];
    for (uint i = 0u; i < 4u; i++) {
        vec4 m0 = LOAD4(M, o + (i * 4u + 0u) * stride), m1 = LOAD4(M, o + (i * 4u + 1u) * stride);
        vec4 m2 = LOAD4(M, o + (i * 4u + 2u) * stride), m3 = LOAD4(M, o + (i * 4u + 3u) * stride);
        e[i][0] = m0 + m1 + m2;
        e[i][1] = m1 - m2 - m3;
    }
    vec4 bias = vec4(0.0);
    if ((pc.flags & 1u) != 0u) {
        bvec4 real = lessThan(uvec4(b4 * 4u) + uvec4(0u, 1u, 2u, 3u), uvec4(pc.aux));
        bias = mix(vec4(0.0), LOAD4(Bias, pc.w_base + b4), real);
    }
    for (uint u = 0u; u < 2u; u++) {
        uint oh = th * 2u + u;
        if (oh >= pc.P)
            break;
        for (uint v = 0u; v < 2u; v++) {
            uint ow = tw * 2u + v;
            if (ow >= pc.Q)
                break;
            vec4 r = u == 0u ? e[0][v] + e[1][v] + e[2][v] : e[1][v] - e[2][v] - e[3][v];
            uint yi = pc.y_base + ((n * pc.P + oh) * pc.Q + ow - pc.o0) * pc.B4 + b4;
            Y[yi] = (pc.flags & 2u) != 0u ? Y[yi] + r : r + bias;
        }
    }
}

#elif defined(WINO_DY)
IN_BUFFER(0, Dy)
OUT_BUFFER4(1, D)

void main()
{
    uint gid = flat_id();
    uint b4 = gid % pc.B4, t = gid / pc.B4;
    if (t >= pc.count)
        return;
    uint tg = pc.t0 + t;
    uint tw = tg % pc.TW, th = (tg / pc.TW) % pc.TH, n = tg / (pc.TW * pc.TH);
    vec4 y[2][2];
    for (uint u = 0u; u < 2u; u++)
        for (uint v = 0u; v < 2u; v++) {
            uint oh = th * 2u + u, ow = tw * 2u + v;
            y[u][v] = oh < pc.P && ow < pc.Q
                          ? LOAD4(Dy, pc.x_base + ((n * pc.P + oh) * pc.Q + ow) * pc.B4 + b4)
                          : vec4(0.0);
        }
    // A dy (rows), then (A dy) A^T (columns); A = (A^T)^T = | 1 0 | 1 1 | 1 -1 | 0 -1 |
    vec4 e[4][2];
    for (uint v = 0u; v < 2u; v++) {
        e[0][v] = y[0][v];
        e[1][v] = y[0][v] + y[1][v];
        e[2][v] = y[0][v] - y[1][v];
        e[3][v] = -y[1][v];
    }
    uint stride = pc.count * pc.B4, o = pc.y_base + t * pc.B4 + b4;
    for (uint i = 0u; i < 4u; i++) {
        D[o + (i * 4u + 0u) * stride] = e[i][0];
        D[o + (i * 4u + 1u) * stride] = e[i][0] + e[i][1];
        D[o + (i * 4u + 2u) * stride] = e[i][0] - e[i][1];
        D[o + (i * 4u + 3u) * stride] = -e[i][1];
    }
}

#elif defined(WINO_WOUT)
IN_BUFFER(0, Mw)
OUT_BUFFER4(1, Part)

void main()
{
    uint gid = flat_id();
    uint b4 = gid % pc.B4, a = gid / pc.B4;
    if (a >= pc.A4 * 4u)
        return;
    uint stride = pc.A4 * 4u * pc.B4, o = pc.x_base + a * pc.B4 + b4;
    // G^T m (3 x 4), then (G^T m) G (3 x 3); G^T = | 1 1/2 1/2 0 | 0 1/2 -1/2 0 |
    // 0 1/2 1/2 1 |
    vec4 e[3][4];
    for (uint j = 0u; j < 4u; j++) {
        vec4 m0 = LOAD4(Mw, o + (0u * 4u + j) * stride), m1 = LOAD4(Mw, o + (1u * 4u + j) * stride);
        vec4 m2 = LOAD4(Mw, o + (2u * 4u + j) * stride), m3 = LOAD4(Mw, o + (3u * 4u + j) * stride);
        e[0][j] = m0 + 0.5 * (m1 + m2);
        e[1][j] = 0.5 * (m1 - m2);
        e[2][j] = 0.5 * (m1 + m2) + m3;
    }
    for (uint r = 0u; r < 3u; r++) {
        vec4 w0 = e[r][0] + 0.5 * (e[r][1] + e[r][2]);
        vec4 w1 = 0.5 * (e[r][1] - e[r][2]);
        vec4 w2 = 0.5 * (e[r][1] + e[r][2]) + e[r][3];
        Part[pc.y_base + ((r * 3u + 0u) * pc.A4 * 4u + a) * pc.B4 + b4] = w0;
        Part[pc.y_base + ((r * 3u + 1u) * pc.A4 * 4u + a) * pc.B4 + b4] = w1;
        Part[pc.y_base + ((r * 3u + 2u) * pc.A4 * 4u + a) * pc.B4 + b4] = w2;
    }
}
#endif
