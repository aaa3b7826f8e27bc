/* program: freeing a Program, loading its data, the roots of its graph. */
#include "program.h"

#include <stdlib.h>
#include <string.h>

#include "nnd_train.h"
#include "parse.h"

/* The rows of t whose flag is set, in order, as a new tensor replacing t. */
static bool keep_rows(NndTensor *t, const bool *keep, int64_t count, NndErr *err)
{
    int64_t shape[NND_MAX_RANK];
    memcpy(shape, t->shape, sizeof shape);
    int64_t n = shape[0];
    shape[0] = count;
    NndTensor out;
    if (nnd_tensor_alloc(&out, t->dtype, t->rank, shape, err) != 0)
        return false;
    size_t row = n ? (size_t)nnd_tensor_numel(t) / (size_t)n * nnd_dtype_size(t->dtype) : 0;
    char *dst = out.data;
    for (int64_t i = 0; i < n; i++)
        if (keep[i]) {
            memcpy(dst, (char *)t->data + (size_t)i * row, row);
            dst += row;
        }
    nnd_tensor_free(t);
    *t = out;
    return true;
}

/* The same for a data set's x and y, x read on demand or loaded. */
static bool keep_samples(DataSet *ds, const bool *keep, int64_t count, NndErr *err)
{
    if (ds->x_rows) {
        if (nnd_rows_keep(ds->x_rows, (const unsigned char *)keep, count, err) != 0)
            return false;
        ds->x.shape[0] = count;
    } else if (!keep_rows(&ds->x, keep, count, err)) {
        return false;
    }
    return keep_rows(&ds->y, keep, count, err);
}

/* Applies a data set's subset to its loaded tensors. */
static bool apply_subset(DataSet *ds, NndErr *err)
{
    int64_t n = ds->y.shape[0], count = 0;
    bool *keep = xcalloc((size_t)(n ? n : 1), 1);
    int32_t *y = ds->y.data;
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < ds->nsubset; j++)
            if (y[i] == ds->subset[j]) {
                keep[i] = true;
                y[i] = j;
                count++;
            }
    bool ok = keep_samples(ds, keep, count, err);
    free(keep);
    return ok;
}

bool program_report_idle(const Program *p, Diags *d, bool training)
{
    if (!p->idle.why)
        return false;
    if (training)
        diag_error(d, p->idle.span, "%s", p->idle.why);
    else
        diag_warning(d, p->idle.span, "%s", p->idle.why);
    if (p->idle.frozen)
        diag_note(d, p->idle.freeze, "the parameters it depends on are frozen here");
    return training;
}

void program_free(Program *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->data.n; i++) {
        nnd_tensor_free(&p->data.v[i].x);
        nnd_rows_free(p->data.v[i].x_rows);
        nnd_tensor_free(&p->data.v[i].y);
    }
    for (int i = 0; i < p->evals.n; i++)
        vec_free(&p->evals.v[i].metrics);
    vec_free(&p->step_outputs);
    for (int i = 0; i < p->params.n; i++)
        nnd_tensor_free(&p->params.v[i].loaded);
    for (int i = 0; i < p->states.n; i++)
        nnd_tensor_free(&p->states.v[i].loaded);
    vec_free(&p->params);
    vec_free(&p->states);
    vec_free(&p->hypers);
    vec_free(&p->data);
    vec_free(&p->groups);
    vec_free(&p->grads);
    vec_free(&p->updates);
    vec_free(&p->accum_updates);
    vec_free(&p->apply_updates);
    vec_free(&p->apply_outputs);
    vec_free(&p->evals);
    graph_free(&p->g);
    ast_module_free(p->opt_ast);
    arena_free(&p->arena);
    free(p);
}

/* A data set's split: the part [from, to) of a permutation of its samples drawn
 * from the program's seed, kept in file order. */
static bool apply_split(DataSet *ds, uint64_t seed, NndErr *err)
{
    int64_t n = ds->x.shape[0];
    int64_t lo = (int64_t)((double)n * ds->from), hi = (int64_t)((double)n * ds->to);
    uint32_t *perm = xcalloc((size_t)(n ? n : 1), sizeof(uint32_t));
    bool *keep = xcalloc((size_t)(n ? n : 1), 1);
    nnd_random_permutation(perm, (uint32_t)n, seed, 0x5b117ull << 32);
    for (int64_t i = lo; i < hi; i++)
        keep[perm[i]] = true;
    bool ok = keep_samples(ds, keep, hi - lo, err);
    free(perm);
    free(keep);
    ds->split_done = ok;
    return ok;
}

bool program_load_dataset(Program *p, int i, Diags *d)
{
    DataSet *ds = &p->data.v[i];
    if ((ds->x.data || ds->x_rows) && (!ds->split || ds->split_done))
        return true;
    if (ds->x.data) { /* csv and tensors: read while elaborating */
        NndErr err;
        if (!apply_split(ds, p->seed, &err)) {
            diag_error(d, ds->span, "%s", err.msg);
            return false;
        }
        return true;
    }
    NndLoadOptions lo = {ds->scale, p->float_dtype};
    NndErr err;
    int rc = 0;
    /* Features as rows converted on demand (ranks read their parts of the batches
     * from a mapped file; a gzip image set is held as its u8 pixels); each rank
     * evaluates the whole evaluation set. */
    bool map = p->rows_data || (p->distributed && i == p->train_data);
    /* labels may be loaded already (subset) */
    if (ds->kind == DATA_IDX)
        rc = (map ? nnd_idx_map(ds->path_x, NND_FEATURES, &lo, &ds->x, &ds->x_rows, &err)
                  : nnd_idx_load(ds->path_x, NND_FEATURES, &lo, &ds->x, &err)) ||
             (!ds->y.data && nnd_idx_load(ds->path_y, NND_LABELS, &lo, &ds->y, &err));
    else if (ds->kind == DATA_NPY)
        rc = (map ? nnd_npy_map(ds->path_x, NND_FEATURES, &lo, &ds->x, &ds->x_rows, &err)
                  : nnd_npy_load(ds->path_x, NND_FEATURES, &lo, &ds->x, &err)) ||
             (!ds->y.data && nnd_npy_load(ds->path_y, NND_LABELS, &lo, &ds->y, &err));
    else if (ds->kind == DATA_TEXT)
        rc = nnd_text_load(ds->paths, ds->npaths, ds->from, ds->to, &ds->x, &err);
    if (!rc && ds->nsubset && !apply_subset(ds, &err))
        rc = 1;
    if (!rc && ds->split && !apply_split(ds, p->seed, &err))
        rc = 1;
    if (!rc && ds->limit > 0 && ds->limit < ds->x.shape[0]) {
        bool *keep = xcalloc((size_t)ds->x.shape[0], 1);
        memset(keep, 1, (size_t)ds->limit);
        if (!keep_samples(ds, keep, ds->limit, &err))
            rc = 1;
        free(keep);
    }
    if (rc) {
        diag_error(d, ds->span, "%s", err.msg);
        return false;
    }
    if (ds->reshape_rank >= 0) {
        ds->x.rank = ds->reshape_rank + 1;
        for (int k = 0; k < ds->reshape_rank; k++)
            ds->x.shape[k + 1] = ds->reshape[k];
    }
    NndDataSet v = dataset_view(ds);
    if (nnd_dataset_count(&v) != ds->n || (!ds->window && ds->y.shape[0] != ds->n)) {
        diag_error(d, ds->span, "data set '%s' changed while loading", ds->name);
        return false;
    }
    return true;
}

bool program_load_data(Program *p, Diags *d)
{
    bool ok = true;
    for (int i = 0; i < p->data.n; i++)
        ok &= program_load_dataset(p, i, d);
    return ok;
}

void program_roots(Program *p, NodeRefVec *out)
{
    vec_push(out, &p->x);
    vec_push(out, &p->y);
    vec_push(out, &p->loss);
    vec_push(out, &p->forward);
    for (int i = 0; i < p->params.n; i++) {
        vec_push(out, &p->params.v[i].node);
        vec_push(out, &p->params.v[i].init);
        vec_push(out, &p->grads.v[i]);
    }
    for (int i = 0; i < p->states.n; i++) {
        vec_push(out, &p->states.v[i].node);
        vec_push(out, &p->states.v[i].init);
    }
    for (int i = 0; i < p->updates.n; i++)
        vec_push(out, &p->updates.v[i].value);
    for (int i = 0; i < p->accum_updates.n; i++)
        vec_push(out, &p->accum_updates.v[i].value);
    for (int i = 0; i < p->apply_updates.n; i++)
        vec_push(out, &p->apply_updates.v[i].value);
    for (int i = 0; i < p->apply_outputs.n; i++)
        vec_push(out, &p->apply_outputs.v[i]);
    for (int i = 0; i < p->evals.n; i++)
        for (int k = 0; k < p->evals.v[i].metrics.n; k++)
            vec_push(out, &p->evals.v[i].metrics.v[k].node);
    for (int i = 0; i < p->step_outputs.n; i++)
        vec_push(out, &p->step_outputs.v[i].node);
}

void program_step_roots(const Program *p, NodeVec *out)
{
    vec_push(out, p->loss);
    for (int i = 0; i < p->step_outputs.n; i++)
        vec_push(out, p->step_outputs.v[i].node);
    for (int i = 0; i < p->updates.n; i++)
        vec_push(out, p->updates.v[i].value);
}

double *program_hyper_values(const Program *p)
{
    double *h = xcalloc((size_t)(p->hypers.n ? p->hypers.n : 1), sizeof(double));
    for (int i = 0; i < p->hypers.n; i++)
        h[i] = p->hypers.v[i].value;
    return h;
}

int64_t program_steps_per_epoch(const Program *p)
{
    return nnd_train_steps_per_epoch(p->data.v[p->train_data].n, p->batch, p->accumulate,
                                     p->drop_last);
}

int64_t program_total_steps(const Program *p)
{
    return p->steps > 0 ? p->steps : p->epochs * program_steps_per_epoch(p);
}

NndDataSet dataset_view(const DataSet *ds)
{
    return (NndDataSet){.name = ds->name,
                        .x = &ds->x,
                        .y = &ds->y,
                        .window = ds->window,
                        .stride = ds->stride,
                        .augment = ds->augmented ? &ds->augment : NULL,
                        .x_rows = ds->x_rows};
}

void dataset_gather(const DataSet *ds, const uint32_t *idx, int64_t b, char **bx, char **by)
{
    NndDataSet v = dataset_view(ds);
    size_t rx, ry;
    nnd_dataset_sample_bytes(&v, &rx, &ry);
    *bx = xmalloc(rx * (size_t)b + 8);
    *by = xmalloc(ry * (size_t)b + 8);
    nnd_dataset_gather(&v, idx, b, *bx, *by);
}

uint64_t program_node_hash(const Graph *g, NodeId id, const uint64_t *memo, bool by_name)
{
    const Node *n = &g->nodes.v[id];
    bool named = n->op == OP_PARAM || n->op == OP_STATE || n->op == OP_HYPER;
    uint64_t h = 0xcbf29ce484222325ull;
    int64_t f[8] = {n->op,
                    n->dtype,
                    n->nin,
                    n->keep | n->ta << 1 | n->tb << 2,
                    named && by_name ? 0 : n->idx,
                    n->mask,
                    (int64_t)n->key,
                    n->shape.rank};
    h = fnv1a(h, f, sizeof f);
    h = fnv1a(h, n->shape.d, sizeof(int64_t) * (size_t)n->shape.rank);
    h = fnv1a(h, &n->num, sizeof n->num);
    if (named)
        h = fnv1a_str(h, n->name);
    if (n->op == OP_TENSOR)
        h = fnv1a(h, &g->fpool.v[n->pool],
                  sizeof(double) * (size_t)shape_static_numel(&n->shape, NULL));
    else
        h = fnv1a(h, &g->ipool.v[n->pool], sizeof(int64_t) * (size_t)graph_pool_len(n));
    for (int i = 0; i < n->nin; i++)
        h = fnv1a(h, &memo[n->in[i]], sizeof(uint64_t));
    return h;
}

uint64_t program_fingerprint(const Program *p)
{
    const Graph *g = &p->g;
    uint64_t *memo = xcalloc((size_t)graph_count(g), sizeof(uint64_t));
    int64_t settings[7] = {p->float_dtype, (int64_t)p->seed,           p->batch,
                           p->accumulate,  p->data.v[p->train_data].n, p->shuffle,
                           p->drop_last};
    uint64_t h = fnv1a(0xcbf29ce484222325ull, settings, sizeof settings);
    for (int i = 0; i < p->params.n; i++)
        h = fnv1a_str(h, p->params.v[i].name);
    for (int i = 0; i < p->states.n; i++)
        h = fnv1a_str(h, p->states.v[i].name);
    /* the nodes the updates read, hashed in id order: inputs before their users */
    NodeVec roots = {0};
    for (int i = 0; i < p->updates.n; i++)
        vec_push(&roots, p->updates.v[i].value);
    for (int i = 0; i < p->accum_updates.n; i++)
        vec_push(&roots, p->accum_updates.v[i].value);
    bool *live = xcalloc((size_t)graph_count(g), 1);
    graph_mark_live((Graph *)g, roots.v, roots.n, live);
    for (int id = 1; id < graph_count(g); id++)
        if (live[id])
            memo[id] = program_node_hash(g, (NodeId)id, memo, false);
    free(live);
    vec_free(&roots);
    for (int pass = 0; pass < 2; pass++) {
        const Update *u = pass ? p->accum_updates.v : p->updates.v;
        int n = pass ? p->accum_updates.n : p->updates.n;
        for (int i = 0; i < n; i++) {
            uint64_t hv[3] = {(uint64_t)u[i].is_state, (uint64_t)u[i].index, memo[u[i].value]};
            h = fnv1a(h, hv, sizeof hv);
        }
    }
    free(memo);
    return h;
}

const char *program_batch_statistic(const Program *p)
{
    const Graph *g = &p->g;
    int count = graph_count(g);
    bool *live = xcalloc((size_t)count, 1);
    const char *found = NULL;
    for (int u = 0; u < p->updates.n && !found; u++) {
        const Update *up = &p->updates.v[u];
        if (!up->is_state || p->states.v[up->index].param >= 0)
            continue; /* optimizer state: per parameter, not per batch */
        memset(live, 0, (size_t)count);
        graph_mark_live((Graph *)g, &up->value, 1, live);
        for (int id = 1; id < count && !found; id++) {
            const Node *n = &g->nodes.v[id];
            if (!live[id] || (n->op != OP_SUM && n->op != OP_MEAN))
                continue;
            /* a sum or mean over the batch axis: how many values it takes per
             * output element when the batch holds one sample */
            const Shape *in = &g->nodes.v[n->in[0]].shape;
            bool over_batch = false;
            int64_t values = 1;
            for (int k = 0; k < in->rank; k++)
                if (n->mask & (1u << k)) {
                    over_batch |= in->d[k] == p->sym_batch;
                    values *= in->d[k] < 0 ? 1 : in->d[k];
                }
            if (over_batch && values == 1)
                found = p->states.v[up->index].name;
        }
    }
    free(live);
    return found;
}
