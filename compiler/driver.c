#include "driver.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double *hyper_values(const Program *p)
{
    double *h = xcalloc((size_t)(p->hypers.n ? p->hypers.n : 1), sizeof(double));
    for (int i = 0; i < p->hypers.n; i++)
        h[i] = p->hypers.v[i].value;
    return h;
}

int64_t program_total_steps(const Program *p)
{
    if (p->steps > 0)
        return p->steps;
    int64_t n = p->data.v[p->train_data].n;
    return p->epochs * ((n + p->batch - 1) / p->batch);
}

bool model_init(Program *p, Model *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    double *h = hyper_values(p);
    m->nparams = p->params.n;
    m->nstates = p->states.n;
    m->params = xcalloc((size_t)(m->nparams ? m->nparams : 1), sizeof(ITensor));
    m->states = xcalloc((size_t)(m->nstates ? m->nstates : 1), sizeof(ITensor));
    NodeVec roots = {0};
    for (int i = 0; i < p->params.n; i++)
        vec_push(&roots, p->params.v[i].init);
    InterpBindings b = {.hypers = h, .nhypers = p->hypers.n, .seed = p->seed};
    bool ok = roots.n == 0 || interp_run(&p->g, roots.v, roots.n, &b, m->params, err, errlen);
    roots.n = 0;
    for (int i = 0; ok && i < p->states.n; i++)
        vec_push(&roots, p->states.v[i].init);
    b.params = m->params;
    b.nparams = m->nparams;
    if (ok && roots.n)
        ok = interp_run(&p->g, roots.v, roots.n, &b, m->states, err, errlen);
    vec_free(&roots);
    free(h);
    if (!ok)
        model_free(m);
    return ok;
}

void model_free(Model *m)
{
    for (int i = 0; m->params && i < m->nparams; i++)
        itensor_free(&m->params[i]);
    for (int i = 0; m->states && i < m->nstates; i++)
        itensor_free(&m->states[i]);
    free(m->params);
    free(m->states);
    memset(m, 0, sizeof *m);
}

bool model_save(const Program *p, const Model *m, const char *path, int64_t steps, char *err,
                size_t errlen)
{
    NndTensor *ts = xcalloc((size_t)(p->params.n ? p->params.n : 1), sizeof(NndTensor));
    NndNamedTensor *named = xcalloc((size_t)(p->params.n ? p->params.n : 1), sizeof(NndNamedTensor));
    NndErr e;
    bool ok = true;
    for (int i = 0; ok && i < p->params.n; i++) {
        const ITensor *t = &m->params[i];
        ok = nnd_tensor_alloc(&ts[i], t->dtype, t->rank, t->shape, &e) == 0;
        for (int64_t k = 0; ok && k < t->n; k++) {
            if (t->dtype == NND_F64)
                ((double *)ts[i].data)[k] = t->v[k];
            else
                ((float *)ts[i].data)[k] = (float)t->v[k];
        }
        named[i] = (NndNamedTensor){p->params.v[i].name, &ts[i]};
    }
    char steps_s[32];
    snprintf(steps_s, sizeof steps_s, "%lld", (long long)steps);
    NndStrPair meta[] = {{"format", "nnd"}, {"steps", steps_s}};
    if (ok)
        ok = nnd_safetensors_write(path, named, p->params.n, meta, 2, &e) == 0;
    if (!ok)
        snprintf(err, errlen, "%s", e.msg);
    for (int i = 0; i < p->params.n; i++)
        nnd_tensor_free(&ts[i]);
    free(ts);
    free(named);
    return ok;
}

/* Copies rows idx[0..b) of a data tensor into an interpreter tensor. */
static ITensor gather(const NndTensor *t, const uint32_t *idx, int64_t b, NndDType as)
{
    int64_t shape[NND_MAX_RANK];
    shape[0] = b;
    int64_t row = 1;
    for (int i = 1; i < t->rank; i++) {
        shape[i] = t->shape[i];
        row *= t->shape[i];
    }
    ITensor out = itensor_new(as, t->rank, shape);
    for (int64_t r = 0; r < b; r++) {
        int64_t src = (int64_t)idx[r] * row;
        double *dst = out.v + r * row;
        for (int64_t k = 0; k < row; k++) {
            switch (t->dtype) {
            case NND_F32: dst[k] = ((const float *)t->data)[src + k]; break;
            case NND_F64: dst[k] = ((const double *)t->data)[src + k]; break;
            case NND_I32: dst[k] = ((const int32_t *)t->data)[src + k]; break;
            default: dst[k] = ((const uint8_t *)t->data)[src + k]; break;
            }
        }
    }
    return out;
}

static bool run_batch(Program *p, Model *m, const DataSet *ds, const uint32_t *idx, int64_t b,
                      const double *hypers, const NodeId *roots, int nroots, ITensor *out,
                      char *err, size_t errlen)
{
    ITensor in[2];
    in[0] = gather(&ds->x, idx, b, (NndDType)graph_node(&p->g, p->x)->dtype);
    in[1] = gather(&ds->y, idx, b, (NndDType)graph_node(&p->g, p->y)->dtype);
    /* a data set reshaped per sample: the gathered rows take the declared shape */
    Node *xn = graph_node(&p->g, p->x);
    in[0].rank = xn->shape.rank;
    for (int i = 1; i < xn->shape.rank; i++)
        in[0].shape[i] = xn->shape.d[i];
    int64_t syms[1] = {b};
    InterpBindings bind = {m->params, m->nparams, m->states, m->nstates, in, 2, hypers,
                           p->hypers.n, syms, 1, p->seed};
    bool ok = interp_run(&p->g, roots, nroots, &bind, out, err, errlen);
    itensor_free(&in[0]);
    itensor_free(&in[1]);
    return ok;
}

bool driver_evaluate(Program *p, Model *m, int which, double *values, char *err, size_t errlen)
{
    EvalSpec *es = &p->evals.v[which];
    DataSet *ds = &p->data.v[es->data];
    int nm = es->metrics.n;
    NodeId *roots = xcalloc((size_t)(nm ? nm : 1), sizeof(NodeId));
    for (int k = 0; k < nm; k++) {
        roots[k] = es->metrics.v[k].node;
        values[k] = 0;
    }
    ITensor *out = xcalloc((size_t)(nm ? nm : 1), sizeof(ITensor));
    uint32_t *idx = xmalloc(sizeof(uint32_t) * (size_t)p->batch);
    double *h = hyper_values(p);
    bool ok = true;
    for (int64_t start = 0; ok && start < ds->n; start += p->batch) {
        int64_t b = NND_MIN(p->batch, ds->n - start);
        for (int64_t i = 0; i < b; i++)
            idx[i] = (uint32_t)(start + i);
        ok = run_batch(p, m, ds, idx, b, h, roots, nm, out, err, errlen);
        for (int k = 0; ok && k < nm; k++) {
            values[k] += out[k].v[0] * (double)b;
            itensor_free(&out[k]);
        }
    }
    for (int k = 0; k < nm; k++)
        values[k] /= (double)ds->n;
    free(h);
    free(idx);
    free(out);
    free(roots);
    return ok;
}

static void print_evals(Program *p, Model *m, FILE *out, bool *ok)
{
    for (int i = 0; i < p->evals.n && *ok; i++) {
        EvalSpec *es = &p->evals.v[i];
        double vals[64];
        char err[512];
        if (es->metrics.n > 64 || !driver_evaluate(p, m, i, vals, err, sizeof err)) {
            fprintf(stderr, "nnd: evaluation failed: %s\n", err);
            *ok = false;
            return;
        }
        fprintf(out, "  %s:", p->data.v[es->data].name);
        for (int k = 0; k < es->metrics.n; k++)
            fprintf(out, " %s %.4f", es->metrics.v[k].name, vals[k]);
        fputc('\n', out);
    }
}

static bool eval_due(const EvalSpec *es, int64_t step, int64_t epoch, bool epoch_end)
{
    if (es->in_epochs)
        return epoch_end && (epoch + 1) % es->every == 0;
    return (step + 1) % es->every == 0;
}

int driver_train_interp(Program *p, Model *m, FILE *out, TrainResult *res)
{
    DataSet *ds = &p->data.v[p->train_data];
    int64_t total = program_total_steps(p);
    int64_t per_epoch = (ds->n + p->batch - 1) / p->batch;
    p->hypers.v[p->hyper_steps].value = (double)total;
    double *h = hyper_values(p);
    NodeVec roots = {0};
    program_step_roots(p, &roots);
    ITensor *outs = xcalloc((size_t)roots.n, sizeof(ITensor));
    uint32_t *perm = xmalloc(sizeof(uint32_t) * (size_t)ds->n);
    int64_t epochs_total = (total + per_epoch - 1) / per_epoch;
    int64_t report = NND_MAX(1, epochs_total / 10);
    double t0 = now_seconds();
    double epoch_loss = 0, last_loss = NAN;
    int64_t epoch_count = 0;
    int rc = NND_EXIT_OK;
    bool ok = true;
    int64_t values = 0, trainable = 0;
    for (int i = 0; i < p->params.n; i++) {
        int64_t n = shape_static_numel(&graph_node(&p->g, p->params.v[i].node)->shape, NULL);
        values += n;
        trainable += p->params.v[i].frozen ? 0 : n;
    }
    fprintf(out, "training on '%s' (%lld samples): %lld parameter values (%lld trainable), "
                 "batch %lld, %lld steps, reference interpreter, %s\n",
            p->data.v[p->train_data].name, (long long)ds->n, (long long)values,
            (long long)trainable, (long long)p->batch, (long long)total,
            dtype_name(p->float_dtype));
    for (int64_t step = 0; step < total && ok; step++) {
        int64_t epoch = step / per_epoch, in_epoch = step % per_epoch;
        if (in_epoch == 0) {
            if (p->shuffle)
                nnd_random_permutation(perm, (uint32_t)ds->n, p->seed, 0x5eedull << 32 | (uint64_t)epoch);
            else
                for (int64_t i = 0; i < ds->n; i++)
                    perm[i] = (uint32_t)i;
            epoch_loss = 0;
            epoch_count = 0;
        }
        int64_t start = in_epoch * p->batch, b = NND_MIN(p->batch, ds->n - start);
        h[p->hyper_step] = (double)step;
        h[p->hyper_epoch] = (double)epoch;
        h[p->hyper_t] = (double)(step + 1);
        char err[512];
        if (!run_batch(p, m, ds, perm + start, b, h, roots.v, roots.n, outs, err, sizeof err)) {
            fprintf(stderr, "nnd: step %lld failed: %s\n", (long long)step + 1, err);
            rc = NND_EXIT_ERROR;
            break;
        }
        double loss = outs[0].v[0];
        if (!isfinite(loss)) {
            fprintf(stderr,
                    "nnd: the loss is %s at step %lld (epoch %lld); stopping before the update\n",
                    isnan(loss) ? "NaN" : "infinite", (long long)step + 1, (long long)epoch + 1);
            for (int i = 0; i < roots.n; i++)
                itensor_free(&outs[i]);
            res->nonfinite = true;
            rc = NND_EXIT_NONFINITE;
            break;
        }
        for (int i = 0; i < p->updates.n; i++) {
            Update *u = &p->updates.v[i];
            ITensor *dst = u->is_state ? &m->states[u->index] : &m->params[u->index];
            itensor_free(dst);
            *dst = outs[i + 1];
            outs[i + 1] = (ITensor){0};
        }
        itensor_free(&outs[0]);
        epoch_loss += loss * (double)b;
        epoch_count += b;
        last_loss = epoch_loss / (double)epoch_count;
        bool epoch_end = in_epoch == per_epoch - 1 || step == total - 1;
        bool due = false;
        for (int i = 0; i < p->evals.n; i++)
            due |= eval_due(&p->evals.v[i], step, epoch, epoch_end);
        if ((epoch_end && ((epoch + 1) % report == 0 || step == total - 1)) || due) {
            fprintf(out, "epoch %lld/%lld  step %lld  loss %.6f  (%.1f s)\n", (long long)epoch + 1,
                    (long long)epochs_total, (long long)step + 1, last_loss, now_seconds() - t0);
            if (due || step == total - 1)
                print_evals(p, m, out, &ok);
        }
    }
    if (!ok)
        rc = NND_EXIT_ERROR;
    res->final_loss = last_loss;
    res->steps = total;
    vec_free(&roots);
    free(outs);
    free(perm);
    free(h);
    return rc;
}

int driver_gradcheck(Program *p, const GradcheckOptions *o, FILE *out)
{
    Model m;
    char err[512];
    if (!model_init(p, &m, err, sizeof err)) {
        fprintf(stderr, "nnd: cannot initialize the parameters: %s\n", err);
        return NND_EXIT_ERROR;
    }
    DataSet *ds = &p->data.v[p->train_data];
    int64_t b = NND_MIN(o->batch, ds->n);
    uint32_t *perm = xmalloc(sizeof(uint32_t) * (size_t)ds->n);
    nnd_random_permutation(perm, (uint32_t)ds->n, p->seed, 0x67c4ull);
    double *h = hyper_values(p);
    h[p->hyper_t] = 1;
    /* autodiff gradients of every trainable parameter */
    NodeVec roots = {0};
    IntVec which = {0};
    vec_push(&roots, p->loss);
    for (int i = 0; i < p->params.n; i++)
        if (p->grads.v[i]) {
            vec_push(&roots, p->grads.v[i]);
            vec_push(&which, i);
        }
    ITensor *ad = xcalloc((size_t)roots.n, sizeof(ITensor));
    int rc = NND_EXIT_OK;
    if (!run_batch(p, &m, ds, perm, b, h, roots.v, roots.n, ad, err, sizeof err)) {
        fprintf(stderr, "nnd: gradcheck: %s\n", err);
        rc = NND_EXIT_ERROR;
        goto done;
    }
    fprintf(out, "gradcheck: batch of %lld, eps %g, tolerance %g + %g*|fd|, %s\n", (long long)b,
            o->eps, o->atol, o->rtol, dtype_name(p->float_dtype));
    fprintf(out, "  %-28s %8s %12s %12s  %s\n", "parameter", "checked", "max |ad-fd|", "max |fd|",
            "result");
    int failed = 0;
    for (int wi = 0; wi < which.n; wi++) {
        int pi = which.v[wi];
        ITensor *w = &m.params[pi];
        const ITensor *g = &ad[wi + 1];
        int64_t n = w->n;
        int64_t count = o->per_param <= 0 || n <= o->per_param ? n : o->per_param;
        uint32_t *pick = NULL;
        if (count < n) {
            pick = xmalloc(sizeof(uint32_t) * (size_t)n);
            nnd_random_permutation(pick, (uint32_t)n, p->seed, nnd_stream_of(p->params.v[pi].name));
        }
        double worst = 0, worst_fd = 0, max_fd = 0;
        int64_t worst_i = -1;
        bool bad = false;
        for (int64_t k = 0; k < count && rc == NND_EXIT_OK; k++) {
            int64_t i = pick ? pick[k] : k;
            double saved = w->v[i], lp, lm;
            ITensor lo;
            w->v[i] = saved + o->eps;
            bool ok = run_batch(p, &m, ds, perm, b, h, &p->loss, 1, &lo, err, sizeof err);
            lp = ok ? lo.v[0] : NAN;
            itensor_free(&lo);
            w->v[i] = saved - o->eps;
            ok = ok && run_batch(p, &m, ds, perm, b, h, &p->loss, 1, &lo, err, sizeof err);
            lm = ok ? lo.v[0] : NAN;
            itensor_free(&lo);
            w->v[i] = saved;
            if (!ok) {
                fprintf(stderr, "nnd: gradcheck: %s\n", err);
                rc = NND_EXIT_ERROR;
                break;
            }
            double fd = (lp - lm) / (2 * o->eps), diff = fabs(g->v[i] - fd);
            if (fabs(fd) > max_fd)
                max_fd = fabs(fd);
            if (!(diff <= o->atol + o->rtol * fabs(fd)) && !bad) {
                bad = true;
                worst_i = i;
                worst_fd = fd;
            }
            if (diff > worst || isnan(diff))
                worst = diff;
            if (bad && worst_i < 0)
                worst_i = i;
        }
        fprintf(out, "  %-28s %8lld %12.3g %12.3g  %s\n", p->params.v[pi].name, (long long)count,
                worst, max_fd, bad ? "FAIL" : "ok");
        if (bad) {
            failed++;
            fprintf(out, "    element %lld: autodiff %.10g, finite difference %.10g\n",
                    (long long)worst_i, g->v[worst_i], worst_fd);
        }
        free(pick);
    }
    for (int i = 0; i < p->params.n; i++)
        if (!p->grads.v[i])
            fprintf(out, "  %-28s %8s %12s %12s  frozen\n", p->params.v[i].name, "-", "-", "-");
    if (rc == NND_EXIT_OK) {
        if (failed) {
            fprintf(out, "gradcheck FAILED for %d of %d parameters\n", failed, which.n);
            rc = NND_EXIT_ERROR;
        } else {
            fprintf(out, "gradcheck passed: %d parameters\n", which.n);
        }
    }
done:
    for (int i = 0; i < roots.n; i++)
        itensor_free(&ad[i]);
    free(ad);
    vec_free(&roots);
    vec_free(&which);
    free(h);
    free(perm);
    model_free(&m);
    return rc;
}
