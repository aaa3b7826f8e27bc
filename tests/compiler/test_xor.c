/* End to end: examples/xor.nnd trained by the interpreter with Adam reaches a loss
 * below 0.01. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the headers above, included before it */
#include <cmocka.h>

#include <stdio.h>

#include "compile.h"
#include "train.h"

static void test_xor_trains(void **state)
{
    Frontend fe;
    frontend_init(&fe);
    Program *p = compile(&fe, NND_SOURCE_DIR "/examples/xor.nnd", NULL, NULL);
    if (!p)
        diags_print(&fe.diags, stderr);
    assert_non_null(p);
    for (int e = 0; e < 2; e++) {
        Model model;
        char err[512];
        assert_true(model_init(p, &model, err, sizeof err));
        Executable x;
        ExecOptions xo = {e ? ENGINE_JIT : ENGINE_INTERP, false, 0, false, false, 0, false};
        assert_true(executable_build(&x, p, &xo, err, sizeof err));
        NndErr ne;
        NndPool *pool = nnd_pool_create(1, &ne);
        TrainOptions to = {.pool = pool, .progress = stdout};
        NndTrainResult res;
        assert_int_equal(train_run(p, &x, &model, &to, &res, err, sizeof err), 0);
        printf("%s: final loss %g after %lld steps\n", e ? "compiled" : "interpreter",
               res.final_loss, (long long)res.steps);
        assert_true(res.final_loss < 0.01);
        nnd_pool_destroy(pool);
        executable_free(&x);
        model_free(&model);
    }
    program_free(p);
    frontend_free(&fe);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_xor_trains)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
