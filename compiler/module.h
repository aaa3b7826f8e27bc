/* module: loading .nnd files and the modules they `use`.
 *
 * `use nn` finds stdlib/nn.nnd in the standard library directory (NND_STDLIB in the
 * environment, else the source tree's stdlib/, else the installed one); `use
 * "path.nnd"` is relative to the file that says it.  Each file is loaded once.
 * A name is looked up in its module's own declarations first, then in the modules
 * it uses directly (not transitively); two used modules defining one name make a
 * use of that name ambiguous. */
#ifndef NND_MODULE_H
#define NND_MODULE_H

#include "ast.h"

typedef struct Module Module;
struct Module {
    char *path; /* owned: as resolved */
    char *name; /* owned: `nn` for stdlib modules, else the path */
    uint32_t file;
    AstModule *ast; /* owned */
    VEC(Module *) uses; /* borrowed from the Frontend */
    VEC(Span) use_spans;
    VEC(const Ast *) decls; /* named top-level declarations: fn, layer, optimizer, let */
    const Ast *train; /* the train block, or NULL */
    bool loading; /* for detecting cycles of `use` */
};

typedef struct Frontend {
    SourceMap sm;
    Diags diags;
    VEC(Module *) modules; /* owned */
    char *stdlib_dir; /* owned */
    /* the standard library's declarations by module, read when a diagnostic
     * needs them (frontend_stdlib_module_of) */
    bool stdlib_read;
    VEC(char *) stdlib_names; /* owned: "module\0name" pairs */
} Frontend;

void frontend_init(Frontend *fe);
void frontend_free(Frontend *fe);
/* Loads a file and, recursively, what it uses.  Errors (unreadable files, syntax)
 * go to fe->diags; `from` is the span of the `use` that asked for it (or none).
 * Returns NULL only when the file could not be read. */
Module *frontend_load(Frontend *fe, const char *path, Span from);
/* Adds source text under a name (for tests and stdin) and loads it. */
Module *frontend_load_text(Frontend *fe, const char *name, const char *text, size_t len);

/* The standard library module (its short name, like "schedules") that declares
 * name at top level, or NULL; for "add `use schedules`" hints.  Reads the
 * library's files once per Frontend. */
const char *frontend_stdlib_module_of(Frontend *fe, const char *name);

/* The declaration of name visible in module m: its own, else from a used module
 * (*where says which).  Returns NULL if none; *ambiguous is set (and one of them
 * returned) when two used modules define it. */
const Ast *module_lookup(Module *m, const char *name, Module **where, bool *ambiguous);
/* Its own declaration only. */
const Ast *module_own(const Module *m, const char *name);

#endif
