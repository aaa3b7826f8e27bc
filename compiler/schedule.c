#include "schedule.h"

#include "nnd_abi.h"

#include <stdlib.h>
#include <string.h>

enum { PARALLEL_MIN = 1 << 15 }; /* elements below which a loop runs on one thread */
/* Buffers of a page or more start on a page (in the arena, and nnd_alloc's default
 * allocator does the same for parameters and states), so that the streams of a loop
 * sit at the same offset within a page.  A store to one and a load of the next
 * vector from another 64 bytes above it in the page look alike to the CPU's store
 * forwarding (4K aliasing), and the load waits: Adam over 784-128-10's first weight
 * took 0.37 ns a value with w, m and v one cache line apart in the page, 0.285 with
 * them on pages of their own (Zen 4). */
enum { PAGE_ALIGN = 4096 };

static bool is_reduce(int op)
{
    return op == OP_SUM || op == OP_MEAN || op == OP_RMAX || op == OP_LOGSUMEXP || op == OP_ARGMAX;
}

static bool is_call(int op)
{
    return op_info[op].kind == OPK_MATMUL || op_info[op].kind == OPK_CALL;
}

static bool is_scalar_leaf(int op) { return op == OP_CONST || op == OP_HYPER || op == OP_DIMSIZE; }

int64_t shape_numel_at(const Shape *s, int64_t batch)
{
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++)
        n *= s->d[i] < 0 ? batch : s->d[i];
    return n;
}

int64_t matmul_work(const Graph *g, const Node *n, int64_t batch)
{
    const Shape *a = &g->nodes.v[n->in[0]].shape;
    int64_t k = a->d[n->ta ? a->rank - 2 : a->rank - 1];
    return (k < 0 ? batch : k) * shape_numel_at(&n->shape, batch);
}

static int64_t node_numel(const Graph *g, NodeId id, int64_t batch)
{
    return shape_numel_at(&graph_node((Graph *)g, id)->shape, batch);
}

double product_flops(const Graph *g, NodeId id, int64_t batch)
{
    const Node *n = graph_node((Graph *)g, id);
    switch (n->op) {
    case OP_MATMUL: {
        /* each element of a meets a row of N of b, each of b a column of M of a; the
         * larger covers broadcasting and the forms that sum over the batch (a
         * weight's gradient, x^T dy over [B, T, C]) */
        const Shape *o = &n->shape;
        double na = (double)node_numel(g, n->in[0], batch),
               nb = (double)node_numel(g, n->in[1], batch);
        int64_t N = o->rank ? o->d[o->rank - 1] : 1, M = o->rank > 1 ? o->d[o->rank - 2] : 1;
        N = N < 0 ? batch : N;
        M = M < 0 ? batch : M;
        double f = na * (double)N > nb * (double)M ? na * (double)N : nb * (double)M;
        return 2.0 * f;
    }
    case OP_CONV2D:
    case OP_CONV2D_GX:
    case OP_CONV2D_GW: {
        /* each element of the convolution's output y meets a [cin/groups, kh, kw]
         * slice of the weights, forward and in both adjoints */
        NodeId y = n->op == OP_CONV2D ? id : n->op == OP_CONV2D_GX ? n->in[0] : n->in[1];
        const Shape *w = &graph_node((Graph *)g, n->op == OP_CONV2D_GW ? id : n->in[1])->shape;
        return 2.0 * (double)node_numel(g, y, batch) * (double)(w->d[1] * w->d[2] * w->d[3]);
    }
    default: return 0;
    }
}

typedef struct Builder {
    Schedule *s;
    Graph *g;
    const ScheduleRequest *rq;
    bool *live;
    int *consumers;
    bool *to_call; /* an operand of a matrix product or a library routine */
    bool *remapped; /* read by a consumer at another index than its own (not elementwise) */
    bool *materialize;
    int *kernel_of; /* the kernel computing a node, -1 */
    int *leaf_buf; /* PARAM / STATE / INPUT node -> buffer */
    char *err;
    size_t errlen;
} Builder;

static int new_buf(Builder *b, BufKind kind, int index, NndDType dtype, const Shape *shape)
{
    Buffer buf = {kind, index, dtype, 0, 0, -1, -1};
    if (kind == BUF_ARENA) {
        int64_t n = shape ? shape_numel_at(shape, b->rq->max_batch) : 1;
        buf.bytes = ((int64_t)nnd_dtype_size(dtype) * (n ? n : 1) + 63) & ~(int64_t)63;
    }
    vec_push(&b->s->bufs, buf);
    return b->s->bufs.n - 1;
}

/* Recomputing it where it is used costs no more than a load: leaves, scalars, and
 * index remaps or casts of those. */
static bool trivial(Builder *b, NodeId id)
{
    Node *n = graph_node(b->g, id);
    switch (n->op) {
    case OP_CONST:
    case OP_HYPER:
    case OP_DIMSIZE:
    case OP_PARAM:
    case OP_STATE:
    case OP_INPUT:
    case OP_TENSOR: return true;
    case OP_BROADCAST:
    case OP_RESHAPE:
    case OP_TRANSPOSE:
    case OP_SLICE:
    case OP_CAST:
    case OP_ABS:
    case OP_NEG: /* one instruction: cheaper again than a store and loads */
        return b->materialize[n->in[0]] || trivial(b, n->in[0]);
    case OP_MUL: /* x * x: as cheap (g * g, read by Adam and by a gradient norm) */
        return n->in[0] == n->in[1] && (b->materialize[n->in[0]] || trivial(b, n->in[0]));
    default: return false;
    }
}

/* Values computed again in each kernel that uses them instead of stored: the cost
 * of an elementwise cone in ops (a transcendental counts as 8), up to this. */
enum { REMAT_LIMIT = 12, REMAT_NEVER = 1 << 20 };

static bool elementwise(const Node *n)
{
    OpKind k = op_info[n->op].kind;
    return k == OPK_EW1 || k == OPK_EW2 || k == OPK_EW3;
}

/* What recomputing id where it is read costs, from the values in memory: the ops of
 * its inline cone, REMAT_NEVER beyond REMAT_LIMIT or through anything but
 * elementwise ops (and the index remaps trivial() allows). */
static int remat_cost(Builder *b, NodeId id, int depth)
{
    if (b->materialize[id] || trivial(b, id))
        return 0;
    Node *n = graph_node(b->g, id);
    if (!elementwise(n) || depth > 8)
        return REMAT_NEVER;
    int c;
    switch (n->op) {
    case OP_EXP:
    case OP_LOG:
    case OP_TANH:
    case OP_SIGMOID:
    case OP_SIN:
    case OP_COS: c = 8; break;
    case OP_DIV:
    case OP_SQRT:
    case OP_RSQRT: c = 4; break;
    case OP_POW: return REMAT_NEVER;
    default: c = 1; break;
    }
    for (int i = 0; i < n->nin && c <= REMAT_LIMIT; i++) {
        bool again = false;
        for (int j = 0; j < i; j++)
            again |= n->in[j] == n->in[i];
        if (!again)
            c += remat_cost(b, n->in[i], depth + 1);
    }
    return c <= REMAT_LIMIT ? c : REMAT_NEVER;
}

static Kernel *add_kernel(Builder *b, KernelKind kind, const Shape *domain, NodeId node)
{
    Kernel k = {0};
    k.kind = kind;
    k.domain = *domain;
    k.node = node;
    k.aux = -1;
    vec_push(&b->s->kernels, k);
    return &b->s->kernels.v[b->s->kernels.n - 1];
}

/* ---- what a kernel reads ---- */

typedef struct Access {
    int buf;
    bool identity; /* at the kernel's own index (or a scalar) */
    NodeId node; /* the value read there first (for the listing) */
} Access;

typedef VEC(Access) AccessVec;

static void add_access(AccessVec *v, int buf, bool identity, NodeId node)
{
    for (int i = 0; i < v->n; i++)
        if (v->v[i].buf == buf) {
            v->v[i].identity &= identity;
            return;
        }
    Access a = {buf, identity, node};
    vec_push(v, a);
}

/* Walks the inline cone of node (read at the kernel's index when identity); a
 * node with a home ends the walk with a load. */
static void cone_reads(const Schedule *s, NodeId id, bool identity, NodeId self, AccessVec *out,
                       int depth)
{
    Node *n = graph_node(s->g, id);
    if (n->shape.rank == 0)
        identity = true; /* a scalar reads the same element everywhere */
    if (s->home[id] >= 0 && id != self) {
        add_access(out, s->home[id], identity, id);
        return;
    }
    if (depth > 10000)
        return;
    OpKind k = op_info[n->op].kind;
    /* a reshape reads its input at the same flat offset: the same element */
    bool keep =
        k == OPK_EW1 || k == OPK_EW2 || k == OPK_EW3 || k == OPK_ALIAS || n->op == OP_RESHAPE;
    for (int i = 0; i < n->nin; i++)
        cone_reads(s, n->in[i], identity && keep && (k != OPK_ALIAS || i == 0), self, out,
                   depth + 1);
}

static void kernel_reads(const Schedule *s, const Kernel *k, AccessVec *out)
{
    out->n = 0;
    if (k->kind == KER_CALL) {
        Node *n = graph_node(s->g, k->node);
        for (int i = 0; i < n->nin; i++)
            if (s->home[n->in[i]] >= 0)
                add_access(out, s->home[n->in[i]], false, n->in[i]);
        if (k->ep_bias)
            add_access(out, s->home[k->ep_bias], false, k->ep_bias);
        if (k->ep_mask)
            add_access(out, s->home[k->ep_mask], true, k->ep_mask);
    } else if (k->kind == KER_REDUCE) {
        cone_reads(s, graph_node(s->g, k->node)->in[0], true, 0, out, 0);
    } else {
        for (int i = 0; i < k->stores.n; i++) {
            NodeId n = k->stores.v[i].node;
            if (k->stores.v[i].buf == s->home[n] || s->home[n] < 0)
                cone_reads(s, n, true, n, out, 0); /* computed here (a leaf: read inline) */
            else
                add_access(out, s->home[n], true, n); /* copied from its home */
        }
        for (int i = 0; i < k->accs.n; i++)
            cone_reads(s, graph_node(s->g, k->accs.v[i].node)->in[0], true, 0, out, 0);
    }
}

/* Does the cone of id (inline nodes only) read leaf at another index than the
 * kernel's own (*other), or at all? */
static bool cone_has_leaf(Schedule *s, NodeId id, NodeId leaf, bool identity, NodeId self,
                          bool *other, int depth)
{
    Node *n = graph_node(s->g, id);
    if (n->shape.rank == 0)
        identity = true;
    if (id == leaf) {
        if (!identity)
            *other = true;
        return true;
    }
    if ((s->home[id] >= 0 && id != self) || depth > 10000)
        return false;
    OpKind k = op_info[n->op].kind;
    bool keep = k == OPK_EW1 || k == OPK_EW2 || k == OPK_EW3 || k == OPK_ALIAS;
    bool hit = false;
    for (int i = 0; i < n->nin; i++)
        hit |= cone_has_leaf(s, n->in[i], leaf, identity && keep, self, other, depth + 1);
    return hit;
}

/* Does kernel k read the value of leaf (a PARAM or STATE node)?  *other is set when
 * it reads it at another index than its own. */
static bool kernel_reads_leaf(Schedule *s, const Kernel *k, NodeId leaf, bool *other)
{
    *other = false;
    if (k->kind == KER_CALL) {
        Node *n = graph_node(s->g, k->node);
        for (int i = 0; i < n->nin; i++)
            *other |= n->in[i] == leaf;
        *other |= k->ep_bias == leaf || k->ep_mask == leaf;
        return *other;
    }
    if (k->kind == KER_REDUCE) {
        bool hit = cone_has_leaf(s, graph_node(s->g, k->node)->in[0], leaf, true, 0, other, 0);
        *other |= hit; /* a reduction reads many elements into each result */
        return hit;
    }
    bool hit = false;
    for (int i = 0; i < k->stores.n; i++) {
        NodeId n = k->stores.v[i].node;
        if (k->stores.v[i].buf == s->home[n])
            hit |= cone_has_leaf(s, n, leaf, true, n, other, 0);
        else if (n == leaf)
            hit = true;
    }
    for (int i = 0; i < k->accs.n; i++)
        hit |=
            cone_has_leaf(s, graph_node(s->g, k->accs.v[i].node)->in[0], leaf, true, 0, other, 0);
    return hit;
}

static bool kernel_writes(const Kernel *k, int buf)
{
    for (int i = 0; i < k->stores.n; i++)
        if (k->stores.v[i].buf == buf)
            return true;
    for (int i = 0; i < k->accs.n; i++)
        if (k->accs.v[i].buf == buf)
            return true;
    return false;
}

/* ---- building ---- */

static bool decide(Builder *b)
{
    Graph *g = b->g;
    int count = graph_count(g);
    for (int id = 1; id < count; id++) {
        if (!b->live[id])
            continue;
        Node *n = graph_node(g, (NodeId)id);
        for (int i = 0; i < n->nin; i++) {
            /* x * x is one consumer of x: computed inline, it is computed once */
            bool again = false;
            for (int j = 0; j < i; j++)
                again |= n->in[j] == n->in[i];
            if (!again)
                b->consumers[n->in[i]]++;
            if (is_call(n->op))
                b->to_call[n->in[i]] = true;
            if (!elementwise(n) || !shape_equal(&graph_node(g, n->in[i])->shape, &n->shape))
                b->remapped[n->in[i]] = true;
        }
    }
    for (int i = 0; i < b->rq->nupdates; i++)
        b->consumers[b->rq->updates[i].value]++;
    for (int i = 0; i < b->rq->noutputs; i++)
        b->consumers[b->rq->outputs[i]]++;
    for (int id = 1; id < count; id++) {
        if (!b->live[id])
            continue;
        Node *n = graph_node(g, (NodeId)id);
        switch (n->op) {
        case OP_RANDU:
        case OP_RANDN:
        case OP_ORTHO:
            snprintf(b->err, b->errlen, "internal error: an initializer's draw in compiled code");
            return false;
        case OP_PARAM:
        case OP_STATE:
        case OP_INPUT: {
            BufKind kind = n->op == OP_PARAM   ? BUF_PARAM
                           : n->op == OP_STATE ? BUF_STATE
                           : n->idx == 0       ? BUF_X
                                               : BUF_Y;
            b->s->home[id] = new_buf(b, kind, n->idx, (NndDType)n->dtype, NULL);
            continue;
        }
        case OP_TENSOR:
        case OP_CONST:
        case OP_HYPER:
        case OP_DIMSIZE: continue;
        default: break;
        }
        bool root = false;
        for (int i = 0; i < b->rq->nupdates; i++)
            root |= b->rq->updates[i].value == (NodeId)id;
        for (int i = 0; i < b->rq->noutputs; i++)
            root |= b->rq->outputs[i] == (NodeId)id;
        OpKind kind = op_info[n->op].kind;
        bool checked = b->rq->check && (n->dtype == NND_F32 || n->dtype == NND_F64) &&
                       (kind == OPK_EW1 || kind == OPK_EW2 || kind == OPK_EW3);
        /* a value read by several kernels is stored, unless it is as cheap to compute
         * again (an elementwise cone of a few ops over values in memory, read at its
         * own index): GELU's intermediates, say, are then not written by the forward
         * pass and read back by the backward pass */
        bool mat = is_call(n->op) || is_reduce(n->op) || b->to_call[id] || root || checked ||
                   (b->consumers[id] >= 2 && !trivial(b, (NodeId)id) &&
                    (b->remapped[id] || remat_cost(b, (NodeId)id, 0) >= REMAT_NEVER));
        b->materialize[id] = mat;
    }
    return true;
}

/* Scalars computed from run-time inputs alone go first, so they never sit between
 * two loops that could merge. */
static bool prologue_scalar(Builder *b, NodeId id)
{
    Node *n = graph_node(b->g, id);
    if (n->shape.rank != 0 || is_reduce(n->op) || is_call(n->op))
        return false;
    for (int i = 0; i < n->nin; i++) {
        Node *in = graph_node(b->g, n->in[i]);
        if (is_scalar_leaf(in->op))
            continue;
        if (b->materialize[n->in[i]] && prologue_scalar(b, n->in[i]))
            continue;
        if (!b->materialize[n->in[i]] && in->shape.rank == 0 && prologue_scalar(b, n->in[i]))
            continue;
        return false;
    }
    return true;
}

static void make_kernels(Builder *b)
{
    Graph *g = b->g;
    Schedule *s = b->s;
    int count = graph_count(g);
    for (int pass = 0; pass < 2; pass++) {
        for (int id = 1; id < count; id++) {
            if (!b->live[id] || !b->materialize[id])
                continue;
            if (prologue_scalar(b, (NodeId)id) != (pass == 0))
                continue;
            Node *n = graph_node(g, (NodeId)id);
            /* a reshape of a value in the arena is the same bytes: its home is the
             * value's, with no kernel (the CNN's flatten before its dense layer and
             * back: two copies of [64 x 3136], 0.3 + 0.15 ms of its step on two
             * threads) */
            if (n->op == OP_RESHAPE && !b->rq->check && b->materialize[n->in[0]] &&
                s->home[n->in[0]] >= 0 && s->bufs.v[s->home[n->in[0]]].kind == BUF_ARENA &&
                graph_node(g, n->in[0])->dtype == n->dtype) {
                s->home[id] = s->home[n->in[0]];
                continue;
            }
            int buf = new_buf(b, BUF_ARENA, 0, (NndDType)n->dtype, &n->shape);
            s->home[id] = buf;
            b->kernel_of[id] = s->kernels.n;
            Kernel *k;
            if (is_call(n->op)) {
                k = add_kernel(b, KER_CALL, &n->shape, (NodeId)id);
            } else if (is_reduce(n->op)) {
                Node *in = graph_node(g, n->in[0]);
                k = add_kernel(b, KER_REDUCE, &in->shape, (NodeId)id);
                if (n->op == OP_LOGSUMEXP || n->op == OP_ARGMAX)
                    k->aux = new_buf(b, BUF_ARENA, 0, (NndDType)in->dtype, &n->shape);
            } else {
                /* a reshape computed here is its input stored at the same flat offsets:
                 * loop over the input's shape, so the values inside are read at their own
                 * indices instead of through a division of the offset (the outermost
                 * axis, which ranges split, must stay the same) */
                NodeId v = (NodeId)id;
                Node *in = n->op == OP_RESHAPE ? graph_node(g, n->in[0]) : NULL;
                if (in && !b->materialize[n->in[0]] && !b->rq->check && in->shape.rank > 0 &&
                    in->shape.d[0] == n->shape.d[0] && in->dtype == n->dtype &&
                    !trivial(b, n->in[0]))
                    v = n->in[0];
                k = add_kernel(b, KER_LOOP, &graph_node(g, v)->shape, 0);
                Store st = {v, buf};
                vec_push(&k->stores, st);
                continue;
            }
            Store st = {(NodeId)id, buf};
            vec_push(&k->stores, st);
        }
    }
}

/* Removes the kernels marked gone; kernel_of follows the moves. */
static void drop_kernels(Builder *b, const bool *gone)
{
    Schedule *s = b->s;
    int w = 0;
    for (int k = 0; k < s->kernels.n; k++)
        if (!gone[k])
            s->kernels.v[w++] = s->kernels.v[k];
    s->kernels.n = w;
    for (int k = 0; k < s->kernels.n; k++) {
        Kernel *kr = &s->kernels.v[k];
        for (int i = 0; i < kr->stores.n; i++)
            b->kernel_of[kr->stores.v[i].node] = k;
        for (int i = 0; i < kr->accs.n; i++)
            b->kernel_of[kr->accs.v[i].node] = k;
        if (kr->node)
            b->kernel_of[kr->node] = k;
    }
}

/* Folds whole-tensor sums and maxima into the nearest earlier loop over their
 * input's shape (static), when everything they read is ready there, read at the
 * loop's own index, and not written by any kernel in between. */
static void fuse_reductions(Builder *b)
{
    Schedule *s = b->s;
    AccessVec acc = {0};
    bool *gone = xcalloc((size_t)s->kernels.n + 1, 1);
    for (int r = 0; r < s->kernels.n; r++) {
        Kernel *R = &s->kernels.v[r];
        if (R->kind != KER_REDUCE)
            continue;
        Node *rn = graph_node(b->g, R->node), *in = graph_node(b->g, rn->in[0]);
        bool sym = false;
        shape_static_numel(&in->shape, &sym);
        if ((rn->op != OP_SUM && rn->op != OP_RMAX) || rn->shape.rank != 0 || sym ||
            in->shape.rank == 0 || (in->dtype != NND_F32 && in->dtype != NND_F64))
            continue;
        kernel_reads(s, R, &acc);
        bool identity = true;
        for (int i = 0; i < acc.n; i++)
            identity &= acc.v[i].identity;
        if (!identity)
            continue;
        int l = r - 1;
        while (l >= 0 && (gone[l] || s->kernels.v[l].kind != KER_LOOP ||
                          !shape_equal(&s->kernels.v[l].domain, &in->shape)))
            l--;
        if (l < 0)
            continue;
        bool ok = true;
        for (int j = l + 1; j < r && ok; j++)
            for (int i = 0; i < acc.n && ok; i++)
                ok = gone[j] || !kernel_writes(&s->kernels.v[j], acc.v[i].buf);
        if (!ok)
            continue;
        Acc a = {R->node, s->home[R->node]};
        vec_push(&s->kernels.v[l].accs, a);
        vec_free(&R->stores);
        gone[r] = true;
        s->fused_reductions++;
    }
    drop_kernels(b, gone);
    free(gone);
    vec_free(&acc);
}

/* ---- epilogues ---- */

/* A constant 0, or one broadcast. */
static bool is_zero(Builder *b, NodeId id)
{
    Node *n = graph_node(b->g, id);
    if (n->op == OP_BROADCAST)
        n = graph_node(b->g, n->in[0]);
    return n->op == OP_CONST && n->num == 0;
}

/* Inline, and read by one consumer only (so nothing else reads through it). */
static bool inline_once(Builder *b, NodeId id)
{
    return b->s->home[id] < 0 && b->consumers[id] == 1;
}

/* The values a broadcast bc spreads along axis `axis` of its result (all its other
 * dimensions 1), as a node with a home (looking through a reshape of one: a
 * convolution's bias [C] as [C, 1, 1]), or 0. */
static NodeId bias_along(Builder *b, NodeId bc, int axis)
{
    Node *bn = graph_node(b->g, bc);
    if (bn->op != OP_BROADCAST || !inline_once(b, bc))
        return 0;
    NodeId bs = bn->in[0];
    Node *bv = graph_node(b->g, bs);
    int r = bv->shape.rank, ro = bn->shape.rank;
    if (r < 1 || r > ro || bv->dtype != bn->dtype)
        return 0;
    for (int i = 0; i < r; i++) { /* aligned to the right */
        int64_t want = ro - r + i == axis ? bn->shape.d[axis] : 1;
        if (bv->shape.d[i] != want)
            return 0;
    }
    if (b->s->home[bs] < 0 && bv->op == OP_RESHAPE)
        bs = bv->in[0];
    return b->s->home[bs] >= 0 ? bs : 0;
}

/* v as an epilogue of product m, both of one shape: *ep (NND_EP_*), *bias and *mask
 * (nodes with a home: a bias broadcast along axis `axis` of m, a mask of m's shape),
 * or false. */
static bool epilogue_of(Builder *b, NodeId v, NodeId m, int axis, int *ep, NodeId *bias,
                        NodeId *mask)
{
    Schedule *s = b->s;
    Node *n = graph_node(b->g, v), *mn = graph_node(b->g, m);
    *ep = 0;
    *bias = *mask = 0;
    if (n->op == OP_SELECT) { /* y > 0 ? m : 0 */
        Node *c = graph_node(b->g, n->in[0]);
        if (n->in[1] != m || !is_zero(b, n->in[2]) || c->op != OP_GT || !inline_once(b, n->in[0]) ||
            !is_zero(b, c->in[1]) || s->home[c->in[0]] < 0)
            return false;
        Node *y = graph_node(b->g, c->in[0]);
        if (y->dtype != mn->dtype || !shape_equal(&y->shape, &mn->shape))
            return false;
        *ep = NND_EP_MASK;
        *mask = c->in[0];
        return true;
    }
    NodeId x = v;
    if (n->op == OP_RELU) {
        *ep |= NND_EP_RELU;
        x = n->in[0];
        if (x != m && !inline_once(b, x))
            return false;
    }
    if (x != m) {
        Node *a = graph_node(b->g, x);
        if (a->op != OP_ADD || (a->in[0] != m && a->in[1] != m))
            return false;
        NodeId bs = bias_along(b, a->in[0] == m ? a->in[1] : a->in[0], axis);
        if (!bs)
            return false;
        *ep |= NND_EP_BIAS;
        *bias = bs;
    }
    return *ep != 0;
}

/* A matrix product, a forward convolution (bias and relu) or max pooling's adjoint
 * (relu's mask) read by one loop alone, which computes one value from it and nothing
 * else, that an epilogue can compute (epilogue_of): the call stores that value
 * instead, each block of it on the thread that made the block, and the loop goes
 * (784-1024-1024-10 on two threads: relu(x W1 + b1) was a pass of 131 us over a
 * result half in the other core's cache).  Nothing between them may write what the
 * epilogue reads. */
static void fuse_epilogues(Builder *b)
{
    Schedule *s = b->s;
    bool *gone = xcalloc((size_t)s->kernels.n + 1, 1);
    for (int c = 0; c < s->kernels.n; c++) {
        Kernel *C = &s->kernels.v[c];
        NodeId m = C->node;
        Node *mn = graph_node(b->g, m);
        int op = mn->op;
        if (C->kind != KER_CALL || (op != OP_MATMUL && op != OP_POOLMAX_T && op != OP_CONV2D) ||
            b->consumers[m] != 1)
            continue;
        /* a product's bias runs along its columns, a convolution's along its channels */
        int axis = op == OP_CONV2D ? 1 : mn->shape.rank - 1;
        for (int l = c + 1; l < s->kernels.n; l++) {
            Kernel *L = &s->kernels.v[l];
            if (gone[l] || L->kind != KER_LOOP || L->stores.n != 1 || L->accs.n != 0)
                continue;
            NodeId v = L->stores.v[0].node;
            int ep;
            NodeId bias, mask;
            if (L->stores.v[0].buf != s->home[v] || !shape_equal(&L->domain, &mn->shape) ||
                !shape_equal(&graph_node(b->g, v)->shape, &mn->shape) ||
                !epilogue_of(b, v, m, axis, &ep, &bias, &mask) ||
                (op == OP_POOLMAX_T && ep != NND_EP_MASK) || /* the pooling's: a mask alone */
                (op == OP_CONV2D && (ep & NND_EP_MASK))) /* a convolution's: no mask */
                continue;
            bool ok = true;
            for (int j = c + 1; j < l && ok; j++)
                ok = gone[j] || ((!bias || !kernel_writes(&s->kernels.v[j], s->home[bias])) &&
                                 (!mask || !kernel_writes(&s->kernels.v[j], s->home[mask])));
            if (!ok)
                break;
            C->stores.v[0] = L->stores.v[0];
            C->ep = ep;
            C->ep_bias = bias;
            C->ep_mask = mask;
            b->kernel_of[v] = c;
            vec_free(&L->stores);
            gone[l] = true;
            s->epilogues++;
            break;
        }
    }
    drop_kernels(b, gone);
    free(gone);
}

/* The buffer an update writes into. */
static int update_target(Builder *b, const ScheduleUpdate *u)
{
    BufKind kind = u->is_state ? BUF_STATE : BUF_PARAM;
    for (int i = 0; i < b->s->bufs.n; i++)
        if (b->s->bufs.v[i].kind == kind && b->s->bufs.v[i].index == u->index)
            return i;
    Node *n = graph_node(b->g, u->value);
    return new_buf(b, kind, u->index, (NndDType)n->dtype, NULL);
}

/* Does a kernel from `from` on read the old value of leaf (kernel `except` may read
 * it at its own index: it reads before it writes)? */
static bool read_later(Builder *b, NodeId leaf, int from, int except)
{
    for (int k = from; k < b->s->kernels.n; k++) {
        bool other;
        if (kernel_reads_leaf(b->s, &b->s->kernels.v[k], leaf, &other) && (k != except || other))
            return true;
    }
    return false;
}

/* The PARAM or STATE node an update overwrites. */
static NodeId update_leaf(Builder *b, const ScheduleUpdate *u)
{
    int count = graph_count(b->g);
    for (int id = 1; id < count; id++) {
        Node *n = graph_node(b->g, (NodeId)id);
        if (b->live[id] && n->op == (u->is_state ? OP_STATE : OP_PARAM) && n->idx == u->index)
            return (NodeId)id;
    }
    return 0;
}

static void place_updates(Builder *b)
{
    Schedule *s = b->s;
    VEC(Store) copies = {0};
    for (int i = 0; i < b->rq->nupdates; i++) {
        const ScheduleUpdate *u = &b->rq->updates[i];
        if (u->value == update_leaf(b, u))
            continue; /* simplified to the old value (a zero gradient, say): nothing to do */
        int target = update_target(b, u);
        int k = b->kernel_of[u->value];
        bool in_place = false;
        if (k >= 0 && s->kernels.v[k].kind == KER_LOOP && s->kernels.v[k].stores.n == 1) {
            /* does something after it, or it at another index, read the old value? */
            int old = s->home[u->value];
            s->home[u->value] = target;
            s->kernels.v[k].stores.v[0].buf = target;
            NodeId leaf = update_leaf(b, u);
            in_place = !leaf || !read_later(b, leaf, k, k);
            bool shared = false;
            for (int j = 0; j < i; j++)
                shared |= b->rq->updates[j].value == u->value;
            if (!in_place || shared) {
                s->home[u->value] = old;
                s->kernels.v[k].stores.v[0].buf = old;
                in_place = false;
            }
        }
        if (in_place) {
            s->in_place++;
        } else {
            Store st = {u->value, target};
            vec_push(&copies, st);
        }
    }
    /* copies and results run last, one loop per shape */
    for (int i = 0; i < copies.n; i++) {
        Kernel *k = add_kernel(b, KER_LOOP, &graph_node(b->g, copies.v[i].node)->shape, 0);
        vec_push(&k->stores, copies.v[i]);
    }
    vec_free(&copies);
    int slot = 0;
    for (int i = 0; i < b->rq->noutputs; i++) {
        NodeId o = b->rq->outputs[i];
        Node *n = graph_node(b->g, o);
        int buf = new_buf(b, BUF_OUT, slot, NND_F64, NULL);
        slot += (int)shape_numel_at(&n->shape, 1);
        Kernel *k = add_kernel(b, KER_LOOP, &n->shape, 0);
        Store st = {o, buf};
        vec_push(&k->stores, st);
    }
}

static bool accumulates(const Kernel *k, int buf)
{
    for (int i = 0; i < k->accs.n; i++)
        if (k->accs.v[i].buf == buf)
            return true;
    return false;
}

/* Adjacent loops over one shape become one, unless one reads what the other writes
 * at a different index, or what the other accumulates.  Scalars too: a step's
 * hyper-parameter arithmetic and a logged step's statistics are many one-value loops,
 * each a call. */
static void merge_loops(Builder *b)
{
    Schedule *s = b->s;
    AccessVec ra = {0}, rb = {0};
    int w = 0;
    for (int r = 0; r < s->kernels.n; r++) {
        Kernel *cur = &s->kernels.v[r];
        if (w > 0) {
            Kernel *prev = &s->kernels.v[w - 1];
            if (prev->kind == KER_LOOP && cur->kind == KER_LOOP &&
                shape_equal(&prev->domain, &cur->domain)) {
                kernel_reads(s, prev, &ra);
                kernel_reads(s, cur, &rb);
                /* a reduction riding along is whole only after the loop: what reads
                 * it cannot share the loop, at any index */
                bool ok = true;
                for (int i = 0; i < rb.n && ok; i++)
                    ok = (rb.v[i].identity && !accumulates(prev, rb.v[i].buf)) ||
                         !kernel_writes(prev, rb.v[i].buf);
                for (int i = 0; i < ra.n && ok; i++)
                    ok = (ra.v[i].identity && !accumulates(cur, ra.v[i].buf)) ||
                         !kernel_writes(cur, ra.v[i].buf);
                if (ok) {
                    for (int i = 0; i < cur->stores.n; i++)
                        vec_push(&prev->stores, cur->stores.v[i]);
                    for (int i = 0; i < cur->accs.n; i++)
                        vec_push(&prev->accs, cur->accs.v[i]);
                    vec_free(&cur->stores);
                    vec_free(&cur->accs);
                    s->merged++;
                    continue;
                }
            }
        }
        s->kernels.v[w++] = *cur;
    }
    s->kernels.n = w;
    vec_free(&ra);
    vec_free(&rb);
}

/* Kernel k uses buf: its lifetime grows to cover k. */
static void use_buffer(Schedule *s, int buf, int k)
{
    Buffer *b = &s->bufs.v[buf];
    if (b->first < 0)
        b->first = k;
    if (b->last < k)
        b->last = k;
}

/* Lifetimes of arena buffers, then offsets: first fit among buffers live at the
 * same time (lifetimes are closed intervals of kernel indices).  A buffer of a page
 * or more starts on a page: see PAGE_ALIGN. */
static void plan_memory(Builder *b)
{
    Schedule *s = b->s;
    AccessVec acc = {0};
    for (int k = 0; k < s->kernels.n; k++) {
        Kernel *kr = &s->kernels.v[k];
        for (int i = 0; i < kr->stores.n; i++)
            use_buffer(s, kr->stores.v[i].buf, k);
        if (kr->aux >= 0)
            use_buffer(s, kr->aux, k);
        for (int i = 0; i < kr->accs.n; i++)
            use_buffer(s, kr->accs.v[i].buf, k);
        kernel_reads(s, kr, &acc);
        for (int i = 0; i < acc.n; i++)
            use_buffer(s, acc.v[i].buf, k);
    }
    vec_free(&acc);
    int64_t top = 0;
    for (int i = 0; i < s->bufs.n; i++) {
        Buffer *x = &s->bufs.v[i];
        if (x->kind != BUF_ARENA || x->first < 0)
            continue;
        int64_t off = 0, align = x->bytes >= PAGE_ALIGN ? PAGE_ALIGN : 64;
        for (bool moved = true; moved;) {
            moved = false;
            for (int j = 0; j < i; j++) {
                Buffer *y = &s->bufs.v[j];
                if (y->kind != BUF_ARENA || y->first < 0)
                    continue;
                bool overlap_time = !(y->last < x->first || x->last < y->first);
                bool overlap_space = off < y->offset + y->bytes && y->offset < off + x->bytes;
                if (overlap_time && overlap_space) {
                    off = (y->offset + y->bytes + align - 1) / align * align;
                    moved = true;
                }
            }
        }
        x->offset = off;
        if (off + x->bytes > top)
            top = off + x->bytes;
    }
    s->arena_bytes = top;
}

/* Whether matrix product n is split across the pool (nnd_gemm_split_work), at the
 * largest batch. */
static bool matmul_splits(Builder *b, const Node *n)
{
    return matmul_work(b->g, n, b->rq->max_batch) >=
           nnd_gemm_split_work(b->g->bf16, (NndDType)n->dtype);
}

/* Whether the loop stores a parameter that only matrix products too small to split
 * across the pool read (nnd_gemm_split_work, at the largest batch): they run on the
 * calling thread, and an update split across threads would move the weight's, its
 * gradient's and its state's lines between cores every step (784-256-256-10 at
 * batch 16, two threads: W2's update 10 -> 31 us, its products 13 -> 20 and 11 ->
 * 23 us). */
static bool updates_unsplit_weight(Builder *b, const Kernel *kr)
{
    for (int i = 0; i < kr->stores.n; i++) {
        const Buffer *buf = &b->s->bufs.v[kr->stores.v[i].buf];
        if (buf->kind != BUF_PARAM)
            continue;
        bool read = false;
        for (int id = 1; id < graph_count(b->g); id++) {
            const Node *n = graph_node(b->g, (NodeId)id);
            if (!b->live[id] || n->op != OP_MATMUL)
                continue;
            for (int j = 0; j < 2; j++) {
                const Node *w = graph_node(b->g, n->in[j]);
                if (w->op != OP_PARAM || w->idx != buf->index)
                    continue;
                if (matmul_splits(b, n))
                    return false;
                read = true;
            }
        }
        return read;
    }
    return false;
}

static void mark_parallel(Builder *b)
{
    Schedule *s = b->s;
    for (int k = 0; k < s->kernels.n; k++) {
        Kernel *kr = &s->kernels.v[k];
        int64_t n = shape_numel_at(&kr->domain, b->rq->max_batch);
        if (kr->kind == KER_LOOP)
            kr->parallel =
                n >= PARALLEL_MIN && kr->domain.rank > 0 && !updates_unsplit_weight(b, kr);
        else if (kr->kind == KER_REDUCE) {
            /* split along a kept axis: along the first when axis 0 is summed over (a
             * sum over [B, C, H, W] to [C] by channels), each result's terms then
             * still added in the same order, so the bits do not change */
            const Node *rn = graph_node(b->g, kr->node);
            int outer = 0, rank = kr->domain.rank;
            if ((rn->mask & 1u) && (rn->op == OP_SUM || rn->op == OP_MEAN)) {
                int a = 1;
                while (a < rank && (rn->mask & (1u << a)))
                    a++;
                /* not the innermost axis: its loop stays the inner one */
                outer = a < rank - 1 ? a : 0;
            }
            kr->parallel = n >= PARALLEL_MIN && rank > 1 && !(rn->mask & (1u << outer));
            kr->outer = kr->parallel ? outer : 0;
        }
    }
}

/* Whether kernel k leaves the pool's workers idle: a serial loop or reduction, a
 * matrix product too small to split.  Other calls (convolutions, pooling, gathers)
 * may use the pool. */
static bool leaves_pool_idle(Builder *b, const Kernel *k)
{
    if (k->kind != KER_CALL)
        return !k->parallel;
    const Node *n = graph_node(b->g, k->node);
    return n->op == OP_MATMUL && !matmul_splits(b, n);
}

/* Schedule.idle_at: the first kernel of the longest run of kernels that leave the
 * pool idle (the earliest of equal runs), when it holds two kernels or more.  In a
 * small MLP's step that is everything from the logits to the first layer's gradient
 * (784-128-10: 10 kernels, 10 us on one thread), after the first layer's product
 * split across the pool. */
static void mark_idle(Builder *b)
{
    Schedule *s = b->s;
    int best = 0;
    s->idle_at = -1;
    for (int k = 0; k < s->kernels.n;) {
        int e = k;
        while (e < s->kernels.n && leaves_pool_idle(b, &s->kernels.v[e]))
            e++;
        if (e - k >= 2 && e - k > best) {
            best = e - k;
            s->idle_at = k;
        }
        k = e > k ? e : k + 1;
    }
}

/* Does kernel k write a buffer marked in a or in b? */
static bool writes_marked(const Kernel *k, const bool *a, const bool *b)
{
    for (int i = 0; i < k->stores.n; i++)
        if (a[k->stores.v[i].buf] || b[k->stores.v[i].buf])
            return true;
    for (int i = 0; i < k->accs.n; i++)
        if (a[k->accs.v[i].buf] || b[k->accs.v[i].buf])
            return true;
    return k->kind == KER_REDUCE && k->aux >= 0 && (a[k->aux] || b[k->aux]);
}

/* Marks the buffers kernel k writes in w. */
static void mark_writes(const Kernel *k, bool *w)
{
    for (int i = 0; i < k->stores.n; i++)
        w[k->stores.v[i].buf] = true;
    for (int i = 0; i < k->accs.n; i++)
        w[k->accs.v[i].buf] = true;
    if (k->kind == KER_REDUCE && k->aux >= 0)
        w[k->aux] = true;
}

/* ScheduleRequest.early_states: each kernel that stores a state runs as early as the
 * data allows.  The kernels before it that it needs (what it reads, transitively:
 * for a weight's gradient sum, its product but not the gradient passed on to the
 * layer below) move up with it, in their order; the others keep theirs after them.
 * In the accumulation step of a distributed run the states are the gradient sums,
 * and the caller is told about each as soon as it is final (its all-reduce starts)
 * while the gradients of the layers below are still being computed; in graph order
 * they would all come after the last product. */
static void hoist_states(Builder *b)
{
    Schedule *s = b->s;
    int nb = s->bufs.n, nk = s->kernels.n;
    AccessVec acc = {0};
    bool *reads = xcalloc((size_t)nb + 1, 1), *writes = xcalloc((size_t)nb + 1, 1);
    bool *need = xcalloc((size_t)nk + 1, 1);
    Kernel *tmp = xmalloc(sizeof(Kernel) * (size_t)(nk + 1));
    for (int k = 0; k < nk; k++) {
        const Kernel *kr = &s->kernels.v[k];
        bool state = false;
        for (int i = 0; i < kr->stores.n; i++)
            state |= s->bufs.v[kr->stores.v[i].buf].kind == BUF_STATE;
        if (!state)
            continue;
        memset(reads, 0, (size_t)nb);
        memset(writes, 0, (size_t)nb);
        memset(need, 0, (size_t)nk);
        need[k] = true;
        kernel_reads(s, kr, &acc);
        for (int i = 0; i < acc.n; i++)
            reads[acc.v[i].buf] = true;
        mark_writes(kr, writes);
        /* j must stay before the kernels needed when it writes what they read or
         * write, or reads what they write; then it is needed too */
        for (int j = k - 1; j >= 0; j--) {
            const Kernel *kj = &s->kernels.v[j];
            kernel_reads(s, kj, &acc);
            bool dep = false;
            for (int i = 0; i < acc.n && !dep; i++)
                dep = writes[acc.v[i].buf];
            if (!dep)
                dep = writes_marked(kj, reads, writes);
            if (!dep)
                continue;
            need[j] = true;
            for (int i = 0; i < acc.n; i++)
                reads[acc.v[i].buf] = true;
            mark_writes(kj, writes);
        }
        int n = 0;
        for (int j = 0; j <= k; j++)
            if (need[j])
                tmp[n++] = s->kernels.v[j];
        for (int j = 0; j <= k; j++)
            if (!need[j])
                tmp[n++] = s->kernels.v[j];
        memcpy(s->kernels.v, tmp, sizeof(Kernel) * (size_t)(k + 1));
    }
    vec_free(&acc);
    free(reads);
    free(writes);
    free(need);
    free(tmp);
}

bool schedule_build(Schedule *s, Graph *g, const ScheduleRequest *rq, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->g = g;
    s->max_batch = rq->max_batch;
    int count = graph_count(g);
    s->home = xmalloc(sizeof(int) * (size_t)count);
    for (int i = 0; i < count; i++)
        s->home[i] = -1;
    Builder b = {s,
                 g,
                 rq,
                 xcalloc((size_t)count, 1),
                 xcalloc((size_t)count, sizeof(int)),
                 xcalloc((size_t)count, 1),
                 xcalloc((size_t)count, 1),
                 xcalloc((size_t)count, 1),
                 xmalloc(sizeof(int) * (size_t)count),
                 NULL,
                 err,
                 errlen};
    for (int i = 0; i < count; i++)
        b.kernel_of[i] = -1;
    NodeVec roots = {0};
    for (int i = 0; i < rq->noutputs; i++)
        vec_push(&roots, rq->outputs[i]);
    for (int i = 0; i < rq->nupdates; i++)
        vec_push(&roots, rq->updates[i].value);
    graph_mark_live(g, roots.v, roots.n, b.live);
    vec_free(&roots);
    bool ok = decide(&b);
    if (ok) {
        make_kernels(&b);
        if (!rq->check) {
            fuse_reductions(&b);
            fuse_epilogues(&b);
        }
        place_updates(&b);
        merge_loops(&b);
        if (rq->early_states)
            hoist_states(&b);
        plan_memory(&b);
        mark_parallel(&b);
        mark_idle(&b);
    }
    free(b.live);
    free(b.consumers);
    free(b.to_call);
    free(b.remapped);
    free(b.materialize);
    free(b.kernel_of);
    if (!ok)
        schedule_free(s);
    return ok;
}

void schedule_free(Schedule *s)
{
    for (int i = 0; i < s->kernels.n; i++) {
        vec_free(&s->kernels.v[i].stores);
        vec_free(&s->kernels.v[i].accs);
    }
    vec_free(&s->kernels);
    vec_free(&s->bufs);
    free(s->home);
    s->home = NULL;
}

static void buf_name(const Schedule *s, int i, StrBuf *out)
{
    const Buffer *b = &s->bufs.v[i];
    static const char *kinds[] = {"arena", "param", "state", "x", "y", "out"};
    if (b->kind == BUF_ARENA)
        sb_printf(out, "arena+%lld", (long long)b->offset);
    else if (b->kind == BUF_X || b->kind == BUF_Y)
        sb_puts(out, kinds[b->kind]);
    else
        sb_printf(out, "%s[%d]", kinds[b->kind], b->index);
}

void schedule_print(const Schedule *s, StrBuf *out)
{
    static const char *kinds[] = {"loop", "reduce", "call"};
    for (int k = 0; k < s->kernels.n; k++) {
        const Kernel *kr = &s->kernels.v[k];
        char sh[128];
        shape_format(s->g, &kr->domain, sh, sizeof sh);
        sb_printf(out, "  k%-3d %-6s %-16s%s", k, kinds[kr->kind], sh,
                  kr->parallel ? " par" : "    ");
        for (int i = 0; i < kr->stores.n; i++) {
            sb_printf(out, " %%%u->", kr->stores.v[i].node);
            buf_name(s, kr->stores.v[i].buf, out);
        }
        for (int i = 0; i < kr->accs.n; i++) {
            sb_printf(out, " +%%%u->", kr->accs.v[i].node);
            buf_name(s, kr->accs.v[i].buf, out);
        }
        sb_putc(out, '\n');
    }
    sb_printf(out,
              "  arena: %lld bytes at batch %lld; %d loops merged, %d updates in place, "
              "%d reductions folded into loops, %d loops into products\n",
              (long long)s->arena_bytes, (long long)s->max_batch, s->merged, s->in_place,
              s->fused_reductions, s->epilogues);
}

/* ---- the full listing ---- */

/* The value a buffer holds, for its row in the listing: the node whose home it is,
 * else the first value stored into it; *aux is set when it is a reduction's second
 * buffer (the node is then the reduction). */
static NodeId buf_value(const Schedule *s, int buf, bool *aux)
{
    *aux = false;
    int count = graph_count(s->g);
    for (int id = 1; id < count; id++)
        if (s->home[id] == buf)
            return (NodeId)id;
    for (int k = 0; k < s->kernels.n; k++) {
        const Kernel *kr = &s->kernels.v[k];
        for (int i = 0; i < kr->stores.n; i++)
            if (kr->stores.v[i].buf == buf)
                return kr->stores.v[i].node;
        for (int i = 0; i < kr->accs.n; i++)
            if (kr->accs.v[i].buf == buf)
                return kr->accs.v[i].node;
        if (kr->aux == buf) {
            *aux = true;
            return kr->node;
        }
    }
    return 0;
}

/* Bytes of a value's elements at the planned batch, as dtype. */
static int64_t value_bytes(const Schedule *s, NodeId id, NndDType dtype)
{
    return shape_numel_at(&graph_node(s->g, id)->shape, s->max_batch) *
           (int64_t)nnd_dtype_size(dtype);
}

/* Marks the nodes kernel k computes inline below id: the walk ends at a value with a
 * home, unless k computes that value itself (as the code generator does). */
static void cone_mark(const Schedule *s, const Kernel *k, NodeId id, bool *mark, int depth)
{
    if (mark[id] || depth > 10000)
        return;
    bool own = false;
    if (k->kind == KER_LOOP)
        for (int i = 0; i < k->stores.n; i++)
            own |= k->stores.v[i].node == id && k->stores.v[i].buf == s->home[id];
    if (s->home[id] >= 0 && !own)
        return;
    mark[id] = true;
    Node *n = graph_node(s->g, id);
    for (int i = 0; i < n->nin; i++)
        cone_mark(s, k, n->in[i], mark, depth + 1);
}

static void dump_kernel(const Schedule *s, int k, bool *mark, AccessVec *acc, StrBuf *out)
{
    static const char *kinds[] = {"loop", "reduce", "call"};
    const Kernel *kr = &s->kernels.v[k];
    Graph *g = s->g;
    char sh[128];
    shape_format(g, &kr->domain, sh, sizeof sh);
    /* a call's routine picks its own threads */
    if (k == s->idle_at)
        sb_puts(out, "  idle: the pool's workers wait from here (NndStepArgs.idle)\n");
    sb_printf(out, "  k%d %s %s%s\n", k, kinds[kr->kind], sh,
              kr->kind == KER_CALL ? ""
              : kr->parallel       ? " parallel"
                                   : " serial");
    if (kr->kind != KER_LOOP) {
        sb_puts(out, "    op ");
        graph_print_node(g, kr->node, out);
        sb_putc(out, '\n');
    }
    if (kr->ep) { /* the loop folded into the product, as the runtime applies it */
        sb_puts(out, "    epilogue");
        if (kr->ep & NND_EP_BIAS)
            sb_printf(out, " + %%%u", kr->ep_bias);
        if (kr->ep & NND_EP_RELU)
            sb_puts(out, ", relu");
        if (kr->ep & NND_EP_MASK)
            sb_printf(out, " where %%%u > 0", kr->ep_mask);
        sb_putc(out, '\n');
    }
    /* the ops computed inline, in node order (leaves are loads or constants) */
    int count = graph_count(g);
    memset(mark, 0, (size_t)count);
    if (kr->kind == KER_REDUCE)
        cone_mark(s, kr, graph_node(g, kr->node)->in[0], mark, 0);
    for (int i = 0; i < kr->stores.n; i++)
        if (kr->stores.v[i].buf == s->home[kr->stores.v[i].node])
            cone_mark(s, kr, kr->stores.v[i].node, mark, 0);
    for (int i = 0; i < kr->accs.n; i++)
        cone_mark(s, kr, graph_node(g, kr->accs.v[i].node)->in[0], mark, 0);
    int nf = 0;
    for (int id = 1; id < count; id++) {
        if (!mark[id] || op_info[graph_node(g, (NodeId)id)->op].kind == OPK_LEAF)
            continue;
        sb_printf(out, "%s %%%d %s", nf ? "," : "    fuses", id,
                  op_info[graph_node(g, (NodeId)id)->op].name);
        nf++;
    }
    if (nf)
        sb_putc(out, '\n');
    /* the buffers it reads, in buffer order; "remapped" when not only at the kernel's own
     * index (a broadcast, a transpose, a gather) */
    kernel_reads(s, kr, acc);
    if (acc->n) {
        sb_puts(out, "    reads");
        for (int b = 0, nr = 0; b < s->bufs.n; b++)
            for (int i = 0; i < acc->n; i++) {
                if (acc->v[i].buf != b)
                    continue;
                sb_puts(out, nr++ ? ", " : " ");
                buf_name(s, b, out);
                sb_printf(out, " (%%%u%s)", acc->v[i].node, acc->v[i].identity ? "" : ", remapped");
            }
        sb_putc(out, '\n');
    }
    for (int i = 0; i < kr->stores.n; i++) {
        const Store *st = &kr->stores.v[i];
        const Buffer *b = &s->bufs.v[st->buf];
        shape_format(g, &graph_node(g, st->node)->shape, sh, sizeof sh);
        sb_printf(out, "    %%%u -> ", st->node);
        buf_name(s, st->buf, out);
        sb_printf(out, " %s %s %lld B", sh, dtype_name(b->dtype),
                  (long long)value_bytes(s, st->node, b->dtype));
        int home = s->home[st->node];
        if (home != st->buf && home >= 0) {
            sb_puts(out, ", copied from ");
            buf_name(s, home, out);
        } else if (b->kind == BUF_PARAM || b->kind == BUF_STATE) {
            sb_puts(out, ", in place");
        }
        sb_putc(out, '\n');
    }
    if (kr->aux >= 0) {
        const Buffer *b = &s->bufs.v[kr->aux];
        sb_puts(out, "    aux -> ");
        buf_name(s, kr->aux, out);
        shape_format(g, &graph_node(g, kr->node)->shape, sh, sizeof sh);
        sb_printf(out, " %s %s %lld B\n", sh, dtype_name(b->dtype),
                  (long long)value_bytes(s, kr->node, b->dtype));
    }
    for (int i = 0; i < kr->accs.n; i++) {
        const Acc *a = &kr->accs.v[i];
        Node *n = graph_node(g, a->node);
        sb_printf(out, "    acc %%%u %s of %%%u -> ", a->node, op_info[n->op].name, n->in[0]);
        buf_name(s, a->buf, out);
        sb_printf(out, " [] %s\n", dtype_name(s->bufs.v[a->buf].dtype));
    }
}

void schedule_dump(const Schedule *s, StrBuf *out)
{
    sb_printf(out,
              "  %d kernels, %d buffers, arena %lld bytes at batch %lld; %d loops merged, "
              "%d updates in place, %d reductions folded into loops, %d loops into products\n",
              s->kernels.n, s->bufs.n, (long long)s->arena_bytes, (long long)s->max_batch,
              s->merged, s->in_place, s->fused_reductions, s->epilogues);
    bool *mark = xcalloc((size_t)graph_count(s->g), 1);
    AccessVec acc = {0};
    for (int k = 0; k < s->kernels.n; k++)
        dump_kernel(s, k, mark, &acc, out);
    free(mark);
    vec_free(&acc);
    /* per buffer: what holds it, its type, place and size at the planned batch, and
     * the kernels from its first use to its last */
    sb_puts(out, "  buffers:\n");
    int unused = 0;
    for (int i = 0; i < s->bufs.n; i++) {
        const Buffer *b = &s->bufs.v[i];
        if (b->first < 0) {
            unused++; /* the scratch of an update that went in place */
            continue;
        }
        bool aux;
        NodeId v = buf_value(s, i, &aux);
        Node *n = graph_node(s->g, v);
        char sh[128] = "[]";
        if (v)
            shape_format(s->g, &n->shape, sh, sizeof sh);
        int64_t bytes = b->kind == BUF_ARENA ? b->bytes : v ? value_bytes(s, v, b->dtype) : 0;
        sb_printf(out, "    b%d ", i);
        buf_name(s, i, out);
        if ((n->op == OP_PARAM || n->op == OP_STATE) && n->name)
            sb_printf(out, " %s", n->name);
        sb_printf(out, " %s %s %lld B live k%d..k%d", sh, dtype_name(b->dtype), (long long)bytes,
                  b->first, b->last);
        if (v)
            sb_printf(out, " %s%%%u", aux ? "aux of " : "", v);
        /* the new values of a parameter or state, stored into its buffer */
        for (int k = 0; k < s->kernels.n; k++)
            for (int j = 0; j < s->kernels.v[k].stores.n; j++)
                if (s->kernels.v[k].stores.v[j].buf == i && s->kernels.v[k].stores.v[j].node != v)
                    sb_printf(out, " <- %%%u", s->kernels.v[k].stores.v[j].node);
        sb_putc(out, '\n');
    }
    if (unused)
        sb_printf(out, "    (%d more, unused)\n", unused);
}

void schedule_final_states(const Schedule *s, const bool *which, int n, IntVec *order,
                           IntVec *kernel)
{
    int *last = xcalloc((size_t)s->bufs.n + 1, sizeof(int)); /* per buffer: last writer + 1 */
    for (int i = 0; i < s->kernels.n; i++)
        for (int k = 0; k < s->kernels.v[i].stores.n; k++)
            last[s->kernels.v[i].stores.v[k].buf] = i + 1;
    for (int i = 0; i < s->kernels.n; i++)
        for (int b = 0; b < s->bufs.n; b++) {
            const Buffer *bf = &s->bufs.v[b];
            if (bf->kind == BUF_STATE && bf->index < n && which[bf->index] && last[b] == i + 1) {
                vec_push(order, bf->index);
                if (kernel)
                    vec_push(kernel, i);
            }
        }
    free(last);
}
