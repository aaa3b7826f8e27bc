/* Ahead-of-time builds against the JIT: net.nnd's forward (net_fwd.o, built
 * without weights) and its training step (libnet_train.a, built with --train, so
 * with its seeded starting values embedded) run by the runtime alone, compared bit
 * for bit with the same program opened through libnnd; and the AOT session's
 * misuse. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net_fwd.h"
#include "net_train.h"
#include "nnd.h"

#define N 37 /* samples: two full calls of max_batch 16 and a part */
#define X_SIZE NET_FWD_X_SIZE
#define OUT_SIZE NET_FWD_OUTPUT_SIZE

static float xs[N * X_SIZE];
static int32_t ys[N];

static void fill_inputs(uint32_t seed)
{
    uint32_t r = seed;
    for (int i = 0; i < N * X_SIZE; i++) {
        r = r * 1664525u + 1013904223u;
        xs[i] = (float)(r >> 8) / 16777216.0f;
    }
    for (int i = 0; i < N; i++)
        ys[i] = (int32_t)(i * 7 % 10);
}

static NndProgram *open_jit(void)
{
    NndOpenOptions o = {.threads = 1};
    NndProgram *p = NULL;
    int rc = nnd_open(NND_AOT_NET, &o, &p);
    if (rc != NND_OK)
        fprintf(stderr, "%s", nnd_errmsg(p));
    assert_int_equal(rc, NND_OK);
    return p;
}

static NndAot *open_aot(const NndAotModel *m)
{
    char err[256];
    NndAot *s = nnd_aot_new(m, 1, err, sizeof err);
    if (!s)
        fprintf(stderr, "%s\n", err);
    assert_non_null(s);
    return s;
}

static void jit_forward(NndProgram *p, float *out, int64_t n)
{
    int rc = nnd_forward(p, xs, sizeof(float) * X_SIZE * (size_t)n, n, out,
                         sizeof(float) * OUT_SIZE * (size_t)n);
    if (rc != NND_OK)
        fprintf(stderr, "%s\n", nnd_errmsg(p));
    assert_int_equal(rc, NND_OK);
}

static void test_descriptor(void **state)
{
    (void)state;
    assert_int_equal(net_fwd_model.abi, NND_AOT_ABI);
    assert_string_equal(net_fwd_model.name, "net_fwd");
    assert_int_equal(net_fwd_model.max_batch, 16);
    assert_int_equal(X_SIZE, 784);
    assert_int_equal(OUT_SIZE, 10);
    assert_int_equal(net_fwd_model.x.shape[0], -1);
    assert_null(net_fwd_model.step);
    assert_non_null(net_train_model.step);
    /* built without weights: nothing embedded; --train: everything */
    for (int64_t i = 0; i < net_fwd_model.nparams; i++)
        assert_null(net_fwd_model.params[i].data);
    for (int64_t i = 0; i < net_train_model.nparams; i++)
        assert_non_null(net_train_model.params[i].data);
}

/* The forward function built alone, with weights loaded at run time. */
static void test_forward_bits(void **state)
{
    (void)state;
    fill_inputs(1);
    NndProgram *p = open_jit();
    assert_int_equal(nnd_init_weights(p), NND_OK);
    const char *w = NND_TEST_TMP "/aot_w.safetensors";
    assert_int_equal(nnd_save_weights(p, w), NND_OK);
    NndAot *s = open_aot(&net_fwd_model);
    static float a[N * OUT_SIZE], b[N * OUT_SIZE];
    assert_int_equal(net_fwd_forward(s, xs, N, a), -1);
    assert_non_null(strstr(nnd_aot_errmsg(s), "built without weights"));
    assert_int_equal(nnd_aot_load_weights(s, w), 0);
    int64_t sizes[] = {1, 16, N};
    for (int k = 0; k < 3; k++) {
        memset(a, 0, sizeof a);
        memset(b, 0xff, sizeof b);
        assert_int_equal(net_fwd_forward(s, xs, sizes[k], a), 0);
        jit_forward(p, b, sizes[k]);
        assert_memory_equal(a, b, sizeof(float) * OUT_SIZE * (size_t)sizes[k]);
    }
    for (int i = 0; i < N * OUT_SIZE; i++)
        assert_true(isfinite(a[i]));
    nnd_aot_free(s);
    nnd_close(p);
}

/* Training steps: the same losses, then the same model, as the JIT's. */
static void test_train_bits(void **state)
{
    (void)state;
    fill_inputs(2);
    NndProgram *p = open_jit();
    assert_int_equal(nnd_init_weights(p), NND_OK);
    NndAot *s = open_aot(&net_train_model);
    static float a[N * OUT_SIZE], b[N * OUT_SIZE];
    assert_int_equal(net_train_forward(s, xs, N, a), 0);
    jit_forward(p, b, N);
    assert_memory_equal(a, b, sizeof a); /* the same seeded starting values */
    for (int step = 0; step < 6; step++) {
        if (step == 3) { /* a new learning rate, between steps, in both */
            assert_int_equal(nnd_aot_set_hyper(s, "opt.lr", 5e-4), 0);
            assert_int_equal(nnd_set_hyper(p, "opt.lr", 5e-4), NND_OK);
        }
        const float *x = xs + (size_t)(step % 2) * 16 * X_SIZE;
        const int32_t *y = ys + (step % 2) * 16;
        double la = 0, lb = 1;
        assert_int_equal(net_train_step(s, x, y, 16, &la), 0);
        assert_int_equal(
            nnd_step(p, x, sizeof(float) * 16 * X_SIZE, y, sizeof(int32_t) * 16, 16, &lb), NND_OK);
        assert_memory_equal(&la, &lb, sizeof la);
    }
    assert_int_equal(nnd_aot_steps(s), 6);
    double lr = 0;
    assert_int_equal(nnd_aot_get_hyper(s, "opt.lr", &lr), 0);
    assert_true(lr == 5e-4);
    assert_int_equal(net_train_forward(s, xs, N, a), 0);
    jit_forward(p, b, N);
    assert_memory_equal(a, b, sizeof a);
    /* what the AOT session saves, the JIT loads: the same outputs again */
    const char *w = NND_TEST_TMP "/aot_trained.safetensors";
    assert_int_equal(nnd_aot_save_weights(s, w), 0);
    NndProgram *q = open_jit();
    assert_int_equal(nnd_load_weights(q, w), NND_OK);
    jit_forward(q, b, N);
    assert_memory_equal(a, b, sizeof a);
    nnd_close(q);
    nnd_aot_free(s);
    nnd_close(p);
}

static void test_misuse(void **state)
{
    (void)state;
    fill_inputs(3);
    char err[256];
    NndAotModel bad = net_fwd_model;
    bad.abi = 99;
    assert_null(nnd_aot_new(&bad, 1, err, sizeof err));
    assert_non_null(strstr(err, "ABI 99"));
    assert_null(nnd_aot_new(NULL, 1, err, sizeof err));
    assert_string_equal(err, "nnd_aot_new: the model is NULL");
    assert_null(nnd_aot_new(NULL, 1, NULL, 256)); /* no room for a message: none */
    assert_null(nnd_aot_new(&bad, 1, NULL, 256));
    assert_null(nnd_aot_new(&net_fwd_model, 1000000, err, sizeof err)); /* as libnnd's limit */
    assert_string_equal(err, "nnd_aot_new: threads must be 1 to 256 (0 or less: one per CPU the "
                             "process may use), got 1000000");
    assert_int_equal(nnd_aot_sample_size(NULL), -1);
    assert_int_equal(nnd_aot_sample_size(&net_fwd_model.x), X_SIZE);
    NndAot *s = open_aot(&net_fwd_model);
    double loss;
    assert_int_equal(nnd_aot_step(s, xs, ys, 4, &loss), -1);
    assert_non_null(strstr(nnd_aot_errmsg(s), "--train"));
    assert_int_equal(nnd_aot_load_weights(s, NND_TEST_TMP "/no such file.safetensors"), -1);
    assert_non_null(strstr(nnd_aot_errmsg(s), "no such file.safetensors"));
    assert_int_equal(nnd_aot_forward(s, NULL, 1, NULL), -1);
    assert_string_equal(nnd_aot_errmsg(s), "nnd_aot_forward: x is NULL");
    static float out[OUT_SIZE];
    assert_int_equal(nnd_aot_forward(s, xs, 1, NULL), -1);
    assert_string_equal(nnd_aot_errmsg(s), "nnd_aot_forward: out is NULL");
    assert_int_equal(nnd_aot_forward(s, xs, -1, out), -1);
    assert_string_equal(nnd_aot_errmsg(s), "nnd_aot_forward: batch must be 0 or more, got -1");
    /* an empty path is refused before any file is touched */
    assert_int_equal(nnd_aot_load_weights(s, ""), -1);
    assert_string_equal(nnd_aot_errmsg(s), "nnd_aot_load_weights: the path is empty");
    assert_int_equal(nnd_aot_load_weights(s, NULL), -1);
    assert_string_equal(nnd_aot_errmsg(s), "nnd_aot_load_weights: the path is NULL");
    assert_int_equal(nnd_aot_save_weights(s, ""), -1);
    assert_string_equal(nnd_aot_errmsg(s), "nnd_aot_save_weights: the path is empty");
    assert_int_equal(nnd_aot_save_weights(s, NULL), -1);
    assert_string_equal(nnd_aot_errmsg(s), "nnd_aot_save_weights: the path is NULL");
    nnd_aot_free(s);
    nnd_aot_free(NULL);

    NndAot *t = open_aot(&net_train_model);
    assert_int_equal(nnd_aot_step(t, xs, ys, 17, &loss), -1); /* more than max_batch */
    assert_non_null(strstr(nnd_aot_errmsg(t), "batch 17"));
    int32_t bad_y[4] = {0, 1, 10, 2};
    assert_int_equal(nnd_aot_step(t, xs, bad_y, 4, &loss), -1);
    assert_non_null(strstr(nnd_aot_errmsg(t), "label 10"));
    assert_int_equal(nnd_aot_set_hyper(t, "opt.nope", 1), -1);
    assert_non_null(strstr(nnd_aot_errmsg(t), "no hyper-parameter 'opt.nope'"));
    assert_int_equal(nnd_aot_set_hyper(t, "step", 5), -1);
    assert_int_equal(nnd_aot_step(t, xs, NULL, 4, &loss), -1);
    assert_string_equal(nnd_aot_errmsg(t), "nnd_aot_step: y is NULL");
    /* what libnnd refuses, the session refuses, naming the value */
    assert_int_equal(nnd_aot_set_hyper(t, NULL, 5), -1);
    assert_string_equal(nnd_aot_errmsg(t), "nnd_aot_set_hyper: the name is NULL");
    double v = -1;
    assert_int_equal(nnd_aot_get_hyper(t, NULL, &v), -1);
    assert_string_equal(nnd_aot_errmsg(t), "nnd_aot_get_hyper: the name is NULL");
    assert_int_equal(nnd_aot_get_hyper(t, "opt.lr", NULL), -1);
    assert_string_equal(nnd_aot_errmsg(t), "nnd_aot_get_hyper: value is NULL");
    struct {
        const char *name;
        double value;
        const char *msg;
    } bad_hypers[] = {
        {"opt.lr", NAN, "nnd_aot_set_hyper: 'opt.lr' must be finite, got nan"},
        {"opt.lr", -INFINITY, "nnd_aot_set_hyper: 'opt.lr' must be finite, got -inf"},
        {"steps", 0, "nnd_aot_set_hyper: steps must be a whole number >= 1, got 0"},
        {"steps", 2.5, "nnd_aot_set_hyper: steps must be a whole number >= 1, got 2.5"},
        {"steps", 1e300,
         "nnd_aot_set_hyper: steps must be a whole number from 1 to 9e15, got 1e+300"},
        {"epoch", -1, "nnd_aot_set_hyper: epoch must be a whole number >= 0, got -1"},
        {"t", 3, "nnd_aot_set_hyper: 't' is kept by nnd_aot_step; it is not set"},
    };
    for (size_t i = 0; i < sizeof bad_hypers / sizeof bad_hypers[0]; i++) {
        assert_int_equal(nnd_aot_set_hyper(t, bad_hypers[i].name, bad_hypers[i].value), -1);
        assert_string_equal(nnd_aot_errmsg(t), bad_hypers[i].msg);
    }
    assert_int_equal(nnd_aot_get_hyper(t, "opt.lr", &v), 0);
    assert_true(v == 1e-3);
    assert_int_equal(nnd_aot_set_hyper(t, "steps", 100), 0);
    assert_int_equal(nnd_aot_set_hyper(t, "epoch", 2), 0);
    assert_int_equal(nnd_aot_get_hyper(t, "epoch", &v), 0);
    assert_true(v == 2);
    assert_int_equal(nnd_aot_set_hyper(t, "opt.lr", 1e-2), 0);
    assert_string_equal(nnd_aot_errmsg(t), "");
    nnd_aot_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_forward_bits),
        cmocka_unit_test(test_train_bits),
        cmocka_unit_test(test_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
