/* elab_optim: optimizer groups and their hyper-parameters, the gradients' clipping
 * and accumulation, and each parameter's update rule expanded into graph nodes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "elab_internal.h"

/* Whether the value at root changes as the run goes: it reads step, epoch, steps or
 * t (a schedule), not only constants and the train block's lets. */
static bool reads_counters(Elab *e, NodeId root)
{
    const Program *p = e->p;
    bool *live = xcalloc((size_t)graph_count(e->g), 1);
    graph_mark_live(e->g, &root, 1, live);
    bool found = false;
    for (NodeId id = 1; id < (NodeId)graph_count(e->g) && !found; id++) {
        const Node *n = nd(e, id);
        found = live[id] && n->op == OP_HYPER &&
                (n->idx == p->hyper_step || n->idx == p->hyper_epoch || n->idx == p->hyper_steps ||
                 n->idx == p->hyper_t);
    }
    free(live);
    return found;
}

Group *el_make_group(Elab *e, Value opt, const char *prefix, Span span)
{
    Group *gr = arena_alloc(&e->arena, sizeof *gr);
    vec_push(&e->groups, gr);
    gr->opt = opt;
    const Ast *d = opt.decl;
    Scope s = {.mod = opt.mod};
    const char *what = arena_printf(&e->arena, "optimizer '%s'", d->name);
    if (!el_bind_params(e, &s, &d->list, opt.args, what, span)) {
        vec_free(&s.b);
        return NULL;
    }
    for (int i = 0; i < s.b.n; i++) {
        Binding b = s.b.v[i];
        const char *key = arena_printf(&e->p->arena, "%s.%s", prefix, b.name);
        Override *o = el_find_override(e, key);
        /* a switch: true or false, or a parameter whose default is one */
        const Ast *par = d->list.v[i];
        bool flag = b.v.k == V_NUM && (b.v.is_bool || (par->b && par->b->kind == AST_BOOL));
        if (flag && !o && !b.v.is_bool) {
            int k = el_arg_find(opt.args, b.name, i);
            bool on;
            if (!el_bool_arg(e, &b.v, k >= 0 ? opt.args->span[k] : span, b.name, false, &on))
                continue;
            b.v = vbool(on);
        }
        if (o) {
            o->used = true;
            if (b.v.k == V_NODE && reads_counters(e, b.v.node)) {
                /* a schedule (cosine(lr, step, steps)): the constant replaces all of
                 * it (a `let`'s value it replaces as it would a number) */
                int k = el_arg_find(opt.args, b.name, i);
                int w = diag_warning(e->d, k >= 0 ? opt.args->span[k] : span,
                                     "--set %s=%s replaces this expression by a constant", key,
                                     o->text);
                diag_label(e->d, w, "to scale a schedule, give its rate a `let` and --set that");
            }
            if (flag && (strcmp(o->text, "true") == 0 || strcmp(o->text, "false") == 0)) {
                b.v = vbool(o->text[0] == 't');
            } else if (!o->is_number) {
                el_error(e, span, "--set %s=%s: expected a number", key, o->text);
                continue;
            } else if (flag && o->value != 0 && o->value != 1) {
                el_error(e, span_none(), "--set %s=%s: %s must be true or false, got %g", key,
                         o->text, key, o->value);
                continue;
            } else {
                b.v = flag ? vbool(o->value != 0) : vfloat(o->value);
            }
        }
        /* numbers become run-time inputs; a boolean (centered = false) stays a
         * compile-time choice, so the branch not taken costs nothing */
        if (flag) {
            /* kept as it is */
        } else if (b.v.k == V_NUM) {
            if (strcmp(b.name, "lr") == 0 && !(b.v.num > 0)) { /* trains, but not as meant */
                const char *why = b.v.num == 0 ? "the parameters will not change"
                                               : "a learning rate below 0 makes the loss climb";
                int k = el_arg_find(opt.args, b.name, i);
                if (o)
                    diag_warning(e->d, span_none(), "--set %s=%s: %s", key, o->text, why);
                else
                    diag_warning(e->d, k >= 0 ? opt.args->span[k] : span, "%s is %g: %s", key,
                                 b.v.num, why);
            }
            b.v = vnode(el_new_hyper(e, key, b.v.num, b.span));
        } else if (b.v.k == V_NODE) {
            if (nd(e, b.v.node)->shape.rank != 0) {
                el_error(e, span, "hyper-parameter '%s' must be a scalar", b.name);
                continue;
            }
        } else if (b.v.k != V_ERR) {
            el_error(e, span, "hyper-parameter '%s' must be a number, not %s", b.name,
                     el_kind_name(&b.v));
            continue;
        }
        vec_push(&gr->hypers, b);
    }
    vec_free(&s.b);
    OptGroup og = {arena_strdup(&e->p->arena, prefix), d->name, span};
    vec_push(&e->p->groups, og);
    gr->index = e->p->groups.n - 1;
    return gr;
}

/* A state that a rule declares but, as elaborated, never changes nor reads (RMSprop's
 * centered average when centered = false) is dropped: no memory, no traffic, nothing
 * in checkpoints.  States from `first`, updates from `first_update` are this
 * parameter's. */
static void drop_dead_states(Elab *e, int first, int first_update)
{
    Program *p = e->p;
    int count = graph_count(e->g);
    bool *seen = xcalloc((size_t)count, 1);
    for (int u = first_update; u < p->updates.n; u++)
        seen[p->updates.v[u].value] = true;
    for (NodeId q = (NodeId)count - 1; q > 0; q--) {
        if (!seen[q])
            continue;
        Node *qn = nd(e, q);
        for (int z = 0; z < qn->nin; z++)
            seen[qn->in[z]] = true;
    }
    int out = first;
    for (int k = first; k < p->states.n; k++) {
        bool updated = false;
        for (int u = first_update; u < p->updates.n; u++)
            updated |= p->updates.v[u].is_state && p->updates.v[u].index == k;
        if (!updated && !seen[p->states.v[k].node])
            continue; /* dropped */
        for (int u = first_update; u < p->updates.n; u++)
            if (p->updates.v[u].is_state && p->updates.v[u].index == k)
                p->updates.v[u].index = out;
        nd(e, p->states.v[k].node)->idx = out;
        p->states.v[out++] = p->states.v[k];
    }
    p->states.n = out;
    free(seen);
}

void el_expand_update(Elab *e, Group *gr, int pi)
{
    ParamInfo *p = &e->p->params.v[pi];
    NodeId w = p->node, grad = e->p->grads.v[pi];
    Shape ws = nd(e, w)->shape;
    NndDType wt = nd(e, w)->dtype;
    const Ast *d = gr->opt.decl;
    Scope s = {.mod = gr->opt.mod};
    for (int i = 0; i < gr->hypers.n; i++)
        el_bind(&s, gr->hypers.v[i].name, gr->hypers.v[i].v, gr->hypers.v[i].span);
    int hidx[4] = {e->p->hyper_step, e->p->hyper_epoch, e->p->hyper_steps, e->p->hyper_t};
    const char *hn[4] = {"step", "epoch", "steps", "t"};
    for (int i = 0; i < 4; i++)
        el_bind(&s, hn[i], vnode(el_hyper_node(e, hidx[i], d->span)), d->span);
    el_bind(&s, "w", vnode(w), d->span);
    int first_state = e->p->states.n, first_update = e->p->updates.n;
    const char *what = arena_printf(&e->arena, "optimizer '%s' for %s", d->name, p->name);
    e->frames[e->depth++] = (Frame){d, gr->opt.args ? p->span : d->span, what, NULL};
    for (int i = 0; i < d->list2.n; i++) {
        const Ast *st = d->list2.v[i];
        if (st->kind == AST_STATE_DECL) {
            /* shaped like w unless its type says otherwise; the initial value may use w
             * and the hyper-parameters, not g */
            Shape ss = ws;
            NndDType sdt = wt;
            if (st->a && !el_decl_shape(e, &s, st, "optimizer state", &ss, &sdt))
                continue;
            if (!st->a || !st->a->name)
                sdt = wt;
            Value iv = el_eval(e, &s, st->b);
            NodeId init = iv.k == V_ERR ? 0 : el_to_node(e, iv, st->b->span);
            if (init) {
                init = gb_cast(e->g, init, sdt, st->b->span);
                Shape bs;
                char err[512];
                if (!shape_broadcast(e->g, &nd(e, init)->shape, &ss, &bs, err, sizeof err) ||
                    !shape_equal(&bs, &ss)) {
                    el_error(e, st->b->span, "state '%s' starts with shape %s but must be %s %s",
                             st->name, el_shape_str(e, &nd(e, init)->shape),
                             st->a ? "shaped" : "shaped like w", el_shape_str(e, &ss));
                    init = 0;
                } else {
                    init = gb_broadcast(e->g, init, &ss, st->b->span);
                }
            }
            const char *sname = arena_printf(&e->p->arena, "%s.%s", p->name, st->name);
            NodeId id = el_new_state(e, sname, pi, ss, sdt, init, st->span);
            el_bind(&s, st->name, vnode(id), st->span);
            continue;
        }
        if (!el_scope_find(&s, "g"))
            el_bind(&s, "g", vnode(grad), d->span);
        if (st->kind == AST_LET) {
            el_bind(&s, st->name, el_eval(e, &s, st->a), st->span);
        } else if (st->kind == AST_ASSIGN) {
            Value v = el_eval(e, &s, st->b);
            if (st->op != AOP_ASSIGN)
                v = el_binop(e, el_binop_id(st->op), el_lookup(e, &s, st->a->name, st->a->span), v,
                             st->span);
            el_bind(&s, st->a->name, v, st->span);
        }
    }
    e->depth--;
    /* the final values of w and of each state are the updates */
    for (int k = -1; k < e->p->states.n - first_state; k++) {
        bool is_w = k < 0;
        const char *nm = is_w ? "w" : e->p->states.v[first_state + k].name + strlen(p->name) + 1;
        Binding *b = el_scope_find(&s, nm);
        NodeId old = is_w ? w : e->p->states.v[first_state + k].node;
        if (!b || b->v.k == V_ERR || (b->v.k == V_NODE && b->v.node == old))
            continue;
        NodeId v = el_to_node(e, b->v, b->span);
        if (!v)
            continue;
        Shape os = nd(e, old)->shape;
        v = gb_cast(e->g, v, (NndDType)nd(e, old)->dtype, b->span);
        Shape bs;
        char err[512];
        if (!shape_broadcast(e->g, &nd(e, v)->shape, &os, &bs, err, sizeof err) ||
            !shape_equal(&bs, &os)) {
            el_error(e, b->span, "the new value of %s has shape %s but must keep %s %s",
                     is_w ? "w" : nm, el_shape_str(e, &nd(e, v)->shape),
                     shape_equal(&os, &ws) ? "the shape of w" : "its shape", el_shape_str(e, &os));
            diag_note(e->d, p->span, "for parameter %s", p->name);
            continue;
        }
        v = gb_broadcast(e->g, v, &os, b->span);
        Update u = {!is_w, is_w ? pi : first_state + k, v};
        vec_push(&e->p->updates, u);
    }
    vec_free(&s.b);
    drop_dead_states(e, first_state, first_update);
}

void el_mark_params(Elab *e, Value v, Span span, int *out_count, const char *what, int group)
{
    IntVec ps = {0};
    if (v.k == V_LAYER || v.k == V_LIST || (v.k == V_NODE && nd(e, v.node)->op == OP_PARAM))
        el_value_params(e, &v, &ps, 0);
    else if (v.k != V_ERR)
        el_error(e, span, "%s takes a layer or a parameter, not %s", what, el_kind_name(&v));
    for (int i = 0; i < ps.n; i++) {
        if (group < 0)
            e->p->params.v[ps.v[i]].frozen = true;
        else
            e->p->params.v[ps.v[i]].group = group;
    }
    *out_count = ps.n;
    vec_free(&ps);
}

void el_accumulate_gradients(Elab *e, const Ast *train, const int *which, NodeId *gs, int n,
                             NodeVec *sums, NodeVec *states)
{
    Program *p = e->p;
    /* layer state (batch norm's running statistics) moves on every micro-batch, as
     * it would with a forward pass per micro-batch in PyTorch */
    for (int u = 0; u < p->updates.n; u++)
        if (p->updates.v[u].is_state && p->states.v[p->updates.v[u].index].param < 0)
            vec_push(&p->accum_updates, p->updates.v[u]);
    p->hyper_accum = p->hypers.n;
    NodeId total =
        el_new_hyper(e, "accumulate.samples", (double)(p->batch * p->accumulate), train->span);
    for (int i = 0; i < n; i++) {
        ParamInfo *par = &p->params.v[which[i]];
        Shape ws = nd(e, par->node)->shape;
        NndDType dt = (NndDType)nd(e, par->node)->dtype;
        Span span = par->span;
        const char *sname = arena_printf(&p->arena, "%s.grad_sum", par->name);
        NodeId st = el_new_state(e, sname, which[i], ws, dt, 0, span);
        p->states.v[p->states.n - 1].init = gb_full(e->g, 0, dt, &ws, span);
        NodeId b = gb_cast(e->g, gb_dimsize(e->g, p->x, 1u, p->float_dtype, span), dt, span);
        NodeId sum =
            gb_binary_bc(e->g, OP_ADD, st, gb_binary_bc(e->g, OP_MUL, gs[i], b, span), span);
        Update more = {true, p->states.n - 1, gb_broadcast(e->g, sum, &ws, span)};
        if (sums) {
            vec_push(sums, sum);
            vec_push(states, st);
        }
        vec_push(&p->accum_updates, more);
        Update zero = {true, p->states.n - 1, gb_full(e->g, 0, dt, &ws, span)};
        vec_push(&p->updates, zero);
        gs[i] = gb_broadcast(
            e->g, gb_binary_bc(e->g, OP_DIV, sum, gb_cast(e->g, total, dt, span), span), &ws, span);
    }
}

void el_clip_gradients(Elab *e, Scope *s, const Ast *train, NodeId *gs, int n)
{
    static const char *const names[2] = {"clip_value", "clip_norm"};
    for (int which = 0; which < 2; which++) {
        const Ast *st = el_find_setting(train, names[which]);
        bool found = false;
        double v = el_setting_number(e, s, st, names[which], 0, &found);
        if (!found || n == 0)
            continue;
        Span span = st ? st->span : train->span;
        if (!(v > 0)) {
            el_setting_error(e, names[which], span, "%s must be positive, got %g", names[which], v);
            continue;
        }
        NodeId h = el_new_hyper(e, names[which], v, span);
        if (which == 0) {
            NodeId lo = gb_unary(e->g, OP_NEG, h, span);
            for (int i = 0; i < n; i++) {
                NndDType dt = (NndDType)nd(e, gs[i])->dtype;
                NodeId hi_i = gb_cast(e->g, h, dt, span), lo_i = gb_cast(e->g, lo, dt, span);
                gs[i] = gb_binary_bc(e->g, OP_MIN, gb_binary_bc(e->g, OP_MAX, gs[i], lo_i, span),
                                     hi_i, span);
            }
            continue;
        }
        NodeId total = 0;
        for (int i = 0; i < n; i++) {
            NodeId sq = gb_binary(e->g, OP_MUL, gs[i], gs[i], span);
            int r = nd(e, sq)->shape.rank;
            sq = gb_reduce(e->g, OP_SUM, sq, r ? (1u << r) - 1 : 0, false, span);
            sq = gb_cast(e->g, sq, e->p->float_dtype, span);
            total = total ? gb_binary(e->g, OP_ADD, total, sq, span) : sq;
        }
        NodeId norm = gb_unary(e->g, OP_SQRT, total, span);
        NodeId coef = gb_binary(
            e->g, OP_DIV, gb_cast(e->g, h, e->p->float_dtype, span),
            gb_binary(e->g, OP_ADD, norm, gb_const(e->g, 1e-6, e->p->float_dtype, span), span),
            span);
        coef = gb_binary(e->g, OP_MIN, coef, gb_const(e->g, 1, e->p->float_dtype, span), span);
        for (int i = 0; i < n; i++)
            gs[i] = gb_binary_bc(e->g, OP_MUL, gs[i],
                                 gb_cast(e->g, coef, (NndDType)nd(e, gs[i])->dtype, span), span);
    }
}

/* A train setting that is a positive run-time hyper-parameter, or 0 when absent. */
static NodeId setting_hyper(Elab *e, Scope *s, const Ast *train, const char *name, double hi)
{
    for (int i = 0; i < e->p->hypers.n; i++)
        if (strcmp(e->p->hypers.v[i].name, name) == 0) /* made for an earlier parameter */
            return el_hyper_node(e, i, e->p->hypers.v[i].span);
    const Ast *st = el_find_setting(train, name);
    bool found = false;
    double v = el_setting_number(e, s, st, name, 0, &found);
    if (!found)
        return 0;
    Span span = st ? st->span : train->span;
    /* an error is said once: the hyper-parameter is made anyway, for the next
     * parameters to find */
    if (!(v > 0 && v < hi) && isinf(hi))
        el_setting_error(e, name, span, "%s must be positive, got %g", name, v);
    else if (!(v > 0 && v < hi))
        el_setting_error(e, name, span, "%s must be between 0 and %g (both excluded), got %g", name,
                         hi, v);
    return el_new_hyper(e, name, v, span);
}

void el_constrain_and_average(Elab *e, Scope *s, const Ast *train, int pi, int first)
{
    Program *p = e->p;
    ParamInfo *par = &p->params.v[pi];
    /* copies: the node array moves as nodes are added */
    Shape ws = nd(e, par->node)->shape;
    NndDType dt = (NndDType)nd(e, par->node)->dtype;
    int wu = -1;
    for (int u = first; u < p->updates.n; u++)
        if (!p->updates.v[u].is_state && p->updates.v[u].index == pi)
            wu = u;
    NodeId c = ws.rank >= 2 ? setting_hyper(e, s, train, "max_norm", INFINITY) : 0;
    if (c && wu >= 0) {
        Span span = par->span;
        uint32_t mask = ws.rank == 2 ? 1u : ((1u << ws.rank) - 1) & ~1u;
        NodeId v = p->updates.v[wu].value;
        NodeId sq = gb_reduce(e->g, OP_SUM, gb_binary(e->g, OP_MUL, v, v, span), mask, true, span);
        NodeId norm = gb_unary(e->g, OP_SQRT, sq, span);
        NodeId scale = gb_binary_bc(
            e->g, OP_DIV, gb_cast(e->g, c, dt, span),
            gb_binary_bc(e->g, OP_ADD, norm, gb_const(e->g, 1e-7, dt, span), span), span);
        scale = gb_binary_bc(e->g, OP_MIN, scale, gb_const(e->g, 1, dt, span), span);
        p->updates.v[wu].value = gb_broadcast(
            e->g, gb_binary_bc(e->g, OP_MUL, v, gb_broadcast(e->g, scale, &ws, span), span), &ws,
            span);
    }
    NodeId d = setting_hyper(e, s, train, "ema", 1);
    if (!d)
        return;
    Span span = par->span;
    const char *sname = arena_printf(&p->arena, "%s.average", par->name);
    NodeId st = el_new_state(e, sname, pi, ws, dt, par->node, span); /* starts at w's start */
    NodeId wn = wu >= 0 ? p->updates.v[wu].value : par->node;
    NodeId dd = gb_cast(e->g, d, dt, span);
    NodeId one_minus = gb_binary(e->g, OP_SUB, gb_const(e->g, 1, dt, span), dd, span);
    NodeId v = gb_binary_bc(e->g, OP_ADD, gb_binary_bc(e->g, OP_MUL, st, dd, span),
                            gb_binary_bc(e->g, OP_MUL, wn, one_minus, span), span);
    Update u = {true, p->states.n - 1, gb_broadcast(e->g, v, &ws, span)};
    vec_push(&p->updates, u);
    par->ema_state = p->states.n - 1;
}
