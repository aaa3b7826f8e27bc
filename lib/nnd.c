/* libnnd: the C API of include/nnd.h over the compiler (compile.h), the
 * executable (compiled code or the interpreter) and the model's buffers.
 *
 * A handle owns one Frontend (the program's spans point into its sources), one
 * Program, one Executable, one Model and one thread pool; nothing is shared
 * between handles.  Calls that run code set the thread's floating-point mode as
 * the compiled code expects (denormals flushed) and put the caller's back. */
#define _POSIX_C_SOURCE 200809L
#include "nnd.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile.h"
#include "executable.h"
#include "model.h"

struct NndProgram {
    Frontend fe;
    Program *p; /* NULL after errors */
    Executable x;
    bool built;
    Model m;
    NndPool *pool;
    double *hypers;
    void **eval_params; /* with `ema`: the averages in place of the parameters */
    bool weights; /* every parameter and layer state has a value */
    bool *set; /* per tensor (params, then layer states): given by nnd_set_param */
    NndStepCounter count; /* updates done (the `step` the program sees), micro-batches */
    double *out; /* scratch for outputs, as doubles */
    size_t out_cap;
    char *y_zero; /* a zero y for the functions that read no y */
    char *err; /* the last failure, or "" */
    NndDiagnostic *diags;
    int ndiags;
    char *diag_text; /* the strings the diagnostics point into */
};

/* ---- small things ---- */

const char *nnd_version(void) { return NND_VERSION; }
int nnd_version_number(void) { return NND_VERSION_NUMBER; }

const char *nnd_status_name(int status)
{
    static const char *const names[] = {"NND_OK",         "NND_EPROGRAM",  "NND_EMISUSE",
                                        "NND_EIO",        "NND_ENOTFOUND", "NND_EDATA",
                                        "NND_ENONFINITE", "NND_EINTERNAL"};
    return status >= 0 && status < (int)NND_ARRAY_LEN(names) ? names[status] : "unknown status";
}

static int fail(NndProgram *h, int status, const char *fmt, ...) NND_PRINTF(3, 4);
static int fail(NndProgram *h, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    free(h->err);
    h->err = xstrdup(msg);
    return status;
}

static int ok(NndProgram *h)
{
    if (h->err[0]) {
        free(h->err);
        h->err = xstrdup("");
    }
    return NND_OK;
}

const char *nnd_errmsg(const NndProgram *h)
{
    return h ? h->err
             : "nnd: the handle is NULL (nnd_open failed to allocate one, or was not "
               "called)";
}

/* ---- opening ---- */

/* The diagnostics as records and text; the strings are copied into h. */
static void keep_diagnostics(NndProgram *h)
{
    Diags *d = &h->fe.diags;
    char *text = diags_render(d);
    free(h->err);
    h->err = text;
    h->ndiags = d->v.n;
    h->diags = xcalloc((size_t)(d->v.n ? d->v.n : 1), sizeof(NndDiagnostic));
    StrBuf b = {0};
    size_t *at = xcalloc((size_t)(d->v.n ? d->v.n : 1) * 3, sizeof(size_t));
    for (int i = 0; i < d->v.n; i++) {
        const Diag *g = &d->v.v[i];
        SourceFile *f = g->span.file ? source_map_get(&h->fe.sm, g->span.file) : NULL;
        NndDiagnostic *o = &h->diags[i];
        o->severity = g->level == DIAG_ERROR     ? NND_SEVERITY_ERROR
                      : g->level == DIAG_WARNING ? NND_SEVERITY_WARNING
                                                 : NND_SEVERITY_NOTE;
        if (f) {
            source_line_col(f, g->span.start, &o->line, &o->column);
            source_line_col(f, g->span.end, &o->end_line, &o->end_column);
        }
        /* offsets first: b moves as it grows */
        const char *parts[3] = {f ? f->path : "", g->msg, g->label ? g->label : ""};
        for (int k = 0; k < 3; k++) {
            at[3 * i + k] = b.len;
            sb_puts(&b, parts[k]);
            sb_putc(&b, 0);
        }
    }
    h->diag_text = b.s;
    for (int i = 0; i < d->v.n; i++) {
        const Diag *g = &d->v.v[i];
        h->diags[i].file = g->span.file ? b.s + at[3 * i] : NULL;
        h->diags[i].message = b.s + at[3 * i + 1];
        h->diags[i].label = g->label ? b.s + at[3 * i + 2] : NULL;
    }
    free(at);
}

static int check_options(NndProgram *h, const NndOpenOptions *o)
{
    if (o->dtype != NND_F32 && o->dtype != NND_F64)
        return fail(h, NND_EMISUSE, "nnd_open: dtype must be NND_F32 or NND_F64, got %d",
                    (int)o->dtype);
    if (o->threads < 0 || o->threads > 256)
        return fail(h, NND_EMISUSE,
                    "nnd_open: threads must be 0 (one per CPU the process may use) to 256, got %d",
                    o->threads);
    if (o->max_batch < 0)
        return fail(h, NND_EMISUSE,
                    "nnd_open: max_batch must be 0 (the program's batch) or more, "
                    "got %lld",
                    (long long)o->max_batch);
    if (o->noverrides < 0 || (o->noverrides > 0 && !o->overrides))
        return fail(h, NND_EMISUSE, "nnd_open: %d overrides but no array of them", o->noverrides);
    NndErr env;
    if (nnd_check_env(&env) != 0)
        return fail(h, NND_EMISUSE, "nnd_open: %s", env.msg);
    for (int i = 0; i < o->noverrides; i++) {
        const char *why = NULL;
        if (!o->overrides[i] || !compile_parse_override(o->overrides[i], NULL, &why)) {
            if (why) /* a number, but not a finite decimal one */
                return fail(h, NND_EMISUSE, "nnd_open: override %d '%s': %s", i, o->overrides[i],
                            why);
            return fail(h, NND_EMISUSE,
                        "nnd_open: override %d must be NAME=VALUE, like opt.lr=3e-4, got '%s'", i,
                        o->overrides[i] ? o->overrides[i] : "(NULL)");
        }
    }
    return NND_OK;
}

/* Compiles h's program (from path, or from source under that name). */
static int compile_program(NndProgram *h, const char *path, const char *source,
                           const NndOpenOptions *o)
{
    if (o->stdlib) {
        free(h->fe.stdlib_dir);
        h->fe.stdlib_dir = xstrdup(o->stdlib);
    }
    Override *ov = xcalloc((size_t)(o->noverrides ? o->noverrides : 1), sizeof(Override));
    for (int i = 0; i < o->noverrides; i++)
        compile_parse_override(o->overrides[i], &ov[i], NULL);
    CompileOptions co = {.float_dtype = o->dtype, .overrides = ov, .noverrides = o->noverrides};
    h->p = compile(&h->fe, path, source, &co);
    if (h->p) /* one that trains nothing is still opened (to evaluate): a warning */
        program_report_idle(h->p, &h->fe.diags, false);
    for (int i = 0; i < o->noverrides; i++)
        free((char *)ov[i].key);
    free(ov);
    keep_diagnostics(h);
    if (!h->p) {
        /* a file that could not be read is the only diagnostic without a place */
        bool io = h->ndiags == 1 && !h->diags[0].file && !source;
        return io ? NND_EIO : NND_EPROGRAM;
    }
    free(h->err);
    h->err = xstrdup("");
    return NND_OK;
}

/* The executable, the model's buffers, the pool and the hyper-parameters. */
static int prepare(NndProgram *h, const NndOpenOptions *o)
{
    Program *p = h->p;
    char err[1024] = "";
    ExecOptions eo = {.engine = o->interpret ? ENGINE_INTERP : ENGINE_JIT,
                      .max_batch = o->max_batch};
    if (!executable_build(&h->x, p, &eo, err, sizeof err))
        return fail(h, NND_EINTERNAL, "nnd: compiling the program failed: %s", err);
    h->built = true;
    if (!model_init(p, &h->m, err, sizeof err))
        return fail(h, NND_EINTERNAL, "nnd: setting up the model's tensors failed: %s", err);
    int nt = p->params.n + p->states.n;
    h->set = xcalloc((size_t)(nt ? nt : 1), 1);
    NndErr e;
    h->pool = nnd_pool_create(o->threads, &e);
    if (!h->pool)
        return fail(h, NND_EINTERNAL, "nnd: %s", e.msg);
    h->hypers = program_hyper_values(p);
    h->hypers[p->hyper_steps] = (double)program_total_steps(p);
    h->eval_params = model_eval_params(p, &h->m);
    size_t ysample = nnd_dtype_size((NndDType)graph_node(&p->g, p->y)->dtype);
    const Shape *ys = &graph_node(&p->g, p->y)->shape;
    for (int i = 1; i < ys->rank; i++)
        ysample *= (size_t)ys->d[i];
    h->y_zero = xcalloc((size_t)h->x.max_batch * ysample + 64, 1);
    return NND_OK;
}

static int open_program(const char *path, const char *source, bool from_string,
                        const NndOpenOptions *opts, NndProgram **out)
{
    if (!out)
        return NND_EMISUSE;
    NndProgram *h = calloc(1, sizeof *h);
    *out = h;
    if (!h)
        return NND_EINTERNAL;
    h->err = xstrdup("");
    frontend_init(&h->fe);
    static const NndOpenOptions defaults = {0};
    const NndOpenOptions *o = opts ? opts : &defaults;
    if (!path || !path[0])
        return fail(h, NND_EMISUSE,
                    from_string ? "nnd_open_string: the name is %s" : "nnd_open: the path is %s",
                    path ? "empty" : "NULL");
    if (from_string && !source)
        return fail(h, NND_EMISUSE, "nnd_open_string: the source is NULL");
    int rc = check_options(h, o);
    if (rc == NND_OK)
        rc = compile_program(h, path, source, o);
    if (rc == NND_OK) {
        unsigned f = nnd_fp_enter();
        rc = prepare(h, o);
        nnd_fp_leave(f);
    }
    return rc;
}

int nnd_open(const char *path, const NndOpenOptions *opts, NndProgram **out)
{
    return open_program(path, NULL, false, opts, out);
}

int nnd_open_string(const char *name, const char *source, const NndOpenOptions *opts,
                    NndProgram **out)
{
    return open_program(name, source, true, opts, out);
}

void nnd_close(NndProgram *h)
{
    if (!h)
        return;
    if (h->built)
        executable_free(&h->x);
    model_free(&h->m);
    nnd_pool_destroy(h->pool);
    program_free(h->p);
    frontend_free(&h->fe);
    free(h->hypers);
    free(h->eval_params);
    free(h->set);
    free(h->out);
    free(h->y_zero);
    free(h->err);
    free(h->diags);
    free(h->diag_text);
    free(h);
}

int nnd_diagnostic_count(const NndProgram *h) { return h ? h->ndiags : 0; }

int nnd_diagnostic(const NndProgram *hc, int i, NndDiagnostic *out)
{
    NndProgram *h = (NndProgram *)hc;
    if (!h)
        return NND_EMISUSE;
    if (!out)
        return fail(h, NND_EMISUSE, "nnd_diagnostic: out is NULL");
    if (h->ndiags == 0)
        return fail(h, NND_EMISUSE, "nnd_diagnostic: index %d, but there are no diagnostics", i);
    if (i < 0 || i >= h->ndiags)
        return fail(h, NND_EMISUSE, "nnd_diagnostic: index %d out of range 0 to %d", i,
                    h->ndiags - 1);
    *out = h->diags[i];
    return NND_OK; /* reading them leaves nnd_open's message (the same diagnostics) */
}

/* ---- what the program takes and gives ---- */

/* h is usable: not NULL, and its program compiled. */
static int need(NndProgram *h, const char *fn)
{
    if (!h)
        return NND_EMISUSE;
    if (!h->p)
        return fail(h, NND_EMISUSE, "%s: the program did not compile (nnd_open returned %s)", fn,
                    h->ndiags ? "NND_EPROGRAM" : "an error");
    return NND_OK;
}

static void shape_info(const Program *p, const Shape *s, NndDType dt, const char *name,
                       NndTensorInfo *out)
{
    memset(out, 0, sizeof *out);
    out->name = name;
    out->dtype = dt;
    out->rank = s->rank;
    out->sample_bytes = nnd_dtype_size(dt);
    for (int i = 0; i < s->rank; i++) {
        out->shape[i] = s->d[i] < 0 ? NND_BATCH : s->d[i];
        if (s->d[i] >= 0)
            out->sample_bytes *= (size_t)s->d[i];
    }
    (void)p;
}

static void node_info(const Program *p, NodeId n, const char *name, NndTensorInfo *out)
{
    const Node *x = graph_node((Graph *)&p->g, n);
    shape_info(p, &x->shape, (NndDType)x->dtype, name, out);
}

int nnd_input_info(const NndProgram *hc, const char *name, NndTensorInfo *out)
{
    NndProgram *h = (NndProgram *)hc;
    int rc = need(h, "nnd_input_info");
    if (rc)
        return rc;
    if (!name || !out)
        return fail(h, NND_EMISUSE, "nnd_input_info: name and out must not be NULL");
    if (strcmp(name, "x") && strcmp(name, "y"))
        return fail(h, NND_ENOTFOUND, "nnd_input_info: the inputs are \"x\" and \"y\", not '%s'",
                    name);
    node_info(h->p, name[0] == 'x' ? h->p->x : h->p->y, name[0] == 'x' ? "x" : "y", out);
    return ok(h);
}

int nnd_output_info(const NndProgram *hc, NndTensorInfo *out)
{
    NndProgram *h = (NndProgram *)hc;
    int rc = need(h, "nnd_output_info");
    if (rc)
        return rc;
    if (!out)
        return fail(h, NND_EMISUSE, "nnd_output_info: out is NULL");
    if (!h->p->forward)
        return fail(h, NND_ENOTFOUND,
                    "the program has no forward function: the train block's "
                    "first model does not take x alone");
    node_info(h->p, h->p->forward, "forward", out);
    return ok(h);
}

/* The model's tensors in API order: parameters, then layer states. */
static int tensor_count(const Program *p)
{
    int n = p->params.n;
    for (int i = 0; i < p->states.n; i++)
        n += p->states.v[i].param < 0;
    return n;
}

/* Tensor i of the API order: its name, buffer, flag index in h->set. */
static NndTensor *tensor_at(NndProgram *h, int i, const char **name, bool *trainable)
{
    const Program *p = h->p;
    if (i < p->params.n) {
        *name = p->params.v[i].name;
        *trainable = !p->params.v[i].frozen;
        return &h->m.params[i];
    }
    i -= p->params.n;
    for (int k = 0; k < p->states.n; k++)
        if (p->states.v[k].param < 0 && i-- == 0) {
            *name = p->states.v[k].name;
            *trainable = false;
            return &h->m.states[k];
        }
    return NULL;
}

static int tensor_find(NndProgram *h, const char *name)
{
    int n = tensor_count(h->p);
    for (int i = 0; i < n; i++) {
        const char *nm = "";
        bool tr;
        tensor_at(h, i, &nm, &tr);
        if (strcmp(nm, name) == 0)
            return i;
    }
    return -1;
}

int nnd_param_count(const NndProgram *h) { return h && h->p ? tensor_count(h->p) : 0; }

int nnd_param_info(const NndProgram *hc, int i, NndTensorInfo *out)
{
    NndProgram *h = (NndProgram *)hc;
    int rc = need(h, "nnd_param_info");
    if (rc)
        return rc;
    if (!out || i < 0 || i >= tensor_count(h->p))
        return fail(h, NND_EMISUSE, "nnd_param_info: index %d out of range 0 to %d (or out NULL)",
                    i, tensor_count(h->p) - 1);
    const char *name;
    bool tr;
    NndTensor *t = tensor_at(h, i, &name, &tr);
    Shape s = {t->rank, {0}};
    memcpy(s.d, t->shape, sizeof(int64_t) * (size_t)t->rank);
    shape_info(h->p, &s, t->dtype, name, out);
    out->trainable = tr;
    return ok(h);
}

static int tensor_io(NndProgram *h, const char *fn, const char *name, size_t bytes, int *idx,
                     NndTensor **t)
{
    int rc = need(h, fn);
    if (rc)
        return rc;
    if (!name)
        return fail(h, NND_EMISUSE, "%s: the name is NULL", fn);
    *idx = tensor_find(h, name);
    if (*idx < 0)
        return fail(h, NND_ENOTFOUND, "%s: the model has no tensor '%s'", fn, name);
    const char *nm = "";
    bool tr;
    *t = tensor_at(h, *idx, &nm, &tr);
    size_t want = (size_t)nnd_tensor_numel(*t) * nnd_dtype_size((*t)->dtype);
    if (bytes != want)
        return fail(h, NND_EMISUSE, "%s: '%s' is %zu bytes (%lld %s values), not %zu", fn, name,
                    want, (long long)nnd_tensor_numel(*t), nnd_dtype_name((*t)->dtype), bytes);
    return NND_OK;
}

int nnd_get_param(NndProgram *h, const char *name, void *buf, size_t bytes)
{
    int idx;
    NndTensor *t;
    int rc = tensor_io(h, "nnd_get_param", name, bytes, &idx, &t);
    if (rc)
        return rc;
    if (!buf)
        return fail(h, NND_EMISUSE, "nnd_get_param: buf is NULL");
    memcpy(buf, t->data, bytes);
    return ok(h);
}

/* The tensors whose state follows the weights (eval reads averages with `ema`). */
static void bind_eval_params(NndProgram *h)
{
    const Program *p = h->p;
    if (!h->eval_params)
        return;
    for (int i = 0; i < p->params.n; i++) {
        int s = p->params.v[i].ema_state;
        h->eval_params[i] = s >= 0 ? h->m.state_ptrs[s] : h->m.param_ptrs[i];
    }
}

int nnd_set_param(NndProgram *h, const char *name, const void *buf, size_t bytes)
{
    int idx;
    NndTensor *t;
    int rc = tensor_io(h, "nnd_set_param", name, bytes, &idx, &t);
    if (rc)
        return rc;
    if (!buf)
        return fail(h, NND_EMISUSE, "nnd_set_param: buf is NULL");
    memcpy(t->data, buf, bytes);
    h->set[idx] = true;
    int n = tensor_count(h->p);
    bool all = true;
    for (int i = 0; i < n; i++)
        all &= h->set[i];
    if (all && !h->weights) {
        char err[1024] = "";
        if (!model_restart_optimizer(h->p, &h->m, err, sizeof err))
            return fail(h, NND_EINTERNAL, "nnd_set_param: %s", err);
        h->weights = true;
    }
    return ok(h);
}

/* ---- weights ---- */

int nnd_init_weights(NndProgram *h)
{
    int rc = need(h, "nnd_init_weights");
    if (rc)
        return rc;
    char err[1024] = "";
    Model m;
    unsigned f = nnd_fp_enter();
    bool good = model_init(h->p, &m, err, sizeof err);
    nnd_fp_leave(f);
    if (!good)
        return fail(h, NND_EINTERNAL, "nnd_init_weights: %s", err);
    model_free(&h->m);
    h->m = m;
    bind_eval_params(h);
    h->weights = true;
    memset(h->set, 1, (size_t)tensor_count(h->p));
    return ok(h);
}

int nnd_load_weights(NndProgram *h, const char *path)
{
    int rc = need(h, "nnd_load_weights");
    if (rc)
        return rc;
    if (!path || !path[0])
        return fail(h, NND_EMISUSE, "nnd_load_weights: the path is %s", path ? "empty" : "NULL");
    char err[1024] = "";
    int nopt;
    unsigned f = nnd_fp_enter();
    bool good = model_load(h->p, &h->m, path, &nopt, err, sizeof err);
    nnd_fp_leave(f);
    if (!good) {
        h->weights = false; /* some tensors may hold the file's values, some not */
        memset(h->set, 0, (size_t)tensor_count(h->p));
        return fail(h, NND_EIO, "%s", err);
    }
    h->weights = true;
    memset(h->set, 1, (size_t)tensor_count(h->p));
    return ok(h);
}

int nnd_save_weights(NndProgram *h, const char *path)
{
    int rc = need(h, "nnd_save_weights");
    if (rc)
        return rc;
    if (!path || !path[0])
        return fail(h, NND_EMISUSE, "nnd_save_weights: the path is %s", path ? "empty" : "NULL");
    if (!h->weights)
        return fail(h, NND_EMISUSE, "nnd_save_weights: the model has no weights yet");
    char err[1024] = "";
    if (!model_save(h->p, &h->m, path, h->count.step, err, sizeof err))
        return fail(h, NND_EIO, "%s", err);
    return ok(h);
}

/* ---- running ---- */

static double *scratch(NndProgram *h, size_t n)
{
    if (n > h->out_cap) {
        free(h->out);
        h->out = xcalloc(n, sizeof(double));
        h->out_cap = n;
    }
    return h->out;
}

/* The arguments common to every call: x and y are batch samples. */
static int runnable(NndProgram *h, const char *fn, const void *x, size_t x_bytes, const void *y,
                    size_t y_bytes, bool with_y, int64_t batch)
{
    int rc = need(h, fn);
    if (rc)
        return rc;
    if (!x || (with_y && !y))
        return fail(h, NND_EMISUSE, "%s: %s is NULL", fn, !x ? "x" : "y");
    if (batch < 1)
        return fail(h, NND_EMISUSE, "%s: batch must be at least 1, got %lld", fn, (long long)batch);
    NndTensorInfo xi, yi;
    node_info(h->p, h->p->x, "x", &xi);
    node_info(h->p, h->p->y, "y", &yi);
    if (x_bytes != xi.sample_bytes * (size_t)batch)
        return fail(h, NND_EMISUSE, "%s: x_bytes is %zu, but %lld samples of x are %zu bytes", fn,
                    x_bytes, (long long)batch, xi.sample_bytes * (size_t)batch);
    if (with_y && y_bytes != yi.sample_bytes * (size_t)batch)
        return fail(h, NND_EMISUSE, "%s: y_bytes is %zu, but %lld samples of y are %zu bytes", fn,
                    y_bytes, (long long)batch, yi.sample_bytes * (size_t)batch);
    if (!h->weights)
        return fail(h, NND_EMISUSE,
                    "%s: the model has no weights yet: call nnd_load_weights, nnd_init_weights, "
                    "or nnd_set_param for every tensor first",
                    fn);
    return NND_OK;
}

/* After a call of compiled code: its status as ours. */
static int call_status(NndProgram *h, const NndStepArgs *a, const char *what)
{
    if (a->status == 0)
        return NND_OK;
    char msg[512];
    nnd_step_status_message(a, what, msg, sizeof msg);
    int code = a->status == NND_STATUS_LABEL_RANGE || a->status == NND_STATUS_INDEX_RANGE
                   ? NND_EDATA
               : a->status == NND_STATUS_NONFINITE ? NND_ENONFINITE
                                                   : NND_EINTERNAL;
    return fail(h, code, "%s", msg);
}

static NndStepArgs step_args(NndProgram *h, bool eval, const void *x, const void *y, int64_t b,
                             double *out, void *user)
{
    return (NndStepArgs){.params = eval && h->eval_params ? h->eval_params : h->m.param_ptrs,
                         .states = h->m.state_ptrs,
                         .x = x,
                         .y = y ? y : h->y_zero,
                         .hypers = h->hypers,
                         .batch = b,
                         .arena = h->x.arena,
                         .out = out,
                         .pool = h->pool,
                         .user = user};
}

int nnd_forward(NndProgram *h, const void *x, size_t x_bytes, int64_t batch, void *out,
                size_t out_bytes)
{
    int rc = runnable(h, "nnd_forward", x, x_bytes, NULL, 0, false, batch);
    if (rc)
        return rc;
    if (!h->x.forward)
        return fail(h, NND_ENOTFOUND,
                    "nnd_forward: the program has no forward function: the "
                    "train block's first model does not take x alone");
    NndTensorInfo xi, oi;
    node_info(h->p, h->p->x, "x", &xi);
    node_info(h->p, h->p->forward, "forward", &oi);
    if (!out)
        return fail(h, NND_EMISUSE, "nnd_forward: out is NULL");
    if (out_bytes != oi.sample_bytes * (size_t)batch)
        return fail(h, NND_EMISUSE, "nnd_forward: out_bytes is %zu, but %lld outputs are %zu bytes",
                    out_bytes, (long long)batch, oi.sample_bytes * (size_t)batch);
    int64_t per = (int64_t)(oi.sample_bytes / nnd_dtype_size(oi.dtype));
    double *tmp = scratch(h, (size_t)(h->x.max_batch * per) + 1);
    unsigned f = nnd_fp_enter();
    for (int64_t at = 0; at < batch && rc == NND_OK; at += h->x.max_batch) {
        int64_t b = batch - at < h->x.max_batch ? batch - at : h->x.max_batch;
        NndStepArgs a = step_args(h, true, (const char *)x + (size_t)at * xi.sample_bytes, NULL, b,
                                  tmp, h->x.forward_user);
        h->x.forward(&a);
        rc = call_status(h, &a, "nnd_forward");
        if (rc == NND_OK)
            nnd_store_values(tmp, b * per, oi.dtype, (char *)out + (size_t)at * oi.sample_bytes);
    }
    nnd_fp_leave(f);
    return rc ? rc : ok(h);
}

int nnd_step(NndProgram *h, const void *x, size_t x_bytes, const void *y, size_t y_bytes,
             int64_t batch, double *loss)
{
    int rc = runnable(h, "nnd_step", x, x_bytes, y, y_bytes, true, batch);
    if (rc)
        return rc;
    Program *p = h->p;
    if (!h->x.step)
        return fail(h, NND_EMISUSE, "nnd_step: the program was opened without its step");
    if (batch > h->x.max_batch)
        return fail(h, NND_EMISUSE,
                    "nnd_step: batch %lld is larger than max_batch %lld (a step is one batch: "
                    "open with a larger max_batch)",
                    (long long)batch, (long long)h->x.max_batch);
    int64_t k = p->accumulate > 1 && h->x.step_accum ? p->accumulate : 1;
    bool last = nnd_step_counter_begin(&h->count, k, batch, h->hypers, p->hyper_step, p->hyper_t,
                                       p->hyper_micro, p->hyper_accum);
    double *out = scratch(h, (size_t)p->step_outputs.n + 2);
    NndStepArgs a =
        step_args(h, false, x, y, batch, out, last ? h->x.step_user : h->x.step_accum_user);
    unsigned f = nnd_fp_enter();
    (last ? h->x.step : h->x.step_accum)(&a);
    nnd_fp_leave(f);
    rc = call_status(h, &a, "nnd_step");
    if (rc)
        return rc;
    nnd_step_counter_end(&h->count, last, batch);
    if (loss)
        *loss = out[0];
    if (!isfinite(out[0]))
        return fail(h, NND_ENONFINITE, "nnd_step: the loss is %s at step %lld",
                    isnan(out[0]) ? "NaN" : "infinite", (long long)h->count.step);
    return ok(h);
}

int nnd_eval_count(const NndProgram *h) { return h && h->p ? h->p->evals.n : 0; }

static bool eval_ok(const NndProgram *h, int which)
{
    return h && h->p && which >= 0 && which < h->p->evals.n;
}

const char *nnd_eval_data(const NndProgram *h, int which)
{
    return eval_ok(h, which) ? h->p->data.v[h->p->evals.v[which].data].name : NULL;
}

int nnd_metric_count(const NndProgram *h, int which)
{
    return eval_ok(h, which) ? h->p->evals.v[which].metrics.n : 0;
}

const char *nnd_metric_name(const NndProgram *h, int which, int k)
{
    if (!eval_ok(h, which) || k < 0 || k >= h->p->evals.v[which].metrics.n)
        return NULL;
    return h->p->evals.v[which].metrics.v[k].name;
}

int nnd_evaluate(NndProgram *h, int which, const void *x, size_t x_bytes, const void *y,
                 size_t y_bytes, int64_t batch, double *values)
{
    int rc = runnable(h, "nnd_evaluate", x, x_bytes, y, y_bytes, true, batch);
    if (rc)
        return rc;
    if (!eval_ok(h, which) || !values)
        return fail(h, NND_EMISUSE, "nnd_evaluate: eval %d out of range 0 to %d (or values NULL)",
                    which, h->p->evals.n - 1);
    if (!h->x.evals[which])
        return fail(h, NND_EMISUSE, "nnd_evaluate: the program was opened without its metrics");
    int nm = h->p->evals.v[which].metrics.n;
    NndTensorInfo xi, yi;
    node_info(h->p, h->p->x, "x", &xi);
    node_info(h->p, h->p->y, "y", &yi);
    double *tmp = scratch(h, (size_t)nm + 1);
    double *sum = xcalloc((size_t)nm + 1, sizeof(double));
    unsigned f = nnd_fp_enter();
    for (int64_t at = 0; at < batch && rc == NND_OK; at += h->x.max_batch) {
        int64_t b = batch - at < h->x.max_batch ? batch - at : h->x.max_batch;
        NndStepArgs a = step_args(h, true, (const char *)x + (size_t)at * xi.sample_bytes,
                                  (const char *)y + (size_t)at * yi.sample_bytes, b, tmp,
                                  h->x.eval_user[which]);
        h->x.evals[which](&a);
        rc = call_status(h, &a, "nnd_evaluate");
        for (int k = 0; k < nm; k++)
            sum[k] += tmp[k] * (double)b;
    }
    nnd_fp_leave(f);
    for (int k = 0; rc == NND_OK && k < nm; k++)
        values[k] = sum[k] / (double)batch;
    free(sum);
    return rc ? rc : ok(h);
}

/* ---- hyper-parameters ---- */

int nnd_hyper_count(const NndProgram *h) { return h && h->p ? h->p->hypers.n : 0; }

const char *nnd_hyper_name(const NndProgram *h, int i)
{
    return h && h->p && i >= 0 && i < h->p->hypers.n ? h->p->hypers.v[i].name : NULL;
}

/* The index of hyper-parameter name in *i, or a failure. */
static int hyper_find(NndProgram *h, const char *fn, const char *name, int *i)
{
    int rc = need(h, fn);
    if (rc)
        return rc;
    if (!name)
        return fail(h, NND_EMISUSE, "%s: the name is NULL", fn);
    for (*i = 0; *i < h->p->hypers.n; ++*i)
        if (strcmp(h->p->hypers.v[*i].name, name) == 0)
            return NND_OK;
    return fail(h, NND_ENOTFOUND, "%s: the program has no hyper-parameter '%s'", fn, name);
}

int nnd_get_hyper(const NndProgram *hc, const char *name, double *value)
{
    NndProgram *h = (NndProgram *)hc;
    int i, rc = hyper_find(h, "nnd_get_hyper", name, &i);
    if (rc)
        return rc;
    if (!value)
        return fail(h, NND_EMISUSE, "nnd_get_hyper: value is NULL");
    *value = i == h->p->hyper_step ? (double)h->count.step : h->hypers[i];
    return ok(h);
}

int nnd_set_hyper(NndProgram *h, const char *name, double value)
{
    int i, rc = hyper_find(h, "nnd_set_hyper", name, &i);
    if (rc)
        return rc;
    Program *p = h->p;
    if (i == p->hyper_t || i == p->hyper_accum || i == p->hyper_micro)
        return fail(h, NND_EMISUSE, "nnd_set_hyper: '%s' is kept by nnd_step%s", name,
                    i == p->hyper_t ? " (it is step + 1: set step)" : "");
    if (!isfinite(value))
        return fail(h, NND_EMISUSE, "nnd_set_hyper: '%s' must be finite, got %g", name, value);
    /* the run's counters, as nnd run's settings take them: steps (the run's total)
     * at least 1, step and epoch (0-based) at least 0; 9e15: below 2^53, where
     * doubles still count exactly */
    if (i == p->hyper_step || i == p->hyper_epoch || i == p->hyper_steps) {
        double min = i == p->hyper_steps ? 1 : 0;
        if (value < min || value > 9e15 || value != floor(value))
            return fail(h, NND_EMISUSE,
                        value > 9e15 ? "nnd_set_hyper: %s must be a whole number from %g to 9e15, "
                                       "got %g"
                                     : "nnd_set_hyper: %s must be a whole number >= %g, got %g",
                        name, min, value);
    }
    if (p->hypers.v[i].baked && value != p->hypers.v[i].value)
        return fail(h, NND_EMISUSE,
                    "nnd_set_hyper: '%s' shaped the compiled code (a shape or a static if): "
                    "open the program again with the override %s=%g",
                    name, name, value);
    if (i == p->hyper_step)
        h->count.step = (int64_t)value;
    h->hypers[i] = value;
    return ok(h);
}
