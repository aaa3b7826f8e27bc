/* nnd_runtime.h: the C runtime of nnd.
 *
 * A plain C11 library with no LLVM dependency: tensors and their allocator, the
 * counter-based random number generator, and data loaders.  Functions that can fail
 * return 0 on success and -1 on failure, with a message in an NndErr that names the
 * file and what is wrong.  Nothing here calls exit() or abort() on bad input. */
#ifndef NND_RUNTIME_H
#define NND_RUNTIME_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { NND_MAX_RANK = 8 };

typedef struct NndErr {
    char msg[1024];
} NndErr;

/* Formats a message into err (if err is not NULL) and returns -1. */
int nnd_err(NndErr *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---- allocation -------------------------------------------------------------------
 * Every tensor buffer the runtime allocates goes through one hook, so tests can make
 * the Nth allocation fail.  nnd_alloc returns 64-byte aligned memory or NULL. */
typedef struct NndAllocator {
    void *(*alloc)(size_t size, void *ctx); /* returns 64-byte aligned memory or NULL */
    void (*free)(void *p, void *ctx);
    void *ctx;
} NndAllocator;

/* Installs a (NULL: the default) allocator; returns the previous one.  Process-wide
 * and unsynchronised; memory must be freed by the allocator that allocated it. */
NndAllocator nnd_set_allocator(const NndAllocator *a);
void *nnd_alloc(size_t size);
void nnd_free(void *p);

/* ---- tensors ----------------------------------------------------------------------- */
typedef enum NndDType {
    NND_F32,
    NND_F64,
    NND_I32,
    NND_BOOL, /* one byte per element, 0 or 1 */
    NND_DTYPE_COUNT
} NndDType;

typedef struct NndTensor {
    NndDType dtype;
    int rank;
    int64_t shape[NND_MAX_RANK];
    void *data; /* owned; from nnd_alloc */
} NndTensor;

size_t nnd_dtype_size(NndDType t);
const char *nnd_dtype_name(NndDType t);
int64_t nnd_tensor_numel(const NndTensor *t);
/* Allocates data for the given shape (zeroed); -1 when the size overflows or the
 * allocation fails.  Overwrites *t (frees nothing); on failure t->data is NULL. */
int nnd_tensor_alloc(NndTensor *t, NndDType dtype, int rank, const int64_t *shape, NndErr *err);
void nnd_tensor_free(NndTensor *t);

/* ---- random numbers ----------------------------------------------------------------
 * Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", 2011).
 * A value depends only on (seed, stream, index), never on the thread or call order. */
void nnd_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);
/* 64 random bits for (seed, stream, index). */
uint64_t nnd_random_u64(uint64_t seed, uint64_t stream, uint64_t index);
/* Uniform in [0, 1) with 53 random bits. */
double nnd_random_uniform(uint64_t seed, uint64_t stream, uint64_t index);
/* Standard normal (Box-Muller on two uniforms of the same counter). */
double nnd_random_normal(uint64_t seed, uint64_t stream, uint64_t index);
/* A uniformly random permutation of 0..n-1 (Fisher-Yates driven by the counter). */
void nnd_random_permutation(uint32_t *perm, uint32_t n, uint64_t seed, uint64_t stream);
/* A stable 64-bit stream id for a name (FNV-1a), so a parameter's initial values do
 * not change when other parameters are added. */
uint64_t nnd_stream_of(const char *name);

/* ---- data loaders ------------------------------------------------------------------
 * Every size a file declares is checked against the file before anything is
 * allocated from it.  Features come back as NND_F32 or NND_F64 (opts->float_dtype)
 * with value * scale applied; labels of an integer type come back as NND_I32, labels
 * of a float type as float_dtype (labels are never scaled).  opts may be NULL (scale 1,
 * NND_F32).  Any of the files may be gzip-compressed (detected by its magic bytes).
 * On failure the output tensors have data NULL, so nnd_tensor_free is always safe. */
typedef struct NndLoadOptions {
    double scale; /* 0 means 1 */
    NndDType float_dtype; /* NND_F32 or NND_F64 */
} NndLoadOptions;

typedef enum NndRole { NND_FEATURES, NND_LABELS } NndRole;

/* IDX (LeCun's MNIST format), plain or gzip-compressed (detected by magic bytes).
 * Element types u8, i8, i16, i32, f32, f64 (big-endian, as the format says). */
int nnd_idx_load(const char *path, NndRole role, const NndLoadOptions *opts, NndTensor *out,
                 NndErr *err);
/* Reads only the header: out->dtype, rank and shape are set, out->data is NULL.  The
 * header is checked as by load, and so is the file size where it is known without
 * reading the data (uncompressed files). */
int nnd_idx_probe(const char *path, NndRole role, const NndLoadOptions *opts, NndTensor *out,
                  NndErr *err);

/* NPY versions 1.0, 2.0 and 3.0; dtypes <f4 <f8 |u1 |i1 <i2 <i4 <i8 |b1
 * (little-endian), C order. */
int nnd_npy_load(const char *path, NndRole role, const NndLoadOptions *opts, NndTensor *out,
                 NndErr *err);
int nnd_npy_probe(const char *path, NndRole role, const NndLoadOptions *opts, NndTensor *out,
                  NndErr *err);

/* CSV with a header line of column names.  label names the label column (NULL: the
 * last column); every other column is a feature, scaled by opts->scale.  x is
 * [N, features] float_dtype.  With classes == 0, y is [N, 1] float_dtype (regression
 * targets); with classes != 0, y is [N] NND_I32 and every label must be a whole
 * number >= 0 (class indices).  Empty lines are skipped; a row with the wrong number
 * of fields or a field that is not a finite number (strtod syntax; quoted fields are
 * not supported) is an error naming the line. */
int nnd_csv_load(const char *path, const char *label, int classes, const NndLoadOptions *opts,
                 NndTensor *x, NndTensor *y, NndErr *err);

/* ---- safetensors -------------------------------------------------------------------
 * Hugging Face's safetensors format: an 8-byte little-endian header length N, N bytes
 * of JSON ({"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
 * ..., "__metadata__": {"key": "value"}}, padded with spaces), then the tensors'
 * bytes, little-endian and in C order, offsets counted from the end of the header.
 * Strings are UTF-8.  The JSON goes through jansson, whose own memory comes from
 * malloc, not from nnd_alloc. */
typedef struct NndNamedTensor {
    const char *name;        /* borrowed */
    const NndTensor *tensor; /* borrowed */
} NndNamedTensor;

typedef struct NndStrPair {
    const char *key;   /* borrowed, or owned by an NndSafetensors */
    const char *value; /* likewise */
} NndStrPair;

/* Writes n tensors (f32, f64, i32, bool; names distinct and not "__metadata__") in
 * the given order, and n_meta metadata pairs (meta may be NULL when n_meta is 0), to
 * path.  Atomic: the bytes go to a new file path.tmp.XXXXXX in the same directory,
 * which is synced and renamed over path, and then the directory is synced.  On
 * failure before the rename the temporary file is removed and any file already at
 * path is untouched; a failure to sync the directory after the rename is reported
 * too, with the new file in place.  The new file keeps the old one's permissions
 * (else 0666 less the umask).  Borrows everything. */
int nnd_safetensors_write(const char *path, const NndNamedTensor *tensors, int n,
                          const NndStrPair *meta, int n_meta, NndErr *err);
/* Writes n bytes to path the same atomic way (for plots and other small files). */
int nnd_write_file_atomic(const char *path, const void *data, size_t n, NndErr *err);

typedef struct NndSafetensorsEntry {
    const char *name;       /* owned by the NndSafetensors */
    const char *dtype_name; /* as the file spells it: "F32", "BF16", ... (static) */
    NndDType dtype;         /* NND_DTYPE_COUNT when this dtype cannot be loaded */
    int rank;
    int64_t shape[NND_MAX_RANK];
    int64_t offset; /* of the first byte, from the start of the file */
    int64_t nbytes;
} NndSafetensorsEntry;

/* An open file whose header has been read and checked in full: every entry's dtype,
 * shape and byte range are valid, and the tensors tile the data exactly (no overlap,
 * no gap, nothing after the last).  Dtypes other than F32, F64, I32 and BOOL are
 * listed but cannot be loaded. */
typedef struct NndSafetensors {
    const char *path; /* a copy, owned */
    int n_tensors;
    NndSafetensorsEntry *tensors; /* owned; in the order of their data */
    int n_meta;
    NndStrPair *meta; /* owned; in the order of the header */
    void *file_;      /* private: the open FILE */
    char *pool_;      /* private: the strings above */
} NndSafetensors;

/* Opens path and checks its header; on failure st is closed (so _close is safe). */
int nnd_safetensors_open(NndSafetensors *st, const char *path, NndErr *err);
/* The entry called name, or NULL (a linear search); borrowed from st. */
const NndSafetensorsEntry *nnd_safetensors_find(const NndSafetensors *st, const char *name);
/* The metadata value for key, or NULL; borrowed from st. */
const char *nnd_safetensors_meta(const NndSafetensors *st, const char *key);
/* Reads the tensor called name into out, allocated by nnd_tensor_alloc (the caller
 * owns it).  Bool bytes must be 0 or 1.  On failure out->data is NULL.  Loads share
 * the one open file, so one thread at a time per NndSafetensors. */
int nnd_safetensors_load(NndSafetensors *st, const char *name, NndTensor *out, NndErr *err);
/* Closes the file and frees what open allocated; st is zeroed.  NULL is fine. */
void nnd_safetensors_close(NndSafetensors *st);


/* ---- training logs -------------------------------------------------------------------
 * TensorBoard event files (TFRecords of tensorflow.Event messages, masked CRC-32C)
 * and metrics.csv (step,epoch,tag,value) in one directory. */
typedef struct NndLog NndLog;
/* Creates dir (and its parents) and a new events.out.tfevents.TIME.HOST.PID file;
 * metrics.csv is started afresh, or appended to when append (a resumed run). */
NndLog *nnd_log_open(const char *dir, int append, NndErr *err);
int nnd_log_scalar(NndLog *l, const char *tag, int64_t step, int64_t epoch, double value, NndErr *err);
/* A histogram of n values (f32 or f64) in 30 equal buckets; non-finite ones left out. */
int nnd_log_histogram(NndLog *l, const char *tag, int64_t step, const void *data, NndDType dtype,
                      int64_t n, NndErr *err);
/* Hands what was written to the kernel: a run killed after this leaves it whole. */
int nnd_log_flush(NndLog *l, NndErr *err);
void nnd_log_close(NndLog *l);
const char *nnd_log_events_path(const NndLog *l);
/* CRC-32C (Castagnoli) of n bytes. */
uint32_t nnd_crc32c(const void *data, size_t n);

/* ---- threads ------------------------------------------------------------------------
 * One pool owns the cores.  OpenBLAS is told to use one thread, and matrix products
 * are split across the pool instead, so two sets of threads never compete.  Every
 * thread that computes (the pool's and the caller's) flushes denormals to zero.
 * Work is split into the same contiguous ranges for a given thread count, so
 * results do not depend on timing. */
typedef struct NndPool NndPool;

/* nthreads <= 0: every core.  Returns NULL (with err) when threads cannot start. */
NndPool *nnd_pool_create(int nthreads, NndErr *err);
void nnd_pool_destroy(NndPool *pool);
int nnd_pool_threads(const NndPool *pool);
/* fn(ctx, begin, end) over [0, n) in nnd_pool_threads() contiguous ranges (fewer when
 * n < threads * grain); returns when all are done.  pool may be NULL (runs inline). */
typedef void (*NndRangeFn)(void *ctx, int64_t begin, int64_t end);
void nnd_parallel_for(NndPool *pool, NndRangeFn fn, void *ctx, int64_t n, int64_t grain);
/* Sets flush-to-zero and denormals-are-zero for the calling thread. */
void nnd_flush_denormals(void);

/* ---- the ABI of generated code ------------------------------------------------------
 * JIT-compiled code calls only the functions in this section (the JIT links nothing
 * else), and is called through NndStepFn. */

/* C = op(A) @ op(B) + beta * C, row-major, op transposing when ta/tb; split across
 * the pool by rows (or columns) of C.  batch > 1 repeats it with the given strides
 * (in elements) between consecutive matrices. */
void nnd_gemm_f32(NndPool *pool, int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a,
                  int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc,
                  int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c);
void nnd_gemm_f64(NndPool *pool, int ta, int tb, int64_t m, int64_t n, int64_t k, const double *a,
                  int64_t lda, const double *b, int64_t ldb, double beta, double *c,
                  int64_t ldc, int64_t batch, int64_t stride_a, int64_t stride_b,
                  int64_t stride_c);

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
void nnd_maxpool_gather_f64(NndPool *pool, const NndPoolShape *s, const double *x,
                            const double *v, double *out);
void nnd_maxpool_scatter_f64(NndPool *pool, const NndPoolShape *s, const double *x,
                             const double *d, double *out);
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
     * values were not all finite, how many were not, and the first of them */
    int64_t bad_node, bad_count;
    double bad_value;
} NndStepArgs;

typedef void (*NndStepFn)(NndStepArgs *args);
/* args->status: a label outside the classes (pick, one_hot), an index outside a
 * table (take, scatter-add): the step goes on with safe indices and the trainer
 * stops; NaN or infinite values (checked code only): the step returns at once */
enum { NND_STATUS_LABEL_RANGE = 1, NND_STATUS_INDEX_RANGE = 2, NND_STATUS_NONFINITE = 3 };

/* Counts the NaN and infinite values among n of dtype (f32 or f64) at p; when there
 * are any, sets args->status to NND_STATUS_NONFINITE and records node, the count and
 * the first bad value (for code compiled with --check-numerics). */
int64_t nnd_check_finite(const void *p, int64_t n, int32_t dtype, NndStepArgs *args, int64_t node);

/* ---- the training loop --------------------------------------------------------------
 * Shuffles (Philox, per epoch), gathers batches, calls the step, evaluates, shows
 * progress.  The same loop drives compiled code and the reference interpreter. */
typedef struct NndDataSet {
    const char *name;
    const NndTensor *x, *y; /* [n, ...]: borrowed */
} NndDataSet;

typedef struct NndEvalSpec {
    int data; /* index in NndTrainer.data */
    int64_t every; /* in steps, or in epochs when in_epochs */
    int in_epochs;
    int nmetrics;
    const char *const *names;
    NndStepFn fn; /* writes each metric's batch mean to out[0..nmetrics) */
    void *user;
} NndEvalSpec;

/* Where a run stands after a step: what a checkpoint records besides the tensors.
 * Shuffling (seed, epoch) and every random draw (seed, step) are functions of these
 * counters, so a run resumed from them continues exactly. */
typedef struct NndTrainPoint {
    int64_t step; /* steps done */
    int64_t epoch; /* the epoch of the last step done (0-based) */
    double loss_sum; /* the epoch's running loss: sum of batch loss * batch size */
    int64_t loss_n; /* and of batch sizes */
} NndTrainPoint;

/* Writes a checkpoint; nonzero (with err) stops training with an error. */
typedef int (*NndCheckpointFn)(void *ctx, const NndTrainPoint *at, NndErr *err);
/* After each step: its outputs (out[0] the loss; when `full`, the step_full function
 * ran and out[1..nout) hold the step's other scalars, a log's statistics); the hook
 * may change hypers for the next step (a learning-rate sweep) and returns nonzero to
 * end training there, successfully. */
typedef int (*NndStepHook)(void *ctx, const NndTrainPoint *at, const double *out, int full,
                           double *hypers);
/* After each evaluation: the metrics of evals[which] at this point. */
typedef void (*NndEvalHook)(void *ctx, int which, const NndTrainPoint *at, const double *values);

typedef struct NndTrainer {
    void *const *params;
    void *const *eval_params; /* what evaluation reads as the parameters (their moving
                                 averages); NULL: params */
    void *const *states;
    double *hypers; /* the loop sets hypers[h_step], [h_epoch], [h_steps], [h_t] */
    int h_step, h_epoch, h_steps, h_t;
    const NndDataSet *data;
    int ndata, train; /* train: the data set trained on */
    int64_t batch, epochs, steps; /* steps > 0 wins over epochs */
    uint64_t seed;
    int shuffle;
    NndStepFn step; /* writes the batch's loss to out[0] */
    NndStepFn step_full; /* the same step writing nout - 1 more scalars after the loss,
                            run after steps 1, full_every, 2 full_every, ... (or at the end
                            of every full_every-th epoch); NULL: never */
    void *user_full;
    int64_t full_every;
    int full_in_epochs;
    int nout; /* 0 counts as 1 */
    void *user;
    /* accumulate > 1: each update takes that many batches; all but the last of a
     * group run step_accum (which adds to the gradient sums), the last one the step,
     * with hypers[h_accum] = the group's samples */
    NndStepFn step_accum;
    void *user_accum;
    int64_t accumulate;
    int h_accum, h_micro; /* hypers[h_micro] = the micro-batch's place in its group */
    const NndEvalSpec *evals;
    int nevals;
    char *arena;
    NndPool *pool;
    FILE *progress; /* NULL: silent */
    int interactive; /* one updating line (a terminal), else periodic plain lines */
    const char *what; /* shown in the first line, e.g. "JIT, 2 threads" */
    int64_t *profile; /* passed to the step (NndStepArgs.profile) */
    NndTrainPoint start; /* resume: the point to continue from (zeros: the beginning) */
    NndCheckpointFn checkpoint; /* NULL: none; else called every ckpt_every steps or
                                   epochs (ckpt_in_epochs) and after the last step */
    void *ckpt_ctx;
    int64_t ckpt_every;
    int ckpt_in_epochs;
    NndStepHook on_step; /* NULL: none */
    NndEvalHook on_eval;
    void *hook_ctx;
} NndTrainer;

typedef struct NndTrainResult {
    double final_loss; /* mean loss over the last epoch run (or part of it) */
    int64_t steps; /* steps run */
    double seconds; /* in steps, evaluation excluded */
    double full_seconds; /* of that, in the steps that ran step_full and the hook */
    int64_t full_steps;
    int nonfinite; /* stopped at step `steps`: 1 on a NaN or infinite loss, 2 on
                      non-finite values found by checked code (below) */
    int64_t bad_node, bad_count, bad_epoch; /* nonfinite == 2: as in NndStepArgs */
    double bad_value;
} NndTrainResult;

/* Updates in an epoch of `samples`: one per batch, or per group of `accumulate`
 * batches. */
int64_t nnd_train_steps_per_epoch(int64_t samples, int64_t batch, int64_t accumulate);
/* Total steps of a run. */
int64_t nnd_train_total_steps(const NndTrainer *t);
/* Trains; 0 on success, 1 when stopped on a non-finite loss, -1 on error (err). */
int nnd_train(const NndTrainer *t, NndTrainResult *res, NndErr *err);
/* The metrics of evals[which] averaged over its data set (weighted by batch size). */
int nnd_evaluate(const NndTrainer *t, int which, double *values, NndErr *err);

#ifdef __cplusplus
}
#endif

#endif
