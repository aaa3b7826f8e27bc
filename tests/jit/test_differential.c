/* Differential tests: compiled code against the reference interpreter.
 *
 * The examples and a few hundred generated programs (elementwise chains,
 * broadcasting, reductions, matrix products, slices, several update rules and
 * schedules) are run for a few steps by both engines from the same initial values
 * on the same batches; losses, parameters, optimizer states, metrics and forward
 * outputs must agree: to 1e-9 (relative) in f64, 2e-4 in f32, where the compiled
 * code's reductions may sum in another order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "driver.h"
#include "sema.h"
#include "simplify.h"

typedef struct Rng {
    uint64_t s;
} Rng;

static uint64_t next(Rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s;
}

static int pick(Rng *r, int n) { return (int)(next(r) % (uint64_t)n); }
static double uni(Rng *r) { return (double)(next(r) >> 11) * 0x1p-53 * 2 - 1; }

typedef struct Compiled {
    Frontend fe;
    Program *p;
} Compiled;

static Compiled *compile(const char *src, NndDType dt)
{
    Compiled *c = xcalloc(1, sizeof *c);
    frontend_init(&c->fe);
    Module *m = frontend_load_text(&c->fe, NND_SOURCE_DIR "/tests/jit/generated.nnd", src, strlen(src));
    if (!diags_has_errors(&c->fe.diags))
        sema_check(&c->fe, m);
    if (!diags_has_errors(&c->fe.diags)) {
        ElabOptions eo = {dt, NULL, 0};
        c->p = elab_program(&c->fe, m, &eo);
    }
    if (!c->p) {
        char *d = diags_render(&c->fe.diags);
        print_error("program:\n%s\ndiagnostics:\n%s\n", src, d);
        free(d);
        fail();
    }
    NodeRefVec roots = {0};
    program_roots(c->p, &roots);
    simplify_graph(&c->p->g, roots.v, roots.n, SIMPLIFY_FAST, NULL);
    vec_free(&roots);
    assert_true(program_load_data(c->p, &c->fe.diags));
    return c;
}

static void compiled_free(Compiled *c)
{
    program_free(c->p);
    frontend_free(&c->fe);
    free(c);
}

static double value_at(const NndTensor *t, int64_t i)
{
    switch (t->dtype) {
    case NND_F32: return ((float *)t->data)[i];
    case NND_F64: return ((double *)t->data)[i];
    case NND_I32: return ((int32_t *)t->data)[i];
    default: return ((uint8_t *)t->data)[i];
    }
}

static bool close_enough(double a, double b, double tol)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    if (a == b)
        return true; /* also equal infinities */
    return fabs(a - b) <= tol * (1 + fabs(a) + fabs(b));
}

static void compare_tensors(const char *what, const char *name, const NndTensor *a, const NndTensor *b,
                            double tol, const char *src)
{
    int64_t n = nnd_tensor_numel(a);
    for (int64_t i = 0; i < n; i++) {
        double x = value_at(a, i), y = value_at(b, i);
        if (!close_enough(x, y, tol)) {
            print_error("%s %s[%lld]: interpreter %.17g, compiled %.17g\nprogram:\n%s\n", what, name,
                        (long long)i, x, y, src);
            fail();
        }
    }
}

/* Runs `steps` steps with each engine from the same start, comparing as it goes. */
static void differential(const char *src, NndDType dt, int steps, bool evals)
{
    Compiled *c = compile(src, dt);
    Program *p = c->p;
    double tol = dt == NND_F64 ? 1e-9 : 2e-4;
    char err[1024];
    Executable xi, xj;
    ExecOptions oi = {ENGINE_INTERP, false, 0, false}, oj = {ENGINE_JIT, false, 0, false};
    assert_true(executable_build(&xi, p, &oi, err, sizeof err));
    if (!executable_build(&xj, p, &oj, err, sizeof err)) {
        print_error("%s\nprogram:\n%s\n", err, src);
        fail();
    }
    Model mi, mj;
    assert_true(model_init(p, &mi, err, sizeof err));
    assert_true(model_copy(&mi, &mj, err, sizeof err));
    NndErr ne;
    NndPool *pool = nnd_pool_create(2, &ne);
    DataSet *ds = &p->data.v[p->train_data];
    uint32_t idx[64];
    for (int s = 0; s < steps; s++) {
        int64_t b = NND_MIN(p->batch, ds->n);
        for (int64_t i = 0; i < b; i++)
            idx[i] = (uint32_t)((i * 7 + (int64_t)s * 3) % ds->n);
        double li, lj;
        assert_true(driver_step(p, &xi, &mi, pool, idx, b, s, &li, err, sizeof err));
        assert_true(driver_step(p, &xj, &mj, pool, idx, b, s, &lj, err, sizeof err));
        if (!close_enough(li, lj, tol)) {
            print_error("loss at step %d: interpreter %.17g, compiled %.17g\nprogram:\n%s\n", s, li, lj, src);
            fail();
        }
        for (int i = 0; i < p->params.n; i++)
            compare_tensors("parameter", p->params.v[i].name, &mi.params[i], &mj.params[i], tol, src);
        for (int i = 0; i < p->states.n; i++)
            compare_tensors("state", p->states.v[i].name, &mi.states[i], &mj.states[i], tol, src);
    }
    /* inference agrees too */
    if (p->forward) {
        int64_t b = NND_MIN(p->batch, ds->n);
        int64_t per = shape_numel_at(&graph_node(&p->g, p->forward)->shape, 1);
        double *fi = xcalloc((size_t)(b * per), sizeof(double)), *fj = xcalloc((size_t)(b * per), sizeof(double));
        for (int64_t i = 0; i < b; i++)
            idx[i] = (uint32_t)(i % ds->n);
        assert_true(driver_forward(p, &xi, &mi, pool, p->train_data, idx, b, fi, err, sizeof err));
        assert_true(driver_forward(p, &xj, &mj, pool, p->train_data, idx, b, fj, err, sizeof err));
        for (int64_t i = 0; i < b * per; i++)
            if (!close_enough(fi[i], fj[i], tol)) {
                print_error("forward[%lld]: interpreter %.17g, compiled %.17g\nprogram:\n%s\n",
                            (long long)i, fi[i], fj[i], src);
                fail();
            }
        free(fi);
        free(fj);
    }
    for (int i = 0; evals && i < p->evals.n; i++) {
        double vi[16], vj[16];
        assert_true(driver_evaluate(p, &xi, &mi, pool, i, vi, err, sizeof err));
        assert_true(driver_evaluate(p, &xj, &mj, pool, i, vj, err, sizeof err));
        for (int k = 0; k < p->evals.v[i].metrics.n; k++)
            if (!close_enough(vi[k], vj[k], tol)) {
                print_error("metric %s: interpreter %.17g, compiled %.17g\nprogram:\n%s\n",
                            p->evals.v[i].metrics.v[k].name, vi[k], vj[k], src);
                fail();
            }
    }
    nnd_pool_destroy(pool);
    model_free(&mi);
    model_free(&mj);
    executable_free(&xi);
    executable_free(&xj);
    compiled_free(c);
}

/* ---- generated programs ---- */

static void gen_data(Rng *r, StrBuf *b, int n, int d, int o, bool classes)
{
    sb_puts(b, "    data train = tensors(x = [");
    for (int i = 0; i < n; i++) {
        sb_puts(b, i ? ", [" : "[");
        for (int k = 0; k < d; k++)
            sb_printf(b, "%s%.3f", k ? ", " : "", uni(r) * 2);
        sb_putc(b, ']');
    }
    sb_puts(b, "], y = ");
    if (classes) {
        sb_puts(b, "i32([");
        for (int i = 0; i < n; i++)
            sb_printf(b, "%s%d", i ? ", " : "", pick(r, o));
        sb_puts(b, "]))\n");
    } else {
        sb_putc(b, '[');
        for (int i = 0; i < n; i++) {
            sb_puts(b, i ? ", [" : "[");
            for (int k = 0; k < o; k++)
                sb_printf(b, "%s%.3f", k ? ", " : "", uni(r));
            sb_putc(b, ']');
        }
        sb_puts(b, "])\n");
    }
}

/* An expression of shape [B, H] from h (shape [B, H]). */
static void gen_hidden(Rng *r, StrBuf *b, int depth)
{
    if (depth <= 0) {
        sb_puts(b, "h");
        return;
    }
    int k = pick(r, 16);
    switch (k) {
    case 0: case 1: {
        static const char *const act[] = {"tanh", "sigmoid", "relu", "softplus", "abs", "silu", "gelu", "elu"};
        sb_printf(b, "%s(", act[pick(r, 8)]);
        gen_hidden(r, b, depth - 1);
        sb_putc(b, ')');
        break;
    }
    case 2: case 3: {
        static const char *const op[] = {" + ", " - ", " * "};
        sb_putc(b, '(');
        gen_hidden(r, b, depth - 1);
        sb_puts(b, op[pick(r, 3)]);
        gen_hidden(r, b, depth - 1);
        sb_putc(b, ')');
        break;
    }
    case 4: /* broadcast of a parameter row */
        sb_putc(b, '(');
        gen_hidden(r, b, depth - 1);
        sb_printf(b, " %s v)", pick(r, 2) ? "*" : "+");
        break;
    case 5: /* broadcast of a column: a per-row reduction */ {
        static const char *const red[] = {"mean", "sum", "max", "logsumexp"};
        sb_putc(b, '(');
        gen_hidden(r, b, depth - 1);
        sb_printf(b, " - %s(", red[pick(r, 4)]);
        gen_hidden(r, b, depth - 1);
        sb_puts(b, ", axis = -1, keepdims = true))");
        break;
    }
    case 6: /* a scalar hyper-parameter and a constant */
        sb_puts(b, "(scale * ");
        gen_hidden(r, b, depth - 1);
        sb_printf(b, " / %d)", 1 + pick(r, 4));
        break;
    case 7: /* division by something positive */
        sb_putc(b, '(');
        gen_hidden(r, b, depth - 1);
        sb_puts(b, " / (1 + abs(");
        gen_hidden(r, b, depth - 1);
        sb_puts(b, ")))");
        break;
    case 8: /* a square matrix product */
        sb_putc(b, '(');
        gen_hidden(r, b, depth - 1);
        sb_puts(b, pick(r, 2) ? " @ S)" : " @ transpose(S))");
        break;
    case 9: /* runtime select */
        sb_puts(b, "(if ");
        gen_hidden(r, b, depth - 1);
        sb_puts(b, " > 0 then ");
        gen_hidden(r, b, depth - 1);
        sb_puts(b, " else -0.5 * ");
        gen_hidden(r, b, depth - 1);
        sb_putc(b, ')');
        break;
    case 10: /* min / max with a constant */
        sb_printf(b, "%s(", pick(r, 2) ? "min" : "max");
        gen_hidden(r, b, depth - 1);
        sb_printf(b, ", %.2f)", uni(r));
        break;
    case 11: /* powers */
        sb_putc(b, '(');
        gen_hidden(r, b, depth - 1);
        sb_printf(b, ")^%d", 1 + pick(r, 3));
        break;
    case 12: /* sqrt and log of positive values, exp of bounded ones */
        sb_printf(b, "%s(1 + ", pick(r, 2) ? "sqrt" : "log");
        gen_hidden(r, b, depth - 1);
        sb_puts(b, "^2)");
        break;
    case 13:
        sb_puts(b, "exp(tanh(");
        gen_hidden(r, b, depth - 1);
        sb_puts(b, "))");
        break;
    default:
        gen_hidden(r, b, depth - 1);
        break;
    }
}

static char *gen_program(Rng *r)
{
    StrBuf b = {0};
    int d = 2 + pick(r, 4), h = 2 + pick(r, 5), o = 1 + pick(r, 3), n = 5 + pick(r, 8);
    bool classes = pick(r, 2) && o > 1;
    sb_puts(&b, "use nn\nuse optim\n");
    sb_printf(&b, "model M {\n    fc1 = Dense(%d, %d)\n    fc2 = Dense(%d, %d)\n", d, h, h, o);
    sb_printf(&b, "    param v: [%d] = normal(0, 0.5)\n    param S: [%d, %d] = glorot_normal\n", h, h, h);
    sb_puts(&b, "    let scale = 0.7\n");
    sb_puts(&b, "    fn forward(x) {\n        let h = fc1(x)\n        fc2(");
    gen_hidden(r, &b, 2 + pick(r, 3));
    sb_puts(&b, ")\n    }\n}\n");
    sb_puts(&b, "train {\n");
    gen_data(r, &b, n, d, o, classes);
    sb_puts(&b, "    net = M()\n");
    if (classes)
        sb_puts(&b, "    loss = cross_entropy(net(x), y)\n");
    else
        sb_printf(&b, "    loss = %s(net(x), y)%s\n", pick(r, 2) ? "mse" : "mae",
                  pick(r, 3) == 0 ? " + 0.01 * l2(net)" : "");
    static const char *const opts[] = {
        "SGD(lr = 0.05)",
        "Momentum(lr = 0.05, momentum = 0.9)",
        "Momentum(lr = 0.05, nesterov = true)",
        "Adam(lr = 0.01, eps = 1e-3)",
        "AdamW(lr = 0.01, eps = 1e-3, wd = 0.1)",
        "RMSprop(lr = 0.01, eps = 1e-3)",
        "Adagrad(lr = 0.05, eps = 1e-3)",
        "SGD(lr = 0.05 * 0.5^floor(step / 2))",
    };
    sb_printf(&b, "    opt = %s\n", opts[pick(r, 8)]);
    if (pick(r, 3) == 0)
        sb_printf(&b, "    opt net.fc2 = %s\n", opts[pick(r, 8)]);
    if (pick(r, 4) == 0)
        sb_puts(&b, "    freeze net.fc1\n");
    sb_printf(&b, "    batch = %d\n", 2 + pick(r, n - 1));
    if (classes)
        sb_puts(&b, "    eval train every epoch: accuracy(net(x), y), loss\n");
    else
        sb_puts(&b, "    eval train every epoch: loss\n");
    sb_puts(&b, "}\n");
    return b.s;
}

static void test_generated(void **state)
{
    int count = 80;
    const char *env = getenv("NND_DIFF_PROGRAMS");
    if (env)
        count = atoi(env);
    Rng r = {0x2545F4914F6CDD1Dull};
    for (int i = 0; i < count; i++) {
        char *src = gen_program(&r);
        differential(src, i % 2 ? NND_F32 : NND_F64, 4, true);
        free(src);
    }
}

static char *read_example(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/examples/%s", NND_SOURCE_DIR, name);
    size_t len;
    char *s = read_file(path, &len);
    assert_non_null(s);
    return s;
}

static void test_examples(void **state)
{
    char *xor = read_example("xor.nnd");
    differential(xor, NND_F32, 20, true);
    differential(xor, NND_F64, 20, true);
    free(xor);
}

/* The Fashion-MNIST MLP, a few steps (the data is installed by scripts/setup.sh). */
static void test_fashion_mnist(void **state)
{
    FILE *f = fopen("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", "rb");
    if (!f)
        skip();
    fclose(f);
    char *src = read_example("fashion_mnist_mlp.nnd");
    /* the 10000-image evaluation is left out: the interpreter would take seconds */
    differential(src, NND_F32, 3, false);
    differential(src, NND_F64, 2, false);
    free(src);
}

/* Integer tensors: labels, argmax, and maxima and sums of integers. */
static void test_integers(void **state)
{
    const char *src =
        "use nn\nuse optim\n"
        "model M {\n    fc = Dense(3, 4)\n    fn forward(x: [B, 3]) = fc(x)\n}\n"
        "train {\n"
        "    data train = tensors(x = [[1, 2, 0], [0, 1, 1], [2, 0, 1], [1, 1, 1], [0, 0, 2], [2, 2, 0]],\n"
        "                         y = i32([0, 1, 2, 3, 1, 0]))\n"
        "    net = M()\n"
        "    loss = cross_entropy(net(x), y)\n"
        "    opt = Adam(lr = 0.1)\n"
        "    batch = 6\n"
        "    eval train every epoch: accuracy(net(x), y), top = max(argmax(net(x), axis = -1)),\n"
        "        labels = sum(y), lowest = min(y), hits = sum(argmax(net(x), axis = -1) == y)\n"
        "}\n";
    differential(src, NND_F32, 5, true);
    differential(src, NND_F64, 5, true);
}

/* Bit-for-bit reproducibility: the same seed and thread count give the same bits. */
static void test_reproducible(void **state)
{
    char *src = read_example("xor.nnd");
    Compiled *c = compile(src, NND_F32);
    Program *p = c->p;
    char err[512];
    NndTensor *first = NULL;
    for (int run = 0; run < 2; run++) {
        Executable x;
        ExecOptions o = {ENGINE_JIT, false, 0, false};
        assert_true(executable_build(&x, p, &o, err, sizeof err));
        Model m;
        assert_true(model_init(p, &m, err, sizeof err));
        NndErr ne;
        NndPool *pool = nnd_pool_create(2, &ne);
        TrainOptions to = {pool, NULL, false};
        NndTrainResult res;
        assert_int_equal(driver_train(p, &x, &m, &to, &res, err, sizeof err), 0);
        if (run == 0) {
            first = xcalloc((size_t)p->params.n, sizeof(NndTensor));
            for (int i = 0; i < p->params.n; i++) {
                nnd_tensor_alloc(&first[i], m.params[i].dtype, m.params[i].rank, m.params[i].shape, &ne);
                memcpy(first[i].data, m.params[i].data, 4 * (size_t)nnd_tensor_numel(&first[i]));
            }
        } else {
            for (int i = 0; i < p->params.n; i++) {
                assert_memory_equal(first[i].data, m.params[i].data, 4 * (size_t)nnd_tensor_numel(&first[i]));
                nnd_tensor_free(&first[i]);
            }
        }
        nnd_pool_destroy(pool);
        model_free(&m);
        executable_free(&x);
    }
    free(first);
    compiled_free(c);
    free(src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_examples),
        cmocka_unit_test(test_reproducible),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_fashion_mnist),
        cmocka_unit_test(test_generated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
