#include "logger.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

bool logger_open(Logger *lg, Program *p, Model *m, const char *dir, bool append, FILE *warn,
                 bool interactive, char *err, size_t errlen)
{
    memset(lg, 0, sizeof *lg);
    lg->p = p;
    lg->m = m;
    lg->warn = warn;
    lg->interactive = interactive;
    int np = p->params.n ? p->params.n : 1;
    lg->watch = xcalloc((size_t)np, sizeof(ParamWatch));
    lg->requests = xcalloc((size_t)np, sizeof *lg->requests);
    lg->counted = xcalloc((size_t)np, sizeof *lg->counted);
    lg->parts_counted = xcalloc((size_t)np, sizeof *lg->parts_counted);
    for (int i = 0; i < p->params.n; i++) {
        ParamWatch *w = &lg->watch[i];
        w->gn = w->ratio = w->range = -1;
        w->hist_tag = arena_printf(&p->arena, "weights/%s", p->params.v[i].name);
        w->constant = true;
        for (int u = 0; u < p->updates.n; u++)
            w->constant &= p->updates.v[u].is_state || p->updates.v[u].index != i;
        for (int k = 0; k < p->step_outputs.n; k++) {
            const char *t = p->step_outputs.v[k].name, *slash = strchr(t, '/');
            if (!slash || strcmp(slash + 1, p->params.v[i].name))
                continue;
            if (!strncmp(t, "grad_norm/", 10))
                w->gn = k + 1;
            else if (!strncmp(t, "update_ratio/", 13))
                w->ratio = k + 1;
            else if (!strncmp(t, "weights.min/", 12))
                w->range = k + 1;
        }
    }
    if (p->log.dir) {
        NndErr e;
        lg->log = nnd_log_open(dir, append, &e);
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
    for (int i = 0; lg->watch && i < lg->p->params.n; i++)
        free(lg->watch[i].hist);
    free(lg->watch);
    free(lg->requests);
    free(lg->counted);
    free(lg->parts_counted);
    lg->watch = NULL;
    lg->requests = NULL;
    lg->counted = lg->parts_counted = NULL;
    lg->log = NULL;
}

enum { WARN_VANISH = 1, WARN_EXPLODE = 2, WARN_NONFINITE = 4, WARN_BIG = 8, WARN_TINY = 16 };

static void warn(Logger *lg, int param, unsigned kind, int64_t step, const char *fmt, ...)
    NND_PRINTF(5, 6);
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
            warn(lg, i, WARN_VANISH, at->step,
                 "vanishing gradient: its norm has stayed below 1e-7 "
                 "for 10 logged steps (now %.3g)",
                 g);
        lg->logged++;
        if (lg->logged > 5 * lg->p->params.n && w->gn_avg > 0 && g > 50 * w->gn_avg)
            warn(lg, i, WARN_EXPLODE, at->step,
                 "exploding gradient: its norm jumped to %.3g, %.0f "
                 "times its recent average %.3g",
                 g, g / w->gn_avg, w->gn_avg);
        w->gn_avg = w->gn_avg == 0 ? g : 0.9 * w->gn_avg + 0.1 * g;
        /* update sizes: of weight matrices and filters; biases and gains start at 0
         * or 1 and move by large fractions of themselves early on */
        if (w->ratio < 0 || graph_node(&lg->p->g, lg->p->params.v[i].node)->shape.rank < 2)
            continue;
        double r = out[w->ratio];
        if (r > 0.1 && at->step > 10)
            warn(lg, i, WARN_BIG, at->step,
                 "the update moved the weights by %.3g of their norm in "
                 "one step (usual: about 1e-3); the learning rate may be too high",
                 r);
        w->tiny_steps = r < 1e-7 && g > 0 ? w->tiny_steps + 1 : 0;
        if (w->tiny_steps == 20)
            warn(lg, i, WARN_TINY, at->step,
                 "updates of under 1e-7 of the weights' norm for 20 "
                 "logged steps (now %.3g): the learning rate may be too low",
                 r);
    }
}

/* The histograms of a logged step.  Trained weights of POOL_HISTOGRAM_MIN values or
 * more are counted in parts, part t on the pool's thread t, where the step's update
 * left those values (in that core's cache); meanwhile the caller writes the scalar
 * records, and the pool's first worker, done with its part, counts the small trained
 * weights.  784-128-10 on two threads: its first weight took 8-9 us to count on both
 * threads, the scalars 1.7-1.9 on the caller, the small ones 1.4 (which the next step
 * pays 0.7 of back: the caller's update of W2 finds it in the other core's cache).
 * The caller writes every record, in parameter order. */
enum { POOL_HISTOGRAM_MIN = 16384 };

typedef struct StepHistograms {
    Logger *lg;
    const double *out;
    NndHistPlan *plan; /* the large ones' */
    int small_part; /* the part whose thread counts the small ones */
    int rc; /* theirs */
    NndErr e;
} StepHistograms;

/* Counted in parts: a trained weight (its range came with the step) of
 * POOL_HISTOGRAM_MIN values or more. */
static bool in_parts(const Logger *lg, int i)
{
    return lg->watch[i].range > 0 && nnd_tensor_numel(&lg->m->params[i]) >= POOL_HISTOGRAM_MIN;
}

/* Counted by the small part's thread: the other trained weights. */
static bool in_small(const Logger *lg, int i) { return lg->watch[i].range > 0 && !in_parts(lg, i); }

static void count_histograms(void *ctx, int64_t begin, int64_t end)
{
    StepHistograms *sh = ctx;
    Logger *lg = sh->lg;
    for (int64_t t = begin; t < end; t++)
        nnd_histograms_count(sh->plan, (int)t);
    if (sh->small_part < begin || sh->small_part >= end)
        return;
    for (int i = 0; sh->rc == 0 && i < lg->p->params.n; i++) {
        if (!in_small(lg, i))
            continue;
        const NndTensor *t = &lg->m->params[i];
        const double *r = sh->out + lg->watch[i].range;
        sh->rc = nnd_histogram_ranged(NULL, t->data, t->dtype, nnd_tensor_numel(t), r[0], r[1],
                                      r[2], r[3], &lg->counted[i], &sh->e);
    }
}

/* Starts the counting of a logged step's histograms on the pool (sh->plan NULL: out
 * of memory, in sh->e). */
static void start_histograms(StepHistograms *sh)
{
    Logger *lg = sh->lg;
    int big = 0;
    for (int i = 0; i < lg->p->params.n; i++) {
        if (!in_parts(lg, i))
            continue;
        const NndTensor *t = &lg->m->params[i];
        const double *r = sh->out + lg->watch[i].range;
        lg->requests[big++] = (NndHistRequest){.data = t->data,
                                               .dtype = t->dtype,
                                               .n = nnd_tensor_numel(t),
                                               .min = r[0],
                                               .max = r[1],
                                               .sum = r[2],
                                               .sum_squares = r[3]};
    }
    int parts = nnd_pool_threads(lg->pool);
    sh->small_part = parts > 1 ? 1 : 0;
    sh->plan = nnd_histograms_plan(big, lg->requests, parts, &sh->e);
    if (!sh->plan)
        return;
    /* every worker its part, the caller its own when it comes to wait; or, where the
     * pool did not take it (fn ran part 0 at once), the rest here */
    if (!nnd_pool_post(lg->pool, count_histograms, sh, 1))
        count_histograms(sh, 1, parts);
}

/* Waits for the counting and writes the histogram records. */
static bool log_histograms(StepHistograms *sh, const NndTrainPoint *at, NndErr *e)
{
    Logger *lg = sh->lg;
    nnd_pool_wait_posted(lg->pool);
    if (!sh->plan) {
        *e = sh->e;
        return false;
    }
    NndErr pe;
    bool ok = nnd_histograms_finish(sh->plan, lg->pool, lg->parts_counted, &pe) == 0;
    if (!ok)
        *e = pe;
    else if (sh->rc) {
        ok = false;
        *e = sh->e;
    }
    for (int i = 0, k = 0; ok && i < lg->p->params.n; i++) {
        const NndTensor *t = &lg->m->params[i];
        ParamWatch *w = &lg->watch[i];
        NndHistogram h;
        if (in_parts(lg, i))
            h = lg->parts_counted[k++];
        else if (in_small(lg, i))
            h = lg->counted[i];
        else if (w->hist) /* a frozen weight, counted once */
            h = *w->hist;
        else
            ok = nnd_histogram(lg->pool, t->data, t->dtype, nnd_tensor_numel(t), &h, e) == 0;
        if (ok && w->constant && !w->hist) {
            w->hist = xmalloc(sizeof h);
            *w->hist = h;
        }
        ok = ok && nnd_log_histogram(lg->log, w->hist_tag, at->step, &h, e) == 0;
    }
    return ok;
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
    StepHistograms sh = {.lg = lg, .out = out};
    if (ls->items & LOG_HISTOGRAMS)
        start_histograms(&sh);
    NndErr e;
    bool ok = !(ls->items & LOG_LOSS) ||
              nnd_log_scalar(lg->log, "loss", at->step, at->epoch, out[0], &e) == 0;
    for (int k = 0; ok && k < lg->p->step_outputs.n; k++) {
        const char *tag = lg->p->step_outputs.v[k].name;
        if (lg->p->step_outputs.v[k].hidden)
            continue;
        /* grad_norm and update_ratio are computed for the warnings; logged if asked */
        uint32_t fam = !strncmp(tag, "grad_norm/", 10)      ? LOG_GRAD_NORM
                       : !strncmp(tag, "update_ratio/", 13) ? LOG_UPDATE_RATIO
                                                            : 0;
        if (fam && !(ls->items & fam))
            continue;
        ok = nnd_log_scalar(lg->log, tag, at->step, at->epoch, out[k + 1], &e) == 0;
    }
    if (ls->items & LOG_HISTOGRAMS) {
        NndErr he;
        bool hok = log_histograms(&sh, at, &he); /* (waits for the counting in any case) */
        if (ok && !hok) {
            ok = false;
            e = he;
        }
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

static int logger_on_eval(void *ctx, int which, const NndTrainPoint *at, const double *values)
{
    Logger *lg = ctx;
    if (!lg->log || lg->failed)
        return 0;
    const EvalSpec *es = &lg->p->evals.v[which];
    NndErr e;
    bool ok = true;
    for (int k = 0; ok && k < es->metrics.n; k++) {
        char *tag = xasprintf("eval/%s/%s", lg->p->data.v[es->data].name, es->metrics.v[k].name);
        ok = nnd_log_scalar(lg->log, tag, at->step, at->epoch, values[k], &e) == 0;
        free(tag);
    }
    ok = ok && nnd_log_flush(lg->log, &e) == 0;
    if (!ok) {
        lg->failed = true;
        snprintf(lg->err, sizeof lg->err, "%s", e.msg);
    }
    return 0;
}

void logger_hooks(Logger *lg, TrainOptions *to)
{
    lg->pool = to->pool;
    to->on_step = logger_on_step;
    to->on_eval = logger_on_eval;
    to->hook_ctx = lg;
}
