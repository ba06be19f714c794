/* Saturating conversion of a float result to the dtype a caller asked for
 * (filter2d(dtype=...)): round to nearest, ties to even, clamp into the
 * target's range, NaN to 0 -- OpenCL's convert_<T>_sat_rte, which is exactly
 * the rule cv2.filter2D applies to 8- and 16-bit images. Converting on the
 * device means only the small integer result is read back.
 *
 *   SRC_T    float, double or half (read with vload_half when SRC_HALF=1)
 *   DST_T    uchar, char, ushort, short, int or uint
 *   WG       work-group size (reqd_work_group_size; the host pads the global
 *            size to a multiple and the kernel guards)
 */
#ifndef SRC_T
#define SRC_T float
#endif
#ifndef SRC_HALF
#define SRC_HALF 0
#endif
#ifndef DST_T
#define DST_T uchar
#endif
#ifndef WG
#define WG 64
#endif
#ifndef NEED_FP64
#define NEED_FP64 0
#endif
#if NEED_FP64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif

#define CAT3(a, b, c) a##b##c
#define CONVERT_SAT(T) CAT3(convert_, T, _sat_rte)

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void saturate(__global const SRC_T *restrict src, const long src_off,
              __global DST_T *restrict dst, const long count)
{
    const long i = get_global_id(0);
    if (i >= count)
        return;
#if SRC_HALF
    const float v = vload_half(0, (__global const half *)src + src_off + i);
#else
    const SRC_T v = src[src_off + i];
#endif
    dst[i] = CONVERT_SAT(DST_T)(v);
}
