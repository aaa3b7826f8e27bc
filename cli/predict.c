/* predict: `nnd predict FILE --weights W (--data NAME | --input FILE [--labels FILE])
 * [-o OUT.npy|OUT.csv] [--batch N] [--top K] [--metrics]`.
 *
 * Runs the program's forward function (the train block's first model applied to
 * x, in eval mode: dropout off, batch norm on its running statistics) over every
 * sample of a data set of the program or of a file, in batches, with trained
 * weights.  Input files are read as the training data is (its scale, its sample
 * shape).  Writes the outputs (NPY or CSV; CSV to standard output without -o), or
 * with --top K each sample's K likeliest classes and their probabilities; with
 * labels, prints the top-1 accuracy, and with --metrics the train block's eval
 * metrics over the data. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "jit.h"

typedef struct Inputs {
    const char *name; /* the data set's name, or the input file's path */
    const char *y_name; /* where the labels come from: name, or the labels file */
    NndTensor x, y; /* owned unless borrowed */
    bool borrowed; /* x and y belong to the program's data set */
    bool has_y;
} Inputs;

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The training set's sample shape on x (when its element count agrees), then x's
 * samples checked against what the model takes. */
static bool fit_samples(const Program *p, const char *file, NndTensor *x)
{
    const DataSet *td = &p->data.v[p->train_data];
    int64_t have = 1;
    for (int d = 1; d < x->rank; d++)
        have *= x->shape[d];
    if (td->reshape_rank >= 0) {
        int64_t want = 1;
        for (int d = 0; d < td->reshape_rank; d++)
            want *= td->reshape[d];
        if (want == have) {
            x->rank = td->reshape_rank + 1;
            memcpy(x->shape + 1, td->reshape, sizeof(int64_t) * (size_t)td->reshape_rank);
        }
    }
    const Node *xn = graph_node((Graph *)&p->g, p->x);
    if (x->dtype != xn->dtype) {
        fprintf(stderr, "nnd: %s: samples are %s, but the model takes %s\n", file,
                nnd_dtype_name(x->dtype), nnd_dtype_name(xn->dtype));
        return false;
    }
    const Shape *ms = &xn->shape;
    bool same = x->rank == ms->rank;
    for (int d = 1; same && d < ms->rank; d++)
        same = x->shape[d] == ms->d[d];
    if (!same) {
        char h[128], w[128];
        nnd_shape_text(h, sizeof h, x->rank - 1, x->shape + 1);
        nnd_shape_text(w, sizeof w, ms->rank - 1, (const int64_t *)ms->d + 1);
        fprintf(stderr, "nnd: %s: samples are %s, but the model takes %s\n", file, h, w);
        return false;
    }
    if (x->shape[0] == 0) {
        fprintf(stderr, "nnd: %s: no samples\n", file);
        return false;
    }
    return true;
}

/* The labels of a file as the model takes them, the training set's per-sample shape
 * and dtype: integers become floats for a model of float labels, and floats that
 * are whole numbers become class indices (as a CSV's class column reads "2.0"). */
static bool fit_labels(const Program *p, const char *file, NndTensor *y)
{
    const DataSet *td = &p->data.v[p->train_data];
    NndDType dtype = (NndDType)graph_node((Graph *)&p->g, p->y)->dtype;
    int64_t have = 1, want = 1;
    for (int d = 1; d < y->rank; d++)
        have *= y->shape[d];
    for (int d = 0; d < td->y_rank; d++)
        want *= td->y_shape[d];
    if (have != want) {
        char h[128], w[128];
        nnd_shape_text(h, sizeof h, y->rank - 1, y->shape + 1);
        nnd_shape_text(w, sizeof w, td->y_rank, td->y_shape);
        fprintf(stderr, "nnd: %s: labels are %s, but the model takes %s\n", file, h, w);
        return false;
    }
    y->rank = td->y_rank + 1;
    memcpy(y->shape + 1, td->y_shape, sizeof(int64_t) * (size_t)td->y_rank);
    if (y->dtype == dtype)
        return true;
    NndTensor t;
    NndErr e;
    if (nnd_tensor_alloc(&t, dtype, y->rank, y->shape, &e) != 0) {
        fprintf(stderr, "nnd: %s: %s\n", file, e.msg);
        return false;
    }
    for (int64_t i = 0, n = nnd_tensor_numel(y); i < n; i++) {
        double v = nnd_tensor_value(y, i);
        if (dtype == NND_I32 && (v != floor(v) || v < INT32_MIN || v > INT32_MAX)) {
            fprintf(stderr,
                    "nnd: %s: label %.9g at sample %lld is not a class index (a whole number); "
                    "the model takes integer labels\n",
                    file, v, (long long)(i / (want ? want : 1)));
            nnd_tensor_free(&t);
            return false;
        }
        nnd_store_values(&v, 1, dtype, (char *)t.data + (size_t)i * nnd_dtype_size(dtype));
    }
    nnd_tensor_free(y);
    *y = t;
    return true;
}

/* --input FILE (and --labels FILE): NPY, CSV (the training CSV's columns) or IDX. */
static bool load_file(const Program *p, const Options *o, Inputs *in)
{
    const DataSet *td = &p->data.v[p->train_data];
    NndLoadOptions lo = {td->scale, p->float_dtype};
    NndErr e;
    int rc;
    in->name = in->y_name = o->input;
    if (ends_with(o->input, ".csv") || ends_with(o->input, ".csv.gz")) {
        rc = nnd_csv_load(o->input, td->kind == DATA_CSV ? td->label : NULL,
                          td->kind == DATA_CSV && td->classes, &lo, &in->x, &in->y, &e);
        in->has_y = rc == 0;
    } else {
        /* a model of tokens (x: [B, T] i32) reads integers as they are */
        NndRole role =
            graph_node((Graph *)&p->g, p->x)->dtype == NND_I32 ? NND_LABELS : NND_FEATURES;
        rc = ends_with(o->input, ".npy") ? nnd_npy_load(o->input, role, &lo, &in->x, &e)
                                         : nnd_idx_load(o->input, role, &lo, &in->x, &e);
    }
    if (rc == 0 && o->labels) {
        nnd_tensor_free(&in->y);
        rc = ends_with(o->labels, ".npy") ? nnd_npy_load(o->labels, NND_LABELS, &lo, &in->y, &e)
                                          : nnd_idx_load(o->labels, NND_LABELS, &lo, &in->y, &e);
        in->has_y = rc == 0;
        in->y_name = o->labels;
        if (rc == 0 && in->y.shape[0] != in->x.shape[0]) {
            fprintf(stderr, "nnd: %s has %lld labels for the %lld samples of %s\n", o->labels,
                    (long long)in->y.shape[0], (long long)in->x.shape[0], o->input);
            return false;
        }
    }
    if (rc != 0) {
        fprintf(stderr, "nnd: %s\n", e.msg);
        return false;
    }
    return fit_samples(p, o->input, &in->x) && (!in->has_y || fit_labels(p, in->y_name, &in->y));
}

static bool load_inputs(Program *p, Frontend *fe, const Options *o, Inputs *in)
{
    if (!o->data == !o->input) {
        cli_usage_error("%s", "predict needs one of --data NAME (a data set of the program) or "
                              "--input FILE");
        return false;
    }
    if (o->input)
        return load_file(p, o, in);
    for (int i = 0; i < p->data.n; i++)
        if (strcmp(p->data.v[i].name, o->data) == 0) {
            if (p->data.v[i].kind == DATA_TEXT) {
                fprintf(stderr,
                        "nnd: '%s' is a text data set (windows of a token sequence); "
                        "predict takes separate samples: --input FILE of token rows\n",
                        o->data);
                return false;
            }
            if (!program_load_dataset(p, i, &fe->diags))
                return false;
            in->name = in->y_name = o->data;
            in->x = p->data.v[i].x;
            in->y = p->data.v[i].y;
            in->borrowed = in->has_y = true;
            return fit_samples(p, o->data, &in->x);
        }
    StrBuf names = {0};
    for (int i = 0; i < p->data.n; i++)
        sb_printf(&names, "%s'%s'", i ? ", " : "", p->data.v[i].name);
    fprintf(stderr, "nnd: the program has no data set '%s' (it has %s)\n", o->data, names.s);
    sb_free(&names);
    return false;
}

/* The first of the samples [at, at + b) of t that holds v, or -1. */
static int64_t sample_holding(const NndTensor *t, int64_t at, int64_t b, double v)
{
    if (!t->data || t->rank < 1 || t->shape[0] < 1 || t->dtype == NND_BOOL)
        return -1;
    int64_t per = nnd_tensor_numel(t) / t->shape[0];
    for (int64_t s = at; s < at + b; s++)
        for (int64_t k = 0; k < per; k++) {
            int64_t i = s * per + k;
            if (nnd_tensor_value(t, i) == v)
                return s;
        }
    return -1;
}

/* A label or an index out of range in samples [at, at + b): named with the file
 * and the sample that hold it (labels are looked for in y first, indices in x). */
static void range_error(const Inputs *in, const NndStepArgs *a, int64_t at, int64_t b)
{
    bool label = a->status == NND_STATUS_LABEL_RANGE;
    const NndTensor *y = in->has_y ? &in->y : NULL;
    const NndTensor *look[2] = {label ? y : &in->x, label ? &in->x : y};
    const char *names[2] = {label ? in->y_name : in->name, label ? in->name : in->y_name};
    const char *file = in->name;
    int64_t s = -1;
    for (int k = 0; k < 2 && s < 0; k++)
        if (look[k] && (s = sample_holding(look[k], at, b, a->bad_value)) >= 0)
            file = names[k];
    char what[160], where[64];
    if (label)
        snprintf(what, sizeof what,
                 "label %.17g is out of range for the model's %lld classes, 0 to %lld",
                 a->bad_value, (long long)a->bad_count, (long long)a->bad_count - 1);
    else
        snprintf(what, sizeof what,
                 "index %.17g is out of range for a table of %lld rows (take, Embedding)",
                 a->bad_value, (long long)a->bad_count);
    if (s >= 0)
        snprintf(where, sizeof where, " (sample %lld has it)", (long long)s);
    else
        snprintf(where, sizeof where, ", in samples %lld to %lld", (long long)at,
                 (long long)(at + b - 1));
    fprintf(stderr, "nnd: %s: %s%s\n", file, what, where);
}

/* A function (forward, or an eval's metrics) over the samples [at, at + b). */
static bool run_batch(const Program *p, Executable *x, Model *m, void **params, NndPool *pool,
                      const Inputs *in, NndStepFn fn, void *user, int64_t at, int64_t b,
                      double *out)
{
    size_t xs = nnd_dtype_size(in->x.dtype), ys = nnd_dtype_size(in->y.dtype);
    for (int d = 1; d < in->x.rank; d++)
        xs *= (size_t)in->x.shape[d];
    for (int d = 1; d < in->y.rank; d++)
        ys *= (size_t)in->y.shape[d];
    double *h = program_hyper_values(p);
    NndStepArgs a = {.params = params,
                     .states = m->state_ptrs,
                     .x = (const char *)in->x.data + (size_t)at * xs,
                     .y = in->has_y ? (const char *)in->y.data + (size_t)at * ys : NULL,
                     .hypers = h,
                     .batch = b,
                     .arena = x->arena,
                     .out = out,
                     .pool = pool,
                     .user = user};
    fn(&a);
    free(h);
    if (a.status == NND_STATUS_LABEL_RANGE || a.status == NND_STATUS_INDEX_RANGE) {
        range_error(in, &a, at, b);
        return false;
    }
    if (a.status) {
        fprintf(stderr, "nnd: %s: the function failed (status %d)\n", in->name, a.status);
        return false;
    }
    return true;
}

/* Row i of outputs as probabilities: as they are when they already are (each in
 * [0, 1], summing to 1), else their softmax. */
static void probabilities(const double *row, int64_t c, double *prob)
{
    bool already = true;
    double sum = 0, mx = -INFINITY;
    for (int64_t k = 0; k < c; k++) {
        already &= row[k] >= 0 && row[k] <= 1;
        sum += row[k];
        mx = row[k] > mx ? row[k] : mx;
    }
    if (already && fabs(sum - 1) < 1e-3) {
        memcpy(prob, row, sizeof(double) * (size_t)c);
        return;
    }
    double z = 0;
    for (int64_t k = 0; k < c; k++)
        z += prob[k] = exp(row[k] - mx);
    for (int64_t k = 0; k < c; k++)
        prob[k] /= z;
}

/* The k largest of c (ties: the lower class first). */
static void top_classes(const double *prob, int64_t c, int k, int64_t *cls)
{
    for (int j = 0; j < k; j++) {
        int64_t best = -1;
        for (int64_t q = 0; q < c; q++) {
            bool taken = false;
            for (int i = 0; i < j; i++)
                taken |= cls[i] == q;
            if (!taken && (best < 0 || prob[q] > prob[best]))
                best = q;
        }
        cls[j] = best;
    }
}

typedef struct Outputs {
    int64_t n, per; /* samples, values per sample */
    int rank; /* of one sample's output */
    int64_t shape[NND_MAX_RANK];
    NndDType dtype;
    double *v; /* n * per */
} Outputs;

static void put_row(FILE *f, const Outputs *r, int64_t i, int top, int64_t *cls, double *prob)
{
    const double *row = r->v + i * r->per;
    if (top) {
        probabilities(row, r->per, prob);
        top_classes(prob, r->per, top, cls);
        for (int j = 0; j < top; j++)
            fprintf(f, "%s%lld,%.6f", j ? "," : "", (long long)cls[j], prob[cls[j]]);
    } else {
        for (int64_t k = 0; k < r->per; k++)
            fprintf(f, "%s%.9g", k ? "," : "", row[k]);
    }
    fputc('\n', f);
}

/* CSV to path (atomically) or standard output. */
static bool write_csv(const char *path, const Outputs *r, int top)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = path ? open_memstream(&buf, &len) : stdout;
    if (top)
        for (int j = 1; j <= top; j++)
            fprintf(f, "%sclass%d,prob%d", j > 1 ? "," : "", j, j);
    else
        for (int64_t k = 0; k < r->per; k++)
            fprintf(f, "%soutput%lld", k ? "," : "", (long long)k);
    fputc('\n', f);
    int64_t *cls = xcalloc((size_t)top + 1, sizeof(int64_t));
    double *prob = xcalloc((size_t)r->per + 1, sizeof(double));
    for (int64_t i = 0; i < r->n; i++)
        put_row(f, r, i, top, cls, prob);
    free(cls);
    free(prob);
    if (!path)
        return fflush(stdout) == 0;
    fclose(f);
    NndErr e;
    bool ok = nnd_write_file_atomic(path, buf, len, &e) == 0;
    if (!ok)
        fprintf(stderr, "nnd: %s\n", e.msg);
    free(buf);
    return ok;
}

static bool write_outputs(const Options *o, const Outputs *r)
{
    if (o->top && (r->rank != 1 || o->top > r->per)) {
        fprintf(stderr,
                "nnd: --top %d needs outputs of one row of at least %d classes per sample; "
                "the model gives %lld values in %d dimensions\n",
                o->top, o->top, (long long)r->per, r->rank);
        return false;
    }
    if (!o->output || !ends_with(o->output, ".npy"))
        return write_csv(o->output, r, o->top);
    if (o->top) {
        fprintf(stderr, "nnd: --top writes classes and probabilities as CSV: name a .csv file\n");
        return false;
    }
    NndTensor t = {.dtype = r->dtype == NND_F64 ? NND_F64 : NND_F32, .rank = r->rank + 1};
    t.shape[0] = r->n;
    memcpy(t.shape + 1, r->shape, sizeof(int64_t) * (size_t)r->rank);
    t.data = xcalloc((size_t)(r->n * r->per) + 1, nnd_dtype_size(t.dtype));
    for (int64_t i = 0; i < r->n * r->per; i++)
        if (t.dtype == NND_F64)
            ((double *)t.data)[i] = r->v[i];
        else
            ((float *)t.data)[i] = (float)r->v[i];
    NndErr e;
    bool ok = nnd_npy_write(o->output, &t, &e) == 0;
    if (!ok)
        fprintf(stderr, "nnd: %s\n", e.msg);
    free(t.data);
    return ok;
}

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The forward function over every sample, in batches, with a progress line on
 * standard error when it takes a while. */
static bool forward_all(const Program *p, Executable *x, Model *m, void **params, NndPool *pool,
                        const Inputs *in, Outputs *r)
{
    const Node *fo = graph_node((Graph *)&p->g, p->forward);
    r->n = in->x.shape[0];
    r->rank = fo->shape.rank - 1;
    r->per = 1;
    for (int d = 1; d < fo->shape.rank; d++)
        r->per *= r->shape[d - 1] = fo->shape.d[d];
    r->dtype = (NndDType)fo->dtype;
    r->v = xcalloc((size_t)(r->n * r->per) + 1, sizeof(double));
    double t0 = now_seconds(), shown = t0;
    bool tty = isatty(2);
    for (int64_t at = 0; at < r->n; at += x->max_batch) {
        int64_t b = r->n - at < x->max_batch ? r->n - at : x->max_batch;
        if (!run_batch(p, x, m, params, pool, in, x->forward, x->forward_user, at, b,
                       r->v + at * r->per))
            return false;
        double t = now_seconds();
        if (t - shown > 1) {
            fprintf(stderr,
                    tty ? "\rpredict: %lld of %lld samples" : "predict: %lld of %lld samples\n",
                    (long long)(at + b), (long long)r->n);
            shown = t;
        }
    }
    if (shown > t0 && tty)
        fputc('\n', stderr);
    return true;
}

/* With class labels (one a sample, integers or floats that hold them): how often
 * the likeliest class is the label. */
static void print_accuracy(const Inputs *in, const Outputs *r)
{
    if (!in->has_y || in->y.dtype == NND_BOOL || in->y.rank != 1 || r->rank != 1 || r->per < 2)
        return;
    int64_t right = 0;
    for (int64_t i = 0; i < r->n; i++) {
        const double *row = r->v + i * r->per;
        int64_t best = 0;
        for (int64_t k = 1; k < r->per; k++)
            best = row[k] > row[best] ? k : best;
        right += (double)best == nnd_tensor_value(&in->y, i);
    }
    fprintf(stderr, "top-1 accuracy on %s: %.5g (%lld of %lld)\n", in->name,
            (double)right / (double)r->n, (long long)right, (long long)r->n);
}

/* Every eval statement's metrics over the inputs (batch means, weighted); the
 * inputs have labels. */
static bool print_metrics(const Program *p, Executable *x, Model *m, void **params, NndPool *pool,
                          const Inputs *in)
{
    int64_t n = in->x.shape[0];
    for (int i = 0; i < p->evals.n; i++) {
        int nm = p->evals.v[i].metrics.n;
        double *sum = xcalloc((size_t)nm + 1, sizeof(double)), *out = xcalloc((size_t)nm + 1, 8);
        bool ok = true;
        for (int64_t at = 0; ok && at < n; at += x->max_batch) {
            int64_t b = n - at < x->max_batch ? n - at : x->max_batch;
            ok = run_batch(p, x, m, params, pool, in, x->evals[i], x->eval_user[i], at, b, out);
            for (int k = 0; ok && k < nm; k++)
                sum[k] += out[k] * (double)b;
        }
        for (int k = 0; ok && k < nm; k++)
            printf("%s: %s %.6g\n", in->name, p->evals.v[i].metrics.v[k].name, sum[k] / (double)n);
        free(sum);
        free(out);
        if (!ok)
            return false;
    }
    return true;
}

static int predict_program(Program *p, Options *o, Frontend *fe)
{
    if (!p->forward) {
        fprintf(stderr, "nnd: the program has no forward function: the train block's first model "
                        "does not take x alone\n");
        return NND_EXIT_ERROR;
    }
    const char *weights = o->weights ? o->weights : p->save_path;
    if (!weights) {
        cli_usage_error("%s", "predict needs --weights FILE (the program has no `save` to read)");
        return NND_EXIT_USAGE;
    }
    /* before any output is written */
    if (o->metrics && p->evals.n == 0) {
        fprintf(stderr, "nnd: --metrics: the train block has no eval statement\n");
        return NND_EXIT_ERROR;
    }
    Inputs in = {0};
    bool loaded = load_inputs(p, fe, o, &in);
    if (loaded && o->metrics && !in.has_y) {
        fprintf(stderr, "nnd: --metrics needs labels: --data NAME, or --labels FILE\n");
        loaded = false;
    }
    if (!loaded) {
        if (!in.borrowed) {
            nnd_tensor_free(&in.x);
            nnd_tensor_free(&in.y);
        }
        return NND_EXIT_ERROR;
    }
    char err[1024] = "";
    Model m;
    Executable x;
    ExecOptions eo = {.engine = o->interp ? ENGINE_INTERP : ENGINE_JIT,
                      .max_batch = o->batch > 0 ? o->batch : p->batch,
                      .forward_only = !o->metrics};
    int nopt, rc = NND_EXIT_ERROR;
    NndErr pe;
    NndPool *pool = nnd_pool_create(o->threads, &pe);
    bool have_x = false;
    if (!model_init(p, &m, err, sizeof err) ||
        !model_load_noting(p, &m, weights, stderr, &nopt, err, sizeof err))
        fprintf(stderr, "nnd: %s\n", err);
    else if (!(have_x = executable_build(&x, p, &eo, err, sizeof err)))
        fprintf(stderr, "nnd: %s\n", err);
    if (have_x) {
        /* with `ema` the averages are the model (a saved file holds them already) */
        void **ema = model_eval_params(p, &m), **params = ema ? ema : m.param_ptrs;
        Outputs r = {0};
        if (forward_all(p, &x, &m, params, pool, &in, &r) && write_outputs(o, &r) &&
            (!o->metrics || print_metrics(p, &x, &m, params, pool, &in))) {
            print_accuracy(&in, &r);
            if (o->output)
                fprintf(stderr, "wrote %s: %lld samples\n", o->output, (long long)r.n);
            rc = NND_EXIT_OK;
        }
        free(r.v);
        free(ema);
        executable_free(&x);
    }
    model_free(&m);
    nnd_pool_destroy(pool);
    if (!in.borrowed) {
        nnd_tensor_free(&in.x);
        nnd_tensor_free(&in.y);
    }
    return rc;
}

int cmd_predict(Options *o)
{
    if (o->files.n != 1)
        return cli_usage_error("%s", "predict takes one file");
    if (o->top < 0)
        return cli_usage_error("%s", "--top needs a whole number >= 1");
    if (o->output && !ends_with(o->output, ".csv") && !ends_with(o->output, ".npy"))
        return cli_usage_error("-o takes a file named .csv or .npy, not '%s'", o->output);
    if (!o->interp)
        jit_prewarm(); /* LLVM's start beside the front end, as nnd run */
    Frontend fe;
    frontend_init(&fe);
    Program *p = cli_compile(&fe, o, o->files.v[0], NULL, NULL, false);
    int rc = p ? predict_program(p, o, &fe) : NND_EXIT_ERROR;
    diags_print(&fe.diags, stderr);
    program_free(p);
    frontend_free(&fe);
    return rc;
}
