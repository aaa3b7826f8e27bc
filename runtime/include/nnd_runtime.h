/* nnd_runtime.h: the C runtime of nnd, as its users see it.
 *
 * A plain C11 library with no LLVM and no compiler in it: tensors and their
 * allocator, the counter-based random number generator, the data loaders,
 * safetensors, training logs and the thread pool.  Two more headers complete it:
 * nnd_abi.h, what compiled code may call, and nnd_train.h, the training loop that
 * drives compiled steps.  Functions that can fail return 0 on success and -1 on
 * failure, with a message in an NndErr that names the file and what is wrong.
 * Nothing here calls exit() or abort() on bad input. */
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
 * the Nth allocation fail.  nnd_alloc returns 64-byte aligned memory or NULL; the
 * default allocator puts a buffer of 4 KiB or more on a page of its own (loops over
 * buffers one cache line apart within a page run up to 30% slower: 4K aliasing) and
 * one of 4 MiB or more on a huge page.  An allocator installed here need only align
 * to 64 bytes, at that cost. */
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
/* n values of compiled code's outputs (doubles) stored as dtype dt at dst. */
void nnd_store_values(const double *src, int64_t n, NndDType dt, void *dst);
/* Element i of t (flat index) as a double: its inverse, for any dtype. */
double nnd_tensor_value(const NndTensor *t, int64_t i);
/* A shape as diagnostics print it, "[784, 128]" ("[]" for a scalar), cut to size. */
void nnd_shape_text(char *buf, size_t size, int rank, const int64_t *shape);
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
/* out[i] = nnd_random_uniform(seed, stream, first + i) for i < n, many at once. */
void nnd_random_uniform_fill(uint64_t seed, uint64_t stream, uint64_t first, int64_t n,
                             double *out);
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
/* Writes t as an NPY 1.0 file (<f4, <f8, <i4 or |b1, C order), atomically as
 * nnd_write_file_atomic does. */
int nnd_npy_write(const char *path, const NndTensor *t, NndErr *err);

/* Feature rows converted when a batch takes them instead of loaded at once: a plain
 * file is mapped into memory, so a process reads the pages of the rows it gathers
 * and processes on one machine share them (MPI ranks each take a part of every
 * batch); a gzip-compressed IDX file is read into memory as it is stored (an image
 * set's u8 pixels: a quarter of the memory of f32, and a quarter of the bytes a
 * batch reads).  A gather converts its rows as load does, to the same values.
 * nnd_idx_map and nnd_npy_map check the file as probe does and set out's dtype,
 * rank and shape; *rows is the file's rows, or NULL where they cannot be converted on
 * demand (labels, f64 data read as f32, no memory): out is then loaded as by
 * nnd_idx_load or nnd_npy_load.  On failure *rows is NULL and out->data is NULL. */
typedef struct NndRows NndRows;
int nnd_idx_map(const char *path, NndRole role, const NndLoadOptions *opts, NndTensor *out,
                NndRows **rows, NndErr *err);
int nnd_npy_map(const char *path, NndRole role, const NndLoadOptions *opts, NndTensor *out,
                NndRows **rows, NndErr *err);
/* Keeps rows i with keep[i] set, in order; count is how many are set. */
int nnd_rows_keep(NndRows *r, const unsigned char *keep, int64_t count, NndErr *err);
/* Converts rows idx[0..b) into dst (b rows of out's dtype, in order). */
void nnd_rows_gather(const NndRows *r, const uint32_t *idx, int64_t b, void *dst);
/* Asks the cache for rows idx[0..b) (a later gather's). */
void nnd_rows_prefetch(const NndRows *r, const uint32_t *idx, int64_t b);
/* Whether r is a mapped file (0: the rows are held in memory). */
int nnd_rows_mapped(const NndRows *r);
void nnd_rows_free(NndRows *r);
/* For programs (the nnd command), not libraries: a SIGBUS in a mapped data file (one
 * another process truncated during the run) prints the file's name and why, and
 * exits with status 1, instead of the crash it would be; any other SIGBUS keeps its
 * default action.  0, or -1 when the handler could not be installed. */
int nnd_guard_mapped_files(void);

/* CSV with a header line of column names.  label names the label column (NULL: the
 * last column); every other column is a feature, scaled by opts->scale.  x is
 * [N, features] float_dtype.  With classes == 0, y is [N, 1] float_dtype (regression
 * targets); with classes != 0, y is [N] NND_I32 and every label must be a whole
 * number >= 0 (class indices).  Empty lines are skipped; a row with the wrong number
 * of fields or a field that is not a finite number (strtod syntax; quoted fields are
 * not supported) is an error naming the line. */
int nnd_csv_load(const char *path, const char *label, int classes, const NndLoadOptions *opts,
                 NndTensor *x, NndTensor *y, NndErr *err);

/* Text as bytes (byte-level language models): the files concatenated in the order
 * given, the part [from, to) of the bytes as fractions (a validation split: [0.9,
 * 1)), each byte an i32 token 0..255 in a [len] tensor.  A directory, a missing
 * file or an empty concatenation is an error naming the file.  nnd_text_size
 * gives the concatenation's byte count without reading it. */
int nnd_text_size(const char *const *paths, int n, int64_t *bytes, NndErr *err);
int nnd_text_load(const char *const *paths, int n, double from, double to, NndTensor *out,
                  NndErr *err);

/* ---- safetensors -------------------------------------------------------------------
 * Hugging Face's safetensors format: an 8-byte little-endian header length N, N bytes
 * of JSON ({"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
 * ..., "__metadata__": {"key": "value"}}, padded with spaces), then the tensors'
 * bytes, little-endian and in C order, offsets counted from the end of the header.
 * Strings are UTF-8.  The JSON goes through jansson, whose own memory comes from
 * malloc, not from nnd_alloc. */
typedef struct NndNamedTensor {
    const char *name; /* borrowed */
    const NndTensor *tensor; /* borrowed */
} NndNamedTensor;

typedef struct NndStrPair {
    const char *key; /* borrowed, or owned by an NndSafetensors */
    const char *value; /* likewise */
} NndStrPair;

/* Writes n tensors (f32, f64, i32, bool; names distinct and not "__metadata__") in
 * the given order, and n_meta metadata pairs (meta may be NULL when n_meta is 0), to
 * path.  Atomic: the bytes go to a new file path.tmp.XXXXXX in the same directory,
 * which is synced and renamed over path, and then the directory is synced.  On
 * failure before the rename the temporary file is removed and any file already at
 * path is untouched; a failure to sync the directory after the rename is reported
 * too, with the new file in place.  The new file keeps the old one's permissions
 * (else 0666 less the umask).  When path is a symbolic link, the file it points to
 * is replaced and the link stays; a link to nothing, and a path that is a
 * directory, a device, a FIFO or a socket, are refused (renaming over them would
 * replace them).  Borrows everything. */
int nnd_safetensors_write(const char *path, const NndNamedTensor *tensors, int n,
                          const NndStrPair *meta, int n_meta, NndErr *err);
/* Whether an atomic write to path can succeed as far as can be told beforehand:
 * the target is a regular file or missing (through a link to an existing file),
 * and its directory exists and is writable.  0, or -1 with why.  For checking a
 * save path before hours of training. */
int nnd_check_write_path(const char *path, NndErr *err);
/* A write killed midway (SIGKILL, a power cut) leaves its temporary file
 * (PATH.tmp.XXXXXX).  These remove such files older than min_age_s seconds (a
 * younger one may be another process's write in progress): those whose PATH, in
 * directory dir, matches the fnmatch pattern; or those of one target path.
 * *removed gets their count; -1 with err when one cannot be removed. */
int nnd_remove_stale_temps(const char *dir, const char *pattern, int min_age_s, int *removed,
                           NndErr *err);
int nnd_remove_stale_temps_of(const char *path, int min_age_s, int *removed, NndErr *err);
/* Writes n bytes to path the same atomic way (for plots and other small files). */
int nnd_write_file_atomic(const char *path, const void *data, size_t n, NndErr *err);

typedef struct NndSafetensorsEntry {
    const char *name; /* owned by the NndSafetensors */
    const char *dtype_name; /* as the file spells it: "F32", "BF16", ... (static) */
    NndDType dtype; /* NND_DTYPE_COUNT when this dtype cannot be loaded */
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
    void *file_; /* private: the open FILE */
    char *pool_; /* private: the strings above */
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
/* Reads the tensor called name into dst, whose dtype (f32 or f64), shape and data
 * the caller sets: the file's tensor must have that shape and be F32 or F64
 * (converted).  An error names the file, the tensor and both shapes, or that the
 * file has no such tensor.  For loading weights into a model's buffers. */
int nnd_safetensors_load_into(NndSafetensors *st, const char *name, NndTensor *dst, NndErr *err);
/* Closes the file and frees what open allocated; st is zeroed.  NULL is fine. */
void nnd_safetensors_close(NndSafetensors *st);

/* ---- training logs -------------------------------------------------------------------
 * TensorBoard event files (TFRecords of tensorflow.Event messages, masked CRC-32C)
 * and metrics.csv (step,epoch,tag,value) in one directory. */
typedef struct NndLog NndLog;
/* Creates dir (and its parents) and a new events.out.tfevents.TIME.HOST.PID file;
 * metrics.csv is started afresh, or appended to when append (a resumed run). */
NndLog *nnd_log_open(const char *dir, int append, NndErr *err);
int nnd_log_scalar(NndLog *l, const char *tag, int64_t step, int64_t epoch, double value,
                   NndErr *err);
/* A histogram record (TensorBoard's HistogramProto): see nnd_histogram. */
typedef struct NndHistogram NndHistogram;
int nnd_log_histogram(NndLog *l, const char *tag, int64_t step, const NndHistogram *h, NndErr *err);
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

/* nthreads <= 0: one thread per CPU the process may use (nnd_cpu_count).  Returns
 * NULL (with err) when threads cannot start. */
NndPool *nnd_pool_create(int nthreads, NndErr *err);
/* The CPUs this process may use: those of its affinity mask (taskset, a container's
 * cpuset), at most what a cgroup CPU quota allows (docker --cpus=N: N, rounded up);
 * the online CPUs where the mask cannot be read.  At least 1. */
int nnd_cpu_count(void);
/* For tests: the CPUs the quota of the cgroup root/path, or of one above it up to
 * root, allows (the least of them, rounded up; v2's cpu.max or v1's
 * cpu.cfs_quota_us and cpu.cfs_period_us), 0 where none is set. */
int nnd_cgroup_cpus(const char *root, const char *path);
void nnd_pool_destroy(NndPool *pool);
int nnd_pool_threads(const NndPool *pool);
/* Whether the pool counts as contended now: in one of its last 1024 jobs, after its
 * first 256, the caller waited for the workers more than 0.2 ms and more than four
 * times its own part took (a worker that was not running: its CPU held by other
 * threads).  Meanwhile its waiting threads give their CPU up now and then while they
 * spin.  For tests. */
int nnd_pool_contended(const NndPool *pool);
/* What the caller of a job saw: its own part took own_ns, then it waited waited_ns for
 * the workers (nnd_parallel_for calls it after each job; tests call it directly). */
void nnd_pool_note_wait(NndPool *pool, int64_t own_ns, int64_t waited_ns);
/* A buffer of at least `bytes` owned by the pool, reused by the next call (contents
 * not kept); NULL for no pool, inside a parallel job, or out of memory.  For the
 * caller's use between nnd_parallel_for calls, not inside them. */
void *nnd_pool_scratch(NndPool *pool, size_t bytes);
/* fn(ctx, begin, end) over [0, n) in nnd_pool_threads() contiguous ranges (fewer when
 * n < threads * grain); returns when all are done.  pool may be NULL (runs inline).
 * A posted job still running is waited for first. */
typedef void (*NndRangeFn)(void *ctx, int64_t begin, int64_t end);
void nnd_parallel_for(NndPool *pool, NndRangeFn fn, void *ctx, int64_t n, int64_t grain);
/* fn(ctx, 1, 2) on the pool's first worker while the caller goes on: work for a
 * worker that would wait otherwise (the next batch, gathered while the step runs
 * kernels too small to split).  Returns 1 when posted; 0 when fn(ctx, 0, 1) ran at
 * once instead (no pool, one thread, inside a job, or a posted job not yet waited
 * for).  The next nnd_parallel_for, nnd_pool_wait_posted or nnd_pool_destroy waits
 * for it; fn must not use the caller's nnd_pool_scratch.  shared: every worker i
 * calls fn(ctx, i, i + 1), and the caller fn(ctx, 0, 1) when it comes to wait; fn
 * then shares its work out itself (an atomic counter), or gives thread i part i. */
int nnd_pool_post(NndPool *pool, NndRangeFn fn, void *ctx, int shared);
/* Returns when the job nnd_pool_post handed out (if any) is done. */
void nnd_pool_wait_posted(NndPool *pool);
/* The histogram of n values (f32 or f64) in NND_HIST_BUCKETS equal buckets over
 * their range, non-finite ones left out; as a TensorBoard histogram record holds it.
 * The work is spread over pool (NULL: the caller alone); the result does not depend
 * on the thread count.  -1 (with err) when out of memory or not a float dtype. */
enum { NND_HIST_BUCKETS = 30 };
struct NndHistogram {
    double min, max, num, sum, sum_squares; /* of the finite values; num: their count */
    double limit[NND_HIST_BUCKETS]; /* the buckets' upper edges (the last is max) */
    double count[NND_HIST_BUCKETS];
};
int nnd_histogram(NndPool *pool, const void *data, NndDType dtype, int64_t n, NndHistogram *h,
                  NndErr *err);
/* The same where the values' least and greatest, sum and sum of squares are known
 * (a training step computes them beside the update): f32 values on a CPU with AVX-512
 * or AVX2 are counted in one pass instead of two, and h takes the given sums.  The pass checks
 * that every value is finite and that min and max are the values' own; where they
 * are not, and on other paths, this is nnd_histogram. */
int nnd_histogram_ranged(NndPool *pool, const void *data, NndDType dtype, int64_t n, double min,
                         double max, double sum, double sum_squares, NndHistogram *h, NndErr *err);
/* nnd_histogram_ranged of several tensors, in parts that the caller hands to its
 * threads as it likes (to count beside other work): nnd_histograms_plan sets up the
 * counts of req[0..count) in `parts` parts, part t of each tensor the t-th of equal
 * ranges of its values (where the step's update loops left them on a pool of parts
 * threads: in thread t's cache).  nnd_histograms_count(plan, t) counts part t, once
 * for each t, on any thread, in any order, at the same time.  nnd_histograms_finish
 * then puts the histograms in h[0..count) (those the one pass could not take counted
 * on pool as nnd_histogram_ranged would) and frees the plan.  NULL (with err) when
 * out of memory. */
typedef struct NndHistRequest {
    const void *data;
    NndDType dtype;
    int64_t n;
    double min, max, sum, sum_squares; /* of the values, as nnd_histogram_ranged takes them */
} NndHistRequest;
typedef struct NndHistPlan NndHistPlan;
NndHistPlan *nnd_histograms_plan(int count, const NndHistRequest *req, int parts, NndErr *err);
void nnd_histograms_count(NndHistPlan *plan, int part);
int nnd_histograms_finish(NndHistPlan *plan, NndPool *pool, NndHistogram *h, NndErr *err);
/* Whether the f32 matrix products run on nnd's own kernels rather than OpenBLAS's
 * sgemm (unless $NND_OWN_SGEMM is 0): 2, all of them on its AVX-512 kernels (a CPU
 * with AVX-512F and VL); 1, on its AVX2 kernels (a CPU with AVX2 and FMA) those they
 * were measured to run faster (a transposed A, a short k, a narrow C), the others on
 * OpenBLAS; 0, none. */
int nnd_own_sgemm(void);
/* Whether a matrix product of `work` multiply-adds (precision bf16 or not, of dtype)
 * is split across pool's threads by nnd_gemm_*, rather than run by the calling thread
 * alone: products too small to pay for a second thread are not. */
int nnd_gemm_splits(const NndPool *pool, int bf16, NndDType dtype, int64_t work);
/* The fewest multiply-adds a product needs to be split (on a pool of two or more). */
int64_t nnd_gemm_split_work(int bf16, NndDType dtype);
/* How nnd_conv2d_* computes the convolution s of dtype (precision bf16 or not), in
 * words: "Winograd F(2x2, 5x5)" or "Winograd F(4x4, 3x3)" (f32, on a CPU with
 * AVX-512, unless $NND_WINOGRAD is 0), "1x1 products" or "im2col products". */
struct NndConvShape; /* nnd_abi.h */
const char *nnd_conv2d_method(const struct NndConvShape *s, NndDType dtype, int bf16);
/* -1 with a message naming it when an environment variable the runtime reads holds
 * a value it does not take ($NND_OWN_SGEMM, $NND_WINOGRAD: 0 or 1), else 0 (the CLI and libnnd
 * check before they start). */
int nnd_check_env(NndErr *err);
/* Whether this CPU multiplies bf16 in hardware (AVX512-BF16): precision = bf16 is
 * then about 3x faster per product than f32; elsewhere it is emulated. */
int nnd_bf16_native(void);
/* x rounded to the nearest bf16 (ties to even; NaN stays NaN), as a float. */
float nnd_bf16_round(float x);
/* Tells OpenBLAS to run each call on its caller's thread alone (what nnd's pools
 * need: they own the threads) and stops the threads of its pthreads build, which it
 * starts when it loads, one per core, and which spin for about 0.1 s before they
 * sleep: through a program's start, on the cores its own threads want.  For programs
 * whose threads are nnd's; nnd_pool_create does the first part itself. */
void nnd_blas_one_thread(void);
/* Sets flush-to-zero and denormals-are-zero for the calling thread. */
void nnd_flush_denormals(void);
/* The same around a call into compiled code: enter returns the caller's mode,
 * which leave restores. */
unsigned nnd_fp_enter(void);
void nnd_fp_leave(unsigned mode);

#ifdef __cplusplus
}
#endif

#endif
