#version 450
// Losses (src/ops/loss.c). One source, variants by define:
//   OP_CE    softmax cross-entropy over channels, i32 targets, optional class weights
//   OP_BCE   binary cross-entropy with logits (stable form), f32 targets like x
//   OP_MSE   squared error, f32 targets like x
//   OP_L1    absolute error (sign(0) = 0), f32 targets like x
//   OP_HINGE the hinge GAN loss max(0, 1 - s*x), s = 2t - 1, f32 targets like x; with
//            HINGE_LINEAR the generator's -s*x. The subgradient at s*x == 1 is 0.
//   OP_SIGMEAN  sigmoid(x) summed, a metric: no targets, no backward variant
//   OP_DICE  soft Dice sums per class: inter[c] = sum p_c*[t==c], card[c] = sum p_c+[t==c]
//   OP_DICE_PREP  pads dy = [dL/dinter[C], dL/dcard[C]] into G = [dinter[cs], dcard[cs]]
//   OP_FOLD  folds each sample's block partials by a fixed tree and adds the per-sample
//            results into the accumulator in sample order; with EXACT (--accumulate
//            exact) the accumulator holds exact elements (include/exact.glsl) and each
//            sample's result is converted and added exactly
// Without BWD a loss variant writes one partial per block of ITEMS * WG items (pixels;
// for BCE/MSE/L1 a pixel's vec4s) of one sample, reduced in a fixed order: each
// invocation adds its ITEMS items in index order, then a shared-memory tree. Blocks
// never span two samples, so a sample's partials do not depend on the batch around it.
// The losses with f32 targets (and sigmoid_mean) are ELTWISE: an item is one vec4.
// With BWD one invocation handles one item and ADDS scale * d(sum)/dx into DX (dice:
// the chain rule from G, no scale); padding channels of DX are written 0.
// Logits are NHWC4 (a pixel is q4 vec4s); targets of CE/Dice are a storage buffer of
// int, read one per pixel; a target that is ignore_index or outside [0, C) is skipped.
//
// variant loss_ce                OP_CE
// variant loss_ce_bwd            OP_CE BWD
// variant loss_bce               OP_BCE ELTWISE
// variant loss_bce_bwd           OP_BCE ELTWISE BWD
// variant loss_mse               OP_MSE ELTWISE
// variant loss_mse_bwd           OP_MSE ELTWISE BWD
// variant loss_l1                OP_L1 ELTWISE
// variant loss_l1_bwd            OP_L1 ELTWISE BWD
// variant loss_hinge             OP_HINGE ELTWISE
// variant loss_hinge_bwd         OP_HINGE ELTWISE BWD
// variant loss_hinge_linear      OP_HINGE HINGE_LINEAR ELTWISE
// variant loss_hinge_linear_bwd  OP_HINGE HINGE_LINEAR ELTWISE BWD
// variant loss_sigmoid_mean      OP_SIGMEAN ELTWISE
// variant loss_dice              OP_DICE
// variant loss_dice_bwd          OP_DICE BWD
// variant loss_dice_prep         OP_DICE_PREP
// variant loss_fold              OP_FOLD
// variant loss_fold_exact        OP_FOLD EXACT
#include "common.glsl"
#include "exact.glsl"

layout(constant_id = 1) const uint ITEMS = 4;

#ifdef OP_FOLD
layout(push_constant) uniform PC {
    uint nsamp;    // samples in this dispatch
    uint B;        // blocks (partials) per sample
    uint V4;       // vec4s per partial
    uint p_base;   // vec4 index of sample 0's first partial in P
    uint acc_base; // index of acc[0] in ACC
    uint Q;        // vec4s per half of the partial (1; dice: q4)
    uint cval;     // values per half of the accumulator (2; dice: C)
} pc;
#else
layout(push_constant) uniform PC {
    uint g0, n0, b0; // fwd: first block of the chunk, its sample and block in the sample
    uint B;          // fwd: blocks per sample
    uint per;        // fwd: items per sample
    uint count;      // fwd: blocks in this chunk; bwd: items in this chunk
    uint x_base;     // vec4 index of the chunk's first item in X
    uint t_base;     // index of its target (T: int for CE/Dice, vec4 for the others)
    uint w_base;     // CE: vec4 index of the aligned-down weights; dice bwd: G
    uint o_base;     // index of the chunk's first partial float (fwd) or DX float (bwd)
    uint q4;         // vec4s per pixel
    uint C;
    int ignore;
    uint w_shift;    // CE: weights' offset inside their first vec4 (dice prep: dy's)
    uint has_w;
    float scale;
    uint t_const;    // f32 targets: 1 when x1 is absent and every target is pc.target
    float target;
} pc;
#endif

const uint P = WG * ITEMS; // items per block
const float NEG_BIG = -3.4028235e38; // -FLT_MAX: masks padding lanes out of a max

#include "wgsum.glsl"

#if defined(OP_FOLD) && defined(EXACT)
IN_BUFFER(0, PART)   // partials (samples, B, V4) vec4
EXACT_BUFFER(1, ACC) // exact accumulator, +=

void main()
{
    uint j = flat_group();
    if (j >= pc.V4)
        return;
    uint t = gl_LocalInvocationID.x;
    uint half_ = j / pc.Q;
    uint c0 = (j % pc.Q) * 4u;
    uvec4 run[4];
    for (uint l = 0u; l < 4u; l++)
        run[l] = t == 0u && c0 + l < pc.cval ? ACC[pc.acc_base + half_ * pc.cval + c0 + l]
                                             : uvec4(0u);
    for (uint s = 0u; s < pc.nsamp; s++) {
        vec4 a = vec4(0.0);
        for (uint b = t; b < pc.B; b += WG)
            a += LOAD4(PART, pc.p_base + (s * pc.B + b) * pc.V4 + j);
        vec4 sample_sum = wg_sum1(a);
        for (uint l = 0u; l < 4u; l++)
            run[l] = exact_add_float(run[l], sample_sum[l]);
    }
    if (t == 0u)
        for (uint l = 0u; l < 4u; l++)
            if (c0 + l < pc.cval)
                ACC[pc.acc_base + half_ * pc.cval + c0 + l] = run[l];
}

#elif defined(OP_FOLD)
IN_BUFFER(0, PART)   // partials (samples, B, V4) vec4
OUT_BUFFER(1, ACC)   // accumulator, +=

void main()
{
    uint j = flat_group();
    if (j >= pc.V4)
        return;
    uint t = gl_LocalInvocationID.x;
    uint half_ = j / pc.Q;
    uint c0 = (j % pc.Q) * 4u;
    vec4 run = vec4(0.0);
    if (t == 0u)
        for (uint l = 0u; l < 4u; l++)
            if (c0 + l < pc.cval)
                run[l] = ACC[pc.acc_base + half_ * pc.cval + c0 + l];
    for (uint s = 0u; s < pc.nsamp; s++) {
        vec4 a = vec4(0.0);
        for (uint b = t; b < pc.B; b += WG)
            a += LOAD4(PART, pc.p_base + (s * pc.B + b) * pc.V4 + j);
        run += wg_sum1(a); // acc = ((acc + p_0) + p_1) + ...
    }
    if (t == 0u)
        for (uint l = 0u; l < 4u; l++)
            if (c0 + l < pc.cval)
                ACC[pc.acc_base + half_ * pc.cval + c0 + l] = run[l];
}

#elif defined(OP_DICE_PREP)
IN_BUFFER(0, DY)     // dy [dinter[C], dcard[C]] from its aligned-down vec4
OUT_BUFFER(1, G)     // [dinter[cs], dcard[cs]], padding 0

void main()
{
    uint i = flat_id();
    uint cs = pc.q4 * 4u;
    if (i >= 2u * cs)
        return;
    uint half_ = i / cs, c = i % cs;
    float v = 0.0;
    if (c < pc.C) {
        uint e = pc.w_shift + half_ * pc.C + c;
        v = LOAD4(DY, pc.w_base + e / 4u)[e % 4u];
    }
    G[pc.o_base + i] = v;
}

#else
IN_BUFFER(0, X)                // x (N,C,H,W) NHWC4
#if defined(OP_CE) || defined(OP_DICE)
layout(set = 0, binding = 1, std430) readonly buffer T_ssbo { int T[]; }; // (N,H,W)
#elif !defined(OP_SIGMEAN)
IN_BUFFER(1, T)                // targets (N,C,H,W) NHWC4
#endif
#if defined(OP_CE) || (defined(OP_DICE) && defined(BWD))
IN_BUFFER(2, W)                // CE: class weights (C); dice bwd: G (2 cs)
OUT_BUFFER(3, O)
#elif defined(OP_SIGMEAN)
OUT_BUFFER(1, O)
#else
OUT_BUFFER(2, O)
#endif

bvec4 chan_live(uint q)
{
    return lessThan(uvec4(q * 4u) + uvec4(0u, 1u, 2u, 3u), uvec4(pc.C));
}

#if defined(OP_CE) || defined(OP_DICE)
bool target_live(int t)
{
    return t != pc.ignore && t >= 0 && t < int(pc.C);
}

// Softmax statistics of the pixel whose first vec4 is at x0: its max m and
// s = sum_c exp(x_c - m), so that p_c = exp(x_c - m) / s.
void pixel_stats(uint x0, out float m, out float s)
{
    m = NEG_BIG;
    for (uint q = 0u; q < pc.q4; q++) {
        vec4 v = mix(vec4(NEG_BIG), LOAD4(X, x0 + q), chan_live(q));
        m = max(m, max(max(v.x, v.y), max(v.z, v.w)));
    }
    s = 0.0;
    for (uint q = 0u; q < pc.q4; q++) {
        vec4 e = mix(vec4(0.0), exp(LOAD4(X, x0 + q) - m), chan_live(q));
        s += (e.x + e.y) + (e.z + e.w);
    }
}

vec4 probs(uint x0, uint q, float m, float s)
{
    return mix(vec4(0.0), exp(LOAD4(X, x0 + q) - m) / s, chan_live(q));
}

vec4 onehot(uint q, int t)
{
    return vec4(equal(uvec4(q * 4u) + uvec4(0u, 1u, 2u, 3u), uvec4(uint(t))));
}

#ifdef OP_CE
float ce_weight(int t)
{
    if (pc.has_w == 0u)
        return 1.0;
    uint e = pc.w_shift + uint(t);
    return LOAD4(W, pc.w_base + e / 4u)[e % 4u];
}
#endif
#endif

#if defined(ELTWISE) && !defined(OP_SIGMEAN)
vec4 target4(uint i)
{
    return pc.t_const != 0u ? vec4(pc.target) : LOAD4(T, pc.t_base + i);
}
#endif

#ifdef ELTWISE
// log(1 + e) for e in [0, 1] without losing e when 1 + e rounds to 1 (Goldberg's trick).
float log1p_small(float e)
{
    float u = 1.0 + e;
    return u == 1.0 ? e : log(u) * (e / (u - 1.0));
}

// sigmoid(x) from exp(-|x|), which cannot overflow
vec4 sigmoid4(vec4 x)
{
    vec4 e = exp(-abs(x));
    return mix(e / (1.0 + e), 1.0 / (1.0 + e), greaterThanEqual(x, vec4(0.0)));
}

vec4 elt_loss(vec4 x, vec4 t)
{
#if defined(OP_BCE)
    vec4 e = exp(-abs(x));
    vec4 sp = vec4(log1p_small(e.x), log1p_small(e.y), log1p_small(e.z), log1p_small(e.w));
    return max(x, vec4(0.0)) - x * t + sp;
#elif defined(OP_MSE)
    return (x - t) * (x - t);
#elif defined(OP_L1)
    return abs(x - t);
#elif defined(OP_HINGE) && defined(HINGE_LINEAR)
    return -(2.0 * t - 1.0) * x;
#elif defined(OP_HINGE)
    return max(vec4(0.0), 1.0 - (2.0 * t - 1.0) * x);
#else
    return sigmoid4(x);
#endif
}

#ifdef BWD
vec4 elt_grad(vec4 x, vec4 t)
{
#if defined(OP_BCE)
    return pc.scale * (sigmoid4(x) - t);
#elif defined(OP_MSE)
    return (2.0 * pc.scale) * (x - t);
#elif defined(OP_L1)
    return pc.scale * sign(x - t);
#elif defined(OP_HINGE) && defined(HINGE_LINEAR)
    return -pc.scale * (2.0 * t - 1.0);
#elif defined(OP_HINGE)
    // 0 at the kink s*x == 1, as relu's backward at 0
    vec4 s = 2.0 * t - 1.0;
    return mix(vec4(0.0), -pc.scale * s, lessThan(s * x, vec4(1.0)));
#endif
}
#endif
#endif

#ifndef BWD
// Item i of this chunk's bound range, item v of its sample: (sum, count).
#if defined(OP_CE)
vec4 item_partial(uint i, uint v)
{
    int t = T[pc.t_base + i];
    if (!target_live(t))
        return vec4(0.0);
    uint x0 = pc.x_base + i * pc.q4;
    float m, s;
    pixel_stats(x0, m, s);
    float xt = LOAD4(X, x0 + uint(t) / 4u)[uint(t) % 4u];
    float w = ce_weight(t);
    return vec4(w * ((m + log(s)) - xt), w, 0.0, 0.0);
}
#elif !defined(OP_DICE)
vec4 item_partial(uint i, uint v)
{
    bvec4 live = chan_live(v % pc.q4); // items are vec4s: v gives the channel quad
#ifdef OP_SIGMEAN
    vec4 t = vec4(0.0);
#else
    vec4 t = target4(i);
#endif
    vec4 l = mix(vec4(0.0), elt_loss(LOAD4(X, pc.x_base + i), t), live);
    vec4 one = mix(vec4(0.0), vec4(1.0), live);
    return vec4((l.x + l.y) + (l.z + l.w), (one.x + one.y) + (one.z + one.w), 0.0, 0.0);
}
#endif

void main()
{
    uint gl = flat_group();
    if (gl >= pc.count)
        return; // the whole workgroup: barriers below stay uniform
    uint t = gl_LocalInvocationID.x;
    uint g = pc.g0 + gl;
    uint n = g / pc.B, b = g % pc.B;
    uint rel0 = (n - pc.n0) * pc.per + b * P - pc.b0 * P; // block's first item in the chunk
#ifdef OP_DICE
    uint V4 = 2u * pc.q4;
    float m[ITEMS], s[ITEMS];
    int tg[ITEMS];
    for (uint k = 0u; k < ITEMS; k++) {
        uint i = b * P + k * WG + t;
        tg[k] = -1;
        m[k] = 0.0;
        s[k] = 1.0;
        if (i < pc.per) {
            int tk = T[pc.t_base + rel0 + k * WG + t];
            if (target_live(tk)) {
                tg[k] = tk;
                pixel_stats(pc.x_base + (rel0 + k * WG + t) * pc.q4, m[k], s[k]);
            }
        }
    }
    for (uint q = 0u; q < pc.q4; q++) {
        vec4 inter = vec4(0.0), card = vec4(0.0);
        for (uint k = 0u; k < ITEMS; k++) {
            if (tg[k] < 0)
                continue;
            vec4 p = probs(pc.x_base + (rel0 + k * WG + t) * pc.q4, q, m[k], s[k]);
            vec4 o = onehot(q, tg[k]);
            inter += p * o;
            card += p + o;
        }
        wg_sum(inter, card, true);
        if (t == 0u)
            for (uint l = 0u; l < 4u; l++) {
                O[pc.o_base + (gl * V4 + q) * 4u + l] = inter[l];
                O[pc.o_base + (gl * V4 + pc.q4 + q) * 4u + l] = card[l];
            }
    }
#else
    vec4 acc = vec4(0.0);
    for (uint k = 0u; k < ITEMS; k++)
        if (b * P + k * WG + t < pc.per)
            acc += item_partial(rel0 + k * WG + t, b * P + k * WG + t);
    acc = wg_sum1(acc);
    if (t == 0u)
        for (uint l = 0u; l < 4u; l++)
            O[pc.o_base + gl * 4u + l] = acc[l];
#endif
}

#else // BWD
void main()
{
    uint i = flat_id();
    if (i >= pc.count)
        return;
#if defined(OP_CE) || defined(OP_DICE)
    int t = T[pc.t_base + i];
    bool live = target_live(t);
    uint x0 = pc.x_base + i * pc.q4;
    float m = 0.0, s = 1.0;
    if (live)
        pixel_stats(x0, m, s);
#if defined(OP_CE)
    float gs = live ? pc.scale * ce_weight(t) : 0.0;
#else
    // sum_j p_j g_j with g_j = dcard[j] + [j == t] dinter[j]
    float pg = 0.0;
    if (live) {
        for (uint q = 0u; q < pc.q4; q++) {
            vec4 p = probs(x0, q, m, s);
            vec4 g = LOAD4(W, pc.w_base + pc.q4 + q) + onehot(q, t) * LOAD4(W, pc.w_base + q);
            pg += dot(p, g);
        }
    }
#endif
    for (uint q = 0u; q < pc.q4; q++) {
        vec4 d = vec4(0.0);
        if (live) {
            vec4 p = probs(x0, q, m, s);
#if defined(OP_CE)
            d = gs * (p - onehot(q, t));
#else
            vec4 g = LOAD4(W, pc.w_base + pc.q4 + q) + onehot(q, t) * LOAD4(W, pc.w_base + q);
            d = p * (g - pg);
#endif
        }
        bvec4 cl = chan_live(q);
        uint o = pc.o_base + (i * pc.q4 + q) * 4u;
        for (uint l = 0u; l < 4u; l++)
            O[o + l] = cl[l] ? O[o + l] + d[l] : 0.0;
    }
#else
    uint q = i % pc.q4; // chunks start at whole pixels
    vec4 d = elt_grad(LOAD4(X, pc.x_base + i), target4(i));
    bvec4 cl = chan_live(q);
    uint o = pc.o_base + i * 4u;
    for (uint l = 0u; l < 4u; l++)
        O[o + l] = cl[l] ? O[o + l] + d[l] : 0.0;
#endif
}
#endif
#endif
