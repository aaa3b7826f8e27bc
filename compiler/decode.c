#include "decode.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The pass's working state.  Old ids (< count) are the forward graph's; a node of
 * the copy keeps its id, so a value without a time axis is used as it is. */
typedef struct Dc {
    Decode *d;
    const Program *p;
    Graph *g;
    int count; /* the program graph's nodes */
    int8_t *qa; /* per old node: its time axis, -1 none */
    NodeId *nw; /* per old node: its value in the decode function */
    NodeId *full; /* per old node with a time axis: its cache's value, 0 before one */
    NodeId pos_f, pos_i; /* pos as a scalar of the float type, and as [1] i32 */
    int64_t T;
    char *err;
    size_t errlen;
    bool failed;
} Dc;

static bool fail(Dc *c, NodeId at, const char *fmt, ...) NND_PRINTF(3, 4);
static bool fail(Dc *c, NodeId at, const char *fmt, ...)
{
    if (c->failed)
        return false;
    c->failed = true;
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s (%s, node %%%u)", why, op_info[graph_node(c->g, at)->op].name,
             at);
    return false;
}

/* graph_build, failing the pass instead of the program on a shape error. */
static NodeId mk(Dc *c, Node n)
{
    if (c->failed)
        return 0;
    for (int i = 0; i < n.nin; i++)
        if (!n.in[i])
            return 0;
    char why[256];
    NodeId id = graph_build(c->g, n, why, sizeof why);
    if (!id) {
        c->failed = true;
        snprintf(c->err, c->errlen, "internal error in the decode function: %s (%s)", why,
                 op_info[n.op].name);
    }
    return id;
}

static NodeId mk1(Dc *c, OpId op, NodeId a, const Shape *s, NndDType t)
{
    return mk(c, (Node){.op = (uint8_t)op, .dtype = (uint8_t)t, .nin = 1, .in = {a}, .shape = *s});
}

static NodeId mk_transpose(Dc *c, NodeId a, const int *perm)
{
    uint32_t pool = (uint32_t)c->g->ipool.n;
    for (int i = 0; i < graph_node(c->g, a)->shape.rank; i++)
        vec_push(&c->g->ipool, perm[i]);
    return mk(c, (Node){.op = OP_TRANSPOSE, .nin = 1, .in = {a}, .pool = pool});
}

static Shape at_pos(Shape s, int axis)
{
    s.d[axis] = 1;
    return s;
}

/* Row pos of axis a of s, a value without a time axis: through a broadcast to its
 * input (a parameter broadcast over [B, T, C] is never copied T times), else a row
 * gather of the value with axis a moved to the front. */
static NodeId slice_at(Dc *c, NodeId s, int a)
{
    Node n = *graph_node(c->g, s);
    if (c->failed || n.shape.d[a] == 1)
        return c->failed ? 0 : s;
    Shape want = at_pos(n.shape, a);
    if (n.op == OP_BROADCAST) {
        const Node *in = graph_node(c->g, n.in[0]);
        int ia = a - (n.shape.rank - in->shape.rank);
        NodeId src = ia >= 0 && in->shape.d[ia] != 1 ? slice_at(c, n.in[0], ia) : n.in[0];
        return mk1(c, OP_BROADCAST, src, &want, (NndDType)n.dtype);
    }
    for (int i = 0; i < n.shape.rank; i++)
        if (n.shape.d[i] < 0) {
            fail(c, s, "a value with the batch axis meets the time axis");
            return 0;
        }
    int perm[NND_MAX_RANK], back[NND_MAX_RANK], k = 0;
    perm[k++] = a;
    for (int i = 0; i < n.shape.rank; i++)
        if (i != a)
            perm[k++] = i;
    for (int i = 0; i < n.shape.rank; i++)
        back[perm[i]] = i;
    NndDType ft = c->p->float_dtype;
    NodeId t = a ? mk_transpose(c, s, perm) : s;
    if (!dtype_is_float(n.dtype)) {
        Shape ts = graph_node(c->g, t)->shape;
        t = mk1(c, OP_CAST, t, &ts, ft);
    }
    NodeId r = mk(c, (Node){.op = OP_TAKE, .nin = 2, .in = {t, c->pos_i}});
    if (!dtype_is_float(n.dtype)) {
        Shape rs = graph_node(c->g, r)->shape;
        r = mk1(c, OP_CAST, r, &rs, (NndDType)n.dtype);
    }
    return a ? mk_transpose(c, r, back) : r;
}

/* The value of old node q (time axis a) at every position: a cache, a state whose
 * row pos is the decode function's value and whose other rows are earlier calls'. */
static NodeId full_value(Dc *c, NodeId q)
{
    if (c->full[q] || c->failed)
        return c->full[q];
    const Node *o = graph_node(c->g, q);
    Shape sh = o->shape;
    int a = c->qa[q], r = sh.rank;
    NndDType ft = c->p->float_dtype;
    Node st = {.op = OP_STATE,
               .dtype = o->dtype,
               .shape = sh,
               .idx = c->d->state_base + c->d->cache_state.n,
               .name = "decode.cache"};
    NodeId state = graph_append(c->g, &st);
    /* iota along axis a == pos: the row this call writes */
    uint32_t off = (uint32_t)c->g->fpool.n;
    for (int64_t i = 0; i < sh.d[a]; i++)
        vec_push(&c->g->fpool, (double)i);
    Shape line = {r, {0}};
    for (int i = 0; i < r; i++)
        line.d[i] = i == a ? sh.d[a] : 1;
    Node iota = {
        .op = OP_TENSOR, .dtype = (uint8_t)ft, .shape = shape_make(1, &sh.d[a]), .pool = off};
    NodeId it = mk1(c, OP_RESHAPE, graph_append(c->g, &iota), &line, ft);
    it = mk1(c, OP_BROADCAST, it, &sh, ft);
    NodeId pb = mk1(c, OP_BROADCAST, c->pos_f, &sh, ft);
    NodeId here = mk(c, (Node){.op = OP_EQ, .nin = 2, .in = {it, pb}});
    NodeId row = mk1(c, OP_BROADCAST, c->nw[q], &sh, (NndDType)o->dtype);
    NodeId v = mk(c, (Node){.op = OP_SELECT, .nin = 3, .in = {here, row, state}});
    if (v) {
        vec_push(&c->d->cache_state, state);
        vec_push(&c->d->cache_value, v);
    }
    return c->full[q] = v;
}

/* A reshape keeps the time axis when the axes before it hold as many elements
 * before and after (counting the symbolic batch axis apart). */
static int reshape_axis(const Shape *in, const Shape *out, int ia)
{
    int64_t pin = 1, nsym = 0;
    for (int i = 0; i < ia; i++)
        in->d[i] < 0 ? nsym++ : (pin *= in->d[i]);
    int64_t pout = 1, osym = 0;
    for (int j = 0; j < out->rank; j++) {
        if (pout == pin && osym == nsym && out->d[j] == in->d[ia])
            return j;
        out->d[j] < 0 ? osym++ : (pout *= out->d[j]);
    }
    return -1;
}

/* Matrix product with a time axis in an operand: rows keep it, a contracted axis
 * or b's columns need the operand at every position. */
static bool visit_matmul(Dc *c, NodeId id, Node *m, int *oa)
{
    const Node *o = graph_node(c->g, id);
    NodeId A = o->in[0], B = o->in[1];
    int qa = c->qa[A], qb = c->qa[B], ra = graph_node(c->g, A)->shape.rank;
    int rb = graph_node(c->g, B)->shape.rank;
    bool fold = ra > 2 && rb == 2;
    if (o->mask)
        return fail(c, id, "a summed matrix product over the time axis");
    *oa = -1;
    m->in[0] = c->nw[A];
    m->in[1] = c->nw[B];
    if (qa >= 0) {
        bool batch = !fold && qa < ra - 2;
        bool rows = fold ? qa < ra - 1 : qa == ra - (o->ta ? 1 : 2);
        if (batch) {
            *oa = qa;
            if (qb >= 0 && qb != qa)
                return fail(c, id, "operands with time axes in different places");
            if (qb < 0)
                m->in[1] = slice_at(c, c->nw[B], qa);
            qb = -1; /* handled */
        } else if (rows) {
            *oa = fold ? qa : ra - 2;
        } else {
            m->in[0] = full_value(c, A);
        }
    }
    if (qb >= 0) {
        if (!fold && qb < rb - 2) {
            *oa = qb;
            m->in[0] = slice_at(c, c->nw[A], qb);
        } else {
            m->in[1] = full_value(c, B);
        }
    }
    if (*oa < 0)
        return fail(c, id, "a matrix product that sums over every position");
    return true;
}

/* Elementwise ops and concatenation: every operand at the one time axis. */
static bool visit_elementwise(Dc *c, NodeId id, Node *m, int *oa)
{
    const Node *o = graph_node(c->g, id);
    *oa = -1;
    for (int i = 0; i < o->nin; i++)
        if (c->qa[o->in[i]] >= 0) {
            if (*oa >= 0 && *oa != c->qa[o->in[i]])
                return fail(c, id, "operands with time axes in different places");
            *oa = c->qa[o->in[i]];
        }
    if (o->op == OP_CONCAT && o->idx == *oa)
        return fail(c, id, "a concatenation along the time axis");
    for (int i = 0; i < o->nin; i++)
        m->in[i] = c->qa[o->in[i]] >= 0 ? c->nw[o->in[i]] : slice_at(c, c->nw[o->in[i]], *oa);
    return true;
}

/* The time axis of a layout change's result, or a failure. */
static bool visit_layout(Dc *c, NodeId id, Node *m, int *oa)
{
    const Node *o = graph_node(c->g, id), *in = graph_node(c->g, o->in[0]);
    int ia = c->qa[o->in[0]];
    m->in[0] = c->nw[o->in[0]];
    switch (o->op) {
    case OP_BROADCAST: *oa = ia + (o->shape.rank - in->shape.rank); return true;
    case OP_RESHAPE:
        *oa = reshape_axis(&in->shape, &o->shape, ia);
        return *oa >= 0 || fail(c, id, "a reshape that merges or splits the time axis");
    case OP_TRANSPOSE:
        for (int i = 0; i < o->shape.rank; i++)
            if (c->g->ipool.v[o->pool + i] == ia)
                *oa = i;
        return true;
    case OP_SLICE:
    case OP_PAD: {
        const int64_t *start = &c->g->ipool.v[o->pool], *step = start + in->shape.rank;
        *oa = ia;
        if (start[ia] != 0 || step[ia] != 1 || o->shape.d[ia] != in->shape.d[ia])
            return fail(c, id, "a slice of the time axis");
        return true;
    }
    default: return visit_elementwise(c, id, m, oa);
    }
}

/* The decode value of old node id, one of its inputs having a time axis. */
static bool visit_timed(Dc *c, NodeId id)
{
    const Node *o = graph_node(c->g, id);
    Node m = *o;
    int oa = -1, ia = c->qa[o->in[0]];
    bool ok = true;
    switch (op_info[o->op].kind) {
    case OPK_EW1:
    case OPK_EW2:
    case OPK_EW3: ok = visit_elementwise(c, id, &m, &oa); break;
    case OPK_LAYOUT: ok = visit_layout(c, id, &m, &oa); break;
    case OPK_MATMUL: ok = visit_matmul(c, id, &m, &oa); break;
    case OPK_REDUCE:
        if (o->op == OP_ARGMAX || (o->mask >> ia & 1))
            return fail(c, id, "a reduction over the time axis");
        oa = o->keep ? ia : ia - __builtin_popcount(o->mask & ((1u << ia) - 1));
        m.in[0] = c->nw[o->in[0]];
        break;
    case OPK_CALL:
        if (o->op != OP_TAKE || c->qa[o->in[0]] >= 0)
            return fail(c, id, "an op the decode function does not follow");
        oa = c->qa[o->in[1]];
        m.in[1] = c->nw[o->in[1]];
        break;
    case OPK_ALIAS: /* a function with its own gradient: its value is in[0]'s */
        c->qa[id] = (int8_t)ia;
        c->nw[id] = c->nw[o->in[0]];
        return true;
    default: return fail(c, id, "an op the decode function does not follow");
    }
    if (!ok || c->failed)
        return false;
    m.shape = at_pos(o->shape, oa);
    c->qa[id] = (int8_t)oa;
    c->nw[id] = mk(c, m);
    return c->nw[id] != 0;
}

static bool visit(Dc *c, NodeId id)
{
    const Node *o = graph_node(c->g, id);
    c->qa[id] = -1;
    c->nw[id] = id;
    if (o->op == OP_INPUT) {
        if (o->idx != 0)
            return true;
        Node m = *o;
        m.shape = at_pos(o->shape, 1);
        c->qa[id] = 1;
        c->nw[id] = graph_append(c->g, &m);
        return true;
    }
    bool timed = false;
    for (int i = 0; i < o->nin; i++)
        timed |= c->qa[o->in[i]] >= 0;
    if (!timed || o->op == OP_DIMSIZE) { /* a size is one of the whole forward */
        if (o->op == OP_CUSTOM)
            c->nw[id] = c->nw[o->in[0]];
        return true;
    }
    if (op_info[o->op].kind == OPK_SOURCE)
        return fail(c, id, "random numbers drawn per position");
    return visit_timed(c, id);
}

static void clone_graph(Graph *to, const Graph *from)
{
    graph_init(to);
    to->nodes.n = 0;
    for (int i = 0; i < from->nodes.n; i++)
        vec_push(&to->nodes, from->nodes.v[i]);
    for (int i = 0; i < from->ipool.n; i++)
        vec_push(&to->ipool, from->ipool.v[i]);
    for (int i = 0; i < from->fpool.n; i++)
        vec_push(&to->fpool, from->fpool.v[i]);
    for (int i = 0; i < from->syms.n; i++)
        vec_push(&to->syms, from->syms.v[i]);
    to->bf16 = from->bf16;
}

/* pos as a scalar of the float type and as a [1] i32 index. */
static void position(Dc *c)
{
    Node h = {.op = OP_HYPER, .dtype = NND_F64, .idx = c->d->pos_hyper, .name = "decode.pos"};
    NodeId hp = graph_append(c->g, &h);
    Shape sc = shape_scalar(), one = shape_make(1, (int64_t[]){1});
    c->pos_f = mk1(c, OP_CAST, hp, &sc, c->p->float_dtype);
    c->pos_i = mk1(c, OP_CAST, mk1(c, OP_BROADCAST, hp, &one, NND_F64), &one, NND_I32);
}

bool decode_build(Decode *d, const Program *p, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    const Node *x = p->x ? &p->g.nodes.v[p->x] : NULL;
    if (!p->forward || !x || x->shape.rank != 2 || x->shape.d[1] < 1) {
        snprintf(err, errlen, "the program has no forward function of [B, T] tokens");
        return false;
    }
    clone_graph(&d->g, &p->g);
    d->pos_hyper = p->hypers.n;
    d->state_base = p->states.n;
    Dc c = {.d = d, .p = p, .g = &d->g, .count = p->g.nodes.n, .err = err, .errlen = errlen};
    c.T = x->shape.d[1];
    c.qa = xcalloc((size_t)c.count, 1);
    c.nw = xcalloc((size_t)c.count, sizeof(NodeId));
    c.full = xcalloc((size_t)c.count, sizeof(NodeId));
    bool *live = xcalloc((size_t)c.count, sizeof(bool));
    graph_mark_live(&d->g, &p->forward, 1, live);
    position(&c);
    for (NodeId id = 1; (int)id < c.count && !c.failed; id++)
        if (live[id])
            visit(&c, id);
    if (!c.failed && c.qa[p->forward] != 1)
        fail(&c, p->forward, "the model's output has no time axis second, as [B, T, V]");
    d->logits = c.failed ? 0 : c.nw[p->forward];
    free(live);
    free(c.qa);
    free(c.nw);
    free(c.full);
    if (c.failed)
        decode_free(d);
    return !c.failed;
}

void decode_free(Decode *d)
{
    graph_free(&d->g);
    vec_free(&d->cache_state);
    vec_free(&d->cache_value);
    memset(d, 0, sizeof *d);
}
