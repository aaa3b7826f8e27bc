/* aot: sessions of models compiled ahead of time (nnd_aot.h).
 *
 * A session is what lib/nnd.c keeps for a JIT-compiled program, cut down to what
 * the descriptor says: one buffer per parameter and state, the hyper-parameters,
 * the arena and a pool.  Forward-only models read their embedded values in place;
 * a model with a training step gets copies it may update. */
#define _POSIX_C_SOURCE 200809L
#include "nnd_aot.h"
#include "nnd_train.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct NndAot {
    const NndAotModel *m;
    void **params, **states; /* the buffers the code reads and updates */
    void **owned; /* nparams + nstates: what the session allocated (else NULL) */
    double *hypers;
    char *arena;
    double *out; /* max_batch outputs of one sample, as the code writes them */
    int64_t out_per; /* doubles per call: max_batch * per sample, or the step's */
    NndPool *pool;
    NndStepCounter count;
    bool have_weights; /* every parameter has values (embedded or loaded) */
    char msg[1024];
};

static int fail(NndAot *s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static int fail(NndAot *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->msg, sizeof s->msg, fmt, ap);
    va_end(ap);
    return -1;
}

static int ok(NndAot *s)
{
    s->msg[0] = 0;
    return 0;
}

int64_t nnd_aot_sample_size(const NndAotTensor *t)
{
    if (!t)
        return -1;
    int64_t n = 1;
    for (int64_t d = 1; d < t->rank; d++)
        n *= t->shape[d];
    return n;
}

static int64_t numel(const NndAotTensor *t)
{
    int64_t n = 1;
    for (int64_t d = 0; d < t->rank; d++)
        n *= t->shape[d];
    return n;
}

static size_t tensor_bytes(const NndAotTensor *t)
{
    return (size_t)numel(t) * nnd_dtype_size((NndDType)t->dtype);
}

/* The buffer of tensor t: its embedded values in place (read-only code), or a copy
 * (zeros without values) the session owns. */
static bool bind(NndAot *s, const NndAotTensor *t, bool writable, void **buf, void **owned)
{
    if (t->data && !writable) {
        *buf = (void *)(uintptr_t)t->data;
        return true;
    }
    size_t n = tensor_bytes(t);
    *owned = *buf = nnd_alloc(n ? n : 1);
    if (!*buf)
        return false;
    if (t->data)
        memcpy(*buf, t->data, n);
    else
        memset(*buf, 0, n);
    return true;
}

static bool session_buffers(NndAot *s)
{
    const NndAotModel *m = s->m;
    /* a step updates parameters and states; loading weights writes them too, so
     * only a forward-only model with embedded values reads them in place */
    bool writable = m->step != NULL;
    s->have_weights = true;
    for (int64_t i = 0; i < m->nparams; i++)
        if (!m->params[i].data)
            writable = true, s->have_weights = false;
    for (int64_t i = 0; i < m->nparams; i++)
        if (!bind(s, &m->params[i], writable, &s->params[i], &s->owned[i]))
            return false;
    /* optimizer state only for a step */
    for (int64_t i = 0; i < m->nstates; i++) {
        const NndAotTensor *t = &m->states[i];
        if ((!t->optional || m->step) &&
            !bind(s, t, writable, &s->states[i], &s->owned[m->nparams + i]))
            return false;
    }
    return true;
}

/* nnd_aot_new's failure: the message in err, when there is room for one. */
static NndAot *new_fail(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static NndAot *new_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return NULL;
}

NndAot *nnd_aot_new(const NndAotModel *m, int threads, char *err, size_t errlen)
{
    if (!m)
        return new_fail(err, errlen, "nnd_aot_new: the model is NULL");
    if (m->abi != NND_AOT_ABI)
        return new_fail(err, errlen,
                        "nnd_aot_new: the model was built for AOT ABI %lld, this runtime is %d",
                        (long long)m->abi, NND_AOT_ABI);
    if (threads > 256)
        return new_fail(err, errlen,
                        "nnd_aot_new: threads must be 1 to 256 (0 or less: one per CPU the "
                        "process may use), got %d",
                        threads);
    NndAot *s = calloc(1, sizeof *s);
    int64_t nb = m->nparams + m->nstates;
    int64_t per = nnd_aot_sample_size(&m->output);
    if (s) {
        s->m = m;
        s->params = calloc((size_t)m->nparams + 1, sizeof(void *));
        s->states = calloc((size_t)m->nstates + 1, sizeof(void *));
        s->owned = calloc((size_t)nb + 1, sizeof(void *));
        s->hypers = calloc((size_t)m->nhypers + 1, sizeof(double));
        s->out_per = m->max_batch * per > 16 ? m->max_batch * per : 16;
        s->out = calloc((size_t)s->out_per, sizeof(double));
        s->arena = nnd_alloc((size_t)m->arena_bytes + 64);
    }
    if (!s || !s->params || !s->states || !s->owned || !s->hypers || !s->out || !s->arena ||
        !session_buffers(s)) {
        nnd_aot_free(s);
        return new_fail(err, errlen, "nnd_aot_new: out of memory for model '%s'", m->name);
    }
    memcpy(s->hypers, m->hyper_values, sizeof(double) * (size_t)m->nhypers);
    NndErr e;
    if (!(s->pool = nnd_pool_create(threads, &e))) {
        nnd_aot_free(s);
        return new_fail(err, errlen, "nnd_aot_new: %s", e.msg);
    }
    return s;
}

void nnd_aot_free(NndAot *s)
{
    if (!s)
        return;
    if (s->owned)
        for (int64_t i = 0; i < s->m->nparams + s->m->nstates; i++)
            nnd_free(s->owned[i]);
    nnd_pool_destroy(s->pool);
    nnd_free(s->arena);
    free(s->owned);
    free(s->params);
    free(s->states);
    free(s->hypers);
    free(s->out);
    free(s);
}

const char *nnd_aot_errmsg(const NndAot *s) { return s ? s->msg : "the session is NULL"; }

/* ---- weights ---- */

/* Tensor k of the model, counting its parameters then its states, and its buffer
 * in the session (s->owned[k] is the copy the session allocated for it, if any). */
static const NndAotTensor *tensor_at(const NndAotModel *m, int64_t k)
{
    return k < m->nparams ? &m->params[k] : &m->states[k - m->nparams];
}

static void **buffer_at(NndAot *s, int64_t k)
{
    return k < s->m->nparams ? &s->params[k] : &s->states[k - s->m->nparams];
}

/* The buffers that loading may write: the session's own copies. */
static int make_writable(NndAot *s)
{
    const NndAotModel *m = s->m;
    for (int64_t k = 0; k < m->nparams + m->nstates; k++) {
        const NndAotTensor *t = tensor_at(m, k);
        void **buf = buffer_at(s, k);
        if (s->owned[k] || !*buf)
            continue;
        if (!bind(s, t, true, buf, &s->owned[k]))
            return fail(s, "out of memory for a copy of '%s'", t->name);
    }
    return 0;
}

int nnd_aot_load_weights(NndAot *s, const char *path)
{
    if (!s)
        return -1;
    if (!path || !path[0])
        return fail(s, "nnd_aot_load_weights: the path is %s", path ? "empty" : "NULL");
    if (make_writable(s) != 0)
        return -1;
    const NndAotModel *m = s->m;
    NndSafetensors st;
    NndErr e;
    if (nnd_safetensors_open(&st, path, &e) != 0)
        return fail(s, "%s", e.msg);
    int rc = 0;
    for (int64_t k = 0; rc == 0 && k < m->nparams + m->nstates; k++) {
        const NndAotTensor *t = tensor_at(m, k);
        void *buf = *buffer_at(s, k);
        if (!buf || (t->optional && !nnd_safetensors_find(&st, t->name)))
            continue; /* state the built code does not read, or optimizer state */
        NndTensor dst = {.dtype = (NndDType)t->dtype, .rank = (int)t->rank, .data = buf};
        memcpy(dst.shape, t->shape, sizeof dst.shape);
        if (nnd_safetensors_load_into(&st, t->name, &dst, &e) != 0)
            rc = fail(s, "%s", e.msg);
    }
    nnd_safetensors_close(&st);
    if (rc == 0)
        s->have_weights = true;
    return rc ? rc : ok(s);
}

int nnd_aot_save_weights(NndAot *s, const char *path)
{
    if (!s)
        return -1;
    if (!path || !path[0])
        return fail(s, "nnd_aot_save_weights: the path is %s", path ? "empty" : "NULL");
    const NndAotModel *m = s->m;
    NndTensor *ts = calloc((size_t)(m->nparams + m->nstates) + 1, sizeof *ts);
    NndNamedTensor *named = calloc((size_t)(m->nparams + m->nstates) + 1, sizeof *named);
    if (!ts || !named) {
        free(ts);
        free(named);
        return fail(s, "out of memory");
    }
    int n = 0;
    for (int64_t k = 0; k < m->nparams + m->nstates; k++) {
        const NndAotTensor *t = tensor_at(m, k);
        void *buf = *buffer_at(s, k);
        if (!buf || t->optional)
            continue; /* as nnd run saves: no optimizer state */
        ts[n] = (NndTensor){.dtype = (NndDType)t->dtype, .rank = (int)t->rank, .data = buf};
        memcpy(ts[n].shape, t->shape, sizeof ts[n].shape);
        named[n] = (NndNamedTensor){t->name, &ts[n]};
        n++;
    }
    NndErr e;
    NndStrPair meta[] = {{"format", "pt"}, {"nnd_model", m->name}};
    int rc = nnd_safetensors_write(path, named, n, meta, 2, &e);
    free(ts);
    free(named);
    return rc ? fail(s, "%s", e.msg) : ok(s);
}

static int status(NndAot *s, const NndStepArgs *a, const char *what)
{
    if (a->status == 0)
        return 0;
    nnd_step_status_message(a, what, s->msg, sizeof s->msg);
    return -1;
}

static NndStepArgs args(NndAot *s, const void *x, const void *y, int64_t batch)
{
    return (NndStepArgs){.params = s->params,
                         .states = s->states,
                         .x = x,
                         .y = y,
                         .hypers = s->hypers,
                         .batch = batch,
                         .arena = s->arena,
                         .out = s->out,
                         .pool = s->pool};
}

int nnd_aot_forward(NndAot *s, const void *x, int64_t batch, void *out)
{
    if (!s)
        return -1;
    const NndAotModel *m = s->m;
    if (!m->forward)
        return fail(s, "nnd_aot_forward: model '%s' has no forward function", m->name);
    if (!x || !out)
        return fail(s, "nnd_aot_forward: %s is NULL", !x ? "x" : "out");
    if (batch < 0)
        return fail(s, "nnd_aot_forward: batch must be 0 or more, got %lld", (long long)batch);
    if (!s->have_weights)
        return fail(s,
                    "nnd_aot_forward: model '%s' was built without weights: call "
                    "nnd_aot_load_weights first",
                    m->name);
    size_t xs = (size_t)nnd_aot_sample_size(&m->x) * nnd_dtype_size((NndDType)m->x.dtype);
    int64_t per = nnd_aot_sample_size(&m->output);
    size_t os = (size_t)per * nnd_dtype_size((NndDType)m->output.dtype);
    int rc = 0;
    unsigned f = nnd_fp_enter();
    for (int64_t at = 0; at < batch && rc == 0; at += m->max_batch) {
        int64_t b = batch - at < m->max_batch ? batch - at : m->max_batch;
        NndStepArgs a = args(s, (const char *)x + (size_t)at * xs, NULL, b);
        m->forward(&a);
        rc = status(s, &a, "nnd_aot_forward");
        if (rc == 0)
            nnd_store_values(s->out, b * per, (NndDType)m->output.dtype,
                             (char *)out + (size_t)at * os);
    }
    nnd_fp_leave(f);
    return rc ? rc : ok(s);
}

int nnd_aot_step(NndAot *s, const void *x, const void *y, int64_t batch, double *loss)
{
    if (!s)
        return -1;
    const NndAotModel *m = s->m;
    if (!m->step)
        return fail(s, "nnd_aot_step: model '%s' was built without its step (nnd build --train)",
                    m->name);
    if (!s->have_weights)
        return fail(s, "nnd_aot_step: model '%s' has no weights: call nnd_aot_load_weights first",
                    m->name);
    if (!x || !y)
        return fail(s, "nnd_aot_step: %s is NULL", !x ? "x" : "y");
    if (batch < 1 || batch > m->max_batch)
        return fail(s, "nnd_aot_step: batch %lld is not in 1 to %lld", (long long)batch,
                    (long long)m->max_batch);
    int64_t k = m->accumulate > 1 && m->step_accum ? m->accumulate : 1;
    bool last = nnd_step_counter_begin(&s->count, k, batch, s->hypers, (int)m->hyper_step,
                                       (int)m->hyper_t, (int)m->hyper_micro, (int)m->hyper_accum);
    NndStepArgs a = args(s, x, y, batch);
    unsigned f = nnd_fp_enter();
    (last ? m->step : m->step_accum)(&a);
    nnd_fp_leave(f);
    if (status(s, &a, "nnd_aot_step") != 0)
        return -1;
    nnd_step_counter_end(&s->count, last, batch);
    if (loss)
        *loss = s->out[0];
    if (!isfinite(s->out[0]))
        return fail(s, "nnd_aot_step: the loss is %s at step %lld",
                    isnan(s->out[0]) ? "NaN" : "infinite", (long long)s->count.step);
    return ok(s);
}

int64_t nnd_aot_steps(const NndAot *s) { return s ? s->count.step : 0; }

/* The index of hyper-parameter name, or -1 with the failure. */
static int64_t hyper_index(NndAot *s, const char *fn, const char *name)
{
    if (!name)
        return fail(s, "%s: the name is NULL", fn);
    for (int64_t i = 0; i < s->m->nhypers; i++)
        if (strcmp(s->m->hyper_names[i], name) == 0)
            return i;
    return fail(s, "%s: model '%s' has no hyper-parameter '%s'", fn, s->m->name, name);
}

int nnd_aot_get_hyper(NndAot *s, const char *name, double *value)
{
    if (!s)
        return -1;
    int64_t i = hyper_index(s, "nnd_aot_get_hyper", name);
    if (i < 0)
        return -1;
    if (!value)
        return fail(s, "nnd_aot_get_hyper: value is NULL");
    *value = i == s->m->hyper_step ? (double)s->count.step : s->hypers[i];
    return ok(s);
}

int nnd_aot_set_hyper(NndAot *s, const char *name, double value)
{
    if (!s)
        return -1;
    const NndAotModel *m = s->m;
    int64_t i = hyper_index(s, "nnd_aot_set_hyper", name);
    if (i < 0)
        return -1;
    if (i == m->hyper_step || i == m->hyper_t || i == m->hyper_micro || i == m->hyper_accum)
        return fail(s, "nnd_aot_set_hyper: '%s' is kept by nnd_aot_step; it is not set", name);
    if (!isfinite(value))
        return fail(s, "nnd_aot_set_hyper: '%s' must be finite, got %g", name, value);
    /* the counters the caller keeps, as nnd run's settings take them: steps (the
     * run's total) at least 1, epoch (0-based) at least 0 */
    double min = strcmp(name, "steps") == 0 ? 1 : 0;
    if ((min == 1 || strcmp(name, "epoch") == 0) &&
        (value < min || value > 9e15 || value != floor(value)))
        return fail(s,
                    value > 9e15 ? "nnd_aot_set_hyper: %s must be a whole number from %g to 9e15, "
                                   "got %g"
                                 : "nnd_aot_set_hyper: %s must be a whole number >= %g, got %g",
                    name, min, value);
    if (m->hyper_fixed[i] && value != m->hyper_values[i])
        return fail(s,
                    "nnd_aot_set_hyper: '%s' was folded into the code when it was built (it "
                    "shapes the graph): rebuild with --set %s=%.17g",
                    name, name, value);
    s->hypers[i] = value;
    return ok(s);
}
