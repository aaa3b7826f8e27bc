#include "executable.h"

#include <stdlib.h>
#include <string.h>

#include "interp.h"

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
        params[i] = itensor_from_buffer(g, p->params.v[i].node, a->params[i], a->batch);
    for (int i = 0; i < p->states.n; i++)
        states[i] = itensor_from_buffer(g, p->states.v[i].node, a->states[i], a->batch);
    ITensor in[2] = {itensor_from_buffer(g, p->x, a->x, a->batch),
                     itensor_from_buffer(g, p->y, a->y, a->batch)};
    int64_t syms[1] = {a->batch};
    InterpCheck check = {0};
    InterpFault fault = {0};
    InterpBindings b = {.params = params,
                        .nparams = p->params.n,
                        .states = states,
                        .nstates = p->states.n,
                        .inputs = in,
                        .ninputs = 2,
                        .hypers = a->hypers,
                        .nhypers = p->hypers.n,
                        .syms = syms,
                        .nsyms = 1,
                        .seed = p->seed,
                        .check = f->check ? &check : NULL,
                        .fault = &fault};
    ITensor *out = xcalloc((size_t)f->roots.n, sizeof(ITensor));
    char err[512];
    if (!interp_run(g, f->roots.v, f->roots.n, &b, out, err, sizeof err)) {
        if (check.node) {
            a->status = NND_STATUS_NONFINITE;
            a->bad_node = check.node;
            a->bad_count = check.count;
            a->bad_value = check.value;
        } else if (fault.kind != FAULT_NONE) {
            a->status = fault.kind == FAULT_LABEL ? NND_STATUS_LABEL_RANGE : NND_STATUS_INDEX_RANGE;
            a->bad_value = fault.value;
            a->bad_count = fault.limit;
        } else {
            a->status = NND_STATUS_FAILED;
        }
    } else if (f->kind == IK_STEP) {
        /* the loss and the step outputs, then the new values */
        int ns = f->nout;
        for (int i = 0; i < ns; i++)
            a->out[i] = out[i].v[0];
        for (int i = 0; i < f->nups; i++) {
            const Update *u = &f->ups[i];
            itensor_store(&out[i + ns], u->is_state ? a->states[u->index] : a->params[u->index]);
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
static InterpFn *interp_step_fn(Program *p, const NodeVec *roots, int nout, bool check,
                                const Update *ups, int nups)
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

/* The step's roots: the loss, then the values the updates store. */
static void step_roots(const Program *p, const Update *ups, int nups, NodeVec *out)
{
    vec_push(out, p->loss);
    for (int i = 0; i < nups; i++)
        vec_push(out, ups[i].value);
}

/* Every function behind the interpreter: the step, its variants, the evals and
 * the forward function. */
static void build_interp(Executable *x, Program *p, const ExecOptions *o)
{
    NodeVec step = {0}, full = {0}, accum = {0};
    step_roots(p, p->updates.v, p->updates.n, &step);
    x->step = interp_entry;
    x->step_user = interp_step_fn(p, &step, 1, o->check_numerics, p->updates.v, p->updates.n);
    if (p->step_outputs.n > 0) {
        program_step_roots(p, &full);
        x->step_full = interp_entry;
        x->step_full_user = interp_step_fn(p, &full, 1 + p->step_outputs.n, o->check_numerics,
                                           p->updates.v, p->updates.n);
    }
    if (p->accumulate > 1 || p->distributed) {
        step_roots(p, p->accum_updates.v, p->accum_updates.n, &accum);
        x->step_accum = interp_entry;
        x->step_accum_user =
            interp_step_fn(p, &accum, 1, o->check_numerics, p->accum_updates.v, p->accum_updates.n);
    }
    if (p->distributed) {
        NodeVec apply = {0};
        for (int i = 0; i < p->apply_updates.n; i++)
            vec_push(&apply, p->apply_updates.v[i].value);
        x->step_apply = interp_entry;
        x->step_apply_user =
            interp_step_fn(p, &apply, 0, o->check_numerics, p->apply_updates.v, p->apply_updates.n);
        vec_free(&apply);
        if (p->apply_outputs.n > 0) {
            for (int i = 0; i < p->apply_outputs.n; i++)
                vec_push(&apply, p->apply_outputs.v[i]);
            for (int i = 0; i < p->apply_updates.n; i++)
                vec_push(&apply, p->apply_updates.v[i].value);
            x->step_apply_full = interp_entry;
            x->step_apply_full_user =
                interp_step_fn(p, &apply, p->apply_outputs.n, o->check_numerics, p->apply_updates.v,
                               p->apply_updates.n);
            vec_free(&apply);
        }
    }
    for (int i = 0; i < p->evals.n; i++) {
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
}

/* A step's schedule: the updates ups, and outs[0..nout) written to args->out; early:
 * ScheduleRequest.early_states. */
static bool schedule_step(Schedule *s, Program *p, const NodeId *outs, int nout, const Update *ups,
                          int nups, int64_t max_batch, bool check, bool early, char *err,
                          size_t errlen)
{
    ScheduleUpdate *su = xcalloc((size_t)(nups ? nups : 1), sizeof *su);
    for (int i = 0; i < nups; i++)
        su[i] = (ScheduleUpdate){ups[i].value, ups[i].is_state, ups[i].index};
    ScheduleRequest rq = {outs, nout, su, nups, max_batch, check, early};
    bool ok = schedule_build(s, &p->g, &rq, err, errlen);
    free(su);
    return ok;
}

bool executable_step_arena(Program *p, int64_t batch, int64_t *bytes, char *err, size_t errlen)
{
    Schedule s;
    bool ok = schedule_step(&s, p, &p->loss, 1, p->updates.v, p->updates.n, batch, false, false,
                            err, errlen);
    if (ok) {
        *bytes = s.arena_bytes;
        schedule_free(&s);
    }
    return ok;
}

/* Schedules every function: the step, its variants (with a log's statistics;
 * a micro-batch of `accumulate`), the evals, the forward function. */
static bool schedule_all(Executable *x, Program *p, bool check, char *err, size_t errlen)
{
    int64_t mb = x->max_batch;
    bool ok = true;
    if (!x->forward_only) {
        NodeId *outs = xcalloc((size_t)p->step_outputs.n + 1, sizeof(NodeId));
        outs[0] = p->loss;
        for (int i = 0; i < p->step_outputs.n; i++)
            outs[i + 1] = p->step_outputs.v[i].node;
        ok = schedule_step(&x->step_sched, p, outs, 1, p->updates.v, p->updates.n, mb, check, false,
                           err, errlen);
        if (ok && p->step_outputs.n > 0)
            ok = schedule_step(&x->full_sched, p, outs, 1 + p->step_outputs.n, p->updates.v,
                               p->updates.n, mb, check, false, err, errlen);
        if (ok && (p->accumulate > 1 || p->distributed))
            ok = schedule_step(&x->accum_sched, p, outs, 1, p->accum_updates.v, p->accum_updates.n,
                               mb, check, p->distributed, err, errlen);
        if (ok && p->distributed)
            ok = schedule_step(&x->apply_sched, p, outs, 0, p->apply_updates.v, p->apply_updates.n,
                               mb, check, false, err, errlen);
        if (ok && p->distributed && p->apply_outputs.n > 0)
            ok = schedule_step(&x->apply_full_sched, p, p->apply_outputs.v, p->apply_outputs.n,
                               p->apply_updates.v, p->apply_updates.n, mb, check, false, err,
                               errlen);
        free(outs);
        for (int i = 0; ok && i < p->evals.n; i++) {
            NodeVec r = {0};
            metric_roots(p, i, &r);
            ScheduleRequest er = {r.v, r.n, NULL, 0, mb, false, false};
            ok = schedule_build(&x->eval_scheds[i], &p->g, &er, err, errlen);
            vec_free(&r);
        }
    }
    if (ok && p->forward) {
        ScheduleRequest fr = {&p->forward, 1, NULL, 0, mb, false, false};
        ok = schedule_build(&x->forward_sched, &p->g, &fr, err, errlen);
    }
    return ok;
}

/* The scheduled functions for the code generator, in the order build_jit takes
 * their addresses; names[i] is the i-th eval's name (malloc'd). */
static int codegen_list(const Executable *x, const ExecOptions *o, CodegenFunction *fns,
                        char **names)
{
    const Program *p = x->p;
    int n = 0;
    bool cn = o->check_numerics;
    if (!x->forward_only) {
        fns[n++] = (CodegenFunction){"nnd_step", &x->step_sched, o->profile, cn, NULL, 0};
        if (p->step_outputs.n > 0)
            fns[n++] = (CodegenFunction){"nnd_step_full", &x->full_sched, o->profile, cn, NULL, 0};
        if (p->accumulate > 1 || p->distributed)
            fns[n++] = (CodegenFunction){"nnd_step_accum",
                                         &x->accum_sched,
                                         false,
                                         cn,
                                         x->grad_sums,
                                         x->grad_sums ? p->states.n : 0};
        if (p->distributed)
            fns[n++] = (CodegenFunction){"nnd_step_apply", &x->apply_sched, false, cn, NULL, 0};
        if (p->distributed && p->apply_outputs.n > 0)
            fns[n++] =
                (CodegenFunction){"nnd_step_apply_full", &x->apply_full_sched, false, cn, NULL, 0};
        for (int i = 0; i < p->evals.n; i++) {
            names[i] = xasprintf("nnd_eval%d", i);
            fns[n++] = (CodegenFunction){names[i], &x->eval_scheds[i], false, false, NULL, 0};
        }
    }
    if (p->forward)
        fns[n++] = (CodegenFunction){"nnd_forward", &x->forward_sched, false, false, NULL, 0};
    return n;
}

/* One arena for all the functions: the largest any of them plans. */
static bool alloc_arena(Executable *x, char *err, size_t errlen)
{
    const Program *p = x->p;
    x->arena_bytes =
        NND_MAX(x->step_sched.arena_bytes, x->step_full ? x->full_sched.arena_bytes : 0);
    if (x->step_accum && x->accum_sched.arena_bytes > x->arena_bytes)
        x->arena_bytes = x->accum_sched.arena_bytes;
    if (x->step_apply && x->apply_sched.arena_bytes > x->arena_bytes)
        x->arena_bytes = x->apply_sched.arena_bytes;
    if (x->step_apply_full && x->apply_full_sched.arena_bytes > x->arena_bytes)
        x->arena_bytes = x->apply_full_sched.arena_bytes;
    for (int i = 0; i < p->evals.n; i++)
        if (x->eval_scheds[i].arena_bytes > x->arena_bytes)
            x->arena_bytes = x->eval_scheds[i].arena_bytes;
    if (p->forward && x->forward_sched.arena_bytes > x->arena_bytes)
        x->arena_bytes = x->forward_sched.arena_bytes;
    x->arena = nnd_alloc((size_t)x->arena_bytes + 64);
    if (!x->arena)
        snprintf(err, errlen, "out of memory for a %lld-byte arena", (long long)x->arena_bytes);
    return x->arena != NULL;
}

/* A distributed program's gradient sums, and the order their all-reduces start in:
 * as the compiled accumulation step finishes them, or the states' order. */
static void grad_sums(Executable *x, const Program *p)
{
    if (!p->distributed)
        return;
    x->grad_sums = xcalloc((size_t)p->states.n + 1, sizeof(bool));
    for (int i = 0; i < p->states.n; i++) {
        const char *n = p->states.v[i].name;
        size_t len = strlen(n);
        x->grad_sums[i] = p->states.v[i].param >= 0 && len > 9 && !strcmp(n + len - 9, ".grad_sum");
    }
    IntVec kernel = {0};
    if (x->accum_sched.home)
        schedule_final_states(&x->accum_sched, x->grad_sums, p->states.n, &x->grad_order, &kernel);
    int last_call = -1;
    for (int k = 0; x->accum_sched.home && k < x->accum_sched.kernels.n; k++)
        if (x->accum_sched.kernels.v[k].kind == KER_CALL)
            last_call = k;
    x->grad_early = xcalloc((size_t)p->states.n + 1, sizeof(bool));
    for (int k = 0; k < kernel.n; k++)
        x->grad_early[k] = kernel.v[k] < last_call;
    vec_free(&kernel);
    for (int i = 0; i < p->states.n; i++) { /* any the schedule does not write last */
        bool listed = false;
        for (int k = 0; k < x->grad_order.n; k++)
            listed |= x->grad_order.v[k] == i;
        if (x->grad_sums[i] && !listed)
            vec_push(&x->grad_order, i);
    }
}

/* Compiled: the schedules (executable_plan), one LLVM module, one arena. */
static bool build_jit(Executable *x, Program *p, const ExecOptions *o, char *err, size_t errlen)
{
    if (!executable_plan(x, p, o, err, errlen))
        return false;
    grad_sums(x, p);
    int ne = p->evals.n;
    CodegenFunction *fns = xcalloc((size_t)ne + 6, sizeof *fns);
    char **names = xcalloc((size_t)ne + 1, sizeof(char *));
    void **addrs = xcalloc((size_t)ne + 6, sizeof(void *));
    int nfns = codegen_list(x, o, fns, names);
    JitOptions jo = {o->keep_ir, o->opt_level};
    x->jit = jit_compile(&p->g, fns, nfns, &jo, addrs, err, errlen);
    bool ok = x->jit != NULL;
    if (ok) {
        int k = 0;
        if (!x->forward_only) {
            x->step = (NndStepFn)addrs[k++];
            if (p->step_outputs.n > 0)
                x->step_full = (NndStepFn)addrs[k++];
            if (p->accumulate > 1 || p->distributed)
                x->step_accum = (NndStepFn)addrs[k++];
            if (p->distributed)
                x->step_apply = (NndStepFn)addrs[k++];
            if (p->distributed && p->apply_outputs.n > 0)
                x->step_apply_full = (NndStepFn)addrs[k++];
            for (int i = 0; i < ne; i++)
                x->evals[i] = (NndStepFn)addrs[k++];
        }
        if (p->forward)
            x->forward = (NndStepFn)addrs[k++];
        if (o->profile) {
            x->profile = xcalloc((size_t)x->step_sched.kernels.n + 1, sizeof(int64_t));
            if (x->step_full)
                x->profile_full = xcalloc((size_t)x->full_sched.kernels.n + 1, sizeof(int64_t));
        }
        ok = alloc_arena(x, err, errlen);
    }
    for (int i = 0; i < ne; i++)
        free(names[i]);
    free(names);
    free(addrs);
    free(fns);
    if (!ok)
        executable_free(x);
    return ok;
}

/* What every engine's executable starts with. */
static void executable_init(Executable *x, Program *p, Engine engine, const ExecOptions *o)
{
    memset(x, 0, sizeof *x);
    x->p = p;
    x->engine = engine;
    x->max_batch = o->max_batch > 0 ? o->max_batch : p->batch;
    x->forward_only = o->forward_only;
    int ne = p->evals.n;
    x->evals = xcalloc((size_t)(ne ? ne : 1), sizeof(NndStepFn));
    x->eval_user = xcalloc((size_t)(ne ? ne : 1), sizeof(void *));
}

bool executable_build(Executable *x, Program *p, const ExecOptions *o, char *err, size_t errlen)
{
    if (o->engine == ENGINE_INTERP) {
        executable_init(x, p, ENGINE_INTERP, o);
        build_interp(x, p, o);
        grad_sums(x, p);
        return true;
    }
    double t0 = clock_seconds();
    bool ok = build_jit(x, p, o, err, errlen);
    if (ok)
        x->compile_seconds = clock_seconds() - t0;
    return ok;
}

bool executable_plan(Executable *x, Program *p, const ExecOptions *o, char *err, size_t errlen)
{
    executable_init(x, p, ENGINE_JIT, o);
    x->eval_scheds = xcalloc((size_t)(p->evals.n ? p->evals.n : 1), sizeof(Schedule));
    bool ok = schedule_all(x, p, o->check_numerics, err, errlen);
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
        interp_fn_free(x->step_apply_user);
        interp_fn_free(x->step_apply_full_user);
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
        if (x->apply_sched.home)
            schedule_free(&x->apply_sched);
        if (x->apply_full_sched.home)
            schedule_free(&x->apply_full_sched);
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
    free(x->profile_full);
    free(x->grad_sums);
    vec_free(&x->grad_order);
    free(x->grad_early);
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
        sb_printf(out,
                  "step of a micro-batch that only adds to the gradient sums (accumulate = %lld): "
                  "%d kernels\n",
                  (long long)x->p->accumulate, x->accum_sched.kernels.n);
        schedule_print(&x->accum_sched, out);
    }
    sb_printf(out,
              "planned memory: %lld bytes of scratch (the largest of %d functions), "
              "allocated once\n",
              (long long)x->arena_bytes, 1 + x->p->evals.n + (x->p->forward != 0));
}

void executable_dump(const Executable *x, StrBuf *out)
{
    const Program *p = x->p;
    sb_puts(out, "nnd_step: the loss and the updates\n");
    schedule_dump(&x->step_sched, out);
    if (x->full_sched.home) {
        sb_puts(out, "nnd_step_full: the step and the log's statistics (on the logged steps)\n");
        schedule_dump(&x->full_sched, out);
    }
    if (x->accum_sched.home) {
        sb_printf(out,
                  "nnd_step_accum: a micro-batch that only adds to the gradient sums "
                  "(accumulate = %lld)\n",
                  (long long)p->accumulate);
        schedule_dump(&x->accum_sched, out);
    }
    for (int i = 0; i < p->evals.n; i++) {
        sb_printf(out, "nnd_eval%d: the metrics on '%s'\n", i, p->data.v[p->evals.v[i].data].name);
        schedule_dump(&x->eval_scheds[i], out);
    }
    if (x->forward_sched.home) {
        sb_puts(out, "nnd_forward: the model's forward function\n");
        schedule_dump(&x->forward_sched, out);
    }
}

/* One step function's table: its kernels' times per step over `steps` runs. */
static void profile_table(const Executable *x, const Schedule *s, const int64_t *prof,
                          int64_t steps, const char *title, StrBuf *out)
{
    static const char *kinds[] = {"loop", "reduce", "call"};
    int64_t total = 0, update = 0, values = 0;
    for (int k = 0; k < s->kernels.n; k++)
        total += prof[k];
    sb_printf(out, "profile of %s (%lld steps): %.1f us per step in kernels\n", title,
              (long long)steps, 1e-3 * (double)total / (double)steps);
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
            update += prof[k];
        /* a product's rate, at the train block's batch */
        double flops = kr->kind == KER_CALL ? product_flops(s->g, kr->node, x->p->batch) : 0;
        char rate[32] = "";
        if (flops > 0 && prof[k] > 0)
            snprintf(rate, sizeof rate, "  %6.1f GFLOP/s", flops * (double)steps / (double)prof[k]);
        sb_printf(out, "  k%-3d %-6s %-16s %9.2f us  %5.1f%%%s%s\n", k, kinds[kr->kind], sh,
                  1e-3 * (double)prof[k] / (double)steps,
                  total ? 100.0 * (double)prof[k] / (double)total : 0.0, rate,
                  upd ? "  update" : "");
    }
    if (values)
        sb_printf(out, "update rule: %lld parameter values, %.3f ns per value per step\n",
                  (long long)values, (double)update / (double)steps / (double)values);
}

void executable_profile(const Executable *x, int64_t steps, int64_t full_steps, StrBuf *out)
{
    if (x->profile && steps > 0)
        profile_table(x, &x->step_sched, x->profile, steps, "the step", out);
    if (x->profile_full && full_steps > 0)
        profile_table(x, &x->full_sched, x->profile_full, full_steps,
                      "the step with the log's statistics", out);
}
