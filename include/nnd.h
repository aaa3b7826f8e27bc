/* nnd.h: nnd as a C library (libnnd).
 *
 * Opens a .nnd program, compiles its forward function, training step and metrics
 * with the same compiler and JIT as `nnd run`, and runs them on the caller's
 * buffers, so a C program can classify with a trained model or own its training
 * loop and data pipeline while nnd fuses and compiles the step.
 *
 *     NndProgram *p;
 *     if (nnd_open("mlp.nnd", NULL, &p) != NND_OK) {
 *         fprintf(stderr, "%s", nnd_errmsg(p));       // diagnostics, file:line:col
 *         nnd_close(p);
 *         return 1;
 *     }
 *     nnd_load_weights(p, "mlp.safetensors");
 *     float logits[10];
 *     nnd_forward(p, image, sizeof(float[784]), 1, logits, sizeof logits);
 *     nnd_close(p);
 *
 * Conventions, as in SQLite and Lua:
 *  - NndProgram is an opaque handle; every call takes it first and returns an
 *    NndStatus (NND_OK is 0).  After a failure, nnd_errmsg(p) says what went wrong,
 *    naming the file, tensor or argument; it stays valid until the next call on p.
 *  - A NULL handle or pointer, a buffer of the wrong size or a call out of order is
 *    NND_EMISUSE, never a crash.
 *  - Nothing is global: handles are independent, and two threads may use two
 *    handles at once.  One handle is used by one thread at a time.  Two things
 *    are process-wide: nnd_set_allocator (nnd_runtime.h), and OpenBLAS's own
 *    thread count, which opening a program sets to 1 (nnd splits products across
 *    its own threads instead, so two thread pools never compete for the cores).
 *  - The caller owns every buffer it passes; nnd copies what it keeps.  Strings
 *    nnd returns are owned by the handle and valid until nnd_close (or, for
 *    nnd_errmsg, the next call).
 *  - Tensors are dense, row-major (C order), in the dtype nnd_*_info reports: the
 *    program's float type (f32 unless opened with dtype NND_F64) for features and
 *    outputs, i32 for class labels.  The batch is the first axis.
 *
 * Documented in full, with examples, in docs/embedding.md.  Link with
 * `pkg-config --cflags --libs nnd` or CMake's `find_package(nnd)` (nnd::nnd). */
#ifndef NND_H
#define NND_H

#include <stddef.h>
#include <stdint.h>

#include "nnd_runtime.h" /* NndDType, NND_MAX_RANK */

#ifdef __cplusplus
extern "C" {
#endif

#define NND_VERSION_MAJOR 0
#define NND_VERSION_MINOR 1
#define NND_VERSION_PATCH 0
#define NND_VERSION "0.1.0"
/* MAJOR * 10000 + MINOR * 100 + PATCH */
#define NND_VERSION_NUMBER (NND_VERSION_MAJOR * 10000 + NND_VERSION_MINOR * 100 + NND_VERSION_PATCH)

/* The version of the library linked: NND_VERSION as it was built, and its number
 * (compare with NND_VERSION_NUMBER to detect a header/library mismatch). */
const char *nnd_version(void);
int nnd_version_number(void);

typedef enum NndStatus {
    NND_OK = 0,
    NND_EPROGRAM = 1, /* the program has errors: nnd_diagnostic says where */
    NND_EMISUSE = 2, /* a NULL argument, a wrong size or name, a call out of order */
    NND_EIO = 3, /* a file that cannot be read or written, or is malformed */
    NND_ENOTFOUND = 4, /* no parameter, hyper-parameter or input by that name */
    NND_EDATA = 5, /* bad data: a label or index out of range (the step's update is not
                      applied: parameters and optimizer state are as they were) */
    NND_ENONFINITE = 6, /* the loss came out NaN or infinite (the step's update was applied,
                           as nnd run's would be: reload weights to go back) */
    NND_EINTERNAL = 7 /* a bug in nnd: please report it with the message */
} NndStatus;

/* "NND_OK", "NND_EPROGRAM", ...; "unknown status" for other values. */
const char *nnd_status_name(int status);

typedef struct NndProgram NndProgram;

typedef struct NndOpenOptions {
    /* settings and hyper-parameters, "NAME=VALUE" as `nnd run --set` takes them
     * ("opt.lr=3e-4", "batch=32"); n of them */
    const char *const *overrides;
    int noverrides;
    NndDType dtype; /* the program's float type: NND_F32 (0, the default) or NND_F64 */
    int threads; /* worker threads for the compiled code; 0: one per CPU the process may
                    use (its affinity mask, a cgroup CPU quota) */
    /* the largest batch one call of nnd_forward, nnd_step or nnd_evaluate passes
     * through the compiled code at once; larger calls are split into pieces this
     * size (forward and metrics), or refused (nnd_step).  0: the program's batch */
    int64_t max_batch;
    int interpret; /* nonzero: run the reference interpreter instead of compiled code */
    const char *stdlib; /* the standard library's directory; NULL: $NND_STDLIB, else
                           the installed one */
} NndOpenOptions;

/* Opens and compiles the program in the file at path (opts may be NULL for the
 * defaults).  The program's data sets are checked (their headers) but not loaded.
 * *out is set to a new handle even when the program has errors, so that
 * nnd_errmsg and nnd_diagnostic can say what they are; nnd_close it either way
 * (*out is NULL only when memory ran out).  Returns NND_OK, NND_EPROGRAM (the
 * diagnostics), NND_EIO (the file), NND_EMISUSE (bad options, a NULL or empty
 * path). */
int nnd_open(const char *path, const NndOpenOptions *opts, NndProgram **out);
/* The same from source text; name (not empty) is what diagnostics call the file,
 * and `use "file.nnd"` and data paths are relative to the working directory. */
int nnd_open_string(const char *name, const char *source, const NndOpenOptions *opts,
                    NndProgram **out);
/* Frees the handle and everything it owns.  NULL is fine. */
void nnd_close(NndProgram *p);

/* The last failure as text (diagnostics with their source lines and carets), or
 * "" after success.  Never NULL: for a NULL handle, a message saying so. */
const char *nnd_errmsg(const NndProgram *p);

typedef enum NndSeverity {
    NND_SEVERITY_ERROR,
    NND_SEVERITY_WARNING,
    NND_SEVERITY_NOTE
} NndSeverity;

typedef struct NndDiagnostic {
    NndSeverity severity;
    const char *file; /* NULL when it points at no file (a --set override, say) */
    int line, column; /* 1-based; 0 when file is NULL */
    int end_line, end_column; /* the end of the span underlined (exclusive column) */
    const char *message;
    const char *label; /* the text after the caret, or NULL */
} NndDiagnostic;

/* The compiler's diagnostics from nnd_open (errors, warnings and their notes, in
 * order); a note belongs to the error or warning before it. */
int nnd_diagnostic_count(const NndProgram *p);
int nnd_diagnostic(const NndProgram *p, int i, NndDiagnostic *out);

/* ---- what the program takes and gives -------------------------------------------- */

/* A dimension that is the batch (any size) in NndTensorInfo.shape. */
#define NND_BATCH (-1)

typedef struct NndTensorInfo {
    const char *name; /* "x", "y", "forward", "fc1.W", "opt.lr", ... */
    NndDType dtype;
    int rank;
    int64_t shape[NND_MAX_RANK]; /* NND_BATCH for the batch dimension */
    size_t sample_bytes; /* bytes of one sample (the batch dimension as 1) */
    int trainable; /* parameters: 1 if the optimizer updates it, 0 frozen or layer state */
} NndTensorInfo;

/* The inputs: "x" (features, what forward takes) and "y" (the training targets or
 * labels), shaped [NND_BATCH, ...] as the program's training data. */
int nnd_input_info(const NndProgram *p, const char *name, NndTensorInfo *out);
/* What nnd_forward writes: the first model of the train block applied to x, in eval
 * mode; NND_ENOTFOUND when the program has none (its model takes more than x). */
int nnd_output_info(const NndProgram *p, NndTensorInfo *out);

/* The model's tensors: its parameters (trainable or frozen) then its layers' state
 * (batch norm's running statistics), named as in the program and in safetensors
 * files ("fc1.W", "bn.running_mean").  Indices 0 .. count - 1. */
int nnd_param_count(const NndProgram *p);
int nnd_param_info(const NndProgram *p, int i, NndTensorInfo *out);
/* Copies a tensor's values out of or into the model; bytes must be its exact size
 * (nnd_tensor_numel * dtype size).  Setting a tensor counts as loading weights. */
int nnd_get_param(NndProgram *p, const char *name, void *buf, size_t bytes);
int nnd_set_param(NndProgram *p, const char *name, const void *buf, size_t bytes);

/* ---- weights --------------------------------------------------------------------- */

/* Gives every tensor its starting value as `nnd run` would: the initializers, drawn
 * with the program's seed (or `--set seed=N`), then the files `from` names.  The
 * optimizer's state starts over. */
int nnd_init_weights(NndProgram *p);
/* Loads the model's tensors from a safetensors file (what `save` or a checkpoint
 * wrote): every parameter and layer state must be there with its shape (a missing
 * one, or another shape, is NND_EIO naming the tensor and both shapes); optimizer
 * state found there (a checkpoint's "fc1.W.m") is loaded too, and otherwise starts
 * over.  Other tensors in the file are ignored. */
int nnd_load_weights(NndProgram *p, const char *path);
/* Writes the model's tensors as `save` does, atomically (a temporary file renamed
 * over path): the parameters (their moving averages with `ema`) and layer state.
 * For both, a NULL or empty path is NND_EMISUSE. */
int nnd_save_weights(NndProgram *p, const char *path);

/* ---- running it ------------------------------------------------------------------ */

/* The forward function on batch samples: x holds batch * input("x").sample_bytes
 * bytes (x_bytes says how many, and must match), out receives batch *
 * output.sample_bytes bytes (out_bytes must match).  Eval mode: dropout is off,
 * batch norm uses its running statistics.  Any batch >= 1 (split into pieces of
 * max_batch).  Needs weights (nnd_load_weights, nnd_init_weights or nnd_set_param
 * of every tensor): NND_EMISUSE before. */
int nnd_forward(NndProgram *p, const void *x, size_t x_bytes, int64_t batch, void *out,
                size_t out_bytes);

/* One training step on a batch the caller provides: the loss, its gradients and
 * every parameter's update, as compiled for `nnd run` (x and y as input_info says;
 * 1 <= batch <= max_batch).  *loss (may be NULL) receives the batch's loss.  The
 * step counter advances (it is the `step` the program sees, and `t` is step + 1);
 * with `accumulate = k` each call is one micro-batch and every k-th call updates.
 * A NaN or infinite loss is NND_ENONFINITE.  Needs weights, as nnd_forward. */
int nnd_step(NndProgram *p, const void *x, size_t x_bytes, const void *y, size_t y_bytes,
             int64_t batch, double *loss);

/* The train block's eval statements: each has a data set name and metrics. */
int nnd_eval_count(const NndProgram *p);
/* The data set eval `which` names ("test"), and its metrics' count and names. */
const char *nnd_eval_data(const NndProgram *p, int which);
int nnd_metric_count(const NndProgram *p, int which);
const char *nnd_metric_name(const NndProgram *p, int which, int k);
/* The metrics of eval `which` on a batch the caller provides (eval mode): values[k]
 * is metric k's mean over the batch.  Over a whole data set, weight each batch's
 * values by its size. */
int nnd_evaluate(NndProgram *p, int which, const void *x, size_t x_bytes, const void *y,
                 size_t y_bytes, int64_t batch, double *values);

/* ---- hyper-parameters ------------------------------------------------------------ */

/* The run-time hyper-parameters ("opt.lr", "opt.beta1", "clip_norm", ..., and the
 * counters "step", "epoch", "steps"): set between steps, no recompilation.  The
 * program's schedules read "step", "epoch" and "steps" (the run's total, for
 * schedules such as cosine): nnd_step advances "step"; the caller sets "epoch" and
 * "steps" when its loop means them.  A value must be finite, and a counter a whole
 * number as nnd run takes it ("step" and "epoch" >= 0, "steps" >= 1): NND_EMISUSE
 * otherwise. */
int nnd_hyper_count(const NndProgram *p);
const char *nnd_hyper_name(const NndProgram *p, int i);
int nnd_get_hyper(const NndProgram *p, const char *name, double *value);
int nnd_set_hyper(NndProgram *p, const char *name, double value);

#ifdef __cplusplus
}
#endif

#endif
