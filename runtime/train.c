/* train: the training loop shared by compiled code and the interpreter. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nnd_train.h"

#include "data.h"

#include <stdatomic.h>
#include <stdbool.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static size_t row_bytes(const NndTensor *t)
{
    size_t n = nnd_dtype_size(t->dtype);
    for (int i = 1; i < t->rank; i++)
        n *= (size_t)t->shape[i];
    return n;
}

/* Copies rows idx[0..b) of t into dst. */
static void gather(const NndTensor *t, const uint32_t *idx, int64_t b, char *dst)
{
    size_t rb = row_bytes(t);
    const char *src = t->data;
    for (int64_t i = 0; i < b; i++)
        memcpy(dst + (size_t)i * rb, src + (size_t)idx[i] * rb, rb);
}

int64_t nnd_dataset_count(const NndDataSet *ds)
{
    if (ds->window <= 0)
        return ds->x->shape[0];
    int64_t len = ds->x->shape[0], stride = ds->stride > 0 ? ds->stride : 1;
    return len > ds->window ? (len - ds->window - 1) / stride + 1 : 0;
}

void nnd_dataset_sample_bytes(const NndDataSet *ds, size_t *x, size_t *y)
{
    if (ds->window > 0) {
        *x = *y = (size_t)ds->window * nnd_dtype_size(ds->x->dtype);
        return;
    }
    *x = row_bytes(ds->x);
    *y = row_bytes(ds->y);
}

void nnd_dataset_gather(const NndDataSet *ds, const uint32_t *idx, int64_t b, void *x, void *y)
{
    if (ds->window <= 0) {
        if (ds->x_rows)
            nnd_rows_gather(ds->x_rows, idx, b, x);
        else
            gather(ds->x, idx, b, x);
        gather(ds->y, idx, b, y);
        return;
    }
    size_t es = nnd_dtype_size(ds->x->dtype), rb = (size_t)ds->window * es;
    int64_t stride = ds->stride > 0 ? ds->stride : 1;
    const char *src = ds->x->data;
    for (int64_t i = 0; i < b; i++) {
        const char *at = src + (size_t)(idx[i] * stride) * es;
        memcpy((char *)x + (size_t)i * rb, at, rb);
        memcpy((char *)y + (size_t)i * rb, at + es, rb);
    }
}

/* Asks the cache for the rows of the next batch (they are mostly far apart in a large
 * data set, so each costs a trip to memory), to arrive before they are gathered. */
static void prefetch_rows(const NndDataSet *ds, const uint32_t *idx, int64_t b)
{
    if (ds->window <= 0 && ds->x_rows)
        nnd_rows_prefetch(ds->x_rows, idx, b);
    if (ds->window > 0 || ds->x_rows || !ds->x->data)
        return;
    size_t rb = row_bytes(ds->x);
    const char *src = ds->x->data;
    for (int64_t i = 0; i < b; i++)
        data_prefetch(src + (size_t)idx[i] * rb, rb);
}

typedef struct GatherJob {
    const NndDataSet *ds;
    const uint32_t *idx;
    char *x, *y;
    size_t xb, yb;
    const uint32_t *next; /* the next batch's rows, to ask for */
    int64_t nnext;
} GatherJob;

static void gather_range(void *ctx, int64_t lo, int64_t hi)
{
    const GatherJob *g = ctx;
    nnd_dataset_gather(g->ds, g->idx + lo, hi - lo, g->x + (size_t)lo * g->xb,
                       g->y + (size_t)lo * g->yb);
    /* the same thread gathers the same part of the next batch */
    if (lo < g->nnext)
        prefetch_rows(g->ds, g->next + lo, (hi < g->nnext ? hi : g->nnext) - lo);
}

/* A batch gathered by the pool's threads (rows of the data set are mostly cache and
 * TLB misses; each thread copies a block of rows), and the rows of the next one
 * (next[0..nnext)) asked for by the threads that will gather them. */
static void gather_batch(NndPool *pool, const NndDataSet *ds, const uint32_t *idx, int64_t b,
                         void *x, void *y, const uint32_t *next, int64_t nnext)
{
    GatherJob g = {ds, idx, x, y, 0, 0, next, nnext};
    nnd_dataset_sample_bytes(ds, &g.xb, &g.yb);
    enum { MIN_BYTES_PER_THREAD = 32 << 10 };
    int64_t grain = (int64_t)(MIN_BYTES_PER_THREAD / (g.xb + g.yb + 1)) + 1;
    nnd_parallel_for(pool, gather_range, &g, b, grain);
}

/* One [H, W] plane of a sample, flipped and/or shifted by (dy, dx) with zeros
 * brought in: out[i][j] = in[i + dy][flip ? W - 1 - (j + dx) : j + dx]. */
#define AUGMENT_PLANE(T)                                                                           \
    static void plane_##T(T *p, T *tmp, int64_t h, int64_t w, int flip, int64_t dy, int64_t dx)    \
    {                                                                                              \
        memcpy(tmp, p, sizeof(T) * (size_t)(h * w));                                               \
        for (int64_t i = 0; i < h; i++)                                                            \
            for (int64_t j = 0; j < w; j++) {                                                      \
                int64_t si = i + dy, sj = j + dx;                                                  \
                if (flip)                                                                          \
                    sj = w - 1 - sj;                                                               \
                p[i * w + j] = si >= 0 && si < h && sj >= 0 && sj < w ? tmp[si * w + sj] : 0;      \
            }                                                                                      \
    }
AUGMENT_PLANE(float)
AUGMENT_PLANE(double)

void nnd_augment(const NndDataSet *ds, const uint32_t *idx, int64_t b, void *x, uint64_t seed,
                 int64_t epoch)
{
    const NndAugment *a = ds->augment;
    const NndTensor *t = ds->x;
    if (!a || t->rank < 3)
        return;
    int64_t h = t->shape[t->rank - 2], w = t->shape[t->rank - 1], per = 1;
    for (int i = 1; i < t->rank; i++)
        per *= t->shape[i];
    int64_t planes = per / (h * w);
    int f64 = t->dtype == NND_F64;
    void *tmp = malloc((size_t)(h * w) * (f64 ? sizeof(double) : sizeof(float)));
    if (!tmp)
        return;
    uint64_t stream = 0xa06a3e47ull << 24 ^ (uint64_t)epoch;
    for (int64_t s = 0; s < b; s++) {
        uint64_t id = (uint64_t)idx[s] * 4;
        int flip = a->flip && nnd_random_uniform(seed, stream, id) < 0.5;
        int64_t dy = 0, dx = 0;
        if (a->crop > 0) {
            int64_t span = 2 * a->crop + 1;
            dy = (int64_t)(nnd_random_uniform(seed, stream, id + 1) * (double)span) - a->crop;
            dx = (int64_t)(nnd_random_uniform(seed, stream, id + 2) * (double)span) - a->crop;
            dy = dy > a->crop ? a->crop : dy;
            dx = dx > a->crop ? a->crop : dx;
        }
        for (int64_t c = 0; c < planes && (flip || dy || dx); c++) {
            if (f64)
                plane_double((double *)x + (s * per + c * h * w), tmp, h, w, flip, dy, dx);
            else
                plane_float((float *)x + (s * per + c * h * w), tmp, h, w, flip, dy, dx);
        }
        if (a->noise > 0) {
            uint64_t ns = stream ^ 0x5eull << 56;
            for (int64_t k = 0; k < per; k++) {
                double z = a->noise * nnd_random_normal(
                                          seed, ns, (uint64_t)idx[s] * (uint64_t)per + (uint64_t)k);
                if (f64)
                    ((double *)x)[s * per + k] += z;
                else
                    ((float *)x)[s * per + k] += (float)z;
            }
        }
    }
    free(tmp);
}

int nnd_step_counter_begin(const NndStepCounter *c, int64_t k, int64_t batch, double *hypers,
                           int h_step, int h_t, int h_micro, int h_accum)
{
    if (h_step >= 0)
        hypers[h_step] = (double)c->step;
    if (h_t >= 0)
        hypers[h_t] = (double)c->step + 1;
    if (k > 1 && h_micro >= 0)
        hypers[h_micro] = (double)c->micro;
    if (k > 1 && h_accum >= 0)
        hypers[h_accum] = (double)(c->group_samples + batch);
    return c->micro == k - 1;
}

void nnd_step_counter_end(NndStepCounter *c, int last, int64_t batch)
{
    if (last) {
        c->step++;
        c->micro = c->group_samples = 0;
    } else {
        c->micro++;
        c->group_samples += batch;
    }
}

void nnd_step_status_message(const NndStepArgs *a, const char *what, char *buf, size_t n)
{
    switch (a->status) {
    case 0: snprintf(buf, n, "%s", ""); break;
    case NND_STATUS_LABEL_RANGE:
        snprintf(buf, n, "%s: label %.17g is out of range for the model's %lld classes, 0 to %lld",
                 what, a->bad_value, (long long)a->bad_count, (long long)a->bad_count - 1);
        break;
    case NND_STATUS_INDEX_RANGE:
        snprintf(buf, n, "%s: index %.17g is out of range for a table of %lld rows", what,
                 a->bad_value, (long long)a->bad_count);
        break;
    case NND_STATUS_NONFINITE:
        snprintf(buf, n, "%s: non-finite values (node %%%lld)", what, (long long)a->bad_node);
        break;
    default: snprintf(buf, n, "%s failed (status %d)", what, a->status); break;
    }
}

int64_t nnd_train_samples_per_epoch(int64_t samples, int64_t batch, int drop_last)
{
    return drop_last && samples >= batch ? samples / batch * batch : samples;
}

/* After a data-parallel group: the loss sums and a stop flag summed over the ranks,
 * then the update from the summed gradients (when no rank stopped).  Every rank
 * then sees the group's loss, NaN when some rank's was; -1 when the reduction
 * failed or another rank stopped on bad data. */
static int apply_distributed(const NndTrainer *t, NndStepArgs *a, double *bout, int full,
                             double *loss, int64_t m, NndErr *err)
{
    int bad = a->status || !isfinite(bout[0]);
    double vals[2] = {*loss, bad};
    if (t->reduce(t->reduce_ctx, vals, 2, err))
        return -1;
    *loss = vals[0];
    bout[0] = vals[0] / (double)m;
    if (bad)
        return 0; /* this rank's own report follows */
    if (vals[1] > 0 && isfinite(bout[0]))
        return nnd_err(err, "another rank stopped on bad data (see its message)");
    if (!isfinite(bout[0]))
        return 0;
    full = full && t->step_apply_full;
    *a = (NndStepArgs){t->params,
                       t->states,
                       NULL,
                       NULL,
                       t->hypers,
                       0,
                       t->arena,
                       bout + 1,
                       t->pool,
                       0,
                       full ? t->user_apply_full : t->user_apply,
                       NULL,
                       0,
                       0,
                       0,
                       NULL,
                       NULL,
                       NULL,
                       NULL};
    (full ? t->step_apply_full : t->step_apply)(a);
    return 0;
}

int64_t nnd_train_steps_per_epoch(int64_t samples, int64_t batch, int64_t accumulate, int drop_last)
{
    samples = nnd_train_samples_per_epoch(samples, batch, drop_last);
    int64_t batches = (samples + batch - 1) / batch, k = accumulate > 1 ? accumulate : 1;
    return (batches + k - 1) / k;
}

static int64_t steps_per_epoch(const NndTrainer *t, int64_t n)
{
    return nnd_train_steps_per_epoch(
        n, t->batch, t->accumulate > 1 && t->step_accum ? t->accumulate : 1, t->drop_last);
}

int64_t nnd_train_total_steps(const NndTrainer *t)
{
    if (t->steps > 0)
        return t->steps;
    int64_t n = nnd_dataset_count(&t->data[t->train]);
    return t->epochs * steps_per_epoch(t, n);
}

typedef struct Batch {
    char *x, *y;
    uint32_t *idx;
} Batch;

/* The next batch, gathered into spare buffers by a worker of the pool while the step
 * runs kernels too small to split (NndStepArgs.idle): on two threads the gather took
 * 12-14 us of 784-128-10's 158 us step with both threads on it, and that much more in
 * slow phases of a shared machine (43 us of 220). */
typedef struct NextBatch {
    const NndDataSet *ds;
    char *x, *y; /* the spare buffers (NULL: gathers are not handed to the pool) */
    const uint32_t *idx, *after; /* its rows; the rows of the one after it, to ask for */
    int64_t start, m, nafter, epoch; /* start: its first sample's place in the epoch */
    uint64_t seed;
    size_t xb, yb; /* bytes of a sample's x and y */
    atomic_llong taken; /* rows handed out so far, GATHER_ROWS at a time */
    bool armed; /* the step may hand the gather out */
    bool done; /* x and y hold the batch at start */
} NextBatch;

/* Rows of the next batch a thread takes at a time: the worker that gathers it and,
 * when the step needs the pool again before it is done, the caller too (one worker
 * took 15-16 us for 784-128-10's batch, where the step left it 10-11). */
enum { GATHER_ROWS = 8 };

static void gather_next(void *ctx, int64_t begin, int64_t end)
{
    NextBatch *nb = ctx;
    (void)begin, (void)end;
    for (;;) {
        int64_t lo = atomic_fetch_add(&nb->taken, GATHER_ROWS);
        if (lo >= nb->m)
            return;
        int64_t k = nb->m - lo < GATHER_ROWS ? nb->m - lo : GATHER_ROWS;
        char *x = nb->x + (size_t)lo * nb->xb;
        nnd_dataset_gather(nb->ds, nb->idx + lo, k, x, nb->y + (size_t)lo * nb->yb);
        if (nb->ds->augment)
            nnd_augment(nb->ds, nb->idx + lo, k, x, nb->seed, nb->epoch);
        if (lo < nb->nafter)
            prefetch_rows(nb->ds, nb->after + lo, (lo + k < nb->nafter ? lo + k : nb->nafter) - lo);
    }
}

/* NndStepArgs.idle: hands the next batch's gather to a worker. */
static void idle_gather(NndStepArgs *a)
{
    NextBatch *nb = a->idle_ctx;
    if (!nb->armed)
        return;
    nb->armed = false;
    atomic_store(&nb->taken, 0);
    nnd_pool_post(a->pool, gather_next, nb, 1);
    nb->done = true;
}

/* Room for a batch of ds's samples and the indices of all n of them: a batch larger
 * than the data set is all of it, as a partial last batch is what is left. */
static int batch_alloc(Batch *b, const NndDataSet *ds, int64_t batch, int64_t n, NndErr *err)
{
    size_t xb, yb;
    nnd_dataset_sample_bytes(ds, &xb, &yb);
    int64_t m = batch < n ? batch : n; /* a batch holds at most all the samples */
    b->x = nnd_alloc(xb * (size_t)m + 64);
    b->y = nnd_alloc(yb * (size_t)m + 64);
    b->idx = nnd_alloc(sizeof(uint32_t) * (size_t)(n > 1 ? n : 1));
    if (!b->x || !b->y || !b->idx) {
        nnd_free(b->x);
        nnd_free(b->y);
        nnd_free(b->idx);
        return nnd_err(err, "out of memory for batches of %lld samples", (long long)m);
    }
    return 0;
}

static void batch_free(Batch *b)
{
    nnd_free(b->x);
    nnd_free(b->y);
    nnd_free(b->idx);
}

/* The first of the m samples (their rows in idx) whose labels hold v, or -1. */
static int64_t sample_with_label(const NndTensor *y, const uint32_t *idx, int64_t m, double v)
{
    if (y->shape[0] < 1 || y->dtype == NND_BOOL)
        return -1;
    int64_t per = nnd_tensor_numel(y) / y->shape[0];
    for (int64_t i = 0; i < m; i++)
        for (int64_t k = 0; k < per; k++) {
            int64_t at = (int64_t)idx[i] * per + k;
            if (nnd_tensor_value(y, at) == v)
                return idx[i];
        }
    return -1;
}

/* The message of a step's bad-data status: the value out of range, its limit, and
 * (when the data set's labels hold it) the sample that has it. */
static int status_error(const NndStepArgs *a, NndErr *err, const char *what, const NndDataSet *ds,
                        const uint32_t *idx, int64_t m)
{
    if (a->status == NND_STATUS_LABEL_RANGE || a->status == NND_STATUS_INDEX_RANGE) {
        bool label = a->status == NND_STATUS_LABEL_RANGE;
        int64_t s = ds->window > 0 ? -1 : sample_with_label(ds->y, idx, m, a->bad_value);
        char where[128] = "";
        if (s >= 0)
            snprintf(where, sizeof where, " (sample %lld of '%s' has it)", (long long)s, ds->name);
        if (label)
            return nnd_err(err,
                           "%s on '%s': label %.17g is out of range for the model's %lld "
                           "classes, 0 to %lld%s",
                           what, ds->name, a->bad_value, (long long)a->bad_count,
                           (long long)a->bad_count - 1, where);
        return nnd_err(err,
                       "%s on '%s': index %.17g is out of range for a table of %lld rows "
                       "(take, Embedding)%s",
                       what, ds->name, a->bad_value, (long long)a->bad_count, where);
    }
    return nnd_err(err, "%s on '%s' failed (status %d)", what, ds->name, a->status);
}

int nnd_train_evaluate(const NndTrainer *t, int which, double *values, NndErr *err)
{
    const NndEvalSpec *es = &t->evals[which];
    const NndDataSet *ds = &t->data[es->data];
    int64_t n = nnd_dataset_count(ds);
    Batch b;
    if (batch_alloc(&b, ds, t->batch, n, err))
        return -1;
    double *out = calloc((size_t)es->nmetrics + 1, sizeof(double));
    for (int k = 0; k < es->nmetrics; k++)
        values[k] = 0;
    int rc = 0;
    for (int64_t start = 0; start < n && out; start += t->batch) {
        int64_t m = n - start < t->batch ? n - start : t->batch;
        for (int64_t i = 0; i < m; i++)
            b.idx[i] = (uint32_t)(start + i);
        gather_batch(t->gather_on_caller ? NULL : t->pool, ds, b.idx, m, b.x, b.y, NULL, 0);
        NndStepArgs a = {t->eval_params ? t->eval_params : t->params,
                         t->states,
                         b.x,
                         b.y,
                         t->hypers,
                         m,
                         t->arena,
                         out,
                         t->pool,
                         0,
                         es->user,
                         NULL,
                         0,
                         0,
                         0,
                         NULL,
                         NULL,
                         NULL,
                         NULL};
        es->fn(&a);
        if (a.status) {
            rc = status_error(&a, err, "evaluation", ds, b.idx, m);
            break;
        }
        for (int k = 0; k < es->nmetrics; k++)
            values[k] += out[k] * (double)m;
    }
    if (!out)
        rc = nnd_err(err, "out of memory");
    for (int k = 0; k < es->nmetrics && rc == 0; k++)
        values[k] /= (double)n;
    free(out);
    batch_free(&b);
    return rc;
}

static void format_count(char *buf, size_t size, double v)
{
    if (v >= 1e6)
        snprintf(buf, size, "%.2fM", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, size, "%.1fk", v / 1e3);
    else
        snprintf(buf, size, "%.0f", v);
}

static void format_time(char *buf, size_t size, double s)
{
    if (!isfinite(s) || s < 0)
        s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, size, "%ld:%02ld", t / 60, t % 60);
}

/* The evaluations due at this step, printed and given to the hook: 0, 1 when the
 * hook asks to stop, or -1 with err. */
static int print_evals(const NndTrainer *t, int64_t step, int64_t epoch, int epoch_end, int last,
                       NndErr *err)
{
    int stop = 0;
    for (int i = 0; i < t->nevals; i++) {
        const NndEvalSpec *es = &t->evals[i];
        int due =
            es->in_epochs ? epoch_end && (epoch + 1) % es->every == 0 : (step + 1) % es->every == 0;
        if (!due && !last)
            continue;
        double vals[64];
        if (es->nmetrics > 64)
            return nnd_err(err, "too many metrics");
        if (nnd_train_evaluate(t, i, vals, err))
            return -1;
        if (t->progress) {
            fprintf(t->progress, "  eval %s:", t->data[es->data].name);
            for (int k = 0; k < es->nmetrics; k++)
                fprintf(t->progress, "  %s %.5g", es->names[k], vals[k]);
            fputc('\n', t->progress);
            fflush(t->progress);
        }
        if (t->on_eval) {
            NndTrainPoint at = {step + 1, epoch, 0, 0};
            stop |= t->on_eval(t->hook_ctx, i, &at, vals) != 0;
        }
    }
    return stop;
}

int nnd_train(const NndTrainer *t, NndTrainResult *res, NndErr *err)
{
    memset(res, 0, sizeof *res);
    const NndDataSet *ds = &t->data[t->train];
    int64_t n = nnd_dataset_count(ds);
    if (n < 1 || n > UINT32_MAX)
        return nnd_err(err, "data set '%s' has %lld samples", ds->name, (long long)n);
    int64_t total = nnd_train_total_steps(t);
    int64_t per_epoch = steps_per_epoch(t, n);
    int64_t epochs = (total + per_epoch - 1) / per_epoch;
    t->hypers[t->h_steps] = (double)total;
    Batch b;
    if (batch_alloc(&b, ds, t->batch, n, err))
        return -1;
    FILE *out = t->progress;
    if (out) {
        char acc[64] = "";
        if (t->accumulate > 1 && t->step_accum)
            snprintf(acc, sizeof acc, " x %lld accumulated", (long long)t->accumulate);
        fprintf(
            out, "training on '%s': %lld samples, batch %lld%s, %lld epoch%s (%lld steps)%s%s\n",
            ds->name, (long long)n, (long long)t->batch, acc, (long long)epochs,
            epochs == 1 ? "" : "s", (long long)total, t->what ? ", " : "", t->what ? t->what : "");
        fflush(out);
    }
    /* plain lines: at most about ten over the run, and one every 10 s in long epochs */
    int64_t report_epochs = epochs > 10 ? epochs / 10 : 1;
    double loss_sum = 0, t_run = 0, t_line = now(), t_epoch = now();
    int64_t loss_n = 0, samples = 0;
    int nout = t->nout > 1 ? t->nout : 1;
    double *bout = nnd_alloc((size_t)nout * sizeof(double));
    if (!bout) {
        batch_free(&b);
        return nnd_err(err, "out of memory");
    }
    memset(bout, 0, (size_t)nout * sizeof(double));
    /* one batch a step on a pool that gathers: the next one can be gathered while
     * the step runs (NextBatch) */
    NextBatch nb = {.ds = ds, .seed = t->seed};
    if (nnd_pool_threads(t->pool) > 1 && !t->gather_on_caller && !t->step_apply &&
        !(t->accumulate > 1 && t->step_accum)) {
        nnd_dataset_sample_bytes(ds, &nb.xb, &nb.yb);
        int64_t m = t->batch < n ? t->batch : n; /* as batch_alloc */
        nb.x = nnd_alloc(nb.xb * (size_t)m + 64);
        nb.y = nnd_alloc(nb.yb * (size_t)m + 64);
        if (!nb.x || !nb.y) { /* then gathered at each step, as without a pool */
            nnd_free(nb.x);
            nnd_free(nb.y);
            nb.x = nb.y = NULL;
        }
    }
    int rc = 0;
    int64_t step = t->start.step > 0 ? t->start.step : 0;
    for (; step < total; step++) {
        int64_t epoch = step / per_epoch, in_epoch = step % per_epoch;
        if (in_epoch == 0 || step == t->start.step) {
            /* the epoch's order is a function of (seed, epoch): a resumed run draws
             * the same one and continues where the checkpoint was */
            if (t->shuffle)
                nnd_random_permutation(b.idx, (uint32_t)n, t->seed,
                                       0x5eedull << 32 | (uint64_t)epoch);
            else
                for (int64_t i = 0; i < n; i++)
                    b.idx[i] = (uint32_t)i;
            loss_sum = in_epoch ? t->start.loss_sum : 0;
            loss_n = in_epoch ? t->start.loss_n : 0;
            t_epoch = now();
        }
        /* one update: a batch, or with accumulate = k the group of k batches whose
         * gradients the last one's update rules see, averaged over its samples */
        int64_t k = t->accumulate > 1 && t->step_accum ? t->accumulate : 1;
        int64_t first = in_epoch * k * t->batch;
        int64_t used = nnd_train_samples_per_epoch(n, t->batch, t->drop_last);
        int64_t group_end = used - first < k * t->batch ? used : first + k * t->batch;
        int64_t m = group_end - first, micro = (m + t->batch - 1) / t->batch;
        double t0 = now();
        t->hypers[t->h_step] = (double)step;
        t->hypers[t->h_epoch] = (double)epoch;
        t->hypers[t->h_t] = (double)(step + 1);
        int dist = t->step_apply != NULL;
        if (k > 1 || dist)
            t->hypers[t->h_accum] = (double)m;
        int last_in_epoch = in_epoch == per_epoch - 1 || step == total - 1;
        int full = t->step_full && t->full_every > 0 &&
                   (t->full_in_epochs ? last_in_epoch && (epoch + 1) % t->full_every == 0
                                      : step == 0 || (step + 1) % t->full_every == 0);
        double group_loss = 0;
        NndStepArgs a = {0};
        for (int64_t j = 0; j < micro; j++) {
            int64_t start = first + j * t->batch;
            int64_t mj = group_end - start < t->batch ? group_end - start : t->batch;
            if (dist) { /* this rank's part of the micro-batch */
                int64_t lo = mj * t->rank / t->ranks, hi = mj * (t->rank + 1) / t->ranks;
                start += lo;
                mj = hi - lo;
            }
            if (k > 1 || dist)
                t->hypers[t->h_micro] = (double)j;
            if (mj == 0)
                continue;
            int64_t next = start + mj, after = next + mj < n ? next + mj : n;
            /* the next batch's rows: where one thread gathers, asked for when this
             * step returns; asked for a whole step earlier (at this gather), many had
             * left the cache again by the time they were gathered (784-128-10 on one
             * thread, the same binary both ways, alternating: asking and gathering
             * 11.6 us a step, median of 17 runs, against 18.7, of 6; either way the
             * runs fall in a fast and a slow group, 10-12 and 17-21 us against 15 and
             * 22).  Where the pool gathers, at the gather: a second call on the pool
             * for the asking cost more than it gave (each thread's half of the gather
             * took 15-17 us either way on two cores) */
            NndPool *gp = t->gather_on_caller ? NULL : t->pool;
            bool split = nnd_pool_threads(gp) > 1;
            int64_t nnext = next < after ? after - next : 0;
            if (nb.done && nb.start == start && nb.m == mj && nb.epoch == epoch) {
                /* gathered during the last step: the spare buffers take over */
                char *x = b.x, *y = b.y;
                b.x = nb.x, b.y = nb.y;
                nb.x = x, nb.y = y;
            } else {
                gather_batch(gp, ds, b.idx + start, mj, b.x, b.y, b.idx + next, split ? nnext : 0);
                if (ds->augment)
                    nnd_augment(ds, b.idx + start, mj, b.x, t->seed, epoch);
            }
            /* the next step's batch, when it is in this epoch (one batch a step) */
            nb.done = false;
            int64_t nm = used - next < t->batch ? used - next : t->batch;
            nb.armed = nb.x && in_epoch + 1 < per_epoch && step + 1 < total && nm > 0;
            if (nb.armed) {
                nb.idx = b.idx + next, nb.start = next, nb.m = nm, nb.epoch = epoch;
                nb.after = b.idx + next + nm;
                int64_t rest = used - next - nm; /* nm <= used - next */
                nb.nafter = rest < nm ? rest : nm;
            }
            int last = j == micro - 1 && !dist;
            NndStepFn fn = !last ? t->step_accum : full ? t->step_full : t->step;
            void *user = !last ? t->user_accum : full ? t->user_full : t->user;
            /* the group's last micro-batch of a distributed step: each gradient
             * sum's all-reduce starts as soon as the sum is final */
            bool ready = dist && j == micro - 1;
            a = (NndStepArgs){t->params,
                              t->states,
                              b.x,
                              b.y,
                              t->hypers,
                              mj,
                              t->arena,
                              bout,
                              t->pool,
                              0,
                              user,
                              !last  ? NULL
                              : full ? t->profile_full
                                     : t->profile,
                              0,
                              0,
                              0,
                              ready ? t->ready : NULL,
                              ready ? t->reduce_ctx : NULL,
                              nb.armed ? idle_gather : NULL,
                              &nb};
            fn(&a);
            nnd_pool_wait_posted(t->pool);
            if (!split && nnext > 0)
                prefetch_rows(ds, b.idx + next, nnext);
            if (a.status || !isfinite(bout[0]))
                break;
            group_loss += bout[0] * (double)mj;
        }
        if (dist && (rc = apply_distributed(t, &a, bout, full, &group_loss, m, err)))
            break;
        double t1 = now();
        t_run += t1 - t0;
        samples += m;
        if (a.status && a.status != NND_STATUS_NONFINITE) {
            rc = status_error(&a, err, "training", ds, b.idx + first, m);
            break;
        }
        if (a.status || !isfinite(bout[0])) {
            /* training stops on non-finite values: where checked code found them first,
             * or in the loss */
            if (out && t->interactive)
                fputc('\n', out);
            if (a.status) {
                res->nonfinite = 2;
                res->bad_node = a.bad_node;
                res->bad_count = a.bad_count;
                res->bad_value = a.bad_value;
                res->bad_epoch = epoch;
                nnd_err(err, "non-finite values at step %lld (epoch %lld): training stopped",
                        (long long)step + 1, (long long)epoch + 1);
            } else {
                res->nonfinite = 1;
                nnd_err(err, "the loss is %s at step %lld (epoch %lld): training stopped",
                        isnan(bout[0]) ? "NaN" : "infinite", (long long)step + 1,
                        (long long)epoch + 1);
            }
            rc = 1;
            step++;
            break;
        }
        /* the update's loss: its samples' mean (what hooks and logs see) */
        double loss = group_loss / (double)m;
        bout[0] = loss;
        loss_sum += loss * (double)m;
        loss_n += m;
        res->final_loss = loss_sum / (double)loss_n;
        if (t->on_step) {
            /* the hook's time (writing a log) counts as training time */
            NndTrainPoint at = {step + 1, epoch, loss_sum, loss_n};
            int stop = t->on_step(t->hook_ctx, &at, bout, full, t->hypers);
            double t2 = now();
            t_run += t2 - t1;
            t1 = t2;
            if (full) {
                res->full_seconds += t2 - t0;
                res->full_steps++;
            }
            if (stop) {
                step++;
                break;
            }
        }
        int epoch_end = in_epoch == per_epoch - 1 || step == total - 1;
        int eval_due = 0;
        for (int i = 0; i < t->nevals; i++) {
            const NndEvalSpec *es = &t->evals[i];
            eval_due |= es->in_epochs ? epoch_end && (epoch + 1) % es->every == 0
                                      : (step + 1) % es->every == 0;
        }
        if (out && t->interactive && (t1 - t_line > 0.1 || epoch_end)) {
            char rate[32], eta[32];
            format_count(rate, sizeof rate, (double)samples / t_run);
            format_time(eta, sizeof eta, (double)(total - step - 1) * t_run / (double)(step + 1));
            int width = 20, done = (int)((in_epoch + 1) * width / per_epoch);
            char bar[32];
            for (int i = 0; i < width; i++)
                bar[i] = i < done ? '#' : '.';
            bar[width] = 0;
            fprintf(out,
                    "\r\033[Kepoch %lld/%lld [%s] step %lld/%lld  loss %.5g  %s samples/s  ETA %s",
                    (long long)epoch + 1, (long long)epochs, bar, (long long)step + 1,
                    (long long)total, res->final_loss, rate, eta);
            if (epoch_end)
                fprintf(out, "  (%.1f s)\n", t1 - t_epoch);
            fflush(out);
            t_line = t1;
        } else if (out && !t->interactive &&
                   ((epoch_end && ((epoch + 1) % report_epochs == 0 || step == total - 1)) ||
                    eval_due || t1 - t_line > 10)) {
            char rate[32];
            format_count(rate, sizeof rate, (double)samples / t_run);
            fprintf(out, "epoch %lld/%lld  step %lld/%lld  loss %.6g  %s samples/s\n",
                    (long long)epoch + 1, (long long)epochs, (long long)step + 1, (long long)total,
                    res->final_loss, rate);
            fflush(out);
            t_line = t1;
        }
        int ev = t->nevals ? print_evals(t, step, epoch, epoch_end, step == total - 1, err) : 0;
        if (ev) { /* an error, or a hook's stop (early stopping) */
            rc = ev < 0 ? -1 : 0;
            step++;
            break;
        }
        int stop = t->stop && *t->stop && step < total - 1;
        if (t->checkpoint &&
            (stop || (t->ckpt_every > 0 &&
                      (step == total - 1 ||
                       (t->ckpt_in_epochs ? epoch_end && (epoch + 1) % t->ckpt_every == 0
                                          : (step + 1) % t->ckpt_every == 0))))) {
            NndTrainPoint at = {step + 1, epoch, loss_sum, loss_n};
            if (t->checkpoint(t->ckpt_ctx, &at, err)) {
                rc = -1;
                step++;
                break;
            }
            res->checkpoint_step = step + 1;
        }
        if (stop) {
            res->interrupted = 1;
            step++;
            break;
        }
    }
    /* resumed from a checkpoint at the run's end (killed before its save): nothing is
     * left to train; the run ends as it would have, with its last evaluations */
    if (rc == 0 && total > 0 && t->start.step == total) {
        if (t->start.loss_n > 0)
            res->final_loss = t->start.loss_sum / (double)t->start.loss_n;
        if (out)
            fprintf(out, "step %lld/%lld: the run is at its end; nothing is left to train\n",
                    (long long)total, (long long)total);
        if (t->nevals && print_evals(t, total - 1, (total - 1) / per_epoch, 1, 1, err) < 0)
            rc = -1;
    }
    res->steps = step;
    res->seconds = t_run;
    nnd_free(bout);
    batch_free(&b);
    nnd_free(nb.x);
    nnd_free(nb.y);
    return rc;
}
