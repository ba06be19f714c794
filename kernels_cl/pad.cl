/* Border pre-pass for the fast paths: copy any input (any element type, any
 * strides, channels-first or -last) into a contiguous ACC_T scratch buffer
 * that already holds the padding, laid out [N][C][PD][PH][PITCH]:
 *
 *   padded axis p (0 <= p < P) reads input index map_border(p - PAD_BEFORE, n)
 *   (common.h), or the fill value when that is -1 (constant mode).
 *   Columns PW <= p < PITCH (the pitch is rounded up so that the fast
 *   kernels' vector loads of a tail block stay inside the buffer) hold the
 *   same mapping continued; their results are never stored.
 *
 * One work-item writes one padded row: the interior is a straight copy (a
 * unit-stride loop the compiler vectorises when the input is contiguous
 * along W), only the border columns go through map_border. Not one
 * work-item per element: PoCL's fixed cost per work-item would then be paid
 * for every value copied. The vector-style hint keeps Intel's compiler from
 * vectorising across work-items, whose rows lie PITCH apart (gathers).
 *
 * global id 0: padded row pd * PH + ph (padded to a multiple of WG_PAD)
 * global id 1: n * C + c
 * No barriers: out-of-range work-items simply do nothing. */
#include "common.h"

#ifndef WG_PAD
#define WG_PAD 4
#endif

__kernel CLCONV_VECTOR_STYLE __attribute__((reqd_work_group_size(WG_PAD, 1, 1)))
void pad_input(__global const IN_T *restrict x, const long x_off,
               const long xs_n, const long xs_c, const long xs_d, const long xs_h,
               const long xs_w,
               __global ACC_T *restrict out,
               const int C, const int ID, const int IH, const int IW,
               const int PD, const int PH, const int PITCH,
               const int BD, const int BH, const int BW, const ACC_T fill)
{
    const int row = get_global_id(0);
    const int nc = get_global_id(1);
    if (row >= PD * PH)
        return;
    const int pd = row / PH;
    const int ph = row % PH;
    const long id = map_border((long)pd - BD, ID);
    const long ih = map_border((long)ph - BH, IH);
    const long n = nc / C;
    const long c = nc % C;
    __global ACC_T *o = out + ((long)nc * PD * PH + row) * PITCH;
    if (id < 0 || ih < 0) {  /* a whole row of fill (constant mode) */
        for (int p = 0; p < PITCH; ++p)
            o[p] = fill;
        return;
    }
    __global const IN_T *xr = x + x_off + n * xs_n + c * xs_c + id * xs_d + ih * xs_h;
    /* interior: padded columns [BW, BW + IW) read input columns [0, IW) */
    const int lo = CLCONV_MIN(BW, PITCH);
    const int hi = CLCONV_MIN(BW + IW, PITCH);
    if (xs_w == 1) {
        for (int p = lo; p < hi; ++p)
            o[p] = LOAD_IN(xr, p - BW);
    } else {
        for (int p = lo; p < hi; ++p)
            o[p] = LOAD_IN(xr, (long)(p - BW) * xs_w);
    }
    /* borders: left [0, lo), right [hi, PITCH) */
    for (int p = 0; p < PITCH; p = (p + 1 == lo) ? CLCONV_MAX(hi, p + 1) : p + 1) {
        if (p >= lo && p < hi)
            continue;
        const long iw = map_border((long)p - BW, IW);
        o[p] = iw >= 0 ? LOAD_IN(xr, iw * xs_w) : fill;
    }
}
