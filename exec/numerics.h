/* numerics: reports of `nnd run --check-numerics`.
 *
 * After training stopped at the first op that made NaN or Inf (the checked step, or
 * the interpreter, found it): an error at that op's source span, with its phase
 * (forward, backward, update rule, statistics), the step, and the parameters it is
 * computed from or feeds. */
#ifndef NND_NUMERICS_H
#define NND_NUMERICS_H

#include "nnd_train.h"
#include "program.h"

/* res->nonfinite == 2: the diagnostics for res->bad_node, added to d. */
void numerics_report(Program *p, Diags *d, const NndTrainResult *res);

#endif
