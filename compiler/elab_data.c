/* elab_data: `data` statements: where a data set comes from and what its samples are. */
#include <stdlib.h>
#include <string.h>

#include "elab_internal.h"
#include "interp.h"

/* A data path relative to the .nnd file, in the program's arena.  It is joined to
 * the file's path as the user gave it, so messages show paths as they were written. */
static const char *resolve_path(Elab *e, Module *m, const char *path)
{
    const SourceFile *f = source_map_get(&e->fe->sm, m->file);
    const char *base = f ? f->path : m->path;
    const char *slash = strrchr(base, '/');
    if (path[0] == '/' || !slash)
        return arena_strdup(&e->p->arena, path);
    return arena_printf(&e->p->arena, "%.*s/%s", (int)(slash - base), base, path);
}

static void tensor_shape_to(const NndTensor *t, int *rank, int64_t *shape)
{
    *rank = t->rank - 1;
    for (int i = 1; i < t->rank; i++)
        shape[i - 1] = t->shape[i];
}

/* Fills a data set's per-sample shapes from the files' headers (or the data).
 * span_x and span_y are where the inputs' and the labels' files are named. */
static bool data_describe(Elab *e, DataSet *ds, Span span, Span span_x, Span span_y)
{
    NndLoadOptions lo = {ds->scale, e->p->float_dtype};
    NndTensor x = {0}, y = {0};
    NndErr err;
    bool ok = true;
    switch (ds->kind) {
    case DATA_IDX:
        ok = nnd_idx_probe(ds->path_x, NND_FEATURES, &lo, &x, &err) == 0;
        if (ok && nnd_idx_probe(ds->path_y, NND_LABELS, &lo, &y, &err) != 0)
            ok = false, span_x = span_y;
        break;
    case DATA_NPY:
        ok = nnd_npy_probe(ds->path_x, NND_FEATURES, &lo, &x, &err) == 0;
        if (ok && nnd_npy_probe(ds->path_y, NND_LABELS, &lo, &y, &err) != 0)
            ok = false, span_x = span_y;
        break;
    case DATA_CSV:
        ok = nnd_csv_load(ds->path_x, ds->label, ds->classes, &lo, &ds->x, &ds->y, &err) == 0;
        x = ds->x;
        y = ds->y;
        break;
    case DATA_TENSORS:
        x = ds->x;
        y = ds->y;
        break;
    }
    if (!ok) {
        el_error(e, span_x, "%s", err.msg);
        return false;
    }
    if (x.rank < 1 || y.rank < 1) {
        el_error(e, span, "a data set needs at least one sample axis");
        return false;
    }
    if (x.shape[0] != y.shape[0]) {
        el_error(e, span, "the data set's inputs have %lld samples but its labels %lld",
                 (long long)x.shape[0], (long long)y.shape[0]);
        return false;
    }
    ds->n = x.shape[0];
    ds->x_dtype = x.dtype;
    ds->y_dtype = y.dtype;
    tensor_shape_to(&x, &ds->x_rank, ds->x_shape);
    tensor_shape_to(&y, &ds->y_rank, ds->y_shape);
    if (ds->reshape_rank >= 0) {
        Shape hs = shape_make(ds->x_rank, ds->x_shape),
              ws = shape_make(ds->reshape_rank, ds->reshape);
        if (shape_static_numel(&hs, NULL) != shape_static_numel(&ws, NULL) ||
            shape_static_numel(&ws, NULL) > GRAPH_MAX_NUMEL) {
            el_error(e, span, "cannot reshape samples of shape %s to %s", el_shape_str(e, &hs),
                     el_shape_str(e, &ws));
            return false;
        }
        ds->x_rank = ds->reshape_rank;
        memcpy(ds->x_shape, ds->reshape, sizeof ds->reshape);
    }
    if (ds->n < 1) {
        el_error(e, span, "the data set is empty");
        return false;
    }
    return true;
}

/* subset = [5, 6, 7]: keeps the samples labeled 5, 6 or 7 and relabels them 0, 1, 2.
 * The labels are read now, to know how many samples there are. */
static bool data_subset(Elab *e, DataSet *ds, Value *v, Span span)
{
    if (v->k != V_LIST || v->list->n < 1) {
        el_error(e, span, "subset takes a list of class labels, like [5, 6, 7, 8, 9]");
        return false;
    }
    if (ds->y_dtype != NND_I32 || ds->y_rank != 0) {
        el_error(e, span, "subset needs integer class labels, one per sample");
        return false;
    }
    ds->nsubset = v->list->n;
    ds->subset = arena_alloc(&e->p->arena, sizeof(int32_t) * (size_t)ds->nsubset);
    for (int i = 0; i < ds->nsubset; i++) {
        int64_t c;
        if (!el_to_int(e, v->list->v[i], span, "a class label", &c))
            return false;
        for (int j = 0; j < i; j++)
            if (ds->subset[j] == c) {
                el_error(e, span, "class %lld is listed twice", (long long)c);
                return false;
            }
        ds->subset[i] = (int32_t)c;
    }
    NndLoadOptions lo = {ds->scale, e->p->float_dtype};
    NndErr err;
    int rc = ds->kind == DATA_IDX ? nnd_idx_load(ds->path_y, NND_LABELS, &lo, &ds->y, &err)
                                  : nnd_npy_load(ds->path_y, NND_LABELS, &lo, &ds->y, &err);
    if (rc) {
        el_error(e, span, "%s", err.msg);
        return false;
    }
    int64_t count = 0;
    for (int64_t i = 0; i < ds->n; i++)
        for (int j = 0; j < ds->nsubset; j++)
            count += ((int32_t *)ds->y.data)[i] == ds->subset[j];
    if (count == 0) {
        el_error(e, span, "no sample has one of these labels");
        return false;
    }
    ds->n = count;
    return true;
}

/* tensors(x = ..., y = ...): literal data evaluated now. */
static bool data_literal(Elab *e, Value v, Span span, bool labels, NndTensor *out)
{
    NodeId n = el_to_node(e, v, span);
    if (!n)
        return false;
    if (el_depends_on_data(e, n)) {
        el_error(e, span, "data must be known at compile time");
        return false;
    }
    if (!labels && !dtype_is_float(nd(e, n)->dtype))
        n = gb_cast(e->g, n, e->p->float_dtype, span);
    ITensor t;
    char err[256];
    DoubleVec hv = {0};
    for (int i = 0; i < e->p->hypers.n; i++)
        vec_push(&hv, e->p->hypers.v[i].value);
    bool ok = interp_eval_const(e->g, n, hv.v, hv.n, &t, err, sizeof err);
    vec_free(&hv);
    if (!ok) {
        el_error(e, span, "%s", err);
        return false;
    }
    if (t.rank < 1) {
        itensor_free(&t);
        el_error(e, span, "data needs a sample axis: a list of samples");
        return false;
    }
    NndDType dt = t.dtype == NND_BOOL ? NND_I32 : t.dtype;
    NndErr nerr;
    if (nnd_tensor_alloc(out, dt, t.rank, t.shape, &nerr) != 0) {
        itensor_free(&t);
        el_error(e, span, "%s", nerr.msg);
        return false;
    }
    for (int64_t i = 0; i < t.n; i++) {
        if (dt == NND_F32)
            ((float *)out->data)[i] = (float)t.v[i];
        else if (dt == NND_F64)
            ((double *)out->data)[i] = t.v[i];
        else
            ((int32_t *)out->data)[i] = (int32_t)t.v[i];
    }
    itensor_free(&t);
    return true;
}

void el_data(Elab *e, Scope *s, Module *m, const Ast *st)
{
    DataSet ds = {0};
    ds.name = st->name;
    ds.span = st->span;
    ds.scale = 1;
    ds.reshape_rank = -1;
    const Ast *src = st->a;
    int id = src->kind == AST_CALL && src->a->kind == AST_NAME ? builtin_find(src->a->name) : -1;
    if (id < 0 || builtin_info[id].ctx != BCTX_DATA) {
        el_error(e, src->span,
                 "a data set comes from idx(...), csv(...), npy(...) or tensors(...)");
        return;
    }
    Args a;
    if (!el_eval_args(e, s, &src->list, &a, NULL))
        return;
    for (int i = 0; i < a.n; i++)
        if (a.kw[i]) {
            bool found = false;
            for (int j = 0; j < builtin_info[id].nparams; j++)
                found |= strcmp(builtin_info[id].params[j], a.kw[i]) == 0;
            if (!found) {
                el_error(e, a.span[i], "'%s' has no parameter '%s'", builtin_info[id].name,
                         a.kw[i]);
                return;
            }
        }
    for (int i = 0; i < builtin_info[id].required; i++)
        if (!el_barg(&a, id, i)) {
            el_error(e, src->span, "missing argument '%s'", builtin_info[id].params[i]);
            return;
        }
    Value *scale = NULL, *shape = NULL;
    bool ok = true;
    switch ((BuiltinId)id) {
    case BI_IDX:
    case BI_NPY:
        ds.kind = id == BI_IDX ? DATA_IDX : DATA_NPY;
        ok = el_str_arg(e, el_barg(&a, id, 0), el_bspan(&a, id, 0, src->span), "the inputs' path",
                        &ds.path_x) &&
             el_str_arg(e, el_barg(&a, id, 1), el_bspan(&a, id, 1, src->span), "the labels' path",
                        &ds.path_y);
        scale = el_barg(&a, id, 2);
        shape = el_barg(&a, id, 3);
        if (ok) {
            ds.path_x = resolve_path(e, m, ds.path_x);
            ds.path_y = resolve_path(e, m, ds.path_y);
        }
        break;
    case BI_CSV: {
        ds.kind = DATA_CSV;
        ok = el_str_arg(e, el_barg(&a, id, 0), el_bspan(&a, id, 0, src->span), "the path",
                        &ds.path_x) &&
             el_str_arg(e, el_barg(&a, id, 1), el_bspan(&a, id, 1, src->span), "the label column",
                        &ds.label) &&
             el_bool_arg(e, el_barg(&a, id, 2), src->span, "classes", false, &ds.classes);
        scale = el_barg(&a, id, 3);
        if (ok)
            ds.path_x = resolve_path(e, m, ds.path_x);
        if (ok && ds.label)
            ds.label = arena_strdup(&e->p->arena, ds.label);
        break;
    }
    case BI_TENSORS:
        ds.kind = DATA_TENSORS;
        ok = data_literal(e, *el_barg(&a, id, 0), el_bspan(&a, id, 0, src->span), false, &ds.x) &&
             data_literal(e, *el_barg(&a, id, 1), el_bspan(&a, id, 1, src->span), true, &ds.y);
        break;
    default: ok = false; break;
    }
    if (ok && scale)
        ok = el_to_number(e, *scale, src->span, "scale", &ds.scale);
    if (ok && shape) {
        Shape sh;
        ok = el_to_shape(e, *shape, src->span, "the sample shape", &sh, NULL);
        if (ok) {
            ds.reshape_rank = sh.rank;
            memcpy(ds.reshape, sh.d, sizeof sh.d);
        }
    }
    if (ok)
        ok = data_describe(e, &ds, src->span, el_bspan(&a, id, 0, src->span),
                           id == BI_CSV ? src->span : el_bspan(&a, id, 1, src->span));
    Value *sub = (id == BI_IDX || id == BI_NPY) ? el_barg(&a, id, 4) : NULL;
    if (ok && sub)
        ok = data_subset(e, &ds, sub, el_bspan(&a, id, 4, src->span));
    Value *lim = (id == BI_IDX || id == BI_NPY) ? el_barg(&a, id, 5) : NULL;
    if (ok && lim) {
        ok = el_to_int(e, *lim, el_bspan(&a, id, 5, src->span), "limit", &ds.limit);
        if (ok && ds.limit < 1) {
            el_error(e, el_bspan(&a, id, 5, src->span), "limit must be at least 1");
            ok = false;
        }
        if (ok && ds.limit < ds.n)
            ds.n = ds.limit;
    }
    if (!ok) {
        nnd_tensor_free(&ds.x);
        nnd_tensor_free(&ds.y);
        return;
    }
    vec_push(&e->p->data, ds);
}
