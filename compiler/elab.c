#include "elab.h"

#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff.h"
#include "builtins.h"
#include "interp.h"
#include "sema.h"

enum { MAX_CALL_DEPTH = 64, MAX_ARGS = 16 };

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
} Elab;

static Value ev(Elab *e, Scope *s, const Ast *x);

static Value verr(void) { return (Value){.k = V_ERR}; }
static Value vnum(double x) { return (Value){.k = V_NUM, .num = x, .is_int = x == floor(x) && fabs(x) < 9e15}; }
static Value vfloat(double x) { return (Value){.k = V_NUM, .num = x}; }
static Value vbool(bool b) { return (Value){.k = V_NUM, .num = b, .is_bool = true}; }
static Value vnode(NodeId id) { return id ? (Value){.k = V_NODE, .node = id} : verr(); }
static Value vstr(const char *s) { return (Value){.k = V_STR, .str = s}; }

static const char *vk_name(const Value *v)
{
    switch (v->k) {
    case V_NUM: return v->is_bool ? "a boolean" : "a number";
    case V_STR: return "a string";
    case V_NODE: return "a tensor";
    case V_DIM: return "a dimension";
    case V_LIST: return "a list";
    case V_LAYER: return "a layer";
    case V_FN: return "a function";
    case V_DECL: return v->decl->kind == AST_OPTIMIZER ? "an optimizer declaration" : "a layer declaration";
    case V_BUILTIN: return v->args ? "an initializer with its arguments" : "a built-in function";
    case V_OPT: return "an optimizer";
    default: return "an invalid value";
    }
}

/* ---- diagnostics: an error inside an inlined function names the call chain ---- */

static Value eerr(Elab *e, Span span, const char *fmt, ...) NND_PRINTF(3, 4);
static Value eerr(Elab *e, Span span, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    int d = diag_error(e->d, span, "%s", msg);
    free(msg);
    if (d >= 0) {
        int shown = 0;
        for (int i = e->depth - 1; i >= 0 && shown < 4; i--, shown++)
            diag_note(e->d, e->frames[i].call, "in %s, called here", e->frames[i].name);
    }
    return verr();
}

static const char *shape_str(Elab *e, const Shape *s)
{
    char buf[256];
    shape_format(e->g, s, buf, sizeof buf);
    return arena_strdup(&e->arena, buf);
}

static NodeId mk(Elab *e, Node n, Span span)
{
    n.span = span;
    char err[512];
    NodeId id = graph_build(e->g, n, err, sizeof err);
    if (!id)
        eerr(e, span, "%s", err);
    return id;
}

static Node *nd(Elab *e, NodeId id) { return graph_node(e->g, id); }

/* ---- hyper-parameters ---- */

static Override *find_override(Elab *e, const char *key)
{
    for (int i = 0; i < e->opts->noverrides; i++)
        if (strcmp(e->opts->overrides[i].key, key) == 0)
            return &e->opts->overrides[i];
    return NULL;
}

static NodeId new_hyper(Elab *e, const char *name, double value, Span span)
{
    HyperInfo h = {arena_strdup(&e->p->arena, name), value, span, false};
    vec_push(&e->p->hypers, h);
    Node n = {.op = OP_HYPER, .dtype = (uint8_t)e->p->float_dtype, .idx = e->p->hypers.n - 1,
              .name = h.name, .span = span};
    return graph_append(e->g, &n);
}

/* Marks the hyper-parameters a compile-time value was computed from. */
static void mark_baked(Elab *e, NodeId root)
{
    bool *seen = xcalloc((size_t)graph_count(e->g), 1);
    seen[root] = true;
    for (NodeId id = root; id > 0; id--) {
        if (!seen[id])
            continue;
        Node *n = nd(e, id);
        if (n->op == OP_HYPER)
            e->p->hypers.v[n->idx].baked = true;
        for (int i = 0; i < n->nin; i++)
            seen[n->in[i]] = true;
    }
    free(seen);
}

static bool depends_on_data(Elab *e, NodeId root)
{
    bool *seen = xcalloc((size_t)graph_count(e->g), 1);
    bool dep = false;
    seen[root] = true;
    for (NodeId id = root; id > 0 && !dep; id--) {
        if (!seen[id])
            continue;
        Node *n = nd(e, id);
        if (n->op == OP_PARAM || n->op == OP_STATE || n->op == OP_INPUT || n->op == OP_RANDU ||
            n->op == OP_RANDN || n->op == OP_DIMSIZE)
            dep = true;
        for (int i = 0; i < n->nin; i++)
            seen[n->in[i]] = true;
    }
    free(seen);
    return dep;
}

/* ---- conversions ---- */

/* The compile-time number of a value, evaluating constant graphs (which bakes the
 * hyper-parameters they use). */
static bool to_number(Elab *e, Value v, Span span, const char *what, double *out)
{
    if (v.k == V_ERR)
        return false;
    if (v.k == V_NUM) {
        *out = v.num;
        return true;
    }
    if (v.k == V_NODE && nd(e, v.node)->shape.rank == 0 && !depends_on_data(e, v.node)) {
        DoubleVec hv = {0};
        for (int i = 0; i < e->p->hypers.n; i++)
            vec_push(&hv, e->p->hypers.v[i].value);
        ITensor t;
        char err[256];
        bool ok = interp_eval_const(e->g, v.node, hv.v, hv.n, &t, err, sizeof err);
        vec_free(&hv);
        if (ok) {
            *out = t.v[0];
            itensor_free(&t);
            mark_baked(e, v.node);
            return true;
        }
    }
    eerr(e, span, "%s must be a number known at compile time, not %s", what, vk_name(&v));
    return false;
}

static bool to_int(Elab *e, Value v, Span span, const char *what, int64_t *out)
{
    double x;
    if (!to_number(e, v, span, what, &x))
        return false;
    if (x != floor(x) || fabs(x) > 9e15) {
        eerr(e, span, "%s must be a whole number, got %g", what, x);
        return false;
    }
    *out = (int64_t)x;
    return true;
}

static NndDType num_dtype(Elab *e, const Value *v)
{
    return v->is_bool ? NND_BOOL : e->p->float_dtype;
}

static NodeId const_node(Elab *e, double x, NndDType dt, Span span)
{
    return gb_const(e->g, itensor_round(dt, x), dt, span);
}

/* Flattens a rectangular nested list of numbers; false (reported) if ragged. */
static bool list_flatten(Elab *e, const Value *v, Span span, int depth, Shape *shape,
                         DoubleVec *out, bool *all_int)
{
    if (v->k != V_LIST) {
        if (depth != shape->rank && shape->rank >= 0) {
            eerr(e, span, "ragged tensor literal: rows of different lengths");
            return false;
        }
        double x;
        if (v->k != V_NUM) {
            eerr(e, span, "a tensor literal holds numbers, not %s", vk_name(v));
            return false;
        }
        x = v->num;
        if (!v->is_int)
            *all_int = false;
        vec_push(out, x);
        return true;
    }
    if (depth >= NND_MAX_RANK) {
        eerr(e, span, "tensor literal nested more than %d deep", NND_MAX_RANK);
        return false;
    }
    if (depth >= shape->rank) {
        shape->rank = depth + 1;
        shape->d[depth] = v->list->n;
    } else if (shape->d[depth] != v->list->n) {
        eerr(e, span, "ragged tensor literal: rows of different lengths");
        return false;
    }
    for (int i = 0; i < v->list->n; i++)
        if (!list_flatten(e, &v->list->v[i], span, depth + 1, shape, out, all_int))
            return false;
    return true;
}

static NodeId list_to_node(Elab *e, const Value *v, Span span)
{
    Shape shape = {0, {0}};
    DoubleVec data = {0};
    bool all_int = true;
    /* first pass fixes the shape from the first element at each depth */
    const Value *cur = v;
    while (cur->k == V_LIST && shape.rank < NND_MAX_RANK) {
        shape.d[shape.rank++] = cur->list->n;
        if (cur->list->n == 0)
            break;
        cur = &cur->list->v[0];
    }
    int rank = shape.rank;
    shape.rank = rank;
    Shape check = {0, {0}};
    bool ok = list_flatten(e, v, span, 0, &check, &data, &all_int);
    if (ok && !shape_equal(&check, &shape) && data.n > 0) {
        eerr(e, span, "ragged tensor literal: rows of different lengths");
        ok = false;
    }
    if (!ok) {
        vec_free(&data);
        return 0;
    }
    uint32_t off = (uint32_t)e->g->fpool.n;
    NndDType dt = e->p->float_dtype;
    for (int i = 0; i < data.n; i++)
        vec_push(&e->g->fpool, itensor_round(dt, data.v[i]));
    vec_free(&data);
    Node n = {.op = OP_TENSOR, .dtype = (uint8_t)dt, .shape = shape, .pool = off, .span = span};
    return graph_append(e->g, &n);
}

static NodeId dim_node(Elab *e, Value v, Span span)
{
    return gb_dimsize(e->g, v.node, 1u << v.axis, e->p->float_dtype, span);
}

/* A value as a graph node: numbers become constants, lists tensors. */
static NodeId to_node(Elab *e, Value v, Span span)
{
    switch (v.k) {
    case V_NODE:
        return v.node;
    case V_NUM:
        return const_node(e, v.num, num_dtype(e, &v), span);
    case V_DIM:
        return dim_node(e, v, span);
    case V_LIST:
        return list_to_node(e, &v, span);
    case V_ERR:
        return 0;
    default:
        if (v.k == V_BUILTIN && v.args)
            eerr(e, span, "'%s' draws a parameter's initial values; it can only be used in a "
                          "parameter initializer", builtin_info[v.builtin].name);
        else
            eerr(e, span, "expected a tensor, got %s", vk_name(&v));
        return 0;
    }
}

/* A shape from a list of dimensions (numbers, or symbolic dimensions).  With
 * minus_axis, one dimension may be -1: its axis is stored there (else -1) and the
 * dimension is left as 1.  (-1 cannot stay in the shape: symbolic dimensions are
 * negative, and the first one is -1.) */
static bool to_shape(Elab *e, Value v, Span span, const char *what, Shape *out, int *minus_axis)
{
    if (minus_axis)
        *minus_axis = -1;
    if (v.k == V_ERR)
        return false;
    if (v.k != V_LIST) {
        int64_t n;
        if (v.k == V_NUM && to_int(e, v, span, what, &n)) {
            *out = (Shape){1, {n}};
            return true;
        }
        eerr(e, span, "%s must be a list of dimensions like [B, 784]", what);
        return false;
    }
    if (v.list->n > NND_MAX_RANK) {
        eerr(e, span, "%s has more than %d dimensions", what, NND_MAX_RANK);
        return false;
    }
    Shape s = {v.list->n, {0}};
    for (int i = 0; i < v.list->n; i++) {
        Value d = v.list->v[i];
        if (d.k == V_DIM) {
            s.d[i] = d.dim;
            continue;
        }
        int64_t n;
        if (!to_int(e, d, span, what, &n))
            return false;
        if (n == -1 && minus_axis) {
            if (*minus_axis >= 0) {
                eerr(e, span, "only one dimension can be -1");
                return false;
            }
            *minus_axis = i;
            n = 1;
        } else if (n < 1) {
            eerr(e, span, "%s: dimension %d is %lld; dimensions must be at least 1", what, i,
                 (long long)n);
            return false;
        }
        s.d[i] = n;
    }
    *out = s;
    return true;
}

/* ---- arithmetic with promotion and broadcasting ---- */

static OpId binop_id(AstOp op)
{
    switch (op) {
    case AOP_ADD: return OP_ADD;
    case AOP_SUB: return OP_SUB;
    case AOP_MUL: return OP_MUL;
    case AOP_DIV: return OP_DIV;
    case AOP_POW: return OP_POW;
    case AOP_EQ: return OP_EQ;
    case AOP_NE: return OP_NE;
    case AOP_LT: return OP_LT;
    case AOP_LE: return OP_LE;
    case AOP_GT: return OP_GT;
    case AOP_GE: return OP_GE;
    case AOP_AND: return OP_AND;
    case AOP_OR: return OP_OR;
    default: return OP_COUNT;
    }
}

static double fold2(OpId op, double a, double b)
{
    switch (op) {
    case OP_ADD: return a + b;
    case OP_SUB: return a - b;
    case OP_MUL: return a * b;
    case OP_DIV: return a / b;
    case OP_POW: return pow(a, b);
    case OP_MIN: return b < a ? b : a;
    case OP_MAX: return b > a ? b : a;
    case OP_LT: return a < b;
    case OP_LE: return a <= b;
    case OP_GT: return a > b;
    case OP_GE: return a >= b;
    case OP_EQ: return a == b;
    case OP_NE: return a != b;
    case OP_AND: return a != 0 && b != 0;
    case OP_OR: return a != 0 || b != 0;
    default: return NAN;
    }
}

static bool is_compare(OpId op) { return op >= OP_LT && op <= OP_NE; }
static bool is_logic(OpId op) { return op == OP_AND || op == OP_OR; }

static NndDType dtype_rank_max(NndDType a, NndDType b)
{
    static const int rank[] = {[NND_BOOL] = 0, [NND_I32] = 1, [NND_F32] = 2, [NND_F64] = 3};
    return rank[a] >= rank[b] ? a : b;
}

/* Applies a binary op with NumPy broadcasting and dtype promotion: a number adopts
 * the tensor's dtype; booleans in arithmetic become floats; integers divided or
 * raised to a fractional power become floats. */
static Value binop(Elab *e, OpId op, Value a, Value b, Span span)
{
    if (a.k == V_ERR || b.k == V_ERR)
        return verr();
    if (op == OP_ADD && a.k == V_STR && b.k == V_STR)
        return vstr(arena_printf(&e->arena, "%s%s", a.str, b.str));
    if (a.k == V_DIM && a.dim >= 0)
        a = vnum((double)a.dim);
    if (b.k == V_DIM && b.dim >= 0)
        b = vnum((double)b.dim);
    if (a.k == V_NUM && b.k == V_NUM) {
        double r = fold2(op, a.num, b.num);
        if (is_compare(op) || is_logic(op))
            return vbool(r != 0);
        Value v = vfloat(r);
        v.is_int = a.is_int && b.is_int && (op == OP_ADD || op == OP_SUB || op == OP_MUL ||
                                            op == OP_MIN || op == OP_MAX ||
                                            (op == OP_POW && b.num >= 0)) &&
                   fabs(r) < 9e15;
        return v;
    }
    bool tensor_a = a.k == V_NODE || a.k == V_LIST || a.k == V_DIM;
    bool tensor_b = b.k == V_NODE || b.k == V_LIST || b.k == V_DIM;
    if (!(tensor_a || a.k == V_NUM) || !(tensor_b || b.k == V_NUM))
        return eerr(e, span, "operator '%s' does not apply to %s and %s",
                    op_info[op].name, vk_name(&a), vk_name(&b));
    NndDType fl = e->p->float_dtype;
    NodeId na, nb;
    if (a.k == V_NUM || b.k == V_NUM) {
        /* one side is a weakly typed number */
        Value *num = a.k == V_NUM ? &a : &b;
        NodeId t = to_node(e, a.k == V_NUM ? b : a, span);
        if (!t)
            return verr();
        NndDType td = nd(e, t)->dtype;
        NndDType dt = td;
        if (is_logic(op))
            dt = NND_BOOL;
        else if (td == NND_BOOL && !is_compare(op))
            dt = fl;
        else if (td == NND_I32 && (!num->is_int || op == OP_DIV))
            dt = fl;
        else if (td == NND_BOOL && is_compare(op) && !num->is_bool)
            dt = num->is_int ? NND_I32 : fl;
        t = gb_cast(e->g, t, dt, span);
        NodeId c = const_node(e, num->num, dt, span);
        na = a.k == V_NUM ? c : t;
        nb = a.k == V_NUM ? t : c;
    } else {
        na = to_node(e, a, span);
        nb = to_node(e, b, span);
        if (!na || !nb)
            return verr();
        NndDType da = nd(e, na)->dtype, db = nd(e, nb)->dtype;
        NndDType dt = dtype_rank_max(da, db);
        if (is_logic(op))
            dt = NND_BOOL;
        else if (!is_compare(op) && (dt == NND_BOOL || (dt == NND_I32 && op == OP_DIV)))
            dt = fl;
        if (is_logic(op) && (da != NND_BOOL || db != NND_BOOL))
            return eerr(e, span, "'%s' needs booleans, got %s and %s", op_info[op].name,
                        dtype_name(da), dtype_name(db));
        na = gb_cast(e->g, na, dt, span);
        nb = gb_cast(e->g, nb, dt, span);
    }
    if (is_logic(op) && (nd(e, na)->dtype != NND_BOOL || nd(e, nb)->dtype != NND_BOOL))
        return eerr(e, span, "'%s' needs booleans", op_info[op].name);
    Shape s;
    char err[512];
    if (!shape_broadcast(e->g, &nd(e, na)->shape, &nd(e, nb)->shape, &s, err, sizeof err))
        return eerr(e, span, "%s", err);
    na = gb_broadcast(e->g, na, &s, span);
    nb = gb_broadcast(e->g, nb, &s, span);
    return vnode(mk(e, (Node){.op = (uint8_t)op, .nin = 2, .in = {na, nb}}, span));
}

static Value matmul(Elab *e, Value a, Value b, Span span)
{
    NodeId na = to_node(e, a, span), nb = to_node(e, b, span);
    if (!na || !nb)
        return verr();
    NndDType fl = e->p->float_dtype;
    if (!dtype_is_float(nd(e, na)->dtype))
        na = gb_cast(e->g, na, fl, span);
    if (!dtype_is_float(nd(e, nb)->dtype))
        nb = gb_cast(e->g, nb, fl, span);
    NndDType dt = dtype_rank_max(nd(e, na)->dtype, nd(e, nb)->dtype);
    na = gb_cast(e->g, na, dt, span);
    nb = gb_cast(e->g, nb, dt, span);
    return vnode(mk(e, (Node){.op = OP_MATMUL, .nin = 2, .in = {na, nb}}, span));
}

typedef double (*Fold1)(double);
static double fold_relu(double x) { return x > 0 ? x : 0; }
static double fold_sigmoid(double x) { return 1 / (1 + exp(-x)); }
static double fold_sign(double x) { return (x > 0) - (x < 0); }
static double fold_rsqrt(double x) { return 1 / sqrt(x); }
static double fold_neg(double x) { return -x; }

static Value unop(Elab *e, OpId op, Value a, Span span)
{
    if (a.k == V_ERR)
        return verr();
    if (a.k == V_DIM && a.dim >= 0)
        a = vnum((double)a.dim);
    if (a.k == V_NUM) {
        if (op == OP_NOT)
            return vbool(a.num == 0);
        Fold1 f = NULL;
        switch (op) {
        case OP_NEG: f = fold_neg; break;
        case OP_EXP: f = exp; break;
        case OP_LOG: f = log; break;
        case OP_SQRT: f = sqrt; break;
        case OP_RSQRT: f = fold_rsqrt; break;
        case OP_ABS: f = fabs; break;
        case OP_SIGN: f = fold_sign; break;
        case OP_TANH: f = tanh; break;
        case OP_SIGMOID: f = fold_sigmoid; break;
        case OP_RELU: f = fold_relu; break;
        case OP_SIN: f = sin; break;
        case OP_COS: f = cos; break;
        case OP_FLOOR: f = floor; break;
        default: break;
        }
        Value v = vfloat(f(a.num));
        v.is_int = a.is_int && (op == OP_NEG || op == OP_ABS || op == OP_SIGN || op == OP_RELU ||
                                op == OP_FLOOR);
        if (op == OP_FLOOR)
            v.is_int = fabs(v.num) < 9e15;
        return v;
    }
    NodeId n = to_node(e, a, span);
    if (!n)
        return verr();
    NndDType dt = nd(e, n)->dtype;
    if (op == OP_NOT) {
        if (dt != NND_BOOL)
            return eerr(e, span, "'not' needs a boolean, got %s", dtype_name(dt));
    } else if (dt == NND_BOOL ||
               (dt == NND_I32 && op != OP_NEG && op != OP_ABS && op != OP_SIGN && op != OP_RELU)) {
        n = gb_cast(e->g, n, e->p->float_dtype, span);
    }
    return vnode(mk(e, (Node){.op = (uint8_t)op, .nin = 1, .in = {n}}, span));
}

/* if c then a else b with a tensor condition: both branches, selected elementwise. */
static Value select3(Elab *e, Value c, Value a, Value b, Span span)
{
    if (c.k == V_ERR || a.k == V_ERR || b.k == V_ERR)
        return verr();
    NodeId nc = to_node(e, c, span);
    if (!nc)
        return verr();
    if (nd(e, nc)->dtype != NND_BOOL) {
        Value z = binop(e, OP_NE, vnode(nc), vnum(0), span);
        if (z.k == V_ERR)
            return z;
        nc = z.node;
    }
    /* the branches meet as in arithmetic: one dtype, one shape */
    Value probe = binop(e, OP_ADD, a.k == V_NUM && a.is_bool ? vnum(a.num) : a,
                        b.k == V_NUM && b.is_bool ? vnum(b.num) : b, span);
    if (probe.k == V_ERR)
        return probe;
    Node *pn = nd(e, probe.node);
    NndDType dt = pn->dtype;
    bool both_bool = (a.k == V_NUM ? a.is_bool : a.k == V_NODE && nd(e, a.node)->dtype == NND_BOOL) &&
                     (b.k == V_NUM ? b.is_bool : b.k == V_NODE && nd(e, b.node)->dtype == NND_BOOL);
    if (both_bool)
        dt = NND_BOOL;
    Shape s;
    char err[512];
    if (!shape_broadcast(e->g, &pn->shape, &nd(e, nc)->shape, &s, err, sizeof err))
        return eerr(e, span, "%s", err);
    NodeId na = a.k == V_NUM ? const_node(e, a.num, dt, span) : gb_cast(e->g, to_node(e, a, span), dt, span);
    NodeId nb = b.k == V_NUM ? const_node(e, b.num, dt, span) : gb_cast(e->g, to_node(e, b, span), dt, span);
    if (!na || !nb)
        return verr();
    nc = gb_broadcast(e->g, nc, &s, span);
    na = gb_broadcast(e->g, na, &s, span);
    nb = gb_broadcast(e->g, nb, &s, span);
    return vnode(mk(e, (Node){.op = OP_SELECT, .nin = 3, .in = {nc, na, nb}}, span));
}

/* ---- scopes and lookup ---- */

static void bind(Scope *s, const char *name, Value v, Span span)
{
    Binding b = {name, v, span};
    vec_push(&s->b, b);
}

static Binding *scope_find(Scope *s, const char *name)
{
    for (int i = s->b.n - 1; i >= 0; i--)
        if (strcmp(s->b.v[i].name, name) == 0)
            return &s->b.v[i];
    return NULL;
}

static Binding *member_find(LayerInst *l, const char *name)
{
    for (int i = l->members.n - 1; i >= 0; i--)
        if (strcmp(l->members.v[i].name, name) == 0)
            return &l->members.v[i];
    return NULL;
}

static const Ast *method_find(const LayerInst *l, const char *name)
{
    for (int i = 0; i < l->decl->list2.n; i++) {
        const Ast *m = l->decl->list2.v[i];
        if (m->kind == AST_FN && strcmp(m->name, name) == 0)
            return m;
    }
    return NULL;
}

static Value decl_value(Elab *e, const Ast *d, Module *where, Span span)
{
    switch (d->kind) {
    case AST_FN:
        return (Value){.k = V_FN, .decl = d, .mod = where};
    case AST_LAYER:
    case AST_OPTIMIZER:
        return (Value){.k = V_DECL, .decl = d, .mod = where};
    case AST_LET: {
        for (int i = 0; i < e->nlets; i++)
            if (e->lets[i] == d)
                return eerr(e, span, "'%s' is defined in terms of itself", d->name);
        if (e->nlets == MAX_CALL_DEPTH)
            return eerr(e, span, "definitions nested too deeply");
        e->lets[e->nlets++] = d;
        Scope s = {.mod = where};
        Value v = ev(e, &s, d->a);
        vec_free(&s.b);
        e->nlets--;
        return v;
    }
    default:
        return eerr(e, span, "'%s' is not a value", d->name);
    }
}

static Value lookup(Elab *e, Scope *s, const char *name, Span span)
{
    Binding *b = scope_find(s, name);
    if (b)
        return b->v;
    if (s->self) {
        Binding *m = member_find(s->self, name);
        if (m)
            return m->v;
        const Ast *fn = method_find(s->self, name);
        if (fn)
            return (Value){.k = V_FN, .decl = fn, .mod = s->self->mod, .layer = s->self};
    }
    Module *where = NULL;
    const Ast *d = module_lookup(s->mod, name, &where, NULL);
    if (d)
        return decl_value(e, d, where, span);
    int bi = builtin_find(name);
    if (bi >= 0)
        return (Value){.k = V_BUILTIN, .builtin = bi};
    if (strcmp(name, "training") == 0)
        return vbool(e->training);
    double c;
    if (builtin_constant(name, &c))
        return vfloat(c);
    return eerr(e, span, "unknown name '%s'", name);
}

/* ---- layers ---- */

static const char *join_path(Elab *e, const char *a, const char *b)
{
    if (!a || !*a)
        return arena_strdup(&e->p->arena, b);
    return arena_printf(&e->p->arena, "%s.%s", a, b);
}

/* Every parameter in a value: a parameter, a layer and its sub-layers, or a list
 * of them, in declaration order. */
static void value_params(Elab *e, const Value *v, IntVec *out, int depth)
{
    if (depth > MAX_CALL_DEPTH)
        return;
    if (v->k == V_NODE && nd(e, v->node)->op == OP_PARAM) {
        int idx = nd(e, v->node)->idx;
        bool dup = false;
        for (int k = 0; k < out->n; k++)
            dup |= out->v[k] == idx;
        if (!dup)
            vec_push(out, idx);
    } else if (v->k == V_LAYER) {
        for (int i = 0; i < v->layer->members.n; i++) {
            const Value *m = &v->layer->members.v[i].v;
            if (m->k != V_LAYER || m->layer != v->layer)
                value_params(e, m, out, depth + 1);
        }
    } else if (v->k == V_LIST) {
        for (int i = 0; i < v->list->n; i++)
            value_params(e, &v->list->v[i], out, depth + 1);
    }
}


/* ---- calls ---- */

static void args_free(Args *a) { (void)a; }

/* Evaluates call arguments.  list_path: where layers created in a list argument
 * are bound (the arguments of a layer being created: Sequential([Dense(...), ...])). */
static bool eval_args(Elab *e, Scope *s, const AstList *list, Args *out, const char *list_path)
{
    out->n = 0;
    if (list->n > MAX_ARGS) {
        eerr(e, list->v[MAX_ARGS]->span, "more than %d arguments", MAX_ARGS);
        return false;
    }
    const char *saved = e->bind_path;
    e->bind_path = NULL;
    bool ok = true;
    for (int i = 0; i < list->n; i++) {
        const Ast *a = list->v[i];
        bool kw = a->kind == AST_KWARG;
        const Ast *ax = kw ? a->a : a;
        e->bind_path = ax->kind == AST_LIST ? list_path : NULL;
        out->v[i] = ev(e, s, ax);
        e->bind_path = NULL;
        out->kw[i] = kw ? a->name : NULL;
        out->span[i] = a->span;
        if (out->v[i].k == V_ERR)
            ok = false;
        out->n++;
    }
    e->bind_path = saved;
    return ok;
}

/* Finds argument `name` (position pos); returns its index or -1. */
static int arg_find(const Args *a, const char *name, int pos)
{
    int npos = 0;
    for (int i = 0; i < a->n; i++) {
        if (a->kw[i]) {
            if (strcmp(a->kw[i], name) == 0)
                return i;
        } else if (npos++ == pos) {
            return i;
        }
    }
    return -1;
}

static bool check_type(Elab *e, Scope *s, const Ast *type, Value *v, Span vspan, const char *what,
                       const Ast *pdecl, bool bind_patterns);

/* Binds arguments to parameters in scope s; defaults are evaluated in s, so they
 * see the parameters before them. */
static bool bind_params(Elab *e, Scope *s, const AstList *params, const Args *args,
                        const char *what, Span span)
{
    bool ok = true;
    for (int i = 0; i < params->n; i++) {
        const Ast *p = params->v[i];
        int k = arg_find(args, p->name, i);
        Value v;
        Span vspan = span;
        if (k >= 0) {
            v = args->v[k];
            vspan = args->span[k];
        } else if (e->in_init && strcmp(p->name, "fan_in") == 0) {
            v = vnum(e->fan_in);
        } else if (e->in_init && strcmp(p->name, "fan_out") == 0) {
            v = vnum(e->fan_out);
        } else if (p->b) {
            v = ev(e, s, p->b);
        } else {
            eerr(e, span, "missing argument '%s' in call to %s", p->name, what);
            ok = false;
            v = verr();
        }
        if (p->a && v.k != V_ERR && !check_type(e, s, p->a, &v, vspan, p->name, p, true))
            v = verr();
        if (v.k == V_ERR)
            ok = false;
        bind(s, p->name, v, p->span);
    }
    /* arguments that match no parameter were reported by sema for direct calls;
     * calls through values are checked here */
    int npos = 0;
    for (int i = 0; i < args->n; i++) {
        if (args->kw[i]) {
            bool found = false;
            for (int j = 0; j < params->n; j++)
                found |= strcmp(params->v[j]->name, args->kw[i]) == 0;
            if (!found) {
                eerr(e, args->span[i], "%s has no parameter '%s'", what, args->kw[i]);
                ok = false;
            }
        } else if (++npos > params->n) {
            eerr(e, args->span[i], "too many arguments: %s takes %d", what, params->n);
            ok = false;
        }
    }
    return ok;
}

static Value call_value(Elab *e, Value callee, Args *args, Span span, const char *name);

static Value run_body(Elab *e, Scope *s, const Ast *fn)
{
    if (fn->b)
        return ev(e, s, fn->b);
    Value last = verr();
    for (int i = 0; i < fn->list2.n; i++) {
        const Ast *st = fn->list2.v[i];
        if (st->kind == AST_LET) {
            bind(s, st->name, ev(e, s, st->a), st->span);
        } else if (st->kind == AST_ASSIGN) {
            Value v = ev(e, s, st->b);
            if (st->op != AOP_ASSIGN)
                v = binop(e, binop_id(st->op), lookup(e, s, st->a->name, st->a->span), v, st->span);
            bind(s, st->a->name, v, st->span);
        } else {
            last = ev(e, s, st);
        }
    }
    return last;
}

/* After a layer method ran in train mode: the final values of the layer's state
 * names are the state's new values, one update per state and step. */
static void record_state_updates(Elab *e, LayerInst *self, Scope *s, int first)
{
    for (int i = 0; i < self->members.n; i++) {
        Binding *m = &self->members.v[i];
        if (m->v.k != V_NODE || nd(e, m->v.node)->op != OP_STATE)
            continue;
        Binding *b = NULL;
        for (int k = s->b.n - 1; k >= first && !b; k--)
            if (strcmp(s->b.v[k].name, m->name) == 0)
                b = &s->b.v[k];
        if (!b || b->v.k == V_ERR || (b->v.k == V_NODE && b->v.node == m->v.node))
            continue;
        Node *st = nd(e, m->v.node);
        StateInfo *si = &e->p->states.v[st->idx];
        for (int k = 0; k < e->p->updates.n; k++)
            if (e->p->updates.v[k].is_state && e->p->updates.v[k].index == st->idx) {
                eerr(e, b->span, "state '%s' is updated twice in one step: a layer with state can "
                                 "be applied once per training step", si->name);
                return;
            }
        NodeId v = to_node(e, b->v, b->span);
        if (!v)
            continue;
        v = gb_cast(e->g, v, (NndDType)st->dtype, b->span);
        Shape bs;
        char err[512];
        if (!shape_broadcast(e->g, &nd(e, v)->shape, &st->shape, &bs, err, sizeof err) ||
            !shape_equal(&bs, &st->shape)) {
            eerr(e, b->span, "the new value of state '%s' has shape %s but the state is %s",
                 m->name, shape_str(e, &nd(e, v)->shape), shape_str(e, &st->shape));
            continue;
        }
        Update u = {true, st->idx, gb_broadcast(e->g, v, &st->shape, b->span)};
        vec_push(&e->p->updates, u);
    }
}

/* The result of a fn with a vjp block: a CUSTOM node whose value is the result and
 * whose gradient the block gives (elab_custom_vjp). */
static Value custom_result(Elab *e, const Ast *fn, Module *mod, LayerInst *self, Scope *s,
                           int nparams, Value r, Span span)
{
    if (r.k != V_NODE)
        return r; /* a number: nothing to differentiate */
    CustomGrad cg = {fn, mod, self, NULL, nparams, {0, 0}, 0};
    Node n = {.op = OP_CUSTOM, .nin = 1, .in = {r.node}, .idx = e->customs.n};
    /* nparams bindings: the parameters and the dimension names their types bound */
    for (int i = 0; i < fn->list.n; i++) {
        Value v = verr();
        for (int k = 0; k < nparams; k++)
            if (strcmp(s->b.v[k].name, fn->list.v[i]->name) == 0)
                v = s->b.v[k].v;
        if (v.k != V_NODE || !dtype_is_float(nd(e, v.node)->dtype))
            continue;
        if (cg.nwhich == 2)
            return eerr(e, span, "a fn with a vjp block takes at most two tensor arguments; "
                                 "'%s' is given more", fn->name);
        cg.which[cg.nwhich++] = i;
        n.in[n.nin++] = v.node;
    }
    cg.params = arena_alloc(&e->arena, sizeof(Binding) * (size_t)(nparams ? nparams : 1));
    memcpy(cg.params, s->b.v, sizeof(Binding) * (size_t)nparams);
    vec_push(&e->customs, cg);
    return vnode(mk(e, n, span));
}

/* Graph.custom_vjp: runs the vjp block of the call behind CUSTOM node n. */
static void elab_custom_vjp(void *ctx, Graph *g, NodeId n, NodeId dy, NodeId *dx)
{
    Elab *e = ctx;
    Node *cn = graph_node(g, n);
    CustomGrad *cg = &e->customs.v[cn->idx];
    const Ast *vjp = cg->fn->c;
    if (e->depth == MAX_CALL_DEPTH) {
        eerr(e, vjp->span, "calls nested more than %d deep", MAX_CALL_DEPTH);
        return;
    }
    Scope s = {.mod = cg->mod, .self = cg->self};
    for (int i = 0; i < cg->nparams; i++)
        vec_push(&s.b, cg->params[i]);
    bind(&s, vjp->list.n == 2 ? vjp->list.v[0]->name : "y", vnode(n), vjp->span);
    bind(&s, vjp->list.n == 2 ? vjp->list.v[1]->name : "dy", vnode(dy), vjp->span);
    e->frames[e->depth++] = (Frame){vjp, vjp->span,
                                    arena_printf(&e->arena, "the vjp block of '%s'", cg->fn->name)};
    Value r = run_body(e, &s, vjp);
    e->depth--;
    int np = cg->fn->list.n;
    const Ast *last = vjp->list2.n ? vjp->list2.v[vjp->list2.n - 1] : vjp;
    if (r.k == V_ERR) {
        vec_free(&s.b);
        return;
    }
    /* a list gives the gradients of the parameters in order (those left out get
     * none); anything else is the first parameter's */
    bool per_param = np > 1 && r.k == V_LIST;
    if (per_param && r.list->n > np) {
        eerr(e, last->span, "the vjp block of '%s' gives %d gradients, but it has %d parameters",
             cg->fn->name, r.list->n, np);
        vec_free(&s.b);
        return;
    }
    for (int k = 0; k < cg->nwhich; k++) {
        int pi = cg->which[k];
        if (per_param ? pi >= r.list->n : pi != 0)
            continue;
        Value gv = per_param ? r.list->v[pi] : r;
        if (gv.k == V_NUM && gv.num == 0)
            continue; /* no gradient */
        NodeId gn = to_node(e, gv, last->span);
        if (!gn)
            continue;
        NodeId target = cn->in[1 + k];
        Node *t = nd(e, target);
        Shape ts = t->shape;
        NndDType tdt = (NndDType)t->dtype;
        gn = gb_cast(g, gn, tdt, last->span);
        Shape bs;
        char err[512];
        const Shape *gs = &nd(e, gn)->shape;
        if (shape_broadcast(g, gs, &ts, &bs, err, sizeof err) && shape_equal(&bs, &ts)) {
            gn = gb_broadcast(g, gn, &ts, last->span);
        } else if (shape_broadcast(g, gs, &ts, &bs, err, sizeof err) && shape_equal(&bs, gs)) {
            gn = gb_sum_to(g, gn, &ts, last->span); /* the parameter was broadcast */
        } else {
            eerr(e, last->span, "the gradient for '%s' has shape %s, but '%s' is %s",
                 cg->fn->list.v[pi]->name, shape_str(e, gs), cg->fn->list.v[pi]->name,
                 shape_str(e, &ts));
            continue;
        }
        dx[k] = gn;
    }
    vec_free(&s.b);
}

static Value call_fn(Elab *e, const Ast *fn, Module *mod, LayerInst *self, Args *args,
                     Span span)
{
    const char *name = self ? arena_printf(&e->arena, "'%s.%s'", self->decl->name, fn->name)
                            : arena_printf(&e->arena, "'%s'", fn->name);
    for (int i = 0; i < e->depth; i++)
        if (e->frames[i].decl == fn)
            return eerr(e, span, "recursive call of %s: recursion is not supported", name);
    if (e->depth == MAX_CALL_DEPTH)
        return eerr(e, span, "calls nested more than %d deep", MAX_CALL_DEPTH);
    Scope s = {.mod = mod, .self = self};
    e->frames[e->depth++] = (Frame){fn, span, name};
    Value r = verr();
    if (bind_params(e, &s, &fn->list, args, name, span)) {
        int nparams = s.b.n;
        r = run_body(e, &s, fn);
        if (fn->a && r.k != V_ERR &&
            !check_type(e, &s, fn->a, &r, fn->b ? fn->b->span : fn->span, "result", NULL, false))
            r = verr();
        if (self && e->training && e->record_state && r.k != V_ERR)
            record_state_updates(e, self, &s, nparams);
        if (fn->c && r.k != V_ERR)
            r = custom_result(e, fn, mod, self, &s, nparams, r, span);
    }
    e->depth--;
    vec_free(&s.b);
    return r;
}

/* The shape and dtype of a `param` or layer `state` declaration. */
static bool decl_shape(Elab *e, Scope *s, const Ast *st, const char *what, Shape *out, NndDType *dt)
{
    Shape shape = {st->a->list.n, {0}};
    bool good = shape.rank <= NND_MAX_RANK;
    if (!good)
        eerr(e, st->a->span, "a %s has at most %d dimensions", what, NND_MAX_RANK);
    for (int k = 0; good && k < shape.rank; k++) {
        const Ast *dx = st->a->list.v[k];
        Value dv = ev(e, s, dx);
        int64_t n;
        if (dv.k == V_DIM) {
            eerr(e, dx->span, "a %s's shape cannot depend on the batch size", what);
            good = false;
        } else if (!to_int(e, dv, dx->span, arena_printf(&e->arena, "a %s dimension", what), &n)) {
            good = false;
        } else if (n < 1) {
            eerr(e, dx->span, "%s dimension is %lld; it must be at least 1", what, (long long)n);
            good = false;
        } else {
            shape.d[k] = n;
        }
    }
    *dt = e->p->float_dtype;
    if (st->a->name) {
        if (strcmp(st->a->name, "f64") == 0)
            *dt = NND_F64;
        else if (strcmp(st->a->name, "f32") == 0)
            *dt = e->p->float_dtype == NND_F64 ? NND_F64 : NND_F32;
        else {
            eerr(e, st->a->span, "%s", *what == 'p' ? "parameters are trained, so they must be f32 or f64"
                                                     : "layer state must be f32 or f64");
            good = false;
        }
    }
    *out = shape;
    return good;
}

static Value instantiate(Elab *e, const Ast *decl, Module *mod, Args *args, Span span)
{
    if (!e->bind_path)
        return eerr(e, span,
                    "layer '%s' is created here without a name; create layers as members "
                    "(`fc1 = %s(...)`) or in the train block (`net = %s(...)`)",
                    decl->name, decl->name, decl->name);
    const char *path = e->bind_path;
    e->bind_path = NULL;
    if (e->depth == MAX_CALL_DEPTH)
        return eerr(e, span, "layers nested more than %d deep", MAX_CALL_DEPTH);
    for (int i = 0; i < e->depth; i++)
        if (e->frames[i].decl == decl)
            return eerr(e, span, "layer '%s' contains itself", decl->name);
    LayerInst *l = arena_alloc(&e->arena, sizeof *l);
    vec_push(&e->layers, l);
    l->decl = decl;
    l->mod = mod;
    l->path = path;
    const char *what = arena_printf(&e->arena, "'%s'", decl->name);
    e->frames[e->depth++] = (Frame){decl, span, arena_printf(&e->arena, "layer %s", what)};
    Scope s = {.mod = mod, .self = l};
    bool ok = bind_params(e, &s, &decl->list, args, what, span);
    for (int i = 0; ok && i < s.b.n; i++)
        vec_push(&l->members, s.b.v[i]);
    s.b.n = 0;
    for (int i = 0; ok && i < decl->list2.n; i++) {
        const Ast *st = decl->list2.v[i];
        if (st->kind == AST_LET) {
            Value v = ev(e, &s, st->a);
            Binding b = {st->name, v, st->span};
            vec_push(&l->members, b);
        } else if (st->kind == AST_ASSIGN) {
            e->bind_path = join_path(e, path, st->a->name);
            Value v = ev(e, &s, st->b);
            e->bind_path = NULL;
            Binding b = {st->a->name, v, st->span};
            vec_push(&l->members, b);
        } else if (st->kind == AST_STATE_DECL) {
            Shape shape;
            NndDType dt;
            if (!decl_shape(e, &s, st, "layer state", &shape, &dt)) {
                ok = false;
                break;
            }
            const char *sname = join_path(e, path, st->name);
            e->in_init = true;
            e->init_shape = shape;
            e->init_dtype = dt;
            e->init_name = sname;
            e->init_draws = 0;
            e->fan_in = e->fan_out = 1;
            Value iv = ev(e, &s, st->b);
            if (iv.k == V_FN || (iv.k == V_BUILTIN && builtin_info[iv.builtin].ctx == BCTX_INIT)) {
                Args none = {0};
                iv = call_value(e, iv, &none, st->b->span, NULL);
            }
            e->in_init = false;
            NodeId init = iv.k == V_ERR ? 0 : to_node(e, iv, st->b->span);
            if (init) {
                init = gb_cast(e->g, init, dt, st->b->span);
                Shape bs;
                char err[512];
                if (!shape_broadcast(e->g, &nd(e, init)->shape, &shape, &bs, err, sizeof err) ||
                    !shape_equal(&bs, &shape) || depends_on_data(e, init)) {
                    eerr(e, st->b->span, "layer state '%s' starts with %s; it needs a value of "
                                         "shape %s that does not depend on data",
                         st->name, shape_str(e, &nd(e, init)->shape), shape_str(e, &shape));
                    init = 0;
                } else {
                    init = gb_broadcast(e->g, init, &shape, st->b->span);
                }
            }
            if (!init) {
                ok = false;
                break;
            }
            Node sn = {.op = OP_STATE, .dtype = (uint8_t)dt, .shape = shape, .idx = e->p->states.n,
                       .name = sname, .span = st->span};
            NodeId id = graph_append(e->g, &sn);
            StateInfo si = {sname, -1, id, init, st->span, {0}};
            vec_push(&e->p->states, si);
            Binding b = {st->name, vnode(id), st->span};
            vec_push(&l->members, b);
        } else if (st->kind == AST_PARAM_DECL) {
            Shape shape;
            NndDType dt;
            bool good = decl_shape(e, &s, st, "parameter", &shape, &dt);
            if (!st->b) {
                eerr(e, st->span,
                     "parameter '%s' needs an initializer, like `= glorot_uniform` or `= 0`",
                     st->name);
                good = false;
            }
            if (!good) {
                ok = false;
                break;
            }
            const char *pname = join_path(e, path, st->name);
            for (int k = 0; k < e->p->params.n; k++)
                if (strcmp(e->p->params.v[k].name, pname) == 0) {
                    eerr(e, st->span, "two parameters are named '%s'", pname);
                    ok = false;
                }
            Node pn = {.op = OP_PARAM, .dtype = (uint8_t)dt, .shape = shape,
                       .idx = e->p->params.n, .name = pname, .span = st->span};
            NodeId id = graph_append(e->g, &pn);
            /* the initializer: fan_in and fan_out come from the shape */
            int r = shape.rank;
            int64_t rf = 1;
            for (int k = 2; k < r; k++)
                rf *= shape.d[k];
            e->fan_in = r == 0 ? 1 : r == 1 ? (double)shape.d[0] : r == 2 ? (double)shape.d[0] : (double)(shape.d[1] * rf);
            e->fan_out = r == 0 ? 1 : r == 1 ? (double)shape.d[0] : r == 2 ? (double)shape.d[1] : (double)(shape.d[0] * rf);
            e->in_init = true;
            e->init_shape = shape;
            e->init_dtype = dt;
            e->init_name = pname;
            e->init_draws = 0;
            Value iv = ev(e, &s, st->b);
            if (iv.k == V_FN || (iv.k == V_BUILTIN && builtin_info[iv.builtin].ctx == BCTX_INIT)) {
                Args none = {0};
                iv = call_value(e, iv, &none, st->b->span, NULL);
            }
            e->in_init = false;
            NodeId init = 0;
            if (iv.k != V_ERR) {
                if (iv.k != V_NUM && iv.k != V_NODE && iv.k != V_LIST) {
                    eerr(e, st->b->span, "an initializer must give a tensor or a number, not %s",
                         vk_name(&iv));
                } else {
                    init = to_node(e, iv, st->b->span);
                    if (init && depends_on_data(e, init) &&
                        !(nd(e, init)->op == OP_RANDU || nd(e, init)->op == OP_RANDN)) {
                        /* only random draws may be "data" here */
                        bool bad = false;
                        bool *seen = xcalloc((size_t)graph_count(e->g), 1);
                        seen[init] = true;
                        for (NodeId q = init; q > 0; q--) {
                            if (!seen[q])
                                continue;
                            Node *qn = nd(e, q);
                            if (qn->op == OP_PARAM || qn->op == OP_STATE || qn->op == OP_INPUT ||
                                qn->op == OP_DIMSIZE)
                                bad = true;
                            for (int z = 0; z < qn->nin; z++)
                                seen[qn->in[z]] = true;
                        }
                        free(seen);
                        if (bad) {
                            eerr(e, st->b->span,
                                 "an initializer cannot depend on data or other parameters");
                            init = 0;
                        }
                    }
                    if (init) {
                        init = gb_cast(e->g, init, dt, st->b->span);
                        char err[512];
                        Shape bs;
                        if (!shape_broadcast(e->g, &nd(e, init)->shape, &shape, &bs, err,
                                             sizeof err) ||
                            !shape_equal(&bs, &shape)) {
                            eerr(e, st->b->span, "the initializer's shape %s does not fit %s",
                                 shape_str(e, &nd(e, init)->shape), shape_str(e, &shape));
                            init = 0;
                        } else {
                            init = gb_broadcast(e->g, init, &shape, st->b->span);
                        }
                    }
                }
            }
            if (!init)
                ok = false;
            ParamInfo pi = {pname, id, init, false, 0, st->span, {0}, -1};
            vec_push(&e->p->params, pi);
            Binding b = {st->name, vnode(id), st->span};
            vec_push(&l->members, b);
        }
    }
    e->depth--;
    vec_free(&s.b);
    if (!ok)
        return verr();
    return (Value){.k = V_LAYER, .layer = l};
}

static Value builtin_call(Elab *e, int id, Args *args, Span span);

static Value call_value(Elab *e, Value callee, Args *args, Span span, const char *name)
{
    switch (callee.k) {
    case V_ERR:
        return verr();
    case V_FN:
        return call_fn(e, callee.decl, callee.mod, callee.layer, args, span);
    case V_BUILTIN:
        if (callee.args && args->n == 0) /* orthogonal(gain = 2), used as an initializer */
            return builtin_call(e, callee.builtin, callee.args, span);
        return builtin_call(e, callee.builtin, args, span);
    case V_DECL:
        if (callee.decl->kind == AST_LAYER)
            return instantiate(e, callee.decl, callee.mod, args, span);
        {
            Args *copy = arena_alloc(&e->arena, sizeof *copy);
            *copy = *args;
            return (Value){.k = V_OPT, .decl = callee.decl, .mod = callee.mod, .args = copy};
        }
    case V_LAYER: {
        const Ast *fwd = method_find(callee.layer, "forward");
        if (!fwd)
            return eerr(e, span, "layer '%s' has no forward function to call",
                        callee.layer->decl->name);
        return call_fn(e, fwd, callee.layer->mod, callee.layer, args, span);
    }
    default:
        return eerr(e, span, "%s%s%s is %s, which cannot be called", name ? "'" : "",
                    name ? name : "this", name ? "'" : "", vk_name(&callee));
    }
}

/* ---- types of function parameters: shape patterns ---- */

static bool dims_equal(Value a, int64_t d)
{
    if (a.k == V_DIM)
        return a.dim == d;
    return a.k == V_NUM && d >= 0 && a.num == (double)d;
}

static Value dim_value(NodeId node, int axis, int64_t d)
{
    if (d >= 0)
        return vnum((double)d);
    return (Value){.k = V_DIM, .dim = d, .node = node, .axis = axis};
}

/* Checks v against a declared type.  Unknown names in the shape (and `*S`) are
 * pattern variables: the first use binds them in s, later uses must agree. */
static bool check_type(Elab *e, Scope *s, const Ast *type, Value *v, Span vspan, const char *what,
                       const Ast *pdecl, bool bind_patterns)
{
    if (v->k == V_NUM || v->k == V_LIST || v->k == V_DIM) {
        NodeId n = to_node(e, *v, vspan);
        if (!n)
            return false;
        if (type->name && strcmp(type->name, "i32") == 0)
            n = gb_cast(e->g, n, NND_I32, vspan);
        *v = vnode(n);
    }
    if (v->k != V_NODE) {
        eerr(e, vspan, "'%s' must be a tensor, got %s", what, vk_name(v));
        return false;
    }
    Node *n = nd(e, v->node);
    Shape sh = n->shape;
    char want[512] = "";
    int nbound = s->b.n; /* names bound before this value was matched */
    bool bad = false;
    if (type->has_shape) {
        int splat = -1;
        for (int i = 0; i < type->list.n; i++)
            if (type->list.v[i]->kind == AST_NAME && type->list.v[i]->op == AOP_MUL)
                splat = i;
        int fixed = type->list.n - (splat >= 0);
        if (splat < 0 ? sh.rank != fixed : sh.rank < fixed)
            bad = true;
        int axis = 0;
        for (int i = 0; i < type->list.n && !bad; i++) {
            const Ast *dx = type->list.v[i];
            if (i == splat) {
                int cnt = sh.rank - fixed;
                VList *l = arena_alloc(&e->arena, sizeof *l);
                l->n = cnt;
                l->v = arena_alloc(&e->arena, sizeof(Value) * (size_t)(cnt ? cnt : 1));
                for (int k = 0; k < cnt; k++)
                    l->v[k] = dim_value(v->node, axis + k, sh.d[axis + k]);
                Binding *bound = scope_find(s, dx->name);
                if (bound && bound->v.k == V_LIST) {
                    if (bound->v.list->n != cnt)
                        bad = true;
                    for (int k = 0; k < cnt && !bad; k++)
                        if (!dims_equal(bound->v.list->v[k], sh.d[axis + k]))
                            bad = true;
                } else if (bind_patterns) {
                    bind(s, dx->name, (Value){.k = V_LIST, .list = l}, dx->span);
                } else {
                    bad = true;
                }
                axis += cnt;
                continue;
            }
            int64_t d = sh.d[axis];
            if (dx->kind == AST_NAME) {
                Binding *bound = scope_find(s, dx->name);
                bool known = bound || (s->self && member_find(s->self, dx->name));
                if (!known && !module_lookup(s->mod, dx->name, NULL, NULL)) {
                    if (bind_patterns)
                        bind(s, dx->name, dim_value(v->node, axis, d), dx->span);
                    else
                        bad = true;
                    axis++;
                    continue;
                }
            }
            Value want_v = ev(e, s, dx);
            if (want_v.k == V_ERR)
                return false;
            if (want_v.k == V_DIM || want_v.k == V_NUM) {
                if (!dims_equal(want_v, d))
                    bad = true;
            } else {
                int64_t x;
                if (!to_int(e, want_v, dx->span, "a dimension", &x))
                    return false;
                if (x != d)
                    bad = true;
            }
            axis++;
        }
        if (bad) {
            /* describe the expected shape with what is bound so far: [*S, C] with S
             * bound to [B, 1] and C to 10 reads [B, 1, 10] */
            StrBuf b = {0};
            sb_putc(&b, '[');
            int shown = 0;
            for (int i = 0; i < type->list.n; i++) {
                const Ast *dx = type->list.v[i];
                Binding *bound = dx->kind == AST_NAME ? scope_find(s, dx->name) : NULL;
                if (bound && bound - s->b.v >= nbound)
                    bound = NULL; /* bound by this very value: show the pattern */
                if (!bound && dx->kind == AST_NAME && s->self)
                    bound = member_find(s->self, dx->name);
                Value bv = bound ? bound->v : verr();
                if (dx->kind == AST_NAME && dx->op == AOP_MUL && bv.k == V_LIST) {
                    for (int k = 0; k < bv.list->n; k++) {
                        Value d = bv.list->v[k];
                        Shape one = {1, {d.k == V_DIM ? d.dim : (int64_t)d.num}};
                        const char *t = shape_str(e, &one);
                        sb_printf(&b, "%s%.*s", shown++ ? ", " : "", (int)strlen(t) - 2, t + 1);
                    }
                    continue;
                }
                if (shown++)
                    sb_puts(&b, ", ");
                if (dx->kind == AST_NAME && dx->op != AOP_MUL &&
                    (bv.k == V_DIM || (bv.k == V_NUM && bv.is_int))) {
                    Shape one = {1, {bv.k == V_DIM ? bv.dim : (int64_t)bv.num}};
                    const char *t = shape_str(e, &one);
                    sb_printf(&b, "%.*s", (int)strlen(t) - 2, t + 1);
                } else if (dx->kind == AST_NAME) {
                    if (dx->op == AOP_MUL)
                        sb_putc(&b, '*');
                    sb_puts(&b, dx->name);
                } else if (dx->kind == AST_NUM) {
                    sb_printf(&b, "%lld", (long long)dx->num);
                } else {
                    sb_puts(&b, "...");
                }
            }
            sb_putc(&b, ']');
            snprintf(want, sizeof want, "%s", b.s);
            sb_free(&b);
        }
    }
    if (!bad && type->name) {
        NndDType want_dt = strcmp(type->name, "i32") == 0 ? NND_I32
                         : strcmp(type->name, "bool") == 0 ? NND_BOOL
                         : strcmp(type->name, "f64") == 0 ? NND_F64 : NND_F32;
        if (want_dt == NND_F32 && e->p->float_dtype == NND_F64)
            want_dt = NND_F64;
        if (n->dtype != want_dt) {
            int d = pdecl ? diag_error(e->d, vspan, "'%s' must be %s, got %s", what,
                                       dtype_name(want_dt), dtype_name(n->dtype))
                          : diag_error(e->d, vspan, "the %s must be %s, got %s", what,
                                       dtype_name(want_dt), dtype_name(n->dtype));
            if (d >= 0 && want_dt == NND_I32)
                diag_label(e->d, d, "class labels are integers: convert with i32(...)");
            if (pdecl)
                diag_note(e->d, pdecl->span, "declared here");
            for (int i = e->depth - 1, k = 0; i >= 0 && k < 3; i--, k++)
                diag_note(e->d, e->frames[i].call, "in %s, called here", e->frames[i].name);
            return false;
        }
    }
    if (bad) {
        int d = pdecl ? diag_error(e->d, vspan, "'%s' has shape %s, expected %s", what,
                                   shape_str(e, &sh), want)
                      : diag_error(e->d, vspan, "the %s has shape %s, expected %s", what,
                                   shape_str(e, &sh), want);
        (void)d;
        diag_note(e->d, pdecl ? pdecl->span : type->span, "%s here", pdecl ? "declared" : "result type declared");
        for (int i = e->depth - 1, k = 0; i >= 0 && k < 3; i--, k++)
            diag_note(e->d, e->frames[i].call, "in %s, called here", e->frames[i].name);
        return false;
    }
    return true;
}

/* ---- member access and indexing ---- */

static Value ev_member(Elab *e, Scope *s, const Ast *x)
{
    Value o = ev(e, s, x->a);
    if (o.k == V_ERR)
        return o;
    if (o.k != V_LAYER)
        return eerr(e, x->span, "'.%s' needs a layer on its left, not %s", x->name, vk_name(&o));
    LayerInst *l = o.layer;
    Binding *m = member_find(l, x->name);
    if (m)
        return m->v;
    const Ast *fn = method_find(l, x->name);
    if (fn)
        return (Value){.k = V_FN, .decl = fn, .mod = l->mod, .layer = l};
    StrVec c = {0};
    for (int i = 0; i < l->members.n; i++)
        vec_push(&c, l->members.v[i].name);
    for (int i = 0; i < l->decl->list2.n; i++)
        if (l->decl->list2.v[i]->kind == AST_FN)
            vec_push(&c, l->decl->list2.v[i]->name);
    const char *best = suggest_name(x->name, c.v, c.n);
    vec_free(&c);
    int d = diag_error(e->d, x->span, "%s '%s' has no member '%s'", l->decl->op ? "model" : "layer",
                       l->decl->name, x->name);
    if (best)
        diag_label(e->d, d, "did you mean '%s'?", best);
    return verr();
}

static Value ev_index(Elab *e, Scope *s, const Ast *x)
{
    Value o = ev(e, s, x->a);
    if (o.k == V_ERR)
        return o;
    if (o.k == V_LIST && x->list.n == 1 && x->list.v[0]->kind != AST_SLICE) {
        /* an element of a list: a layer of a sequence, a number of a pair */
        int64_t k;
        const Ast *it = x->list.v[0];
        if (!to_int(e, ev(e, s, it), it->span, "an index", &k))
            return verr();
        int64_t len = o.list->n;
        if (k < -len || k >= len)
            return eerr(e, it->span, "index %lld is out of range for a list of %lld",
                        (long long)k, (long long)len);
        return o.list->v[k < 0 ? k + len : k];
    }
    NodeId n = to_node(e, o, x->a->span);
    if (!n)
        return verr();
    Shape in = nd(e, n)->shape;
    if (x->list.n > in.rank)
        return eerr(e, x->span, "too many indices: %d for a tensor of rank %d", x->list.n, in.rank);
    int64_t start[NND_MAX_RANK], step[NND_MAX_RANK];
    Shape out = in, kept = {0, {0}};
    for (int i = 0; i < in.rank; i++) {
        start[i] = 0;
        step[i] = 1;
        if (i >= x->list.n) {
            kept.d[kept.rank++] = in.d[i];
            continue;
        }
        const Ast *it = x->list.v[i];
        int64_t d = in.d[i];
        if (it->kind != AST_SLICE) {
            int64_t k;
            if (!to_int(e, ev(e, s, it), it->span, "an index", &k))
                return verr();
            if (d < 0)
                return eerr(e, it->span, "cannot index the batch dimension with a number");
            if (k < 0)
                k += d;
            if (k < 0 || k >= d)
                return eerr(e, it->span, "index %lld is out of range for a dimension of size %lld",
                            (long long)(k < 0 ? k - d : k), (long long)d);
            start[i] = k;
            out.d[i] = 1;
            continue;
        }
        int64_t b = 0, en = d, st = 1;
        if (it->c && !to_int(e, ev(e, s, it->c), it->c->span, "a slice step", &st))
            return verr();
        if (st < 1)
            return eerr(e, it->c->span, "slice steps must be positive");
        if (d < 0) {
            if (it->a || it->b || st != 1)
                return eerr(e, it->span, "the batch dimension can only be sliced whole (':')");
            kept.d[kept.rank++] = d;
            continue;
        }
        if (it->a && !to_int(e, ev(e, s, it->a), it->a->span, "a slice start", &b))
            return verr();
        if (it->b && !to_int(e, ev(e, s, it->b), it->b->span, "a slice end", &en))
            return verr();
        if (b < 0)
            b += d;
        if (en < 0)
            en += d;
        b = NND_MAX(0, NND_MIN(b, d));
        en = NND_MAX(0, NND_MIN(en, d));
        int64_t cnt = en > b ? (en - b + st - 1) / st : 0;
        if (cnt == 0)
            return eerr(e, it->span, "this slice is empty");
        start[i] = b;
        step[i] = st;
        out.d[i] = cnt;
        kept.d[kept.rank++] = cnt;
    }
    uint32_t pool = (uint32_t)e->g->ipool.n;
    for (int i = 0; i < in.rank; i++)
        vec_push(&e->g->ipool, start[i]);
    for (int i = 0; i < in.rank; i++)
        vec_push(&e->g->ipool, step[i]);
    NodeId r = mk(e, (Node){.op = OP_SLICE, .nin = 1, .in = {n}, .shape = out, .pool = pool},
                  x->span);
    if (!r)
        return verr();
    return vnode(gb_reshape(e->g, r, &kept, x->span));
}

/* ---- expressions ---- */

static Value ev(Elab *e, Scope *s, const Ast *x)
{
    switch (x->kind) {
    case AST_NUM: {
        Value v = vfloat(x->num);
        v.is_int = x->is_int;
        return v;
    }
    case AST_STR:
        return vstr(x->name);
    case AST_BOOL:
        return vbool(x->num != 0);
    case AST_NAME:
        return lookup(e, s, x->name, x->span);
    case AST_UNARY:
        return unop(e, x->op == AOP_NEG ? OP_NEG : OP_NOT, ev(e, s, x->a), x->span);
    case AST_BINARY: {
        Value a = ev(e, s, x->a), b = ev(e, s, x->b);
        if (x->op == AOP_MATMUL)
            return matmul(e, a, b, x->span);
        return binop(e, binop_id(x->op), a, b, x->span);
    }
    case AST_IF: {
        Value c = ev(e, s, x->a);
        if (c.k == V_ERR)
            return c;
        if (c.k == V_NUM) /* known now: only the branch taken is elaborated */
            return ev(e, s, c.num != 0 ? x->b : x->c);
        return select3(e, c, ev(e, s, x->b), ev(e, s, x->c), x->span);
    }
    case AST_CALL: {
        const char *saved = e->bind_path;
        e->bind_path = NULL;
        Value callee = x->a->kind == AST_MEMBER ? ev_member(e, s, x->a) : ev(e, s, x->a);
        Args args;
        const char *list_path = callee.k == V_DECL && callee.decl->kind == AST_LAYER ? saved : NULL;
        bool ok = eval_args(e, s, &x->list, &args, list_path);
        e->bind_path = saved;
        if (!ok || callee.k == V_ERR)
            return verr();
        Value r = call_value(e, callee, &args, x->span,
                             x->a->kind == AST_NAME ? x->a->name : NULL);
        args_free(&args);
        return r;
    }
    case AST_MEMBER:
        return ev_member(e, s, x);
    case AST_INDEX:
        return ev_index(e, s, x);
    case AST_LIST: {
        /* layers created in a list being bound are named by position: body.0 */
        const char *path = e->bind_path;
        VList *l = arena_alloc(&e->arena, sizeof *l);
        l->n = x->list.n;
        l->v = arena_alloc(&e->arena, sizeof(Value) * (size_t)(l->n ? l->n : 1));
        for (int i = 0; i < l->n; i++) {
            e->bind_path = path ? join_path(e, path, arena_printf(&e->arena, "%d", i)) : NULL;
            l->v[i] = ev(e, s, x->list.v[i]);
            e->bind_path = NULL;
            if (l->v[i].k == V_ERR)
                return verr();
        }
        e->bind_path = path;
        return (Value){.k = V_LIST, .list = l};
    }
    default:
        return eerr(e, x->span, "this is not an expression");
    }
}

/* ---- built-in functions ---- */

/* The argument for parameter i of builtin id, or NULL. */
static Value *barg(Args *a, int id, int i)
{
    int k = arg_find(a, builtin_info[id].params[i], i);
    return k >= 0 ? &a->v[k] : NULL;
}

static Span bspan(Args *a, int id, int i, Span dflt)
{
    int k = arg_find(a, builtin_info[id].params[i], i);
    return k >= 0 ? a->span[k] : dflt;
}

/* Axis set from an `axis` argument (number or list; negative counts from the end);
 * no argument: every axis. */
static bool axes_mask(Elab *e, Value *axis, Span span, int rank, uint32_t *mask)
{
    if (!axis) {
        *mask = rank ? (1u << rank) - 1 : 0;
        return true;
    }
    *mask = 0;
    int n = axis->k == V_LIST ? axis->list->n : 1;
    for (int i = 0; i < n; i++) {
        Value a = axis->k == V_LIST ? axis->list->v[i] : *axis;
        int64_t k;
        if (!to_int(e, a, span, "an axis", &k))
            return false;
        if (k < -rank || k >= rank) {
            eerr(e, span, "axis %lld is out of range for a tensor of rank %d", (long long)k, rank);
            return false;
        }
        if (k < 0)
            k += rank;
        *mask |= 1u << k;
    }
    return true;
}

static bool bool_arg(Elab *e, Value *v, Span span, const char *what, bool dflt, bool *out)
{
    if (!v) {
        *out = dflt;
        return true;
    }
    double x;
    if (!to_number(e, *v, span, what, &x))
        return false;
    *out = x != 0;
    return true;
}

static NodeId float_node(Elab *e, Value v, Span span)
{
    NodeId n = to_node(e, v, span);
    if (n && !dtype_is_float(nd(e, n)->dtype))
        n = gb_cast(e->g, n, e->p->float_dtype, span);
    return n;
}

static Value reduce(Elab *e, int id, OpId op, Args *a, Span span)
{
    Value *x = barg(a, id, 0);
    NodeId n = op == OP_SUM || op == OP_RMAX ? to_node(e, *x, span) : float_node(e, *x, span);
    if (!n)
        return verr();
    if (nd(e, n)->dtype == NND_BOOL)
        n = gb_cast(e->g, n, e->p->float_dtype, span);
    int axis_i = id == BI_MIN || id == BI_MAX ? 2 : 1;
    uint32_t mask;
    bool keep;
    if (!axes_mask(e, barg(a, id, axis_i), bspan(a, id, axis_i, span), nd(e, n)->shape.rank, &mask) ||
        !bool_arg(e, barg(a, id, axis_i + 1), span, "keepdims", false, &keep))
        return verr();
    return vnode(mk(e, (Node){.op = (uint8_t)op, .nin = 1, .in = {n}, .mask = mask, .keep = keep},
                    span));
}

/* A pair of integers (height, width) from a number or a two-element list; dflt when
 * the argument is absent. */
static bool int_pair(Elab *e, Value *v, Span span, const char *what, int64_t dflt, int64_t lo,
                     int64_t out[2])
{
    out[0] = out[1] = dflt;
    if (!v)
        return true;
    if (v->k == V_LIST) {
        if (v->list->n != 2) {
            eerr(e, span, "%s takes one number or two, [height, width]", what);
            return false;
        }
        for (int i = 0; i < 2; i++)
            if (!to_int(e, v->list->v[i], span, what, &out[i]))
                return false;
    } else if (!to_int(e, *v, span, what, &out[0])) {
        return false;
    } else {
        out[1] = out[0];
    }
    for (int i = 0; i < 2; i++)
        if (out[i] < lo || out[i] > (1 << 20)) {
            eerr(e, span, "%s is %lld; it must be at least %lld", what, (long long)out[i],
                 (long long)lo);
            return false;
        }
    return true;
}

static Value conv2d(Elab *e, Args *a, Span span)
{
    int id = BI_CONV2D;
    NodeId x = float_node(e, *barg(a, id, 0), bspan(a, id, 0, span));
    NodeId w = float_node(e, *barg(a, id, 1), bspan(a, id, 1, span));
    if (!x || !w)
        return verr();
    if (nd(e, x)->shape.rank != 4 || nd(e, w)->shape.rank != 4)
        return eerr(e, span, "conv2d takes x as [N, C, H, W] and w as [out, C / groups, kh, kw], "
                             "got %s and %s", shape_str(e, &nd(e, x)->shape),
                    shape_str(e, &nd(e, w)->shape));
    int64_t st[2], pd[2], dl[2], groups = 1;
    if (!int_pair(e, barg(a, id, 2), bspan(a, id, 2, span), "stride", 1, 1, st) ||
        !int_pair(e, barg(a, id, 4), bspan(a, id, 4, span), "dilation", 1, 1, dl))
        return verr();
    Value *pv = barg(a, id, 3);
    if (pv && pv->k == V_STR) {
        /* "valid": none; "same": the output keeps the input's size (stride 1) */
        if (strcmp(pv->str, "valid") == 0) {
            pd[0] = pd[1] = 0;
        } else if (strcmp(pv->str, "same") == 0) {
            if (st[0] != 1 || st[1] != 1)
                return eerr(e, bspan(a, id, 3, span), "padding = \"same\" needs stride 1");
            for (int i = 0; i < 2; i++) {
                int64_t total = dl[i] * (nd(e, w)->shape.d[2 + i] - 1);
                if (total % 2)
                    return eerr(e, bspan(a, id, 3, span),
                                "padding = \"same\" needs an odd kernel (times dilation): it "
                                "would pad one side more than the other");
                pd[i] = total / 2;
            }
        } else {
            return eerr(e, bspan(a, id, 3, span), "padding is a number, a pair, \"same\" or "
                                                  "\"valid\", not \"%s\"", pv->str);
        }
    } else if (!int_pair(e, pv, bspan(a, id, 3, span), "padding", 0, 0, pd)) {
        return verr();
    }
    Value *gv = barg(a, id, 5);
    if (gv && !to_int(e, *gv, bspan(a, id, 5, span), "groups", &groups))
        return verr();
    if (groups < 1)
        return eerr(e, bspan(a, id, 5, span), "groups must be at least 1");
    int64_t ints[7] = {st[0], st[1], pd[0], pd[1], dl[0], dl[1], groups};
    if (nd(e, x)->dtype != nd(e, w)->dtype) {
        NndDType dt = dtype_rank_max((NndDType)nd(e, x)->dtype, (NndDType)nd(e, w)->dtype);
        x = gb_cast(e->g, x, dt, span);
        w = gb_cast(e->g, w, dt, span);
    }
    return vnode(mk(e, (Node){.op = OP_CONV2D, .nin = 2, .in = {x, w},
                              .pool = graph_pool_ints(e->g, ints, 7)}, span));
}

static Value pool2d(Elab *e, int id, Args *a, Span span)
{
    NodeId x = float_node(e, *barg(a, id, 0), bspan(a, id, 0, span));
    if (!x)
        return verr();
    if (nd(e, x)->shape.rank != 4)
        return eerr(e, span, "%s takes x as [N, C, H, W], got %s", builtin_info[id].name,
                    shape_str(e, &nd(e, x)->shape));
    int64_t k[2], st[2], pd[2];
    if (!int_pair(e, barg(a, id, 1), bspan(a, id, 1, span), "kernel", 1, 1, k) ||
        !int_pair(e, barg(a, id, 2), bspan(a, id, 2, span), "stride", 1, 1, st) ||
        !int_pair(e, barg(a, id, 3), bspan(a, id, 3, span), "padding", 0, 0, pd))
        return verr();
    if (!barg(a, id, 2))
        st[0] = k[0], st[1] = k[1];
    if (2 * pd[0] > k[0] || 2 * pd[1] > k[1])
        return eerr(e, bspan(a, id, 3, span), "padding must be at most half the kernel");
    int64_t ints[6] = {k[0], k[1], st[0], st[1], pd[0], pd[1]};
    uint32_t pool = graph_pool_ints(e->g, ints, 6);
    if (id == BI_MAX_POOL2D)
        return vnode(mk(e, (Node){.op = OP_POOLMAX, .nin = 2, .in = {x, x}, .pool = pool}, span));
    return vnode(mk(e, (Node){.op = OP_POOLAVG, .nin = 1, .in = {x}, .pool = pool}, span));
}

static bool str_arg(Elab *e, Value *v, Span span, const char *what, const char **out);

static Value builtin_call(Elab *e, int id, Args *a, Span span)
{
    const BuiltinInfo *bi = &builtin_info[id];
    /* arity and keywords, for calls sema could not see */
    for (int i = 0; i < a->n; i++) {
        if (a->kw[i]) {
            bool found = false;
            for (int j = 0; j < bi->nparams; j++)
                found |= strcmp(bi->params[j], a->kw[i]) == 0;
            if (!found)
                return eerr(e, a->span[i], "'%s' has no parameter '%s'", bi->name, a->kw[i]);
        }
    }
    for (int i = 0; i < bi->required; i++)
        if (!barg(a, id, i))
            return eerr(e, span, "missing argument '%s' in call to '%s'", bi->params[i], bi->name);
    if (bi->ctx == BCTX_INIT && !e->in_init) {
        /* outside an initializer, a call with arguments is an initializer to pass on:
         * Dense(8, 8, init = orthogonal(gain = 2)); it draws when a parameter uses it */
        if (a->n == 0)
            return eerr(e, span, "'%s' draws a parameter's initial values; it can only be used "
                                 "in a parameter initializer", bi->name);
        Args *copy = arena_alloc(&e->arena, sizeof *copy);
        *copy = *a;
        return (Value){.k = V_BUILTIN, .builtin = id, .args = copy};
    }
    if (bi->ctx == BCTX_DATA)
        return eerr(e, span, "'%s' describes a data set; it can only be used in a `data` statement",
                    bi->name);
    Value *x = barg(a, id, 0);
    switch ((BuiltinId)id) {
    case BI_EXP: return unop(e, OP_EXP, *x, span);
    case BI_LOG: return unop(e, OP_LOG, *x, span);
    case BI_SQRT: return unop(e, OP_SQRT, *x, span);
    case BI_RSQRT: return unop(e, OP_RSQRT, *x, span);
    case BI_ABS: return unop(e, OP_ABS, *x, span);
    case BI_SIGN: return unop(e, OP_SIGN, *x, span);
    case BI_TANH: return unop(e, OP_TANH, *x, span);
    case BI_SIGMOID: return unop(e, OP_SIGMOID, *x, span);
    case BI_RELU: return unop(e, OP_RELU, *x, span);
    case BI_SIN: return unop(e, OP_SIN, *x, span);
    case BI_COS: return unop(e, OP_COS, *x, span);
    case BI_FLOOR: return unop(e, OP_FLOOR, *x, span);
    case BI_MIN:
    case BI_MAX: {
        Value *b = barg(a, id, 1);
        if (b) {
            if (barg(a, id, 2) || barg(a, id, 3))
                return eerr(e, span, "%s(a, b) is elementwise: it takes no axis", bi->name);
            return binop(e, id == BI_MIN ? OP_MIN : OP_MAX, *x, *b, span);
        }
        if (x->k == V_NUM)
            return *x;
        if (id == BI_MAX)
            return reduce(e, id, OP_RMAX, a, span);
        /* min over axes = -max(-x) */
        Value neg = unop(e, OP_NEG, *x, span);
        Args b2 = *a;
        int k = arg_find(a, "a", 0);
        b2.v[k] = neg;
        return unop(e, OP_NEG, reduce(e, id, OP_RMAX, &b2, span), span);
    }
    case BI_SUM: return reduce(e, id, OP_SUM, a, span);
    case BI_MEAN: return reduce(e, id, OP_MEAN, a, span);
    case BI_LOGSUMEXP: return reduce(e, id, OP_LOGSUMEXP, a, span);
    case BI_NORM:
    case BI_RMS: {
        Value sq = binop(e, OP_MUL, *x, *x, span);
        Args b2 = *a;
        b2.v[arg_find(a, "x", 0)] = sq;
        return unop(e, OP_SQRT, reduce(e, id, id == BI_NORM ? OP_SUM : OP_MEAN, &b2, span), span);
    }
    case BI_ARGMAX: {
        NodeId n = to_node(e, *x, span);
        if (!n)
            return verr();
        int rank = nd(e, n)->shape.rank;
        uint32_t mask;
        Value dflt = vnum(-1);
        Value *ax = barg(a, id, 1);
        bool keep;
        if (!axes_mask(e, ax ? ax : &dflt, bspan(a, id, 1, span), rank, &mask) ||
            !bool_arg(e, barg(a, id, 2), span, "keepdims", false, &keep))
            return verr();
        if (__builtin_popcount(mask) != 1)
            return eerr(e, span, "argmax takes one axis");
        return vnode(mk(e, (Node){.op = OP_ARGMAX, .nin = 1, .in = {n},
                                  .idx = __builtin_ctz(mask), .keep = keep}, span));
    }
    case BI_MATMUL: return matmul(e, *x, *barg(a, id, 1), span);
    case BI_TRANSPOSE: {
        NodeId n = to_node(e, *x, span);
        if (!n)
            return verr();
        int r = nd(e, n)->shape.rank;
        int perm[NND_MAX_RANK];
        Value *p = barg(a, id, 1);
        if (!p) {
            if (r < 2)
                return eerr(e, span, "transpose needs at least 2 axes, got rank %d", r);
            for (int i = 0; i < r; i++)
                perm[i] = i;
            perm[r - 2] = r - 1;
            perm[r - 1] = r - 2;
        } else {
            if (p->k != V_LIST || p->list->n != r)
                return eerr(e, bspan(a, id, 1, span), "perm must list all %d axes", r);
            for (int i = 0; i < r; i++) {
                int64_t k;
                if (!to_int(e, p->list->v[i], span, "an axis", &k))
                    return verr();
                perm[i] = (int)(k < 0 ? k + r : k);
            }
        }
        uint32_t pool = (uint32_t)e->g->ipool.n;
        for (int i = 0; i < r; i++)
            vec_push(&e->g->ipool, perm[i]);
        return vnode(mk(e, (Node){.op = OP_TRANSPOSE, .nin = 1, .in = {n}, .pool = pool}, span));
    }
    case BI_RESHAPE: {
        NodeId n = to_node(e, *x, span);
        Shape s;
        int minus;
        if (!n || !to_shape(e, *barg(a, id, 1), bspan(a, id, 1, span), "the new shape", &s, &minus))
            return verr();
        if (minus >= 0) {
            /* -1 stands for concrete dimensions only: the symbolic ones (the batch
             * size) must appear in the new shape as they are */
            const Shape *in = &nd(e, n)->shape;
            int64_t sa[NND_MAX_RANK], st[NND_MAX_RANK];
            int na = 0, nt = 0;
            for (int i = 0; i < in->rank; i++)
                if (in->d[i] < 0)
                    sa[na++] = in->d[i];
            for (int i = 0; i < s.rank; i++)
                if (s.d[i] < 0)
                    st[nt++] = s.d[i];
            bool same = na == nt;
            for (int i = 0; same && i < na; i++)
                same = sa[i] == st[i];
            StrBuf want = {0};
            sb_putc(&want, '[');
            for (int i = 0; i < s.rank; i++) {
                Shape one = {1, {s.d[i]}};
                const char *t = i == minus ? "[-1]" : shape_str(e, &one);
                sb_printf(&want, "%s%.*s", i ? ", " : "", (int)strlen(t) - 2, t + 1);
            }
            sb_putc(&want, ']');
            const char *ws = arena_strdup(&e->arena, want.s);
            sb_free(&want);
            if (!same)
                return eerr(e, span, "cannot reshape %s to %s: -1 cannot stand for the batch "
                                     "dimension; keep it in the new shape",
                            shape_str(e, in), ws);
            int64_t have = shape_static_numel(in, NULL);
            int64_t rest = shape_static_numel(&s, NULL);
            if (have % rest)
                return eerr(e, span, "cannot reshape %s to %s: %lld elements do not split "
                                     "into parts of %lld",
                            shape_str(e, in), ws, (long long)have, (long long)rest);
            s.d[minus] = have / rest;
        }
        return vnode(mk(e, (Node){.op = OP_RESHAPE, .nin = 1, .in = {n}, .shape = s}, span));
    }
    case BI_PICK: {
        NodeId n = float_node(e, *x, span), l = to_node(e, *barg(a, id, 1), span);
        if (!n || !l)
            return verr();
        return vnode(mk(e, (Node){.op = OP_PICK, .nin = 2, .in = {n, l}}, span));
    }
    case BI_ONE_HOT: {
        NodeId l = to_node(e, *x, span);
        int64_t depth;
        if (!l || !to_int(e, *barg(a, id, 1), bspan(a, id, 1, span), "depth", &depth))
            return verr();
        if (depth < 1 || depth > (1 << 24))
            return eerr(e, span, "one_hot depth must be between 1 and 2^24");
        return vnode(mk(e, (Node){.op = OP_ONE_HOT, .nin = 1, .in = {l}, .idx = (int32_t)depth,
                                  .dtype = (uint8_t)e->p->float_dtype}, span));
    }
    case BI_WHERE: {
        Value c = *x;
        if (c.k == V_NUM)
            return c.num != 0 ? *barg(a, id, 1) : *barg(a, id, 2);
        return select3(e, c, *barg(a, id, 1), *barg(a, id, 2), span);
    }
    case BI_SIZE: {
        NodeId n = to_node(e, *x, span);
        if (!n)
            return verr();
        uint32_t mask;
        if (!axes_mask(e, barg(a, id, 1), bspan(a, id, 1, span), nd(e, n)->shape.rank, &mask))
            return verr();
        NodeId sz = gb_dimsize(e->g, n, mask, e->p->float_dtype, span);
        if (nd(e, sz)->op == OP_CONST)
            return vnum(nd(e, sz)->num);
        return vnode(sz);
    }
    case BI_RANK: {
        if (x->k == V_NUM)
            return vnum(0);
        NodeId n = to_node(e, *x, span);
        return n ? vnum(nd(e, n)->shape.rank) : verr();
    }
    case BI_F32:
    case BI_F64:
    case BI_I32:
    case BI_FLOAT: {
        NndDType dt = id == BI_F32 ? NND_F32 : id == BI_F64 ? NND_F64 : id == BI_I32 ? NND_I32
                                                                                       : e->p->float_dtype;
        if (id == BI_F32 && e->p->float_dtype == NND_F64)
            dt = NND_F64; /* --dtype f64 makes the whole program f64 */
        if (x->k == V_NUM) {
            Value v = vfloat(dt == NND_I32 ? trunc(x->num) : x->num);
            v.is_int = dt == NND_I32 || (x->is_int && !x->is_bool);
            return v;
        }
        NodeId n = to_node(e, *x, span);
        if (!n)
            return verr();
        return vnode(gb_cast(e->g, n, dt, span));
    }
    case BI_GRAD: {
        Value *wrt = barg(a, id, 1);
        NodeId f = to_node(e, *x, span);
        if (!f)
            return verr();
        if (wrt->k == V_LAYER)
            return eerr(e, bspan(a, id, 1, span),
                        "grad is taken with respect to a tensor; name a parameter like net.fc1.W");
        if (wrt->k != V_NODE)
            return eerr(e, bspan(a, id, 1, span), "grad needs a tensor to differentiate by, not %s",
                        vk_name(wrt));
        Node *fn = nd(e, f);
        if (fn->shape.rank != 0)
            return eerr(e, span, "grad needs a scalar function, got shape %s; reduce it with sum() "
                                 "or mean()", shape_str(e, &fn->shape));
        if (!dtype_is_float(fn->dtype) || !dtype_is_float(nd(e, wrt->node)->dtype))
            return eerr(e, span, "grad needs float tensors");
        NodeId out;
        autodiff(e->g, f, &wrt->node, 1, &out);
        return vnode(out);
    }
    case BI_L1:
    case BI_L2: {
        if (x->k != V_LAYER && x->k != V_LIST && !(x->k == V_NODE && nd(e, x->node)->op == OP_PARAM))
            return eerr(e, span, "%s takes a model, a layer or a parameter, not %s", bi->name,
                        vk_name(x));
        /* only / exclude: shell patterns on the parameters' names ("*.b": biases) */
        const char *only = NULL, *exclude = NULL;
        if ((barg(a, id, 1) && !str_arg(e, barg(a, id, 1), bspan(a, id, 1, span), "only", &only)) ||
            (barg(a, id, 2) && !str_arg(e, barg(a, id, 2), bspan(a, id, 2, span), "exclude", &exclude)))
            return verr();
        IntVec ps = {0};
        value_params(e, x, &ps, 0);
        NodeId total = 0;
        int kept = 0;
        for (int i = 0; i < ps.n; i++) {
            const char *pname = e->p->params.v[ps.v[i]].name;
            if ((only && fnmatch(only, pname, 0) != 0) || (exclude && fnmatch(exclude, pname, 0) == 0))
                continue;
            kept++;
            NodeId p = e->p->params.v[ps.v[i]].node;
            NodeId t = id == BI_L1 ? gb_unary(e->g, OP_ABS, p, span) : gb_binary(e->g, OP_MUL, p, p, span);
            int r = nd(e, t)->shape.rank;
            t = gb_reduce(e->g, OP_SUM, t, r ? (1u << r) - 1 : 0, false, span);
            t = gb_cast(e->g, t, e->p->float_dtype, span);
            total = total ? gb_binary(e->g, OP_ADD, total, t, span) : t;
        }
        if (ps.n && !kept)
            eerr(e, span, "%s: no parameter's name matches%s%s%s%s", bi->name, only ? " only = " : "",
                 only ? only : "", exclude ? ", or all match exclude = " : "", exclude ? exclude : "");
        vec_free(&ps);
        if (!total)
            return vnum(0);
        return vnode(total);
    }
    case BI_CONV2D: return conv2d(e, a, span);
    case BI_MAX_POOL2D:
    case BI_AVG_POOL2D: return pool2d(e, id, a, span);
    case BI_CONCAT: {
        if (x->k != V_LIST || x->list->n < 1)
            return eerr(e, bspan(a, id, 0, span), "concat takes a list of tensors: concat([a, b], axis = 1)");
        int64_t axis = 0;
        Value *av = barg(a, id, 1);
        if (av && !to_int(e, *av, bspan(a, id, 1, span), "the axis", &axis))
            return verr();
        NodeId acc = 0;
        for (int i = 0; i < x->list->n; i++) {
            NodeId n = to_node(e, x->list->v[i], span);
            if (!n)
                return verr();
            int r = nd(e, n)->shape.rank;
            int64_t ax = axis < 0 ? axis + r : axis;
            if (ax < 0 || ax >= r)
                return eerr(e, span, "axis %lld is out of range for a tensor of rank %d",
                            (long long)axis, r);
            if (!acc) {
                acc = n;
                continue;
            }
            NndDType dt = dtype_rank_max((NndDType)nd(e, acc)->dtype, (NndDType)nd(e, n)->dtype);
            acc = gb_cast(e->g, acc, dt, span);
            n = gb_cast(e->g, n, dt, span);
            acc = mk(e, (Node){.op = OP_CONCAT, .nin = 2, .in = {acc, n}, .idx = (int32_t)ax}, span);
            if (!acc)
                return verr();
        }
        return vnode(acc);
    }
    case BI_TAKE: {
        NodeId t = float_node(e, *x, bspan(a, id, 0, span));
        NodeId i = to_node(e, *barg(a, id, 1), bspan(a, id, 1, span));
        if (!t || !i)
            return verr();
        return vnode(mk(e, (Node){.op = OP_TAKE, .nin = 2, .in = {t, i}}, span));
    }
    case BI_RAND_LIKE: {
        NodeId n = to_node(e, *x, span);
        if (!n)
            return verr();
        HyperInfo *h = &e->p->hypers.v[e->p->hyper_step];
        /* f64: the step stays exact (an f32 count would repeat masks past 2^24) */
        NodeId step = graph_append(e->g, &(Node){.op = OP_HYPER, .dtype = NND_F64,
                                                 .idx = e->p->hyper_step, .name = h->name,
                                                 .span = span});
        if (e->p->accumulate > 1) {
            /* each micro-batch of an update draws its own numbers: the counter is
             * step * k + the micro-batch's place */
            HyperInfo *hm = &e->p->hypers.v[e->p->hyper_micro];
            NodeId micro = graph_append(e->g, &(Node){.op = OP_HYPER, .dtype = NND_F64, .idx = e->p->hyper_micro,
                                                      .name = hm->name, .span = span});
            NodeId k = gb_const(e->g, (double)e->p->accumulate, NND_F64, span);
            step = gb_binary(e->g, OP_ADD, gb_binary(e->g, OP_MUL, step, k, span), micro, span);
        }
        NndDType dt = dtype_is_float(nd(e, n)->dtype) ? (NndDType)nd(e, n)->dtype : e->p->float_dtype;
        uint64_t key = nnd_stream_of("rand_like") + (uint64_t)e->rand_draws++ * 0x100000001B3ull;
        return vnode(mk(e, (Node){.op = OP_RANDSTEP, .nin = 1, .in = {step},
                                  .shape = nd(e, n)->shape, .dtype = (uint8_t)dt, .key = key,
                                  .num = (double)e->p->seed}, span));
    }
    case BI_PAIR: {
        int64_t v[2];
        if (!int_pair(e, x, bspan(a, id, 0, span), "pair", 0, INT64_MIN / 2, v))
            return verr();
        VList *l = arena_alloc(&e->arena, sizeof *l);
        l->n = 2;
        l->v = arena_alloc(&e->arena, 2 * sizeof(Value));
        l->v[0] = vnum((double)v[0]);
        l->v[1] = vnum((double)v[1]);
        return (Value){.k = V_LIST, .list = l};
    }
    case BI_SEQUENTIAL: {
        if (x->k != V_LIST)
            return eerr(e, bspan(a, id, 0, span), "sequential takes a list of layers and functions, "
                                                  "not %s", vk_name(x));
        Value v = *barg(a, id, 1);
        for (int i = 0; i < x->list->n && v.k != V_ERR; i++) {
            Args one = {.n = 1};
            one.v[0] = v;
            one.span[0] = span;
            v = call_value(e, x->list->v[i], &one, span, NULL);
        }
        return v;
    }
    case BI_ORTHOGONAL: {
        Value *gv = barg(a, id, 0);
        NodeId gain = float_node(e, gv ? *gv : vnum(1), span);
        if (!gain)
            return verr();
        gain = gb_cast(e->g, gain, e->init_dtype, span);
        uint64_t key = nnd_stream_of(e->init_name) + (uint64_t)e->init_draws++;
        return vnode(mk(e, (Node){.op = OP_ORTHO, .nin = 1, .in = {gain}, .shape = e->init_shape,
                                  .dtype = (uint8_t)e->init_dtype, .key = key}, span));
    }
    case BI_UNIFORM:
    case BI_NORMAL: {
        Value *lo = barg(a, id, 0), *hi = barg(a, id, 1);
        Value l = lo ? *lo : vnum(id == BI_UNIFORM ? 0 : 0), h = hi ? *hi : vnum(1);
        NodeId nl = float_node(e, l, span), nh = float_node(e, h, span);
        if (!nl || !nh)
            return verr();
        nl = gb_cast(e->g, nl, e->init_dtype, span);
        nh = gb_cast(e->g, nh, e->init_dtype, span);
        if (nd(e, nl)->shape.rank || nd(e, nh)->shape.rank)
            return eerr(e, span, "%s takes scalar arguments", bi->name);
        uint64_t key = nnd_stream_of(e->init_name) + (uint64_t)e->init_draws++;
        return vnode(mk(e, (Node){.op = (uint8_t)(id == BI_UNIFORM ? OP_RANDU : OP_RANDN), .nin = 2,
                                  .in = {nl, nh}, .shape = e->init_shape,
                                  .dtype = (uint8_t)e->init_dtype, .key = key}, span));
    }
    default:
        return eerr(e, span, "'%s' cannot be used here", bi->name);
    }
}

/* ---- the train block ---- */

/* A data path relative to the .nnd file, in the program's arena.  It is joined to
 * the file's path as the user gave it, so messages show paths as they were written. */
static const char *resolve_path(Elab *e, Module *m, const char *path)
{
    const SourceFile *f = source_map_get(&e->fe->sm, m->file);
    const char *base = f ? f->path : m->path;
    const char *slash = strrchr(base, '/');
    if (path[0] == '/' || !slash)
        return arena_strdup(&e->p->arena, path);
    return arena_printf(&e->p->arena, "%.*s/%s", (int)(slash - base), base, path);
}

static bool str_arg(Elab *e, Value *v, Span span, const char *what, const char **out)
{
    if (!v) {
        *out = NULL;
        return true;
    }
    if (v->k == V_ERR)
        return false;
    if (v->k != V_STR) {
        eerr(e, span, "%s must be a string, not %s", what, vk_name(v));
        return false;
    }
    *out = v->str;
    return true;
}

static void tensor_shape_to(const NndTensor *t, int *rank, int64_t *shape)
{
    *rank = t->rank - 1;
    for (int i = 1; i < t->rank; i++)
        shape[i - 1] = t->shape[i];
}

/* Fills a data set's per-sample shapes from the files' headers (or the data).
 * span_x and span_y are where the inputs' and the labels' files are named. */
static bool data_describe(Elab *e, DataSet *ds, Span span, Span span_x, Span span_y)
{
    NndLoadOptions lo = {ds->scale, e->p->float_dtype};
    NndTensor x = {0}, y = {0};
    NndErr err;
    bool ok = true;
    switch (ds->kind) {
    case DATA_IDX:
        ok = nnd_idx_probe(ds->path_x, NND_FEATURES, &lo, &x, &err) == 0;
        if (ok && nnd_idx_probe(ds->path_y, NND_LABELS, &lo, &y, &err) != 0)
            ok = false, span_x = span_y;
        break;
    case DATA_NPY:
        ok = nnd_npy_probe(ds->path_x, NND_FEATURES, &lo, &x, &err) == 0;
        if (ok && nnd_npy_probe(ds->path_y, NND_LABELS, &lo, &y, &err) != 0)
            ok = false, span_x = span_y;
        break;
    case DATA_CSV:
        ok = nnd_csv_load(ds->path_x, ds->label, ds->classes, &lo, &ds->x, &ds->y, &err) == 0;
        x = ds->x;
        y = ds->y;
        break;
    case DATA_TENSORS:
        x = ds->x;
        y = ds->y;
        break;
    }
    if (!ok) {
        eerr(e, span_x, "%s", err.msg);
        return false;
    }
    if (x.rank < 1 || y.rank < 1) {
        eerr(e, span, "a data set needs at least one sample axis");
        return false;
    }
    if (x.shape[0] != y.shape[0]) {
        eerr(e, span, "the data set's inputs have %lld samples but its labels %lld",
             (long long)x.shape[0], (long long)y.shape[0]);
        return false;
    }
    ds->n = x.shape[0];
    ds->x_dtype = x.dtype;
    ds->y_dtype = y.dtype;
    tensor_shape_to(&x, &ds->x_rank, ds->x_shape);
    tensor_shape_to(&y, &ds->y_rank, ds->y_shape);
    if (ds->reshape_rank >= 0) {
        int64_t have = 1, want = 1;
        for (int i = 0; i < ds->x_rank; i++)
            have *= ds->x_shape[i];
        for (int i = 0; i < ds->reshape_rank; i++)
            want *= ds->reshape[i];
        if (have != want) {
            Shape hs = shape_make(ds->x_rank, ds->x_shape), ws = shape_make(ds->reshape_rank, ds->reshape);
            eerr(e, span, "cannot reshape samples of shape %s to %s", shape_str(e, &hs),
                 shape_str(e, &ws));
            return false;
        }
        ds->x_rank = ds->reshape_rank;
        memcpy(ds->x_shape, ds->reshape, sizeof ds->reshape);
    }
    if (ds->n < 1) {
        eerr(e, span, "the data set is empty");
        return false;
    }
    return true;
}

/* subset = [5, 6, 7]: keeps the samples labeled 5, 6 or 7 and relabels them 0, 1, 2.
 * The labels are read now, to know how many samples there are. */
static bool data_subset(Elab *e, DataSet *ds, Value *v, Span span)
{
    if (v->k != V_LIST || v->list->n < 1) {
        eerr(e, span, "subset takes a list of class labels, like [5, 6, 7, 8, 9]");
        return false;
    }
    if (ds->y_dtype != NND_I32 || ds->y_rank != 0) {
        eerr(e, span, "subset needs integer class labels, one per sample");
        return false;
    }
    ds->nsubset = v->list->n;
    ds->subset = arena_alloc(&e->p->arena, sizeof(int32_t) * (size_t)ds->nsubset);
    for (int i = 0; i < ds->nsubset; i++) {
        int64_t c;
        if (!to_int(e, v->list->v[i], span, "a class label", &c))
            return false;
        for (int j = 0; j < i; j++)
            if (ds->subset[j] == c) {
                eerr(e, span, "class %lld is listed twice", (long long)c);
                return false;
            }
        ds->subset[i] = (int32_t)c;
    }
    NndLoadOptions lo = {ds->scale, e->p->float_dtype};
    NndErr err;
    int rc = ds->kind == DATA_IDX ? nnd_idx_load(ds->path_y, NND_LABELS, &lo, &ds->y, &err)
                                  : nnd_npy_load(ds->path_y, NND_LABELS, &lo, &ds->y, &err);
    if (rc) {
        eerr(e, span, "%s", err.msg);
        return false;
    }
    int64_t count = 0;
    for (int64_t i = 0; i < ds->n; i++)
        for (int j = 0; j < ds->nsubset; j++)
            count += ((int32_t *)ds->y.data)[i] == ds->subset[j];
    if (count == 0) {
        eerr(e, span, "no sample has one of these labels");
        return false;
    }
    ds->n = count;
    return true;
}

/* tensors(x = ..., y = ...): literal data evaluated now. */
static bool data_literal(Elab *e, Value v, Span span, bool labels, NndTensor *out)
{
    NodeId n = to_node(e, v, span);
    if (!n)
        return false;
    if (depends_on_data(e, n)) {
        eerr(e, span, "data must be known at compile time");
        return false;
    }
    if (!labels && !dtype_is_float(nd(e, n)->dtype))
        n = gb_cast(e->g, n, e->p->float_dtype, span);
    ITensor t;
    char err[256];
    DoubleVec hv = {0};
    for (int i = 0; i < e->p->hypers.n; i++)
        vec_push(&hv, e->p->hypers.v[i].value);
    bool ok = interp_eval_const(e->g, n, hv.v, hv.n, &t, err, sizeof err);
    vec_free(&hv);
    if (!ok) {
        eerr(e, span, "%s", err);
        return false;
    }
    if (t.rank < 1) {
        itensor_free(&t);
        eerr(e, span, "data needs a sample axis: a list of samples");
        return false;
    }
    NndDType dt = t.dtype == NND_BOOL ? NND_I32 : t.dtype;
    NndErr nerr;
    if (nnd_tensor_alloc(out, dt, t.rank, t.shape, &nerr) != 0) {
        itensor_free(&t);
        eerr(e, span, "%s", nerr.msg);
        return false;
    }
    for (int64_t i = 0; i < t.n; i++) {
        if (dt == NND_F32)
            ((float *)out->data)[i] = (float)t.v[i];
        else if (dt == NND_F64)
            ((double *)out->data)[i] = t.v[i];
        else
            ((int32_t *)out->data)[i] = (int32_t)t.v[i];
    }
    itensor_free(&t);
    return true;
}

static void elab_data(Elab *e, Scope *s, Module *m, const Ast *st)
{
    DataSet ds = {0};
    ds.name = st->name;
    ds.span = st->span;
    ds.scale = 1;
    ds.reshape_rank = -1;
    const Ast *src = st->a;
    int id = src->kind == AST_CALL && src->a->kind == AST_NAME ? builtin_find(src->a->name) : -1;
    if (id < 0 || builtin_info[id].ctx != BCTX_DATA) {
        eerr(e, src->span, "a data set comes from idx(...), csv(...), npy(...) or tensors(...)");
        return;
    }
    Args a;
    if (!eval_args(e, s, &src->list, &a, NULL))
        return;
    for (int i = 0; i < a.n; i++)
        if (a.kw[i]) {
            bool found = false;
            for (int j = 0; j < builtin_info[id].nparams; j++)
                found |= strcmp(builtin_info[id].params[j], a.kw[i]) == 0;
            if (!found) {
                eerr(e, a.span[i], "'%s' has no parameter '%s'", builtin_info[id].name, a.kw[i]);
                return;
            }
        }
    for (int i = 0; i < builtin_info[id].required; i++)
        if (!barg(&a, id, i)) {
            eerr(e, src->span, "missing argument '%s'", builtin_info[id].params[i]);
            return;
        }
    Value *scale = NULL, *shape = NULL;
    bool ok = true;
    switch ((BuiltinId)id) {
    case BI_IDX:
    case BI_NPY:
        ds.kind = id == BI_IDX ? DATA_IDX : DATA_NPY;
        ok = str_arg(e, barg(&a, id, 0), bspan(&a, id, 0, src->span), "the inputs' path", &ds.path_x) &&
             str_arg(e, barg(&a, id, 1), bspan(&a, id, 1, src->span), "the labels' path", &ds.path_y);
        scale = barg(&a, id, 2);
        shape = barg(&a, id, 3);
        if (ok) {
            ds.path_x = resolve_path(e, m, ds.path_x);
            ds.path_y = resolve_path(e, m, ds.path_y);
        }
        break;
    case BI_CSV: {
        ds.kind = DATA_CSV;
        ok = str_arg(e, barg(&a, id, 0), bspan(&a, id, 0, src->span), "the path", &ds.path_x) &&
             str_arg(e, barg(&a, id, 1), bspan(&a, id, 1, src->span), "the label column", &ds.label) &&
             bool_arg(e, barg(&a, id, 2), src->span, "classes", false, &ds.classes);
        scale = barg(&a, id, 3);
        if (ok)
            ds.path_x = resolve_path(e, m, ds.path_x);
        if (ok && ds.label)
            ds.label = arena_strdup(&e->p->arena, ds.label);
        break;
    }
    case BI_TENSORS:
        ds.kind = DATA_TENSORS;
        ok = data_literal(e, *barg(&a, id, 0), bspan(&a, id, 0, src->span), false, &ds.x) &&
             data_literal(e, *barg(&a, id, 1), bspan(&a, id, 1, src->span), true, &ds.y);
        break;
    default:
        ok = false;
        break;
    }
    if (ok && scale)
        ok = to_number(e, *scale, src->span, "scale", &ds.scale);
    if (ok && shape) {
        Shape sh;
        ok = to_shape(e, *shape, src->span, "the sample shape", &sh, NULL);
        if (ok) {
            ds.reshape_rank = sh.rank;
            memcpy(ds.reshape, sh.d, sizeof sh.d);
        }
    }
    if (ok)
        ok = data_describe(e, &ds, src->span, bspan(&a, id, 0, src->span),
                           id == BI_CSV ? src->span : bspan(&a, id, 1, src->span));
    Value *sub = (id == BI_IDX || id == BI_NPY) ? barg(&a, id, 4) : NULL;
    if (ok && sub)
        ok = data_subset(e, &ds, sub, bspan(&a, id, 4, src->span));
    Value *lim = (id == BI_IDX || id == BI_NPY) ? barg(&a, id, 5) : NULL;
    if (ok && lim) {
        ok = to_int(e, *lim, bspan(&a, id, 5, src->span), "limit", &ds.limit);
        if (ok && ds.limit < 1) {
            eerr(e, bspan(&a, id, 5, src->span), "limit must be at least 1");
            ok = false;
        }
        if (ok && ds.limit < ds.n)
            ds.n = ds.limit;
    }
    if (!ok) {
        nnd_tensor_free(&ds.x);
        nnd_tensor_free(&ds.y);
        return;
    }
    vec_push(&e->p->data, ds);
}

static double setting_number(Elab *e, Scope *s, const Ast *st, const char *name, double dflt,
                             bool *found)
{
    Override *o = find_override(e, name);
    if (o) {
        o->used = true;
        if (!o->is_number) {
            eerr(e, span_none(), "--set %s=%s: expected a number", name, o->text);
            return dflt;
        }
        *found = true;
        return o->value;
    }
    if (!st)
        return dflt;
    *found = true;
    double v;
    if (!to_number(e, ev(e, s, st->b), st->b->span, name, &v))
        return dflt;
    return v;
}

static const Ast *find_setting(const Ast *train, const char *name)
{
    for (int i = 0; i < train->list2.n; i++) {
        const Ast *st = train->list2.v[i];
        if (st->kind == AST_ASSIGN && st->a->kind == AST_NAME && strcmp(st->a->name, name) == 0)
            return st;
    }
    return NULL;
}

static int64_t int_setting(Elab *e, Scope *s, const Ast *train, const char *name, int64_t dflt,
                           int64_t min, bool *found)
{
    const Ast *st = find_setting(train, name);
    bool f = false;
    double v = setting_number(e, s, st, name, (double)dflt, &f);
    if (found)
        *found = f;
    if (f && (v != floor(v) || v < (double)min || v > 9e15)) {
        eerr(e, st ? st->b->span : train->span, "%s must be a whole number >= %lld, got %g", name,
             (long long)min, v);
        return dflt;
    }
    return (int64_t)v;
}

/* Gathers the hyper-parameters of one optimizer use: arguments, else defaults;
 * numbers become run-time HYPER inputs named prefix.param. */
static Group *make_group(Elab *e, Value opt, const char *prefix, Span span)
{
    Group *gr = arena_alloc(&e->arena, sizeof *gr);
    vec_push(&e->groups, gr);
    gr->opt = opt;
    const Ast *d = opt.decl;
    Scope s = {.mod = opt.mod};
    const char *what = arena_printf(&e->arena, "optimizer '%s'", d->name);
    if (!bind_params(e, &s, &d->list, opt.args, what, span)) {
        vec_free(&s.b);
        return NULL;
    }
    for (int i = 0; i < s.b.n; i++) {
        Binding b = s.b.v[i];
        const char *key = arena_printf(&e->p->arena, "%s.%s", prefix, b.name);
        Override *o = find_override(e, key);
        bool flag = b.v.k == V_NUM && b.v.is_bool;
        if (o) {
            o->used = true;
            if (flag && (strcmp(o->text, "true") == 0 || strcmp(o->text, "false") == 0)) {
                b.v = vbool(o->text[0] == 't');
            } else if (!o->is_number) {
                eerr(e, span, "--set %s=%s: expected a number", key, o->text);
                continue;
            } else {
                b.v = flag ? vbool(o->value != 0) : vfloat(o->value);
            }
        }
        /* numbers become run-time inputs; a boolean (centered = false) stays a
         * compile-time choice, so the branch not taken costs nothing */
        if (flag) {
            /* kept as it is */
        } else if (b.v.k == V_NUM) {
            b.v = vnode(new_hyper(e, key, b.v.num, b.span));
        } else if (b.v.k == V_NODE) {
            if (nd(e, b.v.node)->shape.rank != 0) {
                eerr(e, span, "hyper-parameter '%s' must be a scalar", b.name);
                continue;
            }
        } else if (b.v.k != V_ERR) {
            eerr(e, span, "hyper-parameter '%s' must be a number, not %s", b.name, vk_name(&b.v));
            continue;
        }
        vec_push(&gr->hypers, b);
    }
    vec_free(&s.b);
    OptGroup og = {arena_strdup(&e->p->arena, prefix), d->name, span};
    vec_push(&e->p->groups, og);
    gr->index = e->p->groups.n - 1;
    return gr;
}

/* A state that a rule declares but, as elaborated, never changes nor reads (RMSprop's
 * centered average when centered = false) is dropped: no memory, no traffic, nothing
 * in checkpoints.  States from `first`, updates from `first_update` are this
 * parameter's. */
static void drop_dead_states(Elab *e, int first, int first_update)
{
    Program *p = e->p;
    int count = graph_count(e->g);
    bool *seen = xcalloc((size_t)count, 1);
    for (int u = first_update; u < p->updates.n; u++)
        seen[p->updates.v[u].value] = true;
    for (NodeId q = (NodeId)count - 1; q > 0; q--) {
        if (!seen[q])
            continue;
        Node *qn = nd(e, q);
        for (int z = 0; z < qn->nin; z++)
            seen[qn->in[z]] = true;
    }
    int out = first;
    for (int k = first; k < p->states.n; k++) {
        bool updated = false;
        for (int u = first_update; u < p->updates.n; u++)
            updated |= p->updates.v[u].is_state && p->updates.v[u].index == k;
        if (!updated && !seen[p->states.v[k].node])
            continue; /* dropped */
        for (int u = first_update; u < p->updates.n; u++)
            if (p->updates.v[u].is_state && p->updates.v[u].index == k)
                p->updates.v[u].index = out;
        nd(e, p->states.v[k].node)->idx = out;
        p->states.v[out++] = p->states.v[k];
    }
    p->states.n = out;
    free(seen);
}

/* Expands one parameter's update rule into graph nodes. */
static void expand_update(Elab *e, Group *gr, int pi)
{
    ParamInfo *p = &e->p->params.v[pi];
    NodeId w = p->node, grad = e->p->grads.v[pi];
    Shape ws = nd(e, w)->shape;
    NndDType wt = nd(e, w)->dtype;
    const Ast *d = gr->opt.decl;
    Scope s = {.mod = gr->opt.mod};
    for (int i = 0; i < gr->hypers.n; i++)
        bind(&s, gr->hypers.v[i].name, gr->hypers.v[i].v, gr->hypers.v[i].span);
    HyperInfo *h = e->p->hypers.v;
    NodeId hs[4];
    int hidx[4] = {e->p->hyper_step, e->p->hyper_epoch, e->p->hyper_steps, e->p->hyper_t};
    const char *hn[4] = {"step", "epoch", "steps", "t"};
    for (int i = 0; i < 4; i++) {
        Node n = {.op = OP_HYPER, .dtype = (uint8_t)e->p->float_dtype, .idx = hidx[i],
                  .name = h[hidx[i]].name, .span = d->span};
        hs[i] = graph_append(e->g, &n);
        bind(&s, hn[i], vnode(hs[i]), d->span);
    }
    bind(&s, "w", vnode(w), d->span);
    int first_state = e->p->states.n, first_update = e->p->updates.n;
    const char *what = arena_printf(&e->arena, "optimizer '%s' for %s", d->name, p->name);
    e->frames[e->depth++] = (Frame){d, gr->opt.args ? p->span : d->span, what};
    for (int i = 0; i < d->list2.n; i++) {
        const Ast *st = d->list2.v[i];
        if (st->kind == AST_STATE_DECL) {
            /* shaped like w unless its type says otherwise; the initial value may use w
             * and the hyper-parameters, not g */
            Shape ss = ws;
            NndDType sdt = wt;
            if (st->a && !decl_shape(e, &s, st, "optimizer state", &ss, &sdt))
                continue;
            if (!st->a || !st->a->name)
                sdt = wt;
            Value iv = ev(e, &s, st->b);
            NodeId init = iv.k == V_ERR ? 0 : to_node(e, iv, st->b->span);
            if (init) {
                init = gb_cast(e->g, init, sdt, st->b->span);
                Shape bs;
                char err[512];
                if (!shape_broadcast(e->g, &nd(e, init)->shape, &ss, &bs, err, sizeof err) ||
                    !shape_equal(&bs, &ss)) {
                    eerr(e, st->b->span, "state '%s' starts with shape %s but must be %s %s",
                         st->name, shape_str(e, &nd(e, init)->shape),
                         st->a ? "shaped" : "shaped like w", shape_str(e, &ss));
                    init = 0;
                } else {
                    init = gb_broadcast(e->g, init, &ss, st->b->span);
                }
            }
            const char *sname = arena_printf(&e->p->arena, "%s.%s", p->name, st->name);
            Node sn = {.op = OP_STATE, .dtype = (uint8_t)sdt, .shape = ss, .idx = e->p->states.n,
                       .name = sname, .span = st->span};
            NodeId id = graph_append(e->g, &sn);
            StateInfo si = {sname, pi, id, init, st->span, {0}};
            vec_push(&e->p->states, si);
            bind(&s, st->name, vnode(id), st->span);
            if (i == 0 || d->list2.v[i - 1]->kind == AST_STATE_DECL) {
                /* g becomes visible after the state declarations */
            }
            continue;
        }
        if (!scope_find(&s, "g"))
            bind(&s, "g", vnode(grad), d->span);
        if (st->kind == AST_LET) {
            bind(&s, st->name, ev(e, &s, st->a), st->span);
        } else if (st->kind == AST_ASSIGN) {
            Value v = ev(e, &s, st->b);
            if (st->op != AOP_ASSIGN)
                v = binop(e, binop_id(st->op), lookup(e, &s, st->a->name, st->a->span), v, st->span);
            bind(&s, st->a->name, v, st->span);
        }
    }
    e->depth--;
    /* the final values of w and of each state are the updates */
    for (int k = -1; k < e->p->states.n - first_state; k++) {
        bool is_w = k < 0;
        const char *nm = is_w ? "w" : e->p->states.v[first_state + k].name + strlen(p->name) + 1;
        Binding *b = scope_find(&s, nm);
        NodeId old = is_w ? w : e->p->states.v[first_state + k].node;
        if (!b || b->v.k == V_ERR || (b->v.k == V_NODE && b->v.node == old))
            continue;
        NodeId v = to_node(e, b->v, b->span);
        if (!v)
            continue;
        Shape os = nd(e, old)->shape;
        v = gb_cast(e->g, v, (NndDType)nd(e, old)->dtype, b->span);
        Shape bs;
        char err[512];
        if (!shape_broadcast(e->g, &nd(e, v)->shape, &os, &bs, err, sizeof err) ||
            !shape_equal(&bs, &os)) {
            eerr(e, b->span, "the new value of %s has shape %s but must keep %s %s",
                 is_w ? "w" : nm, shape_str(e, &nd(e, v)->shape),
                 shape_equal(&os, &ws) ? "the shape of w" : "its shape", shape_str(e, &os));
            diag_note(e->d, p->span, "for parameter %s", p->name);
            continue;
        }
        v = gb_broadcast(e->g, v, &os, b->span);
        Update u = {!is_w, is_w ? pi : first_state + k, v};
        vec_push(&e->p->updates, u);
    }
    vec_free(&s.b);
    drop_dead_states(e, first_state, first_update);
}

static void mark_params(Elab *e, Value v, Span span, int *out_count, const char *what, int group)
{
    IntVec ps = {0};
    if (v.k == V_LAYER || v.k == V_LIST || (v.k == V_NODE && nd(e, v.node)->op == OP_PARAM))
        value_params(e, &v, &ps, 0);
    else if (v.k != V_ERR)
        eerr(e, span, "%s takes a layer or a parameter, not %s", what, vk_name(&v));
    for (int i = 0; i < ps.n; i++) {
        if (group < 0)
            e->p->params.v[ps.v[i]].frozen = true;
        else
            e->p->params.v[ps.v[i]].group = group;
    }
    *out_count = ps.n;
    vec_free(&ps);
}

/* The dotted path a name or member chain spells (fc2, encoder.fc1.b), or NULL. */
static const char *path_text(Elab *e, const Ast *x)
{
    if (x->kind == AST_NAME)
        return x->name;
    if (x->kind != AST_MEMBER)
        return NULL;
    const char *left = path_text(e, x->a);
    return left ? arena_printf(&e->arena, "%s.%s", left, x->name) : NULL;
}

/* Whether rel (a name inside the model) is ex or inside it. */
static bool path_within(const char *rel, const char *ex)
{
    size_t n = strlen(ex);
    return strncmp(rel, ex, n) == 0 && (rel[n] == 0 || rel[n] == '.');
}

/* Reads one tensor of a `from` file for the parameter or layer state `name` (its
 * path inside the model: rel), checking that it is there and fits. */
static void load_one(Elab *e, NndSafetensors *sf, const char *file, const char *name,
                     const char *rel, const Node *n, Span span, NndTensor *out)
{
    const NndSafetensorsEntry *en = nnd_safetensors_find(sf, rel);
    if (!en) {
        int d = strcmp(name, rel) ? diag_error(e->d, span, "'%s' has no tensor '%s' (for %s)", file, rel, name)
                                  : diag_error(e->d, span, "'%s' has no tensor '%s'", file, rel);
        const char *dot = strchr(rel, '.');
        diag_label(e->d, d, "to start it fresh instead, add `except %.*s`",
                   dot ? (int)(dot - rel) : (int)strlen(rel), rel);
        return;
    }
    Shape fs = shape_make(en->rank, en->shape);
    if (!shape_equal(&fs, &n->shape)) {
        eerr(e, span, "tensor '%s' in '%s' is %s, but %s is %s", rel, file, shape_str(e, &fs),
             name, shape_str(e, &n->shape));
        return;
    }
    if (en->dtype != NND_F32 && en->dtype != NND_F64) {
        eerr(e, span, "tensor '%s' in '%s' is %s; parameters load from F32 or F64", rel, file,
             en->dtype_name);
        return;
    }
    NndErr err;
    if (nnd_safetensors_load(sf, rel, out, &err) != 0)
        eerr(e, span, "%s", err.msg);
}

/* `net = Model(...) from "file" except a, b.c`: the parameters and layer state the
 * model made (params from p0, states from s0) start from the file's tensors of the
 * same names (relative to the model), but for the excepted ones. */
static void load_from(Elab *e, Scope *s, const Ast *st, const char *prefix, int p0, int s0)
{
    Value pv = ev(e, s, st->c);
    const char *path;
    if (!str_arg(e, &pv, st->c->span, "the file to load from", &path))
        return;
    StrVec ex = {0};
    bool ok = true;
    for (int i = 0; i < st->list.n; i++) {
        const char *t = path_text(e, st->list.v[i]);
        if (!t) {
            eerr(e, st->list.v[i]->span, "except takes names inside the model, like fc2 or fc2.b");
            ok = false;
        }
        vec_push(&ex, t);
    }
    NndSafetensors sf;
    NndErr err;
    if (ok && nnd_safetensors_open(&sf, path, &err) != 0) {
        eerr(e, st->c->span, "%s", err.msg);
        ok = false;
    }
    if (!ok) {
        vec_free(&ex);
        return;
    }
    size_t skip = *prefix ? strlen(prefix) + 1 : 0;
    bool *used = xcalloc((size_t)ex.n + 1, 1);
    int total = (e->p->params.n - p0) + (e->p->states.n - s0);
    for (int k = 0; k < total; k++) {
        bool is_param = k < e->p->params.n - p0;
        int i = is_param ? p0 + k : s0 + k - (e->p->params.n - p0);
        const char *name = is_param ? e->p->params.v[i].name : e->p->states.v[i].name;
        if (!is_param && e->p->states.v[i].param >= 0)
            continue;
        const char *rel = name + skip;
        bool skipped = false;
        for (int j = 0; j < ex.n; j++)
            if (ex.v[j] && path_within(rel, ex.v[j]))
                skipped = used[j] = true;
        if (skipped)
            continue;
        NodeId node = is_param ? e->p->params.v[i].node : e->p->states.v[i].node;
        load_one(e, &sf, path, name, rel, nd(e, node), st->c->span,
                 is_param ? &e->p->params.v[i].loaded : &e->p->states.v[i].loaded);
    }
    for (int j = 0; j < ex.n; j++)
        if (ex.v[j] && !used[j])
            eerr(e, st->list.v[j]->span, "'%s' names no parameter of this model", ex.v[j]);
    free(used);
    vec_free(&ex);
    nnd_safetensors_close(&sf);
}

/* accumulate = k: each trained parameter gets a gradient sum (a state, zero between
 * updates).  A micro-batch that is not the last of its group adds B * g to it
 * (accum_updates); the last one hands its rules the group's mean gradient
 * (sum + B * g) / n, n the group's samples (a run-time input), and zeroes the sum.
 * For a loss that is a mean over the batch this is the gradient of the whole
 * group's batch, whatever the sizes of its micro-batches. */
static void accumulate_gradients(Elab *e, const Ast *train, const int *which, NodeId *gs, int n)
{
    Program *p = e->p;
    /* layer state (batch norm's running statistics) moves on every micro-batch, as
     * it would with a forward pass per micro-batch in PyTorch */
    for (int u = 0; u < p->updates.n; u++)
        if (p->updates.v[u].is_state && p->states.v[p->updates.v[u].index].param < 0)
            vec_push(&p->accum_updates, p->updates.v[u]);
    p->hyper_accum = p->hypers.n;
    NodeId total = new_hyper(e, "accumulate.samples", (double)(p->batch * p->accumulate), train->span);
    for (int i = 0; i < n; i++) {
        ParamInfo *par = &p->params.v[which[i]];
        Node *w = nd(e, par->node);
        Shape ws = w->shape;
        NndDType dt = (NndDType)w->dtype;
        Span span = par->span;
        const char *sname = arena_printf(&p->arena, "%s.grad_sum", par->name);
        Node sn = {.op = OP_STATE, .dtype = (uint8_t)dt, .shape = ws, .idx = p->states.n, .name = sname,
                   .span = span};
        NodeId st = graph_append(e->g, &sn);
        StateInfo si = {sname, which[i], st, gb_full(e->g, 0, dt, &ws, span), span, {0}};
        vec_push(&p->states, si);
        NodeId b = gb_cast(e->g, gb_dimsize(e->g, p->x, 1u, p->float_dtype, span), dt, span);
        NodeId sum = gb_binary_bc(e->g, OP_ADD, st, gb_binary_bc(e->g, OP_MUL, gs[i], b, span), span);
        Update more = {true, p->states.n - 1, gb_broadcast(e->g, sum, &ws, span)};
        vec_push(&p->accum_updates, more);
        Update zero = {true, p->states.n - 1, gb_full(e->g, 0, dt, &ws, span)};
        vec_push(&p->updates, zero);
        gs[i] = gb_broadcast(e->g, gb_binary_bc(e->g, OP_DIV, sum, gb_cast(e->g, total, dt, span), span), &ws, span);
    }
}

/* clip_value = v: each gradient element into [-v, v]; then clip_norm = c: every
 * gradient times min(1, c / (norm + 1e-6)), norm over all the trainable parameters
 * together (torch.nn.utils.clip_grad_norm_).  Both are run-time hyper-parameters. */
static void clip_gradients(Elab *e, Scope *s, const Ast *train, NodeId *gs, int n)
{
    static const char *const names[2] = {"clip_value", "clip_norm"};
    for (int which = 0; which < 2; which++) {
        const Ast *st = find_setting(train, names[which]);
        bool found = false;
        double v = setting_number(e, s, st, names[which], 0, &found);
        if (!found || n == 0)
            continue;
        Span span = st ? st->span : train->span;
        if (!(v > 0)) {
            eerr(e, span, "%s must be positive, got %g", names[which], v);
            continue;
        }
        NodeId h = new_hyper(e, names[which], v, span);
        if (which == 0) {
            NodeId lo = gb_unary(e->g, OP_NEG, h, span);
            for (int i = 0; i < n; i++) {
                NndDType dt = (NndDType)nd(e, gs[i])->dtype;
                NodeId hi_i = gb_cast(e->g, h, dt, span), lo_i = gb_cast(e->g, lo, dt, span);
                gs[i] = gb_binary_bc(e->g, OP_MIN, gb_binary_bc(e->g, OP_MAX, gs[i], lo_i, span), hi_i, span);
            }
            continue;
        }
        NodeId total = 0;
        for (int i = 0; i < n; i++) {
            NodeId sq = gb_binary(e->g, OP_MUL, gs[i], gs[i], span);
            int r = nd(e, sq)->shape.rank;
            sq = gb_reduce(e->g, OP_SUM, sq, r ? (1u << r) - 1 : 0, false, span);
            sq = gb_cast(e->g, sq, e->p->float_dtype, span);
            total = total ? gb_binary(e->g, OP_ADD, total, sq, span) : sq;
        }
        NodeId norm = gb_unary(e->g, OP_SQRT, total, span);
        NodeId coef = gb_binary(e->g, OP_DIV, h,
                                gb_binary(e->g, OP_ADD, norm, gb_const(e->g, 1e-6, e->p->float_dtype, span), span),
                                span);
        coef = gb_binary(e->g, OP_MIN, coef, gb_const(e->g, 1, e->p->float_dtype, span), span);
        for (int i = 0; i < n; i++)
            gs[i] = gb_binary_bc(e->g, OP_MUL, gs[i], gb_cast(e->g, coef, (NndDType)nd(e, gs[i])->dtype, span), span);
    }
}

/* A train setting that is a positive run-time hyper-parameter, or 0 when absent. */
static NodeId setting_hyper(Elab *e, Scope *s, const Ast *train, const char *name, double hi)
{
    const Ast *st = find_setting(train, name);
    bool found = false;
    double v = setting_number(e, s, st, name, 0, &found);
    if (!found)
        return 0;
    for (int i = 0; i < e->p->hypers.n; i++)
        if (strcmp(e->p->hypers.v[i].name, name) == 0) /* made for an earlier parameter */
            return graph_append(e->g, &(Node){.op = OP_HYPER, .dtype = (uint8_t)e->p->float_dtype,
                                              .idx = i, .name = e->p->hypers.v[i].name,
                                              .span = e->p->hypers.v[i].span});
    Span span = st ? st->span : train->span;
    if (!(v > 0 && v < hi)) {
        eerr(e, span, "%s must be between 0 and %g, got %g", name, hi, v);
        return 0;
    }
    return new_hyper(e, name, v, span);
}

/* After parameter pi's update rule (its updates from `first`): max_norm = c clips
 * the norm of each output unit's incoming weights (columns of a [fan_in, fan_out]
 * matrix, filters of a [out, ...] convolution) to c; ema = d keeps the state
 * `NAME.average` <- d * average + (1 - d) * w', which eval and save use. */
static void constrain_and_average(Elab *e, Scope *s, const Ast *train, int pi, int first)
{
    Program *p = e->p;
    ParamInfo *par = &p->params.v[pi];
    Node *w = nd(e, par->node);
    int wu = -1;
    for (int u = first; u < p->updates.n; u++)
        if (!p->updates.v[u].is_state && p->updates.v[u].index == pi)
            wu = u;
    Shape ws = w->shape;
    NodeId c = w->shape.rank >= 2 ? setting_hyper(e, s, train, "max_norm", INFINITY) : 0;
    if (c && wu >= 0) {
        Span span = par->span;
        uint32_t mask = ws.rank == 2 ? 1u : ((1u << ws.rank) - 1) & ~1u;
        NodeId v = p->updates.v[wu].value;
        NodeId sq = gb_reduce(e->g, OP_SUM, gb_binary(e->g, OP_MUL, v, v, span), mask, true, span);
        NodeId norm = gb_unary(e->g, OP_SQRT, sq, span);
        NndDType dt = (NndDType)w->dtype;
        NodeId scale = gb_binary_bc(e->g, OP_DIV, gb_cast(e->g, c, dt, span),
                                    gb_binary_bc(e->g, OP_ADD, norm, gb_const(e->g, 1e-7, dt, span), span), span);
        scale = gb_binary_bc(e->g, OP_MIN, scale, gb_const(e->g, 1, dt, span), span);
        p->updates.v[wu].value = gb_broadcast(e->g, gb_binary_bc(e->g, OP_MUL, v, gb_broadcast(e->g, scale, &ws, span), span),
                                              &ws, span);
    }
    NodeId d = setting_hyper(e, s, train, "ema", 1);
    if (!d)
        return;
    Span span = par->span;
    NndDType dt = (NndDType)w->dtype;
    const char *sname = arena_printf(&p->arena, "%s.average", par->name);
    Node sn = {.op = OP_STATE, .dtype = (uint8_t)dt, .shape = ws, .idx = p->states.n, .name = sname,
               .span = span};
    NodeId st = graph_append(e->g, &sn);
    StateInfo si = {sname, pi, st, par->node, span, {0}}; /* starts at w's starting value */
    vec_push(&p->states, si);
    NodeId wn = wu >= 0 ? p->updates.v[wu].value : par->node;
    NodeId dd = gb_cast(e->g, d, dt, span);
    NodeId one_minus = gb_binary(e->g, OP_SUB, gb_const(e->g, 1, dt, span), dd, span);
    NodeId v = gb_binary_bc(e->g, OP_ADD, gb_binary_bc(e->g, OP_MUL, st, dd, span),
                            gb_binary_bc(e->g, OP_MUL, wn, one_minus, span), span);
    Update u = {true, p->states.n - 1, gb_broadcast(e->g, v, &ws, span)};
    vec_push(&p->updates, u);
    par->ema_state = p->states.n - 1;
}

static NodeId full_sum(Elab *e, NodeId x, Span span)
{
    int r = nd(e, x)->shape.rank;
    NodeId s = gb_reduce(e->g, OP_SUM, x, r ? (1u << r) - 1 : 0, false, span);
    return gb_cast(e->g, s, e->p->float_dtype, span);
}

static void step_output(Elab *e, const char *tag, NodeId n, Span span)
{
    Metric m = {arena_strdup(&e->p->arena, tag), n, span};
    vec_push(&e->p->step_outputs, m);
}

/* `log every N steps to DIR: loss, lr, grad_norm, ..., name = expr`.  The
 * statistics of each trained parameter are reductions the step computes: norms of
 * g (after clipping), of w after the update, the update's size relative to w,
 * max |g|, and how many elements of g are not finite. */
static void elab_log(Elab *e, Scope *s, const Ast *st)
{
    Program *p = e->p;
    if (p->log.dir) {
        eerr(e, st->span, "only one log statement is allowed");
        return;
    }
    const Ast *every = st->a;
    Value dv = ev(e, s, st->b);
    const char *dir;
    int64_t n = 1;
    if (!str_arg(e, &dv, st->b->span, "the log directory", &dir) ||
        (every->a && !to_int(e, ev(e, s, every->a), every->a->span, "the interval", &n)))
        return;
    if (n < 1) {
        eerr(e, every->span, "the interval must be at least 1");
        return;
    }
    LogSpec *lg = &p->log;
    lg->dir = arena_strdup(&p->arena, dir);
    lg->every = n;
    lg->in_epochs = every->name[0] == 'e';
    lg->span = st->span;
    for (int k = 0; k < st->list.n; k++) {
        const Ast *it = st->list.v[k];
        bool family = false;
        for (int f = 0; it->kind == AST_NAME && log_families[f] && !family; f++)
            if (strcmp(it->name, log_families[f]) == 0) {
                lg->items |= 1u << f;
                family = true;
            }
        if (family)
            continue;
        /* a scalar of the training batch: name = expr, or an expression */
        bool kw = it->kind == AST_KWARG;
        const Ast *x = kw ? it->a : it;
        Value v = ev(e, s, x);
        if (v.k == V_ERR)
            continue;
        NodeId node = v.k == V_NODE ? v.node : v.k == V_NUM ? const_node(e, v.num, p->float_dtype, x->span) : 0;
        if (!node || nd(e, node)->shape.rank != 0) {
            eerr(e, x->span, "a logged value must be a scalar computed from the batch, like mean(...)");
            continue;
        }
        node = gb_cast(e->g, node, p->float_dtype, x->span);
        const char *name = kw ? it->name : x->kind == AST_NAME ? x->name
                         : x->kind == AST_CALL && x->a->kind == AST_NAME ? x->a->name
                                                                         : arena_printf(&p->arena, "value%d", k + 1);
        step_output(e, name, node, x->span);
    }
    /* the learning rate of each optimizer group: a hyper-parameter or a schedule */
    for (int gi = 0; (lg->items & LOG_LR) && gi < e->groups.n; gi++) {
        Group *gr = e->groups.v[gi];
        for (int k = 0; k < gr->hypers.n; k++)
            if (strcmp(gr->hypers.v[k].name, "lr") == 0 && gr->hypers.v[k].v.k == V_NODE) {
                const char *path = p->groups.v[gr->index].path; /* "opt", "opt.net.fc2" */
                const char *tag = strcmp(path, "opt") == 0 ? "lr" : arena_printf(&e->arena, "lr/%s", path + 4);
                step_output(e, tag, gb_cast(e->g, gr->hypers.v[k].v.node, p->float_dtype, st->span), st->span);
            }
    }
    /* the warnings read grad_norm and update_ratio: always computed with a log */
    uint32_t fams = lg->items | LOG_GRAD_NORM | LOG_UPDATE_RATIO;
    NodeId total = 0;
    NndDType ft = p->float_dtype;
    for (int i = 0; i < p->params.n; i++) {
        if (!p->grads.v[i])
            continue;
        ParamInfo *pi = &p->params.v[i];
        Span span = pi->span;
        NodeId w = pi->node, g = p->grads.v[i], wn = w;
        for (int u = 0; u < p->updates.n; u++)
            if (!p->updates.v[u].is_state && p->updates.v[u].index == i)
                wn = p->updates.v[u].value;
        NodeId g2 = full_sum(e, gb_binary(e->g, OP_MUL, g, g, span), span);
        total = total ? gb_binary(e->g, OP_ADD, total, g2, span) : g2;
        if (fams & LOG_GRAD_NORM)
            step_output(e, arena_printf(&e->arena, "grad_norm/%s", pi->name), gb_unary(e->g, OP_SQRT, g2, span), span);
        if (fams & LOG_WEIGHT_NORM)
            step_output(e, arena_printf(&e->arena, "weight_norm/%s", pi->name),
                        gb_unary(e->g, OP_SQRT, full_sum(e, gb_binary(e->g, OP_MUL, wn, wn, span), span), span), span);
        if (fams & LOG_UPDATE_RATIO) {
            NodeId dw = gb_binary(e->g, OP_SUB, wn, w, span);
            NodeId num = gb_unary(e->g, OP_SQRT, full_sum(e, gb_binary(e->g, OP_MUL, dw, dw, span), span), span);
            NodeId den = gb_unary(e->g, OP_SQRT, full_sum(e, gb_binary(e->g, OP_MUL, w, w, span), span), span);
            den = gb_binary(e->g, OP_ADD, den, gb_const(e->g, 1e-12, ft, span), span);
            step_output(e, arena_printf(&e->arena, "update_ratio/%s", pi->name), gb_binary(e->g, OP_DIV, num, den, span), span);
        }
        if (fams & LOG_MAX_GRAD) {
            NodeId a = gb_unary(e->g, OP_ABS, g, span);
            int r = nd(e, a)->shape.rank;
            NodeId m = gb_reduce(e->g, OP_RMAX, a, r ? (1u << r) - 1 : 0, false, span);
            step_output(e, arena_printf(&e->arena, "max_grad/%s", pi->name), gb_cast(e->g, m, ft, span), span);
        }
        if (fams & LOG_NONFINITE) {
            /* |g| <= the largest finite value is false exactly for NaN and +-inf */
            NndDType gt = (NndDType)nd(e, g)->dtype;
            NodeId big = gb_const(e->g, gt == NND_F64 ? 1.7976931348623157e308 : 3.4028234663852886e38, gt, span);
            NodeId ok = gb_binary_bc(e->g, OP_LE, gb_unary(e->g, OP_ABS, g, span), big, span);
            NodeId bad = gb_cast(e->g, gb_unary(e->g, OP_NOT, ok, span), ft, span);
            step_output(e, arena_printf(&e->arena, "nonfinite/%s", pi->name), full_sum(e, bad, span), span);
        }
    }
    if (total)
        step_output(e, "grad_norm/total", gb_unary(e->g, OP_SQRT, total, st->span), st->span);
}

/* Whether expression x uses one of the names (as a plain name, not a member). */
static bool ast_mentions(const Ast *x, const char *const *names, int n)
{
    if (!x)
        return false;
    if (x->kind == AST_NAME) {
        for (int i = 0; i < n; i++)
            if (strcmp(x->name, names[i]) == 0)
                return true;
        return false;
    }
    if (ast_mentions(x->a, names, n) || ast_mentions(x->b, names, n) ||
        (x->kind != AST_FN && ast_mentions(x->c, names, n)))
        return true;
    for (int i = 0; i < x->list.n; i++)
        if (ast_mentions(x->list.v[i], names, n))
            return true;
    for (int i = 0; i < x->list2.n; i++)
        if (ast_mentions(x->list2.v[i], names, n))
            return true;
    return false;
}

static void elab_train(Elab *e, Module *m, const Ast *train)
{
    Program *p = e->p;
    Scope s = {.mod = m};
    /* run-time counters */
    p->hyper_step = p->hypers.n;
    new_hyper(e, "step", 0, train->span);
    p->hyper_epoch = p->hypers.n;
    new_hyper(e, "epoch", 0, train->span);
    p->hyper_steps = p->hypers.n;
    new_hyper(e, "steps", 1, train->span);
    p->hyper_t = p->hypers.n;
    new_hyper(e, "t", 1, train->span);
    for (int i = 0; i < p->hypers.n; i++) {
        Node n = {.op = OP_HYPER, .dtype = (uint8_t)p->float_dtype, .idx = i,
                  .name = p->hypers.v[i].name, .span = train->span};
        if (i != p->hyper_t)
            bind(&s, p->hypers.v[i].name, vnode(graph_append(e->g, &n)), train->span);
    }
    /* named values: numbers become run-time hyper-parameters; a value computed from
     * the data or the models (`let ce = cross_entropy(net(x), y)`) is named once they
     * exist, before the loss */
    StrVec later = {0};
    vec_push(&later, "x");
    vec_push(&later, "y");
    for (int i = 0; i < train->list2.n; i++) {
        const Ast *st = train->list2.v[i];
        if (st->kind == AST_ASSIGN && st->a->kind == AST_NAME)
            vec_push(&later, st->a->name);
    }
    bool *deferred = xcalloc((size_t)train->list2.n + 1, 1);
    for (int i = 0; i < train->list2.n; i++) {
        const Ast *st = train->list2.v[i];
        if (st->kind != AST_LET)
            continue;
        if (!find_override(e, st->name) && ast_mentions(st->a, later.v, later.n)) {
            deferred[i] = true;
            vec_push(&later, st->name);
            continue;
        }
        Override *o = find_override(e, st->name);
        Value v;
        if (o) {
            o->used = true;
            v = o->is_number ? vfloat(o->value) : vstr(o->text);
        } else {
            v = ev(e, &s, st->a);
        }
        if (v.k == V_NUM && !v.is_bool)
            v = vnode(new_hyper(e, st->name, v.num, st->span));
        bind(&s, st->name, v, st->span);
    }
    /* settings */
    /* steps, when given, wins over epochs; --set epochs=N on a file that says
     * steps switches it to epochs */
    bool have_steps = false;
    p->batch = int_setting(e, &s, train, "batch", 32, 1, NULL);
    p->epochs = int_setting(e, &s, train, "epochs", 1, 1, NULL);
    p->steps = int_setting(e, &s, train, "steps", 0, 1, &have_steps);
    if (!have_steps || (find_override(e, "epochs") && !find_override(e, "steps")))
        p->steps = 0;
    p->seed = (uint64_t)int_setting(e, &s, train, "seed", 0, 0, NULL);
    p->accumulate = int_setting(e, &s, train, "accumulate", 1, 1, NULL);
    if (p->accumulate > 1) {
        p->hyper_micro = p->hypers.n;
        new_hyper(e, "accumulate.micro", 0, train->span);
    }
    bool f = false;
    const Ast *sh = find_setting(train, "shuffle");
    p->shuffle = setting_number(e, &s, sh, "shuffle", 1, &f) != 0;
    /* data: the training set is `train`, or the only one */
    for (int i = 0; i < train->list2.n; i++)
        if (train->list2.v[i]->kind == AST_DATA)
            elab_data(e, &s, m, train->list2.v[i]);
    if (diags_has_errors(e->d))
        goto done;
    p->train_data = -1;
    for (int i = 0; i < p->data.n; i++)
        if (strcmp(p->data.v[i].name, "train") == 0)
            p->train_data = i;
    if (p->train_data < 0) {
        if (p->data.n == 1) {
            p->train_data = 0;
        } else {
            eerr(e, train->span, "with several data sets, the one to train on must be named 'train'");
            goto done;
        }
    }
    DataSet *td = &p->data.v[p->train_data];
    p->sym_batch = graph_symbol(e->g, "B");
    {
        Node x = {.op = OP_INPUT, .dtype = (uint8_t)p->float_dtype, .idx = 0, .name = "x",
                  .span = td->span};
        x.shape.rank = td->x_rank + 1;
        x.shape.d[0] = p->sym_batch;
        memcpy(x.shape.d + 1, td->x_shape, sizeof(int64_t) * (size_t)td->x_rank);
        Node y = {.op = OP_INPUT, .dtype = (uint8_t)(td->y_dtype == NND_I32 ? NND_I32 : p->float_dtype),
                  .idx = 1, .name = "y", .span = td->span};
        y.shape.rank = td->y_rank + 1;
        y.shape.d[0] = p->sym_batch;
        memcpy(y.shape.d + 1, td->y_shape, sizeof(int64_t) * (size_t)td->y_rank);
        p->x = graph_append(e->g, &x);
        p->y = graph_append(e->g, &y);
        bind(&s, "x", vnode(p->x), td->span);
        bind(&s, "y", vnode(p->y), td->span);
    }
    /* models */
    int nmodels = 0;
    for (int i = 0; i < train->list2.n; i++) {
        const Ast *st = train->list2.v[i];
        if (st->kind != AST_ASSIGN || st->a->kind != AST_NAME)
            continue;
        bool setting = false;
        for (int k = 0; train_settings[k]; k++)
            setting |= strcmp(train_settings[k], st->a->name) == 0;
        nmodels += !setting;
    }
    for (int i = 0; i < train->list2.n; i++) {
        const Ast *st = train->list2.v[i];
        if (st->kind != AST_ASSIGN || st->a->kind != AST_NAME)
            continue;
        const char *nm = st->a->name;
        bool setting = false;
        for (int k = 0; train_settings[k]; k++)
            setting |= strcmp(train_settings[k], nm) == 0;
        if (setting)
            continue;
        const char *prefix = nmodels <= 1 ? "" : nm;
        int p0 = p->params.n, s0 = p->states.n;
        e->bind_path = prefix;
        Value v = ev(e, &s, st->b);
        e->bind_path = NULL;
        if (v.k != V_LAYER && v.k != V_ERR)
            eerr(e, st->b->span, "'%s = ...' must create a model", nm);
        else if (v.k == V_LAYER && st->c)
            load_from(e, &s, st, prefix, p0, s0);
        bind(&s, nm, v, st->span);
    }
    for (int i = 0; i < train->list2.n; i++)
        if (deferred[i])
            bind(&s, train->list2.v[i]->name, ev(e, &s, train->list2.v[i]->a),
                 train->list2.v[i]->span);
    if (diags_has_errors(e->d))
        goto done;
    /* loss */
    const Ast *ls = find_setting(train, "loss");
    e->record_state = true;
    Value lv = ev(e, &s, ls->b);
    e->record_state = false;
    if (lv.k == V_ERR)
        goto done;
    if (lv.k != V_NODE) {
        eerr(e, ls->b->span, "the loss must be a tensor computed from the model, not %s",
             vk_name(&lv));
        goto done;
    }
    if (nd(e, lv.node)->shape.rank != 0) {
        int d = diag_error(e->d, ls->b->span, "the loss must be a scalar, got shape %s",
                           shape_str(e, &nd(e, lv.node)->shape));
        diag_label(e->d, d, "reduce it with mean(...) or sum(...)");
        goto done;
    }
    if (!dtype_is_float(nd(e, lv.node)->dtype)) {
        eerr(e, ls->b->span, "the loss must be a float, got %s", dtype_name(nd(e, lv.node)->dtype));
        goto done;
    }
    p->loss = lv.node;
    bind(&s, "loss", lv, ls->span);
    /* inference: the first model applied to x, when x alone is what it takes; a model
     * that wants more gets no forward function (and no diagnostics for trying).  It
     * runs in eval mode, like the eval metrics. */
    e->training = false;
    for (int i = 0; i < s.b.n; i++) {
        if (s.b.v[i].v.k != V_LAYER)
            continue;
        Diags *d = e->d;
        int mark = d->v.n, errors = d->nerrors;
        bool truncated = d->truncated;
        Args one = {.n = 1};
        one.v[0] = vnode(p->x);
        one.span[0] = s.b.v[i].span;
        Value fv = call_value(e, s.b.v[i].v, &one, s.b.v[i].span, NULL);
        for (int k = mark; k < d->v.n; k++) {
            free(d->v.v[k].msg);
            free(d->v.v[k].label);
        }
        d->v.n = mark;
        d->nerrors = errors;
        d->truncated = truncated;
        if (fv.k == V_NODE)
            p->forward = fv.node;
        break;
    }
    e->training = true;
    /* freezing */
    for (int i = 0; i < train->list2.n; i++) {
        const Ast *st = train->list2.v[i];
        if (st->kind != AST_FREEZE)
            continue;
        for (int k = 0; k < st->list.n; k++) {
            int cnt;
            mark_params(e, ev(e, &s, st->list.v[k]), st->list.v[k]->span, &cnt, "freeze", -1);
        }
    }
    /* optimizers: the default, then groups (a later group wins) */
    const Ast *os = find_setting(train, "opt");
    const Ast *oexpr = e->opts->opt_expr ? e->opts->opt_expr : os->b;
    Value ov = ev(e, &s, oexpr);
    if (ov.k != V_OPT) {
        if (ov.k != V_ERR)
            eerr(e, oexpr->span, "opt must be an optimizer, like Adam(lr = 1e-3), not %s",
                 vk_name(&ov));
        goto done;
    }
    Group *dflt = make_group(e, ov, "opt", os->span);
    if (!dflt)
        goto done;
    for (int i = 0; i < p->params.n; i++)
        p->params.v[i].group = dflt->index;
    for (int i = 0; i < train->list2.n; i++) {
        const Ast *st = train->list2.v[i];
        if (st->kind != AST_OPT_GROUP)
            continue;
        Value target = ev(e, &s, st->a);
        Value gv = ev(e, &s, st->b);
        if (gv.k != V_OPT) {
            if (gv.k != V_ERR)
                eerr(e, st->b->span, "expected an optimizer, like RMSprop(lr = 1e-3)");
            continue;
        }
        StrBuf path = {0};
        for (const Ast *q = st->a; q; q = q->kind == AST_MEMBER ? q->a : NULL) {
            char *prev = path.s ? xstrdup(path.s) : xstrdup("");
            path.len = 0;
            sb_puts(&path, q->name);
            if (*prev) {
                sb_putc(&path, '.');
                sb_puts(&path, prev);
            }
            free(prev);
        }
        Group *gr = make_group(e, gv, arena_printf(&e->p->arena, "opt.%s", path.s), st->span);
        sb_free(&path);
        if (!gr)
            continue;
        int cnt;
        mark_params(e, target, st->a->span, &cnt, "opt", gr->index);
    }
    if (diags_has_errors(e->d))
        goto done;
    /* gradients of the loss for the trainable parameters, then their updates */
    {
        NodeVec wrt = {0};
        IntVec which = {0};
        for (int i = 0; i < p->params.n; i++) {
            vec_push(&p->grads, 0);
            if (!p->params.v[i].frozen) {
                vec_push(&wrt, p->params.v[i].node);
                vec_push(&which, i);
            }
        }
        NodeId *gs = xcalloc((size_t)(wrt.n ? wrt.n : 1), sizeof(NodeId));
        e->g->phase = PHASE_BACKWARD;
        if (wrt.n)
            autodiff(e->g, p->loss, wrt.v, wrt.n, gs);
        if (p->accumulate > 1)
            accumulate_gradients(e, train, which.v, gs, wrt.n);
        clip_gradients(e, &s, train, gs, wrt.n);
        for (int i = 0; i < which.n; i++)
            p->grads.v[which.v[i]] = gs[i];
        free(gs);
        e->g->phase = PHASE_UPDATE;
        for (int i = 0; i < which.n; i++) {
            int pi = which.v[i];
            Group *gr = NULL;
            for (int k = 0; k < e->groups.n; k++)
                if (e->groups.v[k]->index == p->params.v[pi].group)
                    gr = e->groups.v[k];
            int first = p->updates.n;
            expand_update(e, gr, pi);
            constrain_and_average(e, &s, train, pi, first);
        }
        vec_free(&wrt);
        vec_free(&which);
    }
    /* logs: the statistics as step outputs, computed in train mode */
    e->g->phase = PHASE_STATS;
    for (int i = 0; i < train->list2.n; i++)
        if (train->list2.v[i]->kind == AST_LOG)
            elab_log(e, &s, train->list2.v[i]);
    e->g->phase = PHASE_FORWARD;
    /* evaluation, in eval mode: `loss` there is the loss as eval mode computes it */
    e->training = false;
    for (int i = 0; i < train->list2.n; i++)
        if (train->list2.v[i]->kind == AST_EVAL) {
            Value el = ev(e, &s, ls->b);
            if (el.k != V_ERR)
                bind(&s, "loss", el, ls->span);
            break;
        }
    for (int i = 0; i < train->list2.n; i++) {
        const Ast *st = train->list2.v[i];
        if (st->kind != AST_EVAL)
            continue;
        EvalSpec es = {0};
        es.span = st->span;
        es.data = -1;
        for (int k = 0; k < p->data.n; k++)
            if (strcmp(p->data.v[k].name, st->name) == 0)
                es.data = k;
        if (es.data < 0)
            continue;
        DataSet *ed = &p->data.v[es.data];
        Shape ex = shape_make(ed->x_rank, ed->x_shape), tx = shape_make(td->x_rank, td->x_shape);
        Shape ey = shape_make(ed->y_rank, ed->y_shape), ty = shape_make(td->y_rank, td->y_shape);
        if (!shape_equal(&ex, &tx) || !shape_equal(&ey, &ty) ||
            (ed->y_dtype == NND_I32) != (td->y_dtype == NND_I32)) {
            eerr(e, st->span, "data set '%s' has samples shaped %s -> %s, but the training data %s -> %s",
                 ed->name, shape_str(e, &ex), shape_str(e, &ey), shape_str(e, &tx), shape_str(e, &ty));
            continue;
        }
        const Ast *ev_every = st->a;
        es.in_epochs = ev_every->name[0] == 'e';
        es.every = 1;
        if (ev_every->a && !to_int(e, ev(e, &s, ev_every->a), ev_every->a->span, "the interval", &es.every))
            continue;
        if (es.every < 1) {
            eerr(e, ev_every->span, "the interval must be at least 1");
            continue;
        }
        for (int k = 0; k < st->list.n; k++) {
            const Ast *mx = st->list.v[k];
            bool kw = mx->kind == AST_KWARG;
            const Ast *ex_ast = kw ? mx->a : mx;
            Value v = ev(e, &s, ex_ast);
            if (v.k == V_ERR)
                continue;
            NodeId n = v.k == V_NODE ? v.node : 0;
            if (!n || nd(e, n)->shape.rank != 0) {
                eerr(e, ex_ast->span, "a metric must be a scalar computed from the data%s",
                     n ? ", like mean(...)" : "");
                continue;
            }
            if (!dtype_is_float(nd(e, n)->dtype))
                n = gb_cast(e->g, n, p->float_dtype, ex_ast->span);
            const char *name = kw ? mx->name
                             : ex_ast->kind == AST_CALL && ex_ast->a->kind == AST_NAME ? ex_ast->a->name
                             : ex_ast->kind == AST_NAME ? ex_ast->name
                                                        : arena_printf(&p->arena, "metric%d", k + 1);
            Metric mt = {arena_strdup(&p->arena, name), n, ex_ast->span};
            vec_push(&es.metrics, mt);
        }
        vec_push(&p->evals, es);
    }
    /* checkpoints */
    for (int i = 0; i < train->list2.n; i++) {
        const Ast *st = train->list2.v[i];
        if (st->kind != AST_CHECKPOINT)
            continue;
        if (p->ckpt_dir) {
            eerr(e, st->span, "only one checkpoint statement is allowed");
            continue;
        }
        const Ast *every = st->a;
        Value dv = ev(e, &s, st->b);
        const char *dir;
        int64_t n = 1, keep = 0;
        if (!str_arg(e, &dv, st->b->span, "the checkpoint directory", &dir) ||
            (every->a && !to_int(e, ev(e, &s, every->a), every->a->span, "the interval", &n)) ||
            (st->c && !to_int(e, ev(e, &s, st->c), st->c->span, "keep", &keep)))
            continue;
        if (n < 1 || (st->c && keep < 1)) {
            eerr(e, n < 1 ? every->span : st->c->span, "%s must be at least 1",
                 n < 1 ? "the interval" : "keep");
            continue;
        }
        p->ckpt_dir = arena_strdup(&p->arena, dir);
        p->ckpt_every = n;
        p->ckpt_keep = keep;
        p->ckpt_in_epochs = every->name[0] == 'e';
    }
    /* save */
    for (int i = 0; i < train->list2.n; i++) {
        const Ast *st = train->list2.v[i];
        if (st->kind != AST_SAVE)
            continue;
        Value v = ev(e, &s, st->b);
        const char *path;
        if (str_arg(e, &v, st->b->span, "the path to save to", &path)) {
            p->save_path = arena_strdup(&p->arena, path);
            p->save_span = st->span;
        }
    }
done:
    free(deferred);
    vec_free(&later);
    vec_free(&s.b);
}

Program *elab_program(Frontend *fe, Module *main, const ElabOptions *opts)
{
    Program *p = xcalloc(1, sizeof *p);
    graph_init(&p->g);
    p->g.phase = PHASE_FORWARD;
    p->float_dtype = opts->float_dtype;
    p->accumulate = 1;
    p->hyper_accum = p->hyper_micro = -1;
    Elab e = {.fe = fe, .d = &fe->diags, .p = p, .g = &p->g, .opts = opts, .training = true};
    p->g.custom_vjp = elab_custom_vjp;
    p->g.custom_ctx = &e;
    if (!main->train) {
        diag_error(e.d, (Span){main->file, 0, 0}, "%s has no train block", main->path);
    } else {
        elab_train(&e, main, main->train);
    }
    for (int i = 0; i < opts->noverrides; i++)
        if (!opts->overrides[i].used) {
            StrVec c = {0};
            for (int k = 0; train_settings[k]; k++)
                vec_push(&c, train_settings[k]);
            for (int k = 0; k < p->hypers.n; k++)
                vec_push(&c, p->hypers.v[k].name);
            const char *best = suggest_name(opts->overrides[i].key, c.v, c.n);
            int d = diag_error(e.d, span_none(), "--set %s: nothing in the program is called '%s'",
                               opts->overrides[i].key, opts->overrides[i].key);
            if (best)
                diag_label(e.d, d, "did you mean '%s'?", best);
            vec_free(&c);
        }
    /* the vjp blocks are gone with the elaboration: every CUSTOM node's gradient
     * that will ever be needed has been built */
    p->g.custom_vjp = NULL;
    p->g.custom_ctx = NULL;
    p->custom_vjps = e.customs.n;
    vec_free(&e.customs);
    for (int i = 0; i < e.groups.n; i++)
        vec_free(&e.groups.v[i]->hypers);
    vec_free(&e.groups);
    for (int i = 0; i < e.layers.n; i++)
        vec_free(&e.layers.v[i]->members);
    vec_free(&e.layers);
    arena_free(&e.arena);
    if (diags_has_errors(e.d)) {
        program_free(p);
        return NULL;
    }
    return p;
}

