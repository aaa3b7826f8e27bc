#include "module.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "parse.h"

enum { MAX_SOURCE_BYTES = 16 << 20 };

static bool is_dir(const char *p)
{
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* The standard library beside the running program: PREFIX/bin/nnd finds
 * PREFIX/share/nnd/stdlib, wherever the prefix was moved; NULL when there is none
 * (a build tree's nnd). */
static char *stdlib_beside_program(void)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = n > 0 ? (exe[n] = 0, strrchr(exe, '/')) : NULL;
    if (!slash)
        return NULL;
    *slash = 0;
    char *dir = xasprintf("%s/../share/nnd/stdlib", exe);
    if (is_dir(dir))
        return dir;
    free(dir);
    return NULL;
}

void frontend_init(Frontend *fe)
{
    memset(fe, 0, sizeof *fe);
    source_map_init(&fe->sm);
    diags_init(&fe->diags, &fe->sm);
    const char *env = getenv("NND_STDLIB");
    /* NND_STDLIB; an installed nnd's own (even where the source tree it was built
     * from still exists); the source tree's; where it was configured to install */
    char *beside = stdlib_beside_program();
    if (env && *env)
        fe->stdlib_dir = xstrdup(env);
    else if (beside)
        fe->stdlib_dir = xstrdup(beside);
    else if (is_dir(NND_STDLIB_DIR))
        fe->stdlib_dir = xstrdup(NND_STDLIB_DIR);
    else
        fe->stdlib_dir = xstrdup(NND_STDLIB_INSTALL_DIR);
    free(beside);
}

void frontend_free(Frontend *fe)
{
    for (int i = 0; i < fe->modules.n; i++) {
        Module *m = fe->modules.v[i];
        free(m->path);
        free(m->name);
        ast_module_free(m->ast);
        vec_free(&m->uses);
        vec_free(&m->use_spans);
        vec_free(&m->decls);
        free(m);
    }
    vec_free(&fe->modules);
    for (int i = 0; i < fe->stdlib_names.n; i++)
        free(fe->stdlib_names.v[i]);
    vec_free(&fe->stdlib_names);
    diags_free(&fe->diags);
    source_map_free(&fe->sm);
    free(fe->stdlib_dir);
}

static const char *decl_name(const Ast *d)
{
    switch (d->kind) {
    case AST_FN:
    case AST_LAYER:
    case AST_OPTIMIZER:
    case AST_LET: return d->name;
    default: return NULL;
    }
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? xstrndup(path, (size_t)(slash - path)) : xstrdup(".");
}

/* name relative to the directory of the file `from` ("a/b.nnd" + "c.nnd" = "a/c.nnd";
 * "b.nnd" + "c.nnd" = "c.nnd"). */
static char *path_beside(const char *from, const char *name)
{
    const char *slash = strrchr(from, '/');
    if (!slash)
        return xstrdup(name);
    return xasprintf("%.*s/%s", (int)(slash - from), from, name);
}

/* A name close to `want` among the stdlib modules, for "did you mean". */
static char *suggest_stdlib(const char *dir, const char *want)
{
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    char *best = NULL;
    int best_dist = 3;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".nnd") != 0)
            continue;
        char *stem = xstrndup(e->d_name, n - 4);
        int dist = edit_distance(stem, want, 2, false);
        if (dist < best_dist) {
            free(best);
            best = stem;
            best_dist = dist;
        } else {
            free(stem);
        }
    }
    closedir(d);
    return best;
}

static void load_uses(Frontend *fe, Module *m)
{
    for (int i = 0; i < m->ast->items.n; i++) {
        const Ast *it = m->ast->items.v[i];
        if (it->kind != AST_USE)
            continue;
        char *path;
        if (it->op == 1) { /* use "file.nnd": relative to this file */
            if (it->name[0] == '/') {
                path = xstrdup(it->name);
            } else {
                path = path_beside(fe->sm.files.v[m->file]->path, it->name);
            }
            if (!is_file(path)) {
                diag_error(&fe->diags, it->span, "cannot find '%s' (looked for %s)", it->name,
                           path);
                free(path);
                continue;
            }
        } else {
            path = xasprintf("%s/%s.nnd", fe->stdlib_dir, it->name);
            if (!is_file(path)) {
                char *file = xasprintf("%s.nnd", it->name);
                char *local = path_beside(fe->sm.files.v[m->file]->path, file);
                free(file);
                if (is_file(local)) {
                    free(path);
                    path = local;
                } else {
                    int d = diag_error(&fe->diags, it->span,
                                       "no module named '%s' in the standard library (%s) or next "
                                       "to this file",
                                       it->name, fe->stdlib_dir);
                    char *s = suggest_stdlib(fe->stdlib_dir, it->name);
                    if (s)
                        diag_label(&fe->diags, d, "did you mean '%s'?", s);
                    free(s);
                    free(local);
                    free(path);
                    continue;
                }
            }
        }
        Module *u = frontend_load(fe, path, it->span);
        free(path);
        if (!u)
            continue;
        if (u == m || u->loading) {
            diag_error(&fe->diags, it->span, "'%s' is used in a cycle of `use`", it->name);
            continue;
        }
        bool dup = false;
        for (int k = 0; k < m->uses.n; k++)
            dup |= m->uses.v[k] == u;
        if (!dup) {
            vec_push(&m->uses, u);
            vec_push(&m->use_spans, it->span);
        }
    }
}

/* key identifies the file (its real path); shown is how messages name it, and what
 * relative `use` paths are joined to. */
static Module *load_source(Frontend *fe, const char *key, const char *shown, const char *name,
                           const char *text, size_t len)
{
    Module *m = xcalloc(1, sizeof *m);
    m->path = xstrdup(key);
    m->name = xstrdup(name);
    m->file = source_map_add(&fe->sm, shown, text, len);
    vec_push(&fe->modules, m);
    m->loading = true;
    m->ast = parse_file(&fe->sm, m->file, &fe->diags);
    for (int i = 0; i < m->ast->items.n; i++) {
        const Ast *it = m->ast->items.v[i];
        if (decl_name(it))
            vec_push(&m->decls, it);
        else if (it->kind == AST_TRAIN && !m->train)
            m->train = it;
    }
    load_uses(fe, m);
    m->loading = false;
    return m;
}

Module *frontend_load(Frontend *fe, const char *path, Span from)
{
    char real[PATH_MAX];
    const char *key = realpath(path, real) ? real : path;
    for (int i = 0; i < fe->modules.n; i++)
        if (strcmp(fe->modules.v[i]->path, key) == 0)
            return fe->modules.v[i];
    size_t len;
    const char *why = NULL;
    char *text = read_file(path, MAX_SOURCE_BYTES, &len, &why);
    if (!text) {
        if (strcmp(why, "it is too large") == 0)
            diag_error(&fe->diags, from, "cannot read '%s': larger than %d MiB", path,
                       MAX_SOURCE_BYTES >> 20);
        else
            diag_error(&fe->diags, from, "cannot read '%s': %s", path, why);
        return NULL;
    }
    /* stdlib modules are called by their short name; messages show the path as
     * given (for stdlib modules: the standard library directory as configured) */
    char *dir = dir_of(key);
    char real_std[PATH_MAX];
    bool std = realpath(fe->stdlib_dir, real_std) && strcmp(dir, real_std) == 0;
    const char *base = strrchr(key, '/') ? strrchr(key, '/') + 1 : key;
    char *name = std ? xstrndup(base, strlen(base) - 4) : xstrdup(path);
    Module *m = load_source(fe, key, path, name, text, len);
    free(name);
    free(dir);
    free(text);
    return m;
}

Module *frontend_load_text(Frontend *fe, const char *name, const char *text, size_t len)
{
    return load_source(fe, name, name, name, text, len);
}

const Ast *module_own(const Module *m, const char *name)
{
    for (int i = 0; i < m->decls.n; i++)
        if (strcmp(decl_name(m->decls.v[i]), name) == 0)
            return m->decls.v[i];
    return NULL;
}

const Ast *module_lookup(Module *m, const char *name, Module **where, bool *ambiguous)
{
    if (ambiguous)
        *ambiguous = false;
    const Ast *d = module_own(m, name);
    if (d) {
        if (where)
            *where = m;
        return d;
    }
    const Ast *found = NULL;
    for (int i = 0; i < m->uses.n; i++) {
        const Ast *x = module_own(m->uses.v[i], name);
        if (!x)
            continue;
        if (found && x != found && ambiguous)
            *ambiguous = true;
        if (!found) {
            found = x;
            if (where)
                *where = m->uses.v[i];
        }
    }
    return found;
}

/* Every top-level declaration of the standard library's files, as "module\0name",
 * parsed apart from the program (their own diagnostics are dropped). */
static void read_stdlib_names(Frontend *fe)
{
    fe->stdlib_read = true;
    DIR *d = opendir(fe->stdlib_dir);
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".nnd") != 0)
            continue;
        char *path = xasprintf("%s/%s", fe->stdlib_dir, e->d_name);
        size_t len;
        const char *why;
        char *text = read_file(path, MAX_SOURCE_BYTES, &len, &why);
        if (text) {
            SourceMap sm;
            source_map_init(&sm);
            Diags scratch;
            diags_init(&scratch, &sm);
            AstModule *ast = parse_file(&sm, source_map_add(&sm, path, text, len), &scratch);
            for (int i = 0; i < ast->items.n; i++) {
                const char *nm = decl_name(ast->items.v[i]);
                if (!nm)
                    continue;
                char *pair = xmalloc(n - 4 + 1 + strlen(nm) + 1);
                memcpy(pair, e->d_name, n - 4);
                pair[n - 4] = 0;
                strcpy(pair + n - 3, nm);
                vec_push(&fe->stdlib_names, pair);
            }
            ast_module_free(ast);
            diags_free(&scratch);
            source_map_free(&sm);
            free(text);
        }
        free(path);
    }
    closedir(d);
}

const char *frontend_stdlib_module_of(Frontend *fe, const char *name)
{
    if (!fe->stdlib_read)
        read_stdlib_names(fe);
    for (int i = 0; i < fe->stdlib_names.n; i++) {
        const char *pair = fe->stdlib_names.v[i];
        if (strcmp(pair + strlen(pair) + 1, name) == 0)
            return pair;
    }
    return NULL;
}
