#include "graph.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const OpInfo op_info[OP_COUNT] = {
#define OP(id, text, arity, kind, infer, vjp, sem, ulps, fn) [OP_##id] = {text, arity, OPK_##kind},
#include "ops.def"
#undef OP
};

void graph_init(Graph *g)
{
    memset(g, 0, sizeof *g);
    Node none = {0};
    vec_push(&g->nodes, none);
}

void graph_free(Graph *g)
{
    vec_free(&g->nodes);
    vec_free(&g->ipool);
    vec_free(&g->fpool);
    vec_free(&g->syms);
    arena_free(&g->arena);
}

int64_t graph_symbol(Graph *g, const char *name)
{
    for (int i = 0; i < g->syms.n; i++)
        if (strcmp(g->syms.v[i], name) == 0)
            return -(int64_t)i - 1;
    vec_push(&g->syms, arena_strdup(&g->arena, name));
    return -(int64_t)g->syms.n;
}

NodeId graph_append(Graph *g, const Node *n)
{
    vec_push(&g->nodes, *n);
    if (!n->phase)
        g->nodes.v[g->nodes.n - 1].phase = (uint8_t)g->phase;
    return (NodeId)(g->nodes.n - 1);
}

/* ---- shapes ---- */

bool shape_equal(const Shape *a, const Shape *b)
{
    if (a->rank != b->rank)
        return false;
    for (int i = 0; i < a->rank; i++)
        if (a->d[i] != b->d[i])
            return false;
    return true;
}

Shape shape_scalar(void) { return (Shape){0, {0}}; }

Shape shape_make(int rank, const int64_t *d)
{
    Shape s = {rank, {0}};
    for (int i = 0; i < rank; i++)
        s.d[i] = d[i];
    return s;
}

int64_t shape_static_numel(const Shape *s, bool *symbolic)
{
    int64_t n = 1;
    bool sym = false;
    for (int i = 0; i < s->rank; i++) {
        if (s->d[i] < 0)
            sym = true;
        else if (__builtin_mul_overflow(n, s->d[i], &n))
            n = INT64_MAX; /* saturates: every size check then fails */
    }
    if (symbolic)
        *symbolic = sym;
    return n;
}

static void dim_format(const Graph *g, int64_t d, char *buf, size_t size)
{
    if (d >= 0)
        snprintf(buf, size, "%lld", (long long)d);
    else if (-d - 1 < g->syms.n)
        snprintf(buf, size, "%s", g->syms.v[-d - 1]);
    else
        snprintf(buf, size, "?%lld", (long long)(-d - 1));
}

void shape_format(const Graph *g, const Shape *s, char *buf, size_t size)
{
    StrBuf b = {0};
    sb_putc(&b, '[');
    for (int i = 0; i < s->rank; i++) {
        char d[64];
        dim_format(g, s->d[i], d, sizeof d);
        if (i)
            sb_puts(&b, ", ");
        sb_puts(&b, d);
    }
    sb_putc(&b, ']');
    snprintf(buf, size, "%s", b.s);
    sb_free(&b);
}

bool shape_broadcast(const Graph *g, const Shape *a, const Shape *b, Shape *out, char *err,
                     size_t errlen)
{
    int r = NND_MAX(a->rank, b->rank);
    Shape s = {r, {0}};
    for (int i = 0; i < r; i++) {
        int ia = a->rank - r + i, ib = b->rank - r + i;
        int64_t da = ia >= 0 ? a->d[ia] : 1, db = ib >= 0 ? b->d[ib] : 1;
        if (da == db || db == 1)
            s.d[i] = da;
        else if (da == 1)
            s.d[i] = db;
        else {
            char sa[128], sb[128], x[64], y[64];
            shape_format(g, a, sa, sizeof sa);
            shape_format(g, b, sb, sizeof sb);
            dim_format(g, da, x, sizeof x);
            dim_format(g, db, y, sizeof y);
            snprintf(err, errlen, "shapes %s and %s do not broadcast: %s and %s differ", sa, sb, x,
                     y);
            return false;
        }
    }
    *out = s;
    return true;
}

const char *dtype_name(NndDType t)
{
    static const char *names[] = {"f32", "f64", "i32", "bool"};
    return (unsigned)t < NND_ARRAY_LEN(names) ? names[t] : "?";
}

bool dtype_is_float(NndDType t) { return t == NND_F32 || t == NND_F64; }

/* ---- shape rules ---- */

typedef bool (*InferFn)(Graph *g, Node *n, char *err, size_t errlen);

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        return false;                                                                              \
    } while (0)

static Node *in_node(Graph *g, const Node *n, int i) { return &g->nodes.v[n->in[i]]; }

static bool infer_leaf(Graph *g, Node *n, char *err, size_t errlen) { return true; }

static bool infer_rand(Graph *g, Node *n, char *err, size_t errlen)
{
    for (int i = 0; i < 2; i++)
        if (in_node(g, n, i)->shape.rank != 0)
            FAIL("random number bounds must be scalars");
    if (!dtype_is_float(n->dtype))
        FAIL("random numbers are floats");
    return true;
}

static bool infer_dimsize(Graph *g, Node *n, char *err, size_t errlen)
{
    if (n->mask >> in_node(g, n, 0)->shape.rank)
        FAIL("axis out of range");
    n->shape = shape_scalar();
    return true;
}

static bool infer_same(Graph *g, Node *n, char *err, size_t errlen)
{
    Node *a = in_node(g, n, 0);
    if (a->dtype == NND_BOOL)
        FAIL("%s needs numbers, not booleans", op_info[n->op].name);
    n->shape = a->shape;
    n->dtype = a->dtype;
    return true;
}

static bool infer_float(Graph *g, Node *n, char *err, size_t errlen)
{
    Node *a = in_node(g, n, 0);
    if (!dtype_is_float(a->dtype))
        FAIL("%s needs a float tensor, got %s", op_info[n->op].name, dtype_name(a->dtype));
    n->shape = a->shape;
    n->dtype = a->dtype;
    return true;
}

static bool infer_bool1(Graph *g, Node *n, char *err, size_t errlen)
{
    Node *a = in_node(g, n, 0);
    if (a->dtype != NND_BOOL)
        FAIL("'not' needs a boolean, got %s", dtype_name(a->dtype));
    n->shape = a->shape;
    n->dtype = NND_BOOL;
    return true;
}

static bool infer_cast(Graph *g, Node *n, char *err, size_t errlen)
{
    n->shape = in_node(g, n, 0)->shape;
    return true;
}

static bool same_shapes(Graph *g, Node *n, int k, char *err, size_t errlen)
{
    for (int i = 1; i < k; i++) {
        Node *a = in_node(g, n, 0), *b = in_node(g, n, i);
        if (!shape_equal(&a->shape, &b->shape)) {
            char sa[128], sb[128];
            shape_format(g, &a->shape, sa, sizeof sa);
            shape_format(g, &b->shape, sb, sizeof sb);
            FAIL("%s needs equal shapes, got %s and %s", op_info[n->op].name, sa, sb);
        }
        if (a->dtype != b->dtype && i < 3 && !(n->op == OP_SELECT && i == 1))
            FAIL("%s needs equal dtypes, got %s and %s", op_info[n->op].name, dtype_name(a->dtype),
                 dtype_name(b->dtype));
    }
    return true;
}

static bool infer_arith(Graph *g, Node *n, char *err, size_t errlen)
{
    if (!same_shapes(g, n, 2, err, errlen))
        return false;
    Node *a = in_node(g, n, 0);
    if (a->dtype == NND_BOOL)
        FAIL("%s needs numbers, not booleans", op_info[n->op].name);
    n->shape = a->shape;
    n->dtype = a->dtype;
    return true;
}

static bool infer_compare(Graph *g, Node *n, char *err, size_t errlen)
{
    if (!same_shapes(g, n, 2, err, errlen))
        return false;
    n->shape = in_node(g, n, 0)->shape;
    n->dtype = NND_BOOL;
    return true;
}

static bool infer_bool2(Graph *g, Node *n, char *err, size_t errlen)
{
    if (!same_shapes(g, n, 2, err, errlen))
        return false;
    if (in_node(g, n, 0)->dtype != NND_BOOL)
        FAIL("'%s' needs booleans", op_info[n->op].name);
    n->shape = in_node(g, n, 0)->shape;
    n->dtype = NND_BOOL;
    return true;
}

static bool infer_select(Graph *g, Node *n, char *err, size_t errlen)
{
    Node *c = in_node(g, n, 0), *a = in_node(g, n, 1), *b = in_node(g, n, 2);
    if (c->dtype != NND_BOOL)
        FAIL("the condition must be a boolean, got %s", dtype_name(c->dtype));
    if (!shape_equal(&c->shape, &a->shape) || !shape_equal(&a->shape, &b->shape))
        FAIL("select needs equal shapes");
    if (a->dtype != b->dtype)
        FAIL("both branches must have one dtype, got %s and %s", dtype_name(a->dtype),
             dtype_name(b->dtype));
    n->shape = a->shape;
    n->dtype = a->dtype;
    return true;
}

static bool infer_broadcast(Graph *g, Node *n, char *err, size_t errlen)
{
    Node *a = in_node(g, n, 0);
    const Shape *s = &n->shape;
    if (a->shape.rank > s->rank)
        goto bad;
    for (int i = 0; i < a->shape.rank; i++) {
        int64_t da = a->shape.d[i], dt = s->d[s->rank - a->shape.rank + i];
        if (da != dt && da != 1)
            goto bad;
    }
    n->dtype = a->dtype;
    return true;
bad : {
    char sa[128], st[128];
    shape_format(g, &a->shape, sa, sizeof sa);
    shape_format(g, s, st, sizeof st);
    FAIL("cannot broadcast %s to %s", sa, st);
}
}

/* Reshape keeps the element count: equal products of the concrete dims and the
 * same symbolic dims in the same order. */
static bool infer_reshape(Graph *g, Node *n, char *err, size_t errlen)
{
    Node *a = in_node(g, n, 0);
    int64_t sa[NND_MAX_RANK], st[NND_MAX_RANK];
    int na = 0, nt = 0;
    for (int i = 0; i < a->shape.rank; i++)
        if (a->shape.d[i] < 0)
            sa[na++] = a->shape.d[i];
    for (int i = 0; i < n->shape.rank; i++)
        if (n->shape.d[i] < 0)
            st[nt++] = n->shape.d[i];
    bool ok =
        na == nt && shape_static_numel(&a->shape, NULL) == shape_static_numel(&n->shape, NULL);
    for (int i = 0; ok && i < na; i++)
        ok = sa[i] == st[i];
    if (!ok) {
        char x[128], y[128];
        shape_format(g, &a->shape, x, sizeof x);
        shape_format(g, &n->shape, y, sizeof y);
        FAIL("cannot reshape %s to %s: the element counts differ", x, y);
    }
    n->dtype = a->dtype;
    return true;
}

static bool infer_transpose(Graph *g, Node *n, char *err, size_t errlen)
{
    Node *a = in_node(g, n, 0);
    int r = a->shape.rank;
    const int64_t *perm = &g->ipool.v[n->pool];
    bool seen[NND_MAX_RANK] = {0};
    for (int i = 0; i < r; i++) {
        if (perm[i] < 0 || perm[i] >= r || seen[perm[i]])
            FAIL("transpose needs a permutation of the %d axes", r);
        seen[perm[i]] = true;
    }
    n->shape.rank = r;
    for (int i = 0; i < r; i++)
        n->shape.d[i] = a->shape.d[perm[i]];
    n->dtype = a->dtype;
    return true;
}

/* SLICE: pool holds start[r] then step[r]; the preset shape holds the counts. */
static bool check_slice(Graph *g, const Shape *full, const Shape *part, const int64_t *start,
                        const int64_t *step, char *err, size_t errlen)
{
    if (full->rank != part->rank)
        FAIL("slice rank mismatch");
    for (int i = 0; i < full->rank; i++) {
        int64_t d = full->d[i], c = part->d[i];
        if (d < 0 || c < 0) {
            if (!(d == c && start[i] == 0 && step[i] == 1))
                FAIL("a symbolic dimension can only be sliced whole (':')");
            continue;
        }
        if (step[i] < 1)
            FAIL("slice step must be at least 1");
        if (c > 0 && (start[i] < 0 || start[i] + (c - 1) * step[i] >= d))
            FAIL("slice out of range on axis %d", i);
    }
    return true;
}

/* SLICE takes a part of its input; PAD puts its input back as that part of a
 * bigger zero tensor: one check serves both, with the shapes swapped. */
static bool infer_slice(Graph *g, Node *n, char *err, size_t errlen)
{
    Node *a = in_node(g, n, 0);
    const int64_t *start = &g->ipool.v[n->pool];
    const Shape *full = n->op == OP_SLICE ? &a->shape : &n->shape;
    const Shape *part = n->op == OP_SLICE ? &n->shape : &a->shape;
    if (!check_slice(g, full, part, start, start + a->shape.rank, err, errlen))
        return false;
    n->dtype = a->dtype;
    return true;
}

static bool infer_reduce(Graph *g, Node *n, char *err, size_t errlen)
{
    Node *a = in_node(g, n, 0);
    if (n->mask >> a->shape.rank)
        FAIL("axis out of range for rank %d", a->shape.rank);
    if (a->dtype == NND_BOOL || (n->op != OP_SUM && n->op != OP_RMAX && !dtype_is_float(a->dtype)))
        FAIL("%s needs a float tensor, got %s", op_info[n->op].name, dtype_name(a->dtype));
    Shape s = {0, {0}};
    for (int i = 0; i < a->shape.rank; i++) {
        if (n->mask & (1u << i)) {
            if (n->keep)
                s.d[s.rank++] = 1;
        } else {
            s.d[s.rank++] = a->shape.d[i];
        }
    }
    n->shape = s;
    n->dtype = a->dtype;
    return true;
}

static bool infer_argmax(Graph *g, Node *n, char *err, size_t errlen)
{
    Node *a = in_node(g, n, 0);
    if (n->idx < 0 || n->idx >= a->shape.rank)
        FAIL("axis out of range for rank %d", a->shape.rank);
    if (a->dtype == NND_BOOL)
        FAIL("argmax needs numbers, not booleans");
    if (a->shape.d[n->idx] < 0)
        FAIL("argmax needs a concrete axis");
    Shape s = {0, {0}};
    for (int i = 0; i < a->shape.rank; i++) {
        if (i == n->idx) {
            if (n->keep)
                s.d[s.rank++] = 1;
        } else {
            s.d[s.rank++] = a->shape.d[i];
        }
    }
    n->shape = s;
    n->dtype = NND_I32;
    return true;
}

static bool infer_pick(Graph *g, Node *n, char *err, size_t errlen)
{
    Node *x = in_node(g, n, 0), *i = in_node(g, n, 1);
    char sx[128], si[128];
    shape_format(g, &x->shape, sx, sizeof sx);
    shape_format(g, &i->shape, si, sizeof si);
    if (i->dtype != NND_I32)
        FAIL("pick needs integer labels (i32), got %s", dtype_name(i->dtype));
    if (x->shape.rank < 1 || i->shape.rank != x->shape.rank - 1)
        FAIL("pick needs labels shaped like the values without their last axis: %s and %s", sx, si);
    for (int k = 0; k < i->shape.rank; k++)
        if (i->shape.d[k] != x->shape.d[k])
            FAIL("pick needs labels shaped like the values without their last axis: %s and %s", sx,
                 si);
    if (x->shape.d[x->shape.rank - 1] < 0)
        FAIL("pick needs a concrete last axis");
    n->shape = i->shape;
    n->dtype = x->dtype;
    return true;
}

static bool infer_one_hot(Graph *g, Node *n, char *err, size_t errlen)
{
    Node *i = in_node(g, n, 0);
    if (i->dtype != NND_I32)
        FAIL("one_hot needs integer labels (i32), got %s", dtype_name(i->dtype));
    if (n->idx < 1)
        FAIL("one_hot needs a depth of at least 1");
    if (i->shape.rank >= NND_MAX_RANK)
        FAIL("one_hot result would have too many axes");
    n->shape = i->shape;
    n->shape.d[n->shape.rank++] = n->idx;
    return true;
}

/* Three forms of a @ b (ta, tb transpose the last two axes of an operand):
 *  - batched: operands of one rank r >= 2 and equal leading axes: a matrix product
 *    per leading index;
 *  - folded: a of rank r > 2, b a matrix, a not transposed: [*L, M, K] @ [K, N] is
 *    [*L, M, N], one product with L * M rows (a dense layer over a sequence);
 *  - summed (mask 1, made by autodiff for the folded form's weight gradient): a and
 *    b of one rank r > 2, a transposed: the sum over the leading axes of the
 *    products, [*L, M, K]^T @ [*L, M, N] = [K, N], one product of inner size L * M. */
static bool infer_matmul(Graph *g, Node *n, char *err, size_t errlen)
{
    Node *a = in_node(g, n, 0), *b = in_node(g, n, 1);
    char sa[128], sb[128];
    shape_format(g, &a->shape, sa, sizeof sa);
    shape_format(g, &b->shape, sb, sizeof sb);
    int ra = a->shape.rank, rb = b->shape.rank;
    if (ra < 2 || rb < 2)
        FAIL("matmul needs matrices (rank >= 2), got %s @ %s", sa, sb);
    bool fold = ra > 2 && rb == 2 && !n->mask;
    if (n->mask && (ra != rb || ra < 3 || !n->ta || n->tb))
        FAIL("internal: a summed matmul needs a transposed left operand of b's rank > 2, got %s "
             "@ %s",
             sa, sb);
    if (fold && n->ta)
        FAIL("matmul of %s @ %s: the left operand of a product with a matrix cannot be "
             "transposed",
             sa, sb);
    if (!fold && rb != ra)
        FAIL("matmul needs operands of one rank, or a matrix on the right, got %s @ %s", sa, sb);
    for (int i = 0; !fold && i < ra - 2; i++)
        if (a->shape.d[i] != b->shape.d[i])
            FAIL("batched matmul needs equal leading dimensions, got %s @ %s", sa, sb);
    if (!dtype_is_float(a->dtype) || a->dtype != b->dtype)
        FAIL("matmul needs float operands of one dtype, got %s and %s", dtype_name(a->dtype),
             dtype_name(b->dtype));
    int64_t m = a->shape.d[ra - (n->ta ? 1 : 2)], ka = a->shape.d[ra - (n->ta ? 2 : 1)];
    int64_t kb = b->shape.d[rb - (n->tb ? 1 : 2)], nn = b->shape.d[rb - (n->tb ? 2 : 1)];
    if (ka != kb) {
        char x[32], y[32];
        dim_format(g, ka, x, sizeof x);
        dim_format(g, kb, y, sizeof y);
        FAIL("matmul shapes do not agree: %s @ %s (inner dimensions %s and %s differ)", sa, sb, x,
             y);
    }
    n->shape = n->mask ? shape_make(2, (int64_t[]){m, nn}) : a->shape;
    n->shape.d[n->shape.rank - 2] = m;
    n->shape.d[n->shape.rank - 1] = nn;
    n->dtype = a->dtype;
    return true;
}

/* ---- random draws in a step, orthogonal initial values ---- */

/* in[0]: the step; num: the seed */
static bool infer_randstep(Graph *g, Node *n, char *err, size_t errlen)
{
    if (in_node(g, n, 0)->shape.rank != 0)
        FAIL("rand_step takes a scalar step");
    if (!dtype_is_float(n->dtype))
        FAIL("random numbers are floats");
    return true;
}

static bool infer_ortho(Graph *g, Node *n, char *err, size_t errlen)
{
    if (in_node(g, n, 0)->shape.rank != 0)
        FAIL("orthogonal takes a scalar gain");
    if (n->shape.rank < 2)
        FAIL("an orthogonal initializer needs a parameter with at least 2 dimensions");
    if (!dtype_is_float(n->dtype))
        FAIL("orthogonal values are floats");
    return true;
}

/* ---- concat, take, scatter ---- */

static bool infer_concat(Graph *g, Node *n, char *err, size_t errlen)
{
    Node *a = in_node(g, n, 0), *b = in_node(g, n, 1);
    char sa[128], sb[128];
    shape_format(g, &a->shape, sa, sizeof sa);
    shape_format(g, &b->shape, sb, sizeof sb);
    int ax = n->idx, r = a->shape.rank;
    if (b->shape.rank != r || ax < 0 || ax >= r)
        FAIL("concat needs tensors of one rank and an axis among theirs, got %s and %s", sa, sb);
    for (int i = 0; i < r; i++)
        if (i != ax && a->shape.d[i] != b->shape.d[i])
            FAIL("concat needs equal shapes but for axis %d, got %s and %s", ax, sa, sb);
    if (a->shape.d[ax] < 0 || b->shape.d[ax] < 0)
        FAIL("concat along the batch dimension is not supported");
    if (a->dtype != b->dtype)
        FAIL("concat needs one dtype, got %s and %s", dtype_name(a->dtype), dtype_name(b->dtype));
    n->shape = a->shape;
    n->shape.d[ax] = a->shape.d[ax] + b->shape.d[ax];
    n->dtype = a->dtype;
    return true;
}

static bool infer_take(Graph *g, Node *n, char *err, size_t errlen)
{
    Node *t = in_node(g, n, 0), *i = in_node(g, n, 1);
    if (i->dtype != NND_I32)
        FAIL("indices must be integers (i32), got %s", dtype_name(i->dtype));
    if (t->shape.rank < 1 || t->shape.d[0] < 0)
        FAIL("take needs a table with a first axis of known size");
    if (i->shape.rank + t->shape.rank - 1 > NND_MAX_RANK)
        FAIL("take's result would have too many axes");
    if (!dtype_is_float(t->dtype))
        FAIL("take needs a float table");
    n->shape = i->shape;
    for (int k = 1; k < t->shape.rank; k++)
        n->shape.d[n->shape.rank++] = t->shape.d[k];
    n->dtype = t->dtype;
    return true;
}

static bool infer_scatter(Graph *g, Node *n, char *err, size_t errlen)
{
    Node *i = in_node(g, n, 0), *src = in_node(g, n, 1);
    if (i->dtype != NND_I32 || !dtype_is_float(src->dtype) || n->idx < 1)
        FAIL("scatter_add takes i32 indices, float rows and a row count");
    if (src->shape.rank < i->shape.rank)
        FAIL("scatter_add's rows do not fit its indices");
    for (int k = 0; k < i->shape.rank; k++)
        if (src->shape.d[k] != i->shape.d[k])
            FAIL("scatter_add's rows do not fit its indices");
    n->shape.rank = 1 + src->shape.rank - i->shape.rank;
    n->shape.d[0] = n->idx;
    for (int k = i->shape.rank; k < src->shape.rank; k++)
        n->shape.d[1 + k - i->shape.rank] = src->shape.d[k];
    n->dtype = src->dtype;
    return true;
}

/* ---- convolution and pooling ---- */

ConvAttrs graph_conv_attrs(const Graph *g, const Node *n)
{
    const int64_t *a = &g->ipool.v[n->pool];
    return (ConvAttrs){a[0], a[1], a[2], a[3], a[4], a[5], a[6]};
}

PoolAttrs graph_pool_attrs(const Graph *g, const Node *n)
{
    const int64_t *a = &g->ipool.v[n->pool];
    return (PoolAttrs){a[0], a[1], a[2], a[3], a[4], a[5]};
}

uint32_t graph_pool_ints(Graph *g, const int64_t *v, int n)
{
    uint32_t off = (uint32_t)g->ipool.n;
    for (int i = 0; i < n; i++)
        vec_push(&g->ipool, v[i]);
    return off;
}

/* "a" or "an" before the number n read out in English (an 8, an 11, an 18, an 80). */
static const char *article(int64_t n)
{
    char b[24];
    int len = snprintf(b, sizeof b, "%lld", (long long)(n < 0 ? -n : n));
    if (b[0] == '8' || (len % 3 == 2 && b[0] == '1' && (b[1] == '1' || b[1] == '8')))
        return "an";
    return "a";
}

static int64_t window_out(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil)
{
    int64_t span = dil * (k - 1) + 1;
    if (in + 2 * pad < span)
        return 0;
    return (in + 2 * pad - span) / stride + 1;
}

bool conv_out_shape(const Graph *g, const Shape *x, const Shape *w, const ConvAttrs *a, Shape *out,
                    char *err, size_t errlen)
{
    char sx[128], sw[128];
    shape_format(g, x, sx, sizeof sx);
    shape_format(g, w, sw, sizeof sw);
    if (x->rank != 4 || w->rank != 4)
        FAIL("conv2d needs x [N, C, H, W] and w [O, C/groups, KH, KW], got %s and %s", sx, sw);
    for (int i = 1; i < 4; i++)
        if (x->d[i] < 0 || w->d[i] < 0 || w->d[0] < 0)
            FAIL("conv2d needs known channel and image sizes, got %s", sx);
    if (a->sh < 1 || a->sw < 1 || a->dh < 1 || a->dw < 1 || a->ph < 0 || a->pw < 0 || a->groups < 1)
        FAIL("conv2d needs strides and dilations >= 1 and paddings >= 0");
    if (x->d[1] % a->groups || w->d[0] % a->groups)
        FAIL("conv2d: %lld input and %lld output channels do not divide into %lld groups",
             (long long)x->d[1], (long long)w->d[0], (long long)a->groups);
    if (w->d[1] != x->d[1] / a->groups)
        FAIL("conv2d: x %s has %lld channels, so w needs %lld per group, but w is %s", sx,
             (long long)x->d[1], (long long)(x->d[1] / a->groups), sw);
    int64_t oh = window_out(x->d[2], w->d[2], a->sh, a->ph, a->dh);
    int64_t ow = window_out(x->d[3], w->d[3], a->sw, a->pw, a->dw);
    if (oh < 1 || ow < 1) {
        long long kh = w->d[2], kw = w->d[3], h = x->d[2], wd = x->d[3];
        if (a->dh == 1 && a->dw == 1)
            FAIL("conv2d: a %lldx%lld kernel does not fit %s %lldx%lld image", kh, kw, article(h),
                 h, wd);
        char dil[48];
        if (a->dh == a->dw)
            snprintf(dil, sizeof dil, "%lld", (long long)a->dh);
        else
            snprintf(dil, sizeof dil, "%lldx%lld", (long long)a->dh, (long long)a->dw);
        FAIL("conv2d: a %lldx%lld kernel with dilation %s spans %lldx%lld, which does not fit "
             "%s %lldx%lld image",
             kh, kw, dil, (long long)(a->dh * (kh - 1) + 1), (long long)(a->dw * (kw - 1) + 1),
             article(h), h, wd);
    }
    *out = (Shape){4, {x->d[0], w->d[0], oh, ow}};
    return true;
}

bool pool_out_shape(const Graph *g, const Shape *x, const PoolAttrs *a, Shape *out, char *err,
                    size_t errlen)
{
    char sx[128];
    shape_format(g, x, sx, sizeof sx);
    if (x->rank != 4)
        FAIL("pooling needs x [N, C, H, W], got %s", sx);
    if (x->d[1] < 0 || x->d[2] < 0 || x->d[3] < 0)
        FAIL("pooling needs known channel and image sizes, got %s", sx);
    if (a->kh < 1 || a->kw < 1 || a->sh < 1 || a->sw < 1 || a->ph < 0 || a->pw < 0)
        FAIL("pooling needs kernels and strides >= 1 and paddings >= 0");
    if (2 * a->ph > a->kh || 2 * a->pw > a->kw)
        FAIL("pooling padding must be at most half the kernel");
    int64_t oh = window_out(x->d[2], a->kh, a->sh, a->ph, 1),
            ow = window_out(x->d[3], a->kw, a->sw, a->pw, 1);
    if (oh < 1 || ow < 1)
        FAIL("pooling: a %lldx%lld window does not fit %s", (long long)a->kh, (long long)a->kw, sx);
    *out = (Shape){4, {x->d[0], x->d[1], oh, ow}};
    return true;
}

static bool float_pair(Graph *g, Node *n, char *err, size_t errlen)
{
    Node *a = in_node(g, n, 0), *b = in_node(g, n, 1);
    if (!dtype_is_float(a->dtype) || a->dtype != b->dtype)
        FAIL("%s needs float tensors of one dtype", op_info[n->op].name);
    n->dtype = a->dtype;
    return true;
}

static bool infer_conv(Graph *g, Node *n, char *err, size_t errlen)
{
    ConvAttrs a = graph_conv_attrs(g, n);
    return float_pair(g, n, err, errlen) &&
           conv_out_shape(g, &in_node(g, n, 0)->shape, &in_node(g, n, 1)->shape, &a, &n->shape, err,
                          errlen);
}

/* the preset shape is x's: the one dy (in[0]) comes from with w (in[1]) */
static bool infer_conv_gx(Graph *g, Node *n, char *err, size_t errlen)
{
    ConvAttrs a = graph_conv_attrs(g, n);
    Shape y;
    if (!float_pair(g, n, err, errlen) ||
        !conv_out_shape(g, &n->shape, &in_node(g, n, 1)->shape, &a, &y, err, errlen))
        return false;
    if (!shape_equal(&y, &in_node(g, n, 0)->shape))
        FAIL("conv2d_gx: the adjoint's shape does not match");
    return true;
}

/* the preset shape is w's: x is in[0], dy in[1] */
static bool infer_conv_gw(Graph *g, Node *n, char *err, size_t errlen)
{
    ConvAttrs a = graph_conv_attrs(g, n);
    Shape y;
    if (!float_pair(g, n, err, errlen) ||
        !conv_out_shape(g, &in_node(g, n, 0)->shape, &n->shape, &a, &y, err, errlen))
        return false;
    if (!shape_equal(&y, &in_node(g, n, 1)->shape))
        FAIL("conv2d_gw: the adjoint's shape does not match");
    return true;
}

/* POOLMAX (x, v), POOLAVG (x): pooled shape */
static bool infer_pool(Graph *g, Node *n, char *err, size_t errlen)
{
    PoolAttrs a = graph_pool_attrs(g, n);
    Node *x = in_node(g, n, 0);
    if (!dtype_is_float(x->dtype))
        FAIL("pooling needs a float tensor");
    if (n->nin == 2 &&
        (!shape_equal(&x->shape, &in_node(g, n, 1)->shape) || in_node(g, n, 1)->dtype != x->dtype))
        FAIL("maxpool_gather needs two tensors of one shape");
    n->dtype = x->dtype;
    return pool_out_shape(g, &x->shape, &a, &n->shape, err, errlen);
}

/* POOLMAX_T (x, d): shaped like x; POOLAVG_T (d): the preset (unpooled) shape */
static bool infer_pool_t(Graph *g, Node *n, char *err, size_t errlen)
{
    PoolAttrs a = graph_pool_attrs(g, n);
    Node *d = in_node(g, n, n->nin - 1);
    if (n->nin == 2)
        n->shape = in_node(g, n, 0)->shape;
    Shape y;
    if (!pool_out_shape(g, &n->shape, &a, &y, err, errlen))
        return false;
    if (!shape_equal(&y, &d->shape) || !dtype_is_float(d->dtype))
        FAIL("%s: the pooled tensor's shape does not match", op_info[n->op].name);
    n->dtype = d->dtype;
    return true;
}

static bool infer_custom(Graph *g, Node *n, char *err, size_t errlen)
{
    n->shape = in_node(g, n, 0)->shape;
    n->dtype = in_node(g, n, 0)->dtype;
    return true;
}

static const InferFn infer_table[OP_COUNT] = {
#define OP(id, text, arity, kind, infer, vjp, sem, ulps, fn) [OP_##id] = infer,
#include "ops.def"
#undef OP
};

/* The op's shape rule, then the size limit. */
static bool graph_infer(Graph *g, Node *n, char *err, size_t errlen)
{
    assert(n->op < OP_COUNT);
    for (int i = 0; i < n->nin; i++)
        assert(n->in[i] > 0 && (int)n->in[i] < g->nodes.n);
    if (!infer_table[n->op](g, n, err, errlen))
        return false;
    if (shape_static_numel(&n->shape, NULL) > GRAPH_MAX_NUMEL) {
        char sh[256];
        shape_format(g, &n->shape, sh, sizeof sh);
        snprintf(err, errlen, "a tensor of shape %.200s would have more than 2^40 elements", sh);
        return false;
    }
    return true;
}

NodeId graph_build(Graph *g, Node n, char *err, size_t errlen)
{
    if (!graph_infer(g, &n, err, errlen))
        return 0;
    return graph_append(g, &n);
}

/* ---- internal builders ---- */

NodeId gb_node(Graph *g, Node n)
{
    char err[256];
    NodeId id = graph_build(g, n, err, sizeof err);
    if (!id)
        nnd_fatal("internal error: %s (%s)", err, op_info[n.op].name);
    return id;
}

NodeId gb_const(Graph *g, double v, NndDType dtype, Span span)
{
    Node n = {.op = OP_CONST, .dtype = (uint8_t)dtype, .num = v, .span = span};
    return graph_append(g, &n);
}

NodeId gb_full(Graph *g, double v, NndDType dtype, const Shape *s, Span span)
{
    Shape copy = *s; /* s may point into the node array, which gb_const can move */
    return gb_broadcast(g, gb_const(g, v, dtype, span), &copy, span);
}

NodeId gb_unary(Graph *g, OpId op, NodeId a, Span span)
{
    return gb_node(g, (Node){.op = (uint8_t)op, .nin = 1, .in = {a}, .span = span});
}

NodeId gb_binary(Graph *g, OpId op, NodeId a, NodeId b, Span span)
{
    return gb_node(g, (Node){.op = (uint8_t)op, .nin = 2, .in = {a, b}, .span = span});
}

NodeId gb_binary_bc(Graph *g, OpId op, NodeId a, NodeId b, Span span)
{
    Shape s;
    char err[256];
    if (!shape_broadcast(g, &graph_node(g, a)->shape, &graph_node(g, b)->shape, &s, err,
                         sizeof err))
        nnd_fatal("internal error: %s", err);
    return gb_binary(g, op, gb_broadcast(g, a, &s, span), gb_broadcast(g, b, &s, span), span);
}

NodeId gb_select(Graph *g, NodeId c, NodeId a, NodeId b, Span span)
{
    return gb_node(g, (Node){.op = OP_SELECT, .nin = 3, .in = {c, a, b}, .span = span});
}

NodeId gb_cast(Graph *g, NodeId a, NndDType dtype, Span span)
{
    if (graph_node(g, a)->dtype == dtype)
        return a;
    return gb_node(
        g, (Node){.op = OP_CAST, .nin = 1, .in = {a}, .dtype = (uint8_t)dtype, .span = span});
}

NodeId gb_broadcast(Graph *g, NodeId a, const Shape *s, Span span)
{
    if (shape_equal(&graph_node(g, a)->shape, s))
        return a;
    return gb_node(g, (Node){.op = OP_BROADCAST, .nin = 1, .in = {a}, .shape = *s, .span = span});
}

NodeId gb_reshape(Graph *g, NodeId a, const Shape *s, Span span)
{
    if (shape_equal(&graph_node(g, a)->shape, s))
        return a;
    return gb_node(g, (Node){.op = OP_RESHAPE, .nin = 1, .in = {a}, .shape = *s, .span = span});
}

NodeId gb_transpose(Graph *g, NodeId a, const int *perm, Span span)
{
    int r = graph_node(g, a)->shape.rank;
    uint32_t pool = (uint32_t)g->ipool.n;
    for (int i = 0; i < r; i++)
        vec_push(&g->ipool, perm[i]);
    return gb_node(g, (Node){.op = OP_TRANSPOSE, .nin = 1, .in = {a}, .pool = pool, .span = span});
}

NodeId gb_reduce(Graph *g, OpId op, NodeId a, uint32_t mask, bool keep, Span span)
{
    return gb_node(
        g,
        (Node){.op = (uint8_t)op, .nin = 1, .in = {a}, .mask = mask, .keep = keep, .span = span});
}

NodeId gb_max_nonan(Graph *g, NodeId a, uint32_t mask, Span span)
{
    return gb_node(
        g, (Node){.op = OP_RMAX, .nin = 1, .in = {a}, .mask = mask, .nonan = true, .span = span});
}

NodeId gb_matmul(Graph *g, NodeId a, NodeId b, bool ta, bool tb, Span span)
{
    return gb_node(
        g, (Node){.op = OP_MATMUL, .nin = 2, .in = {a, b}, .ta = ta, .tb = tb, .span = span});
}

NodeId gb_matmul_summed(Graph *g, NodeId a, NodeId b, Span span)
{
    return gb_node(
        g, (Node){.op = OP_MATMUL, .nin = 2, .in = {a, b}, .ta = true, .mask = 1, .span = span});
}

NodeId gb_dimsize(Graph *g, NodeId ref, uint32_t mask, NndDType dtype, Span span)
{
    const Shape *s = &graph_node(g, ref)->shape;
    bool symbolic = false;
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++) {
        if (!(mask & (1u << i)))
            continue;
        if (s->d[i] < 0)
            symbolic = true;
        else
            n *= s->d[i];
    }
    if (!symbolic)
        return gb_const(g, (double)n, dtype, span);
    return gb_node(g, (Node){.op = OP_DIMSIZE,
                             .nin = 1,
                             .in = {ref},
                             .mask = mask,
                             .dtype = (uint8_t)dtype,
                             .span = span});
}

NodeId gb_sum_to(Graph *g, NodeId a, const Shape *s, Span span)
{
    Shape to = *s; /* s may point into the node array, which gb_reduce can move */
    const Shape *from = &graph_node(g, a)->shape;
    if (shape_equal(from, &to))
        return a;
    int extra = from->rank - to.rank;
    assert(extra >= 0);
    uint32_t mask = 0;
    for (int i = 0; i < from->rank; i++)
        if (i < extra || (to.d[i - extra] == 1 && from->d[i] != 1))
            mask |= 1u << i;
    NodeId r = mask ? gb_reduce(g, OP_SUM, a, mask, true, span) : a;
    return gb_reshape(g, r, &to, span);
}

int graph_pool_len(const Node *n)
{
    switch (n->op) {
    case OP_TRANSPOSE: return n->shape.rank;
    case OP_SLICE:
    case OP_PAD: return 2 * n->shape.rank;
    case OP_CONV2D:
    case OP_CONV2D_GX:
    case OP_CONV2D_GW: return 7;
    case OP_POOLMAX:
    case OP_POOLMAX_T:
    case OP_POOLAVG:
    case OP_POOLAVG_T: return 6;
    default: return 0;
    }
}

bool graph_is_const(Graph *g, NodeId n, double *v)
{
    Node *x = graph_node(g, n);
    while (x->op == OP_BROADCAST || x->op == OP_RESHAPE)
        x = graph_node(g, x->in[0]);
    if (x->op != OP_CONST)
        return false;
    if (v)
        *v = x->num;
    return true;
}

/* ---- printing ---- */

void graph_substitute(Graph *g, const NodeId *from, const NodeId *to, int n, NodeId *roots,
                      int nroots)
{
    int count = graph_count(g);
    NodeId *map = calloc((size_t)count, sizeof(NodeId));
    bool *live = calloc((size_t)count, sizeof(bool));
    if (!map || !live)
        nnd_fatal("out of memory");
    for (int i = 0; i < n; i++)
        map[from[i]] = to[i];
    graph_mark_live(g, roots, nroots, live);
    for (int id = 1; id < count; id++) {
        if (!live[id] || map[id])
            continue;
        Node c = *graph_node(g, (NodeId)id);
        bool changed = false;
        for (int k = 0; k < c.nin; k++)
            if (map[c.in[k]]) {
                c.in[k] = map[c.in[k]];
                changed = true;
            }
        if (changed)
            map[id] = graph_append(g, &c);
    }
    for (int i = 0; i < nroots; i++)
        if (roots[i] && roots[i] < (NodeId)count && map[roots[i]])
            roots[i] = map[roots[i]];
    free(map);
    free(live);
}

void graph_mark_live(Graph *g, const NodeId *roots, int nroots, bool *live)
{
    NodeId top = 0; /* inputs have smaller ids: nothing above the largest root is live */
    for (int i = 0; i < nroots; i++)
        if (roots[i]) {
            live[roots[i]] = true;
            top = roots[i] > top ? roots[i] : top;
        }
    for (int id = (int)top; id > 0; id--) {
        if (!live[id])
            continue;
        Node *n = graph_node(g, (NodeId)id);
        for (int i = 0; i < n->nin; i++)
            live[n->in[i]] = true;
    }
}

static void print_attrs(Graph *g, const Node *n, StrBuf *out)
{
    char num[40];
    switch (n->op) {
    case OP_CONST:
        format_double(num, sizeof num, n->num);
        sb_printf(out, " %s", num);
        break;
    case OP_PARAM:
    case OP_STATE:
    case OP_INPUT:
    case OP_HYPER:
    case OP_TENSOR:
        if (n->name)
            sb_printf(out, " %s", n->name);
        break;
    case OP_SUM:
    case OP_MEAN:
    case OP_RMAX:
    case OP_LOGSUMEXP:
    case OP_DIMSIZE: {
        sb_puts(out, " axes=");
        int k = 0;
        for (int i = 0; i < NND_MAX_RANK; i++)
            if (n->mask & (1u << i))
                sb_printf(out, "%s%d", k++ ? "," : "", i);
        if (n->keep)
            sb_puts(out, " keep");
        if (n->nonan)
            sb_puts(out, " nonan");
        break;
    }
    case OP_ARGMAX: sb_printf(out, " axis=%d%s", n->idx, n->keep ? " keep" : ""); break;
    case OP_ONE_HOT: sb_printf(out, " depth=%d", n->idx); break;
    case OP_TRANSPOSE: {
        sb_puts(out, " perm=");
        for (int i = 0; i < n->shape.rank; i++)
            sb_printf(out, "%s%lld", i ? "," : "", (long long)g->ipool.v[n->pool + (uint32_t)i]);
        break;
    }
    case OP_SLICE:
    case OP_PAD: {
        int r = n->shape.rank;
        sb_puts(out, " start=");
        for (int i = 0; i < r; i++)
            sb_printf(out, "%s%lld", i ? "," : "", (long long)g->ipool.v[n->pool + (uint32_t)i]);
        sb_puts(out, " step=");
        for (int i = 0; i < r; i++)
            sb_printf(out, "%s%lld", i ? "," : "",
                      (long long)g->ipool.v[n->pool + (uint32_t)(r + i)]);
        break;
    }
    case OP_MATMUL:
        if (n->ta)
            sb_puts(out, " ta");
        if (n->tb)
            sb_puts(out, " tb");
        if (n->mask)
            sb_puts(out, " summed");
        break;
    case OP_RANDU:
    case OP_RANDN:
    case OP_RANDSTEP:
    case OP_ORTHO: sb_printf(out, " stream=%016llx", (unsigned long long)n->key); break;
    case OP_CONCAT: sb_printf(out, " axis=%d", n->idx); break;
    case OP_SCATTER_ADD: sb_printf(out, " rows=%d", n->idx); break;
    case OP_CUSTOM: sb_printf(out, " vjp=%d", n->idx); break;
    case OP_CONV2D:
    case OP_CONV2D_GX:
    case OP_CONV2D_GW: {
        ConvAttrs a = graph_conv_attrs(g, n);
        sb_printf(out, " stride=%lld,%lld pad=%lld,%lld dilation=%lld,%lld groups=%lld",
                  (long long)a.sh, (long long)a.sw, (long long)a.ph, (long long)a.pw,
                  (long long)a.dh, (long long)a.dw, (long long)a.groups);
        break;
    }
    case OP_POOLMAX:
    case OP_POOLMAX_T:
    case OP_POOLAVG:
    case OP_POOLAVG_T: {
        PoolAttrs a = graph_pool_attrs(g, n);
        sb_printf(out, " kernel=%lld,%lld stride=%lld,%lld pad=%lld,%lld", (long long)a.kh,
                  (long long)a.kw, (long long)a.sh, (long long)a.sw, (long long)a.ph,
                  (long long)a.pw);
        break;
    }
    default: break;
    }
}

void graph_print_node(Graph *g, NodeId id, StrBuf *out)
{
    Node *n = graph_node(g, id);
    char sh[256];
    shape_format(g, &n->shape, sh, sizeof sh);
    sb_printf(out, "%%%u = %s", id, op_info[n->op].name);
    for (int i = 0; i < n->nin; i++)
        sb_printf(out, "%s %%%u", i ? "," : "", n->in[i]);
    print_attrs(g, n, out);
    sb_printf(out, " : %s %s", sh, dtype_name(n->dtype));
}

void graph_print(Graph *g, const NodeId *roots, int nroots, StrBuf *out, const SourceMap *sm)
{
    bool *live = xcalloc((size_t)g->nodes.n, 1);
    graph_mark_live(g, roots, nroots, live);
    for (int id = 1; id < g->nodes.n; id++) {
        if (!live[id])
            continue;
        graph_print_node(g, (NodeId)id, out);
        Node *n = graph_node(g, (NodeId)id);
        const SourceFile *f = sm ? source_map_get(sm, n->span.file) : NULL;
        if (f) {
            int line, col;
            source_line_col(f, n->span.start, &line, &col);
            const char *base = strrchr(f->path, '/');
            sb_printf(out, "  # %s:%d", base ? base + 1 : f->path, line);
        }
        sb_putc(out, '\n');
    }
    free(live);
}

void graph_dot(Graph *g, const NodeId *roots, int nroots, StrBuf *out)
{
    bool *live = xcalloc((size_t)g->nodes.n, 1);
    graph_mark_live(g, roots, nroots, live);
    sb_puts(out, "digraph nnd {\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n");
    for (int id = 1; id < g->nodes.n; id++) {
        if (!live[id])
            continue;
        Node *n = graph_node(g, (NodeId)id);
        char sh[256];
        shape_format(g, &n->shape, sh, sizeof sh);
        StrBuf label = {0};
        sb_puts(&label, op_info[n->op].name);
        print_attrs(g, n, &label);
        const char *color =
            op_info[n->op].kind == OPK_LEAF ? ", style=filled, fillcolor=\"#e8f0ff\"" : "";
        sb_printf(out, "  n%d [label=\"%%%d %s\\n%s %s\"%s];\n", id, id, label.s, sh,
                  dtype_name(n->dtype), color);
        sb_free(&label);
        for (int i = 0; i < n->nin; i++)
            sb_printf(out, "  n%u -> n%d;\n", n->in[i], id);
    }
    sb_puts(out, "}\n");
    free(live);
}
