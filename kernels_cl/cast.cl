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
 *   CHUNK    elements per work-item, a multiple of 16 (default 64)
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

#ifndef CHUNK
#define CHUNK 64
#endif
#if CHUNK % 16 != 0
#error "CHUNK (elements per work-item) must be a multiple of 16"
#endif

/* Two levels, so that macro arguments (DST_T, SRC_T) expand before pasting. */
#define CAT2_(a, b) a##b
#define CAT2(a, b) CAT2_(a, b)
#define CAT3_(a, b, c) a##b##c
#define CAT3(a, b, c) CAT3_(a, b, c)
#define CONVERT_SAT(T) CAT3(convert_, T, _sat_rte)
#define CONVERT_SAT16(T) CAT3(convert_, CAT2(T, 16), _sat_rte)

/* One work-item converts CHUNK consecutive elements, 16 at a time as vectors:
 * one element per work-item paid a runtime's per-item cost for every value
 * (and Intel's CPU runtime does not vectorise across items on AMD CPUs). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void saturate(__global const SRC_T *restrict src, const long src_off,
              __global DST_T *restrict dst, const long count)
{
    const long i0 = get_global_id(0) * CHUNK;
    if (i0 >= count)
        return;
    __global const SRC_T *s = src + src_off + i0;
    __global DST_T *d = dst + i0;
    if (i0 + CHUNK <= count) {
        for (int j = 0; j < CHUNK; j += 16) {
#if SRC_HALF
            const float16 v = vload_half16(0, (__global const half *)s + j);
#else
            const CAT2(SRC_T, 16) v = vload16(0, s + j);
#endif
            vstore16(CONVERT_SAT16(DST_T)(v), 0, d + j);
        }
        return;
    }
    for (long j = 0; j < count - i0; ++j) {
#if SRC_HALF
        const float v = vload_half(0, (__global const half *)s + j);
#else
        const SRC_T v = s[j];
#endif
        d[j] = CONVERT_SAT(DST_T)(v);
    }
}
