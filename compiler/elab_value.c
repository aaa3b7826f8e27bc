/* elab_value: values, conversions, and arithmetic with dtype promotion and broadcasting. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "elab_internal.h"
#include "interp.h"
#include "opsem.h"

const char *el_kind_name(const Value *v)
{
    switch (v->k) {
    case V_NUM: return v->is_bool ? "a boolean" : "a number";
    case V_STR: return "a string";
    case V_NODE: return "a tensor";
    case V_DIM: return "a dimension";
    case V_LIST: return "a list";
    case V_LAYER: return "a layer";
    case V_FN: return "a function";
    case V_DECL:
        return v->decl->kind == AST_OPTIMIZER ? "an optimizer declaration" : "a layer declaration";
    case V_BUILTIN: return v->args ? "an initializer with its arguments" : "a built-in function";
    case V_OPT: return "an optimizer";
    case V_LAZY: return "a value of the train block";
    default: return "an invalid value";
    }
}

Value el_error(Elab *e, Span span, const char *fmt, ...)
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

const char *el_shape_str(Elab *e, const Shape *s)
{
    char buf[256];
    shape_format(e->g, s, buf, sizeof buf);
    return arena_strdup(&e->arena, buf);
}

NodeId el_make(Elab *e, Node n, Span span)
{
    n.span = span;
    char err[512];
    NodeId id = graph_build(e->g, n, err, sizeof err);
    if (!id)
        el_error(e, span, "%s", err);
    return id;
}

Override *el_find_override(Elab *e, const char *key)
{
    for (int i = 0; i < e->opts->noverrides; i++)
        if (strcmp(e->opts->overrides[i].key, key) == 0)
            return &e->opts->overrides[i];
    return NULL;
}

NodeId el_hyper_node(Elab *e, int idx, Span span)
{
    Node n = {.op = OP_HYPER,
              .dtype = NND_F64,
              .idx = idx,
              .name = e->p->hypers.v[idx].name,
              .span = span};
    return graph_append(e->g, &n);
}

NodeId el_new_hyper(Elab *e, const char *name, double value, Span span)
{
    HyperInfo h = {arena_strdup(&e->p->arena, name), value, span, false};
    vec_push(&e->p->hypers, h);
    return el_hyper_node(e, e->p->hypers.n - 1, span);
}

NodeId el_new_state(Elab *e, const char *name, int param, Shape shape, NndDType dt, NodeId init,
                    Span span)
{
    Node sn = {.op = OP_STATE,
               .dtype = (uint8_t)dt,
               .shape = shape,
               .idx = e->p->states.n,
               .name = name,
               .span = span};
    NodeId id = graph_append(e->g, &sn);
    StateInfo si = {name, param, id, init, span, {0}};
    vec_push(&e->p->states, si);
    return id;
}

/* Marks the hyper-parameters a compile-time value was computed from. */
static void mark_baked(Elab *e, NodeId root)
{
    bool *from = xcalloc((size_t)graph_count(e->g), 1);
    graph_mark_live(e->g, &root, 1, from);
    for (NodeId id = 1; id <= root; id++)
        if (from[id] && nd(e, id)->op == OP_HYPER)
            e->p->hypers.v[nd(e, id)->idx].baked = true;
    free(from);
}

bool el_reads(Elab *e, NodeId root, const OpId *ops, int nops)
{
    bool *from = xcalloc((size_t)graph_count(e->g), 1);
    graph_mark_live(e->g, &root, 1, from);
    bool found = false;
    for (NodeId id = 1; id <= root && !found; id++)
        for (int k = 0; from[id] && k < nops; k++)
            found |= nd(e, id)->op == ops[k];
    free(from);
    return found;
}

bool el_depends_on_data(Elab *e, NodeId root)
{
    /* one flag per node, computed as nodes are added: inputs have smaller ids */
    while (e->datadep.n < graph_count(e->g)) {
        const Node *n = nd(e, (NodeId)e->datadep.n);
        bool dep =
            e->datadep.n > 0 &&
            (n->op == OP_PARAM || n->op == OP_STATE || n->op == OP_INPUT || n->op == OP_RANDU ||
             n->op == OP_RANDN || n->op == OP_RANDSTEP || n->op == OP_DIMSIZE);
        for (int i = 0; i < n->nin && !dep; i++)
            dep = e->datadep.v[n->in[i]];
        vec_push(&e->datadep, dep);
    }
    return e->datadep.v[root];
}

bool el_weak(Elab *e, NodeId n)
{
    const Node *x = nd(e, n);
    return e->p->float_dtype != NND_F64 && x->dtype == NND_F64 && x->shape.rank == 0 &&
           !el_depends_on_data(e, n);
}

bool el_to_number(Elab *e, Value v, Span span, const char *what, double *out)
{
    if (v.k == V_ERR)
        return false;
    if (v.k == V_NUM) {
        *out = v.num;
        return true;
    }
    if (v.k == V_NODE && nd(e, v.node)->shape.rank == 0 && !el_depends_on_data(e, v.node)) {
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
    el_error(e, span, "%s must be a number known at compile time, not %s", what, el_kind_name(&v));
    return false;
}

bool el_to_int(Elab *e, Value v, Span span, const char *what, int64_t *out)
{
    double x;
    if (!el_to_number(e, v, span, what, &x))
        return false;
    if (x != floor(x) || fabs(x) > 9e15) {
        el_error(e, span, "%s must be a whole number, got %g", what, x);
        return false;
    }
    *out = (int64_t)x;
    return true;
}

static NndDType num_dtype(Elab *e, const Value *v)
{
    return v->is_bool ? NND_BOOL : e->p->float_dtype;
}

NodeId el_const_node(Elab *e, double x, NndDType dt, Span span)
{
    return gb_const(e->g, itensor_round(dt, x), dt, span);
}

/* Flattens a rectangular nested list of numbers; false (reported) if ragged. */
static bool list_flatten(Elab *e, const Value *v, Span span, int depth, Shape *shape,
                         DoubleVec *out, bool *all_int)
{
    if (v->k != V_LIST) {
        if (depth != shape->rank && shape->rank >= 0) {
            el_error(e, span, "ragged tensor literal: rows of different lengths");
            return false;
        }
        double x;
        if (v->k != V_NUM) {
            el_error(e, span, "a tensor literal holds numbers, not %s", el_kind_name(v));
            return false;
        }
        x = v->num;
        if (!v->is_int)
            *all_int = false;
        vec_push(out, x);
        return true;
    }
    if (depth >= NND_MAX_RANK) {
        el_error(e, span, "tensor literal nested more than %d deep", NND_MAX_RANK);
        return false;
    }
    if (depth >= shape->rank) {
        shape->rank = depth + 1;
        shape->d[depth] = v->list->n;
    } else if (shape->d[depth] != v->list->n) {
        el_error(e, span, "ragged tensor literal: rows of different lengths");
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
        el_error(e, span, "ragged tensor literal: rows of different lengths");
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

NodeId el_to_node(Elab *e, Value v, Span span)
{
    switch (v.k) {
    case V_NODE: return v.node;
    case V_NUM: return el_const_node(e, v.num, num_dtype(e, &v), span);
    case V_DIM: return dim_node(e, v, span);
    case V_LIST: return list_to_node(e, &v, span);
    case V_ERR: return 0;
    default:
        if (v.k == V_BUILTIN && v.args)
            el_error(e, span,
                     "'%s' draws a parameter's initial values; it can only be used in a "
                     "parameter initializer",
                     builtin_info[v.builtin].name);
        else
            el_error(e, span, "expected a tensor, got %s", el_kind_name(&v));
        return 0;
    }
}

bool el_to_shape(Elab *e, Value v, Span span, const char *what, Shape *out, int *minus_axis)
{
    if (minus_axis)
        *minus_axis = -1;
    if (v.k == V_ERR)
        return false;
    if (v.k != V_LIST) {
        int64_t n;
        if (v.k == V_NUM && el_to_int(e, v, span, what, &n)) {
            *out = (Shape){1, {n}};
            return true;
        }
        el_error(e, span, "%s must be a list of dimensions like [B, 784]", what);
        return false;
    }
    if (v.list->n > NND_MAX_RANK) {
        el_error(e, span, "%s has more than %d dimensions", what, NND_MAX_RANK);
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
        if (!el_to_int(e, d, span, what, &n))
            return false;
        if (n == -1 && minus_axis) {
            if (*minus_axis >= 0) {
                el_error(e, span, "only one dimension can be -1");
                return false;
            }
            *minus_axis = i;
            n = 1;
        } else if (n < 1) {
            el_error(e, span, "%s: dimension %d is %lld; dimensions must be at least 1", what, i,
                     (long long)n);
            return false;
        }
        s.d[i] = n;
    }
    *out = s;
    return true;
}

bool el_str_arg(Elab *e, Value *v, Span span, const char *what, const char **out)
{
    if (!v) {
        *out = NULL;
        return true;
    }
    if (v->k == V_ERR)
        return false;
    if (v->k != V_STR) {
        el_error(e, span, "%s must be a string, not %s", what, el_kind_name(v));
        return false;
    }
    *out = v->str;
    return true;
}

bool el_path_arg(Elab *e, Value *v, Span span, const char *what, const char **out)
{
    if (!el_str_arg(e, v, span, what, out))
        return false;
    if (*out && !**out) {
        el_error(e, span, "%s must not be empty", what);
        return false;
    }
    return true;
}

bool el_bool_arg(Elab *e, Value *v, Span span, const char *what, bool dflt, bool *out)
{
    if (!v) {
        *out = dflt;
        return true;
    }
    double x;
    if (!el_to_number(e, *v, span, what, &x))
        return false;
    if (x != 0 && x != 1) {
        el_error(e, span, "%s must be true or false, got %g", what, x);
        return false;
    }
    *out = x != 0;
    return true;
}

NodeId el_float_node(Elab *e, Value v, Span span)
{
    NodeId n = el_to_node(e, v, span);
    if (n && !dtype_is_float(nd(e, n)->dtype))
        n = gb_cast(e->g, n, e->p->float_dtype, span);
    return n;
}

OpId el_binop_id(AstOp op)
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

static bool is_compare(OpId op) { return op >= OP_LT && op <= OP_NE; }

static bool is_logic(OpId op) { return op == OP_AND || op == OP_OR; }

NndDType el_dtype_rank_max(NndDType a, NndDType b)
{
    static const int rank[] = {[NND_BOOL] = 0, [NND_I32] = 1, [NND_F32] = 2, [NND_F64] = 3};
    return rank[a] >= rank[b] ? a : b;
}

/* How the op is written in a program: "-" for OP_SUB, "min" for OP_MIN. */
static const char *op_written(OpId op)
{
    switch (op) {
    case OP_ADD: return "+";
    case OP_SUB: return "-";
    case OP_MUL: return "*";
    case OP_DIV: return "/";
    case OP_POW: return "^";
    case OP_LT: return "<";
    case OP_LE: return "<=";
    case OP_GT: return ">";
    case OP_GE: return ">=";
    case OP_EQ: return "==";
    case OP_NE: return "!=";
    default: return op_info[op].name;
    }
}

static int batch_axes(const Shape *s, int64_t batch)
{
    int n = 0;
    for (int i = 0; i < s->rank; i++)
        n += s->d[i] == batch;
    return n;
}

/* Records o when its result holds the batch dimension more often than either
 * operand: each sample of one side met every sample of the other. */
static void note_outer_product(Elab *e, OuterProduct *o, NodeId node)
{
    int64_t batch = e->p->sym_batch;
    if (batch >= 0)
        return; /* no train block's data (nnd check of a library) */
    int ra = batch_axes(&o->r, batch);
    if (ra <= batch_axes(&o->a, batch) || ra <= batch_axes(&o->b, batch))
        return;
    o->node = node;
    for (int i = e->depth - 1; i >= 0 && o->ncalls < 3; i--)
        o->calls[o->ncalls++] = e->frames[i];
    vec_push(&e->outer, *o);
}

void el_warn_outer_products(Elab *e, NodeId root)
{
    uint8_t *seen = xcalloc((size_t)root + 1, 1);
    seen[root] = 1;
    for (NodeId q = root; q > 0; q--)
        if (seen[q])
            for (int k = 0; k < nd(e, q)->nin; k++)
                seen[nd(e, q)->in[k]] = 1;
    for (int i = 0; i < e->outer.n; i++) {
        OuterProduct *o = &e->outer.v[i];
        bool again = false; /* the same op reached through another call */
        for (int k = 0; k < i; k++)
            again |= e->outer.v[k].span.file == o->span.file &&
                     e->outer.v[k].span.start == o->span.start && e->outer.v[k].node <= root &&
                     seen[e->outer.v[k].node];
        if (o->node > root || !seen[o->node] || again)
            continue;
        int d = diag_warning(e->d, o->span,
                             "'%s' broadcasts %s against %s into %s: every sample meets every "
                             "other sample, and the loss uses the result",
                             op_written(o->op), el_shape_str(e, &o->a), el_shape_str(e, &o->b),
                             el_shape_str(e, &o->r));
        diag_label(e->d, d, "to pair each sample with its own, give both the same rank");
        for (int k = 0; k < o->ncalls; k++)
            diag_note(e->d, o->calls[k].call, "in %s, called here", o->calls[k].name);
        diag_note(e->d, span_none(),
                  "keepdims = true keeps a reduced axis; reshape(y, [size(y, 0)]) drops one; "
                  "broadcast(...) one side to %s if the outer product is meant",
                  el_shape_str(e, &o->r));
    }
    free(seen);
    e->outer.n = 0;
}

Value el_binop(Elab *e, OpId op, Value a, Value b, Span span)
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
        double r = opsem_eval(op, NND_F64, (const double[]){a.num, b.num});
        if (is_compare(op) || is_logic(op))
            return vbool(r != 0);
        Value v = vfloat(r);
        v.is_int = a.is_int && b.is_int &&
                   (op == OP_ADD || op == OP_SUB || op == OP_MUL || op == OP_MIN || op == OP_MAX ||
                    (op == OP_POW && b.num >= 0)) &&
                   fabs(r) < 9e15;
        return v;
    }
    bool tensor_a = a.k == V_NODE || a.k == V_LIST || a.k == V_DIM;
    bool tensor_b = b.k == V_NODE || b.k == V_LIST || b.k == V_DIM;
    if (!(tensor_a || a.k == V_NUM) || !(tensor_b || b.k == V_NUM))
        return el_error(e, span, "operator '%s' does not apply to %s and %s", op_info[op].name,
                        el_kind_name(&a), el_kind_name(&b));
    NndDType fl = e->p->float_dtype;
    NodeId na, nb;
    if (a.k == V_NUM || b.k == V_NUM) {
        /* one side is a weakly typed number */
        Value *num = a.k == V_NUM ? &a : &b;
        NodeId t = el_to_node(e, a.k == V_NUM ? b : a, span);
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
        NodeId c = el_const_node(e, num->num, dt, span);
        na = a.k == V_NUM ? c : t;
        nb = a.k == V_NUM ? t : c;
    } else {
        na = el_to_node(e, a, span);
        nb = el_to_node(e, b, span);
        if (!na || !nb)
            return verr();
        /* hyper-parameter arithmetic is f64; where it meets the data it takes the
         * program's float type, rounded once (as PyTorch's Python floats do) */
        bool wa = el_weak(e, na), wb = el_weak(e, nb);
        if (wa && !wb)
            na = gb_cast(e->g, na, fl, span);
        if (wb && !wa)
            nb = gb_cast(e->g, nb, fl, span);
        NndDType da = nd(e, na)->dtype, db = nd(e, nb)->dtype;
        NndDType dt = el_dtype_rank_max(da, db);
        if (is_logic(op))
            dt = NND_BOOL;
        else if (!is_compare(op) && (dt == NND_BOOL || (dt == NND_I32 && op == OP_DIV)))
            dt = fl;
        if (is_logic(op) && (da != NND_BOOL || db != NND_BOOL))
            return el_error(e, span, "'%s' needs booleans, got %s and %s", op_info[op].name,
                            dtype_name(da), dtype_name(db));
        na = gb_cast(e->g, na, dt, span);
        nb = gb_cast(e->g, nb, dt, span);
    }
    if (is_logic(op) && (nd(e, na)->dtype != NND_BOOL || nd(e, nb)->dtype != NND_BOOL))
        return el_error(e, span, "'%s' needs booleans", op_info[op].name);
    Shape s;
    char err[512];
    if (!shape_broadcast(e->g, &nd(e, na)->shape, &nd(e, nb)->shape, &s, err, sizeof err))
        return el_error(e, span, "%s", err);
    OuterProduct o = {0, op, nd(e, na)->shape, nd(e, nb)->shape, s, span, 0, {{0}}};
    na = gb_broadcast(e->g, na, &s, span);
    nb = gb_broadcast(e->g, nb, &s, span);
    Value r = vnode(el_make(e, (Node){.op = (uint8_t)op, .nin = 2, .in = {na, nb}}, span));
    if (r.k == V_NODE && o.a.rank != o.b.rank)
        note_outer_product(e, &o, r.node);
    return r;
}

Value el_matmul(Elab *e, Value a, Value b, Span span)
{
    NodeId na = el_to_node(e, a, span), nb = el_to_node(e, b, span);
    if (!na || !nb)
        return verr();
    NndDType fl = e->p->float_dtype;
    if (!dtype_is_float(nd(e, na)->dtype))
        na = gb_cast(e->g, na, fl, span);
    if (!dtype_is_float(nd(e, nb)->dtype))
        nb = gb_cast(e->g, nb, fl, span);
    NndDType dt = el_dtype_rank_max(nd(e, na)->dtype, nd(e, nb)->dtype);
    na = gb_cast(e->g, na, dt, span);
    nb = gb_cast(e->g, nb, dt, span);
    return vnode(el_make(e, (Node){.op = OP_MATMUL, .nin = 2, .in = {na, nb}}, span));
}

Value el_unop(Elab *e, OpId op, Value a, Span span)
{
    if (a.k == V_ERR)
        return verr();
    if (a.k == V_DIM && a.dim >= 0)
        a = vnum((double)a.dim);
    if (a.k == V_NUM) {
        double r = opsem_eval(op, NND_F64, &a.num);
        if (op == OP_NOT)
            return vbool(r != 0);
        Value v = vfloat(r);
        v.is_int = a.is_int && (op == OP_NEG || op == OP_ABS || op == OP_SIGN || op == OP_RELU ||
                                op == OP_FLOOR);
        if (op == OP_FLOOR)
            v.is_int = fabs(v.num) < 9e15;
        return v;
    }
    NodeId n = el_to_node(e, a, span);
    if (!n)
        return verr();
    NndDType dt = nd(e, n)->dtype;
    if (op == OP_NOT) {
        if (dt != NND_BOOL)
            return el_error(e, span, "'not' needs a boolean, got %s", dtype_name(dt));
    } else if (dt == NND_BOOL ||
               (dt == NND_I32 && op != OP_NEG && op != OP_ABS && op != OP_SIGN && op != OP_RELU)) {
        n = gb_cast(e->g, n, e->p->float_dtype, span);
    }
    return vnode(el_make(e, (Node){.op = (uint8_t)op, .nin = 1, .in = {n}}, span));
}

Value el_select3(Elab *e, Value c, Value a, Value b, Span span)
{
    if (c.k == V_ERR || a.k == V_ERR || b.k == V_ERR)
        return verr();
    NodeId nc = el_to_node(e, c, span);
    if (!nc)
        return verr();
    if (nd(e, nc)->dtype != NND_BOOL) {
        Value z = el_binop(e, OP_NE, vnode(nc), vnum(0), span);
        if (z.k == V_ERR)
            return z;
        nc = z.node;
    }
    /* the branches meet as in arithmetic: one dtype, one shape */
    Value probe = el_binop(e, OP_ADD, a.k == V_NUM && a.is_bool ? vnum(a.num) : a,
                           b.k == V_NUM && b.is_bool ? vnum(b.num) : b, span);
    if (probe.k == V_ERR)
        return probe;
    Node *pn = nd(e, probe.node);
    NndDType dt = pn->dtype;
    bool both_bool =
        (a.k == V_NUM ? a.is_bool : a.k == V_NODE && nd(e, a.node)->dtype == NND_BOOL) &&
        (b.k == V_NUM ? b.is_bool : b.k == V_NODE && nd(e, b.node)->dtype == NND_BOOL);
    if (both_bool)
        dt = NND_BOOL;
    Shape s;
    char err[512];
    if (!shape_broadcast(e->g, &pn->shape, &nd(e, nc)->shape, &s, err, sizeof err))
        return el_error(e, span, "%s", err);
    NodeId na = a.k == V_NUM ? el_const_node(e, a.num, dt, span)
                             : gb_cast(e->g, el_to_node(e, a, span), dt, span);
    NodeId nb = b.k == V_NUM ? el_const_node(e, b.num, dt, span)
                             : gb_cast(e->g, el_to_node(e, b, span), dt, span);
    if (!na || !nb)
        return verr();
    nc = gb_broadcast(e->g, nc, &s, span);
    na = gb_broadcast(e->g, na, &s, span);
    nb = gb_broadcast(e->g, nb, &s, span);
    return vnode(el_make(e, (Node){.op = OP_SELECT, .nin = 3, .in = {nc, na, nb}}, span));
}
