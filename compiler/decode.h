/* decode: a causal language model's forward function, one position at a time.
 *
 * The forward function maps x: [B, T] tokens to [B, T, V] logits.  Generating text
 * with it costs a pass over all T positions per new token.  decode_build derives,
 * from the same graph, a function of one token at position `pos` that computes
 * position pos of every value and nothing else: the key/value cache of the
 * transformer literature, found by the compiler rather than written into the model.
 *
 * Each value of the forward graph has at most one time axis, traced from x's second
 * axis through elementwise ops, layout changes, reductions over other axes, row
 * gathers and matrix products.  A value with a time axis is computed for position
 * pos alone (that axis has size 1); a value without one (parameters, constants, the
 * causal mask) is computed as before, and sliced at pos where it meets a value with a
 * time axis.  Where a matrix product needs a value at every position (the keys of
 * q @ k, the values of softmax(s) @ v: the time axis contracted, or a column), the
 * value is kept in a cache, a state [B, T, ...] of which the function writes row pos
 * and reads all rows.  Rows after pos hold older values: a causal model masks them,
 * so the result at pos is the forward function's at pos.  A model whose outputs
 * depend on later positions is not causal, and the sampler finds that out by
 * comparing the two functions (exec/sample.c).
 *
 * What a forward graph does that this cannot follow (a reduction over the time axis,
 * a reshape that merges it with another axis, random draws, convolutions) makes
 * decode_build fail with the reason; the sampler then runs the whole forward. */
#ifndef NND_DECODE_H
#define NND_DECODE_H

#include "program.h"

typedef struct Decode {
    Graph g; /* a copy of the program's graph, with the decode function's nodes added */
    NodeId logits; /* [B, 1, V]: the logits at position pos (B is 1 at run time) */
    int pos_hyper; /* the HYPER slot of pos: Program.hypers.n */
    int state_base; /* cache i is the STATE of index state_base + i: Program.states.n */
    NodeVec cache_state; /* per cache: its STATE node (shape and dtype, B = 1) */
    NodeVec cache_value; /* and its new value (row pos written), the state's update */
} Decode;

/* false with the reason in err when p's forward function cannot be computed one
 * position at a time; d is then empty.  Borrows p's names: p outlives d. */
bool decode_build(Decode *d, const Program *p, char *err, size_t errlen);
void decode_free(Decode *d);

#endif
