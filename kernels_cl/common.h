/* clconv shared header: precision switch, typed and vector load/store
 * helpers, the border index mapping and small index helpers. Every build
 * macro has an #ifndef default here and is documented in kernels_cl/README.md. */
#ifndef CLCONV_COMMON_H
#define CLCONV_COMMON_H

#define CLCONV_CAT_(a, b) a##b
#define CLCONV_CAT(a, b) CLCONV_CAT_(a, b)
/* The same for use inside the expansion of CLCONV_CAT (a macro does not
 * expand within its own expansion). */
#define CLCONV_PASTE_(a, b) a##b
#define CLCONV_PASTE(a, b) CLCONV_PASTE_(a, b)

/* Integer min/max as plain expressions: on PoCL 3.0 the min()/max() builtins
 * (like vloadN/vstoreN) are out-of-line calls, expensive in inner loops. */
#define CLCONV_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CLCONV_MAX(a, b) ((a) > (b) ? (a) : (b))

/* #pragma inside macros: CLCONV_UNROLL(n) unrolls the loop that follows n times. */
#define CLCONV_PRAGMA(x) _Pragma(#x)
#define CLCONV_UNROLL(n) CLCONV_PRAGMA(unroll n)

/* The vector widths OpenCL C has (1: a scalar), for build-time checks. */
/* Kernels written with explicit vectors per work-item (the "vector" style)
 * ask a runtime that would also vectorise across work-items not to
 * (cl_intel_vec_len_hint: Intel's CPU runtime): widening them again
 * multiplies the registers they need, and they spill. The host defines
 * INTEL_VEC_LEN_HINT only on devices that report the extension. */
#if defined(INTEL_VEC_LEN_HINT) && INTEL_VEC_LEN_HINT > 0
#define CLCONV_VECTOR_STYLE __attribute__((intel_vec_len_hint(INTEL_VEC_LEN_HINT)))
#else
#define CLCONV_VECTOR_STYLE
#endif

#define CLCONV_VEC_WIDTH(n) ((n) == 1 || (n) == 2 || (n) == 4 || (n) == 8 || (n) == 16)

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

/* Result storage: OUT_T is the pointer type of the output buffer. OUT_SAT
 * (an integer type, with float or double results): the result is stored
 * rounded to nearest (ties to even) and saturated into that type, NaN as 0
 * (the values of the _sat_rte conversions), as cast.cl's saturate does after
 * the fact. CLCONV_SAT1(v) / CLCONV_SAT8(v): a scalar / an ACC_T8 so converted. */
#if defined(OUT_SAT) && ELEM_KIND != 2
#define OUT_T OUT_SAT
#define STORE_OUT(p, i, v) ((p)[i] = CLCONV_SAT1(v))
#if ELEM_KIND == 0 && defined(OUT_SAT_LO) && defined(OUT_SAT_HI)
/* Float results into a type of at most 16 bits (the host gives its range):
 * clamped by compares, NaN to 0, then adding 1.5 * 2^23 rounds to an integer
 * held in the low mantissa bits (ties to even: the rounding of every float
 * add). Intel's CPU compiler expands convert_<T>8_sat_rte into a longer
 * sequence than this, which shows in the kernels that store 8-bit images.
 * Compares, not the clamp/select builtins (out-of-line calls on PoCL 3.0).
 * With a lower bound of 0, the first compare already sends NaN there. */
#define CLCONV_SAT_MAGIC 12582912.0f
#define CLCONV_SAT_BITS 0x4B400000
#if OUT_SAT_LO == 0
#define CLCONV_SAT_CLAMP(F, v, t)                                                    \
    F t = (v) > (F)(0.0f) ? (v) : (F)(0.0f);                                         \
    t = t < (F)(OUT_SAT_HI) ? t : (F)(OUT_SAT_HI)
#else
#define CLCONV_SAT_CLAMP(F, v, t)                                                    \
    F t = (v) == (v) ? (v) : (F)(0.0f);                                              \
    t = t > (F)(OUT_SAT_LO) ? t : (F)(OUT_SAT_LO);                                    \
    t = t < (F)(OUT_SAT_HI) ? t : (F)(OUT_SAT_HI)
#endif
inline int clconv_sat_int1(const float v)
{
    CLCONV_SAT_CLAMP(float, v, t);
    return as_int(t + CLCONV_SAT_MAGIC) - CLCONV_SAT_BITS;
}
inline int8 clconv_sat_int8(const float8 v)
{
    CLCONV_SAT_CLAMP(float8, v, t);
    return as_int8(t + (float8)(CLCONV_SAT_MAGIC)) - (int8)(CLCONV_SAT_BITS);
}
#define CLCONV_SAT1(v) CLCONV_CAT(convert_, OUT_SAT)(clconv_sat_int1(v))
#define CLCONV_SAT8(v) CLCONV_CAT(convert_, CLCONV_PASTE(OUT_SAT, 8))(clconv_sat_int8(v))
#else
#define CLCONV_SAT1(v) CLCONV_CAT(CLCONV_PASTE(convert_, OUT_SAT), _sat_rte)(v)
#define CLCONV_SAT8(v) CLCONV_CAT(CLCONV_PASTE(convert_, OUT_SAT), 8_sat_rte)(v)
#endif
#elif ELEM_KIND == 2
#define OUT_T half
#define STORE_OUT(p, i, v) vstore_half_rte((float)(v), 0, (p) + (i))
#else
#define OUT_T ACC_T
#define STORE_OUT(p, i, v) ((p)[i] = (v))
#endif

/* CLCONV_LOAD(HALF, p, i): element i of an operand buffer as ACC_T. HALF is
 * the operand's *_HALF flag (literally 0 or 1: it selects the macro by name):
 * half buffers are read with the core vload_half, the only half access
 * OpenCL 1.2 has without cl_khr_fp16; others are converted by a cast. */
#define CLCONV_LOAD_0(p, i) ((ACC_T)((p)[i]))
#define CLCONV_LOAD_1(p, i) ((ACC_T)vload_half(0, (p) + (i)))
#define CLCONV_LOAD(HALF, p, i) CLCONV_CAT(CLCONV_LOAD_, HALF)(p, i)

/* Operands stored like the result by default: a half flag of 0 or 1. */
#if ELEM_KIND == 2
#define CLCONV_OUT_HALF 1
#else
#define CLCONV_OUT_HALF 0
#endif

/* Input storage: IN_T is the element type of the input buffer (uchar, int,
 * float, half, ...); IN_HALF=1 when it is half. */
#ifndef IN_T
#define IN_T OUT_T
#endif
#ifndef IN_HALF
#define IN_HALF CLCONV_OUT_HALF
#endif
#define LOAD_IN(p, i) CLCONV_LOAD(IN_HALF, p, i)

/* Weight storage, for the kernels that read the caller's weight (pack.cl):
 * element type W_T, W_HALF=1 for half. */
#ifndef W_T
#define W_T OUT_T
#endif
#ifndef W_HALF
#define W_HALF CLCONV_OUT_HALF
#endif
#define LOAD_WEIGHT(p, i) CLCONV_LOAD(W_HALF, p, i)

#if (IN_HALF != 0 && IN_HALF != 1) || (W_HALF != 0 && W_HALF != 1)
#error "IN_HALF and W_HALF must be 0 or 1"
#endif

/* ---- vectors ---------------------------------------------------------------
 * CLCONV_VEC(N) is N accumulators as one value: ACC_T when N == 1, else the
 * vector ACC_T##N (N = 2, 4, 8, 16).
 *
 * Vector loads and stores of N elements at any address are built from scalar
 * accesses that LLVM merges into vector ones. Kernels use these instead of the
 * vloadN/vstoreN builtins: on PoCL those are out-of-line calls (several times
 * slower), and one whose vector is wider than the host's registers (float16
 * on AVX2) changes the call ABI, after which PoCL 3.0 reloads the program
 * from its kernel cache with no kernels in it.
 *
 *   CLCONV_LANES(N, T, LD, p, s)  the value of type T made of LD(p, 0),
 *                                 LD(p, s), ..., LD(p, (N - 1) * s); LD is
 *                                 CLCONV_ELEM, LOAD_IN or any (p, i) macro
 *   CLCONV_VLOAD(N, T, p)         N consecutive elements of p as T
 *   CLCONV_VSTORE(N, v, p)        the N lanes of v to p[0 .. N) */
#define CLCONV_VEC_1 ACC_T
#define CLCONV_VEC_2 CLCONV_PASTE(ACC_T, 2)
#define CLCONV_VEC_4 CLCONV_PASTE(ACC_T, 4)
#define CLCONV_VEC_8 CLCONV_PASTE(ACC_T, 8)
#define CLCONV_VEC_16 CLCONV_PASTE(ACC_T, 16)
#define CLCONV_VEC(N) CLCONV_CAT(CLCONV_VEC_, N)

#define CLCONV_ELEM(p, i) ((p)[i])
#define CLCONV_LANES1(LD, p, s) LD(p, 0)
#define CLCONV_LANES2(LD, p, s) LD(p, 0), LD(p, s)
#define CLCONV_LANES4(LD, p, s) CLCONV_LANES2(LD, p, s), LD(p, 2 * (s)), LD(p, 3 * (s))
#define CLCONV_LANES8(LD, p, s) CLCONV_LANES4(LD, p, s), LD(p, 4 * (s)), LD(p, 5 * (s)), \
    LD(p, 6 * (s)), LD(p, 7 * (s))
#define CLCONV_LANES16(LD, p, s) CLCONV_LANES8(LD, p, s), LD(p, 8 * (s)), LD(p, 9 * (s)), \
    LD(p, 10 * (s)), LD(p, 11 * (s)), LD(p, 12 * (s)), LD(p, 13 * (s)), LD(p, 14 * (s)), \
    LD(p, 15 * (s))
#define CLCONV_LANES(N, T, LD, p, s) ((T)(CLCONV_CAT(CLCONV_LANES, N)(LD, p, s)))
#define CLCONV_VLOAD(N, T, p) CLCONV_LANES(N, T, CLCONV_ELEM, p, 1)

#define CLCONV_VSTORE1(v, p) ((p)[0] = (v))
#define CLCONV_VSTORE2(v, p) do { (p)[0] = (v).s0; (p)[1] = (v).s1; } while (0)
#define CLCONV_VSTORE4(v, p) do { (p)[0] = (v).s0; (p)[1] = (v).s1; (p)[2] = (v).s2; \
                                  (p)[3] = (v).s3; } while (0)
#define CLCONV_VSTORE8(v, p) do { CLCONV_VSTORE4((v).lo, (p)); \
                                  CLCONV_VSTORE4((v).hi, (p) + 4); } while (0)
#define CLCONV_VSTORE16(v, p) do { CLCONV_VSTORE8((v).lo, (p)); \
                                   CLCONV_VSTORE8((v).hi, (p) + 8); } while (0)
#define CLCONV_VSTORE(N, v, p) CLCONV_CAT(CLCONV_VSTORE, N)(v, p)

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

/* ---- kernel arguments -----------------------------------------------------
 * The packed weights, the bias and the strided result, in the order every
 * forward kernel (conv_direct.cl, conv_gemm.cl, conv_rows.cl) takes them. */
#define CLCONV_FORWARD_OUT_PARAMS                                                       \
    __global const ACC_T *restrict wp,                                                  \
    __global const ACC_T *restrict bias, const int has_bias,                            \
    __global OUT_T *restrict y, const long y_off,                                       \
    const long ys_n, const long ys_c, const long ys_d, const long ys_h,                 \
    const long ys_w

/* The whole argument list of the kernels over a border-free input (conv_gemm,
 * conv_lanes): input, weights, bias and result, then the geometry. SW_ARG names
 * the W-stride argument (a kernel that builds the stride in passes another name). */
#define CLCONV_BORDER_FREE_PARAMS(SW_ARG)                                              \
    __global const ACC_T *restrict x, const long x_off,                                 \
    const long xs_n, const int xs_c, const int xs_d, const int xs_h,                    \
    CLCONV_FORWARD_OUT_PARAMS,                                                          \
    const int OD, const int OH, const int OW, const int KD,                             \
    const int SD, const int SH, const int SW_ARG, const int DD, const int DH,           \
    const int DW, const int G, const int CG, const int FG, const int NFB

/* ---- index helpers ------------------------------------------------------ */

/* The next digit of a mixed-radix flat index: returns *t % n and divides *t
 * by n. Kernels split their global id into coordinates with it, innermost
 * (fastest varying) axis first. */
inline int split_digit(long *t, const int n)
{
    const int d = (int)(*t % n);
    *t /= n;
    return d;
}

/* Kernel tap k of K as read from the caller's weight: reversed when the
 * convolution flips its kernel. */
inline int flip_tap(const int k, const int K, const int flip)
{
    return flip ? K - 1 - k : k;
}

#endif /* CLCONV_COMMON_H */
