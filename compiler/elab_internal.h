/* elab_internal: what the elaboration files share.
 *
 * Elaboration runs the train block at compile time, as an evaluator over the
 * checked AST whose values (Value) are compile-time numbers and strings, graph
 * nodes, layers, functions and the like.  It is split by concern:
 *
 *   elab_value.c    values, conversions, arithmetic with promotion and broadcasting
 *   elab_expr.c     names, scopes, calls and expressions (the evaluator, el_eval)
 *   elab_layer.c    layer instances, their parameters and state, shape patterns,
 *                   functions with their own gradient (vjp blocks)
 *   elab_builtin.c  the built-in functions
 *   elab_data.c     `data` statements
 *   elab_optim.c    optimizer groups, gradient clipping and accumulation, and the
 *                   expansion of update rules into graph nodes
 *   elab_train.c    the train block as a whole, and elab_program
 *   elab_check.c    the models of a file without a train block, on their own
 *
 * Functions used across these files carry the el_ prefix; the rest are static. */
#ifndef NND_ELAB_INTERNAL_H
#define NND_ELAB_INTERNAL_H

#include <math.h>

#include "builtins.h"
#include "elab.h"

/* MAX_GRAPH_NODES: every call is inlined, so a function that calls another twice,
 * thirty deep, would make 2^30 nodes; elaboration stops with an error first (a
 * node is about 140 bytes: the limit is about 150 MB of graph). */
enum { MAX_CALL_DEPTH = 64, MAX_ARGS = 16, MAX_GRAPH_NODES = 1 << 20 };

/* ---- values ----
 * Elaboration evaluates the program at compile time.  Numbers known at compile
 * time stay numbers (V_NUM) and fold; anything that depends on data, parameters or
 * run-time hyper-parameters is a graph node (V_NODE). */
typedef enum VK {
    V_ERR, /* poison after a reported error: propagates silently */
    V_NUM,
    V_STR,
    V_NODE,
    V_DIM, /* a symbolic dimension (the batch size), from a shape pattern */
    V_LIST, /* [a, b, ...]: a tensor literal or a shape */
    V_LAYER,
    V_FN, /* a function, with the layer it is a method of */
    V_DECL, /* a layer or optimizer declaration, callable */
    V_BUILTIN,
    V_OPT, /* an optimizer with its arguments */
    V_LAZY, /* a train-block `let` computed from the data or the models (Lazy) */
} VK;

typedef struct LayerInst LayerInst;
typedef struct Args Args;
typedef struct VList VList;

typedef struct Value {
    VK k;
    bool is_int, is_bool;
    double num;
    NodeId node; /* V_NODE; V_DIM: a node with that dimension */
    int64_t dim; /* V_DIM */
    int axis; /* V_DIM */
    const char *str;
    LayerInst *layer; /* V_LAYER; V_FN: the layer of a method */
    const Ast *decl; /* V_FN, V_DECL, V_OPT */
    Module *mod;
    int builtin;
    VList *list; /* V_LIST */
    Args *args; /* V_OPT */
    struct Lazy *lazy; /* V_LAZY */
} Value;

struct VList {
    int n;
    Value *v;
};

struct Args {
    int n;
    Value v[MAX_ARGS];
    const char *kw[MAX_ARGS]; /* NULL for a positional argument */
    Span span[MAX_ARGS];
};

/* A train-block `let` whose value depends on the data or the models (`let ce =
 * cross_entropy(net(x), y)`): elaborated where it is used, once in train mode and
 * once in eval mode, so that the loss and the metrics see it as if written in
 * place (layer state moves once per step; dropout is off in eval). */
typedef struct Lazy {
    const Ast *st; /* the let */
    struct Scope *scope; /* the train block's */
    Value val[2]; /* in eval mode, in train mode */
    bool have[2];
    bool busy; /* being elaborated: a use now is a cycle */
} Lazy;

typedef struct Binding {
    const char *name;
    Value v;
    Span span;
} Binding;

typedef struct Scope {
    VEC(Binding) b;
    Module *mod;
    LayerInst *self;
} Scope;

struct LayerInst {
    const Ast *decl;
    Module *mod;
    const char *path; /* prefix of its parameters' names */
    VEC(Binding) members;
};

typedef struct Frame {
    const Ast *decl;
    Span call;
    const char *name;
    LayerInst *self; /* the layer instance of a method, else NULL */
} Frame;

/* A call of a fn with a vjp block: what its gradient is built from. */
typedef struct CustomGrad {
    const Ast *fn;
    Module *mod;
    LayerInst *self;
    Binding *params; /* the arguments as bound */
    int nparams;
    int which[2]; /* the parameters that are in[1], in[2] of the CUSTOM node */
    int nwhich;
} CustomGrad;

typedef struct Group {
    Value opt;
    VEC(Binding) hypers;
    int index; /* in Program.groups */
} Group;

/* An elementwise op whose operands, of different ranks, broadcast each other into
 * a result with the batch dimension twice ([B] - [B, 1] is [B, B]): warned about
 * when the loss uses it (el_warn_outer_products). */
typedef struct OuterProduct {
    NodeId node;
    OpId op;
    Shape a, b, r;
    Span span;
    int ncalls;
    Frame calls[3]; /* the innermost calls that led to it */
} OuterProduct;

typedef struct Elab {
    Frontend *fe;
    Diags *d;
    Program *p;
    Graph *g;
    const ElabOptions *opts;
    Arena arena;
    Frame frames[MAX_CALL_DEPTH];
    int depth;
    const Ast *lets[MAX_CALL_DEPTH]; /* top-level lets being evaluated */
    int nlets;
    /* a parameter's initializer is being evaluated */
    bool in_init;
    Shape init_shape;
    NndDType init_dtype;
    const char *init_name;
    int init_draws;
    double fan_in, fan_out;
    /* where a layer created now is bound, e.g. "fc1"; NULL: creating one is an error */
    const char *bind_path;
    VEC(LayerInst *) layers;
    VEC(Group *) groups;
    /* train mode (the loss) or eval mode (eval metrics, forward): `training` */
    bool training;
    /* assignments to layer state become updates: set while the loss is elaborated */
    bool record_state;
    int rand_draws; /* rand_like calls so far: each gets its own stream */
    VEC(CustomGrad) customs;
    bool too_big; /* the graph outgrew MAX_GRAPH_NODES: calls stop being elaborated */
    VEC(uint8_t) datadep; /* per node: depends on the data (el_depends_on_data) */
    NodeVec accum_sums, accum_states; /* el_accumulate_gradients' sum + B * g, state */
    VEC(OuterProduct) outer;
} Elab;

static inline Value verr(void) { return (Value){.k = V_ERR}; }
static inline Value vnum(double x)
{
    return (Value){.k = V_NUM, .num = x, .is_int = x == floor(x) && fabs(x) < 9e15};
}
static inline Value vfloat(double x) { return (Value){.k = V_NUM, .num = x}; }
static inline Value vbool(bool b) { return (Value){.k = V_NUM, .num = b, .is_bool = true}; }
static inline Value vnode(NodeId id) { return id ? (Value){.k = V_NODE, .node = id} : verr(); }
static inline Value vstr(const char *s) { return (Value){.k = V_STR, .str = s}; }
static inline Node *nd(Elab *e, NodeId id) { return graph_node(e->g, id); }

/* ---- elab_value.c ---- */

const char *el_kind_name(const Value *v);
Value el_error(Elab *e, Span span, const char *fmt, ...) NND_PRINTF(3, 4);
const char *el_shape_str(Elab *e, const Shape *s);
NodeId el_make(Elab *e, Node n, Span span);
Override *el_find_override(Elab *e, const char *key);
/* A run-time hyper-parameter: a new one, or a node of Program.hypers[idx].
 * Hyper-parameters are f64 whatever the program's float type: arithmetic among
 * them stays f64 and is rounded once where it meets the data (el_weak). */
NodeId el_new_hyper(Elab *e, const char *name, double value, Span span);
NodeId el_hyper_node(Elab *e, int idx, Span span);
/* A weak scalar: an f64 scalar computed from hyper-parameters and constants only,
 * in a program whose float type is f32; it takes f32 where it meets data. */
bool el_weak(Elab *e, NodeId n);
/* A new state (Program.states): a STATE leaf named name, a parameter's (its index
 * param) or a layer's (-1), starting at init (may be set later); its node. */
NodeId el_new_state(Elab *e, const char *name, int param, Shape shape, NndDType dt, NodeId init,
                    Span span);
/* Whether root is computed from a node of one of the ops. */
bool el_reads(Elab *e, NodeId root, const OpId *ops, int nops);
/* Whether root depends on the data: parameters, states, the batch, random draws,
 * the batch size. */
bool el_depends_on_data(Elab *e, NodeId root);
/* The compile-time number of a value, evaluating constant graphs (which bakes the
 * hyper-parameters they use). */
bool el_to_number(Elab *e, Value v, Span span, const char *what, double *out);
bool el_to_int(Elab *e, Value v, Span span, const char *what, int64_t *out);
NodeId el_const_node(Elab *e, double x, NndDType dt, Span span);
/* A value as a graph node: numbers become constants, lists tensors. */
NodeId el_to_node(Elab *e, Value v, Span span);
/* A shape from a list of dimensions (numbers, or symbolic dimensions).  With
 * minus_axis, one dimension may be -1: its axis is stored there (else -1) and the
 * dimension is left as 1.  (-1 cannot stay in the shape: symbolic dimensions are
 * negative, and the first one is -1.) */
bool el_to_shape(Elab *e, Value v, Span span, const char *what, Shape *out, int *minus_axis);
bool el_str_arg(Elab *e, Value *v, Span span, const char *what, const char **out);
/* el_str_arg for a file or directory nnd writes: an empty string is an error (it
 * names no file, and "" + "/run" is a path at the root). */
bool el_path_arg(Elab *e, Value *v, Span span, const char *what, const char **out);
/* true or false (1 or 0, which they are as numbers); dflt when v is NULL */
bool el_bool_arg(Elab *e, Value *v, Span span, const char *what, bool dflt, bool *out);
NodeId el_float_node(Elab *e, Value v, Span span);
OpId el_binop_id(AstOp op);
NndDType el_dtype_rank_max(NndDType a, NndDType b);
/* Applies a binary op with NumPy broadcasting and dtype promotion: a number adopts
 * the tensor's dtype; booleans in arithmetic become floats; integers divided or
 * raised to a fractional power become floats. */
Value el_binop(Elab *e, OpId op, Value a, Value b, Span span);
/* Warns about each recorded outer product over the batch that root reads, with
 * both shapes and the fix; forgets them all. */
void el_warn_outer_products(Elab *e, NodeId root);
Value el_matmul(Elab *e, Value a, Value b, Span span);
Value el_unop(Elab *e, OpId op, Value a, Span span);
/* if c then a else b with a tensor condition: both branches, selected elementwise. */
Value el_select3(Elab *e, Value c, Value a, Value b, Span span);

/* ---- elab_expr.c ---- */

void el_bind(Scope *s, const char *name, Value v, Span span);
Binding *el_scope_find(Scope *s, const char *name);
Binding *el_member_find(LayerInst *l, const char *name);
Value el_lookup(Elab *e, Scope *s, const char *name, Span span);
const char *el_join_path(Elab *e, const char *a, const char *b);
/* Evaluates call arguments.  list_path: where layers created in a list argument
 * are bound (the arguments of a layer being created: Sequential([Dense(...), ...])). */
bool el_eval_args(Elab *e, Scope *s, const AstList *list, Args *out, const char *list_path);
/* Finds argument `name` (position pos); returns its index or -1. */
int el_arg_find(const Args *a, const char *name, int pos);
/* Binds arguments to parameters in scope s; defaults are evaluated in s, so they
 * see the parameters before them. */
bool el_bind_params(Elab *e, Scope *s, const AstList *params, const Args *args, const char *what,
                    Span span);
Value el_run_body(Elab *e, Scope *s, const Ast *fn);
Value el_call_value(Elab *e, Value callee, Args *args, Span span, const char *name);
Value el_eval(Elab *e, Scope *s, const Ast *x);
/* Whether the graph has outgrown MAX_GRAPH_NODES; reported once, at span, with the
 * calls that led there. */
bool el_too_big(Elab *e, Span span);

/* ---- elab_layer.c ---- */

/* Every parameter in a value: a parameter, a layer and its sub-layers, or a list
 * of them, in declaration order. */
void el_value_params(Elab *e, const Value *v, IntVec *out, int depth);
/* After a layer method ran in train mode: the final values of the layer's state
 * names are the state's new values, one update per state and step. */
void el_record_state_updates(Elab *e, LayerInst *self, Scope *s, int first);
/* The result of a fn with a vjp block: a CUSTOM node whose value is the result and
 * whose gradient the block gives (el_custom_vjp). */
Value el_custom_result(Elab *e, const Ast *fn, Module *mod, LayerInst *self, Scope *s, int nparams,
                       Value r, Span span);
/* Graph.custom_vjp: runs the vjp block of the call behind CUSTOM node n. */
void el_custom_vjp(void *ctx, Graph *g, NodeId n, NodeId dy, NodeId *dx);
/* The shape and dtype of a `param` or layer `state` declaration. */
bool el_decl_shape(Elab *e, Scope *s, const Ast *st, const char *what, Shape *out, NndDType *dt);
Value el_instantiate(Elab *e, const Ast *decl, Module *mod, Args *args, Span span);
/* Checks v against a declared type.  Unknown names in the shape (and `*S`) are
 * pattern variables: the first use binds them in s, later uses must agree. */
bool el_check_type(Elab *e, Scope *s, const Ast *type, Value *v, Span vspan, const char *what,
                   const Ast *pdecl, bool bind_patterns);

/* ---- elab_builtin.c ---- */

/* The argument for parameter i of builtin id, or NULL. */
Value *el_barg(Args *a, int id, int i);
Span el_bspan(Args *a, int id, int i, Span dflt);
Value el_builtin_call(Elab *e, int id, Args *a, Span span);

/* ---- elab_data.c ---- */

void el_data(Elab *e, Scope *s, Module *m, const Ast *st);

/* ---- elab_optim.c ---- */

/* Gathers the hyper-parameters of one optimizer use: arguments, else defaults;
 * numbers become run-time HYPER inputs named prefix.param. */
Group *el_make_group(Elab *e, Value opt, const char *prefix, Span span);
/* Expands one parameter's update rule into graph nodes. */
void el_expand_update(Elab *e, Group *gr, int pi);
void el_mark_params(Elab *e, Value v, Span span, int *out_count, const char *what, int group);
/* accumulate = k: each trained parameter gets a gradient sum (a state, zero between
 * updates).  A micro-batch that is not the last of its group adds B * g to it
 * (accum_updates); the last one hands its rules the group's mean gradient
 * (sum + B * g) / n, n the group's samples (a run-time input), and zeroes the sum.
 * For a loss that is a mean over the batch this is the gradient of the whole
 * group's batch, whatever the sizes of its micro-batches. */
/* The gradient sums of `accumulate` (or of a distributed program): gs[i] becomes
 * (NAME.grad_sum + B * gs[i]) / samples; sums and states (when not NULL) get each
 * parameter's sum + B * g node and its state node. */
void el_accumulate_gradients(Elab *e, const Ast *train, const int *which, NodeId *gs, int n,
                             NodeVec *sums, NodeVec *states);
/* clip_value = v: each gradient element into [-v, v]; then clip_norm = c: every
 * gradient times min(1, c / (norm + 1e-6)), norm over all the trainable parameters
 * together (torch.nn.utils.clip_grad_norm_).  Both are run-time hyper-parameters. */
void el_clip_gradients(Elab *e, Scope *s, const Ast *train, NodeId *gs, int n);
/* After parameter pi's update rule (its updates from `first`): max_norm = c clips
 * the norm of each output unit's incoming weights (columns of a [fan_in, fan_out]
 * matrix, filters of a [out, ...] convolution) to c; ema = d keeps the state
 * `NAME.average` <- d * average + (1 - d) * w', which eval and save use. */
void el_constrain_and_average(Elab *e, Scope *s, const Ast *train, int pi, int first);

/* ---- elab_train.c ---- */

/* A new elaboration into a new Program (e->p, owned by the caller after el_end). */
void el_begin(Elab *e, Frontend *fe, const ElabOptions *opts);
/* Frees what the elaboration held; e->p stays. */
void el_end(Elab *e);

double el_setting_number(Elab *e, Scope *s, const Ast *st, const char *name, double dflt,
                         bool *found);
const Ast *el_find_setting(const Ast *train, const char *name);
/* An error about setting name: at span, or, when --set gave its value, naming the
 * command line instead. */
void el_setting_error(Elab *e, const char *name, Span span, const char *fmt, ...) NND_PRINTF(4, 5);

#endif
