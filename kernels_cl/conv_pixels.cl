/* Dense layers whose weights outweigh their pixels (late ResNet stages: 7x7
 * or 14x14 outputs, hundreds of channels): a GEMM vectorised along the output
 * pixels, which reads the weights as the caller laid them out.
 *
 * The gemm path vectorises along filters and so needs the weights packed
 * into blocks of filters on every call; with few pixels that packing costs
 * as much as the convolution. Here the pixels of one (sample, group) are
 * first copied into a column matrix col[K][PP] (im2col_pixels, K = CG * KD *
 * KH * KW taps, PP = pixels rounded up to whole blocks, zeros past the last),
 * and conv_pixels computes y[f][p] = sum_k w[f][k] * col[k][p]: per tap, PV
 * vectors of PVW pixels are loaded once and multiplied by FBK weights, each
 * read as a scalar from its filter's own contiguous row of the weight.
 *
 * Weights: [F][CG][KD][KH][KW] contiguous from w + w_off, already flipped
 * for a true convolution (the host packs them with one filter per block
 * otherwise). The input comes border-free (the caller's buffer or pad.cl's
 * scratch), contiguous along W.
 * No barriers; out-of-range work-items return at once. */
#include "common.h"

#ifndef PVW
#define PVW 16
#endif
#if PVW != 4 && PVW != 8 && PVW != 16
#error "PVW (pixels per vector) must be 4, 8 or 16"
#endif
#ifndef PV
#define PV 4
#endif
#if PV < 1 || PV > 8
#error "PV (pixel vectors per work-item) must be in 1..8"
#endif
#ifndef FBK
#define FBK 6
#endif
#if FBK < 1 || FBK > 16
#error "FBK (filters per work-item) must be in 1..16"
#endif
/* VSTORE=1: a block of contiguous output pixels is stored by vstoreN (Intel's
 * CPU compiler scatters lane-by-lane stores; PoCL calls vstoreN out of line
 * and merges the lanes itself). */
#ifndef VSTORE
#define VSTORE 0
#endif
#if VSTORE
#define STORE_PVEC(v, p) CLCONV_CAT(vstore, PVW)(v, 0, p)
#else
#define STORE_PVEC(v, p) CLCONV_VSTORE(PVW, v, p)
#endif
#ifndef CU
#define CU 1
#endif
#ifndef WG_X
#define WG_X 1
#endif
#ifndef WG_Y
#define WG_Y 1
#endif

#define PVEC CLCONV_VEC(PVW)
#define PBLK (PV * PVW)  /* pixels per work-item */

/* col[ng][k][p] = the input value tap k of output pixel p reads; 0 for p >= P.
 * One work-item per (ng, k) row: PP consecutive stores, no division per pixel.
 *   global id 0: tap k (padded to a multiple of WG_X)
 *   global id 1: n * G + g */
__kernel CLCONV_VECTOR_STYLE __attribute__((reqd_work_group_size(WG_X, 1, 1)))
void im2col_pixels(__global const ACC_T *restrict x, const long x_off,
                   const long xs_n, const int xs_c, const int xs_d, const int xs_h,
                   __global ACC_T *restrict col,
                   const int OD, const int OH, const int OW,
                   const int KD, const int KH, const int KW,
                   const int SD, const int SH, const int SW,
                   const int DD, const int DH, const int DW,
                   const int G, const int CG, const int K, const int PP)
{
    const int k = get_global_id(0);
    const int ng = get_global_id(1);
    if (k >= K)
        return;
    long t = k;
    const int kw = split_digit(&t, KW);
    const int kh = split_digit(&t, KH);
    const int kd = split_digit(&t, KD);
    const int c = (int)t;
    const int g = ng % G;
    const long n = ng / G;
    __global const ACC_T *src = x + x_off + n * xs_n + (long)(g * CG + c) * xs_c
                              + kd * DD * xs_d + kh * DH * xs_h + kw * DW;
    __global ACC_T *o = col + ((long)ng * K + k) * PP;
    int p = 0;
    for (int od = 0; od < OD; ++od) {
        for (int oh = 0; oh < OH; ++oh) {
            __global const ACC_T *r = src + od * SD * xs_d + oh * SH * xs_h;
            for (int ow = 0; ow < OW; ++ow)
                o[p + ow] = r[ow * SW];
            p += OW;
        }
    }
    for (; p < PP; ++p)
        o[p] = (ACC_T)(0);
}

/* y[n][g * FG + f][p] = bias + sum_k w[g * FG + f][k] * col[n][g][k][p], where
 * col[n][g][k] starts at col + col_off + n * col_sn + g * col_sg + k * col_sk.
 * With COLS_DIRECT=0 that is im2col_pixels' matrix (PP pixels per row, zeros
 * past P, aligned rows); with COLS_DIRECT=1 it is the input itself (a 1x1
 * kernel of stride 1 reads pixel p of channel k: the host passes the input's
 * offset and strides), whose rows need not be aligned and end at P, so the
 * last block is moved back to end at pixel P (P >= PBLK) and stores only the
 * pixels no other block stores.
 *   global id 0: block of PBLK pixels (padded to a multiple of WG_X)
 *   global id 1: block of FBK filters of the group (padded to WG_Y)
 *   global id 2: n * G + g */
#ifndef COLS_DIRECT
#define COLS_DIRECT 0
#endif
#if COLS_DIRECT
#define LOAD_COL(p) CLCONV_VLOAD(PVW, PVEC, p)
#else
#define LOAD_COL(p) (*(__global const PVEC *)(p))
#endif
__kernel CLCONV_VECTOR_STYLE __attribute__((reqd_work_group_size(WG_X, WG_Y, 1)))
void conv_pixels(__global const ACC_T *restrict col, const long col_off, const long col_sn,
                 const long col_sg, const long col_sk,
                 __global const ACC_T *restrict w, const long w_off,
                 __global const ACC_T *restrict bias, const int has_bias,
                 __global OUT_T *restrict y, const long y_off,
                 const long ys_n, const long ys_c, const long ys_d, const long ys_h,
                 const long ys_w,
                 const int OH, const int OW, const int P,
                 const int G, const int FG, const int K)
{
    const int first = get_global_id(0) * PBLK;  /* the first pixel this item stores */
    const int f0 = get_global_id(1) * FBK;
    const int ng = get_global_id(2);
    if (first >= P || f0 >= FG)
        return;
#if COLS_DIRECT
    const int p0 = CLCONV_MIN(first, P - PBLK);
#else
    const int p0 = first;
#endif
    const int g = ng % G;
    const long n = ng / G;
    /* From im2col_pixels, PP is a whole number of blocks and col starts
     * aligned: aligned loads. */
    __global const ACC_T *cb = col + col_off + n * col_sn + g * col_sg + p0;
    __global const ACC_T *wf = w + w_off + (long)(g * FG + f0) * K;
    /* Filters past the group's last read its last row again; never stored. */
    int wrow[FBK];
#pragma unroll
    for (int j = 0; j < FBK; ++j)
        wrow[j] = CLCONV_MIN(j, FG - 1 - f0) * K;

    PVEC acc[FBK][PV];
#pragma unroll
    for (int j = 0; j < FBK; ++j) {
#pragma unroll
        for (int v = 0; v < PV; ++v)
            acc[j][v] = (PVEC)(0);
    }
CLCONV_UNROLL(CU)
    for (int k = 0; k < K; ++k) {
        __global const ACC_T *ck = cb + k * col_sk;
        PVEC xv[PV];
#pragma unroll
        for (int v = 0; v < PV; ++v)
            xv[v] = LOAD_COL(ck + v * PVW);
#pragma unroll
        for (int j = 0; j < FBK; ++j) {
            const PVEC wv = (PVEC)(wf[wrow[j] + k]);
#pragma unroll
            for (int v = 0; v < PV; ++v)
                acc[j][v] = wv * xv[v] + acc[j][v];
        }
    }

    const int nf = CLCONV_MIN(FBK, FG - f0);
    const int np = CLCONV_MIN(PBLK, P - p0);
    /* Whether the output's pixels lie in one run per filter, as p counts them. */
    const bool linear = ys_w == 1 && ys_h == OW && (P == OH * OW || ys_d == (long)OH * OW);
#if !CLCONV_OUT_HALF && !defined(OUT_SAT)
    /* A whole block of such pixels: vector stores. */
    if (linear && np == PBLK && first == p0) {
        for (int j = 0; j < nf; ++j) {
            const int f = g * FG + f0 + j;
            const ACC_T b = has_bias ? bias[f] : (ACC_T)(0);
            __global OUT_T *yf = y + y_off + n * ys_n + (long)f * ys_c + p0;
#pragma unroll
            for (int v = 0; v < PV; ++v)
                STORE_PVEC(acc[j][v] + (PVEC)(b), yf + v * PVW);
        }
        return;
    }
#endif
    /* Otherwise each filter's pixels go through an aligned private array, then
     * pixel by pixel (any output strides). */
    const int ohw = OH * OW;
    ACC_T lanes[PBLK] __attribute__((aligned(PVW * sizeof(ACC_T))));
    for (int j = 0; j < nf; ++j) {
        const int f = g * FG + f0 + j;
        const ACC_T b = has_bias ? bias[f] : (ACC_T)(0);
#pragma unroll
        for (int v = 0; v < PV; ++v)
            *(PVEC *)(lanes + v * PVW) = acc[j][v];
        __global OUT_T *yf = y + y_off + n * ys_n + (long)f * ys_c;
        for (int i = first - p0; i < np; ++i) {
            const int p = p0 + i;
            const long at = linear ? p : (p / ohw) * ys_d + ((p % ohw) / OW) * ys_h
                                         + (p % OW) * ys_w;
            STORE_OUT(yf, at, has_bias ? lanes[i] + b : lanes[i]);
        }
    }
}
