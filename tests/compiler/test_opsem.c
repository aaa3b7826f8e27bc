/* opsem: every path that computes an elementwise op's value agrees with the op's one
 * definition (opsem_eval), bit for bit.
 *
 * For every elementwise op of ops.def, over a dense sweep of inputs (signed zeros,
 * infinities, NaN, subnormals, the largest numbers, integers and half-integers, both
 * sides of each function's branch points, grids across the whole range, and pairs of
 * them for two inputs):
 *   (i)   the interpreter: interp_run on TENSOR inputs -> the op, in f64 and f32, and
 *         in i32 and bool where the op takes them;
 *   (ii)  elaboration's fold of compile-time numbers, reached through source text: a
 *         train block's `let v7 = sigmoid(-3.5)` becomes the hyper-parameter v7,
 *         whose value is the folded double (numbers are doubles, so f64 only);
 *   (iii) simplify_graph's constant folding: CONST inputs -> the op -> one CONST.
 * NaN matches any NaN: a NaN's sign and payload are not part of an op's value.
 * Elaboration folds neither cast (f32(x) of a number stays a number) nor select (a
 * known condition picks a branch before any node is made): they have (i) and (iii).
 * The last test fails when an elementwise op of ops.def has no case here. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* cmocka.h needs the headers above, included before it */
#include <cmocka.h>

#include "compile.h"
#include "interp.h"
#include "opsem.h"
#include "opsem_inputs.h"

#define SP span_none()
#define DT(t) (1u << (t))
#define FLOATS (DT(NND_F32) | DT(NND_F64))
#define ALL (FLOATS | DT(NND_I32) | DT(NND_BOOL))

/* An op, how the language writes it on numbers (%s for each input; NULL: elaboration
 * does not fold it), and the dtypes of its (numeric) inputs it is checked in. */
typedef struct Case {
    OpId op;
    const char *spell;
    unsigned dtypes;
} Case;

static const Case cases[] = {
    {OP_NEG, "-(%s)", FLOATS | DT(NND_I32)},
    {OP_EXP, "exp(%s)", FLOATS},
    {OP_LOG, "log(%s)", FLOATS},
    {OP_SQRT, "sqrt(%s)", FLOATS},
    {OP_RSQRT, "rsqrt(%s)", FLOATS},
    {OP_ABS, "abs(%s)", FLOATS | DT(NND_I32)},
    {OP_SIGN, "sign(%s)", FLOATS | DT(NND_I32)},
    {OP_TANH, "tanh(%s)", FLOATS},
    {OP_SIGMOID, "sigmoid(%s)", FLOATS},
    {OP_RELU, "relu(%s)", FLOATS | DT(NND_I32)},
    {OP_SIN, "sin(%s)", FLOATS},
    {OP_COS, "cos(%s)", FLOATS},
    {OP_FLOOR, "floor(%s)", FLOATS | DT(NND_I32)},
    {OP_NOT, "f64(not %s)", DT(NND_BOOL)},
    {OP_CAST, NULL, ALL},
    {OP_ADD, "%s + %s", FLOATS | DT(NND_I32)},
    {OP_SUB, "%s - %s", FLOATS | DT(NND_I32)},
    {OP_MUL, "%s * %s", FLOATS | DT(NND_I32)},
    {OP_DIV, "%s / %s", FLOATS | DT(NND_I32)},
    {OP_POW, "%s ^ %s", FLOATS | DT(NND_I32)},
    {OP_MIN, "min(%s, %s)", FLOATS | DT(NND_I32)},
    {OP_MAX, "max(%s, %s)", FLOATS | DT(NND_I32)},
    {OP_LT, "f64(%s < %s)", ALL},
    {OP_LE, "f64(%s <= %s)", ALL},
    {OP_GT, "f64(%s > %s)", ALL},
    {OP_GE, "f64(%s >= %s)", ALL},
    {OP_EQ, "f64(%s == %s)", ALL},
    {OP_NE, "f64(%s != %s)", ALL},
    {OP_AND, "f64(%s and %s)", DT(NND_BOOL)},
    {OP_OR, "f64(%s or %s)", DT(NND_BOOL)},
    {OP_SELECT, NULL, ALL},
};
enum { NCASES = sizeof cases / sizeof cases[0] };

/* Which checks ran for each op: (i), (ii), (iii). */
static bool ran_interp[OP_COUNT], ran_elab[OP_COUNT], ran_simplify[OP_COUNT];

/* ---- inputs ---- */

static void push(DoubleVec *v, double x) { vec_push(v, x); }

/* Numbers for one input: the shared values (opsem_inputs.h), a dense grid over
 * [-60, 60] and a geometric one over every exponent. */
static DoubleVec unary_inputs(void)
{
    DoubleVec v = {0};
    opsem_unary_values(&v);
    for (int i = 0; i <= 2400; i++)
        push(&v, -60 + 120.0 * i / 2400);
    for (int e = -1074; e <= 1023; e += 3) {
        push(&v, ldexp(1.37, e));
        push(&v, -ldexp(1.61, e));
    }
    return v;
}

/* Numbers each paired with each other for two inputs (opsem_inputs.h). */
static DoubleVec pair_inputs(void)
{
    DoubleVec v = {0};
    opsem_pair_values(&v);
    return v;
}

static DoubleVec int_inputs(void)
{
    DoubleVec v = {0};
    for (int k = -100; k <= 100; k++)
        push(&v, k);
    for (int e = 7; e <= 30; e++) {
        push(&v, ldexp(1, e));
        push(&v, -ldexp(1, e) + 1);
    }
    const double x[] = {46340, 46341, -46341, 2147483647, -2147483647, -2147483648.0, 123456789};
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        push(&v, x[i]);
    return v;
}

/* What a tensor of dtype holds for each of src (rounded as the interpreter rounds). */
static DoubleVec rounded(const DoubleVec *src, NndDType dt)
{
    DoubleVec v = {0};
    for (int i = 0; i < src->n; i++)
        push(&v, itensor_round(dt, src->v[i]));
    return v;
}

/* The inputs of op in dtype dt: one-input ops the unary sweep; two-input ops every
 * pair of the pair set, and the unary sweep against itself shifted; select both
 * conditions with pairs. */
static Tuples make_tuples(OpId op, NndDType dt)
{
    Tuples t = {0};
    DoubleVec base, pairs;
    if (dt == NND_BOOL) {
        base = (DoubleVec){0};
        push(&base, 0);
        push(&base, 1);
        pairs = rounded(&base, dt);
    } else if (dt == NND_I32) {
        DoubleVec ints = int_inputs();
        base = rounded(&ints, dt);
        vec_free(&ints);
        pairs = (DoubleVec){0};
        for (int k = -12; k <= 12; k++)
            push(&pairs, k);
        push(&pairs, 46341);
        push(&pairs, -2147483647);
    } else {
        DoubleVec u = unary_inputs(), p = pair_inputs();
        base = rounded(&u, dt);
        pairs = rounded(&p, dt);
        vec_free(&u);
        vec_free(&p);
    }
    int arity = op_info[op].arity;
    if (arity == 1) {
        for (int i = 0; i < base.n; i++)
            tuple_add(&t, 1, &base.v[i]);
    } else if (arity == 2) {
        for (int i = 0; i < pairs.n; i++)
            for (int j = 0; j < pairs.n; j++)
                tuple_add(&t, 2, (double[]){pairs.v[i], pairs.v[j]});
        if (dt != NND_BOOL)
            for (int i = 0; i < base.n; i++)
                tuple_add(&t, 2, (double[]){base.v[i], base.v[(i * 7 + 3) % base.n]});
    } else {
        for (int c = 0; c <= 1; c++)
            for (int i = 0; i < pairs.n; i++)
                for (int j = 0; j < pairs.n; j += 3)
                    tuple_add(&t, 3, (double[]){c, pairs.v[i], pairs.v[j]});
    }
    vec_free(&base);
    vec_free(&pairs);
    return t;
}

/* ---- comparing ---- */

static bool same(double a, double b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    return memcmp(&a, &b, sizeof a) == 0;
}

static void expect_same(const char *path, OpId op, NndDType dt, const Tuples *t, int i, double got,
                        double want)
{
    if (same(got, want))
        return;
    char in[200] = "";
    for (int k = 0; k < op_info[op].arity; k++)
        snprintf(in + strlen(in), sizeof in - strlen(in), "%s%a", k ? ", " : "", t->in[k].v[i]);
    fail_msg("%s: %s %s(%s) = %a, opsem_eval = %a", path, dtype_name(dt), op_info[op].name, in, got,
             want);
}

/* The op node over inputs in (dtypes as built), result dtype `to` for a cast. */
static NodeId op_node(Graph *g, OpId op, const NodeId *in, NndDType to)
{
    Node n = {.op = (uint8_t)op, .nin = (uint8_t)op_info[op].arity};
    for (int k = 0; k < n.nin; k++)
        n.in[k] = in[k];
    if (op == OP_CAST)
        n.dtype = (uint8_t)to;
    return gb_node(g, n);
}

/* The dtype of input k of op when its numeric inputs are dt: select's condition and
 * the inputs of not, and, or are booleans. */
static NndDType input_dtype(OpId op, int k, NndDType dt)
{
    return op == OP_SELECT && k == 0 ? NND_BOOL : dt;
}

static double eval_want(OpId op, NndDType rdt, const Tuples *t, int i)
{
    double x[3];
    for (int k = 0; k < op_info[op].arity; k++)
        x[k] = t->in[k].v[i];
    return opsem_eval(op, rdt, x);
}

/* (i) the interpreter, the whole sweep in one node */
static void check_interp(OpId op, NndDType dt, NndDType to, const Tuples *t)
{
    Graph g;
    graph_init(&g);
    NodeId in[3];
    for (int k = 0; k < op_info[op].arity; k++) {
        uint32_t off = (uint32_t)g.fpool.n;
        for (int i = 0; i < t->n; i++)
            vec_push(&g.fpool, t->in[k].v[i]);
        Node n = {.op = OP_TENSOR,
                  .dtype = (uint8_t)input_dtype(op, k, dt),
                  .shape = {1, {t->n}},
                  .pool = off};
        in[k] = graph_append(&g, &n);
    }
    NodeId y = op_node(&g, op, in, to);
    NndDType rdt = (NndDType)graph_node(&g, y)->dtype;
    ITensor out;
    char err[256];
    InterpBindings b = {0};
    if (!interp_run(&g, &y, 1, &b, &out, err, sizeof err))
        fail_msg("interp_run: %s", err);
    assert_int_equal(out.dtype, rdt);
    for (int i = 0; i < t->n; i++)
        expect_same("interpreter", op, rdt, t, i, out.v[i], eval_want(op, rdt, t, i));
    itensor_free(&out);
    graph_free(&g);
    ran_interp[op] = true;
}

/* (iii) simplify_graph: one scalar op node of CONST inputs per tuple, in graphs of
 * CHUNK tuples (the hash-consing table of one graph of thousands of constants is
 * slow: constants that differ only in high bits collide) */
enum { CHUNK = 500 };

static void check_simplify(OpId op, NndDType dt, NndDType to, const Tuples *t)
{
    NodeId roots[CHUNK], *refs[CHUNK];
    for (int first = 0; first < t->n; first += CHUNK) {
        int n = t->n - first < CHUNK ? t->n - first : CHUNK;
        Graph g;
        graph_init(&g);
        for (int i = 0; i < n; i++) {
            NodeId in[3];
            for (int k = 0; k < op_info[op].arity; k++)
                in[k] = gb_const(&g, t->in[k].v[first + i], input_dtype(op, k, dt), SP);
            roots[i] = op_node(&g, op, in, to);
            refs[i] = &roots[i];
        }
        NndDType rdt = (NndDType)graph_node(&g, roots[0])->dtype;
        simplify_graph(&g, refs, n, SIMPLIFY_EXACT, NULL);
        for (int i = 0; i < n; i++) {
            Node *nd = graph_node(&g, roots[i]);
            if (nd->op != OP_CONST)
                fail_msg("simplify_graph left %s, not a constant", op_info[nd->op].name);
            expect_same("simplify_graph", op, rdt, t, first + i, nd->num,
                        eval_want(op, rdt, t, first + i));
        }
        graph_free(&g);
    }
    ran_simplify[op] = true;
}

/* A number as the language writes it: NaN as inf - inf, negatives through unary
 * minus (exact), the rest with 17 significant digits, which round-trip. */
static void put_num(StrBuf *b, double x)
{
    if (isnan(x))
        sb_puts(b, "(inf - inf)");
    else if (isinf(x))
        sb_puts(b, x < 0 ? "(-inf)" : "inf");
    else if (signbit(x))
        sb_printf(b, "(-%.17g)", -x);
    else
        sb_printf(b, "%.17g", x);
}

/* (ii) elaboration: a train block of `let vI = <op on the numbers of tuple I>`, for
 * CHUNK tuples from first (sema and elaboration look names up one by one) */
static void check_elab_chunk(const Case *c, const Tuples *t, int first, int n)
{
    OpId op = c->op;
    StrBuf src = {0};
    sb_puts(&src, "use optim\nmodel M {\n  param k: [1] = 1\n  fn forward(x) = x * k\n}\n"
                  "train {\n  data train = tensors(x = [[1]], y = [[0]])\n");
    for (int i = first; i < first + n; i++) {
        StrBuf in[3] = {{0}};
        for (int k = 0; k < op_info[op].arity; k++)
            put_num(&in[k], t->in[k].v[i]);
        sb_printf(&src, "  let v%d = ", i);
        /* the spelling takes one or two inputs */
        sb_printf(&src, c->spell, in[0].s, op_info[op].arity > 1 ? in[1].s : "");
        sb_putc(&src, '\n');
        for (int k = 0; k < 3; k++)
            sb_free(&in[k]);
    }
    sb_puts(&src, "  net = M()\n  loss = mean(net(x) - y)\n  opt = SGD()\n  batch = 1\n}\n");
    Frontend fe;
    frontend_init(&fe);
    CompileOptions co = {.float_dtype = NND_F64};
    Program *p = compile(&fe, "opsem.nnd", src.s, &co);
    if (!p) {
        char *d = diags_render(&fe.diags);
        fail_msg("%s", d);
    }
    int found = 0;
    for (int h = 0; h < p->hypers.n; h++) {
        int i;
        char end;
        if (sscanf(p->hypers.v[h].name, "v%d%c", &i, &end) != 1 || i < first || i >= first + n)
            continue;
        found++;
        expect_same("elaboration", op, NND_F64, t, i, p->hypers.v[h].value,
                    eval_want(op, NND_F64, t, i));
    }
    assert_int_equal(found, n);
    program_free(p);
    frontend_free(&fe);
    sb_free(&src);
}

static void check_elab(const Case *c, const Tuples *t)
{
    for (int first = 0; first < t->n; first += CHUNK)
        check_elab_chunk(c, t, first, t->n - first < CHUNK ? t->n - first : CHUNK);
    ran_elab[c->op] = true;
}

/* ---- tests ---- */

static void check_case(const Case *c)
{
    char line[200];
    snprintf(line, sizeof line, "%s:", op_info[c->op].name);
    for (int d = 0; d < NND_DTYPE_COUNT; d++) {
        NndDType dt = (NndDType)d;
        if (!(c->dtypes & DT(dt)))
            continue;
        Tuples t = make_tuples(c->op, dt);
        /* a cast goes from dt to every dtype */
        for (int to = 0; to < (c->op == OP_CAST ? NND_DTYPE_COUNT : 1); to++) {
            check_interp(c->op, dt, (NndDType)to, &t);
            check_simplify(c->op, dt, (NndDType)to, &t);
        }
        /* compile-time numbers are doubles; booleans are 0 and 1 */
        bool elab = c->spell && (dt == NND_F64 || c->dtypes == DT(NND_BOOL));
        if (elab)
            check_elab(c, &t);
        snprintf(line + strlen(line), sizeof line - strlen(line), " %s %d%s", dtype_name(dt), t.n,
                 elab ? " (+ folded from source)" : "");
        tuples_free(&t);
    }
    print_message("%s\n", line);
}

static void test_unary(void **state)
{
    for (int i = 0; i < NCASES; i++)
        if (op_info[cases[i].op].arity == 1)
            check_case(&cases[i]);
}

static void test_binary(void **state)
{
    for (int i = 0; i < NCASES; i++)
        if (op_info[cases[i].op].arity == 2)
            check_case(&cases[i]);
}

static void test_select(void **state)
{
    for (int i = 0; i < NCASES; i++)
        if (op_info[cases[i].op].arity == 3)
            check_case(&cases[i]);
}

/* The agreed definitions where the copies had drifted. */
static void test_definitions(void **state)
{
    /* sigmoid: the two-branch form; for x < 0 it is e^x / (1 + e^x) */
    double x = -3.5;
    assert_true(same(opsem_eval(OP_SIGMOID, NND_F64, &x), exp(x) / (1 + exp(x))));
    /* pow: p^2 is p*p, correctly rounded */
    for (double p = 0.1; p < 1e6; p *= 1.37) {
        double in[2] = {p, 2};
        assert_true(same(opsem_eval(OP_POW, NND_F64, in), p * p));
    }
    /* rounding to the result's dtype */
    double third = 1.0 / 3;
    assert_true(same(opsem_eval(OP_CAST, NND_F32, &third), (double)(float)third));
    double half[1] = {-2.5};
    assert_true(same(opsem_eval(OP_CAST, NND_I32, half), -2));
    /* to i32: beyond the int32 range, its nearest end (an int32_t holds every value);
     * not finite, 0 */
    double big[5] = {4294967296.0, -1e300, 2147483647.5, INFINITY, NAN};
    double want[5] = {2147483647.0, -2147483648.0, 2147483647.0, 0, 0};
    for (int i = 0; i < 5; i++)
        assert_true(same(opsem_eval(OP_CAST, NND_I32, &big[i]), want[i]));
    double nan[1] = {NAN};
    assert_true(same(opsem_eval(OP_CAST, NND_BOOL, nan), 1));
}

/* Every elementwise op of ops.def has a case, and each case ran its checks. */
static void test_coverage(void **state)
{
    for (int op = 0; op < OP_COUNT; op++) {
        const Case *c = NULL;
        for (int i = 0; i < NCASES; i++)
            if (cases[i].op == (OpId)op)
                c = &cases[i];
        if (!opsem_is_elementwise((OpId)op)) {
            if (c)
                fail_msg("%s is not elementwise but has a case", op_info[op].name);
            continue;
        }
        if (!c)
            fail_msg("elementwise op %s has no case in tests/compiler/test_opsem.c",
                     op_info[op].name);
        if (!ran_interp[op] || !ran_simplify[op] || (c->spell && !ran_elab[op]))
            fail_msg("%s: not every check ran", op_info[op].name);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_definitions), cmocka_unit_test(test_unary),
        cmocka_unit_test(test_binary),      cmocka_unit_test(test_select),
        cmocka_unit_test(test_coverage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
