/* aot: scheduled functions compiled ahead of time into an object file, with the
 * descriptor (NndAotModel, runtime/include/nnd_aot.h) that lets the runtime alone
 * run them.  Only this file and jit.c turn modules into machine code. */
#ifndef NND_AOT_H_BACKEND
#define NND_AOT_H_BACKEND

#include "jit.h"

typedef struct AotTensor {
    const char *name;
    NndDType dtype;
    int rank;
    int64_t shape[NND_MAX_RANK]; /* -1 for the batch axis of inputs and outputs */
    const void *data; /* values to embed (numel * dtype size bytes), or NULL */
    bool optional;
} AotTensor;

/* What the descriptor says: NndAotModel's fields, with the generated functions by
 * their names in the list given to aot_emit (NULL when not built). */
typedef struct AotModel {
    const char *name, *source;
    NndDType dtype;
    int64_t max_batch, arena_bytes;
    int nparams, nstates, nhypers;
    const AotTensor *params, *states;
    const char *const *hyper_names;
    const double *hyper_values;
    const bool *hyper_fixed;
    int64_t hyper_step, hyper_t, hyper_micro, hyper_accum, accumulate;
    AotTensor x, y, output;
    const char *forward, *step, *step_accum;
} AotModel;

typedef struct AotTarget {
    const char *triple, *cpu, *features; /* NULL: this host's */
    int opt_level; /* 1..3; 0 means 3 */
} AotTarget;

/* Compiles fns and the descriptor `NAME_model` into an ELF (or the target's)
 * object file written atomically to path.  *target_desc gets "TRIPLE (CPU)"
 * (malloc'd).  False with a message. */
bool aot_emit(Graph *g, const CodegenFunction *fns, int nfns, const AotModel *m, const AotTarget *t,
              const char *path, char **target_desc, char *err, size_t errlen);

#endif
