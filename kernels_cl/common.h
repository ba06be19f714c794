/* clconv shared header: precision switch, storage load/store helpers and the
 * border index mapping. Every build macro has an #ifndef default here and is
 * documented in kernels_cl/README.md. */
#ifndef CLCONV_COMMON_H
#define CLCONV_COMMON_H

#define CLCONV_CAT_(a, b) a##b
#define CLCONV_CAT(a, b) CLCONV_CAT_(a, b)

/* Integer min/max as plain expressions: on PoCL 3.0 the min()/max() builtins
 * (like vloadN/vstoreN) are out-of-line calls, expensive in inner loops. */
#define CLCONV_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CLCONV_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Vector loads and stores of N consecutive elements at any address, built
 * from scalar accesses that LLVM merges into vector ones. Kernels use these
 * instead of the vloadN/vstoreN builtins: on PoCL those are out-of-line
 * calls (several times slower), and one whose vector is wider than the host's
 * registers (float16 on AVX2) changes the call ABI, after which PoCL 3.0
 * reloads the program from its kernel cache with no kernels in it.
 * T is the vector type; N is 2, 4, 8 or 16. */
#define CLCONV_VLOAD2(T, p) ((T)((p)[0], (p)[1]))
#define CLCONV_VLOAD4(T, p) ((T)((p)[0], (p)[1], (p)[2], (p)[3]))
#define CLCONV_VLOAD8(T, p) ((T)((p)[0], (p)[1], (p)[2], (p)[3], (p)[4], (p)[5], (p)[6], \
                                 (p)[7]))
#define CLCONV_VLOAD16(T, p) ((T)((p)[0], (p)[1], (p)[2], (p)[3], (p)[4], (p)[5], (p)[6], \
                                  (p)[7], (p)[8], (p)[9], (p)[10], (p)[11], (p)[12], \
                                  (p)[13], (p)[14], (p)[15]))
#define CLCONV_VLOAD(N, T, p) CLCONV_CAT(CLCONV_VLOAD, N)(T, p)

#define CLCONV_VSTORE2(v, p) do { (p)[0] = (v).s0; (p)[1] = (v).s1; } while (0)
#define CLCONV_VSTORE4(v, p) do { (p)[0] = (v).s0; (p)[1] = (v).s1; (p)[2] = (v).s2; \
                                  (p)[3] = (v).s3; } while (0)
#define CLCONV_VSTORE8(v, p) do { CLCONV_VSTORE4((v).lo, (p)); \
                                  CLCONV_VSTORE4((v).hi, (p) + 4); } while (0)
#define CLCONV_VSTORE16(v, p) do { CLCONV_VSTORE8((v).lo, (p)); \
                                   CLCONV_VSTORE8((v).hi, (p) + 8); } while (0)
#define CLCONV_VSTORE(N, v, p) CLCONV_CAT(CLCONV_VSTORE, N)(v, p)

/* ---- precision ------------------------------------------------------------
 * ELEM_KIND selects the result/compute dtype:
 *   0: float32 storage, float accumulation
 *   1: float64 storage, double accumulation (needs cl_khr_fp64)
 *   2: float16 storage (core vload_half/vstore_half), float accumulation */
#ifndef ELEM_KIND
#define ELEM_KIND 0
#endif
#if ELEM_KIND != 0 && ELEM_KIND != 1 && ELEM_KIND != 2
#error "ELEM_KIND must be 0 (float32), 1 (float64) or 2 (float16)"
#endif

/* NEED_FP64: some operand (input, weight or the result) is double. */
#ifndef NEED_FP64
#define NEED_FP64 0
#endif
#if NEED_FP64 || ELEM_KIND == 1
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif

#if ELEM_KIND == 1
#define ACC_T double
#else
#define ACC_T float
#endif

/* Result storage: OUT_T is the pointer type of the output buffer. */
#if ELEM_KIND == 2
#define OUT_T half
#define STORE_OUT(p, i, v) vstore_half_rte((float)(v), 0, (p) + (i))
#else
#define OUT_T ACC_T
#define STORE_OUT(p, i, v) ((p)[i] = (v))
#endif

/* Input storage: IN_T is the element type of the input buffer (uchar, int,
 * float, half, ...); IN_HALF=1 when it is half (read with vload_half). */
#ifndef IN_T
#define IN_T OUT_T
#endif
#ifndef IN_HALF
#define IN_HALF (ELEM_KIND == 2)
#endif
#if IN_HALF
#define LOAD_IN(p, i) ((ACC_T)vload_half(0, (p) + (i)))
#else
#define LOAD_IN(p, i) ((ACC_T)((p)[i]))
#endif

/* ---- border mapping ------------------------------------------------------
 * Named by numpy.pad's modes. map_border(i, n) maps a coordinate of the
 * padded axis (i may be far outside [0, n)) to the input index it reads, or
 * -1 for "use the fill value" (constant mode only). Exact for any overhang:
 *
 *   input        a b c d            (n = 4)
 *   constant   f f|a b c d|f f      f = fill value
 *   edge       a a|a b c d|d d
 *   wrap       c d|a b c d|a b      period n
 *   reflect    c b|a b c d|c b      period 2(n-1), edge not repeated; n == 1 -> a
 *   symmetric  b a|a b c d|d c      period 2n, edge repeated
 */
#define BORDER_CONSTANT 0
#define BORDER_EDGE 1
#define BORDER_WRAP 2
#define BORDER_REFLECT 3
#define BORDER_SYMMETRIC 4
#ifndef BORDER
#define BORDER BORDER_CONSTANT
#endif
#if BORDER < 0 || BORDER > 4
#error "BORDER must be one of 0 (constant), 1 (edge), 2 (wrap), 3 (reflect), 4 (symmetric)"
#endif

inline long map_border(long i, long n)
{
    if (i >= 0 && i < n)
        return i;
#if BORDER == BORDER_CONSTANT
    return -1;
#elif BORDER == BORDER_EDGE
    return i < 0 ? 0 : n - 1;
#elif BORDER == BORDER_WRAP
    long m = i % n;
    return m < 0 ? m + n : m;
#elif BORDER == BORDER_REFLECT
    if (n == 1)
        return 0;
    long p = 2 * (n - 1);
    long m = i % p;
    if (m < 0)
        m += p;
    return m >= n ? p - m : m;
#else /* BORDER_SYMMETRIC */
    long p = 2 * n;
    long m = i % p;
    if (m < 0)
        m += p;
    return m >= n ? p - 1 - m : m;
#endif
}

#endif /* CLCONV_COMMON_H */
