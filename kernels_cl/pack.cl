/* Operand preparation on the device: weights into the blocked layout that
 * the forward kernels read, and bias vectors into the accumulator type. The
 * source operand may be any numeric type (W_T, W_HALF of common.h) and any
 * strides. */
#include "common.h"

#ifndef FB
#define FB 8
#endif
/* ROUND_HALF=1: the result dtype is float16 but the operand is not half, so
 * round it to half first (the contract converts weights to the input dtype). */
#ifndef ROUND_HALF
#define ROUND_HALF 0
#endif
#ifndef WG_PACK
#define WG_PACK 64
#endif

inline ACC_T load_operand(__global const W_T *p, long i)
{
    ACC_T v = LOAD_WEIGHT(p, i);
#if ROUND_HALF && !W_HALF
    ushort bits;
    vstore_half_rte((float)v, 0, (__private half *)&bits);
    v = vload_half(0, (__private const half *)&bits);
#endif
    return v;
}

/* out[g][fblk][c][kd][kh][kw][j] = w at g * ws_g + (fblk*FB + j) * ws_f + c * ws_c + taps
 * (flipped taps when flip). The forward kernels read the weight's own filters
 * and channels (ws_g = FG * ws_f); the backward pass reads it transposed
 * within each group (filters and channels swap roles and strides).
 *
 * One work-item per (g, fblk, c, kd): KH * KW * FB consecutive outputs, so
 * the index decomposition (run-time 64-bit divisions, which dominate a
 * per-element kernel) is paid once per slab, not per element.
 *   global id 0: ((g * NFB + fblk) * CG + c) * KD + kd (padded to WG_PACK) */
__kernel CLCONV_VECTOR_STYLE __attribute__((reqd_work_group_size(WG_PACK, 1, 1)))
void pack_weights(__global const W_T *restrict w, const long w_off, const long ws_g,
                  const long ws_f, const long ws_c, const long ws_d, const long ws_h,
                  const long ws_w,
                  __global ACC_T *restrict out, const long slabs,
                  const int G, const int CG, const int FG, const int NFB,
                  const int KD, const int KH, const int KW, const int flip)
{
    const long i = get_global_id(0);
    if (i >= slabs)
        return;
    long t = i;
    const int kd = split_digit(&t, KD);
    const int c = split_digit(&t, CG);
    const int fblk = split_digit(&t, NFB);
    const int g = (int)t;
    __global ACC_T *o = out + i * KH * KW * FB;
    const int nf = CLCONV_MIN(FB, FG - fblk * FB);  /* real filters of this block */
    __global const W_T *wf = w + w_off + g * ws_g + (long)(fblk * FB) * ws_f + c * ws_c
                           + flip_tap(kd, KD, flip) * ws_d;
    for (int kh = 0; kh < KH; ++kh) {
        for (int kw = 0; kw < KW; ++kw) {
            const long tap = flip_tap(kh, KH, flip) * ws_h + flip_tap(kw, KW, flip) * ws_w;
            /* FB consecutive outputs: the tap of each filter of the block */
            for (int j = 0; j < FB; ++j)
                o[j] = j < nf ? load_operand(wf, j * ws_f + tap) : (ACC_T)(0);
            o += FB;
        }
    }
}

/* out[i] = v[i * stride] in the accumulator type. */
__kernel __attribute__((reqd_work_group_size(WG_PACK, 1, 1)))
void pack_vector(__global const W_T *restrict v, const long v_off, const long vs,
                 __global ACC_T *restrict out, const long total)
{
    const long i = get_global_id(0);
    if (i < total)
        out[i] = load_operand(v, v_off + i * vs);
}
