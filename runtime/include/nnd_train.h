/* nnd_train.h: the training loop of the runtime.
 *
 * Shuffles (Philox, per epoch), gathers batches, calls the step, evaluates, shows
 * progress, calls the checkpoint and logging hooks.  It drives any function behind
 * the NndStepFn ABI: compiled code and the reference interpreter alike. */
#ifndef NND_TRAIN_LOOP_H
#define NND_TRAIN_LOOP_H

#include "nnd_abi.h"
#include <signal.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Random changes to each image a training step sees (train mode only; evaluation
 * reads the data as it is): with flip, the image mirrored left-right with
 * probability 1/2; with crop = p > 0, the image padded with p zeros on each side and
 * an H x W window of it taken at a random place; with noise = s > 0, gaussian noise
 * of standard deviation s added to every value.  x's samples are [H, W] or
 * [C, H, W] floats.  The draws are the counter-based generator's at (seed, epoch,
 * the sample's index in the data set), so a sample is changed the same way for any
 * batch, thread count or number of ranks. */
typedef struct NndAugment {
    int flip;
    int64_t crop;
    double noise;
} NndAugment;

typedef struct NndDataSet {
    const char *name;
    const NndTensor *x, *y; /* [n, ...]: borrowed */
    /* window > 0: a text data set.  x is a [len] sequence of tokens (y is not read);
     * sample i is the window x[i stride .. i stride + window) and its targets the
     * same window one token later */
    int64_t window, stride;
    const NndAugment *augment; /* NULL: none */
    /* non-NULL: x's rows are read from here when gathered (x->data is NULL; its dtype
     * and shape hold) */
    const NndRows *x_rows;
} NndDataSet;

/* Applies ds->augment to the b samples of x gathered from rows idx[0..b). */
void nnd_augment(const NndDataSet *ds, const uint32_t *idx, int64_t b, void *x, uint64_t seed,
                 int64_t epoch);

/* What a caller of compiled steps keeps between calls (libnnd, AOT sessions): the
 * updates done, and with `accumulate = k` the micro-batch's place in its group and
 * the group's samples so far. */
typedef struct NndStepCounter {
    int64_t step, micro, group_samples;
} NndStepCounter;
/* Before a step on `batch` samples with accumulate k: writes step, t = step + 1 and,
 * when k > 1, the micro-batch and the group's samples (this one included) into
 * hypers at the given indices (-1: not there).  Returns whether this call is the
 * last micro-batch of its group: the one that runs the update. */
int nnd_step_counter_begin(const NndStepCounter *c, int64_t k, int64_t batch, double *hypers,
                           int h_step, int h_t, int h_micro, int h_accum);
/* After a step that ran: last as begin returned. */
void nnd_step_counter_end(NndStepCounter *c, int last, int64_t batch);
/* A compiled function's failure status (args->status) as "WHAT: label 12 is out of
 * range ...", into buf; "" when the status is 0. */
void nnd_step_status_message(const NndStepArgs *a, const char *what, char *buf, size_t n);

/* How many samples a data set has, and the bytes of one sample's x and y. */
int64_t nnd_dataset_count(const NndDataSet *ds);
void nnd_dataset_sample_bytes(const NndDataSet *ds, size_t *x, size_t *y);
/* Copies samples idx[0..b) into x and y (b samples each, in order). */
void nnd_dataset_gather(const NndDataSet *ds, const uint32_t *idx, int64_t b, void *x, void *y);

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
/* After each evaluation: the metrics of evals[which] at this point.  Nonzero stops
 * the training after this step (early stopping), as a finished run. */
typedef int (*NndEvalHook)(void *ctx, int which, const NndTrainPoint *at, const double *values);

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
    int drop_last; /* each epoch trains on whole batches only (the rest is left out) */
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
    /* data-parallel (step_apply set): rank r of `ranks` takes the part
     * [m r / ranks, m (r + 1) / ranks) of each micro-batch of m samples, every
     * micro-batch runs step_accum (adding to the gradient sums), then reduce sums the
     * gradient sums and vals[0..n) (the group's loss sum, a flag of a rank that
     * stopped) over the ranks, then step_apply makes the update from the sums */
    int rank, ranks;
    NndStepFn step_apply;
    void *user_apply;
    NndStepFn step_apply_full; /* on the steps that run step_full: writes its nout - 1
                                  scalars from out[1] */
    void *user_apply_full;
    int (*reduce)(void *ctx, double *vals, int n, NndErr *err); /* nonzero: failed (err) */
    void *reduce_ctx;
    /* NndStepArgs.ready for the group's last micro-batch (ready_ctx = reduce_ctx):
     * starts a gradient sum's all-reduce when the compiled step has finished it */
    void (*ready)(NndStepArgs *args, int32_t state);
    /* 1: batches are gathered by the calling thread alone, not the pool: the step's
     * products that read x run on it (nnd_gemm_splits is false for them), and rows
     * gathered on another core would have to cross to it (784-32-10 on two threads:
     * 0.063-0.067 ms a step split, 0.051-0.055 on the caller, 0.050 on one thread) */
    int gather_on_caller;
    /* non-NULL: read after each update; once nonzero (a signal handler sets it),
     * training stops there, after writing a checkpoint of that step when checkpoint
     * is set (unless it just wrote one), and res->interrupted says so */
    const volatile sig_atomic_t *stop;
    int64_t *profile_full; /* passed to step_full (NndStepArgs.profile) */
} NndTrainer;

typedef struct NndTrainResult {
    double final_loss; /* mean loss over the last epoch run (or part of it) */
    int64_t steps; /* steps run */
    double seconds; /* in steps, evaluation excluded */
    double full_seconds; /* of that, in the steps that ran step_full and the hook */
    int64_t full_steps;
    int interrupted; /* stopped by NndTrainer.stop after `steps` steps */
    int64_t checkpoint_step; /* the step of the last checkpoint written (0: none) */
    int nonfinite; /* stopped at step `steps`: 1 on a NaN or infinite loss, 2 on
                      non-finite values found by checked code (below) */
    int64_t bad_node, bad_count, bad_epoch; /* nonfinite == 2: as in NndStepArgs */
    double bad_value;
} NndTrainResult;

/* Updates in an epoch of `samples`: one per batch, or per group of `accumulate`
 * batches. */
int64_t nnd_train_steps_per_epoch(int64_t samples, int64_t batch, int64_t accumulate,
                                  int drop_last);
/* The samples an epoch trains on: all, or with drop_last only whole batches (all
 * when there are fewer than one batch). */
int64_t nnd_train_samples_per_epoch(int64_t samples, int64_t batch, int drop_last);
/* Total steps of a run. */
int64_t nnd_train_total_steps(const NndTrainer *t);
/* Trains; 0 on success, 1 when stopped on a non-finite loss, -1 on error (err). */
int nnd_train(const NndTrainer *t, NndTrainResult *res, NndErr *err);
/* The metrics of evals[which] averaged over its data set (weighted by batch size). */
int nnd_train_evaluate(const NndTrainer *t, int which, double *values, NndErr *err);

#ifdef __cplusplus
}
#endif

#endif
