/* kernels: the runtime's own matrix-product kernels, for AVX-512 CPUs (and for AVX2
 * ones, in sgemm_avx2.c), its 2x2 max pooling and its conversion of bytes to f32.
 * Private to the runtime: compiled code calls nnd_gemm_f32 and nnd_gemm_bf16
 * (blas.c), which split a product across the pool and call these for each block; the
 * convolutions (conv.c) call them for their im2col products, the pooling for its 2x2
 * planes, the loaders (data.c) for bytes.  The products take cblas_sgemm /
 * cblas_sgemv's arguments (row-major only; alpha must be 1). */
#ifndef NND_KERNELS_H
#define NND_KERNELS_H

#include <cblas.h>
#include <stdbool.h>

#include "nnd_abi.h"
#include "nnd_runtime.h"

/* f32: the own kernels where nnd_own_sgemm() says so (AVX-512, or AVX2 for some
 * shapes), else OpenBLAS's sgemm. */
void f32_sgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
               float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c,
               int ldc);
/* A product's epilogue (NND_EP_*, nnd_gemm_*_ep) on rows x n values of c, rows ldc
 * apart (the mask's ldm apart); the pooling's masked adjoint takes it too (blas.c). */
void epilogue_f32(float *restrict c, int64_t ldc, const float *restrict bias,
                  const float *restrict mask, int64_t ldm, int64_t rows, int64_t n, int ep);
void epilogue_f64(double *restrict c, int64_t ldc, const double *restrict bias,
                  const double *restrict mask, int64_t ldm, int64_t rows, int64_t n, int ep);

/* bf16 products, f32 sums (precision = bf16). */
void bf16_sgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
                float alpha, const float *a, int lda, const float *b, int ldb, float beta, float *c,
                int ldc);
void bf16_sgemv(CBLAS_ORDER order, CBLAS_TRANSPOSE t, int rows, int cols, float alpha,
                const float *a, int lda, const float *x, int incx, float beta, float *y, int incy);

/* This thread's buffer in slot (64-byte aligned, at least bytes), or NULL without
 * memory: kept, and grown when asked for more, until the thread ends.  One slot for
 * the products' packed operands, one for the convolutions' columns (which call the
 * products while they hold theirs), one for the per-chunk sums of a convolution's
 * weight gradient (taken by the thread that starts it, which then runs a job with
 * columns), one for the rounded copies of emulated bf16 products (which then call the
 * f32 products).  thread_scratch_fail(true), for tests: every call fails until false. */
typedef enum {
    SCRATCH_PACK,
    SCRATCH_CONV,
    SCRATCH_PARTS,
    SCRATCH_ROUND,
    SCRATCH_SLOTS
} ScratchSlot;
void *thread_scratch(ScratchSlot slot, size_t bytes);
void thread_scratch_fail(bool on);

/* The AVX2 f32 kernels (sgemm_avx2.c) for f32_gemm_own on a CPU without AVX-512:
 * false, with nothing written, for a product OpenBLAS runs faster (A in rows with a
 * long k) or without memory for their packing buffers. */
bool f32_gemm_avx2(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                   const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* nnd_own_sgemm() and nnd_bf16_native(), asked once. */
int f32_own(void);
int bf16_native(void);

/* For tests: the own f32 kernels (only where nnd_own_sgemm(); the AVX2 ones on an
 * AVX-512 CPU under vector_path(1)); the two ways
 * bf16_sgemm computes, the AVX512-BF16 kernels (only where nnd_bf16_native()) and the
 * emulation (inputs rounded to bf16, then f32 OpenBLAS). */
void f32_gemm_own(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
void bf16_gemm_native(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                      const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
void bf16_gemm_emulated(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a,
                        int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                        int64_t ldc);

/* Winograd's F(2x2, 5x5) and F(4x4, 3x3) for f32 convolutions (winograd.c): whether
 * it computes the convolution s (5x5 or 3x3, stride 1, no dilation or groups, padding
 * under the kernel's size, channels in 16s); whether nnd_conv2d_f32 and its adjoints
 * take it for s (it fits, on a CPU with AVX-512, where it was measured to win, unless
 * NND_WINOGRAD is 0); the forward pass and
 * the adjoints for the input and the weights (bf16: with every operand rounded to
 * bf16 first, as precision = bf16's products do, the sums in f32): 0, or -1 without
 * memory (then nothing was written). */
int wino_fits(const NndConvShape *s);
int wino_chosen(const NndConvShape *s);
int wino_conv2d(NndPool *pool, const NndConvShape *s, const float *x, const float *w, float *y,
                int bf16, int ep, const float *bias);
int wino_conv2d_grad_input(NndPool *pool, const NndConvShape *s, const float *dy, const float *w,
                           float *dx, int bf16);
int wino_conv2d_grad_weight(NndPool *pool, const NndConvShape *s, const float *x, const float *dy,
                            float *dw, int bf16);
/* For tests: the bytes of padded copies a call holds before it cuts the batch into
 * chunks of images (0: the default, 32 MiB). */
void wino_set_chunk_bytes(size_t bytes);

/* For tests: the widest vector path that max pooling and u8_to_f32 take (2 AVX-512,
 * 1 AVX2, 0 none: the plain loops); returns the one that will run. */
int vector_path(int widest);

/* dst[i] = (float)((double)src[i] * scale) for i < n (the loaders' bytes, pixels
 * mostly, as f32), in AVX-512 or AVX2 lanes where the CPU has them: the same values. */
void u8_to_f32(const unsigned char *src, int64_t n, double scale, float *dst);

/* Max pooling of one [h, w] plane over 2x2 windows, stride 2, no padding (conv.c's
 * maxpool_2x2, the same picks and the same three modes: scatter, max when in is xp,
 * else gather) in AVX-512 lanes, or AVX2 lanes on a CPU without AVX-512 F and VL;
 * false, doing nothing, on a CPU with neither (or under vector_path(0)). */
bool maxpool_2x2_own(const NndPoolShape *s, const float *xp, const float *in, float *out,
                     int scatter);

#endif
