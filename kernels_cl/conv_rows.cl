/* Row-blocked direct convolution for groups with one filter each (depthwise,
 * single-channel images, 1-D signals, 3-D volumes) and large kernels.
 *
 * One work-item computes OR consecutive output rows x (8 * NV) consecutive
 * output columns of one (sample, group): OR * NV float8 accumulators. The
 * output columns are the vector lanes: the stride along W (SW) is 1 (eight
 * consecutive input columns per vector) or 2 (every other one of sixteen,
 * which LLVM loads as two vectors and a shuffle). Each loaded input vector is reused by every
 * (output row, kernel row) pair that reads it: input row i of the block
 * feeds output row r through kernel row kh when r * SH + kh * DH == i, a
 * condition the compiler resolves after unrolling (SH, DH, KH, OR are build
 * parameters). Weights are read as scalars and broadcast.
 *
 * The input is read in place (any IN_T, contiguous along W, any other
 * strides) with the border rule applied here: blocks whose reads all lie
 * inside the input run the plain vector loop, blocks whose columns lie inside
 * map only their rows (then load plain vectors), the others gather each input
 * row through map_border (common.h) into a private row and load from it. No
 * pre-pass, one launch (BORDER_FREE=1 builds read pad.cl's copy instead).
 *
 *   global id 0: block of 8 * NV output columns (padded to WG_X)
 *   global id 1: od * ceil(OH / OR) + block of OR output rows (padded to WG_Y)
 *   global id 2: n * G + g
 * No barriers; out-of-range work-items return at once.
 *
 * Weights: [G][CG][KD][KH][KW] in ACC_T (pack.cl with FB = 1, flipped when
 * the convolution flips). Accumulation order per output: c, kd, kh, kw as in
 * conv_direct.cl. */
#include "common.h"

#ifndef NV
#define NV 2
#endif
#if NV < 1 || NV > 4
#error "NV (float8 vectors per output row) must be in 1..4"
#endif
#ifndef OR
#define OR 4
#endif
#if OR < 1 || OR > 8
#error "OR (output rows per work-item) must be in 1..8"
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
#if SW != 1 && SW != 2
#error "SW (stride along W) must be 1 or 2"
#endif
#ifndef SH
#define SH 1
#endif
#ifndef DH
#define DH 1
#endif
/* KW_UNROLL: how far the tap loop along W is unrolled (all of it by default;
 * long 1-D kernels use a partial unroll to keep the code small). */
#ifndef KW_UNROLL
#define KW_UNROLL KW
#endif
/* BORDER_FREE=1: the input is a padded copy large enough that no block
 * reads outside it (pad.cl); the border code is compiled out, which also
 * drops its per-work-item set-up from every block. */
#ifndef BORDER_FREE
#define BORDER_FREE 0
#endif
/* CI > 1: the W axis is the pixels x CI interleaved channels of a
 * channels-last image row (one kernel for every channel, the W dilation CI
 * times the pixel's), so that the border rule maps pixel columns and keeps
 * each element's channel (map_col below). */
#ifndef CI
#define CI 1
#endif
#ifndef WG_X
#define WG_X 1
#endif
#ifndef WG_Y
#define WG_Y 1
#endif

#define V8 CLCONV_CAT(ACC_T, 8)
#if defined(OUT_SAT) && ELEM_KIND != 2
#define STORE8(p, v) do { const CLCONV_CAT(OUT_SAT, 8) v_ = CLCONV_SAT8(v); \
    CLCONV_VSTORE(8, v_, p); } while (0)
#elif ELEM_KIND == 2
#define STORE8(p, v) do { V8 v_ = (v); const ACC_T *l_ = (const ACC_T *)&v_; \
    for (int j_ = 0; j_ < 8; ++j_) STORE_OUT((p), j_, l_[j_]); } while (0)
#else
#define STORE8(p, v) do { const V8 v_ = (v); CLCONV_VSTORE(8, v_, p); } while (0)
#endif
#define IN_ROWS ((OR - 1) * SH + (KH - 1) * DH + 1)
#define UNROLL(n) CLCONV_UNROLL(n)
/* The loop over the block's input rows is unrolled when the unrolled body
 * stays small: only then are the (row, kernel row) pairs resolved at compile
 * time, so each multiply-add is straight-line code with its weight known.
 * Left rolled, every multiply-add sits behind a compare and a branch and
 * reloads its weight. */
#ifndef ROWS_UNROLL_MAX
#define ROWS_UNROLL_MAX 96
#endif
#if IN_ROWS * KW_UNROLL <= ROWS_UNROLL_MAX
#define UNROLL_ROWS UNROLL(IN_ROWS)
#else
#define UNROLL_ROWS
#endif

/* Eight elements SW apart: one unaligned vector load after LLVM merges the
 * scalar reads when they are consecutive and of ACC_T (see CLCONV_LANES in
 * common.h). LOAD8_IN reads the input (converted to ACC_T), LOAD8_RB a
 * gathered private row (below). */
/* IN_VLOAD=1 (the host sets it for 8- to 32-bit integer inputs and float32
 * results): LLVM does not merge the scalar loads of a narrower type, so those
 * take vload8 and one conversion (at most 256 bits: no call-ABI change on AVX2). */
#ifndef IN_VLOAD
#define IN_VLOAD 0
#endif
#if IN_VLOAD && SW == 1
#define LOAD8_IN(p) CLCONV_CAT(convert_, V8)(vload8(0, (p)))
#else
#define LOAD8_IN(p) CLCONV_LANES(8, V8, LOAD_IN, p, SW)
#endif
#define LOAD8_RB(p) CLCONV_LANES(8, V8, CLCONV_ELEM, p, SW)

/* Column border blocks: each input row of the block is first gathered into a
 * private row (ROW_LEN = (8 * NV - 1) * SW + (KW - 1) * DW + 1 elements, every
 * column mapped by the border rule once) and the vectors are then read from
 * it, instead of mapping each lane of every (kernel column, vector) load: 10
 * mapped reads per row instead of 24 for a 3x3 kernel and one vector. The
 * host passes ROW_LEN; DW itself stays a kernel argument: as a constant,
 * LLVM turns the overlapping interior loads of wide kernels into shuffles,
 * which are slower than the loads. */
#ifndef ROW_LEN
#if BORDER_FREE
#define ROW_LEN ((8 * NV - 1) * SW + KW)  /* unused: the border code is compiled out */
#else
#error "ROW_LEN (elements of the gathered border row, which depend on DW) must be given"
#endif
#endif
#if CI > 1
/* Column i of CI interleaved channels: its pixel (rounded down) mapped by the
 * border rule among IW / CI pixels, its channel kept; -1 for the fill. */
inline long map_col(const long i, const long n)
{
    const long px = i >= 0 ? i / CI : -((CI - 1 - i) / CI);
    const long m = map_border(px, n / CI);
    return m < 0 ? -1 : m * CI + (i - px * CI);
}
#else
#define map_col(i, n) map_border(i, n)
#endif

inline void fill_row(ACC_T *rb, __global const IN_T *xr, const bool row_ok, const int c0,
                     const int IW, const ACC_T fill)
{
    for (int j = 0; j < ROW_LEN; ++j) {
        const long iw = map_col((long)c0 + j, IW);
        rb[j] = (row_ok && iw >= 0) ? LOAD_IN(xr, iw) : fill;
    }
}

/* The tap loops for one (channel, kernel depth) slice; ROW_PTR(i) sets xr
 * (and row_ok) for input row i of the block, LOADV(dst, kw, v) loads vector v
 * of kernel column kw into dst (a macro, not a function returning a vector:
 * a double8 return changes the call ABI on AVX2 and the compiler warns on
 * stderr). Both the interior and the border variants accumulate in the same
 * order, so results do not depend on where a block lies. */
#define ACCUMULATE(ROW_PTR, LOADV)                                                    \
    UNROLL_ROWS                                                                      \
    for (int i = 0; i < IN_ROWS; ++i) {                                              \
        ROW_PTR(i);                                                                  \
        UNROLL(KW_UNROLL)                                                            \
        for (int kw = 0; kw < KW; ++kw) {                                            \
            V8 xv[NV];                                                               \
            UNROLL(NV)                                                               \
            for (int v = 0; v < NV; ++v)                                             \
                LOADV(xv[v], kw, v);                                                 \
            UNROLL(OR)                                                               \
            for (int r = 0; r < OR; ++r) {                                           \
                const int t = i - r * SH;  /* = kh * DH when row i feeds row r */    \
                if (t >= 0 && t < KH * DH && t % DH == 0) {                          \
                    const V8 wv = (V8)(wk[(t / DH) * KW + kw]);                      \
                    UNROLL(NV)                                                       \
                    for (int v = 0; v < NV; ++v)                                     \
                        acc[r][v] = xv[v] * wv + acc[r][v];                          \
                }                                                                    \
            }                                                                        \
        }                                                                            \
    }

#define ROW_INTERIOR(i) __global const IN_T *xr = xd + (long)(ih0 + (i)) * xs_h + iw0
#define LOAD_INTERIOR(dst, kw, v) ((dst) = LOAD8_IN(xr + (kw) * DW + (v) * 8 * SW))
#define ROW_BORDER(i)                                                                \
    const long ihm = map_border((long)ih0 + (i), IH);                                \
    const bool row_ok = idm >= 0 && ihm >= 0;                                        \
    __global const IN_T *xr = xd + (row_ok ? idm * xs_d + ihm * xs_h : 0)
#define ROW_BUFFERED(i)                                                              \
    ROW_BORDER(i);                                                                   \
    ACC_T rb[ROW_LEN];                                                               \
    fill_row(rb, xr, row_ok, iw0, IW, fill)
#define LOAD_BUFFERED(dst, kw, v) ((dst) = LOAD8_RB(rb + (kw) * DW + (v) * 8 * SW))
/* PREFILL=1: a column border block gathers all IN_ROWS rows of a (channel,
 * depth) slice into one private array before its first multiply-add, instead
 * of each row just before its loads. A vector load that spans several scalar
 * stores still in flight waits for them to retire (no store-to-load
 * forwarding); gathered first, the rows are long written when they are read.
 * The host sets it on CPUs for arrays of at most a few hundred elements. */
#ifndef PREFILL
#define PREFILL 0
#endif
#define ROW_PREFILLED(i) const ACC_T *rb = rows_buf[i]
/* Blocks whose columns all lie inside the input (top / bottom rows of the
 * image): rows mapped by the border rule, columns read as plain vectors. */
#define LOAD_ROWS_ONLY(dst, kw, v) \
    ((dst) = row_ok ? LOAD8_IN(xr + iw0 + (kw) * DW + (v) * 8 * SW) : (V8)(fill))

/* EDGE=1: the first and the last column block of a row, the ones that read
 * the left and the right border, build their vectors lane by lane from
 * positions fixed at build time (PWB: padding elements before the row,
 * ROVER: elements past its end the last block reads, DW_CONST: the element
 * step of the kernel columns), so that the border rule folds away and the
 * in-row lanes are plain loads LLVM merges: no gathered private row. The last
 * block of a row is aligned to the row's end (it computes the columns before
 * it again and stores only its own), which makes its overhang ROVER whatever
 * the row's length. The host sets EDGE when every kernel column is unrolled
 * and the row is at least twice ROW_LEN long (one reflection maps every
 * border read), and PREFILL is off (rows gathered first are as fast);
 * other blocks keep the gathered rows below. */
#ifndef EDGE
#define EDGE 0
#endif
#if EDGE
#if !defined(PWB) || !defined(DW_CONST)
#error "EDGE needs PWB and DW_CONST"
#endif
/* The element position i (relative to the row start, < 0 inside the left
 * border) reads; -1: the fill. CI interleaved channels map by pixel. */
inline long edge_left(const int i, const int IW)
{
    if (i >= 0)
        return i;
#if BORDER == BORDER_CONSTANT
    return -1;
#elif BORDER == BORDER_WRAP
    return (long)IW + i;
#else
    const int px = -((CI - 1 - i) / CI);  /* the pixel, rounded down */
    const int ch = i - px * CI;
#if BORDER == BORDER_EDGE
    return ch;
#elif BORDER == BORDER_REFLECT
    return (long)(-px) * CI + ch;
#else
    return (long)(-px - 1) * CI + ch;
#endif
#endif
}
/* The element position q of the last block (relative to its first read
 * iw0) reads, as an index from the row start; -1: the fill. */
inline long edge_right(const int q, const int iw0, const int IW)
{
#ifdef ROVER
    const int last = ROW_LEN - 1 - ROVER;  /* q of the row's last element */
#else
    const int last = ROW_LEN - 1;
#endif
    if (q <= last)
        return (long)iw0 + q;
    const int d = q - last - 1;  /* elements past the row's end */
#if BORDER == BORDER_CONSTANT
    return -1;
#elif BORDER == BORDER_WRAP
    return d;
#else
    const int pd = d / CI, ch = d - pd * CI;
#if BORDER == BORDER_EDGE
    return (long)IW - CI + ch;
#elif BORDER == BORDER_REFLECT
    return (long)IW - 2 * CI - pd * CI + ch;
#else
    return (long)IW - CI - pd * CI + ch;
#endif
#endif
}
#define EDGE_VALUE(e) ((e) >= 0 ? LOAD_IN(xr, (e)) : fill)
#define LEFT_LANE(p, o) EDGE_VALUE(edge_left((p) + (o) - PWB, IW))
#define RIGHT_LANE(p, o) EDGE_VALUE(edge_right((p) + (o), iw0, IW))
#define LOAD_EDGE(LANE, dst, kw, v) ((dst) = row_ok \
    ? CLCONV_LANES(8, V8, LANE, (kw) * DW_CONST + (v) * 8 * SW, SW) : (V8)(fill))
#define LOAD_EDGE_LEFT(dst, kw, v) LOAD_EDGE(LEFT_LANE, dst, kw, v)
#define LOAD_EDGE_RIGHT(dst, kw, v) LOAD_EDGE(RIGHT_LANE, dst, kw, v)
#endif

__kernel CLCONV_VECTOR_STYLE __attribute__((reqd_work_group_size(WG_X, WG_Y, 1)))
void conv_rows(__global const IN_T *restrict x, const long x_off,
               const long xs_n, const long xs_c, const long xs_d, const long xs_h,
               CLCONV_FORWARD_OUT_PARAMS,
               const int ID, const int IH, const int IW,
               const int OD, const int OH, const int OW, const int KD,
               const int SD, const int DD, const int DW, const int G, const int CG,
               const int PD, const int PH, const int PW, const ACC_T fill)
{
    const int wb = get_global_id(0);
    const int rb = get_global_id(1);
    const int ng = get_global_id(2);
    const int nrb = (OH + OR - 1) / OR;
    if (wb * 8 * NV >= OW || rb >= OD * nrb)
        return;
    const int od = rb / nrb;
    const int oh0 = (rb % nrb) * OR;
    const int g = ng % G;
    const long n = ng / G;
    /* the first column this item stores, and the first it computes */
    const int ow_store = wb * 8 * NV;
#if EDGE
    const int ow0 = wb > 0 && wb == (OW - 1) / (8 * NV) ? OW - 8 * NV : ow_store;
#else
    const int ow0 = ow_store;
#endif
    /* first input depth / row / column of the block (may lie in the padding) */
    const int id0 = od * SD - PD;
    const int ih0 = oh0 * SH - PH;
    const int iw0 = ow0 * SW - PW;
    /* Interior blocks (every read, also those of rows / columns past the
     * output that are never stored, inside the input) take the plain path;
     * blocks touching the padding map each coordinate by the border rule. */
#if BORDER_FREE
    /* The caller's padded copy: every read of every block lies inside. */
    const bool cols_inside = true;
    const bool inside = true;
#else
    const bool cols_inside = iw0 >= 0 && iw0 + (8 * NV - 1) * SW + (KW - 1) * DW < IW;
    const bool inside = cols_inside && id0 >= 0 && id0 + (KD - 1) * DD < ID
        && ih0 >= 0 && ih0 + IN_ROWS - 1 < IH;
#endif
#if EDGE
    const bool wide = IW >= 2 * ROW_LEN;
    const bool edge_l = wide && wb == 0 && iw0 == -PWB;
#ifdef ROVER
    const bool edge_r = wide && wb > 0 && iw0 >= 0 && iw0 + ROW_LEN - 1 - ROVER == IW - 1;
#else
    const bool edge_r = false;
#endif
#endif

    __global const IN_T *xg = x + x_off + n * xs_n + (long)g * CG * xs_c;
    __global const ACC_T *w = wp + (long)g * CG * KD * KH * KW;

    V8 acc[OR][NV];
UNROLL(OR)
    for (int r = 0; r < OR; ++r)
UNROLL(NV)
        for (int v = 0; v < NV; ++v)
            acc[r][v] = (V8)(0);

    for (int c = 0; c < CG; ++c) {
        for (int kd = 0; kd < KD; ++kd) {
            __global const ACC_T *wk = w + (c * KD + kd) * KH * KW;
            if (inside) {
                __global const IN_T *xd = xg + c * xs_c + (long)(id0 + kd * DD) * xs_d;
                ACCUMULATE(ROW_INTERIOR, LOAD_INTERIOR)
            } else {
                /* A block that reads the border: rows (and depth) mapped by
                 * ROW_BORDER, columns by the load. */
                const long idm = map_border((long)id0 + kd * DD, ID);
                __global const IN_T *xd = xg + c * xs_c;
                if (cols_inside) {
                    ACCUMULATE(ROW_BORDER, LOAD_ROWS_ONLY)
                }
#if EDGE
                else if (edge_l) {
                    ACCUMULATE(ROW_BORDER, LOAD_EDGE_LEFT)
                } else if (edge_r) {
                    ACCUMULATE(ROW_BORDER, LOAD_EDGE_RIGHT)
                }
#endif
                else {
#if PREFILL
                    ACC_T rows_buf[IN_ROWS][ROW_LEN];
                    for (int i = 0; i < IN_ROWS; ++i) {
                        ROW_BORDER(i);
                        fill_row(rows_buf[i], xr, row_ok, iw0, IW, fill);
                    }
                    ACCUMULATE(ROW_PREFILLED, LOAD_BUFFERED)
#else
                    ACCUMULATE(ROW_BUFFERED, LOAD_BUFFERED)
#endif
                }
            }
        }
    }

    const ACC_T b = has_bias ? bias[g] : (ACC_T)(0);
    const V8 bv = (V8)(b);
    __global OUT_T *yo = y + y_off + n * ys_n + (long)g * ys_c + (long)od * ys_d
                       + ow0 * ys_w;
    /* Full blocks of a W-contiguous output: eight plain consecutive stores
     * per vector, which LLVM merges into one (vstore8 is an out-of-line call
     * on PoCL). Tail blocks and strided outputs store element by element. */
    const int skip = ow_store - ow0;  /* columns the block before stores */
    const bool full = ys_w == 1 && skip == 0 && ow0 + 8 * NV <= OW;
UNROLL(OR)
    for (int r = 0; r < OR; ++r) {
        const int oh = oh0 + r;
        if (oh >= OH)
            break;
        __global OUT_T *yr = yo + oh * ys_h;
        if (full) {
UNROLL(NV)
            for (int v = 0; v < NV; ++v)
                STORE8(yr + v * 8, acc[r][v] + bv);
        } else {
            ACC_T lanes[8] __attribute__((aligned(8 * sizeof(ACC_T))));
            for (int v = 0; v < NV; ++v) {
                *(V8 *)lanes = acc[r][v] + bv;
                for (int j = 0; j < 8 && ow0 + v * 8 + j < OW; ++j)
                    if (v * 8 + j >= skip)
                        STORE_OUT(yr, (v * 8 + j) * ys_w, lanes[j]);
            }
        }
    }
}
