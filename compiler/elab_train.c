/* elab_train: the train block: settings, models, the loss, gradients and updates,
 * logs, evals, checkpoints, save; and elab_program, the entry point. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff.h"
#include "elab_internal.h"
#include "nnd_train.h"
#include "sema.h"

double el_setting_number(Elab *e, Scope *s, const Ast *st, const char *name, double dflt,
                         bool *found)
{
    Override *o = el_find_override(e, name);
    if (o) {
        o->used = true;
        if (!o->is_number) {
            el_error(e, span_none(), "--set %s=%s: expected a number", name, o->text);
            return dflt;
        }
        *found = true;
        return o->value;
    }
    if (!st)
        return dflt;
    *found = true;
    double v;
    if (!el_to_number(e, el_eval(e, s, st->b), st->b->span, name, &v))
        return dflt;
    return v;
}

const Ast *el_find_setting(const Ast *train, const char *name)
{
    for (int i = 0; i < train->list2.n; i++) {
        const Ast *st = train->list2.v[i];
        if (st->kind == AST_ASSIGN && st->a->kind == AST_NAME && strcmp(st->a->name, name) == 0)
            return st;
    }
    return NULL;
}

void el_setting_error(Elab *e, const char *name, Span span, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    Override *o = el_find_override(e, name);
    if (o) /* the value came from the command line: the message names it there */
        el_error(e, span_none(), "--set %s=%s: %s", o->key, o->text, msg);
    else
        el_error(e, span, "%s", msg);
    free(msg);
}

static int64_t int_setting(Elab *e, Scope *s, const Ast *train, const char *name, int64_t dflt,
                           int64_t min, bool *found)
{
    const Ast *st = el_find_setting(train, name);
    bool f = false;
    double v = el_setting_number(e, s, st, name, (double)dflt, &f);
    if (found)
        *found = f;
    if (f && (v != floor(v) || v < (double)min || v > 9e15)) {
        /* 9e15: below 2^53, where doubles (hyper-parameters) still count exactly */
        el_setting_error(e, name, st ? st->b->span : train->span,
                         v > 9e15 ? "%s must be a whole number from %lld to 9e15, got %g"
                                  : "%s must be a whole number >= %lld, got %g",
                         name, (long long)min, v);
        return dflt;
    }
    return (int64_t)v;
}

/* A setting that is true or false (or 1 or 0, which they are as numbers). */
static bool bool_setting(Elab *e, Scope *s, const Ast *train, const char *name, bool dflt)
{
    const Ast *st = el_find_setting(train, name);
    bool f = false;
    double v = el_setting_number(e, s, st, name, dflt, &f);
    if (f && v != 0 && v != 1) {
        el_setting_error(e, name, st ? st->b->span : train->span,
                         "%s must be true or false, got %g", name, v);
        return dflt;
    }
    return v != 0;
}

/* The dotted path a name or member chain spells (fc2, encoder.fc1.b), or NULL. */
static const char *path_text(Elab *e, const Ast *x)
{
    if (x->kind == AST_NAME)
        return x->name;
    if (x->kind != AST_MEMBER)
        return NULL;
    const char *left = path_text(e, x->a);
    return left ? arena_printf(&e->arena, "%s.%s", left, x->name) : NULL;
}

/* Whether rel (a name inside the model) is ex or inside it. */
static bool path_within(const char *rel, const char *ex)
{
    size_t n = strlen(ex);
    return strncmp(rel, ex, n) == 0 && (rel[n] == 0 || rel[n] == '.');
}

/* Reads one tensor of a `from` file for the parameter or layer state `name` (its
 * path inside the model: rel), checking that it is there and fits. */
static void load_one(Elab *e, NndSafetensors *sf, const char *file, const char *name,
                     const char *rel, const Node *n, Span span, NndTensor *out)
{
    const NndSafetensorsEntry *en = nnd_safetensors_find(sf, rel);
    if (!en) {
        int d = strcmp(name, rel)
                    ? diag_error(e->d, span, "'%s' has no tensor '%s' (for %s)", file, rel, name)
                    : diag_error(e->d, span, "'%s' has no tensor '%s'", file, rel);
        const char *dot = strchr(rel, '.');
        diag_label(e->d, d, "to start it fresh instead, add `except %.*s`",
                   dot ? (int)(dot - rel) : (int)strlen(rel), rel);
        return;
    }
    Shape fs = shape_make(en->rank, en->shape);
    if (!shape_equal(&fs, &n->shape)) {
        el_error(e, span, "tensor '%s' in '%s' is %s, but %s is %s", rel, file,
                 el_shape_str(e, &fs), name, el_shape_str(e, &n->shape));
        return;
    }
    if (en->dtype != NND_F32 && en->dtype != NND_F64) {
        el_error(e, span, "tensor '%s' in '%s' is %s; parameters load from F32 or F64", rel, file,
                 en->dtype_name);
        return;
    }
    NndErr err;
    if (nnd_safetensors_load(sf, rel, out, &err) != 0)
        el_error(e, span, "%s", err.msg);
}

/* `net = Model(...) from "file" except a, b.c`: the parameters and layer state the
 * model made (params from p0, states from s0) start from the file's tensors of the
 * same names (relative to the model), but for the excepted ones. */
static void load_from(Elab *e, Scope *s, const Ast *st, const char *prefix, int p0, int s0)
{
    Value pv = el_eval(e, s, st->c);
    const char *path;
    if (!el_str_arg(e, &pv, st->c->span, "the file to load from", &path))
        return;
    StrVec ex = {0};
    bool ok = true;
    for (int i = 0; i < st->list.n; i++) {
        const char *t = path_text(e, st->list.v[i]);
        if (!t) {
            el_error(e, st->list.v[i]->span,
                     "except takes names inside the model, like fc2 or fc2.b");
            ok = false;
        }
        vec_push(&ex, t);
    }
    NndSafetensors sf;
    NndErr err;
    if (ok && nnd_safetensors_open(&sf, path, &err) != 0) {
        el_error(e, st->c->span, "%s", err.msg);
        ok = false;
    }
    if (!ok) {
        vec_free(&ex);
        return;
    }
    size_t skip = *prefix ? strlen(prefix) + 1 : 0;
    bool *used = xcalloc((size_t)ex.n + 1, 1);
    int total = (e->p->params.n - p0) + (e->p->states.n - s0);
    for (int k = 0; k < total; k++) {
        bool is_param = k < e->p->params.n - p0;
        int i = is_param ? p0 + k : s0 + k - (e->p->params.n - p0);
        const char *name = is_param ? e->p->params.v[i].name : e->p->states.v[i].name;
        if (!is_param && e->p->states.v[i].param >= 0)
            continue;
        const char *rel = name + skip;
        bool skipped = false;
        for (int j = 0; j < ex.n; j++)
            if (ex.v[j] && path_within(rel, ex.v[j]))
                skipped = used[j] = true;
        if (skipped)
            continue;
        NodeId node = is_param ? e->p->params.v[i].node : e->p->states.v[i].node;
        load_one(e, &sf, path, name, rel, nd(e, node), st->c->span,
                 is_param ? &e->p->params.v[i].loaded : &e->p->states.v[i].loaded);
    }
    for (int j = 0; j < ex.n; j++)
        if (ex.v[j] && !used[j])
            el_error(e, st->list.v[j]->span, "'%s' names no parameter of this model", ex.v[j]);
    free(used);
    vec_free(&ex);
    nnd_safetensors_close(&sf);
}

static NodeId full_sum(Elab *e, NodeId x, Span span)
{
    int r = nd(e, x)->shape.rank;
    NodeId s = gb_reduce(e->g, OP_SUM, x, r ? (1u << r) - 1 : 0, false, span);
    return gb_cast(e->g, s, e->p->float_dtype, span);
}

static void step_output(Elab *e, const char *tag, NodeId n, Span span)
{
    Metric m = {arena_strdup(&e->p->arena, tag), n, span, false};
    vec_push(&e->p->step_outputs, m);
}

/* The least and greatest value of a trained weight after the update, their sum and
 * sum of squares: reductions the update loop computes on its way (it writes the
 * weight), so that the logger counts the histogram in one pass over the weights
 * instead of two (nnd_histogram_ranged).  Outputs weights.min/P, .max, .sum, .sumsq,
 * in that order, not logged.  The least and greatest may ignore a NaN
 * (gb_max_nonan): a NaN or an infinity makes the sum not finite, and
 * nnd_histogram_ranged then counts in two passes; the sum of squares is the one
 * weight_norm and update_ratio take. */
static void histogram_outputs(Elab *e, const ParamInfo *pi, NodeId wn, Span span)
{
    NndDType ft = e->p->float_dtype;
    int r = nd(e, wn)->shape.rank;
    uint32_t axes = r ? (1u << r) - 1 : 0;
    NodeId neg = gb_unary(e->g, OP_NEG, wn, span);
    NodeId outs[4] = {
        gb_unary(e->g, OP_NEG, gb_max_nonan(e->g, neg, axes, span), span),
        gb_max_nonan(e->g, wn, axes, span),
        full_sum(e, wn, span),
        full_sum(e, gb_binary(e->g, OP_MUL, wn, wn, span), span),
    };
    static const char *const names[4] = {"min", "max", "sum", "sumsq"};
    for (int k = 0; k < 4; k++) {
        Metric m = {arena_printf(&e->p->arena, "weights.%s/%s", names[k], pi->name),
                    gb_cast(e->g, outs[k], ft, span), span, true};
        vec_push(&e->p->step_outputs, m);
    }
}

/* `log every N steps to DIR: loss, lr, grad_norm, ..., name = expr`.  The
 * statistics of each trained parameter are reductions the step computes: norms of
 * g (after clipping), of w after the update, the update's size relative to w,
 * max |g|, and how many elements of g are not finite. */
static void elab_log(Elab *e, Scope *s, const Ast *st)
{
    Program *p = e->p;
    if (p->log.dir) {
        el_error(e, st->span, "only one log statement is allowed");
        return;
    }
    const Ast *every = st->a;
    Value dv = el_eval(e, s, st->b);
    const char *dir;
    int64_t n = 1;
    if (!el_path_arg(e, &dv, st->b->span, "the log directory", &dir) ||
        (every->a && !el_to_int(e, el_eval(e, s, every->a), every->a->span, "the interval", &n)))
        return;
    if (n < 1) {
        el_error(e, every->span, "the interval must be at least 1");
        return;
    }
    LogSpec *lg = &p->log;
    lg->dir = arena_strdup(&p->arena, dir);
    lg->every = n;
    lg->in_epochs = every->name[0] == 'e';
    lg->span = st->span;
    lg->dir_span = st->b->span;
    for (int k = 0; k < st->list.n; k++) {
        const Ast *it = st->list.v[k];
        bool family = false;
        for (int f = 0; it->kind == AST_NAME && log_families[f] && !family; f++)
            if (strcmp(it->name, log_families[f]) == 0) {
                lg->items |= 1u << f;
                family = true;
            }
        if (family)
            continue;
        /* a scalar of the training batch: name = expr, or an expression */
        bool kw = it->kind == AST_KWARG;
        const Ast *x = kw ? it->a : it;
        Value v = el_eval(e, s, x);
        if (v.k == V_ERR)
            continue;
        NodeId node = v.k == V_NODE  ? v.node
                      : v.k == V_NUM ? el_const_node(e, v.num, p->float_dtype, x->span)
                                     : 0;
        if (!node || nd(e, node)->shape.rank != 0) {
            el_error(e, x->span,
                     "a logged value must be a scalar computed from the batch, like mean(...)");
            continue;
        }
        node = gb_cast(e->g, node, p->float_dtype, x->span);
        const char *name = kw                    ? it->name
                           : x->kind == AST_NAME ? x->name
                           : x->kind == AST_CALL && x->a->kind == AST_NAME
                               ? x->a->name
                               : arena_printf(&p->arena, "value%d", k + 1);
        step_output(e, name, node, x->span);
    }
    /* the learning rate of each optimizer group: a hyper-parameter or a schedule */
    for (int gi = 0; (lg->items & LOG_LR) && gi < e->groups.n; gi++) {
        Group *gr = e->groups.v[gi];
        for (int k = 0; k < gr->hypers.n; k++)
            if (strcmp(gr->hypers.v[k].name, "lr") == 0 && gr->hypers.v[k].v.k == V_NODE) {
                const char *path = p->groups.v[gr->index].path; /* "opt", "opt.net.fc2" */
                const char *tag =
                    strcmp(path, "opt") == 0 ? "lr" : arena_printf(&e->arena, "lr/%s", path + 4);
                step_output(e, tag, gb_cast(e->g, gr->hypers.v[k].v.node, p->float_dtype, st->span),
                            st->span);
            }
    }
    /* the warnings read grad_norm and update_ratio: always computed with a log */
    uint32_t fams = lg->items | LOG_GRAD_NORM | LOG_UPDATE_RATIO;
    NodeId total = 0;
    NndDType ft = p->float_dtype;
    for (int i = 0; i < p->params.n; i++) {
        if (!p->grads.v[i])
            continue;
        ParamInfo *pi = &p->params.v[i];
        Span span = pi->span;
        NodeId w = pi->node, g = p->grads.v[i], wn = w;
        for (int u = 0; u < p->updates.n; u++)
            if (!p->updates.v[u].is_state && p->updates.v[u].index == i)
                wn = p->updates.v[u].value;
        NodeId g2 = full_sum(e, gb_binary(e->g, OP_MUL, g, g, span), span);
        total = total ? gb_binary(e->g, OP_ADD, total, g2, span) : g2;
        if (fams & LOG_GRAD_NORM)
            step_output(e, arena_printf(&e->arena, "grad_norm/%s", pi->name),
                        gb_unary(e->g, OP_SQRT, g2, span), span);
        if (fams & LOG_WEIGHT_NORM)
            step_output(e, arena_printf(&e->arena, "weight_norm/%s", pi->name),
                        gb_unary(e->g, OP_SQRT,
                                 full_sum(e, gb_binary(e->g, OP_MUL, wn, wn, span), span), span),
                        span);
        if (fams & LOG_UPDATE_RATIO) {
            NodeId dw = gb_binary(e->g, OP_SUB, wn, w, span);
            NodeId num = gb_unary(e->g, OP_SQRT,
                                  full_sum(e, gb_binary(e->g, OP_MUL, dw, dw, span), span), span);
            /* relative to the weights after the update, as weight_norm and the
             * histogram's sum of squares: one sum of squares for the three */
            NodeId den = gb_unary(e->g, OP_SQRT,
                                  full_sum(e, gb_binary(e->g, OP_MUL, wn, wn, span), span), span);
            den = gb_binary(e->g, OP_ADD, den, gb_const(e->g, 1e-12, ft, span), span);
            step_output(e, arena_printf(&e->arena, "update_ratio/%s", pi->name),
                        gb_binary(e->g, OP_DIV, num, den, span), span);
        }
        if (fams & LOG_HISTOGRAMS)
            histogram_outputs(e, pi, wn, span);
        if (fams & LOG_MAX_GRAD) {
            NodeId a = gb_unary(e->g, OP_ABS, g, span);
            int r = nd(e, a)->shape.rank;
            NodeId m = gb_reduce(e->g, OP_RMAX, a, r ? (1u << r) - 1 : 0, false, span);
            step_output(e, arena_printf(&e->arena, "max_grad/%s", pi->name),
                        gb_cast(e->g, m, ft, span), span);
        }
        if (fams & LOG_NONFINITE) {
            /* |g| <= the largest finite value is false exactly for NaN and +-inf */
            NndDType gt = (NndDType)nd(e, g)->dtype;
            NodeId big = gb_const(
                e->g, gt == NND_F64 ? 1.7976931348623157e308 : 3.4028234663852886e38, gt, span);
            NodeId ok = gb_binary_bc(e->g, OP_LE, gb_unary(e->g, OP_ABS, g, span), big, span);
            NodeId bad = gb_cast(e->g, gb_unary(e->g, OP_NOT, ok, span), ft, span);
            step_output(e, arena_printf(&e->arena, "nonfinite/%s", pi->name),
                        full_sum(e, bad, span), span);
        }
    }
    if (total)
        step_output(e, "grad_norm/total", gb_unary(e->g, OP_SQRT, total, st->span), st->span);
}

/* Whether expression x uses one of the names (as a plain name, not a member). */
static bool ast_mentions(const Ast *x, const char *const *names, int n)
{
    if (!x)
        return false;
    if (x->kind == AST_NAME) {
        for (int i = 0; i < n; i++)
            if (strcmp(x->name, names[i]) == 0)
                return true;
        return false;
    }
    if (ast_mentions(x->a, names, n) || ast_mentions(x->b, names, n) ||
        (x->kind != AST_FN && ast_mentions(x->c, names, n)))
        return true;
    for (int i = 0; i < x->list.n; i++)
        if (ast_mentions(x->list.v[i], names, n))
            return true;
    for (int i = 0; i < x->list2.n; i++)
        if (ast_mentions(x->list2.v[i], names, n))
            return true;
    return false;
}

/* The run-time counters step, epoch, steps and t: HYPER inputs, all but t bound
 * as names of the train block. */
static void train_counters(Elab *e, Scope *s, const Ast *train)
{
    Program *p = e->p;
    p->hyper_step = p->hypers.n;
    el_new_hyper(e, "step", 0, train->span);
    p->hyper_epoch = p->hypers.n;
    el_new_hyper(e, "epoch", 0, train->span);
    p->hyper_steps = p->hypers.n;
    el_new_hyper(e, "steps", 1, train->span);
    p->hyper_t = p->hypers.n;
    el_new_hyper(e, "t", 1, train->span);
    for (int i = 0; i < p->hypers.n; i++) {
        if (i != p->hyper_t)
            el_bind(s, p->hypers.v[i].name, vnode(el_hyper_node(e, i, train->span)), train->span);
    }
}

/* `let` statements: numbers become run-time hyper-parameters (settable with
 * --set); a value computed from the data or the models (`let ce =
 * cross_entropy(net(x), y)`) is deferred (deferred[i] set), named once they exist,
 * before the loss. */
static void train_lets(Elab *e, Scope *s, const Ast *train, bool *deferred)
{
    StrVec later = {0};
    vec_push(&later, "x");
    vec_push(&later, "y");
    for (int i = 0; i < train->list2.n; i++) {
        const Ast *st = train->list2.v[i];
        if (st->kind == AST_ASSIGN && st->a->kind == AST_NAME)
            vec_push(&later, st->a->name);
    }
    for (int i = 0; i < train->list2.n; i++) {
        const Ast *st = train->list2.v[i];
        if (st->kind != AST_LET)
            continue;
        if (!el_find_override(e, st->name) && ast_mentions(st->a, later.v, later.n)) {
            deferred[i] = true;
            vec_push(&later, st->name);
            continue;
        }
        Override *o = el_find_override(e, st->name);
        Value v;
        if (o) {
            o->used = true;
            v = o->is_number ? vfloat(o->value) : vstr(o->text);
        } else {
            v = el_eval(e, s, st->a);
        }
        if (v.k == V_NUM && !v.is_bool)
            v = vnode(el_new_hyper(e, st->name, v.num, st->span));
        el_bind(s, st->name, v, st->span);
    }
    vec_free(&later);
}

/* The settings: batch, epochs or steps, seed, accumulate, shuffle. */
static void train_loop_settings(Elab *e, Scope *s, const Ast *train)
{
    Program *p = e->p;
    /* steps, when given, wins over epochs; --set epochs=N on a file that says
     * steps switches it to epochs */
    bool have_steps = false;
    p->batch = int_setting(e, s, train, "batch", 32, 1, NULL);
    p->epochs = int_setting(e, s, train, "epochs", 1, 1, NULL);
    p->steps = int_setting(e, s, train, "steps", 0, 1, &have_steps);
    if (!have_steps || (el_find_override(e, "epochs") && !el_find_override(e, "steps")))
        p->steps = 0;
    p->seed = (uint64_t)int_setting(e, s, train, "seed", 0, 0, NULL);
    p->accumulate = int_setting(e, s, train, "accumulate", 1, 1, NULL);
    p->distributed = e->opts->distributed;
    if (p->accumulate > 1 || p->distributed) {
        p->hyper_micro = p->hypers.n;
        el_new_hyper(e, "accumulate.micro", 0, train->span);
    }
    p->shuffle = bool_setting(e, s, train, "shuffle", true);
    p->drop_last = bool_setting(e, s, train, "drop_last", false);
}

/* precision = bf16 (a word or a string; --set precision=bf16, nnd run --precision
 * bf16): the f32 matrix products round both operands to bf16 and sum in f32, as
 * PyTorch's autocast does; weights, optimizer state and every other op stay f32.
 * precision = f32 (the default) leaves them exact, as does an f64 program. */
static void train_precision(Elab *e, const Ast *train)
{
    const Ast *st = el_find_setting(train, "precision");
    Override *o = el_find_override(e, "precision");
    Span span = st ? st->b->span : train->span;
    const char *text;
    if (o) {
        o->used = true;
        text = o->text;
    } else if (!st) {
        return;
    } else if (st->b->kind == AST_NAME || st->b->kind == AST_STR) {
        text = st->b->name;
    } else {
        el_error(e, span, "precision must be bf16 or f32");
        return;
    }
    if (strcmp(text, "f32") == 0)
        return;
    if (strcmp(text, "bf16") != 0) {
        el_setting_error(e, "precision", span, "precision must be bf16 or f32, got %s", text);
        return;
    }
    /* an f64 program (--dtype f64, gradcheck) is the exact reference: its products
     * stay f64 */
    e->p->bf16_asked = true;
    e->g->bf16 = e->p->float_dtype == NND_F32;
}

/* The data sets; the training set is `train`, or the only one.  Its samples
 * shape the batch inputs x and y ([B, ...] with B symbolic).  False after errors. */
static bool train_data(Elab *e, Scope *s, Module *m, const Ast *train)
{
    Program *p = e->p;
    int errors = e->d->nerrors;
    for (int i = 0; i < train->list2.n; i++)
        if (train->list2.v[i]->kind == AST_DATA)
            el_data(e, s, m, train->list2.v[i]);
    if (e->d->nerrors > errors)
        return false;
    p->train_data = -1;
    for (int i = 0; i < p->data.n; i++)
        if (strcmp(p->data.v[i].name, "train") == 0)
            p->train_data = i;
    if (p->train_data < 0) {
        if (p->data.n == 1) {
            p->train_data = 0;
        } else {
            el_error(e, train->span,
                     "with several data sets, the one to train on must be named 'train'");
            return false;
        }
    }
    for (int i = 0; i < p->data.n; i++)
        if (p->data.v[i].augmented && i != p->train_data) {
            el_error(e, p->data.v[i].span,
                     "flip, crop and noise change the data set trained on, and '%s' is not "
                     "trained on (evaluation reads data as it is)",
                     p->data.v[i].name);
            return false;
        }
    DataSet *td = &p->data.v[p->train_data];
    p->sym_batch = graph_symbol(e->g, "B");
    {
        Node x = {.op = OP_INPUT, /* features, or tokens (text) */
                  .dtype = (uint8_t)(td->x_dtype == NND_I32 ? NND_I32 : p->float_dtype),
                  .idx = 0,
                  .name = "x",
                  .span = td->span};
        x.shape.rank = td->x_rank + 1;
        x.shape.d[0] = p->sym_batch;
        memcpy(x.shape.d + 1, td->x_shape, sizeof(int64_t) * (size_t)td->x_rank);
        Node y = {.op = OP_INPUT,
                  .dtype = (uint8_t)(td->y_dtype == NND_I32 ? NND_I32 : p->float_dtype),
                  .idx = 1,
                  .name = "y",
                  .span = td->span};
        y.shape.rank = td->y_rank + 1;
        y.shape.d[0] = p->sym_batch;
        memcpy(y.shape.d + 1, td->y_shape, sizeof(int64_t) * (size_t)td->y_rank);
        p->x = graph_append(e->g, &x);
        p->y = graph_append(e->g, &y);
        el_bind(s, "x", vnode(p->x), td->span);
        el_bind(s, "y", vnode(p->y), td->span);
    }
    return true;
}

/* `name = Model(...) [from "file" except ...]`: the models, their parameters named
 * by the model when there are several (`net.fc1.W`), else from the model down. */
static void train_models(Elab *e, Scope *s, const Ast *train)
{
    Program *p = e->p;
    int nmodels = 0;
    for (int i = 0; i < train->list2.n; i++) {
        const Ast *st = train->list2.v[i];
        if (st->kind != AST_ASSIGN || st->a->kind != AST_NAME)
            continue;
        bool setting = false;
        for (int k = 0; train_settings[k]; k++)
            setting |= strcmp(train_settings[k], st->a->name) == 0;
        nmodels += !setting;
    }
    for (int i = 0; i < train->list2.n; i++) {
        const Ast *st = train->list2.v[i];
        if (st->kind != AST_ASSIGN || st->a->kind != AST_NAME)
            continue;
        const char *nm = st->a->name;
        bool setting = false;
        for (int k = 0; train_settings[k]; k++)
            setting |= strcmp(train_settings[k], nm) == 0;
        if (setting)
            continue;
        const char *prefix = nmodels <= 1 ? "" : nm;
        int p0 = p->params.n, s0 = p->states.n;
        e->bind_path = prefix;
        Value v = el_eval(e, s, st->b);
        e->bind_path = NULL;
        if (v.k != V_LAYER && v.k != V_ERR)
            el_error(e, st->b->span, "'%s = ...' must create a model", nm);
        else if (v.k == V_LAYER && st->c)
            load_from(e, s, st, prefix, p0, s0);
        el_bind(s, nm, v, st->span);
    }
}

/* The loss, in train mode: layer state updates are recorded while it is
 * elaborated.  It must be a float scalar.  False after errors. */
static bool train_loss(Elab *e, Scope *s, const Ast *train)
{
    Program *p = e->p;
    const Ast *ls = el_find_setting(train, "loss");
    e->record_state = true;
    Value lv = el_eval(e, s, ls->b);
    e->record_state = false;
    if (lv.k == V_ERR)
        return false;
    if (lv.k != V_NODE) {
        el_error(e, ls->b->span, "the loss must be a tensor computed from the model, not %s",
                 el_kind_name(&lv));
        return false;
    }
    if (nd(e, lv.node)->shape.rank != 0) {
        int d = diag_error(e->d, ls->b->span, "the loss must be a scalar, got shape %s",
                           el_shape_str(e, &nd(e, lv.node)->shape));
        diag_label(e->d, d, "reduce it with mean(...) or sum(...)");
        return false;
    }
    if (!dtype_is_float(nd(e, lv.node)->dtype)) {
        el_error(e, ls->b->span, "the loss must be a float, got %s",
                 dtype_name(nd(e, lv.node)->dtype));
        return false;
    }
    p->loss = lv.node;
    el_warn_outer_products(e, p->loss);
    el_bind(s, "loss", lv, ls->span);
    return true;
}

/* The forward function: the first model applied to x, when x alone is what it
 * takes; a model that wants more gets none (and no diagnostics for trying).  It
 * runs in eval mode, like the eval metrics. */
static void train_inference(Elab *e, Scope *s)
{
    Program *p = e->p;
    e->training = false;
    for (int i = 0; i < s->b.n; i++) {
        if (s->b.v[i].v.k != V_LAYER)
            continue;
        Diags *d = e->d;
        int mark = d->v.n, errors = d->nerrors;
        bool truncated = d->truncated;
        Args one = {.n = 1};
        one.v[0] = vnode(p->x);
        one.span[0] = s->b.v[i].span;
        Value fv = el_call_value(e, s->b.v[i].v, &one, s->b.v[i].span, NULL);
        for (int k = mark; k < d->v.n; k++) {
            free(d->v.v[k].msg);
            free(d->v.v[k].label);
        }
        d->v.n = mark;
        d->nerrors = errors;
        d->truncated = truncated;
        if (fv.k == V_NODE)
            p->forward = fv.node;
        break;
    }
    e->training = true;
}

/* `freeze A, B except C, D`: the parameters of A and B, but those of C and D, are
 * frozen; C and D must be inside A or B. */
static void train_freeze(Elab *e, Scope *s, const Ast *st)
{
    Program *p = e->p;
    bool *was = xcalloc((size_t)p->params.n + 1, sizeof(bool));
    for (int i = 0; i < p->params.n; i++)
        was[i] = p->params.v[i].frozen;
    for (int k = 0; k < st->list.n; k++) {
        int cnt;
        el_mark_params(e, el_eval(e, s, st->list.v[k]), st->list.v[k]->span, &cnt, "freeze", -1);
    }
    for (int k = 0; k < st->list2.n; k++) {
        IntVec ps = {0};
        Value v = el_eval(e, s, st->list2.v[k]);
        if (v.k == V_LAYER || v.k == V_LIST || (v.k == V_NODE && nd(e, v.node)->op == OP_PARAM))
            el_value_params(e, &v, &ps, 0);
        else if (v.k != V_ERR)
            el_error(e, st->list2.v[k]->span, "except takes a layer or a parameter, not %s",
                     el_kind_name(&v));
        for (int i = 0; i < ps.n; i++) {
            ParamInfo *pi = &p->params.v[ps.v[i]];
            if (!pi->frozen || was[ps.v[i]]) {
                el_error(e, st->list2.v[k]->span,
                         "except keeps trained what this freeze would freeze, and '%s' is not "
                         "in it",
                         pi->name);
                break;
            }
            pi->frozen = false;
        }
        vec_free(&ps);
    }
    free(was);
}

/* A layer whose parameters are all frozen keeps its state (batch norm's running
 * statistics) as it is: the state's updates go.  The layer is the state's name
 * without its last part (`bn` of `bn.running_mean`). */
static void freeze_layer_states(Program *p)
{
    int kept = 0;
    for (int u = 0; u < p->updates.n; u++) {
        const Update *up = &p->updates.v[u];
        bool fixed = false;
        if (up->is_state && p->states.v[up->index].param < 0) {
            const char *name = p->states.v[up->index].name, *dot = strrchr(name, '.');
            size_t len = dot ? (size_t)(dot - name) : 0;
            int mine = 0, frozen = 0;
            for (int i = 0; dot && i < p->params.n; i++) {
                const char *pn = p->params.v[i].name;
                if (strncmp(pn, name, len) == 0 && pn[len] == '.' && !strchr(pn + len + 1, '.')) {
                    mine++;
                    frozen += p->params.v[i].frozen;
                }
            }
            fixed = mine > 0 && frozen == mine;
        }
        if (!fixed)
            p->updates.v[kept++] = *up;
    }
    p->updates.n = kept;
}

/* `freeze` statements, then the optimizers: the default `opt`, then the groups
 * (`opt net.fc2 = ...`; a later group wins).  False after errors. */
static bool train_optimizers(Elab *e, Scope *s, const Ast *train)
{
    Program *p = e->p;
    for (int i = 0; i < train->list2.n; i++)
        if (train->list2.v[i]->kind == AST_FREEZE)
            train_freeze(e, s, train->list2.v[i]);
    freeze_layer_states(p);
    /* optimizers: the default, then groups (a later group wins) */
    const Ast *os = el_find_setting(train, "opt");
    const Ast *oexpr = e->opts->opt_expr ? e->opts->opt_expr : os->b;
    Value ov = el_eval(e, s, oexpr);
    if (ov.k != V_OPT) {
        if (ov.k != V_ERR)
            el_error(e, oexpr->span, "opt must be an optimizer, like Adam(lr = 1e-3), not %s",
                     el_kind_name(&ov));
        return false;
    }
    Group *dflt = el_make_group(e, ov, "opt", os->span);
    if (!dflt)
        return false;
    for (int i = 0; i < p->params.n; i++)
        p->params.v[i].group = dflt->index;
    for (int i = 0; i < train->list2.n; i++) {
        const Ast *st = train->list2.v[i];
        if (st->kind != AST_OPT_GROUP)
            continue;
        Value target = el_eval(e, s, st->a);
        Value gv = el_eval(e, s, st->b);
        if (gv.k != V_OPT) {
            if (gv.k != V_ERR)
                el_error(e, st->b->span, "expected an optimizer, like RMSprop(lr = 1e-3)");
            continue;
        }
        StrBuf path = {0};
        for (const Ast *q = st->a; q; q = q->kind == AST_MEMBER ? q->a : NULL) {
            char *prev = path.s ? xstrdup(path.s) : xstrdup("");
            path.len = 0;
            sb_puts(&path, q->name);
            if (*prev) {
                sb_putc(&path, '.');
                sb_puts(&path, prev);
            }
            free(prev);
        }
        Group *gr = el_make_group(e, gv, arena_printf(&e->p->arena, "opt.%s", path.s), st->span);
        sb_free(&path);
        if (!gr)
            continue;
        int cnt;
        el_mark_params(e, target, st->a->span, &cnt, "opt", gr->index);
    }
    return true;
}

/* The loss must reach a trained parameter: otherwise every gradient is zero and
 * training would change nothing (PyTorch stops there too: "element 0 of tensors
 * does not require grad", "optimizer got an empty parameter list").  Program.idle
 * says why not, for the commands that train to refuse (program_report_idle); the
 * others (check, summary, predict) only warn. */
static void train_trains_something(Elab *e, const Ast *train)
{
    Program *p = e->p;
    NodeVec all = {0}, trained = {0};
    for (int i = 0; i < p->params.n; i++) {
        vec_push(&all, p->params.v[i].node);
        if (!p->params.v[i].frozen)
            vec_push(&trained, p->params.v[i].node);
    }
    const Ast *freeze = NULL;
    for (int i = 0; i < train->list2.n; i++)
        if (train->list2.v[i]->kind == AST_FREEZE)
            freeze = train->list2.v[i];
    if (all.n && !trained.n) {
        p->idle.why = "every parameter is frozen: training would change nothing";
        p->idle.span = freeze ? freeze->span : train->span;
    } else if (!autodiff_depends(e->g, p->loss, trained.v, trained.n)) {
        p->idle.why = "the loss depends on no trained parameter: training would change nothing";
        p->idle.span = el_find_setting(train, "loss")->b->span;
        p->idle.frozen = freeze && autodiff_depends(e->g, p->loss, all.v, all.n);
        if (p->idle.frozen)
            p->idle.freeze = freeze->span;
    }
    vec_free(&all);
    vec_free(&trained);
}

/* Whether the value of root reads x or y (live: scratch, graph_count slots). */
static bool reads_batch(Elab *e, NodeId root, bool *live)
{
    memset(live, 0, sizeof(bool) * (size_t)graph_count(e->g));
    graph_mark_live(e->g, &root, 1, live);
    return (e->p->x && live[e->p->x]) || (e->p->y && live[e->p->y]);
}

/* A distributed program's apply step: each update with the gradient sums (summed
 * over the ranks) in place of sum + B * g, without the updates that still read the
 * batch (layer states, which every micro-batch moves); the same for a log's
 * statistics, which must not read the batch. */
static void apply_updates(Elab *e, const Ast *train)
{
    Program *p = e->p;
    int nu = p->updates.n, no = p->step_outputs.n;
    NodeId *roots = xcalloc((size_t)(nu + no) + 1, sizeof(NodeId));
    for (int i = 0; i < nu; i++)
        roots[i] = p->updates.v[i].value;
    for (int i = 0; i < no; i++)
        roots[nu + i] = p->step_outputs.v[i].node;
    graph_substitute(e->g, e->accum_sums.v, e->accum_states.v, e->accum_sums.n, roots, nu + no);
    bool *live = xcalloc((size_t)graph_count(e->g), sizeof(bool));
    for (int i = 0; i < nu; i++)
        if (!reads_batch(e, roots[i], live))
            vec_push(&p->apply_updates,
                     ((Update){p->updates.v[i].is_state, p->updates.v[i].index, roots[i]}));
    for (int i = 0; i < no; i++) {
        if (reads_batch(e, roots[nu + i], live))
            el_error(e, p->log.dir ? p->log.span : train->span,
                     "under mpirun, the logged '%s' is computed from the batch, which the ranks "
                     "split: not supported yet",
                     p->step_outputs.v[i].name);
        vec_push(&p->apply_outputs, roots[nu + i]);
    }
    free(live);
    free(roots);
}

/* Gradients of the loss for the trainable parameters (accumulated and clipped
 * as the settings say), then each parameter's update rule, constraint and
 * average. */
static void train_updates(Elab *e, Scope *s, const Ast *train)
{
    Program *p = e->p;
    NodeVec wrt = {0};
    IntVec which = {0};
    for (int i = 0; i < p->params.n; i++) {
        vec_push(&p->grads, 0);
        if (!p->params.v[i].frozen) {
            vec_push(&wrt, p->params.v[i].node);
            vec_push(&which, i);
        }
    }
    NodeId *gs = xcalloc((size_t)(wrt.n ? wrt.n : 1), sizeof(NodeId));
    e->g->phase = PHASE_BACKWARD;
    if (wrt.n)
        autodiff(e->g, p->loss, wrt.v, wrt.n, gs);
    if (p->accumulate > 1 || p->distributed)
        el_accumulate_gradients(e, train, which.v, gs, wrt.n, &e->accum_sums, &e->accum_states);
    el_clip_gradients(e, s, train, gs, wrt.n);
    for (int i = 0; i < which.n; i++)
        p->grads.v[which.v[i]] = gs[i];
    free(gs);
    e->g->phase = PHASE_UPDATE;
    for (int i = 0; i < which.n; i++) {
        int pi = which.v[i];
        Group *gr = NULL;
        for (int k = 0; k < e->groups.n; k++)
            if (e->groups.v[k]->index == p->params.v[pi].group)
                gr = e->groups.v[k];
        int first = p->updates.n;
        el_expand_update(e, gr, pi);
        el_constrain_and_average(e, s, train, pi, first);
    }
    vec_free(&wrt);
    vec_free(&which);
}

/* Evaluation, in eval mode: `loss` there is the loss as eval mode computes it;
 * each `eval DATA every N: metrics` gets a spec, its data checked against the
 * training set's samples. */
static void train_evals(Elab *e, Scope *s, const Ast *train)
{
    Program *p = e->p;
    const Ast *ls = el_find_setting(train, "loss");
    DataSet *td = &p->data.v[p->train_data];
    e->training = false;
    for (int i = 0; i < train->list2.n; i++)
        if (train->list2.v[i]->kind == AST_EVAL) {
            Value el = el_eval(e, s, ls->b);
            if (el.k != V_ERR)
                el_bind(s, "loss", el, ls->span);
            break;
        }
    for (int i = 0; i < train->list2.n; i++) {
        const Ast *st = train->list2.v[i];
        if (st->kind != AST_EVAL)
            continue;
        EvalSpec es = {0};
        es.span = st->span;
        es.data = -1;
        for (int k = 0; k < p->data.n; k++)
            if (strcmp(p->data.v[k].name, st->name) == 0)
                es.data = k;
        if (es.data < 0)
            continue;
        DataSet *ed = &p->data.v[es.data];
        Shape ex = shape_make(ed->x_rank, ed->x_shape), tx = shape_make(td->x_rank, td->x_shape);
        Shape ey = shape_make(ed->y_rank, ed->y_shape), ty = shape_make(td->y_rank, td->y_shape);
        if (!shape_equal(&ex, &tx) || !shape_equal(&ey, &ty) ||
            (ed->y_dtype == NND_I32) != (td->y_dtype == NND_I32) ||
            (ed->x_dtype == NND_I32) != (td->x_dtype == NND_I32)) {
            el_error(e, st->span,
                     "data set '%s' has samples shaped %s -> %s, but the training data %s -> %s",
                     ed->name, el_shape_str(e, &ex), el_shape_str(e, &ey), el_shape_str(e, &tx),
                     el_shape_str(e, &ty));
            continue;
        }
        const Ast *ev_every = st->a;
        es.in_epochs = ev_every->name[0] == 'e';
        es.every = 1;
        if (ev_every->a &&
            !el_to_int(e, el_eval(e, s, ev_every->a), ev_every->a->span, "the interval", &es.every))
            continue;
        if (es.every < 1) {
            el_error(e, ev_every->span, "the interval must be at least 1");
            continue;
        }
        for (int k = 0; k < st->list.n; k++) {
            const Ast *mx = st->list.v[k];
            bool kw = mx->kind == AST_KWARG;
            const Ast *ex_ast = kw ? mx->a : mx;
            Value v = el_eval(e, s, ex_ast);
            if (v.k == V_ERR)
                continue;
            NodeId n = v.k == V_NODE ? v.node : 0;
            if (!n || nd(e, n)->shape.rank != 0) {
                el_error(e, ex_ast->span, "a metric must be a scalar computed from the data%s",
                         n ? ", like mean(...)" : "");
                continue;
            }
            if (!dtype_is_float(nd(e, n)->dtype))
                n = gb_cast(e->g, n, p->float_dtype, ex_ast->span);
            const char *name =
                kw                                                        ? mx->name
                : ex_ast->kind == AST_CALL && ex_ast->a->kind == AST_NAME ? ex_ast->a->name
                : ex_ast->kind == AST_NAME                                ? ex_ast->name
                                           : arena_printf(&p->arena, "metric%d", k + 1);
            Metric mt = {arena_strdup(&p->arena, name), n, ex_ast->span, false};
            vec_push(&es.metrics, mt);
        }
        vec_push(&p->evals, es);
    }
}

/* `sample every N steps: prompt = "Q: ", tokens = 100, temperature = 1, top_k = 0`:
 * the settings, checked; that the model is a language model is checked by the
 * sampler (exec/sample.c) before training. */
static void train_sample(Elab *e, Scope *s, const Ast *st)
{
    Program *p = e->p;
    if (p->sample.every) {
        el_error(e, st->span, "only one sample statement is allowed");
        return;
    }
    const Ast *every = st->a;
    int64_t n = 1, tokens = 100, top_k = 0;
    double temperature = 1;
    const char *prompt = "\n";
    if (every->a && !el_to_int(e, el_eval(e, s, every->a), every->a->span, "the interval", &n))
        return;
    for (int k = 0; k < st->list.n; k++) {
        const Ast *m = st->list.v[k];
        Value v = el_eval(e, s, m->a);
        bool ok = strcmp(m->name, "prompt") == 0
                      ? el_str_arg(e, &v, m->a->span, "the prompt", &prompt)
                  : strcmp(m->name, "tokens") == 0 ? el_to_int(e, v, m->a->span, "tokens", &tokens)
                  : strcmp(m->name, "top_k") == 0
                      ? el_to_int(e, v, m->a->span, "top_k", &top_k)
                      : el_to_number(e, v, m->a->span, "the temperature", &temperature);
        if (!ok)
            return;
        const char *bad = NULL;
        if (strcmp(m->name, "tokens") == 0 && (tokens < 1 || tokens > 100000))
            bad = "tokens must be 1 to 100000";
        else if (strcmp(m->name, "top_k") == 0 && top_k < 0)
            bad = "top_k must be 0 (every byte) or more";
        else if (strcmp(m->name, "temperature") == 0 && !(temperature > 0 && temperature < 1e6))
            bad = "the temperature must be positive";
        if (bad) {
            el_error(e, m->a->span, "%s", bad);
            return;
        }
    }
    if (n < 1) {
        el_error(e, every->span, "the interval must be at least 1");
        return;
    }
    if (!*prompt) {
        el_error(e, st->span, "the prompt is empty: give at least one byte (\"\\n\")");
        return;
    }
    const Node *in = nd(e, p->x), *f = p->forward ? nd(e, p->forward) : NULL;
    if (!f || in->dtype != NND_I32 || in->shape.rank != 2 || f->shape.rank != 3 ||
        f->shape.d[1] != in->shape.d[1]) {
        int d = diag_error(e->d, st->span, "sample needs a language model");
        diag_label(e->d, d,
                   "x: [B, T] i32 tokens and a model giving [B, T, V] logits, as "
                   "examples/gpt.nnd");
        return;
    }
    p->sample.every = n;
    p->sample.in_epochs = every->name[0] == 'e';
    p->sample.tokens = tokens;
    p->sample.top_k = top_k;
    p->sample.temperature = temperature;
    p->sample.prompt = arena_strdup(&p->arena, prompt);
    p->sample.span = st->span;
}

/* early_stop = "val.loss" (or "max val.accuracy"), patience = 5, min_delta = 0:
 * the eval and metric watched, checked against the eval statements. */
static void train_early_stop(Elab *e, Scope *s, const Ast *train)
{
    Program *p = e->p;
    p->early.eval = -1;
    const Ast *st = el_find_setting(train, "early_stop");
    const Ast *pa = el_find_setting(train, "patience"), *md = el_find_setting(train, "min_delta");
    if (!st) {
        if (pa || md)
            el_error(e, (pa ? pa : md)->span, "%s is a setting of early_stop, which is not set",
                     pa ? "patience" : "min_delta");
        return;
    }
    Value v = el_eval(e, s, st->b);
    const char *text;
    if (!el_str_arg(e, &v, st->b->span, "early_stop", &text))
        return;
    bool max = strncmp(text, "max ", 4) == 0, min = strncmp(text, "min ", 4) == 0;
    const char *what = max || min ? text + 4 : text;
    const char *dot = strchr(what, '.');
    int ev = -1, metric = -1;
    for (int i = 0; dot && i < p->evals.n; i++) {
        const char *dn = p->data.v[p->evals.v[i].data].name;
        if (strlen(dn) != (size_t)(dot - what) || strncmp(dn, what, (size_t)(dot - what)) != 0)
            continue;
        ev = i;
        for (int k = 0; k < p->evals.v[i].metrics.n; k++)
            if (strcmp(p->evals.v[i].metrics.v[k].name, dot + 1) == 0)
                metric = k;
        if (metric >= 0)
            break;
    }
    if (metric < 0) {
        StrBuf b = {0};
        for (int i = 0; i < p->evals.n; i++)
            for (int k = 0; k < p->evals.v[i].metrics.n; k++)
                sb_printf(&b, "%s\"%s.%s\"", b.len ? ", " : "", p->data.v[p->evals.v[i].data].name,
                          p->evals.v[i].metrics.v[k].name);
        int d = diag_error(e->d, st->b->span, "early_stop: %s",
                           !dot     ? "write \"DATA.METRIC\", like \"val.loss\""
                           : ev < 0 ? "no eval statement evaluates that data set"
                                    : "that eval statement has no metric of that name");
        if (b.len)
            diag_label(e->d, d, "the metrics evaluated: %s (\"max ...\" to maximize)", b.s);
        else
            diag_label(e->d, d, "add an eval statement, like `eval val every epoch: loss`");
        sb_free(&b);
        return;
    }
    p->early.eval = ev;
    p->early.metric = metric;
    p->early.maximize = max;
    p->early.patience = int_setting(e, s, train, "patience", 5, 1, NULL);
    bool f = false;
    p->early.min_delta = el_setting_number(e, s, md, "min_delta", 0, &f);
    if (!(p->early.min_delta >= 0)) {
        el_setting_error(e, "min_delta", md ? md->b->span : st->span,
                         "min_delta must be 0 or more, got %g", p->early.min_delta);
        p->early.eval = -1;
        return;
    }
    p->early.what = arena_printf(&p->arena, "%s %s", p->data.v[p->evals.v[ev].data].name,
                                 p->evals.v[ev].metrics.v[metric].name);
}

/* `checkpoint every N to DIR [keep K]` and `save "file"`. */
static void train_outputs(Elab *e, Scope *s, const Ast *train)
{
    Program *p = e->p;
    for (int i = 0; i < train->list2.n; i++) {
        const Ast *st = train->list2.v[i];
        if (st->kind == AST_LOG && strcmp(st->name, "sample") == 0)
            train_sample(e, s, st);
        if (st->kind != AST_CHECKPOINT)
            continue;
        if (p->ckpt_dir) {
            el_error(e, st->span, "only one checkpoint statement is allowed");
            continue;
        }
        const Ast *every = st->a;
        Value dv = el_eval(e, s, st->b);
        const char *dir;
        int64_t n = 1, keep = 0;
        if (!el_path_arg(e, &dv, st->b->span, "the checkpoint directory", &dir) ||
            (every->a &&
             !el_to_int(e, el_eval(e, s, every->a), every->a->span, "the interval", &n)) ||
            (st->c && !el_to_int(e, el_eval(e, s, st->c), st->c->span, "keep", &keep)))
            continue;
        if (n < 1 || (st->c && keep < 1)) {
            el_error(e, n < 1 ? every->span : st->c->span, "%s must be at least 1",
                     n < 1 ? "the interval" : "keep");
            continue;
        }
        p->ckpt_dir = arena_strdup(&p->arena, dir);
        p->ckpt_span = st->b->span;
        p->ckpt_every = n;
        p->ckpt_keep = keep;
        p->ckpt_in_epochs = every->name[0] == 'e';
    }
    /* save: one file (a second one was taken in the first's place, silently) */
    const Ast *first_save = NULL;
    for (int i = 0; i < train->list2.n; i++) {
        const Ast *st = train->list2.v[i];
        if (st->kind != AST_SAVE)
            continue;
        if (first_save) {
            el_error(e, st->span, "only one save statement is allowed");
            diag_note(e->d, first_save->span, "the first is here");
            continue;
        }
        first_save = st;
        Value v = el_eval(e, s, st->b);
        const char *path;
        if (el_path_arg(e, &v, st->b->span, "the path to save to", &path)) {
            p->save_path = arena_strdup(&p->arena, path);
            p->save_span = st->span;
        }
    }
}

/* Batch statistics need two samples (batch norm's unbiased running variance
 * divides by n - 1: one sample makes it NaN, and eval accuracy drops to chance):
 * when the model keeps such statistics, a run whose batches can hold one sample
 * stops here, before training (PyTorch raises at run time; the sizes are known
 * now). */
static void check_batch_of_one(Elab *e, const Ast *train)
{
    Program *p = e->p;
    int64_t n = p->data.v[p->train_data].n;
    int64_t last = nnd_train_samples_per_epoch(n, p->batch, p->drop_last) % p->batch;
    if (p->batch != 1 && last != 1)
        return;
    const char *state = program_batch_statistic(p);
    if (!state)
        return;
    const Ast *bs = el_find_setting(train, "batch");
    Span span = bs ? bs->span : train->span;
    if (p->batch == 1)
        el_setting_error(e, "batch", span,
                         "batch = 1: '%s' is updated from statistics over the "
                         "batch (batch norm), which need at least 2 samples",
                         state);
    else
        el_setting_error(e, "batch", span,
                         "the last batch of each epoch holds 1 sample (%lld "
                         "samples, batch %lld), and '%s' is updated from "
                         "statistics over the batch (batch norm), which need at "
                         "least 2: set drop_last = true, or another batch size",
                         (long long)n, (long long)p->batch, state);
}

/* The train block, in the order its parts depend on each other: counters, lets,
 * settings, data, models, deferred lets, the loss, the forward function,
 * optimizers, gradients and updates, log statistics, evals, outputs. */
static void elab_train(Elab *e, Module *m, const Ast *train)
{
    Scope s = {.mod = m};
    bool *deferred = xcalloc((size_t)train->list2.n + 1, 1);
    train_counters(e, &s, train);
    train_lets(e, &s, train, deferred);
    /* a bad setting falls back to its default: the rest is still elaborated, so
     * every setting's error comes in one run */
    train_loop_settings(e, &s, train);
    train_precision(e, train);
    int settled = e->d->nerrors;
    if (!train_data(e, &s, m, train))
        goto done;
    train_models(e, &s, train);
    for (int i = 0; i < train->list2.n; i++)
        if (deferred[i]) {
            const Ast *st = train->list2.v[i];
            Lazy *l = arena_alloc(&e->arena, sizeof *l);
            *l = (Lazy){.st = st, .scope = &s};
            el_bind(&s, st->name, (Value){.k = V_LAZY, .lazy = l}, st->span);
        }
    if (e->d->nerrors > settled || !train_loss(e, &s, train))
        goto done;
    train_inference(e, &s);
    if (!train_optimizers(e, &s, train) || e->d->nerrors > settled)
        goto done;
    train_trains_something(e, train);
    train_updates(e, &s, train);
    check_batch_of_one(e, train);
    /* logs: the statistics as step outputs, computed in train mode */
    e->g->phase = PHASE_STATS;
    for (int i = 0; i < train->list2.n; i++)
        if (train->list2.v[i]->kind == AST_LOG && strcmp(train->list2.v[i]->name, "log") == 0)
            elab_log(e, &s, train->list2.v[i]);
    if (e->p->distributed && e->d->nerrors == settled)
        apply_updates(e, train);
    e->g->phase = PHASE_FORWARD;
    train_evals(e, &s, train);
    train_early_stop(e, &s, train);
    train_outputs(e, &s, train);
done:
    free(deferred);
    vec_free(&s.b);
}

void el_begin(Elab *e, Frontend *fe, const ElabOptions *opts)
{
    Program *p = xcalloc(1, sizeof *p);
    graph_init(&p->g);
    p->g.phase = PHASE_FORWARD;
    p->float_dtype = opts->float_dtype;
    p->accumulate = 1;
    p->hyper_accum = p->hyper_micro = -1;
    *e = (Elab){.fe = fe, .d = &fe->diags, .p = p, .g = &p->g, .opts = opts, .training = true};
    p->g.custom_vjp = el_custom_vjp;
    p->g.custom_ctx = e;
}

void el_end(Elab *e)
{
    Program *p = e->p;
    /* the vjp blocks are gone with the elaboration: every CUSTOM node's gradient
     * that will ever be needed has been built */
    p->g.custom_vjp = NULL;
    p->g.custom_ctx = NULL;
    p->custom_vjps = e->customs.n;
    vec_free(&e->customs);
    vec_free(&e->datadep);
    vec_free(&e->accum_sums);
    vec_free(&e->accum_states);
    vec_free(&e->outer);
    for (int i = 0; i < e->groups.n; i++)
        vec_free(&e->groups.v[i]->hypers);
    vec_free(&e->groups);
    for (int i = 0; i < e->layers.n; i++)
        vec_free(&e->layers.v[i]->members);
    vec_free(&e->layers);
    arena_free(&e->arena);
}

Program *elab_program(Frontend *fe, Module *main, const ElabOptions *opts)
{
    Elab e;
    el_begin(&e, fe, opts);
    Program *p = e.p;
    if (!main->train) {
        diag_error(e.d, (Span){main->file, 0, 0}, "%s has no train block", main->path);
    } else {
        elab_train(&e, main, main->train);
    }
    for (int i = 0; i < opts->noverrides; i++)
        if (!opts->overrides[i].used) {
            StrVec c = {0};
            for (int k = 0; train_settings[k]; k++)
                vec_push(&c, train_settings[k]);
            for (int k = 0; k < p->hypers.n; k++)
                vec_push(&c, p->hypers.v[k].name);
            const char *best = suggest_name(opts->overrides[i].key, c.v, c.n);
            int d = diag_error(e.d, span_none(), "--set %s: nothing in the program is called '%s'",
                               opts->overrides[i].key, opts->overrides[i].key);
            if (best)
                diag_label(e.d, d, "did you mean '%s'?", best);
            vec_free(&c);
        }
    el_end(&e);
    if (diags_has_errors(e.d)) {
        program_free(p);
        return NULL;
    }
    return p;
}
