#version 450
// batch_norm and group_norm kernels (src/ops/norm.c). Both ops are "one statistic per
// (segment s, index k) over the channels of k and the P pixels of s":
//   batch_norm  S = 1, K = C, one channel per statistic, P = N*H*W
//   group_norm  S = N, K = G, Cg = C/G channels per statistic, P = H*W
// Activations are NHWC4, so a vec4 is 4 channels of one pixel and the per-pixel
// kernels work on lanes = channels. Pixels of a segment are cut into blocks of PB = WG
// * ITEMS; block gb = s * nblk + b.
//   OP_STATS    workgroup (c4, gb): lane sums of x over the block and M2, the sum of
//               squares about the block's own mean; PART = [sum | m2], each (S*nblk, Cs)
//   OP_GRADSUM  workgroup (c4, gb): lane sums of dy and of dy * xhat; PART likewise
//   OP_FIN      invocation (s, k): blocks and channels combined in a fixed order into
//               mean, invstd (saved), running statistics, and COEF = [mean | invstd *
//               gamma | beta], each (S, Cs); with F_EVAL from the running statistics
//   OP_FINBWD   invocation k, looping over s: per-sample channel sums added into
//               dgamma/dbeta in sample order, COEF = [mean | a | b | c], each (S, Cs),
//               dx = a * dy - (x - mean) * b - c; with EXACT (--accumulate exact)
//               dgamma/dbeta are exact elements (include/exact.glsl) and each sample's
//               sums are converted and added exactly
//   OP_APPLY    y = (x - mean) * (invstd * gamma) + beta, padding channels 0
//   OP_DX       dx += a * dy - (x - mean) * b - c, padding channels untouched
//   (both store whole vec4s: four float stores cost lavapipe four lane-by-lane loops)
//   OP_BN1      workgroup c4 of a batch_norm in training whose P pixels are one block:
//               OP_STATS, OP_FIN and OP_APPLY in one dispatch instead of three, with
//               their expressions in their order (the same bits)
// With ACT (an activation the norm applies, vka_layer_norm_act) OP_APPLY writes act(z) of
// the normalised z, and OP_GRADSUM and OP_DX take the gradient of z as dy through the
// activation (include/act.glsl, which act.comp's ops use too), masked where z > 0 (as
// where act(z) > 0): they compute z again from x, mean, a = invstd * gamma and beta with
// the forward's expression (norm_z) and the forward's operands, so they read no y.
// Every sum has a fixed order (no atomics): the same bits on every run; a group_norm
// sample's bits do not depend on the other samples of its micro-batch.
//
// variant norm_stats    OP_STATS
// variant norm_gradsum  OP_GRADSUM
// variant norm_fin      OP_FIN
// variant norm_finbwd   OP_FINBWD
// variant norm_finbwd_exact  OP_FINBWD EXACT
// variant norm_apply    OP_APPLY
// variant norm_bn1      OP_BN1
// variant norm_dx       OP_DX
#include "common.glsl"
#include "exact.glsl"
#include "act.glsl"

layout(constant_id = 1) const uint ITEMS = 4;
const uint PB = WG * ITEMS;
// enum vka_norm_act: 0 none, 1 relu, 2 leaky_relu (pc.slope)
layout(constant_id = 2) const uint ACT = 0;
// OP_DX: 1 in place, dx is dy's memory (dy is read as DX's old value and dx = zero + d).
// A constant: the other pipeline alone reads DX, a lane-by-lane loop on lavapipe.
layout(constant_id = 3) const uint INPLACE = 0;

vec4 act_fwd(vec4 z, float slope)
{
    return ACT == 1u ? relu_fwd(z) : ACT == 2u ? leaky_relu_fwd(z, slope) : z;
}

// dy through the activation at z (with slope >= 0, act(z) > 0 exactly where z > 0)
vec4 act_bwd(vec4 dy, vec4 z, float slope)
{
    return ACT == 1u ? relu_bwd(z, dy) : ACT == 2u ? leaky_relu_bwd(z, dy, slope) : dy;
}

// The normalised value (x - mean) * a + beta, a = invstd * gamma: OP_APPLY's, and the
// backward's again for the activation's mask. precise (no multiply-add contraction):
// every kernel rounds it the same way, so the masks agree bit for bit.
vec4 norm_z(vec4 x, vec4 mean, vec4 a, vec4 beta)
{
    precise vec4 z = (x - mean) * a + beta;
    return z;
}

// y of one vec4 of x: z, 0 in padding channels (live false), through the activation
vec4 apply_vec4(vec4 x, vec4 mean, vec4 a, vec4 beta, bvec4 live, float slope)
{
    vec4 z = mix(vec4(0.0), norm_z(x, mean, a, beta), live);
    return ACT != 0u ? act_fwd(z, slope) : z;
}

// OP_STATS's sums over a block of n pixels whose pixel i is X[at + i * step] (every
// invocation gets them): sum_ of x, and m2_ of the squares about the block's own mean
#define BLOCK_STATS(sum_, m2_, at, step, n)                                               \
    {                                                                                     \
        uint t_ = gl_LocalInvocationID.x;                                                 \
        for (uint k = 0u; k < ITEMS && k * WG < (n); k++) {                               \
            uint i = k * WG + t_;                                                         \
            if (i < (n))                                                                  \
                sum_ += LOAD4(X, (at) + i * (step));                                      \
        }                                                                                 \
        sum_ = wg_sum1(sum_);                                                             \
        vec4 bmean_ = sum_ / float(n);                                                    \
        for (uint k = 0u; k < ITEMS && k * WG < (n); k++) {                               \
            uint i = k * WG + t_;                                                         \
            if (i < (n)) {                                                                \
                vec4 d = LOAD4(X, (at) + i * (step)) - bmean_;                            \
                m2_ += d * d;                                                             \
            }                                                                             \
        }                                                                                 \
        m2_ = wg_sum1(m2_);                                                               \
    }

// flags
const uint F_GAMMA = 1u, F_BETA = 2u, F_MEAN = 4u, F_ISTD = 8u, F_RMEAN = 16u,
           F_RVAR = 32u, F_EVAL = 64u, F_DGAMMA = 128u, F_DBETA = 256u;

#if defined(OP_STATS) || defined(OP_GRADSUM)

layout(push_constant) uniform PC {
    uint c4s;        // vec4s per pixel
    uint C;
    uint K, Cg;      // statistics per segment, channels per statistic
    uint P;          // pixels per segment
    uint nblk;       // blocks per segment
    uint gb0;        // first block of this dispatch
    uint q0;         // first pixel of the bound x/dy range
    uint x_base;     // vec4 index of (q0, channel 0) in X
    uint dy_base;    // the same in DY
    uint gbs;        // S * nblk
    uint part_base;  // element index of PART[0]
    uint mean_base, istd_base;
    uint flags;      // F_EVAL: ISTD holds the running variance
    float eps;
    uint gamma_base, beta_base; // OP_GRADSUM with ACT (flags F_GAMMA, F_BETA: given)
    float slope;
} pc;

IN_BUFFER(0, X)
#ifdef OP_GRADSUM
IN_BUFFER(1, DY)
OUT_BUFFER(2, MEAN)
OUT_BUFFER(3, ISTD)
OUT_BUFFER(4, PART)
OUT_BUFFER(5, GAMMA)
OUT_BUFFER(6, BETA)
#else
OUT_BUFFER(1, PART)
#endif

#include "wgsum.glsl"

// The loops over a block's pixels stop after its last one (k * WG < n, the same for the
// whole workgroup): a batch_norm of a few pixels per channel (DCGAN's 4 x 4 layers) would
// otherwise run ITEMS iterations of masked loads. The sums are the same.
void main()
{
    uint t = gl_LocalInvocationID.x;
    // channel vec4s along x, which lavapipe runs first: a block's workgroups run one after
    // the other and find its pixels (a pixel's channel vec4s lie side by side) in the cache
    uint gb = pc.gb0 + gl_WorkGroupID.y;
    uint c4 = gl_WorkGroupID.x;
    uint s = gb / pc.nblk, first = (gb - s * pc.nblk) * PB;
    uint n = min(PB, pc.P - first);
    uint rel = (s * pc.P + first - pc.q0) * pc.c4s + c4; // vec4 of the block's pixel 0
    vec4 a = vec4(0.0), b = vec4(0.0);
#ifdef OP_STATS
    BLOCK_STATS(a, b, pc.x_base + rel, pc.c4s, n)
#else
    vec4 mean = vec4(0.0), istd = vec4(0.0), gamma = vec4(1.0), beta = vec4(0.0);
    for (uint j = 0u; j < 4u; j++) {
        uint c = c4 * 4u + j;
        if (c < pc.C) {
            uint at = s * pc.K + c / pc.Cg;
            float v = ISTD[pc.istd_base + at];
            mean[j] = MEAN[pc.mean_base + at];
            istd[j] = (pc.flags & F_EVAL) != 0u ? 1.0 / sqrt(v + pc.eps) : v;
            if (ACT != 0u && (pc.flags & F_GAMMA) != 0u)
                gamma[j] = GAMMA[pc.gamma_base + c];
            if (ACT != 0u && (pc.flags & F_BETA) != 0u)
                beta[j] = BETA[pc.beta_base + c];
        }
    }
    vec4 za = istd * gamma; // OP_FIN's coefficient a (and OP_FINBWD's)
    for (uint k = 0u; k < ITEMS && k * WG < n; k++) {
        uint i = k * WG + t;
        if (i < n) {
            vec4 dy = LOAD4(DY, pc.dy_base + rel + i * pc.c4s);
            vec4 x = LOAD4(X, pc.x_base + rel + i * pc.c4s);
            if (ACT != 0u)
                dy = act_bwd(dy, norm_z(x, mean, za, beta), pc.slope);
            a += dy;
            b += dy * ((x - mean) * istd);
        }
    }
    wg_sum(a, b, true);
#endif
    if (t == 0u) {
        uint o0 = pc.part_base + (gb * pc.c4s + c4) * 4u;
        uint o1 = o0 + pc.gbs * pc.c4s * 4u;
        for (uint j = 0u; j < 4u; j++) {
            PART[o0 + j] = a[j];
            PART[o1 + j] = b[j];
        }
    }
}

#elif defined(OP_FIN) || defined(OP_FINBWD) || defined(OP_BN1)

layout(push_constant) uniform PC {
    uint c4s, C;
    uint S, K, Cg;
    uint P, nblk;
    uint flags;
    float eps, momentum;
    uint part_base;   // vec4 index of PART[0]
    uint gamma_base, beta_base, mean_base, istd_base;
    uint r0_base, r1_base;  // OP_FIN: running mean, var; OP_FINBWD: dgamma, dbeta
    uint coef_base;
    uint x_base, y_base;    // OP_BN1: vec4 indices of x and y
    float slope;            // OP_BN1
} pc;

#ifdef OP_BN1
IN_BUFFER(0, X)
#else
IN_BUFFER(0, PART)
#endif
OUT_BUFFER(1, GAMMA)
#if defined(OP_FIN) || defined(OP_BN1)
OUT_BUFFER(2, BETA)
OUT_BUFFER(3, MEAN)
OUT_BUFFER(4, ISTD)
OUT_BUFFER(5, RMEAN)
OUT_BUFFER(6, RVAR)
#ifdef OP_BN1
OUT_BUFFER4(7, Y)
#else
OUT_BUFFER(7, COEF)
#endif
#else
OUT_BUFFER(2, MEAN)
OUT_BUFFER(3, ISTD)
#ifdef EXACT
EXACT_BUFFER(4, DGAMMA)
EXACT_BUFFER(5, DBETA)
#else
OUT_BUFFER(4, DGAMMA)
OUT_BUFFER(5, DBETA)
#endif
OUT_BUFFER(6, COEF)
#endif

#ifdef OP_BN1
#include "wgsum.glsl"
vec4 bsum[2]; // the workgroup's one block's sums, which OP_STATS would write to PART
float part(uint j, uint gb, uint c)
{
    return bsum[j][c & 3u];
}
#else
// PART array j (0: first sum, 1: second), block gb, channel c
float part(uint j, uint gb, uint c)
{
    return LOAD4(PART, pc.part_base + (j * pc.S * pc.nblk + gb) * pc.c4s + c / 4u)[c & 3u];
}
#endif

float gamma_at(uint c)
{
    return (pc.flags & F_GAMMA) != 0u ? GAMMA[pc.gamma_base + c] : 1.0;
}

#if defined(OP_FIN) || defined(OP_BN1)
// Statistic (s, k): its mean (mean_out) and 1 / sqrt(var + eps), returned; the blocks'
// sums combined in a fixed order, or with F_EVAL the running statistics. In training,
// where `write`, the saved statistics and the running ones are written.
float fin_stat(uint s, uint k, bool write, out float mean_out)
{
    uint id = s * pc.K + k;
    uint c0 = k * pc.Cg;
    float M = float(pc.P) * float(pc.Cg);
    precise float mean, var;
    if ((pc.flags & F_EVAL) != 0u) {
        mean = RMEAN[pc.r0_base + k];
        var = RVAR[pc.r1_base + k];
    } else {
        precise float sum = 0.0, m2 = 0.0;
        for (uint c = c0; c < c0 + pc.Cg; c++)
            for (uint b = 0u; b < pc.nblk; b++)
                sum += part(0u, s * pc.nblk + b, c);
        mean = sum / M;
        // Chan et al.: M2 = sum over blocks of M2_b + n_b * (mean_b - mean)^2
        for (uint c = c0; c < c0 + pc.Cg; c++)
            for (uint b = 0u; b < pc.nblk; b++) {
                float nb = float(min(PB, pc.P - b * PB));
                float d = part(0u, s * pc.nblk + b, c) / nb - mean;
                m2 += part(1u, s * pc.nblk + b, c) + nb * d * d;
            }
        var = m2 / M;
    }
    float istd = 1.0 / sqrt(var + pc.eps);
    if ((pc.flags & F_EVAL) == 0u && write) {
        if ((pc.flags & F_MEAN) != 0u)
            MEAN[pc.mean_base + id] = mean;
        if ((pc.flags & F_ISTD) != 0u)
            ISTD[pc.istd_base + id] = istd;
        float m = pc.momentum;
        if ((pc.flags & F_RMEAN) != 0u)
            RMEAN[pc.r0_base + k] = (1.0 - m) * RMEAN[pc.r0_base + k] + m * mean;
        if ((pc.flags & F_RVAR) != 0u)
            RVAR[pc.r1_base + k] = (1.0 - m) * RVAR[pc.r1_base + k] + m * (var * (M / (M - 1.0)));
    }
    mean_out = mean;
    return istd;
}

// The apply's coefficients of channel c: a = invstd * gamma, and beta
float coef_a(uint c, float istd)
{
    return istd * gamma_at(c);
}

float coef_beta(uint c)
{
    return (pc.flags & F_BETA) != 0u ? BETA[pc.beta_base + c] : 0.0;
}
#endif

#ifdef OP_FIN
void main()
{
    uint id = flat_id();
    if (id >= pc.S * pc.K)
        return;
    uint s = id / pc.K, k = id - s * pc.K;
    float mean;
    float istd = fin_stat(s, k, true, mean);
    uint o = pc.coef_base + s * 3u * pc.c4s * 4u;
    for (uint c = k * pc.Cg; c < (k + 1u) * pc.Cg; c++) {
        COEF[o + c] = mean;
        COEF[o + pc.c4s * 4u + c] = coef_a(c, istd);
        COEF[o + 2u * pc.c4s * 4u + c] = coef_beta(c);
    }
}
#elif defined(OP_BN1)
// One workgroup per channel vec4 of a batch_norm (S = 1, Cg = 1) in training whose P
// pixels are one block (P <= PB): OP_STATS's sums, every invocation OP_FIN's statistics
// of its four channels (the first writing the saved and running ones), then OP_APPLY's y
// of the block's pixels: no PART or COEF in memory, one dispatch instead of three.
void main()
{
    uint c4 = gl_WorkGroupID.x, t = gl_LocalInvocationID.x;
    vec4 a = vec4(0.0), b = vec4(0.0);
    BLOCK_STATS(a, b, pc.x_base + c4, pc.c4s, pc.P)
    bsum[0] = a;
    bsum[1] = b;
    vec4 mean = vec4(0.0), ca = vec4(0.0), beta = vec4(0.0);
    for (uint j = 0u; j < 4u; j++) {
        uint c = c4 * 4u + j;
        if (c < pc.C) {
            float m;
            float istd = fin_stat(0u, c, t == 0u, m);
            mean[j] = m;
            ca[j] = coef_a(c, istd);
            beta[j] = coef_beta(c);
        }
    }
    bvec4 live = lessThan(uvec4(c4 * 4u) + uvec4(0u, 1u, 2u, 3u), uvec4(pc.C));
    for (uint k = 0u; k < ITEMS && k * WG < pc.P; k++) {
        uint i = k * WG + t;
        if (i < pc.P) {
            uint v = c4 + i * pc.c4s;
            Y[pc.y_base + v] = apply_vec4(LOAD4(X, pc.x_base + v), mean, ca, beta, live, pc.slope);
        }
    }
}
#else
void main()
{
    uint k = flat_id();
    if (k >= pc.K)
        return;
    uint c0 = k * pc.Cg;
    float M = float(pc.P) * float(pc.Cg);
    uint cs = pc.c4s * 4u;
    for (uint s = 0u; s < pc.S; s++) {
        uint at = s * pc.K + k;
        float mean = MEAN[pc.mean_base + at], istd = ISTD[pc.istd_base + at];
        if ((pc.flags & F_EVAL) != 0u)
            istd = 1.0 / sqrt(istd + pc.eps);
        precise float mg = 0.0, mgx = 0.0;
        for (uint c = c0; c < c0 + pc.Cg; c++) {
            precise float sdy = 0.0, sdyx = 0.0;
            for (uint b = 0u; b < pc.nblk; b++) {
                sdy += part(0u, s * pc.nblk + b, c);
                sdyx += part(1u, s * pc.nblk + b, c);
            }
            // the per-sample partials, added in sample order
#ifdef EXACT
            if ((pc.flags & F_DGAMMA) != 0u)
                DGAMMA[pc.r0_base + c] = exact_add_float(DGAMMA[pc.r0_base + c], sdyx);
            if ((pc.flags & F_DBETA) != 0u)
                DBETA[pc.r1_base + c] = exact_add_float(DBETA[pc.r1_base + c], sdy);
#else
            if ((pc.flags & F_DGAMMA) != 0u)
                DGAMMA[pc.r0_base + c] += sdyx;
            if ((pc.flags & F_DBETA) != 0u)
                DBETA[pc.r1_base + c] += sdy;
#endif
            float g = gamma_at(c);
            mg += g * sdy;
            mgx += g * sdyx;
        }
        if ((pc.flags & F_EVAL) != 0u) {
            mg = 0.0; // the running statistics do not depend on x
            mgx = 0.0;
        }
        mg /= M;
        mgx /= M;
        uint o = pc.coef_base + s * 4u * cs;
        for (uint c = c0; c < c0 + pc.Cg; c++) {
            COEF[o + c] = mean;
            COEF[o + cs + c] = istd * gamma_at(c);
            COEF[o + 2u * cs + c] = istd * istd * mgx;
            COEF[o + 3u * cs + c] = istd * mg;
        }
    }
}
#endif

#else // OP_APPLY, OP_DX

layout(push_constant) uniform PC {
    uint n4;         // vec4s in this chunk
    uint e0;         // vec4 index of the chunk's first vec4 in the tensor
    uint c4s, C;
    uint P;          // pixels per segment (a segment has its own coefficients)
    uint x_base, dy_base, coef_base; // vec4 indices
    uint out_base;   // element index of y / dx (a whole vec4's: both are stored as vec4s)
    float zero;      // OP_DX in place: 0.0 (a constant the compiler cannot fold: zero + d
                     // keeps d's bits as the += into a dx filled with +0 does)
    uint ppi;        // pixels per invocation (below)
    uint beta_base;  // OP_DX with ACT and beta (flags F_BETA)
    uint flags;
    float slope;
} pc;

IN_BUFFER(0, X)
#ifdef OP_DX
IN_BUFFER(1, DY)
IN_BUFFER(2, COEF)
OUT_BUFFER4(3, DX)
OUT_BUFFER(4, BETA)
#else
IN_BUFFER(1, COEF)
OUT_BUFFER4(2, Y)
#endif

// One invocation: pc.ppi consecutive pixels of one channel vec4, all in one segment, so
// their coefficients are read once (src/ops/norm.c picks pc.ppi: segments and chunks
// come in whole groups of it)
void main()
{
    uint id = flat_id();
    uint c4 = id % pc.c4s, q0 = id / pc.c4s * pc.ppi; // q0: the chunk's pixel
    uint npix = pc.n4 / pc.c4s;
    if (q0 >= npix)
        return;
    uint s = (pc.e0 / pc.c4s + q0) / pc.P;
    bvec4 live = lessThan(uvec4(c4 * 4u) + uvec4(0u, 1u, 2u, 3u), uvec4(pc.C));
    // COEF of (s, c4): [mean | a | b | c] (dx) or [mean | a = invstd * gamma | beta]
#ifdef OP_DX
    uint at = pc.coef_base + s * 4u * pc.c4s + c4;
    vec4 mean = LOAD4(COEF, at), a = LOAD4(COEF, at + pc.c4s);
    vec4 b = LOAD4(COEF, at + 2u * pc.c4s), c = LOAD4(COEF, at + 3u * pc.c4s);
    vec4 beta = vec4(0.0);
    for (uint j = 0u; j < 4u; j++)
        if (ACT != 0u && (pc.flags & F_BETA) != 0u && c4 * 4u + j < pc.C)
            beta[j] = BETA[pc.beta_base + c4 * 4u + j];
#else
    uint at = pc.coef_base + s * 3u * pc.c4s + c4;
    vec4 mean = LOAD4(COEF, at), a = LOAD4(COEF, at + pc.c4s), beta = LOAD4(COEF, at + 2u * pc.c4s);
#endif
    for (uint k = 0u; k < pc.ppi && q0 + k < npix; k++) {
        uint i = (q0 + k) * pc.c4s + c4; // the chunk's vec4
        vec4 x = LOAD4(X, pc.x_base + i);
#ifdef OP_DX
        uint o = pc.out_base / 4u + i;
        // in place, dy is also DX's old value: read once, on the input path (on lavapipe a
        // storage load is a lane-by-lane loop, a texel fetch a gather)
        vec4 dy = LOAD4(DY, pc.dy_base + i);
        vec4 old = INPLACE != 0u ? dy : DX[o]; // the dx added into
        if (ACT != 0u)
            dy = act_bwd(dy, norm_z(x, mean, a, beta), pc.slope);
        vec4 d = a * dy - (x - mean) * b - c;
        DX[o] = mix(old, (INPLACE != 0u ? vec4(pc.zero) : old) + d, live);
#else
        Y[pc.out_base / 4u + i] = apply_vec4(x, mean, a, beta, live, pc.slope);
#endif
    }
}

#endif
