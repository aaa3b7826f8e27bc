/* blas: matrix products through OpenBLAS, split across the pool.
 *
 * OpenBLAS runs single-threaded (the pool told it so); each thread computes a block
 * of rows (or columns) of C with its own call, so one set of threads does all the
 * work and a given thread count always makes the same calls. */
#include <cblas.h>

#include "nnd_abi.h"

enum { MIN_SPLIT_WORK = 1 << 16 }; /* multiply-adds below which one call is faster */

#define GEMM_IMPL(SUFFIX, T, CBLAS, GEMV)                                                          \
    typedef struct Gemm##SUFFIX {                                                                  \
        int ta, tb;                                                                                \
        int64_t m, n, k, lda, ldb, ldc, batch, sa, sb, sc;                                         \
        const T *a, *b;                                                                            \
        T *c;                                                                                      \
        T beta;                                                                                    \
        int by_rows;                                                                               \
    } Gemm##SUFFIX;                                                                                \
                                                                                                   \
    static void gemm_block_##SUFFIX(const Gemm##SUFFIX *g, int64_t bi, int64_t lo, int64_t hi)     \
    {                                                                                              \
        const T *a = g->a + bi * g->sa, *b = g->b + bi * g->sb;                                    \
        T *c = g->c + bi * g->sc;                                                                  \
        int64_t m = g->m, n = g->n;                                                                \
        if (g->by_rows) {                                                                          \
            a += g->ta ? lo : lo * g->lda;                                                         \
            c += lo * g->ldc;                                                                      \
            m = hi - lo;                                                                           \
        } else {                                                                                   \
            b += g->tb ? lo * g->ldb : lo;                                                         \
            c += lo;                                                                               \
            n = hi - lo;                                                                           \
        }                                                                                          \
        /* a row (one token while sampling) times a matrix: a matrix-vector product; a             \
         * matrix product would pack the whole of b for one row */                                 \
        if (m == 1)                                                                                \
            GEMV(CblasRowMajor, g->tb ? CblasNoTrans : CblasTrans, (int)(g->tb ? n : g->k),        \
                 (int)(g->tb ? g->k : n), 1, b, (int)g->ldb, a, g->ta ? (int)g->lda : 1, g->beta,  \
                 c, 1);                                                                            \
        else                                                                                       \
            CBLAS(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans,                                \
                  g->tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)g->k, 1, a, (int)g->lda, \
                  b, (int)g->ldb, g->beta, c, (int)g->ldc);                                        \
    }                                                                                              \
                                                                                                   \
    static void gemm_range_##SUFFIX(void *ctx, int64_t begin, int64_t end)                         \
    {                                                                                              \
        const Gemm##SUFFIX *g = ctx;                                                               \
        int64_t span = g->by_rows ? g->m : g->n;                                                   \
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
    void nnd_gemm_##SUFFIX(NndPool *pool, int ta, int tb, int64_t m, int64_t n, int64_t k,         \
                           const T *a, int64_t lda, const T *b, int64_t ldb, T beta, T *c,         \
                           int64_t ldc, int64_t batch, int64_t stride_a, int64_t stride_b,         \
                           int64_t stride_c)                                                       \
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
            return;                                                                                \
        }                                                                                          \
        Gemm##SUFFIX g = {ta,       tb,       m,        n, k, lda, ldb,  ldc,   batch,             \
                          stride_a, stride_b, stride_c, a, b, c,   beta, m >= n};                  \
        int64_t span = g.by_rows ? m : n;                                                          \
        int64_t work = m * n * k * batch;                                                          \
        int threads = nnd_pool_threads(pool);                                                      \
        if (work < MIN_SPLIT_WORK || threads == 1) {                                               \
            gemm_range_##SUFFIX(&g, 0, batch *span);                                               \
            return;                                                                                \
        }                                                                                          \
        /* blocks of at least 8 rows keep OpenBLAS's kernels busy */                               \
        int64_t grain = batch * span / threads > 8 ? 8 : 1;                                        \
        nnd_parallel_for(pool, gemm_range_##SUFFIX, &g, batch *span, grain);                       \
    }

GEMM_IMPL(f32, float, cblas_sgemm, cblas_sgemv)
GEMM_IMPL(f64, double, cblas_dgemm, cblas_dgemv)
