/* opsutil: helpers shared by the op tests: shapes, leaves with literal values, a
 * seeded generator, and running roots through the reference interpreter.
 *
 * Failures are cmocka assertions, so a helper that cannot do its job fails the
 * test that called it. */
#ifndef NND_TESTS_OPSUTIL_H
#define NND_TESTS_OPSUTIL_H

#include "graph.h"
#include "interp.h"

/* SHAPE(2, 3) is the shape [2, 3]; shape_scalar() is []. */
#define SHAPE(...)                                                                                 \
    shape_make((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})
/* A double array literal and its length, for the value arguments below. */
#define VALS(...)                                                                                  \
    (const double[]){__VA_ARGS__}, (int)(sizeof((double[]){__VA_ARGS__}) / sizeof(double))

/* splitmix64: a fixed seed gives the same numbers on every platform. */
typedef struct OtRng {
    uint64_t s;
} OtRng;
uint64_t ot_next(OtRng *r);
/* Uniform in [lo, hi). */
double ot_uniform(OtRng *r, double lo, double hi);

/* Leaves.  Values are copied into the graph (TENSOR) or returned as a tensor to
 * bind (PARAM, STATE, INPUT); n must be the shape's element count. */
NodeId ot_param(Graph *g, int idx, NndDType dt, Shape s);
NodeId ot_leaf(Graph *g, OpId op, int idx, NndDType dt, Shape s);
NodeId ot_tensor(Graph *g, NndDType dt, Shape s, const double *v, int n);
/* A concrete tensor to bind; the caller frees it with itensor_free. */
ITensor ot_itensor(NndDType dt, Shape s, const double *v, int n);

/* Builders for the ops without a gb_* helper. */
NodeId ot_slice(Graph *g, NodeId a, const int64_t *start, const int64_t *step, Shape counts);
NodeId ot_pad(Graph *g, NodeId a, const int64_t *start, const int64_t *step, Shape full);
NodeId ot_argmax(Graph *g, NodeId a, int axis, bool keep);
NodeId ot_pick(Graph *g, NodeId x, NodeId labels);
NodeId ot_one_hot(Graph *g, NodeId labels, int depth, NndDType dt);
/* A CAST node even when the dtype does not change (gb_cast returns a then). */
NodeId ot_cast(Graph *g, NodeId a, NndDType dt);
NodeId ot_dimsize(Graph *g, NodeId ref, uint32_t mask, NndDType dt);
NodeId ot_rand(Graph *g, OpId op, NodeId a, NodeId b, uint64_t key, NndDType dt, Shape s);
/* Sum over every axis: a scalar. */
NodeId ot_sum_all(Graph *g, NodeId a);

/* Runs the roots (asserting success); out[i] is owned by the caller. */
void ot_run(Graph *g, const NodeId *roots, int n, const InterpBindings *b, ITensor *out);
/* One root, no bindings. */
ITensor ot_eval(Graph *g, NodeId root);
/* Asserts t has the shape and exactly the values given (NaN matches NaN), then
 * frees it. */
void ot_expect(ITensor *t, Shape s, const double *v, int n);
/* Like ot_expect but also checks the dtype. */
void ot_expect_dt(ITensor *t, NndDType dt, Shape s, const double *v, int n);

#endif
