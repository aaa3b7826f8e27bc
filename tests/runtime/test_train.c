/* The training loop, driven by step and eval functions written in C: step counts,
 * batch sizes, every sample once per epoch, the shuffle, the hyper-parameters the loop
 * sets, loss averaging, stopping on a non-finite loss or a bad status, when evals run
 * and how nnd_train_evaluate averages, the progress lines, and failed allocations.
 *
 * Each sample's features hold its index (and values derived from it), and its label
 * another, so a step can tell which samples it got and that x and y match. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* cmocka.h needs the headers above, included before it */
#include <cmocka.h>

#include "helpers.h"

enum { MAX_STEPS = 512, MAX_SAMPLES = 4096, MAX_EVALS = 64, NHYPERS = 8 };
enum { H_STEP = 1, H_EPOCH = 3, H_STEPS = 5, H_T = 6 };

/* Hyper-parameters the loop must leave alone. */
static const double OTHER_HYPERS[NHYPERS] = {0.01, -1, 0.9, -1, 0.999, -1, -1, 42};

/* What the step saw, and what it does. */
typedef struct StepLog {
    const struct Fixture *f;
    int64_t calls;
    int64_t batch[MAX_STEPS];
    double h_step[MAX_STEPS], h_epoch[MAX_STEPS], h_t[MAX_STEPS], h_steps[MAX_STEPS];
    uint32_t order[MAX_SAMPLES]; /* sample indices in the order the steps got them */
    int64_t norder;
    int64_t bad_at; /* this step (0-based) reports loss bad_loss, or status */
    double bad_loss;
    int32_t status;
} StepLog;

/* One evaluation run (all its batches). */
typedef struct EvalRun {
    double h_step; /* the step it ran after */
    int64_t batches, samples;
    int in_order; /* samples 0, 1, 2, ... */
} EvalRun;

typedef struct EvalLog {
    const struct Fixture *f;
    int data;
    EvalRun runs[MAX_EVALS];
    int nruns;
    int64_t next; /* the sample the next batch should start at; 0: a new run */
    int32_t status; /* reported on the first batch, if non-zero */
} EvalLog;

typedef struct Fixture {
    NndTensor x[2], y[2]; /* [0]: 'train', [1]: 'test' */
    NndDataSet data[2];
    double hypers[NHYPERS];
    float param0[4];
    double state0[2];
    void *params[1], *states[1];
    char arena[64];
    int64_t profile[4];
    NndEvalSpec evals[4];
    EvalLog elog[4];
    const char *metric_names[3];
    NndTrainer t;
    StepLog log;
} Fixture;

/* x [n, 3] f32 = {i, i + 0.25, -i}, y [n] i32 = 10 i + 1; with f64: x [n, 2, 2] =
 * {i, i + 0.25, -i, 2 i}, y [n, 1] = 10 i + 1. */
static void make_data(NndTensor *x, NndTensor *y, int64_t n, int f64)
{
    NndErr err;
    int64_t xs[3] = {n, f64 ? 2 : 3, 2}, ys[2] = {n, 1};
    assert_int_equal(nnd_tensor_alloc(x, f64 ? NND_F64 : NND_F32, f64 ? 3 : 2, xs, &err), 0);
    assert_int_equal(nnd_tensor_alloc(y, f64 ? NND_F64 : NND_I32, f64 ? 2 : 1, ys, &err), 0);
    for (int64_t i = 0; i < n; i++) {
        double v[4] = {(double)i, (double)i + 0.25, -(double)i, 2.0 * (double)i};
        if (f64) {
            memcpy((double *)x->data + i * 4, v, sizeof v);
            ((double *)y->data)[i] = 10.0 * (double)i + 1;
        } else {
            for (int j = 0; j < 3; j++)
                ((float *)x->data)[i * 3 + j] = (float)v[j];
            ((int32_t *)y->data)[i] = (int32_t)(10 * i + 1);
        }
    }
}

/* The sample index of batch row r, checking that its x and y agree. */
static int64_t sample_of(const NndDataSet *ds, const NndStepArgs *a, int64_t r)
{
    if (ds->x->dtype == NND_F64) {
        const double *x = (const double *)a->x + r * 4;
        int64_t i = (int64_t)x[0];
        assert_true(x[1] == (double)i + 0.25 && x[2] == -(double)i && x[3] == 2.0 * (double)i);
        assert_true(((const double *)a->y)[r] == 10.0 * (double)i + 1);
        return i;
    }
    const float *x = (const float *)a->x + r * 3;
    int64_t i = (int64_t)x[0];
    assert_true(x[1] == (float)i + 0.25f && x[2] == -(float)i);
    assert_int_equal(((const int32_t *)a->y)[r], 10 * i + 1);
    return i;
}

/* Checks what every step and eval function receives from the trainer. */
static void check_common_args(const Fixture *f, const NndStepArgs *a)
{
    assert_ptr_equal(a->params, f->t.params);
    assert_ptr_equal(a->states, f->t.states);
    assert_ptr_equal(a->hypers, f->t.hypers);
    assert_ptr_equal(a->arena, f->t.arena);
    assert_ptr_equal(a->pool, f->t.pool);
    assert_non_null(a->out);
    assert_int_equal(a->status, 0);
    assert_true(a->batch >= 1 && a->batch <= f->t.batch);
    /* batches come from nnd_alloc: 64-byte aligned */
    assert_int_equal((uintptr_t)a->x % 64, 0);
    assert_int_equal((uintptr_t)a->y % 64, 0);
}

/* The step: records, and reports loss step + 1 (or the planned bad loss/status). */
static void fake_step(NndStepArgs *a)
{
    StepLog *log = a->user;
    const Fixture *f = log->f;
    check_common_args(f, a);
    assert_ptr_equal(a->profile, f->t.profile);
    int64_t s = log->calls++;
    assert_true(s < MAX_STEPS);
    log->batch[s] = a->batch;
    log->h_step[s] = a->hypers[H_STEP];
    log->h_epoch[s] = a->hypers[H_EPOCH];
    log->h_t[s] = a->hypers[H_T];
    log->h_steps[s] = a->hypers[H_STEPS];
    const NndDataSet *ds = &f->t.data[f->t.train];
    for (int64_t r = 0; r < a->batch; r++) {
        assert_true(log->norder < MAX_SAMPLES);
        log->order[log->norder++] = (uint32_t)sample_of(ds, a, r);
    }
    a->out[0] = (double)(s + 1);
    if (s == log->bad_at) {
        if (log->status) {
            a->status = log->status;
            a->bad_value = 13; /* what compiled code records beside a range status */
            a->bad_count = 10;
        } else
            a->out[0] = log->bad_loss;
    }
}

/* fake_step after handing out the next batch's gather, as compiled code does where
 * the pool would wait (NndStepArgs.idle), and waiting for it: a gather into the
 * batch this step reads would change what fake_step records. */
static int64_t idle_calls;
static void fake_step_idle(NndStepArgs *a)
{
    if (a->idle) {
        idle_calls++;
        a->idle(a);
        nnd_pool_wait_posted(a->pool);
    }
    fake_step(a);
}

/* An eval with three metrics per batch: the mean sample index, the largest, and the
 * batch size. */
static void fake_eval(NndStepArgs *a)
{
    EvalLog *log = a->user;
    const Fixture *f = log->f;
    check_common_args(f, a);
    assert_null(a->profile);
    if (log->next == 0) {
        assert_true(log->nruns < MAX_EVALS);
        log->runs[log->nruns++] = (EvalRun){a->hypers[H_STEP], 0, 0, 1};
    }
    EvalRun *run = &log->runs[log->nruns - 1];
    const NndDataSet *ds = &f->t.data[log->data];
    double sum = 0, max = -1;
    for (int64_t r = 0; r < a->batch; r++) {
        int64_t i = sample_of(ds, a, r);
        if (i != log->next + r)
            run->in_order = 0;
        sum += (double)i;
        max = (double)i > max ? (double)i : max;
    }
    run->batches++;
    run->samples += a->batch;
    log->next += a->batch;
    if (log->next >= ds->x->shape[0])
        log->next = 0;
    a->out[0] = sum / (double)a->batch;
    a->out[1] = max;
    a->out[2] = (double)a->batch;
    if (log->status) {
        a->status = log->status;
        a->bad_value = 13;
        a->bad_count = 10;
        log->next = 0;
    }
}

/* A fixture with 'train' of n_train samples and 'test' of n_test, trained in batches
 * of batch for epochs (or steps); no shuffle, no evals, silent. */
static Fixture *fixture_new(int64_t n_train, int64_t n_test, int64_t batch, int64_t epochs,
                            int64_t steps, int f64)
{
    Fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    make_data(&f->x[0], &f->y[0], n_train, f64);
    make_data(&f->x[1], &f->y[1], n_test, f64);
    f->data[0] = (NndDataSet){.name = "train", .x = &f->x[0], .y = &f->y[0]};
    f->data[1] = (NndDataSet){.name = "test", .x = &f->x[1], .y = &f->y[1]};
    memcpy(f->hypers, OTHER_HYPERS, sizeof f->hypers);
    f->params[0] = f->param0;
    f->states[0] = f->state0;
    f->metric_names[0] = "mean";
    f->metric_names[1] = "max";
    f->metric_names[2] = "size";
    f->log.f = f;
    f->log.bad_at = -1;
    f->t = (NndTrainer){
        .params = f->params,
        .states = f->states,
        .hypers = f->hypers,
        .h_step = H_STEP,
        .h_epoch = H_EPOCH,
        .h_steps = H_STEPS,
        .h_t = H_T,
        .data = f->data,
        .ndata = 2,
        .train = 0,
        .batch = batch,
        .epochs = epochs,
        .steps = steps,
        .seed = 1,
        .shuffle = 0,
        .step = fake_step,
        .user = &f->log,
        .evals = f->evals,
        .nevals = 0,
        .arena = f->arena,
        .pool = NULL,
        .progress = NULL,
        .interactive = 0,
        .what = NULL,
        .profile = f->profile,
    };
    return f;
}

/* Adds an eval of the three metrics on data set `data`, every `every` steps or epochs. */
static void fixture_eval(Fixture *f, int data, int64_t every, int in_epochs)
{
    int i = f->t.nevals++;
    assert_true(i < 4);
    f->elog[i] = (EvalLog){.f = f, .data = data};
    f->evals[i] = (NndEvalSpec){data, every, in_epochs, 3, f->metric_names, fake_eval, &f->elog[i]};
}

static void fixture_free(Fixture *f)
{
    for (int i = 0; i < 2; i++) {
        nnd_tensor_free(&f->x[i]);
        nnd_tensor_free(&f->y[i]);
    }
    free(f);
}

static void check_other_hypers(const Fixture *f)
{
    for (int i = 0; i < NHYPERS; i++)
        if (i != H_STEP && i != H_EPOCH && i != H_STEPS && i != H_T)
            assert_true(f->hypers[i] == OTHER_HYPERS[i]);
}

/* Runs f->t and checks a clean finish. */
static NndTrainResult train_ok(Fixture *f)
{
    NndTrainResult res;
    NndErr err = {""};
    int rc = nnd_train(&f->t, &res, &err);
    if (rc != 0)
        fail_msg("nnd_train returned %d: %s", rc, err.msg);
    assert_int_equal(res.nonfinite, 0);
    assert_int_equal(res.steps, f->log.calls);
    assert_true(res.seconds >= 0);
    check_other_hypers(f);
    return res;
}

/* Whether order[0..n) is a permutation of 0..n-1. */
static int is_permutation(const uint32_t *order, int64_t n)
{
    char *seen = calloc((size_t)n + 1, 1);
    int ok = 1;
    for (int64_t i = 0; i < n && ok; i++) {
        ok = order[i] < n && !seen[order[i]];
        if (ok)
            seen[order[i]] = 1;
    }
    free(seen);
    return ok;
}

static void test_total_steps(void **state)
{
    static const struct {
        int64_t n, batch, epochs, steps, total;
    } cases[] = {
        {10, 3, 2, 0, 8},  {9, 3, 2, 0, 6},   {10, 3, 2, 5, 5},  {10, 3, 2, 100, 100},
        {10, 3, 0, 0, 0},  {10, 3, 0, 7, 7},  {5, 8, 3, 0, 3},   {1, 1, 4, 0, 4},
        {10, 10, 1, 0, 1}, {11, 10, 1, 0, 2}, {10, 3, 2, -1, 8}, {60000, 64, 10, 0, 9380},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Fixture *f = fixture_new(cases[i].n, 1, cases[i].batch, cases[i].epochs, cases[i].steps, 0);
        assert_int_equal(nnd_train_total_steps(&f->t), cases[i].total);
        fixture_free(f);
    }
}

/* Batches (the last of an epoch partial), hyper-parameters, and every sample once per
 * epoch, by epochs and by steps, with f32 and f64 data. */
/* With a pool (and a step that calls idle), batches are gathered a step ahead. */
static void check_run_on(NndPool *pool, int64_t n, int64_t batch, int64_t epochs, int64_t steps,
                         int shuffle, int f64)
{
    Fixture *f = fixture_new(n, 1, batch, epochs, steps, f64);
    f->t.shuffle = shuffle;
    f->t.seed = 99;
    f->t.pool = pool;
    if (pool)
        f->t.step = fake_step_idle;
    idle_calls = 0;
    NndTrainResult res = train_ok(f);
    int64_t per_epoch = (n + batch - 1) / batch;
    int64_t total = steps > 0 ? steps : epochs * per_epoch;
    assert_int_equal(res.steps, total);
    assert_int_equal(f->log.calls, total);
    int64_t seen = 0;
    for (int64_t s = 0; s < total; s++) {
        int64_t in_epoch = s % per_epoch;
        int64_t expect = n - in_epoch * batch < batch ? n - in_epoch * batch : batch;
        assert_int_equal(f->log.batch[s], expect);
        assert_true(f->log.h_step[s] == (double)s);
        assert_true(f->log.h_t[s] == (double)(s + 1));
        assert_true(f->log.h_epoch[s] == (double)(s / per_epoch));
        assert_true(f->log.h_steps[s] == (double)total);
        seen += expect;
    }
    assert_int_equal(f->log.norder, seen);
    /* each whole epoch is a permutation; a partial last one has distinct samples */
    for (int64_t e = 0; e * n < seen; e++) {
        int64_t len = seen - e * n < n ? seen - e * n : n;
        const uint32_t *o = f->log.order + e * n;
        if (len == n) {
            assert_true(is_permutation(o, n));
        } else {
            for (int64_t i = 0; i < len; i++)
                for (int64_t j = 0; j < i; j++)
                    assert_int_not_equal(o[i], o[j]);
        }
        if (!shuffle)
            for (int64_t i = 0; i < len; i++)
                assert_int_equal(o[i], i);
    }
    assert_true(f->hypers[H_STEPS] == (double)total);
    if (pool) /* every step but an epoch's last and the run's last */
        assert_int_equal(idle_calls, total - total / per_epoch - (total % per_epoch != 0));
    fixture_free(f);
}

static void check_run(int64_t n, int64_t batch, int64_t epochs, int64_t steps, int shuffle, int f64)
{
    check_run_on(NULL, n, batch, epochs, steps, shuffle, f64);
}

/* The same runs on a pool of two threads, the next batch gathered during each step. */
static void test_batches_gathered_ahead(void **state)
{
    (void)state;
    NndErr err;
    NndPool *pool = nnd_pool_create(2, &err);
    assert_non_null(pool);
    for (int shuffle = 0; shuffle < 2; shuffle++)
        for (int f64 = 0; f64 < 2; f64++) {
            check_run_on(pool, 10, 3, 3, 0, shuffle, f64);
            check_run_on(pool, 10, 4, 0, 7, shuffle, f64);
            check_run_on(pool, 9, 3, 2, 0, shuffle, f64);
            check_run_on(pool, 5, 8, 2, 0, shuffle, f64);
            check_run_on(pool, 1, 1, 3, 0, shuffle, f64);
            check_run_on(pool, 37, 5, 4, 0, shuffle, f64);
        }
    nnd_pool_destroy(pool);
}

static void test_batches_and_epochs(void **state)
{
    for (int shuffle = 0; shuffle < 2; shuffle++)
        for (int f64 = 0; f64 < 2; f64++) {
            check_run(10, 3, 3, 0, shuffle, f64); /* 3, 3, 3, 1 */
            check_run(10, 4, 0, 7, shuffle, f64); /* 4, 4, 2, 4, 4, 2, 4: stops mid-epoch */
            check_run(9, 3, 2, 0, shuffle, f64); /* exact */
            check_run(5, 8, 2, 0, shuffle, f64); /* batch larger than the data */
            check_run(1, 1, 3, 0, shuffle, f64); /* one sample */
            check_run(10, 3, 5, 2, shuffle, f64); /* steps win over epochs */
            check_run(37, 5, 4, 0, shuffle, f64);
        }
}

static void test_zero_steps(void **state)
{
    Fixture *f = fixture_new(10, 1, 3, 0, 0, 0);
    NndTrainResult res = train_ok(f);
    assert_int_equal(res.steps, 0);
    assert_int_equal(f->log.calls, 0);
    fixture_free(f);
}

/* The epochs' orders for a seed. */
static void shuffled_orders(uint64_t seed, int64_t batch, int shuffle, uint32_t *order)
{
    Fixture *f = fixture_new(50, 1, batch, 3, 0, 0);
    f->t.seed = seed;
    f->t.shuffle = shuffle;
    train_ok(f);
    assert_int_equal(f->log.norder, 150);
    memcpy(order, f->log.order, 150 * sizeof *order);
    fixture_free(f);
}

static void test_shuffle(void **state)
{
    uint32_t a[150], b[150], c[150], d[150], plain[150];
    shuffled_orders(7, 7, 1, a);
    shuffled_orders(7, 7, 1, b);
    shuffled_orders(8, 7, 1, c);
    shuffled_orders(7, 5, 1, d);
    shuffled_orders(7, 7, 0, plain);
    /* the same seed gives the same orders, whatever the batch size */
    assert_memory_equal(a, b, sizeof a);
    assert_memory_equal(a, d, sizeof a);
    /* another seed, another order, in every epoch */
    for (int e = 0; e < 3; e++)
        assert_memory_not_equal(a + 50 * e, c + 50 * e, 50 * sizeof a[0]);
    /* every epoch has its own order, and none is the identity */
    assert_memory_not_equal(a, a + 50, 50 * sizeof a[0]);
    assert_memory_not_equal(a + 50, a + 100, 50 * sizeof a[0]);
    assert_memory_not_equal(a, a + 100, 50 * sizeof a[0]);
    for (int e = 0; e < 3; e++) {
        assert_true(is_permutation(a + 50 * e, 50));
        assert_memory_not_equal(a + 50 * e, plain, 50 * sizeof a[0]);
    }
    /* without shuffle: 0..n-1 every epoch */
    for (int i = 0; i < 150; i++)
        assert_int_equal(plain[i], i % 50);
}

/* final_loss: the mean over the last epoch run of the step losses (step + 1),
 * weighted by batch size. */
static void test_loss_average(void **state)
{
    static const struct {
        int64_t n, batch, epochs, steps;
        double loss;
    } cases[] = {
        {10, 4, 1, 0, (4 * 1 + 4 * 2 + 2 * 3) / 10.0},
        {10, 4, 2, 0, (4 * 4 + 4 * 5 + 2 * 6) / 10.0},
        {10, 4, 0, 4, 4}, /* the last epoch is one step */
        {10, 4, 0, 5, (4 * 4 + 4 * 5) / 8.0}, /* two steps of it */
        {10, 3, 3, 0, (3 * 9 + 3 * 10 + 3 * 11 + 1 * 12) / 10.0},
        {7, 7, 3, 0, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Fixture *f = fixture_new(cases[i].n, 1, cases[i].batch, cases[i].epochs, cases[i].steps, 0);
        f->t.shuffle = 1;
        NndTrainResult res = train_ok(f);
        assert_float_equal(res.final_loss, cases[i].loss, 1e-12);
        fixture_free(f);
    }
}

/* A NaN or infinite loss stops training: 1, nonfinite, the step named (1-based). */
static void test_nonfinite(void **state)
{
    static const struct {
        int64_t bad_at;
        double loss;
        const char *msg;
        double final_loss;
    } cases[] = {
        {0, NAN, "the loss is NaN at step 1 (epoch 1): training stopped", 0},
        {1, INFINITY, "the loss is infinite at step 2 (epoch 1): training stopped", 1},
        {4, -INFINITY, "the loss is infinite at step 5 (epoch 2): training stopped",
         (3 * 1 + 3 * 2 + 3 * 3 + 1 * 4) / 10.0},
        {6, NAN, "the loss is NaN at step 7 (epoch 2): training stopped", (3 * 5 + 3 * 6) / 6.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int progress = 0; progress < 3; progress++) {
            Fixture *f = fixture_new(10, 4, 3, 5, 0, 0);
            char *text = NULL;
            size_t len = 0;
            if (progress) {
                f->t.progress = open_memstream(&text, &len);
                f->t.interactive = progress == 2;
            }
            fixture_eval(f, 1, 1, 0); /* would run after every step */
            f->log.bad_at = cases[i].bad_at;
            f->log.bad_loss = cases[i].loss;
            NndTrainResult res;
            NndErr err = {""};
            assert_int_equal(nnd_train(&f->t, &res, &err), 1);
            assert_int_equal(res.nonfinite, 1);
            assert_int_equal(res.steps, cases[i].bad_at + 1);
            assert_int_equal(f->log.calls, cases[i].bad_at + 1);
            assert_string_equal(err.msg, cases[i].msg);
            assert_float_equal(res.final_loss, cases[i].final_loss, 1e-12);
            /* no eval after the bad step */
            assert_int_equal(f->elog[0].nruns, cases[i].bad_at);
            if (progress) {
                fclose(f->t.progress);
                /* an interactive line is ended before the message is printed */
                if (progress == 2)
                    assert_true(len > 0 && text[len - 1] == '\n');
                free(text);
            }
            fixture_free(f);
        }
}

/* A non-zero status from the step is an error naming the data set. */
static void test_step_status(void **state)
{
    static const struct {
        int32_t status;
        const char *msg;
    } cases[] = {
        {NND_STATUS_LABEL_RANGE,
         "training on 'train': label 13 is out of range for the model's 10 classes, 0 to 9"},
        {7, "training on 'train' failed (status 7)"},
        {-2, "training on 'train' failed (status -2)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Fixture *f = fixture_new(10, 4, 3, 2, 0, 0);
        f->log.bad_at = 2;
        f->log.status = cases[i].status;
        NndTrainResult res;
        NndErr err = {""};
        assert_int_equal(nnd_train(&f->t, &res, &err), -1);
        assert_string_equal(err.msg, cases[i].msg);
        assert_int_equal(res.steps, 2); /* the steps that succeeded */
        assert_int_equal(res.nonfinite, 0);
        assert_int_equal(f->log.calls, 3);
        fixture_free(f);
    }
}

static void test_empty_data(void **state)
{
    Fixture *f = fixture_new(0, 1, 3, 2, 0, 0);
    NndTrainResult res;
    NndErr err = {""};
    assert_int_equal(nnd_train(&f->t, &res, &err), -1);
    assert_string_equal(err.msg, "data set 'train' has 0 samples");
    assert_int_equal(f->log.calls, 0);
    fixture_free(f);
}

/* The steps (0-based) after which an eval ran. */
static void check_eval_steps(const EvalLog *log, const int64_t *steps, int n, int64_t samples,
                             int64_t batches)
{
    if (log->nruns != n)
        fail_msg("eval on data %d ran %d times, expected %d", log->data, log->nruns, n);
    for (int i = 0; i < n; i++) {
        assert_true(log->runs[i].h_step == (double)steps[i]);
        assert_int_equal(log->runs[i].samples, samples);
        assert_int_equal(log->runs[i].batches, batches);
        assert_true(log->runs[i].in_order);
    }
}

/* Evals run every N steps, every N epochs, and at the end (once). */
static void test_eval_schedule(void **state)
{
    /* 10 samples in batches of 3: 4 steps an epoch */
    Fixture *f = fixture_new(10, 7, 3, 3, 0, 0);
    fixture_eval(f, 1, 3, 0); /* steps 2, 5, 8, 11 (the end) */
    fixture_eval(f, 0, 1, 1); /* epoch ends: steps 3, 7, 11 */
    fixture_eval(f, 1, 2, 1); /* epoch 2: step 7; and the end, 11 */
    fixture_eval(f, 1, 5, 0); /* steps 4, 9; and the end, 11 */
    f->t.shuffle = 1;
    train_ok(f);
    check_eval_steps(&f->elog[0], (const int64_t[]){2, 5, 8, 11}, 4, 7, 3);
    check_eval_steps(&f->elog[1], (const int64_t[]){3, 7, 11}, 3, 10, 4);
    check_eval_steps(&f->elog[2], (const int64_t[]){7, 11}, 2, 7, 3);
    check_eval_steps(&f->elog[3], (const int64_t[]){4, 9, 11}, 3, 7, 3);
    fixture_free(f);

    /* by steps, stopping mid-epoch: 6 steps of 4 an epoch */
    f = fixture_new(10, 7, 3, 0, 6, 0);
    fixture_eval(f, 1, 1, 1); /* epoch end: step 3; the end: 5 */
    fixture_eval(f, 1, 4, 1); /* only the end */
    fixture_eval(f, 1, 2, 0); /* steps 1, 3, 5 */
    train_ok(f);
    check_eval_steps(&f->elog[0], (const int64_t[]){3, 5}, 2, 7, 3);
    check_eval_steps(&f->elog[1], (const int64_t[]){5}, 1, 7, 3);
    check_eval_steps(&f->elog[2], (const int64_t[]){1, 3, 5}, 3, 7, 3);
    fixture_free(f);
}

/* nnd_train_evaluate: each metric's batch means weighted by batch size, over the whole set. */
static void test_evaluate_average(void **state)
{
    static const struct {
        int64_t n, batch;
    } cases[] = {{7, 3}, {7, 10}, {7, 7}, {7, 1}, {100, 32}, {1, 4}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int f64 = 0; f64 < 2; f64++) {
            int64_t n = cases[i].n, batch = cases[i].batch;
            Fixture *f = fixture_new(3, n, batch, 1, 0, f64);
            fixture_eval(f, 1, 1, 0);
            double v[3] = {-1, -1, -1};
            NndErr err = {""};
            assert_int_equal(nnd_train_evaluate(&f->t, 0, v, &err), 0);
            double max = 0, size = 0;
            for (int64_t s = 0; s < n; s += batch) {
                int64_t m = n - s < batch ? n - s : batch;
                max += (double)(m * (s + m - 1));
                size += (double)(m * m);
            }
            assert_float_equal(v[0], (double)(n - 1) / 2, 1e-12);
            assert_float_equal(v[1], max / (double)n, 1e-12);
            assert_float_equal(v[2], size / (double)n, 1e-12);
            assert_int_equal(f->elog[0].nruns, 1);
            assert_int_equal(f->elog[0].runs[0].samples, n);
            assert_true(f->elog[0].runs[0].in_order);
            assert_int_equal(f->log.calls, 0);
            fixture_free(f);
        }
}

/* A non-zero status from an eval is an error naming its data set; in training it
 * stops the run after the step that triggered the eval. */
static void test_eval_status(void **state)
{
    Fixture *f = fixture_new(10, 7, 3, 2, 0, 0);
    fixture_eval(f, 1, 3, 0);
    f->elog[0].status = NND_STATUS_LABEL_RANGE;
    double v[3];
    NndErr err = {""};
    assert_int_equal(nnd_train_evaluate(&f->t, 0, v, &err), -1);
    assert_string_equal(
        err.msg,
        "evaluation on 'test': label 13 is out of range for the model's 10 classes, 0 to 9");
    f->elog[0].nruns = 0;
    NndTrainResult res;
    assert_int_equal(nnd_train(&f->t, &res, &err), -1);
    assert_int_equal(res.steps, 3);
    assert_int_equal(f->log.calls, 3);
    assert_int_equal(f->elog[0].nruns, 1);
    assert_int_equal(f->elog[0].runs[0].batches, 1); /* stopped at its first batch */
    f->elog[0].status = 5;
    assert_int_equal(nnd_train_evaluate(&f->t, 0, v, &err), -1);
    assert_string_equal(err.msg, "evaluation on 'test' failed (status 5)");
    fixture_free(f);
}

/* Splits text into lines (in place); returns how many. */
static int split_lines(char *text, char **lines, int max)
{
    int n = 0;
    for (char *p = text; *p && n < max;) {
        lines[n++] = p;
        char *nl = strchr(p, '\n');
        if (!nl)
            break;
        *nl = 0;
        p = nl + 1;
    }
    return n;
}

/* Checks "epoch E/EP  step S/T  loss L  R samples/s". */
static void check_epoch_line(const char *line, int64_t epoch, int64_t epochs, int64_t step,
                             int64_t total, double loss)
{
    char head[128];
    snprintf(head, sizeof head, "epoch %lld/%lld  step %lld/%lld  loss ", (long long)epoch,
             (long long)epochs, (long long)step, (long long)total);
    if (strncmp(line, head, strlen(head)) != 0)
        fail_msg("line '%s' does not start with '%s'", line, head);
    char *end;
    double l = strtod(line + strlen(head), &end);
    assert_float_equal(l, loss, 1e-6);
    assert_true(strncmp(end, "  ", 2) == 0);
    const char *tail = " samples/s";
    assert_true(strlen(end) > strlen(tail) + 2);
    assert_string_equal(end + strlen(end) - strlen(tail), tail);
}

/* Plain lines (not a terminal): the header, an epoch line at each report and at each
 * eval, and one line per eval with its metrics. */
static void test_progress_plain(void **state)
{
    Fixture *f = fixture_new(10, 7, 3, 2, 0, 0);
    char *text = NULL;
    size_t len = 0;
    f->t.progress = open_memstream(&text, &len);
    f->t.what = "fake, 1 thread";
    fixture_eval(f, 1, 3, 0); /* steps 2, 5, 7 (0-based) */
    train_ok(f);
    fclose(f->t.progress);
    char *lines[32];
    assert_true(len > 0 && text[len - 1] == '\n');
    int n = split_lines(text, lines, 32);
    const char *eval = "  eval test:  mean 3  max 3.8571  size 2.7143"; /* significant digits */
    assert_int_equal(n, 8);
    assert_string_equal(
        lines[0], "training on 'train': 10 samples, batch 3, 2 epochs (8 steps), fake, 1 thread");
    check_epoch_line(lines[1], 1, 2, 3, 8, 2.0); /* eval due */
    assert_string_equal(lines[2], eval);
    check_epoch_line(lines[3], 1, 2, 4, 8, 2.2); /* epoch end */
    check_epoch_line(lines[4], 2, 2, 6, 8, 5.5); /* eval due */
    assert_string_equal(lines[5], eval);
    check_epoch_line(lines[6], 2, 2, 8, 8, 6.2); /* the end, and an eval */
    assert_string_equal(lines[7], eval);
    free(text);
    fixture_free(f);

    /* one epoch, by steps, and no `what` */
    f = fixture_new(10, 7, 3, 0, 3, 0);
    text = NULL;
    f->t.progress = open_memstream(&text, &len);
    train_ok(f);
    fclose(f->t.progress);
    n = split_lines(text, lines, 32);
    assert_int_equal(n, 2);
    assert_string_equal(lines[0], "training on 'train': 10 samples, batch 3, 1 epoch (3 steps)");
    check_epoch_line(lines[1], 1, 1, 3, 3, 2.0);
    free(text);
    fixture_free(f);

    /* about ten lines over a long run: every epochs / 10 epochs, and the last */
    f = fixture_new(4, 7, 4, 25, 0, 0);
    text = NULL;
    f->t.progress = open_memstream(&text, &len);
    train_ok(f);
    fclose(f->t.progress);
    n = split_lines(text, lines, 32);
    assert_int_equal(n, 1 + 13);
    for (int i = 0; i < 12; i++)
        check_epoch_line(lines[1 + i], 2 * i + 2, 25, 2 * i + 2, 25, 2 * i + 2);
    check_epoch_line(lines[13], 25, 25, 25, 25, 25);
    free(text);
    fixture_free(f);
}

/* On a terminal: one line rewritten in place, ended at each epoch's end. */
static void test_progress_interactive(void **state)
{
    Fixture *f = fixture_new(10, 7, 3, 2, 0, 0);
    char *text = NULL;
    size_t len = 0;
    f->t.progress = open_memstream(&text, &len);
    f->t.interactive = 1;
    train_ok(f);
    fclose(f->t.progress);
    assert_non_null(strstr(text, "training on 'train': 10 samples, batch 3, 2 epochs (8 steps)\n"));
    const char *e1 = strstr(text, "\r\033[Kepoch 1/2 [####################] step 4/8  loss 2.2");
    const char *e2 = strstr(text, "\r\033[Kepoch 2/2 [####################] step 8/8  loss 6.2");
    assert_non_null(e1);
    assert_non_null(e2);
    assert_true(e1 < e2);
    /* each epoch's last update ends with its time and a newline */
    int newlines = 0;
    for (size_t i = 0; i < len; i++)
        newlines += text[i] == '\n';
    assert_int_equal(newlines, 3);
    assert_true(len > 3 && strcmp(text + len - 3, "s)\n") == 0);
    free(text);
    fixture_free(f);
}

/* With progress NULL nothing is printed anywhere. */
static void test_progress_silent(void **state)
{
    Fixture *f = fixture_new(10, 7, 3, 2, 0, 0);
    fixture_eval(f, 1, 1, 0);
    f->log.bad_at = 5;
    f->log.bad_loss = NAN;
    fflush(stdout);
    fflush(stderr);
    FILE *capture = tmpfile();
    assert_non_null(capture);
    int saved_out = dup(1), saved_err = dup(2);
    assert_true(saved_out >= 0 && saved_err >= 0);
    dup2(fileno(capture), 1);
    dup2(fileno(capture), 2);
    NndTrainResult res;
    NndErr err;
    int rc = nnd_train(&f->t, &res, &err);
    f->log.bad_at = -1;
    int rc2 = nnd_train(&f->t, &res, &err);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    long size = lseek(fileno(capture), 0, SEEK_END);
    fclose(capture);
    assert_int_equal(rc, 1);
    assert_int_equal(rc2, 0);
    assert_int_equal(size, 0);
    fixture_free(f);
}

/* Fails allocation 1, 2, 3, ... of a run with evals: each failure is -1 with a message
 * and nothing left allocated, until the run succeeds. */
/* Augmentation: each image mirrored or not, shifted within the crop with zeros
 * brought in, noised with the asked deviation; the same bits whether the rows go
 * in one call or two (any batch split, thread count or rank). */
enum { AUG_N = 256, AUG_H = 3, AUG_W = 4, AUG_PER = 2 * AUG_H * AUG_W };

static float aug_src(int s, int c, int i, int j)
{
    return (float)(1 + s % 7 + 10 * c + 100 * i + 1000 * j);
}

static void aug_run(const NndAugment *a, float *out, int split)
{
    int64_t shape[4] = {AUG_N, 2, AUG_H, AUG_W};
    NndTensor t = {.dtype = NND_F32, .rank = 4};
    memcpy(t.shape, shape, sizeof shape);
    NndDataSet ds = {.name = "train", .x = &t, .augment = a};
    uint32_t idx[AUG_N];
    for (int s = 0; s < AUG_N; s++) {
        idx[s] = (uint32_t)(AUG_N - 1 - s);
        for (int c = 0; c < 2; c++)
            for (int i = 0; i < AUG_H; i++)
                for (int j = 0; j < AUG_W; j++)
                    out[s * AUG_PER + (c * AUG_H + i) * AUG_W + j] = aug_src((int)idx[s], c, i, j);
    }
    nnd_augment(&ds, idx, split, out, 7, 3);
    nnd_augment(&ds, idx + split, AUG_N - split, out + split * AUG_PER, 7, 3);
}

static void test_augment(void **state)
{
    (void)state;
    static float a[AUG_N * AUG_PER], b[AUG_N * AUG_PER];
    NndAugment flip = {1, 0, 0}, crop = {0, 1, 0}, noise = {0, 0, 0.5}, all = {1, 1, 0.1};
    aug_run(&flip, a, AUG_N);
    int mirrored = 0;
    for (int s = 0; s < AUG_N; s++) {
        int src = AUG_N - 1 - s, same = 1, mirror = 1;
        for (int c = 0; c < 2; c++)
            for (int i = 0; i < AUG_H; i++)
                for (int j = 0; j < AUG_W; j++) {
                    float v = a[s * AUG_PER + (c * AUG_H + i) * AUG_W + j];
                    same &= v == aug_src(src, c, i, j);
                    mirror &= v == aug_src(src, c, i, AUG_W - 1 - j);
                }
        assert_true(same || mirror);
        mirrored += mirror;
    }
    assert_in_range(mirrored, AUG_N / 2 - 40, AUG_N / 2 + 40);
    aug_run(&crop, a, AUG_N);
    int shifts[9] = {0};
    for (int s = 0; s < AUG_N; s++) {
        int src = AUG_N - 1 - s, found = -1;
        for (int dy = -1; dy <= 1 && found < 0; dy++)
            for (int dx = -1; dx <= 1 && found < 0; dx++) {
                int ok = 1;
                for (int c = 0; c < 2; c++)
                    for (int i = 0; i < AUG_H; i++)
                        for (int j = 0; j < AUG_W; j++) {
                            int si = i + dy, sj = j + dx;
                            float want = si >= 0 && si < AUG_H && sj >= 0 && sj < AUG_W
                                             ? aug_src(src, c, si, sj)
                                             : 0;
                            ok &= a[s * AUG_PER + (c * AUG_H + i) * AUG_W + j] == want;
                        }
                if (ok)
                    found = (dy + 1) * 3 + dx + 1;
            }
        assert_true(found >= 0);
        shifts[found]++;
    }
    for (int k = 0; k < 9; k++)
        assert_true(shifts[k] > 5); /* every shift happens */
    aug_run(&noise, a, AUG_N);
    double sum = 0, sq = 0;
    for (int s = 0; s < AUG_N; s++)
        for (int k = 0; k < AUG_PER; k++) {
            int c = k / (AUG_H * AUG_W), i = k / AUG_W % AUG_H, j = k % AUG_W;
            double d = a[s * AUG_PER + k] - aug_src(AUG_N - 1 - s, c, i, j);
            sum += d;
            sq += d * d;
        }
    double n = AUG_N * AUG_PER, mean = sum / n, sd = sqrt(sq / n - mean * mean);
    assert_true(fabs(mean) < 0.05);
    assert_true(fabs(sd - 0.5) < 0.05);
    aug_run(&all, a, AUG_N);
    aug_run(&all, b, 77);
    assert_memory_equal(a, b, sizeof a);
}

static void test_allocation_failures(void **state)
{
    long n;
    for (n = 1; n < 1000; n++) {
        Fixture *f = fixture_new(10, 7, 4, 2, 0, n % 2);
        fixture_eval(f, 1, 2, 0); /* after steps 1, 3, 5 */
        fixture_eval(f, 0, 1, 1);
        char *text = NULL;
        size_t len = 0;
        f->t.progress = open_memstream(&text, &len);
        TestAlloc ta;
        test_alloc_install(&ta, n);
        NndTrainResult res;
        NndErr err = {""};
        int rc = nnd_train(&f->t, &res, &err);
        long live = ta.live, calls = ta.calls;
        test_alloc_remove(&ta);
        fclose(f->t.progress);
        free(text);
        assert_int_equal(live, 0);
        if (rc == 0) {
            assert_true(calls < n);
            assert_int_equal(res.steps, 6);
            fixture_free(f);
            break;
        }
        assert_int_equal(rc, -1);
        if (!strstr(err.msg, "out of memory"))
            fail_msg("allocation %ld failed: '%s'", n, err.msg);
        if (n <= 4)
            assert_int_equal(f->log.calls, 0); /* the batches and outputs come first */
        fixture_free(f);
    }
    /* the batches (3), the step outputs (1), then 3 per evaluation: 3 + 2 at
     * epoch ends */
    assert_int_equal(n - 1, 4 + 3 * (3 + 2));
    print_message("%ld allocations, each failed once\n", n - 1);

    /* nnd_train_evaluate alone */
    for (n = 1; n < 100; n++) {
        Fixture *f = fixture_new(3, 7, 4, 1, 0, 0);
        fixture_eval(f, 1, 1, 0);
        TestAlloc ta;
        test_alloc_install(&ta, n);
        double v[3];
        NndErr err = {""};
        int rc = nnd_train_evaluate(&f->t, 0, v, &err);
        long live = ta.live;
        test_alloc_remove(&ta);
        assert_int_equal(live, 0);
        fixture_free(f);
        if (rc == 0)
            break;
        assert_int_equal(rc, -1);
        assert_non_null(strstr(err.msg, "out of memory"));
    }
    assert_int_equal(n - 1, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_augment),
        cmocka_unit_test(test_total_steps),
        cmocka_unit_test(test_batches_and_epochs),
        cmocka_unit_test(test_batches_gathered_ahead),
        cmocka_unit_test(test_zero_steps),
        cmocka_unit_test(test_shuffle),
        cmocka_unit_test(test_loss_average),
        cmocka_unit_test(test_nonfinite),
        cmocka_unit_test(test_step_status),
        cmocka_unit_test(test_empty_data),
        cmocka_unit_test(test_eval_schedule),
        cmocka_unit_test(test_evaluate_average),
        cmocka_unit_test(test_eval_status),
        cmocka_unit_test(test_progress_plain),
        cmocka_unit_test(test_progress_interactive),
        cmocka_unit_test(test_progress_silent),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
