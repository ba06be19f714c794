/* Backward pass of the convolution y = correlate(pad(x), w) + b, 1/2/3-D.
 *
 * Every problem is seen as 3-D (D, H, W), missing leading axes of size 1.
 * No kernel uses atomics and every sum runs in a fixed order, so the same
 * inputs give bit-identical gradients on a device. The transposed weights
 * [G][NCB][FG][KD][KH][KW][CB] come from pack.cl's pack_weights (flipped taps
 * when the forward flips, zero for channels >= CG).
 *
 *   pack_gy           gy -> [N][G][NFB][OD][OH][OW][FB] in ACC_T (zero lanes
 *                     for filters >= FG)
 *   grad_input        gradient w.r.t. the padded input over a box of padded
 *                     positions: a gather over the filters and the taps whose
 *                     windows contain each position (alone, with GX_BIAS, it is
 *                     the transposed convolution). It writes either the
 *                     result directly (constant border: only the interior box
 *                     has a source pixel) or a padded ACC_T temporary
 *   fold_border       adjoint of the border map: each source pixel sums the
 *                     padded positions that copy it, in ascending order; the
 *                     host passes the preimage lists per axis (CSR tables)
 *   grad_weight_partial
 *                     grad-weight (and grad-bias) sums over a fixed block of
 *                     (n, od, oh) rows each
 *   reduce_partials   sums the partial blocks in ascending order, unflips,
 *                     stores grad-weight and grad-bias
 *
 * Operands are addressed by element strides (channels-first, channels-last,
 * non-contiguous). All index arithmetic is 64-bit; the kernels have no
 * barrier, so padded work-items simply return. */
#include "common.h"

#ifndef GY_T
#define GY_T OUT_T
#endif
#ifndef GY_HALF
#define GY_HALF CLCONV_OUT_HALF
#endif
#if GY_HALF != 0 && GY_HALF != 1
#error "GY_HALF must be 0 or 1"
#endif
#ifndef CB
#define CB 8
#endif
#if !CLCONV_VEC_WIDTH(CB)
#error "CB (input channels per grad-input work-item) must be 1, 2, 4, 8 or 16"
#endif
#ifndef PB
#define PB 4
#endif
#if PB < 1 || PB > 16
#error "PB (padded columns per grad-input work-item) must be in 1..16"
#endif
#ifndef FB
#define FB 8
#endif
#if !CLCONV_VEC_WIDTH(FB)
#error "FB (filters per grad-weight work-item) must be 1, 2, 4, 8 or 16"
#endif
#ifndef KWB
#define KWB 4
#endif
#if KWB < 1 || KWB > 8
#error "KWB (taps along W per grad-weight work-item) must be in 1..8"
#endif
#ifndef CWB
#define CWB 1
#endif
#if CWB < 1 || CWB > 8
#error "CWB (input channels per grad-weight work-item) must be in 1..8"
#endif
#ifndef WG
#define WG 64
#endif
#ifndef WG_X
#define WG_X 8
#endif
#ifndef WG_Y
#define WG_Y 4
#endif
/* GX_BIAS=1: grad_input starts every channel's sum at bias[channel] (ACC_T): the
 * transposed convolution's bias, added where its output is written. */
#ifndef GX_BIAS
#define GX_BIAS 0
#endif

/* Derived: non-constant borders write the padded gradient to a temporary
 * that fold_border reduces; the host passes BORDER=0 when nothing is padded. */
#define GX_TEMP (BORDER != BORDER_CONSTANT)

#define LOAD_GY(p, i) CLCONV_LOAD(GY_HALF, p, i)

/* Vectors of CB channels (grad-input) and FB filters (grad-weight). */
#define CVEC_T CLCONV_VEC(CB)
#define CVLOAD(p) CLCONV_VLOAD(CB, CVEC_T, p)
#define CVSTORE(v, p) CLCONV_VSTORE(CB, v, p)
#define FVEC_T CLCONV_VEC(FB)
#define FVLOAD(p) CLCONV_VLOAD(FB, FVEC_T, p)
#define FVSTORE(v, p) CLCONV_VSTORE(FB, v, p)

#if GX_TEMP
#define GX_T ACC_T
#define STORE_GX(p, i, v) ((p)[i] = (v))
#else
#define GX_T OUT_T
#define STORE_GX(p, i, v) STORE_OUT(p, i, v)
#endif

/* ---- operand packing (the transposed weights come from pack.cl) --------- */

/* Splits a flat index of a D x H x W box into (d, h, w); 32-bit divisions
 * (several times cheaper) whenever the box has fewer than 2^31 elements. */
inline void split3(const long p, const long box, const long H, const long W,
                   long *d, long *h, long *w)
{
    if (box < 2147483647L) {
        const int q = (int)p / (int)W;
        *w = (int)p % (int)W;
        *h = q % (int)H;
        *d = q / (int)H;
    } else {
        const long q = p / W;
        *w = p % W;
        *h = q % H;
        *d = q / H;
    }
}

/* global id 0: flat output position of one sample, id 1: (n * G + g) * NFB +
 * fblk. Each work-item writes the FB lanes of one position. */
__kernel CLCONV_VECTOR_STYLE __attribute__((reqd_work_group_size(WG, 1, 1)))
void pack_gy(__global const GY_T *restrict gy, const long gy_off,
             const long gs_n, const long gs_c, const long gs_d, const long gs_h,
             const long gs_w,
             __global ACC_T *restrict out,
             const long OD, const long OH, const long OW,
             const int G, const int FG, const int NFB)
{
    const long pos = get_global_id(0);
    const long z = get_global_id(1);
    const long P = OD * OH * OW;
    if (pos >= P)
        return;
    long od, oh, ow;
    split3(pos, P, OH, OW, &od, &oh, &ow);
    const int fblk = (int)(z % NFB);
    const long ng = z / NFB;
    const long g = ng % G;
    const long n = ng / G;
    __global const GY_T *src = gy + gy_off + n * gs_n + (g * FG + fblk * FB) * gs_c
                             + od * gs_d + oh * gs_h + ow * gs_w;
    const int nf = min(FB, FG - fblk * FB);
    __global ACC_T *dst = out + (z * P + pos) * FB;
    for (int j = 0; j < FB; ++j)
        dst[j] = j < nf ? LOAD_GY(src, j * gs_c) : (ACC_T)(0);
}

/* ---- grad-input ------------------------------------------------------------
 * One work-item: CB input channels x PB consecutive padded columns of one
 * padded row (pd, ph) of one sample and group, inside the box
 * [R0D, R0D + RD) x [R0H, R0H + RH) x [R0W, R0W + RW) of padded positions:
 *   global id 0: block of PB columns, id 1: row of the box, id 2:
 *   (n * G + g) * NCB + channel block.
 * Position p receives gy[o] * w[t] for every tap t with p = o*S + t*D and
 * 0 <= o < O: along each axis p - t*D must be a non-negative multiple of S.
 * Sums run over (kd, kh, f, kw) in that order in every branch. */

/* Along one axis, with q = p - t*D: whether tap t reaches padded position p
 * from an output index (which is q / S). */
inline bool tap_reaches(const long q, const int S, const long O)
{
    return q >= 0 && q % S == 0 && q / S < O;
}

/* The sum every channel of a block starts from: its bias for the transposed
 * convolution (GX_BIAS), else zero. */
#if GX_BIAS
#define GI_START(g, cblk)                                                               \
    ACC_T first[CB];                                                                    \
    for (int j = 0; j < CB; ++j)                                                        \
        first[j] = (cblk) * CB + j < CG ? bias[(g) * CG + (cblk) * CB + j] : (ACC_T)(0); \
    const CVEC_T start = CVLOAD(first)
#else
#define GI_START(g, cblk) const CVEC_T start = (CVEC_T)(0)
#endif
/* Column pb of the block gains grad_output column ow of filter row gf times
 * the tap's weights wv. */
#define GI_MAD(pb, ow) (acc[pb] = (CVEC_T)(LOAD_GY(gf, (ow) * gs_w)) * wv + acc[pb])

__kernel CLCONV_VECTOR_STYLE __attribute__((reqd_work_group_size(WG_X, WG_Y, 1)))
void grad_input(__global const GY_T *restrict gy, const long gy_off,
                const long gs_n, const long gs_c, const long gs_d, const long gs_h,
                const long gs_w,
                __global const ACC_T *restrict wt,
                __global GX_T *restrict gx, const long gx_off,
                const long gxs_n, const long gxs_c, const long gxs_d, const long gxs_h,
                const long gxs_w,
                const long R0D, const long R0H, const long R0W,
                const long RD, const long RH, const long RW,
                const long OD, const long OH, const long OW,
                const int KD, const int KH, const int KW,
                const int SD, const int SH, const int SW,
                const int DD, const int DH, const int DW,
                const int G, const int CG, const int FG, const int NCB,
                __global const ACC_T *restrict bias)
{
    const long wb = get_global_id(0);
    const long row = get_global_id(1);
    const long z = get_global_id(2);
    if (wb * PB >= RW || row >= RD * RH)
        return;
    const int cblk = (int)(z % NCB);
    const long ng = z / NCB;
    const long g = ng % G;
    const long n = ng / G;
    const long pd = R0D + row / RH;
    const long ph = R0H + row % RH;
    const long pw0 = R0W + wb * PB;

    __global const GY_T *gyb = gy + gy_off + n * gs_n + g * FG * gs_c;
    const long taps = (long)KD * KH * KW;
    __global const ACC_T *wg = wt + (g * NCB + cblk) * FG * taps * CB;

    GI_START(g, cblk);
    CVEC_T acc[PB];
    for (int pb = 0; pb < PB; ++pb)
        acc[pb] = start;

    /* Stride 1 and every (column, tap) pair inside [0, OW): no checks. */
    const bool inside = SW == 1 && pw0 - (long)(KW - 1) * DW >= 0 && pw0 + PB - 1 < OW;

    for (int kd = 0; kd < KD; ++kd) {
        const long qd = pd - (long)kd * DD;
        if (!tap_reaches(qd, SD, OD))
            continue;
        const long od = qd / SD;
        for (int kh = 0; kh < KH; ++kh) {
            const long qh = ph - (long)kh * DH;
            if (!tap_reaches(qh, SH, OH))
                continue;
            const long oh = qh / SH;
            __global const GY_T *gr = gyb + od * gs_d + oh * gs_h;
            __global const ACC_T *wk = wg + ((long)kd * KH + kh) * KW * CB;
            for (int f = 0; f < FG; ++f) {
                __global const GY_T *gf = gr + f * gs_c;
                __global const ACC_T *wf = wk + f * taps * CB;
                if (inside) {
                    for (int kw = 0; kw < KW; ++kw) {
                        const CVEC_T wv = CVLOAD(wf + kw * CB);
                        const long q0 = pw0 - (long)kw * DW;
                        for (int pb = 0; pb < PB; ++pb)
                            GI_MAD(pb, q0 + pb);
                    }
                } else if (SW == 1) {   /* range checks only, no division */
                    for (int kw = 0; kw < KW; ++kw) {
                        const CVEC_T wv = CVLOAD(wf + kw * CB);
                        const long q0 = pw0 - (long)kw * DW;
                        for (int pb = 0; pb < PB; ++pb) {
                            const long q = q0 + pb;
                            if (q >= 0 && q < OW)
                                GI_MAD(pb, q);
                        }
                    }
                } else {
                    for (int kw = 0; kw < KW; ++kw) {
                        const CVEC_T wv = CVLOAD(wf + kw * CB);
                        for (int pb = 0; pb < PB; ++pb) {
                            const long q = pw0 + pb - (long)kw * DW;
                            if (tap_reaches(q, SW, OW))
                                GI_MAD(pb, q / SW);
                        }
                    }
                }
            }
        }
    }

    const int c0 = cblk * CB;
    const int nc = min(CB, CG - c0);
    __global GX_T *out = gx + gx_off + n * gxs_n + (g * CG + c0) * gxs_c
                       + (pd - R0D) * gxs_d + (ph - R0H) * gxs_h;
    ACC_T lanes[CB];
    for (int pb = 0; pb < PB; ++pb) {
        const long pw = pw0 + pb;
        if (pw >= R0W + RW)
            break;
        CVSTORE(acc[pb], lanes);
        for (int j = 0; j < nc; ++j)
            STORE_GX(out, j * gxs_c + (pw - R0W) * gxs_w, lanes[j]);
    }
}

/* ---- border fold -------------------------------------------------------------
 * tmp is the contiguous padded gradient [N][C][PDS][PHS][PWS]. The table holds,
 * per axis, CSR lists of the padded positions that copy each source index:
 * offsets at tab[off_X + i .. off_X + i + 1] into positions at tab[pos_X + k].
 * global id 0: flat source pixel (id, ih, iw), id 1: n * C + c. */
__kernel CLCONV_VECTOR_STYLE __attribute__((reqd_work_group_size(WG, 1, 1)))
void fold_border(__global const ACC_T *restrict tmp, __global const int *restrict tab,
                 const int off_d, const int off_h, const int off_w,
                 const int pos_d, const int pos_h, const int pos_w,
                 __global OUT_T *restrict gx, const long gx_off,
                 const long gxs_n, const long gxs_c, const long gxs_d, const long gxs_h,
                 const long gxs_w,
                 const long C, const long ID, const long IH, const long IW,
                 const long PDS, const long PHS, const long PWS)
{
    const long i = get_global_id(0);
    const long nc = get_global_id(1);
    if (i >= ID * IH * IW)
        return;
    long id, ih, iw;
    split3(i, ID * IH * IW, IH, IW, &id, &ih, &iw);
    const long c = nc % C;
    const long n = nc / C;
    __global const ACC_T *src = tmp + nc * PDS * PHS * PWS;
    ACC_T s = (ACC_T)(0);
    for (int a = tab[off_d + id]; a < tab[off_d + id + 1]; ++a) {
        __global const ACC_T *sd = src + (long)tab[pos_d + a] * PHS * PWS;
        for (int b = tab[off_h + ih]; b < tab[off_h + ih + 1]; ++b) {
            __global const ACC_T *sh = sd + (long)tab[pos_h + b] * PWS;
            for (int e = tab[off_w + iw]; e < tab[off_w + iw + 1]; ++e)
                s += sh[tab[pos_w + e]];
        }
    }
    STORE_OUT(gx, gx_off + n * gxs_n + c * gxs_c + id * gxs_d + ih * gxs_h + iw * gxs_w, s);
}

/* ---- grad-weight -------------------------------------------------------------
 * global id 0: item = (((((g * NFB + fblk) * NCWB + cwb) * KD + kd) * KH + kh)
 * * NKWB + kwb), owning FB filters x CWB channels (c0 = cwb * CWB ..) x KWB
 * taps (kw0 = kwb * KWB ..) at (kd, kh); global id 1: split s, the rows
 * [s * RPS, (s + 1) * RPS) of the flat (n, od, oh) row range. Sums run over
 * rows, then ascending ow. Channels beyond CG re-read channel CG - 1 and taps
 * beyond KW are mapped like any other: both are computed, never reduced.
 * part[s][item][cw][tb][j]. The items with cwb = kd = kh = kwb = 0 also sum
 * grad_output alone for grad-bias: partb[s][g][fblk][j]. */
#define NACC (CWB * KWB)

/* The loop over output columns [from, to) of one row (gr: the row's packed
 * grad_output, FB lanes a column): BODY adds column ow's products into acc,
 * gv being the column's grad_output; the items that own the grad-bias sum it
 * too. The three bodies below keep the border maths out of the interior. */
#define GW_COLUMNS(from, to, BODY)                                                      \
    for (long ow = (from); ow < (to); ++ow) {                                           \
        const FVEC_T gv = FVLOAD(gr + ow * FB);                                         \
        BODY;                                                                           \
        if (own_bias)                                                                   \
            accb += gv;                                                                 \
    }
/* The accumulator of channel cw and tap tb gains v times the column's gv. */
#define GW_MAD(cw, tb, v) (acc[(cw) * KWB + (tb)] = (FVEC_T)(v) * gv + acc[(cw) * KWB + (tb)])
/* A row that lies in the constant border: every tap reads the fill value. */
#define GW_FILL_TAPS                                                                    \
    for (int a = 0; a < NACC; ++a)                                                      \
        acc[a] = (FVEC_T)(fill) * gv + acc[a]
/* A column whose taps may leave the row: each mapped by the border rule. */
#define GW_BORDER_TAPS                                                                  \
    for (int tb = 0; tb < KWB; ++tb) {                                                  \
        const long iw = map_border(ow * SW + toff[tb], IW);                             \
        for (int cw = 0; cw < CWB; ++cw)                                                \
            GW_MAD(cw, tb, iw >= 0 ? LOAD_IN(xr, coff[cw] + iw * xs_w) : fill);         \
    }
/* A column whose taps all read inside the row. */
#define GW_INSIDE_TAPS                                                                  \
    for (int cw = 0; cw < CWB; ++cw) {                                                  \
        __global const IN_T *xw = xr + coff[cw] + ow * SW * xs_w;                       \
        for (int tb = 0; tb < KWB; ++tb)                                                \
            GW_MAD(cw, tb, LOAD_IN(xw, toff[tb] * xs_w));                               \
    }

__kernel CLCONV_VECTOR_STYLE __attribute__((reqd_work_group_size(WG, 1, 1)))
void grad_weight_partial(__global const IN_T *restrict x, const long x_off,
                         const long xs_n, const long xs_c, const long xs_d, const long xs_h,
                         const long xs_w,
                         __global const ACC_T *restrict gyp,
                         __global ACC_T *restrict part, const long items,
                         __global ACC_T *restrict partb,
                         const long ID, const long IH, const long IW,
                         const long OD, const long OH, const long OW,
                         const int KD, const int KH, const int NKWB,
                         const int SD, const int SH, const int SW,
                         const int DD, const int DH, const int DW,
                         const long PD, const long PH, const long PW,
                         const int G, const int CG, const int NCWB, const int NFB,
                         const long RPS, const long ROWS, const ACC_T fill)
{
    const long item = get_global_id(0);
    const long s = get_global_id(1);
    if (item >= items)
        return;
    long t = item;
    const int kwb = split_digit(&t, NKWB);
    const int kh = split_digit(&t, KH);
    const int kd = split_digit(&t, KD);
    const int cwb = split_digit(&t, NCWB);
    const int fblk = split_digit(&t, NFB);
    const long g = t;

    long toff[KWB];
    for (int tb = 0; tb < KWB; ++tb)
        toff[tb] = (long)(kwb * KWB + tb) * DW - PW;
    long coff[CWB];
    for (int cw = 0; cw < CWB; ++cw)
        coff[cw] = (long)min(cwb * CWB + cw, CG - 1) * xs_c;
    /* Columns whose every tap reads inside [0, IW): [lo, hi). */
    long lo = toff[0] >= 0 ? 0 : (-toff[0] + SW - 1) / SW;
    const long top = IW - 1 - toff[KWB - 1];
    long hi = top < 0 ? 0 : top / SW + 1;
    lo = min(lo, OW);
    hi = clamp(hi, lo, OW);

    FVEC_T acc[NACC];
    for (int a = 0; a < NACC; ++a)
        acc[a] = (FVEC_T)(0);
    const long per_block = (long)NCWB * KD * KH * NKWB;
    const bool own_bias = item % per_block == 0;
    FVEC_T accb = (FVEC_T)(0);

    const long r0 = s * RPS;
    const long r1 = min(r0 + RPS, ROWS);
    __global const IN_T *xg = x + x_off + g * CG * xs_c;
    for (long r = r0; r < r1; ++r) {
        const long n = r / (OD * OH);
        const long rem = r % (OD * OH);
        const long od = rem / OH;
        const long oh = rem % OH;
        __global const ACC_T *gr = gyp + (((n * G + g) * NFB + fblk) * OD * OH + rem) * OW * FB;
        const long id = map_border(od * SD + (long)kd * DD - PD, ID);
        const long ih = map_border(oh * SH + (long)kh * DH - PH, IH);
        if (id < 0 || ih < 0) {
            GW_COLUMNS(0, OW, GW_FILL_TAPS)
            continue;
        }
        __global const IN_T *xr = xg + n * xs_n + id * xs_d + ih * xs_h;
        GW_COLUMNS(0, lo, GW_BORDER_TAPS)
        GW_COLUMNS(lo, hi, GW_INSIDE_TAPS)
        GW_COLUMNS(hi, OW, GW_BORDER_TAPS)
    }
    __global ACC_T *p = part + (s * items + item) * NACC * FB;
    for (int a = 0; a < NACC; ++a)
        FVSTORE(acc[a], p + a * FB);
    if (own_bias)
        FVSTORE(accb, partb + (s * (items / per_block) + item / per_block) * FB);
}

/* Items [0, WTOTAL): gw[f][c][kd][kh][kw] (contiguous, OUT_T) = the sum over
 * s of the partials of the forward's tap (the flipped one when the forward
 * flips). Items [WTOTAL, WTOTAL + G * FG): gb[f] from partb. Blocks s are
 * added in ascending order. */
__kernel CLCONV_VECTOR_STYLE __attribute__((reqd_work_group_size(WG, 1, 1)))
void reduce_partials(__global const ACC_T *restrict part,
                     __global const ACC_T *restrict partb, const long items, const long S,
                     __global OUT_T *restrict gw, __global OUT_T *restrict gb,
                     const long WTOTAL, const int G, const int CG, const int NCWB,
                     const int FG, const int NFB, const int KD, const int KH, const int KW,
                     const int NKWB, const int flip)
{
    const long i = get_global_id(0);
    if (i >= WTOTAL + (long)G * FG)
        return;
    __global const ACC_T *p;
    long step;
    if (i >= WTOTAL) {
        const long f = i - WTOTAL;
        const long g = f / FG;
        const int fl = (int)(f % FG);
        p = partb + (g * NFB + fl / FB) * FB + fl % FB;
        step = (long)G * NFB * FB;
    } else {
        long t = i;
        const int kw = flip_tap(split_digit(&t, KW), KW, flip);
        const int kh = flip_tap(split_digit(&t, KH), KH, flip);
        const int kd = flip_tap(split_digit(&t, KD), KD, flip);
        const int c = split_digit(&t, CG);
        const int f = split_digit(&t, FG);
        const long g = t;
        const long item = ((((g * NFB + f / FB) * NCWB + c / CWB) * KD + kd) * KH + kh)
                        * NKWB + kw / KWB;
        p = part + ((item * CWB + c % CWB) * KWB + kw % KWB) * FB + f % FB;
        step = items * NACC * FB;
    }
    ACC_T s = (ACC_T)(0);
    for (long k = 0; k < S; ++k)
        s += p[k * step];
    if (i >= WTOTAL)
        STORE_OUT(gb, i - WTOTAL, s);
    else
        STORE_OUT(gw, i, s);
}
