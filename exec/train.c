#include "train.h"

#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "sample.h"

/* ---- training ---- */

typedef struct Run {
    NndTrainer t;
    NndDataSet *data;
    NndEvalSpec *evals;
    const char ***names;
    double *hypers;
    void **eval_params; /* with `ema`: the averages in place of the parameters */
} Run;

bool train_gathers_on_caller(const Program *p, const NndPool *pool)
{
    const Graph *g = &p->g;
    bool any = false;
    for (int id = 1; id < graph_count(g); id++) {
        const Node *n = &g->nodes.v[id];
        for (int i = 0; i < n->nin; i++) {
            if (n->in[i] != p->x)
                continue;
            if (n->op != OP_MATMUL)
                return false;
            if (nnd_gemm_splits(pool, g->bf16, (NndDType)n->dtype, matmul_work(g, n, p->batch)))
                return false;
            any = true;
        }
    }
    return any;
}

int64_t train_max_batch(const Program *p)
{
    int64_t n = p->data.v[p->train_data].n;
    for (int i = 0; i < p->evals.n; i++)
        n = NND_MAX(n, p->data.v[p->evals.v[i].data].n);
    return n > 0 && n < p->batch ? n : p->batch;
}

void train_print_convs(const Program *p, FILE *out)
{
    const Graph *g = &p->g;
    for (int id = 1; id < graph_count(g); id++) {
        const Node *n = &g->nodes.v[id];
        if (n->op != OP_CONV2D)
            continue;
        const Shape *x = &g->nodes.v[n->in[0]].shape, *w = &g->nodes.v[n->in[1]].shape;
        ConvAttrs a = graph_conv_attrs(g, n);
        int64_t d[9];
        const int64_t *src[9] = {&x->d[0], &x->d[1], &x->d[2],       &x->d[3],      &w->d[0],
                                 &w->d[2], &w->d[3], &n->shape.d[2], &n->shape.d[3]};
        for (int i = 0; i < 9; i++) /* a negative dimension is the batch */
            d[i] = *src[i] < 0 ? p->batch : *src[i];
        NndConvShape s = {d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7],
                          d[8], a.sh, a.sw, a.ph, a.pw, a.dh, a.dw, a.groups};
        fprintf(out, "conv2d [%lld, %lld, %lld, %lld] by [%lld, %lld, %lld, %lld]: %s\n",
                (long long)d[0], (long long)d[1], (long long)d[2], (long long)d[3],
                (long long)w->d[0], (long long)w->d[1], (long long)w->d[2], (long long)w->d[3],
                nnd_conv2d_method(&s, (NndDType)n->dtype, g->bf16));
    }
}

static void run_setup(Run *r, Program *p, Executable *x, Model *m, NndPool *pool)
{
    memset(r, 0, sizeof *r);
    r->data = xcalloc((size_t)p->data.n, sizeof(NndDataSet));
    for (int i = 0; i < p->data.n; i++)
        r->data[i] = dataset_view(&p->data.v[i]);
    int ne = p->evals.n;
    r->evals = xcalloc((size_t)(ne ? ne : 1), sizeof(NndEvalSpec));
    r->names = xcalloc((size_t)(ne ? ne : 1), sizeof(char **));
    for (int i = 0; i < ne; i++) {
        EvalSpec *es = &p->evals.v[i];
        r->names[i] = xcalloc((size_t)(es->metrics.n ? es->metrics.n : 1), sizeof(char *));
        for (int k = 0; k < es->metrics.n; k++)
            r->names[i][k] = es->metrics.v[k].name;
        r->evals[i] = (NndEvalSpec){es->data,    es->every,   es->in_epochs,  es->metrics.n,
                                    r->names[i], x->evals[i], x->eval_user[i]};
    }
    r->hypers = program_hyper_values(p);
    NndTrainer *t = &r->t;
    t->params = m->param_ptrs;
    t->eval_params = r->eval_params = model_eval_params(p, m);
    t->states = m->state_ptrs;
    t->hypers = r->hypers;
    t->h_step = p->hyper_step;
    t->h_epoch = p->hyper_epoch;
    t->h_steps = p->hyper_steps;
    t->h_t = p->hyper_t;
    t->data = r->data;
    t->ndata = p->data.n;
    t->train = p->train_data;
    t->batch = p->batch;
    t->epochs = p->epochs;
    t->steps = p->steps;
    t->seed = p->seed;
    t->shuffle = p->shuffle;
    t->drop_last = p->drop_last;
    t->step = x->step;
    t->user = x->step_user;
    t->nout = 1 + p->step_outputs.n;
    if (x->step_accum) {
        t->step_accum = x->step_accum;
        t->user_accum = x->step_accum_user;
        t->accumulate = p->accumulate;
        t->h_accum = p->hyper_accum;
        t->h_micro = p->hyper_micro;
    }
    if (x->step_full && p->log.dir) {
        t->step_full = x->step_full;
        t->user_full = x->step_full_user;
        t->full_every = p->log.every;
        t->full_in_epochs = p->log.in_epochs;
    }
    t->evals = r->evals;
    t->nevals = ne;
    t->arena = x->arena;
    t->pool = pool;
    t->gather_on_caller = train_gathers_on_caller(p, pool);
    t->hypers[p->hyper_steps] = (double)program_total_steps(p);
}

static void run_free(Run *r, int ne)
{
    for (int i = 0; i < ne; i++)
        free(r->names[i]);
    free(r->names);
    free(r->evals);
    free(r->data);
    free(r->hypers);
    free(r->eval_params);
}

/* `sample every N steps: ...`: after the step hook of the tools (o->on_step), text
 * from the model as it is at that step (the averages with `ema`), in eval mode, on
 * the progress output.  Its time counts as training time. */
typedef struct SampleHook {
    const Program *p;
    Sampler s;
    FILE *out;
    bool interactive;
    int64_t per_epoch;
} SampleHook;

static void sample_step(SampleHook *h, const NndTrainPoint *at, double *hypers)
{
    int64_t every = h->p->sample.every;
    bool due = h->p->sample.in_epochs
                   ? at->step % h->per_epoch == 0 && at->step / h->per_epoch % every == 0
                   : at->step % every == 0;
    if (!due || !h->out)
        return;
    char err[512];
    h->s.hypers = hypers;
    fprintf(h->out, "%ssample at step %lld:\n", h->interactive ? "\r\033[K" : "",
            (long long)at->step);
    if (sampler_generate(&h->s, h->p->sample.prompt, h->p->sample.tokens, h->p->sample.temperature,
                         h->p->sample.top_k, h->p->seed + (uint64_t)at->step, h->out, err,
                         sizeof err) < 0)
        fprintf(h->out, "\n(no sample: %s)", err);
    fputc('\n', h->out);
    fflush(h->out);
}

/* early_stop: after the hooks of the tools, the watched metric's evaluations; a
 * copy of the model at its best, and a stop after `patience` without improvement.
 * A resumed run goes on from the checkpoint's state: the evaluations up to its step
 * (`counted`) are in it. */
typedef struct EarlyHook {
    const Program *p;
    Model *m;
    EarlyState s;
    int64_t last_step, counted;
    EarlyReport r;
} EarlyHook;

static int early_eval(EarlyHook *h, int stop, int which, const NndTrainPoint *at,
                      const double *values)
{
    if (which != h->p->early.eval || at->step <= h->counted)
        return stop;
    EarlyState *s = &h->s;
    double v = values[h->p->early.metric], d = h->p->early.min_delta;
    h->last_step = at->step;
    bool better = !s->have_best || (h->p->early.maximize ? v > s->best + d : v < s->best - d);
    if (better) {
        char err[256];
        if (s->have_model)
            model_copy_values(h->m, &s->model);
        else if (!s->have_best) /* once: a copy that fails keeps the last weights */
            s->have_model = model_copy(h->m, &s->model, err, sizeof err);
        s->have_best = true;
        s->best = v;
        s->best_step = at->step;
        s->best_epoch = at->epoch + 1;
        s->bad = 0;
        return stop;
    }
    if (++s->bad < h->p->early.patience)
        return stop;
    h->r.stopped = true;
    h->r.stop_step = at->step;
    return 1;
}

/* The hooks of the tools (o->on_step, o->on_eval: the logger, nnd compare) with the
 * train block's own after them: sampling and early stopping. */
typedef struct Hooks {
    NndStepHook on_step;
    NndEvalHook on_eval;
    void *ctx;
    SampleHook *sample;
    EarlyHook *early;
} Hooks;

static int hooks_step(void *ctx, const NndTrainPoint *at, const double *out, int full,
                      double *hypers)
{
    Hooks *h = ctx;
    int stop = h->on_step ? h->on_step(h->ctx, at, out, full, hypers) : 0;
    if (h->sample)
        sample_step(h->sample, at, hypers);
    return stop;
}

static int hooks_eval(void *ctx, int which, const NndTrainPoint *at, const double *values)
{
    Hooks *h = ctx;
    int stop = h->on_eval ? h->on_eval(h->ctx, which, at, values) : 0;
    return h->early ? early_eval(h->early, stop, which, at, values) : stop;
}

/* After training: the best weights back in the model, and what happened printed. */
static void early_finish(EarlyHook *h, FILE *out)
{
    const Program *p = h->p;
    EarlyState *s = &h->s;
    h->r.best = s->best;
    h->r.best_step = s->best_step;
    h->r.best_epoch = s->best_epoch;
    if (s->have_best && s->have_model && s->best_step != h->last_step) {
        model_copy_values(&s->model, h->m);
        h->r.restored = true;
    }
    if (out && h->r.stopped)
        fprintf(out,
                "early stop at step %lld: %s has not improved by more than %g for %lld "
                "evaluations\n",
                (long long)h->r.stop_step, p->early.what, p->early.min_delta,
                (long long)p->early.patience);
    if (out && s->have_best)
        fprintf(out, "best %s %.5g at step %lld (epoch %lld)%s\n", p->early.what, s->best,
                (long long)s->best_step, (long long)s->best_epoch,
                h->r.restored ? ": its weights are restored" : ": the last weights");
    early_state_free(s);
}

int train_run(Program *p, Executable *x, Model *m, const TrainOptions *o, NndTrainResult *res,
              char *err, size_t errlen)
{
    Run r;
    run_setup(&r, p, x, m, o->pool);
    r.t.start = o->resume;
    r.t.on_step = o->on_step;
    r.t.on_eval = o->on_eval;
    r.t.hook_ctx = o->hook_ctx;
    SampleHook sh = {p, .out = o->progress, .interactive = o->interactive,
                     .per_epoch = program_steps_per_epoch(p)};
    EarlyHook eh = {.p = p, .m = m};
    Hooks hooks = {o->on_step, o->on_eval, o->hook_ctx, NULL, NULL};
    bool sampling = p->sample.every > 0 && o->progress, early = p->early.eval >= 0;
    if (early && o->early_resume) {
        const EarlyState *from = o->early_resume;
        eh.s = *from;
        eh.s.have_model = false;
        eh.last_step = eh.counted = o->resume.step;
        char msg[256];
        if (from->have_model && !model_copy(&from->model, &eh.s.model, msg, sizeof msg)) {
            snprintf(err, errlen, "early stopping's best model: %s", msg);
            run_free(&r, p->evals.n);
            return NND_EXIT_ERROR;
        }
        eh.s.have_model = from->have_model;
    }
    if (sampling) {
        if (!sampler_init(&sh.s, p, x, r.eval_params ? r.eval_params : m->param_ptrs, m->state_ptrs,
                          r.hypers, o->pool, x->engine == ENGINE_JIT, err, errlen)) {
            early_state_free(&eh.s);
            run_free(&r, p->evals.n);
            return NND_EXIT_ERROR;
        }
        hooks.sample = &sh;
    }
    hooks.early = early ? &eh : NULL;
    if (sampling || early) {
        r.t.on_step = hooks_step;
        r.t.on_eval = hooks_eval;
        r.t.hook_ctx = &hooks;
    }
    if (p->distributed) {
        r.t.step_apply = x->step_apply;
        r.t.user_apply = x->step_apply_user;
        r.t.step_apply_full = x->step_apply_full;
        r.t.user_apply_full = x->step_apply_full_user;
        r.t.rank = o->rank;
        r.t.ranks = o->ranks > 0 ? o->ranks : 1;
        r.t.reduce = o->reduce;
        r.t.ready = o->ready;
        r.t.reduce_ctx = o->reduce_ctx;
    }
    CheckpointTarget ck = {p, m, early ? &eh.s : NULL};
    if (p->ckpt_dir && o->rank == 0) {
        r.t.checkpoint = checkpoint_hook;
        r.t.ckpt_ctx = &ck;
        r.t.ckpt_every = p->ckpt_every;
        r.t.ckpt_in_epochs = p->ckpt_in_epochs;
    }
    r.t.progress = o->progress;
    r.t.interactive = o->interactive;
    r.t.stop = o->stop;
    char what[160];
    if (x->engine == ENGINE_JIT)
        snprintf(what, sizeof what, "compiled, %d thread%s", nnd_pool_threads(o->pool),
                 nnd_pool_threads(o->pool) == 1 ? "" : "s");
    else
        snprintf(what, sizeof what, "reference interpreter");
    if (p->distributed)
        snprintf(what + strlen(what), sizeof what - strlen(what), "%s, %d ranks (MPI)",
                 nnd_pool_threads(o->pool) == 1 ? "" : " each", r.t.ranks);
    r.t.what = what;
    r.t.profile = x->profile;
    r.t.profile_full = x->profile_full;
    NndErr e = {{0}};
    int rc = nnd_train(&r.t, res, &e);
    if (early) {
        early_finish(&eh, o->progress);
        if (o->early)
            *o->early = eh.r;
    }
    if (sampling)
        sampler_free(&sh.s);
    run_free(&r, p->evals.n);
    if (rc != 0)
        snprintf(err, errlen, "%s", e.msg);
    return rc == 0 ? NND_EXIT_OK : rc == 1 ? NND_EXIT_NONFINITE : NND_EXIT_ERROR;
}

bool train_evaluate(Program *p, Executable *x, Model *m, NndPool *pool, int which, double *values,
                    char *err, size_t errlen)
{
    Run r;
    run_setup(&r, p, x, m, pool);
    NndErr e;
    bool ok = nnd_train_evaluate(&r.t, which, values, &e) == 0;
    if (!ok)
        snprintf(err, errlen, "%s", e.msg);
    run_free(&r, p->evals.n);
    return ok;
}

static bool call_fn(Program *p, NndStepFn fn, void *user, Executable *x, Model *m, NndPool *pool,
                    int data, const uint32_t *idx, int64_t b, int64_t step, double *out, char *err,
                    size_t errlen)
{
    char *bx, *by;
    dataset_gather(&p->data.v[data], idx, b, &bx, &by);
    double *h = program_hyper_values(p);
    h[p->hyper_step] = (double)step;
    h[p->hyper_t] = (double)step + 1;
    h[p->hyper_steps] = (double)program_total_steps(p);
    NndStepArgs a = {.params = m->param_ptrs,
                     .states = m->state_ptrs,
                     .x = bx,
                     .y = by,
                     .hypers = h,
                     .batch = b,
                     .arena = x->arena,
                     .out = out,
                     .pool = pool,
                     .user = user};
    fn(&a);
    bool ok = a.status == 0;
    if (!ok)
        snprintf(err, errlen, "the function failed (status %d)", a.status);
    free(h);
    free(bx);
    free(by);
    return ok;
}

bool train_step(Program *p, Executable *x, Model *m, NndPool *pool, const uint32_t *idx, int64_t b,
                int64_t step, double *loss, char *err, size_t errlen)
{
    double *out = xcalloc((size_t)p->step_outputs.n + 2, sizeof(double));
    bool ok = call_fn(p, x->step, x->step_user, x, m, pool, p->train_data, idx, b, step, out, err,
                      errlen);
    *loss = out[0];
    free(out);
    return ok;
}

bool train_forward(Program *p, Executable *x, Model *m, NndPool *pool, int data,
                   const uint32_t *idx, int64_t b, double *out, char *err, size_t errlen)
{
    if (!x->forward) {
        snprintf(err, errlen, "the program has no forward function");
        return false;
    }
    return call_fn(p, x->forward, x->forward_user, x, m, pool, data, idx, b, 0, out, err, errlen);
}
