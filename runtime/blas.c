/* blas: matrix products through OpenBLAS, split across the pool.
 *
 * OpenBLAS runs single-threaded (the pool told it so); each thread computes a block
 * of C with its own call, so one set of threads does all the work and a given thread
 * count always makes the same calls.
 *
 * The split follows the largest of the three matrices: each thread reads or writes
 * only one contiguous block of rows of it.  A step's weights are its large operands,
 * and the update loop splits them by rows the same way, so a weight, its gradient
 * and its optimizer state stay in one core's cache from one step to the next (moving
 * them between cores costs more than the product on the machines we measure).  When
 * the block runs along k (a weight in x @ W), each thread sums its share of k into
 * its own copy of C and the copies are added in thread order. */
#include <cblas.h>

#include "clones.h"
#include "kernels.h"
#include "nnd_abi.h"

enum {
    MIN_SPLIT_WORK = 1 << 18, /* multiply-adds below which one call is faster: OpenBLAS */
    MIN_SPLIT_WORK_OWN = 1 << 21, /* the same for the own AVX-512 kernels (measured on
                                     784-32-10: its 800k products ran slower split on 2
                                     threads; with the AVX2 ones, on a Zen 3, faster: 439k
                                     samples/s against 332k, so those keep 2^18) */
    MIN_BLOCK = 8, /* rows or columns per block: keeps OpenBLAS's kernels busy */
    MIN_K_BLOCK = 64, /* k per block when k is split */
    MAX_K_COPIES = 1 << 22 /* elements of C copies for a split k */
};

typedef enum { BY_ROWS, BY_COLUMNS, BY_K } Split;

/* A product's epilogue (nnd_gemm_*_ep) on rows x n values of C (rows ldc apart; the
 * mask's ldm apart), as the step's loop computes it: c + bias[j], then c <= 0 ? 0 : c
 * (relu: a NaN stays NaN); or mask > 0 ? c : 0 (relu's derivative through its output).
 * One loop per case, in vector lanes (VECTOR_CLONES; built for the baseline alone,
 * they took longer than the step's own loops they replace). */
#define EPILOGUE(SUFFIX, T)                                                                        \
    VECTOR_CLONES void epilogue_##SUFFIX(T *restrict c, int64_t ldc, const T *restrict bias,       \
                                         const T *restrict mask, int64_t ldm, int64_t rows,        \
                                         int64_t n, int ep)                                        \
    {                                                                                              \
        for (int64_t i = 0; i < rows; i++, c += ldc)                                               \
            switch (ep) {                                                                          \
            case NND_EP_BIAS:                                                                      \
                for (int64_t j = 0; j < n; j++)                                                    \
                    c[j] += bias[j];                                                               \
                break;                                                                             \
            case NND_EP_BIAS | NND_EP_RELU:                                                        \
                for (int64_t j = 0; j < n; j++) {                                                  \
                    T x = c[j] + bias[j];                                                          \
                    c[j] = x <= 0 ? 0 : x;                                                         \
                }                                                                                  \
                break;                                                                             \
            case NND_EP_RELU:                                                                      \
                for (int64_t j = 0; j < n; j++)                                                    \
                    c[j] = c[j] <= 0 ? 0 : c[j];                                                   \
                break;                                                                             \
            case NND_EP_MASK:                                                                      \
                for (int64_t j = 0; j < n; j++)                                                    \
                    c[j] = mask[i * ldm + j] > 0 ? c[j] : 0;                                       \
                break;                                                                             \
            default: break;                                                                        \
            }                                                                                      \
    }
EPILOGUE(f32, float)
EPILOGUE(f64, double)
#define epilogue_bf16 epilogue_f32 /* C is f32 */

/* The split for an unbatched product on `threads` threads, or -1 for one call. */
static int choose_split(int ta, int tb, int64_t m, int64_t n, int64_t k, int threads)
{
    int64_t sa = m * k, sb = k * n, sc = m * n;
    Split s;
    if (sc >= sa && sc >= sb)
        s = BY_ROWS;
    else if (sa > sb)
        s = ta ? BY_K : BY_ROWS;
    else
        s = tb ? BY_COLUMNS : BY_K;
    if (s == BY_K && (k < MIN_K_BLOCK * threads || sc * (threads - 1) > MAX_K_COPIES))
        s = m >= n ? BY_ROWS : BY_COLUMNS;
    if (s == BY_ROWS && m < MIN_BLOCK * threads && n >= MIN_BLOCK * threads)
        s = BY_COLUMNS;
    if (s == BY_COLUMNS && n < MIN_BLOCK * threads && m >= MIN_BLOCK * threads)
        s = BY_ROWS;
    return (int)s;
}

#define GEMM_IMPL(SUFFIX, T, CBLAS, GEMV, MIN_WORK)                                                \
    typedef struct Gemm##SUFFIX {                                                                  \
        int ta, tb;                                                                                \
        int64_t m, n, k, lda, ldb, ldc, batch, sa, sb, sc;                                         \
        const T *a, *b;                                                                            \
        T *c;                                                                                      \
        T beta;                                                                                    \
        Split split;                                                                               \
        int parts; /* BY_K: blocks of k; part i > 0 goes to copies + (i - 1) * m * n */            \
        T *copies;                                                                                 \
        int ep; /* NND_EP_*: applied to each block of C once its sums are whole */                 \
        const T *bias, *mask;                                                                      \
    } Gemm##SUFFIX;                                                                                \
                                                                                                   \
    /* The epilogue on rows [r0, r1), columns [c0, c1) of matrix bi of C */                        \
    static void gemm_epilogue_##SUFFIX(const Gemm##SUFFIX *g, int64_t bi, int64_t r0, int64_t r1,  \
                                       int64_t c0, int64_t c1)                                     \
    {                                                                                              \
        epilogue_##SUFFIX(g->c + bi * g->sc + r0 * g->ldc + c0, g->ldc,                            \
                          g->bias ? g->bias + c0 : NULL,                                           \
                          g->mask ? g->mask + bi * g->m * g->n + r0 * g->n + c0 : NULL, g->n,      \
                          r1 - r0, c1 - c0, g->ep);                                                \
    }                                                                                              \
                                                                                                   \
    static void gemm_call_##SUFFIX(const Gemm##SUFFIX *g, int64_t m, int64_t n, int64_t k,         \
                                   const T *a, const T *b, T beta, T *c, int64_t ldc)              \
    {                                                                                              \
        /* a row (one token while sampling) times a matrix: a matrix-vector product; a             \
         * matrix product would pack the whole of b for one row */                                 \
        if (m == 1)                                                                                \
            GEMV(CblasRowMajor, g->tb ? CblasNoTrans : CblasTrans, (int)(g->tb ? n : k),           \
                 (int)(g->tb ? k : n), 1, b, (int)g->ldb, a, g->ta ? (int)g->lda : 1, beta, c, 1); \
        else                                                                                       \
            CBLAS(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans,                                \
                  g->tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, 1, a, (int)g->lda, b, \
                  (int)g->ldb, beta, c, (int)ldc);                                                 \
    }                                                                                              \
                                                                                                   \
    static void gemm_block_##SUFFIX(const Gemm##SUFFIX *g, int64_t bi, int64_t lo, int64_t hi)     \
    {                                                                                              \
        const T *a = g->a + bi * g->sa, *b = g->b + bi * g->sb;                                    \
        T *c = g->c + bi * g->sc;                                                                  \
        int64_t m = g->m, n = g->n;                                                                \
        if (g->split == BY_ROWS) {                                                                 \
            a += g->ta ? lo : lo * g->lda;                                                         \
            c += lo * g->ldc;                                                                      \
            m = hi - lo;                                                                           \
        } else {                                                                                   \
            b += g->tb ? lo * g->ldb : lo;                                                         \
            c += lo;                                                                               \
            n = hi - lo;                                                                           \
        }                                                                                          \
        gemm_call_##SUFFIX(g, m, n, g->k, a, b, g->beta, c, g->ldc);                               \
        if (g->ep && g->split == BY_ROWS)                                                          \
            gemm_epilogue_##SUFFIX(g, bi, lo, hi, 0, g->n);                                        \
        else if (g->ep)                                                                            \
            gemm_epilogue_##SUFFIX(g, bi, 0, g->m, lo, hi);                                        \
    }                                                                                              \
                                                                                                   \
    static void gemm_range_##SUFFIX(void *ctx, int64_t begin, int64_t end)                         \
    {                                                                                              \
        const Gemm##SUFFIX *g = ctx;                                                               \
        int64_t span = g->split == BY_ROWS ? g->m : g->n;                                          \
        if (g->batch > 1 && span == 0)                                                             \
            return;                                                                                \
        /* the range covers batch * span items: whole matrices, or blocks of one */                \
        for (int64_t i = begin; i < end;) {                                                        \
            int64_t bi = i / span, lo = i % span;                                                  \
            int64_t hi = end - bi * span < span ? end - bi * span : span;                          \
            gemm_block_##SUFFIX(g, bi, lo, hi);                                                    \
            i = bi * span + hi;                                                                    \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* items are the parts of k: part 0 goes to C (with beta), the others to copies */             \
    static void gemm_k_range_##SUFFIX(void *ctx, int64_t begin, int64_t end)                       \
    {                                                                                              \
        const Gemm##SUFFIX *g = ctx;                                                               \
        for (int64_t p = begin; p < end; p++) {                                                    \
            int64_t lo = g->k * p / g->parts, hi = g->k * (p + 1) / g->parts;                      \
            const T *a = g->a + (g->ta ? lo * g->lda : lo);                                        \
            const T *b = g->b + (g->tb ? lo : lo * g->ldb);                                        \
            if (p == 0)                                                                            \
                gemm_call_##SUFFIX(g, g->m, g->n, hi - lo, a, b, g->beta, g->c, g->ldc);           \
            else                                                                                   \
                gemm_call_##SUFFIX(g, g->m, g->n, hi - lo, a, b, 0,                                \
                                   g->copies + (p - 1) * g->m * g->n, g->n);                       \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* rows of C: adds the copies in order */                                                      \
    static void gemm_sum_range_##SUFFIX(void *ctx, int64_t begin, int64_t end)                     \
    {                                                                                              \
        const Gemm##SUFFIX *g = ctx;                                                               \
        for (int64_t i = begin; i < end; i++) {                                                    \
            T *c = g->c + i * g->ldc;                                                              \
            for (int p = 1; p < g->parts; p++) {                                                   \
                const T *x = g->copies + (p - 1) * g->m * g->n + i * g->n;                         \
                for (int64_t j = 0; j < g->n; j++)                                                 \
                    c[j] += x[j];                                                                  \
            }                                                                                      \
        }                                                                                          \
        if (g->ep)                                                                                 \
            gemm_epilogue_##SUFFIX(g, 0, begin, end, 0, g->n);                                     \
    }                                                                                              \
                                                                                                   \
    void nnd_gemm_##SUFFIX##_ep(NndPool *pool, int ta, int tb, int64_t m, int64_t n, int64_t k,    \
                                const T *a, int64_t lda, const T *b, int64_t ldb, T beta, T *c,    \
                                int64_t ldc, int64_t batch, int64_t stride_a, int64_t stride_b,    \
                                int64_t stride_c, int ep, const T *bias, const T *mask)            \
    {                                                                                              \
        if (m <= 0 || n <= 0 || batch <= 0)                                                        \
            return;                                                                                \
        if (k <= 0) {                                                                              \
            for (int64_t bi = 0; bi < batch; bi++)                                                 \
                for (int64_t i = 0; i < m; i++)                                                    \
                    for (int64_t j = 0; j < n; j++) {                                              \
                        T *x = c + bi * stride_c + i * ldc + j;                                    \
                        *x = beta == 0 ? 0 : beta * *x;                                            \
                    }                                                                              \
            Gemm##SUFFIX g = {.m = m,                                                              \
                              .n = n,                                                              \
                              .ldc = ldc,                                                          \
                              .sc = stride_c,                                                      \
                              .c = c,                                                              \
                              .ep = ep,                                                            \
                              .bias = bias,                                                        \
                              .mask = mask};                                                       \
            for (int64_t bi = 0; ep && bi < batch; bi++)                                           \
                gemm_epilogue_##SUFFIX(&g, bi, 0, m, 0, n);                                        \
            return;                                                                                \
        }                                                                                          \
        Gemm##SUFFIX g = {ta,                                                                      \
                          tb,                                                                      \
                          m,                                                                       \
                          n,                                                                       \
                          k,                                                                       \
                          lda,                                                                     \
                          ldb,                                                                     \
                          ldc,                                                                     \
                          batch,                                                                   \
                          stride_a,                                                                \
                          stride_b,                                                                \
                          stride_c,                                                                \
                          a,                                                                       \
                          b,                                                                       \
                          c,                                                                       \
                          beta,                                                                    \
                          m >= n ? BY_ROWS : BY_COLUMNS,                                           \
                          0,                                                                       \
                          NULL,                                                                    \
                          ep,                                                                      \
                          bias,                                                                    \
                          mask};                                                                   \
        int64_t work = m * n * k * batch;                                                          \
        int threads = nnd_pool_threads(pool);                                                      \
        if (work < (MIN_WORK) || threads == 1) {                                                   \
            gemm_range_##SUFFIX(&g, 0, batch *(g.split == BY_ROWS ? m : n));                       \
            return;                                                                                \
        }                                                                                          \
        if (batch == 1)                                                                            \
            g.split = choose_split(ta, tb, m, n, k, threads);                                      \
        if (g.split == BY_K) {                                                                     \
            g.parts = threads;                                                                     \
            g.copies = nnd_pool_scratch(pool, (size_t)((threads - 1) * m * n) * sizeof(T));        \
            if (g.copies) {                                                                        \
                nnd_parallel_for(pool, gemm_k_range_##SUFFIX, &g, threads, 1);                     \
                nnd_parallel_for(pool, gemm_sum_range_##SUFFIX, &g, m, (1 << 14) / n + 1);         \
                return;                                                                            \
            }                                                                                      \
            g.split = m >= n ? BY_ROWS : BY_COLUMNS; /* no memory for the copies */                \
        }                                                                                          \
        int64_t span = g.split == BY_ROWS ? m : n;                                                 \
        int64_t grain = batch * span / threads > MIN_BLOCK ? MIN_BLOCK : 1;                        \
        nnd_parallel_for(pool, gemm_range_##SUFFIX, &g, batch *span, grain);                       \
    }                                                                                              \
                                                                                                   \
    void nnd_gemm_##SUFFIX(NndPool *pool, int ta, int tb, int64_t m, int64_t n, int64_t k,         \
                           const T *a, int64_t lda, const T *b, int64_t ldb, T beta, T *c,         \
                           int64_t ldc, int64_t batch, int64_t stride_a, int64_t stride_b,         \
                           int64_t stride_c)                                                       \
    {                                                                                              \
        nnd_gemm_##SUFFIX##_ep(pool, ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc, batch,         \
                               stride_a, stride_b, stride_c, 0, NULL, NULL);                       \
    }

int64_t nnd_gemm_split_work(int bf16, NndDType dtype)
{
    return dtype == NND_F64                          ? MIN_SPLIT_WORK
           : (bf16 ? bf16_native() : f32_own() == 2) ? MIN_SPLIT_WORK_OWN
                                                     : MIN_SPLIT_WORK;
}

int nnd_gemm_splits(const NndPool *pool, int bf16, NndDType dtype, int64_t work)
{
    return nnd_pool_threads(pool) > 1 && work >= nnd_gemm_split_work(bf16, dtype);
}

GEMM_IMPL(f32, float, f32_sgemm, cblas_sgemv, nnd_gemm_split_work(0, NND_F32))
GEMM_IMPL(f64, double, cblas_dgemm, cblas_dgemv, nnd_gemm_split_work(0, NND_F64))
GEMM_IMPL(bf16, float, bf16_sgemm, bf16_sgemv, nnd_gemm_split_work(1, NND_F32))
