/* compare: the experiment commands.
 *
 *   nnd compare   trains one program once per update rule (--opt) or per value of
 *                 a hyper-parameter (--sweep) from the same initial weights and
 *                 batches, and prints a table
 *   nnd lrfind    the learning-rate range test */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "jit.h"
#include "plot.h"

typedef struct CompareRow {
    char label[160];
    bool ok;
    char err[1024];
    double final_loss;
    double steps_per_s;
    int64_t steps;
    /* the first metric of the first eval statement: its name, last value, best
     * value and the epoch (1-based, fractional for step intervals) it came at */
    char metric[96];
    bool have_metric, higher_better;
    double last, best, best_epoch;
    /* every other metric of every eval statement, in order: its last value */
    int nextra;
    char extra_name[16][96];
    double extra[16];
    bool have_extra[16];
} CompareRow;

typedef struct CompareCtx {
    CompareRow *row;
    int64_t per_epoch;
    int first[16]; /* eval i's metric k is extra[first[i] + k] (the first eval: k - 1) */
} CompareCtx;

/* Lower is better for losses and errors, higher for everything else. */
static bool higher_is_better(const char *metric)
{
    static const char *const lower[] = {"loss", "mse", "mae", "error", "err", "nll", "entropy"};
    for (size_t i = 0; i < NND_ARRAY_LEN(lower); i++)
        if (strstr(metric, lower[i]))
            return false;
    return true;
}

static int compare_on_eval(void *ctx, int which, const NndTrainPoint *at, const double *values)
{
    CompareCtx *c = ctx;
    CompareRow *r = c->row;
    for (int k = which == 0; which < 16 && c->first[which] >= 0 && k < 16; k++) {
        int slot = c->first[which] + k - (which == 0);
        if (slot < 0 || slot >= r->nextra)
            break;
        r->extra[slot] = values[k];
        r->have_extra[slot] = true;
    }
    if (which != 0)
        return 0;
    double v = values[0], epoch = (double)at->step / (double)c->per_epoch;
    bool better = !r->have_metric || (r->higher_better ? v > r->best : v < r->best);
    if (better) {
        r->best = v;
        r->best_epoch = epoch;
    }
    r->last = v;
    r->have_metric = true;
    return 0;
}

/* The metrics after the first, named "DATA METRIC", at most 16 of them. */
static void list_extra_metrics(const Program *p, CompareRow *row, CompareCtx *c)
{
    row->nextra = 0;
    for (int i = 0; i < 16; i++)
        c->first[i] = -1;
    for (int i = 0; i < p->evals.n && i < 16; i++) {
        const EvalSpec *es = &p->evals.v[i];
        c->first[i] = row->nextra;
        for (int k = i == 0; k < es->metrics.n && row->nextra < 16; k++)
            snprintf(row->extra_name[row->nextra++], sizeof row->extra_name[0], "%s %s",
                     p->data.v[es->data].name, es->metrics.v[k].name);
    }
}

static void compare_run(Program *p, int threads, CompareRow *row)
{
    row->ok = false;
    Executable x;
    ExecOptions eo = {ENGINE_JIT, false, 0, false, false, train_max_batch(p), false};
    if (!executable_build(&x, p, &eo, row->err, sizeof row->err))
        return;
    NndErr perr;
    NndPool *pool = nnd_pool_create(threads, &perr);
    if (!pool) {
        snprintf(row->err, sizeof row->err, "%s", perr.msg);
        executable_free(&x);
        return;
    }
    Model m;
    if (model_init(p, &m, row->err, sizeof row->err)) {
        if (p->evals.n && p->evals.v[0].metrics.n) {
            snprintf(row->metric, sizeof row->metric, "%s %s", p->data.v[p->evals.v[0].data].name,
                     p->evals.v[0].metrics.v[0].name);
            row->higher_better = higher_is_better(p->evals.v[0].metrics.v[0].name);
        }
        CompareCtx c = {row, program_steps_per_epoch(p), {0}};
        list_extra_metrics(p, row, &c);
        TrainOptions to = {.pool = pool, .on_eval = compare_on_eval, .hook_ctx = &c};
        NndTrainResult res = {0};
        int rc = train_run(p, &x, &m, &to, &res, row->err, sizeof row->err);
        row->final_loss = res.final_loss;
        row->steps = res.steps;
        row->steps_per_s = res.seconds > 0 ? (double)res.steps / res.seconds : 0;
        row->ok = rc == NND_EXIT_OK;
        model_free(&m);
    }
    nnd_pool_destroy(pool);
    executable_free(&x);
}

static void compare_print(const CompareRow *rows, int n, FILE *out)
{
    const char *metric = NULL;
    for (int i = 0; i < n && !metric; i++)
        if (rows[i].have_metric)
            metric = rows[i].metric;
    int lw = 4;
    for (int i = 0; i < n; i++)
        lw = NND_MAX(lw, (int)strlen(rows[i].label));
    fprintf(out, "\n%-*s  %10s", lw, "rule", "final loss");
    if (metric)
        fprintf(out, "  %*s  %10s  %9s", (int)NND_MAX(strlen(metric), 8), metric, "best",
                "at epoch");
    const CompareRow *names = NULL; /* a row that ran: its other metrics' names */
    for (int i = 0; i < n && !names; i++)
        if (rows[i].ok)
            names = &rows[i];
    int nx = names ? names->nextra : 0;
    for (int k = 0; k < nx; k++)
        fprintf(out, "  %*s", (int)NND_MAX(strlen(names->extra_name[k]), 8), names->extra_name[k]);
    fprintf(out, "  %9s\n", "steps/s");
    for (int i = 0; i < n; i++) {
        const CompareRow *r = &rows[i];
        fprintf(out, "%-*s  ", lw, r->label);
        if (!r->ok) {
            fprintf(out, "failed: %s\n", r->err);
            continue;
        }
        fprintf(out, "%10.6g", r->final_loss);
        if (metric && r->have_metric)
            fprintf(out, "  %*.5g  %10.5g  %9.2f", (int)NND_MAX(strlen(metric), 8), r->last,
                    r->best, r->best_epoch);
        else if (metric)
            fprintf(out, "  %*s  %10s  %9s", (int)NND_MAX(strlen(metric), 8), "-", "-", "-");
        for (int k = 0; k < nx; k++) {
            int w = (int)NND_MAX(strlen(names->extra_name[k]), 8);
            if (k < r->nextra && r->have_extra[k])
                fprintf(out, "  %*.5g", w, r->extra[k]);
            else
                fprintf(out, "  %*s", w, "-");
        }
        fprintf(out, "  %9.0f\n", r->steps_per_s);
    }
}

typedef struct LrCtx {
    int hyper;
    int64_t steps;
    double lo, hi;
    double *lr, *loss, *smooth;
    int64_t n;
    double avg, best;
} LrCtx;

static double lr_at(const LrCtx *c, int64_t k)
{
    return c->lo * pow(c->hi / c->lo, (double)k / (double)(c->steps > 1 ? c->steps - 1 : 1));
}

/* Records the step's loss, sets the next rate; stops once the smoothed loss has
 * gone past four times its minimum (or stopped being finite). */
static int lr_on_step(void *ctx, const NndTrainPoint *at, const double *out, int full,
                      double *hypers)
{
    (void)full;
    LrCtx *c = ctx;
    double loss = out[0];
    int64_t k = c->n++;
    c->lr[k] = lr_at(c, k);
    c->loss[k] = loss;
    c->avg = 0.98 * c->avg + 0.02 * loss; /* exponential average, bias-corrected */
    c->smooth[k] = c->avg / (1 - pow(0.98, (double)(k + 1)));
    if (k == 0 || c->smooth[k] < c->best)
        c->best = c->smooth[k];
    hypers[c->hyper] = lr_at(c, k + 1);
    (void)at;
    return !isfinite(c->smooth[k]) || (k > 10 && c->smooth[k] > 4 * c->best);
}

static int lrfind_run(Program *p, int threads, int64_t steps, double lo, double hi, const char *svg,
                      FILE *out)
{
    int hyper = -1;
    for (int i = 0; i < p->hypers.n; i++)
        if (strcmp(p->hypers.v[i].name, "opt.lr") == 0)
            hyper = i;
    if (hyper < 0) {
        fprintf(stderr, "nnd: lrfind: the optimizer has no run-time learning rate 'opt.lr' (a "
                        "number, not a schedule)\n");
        return NND_EXIT_ERROR;
    }
    /* the sweep only: no evaluation, no checkpoints */
    p->steps = steps;
    for (int i = 0; i < p->evals.n; i++)
        vec_free(&p->evals.v[i].metrics);
    p->evals.n = 0;
    p->ckpt_dir = NULL;
    p->hypers.v[hyper].value = lo;
    char err[1024] = "";
    Executable x;
    ExecOptions eo = {ENGINE_JIT, false, 0, false, false, train_max_batch(p), false};
    if (!executable_build(&x, p, &eo, err, sizeof err)) {
        fprintf(stderr, "nnd: %s\n", err);
        return NND_EXIT_ERROR;
    }
    NndErr perr;
    NndPool *pool = nnd_pool_create(threads, &perr);
    Model m;
    int rc = NND_EXIT_ERROR;
    LrCtx c = {hyper,
               steps,
               lo,
               hi,
               xcalloc((size_t)steps, sizeof(double)),
               xcalloc((size_t)steps, sizeof(double)),
               xcalloc((size_t)steps, sizeof(double)),
               0,
               0,
               0};
    if (!pool) {
        fprintf(stderr, "nnd: %s\n", perr.msg);
    } else if (!model_init(p, &m, err, sizeof err)) {
        fprintf(stderr, "nnd: %s\n", err);
    } else {
        TrainOptions to = {.pool = pool, .on_step = lr_on_step, .hook_ctx = &c};
        NndTrainResult res = {0};
        int trc = train_run(p, &x, &m, &to, &res, err, sizeof err);
        model_free(&m);
        /* a non-finite loss at the far end is how range tests usually end */
        if (trc != NND_EXIT_OK && trc != NND_EXIT_NONFINITE)
            fprintf(stderr, "nnd: %s\n", err);
        else
            rc = NND_EXIT_OK;
    }
    if (rc == NND_EXIT_OK && c.n >= 2) {
        fprintf(out, "learning-rate range test: %lld steps from %g to %g (batch %lld)%s\n",
                (long long)c.n, lo, lr_at(&c, c.n - 1), (long long)p->batch,
                c.n < steps ? ", stopped when the loss blew up" : "");
        fprintf(out, "%12s  %12s  %12s\n", "lr", "loss", "smoothed");
        int64_t every = c.n > 30 ? (c.n + 29) / 30 : 1;
        for (int64_t k = 0; k < c.n; k++)
            if (k % every == 0 || k == c.n - 1)
                fprintf(out, "%12.3g  %12.6f  %12.6f\n", c.lr[k], c.loss[k], c.smooth[k]);
        /* steepest descent of the smoothed loss against log(lr), before its minimum */
        int64_t kmin = 0;
        for (int64_t k = 0; k < c.n; k++)
            if (isfinite(c.smooth[k]) && c.smooth[k] < c.smooth[kmin])
                kmin = k;
        int64_t ks = -1;
        double steep = 0;
        int64_t w = NND_MAX(1, c.n / 20); /* over a few steps: the average is noisy */
        for (int64_t k = w; k <= kmin; k++) {
            double slope = (c.smooth[k] - c.smooth[k - w]) / (log(c.lr[k]) - log(c.lr[k - w]));
            if (slope < steep) {
                steep = slope;
                ks = k - w / 2;
            }
        }
        fprintf(out, "lowest smoothed loss %.6f at lr %.3g\n", c.smooth[kmin], c.lr[kmin]);
        double suggested = ks >= 0 ? c.lr[ks] : c.lr[kmin] / 10;
        if (ks >= 0)
            fprintf(out,
                    "suggested lr: %.3g (where the loss falls fastest; %.3g is a tenth of "
                    "the lowest-loss rate)\n",
                    c.lr[ks], c.lr[kmin] / 10);
        else
            fprintf(out,
                    "suggested lr: %.3g (a tenth of the lowest-loss rate: the loss never "
                    "fell steadily)\n",
                    c.lr[kmin] / 10);
        if (svg) {
            /* the blow-up at the end would flatten the rest: losses are cut at twice
             * the first smoothed one */
            double cap = 2 * c.smooth[0];
            double *l = xcalloc((size_t)c.n, sizeof(double)),
                   *sm = xcalloc((size_t)c.n, sizeof(double));
            for (int64_t k = 0; k < c.n; k++) {
                l[k] = fmin(c.loss[k], cap);
                sm[k] = fmin(c.smooth[k], cap);
            }
            PlotLine lines[2] = {{"loss", c.lr, l, (int)c.n}, {"smoothed", c.lr, sm, (int)c.n}};
            char title[160];
            snprintf(title, sizeof title,
                     "learning-rate range test: loss (cut at %.3g) against lr; "
                     "dashed: suggested %.3g",
                     cap, suggested);
            int prc =
                plot_xy(svg, title, "learning rate", true, lines, 2, suggested, err, sizeof err);
            free(l);
            free(sm);
            if (prc == 0) {
                fprintf(out, "wrote %s\n", svg);
            } else {
                fprintf(stderr, "nnd: lrfind: %s\n", err);
                rc = NND_EXIT_ERROR;
            }
        }
    } else if (rc == NND_EXIT_OK) {
        fprintf(stderr, "nnd: lrfind: the loss was not finite from the first step\n");
        rc = NND_EXIT_ERROR;
    }
    free(c.lr);
    free(c.loss);
    free(c.smooth);
    if (pool)
        nnd_pool_destroy(pool);
    executable_free(&x);
    return rc;
}

/* compare's rows at most: each is a whole training */
enum { COMPARE_MAX_ROWS = 100 };

/* One --sweep NAME=V1,V2,...: text, a copy of it, cut into the name and the values. */
typedef struct Sweep {
    char *text;
    const char *name;
    StrVec values;
} Sweep;

static void sweeps_free(Sweep *sw, int n)
{
    for (int i = 0; i < n; i++) {
        free(sw[i].text);
        vec_free(&sw[i].values);
    }
    free(sw);
}

/* The --sweep options cut into sw (o->sweeps.n of them); the number of rows they
 * make (every combination of their values), or -1 after a usage error. */
static int sweeps_parse(const Options *o, Sweep *sw)
{
    double rows = 1;
    for (int i = 0; i < o->sweeps.n; i++) {
        const char *s = o->sweeps.v[i], *eq = strchr(s, '=');
        if (!eq || eq == s || !eq[1]) {
            cli_usage_error("--sweep takes NAME=V1,V2,..., got '%s'", s);
            return -1;
        }
        sw[i].text = xstrdup(s);
        sw[i].text[eq - s] = 0;
        sw[i].name = sw[i].text;
        for (int k = 0; k < i; k++)
            if (strcmp(sw[k].name, sw[i].name) == 0) {
                cli_usage_error("--sweep %s is given twice: list its values in one", sw[i].name);
                return -1;
            }
        for (char *v = sw[i].text + (eq - s) + 1; v;) {
            char *comma = strchr(v, ',');
            if (comma)
                *comma = 0;
            vec_push(&sw[i].values, v);
            v = comma ? comma + 1 : NULL;
        }
        rows *= sw[i].values.n;
    }
    if (rows > COMPARE_MAX_ROWS) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "the --sweep values make %.6g combinations; compare runs %d at most", rows,
                 COMPARE_MAX_ROWS);
        cli_usage_error("%s", msg);
        return -1;
    }
    return (int)rows;
}

/* Sweep j's value in row i: the last sweep varies fastest. */
static const char *sweep_value(const Sweep *sw, int nsw, int i, int j)
{
    for (int k = nsw - 1; k > j; k--)
        i /= sw[k].values.n;
    return sw[j].values.v[i % sw[j].values.n];
}

/* Row i of a sweep: its label and, in oi, one override per --sweep; false when a
 * value is not a number (r->err says which). */
static bool sweep_row(const Sweep *sw, int nsw, int i, CompareRow *r, Options *oi)
{
    size_t len = 0;
    for (int j = 0; j < nsw && len < sizeof r->label; j++)
        len += (size_t)snprintf(r->label + len, sizeof r->label - len, "%s%s=%s", j ? " " : "",
                                sw[j].name, sweep_value(sw, nsw, i, j));
    for (int j = 0; j < nsw; j++) {
        const char *text = sweep_value(sw, nsw, i, j);
        double v = 0;
        if (!cli_parse_number(text, &v)) {
            snprintf(r->err, sizeof r->err, "'%s' is not a number", text);
            return false;
        }
        Override ov = {sw[j].name, text, v, true, false};
        vec_push(&oi->overrides, ov);
    }
    return true;
}

/* nnd compare: one training per --opt rule or combination of --sweep values, silent,
 * then a table. */
int cmd_compare(Options *o)
{
    if (o->files.n != 1)
        return cli_usage_error("%s", "compare takes one file");
    if (o->opts.n && o->sweeps.n)
        return cli_usage_error("%s", "compare takes --opt or --sweep, not both");
    jit_prewarm(); /* LLVM's start beside the front end, as nnd run */
    Sweep *sw = xcalloc((size_t)o->sweeps.n + 1, sizeof(Sweep));
    int n = o->opts.n ? o->opts.n : o->sweeps.n ? sweeps_parse(o, sw) : 0;
    if (n <= 0) {
        sweeps_free(sw, o->sweeps.n);
        return n < 0 ? NND_EXIT_USAGE
                     : cli_usage_error(
                           "%s", "compare needs --opt RULE (repeated) or --sweep NAME=V1,V2,...");
    }
    CompareRow *rows = xcalloc((size_t)n, sizeof(CompareRow));
    int rc = NND_EXIT_OK;
    for (int i = 0; i < n; i++) {
        CompareRow *r = &rows[i];
        Options oi = *o;
        oi.overrides = (typeof(oi.overrides)){0};
        for (int k = 0; k < o->overrides.n; k++)
            vec_push(&oi.overrides, o->overrides.v[k]);
        if (o->sweeps.n && !sweep_row(sw, o->sweeps.n, i, r, &oi)) {
            rc = NND_EXIT_ERROR;
            vec_free(&oi.overrides);
            continue;
        }
        if (!o->sweeps.n)
            snprintf(r->label, sizeof r->label, "%s", o->opts.v[i]);
        printf("[%d/%d] %s\n", i + 1, n, r->label);
        fflush(stdout);
        Frontend fe;
        frontend_init(&fe);
        char name[32];
        snprintf(name, sizeof name, "--opt %d", i + 1);
        Program *p =
            cli_compile(&fe, &oi, o->files.v[0], o->opts.n ? o->opts.v[i] : NULL, name, true);
        if (p) {
            p->save_path =
                NULL; /* the variants share the file's save and checkpoints: not theirs */
            p->ckpt_dir = NULL;
            compare_run(p, o->threads, r);
        } else {
            snprintf(r->err, sizeof r->err, "does not compile (see above)");
        }
        if (!r->ok)
            rc = NND_EXIT_ERROR;
        program_free(p);
        frontend_free(&fe);
        vec_free(&oi.overrides);
    }
    compare_print(rows, n, stdout);
    free(rows);
    sweeps_free(sw, o->sweeps.n);
    return rc;
}

static int lrfind(Program *p, Options *o)
{
    return lrfind_run(p, o->threads, o->lr_steps, o->lr_min, o->lr_max, o->output, stdout);
}

int cmd_lrfind(Options *o)
{
    /* before the training: a rate range or a plot it cannot make */
    if (!(o->lr_min > 0 && o->lr_max > o->lr_min)) {
        fprintf(stderr, "nnd: lrfind: need 0 < --min < --max, got --min %g --max %g\n", o->lr_min,
                o->lr_max);
        return NND_EXIT_USAGE;
    }
    NndErr e;
    if (o->output && nnd_check_write_path(o->output, &e) != 0) {
        fprintf(stderr, "nnd: lrfind: %s\n", e.msg);
        return NND_EXIT_ERROR;
    }
    jit_prewarm();
    return cli_on_program(o, true, lrfind);
}
