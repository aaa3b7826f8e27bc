#include "model.h"

#include <stdlib.h>
#include <string.h>

#include "interp.h"

static void model_alloc(Model *m, int np, int ns)
{
    memset(m, 0, sizeof *m);
    m->nparams = np;
    m->nstates = ns;
    m->params = xcalloc((size_t)(np ? np : 1), sizeof(NndTensor));
    m->states = xcalloc((size_t)(ns ? ns : 1), sizeof(NndTensor));
    m->param_ptrs = xcalloc((size_t)(np ? np : 1), sizeof(void *));
    m->state_ptrs = xcalloc((size_t)(ns ? ns : 1), sizeof(void *));
}

static void model_pointers(Model *m)
{
    for (int i = 0; i < m->nparams; i++)
        m->param_ptrs[i] = m->params[i].data;
    for (int i = 0; i < m->nstates; i++)
        m->state_ptrs[i] = m->states[i].data;
}

/* A tensor loaded by `from` over an initial value of the same shape. */
static void overwrite(ITensor *dst, const NndTensor *src)
{
    if (!src->data)
        return;
    for (int64_t k = 0; k < dst->n; k++)
        dst->v[k] = src->dtype == NND_F64 ? ((const double *)src->data)[k]
                                          : (double)((const float *)src->data)[k];
}

bool model_init(Program *p, Model *m, char *err, size_t errlen)
{
    model_alloc(m, p->params.n, p->states.n);
    double *h = program_hyper_values(p);
    ITensor *pv = xcalloc((size_t)(p->params.n ? p->params.n : 1), sizeof(ITensor));
    ITensor *sv = xcalloc((size_t)(p->states.n ? p->states.n : 1), sizeof(ITensor));
    NodeVec roots = {0};
    for (int i = 0; i < p->params.n; i++)
        vec_push(&roots, p->params.v[i].init);
    InterpBindings b = {.hypers = h, .nhypers = p->hypers.n, .seed = p->seed};
    bool ok = roots.n == 0 || interp_run(&p->g, roots.v, roots.n, &b, pv, err, errlen);
    /* loaded parameters, before the optimizer states whose start may read them */
    for (int i = 0; ok && i < p->params.n; i++)
        overwrite(&pv[i], &p->params.v[i].loaded);
    roots.n = 0;
    for (int i = 0; ok && i < p->states.n; i++)
        vec_push(&roots, p->states.v[i].init);
    b.params = pv;
    b.nparams = p->params.n;
    if (ok && roots.n)
        ok = interp_run(&p->g, roots.v, roots.n, &b, sv, err, errlen);
    for (int i = 0; ok && i < p->states.n; i++)
        overwrite(&sv[i], &p->states.v[i].loaded);
    NndErr e;
    for (int i = 0; ok && i < p->params.n; i++)
        ok = itensor_to_tensor(&pv[i], &m->params[i], &e);
    for (int i = 0; ok && i < p->states.n; i++)
        ok = itensor_to_tensor(&sv[i], &m->states[i], &e);
    if (!ok && !*err)
        snprintf(err, errlen, "%s", e.msg);
    for (int i = 0; i < p->params.n; i++)
        itensor_free(&pv[i]);
    for (int i = 0; i < p->states.n; i++)
        itensor_free(&sv[i]);
    free(pv);
    free(sv);
    vec_free(&roots);
    free(h);
    model_pointers(m);
    if (!ok)
        model_free(m);
    return ok;
}

static bool tensor_copy(const NndTensor *a, NndTensor *b, NndErr *e)
{
    if (nnd_tensor_alloc(b, a->dtype, a->rank, a->shape, e) != 0)
        return false;
    memcpy(b->data, a->data, nnd_dtype_size(a->dtype) * (size_t)nnd_tensor_numel(a));
    return true;
}

bool model_copy(const Model *from, Model *to, char *err, size_t errlen)
{
    model_alloc(to, from->nparams, from->nstates);
    NndErr e;
    bool ok = true;
    for (int i = 0; ok && i < from->nparams; i++)
        ok = tensor_copy(&from->params[i], &to->params[i], &e);
    for (int i = 0; ok && i < from->nstates; i++)
        ok = tensor_copy(&from->states[i], &to->states[i], &e);
    model_pointers(to);
    if (!ok) {
        snprintf(err, errlen, "%s", e.msg);
        model_free(to);
    }
    return ok;
}

static void tensor_values(const NndTensor *a, NndTensor *b)
{
    memcpy(b->data, a->data, nnd_dtype_size(a->dtype) * (size_t)nnd_tensor_numel(a));
}

void model_copy_values(const Model *from, Model *to)
{
    for (int i = 0; i < from->nparams; i++)
        tensor_values(&from->params[i], &to->params[i]);
    for (int i = 0; i < from->nstates; i++)
        tensor_values(&from->states[i], &to->states[i]);
}

void model_free(Model *m)
{
    for (int i = 0; m->params && i < m->nparams; i++)
        nnd_tensor_free(&m->params[i]);
    for (int i = 0; m->states && i < m->nstates; i++)
        nnd_tensor_free(&m->states[i]);
    free(m->params);
    free(m->states);
    free(m->param_ptrs);
    free(m->state_ptrs);
    memset(m, 0, sizeof *m);
}

bool model_save(const Program *p, const Model *m, const char *path, int64_t steps, char *err,
                size_t errlen)
{
    /* the parameters, then the layers' own state (batch_norm's running statistics):
     * what the model needs to run; optimizer state is not part of a model */
    int n = p->params.n + p->states.n;
    NndNamedTensor *named = xcalloc((size_t)(n ? n : 1), sizeof(NndNamedTensor));
    int count = 0;
    for (int i = 0; i < p->params.n; i++) /* with `ema`, the average is the model */
        named[count++] = (NndNamedTensor){
            p->params.v[i].name,
            p->params.v[i].ema_state >= 0 ? &m->states[p->params.v[i].ema_state] : &m->params[i]};
    for (int i = 0; i < p->states.n; i++)
        if (p->states.v[i].param < 0)
            named[count++] = (NndNamedTensor){p->states.v[i].name, &m->states[i]};
    char steps_s[32];
    snprintf(steps_s, sizeof steps_s, "%lld", (long long)steps);
    NndStrPair meta[] = {{"format", "nnd"}, {"steps", steps_s}};
    NndErr e;
    bool ok = nnd_safetensors_write(path, named, count, meta, 2, &e) == 0;
    if (!ok)
        snprintf(err, errlen, "%s", e.msg);
    free(named);
    return ok;
}

/* The optimizer states not in keep[] (NULL: all) from their initializers, which may
 * read the parameters' current values. */
static bool restart_states(Program *p, Model *m, const bool *keep, char *err, size_t errlen)
{
    NodeVec roots = {0};
    IntVec which = {0};
    for (int i = 0; i < p->states.n; i++)
        if (p->states.v[i].param >= 0 && !(keep && keep[i])) {
            vec_push(&roots, p->states.v[i].init);
            vec_push(&which, i);
        }
    bool ok = true;
    if (roots.n) {
        double *h = program_hyper_values(p);
        ITensor *pv = xcalloc((size_t)(p->params.n ? p->params.n : 1), sizeof(ITensor));
        for (int i = 0; i < p->params.n; i++)
            pv[i] = itensor_from_buffer(&p->g, p->params.v[i].node, m->params[i].data, 1);
        ITensor *sv = xcalloc((size_t)roots.n, sizeof(ITensor));
        InterpBindings b = {.params = pv,
                            .nparams = p->params.n,
                            .hypers = h,
                            .nhypers = p->hypers.n,
                            .seed = p->seed};
        ok = interp_run(&p->g, roots.v, roots.n, &b, sv, err, errlen);
        for (int k = 0; ok && k < roots.n; k++)
            itensor_store(&sv[k], m->states[which.v[k]].data);
        for (int k = 0; k < roots.n; k++)
            itensor_free(&sv[k]);
        for (int i = 0; i < p->params.n; i++)
            itensor_free(&pv[i]);
        free(sv);
        free(pv);
        free(h);
    }
    vec_free(&roots);
    vec_free(&which);
    return ok;
}

bool model_restart_optimizer(Program *p, Model *m, char *err, size_t errlen)
{
    return restart_states(p, m, NULL, err, errlen);
}

static bool program_has_tensor(const Program *p, const char *name)
{
    for (int i = 0; i < p->params.n; i++)
        if (strcmp(p->params.v[i].name, name) == 0)
            return true;
    for (int i = 0; i < p->states.n; i++)
        if (strcmp(p->states.v[i].name, name) == 0)
            return true;
    return false;
}

/* NAME.grad_sum for a parameter NAME of p: a gradient sum, which an older nnd wrote
 * into checkpoints (zero there, as at every step boundary; none are loaded). */
static bool is_grad_sum_of(const Program *p, const char *name)
{
    size_t len = strlen(name);
    if (len <= 9 || strcmp(name + len - 9, ".grad_sum") != 0)
        return false;
    for (int i = 0; i < p->params.n; i++)
        if (strlen(p->params.v[i].name) == len - 9 &&
            strncmp(p->params.v[i].name, name, len - 9) == 0)
            return true;
    return false;
}

void model_warn_unused(const Program *p, const NndSafetensors *st, FILE *warn)
{
    enum { SHOWN = 3 };
    if (!warn)
        return;
    StrBuf names = {0};
    int count = 0;
    for (int t = 0; t < st->n_tensors; t++)
        /* a checkpoint's early_stop/NAME: early stopping's best model, no tensor of
         * this one (exec/checkpoint.h) */
        if (!program_has_tensor(p, st->tensors[t].name) &&
            !is_grad_sum_of(p, st->tensors[t].name) &&
            strncmp(st->tensors[t].name, "early_stop/", 11) != 0 && count++ < SHOWN)
            sb_printf(&names, "%s'%s'", count > 1 ? ", " : "", st->tensors[t].name);
    if (count > SHOWN)
        sb_printf(&names, " and %d more", count - SHOWN);
    if (count)
        fprintf(warn, "warning: %s: %d tensor%s the model does not have, not loaded: %s\n",
                st->path, count, count == 1 ? "" : "s", names.s);
    sb_free(&names);
}

bool model_load(Program *p, Model *m, const char *path, int *nopt, char *err, size_t errlen)
{
    return model_load_noting(p, m, path, NULL, nopt, err, errlen);
}

bool model_load_noting(Program *p, Model *m, const char *path, FILE *warn, int *nopt, char *err,
                       size_t errlen)
{
    NndSafetensors st;
    NndErr e;
    if (nnd_safetensors_open(&st, path, &e) != 0) {
        snprintf(err, errlen, "%s", e.msg);
        return false;
    }
    bool ok = true;
    bool *keep = xcalloc((size_t)(p->states.n ? p->states.n : 1), 1);
    *nopt = 0;
    for (int k = 0; ok && k < p->params.n + p->states.n; k++) {
        bool is_p = k < p->params.n;
        int i = is_p ? k : k - p->params.n;
        const char *name = is_p ? p->params.v[i].name : p->states.v[i].name;
        NndTensor *dst = is_p ? &m->params[i] : &m->states[i];
        bool optional = !is_p && p->states.v[i].param >= 0; /* optimizer state */
        if (optional && !nnd_safetensors_find(&st, name))
            continue;
        if (nnd_safetensors_load_into(&st, name, dst, &e) != 0) {
            snprintf(err, errlen, "%s", e.msg);
            ok = false;
        }
        if (ok && optional) {
            keep[i] = true;
            ++*nopt;
        }
    }
    if (ok)
        model_warn_unused(p, &st, warn);
    nnd_safetensors_close(&st);
    if (ok)
        ok = restart_states(p, m, keep, err, errlen);
    free(keep);
    return ok;
}

void **model_eval_params(const Program *p, const Model *m)
{
    bool ema = false;
    for (int i = 0; i < p->params.n; i++)
        ema |= p->params.v[i].ema_state >= 0;
    if (!ema)
        return NULL;
    void **v = xcalloc((size_t)p->params.n, sizeof(void *));
    for (int i = 0; i < p->params.n; i++) {
        int s = p->params.v[i].ema_state;
        v[i] = s >= 0 ? m->state_ptrs[s] : m->param_ptrs[i];
    }
    return v;
}
