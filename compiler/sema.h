/* sema: checks that need no shapes: names (with "did you mean"), call arity and
 * keyword arguments, which statements are allowed where, what an update rule may
 * assign, and the structure of the train block.  Shapes and dtypes are checked when
 * the program is elaborated into a graph (elab), where every shape is known. */
#ifndef NND_SEMA_H
#define NND_SEMA_H

#include "module.h"

/* Checks every loaded module; diagnostics go to fe->diags.  main is the file the
 * user named: only it may hold a train block. */
void sema_check(Frontend *fe, Module *main);

/* The closest of the candidates to name (edit distance), or NULL. */
const char *suggest_name(const char *name, const char *const *cands, int n);

#endif
