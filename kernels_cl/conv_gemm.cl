/* Register-blocked implicit GEMM for dense (many channels per group) layers.
 *
 * M = output pixels, N = filters of a group, K = CG * KD * KH * KW taps.
 * One work-item computes NV blocks of FB filters (one ACC_T##FB vector each)
 * x OB output columns of one output row: OB * NV independent vector
 * accumulators. Per tap it loads NV weight vectors (FB filters each, packed
 * contiguously by pack.cl as [G][NFB][CG][KD][KH][KW][FB]) and OB input
 * scalars, each broadcast to the vectors: OB * NV vector multiply-adds per
 * NV + OB loads, any stride. NV > 1 is for wide register files (AVX-512's
 * 32 registers, GPUs): enough independent accumulators to hide the
 * multiply-add latency without more input loads per tap.
 *
 * The input must need no border handling: either the caller's buffer when
 * the convolution has no padding, or the scratch written by pad.cl. Its
 * last axis must be contiguous (element stride 1). Pixels past the end of
 * the last block's row (or slice) read its last pixel and are never stored,
 * so no read leaves the input.
 *
 *   global id 0: column block * ceil(NFB / NV) + group of NV filter blocks
 *                (padded to a multiple of WG_X): the filter blocks of one
 *                column block run back to back and re-read the same input
 *                lines from cache
 *   global id 1: output row od * OH + oh (padded to a multiple of WG_Y)
 *   global id 2: n * G + g
 * With FLAT=1 a block is OB consecutive pixels of the whole OH x OW slice
 * (crossing rows) and global id 1 is od: narrow outputs (7x7, 14x14) then
 * compute no partly empty block per row, and fewer blocks stream the
 * weights (a 512 -> 512 3x3 layer's are 9.4 MB).
 * With GTAB=1 the kernel takes a table of two element offsets per group,
 * where its input channels and its output channels start (from x and y),
 * instead of the strides' g * CG * xs_c and g * FG * ys_c: groups that
 * are separate convolutions over views of one input and one output (the
 * stride phases of a transposed convolution) run in one launch.
 * With FPH > 1 the filters of a group are FPH-interleaved phases: filter
 * o is stored at (o / FPH) * ys_c + o % FPH, so the FPH phases of one
 * output channel fill consecutive elements of a row whose columns lie
 * ys_w = FPH apart (the phases along the last axis of a transposed
 * convolution, over the union of their windows). One work-item then
 * writes whole runs of the row instead of every FPH-th element of lines
 * that FPH work-items share.
 * No barriers; out-of-range work-items return at once. */
#include "common.h"

#ifndef FB
#define FB 16
#endif
#if FB != 4 && FB != 8 && FB != 16
#error "FB (filters per work-item) must be 4, 8 or 16"
#endif
#ifndef OB
#define OB 6
#endif
#if OB < 1 || OB > 16
#error "OB (output columns per work-item) must be in 1..16"
#endif
#ifndef NV
#define NV 1
#endif
#if NV < 1 || NV > 4
#error "NV (filter blocks per work-item) must be in 1..4"
#endif
#ifndef KH
#define KH 3
#endif
#ifndef KW
#define KW 3
#endif
#ifndef WG_X
#define WG_X 1
#endif
#ifndef WG_Y
#define WG_Y 1
#endif

#ifndef FLAT
#define FLAT 0
#endif
#ifndef VSTORE
#define VSTORE 0
#endif
#ifndef GTAB
#define GTAB 0
#endif
#ifndef CU
#define CU 1
#endif
#ifndef FPH
#define FPH 1
#endif
#if FPH > 1 && FB % FPH
#error "FPH (interleaved filter phases) must divide FB"
#endif
/* OB_FPH: OB * FPH as one token, for the vector type of a run's store. */
#ifndef OB_FPH
#define OB_FPH OB
#endif
#if OB_FPH != OB * FPH
#error "OB_FPH must be OB * FPH"
#endif
/* Where filter o of a group starts in the output, relative to its group. */
#define FILTER_AT(o) ((long)((o) / FPH) * ys_c + (o) % FPH)
/* CU: channels per unrolled step of the K loop. Few taps per channel (1x1)
 * leave OB vector multiply-adds per iteration, too few to hide the loop's
 * own work. */
#if CU > 1
#define UNROLL_C CLCONV_UNROLL(CU)
#else
#define UNROLL_C
#endif

#define ACCV_T CLCONV_CAT(ACC_T, FB)
/* Aligned vector dereference, not vloadN (an out-of-line call on PoCL, which
 * this loop cannot afford). Packed weights start at whole FB blocks of a
 * fresh buffer, so they are aligned to FB elements. */
#define LOAD_W(p) (*(__global const ACCV_T *)(p))

/* A block's line is what its OB pixels are consecutive in: one output row,
 * or with FLAT the OH x OW slice of one output depth. in_pixel is where
 * pixel p of a line starts reading, relative to the line's input origin. */
inline int in_pixel(const int p, const int OW, const int SH, const int SW, const int xs_h)
{
#if FLAT
    return (p / OW) * SH * xs_h + (p % OW) * SW;
#else
    return p * SW;
#endif
}

#if GTAB
#define GROUP_TABLE_PARAM , __global const long *restrict gtab
#else
#define GROUP_TABLE_PARAM
#endif

__kernel CLCONV_VECTOR_STYLE __attribute__((reqd_work_group_size(WG_X, WG_Y, 1)))
void conv_gemm(CLCONV_BORDER_FREE_PARAMS(SW) GROUP_TABLE_PARAM)
{
    const int wf = get_global_id(0);
    const int row = get_global_id(1);
    const int ng = get_global_id(2);
    const int NFW = (NFB + NV - 1) / NV;  /* work-items per column block */
    const int wb = wf / NFW;
    const int fblk0 = (wf % NFW) * NV;
    const int g = ng % G;
    const long n = ng / G;
#if FLAT
    const int P = OH * OW;   /* pixels of a line */
    if (wb * OB >= P || row >= OD)
        return;
    const int od = row;
    const int oh = 0;
#else
    const int P = OW;
    if (wb * OB >= P || row >= OD * OH)
        return;
    const int od = row / OH;
    const int oh = row % OH;
#endif
    const int p0 = wb * OB;  /* the block's first pixel in its line */
#if GTAB
    const long gx = gtab[2 * g], gy = gtab[2 * g + 1];
#else
    const long gx = (long)g * CG * xs_c, gy = (long)g * (FG / FPH) * ys_c;
#endif
    __global const ACC_T *xg = x + x_off + n * xs_n + gx + od * SD * xs_d + oh * SH * xs_h;
    const int block_len = CG * KD * KH * KW * FB;  /* one filter block's packed weights */
    __global const ACC_T *w = wp + (long)(g * NFB + fblk0) * block_len;
    /* A group past the last block reads the last one again and stores nothing. */
    int wv_off[NV];
#pragma unroll
    for (int v = 0; v < NV; ++v)
        wv_off[v] = CLCONV_MIN(v, NFB - 1 - fblk0) * block_len;

    int xo[OB];
    ACCV_T acc[OB][NV];
#pragma unroll
    for (int ob = 0; ob < OB; ++ob) {
        xo[ob] = in_pixel(CLCONV_MIN(p0 + ob, P - 1), OW, SH, SW, xs_h);
#pragma unroll
        for (int v = 0; v < NV; ++v)
            acc[ob][v] = (ACCV_T)(0);
    }
UNROLL_C
    for (int c = 0; c < CG; ++c) {
        for (int kd = 0; kd < KD; ++kd) {
            __global const ACC_T *xd = xg + c * xs_c + kd * DD * xs_d;
#pragma unroll
            for (int kh = 0; kh < KH; ++kh) {
                __global const ACC_T *xh = xd + kh * DH * xs_h;
#pragma unroll
                for (int kw = 0; kw < KW; ++kw) {
                    ACCV_T wv[NV];
#pragma unroll
                    for (int v = 0; v < NV; ++v)
                        wv[v] = LOAD_W(w + wv_off[v]);
                    w += FB;
                    __global const ACC_T *xk = xh + kw * DW;
#pragma unroll
                    for (int ob = 0; ob < OB; ++ob) {
                        const ACCV_T xv = (ACCV_T)(xk[xo[ob]]);
#pragma unroll
                        for (int v = 0; v < NV; ++v)
                            acc[ob][v] = xv * wv[v] + acc[ob][v];
                    }
                }
            }
        }
    }

    const int nob = CLCONV_MIN(OB, P - p0);
#if FLAT
    __global OUT_T *yo = y + y_off + n * ys_n + gy + od * ys_d;
    long yoff[OB];
    for (int ob = 0; ob < nob; ++ob)
        yoff[ob] = ((p0 + ob) / OW) * ys_h + ((p0 + ob) % OW) * ys_w;
#define Y_AT(ob) yoff[ob]
#else
    __global OUT_T *yo = y + y_off + n * ys_n + gy + od * ys_d + oh * ys_h + p0 * ys_w;
#define Y_AT(ob) ((ob) * ys_w)
#endif
    /* Spill the accumulators through an aligned private array (a vector
     * store, not vstoreN: an out-of-line call on PoCL), then write filter by
     * filter so consecutive stores go to consecutive output columns: with few
     * taps per filter (low K) the stores are a large share of the work. */
    ACC_T lanes[OB][FB] __attribute__((aligned(FB * sizeof(ACC_T))));
#pragma unroll
    for (int v = 0; v < NV; ++v) {
        if (fblk0 + v >= NFB)
            break;
        const int fy = (fblk0 + v) * FB;  /* the block's first filter in its group */
        const int f0 = g * FG + fy;        /* ... and among all filters (bias) */
        const int nf = CLCONV_MIN(FB, FG - fy);
#pragma unroll
        for (int ob = 0; ob < OB; ++ob)
            *(ACCV_T *)lanes[ob] = acc[ob][v];
#if VSTORE && FPH > 1 && !FLAT && !CLCONV_OUT_HALF && (OB_FPH == 2 || OB_FPH == 4 \
                                                      || OB_FPH == 8 || OB_FPH == 16)
        /* A whole block of columns with its phases interleaved: one vector
         * store of OB * FPH contiguous elements per output channel. */
        if (ys_w == FPH && nob == OB) {
            for (int j = 0; j < nf; j += FPH) {
                ACC_T run[OB_FPH] __attribute__((aligned(OB_FPH * sizeof(ACC_T))));
#pragma unroll
                for (int ob = 0; ob < OB; ++ob) {
#pragma unroll
                    for (int c = 0; c < FPH; ++c)
                        run[ob * FPH + c] = lanes[ob][j + c]
                                          + (has_bias ? bias[f0 + j + c] : (ACC_T)(0));
                }
                CLCONV_CAT(vstore, OB_FPH)(*(CLCONV_VEC(OB_FPH) *)run, 0, yo + FILTER_AT(fy + j));
            }
            continue;
        }
#elif VSTORE && !FLAT && !CLCONV_OUT_HALF && (OB == 2 || OB == 4 || OB == 8 || OB == 16)
        /* A whole block of contiguous columns: one vector store per filter. */
        if (ys_w == 1 && nob == OB) {
            for (int j = 0; j < nf; ++j) {
                const ACC_T b = has_bias ? bias[f0 + j] : (ACC_T)(0);
                ACC_T row[OB] __attribute__((aligned(OB * sizeof(ACC_T))));
#pragma unroll
                for (int ob = 0; ob < OB; ++ob)
                    row[ob] = lanes[ob][j] + b;
                CLCONV_CAT(vstore, OB)(*(CLCONV_VEC(OB) *)row, 0, yo + FILTER_AT(fy + j));
            }
            continue;
        }
#endif
        for (int j = 0; j < nf; ++j) {
            const ACC_T b = has_bias ? bias[f0 + j] : (ACC_T)(0);
            __global OUT_T *yj = yo + FILTER_AT(fy + j);
            for (int ob = 0; ob < nob; ++ob)
                STORE_OUT(yj, Y_AT(ob), has_bias ? lanes[ob][j] + b : lanes[ob][j]);
        }
    }
}
