/* simplify: graph-to-graph cleanup passes.
 *
 * The graph is rebuilt in id order: constant folding (opsem_eval, the elementwise
 * ops' one definition, so folded values round exactly as run-time ones would), algebraic
 * identities (x+0, x*1, x^1, x^2 = x*x, --x, cast/reshape/broadcast to the same
 * shape, transpose pairs, transposes folded into matmul flags), common-subexpression
 * elimination by hash-consing, and dead-code elimination of everything the roots do
 * not reach.  Run-time inputs (HYPER) are never folded. */
#ifndef NND_SIMPLIFY_H
#define NND_SIMPLIFY_H

#include "graph.h"

typedef struct SimplifyStats {
    int before, after; /* live node counts */
    int folded, identities, merged;
} SimplifyStats;

typedef enum SimplifyMode {
    SIMPLIFY_NONE, /* only CSE and dead-code elimination */
    SIMPLIFY_EXACT, /* and every rule that keeps results bit for bit (up to the sign of 0) */
    SIMPLIFY_FAST, /* and rewrites that may change the last bit: x / s -> x * (1/s) */
} SimplifyMode;

/* Rebuilds *g keeping what the roots reach; every *roots[i] is updated to its id in
 * the new graph (0 stays 0). */
void simplify_graph(Graph *g, NodeId **roots, int nroots, SimplifyMode mode, SimplifyStats *stats);

#endif
