/* elab_expr: names, scopes, calls and expressions: the evaluator. */
#include <stdlib.h>
#include <string.h>

#include "elab_internal.h"
#include "sema.h"

void el_bind(Scope *s, const char *name, Value v, Span span)
{
    Binding b = {name, v, span};
    vec_push(&s->b, b);
}

Binding *el_scope_find(Scope *s, const char *name)
{
    for (int i = s->b.n - 1; i >= 0; i--)
        if (strcmp(s->b.v[i].name, name) == 0)
            return &s->b.v[i];
    return NULL;
}

Binding *el_member_find(LayerInst *l, const char *name)
{
    for (int i = l->members.n - 1; i >= 0; i--)
        if (strcmp(l->members.v[i].name, name) == 0)
            return &l->members.v[i];
    return NULL;
}

static const Ast *method_find(const LayerInst *l, const char *name)
{
    for (int i = 0; i < l->decl->list2.n; i++) {
        const Ast *m = l->decl->list2.v[i];
        if (m->kind == AST_FN && strcmp(m->name, name) == 0)
            return m;
    }
    return NULL;
}

static Value decl_value(Elab *e, const Ast *d, Module *where, Span span)
{
    switch (d->kind) {
    case AST_FN: return (Value){.k = V_FN, .decl = d, .mod = where};
    case AST_LAYER:
    case AST_OPTIMIZER: return (Value){.k = V_DECL, .decl = d, .mod = where};
    case AST_LET: {
        for (int i = 0; i < e->nlets; i++)
            if (e->lets[i] == d)
                return el_error(e, span, "'%s' is defined in terms of itself", d->name);
        if (e->nlets == MAX_CALL_DEPTH)
            return el_error(e, span, "definitions nested too deeply");
        e->lets[e->nlets++] = d;
        Scope s = {.mod = where};
        Value v = el_eval(e, &s, d->a);
        vec_free(&s.b);
        e->nlets--;
        return v;
    }
    default: return el_error(e, span, "'%s' is not a value", d->name);
    }
}

/* The value of a lazy `let` in the current mode, elaborated on its first use in
 * that mode (in train mode, that is while the loss is: its layer state moves
 * then). */
static Value force(Elab *e, Lazy *l, Span span)
{
    int mode = e->training;
    if (l->have[mode])
        return l->val[mode];
    if (l->busy)
        return el_error(e, span, "'%s' is defined in terms of itself", l->st->name);
    l->busy = true;
    Value v = el_eval(e, l->scope, l->st->a);
    l->busy = false;
    l->val[mode] = v;
    l->have[mode] = true;
    return v;
}

Value el_lookup(Elab *e, Scope *s, const char *name, Span span)
{
    Binding *b = el_scope_find(s, name);
    if (b)
        return b->v.k == V_LAZY ? force(e, b->v.lazy, span) : b->v;
    if (s->self) {
        Binding *m = el_member_find(s->self, name);
        if (m)
            return m->v;
        const Ast *fn = method_find(s->self, name);
        if (fn)
            return (Value){.k = V_FN, .decl = fn, .mod = s->self->mod, .layer = s->self};
    }
    Module *where = NULL;
    const Ast *d = module_lookup(s->mod, name, &where, NULL);
    if (d)
        return decl_value(e, d, where, span);
    int bi = builtin_find(name);
    if (bi >= 0)
        return (Value){.k = V_BUILTIN, .builtin = bi};
    if (strcmp(name, "training") == 0)
        return vbool(e->training);
    double c;
    if (builtin_constant(name, &c))
        return vfloat(c);
    return el_error(e, span, "unknown name '%s'", name);
}

const char *el_join_path(Elab *e, const char *a, const char *b)
{
    if (!a || !*a)
        return arena_strdup(&e->p->arena, b);
    return arena_printf(&e->p->arena, "%s.%s", a, b);
}

bool el_eval_args(Elab *e, Scope *s, const AstList *list, Args *out, const char *list_path)
{
    out->n = 0;
    if (list->n > MAX_ARGS) {
        el_error(e, list->v[MAX_ARGS]->span, "more than %d arguments", MAX_ARGS);
        return false;
    }
    const char *saved = e->bind_path;
    e->bind_path = NULL;
    bool ok = true;
    for (int i = 0; i < list->n; i++) {
        const Ast *a = list->v[i];
        bool kw = a->kind == AST_KWARG;
        const Ast *ax = kw ? a->a : a;
        e->bind_path = ax->kind == AST_LIST ? list_path : NULL;
        out->v[i] = el_eval(e, s, ax);
        e->bind_path = NULL;
        out->kw[i] = kw ? a->name : NULL;
        out->span[i] = a->span;
        if (out->v[i].k == V_ERR)
            ok = false;
        out->n++;
    }
    e->bind_path = saved;
    return ok;
}

int el_arg_find(const Args *a, const char *name, int pos)
{
    int npos = 0;
    for (int i = 0; i < a->n; i++) {
        if (a->kw[i]) {
            if (strcmp(a->kw[i], name) == 0)
                return i;
        } else if (npos++ == pos) {
            return i;
        }
    }
    return -1;
}

bool el_bind_params(Elab *e, Scope *s, const AstList *params, const Args *args, const char *what,
                    Span span)
{
    bool ok = true;
    for (int i = 0; i < params->n; i++) {
        const Ast *p = params->v[i];
        int k = el_arg_find(args, p->name, i);
        Value v;
        Span vspan = span;
        if (k >= 0) {
            v = args->v[k];
            vspan = args->span[k];
        } else if (e->in_init && strcmp(p->name, "fan_in") == 0) {
            v = vnum(e->fan_in);
        } else if (e->in_init && strcmp(p->name, "fan_out") == 0) {
            v = vnum(e->fan_out);
        } else if (p->b) {
            v = el_eval(e, s, p->b);
        } else {
            el_error(e, span, "missing argument '%s' in call to %s", p->name, what);
            ok = false;
            v = verr();
        }
        if (p->a && v.k != V_ERR && !el_check_type(e, s, p->a, &v, vspan, p->name, p, true))
            v = verr();
        if (v.k == V_ERR)
            ok = false;
        el_bind(s, p->name, v, p->span);
    }
    /* arguments that match no parameter were reported by sema for direct calls;
     * calls through values are checked here */
    int npos = 0;
    for (int i = 0; i < args->n; i++) {
        if (args->kw[i]) {
            bool found = false;
            for (int j = 0; j < params->n; j++)
                found |= strcmp(params->v[j]->name, args->kw[i]) == 0;
            if (!found) {
                el_error(e, args->span[i], "%s has no parameter '%s'", what, args->kw[i]);
                ok = false;
            }
        } else if (++npos > params->n) {
            el_error(e, args->span[i], "too many arguments: %s takes %d", what, params->n);
            ok = false;
        }
    }
    return ok;
}

Value el_run_body(Elab *e, Scope *s, const Ast *fn)
{
    if (fn->b)
        return el_eval(e, s, fn->b);
    Value last = verr();
    for (int i = 0; i < fn->list2.n; i++) {
        const Ast *st = fn->list2.v[i];
        if (st->kind == AST_LET) {
            el_bind(s, st->name, el_eval(e, s, st->a), st->span);
        } else if (st->kind == AST_ASSIGN) {
            Value v = el_eval(e, s, st->b);
            if (st->op != AOP_ASSIGN)
                v = el_binop(e, el_binop_id(st->op), el_lookup(e, s, st->a->name, st->a->span), v,
                             st->span);
            el_bind(s, st->a->name, v, st->span);
        } else {
            last = el_eval(e, s, st);
        }
    }
    return last;
}

bool el_too_big(Elab *e, Span span)
{
    if (!e->too_big && graph_count(e->g) > MAX_GRAPH_NODES) {
        e->too_big = true;
        el_error(e, span,
                 "the program is too large: elaboration has made %d graph nodes (at most "
                 "%d); every call of a function is inlined, so functions that call others "
                 "several times multiply",
                 graph_count(e->g), MAX_GRAPH_NODES);
        StrBuf b = {0};
        for (int i = 0; i < e->depth; i++) {
            if (e->depth > 12 && i == 6) { /* the outermost six, the innermost six */
                sb_printf(&b, " -> ... (%d more)", e->depth - 12);
                i = e->depth - 6;
            }
            sb_printf(&b, "%s%s", i ? " -> " : "", e->frames[i].name);
        }
        if (b.s)
            diag_note(e->d, span_none(), "the calls that led here: %s", b.s);
        sb_free(&b);
    }
    return e->too_big;
}

/* A call is recursive when it re-enters a method of the same layer instance, or a
 * plain function with no new layer instance entered since (nested Sequentials call
 * Sequential.forward of another instance; a helper that applies a layer may run
 * again inside it).  A chain that escapes this stops at MAX_CALL_DEPTH. */
static bool is_recursive(const Elab *e, const Ast *fn, const LayerInst *self)
{
    for (int i = 0; i < e->depth; i++) {
        if (e->frames[i].decl != fn || e->frames[i].self != self)
            continue;
        if (self)
            return true;
        bool entered = false; /* a layer instance not active before frame i */
        for (int j = i + 1; j < e->depth && !entered; j++) {
            const LayerInst *l = e->frames[j].self;
            if (!l)
                continue;
            entered = true;
            for (int k = 0; k <= i && entered; k++)
                entered = e->frames[k].self != l;
        }
        if (!entered)
            return true;
    }
    return false;
}

static Value call_fn(Elab *e, const Ast *fn, Module *mod, LayerInst *self, Args *args, Span span)
{
    if (el_too_big(e, span))
        return verr();
    const char *name = self ? arena_printf(&e->arena, "'%s.%s'", self->decl->name, fn->name)
                            : arena_printf(&e->arena, "'%s'", fn->name);
    if (is_recursive(e, fn, self))
        return el_error(e, span, "recursive call of %s: recursion is not supported", name);
    if (e->depth == MAX_CALL_DEPTH)
        return el_error(e, span, "calls nested more than %d deep", MAX_CALL_DEPTH);
    Scope s = {.mod = mod, .self = self};
    e->frames[e->depth++] = (Frame){fn, span, name, self};
    Value r = verr();
    if (el_bind_params(e, &s, &fn->list, args, name, span)) {
        int nparams = s.b.n;
        r = el_run_body(e, &s, fn);
        if (fn->a && r.k != V_ERR &&
            !el_check_type(e, &s, fn->a, &r, fn->b ? fn->b->span : fn->span, "result", NULL, false))
            r = verr();
        if (self && e->training && e->record_state && r.k != V_ERR)
            el_record_state_updates(e, self, &s, nparams);
        if (fn->c && r.k != V_ERR)
            r = el_custom_result(e, fn, mod, self, &s, nparams, r, span);
    }
    e->depth--;
    vec_free(&s.b);
    return r;
}

Value el_call_value(Elab *e, Value callee, Args *args, Span span, const char *name)
{
    switch (callee.k) {
    case V_ERR: return verr();
    case V_FN: return call_fn(e, callee.decl, callee.mod, callee.layer, args, span);
    case V_BUILTIN:
        if (callee.args && args->n == 0) /* orthogonal(gain = 2), used as an initializer */
            return el_builtin_call(e, callee.builtin, callee.args, span);
        return el_builtin_call(e, callee.builtin, args, span);
    case V_DECL:
        if (callee.decl->kind == AST_LAYER)
            return el_instantiate(e, callee.decl, callee.mod, args, span);
        {
            Args *copy = arena_alloc(&e->arena, sizeof *copy);
            *copy = *args;
            return (Value){.k = V_OPT, .decl = callee.decl, .mod = callee.mod, .args = copy};
        }
    case V_LAYER: {
        const Ast *fwd = method_find(callee.layer, "forward");
        if (!fwd)
            return el_error(e, span, "layer '%s' has no forward function to call",
                            callee.layer->decl->name);
        return call_fn(e, fwd, callee.layer->mod, callee.layer, args, span);
    }
    default:
        return el_error(e, span, "%s%s%s is %s, which cannot be called", name ? "'" : "",
                        name ? name : "this", name ? "'" : "", el_kind_name(&callee));
    }
}

static Value ev_member(Elab *e, Scope *s, const Ast *x)
{
    Value o = el_eval(e, s, x->a);
    if (o.k == V_ERR)
        return o;
    if (o.k != V_LAYER)
        return el_error(e, x->span, "'.%s' needs a layer on its left, not %s", x->name,
                        el_kind_name(&o));
    LayerInst *l = o.layer;
    Binding *m = el_member_find(l, x->name);
    if (m)
        return m->v;
    const Ast *fn = method_find(l, x->name);
    if (fn)
        return (Value){.k = V_FN, .decl = fn, .mod = l->mod, .layer = l};
    StrVec c = {0};
    for (int i = 0; i < l->members.n; i++)
        vec_push(&c, l->members.v[i].name);
    for (int i = 0; i < l->decl->list2.n; i++)
        if (l->decl->list2.v[i]->kind == AST_FN)
            vec_push(&c, l->decl->list2.v[i]->name);
    const char *best = suggest_name(x->name, c.v, c.n);
    vec_free(&c);
    int d = diag_error(e->d, x->span, "%s '%s' has no member '%s'", l->decl->op ? "model" : "layer",
                       l->decl->name, x->name);
    if (best)
        diag_label(e->d, d, "did you mean '%s'?", best);
    return verr();
}

static Value ev_index(Elab *e, Scope *s, const Ast *x)
{
    Value o = el_eval(e, s, x->a);
    if (o.k == V_ERR)
        return o;
    if (o.k == V_LIST && x->list.n == 1 && x->list.v[0]->kind != AST_SLICE) {
        /* an element of a list: a layer of a sequence, a number of a pair */
        int64_t k;
        const Ast *it = x->list.v[0];
        if (!el_to_int(e, el_eval(e, s, it), it->span, "an index", &k))
            return verr();
        int64_t len = o.list->n;
        if (k < -len || k >= len)
            return el_error(e, it->span, "index %lld is out of range for a list of %lld",
                            (long long)k, (long long)len);
        return o.list->v[k < 0 ? k + len : k];
    }
    NodeId n = el_to_node(e, o, x->a->span);
    if (!n)
        return verr();
    Shape in = nd(e, n)->shape;
    if (x->list.n > in.rank)
        return el_error(e, x->span, "too many indices: %d for a tensor of rank %d", x->list.n,
                        in.rank);
    int64_t start[NND_MAX_RANK], step[NND_MAX_RANK];
    Shape out = in, kept = {0, {0}};
    for (int i = 0; i < in.rank; i++) {
        start[i] = 0;
        step[i] = 1;
        if (i >= x->list.n) {
            kept.d[kept.rank++] = in.d[i];
            continue;
        }
        const Ast *it = x->list.v[i];
        int64_t d = in.d[i];
        if (it->kind != AST_SLICE) {
            int64_t k;
            if (!el_to_int(e, el_eval(e, s, it), it->span, "an index", &k))
                return verr();
            if (d < 0)
                return el_error(e, it->span, "cannot index the batch dimension with a number");
            if (k < 0)
                k += d;
            if (k < 0 || k >= d)
                return el_error(e, it->span,
                                "index %lld is out of range for a dimension of size %lld",
                                (long long)(k < 0 ? k - d : k), (long long)d);
            start[i] = k;
            out.d[i] = 1;
            continue;
        }
        int64_t b = 0, en = d, st = 1;
        if (it->c && !el_to_int(e, el_eval(e, s, it->c), it->c->span, "a slice step", &st))
            return verr();
        if (st < 1)
            return el_error(e, it->c->span, "slice steps must be positive");
        if (d < 0) {
            if (it->a || it->b || st != 1)
                return el_error(e, it->span, "the batch dimension can only be sliced whole (':')");
            kept.d[kept.rank++] = d;
            continue;
        }
        if (it->a && !el_to_int(e, el_eval(e, s, it->a), it->a->span, "a slice start", &b))
            return verr();
        if (it->b && !el_to_int(e, el_eval(e, s, it->b), it->b->span, "a slice end", &en))
            return verr();
        if (b < 0)
            b += d;
        if (en < 0)
            en += d;
        b = NND_MAX(0, NND_MIN(b, d));
        en = NND_MAX(0, NND_MIN(en, d));
        int64_t cnt = en > b ? (en - b + st - 1) / st : 0;
        if (cnt == 0)
            return el_error(e, it->span, "this slice is empty");
        start[i] = b;
        step[i] = st;
        out.d[i] = cnt;
        kept.d[kept.rank++] = cnt;
    }
    uint32_t pool = (uint32_t)e->g->ipool.n;
    for (int i = 0; i < in.rank; i++)
        vec_push(&e->g->ipool, start[i]);
    for (int i = 0; i < in.rank; i++)
        vec_push(&e->g->ipool, step[i]);
    NodeId r = el_make(e, (Node){.op = OP_SLICE, .nin = 1, .in = {n}, .shape = out, .pool = pool},
                       x->span);
    if (!r)
        return verr();
    return vnode(gb_reshape(e->g, r, &kept, x->span));
}

Value el_eval(Elab *e, Scope *s, const Ast *x)
{
    switch (x->kind) {
    case AST_NUM: {
        Value v = vfloat(x->num);
        v.is_int = x->is_int;
        return v;
    }
    case AST_STR: return vstr(x->name);
    case AST_BOOL: return vbool(x->num != 0);
    case AST_NAME: return el_lookup(e, s, x->name, x->span);
    case AST_UNARY:
        return el_unop(e, x->op == AOP_NEG ? OP_NEG : OP_NOT, el_eval(e, s, x->a), x->span);
    case AST_BINARY: {
        Value a = el_eval(e, s, x->a), b = el_eval(e, s, x->b);
        if (x->op == AOP_MATMUL)
            return el_matmul(e, a, b, x->span);
        return el_binop(e, el_binop_id(x->op), a, b, x->span);
    }
    case AST_IF: {
        Value c = el_eval(e, s, x->a);
        if (c.k == V_ERR)
            return c;
        if (c.k == V_NUM) /* known now: only the branch taken is elaborated */
            return el_eval(e, s, c.num != 0 ? x->b : x->c);
        return el_select3(e, c, el_eval(e, s, x->b), el_eval(e, s, x->c), x->span);
    }
    case AST_CALL: {
        const char *saved = e->bind_path;
        e->bind_path = NULL;
        Value callee = x->a->kind == AST_MEMBER ? ev_member(e, s, x->a) : el_eval(e, s, x->a);
        Args args;
        const char *list_path = callee.k == V_DECL && callee.decl->kind == AST_LAYER ? saved : NULL;
        bool ok = el_eval_args(e, s, &x->list, &args, list_path);
        e->bind_path = saved;
        if (!ok || callee.k == V_ERR)
            return verr();
        Value r =
            el_call_value(e, callee, &args, x->span, x->a->kind == AST_NAME ? x->a->name : NULL);
        return r;
    }
    case AST_MEMBER: return ev_member(e, s, x);
    case AST_INDEX: return ev_index(e, s, x);
    case AST_LIST: {
        /* layers created in a list being bound are named by position: body.0 */
        const char *path = e->bind_path;
        VList *l = arena_alloc(&e->arena, sizeof *l);
        l->n = x->list.n;
        l->v = arena_alloc(&e->arena, sizeof(Value) * (size_t)(l->n ? l->n : 1));
        for (int i = 0; i < l->n; i++) {
            e->bind_path = path ? el_join_path(e, path, arena_printf(&e->arena, "%d", i)) : NULL;
            l->v[i] = el_eval(e, s, x->list.v[i]);
            e->bind_path = NULL;
            if (l->v[i].k == V_ERR)
                return verr();
        }
        e->bind_path = path;
        return (Value){.k = V_LIST, .list = l};
    }
    default: return el_error(e, x->span, "this is not an expression");
    }
}
