/* Work-item-parallel forward convolution over a border-free input (path "lanes").
 *
 * One work-item computes FB filters of one output pixel; consecutive
 * work-items along dimension 0 take consecutive output columns. A compiler
 * that vectorises across work-items (Intel's CPU runtime, every GPU) then
 * runs a group's columns in SIMD lanes: each tap is one strided vector load
 * of the input (stride SW) that feeds FB multiply-adds whose weights are the
 * same in every lane (one scalar load, broadcast). This is the style those
 * compilers want; PoCL's, which vectorises inside one work-item, prefers the
 * explicit vectors of conv_gemm.cl and conv_rows.cl.
 *
 * The input comes from the pad pre-pass (or is the caller's own buffer when
 * it needs no padding), with rows long enough for every lane of the last
 * group: every tap reads inside it, so there is no border logic and no
 * clamping, and the lanes' addresses stay SW apart (a vector load, not a
 * gather; SW and the output's unit W stride are build constants for that). Weights are packed [G][NFB][CG][KD][KH][KW][FB]
 * (pack.cl), zero filters past the last; the bias is an ACC_T vector.
 *
 * Build parameters:
 *   FB          filters per work-item (1..16)
 *   KH, KW      kernel taps along H and W, unrolled
 *   SW          stride along W
 *   YW1         1 when the output's W stride is 1 (contiguous stores)
 *   WG_X, WG_Y  work-group size (reqd_work_group_size; the host pads the
 *               global size and the kernel guards)
 */
#include "common.h"

#ifndef FB
#define FB 4
#endif
#ifndef KH
#define KH 3
#endif
#ifndef KW
#define KW 3
#endif
#ifndef SW
#define SW 1
#endif
#ifndef YW1
#define YW1 1
#endif
#ifndef WG_X
#define WG_X 16
#endif
#ifndef WG_Y
#define WG_Y 1
#endif
#if FB < 1 || FB > 16
#error "FB must be 1..16"
#endif

__kernel __attribute__((reqd_work_group_size(WG_X, WG_Y, 1)))
void conv_lanes(CLCONV_BORDER_FREE_PARAMS(sw_unused))
{
    /* 64-bit: with a 32-bit column index, Intel's CPU compiler cannot prove the
     * lanes' addresses consecutive and gathers and scatters each one. */
    const long ox = get_global_id(0);
    const int row = get_global_id(1);
    const int z = get_global_id(2);
    if (row >= OD * OH)
        return;
    const int fblk = z % NFB;
    const int ng = z / NFB;
    const int g = ng % G;
    const long n = ng / G;
    const int od = row / OH;
    const int oh = row % OH;
    /* Lanes past the row read the padded tail of the row and write nothing. */
    __global const ACC_T *xg = x + x_off + n * xs_n + (long)g * CG * xs_c
                             + (long)od * SD * xs_d + (long)oh * SH * xs_h + ox * SW;
    __global const ACC_T *w = wp + (long)(g * NFB + fblk) * CG * KD * KH * KW * FB;

    ACC_T acc[FB];
#pragma unroll
    for (int f = 0; f < FB; ++f)
        acc[f] = 0;
    for (int c = 0; c < CG; ++c) {
        for (int kd = 0; kd < KD; ++kd) {
            __global const ACC_T *xd = xg + (long)c * xs_c + (long)kd * DD * xs_d;
#pragma unroll
            for (int kh = 0; kh < KH; ++kh) {
                __global const ACC_T *xh = xd + (long)kh * DH * xs_h;
#pragma unroll
                for (int kw = 0; kw < KW; ++kw) {
                    const ACC_T v = xh[kw * DW];
#pragma unroll
                    for (int f = 0; f < FB; ++f)
                        acc[f] = v * w[f] + acc[f];
                    w += FB;
                }
            }
        }
    }
    if (ox >= OW)
        return;
    const int f0 = fblk * FB;
#if YW1
    __global OUT_T *yp = y + y_off + n * ys_n + (long)(g * FG + f0) * ys_c + od * ys_d
                       + oh * ys_h + ox;
#else
    __global OUT_T *yp = y + y_off + n * ys_n + (long)(g * FG + f0) * ys_c + od * ys_d
                       + oh * ys_h + (long)ox * ys_w;
#endif
#pragma unroll
    for (int f = 0; f < FB; ++f) {
        if (f0 + f < FG) {
            const ACC_T b = has_bias ? bias[g * FG + f0 + f] : (ACC_T)0;
            STORE_OUT(yp, (long)f * ys_c, acc[f] + b);
        }
    }
}
