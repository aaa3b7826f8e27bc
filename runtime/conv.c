/* conv: 2-D convolution, pooling and embedding rows, NCHW, in f32 and f64.
 *
 * A convolution is a matrix product per image and group: the input's windows are
 * laid out as the columns of a matrix (im2col), and
 *     y[n, g] [o/g, oh*ow] = W_g [o/g, c/g*kh*kw] @ cols[n, g] [c/g*kh*kw, oh*ow].
 * Its adjoints are products of the same matrices: cols = W_g^T @ dy[n, g] added back
 * into the windows (col2im) for dx, and dW_g = sum over n of dy[n, g] @ cols^T.
 * Output positions are cut into tiles so that the columns of a large image are not
 * all held at once (and so that a small batch can still be split); a 1x1 convolution
 * with stride 1 and no padding needs no columns (x is its own).  In f32 (and under
 * bf16), 5x5 and 3x3 convolutions of stride 1 with channels in multiples of 16 go to
 * winograd.c instead, on CPUs with AVX-512 (kernels.h's wino_*), and come back here
 * only without memory for its buffers.
 *
 * Each job of the pool calls OpenBLAS directly (single-threaded inside the pool; the
 * pool told it so) on whole images, groups and tiles, so the split, and with it every
 * result, depends only on the thread count.  The weight gradient is summed over the
 * batch in contiguous chunks, one buffer per chunk, added up in chunk order.
 *
 * Column buffers are each thread's, kept between calls (kernels.h's thread_scratch:
 * a buffer malloc'd and freed per call came back as fresh pages, zeroed by the kernel,
 * 14% of the CNN's step); without memory the same sums are computed by plain loops,
 * slowly but correctly.
 *
 * The file is written once for both element types: it includes itself with ELEM
 * defined as float, then as double, then (the convolutions only) as float with bf16
 * products.  Under bf16 the plain loops, used only without memory, stay f32. */
#ifndef ELEM

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "clones.h"
#include "kernels.h"
#include "nnd_abi.h"

/* Multiply-adds below which a call runs on one thread; and the bytes of columns
 * one tile may take (measured: smaller tiles make narrower products, which OpenBLAS
 * runs slower than the columns' trips through the cache cost). */
enum { MIN_SPLIT_WORK = 1 << 15, TILE_BYTES = 1024 << 10 };
/* Extra bytes the weight gradient may take for per-chunk sums. */
#define MAX_PARTIAL_BYTES ((int64_t)64 << 20)

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* ceil(a / b) for a >= 0, b > 0 */
static int64_t ceil_div(int64_t a, int64_t b) { return a / b + (a % b != 0); }

/* One convolution's derived sizes.  The columns are read from a copy of x with the
 * padding written out as zeros, [c/g, hp, wp], so that copying them needs no bounds
 * checks; hp and wp cover every row and column a window reaches (x itself when
 * there is no padding and the windows stay inside). */
typedef struct Geom {
    const NndConvShape *s;
    int64_t cg, og; /* input and output channels per group */
    int64_t k; /* c/g * kh * kw: rows of the columns */
    int64_t p; /* oh * ow: output positions per image */
    int64_t tile; /* positions per tile */
    int64_t tiles; /* tiles per image */
    int64_t hp, wp; /* the padded planes */
    int padded; /* whether x needs a padded copy */
    int pointwise; /* 1x1, stride 1, no padding: the columns are x itself */
} Geom;

/* min_tiles: cut each image into at least this many tiles (when they keep 32
 * positions), so that a small batch still spreads over the threads. */
static Geom geom_of(const NndConvShape *s, size_t elem, int64_t min_tiles)
{
    Geom g;
    g.s = s;
    g.cg = s->c / s->groups;
    g.og = s->o / s->groups;
    g.k = g.cg * s->kh * s->kw;
    g.p = s->oh * s->ow;
    int64_t reach_h = (s->oh - 1) * s->sh + (s->kh - 1) * s->dh + 1;
    int64_t reach_w = (s->ow - 1) * s->sw + (s->kw - 1) * s->dw + 1;
    g.padded = s->ph != 0 || s->pw != 0 || reach_h > s->h || reach_w > s->w;
    g.hp = g.padded ? max64(s->ph + s->h, reach_h) : s->h;
    g.wp = g.padded ? max64(s->pw + s->w, reach_w) : s->w;
    g.pointwise = s->kh == 1 && s->kw == 1 && s->sh == 1 && s->sw == 1 && !g.padded &&
                  s->oh == s->h && s->ow == s->w;
    int64_t most = g.pointwise ? g.p : (int64_t)TILE_BYTES / (max64(g.k, 1) * (int64_t)elem);
    /* at least 32 positions keep the product's kernels busy; tiles of equal size */
    most = max64(most, 32);
    g.tiles = g.p > 0 ? max64(ceil_div(g.p, most), min64(min_tiles, g.p / 32)) : 1;
    g.tile = g.p > 0 ? ceil_div(g.p, g.tiles) : 0;
    g.tiles = g.p > 0 ? ceil_div(g.p, g.tile) : 1; /* so that no tile is empty */
    return g;
}

/* Whether some sum of a convolution has no terms, so its result is all zeros. */
static int conv_no_terms(const NndConvShape *s)
{
    return s->n <= 0 || s->c < s->groups || s->o < s->groups || s->oh <= 0 || s->ow <= 0 ||
           s->kh <= 0 || s->kw <= 0;
}

const char *nnd_conv2d_method(const NndConvShape *s, NndDType dtype, int bf16)
{
    if (dtype == NND_F32 && wino_chosen(s))
        return s->kh == 5
                   ? (bf16 ? "Winograd F(2x2, 5x5) on bf16 operands" : "Winograd F(2x2, 5x5)")
                   : (bf16 ? "Winograd F(4x4, 3x3) on bf16 operands" : "Winograd F(4x4, 3x3)");
    if (geom_of(s, sizeof(float), 1).pointwise)
        return dtype == NND_F32 && bf16 ? "1x1 products in bf16" : "1x1 products";
    return dtype == NND_F32 && bf16 ? "im2col products in bf16" : "im2col products";
}

static int64_t grain_for(int64_t item_work)
{
    return item_work >= MIN_SPLIT_WORK ? 1 : ceil_div(MIN_SPLIT_WORK, max64(item_work, 1));
}

#define ELEM float
#define SFX f32
#define GEMM f32_sgemm
#define WINOGRAD 0 /* 5x5 and 3x3 convolutions of stride 1 (winograd.c), f32 operands */
#include "conv.c"
#undef ELEM
#undef SFX
#undef GEMM
#undef WINOGRAD

#define ELEM double
#define SFX f64
#define GEMM cblas_dgemm
#include "conv.c"
#undef ELEM
#undef SFX
#undef GEMM

/* precision = bf16: the convolutions again, their products with bf16 operands and f32
 * sums (kernels.h); pooling and embedding rows have no products and are not repeated */
#define ELEM float
#define SFX bf16
#define GEMM bf16_sgemm
#define CONV_ONLY
#define WINOGRAD 1 /* the same, on operands rounded to bf16 (faster than bf16 products) */
#include "conv.c"
#undef ELEM
#undef SFX
#undef GEMM
#undef CONV_ONLY
#undef WINOGRAD

#else /* ELEM: the code for one element type */

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define F(name) CAT(name, SFX)

#define T ELEM

/* d[0:n] = s[0:n] (the two do not overlap) for the short runs of im2col (an output
 * row: 7 to 28 values in the CNN), inline: memcpy's call and size dispatch cost more
 * than the copy.  Whole blocks of 8, then the last 8 again (overlapping). */
static inline void F(copy_run)(T *restrict d, const T *restrict s, int64_t n)
{
    if (n >= 8) {
        for (int64_t q = 0; q + 8 <= n; q += 8)
            memcpy(d + q, s + q, 8 * sizeof(T));
        memcpy(d + n - 8, s + n - 8, 8 * sizeof(T));
    } else if (n >= 4) {
        memcpy(d, s, 4 * sizeof(T));
        memcpy(d + n - 4, s + n - 4, 4 * sizeof(T));
    } else {
        for (int64_t q = 0; q < n; q++)
            d[q] = s[q];
    }
}

/* ---- columns ------------------------------------------------------------------------
 * col[(ci * kh + ki) * kw + kj, q] = xp[ci, oy sh + ki dh, ox sw + kj dw] for output
 * position p0 + q = oy * ow + ox, xp being x padded (Geom).  Each row of col is
 * copied one output row at a time. */
static void F(im2col)(const Geom *g, const T *xp, int64_t p0, int64_t p1, T *col)
{
    const NndConvShape *s = g->s;
    const int64_t ow = s->ow, sw = s->sw, row_step = s->sh * g->wp;
    const int64_t oy0 = p0 / ow, ox_first = p0 % ow, np = p1 - p0;
    T *dst = col;
    for (int64_t ci = 0; ci < g->cg; ci++)
        for (int64_t ki = 0; ki < s->kh; ki++)
            for (int64_t kj = 0; kj < s->kw; kj++) {
                /* xp + at: the window's first element in this output row */
                int64_t at = (ci * g->hp + oy0 * s->sh + ki * s->dh) * g->wp + kj * s->dw;
                for (int64_t ox0 = ox_first, left = np; left > 0; ox0 = 0, at += row_step) {
                    int64_t len = min64(ow - ox0, left);
                    const T *src = xp + at + ox0 * sw;
                    if (sw == 1)
                        F(copy_run)(dst, src, len);
                    else
                        for (int64_t q = 0; q < len; q++)
                            dst[q] = src[q * sw];
                    dst += len;
                    left -= len;
                }
            }
}

/* d[0:n] += s[0:n] (the two do not overlap), in blocks of 4 that the compiler turns
 * into vector adds. */
static void F(add_run)(T *restrict d, const T *restrict s, int64_t n)
{
    int64_t q = 0;
    for (; q + 4 <= n; q += 4) {
        d[q] += s[q];
        d[q + 1] += s[q + 1];
        d[q + 2] += s[q + 2];
        d[q + 3] += s[q + 3];
    }
    for (; q < n; q++)
        d[q] += s[q];
}

/* The adjoint of im2col: xp[ci, ...] += col[..., q] over the same positions. */
static void F(col2im_add)(const Geom *g, const T *col, int64_t p0, int64_t p1, T *xp)
{
    const NndConvShape *s = g->s;
    const int64_t ow = s->ow, sw = s->sw, row_step = s->sh * g->wp;
    const int64_t oy0 = p0 / ow, ox_first = p0 % ow, np = p1 - p0;
    const T *src = col;
    for (int64_t ci = 0; ci < g->cg; ci++)
        for (int64_t ki = 0; ki < s->kh; ki++)
            for (int64_t kj = 0; kj < s->kw; kj++) {
                int64_t at = (ci * g->hp + oy0 * s->sh + ki * s->dh) * g->wp + kj * s->dw;
                for (int64_t ox0 = ox_first, left = np; left > 0; ox0 = 0, at += row_step) {
                    int64_t len = min64(ow - ox0, left);
                    T *d = xp + at + ox0 * sw;
                    if (sw == 1)
                        F(add_run)(d, src, len);
                    else
                        for (int64_t q = 0; q < len; q++)
                            d[q * sw] += src[q];
                    src += len;
                    left -= len;
                }
            }
}

/* ---- scratch: one block per job -----------------------------------------------------
 * The columns of one tile, and a padded plane set [c/g, hp, wp] (when x needs one)
 * whose borders stay zero; it remembers which image and group it holds. */
typedef struct F(Scratch) {
    T *col, *xp;
    int64_t held; /* n * groups + group in xp, or -1 */
} F(Scratch);

/* Returns 0, or -1 without memory (then the job uses plain loops). */
static int F(scratch_open)(F(Scratch) * sc, const Geom *g)
{
    size_t ncol = (size_t)(g->k * g->tile), nxp = g->padded ? (size_t)(g->cg * g->hp * g->wp) : 0;
    sc->held = -1;
    sc->col = thread_scratch(SCRATCH_CONV, (ncol + nxp) * sizeof(T));
    sc->xp = sc->col ? sc->col + ncol : NULL;
    if (sc->xp)
        memset(sc->xp, 0, nxp * sizeof(T));
    return sc->col ? 0 : -1;
}

/* The planes of image n, group gi, padded: x itself when no padding is needed. */
static const T *F(scratch_padded)(F(Scratch) * sc, const Geom *g, const T *x, int64_t n, int64_t gi)
{
    const NndConvShape *s = g->s;
    const T *xg = x + (n * s->c + gi * g->cg) * s->h * s->w;
    if (!g->padded)
        return xg;
    int64_t key = n * s->groups + gi;
    if (sc->held != key) {
        for (int64_t ci = 0; ci < g->cg; ci++)
            for (int64_t iy = 0; iy < s->h; iy++)
                memcpy(sc->xp + (ci * g->hp + iy + s->ph) * g->wp + s->pw,
                       xg + (ci * s->h + iy) * s->w, (size_t)s->w * sizeof(T));
        sc->held = key;
    }
    return sc->xp;
}

/* ---- plain loops, for when there is no memory for columns --------------------------- */

/* y[n, g, :, p0:p1] for one image and group */
static void F(conv_direct)(const Geom *g, const T *xg, const T *wg, int64_t p0, int64_t p1, T *yg)
{
    const NndConvShape *s = g->s;
    for (int64_t oc = 0; oc < g->og; oc++)
        for (int64_t p = p0; p < p1; p++) {
            int64_t oy = p / s->ow, ox = p % s->ow;
            T sum = 0;
            for (int64_t ci = 0; ci < g->cg; ci++)
                for (int64_t ki = 0; ki < s->kh; ki++) {
                    int64_t iy = oy * s->sh - s->ph + ki * s->dh;
                    if (iy < 0 || iy >= s->h)
                        continue;
                    for (int64_t kj = 0; kj < s->kw; kj++) {
                        int64_t ix = ox * s->sw - s->pw + kj * s->dw;
                        if (ix >= 0 && ix < s->w)
                            sum += wg[((oc * g->cg + ci) * s->kh + ki) * s->kw + kj] *
                                   xg[(ci * s->h + iy) * s->w + ix];
                    }
                }
            yg[oc * g->p + p] = sum;
        }
}

/* dx[n, g] += W_g^T dy[n, g], scattered over the windows */
static void F(grad_input_direct)(const Geom *g, const T *dyg, const T *wg, T *dxg)
{
    const NndConvShape *s = g->s;
    for (int64_t oc = 0; oc < g->og; oc++)
        for (int64_t p = 0; p < g->p; p++) {
            int64_t oy = p / s->ow, ox = p % s->ow;
            T d = dyg[oc * g->p + p];
            for (int64_t ci = 0; ci < g->cg; ci++)
                for (int64_t ki = 0; ki < s->kh; ki++) {
                    int64_t iy = oy * s->sh - s->ph + ki * s->dh;
                    if (iy < 0 || iy >= s->h)
                        continue;
                    for (int64_t kj = 0; kj < s->kw; kj++) {
                        int64_t ix = ox * s->sw - s->pw + kj * s->dw;
                        if (ix >= 0 && ix < s->w)
                            dxg[(ci * s->h + iy) * s->w + ix] +=
                                wg[((oc * g->cg + ci) * s->kh + ki) * s->kw + kj] * d;
                    }
                }
        }
}

/* dw rows [r0, r1) of group g += dy[n, rows] cols[n, g]^T */
static void F(grad_weight_direct)(const Geom *g, const T *xg, const T *dy_rows, int64_t rows,
                                  T *dw_rows)
{
    const NndConvShape *s = g->s;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t ci = 0; ci < g->cg; ci++)
            for (int64_t ki = 0; ki < s->kh; ki++)
                for (int64_t kj = 0; kj < s->kw; kj++) {
                    T sum = 0;
                    for (int64_t p = 0; p < g->p; p++) {
                        int64_t oy = p / s->ow, ox = p % s->ow;
                        int64_t iy = oy * s->sh - s->ph + ki * s->dh;
                        int64_t ix = ox * s->sw - s->pw + kj * s->dw;
                        if (iy >= 0 && iy < s->h && ix >= 0 && ix < s->w)
                            sum += dy_rows[r * g->p + p] * xg[(ci * s->h + iy) * s->w + ix];
                    }
                    dw_rows[r * g->k + (ci * s->kh + ki) * s->kw + kj] += sum;
                }
}

typedef struct F(ConvJob) {
    Geom g;
    const T *x, *w, *dy;
    T *y, *dx;
    T *dw; /* grad_weight: chunk 0's sums */
    T **parts; /* grad_weight: chunk b's sums, b >= 1 */
    int64_t chunks, blocks; /* grad_weight: batch chunks x blocks of output channels */
    int ep; /* forward: the epilogue (NND_EP_BIAS with bias[o], NND_EP_RELU, or both) */
    const T *bias;
} F(ConvJob);

/* The forward's epilogue on rows channels x n outputs (rows ld apart; channel i's bias
 * is bias[i]), as the step's loop computes it: y + bias, then y > 0 ? y : 0. */
VECTOR_CLONES static void F(conv_epilogue)(T *restrict y, int64_t ld, const T *restrict bias,
                                           int64_t rows, int64_t n, int ep)
{
    for (int64_t i = 0; i < rows; i++, y += ld) {
        T b = bias ? bias[i] : 0;
        if (ep == NND_EP_BIAS)
            for (int64_t j = 0; j < n; j++)
                y[j] += b;
        else if (ep == (NND_EP_BIAS | NND_EP_RELU))
            for (int64_t j = 0; j < n; j++) {
                T v = y[j] + b;
                y[j] = v <= 0 ? 0 : v; /* NaN stays NaN */
            }
        else if (ep == NND_EP_RELU)
            for (int64_t j = 0; j < n; j++)
                y[j] = y[j] <= 0 ? 0 : y[j];
    }
}

/* ---- forward: items are (image, group, tile) ---------------------------------------- */
static void F(conv_range)(void *ctx, int64_t begin, int64_t end)
{
    const F(ConvJob) *j = ctx;
    const Geom *g = &j->g;
    const NndConvShape *s = g->s;
    F(Scratch) sc = {0};
    int ok = g->pointwise || F(scratch_open)(&sc, g) == 0;
    for (int64_t it = begin; it < end; it++) {
        int64_t t = it % g->tiles, ng = it / g->tiles;
        int64_t n = ng / s->groups, gi = ng % s->groups;
        int64_t p0 = t * g->tile, p1 = min64(g->p, p0 + g->tile);
        const T *wg = j->w + gi * g->og * g->k;
        T *yg = j->y + (n * s->o + gi * g->og) * g->p;
        if (!ok) {
            F(conv_direct)(g, j->x + (n * s->c + gi * g->cg) * s->h * s->w, wg, p0, p1, yg);
        } else {
            const T *b;
            int64_t ldb;
            if (g->pointwise) {
                b = j->x + (n * s->c + gi * g->cg) * g->p + p0;
                ldb = g->p;
            } else {
                F(im2col)(g, F(scratch_padded)(&sc, g, j->x, n, gi), p0, p1, sc.col);
                b = sc.col;
                ldb = p1 - p0;
            }
            GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->og, (int)(p1 - p0), (int)g->k,
                 1, wg, (int)g->k, b, (int)ldb, 0, yg + p0, (int)g->p);
        }
        if (j->ep) { /* on the item's outputs while they are in cache */
            const T *bias = j->bias ? j->bias + gi * g->og : NULL;
            F(conv_epilogue)(yg + p0, g->p, bias, g->og, p1 - p0, j->ep);
        }
    }
}

void CAT(F(nnd_conv2d), ep)(NndPool *pool, const NndConvShape *s, const T *x, const T *w, T *y,
                            int ep, const T *bias)
{
    if (s->n <= 0 || s->o <= 0 || s->oh <= 0 || s->ow <= 0)
        return;
    if (conv_no_terms(s)) {
        int64_t plane = s->oh * s->ow;
        memset(y, 0, (size_t)(s->n * s->o * plane) * sizeof(T));
        for (int64_t n = 0; ep && n < s->n; n++)
            F(conv_epilogue)(y + n * s->o * plane, plane, bias, s->o, plane, ep);
        return;
    }
#ifdef WINOGRAD
    if (wino_chosen(s) && wino_conv2d(pool, s, x, w, y, WINOGRAD, ep, bias) == 0)
        return;
#endif
    int64_t units = s->n * s->groups, threads = nnd_pool_threads(pool);
    F(ConvJob) j = {.g = geom_of(s, sizeof(T), ceil_div(threads, units)), .x = x, .w = w, .y = y};
    j.ep = ep;
    j.bias = bias;
    int64_t items = s->n * s->groups * j.g.tiles;
    nnd_parallel_for(pool, F(conv_range), &j, items, grain_for(j.g.og * j.g.k * j.g.tile));
}

void F(nnd_conv2d)(NndPool *pool, const NndConvShape *s, const T *x, const T *w, T *y)
{
    CAT(F(nnd_conv2d), ep)(pool, s, x, w, y, 0, NULL);
}

/* ---- grad_input: items are (image, group) -------------------------------------------
 * The columns W_g^T dy are added into a zeroed padded plane set, whose inside is
 * then dx. */
static void F(grad_input_range)(void *ctx, int64_t begin, int64_t end)
{
    const F(ConvJob) *j = ctx;
    const Geom *g = &j->g;
    const NndConvShape *s = g->s;
    F(Scratch) sc = {0};
    int ok = g->pointwise || F(scratch_open)(&sc, g) == 0;
    for (int64_t it = begin; it < end; it++) {
        int64_t n = it / s->groups, gi = it % s->groups;
        T *dxg = j->dx + (n * s->c + gi * g->cg) * s->h * s->w;
        const T *wg = j->w + gi * g->og * g->k;
        const T *dyg = j->dy + (n * s->o + gi * g->og) * g->p;
        if (g->pointwise) {
            /* dx[n, g] = W_g^T dy[n, g], one product per tile */
            for (int64_t t = 0; t < g->tiles; t++) {
                int64_t p0 = t * g->tile, p1 = min64(g->p, p0 + g->tile);
                GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)g->k, (int)(p1 - p0), (int)g->og,
                     1, wg, (int)g->k, dyg + p0, (int)g->p, 0, dxg + p0, (int)g->p);
            }
            continue;
        }
        if (!ok) {
            memset(dxg, 0, (size_t)(g->cg * s->h * s->w) * sizeof(T));
            F(grad_input_direct)(g, dyg, wg, dxg);
            continue;
        }
        T *acc = g->padded ? sc.xp : dxg;
        memset(acc, 0, (size_t)(g->cg * g->hp * g->wp) * sizeof(T));
        for (int64_t t = 0; t < g->tiles; t++) {
            int64_t p0 = t * g->tile, p1 = min64(g->p, p0 + g->tile);
            GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)g->k, (int)(p1 - p0), (int)g->og, 1,
                 wg, (int)g->k, dyg + p0, (int)g->p, 0, sc.col, (int)(p1 - p0));
            F(col2im_add)(g, sc.col, p0, p1, acc);
        }
        if (g->padded)
            for (int64_t ci = 0; ci < g->cg; ci++)
                for (int64_t iy = 0; iy < s->h; iy++)
                    memcpy(dxg + (ci * s->h + iy) * s->w,
                           acc + (ci * g->hp + iy + s->ph) * g->wp + s->pw,
                           (size_t)s->w * sizeof(T));
    }
}

void F(nnd_conv2d_grad_input)(NndPool *pool, const NndConvShape *s, const T *dy, const T *w, T *dx)
{
    if (s->n <= 0 || s->c <= 0 || s->h <= 0 || s->w <= 0)
        return;
    if (conv_no_terms(s)) {
        memset(dx, 0, (size_t)(s->n * s->c * s->h * s->w) * sizeof(T));
        return;
    }
#ifdef WINOGRAD
    if (wino_chosen(s) && wino_conv2d_grad_input(pool, s, dy, w, dx, WINOGRAD) == 0)
        return;
#endif
    F(ConvJob) j = {.g = geom_of(s, sizeof(T), 1), .w = w, .dy = dy, .dx = dx};
    nnd_parallel_for(pool, F(grad_input_range), &j, s->n * s->groups,
                     grain_for(j.g.og * j.g.k * j.g.p));
}

/* ---- grad_weight: items are (batch chunk, block of output channels) -----------------
 * Chunk b sums its images into its own buffer (chunk 0 into dw); the buffers are then
 * added into dw in chunk order, so the bits depend only on the number of chunks. */
static void F(grad_weight_range)(void *ctx, int64_t begin, int64_t end)
{
    const F(ConvJob) *j = ctx;
    const Geom *g = &j->g;
    const NndConvShape *s = g->s;
    F(Scratch) sc = {0};
    int ok = g->pointwise || F(scratch_open)(&sc, g) == 0;
    for (int64_t it = begin; it < end; it++) {
        int64_t b = it / j->blocks, q = it % j->blocks;
        int64_t n0 = s->n * b / j->chunks, n1 = s->n * (b + 1) / j->chunks;
        int64_t o0 = s->o * q / j->blocks, o1 = s->o * (q + 1) / j->blocks;
        T *acc = b == 0 ? j->dw : j->parts[b - 1];
        memset(acc + o0 * g->k, 0, (size_t)((o1 - o0) * g->k) * sizeof(T));
        for (int64_t n = n0; n < n1; n++)
            for (int64_t gi = o0 / g->og; gi * g->og < o1; gi++) {
                int64_t r0 = max64(o0, gi * g->og), r1 = min64(o1, (gi + 1) * g->og);
                const T *dyr = j->dy + (n * s->o + r0) * g->p;
                T *dwr = acc + r0 * g->k;
                if (!ok) {
                    F(grad_weight_direct)
                    (g, j->x + (n * s->c + gi * g->cg) * s->h * s->w, dyr, r1 - r0, dwr);
                    continue;
                }
                const T *xp = g->pointwise ? j->x + (n * s->c + gi * g->cg) * g->p
                                           : F(scratch_padded)(&sc, g, j->x, n, gi);
                for (int64_t t = 0; t < g->tiles; t++) {
                    int64_t p0 = t * g->tile, p1 = min64(g->p, p0 + g->tile);
                    const T *cb = xp + p0;
                    int64_t ldb = g->p;
                    if (!g->pointwise) {
                        F(im2col)(g, xp, p0, p1, sc.col);
                        cb = sc.col;
                        ldb = p1 - p0;
                    }
                    GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(r1 - r0), (int)g->k,
                         (int)(p1 - p0), 1, dyr + p0, (int)g->p, cb, (int)ldb, 1, dwr, (int)g->k);
                }
            }
    }
}

static void F(sum_parts_range)(void *ctx, int64_t begin, int64_t end)
{
    const F(ConvJob) *j = ctx;
    for (int64_t b = 1; b < j->chunks; b++) {
        const T *part = j->parts[b - 1];
        for (int64_t i = begin; i < end; i++)
            j->dw[i] += part[i];
    }
}

void F(nnd_conv2d_grad_weight)(NndPool *pool, const NndConvShape *s, const T *x, const T *dy, T *dw)
{
    int64_t size = s->o * (s->c / s->groups) * s->kh * s->kw;
    if (s->o <= 0 || s->c < s->groups || s->kh <= 0 || s->kw <= 0)
        return;
    if (conv_no_terms(s)) {
        memset(dw, 0, (size_t)size * sizeof(T));
        return;
    }
#ifdef WINOGRAD
    if (wino_chosen(s) && wino_conv2d_grad_weight(pool, s, x, dy, dw, WINOGRAD) == 0)
        return;
#endif
    F(ConvJob) j = {.g = geom_of(s, sizeof(T), 1), .x = x, .dy = dy, .dw = dw};
    int64_t threads = nnd_pool_threads(pool);
    int64_t work = s->n * s->o * j.g.k * j.g.p;
    if (work < 2 * MIN_SPLIT_WORK)
        threads = 1;
    /* chunks of the batch (each with its own sums, within a memory budget), and the
     * threads left over split the output channels */
    int64_t chunks = min64(s->n, threads);
    chunks = max64(1, min64(chunks, 1 + MAX_PARTIAL_BYTES / (size * (int64_t)sizeof(T))));
    T *parts[256]; /* the pool has at most 256 threads */
    chunks = min64(chunks, 256);
    T *block = chunks > 1 ? thread_scratch(SCRATCH_PARTS, (size_t)((chunks - 1) * size) * sizeof(T))
                          : NULL;
    chunks = block ? chunks : 1;
    for (int64_t b = 0; b < chunks - 1; b++)
        parts[b] = block + b * size;
    j.chunks = chunks;
    j.blocks = max64(1, min64(s->o, threads / chunks));
    j.parts = parts;
    nnd_parallel_for(pool, F(grad_weight_range), &j, j.chunks * j.blocks, 1);
    if (chunks > 1)
        nnd_parallel_for(pool, F(sum_parts_range), &j, size, 1 << 14);
}

#ifndef CONV_ONLY
/* ---- pooling: items are (image, channel) planes -------------------------------------- */

/* The window of output (i, j), clipped to x: rows [*a0, *a1) and columns [*b0, *b1)
 * of the plane. */
static void F(pool_window)(const NndPoolShape *s, int64_t i, int64_t jj, int64_t *a0, int64_t *a1,
                           int64_t *b0, int64_t *b1)
{
    int64_t iy = i * s->sh - s->ph, ix = jj * s->sw - s->pw;
    *a0 = max64(iy, 0);
    *a1 = min64(iy + s->kh, s->h);
    *b0 = max64(ix, 0);
    *b1 = min64(ix + s->kw, s->w);
}

typedef struct F(PoolJob) {
    const NndPoolShape *s;
    const T *x, *v;
    T *out;
    int scatter; /* max pooling: the adjoint (v and out swap their plane sizes) */
    const T *mask; /* the adjoint's epilogue: out = mask > 0 ? out : 0, or NULL */
} F(PoolJob);

/* Max pooling over one plane.  Each window picks the offset of its first maximum, in
 * row-major order over the positions inside x (padding never wins); a NaN beats
 * every number (max_pool2d propagates NaN), the first NaN winning.  When every value
 * is -inf, or all are NaN, the first position inside x is picked.  A window wholly
 * in the padding (PyTorch forbids such shapes: padding is at most half the kernel)
 * picks nothing: gather gives 0 there and scatter adds nothing.
 *   gather:  out[i, j] = in[picked]    (out [oh, ow], in shaped like x)
 *   scatter: out = 0, out[picked] += in[i, j]  (out shaped like x, in [oh, ow]) */
static void F(maxpool_plane)(const NndPoolShape *s, const T *xp, const T *in, T *out, int scatter)
{
    const int64_t w = s->w;
    if (scatter)
        memset(out, 0, (size_t)(s->h * w) * sizeof(T));
    for (int64_t i = 0; i < s->oh; i++) {
        int64_t iy = i * s->sh - s->ph;
        int64_t a0 = max64(iy, 0), a1 = min64(iy + s->kh, s->h);
        for (int64_t j = 0; j < s->ow; j++) {
            int64_t ix = j * s->sw - s->pw;
            int64_t b0 = max64(ix, 0), b1 = min64(ix + s->kw, w);
            int64_t best = -1;
            if (a0 < a1 && b0 < b1) {
                best = a0 * w + b0;
                T bv = xp[best];
                /* !(v <= bv): v is larger, or v is NaN; once bv is NaN it stays.
                 * Branch-free: which value wins is data, and mispredicts cost more
                 * than the selects. */
                for (int64_t a = a0; a < a1; a++)
                    for (int64_t b = b0; b < b1; b++) {
                        T v = xp[a * w + b];
                        int take = !(v <= bv) & (bv == bv);
                        bv = take ? v : bv;
                        best = take ? a * w + b : best;
                    }
            }
            if (scatter) {
                if (best >= 0)
                    out[best] += in[i * s->ow + j];
            } else
                out[i * s->ow + j] = best >= 0 ? in[best] : 0;
        }
    }
}

/* 2x2 windows, stride 2, no padding (the common case) in one pass without bounds
 * or loops per window; the same picks as maxpool_plane. */
static int F(is_2x2)(const NndPoolShape *s)
{
    return s->kh == 2 && s->kw == 2 && s->sh == 2 && s->sw == 2 && s->ph == 0 && s->pw == 0 &&
           s->oh == s->h / 2 && s->ow == s->w / 2;
}

/* which of a, b (row 0), c, d (row 1) maxpool_plane picks: 0..3 */
static inline int F(pick4)(T a, T b, T c, T d)
{
    int k = 0;
    T m = a;
    int t = !(b <= m) & (m == m);
    k = t ? 1 : k;
    m = t ? b : m;
    t = !(c <= m) & (m == m);
    k = t ? 2 : k;
    m = t ? c : m;
    t = !(d <= m) & (m == m);
    return t ? 3 : k;
}

static void F(maxpool_2x2)(const NndPoolShape *s, const T *xp, const T *in, T *out, int scatter)
{
    const int64_t w = s->w;
    if (scatter && (s->h % 2 || w % 2))
        memset(out, 0, (size_t)(s->h * w) * sizeof(T)); /* an odd edge is never picked */
    for (int64_t i = 0; i < s->oh; i++) {
        const T *x0 = xp + 2 * i * w, *x1 = x0 + w;
        if (scatter) {
            T *o0 = out + 2 * i * w, *o1 = o0 + w;
            const T *d = in + i * s->ow;
            for (int64_t j = 0; j < s->ow; j++) {
                int k = F(pick4)(x0[2 * j], x0[2 * j + 1], x1[2 * j], x1[2 * j + 1]);
                T v = d[j];
                o0[2 * j] = k == 0 ? v : 0;
                o0[2 * j + 1] = k == 1 ? v : 0;
                o1[2 * j] = k == 2 ? v : 0;
                o1[2 * j + 1] = k == 3 ? v : 0;
            }
        } else if (in == xp) {
            /* max_pool2d itself: the maximum, or the first NaN */
            T *o = out + i * s->ow;
            for (int64_t j = 0; j < s->ow; j++) {
                T a = x0[2 * j], b = x0[2 * j + 1], c = x1[2 * j], d = x1[2 * j + 1];
                T m = (!(b <= a) & (a == a)) ? b : a;
                m = (!(c <= m) & (m == m)) ? c : m;
                o[j] = (!(d <= m) & (m == m)) ? d : m;
            }
        } else {
            const T *v0 = in + 2 * i * w, *v1 = v0 + w;
            T *o = out + i * s->ow;
            for (int64_t j = 0; j < s->ow; j++) {
                int k = F(pick4)(x0[2 * j], x0[2 * j + 1], x1[2 * j], x1[2 * j + 1]);
                o[j] = (k < 2 ? v0 : v1)[2 * j + (k & 1)];
            }
        }
    }
}

/* Gather: v and out are planes of the input's and the output's size; scatter: of the
 * output's and the input's. */
static void F(maxpool_range)(void *ctx, int64_t begin, int64_t end)
{
    const F(PoolJob) *j = ctx;
    const NndPoolShape *s = j->s;
    void (*plane)(const NndPoolShape *, const T *, const T *, T *, int) =
        F(is_2x2)(s) ? F(maxpool_2x2) : F(maxpool_plane);
    int64_t in = s->h * s->w, outp = s->oh * s->ow;
    int64_t vsize = j->scatter ? outp : in, osize = j->scatter ? in : outp;
    for (int64_t pl = begin; pl < end; pl++) {
        const T *xp = j->x + pl * in, *v = j->v + pl * vsize;
        T *o = j->out + pl * osize;
        /* f32 2x2 windows: AVX-512 lanes where the CPU has them (kernels.c) */
        if (!(sizeof(T) == sizeof(float) && plane == F(maxpool_2x2) &&
              maxpool_2x2_own(s, (const float *)xp, (const float *)v, (float *)o, j->scatter)))
            plane(s, xp, v, o, j->scatter);
        if (j->mask) /* relu's derivative, on the plane while it is in cache */
            F(epilogue)(o, osize, NULL, j->mask + pl * osize, osize, 1, osize, NND_EP_MASK);
    }
}

/* avg_pool2d: y = (sum of the window inside x) / (kh kw) */
static void F(avgpool_range)(void *ctx, int64_t begin, int64_t end)
{
    const F(PoolJob) *j = ctx;
    const NndPoolShape *s = j->s;
    T div = (T)(s->kh * s->kw);
    for (int64_t pl = begin; pl < end; pl++) {
        const T *xp = j->x + pl * s->h * s->w;
        T *op = j->out + pl * s->oh * s->ow;
        for (int64_t i = 0; i < s->oh; i++)
            for (int64_t jj = 0; jj < s->ow; jj++) {
                int64_t a0, a1, b0, b1;
                F(pool_window)(s, i, jj, &a0, &a1, &b0, &b1);
                T sum = 0;
                for (int64_t a = a0; a < a1; a++)
                    for (int64_t b = b0; b < b1; b++)
                        sum += xp[a * s->w + b];
                op[i * s->ow + jj] = sum / div;
            }
    }
}

/* its adjoint: dx = 0, then dy / (kh kw) added over each window inside x */
static void F(avgpool_grad_range)(void *ctx, int64_t begin, int64_t end)
{
    const F(PoolJob) *j = ctx;
    const NndPoolShape *s = j->s;
    T div = (T)(s->kh * s->kw);
    for (int64_t pl = begin; pl < end; pl++) {
        const T *dp = j->x + pl * s->oh * s->ow;
        T *op = j->out + pl * s->h * s->w;
        memset(op, 0, (size_t)(s->h * s->w) * sizeof(T));
        for (int64_t i = 0; i < s->oh; i++)
            for (int64_t jj = 0; jj < s->ow; jj++) {
                int64_t a0, a1, b0, b1;
                F(pool_window)(s, i, jj, &a0, &a1, &b0, &b1);
                T d = dp[i * s->ow + jj] / div;
                for (int64_t a = a0; a < a1; a++)
                    for (int64_t b = b0; b < b1; b++)
                        op[a * s->w + b] += d;
            }
    }
}

static void F(pool_run)(NndPool *pool, const NndPoolShape *s, NndRangeFn fn, const T *x, const T *v,
                        T *out, int scatter, const T *mask)
{
    if (s->n <= 0 || s->c <= 0 || s->h <= 0 || s->w <= 0 || s->oh < 0 || s->ow < 0)
        return;
    F(PoolJob) j = {s, x, v, out, scatter, mask};
    int64_t plane_work = max64(1, s->oh * s->ow * s->kh * s->kw + s->h * s->w);
    nnd_parallel_for(pool, fn, &j, s->n * s->c, grain_for(plane_work));
}

void F(nnd_maxpool_gather)(NndPool *pool, const NndPoolShape *s, const T *x, const T *v, T *out)
{
    F(pool_run)(pool, s, F(maxpool_range), x, v, out, 0, NULL);
}

void F(nnd_maxpool_scatter)(NndPool *pool, const NndPoolShape *s, const T *x, const T *d, T *out)
{
    F(pool_run)(pool, s, F(maxpool_range), x, d, out, 1, NULL);
}

void CAT(F(nnd_maxpool_scatter), ep)(NndPool *pool, const NndPoolShape *s, const T *x, const T *d,
                                     T *out, int ep, const T *mask)
{
    F(pool_run)(pool, s, F(maxpool_range), x, d, out, 1, ep == NND_EP_MASK ? mask : NULL);
}

void F(nnd_avgpool)(NndPool *pool, const NndPoolShape *s, const T *x, T *y)
{
    F(pool_run)(pool, s, F(avgpool_range), x, NULL, y, 0, NULL);
}

void F(nnd_avgpool_grad)(NndPool *pool, const NndPoolShape *s, const T *dy, T *dx)
{
    F(pool_run)(pool, s, F(avgpool_grad_range), dy, NULL, dx, 0, NULL);
}

/* ---- embedding rows ------------------------------------------------------------------ */
void F(nnd_take_rows)(const T *table, const int32_t *idx, int64_t n, int64_t d, T *out)
{
    if (d <= 0)
        return;
    for (int64_t i = 0; i < n; i++)
        memcpy(out + i * d, table + (int64_t)idx[i] * d, (size_t)d * sizeof(T));
}

void F(nnd_scatter_rows)(const T *src, const int32_t *idx, int64_t n, int64_t d, int64_t v, T *out)
{
    if (d <= 0 || v <= 0)
        return;
    memset(out, 0, (size_t)(v * d) * sizeof(T));
    for (int64_t i = 0; i < n; i++) {
        T *row = out + (int64_t)idx[i] * d;
        const T *in = src + i * d;
        for (int64_t k = 0; k < d; k++)
            row[k] += in[k];
    }
}
#endif /* CONV_ONLY */

#undef T
#undef F
#undef CAT
#undef CAT_

#endif /* ELEM */
