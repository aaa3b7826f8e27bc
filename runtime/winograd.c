/* winograd: 5x5 and 3x3 convolutions of stride 1 in f32 by Winograd's minimal
 * filtering, F(2x2, 5x5) and F(4x4, 3x3) (Lavin and Gray, "Fast Algorithms for
 * Convolutional Neural Networks", 2015).
 *
 * Each m x m block of outputs (a tile) of one output channel is
 *     Y = A^T [ sum over input channels of (G g G^T) .* (B^T d B) ] A
 * where d is the 6x6 block of input the tile reads and g the r x r filter (m = 2 for
 * r = 5, m = 4 for r = 3): 36 products per tile and channel pair instead of 100 or
 * 144.  The sum over input channels is, for each of the 36 positions xi of the
 * transformed tile, a matrix product
 *     M[xi] [tiles x o] = V[xi] [tiles x c] @ U[xi] [c x o],
 * V = B^T d B the transformed input tiles, U = G g G^T the transformed filters.  The
 * tiles are cut into blocks of TB; a block's V and M stay in the core's cache.  The
 * input is first copied with its padding written out and the channels last, so that
 * the transform of a tile runs on vectors of 16 channels.
 *
 * Both use the six points 0, 1, -1, 2, -2 and infinity (so B^T is the same), with
 * the fractions in G (applied once per call to the weights): B^T and A^T hold small
 * integers.  The results differ from the direct sums by rounding only (about 1e-6
 * relative to the sums' magnitude; the tests compare with sums in f64).
 *
 * The adjoint with respect to the input of a stride-1 convolution is itself one: the
 * correlation of dy, padded by r - 1 - p, with the filters flipped and their two
 * channel axes swapped.  The adjoint with respect to the weights sums V^T (A dY A^T)
 * over the tiles.  Every tile and every part of the tiles is computed by one thread
 * from the same operands in the same order, so the results depend on the thread
 * count only. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clones.h"
#include "kernels.h"

typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));
typedef int32_t vi16 __attribute__((vector_size(64)));

/* (Blocks of 32 tiles in steps of 8 rows measured slower on the CNN's conv2, its weight
 * adjoint 1.7-2.2 -> 3.1 ms: 32 rows of 32 channels put the 36 positions' rows 4 KiB
 * apart.) */
enum {
    TB = 30, /* tiles per block: five groups of ROWS */
    ROWS = 6, /* rows of M one step of the product computes */
    XI = 36 /* positions of a transformed tile */
};

#define INLINE static inline __attribute__((always_inline))

/* One correlation: y[n][o][oy][ox] = sum over c, i, j of xp[n][oy + i][ox + j][c]
 * g[o][c][i][j] for every output position (oy, ox), with xp the input padded and
 * channels last (for a chunk of n images at a time). */
typedef struct Wino {
    int64_t n, c, o; /* images, input and output channels */
    int64_t oh, ow; /* output planes */
    int64_t th, tw, tiles; /* tiles per image th x tw; tiles = n th tw */
    int64_t hp, wp; /* xp's planes: (m th + r - 1) x (m tw + r - 1) */
    int64_t top, left; /* the input's first row and column in xp */
    int64_t h, w; /* the input's planes */
    const float *x; /* [n][c][h][w] */
    float *xp; /* [n][hp][wp][c] */
    float *u; /* [XI][c][o] */
    const float *wt; /* the filters, as stored */
    int r, m; /* the kernel r x r (5 or 3); outputs per tile m x m (2 or 4): r + m = 7 */
    int flip; /* grad_input: g[o][c][i][j] = wt[c][o][r - 1 - i][r - 1 - j] */
    int bf16; /* precision = bf16: every operand rounded to bf16 first (nnd_bf16_round) */
    float *y;
    int ep; /* the forward's epilogue: NND_EP_BIAS (bias[o]), NND_EP_RELU, or both */
    const float *bias;
    /* parts of the tiles, one a thread, each with its own buffers for a block's V and M
     * (bufs); grad_weight: dy [n][o][oh][ow]; dyp, dy padded to m th x m tw with the
     * channels last; each part's du [XI][c][o] (zeroed by the first chunk); dw
     * [o][c][r][r] */
    int64_t parts;
    int first;
    float *bufs;
    const float *dy;
    float *dyp, *du, *dw;
} Wino;

int wino_fits(const NndConvShape *s)
{
    return (s->kh == 5 || s->kh == 3) && s->kw == s->kh && s->sh == 1 && s->sw == 1 && s->dh == 1 &&
           s->dw == 1 && s->groups == 1 && s->c % 16 == 0 && s->o % 16 == 0 && s->ph >= 0 &&
           s->ph < s->kh && s->pw >= 0 && s->pw < s->kw && s->n > 0 && s->oh > 0 && s->ow > 0 &&
           s->h > 0 && s->w > 0;
}

static int wino_enabled(void)
{
    const char *e = getenv("NND_WINOGRAD"); /* 0: im2col, to compare (bench/run.py) */
    return f32_own() == 2 && !(e && strcmp(e, "0") == 0);
}

int wino_chosen(const NndConvShape *s) { return wino_fits(s) && wino_enabled(); }

/* *x = nnd_bf16_round(*x) on 16 lanes: to nearest even, a NaN kept a (quiet) NaN */
INLINE void round_bf16(v16 *x)
{
    typedef uint32_t u32x16 __attribute__((vector_size(64)));
    u32x16 u, nan;
    memcpy(&u, x, sizeof u);
    nan = (u32x16)((u & 0x7fffffffu) > 0x7f800000u);
    u = (nan & (u | 0x00400000u)) | (~nan & (u + 0x7fffu + ((u >> 16) & 1u)));
    u &= 0xffff0000u;
    memcpy(x, &u, sizeof u);
}

/* ---- the weights: u[xi][c][o] = (G g G^T)[xi] ----------------------------------------- */

/* r[0:6] = G v for one column v[0:5] (stride sv), for 16 filters at once */
INLINE void g_col5(const v16 *v, int sv, v16 *r, int sr)
{
    v16 a = v[0], b = v[sv], c = v[2 * sv], d = v[3 * sv], e = v[4 * sv];
    r[0] = a * 0.25f;
    r[sr] = (a + b + c + d + e) * (1.0f / 6);
    r[2 * sr] = (a - b + c - d + e) * (1.0f / 6);
    r[3 * sr] = (a + 2.0f * b + 4.0f * c + 8.0f * d + 16.0f * e) * (1.0f / 24);
    r[4 * sr] = (a - 2.0f * b + 4.0f * c - 8.0f * d + 16.0f * e) * (1.0f / 24);
    r[5 * sr] = e;
}

/* the same for F(4x4, 3x3): v[0:3] */
INLINE void g_col3(const v16 *v, int sv, v16 *r, int sr)
{
    v16 a = v[0], b = v[sv], c = v[2 * sv];
    r[0] = a * 0.25f;
    r[sr] = (a + b + c) * (1.0f / 6);
    r[2 * sr] = (a - b + c) * (1.0f / 6);
    r[3 * sr] = (a + 2.0f * b + 4.0f * c) * (1.0f / 24);
    r[4 * sr] = (a - 2.0f * b + 4.0f * c) * (1.0f / 24);
    r[5 * sr] = c;
}

/* u for input channel ic and output channels oc0 .. oc0 + 15: items are (ic, block of
 * 16 output channels), the blocks fastest (u's stores in order) */
VECTOR_CLONES static void weights_range(void *ctx, int64_t begin, int64_t end)
{
    const Wino *p = ctx;
    int rr = p->r, kk = rr * rr;
    int64_t blocks = p->o / 16;
    for (int64_t f = begin; f < end; f++) {
        int64_t ic = f / blocks, oc0 = f % blocks * 16;
        float gl[25][16];
        for (int l = 0; l < 16; l++) {
            int64_t oc = oc0 + l;
            if (p->flip) { /* wt: [c'][o'] = [o][c] of the correlation, flipped */
                const float *src = p->wt + (ic * p->o + oc) * kk;
                for (int k = 0; k < kk; k++)
                    gl[k][l] = src[kk - 1 - k];
            } else {
                const float *src = p->wt + (oc * p->c + ic) * kk;
                for (int k = 0; k < kk; k++)
                    gl[k][l] = src[k];
            }
        }
        v16 g[25], t[30], r[36];
        for (int k = 0; k < kk; k++) {
            g[k] = *(const v16u *)gl[k];
            if (p->bf16)
                round_bf16(&g[k]);
        }
        for (int j = 0; j < rr; j++) /* t[6][r] = G g */
            (rr == 5 ? g_col5 : g_col3)(g + j, rr, t + j, rr);
        for (int i = 0; i < 6; i++) /* r[6][6] = t G^T */
            (rr == 5 ? g_col5 : g_col3)(t + i * rr, 1, r + i * 6, 1);
        for (int xi = 0; xi < XI; xi++)
            *(v16u *)(p->u + (xi * p->c + ic) * p->o + oc0) = r[xi];
    }
}

/* ---- the input, padded and channels last ---------------------------------------------- */

/* dst [hd][wd][c] = src [c][h][w] placed at (top, left), zeros around it (what of
 * src falls outside is left out), rounded to bf16 when bf16; c a multiple of 16 */
VECTOR_CLONES static void channels_last(const float *src, int64_t c, int64_t h, int64_t w,
                                        float *dst, int64_t hd, int64_t wd, int64_t top,
                                        int64_t left, int bf16)
{
    int64_t rows = h < hd - top ? h : hd - top, cols = w < wd - left ? w : wd - left;
    for (int64_t yy = 0; yy < hd; yy++) {
        float *row = dst + yy * wd * c;
        int64_t iy = yy - top;
        if (iy < 0 || iy >= rows) {
            memset(row, 0, (size_t)(wd * c) * sizeof(float));
            continue;
        }
        memset(row, 0, (size_t)(left * c) * sizeof(float));
        memset(row + (left + cols) * c, 0, (size_t)((wd - left - cols) * c) * sizeof(float));
        for (int64_t c0 = 0; c0 < c; c0 += 16) {
            const float *s = src + (c0 * h + iy) * w;
            float *d = row + left * c + c0;
            for (int64_t ix = 0; ix < cols; ix++) {
                v16 v;
                for (int l = 0; l < 16; l++)
                    v[l] = s[l * h * w + ix];
                if (bf16)
                    round_bf16(&v);
                *(v16u *)(d + ix * c) = v;
            }
        }
    }
}

static void pad_range(void *ctx, int64_t begin, int64_t end)
{
    const Wino *p = ctx;
    for (int64_t b = begin; b < end; b++)
        channels_last(p->x + b * p->c * p->h * p->w, p->c, p->h, p->w,
                      p->xp + b * p->hp * p->wp * p->c, p->hp, p->wp, p->top, p->left, p->bf16);
}

/* ---- one block of tiles --------------------------------------------------------------- */

/* The 1-D transform B^T d of six values */
#define BT6(d0, d1, d2, d3, d4, d5, t)                                                             \
    do {                                                                                           \
        t[0] = 4.0f * d0 - 5.0f * d2 + d4;                                                         \
        t[1] = 4.0f * (d1 + d2) - (d3 + d4);                                                       \
        t[2] = 4.0f * (d2 - d1) + (d3 - d4);                                                       \
        t[3] = 2.0f * (d3 - d1) + (d4 - d2);                                                       \
        t[4] = 2.0f * (d1 - d3) + (d4 - d2);                                                       \
        t[5] = 4.0f * d1 - 5.0f * d3 + d5;                                                         \
    } while (0)

/* v[xi][tl][c0 : c0 + 16] = (B^T d B)[xi] for the tile whose d starts at at */
INLINE void input_tile(const float *at, int64_t wp, int64_t c, float *v, int64_t tl, int64_t c0)
{
    v16 t[6][6];
    for (int j = 0; j < 6; j++) {
        v16 d[6];
        for (int i = 0; i < 6; i++)
            d[i] = *(const v16u *)(at + (i * wp + j) * c);
        v16 r[6];
        BT6(d[0], d[1], d[2], d[3], d[4], d[5], r);
        for (int i = 0; i < 6; i++)
            t[i][j] = r[i];
    }
    for (int i = 0; i < 6; i++) {
        v16 r[6];
        BT6(t[i][0], t[i][1], t[i][2], t[i][3], t[i][4], t[i][5], r);
        for (int j = 0; j < 6; j++)
            *(v16u *)(v + ((i * 6 + j) * TB + tl) * c + c0) = r[j];
    }
}

/* m[0:rows(6)][0:32] = a[6][k] @ b[k][32], a's rows lda apart, b's ldb, m's ldm; the
 * 16 columns from 16 on only when wide */
INLINE void product_6x32(const float *a, int64_t lda, const float *b, int64_t ldb, int64_t k,
                         float *m, int64_t ldm, int wide)
{
    v16 c[ROWS][2];
    for (int r = 0; r < ROWS; r++)
        c[r][0] = c[r][1] = (v16){0};
    for (int64_t q = 0; q < k; q++) {
        v16 b0 = *(const v16u *)(b + q * ldb), b1 = wide ? *(const v16u *)(b + q * ldb + 16) : b0;
        for (int r = 0; r < ROWS; r++) {
            v16 ar = (v16){0} + a[r * lda + q];
            c[r][0] += ar * b0;
            if (wide)
                c[r][1] += ar * b1;
        }
    }
    for (int r = 0; r < ROWS; r++) {
        *(v16u *)(m + r * ldm) = c[r][0];
        if (wide)
            *(v16u *)(m + r * ldm + 16) = c[r][1];
    }
}

/* The 1-D output transform A^T q of six values: m = 2 or 4 of them */
#define AT6(q, y, m)                                                                               \
    do {                                                                                           \
        y[0] = q[0] + q[1] + q[2] + q[3] + q[4];                                                   \
        if (m == 2) {                                                                              \
            y[1] = q[1] - q[2] + 2.0f * (q[3] - q[4]) + q[5];                                      \
        } else {                                                                                   \
            y[1] = q[1] - q[2] + 2.0f * (q[3] - q[4]);                                             \
            y[2] = q[1] + q[2] + 4.0f * (q[3] + q[4]);                                             \
            y[3] = q[1] - q[2] + 8.0f * (q[3] - q[4]) + q[5];                                      \
        }                                                                                          \
    } while (0)

/* Tile t's image *b and the first output row *oy and column *ox it covers */
INLINE void tile_at(const Wino *p, int64_t t, int64_t *b, int64_t *oy, int64_t *ox)
{
    int64_t per = p->th * p->tw;
    *b = t / per;
    *oy = p->m * (t % per / p->tw);
    *ox = p->m * (t % p->tw);
}

/* The m x m outputs of tile t (block row tl), channels o0 .. o0 + 15, from
 * m[xi][tl][o] */
INLINE void output_tile(const Wino *p, const float *m, int64_t t, int64_t tl, int64_t o0, int mm)
{
    v16 s[6][4];
    for (int i = 0; i < 6; i++) {
        v16 q[6];
        for (int j = 0; j < 6; j++)
            q[j] = *(const v16u *)(m + ((i * 6 + j) * TB + tl) * p->o + o0);
        AT6(q, s[i], mm);
    }
    v16 y[4][4];
    for (int j = 0; j < mm; j++) {
        v16 q[6] = {s[0][j], s[1][j], s[2][j], s[3][j], s[4][j], s[5][j]}, col[4];
        AT6(q, col, mm);
        for (int i = 0; i < mm; i++)
            y[i][j] = col[i];
    }
    if (p->ep) { /* as the step's loop: y + bias[o], then y <= 0 ? 0 : y (NaN stays) */
        v16 bias = {0}, zero = {0};
        if (p->ep & NND_EP_BIAS)
            bias = *(const v16u *)(p->bias + o0);
        for (int i = 0; i < mm; i++)
            for (int j = 0; j < mm; j++) {
                v16 v = (p->ep & NND_EP_BIAS) ? y[i][j] + bias : y[i][j];
                if (p->ep & NND_EP_RELU)
                    v = (v16)((vi16)v & ~(vi16)(v <= zero));
                y[i][j] = v;
            }
    }
    int64_t b, oy, ox, plane = p->oh * p->ow;
    tile_at(p, t, &b, &oy, &ox);
    float *dst = p->y + (b * p->o + o0) * plane + oy * p->ow + ox;
    int rows = p->oh - oy < mm ? (int)(p->oh - oy) : mm;
    int cols = p->ow - ox < mm ? (int)(p->ow - ox) : mm;
    for (int l = 0; l < 16; l++)
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
                dst[l * plane + i * p->ow + j] = y[i][j][l];
}

/* v[xi][0:TB][0:c] = the transformed input tiles t0 .. t0 + nt - 1, then zeros */
INLINE void input_block(const Wino *p, float *v, int64_t t0, int64_t nt)
{
    for (int64_t tl = 0; tl < TB; tl++) {
        if (tl >= nt) { /* rows past the last tile: zeros, not whatever was there */
            for (int xi = 0; xi < XI; xi++)
                memset(v + (xi * TB + tl) * p->c, 0, (size_t)p->c * sizeof(float));
            continue;
        }
        int64_t b, oy, ox;
        tile_at(p, t0 + tl, &b, &oy, &ox);
        const float *at = p->xp + ((b * p->hp + oy) * p->wp + ox) * p->c;
        for (int64_t c0 = 0; c0 < p->c; c0 += 16)
            input_tile(at + c0, p->wp, p->c, v, tl, c0);
    }
}

/* Part k of the blocks of TB tiles (k B / parts .. (k + 1) B / parts), with the part's
 * buffers: transform, multiply, transform back. */
VECTOR_CLONES static void forward_part(void *ctx, int64_t begin, int64_t end)
{
    const Wino *p = ctx;
    int64_t blocks = (p->tiles + TB - 1) / TB;
    size_t vn = (size_t)(XI * TB * p->c), mn = (size_t)(XI * TB * p->o);
    for (int64_t k = begin; k < end; k++) {
        float *v = p->bufs + (size_t)k * (vn + mn), *m = v + vn;
        for (int64_t blk = blocks * k / p->parts; blk < blocks * (k + 1) / p->parts; blk++) {
            int64_t t0 = blk * TB, nt = p->tiles - t0 < TB ? p->tiles - t0 : TB;
            input_block(p, v, t0, nt);
            for (int xi = 0; xi < XI; xi++) {
                const float *a = v + xi * TB * p->c, *u = p->u + xi * p->c * p->o;
                float *mx = m + xi * TB * p->o;
                /* a panel of 32 columns of U stays in L1 for the block's rows */
                int64_t o0 = 0;
                for (; o0 + 32 <= p->o; o0 += 32)
                    for (int64_t r0 = 0; r0 < TB; r0 += ROWS)
                        product_6x32(a + r0 * p->c, p->c, u + o0, p->o, p->c, mx + r0 * p->o + o0,
                                     p->o, 1);
                if (o0 < p->o)
                    for (int64_t r0 = 0; r0 < TB; r0 += ROWS)
                        product_6x32(a + r0 * p->c, p->c, u + o0, p->o, p->c, mx + r0 * p->o + o0,
                                     p->o, 0);
            }
            for (int64_t tl = 0; tl < nt; tl++)
                for (int64_t o0 = 0; o0 < p->o; o0 += 16) {
                    if (p->m == 2)
                        output_tile(p, m, t0 + tl, tl, o0, 2);
                    else
                        output_tile(p, m, t0 + tl, tl, o0, 4);
                }
        }
    }
}

/* The tiles and the padded planes of p's correlation */
static void wino_geometry(Wino *p)
{
    p->m = 7 - p->r;
    p->th = (p->oh + p->m - 1) / p->m;
    p->tw = (p->ow + p->m - 1) / p->m;
    p->tiles = p->n * p->th * p->tw;
    p->hp = p->m * p->th + p->r - 1;
    p->wp = p->m * p->tw + p->r - 1;
}

/* ---- the weight gradient ---------------------------------------------------------------
 * dU[xi] [c x o] = sum over tiles of V[xi]^T @ dM[xi], dM = A dY A^T the adjoint of the
 * output transform for the tile's m x m block of dy; then dw = G^T dU G. */

static void dy_pad_range(void *ctx, int64_t begin, int64_t end)
{
    const Wino *p = ctx;
    int64_t hh = p->m * p->th, ww = p->m * p->tw;
    for (int64_t b = begin; b < end; b++)
        channels_last(p->dy + b * p->o * p->oh * p->ow, p->o, p->oh, p->ow,
                      p->dyp + b * hh * ww * p->o, hh, ww, 0, 0, p->bf16);
}

/* The 1-D adjoint A e of the output transform on m = 2 or 4 values */
#define A6(e, r, m)                                                                                \
    do {                                                                                           \
        if (m == 2) {                                                                              \
            r[0] = e[0];                                                                           \
            r[1] = e[0] + e[1];                                                                    \
            r[2] = e[0] - e[1];                                                                    \
            r[3] = e[0] + 2.0f * e[1];                                                             \
            r[4] = e[0] - 2.0f * e[1];                                                             \
            r[5] = e[1];                                                                           \
        } else {                                                                                   \
            r[0] = e[0];                                                                           \
            r[1] = e[0] + e[1] + e[2] + e[3];                                                      \
            r[2] = e[0] - e[1] + e[2] - e[3];                                                      \
            r[3] = e[0] + 2.0f * e[1] + 4.0f * e[2] + 8.0f * e[3];                                 \
            r[4] = e[0] - 2.0f * e[1] + 4.0f * e[2] - 8.0f * e[3];                                 \
            r[5] = e[3];                                                                           \
        }                                                                                          \
    } while (0)

/* m[xi][tl][o0 : o0 + 16] = (A dY A^T)[xi] for the tile whose m x m dY starts at at */
INLINE void dy_tile(const float *at, int64_t ww, int64_t o, float *m, int64_t tl, int64_t o0,
                    int mm)
{
    v16 e[4][6]; /* e[a][j] = (dY A^T)[a][j] */
    for (int a = 0; a < mm; a++) {
        v16 d[4];
        for (int b = 0; b < mm; b++)
            d[b] = *(const v16u *)(at + (a * ww + b) * o);
        A6(d, e[a], mm);
    }
    for (int j = 0; j < 6; j++) { /* column j: r[i] = (A dY A^T)[i][j] */
        v16 col[4] = {e[0][j], e[1][j], e[2][j], e[3][j]}, r[6];
        A6(col, r, mm);
        for (int i = 0; i < 6; i++)
            *(v16u *)(m + ((i * 6 + j) * TB + tl) * o + o0) = r[i];
    }
}

/* du[0:8][0:32] += a[0:k][0:8]^T @ b[0:k][0:32] (a's rows lda apart, b's ldb, du's
 * ldu); the 16 columns from 16 on only when wide */
INLINE void product_t_8x32(const float *a, int64_t lda, const float *b, int64_t ldb, int64_t k,
                           float *du, int64_t ldu, int wide)
{
    v16 c[8][2];
    for (int r = 0; r < 8; r++) {
        c[r][0] = *(const v16u *)(du + r * ldu);
        c[r][1] = wide ? *(const v16u *)(du + r * ldu + 16) : c[r][0];
    }
    for (int64_t q = 0; q < k; q++) {
        v16 b0 = *(const v16u *)(b + q * ldb), b1 = wide ? *(const v16u *)(b + q * ldb + 16) : b0;
        for (int r = 0; r < 8; r++) {
            v16 ar = (v16){0} + a[q * lda + r];
            c[r][0] += ar * b0;
            if (wide)
                c[r][1] += ar * b1;
        }
    }
    for (int r = 0; r < 8; r++) {
        *(v16u *)(du + r * ldu) = c[r][0];
        if (wide)
            *(v16u *)(du + r * ldu + 16) = c[r][1];
    }
}

/* Part k of the tiles (blocks k B / parts .. (k + 1) B / parts) into its own du. */
VECTOR_CLONES static void grad_weight_part(void *ctx, int64_t begin, int64_t end)
{
    const Wino *p = ctx;
    int64_t blocks = (p->tiles + TB - 1) / TB, ww = p->m * p->tw;
    size_t vn = (size_t)(XI * TB * p->c), mn = (size_t)(XI * TB * p->o);
    for (int64_t k = begin; k < end; k++) {
        float *v = p->bufs + (size_t)k * (vn + mn), *m = v + vn;
        float *du = p->du + k * XI * p->c * p->o;
        if (p->first)
            memset(du, 0, (size_t)(XI * p->c * p->o) * sizeof(float));
        for (int64_t blk = blocks * k / p->parts; blk < blocks * (k + 1) / p->parts; blk++) {
            int64_t t0 = blk * TB, nt = p->tiles - t0 < TB ? p->tiles - t0 : TB;
            input_block(p, v, t0, nt);
            for (int64_t tl = 0; tl < TB; tl++) {
                if (tl >= nt) { /* past the last tile: zeros */
                    for (int xi = 0; xi < XI; xi++)
                        memset(m + (xi * TB + tl) * p->o, 0, (size_t)p->o * sizeof(float));
                    continue;
                }
                int64_t b, oy, ox;
                tile_at(p, t0 + tl, &b, &oy, &ox);
                const float *dat = p->dyp + ((b * p->m * p->th + oy) * ww + ox) * p->o;
                for (int64_t o0 = 0; o0 < p->o; o0 += 16) {
                    if (p->m == 2)
                        dy_tile(dat + o0, ww, p->o, m, tl, o0, 2);
                    else
                        dy_tile(dat + o0, ww, p->o, m, tl, o0, 4);
                }
            }
            for (int xi = 0; xi < XI; xi++) {
                const float *a = v + xi * TB * p->c, *bm = m + xi * TB * p->o;
                float *dux = du + xi * p->c * p->o;
                for (int64_t c0 = 0; c0 < p->c; c0 += 8) {
                    int64_t o0 = 0;
                    for (; o0 + 32 <= p->o; o0 += 32)
                        product_t_8x32(a + c0, p->c, bm + o0, p->o, TB, dux + c0 * p->o + o0, p->o,
                                       1);
                    if (o0 < p->o)
                        product_t_8x32(a + c0, p->c, bm + o0, p->o, TB, dux + c0 * p->o + o0, p->o,
                                       0);
                }
            }
        }
    }
}

/* r[0:5] = G^T v for one column v[0:6] (stride sv): the adjoint of g_col5 */
INLINE void gt_col5(const v16 *v, int sv, v16 *r, int sr)
{
    v16 s1 = v[sv] * (1.0f / 6), s2 = v[2 * sv] * (1.0f / 6);
    v16 s3 = v[3 * sv] * (1.0f / 24), s4 = v[4 * sv] * (1.0f / 24);
    r[0] = v[0] * 0.25f + s1 + s2 + s3 + s4;
    r[sr] = s1 - s2 + 2.0f * (s3 - s4);
    r[2 * sr] = s1 + s2 + 4.0f * (s3 + s4);
    r[3 * sr] = s1 - s2 + 8.0f * (s3 - s4);
    r[4 * sr] = s1 + s2 + 16.0f * (s3 + s4) + v[5 * sv];
}

/* r[0:3] = G^T v: the adjoint of g_col3 */
INLINE void gt_col3(const v16 *v, int sv, v16 *r, int sr)
{
    v16 s1 = v[sv] * (1.0f / 6), s2 = v[2 * sv] * (1.0f / 6);
    v16 s3 = v[3 * sv] * (1.0f / 24), s4 = v[4 * sv] * (1.0f / 24);
    r[0] = v[0] * 0.25f + s1 + s2 + s3 + s4;
    r[sr] = s1 - s2 + 2.0f * (s3 - s4);
    r[2 * sr] = s1 + s2 + 4.0f * (s3 + s4) + v[5 * sv];
}

/* dw for input channel ic and output channels oc0 .. oc0 + 15 (items as in
 * weights_range): the parts' du added in part order, then G^T dU G */
VECTOR_CLONES static void grad_weight_finish(void *ctx, int64_t begin, int64_t end)
{
    const Wino *p = ctx;
    int rr = p->r, kk = rr * rr;
    int64_t size = XI * p->c * p->o, blocks = p->o / 16;
    for (int64_t f = begin; f < end; f++) {
        int64_t ic = f / blocks, oc0 = f % blocks * 16;
        v16 r[36], t[30], d[25];
        for (int xi = 0; xi < XI; xi++) {
            const float *at = p->du + (xi * p->c + ic) * p->o + oc0;
            v16 sum = *(const v16u *)at;
            for (int64_t k = 1; k < p->parts; k++)
                sum += *(const v16u *)(at + k * size);
            r[xi] = sum;
        }
        for (int j = 0; j < 6; j++) /* t[r][6] = G^T r */
            (rr == 5 ? gt_col5 : gt_col3)(r + j, 6, t + j, 6);
        for (int i = 0; i < rr; i++) /* d[r][r] = t G */
            (rr == 5 ? gt_col5 : gt_col3)(t + i * 6, 1, d + i * rr, 1);
        for (int l = 0; l < 16; l++) {
            float *dst = p->dw + ((oc0 + l) * p->c + ic) * kk;
            for (int k = 0; k < kk; k++)
                dst[k] = d[k][l];
        }
    }
}

/* The bytes of padded copies one call holds at most: a larger batch goes through in
 * chunks of images (each chunk's results are those of the whole batch). */
#define CHUNK_BYTES ((size_t)32 << 20)
static size_t chunk_bytes = CHUNK_BYTES;

void wino_set_chunk_bytes(size_t bytes) { chunk_bytes = bytes ? bytes : CHUNK_BYTES; }

/* Images per chunk of p (its geometry set), per_image floats each. */
static int64_t chunk_images(const Wino *p, size_t per_image)
{
    int64_t k = (int64_t)(chunk_bytes / (per_image * sizeof(float) + 1));
    return k < 1 ? 1 : k > p->n ? p->n : k;
}

/* The forward correlation of s: its sizes and padding, no operands yet */
static Wino forward_of(const NndConvShape *s, int bf16)
{
    return (Wino){.bf16 = bf16,
                  .n = s->n,
                  .c = s->c,
                  .o = s->o,
                  .oh = s->oh,
                  .ow = s->ow,
                  .r = (int)s->kh,
                  .top = s->ph,
                  .left = s->pw,
                  .h = s->h,
                  .w = s->w};
}

int wino_conv2d_grad_weight(NndPool *pool, const NndConvShape *s, const float *x, const float *dy,
                            float *dw, int bf16)
{
    Wino p = forward_of(s, bf16);
    p.dw = dw;
    wino_geometry(&p);
    p.parts = nnd_pool_threads(pool);
    size_t xpi = (size_t)(p.hp * p.wp * p.c), dyi = (size_t)(p.m * p.th * p.m * p.tw * p.o);
    int64_t nb = chunk_images(&p, xpi + dyi);
    size_t dun = (size_t)(p.parts * XI * p.c * p.o);
    size_t bufn = (size_t)(p.parts * XI * TB * (p.c + p.o));
    p.xp = thread_scratch(SCRATCH_PARTS, ((size_t)nb * (xpi + dyi) + dun + bufn) * sizeof(float));
    if (!p.xp)
        return -1;
    p.dyp = p.xp + (size_t)nb * xpi;
    p.du = p.dyp + (size_t)nb * dyi;
    p.bufs = p.du + dun;
    for (int64_t b0 = 0; b0 < s->n; b0 += nb) {
        p.n = s->n - b0 < nb ? s->n - b0 : nb;
        p.x = x + b0 * s->c * s->h * s->w;
        p.dy = dy + b0 * s->o * s->oh * s->ow;
        p.first = b0 == 0;
        wino_geometry(&p);
        nnd_parallel_for(pool, pad_range, &p, p.n, 1);
        nnd_parallel_for(pool, dy_pad_range, &p, p.n, 1);
        nnd_parallel_for(pool, grad_weight_part, &p, p.parts, 1);
    }
    nnd_parallel_for(pool, grad_weight_finish, &p, p.c * (p.o / 16), 4);
    return 0;
}

/* The correlation p describes (its sizes, x, wt, flip and y set): 0, or -1 without
 * memory (nothing written). */
static int wino_run(NndPool *pool, Wino *p)
{
    int64_t n = p->n;
    const float *x = p->x;
    float *y = p->y;
    wino_geometry(p);
    p->parts = nnd_pool_threads(pool);
    size_t xpi = (size_t)(p->hp * p->wp * p->c), un = (size_t)(XI * p->c * p->o);
    int64_t nb = chunk_images(p, xpi);
    size_t bufn = (size_t)(p->parts * XI * TB * (p->c + p->o));
    p->xp = thread_scratch(SCRATCH_PARTS, ((size_t)nb * xpi + un + bufn) * sizeof(float));
    if (!p->xp)
        return -1;
    p->u = p->xp + (size_t)nb * xpi;
    p->bufs = p->u + un;
    nnd_parallel_for(pool, weights_range, p, p->c * (p->o / 16), 4);
    for (int64_t b0 = 0; b0 < n; b0 += nb) {
        p->n = n - b0 < nb ? n - b0 : nb;
        p->x = x + b0 * p->c * p->h * p->w;
        p->y = y + b0 * p->o * p->oh * p->ow;
        wino_geometry(p);
        nnd_parallel_for(pool, pad_range, p, p->n, 1);
        nnd_parallel_for(pool, forward_part, p, p->parts, 1);
    }
    return 0;
}

int wino_conv2d(NndPool *pool, const NndConvShape *s, const float *x, const float *w, float *y,
                int bf16, int ep, const float *bias)
{
    Wino p = forward_of(s, bf16);
    p.x = x;
    p.wt = w;
    p.y = y;
    p.ep = ep;
    p.bias = bias;
    return wino_run(pool, &p);
}

int wino_conv2d_grad_input(NndPool *pool, const NndConvShape *s, const float *dy, const float *w,
                           float *dx, int bf16)
{
    Wino p = {.bf16 = bf16,
              .n = s->n,
              .c = s->o,
              .o = s->c,
              .oh = s->h,
              .ow = s->w,
              .r = (int)s->kh,
              .top = s->kh - 1 - s->ph,
              .left = s->kw - 1 - s->pw,
              .h = s->oh,
              .w = s->ow,
              .x = dy,
              .wt = w,
              .flip = 1,
              .y = dx};
    return wino_run(pool, &p);
}
