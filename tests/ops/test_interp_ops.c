/* Exact-value tests of the reference interpreter, op by op, on small hand-computed
 * inputs; its error paths; and simplify_graph: folding, CSE, DCE, the algebraic
 * identities, and bit-identical results before and after on random graphs. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "opsutil.h"
#include "simplify.h"

#define SP span_none()

static Graph *new_graph(void)
{
    Graph *g = xmalloc(sizeof *g);
    graph_init(g);
    return g;
}

static void free_graph(Graph *g)
{
    graph_free(g);
    free(g);
}

static NodeId f64s(Graph *g, Shape s, const double *v, int n)
{
    return ot_tensor(g, NND_F64, s, v, n);
}

/* ---- leaves ---- */

static void test_leaves(void **state)
{
    Graph *g = new_graph();
    ITensor t = ot_eval(g, gb_const(g, 0.1, NND_F64, SP));
    ot_expect_dt(&t, NND_F64, shape_scalar(), VALS(0.1));
    /* an f32 constant holds the float nearest to its number */
    t = ot_eval(g, gb_const(g, 0.1, NND_F32, SP));
    ot_expect_dt(&t, NND_F32, shape_scalar(), VALS((double)0.1f));
    t = ot_eval(g, ot_tensor(g, NND_F32, SHAPE(2), VALS(1.0 / 3, 2.5)));
    ot_expect_dt(&t, NND_F32, SHAPE(2), VALS((double)(1.0f / 3), 2.5));
    t = ot_eval(g, ot_tensor(g, NND_I32, SHAPE(3), VALS(1, -2, 7)));
    ot_expect_dt(&t, NND_I32, SHAPE(3), VALS(1, -2, 7));

    NodeId p = ot_param(g, 1, NND_F64, SHAPE(2));
    NodeId st = ot_leaf(g, OP_STATE, 0, NND_F64, SHAPE(1));
    NodeId in = ot_leaf(g, OP_INPUT, 1, NND_F64, SHAPE(2, 1));
    NodeId hy = ot_leaf(g, OP_HYPER, 1, NND_F64, shape_scalar());
    ITensor params[2] = {ot_itensor(NND_F64, SHAPE(1), VALS(9)),
                         ot_itensor(NND_F64, SHAPE(2), VALS(3, 4))};
    ITensor states[1] = {ot_itensor(NND_F64, SHAPE(1), VALS(-1))};
    ITensor inputs[2] = {ot_itensor(NND_F64, SHAPE(1), VALS(0)),
                         ot_itensor(NND_F64, SHAPE(2, 1), VALS(5, 6))};
    double hypers[2] = {0.25, 0.125};
    InterpBindings b = {.params = params,
                        .nparams = 2,
                        .states = states,
                        .nstates = 1,
                        .inputs = inputs,
                        .ninputs = 2,
                        .hypers = hypers,
                        .nhypers = 2};
    NodeId roots[4] = {p, st, in, hy};
    ITensor out[4];
    ot_run(g, roots, 4, &b, out);
    ot_expect(&out[0], SHAPE(2), VALS(3, 4));
    ot_expect(&out[1], SHAPE(1), VALS(-1));
    ot_expect(&out[2], SHAPE(2, 1), VALS(5, 6));
    ot_expect(&out[3], shape_scalar(), VALS(0.125));
    /* the bound tensors are copied, not taken */
    assert_true(params[1].v[0] == 3);
    for (int i = 0; i < 2; i++) {
        itensor_free(&params[i]);
        itensor_free(&inputs[i]);
    }
    itensor_free(&states[0]);
    free_graph(g);
}

/* ---- elementwise ---- */

typedef struct EwCase {
    OpId op;
    double x, want;
} EwCase;

static void test_unary(void **state)
{
    const double inf = INFINITY;
    const EwCase cases[] = {
        {OP_NEG, 2, -2},        {OP_NEG, 0, -0.0},     {OP_EXP, 0, 1},       {OP_EXP, -inf, 0},
        {OP_LOG, 1, 0},         {OP_LOG, 0, -inf},     {OP_SQRT, 6.25, 2.5}, {OP_RSQRT, 0.25, 2},
        {OP_ABS, -2.5, 2.5},    {OP_ABS, -0.0, 0},     {OP_SIGN, -3, -1},    {OP_SIGN, 0, 0},
        {OP_SIGN, 0.5, 1},      {OP_TANH, 0, 0},       {OP_TANH, 100, 1},    {OP_SIGMOID, 0, 0.5},
        {OP_SIGMOID, -1000, 0}, {OP_SIGMOID, 1000, 1}, {OP_RELU, -1, 0},     {OP_RELU, 0, 0},
        {OP_RELU, 2.5, 2.5},    {OP_SIN, 0, 0},        {OP_COS, 0, 1},       {OP_FLOOR, -1.5, -2},
        {OP_FLOOR, 2.99, 2},    {OP_FLOOR, 3, 3},
    };
    for (size_t i = 0; i < NND_ARRAY_LEN(cases); i++) {
        Graph *g = new_graph();
        NodeId x = f64s(g, shape_scalar(), &cases[i].x, 1);
        ITensor t = ot_eval(g, gb_unary(g, cases[i].op, x, SP));
        ot_expect_dt(&t, NND_F64, shape_scalar(), &cases[i].want, 1);
        free_graph(g);
    }
    /* values of the smooth ops away from the easy points, as libm gives them */
    Graph *g = new_graph();
    NodeId x = f64s(g, SHAPE(3), VALS(-0.7, 0.3, 2));
    OpId smooth[] = {OP_EXP, OP_TANH, OP_SIN, OP_COS, OP_SIGMOID};
    for (size_t i = 0; i < NND_ARRAY_LEN(smooth); i++) {
        ITensor t = ot_eval(g, gb_unary(g, smooth[i], x, SP));
        double w[3];
        for (int k = 0; k < 3; k++) {
            double v = (double[]){-0.7, 0.3, 2}[k];
            w[k] = smooth[i] == OP_EXP    ? exp(v)
                   : smooth[i] == OP_TANH ? tanh(v)
                   : smooth[i] == OP_SIN  ? sin(v)
                   : smooth[i] == OP_COS  ? cos(v)
                                          : 1 / (1 + exp(-v));
        }
        assert_true(fabs(t.v[1] - w[1]) <= 1e-15 && fabs(t.v[2] - w[2]) <= 1e-15);
        assert_true(fabs(t.v[0] - w[0]) <= 1e-15);
        itensor_free(&t);
    }
    /* NOT on booleans */
    NodeId bo = ot_tensor(g, NND_BOOL, SHAPE(3), VALS(1, 0, 1));
    ITensor t = ot_eval(g, gb_unary(g, OP_NOT, bo, SP));
    ot_expect_dt(&t, NND_BOOL, SHAPE(3), VALS(0, 1, 0));
    /* i32 ops keep integers */
    NodeId iv = ot_tensor(g, NND_I32, SHAPE(3), VALS(-3, 0, 4));
    t = ot_eval(g, gb_unary(g, OP_ABS, iv, SP));
    ot_expect_dt(&t, NND_I32, SHAPE(3), VALS(3, 0, 4));
    t = ot_eval(g, gb_unary(g, OP_NEG, iv, SP));
    ot_expect_dt(&t, NND_I32, SHAPE(3), VALS(3, 0, -4));
    free_graph(g);
}

static void test_binary(void **state)
{
    Graph *g = new_graph();
    Shape s = SHAPE(4);
    NodeId a = f64s(g, s, VALS(1, -2, 4, 0.25)), b = f64s(g, s, VALS(4, 2, -1, 0.5));
    struct {
        OpId op;
        double w[4];
    } cases[] = {
        {OP_ADD, {5, 0, 3, 0.75}},     {OP_SUB, {-3, -4, 5, -0.25}}, {OP_MUL, {4, -4, -4, 0.125}},
        {OP_DIV, {0.25, -1, -4, 0.5}}, {OP_POW, {1, 4, 0.25, 0.5}},  {OP_MIN, {1, -2, -1, 0.25}},
        {OP_MAX, {4, 2, 4, 0.5}},
    };
    for (size_t i = 0; i < NND_ARRAY_LEN(cases); i++) {
        ITensor t = ot_eval(g, gb_binary(g, cases[i].op, a, b, SP));
        ot_expect_dt(&t, NND_F64, s, cases[i].w, 4);
    }
    /* ties go to a: min(+0, -0) = +0, min(-0, +0) = -0, likewise max */
    NodeId pz = f64s(g, SHAPE(1), VALS(0.0)), nz = f64s(g, SHAPE(1), VALS(-0.0));
    ITensor t = ot_eval(g, gb_binary(g, OP_MIN, pz, nz, SP));
    ot_expect(&t, SHAPE(1), VALS(0.0));
    t = ot_eval(g, gb_binary(g, OP_MIN, nz, pz, SP));
    ot_expect(&t, SHAPE(1), VALS(-0.0));
    t = ot_eval(g, gb_binary(g, OP_MAX, pz, nz, SP));
    ot_expect(&t, SHAPE(1), VALS(0.0));
    t = ot_eval(g, gb_binary(g, OP_MAX, nz, pz, SP));
    ot_expect(&t, SHAPE(1), VALS(-0.0));
    /* x^2 is exactly x*x (libm's pow is 1 ulp off for these two) */
    const double sq[2] = {0x1.37dea42457f8p-5, 0x1.28f519f6cc5bp-1};
    NodeId sx = f64s(g, SHAPE(2), sq, 2);
    t = ot_eval(g, gb_binary(g, OP_POW, sx, gb_full(g, 2, NND_F64, &(Shape){1, {2}}, SP), SP));
    ot_expect(&t, SHAPE(2), VALS(sq[0] * sq[0], sq[1] * sq[1]));
    /* division by zero follows IEEE */
    NodeId one = f64s(g, SHAPE(2), VALS(1, -1)), zero = f64s(g, SHAPE(2), VALS(0, 0));
    t = ot_eval(g, gb_binary(g, OP_DIV, one, zero, SP));
    ot_expect(&t, SHAPE(2), VALS(INFINITY, -INFINITY));
    /* i32 arithmetic truncates */
    NodeId ia = ot_tensor(g, NND_I32, SHAPE(2), VALS(7, -7)),
           ib = ot_tensor(g, NND_I32, SHAPE(2), VALS(2, 2));
    t = ot_eval(g, gb_binary(g, OP_DIV, ia, ib, SP));
    ot_expect_dt(&t, NND_I32, SHAPE(2), VALS(3, -3));
    free_graph(g);
}

static void test_compare_logic(void **state)
{
    Graph *g = new_graph();
    Shape s = SHAPE(3);
    NodeId a = f64s(g, s, VALS(1, 2, 3)), b = f64s(g, s, VALS(2, 2, 2));
    struct {
        OpId op;
        double w[3];
    } cases[] = {
        {OP_LT, {1, 0, 0}}, {OP_LE, {1, 1, 0}}, {OP_GT, {0, 0, 1}},
        {OP_GE, {0, 1, 1}}, {OP_EQ, {0, 1, 0}}, {OP_NE, {1, 0, 1}},
    };
    for (size_t i = 0; i < NND_ARRAY_LEN(cases); i++) {
        ITensor t = ot_eval(g, gb_binary(g, cases[i].op, a, b, SP));
        ot_expect_dt(&t, NND_BOOL, s, cases[i].w, 3);
    }
    /* NaN compares unequal to everything */
    NodeId n = f64s(g, SHAPE(2), VALS(NAN, NAN)), m = f64s(g, SHAPE(2), VALS(NAN, 1));
    ITensor t = ot_eval(g, gb_binary(g, OP_EQ, n, m, SP));
    ot_expect(&t, SHAPE(2), VALS(0, 0));
    t = ot_eval(g, gb_binary(g, OP_NE, n, m, SP));
    ot_expect(&t, SHAPE(2), VALS(1, 1));
    NodeId p = ot_tensor(g, NND_BOOL, SHAPE(4), VALS(0, 0, 1, 1));
    NodeId q = ot_tensor(g, NND_BOOL, SHAPE(4), VALS(0, 1, 0, 1));
    t = ot_eval(g, gb_binary(g, OP_AND, p, q, SP));
    ot_expect_dt(&t, NND_BOOL, SHAPE(4), VALS(0, 0, 0, 1));
    t = ot_eval(g, gb_binary(g, OP_OR, p, q, SP));
    ot_expect_dt(&t, NND_BOOL, SHAPE(4), VALS(0, 1, 1, 1));
    free_graph(g);
}

static void test_select(void **state)
{
    Graph *g = new_graph();
    Shape s = SHAPE(2, 2);
    NodeId c = ot_tensor(g, NND_BOOL, s, VALS(1, 0, 0, 1));
    NodeId a = f64s(g, s, VALS(1, 2, 3, 4)), b = f64s(g, s, VALS(-1, -2, -3, -4));
    ITensor t = ot_eval(g, gb_select(g, c, a, b, SP));
    ot_expect_dt(&t, NND_F64, s, VALS(1, -2, -3, 4));
    /* the unselected branch may be NaN */
    NodeId nan = f64s(g, s, VALS(NAN, NAN, NAN, NAN));
    t = ot_eval(g, gb_select(g, c, a, nan, SP));
    ot_expect(&t, s, VALS(1, NAN, NAN, 4));
    free_graph(g);
}

static void test_cast_rounding(void **state)
{
    Graph *g = new_graph();
    NodeId x = f64s(g, SHAPE(6), VALS(0.1, 2.7, -2.7, 0.5, 0, 16777217));
    ITensor t = ot_eval(g, gb_cast(g, x, NND_F32, SP));
    ot_expect_dt(&t, NND_F32, SHAPE(6),
                 VALS((double)0.1f, (double)2.7f, (double)-2.7f, 0.5, 0, 16777216));
    t = ot_eval(g, gb_cast(g, x, NND_I32, SP));
    ot_expect_dt(&t, NND_I32, SHAPE(6), VALS(0, 2, -2, 0, 0, 16777217));
    t = ot_eval(g, gb_cast(g, x, NND_BOOL, SP));
    ot_expect_dt(&t, NND_BOOL, SHAPE(6), VALS(1, 1, 1, 1, 0, 1));
    /* back to f64 keeps what the narrower type held */
    t = ot_eval(g, gb_cast(g, gb_cast(g, x, NND_I32, SP), NND_F64, SP));
    ot_expect_dt(&t, NND_F64, SHAPE(6), VALS(0, 2, -2, 0, 0, 16777217));
    NodeId bo = ot_tensor(g, NND_BOOL, SHAPE(2), VALS(1, 0));
    t = ot_eval(g, gb_cast(g, bo, NND_F32, SP));
    ot_expect_dt(&t, NND_F32, SHAPE(2), VALS(1, 0));
    /* an integer has no negative zero */
    NodeId nz = f64s(g, SHAPE(2), VALS(-0.5, -0.0));
    t = ot_eval(g, gb_cast(g, gb_cast(g, nz, NND_I32, SP), NND_F64, SP));
    ot_expect(&t, SHAPE(2), VALS(0, 0));
    /* non-finite values become 0 in i32 */
    NodeId nf = f64s(g, SHAPE(2), VALS(NAN, INFINITY));
    t = ot_eval(g, gb_cast(g, nf, NND_I32, SP));
    ot_expect(&t, SHAPE(2), VALS(0, 0));
    free_graph(g);
}

/* Every f32 op rounds its result to float. */
static void test_f32_rounding(void **state)
{
    Graph *g = new_graph();
    NodeId one = ot_tensor(g, NND_F32, SHAPE(2), VALS(1, 16777216));
    NodeId tiny = ot_tensor(g, NND_F32, SHAPE(2), VALS(1e-8, 1));
    ITensor t = ot_eval(g, gb_binary(g, OP_ADD, one, tiny, SP));
    ot_expect_dt(&t, NND_F32, SHAPE(2), VALS(1, 16777216));
    NodeId three = ot_tensor(g, NND_F32, SHAPE(1), VALS(3));
    NodeId uno = ot_tensor(g, NND_F32, SHAPE(1), VALS(1));
    t = ot_eval(g, gb_binary(g, OP_DIV, uno, three, SP));
    ot_expect(&t, SHAPE(1), VALS((double)(1.0f / 3.0f)));
    t = ot_eval(g, gb_unary(g, OP_EXP, uno, SP));
    ot_expect(&t, SHAPE(1), VALS((double)(float)exp(1.0)));
    /* a sum rounds once at the end (the interpreter accumulates in double) */
    NodeId v = ot_tensor(g, NND_F32, SHAPE(3), VALS(16777216, 1, 1));
    t = ot_eval(g, gb_reduce(g, OP_SUM, v, 1, false, SP));
    ot_expect_dt(&t, NND_F32, shape_scalar(), VALS(16777218));
    /* matmul likewise */
    NodeId a = ot_tensor(g, NND_F32, SHAPE(1, 2), VALS(0.1f, 0.2f));
    NodeId b = ot_tensor(g, NND_F32, SHAPE(2, 1), VALS(3, 7));
    t = ot_eval(g, gb_matmul(g, a, b, false, false, SP));
    ot_expect(&t, SHAPE(1, 1), VALS((double)(float)((double)0.1f * 3 + (double)0.2f * 7)));
    free_graph(g);
}

/* ---- layout ---- */

static void test_broadcast(void **state)
{
    Graph *g = new_graph();
    /* right-aligned: [3] repeats down the rows of [2, 3] */
    NodeId r = f64s(g, SHAPE(3), VALS(1, 2, 3));
    ITensor t = ot_eval(g, gb_broadcast(g, r, &(Shape){2, {2, 3}}, SP));
    ot_expect(&t, SHAPE(2, 3), VALS(1, 2, 3, 1, 2, 3));
    /* a column [2, 1] repeats along the row */
    NodeId c = f64s(g, SHAPE(2, 1), VALS(1, 2));
    t = ot_eval(g, gb_broadcast(g, c, &(Shape){2, {2, 3}}, SP));
    ot_expect(&t, SHAPE(2, 3), VALS(1, 1, 1, 2, 2, 2));
    /* both: [1, 2, 1] to [2, 2, 3] */
    NodeId m = f64s(g, SHAPE(1, 2, 1), VALS(5, 6));
    t = ot_eval(g, gb_broadcast(g, m, &(Shape){3, {2, 2, 3}}, SP));
    ot_expect(&t, SHAPE(2, 2, 3), VALS(5, 5, 5, 6, 6, 6, 5, 5, 5, 6, 6, 6));
    /* a scalar fills */
    t = ot_eval(g, gb_full(g, 7, NND_F64, &(Shape){2, {1, 2}}, SP));
    ot_expect(&t, SHAPE(1, 2), VALS(7, 7));
    free_graph(g);
}

static void test_reshape_transpose(void **state)
{
    Graph *g = new_graph();
    NodeId x = f64s(g, SHAPE(2, 3), VALS(0, 1, 2, 3, 4, 5));
    ITensor t = ot_eval(g, gb_reshape(g, x, &(Shape){2, {3, 2}}, SP));
    ot_expect(&t, SHAPE(3, 2), VALS(0, 1, 2, 3, 4, 5));
    t = ot_eval(g, gb_transpose(g, x, (int[]){1, 0}, SP));
    ot_expect(&t, SHAPE(3, 2), VALS(0, 3, 1, 4, 2, 5));
    /* y[i][j][k] = x[j][k][i] for perm (2, 0, 1) of x [2, 2, 3] */
    double v[12];
    for (int i = 0; i < 12; i++)
        v[i] = i;
    NodeId z = f64s(g, SHAPE(2, 2, 3), v, 12);
    t = ot_eval(g, gb_transpose(g, z, (int[]){2, 0, 1}, SP));
    ot_expect(&t, SHAPE(3, 2, 2), VALS(0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11));
    t = ot_eval(g, gb_transpose(g, z, (int[]){1, 2, 0}, SP));
    ot_expect(&t, SHAPE(2, 3, 2), VALS(0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11));
    free_graph(g);
}

static void test_slice_pad(void **state)
{
    Graph *g = new_graph();
    double v[20];
    for (int i = 0; i < 20; i++)
        v[i] = i;
    NodeId x = f64s(g, SHAPE(4, 5), v, 20);
    /* rows 1, 3 and columns 0, 2, 4 */
    ITensor t = ot_eval(g, ot_slice(g, x, (int64_t[]){1, 0}, (int64_t[]){2, 2}, SHAPE(2, 3)));
    ot_expect(&t, SHAPE(2, 3), VALS(5, 7, 9, 15, 17, 19));
    t = ot_eval(g, ot_slice(g, x, (int64_t[]){3, 1}, (int64_t[]){1, 3}, SHAPE(1, 2)));
    ot_expect(&t, SHAPE(1, 2), VALS(16, 19));
    /* PAD writes at the same places and zeros the rest */
    NodeId s = f64s(g, SHAPE(2, 2), VALS(1, 2, 3, 4));
    t = ot_eval(g, ot_pad(g, s, (int64_t[]){1, 0}, (int64_t[]){2, 3}, SHAPE(4, 4)));
    ot_expect(&t, SHAPE(4, 4), VALS(0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 0, 0, 3, 0, 0, 4));
    NodeId r = f64s(g, SHAPE(2), VALS(8, 9));
    t = ot_eval(g, ot_pad(g, r, (int64_t[]){1}, (int64_t[]){1}, SHAPE(4)));
    ot_expect(&t, SHAPE(4), VALS(0, 8, 9, 0));
    free_graph(g);
}

/* ---- reductions ---- */

static void test_reduce(void **state)
{
    Graph *g = new_graph();
    NodeId x = f64s(g, SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6));
    ITensor t = ot_eval(g, gb_reduce(g, OP_SUM, x, 0x1, false, SP));
    ot_expect(&t, SHAPE(3), VALS(5, 7, 9));
    t = ot_eval(g, gb_reduce(g, OP_SUM, x, 0x1, true, SP));
    ot_expect(&t, SHAPE(1, 3), VALS(5, 7, 9));
    t = ot_eval(g, gb_reduce(g, OP_SUM, x, 0x2, true, SP));
    ot_expect(&t, SHAPE(2, 1), VALS(6, 15));
    t = ot_eval(g, gb_reduce(g, OP_SUM, x, 0x3, false, SP));
    ot_expect(&t, shape_scalar(), VALS(21));
    t = ot_eval(g, gb_reduce(g, OP_SUM, x, 0x3, true, SP));
    ot_expect(&t, SHAPE(1, 1), VALS(21));
    t = ot_eval(g, gb_reduce(g, OP_MEAN, x, 0x2, false, SP));
    ot_expect(&t, SHAPE(2), VALS(2, 5));
    t = ot_eval(g, gb_reduce(g, OP_MEAN, x, 0x3, false, SP));
    ot_expect(&t, shape_scalar(), VALS(3.5));
    t = ot_eval(g, gb_reduce(g, OP_RMAX, x, 0x1, false, SP));
    ot_expect(&t, SHAPE(3), VALS(4, 5, 6));
    t = ot_eval(g, gb_reduce(g, OP_SUM, x, 0, false, SP));
    ot_expect(&t, SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6));
    /* axes 0 and 2 of [2, 2, 2]: the middle one stays */
    NodeId y = f64s(g, SHAPE(2, 2, 2), VALS(1, 2, 3, 4, 5, 6, 7, 8));
    t = ot_eval(g, gb_reduce(g, OP_SUM, y, 0x5, false, SP));
    ot_expect(&t, SHAPE(2), VALS(1 + 2 + 5 + 6, 3 + 4 + 7 + 8));
    t = ot_eval(g, gb_reduce(g, OP_RMAX, y, 0x5, true, SP));
    ot_expect(&t, SHAPE(1, 2, 1), VALS(6, 8));
    /* max over an i32 tensor stays i32 */
    NodeId iv = ot_tensor(g, NND_I32, SHAPE(3), VALS(-5, 3, 2));
    t = ot_eval(g, gb_reduce(g, OP_RMAX, iv, 1, false, SP));
    ot_expect_dt(&t, NND_I32, shape_scalar(), VALS(3));
    free_graph(g);
}

static void test_logsumexp(void **state)
{
    Graph *g = new_graph();
    /* stable: no overflow for 1000, no underflow for -1000 */
    NodeId x = f64s(g, SHAPE(3, 2), VALS(1000, 1000, -1000, -1000, 1000, 0));
    ITensor t = ot_eval(g, gb_reduce(g, OP_LOGSUMEXP, x, 0x2, false, SP));
    ot_expect(&t, SHAPE(3), VALS(1000 + log(2), -1000 + log(2), 1000 + log1p(exp(-1000))));
    /* the exact small case: log(e^0 + e^0) = ln 2 */
    NodeId z = f64s(g, SHAPE(2), VALS(0, 0));
    t = ot_eval(g, gb_reduce(g, OP_LOGSUMEXP, z, 0x1, true, SP));
    ot_expect(&t, SHAPE(1), VALS(log(2)));
    /* infinities: all -inf gives -inf, +inf gives +inf, NaN propagates */
    NodeId s = f64s(g, SHAPE(3, 2), VALS(-INFINITY, -INFINITY, INFINITY, 0, NAN, 1));
    t = ot_eval(g, gb_reduce(g, OP_LOGSUMEXP, s, 0x2, false, SP));
    ot_expect(&t, SHAPE(3), VALS(-INFINITY, INFINITY, NAN));
    free_graph(g);
}

static void test_mean_symbolic(void **state)
{
    Graph *g = new_graph();
    int64_t B = graph_symbol(g, "B");
    NodeId x = ot_leaf(g, OP_INPUT, 0, NND_F64, SHAPE(B, 2));
    NodeId m = gb_reduce(g, OP_MEAN, x, 0x1, false, SP);
    NodeId all = gb_reduce(g, OP_MEAN, x, 0x3, true, SP);
    NodeId n = ot_dimsize(g, x, 0x1, NND_F64);
    NodeId n2 = ot_dimsize(g, x, 0x3, NND_F64);
    ITensor in = ot_itensor(NND_F64, SHAPE(4, 2), VALS(1, 2, 3, 4, 5, 6, 7, 9));
    int64_t syms[1] = {4};
    InterpBindings b = {.inputs = &in, .ninputs = 1, .syms = syms, .nsyms = 1};
    NodeId roots[4] = {m, all, n, n2};
    ITensor out[4];
    ot_run(g, roots, 4, &b, out);
    ot_expect(&out[0], SHAPE(2), VALS(4, 5.25));
    ot_expect(&out[1], SHAPE(1, 1), VALS(37.0 / 8));
    ot_expect(&out[2], shape_scalar(), VALS(4));
    ot_expect(&out[3], shape_scalar(), VALS(8));
    /* another batch size, same graph */
    itensor_free(&in);
    in = ot_itensor(NND_F64, SHAPE(1, 2), VALS(3, -3));
    syms[0] = 1;
    ot_run(g, roots, 4, &b, out);
    ot_expect(&out[0], SHAPE(2), VALS(3, -3));
    ot_expect(&out[1], SHAPE(1, 1), VALS(0));
    ot_expect(&out[2], shape_scalar(), VALS(1));
    ot_expect(&out[3], shape_scalar(), VALS(2));
    itensor_free(&in);
    free_graph(g);
}

static void test_argmax(void **state)
{
    Graph *g = new_graph();
    /* ties: the first index wins */
    NodeId x = f64s(g, SHAPE(2, 4), VALS(1, 3, 3, 2, 5, 5, 5, 5));
    ITensor t = ot_eval(g, ot_argmax(g, x, 1, false));
    ot_expect_dt(&t, NND_I32, SHAPE(2), VALS(1, 0));
    t = ot_eval(g, ot_argmax(g, x, 1, true));
    ot_expect_dt(&t, NND_I32, SHAPE(2, 1), VALS(1, 0));
    t = ot_eval(g, ot_argmax(g, x, 0, false));
    ot_expect(&t, SHAPE(4), VALS(1, 1, 1, 1));
    /* all -inf: index 0 */
    NodeId n = f64s(g, SHAPE(2), VALS(-INFINITY, -INFINITY));
    t = ot_eval(g, ot_argmax(g, n, 0, false));
    ot_expect(&t, shape_scalar(), VALS(0));
    NodeId y = f64s(g, SHAPE(3, 2), VALS(0, 1, 9, 1, 4, 7));
    t = ot_eval(g, ot_argmax(g, y, 0, true));
    ot_expect(&t, SHAPE(1, 2), VALS(1, 2));
    free_graph(g);
}

/* ---- indexing ---- */

static void test_pick_one_hot(void **state)
{
    Graph *g = new_graph();
    NodeId x = f64s(g, SHAPE(3, 4), VALS(0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23));
    NodeId l = ot_tensor(g, NND_I32, SHAPE(3), VALS(2, 0, 3));
    ITensor t = ot_eval(g, ot_pick(g, x, l));
    ot_expect_dt(&t, NND_F64, SHAPE(3), VALS(2, 10, 23));
    NodeId v = f64s(g, SHAPE(3), VALS(7, 8, 9));
    t = ot_eval(g, ot_pick(g, v, ot_tensor(g, NND_I32, shape_scalar(), VALS(1))));
    ot_expect(&t, shape_scalar(), VALS(8));
    t = ot_eval(g, ot_one_hot(g, l, 4, NND_F32));
    ot_expect_dt(&t, NND_F32, SHAPE(3, 4), VALS(0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1));
    NodeId l2 = ot_tensor(g, NND_I32, SHAPE(2, 1), VALS(1, 0));
    t = ot_eval(g, ot_one_hot(g, l2, 2, NND_F64));
    ot_expect(&t, SHAPE(2, 1, 2), VALS(0, 1, 1, 0));
    free_graph(g);
}

/* ---- matmul ---- */

static void test_matmul(void **state)
{
    Graph *g = new_graph();
    /* A = [[1,2,3],[4,5,6]], B = [[1,0],[0,1],[1,1]]: A B = [[4,5],[10,11]] */
    NodeId a = f64s(g, SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6));
    NodeId at = f64s(g, SHAPE(3, 2), VALS(1, 4, 2, 5, 3, 6));
    NodeId b = f64s(g, SHAPE(3, 2), VALS(1, 0, 0, 1, 1, 1));
    NodeId bt = f64s(g, SHAPE(2, 3), VALS(1, 0, 1, 0, 1, 1));
    const double want[] = {4, 5, 10, 11};
    ITensor t = ot_eval(g, gb_matmul(g, a, b, false, false, SP));
    ot_expect(&t, SHAPE(2, 2), want, 4);
    t = ot_eval(g, gb_matmul(g, at, b, true, false, SP));
    ot_expect(&t, SHAPE(2, 2), want, 4);
    t = ot_eval(g, gb_matmul(g, a, bt, false, true, SP));
    ot_expect(&t, SHAPE(2, 2), want, 4);
    t = ot_eval(g, gb_matmul(g, at, bt, true, true, SP));
    ot_expect(&t, SHAPE(2, 2), want, 4);
    /* B A = [[1,2,3],[4,5,6],[5,7,9]] */
    t = ot_eval(g, gb_matmul(g, b, a, false, false, SP));
    ot_expect(&t, SHAPE(3, 3), VALS(1, 2, 3, 4, 5, 6, 5, 7, 9));
    /* batched: each batch is its own product */
    NodeId x = f64s(g, SHAPE(2, 1, 2), VALS(1, 2, 3, 4));
    NodeId y = f64s(g, SHAPE(2, 2, 1), VALS(5, 6, 7, 8));
    t = ot_eval(g, gb_matmul(g, x, y, false, false, SP));
    ot_expect(&t, SHAPE(2, 1, 1), VALS(17, 53));
    t = ot_eval(g, gb_matmul(g, x, y, true, true, SP));
    ot_expect(&t, SHAPE(2, 2, 2), VALS(5, 6, 10, 12, 21, 24, 28, 32));
    /* an empty inner dimension gives zeros */
    NodeId e1 = f64s(g, SHAPE(2, 0), NULL, 0), e2 = f64s(g, SHAPE(0, 3), NULL, 0);
    t = ot_eval(g, gb_matmul(g, e1, e2, false, false, SP));
    ot_expect(&t, SHAPE(2, 3), VALS(0, 0, 0, 0, 0, 0));
    free_graph(g);
}

/* ---- random sources ---- */

static void test_random(void **state)
{
    Graph *g = new_graph();
    NodeId lo = gb_const(g, -2, NND_F64, SP), hi = gb_const(g, 3, NND_F64, SP);
    NodeId u = ot_rand(g, OP_RANDU, lo, hi, 11, NND_F64, SHAPE(64));
    NodeId u2 = ot_rand(g, OP_RANDU, lo, hi, 12, NND_F64, SHAPE(64));
    NodeId n = ot_rand(g, OP_RANDN, hi, lo, 11, NND_F64, SHAPE(8));
    InterpBindings b = {.seed = 5};
    NodeId roots[3] = {u, u2, n};
    ITensor out[3], again[3];
    ot_run(g, roots, 3, &b, out);
    ot_run(g, roots, 3, &b, again);
    bool differ = false;
    for (int i = 0; i < 64; i++) {
        assert_true(out[0].v[i] >= -2 && out[0].v[i] < 3);
        assert_true(out[0].v[i] == -2 + 5 * nnd_random_uniform(5, 11, (uint64_t)i));
        assert_true(out[0].v[i] == again[0].v[i]);
        differ |= out[0].v[i] != out[1].v[i];
    }
    assert_true(differ); /* another stream */
    for (int i = 0; i < 8; i++)
        assert_true(out[2].v[i] == 3 + -2 * nnd_random_normal(5, 11, (uint64_t)i));
    for (int i = 0; i < 3; i++) {
        itensor_free(&out[i]);
        itensor_free(&again[i]);
    }
    b.seed = 6;
    ot_run(g, &u, 1, &b, out);
    assert_true(out[0].v[0] != -2 + 5 * nnd_random_uniform(5, 11, 0));
    itensor_free(&out[0]);
    free_graph(g);
}

/* ---- errors ---- */

static void expect_error(Graph *g, NodeId root, const InterpBindings *b, const char *needle)
{
    char err[512] = "";
    ITensor t = {0};
    InterpBindings none = {0};
    assert_false(interp_run(g, &root, 1, b ? b : &none, &t, err, sizeof err));
    assert_null(t.v);
    if (!strstr(err, needle))
        fail_msg("error \"%s\" does not mention \"%s\"", err, needle);
}

static void test_errors(void **state)
{
    Graph *g = new_graph();
    NodeId x = f64s(g, SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6));
    NodeId bad = ot_tensor(g, NND_I32, SHAPE(2), VALS(1, 3));
    expect_error(g, ot_pick(g, x, bad), NULL, "label 3 is out of range for 3 classes");
    NodeId neg = ot_tensor(g, NND_I32, SHAPE(2), VALS(-1, 0));
    expect_error(g, gb_unary(g, OP_EXP, ot_pick(g, x, neg), SP), NULL, "out of range");
    expect_error(g, ot_one_hot(g, bad, 3, NND_F64), NULL, "out of range for one_hot depth 3");

    NodeId p = ot_param(g, 0, NND_F64, SHAPE(2));
    expect_error(g, gb_unary(g, OP_NEG, p, SP), NULL, "parameter param0 has no value");
    ITensor wrong = ot_itensor(NND_F64, SHAPE(3), VALS(1, 2, 3));
    InterpBindings b = {.params = &wrong, .nparams = 1};
    expect_error(g, p, &b, "wrong shape");
    itensor_free(&wrong);
    NodeId st = ot_leaf(g, OP_STATE, 2, NND_F64, SHAPE(1));
    expect_error(g, st, NULL, "state state2 has no value");
    NodeId in = ot_leaf(g, OP_INPUT, 1, NND_F64, SHAPE(1));
    expect_error(g, in, NULL, "input input1 has no value");
    NodeId hy = ot_leaf(g, OP_HYPER, 0, NND_F64, shape_scalar());
    expect_error(g, hy, NULL, "hyper-parameter hyper0 has no value");
    int64_t B = graph_symbol(g, "batch");
    NodeId sym = ot_leaf(g, OP_INPUT, 0, NND_F64, SHAPE(B));
    ITensor bound = ot_itensor(NND_F64, SHAPE(2), VALS(1, 2));
    InterpBindings b2 = {.inputs = &bound, .ninputs = 1};
    expect_error(g, sym, &b2, "symbolic dimension batch has no value");
    itensor_free(&bound);

    /* interp_eval_const computes what depends on nothing bound */
    NodeId k = gb_binary(g, OP_MUL, gb_const(g, 6, NND_F64, SP), gb_const(g, 7, NND_F64, SP), SP);
    ITensor t;
    char err[256];
    assert_true(interp_eval_const(g, k, NULL, 0, &t, err, sizeof err));
    ot_expect(&t, shape_scalar(), VALS(42));
    double hv = 2;
    assert_true(
        interp_eval_const(g, gb_binary(g, OP_ADD, hy, hy, SP), &hv, 1, &t, err, sizeof err));
    ot_expect(&t, shape_scalar(), VALS(4));
    free_graph(g);
}

/* ---- simplify_graph ---- */

static int count_op(Graph *g, NodeId root, OpId op)
{
    bool *live = xcalloc((size_t)graph_count(g), 1);
    graph_mark_live(g, &root, 1, live);
    int n = 0;
    for (int id = 1; id < graph_count(g); id++)
        n += live[id] && graph_node(g, (NodeId)id)->op == op;
    free(live);
    return n;
}

static SimplifyStats simplify1(Graph *g, NodeId *root)
{
    NodeId *roots[1] = {root};
    SimplifyStats st;
    simplify_graph(g, roots, 1, SIMPLIFY_EXACT, &st);
    return st;
}

static void test_simplify_fold(void **state)
{
    Graph *g = new_graph();
    NodeId y = gb_binary(g, OP_MUL, gb_const(g, 2, NND_F64, SP), gb_const(g, 3, NND_F64, SP), SP);
    SimplifyStats st = simplify1(g, &y);
    assert_int_equal(graph_node(g, y)->op, OP_CONST);
    assert_true(graph_node(g, y)->num == 6);
    assert_int_equal(graph_count(g), 2); /* the "no node" and the constant */
    assert_int_equal(st.before, 3);
    assert_int_equal(st.after, 1);
    assert_true(st.folded >= 1);
    free_graph(g);

    /* a chain of broadcast constants folds to one broadcast of one constant */
    g = new_graph();
    Shape s = SHAPE(2, 3);
    NodeId a = gb_full(g, 2, NND_F64, &s, SP), b = gb_full(g, 0.5, NND_F64, &s, SP);
    y = gb_unary(g, OP_EXP, gb_binary(g, OP_SUB, gb_binary(g, OP_MUL, a, b, SP), b, SP), SP);
    simplify1(g, &y);
    Node *n = graph_node(g, y);
    assert_int_equal(n->op, OP_BROADCAST);
    assert_true(shape_equal(&n->shape, &s));
    assert_int_equal(graph_node(g, n->in[0])->op, OP_CONST);
    assert_true(graph_node(g, n->in[0])->num == exp(0.5));
    assert_int_equal(graph_count(g), 3);
    free_graph(g);

    /* an f32 fold rounds like the run-time op */
    g = new_graph();
    y = gb_binary(g, OP_ADD, gb_const(g, 0.1, NND_F32, SP), gb_const(g, 0.2, NND_F32, SP), SP);
    ITensor before = ot_eval(g, y);
    simplify1(g, &y);
    assert_int_equal(graph_node(g, y)->op, OP_CONST);
    assert_true(graph_node(g, y)->num == (double)(0.1f + 0.2f));
    ot_expect(&before, shape_scalar(), VALS((double)(0.1f + 0.2f)));
    free_graph(g);

    /* comparisons and select of constants fold too */
    g = new_graph();
    NodeId c = gb_binary(g, OP_LT, gb_const(g, 1, NND_F64, SP), gb_const(g, 2, NND_F64, SP), SP);
    y = gb_select(g, c, gb_const(g, 5, NND_F64, SP), gb_const(g, 6, NND_F64, SP), SP);
    simplify1(g, &y);
    assert_int_equal(graph_node(g, y)->op, OP_CONST);
    assert_true(graph_node(g, y)->num == 5);
    free_graph(g);
}

/* Run-time values are never folded: a hyper-parameter stays a leaf. */
static void test_simplify_hyper(void **state)
{
    Graph *g = new_graph();
    NodeId h = ot_leaf(g, OP_HYPER, 0, NND_F64, shape_scalar());
    NodeId y = gb_binary(g, OP_MUL, gb_unary(g, OP_EXP, h, SP), gb_const(g, 2, NND_F64, SP), SP);
    simplify1(g, &y);
    assert_int_equal(graph_node(g, y)->op, OP_MUL);
    assert_int_equal(count_op(g, y, OP_HYPER), 1);
    assert_int_equal(count_op(g, y, OP_EXP), 1);
    double hv = 1;
    ITensor t;
    char err[256];
    assert_true(interp_eval_const(g, y, &hv, 1, &t, err, sizeof err));
    ot_expect(&t, shape_scalar(), VALS(2 * exp(1)));
    free_graph(g);
}

static void test_simplify_cse_dce(void **state)
{
    Graph *g = new_graph();
    Shape s = SHAPE(3);
    NodeId x = ot_param(g, 0, NND_F64, s), w = ot_param(g, 1, NND_F64, s);
    NodeId a1 = gb_binary(g, OP_ADD, x, w, SP), a2 = gb_binary(g, OP_ADD, x, w, SP);
    NodeId x2 = ot_param(g, 0, NND_F64, s); /* the same parameter again */
    NodeId dead = gb_unary(g, OP_EXP, gb_binary(g, OP_SUB, x, w, SP), SP);
    (void)dead;
    NodeId y = gb_binary(g, OP_MUL, gb_binary(g, OP_MUL, a1, a2, SP), x2, SP);
    SimplifyStats st = simplify1(g, &y);
    assert_true(st.merged >= 2);
    Node *top = graph_node(g, y), *m = graph_node(g, top->in[0]);
    assert_int_equal(m->op, OP_MUL);
    assert_int_equal(m->in[0], m->in[1]); /* the two adds are one */
    assert_int_equal(count_op(g, y, OP_ADD), 1);
    assert_int_equal(count_op(g, y, OP_PARAM), 2);
    /* the dead nodes are gone from the graph itself */
    for (int id = 1; id < graph_count(g); id++) {
        assert_int_not_equal(graph_node(g, (NodeId)id)->op, OP_EXP);
        assert_int_not_equal(graph_node(g, (NodeId)id)->op, OP_SUB);
    }
    assert_int_equal(graph_count(g) - 1, st.after);
    assert_int_equal(st.after, 5); /* x, w, add, mul, mul */
    free_graph(g);
}

/* Nodes that differ only in an attribute are not merged. */
static void test_simplify_cse_attrs(void **state)
{
    Graph *g = new_graph();
    NodeId x = ot_param(g, 0, NND_F64, SHAPE(2, 2, 2));
    NodeId v = ot_param(g, 1, NND_F64, SHAPE(4));
    NodeId pairs[8][2];
    pairs[0][0] = gb_transpose(g, x, (int[]){1, 0, 2}, SP);
    pairs[0][1] = gb_transpose(g, x, (int[]){0, 2, 1}, SP);
    pairs[1][0] = ot_slice(g, v, (int64_t[]){0}, (int64_t[]){1}, SHAPE(2));
    pairs[1][1] = ot_slice(g, v, (int64_t[]){1}, (int64_t[]){1}, SHAPE(2));
    pairs[2][0] = ot_slice(g, v, (int64_t[]){0}, (int64_t[]){1}, SHAPE(2));
    pairs[2][1] = ot_slice(g, v, (int64_t[]){0}, (int64_t[]){2}, SHAPE(2));
    NodeId sq = gb_reshape(g, x, &(Shape){2, {2, 4}}, SP);
    pairs[3][0] = gb_reduce(g, OP_SUM, x, 0x1, false, SP);
    pairs[3][1] = gb_reduce(g, OP_SUM, x, 0x2, false, SP);
    pairs[4][0] = gb_matmul(g, x, x, false, false, SP);
    pairs[4][1] = gb_matmul(g, x, x, true, false, SP);
    pairs[5][0] = gb_reshape(g, gb_reduce(g, OP_SUM, sq, 0x1, true, SP), &(Shape){1, {4}}, SP);
    pairs[5][1] = gb_reshape(g, gb_reduce(g, OP_MEAN, sq, 0x1, true, SP), &(Shape){1, {4}}, SP);
    NodeId lo = gb_const(g, 0, NND_F64, SP), hi = gb_const(g, 1, NND_F64, SP);
    pairs[6][0] = ot_rand(g, OP_RANDU, lo, hi, 1, NND_F64, SHAPE(4));
    pairs[6][1] = ot_rand(g, OP_RANDU, lo, hi, 2, NND_F64, SHAPE(4));
    pairs[7][0] = ot_pad(g, pairs[1][0], (int64_t[]){0}, (int64_t[]){1}, SHAPE(4));
    pairs[7][1] = ot_pad(g, pairs[1][0], (int64_t[]){2}, (int64_t[]){1}, SHAPE(4));
    ITensor pv[2];
    pv[0] = ot_itensor(NND_F64, SHAPE(2, 2, 2), VALS(1, 2, 3, 4, 5, 6, 7, 8));
    pv[1] = ot_itensor(NND_F64, SHAPE(4), VALS(1, 10, 100, 1000));
    InterpBindings b = {.params = pv, .nparams = 2, .seed = 3};
    NodeId roots[8];
    NodeId *rp[8];
    for (int i = 0; i < 8; i++) {
        NodeId d = gb_binary(g, OP_SUB, pairs[i][0], pairs[i][1], SP);
        roots[i] = ot_sum_all(g, gb_unary(g, OP_ABS, d, SP));
        rp[i] = &roots[i];
    }
    ITensor before[8], after[8];
    ot_run(g, roots, 8, &b, before);
    simplify_graph(g, rp, 8, SIMPLIFY_EXACT, NULL);
    ot_run(g, roots, 8, &b, after);
    for (int i = 0; i < 8; i++) {
        if (!(before[i].v[0] > 0))
            fail_msg("pair %d: the two nodes compute the same values", i);
        if (before[i].v[0] != after[i].v[0])
            fail_msg("pair %d: %g before simplify_graph, %g after", i, before[i].v[0],
                     after[i].v[0]);
        itensor_free(&before[i]);
        itensor_free(&after[i]);
    }
    itensor_free(&pv[0]);
    itensor_free(&pv[1]);
    free_graph(g);
}

/* Builds root = f(x) on a fresh graph, simplifies it, and checks that the result is
 * the node want() names in the new graph. */
static void test_simplify_identities(void **state)
{
    Shape s = SHAPE(2, 3);
    for (int k = 0; k < 11; k++) {
        Graph *g = new_graph();
        NodeId x = ot_param(g, 0, NND_F64, s);
        NodeId zero = gb_full(g, 0, NND_F64, &s, SP), one = gb_full(g, 1, NND_F64, &s, SP);
        NodeId y;
        switch (k) {
        case 0:
            y = gb_binary(g, OP_ADD, x, zero, SP);
            break;
        case 1:
            y = gb_binary(g, OP_ADD, zero, x, SP);
            break;
        case 2:
            y = gb_binary(g, OP_SUB, x, zero, SP);
            break;
        case 3:
            y = gb_binary(g, OP_MUL, x, one, SP);
            break;
        case 4:
            y = gb_binary(g, OP_MUL, one, x, SP);
            break;
        case 5:
            y = gb_binary(g, OP_DIV, x, one, SP);
            break;
        case 6:
            y = gb_binary(g, OP_POW, x, one, SP);
            break;
        case 7:
            y = gb_unary(g, OP_NEG, gb_unary(g, OP_NEG, x, SP), SP);
            break;
        case 8: {
            NodeId t = gb_transpose(g, x, (int[]){1, 0}, SP);
            y = gb_transpose(g, t, (int[]){1, 0}, SP);
            break;
        }
        case 9:
            y = ot_cast(g, x, NND_F64);
            break;
        default:
            y = gb_reduce(g, OP_SUM, x, 0, false, SP);
            break;
        }
        NodeId *roots[2] = {&y, &x};
        SimplifyStats st;
        simplify_graph(g, roots, 2, SIMPLIFY_EXACT, &st);
        if (y != x)
            fail_msg("identity case %d: root is %s, not the parameter", k,
                     op_info[graph_node(g, y)->op].name);
        assert_true(st.identities >= 1);
        assert_int_equal(graph_count(g), 2);
        free_graph(g);
    }
}

static void test_simplify_rewrites(void **state)
{
    Shape s = SHAPE(2, 3);
    /* x^2 becomes x * x, with the same bits */
    Graph *g = new_graph();
    NodeId x = ot_param(g, 0, NND_F64, s);
    NodeId y = gb_binary(g, OP_POW, x, gb_full(g, 2, NND_F64, &s, SP), SP);
    ITensor xv2 = ot_itensor(NND_F64, s,
                             VALS(0x1.37dea42457f8p-5, 0x1.28f519f6cc5bp-1, -3, 0.1, -0.0, 1e200));
    InterpBindings b2 = {.params = &xv2, .nparams = 1};
    ITensor sq_before, sq_after;
    ot_run(g, &y, 1, &b2, &sq_before);
    NodeId *roots[2] = {&y, &x};
    simplify_graph(g, roots, 2, SIMPLIFY_EXACT, NULL);
    assert_int_equal(graph_node(g, y)->op, OP_MUL);
    assert_int_equal(graph_node(g, y)->in[0], x);
    assert_int_equal(graph_node(g, y)->in[1], x);
    ot_run(g, &y, 1, &b2, &sq_after);
    assert_memory_equal(sq_before.v, sq_after.v, sizeof(double) * 6);
    itensor_free(&sq_before);
    itensor_free(&sq_after);
    itensor_free(&xv2);
    free_graph(g);

    /* x / s for a broadcast scalar s: a multiplication by 1/s, in the fast mode only */
    for (int mode = SIMPLIFY_EXACT; mode <= SIMPLIFY_FAST; mode++) {
        g = new_graph();
        x = ot_param(g, 0, NND_F64, s);
        NodeId h = ot_leaf(g, OP_HYPER, 0, NND_F64, shape_scalar());
        y = gb_binary(g, OP_DIV, x, gb_broadcast(g, h, &s, SP), SP);
        simplify_graph(g, roots, 2, (SimplifyMode)mode, NULL);
        Node *yn = graph_node(g, y);
        assert_int_equal(yn->op, mode == SIMPLIFY_FAST ? OP_MUL : OP_DIV);
        if (mode == SIMPLIFY_FAST) {
            Node *r = graph_node(g, graph_node(g, yn->in[1])->in[0]);
            assert_int_equal(r->op, OP_DIV); /* 1 / h, once */
            assert_int_equal(r->shape.rank, 0);
        }
        free_graph(g);
    }

    /* x^0.5 stays a power: sqrt differs at -0 and -inf, and in the last bit */
    g = new_graph();
    x = ot_param(g, 0, NND_F64, s);
    y = gb_binary(g, OP_POW, x, gb_full(g, 0.5, NND_F64, &s, SP), SP);
    simplify_graph(g, roots, 2, SIMPLIFY_EXACT, NULL);
    assert_int_equal(graph_node(g, y)->op, OP_POW);
    free_graph(g);

    /* two transposes compose into one */
    g = new_graph();
    x = ot_param(g, 0, NND_F64, SHAPE(2, 3, 4));
    NodeId t = gb_transpose(g, gb_transpose(g, x, (int[]){1, 2, 0}, SP), (int[]){0, 2, 1}, SP);
    ITensor xv = ot_itensor(NND_F64, SHAPE(2, 3, 4),
                            (const double[]){0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                             12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23},
                            24);
    InterpBindings b = {.params = &xv, .nparams = 1};
    ITensor before, after;
    ot_run(g, &t, 1, &b, &before);
    NodeId *rt[1] = {&t};
    simplify_graph(g, rt, 1, SIMPLIFY_EXACT, NULL);
    assert_int_equal(count_op(g, t, OP_TRANSPOSE), 1);
    ot_run(g, &t, 1, &b, &after);
    assert_int_equal(before.n, after.n);
    assert_memory_equal(before.v, after.v, sizeof(double) * (size_t)before.n);
    itensor_free(&before);
    itensor_free(&after);
    itensor_free(&xv);
    free_graph(g);

    /* transposes fold into the matmul flags, all four ways: op(T a) @ op(T c) */
    for (int k = 0; k < 4; k++) {
        g = new_graph();
        bool ta = k & 1, tb = k & 2;
        /* shaped so that op(T a) is [2, 4, 3] and op(T c) is [2, 3, 4] */
        NodeId a = ot_param(g, 0, NND_F64, ta ? SHAPE(2, 4, 3) : SHAPE(2, 3, 4));
        NodeId c = ot_param(g, 1, NND_F64, tb ? SHAPE(2, 3, 4) : SHAPE(2, 4, 3));
        NodeId m = gb_matmul(g, gb_transpose(g, a, (int[]){0, 2, 1}, SP),
                             gb_transpose(g, c, (int[]){0, 2, 1}, SP), ta, tb, SP);
        Shape as = graph_node(g, a)->shape, cs = graph_node(g, c)->shape;
        ITensor pv[2];
        double v[24];
        for (int i = 0; i < 24; i++)
            v[i] = (i * 7 % 11) - 5;
        pv[0] = ot_itensor(NND_F64, as, v, 24);
        for (int i = 0; i < 24; i++)
            v[i] = (i * 5 % 13) - 6;
        pv[1] = ot_itensor(NND_F64, cs, v, 24);
        InterpBindings pb = {.params = pv, .nparams = 2};
        ot_run(g, &m, 1, &pb, &before);
        NodeId *rm[1] = {&m};
        simplify_graph(g, rm, 1, SIMPLIFY_EXACT, NULL);
        assert_int_equal(count_op(g, m, OP_TRANSPOSE), 0);
        Node *mn = graph_node(g, m);
        assert_int_equal(mn->op, OP_MATMUL);
        assert_int_equal(graph_node(g, mn->in[0])->op, OP_PARAM);
        assert_int_equal(graph_node(g, mn->in[1])->op, OP_PARAM);
        assert_int_equal(mn->ta, !ta);
        assert_int_equal(mn->tb, !tb);
        ot_run(g, &m, 1, &pb, &after);
        assert_memory_equal(before.v, after.v, sizeof(double) * (size_t)before.n);
        itensor_free(&before);
        itensor_free(&after);
        itensor_free(&pv[0]);
        itensor_free(&pv[1]);
        free_graph(g);
    }

    /* reshape of a reshape, broadcast of a broadcast, select on a constant */
    g = new_graph();
    x = ot_param(g, 0, NND_F64, SHAPE(6));
    NodeId r = gb_reshape(g, gb_reshape(g, x, &(Shape){2, {2, 3}}, SP), &(Shape){2, {3, 2}}, SP);
    NodeId bc =
        gb_broadcast(g, gb_broadcast(g, r, &(Shape){3, {1, 3, 2}}, SP), &(Shape){3, {4, 3, 2}}, SP);
    NodeId cond = gb_full(g, 1, NND_BOOL, &(Shape){3, {4, 3, 2}}, SP);
    y = gb_select(g, cond, bc, gb_unary(g, OP_EXP, bc, SP), SP);
    simplify1(g, &y);
    assert_int_equal(graph_node(g, y)->op, OP_BROADCAST);
    assert_int_equal(count_op(g, y, OP_RESHAPE), 1);
    assert_int_equal(count_op(g, y, OP_BROADCAST), 1);
    assert_int_equal(count_op(g, y, OP_EXP), 0);
    free_graph(g);
}

/* Simplification with rules off only renumbers, merges and drops dead nodes. */
static void test_simplify_no_rules(void **state)
{
    Graph *g = new_graph();
    NodeId x = ot_param(g, 0, NND_F64, SHAPE(2));
    NodeId zero = gb_full(g, 0, NND_F64, &(Shape){1, {2}}, SP);
    gb_unary(g, OP_EXP, x, SP); /* dead */
    NodeId y = gb_binary(g, OP_ADD, x, zero, SP);
    NodeId *roots[1] = {&y};
    SimplifyStats st;
    simplify_graph(g, roots, 1, SIMPLIFY_NONE, &st);
    assert_int_equal(graph_node(g, y)->op, OP_ADD);
    assert_int_equal(st.folded, 0);
    assert_int_equal(st.identities, 0);
    assert_int_equal(count_op(g, y, OP_EXP), 0);
    free_graph(g);
}

/* ---- simplify_graph on random graphs: bit-identical results ---- */

typedef struct RandGraph {
    Graph *g;
    OtRng rng;
    NndDType dt;
    NodeId pool[64]; /* nodes of shape [3, 4] */
    int n;
} RandGraph;

static NodeId pick_node(RandGraph *r)
{
    return r->pool[ot_next(&r->rng) % (uint64_t)r->n];
}

static void push_node(RandGraph *r, NodeId id)
{
    if (r->n < 64)
        r->pool[r->n++] = id;
    else
        r->pool[ot_next(&r->rng) % 64] = id;
}

static NodeId rand_full(RandGraph *r, double v)
{
    return gb_full(r->g, v, r->dt, &(Shape){2, {3, 4}}, SP);
}

/* One random step: a new [3, 4] node built from the pool. */
static NodeId rand_step(RandGraph *r)
{
    Graph *g = r->g;
    Shape s = SHAPE(3, 4);
    static const OpId un[] = {OP_NEG, OP_EXP,  OP_TANH, OP_SIGMOID, OP_ABS,  OP_SIN,
                              OP_COS, OP_RELU, OP_SIGN, OP_FLOOR,   OP_SQRT, OP_LOG};
    static const OpId bin[] = {OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MIN, OP_MAX};
    /* x + 0 is left out: simplify_graph rewrites it to x, which differs for x = -0 */
    static const struct {
        OpId op;
        double k;
    } with_const[] = {{OP_SUB, 0}, {OP_MUL, 1}, {OP_DIV, 1}, {OP_ADD, 1},  {OP_MUL, 2},
                      {OP_DIV, 2}, {OP_MIN, 0}, {OP_MAX, 0}, {OP_SUB, -1}, {OP_MUL, 0}};
    NodeId a = pick_node(r), b = pick_node(r);
    switch (ot_next(&r->rng) % 12) {
    case 0: {
        OpId op = un[ot_next(&r->rng) % NND_ARRAY_LEN(un)];
        if (op == OP_SQRT || op == OP_LOG)
            a = gb_unary(g, OP_ABS, a, SP);
        if (op == OP_EXP)
            a = gb_unary(g, OP_TANH, a, SP);
        return gb_unary(g, op, a, SP);
    }
    case 1:
    case 2:
        return gb_binary(g, bin[ot_next(&r->rng) % NND_ARRAY_LEN(bin)], a, b, SP);
    case 3: { /* an operand that is a constant: identities and folds */
        int k = (int)(ot_next(&r->rng) % NND_ARRAY_LEN(with_const));
        NodeId c = rand_full(r, with_const[k].k);
        return ot_next(&r->rng) & 1 ? gb_binary(g, with_const[k].op, a, c, SP)
                                    : gb_binary(g, with_const[k].op, c, a, SP);
    }
    case 4: { /* constants only: folds */
        NodeId c = gb_binary(g, OP_MUL, rand_full(r, 1.5), rand_full(r, 0.1), SP);
        return gb_binary(g, OP_ADD, a, gb_unary(g, OP_EXP, c, SP), SP);
    }
    case 5: /* pow by a constant: the x^1 and x^2 rules (x^0.5 becomes sqrt x, which can
             * differ from pow in the last bit, so it is left out) */
        return gb_binary(g, OP_POW, gb_unary(g, OP_ABS, a, SP),
                         rand_full(r, (double[]){1, 2, 3, -1}[ot_next(&r->rng) % 4]), SP);
    case 6:
        return gb_select(g, gb_binary(g, OP_GT, a, b, SP), a, gb_unary(g, OP_NEG, b, SP), SP);
    case 7: { /* matmul through transposes: [3,4] @ ([4,3] @ [3,4]) */
        NodeId bt = gb_transpose(g, b, (int[]){1, 0}, SP);
        NodeId m = gb_matmul(g, bt, pick_node(r), false, false, SP);
        NodeId out = gb_matmul(g, a, m, false, false, SP);
        return gb_binary(g, OP_MUL, gb_unary(g, OP_TANH, out, SP), rand_full(r, 0.25), SP);
    }
    case 8: { /* a reduction spread back */
        static const OpId red[] = {OP_SUM, OP_MEAN, OP_RMAX, OP_LOGSUMEXP};
        uint32_t mask = 1u + (uint32_t)(ot_next(&r->rng) % 3);
        NodeId v = gb_reduce(g, red[ot_next(&r->rng) % 4], a, mask, true, SP);
        return gb_broadcast(g, v, &s, SP);
    }
    case 9: { /* layout round trips */
        NodeId t = gb_transpose(g, gb_transpose(g, a, (int[]){1, 0}, SP), (int[]){1, 0}, SP);
        NodeId rs = gb_reshape(g, gb_reshape(g, t, &(Shape){1, {12}}, SP), &s, SP);
        NodeId sl = ot_slice(g, rs, (int64_t[]){0, 1}, (int64_t[]){2, 2}, SHAPE(2, 2));
        return gb_binary(g, OP_ADD, ot_pad(g, sl, (int64_t[]){0, 1}, (int64_t[]){2, 2}, s),
                         gb_unary(g, OP_NEG, gb_unary(g, OP_NEG, b, SP), SP), SP);
    }
    case 10: /* the same expression twice: CSE */
        return gb_binary(g, OP_MUL, gb_binary(g, OP_SUB, a, b, SP), gb_binary(g, OP_SUB, a, b, SP),
                         SP);
    default: { /* hyper-parameters and casts */
        NodeId h = ot_leaf(g, OP_HYPER, 0, r->dt, shape_scalar());
        NodeId c = gb_cast(g, gb_cast(g, a, r->dt == NND_F64 ? NND_F32 : NND_F64, SP), r->dt, SP);
        return gb_binary(g, OP_MUL, c, gb_broadcast(g, h, &s, SP), SP);
    }
    }
}

static bool same_bits(const ITensor *a, const ITensor *b)
{
    if (a->n != b->n || a->rank != b->rank || a->dtype != b->dtype)
        return false;
    for (int64_t i = 0; i < a->n; i++) {
        if (isnan(a->v[i]) && isnan(b->v[i]))
            continue;
        if (memcmp(&a->v[i], &b->v[i], sizeof(double)) != 0)
            return false;
    }
    return true;
}

static void test_simplify_random(void **state)
{
    SimplifyStats total = {0};
    for (int trial = 0; trial < 200; trial++) {
        RandGraph r = {
            new_graph(), {(uint64_t)trial * 7919 + 1}, trial % 2 ? NND_F32 : NND_F64, {0}, 0};
        Graph *g = r.g;
        Shape s = SHAPE(3, 4);
        for (int i = 0; i < 3; i++)
            push_node(&r, ot_param(g, i, r.dt, s));
        push_node(&r, rand_full(&r, 0.75));
        for (int step = 0; step < 60; step++)
            push_node(&r, rand_step(&r));
        /* every node still in the pool is a root, and so is one sum */
        int nr = r.n + 1;
        NodeId roots[65];
        NodeId *rp[65];
        for (int i = 0; i < r.n; i++)
            roots[i] = r.pool[i];
        roots[r.n] = ot_sum_all(g, pick_node(&r));
        for (int i = 0; i < nr; i++)
            rp[i] = &roots[i];
        ITensor pv[3];
        for (int i = 0; i < 3; i++) {
            double v[12];
            for (int k = 0; k < 12; k++)
                v[k] = itensor_round(r.dt, ot_uniform(&r.rng, -2, 2));
            pv[i] = ot_itensor(r.dt, s, v, 12);
        }
        double hv = 0.3;
        InterpBindings b = {.params = pv, .nparams = 3, .hypers = &hv, .nhypers = 1};
        ITensor before[65], after[65];
        ot_run(g, roots, nr, &b, before);
        SimplifyStats st;
        simplify_graph(g, rp, nr, SIMPLIFY_EXACT, &st);
        assert_true(st.after <= st.before);
        total.folded += st.folded;
        total.identities += st.identities;
        total.merged += st.merged;
        total.before += st.before;
        total.after += st.after;
        ot_run(g, roots, nr, &b, after);
        for (int k = 0; k < nr; k++) {
            if (!same_bits(&before[k], &after[k])) {
                for (int64_t i = 0; i < before[k].n; i++)
                    print_error("  [%lld] %.17g vs %.17g\n", (long long)i, before[k].v[i],
                                after[k].v[i]);
                fail_msg("trial %d (%s): root %d (%s) differs after simplify_graph", trial,
                         dtype_name(r.dt), k, op_info[graph_node(g, roots[k])->op].name);
            }
            itensor_free(&before[k]);
            itensor_free(&after[k]);
        }
        /* simplifying again changes nothing */
        int count = graph_count(g);
        simplify_graph(g, rp, nr, SIMPLIFY_EXACT, &st);
        assert_int_equal(graph_count(g), count);
        for (int i = 0; i < 3; i++)
            itensor_free(&pv[i]);
        free_graph(g);
    }
    /* the graphs exercised every kind of rewrite */
    assert_true(total.folded > 100 && total.identities > 100 && total.merged > 100);
    assert_true(total.after < total.before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leaves),
        cmocka_unit_test(test_unary),
        cmocka_unit_test(test_binary),
        cmocka_unit_test(test_compare_logic),
        cmocka_unit_test(test_select),
        cmocka_unit_test(test_cast_rounding),
        cmocka_unit_test(test_f32_rounding),
        cmocka_unit_test(test_broadcast),
        cmocka_unit_test(test_reshape_transpose),
        cmocka_unit_test(test_slice_pad),
        cmocka_unit_test(test_reduce),
        cmocka_unit_test(test_logsumexp),
        cmocka_unit_test(test_mean_symbolic),
        cmocka_unit_test(test_argmax),
        cmocka_unit_test(test_pick_one_hot),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_simplify_fold),
        cmocka_unit_test(test_simplify_hyper),
        cmocka_unit_test(test_simplify_cse_dce),
        cmocka_unit_test(test_simplify_cse_attrs),
        cmocka_unit_test(test_simplify_identities),
        cmocka_unit_test(test_simplify_rewrites),
        cmocka_unit_test(test_simplify_no_rules),
        cmocka_unit_test(test_simplify_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
