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
/* Concat along axis; take rows of t at i32 indices; scatter-add rows to `rows` rows. */
NodeId ot_concat(Graph *g, NodeId a, NodeId b, int axis);
NodeId ot_take(Graph *g, NodeId table, NodeId idx);
NodeId ot_scatter(Graph *g, NodeId idx, NodeId src, int rows);
/* Convolution ops: attrs = {stride h, w, pad h, w, dilation h, w, groups}; the
 * preset shape is x's for CONV2D_GX, w's for CONV2D_GW (ignored for CONV2D). */
NodeId ot_conv(Graph *g, OpId op, NodeId a, NodeId b, const int64_t *attrs, Shape preset);
/* Pooling ops: attrs = {kernel h, w, stride h, w, pad h, w}; b is 0 for the
 * one-input ops; the preset shape is x's for POOLAVG_T (ignored otherwise). */
NodeId ot_pool(Graph *g, OpId op, NodeId a, NodeId b, const int64_t *attrs, Shape preset);
/* U[0,1) for a scalar step, seed and key. */
NodeId ot_randstep(Graph *g, NodeId step, uint64_t seed, uint64_t key, NndDType dt, Shape s);
NodeId ot_ortho(Graph *g, NodeId gain, uint64_t key, NndDType dt, Shape s);
/* The value of v with the gradient of a and b (0: absent) from g->custom_vjp. */
NodeId ot_custom(Graph *g, NodeId v, NodeId a, NodeId b, int idx);
/* Sum over every axis: a scalar. */
NodeId ot_sum_all(Graph *g, NodeId a);

/* Convolution and pooling cases shared by the gradchecks and the value tests: every
 * attribute alone and in combination. */
typedef struct OtConvCase {
    const char *name;
    int64_t n, c, h, w, o, kh, kw; /* x [n, c, h, w], w [o, c / groups, kh, kw] */
    int64_t a[7]; /* stride h w, padding h w, dilation h w, groups */
} OtConvCase;
typedef struct OtPoolCase {
    const char *name;
    int64_t n, c, h, w; /* x [n, c, h, w] */
    int64_t a[6]; /* kernel h w, stride h w, padding h w */
} OtPoolCase;
extern const OtConvCase ot_conv_cases[];
extern const size_t ot_nconv_cases;
extern const OtPoolCase ot_pool_cases[];
extern const size_t ot_npool_cases;
Shape ot_conv_x_shape(const OtConvCase *k);
Shape ot_conv_w_shape(const OtConvCase *k);
Shape ot_pool_x_shape(const OtPoolCase *k);

/* Runs the roots (asserting success); out[i] is owned by the caller. */
void ot_run(Graph *g, const NodeId *roots, int n, const InterpBindings *b, ITensor *out);
/* One root, no bindings. */
ITensor ot_eval(Graph *g, NodeId root);
/* The case a loop of checks is at, named in ot_expect's failures (NULL: none). */
extern const char *ot_case;
/* Asserts t has the shape and exactly the values given (NaN matches NaN), then
 * frees it. */
void ot_expect(ITensor *t, Shape s, const double *v, int n);
/* Like ot_expect but also checks the dtype. */
void ot_expect_dt(ITensor *t, NndDType dt, Shape s, const double *v, int n);

#endif
