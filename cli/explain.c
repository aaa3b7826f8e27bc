/* explain: `nnd explain`, every optimizer group's update rules after expansion and
 * simplification (one per distinct update of its parameters), written as formulas
 * for the first parameter that gets it, with the bytes it reads and writes per
 * element. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct Explain {
    const Program *p;
    const Graph *g;
    int param; /* the parameter explained */
    NodeId grad; /* its gradient, past the nodes that only move it (a bias's sum over the
                    batch is reshaped to the bias's shape) */
    const char *prefix; /* its group's hyper-parameter prefix, "opt." */
    char *own; /* per node: 1 when computed from w, g, the states, hypers, constants */
    int *uses; /* uses inside the update expressions */
    int *temp; /* per node: its let number, or 0 */
    const char **named; /* per node: the new value it is (m'), once printed */
    int ntemps;
} Explain;

static int prec_of(OpId op)
{
    switch (op) {
    case OP_OR: return 1;
    case OP_AND: return 2;
    case OP_LT:
    case OP_LE:
    case OP_GT:
    case OP_GE:
    case OP_EQ:
    case OP_NE: return 3;
    case OP_ADD:
    case OP_SUB: return 4;
    case OP_MUL:
    case OP_DIV: return 5;
    case OP_NEG: return 6;
    case OP_POW: return 7;
    default: return 9;
    }
}

static const char *infix(OpId op)
{
    switch (op) {
    case OP_ADD: return " + ";
    case OP_SUB: return " - ";
    case OP_MUL: return " * ";
    case OP_DIV: return " / ";
    case OP_POW: return "^";
    case OP_LT: return " < ";
    case OP_LE: return " <= ";
    case OP_GT: return " > ";
    case OP_GE: return " >= ";
    case OP_EQ: return " == ";
    case OP_NE: return " != ";
    case OP_AND: return " and ";
    case OP_OR: return " or ";
    default: return NULL;
    }
}

/* Nodes that only move a value (broadcast, cast, reshape) print as what they move. */
static NodeId through(const Graph *g, NodeId n)
{
    for (;;) {
        const Node *x = graph_node((Graph *)g, n);
        if (x->op != OP_BROADCAST && x->op != OP_CAST && x->op != OP_RESHAPE)
            return n;
        n = x->in[0];
    }
}

static void expr(Explain *x, NodeId n, StrBuf *b, int outer, bool top);

static void leaf_name(Explain *x, NodeId n, StrBuf *b)
{
    const Program *p = x->p;
    const Node *nd = graph_node((Graph *)x->g, n);
    const char *pname = p->params.v[x->param].name;
    if (n == p->params.v[x->param].node) {
        sb_puts(b, "w");
    } else if (n == x->grad) {
        sb_puts(b, "g");
    } else if (nd->op == OP_STATE && nd->name && strncmp(nd->name, pname, strlen(pname)) == 0 &&
               nd->name[strlen(pname)] == '.') {
        sb_puts(b, nd->name + strlen(pname) + 1);
    } else if (nd->op == OP_HYPER) {
        size_t lp = strlen(x->prefix);
        sb_puts(b, strncmp(nd->name, x->prefix, lp) == 0 ? nd->name + lp : nd->name);
    } else if (nd->op == OP_CONST) {
        sb_printf(b, "%.6g", nd->num);
    } else if (nd->name) {
        sb_puts(b, nd->name);
    } else {
        sb_printf(b, "<%%%u>", n); /* computed elsewhere in the step */
    }
}

static void expr(Explain *x, NodeId n, StrBuf *b, int outer, bool top)
{
    n = through(x->g, n);
    const Node *nd = graph_node((Graph *)x->g, n);
    if (!top && x->named[n]) {
        sb_puts(b, x->named[n]);
        return;
    }
    if (!top && x->temp[n]) {
        sb_printf(b, "t%d", x->temp[n]);
        return;
    }
    if (!x->own[n] || nd->nin == 0 || n == x->grad) {
        leaf_name(x, n, b);
        return;
    }
    OpId op = (OpId)nd->op;
    const char *in = infix(op);
    int prec = prec_of(op);
    if (in && nd->nin == 2) {
        bool paren = prec < outer;
        if (paren)
            sb_putc(b, '(');
        /* left-associative: the right operand needs parentheses at equal precedence */
        expr(x, nd->in[0], b, op == OP_POW ? prec + 1 : prec, false);
        sb_puts(b, in);
        expr(x, nd->in[1], b, op == OP_POW ? prec : prec + 1, false);
        if (paren)
            sb_putc(b, ')');
        return;
    }
    if (op == OP_NEG) {
        if (prec < outer)
            sb_putc(b, '(');
        sb_putc(b, '-');
        expr(x, nd->in[0], b, prec, false);
        if (prec < outer)
            sb_putc(b, ')');
        return;
    }
    if (op == OP_SELECT) {
        if (outer > 0)
            sb_putc(b, '(');
        sb_puts(b, "if ");
        expr(x, nd->in[0], b, 0, false);
        sb_puts(b, " then ");
        expr(x, nd->in[1], b, 0, false);
        sb_puts(b, " else ");
        expr(x, nd->in[2], b, 0, false);
        if (outer > 0)
            sb_putc(b, ')');
        return;
    }
    const char *name = op == OP_RMAX ? "max" : op_info[op].name;
    if (op == OP_RSQRT) {
        sb_puts(b, "1 / sqrt(");
        expr(x, nd->in[0], b, 0, false);
        sb_putc(b, ')');
        return;
    }
    sb_printf(b, "%s(", name);
    for (int i = 0; i < nd->nin; i++) {
        if (i)
            sb_puts(b, ", ");
        expr(x, nd->in[i], b, 0, false);
    }
    const Node *arg = graph_node((Graph *)x->g, nd->in[0]);
    if (op_info[op].kind == OPK_REDUCE &&
        nd->mask != (arg->shape.rank ? (1u << arg->shape.rank) - 1 : 0u)) {
        sb_puts(b, ", axis = ");
        int cnt = __builtin_popcount(nd->mask);
        if (cnt > 1)
            sb_putc(b, '[');
        for (int i = 0, k = 0; i < arg->shape.rank; i++)
            if (nd->mask & (1u << i))
                sb_printf(b, "%s%d", k++ ? ", " : "", i);
        if (cnt > 1)
            sb_putc(b, ']');
        if (nd->keep)
            sb_puts(b, ", keepdims = true");
    }
    sb_putc(b, ')');
}

static void count_uses(Explain *x, NodeId n, char *seen)
{
    n = through(x->g, n);
    x->uses[n]++;
    if (seen[n])
        return;
    seen[n] = 1;
    const Node *nd = graph_node((Graph *)x->g, n);
    if (!x->own[n] || n == x->grad)
        return;
    for (int i = 0; i < nd->nin; i++)
        count_uses(x, nd->in[i], seen);
}

/* Numbers a node and, first, the shared ones inside it, printing their lets; the
 * root itself (a new value, printed by the caller) is not given one. */
static void emit_temps(Explain *x, NodeId n, char *done, StrBuf *out, bool root)
{
    n = through(x->g, n);
    if (done[n] || !x->own[n] || n == x->grad || x->named[n])
        return;
    if (!root)
        done[n] = 1;
    const Node *nd = graph_node((Graph *)x->g, n);
    for (int i = 0; i < nd->nin; i++)
        emit_temps(x, nd->in[i], done, out, false);
    if (!root && x->uses[n] > 1 && nd->nin > 0) {
        StrBuf b = {0};
        expr(x, n, &b, 0, true);
        x->temp[n] = ++x->ntemps;
        sb_printf(out, "    let t%d = %s\n", x->temp[n], b.s ? b.s : "");
        sb_free(&b);
    }
}

/* Whether `to` is among the inputs (transitively) of `from`, within the update's own
 * nodes (the backward pass behind g is not searched). */
static bool reaches(const Explain *x, NodeId from, NodeId to, char *seen)
{
    if (from == to)
        return true;
    if (to > from || seen[from] || !x->own[from] || from == x->grad)
        return false; /* inputs come before their users */
    seen[from] = 1;
    const Node *n = graph_node((Graph *)x->g, from);
    for (int i = 0; i < n->nin; i++)
        if (reaches(x, n->in[i], to, seen))
            return true;
    return false;
}

static bool same_shape_as(const Node *a, const Node *w)
{
    return shape_equal(&a->shape, &w->shape);
}

/* One parameter's update as printed: its formulas, and the tensors shaped like w that
 * it reads and writes. */
typedef struct Rendered {
    StrBuf text;
    int reads, writes;
    bool reduces; /* per-tensor reductions, a pass of their own */
} Rendered;

/* The new values of `param` in an order where each comes after those it uses (m'
 * before w' in Adam, w' before its average), printed into r. */
static void render_updates(Explain *x, Rendered *r)
{
    const Program *p = x->p;
    const Graph *g = x->g;
    int count = graph_count((Graph *)g);
    const ParamInfo *pi = &p->params.v[x->param];
    const Node *w = graph_node((Graph *)g, pi->node);
    size_t pl = strlen(pi->name);
    char *seen = xcalloc((size_t)count, 1), *done = xcalloc((size_t)count, 1);
    IntVec mine = {0};
    for (int u = 0; u < p->updates.n; u++) {
        const Update *up = &p->updates.v[u];
        if (up->is_state ? p->states.v[up->index].param == x->param : up->index == x->param) {
            count_uses(x, up->value, seen);
            vec_push(&mine, u);
        }
    }
    char *printed = xcalloc((size_t)(mine.n ? mine.n : 1), 1);
    StrVec names = {0};
    for (int left = mine.n; left > 0;) {
        int pick = -1;
        for (int k = 0; k < mine.n && pick < 0; k++) {
            if (printed[k])
                continue;
            bool ready = true;
            for (int j = 0; j < mine.n && ready; j++) {
                if (j == k || printed[j])
                    continue;
                memset(seen, 0, (size_t)count);
                ready = !reaches(x, through(g, p->updates.v[mine.v[k]].value),
                                 through(g, p->updates.v[mine.v[j]].value), seen);
            }
            if (ready)
                pick = k;
        }
        if (pick < 0) /* a cycle cannot happen; print in order then */
            for (int k = 0; k < mine.n && pick < 0; k++)
                if (!printed[k])
                    pick = k;
        printed[pick] = 1;
        left--;
        const Update *up = &p->updates.v[mine.v[pick]];
        const char *nm = up->is_state ? p->states.v[up->index].name + pl + 1 : "w";
        emit_temps(x, up->value, done, &r->text, true);
        StrBuf b = {0};
        expr(x, up->value, &b, 0, true);
        sb_printf(&r->text, "    %s' = %s\n", nm, b.s ? b.s : "");
        sb_free(&b);
        char *prime = xmalloc(strlen(nm) + 2);
        sprintf(prime, "%s'", nm);
        vec_push(&names, prime);
        x->named[through(g, up->value)] = prime;
        r->writes += same_shape_as(
            graph_node((Graph *)g, up->is_state ? p->states.v[up->index].node : pi->node), w);
    }
    for (int k = 0; k < names.n; k++)
        free((char *)names.v[k]);
    vec_free(&names);
    free(printed);
    vec_free(&mine);
    free(seen);
    free(done);
}

/* Renders the update of `param`, whose group's hyper-parameters are named `prefix`
 * (`opt.`), after `if` on its rank and the like were resolved for it. */
static void render_param(const Program *p, int param, const char *prefix, Rendered *r)
{
    const Graph *g = &p->g;
    int count = graph_count((Graph *)g);
    Explain x = {p,
                 g,
                 param,
                 through(g, p->grads.v[param]),
                 prefix,
                 xcalloc((size_t)count, 1),
                 xcalloc((size_t)count, sizeof(int)),
                 xcalloc((size_t)count, sizeof(int)),
                 xcalloc((size_t)count, sizeof(char *)),
                 0};
    const ParamInfo *pi = &p->params.v[param];
    const Node *w = graph_node((Graph *)g, pi->node);
    /* own: computed from w, g, the parameter's states, hypers and constants only */
    size_t pl = strlen(pi->name);
    for (NodeId n = 1; n < (NodeId)count; n++) {
        const Node *nd = graph_node((Graph *)g, n);
        bool own = true;
        if (n == pi->node || n == x.grad)
            own = true;
        else if (nd->nin == 0)
            own = nd->op == OP_CONST || nd->op == OP_HYPER ||
                  (nd->op == OP_STATE && nd->name && strncmp(nd->name, pi->name, pl) == 0 &&
                   nd->name[pl] == '.');
        else
            for (int i = 0; i < nd->nin; i++)
                own &= x.own[nd->in[i]] != 0;
        x.own[n] = own;
    }
    render_updates(&x, r);
    /* bytes per element of w: tensors shaped like w that are read */
    for (NodeId n = 1; n < (NodeId)count; n++) {
        if (!x.uses[n])
            continue;
        if (n == x.grad) { /* read at w's shape, even where it is a reshaped sum */
            r->reads += same_shape_as(graph_node((Graph *)g, p->grads.v[param]), w);
            continue;
        }
        const Node *nd = graph_node((Graph *)g, n);
        bool leaf = n == pi->node || nd->op == OP_STATE;
        if (leaf && same_shape_as(nd, w))
            r->reads++;
        if (op_info[nd->op].kind == OPK_REDUCE && x.own[n])
            r->reduces = true;
    }
    free(x.named);
    free(x.own);
    free(x.uses);
    free(x.temp);
}

static bool rendered_equal(const Rendered *a, const Rendered *b)
{
    return a->reads == b->reads && a->writes == b->writes && a->reduces == b->reduces &&
           strcmp(a->text.s ? a->text.s : "", b->text.s ? b->text.s : "") == 0;
}

/* Prints the parameters of a group that get the same update (`same` lists them) as
 * one rule, written for the first of them. */
static void print_rule(const Program *p, const OptGroup *og, const IntVec *same, const Rendered *r,
                       FILE *out)
{
    const Graph *g = &p->g;
    const ParamInfo *pi = &p->params.v[same->v[0]];
    const Node *w = graph_node((Graph *)g, pi->node);
    int64_t elems = 0;
    for (int k = 0; k < same->n; k++)
        elems +=
            shape_static_numel(&graph_node((Graph *)g, p->params.v[same->v[k]].node)->shape, NULL);
    char shape[128];
    shape_format((Graph *)g, &w->shape, shape, sizeof shape);
    fprintf(out, "%s = %s, for %s %s", og->path, og->rule, pi->name, shape);
    if (same->n > 1)
        fprintf(out, " (the same for %d more parameter%s)", same->n - 1, same->n > 2 ? "s" : "");
    fprintf(out, ":\n%s", r->text.s ? r->text.s : "");
    int es = (int)nnd_dtype_size((NndDType)w->dtype);
    fprintf(out,
            "    memory: reads %d and writes %d tensors shaped like w: %d bytes per element, "
            "%.1f MB per step for the %lld values of this group%s\n\n",
            r->reads, r->writes, es * (r->reads + r->writes),
            (double)es * (r->reads + r->writes) * (double)elems / 1e6, (long long)elems,
            r->reduces ? "; its per-tensor reductions take a pass of their own first" : "");
}

/* Each group's parameters, sorted by the update they get: the rule may differ by
 * parameter (AdamW decays only matrices unless decay_vectors). */
static void explain_print(const Program *p, FILE *out)
{
    for (int gi = 0; gi < p->groups.n; gi++) {
        const OptGroup *og = &p->groups.v[gi];
        char prefix[256];
        snprintf(prefix, sizeof prefix, "%s.", og->path);
        Rendered *rules = xcalloc((size_t)(p->params.n ? p->params.n : 1), sizeof *rules);
        IntVec *members = xcalloc((size_t)(p->params.n ? p->params.n : 1), sizeof *members);
        int nrules = 0;
        for (int i = 0; i < p->params.n; i++) {
            if (p->params.v[i].group != gi || !p->grads.v[i])
                continue;
            Rendered r = {0};
            render_param(p, i, prefix, &r);
            int k = 0;
            while (k < nrules && !rendered_equal(&rules[k], &r))
                k++;
            if (k == nrules)
                rules[nrules++] = r;
            else
                sb_free(&r.text);
            vec_push(&members[k], i);
        }
        if (nrules == 0)
            fprintf(out, "%s = %s: no trainable parameter\n\n", og->path, og->rule);
        for (int k = 0; k < nrules; k++) {
            print_rule(p, og, &members[k], &rules[k], out);
            sb_free(&rules[k].text);
            vec_free(&members[k]);
        }
        free(rules);
        free(members);
    }
}
static int explain(Program *p, Options *o)
{
    (void)o;
    explain_print(p, stdout);
    return NND_EXIT_OK;
}

int cmd_explain(Options *o) { return cli_on_program(o, false, explain); }
