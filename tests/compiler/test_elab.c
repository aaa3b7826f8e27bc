/* Elaboration, autodiff and update-rule expansion through whole programs: what the
 * train block builds, and that training with the interpreter computes what the
 * update rules say. */
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
#include "gradcheck.h"
#include "interp.h"
#include "train.h"

typedef struct Compiled {
    Frontend fe;
    Program *p;
    char *diag;
} Compiled;

static Compiled *compile_opts(const char *src, NndDType dt, Override *ov, int nov)
{
    Compiled *c = xcalloc(1, sizeof *c);
    frontend_init(&c->fe);
    CompileOptions co = {.float_dtype = dt, .overrides = ov, .noverrides = nov};
    c->p = compile(&c->fe, NND_SOURCE_DIR "/tests/compiler/t.nnd", src, &co);
    c->diag = diags_render(&c->fe.diags);
    return c;
}

static Compiled *compile_src(const char *src) { return compile_opts(src, NND_F32, NULL, 0); }

static void compiled_free(Compiled *c)
{
    program_free(c->p);
    frontend_free(&c->fe);
    free(c->diag);
    free(c);
}

static Compiled *compile_ok(const char *src)
{
    Compiled *c = compile_src(src);
    if (!c->p)
        print_error("%s", c->diag);
    assert_non_null(c->p);
    return c;
}

static int param_index(Program *p, const char *name)
{
    for (int i = 0; i < p->params.n; i++)
        if (strcmp(p->params.v[i].name, name) == 0)
            return i;
    return -1;
}

static int hyper_index(Program *p, const char *name)
{
    for (int i = 0; i < p->hypers.n; i++)
        if (strcmp(p->hypers.v[i].name, name) == 0)
            return i;
    return -1;
}

/* A parameter of the model as an interpreter tensor. */
static ITensor param_itensor(Program *p, Model *m, int i)
{
    Node *n = graph_node(&p->g, p->params.v[i].node);
    ITensor t = itensor_new((NndDType)n->dtype, n->shape.rank, n->shape.d);
    for (int64_t k = 0; k < t.n; k++)
        t.v[k] = n->dtype == NND_F64 ? ((double *)m->params[i].data)[k]
                                     : ((float *)m->params[i].data)[k];
    return t;
}

static double param_at(Model *m, int i, int64_t k)
{
    return m->params[i].dtype == NND_F64 ? ((double *)m->params[i].data)[k]
                                         : ((float *)m->params[i].data)[k];
}

/* Trains p's train block on m with the given engine, silently. */
static void train(Program *p, Model *m, Engine engine)
{
    Executable x;
    ExecOptions eo = {engine, false, 0, false, false, 0, false};
    char err[512];
    if (!executable_build(&x, p, &eo, err, sizeof err))
        print_error("%s\n", err);
    NndErr e;
    NndPool *pool = nnd_pool_create(1, &e);
    TrainOptions to = {.pool = pool};
    NndTrainResult res;
    int rc = train_run(p, &x, m, &to, &res, err, sizeof err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    nnd_pool_destroy(pool);
    executable_free(&x);
}

static const Engine engines[] = {ENGINE_INTERP, ENGINE_JIT};

#define PRELUDE                                                                                    \
    "use nn\nuse optim\n"                                                                          \
    "model Net(h = 3) {\n fc1 = Dense(4, h)\n fc2 = Dense(h, 2)\n"                                 \
    " fn forward(x: [B, 4]) -> [B, 2] = fc2(tanh(fc1(x)))\n}\n"
#define DATA                                                                                       \
    " data train = tensors(x = [[1, 0, 2, 1], [0, 1, 1, 0], [2, 2, 0, 1], [1, 1, 1, 1], "          \
    "[0, 0, 1, 2]], y = [[1, 0], [0, 1], [1, 1], [0, 0], [1, 0]])\n"

static void test_structure(void **state)
{
    Compiled *c = compile_ok(PRELUDE "train {\n" DATA " net = Net()\n loss = mse(net(x), y)\n"
                                     " opt = Adam(lr = 0.01)\n batch = 5\n}\n");
    Program *p = c->p;
    assert_int_equal(p->params.n, 4);
    const char *names[] = {"fc1.W", "fc1.b", "fc2.W", "fc2.b"};
    for (int i = 0; i < 4; i++)
        assert_string_equal(p->params.v[i].name, names[i]);
    Node *w = graph_node(&p->g, p->params.v[0].node);
    assert_int_equal(w->shape.rank, 2);
    assert_int_equal(w->shape.d[0], 4);
    assert_int_equal(w->shape.d[1], 3);
    assert_int_equal(p->states.n, 8);
    assert_string_equal(p->states.v[0].name, "fc1.W.m");
    assert_string_equal(p->states.v[1].name, "fc1.W.v");
    /* 4 parameters + 8 states are updated */
    assert_int_equal(p->updates.n, 12);
    int lr = hyper_index(p, "opt.lr");
    assert_true(lr >= 0);
    assert_true(fabs(p->hypers.v[lr].value - 0.01) < 1e-12);
    assert_true(hyper_index(p, "opt.beta1") >= 0);
    assert_int_equal(p->batch, 5);
    assert_int_equal(p->epochs, 1);
    /* the input's batch dimension is symbolic */
    Node *x = graph_node(&p->g, p->x);
    assert_true(x->shape.d[0] < 0);
    assert_int_equal(x->shape.d[1], 4);
    compiled_free(c);
}

/* The update of SGD is w - lr * g, with g the autodiff gradient; compiled code and
 * the interpreter agree. */
static void test_sgd_step(void **state)
{
    Compiled *c =
        compile_ok(PRELUDE "train {\n" DATA " net = Net()\n loss = mse(net(x), y)\n"
                           " opt = SGD(lr = 0.5)\n batch = 5\n steps = 1\n shuffle = false\n}\n");
    Program *p = c->p;
    assert_int_equal(p->states.n, 0);
    for (int e = 0; e < 2; e++) {
        Model m;
        char err[256];
        assert_true(model_init(p, &m, err, sizeof err));
        ITensor w0 = param_itensor(p, &m, 0);
        /* the gradient at the initial weights, on the full batch */
        ITensor pv[4];
        for (int i = 0; i < 4; i++)
            pv[i] = param_itensor(p, &m, i);
        DataSet *ds = &p->data.v[0];
        ITensor in[2] = {itensor_new(NND_F32, 2, ds->x.shape),
                         itensor_new(NND_F32, 2, ds->y.shape)};
        for (int i = 0; i < in[0].n; i++)
            in[0].v[i] = ((float *)ds->x.data)[i];
        for (int i = 0; i < in[1].n; i++)
            in[1].v[i] = ((float *)ds->y.data)[i];
        int64_t syms[1] = {5};
        double *h = xcalloc((size_t)p->hypers.n, sizeof(double));
        for (int i = 0; i < p->hypers.n; i++)
            h[i] = p->hypers.v[i].value;
        InterpBindings b = {pv, 4, NULL, 0, in, 2, h, p->hypers.n, syms, 1, p->seed, NULL, NULL};
        ITensor g;
        assert_true(interp_run(&p->g, &p->grads.v[0], 1, &b, &g, err, sizeof err));
        train(p, &m, engines[e]);
        double maxdiff = 0, maxg = 0;
        for (int64_t i = 0; i < w0.n; i++) {
            double want = (double)(float)(w0.v[i] - (double)(float)(0.5 * g.v[i]));
            maxdiff = fmax(maxdiff, fabs(param_at(&m, 0, i) - want));
            maxg = fmax(maxg, fabs(g.v[i]));
        }
        assert_true(maxg > 1e-4); /* the step moved something */
        assert_true(maxdiff < 1e-6);
        itensor_free(&g);
        itensor_free(&w0);
        for (int i = 0; i < 4; i++)
            itensor_free(&pv[i]);
        itensor_free(&in[0]);
        itensor_free(&in[1]);
        free(h);
        model_free(&m);
    }
    compiled_free(c);
}

/* Three Adam steps by the update rule equal the formula applied by hand to the
 * autodiff gradients (f64 program, so exact up to rounding), compiled or not. */
static void test_adam_matches_formula(void **state)
{
    const char *src = PRELUDE "train {\n" DATA " net = Net()\n loss = mse(net(x), y)\n"
                              " opt = Adam(lr = 0.1, beta1 = 0.8, beta2 = 0.9, eps = 1e-6)\n"
                              " batch = 5\n steps = 3\n shuffle = false\n}\n";
    Compiled *c = compile_opts(src, NND_F64, NULL, 0);
    assert_non_null(c->p);
    Program *p = c->p;
    for (int e = 0; e < 2; e++) {
        Model m;
        char err[256];
        assert_true(model_init(p, &m, err, sizeof err));
        ITensor ref[4];
        for (int k = 0; k < 4; k++)
            ref[k] = param_itensor(p, &m, k);
        DataSet *ds = &p->data.v[0];
        ITensor in[2] = {itensor_new(NND_F64, 2, ds->x.shape),
                         itensor_new(NND_F64, 2, ds->y.shape)};
        for (int i = 0; i < in[0].n; i++)
            in[0].v[i] = ((double *)ds->x.data)[i];
        for (int i = 0; i < in[1].n; i++)
            in[1].v[i] = ((double *)ds->y.data)[i];
        int64_t syms[1] = {5};
        double *h = xcalloc((size_t)p->hypers.n, sizeof(double));
        for (int i = 0; i < p->hypers.n; i++)
            h[i] = p->hypers.v[i].value;
        double *mom[4], *vel[4];
        for (int k = 0; k < 4; k++) {
            mom[k] = xcalloc((size_t)ref[k].n, sizeof(double));
            vel[k] = xcalloc((size_t)ref[k].n, sizeof(double));
        }
        for (int t = 1; t <= 3; t++) {
            ITensor g[4];
            InterpBindings b = {ref, 4, NULL, 0, in, 2, h, p->hypers.n, syms, 1, 0, NULL, NULL};
            assert_true(interp_run(&p->g, p->grads.v, 4, &b, g, err, sizeof err));
            for (int k = 0; k < 4; k++) {
                for (int64_t i = 0; i < g[k].n; i++) {
                    mom[k][i] = 0.8 * mom[k][i] + 0.2 * g[k].v[i];
                    vel[k][i] = 0.9 * vel[k][i] + 0.1 * g[k].v[i] * g[k].v[i];
                    double mh = mom[k][i] / (1 - pow(0.8, t)), vh = vel[k][i] / (1 - pow(0.9, t));
                    ref[k].v[i] -= 0.1 * mh / (sqrt(vh) + 1e-6);
                }
                itensor_free(&g[k]);
            }
        }
        train(p, &m, engines[e]);
        for (int k = 0; k < 4; k++)
            for (int64_t i = 0; i < ref[k].n; i++)
                assert_true(fabs(param_at(&m, k, i) - ref[k].v[i]) < 1e-12);
        /* the moments are saved as states fc1.W.m, fc1.W.v, ... */
        for (int64_t i = 0; i < ref[0].n; i++)
            assert_true(fabs(((double *)m.states[0].data)[i] - mom[0][i]) < 1e-12);
        for (int k = 0; k < 4; k++) {
            free(mom[k]);
            free(vel[k]);
            itensor_free(&ref[k]);
        }
        itensor_free(&in[0]);
        itensor_free(&in[1]);
        free(h);
        model_free(&m);
    }
    compiled_free(c);
}

/* A frozen layer gets no gradient, no state, no update: its weights are unchanged
 * to the bit after training. */
static void test_freeze(void **state)
{
    Compiled *c =
        compile_ok(PRELUDE "train {\n" DATA " net = Net()\n loss = mse(net(x), y)\n"
                           " opt = Adam(lr = 0.1)\n freeze net.fc1\n batch = 2\n epochs = 3\n}\n");
    Program *p = c->p;
    int w1 = param_index(p, "fc1.W"), b1 = param_index(p, "fc1.b"), w2 = param_index(p, "fc2.W");
    assert_true(p->params.v[w1].frozen && p->params.v[b1].frozen && !p->params.v[w2].frozen);
    assert_int_equal(p->grads.v[w1], 0);
    assert_int_equal(p->grads.v[b1], 0);
    assert_int_equal(p->states.n, 4); /* m and v of fc2.W and fc2.b only */
    for (int i = 0; i < p->updates.n; i++)
        if (!p->updates.v[i].is_state)
            assert_true(p->updates.v[i].index != w1 && p->updates.v[i].index != b1);
    for (int e = 0; e < 2; e++) {
        Model m;
        char err[256];
        assert_true(model_init(p, &m, err, sizeof err));
        NndTensor before, before2;
        NndErr ne;
        assert_int_equal(nnd_tensor_alloc(&before, NND_F32, 2, m.params[w1].shape, &ne), 0);
        assert_int_equal(nnd_tensor_alloc(&before2, NND_F32, 2, m.params[w2].shape, &ne), 0);
        size_t n1 = sizeof(float) * (size_t)nnd_tensor_numel(&before),
               n2 = sizeof(float) * (size_t)nnd_tensor_numel(&before2);
        memcpy(before.data, m.params[w1].data, n1);
        memcpy(before2.data, m.params[w2].data, n2);
        train(p, &m, engines[e]);
        assert_memory_equal(before.data, m.params[w1].data, n1);
        assert_memory_not_equal(before2.data, m.params[w2].data, n2);
        nnd_tensor_free(&before);
        nnd_tensor_free(&before2);
        model_free(&m);
    }
    compiled_free(c);
}

/* `opt net.fc2 = ...` gives fc2 its own rule and hyper-parameters. */
static void test_groups(void **state)
{
    Compiled *c = compile_ok(PRELUDE "train {\n" DATA " net = Net()\n loss = mse(net(x), y)\n"
                                     " opt = Adam(lr = 0.1)\n opt net.fc2 = SGD(lr = 0.5)\n}\n");
    Program *p = c->p;
    assert_int_equal(p->states.n, 4); /* Adam state only for fc1.W and fc1.b */
    assert_string_equal(p->states.v[0].name, "fc1.W.m");
    int lr2 = hyper_index(p, "opt.net.fc2.lr");
    assert_true(lr2 >= 0);
    assert_true(fabs(p->hypers.v[lr2].value - 0.5) < 1e-12);
    assert_int_equal(p->groups.n, 2);
    assert_string_equal(p->groups.v[1].rule, "SGD");
    compiled_free(c);
}

static void test_overrides(void **state)
{
    const char *src = PRELUDE "train {\n" DATA " net = Net()\n loss = mse(net(x), y)\n"
                              " opt = Adam(lr = 0.1)\n epochs = 7\n let h2 = 0.5\n}\n";
    Override ov[] = {{"opt.lr", "0.25", 0.25, true, false},
                     {"steps", "11", 11, true, false},
                     {"h2", "2", 2, true, false},
                     {"batch", "3", 3, true, false}};
    Compiled *c = compile_opts(src, NND_F32, ov, 4);
    assert_non_null(c->p);
    assert_true(fabs(c->p->hypers.v[hyper_index(c->p, "opt.lr")].value - 0.25) < 1e-12);
    assert_true(fabs(c->p->hypers.v[hyper_index(c->p, "h2")].value - 2) < 1e-12);
    assert_int_equal(c->p->steps, 11);
    assert_int_equal(c->p->batch, 3);
    assert_int_equal(program_total_steps(c->p), 11);
    compiled_free(c);
    Override bad[] = {{"opt.lrr", "1", 1, true, false}};
    c = compile_opts(src, NND_F32, bad, 1);
    assert_null(c->p);
    assert_non_null(strstr(c->diag, "--set opt.lrr: nothing in the program is called 'opt.lrr'"));
    assert_non_null(strstr(c->diag, "did you mean 'opt.lr'?"));
    compiled_free(c);
}

/* Hyper-parameters stay run-time inputs: a schedule is a graph over `step`. */
static void test_schedule_is_runtime(void **state)
{
    Compiled *c = compile_ok(PRELUDE "train {\n" DATA " net = Net()\n loss = mse(net(x), y)\n"
                                     " opt = SGD(lr = if step < 2 then 0 else 0.1)\n batch = 5\n"
                                     " steps = 2\n shuffle = false\n}\n");
    Program *p = c->p;
    for (int e = 0; e < 2; e++) {
        Model m;
        char err[256];
        assert_true(model_init(p, &m, err, sizeof err));
        size_t bytes = sizeof(float) * (size_t)nnd_tensor_numel(&m.params[0]);
        float *w0 = xmalloc(bytes);
        memcpy(w0, m.params[0].data, bytes);
        train(p, &m, engines[e]);
        /* lr was 0 for steps 0 and 1 */
        assert_memory_equal(w0, m.params[0].data, bytes);
        free(w0);
        model_free(&m);
    }
    compiled_free(c);
}

/* src compiles in f64 and gradcheck finds its gradients right. */
static void gradcheck_passes(const char *src)
{
    Compiled *c = compile_opts(src, NND_F64, NULL, 0);
    if (!c->p)
        print_error("%s", c->diag);
    assert_non_null(c->p);
    GradcheckOptions o = {5, 0, 1e-6, 1e-5, 1e-3};
    FILE *devnull = fopen("/dev/null", "w");
    assert_int_equal(gradcheck_run(c->p, &o, devnull), 0);
    fclose(devnull);
    compiled_free(c);
}

/* A gradient penalty through grad(): second-order autodiff, checked against finite
 * differences by gradcheck. */
static void test_grad_penalty_gradcheck(void **state)
{
    const char *src = PRELUDE "train {\n" DATA " net = Net()\n"
                              " loss = mse(net(x), y) + 0.1 * mean(grad(sum(net(x)), x)^2)\n"
                              " opt = SGD()\n}\n";
    gradcheck_passes(src);
}

/* A vjp block of a one-parameter fn may give its gradient as a one-element list,
 * as it may for more parameters: gradcheck finds the block's derivative exact. */
static void test_vjp_one_gradient_list(void **state)
{
    const char *src = PRELUDE "fn triple(x) = 3 * x\nvjp { [3 * dy] }\n"
                              "train {\n" DATA " net = Net()\n"
                              " loss = mse(triple(net(x)), y)\n opt = SGD()\n}\n";
    gradcheck_passes(src);
}

/* `if bias then ... else ...` on a compile-time argument elaborates one branch. */
static void test_static_if(void **state)
{
    Compiled *c = compile_ok("use nn\nuse optim\nmodel M {\n fc = Dense(4, 2, bias = false)\n"
                             " fn forward(x) = fc(x)\n}\ntrain {\n" DATA " net = M()\n"
                             " loss = mse(net(x), y)\n opt = SGD()\n}\n");
    Program *p = c->p;
    int b = param_index(p, "fc.b");
    /* the bias exists but the loss does not depend on it: its gradient is zero */
    assert_true(b >= 0);
    assert_true(graph_is_const(&p->g, p->grads.v[b], NULL));
    compiled_free(c);
}

static void test_errors(void **state)
{
    struct {
        const char *src, *want;
    } cases[] = {
        {PRELUDE "train {\n" DATA " net = Net()\n loss = (net(x) - y)^2\n opt = SGD()\n}\n",
         "the loss must be a scalar, got shape [B, 2]"},
        {PRELUDE "train {\n" DATA " net = Net()\n loss = mse(net(x), y[:, 0])\n opt = SGD()\n}\n",
         "'target' has shape [B], expected [B, 2]"},
        {"use nn\nuse optim\nmodel M {\n fc = Dense(5, 2)\n fn forward(x) = fc(x)\n}\ntrain "
         "{\n" DATA " net = M()\n loss = mse(net(x), y)\n opt = SGD()\n}\n",
         "'x' has shape [B, 4], expected [*N, 5]"},
        {PRELUDE "optimizer Bad { w = w @ w }\ntrain {\n" DATA
                 " net = Net()\n loss = mse(net(x), y)\n"
                 " opt = Bad()\n}\n",
         "matmul shapes do not agree: [4, 3] @ [4, 3]"},
        {PRELUDE "optimizer Bad { w = w @ transpose(w) }\ntrain {\n" DATA " net = Net()\n"
                 " loss = mse(net(x), y)\n opt = Bad()\n}\n",
         "the new value of w has shape [4, 4] but must keep the shape of w [4, 3]"},
        {"use nn\nfn f(x) = g(x)\nfn g(x) = f(x)\nuse optim\nmodel M {\n fc = Dense(4, 2)\n"
         " fn forward(x) = f(fc(x))\n}\ntrain {\n" DATA " net = M()\n loss = mse(net(x), y)\n"
         " opt = SGD()\n}\n",
         "recursive call of 'f': recursion is not supported"},
        /* a method re-entering its own layer instance's method */
        {"use nn\nuse optim\nmodel M {\n fc = Dense(4, 2)\n fn forward(x) = helper(x)\n"
         " fn helper(x) = forward(x)\n}\ntrain {\n" DATA " net = M()\n loss = mse(net(x), y)\n"
         " opt = SGD()\n}\n",
         "recursive call of 'M.forward': recursion is not supported"},
        {PRELUDE "fn make() = Dense(2, 2)\ntrain {\n" DATA " net = Net()\n"
                 " loss = mse(net(x), y) + sum(make()(x))\n opt = SGD()\n}\n",
         "layer 'Dense' is created here without a name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Compiled *c = compile_src(cases[i].src);
        if (c->p || !strstr(c->diag, cases[i].want))
            print_error("case %zu: want '%s' in:\n%s\n", i, cases[i].want, c->diag);
        assert_null(c->p);
        assert_non_null(strstr(c->diag, cases[i].want));
        compiled_free(c);
    }
}

/* Functions from the docs: block bodies, shape patterns, runtime if. */
static void test_functions(void **state)
{
    Compiled *c = compile_ok(
        PRELUDE "fn huber(pred: [*S], target: [*S], delta = 1) {\n let r = abs(pred - target)\n"
                " mean(if r < delta then 0.5 * r^2 else delta * (r - 0.5 * delta))\n}\n"
                "fn scaled(x: [N, D]) = x / D + size(x, 0) * 0\n"
                "train {\n" DATA " net = Net()\n loss = huber(scaled(net(x)), y, delta = 0.5)\n"
                " opt = Momentum(nesterov = true)\n}\n");
    /* numbers are run-time inputs; a boolean stays a compile-time choice */
    assert_true(hyper_index(c->p, "opt.momentum") >= 0);
    assert_true(hyper_index(c->p, "opt.nesterov") < 0);
    compiled_free(c);
}

/* split = [from, to]: data sets of the parts of one source are disjoint, together
 * hold every sample once, keep file order, and depend on the seed alone. */
static void split_values(const char *seed, const char *a, const char *b, float *xa, int *na,
                         float *xb, int *nb)
{
    char src[1024];
    snprintf(src, sizeof src,
             "use nn\nuse optim\ntrain {\n"
             "    data train = tensors(x = [[0], [1], [2], [3], [4], [5], [6], [7], [8], [9]],\n"
             "                         y = [[0], [1], [2], [3], [4], [5], [6], [7], [8], [9]],\n"
             "                         split = %s)\n"
             "    data val = tensors(x = [[0], [1], [2], [3], [4], [5], [6], [7], [8], [9]],\n"
             "                       y = [[0], [1], [2], [3], [4], [5], [6], [7], [8], [9]],\n"
             "                       split = %s)\n"
             "    net = Dense(1, 1)\n    loss = mse(net(x), y)\n    opt = SGD(lr = 0.1)\n"
             "    batch = 2\n    seed = %s\n}\n",
             a, b, seed);
    Compiled *c = compile_ok(src);
    assert_true(program_load_data(c->p, &c->fe.diags));
    DataSet *t = &c->p->data.v[0], *v = &c->p->data.v[1];
    *na = (int)t->x.shape[0];
    *nb = (int)v->x.shape[0];
    assert_int_equal(*na, t->n);
    assert_int_equal(*nb, v->n);
    memcpy(xa, t->x.data, sizeof(float) * (size_t)*na);
    memcpy(xb, v->x.data, sizeof(float) * (size_t)*nb);
    compiled_free(c);
}

static void test_split(void **state)
{
    (void)state;
    float xa[10], xb[10], ya[10], yb[10];
    int na, nb, ma, mb;
    split_values("3", "[0, 0.7]", "[0.7, 1]", xa, &na, xb, &nb);
    assert_int_equal(na, 7);
    assert_int_equal(nb, 3);
    int seen[10] = {0};
    for (int i = 0; i < na; i++)
        seen[(int)xa[i]]++;
    for (int i = 0; i < nb; i++)
        seen[(int)xb[i]]++;
    for (int i = 0; i < 10; i++)
        assert_int_equal(seen[i], 1); /* disjoint, and every sample once */
    for (int i = 1; i < na; i++)
        assert_true(xa[i - 1] < xa[i]); /* file order */
    /* the same seed, the same parts; another seed, another partition */
    split_values("3", "[0, 0.7]", "[0.7, 1]", ya, &ma, yb, &mb);
    assert_memory_equal(xa, ya, sizeof(float) * (size_t)na);
    split_values("5", "[0, 0.7]", "[0.7, 1]", ya, &ma, yb, &mb); /* seeds 3 and 4 agree */
    assert_true(memcmp(xb, yb, sizeof(float) * (size_t)nb) != 0);
    /* a part too small to hold a sample, and a bad range */
    Compiled *c = compile_src("use nn\nuse optim\ntrain {\n"
                              "    data train = tensors(x = [[0], [1]], y = [[0], [1]],\n"
                              "                         split = [0.2, 0.3])\n"
                              "    net = Dense(1, 1)\n    loss = mse(net(x), y)\n"
                              "    opt = SGD(lr = 0.1)\n    batch = 1\n}\n");
    assert_null(c->p);
    assert_non_null(strstr(c->diag, "the split [0.2, 0.3] of 2 samples holds none"));
    compiled_free(c);
    c = compile_src("use nn\nuse optim\ntrain {\n"
                    "    data train = tensors(x = [[0], [1]], y = [[0], [1]], split = [0.5, 0.2])\n"
                    "    net = Dense(1, 1)\n    loss = mse(net(x), y)\n"
                    "    opt = SGD(lr = 0.1)\n    batch = 1\n}\n");
    assert_null(c->p);
    assert_non_null(strstr(c->diag, "split takes [from, to], fractions of the samples"));
    compiled_free(c);
}

/* `freeze net except net.head`: everything but the head frozen; the frozen batch
 * norm's running statistics get no update; except outside the freeze is an error. */
#define FREEZE_SRC(STMT)                                                                           \
    "use nn\nuse optim\nmodel Net {\n"                                                             \
    "    body = Sequential([Dense(4, 8), BatchNorm(8), relu])\n"                                   \
    "    head = Dense(8, 2)\n"                                                                     \
    "    fn forward(x: [B, 4]) = head(body(x))\n}\n"                                               \
    "train {\n    data train = tensors(x = [[0, 1, 2, 3], [1, 2, 3, 4]], y = i32([0, 1]))\n"       \
    "    net = Net()\n    loss = cross_entropy(net(x), y)\n    opt = SGD(lr = 0.1)\n"              \
    "    " STMT "\n    batch = 2\n}\n"

static int state_updates(const Program *p)
{
    int n = 0;
    for (int u = 0; u < p->updates.n; u++)
        n += p->updates.v[u].is_state && p->states.v[p->updates.v[u].index].param < 0;
    return n;
}

static void test_freeze_except(void **state)
{
    (void)state;
    Compiled *c = compile_src(FREEZE_SRC("freeze net except net.head"));
    assert_non_null(c->p);
    for (int i = 0; i < c->p->params.n; i++) {
        const ParamInfo *pi = &c->p->params.v[i];
        bool head = strncmp(pi->name, "head.", 5) == 0;
        assert_int_equal(pi->frozen, !head);
        assert_int_equal(c->p->grads.v[i] != 0, head);
    }
    assert_int_equal(state_updates(c->p), 0); /* batch norm's statistics stay */
    compiled_free(c);
    c = compile_src(FREEZE_SRC("freeze net.head"));
    assert_non_null(c->p);
    assert_int_equal(state_updates(c->p), 2); /* running mean and variance move */
    compiled_free(c);
    c = compile_src(FREEZE_SRC("freeze net.body except net.head"));
    assert_null(c->p);
    assert_non_null(strstr(c->diag, "except keeps trained what this freeze would freeze, and "
                                    "'head.W' is not in it"));
    compiled_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_structure),
        cmocka_unit_test(test_sgd_step),
        cmocka_unit_test(test_adam_matches_formula),
        cmocka_unit_test(test_freeze),
        cmocka_unit_test(test_groups),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_schedule_is_runtime),
        cmocka_unit_test(test_grad_penalty_gradcheck),
        cmocka_unit_test(test_vjp_one_gradient_list),
        cmocka_unit_test(test_static_if),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_functions),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_freeze_except),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
