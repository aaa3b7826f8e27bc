/* Exact-value tests of the reference interpreter, op by op, on small hand-computed
 * inputs (convolution and pooling also against direct loops written here, over
 * every attribute combination); its error paths; and simplify_graph: folding, CSE,
 * DCE, the algebraic identities, and bit-identical results before and after on
 * random graphs. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* cmocka.h needs the headers above, included before it */
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

/* ---- concat, take, scatter-add ---- */

/* Row-major strides of a shape. */
static void strides(const Shape *s, int64_t *st)
{
    int64_t k = 1;
    for (int i = s->rank - 1; i >= 0; i--) {
        st[i] = k;
        k *= s->d[i];
    }
}

static void test_concat(void **state)
{
    Shape a = SHAPE(3, 2, 2);
    struct {
        int axis;
        Shape b;
    } cases[] = {{0, SHAPE(1, 2, 2)}, {1, SHAPE(3, 3, 2)}, {2, SHAPE(3, 2, 1)}};
    for (size_t i = 0; i < NND_ARRAY_LEN(cases); i++) {
        Graph *g = new_graph();
        int ax = cases[i].axis;
        Shape b = cases[i].b, y = a;
        y.d[ax] += b.d[ax];
        int64_t na = shape_static_numel(&a, NULL), nb = shape_static_numel(&b, NULL);
        double av[64], bv[64], want[128];
        for (int64_t k = 0; k < na; k++)
            av[k] = (double)k;
        for (int64_t k = 0; k < nb; k++)
            bv[k] = -1 - (double)k;
        /* y[i] = a[i] where i[ax] < a[ax], else b[i with i[ax] - a[ax]] */
        int64_t ys[4], as[4], bs[4];
        strides(&y, ys);
        strides(&a, as);
        strides(&b, bs);
        int64_t ny = shape_static_numel(&y, NULL);
        for (int64_t e = 0; e < ny; e++) {
            int64_t ix[4], rem = e, at = 0, bt = 0;
            for (int k = 0; k < 3; k++) {
                ix[k] = rem / ys[k];
                rem %= ys[k];
            }
            bool in_a = ix[ax] < a.d[ax];
            for (int k = 0; k < 3; k++) {
                at += ix[k] * as[k];
                bt += (k == ax ? ix[k] - a.d[ax] : ix[k]) * bs[k];
            }
            want[e] = in_a ? av[at] : bv[bt];
        }
        NodeId c = ot_concat(g, f64s(g, a, av, (int)na), f64s(g, b, bv, (int)nb), ax);
        ITensor t = ot_eval(g, c);
        ot_expect_dt(&t, NND_F64, y, want, (int)ny);
        free_graph(g);
    }
    Graph *g = new_graph();
    NodeId p = f64s(g, SHAPE(2), VALS(1, 2)), q = f64s(g, SHAPE(3), VALS(3, 4, 5));
    ITensor t = ot_eval(g, ot_concat(g, q, p, 0));
    ot_expect(&t, SHAPE(5), VALS(3, 4, 5, 1, 2));
    /* an empty part, and i32 values */
    NodeId e = f64s(g, SHAPE(0, 2), NULL, 0), r = f64s(g, SHAPE(1, 2), VALS(7, 8));
    t = ot_eval(g, ot_concat(g, e, r, 0));
    ot_expect(&t, SHAPE(1, 2), VALS(7, 8));
    NodeId i1 = ot_tensor(g, NND_I32, SHAPE(1, 1), VALS(4)),
           i2 = ot_tensor(g, NND_I32, SHAPE(1, 2), VALS(5, 6));
    t = ot_eval(g, ot_concat(g, i1, i2, 1));
    ot_expect_dt(&t, NND_I32, SHAPE(1, 3), VALS(4, 5, 6));
    free_graph(g);
}

static void test_take_scatter(void **state)
{
    Graph *g = new_graph();
    NodeId table = f64s(g, SHAPE(4, 2), VALS(0, 1, 10, 11, 20, 21, 30, 31));
    NodeId idx = ot_tensor(g, NND_I32, SHAPE(2, 3), VALS(3, 0, 3, 1, 1, 1));
    ITensor t = ot_eval(g, ot_take(g, table, idx));
    ot_expect_dt(&t, NND_F64, SHAPE(2, 3, 2), VALS(30, 31, 0, 1, 30, 31, 10, 11, 10, 11, 10, 11));
    /* a rank-1 table gives one value per index; a scalar index one row */
    NodeId col = f64s(g, SHAPE(3), VALS(5, 6, 7));
    t = ot_eval(g, ot_take(g, col, ot_tensor(g, NND_I32, SHAPE(4), VALS(2, 2, 0, 1))));
    ot_expect(&t, SHAPE(4), VALS(7, 7, 5, 6));
    t = ot_eval(g, ot_take(g, table, ot_tensor(g, NND_I32, shape_scalar(), VALS(2))));
    ot_expect(&t, SHAPE(2), VALS(20, 21));
    /* scatter-add accumulates repeated indices; rows never hit stay zero */
    NodeId rows = f64s(g, SHAPE(2, 3, 2), VALS(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12));
    t = ot_eval(g, ot_scatter(g, idx, rows, 5));
    ot_expect_dt(&t, NND_F64, SHAPE(5, 2),
                 VALS(3, 4, 7 + 9 + 11, 8 + 10 + 12, 0, 0, 1 + 5, 2 + 6, 0, 0));
    NodeId flat = ot_tensor(g, NND_I32, SHAPE(5), VALS(2, 2, 0, 2, 1));
    t = ot_eval(g, ot_scatter(g, flat, f64s(g, SHAPE(5), VALS(1, 2, 4, 8, 16)), 4));
    ot_expect(&t, SHAPE(4), VALS(4, 16, 11, 0));
    /* scatter(take(t)) with each row taken once is t */
    NodeId perm = ot_tensor(g, NND_I32, SHAPE(4), VALS(2, 0, 3, 1));
    t = ot_eval(g, ot_scatter(g, perm, ot_take(g, table, perm), 4));
    ot_expect(&t, SHAPE(4, 2), VALS(0, 1, 10, 11, 20, 21, 30, 31));
    free_graph(g);
}

/* ---- convolution: direct loops over an explicitly padded image ---- */

static int64_t conv_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d)
{
    return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

/* y[n, o, i, j] = sum over c in o's group, ki, kj of
 * xpad[n, c, i sh + ki dh, j sw + kj dw] w[o, c - group start, ki, kj] */
static void ref_conv(const OtConvCase *k, const double *x, const double *w, double *y)
{
    const int64_t *a = k->a;
    int64_t hp = k->h + 2 * a[2], wp = k->w + 2 * a[3], cg = k->c / a[6], og = k->o / a[6];
    int64_t oh = conv_out(k->h, k->kh, a[0], a[2], a[4]),
            ow = conv_out(k->w, k->kw, a[1], a[3], a[5]);
    double *xp = xcalloc((size_t)(k->n * k->c * hp * wp), sizeof(double));
    for (int64_t p = 0; p < k->n * k->c; p++)
        for (int64_t i = 0; i < k->h; i++)
            for (int64_t j = 0; j < k->w; j++)
                xp[(p * hp + i + a[2]) * wp + j + a[3]] = x[(p * k->h + i) * k->w + j];
    for (int64_t n = 0; n < k->n; n++)
        for (int64_t o = 0; o < k->o; o++)
            for (int64_t i = 0; i < oh; i++)
                for (int64_t j = 0; j < ow; j++) {
                    double s = 0;
                    for (int64_t c = 0; c < cg; c++)
                        for (int64_t ki = 0; ki < k->kh; ki++)
                            for (int64_t kj = 0; kj < k->kw; kj++) {
                                int64_t ch = (o / og) * cg + c;
                                int64_t r = i * a[0] + ki * a[4], q = j * a[1] + kj * a[5];
                                s += xp[((n * k->c + ch) * hp + r) * wp + q] *
                                     w[((o * cg + c) * k->kh + ki) * k->kw + kj];
                            }
                    y[((n * k->o + o) * oh + i) * ow + j] = s;
                }
    free(xp);
}

static double dot(const double *a, const double *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* Small integers, so that every sum is exact whatever its order. */
static void small_ints(OtRng *r, double *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        v[i] = (double)(int)(ot_next(r) % 7) - 3;
}

/* conv2d against the direct loops; conv2d_gx and conv2d_gw against the adjoint
 * definitions <gx(dy, w), e> = <dy, conv(e, w)> and <gw(x, dy), e> = <dy, conv(x, e)>
 * for each basis tensor e. */
static void test_conv2d(void **state)
{
    OtRng rng = {99};
    for (size_t ci = 0; ci < ot_nconv_cases; ci++) {
        const OtConvCase *k = &ot_conv_cases[ci];
        ot_case = k->name;
        Shape xs = ot_conv_x_shape(k), ws = ot_conv_w_shape(k);
        Shape ys = SHAPE(k->n, k->o, conv_out(k->h, k->kh, k->a[0], k->a[2], k->a[4]),
                         conv_out(k->w, k->kw, k->a[1], k->a[3], k->a[5]));
        int64_t nx = shape_static_numel(&xs, NULL), nw = shape_static_numel(&ws, NULL);
        int64_t ny = shape_static_numel(&ys, NULL);
        double *x = xmalloc(sizeof(double) * (size_t)nx), *w = xmalloc(sizeof(double) * (size_t)nw);
        double *dy = xmalloc(sizeof(double) * (size_t)ny),
               *y = xmalloc(sizeof(double) * (size_t)ny);
        double *gx = xmalloc(sizeof(double) * (size_t)nx),
               *gw = xmalloc(sizeof(double) * (size_t)nw);
        double *e = xcalloc((size_t)NND_MAX(nx, nw), sizeof(double));
        double *t = xmalloc(sizeof(double) * (size_t)ny);
        small_ints(&rng, x, nx);
        small_ints(&rng, w, nw);
        small_ints(&rng, dy, ny);
        ref_conv(k, x, w, y);
        for (int64_t i = 0; i < nx; i++) {
            e[i] = 1;
            ref_conv(k, e, w, t);
            gx[i] = dot(dy, t, ny);
            e[i] = 0;
        }
        for (int64_t i = 0; i < nw; i++) {
            e[i] = 1;
            ref_conv(k, x, e, t);
            gw[i] = dot(dy, t, ny);
            e[i] = 0;
        }
        Graph *g = new_graph();
        NodeId xn = f64s(g, xs, x, (int)nx), wn = f64s(g, ws, w, (int)nw);
        NodeId dyn = f64s(g, ys, dy, (int)ny);
        NodeId roots[3] = {ot_conv(g, OP_CONV2D, xn, wn, k->a, shape_scalar()),
                           ot_conv(g, OP_CONV2D_GX, dyn, wn, k->a, xs),
                           ot_conv(g, OP_CONV2D_GW, xn, dyn, k->a, ws)};
        ITensor out[3];
        ot_run(g, roots, 3, NULL, out);
        ot_expect_dt(&out[0], NND_F64, ys, y, (int)ny);
        ot_expect_dt(&out[1], NND_F64, xs, gx, (int)nx);
        ot_expect_dt(&out[2], NND_F64, ws, gw, (int)nw);
        free_graph(g);
        free(x), free(w), free(dy), free(y), free(gx), free(gw), free(e), free(t);
    }
    ot_case = NULL;
    /* cross-correlation, as PyTorch: w = [[1, 0], [0, -1]] gives x[i,j] - x[i+1,j+1] */
    Graph *g = new_graph();
    const int64_t plain[7] = {1, 1, 0, 0, 1, 1, 1};
    NodeId x = f64s(g, SHAPE(1, 1, 3, 3), VALS(1, 2, 3, 4, 5, 6, 7, 8, 10));
    NodeId w = f64s(g, SHAPE(1, 1, 2, 2), VALS(1, 0, 0, -1));
    ITensor t = ot_eval(g, ot_conv(g, OP_CONV2D, x, w, plain, shape_scalar()));
    ot_expect(&t, SHAPE(1, 1, 2, 2), VALS(-4, -4, -4, -5));
    /* f32: the sum rounds once */
    NodeId xf = ot_tensor(g, NND_F32, SHAPE(1, 1, 1, 3), VALS(16777216, 1, 1));
    NodeId wf = ot_tensor(g, NND_F32, SHAPE(1, 1, 1, 3), VALS(1, 1, 1));
    t = ot_eval(g, ot_conv(g, OP_CONV2D, xf, wf, plain, shape_scalar()));
    ot_expect_dt(&t, NND_F32, SHAPE(1, 1, 1, 1), VALS(16777218));
    free_graph(g);
}

/* ---- pooling ---- */

/* The window's winner, as the runtime's kernel documents it: the first maximum in
 * row-major order over the positions inside x (padding never wins), a NaN beating
 * every number with the first NaN winning; -1 for no position. */
static int64_t ref_argmax(const OtPoolCase *k, const double *plane, int64_t i, int64_t j)
{
    int64_t best = -1;
    for (int64_t ki = 0; ki < k->a[0]; ki++)
        for (int64_t kj = 0; kj < k->a[1]; kj++) {
            int64_t r = i * k->a[2] - k->a[4] + ki, c = j * k->a[3] - k->a[5] + kj;
            if (r < 0 || r >= k->h || c < 0 || c >= k->w)
                continue;
            int64_t at = r * k->w + c;
            if (best >= 0 && isnan(plane[best]))
                continue;
            if (best < 0 || isnan(plane[at]) || plane[at] > plane[best])
                best = at;
        }
    return best;
}

static int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t p)
{
    return (in + 2 * p - k) / s + 1;
}

static void expect_near(ITensor *t, Shape s, const double *want, double tol)
{
    assert_int_equal(t->rank, s.rank);
    for (int i = 0; i < s.rank; i++)
        assert_int_equal(t->shape[i], s.d[i]);
    for (int64_t i = 0; i < t->n; i++)
        if (!(fabs(t->v[i] - want[i]) <= tol))
            fail_msg("%s: element %lld: got %.17g, expected %.17g", ot_case ? ot_case : "",
                     (long long)i, t->v[i], want[i]);
    itensor_free(t);
}

/* Every pooling case with ties everywhere (small integers): maxpool_gather takes v
 * at the first maximum, maxpool_scatter adds d there; avgpool divides the sum
 * inside x by kh kw (padding counts as zeros, PyTorch's count_include_pad=True);
 * avgpool_t is avgpool's adjoint. */
static void test_pool(void **state)
{
    OtRng rng = {7};
    for (size_t ci = 0; ci < ot_npool_cases; ci++) {
        const OtPoolCase *k = &ot_pool_cases[ci];
        ot_case = k->name;
        int64_t oh = pool_out(k->h, k->a[0], k->a[2], k->a[4]);
        int64_t ow = pool_out(k->w, k->a[1], k->a[3], k->a[5]);
        Shape xs = ot_pool_x_shape(k), ys = SHAPE(k->n, k->c, oh, ow);
        int64_t nx = shape_static_numel(&xs, NULL), ny = shape_static_numel(&ys, NULL);
        int64_t planes = k->n * k->c, hw = k->h * k->w;
        double x[256], v[256], d[256], gat[256], sca[256] = {0}, avg[256], avt[256] = {0};
        assert_true(nx <= 256);
        small_ints(&rng, x, nx);
        small_ints(&rng, d, ny);
        for (int64_t i = 0; i < nx; i++)
            v[i] = 1000 + (double)i;
        double kk = (double)(k->a[0] * k->a[1]);
        for (int64_t p = 0; p < planes; p++)
            for (int64_t i = 0; i < oh; i++)
                for (int64_t j = 0; j < ow; j++) {
                    int64_t yi = (p * oh + i) * ow + j, at = ref_argmax(k, x + p * hw, i, j);
                    assert_true(at >= 0);
                    gat[yi] = v[p * hw + at];
                    sca[p * hw + at] += d[yi];
                    double s = 0;
                    for (int64_t ki = 0; ki < k->a[0]; ki++)
                        for (int64_t kj = 0; kj < k->a[1]; kj++) {
                            int64_t r = i * k->a[2] - k->a[4] + ki, c = j * k->a[3] - k->a[5] + kj;
                            if (r >= 0 && r < k->h && c >= 0 && c < k->w) {
                                s += x[p * hw + r * k->w + c];
                                avt[p * hw + r * k->w + c] += d[yi] / kk;
                            }
                        }
                    avg[yi] = s / kk;
                }
        Graph *g = new_graph();
        NodeId xn = f64s(g, xs, x, (int)nx), vn = f64s(g, xs, v, (int)nx),
               dn = f64s(g, ys, d, (int)ny);
        NodeId roots[4] = {ot_pool(g, OP_POOLMAX, xn, vn, k->a, shape_scalar()),
                           ot_pool(g, OP_POOLMAX_T, xn, dn, k->a, shape_scalar()),
                           ot_pool(g, OP_POOLAVG, xn, 0, k->a, shape_scalar()),
                           ot_pool(g, OP_POOLAVG_T, dn, 0, k->a, xs)};
        ITensor out[4];
        ot_run(g, roots, 4, NULL, out);
        ot_expect_dt(&out[0], NND_F64, ys, gat, (int)ny);
        ot_expect_dt(&out[1], NND_F64, xs, sca, (int)nx);
        expect_near(&out[2], ys, avg, 1e-15);
        expect_near(&out[3], xs, avt, 1e-15);
        free_graph(g);
    }
    ot_case = NULL;
}

/* The documented edge cases of max pooling, by hand. */
static void test_maxpool_rules(void **state)
{
    Graph *g = new_graph();
    const int64_t k2[6] = {2, 2, 2, 2, 0, 0}, k3p[6] = {3, 3, 1, 1, 1, 1};
    Shape s = SHAPE(1, 1, 2, 4);
    NodeId v = f64s(g, s, VALS(0, 1, 2, 3, 4, 5, 6, 7)); /* v tells the position */
    /* ties: the first in row-major order, (0, 1) before (1, 0) */
    NodeId x = f64s(g, s, VALS(2, 5, 7, 7, 5, 1, 7, 7));
    ITensor t = ot_eval(g, ot_pool(g, OP_POOLMAX, x, v, k2, shape_scalar()));
    ot_expect(&t, SHAPE(1, 1, 1, 2), VALS(1, 2));
    t = ot_eval(g, ot_pool(g, OP_POOLMAX_T, x, f64s(g, SHAPE(1, 1, 1, 2), VALS(10, 20)), k2,
                           shape_scalar()));
    ot_expect(&t, s, VALS(0, 10, 20, 0, 0, 0, 0, 0));
    /* padding never wins: all negative values with padding 1 */
    NodeId neg = f64s(g, SHAPE(1, 1, 2, 2), VALS(-4, -3, -2, -1));
    t = ot_eval(g, ot_pool(g, OP_POOLMAX, neg, neg, k3p, shape_scalar()));
    ot_expect(&t, SHAPE(1, 1, 2, 2), VALS(-1, -1, -1, -1));
    /* all -inf: the value is -inf, and the first position inside x wins */
    NodeId ninf = f64s(g, SHAPE(1, 1, 2, 2), VALS(-INFINITY, -INFINITY, -INFINITY, -INFINITY));
    const int64_t g2[6] = {2, 2, 1, 1, 1, 1};
    NodeId pos = f64s(g, SHAPE(1, 1, 2, 2), VALS(1, 2, 3, 4));
    t = ot_eval(g, ot_pool(g, OP_POOLMAX, ninf, ninf, g2, shape_scalar()));
    ot_expect(&t, SHAPE(1, 1, 3, 3),
              VALS(-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                   -INFINITY, -INFINITY));
    t = ot_eval(g, ot_pool(g, OP_POOLMAX, ninf, pos, g2, shape_scalar()));
    ot_expect(&t, SHAPE(1, 1, 3, 3), VALS(1, 1, 2, 1, 1, 2, 3, 3, 4));
    /* overlapping windows: the scatter adds up at a shared maximum */
    NodeId x3 = f64s(g, SHAPE(1, 1, 3, 3), VALS(0, 1, 0, 1, 9, 1, 0, 1, 0));
    const int64_t ov[6] = {2, 2, 1, 1, 0, 0};
    t = ot_eval(g, ot_pool(g, OP_POOLMAX_T, x3, f64s(g, SHAPE(1, 1, 2, 2), VALS(1, 2, 4, 8)), ov,
                           shape_scalar()));
    ot_expect(&t, SHAPE(1, 1, 3, 3), VALS(0, 0, 0, 0, 15, 0, 0, 0, 0));
    free_graph(g);
}

/* max_pool2d propagates NaN (as PyTorch, and as the runtime's kernel): a NaN anywhere
 * in a window is its maximum, the first NaN winning. */
static void test_maxpool_nan(void **state)
{
    Graph *g = new_graph();
    const int64_t k2[6] = {2, 2, 2, 2, 0, 0};
    Shape s = SHAPE(1, 1, 2, 6);
    /* windows: {1, 5 | NaN, 2}, {NaN, 3 | 4, NaN}, {1, 2 | 3, 0} */
    NodeId x = f64s(g, s, VALS(1, 5, NAN, 3, 1, 2, NAN, 2, 4, NAN, 3, 0));
    NodeId v = f64s(g, s, VALS(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11));
    ITensor t = ot_eval(g, ot_pool(g, OP_POOLMAX, x, x, k2, shape_scalar()));
    ot_expect(&t, SHAPE(1, 1, 1, 3), VALS(NAN, NAN, 3));
    t = ot_eval(g, ot_pool(g, OP_POOLMAX, x, v, k2, shape_scalar()));
    ot_expect(&t, SHAPE(1, 1, 1, 3), VALS(6, 2, 10));
    t = ot_eval(g, ot_pool(g, OP_POOLMAX_T, x, f64s(g, SHAPE(1, 1, 1, 3), VALS(1, 2, 4)), k2,
                           shape_scalar()));
    ot_expect(&t, s, VALS(0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 4, 0));
    free_graph(g);
}

static void test_avgpool_padding(void **state)
{
    Graph *g = new_graph();
    /* 3x3 windows, padding 1, on a 2x2 image of ones: 4 / 9 everywhere (PyTorch's
     * default count_include_pad=True; with False it would be 1) */
    const int64_t k3p[6] = {3, 3, 1, 1, 1, 1};
    NodeId ones = f64s(g, SHAPE(1, 1, 2, 2), VALS(1, 1, 1, 1));
    ITensor t = ot_eval(g, ot_pool(g, OP_POOLAVG, ones, 0, k3p, shape_scalar()));
    ot_expect(&t, SHAPE(1, 1, 2, 2), VALS(4.0 / 9, 4.0 / 9, 4.0 / 9, 4.0 / 9));
    /* 2x2 stride 2 padding 1: each window holds one pixel and three zeros */
    const int64_t k2p[6] = {2, 2, 2, 2, 1, 1};
    NodeId x = f64s(g, SHAPE(1, 1, 2, 2), VALS(1, 2, 3, 4));
    t = ot_eval(g, ot_pool(g, OP_POOLAVG, x, 0, k2p, shape_scalar()));
    ot_expect(&t, SHAPE(1, 1, 2, 2), VALS(0.25, 0.5, 0.75, 1));
    /* the adjoint: d / 4 back to the one pixel of each window */
    t = ot_eval(g, ot_pool(g, OP_POOLAVG_T, x, 0, k2p, SHAPE(1, 1, 2, 2)));
    ot_expect(&t, SHAPE(1, 1, 2, 2), VALS(0.25, 0.5, 0.75, 1));
    /* f32 */
    NodeId xf = ot_tensor(g, NND_F32, SHAPE(1, 1, 1, 3), VALS(1, 1, 1));
    const int64_t k3[6] = {1, 3, 1, 1, 0, 0};
    t = ot_eval(g, ot_pool(g, OP_POOLAVG, xf, 0, k3, shape_scalar()));
    ot_expect_dt(&t, NND_F32, SHAPE(1, 1, 1, 1), VALS(1));
    free_graph(g);
}

/* ---- random draws per step, orthogonal initial values ---- */

static void test_randstep(void **state)
{
    Graph *g = new_graph();
    NodeId step = ot_leaf(g, OP_HYPER, 0, NND_F64, shape_scalar());
    Shape s = SHAPE(64, 64);
    NodeId roots[4] = {ot_randstep(g, step, 3, 7, NND_F64, s),
                       ot_randstep(g, step, 3, 8, NND_F64, s),
                       ot_randstep(g, step, 4, 7, NND_F64, s),
                       ot_randstep(g, gb_binary(g, OP_ADD, step, gb_const(g, 1, NND_F64, SP), SP),
                                   3, 7, NND_F64, s)};
    double hv = 5;
    InterpBindings b = {.hypers = &hv, .nhypers = 1, .seed = 1};
    ITensor s5[4], again[4], s6[4];
    ot_run(g, roots, 4, &b, s5);
    ot_run(g, roots, 4, &b, again);
    hv = 6;
    b.seed = 2; /* the seed is the node's, not the run's */
    ot_run(g, roots, 4, &b, s6);
    int n = (int)s5[0].n;
    double sum = 0, sq = 0;
    int same_step = 0, same_key = 0, same_seed = 0, shifted = 0;
    for (int i = 0; i < n; i++) {
        double u = s5[0].v[i];
        assert_true(u >= 0 && u < 1);
        sum += u;
        sq += (u - 0.5) * (u - 0.5);
        assert_true(u == again[0].v[i]);
        same_step += u == s6[0].v[i];
        same_key += u == s5[1].v[i];
        same_seed += u == s5[2].v[i];
        /* step + 1 at step 5 is step 6 */
        assert_true(s5[3].v[i] == s6[0].v[i]);
        shifted += s5[1].v[i] == s6[0].v[i];
    }
    assert_true(fabs(sum / n - 0.5) < 0.02);
    assert_true(fabs(sq / n - 1.0 / 12) < 0.01);
    assert_true(same_step < 4 && same_key < 4 && same_seed < 4);
    assert_true(shifted < 4); /* (key 8, step 5) is not (key 7, step 6) */
    for (int k = 0; k < 4; k++) {
        itensor_free(&s5[k]);
        itensor_free(&again[k]);
        itensor_free(&s6[k]);
    }
    free_graph(g);
}

/* In f32, U[0,1) must stay below 1: draws within 2^-25 of 1 round up to 1.0f.  At
 * seed 3, key 7, step 1409123, element 5 is 0.99999997470437463. */
static void test_randstep_f32(void **state)
{
    Graph *g = new_graph();
    NodeId u = ot_randstep(g, gb_const(g, 1409123, NND_F64, SP), 3, 7, NND_F32, SHAPE(8));
    ITensor t = ot_eval(g, u);
    assert_int_equal(t.dtype, NND_F32);
    for (int i = 0; i < 8; i++)
        if (!(t.v[i] >= 0 && t.v[i] < 1))
            fail_msg("rand_step f32 element %d is %.17g, outside [0, 1)", i, t.v[i]);
    itensor_free(&t);
    free_graph(g);
}

/* q = the values as [rows, cols] (rows = shape[0]); the smaller Gram matrix is
 * gain^2 I, and the normal draws behind it are the triangular combination of q
 * that Gram-Schmidt gives: N = L Q/gain (rows <= cols) or N = Q/gain R (rows > cols)
 * with a positive diagonal. */
static void check_ortho(const ITensor *t, uint64_t seed, uint64_t key, double gain, double tol)
{
    int64_t rows = t->shape[0], cols = t->n / rows;
    bool by_rows = rows <= cols;
    int64_t nv = by_rows ? rows : cols, len = by_rows ? cols : rows;
#define Q(vi, ji) (t->v[by_rows ? (vi)*cols + (ji) : (ji)*cols + (vi)] / gain)
#define NR(vi, ji)                                                                                 \
    nnd_random_normal(seed, key, (uint64_t)(by_rows ? (vi)*cols + (ji) : (ji)*cols + (vi)))
    for (int64_t a = 0; a < nv; a++)
        for (int64_t b = 0; b < nv; b++) {
            double s = 0, m = 0;
            for (int64_t j = 0; j < len; j++) {
                s += Q(a, j) * Q(b, j);
                m += NR(a, j) * Q(b, j); /* the coefficient of q_b in n_a */
            }
            if (!(fabs(s - (a == b)) <= tol))
                fail_msg("%lldx%lld gain %g: Gram[%lld][%lld] = %.17g", (long long)rows,
                         (long long)cols, gain, (long long)a, (long long)b, s);
            if (b > a && !(fabs(m) <= 1e3 * tol))
                fail_msg("not Gram-Schmidt: draw %lld has %.3g of vector %lld", (long long)a, m,
                         (long long)b);
            if (a == b && !(m > 0))
                fail_msg("not Gram-Schmidt: diagonal %lld is %.3g", (long long)a, m);
        }
#undef Q
#undef NR
}

static void test_ortho(void **state)
{
    Shape shapes[] = {SHAPE(3, 5),       SHAPE(5, 3), SHAPE(4, 4), SHAPE(2, 3, 2, 2),
                      SHAPE(6, 2, 1, 1), SHAPE(1, 7), SHAPE(7, 1)};
    for (size_t i = 0; i < NND_ARRAY_LEN(shapes); i++) {
        Graph *g = new_graph();
        double gain = i % 2 ? 1.5 : 1;
        NodeId q = ot_ortho(g, gb_const(g, gain, NND_F64, SP), 100 + i, NND_F64, shapes[i]);
        NodeId q2 = ot_ortho(g, gb_const(g, gain, NND_F64, SP), 101 + i, NND_F64, shapes[i]);
        NodeId qf = ot_ortho(g, gb_const(g, gain, NND_F64, SP), 100 + i, NND_F32, shapes[i]);
        InterpBindings b = {.seed = 9};
        ITensor out[3], again;
        ot_run(g, (NodeId[]){q, q2, qf}, 3, &b, out);
        ot_run(g, &q, 1, &b, &again);
        assert_int_equal(out[0].rank, shapes[i].rank);
        for (int k = 0; k < shapes[i].rank; k++)
            assert_int_equal(out[0].shape[k], shapes[i].d[k]);
        check_ortho(&out[0], 9, 100 + i, gain, 1e-12);
        check_ortho(&out[2], 9, 100 + i, gain, 1e-5);
        assert_int_equal(out[2].dtype, NND_F32);
        bool differ = false;
        for (int64_t k = 0; k < out[0].n; k++) {
            assert_true(out[0].v[k] == again.v[k]);
            assert_true(out[2].v[k] == (double)(float)out[0].v[k]);
            differ |= out[0].v[k] != out[1].v[k];
        }
        assert_true(differ); /* another key, other values */
        itensor_free(&out[1]);
        b.seed = 10; /* another run seed, other values */
        ot_run(g, &q, 1, &b, &out[1]);
        differ = false;
        for (int64_t k = 0; k < out[0].n; k++)
            differ |= out[0].v[k] != out[1].v[k];
        assert_true(differ);
        check_ortho(&out[1], 10, 100 + i, gain, 1e-12);
        for (int k = 0; k < 3; k++)
            itensor_free(&out[k]);
        itensor_free(&again);
        free_graph(g);
    }
}

/* ---- custom gradients: the value is in[0]'s ---- */

static void test_custom_value(void **state)
{
    Graph *g = new_graph();
    NodeId v = f64s(g, SHAPE(3), VALS(1, -2, 3)), a = f64s(g, SHAPE(2), VALS(9, 9));
    ITensor t = ot_eval(g, ot_custom(g, v, a, 0, 0));
    ot_expect_dt(&t, NND_F64, SHAPE(3), VALS(1, -2, 3));
    t = ot_eval(g, ot_custom(g, v, a, v, 1));
    ot_expect(&t, SHAPE(3), VALS(1, -2, 3));
    NodeId f = ot_tensor(g, NND_F32, SHAPE(1), VALS(0.5));
    t = ot_eval(g, ot_custom(g, f, 0, 0, 0));
    ot_expect_dt(&t, NND_F32, SHAPE(1), VALS(0.5));
    free_graph(g);
}

/* ---- shape rules and run-time errors of the new ops ---- */

static void expect_build_error(Graph *g, Node n, const char *needle)
{
    char err[256] = "";
    assert_int_equal(graph_build(g, n, err, sizeof err), 0);
    if (!strstr(err, needle))
        fail_msg("error \"%s\" does not mention \"%s\"", err, needle);
}

static void test_call_shapes(void **state)
{
    Graph *g = new_graph();
    NodeId x = ot_param(g, 0, NND_F64, SHAPE(2, 3, 5, 5));
    NodeId w = ot_param(g, 1, NND_F64, SHAPE(4, 3, 3, 3));
    NodeId w1 = ot_param(g, 2, NND_F64, SHAPE(4, 1, 3, 3));
    const int64_t plain[7] = {1, 1, 0, 0, 1, 1, 1}, g2[7] = {1, 1, 0, 0, 1, 1, 2};
    const int64_t s0[7] = {0, 1, 0, 0, 1, 1, 1}, d3[7] = {1, 1, 0, 0, 3, 1, 1};
    Node conv = {.op = OP_CONV2D, .nin = 2, .in = {x, w}};
    conv.pool = graph_pool_ints(g, g2, 7);
    expect_build_error(g, conv, "do not divide into 2 groups");
    conv.in[1] = w1;
    conv.pool = graph_pool_ints(g, plain, 7);
    expect_build_error(g, conv, "w needs 3 per group");
    conv.in[1] = w;
    conv.pool = graph_pool_ints(g, s0, 7);
    expect_build_error(g, conv, "strides and dilations >= 1");
    conv.pool = graph_pool_ints(g, d3, 7); /* a 7-row dilated kernel on 5 rows */
    expect_build_error(g, conv, "does not fit");
    /* the adjoint ops check the preset shape against dy */
    NodeId dy = ot_param(g, 3, NND_F64, SHAPE(2, 4, 3, 3));
    Node gx = {.op = OP_CONV2D_GX,
               .nin = 2,
               .in = {dy, w},
               .shape = SHAPE(2, 3, 6, 5),
               .pool = graph_pool_ints(g, plain, 7)};
    expect_build_error(g, gx, "does not match");
    gx.shape = SHAPE(2, 3, 5, 5);
    assert_true(gb_node(g, gx) != 0);
    Node gw = {.op = OP_CONV2D_GW,
               .nin = 2,
               .in = {x, dy},
               .shape = SHAPE(4, 3, 2, 3),
               .pool = graph_pool_ints(g, plain, 7)};
    expect_build_error(g, gw, "does not match");
    /* pooling: padding at most half the kernel; a window that does not fit */
    const int64_t p2[6] = {3, 3, 1, 1, 2, 0}, big[6] = {6, 1, 1, 1, 0, 0};
    Node pool = {.op = OP_POOLAVG, .nin = 1, .in = {x}, .pool = graph_pool_ints(g, p2, 6)};
    expect_build_error(g, pool, "at most half the kernel");
    pool.pool = graph_pool_ints(g, big, 6);
    expect_build_error(g, pool, "does not fit");
    Node pm = {.op = OP_POOLMAX, .nin = 2, .in = {x, dy}, .pool = graph_pool_ints(g, plain, 6)};
    expect_build_error(g, pm, "two tensors of one shape");
    /* take, scatter-add and concat */
    NodeId t = ot_param(g, 4, NND_F64, SHAPE(5, 2));
    NodeId fi = ot_param(g, 5, NND_F64, SHAPE(3));
    expect_build_error(g, (Node){.op = OP_TAKE, .nin = 2, .in = {t, fi}}, "i32");
    NodeId ii = ot_leaf(g, OP_INPUT, 0, NND_I32, SHAPE(3));
    expect_build_error(g, (Node){.op = OP_SCATTER_ADD, .nin = 2, .in = {ii, t}, .idx = 5},
                       "do not fit");
    expect_build_error(g, (Node){.op = OP_SCATTER_ADD, .nin = 2, .in = {ii, fi}, .idx = 0},
                       "row count");
    expect_build_error(g, (Node){.op = OP_CONCAT, .nin = 2, .in = {t, x}, .idx = 0}, "one rank");
    expect_build_error(g, (Node){.op = OP_CONCAT, .nin = 2, .in = {t, t}, .idx = 2}, "one rank");
    NodeId t3 = ot_param(g, 6, NND_F64, SHAPE(5, 3));
    expect_build_error(g, (Node){.op = OP_CONCAT, .nin = 2, .in = {t, t3}, .idx = 0},
                       "equal shapes but for axis 0");
    assert_true(ot_concat(g, t, t3, 1) != 0);
    free_graph(g);

    /* run-time: indices out of range are errors, not crashes */
    g = new_graph();
    NodeId table = f64s(g, SHAPE(3, 2), VALS(1, 2, 3, 4, 5, 6));
    NodeId hi = ot_tensor(g, NND_I32, SHAPE(2), VALS(0, 3));
    NodeId lo = ot_tensor(g, NND_I32, SHAPE(2), VALS(-1, 0));
    expect_error(g, ot_take(g, table, hi), NULL, "3 is out of range for 3 rows");
    expect_error(g, gb_unary(g, OP_EXP, ot_take(g, table, lo), SP), NULL, "out of range");
    NodeId src = f64s(g, SHAPE(2, 2), VALS(1, 1, 1, 1));
    expect_error(g, ot_scatter(g, hi, src, 3), NULL, "3 is out of range for 3 rows");
    expect_error(g, ot_scatter(g, lo, src, 3), NULL, "-1 is out of range for 3 rows");
    free_graph(g);
}

/* An empty literal in a graph with no other literal data: nothing to copy from the
 * (still unallocated) pool.  Last in the list: under UBSan a failure aborts. */
static void test_empty_literal(void **state)
{
    Graph *g = new_graph();
    ITensor t = ot_eval(g, f64s(g, SHAPE(0, 3), NULL, 0));
    ot_expect(&t, SHAPE(0, 3), NULL, 0);
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
        case 0: y = gb_binary(g, OP_ADD, x, zero, SP); break;
        case 1: y = gb_binary(g, OP_ADD, zero, x, SP); break;
        case 2: y = gb_binary(g, OP_SUB, x, zero, SP); break;
        case 3: y = gb_binary(g, OP_MUL, x, one, SP); break;
        case 4: y = gb_binary(g, OP_MUL, one, x, SP); break;
        case 5: y = gb_binary(g, OP_DIV, x, one, SP); break;
        case 6: y = gb_binary(g, OP_POW, x, one, SP); break;
        case 7: y = gb_unary(g, OP_NEG, gb_unary(g, OP_NEG, x, SP), SP); break;
        case 8: {
            NodeId t = gb_transpose(g, x, (int[]){1, 0}, SP);
            y = gb_transpose(g, t, (int[]){1, 0}, SP);
            break;
        }
        case 9: y = ot_cast(g, x, NND_F64); break;
        default: y = gb_reduce(g, OP_SUM, x, 0, false, SP); break;
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

static NodeId pick_node(RandGraph *r) { return r->pool[ot_next(&r->rng) % (uint64_t)r->n]; }

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
    case 2: return gb_binary(g, bin[ot_next(&r->rng) % NND_ARRAY_LEN(bin)], a, b, SP);
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
    case 6: return gb_select(g, gb_binary(g, OP_GT, a, b, SP), a, gb_unary(g, OP_NEG, b, SP), SP);
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
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_take_scatter),
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_maxpool_rules),
        cmocka_unit_test(test_maxpool_nan),
        cmocka_unit_test(test_avgpool_padding),
        cmocka_unit_test(test_randstep),
        cmocka_unit_test(test_randstep_f32),
        cmocka_unit_test(test_ortho),
        cmocka_unit_test(test_custom_value),
        cmocka_unit_test(test_call_shapes),
        cmocka_unit_test(test_simplify_fold),
        cmocka_unit_test(test_simplify_hyper),
        cmocka_unit_test(test_simplify_cse_dce),
        cmocka_unit_test(test_simplify_cse_attrs),
        cmocka_unit_test(test_simplify_identities),
        cmocka_unit_test(test_simplify_rewrites),
        cmocka_unit_test(test_simplify_no_rules),
        cmocka_unit_test(test_simplify_random),
        cmocka_unit_test(test_empty_literal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
