/* train: a Program's training and evaluation, run by the runtime's loop.
 *
 * Connects an Executable and a Model to nnd_train (runtime/train.c): the data sets,
 * the eval specs, the hyper-parameters, the checkpoint hook, and the optional step
 * and eval hooks of the tools (logging, nnd compare, lrfind). */
#ifndef NND_TRAIN_H
#define NND_TRAIN_H

#include <stdio.h>

#include "checkpoint.h"
#include "executable.h"
#include "model.h"

/* Exit codes of the commands that run programs. */
enum {
    NND_EXIT_OK = 0,
    NND_EXIT_ERROR = 1, /* bad input, diagnostics printed */
    NND_EXIT_USAGE = 2,
    NND_EXIT_NONFINITE = 3, /* training stopped on a NaN or Inf loss */
};

/* What early stopping did (train_run fills it when the program sets early_stop). */
typedef struct EarlyReport {
    bool stopped; /* before the run's end */
    bool restored; /* the best weights replaced the last ones */
    int64_t stop_step, best_step, best_epoch;
    double best;
} EarlyReport;

typedef struct TrainOptions {
    NndPool *pool;
    FILE *progress; /* NULL: silent */
    bool interactive;
    NndTrainPoint resume; /* where a resumed run continues (zeros: from the start) */
    /* with early_stop, a resumed run's early stopping as its checkpoint left it
     * (borrowed; NULL: from nothing) */
    const EarlyState *early_resume;
    NndStepHook on_step; /* optional hooks (the logger, nnd compare, lrfind) */
    NndEvalHook on_eval;
    void *hook_ctx;
    EarlyReport *early; /* optional: what early stopping did */
    /* a distributed program (Program.distributed): this rank of `ranks` and the
     * reduction of the gradient sums (exec/dist.h); only rank 0 writes checkpoints */
    int rank, ranks;
    int (*reduce)(void *ctx, double *vals, int n, NndErr *err);
    void (*ready)(NndStepArgs *args, int32_t state);
    void *reduce_ctx;
    /* optional: once nonzero (set by a signal handler), training stops after the
     * update it is in, with a checkpoint of it where the program checkpoints
     * (NndTrainer.stop) */
    const volatile sig_atomic_t *stop;
} TrainOptions;

/* Whether every op that reads the batch's x is a matrix product that runs on the
 * calling thread alone at the program's batch size (nnd_gemm_splits): then the
 * caller gathers each batch too (NndTrainer.gather_on_caller).  Anything else reading
 * x (a convolution, an elementwise loop, a product split across the pool) keeps the
 * gather on the pool. */
bool train_gathers_on_caller(const Program *p, const NndPool *pool);
/* The largest batch a training run passes its functions: the program's batch, or
 * fewer when no data set it trains or evaluates on has that many samples (a batch
 * is then all of one).  For ExecOptions.max_batch: the arena is planned for it. */
int64_t train_max_batch(const Program *p);
/* --verbose: one line to out for each convolution of the step, its shapes at the
 * program's batch size and how the runtime computes it (nnd_conv2d_method). */
void train_print_convs(const Program *p, FILE *out);
/* Runs the program's training; result and messages in res/err.  Returns an exit
 * code. */
int train_run(Program *p, Executable *x, Model *m, const TrainOptions *o, NndTrainResult *res,
              char *err, size_t errlen);
/* The means of eval spec `which` over its data set. */
bool train_evaluate(Program *p, Executable *x, Model *m, NndPool *pool, int which, double *values,
                    char *err, size_t errlen);
/* One step on a batch of the training set (rows idx[0..b)): the loss, and the model
 * updated in place.  For tests that compare engines. */
bool train_step(Program *p, Executable *x, Model *m, NndPool *pool, const uint32_t *idx, int64_t b,
                int64_t step, double *loss, char *err, size_t errlen);
/* Inference: the forward function on rows idx[0..b) of data set `data`; out receives
 * b times the per-sample output count, as doubles. */
bool train_forward(Program *p, Executable *x, Model *m, NndPool *pool, int data,
                   const uint32_t *idx, int64_t b, double *out, char *err, size_t errlen);

#endif
