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
 * global id 0: padded column (padded to a multiple of WG_PAD)
 * global id 1: padded row pd * PH + ph
 * global id 2: n * C + c
 * No barriers: out-of-range work-items simply do nothing. */
#include "common.h"

#ifndef WG_PAD
#define WG_PAD 64
#endif

__kernel __attribute__((reqd_work_group_size(WG_PAD, 1, 1)))
void pad_input(__global const IN_T *restrict x, const long x_off,
               const long xs_n, const long xs_c, const long xs_d, const long xs_h,
               const long xs_w,
               __global ACC_T *restrict out,
               const int C, const int ID, const int IH, const int IW,
               const int PD, const int PH, const int PITCH,
               const int BD, const int BH, const int BW, const ACC_T fill)
{
    const int p = get_global_id(0);
    const int row = get_global_id(1);
    const int nc = get_global_id(2);
    if (p >= PITCH)
        return;
    const int pd = row / PH;
    const int ph = row % PH;
    const long id = map_border((long)pd - BD, ID);
    const long ih = map_border((long)ph - BH, IH);
    const long iw = map_border((long)p - BW, IW);
    const long n = nc / C;
    const long c = nc % C;
    ACC_T v = fill;
    if (id >= 0 && ih >= 0 && iw >= 0)
        v = LOAD_IN(x, x_off + n * xs_n + c * xs_c + id * xs_d + ih * xs_h + iw * xs_w);
    out[((long)nc * PD * PH + row) * PITCH + p] = v;
}
