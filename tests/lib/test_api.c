/* libnnd's API (include/nnd.h), through the public header only: every entry point,
 * and its misuse (NULL handles and pointers, wrong sizes, calls out of order, a
 * program with errors).  Under the sanitizer build nothing may leak or crash. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "nnd.h"

#ifndef NND_TEST_TMP
#define NND_TEST_TMP "/tmp"
#endif

/* XOR, with its data in the program: trains in a few hundred full-batch steps. */
static const char *const XOR = "use nn\n"
                               "use optim\n"
                               "model Xor(hidden = 8) {\n"
                               "    fc1 = Dense(2, hidden)\n"
                               "    fc2 = Dense(hidden, 1)\n"
                               "    fn forward(x: [B, 2]) -> [B, 1] = sigmoid(fc2(tanh(fc1(x))))\n"
                               "}\n"
                               "train {\n"
                               "    data train = tensors(x = [[0, 0], [0, 1], [1, 0], [1, 1]],\n"
                               "                         y = [[0], [1], [1], [0]])\n"
                               "    net = Xor()\n"
                               "    loss = mse(net(x), y)\n"
                               "    opt = Adam(lr = 0.05)\n"
                               "    batch = 4\n"
                               "    epochs = 500\n"
                               "    seed = 1\n"
                               "    eval train every 100 epochs: err = mse(net(x), y)\n"
                               "}\n";

static const float XS[8] = {0, 0, 0, 1, 1, 0, 1, 1};
static const float YS[4] = {0, 1, 1, 0};

static NndProgram *open_xor(const NndOpenOptions *o)
{
    NndProgram *p = NULL;
    int rc = nnd_open_string("xor.nnd", XOR, o, &p);
    if (rc != NND_OK)
        fprintf(stderr, "%s", nnd_errmsg(p));
    assert_int_equal(rc, NND_OK);
    assert_non_null(p);
    return p;
}

static void test_version(void **state)
{
    (void)state;
    assert_string_equal(nnd_version(), NND_VERSION);
    assert_int_equal(nnd_version_number(), NND_VERSION_NUMBER);
    assert_string_equal(nnd_status_name(NND_OK), "NND_OK");
    assert_string_equal(nnd_status_name(NND_EDATA), "NND_EDATA");
    assert_string_equal(nnd_status_name(99), "unknown status");
    nnd_close(NULL);
    assert_non_null(strstr(nnd_errmsg(NULL), "NULL"));
}

/* A program whose training would change nothing (everything frozen) still opens,
 * to evaluate, with a warning saying so. */
static void test_program_trains_nothing(void **state)
{
    (void)state;
    char *src = malloc(strlen(XOR) + 32);
    assert_non_null(src);
    strcpy(src, XOR);
    char *at = strstr(src, "    loss = ");
    assert_non_null(at);
    memmove(at + 15, at, strlen(at) + 1);
    memcpy(at, "    freeze net\n", 15);
    NndProgram *p = NULL;
    assert_int_equal(nnd_open_string("frozen.nnd", src, NULL, &p), NND_OK);
    bool warned = false;
    NndDiagnostic d;
    for (int i = 0; i < nnd_diagnostic_count(p); i++)
        warned |= nnd_diagnostic(p, i, &d) == NND_OK && d.severity == NND_SEVERITY_WARNING &&
                  strstr(d.message, "every parameter is frozen") != NULL;
    assert_true(warned);
    nnd_close(p);
    free(src);
}

static void test_program_errors(void **state)
{
    (void)state;
    NndProgram *p = NULL;
    const char *bad = "use nn\ntrain {\n    net = Dense(2, 3)\n    loss = mean(net(x) @ y)\n}\n";
    assert_int_equal(nnd_open_string("bad.nnd", bad, NULL, &p), NND_EPROGRAM);
    assert_non_null(p);
    assert_non_null(strstr(nnd_errmsg(p), "bad.nnd:"));
    assert_true(nnd_diagnostic_count(p) >= 1);
    NndDiagnostic d;
    assert_int_equal(nnd_diagnostic(p, 0, &d), NND_OK);
    assert_int_equal(d.severity, NND_SEVERITY_ERROR);
    assert_string_equal(d.file, "bad.nnd");
    assert_true(d.line >= 2 && d.column >= 1);
    assert_non_null(d.message);
    assert_int_equal(nnd_diagnostic(p, -1, &d), NND_EMISUSE);
    assert_non_null(strstr(nnd_errmsg(p), "nnd_diagnostic: index -1 out of range 0 to"));
    assert_int_equal(nnd_diagnostic(p, 0, NULL), NND_EMISUSE);
    assert_string_equal(nnd_errmsg(p), "nnd_diagnostic: out is NULL");
    /* nothing else runs on it, and nothing crashes */
    float x[2] = {0}, y[1];
    assert_int_equal(nnd_forward(p, x, sizeof x, 1, y, sizeof y), NND_EMISUSE);
    assert_non_null(strstr(nnd_errmsg(p), "did not compile"));
    assert_int_equal(nnd_init_weights(p), NND_EMISUSE);
    assert_int_equal(nnd_param_count(p), 0);
    assert_int_equal(nnd_hyper_count(p), 0);
    assert_null(nnd_hyper_name(p, 0));
    nnd_close(p);

    /* a file that is not there */
    assert_int_equal(nnd_open(NND_TEST_TMP "/no-such-file.nnd", NULL, &p), NND_EIO);
    assert_non_null(strstr(nnd_errmsg(p), "no-such-file.nnd"));
    nnd_close(p);
    /* misuse of the arguments */
    assert_int_equal(nnd_open("x.nnd", NULL, NULL), NND_EMISUSE);
    assert_int_equal(nnd_open(NULL, NULL, &p), NND_EMISUSE);
    nnd_close(p);
    assert_int_equal(nnd_open("", NULL, &p), NND_EMISUSE);
    assert_string_equal(nnd_errmsg(p), "nnd_open: the path is empty");
    nnd_close(p);
    assert_int_equal(nnd_open_string("", "x", NULL, &p), NND_EMISUSE);
    assert_string_equal(nnd_errmsg(p), "nnd_open_string: the name is empty");
    nnd_close(p);
    assert_int_equal(nnd_open_string("s.nnd", NULL, NULL, &p), NND_EMISUSE);
    assert_non_null(strstr(nnd_errmsg(p), "source is NULL"));
    nnd_close(p);
    /* an environment variable the runtime reads, with a value it does not take */
    setenv("NND_OWN_SGEMM", "yes", 1);
    assert_int_equal(nnd_open_string("s.nnd", "x", NULL, &p), NND_EMISUSE);
    assert_non_null(strstr(nnd_errmsg(p), "NND_OWN_SGEMM='yes' must be 0"));
    nnd_close(p);
    unsetenv("NND_OWN_SGEMM");
    NndOpenOptions o = {.dtype = (NndDType)7};
    assert_int_equal(nnd_open_string("xor.nnd", XOR, &o, &p), NND_EMISUSE);
    nnd_close(p);
    o = (NndOpenOptions){.threads = -1};
    assert_int_equal(nnd_open_string("xor.nnd", XOR, &o, &p), NND_EMISUSE);
    nnd_close(p);
    const char *junk[] = {"no equals sign"};
    o = (NndOpenOptions){.overrides = junk, .noverrides = 1};
    assert_int_equal(nnd_open_string("xor.nnd", XOR, &o, &p), NND_EMISUSE);
    assert_non_null(strstr(nnd_errmsg(p), "NAME=VALUE"));
    nnd_close(p);
    /* an override naming nothing is the program's error, as with --set */
    const char *nothing[] = {"opt.lrr=1"};
    o = (NndOpenOptions){.overrides = nothing, .noverrides = 1};
    assert_int_equal(nnd_open_string("xor.nnd", XOR, &o, &p), NND_EPROGRAM);
    assert_non_null(strstr(nnd_errmsg(p), "opt.lrr"));
    nnd_close(p);
    /* a value strtod reads that is no finite decimal number is not taken */
    const char *nan_lr[] = {"opt.lr=nan"};
    o = (NndOpenOptions){.overrides = nan_lr, .noverrides = 1};
    assert_int_equal(nnd_open_string("xor.nnd", XOR, &o, &p), NND_EMISUSE);
    assert_non_null(strstr(nnd_errmsg(p), "'opt.lr=nan': expected a finite number"));
    nnd_close(p);
    /* one name given twice is an error, not the second one naming nothing */
    const char *twice[] = {"opt.lr=0.1", "opt.lr=0.2"};
    o = (NndOpenOptions){.overrides = twice, .noverrides = 2};
    assert_int_equal(nnd_open_string("xor.nnd", XOR, &o, &p), NND_EPROGRAM);
    assert_non_null(strstr(nnd_errmsg(p), "--set opt.lr: given twice"));
    nnd_close(p);
}

static void test_info(void **state)
{
    (void)state;
    NndProgram *p = open_xor(NULL);
    NndTensorInfo t;
    assert_int_equal(nnd_input_info(p, "x", &t), NND_OK);
    assert_int_equal(t.dtype, NND_F32);
    assert_int_equal(t.rank, 2);
    assert_int_equal(t.shape[0], NND_BATCH);
    assert_int_equal(t.shape[1], 2);
    assert_int_equal(t.sample_bytes, 8);
    assert_int_equal(nnd_input_info(p, "y", &t), NND_OK);
    assert_int_equal(t.sample_bytes, 4);
    assert_int_equal(nnd_input_info(p, "z", &t), NND_ENOTFOUND);
    assert_int_equal(nnd_input_info(p, NULL, &t), NND_EMISUSE);
    assert_int_equal(nnd_input_info(NULL, "x", &t), NND_EMISUSE);
    assert_int_equal(nnd_output_info(p, &t), NND_OK);
    assert_int_equal(t.rank, 2);
    assert_int_equal(t.shape[1], 1);
    assert_int_equal(nnd_output_info(p, NULL), NND_EMISUSE);
    assert_int_equal(nnd_param_count(p), 4);
    const char *names[4] = {"fc1.W", "fc1.b", "fc2.W", "fc2.b"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(nnd_param_info(p, i, &t), NND_OK);
        assert_string_equal(t.name, names[i]);
        assert_true(t.trainable);
    }
    assert_int_equal(nnd_param_info(p, 0, &t), NND_OK);
    assert_int_equal(t.shape[0], 2);
    assert_int_equal(t.shape[1], 8);
    assert_int_equal(nnd_param_info(p, 4, &t), NND_EMISUSE);
    /* every failure says what failed, not what the last one said */
    NndDiagnostic d;
    assert_int_equal(nnd_diagnostic(p, 0, &d), NND_EMISUSE);
    assert_string_equal(nnd_errmsg(p), "nnd_diagnostic: index 0, but there are no diagnostics");
    assert_int_equal(nnd_param_info(p, 4, &t), NND_EMISUSE);
    assert_int_equal(nnd_diagnostic(p, 0, NULL), NND_EMISUSE);
    assert_string_equal(nnd_errmsg(p), "nnd_diagnostic: out is NULL");
    assert_int_equal(nnd_eval_count(p), 1);
    assert_string_equal(nnd_eval_data(p, 0), "train");
    assert_int_equal(nnd_metric_count(p, 0), 1);
    assert_string_equal(nnd_metric_name(p, 0, 0), "err");
    assert_null(nnd_metric_name(p, 0, 1));
    assert_null(nnd_eval_data(p, 1));
    assert_int_equal(nnd_diagnostic_count(p), 0);
    assert_int_equal(nnd_output_info(p, &t), NND_OK); /* a success clears the message */
    assert_string_equal(nnd_errmsg(p), "");
    nnd_close(p);
}

static void test_weights_required(void **state)
{
    (void)state;
    NndProgram *p = open_xor(NULL);
    float out[4];
    /* no weights yet */
    assert_int_equal(nnd_forward(p, XS, sizeof XS, 4, out, sizeof out), NND_EMISUSE);
    assert_non_null(strstr(nnd_errmsg(p), "no weights"));
    assert_int_equal(nnd_step(p, XS, sizeof XS, YS, sizeof YS, 4, NULL), NND_EMISUSE);
    assert_int_equal(nnd_save_weights(p, NND_TEST_TMP "/never.safetensors"), NND_EMISUSE);
    /* giving every tensor a value counts as weights */
    float w1[16] = {0}, b1[8] = {0}, w2[8] = {0}, b2[1] = {0.5f};
    assert_int_equal(nnd_set_param(p, "fc1.W", w1, sizeof w1), NND_OK);
    assert_int_equal(nnd_set_param(p, "fc1.b", b1, sizeof b1), NND_OK);
    assert_int_equal(nnd_set_param(p, "fc2.W", w2, sizeof w2), NND_OK);
    assert_int_equal(nnd_forward(p, XS, sizeof XS, 4, out, sizeof out), NND_EMISUSE);
    assert_int_equal(nnd_set_param(p, "fc2.b", b2, sizeof b2 - 1), NND_EMISUSE);
    assert_non_null(strstr(nnd_errmsg(p), "'fc2.b' is 4 bytes"));
    assert_int_equal(nnd_set_param(p, "fc3.b", b2, sizeof b2), NND_ENOTFOUND);
    assert_int_equal(nnd_set_param(p, "fc2.b", NULL, sizeof b2), NND_EMISUSE);
    assert_int_equal(nnd_set_param(p, "fc2.b", b2, sizeof b2), NND_OK);
    assert_int_equal(nnd_forward(p, XS, sizeof XS, 4, out, sizeof out), NND_OK);
    for (int i = 0; i < 4; i++) /* sigmoid(0 + 0.5) */
        assert_float_equal(out[i], 1 / (1 + exp(-0.5)), 1e-6);
    float got[1];
    assert_int_equal(nnd_get_param(p, "fc2.b", got, sizeof got), NND_OK);
    assert_float_equal(got[0], 0.5, 0);
    assert_int_equal(nnd_get_param(p, "fc2.b", got, 8), NND_EMISUSE);
    /* wrong sizes, NULL buffers, a batch of none */
    assert_int_equal(nnd_forward(p, XS, sizeof XS - 4, 4, out, sizeof out), NND_EMISUSE);
    assert_non_null(strstr(nnd_errmsg(p), "x_bytes is 28"));
    assert_int_equal(nnd_forward(p, XS, sizeof XS, 4, out, sizeof out - 4), NND_EMISUSE);
    assert_int_equal(nnd_forward(p, NULL, sizeof XS, 4, out, sizeof out), NND_EMISUSE);
    assert_int_equal(nnd_forward(p, XS, sizeof XS, 4, NULL, sizeof out), NND_EMISUSE);
    assert_string_equal(nnd_errmsg(p), "nnd_forward: out is NULL");
    assert_int_equal(nnd_forward(p, XS, 0, 0, out, 0), NND_EMISUSE);
    assert_int_equal(nnd_forward(NULL, XS, sizeof XS, 4, out, sizeof out), NND_EMISUSE);
    nnd_close(p);
}

/* Trains XOR through nnd_step: the loss falls, forward fits, the metric agrees. */
static void test_train_loop(void **state)
{
    (void)state;
    NndProgram *p = open_xor(NULL);
    assert_int_equal(nnd_init_weights(p), NND_OK);
    double first = 0, loss = 0;
    for (int i = 0; i < 500; i++) {
        assert_int_equal(nnd_step(p, XS, sizeof XS, YS, sizeof YS, 4, &loss), NND_OK);
        if (i == 0)
            first = loss;
    }
    assert_true(loss < first / 10);
    double step;
    assert_int_equal(nnd_get_hyper(p, "step", &step), NND_OK);
    assert_float_equal(step, 500, 0);
    float out[4];
    assert_int_equal(nnd_forward(p, XS, sizeof XS, 4, out, sizeof out), NND_OK);
    double mse = 0;
    for (int i = 0; i < 4; i++)
        mse += (out[i] - YS[i]) * (out[i] - YS[i]) / 4;
    assert_true(mse < 0.05);
    double err;
    assert_int_equal(nnd_evaluate(p, 0, XS, sizeof XS, YS, sizeof YS, 4, &err), NND_OK);
    assert_float_equal(err, mse, 1e-6);
    assert_int_equal(nnd_evaluate(p, 1, XS, sizeof XS, YS, sizeof YS, 4, &err), NND_EMISUSE);
    assert_int_equal(nnd_evaluate(p, 0, XS, sizeof XS, YS, 3, 4, &err), NND_EMISUSE);
    assert_non_null(strstr(nnd_errmsg(p), "y_bytes is 3"));
    /* a step larger than max_batch is refused */
    float x8[16] = {0}, y8[8] = {0};
    assert_int_equal(nnd_step(p, x8, sizeof x8, y8, sizeof y8, 8, &loss), NND_EMISUSE);
    assert_non_null(strstr(nnd_errmsg(p), "max_batch"));
    nnd_close(p);
}

static void test_hypers(void **state)
{
    (void)state;
    NndProgram *p = open_xor(NULL);
    assert_int_equal(nnd_init_weights(p), NND_OK);
    bool seen = false;
    for (int i = 0; i < nnd_hyper_count(p); i++)
        seen |= strcmp(nnd_hyper_name(p, i), "opt.lr") == 0;
    assert_true(seen);
    double lr;
    assert_int_equal(nnd_get_hyper(p, "opt.lr", &lr), NND_OK);
    assert_float_equal(lr, 0.05, 0);
    /* with lr 0 a step changes nothing: the value is read at run time */
    assert_int_equal(nnd_set_hyper(p, "opt.lr", 0), NND_OK);
    float before[16], after[16];
    assert_int_equal(nnd_get_param(p, "fc1.W", before, sizeof before), NND_OK);
    assert_int_equal(nnd_step(p, XS, sizeof XS, YS, sizeof YS, 4, NULL), NND_OK);
    assert_int_equal(nnd_get_param(p, "fc1.W", after, sizeof after), NND_OK);
    assert_memory_equal(before, after, sizeof before);
    assert_int_equal(nnd_set_hyper(p, "opt.lr", 0.05), NND_OK);
    assert_int_equal(nnd_step(p, XS, sizeof XS, YS, sizeof YS, 4, NULL), NND_OK);
    assert_int_equal(nnd_get_param(p, "fc1.W", after, sizeof after), NND_OK);
    assert_memory_not_equal(before, after, sizeof before);
    assert_int_equal(nnd_set_hyper(p, "t", 3), NND_EMISUSE);
    assert_int_equal(nnd_set_hyper(p, "step", -1), NND_EMISUSE);
    assert_int_equal(nnd_set_hyper(p, "step", 7), NND_OK);
    double s;
    assert_int_equal(nnd_get_hyper(p, "step", &s), NND_OK);
    assert_float_equal(s, 7, 0);
    assert_int_equal(nnd_set_hyper(p, "opt.lr", NAN), NND_EMISUSE);
    assert_int_equal(nnd_set_hyper(p, "nope", 1), NND_ENOTFOUND);
    assert_int_equal(nnd_get_hyper(p, "nope", &s), NND_ENOTFOUND);
    assert_int_equal(nnd_get_hyper(p, NULL, &s), NND_EMISUSE);
    assert_int_equal(nnd_get_hyper(p, "opt.lr", NULL), NND_EMISUSE);
    assert_int_equal(nnd_set_hyper(NULL, "opt.lr", 1), NND_EMISUSE);
    nnd_close(p);
}

/* The run's counters take what nnd run's settings take: a schedule divides by
 * steps, so steps = 0 would make NaN weights. */
static void test_hyper_counters(void **state)
{
    (void)state;
    const char *src = "use nn\nuse optim\nuse schedules\n"
                      "optimizer O(lr = 0.1) {\n    w -= lr * g\n}\n"
                      "train {\n"
                      "    data train = tensors(x = [[1, 2], [3, -1]], y = [[1], [2]])\n"
                      "    net = Dense(2, 1)\n"
                      "    loss = mse(net(x), y)\n"
                      "    batch = 2\n"
                      "    steps = 2\n"
                      "    opt = O(lr = cosine(0.1, step, steps))\n"
                      "}\n";
    NndProgram *p = NULL;
    assert_int_equal(nnd_open_string("cos.nnd", src, NULL, &p), NND_OK);
    assert_int_equal(nnd_init_weights(p), NND_OK);
    struct {
        const char *name;
        double value;
        const char *msg;
    } bad[] = {
        {"steps", 0, "nnd_set_hyper: steps must be a whole number >= 1, got 0"},
        {"steps", -3, "nnd_set_hyper: steps must be a whole number >= 1, got -3"},
        {"steps", 2.5, "nnd_set_hyper: steps must be a whole number >= 1, got 2.5"},
        {"steps", 1e300, "nnd_set_hyper: steps must be a whole number from 1 to 9e15, got 1e+300"},
        {"epoch", -1, "nnd_set_hyper: epoch must be a whole number >= 0, got -1"},
        {"epoch", 0.5, "nnd_set_hyper: epoch must be a whole number >= 0, got 0.5"},
        {"step", -100, "nnd_set_hyper: step must be a whole number >= 0, got -100"},
        {"step", 1e300, "nnd_set_hyper: step must be a whole number from 0 to 9e15, got 1e+300"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(nnd_set_hyper(p, bad[i].name, bad[i].value), NND_EMISUSE);
        assert_string_equal(nnd_errmsg(p), bad[i].msg);
    }
    double v;
    assert_int_equal(nnd_get_hyper(p, "steps", &v), NND_OK);
    assert_float_equal(v, 2, 0);
    assert_int_equal(nnd_get_hyper(p, "epoch", &v), NND_OK);
    assert_float_equal(v, 0, 0);
    assert_int_equal(nnd_get_hyper(p, "step", &v), NND_OK);
    assert_float_equal(v, 0, 0);
    /* what the caller's loop means is taken: the schedule runs on */
    float x[4] = {1, 2, 3, -1}, y[2] = {1, 2}, w[2];
    double loss;
    for (int i = 0; i < 2; i++)
        assert_int_equal(nnd_step(p, x, sizeof x, y, sizeof y, 2, &loss), NND_OK);
    assert_int_equal(nnd_get_param(p, "W", w, sizeof w), NND_OK);
    assert_true(isfinite(w[0]) && isfinite(w[1]));
    assert_int_equal(nnd_set_hyper(p, "steps", 10), NND_OK);
    assert_int_equal(nnd_set_hyper(p, "epoch", 3), NND_OK);
    assert_int_equal(nnd_set_hyper(p, "step", 0), NND_OK);
    assert_int_equal(nnd_step(p, x, sizeof x, y, sizeof y, 2, &loss), NND_OK);
    assert_int_equal(nnd_get_hyper(p, "epoch", &v), NND_OK);
    assert_float_equal(v, 3, 0);
    nnd_close(p);
}

static void test_save_load(void **state)
{
    (void)state;
    NndProgram *a = open_xor(NULL), *b = open_xor(NULL);
    assert_int_equal(nnd_init_weights(a), NND_OK);
    for (int i = 0; i < 50; i++)
        assert_int_equal(nnd_step(a, XS, sizeof XS, YS, sizeof YS, 4, NULL), NND_OK);
    const char *path = NND_TEST_TMP "/api-xor.safetensors";
    assert_int_equal(nnd_save_weights(a, path), NND_OK);
    assert_int_equal(nnd_load_weights(b, path), NND_OK);
    float oa[4], ob[4];
    assert_int_equal(nnd_forward(a, XS, sizeof XS, 4, oa, sizeof oa), NND_OK);
    assert_int_equal(nnd_forward(b, XS, sizeof XS, 4, ob, sizeof ob), NND_OK);
    assert_memory_equal(oa, ob, sizeof oa);
    assert_int_equal(nnd_load_weights(b, NND_TEST_TMP "/missing.safetensors"), NND_EIO);
    assert_non_null(strstr(nnd_errmsg(b), "missing.safetensors"));
    /* after a failed load there are no weights to run */
    assert_int_equal(nnd_forward(b, XS, sizeof XS, 4, ob, sizeof ob), NND_EMISUSE);
    assert_int_equal(nnd_load_weights(b, NULL), NND_EMISUSE);
    assert_int_equal(nnd_save_weights(a, NULL), NND_EMISUSE);
    /* an empty path is refused before any file is touched */
    assert_int_equal(nnd_save_weights(a, ""), NND_EMISUSE);
    assert_string_equal(nnd_errmsg(a), "nnd_save_weights: the path is empty");
    assert_int_equal(nnd_load_weights(a, ""), NND_EMISUSE);
    assert_string_equal(nnd_errmsg(a), "nnd_load_weights: the path is empty");
    assert_int_equal(nnd_forward(a, XS, sizeof XS, 4, oa, sizeof oa), NND_OK); /* weights kept */
    nnd_close(b);
    /* a new file gets the permissions open(2) gives: 0666 less the umask */
    const char *fresh = NND_TEST_TMP "/api-umask.safetensors";
    unlink(fresh);
    mode_t mask = umask(027);
    assert_int_equal(nnd_save_weights(a, fresh), NND_OK);
    umask(mask);
    struct stat sb;
    assert_int_equal(stat(fresh, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0640);
    unlink(fresh);
    /* another hidden size: the error names the tensor and both shapes */
    const char *four[] = {"net.hidden=4"};
    NndProgram *c = NULL;
    NndOpenOptions o = {.overrides = four, .noverrides = 1};
    int rc = nnd_open_string("xor.nnd", XOR, &o, &c);
    if (rc == NND_EPROGRAM) { /* hidden is not a --set name: make the program say 4 */
        nnd_close(c);
        char *src = strdup(XOR);
        char *h = strstr(src, "hidden = 8");
        h[9] = '4';
        assert_int_equal(nnd_open_string("xor4.nnd", src, NULL, &c), NND_OK);
        free(src);
    }
    assert_int_equal(nnd_load_weights(c, path), NND_EIO);
    assert_non_null(strstr(nnd_errmsg(c), "tensor 'fc1.W' is [2, 8], but the model's 'fc1.W' is "
                                          "[2, 4]"));
    nnd_close(c);
    nnd_close(a);
    unlink(path);
}

/* max_batch splits a forward; the interpreter and f64 give the same answers. */
static void test_batches_engines(void **state)
{
    (void)state;
    NndOpenOptions small = {.max_batch = 3};
    NndProgram *a = open_xor(NULL), *b = open_xor(&small);
    NndOpenOptions io = {.interpret = 1};
    NndProgram *c = open_xor(&io);
    assert_int_equal(nnd_init_weights(a), NND_OK);
    assert_int_equal(nnd_init_weights(b), NND_OK);
    assert_int_equal(nnd_init_weights(c), NND_OK);
    float x[20], oa[10], ob[10], oc[10];
    for (int i = 0; i < 20; i++)
        x[i] = (float)(i % 7) / 3.0f - 1;
    assert_int_equal(nnd_forward(a, x, sizeof x, 10, oa, sizeof oa), NND_OK);
    assert_int_equal(nnd_forward(b, x, sizeof x, 10, ob, sizeof ob), NND_OK);
    assert_int_equal(nnd_forward(c, x, sizeof x, 10, oc, sizeof oc), NND_OK);
    for (int i = 0; i < 10; i++) {
        assert_float_equal(oa[i], ob[i], 1e-6);
        assert_float_equal(oa[i], oc[i], 1e-5);
    }
    nnd_close(a);
    nnd_close(b);
    nnd_close(c);
    NndOpenOptions f64 = {.dtype = NND_F64};
    NndProgram *d = open_xor(&f64);
    NndTensorInfo t;
    assert_int_equal(nnd_input_info(d, "x", &t), NND_OK);
    assert_int_equal(t.dtype, NND_F64);
    assert_int_equal(t.sample_bytes, 16);
    nnd_close(d);
}

static void test_bad_data(void **state)
{
    (void)state;
    const char *src = "use nn\nuse optim\ntrain {\n"
                      "    data train = tensors(x = [[0, 0], [1, 1]], y = [0, 1])\n"
                      "    net = Dense(2, 3)\n"
                      "    loss = cross_entropy(net(x), i32(y))\n"
                      "    opt = SGD(lr = 0.1)\n"
                      "    batch = 2\n"
                      "    eval train every epoch: acc = accuracy(net(x), i32(y))\n"
                      "}\n";
    float x[4] = {0, 0, 1, 1};
    double loss;
    /* compiled and interpreted alike: the error, and the model left as it was */
    for (int interp = 0; interp < 2; interp++) {
        NndOpenOptions o = {.interpret = interp};
        NndProgram *p = NULL;
        assert_int_equal(nnd_open_string("ce.nnd", src, &o, &p), NND_OK);
        assert_int_equal(nnd_init_weights(p), NND_OK);
        NndTensorInfo t;
        assert_int_equal(nnd_input_info(p, "y", &t), NND_OK);
        assert_int_equal(t.rank, 1);
        assert_int_equal(t.dtype, NND_F32);
        float y[2] = {0, 7}, w0[6], w1[6], b0[3], b1[3];
        assert_int_equal(nnd_get_param(p, "W", w0, sizeof w0), NND_OK);
        assert_int_equal(nnd_get_param(p, "b", b0, sizeof b0), NND_OK);
        assert_int_equal(nnd_step(p, x, sizeof x, y, sizeof y, 2, &loss), NND_EDATA);
        assert_non_null(strstr(nnd_errmsg(p), "label 7 is out of range for the model's 3 classes"));
        assert_int_equal(nnd_get_param(p, "W", w1, sizeof w1), NND_OK);
        assert_int_equal(nnd_get_param(p, "b", b1, sizeof b1), NND_OK);
        assert_memory_equal(w0, w1, sizeof w0);
        assert_memory_equal(b0, b1, sizeof b0);
        double acc;
        y[1] = 1;
        assert_int_equal(nnd_evaluate(p, 0, x, sizeof x, y, sizeof y, 2, &acc), NND_OK);
        assert_true(acc >= 0 && acc <= 1);
        /* a good step then updates */
        assert_int_equal(nnd_step(p, x, sizeof x, y, sizeof y, 2, &loss), NND_OK);
        assert_int_equal(nnd_get_param(p, "b", b1, sizeof b1), NND_OK);
        assert_true(memcmp(b0, b1, sizeof b0) != 0);
        nnd_close(p);
    }
    NndProgram *p = NULL;

    const char *nan = "use nn\nuse optim\ntrain {\n"
                      "    data train = tensors(x = [[0, 0], [1, 1]], y = [[0], [1]])\n"
                      "    net = Dense(2, 1)\n"
                      "    loss = mean(log(net(x) * 0 - 1))\n"
                      "    opt = SGD(lr = 0.1)\n"
                      "    batch = 2\n"
                      "}\n";
    assert_int_equal(nnd_open_string("nan.nnd", nan, NULL, &p), NND_OK);
    assert_int_equal(nnd_init_weights(p), NND_OK);
    float y2[2] = {0, 1};
    assert_int_equal(nnd_step(p, x, sizeof x, y2, sizeof y2, 2, &loss), NND_ENONFINITE);
    assert_true(isnan(loss));
    assert_non_null(strstr(nnd_errmsg(p), "NaN"));
    nnd_close(p);
}

/* Two handles on two threads at once. */
static void *forward_many(void *arg)
{
    NndProgram *p = arg;
    float out[4];
    for (int i = 0; i < 200; i++)
        if (nnd_forward(p, XS, sizeof XS, 4, out, sizeof out) != NND_OK)
            return (void *)1;
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    NndOpenOptions one = {.threads = 1};
    NndProgram *a = open_xor(&one), *b = open_xor(&one);
    assert_int_equal(nnd_init_weights(a), NND_OK);
    assert_int_equal(nnd_init_weights(b), NND_OK);
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, forward_many, a), 0);
    assert_int_equal(pthread_create(&tb, NULL, forward_many, b), 0);
    void *ra, *rb;
    pthread_join(ta, &ra);
    pthread_join(tb, &rb);
    assert_null(ra);
    assert_null(rb);
    nnd_close(a);
    nnd_close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_program_errors),
        cmocka_unit_test(test_program_trains_nothing),
        cmocka_unit_test(test_info),
        cmocka_unit_test(test_weights_required),
        cmocka_unit_test(test_train_loop),
        cmocka_unit_test(test_hypers),
        cmocka_unit_test(test_hyper_counters),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_batches_engines),
        cmocka_unit_test(test_bad_data),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
