#include "simplify.h"

#include <stdlib.h>
#include <string.h>

#include "interp.h"
#include "opsem.h"

typedef struct Builder {
    Graph *old, *ng;
    NodeId *map; /* old id -> new id */
    NodeId *table; /* hash-cons table of new ids */
    size_t cap, used;
    SimplifyStats *st;
    SimplifyMode mode;
} Builder;

static int pool_len(const Node *n) { return graph_pool_len(n); }

static uint64_t mix(uint64_t h, uint64_t v) { return (h ^ v) * 0x100000001b3ull; }

static uint64_t node_hash(Graph *g, const Node *n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    h = mix(h, n->op);
    h = mix(h, n->dtype);
    h = mix(h, (uint64_t)n->idx);
    h = mix(h, n->mask | (uint64_t)n->keep << 32 | (uint64_t)n->ta << 33 | (uint64_t)n->tb << 34 |
                   (uint64_t)n->nonan << 35);
    h = mix(h, n->key);
    uint64_t bits;
    memcpy(&bits, &n->num, sizeof bits);
    h = mix(h, bits);
    for (int i = 0; i < n->nin; i++)
        h = mix(h, n->in[i]);
    h = mix(h, (uint64_t)n->shape.rank);
    for (int i = 0; i < n->shape.rank; i++)
        h = mix(h, (uint64_t)n->shape.d[i]);
    for (int i = 0; i < pool_len(n); i++)
        h = mix(h, (uint64_t)g->ipool.v[n->pool + (uint32_t)i]);
    return h;
}

static bool node_same(Graph *g, const Node *a, const Node *b)
{
    if (a->op != b->op || a->dtype != b->dtype || a->nin != b->nin || a->idx != b->idx ||
        a->mask != b->mask || a->keep != b->keep || a->ta != b->ta || a->tb != b->tb ||
        a->nonan != b->nonan || a->key != b->key || memcmp(&a->num, &b->num, sizeof a->num) != 0 ||
        !shape_equal(&a->shape, &b->shape))
        return false;
    for (int i = 0; i < a->nin; i++)
        if (a->in[i] != b->in[i])
            return false;
    for (int i = 0; i < pool_len(a); i++)
        if (g->ipool.v[a->pool + (uint32_t)i] != g->ipool.v[b->pool + (uint32_t)i])
            return false;
    if (a->op == OP_TENSOR)
        return a->pool == b->pool;
    return true;
}

static void table_grow(Builder *b)
{
    size_t cap = b->cap ? b->cap * 2 : 1024;
    NodeId *t = xcalloc(cap, sizeof(NodeId));
    for (size_t i = 0; i < b->cap; i++) {
        NodeId id = b->table[i];
        if (!id)
            continue;
        size_t k = node_hash(b->ng, graph_node(b->ng, id)) & (cap - 1);
        while (t[k])
            k = (k + 1) & (cap - 1);
        t[k] = id;
    }
    free(b->table);
    b->table = t;
    b->cap = cap;
}

/* Appends n to the new graph unless an identical node is there. */
static NodeId intern(Builder *b, Node *n)
{
    if (b->used * 2 >= b->cap)
        table_grow(b);
    size_t k = node_hash(b->ng, n) & (b->cap - 1);
    while (b->table[k]) {
        if (node_same(b->ng, graph_node(b->ng, b->table[k]), n)) {
            b->st->merged++;
            return b->table[k];
        }
        k = (k + 1) & (b->cap - 1);
    }
    NodeId id = graph_append(b->ng, n);
    b->table[k] = id;
    b->used++;
    return id;
}

static NodeId new_node(Builder *b, Node n) { return intern(b, &n); }

static Node *NN(Builder *b, NodeId id) { return graph_node(b->ng, id); }

static bool is_const(Builder *b, NodeId id, double v)
{
    double x;
    return graph_is_const(b->ng, id, &x) && x == v;
}

/* A constant-like node (CONST or a broadcast of one) has this value. */
static bool const_like(Builder *b, NodeId id)
{
    Node *n = NN(b, id);
    return n->op == OP_CONST || (n->op == OP_BROADCAST && NN(b, n->in[0])->op == OP_CONST);
}

/* Folds an elementwise node of constant-like inputs into a (broadcast) constant:
 * opsem_eval of the inputs' values, each rounded to its dtype as the interpreter
 * reads a CONST, so folded values round exactly as run-time ones would. */
static bool try_fold(Builder *b, Node *n, NodeId *out)
{
    if (!opsem_is_elementwise((OpId)n->op))
        return false;
    for (int i = 0; i < n->nin; i++)
        if (!const_like(b, n->in[i]))
            return false;
    double x[3];
    for (int i = 0; i < n->nin; i++) {
        Node *in = NN(b, n->in[i]);
        Node *k = in->op == OP_CONST ? in : NN(b, in->in[0]);
        x[i] = itensor_round((NndDType)k->dtype, k->num);
    }
    double v = opsem_eval((OpId)n->op, (NndDType)n->dtype, x);
    NodeId c = new_node(b, (Node){.op = OP_CONST, .dtype = n->dtype, .num = v, .span = n->span});
    if (n->shape.rank)
        c = new_node(b, (Node){.op = OP_BROADCAST,
                               .nin = 1,
                               .in = {c},
                               .dtype = n->dtype,
                               .shape = n->shape,
                               .span = n->span});
    *out = c;
    b->st->folded++;
    return true;
}

static bool is_last2_swap(Builder *b, const Node *t)
{
    if (t->op != OP_TRANSPOSE || t->shape.rank < 2)
        return false;
    int r = t->shape.rank;
    const int64_t *p = &b->ng->ipool.v[t->pool];
    for (int i = 0; i < r - 2; i++)
        if (p[i] != i)
            return false;
    return p[r - 2] == r - 1 && p[r - 1] == r - 2;
}

/* Algebraic identities; returns the replacement id or 0. */
static NodeId identity(Builder *b, Node *n)
{
    NodeId a = n->nin > 0 ? n->in[0] : 0, c = n->nin > 1 ? n->in[1] : 0;
    switch ((OpId)n->op) {
    case OP_ADD:
        if (is_const(b, c, 0))
            return a;
        if (is_const(b, a, 0))
            return c;
        break;
    case OP_SUB:
        if (is_const(b, c, 0))
            return a;
        break;
    case OP_MUL:
        if (is_const(b, c, 1))
            return a;
        if (is_const(b, a, 1))
            return c;
        break;
    case OP_DIV: {
        if (is_const(b, c, 1))
            return a;
        /* x / s for a scalar s broadcast over x: x * (1/s), one division per tensor
         * instead of one per element (an update rule's bias corrections).  It can
         * differ from the division in the last bit; exact when s is a power of two. */
        Node *cn = NN(b, c);
        if (b->mode == SIMPLIFY_FAST && cn->op == OP_BROADCAST &&
            NN(b, cn->in[0])->shape.rank == 0 && dtype_is_float((NndDType)n->dtype) &&
            n->shape.rank > 0) {
            NodeId s = cn->in[0];
            NodeId one =
                new_node(b, (Node){.op = OP_CONST, .dtype = n->dtype, .num = 1, .span = n->span});
            Node rn = {.op = OP_DIV, .nin = 2, .in = {one, s}, .dtype = n->dtype, .span = n->span};
            NodeId r;
            if (!try_fold(b, &rn, &r))
                r = new_node(b, rn);
            NodeId rb = new_node(b, (Node){.op = OP_BROADCAST,
                                           .nin = 1,
                                           .in = {r},
                                           .dtype = n->dtype,
                                           .shape = n->shape,
                                           .span = n->span});
            return new_node(b, (Node){.op = OP_MUL,
                                      .nin = 2,
                                      .in = {a, rb},
                                      .dtype = n->dtype,
                                      .shape = n->shape,
                                      .span = n->span});
        }
        break;
    }
    case OP_POW:
        if (is_const(b, c, 1))
            return a;
        if (is_const(b, c, 2))
            return new_node(b, (Node){.op = OP_MUL,
                                      .nin = 2,
                                      .in = {a, a},
                                      .dtype = n->dtype,
                                      .shape = n->shape,
                                      .span = n->span});
        break;
    case OP_CUSTOM: /* its gradient is built already: now it is its value */ return a;
    case OP_NEG:
        if (NN(b, a)->op == OP_NEG)
            return NN(b, a)->in[0];
        break;
    case OP_CAST:
        if (NN(b, a)->dtype == n->dtype)
            return a;
        break;
    case OP_SELECT:
        if (n->in[1] == n->in[2])
            return n->in[1];
        if (is_const(b, a, 1))
            return n->in[1];
        if (is_const(b, a, 0))
            return n->in[2];
        break;
    case OP_RESHAPE:
    case OP_BROADCAST:
        if (shape_equal(&NN(b, a)->shape, &n->shape))
            return a;
        if (NN(b, a)->op == n->op) {
            Node m = *n;
            m.in[0] = NN(b, a)->in[0];
            return new_node(b, m);
        }
        break;
    case OP_TRANSPOSE: {
        int r = n->shape.rank;
        const int64_t *p = &b->ng->ipool.v[n->pool];
        bool ident = true;
        for (int i = 0; i < r; i++)
            ident &= p[i] == i;
        if (ident)
            return a;
        if (NN(b, a)->op == OP_TRANSPOSE) {
            const int64_t *q = &b->ng->ipool.v[NN(b, a)->pool];
            int comp[NND_MAX_RANK];
            for (int i = 0; i < r; i++)
                comp[i] = (int)q[p[i]];
            return gb_transpose(b->ng, NN(b, a)->in[0], comp, n->span);
        }
        break;
    }
    case OP_SUM:
    case OP_MEAN:
        if (n->mask == 0)
            return a;
        break;
    case OP_MATMUL: {
        Node m = *n;
        bool changed = false;
        /* the folded and summed forms keep their operands as they are */
        if (m.mask || NN(b, a)->shape.rank != NN(b, c)->shape.rank)
            break;
        if (is_last2_swap(b, NN(b, a))) {
            m.in[0] = NN(b, a)->in[0];
            m.ta = !m.ta;
            changed = true;
        }
        if (is_last2_swap(b, NN(b, c))) {
            m.in[1] = NN(b, c)->in[0];
            m.tb = !m.tb;
            changed = true;
        }
        if (changed)
            return new_node(b, m);
        break;
    }
    default: break;
    }
    return 0;
}

static NodeId rebuild_node(Builder *b, const Node *old)
{
    b->ng->phase = (Phase)old->phase; /* what the rules build stays in its phase */
    Node n = *old;
    for (int i = 0; i < n.nin; i++)
        n.in[i] = b->map[old->in[i]];
    if (pool_len(&n)) {
        uint32_t off = (uint32_t)b->ng->ipool.n;
        for (int i = 0; i < pool_len(&n); i++)
            vec_push(&b->ng->ipool, b->old->ipool.v[old->pool + (uint32_t)i]);
        n.pool = off;
    }
    if (n.op == OP_TENSOR) {
        bool sym;
        int64_t cnt = shape_static_numel(&n.shape, &sym);
        uint32_t off = (uint32_t)b->ng->fpool.n;
        for (int64_t i = 0; i < cnt; i++)
            vec_push(&b->ng->fpool, b->old->fpool.v[old->pool + (uint32_t)i]);
        n.pool = off;
    }
    if (b->mode != SIMPLIFY_NONE) {
        NodeId r;
        if (try_fold(b, &n, &r))
            return r;
        r = identity(b, &n);
        if (r) {
            b->st->identities++;
            return r;
        }
    }
    return intern(b, &n);
}

static int count_live(Graph *g, NodeId **roots, int nroots)
{
    NodeVec rs = {0};
    for (int i = 0; i < nroots; i++)
        vec_push(&rs, *roots[i]);
    bool *live = xcalloc((size_t)graph_count(g), 1);
    graph_mark_live(g, rs.v, rs.n, live);
    int n = 0;
    for (int i = 1; i < graph_count(g); i++)
        n += live[i];
    free(live);
    vec_free(&rs);
    return n;
}

static void rebuild(Graph *g, NodeId **roots, int nroots, SimplifyMode mode, SimplifyStats *st)
{
    NodeVec rs = {0};
    for (int i = 0; i < nroots; i++)
        vec_push(&rs, *roots[i]);
    int count = graph_count(g);
    bool *live = xcalloc((size_t)count, 1);
    graph_mark_live(g, rs.v, rs.n, live);
    Graph ng;
    graph_init(&ng);
    ng.custom_vjp = g->custom_vjp; /* CUSTOM nodes kept (SIMPLIFY_NONE) stay differentiable */
    ng.custom_ctx = g->custom_ctx;
    ng.bf16 = g->bf16;
    for (int i = 0; i < g->syms.n; i++)
        vec_push(&ng.syms, g->syms.v[i]); /* the strings move with the arena below */
    Builder b = {g, &ng, xcalloc((size_t)count, sizeof(NodeId)), NULL, 0, 0, st, mode};
    for (int id = 1; id < count; id++)
        if (live[id])
            b.map[id] = rebuild_node(&b, graph_node(g, (NodeId)id));
    for (int i = 0; i < nroots; i++)
        *roots[i] = b.map[*roots[i]];
    /* symbol names live in the old graph's arena: it moves to the new graph */
    ng.arena = g->arena;
    g->arena.head = NULL;
    graph_free(g);
    *g = ng;
    free(b.map);
    free(b.table);
    free(live);
    vec_free(&rs);
}

void simplify_graph(Graph *g, NodeId **roots, int nroots, SimplifyMode mode, SimplifyStats *stats)
{
    SimplifyStats st = {0};
    st.before = count_live(g, roots, nroots);
    /* rules can expose more rules; a few rounds reach the fixed point in practice */
    int prev = -1;
    for (int round = 0; round < 4; round++) {
        rebuild(g, roots, nroots, mode, &st);
        int now = graph_count(g);
        if (now == prev)
            break;
        prev = now;
    }
    /* a final plain rebuild drops what the rules left unreachable */
    rebuild(g, roots, nroots, SIMPLIFY_NONE, &st);
    st.after = count_live(g, roots, nroots);
    if (stats)
        *stats = st;
}
