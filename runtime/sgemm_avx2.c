/* sgemm_avx2: the runtime's own f32 matrix products for CPUs with AVX2 and FMA but not
 * AVX-512 (kernels.c has those): AMD's Zen 1-3, Intel's Haswell to Alder Lake.
 *
 * Goto's blocking, as in BLIS and OpenBLAS: a block of C, 6 rows by 16 columns, stays
 * in 12 ymm registers over a block of k (two registers of B and one broadcast of A
 * make 15 of the 16); k is walked in order, so each element's sum does not depend on
 * how the caller splits C.  B is packed into panels of 16 columns (transposed 8 x 8 in
 * registers when B is); a panel of one block of k (at most KC) stays in L1 while the
 * rows go by.  A is read where it is, one broadcast from memory per row and step of k.
 *
 * On the 2-core AMD EPYC (Zen 3) of bench/, a core's peak is 86 GFLOP/s (two 8-wide
 * FMAs a cycle); the kernel alone, in L1, ran at 84.  Against OpenBLAS 0.3.21's Zen
 * kernels, alone (best of hundreds of calls): x^T dY [784 x 64]^T [64 x 128] 1.13-1.28x,
 * [784 x 32]^T [32 x 32] 1.1-1.8x, dY W^T [64 x 10] [10 x 128]^T 1.9x; but A in rows
 * with a long k 0.85-0.93x ([64 x 784] [784 x 128], and 0.9x in the step too), C 10
 * columns wide 0.5-0.9x, and big products in the step (see OWN_MAX_WORK), so those go
 * to OpenBLAS. */
#define _POSIX_C_SOURCE 200809L
#include "kernels.h"
#include "lanes.h"

#include <stdbool.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

#define TARGET_Y __attribute__((target("avx2,fma")))
#define UNROLL _Pragma("GCC unroll 16")
#define ALWAYS_INLINE __attribute__((always_inline))

enum {
    MR = 6,
    NR = 16,
    KC = 256, /* k in blocks of at most KC where k > K_WHOLE */
    K_WHOLE = 384,
    MC = 120, /* rows of A per block */
    NC = 512, /* columns of B packed at a time */
    /* Multiply-adds up to which these run: over it, OpenBLAS's kernels (packing A too,
     * with prefetching these lack).  With these taking 784-1024-1024-10's weight
     * gradients as well ([784 x 256]^T [256 x 1024], 205M multiply-adds), its step ran
     * 0.95x as fast on one thread and 0.87x on two (bench/run.py, 3 rounds), though
     * alone, with A packed, they matched OpenBLAS's 1.0-1.04x. */
    OWN_MAX_WORK = 1 << 24,
    /* A in rows (not transposed) with a k over this, or a C under 16 columns wide:
     * OpenBLAS's sgemm (its Zen kernels), which ran x @ W1 of 784-128-10 ([64 x 784]
     * [784 x 128]) in 210-215 us of the step where these took 221-245 (alternating
     * runs), such products alone 1.05-1.1x as fast, and a 10-wide C 1.1-1.5x (these
     * computing it transposed, as kernels.c does, or not).  With a transposed A (x^T
     * dY: [784 x 64]^T [64 x 128] 1.13-1.27x OpenBLAS's speed) or a short k (dY W^T
     * through a 10-wide layer: [64 x 10] [10 x 128]^T 1.9x), these. */
    OWN_MAX_K_NN = 64,
};

/* C[0..mr)[0..nr) = acc + beta * C (beta 0: C is not read). */
TARGET_Y static inline ALWAYS_INLINE void store_block(__m256 acc[MR][2], int mr, int nr, float beta,
                                                      float *c, int64_t ldc)
{
    if (nr == NR) {
        __m256 vb = _mm256_set1_ps(beta);
        UNROLL
        for (int r = 0; r < MR; r++)
            if (r < mr) {
                float *cr = c + r * ldc;
                __m256 x0 = acc[r][0], x1 = acc[r][1];
                if (beta != 0) {
                    x0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr), x0);
                    x1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8), x1);
                }
                _mm256_storeu_ps(cr, x0);
                _mm256_storeu_ps(cr + 8, x1);
            }
        return;
    }
    /* a ragged edge: through a row on the stack (masked stores are slow on AMD's) */
    float row[NR];
    for (int r = 0; r < mr; r++) {
        _mm256_storeu_ps(row, acc[r][0]);
        _mm256_storeu_ps(row + 8, acc[r][1]);
        float *cr = c + r * ldc;
        for (int j = 0; j < nr; j++)
            cr[j] = beta != 0 ? row[j] + beta * cr[j] : row[j];
    }
}

/* r[i][j] <- r[j][i] for 8 x 8 floats. */
TARGET_Y static inline void transpose8(__m256 r[8])
{
    __m256 t[8], u[8];
    UNROLL
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    UNROLL
    for (int g = 0; g < 8; g += 4) {
        u[g] = _mm256_shuffle_ps(t[g], t[g + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    UNROLL
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/* Columns [j0, j0 + 16) of op(B) (k x n) as k rows of 16 (zeros past n). */
TARGET_Y static void pack_panel(int tb, int64_t n, int64_t k, const float *b, int64_t ldb,
                                int64_t j0, float *pb)
{
    int nr = n - j0 < NR ? (int)(n - j0) : NR;
    if (!tb) {
        const float *bj = b + j0;
        if (nr == NR) {
            for (int64_t q = 0; q < k; q++) {
                _mm256_store_ps(pb + q * NR, _mm256_loadu_ps(bj + q * ldb));
                _mm256_store_ps(pb + q * NR + 8, _mm256_loadu_ps(bj + q * ldb + 8));
            }
            return;
        }
        __m256i m0 = lanes8(nr), m1 = lanes8(nr - 8);
        for (int64_t q = 0; q < k; q++) {
            _mm256_store_ps(pb + q * NR, _mm256_maskload_ps(bj + q * ldb, m0));
            _mm256_store_ps(pb + q * NR + 8, _mm256_maskload_ps(bj + q * ldb + 8, m1));
        }
        return;
    }
    /* B's columns are rows of b: 8 values of each of 8 columns at a time, transposed */
    for (int64_t q0 = 0; q0 < k; q0 += 8) {
        int qn = k - q0 < 8 ? (int)(k - q0) : 8;
        __m256i mq = lanes8(qn);
        for (int half = 0; half < NR; half += 8) {
            __m256 r[8];
            UNROLL
            for (int jj = 0; jj < 8; jj++)
                r[jj] = half + jj < nr ? _mm256_maskload_ps(b + (j0 + half + jj) * ldb + q0, mq)
                                       : _mm256_setzero_ps();
            transpose8(r);
            for (int q = 0; q < qn; q++)
                _mm256_store_ps(pb + (q0 + q) * NR + half, r[q]);
        }
    }
}

/* C[0..mr)[0..nr) = sum over q of A(r, q) B panel (q, 0..16), + beta * C; A(r, q) is
 * a[r * ars + q * aqs]. */
TARGET_Y static inline ALWAYS_INLINE void kernel(int mr, int nr, int64_t k, const float *a,
                                                 int64_t ars, int64_t aqs, const float *pb,
                                                 float beta, float *c, int64_t ldc)
{
    __m256 acc[MR][2];
    UNROLL
    for (int r = 0; r < MR; r++)
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int64_t q = 0; q < k; q++) {
        __m256 b0 = _mm256_load_ps(pb + q * NR), b1 = _mm256_load_ps(pb + q * NR + 8);
        UNROLL
        for (int r = 0; r < MR; r++)
            if (r < mr) {
                __m256 x = _mm256_broadcast_ss(a + r * ars + q * aqs);
                acc[r][0] = _mm256_fmadd_ps(x, b0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(x, b1, acc[r][1]);
            }
    }
    store_block(acc, mr, nr, beta, c, ldc);
}

/* The whole block, with the row count known: the loop over rows unrolled. */
TARGET_Y static void kernel_full(int64_t k, const float *a, int64_t ars, int64_t aqs,
                                 const float *pb, float beta, float *c, int64_t ldc)
{
    kernel(MR, NR, k, a, ars, aqs, pb, beta, c, ldc);
}

/* The last rows of a panel (mr < MR), or its ragged last columns. */
TARGET_Y static void kernel_edge(int mr, int nr, int64_t k, const float *a, int64_t ars,
                                 int64_t aqs, const float *pb, float beta, float *c, int64_t ldc)
{
    kernel(mr, nr, k, a, ars, aqs, pb, beta, c, ldc);
}

/* Columns [j0, j0 + nc) of op(B), rows [0, k), as panels of 16 columns (k rows of 16
 * each, zeros past n), one after the other. */
TARGET_Y static void pack_b(int tb, int64_t n, int64_t k, const float *b, int64_t ldb, int64_t j0,
                            int64_t nc, float *pb)
{
    for (int64_t j = 0; j < nc; j += NR)
        pack_panel(tb, n, k, b, ldb, j0 + j, pb + j * k);
}

/* C = op(A) op(B) + beta C in blocks, as BLIS and OpenBLAS do (Goto's): k in blocks
 * of at most KC (a panel of B, kc x 16, stays in L1 while the blocks of rows go by),
 * rows MC at a time (the block of A they read, MC x kc, stays in L2); where there are
 * several blocks of rows, each block of k's B packed NC columns at a time first, else
 * each panel just before the rows read it.  pb: scratch for kc x NC floats. */
TARGET_Y static void gemm_blocks(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a,
                                 int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                                 int64_t ldc, float *pb)
{
    int64_t ars = ta ? 1 : lda, aqs = ta ? lda : 1;
    bool rows_blocks = m > MC; /* B's block packed whole: several blocks of rows read it */
    int64_t kblocks = k > K_WHOLE ? (k + KC - 1) / KC : 1;
    int64_t kc = (k + kblocks - 1) / kblocks; /* k = 784: 4 blocks of 196 */
    for (int64_t j0 = 0; j0 < n; j0 += NC) {
        int64_t nc = n - j0 < NC ? n - j0 : NC;
        int64_t q0 = 0;
        do { /* once with k = 0: C = beta C */
            int64_t kn = k - q0 < kc ? k - q0 : kc;
            float bq = q0 == 0 ? beta : 1; /* later blocks add to what the first wrote */
            const float *bk = b + (tb ? q0 : q0 * ldb);
            if (rows_blocks)
                pack_b(tb, n, kn, bk, ldb, j0, nc, pb);
            for (int64_t i0 = 0; i0 < m; i0 += MC) {
                int64_t mc = m - i0 < MC ? m - i0 : MC;
                const float *ap = a + q0 * aqs + i0 * ars;
                for (int64_t j = 0; j < nc; j += NR) {
                    int nr = nc - j < NR ? (int)(nc - j) : NR;
                    const float *pbj = pb + j * kn;
                    if (!rows_blocks) { /* packed just before the rows read it (in L1) */
                        pack_panel(tb, n, kn, bk, ldb, j0 + j, pb);
                        pbj = pb;
                    }
                    float *cj = c + i0 * ldc + j0 + j;
                    int64_t i = 0;
                    if (nr == NR)
                        for (; i + MR <= mc; i += MR)
                            kernel_full(kn, ap + i * ars, ars, aqs, pbj, bq, cj + i * ldc, ldc);
                    for (; i < mc; i += MR) {
                        int mr = mc - i < MR ? (int)(mc - i) : MR;
                        kernel_edge(mr, nr, kn, ap + i * ars, ars, aqs, pbj, bq, cj + i * ldc, ldc);
                    }
                }
            }
            q0 += kc;
        } while (q0 < k);
    }
}

bool f32_gemm_avx2(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                   const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    if (n < NR || (!ta && k > OWN_MAX_K_NN) || m * n * k > OWN_MAX_WORK)
        return false; /* OpenBLAS's kernels are faster there (see OWN_MAX_K_NN) */
    int64_t kmax = k > K_WHOLE ? KC : k > 0 ? k : 1;
    float *pb = thread_scratch(SCRATCH_PACK, (size_t)kmax * NC * sizeof(float));
    if (!pb)
        return false;
    gemm_blocks(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc, pb);
    return true;
}

#else
bool f32_gemm_avx2(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                   const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)a, (void)lda, (void)b, (void)ldb;
    (void)beta, (void)c, (void)ldc;
    return false;
}
#endif
