#include "opsem.h"

#include <assert.h>

#include "interp.h"

bool opsem_is_elementwise(OpId op)
{
    OpKind k = op_info[op].kind;
    return k == OPK_EW1 || k == OPK_EW2 || k == OPK_EW3;
}

double opsem_eval(OpId op, NndDType dtype, const double *x)
{
    double v = 0;
    switch (op) {
/* one case a line reads as the table it is */
/* clang-format off */
#define EVAL1(id, sem) case OP_##id: v = sem(x[0]); break;
#define EVAL2(id, sem) case OP_##id: v = sem(x[0], x[1]); break;
#define EVAL3(id, sem) case OP_##id: v = sem(x[0], x[1], x[2]); break;
#define OP(id, text, arity, kind, infer, vjp, sem, ulps, fn)                                      \
    OPSEM_BY_KIND(kind, EVAL1, EVAL2, EVAL3)(id, sem)
#include "ops.def"
#undef OP
#undef EVAL1
#undef EVAL2
#undef EVAL3
    default:
        assert(!"opsem_eval: not an elementwise op");
        break;
    }
    return itensor_round(dtype, v);
}

typedef struct Ulps {
    int f32, f64;
} Ulps;

static const Ulps op_ulps[OP_COUNT] = {
#define ULPS(f32, f64) {f32, f64}
#define ULPS_NONE {-1, -1}
/* clang-format on */
#define OP(id, text, arity, kind, infer, vjp, sem, ulps, fn) [OP_##id] = ulps,
#include "ops.def"
#undef OP
#undef ULPS
#undef ULPS_NONE
};

int opsem_ulps(OpId op, NndDType dtype)
{
    if (!opsem_is_elementwise(op))
        return -1;
    switch (dtype) {
    case NND_F32: return op_ulps[op].f32;
    case NND_F64: return op_ulps[op].f64;
    default: return 0;
    }
}
