#version 450
// conv2d 3x3, stride 1, as Winograd F(m x m, 3x3) (Lavin and Gray, 2016), m = WM (2 or 4,
// a specialization constant): each m x m block of output pixels ("tile") is
//   y = A^T [ sum over a of (G g_a G^T) . (B^T d_a B) ] A
// with d_a the tile's (m+2) x (m+2) input patch of channel a, g_a the 3x3 kernel, "." the
// elementwise product. F(2x2, 3x3):
//   B^T = | 1  0 -1  0 |    G = | 1    0    0   |    A^T = | 1  1  1  0 |
//         | 0  1  1  0 |        | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
//         | 0 -1  1  0 |        | 1/2 -1/2  1/2 |
//         | 0  1  0 -1 |        | 0    0    1   |
// F(4x4, 3x3) (points 0, 1, -1, 2, -2 and infinity):
//   B^T = | 4  0 -5  0  1  0 |   G = | 1/4     0     0   |   A^T = | 1  1  1  1  1  0 |
//         | 0 -4 -4  1  1  0 |       | -1/6  -1/6  -1/6  |         | 0  1 -1  2 -2  0 |
//         | 0  4 -4 -1  1  0 |       | -1/6   1/6  -1/6  |         | 0  1  1  4  4  0 |
//         | 0 -2 -1  2  1  0 |       | 1/24  1/12   1/6  |         | 0  1 -1  8 -8  1 |
//         | 0  2 -1 -2  1  0 |       | 1/24 -1/12   1/6  |
//         | 0  4  0 -5  0  1 |       | 0      0     1    |
// The sum over a is (m+2)^2 GEMMs (src/ops/conv.c runs them on conv_gemm0 as 1x1
// convolutions), one per position (i, j) of the transformed tile: 16 multiplies per 4
// outputs (m = 2) or 36 per 16 (m = 4) instead of 9 per output. Each one-dimensional
// transform below is written so that its roundings are few and counted (tests/opcases.c
// bounds the error with those counts): m = 2 filter 2, input 1, output 2, dy 1, inverse 2;
// m = 4 filter 4, input 2, output 3, dy 2, inverse 5 (a constant 1/6 or 1/24 is itself a
// rounding). Every product goes through these kernels:
//
// WINO_FILTER    U[ij][a][b] = (G g_ab G^T)[i][j]: one invocation per (a, vec4 of b)
//                  FLIP 0: g_ab[r][s] = w[r][s][a][b]          (forward: a = in, b = out)
//                  FLIP 1: g_ab[r][s] = w[2-r][2-s][b][a]      (input gradient: a = out,
//                  b = in; the kernel rotated by 180 degrees and transposed)
//                  U is RSAB4-shaped with R = (m+2)^2, S = 1: (ij * A4 * 4 + a) * B4 + b4;
//                  a dispatch writes positions ij of [t0, t0 + count)
// WINO_IN        V[ij][t][a4] = (B^T d B)[i][j] for tiles t of [t0, t0 + count): one
//                  invocation per (t, a4); tile t is (n, th, tw) of a TH x TW grid whose
//                  patch starts at input pixel (m th - ph, m tw - pw), zero outside
// WINO_OUT       y[n][m th + u][m tw + v][b4] (=, or += with flags 2) (A^T M A)[u][v]
//                  + bias (flags 1) for M[ij][t][b4] of the same tiles, pixels inside
//                  the output only
//
// The weight gradient is the same bilinear form read the other way (F(3x3, m x m)): a
// sample's dw = G^T [ sum over its tiles t of (A dy_t A^T) . (B^T d_t B) ] G, with dy_t
// the tile's m x m output gradient. WINO_IN gives B^T d B, the GEMMs (conv_wgrad's 1x1
// kernels) the sums over tiles, and
// WINO_DY        D[ij][t][b4] = (A dy A^T)[i][j] for tiles t of [t0, t0 + count): one
//                  invocation per (t, b4), dy (N, P, Q, B4) zero outside
// WINO_WOUT      part[r][s][a][b4] = (G^T Mw[a][b4] G)[r][s]: one invocation per (a, b4),
//                  Mw[ij][a][b4] one sample's (m+2)^2 sums, part its RSAB4 block of dw
//
// variant wino_filter  WINO_FILTER
// variant wino_in      WINO_IN
// variant wino_out     WINO_OUT
// variant wino_dy      WINO_DY
// variant wino_wout    WINO_WOUT
#include "common.glsl"

layout(constant_id = 1) const uint WM = 2u;   // output tile side m: 2 or 4
const uint AL = WM + 2u;                      // transformed tile side
// arrays are sized for m = 4; m = 2 uses their first AL (WM) entries

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

const float SIXTH = 1.0 / 6.0;

// u = G g (AL of 3)
void filt(vec4 g0, vec4 g1, vec4 g2, out vec4 u[6])
{
    if (WM == 2u) {
        u[0] = g0;
        u[1] = 0.5 * (g0 + g1 + g2);
        u[2] = 0.5 * (g0 - g1 + g2);
        u[3] = g2;
    } else {
        vec4 s = g0 + g2, t = 0.25 * g0 + g2;
        u[0] = 0.25 * g0;
        u[1] = -(s + g1) * SIXTH;
        u[2] = -(s - g1) * SIXTH;
        u[3] = (t + 0.5 * g1) * SIXTH;
        u[4] = (t - 0.5 * g1) * SIXTH;
        u[5] = g2;
    }
}

// v = B^T d (AL of AL)
void bt(vec4 d[6], out vec4 v[6])
{
    if (WM == 2u) {
        v[0] = d[0] - d[2];
        v[1] = d[1] + d[2];
        v[2] = d[2] - d[1];
        v[3] = d[1] - d[3];
    } else {
        v[0] = (4.0 * d[0] + d[4]) - 5.0 * d[2];
        v[1] = (d[3] + d[4]) - 4.0 * (d[1] + d[2]);
        v[2] = (d[4] - d[3]) + 4.0 * (d[1] - d[2]);
        v[3] = (d[4] - d[2]) + 2.0 * (d[3] - d[1]);
        v[4] = (d[4] - d[2]) - 2.0 * (d[3] - d[1]);
        v[5] = (4.0 * d[1] + d[5]) - 5.0 * d[3];
    }
}

// y = A^T m (WM of AL)
void at(vec4 m[6], out vec4 y[4])
{
    if (WM == 2u) {
        y[0] = m[0] + m[1] + m[2];
        y[1] = m[1] - m[2] - m[3];
    } else {
        vec4 a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], d = m[3] - m[4];
        y[0] = (m[0] + a) + c;
        y[1] = b + 2.0 * d;
        y[2] = a + 4.0 * c;
        y[3] = (b + 8.0 * d) + m[5];
    }
}

// e = A y (AL of WM)
void ay(vec4 y[4], out vec4 e[6])
{
    if (WM == 2u) {
        e[0] = y[0];
        e[1] = y[0] + y[1];
        e[2] = y[0] - y[1];
        e[3] = -y[1];
    } else {
        vec4 p = y[0] + y[2], q = y[1] + y[3], r = y[0] + 4.0 * y[2], s = 2.0 * y[1] + 8.0 * y[3];
        e[0] = y[0];
        e[1] = p + q;
        e[2] = p - q;
        e[3] = r + s;
        e[4] = r - s;
        e[5] = y[3];
    }
}

// w = G^T m (3 of AL)
void gt(vec4 m[6], out vec4 w[3])
{
    if (WM == 2u) {
        w[0] = m[0] + 0.5 * (m[1] + m[2]);
        w[1] = 0.5 * (m[1] - m[2]);
        w[2] = 0.5 * (m[1] + m[2]) + m[3];
    } else {
        vec4 a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], d = m[3] - m[4];
        w[0] = 0.25 * m[0] + (0.25 * c - a) * SIXTH;
        w[1] = (0.5 * d - b) * SIXTH;
        w[2] = (c - a) * SIXTH + m[5];
    }
}

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
    // G g (AL x 3), then (G g) G^T (AL x AL)
    vec4 t[6][3];
    for (uint s = 0u; s < 3u; s++) {
        vec4 c[6];
        filt(g[0][s], g[1][s], g[2][s], c);
        for (uint i = 0u; i < AL; i++)
            t[i][s] = c[i];
    }
    // positions ij of [t0, t0 + count) only: U in several bindings when it is large
    uint stride = pc.A4 * 4u * pc.B4, o = pc.w_base + a * pc.B4 + b4;
    for (uint i = 0u; i < AL; i++) {
        vec4 u[6];
        filt(t[i][0], t[i][1], t[i][2], u);
        for (uint j = 0u; j < AL; j++)
            if (i * AL + j >= pc.t0 && i * AL + j < pc.t0 + pc.count)
                U[o + (i * AL + j - pc.t0) * stride] = u[j];
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
    int h0 = int(th * WM) - int(pc.ph), w0 = int(tw * WM) - int(pc.pw);
    // B^T d (rows), column by column, then (B^T d) B (columns)
    vec4 e[6][6];
    for (uint j = 0u; j < AL; j++) {
        vec4 d[6], c[6];
        for (uint i = 0u; i < AL; i++) {
            int ih = h0 + int(i), iw = w0 + int(j);
            bool ok = ih >= 0 && ih < int(pc.H) && iw >= 0 && iw < int(pc.W);
            d[i] = ok ? LOAD4(X, pc.x_base + ((n * pc.H + uint(ih)) * pc.W + uint(iw)) * pc.A4 + a4)
                      : vec4(0.0);
        }
        bt(d, c);
        for (uint i = 0u; i < AL; i++)
            e[i][j] = c[i];
    }
    uint stride = pc.count * pc.A4, o = pc.y_base + t * pc.A4 + a4;
    for (uint i = 0u; i < AL; i++) {
        vec4 v[6];
        bt(e[i], v);
        for (uint j = 0u; j < AL; j++)
            V[o + (i * AL + j) * stride] = v[j];
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
    // M A (AL x WM), row by row, then A^T (M A) (WM x WM)
    vec4 e[6][4];
    for (uint i = 0u; i < AL; i++) {
        vec4 m[6];
        for (uint j = 0u; j < AL; j++)
            m[j] = LOAD4(M, o + (i * AL + j) * stride);
        at(m, e[i]);
    }
    vec4 bias = vec4(0.0);
    if ((pc.flags & 1u) != 0u) {
        bvec4 real = lessThan(uvec4(b4 * 4u) + uvec4(0u, 1u, 2u, 3u), uvec4(pc.aux));
        bias = mix(vec4(0.0), LOAD4(Bias, pc.w_base + b4), real);
    }
    for (uint v = 0u; v < WM; v++) {
        uint ow = tw * WM + v;
        if (ow >= pc.Q)
            break;
        vec4 c[6], r[4];
        for (uint i = 0u; i < AL; i++)
            c[i] = e[i][v];
        at(c, r);
        for (uint u = 0u; u < WM; u++) {
            uint oh = th * WM + u;
            if (oh >= pc.P)
                break;
            uint yi = pc.y_base + ((n * pc.P + oh) * pc.Q + ow - pc.o0) * pc.B4 + b4;
            Y[yi] = (pc.flags & 2u) != 0u ? Y[yi] + r[u] : r[u] + bias;
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
    // A dy (rows), column by column, then (A dy) A^T (columns)
    vec4 e[6][4];
    for (uint v = 0u; v < WM; v++) {
        vec4 y[4], c[6];
        for (uint u = 0u; u < WM; u++) {
            uint oh = th * WM + u, ow = tw * WM + v;
            y[u] = oh < pc.P && ow < pc.Q
                       ? LOAD4(Dy, pc.x_base + ((n * pc.P + oh) * pc.Q + ow) * pc.B4 + b4)
                       : vec4(0.0);
        }
        ay(y, c);
        for (uint i = 0u; i < AL; i++)
            e[i][v] = c[i];
    }
    uint stride = pc.count * pc.B4, o = pc.y_base + t * pc.B4 + b4;
    for (uint i = 0u; i < AL; i++) {
        vec4 d[6];
        ay(e[i], d);
        for (uint j = 0u; j < AL; j++)
            D[o + (i * AL + j) * stride] = d[j];
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
    // G^T m (3 x AL), column by column, then (G^T m) G (3 x 3)
    vec4 e[3][6];
    for (uint j = 0u; j < AL; j++) {
        vec4 m[6], c[3];
        for (uint i = 0u; i < AL; i++)
            m[i] = LOAD4(Mw, o + (i * AL + j) * stride);
        gt(m, c);
        for (uint r = 0u; r < 3u; r++)
            e[r][j] = c[r];
    }
    for (uint r = 0u; r < 3u; r++) {
        vec4 w[3];
        gt(e[r], w);
        for (uint s = 0u; s < 3u; s++)
            Part[pc.y_base + ((r * 3u + s) * pc.A4 * 4u + a) * pc.B4 + b4] = w[s];
    }
}
#endif
