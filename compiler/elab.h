/* elab: elaboration of a checked program into a training graph.
 *
 * The train block is run at compile time: models and layers are instantiated (their
 * parameters named hierarchically, `fc1.W`), functions inlined, shapes and dtypes
 * checked with symbolic dimensions, the loss differentiated (autodiff) and every
 * trainable parameter's update rule expanded into graph nodes over w, g, its state,
 * t and the hyper-parameters.  Hyper-parameters, step, epoch and steps are run-time
 * inputs (HYPER nodes), never constants baked into the graph. */
#ifndef NND_ELAB_H
#define NND_ELAB_H

#include "module.h"

#include "program.h"

typedef struct Override {
    const char *key;
    const char *text; /* as given */
    double value;
    bool is_number;
    bool used;
} Override;

typedef struct ElabOptions {
    NndDType float_dtype;
    Override *overrides;
    int noverrides;
    const Ast *opt_expr; /* replaces the train block's `opt = ...` (nnd compare), or NULL */
    bool distributed; /* CompileOptions.distributed */
} ElabOptions;

/* Elaborates the train block of main.  Returns NULL after reporting errors.  The
 * program borrows names and spans from fe: free it before fe. */
Program *elab_program(Frontend *fe, Module *main, const ElabOptions *opts);
/* For a file without a train block: each model or layer of main that can be
 * created without arguments and types its forward's inputs is created and called
 * on such inputs, reporting the errors a train block would; report gets a line per
 * model or layer (checked, with forward's result, or why not).  False after
 * errors. */
bool elab_check_models(Frontend *fe, Module *main, const ElabOptions *opts, StrBuf *report);

#endif
