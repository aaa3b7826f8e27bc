/* compile: the front of the pipeline in one call, from a .nnd file to a Program.
 *
 *   load (module.c, parse.c: the file and the modules it uses)
 *   -> check (sema.c: names, arity, placement)
 *   -> elaborate (elab_*.c: the graph, its gradients, the update rules)
 *   -> simplify (simplify.c: folding, identities, CSE, dead code)
 *
 * Every command and every test that compiles a program calls this; the Program is
 * then turned into code by exec/executable.c.  Diagnostics go to the caller's
 * Frontend, which also owns the source map the program's spans point into: free
 * the Program before the Frontend.  Nothing is printed. */
#ifndef NND_COMPILE_H
#define NND_COMPILE_H

#include "elab.h"
#include "simplify.h"

typedef struct CompileOptions {
    NndDType float_dtype; /* of the whole program: NND_F32 (the default, 0) or NND_F64 */
    Override *overrides; /* --set NAME=VALUE: each one elaboration uses is marked used */
    int noverrides;
    /* an optimizer expression that replaces the train block's `opt = ...` (nnd
     * compare --opt), its diagnostics under the name opt_name; or NULL */
    const char *opt_text, *opt_name;
    bool raw; /* leave the graph as elaboration made it (nnd graph --raw) */
    SimplifyStats *stats; /* filled in when not NULL */
    /* data-parallel over ranks (exec/dist.h): the gradient sums of `accumulate` for
     * any k, and the step that applies them (Program.apply_updates) */
    bool distributed;
} CompileOptions;

/* Reads all of s as a number, written as in a .nnd file: decimal (12, 0.5, .5, 1e-3)
 * with an optional sign.  Returns NULL with the value in *out, or why s is not one:
 * "expected a number", "expected a finite number" (nan, inf), "expected a decimal
 * number" (0x10) or "number is too large" (1e999). */
const char *compile_parse_number(const char *s, double *out);

/* Parses "NAME=VALUE" (`--set`): a number (compile_parse_number), true or false,
 * or other text (a string setting).  False when there is no NAME= (*why = NULL),
 * or when VALUE is written as a number but not as a finite decimal one (nan, inf,
 * 0x10, 1e999; *why = compile_parse_number's reason); why may be NULL.  out (may be
 * NULL) gets the key (malloc'd: free it) and the text (pointing into kv). */
bool compile_parse_override(const char *kv, Override *out, const char **why);

/* Loads path (or, when text is not NULL, that NUL-terminated text under the name
 * path) with the modules it uses, and checks them.  Returns the main module, or
 * NULL when there were errors. */
Module *compile_check(Frontend *fe, const char *path, const char *text);
/* Elaborates the train block of m (from compile_check) and simplifies the result;
 * NULL after errors.  o may be NULL (f32, no overrides). */
Program *compile_module(Frontend *fe, Module *m, const CompileOptions *o);
/* For m without a train block (from compile_check): its models checked on their
 * own (elab_check_models); report gets what was checked and what was not.  False
 * after errors. */
bool compile_models(Frontend *fe, Module *m, const CompileOptions *o, StrBuf *report);
/* compile_check, then compile_module. */
Program *compile(Frontend *fe, const char *path, const char *text, const CompileOptions *o);

#endif
