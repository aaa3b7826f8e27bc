#define _DEFAULT_SOURCE /* madvise */
#include "interp.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "opsem.h"

/* n zeroed doubles.  Large ones on huge pages: a model's initial values are tensors
 * of millions of doubles, and faulting them in 4 KiB at a time took most of the time
 * (the CNN's start: filling 3.2M doubles took 76 ms, 23 ns a value). */
static double *zeroed_doubles(int64_t n)
{
    enum { HUGE = 2 << 20 };
    size_t bytes = (size_t)(n ? n : 1) * sizeof(double);
    if (bytes < 2 * (size_t)HUGE)
        return xcalloc((size_t)(n ? n : 1), sizeof(double));
    void *p = NULL;
    if (posix_memalign(&p, HUGE, bytes) != 0)
        nnd_fatal("out of memory (%zu bytes)", bytes);
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return memset(p, 0, bytes);
}

ITensor itensor_new(NndDType dtype, int rank, const int64_t *shape)
{
    ITensor t = {dtype, rank, {0}, 1, NULL};
    for (int i = 0; i < rank; i++) {
        t.shape[i] = shape[i];
        t.n *= shape[i];
    }
    t.v = zeroed_doubles(t.n);
    return t;
}

void itensor_free(ITensor *t)
{
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

static ITensor itensor_copy(const ITensor *t)
{
    ITensor c = itensor_new(t->dtype, t->rank, t->shape);
    memcpy(c.v, t->v, sizeof(double) * (size_t)t->n);
    return c;
}

double itensor_round(NndDType dtype, double v)
{
    switch (dtype) {
    case NND_F32: return (double)(float)v;
    case NND_I32:
        /* toward zero; not finite: 0; beyond the int32 range: its nearest end (as
         * compiled code's llvm.fptosi.sat), so every i32 value converts to int32_t.
         * + 0.0: an integer has no -0 (trunc(-0.5) and -0 would otherwise stay -0) */
        return !isfinite(v)         ? 0
               : v >= 2147483647.0  ? 2147483647.0
               : v <= -2147483648.0 ? -2147483648.0
                                    : trunc(v) + 0.0;
    case NND_BOOL: return v != 0;
    default: return v;
    }
}

typedef struct Run {
    Graph *g;
    const InterpBindings *b;
    ITensor *val; /* one per node id */
    char *err;
    size_t errlen;
    bool failed;
} Run;

static bool fail(Run *r, NodeId id, const char *fmt, ...)
{
    if (r->failed)
        return false;
    r->failed = true;
    va_list ap;
    va_start(ap, fmt);
    char msg[400];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(r->err, r->errlen, "%s (node %%%u, %s)", msg, id,
             op_info[graph_node(r->g, id)->op].name);
    return false;
}

/* The concrete shape of a node: symbolic dimensions take their bound values. */
static bool concrete_shape(Run *r, NodeId id, int64_t *out)
{
    Node *n = graph_node(r->g, id);
    for (int i = 0; i < n->shape.rank; i++) {
        int64_t d = n->shape.d[i];
        if (d < 0) {
            int sym = (int)(-d - 1);
            if (sym >= r->b->nsyms)
                return fail(r, id, "symbolic dimension %s has no value",
                            sym < r->g->syms.n ? r->g->syms.v[sym] : "?");
            d = r->b->syms[sym];
        }
        out[i] = d;
    }
    return true;
}

static void strides_of(int rank, const int64_t *shape, int64_t *st)
{
    int64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        st[i] = s;
        s *= shape[i];
    }
}

static bool bind_leaf(Run *r, NodeId id, ITensor *out, const ITensor *src, int count, int idx,
                      const char *what)
{
    Node *n = graph_node(r->g, id);
    if (!src || idx < 0 || idx >= count)
        return fail(r, id, "%s %s has no value", what, n->name ? n->name : "");
    const ITensor *t = &src[idx];
    int64_t shape[NND_MAX_RANK];
    if (!concrete_shape(r, id, shape))
        return false;
    bool ok = t->rank == n->shape.rank;
    for (int i = 0; ok && i < t->rank; i++)
        ok = t->shape[i] == shape[i];
    if (!ok)
        return fail(r, id, "%s %s is bound to a tensor of the wrong shape", what,
                    n->name ? n->name : "");
    *out = itensor_copy(t);
    out->dtype = (NndDType)n->dtype;
    return true;
}

/* gain * an orthonormal matrix: Gram-Schmidt over the rows (or, when there are more
 * rows than columns, the columns) of a standard normal matrix, rows = shape[0],
 * columns = the rest, as PyTorch's orthogonal_ (the signs make R's diagonal
 * positive, which Gram-Schmidt's norms do by construction). */
static void orthogonal(double *y, const int64_t *shape, int rank, uint64_t seed, uint64_t key,
                       double gain)
{
    int64_t rows = shape[0], cols = 1;
    for (int k = 1; k < rank; k++)
        cols *= shape[k];
    for (int64_t i = 0; i < rows * cols; i++)
        y[i] = nnd_random_normal(seed, key, (uint64_t)i);
    bool by_rows = rows <= cols;
    int64_t nv = by_rows ? rows : cols, len = by_rows ? cols : rows;
    /* element j of vector v */
#define EL(v, j) y[by_rows ? (v)*cols + (j) : (j)*cols + (v)]
    for (int64_t v = 0; v < nv; v++) {
        for (int64_t u = 0; u < v; u++) {
            double dot = 0;
            for (int64_t j = 0; j < len; j++)
                dot += EL(v, j) * EL(u, j);
            for (int64_t j = 0; j < len; j++)
                EL(v, j) -= dot * EL(u, j);
        }
        double norm = 0;
        for (int64_t j = 0; j < len; j++)
            norm += EL(v, j) * EL(v, j);
        norm = sqrt(norm);
        for (int64_t j = 0; j < len; j++)
            EL(v, j) = norm > 0 ? EL(v, j) / norm : 0;
    }
#undef EL
    for (int64_t i = 0; i < rows * cols; i++)
        y[i] *= gain;
}

/* Direct loops, the oracle for the runtime's im2col + GEMM:
 * y[n,o,i,j] = sum over the group's c, ki, kj of x[n,c,i sh - ph + ki dh, j sw - pw + kj dw]
 * w[o,c,ki,kj]; GX (dy, w) and GW (x, dy) walk the same index space and add into dx and dw. */
static void conv(int op, ConvAttrs a, const ITensor *p, const ITensor *q, ITensor *out)
{
    const ITensor *x = op == OP_CONV2D_GW || op == OP_CONV2D ? p : out;
    const ITensor *w = op == OP_CONV2D ? q : op == OP_CONV2D_GX ? q : out;
    const ITensor *yv = op == OP_CONV2D ? out : op == OP_CONV2D_GX ? p : q;
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t O = w->shape[0], CG = w->shape[1], KH = w->shape[2], KW = w->shape[3];
    int64_t OH = yv->shape[2], OW = yv->shape[3], OG = O / a.groups;
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++) {
            int64_t gr = o / OG;
            for (int64_t i = 0; i < OH; i++)
                for (int64_t j = 0; j < OW; j++) {
                    int64_t yi = ((n * O + o) * OH + i) * OW + j;
                    for (int64_t c = 0; c < CG; c++)
                        for (int64_t ki = 0; ki < KH; ki++) {
                            int64_t h = i * a.sh - a.ph + ki * a.dh;
                            if (h < 0 || h >= H)
                                continue;
                            for (int64_t kj = 0; kj < KW; kj++) {
                                int64_t ww = j * a.sw - a.pw + kj * a.dw;
                                if (ww < 0 || ww >= W)
                                    continue;
                                int64_t xi = ((n * C + gr * CG + c) * H + h) * W + ww;
                                int64_t wi = ((o * CG + c) * KH + ki) * KW + kj;
                                if (op == OP_CONV2D)
                                    out->v[yi] += x->v[xi] * w->v[wi];
                                else if (op == OP_CONV2D_GX)
                                    out->v[xi] += yv->v[yi] * w->v[wi];
                                else
                                    out->v[wi] += yv->v[yi] * x->v[xi];
                            }
                        }
                }
        }
}

/* Pooling windows: POOLMAX (x, v) takes v at each window's first maximum of x
 * (row-major; padding never wins); POOLMAX_T (x, d) adds d there; POOLAVG means
 * over kh kw (padding counts as zeros); POOLAVG_T (d) spreads d / (kh kw). */
static void pool(int op, PoolAttrs a, const ITensor *p, const ITensor *q, ITensor *out)
{
    bool big_out = op == OP_POOLMAX_T || op == OP_POOLAVG_T;
    const ITensor *x = big_out ? (op == OP_POOLMAX_T ? p : out) : p;
    const ITensor *small = big_out ? (op == OP_POOLMAX_T ? q : p) : out;
    int64_t NC = x->shape[0] * x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t OH = small->shape[2], OW = small->shape[3];
    double k = (double)(a.kh * a.kw);
    for (int64_t nc = 0; nc < NC; nc++)
        for (int64_t i = 0; i < OH; i++)
            for (int64_t j = 0; j < OW; j++) {
                int64_t si = (nc * OH + i) * OW + j, best = -1;
                double bv = 0, sum = 0;
                for (int64_t ki = 0; ki < a.kh; ki++)
                    for (int64_t kj = 0; kj < a.kw; kj++) {
                        int64_t h = i * a.sh - a.ph + ki, w = j * a.sw - a.pw + kj;
                        if (h < 0 || h >= H || w < 0 || w >= W)
                            continue;
                        int64_t xi = (nc * H + h) * W + w;
                        if (op == OP_POOLAVG)
                            sum += p->v[xi];
                        else if (op == OP_POOLAVG_T)
                            out->v[xi] += p->v[si] / k;
                        else if (best < 0 || x->v[xi] > bv || (isnan(x->v[xi]) && !isnan(bv))) {
                            /* the first maximum; a NaN beats numbers, the first NaN wins */
                            best = xi;
                            bv = x->v[xi];
                        }
                    }
                if (op == OP_POOLAVG)
                    out->v[si] = sum / k;
                else if (op == OP_POOLMAX && best >= 0)
                    out->v[si] = q->v[best];
                else if (op == OP_POOLMAX_T && best >= 0)
                    out->v[best] += q->v[si];
            }
}

/* What an eval_* helper computes: node n (id) from its inputs' values a, b, c into
 * out, which is allocated at the node's shape and zeroed.  Each returns false (with
 * the run's message) when a value cannot be computed; eval_node rounds the result. */
typedef struct Ev {
    Run *r;
    NodeId id;
    Node *n;
    ITensor *out, *a, *b, *c;
} Ev;

/* Leaves with their value in the graph (CONST, TENSOR) or in the bindings (HYPER),
 * and sources: random draws by (seed, stream key, element index), sizes. */
static bool eval_source(Ev *e)
{
    Run *r = e->r;
    Node *n = e->n;
    const ITensor *a = e->a, *b = e->b;
    double *y = e->out->v;
    int64_t cnt = e->out->n;
    switch ((OpId)n->op) {
    case OP_CONST: y[0] = n->num; break;
    case OP_TENSOR:
        if (cnt)
            memcpy(y, &r->g->fpool.v[n->pool], sizeof(double) * (size_t)cnt);
        break;
    case OP_HYPER:
        if (!r->b->hypers || n->idx >= r->b->nhypers)
            return fail(r, e->id, "hyper-parameter %s has no value", n->name ? n->name : "");
        y[0] = r->b->hypers[n->idx];
        break;
    case OP_RANDU:
        nnd_random_uniform_fill(r->b->seed, n->key, 0, cnt, y);
        for (int64_t i = 0; i < cnt; i++)
            y[i] = a->v[0] + (b->v[0] - a->v[0]) * y[i];
        break;
    case OP_RANDN:
        for (int64_t i = 0; i < cnt; i++)
            y[i] = a->v[0] + b->v[0] * nnd_random_normal(r->b->seed, n->key, (uint64_t)i);
        break;
    case OP_DIMSIZE: {
        int64_t s = 1;
        for (int i = 0; i < a->rank; i++)
            if (n->mask & (1u << i))
                s *= a->shape[i];
        y[0] = (double)s;
        break;
    }
    case OP_RANDSTEP: {
        uint64_t stream = n->key + (uint64_t)a->v[0] * 0x9E3779B97F4A7C15ull;
        nnd_random_uniform_fill((uint64_t)n->num, stream, 0, cnt, y);
        for (int64_t i = 0; i < cnt; i++) {
            /* [0, 1) in f32 too: a draw that rounds up to 1 becomes the float below */
            if (n->dtype == NND_F32 && (float)y[i] >= 1.0f)
                y[i] = 0x1.fffffep-1;
        }
        break;
    }
    case OP_ORTHO: orthogonal(y, e->out->shape, e->out->rank, r->b->seed, n->key, a->v[0]); break;
    default: return fail(r, e->id, "no interpreter rule");
    }
    return true;
}

/* Elementwise ops: one case per EW op of ops.def, a loop calling its sem_ function
 * (opsem.h) on each element. */
static bool eval_elementwise(Ev *e)
{
    const ITensor *a = e->a, *b = e->b, *c = e->c;
    double *y = e->out->v;
    int64_t cnt = e->out->n;
    switch ((OpId)e->n->op) {
#define LOOP1(id, sem)                                                                             \
    case OP_##id:                                                                                  \
        for (int64_t i = 0; i < cnt; i++)                                                          \
            y[i] = sem(a->v[i]);                                                                   \
        break;
#define LOOP2(id, sem)                                                                             \
    case OP_##id:                                                                                  \
        for (int64_t i = 0; i < cnt; i++)                                                          \
            y[i] = sem(a->v[i], b->v[i]);                                                          \
        break;
#define LOOP3(id, sem)                                                                             \
    case OP_##id:                                                                                  \
        for (int64_t i = 0; i < cnt; i++)                                                          \
            y[i] = sem(a->v[i], b->v[i], c->v[i]);                                                 \
        break;
#define OP(id, text, arity, kind, infer, vjp, sem, ulps, fn)                                       \
    OPSEM_BY_KIND(kind, LOOP1, LOOP2, LOOP3)(id, sem)
#include "ops.def"
#undef OP
#undef LOOP1
#undef LOOP2
#undef LOOP3
    default: return fail(e->r, e->id, "no interpreter rule");
    }
    return true;
}

/* Layout ops: elements move, values do not change. */
static bool eval_layout(Ev *e)
{
    Node *n = e->n;
    const ITensor *a = e->a, *b = e->b;
    ITensor *out = e->out;
    double *y = out->v;
    int64_t cnt = out->n;
    switch ((OpId)n->op) {
    case OP_BROADCAST: {
        if (a->n == 1) { /* a scalar filling a tensor: an optimizer state's start */
            for (int64_t i = 0; i < cnt; i++)
                y[i] = a->v[0];
            break;
        }
        /* input dims align to the right; size-1 input dims repeat */
        int r0 = out->rank, ra = a->rank;
        int64_t ost[NND_MAX_RANK], ast[NND_MAX_RANK];
        strides_of(ra, a->shape, ast);
        strides_of(r0, out->shape, ost);
        for (int64_t i = 0; i < cnt; i++) {
            int64_t src = 0, rem = i;
            for (int k = 0; k < r0; k++) {
                int64_t ix = rem / ost[k];
                rem %= ost[k];
                int ka = k - (r0 - ra);
                if (ka >= 0 && a->shape[ka] != 1)
                    src += ix * ast[ka];
            }
            y[i] = a->v[src];
        }
        break;
    }
    case OP_RESHAPE:
        if (a->n != cnt)
            return fail(e->r, e->id, "reshape of %lld elements into %lld", (long long)a->n,
                        (long long)cnt);
        memcpy(y, a->v, sizeof(double) * (size_t)cnt);
        break;
    case OP_TRANSPOSE: {
        int rk = out->rank;
        int64_t ost[NND_MAX_RANK], ast[NND_MAX_RANK];
        strides_of(rk, out->shape, ost);
        strides_of(rk, a->shape, ast);
        const int64_t *perm = &e->r->g->ipool.v[n->pool];
        for (int64_t i = 0; i < cnt; i++) {
            int64_t src = 0, rem = i;
            for (int k = 0; k < rk; k++) {
                src += (rem / ost[k]) * ast[perm[k]];
                rem %= ost[k];
            }
            y[i] = a->v[src];
        }
        break;
    }
    case OP_SLICE:
    case OP_PAD: {
        /* SLICE reads big[start + i*step]; PAD writes it */
        bool slice = n->op == OP_SLICE;
        const ITensor *big = slice ? a : out, *small = slice ? out : a;
        int rk = big->rank;
        const int64_t *start = &e->r->g->ipool.v[n->pool], *step = start + rk;
        int64_t bst[NND_MAX_RANK], sst[NND_MAX_RANK];
        strides_of(rk, big->shape, bst);
        strides_of(rk, small->shape, sst);
        for (int64_t i = 0; i < small->n; i++) {
            int64_t at = 0, rem = i;
            for (int k = 0; k < rk; k++) {
                at += (start[k] + (rem / sst[k]) * step[k]) * bst[k];
                rem %= sst[k];
            }
            if (slice)
                y[i] = a->v[at];
            else
                y[at] = a->v[i];
        }
        break;
    }
    case OP_CONCAT: {
        /* rows of the outer axes: a's block, then b's */
        int64_t inner = 1, outer = 1;
        for (int k = n->idx + 1; k < out->rank; k++)
            inner *= out->shape[k];
        for (int k = 0; k < n->idx; k++)
            outer *= out->shape[k];
        int64_t ra = a->shape[n->idx] * inner, rb = b->shape[n->idx] * inner;
        for (int64_t o = 0; o < outer; o++) {
            memcpy(y + o * (ra + rb), a->v + o * ra, sizeof(double) * (size_t)ra);
            memcpy(y + o * (ra + rb) + ra, b->v + o * rb, sizeof(double) * (size_t)rb);
        }
        break;
    }
    default: return fail(e->r, e->id, "no interpreter rule");
    }
    return true;
}

/* Reductions over the axes in the node's mask (ARGMAX: its one axis idx): sums and
 * means in input order; max and argmax let a NaN win (argmax: the first); logsumexp
 * is m + ln sum e^(x - m) with m the max, two passes. */
static bool eval_reduce(Ev *e)
{
    Node *n = e->n;
    const ITensor *a = e->a;
    double *y = e->out->v;
    int64_t cnt = e->out->n;
    int ra = a->rank;
    uint32_t mask = n->op == OP_ARGMAX ? 1u << n->idx : n->mask;
    /* the output index of each input element: drop (or keep as 0) reduced axes */
    int64_t ast[NND_MAX_RANK], kst[NND_MAX_RANK], kshape[NND_MAX_RANK];
    strides_of(ra, a->shape, ast);
    for (int k = 0; k < ra; k++)
        kshape[k] = mask & (1u << k) ? 1 : a->shape[k];
    strides_of(ra, kshape, kst);
    int64_t group = 1;
    for (int k = 0; k < ra; k++)
        if (mask & (1u << k))
            group *= a->shape[k];
    double *m = xmalloc(sizeof(double) * (size_t)(cnt ? cnt : 1));
    int64_t *arg = n->op == OP_ARGMAX ? xcalloc((size_t)(cnt ? cnt : 1), sizeof(int64_t)) : NULL;
    bool maxish = n->op == OP_RMAX || n->op == OP_LOGSUMEXP || n->op == OP_ARGMAX;
    for (int64_t i = 0; i < cnt; i++)
        m[i] = maxish ? -INFINITY : 0;
    for (int pass = 0; pass < (n->op == OP_LOGSUMEXP ? 2 : 1); pass++) {
        for (int64_t i = 0; i < a->n; i++) {
            int64_t o = 0, rem = i, along = 0;
            for (int k = 0; k < ra; k++) {
                int64_t ix = rem / ast[k];
                rem %= ast[k];
                if (!(mask & (1u << k)))
                    o += ix * kst[k];
                else
                    along = along * a->shape[k] + ix;
            }
            double x = a->v[i];
            if (n->op == OP_SUM || n->op == OP_MEAN)
                m[o] += x;
            else if (n->op == OP_ARGMAX) {
                if (x > m[o] || (isnan(x) && !isnan(m[o]))) {
                    m[o] = x;
                    arg[o] = along;
                }
            } else if (pass == 0) {
                if (x > m[o] || isnan(x))
                    m[o] = x;
            } else if (isfinite(m[o])) {
                y[o] += exp(x - m[o]);
            }
        }
    }
    for (int64_t i = 0; i < cnt; i++) {
        switch ((OpId)n->op) {
        case OP_SUM: y[i] = m[i]; break;
        case OP_MEAN: y[i] = m[i] / (double)group; break;
        case OP_RMAX: y[i] = m[i]; break;
        case OP_ARGMAX: y[i] = (double)arg[i]; break;
        default: y[i] = isfinite(m[i]) ? m[i] + log(y[i]) : m[i]; break;
        }
    }
    free(m);
    free(arg);
    return true;
}

/* A label or index v outside [0, limit): recorded for the caller, then the error
 * "<label|index> v is out of range for <what>", what formatting limit. */
static bool out_of_range(Run *r, NodeId id, bool label, double v, int64_t limit, const char *what)
{
    if (r->b->fault && !r->failed)
        *r->b->fault = (InterpFault){label ? FAULT_LABEL : FAULT_INDEX, v, limit};
    char lim[64];
    snprintf(lim, sizeof lim, what, (long long)limit);
    return fail(r, id, "%s %g is out of range for %s", label ? "label" : "index", v, lim);
}

/* Indexing by integer labels along the last axis: PICK reads x[.., l], ONE_HOT
 * writes 1 at [.., l]; a label outside the classes is an error. */
static bool eval_index(Ev *e)
{
    Node *n = e->n;
    const ITensor *a = e->a, *b = e->b;
    double *y = e->out->v;
    int64_t cnt = e->out->n;
    switch ((OpId)n->op) {
    case OP_PICK: {
        int64_t cls = a->shape[a->rank - 1];
        for (int64_t i = 0; i < cnt; i++) {
            double l = b->v[i];
            if (!(l >= 0 && l < (double)cls))
                return out_of_range(e->r, e->id, true, l, cls, "%lld classes");
            y[i] = a->v[i * cls + (int64_t)l];
        }
        break;
    }
    case OP_ONE_HOT: {
        int64_t depth = n->idx;
        for (int64_t i = 0; i < a->n; i++) {
            double l = a->v[i];
            if (!(l >= 0 && l < (double)depth))
                return out_of_range(e->r, e->id, true, l, depth, "one_hot depth %lld");
            y[i * depth + (int64_t)l] = 1;
        }
        break;
    }
    default: return fail(e->r, e->id, "no interpreter rule");
    }
    return true;
}

/* An operand of an f32 product under precision = bf16: its values rounded to bf16
 * (into r, which the caller frees), as compiled code rounds them; else a itself. */
static const ITensor *bf16_operand(Ev *e, const ITensor *a, ITensor *r)
{
    if (!e->r->g->bf16 || e->n->dtype != NND_F32)
        return a;
    *r = *a;
    r->v = xmalloc((size_t)(a->n ? a->n : 1) * sizeof *r->v);
    for (int64_t i = 0; i < a->n; i++)
        r->v[i] = nnd_bf16_round((float)a->v[i]);
    return r;
}

/* C = op(A) op(B) for each matrix of the batch, op transposing when ta / tb: three
 * plain loops, accumulated in k order.  The three forms of infer_matmul (graph.c):
 * batched, folded, summed. */
static bool eval_matmul(Ev *e)
{
    Node *n = e->n;
    ITensor round_a = {0}, round_b = {0};
    const ITensor *a = bf16_operand(e, e->a, &round_a), *b = bf16_operand(e, e->b, &round_b);
    ITensor *out = e->out;
    int rk = out->rank, ra = a->rank;
    int64_t M = out->shape[rk - 2], N = out->shape[rk - 1];
    int64_t K = n->ta ? a->shape[ra - 2] : a->shape[ra - 1];
    if (n->mask) { /* summed: out[i][j] = sum over the rows r of a[r][i] * b[r][j] */
        int64_t rows = M > 0 ? a->n / M : 0;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t i = 0; i < M; i++) {
                double ari = a->v[r * M + i];
                for (int64_t j = 0; j < N; j++)
                    out->v[i * N + j] += ari * b->v[r * N + j];
            }
    } else {
        if (ra > 2 && b->rank == 2) /* folded: one product over every leading row */
            M = K > 0 ? a->n / K : 0;
        int64_t mn = M * N;
        int64_t batch = mn > 0 ? out->n / mn : 0;
        for (int64_t bi = 0; bi < batch; bi++) {
            const double *A = a->v + bi * M * K, *B = b->v + bi * K * N;
            double *C = out->v + bi * M * N;
            for (int64_t i = 0; i < M; i++)
                for (int64_t k = 0; k < K; k++) {
                    double aik = n->ta ? A[k * M + i] : A[i * K + k];
                    if (n->tb)
                        for (int64_t j = 0; j < N; j++)
                            C[i * N + j] += aik * B[j * K + k];
                    else
                        for (int64_t j = 0; j < N; j++)
                            C[i * N + j] += aik * B[k * N + j];
                }
        }
    }
    free(round_a.v);
    free(round_b.v);
    return true;
}

/* The ops compiled code leaves to runtime routines: row gathers and their adjoint
 * (an index outside the table is an error), convolutions and poolings. */
static bool eval_call(Ev *e)
{
    Node *n = e->n;
    const ITensor *a = e->a, *b = e->b;
    double *y = e->out->v;
    switch ((OpId)n->op) {
    case OP_TAKE:
    case OP_SCATTER_ADD: {
        bool take = n->op == OP_TAKE;
        const ITensor *idx = take ? b : a, *src = take ? a : b;
        int64_t rows = take ? a->shape[0] : n->idx, width = 1;
        for (int k = 1; k < (take ? a->rank : e->out->rank); k++)
            width *= take ? a->shape[k] : e->out->shape[k];
        for (int64_t i = 0; i < idx->n; i++) {
            double l = idx->v[i];
            if (!(l >= 0 && l < (double)rows))
                return out_of_range(e->r, e->id, false, l, rows, "%lld rows");
            for (int64_t k = 0; k < width; k++) {
                if (take)
                    y[i * width + k] = src->v[(int64_t)l * width + k];
                else
                    y[(int64_t)l * width + k] += src->v[i * width + k];
            }
        }
        break;
    }
    case OP_CONV2D:
    case OP_CONV2D_GX:
    case OP_CONV2D_GW: { /* both operands rounded under precision = bf16 */
        ITensor round_a = {0}, round_b = {0};
        conv(n->op, graph_conv_attrs(e->r->g, n), bf16_operand(e, a, &round_a),
             bf16_operand(e, b, &round_b), e->out);
        free(round_a.v);
        free(round_b.v);
        break;
    }
    case OP_POOLMAX:
    case OP_POOLMAX_T:
    case OP_POOLAVG:
    case OP_POOLAVG_T: pool(n->op, graph_pool_attrs(e->r->g, n), a, b, e->out); break;
    default: return fail(e->r, e->id, "no interpreter rule");
    }
    return true;
}

/* Computes node id into r->val[id]: bound leaves are copied from the bindings; every
 * other op is computed by its kind's helper, and the result rounded to the node's
 * dtype. */
static bool eval_node(Run *r, NodeId id)
{
    Node *n = graph_node(r->g, id);
    int64_t shape[NND_MAX_RANK];
    if (!concrete_shape(r, id, shape))
        return false;
    ITensor *out = &r->val[id];
    switch ((OpId)n->op) {
    case OP_PARAM: return bind_leaf(r, id, out, r->b->params, r->b->nparams, n->idx, "parameter");
    case OP_STATE: return bind_leaf(r, id, out, r->b->states, r->b->nstates, n->idx, "state");
    case OP_INPUT: return bind_leaf(r, id, out, r->b->inputs, r->b->ninputs, n->idx, "input");
    default: break;
    }
    *out = itensor_new((NndDType)n->dtype, n->shape.rank, shape);
    Ev e = {r,
            id,
            n,
            out,
            n->nin > 0 ? &r->val[n->in[0]] : NULL,
            n->nin > 1 ? &r->val[n->in[1]] : NULL,
            n->nin > 2 ? &r->val[n->in[2]] : NULL};
    bool ok;
    switch (op_info[n->op].kind) {
    case OPK_LEAF:
    case OPK_SOURCE: ok = eval_source(&e); break;
    case OPK_EW1:
    case OPK_EW2:
    case OPK_EW3: ok = eval_elementwise(&e); break;
    case OPK_LAYOUT: ok = eval_layout(&e); break;
    case OPK_REDUCE: ok = eval_reduce(&e); break;
    case OPK_INDEX: ok = eval_index(&e); break;
    case OPK_MATMUL: ok = eval_matmul(&e); break;
    case OPK_CALL: ok = eval_call(&e); break;
    case OPK_ALIAS: /* CUSTOM: the value of its first input */
        memcpy(out->v, e.a->v, sizeof(double) * (size_t)out->n);
        ok = true;
        break;
    default: ok = fail(r, id, "no interpreter rule"); break;
    }
    if (!ok)
        return false;
    if (n->dtype != NND_F64)
        for (int64_t i = 0; i < out->n; i++)
            out->v[i] = itensor_round((NndDType)n->dtype, out->v[i]);
    return true;
}

bool interp_run(Graph *g, const NodeId *roots, int nroots, const InterpBindings *b, ITensor *out,
                char *err, size_t errlen)
{
    int count = graph_count(g);
    bool *live = xcalloc((size_t)count, 1);
    graph_mark_live(g, roots, nroots, live);
    /* the last reader of each value, so it can be freed early */
    NodeId *last = xcalloc((size_t)count, sizeof(NodeId));
    for (int id = 1; id < count; id++) {
        if (!live[id])
            continue;
        Node *n = graph_node(g, (NodeId)id);
        for (int i = 0; i < n->nin; i++)
            last[n->in[i]] = (NodeId)id;
    }
    for (int i = 0; i < nroots; i++)
        last[roots[i]] = (NodeId)count; /* kept */
    Run r = {g, b, xcalloc((size_t)count, sizeof(ITensor)), err, errlen, false};
    bool ok = true;
    for (int id = 1; id < count && ok; id++) {
        if (!live[id])
            continue;
        ok = eval_node(&r, (NodeId)id);
        Node *n = graph_node(g, (NodeId)id);
        OpKind kind = op_info[n->op].kind;
        if (ok && b->check && (n->dtype == NND_F32 || n->dtype == NND_F64) && kind != OPK_LEAF &&
            kind != OPK_SOURCE) {
            const ITensor *t = &r.val[id];
            int64_t bad = 0;
            for (int64_t k = 0; k < t->n; k++)
                if (!isfinite(t->v[k]) && bad++ == 0)
                    b->check->value = t->v[k];
            if (bad) {
                b->check->node = (NodeId)id;
                b->check->count = bad;
                ok = fail(&r, (NodeId)id, "%lld non-finite values", (long long)bad);
            }
        }
        for (int i = 0; i < n->nin; i++)
            if (last[n->in[i]] == (NodeId)id)
                itensor_free(&r.val[n->in[i]]);
    }
    /* each root's value moves out (copied where the same node is a later root too:
     * parameters of one shape share their optimizer states' initial value) */
    for (int i = 0; i < nroots; i++) {
        bool again = false;
        for (int j = i + 1; j < nroots && !again; j++)
            again = roots[j] == roots[i];
        if (!ok) {
            out[i] = (ITensor){0};
        } else if (again) {
            out[i] = itensor_copy(&r.val[roots[i]]);
        } else {
            out[i] = r.val[roots[i]];
            r.val[roots[i]] = (ITensor){0};
        }
    }
    for (int id = 0; id < count; id++)
        itensor_free(&r.val[id]);
    free(r.val);
    free(live);
    free(last);
    return ok;
}

bool interp_eval_const(Graph *g, NodeId root, const double *hypers, int nhypers, ITensor *out,
                       char *err, size_t errlen)
{
    InterpBindings b = {.hypers = hypers, .nhypers = nhypers};
    return interp_run(g, &root, 1, &b, out, err, errlen);
}

/* ---- runtime buffers ---- */

static double buf_get(const void *data, NndDType dt, int64_t i)
{
    switch (dt) {
    case NND_F32: return ((const float *)data)[i];
    case NND_F64: return ((const double *)data)[i];
    case NND_I32: return ((const int32_t *)data)[i];
    default: return ((const uint8_t *)data)[i];
    }
}

static void buf_set(void *data, NndDType dt, int64_t i, double v)
{
    switch (dt) {
    case NND_F32: ((float *)data)[i] = (float)v; break;
    case NND_F64: ((double *)data)[i] = v; break;
    case NND_I32: ((int32_t *)data)[i] = (int32_t)v; break;
    default: ((uint8_t *)data)[i] = v != 0; break;
    }
}

ITensor itensor_from_buffer(Graph *g, NodeId id, const void *data, int64_t batch)
{
    Node *n = graph_node(g, id);
    int64_t shape[NND_MAX_RANK];
    for (int i = 0; i < n->shape.rank; i++)
        shape[i] = n->shape.d[i] < 0 ? batch : n->shape.d[i];
    ITensor t = itensor_new((NndDType)n->dtype, n->shape.rank, shape);
    for (int64_t i = 0; data && i < t.n; i++) /* no data (a forward's y): zeros */
        t.v[i] = buf_get(data, t.dtype, i);
    return t;
}

void itensor_store(const ITensor *t, void *data)
{
    for (int64_t i = 0; i < t->n; i++)
        buf_set(data, t->dtype, i, t->v[i]);
}

bool itensor_to_tensor(const ITensor *t, NndTensor *out, NndErr *e)
{
    if (nnd_tensor_alloc(out, t->dtype, t->rank, t->shape, e) != 0)
        return false;
    itensor_store(t, out->data);
    return true;
}
