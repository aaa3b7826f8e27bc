/* bf16: matrix products with bf16 inputs and f32 sums (precision = bf16).
 * Private to the runtime: compiled code calls nnd_gemm_bf16 (blas.c), which splits
 * a product across the pool and calls these for each block, as it calls OpenBLAS
 * for f32.  Same arguments as cblas_sgemm / cblas_sgemv (row-major only; alpha must
 * be 1). */
#ifndef NND_BF16_H
#define NND_BF16_H

#include <cblas.h>

#include "nnd_runtime.h"

void bf16_sgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
                float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c,
                int ldc);
void bf16_sgemv(CBLAS_ORDER order, CBLAS_TRANSPOSE t, int rows, int cols, float alpha,
                const float *a, int lda, const float *x, int incx, float beta, float *y, int incy);

/* The two ways bf16_sgemm computes, for tests: the AVX512-BF16 kernels (only where
 * nnd_bf16_native()), and the emulation (inputs rounded to bf16, then f32 OpenBLAS). */
void bf16_gemm_native(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                      const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
void bf16_gemm_emulated(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a,
                        int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                        int64_t ldc);

#endif
