/* graph: the computation graph IR.
 *
 * Nodes are SSA values in one array, referred to by 32-bit ids; a node's inputs
 * always have smaller ids, so id order is a topological order.  Id 0 is "no node"
 * (and the poison value elaboration returns after an error).  Each node has an op
 * from ops.def, a shape whose dimensions are concrete (>= 0) or symbolic (< 0: the
 * run-time batch size B, say), a dtype, a few attributes, and the source span it
 * came from.  The backward pass and the update rules are more nodes of the same
 * graph, so they can be printed, simplified and differentiated again. */
#ifndef NND_GRAPH_H
#define NND_GRAPH_H

#include "nnd_runtime.h"
#include "source.h"

typedef uint32_t NodeId;
typedef VEC(NodeId) NodeVec;
typedef VEC(NodeId *) NodeRefVec;

typedef enum OpId {
#define OP(id, text, arity, kind, infer, vjp, sem, ulps, fn) OP_##id,
#include "ops.def"
#undef OP
    OP_COUNT
} OpId;

typedef enum OpKind {
    OPK_LEAF,
    OPK_SOURCE,
    OPK_EW1,
    OPK_EW2,
    OPK_EW3,
    OPK_LAYOUT,
    OPK_REDUCE,
    OPK_INDEX,
    OPK_MATMUL,
    OPK_CALL,
    OPK_ALIAS
} OpKind;

typedef struct OpInfo {
    const char *name;
    int arity;
    OpKind kind;
} OpInfo;

extern const OpInfo op_info[OP_COUNT];

typedef struct Shape {
    int rank;
    int64_t d[NND_MAX_RANK]; /* >= 0: size; < 0: symbol -d-1 */
} Shape;

/* Which part of the training step a node belongs to, for the reports of
 * `nnd run --check-numerics`: set by elaboration through Graph.phase. */
typedef enum Phase {
    PHASE_NONE,
    PHASE_FORWARD, /* the loss, metrics and forward outputs */
    PHASE_BACKWARD, /* the gradients (and their clipping) */
    PHASE_UPDATE, /* update rules, constraints, averages */
    PHASE_STATS, /* a log's statistics */
} Phase;

typedef struct Node {
    uint8_t op; /* OpId */
    uint8_t dtype; /* NndDType */
    uint8_t nin;
    bool keep; /* reductions: keep reduced axes as size 1 */
    bool ta, tb; /* matmul: transpose a, b */
    bool nonan; /* RMAX: a NaN among the values may be ignored (the result is then any
                   value); for ranges whose user detects a NaN otherwise */
    uint8_t phase; /* Phase: stamped by graph_append from Graph.phase */
    NodeId in[3];
    Shape shape;
    int32_t idx; /* PARAM/STATE/INPUT/HYPER: index; ARGMAX, CONCAT: axis; ONE_HOT: depth;
                    SCATTER_ADD: rows; CUSTOM: the custom gradient's index */
    uint32_t mask; /* reductions, DIMSIZE: axis bit set */
    uint32_t pool; /* TRANSPOSE: perm; SLICE/PAD: starts then steps; TENSOR: data;
                      CONV*: stride, padding, dilation (h w each), groups; POOL*: kernel,
                      stride, padding (h w each) */
    uint64_t key; /* RANDU/RANDN: random stream */
    double num; /* CONST: value */
    const char *name; /* leaves: display name (graph arena) */
    Span span;
} Node;

/* Builds the gradient of a CUSTOM node: dx[i] for in[i + 1], given the output's
 * adjoint dy (set by elaboration, which keeps the vjp blocks). */
struct Graph;
typedef void (*CustomVjpFn)(void *ctx, struct Graph *g, NodeId n, NodeId dy, NodeId *dx);

typedef struct Graph {
    VEC(Node) nodes; /* nodes.v[0] is the unused "no node" */
    VEC(int64_t) ipool;
    VEC(double) fpool;
    VEC(const char *) syms; /* names of symbolic dimensions */
    Arena arena; /* names */
    CustomVjpFn custom_vjp;
    void *custom_ctx;
    Phase phase; /* given to appended nodes that have none */
    bool bf16; /* precision = bf16: f32 matrix products round both operands to bf16 and
                  sum in f32 (the interpreter and compiled code alike) */
} Graph;

void graph_init(Graph *g);
void graph_free(Graph *g);
static inline Node *graph_node(Graph *g, NodeId id) { return &g->nodes.v[id]; }
static inline int graph_count(const Graph *g) { return g->nodes.n; }

/* The dimension value of a named symbol, added on first use. */
int64_t graph_symbol(Graph *g, const char *name);

/* Appends the node as given (no checks; its phase, when none, is g->phase) and
 * returns its id. */
NodeId graph_append(Graph *g, const Node *n);
/* Runs the op's shape rule on n (inputs, attributes and preset shape filled in):
 * on success sets n's shape and dtype and appends it, returning its id; otherwise
 * writes why into err and returns 0. */
NodeId graph_build(Graph *g, Node n, char *err, size_t errlen);

/* ---- shapes ---- */
bool shape_equal(const Shape *a, const Shape *b);
Shape shape_scalar(void);
Shape shape_make(int rank, const int64_t *d);
/* The most elements a tensor may have (its concrete dimensions' product): 4 TB
 * of f32, beyond any machine; a bound that keeps every size product in int64. */
#define GRAPH_MAX_NUMEL ((int64_t)1 << 40)
/* Product of the concrete dims (saturating at INT64_MAX); *symbolic set when some
 * dim is symbolic. */
int64_t shape_static_numel(const Shape *s, bool *symbolic);
/* NumPy broadcasting of two shapes; false (with err) when they do not fit. */
bool shape_broadcast(const Graph *g, const Shape *a, const Shape *b, Shape *out, char *err,
                     size_t errlen);
/* "[B, 784]" */
void shape_format(const Graph *g, const Shape *s, char *buf, size_t size);
const char *dtype_name(NndDType t);
bool dtype_is_float(NndDType t);

/* ---- builders for internal use (autodiff, simplify, expansion) ----
 * They abort on a shape error: callers guarantee well-shaped inputs. */
NodeId gb_node(Graph *g, Node n);
NodeId gb_const(Graph *g, double v, NndDType dtype, Span span);
NodeId gb_full(Graph *g, double v, NndDType dtype, const Shape *s, Span span);
NodeId gb_unary(Graph *g, OpId op, NodeId a, Span span);
NodeId gb_binary(Graph *g, OpId op, NodeId a, NodeId b, Span span);
NodeId gb_select(Graph *g, NodeId c, NodeId a, NodeId b, Span span);
NodeId gb_cast(Graph *g, NodeId a, NndDType dtype, Span span);
NodeId gb_broadcast(Graph *g, NodeId a, const Shape *s, Span span);
NodeId gb_reshape(Graph *g, NodeId a, const Shape *s, Span span);
NodeId gb_transpose(Graph *g, NodeId a, const int *perm, Span span);
NodeId gb_reduce(Graph *g, OpId op, NodeId a, uint32_t mask, bool keep, Span span);
/* The maximum over mask's axes where a NaN may be ignored (Node.nonan). */
NodeId gb_max_nonan(Graph *g, NodeId a, uint32_t mask, Span span);
NodeId gb_matmul(Graph *g, NodeId a, NodeId b, bool ta, bool tb, Span span);
/* sum over the leading axes of a^T @ b: [*L, M, K], [*L, M, N] -> [K, N] */
NodeId gb_matmul_summed(Graph *g, NodeId a, NodeId b, Span span);
NodeId gb_dimsize(Graph *g, NodeId ref, uint32_t mask, NndDType dtype, Span span);
/* Sums a (broadcast from shape s) back down to s: the adjoint of a broadcast. */
NodeId gb_sum_to(Graph *g, NodeId a, const Shape *s, Span span);
/* Scalar-or-equal-shape helpers: the scalar operand is broadcast first. */
NodeId gb_binary_bc(Graph *g, OpId op, NodeId a, NodeId b, Span span);

/* conv and pooling attributes, read from the pool */
typedef struct ConvAttrs {
    int64_t sh, sw, ph, pw, dh, dw, groups;
} ConvAttrs;
typedef struct PoolAttrs {
    int64_t kh, kw, sh, sw, ph, pw;
} PoolAttrs;
ConvAttrs graph_conv_attrs(const Graph *g, const Node *n);
PoolAttrs graph_pool_attrs(const Graph *g, const Node *n);
uint32_t graph_pool_ints(Graph *g, const int64_t *v, int n);
/* The output shape of a convolution (for x and w) or a pooling (for x). */
bool conv_out_shape(const Graph *g, const Shape *x, const Shape *w, const ConvAttrs *a, Shape *out,
                    char *err, size_t errlen);
bool pool_out_shape(const Graph *g, const Shape *x, const PoolAttrs *a, Shape *out, char *err,
                    size_t errlen);

/* How many attribute integers n keeps in the pool. */
int graph_pool_len(const Node *n);

/* True when n is CONST v, or a BROADCAST of CONST v. */
bool graph_is_const(Graph *g, NodeId n, double *v);

/* ---- printing ---- */
/* Writes the nodes reachable from roots, one per line, in id order. */
void graph_print(Graph *g, const NodeId *roots, int nroots, StrBuf *out, const SourceMap *sm);
void graph_print_node(Graph *g, NodeId id, StrBuf *out);
void graph_dot(Graph *g, const NodeId *roots, int nroots, StrBuf *out);
/* Replaces node from[i] by to[i] (of the same shape and dtype) in the values of
 * roots: the nodes between them are copied with the new inputs, roots[] rewritten
 * in place; the old nodes stay for their other users. */
void graph_substitute(Graph *g, const NodeId *from, const NodeId *to, int n, NodeId *roots,
                      int nroots);
/* Marks (live[id] = true) every node reachable from roots; live has graph_count slots. */
void graph_mark_live(Graph *g, const NodeId *roots, int nroots, bool *live);

#endif
