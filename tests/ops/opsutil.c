#include "opsutil.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* cmocka.h needs the headers above, included before it */
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

NodeId ot_concat(Graph *g, NodeId a, NodeId b, int axis)
{
    return gb_node(g, (Node){.op = OP_CONCAT, .nin = 2, .in = {a, b}, .idx = axis});
}

NodeId ot_take(Graph *g, NodeId table, NodeId idx)
{
    return gb_node(g, (Node){.op = OP_TAKE, .nin = 2, .in = {table, idx}});
}

NodeId ot_scatter(Graph *g, NodeId idx, NodeId src, int rows)
{
    return gb_node(g, (Node){.op = OP_SCATTER_ADD, .nin = 2, .in = {idx, src}, .idx = rows});
}

NodeId ot_conv(Graph *g, OpId op, NodeId a, NodeId b, const int64_t *attrs, Shape preset)
{
    uint32_t pool = graph_pool_ints(g, attrs, 7);
    return gb_node(g, (Node){.op = (uint8_t)op,
                             .nin = 2,
                             .in = {a, b},
                             .pool = pool,
                             .shape = op == OP_CONV2D ? shape_scalar() : preset});
}

NodeId ot_pool(Graph *g, OpId op, NodeId a, NodeId b, const int64_t *attrs, Shape preset)
{
    uint32_t pool = graph_pool_ints(g, attrs, 6);
    return gb_node(g, (Node){.op = (uint8_t)op,
                             .nin = (uint8_t)(b ? 2 : 1),
                             .in = {a, b},
                             .pool = pool,
                             .shape = op == OP_POOLAVG_T ? preset : shape_scalar()});
}

NodeId ot_randstep(Graph *g, NodeId step, uint64_t seed, uint64_t key, NndDType dt, Shape s)
{
    return gb_node(g, (Node){.op = OP_RANDSTEP,
                             .nin = 1,
                             .in = {step},
                             .num = (double)seed,
                             .key = key,
                             .dtype = (uint8_t)dt,
                             .shape = s});
}

NodeId ot_ortho(Graph *g, NodeId gain, uint64_t key, NndDType dt, Shape s)
{
    Node n = {.op = OP_ORTHO, .nin = 1, .in = {gain}, .key = key, .dtype = (uint8_t)dt};
    n.shape = s;
    return gb_node(g, n);
}

NodeId ot_custom(Graph *g, NodeId v, NodeId a, NodeId b, int idx)
{
    Node n = {.op = OP_CUSTOM, .nin = 1, .in = {v}, .idx = idx};
    if (a)
        n.in[n.nin++] = a;
    if (b)
        n.in[n.nin++] = b;
    return gb_node(g, n);
}

NodeId ot_sum_all(Graph *g, NodeId a)
{
    int r = graph_node(g, a)->shape.rank;
    if (r == 0)
        return a;
    return gb_reduce(g, OP_SUM, a, (1u << r) - 1, false, span_none());
}

const OtConvCase ot_conv_cases[] = {
    {"3x3", 1, 1, 4, 4, 1, 3, 3, {1, 1, 0, 0, 1, 1, 1}},
    {"pad 1, batch 2", 2, 2, 5, 6, 3, 3, 3, {1, 1, 1, 1, 1, 1, 1}},
    {"stride 2", 1, 2, 6, 5, 2, 3, 3, {2, 2, 1, 1, 1, 1, 1}},
    {"stride 2,1 pad 0,2 kernel 3x2", 1, 2, 5, 7, 2, 3, 2, {2, 1, 0, 2, 1, 1, 1}},
    {"stride 3 > kernel: unused pixels", 1, 1, 7, 8, 2, 2, 2, {3, 3, 0, 0, 1, 1, 1}},
    {"dilation 2", 1, 2, 7, 6, 2, 3, 3, {1, 1, 2, 1, 2, 2, 1}},
    {"dilation 2,1 kernel 2x3", 2, 1, 6, 5, 2, 2, 3, {1, 1, 1, 0, 2, 1, 1}},
    {"groups 2", 1, 4, 5, 5, 4, 3, 3, {1, 1, 1, 1, 1, 1, 2}},
    {"groups 2, 3 outputs each", 1, 4, 4, 4, 6, 2, 2, {1, 1, 0, 0, 1, 1, 2}},
    {"depthwise", 2, 3, 5, 5, 3, 3, 3, {1, 1, 1, 1, 1, 1, 3}},
    {"depthwise x2, stride 2,1", 1, 3, 4, 5, 6, 3, 3, {2, 1, 1, 1, 1, 1, 3}},
    {"1x1", 2, 3, 3, 4, 2, 1, 1, {1, 1, 0, 0, 1, 1, 1}},
    {"1x1 stride 2 pad 1", 1, 3, 5, 5, 2, 1, 1, {2, 2, 1, 1, 1, 1, 1}},
    {"1x3 pad 0,1", 1, 2, 4, 6, 2, 1, 3, {1, 1, 0, 1, 1, 1, 1}},
    {"3x1 dilation 3,1", 1, 2, 8, 3, 1, 3, 1, {1, 1, 0, 0, 3, 1, 1}},
    {"groups 2 stride 2,3 pad 1,2 dilation 2,1 kernel 2x3",
     1,
     4,
     7,
     8,
     4,
     2,
     3,
     {2, 3, 1, 2, 2, 1, 2}},
    {"kernel = image", 1, 2, 3, 3, 2, 3, 3, {1, 1, 0, 0, 1, 1, 1}},
    {"kernel > image, pad 1", 1, 1, 2, 2, 1, 3, 3, {1, 1, 1, 1, 1, 1, 1}},
};
const size_t ot_nconv_cases = sizeof ot_conv_cases / sizeof ot_conv_cases[0];

const OtPoolCase ot_pool_cases[] = {
    {"2x2 stride 2", 1, 2, 4, 4, {2, 2, 2, 2, 0, 0}},
    {"3x3 stride 1 pad 1", 1, 2, 4, 5, {3, 3, 1, 1, 1, 1}},
    {"3x2 stride 2,1 pad 1,0", 2, 1, 5, 4, {3, 2, 2, 1, 1, 0}},
    {"2x2 stride 1 pad 1", 1, 1, 3, 3, {2, 2, 1, 1, 1, 1}},
    {"3x3 stride 2 pad 1: overlapping", 1, 2, 5, 5, {3, 3, 2, 2, 1, 1}},
    {"1x1 stride 2", 1, 2, 5, 4, {1, 1, 2, 2, 0, 0}},
    {"global", 2, 2, 3, 4, {3, 4, 1, 1, 0, 0}},
    {"2x3 stride 3 pad 0,1: gaps", 1, 1, 7, 8, {2, 3, 3, 3, 0, 1}},
};
const size_t ot_npool_cases = sizeof ot_pool_cases / sizeof ot_pool_cases[0];

Shape ot_conv_x_shape(const OtConvCase *k) { return SHAPE(k->n, k->c, k->h, k->w); }

Shape ot_conv_w_shape(const OtConvCase *k) { return SHAPE(k->o, k->c / k->a[6], k->kh, k->kw); }

Shape ot_pool_x_shape(const OtPoolCase *k) { return SHAPE(k->n, k->c, k->h, k->w); }

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

const char *ot_case;

void ot_expect(ITensor *t, Shape s, const double *v, int n)
{
    assert_int_equal(t->rank, s.rank);
    for (int i = 0; i < s.rank; i++)
        assert_int_equal(t->shape[i], s.d[i]);
    assert_int_equal(t->n, n);
    for (int i = 0; i < n; i++) {
        bool same = t->v[i] == v[i] || (isnan(t->v[i]) && isnan(v[i]));
        if (!same || (!isnan(v[i]) && signbit(t->v[i]) != signbit(v[i])))
            fail_msg("%s%selement %d: got %.17g, expected %.17g", ot_case ? ot_case : "",
                     ot_case ? ": " : "", i, t->v[i], v[i]);
    }
    itensor_free(t);
}

void ot_expect_dt(ITensor *t, NndDType dt, Shape s, const double *v, int n)
{
    assert_int_equal(t->dtype, dt);
    ot_expect(t, s, v, n);
}
