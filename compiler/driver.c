#define _DEFAULT_SOURCE /* DIR, mkdir */
#include "driver.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static double *hyper_values(const Program *p)
{
    double *h = xcalloc((size_t)(p->hypers.n ? p->hypers.n : 1), sizeof(double));
    for (int i = 0; i < p->hypers.n; i++)
        h[i] = p->hypers.v[i].value;
    return h;
}

int64_t program_steps_per_epoch(const Program *p)
{
    return nnd_train_steps_per_epoch(p->data.v[p->train_data].n, p->batch, p->accumulate);
}

int64_t program_total_steps(const Program *p)
{
    return p->steps > 0 ? p->steps : p->epochs * program_steps_per_epoch(p);
}

/* ---- conversions between runtime buffers and interpreter tensors ---- */

static double buf_get(const void *data, NndDType dt, int64_t i)
{
    switch (dt) {
    case NND_F32: return ((const float *)data)[i];
    case NND_F64: return ((const double *)data)[i];
    case NND_I32: return ((const int32_t *)data)[i];
    default: return ((const uint8_t *)data)[i];
    }
}

static void buf_set(void *data, NndDType dt, int64_t i, double v)
{
    switch (dt) {
    case NND_F32: ((float *)data)[i] = (float)v; break;
    case NND_F64: ((double *)data)[i] = v; break;
    case NND_I32: ((int32_t *)data)[i] = (int32_t)v; break;
    default: ((uint8_t *)data)[i] = v != 0; break;
    }
}

/* An interpreter tensor shaped like node id (B = batch) holding a copy of data. */
static ITensor from_buffer(Graph *g, NodeId id, const void *data, int64_t batch)
{
    Node *n = graph_node(g, id);
    int64_t shape[NND_MAX_RANK];
    for (int i = 0; i < n->shape.rank; i++)
        shape[i] = n->shape.d[i] < 0 ? batch : n->shape.d[i];
    ITensor t = itensor_new((NndDType)n->dtype, n->shape.rank, shape);
    for (int64_t i = 0; i < t.n; i++)
        t.v[i] = buf_get(data, t.dtype, i);
    return t;
}

static bool to_tensor(const ITensor *t, NndTensor *out, NndErr *e)
{
    if (nnd_tensor_alloc(out, t->dtype, t->rank, t->shape, e) != 0)
        return false;
    for (int64_t i = 0; i < t->n; i++)
        buf_set(out->data, t->dtype, i, t->v[i]);
    return true;
}

/* ---- models ---- */

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
    double *h = hyper_values(p);
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
        ok = to_tensor(&pv[i], &m->params[i], &e);
    for (int i = 0; ok && i < p->states.n; i++)
        ok = to_tensor(&sv[i], &m->states[i], &e);
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
        named[count++] = (NndNamedTensor){p->params.v[i].name, p->params.v[i].ema_state >= 0
                                                                   ? &m->states[p->params.v[i].ema_state]
                                                                   : &m->params[i]};
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

/* ---- the interpreter behind the NndStepFn ABI ---- */

typedef enum InterpKind { IK_STEP, IK_OUTPUTS } InterpKind;

typedef struct InterpFn {
    Program *p;
    InterpKind kind;
    NodeVec roots;
    int nout; /* IK_STEP: the scalars before the new values (the loss, step outputs) */
    bool check; /* --check-numerics */
    const Update *ups; /* IK_STEP: where the new values go (Program.updates or accum_updates) */
    int nups;
} InterpFn;

static void interp_entry(NndStepArgs *a)
{
    InterpFn *f = a->user;
    Program *p = f->p;
    Graph *g = &p->g;
    ITensor *params = xcalloc((size_t)(p->params.n ? p->params.n : 1), sizeof(ITensor));
    ITensor *states = xcalloc((size_t)(p->states.n ? p->states.n : 1), sizeof(ITensor));
    for (int i = 0; i < p->params.n; i++)
        params[i] = from_buffer(g, p->params.v[i].node, a->params[i], a->batch);
    for (int i = 0; i < p->states.n; i++)
        states[i] = from_buffer(g, p->states.v[i].node, a->states[i], a->batch);
    ITensor in[2] = {from_buffer(g, p->x, a->x, a->batch), from_buffer(g, p->y, a->y, a->batch)};
    int64_t syms[1] = {a->batch};
    InterpCheck check = {0};
    InterpBindings b = {params, p->params.n, states, p->states.n, in, 2, a->hypers, p->hypers.n,
                        syms, 1, p->seed, f->check ? &check : NULL};
    ITensor *out = xcalloc((size_t)f->roots.n, sizeof(ITensor));
    char err[512];
    if (!interp_run(g, f->roots.v, f->roots.n, &b, out, err, sizeof err)) {
        if (check.node) {
            a->status = NND_STATUS_NONFINITE;
            a->bad_node = check.node;
            a->bad_count = check.count;
            a->bad_value = check.value;
        } else
        a->status = strstr(err, "label") ? NND_STATUS_LABEL_RANGE
                    : strstr(err, "index") ? NND_STATUS_INDEX_RANGE : 3;
    } else if (f->kind == IK_STEP) {
        /* the loss and the step outputs, then the new values */
        int ns = f->nout;
        for (int i = 0; i < ns; i++)
            a->out[i] = out[i].v[0];
        for (int i = 0; i < f->nups; i++) {
            const Update *u = &f->ups[i];
            void *dst = u->is_state ? a->states[u->index] : a->params[u->index];
            for (int64_t k = 0; k < out[i + ns].n; k++)
                buf_set(dst, out[i + ns].dtype, k, out[i + ns].v[k]);
        }
    } else {
        int64_t slot = 0;
        for (int i = 0; i < f->roots.n; i++)
            for (int64_t k = 0; k < out[i].n; k++)
                a->out[slot++] = out[i].v[k];
    }
    for (int i = 0; i < f->roots.n; i++)
        itensor_free(&out[i]);
    for (int i = 0; i < p->params.n; i++)
        itensor_free(&params[i]);
    for (int i = 0; i < p->states.n; i++)
        itensor_free(&states[i]);
    itensor_free(&in[0]);
    itensor_free(&in[1]);
    free(out);
    free(params);
    free(states);
}

static InterpFn *interp_fn(Program *p, InterpKind kind, const NodeId *roots, int n)
{
    InterpFn *f = xcalloc(1, sizeof *f);
    f->p = p;
    f->kind = kind;
    for (int i = 0; i < n; i++)
        vec_push(&f->roots, roots[i]);
    return f;
}

/* A step for the interpreter: roots are the nout scalars, then the values that ups
 * says where to put. */
static InterpFn *interp_step_fn(Program *p, const NodeVec *roots, int nout, bool check, const Update *ups,
                                int nups)
{
    InterpFn *f = interp_fn(p, IK_STEP, roots->v, roots->n);
    f->nout = nout;
    f->check = check;
    f->ups = ups;
    f->nups = nups;
    return f;
}

static void interp_fn_free(void *v)
{
    InterpFn *f = v;
    if (!f)
        return;
    vec_free(&f->roots);
    free(f);
}

/* ---- executables ---- */

static void metric_roots(const Program *p, int i, NodeVec *out)
{
    for (int k = 0; k < p->evals.v[i].metrics.n; k++)
        vec_push(out, p->evals.v[i].metrics.v[k].node);
}

bool executable_build(Executable *x, Program *p, const ExecOptions *o, char *err, size_t errlen)
{
    memset(x, 0, sizeof *x);
    x->p = p;
    x->engine = o->engine;
    int ne = p->evals.n;
    x->evals = xcalloc((size_t)(ne ? ne : 1), sizeof(NndStepFn));
    x->eval_user = xcalloc((size_t)(ne ? ne : 1), sizeof(void *));
    /* the plain step computes the loss and the updates; the full one (when a log asks
     * for statistics) the step outputs too, on the steps that log */
    NodeVec step = {0}, full = {0}, accum = {0};
    program_step_roots(p, &full);
    vec_push(&step, p->loss);
    for (int i = 0; i < p->updates.n; i++)
        vec_push(&step, p->updates.v[i].value);
    vec_push(&accum, p->loss);
    for (int i = 0; i < p->accum_updates.n; i++)
        vec_push(&accum, p->accum_updates.v[i].value);
    bool want_full = p->step_outputs.n > 0, want_accum = p->accumulate > 1;
    if (o->engine == ENGINE_INTERP) {
        x->step = interp_entry;
        x->step_user = interp_step_fn(p, &step, 1, o->check_numerics, p->updates.v, p->updates.n);
        if (want_full) {
            x->step_full = interp_entry;
            x->step_full_user = interp_step_fn(p, &full, 1 + p->step_outputs.n, o->check_numerics,
                                               p->updates.v, p->updates.n);
        }
        if (want_accum) {
            x->step_accum = interp_entry;
            x->step_accum_user = interp_step_fn(p, &accum, 1, o->check_numerics, p->accum_updates.v,
                                                p->accum_updates.n);
        }
        for (int i = 0; i < ne; i++) {
            NodeVec r = {0};
            metric_roots(p, i, &r);
            x->evals[i] = interp_entry;
            x->eval_user[i] = interp_fn(p, IK_OUTPUTS, r.v, r.n);
            vec_free(&r);
        }
        if (p->forward) {
            x->forward = interp_entry;
            x->forward_user = interp_fn(p, IK_OUTPUTS, &p->forward, 1);
        }
        vec_free(&step);
        vec_free(&full);
        vec_free(&accum);
        return true;
    }
    vec_free(&accum);
    /* compiled: one schedule per function, one module, one arena */
    double t0 = clock_seconds();
    ScheduleUpdate *ups = xcalloc((size_t)(p->updates.n ? p->updates.n : 1), sizeof *ups);
    for (int i = 0; i < p->updates.n; i++)
        ups[i] = (ScheduleUpdate){p->updates.v[i].value, p->updates.v[i].is_state, p->updates.v[i].index};
    NodeId *outs = xcalloc((size_t)p->step_outputs.n + 1, sizeof(NodeId));
    outs[0] = p->loss;
    for (int i = 0; i < p->step_outputs.n; i++)
        outs[i + 1] = p->step_outputs.v[i].node;
    ScheduleRequest rq = {outs, 1, ups, p->updates.n, p->batch, o->check_numerics};
    bool ok = schedule_build(&x->step_sched, &p->g, &rq, err, errlen);
    if (ok && want_full) {
        ScheduleRequest fq = {outs, 1 + p->step_outputs.n, ups, p->updates.n, p->batch, o->check_numerics};
        ok = schedule_build(&x->full_sched, &p->g, &fq, err, errlen);
    }
    if (ok && want_accum) {
        ScheduleUpdate *aups = xcalloc((size_t)p->accum_updates.n, sizeof *aups);
        for (int i = 0; i < p->accum_updates.n; i++)
            aups[i] = (ScheduleUpdate){p->accum_updates.v[i].value, true, p->accum_updates.v[i].index};
        ScheduleRequest aq = {outs, 1, aups, p->accum_updates.n, p->batch, o->check_numerics};
        ok = schedule_build(&x->accum_sched, &p->g, &aq, err, errlen);
        free(aups);
    }
    free(ups);
    free(outs);
    x->eval_scheds = xcalloc((size_t)(ne ? ne : 1), sizeof(Schedule));
    VEC(CodegenFunction) fns = {0};
    char **names = xcalloc((size_t)ne + 2, sizeof(char *));
    if (ok) {
        CodegenFunction f = {"nnd_step", &x->step_sched, o->profile, o->check_numerics};
        vec_push(&fns, f);
    }
    if (ok && want_full) {
        CodegenFunction f = {"nnd_step_full", &x->full_sched, false, o->check_numerics};
        vec_push(&fns, f);
    }
    if (ok && want_accum) {
        CodegenFunction f = {"nnd_step_accum", &x->accum_sched, false, o->check_numerics};
        vec_push(&fns, f);
    }
    for (int i = 0; ok && i < ne; i++) {
        NodeVec r = {0};
        metric_roots(p, i, &r);
        ScheduleRequest er = {r.v, r.n, NULL, 0, p->batch, false};
        ok = schedule_build(&x->eval_scheds[i], &p->g, &er, err, errlen);
        vec_free(&r);
        names[i] = xasprintf("nnd_eval%d", i);
        CodegenFunction f = {names[i], &x->eval_scheds[i], false, false};
        if (ok)
            vec_push(&fns, f);
    }
    if (ok && p->forward) {
        ScheduleRequest fr = {&p->forward, 1, NULL, 0, p->batch, false};
        ok = schedule_build(&x->forward_sched, &p->g, &fr, err, errlen);
        CodegenFunction f = {"nnd_forward", &x->forward_sched, false, false};
        if (ok)
            vec_push(&fns, f);
    }
    void **addrs = xcalloc((size_t)fns.n + 1, sizeof(void *));
    if (ok) {
        JitOptions jo = {o->keep_ir, o->opt_level};
        x->jit = jit_compile(&p->g, fns.v, fns.n, &jo, addrs, err, errlen);
        ok = x->jit != NULL;
    }
    if (ok) {
        int k = 0;
        x->step = (NndStepFn)addrs[k++];
        if (want_full)
            x->step_full = (NndStepFn)addrs[k++];
        if (want_accum)
            x->step_accum = (NndStepFn)addrs[k++];
        for (int i = 0; i < ne; i++)
            x->evals[i] = (NndStepFn)addrs[k++];
        if (p->forward)
            x->forward = (NndStepFn)addrs[k++];
        x->arena_bytes = NND_MAX(x->step_sched.arena_bytes, want_full ? x->full_sched.arena_bytes : 0);
        if (want_accum && x->accum_sched.arena_bytes > x->arena_bytes)
            x->arena_bytes = x->accum_sched.arena_bytes;
        for (int i = 0; i < ne; i++)
            if (x->eval_scheds[i].arena_bytes > x->arena_bytes)
                x->arena_bytes = x->eval_scheds[i].arena_bytes;
        if (p->forward && x->forward_sched.arena_bytes > x->arena_bytes)
            x->arena_bytes = x->forward_sched.arena_bytes;
        x->arena = nnd_alloc((size_t)x->arena_bytes + 64);
        if (o->profile)
            x->profile = xcalloc((size_t)x->step_sched.kernels.n + 1, sizeof(int64_t));
        if (!x->arena) {
            snprintf(err, errlen, "out of memory for a %lld-byte arena", (long long)x->arena_bytes);
            ok = false;
        }
    }
    x->compile_seconds = clock_seconds() - t0;
    for (int i = 0; i < ne + 2; i++)
        free(names[i]);
    free(names);
    free(addrs);
    vec_free(&fns);
    vec_free(&step);
    vec_free(&full);
    if (!ok)
        executable_free(x);
    return ok;
}

void executable_free(Executable *x)
{
    if (x->engine == ENGINE_INTERP) {
        interp_fn_free(x->step_user);
        interp_fn_free(x->step_full_user);
        interp_fn_free(x->step_accum_user);
        for (int i = 0; x->eval_user && i < x->p->evals.n; i++)
            interp_fn_free(x->eval_user[i]);
        interp_fn_free(x->forward_user);
    } else {
        jit_free(x->jit);
        if (x->step_sched.home)
            schedule_free(&x->step_sched);
        if (x->full_sched.home)
            schedule_free(&x->full_sched);
        if (x->accum_sched.home)
            schedule_free(&x->accum_sched);
        for (int i = 0; x->eval_scheds && i < x->p->evals.n; i++)
            if (x->eval_scheds[i].home)
                schedule_free(&x->eval_scheds[i]);
        if (x->forward_sched.home)
            schedule_free(&x->forward_sched);
        nnd_free(x->arena);
    }
    free(x->evals);
    free(x->eval_user);
    free(x->eval_scheds);
    free(x->profile);
    memset(x, 0, sizeof *x);
}

void executable_describe(const Executable *x, StrBuf *out)
{
    if (x->engine == ENGINE_INTERP) {
        sb_puts(out, "reference interpreter\n");
        return;
    }
    sb_printf(out, "step: %d kernels\n", x->step_sched.kernels.n);
    schedule_print(&x->step_sched, out);
    if (x->step_full) {
        sb_printf(out, "step with the log's statistics (on the logged steps): %d kernels\n",
                  x->full_sched.kernels.n);
        schedule_print(&x->full_sched, out);
    }
    if (x->step_accum) {
        sb_printf(out, "step of a micro-batch that only adds to the gradient sums (accumulate = %lld): "
                       "%d kernels\n", (long long)x->p->accumulate, x->accum_sched.kernels.n);
        schedule_print(&x->accum_sched, out);
    }
    sb_printf(out, "planned memory: %lld bytes of scratch (the largest of %d functions), "
                   "allocated once\n",
              (long long)x->arena_bytes, 1 + x->p->evals.n + (x->p->forward != 0));
}

void executable_profile(const Executable *x, int64_t steps, StrBuf *out)
{
    if (!x->profile || steps < 1)
        return;
    const Schedule *s = &x->step_sched;
    static const char *kinds[] = {"loop", "reduce", "call"};
    int64_t total = 0, update = 0, values = 0;
    for (int k = 0; k < s->kernels.n; k++)
        total += x->profile[k];
    sb_printf(out, "profile of the step (%lld steps): %.1f us per step in kernels\n", (long long)steps,
              1e-3 * (double)total / (double)steps);
    for (int k = 0; k < s->kernels.n; k++) {
        const Kernel *kr = &s->kernels.v[k];
        char sh[128];
        shape_format(s->g, &kr->domain, sh, sizeof sh);
        bool upd = false;
        for (int i = 0; i < kr->stores.n; i++) {
            const Buffer *b = &s->bufs.v[kr->stores.v[i].buf];
            if (b->kind == BUF_PARAM) {
                upd = true;
                values += shape_numel_at(&graph_node(s->g, kr->stores.v[i].node)->shape, 1);
            }
        }
        if (upd)
            update += x->profile[k];
        sb_printf(out, "  k%-3d %-6s %-16s %9.2f us  %5.1f%%%s\n", k, kinds[kr->kind], sh,
                  1e-3 * (double)x->profile[k] / (double)steps,
                  total ? 100.0 * (double)x->profile[k] / (double)total : 0.0, upd ? "  update" : "");
    }
    if (values)
        sb_printf(out, "update rule: %lld parameter values, %.3f ns per value per step\n",
                  (long long)values, (double)update / (double)steps / (double)values);
}

/* ---- training ---- */

typedef struct Run {
    NndTrainer t;
    NndDataSet *data;
    NndEvalSpec *evals;
    const char ***names;
    double *hypers;
    void **eval_params; /* with `ema`: the averages in place of the parameters */
} Run;

static void run_setup(Run *r, Program *p, Executable *x, Model *m, NndPool *pool)
{
    memset(r, 0, sizeof *r);
    r->data = xcalloc((size_t)p->data.n, sizeof(NndDataSet));
    for (int i = 0; i < p->data.n; i++)
        r->data[i] = (NndDataSet){p->data.v[i].name, &p->data.v[i].x, &p->data.v[i].y};
    int ne = p->evals.n;
    r->evals = xcalloc((size_t)(ne ? ne : 1), sizeof(NndEvalSpec));
    r->names = xcalloc((size_t)(ne ? ne : 1), sizeof(char **));
    for (int i = 0; i < ne; i++) {
        EvalSpec *es = &p->evals.v[i];
        r->names[i] = xcalloc((size_t)(es->metrics.n ? es->metrics.n : 1), sizeof(char *));
        for (int k = 0; k < es->metrics.n; k++)
            r->names[i][k] = es->metrics.v[k].name;
        r->evals[i] = (NndEvalSpec){es->data, es->every, es->in_epochs, es->metrics.n,
                                    r->names[i], x->evals[i], x->eval_user[i]};
    }
    r->hypers = hyper_values(p);
    NndTrainer *t = &r->t;
    t->params = m->param_ptrs;
    bool ema = false;
    for (int i = 0; i < p->params.n; i++)
        ema |= p->params.v[i].ema_state >= 0;
    if (ema) {
        r->eval_params = xcalloc((size_t)p->params.n, sizeof(void *));
        for (int i = 0; i < p->params.n; i++) {
            int s = p->params.v[i].ema_state;
            r->eval_params[i] = s >= 0 ? m->state_ptrs[s] : m->param_ptrs[i];
        }
        t->eval_params = r->eval_params;
    }
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

/* ---- logs and warnings ---- */

bool logger_open(Logger *lg, Program *p, Model *m, bool append, FILE *warn, bool interactive,
                 char *err, size_t errlen)
{
    memset(lg, 0, sizeof *lg);
    lg->p = p;
    lg->m = m;
    lg->warn = warn;
    lg->interactive = interactive;
    int np = p->params.n ? p->params.n : 1;
    lg->watch = xcalloc((size_t)np, sizeof(ParamWatch));
    for (int i = 0; i < p->params.n; i++) {
        ParamWatch *w = &lg->watch[i];
        w->gn = w->ratio = -1;
        for (int k = 0; k < p->step_outputs.n; k++) {
            const char *t = p->step_outputs.v[k].name, *slash = strchr(t, '/');
            if (!slash || strcmp(slash + 1, p->params.v[i].name))
                continue;
            if (!strncmp(t, "grad_norm/", 10))
                w->gn = k + 1;
            else if (!strncmp(t, "update_ratio/", 13))
                w->ratio = k + 1;
        }
    }
    if (p->log.dir) {
        NndErr e;
        lg->log = nnd_log_open(p->log.dir, append, &e);
        if (!lg->log) {
            snprintf(err, errlen, "%s", e.msg);
            logger_close(lg);
            return false;
        }
    }
    return true;
}

void logger_close(Logger *lg)
{
    if (lg->log) {
        NndErr e;
        nnd_log_flush(lg->log, &e);
        nnd_log_close(lg->log);
    }
    free(lg->watch);
    lg->log = NULL;
}

enum { WARN_VANISH = 1, WARN_EXPLODE = 2, WARN_NONFINITE = 4, WARN_BIG = 8, WARN_TINY = 16 };

static void warn(Logger *lg, int param, unsigned kind, int64_t step, const char *fmt, ...) NND_PRINTF(5, 6);
static void warn(Logger *lg, int param, unsigned kind, int64_t step, const char *fmt, ...)
{
    if (!lg->warn || (lg->watch[param].warned & kind))
        return;
    lg->watch[param].warned |= kind;
    if (lg->interactive)
        fputs("\r\033[K", lg->warn);
    fprintf(lg->warn, "warning: step %lld: %s: ", (long long)step, lg->p->params.v[param].name);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(lg->warn, fmt, ap);
    va_end(ap);
    fputs(" (said once per parameter)\n", lg->warn);
    fflush(lg->warn);
}

/* Checked on the logged steps (where the statistics are computed): gradients whose
 * norm stays under 1e-7 for 10 logged steps vanish; one 50 times its recent average
 * (after 5 logged steps) explodes; for weight matrices and filters (rank >= 2), an
 * update over a tenth of the weights' norm (after step 10), or under 1e-7 of it for
 * 20 logged steps, is far from the usual ~1e-3. */
static void check_health(Logger *lg, const NndTrainPoint *at, const double *out)
{
    for (int i = 0; i < lg->p->params.n; i++) {
        ParamWatch *w = &lg->watch[i];
        if (w->gn < 0)
            continue;
        double g = out[w->gn];
        if (!isfinite(g)) {
            warn(lg, i, WARN_NONFINITE, at->step, "the gradient is not finite (norm %g)", g);
            continue;
        }
        w->small_steps = g < 1e-7 ? w->small_steps + 1 : 0;
        if (w->small_steps == 10)
            warn(lg, i, WARN_VANISH, at->step, "vanishing gradient: its norm has stayed below 1e-7 "
                                                "for 10 logged steps (now %.3g)", g);
        lg->logged++;
        if (lg->logged > 5 * lg->p->params.n && w->gn_avg > 0 && g > 50 * w->gn_avg)
            warn(lg, i, WARN_EXPLODE, at->step, "exploding gradient: its norm jumped to %.3g, %.0f "
                                                 "times its recent average %.3g", g, g / w->gn_avg, w->gn_avg);
        w->gn_avg = w->gn_avg == 0 ? g : 0.9 * w->gn_avg + 0.1 * g;
        /* update sizes: of weight matrices and filters; biases and gains start at 0
         * or 1 and move by large fractions of themselves early on */
        if (w->ratio < 0 || graph_node(&lg->p->g, lg->p->params.v[i].node)->shape.rank < 2)
            continue;
        double r = out[w->ratio];
        if (r > 0.1 && at->step > 10)
            warn(lg, i, WARN_BIG, at->step, "the update moved the weights by %.3g of their norm in "
                                             "one step (usual: about 1e-3); the learning rate may be too high", r);
        w->tiny_steps = r < 1e-7 && g > 0 ? w->tiny_steps + 1 : 0;
        if (w->tiny_steps == 20)
            warn(lg, i, WARN_TINY, at->step, "updates of under 1e-7 of the weights' norm for 20 "
                                              "logged steps (now %.3g): the learning rate may be too low", r);
    }
}

static int logger_on_step(void *ctx, const NndTrainPoint *at, const double *out, int full,
                          double *hypers)
{
    Logger *lg = ctx;
    (void)hypers;
    /* the statistics exist on the logged steps only: the others run the plain step */
    if (!full)
        return 0;
    check_health(lg, at, out);
    const LogSpec *ls = &lg->p->log;
    if (!lg->log || lg->failed)
        return 0;
    NndErr e;
    bool ok = !(ls->items & LOG_LOSS) || nnd_log_scalar(lg->log, "loss", at->step, at->epoch, out[0], &e) == 0;
    for (int k = 0; ok && k < lg->p->step_outputs.n; k++) {
        const char *tag = lg->p->step_outputs.v[k].name;
        /* grad_norm and update_ratio are computed for the warnings; logged if asked */
        uint32_t fam = !strncmp(tag, "grad_norm/", 10) ? LOG_GRAD_NORM
                     : !strncmp(tag, "update_ratio/", 13) ? LOG_UPDATE_RATIO : 0;
        if (fam && !(ls->items & fam))
            continue;
        ok = nnd_log_scalar(lg->log, tag, at->step, at->epoch, out[k + 1], &e) == 0;
    }
    for (int i = 0; ok && (ls->items & LOG_HISTOGRAMS) && i < lg->p->params.n; i++) {
        char tag[512];
        snprintf(tag, sizeof tag, "weights/%s", lg->p->params.v[i].name);
        const NndTensor *t = &lg->m->params[i];
        ok = nnd_log_histogram(lg->log, tag, at->step, t->data, t->dtype, nnd_tensor_numel(t), &e) == 0;
    }
    /* pushed to the file at most twice a second (and at every eval and at the end):
     * a run killed at any moment keeps what was pushed, and logging every step
     * costs no system call per step */
    int64_t now = nnd_clock_ns();
    if (ok && now - lg->flushed_ns >= 500000000) {
        ok = nnd_log_flush(lg->log, &e) == 0;
        lg->flushed_ns = now;
    }
    if (!ok) {
        lg->failed = true;
        snprintf(lg->err, sizeof lg->err, "%s", e.msg);
    }
    return 0;
}

static void logger_on_eval(void *ctx, int which, const NndTrainPoint *at, const double *values)
{
    Logger *lg = ctx;
    if (!lg->log || lg->failed)
        return;
    const EvalSpec *es = &lg->p->evals.v[which];
    NndErr e;
    bool ok = true;
    for (int k = 0; ok && k < es->metrics.n; k++) {
        char tag[512];
        snprintf(tag, sizeof tag, "eval/%s/%s", lg->p->data.v[es->data].name, es->metrics.v[k].name);
        ok = nnd_log_scalar(lg->log, tag, at->step, at->epoch, values[k], &e) == 0;
    }
    ok = ok && nnd_log_flush(lg->log, &e) == 0;
    if (!ok) {
        lg->failed = true;
        snprintf(lg->err, sizeof lg->err, "%s", e.msg);
    }
}

void logger_hooks(Logger *lg, TrainOptions *to)
{
    to->on_step = logger_on_step;
    to->on_eval = logger_on_eval;
    to->hook_ctx = lg;
}

/* ---- checkpoints ---- */

typedef struct CkptCtx {
    const Program *p;
    const Model *m;
} CkptCtx;

static const char *const CKPT_PREFIX = "step-", *const CKPT_SUFFIX = ".safetensors";

/* The step a checkpoint file is named for (step-00000123.safetensors), or -1. */
static int64_t ckpt_file_step(const char *name)
{
    size_t lp = strlen(CKPT_PREFIX), ls = strlen(CKPT_SUFFIX), n = strlen(name);
    if (n <= lp + ls || strncmp(name, CKPT_PREFIX, lp) || strcmp(name + n - ls, CKPT_SUFFIX))
        return -1;
    int64_t v = 0;
    for (size_t i = lp; i < n - ls; i++) {
        if (name[i] < '0' || name[i] > '9' || v > INT64_MAX / 10 - 10)
            return -1;
        v = v * 10 + (name[i] - '0');
    }
    return v;
}

/* Steps of the checkpoint files in dir, ascending; n gets their count. */
static int64_t *ckpt_list(const char *dir, int *n)
{
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    VEC(int64_t) v = {0};
    for (struct dirent *de; (de = readdir(d));) {
        int64_t s = ckpt_file_step(de->d_name);
        if (s >= 0)
            vec_push(&v, s);
    }
    closedir(d);
    for (int i = 1; i < v.n; i++) /* insertion sort: a handful of files */
        for (int j = i; j > 0 && v.v[j - 1] > v.v[j]; j--) {
            int64_t t = v.v[j];
            v.v[j] = v.v[j - 1];
            v.v[j - 1] = t;
        }
    *n = v.n;
    return v.v;
}

static char *ckpt_path(const char *dir, int64_t step)
{
    StrBuf b = {0};
    sb_printf(&b, "%s/%s%08lld%s", dir, CKPT_PREFIX, (long long)step, CKPT_SUFFIX);
    return b.s;
}

/* mkdir -p */
static bool make_dirs(const char *dir, char *err, size_t errlen)
{
    char *d = xstrdup(dir);
    for (char *q = d + 1;; q++) {
        bool end = *q == 0;
        if (*q == '/' || end) {
            *q = 0;
            if (mkdir(d, 0777) != 0 && errno != EEXIST) {
                snprintf(err, errlen, "cannot create the checkpoint directory %s: %s", d, strerror(errno));
                free(d);
                return false;
            }
            if (end)
                break;
            *q = '/';
        }
    }
    free(d);
    return true;
}

bool checkpoint_write(const Program *p, const Model *m, const char *path, const NndTrainPoint *at,
                      char *err, size_t errlen)
{
    int n = p->params.n + p->states.n;
    NndNamedTensor *named = xcalloc((size_t)(n ? n : 1), sizeof(NndNamedTensor));
    for (int i = 0; i < p->params.n; i++)
        named[i] = (NndNamedTensor){p->params.v[i].name, &m->params[i]};
    for (int i = 0; i < p->states.n; i++)
        named[p->params.n + i] = (NndNamedTensor){p->states.v[i].name, &m->states[i]};
    char step[32], epoch[32], lsum[40], ln[32], seed[32], batch[32], samples[32];
    snprintf(step, sizeof step, "%lld", (long long)at->step);
    snprintf(epoch, sizeof epoch, "%lld", (long long)at->epoch);
    snprintf(lsum, sizeof lsum, "%.17g", at->loss_sum);
    snprintf(ln, sizeof ln, "%lld", (long long)at->loss_n);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)p->seed);
    snprintf(batch, sizeof batch, "%lld", (long long)p->batch);
    snprintf(samples, sizeof samples, "%lld", (long long)p->data.v[p->train_data].n);
    char accum[32];
    snprintf(accum, sizeof accum, "%lld", (long long)p->accumulate);
    NndStrPair meta[] = {{"format", "nnd-checkpoint"}, {"step", step}, {"epoch", epoch},
                         {"loss_sum", lsum}, {"loss_n", ln}, {"seed", seed}, {"batch", batch},
                         {"train_samples", samples}, {"accumulate", accum}};
    NndErr e;
    /* "accumulate" only when it is used: files stay as they were without it */
    int nmeta = (int)NND_ARRAY_LEN(meta) - (p->accumulate > 1 ? 0 : 1);
    bool ok = nnd_safetensors_write(path, named, n, meta, nmeta, &e) == 0;
    if (!ok)
        snprintf(err, errlen, "%s", e.msg);
    free(named);
    return ok;
}

static int write_checkpoint(void *ctx, const NndTrainPoint *at, NndErr *err)
{
    CkptCtx *c = ctx;
    char msg[1024];
    if (!make_dirs(c->p->ckpt_dir, msg, sizeof msg))
        return nnd_err(err, "%s", msg);
    char *path = ckpt_path(c->p->ckpt_dir, at->step);
    bool ok = checkpoint_write(c->p, c->m, path, at, msg, sizeof msg);
    free(path);
    if (!ok)
        return nnd_err(err, "%s", msg);
    /* keep the newest ones: the one just written is among them */
    int n;
    int64_t *steps = ckpt_list(c->p->ckpt_dir, &n);
    for (int i = 0; c->p->ckpt_keep > 0 && i < n - c->p->ckpt_keep; i++) {
        char *old = ckpt_path(c->p->ckpt_dir, steps[i]);
        remove(old);
        free(old);
    }
    free(steps);
    return 0;
}

static bool meta_int(const NndSafetensors *st, const char *key, int64_t *out)
{
    const char *v = nnd_safetensors_meta(st, key);
    if (!v || !*v)
        return false;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (*end || errno)
        return false;
    *out = x;
    return true;
}

bool checkpoint_load(const Program *p, Model *m, const char *path, NndTrainPoint *at, char **used,
                     char *err, size_t errlen)
{
    struct stat sb;
    char *file = NULL;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        int n;
        int64_t *steps = ckpt_list(path, &n);
        if (n == 0) {
            free(steps);
            snprintf(err, errlen, "%s: no checkpoint (step-*.safetensors) in this directory", path);
            return false;
        }
        file = ckpt_path(path, steps[n - 1]);
        free(steps);
    } else {
        file = xstrdup(path);
    }
    NndSafetensors st;
    NndErr e;
    if (nnd_safetensors_open(&st, file, &e) != 0) {
        snprintf(err, errlen, "%s", e.msg);
        free(file);
        return false;
    }
    bool ok = true;
    const char *fmt = nnd_safetensors_meta(&st, "format");
    int64_t seed, batch, samples, ln;
    if (!fmt || strcmp(fmt, "nnd-checkpoint") != 0 || !meta_int(&st, "step", &at->step) ||
        !meta_int(&st, "epoch", &at->epoch) || !meta_int(&st, "loss_n", &ln) ||
        !meta_int(&st, "seed", &seed) || !meta_int(&st, "batch", &batch) ||
        !meta_int(&st, "train_samples", &samples) || !nnd_safetensors_meta(&st, "loss_sum")) {
        snprintf(err, errlen, "%s: not an nnd checkpoint (its metadata lacks the training point; "
                              "a model saved by `save` holds only parameters)", file);
        ok = false;
    }
    int64_t accum = 1;
    if (ok && nnd_safetensors_meta(&st, "accumulate") && !meta_int(&st, "accumulate", &accum)) {
        snprintf(err, errlen, "%s: its metadata 'accumulate' is not a whole number", file);
        ok = false;
    }
    if (ok && accum != p->accumulate) {
        snprintf(err, errlen, "%s was written by a run with accumulate = %lld, this one has %lld: "
                              "a resumed run must draw the same batches", file, (long long)accum,
                 (long long)p->accumulate);
        ok = false;
    }
    if (ok) {
        at->loss_n = ln;
        at->loss_sum = strtod(nnd_safetensors_meta(&st, "loss_sum"), NULL);
        const char *what = (uint64_t)seed != p->seed ? "seed" : batch != p->batch ? "batch" : NULL;
        if (what || samples != p->data.v[p->train_data].n) {
            snprintf(err, errlen, "%s was written by a run with %s %lld, this one has %lld: a "
                                  "resumed run must draw the same batches",
                     file, what ? what : "a training set of", (long long)(what ? (what[0] == 's' ? seed : batch) : samples),
                     (long long)(what ? (what[0] == 's' ? (int64_t)p->seed : p->batch) : p->data.v[p->train_data].n));
            ok = false;
        }
    }
    for (int k = 0; ok && k < p->params.n + p->states.n; k++) {
        bool is_p = k < p->params.n;
        const char *name = is_p ? p->params.v[k].name : p->states.v[k - p->params.n].name;
        NndTensor *dst = is_p ? &m->params[k] : &m->states[k - p->params.n];
        const NndSafetensorsEntry *en = nnd_safetensors_find(&st, name);
        bool shape_ok = en && en->rank == dst->rank && en->dtype == dst->dtype;
        for (int d = 0; shape_ok && d < dst->rank; d++)
            shape_ok = en->shape[d] == dst->shape[d];
        if (!shape_ok) {
            snprintf(err, errlen, "%s: %s '%s'%s", file, en ? "a different shape or dtype for" : "no tensor",
                     name, en ? " than this program's" : " (the checkpoint is of another program, or "
                                                         "its update rules changed)");
            ok = false;
            break;
        }
        NndTensor t;
        if (nnd_safetensors_load(&st, name, &t, &e) != 0) {
            snprintf(err, errlen, "%s", e.msg);
            ok = false;
            break;
        }
        memcpy(dst->data, t.data, (size_t)nnd_tensor_numel(&t) * nnd_dtype_size(t.dtype));
        nnd_tensor_free(&t);
    }
    nnd_safetensors_close(&st);
    if (ok && used)
        *used = file;
    else
        free(file);
    return ok;
}

int driver_train(Program *p, Executable *x, Model *m, const TrainOptions *o, NndTrainResult *res,
                 char *err, size_t errlen)
{
    Run r;
    run_setup(&r, p, x, m, o->pool);
    r.t.start = o->resume;
    r.t.on_step = o->on_step;
    r.t.on_eval = o->on_eval;
    r.t.hook_ctx = o->hook_ctx;
    CkptCtx ck = {p, m};
    if (p->ckpt_dir) {
        r.t.checkpoint = write_checkpoint;
        r.t.ckpt_ctx = &ck;
        r.t.ckpt_every = p->ckpt_every;
        r.t.ckpt_in_epochs = p->ckpt_in_epochs;
    }
    r.t.progress = o->progress;
    r.t.interactive = o->interactive;
    char what[128];
    if (x->engine == ENGINE_JIT)
        snprintf(what, sizeof what, "compiled, %d thread%s", nnd_pool_threads(o->pool),
                 nnd_pool_threads(o->pool) == 1 ? "" : "s");
    else
        snprintf(what, sizeof what, "reference interpreter");
    r.t.what = what;
    r.t.profile = x->profile;
    NndErr e = {{0}};
    int rc = nnd_train(&r.t, res, &e);
    run_free(&r, p->evals.n);
    if (rc != 0)
        snprintf(err, errlen, "%s", e.msg);
    return rc == 0 ? NND_EXIT_OK : rc == 1 ? NND_EXIT_NONFINITE : NND_EXIT_ERROR;
}

bool driver_evaluate(Program *p, Executable *x, Model *m, NndPool *pool, int which, double *values,
                     char *err, size_t errlen)
{
    Run r;
    run_setup(&r, p, x, m, pool);
    NndErr e;
    bool ok = nnd_evaluate(&r.t, which, values, &e) == 0;
    if (!ok)
        snprintf(err, errlen, "%s", e.msg);
    run_free(&r, p->evals.n);
    return ok;
}

/* Rows idx[0..b) of a data set, gathered into new contiguous buffers (the caller
 * frees them). */
static void gather_rows(const DataSet *ds, const uint32_t *idx, int64_t b, char **bx, char **by)
{
    size_t rx = nnd_dtype_size(ds->x.dtype), ry = nnd_dtype_size(ds->y.dtype);
    for (int i = 1; i < ds->x.rank; i++)
        rx *= (size_t)ds->x.shape[i];
    for (int i = 1; i < ds->y.rank; i++)
        ry *= (size_t)ds->y.shape[i];
    *bx = xmalloc(rx * (size_t)b + 8);
    *by = xmalloc(ry * (size_t)b + 8);
    for (int64_t i = 0; i < b; i++) {
        memcpy(*bx + rx * (size_t)i, (char *)ds->x.data + rx * idx[i], rx);
        memcpy(*by + ry * (size_t)i, (char *)ds->y.data + ry * idx[i], ry);
    }
}

static bool call_fn(Program *p, NndStepFn fn, void *user, Executable *x, Model *m, NndPool *pool,
                    int data, const uint32_t *idx, int64_t b, int64_t step, double *out, char *err,
                    size_t errlen)
{
    char *bx, *by;
    gather_rows(&p->data.v[data], idx, b, &bx, &by);
    double *h = hyper_values(p);
    h[p->hyper_step] = (double)step;
    h[p->hyper_t] = (double)step + 1;
    h[p->hyper_steps] = (double)program_total_steps(p);
    NndStepArgs a = {m->param_ptrs, m->state_ptrs, bx, by, h, b, x->arena, out, pool, 0, user, NULL, 0, 0, 0};
    fn(&a);
    bool ok = a.status == 0;
    if (!ok)
        snprintf(err, errlen, "the function failed (status %d)", a.status);
    free(h);
    free(bx);
    free(by);
    return ok;
}

bool driver_step(Program *p, Executable *x, Model *m, NndPool *pool, const uint32_t *idx,
                 int64_t b, int64_t step, double *loss, char *err, size_t errlen)
{
    double *out = xcalloc((size_t)p->step_outputs.n + 2, sizeof(double));
    bool ok = call_fn(p, x->step, x->step_user, x, m, pool, p->train_data, idx, b, step, out, err, errlen);
    *loss = out[0];
    free(out);
    return ok;
}

bool driver_forward(Program *p, Executable *x, Model *m, NndPool *pool, int data,
                    const uint32_t *idx, int64_t b, double *out, char *err, size_t errlen)
{
    if (!x->forward) {
        snprintf(err, errlen, "the program has no forward function");
        return false;
    }
    return call_fn(p, x->forward, x->forward_user, x, m, pool, data, idx, b, 0, out, err, errlen);
}

/* ---- gradcheck (interpreter, f64) ---- */

typedef struct IModel {
    ITensor *params, *states;
} IModel;

static bool run_interp(Program *p, IModel *m, const ITensor *in, int64_t b, const double *h,
                       const NodeId *roots, int n, ITensor *out, char *err, size_t errlen)
{
    int64_t syms[1] = {b};
    InterpBindings bind = {m->params, p->params.n, m->states, p->states.n, (ITensor *)in, 2, h,
                           p->hypers.n, syms, 1, p->seed, NULL};
    return interp_run(&p->g, roots, n, &bind, out, err, errlen);
}

int driver_gradcheck(Program *p, const GradcheckOptions *o, FILE *out)
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
        m.params[i] = from_buffer(&p->g, p->params.v[i].node, model.params[i].data, 1);
    for (int i = 0; i < p->states.n; i++)
        m.states[i] = from_buffer(&p->g, p->states.v[i].node, model.states[i].data, 1);
    DataSet *ds = &p->data.v[p->train_data];
    int64_t b = NND_MIN(o->batch, ds->n);
    uint32_t *perm = xmalloc(sizeof(uint32_t) * (size_t)ds->n);
    nnd_random_permutation(perm, (uint32_t)ds->n, p->seed, 0x67c4ull);
    char *bx, *by;
    gather_rows(ds, perm, b, &bx, &by);
    ITensor in[2] = {from_buffer(&p->g, p->x, bx, b), from_buffer(&p->g, p->y, by, b)};
    double *h = hyper_values(p);
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

/* ---- --check-numerics reports ---- */

/* "fc1.W, fc1.b and 3 more": the parameters marked in set (the last ones first when
 * last_first: the layers nearest the output); how many there are. */
static int param_list(const Program *p, const bool *set, bool last_first, StrBuf *b)
{
    int total = 0;
    for (int k = 0; k < p->params.n; k++) {
        int i = last_first ? p->params.n - 1 - k : k;
        if (set[i] && total++ < 4)
            sb_printf(b, "%s%s", total > 1 ? ", " : "", p->params.v[i].name);
    }
    if (total > 4)
        sb_printf(b, " and %d more", total - 4);
    return total;
}

void report_nonfinite(Program *p, Diags *d, const NndTrainResult *res)
{
    Graph *g = &p->g;
    int count = graph_count(g);
    if (res->bad_node <= 0 || res->bad_node >= count)
        return;
    NodeId bad = (NodeId)res->bad_node;
    Node *n = graph_node(g, bad);
    /* node ids are in graph order: what the bad node is computed from (up), and what
     * is computed from it (down), in one pass each */
    bool *up = xcalloc((size_t)count, 1), *down = xcalloc((size_t)count, 1);
    up[bad] = down[bad] = true;
    for (int id = bad; id > 0; id--)
        for (int i = 0; up[id] && i < graph_node(g, (NodeId)id)->nin; i++)
            up[graph_node(g, (NodeId)id)->in[i]] = true;
    for (int id = bad + 1; id < count; id++) {
        Node *m = graph_node(g, (NodeId)id);
        for (int i = 0; i < m->nin && !down[id]; i++)
            down[id] = down[m->in[i]];
    }
    int np = p->params.n ? p->params.n : 1;
    bool *reads = xcalloc((size_t)np, 1), *fed = xcalloc((size_t)np, 1);
    bool data = false;
    for (int id = 1; id <= (int)bad; id++) {
        Node *m = graph_node(g, (NodeId)id);
        if (!up[id] || (m->op != OP_PARAM && m->op != OP_STATE && m->op != OP_INPUT))
            continue;
        data = true;
        if (m->op == OP_PARAM && m->idx >= 0 && m->idx < p->params.n)
            reads[m->idx] = true;
    }
    for (int u = 0; u < p->updates.n; u++) {
        const Update *upd = &p->updates.v[u];
        int pi = upd->is_state ? p->states.v[upd->index].param : upd->index;
        if (pi >= 0 && down[upd->value])
            fed[pi] = true;
    }
    const char *phase = "the forward pass";
    switch ((Phase)n->phase) {
    case PHASE_BACKWARD: phase = "the backward pass"; break;
    case PHASE_UPDATE: phase = "the update rule"; break;
    case PHASE_STATS: phase = "a logged statistic"; break;
    default:
        if (!data)
            phase = "the hyper-parameters (a schedule or a constant)";
        break;
    }
    char value[32];
    snprintf(value, sizeof value, "%s", isnan(res->bad_value) ? "NaN" : res->bad_value > 0 ? "+inf" : "-inf");
    int di = diag_error(d, n->span, "step %lld: '%s' made %s in %s (%lld value%s not finite)",
                        (long long)res->steps, op_info[n->op].name, value, phase,
                        (long long)res->bad_count, res->bad_count == 1 ? " is" : "s are");
    diag_label(d, di, "the first op to make NaN or Inf: its inputs were finite");
    StrBuf b = {0};
    if (n->phase == PHASE_BACKWARD || n->phase == PHASE_UPDATE) {
        if (param_list(p, fed, false, &b))
            diag_note(d, span_none(), "%s %s",
                      n->phase == PHASE_UPDATE ? "in the update of" : "it feeds the updates of", b.s);
    } else if (n->phase == PHASE_FORWARD) {
        if (param_list(p, reads, true, &b))
            diag_note(d, span_none(), "it is computed from the parameters %s", b.s);
    }
    sb_free(&b);
    diag_note(d, span_none(), "training stopped at step %lld (epoch %lld); checkpoints of earlier steps are kept, none is written for this one",
              (long long)res->steps, (long long)res->bad_epoch + 1);
    free(up);
    free(down);
    free(reads);
    free(fed);
}
