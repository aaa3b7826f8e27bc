/* interp: the reference interpreter of the graph.
 *
 * Simple and obviously right, because it is the oracle the JIT is checked against:
 * every value is held as doubles, one plain loop per op, and results of f32 nodes
 * are rounded to float after each op so f32 programs round like f32 hardware. */
#ifndef NND_INTERP_H
#define NND_INTERP_H

#include "graph.h"

typedef struct ITensor {
    NndDType dtype;
    int rank;
    int64_t shape[NND_MAX_RANK];
    int64_t n; /* number of elements */
    double *v; /* owned (malloc) */
} ITensor;

typedef struct InterpBindings {
    ITensor *params;
    int nparams;
    ITensor *states;
    int nstates;
    ITensor *inputs; /* INPUT idx 0: x, 1: y */
    int ninputs;
    const double *hypers;
    int nhypers;
    const int64_t *syms; /* values of symbolic dimensions, by symbol index */
    int nsyms;
    uint64_t seed; /* for RANDU / RANDN */
    struct InterpCheck *check; /* non-NULL: stop at the first op with NaN or Inf values */
    struct InterpFault *fault; /* non-NULL: says which label or index stopped the run */
} InterpBindings;

/* What interp_run found with InterpBindings.check (node 0: nothing). */
typedef struct InterpCheck {
    NodeId node;
    int64_t count;
    double value;
} InterpCheck;

/* A label (pick, one_hot) or index (take) out of range that stopped interp_run. */
typedef struct InterpFault {
    enum { FAULT_NONE, FAULT_LABEL, FAULT_INDEX } kind;
    double value;
    int64_t limit; /* the classes, or the table's rows */
} InterpFault;

/* Evaluates the roots; out[i] receives a new tensor for roots[i] (the caller frees
 * them with itensor_free).  Returns false with a message when a value cannot be
 * computed (an index out of range, a leaf without a binding), or when b->check is
 * set and an op made NaN or infinite values (b->check says which). */
bool interp_run(Graph *g, const NodeId *roots, int nroots, const InterpBindings *b, ITensor *out,
                char *err, size_t errlen);

/* Evaluates a node that depends on no parameter, state or input. */
bool interp_eval_const(Graph *g, NodeId root, const double *hypers, int nhypers, ITensor *out,
                       char *err, size_t errlen);

ITensor itensor_new(NndDType dtype, int rank, const int64_t *shape);
void itensor_free(ITensor *t);
/* Rounds a value to what a tensor of dtype can hold. */
double itensor_round(NndDType dtype, double v);

/* An interpreter tensor shaped like node id (its symbolic dimensions taking the
 * value batch) holding a copy of data, a runtime buffer in the node's dtype
 * (NULL: zeros). */
ITensor itensor_from_buffer(Graph *g, NodeId id, const void *data, int64_t batch);
/* Writes t's values into data, a runtime buffer of t's dtype. */
void itensor_store(const ITensor *t, void *data);
/* A new runtime tensor holding t's values; false (with e) when it cannot be
 * allocated. */
bool itensor_to_tensor(const ITensor *t, NndTensor *out, NndErr *e);

#endif
