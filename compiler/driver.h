/* driver: turns a Program into something that trains.
 *
 * An Executable holds a step function (and one per eval, and a forward function)
 * behind the runtime's NndStepFn ABI: either code compiled by the JIT, or the
 * reference interpreter behind an adapter.  Both run in the runtime's training loop
 * (nnd_train), on the same parameter buffers, so they can be compared step by step. */
#ifndef NND_DRIVER_H
#define NND_DRIVER_H

#include <stdio.h>

#include "elab.h"
#include "interp.h"
#include "jit.h"

/* Exit codes of `nnd run` and `nnd gradcheck`. */
enum {
    NND_EXIT_OK = 0,
    NND_EXIT_ERROR = 1, /* bad input, diagnostics printed */
    NND_EXIT_USAGE = 2,
    NND_EXIT_NONFINITE = 3, /* training stopped on a NaN or Inf loss */
};

/* Parameters and states as runtime buffers, in the program's dtypes. */
typedef struct Model {
    NndTensor *params, *states;
    void **param_ptrs, **state_ptrs;
    int nparams, nstates;
} Model;

/* Initializes parameters and states from their initializers (seeded). */
bool model_init(Program *p, Model *m, char *err, size_t errlen);
bool model_copy(const Model *from, Model *to, char *err, size_t errlen);
void model_free(Model *m);
/* Writes the parameters to a safetensors file, atomically, named as in the program
 * (`fc1.W`). */
bool model_save(const Program *p, const Model *m, const char *path, int64_t steps, char *err,
                size_t errlen);

typedef enum Engine { ENGINE_INTERP, ENGINE_JIT } Engine;

typedef struct ExecOptions {
    Engine engine;
    bool keep_ir; /* keep the optimized IR (emit-llvm) */
    int opt_level; /* LLVM 1..3, 0 for the default */
    bool profile; /* time every kernel of the step (see executable_profile) */
    bool check_numerics; /* the step checks every op's values (NND_STATUS_NONFINITE) */
} ExecOptions;

typedef struct Executable {
    Program *p; /* borrowed */
    Engine engine;
    NndStepFn step; /* the loss and the updates */
    NndStepFn step_full; /* the same plus the step outputs (a log's statistics), or NULL */
    void *step_full_user;
    NndStepFn step_accum; /* accumulate = k: a micro-batch that only adds its gradient */
    void *step_accum_user;
    NndStepFn *evals; /* one per Program.evals */
    NndStepFn forward; /* NULL when the program has none */
    void *step_user, **eval_user, *forward_user;
    Jit *jit;
    Schedule step_sched, *eval_scheds, forward_sched, full_sched, accum_sched;
    char *arena;
    int64_t arena_bytes;
    double compile_seconds;
    int64_t *profile; /* nanoseconds per step kernel, when compiled for profiling */
} Executable;

bool executable_build(Executable *x, Program *p, const ExecOptions *o, char *err, size_t errlen);
void executable_free(Executable *x);
/* A description of the step's kernels and memory plan. */
void executable_describe(const Executable *x, StrBuf *out);
/* Where a profiled executable's step time went, over `steps` steps: each kernel, and
 * the update kernels' nanoseconds per parameter value. */
void executable_profile(const Executable *x, int64_t steps, StrBuf *out);

typedef struct TrainOptions {
    NndPool *pool;
    FILE *progress; /* NULL: silent */
    bool interactive;
    NndTrainPoint resume; /* where a resumed run continues (zeros: from the start) */
    NndStepHook on_step; /* optional hooks (nnd compare, lrfind) */
    NndEvalHook on_eval;
    void *hook_ctx;
} TrainOptions;

/* The `log` statement at work: TensorBoard events and metrics.csv every N steps,
 * eval metrics as they come, and warnings about vanishing or exploding gradients and
 * odd update sizes (every step, whatever N).  Install its hooks in TrainOptions. */
/* What the warnings keep of one parameter. */
typedef struct ParamWatch {
    int gn, ratio; /* the index of its grad_norm and update_ratio in out[], or -1 */
    double gn_avg; /* the gradient norm's moving average */
    int64_t small_steps, tiny_steps; /* logged steps in a row with a tiny norm, update */
    unsigned warned; /* bits of the warnings given */
} ParamWatch;

typedef struct Logger {
    Program *p;
    Model *m;
    NndLog *log; /* NULL: no log statement, warnings only */
    FILE *warn;
    bool interactive;
    ParamWatch *watch; /* one per parameter */
    int64_t logged; /* parameter checks so far */
    int64_t flushed_ns; /* when the log was last pushed to its files */
    bool failed;
    char err[1024];
} Logger;

bool logger_open(Logger *lg, Program *p, Model *m, bool append, FILE *warn, bool interactive,
                 char *err, size_t errlen);
void logger_hooks(Logger *lg, TrainOptions *to);
void logger_close(Logger *lg);

/* A checkpoint: every parameter and every state (optimizer and layer state) by
 * name, and in the metadata the training point, seed, batch and data size, written
 * atomically to path. */
bool checkpoint_write(const Program *p, const Model *m, const char *path, const NndTrainPoint *at,
                      char *err, size_t errlen);
/* Loads a checkpoint into m (path: a file, or a checkpoint directory, whose newest
 * file is used; *used gets the file's path, malloc'd) and its point into *at.
 * Every tensor must be there with its shape; the seed, batch size and size of the
 * training set must be the run's. */
bool checkpoint_load(const Program *p, Model *m, const char *path, NndTrainPoint *at, char **used,
                     char *err, size_t errlen);

/* After training stopped with res->nonfinite == 2 (--check-numerics): an error at
 * the op that made the first NaN or Inf, with its phase, the step and the
 * parameters it feeds. */
void report_nonfinite(Program *p, Diags *d, const NndTrainResult *res);

/* Runs the program's training; result and messages in res/err.  Returns an exit
 * code. */
int driver_train(Program *p, Executable *x, Model *m, const TrainOptions *o, NndTrainResult *res,
                 char *err, size_t errlen);
/* The means of eval spec `which` over its data set. */
bool driver_evaluate(Program *p, Executable *x, Model *m, NndPool *pool, int which, double *values,
                     char *err, size_t errlen);

/* One step on a batch of the training set (rows idx[0..b)): the loss, and the model
 * updated in place.  For tests that compare engines. */
bool driver_step(Program *p, Executable *x, Model *m, NndPool *pool, const uint32_t *idx,
                 int64_t b, int64_t step, double *loss, char *err, size_t errlen);

/* Inference: the forward function on rows idx[0..b) of data set `data`; out receives
 * b times the per-sample output count, as doubles. */
bool driver_forward(Program *p, Executable *x, Model *m, NndPool *pool, int data,
                    const uint32_t *idx, int64_t b, double *out, char *err, size_t errlen);

typedef struct GradcheckOptions {
    int batch; /* samples in the batch (default 4) */
    int per_param; /* elements checked per parameter (default 24; 0: all) */
    double eps; /* central-difference step (default 1e-6) */
    double atol, rtol; /* |ad - fd| <= atol + rtol * |fd| (1e-5, 1e-3) */
} GradcheckOptions;

/* Compares autodiff gradients of the loss with central differences; p must be
 * elaborated in f64.  Prints a table to out; returns NND_EXIT_OK or NND_EXIT_ERROR. */
int driver_gradcheck(Program *p, const GradcheckOptions *o, FILE *out);

/* Optimizer steps (updates) in an epoch: one per batch, or per group of
 * `accumulate` batches. */
int64_t program_steps_per_epoch(const Program *p);
/* Total number of optimizer steps the program runs. */
int64_t program_total_steps(const Program *p);

#endif
