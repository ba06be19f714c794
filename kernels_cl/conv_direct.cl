/* Generic direct forward convolution for 1-, 2- and 3-D inputs.
 *
 * Every problem is seen as 3-D (D, H, W): missing leading spatial axes have
 * size 1. One work-item computes FB filters x OB consecutive output columns
 * (along W) of one output row (od, oh) of one sample and group:
 *   global id 0: block of OB output columns
 *   global id 1: output row od * OH + oh
 *   global id 2: (n * G + g) * NFB + filter block
 * Global sizes 0 and 1 are padded to multiples of WG_X / WG_Y; extra
 * work-items exit before any memory access (the kernel has no barrier).
 *
 * Input and output are addressed by element strides, so channels-first,
 * channels-last and non-contiguous arrays need no host-side transpose.
 * Padding is applied here through map_border (common.h), never by copying.
 * Weights come packed by pack.cl as [G][NFB][CG][KD][KH][KW][FB] in ACC_T,
 * already flipped when the convolution flips, zero for filters >= FG. */
#include "common.h"

#ifndef FB
#define FB 8
#endif
#if !CLCONV_VEC_WIDTH(FB)
#error "FB (filters per work-item) must be 1, 2, 4, 8 or 16"
#endif
#ifndef OB
#define OB 4
#endif
#if OB < 1 || OB > 16
#error "OB (output columns per work-item) must be in 1..16"
#endif
#ifndef WG_X
#define WG_X 8
#endif
#ifndef WG_Y
#define WG_Y 4
#endif

#define ACCV_T CLCONV_VEC(FB)
#define LOAD_W(p) CLCONV_VLOAD(FB, ACCV_T, p)

/* The argument list shared by conv_direct and conv_direct_ow (same launcher). */
#define CONV_DIRECT_PARAMS \
    __global const IN_T *restrict x, const long x_off, \
    const long xs_n, const long xs_c, const long xs_d, const long xs_h, \
    const long xs_w, \
    CLCONV_FORWARD_OUT_PARAMS, \
    const long ID, const long IH, const long IW, \
    const long OD, const long OH, const long OW, \
    const int KD, const int KH, const int KW, \
    const int SD, const int SH, const int SW, \
    const int DD, const int DH, const int DW, \
    const long PD, const long PH, const long PW, \
    const int G, const int CG, const int FG, const int NFB, \
    const ACC_T fill

/* The work-item's output block, from its block of columns wb and its output
 * row: row od * OH + oh, columns ow0 .. ow0 + OB - 1, and the first input
 * depth, row and column its window reads (id0, ih0, iw0; negative in the
 * padding). Uses the names of CONV_DIRECT_PARAMS. 32-bit divisions: much
 * cheaper, and these counts are far below 2^31. */
#define DIRECT_BLOCK(wb, row)                                                           \
    const long od = (int)(row) / (int)OH;                                               \
    const long oh = (int)(row) % (int)OH;                                               \
    const long ow0 = (wb) * OB;                                                         \
    const long id0 = od * SD - PD;                                                      \
    const long ih0 = oh * SH - PH;                                                      \
    const long iw0 = ow0 * SW - PW
/* The whole block's window lies inside the input: no border maths. */
#define WINDOW_INSIDE                                                                   \
    (id0 >= 0 && id0 + (long)(KD - 1) * DD < ID                                         \
     && ih0 >= 0 && ih0 + (long)(KH - 1) * DH < IH                                      \
     && iw0 >= 0 && iw0 + (long)(OB - 1) * SW + (long)(KW - 1) * DW < IW)

__kernel CLCONV_VECTOR_STYLE __attribute__((reqd_work_group_size(WG_X, WG_Y, 1)))
void conv_direct(CONV_DIRECT_PARAMS)
{
    const long wb = get_global_id(0);
    const long row = get_global_id(1);
    const long z = get_global_id(2);
    if (wb * OB >= OW || row >= OD * OH)
        return;

    const int fblk = (int)z % NFB;
    const int ng = (int)z / NFB;
    const int g = ng % G;
    const long n = ng / G;
    DIRECT_BLOCK(wb, row);

    __global const IN_T *xg = x + x_off + n * xs_n + (long)g * CG * xs_c;
    __global const ACC_T *w = wp + (long)(g * NFB + fblk) * CG * KD * KH * KW * FB;

    ACCV_T acc[OB];
    for (int ob = 0; ob < OB; ++ob)
        acc[ob] = (ACCV_T)(0);

    const bool inside = WINDOW_INSIDE;
    /* Both branches accumulate in the same order (c, kd, kh, kw), so a
     * tile's border and interior give identical numbers. */
    if (inside) {
        for (int c = 0; c < CG; ++c) {
            __global const IN_T *xc = xg + c * xs_c;
            for (int kd = 0; kd < KD; ++kd) {
                __global const IN_T *xd = xc + (id0 + (long)kd * DD) * xs_d;
                for (int kh = 0; kh < KH; ++kh) {
                    __global const IN_T *xh = xd + (ih0 + (long)kh * DH) * xs_h + iw0 * xs_w;
                    for (int kw = 0; kw < KW; ++kw) {
                        const ACCV_T wv = LOAD_W(w);
                        w += FB;
                        __global const IN_T *xk = xh + (long)kw * DW * xs_w;
                        for (int ob = 0; ob < OB; ++ob)
                            acc[ob] = (ACCV_T)(LOAD_IN(xk, (long)ob * SW * xs_w)) * wv + acc[ob];
                    }
                }
            }
        }
    } else {
        for (int c = 0; c < CG; ++c) {
            __global const IN_T *xc = xg + c * xs_c;
            for (int kd = 0; kd < KD; ++kd) {
                const long id = map_border(id0 + (long)kd * DD, ID);
                for (int kh = 0; kh < KH; ++kh) {
                    const long ih = map_border(ih0 + (long)kh * DH, IH);
                    const bool row_ok = id >= 0 && ih >= 0;
                    __global const IN_T *xh = xc + (row_ok ? id * xs_d + ih * xs_h : 0);
                    for (int kw = 0; kw < KW; ++kw) {
                        const ACCV_T wv = LOAD_W(w);
                        w += FB;
                        for (int ob = 0; ob < OB; ++ob) {
                            const long iw = map_border(iw0 + (long)ob * SW + (long)kw * DW, IW);
                            const ACC_T v = (row_ok && iw >= 0) ? LOAD_IN(xh, iw * xs_w) : fill;
                            acc[ob] = (ACCV_T)(v) * wv + acc[ob];
                        }
                    }
                }
            }
        }
    }

    __global OUT_T *yo = y + y_off + n * ys_n + od * ys_d + oh * ys_h;
    const int f0 = g * FG + fblk * FB;
    const int nf = min(FB, FG - fblk * FB);
    ACC_T lanes[FB];
    for (int ob = 0; ob < OB; ++ob) {
        const long ow = ow0 + ob;
        if (ow >= OW)
            break;
        CLCONV_VSTORE(FB, acc[ob], lanes);
        for (int j = 0; j < nf; ++j) {
            ACC_T v = lanes[j];
            if (has_bias)
                v += bias[f0 + j];
            STORE_OUT(yo, (long)(f0 + j) * ys_c + ow * ys_w, v);
        }
    }
}

#if FB == 1 && (OB == 2 || OB == 4 || OB == 8 || OB == 16)
/* Depthwise / single-filter variant: one filter, OB output columns held in one
 * vector (ACC_T##OB), so the multiply-adds are vector wide even with FB == 1.
 * Same work-item mapping, same accumulation order as conv_direct. */
#define VOB_T CLCONV_VEC(OB)
#define VLOAD_OB(p) CLCONV_VLOAD(OB, VOB_T, p)
/* OB consecutive inputs converted to the accumulator type, lane by lane. */
#define LOAD_IN_OB(p) CLCONV_LANES(OB, VOB_T, LOAD_IN, p, 1)

__kernel CLCONV_VECTOR_STYLE __attribute__((reqd_work_group_size(WG_X, WG_Y, 1)))
void conv_direct_ow(CONV_DIRECT_PARAMS)
{
    const long wb = get_global_id(0);
    const long row = get_global_id(1);
    const long z = get_global_id(2);
    if (wb * OB >= OW || row >= OD * OH)
        return;

    const int g = (int)z % G;
    const long n = (int)z / G;
    DIRECT_BLOCK(wb, row);
    const long step = (long)SW * xs_w;

    __global const IN_T *xg = x + x_off + n * xs_n + (long)g * CG * xs_c;
    __global const ACC_T *w = wp + (long)g * CG * KD * KH * KW;
    VOB_T acc = (VOB_T)(0);
    ACC_T gather[OB];

    const bool inside = WINDOW_INSIDE;
    if (inside && step == 1) {
        for (int c = 0; c < CG; ++c)
            for (int kd = 0; kd < KD; ++kd)
                for (int kh = 0; kh < KH; ++kh) {
                    __global const IN_T *xh = xg + c * xs_c + (id0 + (long)kd * DD) * xs_d
                                            + (ih0 + (long)kh * DH) * xs_h + iw0;
                    for (int kw = 0; kw < KW; ++kw) {
                        const ACC_T wv = *w++;
                        acc = LOAD_IN_OB(xh + (long)kw * DW) * (VOB_T)(wv) + acc;
                    }
                }
    } else {
        for (int c = 0; c < CG; ++c)
            for (int kd = 0; kd < KD; ++kd) {
                const long id = inside ? id0 + (long)kd * DD : map_border(id0 + (long)kd * DD, ID);
                for (int kh = 0; kh < KH; ++kh) {
                    const long ih = inside ? ih0 + (long)kh * DH
                                           : map_border(ih0 + (long)kh * DH, IH);
                    const bool row_ok = id >= 0 && ih >= 0;
                    __global const IN_T *xh = xg + c * xs_c + (row_ok ? id * xs_d + ih * xs_h : 0);
                    for (int kw = 0; kw < KW; ++kw) {
                        const ACC_T wv = *w++;
                        for (int ob = 0; ob < OB; ++ob) {
                            const long iw = inside ? iw0 + (long)ob * SW + (long)kw * DW
                                : map_border(iw0 + (long)ob * SW + (long)kw * DW, IW);
                            gather[ob] = (row_ok && iw >= 0) ? LOAD_IN(xh, iw * xs_w) : fill;
                        }
                        acc = VLOAD_OB(gather) * (VOB_T)(wv) + acc;
                    }
                }
            }
    }

    __global OUT_T *yo = y + y_off + n * ys_n + (long)g * FG * ys_c + od * ys_d + oh * ys_h;
    CLCONV_VSTORE(OB, acc, gather);
    for (int ob = 0; ob < OB && ow0 + ob < OW; ++ob) {
        ACC_T v = gather[ob];
        if (has_bias)
            v += bias[g * FG];
        STORE_OUT(yo, (ow0 + ob) * ys_w, v);
    }
}
#endif
