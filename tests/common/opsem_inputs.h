/* opsem_inputs: the inputs both opsem tests sweep every elementwise op over.
 *
 * tests/compiler/test_opsem.c holds the folds and the interpreter to opsem_eval bit
 * for bit; tests/backend/test_opsem_jit.c holds compiled code to it within ulps.
 * Both start from these values and add sweeps of their own. */
#ifndef NND_TEST_OPSEM_INPUTS_H
#define NND_TEST_OPSEM_INPUTS_H

#include "util.h"

/* x and its neighbours in f64 and, rounded to float, in f32. */
void opsem_push_around(DoubleVec *v, double x);
/* Special values (signed zeros, infinities, NaN, subnormals and the limits of both
 * float types, powers of two at f32's and f64's integer limits), the integers and
 * half-integers of [-40, 40] with their neighbours (floor's steps), and the branch
 * points of the definitions and of the compiled forms (exp's overflow and underflow
 * in both types, tanh's 0.625, log's sqrt(1/2), multiples of pi, ...) with theirs. */
void opsem_unary_values(DoubleVec *v);
/* Values each paired with each other for two inputs: where arithmetic, pow (q == 2
 * and its neighbours, negative bases, 0^-1, 1^inf, overflow) and comparisons turn. */
void opsem_pair_values(DoubleVec *v);

/* Input tuples: in[k].v[i] is input k of tuple i. */
typedef struct Tuples {
    DoubleVec in[3];
    int n;
} Tuples;

void tuple_add(Tuples *t, int arity, const double *x);
void tuples_free(Tuples *t);

#endif
