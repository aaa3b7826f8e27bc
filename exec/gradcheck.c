#include "gradcheck.h"

#include <math.h>
#include <stdlib.h>

#include "interp.h"
#include "model.h"
#include "train.h"

typedef struct IModel {
    ITensor *params, *states;
} IModel;

static bool run_interp(Program *p, IModel *m, const ITensor *in, int64_t b, const double *h,
                       const NodeId *roots, int n, ITensor *out, char *err, size_t errlen)
{
    int64_t syms[1] = {b};
    InterpBindings bind = {.params = m->params,
                           .nparams = p->params.n,
                           .states = m->states,
                           .nstates = p->states.n,
                           .inputs = (ITensor *)in,
                           .ninputs = 2,
                           .hypers = h,
                           .nhypers = p->hypers.n,
                           .syms = syms,
                           .nsyms = 1,
                           .seed = p->seed};
    return interp_run(&p->g, roots, n, &bind, out, err, errlen);
}

int gradcheck_run(Program *p, const GradcheckOptions *o, FILE *out)
{
    Model model;
    char err[512] = "";
    if (!model_init(p, &model, err, sizeof err)) {
        fprintf(stderr, "nnd: cannot initialize the parameters: %s\n", err);
        return NND_EXIT_ERROR;
    }
    IModel m = {xcalloc((size_t)(p->params.n ? p->params.n : 1), sizeof(ITensor)),
                xcalloc((size_t)(p->states.n ? p->states.n : 1), sizeof(ITensor))};
    for (int i = 0; i < p->params.n; i++)
        m.params[i] = itensor_from_buffer(&p->g, p->params.v[i].node, model.params[i].data, 1);
    for (int i = 0; i < p->states.n; i++)
        m.states[i] = itensor_from_buffer(&p->g, p->states.v[i].node, model.states[i].data, 1);
    DataSet *ds = &p->data.v[p->train_data];
    int64_t b = NND_MIN(o->batch, ds->n);
    uint32_t *perm = xmalloc(sizeof(uint32_t) * (size_t)ds->n);
    nnd_random_permutation(perm, (uint32_t)ds->n, p->seed, 0x67c4ull);
    char *bx, *by;
    dataset_gather(ds, perm, b, &bx, &by);
    ITensor in[2] = {itensor_from_buffer(&p->g, p->x, bx, b),
                     itensor_from_buffer(&p->g, p->y, by, b)};
    double *h = program_hyper_values(p);
    h[p->hyper_t] = 1;
    if (p->hyper_accum >= 0)
        h[p->hyper_accum] = (double)b; /* the gradient sums are zero: the rules see g */
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
    if (!run_interp(p, &m, in, b, h, roots.v, roots.n, ad, err, sizeof err)) {
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
            double saved = w->v[i];
            ITensor lo;
            w->v[i] = saved + o->eps;
            bool ok = run_interp(p, &m, in, b, h, &p->loss, 1, &lo, err, sizeof err);
            double lp = ok ? lo.v[0] : NAN;
            itensor_free(&lo);
            w->v[i] = saved - o->eps;
            ok = ok && run_interp(p, &m, in, b, h, &p->loss, 1, &lo, err, sizeof err);
            double lm = ok ? lo.v[0] : NAN;
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
            /* a vjp block may be meant to differ from the derivative */
            if (p->custom_vjps)
                fprintf(out, "note: the gradient goes through a fn with its own vjp block; a "
                             "block that is meant to differ from the true derivative (a "
                             "straight-through estimator, gradient reversal) fails here by "
                             "design\n");
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
    for (int i = 0; i < p->params.n; i++)
        itensor_free(&m.params[i]);
    for (int i = 0; i < p->states.n; i++)
        itensor_free(&m.states[i]);
    free(m.params);
    free(m.states);
    itensor_free(&in[0]);
    itensor_free(&in[1]);
    free(bx);
    free(by);
    free(h);
    free(perm);
    model_free(&model);
    return rc;
}
