/* opsem: what each elementwise op of ops.def computes on one element.
 *
 * The one definition of an elementwise op's value.  The interpreter's loops
 * (interp.c), the folds of compile-time numbers (elab_value.c) and of constant nodes
 * (simplify.c) call these functions; compiled code (backend/codegen.c, ew()) is held
 * to them within the op's ulps (ops.def) by tests/backend/test_opsem_jit.c.
 *
 * Inputs and result are doubles holding values of the nodes' dtypes (booleans as 0
 * and 1); the result is then rounded to the node's dtype (itensor_round), once per
 * op, so an f32 op rounds like f32 hardware and a cast is the rounding itself. */
#ifndef NND_OPSEM_H
#define NND_OPSEM_H

#include <math.h>

#include "graph.h"

/* ---- one input ---- */

/* f(x) = -x */
static inline double sem_neg(double x) { return -x; }
/* f(x) = e^x */
static inline double sem_exp(double x) { return exp(x); }
/* f(x) = ln x */
static inline double sem_log(double x) { return log(x); }
/* f(x) = x^(1/2) */
static inline double sem_sqrt(double x) { return sqrt(x); }
/* f(x) = 1 / x^(1/2), the square root rounded first */
static inline double sem_rsqrt(double x) { return 1 / sqrt(x); }
/* f(x) = |x| */
static inline double sem_abs(double x) { return fabs(x); }
/* f(x) = (x > 0) - (x < 0); NaN gives 0 */
static inline double sem_sign(double x) { return (x > 0) - (x < 0); }
/* f(x) = tanh x */
static inline double sem_tanh(double x) { return tanh(x); }
/* f(x) = 1/(1+e^-x), as e^x/(1+e^x) for x < 0 so that e^ never overflows */
static inline double sem_sigmoid(double x)
{
    return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x));
}
/* f(x) = x > 0 ? x : 0; NaN gives 0 */
/* NaN stays NaN (as PyTorch and JAX): a diverged unit is not silently zeroed */
static inline double sem_relu(double x) { return x <= 0 ? 0 : x; }
/* f(x) = sin x */
static inline double sem_sin(double x) { return sin(x); }
/* f(x) = cos x */
static inline double sem_cos(double x) { return cos(x); }
/* f(x) = the largest integer <= x */
static inline double sem_floor(double x) { return floor(x); }
/* f(x) = x == 0 */
static inline double sem_not(double x) { return x == 0; }
/* f(x) = x: rounding to the result's dtype converts (to i32: toward zero, NaN and
 * infinities to 0; to bool: x != 0) */
static inline double sem_cast(double x) { return x; }

/* ---- two inputs ---- */

/* f(p, q) = p + q */
static inline double sem_add(double p, double q) { return p + q; }
/* f(p, q) = p - q */
static inline double sem_sub(double p, double q) { return p - q; }
/* f(p, q) = p * q */
static inline double sem_mul(double p, double q) { return p * q; }
/* f(p, q) = p / q */
static inline double sem_div(double p, double q) { return p / q; }
/* f(p, q) = p^q, with p^2 as p*p: correctly rounded, as simplify_graph rewrites it
 * (libm's pow can differ in the last bit) */
static inline double sem_pow(double p, double q) { return q == 2 ? p * p : pow(p, q); }
/* f(p, q) = q < p ? q : p: ties and NaN in q give p */
static inline double sem_min(double p, double q) { return q < p ? q : p; }
/* f(p, q) = q > p ? q : p: ties and NaN in q give p */
static inline double sem_max(double p, double q) { return q > p ? q : p; }
/* f(p, q) = p < q */
static inline double sem_lt(double p, double q) { return p < q; }
/* f(p, q) = p <= q */
static inline double sem_le(double p, double q) { return p <= q; }
/* f(p, q) = p > q */
static inline double sem_gt(double p, double q) { return p > q; }
/* f(p, q) = p >= q */
static inline double sem_ge(double p, double q) { return p >= q; }
/* f(p, q) = p == q */
static inline double sem_eq(double p, double q) { return p == q; }
/* f(p, q) = p != q (true when either is NaN) */
static inline double sem_ne(double p, double q) { return p != q; }
/* f(p, q) = p and q */
static inline double sem_and(double p, double q) { return p != 0 && q != 0; }
/* f(p, q) = p or q */
static inline double sem_or(double p, double q) { return p != 0 || q != 0; }

/* ---- three inputs ---- */

/* f(c, a, b) = c ? a : b */
static inline double sem_select(double c, double a, double b) { return c != 0 ? a : b; }

/* For X-macros over ops.def that generate code for the elementwise ops only:
 * OPSEM_BY_KIND(kind, E1, E2, E3)(args) is E1(args) for an EW1 op, E2(args) for EW2,
 * E3(args) for EW3, and nothing for the other kinds. */
#define OPSEM_BY_KIND(kind, e1, e2, e3) OPSEM_BY_##kind(e1, e2, e3)
#define OPSEM_BY_EW1(e1, e2, e3) e1
#define OPSEM_BY_EW2(e1, e2, e3) e2
#define OPSEM_BY_EW3(e1, e2, e3) e3
#define OPSEM_BY_LEAF(e1, e2, e3) OPSEM_NOTHING
#define OPSEM_BY_SOURCE(e1, e2, e3) OPSEM_NOTHING
#define OPSEM_BY_LAYOUT(e1, e2, e3) OPSEM_NOTHING
#define OPSEM_BY_REDUCE(e1, e2, e3) OPSEM_NOTHING
#define OPSEM_BY_INDEX(e1, e2, e3) OPSEM_NOTHING
#define OPSEM_BY_MATMUL(e1, e2, e3) OPSEM_NOTHING
#define OPSEM_BY_CALL(e1, e2, e3) OPSEM_NOTHING
#define OPSEM_BY_ALIAS(e1, e2, e3) OPSEM_NOTHING
#define OPSEM_NOTHING(...)

/* Whether op is elementwise (kind EW1, EW2 or EW3). */
bool opsem_is_elementwise(OpId op);
/* The elementwise op's value for inputs x[0 .. arity-1] (values of the inputs'
 * dtypes), rounded to dtype, the result's, as the interpreter rounds each op. */
double opsem_eval(OpId op, NndDType dtype, const double *x);
/* How many units in the last place compiled code may be from opsem_eval for op with
 * a result of dtype: ops.def's ulps for f32 and f64, 0 for i32 and bool; -1 for an
 * op that is not elementwise. */
int opsem_ulps(OpId op, NndDType dtype);

#endif
