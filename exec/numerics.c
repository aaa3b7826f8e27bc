#include "numerics.h"

#include <math.h>
#include <stdlib.h>

/* "fc1.W, fc1.b and 3 more": the parameters marked in set (the last ones first when
 * last_first: the layers nearest the output); how many there are. */
static int param_list(const Program *p, const bool *set, bool last_first, StrBuf *b)
{
    int total = 0;
    for (int k = 0; k < p->params.n; k++) {
        int i = last_first ? p->params.n - 1 - k : k;
        if (set[i] && total++ < 4)
            sb_printf(b, "%s%s", total > 1 ? ", " : "", p->params.v[i].name);
    }
    if (total > 4)
        sb_printf(b, " and %d more", total - 4);
    return total;
}

void numerics_report(Program *p, Diags *d, const NndTrainResult *res)
{
    Graph *g = &p->g;
    int count = graph_count(g);
    if (res->bad_node <= 0 || res->bad_node >= count)
        return;
    NodeId bad = (NodeId)res->bad_node;
    Node *n = graph_node(g, bad);
    /* node ids are in graph order: what the bad node is computed from (up), and what
     * is computed from it (down), in one pass each */
    bool *up = xcalloc((size_t)count, 1), *down = xcalloc((size_t)count, 1);
    up[bad] = down[bad] = true;
    for (int id = bad; id > 0; id--)
        for (int i = 0; up[id] && i < graph_node(g, (NodeId)id)->nin; i++)
            up[graph_node(g, (NodeId)id)->in[i]] = true;
    for (int id = bad + 1; id < count; id++) {
        Node *m = graph_node(g, (NodeId)id);
        for (int i = 0; i < m->nin && !down[id]; i++)
            down[id] = down[m->in[i]];
    }
    int np = p->params.n ? p->params.n : 1;
    bool *reads = xcalloc((size_t)np, 1), *fed = xcalloc((size_t)np, 1);
    bool data = false;
    for (int id = 1; id <= (int)bad; id++) {
        Node *m = graph_node(g, (NodeId)id);
        if (!up[id] || (m->op != OP_PARAM && m->op != OP_STATE && m->op != OP_INPUT))
            continue;
        data = true;
        if (m->op == OP_PARAM && m->idx >= 0 && m->idx < p->params.n)
            reads[m->idx] = true;
    }
    for (int u = 0; u < p->updates.n; u++) {
        const Update *upd = &p->updates.v[u];
        int pi = upd->is_state ? p->states.v[upd->index].param : upd->index;
        if (pi >= 0 && down[upd->value])
            fed[pi] = true;
    }
    const char *phase = "the forward pass";
    switch ((Phase)n->phase) {
    case PHASE_BACKWARD: phase = "the backward pass"; break;
    case PHASE_UPDATE: phase = "the update rule"; break;
    case PHASE_STATS: phase = "a logged statistic"; break;
    default:
        if (!data)
            phase = "the hyper-parameters (a schedule or a constant)";
        break;
    }
    char value[32];
    snprintf(value, sizeof value, "%s",
             isnan(res->bad_value) ? "NaN"
             : res->bad_value > 0  ? "+inf"
                                   : "-inf");
    int di = diag_error(d, n->span, "step %lld: '%s' made %s in %s (%lld value%s not finite)",
                        (long long)res->steps, op_info[n->op].name, value, phase,
                        (long long)res->bad_count, res->bad_count == 1 ? " is" : "s are");
    diag_label(d, di, "the first op to make NaN or Inf: its inputs were finite");
    StrBuf b = {0};
    if (n->phase == PHASE_BACKWARD || n->phase == PHASE_UPDATE) {
        if (param_list(p, fed, false, &b))
            diag_note(d, span_none(), "%s %s",
                      n->phase == PHASE_UPDATE ? "in the update of" : "it feeds the updates of",
                      b.s);
    } else if (n->phase == PHASE_FORWARD) {
        if (param_list(p, reads, true, &b))
            diag_note(d, span_none(), "it is computed from the parameters %s", b.s);
    }
    sb_free(&b);
    diag_note(d, span_none(),
              "training stopped at step %lld (epoch %lld); checkpoints of earlier steps are kept, "
              "none is written for this one",
              (long long)res->steps, (long long)res->bad_epoch + 1);
    free(up);
    free(down);
    free(reads);
    free(fed);
}
