/* program: what elaboration makes of a train block, and what every later stage reads.
 *
 * A Program is one graph (compiler/graph.h) and lists that point into it: the
 * trained parameters and their initial values, the states (optimizer moments,
 * batch norm statistics), the run-time hyper-parameters, the data sets, the loss,
 * each parameter's gradient and update, the eval metrics and a log's statistics;
 * and the train block's settings (batch, epochs, seed, checkpoints, save).  Node ids
 * in it are kept up to date by every pass that rebuilds the graph (program_roots). */
#ifndef NND_PROGRAM_H
#define NND_PROGRAM_H

#include "builtins.h"
#include "graph.h"
#include "nnd_train.h"

typedef enum DataKind { DATA_IDX, DATA_CSV, DATA_NPY, DATA_TENSORS, DATA_TEXT } DataKind;

typedef struct DataSet {
    const char *name;
    Span span;
    DataKind kind;
    const char *path_x, *path_y; /* idx, npy: two files; csv: path_x */
    const char *label; /* csv: label column or NULL */
    bool classes; /* csv: integer class labels */
    double scale; /* 1 unless given */
    int reshape_rank; /* -1: keep the file's per-sample shape */
    int64_t reshape[NND_MAX_RANK];
    /* subset: keep the samples whose class label is listed, relabeled by its position
     * in the list (nsubset 0: all) */
    int nsubset;
    int32_t *subset;
    int64_t limit; /* keep the first `limit` samples (after the subset and split); 0: all */
    /* split (idx, npy, csv, tensors): keep the part [from, to) of a permutation of
     * the samples drawn from the program's seed (after the subset), in file order:
     * data sets with split parts of one file are disjoint; split_done once applied */
    bool split, split_done;
    /* text: the files (in order), the part [from, to) of their bytes, and the
     * windows: sample i is `window` tokens from token i * stride (x is then the
     * [len] token sequence, y unused: NndDataSet's window) */
    const char **paths;
    int npaths;
    double from, to;
    int64_t window, stride;
    /* idx, npy: `flip`, `crop`, `noise`: what training steps do to the images
     * (NndAugment); never on evaluation */
    bool augmented;
    NndAugment augment;
    /* per-sample shapes and dtypes, known after elaboration */
    int64_t n;
    NndDType x_dtype, y_dtype;
    int x_rank, y_rank;
    int64_t x_shape[NND_MAX_RANK], y_shape[NND_MAX_RANK];
    NndTensor x, y; /* owned; loaded by program_load_data ([n, ...sample]) */
    /* the data sets of `nnd run` (Program.rows_data) and the training set of a
     * distributed run, from an idx or npy file: x's rows converted when a batch
     * takes them, from the mapped file or (gzip) its body held as stored (x.data
     * NULL; its dtype and shape hold); owned */
    NndRows *x_rows;
} DataSet;

typedef struct ParamInfo {
    const char *name; /* `fc1.W` */
    NodeId node; /* PARAM */
    NodeId init; /* initial value, in the init roots */
    bool frozen;
    int group; /* index in Program.groups */
    Span span;
    NndTensor loaded; /* its starting value from a file (`from`), or data NULL */
    int ema_state; /* its moving average (`ema = d`) in Program.states, or -1 */
} ParamInfo;

typedef struct StateInfo {
    const char *name; /* `fc1.W.m`, or a layer's `bn.running_mean` */
    int param; /* the parameter it belongs to; -1 for a layer's state */
    NodeId node; /* STATE */
    NodeId init;
    Span span;
    NndTensor loaded; /* layer state: its starting value from a file, or data NULL */
} StateInfo;

typedef struct HyperInfo {
    const char *name; /* `opt.lr`, `step`, ... */
    double value;
    Span span;
    bool baked; /* its value shaped the graph (a shape, a static `if`) */
} HyperInfo;

typedef struct Update {
    bool is_state;
    int index; /* in params or states */
    NodeId value;
} Update;

typedef struct Metric {
    const char *name;
    NodeId node; /* scalar: a mean over the batch */
    Span span;
    bool hidden; /* a step output the driver reads and does not log (weights.min/...) */
} Metric;

typedef struct EvalSpec {
    int data;
    int64_t every; /* in steps or epochs */
    bool in_epochs;
    VEC(Metric) metrics;
    Span span;
} EvalSpec;

/* `log every N steps to DIR: items`: what to write where.  The statistics are
 * step outputs (Program.step_outputs); histograms and lr are read by the driver. */
typedef struct LogSpec {
    const char *dir;
    int64_t every;
    bool in_epochs;
    uint32_t items; /* a LOG_* bit per family named */
    Span span;
    Span dir_span; /* the directory's string */
} LogSpec;

/* The bit of each family a log names (LOG_FAMILIES in builtins.h).  The
 * per-parameter statistics are step outputs tagged FAMILY/PARAM (grad_norm/fc1.W;
 * grad_norm also has grad_norm/total). */
enum {
#define X(id, text) LOG_##id = 1u << LOGI_##id,
    LOG_FAMILIES(X)
#undef X
};

typedef struct OptGroup {
    const char *path; /* "" for the default `opt` */
    const char *rule; /* optimizer name */
    Span span;
} OptGroup;

typedef struct Program {
    Graph g;
    NndDType float_dtype;
    struct {
        const char *why; /* training would change nothing, because (NULL: it would) */
        Span span, freeze; /* where; with frozen, the freeze that makes it so */
        bool frozen;
    } idle;
    bool bf16_asked; /* precision = bf16 was asked for (g.bf16 only in an f32 program) */
    int64_t sym_batch; /* the dimension value of B */
    VEC(ParamInfo) params;
    VEC(StateInfo) states;
    VEC(HyperInfo) hypers;
    VEC(DataSet) data;
    VEC(OptGroup) groups;
    int train_data; /* index in data */
    NodeId x, y; /* INPUT nodes: idx 0 and 1 */
    NodeId loss;
    NodeId forward; /* the first model applied to x (inference), or 0 */
    VEC(NodeId) grads; /* one per parameter; 0 when frozen */
    VEC(Update) updates;
    /* accumulate = k > 1: what a micro-batch that is not the last of its group
     * updates (each gradient sum NAME.grad_sum += B * g); `updates` is then the last
     * micro-batch's step, whose rules see (grad_sum + B * g) / hyper_accum */
    VEC(Update) accum_updates;
    int64_t accumulate;
    /* distributed (CompileOptions.distributed; accum_updates then exist for any k):
     * every micro-batch runs accum_updates on the rank's part of it, the gradient
     * sums are summed over the ranks, then apply_updates runs without data: the
     * updates of `updates` with each gradient sum in place of sum + B * g (the
     * layer states, which move with each micro-batch, left out) */
    bool distributed;
    /* every data set's features as rows (DataSet.x_rows) where its file allows
     * (`nnd run`; a distributed run does so for its training set) */
    bool rows_data;
    VEC(Update) apply_updates;
    VEC(NodeId) apply_outputs; /* the step outputs, from the gradient sums */
    int hyper_accum; /* the samples of the group, set by the trainer; -1 without */
    int hyper_micro; /* the micro-batch's place in its group (random draws use it) */
    VEC(EvalSpec) evals;
    /* scalars the step computes besides the loss (args->out[1..]): logged
     * statistics and `log` expressions, named by their tags */
    VEC(Metric) step_outputs;
    LogSpec log; /* log.dir NULL: no log statement */
    int hyper_step, hyper_epoch, hyper_steps, hyper_t;
    int64_t batch, epochs, steps; /* steps == 0: run `epochs` epochs */
    uint64_t seed;
    int custom_vjps; /* calls of fns with a vjp block */
    bool shuffle;
    bool drop_last; /* an epoch trains on whole batches only */
    const char *save_path;
    Span save_span;
    /* checkpoint every N steps/epochs to a directory, keeping the last `keep` (0: all) */
    const char *ckpt_dir;
    Span ckpt_span; /* the directory's string */
    int64_t ckpt_every, ckpt_keep;
    bool ckpt_in_epochs;
    /* early_stop = "[min|max] DATA.METRIC", patience, min_delta: stop when that eval
     * metric has not improved by min_delta for `patience` evaluations in a row, and
     * keep the best weights (eval < 0: none) */
    struct {
        int eval, metric;
        bool maximize;
        int64_t patience;
        double min_delta;
        const char *what; /* "val loss" */
    } early;
    /* `sample every N steps: ...`: text from the model (a language model) during
     * training; every == 0: none */
    struct {
        int64_t every, tokens, top_k;
        bool in_epochs;
        const char *prompt;
        double temperature;
        Span span;
    } sample;
    struct AstModule *opt_ast; /* the tree of a replaced `opt` expression, owned */
    Arena arena;
} Program;

void program_free(Program *p);
/* When training p would change nothing (Program.idle): an error for a command that
 * trains (then true), else a warning. */
bool program_report_idle(const Program *p, Diags *d, bool training);
/* Loads every data set declared (idx, csv, npy files); false after reporting. */
bool program_load_data(Program *p, Diags *d);
/* The same for data set i alone. */
bool program_load_dataset(Program *p, int i, Diags *d);
/* All node ids the program refers to, for passes that rebuild the graph. */
void program_roots(Program *p, NodeRefVec *out);
/* Roots of the training step: loss, the step outputs, then every update's new value. */
void program_step_roots(const Program *p, NodeVec *out);
/* The hyper-parameters' starting values, one per Program.hypers (malloc'd). */
double *program_hyper_values(const Program *p);
/* Optimizer steps (updates) in an epoch: one per batch, or per group of
 * `accumulate` batches. */
int64_t program_steps_per_epoch(const Program *p);
/* Total number of optimizer steps the program runs. */
int64_t program_total_steps(const Program *p);
/* What a resumed run must share with the run that wrote its checkpoint: the
 * training step's graph (models, loss, update rules) by its structure, the
 * parameters' and states' names, the float type, seed, batch, accumulate and the
 * training set's size, hashed.  Hyper-parameter values, epochs and steps, logs and
 * evals are not part of it. */
uint64_t program_fingerprint(const Program *p);
/* A node's hash from its op, dtype, shape, attributes and its inputs' hashes
 * (already in memo: inputs have smaller ids), so that it depends on the structure
 * only, not on the ids that other parts of the graph moved.  by_name: a parameter,
 * state or hyper-parameter by its name alone, not also its index (the checkpoint's
 * identity, the same for 1 process and N ranks, whose gradient sums move them). */
uint64_t program_node_hash(const Graph *g, NodeId id, const uint64_t *memo, bool by_name);
/* A layer state updated from statistics of the batch (batch norm's running
 * variance) that a batch of one sample leaves undefined: a sum or mean over the
 * batch axis with one value per element at batch 1.  Its name, or NULL. */
const char *program_batch_statistic(const Program *p);
/* Rows idx[0..b) of a loaded data set, gathered into new contiguous buffers *bx and
 * *by (malloc'd; the caller frees them). */
void dataset_gather(const DataSet *ds, const uint32_t *idx, int64_t b, char **bx, char **by);
/* The runtime's view of a loaded data set (borrows ds). */
NndDataSet dataset_view(const DataSet *ds);

#endif
