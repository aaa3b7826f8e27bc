#include "opsutil.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

uint64_t ot_next(OtRng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double ot_uniform(OtRng *r, double lo, double hi)
{
    return lo + (hi - lo) * ((double)(ot_next(r) >> 11) * 0x1.0p-53);
}

NodeId ot_leaf(Graph *g, OpId op, int idx, NndDType dt, Shape s)
{
    char name[32];
    snprintf(name, sizeof name, "%s%d", op_info[op].name, idx);
    Node n = {.op = (uint8_t)op,
              .dtype = (uint8_t)dt,
              .shape = s,
              .idx = idx,
              .name = arena_strdup(&g->arena, name)};
    return gb_node(g, n);
}

NodeId ot_param(Graph *g, int idx, NndDType dt, Shape s)
{
    return ot_leaf(g, OP_PARAM, idx, dt, s);
}

NodeId ot_tensor(Graph *g, NndDType dt, Shape s, const double *v, int n)
{
    assert_int_equal(shape_static_numel(&s, NULL), n);
    uint32_t off = (uint32_t)g->fpool.n;
    for (int i = 0; i < n; i++)
        vec_push(&g->fpool, v[i]);
    return gb_node(g, (Node){.op = OP_TENSOR, .dtype = (uint8_t)dt, .shape = s, .pool = off});
}

ITensor ot_itensor(NndDType dt, Shape s, const double *v, int n)
{
    ITensor t = itensor_new(dt, s.rank, s.d);
    assert_int_equal(t.n, n);
    memcpy(t.v, v, sizeof(double) * (size_t)n);
    return t;
}

static uint32_t pool_push(Graph *g, const int64_t *a, int na, const int64_t *b, int nb)
{
    uint32_t off = (uint32_t)g->ipool.n;
    for (int i = 0; i < na; i++)
        vec_push(&g->ipool, a[i]);
    for (int i = 0; i < nb; i++)
        vec_push(&g->ipool, b[i]);
    return off;
}

NodeId ot_slice(Graph *g, NodeId a, const int64_t *start, const int64_t *step, Shape counts)
{
    uint32_t off = pool_push(g, start, counts.rank, step, counts.rank);
    return gb_node(g, (Node){.op = OP_SLICE, .nin = 1, .in = {a}, .shape = counts, .pool = off});
}

NodeId ot_pad(Graph *g, NodeId a, const int64_t *start, const int64_t *step, Shape full)
{
    uint32_t off = pool_push(g, start, full.rank, step, full.rank);
    return gb_node(g, (Node){.op = OP_PAD, .nin = 1, .in = {a}, .shape = full, .pool = off});
}

NodeId ot_argmax(Graph *g, NodeId a, int axis, bool keep)
{
    return gb_node(g, (Node){.op = OP_ARGMAX, .nin = 1, .in = {a}, .idx = axis, .keep = keep});
}

NodeId ot_pick(Graph *g, NodeId x, NodeId labels)
{
    return gb_node(g, (Node){.op = OP_PICK, .nin = 2, .in = {x, labels}});
}

NodeId ot_one_hot(Graph *g, NodeId labels, int depth, NndDType dt)
{
    return gb_node(
        g, (Node){.op = OP_ONE_HOT, .nin = 1, .in = {labels}, .idx = depth, .dtype = (uint8_t)dt});
}

NodeId ot_cast(Graph *g, NodeId a, NndDType dt)
{
    return gb_node(g, (Node){.op = OP_CAST, .nin = 1, .in = {a}, .dtype = (uint8_t)dt});
}

NodeId ot_dimsize(Graph *g, NodeId ref, uint32_t mask, NndDType dt)
{
    return gb_node(
        g, (Node){.op = OP_DIMSIZE, .nin = 1, .in = {ref}, .mask = mask, .dtype = (uint8_t)dt});
}

NodeId ot_rand(Graph *g, OpId op, NodeId a, NodeId b, uint64_t key, NndDType dt, Shape s)
{
    return gb_node(g, (Node){.op = (uint8_t)op,
                             .nin = 2,
                             .in = {a, b},
                             .key = key,
                             .dtype = (uint8_t)dt,
                             .shape = s});
}

NodeId ot_sum_all(Graph *g, NodeId a)
{
    int r = graph_node(g, a)->shape.rank;
    if (r == 0)
        return a;
    return gb_reduce(g, OP_SUM, a, (1u << r) - 1, false, span_none());
}

void ot_run(Graph *g, const NodeId *roots, int n, const InterpBindings *b, ITensor *out)
{
    char err[512] = "";
    InterpBindings none = {0};
    bool ok = interp_run(g, roots, n, b ? b : &none, out, err, sizeof err);
    if (!ok)
        fail_msg("interp_run failed: %s", err);
}

ITensor ot_eval(Graph *g, NodeId root)
{
    ITensor t;
    ot_run(g, &root, 1, NULL, &t);
    return t;
}

void ot_expect(ITensor *t, Shape s, const double *v, int n)
{
    assert_int_equal(t->rank, s.rank);
    for (int i = 0; i < s.rank; i++)
        assert_int_equal(t->shape[i], s.d[i]);
    assert_int_equal(t->n, n);
    for (int i = 0; i < n; i++) {
        bool same = t->v[i] == v[i] || (isnan(t->v[i]) && isnan(v[i]));
        if (!same || (!isnan(v[i]) && signbit(t->v[i]) != signbit(v[i])))
            fail_msg("element %d: got %.17g, expected %.17g", i, t->v[i], v[i]);
    }
    itensor_free(t);
}

void ot_expect_dt(ITensor *t, NndDType dt, Shape s, const double *v, int n)
{
    assert_int_equal(t->dtype, dt);
    ot_expect(t, s, v, n);
}
