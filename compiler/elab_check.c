/* elab_check: the models of a file without a train block, checked on their own
 * (`nnd check lib.nnd`).  A model or layer that can be created without arguments
 * and whose forward types every input with a shape (`fn forward(x: [B, 784])`) is
 * created and called on inputs of those shapes, names such as B standing for
 * symbolic dimensions, as a train block would call it: the same shape and dtype
 * errors are reported.  The others are listed, with the reason, for --verbose. */
#include <string.h>

#include "elab_internal.h"

/* The input a forward parameter's type describes, or 0 (with *why set) when the
 * type does not fix one.  Names that are not members or module constants stand
 * for symbolic dimensions, the same symbol for the same name. */
static NodeId typed_input(Elab *e, Scope *s, const Ast *par, int idx, const char **why)
{
    const Ast *type = par->a;
    if (!type || !type->has_shape) {
        *why = arena_printf(&e->arena, "forward's input '%s' has no shape type", par->name);
        return 0;
    }
    Node n = {.op = OP_INPUT, .idx = idx, .name = par->name, .span = par->span};
    n.dtype = (uint8_t)e->p->float_dtype;
    if (type->name && strcmp(type->name, "i32") == 0)
        n.dtype = NND_I32;
    else if (type->name && strcmp(type->name, "bool") == 0)
        n.dtype = NND_BOOL;
    else if (type->name && strcmp(type->name, "f64") == 0)
        n.dtype = NND_F64;
    if (type->list.n > NND_MAX_RANK) {
        *why = arena_printf(&e->arena, "forward's input '%s' has more than %d dimensions",
                            par->name, NND_MAX_RANK);
        return 0;
    }
    n.shape.rank = type->list.n;
    for (int i = 0; i < type->list.n; i++) {
        const Ast *dx = type->list.v[i];
        if (dx->kind == AST_NAME && dx->op == AOP_MUL) {
            *why =
                arena_printf(&e->arena, "forward's input '%s' has a rank set by its caller (*%s)",
                             par->name, dx->name);
            return 0;
        }
        bool known = dx->kind != AST_NAME || el_scope_find(s, dx->name) ||
                     (s->self && el_member_find(s->self, dx->name)) ||
                     module_lookup(s->mod, dx->name, NULL, NULL);
        if (!known) {
            n.shape.d[i] = graph_symbol(e->g, dx->name);
            continue;
        }
        int64_t d;
        if (!el_to_int(e, el_eval(e, s, dx), dx->span, "a dimension", &d))
            return 0;
        if (d < 0) {
            el_error(e, dx->span, "a dimension must be at least 0, got %lld", (long long)d);
            return 0;
        }
        n.shape.d[i] = d;
    }
    return graph_append(e->g, &n);
}

/* One model or layer: checked, or why not (appended to report). */
static void check_one(Elab *e, Module *m, const Ast *decl, StrBuf *report)
{
    const char *kind = decl->op ? "model" : "layer";
    StrBuf need = {0};
    for (int i = 0; i < decl->list.n; i++)
        if (!decl->list.v[i]->b)
            sb_printf(&need, "%s'%s'", need.len ? ", " : "", decl->list.v[i]->name);
    const Ast *fwd = NULL;
    for (int i = 0; i < decl->list2.n; i++)
        if (decl->list2.v[i]->kind == AST_FN && strcmp(decl->list2.v[i]->name, "forward") == 0)
            fwd = decl->list2.v[i];
    const char *why = NULL;
    if (need.len)
        why = arena_printf(&e->arena, "it is created with arguments (%s)", need.s);
    else if (!fwd)
        why = "it has no forward";
    sb_free(&need);
    int errors = e->d->nerrors;
    if (!why) {
        Args none = {0};
        e->bind_path = decl->name;
        Value net = el_instantiate(e, decl, m, &none, decl->span);
        e->bind_path = NULL;
        Scope s = {.mod = m, .self = net.k == V_LAYER ? net.layer : NULL};
        Args in = {0};
        for (int i = 0; net.k == V_LAYER && !why && i < fwd->list.n; i++) {
            const Ast *par = fwd->list.v[i];
            if (par->b && !par->a)
                continue; /* a default serves */
            NodeId x = typed_input(e, &s, par, in.n, &why);
            if (!x)
                break;
            in.kw[in.n] = par->name; /* by name: parameters with defaults are skipped */
            in.span[in.n] = par->span;
            in.v[in.n++] = vnode(x);
        }
        if (net.k == V_LAYER && !why && e->d->nerrors == errors) {
            Value r = el_call_value(e, net, &in, fwd->span, decl->name);
            if (r.k == V_NODE)
                sb_printf(report, "%s '%s': checked, forward gives %s %s\n", kind, decl->name,
                          el_shape_str(e, &nd(e, r.node)->shape), dtype_name(nd(e, r.node)->dtype));
        }
        vec_free(&s.b);
    }
    if (why)
        sb_printf(report, "%s '%s': not checked: %s\n", kind, decl->name, why);
    else if (e->d->nerrors > errors)
        sb_printf(report, "%s '%s': errors\n", kind, decl->name);
}

bool elab_check_models(Frontend *fe, Module *main, const ElabOptions *opts, StrBuf *report)
{
    Elab e;
    el_begin(&e, fe, opts);
    int errors = e.d->nerrors;
    /* the one counter of the training loop a layer reads: rand_like's (Dropout) */
    e.p->hyper_step = e.p->hypers.n;
    el_new_hyper(&e, "step", 0, span_none());
    for (int i = 0; i < main->ast->items.n; i++)
        if (main->ast->items.v[i]->kind == AST_LAYER)
            check_one(&e, main, main->ast->items.v[i], report);
    el_end(&e);
    program_free(e.p);
    return e.d->nerrors == errors;
}
