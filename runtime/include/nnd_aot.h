/* nnd_aot.h: running a model that `nnd build` compiled ahead of time.
 *
 * `nnd build model.nnd -o model.o --name mlp` writes an object file that holds the
 * compiled forward function (with --train, also the training step) and one
 * descriptor, `const NndAotModel mlp_model`: the model's parameters and layer
 * state (names, shapes and, with --weights or --train, their values), its inputs
 * and outputs, its hyper-parameters and its planned scratch memory.  The object
 * calls only the runtime (libnnd_runtime: no LLVM, no compiler).  A program links
 * it with the runtime and runs it through the session below; the header that
 * `nnd build --header` writes wraps these calls in typed functions named after the
 * model.
 *
 *     char err[256];
 *     NndAot *s = nnd_aot_new(&mlp_model, 1, err, sizeof err);
 *     if (!s || nnd_aot_forward(s, images, 16, logits) != 0) ...
 *     nnd_aot_free(s);
 *
 * Every call that can fail returns 0, or -1 with a message nnd_aot_errmsg gives
 * until the next call on the session.  Sessions share nothing: one thread at a
 * time per session, any number of sessions (of one model or several) at once. */
#ifndef NND_AOT_H
#define NND_AOT_H

#include "nnd_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The layout version of NndAotModel; nnd_aot_new refuses another. */
#define NND_AOT_ABI 1

/* A tensor of the model.  Every field is 8 bytes wide, so that the code generator
 * and a C compiler agree on the layout without padding rules. */
typedef struct NndAotTensor {
    const char *name;
    int64_t dtype; /* NndDType */
    int64_t rank;
    int64_t shape[NND_MAX_RANK]; /* inputs and outputs: shape[0] is -1, the batch */
    const void *data; /* embedded values, or NULL */
    int64_t optional; /* optimizer state: a weights file need not have it */
} NndAotTensor;

typedef struct NndAotModel {
    int64_t abi; /* NND_AOT_ABI */
    const char *name; /* the --name it was built with */
    const char *source; /* the .nnd file, as given to nnd build */
    const char *target; /* the target triple and CPU the code is for */
    int64_t dtype; /* the program's float dtype (NndDType) */
    int64_t max_batch; /* the largest batch one call of the code takes */
    int64_t arena_bytes; /* scratch memory the code plans */
    int64_t nparams, nstates, nhypers;
    const NndAotTensor *params; /* values: with --weights or --train */
    const NndAotTensor *states; /* layer state (batch norm's running statistics) and,
                                   with --train, optimizer state; data NULL for what
                                   the built functions do not read */
    const char *const *hyper_names;
    const double *hyper_values; /* their values in the program */
    const int64_t *hyper_fixed; /* 1: folded into the code when it was built */
    int64_t hyper_step, hyper_t, hyper_micro, hyper_accum; /* indices, -1 when absent */
    int64_t accumulate; /* the train block's accumulate (1: none) */
    NndAotTensor x, y, output; /* forward: output = f(x); the step also reads y */
    NndStepFn forward; /* NULL when the program has none */
    NndStepFn step, step_accum; /* --train only; step_accum with accumulate > 1 */
} NndAotModel;

typedef struct NndAot NndAot;

/* A session: the model's buffers (the embedded values; forward-only code reads
 * them in place, without a copy), its scratch memory and a thread pool of
 * `threads` threads (at most 256; <= 0: every core; results depend on the count,
 * not on timing).  NULL with a message in err (when err is not NULL) when the
 * model is NULL or its ABI is not this header's, or memory or threads cannot be
 * had. */
NndAot *nnd_aot_new(const NndAotModel *m, int threads, char *err, size_t errlen);
void nnd_aot_free(NndAot *s);
/* The last failure's message (empty after a success). */
const char *nnd_aot_errmsg(const NndAot *s);

/* Loads the parameters and layer state by name from a safetensors file (what
 * `nnd run` saves): every tensor the model has must be there with its shape, F32 or
 * F64.  Optimizer state found there is loaded too; what is not there keeps the
 * values it was built with. */
int nnd_aot_load_weights(NndAot *s, const char *path);
/* Writes the parameters and layer state to a safetensors file, atomically.  Both
 * refuse a NULL or empty path. */
int nnd_aot_save_weights(NndAot *s, const char *path);

/* out = forward(x) for `batch` samples (any number; split into calls of at most
 * max_batch), in eval mode.  x holds batch * (values per sample of m->x) of x's
 * dtype, out batch * (values per sample of m->output) of the output's dtype. */
int nnd_aot_forward(NndAot *s, const void *x, int64_t batch, void *out);
/* One training step (code built with --train) on a batch of at most max_batch
 * samples: the loss goes to *loss (may be NULL).  -1 when a label is out of range
 * or the loss is not finite (the update has been applied then). */
int nnd_aot_step(NndAot *s, const void *x, const void *y, int64_t batch, double *loss);
/* Steps taken so far. */
int64_t nnd_aot_steps(const NndAot *s);

/* A hyper-parameter by name (the learning rate: "opt.lr"); -1 when there is none
 * of that name or it was fixed when the code was built.  Setting one takes a
 * finite value; "step" and "t" are kept by the session, "epoch" (0-based) is a
 * whole number >= 0 and "steps" (the run's total) one >= 1. */
int nnd_aot_get_hyper(NndAot *s, const char *name, double *value);
int nnd_aot_set_hyper(NndAot *s, const char *name, double value);

/* Values per sample of a tensor of the model (the product of shape[1..]); -1 for
 * NULL. */
int64_t nnd_aot_sample_size(const NndAotTensor *t);

#ifdef __cplusplus
}
#endif

#endif
