/* elab_layer: layer instances (their parameters and state), the shape patterns of
 * function parameters, and functions with a vjp block. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "elab_internal.h"

void el_value_params(Elab *e, const Value *v, IntVec *out, int depth)
{
    if (depth > MAX_CALL_DEPTH)
        return;
    if (v->k == V_NODE && nd(e, v->node)->op == OP_PARAM) {
        int idx = nd(e, v->node)->idx;
        bool dup = false;
        for (int k = 0; k < out->n; k++)
            dup |= out->v[k] == idx;
        if (!dup)
            vec_push(out, idx);
    } else if (v->k == V_LAYER) {
        for (int i = 0; i < v->layer->members.n; i++) {
            const Value *m = &v->layer->members.v[i].v;
            if (m->k != V_LAYER || m->layer != v->layer)
                el_value_params(e, m, out, depth + 1);
        }
    } else if (v->k == V_LIST) {
        for (int i = 0; i < v->list->n; i++)
            el_value_params(e, &v->list->v[i], out, depth + 1);
    }
}

void el_record_state_updates(Elab *e, LayerInst *self, Scope *s, int first)
{
    for (int i = 0; i < self->members.n; i++) {
        Binding *m = &self->members.v[i];
        if (m->v.k != V_NODE || nd(e, m->v.node)->op != OP_STATE)
            continue;
        Binding *b = NULL;
        for (int k = s->b.n - 1; k >= first && !b; k--)
            if (strcmp(s->b.v[k].name, m->name) == 0)
                b = &s->b.v[k];
        if (!b || b->v.k == V_ERR || (b->v.k == V_NODE && b->v.node == m->v.node))
            continue;
        /* copies: the node array moves as nodes are added */
        const Node st = *nd(e, m->v.node);
        StateInfo *si = &e->p->states.v[st.idx];
        for (int k = 0; k < e->p->updates.n; k++)
            if (e->p->updates.v[k].is_state && e->p->updates.v[k].index == st.idx) {
                el_error(e, b->span,
                         "state '%s' is updated twice in one step: a layer with state can "
                         "be applied once per training step",
                         si->name);
                return;
            }
        NodeId v = el_to_node(e, b->v, b->span);
        if (!v)
            continue;
        v = gb_cast(e->g, v, (NndDType)st.dtype, b->span);
        Shape bs;
        char err[512];
        if (!shape_broadcast(e->g, &nd(e, v)->shape, &st.shape, &bs, err, sizeof err) ||
            !shape_equal(&bs, &st.shape)) {
            el_error(e, b->span, "the new value of state '%s' has shape %s but the state is %s",
                     m->name, el_shape_str(e, &nd(e, v)->shape), el_shape_str(e, &st.shape));
            continue;
        }
        Update u = {true, st.idx, gb_broadcast(e->g, v, &st.shape, b->span)};
        vec_push(&e->p->updates, u);
    }
}

Value el_custom_result(Elab *e, const Ast *fn, Module *mod, LayerInst *self, Scope *s, int nparams,
                       Value r, Span span)
{
    if (r.k != V_NODE)
        return r; /* a number: nothing to differentiate */
    CustomGrad cg = {fn, mod, self, NULL, nparams, {0, 0}, 0};
    Node n = {.op = OP_CUSTOM, .nin = 1, .in = {r.node}, .idx = e->customs.n};
    /* nparams bindings: the parameters and the dimension names their types bound */
    for (int i = 0; i < fn->list.n; i++) {
        Value v = verr();
        for (int k = 0; k < nparams; k++)
            if (strcmp(s->b.v[k].name, fn->list.v[i]->name) == 0)
                v = s->b.v[k].v;
        if (v.k != V_NODE || !dtype_is_float(nd(e, v.node)->dtype))
            continue;
        if (cg.nwhich == 2)
            return el_error(e, span,
                            "a fn with a vjp block takes at most two tensor arguments; "
                            "'%s' is given more",
                            fn->name);
        cg.which[cg.nwhich++] = i;
        n.in[n.nin++] = v.node;
    }
    cg.params = arena_alloc(&e->arena, sizeof(Binding) * (size_t)(nparams ? nparams : 1));
    memcpy(cg.params, s->b.v, sizeof(Binding) * (size_t)nparams);
    vec_push(&e->customs, cg);
    return vnode(el_make(e, n, span));
}

/* Whether v is a number or a (nested) list of numbers only, as a tensor literal is. */
static bool list_is_numbers(const Value *v, int depth)
{
    if (v->k == V_NUM)
        return true;
    if (v->k != V_LIST || depth > NND_MAX_RANK)
        return false;
    for (int i = 0; i < v->list->n; i++)
        if (!list_is_numbers(&v->list->v[i], depth + 1))
            return false;
    return true;
}

void el_custom_vjp(void *ctx, Graph *g, NodeId n, NodeId dy, NodeId *dx)
{
    Elab *e = ctx;
    Node *cn = graph_node(g, n);
    CustomGrad *cg = &e->customs.v[cn->idx];
    const Ast *vjp = cg->fn->c;
    if (e->depth == MAX_CALL_DEPTH) {
        el_error(e, vjp->span, "calls nested more than %d deep", MAX_CALL_DEPTH);
        return;
    }
    Scope s = {.mod = cg->mod, .self = cg->self};
    for (int i = 0; i < cg->nparams; i++)
        vec_push(&s.b, cg->params[i]);
    el_bind(&s, vjp->list.n == 2 ? vjp->list.v[0]->name : "y", vnode(n), vjp->span);
    el_bind(&s, vjp->list.n == 2 ? vjp->list.v[1]->name : "dy", vnode(dy), vjp->span);
    e->frames[e->depth++] = (Frame){
        vjp, vjp->span, arena_printf(&e->arena, "the vjp block of '%s'", cg->fn->name), NULL};
    Value r = el_run_body(e, &s, vjp);
    e->depth--;
    int np = cg->fn->list.n;
    const Ast *last = vjp->list2.n ? vjp->list2.v[vjp->list2.n - 1] : vjp;
    if (r.k == V_ERR) {
        vec_free(&s.b);
        return;
    }
    /* a list gives the gradients of the parameters in order (those left out get
     * none); anything else is the first parameter's.  With one parameter, a list of
     * numbers only is a tensor literal: that parameter's gradient. */
    bool per_param = r.k == V_LIST && (np > 1 || !list_is_numbers(&r, 0));
    if (per_param && r.list->n > np) {
        el_error(e, last->span,
                 "the vjp block of '%s' gives %d gradients, but it has %d parameter%s",
                 cg->fn->name, r.list->n, np, np == 1 ? "" : "s");
        vec_free(&s.b);
        return;
    }
    for (int k = 0; k < cg->nwhich; k++) {
        int pi = cg->which[k];
        if (per_param ? pi >= r.list->n : pi != 0)
            continue;
        Value gv = per_param ? r.list->v[pi] : r;
        if (gv.k == V_NUM && gv.num == 0)
            continue; /* no gradient */
        NodeId gn = el_to_node(e, gv, last->span);
        if (!gn)
            continue;
        NodeId target = cn->in[1 + k];
        Node *t = nd(e, target);
        Shape ts = t->shape;
        NndDType tdt = (NndDType)t->dtype;
        gn = gb_cast(g, gn, tdt, last->span);
        Shape bs;
        char err[512];
        const Shape *gs = &nd(e, gn)->shape;
        if (shape_broadcast(g, gs, &ts, &bs, err, sizeof err) && shape_equal(&bs, &ts)) {
            gn = gb_broadcast(g, gn, &ts, last->span);
        } else if (shape_broadcast(g, gs, &ts, &bs, err, sizeof err) && shape_equal(&bs, gs)) {
            gn = gb_sum_to(g, gn, &ts, last->span); /* the parameter was broadcast */
        } else {
            el_error(e, last->span, "the gradient for '%s' has shape %s, but '%s' is %s",
                     cg->fn->list.v[pi]->name, el_shape_str(e, gs), cg->fn->list.v[pi]->name,
                     el_shape_str(e, &ts));
            continue;
        }
        dx[k] = gn;
    }
    vec_free(&s.b);
}

bool el_decl_shape(Elab *e, Scope *s, const Ast *st, const char *what, Shape *out, NndDType *dt)
{
    Shape shape = {st->a->list.n, {0}};
    bool good = shape.rank <= NND_MAX_RANK;
    if (!good)
        el_error(e, st->a->span, "a %s has at most %d dimensions", what, NND_MAX_RANK);
    for (int k = 0; good && k < shape.rank; k++) {
        const Ast *dx = st->a->list.v[k];
        Value dv = el_eval(e, s, dx);
        int64_t n;
        if (dv.k == V_DIM) {
            el_error(e, dx->span, "a %s's shape cannot depend on the batch size", what);
            good = false;
        } else if (!el_to_int(e, dv, dx->span, arena_printf(&e->arena, "a %s dimension", what),
                              &n)) {
            good = false;
        } else if (n < 1) {
            el_error(e, dx->span, "%s dimension is %lld; it must be at least 1", what,
                     (long long)n);
            good = false;
        } else {
            shape.d[k] = n;
        }
    }
    if (good && shape_static_numel(&shape, NULL) > GRAPH_MAX_NUMEL) {
        el_error(e, st->a->span, "a %s of shape %s would have more than 2^40 elements", what,
                 el_shape_str(e, &shape));
        good = false;
    }
    *dt = e->p->float_dtype;
    if (st->a->name) {
        if (strcmp(st->a->name, "f64") == 0)
            *dt = NND_F64;
        else if (strcmp(st->a->name, "f32") == 0)
            *dt = e->p->float_dtype == NND_F64 ? NND_F64 : NND_F32;
        else {
            el_error(e, st->a->span, "%s",
                     *what == 'p' ? "parameters are trained, so they must be f32 or f64"
                                  : "layer state must be f32 or f64");
            good = false;
        }
    }
    *out = shape;
    return good;
}

/* Runs the initializer of a parameter or layer state called name (shape, dt):
 * `= glorot_uniform` (a function called with no arguments), `= normal(0, 0.02)`,
 * `= 0`.  Random draws are keyed by the name; fan_in and fan_out are set by the
 * caller. */
static Value eval_initializer(Elab *e, Scope *s, const Ast *st, const char *name, Shape shape,
                              NndDType dt)
{
    e->in_init = true;
    e->init_shape = shape;
    e->init_dtype = dt;
    e->init_name = name;
    e->init_draws = 0;
    Value iv = el_eval(e, s, st->b);
    if (iv.k == V_FN || (iv.k == V_BUILTIN && builtin_info[iv.builtin].ctx == BCTX_INIT)) {
        Args none = {0};
        iv = el_call_value(e, iv, &none, st->b->span, NULL);
    }
    e->in_init = false;
    return iv;
}

/* Whether an initial value reads a parameter, a state, the data or the batch size
 * (random draws are fine). */
static bool init_reads_data(Elab *e, NodeId init)
{
    static const OpId data[] = {OP_PARAM, OP_STATE, OP_INPUT, OP_DIMSIZE};
    return nd(e, init)->op != OP_RANDU && nd(e, init)->op != OP_RANDN &&
           el_reads(e, init, data, (int)NND_ARRAY_LEN(data));
}

/* `state NAME: [dims] = init` in a layer: a STATE leaf named path.NAME, bound as
 * a member of l. */
static bool layer_state(Elab *e, Scope *s, LayerInst *l, const Ast *st)
{
    Shape shape;
    NndDType dt;
    if (!el_decl_shape(e, s, st, "layer state", &shape, &dt))
        return false;
    const char *sname = el_join_path(e, l->path, st->name);
    e->fan_in = e->fan_out = 1;
    Value iv = eval_initializer(e, s, st, sname, shape, dt);
    NodeId init = iv.k == V_ERR ? 0 : el_to_node(e, iv, st->b->span);
    if (init) {
        init = gb_cast(e->g, init, dt, st->b->span);
        Shape bs;
        char err[512];
        if (!shape_broadcast(e->g, &nd(e, init)->shape, &shape, &bs, err, sizeof err) ||
            !shape_equal(&bs, &shape) || el_depends_on_data(e, init)) {
            el_error(e, st->b->span,
                     "layer state '%s' starts with %s; it needs a value of "
                     "shape %s that does not depend on data",
                     st->name, el_shape_str(e, &nd(e, init)->shape), el_shape_str(e, &shape));
            init = 0;
        } else {
            init = gb_broadcast(e->g, init, &shape, st->b->span);
        }
    }
    if (!init)
        return false;
    NodeId id = el_new_state(e, sname, -1, shape, dt, init, st->span);
    Binding b = {st->name, vnode(id), st->span};
    vec_push(&l->members, b);
    return true;
}

/* A parameter's initial value from its initializer's value iv: broadcast to its
 * shape and dtype; 0 (reported) when it does not fit or reads data. */
static NodeId param_init(Elab *e, const Ast *st, Value iv, Shape shape, NndDType dt)
{
    if (iv.k == V_ERR)
        return 0;
    if (iv.k != V_NUM && iv.k != V_NODE && iv.k != V_LIST) {
        el_error(e, st->b->span, "an initializer must give a tensor or a number, not %s",
                 el_kind_name(&iv));
        return 0;
    }
    NodeId init = el_to_node(e, iv, st->b->span);
    if (init && init_reads_data(e, init)) {
        el_error(e, st->b->span, "an initializer cannot depend on data or other parameters");
        return 0;
    }
    if (!init)
        return 0;
    init = gb_cast(e->g, init, dt, st->b->span);
    char err[512];
    Shape bs;
    if (!shape_broadcast(e->g, &nd(e, init)->shape, &shape, &bs, err, sizeof err) ||
        !shape_equal(&bs, &shape)) {
        el_error(e, st->b->span, "the initializer's shape %s does not fit %s",
                 el_shape_str(e, &nd(e, init)->shape), el_shape_str(e, &shape));
        return 0;
    }
    return gb_broadcast(e->g, init, &shape, st->b->span);
}

/* `param NAME: [dims] = init` in a layer: a PARAM leaf named path.NAME (fc1.W),
 * its initializer run with fan_in and fan_out from the shape (PyTorch's rules:
 * [in, out] for a matrix, [out, in / groups, kh, kw] for a filter). */
static bool layer_param(Elab *e, Scope *s, LayerInst *l, const Ast *st)
{
    Shape shape;
    NndDType dt;
    bool good = el_decl_shape(e, s, st, "parameter", &shape, &dt);
    if (!st->b) {
        el_error(e, st->span,
                 "parameter '%s' needs an initializer, like `= glorot_uniform` or `= 0`", st->name);
        good = false;
    }
    if (!good)
        return false;
    bool ok = true;
    const char *pname = el_join_path(e, l->path, st->name);
    for (int k = 0; k < e->p->params.n; k++)
        if (strcmp(e->p->params.v[k].name, pname) == 0) {
            el_error(e, st->span, "two parameters are named '%s'", pname);
            ok = false;
        }
    Node pn = {.op = OP_PARAM,
               .dtype = (uint8_t)dt,
               .shape = shape,
               .idx = e->p->params.n,
               .name = pname,
               .span = st->span};
    NodeId id = graph_append(e->g, &pn);
    int r = shape.rank;
    int64_t rf = 1;
    for (int k = 2; k < r; k++)
        rf *= shape.d[k];
    e->fan_in = r == 0   ? 1
                : r == 1 ? (double)shape.d[0]
                : r == 2 ? (double)shape.d[0]
                         : (double)(shape.d[1] * rf);
    e->fan_out = r == 0   ? 1
                 : r == 1 ? (double)shape.d[0]
                 : r == 2 ? (double)shape.d[1]
                          : (double)(shape.d[0] * rf);
    NodeId init = param_init(e, st, eval_initializer(e, s, st, pname, shape, dt), shape, dt);
    ParamInfo pi = {pname, id, init, false, 0, st->span, {0}, -1};
    vec_push(&e->p->params, pi);
    Binding b = {st->name, vnode(id), st->span};
    vec_push(&l->members, b);
    return ok && init;
}

Value el_instantiate(Elab *e, const Ast *decl, Module *mod, Args *args, Span span)
{
    if (!e->bind_path)
        return el_error(e, span,
                        "layer '%s' is created here without a name; create layers as members "
                        "(`fc1 = %s(...)`) or in the train block (`net = %s(...)`)",
                        decl->name, decl->name, decl->name);
    const char *path = e->bind_path;
    e->bind_path = NULL;
    if (el_too_big(e, span))
        return verr();
    if (e->depth == MAX_CALL_DEPTH)
        return el_error(e, span, "layers nested more than %d deep", MAX_CALL_DEPTH);
    for (int i = 0; i < e->depth; i++)
        if (e->frames[i].decl == decl)
            return el_error(e, span, "layer '%s' contains itself", decl->name);
    LayerInst *l = arena_alloc(&e->arena, sizeof *l);
    vec_push(&e->layers, l);
    l->decl = decl;
    l->mod = mod;
    l->path = path;
    const char *what = arena_printf(&e->arena, "'%s'", decl->name);
    e->frames[e->depth++] = (Frame){decl, span, arena_printf(&e->arena, "layer %s", what), NULL};
    Scope s = {.mod = mod, .self = l};
    bool ok = el_bind_params(e, &s, &decl->list, args, what, span);
    for (int i = 0; ok && i < s.b.n; i++)
        vec_push(&l->members, s.b.v[i]);
    s.b.n = 0;
    for (int i = 0; ok && i < decl->list2.n; i++) {
        const Ast *st = decl->list2.v[i];
        if (st->kind == AST_LET) {
            Value v = el_eval(e, &s, st->a);
            Binding b = {st->name, v, st->span};
            vec_push(&l->members, b);
        } else if (st->kind == AST_ASSIGN) {
            e->bind_path = el_join_path(e, path, st->a->name);
            Value v = el_eval(e, &s, st->b);
            e->bind_path = NULL;
            Binding b = {st->a->name, v, st->span};
            vec_push(&l->members, b);
        } else if (st->kind == AST_STATE_DECL) {
            ok = layer_state(e, &s, l, st);
        } else if (st->kind == AST_PARAM_DECL) {
            ok = layer_param(e, &s, l, st);
        }
    }
    e->depth--;
    vec_free(&s.b);
    if (!ok)
        return verr();
    return (Value){.k = V_LAYER, .layer = l};
}

static bool dims_equal(Value a, int64_t d)
{
    if (a.k == V_DIM)
        return a.dim == d;
    return a.k == V_NUM && d >= 0 && a.num == (double)d;
}

static Value dim_value(NodeId node, int axis, int64_t d)
{
    if (d >= 0)
        return vnum((double)d);
    return (Value){.k = V_DIM, .dim = d, .node = node, .axis = axis};
}

enum { MATCH_OK, MATCH_BAD, MATCH_ERR };

/* Matches shape sh of node against a type's shape pattern ([B, 784], [*S, C]):
 * names not bound yet are bound in s (when bind_patterns; else they do not match),
 * `*S` takes the dimensions the fixed ones leave.  MATCH_ERR after an error in a
 * dimension's expression. */
static int match_shape(Elab *e, Scope *s, const Ast *type, NodeId node, Shape sh,
                       bool bind_patterns)
{
    bool bad = false;
    int splat = -1;
    for (int i = 0; i < type->list.n; i++)
        if (type->list.v[i]->kind == AST_NAME && type->list.v[i]->op == AOP_MUL)
            splat = i;
    int fixed = type->list.n - (splat >= 0);
    if (splat < 0 ? sh.rank != fixed : sh.rank < fixed)
        bad = true;
    int axis = 0;
    for (int i = 0; i < type->list.n && !bad; i++) {
        const Ast *dx = type->list.v[i];
        if (i == splat) {
            int cnt = sh.rank - fixed;
            VList *l = arena_alloc(&e->arena, sizeof *l);
            l->n = cnt;
            l->v = arena_alloc(&e->arena, sizeof(Value) * (size_t)(cnt ? cnt : 1));
            for (int k = 0; k < cnt; k++)
                l->v[k] = dim_value(node, axis + k, sh.d[axis + k]);
            Binding *bound = el_scope_find(s, dx->name);
            if (bound && bound->v.k == V_LIST) {
                if (bound->v.list->n != cnt)
                    bad = true;
                for (int k = 0; k < cnt && !bad; k++)
                    if (!dims_equal(bound->v.list->v[k], sh.d[axis + k]))
                        bad = true;
            } else if (bind_patterns) {
                el_bind(s, dx->name, (Value){.k = V_LIST, .list = l}, dx->span);
            } else {
                bad = true;
            }
            axis += cnt;
            continue;
        }
        int64_t d = sh.d[axis];
        if (dx->kind == AST_NAME) {
            Binding *bound = el_scope_find(s, dx->name);
            bool known = bound || (s->self && el_member_find(s->self, dx->name));
            if (!known && !module_lookup(s->mod, dx->name, NULL, NULL)) {
                if (bind_patterns)
                    el_bind(s, dx->name, dim_value(node, axis, d), dx->span);
                else
                    bad = true;
                axis++;
                continue;
            }
        }
        Value want_v = el_eval(e, s, dx);
        if (want_v.k == V_ERR)
            return MATCH_ERR;
        if (want_v.k == V_DIM || want_v.k == V_NUM) {
            if (!dims_equal(want_v, d))
                bad = true;
        } else {
            int64_t x;
            if (!el_to_int(e, want_v, dx->span, "a dimension", &x))
                return MATCH_ERR;
            if (x != d)
                bad = true;
        }
        axis++;
    }
    return bad ? MATCH_BAD : MATCH_OK;
}

/* A dimension a pattern is bound to: a symbol, or a number as written (1e100 is
 * no whole int64). */
static void put_dim(Elab *e, StrBuf *b, Value d)
{
    if (d.k == V_DIM) {
        Shape one = {1, {d.dim}};
        const char *t = el_shape_str(e, &one);
        sb_printf(b, "%.*s", (int)strlen(t) - 2, t + 1);
    } else if (d.num == floor(d.num) && fabs(d.num) < 9e18) {
        sb_printf(b, "%lld", (long long)d.num);
    } else {
        sb_printf(b, "%.17g", d.num);
    }
}

/* The shape a type expects, written with what is bound so far: [*S, C] with S
 * bound to [B, 1] and C to 10 reads [B, 1, 10]; names bound by the value being
 * matched (from index nbound of s) show as the pattern. */
static void describe_pattern(Elab *e, Scope *s, const Ast *type, int nbound, char *want, size_t len)
{
    StrBuf b = {0};
    sb_putc(&b, '[');
    int shown = 0;
    for (int i = 0; i < type->list.n; i++) {
        const Ast *dx = type->list.v[i];
        Binding *bound = dx->kind == AST_NAME ? el_scope_find(s, dx->name) : NULL;
        if (bound && bound - s->b.v >= nbound)
            bound = NULL; /* bound by this very value: show the pattern */
        if (!bound && dx->kind == AST_NAME && s->self)
            bound = el_member_find(s->self, dx->name);
        Value bv = bound ? bound->v : verr();
        if (dx->kind == AST_NAME && dx->op == AOP_MUL && bv.k == V_LIST) {
            for (int k = 0; k < bv.list->n; k++) {
                sb_puts(&b, shown++ ? ", " : "");
                put_dim(e, &b, bv.list->v[k]);
            }
            continue;
        }
        if (shown++)
            sb_puts(&b, ", ");
        if (dx->kind == AST_NAME && dx->op != AOP_MUL &&
            (bv.k == V_DIM || (bv.k == V_NUM && bv.is_int))) {
            put_dim(e, &b, bv);
        } else if (dx->kind == AST_NAME) {
            if (dx->op == AOP_MUL)
                sb_putc(&b, '*');
            sb_puts(&b, dx->name);
        } else if (dx->kind == AST_NUM) { /* as written: 1e100 is no whole int64 */
            if (dx->num == floor(dx->num) && fabs(dx->num) < 9e18)
                sb_printf(&b, "%lld", (long long)dx->num);
            else
                sb_printf(&b, "%.17g", dx->num);
        } else {
            sb_puts(&b, "...");
        }
    }
    sb_putc(&b, ']');
    snprintf(want, len, "%s", b.s);
    sb_free(&b);
}

/* The last notes of a type error: the three innermost calls that led to it. */
static void call_notes(Elab *e)
{
    for (int i = e->depth - 1, k = 0; i >= 0 && k < 3; i--, k++)
        diag_note(e->d, e->frames[i].call, "in %s, called here", e->frames[i].name);
}

/* A dtype named by a type (f32, f64, i32, bool) against the value's. */
static bool check_dtype(Elab *e, const Ast *type, const Node *n, Span vspan, const char *what,
                        const Ast *pdecl)
{
    NndDType want_dt = strcmp(type->name, "i32") == 0    ? NND_I32
                       : strcmp(type->name, "bool") == 0 ? NND_BOOL
                       : strcmp(type->name, "f64") == 0  ? NND_F64
                                                         : NND_F32;
    if (want_dt == NND_F32 && e->p->float_dtype == NND_F64)
        want_dt = NND_F64;
    if (n->dtype == want_dt)
        return true;
    int d = pdecl ? diag_error(e->d, vspan, "'%s' must be %s, got %s", what, dtype_name(want_dt),
                               dtype_name(n->dtype))
                  : diag_error(e->d, vspan, "the %s must be %s, got %s", what, dtype_name(want_dt),
                               dtype_name(n->dtype));
    if (d >= 0 && want_dt == NND_I32)
        diag_label(e->d, d, "labels and indices are integers: convert with i32(...)");
    if (pdecl)
        diag_note(e->d, pdecl->span, "declared here");
    call_notes(e);
    return false;
}

bool el_check_type(Elab *e, Scope *s, const Ast *type, Value *v, Span vspan, const char *what,
                   const Ast *pdecl, bool bind_patterns)
{
    if (v->k == V_NUM || v->k == V_LIST || v->k == V_DIM) {
        NodeId n = el_to_node(e, *v, vspan);
        if (!n)
            return false;
        if (type->name && strcmp(type->name, "i32") == 0)
            n = gb_cast(e->g, n, NND_I32, vspan);
        *v = vnode(n);
    }
    if (v->k != V_NODE) {
        el_error(e, vspan, "'%s' must be a tensor, got %s", what, el_kind_name(v));
        return false;
    }
    Shape sh = nd(e, v->node)->shape;
    int nbound = s->b.n; /* names bound before this value was matched */
    int m = type->has_shape ? match_shape(e, s, type, v->node, sh, bind_patterns) : MATCH_OK;
    if (m == MATCH_ERR)
        return false;
    /* matching may add nodes (a dimension's expression): the node is read after */
    if (m == MATCH_OK)
        return !type->name || check_dtype(e, type, nd(e, v->node), vspan, what, pdecl);
    char want[512];
    describe_pattern(e, s, type, nbound, want, sizeof want);
    if (pdecl)
        diag_error(e->d, vspan, "'%s' has shape %s, expected %s", what, el_shape_str(e, &sh), want);
    else
        diag_error(e->d, vspan, "the %s has shape %s, expected %s", what, el_shape_str(e, &sh),
                   want);
    diag_note(e->d, pdecl ? pdecl->span : type->span, "%s here",
              pdecl ? "declared" : "result type declared");
    call_notes(e);
    return false;
}
