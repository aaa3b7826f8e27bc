/* nnd_abi.h: the interface between compiled code and the runtime.
 *
 * A compiled step (or eval, or forward) function is called through NndStepFn with
 * an NndStepArgs, and calls only the runtime functions NND_ABI_FUNCTIONS lists: the
 * JIT's symbol table is built from that list (backend/codegen.c), so code that
 * called anything else would not link.  Everything here is part of the runtime
 * library (no LLVM, no compiler). */
#ifndef NND_ABI_H
#define NND_ABI_H

#include "nnd_runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every function compiled code may call, declared below or in nnd_runtime.h. */
#define NND_ABI_FUNCTIONS(X)                                                                       \
    X(nnd_parallel_for)                                                                            \
    X(nnd_gemm_f32)                                                                                \
    X(nnd_gemm_f64)                                                                                \
    X(nnd_gemm_bf16)                                                                               \
    X(nnd_gemm_f32_ep)                                                                             \
    X(nnd_gemm_f64_ep)                                                                             \
    X(nnd_gemm_bf16_ep)                                                                            \
    X(nnd_expf)                                                                                    \
    X(nnd_logf)                                                                                    \
    X(nnd_tanhf)                                                                                   \
    X(nnd_sinf)                                                                                    \
    X(nnd_cosf)                                                                                    \
    X(nnd_powf)                                                                                    \
    X(nnd_exp)                                                                                     \
    X(nnd_log)                                                                                     \
    X(nnd_tanh)                                                                                    \
    X(nnd_sin)                                                                                     \
    X(nnd_cos)                                                                                     \
    X(nnd_pow)                                                                                     \
    X(nnd_clock_ns)                                                                                \
    X(nnd_check_finite)                                                                            \
    X(nnd_random_uniform)                                                                          \
    X(nnd_conv2d_f32)                                                                              \
    X(nnd_conv2d_grad_input_f32)                                                                   \
    X(nnd_conv2d_grad_weight_f32)                                                                  \
    X(nnd_conv2d_f64)                                                                              \
    X(nnd_conv2d_grad_input_f64)                                                                   \
    X(nnd_conv2d_grad_weight_f64)                                                                  \
    X(nnd_conv2d_bf16)                                                                             \
    X(nnd_conv2d_grad_input_bf16)                                                                  \
    X(nnd_conv2d_grad_weight_bf16)                                                                 \
    X(nnd_conv2d_f32_ep)                                                                           \
    X(nnd_conv2d_f64_ep)                                                                           \
    X(nnd_conv2d_bf16_ep)                                                                          \
    X(nnd_maxpool_gather_f32)                                                                      \
    X(nnd_maxpool_scatter_f32)                                                                     \
    X(nnd_maxpool_gather_f64)                                                                      \
    X(nnd_maxpool_scatter_f64)                                                                     \
    X(nnd_maxpool_scatter_f32_ep)                                                                  \
    X(nnd_maxpool_scatter_f64_ep)                                                                  \
    X(nnd_avgpool_f32)                                                                             \
    X(nnd_avgpool_grad_f32)                                                                        \
    X(nnd_avgpool_f64)                                                                             \
    X(nnd_avgpool_grad_f64)                                                                        \
    X(nnd_take_rows_f32)                                                                           \
    X(nnd_scatter_rows_f32)                                                                        \
    X(nnd_take_rows_f64)                                                                           \
    X(nnd_scatter_rows_f64)

/* C = op(A) @ op(B) + beta * C, row-major, op transposing when ta/tb; split across
 * the pool by rows (or columns) of C.  batch > 1 repeats it with the given strides
 * (in elements) between consecutive matrices. */
void nnd_gemm_f32(NndPool *pool, int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a,
                  int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc,
                  int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c);
void nnd_gemm_f64(NndPool *pool, int ta, int tb, int64_t m, int64_t n, int64_t k, const double *a,
                  int64_t lda, const double *b, int64_t ldb, double beta, double *c, int64_t ldc,
                  int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c);

/* nnd_gemm_f32 with bf16 products (precision = bf16): both operands rounded to bf16
 * (to nearest even), each product summed in f32; the AVX512-BF16 instructions where
 * the CPU has them (nnd_bf16_native), else emulated at f32 speed. */
void nnd_gemm_bf16(NndPool *pool, int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a,
                   int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc,
                   int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c);

/* The same, then an epilogue on each block of C as soon as its sums are whole, on the
 * thread that computed it (the step's loop after a product, fused: `relu(x @ W + b)`
 * with no pass of its own over the result, nor the result's lines moved between
 * cores): ep is a set of NND_EP_*, applied in this order.  bias: n values, added to
 * each row (NND_EP_BIAS); mask: values laid out as C with ldc = n, batch after batch
 * (NND_EP_MASK).  The values are those the step's loop would compute, to the bit. */
enum {
    NND_EP_BIAS = 1, /* c + bias[j] */
    NND_EP_RELU = 2, /* c <= 0 ? 0 : c (NaN stays NaN) */
    NND_EP_MASK = 4, /* mask > 0 ? c : 0: relu's derivative, through its output */
};
void nnd_gemm_f32_ep(NndPool *pool, int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a,
                     int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc,
                     int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c, int ep,
                     const float *bias, const float *mask);
void nnd_gemm_f64_ep(NndPool *pool, int ta, int tb, int64_t m, int64_t n, int64_t k,
                     const double *a, int64_t lda, const double *b, int64_t ldb, double beta,
                     double *c, int64_t ldc, int64_t batch, int64_t stride_a, int64_t stride_b,
                     int64_t stride_c, int ep, const double *bias, const double *mask);
void nnd_gemm_bf16_ep(NndPool *pool, int ta, int tb, int64_t m, int64_t n, int64_t k,
                      const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                      float *c, int64_t ldc, int64_t batch, int64_t stride_a, int64_t stride_b,
                      int64_t stride_c, int ep, const float *bias, const float *mask);

/* A monotonic clock in nanoseconds (for profiling builds of generated code). */
int64_t nnd_clock_ns(void);

/* Convolution and pooling, NCHW, like PyTorch's conv2d (a cross-correlation with
 * zero padding), max_pool2d and avg_pool2d (count_include_pad).  The batch is
 * split across the pool; for a given thread count results are the same bits every
 * time. */
typedef struct NndConvShape {
    int64_t n, c, h, w; /* input x: [n, c, h, w] */
    int64_t o, kh, kw; /* weights: [o, c / groups, kh, kw] */
    int64_t oh, ow; /* output: [n, o, oh, ow], oh = (h + 2 ph - dh (kh - 1) - 1) / sh + 1 */
    int64_t sh, sw, ph, pw, dh, dw, groups;
} NndConvShape;

/* y = conv2d(x, w) */
void nnd_conv2d_f32(NndPool *pool, const NndConvShape *s, const float *x, const float *w, float *y);
/* dx: the adjoint of conv2d with respect to x, for the output's adjoint dy */
void nnd_conv2d_grad_input_f32(NndPool *pool, const NndConvShape *s, const float *dy,
                               const float *w, float *dx);
/* dw: the adjoint with respect to w (summed over the batch) */
void nnd_conv2d_grad_weight_f32(NndPool *pool, const NndConvShape *s, const float *x,
                                const float *dy, float *dw);
void nnd_conv2d_f64(NndPool *pool, const NndConvShape *s, const double *x, const double *w,
                    double *y);
void nnd_conv2d_grad_input_f64(NndPool *pool, const NndConvShape *s, const double *dy,
                               const double *w, double *dx);
void nnd_conv2d_grad_weight_f64(NndPool *pool, const NndConvShape *s, const double *x,
                                const double *dy, double *dw);
/* The same three in f32 with bf16 products (precision = bf16; see nnd_gemm_bf16) */
void nnd_conv2d_bf16(NndPool *pool, const NndConvShape *s, const float *x, const float *w,
                     float *y);
void nnd_conv2d_grad_input_bf16(NndPool *pool, const NndConvShape *s, const float *dy,
                                const float *w, float *dx);
void nnd_conv2d_grad_weight_bf16(NndPool *pool, const NndConvShape *s, const float *x,
                                 const float *dy, float *dw);
/* The forward convolution with an epilogue on its outputs as they are made (see
 * nnd_gemm_f32_ep): NND_EP_BIAS adds bias[o] to output channel o, NND_EP_RELU then
 * keeps y > 0 ? y : 0; the values the step's loop would compute, to the bit. */
void nnd_conv2d_f32_ep(NndPool *pool, const NndConvShape *s, const float *x, const float *w,
                       float *y, int ep, const float *bias);
void nnd_conv2d_f64_ep(NndPool *pool, const NndConvShape *s, const double *x, const double *w,
                       double *y, int ep, const double *bias);
void nnd_conv2d_bf16_ep(NndPool *pool, const NndConvShape *s, const float *x, const float *w,
                        float *y, int ep, const float *bias);

typedef struct NndPoolShape {
    int64_t n, c, h, w; /* input: [n, c, h, w] */
    int64_t oh, ow; /* output: [n, c, oh, ow] */
    int64_t kh, kw, sh, sw, ph, pw;
} NndPoolShape;

/* Max pooling is routing: each window of x picks the position of its first
 * maximum (row-major order; padding never wins).  gather: out[n,c,i,j] = v at the
 * position x's window (i, j) picks (max_pool2d(x) is gather(x, x)).  scatter: out,
 * shaped like x, is zero but for d[n,c,i,j] added at the picked positions (the
 * adjoint of gather with respect to v). */
void nnd_maxpool_gather_f32(NndPool *pool, const NndPoolShape *s, const float *x, const float *v,
                            float *out);
void nnd_maxpool_scatter_f32(NndPool *pool, const NndPoolShape *s, const float *x, const float *d,
                             float *out);
void nnd_maxpool_gather_f64(NndPool *pool, const NndPoolShape *s, const double *x, const double *v,
                            double *out);
void nnd_maxpool_scatter_f64(NndPool *pool, const NndPoolShape *s, const double *x, const double *d,
                             double *out);
/* scatter, then the epilogue ep on each plane while it is in cache: NND_EP_MASK alone
 * (out = mask > 0 ? out : 0, mask shaped like out: relu's derivative through its
 * output, the values the pooling routed by; see nnd_gemm_f32_ep). */
void nnd_maxpool_scatter_f32_ep(NndPool *pool, const NndPoolShape *s, const float *x,
                                const float *d, float *out, int ep, const float *mask);
void nnd_maxpool_scatter_f64_ep(NndPool *pool, const NndPoolShape *s, const double *x,
                                const double *d, double *out, int ep, const double *mask);
/* Average pooling (the divisor counts padding, as PyTorch's default), and its
 * adjoint: each dy[n,c,i,j] / (kh kw) spread over its window. */
void nnd_avgpool_f32(NndPool *pool, const NndPoolShape *s, const float *x, float *y);
void nnd_avgpool_grad_f32(NndPool *pool, const NndPoolShape *s, const float *dy, float *dx);
void nnd_avgpool_f64(NndPool *pool, const NndPoolShape *s, const double *x, double *y);
void nnd_avgpool_grad_f64(NndPool *pool, const NndPoolShape *s, const double *dy, double *dx);

/* Embeddings: out[i, :] = table[idx[i], :] (rows of d values); scatter_add is its
 * adjoint, out (v x d) = 0 then out[idx[i], :] += d_in[i, :].  Indices must be in
 * [0, v): the compiled code checks them first. */
void nnd_take_rows_f32(const float *table, const int32_t *idx, int64_t n, int64_t d, float *out);
void nnd_scatter_rows_f32(const float *src, const int32_t *idx, int64_t n, int64_t d, int64_t v,
                          float *out);
void nnd_take_rows_f64(const double *table, const int32_t *idx, int64_t n, int64_t d, double *out);
void nnd_scatter_rows_f64(const double *src, const int32_t *idx, int64_t n, int64_t d, int64_t v,
                          double *out);

/* Scalar maths the code generator does not expand inline (libm underneath). */
float nnd_expf(float x);
float nnd_logf(float x);
float nnd_tanhf(float x);
float nnd_sinf(float x);
float nnd_cosf(float x);
float nnd_powf(float x, float y);
double nnd_exp(double x);
double nnd_log(double x);
double nnd_tanh(double x);
double nnd_sin(double x);
double nnd_cos(double x);
double nnd_pow(double x, double y);

/* What a compiled step (or eval, or forward) function receives.  Buffers are in the
 * program's dtypes; x and y hold `batch` samples. */
typedef struct NndStepArgs {
    void *const *params; /* one buffer per parameter, updated in place by a step */
    void *const *states; /* one per optimizer state */
    const void *x, *y;
    const double *hypers; /* run-time hyper-parameters, step, epoch, steps, t */
    int64_t batch; /* the batch dimension B */
    char *arena; /* scratch memory, planned at compile time */
    double *out; /* scalar results: the loss, or the metrics */
    NndPool *pool;
    int32_t status; /* set non-zero by the code on bad data (a label out of range) */
    void *user; /* for step functions that are not generated code */
    int64_t *profile; /* code compiled for profiling adds each kernel's nanoseconds here */
    /* NND_STATUS_NONFINITE (code compiled with --check-numerics): the graph node whose
     * values were not all finite, how many were not, and the first of them.
     * NND_STATUS_LABEL_RANGE, _INDEX_RANGE: bad_value is a label or index that was
     * out of range and bad_count the classes or rows it had to be below */
    int64_t bad_node, bad_count;
    double bad_value;
    /* A distributed program's accumulation step (exec/dist.h) calls ready with a
     * gradient sum's state index as soon as the sum is final, so its all-reduce can
     * start while the rest of the backward pass runs; NULL: not called */
    void (*ready)(struct NndStepArgs *args, int32_t state);
    void *ready_ctx;
    /* Called (when set) where the pool's workers have nothing to do for the longest
     * stretch of the step: the kernels from there on are too small to split, until
     * the next that splits waits for what idle handed the pool (nnd_pool_post).  The
     * trainer gathers the next batch there. */
    void (*idle)(struct NndStepArgs *args);
    void *idle_ctx;
} NndStepArgs;

typedef void (*NndStepFn)(NndStepArgs *args);
/* args->status: a label outside the classes (pick, one_hot), an index outside a
 * table (take, scatter-add): the step goes on with safe indices and the trainer
 * stops; NaN or infinite values (checked code only): the step returns at once;
 * NND_STATUS_FAILED: a step that is not generated code (the interpreter) failed */
enum {
    NND_STATUS_LABEL_RANGE = 1,
    NND_STATUS_INDEX_RANGE = 2,
    NND_STATUS_NONFINITE = 3,
    NND_STATUS_FAILED = 4
};

/* Counts the NaN and infinite values among n of dtype (f32 or f64) at p; when there
 * are any, sets args->status to NND_STATUS_NONFINITE and records node, the count and
 * the first bad value (for code compiled with --check-numerics). */
int64_t nnd_check_finite(const void *p, int64_t n, int32_t dtype, NndStepArgs *args, int64_t node);

#ifdef __cplusplus
}
#endif

#endif
