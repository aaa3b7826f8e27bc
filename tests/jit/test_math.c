/* The inline f32 exp, log and tanh of compiled code: within a few ulp of the correctly
 * rounded result over their whole range, and right at the edges (overflow to inf,
 * underflow to 0, log of 0 and of negatives, NaN). */
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
#include "train.h"

enum { N = 2000 };

/* Distance in units of the last place between two floats of one sign. */
static int64_t ulps(float a, float b)
{
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    if (ia < 0)
        ia = INT32_MIN - ia;
    if (ib < 0)
        ib = INT32_MIN - ib;
    return ia > ib ? (int64_t)ia - ib : (int64_t)ib - ia;
}

/* Runs forward(x) = fn(x) compiled on the given inputs. */
static void run(const char *fn, const double *in, int n, double *out)
{
    StrBuf src = {0};
    sb_printf(&src,
              "use nn\nuse optim\nmodel M {\n  param k: [1] = 1\n  fn forward(x) = %s(x) * k\n}\n",
              fn);
    sb_puts(&src, "train {\n  data train = tensors(x = [");
    for (int i = 0; i < n; i++) {
        char num[40];
        if (isinf(in[i]))
            snprintf(num, sizeof num, "%sinf", in[i] < 0 ? "-" : "");
        else
            snprintf(num, sizeof num, "%.9g", in[i]);
        sb_printf(&src, "%s[%s]", i ? ", " : "", num);
    }
    sb_puts(&src, "], y = [");
    for (int i = 0; i < n; i++)
        sb_printf(&src, "%s[0]", i ? ", " : "");
    sb_printf(&src, "])\n  net = M()\n  loss = mean(net(x) - y)\n  opt = SGD()\n  batch = %d\n}\n",
              n);
    Frontend fe;
    frontend_init(&fe);
    Program *p = compile(&fe, "math.nnd", src.s, NULL);
    if (!p)
        diags_print(&fe.diags, stderr);
    assert_non_null(p);
    assert_true(program_load_data(p, &fe.diags));
    Executable x;
    ExecOptions o = {ENGINE_JIT, false, 0, false, false, 0, false};
    char err[512];
    assert_true(executable_build(&x, p, &o, err, sizeof err));
    Model model;
    assert_true(model_init(p, &model, err, sizeof err));
    uint32_t *idx = xmalloc(sizeof(uint32_t) * (size_t)n);
    for (int i = 0; i < n; i++)
        idx[i] = (uint32_t)i;
    NndErr ne;
    NndPool *pool = nnd_pool_create(1, &ne);
    assert_true(train_forward(p, &x, &model, pool, 0, idx, n, out, err, sizeof err));
    nnd_pool_destroy(pool);
    free(idx);
    model_free(&model);
    executable_free(&x);
    program_free(p);
    frontend_free(&fe);
    sb_free(&src);
}

static void check(const char *name, double (*ref)(double), double *in, int n, int64_t max_ulps)
{
    /* inputs are floats: 9 significant digits carry one exactly through the source */
    for (int i = 0; i < n; i++)
        in[i] = (float)in[i];
    double *out = xcalloc((size_t)n, sizeof(double));
    run(name, in, n, out);
    int64_t worst = 0;
    for (int i = 0; i < n; i++) {
        float want = (float)ref((double)(float)in[i]), got = (float)out[i];
        if (isnan(want) || isnan(got)) {
            if (!(isnan(want) && isnan(got)))
                fail_msg("%s(%g) = %g, want %g", name, in[i], got, want);
            continue;
        }
        if (isinf(want) || isinf(got) || want == 0 || got == 0 || fabsf(want) < 1.2e-38f) {
            if (!(want == got || (fabsf(want) < 1.2e-38f && fabsf(got) < 1.2e-38f)))
                fail_msg("%s(%.9g) = %.9g, want %.9g", name, in[i], got, want);
            continue;
        }
        int64_t u = ulps(got, want);
        if (u > worst)
            worst = u;
        if (u > max_ulps)
            fail_msg("%s(%.9g) = %.9g, want %.9g (%lld ulp)", name, in[i], got, want, (long long)u);
    }
    print_message("%s: worst %lld ulp over %d inputs\n", name, (long long)worst, n);
    free(out);
}

static void test_exp(void **state)
{
    double in[N];
    for (int i = 0; i < N - 8; i++)
        in[i] = -110 + 220.0 * i / (N - 9);
    double edge[] = {0, -0.0, 88.72, 88.73, -87.33, -104, INFINITY, -INFINITY};
    memcpy(in + N - 8, edge, sizeof edge);
    check("exp", exp, in, N, 3);
}

static void test_log(void **state)
{
    double in[N];
    for (int i = 0; i < N - 8; i++)
        in[i] = pow(10, -37 + 75.0 * i / (N - 9));
    double edge[] = {1, 2, 0.5, 0, -1, INFINITY, 0.70710678, 1.41421356};
    memcpy(in + N - 8, edge, sizeof edge);
    check("log", log, in, N, 3);
}

static void test_tanh(void **state)
{
    double in[N];
    for (int i = 0; i < N - 6; i++)
        in[i] = -12 + 24.0 * i / (N - 7);
    double edge[] = {0, 1e-5, -1e-5, 0.625, 50, -INFINITY};
    memcpy(in + N - 6, edge, sizeof edge);
    check("tanh", tanh, in, N, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exp),
        cmocka_unit_test(test_log),
        cmocka_unit_test(test_tanh),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
