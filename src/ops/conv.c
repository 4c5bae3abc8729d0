/* conv2d, conv_transpose2d and linear, forward and backward, as the implicit GEMMs of
 * shaders/conv.comp. Weights are VKA_LAYOUT_WEIGHT tensors: PyTorch's logical shape,
 * stored [R][S][round4(C)][round4(N)] so that the reduction runs along whole vec4s.
 *
 * Which kernel does what ("gather" = GEOM 0, "scatter" = GEOM 1; x small side for convT):
 *   conv2d            fwd: gather(x, w)          dx: scatter(dy, w^T)    dw: wgrad(x, dy)
 *   conv_transpose2d  fwd: scatter(x, w^T)       dx: gather(dy, w)       dw: wgrad(dy, x)
 *   linear            conv2d with R = S = H = W = 1
 * w^T is w itself read the other way round (the GEMMs' WT specialization: no copy).
 * The GEMMs come in two variants that give the same bits: register-blocked (every
 * invocation loads its own weights: lavapipe) and tiled (a workgroup stages the weights
 * in shared memory: GPUs), picked by the profile's conv_tiles.
 * dw and db are reduced per sample over fixed 4096-pixel chunks and added into the
 * accumulator in sample order (conv_reduce), so they do not depend on the micro-batch.
 * An exact accumulator (VKA_EXACT, --accumulate exact) takes each sample's sum converted
 * exactly (conv_reduce_exact); for the images of one chunk, whose dw otherwise continues
 * one chain over the samples (conv_wgrad_direct), conv_wgrad_direct_exact starts each
 * sample's chain at 0 and adds its sum exactly in the same invocation: no partials.
 *
 * conv2d with a 3x3 kernel and stride 1 (a U-Net's layers from 64 channels) runs as
 * Winograd F(m x m, 3x3) where both sides have WINO_MIN_C channels, the image
 * WINO_MIN_PIXELS and the profile's winograd is on (shaders/winograd.comp): the filter,
 * the input tiles and the outputs are transformed by kernels of their own and the
 * (m+2)^2 products in between are conv_gemm0's 1x1 GEMMs: 16 multiplies per 2x2 outputs
 * (m = 2) or 36 per 4x4 (m = 4: the backward, from WINO4_MIN_PIXELS) where the direct GEMM
 * takes 36 or 144. The forward and the input gradient so; the weight gradient
 * as F(3x3, m x m), each sample's sums over its tiles conv_wgrad's 1x1 chains, its dw then
 * added as the chunked path's partials are (reduce). Each result is still one fixed
 * computation of its sample's values (micro-batches and the tile chunks below do not
 * change it); its rounding differs from the direct GEMM's (tests/opcases.c states the
 * bounds). */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "log.h"
#include "ops/basic.h"
#include "ops/ops.h"

enum {
    TM = 16,              /* pixels per GEMM invocation; a-channels per wgrad invocation */
    WGRAD_CHUNK = 4096,   /* pixels per per-sample partial of dw and db */
    WGRAD_PART_BYTES = 32 << 20, /* the most a weight gradient's per-sample partials
                                    take (whole samples: at least one) */
    TILE_A = 32,          /* weight rows per shared-memory tile (TA4 vec4s in conv.comp) */
    TILE_BYTES = 16384,   /* most shared memory a tile takes: Vulkan's guaranteed minimum,
                             and small enough for several workgroups per GPU core */
    MIN_GROUPS = 16,      /* workgroups a weight gradient is cut into where it can be */
    WINO_MIN_C = 64,      /* channels on both sides of a Winograd conv2d: with fewer the
                             transforms' memory passes cost what the GEMMs save (32 -> 32
                             at 256x256 ran 0.7-0.8x as fast as the direct GEMM) */
    WINO_MIN_PIXELS = 256, /* input pixels of a Winograd conv2d (16x16): smaller images
                              have too few tiles for 16 GEMM dispatches and the filter's
                              transform (the default job's 8x8 and 4x4 64- and 128-channel
                              layers ran 1.2x slower) */
    WINO4_MIN_PIXELS = 4096, /* input pixels from which a Winograd conv2d's backward (input
                                and weight gradients) takes F(4x4, 3x3) (64x64): there it
                                took 0.63-0.82x the time of F(2x2, 3x3), at 32x32 and
                                16x16 0.9-1.4x (too few tiles per GEMM to fill the cores).
                                The forward keeps F(2x2, 3x3): its larger rounding, where a
                                norm follows on features of small variance, moved the
                                gradients of tools/parity/accum.py --depth 1 --width 64
                                from 4.9e-6 to 1.3e-4 of PyTorch's float64 */
    WINO_BYTES = 16 << 20, /* at most this many bytes each of transformed input tiles (V)
                              and products (M) per chunk of tiles */
};

struct conv_push {
    uint32_t N, H, W, A4;
    uint32_t P, Q, B4;
    uint32_t R, S;
    uint32_t sh, sw, ph, pw;
    uint32_t oh0, ow0, Pc, Qc;
    uint32_t x_base, w_base, b_base, y_base;
    uint32_t m0, m_count;
    uint32_t o0;
    uint32_t flags, chunk, aux;
    uint32_t ncls;
};

/* A GEMM's geometry: the source tensor (N, H, W, A channels) is read at
 * o*stride - pad + r (gather) from output pixels o of (P, Q) with B channels. */
struct geom {
    uint32_t N, H, W, A, P, Q, B, R, S, sh, sw, ph, pw;
};

static uint32_t div4(uint32_t c)
{
    return (c + 3) / 4;
}

/* Output vec4s per invocation, of the GEMMs (b4: output vec4s) and the weight gradients
 * (b4: the pixel operand's vec4s). On lavapipe 4 was measured 10-20 % faster than 2 from
 * 64 output channels, and faster from 32 too (bench ops, conv_transpose2d 64->32
 * forward: 9.5-17.5 GFLOP/s with 2, 20-28 with 4); the weight gradients used 2 before
 * and 4 measured faster on every bench ops shape. Blocking never changes an element's
 * multiply-add chain, so the bits do not depend on it. */
static uint32_t tn4_for(uint32_t b4)
{
    return b4 >= 8 || b4 == 4 ? 4 : b4 >= 2 ? 2 : 1;
}

static void push_geom(struct conv_push *pc, const struct geom *g)
{
    *pc = (struct conv_push){
        .N = g->N, .H = g->H, .W = g->W, .A4 = div4(g->A),
        .P = g->P, .Q = g->Q, .B4 = div4(g->B), .R = g->R, .S = g->S,
        .sh = g->sh, .sw = g->sw, .ph = g->ph, .pw = g->pw, .ncls = 1,
    };
}

/* A workgroup size for n invocations: the profile's, halved (down to the subgroup size,
 * at least 8) while that gives fewer than MIN_GROUPS workgroups, so that a small
 * dispatch still spreads over the device's cores (lavapipe runs a workgroup on one
 * thread: conv_transpose2d 64->32 at 64x64 made one workgroup of dw on two cores). */
static uint32_t wg_for(struct vka_ctx *ctx, uint64_t n)
{
    uint32_t wg = ctx->profile.wg_size, floor = ctx->info.subgroup_size;
    if (floor < 8)
        floor = 8;
    while (wg > floor && (n + wg - 1) / wg < MIN_GROUPS)
        wg /= 2;
    return wg;
}

static int pipe_wg(struct vka_ctx *ctx, const char *shader, uint32_t nbind, uint32_t tm,
                   uint32_t tn4, uint32_t wg, struct vka_pipe **pipe)
{
    struct vka_pipe_params pp = {
        .shader = shader, .nbind = nbind, .push_size = sizeof(struct conv_push),
        .nspec = 2, .spec = { tm, tn4 }, .wg_size = wg,
    };
    for (uint32_t i = 0; i < nbind; i++)
        pp.bind[i] = i + 1 < nbind ? VKA_BIND_IN : VKA_BIND_OUT;
    return vka_pipe_get(ctx, &pp, pipe);
}

static int pipe_for(struct vka_ctx *ctx, const char *shader, uint32_t nbind, uint32_t tn4,
                    struct vka_pipe **pipe)
{
    return pipe_wg(ctx, shader, nbind, TM, tn4, 0, pipe);
}

/* The GEMM's pipeline, untiled: spec ids 1 TM, 2 TN4, 3 TKB (tiled only), 4 WT, 5 ACCUM
 * (y += rather than =: a constant, so that the other pipeline reads no y). */
static int pipe_gemm(struct vka_ctx *ctx, int scatter, uint32_t tn4, bool wt, bool accum,
                     struct vka_pipe **pipe)
{
    struct vka_pipe_params pp = {
        .shader = scatter ? "conv_gemm1" : "conv_gemm0", .nbind = 4,
        .bind = { VKA_BIND_IN, VKA_BIND_IN, VKA_BIND_IN, VKA_BIND_OUT },
        .push_size = sizeof(struct conv_push), .nspec = 5, .spec = { TM, tn4, 1, wt, accum },
    };
    return vka_pipe_get(ctx, &pp, pipe);
}

/* The tiled GEMM's workgroup (the profile's size, a power of two) holds tkb
 * output-channel blocks by wg/tkb pixel blocks: tkb is the power of two that covers the
 * nkb blocks while the weight tile fits (one block's tile, 2 KiB at most, is within
 * Vulkan's 16 KiB minimum). Only tn4 and tkb vary, so few pipelines are built: seven
 * (tn4, tkb) pairs can occur per geometry. */
static int pipe_tiled(struct vka_ctx *ctx, int scatter, uint32_t tn4, uint32_t nkb, bool wt,
                      bool accum, struct vka_pipe **pipe, uint32_t *tkb_out)
{
    uint32_t tkb = 1;
    uint32_t limit = ctx->props.limits.maxComputeSharedMemorySize;
    if (limit > TILE_BYTES)
        limit = TILE_BYTES;
    while (tkb < nkb && tkb * 2 <= ctx->profile.wg_size &&
           (uint64_t)TILE_A * tkb * 2 * tn4 * 16 <= limit)
        tkb *= 2;
    struct vka_pipe_params pp = {
        .shader = scatter ? "conv_gemm1_tiled" : "conv_gemm0_tiled", .nbind = 4,
        .bind = { VKA_BIND_IN, VKA_BIND_IN, VKA_BIND_IN, VKA_BIND_OUT },
        .push_size = sizeof(struct conv_push), .nspec = 5,
        .spec = { TM, tn4, tkb, wt, accum },
    };
    *tkb_out = tkb;
    return vka_pipe_get(ctx, &pp, pipe);
}

/* One GEMM dispatch of n invocations: output pixels [m0, m0 + mc) of the class grid,
 * y bound from output pixel first to last. */
static int gemm_range(struct vka_cmd *cmd, struct vka_pipe *pipe, struct vka_binding b[4],
                      struct conv_push *pc, const struct vka_tensor *y, uint64_t m0,
                      uint64_t mc, uint64_t first, uint64_t last, uint64_t n)
{
    uint32_t base;
    int ret = vka_op_bind_out(vka_cmd_ctx(cmd), y, first * pc->B4 * 4,
                              (last - first + 1) * pc->B4 * 4, &b[3], &base);
    if (ret < 0)
        return ret;
    pc->y_base = base / 4;
    pc->o0 = (uint32_t)first;
    pc->m0 = (uint32_t)m0;
    pc->m_count = (uint32_t)mc;
    return vka_cmd_dispatch_1d(cmd, pipe, b, pc, n);
}

/* y (N, P, Q, B) = (or +=) gather/scatter of x by w (RSAB4 of A x B; with wt, w is
 * stored the other way round, RSAB4 of B x A), plus bias. */
static int gemm(struct vka_cmd *cmd, const struct geom *g0, int scatter, bool wt,
                const struct vka_tensor *x, const struct vka_tensor *w,
                const struct vka_tensor *bias, const struct vka_tensor *y, bool accumulate)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    /* A scatter from a single unpadded row (DCGAN's first layer, 1x1 -> 4x4; the input
     * gradient of a convolution down to 1x1): output row oh takes exactly tap r = oh,
     * whatever the stride. With the stride taken as R, each parity class runs that one
     * tap instead of all R, R - 1 of them multiplying zeros into every output. The same
     * non-zero multiply-adds in the same order: the same values (for finite weights).
     * Columns likewise. With the classes in one dispatch (below), gan32's G first layer
     * went from 20 to 5.4 ms of forward per iteration, D's last input gradient from 9.5 to
     * 3.0 (one dispatch per class made the latter slower: 124 -> 304 dispatches). */
    struct geom gs = *g0;
    const struct geom *g = &gs;
    if (scatter && gs.H == 1 && gs.ph == 0)
        gs.sh = gs.R;
    if (scatter && gs.W == 1 && gs.pw == 0)
        gs.sw = gs.S;
    struct conv_push pc;
    push_geom(&pc, g);
    uint32_t tn4 = tn4_for(pc.B4);
    uint32_t nkb = (pc.B4 + tn4 - 1) / tn4;
    uint32_t sh = scatter ? g->sh : 1, sw = scatter ? g->sw : 1;
    uint32_t tkb = 1, wg = ctx->profile.wg_size;
    struct vka_pipe *pipe;
    int ret = ctx->profile.conv_tiles
                  ? pipe_tiled(ctx, scatter, tn4, nkb, wt, accumulate, &pipe, &tkb)
                  : pipe_gemm(ctx, scatter, tn4, wt, accumulate, &pipe);
    if (ret < 0)
        return ret;
    struct vka_binding b[4];
    if ((ret = vka_op_bind_in(ctx, x, 0, vka_tensor_stored(x), &b[0], &pc.x_base)) < 0 ||
        (ret = vka_op_bind_in(ctx, w, 0, vka_tensor_stored(w), &b[1], &pc.w_base)) < 0)
        return ret;
    const struct vka_tensor *bt = bias ? bias : w;
    if ((ret = vka_op_bind_in(ctx, bt, 0, vka_tensor_stored(bt), &b[2], &pc.b_base)) < 0)
        return ret;
    pc.flags = bias ? 1u : 0u;
    pc.aux = g->B;

    /* Output pixels go in ranges whose binding fits the device's storage range. The
     * scatter geometry runs one pass per output parity class (oh0, ow0): every pixel of a
     * class is hit by the same taps r = (oh0 + pad) mod stride (+ stride ...), and a
     * range of a class's pixels spans rows of the output about stride_h * stride_w times
     * its length. Where the classes are alike (the output a whole number of strides) and
     * the output fits one binding, the untiled kernel runs them all in one dispatch
     * (ncls): DCGAN's transposed convolutions and its discriminator's input gradients
     * went from 4 or 16 dispatches to 1 (the tiled kernel stages each class's taps for
     * a whole workgroup, so it keeps one class per dispatch). */
    uint64_t maxpix = (ctx->profile.max_binding - 256) / ((uint64_t)pc.B4 * 16);
    uint64_t npix = (uint64_t)g->N * g->P * g->Q;
    if (scatter && !ctx->profile.conv_tiles && g->P % sh == 0 && g->Q % sw == 0 &&
        npix <= maxpix) {
        pc.ncls = sh * sw;
        pc.Pc = g->P / sh;
        pc.Qc = g->Q / sw;
        uint64_t nmb = ((uint64_t)g->N * pc.Pc * pc.Qc + TM - 1) / TM;
        return gemm_range(cmd, pipe, b, &pc, y, 0, g->N * pc.Pc * pc.Qc, 0, npix - 1,
                          pc.ncls * nmb * nkb);
    }
    for (uint32_t oh0 = 0; oh0 < sh; oh0++)
        for (uint32_t ow0 = 0; ow0 < sw; ow0++) {
            if (oh0 >= g->P || ow0 >= g->Q)
                continue;
            pc.oh0 = oh0;
            pc.ow0 = ow0;
            pc.Pc = (g->P - oh0 + sh - 1) / sh;
            pc.Qc = (g->Q - ow0 + sw - 1) / sw;
            uint64_t M = (uint64_t)g->N * pc.Pc * pc.Qc;
            uint64_t per = maxpix > 2ull * g->Q * sh ? (maxpix - 2ull * g->Q * sh) / (sh * sw) : 0;
            per -= per % TM;
            if (per == 0)
                per = TM; /* a row longer than the binding: vka_op_bind_out reports it */
            for (uint64_t m0 = 0; m0 < M; m0 += per) {
                uint64_t mc = M - m0 < per ? M - m0 : per;
                /* the first and last output pixels of the range */
                uint64_t first, last;
                for (int e = 0; e < 2; e++) {
                    uint64_t m = e ? m0 + mc - 1 : m0;
                    uint64_t ww = m % pc.Qc, hh = m / pc.Qc % pc.Pc, n = m / pc.Qc / pc.Pc;
                    uint64_t o = (n * g->P + oh0 + hh * sh) * g->Q + ow0 + ww * sw;
                    *(e ? &last : &first) = o;
                }
                uint64_t nmb = (mc + TM - 1) / TM, n = nmb * nkb;
                if (ctx->profile.conv_tiles) {
                    uint64_t mbg = wg / tkb; /* pixel blocks per workgroup */
                    n = (nmb + mbg - 1) / mbg * ((nkb + tkb - 1) / tkb) * wg;
                }
                ret = gemm_range(cmd, pipe, b, &pc, y, m0, mc, first, last, n);
                if (ret < 0)
                    return ret;
            }
        }
    return 0;
}

/* acc (vec4s) += per-sample sums of part[n][chunk][per], samples in order (an exact acc:
 * each sample's sum converted and added exactly). */
static int reduce(struct vka_cmd *cmd, const struct vka_tensor *part, uint32_t N,
                  uint32_t nchunks, uint32_t per, const struct vka_tensor *acc)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    struct vka_pipe *pipe;
    struct conv_push pc = { .N = N, .chunk = nchunks, .aux = per,
                            .m_count = (uint32_t)vka_tensor_stored(acc) };
    struct vka_binding b[2];
    uint32_t base;
    bool exact = acc->dtype == VKA_EXACT;
    int ret = pipe_for(ctx, exact ? "conv_reduce_exact" : "conv_reduce", 2, 1, &pipe);
    if (ret < 0 ||
        (ret = vka_op_bind_in(ctx, part, 0, (uint64_t)N * nchunks * per * 4, &b[0],
                              &pc.x_base)) < 0 ||
        (ret = exact ? vka_op_bind_exact(ctx, acc, 0, vka_tensor_stored(acc), &b[1], &base)
                     : vka_op_bind_out(ctx, acc, 0, vka_tensor_stored(acc), &b[1], &base)) < 0)
        return ret;
    if (acc->off % 4) {
        vka_err("conv: a gradient accumulator starts at element %" PRIu64 ", not a vec4",
                acc->off);
        return -EINVAL;
    }
    pc.y_base = exact ? base : base / 4;
    return vka_cmd_dispatch_1d(cmd, pipe, b, &pc, per);
}

/* dw (RSAB4 of A x B) += sum over samples of sum over pixels o of (P, Q):
 * gsrc[n, o*stride - pad + r, a] * dpix[n, o, b] */
static int wgrad(struct vka_cmd *cmd, const struct geom *g0, const struct vka_tensor *gsrc,
                 const struct vka_tensor *dpix, const struct vka_tensor *dw)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    bool exact = dw->dtype == VKA_EXACT;
    struct geom g1 = *g0;
    const struct geom *g = &g1;
    /* linear (1x1 images, 1x1 kernel), ordered: the samples as the pixels of one image,
     * which has the same memory. The chain is the same (every sample's one multiply-add,
     * in sample order: the same bits), but the kernel's pixels come in pairs, two
     * multiply-adds per load and store of an accumulator where a sample alone gave one.
     * Up to one image's pixels; a larger batch keeps the per-sample form (the same chain).
     * Exact mode converts each sample's sum, so it keeps the samples apart. */
    if (!exact && g1.H == 1 && g1.W == 1 && g1.P == 1 && g1.Q == 1 && g1.R == 1 &&
        g1.S == 1 && g1.ph == 0 && g1.pw == 0 && g1.N > 1 && g1.N <= WGRAD_CHUNK) {
        g1.W = g1.Q = g1.N;
        g1.N = 1;
    }
    struct conv_push pc;
    push_geom(&pc, g);
    /* a-rows per invocation: TM, or all of a small A (an RGB image's 4) rather than rows
     * of padding; each element's chain is the same either way */
    uint32_t tn4 = tn4_for(pc.B4), ta4 = pc.A4 < TM / 4 ? pc.A4 : TM / 4;
    uint32_t nab = (pc.A4 + ta4 - 1) / ta4, nbb = (pc.B4 + tn4 - 1) / tn4;
    uint32_t pq = g->P * g->Q, nchunks = (pq + WGRAD_CHUNK - 1) / WGRAD_CHUNK;
    uint32_t per = g->R * g->S * pc.A4 * 4 * pc.B4;
    /* Images of one chunk continue one multiply-add chain from dw's value through the
     * samples in order (the "direct" kernel): micro-batches continue it where the whole
     * batch would (exact: each sample's sum added exactly by the same invocation).
     * Larger images keep per-(sample, chunk) partials that conv_reduce adds in sample
     * order. Which way depends on the image size only, never on the batch. */
    bool direct = nchunks == 1;
    struct vka_pipe *pipe;
    struct vka_binding b[3];
    uint32_t base;
    uint64_t grid = (uint64_t)nchunks * g->R * g->S * nab * nbb; /* invocations a sample */
    const char *shader = !direct ? "conv_wgrad" : exact ? "conv_wgrad_direct_exact"
                                                        : "conv_wgrad_direct";
    pc.chunk = WGRAD_CHUNK;
    pc.aux = g->A;
    if (direct) {
        int ret = pipe_wg(ctx, shader, 3, ta4 * 4, tn4, wg_for(ctx, grid), &pipe);
        if (ret < 0 ||
            (ret = vka_op_bind_in(ctx, gsrc, 0, vka_tensor_stored(gsrc), &b[0], &pc.x_base)) < 0 ||
            (ret = vka_op_bind_in(ctx, dpix, 0, vka_tensor_stored(dpix), &b[1], &pc.w_base)) < 0 ||
            (ret = exact ? vka_op_bind_exact(ctx, dw, 0, vka_tensor_stored(dw), &b[2], &base)
                         : vka_op_bind_out(ctx, dw, 0, vka_tensor_stored(dw), &b[2], &base)) < 0)
            return ret;
        if (dw->off % 4) {
            vka_err("conv: a weight gradient starts at element %" PRIu64 ", not a vec4", dw->off);
            return -EINVAL;
        }
        pc.y_base = exact ? base : base / 4;
        return vka_cmd_dispatch_1d(cmd, pipe, b, &pc, grid);
    }
    /* The partials of a group of samples at a time, within WGRAD_PART_BYTES and the
     * storage range (a 1024x1024 level's are 9 MiB a sample), each group's reduced into
     * dw before the next group's: conv_reduce adds the samples in order, so the groups
     * continue one chain (the bits of a single group), and the workspace stays the same
     * whatever the micro-batch. */
    uint64_t sample_floats = (uint64_t)nchunks * per * 4;
    uint64_t gs_per = (uint64_t)g->H * g->W * pc.A4 * 4, dp_per = (uint64_t)pq * pc.B4 * 4;
    uint64_t room = ctx->profile.max_binding - 256 < WGRAD_PART_BYTES
                        ? ctx->profile.max_binding - 256 : WGRAD_PART_BYTES;
    uint32_t group = (uint32_t)(room / 4 / sample_floats);
    group = group < 1 ? 1 : group > g->N ? g->N : group;
    struct vka_tensor part;
    int ret = vka_op_scratch(cmd, group * sample_floats, &part);
    if (ret < 0 ||
        (ret = pipe_wg(ctx, shader, 3, ta4 * 4, tn4, wg_for(ctx, group * grid), &pipe)) < 0)
        return ret;
    for (uint32_t n0 = 0; n0 < g->N; n0 += group) {
        uint32_t cnt = g->N - n0 < group ? g->N - n0 : group;
        pc.N = cnt;
        if ((ret = vka_op_bind_in(ctx, gsrc, n0 * gs_per, cnt * gs_per, &b[0], &pc.x_base)) < 0 ||
            (ret = vka_op_bind_in(ctx, dpix, n0 * dp_per, cnt * dp_per, &b[1], &pc.w_base)) < 0 ||
            (ret = vka_op_bind_out(ctx, &part, 0, cnt * sample_floats, &b[2], &base)) < 0)
            return ret;
        pc.y_base = base / 4;
        if ((ret = vka_cmd_dispatch_1d(cmd, pipe, b, &pc, cnt * grid)) < 0 ||
            (ret = reduce(cmd, &part, cnt, nchunks, per, dw)) < 0)
            return ret;
    }
    return 0;
}

/* db (B) += sum over samples of sum over pixels of d[n, o, :] */
static int bgrad(struct vka_cmd *cmd, uint32_t N, uint32_t P, uint32_t Q, uint32_t B,
                 const struct vka_tensor *d, const struct vka_tensor *db)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    uint32_t nchunks = (P * Q + WGRAD_CHUNK - 1) / WGRAD_CHUNK;
    struct conv_push pc = { .N = N, .P = P, .Q = Q, .B4 = div4(B), .chunk = WGRAD_CHUNK };
    struct vka_tensor part;
    struct vka_pipe *pipe;
    struct vka_binding b[2];
    uint32_t base;
    int ret = vka_op_scratch(cmd, (uint64_t)N * nchunks * pc.B4 * 4, &part);
    if (ret < 0 || (ret = pipe_for(ctx, "conv_bgrad", 2, 1, &pipe)) < 0 ||
        (ret = vka_op_bind_in(ctx, d, 0, vka_tensor_stored(d), &b[0], &pc.w_base)) < 0 ||
        (ret = vka_op_bind_out(ctx, &part, 0, vka_tensor_stored(&part), &b[1], &base)) < 0)
        return ret;
    if ((ret = vka_cmd_dispatch_1d(cmd, pipe, b, &pc, (uint64_t)N * nchunks * pc.B4)) < 0)
        return ret;
    return reduce(cmd, &part, N, nchunks, pc.B4, db);
}

/* ---- Winograd F(m x m, 3x3) -------------------------------------------------------- */

struct wino_push {
    uint32_t N, H, W, A4;
    uint32_t P, Q, B4;
    uint32_t TH, TW;
    uint32_t ph, pw;
    uint32_t t0, count;
    uint32_t x_base, w_base, y_base;
    uint32_t flags, aux;
    uint32_t o0;
};

uint32_t vka_conv2d_winograd_tile(const struct vka_conv_desc *d, uint32_t c, uint32_t k,
                                  uint32_t r, uint32_t s, uint32_t h, uint32_t w,
                                  bool backward)
{
    if (!(r == 3 && s == 3 && d->stride[0] == 1 && d->stride[1] == 1 && d->pad[0] <= 2 &&
          d->pad[1] <= 2 && c >= WINO_MIN_C && k >= WINO_MIN_C &&
          (uint64_t)h * w >= WINO_MIN_PIXELS))
        return 0;
    return backward && (uint64_t)h * w >= WINO4_MIN_PIXELS ? 4 : 2;
}

/* conv2d's g (source x): by its shape only, never the batch, so that every split of a
 * batch takes the same path */
static uint32_t use_wino(struct vka_cmd *cmd, const struct vka_op_args *a, const struct geom *g,
                         bool backward)
{
    return vka_cmd_ctx(cmd)->profile.winograd
               ? vka_conv2d_winograd_tile(&a->p.conv, g->A, g->B, g->R, g->S, g->H, g->W,
                                          backward)
               : 0;
}

static int wino_pipe(struct vka_ctx *ctx, const char *shader, uint32_t m, uint32_t nbind,
                     struct vka_pipe **pipe)
{
    struct vka_pipe_params pp = { .shader = shader, .nbind = nbind,
                                  .push_size = sizeof(struct wino_push), .nspec = 1,
                                  .spec = { m } };
    for (uint32_t i = 0; i < nbind; i++)
        pp.bind[i] = i + 1 < nbind ? VKA_BIND_IN : VKA_BIND_OUT;
    return vka_pipe_get(ctx, &pp, pipe);
}

/* The push constants every Winograd kernel of geometry g with m x m output tiles shares:
 * the tensors' shapes, the tile grid per sample and the padding. */
static struct wino_push wino_geom(const struct geom *g, uint32_t m)
{
    return (struct wino_push){ .N = g->N, .H = g->H, .W = g->W, .A4 = div4(g->A),
                               .P = g->P, .Q = g->Q, .B4 = div4(g->B),
                               .TH = (g->P + m - 1) / m, .TW = (g->Q + m - 1) / m,
                               .ph = g->ph, .pw = g->pw };
}

/* Block i of a FLAT run of equal blocks of `floats` elements in t's buffer. */
static struct vka_tensor block_of(const struct vka_tensor *t, uint64_t i, uint64_t floats)
{
    return vka_tensor_flat(t->buf, t->off + i * floats, floats);
}

/* Tiles per chunk whose npos transformed blocks of `vec4s` vec4s (the wider side) fit
 * WINO_BYTES and one binding. */
static uint64_t wino_chunk(const struct vka_ctx *ctx, uint32_t npos, uint32_t vec4s)
{
    uint64_t maxb = ctx->profile.max_binding - 256;
    return (WINO_BYTES < maxb ? WINO_BYTES : maxb) / ((uint64_t)npos * vec4s * 16);
}

/* A tile transform (wino_in, wino_dy) of the chunk's pc->count tiles of src, c4 vec4s a
 * pixel, into dst's npos blocks. */
static int wino_tiles(struct vka_cmd *cmd, struct vka_pipe *pipe, struct wino_push *pc,
                      uint32_t npos, const struct vka_tensor *src,
                      const struct vka_tensor *dst, uint32_t c4)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    struct vka_binding b[2];
    uint32_t base;
    int ret;
    if ((ret = vka_op_bind_in(ctx, src, 0, vka_tensor_stored(src), &b[0], &pc->x_base)) < 0 ||
        (ret = vka_op_bind_out(ctx, dst, 0, (uint64_t)pc->count * npos * c4 * 4, &b[1],
                               &base)) < 0)
        return ret;
    pc->y_base = base / 4;
    return vka_cmd_dispatch_1d(cmd, pipe, b, pc, (uint64_t)pc->count * c4);
}

/* y (N, P, Q, B) = (or +=) the 3x3, stride 1 convolution of x (N, H, W, A) padded by
 * ph, pw with w (RSAB4 of A x B; flip: RSAB4 of B x A, read rotated by 180 degrees and
 * transposed: conv2d's input gradient), plus bias, as Winograd F(m x m, 3x3). The tiles
 * (n, th, tw) of m x m output pixels go in chunks whose transformed inputs (V) and
 * products (M) take at most WINO_BYTES each and whose output rows fit one binding. */
static int wino(struct vka_cmd *cmd, const struct geom *g, uint32_t m, bool flip,
                const struct vka_tensor *x, const struct vka_tensor *w,
                const struct vka_tensor *bias, const struct vka_tensor *y, bool accumulate)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    uint32_t A4 = div4(g->A), B4 = div4(g->B), npos = (m + 2) * (m + 2);
    struct wino_push pc = wino_geom(g, m);
    uint64_t ntiles = (uint64_t)g->N * pc.TH * pc.TW;
    uint64_t maxb = ctx->profile.max_binding - 256;
    uint64_t chunk = wino_chunk(ctx, npos, A4 > B4 ? A4 : B4);
    /* the output rows of a chunk: m per tile row it touches */
    uint64_t out_row = (uint64_t)g->Q * B4 * 16;
    while (chunk > 1 && ((chunk + pc.TW - 1) / pc.TW + 1) * m * out_row > maxb)
        chunk = chunk > pc.TW ? chunk - pc.TW : chunk / 2;
    if (chunk < 1)
        chunk = 1; /* a tile wider than a binding: vka_op_bind_out reports it */
    if (chunk > ntiles)
        chunk = ntiles;
    struct vka_tensor U, V, M;
    struct vka_pipe *pf, *pin, *pout;
    struct vka_binding b[3];
    uint32_t base;
    int ret;
    if ((ret = vka_op_scratch(cmd, (uint64_t)npos * A4 * 4 * B4 * 4, &U)) < 0 ||
        (ret = vka_op_scratch(cmd, chunk * npos * A4 * 4, &V)) < 0 ||
        (ret = vka_op_scratch(cmd, chunk * npos * B4 * 4, &M)) < 0 ||
        (ret = wino_pipe(ctx, "wino_filter", m, 2, &pf)) < 0 ||
        (ret = wino_pipe(ctx, "wino_in", m, 2, &pin)) < 0 ||
        (ret = wino_pipe(ctx, "wino_out", m, 3, &pout)) < 0)
        return ret;

    /* U = G g G^T: npos RSAB4 blocks of A x B, as many per dispatch as one binding holds */
    uint64_t ublock = (uint64_t)A4 * 4 * B4 * 4, per = maxb / (ublock * 4);
    if (per < 1)
        per = 1; /* a block larger than a binding: vka_op_bind_out reports it */
    pc.flags = flip ? 1u : 0u;
    for (uint64_t ij = 0; ij < npos; ij += per) {
        uint64_t n = npos - ij < per ? npos - ij : per;
        if ((ret = vka_op_bind_in(ctx, w, 0, vka_tensor_stored(w), &b[0], &pc.x_base)) < 0 ||
            (ret = vka_op_bind_out(ctx, &U, ij * ublock, n * ublock, &b[1], &base)) < 0)
            return ret;
        pc.w_base = base / 4;
        pc.t0 = (uint32_t)ij;
        pc.count = (uint32_t)n;
        if ((ret = vka_cmd_dispatch_1d(cmd, pf, b, &pc, (uint64_t)A4 * 4 * B4)) < 0)
            return ret;
    }
    pc.flags = 0;

    struct geom gg = { 1, 1, 0, A4 * 4, 1, 0, B4 * 4, 1, 1, 1, 1, 0, 0 };
    for (uint64_t t0 = 0; t0 < ntiles; t0 += chunk) {
        uint64_t count = ntiles - t0 < chunk ? ntiles - t0 : chunk;
        pc.t0 = (uint32_t)t0;
        pc.count = (uint32_t)count;
        /* V = B^T d B of the chunk's tiles */
        if ((ret = wino_tiles(cmd, pin, &pc, npos, x, &V, A4)) < 0)
            return ret;
        /* M[ij] = V[ij] U[ij], npos GEMMs of count x A by A x B */
        gg.W = gg.Q = (uint32_t)count;
        for (uint64_t ij = 0; ij < npos; ij++) {
            struct vka_tensor xv = block_of(&V, ij, count * A4 * 4);
            struct vka_tensor uv = block_of(&U, ij, ublock);
            struct vka_tensor mv = block_of(&M, ij, count * B4 * 4);
            if ((ret = gemm(cmd, &gg, 0, false, &xv, &uv, NULL, &mv, false)) < 0)
                return ret;
        }
        /* y = A^T M A (+ bias), the output rows of the chunk's tile rows bound */
        uint64_t r0 = t0 / pc.TW, r1 = (t0 + count - 1) / pc.TW; /* tile rows n * TH + th */
        uint64_t oh1 = (r1 % pc.TH) * m + m - 1 < g->P ? (r1 % pc.TH) * m + m - 1 : g->P - 1;
        uint64_t first = ((r0 / pc.TH) * g->P + (r0 % pc.TH) * m) * g->Q;
        uint64_t last = ((r1 / pc.TH) * g->P + oh1) * g->Q + g->Q - 1;
        const struct vka_tensor *bt = bias ? bias : &M;
        if ((ret = vka_op_bind_in(ctx, &M, 0, count * npos * B4 * 4, &b[0], &pc.x_base)) < 0 ||
            (ret = vka_op_bind_in(ctx, bt, 0, vka_tensor_stored(bt), &b[1], &pc.w_base)) < 0 ||
            (ret = vka_op_bind_out(ctx, y, first * B4 * 4, (last - first + 1) * B4 * 4, &b[2],
                                   &base)) < 0)
            return ret;
        pc.y_base = base / 4;
        pc.o0 = (uint32_t)first;
        pc.flags = (bias ? 1u : 0u) | (accumulate ? 2u : 0u);
        pc.aux = g->B;
        if ((ret = vka_cmd_dispatch_1d(cmd, pout, b, &pc, count * B4)) < 0)
            return ret;
        pc.flags = 0;
    }
    return 0;
}

/* dw (RSAB4 of A x B) += for each sample in order, G^T [sum over its tiles t of
 * (A dy_t A^T) . (B^T d_t B)] G (Winograd F(3x3, m x m): the forward's bilinear form read
 * for the weight; x (N, H, W, A) padded by ph, pw, dy (N, P, Q, B)). A sample's tiles go
 * in chunks of at most WGRAD_CHUNK tiles and WINO_BYTES of transforms, each of its
 * (m+2)^2 sums one chain over its tiles in order (conv_wgrad_direct continued from chunk
 * to chunk); its dw block then reaches dw as the chunked path's partials do (reduce: in
 * sample order, or each converted exactly), so micro-batches give the batch's bits. */
static int wino_wgrad(struct vka_cmd *cmd, const struct geom *g, uint32_t m,
                      const struct vka_tensor *x, const struct vka_tensor *dy,
                      const struct vka_tensor *dw)
{
    struct vka_ctx *ctx = vka_cmd_ctx(cmd);
    uint32_t A4 = div4(g->A), B4 = div4(g->B), npos = (m + 2) * (m + 2);
    struct wino_push pc = wino_geom(g, m);
    uint64_t T = (uint64_t)pc.TH * pc.TW, chunk = wino_chunk(ctx, npos, A4 > B4 ? A4 : B4);
    if (chunk > WGRAD_CHUNK)
        chunk = WGRAD_CHUNK;
    if (chunk > T)
        chunk = T;
    if (chunk < 1)
        chunk = 1;
    uint64_t block = (uint64_t)A4 * 4 * B4 * 4;   /* floats of one A x B block */
    struct vka_tensor V, D, Mw, part;
    struct vka_pipe *pin, *pdy, *pout;
    struct vka_binding b[2];
    uint32_t base;
    int ret;
    if ((ret = vka_op_scratch(cmd, chunk * npos * A4 * 4, &V)) < 0 ||
        (ret = vka_op_scratch(cmd, chunk * npos * B4 * 4, &D)) < 0 ||
        (ret = vka_op_scratch(cmd, npos * block, &Mw)) < 0 ||
        (ret = vka_op_scratch(cmd, (uint64_t)g->N * 9 * block, &part)) < 0 ||
        (ret = wino_pipe(ctx, "wino_in", m, 2, &pin)) < 0 ||
        (ret = wino_pipe(ctx, "wino_dy", m, 2, &pdy)) < 0 ||
        (ret = wino_pipe(ctx, "wino_wout", m, 2, &pout)) < 0)
        return ret;
    struct geom gg = { 1, 1, 0, A4 * 4, 1, 0, B4 * 4, 1, 1, 1, 1, 0, 0 };
    for (uint32_t n = 0; n < g->N; n++) {
        if ((ret = vka_fill(cmd, &Mw, 0.0f)) < 0)
            return ret;
        for (uint64_t t0 = 0; t0 < T; t0 += chunk) {
            uint64_t count = T - t0 < chunk ? T - t0 : chunk;
            pc.t0 = (uint32_t)(n * T + t0);
            pc.count = (uint32_t)count;
            /* V = B^T d B and D = A dy A^T of the chunk's tiles */
            if ((ret = wino_tiles(cmd, pin, &pc, npos, x, &V, A4)) < 0 ||
                (ret = wino_tiles(cmd, pdy, &pc, npos, dy, &D, B4)) < 0)
                return ret;
            /* Mw[ij] += V[ij]^T D[ij], npos weight gradients of 1x1 convolutions */
            gg.W = gg.Q = (uint32_t)count;
            for (uint64_t ij = 0; ij < npos; ij++) {
                struct vka_tensor vv = block_of(&V, ij, count * A4 * 4);
                struct vka_tensor dv = block_of(&D, ij, count * B4 * 4);
                struct vka_tensor mv = block_of(&Mw, ij, block);
                if ((ret = wgrad(cmd, &gg, &vv, &dv, &mv)) < 0)
                    return ret;
            }
        }
        /* the sample's dw block = G^T Mw G */
        if ((ret = vka_op_bind_in(ctx, &Mw, 0, npos * block, &b[0], &pc.x_base)) < 0 ||
            (ret = vka_op_bind_out(ctx, &part, n * 9 * block, 9 * block, &b[1], &base)) < 0)
            return ret;
        pc.y_base = base / 4;
        if ((ret = vka_cmd_dispatch_1d(cmd, pout, b, &pc, (uint64_t)A4 * 4 * B4)) < 0)
            return ret;
    }
    return reduce(cmd, &part, g->N, 1, (uint32_t)(9 * block / 4), dw);
}

/* ---- shape rules ----------------------------------------------------------------- */

static int check_desc(const char *op, const struct vka_conv_desc *d, bool transposed)
{
    for (int i = 0; i < 2; i++) {
        if (d->stride[i] == 0) {
            vka_err("%s: stride %u,%u must be at least 1", op, d->stride[0], d->stride[1]);
            return -EINVAL;
        }
        if (transposed && d->out_pad[i] >= d->stride[i]) {
            vka_err("%s: output padding %u,%u must be smaller than the stride %u,%u", op,
                    d->out_pad[0], d->out_pad[1], d->stride[0], d->stride[1]);
            return -EINVAL;
        }
    }
    return 0;
}

/* Checks x, w, b of conv2d/conv_transpose2d and fills g (source x, output y). */
static int conv_geom(const char *op, const struct vka_op_args *a, bool transposed,
                     struct geom *g, uint32_t shape[4])
{
    const struct vka_tensor *x = a->x[0], *w = a->x[1], *b = a->x[2];
    const struct vka_conv_desc *d = &a->p.conv;
    int ret = check_desc(op, d, transposed);
    if (ret < 0 || (ret = vka_op_check(op, "input", x, VKA_LAYOUT_NHWC4, 0, 0, 0, 0)) < 0)
        return ret;
    /* conv2d weight (K, C, R, S); conv_transpose2d weight (C, K, R, S) */
    uint32_t in_c = x->c;
    if ((ret = transposed ? vka_op_check(op, "weight", w, VKA_LAYOUT_WEIGHT, in_c, 0, 0, 0)
                          : vka_op_check(op, "weight", w, VKA_LAYOUT_WEIGHT, 0, in_c, 0, 0)) < 0)
        return ret;
    uint32_t K = transposed ? w->c : w->n, R = w->h, S = w->w;
    if (b && (ret = vka_op_check(op, "bias", b, VKA_LAYOUT_FLAT, K, 1, 1, 1)) < 0)
        return ret;
    int64_t P, Q;
    if (!transposed) {
        P = ((int64_t)x->h + 2 * d->pad[0] - R) / d->stride[0] + 1;
        Q = ((int64_t)x->w + 2 * d->pad[1] - S) / d->stride[1] + 1;
        if ((int64_t)x->h + 2 * d->pad[0] < R || (int64_t)x->w + 2 * d->pad[1] < S)
            P = Q = 0;
    } else {
        P = ((int64_t)x->h - 1) * d->stride[0] - 2 * (int64_t)d->pad[0] + R + d->out_pad[0];
        Q = ((int64_t)x->w - 1) * d->stride[1] - 2 * (int64_t)d->pad[1] + S + d->out_pad[1];
    }
    if (P < 1 || Q < 1) {
        vka_err("%s: input (%u,%u,%u,%u) with a %ux%u kernel, stride %u,%u, padding %u,%u "
                "gives an empty output", op, x->n, x->c, x->h, x->w, R, S, d->stride[0],
                d->stride[1], d->pad[0], d->pad[1]);
        return -EINVAL;
    }
    shape[0] = x->n;
    shape[1] = K;
    shape[2] = (uint32_t)P;
    shape[3] = (uint32_t)Q;
    /* the GEMM geometry: conv2d gathers x (H, W) into y (P, Q); conv_transpose2d is the
     * same map with the big side (P, Q) as the GEMM's "source" */
    if (!transposed)
        *g = (struct geom){ x->n, x->h, x->w, x->c, (uint32_t)P, (uint32_t)Q, K, R, S,
                            d->stride[0], d->stride[1], d->pad[0], d->pad[1] };
    else
        *g = (struct geom){ x->n, (uint32_t)P, (uint32_t)Q, K, x->h, x->w, x->c, R, S,
                            d->stride[0], d->stride[1], d->pad[0], d->pad[1] };
    return 0;
}

/* y, dy and dx: the GEMMs write (and read) them as whole vec4s from their start */
static int check_out(const char *op, const char *name, const struct vka_tensor *t,
                     const uint32_t s[4])
{
    int ret = vka_op_check(op, name, t, VKA_LAYOUT_NHWC4, s[0], s[1], s[2], s[3]);
    if (ret == 0 && t->off % 4) {
        vka_err("%s: %s starts at element %" PRIu64 ", not a vec4", op, name, t->off);
        return -EINVAL;
    }
    return ret;
}

int vka_conv2d_shape(const struct vka_op_args *a, uint32_t shape[4])
{
    struct geom g;
    return conv_geom("conv2d", a, false, &g, shape);
}

int vka_conv_transpose2d_shape(const struct vka_op_args *a, uint32_t shape[4])
{
    struct geom g;
    return conv_geom("conv_transpose2d", a, true, &g, shape);
}

int vka_linear_shape(const struct vka_op_args *a, uint32_t shape[4])
{
    const struct vka_tensor *x = a->x[0], *w = a->x[1], *b = a->x[2];
    int ret = vka_op_check("linear", "input", x, VKA_LAYOUT_NHWC4, 0, 0, 1, 1);
    if (ret < 0 || (ret = vka_op_check("linear", "weight", w, VKA_LAYOUT_WEIGHT, 0, x->c, 1, 1)) < 0 ||
        (b && (ret = vka_op_check("linear", "bias", b, VKA_LAYOUT_FLAT, w->n, 1, 1, 1)) < 0))
        return ret;
    shape[0] = x->n;
    shape[1] = w->n;
    shape[2] = shape[3] = 1;
    return 0;
}

/* ---- recorders --------------------------------------------------------------------- */

static int conv_fwd(struct vka_cmd *cmd, const struct vka_op_args *a, const char *op,
                    bool transposed)
{
    struct geom g;
    uint32_t s[4];
    int ret = conv_geom(op, a, transposed, &g, s);
    if (ret < 0 || (ret = check_out(op, "output", a->y, s)) < 0)
        return ret;
    uint32_t m = transposed ? 0 : use_wino(cmd, a, &g, false);
    if (m)
        return wino(cmd, &g, m, false, a->x[0], a->x[1], a->x[2], a->y, false);
    if (!transposed)
        return gemm(cmd, &g, 0, false, a->x[0], a->x[1], a->x[2], a->y, false);
    /* convT: scatter x (small) into y (big) with the weight read as [rs][in][out] */
    struct geom sg = { g.N, g.P, g.Q, g.B, g.H, g.W, g.A, g.R, g.S, g.sh, g.sw, g.ph, g.pw };
    return gemm(cmd, &sg, 1, true, a->x[0], a->x[1], a->x[2], a->y, false);
}

static int conv_bwd(struct vka_cmd *cmd, const struct vka_op_args *a, const char *op,
                    bool transposed)
{
    struct geom g;
    uint32_t s[4];
    const struct vka_tensor *x = a->x[0], *w = a->x[1];
    const struct vka_tensor *dx = a->dx[0], *dw = a->dx[1], *db = a->dx[2];
    int ret = conv_geom(op, a, transposed, &g, s);
    if (ret < 0 || (ret = check_out(op, "output gradient", a->dy, s)) < 0 ||
        (dx && (ret = check_out(op, "input gradient", dx,
                                (uint32_t[4]){ x->n, x->c, x->h, x->w })) < 0) ||
        (dw && (ret = vka_op_check_acc(op, "weight gradient", dw, VKA_LAYOUT_WEIGHT, w->n,
                                       w->c, w->h, w->w)) < 0) ||
        (db && (ret = vka_op_check_acc(op, "bias gradient", db, VKA_LAYOUT_FLAT, s[1], 1, 1,
                                       1)) < 0))
        return ret;
    /* g: source (H, W, A) -> output (P, Q, B); for conv2d source = x, for convT source =
     * y's side, i.e. dy. The "scatter" geometry sg swaps the two sides. */
    struct geom sg = { g.N, g.P, g.Q, g.B, g.H, g.W, g.A, g.R, g.S, g.sh, g.sw, g.ph, g.pw };
    const struct vka_tensor *dy = a->dy;
    uint32_t m = transposed ? 0 : use_wino(cmd, a, &g, true);
    if (m) {
        /* dx is dy convolved with the kernel rotated and transposed, padded by 2 - pad */
        struct geom wg = { g.N, g.P, g.Q, g.B, g.H, g.W, g.A, 3, 3, 1, 1, 2 - g.ph, 2 - g.pw };
        if (dx && (ret = wino(cmd, &wg, m, true, dy, w, NULL, dx, !a->dx0_fresh)) < 0)
            return ret;
        if (dw && (ret = wino_wgrad(cmd, &g, m, x, dy, dw)) < 0)
            return ret;
    } else if (!transposed) {
        if (dx && (ret = gemm(cmd, &sg, 1, true, dy, w, NULL, dx, !a->dx0_fresh)) < 0)
            return ret;
        if (dw && (ret = wgrad(cmd, &g, x, dy, dw)) < 0)
            return ret;
    } else {
        /* convT's dx is the gather of dy (source, big) into x's side (small) */
        if (dx && (ret = gemm(cmd, &g, 0, false, dy, w, NULL, dx, !a->dx0_fresh)) < 0)
            return ret;
        if (dw && (ret = wgrad(cmd, &g, dy, x, dw)) < 0)
            return ret;
    }
    if (db && (ret = bgrad(cmd, s[0], s[2], s[3], s[1], dy, db)) < 0)
        return ret;
    return 0;
}

int vka_conv2d_fwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    return conv_fwd(cmd, a, "conv2d", false);
}

int vka_conv2d_bwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    return conv_bwd(cmd, a, "conv2d", false);
}

int vka_conv_transpose2d_fwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    return conv_fwd(cmd, a, "conv_transpose2d", true);
}

int vka_conv_transpose2d_bwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    return conv_bwd(cmd, a, "conv_transpose2d", true);
}

/* linear is conv2d with a 1x1 kernel on 1x1 images */
static struct vka_op_args linear_as_conv(const struct vka_op_args *a)
{
    struct vka_op_args c = *a;
    c.p.conv = (struct vka_conv_desc){ .stride = { 1, 1 } };
    return c;
}

int vka_linear_fwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    uint32_t s[4];
    int ret = vka_linear_shape(a, s);
    if (ret < 0)
        return ret;
    struct vka_op_args c = linear_as_conv(a);
    return conv_fwd(cmd, &c, "linear", false);
}

int vka_linear_bwd(struct vka_cmd *cmd, const struct vka_op_args *a)
{
    uint32_t s[4];
    int ret = vka_linear_shape(a, s);
    if (ret < 0)
        return ret;
    struct vka_op_args c = linear_as_conv(a);
    return conv_bwd(cmd, &c, "linear", false);
}
