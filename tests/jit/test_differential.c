/* Differential tests: compiled code against the reference interpreter.
 *
 * The examples, a few hundred generated programs (elementwise chains,
 * broadcasting, reductions, matrix products, several update rules and schedules;
 * convolutions over combinations of stride, padding, dilation and groups;
 * poolings) and the hand-written programs of tests/jit/programs/ (a CNN, embeddings
 * and concat, normalization and dropout, custom gradients, second order,
 * orthogonal initialization and Sequential, the remaining elementwise ops) are run
 * for a few steps by both engines from the same initial values on the same
 * batches, the last step on a smaller batch; losses, parameters, optimizer and
 * layer states, metrics and forward outputs must agree: to 1e-9 (relative) in f64,
 * 2e-4 in f32, where the compiled code's reductions may sum in another order.
 * Every op of ops.def must be run by some program (test_op_coverage). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the headers above, included before it */
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "compile.h"
#include "interp.h"
#include "train.h"

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

/* precision: NULL, or the train block's precision setting (--set precision=...) */
static Compiled *compile_with(const char *src, NndDType dt, const char *precision)
{
    Compiled *c = xcalloc(1, sizeof *c);
    frontend_init(&c->fe);
    Override ov = {"precision", precision, 0, false, false};
    CompileOptions co = {.float_dtype = dt, .overrides = &ov, .noverrides = precision != NULL};
    c->p = compile(&c->fe, NND_SOURCE_DIR "/tests/jit/generated.nnd", src, &co);
    if (!c->p) {
        char *d = diags_render(&c->fe.diags);
        print_error("program:\n%s\ndiagnostics:\n%s\n", src, d);
        free(d);
        fail();
    }
    assert_true(program_load_data(c->p, &c->fe.diags));
    return c;
}

static Compiled *compile_src(const char *src, NndDType dt) { return compile_with(src, dt, NULL); }

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

static void compare_tensors(const char *what, const char *name, const NndTensor *a,
                            const NndTensor *b, double tol, const char *src)
{
    int64_t n = nnd_tensor_numel(a);
    for (int64_t i = 0; i < n; i++) {
        double x = value_at(a, i), y = value_at(b, i);
        if (!close_enough(x, y, tol)) {
            print_error("%s %s[%lld]: interpreter %.17g, compiled %.17g\nprogram:\n%s\n", what,
                        name, (long long)i, x, y, src);
            fail();
        }
    }
}

/* ---- op coverage ----
 * Every op of ops.def that a compiled step, eval or forward function can contain
 * must have run through both engines in some program of this file.  An op that
 * cannot appear there is listed here with the reason; a new op in ops.def fails
 * test_op_coverage until a program covers it or it is listed. */
static const struct {
    OpId op;
    const char *why;
} op_exempt[] = {
    /* simplify_graph replaces it by its value once autodiff has used its vjp block */
    {OP_CUSTOM, "a custom gradient's marker: gone after simplification"},
    /* initializers run once, in the interpreter only (model_init), and the schedule
     * rejects them in compiled code ("an initializer's draw in compiled code") */
    {OP_RANDU, "initializers only (uniform)"},
    {OP_RANDN, "initializers only (normal)"},
    {OP_ORTHO, "initializers only (orthogonal)"},
};

/* ops in graphs that both engines ran */
static bool op_seen[OP_COUNT];
/* false when NND_DIFF_PROGRAMS picked a subset: coverage is not checked then */
static bool all_programs = true;

static void op_cover(Program *p, bool evals)
{
    NodeVec roots = {0};
    program_step_roots(p, &roots);
    if (p->forward)
        vec_push(&roots, p->forward);
    for (int i = 0; evals && i < p->evals.n; i++)
        for (int k = 0; k < p->evals.v[i].metrics.n; k++)
            vec_push(&roots, p->evals.v[i].metrics.v[k].node);
    bool *live = xcalloc((size_t)graph_count(&p->g), sizeof(bool));
    graph_mark_live(&p->g, roots.v, roots.n, live);
    for (int id = 1; id < graph_count(&p->g); id++)
        if (live[id])
            op_seen[graph_node(&p->g, (NodeId)id)->op] = true;
    free(live);
    vec_free(&roots);
}

/* Runs `steps` steps with each engine from the same start, comparing as it goes;
 * then the forward function and (when evals) the eval metrics.  precision: as
 * compile_with. */
static void differential_with(const char *src, NndDType dt, const char *precision, int steps,
                              bool evals)
{
    Compiled *c = compile_with(src, dt, precision);
    Program *p = c->p;
    double tol = dt == NND_F64 ? 1e-9 : 2e-4;
    char err[1024];
    Executable xi, xj;
    ExecOptions oi = {ENGINE_INTERP, false, 0, false, false, 0, false},
                oj = {ENGINE_JIT, false, 0, false, false, 0, false};
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
        /* the last step on a smaller batch, like an epoch's last one: the same code
         * with another B */
        if (s == steps - 1 && s > 0 && b > 2)
            b--;
        for (int64_t i = 0; i < b; i++)
            idx[i] = (uint32_t)((i * 7 + (int64_t)s * 3) % ds->n);
        double li, lj;
        if (!train_step(p, &xi, &mi, pool, idx, b, s, &li, err, sizeof err) ||
            !train_step(p, &xj, &mj, pool, idx, b, s, &lj, err, sizeof err)) {
            print_error("step %d: %s\nprogram:\n%s\n", s, err, src);
            fail();
        }
        if (!close_enough(li, lj, tol)) {
            print_error("loss at step %d: interpreter %.17g, compiled %.17g\nprogram:\n%s\n", s, li,
                        lj, src);
            fail();
        }
        for (int i = 0; i < p->params.n; i++)
            compare_tensors("parameter", p->params.v[i].name, &mi.params[i], &mj.params[i], tol,
                            src);
        for (int i = 0; i < p->states.n; i++)
            compare_tensors("state", p->states.v[i].name, &mi.states[i], &mj.states[i], tol, src);
    }
    /* inference agrees too */
    if (p->forward) {
        int64_t b = NND_MIN(p->batch, ds->n);
        int64_t per = shape_numel_at(&graph_node(&p->g, p->forward)->shape, 1);
        double *fi = xcalloc((size_t)(b * per), sizeof(double)),
               *fj = xcalloc((size_t)(b * per), sizeof(double));
        for (int64_t i = 0; i < b; i++)
            idx[i] = (uint32_t)(i % ds->n);
        assert_true(train_forward(p, &xi, &mi, pool, p->train_data, idx, b, fi, err, sizeof err));
        assert_true(train_forward(p, &xj, &mj, pool, p->train_data, idx, b, fj, err, sizeof err));
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
        assert_true(train_evaluate(p, &xi, &mi, pool, i, vi, err, sizeof err));
        assert_true(train_evaluate(p, &xj, &mj, pool, i, vj, err, sizeof err));
        for (int k = 0; k < p->evals.v[i].metrics.n; k++)
            if (!close_enough(vi[k], vj[k], tol)) {
                print_error("metric %s: interpreter %.17g, compiled %.17g\nprogram:\n%s\n",
                            p->evals.v[i].metrics.v[k].name, vi[k], vj[k], src);
                fail();
            }
    }
    op_cover(p, evals);
    nnd_pool_destroy(pool);
    model_free(&mi);
    model_free(&mj);
    executable_free(&xi);
    executable_free(&xj);
    compiled_free(c);
}

static void differential(const char *src, NndDType dt, int steps, bool evals)
{
    differential_with(src, dt, NULL, steps, evals);
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
    case 0:
    case 1: {
        static const char *const act[] = {"tanh", "sigmoid", "relu", "softplus",
                                          "abs",  "silu",    "gelu", "elu"};
        sb_printf(b, "%s(", act[pick(r, 8)]);
        gen_hidden(r, b, depth - 1);
        sb_putc(b, ')');
        break;
    }
    case 2:
    case 3: {
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
    default: gen_hidden(r, b, depth - 1); break;
    }
}

static char *gen_program(Rng *r)
{
    StrBuf b = {0};
    int d = 2 + pick(r, 4), h = 2 + pick(r, 5), o = 1 + pick(r, 3), n = 5 + pick(r, 8);
    bool classes = pick(r, 2) && o > 1;
    sb_puts(&b, "use nn\nuse optim\n");
    sb_printf(&b, "model M {\n    fc1 = Dense(%d, %d)\n    fc2 = Dense(%d, %d)\n", d, h, h, o);
    sb_printf(&b, "    param v: [%d] = normal(0, 0.5)\n    param S: [%d, %d] = glorot_normal\n", h,
              h, h);
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
    const char *why;
    char *s = read_file(path, 1 << 24, &len, &why);
    assert_non_null(s);
    return s;
}

static void test_examples(void **state)
{
    char * xor = read_example("xor.nnd");
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
        "    data train = tensors(x = [[1, 2, 0], [0, 1, 1], [2, 0, 1], [1, 1, 1], [0, 0, 2], [2, "
        "2, 0]],\n"
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
    Compiled *c = compile_src(src, NND_F32);
    Program *p = c->p;
    char err[512];
    NndTensor *first = NULL;
    for (int run = 0; run < 2; run++) {
        Executable x;
        ExecOptions o = {ENGINE_JIT, false, 0, false, false, 0, false};
        assert_true(executable_build(&x, p, &o, err, sizeof err));
        Model m;
        assert_true(model_init(p, &m, err, sizeof err));
        NndErr ne;
        NndPool *pool = nnd_pool_create(2, &ne);
        TrainOptions to = {.pool = pool};
        NndTrainResult res;
        assert_int_equal(train_run(p, &x, &m, &to, &res, err, sizeof err), 0);
        if (run == 0) {
            first = xcalloc((size_t)p->params.n, sizeof(NndTensor));
            for (int i = 0; i < p->params.n; i++) {
                nnd_tensor_alloc(&first[i], m.params[i].dtype, m.params[i].rank, m.params[i].shape,
                                 &ne);
                memcpy(first[i].data, m.params[i].data, 4 * (size_t)nnd_tensor_numel(&first[i]));
            }
        } else {
            for (int i = 0; i < p->params.n; i++) {
                assert_memory_equal(first[i].data, m.params[i].data,
                                    4 * (size_t)nnd_tensor_numel(&first[i]));
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

/* ---- convolution and pooling, generated ---- */

/* `data train = tensors(x = [N, C, H, W] in [-1, 1), y = [N, 2])` */
static void gen_images(Rng *r, StrBuf *b, int n, int c, int h, int w)
{
    sb_puts(b, "    data train = tensors(x = [");
    for (int i = 0; i < n; i++) {
        sb_puts(b, i ? ",\n        [" : "[");
        for (int k = 0; k < c; k++) {
            sb_puts(b, k ? ", [" : "[");
            for (int y = 0; y < h; y++) {
                sb_puts(b, y ? ", [" : "[");
                for (int x = 0; x < w; x++)
                    sb_printf(b, "%s%.2f", x ? ", " : "", uni(r));
                sb_putc(b, ']');
            }
            sb_putc(b, ']');
        }
        sb_putc(b, ']');
    }
    sb_puts(b, "],\n        y = [");
    for (int i = 0; i < n; i++)
        sb_printf(b, "%s[%.2f, %.2f]", i ? ", " : "", uni(r), uni(r));
    sb_puts(b, "])\n");
}

/* A number when both are equal (unless pair is asked for), else `[h, w]`. */
static void put_hw(StrBuf *b, int h, int w, bool pair)
{
    if (h == w && !pair)
        sb_printf(b, "%d", h);
    else
        sb_printf(b, "[%d, %d]", h, w);
}

typedef enum ConvForm {
    CONV_POSITIONAL, /* conv2d(x, W, stride, padding, dilation, groups) */
    CONV_KEYWORDS, /* conv2d(x, W, padding = ..., groups = ...): defaults for the rest */
    CONV_LAYER, /* the stdlib Conv2d layer, with a bias */
    CONV_LAYER_NOBIAS,
} ConvForm;

typedef struct ConvCase {
    int c, o, kh, kw, sh, sw, ph, pw, dh, dw, groups, h, w;
    const char *padding; /* "same" or "valid" instead of ph, pw; NULL: the numbers */
    bool pairs; /* write equal pairs as pairs */
    bool sanitize; /* in the subset run under sanitizers */
    int batch;
} ConvCase;

/* Each case runs in the four forms, alternately in f32 and f64 (under sanitizers:
 * the marked cases, in one form each).  x is scaled by a parameter first so that
 * the convolution's input gradient is computed too. */
static const ConvCase conv_cases[] = {
    /* c  o  kh kw sh sw ph pw dh dw  g  h  w  padding pairs sanitize batch */
    {2, 3, 3, 3, 1, 1, 0, 0, 1, 1, 1, 6, 6, NULL, false, false, 3}, /* plain, valid */
    {2, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 7, 7, NULL, false, true, 3}, /* stride and padding */
    {2, 2, 3, 2, 2, 1, 1, 0, 1, 1, 1, 6, 5, NULL, false, false, 3}, /* pairs everywhere */
    {2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 4, 5, NULL, true, false,
     3}, /* equal pairs written as pairs */
    {2, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 5, 6, "same", false, false, 3},
    {3, 3, 3, 3, 1, 1, 2, 2, 2, 2, 1, 6, 6, "same", false, true, 3}, /* same with dilation */
    {2, 2, 3, 1, 1, 1, 0, 0, 1, 1, 1, 5, 4, "valid", false, false, 3},
    {2, 2, 3, 3, 1, 1, 2, 2, 2, 1, 1, 6, 6, NULL, false, false, 3}, /* dilation pair */
    {4, 4, 3, 3, 1, 1, 1, 1, 1, 1, 2, 5, 5, NULL, false, false, 3}, /* groups */
    {3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 3, 5, 5, NULL, false, false, 3}, /* depthwise */
    {2, 4, 3, 3, 2, 2, 1, 1, 1, 1, 2, 6, 6, NULL, false, false, 3}, /* depthwise, multiplier 2 */
    {4, 4, 3, 3, 2, 2, 2, 2, 2, 2, 4, 7, 7, NULL, false, true, 3}, /* depthwise, strided, dilated */
    {4, 6, 1, 3, 1, 2, 0, 1, 1, 2, 2, 5, 8, NULL, false, true, 3}, /* everything a pair, groups */
    {3, 2, 2, 2, 3, 3, 0, 0, 1, 1, 1, 7, 8, NULL, false, false,
     3}, /* stride > kernel: skipped inputs */
    {2, 3, 1, 1, 1, 1, 0, 0, 1, 1, 1, 4, 4, NULL, false, false, 3}, /* 1x1 */
    {1, 2, 5, 5, 1, 1, 2, 2, 1, 1, 1, 3, 3, NULL, false, false,
     3}, /* kernel larger than the image */
    {2, 2, 3, 3, 1, 2, 3, 0, 1, 1, 1, 4, 6, NULL, false, false, 3}, /* padding > kernel / 2 */
    /* large enough for the runtime's parallel paths on 2 threads: the weight gradient
     * summed in two batch chunks (uneven on the last, smaller batch), or, for one
     * image, split by output channels with the positions cut into tiles */
    {4, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 12, 12, "same", false, false, 4},
    {4, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 12, 12, NULL, false, true, 1},
    {6, 6, 5, 5, 1, 1, 2, 2, 1, 1, 3, 16, 16, "same", false, false, 1}, /* blocks across groups */
    {4, 8, 1, 1, 1, 1, 0, 0, 1, 1, 1, 12, 12, NULL, false, false, 1}, /* 1x1, tiled */
    /* the bias's gradient, a sum over [B, 16, 32, 32], split by channels */
    {4, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 32, 32, "same", false, false, 4},
};

static int conv_out(int n, int k, int s, int p, int d)
{
    return (n + 2 * p - d * (k - 1) - 1) / s + 1;
}

static char *gen_conv_program(Rng *r, const ConvCase *k, ConvForm form)
{
    StrBuf b = {0};
    int ho = conv_out(k->h, k->kh, k->sh, k->ph, k->dh),
        wo = conv_out(k->w, k->kw, k->sw, k->pw, k->dw);
    StrBuf stride = {0}, pad = {0}, dil = {0}, kern = {0};
    put_hw(&stride, k->sh, k->sw, k->pairs);
    if (k->padding)
        sb_printf(&pad, "\"%s\"", k->padding);
    else
        put_hw(&pad, k->ph, k->pw, k->pairs);
    put_hw(&dil, k->dh, k->dw, k->pairs);
    put_hw(&kern, k->kh, k->kw, k->pairs);
    sb_puts(&b, "use nn\nuse optim\nmodel M {\n");
    sb_printf(&b, "    param s: [%d, 1, 1] = uniform(0.5, 1.5)\n", k->c);
    if (form == CONV_POSITIONAL || form == CONV_KEYWORDS)
        sb_printf(&b, "    param W: [%d, %d, %d, %d] = glorot_uniform\n", k->o, k->c / k->groups,
                  k->kh, k->kw);
    else
        sb_printf(&b,
                  "    conv = Conv2d(%d, %d, %s, stride = %s, padding = %s, dilation = %s, "
                  "groups = %d%s)\n",
                  k->c, k->o, kern.s, stride.s, pad.s, dil.s, k->groups,
                  form == CONV_LAYER_NOBIAS ? ", bias = false" : "");
    sb_printf(&b, "    fc = Dense(%d, 2)\n", k->o * ho * wo);
    sb_printf(&b, "    fn forward(x: [B, %d, %d, %d]) {\n", k->c, k->h, k->w);
    switch (form) {
    case CONV_POSITIONAL:
        sb_printf(&b, "        h = conv2d(x * s, W, %s, %s, %s, %d)\n", stride.s, pad.s, dil.s,
                  k->groups);
        break;
    case CONV_KEYWORDS:
        sb_puts(&b, "        h = conv2d(x * s, W");
        if (k->sh != 1 || k->sw != 1)
            sb_printf(&b, ", stride = %s", stride.s);
        if (k->padding || k->ph || k->pw)
            sb_printf(&b, ", padding = %s", pad.s);
        if (k->dh != 1 || k->dw != 1)
            sb_printf(&b, ", dilation = %s", dil.s);
        if (k->groups != 1)
            sb_printf(&b, ", groups = %d", k->groups);
        sb_puts(&b, ")\n");
        break;
    default: sb_puts(&b, "        h = conv(x * s)\n"); break;
    }
    sb_puts(&b, "        fc(flatten(tanh(h)))\n    }\n}\ntrain {\n");
    gen_images(r, &b, 5, k->c, k->h, k->w);
    sb_printf(
        &b,
        "    net = M()\n    loss = mse(net(x), y)\n    opt = Adam(lr = 0.01)\n    batch = %d\n}\n",
        k->batch);
    sb_free(&stride);
    sb_free(&pad);
    sb_free(&dil);
    sb_free(&kern);
    return b.s;
}

static void test_conv(void **state)
{
    Rng r = {0x9E3779B97F4A7C15ull};
    int n = (int)(sizeof conv_cases / sizeof conv_cases[0]);
    for (int i = 0; i < n; i++)
        for (int f = CONV_POSITIONAL; f <= CONV_LAYER_NOBIAS; f++) {
            char *src = gen_conv_program(&r, &conv_cases[i], (ConvForm)f);
            if (all_programs || (conv_cases[i].sanitize && f == i % 4))
                differential(src, (i + f) % 2 ? NND_F64 : NND_F32, 3, false);
            free(src);
        }
}

typedef struct PoolCase {
    bool max, layer, relu; /* relu first: windows of tied zeros */
    int c, kh, kw, sh, sw, ph, pw, h, w;
    bool default_stride; /* stride left out: the kernel; padding as a keyword */
} PoolCase;

static const PoolCase pool_cases[] = {
    /* max    layer  relu   c  kh kw sh sw ph pw  h  w  default stride */
    {true, false, false, 2, 2, 2, 2, 2, 0, 0, 6, 6, true},
    {true, false, true, 2, 3, 3, 1, 1, 1, 1, 5, 5, false}, /* ties, padding */
    {true, true, false, 1, 2, 3, 1, 2, 1, 1, 5, 7, false}, /* pairs; all-negative windows */
    {true, true, true, 2, 3, 3, 3, 3, 0, 0, 7, 8, true}, /* sizes not divisible */
    {true, false, false, 2, 3, 3, 2, 2, 1, 1, 6, 6, false},
    {false, false, false, 2, 2, 2, 2, 2, 0, 0, 6, 6, true},
    {false, false, false, 2, 3, 3, 1, 1, 1, 1, 5, 5, false}, /* padding counts in the divisor */
    {false, true, false, 1, 2, 3, 1, 2, 1, 1, 5, 7, false},
    {false, true, true, 2, 3, 3, 3, 3, 0, 0, 7, 8, true},
    {false, false, false, 2, 3, 2, 2, 1, 1, 0, 6, 6, false},
    {true, true, false, 2, 2, 3, 2, 3, 0, 0, 6, 7, true}, /* the stride: a kernel pair */
    {false, false, false, 1, 3, 2, 3, 2, 1, 1, 7, 6, true}, /* padding, the stride left out */
    {true, false, true, 2, 3, 3, 3, 3, 1, 0, 8, 7, true},
};

static char *gen_pool_program(Rng *r, const PoolCase *k)
{
    StrBuf b = {0};
    int ho = (k->h + 2 * k->ph - k->kh) / k->sh + 1, wo = (k->w + 2 * k->pw - k->kw) / k->sw + 1;
    StrBuf args = {0};
    put_hw(&args, k->kh, k->kw, false);
    if (!k->default_stride) {
        sb_puts(&args, k->layer ? ", stride = " : ", ");
        put_hw(&args, k->sh, k->sw, false);
        sb_puts(&args, k->layer ? ", padding = " : ", ");
        put_hw(&args, k->ph, k->pw, false);
    } else if (k->ph || k->pw) {
        sb_puts(&args, ", padding = ");
        put_hw(&args, k->ph, k->pw, false);
    }
    const char *in = k->relu ? "relu(x * s - 0.2)" : "x * s";
    sb_puts(&b, "use nn\nuse optim\nmodel M {\n");
    sb_printf(&b, "    param s: [%d, 1, 1] = uniform(0.5, 1.5)\n", k->c);
    if (k->layer)
        sb_printf(&b, "    pool = %s(%s)\n", k->max ? "MaxPool2d" : "AvgPool2d", args.s);
    sb_printf(&b, "    fc = Dense(%d, 2)\n", k->c * ho * wo);
    sb_printf(&b, "    fn forward(x: [B, %d, %d, %d]) {\n", k->c, k->h, k->w);
    if (k->layer)
        sb_printf(&b, "        h = pool(%s)\n", in);
    else
        sb_printf(&b, "        h = %s(%s, %s)\n", k->max ? "max_pool2d" : "avg_pool2d", in, args.s);
    sb_puts(&b, "        fc(flatten(h))\n    }\n}\ntrain {\n");
    gen_images(r, &b, 5, k->c, k->h, k->w);
    sb_puts(
        &b,
        "    net = M()\n    loss = mse(net(x), y)\n    opt = SGD(lr = 0.1)\n    batch = 3\n}\n");
    sb_free(&args);
    return b.s;
}

static void test_pool(void **state)
{
    Rng r = {0xD1B54A32D192ED03ull};
    int n = (int)(sizeof pool_cases / sizeof pool_cases[0]);
    for (int i = 0; i < n; i++) {
        char *src = gen_pool_program(&r, &pool_cases[i]);
        /* under sanitizers: ties and padding in a max, window pairs in an average */
        if (all_programs || i % 3 == 1)
            differential(src, i % 2 ? NND_F64 : NND_F32, 3, false);
        free(src);
    }
}

/* ---- hand-written programs: tests/jit/programs/ ---- */

typedef struct FileCase {
    const char *name;
    int steps;
    bool f64; /* also with every float f64 (--dtype f64) */
    bool bf16; /* also with precision = bf16 */
    bool subset; /* run under sanitizers too */
} FileCase;

static const FileCase file_cases[] = {
    {"cnn.nnd", 4, true, true, true},
    {"embed_concat.nnd", 3, true, false, true},
    {"norms_dropout.nnd", 4, true, false, true},
    {"custom_vjp.nnd", 3, true, false, true},
    {"grad_penalty.nnd", 3, true, false, false},
    {"cnn_grad_penalty.nnd", 3, true, false, false},
    {"init_seq.nnd", 3, true, false, false},
    {"ops_misc.nnd", 3, true, false, false},
    {"attention.nnd", 3, true, true, true},
    {"winograd.nnd", 4, true, false, true},
};

static void test_files(void **state)
{
    for (size_t i = 0; i < sizeof file_cases / sizeof file_cases[0]; i++) {
        const FileCase *fc = &file_cases[i];
        if (!all_programs && !fc->subset)
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/tests/jit/programs/%s", NND_SOURCE_DIR, fc->name);
        size_t len;
        const char *why;
        char *src = read_file(path, 1 << 24, &len, &why);
        if (!src) {
            print_error("cannot read %s: %s\n", path, why);
            fail();
        }
        differential(src, NND_F32, fc->steps, true);
        if (fc->f64 && all_programs)
            differential(src, NND_F64, fc->steps, true);
        if (fc->bf16) /* every product (convolutions too) with bf16 operands */
            differential_with(src, NND_F32, "bf16", fc->steps, true);
        free(src);
    }
}

/* Edge values: NaN inside pooling windows (max propagates it, an average sums it)
 * and negative infinity, compared in the forward pass before any step mixes them
 * into the parameters; logsumexp over rows holding NaN, -inf only, or +inf (the
 * compiled maximum counts a NaN as +inf and finds it again in the sums). */
static void test_nonfinite(void **state)
{
    static const char *const pools[] = {"max_pool2d(v, 2, 1, 0)",
                                        "max_pool2d(v, 3, 2, 1)",
                                        "avg_pool2d(v, 2, 1, 0)",
                                        "avg_pool2d(v, 3, 2, 1)",
                                        "logsumexp(v, axis = 3)",
                                        "logsumexp(1 / (x * s), axis = 3)",
                                        "logsumexp(v + 1 / (x * s), axis = 2)",
                                        "softmax(1 / (x * s) - v, axis = 3)"};
    for (int i = 0; i < (int)(sizeof pools / sizeof pools[0]); i++) {
        char src[1024];
        snprintf(
            src, sizeof src,
            "use nn\nuse optim\nmodel M {\n"
            "    param s: [1, 1, 1] = 1\n"
            "    fn forward(x: [B, 1, 3, 4]) {\n"
            "        v = log(x * s)  # NaN below 0, -inf at 0\n"
            "        flatten(%s)\n"
            "    }\n}\n"
            "train {\n"
            "    data train = tensors(x = [[[[1, -1, 2, 0], [0.5, 3, 0, 0], [2, 1, -2, 4]]],\n"
            "                              [[[0, 0, 0, 0], [1, 2, 3, 4], [-1, 5, 0.25, 1]]]],\n"
            "                         y = [0, 1])\n"
            "    net = M()\n    loss = mean(net(x))\n    opt = SGD(lr = 0.1)\n    batch = 2\n}\n",
            pools[i]);
        differential(src, i % 2 ? NND_F64 : NND_F32, 0, false);
    }
}

/* An index outside take()'s table stops both engines with the same status, not a
 * read outside the table. */
static void test_index_range(void **state)
{
    static const char *const bad[] = {"6", "-1"};
    for (int k = 0; k < 2; k++) {
        char src[1024];
        snprintf(
            src, sizeof src,
            "use nn\nuse optim\nmodel M {\n    emb = Embedding(6, 2)\n"
            "    fn forward(x: [B, 1]) = flatten(emb(i32(x)))\n}\n"
            "train {\n"
            "    data train = tensors(x = [[0], [5], [%s], [3]], y = [[0, 1], [1, 0], [0, 0], [1, "
            "1]])\n"
            "    net = M()\n    loss = mse(net(x), y)\n    opt = SGD(lr = 0.1)\n    batch = 4\n}\n",
            bad[k]);
        Compiled *c = compile_src(src, NND_F32);
        Program *p = c->p;
        char err[512];
        NndErr ne;
        NndPool *pool = nnd_pool_create(2, &ne);
        uint32_t idx[4] = {0, 1, 2, 3};
        char first[512] = "";
        for (int e = ENGINE_INTERP; e <= ENGINE_JIT; e++) {
            Executable x;
            ExecOptions o = {(Engine)e, false, 0, false, false, 0, false};
            assert_true(executable_build(&x, p, &o, err, sizeof err));
            Model m;
            assert_true(model_init(p, &m, err, sizeof err));
            double loss;
            err[0] = 0;
            if (train_step(p, &x, &m, pool, idx, 4, 0, &loss, err, sizeof err)) {
                print_error("%s: index %s taken without an error\n",
                            e == ENGINE_JIT ? "compiled" : "interpreter", bad[k]);
                fail();
            }
            /* the same status from both */
            if (e == ENGINE_INTERP)
                snprintf(first, sizeof first, "%s", err);
            else
                assert_string_equal(first, err);
            model_free(&m);
            executable_free(&x);
        }
        nnd_pool_destroy(pool);
        compiled_free(c);
    }
}

/* Runs last: the ops the programs above ran through both engines. */
static void test_op_coverage(void **state)
{
    if (!all_programs)
        skip(); /* NND_DIFF_PROGRAMS ran a subset */
    bool exempt[OP_COUNT] = {0};
    StrBuf missing = {0}, stale = {0};
    for (size_t i = 0; i < sizeof op_exempt / sizeof op_exempt[0]; i++) {
        exempt[op_exempt[i].op] = true;
        if (op_seen[op_exempt[i].op])
            sb_printf(&stale, " %s", op_info[op_exempt[i].op].name);
    }
    for (int op = 0; op < OP_COUNT; op++)
        if (!op_seen[op] && !exempt[op])
            sb_printf(&missing, " %s", op_info[op].name);
    if (missing.s)
        print_error("ops no program ran through both engines (add a program, or an entry in "
                    "op_exempt with the reason):%s\n",
                    missing.s);
    if (stale.s)
        print_error("ops listed in op_exempt that a program ran after all (remove them):%s\n",
                    stale.s);
    bool ok = !missing.s && !stale.s;
    sb_free(&missing);
    sb_free(&stale);
    assert_true(ok);
}

int main(void)
{
    if (getenv("NND_DIFF_PROGRAMS"))
        all_programs = false;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_examples),    cmocka_unit_test(test_reproducible),
        cmocka_unit_test(test_integers),    cmocka_unit_test(test_fashion_mnist),
        cmocka_unit_test(test_generated),   cmocka_unit_test(test_conv),
        cmocka_unit_test(test_pool),        cmocka_unit_test(test_files),
        cmocka_unit_test(test_nonfinite),   cmocka_unit_test(test_index_range),
        cmocka_unit_test(test_op_coverage), /* last: it counts the ops the others ran */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
