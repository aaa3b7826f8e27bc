#include "sema.h"

#include <ctype.h>
#include <limits.h>
#include <string.h>

#include "builtins.h"

typedef enum NameKind {
    NK_LOCAL,
    NK_PARAM, /* function or layer parameter */
    NK_MEMBER, /* layer member */
    NK_HYPER, /* optimizer hyper-parameter */
    NK_STATE,
    NK_READONLY, /* g, t, step, epoch, steps, x, y */
    NK_W,
    NK_PATTERN, /* dimension name bound by a type */
} NameKind;

typedef struct Name {
    const char *name;
    NameKind kind;
    Span span;
    bool used, assigned;
} Name;

typedef struct Sema {
    Frontend *fe;
    Diags *d;
    Module *mod;
    VEC(Name) names;
    bool in_init; /* inside a parameter initializer */
    bool in_optimizer;
    const Ast *optimizer; /* the optimizer being checked */
    VEC(const char *) early; /* its states used before their declaration (reported) */
} Sema;

const char *suggest_name(const char *name, const char *const *cands, int n)
{
    /* the fewest edits ignoring case, then the fewest counting it (Adamw: AdamW
     * before Adam), then a candidate with the name's initial case (Dnese: a layer) */
    const char *best = NULL;
    int len = (int)strlen(name);
    int limit = len <= 3 ? 1 : len <= 6 ? 2 : 3, best_cost = INT_MAX;
    for (int i = 0; i < n; i++) {
        if (!cands[i] || strcmp(cands[i], name) == 0)
            continue;
        int d = edit_distance(name, cands[i], limit, true);
        if (d > limit)
            continue;
        int exact = edit_distance(name, cands[i], limit + len, false);
        bool same_initial =
            (isupper((unsigned char)name[0]) != 0) == (isupper((unsigned char)cands[i][0]) != 0);
        int cost = (d * 64 + exact) * 2 + !same_initial;
        if (cost < best_cost) {
            best_cost = cost;
            best = cands[i];
        }
    }
    return best;
}

static int push_name(Sema *s, const char *name, NameKind kind, Span span)
{
    Name n = {name, kind, span, false, false};
    vec_push(&s->names, n);
    return s->names.n - 1;
}

static Name *find_local(Sema *s, const char *name)
{
    for (int i = s->names.n - 1; i >= 0; i--)
        if (strcmp(s->names.v[i].name, name) == 0)
            return &s->names.v[i];
    return NULL;
}

/* Every name visible here, for suggestions. */
static void collect_candidates(Sema *s, StrVec *out)
{
    for (int i = 0; i < s->names.n; i++)
        vec_push(out, s->names.v[i].name);
    for (int i = 0; i < s->mod->decls.n; i++)
        vec_push(out, s->mod->decls.v[i]->name);
    for (int u = 0; u < s->mod->uses.n; u++)
        for (int i = 0; i < s->mod->uses.v[u]->decls.n; i++)
            vec_push(out, s->mod->uses.v[u]->decls.v[i]->name);
    for (int i = 0; i < BI_COUNT; i++)
        vec_push(out, builtin_info[i].name);
    vec_push(out, "pi");
    vec_push(out, "inf");
    vec_push(out, "training");
}

/* In an optimizer, a state declared further down. */
static const Ast *later_state(Sema *s, const char *name)
{
    for (int i = 0; s->in_optimizer && i < s->optimizer->list2.n; i++) {
        const Ast *st = s->optimizer->list2.v[i];
        if (st->kind == AST_STATE_DECL && strcmp(st->name, name) == 0)
            return st;
    }
    return NULL;
}

static void unknown_name(Sema *s, const char *name, Span span, const char *what)
{
    const Ast *decl = later_state(s, name);
    if (decl) {
        diag_error(s->d, span, "state '%s' is used before its declaration", name);
        diag_note(s->d, decl->span,
                  "declared here: a state is declared before the statements "
                  "that use it");
        vec_push(&s->early, decl->name); /* no "never updated" for it: the error says it */
        return;
    }
    int d = diag_error(s->d, span, "unknown %s '%s'", what, name);
    const char *lib = frontend_stdlib_module_of(s->fe, name);
    if (lib) { /* warmup_cosine without `use schedules` */
        diag_label(s->d, d, "it is in the standard library's '%s': add `use %s`", lib, lib);
        return;
    }
    StrVec c = {0};
    collect_candidates(s, &c);
    const char *best = suggest_name(name, c.v, c.n);
    if (best)
        diag_label(s->d, d, "did you mean '%s'?", best);
    vec_free(&c);
}

/* Resolves a plain name; returns the declaration it names when it is a top-level
 * declaration (for call checks), else NULL. */
static const Ast *resolve(Sema *s, const char *name, Span span, int *builtin)
{
    *builtin = -1;
    Name *n = find_local(s, name);
    if (n) {
        n->used = true;
        return NULL;
    }
    Module *where = NULL;
    bool ambiguous = false;
    const Ast *decl = module_lookup(s->mod, name, &where, &ambiguous);
    if (decl) {
        if (ambiguous) {
            int d = diag_error(s->d, span,
                               "'%s' is ambiguous: more than one used module defines it", name);
            (void)d;
            for (int u = 0; u < s->mod->uses.n; u++) {
                const Ast *x = module_own(s->mod->uses.v[u], name);
                if (x)
                    diag_note(s->d, x->span, "defined in %s", s->mod->uses.v[u]->name);
            }
        }
        return decl;
    }
    *builtin = builtin_find(name);
    double v;
    if (*builtin >= 0 || builtin_constant(name, &v) || strcmp(name, "training") == 0)
        return NULL;
    unknown_name(s, name, span, "name");
    return NULL;
}

static void check_expr(Sema *s, const Ast *e);

/* Checks call arguments against a parameter list given by names. */
static void check_args(Sema *s, const Ast *call, const char *what, const char *const *params,
                       int nparams, const bool *required, Span decl_span)
{
    bool given[64] = {0};
    int npos = 0;
    bool seen_kw = false;
    bool bad = false; /* an argument error was reported: a missing one would be noise */
    if (nparams > 64)
        nparams = 64;
    for (int i = 0; i < call->list.n; i++) {
        const Ast *a = call->list.v[i];
        if (a->kind == AST_KWARG) {
            seen_kw = true;
            int k = -1;
            for (int j = 0; j < nparams; j++)
                if (strcmp(params[j], a->name) == 0)
                    k = j;
            if (k < 0) {
                int d = diag_error(s->d, a->span, "%s has no parameter '%s'", what, a->name);
                const char *not_given[64];
                for (int j = 0; j < nparams; j++)
                    not_given[j] = given[j] ? NULL : params[j];
                const char *best = suggest_name(a->name, not_given, nparams);
                if (best)
                    diag_label(s->d, d, "did you mean '%s'?", best);
                bad = true;
                continue;
            }
            if (given[k]) {
                diag_error(s->d, a->span, "argument '%s' of %s is given twice", a->name, what);
                bad = true;
            }
            given[k] = true;
        } else {
            if (seen_kw) {
                diag_error(s->d, a->span, "positional argument after a keyword argument");
                bad = true;
                continue;
            }
            if (npos >= nparams) {
                int d = diag_error(s->d, a->span, "too many arguments: %s takes %d", what, nparams);
                if (decl_span.file)
                    diag_note(s->d, decl_span, "declared here");
                (void)d;
                bad = true;
            } else {
                given[npos] = true;
            }
            npos++;
        }
    }
    for (int j = 0; j < nparams && !bad; j++) {
        if (!required[j] || given[j])
            continue;
        if (s->in_init && (strcmp(params[j], "fan_in") == 0 || strcmp(params[j], "fan_out") == 0))
            continue; /* filled in from the parameter being initialized */
        diag_error(s->d, call->span, "missing argument '%s' in call to %s", params[j], what);
        if (decl_span.file)
            diag_note(s->d, decl_span, "declared here");
    }
}

static void check_call(Sema *s, const Ast *call)
{
    const Ast *callee = call->a;
    for (int i = 0; i < call->list.n; i++) {
        const Ast *a = call->list.v[i];
        check_expr(s, a->kind == AST_KWARG ? a->a : a);
    }
    if (callee->kind != AST_NAME) {
        check_expr(s, callee);
        return;
    }
    int bi;
    const Ast *decl = resolve(s, callee->name, callee->span, &bi);
    if (decl && (decl->kind == AST_FN || decl->kind == AST_LAYER || decl->kind == AST_OPTIMIZER)) {
        const char *params[64];
        bool req[64];
        int n = NND_MIN(decl->list.n, 64);
        for (int i = 0; i < n; i++) {
            params[i] = decl->list.v[i]->name;
            req[i] = decl->list.v[i]->b == NULL;
        }
        const char *kind = decl->kind == AST_FN          ? "function"
                           : decl->kind == AST_OPTIMIZER ? "optimizer"
                                                         : "layer";
        char what[256];
        snprintf(what, sizeof what, "%s '%s'", kind, decl->name);
        check_args(s, call, what, params, n, req, decl->span);
    } else if (decl && decl->kind == AST_LET) {
        /* a value; calling it is checked when elaborated */
    } else if (bi >= 0) {
        const BuiltinInfo *b = &builtin_info[bi];
        bool req[BUILTIN_MAX_PARAMS];
        for (int i = 0; i < b->nparams; i++)
            req[i] = i < b->required;
        char what[128];
        snprintf(what, sizeof what, "'%s'", b->name);
        check_args(s, call, what, b->params, b->nparams, req, span_none());
    }
}

static void check_type(Sema *s, const Ast *t, bool patterns)
{
    if (!t)
        return;
    for (int i = 0; i < t->list.n; i++) {
        const Ast *d = t->list.v[i];
        if (d->kind == AST_NAME) {
            if (d->op == AOP_MUL && !patterns) {
                diag_error(s->d, d->span,
                           "'*%s' is only allowed in the type of a function parameter", d->name);
                continue;
            }
            int bi;
            double v;
            bool known = find_local(s, d->name) || module_lookup(s->mod, d->name, NULL, NULL) ||
                         builtin_constant(d->name, &v);
            if (d->op == AOP_MUL || (!known && patterns)) {
                if (!find_local(s, d->name))
                    push_name(s, d->name, NK_PATTERN, d->span);
                continue;
            }
            (void)bi;
        }
        check_expr(s, d);
    }
    if (t->name && strcmp(t->name, "f32") && strcmp(t->name, "f64") && strcmp(t->name, "i32") &&
        strcmp(t->name, "bool")) {
        int d = diag_error(s->d, t->span, "unknown dtype '%s'", t->name);
        static const char *const dts[] = {"f32", "f64", "i32", "bool"};
        const char *best = suggest_name(t->name, dts, 4);
        diag_label(s->d, d, best ? "did you mean '%s'?" : "dtypes are f32, f64, i32 and bool",
                   best ? best : "");
    }
}

static void check_expr(Sema *s, const Ast *e)
{
    if (!e)
        return;
    int bi;
    switch (e->kind) {
    case AST_NUM:
    case AST_STR:
    case AST_BOOL: return;
    case AST_NAME: resolve(s, e->name, e->span, &bi); return;
    case AST_UNARY: check_expr(s, e->a); return;
    case AST_BINARY:
        check_expr(s, e->a);
        check_expr(s, e->b);
        return;
    case AST_IF:
        check_expr(s, e->a);
        check_expr(s, e->b);
        check_expr(s, e->c);
        return;
    case AST_CALL: check_call(s, e); return;
    case AST_KWARG:
        diag_error(s->d, e->span, "'%s = ...' is only allowed among call arguments", e->name);
        return;
    case AST_MEMBER: check_expr(s, e->a); return;
    case AST_INDEX:
        check_expr(s, e->a);
        for (int i = 0; i < e->list.n; i++)
            check_expr(s, e->list.v[i]);
        return;
    case AST_SLICE:
        check_expr(s, e->a);
        check_expr(s, e->b);
        check_expr(s, e->c);
        return;
    case AST_LIST:
        for (int i = 0; i < e->list.n; i++)
            check_expr(s, e->list.v[i]);
        return;
    default:
        diag_error(s->d, e->span, "a %s statement is not an expression", ast_kind_name(e->kind));
        return;
    }
}

static const char *stmt_word(const Ast *st)
{
    switch (st->kind) {
    case AST_USE: return "'use'";
    case AST_LET: return "'let'";
    case AST_FN: return "a function";
    case AST_LAYER: return st->op ? "a model" : "a layer";
    case AST_OPTIMIZER: return "an optimizer";
    case AST_TRAIN: return "a train block";
    case AST_PARAM_DECL: return "a 'param' declaration";
    case AST_STATE_DECL: return "a 'state' declaration";
    case AST_ASSIGN: return "an assignment";
    case AST_DATA: return "a 'data' statement";
    case AST_OPT_GROUP: return "a parameter-group optimizer";
    case AST_FREEZE: return "'freeze'";
    case AST_EVAL: return "'eval'";
    case AST_LOG: return "'log'";
    case AST_CHECKPOINT: return "'checkpoint'";
    case AST_SAVE: return "'save'";
    case AST_VJP: return "a 'vjp' block";
    default: return "an expression";
    }
}

static void misplaced(Sema *s, const Ast *st, const char *where, const char *allowed)
{
    int d = diag_error(s->d, st->span, "%s is not allowed %s", stmt_word(st), where);
    if (allowed)
        diag_label(s->d, d, "%s", allowed);
}

/* Checks a parameter list: defaults see earlier parameters; types may bind
 * dimension names when `patterns`. */
static void check_params(Sema *s, const AstList *params, bool patterns)
{
    for (int i = 0; i < params->n; i++) {
        const Ast *p = params->v[i];
        for (int j = 0; j < i; j++)
            if (strcmp(params->v[j]->name, p->name) == 0) {
                diag_error(s->d, p->span, "parameter '%s' is declared twice", p->name);
                diag_note(s->d, params->v[j]->span, "first declared here");
            }
        check_type(s, p->a, patterns);
        if (p->b)
            check_expr(s, p->b);
        else
            for (int j = 0; j < i; j++)
                if (params->v[j]->b) {
                    diag_error(s->d, p->span,
                               "parameter '%s' without a default follows one with a default",
                               p->name);
                    break;
                }
        push_name(s, p->name, NK_PARAM, p->span);
    }
}

static bool assign_target_name(Sema *s, const Ast *st)
{
    if (st->a->kind != AST_NAME) {
        diag_error(s->d, st->a->span, "can only assign to a name here");
        check_expr(s, st->a);
        return false;
    }
    return true;
}

/* A block body: let and assignments, then the result expression. */
static void check_body(Sema *s, const AstList *body, Span span, const char *what)
{
    if (body->n == 0)
        diag_error(s->d, span, "%s has an empty body", what);
    for (int i = 0; i < body->n; i++) {
        const Ast *st = body->v[i];
        bool last = i == body->n - 1;
        if (st->kind == AST_LET || (st->kind == AST_ASSIGN && st->op == AOP_ASSIGN && !st->c)) {
            check_expr(s, st->kind == AST_LET ? st->a : st->b);
            if (st->kind == AST_ASSIGN && !assign_target_name(s, st))
                continue;
            const char *nm = st->kind == AST_LET ? st->name : st->a->name;
            push_name(s, nm, NK_LOCAL, st->span);
            if (last)
                diag_error(s->d, st->span,
                           "a function body must end with an expression, its result");
        } else if (st->kind == AST_ASSIGN) {
            /* compound: the name must exist */
            if (assign_target_name(s, st))
                check_expr(s, st->a);
            check_expr(s, st->b);
            if (last)
                diag_error(s->d, st->span,
                           "a function body must end with an expression, its result");
        } else if (st->kind >= AST_USE) {
            misplaced(s, st, "in a function body",
                      "allowed: let, assignments, and a final expression");
        } else {
            check_expr(s, st);
            if (!last)
                diag_error(s->d, st->span, "this expression's value is not used");
        }
    }
}

/* A vjp block sees the function's parameters, its result (y) and the result's
 * gradient (dy), under the names it gives them. */
static void check_vjp(Sema *s, const Ast *fn, const Ast *vjp)
{
    int mark = s->names.n;
    for (int i = 0; i < fn->list.n; i++)
        push_name(s, fn->list.v[i]->name, NK_PARAM, fn->list.v[i]->span);
    if (vjp->list.n != 0 && vjp->list.n != 2)
        diag_error(s->d, vjp->span,
                   "a vjp block names two values, the result and its gradient: "
                   "vjp(y, dy) { ... }");
    for (int i = 0; i < vjp->list.n; i++) {
        const Ast *p = vjp->list.v[i];
        if (p->a || p->b)
            diag_error(s->d, p->span, "the names of a vjp block take no type or default");
        for (int j = 0; j < fn->list.n; j++)
            if (strcmp(fn->list.v[j]->name, p->name) == 0)
                diag_error(s->d, p->span, "'%s' is a parameter of '%s'; pick another name", p->name,
                           fn->name);
    }
    push_name(s, vjp->list.n == 2 ? vjp->list.v[0]->name : "y", NK_PARAM, vjp->span);
    push_name(s, vjp->list.n == 2 ? vjp->list.v[1]->name : "dy", NK_PARAM, vjp->span);
    check_body(s, &vjp->list2, vjp->span, "a vjp block");
    s->names.n = mark;
}

static void check_fn(Sema *s, const Ast *fn)
{
    int mark = s->names.n;
    check_params(s, &fn->list, true);
    check_type(s, fn->a, true);
    if (fn->b) {
        check_expr(s, fn->b);
    } else {
        char what[256];
        snprintf(what, sizeof what, "function '%s'", fn->name);
        check_body(s, &fn->list2, fn->span, what);
    }
    s->names.n = mark;
    if (fn->c)
        check_vjp(s, fn, fn->c);
}

/* A vjp block belongs to the function just before it (the parser links them). */
static void check_vjp_placement(Sema *s, const AstList *items, int i)
{
    const Ast *prev = i > 0 ? items->v[i - 1] : NULL;
    if (!prev || prev->kind != AST_FN || prev->c != items->v[i])
        diag_error(s->d, items->v[i]->span,
                   "a vjp block must follow the fn whose gradient it gives");
}

static void check_layer(Sema *s, const Ast *layer)
{
    int mark = s->names.n;
    check_params(s, &layer->list, false);
    /* Member initializers see the members before them. */
    for (int i = 0; i < layer->list2.n; i++) {
        const Ast *st = layer->list2.v[i];
        const char *nm = NULL;
        switch (st->kind) {
        case AST_PARAM_DECL:
            check_type(s, st->a, false);
            if (!st->a->has_shape)
                diag_error(s->d, st->a->span, "a parameter needs a shape, like [fan_in, fan_out]");
            if (!st->b)
                diag_error(s->d, st->span,
                           "parameter '%s' needs an initializer, like `= glorot_uniform` or `= 0`",
                           st->name);
            if (st->b) {
                s->in_init = true;
                check_expr(s, st->b);
                s->in_init = false;
            }
            nm = st->name;
            break;
        case AST_LET:
            check_expr(s, st->a);
            nm = st->name;
            break;
        case AST_ASSIGN:
            if (st->op != AOP_ASSIGN || st->c) {
                diag_error(s->d, st->span,
                           st->c ? "'from' is only allowed in the train block"
                                 : "compound assignment is not allowed in a layer body");
                break;
            }
            if (!assign_target_name(s, st))
                break;
            check_expr(s, st->b);
            nm = st->a->name;
            break;
        case AST_FN: nm = st->name; break;
        case AST_STATE_DECL:
            check_type(s, st->a, false);
            if (!st->a || !st->a->has_shape)
                diag_error(s->d, st->a ? st->a->span : st->span,
                           "layer state needs a shape, like `state mean: [features] = 0`");
            check_expr(s, st->b);
            nm = st->name;
            break;
        case AST_VJP: check_vjp_placement(s, &layer->list2, i); break;
        default:
            misplaced(s, st, "in a layer body",
                      "allowed: param, state, let, sub-layers (name = Layer(...)) and fn");
            break;
        }
        if (!nm)
            continue;
        /* methods are pushed after this loop: compare them here */
        const Span *first = NULL;
        for (int j = mark; j < s->names.n && !first; j++)
            if (strcmp(s->names.v[j].name, nm) == 0 && s->names.v[j].kind == NK_MEMBER)
                first = &s->names.v[j].span;
        for (int j = 0; j < i && !first; j++)
            if (layer->list2.v[j]->kind == AST_FN && strcmp(layer->list2.v[j]->name, nm) == 0)
                first = &layer->list2.v[j]->span;
        if (first) {
            diag_error(s->d, st->span, "'%s' is declared twice in %s", nm, layer->name);
            diag_note(s->d, *first, "first declared here");
        }
        if (st->kind != AST_FN)
            push_name(s, nm, NK_MEMBER, st->span);
    }
    /* Methods see every member, and each other. */
    for (int i = 0; i < layer->list2.n; i++)
        if (layer->list2.v[i]->kind == AST_FN)
            push_name(s, layer->list2.v[i]->name, NK_MEMBER, layer->list2.v[i]->span);
    for (int i = 0; i < layer->list2.n; i++)
        if (layer->list2.v[i]->kind == AST_FN)
            check_fn(s, layer->list2.v[i]);
    s->names.n = mark;
}

/* The names an update rule sees besides its hyper-parameters: the read-only
 * gradient and counters, then the parameter (docs/language.md, section 6). */
static const char *const update_builtins[] = {"g", "t", "step", "epoch", "steps", "w"};

static void check_optimizer(Sema *s, const Ast *opt)
{
    int mark = s->names.n;
    check_params(s, &opt->list, false);
    for (int i = mark; i < s->names.n; i++) {
        s->names.v[i].kind = NK_HYPER;
        for (size_t k = 0; k < NND_ARRAY_LEN(update_builtins); k++)
            if (strcmp(s->names.v[i].name, update_builtins[k]) == 0)
                diag_error(s->d, s->names.v[i].span,
                           "hyper-parameter '%s' hides the built-in of that name",
                           s->names.v[i].name);
    }
    size_t nreadonly = NND_ARRAY_LEN(update_builtins) - 1;
    for (size_t i = 0; i < nreadonly; i++)
        push_name(s, update_builtins[i], NK_READONLY, opt->span);
    int w = push_name(s, update_builtins[nreadonly], NK_W, opt->span);
    s->names.v[w].used = true;
    s->in_optimizer = true;
    s->optimizer = opt;
    s->early.n = 0;
    for (int i = 0; i < opt->list2.n; i++) {
        const Ast *st = opt->list2.v[i];
        switch (st->kind) {
        case AST_STATE_DECL: {
            /* shaped like w, or as its type says (dims may use w: [size(w, 0), 1]) */
            if (st->a) {
                check_type(s, st->a, false);
                if (!st->a->has_shape)
                    diag_error(s->d, st->a->span,
                               "a state's type is a shape, like [] (a "
                               "scalar) or [size(w, 0), 1]");
            }
            check_expr(s, st->b);
            Name *prev = find_local(s, st->name);
            if (prev && (prev->kind == NK_STATE || prev->kind == NK_LOCAL)) {
                diag_error(s->d, st->span, "'%s' is declared twice", st->name);
                diag_note(s->d, prev->span, "first declared here");
            } else if (prev) {
                diag_error(s->d, st->span, "state '%s' hides the %s of that name", st->name,
                           prev->kind == NK_HYPER ? "hyper-parameter" : "built-in");
            }
            push_name(s, st->name, NK_STATE, st->span);
            break;
        }
        case AST_LET:
        case AST_ASSIGN: {
            bool let = st->kind == AST_LET;
            if (!let && st->c) {
                diag_error(s->d, st->span, "'from' is only allowed in the train block");
                break;
            }
            const char *nm = let ? st->name : st->a->kind == AST_NAME ? st->a->name : NULL;
            check_expr(s, let ? st->a : st->b);
            if (!nm) {
                assign_target_name(s, st);
                break;
            }
            Name *n = find_local(s, nm);
            const Ast *later = !n && !let ? later_state(s, nm) : NULL;
            if (later) {
                diag_error(s->d, st->a->span, "state '%s' is assigned before its declaration", nm);
                diag_note(s->d, later->span,
                          "declared here: a state is declared before the "
                          "statements that use it");
                vec_push(&s->early, later->name);
                break;
            }
            if (n && !let) {
                if (n->kind == NK_READONLY || n->kind == NK_HYPER) {
                    int d = diag_error(s->d, st->a->span, "cannot assign to '%s'", nm);
                    diag_label(s->d, d, "%s",
                               strcmp(nm, "g") == 0  ? "the gradient is read-only"
                               : n->kind == NK_HYPER ? "hyper-parameters are read-only; use a local"
                                                     : "it is read-only");
                    break;
                }
                if (st->op != AOP_ASSIGN)
                    n->used = true;
                n->assigned = true;
                break;
            }
            if (!let && st->op != AOP_ASSIGN) {
                unknown_name(s, nm, st->a->span, "name");
                break;
            }
            if (n && let &&
                (n->kind == NK_READONLY || n->kind == NK_HYPER || n->kind == NK_W ||
                 n->kind == NK_STATE)) {
                diag_error(s->d, st->span, "'let %s' hides the %s '%s'", nm,
                           n->kind == NK_STATE ? "state" : "name", nm);
                break;
            }
            int k = push_name(s, nm, NK_LOCAL, st->a ? st->span : st->span);
            s->names.v[k].assigned = true;
            break;
        }
        default:
            if (st->kind >= AST_USE)
                misplaced(s, st, "in an optimizer", "allowed: state, let and assignments");
            else {
                check_expr(s, st);
                diag_error(s->d, st->span, "this expression's value is not used");
            }
            break;
        }
    }
    s->in_optimizer = false;
    for (int i = mark; i < s->names.n; i++) {
        Name *n = &s->names.v[i];
        if (n->kind == NK_LOCAL && !n->used) {
            int d = diag_warning(s->d, n->span, "'%s' is assigned but never used", n->name);
            const char *cands[64];
            int nc = 0;
            for (int j = mark; j < s->names.n && nc < 64; j++)
                if (s->names.v[j].kind == NK_STATE || s->names.v[j].kind == NK_W)
                    cands[nc++] = s->names.v[j].name;
            const char *best = suggest_name(n->name, cands, nc);
            if (best)
                diag_label(s->d, d, "did you mean to update '%s'?", best);
        }
        bool early = false;
        for (int k = 0; k < s->early.n; k++)
            early |= strcmp(s->early.v[k], n->name) == 0;
        if (n->kind == NK_STATE && !n->assigned && !early)
            diag_warning(s->d, n->span, "state '%s' is never updated", n->name);
    }
    if (!s->names.v[w].assigned)
        diag_warning(s->d, opt->span, "optimizer '%s' never updates w", opt->name);
    s->names.n = mark;
}

static bool is_setting(const char *name, const char *const *list)
{
    for (int i = 0; list[i]; i++)
        if (strcmp(list[i], name) == 0)
            return true;
    return false;
}

/* A call of a layer or model: the value assigned makes a model instance. */
static bool is_model_call(Sema *s, const Ast *e)
{
    if (e->kind != AST_CALL || e->a->kind != AST_NAME)
        return false;
    const Ast *d = module_lookup(s->mod, e->a->name, NULL, NULL);
    return d && d->kind == AST_LAYER;
}

/* The span of `word` where it follows keyword `kw` at the start of span st (as in
 * `eval NAME ...`); st itself if the text is not laid out that way. */
static Span word_after(Sema *s, Span st, const char *kw, const char *word)
{
    const SourceFile *f = source_map_get(&s->fe->sm, st.file);
    size_t kl = strlen(kw), wl = strlen(word);
    if (!f || st.start + kl > f->len || memcmp(f->text + st.start, kw, kl) != 0)
        return st;
    uint32_t p = st.start + (uint32_t)kl;
    for (;;) {
        if (p < f->len && (f->text[p] == ' ' || f->text[p] == '\t'))
            p++;
        else if (p + 1 < f->len && f->text[p] == '\\' && f->text[p + 1] == '\n')
            p += 2;
        else
            break;
    }
    if (p + wl > st.end || memcmp(f->text + p, word, wl) != 0)
        return st;
    return (Span){st.file, p, p + (uint32_t)wl};
}

static void check_every(Sema *s, const Ast *ev)
{
    static const char *const units[] = {"step", "steps", "epoch", "epochs"};
    if (!is_setting(ev->name, (const char *const[]){"step", "steps", "epoch", "epochs", NULL})) {
        /* the unit is the last word of `every [N] unit` */
        Span at = ev->span;
        const SourceFile *f = source_map_get(&s->fe->sm, at.file);
        size_t n = strlen(ev->name);
        if (f && at.end <= f->len && at.end - at.start >= n &&
            memcmp(f->text + at.end - n, ev->name, n) == 0)
            at.start = at.end - (uint32_t)n;
        int d = diag_error(s->d, at, "unknown unit '%s'", ev->name);
        const char *best = suggest_name(ev->name, units, 4);
        diag_label(s->d, d, best ? "did you mean '%s'?" : "write: every N steps, every epoch",
                   best ? best : "");
    }
    if (ev->a)
        check_expr(s, ev->a);
}

/* `name = value` in the train block: a setting (each at most once: seen[k] is
 * the statement that set train_settings[k]), a model, or the loss. */
static void check_train_assign(Sema *s, const Ast *st, const Ast **seen)
{
    /* precision = bf16: a word, not a name to look up */
    if (!(st->a->kind == AST_NAME && strcmp(st->a->name, "precision") == 0 &&
          st->b->kind == AST_NAME))
        check_expr(s, st->b);
    if (st->a->kind != AST_NAME) {
        diag_error(s->d, st->a->span, "can only assign to a name here");
        return;
    }
    const char *nm = st->a->name;
    if (st->op != AOP_ASSIGN) {
        diag_error(s->d, st->span, "compound assignment is not allowed in the train block");
        return;
    }
    if (st->c) {
        /* `net = Model() from "file" except fc2`: the except names are paths
         * inside the model, checked when it is built */
        check_expr(s, st->c);
        if (!is_model_call(s, st->b))
            diag_error(s->d, st->c->span,
                       "`from` loads a model's parameters: it "
                       "follows a model, like net = Mlp() from \"base.safetensors\"");
    }
    for (int k = 0; train_settings[k]; k++)
        if (strcmp(train_settings[k], nm) == 0) {
            if (seen[k]) {
                diag_error(s->d, st->span, "'%s' is set twice", nm);
                diag_note(s->d, seen[k]->span, "first set here");
            }
            seen[k] = st;
        }
    if (is_setting(nm, train_settings) || is_model_call(s, st->b))
        return;
    if (is_setting(nm, train_settings_unsupported)) {
        diag_error(s->d, st->a->span, "'%s' is not supported yet", nm);
        return;
    }
    int d = diag_error(s->d, st->a->span, "unknown setting '%s'", nm);
    int nsettings = 0;
    while (train_settings[nsettings])
        nsettings++;
    const char *best = suggest_name(nm, train_settings, nsettings);
    if (best)
        diag_label(s->d, d, "did you mean '%s'?", best);
    else
        diag_label(s->d, d, "name a value with `let %s = ...`", nm);
}

/* `eval DATA every N: metrics`: DATA must be declared. */
static void check_eval(Sema *s, const Ast *st, const Ast *const *data, int ndata)
{
    bool found = false;
    const char *cands[64];
    for (int j = 0; j < ndata; j++) {
        found |= strcmp(data[j]->name, st->name) == 0;
        if (j < 64)
            cands[j] = data[j]->name;
    }
    if (!found) {
        int d = diag_error(s->d, word_after(s, st->span, "eval", st->name), "unknown data set '%s'",
                           st->name);
        const char *best = suggest_name(st->name, cands, NND_MIN(ndata, 64));
        if (best) {
            diag_label(s->d, d, "did you mean '%s'?", best);
        } else if (ndata > 0) {
            StrBuf b = {0};
            for (int j = 0; j < ndata && j < 8; j++)
                sb_printf(&b, "%s'%s'", j ? ", " : "", data[j]->name);
            diag_label(s->d, d, "declared data sets: %s", b.s);
            sb_free(&b);
        }
    }
    check_every(s, st->a);
    if (st->list.n == 0)
        diag_error(s->d, st->span, "eval needs a metric: eval %s every epoch: metric, ...",
                   st->name);
    for (int k = 0; k < st->list.n; k++) {
        const Ast *m = st->list.v[k];
        check_expr(s, m->kind == AST_KWARG ? m->a : m);
    }
}

/* `log every N to DIR: items`: the statistics by their names, or expressions. */
/* `sample every N steps: prompt = "...", tokens = N, temperature = T, top_k = K` */
static void check_sample(Sema *s, const Ast *st)
{
    static const char *const opts[] = {"prompt", "tokens", "temperature", "top_k"};
    check_every(s, st->a);
    if (st->b)
        diag_error(s->d, st->b->span, "sample writes to the progress output: it takes no `to`");
    for (int k = 0; k < st->list.n; k++) {
        const Ast *m = st->list.v[k];
        if (m->kind != AST_KWARG ||
            !is_setting(m->name,
                        (const char *const[]){"prompt", "tokens", "temperature", "top_k", NULL})) {
            int d = diag_error(s->d, m->span,
                               "sample takes prompt = \"...\", tokens = N, "
                               "temperature = T and top_k = K");
            const char *best = m->kind == AST_KWARG ? suggest_name(m->name, opts, 4) : NULL;
            if (best)
                diag_label(s->d, d, "did you mean '%s'?", best);
            continue;
        }
        check_expr(s, m->a);
    }
}

static void check_log(Sema *s, const Ast *st)
{
    if (strcmp(st->name, "sample") == 0) {
        check_sample(s, st);
        return;
    }
    if (strcmp(st->name, "log") != 0) {
        diag_error(s->d, st->span, "unknown statement '%s'", st->name);
        return;
    }
    if (!st->b) {
        diag_error(s->d, st->span, "log needs a directory: log every N steps to \"DIR\": items");
        return;
    }
    check_every(s, st->a);
    check_expr(s, st->b);
    if (st->list.n == 0)
        diag_error(s->d, st->span, "log needs an item: log every N steps to \"DIR\": loss, ...");
    for (int k = 0; k < st->list.n; k++) {
        const Ast *m = st->list.v[k];
        /* the statistics by their names; anything else is a scalar expression */
        if (m->kind == AST_NAME && is_setting(m->name, log_families))
            continue;
        if (m->kind == AST_NAME && !find_local(s, m->name)) {
            int d = diag_error(s->d, m->span, "unknown log item '%s'", m->name);
            const char *best = suggest_name(m->name, log_families, LOG_FAMILY_COUNT);
            diag_label(s->d, d, best ? "did you mean '%s'?" : "log takes %s, or name = expression",
                       best ? best
                            : "loss, lr, grad_norm, weight_norm, update_ratio, max_grad, "
                              "nonfinite, histograms");
            continue;
        }
        check_expr(s, m->kind == AST_KWARG ? m->a : m);
    }
}

/* The name a train block statement defines: a let, a model or the loss. */
static const char *train_defined_name(Sema *s, const Ast *st)
{
    if (st->kind == AST_LET)
        return st->name;
    if (st->kind == AST_ASSIGN && st->a->kind == AST_NAME && st->op == AOP_ASSIGN &&
        (strcmp(st->a->name, "loss") == 0 || is_model_call(s, st->b)))
        return st->a->name;
    return NULL;
}

/* Statement i of the train block defines nm: once, and not over the batch or the
 * run's counters.  A setting set twice (`loss`) is reported as such. */
static void check_train_name(Sema *s, const Ast *train, int i, const char *nm)
{
    const Ast *st = train->list2.v[i];
    for (int j = 0; j < i; j++) {
        const Ast *prev = train->list2.v[j];
        const char *pn = train_defined_name(s, prev);
        if (!pn || strcmp(pn, nm) != 0)
            continue;
        if (st->kind == AST_ASSIGN && prev->kind == AST_ASSIGN && is_setting(nm, train_settings))
            return;
        diag_error(s->d, st->span, "'%s' is defined twice", nm);
        diag_note(s->d, prev->span, "first defined here");
        return;
    }
    static const char *const batch[] = {"x", "y", NULL}, *const counts[] = {"step", "epoch",
                                                                            "steps", NULL};
    bool in_batch = is_setting(nm, batch);
    if (in_batch || is_setting(nm, counts)) {
        int d = diag_error(s->d, st->span,
                           st->kind == AST_LET ? "'let %s' hides the name '%s'"
                                               : "'%s = ...' hides the name '%s'",
                           nm, nm);
        diag_label(s->d, d, "%s",
                   in_batch ? "x and y are the current batch"
                            : "step, epoch and steps count the run");
    }
}

/* The train block: the names it defines are visible in all of it; each statement
 * is allowed there and well formed; the loss, an optimizer and data are set. */
static void check_train(Sema *s, const Ast *train)
{
    int mark = s->names.n;
    static const char *const inputs[] = {"x", "y", "step", "epoch", "steps"};
    for (size_t i = 0; i < NND_ARRAY_LEN(inputs); i++)
        push_name(s, inputs[i], NK_READONLY, train->span);
    /* Names the train block defines are visible in all of it. */
    VEC(const Ast *) data = {0};
    const Ast *seen[TRAIN_SETTING_COUNT] = {0};
    for (int i = 0; i < train->list2.n; i++) {
        const Ast *st = train->list2.v[i];
        if (st->kind == AST_LET) {
            check_train_name(s, train, i, st->name);
            push_name(s, st->name, NK_LOCAL, st->span);
        } else if (st->kind == AST_ASSIGN && st->a->kind == AST_NAME && st->op == AOP_ASSIGN) {
            const char *nm = st->a->name;
            if (strcmp(nm, "loss") == 0 || is_model_call(s, st->b)) {
                check_train_name(s, train, i, nm);
                /* push_name may move the vector: index it after the call. */
                int k = push_name(s, nm, NK_LOCAL, st->span);
                s->names.v[k].used = true;
            }
        } else if (st->kind == AST_DATA) {
            for (int j = 0; j < data.n; j++)
                if (strcmp(data.v[j]->name, st->name) == 0) {
                    diag_error(s->d, st->span, "data set '%s' is declared twice", st->name);
                    diag_note(s->d, data.v[j]->span, "first declared here");
                }
            vec_push(&data, st);
        }
    }
    for (int i = 0; i < train->list2.n; i++) {
        const Ast *st = train->list2.v[i];
        switch (st->kind) {
        case AST_LET: check_expr(s, st->a); break;
        case AST_DATA: check_expr(s, st->a); break;
        case AST_ASSIGN: check_train_assign(s, st, seen); break;
        case AST_OPT_GROUP:
            if (strcmp(st->name, "opt") != 0) {
                diag_error(s->d, st->span, "unknown statement '%s'", st->name);
                break;
            }
            check_expr(s, st->a);
            check_expr(s, st->b);
            break;
        case AST_FREEZE:
            for (int k = 0; k < st->list.n; k++)
                check_expr(s, st->list.v[k]);
            for (int k = 0; k < st->list2.n; k++)
                check_expr(s, st->list2.v[k]);
            break;
        case AST_EVAL: check_eval(s, st, data.v, data.n); break;
        case AST_LOG: check_log(s, st); break;
        case AST_CHECKPOINT:
            check_every(s, st->a);
            check_expr(s, st->b);
            check_expr(s, st->c);
            break;
        case AST_SAVE: check_expr(s, st->b); break;
        default:
            if (st->kind >= AST_USE)
                misplaced(s, st, "in the train block", NULL);
            else
                diag_error(s->d, st->span, "this expression's value is not used");
            break;
        }
    }
    if (!seen[0])
        diag_error(s->d, train->span, "the train block sets no loss");
    if (!seen[1])
        diag_error(s->d, train->span, "the train block sets no optimizer (opt = ...)");
    if (data.n == 0)
        diag_error(s->d, train->span, "the train block declares no data");
    if (seen[3] && seen[4]) {
        diag_error(s->d, seen[4]->span, "set either epochs or steps, not both");
        diag_note(s->d, seen[3]->span, "epochs set here");
    }
    vec_free(&data);
    s->names.n = mark;
}

static void check_module(Sema *s, Module *m, bool is_main)
{
    s->mod = m;
    /* duplicate top-level names */
    for (int i = 0; i < m->decls.n; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(m->decls.v[i]->name, m->decls.v[j]->name) == 0) {
                diag_error(s->d, m->decls.v[i]->span, "'%s' is defined twice", m->decls.v[i]->name);
                diag_note(s->d, m->decls.v[j]->span, "first defined here");
                break;
            }
    const Ast *train = NULL;
    for (int i = 0; i < m->ast->items.n; i++) {
        const Ast *it = m->ast->items.v[i];
        switch (it->kind) {
        case AST_USE: break;
        case AST_LET: check_expr(s, it->a); break;
        case AST_FN: check_fn(s, it); break;
        case AST_LAYER: check_layer(s, it); break;
        case AST_OPTIMIZER: check_optimizer(s, it); break;
        case AST_VJP: check_vjp_placement(s, &m->ast->items, i); break;
        case AST_TRAIN:
            if (train) {
                diag_error(s->d, it->span, "a file can have only one train block");
                diag_note(s->d, train->span, "the first is here");
            } else if (!is_main) {
                diag_error(
                    s->d, it->span,
                    "a train block in a used module would never run; move it to the main file");
            }
            train = it;
            check_train(s, it);
            break;
        default:
            misplaced(s, it, "at the top level",
                      it->kind == AST_PARAM_DECL   ? "parameters belong in a layer"
                      : it->kind == AST_STATE_DECL ? "state belongs in a layer or an optimizer"
                      : it->kind < AST_USE || it->kind == AST_ASSIGN
                          ? "use let, fn, layer, model, optimizer or train"
                          : "this belongs in the train block");
            break;
        }
    }
}

void sema_check(Frontend *fe, Module *main)
{
    Sema s = {.fe = fe, .d = &fe->diags};
    for (int i = 0; i < fe->modules.n; i++)
        check_module(&s, fe->modules.v[i], fe->modules.v[i] == main);
    vec_free(&s.names);
    vec_free(&s.early);
}
