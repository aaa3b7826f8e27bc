/* elab_builtin: the built-in functions. */
#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff.h"
#include "elab_internal.h"

Value *el_barg(Args *a, int id, int i)
{
    int k = el_arg_find(a, builtin_info[id].params[i], i);
    return k >= 0 ? &a->v[k] : NULL;
}

Span el_bspan(Args *a, int id, int i, Span dflt)
{
    int k = el_arg_find(a, builtin_info[id].params[i], i);
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
        if (!el_to_int(e, a, span, "an axis", &k))
            return false;
        if (k < -rank || k >= rank) {
            el_error(e, span, "axis %lld is out of range for a tensor of rank %d", (long long)k,
                     rank);
            return false;
        }
        if (k < 0)
            k += rank;
        *mask |= 1u << k;
    }
    return true;
}

static Value reduce(Elab *e, int id, OpId op, Args *a, Span span)
{
    Value *x = el_barg(a, id, 0);
    NodeId n = op == OP_SUM || op == OP_RMAX ? el_to_node(e, *x, span) : el_float_node(e, *x, span);
    if (!n)
        return verr();
    if (nd(e, n)->dtype == NND_BOOL)
        n = gb_cast(e->g, n, e->p->float_dtype, span);
    int axis_i = id == BI_MIN || id == BI_MAX ? 2 : 1;
    uint32_t mask;
    bool keep;
    if (!axes_mask(e, el_barg(a, id, axis_i), el_bspan(a, id, axis_i, span), nd(e, n)->shape.rank,
                   &mask) ||
        !el_bool_arg(e, el_barg(a, id, axis_i + 1), span, "keepdims", false, &keep))
        return verr();
    return vnode(el_make(
        e, (Node){.op = (uint8_t)op, .nin = 1, .in = {n}, .mask = mask, .keep = keep}, span));
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
            el_error(e, span, "%s takes one number or two, [height, width]", what);
            return false;
        }
        for (int i = 0; i < 2; i++)
            if (!el_to_int(e, v->list->v[i], span, what, &out[i]))
                return false;
    } else if (!el_to_int(e, *v, span, what, &out[0])) {
        return false;
    } else {
        out[1] = out[0];
    }
    for (int i = 0; i < 2; i++)
        if (out[i] < lo || out[i] > (1 << 20)) {
            el_error(e, span, "%s is %lld; it must be at %s %lld", what, (long long)out[i],
                     out[i] < lo ? "least" : "most", out[i] < lo ? (long long)lo : 1LL << 20);
            return false;
        }
    return true;
}

static Value conv2d(Elab *e, Args *a, Span span)
{
    int id = BI_CONV2D;
    NodeId x = el_float_node(e, *el_barg(a, id, 0), el_bspan(a, id, 0, span));
    NodeId w = el_float_node(e, *el_barg(a, id, 1), el_bspan(a, id, 1, span));
    if (!x || !w)
        return verr();
    if (nd(e, x)->shape.rank != 4 || nd(e, w)->shape.rank != 4)
        return el_error(e, span,
                        "conv2d takes x as [N, C, H, W] and w as [out, C / groups, kh, kw], "
                        "got %s and %s",
                        el_shape_str(e, &nd(e, x)->shape), el_shape_str(e, &nd(e, w)->shape));
    int64_t st[2], pd[2], dl[2], groups = 1;
    if (!int_pair(e, el_barg(a, id, 2), el_bspan(a, id, 2, span), "stride", 1, 1, st) ||
        !int_pair(e, el_barg(a, id, 4), el_bspan(a, id, 4, span), "dilation", 1, 1, dl))
        return verr();
    Value *pv = el_barg(a, id, 3);
    if (pv && pv->k == V_STR) {
        /* "valid": none; "same": the output keeps the input's size (stride 1) */
        if (strcmp(pv->str, "valid") == 0) {
            pd[0] = pd[1] = 0;
        } else if (strcmp(pv->str, "same") == 0) {
            if (st[0] != 1 || st[1] != 1)
                return el_error(e, el_bspan(a, id, 3, span), "padding = \"same\" needs stride 1");
            for (int i = 0; i < 2; i++) {
                int64_t total = dl[i] * (nd(e, w)->shape.d[2 + i] - 1);
                if (total % 2)
                    return el_error(e, el_bspan(a, id, 3, span),
                                    "padding = \"same\" needs an odd kernel (times dilation): it "
                                    "would pad one side more than the other");
                pd[i] = total / 2;
            }
        } else {
            return el_error(e, el_bspan(a, id, 3, span),
                            "padding is a number, a pair, \"same\" or "
                            "\"valid\", not \"%s\"",
                            pv->str);
        }
    } else if (!int_pair(e, pv, el_bspan(a, id, 3, span), "padding", 0, 0, pd)) {
        return verr();
    }
    Value *gv = el_barg(a, id, 5);
    if (gv && !el_to_int(e, *gv, el_bspan(a, id, 5, span), "groups", &groups))
        return verr();
    if (groups < 1)
        return el_error(e, el_bspan(a, id, 5, span), "groups must be at least 1");
    int64_t ints[7] = {st[0], st[1], pd[0], pd[1], dl[0], dl[1], groups};
    if (nd(e, x)->dtype != nd(e, w)->dtype) {
        NndDType dt = el_dtype_rank_max((NndDType)nd(e, x)->dtype, (NndDType)nd(e, w)->dtype);
        x = gb_cast(e->g, x, dt, span);
        w = gb_cast(e->g, w, dt, span);
    }
    return vnode(el_make(
        e, (Node){.op = OP_CONV2D, .nin = 2, .in = {x, w}, .pool = graph_pool_ints(e->g, ints, 7)},
        span));
}

static Value pool2d(Elab *e, int id, Args *a, Span span)
{
    NodeId x = el_float_node(e, *el_barg(a, id, 0), el_bspan(a, id, 0, span));
    if (!x)
        return verr();
    if (nd(e, x)->shape.rank != 4)
        return el_error(e, span, "%s takes x as [N, C, H, W], got %s", builtin_info[id].name,
                        el_shape_str(e, &nd(e, x)->shape));
    int64_t k[2], st[2], pd[2];
    if (!int_pair(e, el_barg(a, id, 1), el_bspan(a, id, 1, span), "kernel", 1, 1, k) ||
        !int_pair(e, el_barg(a, id, 2), el_bspan(a, id, 2, span), "stride", 1, 1, st) ||
        !int_pair(e, el_barg(a, id, 3), el_bspan(a, id, 3, span), "padding", 0, 0, pd))
        return verr();
    if (!el_barg(a, id, 2))
        st[0] = k[0], st[1] = k[1];
    if (2 * pd[0] > k[0] || 2 * pd[1] > k[1])
        return el_error(e, el_bspan(a, id, 3, span), "padding must be at most half the kernel");
    int64_t ints[6] = {k[0], k[1], st[0], st[1], pd[0], pd[1]};
    uint32_t pool = graph_pool_ints(e->g, ints, 6);
    if (id == BI_MAX_POOL2D)
        return vnode(
            el_make(e, (Node){.op = OP_POOLMAX, .nin = 2, .in = {x, x}, .pool = pool}, span));
    return vnode(el_make(e, (Node){.op = OP_POOLAVG, .nin = 1, .in = {x}, .pool = pool}, span));
}

/* Reductions: min, max (two arguments: elementwise), sum, mean, logsumexp, norm, rms
 * and argmax, over the axes of `axis` (all by default; argmax: the last). */
static Value builtin_reduction(Elab *e, int id, Args *a, Span span)
{
    const BuiltinInfo *bi = &builtin_info[id];
    Value *x = el_barg(a, id, 0);
    switch ((BuiltinId)id) {
    case BI_MIN:
    case BI_MAX: {
        Value *b = el_barg(a, id, 1);
        if (b) {
            if (el_barg(a, id, 2) || el_barg(a, id, 3))
                return el_error(e, span, "%s(a, b) is elementwise: it takes no axis", bi->name);
            return el_binop(e, id == BI_MIN ? OP_MIN : OP_MAX, *x, *b, span);
        }
        if (x->k == V_NUM)
            return *x;
        if (id == BI_MAX)
            return reduce(e, id, OP_RMAX, a, span);
        /* min over axes = -max(-x) */
        Value neg = el_unop(e, OP_NEG, *x, span);
        Args b2 = *a;
        int k = el_arg_find(a, "a", 0);
        b2.v[k] = neg;
        return el_unop(e, OP_NEG, reduce(e, id, OP_RMAX, &b2, span), span);
    }
    case BI_SUM: return reduce(e, id, OP_SUM, a, span);
    case BI_MEAN: return reduce(e, id, OP_MEAN, a, span);
    case BI_LOGSUMEXP: return reduce(e, id, OP_LOGSUMEXP, a, span);
    case BI_NORM:
    case BI_RMS: {
        Value sq = el_binop(e, OP_MUL, *x, *x, span);
        Args b2 = *a;
        b2.v[el_arg_find(a, "x", 0)] = sq;
        return el_unop(e, OP_SQRT, reduce(e, id, id == BI_NORM ? OP_SUM : OP_MEAN, &b2, span),
                       span);
    }
    case BI_ARGMAX: {
        NodeId n = el_to_node(e, *x, span);
        if (!n)
            return verr();
        int rank = nd(e, n)->shape.rank;
        uint32_t mask;
        Value dflt = vnum(-1);
        Value *ax = el_barg(a, id, 1);
        bool keep;
        if (!axes_mask(e, ax ? ax : &dflt, el_bspan(a, id, 1, span), rank, &mask) ||
            !el_bool_arg(e, el_barg(a, id, 2), span, "keepdims", false, &keep))
            return verr();
        if (__builtin_popcount(mask) != 1)
            return el_error(e, span, "argmax takes one axis");
        return vnode(el_make(
            e,
            (Node){.op = OP_ARGMAX, .nin = 1, .in = {n}, .idx = __builtin_ctz(mask), .keep = keep},
            span));
    }
    default: return el_error(e, span, "'%s' cannot be used here", bi->name);
    }
}

/* reshape(x, shape) with one -1 in shape: the -1 stands for what the concrete
 * dimensions leave; the symbolic ones (the batch size) must appear in the new shape
 * as they are.  Fills in s->d[minus], or reports why not. */
static bool reshape_fill(Elab *e, NodeId n, Shape *s, int minus, Span span)
{
    const Shape *in = &nd(e, n)->shape;
    int64_t sa[NND_MAX_RANK], st[NND_MAX_RANK];
    int na = 0, nt = 0;
    for (int i = 0; i < in->rank; i++)
        if (in->d[i] < 0)
            sa[na++] = in->d[i];
    for (int i = 0; i < s->rank; i++)
        if (s->d[i] < 0)
            st[nt++] = s->d[i];
    bool same = na == nt;
    for (int i = 0; same && i < na; i++)
        same = sa[i] == st[i];
    StrBuf want = {0};
    sb_putc(&want, '[');
    for (int i = 0; i < s->rank; i++) {
        Shape one = {1, {s->d[i]}};
        const char *t = i == minus ? "[-1]" : el_shape_str(e, &one);
        sb_printf(&want, "%s%.*s", i ? ", " : "", (int)strlen(t) - 2, t + 1);
    }
    sb_putc(&want, ']');
    const char *ws = arena_strdup(&e->arena, want.s);
    sb_free(&want);
    if (!same) {
        el_error(e, span,
                 "cannot reshape %s to %s: -1 cannot stand for the batch "
                 "dimension; keep it in the new shape",
                 el_shape_str(e, in), ws);
        return false;
    }
    int64_t have = shape_static_numel(in, NULL);
    int64_t rest = shape_static_numel(s, NULL);
    if (have % rest) {
        el_error(e, span,
                 "cannot reshape %s to %s: %lld elements do not split "
                 "into parts of %lld",
                 el_shape_str(e, in), ws, (long long)have, (long long)rest);
        return false;
    }
    s->d[minus] = have / rest;
    return true;
}

/* Shapes: transpose (the last two axes, or perm), reshape, broadcast, and the compile-time
 * queries size and rank. */
static Value builtin_shape(Elab *e, int id, Args *a, Span span)
{
    Value *x = el_barg(a, id, 0);
    switch ((BuiltinId)id) {
    case BI_TRANSPOSE: {
        NodeId n = el_to_node(e, *x, span);
        if (!n)
            return verr();
        int r = nd(e, n)->shape.rank;
        int perm[NND_MAX_RANK];
        Value *p = el_barg(a, id, 1);
        if (!p) {
            if (r < 2)
                return el_error(e, span, "transpose needs at least 2 axes, got rank %d", r);
            for (int i = 0; i < r; i++)
                perm[i] = i;
            perm[r - 2] = r - 1;
            perm[r - 1] = r - 2;
        } else {
            if (p->k != V_LIST || p->list->n != r)
                return el_error(e, el_bspan(a, id, 1, span), "perm must list all %d axes", r);
            for (int i = 0; i < r; i++) {
                int64_t k;
                if (!el_to_int(e, p->list->v[i], span, "an axis", &k))
                    return verr();
                perm[i] = (int)(k < 0 ? k + r : k);
            }
        }
        uint32_t pool = (uint32_t)e->g->ipool.n;
        for (int i = 0; i < r; i++)
            vec_push(&e->g->ipool, perm[i]);
        return vnode(
            el_make(e, (Node){.op = OP_TRANSPOSE, .nin = 1, .in = {n}, .pool = pool}, span));
    }
    case BI_RESHAPE: {
        NodeId n = el_to_node(e, *x, span);
        Shape s;
        int minus;
        if (!n || !el_to_shape(e, *el_barg(a, id, 1), el_bspan(a, id, 1, span), "the new shape", &s,
                               &minus))
            return verr();
        if (minus >= 0 && !reshape_fill(e, n, &s, minus, span))
            return verr();
        return vnode(el_make(e, (Node){.op = OP_RESHAPE, .nin = 1, .in = {n}, .shape = s}, span));
    }
    case BI_ARANGE: { /* [0, 1, ..., n - 1], a constant of the float type */
        int64_t n;
        if (!el_to_int(e, *x, el_bspan(a, id, 0, span), "arange's length", &n))
            return verr();
        if (n < 1 || n > (1 << 24))
            return el_error(e, el_bspan(a, id, 0, span),
                            "arange needs a length from 1 to %d, got %lld", 1 << 24, (long long)n);
        uint32_t off = (uint32_t)e->g->fpool.n;
        for (int64_t i = 0; i < n; i++)
            vec_push(&e->g->fpool, (double)i);
        Node t = {.op = OP_TENSOR,
                  .dtype = (uint8_t)e->p->float_dtype,
                  .shape = shape_make(1, &n),
                  .pool = off,
                  .span = span};
        return vnode(graph_append(e->g, &t));
    }
    case BI_SIZE: { /* a symbolic dimension stays one: it can size a reshape */
        NodeId n = el_to_node(e, *x, span);
        if (!n)
            return verr();
        uint32_t mask;
        if (!axes_mask(e, el_barg(a, id, 1), el_bspan(a, id, 1, span), nd(e, n)->shape.rank, &mask))
            return verr();
        int axis = __builtin_ctz(mask | (1u << 31));
        if (mask == 1u << axis && nd(e, n)->shape.d[axis] < 0) /* one symbolic dimension */
            return (Value){.k = V_DIM, .dim = nd(e, n)->shape.d[axis], .node = n, .axis = axis};
        NodeId sz = gb_dimsize(e->g, n, mask, e->p->float_dtype, span);
        if (nd(e, sz)->op == OP_CONST)
            return vnum(nd(e, sz)->num);
        return vnode(sz);
    }
    case BI_BROADCAST: {
        NodeId n = el_to_node(e, *x, span);
        Shape s, r;
        char err[512];
        if (!n ||
            !el_to_shape(e, *el_barg(a, id, 1), el_bspan(a, id, 1, span), "the shape", &s, NULL))
            return verr();
        if (!shape_broadcast(e->g, &nd(e, n)->shape, &s, &r, err, sizeof err) ||
            !shape_equal(&r, &s))
            return el_error(e, span, "cannot broadcast %s to %s", el_shape_str(e, &nd(e, n)->shape),
                            el_shape_str(e, &s));
        return vnode(gb_broadcast(e->g, n, &s, span));
    }
    case BI_RANK: {
        if (x->k == V_NUM)
            return vnum(0);
        NodeId n = el_to_node(e, *x, span);
        return n ? vnum(nd(e, n)->shape.rank) : verr();
    }
    default: return el_error(e, span, "'%s' cannot be used here", builtin_info[id].name);
    }
}

/* Indexing and selection: pick (a label per row), one_hot, take (rows of a table),
 * concat (along an axis), where (elementwise choice; a known condition picks a
 * branch now). */
static Value builtin_index(Elab *e, int id, Args *a, Span span)
{
    Value *x = el_barg(a, id, 0);
    switch ((BuiltinId)id) {
    case BI_PICK: {
        NodeId n = el_float_node(e, *x, span), l = el_to_node(e, *el_barg(a, id, 1), span);
        if (!n || !l)
            return verr();
        const Shape *xs = &nd(e, n)->shape;
        if (xs->rank > 0 && xs->d[xs->rank - 1] > INT32_MAX)
            return el_error(e, span, "pick: %lld classes; at most %d are supported",
                            (long long)xs->d[xs->rank - 1], INT32_MAX);
        return vnode(el_make(e, (Node){.op = OP_PICK, .nin = 2, .in = {n, l}}, span));
    }
    case BI_ONE_HOT: {
        NodeId l = el_to_node(e, *x, span);
        int64_t depth;
        if (!l || !el_to_int(e, *el_barg(a, id, 1), el_bspan(a, id, 1, span), "depth", &depth))
            return verr();
        if (depth < 1 || depth > (1 << 24))
            return el_error(e, span, "one_hot depth must be between 1 and 2^24");
        return vnode(el_make(e,
                             (Node){.op = OP_ONE_HOT,
                                    .nin = 1,
                                    .in = {l},
                                    .idx = (int32_t)depth,
                                    .dtype = (uint8_t)e->p->float_dtype},
                             span));
    }
    case BI_TAKE: {
        NodeId t = el_float_node(e, *x, el_bspan(a, id, 0, span));
        NodeId i = el_to_node(e, *el_barg(a, id, 1), el_bspan(a, id, 1, span));
        if (!t || !i)
            return verr();
        return vnode(el_make(e, (Node){.op = OP_TAKE, .nin = 2, .in = {t, i}}, span));
    }
    case BI_CONCAT: {
        if (x->k != V_LIST || x->list->n < 1)
            return el_error(e, el_bspan(a, id, 0, span),
                            "concat takes a list of tensors: concat([a, b], axis = 1)");
        int64_t axis = 0;
        Value *av = el_barg(a, id, 1);
        if (av && !el_to_int(e, *av, el_bspan(a, id, 1, span), "the axis", &axis))
            return verr();
        NodeId acc = 0;
        for (int i = 0; i < x->list->n; i++) {
            NodeId n = el_to_node(e, x->list->v[i], span);
            if (!n)
                return verr();
            int r = nd(e, n)->shape.rank;
            int64_t ax = axis < 0 ? axis + r : axis;
            if (ax < 0 || ax >= r)
                return el_error(e, span, "axis %lld is out of range for a tensor of rank %d",
                                (long long)axis, r);
            if (!acc) {
                acc = n;
                continue;
            }
            NndDType dt = el_dtype_rank_max((NndDType)nd(e, acc)->dtype, (NndDType)nd(e, n)->dtype);
            acc = gb_cast(e->g, acc, dt, span);
            n = gb_cast(e->g, n, dt, span);
            acc = el_make(e, (Node){.op = OP_CONCAT, .nin = 2, .in = {acc, n}, .idx = (int32_t)ax},
                          span);
            if (!acc)
                return verr();
        }
        return vnode(acc);
    }
    case BI_WHERE: {
        Value c = *x;
        if (c.k == V_NUM)
            return c.num != 0 ? *el_barg(a, id, 1) : *el_barg(a, id, 2);
        return el_select3(e, c, *el_barg(a, id, 1), *el_barg(a, id, 2), span);
    }
    default: return el_error(e, span, "'%s' cannot be used here", builtin_info[id].name);
    }
}

/* Dtype conversions: f32, f64, i32 and float (the program's float dtype).  A number
 * stays a number (i32: truncated); --dtype f64 makes f32 mean f64. */
static Value builtin_dtype(Elab *e, int id, Args *a, Span span)
{
    Value *x = el_barg(a, id, 0);
    NndDType dt = id == BI_F32   ? NND_F32
                  : id == BI_F64 ? NND_F64
                  : id == BI_I32 ? NND_I32
                                 : e->p->float_dtype;
    if (id == BI_F32 && e->p->float_dtype == NND_F64)
        dt = NND_F64; /* --dtype f64 makes the whole program f64 */
    if (x->k == V_NUM) {
        Value v = vfloat(dt == NND_I32 ? trunc(x->num) : x->num);
        v.is_int = dt == NND_I32 || (x->is_int && !x->is_bool);
        return v;
    }
    NodeId n = el_to_node(e, *x, span);
    if (!n)
        return verr();
    return vnode(gb_cast(e->g, n, dt, span));
}

/* Functions of parameters: grad(f, wrt), the gradient of a scalar, and the penalties
 * l1 and l2 (sums of |w| and w^2 over a model's parameters, filtered by name with
 * only / exclude). */
static Value builtin_params(Elab *e, int id, Args *a, Span span)
{
    const BuiltinInfo *bi = &builtin_info[id];
    Value *x = el_barg(a, id, 0);
    if (id == BI_GRAD) {
        Value *wrt = el_barg(a, id, 1);
        NodeId f = el_to_node(e, *x, span);
        if (!f)
            return verr();
        if (wrt->k == V_LAYER)
            return el_error(
                e, el_bspan(a, id, 1, span),
                "grad is taken with respect to a tensor; name a parameter like net.fc1.W");
        if (wrt->k != V_NODE)
            return el_error(e, el_bspan(a, id, 1, span),
                            "grad needs a tensor to differentiate by, not %s", el_kind_name(wrt));
        Node *fn = nd(e, f);
        if (fn->shape.rank != 0)
            return el_error(e, span,
                            "grad needs a scalar function, got shape %s; reduce it with sum() "
                            "or mean()",
                            el_shape_str(e, &fn->shape));
        if (!dtype_is_float(fn->dtype) || !dtype_is_float(nd(e, wrt->node)->dtype))
            return el_error(e, span, "grad needs float tensors");
        NodeId out;
        autodiff(e->g, f, &wrt->node, 1, &out);
        return vnode(out);
    }
    if (x->k != V_LAYER && x->k != V_LIST && !(x->k == V_NODE && nd(e, x->node)->op == OP_PARAM))
        return el_error(e, span, "%s takes a model, a layer or a parameter, not %s", bi->name,
                        el_kind_name(x));
    /* only / exclude: shell patterns on the parameters' names ("*.b": biases) */
    const char *only = NULL, *exclude = NULL;
    if ((el_barg(a, id, 1) &&
         !el_str_arg(e, el_barg(a, id, 1), el_bspan(a, id, 1, span), "only", &only)) ||
        (el_barg(a, id, 2) &&
         !el_str_arg(e, el_barg(a, id, 2), el_bspan(a, id, 2, span), "exclude", &exclude)))
        return verr();
    IntVec ps = {0};
    el_value_params(e, x, &ps, 0);
    NodeId total = 0;
    int kept = 0;
    for (int i = 0; i < ps.n; i++) {
        const char *pname = e->p->params.v[ps.v[i]].name;
        if ((only && fnmatch(only, pname, 0) != 0) || (exclude && fnmatch(exclude, pname, 0) == 0))
            continue;
        kept++;
        NodeId p = e->p->params.v[ps.v[i]].node;
        NodeId t =
            id == BI_L1 ? gb_unary(e->g, OP_ABS, p, span) : gb_binary(e->g, OP_MUL, p, p, span);
        int r = nd(e, t)->shape.rank;
        t = gb_reduce(e->g, OP_SUM, t, r ? (1u << r) - 1 : 0, false, span);
        t = gb_cast(e->g, t, e->p->float_dtype, span);
        total = total ? gb_binary(e->g, OP_ADD, total, t, span) : t;
    }
    if (ps.n && !kept)
        el_error(e, span, "%s: no parameter's name matches%s%s%s%s", bi->name,
                 only ? " only = " : "", only ? only : "",
                 exclude ? ", or all match exclude = " : "", exclude ? exclude : "");
    vec_free(&ps);
    if (!total)
        return vnum(0);
    return vnode(total);
}

/* Random numbers: rand_like(x), a fresh U[0,1) tensor shaped like x at every step
 * (and micro-batch), and the initializers uniform, normal and orthogonal, drawn once
 * for the parameter being initialized (keyed by its name). */
static Value builtin_random(Elab *e, int id, Args *a, Span span)
{
    const BuiltinInfo *bi = &builtin_info[id];
    Value *x = el_barg(a, id, 0);
    switch ((BuiltinId)id) {
    case BI_RAND_LIKE: {
        NodeId n = el_to_node(e, *x, span);
        if (!n)
            return verr();
        /* f64: the step stays exact (an f32 count would repeat masks past 2^24) */
        NodeId step = el_hyper_node(e, e->p->hyper_step, span);
        if (e->p->accumulate > 1) {
            /* each micro-batch of an update draws its own numbers: the counter is
             * step * k + the micro-batch's place */
            NodeId micro = el_hyper_node(e, e->p->hyper_micro, span);
            NodeId k = gb_const(e->g, (double)e->p->accumulate, NND_F64, span);
            step = gb_binary(e->g, OP_ADD, gb_binary(e->g, OP_MUL, step, k, span), micro, span);
        }
        NndDType dt =
            dtype_is_float(nd(e, n)->dtype) ? (NndDType)nd(e, n)->dtype : e->p->float_dtype;
        uint64_t key = nnd_stream_of("rand_like") + (uint64_t)e->rand_draws++ * 0x100000001B3ull;
        return vnode(el_make(e,
                             (Node){.op = OP_RANDSTEP,
                                    .nin = 1,
                                    .in = {step},
                                    .shape = nd(e, n)->shape,
                                    .dtype = (uint8_t)dt,
                                    .key = key,
                                    .num = (double)e->p->seed},
                             span));
    }
    case BI_ORTHOGONAL: {
        Value *gv = el_barg(a, id, 0);
        NodeId gain = el_float_node(e, gv ? *gv : vnum(1), span);
        if (!gain)
            return verr();
        gain = gb_cast(e->g, gain, e->init_dtype, span);
        uint64_t key = nnd_stream_of(e->init_name) + (uint64_t)e->init_draws++;
        return vnode(el_make(e,
                             (Node){.op = OP_ORTHO,
                                    .nin = 1,
                                    .in = {gain},
                                    .shape = e->init_shape,
                                    .dtype = (uint8_t)e->init_dtype,
                                    .key = key},
                             span));
    }
    case BI_UNIFORM:
    case BI_NORMAL: {
        Value *lo = el_barg(a, id, 0), *hi = el_barg(a, id, 1);
        Value l = lo ? *lo : vnum(id == BI_UNIFORM ? 0 : 0), h = hi ? *hi : vnum(1);
        NodeId nl = el_float_node(e, l, span), nh = el_float_node(e, h, span);
        if (!nl || !nh)
            return verr();
        nl = gb_cast(e->g, nl, e->init_dtype, span);
        nh = gb_cast(e->g, nh, e->init_dtype, span);
        if (nd(e, nl)->shape.rank || nd(e, nh)->shape.rank)
            return el_error(e, span, "%s takes scalar arguments", bi->name);
        uint64_t key = nnd_stream_of(e->init_name) + (uint64_t)e->init_draws++;
        return vnode(el_make(e,
                             (Node){.op = (uint8_t)(id == BI_UNIFORM ? OP_RANDU : OP_RANDN),
                                    .nin = 2,
                                    .in = {nl, nh},
                                    .shape = e->init_shape,
                                    .dtype = (uint8_t)e->init_dtype,
                                    .key = key},
                             span));
    }
    default: return el_error(e, span, "'%s' cannot be used here", bi->name);
    }
}

/* Composition: sequential(layers, x) calls each layer or function on the last one's
 * result; pair(x) is a list of two integers, [x, x] from one; probability(p) is p,
 * checked to lie in [0, 1] when it is known at compile time. */
static Value builtin_compose(Elab *e, int id, Args *a, Span span)
{
    Value *x = el_barg(a, id, 0);
    if (id == BI_PROBABILITY) {
        if ((x->k != V_NUM && x->k != V_NODE) || x->is_bool)
            return el_error(e, el_bspan(a, id, 0, span),
                            "a probability is a number between 0 and 1, not %s", el_kind_name(x));
        if (x->k == V_NUM && !(x->num >= 0 && x->num <= 1))
            return el_error(e, el_bspan(a, id, 0, span),
                            "a probability must be between 0 and 1, not %g", x->num);
        return *x;
    }
    if (id == BI_PAIR) {
        int64_t v[2];
        if (!int_pair(e, x, el_bspan(a, id, 0, span), "pair", 0, INT64_MIN / 2, v))
            return verr();
        VList *l = arena_alloc(&e->arena, sizeof *l);
        l->n = 2;
        l->v = arena_alloc(&e->arena, 2 * sizeof(Value));
        l->v[0] = vnum((double)v[0]);
        l->v[1] = vnum((double)v[1]);
        return (Value){.k = V_LIST, .list = l};
    }
    if (x->k != V_LIST)
        return el_error(e, el_bspan(a, id, 0, span),
                        "sequential takes a list of layers and functions, "
                        "not %s",
                        el_kind_name(x));
    Value v = *el_barg(a, id, 1);
    for (int i = 0; i < x->list->n && v.k != V_ERR; i++) {
        Args one = {.n = 1};
        one.v[0] = v;
        one.span[0] = span;
        v = el_call_value(e, x->list->v[i], &one, span, NULL);
    }
    return v;
}

/* A call of built-in id: its arguments are checked against builtins.def (sema has
 * checked the calls it could see), then the built-in's category computes it. */
Value el_builtin_call(Elab *e, int id, Args *a, Span span)
{
    const BuiltinInfo *bi = &builtin_info[id];
    /* arity and keywords, for calls sema could not see */
    for (int i = 0; i < a->n; i++) {
        if (a->kw[i]) {
            bool found = false;
            for (int j = 0; j < bi->nparams; j++)
                found |= strcmp(bi->params[j], a->kw[i]) == 0;
            if (!found)
                return el_error(e, a->span[i], "'%s' has no parameter '%s'", bi->name, a->kw[i]);
        }
    }
    for (int i = 0; i < bi->required; i++)
        if (!el_barg(a, id, i))
            return el_error(e, span, "missing argument '%s' in call to '%s'", bi->params[i],
                            bi->name);
    if (bi->ctx == BCTX_INIT && !e->in_init) {
        /* outside an initializer, a call with arguments is an initializer to pass on:
         * Dense(8, 8, init = orthogonal(gain = 2)); it draws when a parameter uses it */
        if (a->n == 0)
            return el_error(e, span,
                            "'%s' draws a parameter's initial values; it can only be used "
                            "in a parameter initializer",
                            bi->name);
        Args *copy = arena_alloc(&e->arena, sizeof *copy);
        *copy = *a;
        return (Value){.k = V_BUILTIN, .builtin = id, .args = copy};
    }
    if (bi->ctx == BCTX_DATA)
        return el_error(e, span,
                        "'%s' describes a data set; it can only be used in a `data` statement",
                        bi->name);
    if (bi->op >= 0) /* an elementwise op of ops.def: op(x) */
        return el_unop(e, (OpId)bi->op, *el_barg(a, id, 0), span);
    switch ((BuiltinId)id) {
    case BI_MIN:
    case BI_MAX:
    case BI_SUM:
    case BI_MEAN:
    case BI_LOGSUMEXP:
    case BI_NORM:
    case BI_RMS:
    case BI_ARGMAX: return builtin_reduction(e, id, a, span);
    case BI_MATMUL: return el_matmul(e, *el_barg(a, id, 0), *el_barg(a, id, 1), span);
    case BI_TRANSPOSE:
    case BI_RESHAPE:
    case BI_BROADCAST:
    case BI_SIZE:
    case BI_ARANGE:
    case BI_RANK: return builtin_shape(e, id, a, span);
    case BI_PICK:
    case BI_ONE_HOT:
    case BI_TAKE:
    case BI_CONCAT:
    case BI_WHERE: return builtin_index(e, id, a, span);
    case BI_F32:
    case BI_F64:
    case BI_I32:
    case BI_FLOAT: return builtin_dtype(e, id, a, span);
    case BI_GRAD:
    case BI_L1:
    case BI_L2: return builtin_params(e, id, a, span);
    case BI_CONV2D: return conv2d(e, a, span);
    case BI_MAX_POOL2D:
    case BI_AVG_POOL2D: return pool2d(e, id, a, span);
    case BI_RAND_LIKE:
    case BI_ORTHOGONAL:
    case BI_UNIFORM:
    case BI_NORMAL: return builtin_random(e, id, a, span);
    case BI_PAIR:
    case BI_PROBABILITY:
    case BI_SEQUENTIAL: return builtin_compose(e, id, a, span);
    default: return el_error(e, span, "'%s' cannot be used here", bi->name);
    }
}
