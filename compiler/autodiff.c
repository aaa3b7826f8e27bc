#include "autodiff.h"

#include <stdlib.h>
#include <string.h>

/* A VJP rule: given node n = f(inputs) and dy, the adjoint of n, sets dx[i] to the
 * adjoint contribution for input i (0: none) for each input with need[i].  Rules
 * build only differentiable primitives, so gradients can be differentiated again. */
typedef void (*VjpFn)(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx);

/* Every builder call may grow the node array, so a Node pointer is stale after one:
 * IN and SP are function calls (never interleaved with a builder call in the same
 * argument list), and pointers are not kept across builder calls. */
#define N(id) graph_node(g, id)
#define IN(i) node_in(g, n, i)
#define SP node_span(g, n)

static NodeId node_in(Graph *g, NodeId n, int i) { return graph_node(g, n)->in[i]; }
static Span node_span(Graph *g, NodeId n) { return graph_node(g, n)->span; }

static NodeId full_like(Graph *g, double v, NodeId like)
{
    Node *x = graph_node(g, like);
    Shape s = x->shape;
    return gb_full(g, v, (NndDType)x->dtype, &s, x->span);
}

static NodeId mul(Graph *g, NodeId a, NodeId b, Span sp) { return gb_binary(g, OP_MUL, a, b, sp); }

static void vjp_none(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx) {}
static void vjp_zero(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx) {}

/* -x: dx = -dy */
static void vjp_neg(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    dx[0] = gb_unary(g, OP_NEG, dy, SP);
}

/* e^x: dx = dy * y */
static void vjp_exp(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    dx[0] = mul(g, dy, n, SP);
}

/* ln x: dx = dy / x */
static void vjp_log(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    dx[0] = gb_binary(g, OP_DIV, dy, IN(0), SP);
}

/* sqrt x: dx = dy * 0.5 / y */
static void vjp_sqrt(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    NodeId half = full_like(g, 0.5, n);
    dx[0] = mul(g, dy, gb_binary(g, OP_DIV, half, n, SP), SP);
}

/* x^-1/2: dx = dy * -0.5 * y^3 */
static void vjp_rsqrt(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    NodeId y3 = mul(g, mul(g, n, n, SP), n, SP);
    dx[0] = mul(g, dy, mul(g, full_like(g, -0.5, n), y3, SP), SP);
}

/* |x|: dx = dy * sign(x) */
static void vjp_abs(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    dx[0] = mul(g, dy, gb_unary(g, OP_SIGN, IN(0), SP), SP);
}

/* tanh x: dx = dy * (1 - y^2) */
static void vjp_tanh(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    NodeId one = full_like(g, 1, n);
    dx[0] = mul(g, dy, gb_binary(g, OP_SUB, one, mul(g, n, n, SP), SP), SP);
}

/* sigmoid x: dx = dy * y * (1 - y) */
static void vjp_sigmoid(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    NodeId one = full_like(g, 1, n);
    dx[0] = mul(g, dy, mul(g, n, gb_binary(g, OP_SUB, one, n, SP), SP), SP);
}

/* relu x: dx = dy where x > 0, else 0.  Tested on the output (y > 0 exactly when
 * x > 0), so the input need not be kept for the backward pass. */
static void vjp_relu(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    Span sp = SP;
    NodeId zero = full_like(g, 0, n);
    NodeId pos = gb_binary(g, OP_GT, n, zero, sp);
    dx[0] = gb_select(g, pos, dy, zero, sp);
}

/* sin x: dx = dy * cos x */
static void vjp_sin(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    dx[0] = mul(g, dy, gb_unary(g, OP_COS, IN(0), SP), SP);
}

/* cos x: dx = -dy * sin x */
static void vjp_cos(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    dx[0] = gb_unary(g, OP_NEG, mul(g, dy, gb_unary(g, OP_SIN, IN(0), SP), SP), SP);
}

/* cast: the adjoint is cast back; integer inputs get none */
static void vjp_cast(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    NndDType from = (NndDType)N(IN(0))->dtype;
    if (dtype_is_float(from) && dtype_is_float((NndDType)N(n)->dtype))
        dx[0] = gb_cast(g, dy, from, SP);
}

/* a + b */
static void vjp_add(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    dx[0] = dy;
    dx[1] = dy;
}

/* a - b: db = -dy */
static void vjp_sub(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    dx[0] = dy;
    if (need[1])
        dx[1] = gb_unary(g, OP_NEG, dy, SP);
}

/* a * b: da = dy * b, db = dy * a */
static void vjp_mul(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    if (need[0])
        dx[0] = mul(g, dy, IN(1), SP);
    if (need[1])
        dx[1] = mul(g, dy, IN(0), SP);
}

/* a / b: da = dy / b, db = -dy * y / b */
static void vjp_div(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    if (need[0])
        dx[0] = gb_binary(g, OP_DIV, dy, IN(1), SP);
    if (need[1])
        dx[1] = gb_unary(g, OP_NEG, gb_binary(g, OP_DIV, mul(g, dy, n, SP), IN(1), SP), SP);
}

/* a ^ b: da = dy * b * a^(b-1), db = dy * y * ln a */
static void vjp_pow(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    NodeId a = IN(0), b = IN(1);
    if (need[0]) {
        double bv;
        NodeId d;
        if (graph_is_const(g, b, &bv) && bv == 2)
            d = mul(g, full_like(g, 2, n), a, SP);
        else if (graph_is_const(g, b, &bv) && bv == 1)
            d = full_like(g, 1, n);
        else
            d = mul(g, b,
                    gb_binary(g, OP_POW, a, gb_binary(g, OP_SUB, b, full_like(g, 1, n), SP), SP),
                    SP);
        dx[0] = mul(g, dy, d, SP);
    }
    if (need[1])
        dx[1] = mul(g, dy, mul(g, n, gb_unary(g, OP_LOG, a, SP), SP), SP);
}

/* min and max: the adjoint goes to the operand picked (to a on ties): a when
 * a <= b for min, a >= b for max */
static void minmax(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx, OpId picks_a)
{
    Span sp = SP;
    NodeId zero = full_like(g, 0, n);
    NodeId pick_a = gb_binary(g, picks_a, IN(0), IN(1), sp);
    if (need[0])
        dx[0] = gb_select(g, pick_a, dy, zero, sp);
    if (need[1])
        dx[1] = gb_select(g, pick_a, zero, dy, sp);
}

static void vjp_min(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    minmax(g, n, dy, need, dx, OP_LE);
}

static void vjp_max(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    minmax(g, n, dy, need, dx, OP_GE);
}

/* c ? a : b: da = c ? dy : 0, db = c ? 0 : dy */
static void vjp_select(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    NodeId zero = full_like(g, 0, n);
    if (need[1])
        dx[1] = gb_select(g, IN(0), dy, zero, SP);
    if (need[2])
        dx[2] = gb_select(g, IN(0), zero, dy, SP);
}

/* broadcast: the adjoint is summed over the broadcast axes */
static void vjp_broadcast(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    Shape s = N(IN(0))->shape;
    dx[0] = gb_sum_to(g, dy, &s, SP);
}

/* reshape: reshape back */
static void vjp_reshape(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    Shape s = N(IN(0))->shape;
    dx[0] = gb_reshape(g, dy, &s, SP);
}

/* transpose by perm: transpose back by its inverse */
static void vjp_transpose(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    int r = N(n)->shape.rank, inv[NND_MAX_RANK];
    for (int i = 0; i < r; i++)
        inv[g->ipool.v[N(n)->pool + (uint32_t)i]] = i;
    dx[0] = gb_transpose(g, dy, inv, SP);
}

/* slice: the adjoint is padded back with zeros (PAD takes the same starts/steps) */
static void vjp_slice(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    Node p = {.op = OP_PAD,
              .nin = 1,
              .in = {dy},
              .shape = N(IN(0))->shape,
              .pool = N(n)->pool,
              .span = SP};
    dx[0] = gb_node(g, p);
}

/* pad: the adjoint is the slice */
static void vjp_pad(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    Node p = {.op = OP_SLICE,
              .nin = 1,
              .in = {dy},
              .shape = N(IN(0))->shape,
              .pool = N(n)->pool,
              .span = SP};
    dx[0] = gb_node(g, p);
}

/* The adjoint of a reduction, with the reduced axes back as size 1, broadcast to x. */
static NodeId spread(Graph *g, NodeId n, NodeId v)
{
    Node *y = N(n);
    Span sp = y->span;
    Shape x = N(y->in[0])->shape, keep = x;
    for (int i = 0; i < x.rank; i++)
        if (y->mask & (1u << i))
            keep.d[i] = 1;
    return gb_broadcast(g, gb_reshape(g, v, &keep, sp), &x, sp);
}

/* sum: dx = dy spread over the reduced axes */
static void vjp_sum(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    dx[0] = spread(g, n, dy);
}

/* mean: dx = dy spread / count */
static void vjp_mean(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    Node *y = N(n);
    NodeId cnt = gb_dimsize(g, y->in[0], y->mask, (NndDType)y->dtype, SP);
    dx[0] = gb_binary_bc(g, OP_DIV, spread(g, n, dy), cnt, SP);
}

/* max over axes: dy shared equally among the elements equal to the max */
static void vjp_rmax(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    Node *y = N(n);
    NodeId x = y->in[0];
    NndDType dt = (NndDType)y->dtype;
    uint32_t mask = y->mask;
    NodeId hit = gb_cast(g, gb_binary(g, OP_EQ, x, spread(g, n, n), SP), dt, SP);
    NodeId cnt = gb_reduce(g, OP_SUM, hit, mask, true, SP);
    Shape xs = N(x)->shape;
    NodeId share = gb_binary(g, OP_DIV, hit, gb_broadcast(g, cnt, &xs, SP), SP);
    dx[0] = mul(g, spread(g, n, dy), share, SP);
}

/* logsumexp: dx = dy * softmax(x) = dy * e^(x - y) */
static void vjp_logsumexp(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    NodeId x = N(n)->in[0];
    NodeId sm = gb_unary(g, OP_EXP, gb_binary(g, OP_SUB, x, spread(g, n, n), SP), SP);
    dx[0] = mul(g, spread(g, n, dy), sm, SP);
}

/* pick: dx = one_hot(labels) * dy (labels get none) */
static void vjp_pick(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    Node *y = N(n);
    Shape xs = N(y->in[0])->shape;
    int64_t c = xs.d[xs.rank - 1];
    Node oh = {.op = OP_ONE_HOT,
               .nin = 1,
               .in = {y->in[1]},
               .idx = (int32_t)c,
               .dtype = y->dtype,
               .span = SP};
    Shape col = y->shape;
    NodeId hot = gb_node(g, oh);
    col.d[col.rank++] = 1;
    NodeId d = gb_broadcast(g, gb_reshape(g, dy, &col, SP), &xs, SP);
    dx[0] = mul(g, hot, d, SP);
}

/* C = op(A) @ op(B), op transposing when ta/tb:
 * d op(A) = dC @ op(B)^T and d op(B) = op(A)^T @ dC, transposed back when stored
 * transposed; every case is one matmul with transpose flags, never a copy. */
static void vjp_matmul(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    Node *y = N(n);
    NodeId a = y->in[0], b = y->in[1];
    bool ta = y->ta, tb = y->tb;
    if (y->mask) { /* summed: out = sum over L of a_L^T b_L */
        if (need[0])
            dx[0] = gb_matmul(g, b, dy, false, true, SP);
        if (need[1])
            dx[1] = gb_matmul(g, a, dy, false, false, SP);
        return;
    }
    if (N(a)->shape.rank > 2 && N(b)->shape.rank == 2) { /* folded: [*L, M, K] @ [K, N] */
        if (need[0])
            dx[0] = gb_matmul(g, dy, b, false, !tb, SP);
        if (need[1])
            dx[1] = !tb ? gb_matmul_summed(g, a, dy, SP) : gb_matmul_summed(g, dy, a, SP);
        return;
    }
    if (need[0])
        dx[0] = !ta ? gb_matmul(g, dy, b, false, !tb, SP) : gb_matmul(g, b, dy, tb, true, SP);
    if (need[1])
        dx[1] = !tb ? gb_matmul(g, a, dy, !ta, false, SP) : gb_matmul(g, dy, a, true, ta, SP);
}

/* A node like n (op, attributes) with other inputs and a preset shape. */
static NodeId like(Graph *g, NodeId n, OpId op, NodeId a, NodeId b, const Shape *shape)
{
    Node t = *N(n);
    Node m = {.op = (uint8_t)op,
              .nin = (uint8_t)(b ? 2 : 1),
              .in = {a, b},
              .pool = t.pool,
              .idx = t.idx,
              .span = t.span};
    if (shape)
        m.shape = *shape;
    return gb_node(g, m);
}

/* concat: each input's part of the adjoint */
static void vjp_concat(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    Node t = *N(n);
    for (int k = 0; k < 2; k++) {
        if (!need[k])
            continue;
        Shape part = N(t.in[k])->shape;
        /* starts, then steps (all 1) */
        int64_t v[2 * NND_MAX_RANK];
        for (int i = 0; i < part.rank; i++) {
            v[i] = k == 1 && i == t.idx ? N(t.in[0])->shape.d[t.idx] : 0;
            v[part.rank + i] = 1;
        }
        Node sl = {.op = OP_SLICE,
                   .nin = 1,
                   .in = {dy},
                   .shape = part,
                   .pool = graph_pool_ints(g, v, 2 * part.rank),
                   .span = t.span};
        dx[k] = gb_node(g, sl);
    }
}

/* take rows: the adjoint of the table adds the rows' adjoints back at their indices */
static void vjp_take(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    Node t = *N(n);
    Node sc = {.op = OP_SCATTER_ADD,
               .nin = 2,
               .in = {t.in[1], dy},
               .idx = (int32_t)N(t.in[0])->shape.d[0],
               .span = t.span};
    dx[0] = gb_node(g, sc);
}

/* scatter-add: the adjoint of the rows is the adjoint taken at their indices */
static void vjp_scatter(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    Node t = *N(n);
    Node tk = {.op = OP_TAKE, .nin = 2, .in = {dy, t.in[0]}, .span = t.span};
    dx[1] = gb_node(g, tk);
}

/* y = conv(x, w): dx = conv^T(dy, w), dw = conv_w(x, dy) */
static void vjp_conv(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    Node t = *N(n);
    Shape xs = N(t.in[0])->shape, ws = N(t.in[1])->shape;
    if (need[0])
        dx[0] = like(g, n, OP_CONV2D_GX, dy, t.in[1], &xs);
    if (need[1])
        dx[1] = like(g, n, OP_CONV2D_GW, t.in[0], dy, &ws);
}

/* r = conv^T(dy, w), linear in each: <a, conv^T(dy, w)> = <dy, conv(a, w)>, so
 * d(dy) = conv(a, w) and d(w) = conv_w(a, dy) */
static void vjp_conv_gx(Graph *g, NodeId n, NodeId a, const bool *need, NodeId *dx)
{
    Node t = *N(n);
    Shape ws = N(t.in[1])->shape;
    if (need[0])
        dx[0] = like(g, n, OP_CONV2D, a, t.in[1], NULL);
    if (need[1])
        dx[1] = like(g, n, OP_CONV2D_GW, a, t.in[0], &ws);
}

/* r = conv_w(x, dy): <a, conv_w(x, dy)> = <dy, conv(x, a)>, so d(dy) = conv(x, a)
 * and d(x) = conv^T(dy, a) */
static void vjp_conv_gw(Graph *g, NodeId n, NodeId a, const bool *need, NodeId *dx)
{
    Node t = *N(n);
    Shape xs = N(t.in[0])->shape;
    if (need[0])
        dx[0] = like(g, n, OP_CONV2D_GX, t.in[1], a, &xs);
    if (need[1])
        dx[1] = like(g, n, OP_CONV2D, t.in[0], a, NULL);
}

/* maxpool_gather(x, v): routing by x's maxima, linear in v; x only chooses */
static void vjp_poolmax(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    Node t = *N(n);
    if (need[1])
        dx[1] = like(g, n, OP_POOLMAX_T, t.in[0], dy, NULL);
}

static void vjp_poolmax_t(Graph *g, NodeId n, NodeId a, const bool *need, NodeId *dx)
{
    Node t = *N(n);
    if (need[1])
        dx[1] = like(g, n, OP_POOLMAX, t.in[0], a, NULL);
}

/* window means and their adjoint, the spread, are each other's adjoint */
static void vjp_poolavg(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    Shape xs = N(N(n)->in[0])->shape;
    dx[0] = like(g, n, OP_POOLAVG_T, dy, 0, &xs);
}

static void vjp_poolavg_t(Graph *g, NodeId n, NodeId a, const bool *need, NodeId *dx)
{
    dx[0] = like(g, n, OP_POOLAVG, a, 0, NULL);
}

/* a function's own gradient: elaboration builds it from the vjp block */
static void vjp_custom(Graph *g, NodeId n, NodeId dy, const bool *need, NodeId *dx)
{
    if (!g->custom_vjp)
        nnd_fatal("internal error: a custom gradient is needed after elaboration");
    NodeId d[2] = {0, 0};
    g->custom_vjp(g->custom_ctx, g, n, dy, d);
    dx[1] = need[1] ? d[0] : 0;
    dx[2] = need[2] ? d[1] : 0;
}

static const VjpFn vjp_table[OP_COUNT] = {
#define OP(id, text, arity, kind, infer, vjp, sem, ulps, fn) [OP_##id] = vjp,
#include "ops.def"
#undef OP
};

bool autodiff_has_vjp(OpId op) { return vjp_table[op] != vjp_none && vjp_table[op] != vjp_zero; }

/* The nodes up to y that depend on some wrt node through ops with VJP rules
 * (nodes come after their inputs); xcalloc'd, graph_count(g) entries. */
static bool *depends_on(Graph *g, NodeId y, const NodeId *wrt, int nwrt)
{
    bool *dep = xcalloc((size_t)graph_count(g), 1);
    for (int i = 0; i < nwrt; i++)
        dep[wrt[i]] = true;
    for (NodeId id = 1; id <= y; id++) {
        Node *n = N(id);
        for (int i = 0; i < n->nin && !dep[id]; i++)
            if (dep[n->in[i]] && autodiff_has_vjp((OpId)n->op))
                dep[id] = true;
    }
    return dep;
}

bool autodiff_depends(Graph *g, NodeId y, const NodeId *wrt, int nwrt)
{
    bool *dep = depends_on(g, y, wrt, nwrt);
    bool any = dep[y];
    free(dep);
    return any;
}

void autodiff(Graph *g, NodeId y, const NodeId *wrt, int nwrt, NodeId *out)
{
    int count = graph_count(g);
    bool *dep = depends_on(g, y, wrt, nwrt); /* depends on some wrt node */
    bool *need = xcalloc((size_t)count, 1); /* y depends on it */
    NodeId *adj = xcalloc((size_t)count, sizeof(NodeId));
    need[y] = true;
    for (NodeId id = y; id > 0; id--) {
        if (!need[id])
            continue;
        Node *n = N(id);
        for (int i = 0; i < n->nin; i++)
            need[n->in[i]] = true;
    }
    if (dep[y])
        adj[y] = gb_const(g, 1, (NndDType)N(y)->dtype, N(y)->span);
    for (NodeId id = y; id > 0; id--) {
        if (!adj[id] || !dep[id])
            continue;
        /* a wrt node's own inputs need nothing from it */
        bool is_wrt = false;
        for (int i = 0; i < nwrt; i++)
            is_wrt |= wrt[i] == id;
        Node *n = N(id);
        bool in_need[3] = {false, false, false};
        bool any = false;
        for (int i = 0; i < n->nin; i++) {
            in_need[i] = dep[n->in[i]] && need[n->in[i]];
            any |= in_need[i];
        }
        if (!any || (is_wrt && n->nin == 0))
            continue;
        NodeId dx[3] = {0, 0, 0};
        vjp_table[n->op](g, id, adj[id], in_need, dx);
        for (int i = 0; i < N(id)->nin; i++) {
            NodeId in = N(id)->in[i];
            if (!dx[i] || !in_need[i])
                continue;
            adj[in] = adj[in] ? gb_binary(g, OP_ADD, adj[in], dx[i], N(in)->span) : dx[i];
        }
    }
    for (int i = 0; i < nwrt; i++) {
        NodeId w = wrt[i];
        out[i] = adj[w] ? adj[w] : full_like(g, 0, w);
    }
    free(dep);
    free(need);
    free(adj);
}
