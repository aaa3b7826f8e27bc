/* Gradient checks of every op in ops.def, in f64, against central differences.
 *
 * Each case builds PARAM leaves with seeded random values (kept away from kinks and
 * ties), the op, and y = sum(op_out * R) for a random R bound as an INPUT, so every
 * output element matters.  autodiff(y, params) is run by the interpreter and each
 * element is compared with (y(x + eps) - y(x - eps)) / 2eps:
 *     |ad - fd| <= 1e-5 + 1e-3 |fd|.
 * Second-order cases differentiate through the gradient: with g = dy/dx and a random
 * V, z = sum(g * V) and dz/dx = H V is checked against central differences of z,
 * sometimes with simplify_graph between the steps.
 *
 * The ops that are adjoints of others (conv2d_gx, conv2d_gw, maxpool_scatter,
 * avgpool_t, scatter_add) are linear in one input and checked like any other op.
 * A CUSTOM node takes its inputs' gradients from g->custom_vjp: the case here gives
 * the true derivative, so the check also proves that in[0], the value, passes none.
 *
 * Ops without a gradient (leaves, sources, comparisons, logic, argmax, one_hot,
 * sign, floor) get a case asserting that autodiff gives them none.  The last test
 * fails when an op in ops.def has neither kind of case. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* cmocka.h needs the headers above, included before it */
#include <cmocka.h>

#include "autodiff.h"
#include "opsutil.h"
#include "simplify.h"

#define SP span_none()
#define MAXP 6
#define MAXIN 8
#define EPS 1e-6
#define ATOL 1e-5
#define RTOL 1e-3

/* ---- coverage ---- */

typedef enum Cover { COV_NONE, COV_GRAD, COV_NOGRAD } Cover;

/* What each op is tested for: a gradcheck, or a check that it passes no gradient.
 * A new op in ops.def is COV_NONE here until someone writes its case. */
static const Cover cover[OP_COUNT] = {
    [OP_CONST] = COV_NOGRAD,     [OP_TENSOR] = COV_NOGRAD,  [OP_PARAM] = COV_NOGRAD,
    [OP_STATE] = COV_NOGRAD,     [OP_INPUT] = COV_NOGRAD,   [OP_HYPER] = COV_NOGRAD,
    [OP_RANDU] = COV_NOGRAD,     [OP_RANDN] = COV_NOGRAD,   [OP_DIMSIZE] = COV_NOGRAD,
    [OP_NEG] = COV_GRAD,         [OP_EXP] = COV_GRAD,       [OP_LOG] = COV_GRAD,
    [OP_SQRT] = COV_GRAD,        [OP_RSQRT] = COV_GRAD,     [OP_ABS] = COV_GRAD,
    [OP_SIGN] = COV_NOGRAD,      [OP_TANH] = COV_GRAD,      [OP_SIGMOID] = COV_GRAD,
    [OP_RELU] = COV_GRAD,        [OP_SIN] = COV_GRAD,       [OP_COS] = COV_GRAD,
    [OP_FLOOR] = COV_NOGRAD,     [OP_NOT] = COV_NOGRAD,     [OP_CAST] = COV_GRAD,
    [OP_ADD] = COV_GRAD,         [OP_SUB] = COV_GRAD,       [OP_MUL] = COV_GRAD,
    [OP_DIV] = COV_GRAD,         [OP_POW] = COV_GRAD,       [OP_MIN] = COV_GRAD,
    [OP_MAX] = COV_GRAD,         [OP_LT] = COV_NOGRAD,      [OP_LE] = COV_NOGRAD,
    [OP_GT] = COV_NOGRAD,        [OP_GE] = COV_NOGRAD,      [OP_EQ] = COV_NOGRAD,
    [OP_NE] = COV_NOGRAD,        [OP_AND] = COV_NOGRAD,     [OP_OR] = COV_NOGRAD,
    [OP_SELECT] = COV_GRAD,      [OP_BROADCAST] = COV_GRAD, [OP_RESHAPE] = COV_GRAD,
    [OP_TRANSPOSE] = COV_GRAD,   [OP_SLICE] = COV_GRAD,     [OP_PAD] = COV_GRAD,
    [OP_SUM] = COV_GRAD,         [OP_MEAN] = COV_GRAD,      [OP_RMAX] = COV_GRAD,
    [OP_LOGSUMEXP] = COV_GRAD,   [OP_ARGMAX] = COV_NOGRAD,  [OP_PICK] = COV_GRAD,
    [OP_ONE_HOT] = COV_NOGRAD,   [OP_MATMUL] = COV_GRAD,    [OP_RANDSTEP] = COV_NOGRAD,
    [OP_ORTHO] = COV_NOGRAD,     [OP_CONCAT] = COV_GRAD,    [OP_TAKE] = COV_GRAD,
    [OP_SCATTER_ADD] = COV_GRAD, [OP_CONV2D] = COV_GRAD,    [OP_CONV2D_GX] = COV_GRAD,
    [OP_CONV2D_GW] = COV_GRAD,   [OP_POOLMAX] = COV_GRAD,   [OP_POOLMAX_T] = COV_GRAD,
    [OP_POOLAVG] = COV_GRAD,     [OP_POOLAVG_T] = COV_GRAD, [OP_CUSTOM] = COV_GRAD,
};

/* Ops that appeared in a passing first-order gradcheck, a second-order one, and a
 * passing no-gradient case. */
static bool seen_grad[OP_COUNT], seen_grad2[OP_COUNT], seen_nograd[OP_COUNT];

/* ---- the harness ---- */

typedef struct Gc {
    const char *name;
    Graph g;
    OtRng rng;
    NodeId p[MAXP]; /* PARAM nodes, idx = position */
    ITensor pv[MAXP]; /* their values */
    int np;
    ITensor iv[MAXIN]; /* INPUT values: R, V, ... */
    int nin;
    ITensor sv[2]; /* STATE values */
    int nst;
    double hypers[2];
    int nhyp;
    int64_t syms[4];
    int nsyms;
} Gc;

static void gc_init(Gc *c, const char *name, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->name = name;
    graph_init(&c->g);
    c->rng.s = seed * 0x2545f4914f6cdd1dull + 17;
}

static void gc_free(Gc *c)
{
    for (int i = 0; i < c->np; i++)
        itensor_free(&c->pv[i]);
    for (int i = 0; i < c->nin; i++)
        itensor_free(&c->iv[i]);
    for (int i = 0; i < c->nst; i++)
        itensor_free(&c->sv[i]);
    graph_free(&c->g);
}

static InterpBindings gc_bindings(Gc *c)
{
    return (InterpBindings){.params = c->pv,
                            .nparams = c->np,
                            .inputs = c->iv,
                            .ninputs = c->nin,
                            .states = c->sv,
                            .nstates = c->nst,
                            .hypers = c->hypers,
                            .nhypers = c->nhyp,
                            .syms = c->syms,
                            .nsyms = c->nsyms,
                            .seed = 42};
}

static int64_t gc_sym(Gc *c, const char *name, int64_t value)
{
    int64_t d = graph_symbol(&c->g, name);
    int k = (int)(-d - 1);
    assert_true(k < 4);
    c->syms[k] = value;
    c->nsyms = NND_MAX(c->nsyms, k + 1);
    return d;
}

static Shape gc_concrete(Gc *c, Shape s)
{
    for (int i = 0; i < s.rank; i++)
        if (s.d[i] < 0)
            s.d[i] = c->syms[-s.d[i] - 1];
    return s;
}

/* A PARAM with the given values (n of them; the concrete shape's count). */
static NodeId gc_param_vals(Gc *c, Shape s, const double *v)
{
    assert_true(c->np < MAXP);
    Shape cs = gc_concrete(c, s);
    c->pv[c->np] = itensor_new(NND_F64, cs.rank, cs.d);
    memcpy(c->pv[c->np].v, v, sizeof(double) * (size_t)c->pv[c->np].n);
    c->p[c->np] = ot_param(&c->g, c->np, NND_F64, s);
    return c->p[c->np++];
}

static int64_t gc_numel(Gc *c, Shape s)
{
    Shape cs = gc_concrete(c, s);
    return shape_static_numel(&cs, NULL);
}

/* Uniform in [lo, hi). */
static NodeId gc_param(Gc *c, Shape s, double lo, double hi)
{
    int64_t n = gc_numel(c, s);
    double v[256];
    assert_true(n <= 256);
    for (int64_t i = 0; i < n; i++)
        v[i] = ot_uniform(&c->rng, lo, hi);
    return gc_param_vals(c, s, v);
}

/* |v| in [lo, hi) with a random sign: away from 0. */
static NodeId gc_param_away0(Gc *c, Shape s, double lo, double hi)
{
    int64_t n = gc_numel(c, s);
    double v[256];
    assert_true(n <= 256);
    for (int64_t i = 0; i < n; i++)
        v[i] = ot_uniform(&c->rng, lo, hi) * (ot_next(&c->rng) & 1 ? 1 : -1);
    return gc_param_vals(c, s, v);
}

/* Pairwise distinct values at least 0.75 * gap apart, in random order from lo. */
static NodeId gc_param_distinct(Gc *c, Shape s, double lo, double gap)
{
    int64_t n = gc_numel(c, s);
    double v[256];
    int perm[256];
    assert_true(n <= 256);
    for (int i = 0; i < n; i++)
        perm[i] = i;
    for (int i = (int)n - 1; i > 0; i--) {
        int j = (int)(ot_next(&c->rng) % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int64_t i = 0; i < n; i++)
        v[i] = lo + gap * perm[i] + ot_uniform(&c->rng, 0, gap / 4);
    return gc_param_vals(c, s, v);
}

/* An INPUT leaf bound to uniform values in [-1, 1). */
static NodeId gc_input(Gc *c, Shape s)
{
    assert_true(c->nin < MAXIN);
    Shape cs = gc_concrete(c, s);
    ITensor t = itensor_new(NND_F64, cs.rank, cs.d);
    for (int64_t i = 0; i < t.n; i++)
        t.v[i] = ot_uniform(&c->rng, -1, 1);
    c->iv[c->nin] = t;
    return ot_leaf(&c->g, OP_INPUT, c->nin++, NND_F64, s);
}

static void gc_mark(Gc *c, NodeId out, bool *seen)
{
    bool *live = xcalloc((size_t)graph_count(&c->g), 1);
    graph_mark_live(&c->g, &out, 1, live);
    for (int id = 1; id < graph_count(&c->g); id++)
        if (live[id])
            seen[graph_node(&c->g, (NodeId)id)->op] = true;
    free(live);
}

/* y = sum(out * R) for a fresh random R. */
static NodeId gc_objective(Gc *c, NodeId out)
{
    Node *o = graph_node(&c->g, out);
    assert_int_equal(o->dtype, NND_F64);
    Shape s = o->shape;
    NodeId r = gc_input(c, s);
    return ot_sum_all(&c->g, gb_binary(&c->g, OP_MUL, out, r, SP));
}

static double gc_eval_scalar(Gc *c, NodeId y)
{
    InterpBindings b = gc_bindings(c);
    ITensor t;
    ot_run(&c->g, &y, 1, &b, &t);
    assert_int_equal(t.n, 1);
    double v = t.v[0];
    itensor_free(&t);
    return v;
}

/* Compares grads[k] (already evaluated into ad[k]) with central differences of the
 * scalar y over every element of every parameter. */
static void gc_compare(Gc *c, NodeId y, const ITensor *ad, const char *what)
{
    for (int k = 0; k < c->np; k++) {
        ITensor *x = &c->pv[k];
        assert_int_equal(ad[k].n, x->n);
        for (int64_t i = 0; i < x->n; i++) {
            double x0 = x->v[i];
            x->v[i] = x0 + EPS;
            double yp = gc_eval_scalar(c, y);
            x->v[i] = x0 - EPS;
            double ym = gc_eval_scalar(c, y);
            x->v[i] = x0;
            double fd = (yp - ym) / (2 * EPS), a = ad[k].v[i];
            if (!(fabs(a - fd) <= ATOL + RTOL * fabs(fd)))
                fail_msg("%s %s: param %d element %lld at %.6g: autodiff %.10g, "
                         "finite difference %.10g",
                         c->name, what, k, (long long)i, x0, a, fd);
        }
    }
}

/* First order: autodiff(sum(out * R), params) against finite differences. */
static void gc_check(Gc *c, NodeId out)
{
    NodeId y = gc_objective(c, out);
    NodeId roots[1 + MAXP];
    roots[0] = y;
    autodiff(&c->g, y, c->p, c->np, roots + 1);
    for (int k = 0; k < c->np; k++) {
        Node *gk = graph_node(&c->g, roots[1 + k]), *pk = graph_node(&c->g, c->p[k]);
        assert_true(shape_equal(&gk->shape, &pk->shape));
        assert_int_equal(gk->dtype, NND_F64);
    }
    InterpBindings b = gc_bindings(c);
    ITensor vals[1 + MAXP];
    ot_run(&c->g, roots, 1 + c->np, &b, vals);
    gc_compare(c, y, vals + 1, "gradient");
    for (int k = 0; k < 1 + c->np; k++)
        itensor_free(&vals[k]);
    gc_mark(c, out, seen_grad);
}

/* Simplification flags for gc_check2. */
enum { S_BEFORE = 1, S_AFTER = 2 };

static void gc_simplify(Gc *c, NodeId *extra, int nextra)
{
    NodeId *roots[2 * MAXP + 2];
    int n = 0;
    for (int i = 0; i < nextra; i++)
        roots[n++] = &extra[i];
    for (int k = 0; k < c->np; k++)
        roots[n++] = &c->p[k];
    SimplifyStats st;
    simplify_graph(&c->g, roots, n, SIMPLIFY_EXACT, &st);
    assert_true(st.after <= st.before);
}

/* Second order: g = dy/dx, z = sum_k sum(g_k * V_k), dz/dx = H V against finite
 * differences of z. */
static void gc_check2(Gc *c, NodeId out, int simplify)
{
    gc_mark(c, out, seen_grad2);
    NodeId y = gc_objective(c, out);
    NodeId gr[MAXP];
    autodiff(&c->g, y, c->p, c->np, gr);
    NodeId z = 0;
    for (int k = 0; k < c->np; k++) {
        NodeId v = gc_input(c, graph_node(&c->g, c->p[k])->shape);
        NodeId t = ot_sum_all(&c->g, gb_binary(&c->g, OP_MUL, gr[k], v, SP));
        z = z ? gb_binary(&c->g, OP_ADD, z, t, SP) : t;
    }
    if (simplify & S_BEFORE) {
        double before = gc_eval_scalar(c, z);
        gc_simplify(c, &z, 1);
        double after = gc_eval_scalar(c, z);
        if (!(fabs(before - after) <= 1e-12 * (1 + fabs(before))))
            fail_msg("%s: simplify_graph changed z from %.17g to %.17g", c->name, before, after);
    }
    NodeId roots[1 + MAXP];
    roots[0] = z;
    autodiff(&c->g, z, c->p, c->np, roots + 1);
    InterpBindings b = gc_bindings(c);
    ITensor vals[1 + MAXP];
    if (simplify & S_AFTER) {
        ITensor pre[1 + MAXP];
        ot_run(&c->g, roots, 1 + c->np, &b, pre);
        gc_simplify(c, roots, 1 + c->np);
        ot_run(&c->g, roots, 1 + c->np, &b, vals);
        for (int k = 0; k < 1 + c->np; k++) {
            assert_int_equal(pre[k].n, vals[k].n);
            for (int64_t i = 0; i < pre[k].n; i++)
                if (!(fabs(pre[k].v[i] - vals[k].v[i]) <= 1e-12 * (1 + fabs(pre[k].v[i]))))
                    fail_msg("%s: simplify_graph changed root %d element %lld: %.17g to %.17g",
                             c->name, k, (long long)i, pre[k].v[i], vals[k].v[i]);
            itensor_free(&pre[k]);
        }
    } else {
        ot_run(&c->g, roots, 1 + c->np, &b, vals);
    }
    gc_compare(c, roots[0], vals + 1, "Hessian-vector product");
    for (int k = 0; k < 1 + c->np; k++)
        itensor_free(&vals[k]);
}

/* No gradient: y = sum(cast_f64(out) * R) gives every parameter a zero gradient, and
 * gives it as an absent one (a constant zero), not as computed zeros. */
static void gc_expect_none(Gc *c, NodeId out, OpId op)
{
    Graph *g = &c->g;
    assert_int_equal(graph_node(g, out)->op, op);
    NodeId o = gb_cast(g, out, NND_F64, SP);
    NodeId y = gc_objective(c, o);
    NodeId roots[1 + MAXP];
    roots[0] = y;
    autodiff(g, y, c->p, c->np, roots + 1);
    for (int k = 0; k < c->np; k++) {
        double v = -1;
        if (!graph_is_const(g, roots[1 + k], &v) || v != 0)
            fail_msg("%s: parameter %d gets a gradient through %s", c->name, k, op_info[op].name);
    }
    InterpBindings b = gc_bindings(c);
    ITensor vals[1 + MAXP];
    ot_run(g, roots, 1 + c->np, &b, vals);
    for (int k = 0; k < c->np; k++) {
        assert_int_equal(vals[1 + k].n, c->pv[k].n);
        for (int64_t i = 0; i < vals[1 + k].n; i++)
            assert_true(vals[1 + k].v[i] == 0);
    }
    for (int k = 0; k < 1 + c->np; k++)
        itensor_free(&vals[k]);
    seen_nograd[op] = true;
}

static uint64_t seed_counter = 1;
static uint64_t next_seed(void) { return seed_counter++; }

/* ---- elementwise, one input ---- */

typedef struct UnaryCase {
    OpId op;
    double lo, hi;
    bool away0; /* |x| in [lo, hi) with random signs */
} UnaryCase;

static const UnaryCase unary_cases[] = {
    {OP_NEG, -2, 2, false},   {OP_EXP, -2, 2, false},     {OP_LOG, 0.3, 3, false},
    {OP_SQRT, 0.3, 3, false}, {OP_RSQRT, 0.3, 3, false},  {OP_ABS, 0.1, 2, true},
    {OP_TANH, -3, 3, false},  {OP_SIGMOID, -4, 4, false}, {OP_RELU, 0.1, 2, true},
    {OP_SIN, -3, 3, false},   {OP_COS, -3, 3, false},
};

static void test_unary(void **state)
{
    Shape shapes[] = {SHAPE(2, 3), shape_scalar(), SHAPE(1, 3, 1), SHAPE(2, 1)};
    for (size_t i = 0; i < NND_ARRAY_LEN(unary_cases); i++)
        for (size_t j = 0; j < NND_ARRAY_LEN(shapes); j++) {
            const UnaryCase *u = &unary_cases[i];
            Gc c;
            gc_init(&c, op_info[u->op].name, next_seed());
            NodeId x = u->away0 ? gc_param_away0(&c, shapes[j], u->lo, u->hi)
                                : gc_param(&c, shapes[j], u->lo, u->hi);
            gc_check(&c, gb_unary(&c.g, u->op, x, SP));
            gc_free(&c);
        }
}

/* Saturated tanh and sigmoid, and the far tail of exp (large exp values would
 * swamp the differences of the small ones in y). */
static void test_unary_extremes(void **state)
{
    static const double big[] = {-30, -8, -0.5, 0.5, 8, 30};
    static const double tail[] = {-30, -8, -0.5, 0.5, 3, 5};
    OpId ops[] = {OP_TANH, OP_SIGMOID, OP_EXP};
    for (size_t i = 0; i < NND_ARRAY_LEN(ops); i++) {
        Gc c;
        gc_init(&c, "saturated", next_seed());
        NodeId x = gc_param_vals(&c, SHAPE(6), ops[i] == OP_EXP ? tail : big);
        gc_check(&c, gb_unary(&c.g, ops[i], x, SP));
        gc_free(&c);
    }
}

/* A chain of unary ops: the adjoints multiply. */
static void test_unary_chain(void **state)
{
    Gc c;
    gc_init(&c, "chain", next_seed());
    Graph *g = &c.g;
    NodeId x = gc_param(&c, SHAPE(3, 2), 0.2, 1.5);
    NodeId t = gb_unary(g, OP_SQRT, gb_unary(g, OP_EXP, gb_unary(g, OP_SIN, x, SP), SP), SP);
    t = gb_unary(g, OP_LOG, gb_unary(g, OP_SIGMOID, gb_unary(g, OP_TANH, t, SP), SP), SP);
    gc_check(&c, gb_unary(g, OP_RSQRT, gb_unary(g, OP_NEG, t, SP), SP));
    gc_free(&c);
}

/* sign and floor are piecewise constant: zero gradient, given as none. */
static void test_sign_floor(void **state)
{
    OpId ops[] = {OP_SIGN, OP_FLOOR};
    for (size_t i = 0; i < NND_ARRAY_LEN(ops); i++) {
        /* away from the jumps the finite differences agree: zero */
        Gc c;
        gc_init(&c, op_info[ops[i]].name, next_seed());
        static const double v[] = {-2.7, -1.4, -0.3, 0.4, 1.6, 2.2};
        NodeId x = gc_param_vals(&c, SHAPE(2, 3), v);
        NodeId f = gb_unary(&c.g, ops[i], x, SP);
        gc_check(&c, gb_binary(&c.g, OP_MUL, f, x, SP)); /* d(f x) = f there */
        gc_free(&c);
        gc_init(&c, op_info[ops[i]].name, next_seed());
        x = gc_param_vals(&c, SHAPE(2, 3), v);
        gc_expect_none(&c, gb_unary(&c.g, ops[i], x, SP), ops[i]);
        gc_free(&c);
    }
}

/* cast f64 -> f64 passes the gradient through; an integer on the way stops it; an
 * integer parameter gets none. */
static void test_cast(void **state)
{
    Gc c;
    gc_init(&c, "cast f64", next_seed());
    NodeId x = gc_param(&c, SHAPE(2, 3), -2, 2);
    NodeId k = ot_cast(&c.g, x, NND_F64);
    assert_int_equal(graph_node(&c.g, k)->op, OP_CAST);
    gc_check(&c, gb_unary(&c.g, OP_EXP, k, SP));
    gc_free(&c);

    gc_init(&c, "cast through i32", next_seed());
    x = gc_param(&c, SHAPE(2, 3), -4, 4);
    NodeId i = gb_cast(&c.g, x, NND_I32, SP);
    NodeId back = gb_cast(&c.g, i, NND_F64, SP);
    gc_expect_none(&c, back, OP_CAST);
    gc_free(&c);

    /* an i32 parameter: autodiff gives a zero of its own dtype */
    Graph g;
    graph_init(&g);
    NodeId p = ot_param(&g, 0, NND_I32, SHAPE(3));
    NodeId f = ot_param(&g, 1, NND_F64, SHAPE(3));
    NodeId y = ot_sum_all(&g, gb_binary(&g, OP_MUL, gb_cast(&g, p, NND_F64, SP), f, SP));
    NodeId wrt[2] = {p, f}, gr[2];
    autodiff(&g, y, wrt, 2, gr);
    double v;
    assert_true(graph_is_const(&g, gr[0], &v) && v == 0);
    assert_int_equal(graph_node(&g, gr[0])->dtype, NND_I32);
    ITensor pv[2] = {ot_itensor(NND_I32, SHAPE(3), VALS(1, 2, 3)),
                     ot_itensor(NND_F64, SHAPE(3), VALS(0.5, 0.25, 2))};
    InterpBindings b = {.params = pv, .nparams = 2};
    ITensor out[2];
    ot_run(&g, gr, 2, &b, out);
    ot_expect(&out[0], SHAPE(3), VALS(0, 0, 0));
    ot_expect(&out[1], SHAPE(3), VALS(1, 2, 3));
    itensor_free(&pv[0]);
    itensor_free(&pv[1]);
    graph_free(&g);
}

/* Through f32 and back, the adjoint is rounded to f32 on the way. */
static void test_cast_f32(void **state)
{
    Graph g;
    graph_init(&g);
    NodeId x = ot_param(&g, 0, NND_F64, SHAPE(3));
    NodeId r = ot_tensor(&g, NND_F64, SHAPE(3), VALS(0.1, 1.0 / 3, -2.5));
    NodeId k = gb_cast(&g, gb_cast(&g, x, NND_F32, SP), NND_F64, SP);
    NodeId y = ot_sum_all(&g, gb_binary(&g, OP_MUL, k, r, SP));
    NodeId gr;
    autodiff(&g, y, &x, 1, &gr);
    ITensor pv = ot_itensor(NND_F64, SHAPE(3), VALS(1, 2, 3));
    InterpBindings b = {.params = &pv, .nparams = 1};
    ITensor out;
    ot_run(&g, &gr, 1, &b, &out);
    ot_expect(&out, SHAPE(3), VALS((double)(float)0.1, (double)(float)(1.0 / 3), -2.5));
    itensor_free(&pv);
    graph_free(&g);
}

/* ---- elementwise, two inputs ---- */

static void test_binary(void **state)
{
    Shape shapes[] = {SHAPE(2, 3), shape_scalar(), SHAPE(3, 1)};
    OpId ops[] = {OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW, OP_MIN, OP_MAX};
    for (size_t i = 0; i < NND_ARRAY_LEN(ops); i++)
        for (size_t j = 0; j < NND_ARRAY_LEN(shapes); j++) {
            OpId op = ops[i];
            Gc c;
            gc_init(&c, op_info[op].name, next_seed());
            NodeId a, b;
            if (op == OP_POW) {
                a = gc_param(&c, shapes[j], 0.3, 2.5); /* positive base */
                b = gc_param(&c, shapes[j], -2, 2);
            } else if (op == OP_DIV) {
                a = gc_param(&c, shapes[j], -2, 2);
                b = gc_param_away0(&c, shapes[j], 0.4, 2);
            } else if (op == OP_MIN || op == OP_MAX) {
                /* b differs from a by at least 0.2 either way: no ties */
                a = gc_param(&c, shapes[j], -1, 1);
                double v[16];
                for (int64_t e = 0; e < c.pv[0].n; e++)
                    v[e] =
                        c.pv[0].v[e] + ot_uniform(&c.rng, 0.2, 1) * (ot_next(&c.rng) & 1 ? 1 : -1);
                b = gc_param_vals(&c, shapes[j], v);
            } else {
                a = gc_param(&c, shapes[j], -2, 2);
                b = gc_param(&c, shapes[j], -2, 2);
            }
            gc_check(&c, gb_binary(&c.g, op, a, b, SP));
            gc_free(&c);
        }
}

/* The same node as both operands: the two adjoints add up. */
static void test_binary_shared(void **state)
{
    OpId ops[] = {OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW, OP_MIN, OP_MAX};
    for (size_t i = 0; i < NND_ARRAY_LEN(ops); i++) {
        Gc c;
        gc_init(&c, "shared operand", next_seed());
        NodeId x = gc_param(&c, SHAPE(2, 2), 0.5, 2);
        NodeId e = gb_unary(&c.g, OP_EXP, x, SP);
        if (ops[i] == OP_MIN || ops[i] == OP_MAX)
            /* a tie on every element: the adjoint goes to a, so d/dx max(x, x) = 1 */
            gc_check(&c, gb_binary(&c.g, ops[i], x, x, SP));
        else
            gc_check(&c, gb_binary(&c.g, ops[i], gb_binary(&c.g, ops[i], x, x, SP), e, SP));
        gc_free(&c);
    }
}

/* pow by a constant exponent: 2 and 1 take special VJP paths. */
static void test_pow_const(void **state)
{
    static const double exps[] = {2, 1, 0.5, 3, -1, 0};
    for (size_t i = 0; i < NND_ARRAY_LEN(exps); i++) {
        Gc c;
        gc_init(&c, "pow const", next_seed());
        bool pos = exps[i] == 0.5 || exps[i] == -1;
        Shape s = SHAPE(2, 3);
        NodeId x = pos ? gc_param(&c, s, 0.3, 2) : gc_param_away0(&c, s, 0.3, 2);
        NodeId e = gb_full(&c.g, exps[i], NND_F64, &s, SP);
        gc_check(&c, gb_binary(&c.g, OP_POW, x, e, SP));
        gc_free(&c);
    }
    /* a scalar constant exponent */
    Gc c;
    gc_init(&c, "pow const scalar", next_seed());
    NodeId x = gc_param(&c, shape_scalar(), 0.3, 2);
    gc_check(&c, gb_binary(&c.g, OP_POW, x, gb_const(&c.g, 2, NND_F64, SP), SP));
    gc_free(&c);
}

/* ---- select ---- */

static void test_select(void **state)
{
    Gc c;
    gc_init(&c, "select literal", next_seed());
    NodeId a = gc_param(&c, SHAPE(2, 3), -2, 2), b = gc_param(&c, SHAPE(2, 3), -2, 2);
    NodeId cond = ot_tensor(&c.g, NND_BOOL, SHAPE(2, 3), VALS(1, 0, 0, 1, 1, 0));
    gc_check(&c, gb_select(&c.g, cond, a, b, SP));
    gc_free(&c);

    /* the condition computed from the operands: max written as select; the
     * comparison passes nothing */
    gc_init(&c, "select computed", next_seed());
    a = gc_param_distinct(&c, SHAPE(3, 2), -2, 0.5);
    b = gc_param(&c, SHAPE(3, 2), -0.8, 0.8);
    NodeId gt = gb_binary(&c.g, OP_GT, a, b, SP);
    gc_check(&c,
             gb_select(&c.g, gt, gb_unary(&c.g, OP_EXP, a, SP), gb_unary(&c.g, OP_SIN, b, SP), SP));
    gc_free(&c);

    /* the same node in both branches */
    gc_init(&c, "select shared", next_seed());
    a = gc_param(&c, shape_scalar(), -2, 2);
    cond = ot_tensor(&c.g, NND_BOOL, shape_scalar(), VALS(0));
    gc_check(&c, gb_select(&c.g, cond, a, gb_binary(&c.g, OP_MUL, a, a, SP), SP));
    gc_free(&c);
}

/* ---- layout ---- */

static void test_broadcast(void **state)
{
    struct {
        Shape from, to;
    } cases[] = {
        {SHAPE(3), SHAPE(2, 3)}, /* rank extension */
        {SHAPE(2, 1), SHAPE(2, 3)}, /* size-1 expansion */
        {shape_scalar(), SHAPE(2, 3)}, /* scalar */
        {SHAPE(1, 3, 1), SHAPE(2, 2, 3, 4)}, /* both at once */
        {SHAPE(1), SHAPE(4)},
        {SHAPE(2, 3), SHAPE(2, 3)}, /* to its own shape */
        {SHAPE(1, 1), SHAPE(1, 1)},
    };
    for (size_t i = 0; i < NND_ARRAY_LEN(cases); i++) {
        Gc c;
        gc_init(&c, "broadcast", next_seed());
        NodeId x = gc_param(&c, cases[i].from, -2, 2);
        Node n = {.op = OP_BROADCAST, .nin = 1, .in = {x}, .shape = cases[i].to};
        gc_check(&c, gb_node(&c.g, n));
        gc_free(&c);
    }
    /* a broadcast feeding an elementwise op with a full-size operand */
    Gc c;
    gc_init(&c, "broadcast add", next_seed());
    NodeId b = gc_param(&c, SHAPE(3), -1, 1), m = gc_param(&c, SHAPE(4, 3), -1, 1);
    gc_check(&c, gb_unary(&c.g, OP_TANH, gb_binary_bc(&c.g, OP_MUL, m, b, SP), SP));
    gc_free(&c);
}

static void test_reshape(void **state)
{
    struct {
        Shape from, to;
    } cases[] = {
        {SHAPE(2, 3), SHAPE(3, 2)}, {SHAPE(6), SHAPE(1, 2, 3, 1)}, {shape_scalar(), SHAPE(1, 1)},
        {SHAPE(1), shape_scalar()}, {SHAPE(2, 2, 2), SHAPE(8)},
    };
    for (size_t i = 0; i < NND_ARRAY_LEN(cases); i++) {
        Gc c;
        gc_init(&c, "reshape", next_seed());
        NodeId x = gc_param(&c, cases[i].from, -2, 2);
        Node n = {.op = OP_RESHAPE, .nin = 1, .in = {x}, .shape = cases[i].to};
        gc_check(&c, gb_unary(&c.g, OP_SIN, gb_node(&c.g, n), SP));
        gc_free(&c);
    }
}

static void test_transpose(void **state)
{
    struct {
        Shape s;
        int perm[4];
    } cases[] = {
        {SHAPE(2, 3), {1, 0}},       {SHAPE(2, 3, 4), {2, 0, 1}},       {SHAPE(2, 3, 4), {1, 2, 0}},
        {SHAPE(2, 3, 4), {0, 2, 1}}, {SHAPE(2, 1, 3, 2), {3, 1, 0, 2}}, {SHAPE(3), {0}},
    };
    for (size_t i = 0; i < NND_ARRAY_LEN(cases); i++) {
        Gc c;
        gc_init(&c, "transpose", next_seed());
        NodeId x = gc_param(&c, cases[i].s, -2, 2);
        gc_check(&c, gb_transpose(&c.g, x, cases[i].perm, SP));
        gc_free(&c);
    }
}

static void test_slice_pad(void **state)
{
    struct {
        Shape full, part;
        int64_t start[3], step[3];
    } cases[] = {
        {SHAPE(5, 4), SHAPE(2, 2), {1, 0}, {2, 3}},
        {SHAPE(6), SHAPE(3), {1}, {2}},
        {SHAPE(6), SHAPE(6), {0}, {1}},
        {SHAPE(3, 4, 5), SHAPE(2, 1, 2), {1, 3, 0}, {1, 1, 4}},
        {SHAPE(4, 3), SHAPE(0, 3), {0, 0}, {1, 1}}, /* empty */
        {SHAPE(7), SHAPE(1), {6}, {5}},
    };
    for (size_t i = 0; i < NND_ARRAY_LEN(cases); i++) {
        Gc c;
        gc_init(&c, "slice", next_seed());
        NodeId x = gc_param(&c, cases[i].full, -2, 2);
        gc_check(&c, ot_slice(&c.g, x, cases[i].start, cases[i].step, cases[i].part));
        gc_free(&c);
        gc_init(&c, "pad", next_seed());
        x = gc_param(&c, cases[i].part, -2, 2);
        gc_check(&c, ot_pad(&c.g, x, cases[i].start, cases[i].step, cases[i].full));
        gc_free(&c);
    }
}

/* ---- reductions ---- */

static void test_reduce(void **state)
{
    OpId ops[] = {OP_SUM, OP_MEAN, OP_RMAX, OP_LOGSUMEXP};
    uint32_t masks[] = {0x2, 0x5, 0x7, 0x1, 0x0};
    for (size_t i = 0; i < NND_ARRAY_LEN(ops); i++)
        for (size_t j = 0; j < NND_ARRAY_LEN(masks); j++)
            for (int keep = 0; keep < 2; keep++) {
                Gc c;
                gc_init(&c, op_info[ops[i]].name, next_seed());
                Shape s = SHAPE(2, 3, 4);
                NodeId x =
                    ops[i] == OP_RMAX ? gc_param_distinct(&c, s, -3, 0.25) : gc_param(&c, s, -2, 2);
                gc_check(&c, gb_reduce(&c.g, ops[i], x, masks[j], keep, SP));
                gc_free(&c);
            }
}

/* Reductions of rank 0 and over size-1 axes. */
static void test_reduce_small(void **state)
{
    OpId ops[] = {OP_SUM, OP_MEAN, OP_RMAX, OP_LOGSUMEXP};
    for (size_t i = 0; i < NND_ARRAY_LEN(ops); i++) {
        Gc c;
        gc_init(&c, "reduce rank 0", next_seed());
        NodeId x = gc_param(&c, shape_scalar(), -2, 2);
        gc_check(&c, gb_reduce(&c.g, ops[i], x, 0, false, SP));
        gc_free(&c);
        for (int keep = 0; keep < 2; keep++) {
            gc_init(&c, "reduce size-1 axis", next_seed());
            x = gc_param_distinct(&c, SHAPE(3, 1), -1, 0.5);
            gc_check(&c, gb_reduce(&c.g, ops[i], x, 0x2, keep, SP));
            gc_free(&c);
            gc_init(&c, "reduce over a size-1 and a full axis", next_seed());
            x = gc_param_distinct(&c, SHAPE(1, 4), -1, 0.5);
            gc_check(&c, gb_reduce(&c.g, ops[i], x, 0x3, keep, SP));
            gc_free(&c);
        }
    }
}

/* Mean and sum over a symbolic batch dimension: the count is a DIMSIZE at run time. */
static void test_reduce_symbolic(void **state)
{
    OpId ops[] = {OP_MEAN, OP_SUM, OP_LOGSUMEXP};
    uint32_t masks[] = {0x1, 0x3, 0x2};
    for (size_t i = 0; i < NND_ARRAY_LEN(ops); i++)
        for (size_t j = 0; j < NND_ARRAY_LEN(masks); j++)
            for (int keep = 0; keep < 2; keep++) {
                Gc c;
                gc_init(&c, "reduce symbolic", next_seed());
                int64_t B = gc_sym(&c, "B", 4);
                NodeId x = gc_param(&c, SHAPE(B, 3), -2, 2);
                NodeId r = gb_reduce(&c.g, ops[i], x, masks[j], keep, SP);
                gc_check(&c, gb_unary(&c.g, OP_SIN, r, SP));
                gc_free(&c);
            }
}

/* logsumexp over values of large magnitude: no overflow, exact softmax weights. */
static void test_logsumexp_large(void **state)
{
    static const double mixed[] = {1000, 0, -1000, 999.5, -3, 1000.25, 2, 1, 500};
    Gc c;
    gc_init(&c, "logsumexp large", next_seed());
    NodeId x = gc_param(&c, SHAPE(3, 4), 997, 1003);
    gc_check(&c, gb_reduce(&c.g, OP_LOGSUMEXP, x, 0x2, false, SP));
    gc_free(&c);
    gc_init(&c, "logsumexp large negative", next_seed());
    x = gc_param(&c, SHAPE(3, 4), -1003, -997);
    gc_check(&c, gb_reduce(&c.g, OP_LOGSUMEXP, x, 0x3, true, SP));
    gc_free(&c);
    gc_init(&c, "logsumexp mixed", next_seed());
    x = gc_param_vals(&c, SHAPE(3, 3), mixed);
    gc_check(&c, gb_reduce(&c.g, OP_LOGSUMEXP, x, 0x2, true, SP));
    gc_free(&c);
}

/* At ties, where finite differences say nothing, the subgradients are the
 * documented ones: max_reduce shares dy equally among the maxima, min and max give
 * all of it to a. */
static void test_tie_rules(void **state)
{
    Graph g;
    graph_init(&g);
    NodeId x = ot_param(&g, 0, NND_F64, SHAPE(2, 3));
    NodeId a = ot_param(&g, 1, NND_F64, SHAPE(3)), b = ot_param(&g, 2, NND_F64, SHAPE(3));
    NodeId m = gb_reduce(&g, OP_RMAX, x, 0x2, false, SP);
    NodeId w = ot_tensor(&g, NND_F64, SHAPE(2), VALS(1, 6));
    NodeId y1 = ot_sum_all(&g, gb_binary(&g, OP_MUL, m, w, SP));
    NodeId lo = gb_binary(&g, OP_MIN, a, b, SP), hi = gb_binary(&g, OP_MAX, a, b, SP);
    NodeId k = ot_tensor(&g, NND_F64, SHAPE(3), VALS(10, 100, 1000));
    NodeId y2 = ot_sum_all(&g, gb_binary(&g, OP_ADD, lo, gb_binary(&g, OP_MUL, hi, k, SP), SP));
    NodeId gx, gab[2];
    autodiff(&g, y1, &x, 1, &gx);
    autodiff(&g, y2, (NodeId[]){a, b}, 2, gab);
    ITensor pv[3] = {ot_itensor(NND_F64, SHAPE(2, 3), VALS(1, 3, 3, 5, 5, 5)),
                     ot_itensor(NND_F64, SHAPE(3), VALS(1, 2, 3)),
                     ot_itensor(NND_F64, SHAPE(3), VALS(1, 0, 4))};
    InterpBindings bind = {.params = pv, .nparams = 3};
    ITensor out[3];
    ot_run(&g, (NodeId[]){gx, gab[0], gab[1]}, 3, &bind, out);
    ot_expect(&out[0], SHAPE(2, 3), VALS(0, 0.5, 0.5, 2, 2, 2));
    /* element 0 ties (both to a), 1: b is the min, 2: a is the min */
    ot_expect(&out[1], SHAPE(3), VALS(1 + 10, 100, 1));
    ot_expect(&out[2], SHAPE(3), VALS(0, 1, 1000));
    for (int i = 0; i < 3; i++)
        itensor_free(&pv[i]);
    graph_free(&g);
}

/* ---- indexing ---- */

static void test_pick(void **state)
{
    Gc c;
    gc_init(&c, "pick", next_seed());
    NodeId x = gc_param(&c, SHAPE(3, 4), -2, 2);
    NodeId l = ot_tensor(&c.g, NND_I32, SHAPE(3), VALS(2, 0, 3));
    gc_check(&c, ot_pick(&c.g, x, l));
    gc_free(&c);

    gc_init(&c, "pick batched", next_seed());
    x = gc_param(&c, SHAPE(2, 3, 4), -2, 2);
    l = ot_tensor(&c.g, NND_I32, SHAPE(2, 3), VALS(0, 1, 3, 3, 3, 2));
    gc_check(&c, gb_unary(&c.g, OP_EXP, ot_pick(&c.g, x, l), SP));
    gc_free(&c);

    gc_init(&c, "pick rank 1", next_seed());
    x = gc_param(&c, SHAPE(5), -2, 2);
    l = ot_tensor(&c.g, NND_I32, shape_scalar(), VALS(4));
    gc_check(&c, ot_pick(&c.g, x, l));
    gc_free(&c);
}

/* Softmax cross-entropy as the stdlib writes it: mean(lse(x @ W + b) - pick(...)). */
static void test_cross_entropy(void **state)
{
    Gc c;
    gc_init(&c, "cross entropy", next_seed());
    Graph *g = &c.g;
    int64_t B = gc_sym(&c, "B", 3);
    NodeId w = gc_param(&c, SHAPE(4, 5), -1, 1), bias = gc_param(&c, SHAPE(5), -1, 1);
    NodeId xin = gc_param(&c, SHAPE(B, 4), -1, 1);
    NodeId l = ot_leaf(g, OP_INPUT, 0, NND_I32, SHAPE(B));
    c.iv[c.nin++] = ot_itensor(NND_I32, SHAPE(3), VALS(4, 0, 2));
    NodeId logits = gb_binary_bc(g, OP_ADD, gb_matmul(g, xin, w, false, false, SP), bias, SP);
    NodeId lse = gb_reduce(g, OP_LOGSUMEXP, logits, 0x2, false, SP);
    NodeId loss = gb_binary(g, OP_SUB, lse, ot_pick(g, logits, l), SP);
    gc_check(&c, gb_reduce(g, OP_MEAN, loss, 0x1, false, SP));
    gc_free(&c);
}

/* ---- matmul ---- */

/* The stored shape of an operand of logical shape [.., r, c]. */
static Shape stored(Shape s, bool t)
{
    if (t) {
        int64_t x = s.d[s.rank - 1];
        s.d[s.rank - 1] = s.d[s.rank - 2];
        s.d[s.rank - 2] = x;
    }
    return s;
}

static void test_matmul(void **state)
{
    struct {
        Shape a, b; /* logical shapes */
    } cases[] = {
        {SHAPE(3, 4), SHAPE(4, 2)},
        {SHAPE(2, 3, 4), SHAPE(2, 4, 5)},
        {SHAPE(2, 1, 2, 3), SHAPE(2, 1, 3, 2)},
        {SHAPE(1, 1), SHAPE(1, 3)},
    };
    for (size_t i = 0; i < NND_ARRAY_LEN(cases); i++)
        for (int t = 0; t < 4; t++) {
            bool ta = t & 1, tb = t & 2;
            Gc c;
            gc_init(&c, ta ? (tb ? "matmul ta tb" : "matmul ta") : (tb ? "matmul tb" : "matmul"),
                    next_seed());
            NodeId a = gc_param(&c, stored(cases[i].a, ta), -1, 1);
            NodeId b = gc_param(&c, stored(cases[i].b, tb), -1, 1);
            gc_check(&c, gb_matmul(&c.g, a, b, ta, tb, SP));
            gc_free(&c);
        }
    /* folded, a sequence through a matrix: [2, 3, 4] @ [4, 5] (and [5, 4]^T) */
    for (int tb = 0; tb < 2; tb++) {
        Gc c;
        gc_init(&c, tb ? "matmul folded tb" : "matmul folded", next_seed());
        NodeId a = gc_param(&c, SHAPE(2, 3, 4), -1, 1);
        NodeId b = gc_param(&c, stored(SHAPE(4, 5), tb), -1, 1);
        gc_check(&c, gb_matmul(&c.g, a, b, false, tb, SP));
        gc_free(&c);
    }
    /* summed over the leading axes: [2, 2, 3, 4]^T @ [2, 2, 3, 5] = [4, 5] */
    {
        Gc c;
        gc_init(&c, "matmul summed", next_seed());
        NodeId a = gc_param(&c, SHAPE(2, 2, 3, 4), -1, 1);
        NodeId b = gc_param(&c, SHAPE(2, 2, 3, 5), -1, 1);
        gc_check(&c, gb_matmul_summed(&c.g, a, b, SP));
        gc_free(&c);
    }
    /* one operand twice: x @ x^T and x^T @ x */
    for (int t = 0; t < 2; t++) {
        Gc c;
        gc_init(&c, "matmul shared", next_seed());
        NodeId x = gc_param(&c, SHAPE(3, 2), -1, 1);
        gc_check(&c, gb_matmul(&c.g, x, x, t, !t, SP));
        gc_free(&c);
    }
}

/* ---- ops that pass no gradient ---- */

static void test_compare_nograd(void **state)
{
    OpId ops[] = {OP_LT, OP_LE, OP_GT, OP_GE, OP_EQ, OP_NE};
    for (size_t i = 0; i < NND_ARRAY_LEN(ops); i++) {
        Gc c;
        gc_init(&c, op_info[ops[i]].name, next_seed());
        NodeId a = gc_param(&c, SHAPE(2, 3), -1, 1), b = gc_param(&c, SHAPE(2, 3), -1, 1);
        gc_expect_none(&c, gb_binary(&c.g, ops[i], a, b, SP), ops[i]);
        gc_free(&c);
    }
}

static void test_logic_nograd(void **state)
{
    Gc c;
    gc_init(&c, "not", next_seed());
    NodeId a = gc_param(&c, SHAPE(4), -1, 1);
    NodeId zero = gb_full(&c.g, 0, NND_F64, &(Shape){1, {4}}, SP);
    NodeId pos = gb_binary(&c.g, OP_GT, a, zero, SP);
    gc_expect_none(&c, gb_unary(&c.g, OP_NOT, pos, SP), OP_NOT);
    gc_free(&c);
    OpId ops[] = {OP_AND, OP_OR};
    for (size_t i = 0; i < NND_ARRAY_LEN(ops); i++) {
        gc_init(&c, op_info[ops[i]].name, next_seed());
        a = gc_param(&c, SHAPE(4), -1, 1);
        NodeId b = gc_param(&c, SHAPE(4), -1, 1);
        NodeId p = gb_binary(&c.g, OP_LT, a, b, SP), q = gb_binary(&c.g, OP_NE, b, a, SP);
        gc_expect_none(&c, gb_binary(&c.g, ops[i], p, q, SP), ops[i]);
        gc_free(&c);
    }
}

static void test_index_nograd(void **state)
{
    Gc c;
    gc_init(&c, "argmax", next_seed());
    NodeId x = gc_param_distinct(&c, SHAPE(3, 4), -1, 0.3);
    gc_expect_none(&c, ot_argmax(&c.g, x, 1, false), OP_ARGMAX);
    gc_free(&c);

    /* labels computed from a parameter: floor, cast to i32, one_hot */
    gc_init(&c, "one_hot", next_seed());
    x = gc_param(&c, SHAPE(2, 3), 0.1, 2.9);
    NodeId l = gb_cast(&c.g, gb_unary(&c.g, OP_FLOOR, x, SP), NND_I32, SP);
    gc_expect_none(&c, ot_one_hot(&c.g, l, 3, NND_F64), OP_ONE_HOT);
    gc_free(&c);

    /* pick gives nothing to its labels even when they come from a parameter */
    gc_init(&c, "pick labels", next_seed());
    x = gc_param(&c, SHAPE(3, 4), -1, 1);
    NodeId lp = gc_param(&c, SHAPE(3), 0.1, 3.9);
    l = gb_cast(&c.g, lp, NND_I32, SP);
    NodeId y = gc_objective(&c, ot_pick(&c.g, x, l));
    NodeId gr[2];
    autodiff(&c.g, y, c.p, 2, gr);
    double v;
    assert_false(graph_is_const(&c.g, gr[0], &v));
    assert_true(graph_is_const(&c.g, gr[1], &v) && v == 0);
    gc_free(&c);
}

/* Random sources: their bounds get no gradient (they are not reparameterised); the
 * values multiplied into a parameter are fixed, so that parameter checks. */
static void test_rand_nograd(void **state)
{
    OpId ops[] = {OP_RANDU, OP_RANDN};
    for (size_t i = 0; i < NND_ARRAY_LEN(ops); i++) {
        Gc c;
        gc_init(&c, op_info[ops[i]].name, next_seed());
        NodeId lo = gc_param(&c, shape_scalar(), -1, 0), hi = gc_param(&c, shape_scalar(), 1, 2);
        gc_expect_none(&c, ot_rand(&c.g, ops[i], lo, hi, 7 + i, NND_F64, SHAPE(2, 3)), ops[i]);
        gc_free(&c);

        gc_init(&c, op_info[ops[i]].name, next_seed());
        NodeId x = gc_param(&c, SHAPE(2, 3), -1, 1);
        NodeId r = ot_rand(&c.g, ops[i], gb_const(&c.g, 0, NND_F64, SP),
                           gb_const(&c.g, 1, NND_F64, SP), 9 + i, NND_F64, SHAPE(2, 3));
        gc_check(&c, gb_binary(&c.g, OP_MUL, x, r, SP));
        gc_free(&c);
    }
}

static void test_dimsize_nograd(void **state)
{
    Gc c;
    gc_init(&c, "dimsize", next_seed());
    int64_t B = gc_sym(&c, "B", 3);
    NodeId x = gc_param(&c, SHAPE(B, 2), -1, 1);
    gc_expect_none(&c, ot_dimsize(&c.g, x, 0x3, NND_F64), OP_DIMSIZE);
    gc_free(&c);
    /* in a graph: x * size(x) differentiates to size(x) */
    gc_init(&c, "dimsize in a product", next_seed());
    B = gc_sym(&c, "B", 3);
    x = gc_param(&c, SHAPE(B, 2), -1, 1);
    NodeId n = ot_dimsize(&c.g, x, 0x1, NND_F64);
    gc_check(&c, gb_binary_bc(&c.g, OP_MUL, x, n, SP));
    gc_free(&c);
}

/* Leaves have no inputs: autodiff can still differentiate with respect to any of
 * them, and gives a leaf y does not use a zero. */
static void test_leaves(void **state)
{
    Gc c;
    gc_init(&c, "leaves", next_seed());
    Graph *g = &c.g;
    Shape s = SHAPE(2, 2);
    NodeId p = gc_param_vals(&c, s, (const double[]){1, 2, 3, 4});
    NodeId unused = gc_param_vals(&c, s, (const double[]){5, 6, 7, 8});
    NodeId st = ot_leaf(g, OP_STATE, 0, NND_F64, s);
    c.sv[c.nst++] = ot_itensor(NND_F64, s, VALS(0.5, -1, 2, 0.25));
    NodeId in = ot_leaf(g, OP_INPUT, 0, NND_F64, s);
    c.iv[c.nin++] = ot_itensor(NND_F64, s, VALS(3, 1, -2, 1));
    NodeId hy = ot_leaf(g, OP_HYPER, 0, NND_F64, shape_scalar());
    c.hypers[c.nhyp++] = 0.5;
    NodeId t = ot_tensor(g, NND_F64, s, VALS(1, -1, 2, 4));
    NodeId k = gb_const(g, 3, NND_F64, SP);
    NodeId prod =
        gb_binary(g, OP_MUL, gb_binary(g, OP_MUL, p, st, SP), gb_binary(g, OP_MUL, in, t, SP), SP);
    prod = gb_binary_bc(g, OP_MUL, gb_binary_bc(g, OP_MUL, prod, hy, SP), k, SP);
    NodeId y = ot_sum_all(g, prod);
    NodeId wrt[7] = {p, st, in, t, hy, k, unused}, gr[7];
    autodiff(g, y, wrt, 7, gr);
    double v;
    assert_true(graph_is_const(g, gr[6], &v) && v == 0);
    InterpBindings b = gc_bindings(&c);
    ITensor out[7];
    ot_run(g, gr, 7, &b, out);
    /* p * st * in * t = [1.5, 2, -24, 4]; each gradient is the others' product * 1.5 */
    ot_expect(&out[0], s,
              VALS(0.5 * 3 * 1 * 1.5, -1 * 1 * -1 * 1.5, 2 * -2 * 2 * 1.5, 0.25 * 1 * 4 * 1.5));
    ot_expect(&out[1], s,
              VALS(1 * 3 * 1 * 1.5, 2 * 1 * -1 * 1.5, 3 * -2 * 2 * 1.5, 4 * 1 * 4 * 1.5));
    ot_expect(&out[2], s,
              VALS(1 * 0.5 * 1 * 1.5, 2 * -1 * -1 * 1.5, 3 * 2 * 2 * 1.5, 4 * 0.25 * 4 * 1.5));
    ot_expect(&out[3], s,
              VALS(1 * 0.5 * 3 * 1.5, 2 * -1 * 1 * 1.5, 3 * 2 * -2 * 1.5, 4 * 0.25 * 1 * 1.5));
    ot_expect(&out[4], shape_scalar(), VALS((1.5 + 2 - 24 + 4) * 3));
    ot_expect(&out[5], shape_scalar(), VALS((1.5 + 2 - 24 + 4) * 0.5));
    ot_expect(&out[6], s, VALS(0, 0, 0, 0));
    OpId leaves[] = {OP_CONST, OP_TENSOR, OP_PARAM, OP_STATE, OP_INPUT, OP_HYPER};
    for (size_t i = 0; i < NND_ARRAY_LEN(leaves); i++) {
        assert_int_equal(op_info[leaves[i]].arity, 0);
        seen_nograd[leaves[i]] = true;
    }
    gc_free(&c);
}

/* ---- concat, take, scatter-add ---- */

static void test_concat(void **state)
{
    struct {
        Shape a, b;
        int axis;
    } cases[] = {
        {SHAPE(2, 3), SHAPE(4, 3), 0},
        {SHAPE(2, 3), SHAPE(2, 1), 1},
        {SHAPE(2, 3, 2), SHAPE(2, 1, 2), 1},
        {SHAPE(1, 2, 2), SHAPE(1, 2, 3), 2},
        {SHAPE(3), SHAPE(2), 0},
        {SHAPE(2, 2, 3), SHAPE(1, 2, 3), 0},
        {SHAPE(0, 3), SHAPE(2, 3), 0}, /* an empty part */
    };
    for (size_t i = 0; i < NND_ARRAY_LEN(cases); i++) {
        Gc c;
        gc_init(&c, "concat", next_seed());
        NodeId a = gc_param(&c, cases[i].a, -2, 2), b = gc_param(&c, cases[i].b, -2, 2);
        gc_check(&c, ot_concat(&c.g, a, b, cases[i].axis));
        gc_free(&c);
    }
    /* one operand twice: both slices of the adjoint go back to it */
    Gc c;
    gc_init(&c, "concat shared", next_seed());
    NodeId x = gc_param(&c, SHAPE(2, 3), -2, 2);
    gc_check(&c, ot_concat(&c.g, x, gb_unary(&c.g, OP_SIN, x, SP), 1));
    gc_free(&c);
    gc_init(&c, "concat with itself", next_seed());
    x = gc_param(&c, SHAPE(2, 3), -2, 2);
    gc_check(&c, ot_concat(&c.g, x, x, 0));
    gc_free(&c);
    /* next to a symbolic batch dimension */
    gc_init(&c, "concat symbolic", next_seed());
    int64_t B = gc_sym(&c, "B", 3);
    NodeId a = gc_param(&c, SHAPE(B, 2), -2, 2), b = gc_param(&c, SHAPE(B, 3), -2, 2);
    gc_check(&c, gb_unary(&c.g, OP_TANH, ot_concat(&c.g, a, b, 1), SP));
    gc_free(&c);
}

/* The table's gradient adds the rows' adjoints at their indices: repeated indices
 * accumulate, rows never taken get zero. */
static void test_take(void **state)
{
    struct {
        Shape table, idx;
        double iv[8];
    } cases[] = {
        {SHAPE(5, 3), SHAPE(4), {1, 3, 1, 1}},
        {SHAPE(5), SHAPE(2, 3), {4, 0, 4, 2, 2, 2}},
        {SHAPE(4, 2, 2), shape_scalar(), {3}},
        {SHAPE(3, 2), SHAPE(6), {0, 0, 0, 0, 0, 0}},
    };
    for (size_t i = 0; i < NND_ARRAY_LEN(cases); i++) {
        Gc c;
        gc_init(&c, "take", next_seed());
        NodeId t = gc_param(&c, cases[i].table, -2, 2);
        int n = (int)shape_static_numel(&cases[i].idx, NULL);
        NodeId l = ot_tensor(&c.g, NND_I32, cases[i].idx, cases[i].iv, n);
        gc_check(&c, ot_take(&c.g, t, l));
        gc_free(&c);
    }
    /* no indices (bound at run time): the table's gradient is zero */
    Gc c;
    gc_init(&c, "take nothing", next_seed());
    NodeId t = gc_param(&c, SHAPE(3, 2), -2, 2);
    NodeId none = ot_leaf(&c.g, OP_INPUT, c.nin, NND_I32, SHAPE(0));
    c.iv[c.nin++] = itensor_new(NND_I32, 1, (int64_t[]){0});
    gc_check(&c, ot_take(&c.g, t, none));
    gc_free(&c);
    /* an embedding lookup inside a nonlinearity */
    gc_init(&c, "take chain", next_seed());
    t = gc_param(&c, SHAPE(4, 3), -1, 1);
    NodeId l = ot_tensor(&c.g, NND_I32, SHAPE(2, 2), VALS(3, 0, 3, 3));
    gc_check(&c, gb_unary(&c.g, OP_TANH, ot_take(&c.g, gb_unary(&c.g, OP_EXP, t, SP), l), SP));
    gc_free(&c);
    /* indices computed from a parameter get no gradient */
    gc_init(&c, "take indices", next_seed());
    t = gc_param(&c, SHAPE(4, 3), -1, 1);
    NodeId lp = gc_param(&c, SHAPE(5), 0.1, 3.9);
    l = gb_cast(&c.g, gb_unary(&c.g, OP_FLOOR, lp, SP), NND_I32, SP);
    NodeId y = gc_objective(&c, ot_take(&c.g, t, l));
    NodeId gr[2];
    autodiff(&c.g, y, c.p, 2, gr);
    double v;
    assert_false(graph_is_const(&c.g, gr[0], &v));
    assert_true(graph_is_const(&c.g, gr[1], &v) && v == 0);
    gc_free(&c);
}

static void test_scatter_add(void **state)
{
    struct {
        Shape idx, src;
        int rows;
        double iv[8];
    } cases[] = {
        {SHAPE(4), SHAPE(4, 3), 5, {2, 0, 2, 2}},
        {SHAPE(2, 2), SHAPE(2, 2, 2), 3, {1, 1, 0, 1}},
        {SHAPE(5), SHAPE(5), 3, {2, 2, 0, 1, 2}},
        {shape_scalar(), SHAPE(2, 2), 4, {3}},
    };
    for (size_t i = 0; i < NND_ARRAY_LEN(cases); i++) {
        Gc c;
        gc_init(&c, "scatter_add", next_seed());
        int n = (int)shape_static_numel(&cases[i].idx, NULL);
        NodeId l = ot_tensor(&c.g, NND_I32, cases[i].idx, cases[i].iv, n);
        NodeId s = gc_param(&c, cases[i].src, -2, 2);
        gc_check(&c, ot_scatter(&c.g, l, s, cases[i].rows));
        gc_free(&c);
    }
    /* take then scatter back: a linear map of the table onto itself */
    Gc c;
    gc_init(&c, "take scatter", next_seed());
    NodeId t = gc_param(&c, SHAPE(4, 2), -2, 2);
    NodeId l = ot_tensor(&c.g, NND_I32, SHAPE(5), VALS(3, 1, 3, 0, 3));
    NodeId s = ot_scatter(&c.g, l, gb_unary(&c.g, OP_SIN, ot_take(&c.g, t, l), SP), 4);
    gc_check(&c, gb_binary(&c.g, OP_MUL, s, t, SP));
    gc_free(&c);
}

/* ---- convolution ---- */

static Shape conv_y_shape(Gc *c, Shape xs, Shape ws, const int64_t *a)
{
    ConvAttrs at = {a[0], a[1], a[2], a[3], a[4], a[5], a[6]};
    Shape y;
    char err[256];
    if (!conv_out_shape(&c->g, &xs, &ws, &at, &y, err, sizeof err))
        fail_msg("%s: %s", c->name, err);
    return y;
}

/* conv2d and its two adjoint ops, each differentiated with respect to both inputs. */
static void test_conv2d(void **state)
{
    for (size_t i = 0; i < ot_nconv_cases; i++) {
        const OtConvCase *k = &ot_conv_cases[i];
        Shape xs = ot_conv_x_shape(k), ws = ot_conv_w_shape(k);
        Gc c;
        gc_init(&c, k->name, next_seed());
        NodeId x = gc_param(&c, xs, -1, 1), w = gc_param(&c, ws, -1, 1);
        gc_check(&c, ot_conv(&c.g, OP_CONV2D, x, w, k->a, shape_scalar()));
        gc_free(&c);

        gc_init(&c, k->name, next_seed());
        Shape ys = conv_y_shape(&c, xs, ws, k->a);
        NodeId dy = gc_param(&c, ys, -1, 1);
        w = gc_param(&c, ws, -1, 1);
        gc_check(&c, ot_conv(&c.g, OP_CONV2D_GX, dy, w, k->a, xs));
        gc_free(&c);

        gc_init(&c, k->name, next_seed());
        x = gc_param(&c, xs, -1, 1);
        dy = gc_param(&c, ys, -1, 1);
        gc_check(&c, ot_conv(&c.g, OP_CONV2D_GW, x, dy, k->a, ws));
        gc_free(&c);
    }
    /* a symbolic batch; one tensor as both image and kernel */
    Gc c;
    gc_init(&c, "conv2d symbolic batch", next_seed());
    int64_t B = gc_sym(&c, "B", 2);
    const int64_t a[7] = {1, 2, 1, 0, 1, 1, 1};
    NodeId x = gc_param(&c, SHAPE(B, 2, 4, 4), -1, 1), w = gc_param(&c, SHAPE(3, 2, 3, 2), -1, 1);
    gc_check(&c, gb_unary(&c.g, OP_TANH, ot_conv(&c.g, OP_CONV2D, x, w, a, shape_scalar()), SP));
    gc_free(&c);
    gc_init(&c, "conv2d shared operand", next_seed());
    const int64_t one[7] = {1, 1, 1, 1, 1, 1, 1};
    x = gc_param(&c, SHAPE(1, 1, 3, 3), -1, 1);
    gc_check(&c, ot_conv(&c.g, OP_CONV2D, x, x, one, shape_scalar()));
    gc_free(&c);
}

/* ---- pooling ---- */

static Shape pool_y_shape(Gc *c, Shape xs, const int64_t *a)
{
    PoolAttrs at = {a[0], a[1], a[2], a[3], a[4], a[5]};
    Shape y;
    char err[256];
    if (!pool_out_shape(&c->g, &xs, &at, &y, err, sizeof err))
        fail_msg("%s: %s", c->name, err);
    return y;
}

/* Max pooling with distinct values (at least 0.1 apart, all negative so padding
 * would win if it counted): the perturbations never move a maximum. */
static void test_pool(void **state)
{
    for (size_t i = 0; i < ot_npool_cases; i++) {
        const OtPoolCase *k = &ot_pool_cases[i];
        Shape xs = ot_pool_x_shape(k);
        Gc c;
        /* max_pool2d(x) = maxpool_gather(x, x) */
        gc_init(&c, k->name, next_seed());
        NodeId x = gc_param_distinct(&c, xs, -30, 0.1);
        gc_check(&c, ot_pool(&c.g, OP_POOLMAX, x, x, k->a, shape_scalar()));
        gc_free(&c);
        /* x only chooses: its gradient is zero, v's is routed */
        gc_init(&c, k->name, next_seed());
        x = gc_param_distinct(&c, xs, -3, 0.1);
        NodeId v = gc_param(&c, xs, -1, 1);
        gc_check(&c, ot_pool(&c.g, OP_POOLMAX, x, v, k->a, shape_scalar()));
        gc_free(&c);

        gc_init(&c, k->name, next_seed());
        Shape ys = pool_y_shape(&c, xs, k->a);
        x = gc_param_distinct(&c, xs, -3, 0.1);
        NodeId d = gc_param(&c, ys, -1, 1);
        gc_check(&c, ot_pool(&c.g, OP_POOLMAX_T, x, d, k->a, shape_scalar()));
        gc_free(&c);

        gc_init(&c, k->name, next_seed());
        x = gc_param(&c, xs, -1, 1);
        gc_check(&c, ot_pool(&c.g, OP_POOLAVG, x, 0, k->a, shape_scalar()));
        gc_free(&c);

        gc_init(&c, k->name, next_seed());
        d = gc_param(&c, ys, -1, 1);
        gc_check(&c, ot_pool(&c.g, OP_POOLAVG_T, d, 0, k->a, xs));
        gc_free(&c);
    }
    Gc c;
    gc_init(&c, "pool symbolic batch", next_seed());
    int64_t B = gc_sym(&c, "B", 2);
    const int64_t a[6] = {2, 2, 2, 2, 1, 1};
    NodeId x = gc_param_distinct(&c, SHAPE(B, 1, 3, 4), -2, 0.1);
    NodeId m = ot_pool(&c.g, OP_POOLMAX, x, x, a, shape_scalar());
    gc_check(&c,
             gb_binary(&c.g, OP_ADD, m, ot_pool(&c.g, OP_POOLAVG, x, 0, a, shape_scalar()), SP));
    gc_free(&c);
}

/* ---- custom gradients ---- */

typedef enum CustomMode {
    CUSTOM_COS, /* in[1]: dy cos(in[1]), the true gradient of sin(in[1]) */
    CUSTOM_TIMES3 /* in[1]: 3 dy; in[2]: dy in[2] */
} CustomMode;

typedef struct CustomCtx {
    CustomMode mode;
    int calls;
} CustomCtx;

static void custom_vjp_fn(void *ctx, Graph *g, NodeId n, NodeId dy, NodeId *dx)
{
    CustomCtx *cc = ctx;
    cc->calls++;
    NodeId a = graph_node(g, n)->in[1];
    int nin = graph_node(g, n)->nin;
    if (cc->mode == CUSTOM_COS) {
        dx[0] = gb_binary(g, OP_MUL, dy, gb_unary(g, OP_COS, a, SP), SP);
        return;
    }
    dx[0] = gb_binary_bc(g, OP_MUL, dy, gb_const(g, 3, NND_F64, SP), SP);
    if (nin == 3)
        dx[1] = gb_binary(g, OP_MUL, dy, graph_node(g, n)->in[2], SP);
}

static void gc_custom(Gc *c, CustomCtx *cc, CustomMode mode)
{
    *cc = (CustomCtx){mode, 0};
    c->g.custom_vjp = custom_vjp_fn;
    c->g.custom_ctx = cc;
}

/* The gradient of a CUSTOM node's inputs 1 and 2 is the callback's; input 0, its
 * value, passes none (else the true gradient here would be counted twice). */
static void test_custom(void **state)
{
    CustomCtx cc;
    Gc c;
    gc_init(&c, "custom", next_seed());
    gc_custom(&c, &cc, CUSTOM_COS);
    NodeId a = gc_param(&c, SHAPE(2, 3), -2, 2);
    gc_check(&c, ot_custom(&c.g, gb_unary(&c.g, OP_SIN, a, SP), a, 0, 0));
    assert_int_equal(cc.calls, 1);
    gc_free(&c);

    /* a gradient that is not the derivative: autodiff takes it as given */
    gc_init(&c, "custom times 3", next_seed());
    gc_custom(&c, &cc, CUSTOM_TIMES3);
    Graph *g = &c.g;
    Shape s = SHAPE(2, 2);
    a = gc_param_vals(&c, s, (const double[]){1, -2, 0.5, 4});
    NodeId b = gc_param_vals(&c, s, (const double[]){3, 0.25, -1, 2});
    NodeId r = ot_tensor(g, NND_F64, s, VALS(1, 2, -1, 0.5));
    NodeId cu = ot_custom(g, gb_binary(g, OP_MUL, a, b, SP), a, b, 0);
    NodeId y = ot_sum_all(g, gb_binary(g, OP_MUL, cu, r, SP));
    NodeId gr[2];
    autodiff(g, y, c.p, 2, gr);
    assert_int_equal(cc.calls, 1);
    InterpBindings bind = gc_bindings(&c);
    ITensor out[3];
    ot_run(g, (NodeId[]){gr[0], gr[1], cu}, 3, &bind, out);
    ot_expect(&out[0], s, VALS(3, 6, -3, 1.5));
    ot_expect(&out[1], s, VALS(3, 0.5, 1, 1));
    ot_expect(&out[2], s, VALS(3, -0.5, -0.5, 8)); /* the value is in[0]'s */
    /* only b wanted: its gradient alone */
    NodeId gb;
    autodiff(g, y, &b, 1, &gb);
    assert_int_equal(cc.calls, 2);
    ot_run(g, &gb, 1, &bind, out);
    ot_expect(&out[0], s, VALS(3, 0.5, 1, 1));
    gc_free(&c);

    /* a parameter reaching the node only through in[0] gets no gradient */
    gc_init(&c, "custom value only", next_seed());
    gc_custom(&c, &cc, CUSTOM_TIMES3);
    g = &c.g;
    NodeId p = gc_param(&c, s, -1, 1), q = gc_param(&c, s, -1, 1);
    y = gc_objective(&c, ot_custom(g, gb_unary(g, OP_EXP, p, SP), q, 0, 0));
    autodiff(g, y, c.p, 2, gr);
    double v;
    assert_true(graph_is_const(g, gr[0], &v) && v == 0);
    assert_false(graph_is_const(g, gr[1], &v));
    gc_free(&c);
}

/* ---- sources without a gradient ---- */

static void test_randstep_ortho_nograd(void **state)
{
    Gc c;
    gc_init(&c, "rand_step", next_seed());
    NodeId st = gc_param(&c, shape_scalar(), 0, 5);
    gc_expect_none(&c, ot_randstep(&c.g, st, 3, 11, NND_F64, SHAPE(2, 3)), OP_RANDSTEP);
    gc_free(&c);
    /* a fixed mask of a parameter */
    gc_init(&c, "rand_step mask", next_seed());
    NodeId x = gc_param(&c, SHAPE(2, 3), -1, 1);
    NodeId u = ot_randstep(&c.g, gb_const(&c.g, 4, NND_F64, SP), 3, 11, NND_F64, SHAPE(2, 3));
    gc_check(&c, gb_binary(&c.g, OP_MUL, x, u, SP));
    gc_free(&c);

    gc_init(&c, "orthogonal", next_seed());
    NodeId gain = gc_param(&c, shape_scalar(), 0.5, 2);
    gc_expect_none(&c, ot_ortho(&c.g, gain, 5, NND_F64, SHAPE(3, 4)), OP_ORTHO);
    gc_free(&c);
    gc_init(&c, "orthogonal times x", next_seed());
    x = gc_param(&c, SHAPE(4, 3), -1, 1);
    NodeId q = ot_ortho(&c.g, gb_const(&c.g, 1.5, NND_F64, SP), 5, NND_F64, SHAPE(4, 3));
    gc_check(&c, gb_binary(&c.g, OP_MUL, x, q, SP));
    gc_free(&c);
}

/* ---- second order ---- */

typedef NodeId (*Build2)(Gc *c);

static NodeId b2_unary(Gc *c, OpId op, double lo, double hi)
{
    NodeId x = gc_param(c, SHAPE(2, 3), lo, hi);
    return gb_unary(&c->g, op, x, SP);
}
static NodeId b2_exp(Gc *c) { return b2_unary(c, OP_EXP, -1.5, 1.5); }
static NodeId b2_log(Gc *c) { return b2_unary(c, OP_LOG, 0.4, 2); }
static NodeId b2_tanh(Gc *c) { return b2_unary(c, OP_TANH, -2, 2); }
static NodeId b2_sigmoid(Gc *c) { return b2_unary(c, OP_SIGMOID, -3, 3); }
static NodeId b2_sqrt(Gc *c) { return b2_unary(c, OP_SQRT, 0.4, 2); }
static NodeId b2_rsqrt(Gc *c) { return b2_unary(c, OP_RSQRT, 0.4, 2); }
static NodeId b2_sin(Gc *c) { return b2_unary(c, OP_SIN, -3, 3); }
static NodeId b2_cos(Gc *c) { return b2_unary(c, OP_COS, -3, 3); }

static NodeId b2_mul(Gc *c)
{
    NodeId a = gc_param(c, SHAPE(2, 3), -2, 2), b = gc_param(c, SHAPE(2, 3), -2, 2);
    return gb_binary(&c->g, OP_MUL, gb_binary(&c->g, OP_MUL, a, b, SP), a, SP);
}

static NodeId b2_div(Gc *c)
{
    NodeId a = gc_param(c, SHAPE(2, 3), -2, 2), b = gc_param_away0(c, SHAPE(2, 3), 0.5, 2);
    return gb_binary(&c->g, OP_DIV, a, b, SP);
}

static NodeId b2_pow(Gc *c)
{
    NodeId a = gc_param(c, SHAPE(2, 3), 0.4, 2), b = gc_param(c, SHAPE(2, 3), -2, 2);
    return gb_binary(&c->g, OP_POW, a, b, SP);
}

static NodeId b2_pow2(Gc *c)
{
    Shape s = SHAPE(2, 3);
    NodeId a = gc_param(c, s, -2, 2);
    return gb_binary(&c->g, OP_POW, a, gb_full(&c->g, 2, NND_F64, &s, SP), SP);
}

static NodeId b2_matmul(Gc *c)
{
    NodeId a = gc_param(c, SHAPE(2, 3, 4), -1, 1), b = gc_param(c, SHAPE(2, 2, 4), -1, 1);
    NodeId m = gb_matmul(&c->g, a, b, false, true, SP);
    return gb_matmul(&c->g, m, m, true, false, SP); /* (A B^T)^T (A B^T) */
}

static NodeId b2_logsumexp(Gc *c)
{
    NodeId x = gc_param(c, SHAPE(3, 4), -2, 2);
    return gb_reduce(&c->g, OP_LOGSUMEXP, x, 0x2, false, SP);
}

static NodeId b2_logsumexp_large(Gc *c)
{
    NodeId x = gc_param(c, SHAPE(2, 3), 998, 1002);
    return gb_reduce(&c->g, OP_LOGSUMEXP, x, 0x3, true, SP);
}

static NodeId b2_rmax(Gc *c)
{
    NodeId x = gc_param_distinct(c, SHAPE(3, 4), -2, 0.3);
    NodeId m = gb_reduce(&c->g, OP_RMAX, x, 0x1, true, SP);
    return gb_binary(&c->g, OP_MUL, m, m, SP);
}

static NodeId b2_relu(Gc *c)
{
    NodeId x = gc_param_away0(c, SHAPE(2, 3), 0.2, 2);
    NodeId r = gb_unary(&c->g, OP_RELU, x, SP);
    return gb_binary(&c->g, OP_MUL, r, gb_unary(&c->g, OP_EXP, x, SP), SP);
}

static NodeId b2_abs_min_max(Gc *c)
{
    /* max(a^2, b) and min(|a|, e^b) pick each side somewhere, never close to a tie */
    static const double av[] = {-1.5, -0.7, 0.3, 0.9, 1.4, -0.4};
    static const double bv[] = {3.0, 0.1, 0.5, -2.0, 1.0, -1.5};
    NodeId a = gc_param_vals(c, SHAPE(2, 3), av), b = gc_param_vals(c, SHAPE(2, 3), bv);
    Graph *g = &c->g;
    NodeId m = gb_binary(g, OP_MAX, gb_binary(g, OP_MUL, a, a, SP), b, SP);
    NodeId n = gb_binary(g, OP_MIN, gb_unary(g, OP_ABS, a, SP), gb_unary(g, OP_EXP, b, SP), SP);
    return gb_binary(g, OP_MUL, m, n, SP);
}

/* broadcast, sum and mean around a nonlinearity: (x - mean(x))^2 summed per row */
static NodeId b2_reduce(Gc *c)
{
    Graph *g = &c->g;
    Shape s = SHAPE(3, 4);
    NodeId x = gc_param(c, s, -2, 2);
    NodeId m = gb_broadcast(g, gb_reduce(g, OP_MEAN, x, 0x2, true, SP), &s, SP);
    NodeId d = gb_binary(g, OP_SUB, x, m, SP);
    NodeId v = gb_reduce(g, OP_SUM, gb_binary(g, OP_MUL, d, d, SP), 0x2, false, SP);
    NodeId bc = gb_broadcast(g, v, &(Shape){2, {2, 3}}, SP);
    return gb_unary(g, OP_TANH, bc, SP);
}

static NodeId b2_mean_symbolic(Gc *c)
{
    Graph *g = &c->g;
    int64_t B = gc_sym(c, "B", 3);
    NodeId x = gc_param(c, SHAPE(B, 2), -1, 1);
    NodeId m = gb_reduce(g, OP_MEAN, gb_unary(g, OP_EXP, x, SP), 0x1, false, SP);
    return gb_binary(g, OP_MUL, m, m, SP);
}

static NodeId b2_layout(Gc *c)
{
    Graph *g = &c->g;
    NodeId x = gc_param(c, SHAPE(3, 4), -1, 1);
    int perm[2] = {1, 0};
    NodeId t = gb_transpose(g, gb_unary(g, OP_SIN, x, SP), perm, SP);
    NodeId s = ot_slice(g, t, (int64_t[]){1, 0}, (int64_t[]){2, 2}, SHAPE(2, 2));
    NodeId p = ot_pad(g, gb_binary(g, OP_MUL, s, s, SP), (int64_t[]){0, 1}, (int64_t[]){1, 1},
                      SHAPE(2, 4));
    NodeId r = gb_reshape(g, p, &(Shape){1, {8}}, SP);
    return gb_binary(g, OP_MUL, r, gb_unary(g, OP_COS, r, SP), SP);
}

static NodeId b2_select_pick(Gc *c)
{
    Graph *g = &c->g;
    NodeId x = gc_param(c, SHAPE(3, 4), -1, 1);
    NodeId l = ot_tensor(g, NND_I32, SHAPE(3), VALS(1, 3, 0));
    NodeId pk = ot_pick(g, gb_unary(g, OP_EXP, x, SP), l);
    NodeId cond = ot_tensor(g, NND_BOOL, SHAPE(3), VALS(1, 0, 1));
    return gb_select(g, cond, gb_binary(g, OP_MUL, pk, pk, SP), gb_unary(g, OP_TANH, pk, SP), SP);
}

static NodeId b2_cross_entropy(Gc *c)
{
    Graph *g = &c->g;
    NodeId w = gc_param(c, SHAPE(3, 4), -1, 1);
    NodeId xin = ot_tensor(g, NND_F64, SHAPE(2, 3), VALS(0.5, -1, 2, 1, 0.25, -0.5));
    NodeId l = ot_tensor(g, NND_I32, SHAPE(2), VALS(3, 1));
    NodeId logits = gb_matmul(g, xin, w, false, false, SP);
    NodeId lse = gb_reduce(g, OP_LOGSUMEXP, logits, 0x2, false, SP);
    NodeId loss = gb_binary(g, OP_SUB, lse, ot_pick(g, logits, l), SP);
    return gb_reduce(g, OP_MEAN, loss, 0x1, false, SP);
}

static void test_second_order(void **state)
{
    struct {
        const char *name;
        Build2 build;
    } cases[] = {
        {"exp", b2_exp},
        {"log", b2_log},
        {"tanh", b2_tanh},
        {"sigmoid", b2_sigmoid},
        {"sqrt", b2_sqrt},
        {"rsqrt", b2_rsqrt},
        {"sin", b2_sin},
        {"cos", b2_cos},
        {"mul", b2_mul},
        {"div", b2_div},
        {"pow", b2_pow},
        {"pow 2", b2_pow2},
        {"matmul", b2_matmul},
        {"logsumexp", b2_logsumexp},
        {"logsumexp large", b2_logsumexp_large},
        {"max_reduce", b2_rmax},
        {"relu", b2_relu},
        {"abs min max", b2_abs_min_max},
        {"broadcast sum mean", b2_reduce},
        {"mean symbolic", b2_mean_symbolic},
        {"transpose slice pad reshape", b2_layout},
        {"select pick", b2_select_pick},
        {"cross entropy", b2_cross_entropy},
    };
    for (size_t i = 0; i < NND_ARRAY_LEN(cases); i++)
        for (int simplify = 0; simplify < 4; simplify++) {
            Gc c;
            gc_init(&c, cases[i].name, next_seed());
            NodeId out = cases[i].build(&c);
            gc_check2(&c, out, simplify);
            gc_free(&c);
        }
}

/* Second order through the ops that call runtime routines: conv2d's VJP builds
 * conv2d_gx and conv2d_gw, whose VJPs build conv2d again; pooling, take, scatter-add,
 * concat and custom gradients likewise.  The simplification modes rotate. */
static NodeId sq(Gc *c, NodeId a) { return gb_binary(&c->g, OP_MUL, a, a, SP); }

static void test_second_order_calls(void **state)
{
    int mode = 0;
    for (size_t i = 0; i < ot_nconv_cases; i++) {
        const OtConvCase *k = &ot_conv_cases[i];
        Shape xs = ot_conv_x_shape(k), ws = ot_conv_w_shape(k);
        Gc c;
        gc_init(&c, k->name, next_seed());
        NodeId x = gc_param(&c, xs, -1, 1), w = gc_param(&c, ws, -1, 1);
        NodeId y = ot_conv(&c.g, OP_CONV2D, x, w, k->a, shape_scalar());
        gc_check2(&c, gb_unary(&c.g, OP_TANH, y, SP), mode++ % 4);
        gc_free(&c);
        if (i % 3)
            continue;
        gc_init(&c, k->name, next_seed());
        Shape ys = conv_y_shape(&c, xs, ws, k->a);
        NodeId dy = gc_param(&c, ys, -1, 1);
        w = gc_param(&c, ws, -1, 1);
        gc_check2(&c, sq(&c, ot_conv(&c.g, OP_CONV2D_GX, dy, w, k->a, xs)), mode++ % 4);
        gc_free(&c);
        gc_init(&c, k->name, next_seed());
        x = gc_param(&c, xs, -1, 1);
        dy = gc_param(&c, ys, -1, 1);
        gc_check2(&c, sq(&c, ot_conv(&c.g, OP_CONV2D_GW, x, dy, k->a, ws)), mode++ % 4);
        gc_free(&c);
    }
    for (size_t i = 0; i < ot_npool_cases; i++) {
        const OtPoolCase *k = &ot_pool_cases[i];
        Shape xs = ot_pool_x_shape(k);
        Gc c;
        gc_init(&c, k->name, next_seed());
        NodeId x = gc_param_distinct(&c, xs, -3, 0.1);
        gc_check2(&c, sq(&c, ot_pool(&c.g, OP_POOLMAX, x, x, k->a, shape_scalar())), mode++ % 4);
        gc_free(&c);
        gc_init(&c, k->name, next_seed());
        x = gc_param_distinct(&c, xs, -3, 0.1);
        NodeId d = gc_param(&c, pool_y_shape(&c, xs, k->a), -1, 1);
        gc_check2(&c, sq(&c, ot_pool(&c.g, OP_POOLMAX_T, x, d, k->a, shape_scalar())), mode++ % 4);
        gc_free(&c);
        gc_init(&c, k->name, next_seed());
        x = gc_param(&c, xs, -1, 1);
        NodeId av =
            ot_pool(&c.g, OP_POOLAVG, gb_unary(&c.g, OP_SIN, x, SP), 0, k->a, shape_scalar());
        gc_check2(
            &c,
            gb_binary(&c.g, OP_MUL, av, ot_pool(&c.g, OP_POOLAVG, x, 0, k->a, shape_scalar()), SP),
            mode++ % 4);
        gc_free(&c);
        gc_init(&c, k->name, next_seed());
        d = gc_param(&c, pool_y_shape(&c, xs, k->a), -1, 1);
        gc_check2(&c, sq(&c, ot_pool(&c.g, OP_POOLAVG_T, d, 0, k->a, xs)), mode++ % 4);
        gc_free(&c);
    }
    for (int simplify = 0; simplify < 4; simplify++) {
        Gc c;
        gc_init(&c, "take", next_seed());
        NodeId t = gc_param(&c, SHAPE(4, 3), -1, 1);
        NodeId l = ot_tensor(&c.g, NND_I32, SHAPE(2, 3), VALS(3, 0, 3, 1, 3, 3));
        gc_check2(&c, sq(&c, ot_take(&c.g, gb_unary(&c.g, OP_EXP, t, SP), l)), simplify);
        gc_free(&c);

        gc_init(&c, "scatter_add", next_seed());
        l = ot_tensor(&c.g, NND_I32, SHAPE(5), VALS(2, 0, 2, 2, 1));
        NodeId s = gc_param(&c, SHAPE(5, 2), -1, 1);
        gc_check2(&c, sq(&c, ot_scatter(&c.g, l, gb_unary(&c.g, OP_SIN, s, SP), 4)), simplify);
        gc_free(&c);

        gc_init(&c, "concat", next_seed());
        NodeId a = gc_param(&c, SHAPE(2, 3), -1, 1), b = gc_param(&c, SHAPE(2, 1), -1, 1);
        NodeId cc = ot_concat(&c.g, gb_unary(&c.g, OP_SIN, a, SP), sq(&c, b), 1);
        gc_check2(&c, gb_binary(&c.g, OP_MUL, cc, ot_concat(&c.g, b, a, 1), SP), simplify);
        gc_free(&c);

        CustomCtx ctx;
        gc_init(&c, "custom", next_seed());
        gc_custom(&c, &ctx, CUSTOM_COS);
        a = gc_param(&c, SHAPE(2, 3), -2, 2);
        gc_check2(&c, sq(&c, ot_custom(&c.g, gb_unary(&c.g, OP_SIN, a, SP), a, 0, 0)), simplify);
        /* once per autodiff, unless simplify_graph replaced the node by its value */
        assert_int_equal(ctx.calls, simplify & S_BEFORE ? 1 : 2);
        gc_free(&c);
    }
}

/* First-order checks still hold after simplify_graph rebuilt the gradient. */
static void test_simplified_gradient(void **state)
{
    Gc c;
    gc_init(&c, "simplified gradient", next_seed());
    Graph *g = &c.g;
    NodeId x = gc_param(&c, SHAPE(2, 3), 0.5, 2), w = gc_param(&c, SHAPE(3, 3), -1, 1);
    int perm[2] = {1, 0};
    NodeId m = gb_matmul(g, x, gb_transpose(g, w, perm, SP), false, false, SP);
    Shape s = SHAPE(2, 3);
    NodeId sq = gb_binary(g, OP_POW, m, gb_full(g, 2, NND_F64, &s, SP), SP);
    NodeId one = gb_full(g, 1, NND_F64, &s, SP);
    NodeId out = gb_binary(g, OP_MUL, gb_binary(g, OP_ADD, sq, gb_full(g, 0, NND_F64, &s, SP), SP),
                           gb_unary(g, OP_LOG, gb_binary(g, OP_MUL, x, one, SP), SP), SP);
    NodeId y = gc_objective(&c, out);
    NodeId gr[2];
    autodiff(g, y, c.p, 2, gr);
    NodeId roots[3] = {y, gr[0], gr[1]};
    InterpBindings b = gc_bindings(&c);
    ITensor pre[3], post[3];
    ot_run(g, roots, 3, &b, pre);
    NodeId *rp[5] = {&roots[0], &roots[1], &roots[2], &c.p[0], &c.p[1]};
    SimplifyStats st;
    simplify_graph(g, rp, 5, SIMPLIFY_EXACT, &st);
    assert_true(st.after < st.before);
    ot_run(g, roots, 3, &b, post);
    for (int k = 0; k < 3; k++) {
        for (int64_t i = 0; i < pre[k].n; i++)
            assert_true(fabs(pre[k].v[i] - post[k].v[i]) <= 1e-12 * (1 + fabs(pre[k].v[i])));
        itensor_free(&pre[k]);
    }
    gc_compare(&c, roots[0], post + 1, "simplified gradient");
    for (int k = 0; k < 3; k++)
        itensor_free(&post[k]);
    gc_free(&c);
}

/* ---- coverage: every op has a case ---- */

static void test_coverage(void **state)
{
    int missing = 0;
    for (int op = 0; op < OP_COUNT; op++) {
        const char *name = op_info[op].name;
        switch (cover[op]) {
        case COV_NONE:
            print_error("op %s has neither a gradcheck nor a no-gradient case\n", name);
            missing++;
            break;
        case COV_GRAD:
            if (!autodiff_has_vjp((OpId)op)) {
                print_error("op %s is listed for a gradcheck but has no VJP\n", name);
                missing++;
            } else if (!seen_grad[op]) {
                print_error("op %s is listed for a gradcheck but none ran\n", name);
                missing++;
            }
            break;
        case COV_NOGRAD:
            if (autodiff_has_vjp((OpId)op)) {
                print_error("op %s has a VJP but is listed as passing no gradient\n", name);
                missing++;
            } else if (!seen_nograd[op]) {
                print_error("op %s is listed as passing no gradient but no case checks it\n", name);
                missing++;
            }
            break;
        }
    }
    /* the second-order cases cover the ops the brief names */
    OpId second[] = {OP_EXP,     OP_LOG,       OP_TANH,      OP_SIGMOID,     OP_MUL,
                     OP_DIV,     OP_POW,       OP_MATMUL,    OP_LOGSUMEXP,   OP_RMAX,
                     OP_RELU,    OP_SQRT,      OP_BROADCAST, OP_SUM,         OP_MEAN,
                     OP_CONV2D,  OP_CONV2D_GX, OP_CONV2D_GW, OP_POOLMAX,     OP_POOLMAX_T,
                     OP_POOLAVG, OP_POOLAVG_T, OP_TAKE,      OP_SCATTER_ADD, OP_CONCAT,
                     OP_CUSTOM};
    for (size_t i = 0; i < NND_ARRAY_LEN(second); i++)
        if (!seen_grad2[second[i]]) {
            print_error("op %s has no second-order case\n", op_info[second[i]].name);
            missing++;
        }
    assert_int_equal(missing, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary),
        cmocka_unit_test(test_unary_extremes),
        cmocka_unit_test(test_unary_chain),
        cmocka_unit_test(test_sign_floor),
        cmocka_unit_test(test_cast),
        cmocka_unit_test(test_cast_f32),
        cmocka_unit_test(test_binary),
        cmocka_unit_test(test_binary_shared),
        cmocka_unit_test(test_pow_const),
        cmocka_unit_test(test_select),
        cmocka_unit_test(test_broadcast),
        cmocka_unit_test(test_reshape),
        cmocka_unit_test(test_transpose),
        cmocka_unit_test(test_slice_pad),
        cmocka_unit_test(test_reduce),
        cmocka_unit_test(test_reduce_small),
        cmocka_unit_test(test_reduce_symbolic),
        cmocka_unit_test(test_logsumexp_large),
        cmocka_unit_test(test_tie_rules),
        cmocka_unit_test(test_pick),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_compare_nograd),
        cmocka_unit_test(test_logic_nograd),
        cmocka_unit_test(test_index_nograd),
        cmocka_unit_test(test_rand_nograd),
        cmocka_unit_test(test_dimsize_nograd),
        cmocka_unit_test(test_leaves),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_take),
        cmocka_unit_test(test_scatter_add),
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_custom),
        cmocka_unit_test(test_randstep_ortho_nograd),
        cmocka_unit_test(test_second_order),
        cmocka_unit_test(test_second_order_calls),
        cmocka_unit_test(test_simplified_gradient),
        cmocka_unit_test(test_coverage), /* last: reads what the others ran */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
