/* autodiff: reverse-mode automatic differentiation, graph to graph.
 *
 * The gradient is built from new nodes in the same graph (one VJP rule per op in
 * ops.def), so it can be simplified, printed, run, and differentiated again. */
#ifndef NND_AUTODIFF_H
#define NND_AUTODIFF_H

#include "graph.h"

/* Adds to g the gradient of the scalar node y with respect to each node in wrt;
 * out[i] receives it (a zero tensor shaped like wrt[i] when y does not depend on
 * it).  Only nodes on a path from some wrt[i] to y get gradient code. */
void autodiff(Graph *g, NodeId y, const NodeId *wrt, int nwrt, NodeId *out);

/* Whether y depends on some node in wrt through ops that pass gradients on: when
 * not, every gradient autodiff gives is zero.  Borrows g. */
bool autodiff_depends(Graph *g, NodeId y, const NodeId *wrt, int nwrt);

/* True when the op has a VJP rule that can produce nonzero gradients. */
bool autodiff_has_vjp(OpId op);

#endif
