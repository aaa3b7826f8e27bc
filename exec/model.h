/* model: a program's parameters and states as runtime buffers.
 *
 * The buffers a compiled step (or the interpreter behind the same ABI) reads and
 * updates in place.  Their starting values come from the program's initializers,
 * run by the reference interpreter with the run's seed, then from the files that
 * `from` named.  Saving writes the model (parameters and layer state, not optimizer
 * state) as safetensors named like the program (`fc1.W`). */
#ifndef NND_MODEL_H
#define NND_MODEL_H

#include <stdio.h>

#include "nnd_train.h"
#include "program.h"

typedef struct Model {
    NndTensor *params, *states; /* owned */
    void **param_ptrs, **state_ptrs; /* their data, as the step ABI wants them */
    int nparams, nstates;
} Model;

/* Initializes parameters and states from their initializers (seeded) and the
 * tensors loaded by `from`.  False with a message; m is then empty. */
bool model_init(Program *p, Model *m, char *err, size_t errlen);
/* A deep copy of from into to (which is overwritten). */
bool model_copy(const Model *from, Model *to, char *err, size_t errlen);
/* The values of from into to, a model of the same tensors (a model_copy of it), in
 * place: to's buffers stay where they are. */
void model_copy_values(const Model *from, Model *to);
void model_free(Model *m);
/* Loads the model from a safetensors file by name (what `save` or a checkpoint
 * wrote): every parameter and layer state must be there with its shape (f32 or f64,
 * converted to the program's); an error names the file, the tensor and both
 * shapes.  Optimizer states found there are loaded (*nopt counts them), the others
 * start over from their initializers. */
bool model_load(Program *p, Model *m, const char *path, int *nopt, char *err, size_t errlen);
/* model_load, and a warning on warn (when not NULL) that names the file's tensors
 * the program does not have: they are left out, as PyTorch's strict loading would
 * refuse them, but a file with more in it is no error. */
bool model_load_noting(Program *p, Model *m, const char *path, FILE *warn, int *nopt, char *err,
                       size_t errlen);
/* Writes that warning for st's tensors that are no parameter or state of p (the
 * first few by name, then how many more) to warn, when there are any and warn is
 * not NULL. */
void model_warn_unused(const Program *p, const NndSafetensors *st, FILE *warn);
/* The optimizer states from their initializers again (which may read the
 * parameters' current values). */
bool model_restart_optimizer(Program *p, Model *m, char *err, size_t errlen);
/* What eval mode reads as the parameters when some have `ema`: a malloc'd array of
 * their moving averages (the parameter itself where it has none); NULL when no
 * parameter has one (the parameters are read then). */
void **model_eval_params(const Program *p, const Model *m);
/* Writes the parameters (their moving averages with `ema`) and the layers' state
 * to a safetensors file, atomically, named as in the program. */
bool model_save(const Program *p, const Model *m, const char *path, int64_t steps, char *err,
                size_t errlen);

#endif
