/* elab_data: `data` statements: where a data set comes from and what its samples are. */
#define _POSIX_C_SOURCE 200809L
#include <fnmatch.h>
#include <glob.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
    case DATA_TEXT: /* described by data_text */
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

/* Whether a file's name matches one of text()'s `exclude` patterns. */
static bool text_excluded(const char *path, const Value *exclude)
{
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    for (int i = 0; exclude && i < exclude->list->n; i++)
        if (exclude->list->v[i].k == V_STR && fnmatch(exclude->list->v[i].str, base, 0) == 0)
            return true;
    return false;
}

/* One path of text(): a file, or a pattern (a directory and "*") whose matches, sorted, are
 * added less those `exclude` names and the empty ones (a `.gitkeep` beside the texts:
 * a warning counts them; an empty file named on its own is an error, when read). */
static bool text_add_path(Elab *e, Module *m, const char *path, const Value *exclude, Span span,
                          StrVec *out)
{
    const char *full = resolve_path(e, m, path);
    if (!strpbrk(path, "*?[")) {
        vec_push(out, full);
        return true;
    }
    glob_t g;
    int rc = glob(full, 0, NULL, &g);
    int before = out->n, empty = 0;
    for (size_t i = 0; rc == 0 && i < g.gl_pathc; i++) {
        struct stat st;
        if (text_excluded(g.gl_pathv[i], exclude))
            continue;
        if (stat(g.gl_pathv[i], &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0)
            empty++;
        else
            vec_push(out, arena_strdup(&e->p->arena, g.gl_pathv[i]));
    }
    globfree(&g);
    if (out->n == before) {
        if (empty)
            el_error(e, span, "only empty files match '%s'%s", full,
                     exclude ? " (less those excluded)" : "");
        else
            el_error(e, span, "no file matches '%s'%s", full,
                     exclude ? " (less those excluded)" : "");
        return false;
    }
    if (empty)
        diag_warning(e->d, span, "'%s' matches %d empty file%s, left out", full, empty,
                     empty == 1 ? "" : "s");
    return true;
}

/* split = [from, to]: fractions with 0 <= from < to <= 1, into ds->from, ds->to. */
static bool split_arg(Elab *e, Value *v, Span span, const char *of, DataSet *ds)
{
    double from = 0, to = 0;
    bool ok =
        v->k == V_LIST && v->list->n == 2 && v->list->v[0].k == V_NUM && v->list->v[1].k == V_NUM;
    if (ok) {
        from = v->list->v[0].num;
        to = v->list->v[1].num;
        ok = from >= 0 && from < to && to <= 1;
    }
    if (!ok) {
        el_error(e, span,
                 "split takes [from, to], fractions of the %s with 0 <= from < to <= 1, like "
                 "[0.9, 1]",
                 of);
        return false;
    }
    ds->from = from;
    ds->to = to;
    return true;
}

/* split = [from, to] of a sample data set: how many samples its part holds (the
 * samples themselves are chosen when it is loaded, program_load_dataset). */
static bool data_split(Elab *e, DataSet *ds, Value *v, Span span)
{
    if (!split_arg(e, v, span, "samples", ds))
        return false;
    int64_t lo = (int64_t)((double)ds->n * ds->from), hi = (int64_t)((double)ds->n * ds->to);
    if (hi - lo < 1) {
        el_error(e, span, "the split [%g, %g] of %lld samples holds none", ds->from, ds->to,
                 (long long)ds->n);
        return false;
    }
    if (ds->n > UINT32_MAX) {
        el_error(e, span, "split: more than 2^32 samples");
        return false;
    }
    ds->split = true;
    ds->n = hi - lo;
    return true;
}

/* text(path or [paths], context = T, split = [from, to], stride = 1, exclude = [...]):
 * the files' bytes as tokens, in windows of T (data set x) and the same windows one
 * byte later (y). */
static bool data_text(Elab *e, Module *m, Args *a, Span span, DataSet *ds)
{
    int id = BI_TEXT;
    Value *path = el_barg(a, id, 0), *split = el_barg(a, id, 2), *stride = el_barg(a, id, 3),
          *exclude = el_barg(a, id, 4);
    Span ps = el_bspan(a, id, 0, span);
    if (exclude && (exclude->k != V_LIST || exclude->list->n < 1)) {
        el_error(e, el_bspan(a, id, 4, span),
                 "exclude takes a list of name patterns, like "
                 "[\"*.dat\"]");
        return false;
    }
    StrVec paths = {0};
    bool ok = true;
    if (path->k == V_LIST) {
        const char *pi;
        for (int i = 0; ok && i < path->list->n; i++)
            ok = el_str_arg(e, &path->list->v[i], ps, "a path", &pi) &&
                 text_add_path(e, m, pi, exclude, ps, &paths);
    } else {
        const char *p0;
        ok = el_str_arg(e, path, ps, "the path", &p0) &&
             text_add_path(e, m, p0, exclude, ps, &paths);
    }
    /* exclude thins out a pattern's matches; a file named outright is meant */
    bool pattern = false;
    for (int i = 0; path->k == V_LIST && i < path->list->n; i++)
        pattern |= path->list->v[i].k == V_STR && strpbrk(path->list->v[i].str, "*?[");
    if (ok && exclude && !(pattern || (path->k == V_STR && strpbrk(path->str, "*?[")))) {
        el_error(e, el_bspan(a, id, 4, span),
                 "exclude applies to the files a pattern matches, and no path here is a pattern");
        ok = false;
    }
    ds->kind = DATA_TEXT;
    ds->from = 0;
    ds->to = 1;
    ds->stride = 1;
    ok = ok && el_to_int(e, *el_barg(a, id, 1), el_bspan(a, id, 1, span), "context", &ds->window);
    if (ok && split)
        ok = split_arg(e, split, el_bspan(a, id, 2, span), "bytes", ds);
    if (ok && stride)
        ok = el_to_int(e, *stride, el_bspan(a, id, 3, span), "stride", &ds->stride);
    if (ok && (ds->window < 1 || ds->stride < 1 || ds->window > GRAPH_MAX_NUMEL)) {
        el_error(e, span, "context and stride must be at least 1");
        ok = false;
    }
    int64_t total = 0;
    NndErr err;
    if (ok && nnd_text_size((const char *const *)paths.v, paths.n, &total, &err) != 0) {
        el_error(e, ps, "%s", err.msg);
        ok = false;
    }
    int64_t len = (int64_t)((double)total * ds->to) - (int64_t)((double)total * ds->from);
    if (ok && len <= ds->window) {
        el_error(e, span, "%s: the split holds %lld byte%s, not more than the context (%lld)",
                 paths.v[0], (long long)len, len == 1 ? "" : "s", (long long)ds->window);
        ok = false;
    }
    if (ok) {
        ds->npaths = paths.n;
        ds->paths = arena_alloc(&e->p->arena, sizeof(char *) * (size_t)paths.n);
        memcpy(ds->paths, paths.v, sizeof(char *) * (size_t)paths.n);
        ds->path_x = ds->paths[0];
        ds->n = (len - ds->window - 1) / ds->stride + 1;
        ds->x_dtype = ds->y_dtype = NND_I32;
        ds->x_rank = ds->y_rank = 1;
        ds->x_shape[0] = ds->y_shape[0] = ds->window;
    }
    vec_free(&paths);
    return ok;
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

/* flip = true, crop = p, noise = s (arguments 7, 8, 9 of idx and npy): image
 * augmentation of float samples [H, W] or [C, H, W]. */
static bool data_augment(Elab *e, DataSet *ds, Args *a, int id, Span span)
{
    Value *flip = el_barg(a, id, 7), *crop = el_barg(a, id, 8), *noise = el_barg(a, id, 9);
    if (!flip && !crop && !noise)
        return true;
    bool f = false;
    int64_t p = 0;
    double sd = 0;
    if ((flip && !el_bool_arg(e, flip, el_bspan(a, id, 7, span), "flip", false, &f)) ||
        (crop && !el_to_int(e, *crop, el_bspan(a, id, 8, span), "crop", &p)) ||
        (noise && !el_to_number(e, *noise, el_bspan(a, id, 9, span), "noise", &sd)))
        return false;
    int r = ds->x_rank;
    if (r < 2 || r > 3 || !dtype_is_float(ds->x_dtype)) {
        el_error(e, span,
                 "flip, crop and noise change images: samples [H, W] or [C, H, W] of "
                 "floats (give shape = [1, 28, 28]), not %d-D %s",
                 r, dtype_name(ds->x_dtype));
        return false;
    }
    int64_t h = ds->x_shape[r - 2], w = ds->x_shape[r - 1];
    if (p < 0 || p >= h || p >= w) {
        el_error(e, el_bspan(a, id, 8, span),
                 "crop pads each side with that many zeros: from 0 to %lld here, got %lld",
                 (long long)(h < w ? h : w) - 1, (long long)p);
        return false;
    }
    if (!(sd >= 0) || !isfinite(sd)) {
        el_error(e, el_bspan(a, id, 9, span), "noise is a standard deviation: 0 or more, got %g",
                 sd);
        return false;
    }
    ds->augmented = f || p > 0 || sd > 0;
    ds->augment = (NndAugment){f, p, sd};
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
                 "a data set comes from idx(...), csv(...), npy(...), text(...) or tensors(...)");
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
             el_bool_arg(e, el_barg(&a, id, 2), el_bspan(&a, id, 2, src->span), "classes", false,
                         &ds.classes);
        scale = el_barg(&a, id, 3);
        if (ok)
            ds.path_x = resolve_path(e, m, ds.path_x);
        if (ok && ds.label)
            ds.label = arena_strdup(&e->p->arena, ds.label);
        break;
    }
    case BI_TEXT: ok = data_text(e, m, &a, src->span, &ds); break;
    case BI_TENSORS:
        ds.kind = DATA_TENSORS;
        ok = data_literal(e, *el_barg(&a, id, 0), el_bspan(&a, id, 0, src->span), false, &ds.x) &&
             data_literal(e, *el_barg(&a, id, 1), el_bspan(&a, id, 1, src->span), true, &ds.y);
        break;
    default: ok = false; break;
    }
    if (ok && scale) {
        /* features are read times scale: inf or NaN would make every one of them so */
        Span ss = el_bspan(&a, id, id == BI_CSV ? 3 : 2, src->span);
        ok = el_to_number(e, *scale, ss, "scale", &ds.scale);
        if (ok && !isfinite(ds.scale)) {
            el_error(e, ss, "scale must be a finite number, got %s",
                     isnan(ds.scale) ? "NaN"
                     : ds.scale > 0  ? "inf"
                                     : "-inf");
            ok = false;
        }
    }
    if (ok && shape) {
        Shape sh;
        ok = el_to_shape(e, *shape, src->span, "the sample shape", &sh, NULL);
        if (ok) {
            ds.reshape_rank = sh.rank;
            memcpy(ds.reshape, sh.d, sizeof sh.d);
        }
    }
    if (ok && id != BI_TEXT)
        ok = data_describe(e, &ds, src->span, el_bspan(&a, id, 0, src->span),
                           id == BI_CSV ? src->span : el_bspan(&a, id, 1, src->span));
    Value *sub = (id == BI_IDX || id == BI_NPY) ? el_barg(&a, id, 4) : NULL;
    if (ok && sub)
        ok = data_subset(e, &ds, sub, el_bspan(&a, id, 4, src->span));
    int split_at = id == BI_IDX || id == BI_NPY ? 6 : id == BI_CSV ? 4 : 2;
    Value *split = id != BI_TEXT ? el_barg(&a, id, split_at) : NULL;
    if (ok && split)
        ok = data_split(e, &ds, split, el_bspan(&a, id, split_at, src->span));
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
    if (ok && (id == BI_IDX || id == BI_NPY))
        ok = data_augment(e, &ds, &a, id, src->span);
    if (!ok) {
        nnd_tensor_free(&ds.x);
        nnd_tensor_free(&ds.y);
        return;
    }
    vec_push(&e->p->data, ds);
}
