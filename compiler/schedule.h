/* schedule: from a graph to fused kernels and a memory plan.
 *
 * A node gets a buffer ("home") when its value must exist in memory: a matrix
 * product or a reduction, an operand of a matrix product, a value used by more
 * than one consumer that is not cheap to recompute (an elementwise cone of a few
 * ops over values in memory is), an update of a parameter or
 * state, a result.  Everything else is computed inline, inside the loops of the
 * kernels that use it.  Kernels run in graph order:
 *
 *   LOOP    one loop nest over a shape, storing one or more values (adjacent loops
 *           over one shape merge, so Adam's m, v and w updates are one pass)
 *   REDUCE  a loop nest over a reduction's input, its producers fused inside
 *   CALL    a runtime routine: nnd_gemm (OpenBLAS, transposes as flags), convolution,
 *           pooling, row gathers.  A product whose one reader is a loop computing
 *           relu(r + bias), r + bias, relu(r) or (y > 0 ? r : 0) alone takes that
 *           loop as its epilogue (nnd_gemm_*_ep) and stores the loop's value; a
 *           convolution takes the first three with its channel bias
 *           (nnd_conv2d_*_ep), max pooling's adjoint the last (nnd_maxpool_scatter_*_ep)
 *
 * An update is stored straight into its parameter's buffer when nothing reads the
 * old value afterwards; otherwise it goes through a scratch buffer and is copied at
 * the end.  Scratch buffers share one arena, placed by liveness. */
#ifndef NND_SCHEDULE_H
#define NND_SCHEDULE_H

#include "graph.h"

typedef enum BufKind {
    BUF_ARENA,
    BUF_PARAM,
    BUF_STATE,
    BUF_X,
    BUF_Y,
    BUF_OUT, /* args->out, as doubles, from slot `index` */
} BufKind;

typedef struct Buffer {
    BufKind kind;
    int index; /* parameter, state or output slot */
    NndDType dtype;
    int64_t offset, bytes; /* BUF_ARENA: place in the arena, size at the largest batch */
    int first, last; /* kernels that write it first and read it last */
} Buffer;

typedef enum KernelKind { KER_LOOP, KER_REDUCE, KER_CALL } KernelKind;

typedef struct Store {
    NodeId node;
    int buf;
} Store;

/* A whole-tensor reduction (sum or max to a scalar) folded into a loop over its
 * input's shape: the loop accumulates it while it passes over the same elements
 * (a log's gradient norms ride along with the update), instead of a pass of its
 * own.  The result lands in buf, element 0. */
typedef struct Acc {
    NodeId node; /* the SUM or RMAX */
    int buf;
} Acc;

typedef struct Kernel {
    KernelKind kind;
    Shape domain; /* LOOP: the stored values' shape; REDUCE: the input's shape */
    VEC(Store) stores; /* LOOP: values and where they go; REDUCE/CALL: the op's result */
    VEC(Acc) accs; /* LOOP: reductions accumulated on the way */
    NodeId node; /* REDUCE/CALL: the op */
    int aux; /* REDUCE: a second buffer (logsumexp's sums, argmax's maxima), or -1 */
    int ep; /* CALL of a product, a convolution or max pooling's adjoint: its epilogue,
               NND_EP_* (stores.v[0] is then the epilogue's value, not node) */
    NodeId ep_bias, ep_mask; /* the epilogue's bias (along a product's columns or a
                                convolution's channels) and mask (the result's shape) */
    bool parallel; /* split the outermost axis across the pool */
    int outer; /* the axis a parallel range splits: 0, or for a REDUCE that sums over
                  axis 0 its first kept axis (a convolution's bias gradient by channels) */
} Kernel;

typedef struct ScheduleUpdate {
    NodeId value;
    bool is_state;
    int index;
} ScheduleUpdate;

typedef struct ScheduleRequest {
    const NodeId *outputs; /* written to args->out[0..], each value's elements in order */
    int noutputs;
    const ScheduleUpdate *updates;
    int nupdates;
    int64_t max_batch; /* the largest B the code will see */
    bool check; /* --check-numerics: every floating-point result of an elementwise op
                   gets a home, so the code can check each op's values where they
                   are made (no reductions folded into loops either) */
    bool early_states; /* kernels that store a state run as early as what they read
                          allows (a distributed run's gradient sums: their all-reduces
                          start while the backward pass goes on) */
} ScheduleRequest;

typedef struct Schedule {
    Graph *g; /* borrowed */
    int *home; /* per node id: a buffer index, or -1 when computed inline */
    VEC(Buffer) bufs;
    VEC(Kernel) kernels;
    int64_t arena_bytes;
    int64_t max_batch;
    int merged; /* loops merged into their neighbour */
    int in_place; /* updates stored straight into their parameter or state */
    int fused_reductions; /* reductions folded into loops (Acc) */
    int epilogues; /* loops folded into the product before them (Kernel.ep) */
    /* The first kernel of the longest run (two kernels or more) that leaves the pool's
     * workers idle: serial loops and reductions, products too small to split; the
     * code calls NndStepArgs.idle before it.  -1: none. */
    int idle_at;
} Schedule;

/* The states of which[0..n) the schedule writes, in the order of the kernels that
 * write them last (where a step can tell that a state is final); kernel (when not
 * NULL) gets that kernel's index for each. */
void schedule_final_states(const Schedule *s, const bool *which, int n, IntVec *order,
                           IntVec *kernel);

/* Plans the kernels for the request.  Returns false with a message when the graph
 * holds something the code generator cannot do (a random draw, say). */
bool schedule_build(Schedule *s, Graph *g, const ScheduleRequest *rq, char *err, size_t errlen);
void schedule_free(Schedule *s);
/* Concrete element count of a shape with B = batch. */
int64_t shape_numel_at(const Shape *s, int64_t batch);
/* The multiply-adds of matrix product n (OP_MATMUL) at that batch size: its result's
 * elements times the length of the dimension it sums over. */
int64_t matmul_work(const Graph *g, const Node *n, int64_t batch);
/* The multiply-adds x 2 of product node id (a matrix product or a convolution, forward
 * or adjoint) at that batch size; 0 for other ops. */
double product_flops(const Graph *g, NodeId id, int64_t batch);
/* A short listing of kernels and buffers, one line per kernel (for `nnd run --verbose`). */
void schedule_print(const Schedule *s, StrBuf *out);
/* The full listing (for `nnd graph --schedule`): per kernel its kind, domain, whether
 * it runs in parallel, the ops it computes inline, the buffers it reads (and which
 * value), each value it stores (where, how big, in place or copied) and the reductions
 * it accumulates; then per buffer its place, shape, dtype, size at the planned batch,
 * lifetime in kernels, the value it holds and the new values stored into it (`<-`).
 * Deterministic: node ids and buffer order are. */
void schedule_dump(const Schedule *s, StrBuf *out);

#endif
