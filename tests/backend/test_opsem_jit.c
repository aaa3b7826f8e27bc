/* Compiled code of every elementwise op against the op's definition (opsem_eval),
 * within the op's ulps of ops.def.
 *
 * For each elementwise op and each dtype it takes (f32 and f64, and i32 and bool
 * where the op is defined for them; a cast from every dtype to every dtype), a graph
 * PARAM inputs -> op is scheduled, compiled by the JIT and run over a dense sweep:
 * special values, both sides of the branch points of each function and of its
 * compiled form, grids, and random bit patterns over the whole range (pairs of them
 * for two inputs).  Every result must be within opsem_ulps(op, dtype) units in the
 * last place of opsem_eval's; NaN must match NaN, infinities and zeros must match
 * exactly (zeros with their signs where the tolerance is 0).  Integer and boolean
 * results must be exact.
 *
 * The code runs as compiled, without the runtime's pool, so with IEEE denormals
 * (the pool's threads flush them to zero).  Where the compiled code is allowed to
 * differ from the definition:
 *   - ops with a tolerance (the inline f32 exp, log, tanh, sigmoid) may flush
 *     subnormal inputs and results to zero, as the runtime does anyway;
 *   - an i32 result outside the i32 range wraps or saturates in compiled code (the
 *     interpreter keeps the exact integer), and i32 division by zero traps: such
 *     inputs are left out.
 * The worst distance seen per op and dtype is printed; the last test fails when an
 * elementwise op of ops.def has no case here. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cmocka.h needs the headers above, included before it */
#include <cmocka.h>

#include "interp.h"
#include "jit.h"
#include "nnd_abi.h"
#include "opsem.h"
#include "opsem_inputs.h"

#define SP span_none()
#define DT(t) (1u << (t))
#define FLOATS (DT(NND_F32) | DT(NND_F64))
#define ALL (FLOATS | DT(NND_I32) | DT(NND_BOOL))

/* An op and the dtypes of its (numeric) inputs it is checked in. */
typedef struct Case {
    OpId op;
    unsigned dtypes;
} Case;

static const Case cases[] = {
    {OP_NEG, FLOATS | DT(NND_I32)},
    {OP_EXP, FLOATS},
    {OP_LOG, FLOATS},
    {OP_SQRT, FLOATS},
    {OP_RSQRT, FLOATS},
    {OP_ABS, FLOATS | DT(NND_I32)},
    {OP_SIGN, FLOATS | DT(NND_I32)},
    {OP_TANH, FLOATS},
    {OP_SIGMOID, FLOATS},
    {OP_RELU, FLOATS | DT(NND_I32)},
    {OP_SIN, FLOATS},
    {OP_COS, FLOATS},
    {OP_FLOOR, FLOATS | DT(NND_I32)},
    {OP_NOT, DT(NND_BOOL)},
    {OP_CAST, ALL},
    {OP_ADD, FLOATS | DT(NND_I32)},
    {OP_SUB, FLOATS | DT(NND_I32)},
    {OP_MUL, FLOATS | DT(NND_I32)},
    {OP_DIV, FLOATS | DT(NND_I32)},
    {OP_POW, FLOATS | DT(NND_I32)},
    {OP_MIN, FLOATS | DT(NND_I32)},
    {OP_MAX, FLOATS | DT(NND_I32)},
    {OP_LT, ALL},
    {OP_LE, ALL},
    {OP_GT, ALL},
    {OP_GE, ALL},
    {OP_EQ, ALL},
    {OP_NE, ALL},
    {OP_AND, DT(NND_BOOL)},
    {OP_OR, DT(NND_BOOL)},
    {OP_SELECT, ALL},
};
enum { NCASES = sizeof cases / sizeof cases[0] };

/* The worst distance seen, per op and result dtype (-1: not run); which input
 * dtypes each op was compiled for. */
static int64_t worst[OP_COUNT][NND_DTYPE_COUNT];
static bool ran[OP_COUNT][NND_DTYPE_COUNT];

/* ---- inputs ---- */

/* splitmix64 */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi). */
static double rng_uniform(uint64_t *s, double lo, double hi)
{
    return lo + (hi - lo) * (double)(rng_next(s) >> 11) * 0x1p-53;
}

/* Any value of dt, every exponent alike: random bits. */
static double rng_bits(uint64_t *s, NndDType dt)
{
    uint64_t b = rng_next(s);
    if (dt == NND_F32) {
        uint32_t u = (uint32_t)b;
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static void push(DoubleVec *v, double x) { vec_push(v, x); }

/* One input of a float op: the shared values (opsem_inputs.h), a grid over
 * [-100, 100], and random bit patterns. */
static DoubleVec unary_floats(NndDType dt)
{
    DoubleVec v = {0};
    opsem_unary_values(&v);
    for (int i = 0; i <= 8000; i++)
        push(&v, -100 + 200.0 * i / 8000);
    uint64_t s = 42 + (uint64_t)dt;
    for (int i = 0; i < 20000; i++)
        push(&v, rng_bits(&s, dt));
    for (int i = 0; i < 5000; i++)
        push(&v, rng_uniform(&s, -2, 2));
    return v;
}

/* One random value of dt for two- and three-input ops: floats half moderate, half
 * random bits; integers small (their products stay in range) or anywhere. */
static double random_value(uint64_t *s, NndDType dt)
{
    switch (dt) {
    case NND_BOOL: return (double)(rng_next(s) & 1);
    case NND_I32:
        return rng_next(s) & 1 ? floor(rng_uniform(s, -50000, 50000))
                               : (double)(int32_t)(uint32_t)rng_next(s);
    default: return rng_next(s) & 1 ? rng_uniform(s, -12, 12) : rng_bits(s, dt);
    }
}

/* The inputs of op in dtype dt, rounded as values of dt. */
static Tuples make_tuples(OpId op, NndDType dt)
{
    Tuples t = {0};
    uint64_t s = 7 + (uint64_t)op * 131 + (uint64_t)dt;
    DoubleVec base = {0}, pairs = {0};
    if (dt == NND_BOOL) {
        push(&base, 0);
        push(&base, 1);
        push(&pairs, 0);
        push(&pairs, 1);
    } else if (dt == NND_I32) {
        for (int k = -300; k <= 300; k++)
            push(&base, k);
        for (int e = 7; e <= 31; e++) {
            push(&base, ldexp(1, e) - 1);
            push(&base, -ldexp(1, e));
        }
        for (int k = -12; k <= 12; k++)
            push(&pairs, k);
        push(&pairs, 46340);
        push(&pairs, -46341);
        push(&pairs, 2147483647);
        push(&pairs, -2147483648.0);
    } else {
        base = unary_floats(dt);
        opsem_pair_values(&pairs);
    }
    int arity = op_info[op].arity;
    if (arity == 1) {
        for (int i = 0; i < base.n; i++)
            tuple_add(&t, 1, &base.v[i]);
    } else {
        for (int i = 0; i < pairs.n; i++)
            for (int j = 0; j < pairs.n; j++)
                for (int c = 0; c < (arity == 3 ? 2 : 1); c++)
                    tuple_add(&t, arity,
                              arity == 3 ? (double[]){c, pairs.v[i], pairs.v[j]}
                                         : (double[]){pairs.v[i], pairs.v[j]});
        for (int i = 0; dt != NND_BOOL && i < 20000; i++) {
            double x[3] = {random_value(&s, dt), random_value(&s, dt), random_value(&s, dt)};
            if (arity == 3)
                x[0] = (double)(rng_next(&s) & 1);
            tuple_add(&t, arity, x);
        }
    }
    for (int k = 0; k < arity; k++)
        for (int i = 0; i < t.n; i++)
            t.in[k].v[i] = itensor_round(op == OP_SELECT && k == 0 ? NND_BOOL : dt, t.in[k].v[i]);
    vec_free(&base);
    vec_free(&pairs);
    return t;
}

/* ---- compiling and running one op ---- */

/* The code of y = op(PARAM 0, ...) over n elements, its results written to out as
 * doubles (args->out). */
typedef struct Compiled {
    Graph g;
    Schedule s;
    Jit *jit;
    NndStepFn fn;
    NndDType rdt; /* the result's dtype */
} Compiled;

static NndDType input_dtype(OpId op, int k, NndDType dt)
{
    return op == OP_SELECT && k == 0 ? NND_BOOL : dt;
}

static void compile_op(Compiled *c, OpId op, NndDType dt, NndDType to, int64_t n)
{
    graph_init(&c->g);
    Node y = {.op = (uint8_t)op, .nin = (uint8_t)op_info[op].arity};
    for (int k = 0; k < y.nin; k++) {
        Node p = {.op = OP_PARAM,
                  .dtype = (uint8_t)input_dtype(op, k, dt),
                  .idx = k,
                  .shape = {1, {n}},
                  .name = "p"};
        y.in[k] = graph_append(&c->g, &p);
    }
    if (op == OP_CAST)
        y.dtype = (uint8_t)to;
    NodeId root = gb_node(&c->g, y);
    c->rdt = (NndDType)graph_node(&c->g, root)->dtype;
    ScheduleRequest rq = {&root, 1, NULL, 0, 1, false, false};
    char err[512];
    if (!schedule_build(&c->s, &c->g, &rq, err, sizeof err))
        fail_msg("schedule_build: %s", err);
    CodegenFunction f = {"nnd_opsem", &c->s, false, false, NULL, 0};
    JitOptions jo = {false, 0};
    void *addr = NULL;
    c->jit = jit_compile(&c->g, &f, 1, &jo, &addr, err, sizeof err);
    if (!c->jit)
        fail_msg("jit_compile: %s", err);
    c->fn = (NndStepFn)addr;
}

static void compiled_free(Compiled *c)
{
    jit_free(c->jit);
    schedule_free(&c->s);
    graph_free(&c->g);
}

/* A runtime buffer of dtype holding v. */
static void *buffer_of(NndDType dt, const DoubleVec *v)
{
    size_t size = dt == NND_F64 ? 8 : dt == NND_BOOL ? 1 : 4;
    void *b = xcalloc((size_t)v->n + 1, size);
    for (int i = 0; i < v->n; i++) {
        switch (dt) {
        case NND_F32: ((float *)b)[i] = (float)v->v[i]; break;
        case NND_F64: ((double *)b)[i] = v->v[i]; break;
        case NND_I32: ((int32_t *)b)[i] = (int32_t)v->v[i]; break;
        default: ((uint8_t *)b)[i] = v->v[i] != 0; break;
        }
    }
    return b;
}

/* Runs c on the tuples; out receives the results. */
static void run_op(Compiled *c, OpId op, NndDType dt, const Tuples *t, double *out)
{
    void *bufs[3] = {NULL, NULL, NULL};
    for (int k = 0; k < op_info[op].arity; k++)
        bufs[k] = buffer_of(input_dtype(op, k, dt), &t->in[k]);
    char *arena = xcalloc((size_t)c->s.arena_bytes + 64, 1);
    NndStepArgs a = {.params = bufs, .arena = arena, .out = out, .batch = 1};
    c->fn(&a);
    assert_int_equal(a.status, 0);
    free(arena);
    for (int k = 0; k < 3; k++)
        free(bufs[k]);
}

/* ---- comparing ---- */

/* x's place among the values of dt, in order: adjacent values differ by 1. */
static int64_t ordinal(double x, NndDType dt)
{
    if (dt == NND_F32) {
        float f = (float)x;
        int32_t i;
        memcpy(&i, &f, sizeof i);
        return i < 0 ? (int64_t)INT32_MIN - i : i;
    }
    int64_t i;
    memcpy(&i, &x, sizeof i);
    return i < 0 ? INT64_MIN - i : i;
}

static bool is_subnormal(double x, NndDType dt)
{
    double min = dt == NND_F32 ? FLT_MIN : DBL_MIN;
    return x != 0 && fabs(x) < min;
}

/* Whether got is within ulps of want: NaN matches NaN, infinities and zeros match
 * exactly (a zero's sign too, unless the op has a tolerance: the inline f32 tanh
 * makes tanh(-0) +0); with a tolerance, a subnormal want may come out as zero or
 * another subnormal. */
static bool close_to(double got, double want, NndDType dt, int ulps, int64_t *dist)
{
    *dist = 0;
    if (isnan(want) || isnan(got))
        return isnan(want) && isnan(got);
    if (ulps > 0 && is_subnormal(want, dt))
        return got == 0 || is_subnormal(got, dt);
    if (isinf(want) || isinf(got) || want == 0 || got == 0)
        return want == got && (ulps > 0 || signbit(want) == signbit(got));
    int64_t d = ordinal(got, dt) - ordinal(want, dt);
    *dist = d < 0 ? -d : d;
    return *dist <= ulps;
}

/* The i32 results compiled code computes as the definition: integers within range,
 * and no division by zero (see the top). */
static bool i32_defined(OpId op, const double *x)
{
    if (op == OP_DIV && x[1] == 0)
        return false;
    double r = opsem_eval(op, NND_F64, x);
    if (isnan(r))
        return op == OP_CAST;
    return r >= -2147483648.0 && r < 2147483648.0;
}

/* Fails unless got, compiled op's result of dtype rdt for inputs x of dtype dt, is
 * within the op's tolerance; returns the distance. */
static int64_t judge(OpId op, NndDType dt, NndDType rdt, const double *x, double got)
{
    int ulps = opsem_ulps(op, rdt);
    double xf[3];
    for (int k = 0; k < op_info[op].arity; k++)
        xf[k] = ulps > 0 && is_subnormal(x[k], dt) ? copysign(0, x[k]) : x[k];
    double want = opsem_eval(op, rdt, x);
    int64_t d, df;
    bool ok = close_to(got, want, rdt, ulps, &d);
    /* with a tolerance, subnormal inputs may be read as zeros */
    if (!ok && ulps > 0 && close_to(got, opsem_eval(op, rdt, xf), rdt, ulps, &df)) {
        ok = true;
        d = df;
    }
    if (!ok) {
        char in[200] = "";
        for (int k = 0; k < op_info[op].arity; k++)
            snprintf(in + strlen(in), sizeof in - strlen(in), "%s%a", k ? ", " : "", x[k]);
        fail_msg("%s %s(%s) -> %s = %a, opsem_eval = %a (%lld ulp, %d allowed)", dtype_name(dt),
                 op_info[op].name, in, dtype_name(rdt), got, want, (long long)d, ulps);
    }
    return d;
}

static void check_op(OpId op, NndDType dt, NndDType to, const Tuples *t)
{
    Compiled c;
    compile_op(&c, op, dt, to, t->n);
    double *out = xcalloc((size_t)t->n, sizeof(double));
    /* results outside the i32 range (or dividing by 0) are computed on ones instead */
    Tuples run = {0};
    bool *skip = xcalloc((size_t)t->n, 1);
    for (int i = 0; i < t->n; i++) {
        double x[3];
        for (int k = 0; k < op_info[op].arity; k++)
            x[k] = t->in[k].v[i];
        if (c.rdt == NND_I32 && !i32_defined(op, x)) {
            skip[i] = true;
            for (int k = 0; k < op_info[op].arity; k++)
                x[k] = 1;
        }
        tuple_add(&run, op_info[op].arity, x);
    }
    run_op(&c, op, dt, &run, out);
    assert_true(opsem_ulps(op, c.rdt) >= 0);
    int64_t w = worst[op][c.rdt] > 0 ? worst[op][c.rdt] : 0;
    int checked = 0;
    for (int i = 0; i < t->n; i++) {
        if (skip[i])
            continue;
        double x[3];
        for (int k = 0; k < op_info[op].arity; k++)
            x[k] = t->in[k].v[i];
        int64_t d = judge(op, dt, c.rdt, x, out[i]);
        if (d > w)
            w = d;
        checked++;
    }
    worst[op][c.rdt] = w;
    ran[op][dt] = checked > 0;
    free(skip);
    free(out);
    tuples_free(&run);
    compiled_free(&c);
}

static void check_case(const Case *c)
{
    char line[300];
    snprintf(line, sizeof line, "%-8s", op_info[c->op].name);
    for (int d = 0; d < NND_DTYPE_COUNT; d++) {
        NndDType dt = (NndDType)d;
        if (!(c->dtypes & DT(dt)))
            continue;
        Tuples t = make_tuples(c->op, dt);
        for (int to = 0; to < (c->op == OP_CAST ? NND_DTYPE_COUNT : 1); to++)
            check_op(c->op, dt, (NndDType)to, &t);
        snprintf(line + strlen(line), sizeof line - strlen(line), " %s: %d inputs", dtype_name(dt),
                 t.n);
        tuples_free(&t);
    }
    /* the worst distance by result dtype */
    for (int d = 0; d < NND_DTYPE_COUNT; d++)
        if (worst[c->op][d] >= 0 && (d == NND_F32 || d == NND_F64))
            snprintf(line + strlen(line), sizeof line - strlen(line),
                     "; %s worst %lld ulp (%d allowed)", dtype_name((NndDType)d),
                     (long long)worst[c->op][d], opsem_ulps(c->op, (NndDType)d));
    print_message("%s\n", line);
}

static void run_arity(int arity)
{
    for (int i = 0; i < NCASES; i++)
        if (op_info[cases[i].op].arity == arity)
            check_case(&cases[i]);
}

static void test_unary(void **state) { run_arity(1); }

static void test_binary(void **state) { run_arity(2); }

static void test_select(void **state) { run_arity(3); }

/* NND_OPSEM_STRIDE=k (not set: skipped): every k-th f32 bit pattern through each
 * one-input f32 op, and 2^32 / k random pairs through f32 pow, a chunk at a time
 * (k = 1: every float; the measurement behind the f32 ulps of ops.def). */
static void test_deep(void **state)
{
    const char *env = getenv("NND_OPSEM_STRIDE");
    long stride = env ? strtol(env, NULL, 10) : 0;
    if (stride < 1)
        skip();
    enum { CH = 1 << 20 };
    int64_t total = (int64_t)(0x100000000ll / stride);
    for (int ci = 0; ci < NCASES; ci++) {
        OpId op = cases[ci].op;
        int arity = op_info[op].arity;
        if (!(cases[ci].dtypes & DT(NND_F32)) || op == OP_CAST || (arity != 1 && op != OP_POW))
            continue;
        Compiled c;
        compile_op(&c, op, NND_F32, NND_F32, CH);
        Tuples t = {0};
        for (int k = 0; k < arity; k++)
            for (int i = 0; i < CH; i++)
                push(&t.in[k], 0);
        t.n = CH;
        double *out = xcalloc(CH, sizeof(double));
        int64_t w = 0;
        uint64_t s = 99;
        for (int64_t first = 0; first < total; first += CH) {
            int n = total - first < CH ? (int)(total - first) : CH;
            for (int i = 0; i < CH; i++) {
                uint32_t u = (uint32_t)((first + (i < n ? i : 0)) * stride);
                float f;
                memcpy(&f, &u, sizeof f);
                t.in[0].v[i] = f;
                if (arity == 2) {
                    t.in[0].v[i] = random_value(&s, NND_F32);
                    t.in[1].v[i] = random_value(&s, NND_F32);
                    t.in[0].v[i] = (float)t.in[0].v[i];
                    t.in[1].v[i] = (float)t.in[1].v[i];
                }
            }
            run_op(&c, op, NND_F32, &t, out);
            for (int i = 0; i < n; i++) {
                double x[2] = {t.in[0].v[i], arity == 2 ? t.in[1].v[i] : 0};
                int64_t d = judge(op, NND_F32, NND_F32, x, out[i]);
                if (d > w)
                    w = d;
            }
        }
        print_message("%-8s f32: %lld inputs, worst %lld ulp (%d allowed)\n", op_info[op].name,
                      (long long)total, (long long)w, opsem_ulps(op, NND_F32));
        free(out);
        tuples_free(&t);
        compiled_free(&c);
    }
}

/* Every elementwise op of ops.def has a case and a tolerance, and was compiled for
 * each dtype of its case. */
static void test_coverage(void **state)
{
    for (int op = 0; op < OP_COUNT; op++) {
        const Case *c = NULL;
        for (int i = 0; i < NCASES; i++)
            if (cases[i].op == (OpId)op)
                c = &cases[i];
        if (!opsem_is_elementwise((OpId)op)) {
            assert_int_equal(opsem_ulps((OpId)op, NND_F32), -1);
            if (c)
                fail_msg("%s is not elementwise but has a case", op_info[op].name);
            continue;
        }
        if (!c)
            fail_msg("elementwise op %s has no case in tests/backend/test_opsem_jit.c",
                     op_info[op].name);
        if (opsem_ulps((OpId)op, NND_F32) < 0 || opsem_ulps((OpId)op, NND_F64) < 0)
            fail_msg("elementwise op %s has no ulps in ops.def", op_info[op].name);
        for (int d = 0; d < NND_DTYPE_COUNT; d++)
            if ((c->dtypes & DT(d)) && !ran[op][d])
                fail_msg("%s was not compiled for %s inputs", op_info[op].name,
                         dtype_name((NndDType)d));
    }
}

int main(void)
{
    for (int op = 0; op < OP_COUNT; op++)
        for (int d = 0; d < NND_DTYPE_COUNT; d++)
            worst[op][d] = -1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary),  cmocka_unit_test(test_binary),
        cmocka_unit_test(test_select), cmocka_unit_test(test_coverage),
        cmocka_unit_test(test_deep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
