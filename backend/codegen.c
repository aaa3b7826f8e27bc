#include "codegen.h"

#include "nnd_abi.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The JIT's symbol table: every function of NND_ABI_FUNCTIONS, nothing else. */
const RuntimeSymbol codegen_runtime_symbols[] = {
#define X(f) {#f, (void *)f},
    NND_ABI_FUNCTIONS(X)
#undef X
};
const int codegen_runtime_symbol_count =
    (int)(sizeof codegen_runtime_symbols / sizeof codegen_runtime_symbols[0]);

/* Per-module state. */
typedef struct CG {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    Graph *g;
    LLVMTypeRef i1, i8, i32, i64, f32, f64, ptr, voidt;
    LLVMTypeRef kernel_ty; /* void (ptr, i64, i64) */
    LLVMTypeRef entry_ty; /* void (ptr) */
    LLVMValueRef *tensor_globals; /* per node: TENSOR constants */
    unsigned md_scope, md_noalias;
    /* per function */
    const Schedule *s;
    const char *fname;
    LLVMValueRef fn, args;
    LLVMBasicBlockRef entry; /* preamble: buffer pointers and loop-invariant scalars */
    LLVMValueRef batch, hypers;
    LLVMValueRef *bufptr; /* per buffer, loaded in the entry block */
    LLVMMetadataRef *scope; /* per buffer: its alias scope */
    LLVMValueRef *scope_md, *noalias_md;
    LLVMValueRef *memo; /* per node: its value at the kernel's own index */
    LLVMValueRef *scalar; /* per node: rank-0 values computed in the entry block */
    LLVMValueRef acc_slot[64]; /* the loop kernel's accumulators (allocas) */
    /* the kernel's first block, where label checks put their slots (NULL: none) */
    LLVMBasicBlockRef kstart;
    struct {
        LLVMValueRef slot; /* i64: the largest bad label seen, or INT64_MIN */
        int64_t n;
    } checks[16];
    int nchecks;
    const Kernel *k;
    bool flat;
} CG;

static LLVMTypeRef vtype(CG *c, int dtype)
{
    switch (dtype) {
    case NND_F32: return c->f32;
    case NND_F64: return c->f64;
    case NND_I32: return c->i32;
    default: return c->i1;
    }
}

static LLVMTypeRef mtype(CG *c, int dtype) /* in memory */
{
    return dtype == NND_BOOL ? c->i8 : vtype(c, dtype);
}

static LLVMValueRef ci64(CG *c, int64_t v)
{
    return LLVMConstInt(c->i64, (unsigned long long)v, 1);
}

static LLVMValueRef cconst(CG *c, int dtype, double v)
{
    switch (dtype) {
    case NND_F32: return LLVMConstReal(c->f32, (double)(float)v);
    case NND_F64: return LLVMConstReal(c->f64, v);
    case NND_I32: /* -inf (a maximum's start) is the smallest i32 */
        return LLVMConstInt(c->i32,
                            (unsigned long long)(int64_t)(isnan(v)        ? 0
                                                          : v < INT32_MIN ? INT32_MIN
                                                          : v > INT32_MAX ? INT32_MAX
                                                                          : v),
                            1);
    default: return LLVMConstInt(c->i1, v != 0, 0);
    }
}

/* A field of NndStepArgs, by its C offset. */
static LLVMValueRef arg_field(CG *c, LLVMValueRef args, size_t offset, LLVMTypeRef ty)
{
    LLVMValueRef idx = ci64(c, (int64_t)offset);
    LLVMValueRef p = LLVMBuildGEP2(c->b, c->i8, args, &idx, 1, "");
    return LLVMBuildLoad2(c->b, ty, p, "");
}

/* Whether the JIT will link name (NND_ABI_FUNCTIONS lists it). */
static inline bool abi_listed(const char *name)
{
    for (int i = 0; i < codegen_runtime_symbol_count; i++)
        if (strcmp(codegen_runtime_symbols[i].name, name) == 0)
            return true;
    return false;
}

static LLVMValueRef call(CG *c, const char *name, LLVMTypeRef ret, LLVMTypeRef *params, int n,
                         LLVMValueRef *args, bool pure)
{
    assert(abi_listed(name));
    LLVMValueRef f = LLVMGetNamedFunction(c->mod, name);
    LLVMTypeRef ft = LLVMFunctionType(ret, params, (unsigned)n, 0);
    if (!f) {
        f = LLVMAddFunction(c->mod, name, ft);
        const char *attrs[] = {"nounwind", "willreturn"};
        for (int i = 0; i < 2; i++) {
            unsigned kind = LLVMGetEnumAttributeKindForName(attrs[i], strlen(attrs[i]));
            LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex,
                                    LLVMCreateEnumAttribute(c->ctx, kind, 0));
        }
        if (pure) {
            /* memory(none): free of side effects, so it can be hoisted and merged */
            unsigned kind = LLVMGetEnumAttributeKindForName("memory", 6);
            LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex,
                                    LLVMCreateEnumAttribute(c->ctx, kind, 0));
        }
    }
    return LLVMBuildCall2(c->b, ft, f, args, (unsigned)n, "");
}

static LLVMValueRef intrinsic(CG *c, const char *name, LLVMTypeRef *over, int nover,
                              LLVMValueRef *args, int nargs)
{
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    assert(id);
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(c->mod, id, over, (size_t)nover);
    LLVMTypeRef ft = LLVMIntrinsicGetType(c->ctx, id, over, (size_t)nover);
    return LLVMBuildCall2(c->b, ft, f, args, (unsigned)nargs, "");
}

static LLVMValueRef math1(CG *c, const char *f32name, const char *f64name, int dtype,
                          LLVMValueRef x)
{
    LLVMTypeRef t = vtype(c, dtype);
    return call(c, dtype == NND_F64 ? f64name : f32name, t, &t, 1, &x, true);
}

/* ---- f32 exp, log and tanh inline, so loops that use them vectorize ----
 * Cephes' single-precision algorithms (S. Moshier): range reduction and a short
 * polynomial, within 2 ulp of the correctly rounded result.  f64 code calls libm. */

static LLVMValueRef fk(CG *c, double v) { return LLVMConstReal(c->f32, v); }
static LLVMValueRef fmul_(CG *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFMul(c->b, a, b, "");
}
static LLVMValueRef fadd_(CG *c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFAdd(c->b, a, b, "");
}

/* p[0] x^(n-1) + ... + p[n-1], by Horner's rule */
static LLVMValueRef poly(CG *c, LLVMValueRef x, const double *p, int n)
{
    LLVMValueRef y = fk(c, p[0]);
    for (int i = 1; i < n; i++)
        y = fadd_(c, fmul_(c, y, x), fk(c, p[i]));
    return y;
}

static LLVMValueRef fsel(CG *c, LLVMRealPredicate pr, LLVMValueRef a, LLVMValueRef b,
                         LLVMValueRef t, LLVMValueRef f)
{
    return LLVMBuildSelect(c->b, LLVMBuildFCmp(c->b, pr, a, b, ""), t, f, "");
}

static LLVMValueRef expf_inline(CG *c, LLVMValueRef x)
{
    /* e^x = 2^n e^r, n = round(x log2 e), r = x - n ln 2 (ln 2 in two parts) */
    LLVMTypeRef t = c->f32;
    const double hi = 88.72283905206835, lo = -87.33654475055310898657;
    LLVMValueRef xc = fsel(c, LLVMRealOGT, x, fk(c, hi), fk(c, hi), x);
    xc = fsel(c, LLVMRealOLT, xc, fk(c, lo), fk(c, lo), xc);
    LLVMValueRef fx = fadd_(c, fmul_(c, xc, fk(c, 1.44269504088896341)), fk(c, 0.5));
    fx = intrinsic(c, "llvm.floor", &t, 1, &fx, 1);
    LLVMValueRef r = LLVMBuildFSub(c->b, xc, fmul_(c, fx, fk(c, 0.693359375)), "");
    r = LLVMBuildFSub(c->b, r, fmul_(c, fx, fk(c, -2.12194440e-4)), "");
    static const double p[] = {1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                               4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1};
    LLVMValueRef z = fmul_(c, r, r);
    LLVMValueRef y = fadd_(c, fadd_(c, fmul_(c, poly(c, r, p, 6), z), r), fk(c, 1));
    /* 2^n through the exponent bits; n = 128 as 2^127 * 2 */
    LLVMValueRef n = LLVMBuildFPToSI(c->b, fx, c->i32, "");
    LLVMValueRef big = LLVMBuildICmp(c->b, LLVMIntSGT, n, LLVMConstInt(c->i32, 127, 0), "");
    LLVMValueRef e = LLVMBuildSelect(c->b, big, LLVMConstInt(c->i32, 127, 0), n, "");
    LLVMValueRef bits = LLVMBuildShl(c->b, LLVMBuildAdd(c->b, e, LLVMConstInt(c->i32, 127, 0), ""),
                                     LLVMConstInt(c->i32, 23, 0), "");
    y = fmul_(c, y, LLVMBuildBitCast(c->b, bits, c->f32, ""));
    y = LLVMBuildSelect(c->b, big, fmul_(c, y, fk(c, 2)), y, "");
    /* beyond the clamps: inf, 0; NaN stays NaN */
    y = fsel(c, LLVMRealOGT, x, fk(c, hi), fk(c, INFINITY), y);
    y = fsel(c, LLVMRealOLT, x, fk(c, lo), fk(c, 0), y);
    return fsel(c, LLVMRealUNO, x, x, x, y);
}

static LLVMValueRef logf_inline(CG *c, LLVMValueRef x)
{
    /* x = m 2^e with m in [sqrt(1/2), sqrt 2); log x = log m + e ln 2 */
    LLVMValueRef bits = LLVMBuildBitCast(c->b, x, c->i32, "");
    LLVMValueRef e = LLVMBuildSub(c->b, LLVMBuildLShr(c->b, bits, LLVMConstInt(c->i32, 23, 0), ""),
                                  LLVMConstInt(c->i32, 126, 0), "");
    LLVMValueRef mb =
        LLVMBuildOr(c->b, LLVMBuildAnd(c->b, bits, LLVMConstInt(c->i32, 0x807fffff, 0), ""),
                    LLVMConstInt(c->i32, 0x3f000000, 0), "");
    LLVMValueRef m = LLVMBuildBitCast(c->b, mb, c->f32, ""); /* in [0.5, 1) */
    LLVMValueRef small = LLVMBuildFCmp(c->b, LLVMRealOLT, m, fk(c, 0.707106781186547524), "");
    LLVMValueRef ef = LLVMBuildSIToFP(c->b, e, c->f32, "");
    ef = LLVMBuildSelect(c->b, small, LLVMBuildFSub(c->b, ef, fk(c, 1), ""), ef, "");
    LLVMValueRef xm = LLVMBuildSelect(c->b, small, fadd_(c, m, m), m, "");
    xm = LLVMBuildFSub(c->b, xm, fk(c, 1), "");
    static const double p[] = {7.0376836292e-2,  -1.1514610310e-1, 1.1676998740e-1,
                               -1.2420140846e-1, 1.4249322787e-1,  -1.6668057665e-1,
                               2.0000714765e-1,  -2.4999993993e-1, 3.3333331174e-1};
    LLVMValueRef z = fmul_(c, xm, xm);
    LLVMValueRef y = fmul_(c, fmul_(c, poly(c, xm, p, 9), xm), z);
    y = fadd_(c, y, fmul_(c, ef, fk(c, -2.12194440e-4)));
    y = LLVMBuildFSub(c->b, y, fmul_(c, z, fk(c, 0.5)), "");
    LLVMValueRef r = fadd_(c, fadd_(c, xm, y), fmul_(c, ef, fk(c, 0.693359375)));
    /* 0 and denormals (flushed): -inf; negatives and NaN: NaN; +inf: +inf */
    r = fsel(c, LLVMRealOLT, x, fk(c, 1.17549435e-38), fk(c, -INFINITY), r);
    r = fsel(c, LLVMRealOLT, x, fk(c, 0), fk(c, NAN), r);
    r = fsel(c, LLVMRealOEQ, x, fk(c, INFINITY), fk(c, INFINITY), r);
    return fsel(c, LLVMRealUNO, x, x, x, r);
}

static LLVMValueRef tanhf_inline(CG *c, LLVMValueRef x)
{
    /* |x| < 0.625: x + x^3 P(x^2); else sign(x) (1 - 2 / (e^(2|x|) + 1)) */
    LLVMTypeRef t = c->f32;
    LLVMValueRef ax = intrinsic(c, "llvm.fabs", &t, 1, &x, 1);
    static const double p[] = {-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2,
                               1.33314422036e-1, -3.33332819422e-1};
    LLVMValueRef z = fmul_(c, x, x);
    LLVMValueRef near = fadd_(c, fmul_(c, fmul_(c, poly(c, z, p, 5), z), x), x);
    LLVMValueRef e = expf_inline(c, fadd_(c, ax, ax));
    LLVMValueRef far =
        LLVMBuildFSub(c->b, fk(c, 1), LLVMBuildFDiv(c->b, fk(c, 2), fadd_(c, e, fk(c, 1)), ""), "");
    LLVMValueRef args[2] = {far, x};
    far = intrinsic(c, "llvm.copysign", &t, 1, args, 2);
    return fsel(c, LLVMRealOLT, ax, fk(c, 0.625), near, far);
}

/* exp, log, tanh: inline for f32, libm for f64 */
static LLVMValueRef math_exp(CG *c, int dt, LLVMValueRef x)
{
    return dt == NND_F32 ? expf_inline(c, x) : math1(c, "nnd_expf", "nnd_exp", dt, x);
}

static LLVMValueRef math_log(CG *c, int dt, LLVMValueRef x)
{
    return dt == NND_F32 ? logf_inline(c, x) : math1(c, "nnd_logf", "nnd_log", dt, x);
}

static LLVMValueRef math_tanh(CG *c, int dt, LLVMValueRef x)
{
    return dt == NND_F32 ? tanhf_inline(c, x) : math1(c, "nnd_tanhf", "nnd_tanh", dt, x);
}

/* ---- dimensions and addresses ---- */

static LLVMValueRef dim(CG *c, int64_t d) { return d >= 0 ? ci64(c, d) : c->batch; }

/* The flat offset of idx in a row-major tensor of shape s. */
static LLVMValueRef offset_of(CG *c, const Shape *s, LLVMValueRef *idx)
{
    LLVMValueRef off = NULL;
    for (int i = 0; i < s->rank; i++) {
        off = off ? LLVMBuildNSWMul(c->b, off, dim(c, s->d[i]), "") : NULL;
        off = off ? LLVMBuildNSWAdd(c->b, off, idx[i], "") : idx[i];
    }
    return off ? off : ci64(c, 0);
}

static LLVMValueRef buffer_ptr(CG *c, int i);

static void set_scopes(CG *c, LLVMValueRef inst, int buf)
{
    if (buf < 0 || !c->scope_md)
        return;
    LLVMSetMetadata(inst, c->md_scope, c->scope_md[buf]);
    LLVMSetMetadata(inst, c->md_noalias, c->noalias_md[buf]);
}

static LLVMValueRef load_at(CG *c, int buf, int dtype, LLVMValueRef off)
{
    LLVMValueRef p = LLVMBuildGEP2(c->b, mtype(c, dtype), buffer_ptr(c, buf), &off, 1, "");
    LLVMValueRef v = LLVMBuildLoad2(c->b, mtype(c, dtype), p, "");
    set_scopes(c, v, buf);
    if (dtype == NND_BOOL)
        v = LLVMBuildTrunc(c->b, v, c->i1, "");
    return v;
}

static void store_at(CG *c, int buf, int dtype, LLVMValueRef off, LLVMValueRef v)
{
    const Buffer *bf = &c->s->bufs.v[buf];
    if (bf->kind == BUF_OUT) {
        /* results are doubles */
        if (dtype == NND_F32)
            v = LLVMBuildFPExt(c->b, v, c->f64, "");
        else if (dtype == NND_I32)
            v = LLVMBuildSIToFP(c->b, v, c->f64, "");
        else if (dtype == NND_BOOL)
            v = LLVMBuildUIToFP(c->b, v, c->f64, "");
        dtype = NND_F64;
    }
    if (dtype == NND_BOOL)
        v = LLVMBuildZExt(c->b, v, c->i8, "");
    LLVMValueRef p = LLVMBuildGEP2(c->b, mtype(c, dtype), buffer_ptr(c, buf), &off, 1, "");
    LLVMValueRef st = LLVMBuildStore(c->b, v, p);
    set_scopes(c, st, buf);
}

/* ---- loops ---- */

typedef struct Loop {
    LLVMBasicBlockRef header, exit;
    LLVMValueRef iv;
} Loop;

static LLVMValueRef loop_open(CG *c, Loop *l, LLVMValueRef lo, LLVMValueRef hi)
{
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(c->b);
    l->header = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "loop");
    LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "body");
    l->exit = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "done");
    LLVMBuildBr(c->b, l->header);
    LLVMPositionBuilderAtEnd(c->b, l->header);
    l->iv = LLVMBuildPhi(c->b, c->i64, "i");
    LLVMAddIncoming(l->iv, &lo, &pre, 1);
    LLVMValueRef more = LLVMBuildICmp(c->b, LLVMIntSLT, l->iv, hi, "");
    LLVMBuildCondBr(c->b, more, body, l->exit);
    LLVMPositionBuilderAtEnd(c->b, body);
    return l->iv;
}

static void loop_close(CG *c, Loop *l)
{
    LLVMValueRef next = LLVMBuildNSWAdd(c->b, l->iv, ci64(c, 1), "");
    LLVMBasicBlockRef from = LLVMGetInsertBlock(c->b);
    LLVMBuildBr(c->b, l->header);
    LLVMAddIncoming(l->iv, &next, &from, 1);
    LLVMPositionBuilderAtEnd(c->b, l->exit);
}

/* ---- values ---- */

typedef struct Index {
    int rank;
    LLVMValueRef v[NND_MAX_RANK];
    LLVMValueRef flat; /* the row-major offset, when known */
    bool domain; /* the kernel's own index (values may be memoized) */
} Index;

static LLVMValueRef emit(CG *c, NodeId id, const Index *ix);

static LLVMValueRef fconst(CG *c, int dtype, double v) { return cconst(c, dtype, v); }

static bool is_float(int dt) { return dt == NND_F32 || dt == NND_F64; }

static LLVMValueRef emit_cast(CG *c, LLVMValueRef v, int from, int to)
{
    if (from == to)
        return v;
    LLVMTypeRef t = vtype(c, to);
    if (is_float(from) && is_float(to))
        return to == NND_F64 ? LLVMBuildFPExt(c->b, v, t, "") : LLVMBuildFPTrunc(c->b, v, t, "");
    if (is_float(from) && to == NND_I32) {
        /* truncation toward zero; NaN and out-of-range saturate (NaN becomes 0) */
        LLVMTypeRef over[2] = {c->i32, vtype(c, from)};
        return intrinsic(c, "llvm.fptosi.sat", over, 2, &v, 1);
    }
    if (is_float(from) && to == NND_BOOL)
        return LLVMBuildFCmp(c->b, LLVMRealUNE, v, fconst(c, from, 0), "");
    if (from == NND_I32 && is_float(to))
        return LLVMBuildSIToFP(c->b, v, t, "");
    if (from == NND_I32 && to == NND_BOOL)
        return LLVMBuildICmp(c->b, LLVMIntNE, v, LLVMConstInt(c->i32, 0, 0), "");
    if (from == NND_BOOL && is_float(to))
        return LLVMBuildUIToFP(c->b, v, t, "");
    if (from == NND_BOOL && to == NND_I32)
        return LLVMBuildZExt(c->b, v, c->i32, "");
    assert(0);
    return v;
}

static LLVMValueRef select3v(CG *c, LLVMValueRef cond, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSelect(c->b, cond, a, b, "");
}

static LLVMValueRef fcmp(CG *c, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFCmp(c->b, p, a, b, "");
}

static LLVMValueRef compare(CG *c, int op, int dt, LLVMValueRef a, LLVMValueRef b)
{
    if (is_float(dt)) {
        LLVMRealPredicate p = op == OP_LT   ? LLVMRealOLT
                              : op == OP_LE ? LLVMRealOLE
                              : op == OP_GT ? LLVMRealOGT
                              : op == OP_GE ? LLVMRealOGE
                              : op == OP_EQ ? LLVMRealOEQ
                                            : LLVMRealUNE;
        return fcmp(c, p, a, b);
    }
    LLVMIntPredicate p = op == OP_LT   ? LLVMIntSLT
                         : op == OP_LE ? LLVMIntSLE
                         : op == OP_GT ? LLVMIntSGT
                         : op == OP_GE ? LLVMIntSGE
                         : op == OP_EQ ? LLVMIntEQ
                                       : LLVMIntNE;
    if (dt == NND_BOOL)
        p = op == OP_LT   ? LLVMIntULT
            : op == OP_LE ? LLVMIntULE
            : op == OP_GT ? LLVMIntUGT
            : op == OP_GE ? LLVMIntUGE
                          : p;
    return LLVMBuildICmp(c->b, p, a, b, "");
}

/* Elementwise maths, matching the interpreter's definitions case for case. */
static LLVMValueRef ew(CG *c, const Node *n, LLVMValueRef *x, int in_dt)
{
    int dt = n->dtype;
    bool fl = is_float(dt);
    switch ((OpId)n->op) {
    case OP_NEG: return fl ? LLVMBuildFNeg(c->b, x[0], "") : LLVMBuildNeg(c->b, x[0], "");
    case OP_EXP: return math_exp(c, dt, x[0]);
    case OP_LOG: return math_log(c, dt, x[0]);
    case OP_SQRT: {
        LLVMTypeRef t = vtype(c, dt);
        return intrinsic(c, "llvm.sqrt", &t, 1, x, 1);
    }
    case OP_RSQRT: {
        LLVMTypeRef t = vtype(c, dt);
        return LLVMBuildFDiv(c->b, fconst(c, dt, 1), intrinsic(c, "llvm.sqrt", &t, 1, x, 1), "");
    }
    case OP_ABS: {
        if (!fl)
            return select3v(c, LLVMBuildICmp(c->b, LLVMIntSLT, x[0], cconst(c, dt, 0), ""),
                            LLVMBuildNeg(c->b, x[0], ""), x[0]);
        LLVMTypeRef t = vtype(c, dt);
        return intrinsic(c, "llvm.fabs", &t, 1, x, 1);
    }
    case OP_SIGN: {
        /* (x > 0) - (x < 0): NaN gives 0 */
        LLVMValueRef pos = compare(c, OP_GT, dt, x[0], cconst(c, dt, 0));
        LLVMValueRef neg = compare(c, OP_LT, dt, x[0], cconst(c, dt, 0));
        return select3v(c, pos, cconst(c, dt, 1),
                        select3v(c, neg, cconst(c, dt, -1), cconst(c, dt, 0)));
    }
    case OP_TANH: return math_tanh(c, dt, x[0]);
    case OP_SIGMOID: {
        /* x >= 0 ? 1/(1+e^-x) : e^x/(1+e^x), with e = e^-|x| */
        LLVMTypeRef t = vtype(c, dt);
        LLVMValueRef ax = intrinsic(c, "llvm.fabs", &t, 1, x, 1);
        LLVMValueRef e = math_exp(c, dt, LLVMBuildFNeg(c->b, ax, ""));
        LLVMValueRef den = LLVMBuildFAdd(c->b, fconst(c, dt, 1), e, "");
        LLVMValueRef pos = fcmp(c, LLVMRealOGE, x[0], fconst(c, dt, 0));
        return select3v(c, pos, LLVMBuildFDiv(c->b, fconst(c, dt, 1), den, ""),
                        LLVMBuildFDiv(c->b, e, den, ""));
    }
    case OP_RELU:
        /* x <= 0 ? 0 : x: NaN stays NaN, -0 becomes 0 */
        return select3v(c, compare(c, OP_LE, dt, x[0], cconst(c, dt, 0)), cconst(c, dt, 0), x[0]);
    case OP_SIN: return math1(c, "nnd_sinf", "nnd_sin", dt, x[0]);
    case OP_COS: return math1(c, "nnd_cosf", "nnd_cos", dt, x[0]);
    case OP_FLOOR: {
        if (!fl)
            return x[0];
        LLVMTypeRef t = vtype(c, dt);
        return intrinsic(c, "llvm.floor", &t, 1, x, 1);
    }
    case OP_NOT: return LLVMBuildNot(c->b, x[0], "");
    case OP_CAST: return emit_cast(c, x[0], in_dt, dt);
    case OP_ADD:
        return fl ? LLVMBuildFAdd(c->b, x[0], x[1], "") : LLVMBuildAdd(c->b, x[0], x[1], "");
    case OP_SUB:
        return fl ? LLVMBuildFSub(c->b, x[0], x[1], "") : LLVMBuildSub(c->b, x[0], x[1], "");
    case OP_MUL:
        return fl ? LLVMBuildFMul(c->b, x[0], x[1], "") : LLVMBuildMul(c->b, x[0], x[1], "");
    case OP_DIV:
        return fl ? LLVMBuildFDiv(c->b, x[0], x[1], "") : LLVMBuildSDiv(c->b, x[0], x[1], "");
    case OP_POW: {
        /* q == 2 ? p*p : pow(p, q), as the interpreter */
        LLVMValueRef p = x[0], q = x[1];
        if (!fl) {
            p = emit_cast(c, p, dt, NND_F64);
            q = emit_cast(c, q, dt, NND_F64);
        }
        int fdt = fl ? dt : NND_F64;
        LLVMTypeRef t[2] = {vtype(c, fdt), vtype(c, fdt)};
        LLVMValueRef pq[2] = {p, q};
        LLVMValueRef r = call(c, fdt == NND_F64 ? "nnd_pow" : "nnd_powf", t[0], t, 2, pq, true);
        r = select3v(c, fcmp(c, LLVMRealOEQ, q, fconst(c, fdt, 2)), LLVMBuildFMul(c->b, p, p, ""),
                     r);
        return fl ? r : emit_cast(c, r, NND_F64, dt);
    }
    case OP_MIN: return select3v(c, compare(c, OP_LT, dt, x[1], x[0]), x[1], x[0]);
    case OP_MAX: return select3v(c, compare(c, OP_GT, dt, x[1], x[0]), x[1], x[0]);
    case OP_LT:
    case OP_LE:
    case OP_GT:
    case OP_GE:
    case OP_EQ:
    case OP_NE: return compare(c, n->op, in_dt, x[0], x[1]);
    case OP_AND: return LLVMBuildAnd(c->b, x[0], x[1], "");
    case OP_OR: return LLVMBuildOr(c->b, x[0], x[1], "");
    case OP_SELECT: return select3v(c, x[0], x[1], x[2]);
    default: assert(0); return NULL;
    }
}

/* Rank-0 values are loop invariant: they are computed once, in the entry block. */
static LLVMValueRef emit_scalar(CG *c, NodeId id)
{
    if (c->scalar[id])
        return c->scalar[id];
    LLVMBasicBlockRef here = LLVMGetInsertBlock(c->b);
    LLVMPositionBuilderAtEnd(c->b, c->entry);
    Index none = {0, {0}, NULL, false};
    LLVMValueRef v = emit(c, id, &none);
    c->scalar[id] = v;
    LLVMPositionBuilderAtEnd(c->b, here);
    return v;
}

static LLVMValueRef emit_load(CG *c, NodeId id, const Index *ix)
{
    Node *n = graph_node(c->g, id);
    int buf = c->s->home[id];
    LLVMValueRef off =
        ix->flat && ix->domain ? ix->flat : offset_of(c, &n->shape, (LLVMValueRef *)ix->v);
    if (n->op == OP_TENSOR && buf < 0) {
        LLVMTypeRef t = mtype(c, n->dtype);
        LLVMValueRef p = LLVMBuildGEP2(c->b, t, c->tensor_globals[id], &off, 1, "");
        LLVMValueRef v = LLVMBuildLoad2(c->b, t, p, "");
        return n->dtype == NND_BOOL ? LLVMBuildTrunc(c->b, v, c->i1, "") : v;
    }
    return load_at(c, buf, n->dtype, off);
}

/* Stores a bad-data status in the step's arguments: the code (NND_STATUS_*), the
 * value that was out of range (an i32) and the limit it broke, for the message. */
static void store_status(CG *c, int code, LLVMValueRef value, int64_t limit)
{
    LLVMValueRef so = ci64(c, (int64_t)offsetof(NndStepArgs, status));
    LLVMBuildStore(c->b, LLVMConstInt(c->i32, (unsigned long long)code, 0),
                   LLVMBuildGEP2(c->b, c->i8, c->args, &so, 1, ""));
    LLVMValueRef vo = ci64(c, (int64_t)offsetof(NndStepArgs, bad_value));
    LLVMBuildStore(c->b, LLVMBuildSIToFP(c->b, value, c->f64, ""),
                   LLVMBuildGEP2(c->b, c->i8, c->args, &vo, 1, ""));
    LLVMValueRef co = ci64(c, (int64_t)offsetof(NndStepArgs, bad_count));
    LLVMBuildStore(c->b, ci64(c, limit), LLVMBuildGEP2(c->b, c->i8, c->args, &co, 1, ""));
}

/* A label in [0, n), or 0 with the status, the label and n recorded; execution
 * goes on with the safe index.  In a loop or reduction kernel the bad labels are a
 * max-reduction into a slot, reported once after the loops (flush_checks): no branch
 * in the loop, which then vectorizes (a one_hot over the classes, say). */
static LLVMValueRef checked_label(CG *c, LLVMValueRef l, int64_t n)
{
    LLVMValueRef bad = LLVMBuildOr(
        c->b, LLVMBuildICmp(c->b, LLVMIntSLT, l, LLVMConstInt(c->i32, 0, 0), ""),
        LLVMBuildICmp(c->b, LLVMIntSGE, l, LLVMConstInt(c->i32, (unsigned long long)n, 0), ""), "");
    if (c->kstart && c->nchecks < (int)(sizeof c->checks / sizeof c->checks[0])) {
        LLVMBuilderRef tb = LLVMCreateBuilderInContext(c->ctx);
        LLVMValueRef first = LLVMGetFirstInstruction(c->kstart);
        if (first)
            LLVMPositionBuilderBefore(tb, first);
        else
            LLVMPositionBuilderAtEnd(tb, c->kstart);
        LLVMValueRef slot = LLVMBuildAlloca(tb, c->i64, "badlabel");
        LLVMBuildStore(tb, ci64(c, INT64_MIN), slot);
        LLVMDisposeBuilder(tb);
        c->checks[c->nchecks].slot = slot;
        c->checks[c->nchecks++].n = n;
        LLVMValueRef wide = LLVMBuildSExt(c->b, l, c->i64, "");
        LLVMValueRef v = select3v(c, bad, wide, ci64(c, INT64_MIN));
        LLVMValueRef cur = LLVMBuildLoad2(c->b, c->i64, slot, "");
        LLVMBuildStore(c->b, select3v(c, LLVMBuildICmp(c->b, LLVMIntSGT, v, cur, ""), v, cur),
                       slot);
        return select3v(c, bad, ci64(c, 0), wide);
    }
    LLVMBasicBlockRef set = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "bad");
    LLVMBasicBlockRef cont = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "ok");
    LLVMBuildCondBr(c->b, bad, set, cont);
    LLVMPositionBuilderAtEnd(c->b, set);
    store_status(c, NND_STATUS_LABEL_RANGE, l, n);
    LLVMBuildBr(c->b, cont);
    LLVMPositionBuilderAtEnd(c->b, cont);
    return LLVMBuildSExt(c->b, select3v(c, bad, LLVMConstInt(c->i32, 0, 0), l), c->i64, "");
}

/* After a kernel's loops: the status of each label check that saw a bad label. */
static void flush_checks(CG *c)
{
    for (int i = 0; i < c->nchecks; i++) {
        LLVMValueRef v = LLVMBuildLoad2(c->b, c->i64, c->checks[i].slot, "");
        LLVMBasicBlockRef set = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "bad");
        LLVMBasicBlockRef cont = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "ok");
        LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntNE, v, ci64(c, INT64_MIN), ""), set, cont);
        LLVMPositionBuilderAtEnd(c->b, set);
        store_status(c, NND_STATUS_LABEL_RANGE, v, c->checks[i].n);
        LLVMBuildBr(c->b, cont);
        LLVMPositionBuilderAtEnd(c->b, cont);
    }
    c->nchecks = 0;
    c->kstart = NULL;
}

/* A leaf: a constant, a run-time hyper-parameter (f64 in the arguments), literal
 * data. */
static LLVMValueRef emit_leaf(CG *c, NodeId id, const Index *ix)
{
    Node *n = graph_node(c->g, id);
    LLVMValueRef v = NULL;
    if (n->op == OP_CONST) {
        v = cconst(c, n->dtype, n->num);
    } else if (n->op == OP_HYPER) {
        LLVMValueRef idx = ci64(c, n->idx);
        LLVMValueRef p = LLVMBuildGEP2(c->b, c->f64, c->hypers, &idx, 1, "");
        v = emit_cast(c, LLVMBuildLoad2(c->b, c->f64, p, ""), NND_F64, n->dtype);
    } else if (n->op == OP_TENSOR) {
        v = emit_load(c, id, ix);
    } else {
        assert(0);
    }
    return v;
}

/* A source: a dropout-style draw (nnd_random_uniform at the element's flat
 * index), or the size of some of a tensor's axes. */
static LLVMValueRef emit_source(CG *c, const Node *n, const Index *ix)
{
    if (n->op == OP_RANDSTEP) {
        /* nnd_random_uniform(seed, key + step * golden, flat index) */
        LLVMValueRef step =
            emit_cast(c, emit_scalar(c, n->in[0]), graph_node(c->g, n->in[0])->dtype, NND_F64);
        LLVMValueRef st = LLVMBuildFPToUI(c->b, step, c->i64, "");
        LLVMValueRef stream =
            LLVMBuildAdd(c->b, ci64(c, (int64_t)n->key),
                         LLVMBuildMul(c->b, st, ci64(c, (int64_t)0x9E3779B97F4A7C15ull), ""), "");
        LLVMValueRef flat =
            ix->flat && ix->domain ? ix->flat : offset_of(c, &n->shape, (LLVMValueRef *)ix->v);
        LLVMValueRef args[3] = {ci64(c, (int64_t)(uint64_t)n->num), stream, flat};
        LLVMTypeRef t[3] = {c->i64, c->i64, c->i64};
        LLVMValueRef u = call(c, "nnd_random_uniform", c->f64, t, 3, args, true);
        LLVMValueRef v = emit_cast(c, u, NND_F64, n->dtype);
        if (n->dtype == NND_F32) /* [0, 1) in f32 too: 1 - 2^-25 and up round to 1 */
            v = select3v(c, fcmp(c, LLVMRealOGE, v, fconst(c, NND_F32, 1.0)),
                         fconst(c, NND_F32, 0x1.fffffep-1), v);
        return v;
    }
    assert(n->op == OP_DIMSIZE);
    Node *r = graph_node(c->g, n->in[0]);
    LLVMValueRef p = ci64(c, 1);
    for (int i = 0; i < r->shape.rank; i++)
        if (n->mask & (1u << i))
            p = LLVMBuildNSWMul(c->b, p, dim(c, r->shape.d[i]), "");
    return is_float(n->dtype) ? LLVMBuildSIToFP(c->b, p, vtype(c, n->dtype), "")
                              : LLVMBuildTrunc(c->b, p, vtype(c, n->dtype), "");
}

/* concat: a below the split on the axis, b from it on (a branch, so each side is
 * read only where it is used). */
static LLVMValueRef emit_concat(CG *c, const Node *n, const Index *ix)
{
    Node *in = graph_node(c->g, n->in[0]);
    Index j = {in->shape.rank, {0}, NULL, false};
    Node *bn = graph_node(c->g, n->in[1]);
    int64_t split = in->shape.d[n->idx];
    LLVMValueRef first = LLVMBuildICmp(c->b, LLVMIntSLT, ix->v[n->idx], ci64(c, split), "");
    LLVMBasicBlockRef ya = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "cat_a");
    LLVMBasicBlockRef yb = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "cat_b");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "cat_join");
    LLVMBuildCondBr(c->b, first, ya, yb);
    LLVMPositionBuilderAtEnd(c->b, ya);
    for (int i = 0; i < n->shape.rank; i++)
        j.v[i] = ix->v[i];
    LLVMValueRef va = emit(c, n->in[0], &j);
    LLVMBasicBlockRef ya_end = LLVMGetInsertBlock(c->b);
    LLVMBuildBr(c->b, join);
    LLVMPositionBuilderAtEnd(c->b, yb);
    Index jb = {bn->shape.rank, {0}, NULL, false};
    for (int i = 0; i < n->shape.rank; i++)
        jb.v[i] = i == n->idx ? LLVMBuildNSWSub(c->b, ix->v[i], ci64(c, split), "") : ix->v[i];
    LLVMValueRef vb = emit(c, n->in[1], &jb);
    LLVMBasicBlockRef yb_end = LLVMGetInsertBlock(c->b);
    LLVMBuildBr(c->b, join);
    LLVMPositionBuilderAtEnd(c->b, join);
    LLVMValueRef v = LLVMBuildPhi(c->b, vtype(c, n->dtype), "");
    LLVMValueRef vals[2] = {va, vb};
    LLVMBasicBlockRef blocks[2] = {ya_end, yb_end};
    LLVMAddIncoming(v, vals, blocks, 2);
    return v;
}

/* pad: inside the slice, the input; elsewhere 0. */
static LLVMValueRef emit_pad(CG *c, const Node *n, const Index *ix)
{
    Node *in = graph_node(c->g, n->in[0]);
    Index j = {in->shape.rank, {0}, NULL, false};
    const int64_t *start = &c->g->ipool.v[n->pool], *step = start + n->shape.rank;
    LLVMValueRef inside = LLVMConstInt(c->i1, 1, 0);
    for (int i = 0; i < n->shape.rank; i++) {
        LLVMValueRef rel = LLVMBuildNSWSub(c->b, ix->v[i], ci64(c, start[i]), "");
        LLVMValueRef q = LLVMBuildSDiv(c->b, rel, ci64(c, step[i]), "");
        LLVMValueRef r = LLVMBuildSRem(c->b, rel, ci64(c, step[i]), "");
        LLVMValueRef ok = LLVMBuildAnd(
            c->b, LLVMBuildICmp(c->b, LLVMIntSGE, rel, ci64(c, 0), ""),
            LLVMBuildAnd(c->b, LLVMBuildICmp(c->b, LLVMIntEQ, r, ci64(c, 0), ""),
                         LLVMBuildICmp(c->b, LLVMIntSLT, q, dim(c, in->shape.d[i]), ""), ""),
            "");
        inside = LLVMBuildAnd(c->b, inside, ok, "");
        j.v[i] = q;
    }
    LLVMBasicBlockRef from = LLVMGetInsertBlock(c->b);
    LLVMBasicBlockRef yes = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "pad_in");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "pad_join");
    LLVMBuildCondBr(c->b, inside, yes, join);
    LLVMPositionBuilderAtEnd(c->b, yes);
    LLVMValueRef inner = emit(c, n->in[0], &j);
    LLVMBasicBlockRef yes_end = LLVMGetInsertBlock(c->b);
    LLVMBuildBr(c->b, join);
    LLVMPositionBuilderAtEnd(c->b, join);
    LLVMValueRef v = LLVMBuildPhi(c->b, vtype(c, n->dtype), "");
    LLVMValueRef vals[2] = {inner, cconst(c, n->dtype, 0)};
    LLVMBasicBlockRef blocks[2] = {yes_end, from};
    LLVMAddIncoming(v, vals, blocks, 2);
    return v;
}

/* A reshape that adds or removes axes of size 1 only: the input's index from the
 * output's without the flat offset (j->v filled; false when the shapes differ
 * otherwise). */
static bool unit_reshape(CG *c, const Node *n, const Node *in, const Index *ix, Index *j)
{
    int a = 0, b = 0;
    while (a < n->shape.rank || b < in->shape.rank) {
        if (a < n->shape.rank && n->shape.d[a] == 1) {
            a++;
        } else if (b < in->shape.rank && in->shape.d[b] == 1) {
            j->v[b++] = ci64(c, 0);
        } else if (a < n->shape.rank && b < in->shape.rank && n->shape.d[a] == in->shape.d[b]) {
            j->v[b++] = ix->v[a++];
        } else {
            return false;
        }
    }
    return true;
}

/* A layout op: the input read at another index (broadcast, reshape, transpose,
 * slice), or a choice between inputs (concat, pad). */
static LLVMValueRef emit_layout(CG *c, const Node *n, const Index *ix)
{
    if (n->op == OP_CONCAT)
        return emit_concat(c, n, ix);
    if (n->op == OP_PAD)
        return emit_pad(c, n, ix);
    Node *in = graph_node(c->g, n->in[0]);
    Index j = {in->shape.rank, {0}, NULL, false};
    if (n->op == OP_BROADCAST) {
        int off = n->shape.rank - in->shape.rank;
        for (int i = 0; i < in->shape.rank; i++)
            j.v[i] = in->shape.d[i] == 1 && n->shape.d[i + off] != 1 ? ci64(c, 0) : ix->v[i + off];
    } else if (n->op == OP_RESHAPE && unit_reshape(c, n, in, ix, &j)) {
        /* only axes of size 1 added or removed: the other indices carry over */
    } else if (n->op == OP_RESHAPE) {
        /* through the flat offset */
        LLVMValueRef flat = ix->flat ? ix->flat : offset_of(c, &n->shape, (LLVMValueRef *)ix->v);
        LLVMValueRef rem = flat;
        for (int i = in->shape.rank - 1; i >= 0; i--) {
            LLVMValueRef d = dim(c, in->shape.d[i]);
            j.v[i] = i ? LLVMBuildSRem(c->b, rem, d, "") : rem;
            if (i)
                rem = LLVMBuildSDiv(c->b, rem, d, "");
        }
        j.flat = flat;
    } else if (n->op == OP_TRANSPOSE) {
        const int64_t *perm = &c->g->ipool.v[n->pool];
        for (int i = 0; i < n->shape.rank; i++)
            j.v[perm[i]] = ix->v[i];
    } else if (n->op == OP_SLICE) {
        const int64_t *start = &c->g->ipool.v[n->pool], *step = start + n->shape.rank;
        for (int i = 0; i < n->shape.rank; i++)
            j.v[i] = LLVMBuildNSWAdd(c->b, ci64(c, start[i]),
                                     LLVMBuildNSWMul(c->b, ix->v[i], ci64(c, step[i]), ""), "");
    }
    return emit(c, n->in[0], &j);
}

/* pick (the element at each label) and one_hot, with the labels checked. */
static LLVMValueRef emit_index(CG *c, const Node *n, const Index *ix)
{
    LLVMValueRef v;
    Node *x = graph_node(c->g, n->in[0]);
    if (n->op == OP_PICK) {
        int64_t cls = x->shape.d[x->shape.rank - 1];
        Index li = *ix;
        li.domain = ix->domain;
        LLVMValueRef l = checked_label(c, emit(c, n->in[1], &li), cls);
        Index xi = {x->shape.rank, {0}, NULL, false};
        for (int i = 0; i < n->shape.rank; i++)
            xi.v[i] = ix->v[i];
        xi.v[n->shape.rank] = l;
        v = emit(c, n->in[0], &xi);
    } else { /* ONE_HOT */
        Index li = {x->shape.rank, {0}, NULL, false};
        for (int i = 0; i < x->shape.rank; i++)
            li.v[i] = ix->v[i];
        LLVMValueRef l = checked_label(c, emit(c, n->in[0], &li), n->idx);
        LLVMValueRef hit = LLVMBuildICmp(c->b, LLVMIntEQ, l, ix->v[n->shape.rank - 1], "");
        v = select3v(c, hit, cconst(c, n->dtype, 1), cconst(c, n->dtype, 0));
    }
    return v;
}

/* The value of node id at index ix of the kernel: loaded when it has a home the
 * kernel does not compute, else computed inline from its inputs (memoized per
 * iteration, so a value used twice is computed once). */
static LLVMValueRef emit(CG *c, NodeId id, const Index *ix)
{
    Node *n = graph_node(c->g, id);
    if (n->shape.rank == 0 && ix->rank != -1 && c->scalar && LLVMGetInsertBlock(c->b) != c->entry)
        return emit_scalar(c, id);
    if (ix->domain && c->memo[id])
        return c->memo[id];
    LLVMValueRef v = NULL;
    /* a value with a home not computed by this kernel is loaded */
    bool own = false;
    if (c->k && c->k->kind == KER_LOOP)
        for (int i = 0; i < c->k->stores.n; i++)
            own |= c->k->stores.v[i].node == id && c->k->stores.v[i].buf == c->s->home[id];
    if (c->s->home[id] >= 0 && !own) {
        v = emit_load(c, id, ix);
    } else {
        switch (op_info[n->op].kind) {
        case OPK_LEAF: v = emit_leaf(c, id, ix); break;
        case OPK_SOURCE: v = emit_source(c, n, ix); break;
        case OPK_EW1:
        case OPK_EW2:
        case OPK_EW3: {
            LLVMValueRef x[3];
            for (int i = 0; i < n->nin; i++)
                x[i] = emit(c, n->in[i], ix);
            v = ew(c, n, x, graph_node(c->g, n->in[n->op == OP_SELECT ? 1 : 0])->dtype);
            break;
        }
        case OPK_LAYOUT: v = emit_layout(c, n, ix); break;
        case OPK_INDEX: v = emit_index(c, n, ix); break;
        case OPK_ALIAS: v = emit(c, n->in[0], ix); break;
        default: assert(0);
        }
    }
    if (ix->domain)
        c->memo[id] = v;
    return v;
}

/* ---- kernels ---- */

/* A loop kernel can run over its elements in one flat loop when every value it
 * reads sits at the same flat position (or is a scalar). */
static bool flat_ok(CG *c, NodeId id, int depth)
{
    Node *n = graph_node(c->g, id);
    if (n->shape.rank == 0)
        return true;
    bool own = false;
    for (int i = 0; i < c->k->stores.n; i++)
        own |= c->k->stores.v[i].node == id && c->k->stores.v[i].buf == c->s->home[id];
    if ((c->s->home[id] >= 0 && !own) || n->op == OP_TENSOR)
        return true;
    OpKind k = op_info[n->op].kind;
    if (k == OPK_LAYOUT) {
        Node *in = graph_node(c->g, n->in[0]);
        if (n->op == OP_BROADCAST && in->shape.rank == 0)
            return true;
        if (n->op == OP_RESHAPE)
            return flat_ok(c, n->in[0], depth + 1);
        return false;
    }
    if (k == OPK_INDEX)
        return false;
    if (k == OPK_ALIAS)
        return flat_ok(c, n->in[0], depth + 1);
    for (int i = 0; i < n->nin; i++)
        if (!flat_ok(c, n->in[i], depth + 1))
            return false;
    return true;
}

static void begin_function(CG *c, const char *name, LLVMTypeRef ty, bool internal)
{
    c->fn = LLVMAddFunction(c->mod, name, ty);
    if (internal)
        LLVMSetLinkage(c->fn, LLVMInternalLinkage);
    /* A kernel stays a function of its own: inlined into the step it would be
     * compiled twice when a parallel loop also takes its address, and it could not
     * go to another of the parallel compile's parts (jit.c); a call per kernel
     * costs nothing measurable. */
    const char *attrs[] = {"nounwind", "noinline"};
    for (int i = 0; i < (internal ? 2 : 1); i++) {
        unsigned kind = LLVMGetEnumAttributeKindForName(attrs[i], strlen(attrs[i]));
        LLVMAddAttributeAtIndex(c->fn, LLVMAttributeFunctionIndex,
                                LLVMCreateEnumAttribute(c->ctx, kind, 0));
    }
    /* keep loops as loops: no memcpy/memset calls the runtime does not list */
    LLVMAddAttributeAtIndex(c->fn, LLVMAttributeFunctionIndex,
                            LLVMCreateStringAttribute(c->ctx, "no-builtins", 11, "", 0));
    c->args = LLVMGetParam(c->fn, 0);
    c->entry = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "entry");
    LLVMPositionBuilderAtEnd(c->b, c->entry);
    c->batch = arg_field(c, c->args, offsetof(NndStepArgs, batch), c->i64);
    c->hypers = arg_field(c, c->args, offsetof(NndStepArgs, hypers), c->ptr);
    memset(c->bufptr, 0, sizeof(LLVMValueRef) * (size_t)c->s->bufs.n);
}

/* A buffer's address, loaded once in the entry block when first used. */
static LLVMValueRef buffer_ptr(CG *c, int i)
{
    if (c->bufptr[i])
        return c->bufptr[i];
    LLVMBasicBlockRef here = LLVMGetInsertBlock(c->b);
    LLVMPositionBuilderAtEnd(c->b, c->entry);
    const Buffer *bf = &c->s->bufs.v[i];
    LLVMValueRef idx, p = NULL;
    switch (bf->kind) {
    case BUF_ARENA:
        idx = ci64(c, bf->offset);
        p = LLVMBuildGEP2(c->b, c->i8, arg_field(c, c->args, offsetof(NndStepArgs, arena), c->ptr),
                          &idx, 1, "");
        break;
    case BUF_PARAM:
    case BUF_STATE: {
        LLVMValueRef arr = arg_field(c, c->args,
                                     bf->kind == BUF_PARAM ? offsetof(NndStepArgs, params)
                                                           : offsetof(NndStepArgs, states),
                                     c->ptr);
        idx = ci64(c, bf->index);
        p = LLVMBuildLoad2(c->b, c->ptr, LLVMBuildGEP2(c->b, c->ptr, arr, &idx, 1, ""), "");
        break;
    }
    case BUF_X: p = arg_field(c, c->args, offsetof(NndStepArgs, x), c->ptr); break;
    case BUF_Y: p = arg_field(c, c->args, offsetof(NndStepArgs, y), c->ptr); break;
    case BUF_OUT:
        idx = ci64(c, bf->index);
        p = LLVMBuildGEP2(c->b, c->f64, arg_field(c, c->args, offsetof(NndStepArgs, out), c->ptr),
                          &idx, 1, "");
        break;
    }
    c->bufptr[i] = p;
    LLVMPositionBuilderAtEnd(c->b, here);
    return p;
}

static void end_function(CG *c, LLVMBasicBlockRef first)
{
    LLVMPositionBuilderAtEnd(c->b, c->entry);
    LLVMBuildBr(c->b, first);
}

static void clear_memo(CG *c)
{
    memset(c->memo, 0, sizeof(LLVMValueRef) * (size_t)graph_count(c->g));
}

/* Loop nest over a domain; the outermost axis runs over [begin, end).  body() is
 * called in the innermost block with the index. */
typedef void (*BodyFn)(CG *c, const Index *ix, void *ctx);

/* The loops over dom, the range [begin, end) on axis `outer` (opened first), the other
 * axes in order inside it (or one flat loop over the offsets). */
static void loop_nest_on(CG *c, const Shape *dom, bool flat, int outer, LLVMValueRef begin,
                         LLVMValueRef end, BodyFn body, void *ctx)
{
    Index ix = {dom->rank, {0}, NULL, true};
    if (dom->rank == 0) {
        ix.flat = ci64(c, 0);
        body(c, &ix, ctx);
        return;
    }
    if (flat) {
        Loop l;
        LLVMValueRef i = loop_open(c, &l, begin, end);
        ix.flat = i;
        /* the multi-index is needed only for symbolic-size reads; recompute lazily */
        LLVMValueRef rem = i;
        for (int d = dom->rank - 1; d >= 0; d--) {
            LLVMValueRef dd = dim(c, dom->d[d]);
            ix.v[d] = d ? LLVMBuildSRem(c->b, rem, dd, "") : rem;
            if (d)
                rem = LLVMBuildSDiv(c->b, rem, dd, "");
        }
        body(c, &ix, ctx);
        loop_close(c, &l);
        return;
    }
    Loop loops[NND_MAX_RANK];
    int order[NND_MAX_RANK], n = 0;
    order[n++] = outer;
    for (int d = 0; d < dom->rank; d++)
        if (d != outer)
            order[n++] = d;
    for (int i = 0; i < dom->rank; i++) {
        int d = order[i];
        ix.v[d] = loop_open(c, &loops[i], d == outer ? begin : ci64(c, 0),
                            d == outer ? end : dim(c, dom->d[d]));
    }
    ix.flat = offset_of(c, dom, ix.v);
    body(c, &ix, ctx);
    for (int i = dom->rank - 1; i >= 0; i--)
        loop_close(c, &loops[i]);
}

static void loop_nest(CG *c, const Shape *dom, bool flat, LLVMValueRef begin, LLVMValueRef end,
                      BodyFn body, void *ctx)
{
    loop_nest_on(c, dom, flat, 0, begin, end, body, ctx);
}

static void loop_body(CG *c, const Index *ix, void *ctx)
{
    (void)ctx;
    clear_memo(c);
    /* every value first, then every store: a store never changes what a later value
     * in the same iteration reads */
    LLVMValueRef vals[256];
    int n = c->k->stores.n;
    assert(n <= 256);
    for (int i = 0; i < n; i++)
        vals[i] = emit(c, c->k->stores.v[i].node, ix);
    /* reductions riding along: their inputs at this index, into the accumulators */
    for (int i = 0; i < c->k->accs.n; i++) {
        Node *r = graph_node(c->g, c->k->accs.v[i].node);
        int dt = graph_node(c->g, r->in[0])->dtype;
        LLVMTypeRef t = vtype(c, dt);
        LLVMValueRef x = emit(c, r->in[0], ix);
        LLVMValueRef a = LLVMBuildLoad2(c->b, t, c->acc_slot[i], "");
        LLVMValueRef v;
        if (r->op == OP_SUM) {
            v = LLVMBuildFAdd(c->b, a, x, "");
            LLVMSetFastMathFlags(v, LLVMFastMathAllowReassoc);
        } else {
            /* a NaN counts as +inf, so the maximum sees no NaN and may promise so
             * (nnan, nsz): the loop vectorizer only turns maxnum chains into vector
             * reductions with those flags.  Where a NaN may be ignored (Node.nonan),
             * the promise alone: one vmaxps a vector, where the select took three
             * instructions (a NaN then gives whichever value). */
            if (!r->nonan) {
                LLVMValueRef isnan = LLVMBuildFCmp(c->b, LLVMRealUNO, x, x, "");
                x = LLVMBuildSelect(c->b, isnan, fconst(c, dt, INFINITY), x, "");
            }
            LLVMValueRef args[2] = {a, x};
            v = intrinsic(c, "llvm.maxnum", &t, 1, args, 2);
            LLVMSetFastMathFlags(v, LLVMFastMathNoNaNs | LLVMFastMathNoSignedZeros);
        }
        LLVMBuildStore(c->b, v, c->acc_slot[i]);
    }
    for (int i = 0; i < n; i++) {
        const Store *st = &c->k->stores.v[i];
        store_at(c, st->buf, graph_node(c->g, st->node)->dtype, ix->flat, vals[i]);
    }
}

/* The value a reduction starts from: 0 for a sum, -inf for a maximum. */
static double acc_init(const Node *r) { return r->op == OP_SUM ? 0 : -INFINITY; }

static void gen_loop(CG *c, const Kernel *k)
{
    c->flat = true;
    for (int i = 0; i < k->stores.n && c->flat; i++) {
        Node *n = graph_node(c->g, k->stores.v[i].node);
        for (int j = 0; j < n->nin && c->flat; j++)
            c->flat = flat_ok(c, n->in[j], 0);
    }
    for (int i = 0; i < k->accs.n && c->flat; i++)
        c->flat = flat_ok(c, graph_node(c->g, k->accs.v[i].node)->in[0], 0);
    LLVMBasicBlockRef first = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "start");
    LLVMPositionBuilderAtEnd(c->b, first);
    c->kstart = first;
    c->nchecks = 0;
    /* accumulators: this range's partial sums (promoted to registers by mem2reg) */
    assert(k->accs.n <= 64);
    for (int i = 0; i < k->accs.n; i++) {
        Node *r = graph_node(c->g, k->accs.v[i].node);
        int dt = graph_node(c->g, r->in[0])->dtype;
        c->acc_slot[i] = LLVMBuildAlloca(c->b, vtype(c, dt), "acc");
        LLVMBuildStore(c->b, fconst(c, dt, acc_init(r)), c->acc_slot[i]);
    }
    loop_nest(c, &k->domain, c->flat, LLVMGetParam(c->fn, 1), LLVMGetParam(c->fn, 2), loop_body,
              NULL);
    /* each range adds its part to the result: atomically, as ranges run on several
     * threads (so the last bits of a sum may differ from run to run; training itself
     * never reads these) */
    for (int i = 0; i < k->accs.n; i++) {
        Node *r = graph_node(c->g, k->accs.v[i].node);
        int dt = graph_node(c->g, r->in[0])->dtype;
        LLVMValueRef v = LLVMBuildLoad2(c->b, vtype(c, dt), c->acc_slot[i], "");
        LLVMValueRef ptr = buffer_ptr(c, k->accs.v[i].buf);
        LLVMBuildAtomicRMW(c->b, r->op == OP_SUM ? LLVMAtomicRMWBinOpFAdd : LLVMAtomicRMWBinOpFMax,
                           ptr, v, LLVMAtomicOrderingMonotonic, 0);
    }
    flush_checks(c);
    LLVMBuildRetVoid(c->b);
    end_function(c, first);
}

typedef struct ReduceCtx {
    int pass; /* logsumexp: 0 the maxima, 1 the sums */
    LLVMValueRef count;
} ReduceCtx;

/* The output offset of an input index: reduced axes dropped (kept as 0). */
static LLVMValueRef out_offset(CG *c, const Node *r, const Index *ix, LLVMValueRef *along)
{
    Node *in = graph_node(c->g, r->in[0]);
    LLVMValueRef off = NULL, al = ci64(c, 0);
    uint32_t mask = r->op == OP_ARGMAX ? 1u << r->idx : r->mask;
    for (int i = 0; i < in->shape.rank; i++) {
        if (mask & (1u << i)) {
            al = LLVMBuildNSWAdd(c->b, LLVMBuildNSWMul(c->b, al, dim(c, in->shape.d[i]), ""),
                                 ix->v[i], "");
            continue;
        }
        off = off ? LLVMBuildNSWAdd(c->b, LLVMBuildNSWMul(c->b, off, dim(c, in->shape.d[i]), ""),
                                    ix->v[i], "")
                  : ix->v[i];
    }
    if (along)
        *along = al;
    return off ? off : ci64(c, 0);
}

static void reduce_body(CG *c, const Index *ix, void *vctx)
{
    ReduceCtx *rc = vctx;
    clear_memo(c);
    const Kernel *k = c->k;
    Node *r = graph_node(c->g, k->node);
    int dt = graph_node(c->g, r->in[0])->dtype;
    int out = c->s->home[k->node];
    LLVMValueRef x = emit(c, r->in[0], ix), along;
    LLVMValueRef o = out_offset(c, r, ix, &along);
    switch ((OpId)r->op) {
    case OP_SUM:
    case OP_MEAN: {
        LLVMValueRef acc = load_at(c, out, dt, o);
        LLVMValueRef sum =
            is_float(dt) ? LLVMBuildFAdd(c->b, acc, x, "") : LLVMBuildAdd(c->b, acc, x, "");
        /* a sum may be reassociated: once the accumulator is kept in a register (the
         * innermost axis reduced), the loop vectorizes with several partial sums */
        if (is_float(dt))
            LLVMSetFastMathFlags(sum, LLVMFastMathAllowReassoc);
        store_at(c, out, dt, o, sum);
        break;
    }
    case OP_RMAX: {
        LLVMValueRef m = load_at(c, out, dt, o);
        LLVMValueRef take = compare(c, OP_GT, dt, x, m);
        if (is_float(dt) && !r->nonan)
            take = LLVMBuildOr(c->b, take, fcmp(c, LLVMRealUNO, x, x), "");
        store_at(c, out, dt, o, select3v(c, take, x, m));
        break;
    }
    case OP_LOGSUMEXP:
        if (rc->pass == 0) {
            /* the maximum, a NaN counting as +inf: maxnum with nnan and nsz, which the
             * loop vectorizer turns into a vector reduction (the NaN comes back in the
             * sums) */
            LLVMValueRef m = load_at(c, k->aux, dt, o);
            LLVMTypeRef t = vtype(c, dt);
            LLVMValueRef isnan = fcmp(c, LLVMRealUNO, x, x);
            LLVMValueRef args[2] = {m, select3v(c, isnan, fconst(c, dt, INFINITY), x)};
            LLVMValueRef v = intrinsic(c, "llvm.maxnum", &t, 1, args, 2);
            LLVMSetFastMathFlags(v, LLVMFastMathNoNaNs | LLVMFastMathNoSignedZeros);
            store_at(c, k->aux, dt, o, v);
        } else {
            /* sums of e^(x - max), reassociable (vector partial sums); an infinite max
             * is replaced by 0, so the sum is NaN exactly when a NaN or +inf - +inf
             * is there, which the finishing pass tells from an infinite maximum */
            LLVMValueRef m = load_at(c, k->aux, dt, o);
            LLVMTypeRef t = vtype(c, dt);
            LLVMValueRef fin = fcmp(c, LLVMRealONE, intrinsic(c, "llvm.fabs", &t, 1, &m, 1),
                                    fconst(c, dt, INFINITY));
            LLVMValueRef mc = select3v(c, fin, m, fconst(c, dt, 0));
            LLVMValueRef e = math_exp(c, dt, LLVMBuildFSub(c->b, x, mc, ""));
            LLVMValueRef acc = load_at(c, out, dt, o);
            LLVMValueRef sum = LLVMBuildFAdd(c->b, acc, e, "");
            LLVMSetFastMathFlags(sum, LLVMFastMathAllowReassoc);
            store_at(c, out, dt, o, sum);
        }
        break;
    case OP_ARGMAX: {
        LLVMValueRef m = load_at(c, k->aux, dt, o);
        LLVMValueRef take = compare(c, OP_GT, dt, x, m);
        if (is_float(dt))
            take = LLVMBuildOr(
                c->b, take,
                LLVMBuildAnd(c->b, fcmp(c, LLVMRealUNO, x, x), fcmp(c, LLVMRealORD, m, m), ""), "");
        store_at(c, k->aux, dt, o, select3v(c, take, x, m));
        LLVMValueRef cur = load_at(c, out, NND_I32, o);
        store_at(c, out, NND_I32, o,
                 select3v(c, take, LLVMBuildTrunc(c->b, along, c->i32, ""), cur));
        break;
    }
    default: assert(0);
    }
}

typedef struct FillCtx {
    int buf, dtype;
    double value;
    int op; /* finishing: 0 none, OP_MEAN divide, OP_LOGSUMEXP max + log */
    LLVMValueRef count;
    int aux;
} FillCtx;

static void fill_body(CG *c, const Index *ix, void *vctx)
{
    FillCtx *f = vctx;
    if (f->op == OP_MEAN) {
        LLVMValueRef v = load_at(c, f->buf, f->dtype, ix->flat);
        store_at(c, f->buf, f->dtype, ix->flat, LLVMBuildFDiv(c->b, v, f->count, ""));
    } else if (f->op == OP_LOGSUMEXP) {
        LLVMValueRef m = load_at(c, f->aux, f->dtype, ix->flat);
        LLVMValueRef s = load_at(c, f->buf, f->dtype, ix->flat);
        LLVMTypeRef t = vtype(c, f->dtype);
        LLVMValueRef fin = fcmp(c, LLVMRealONE, intrinsic(c, "llvm.fabs", &t, 1, &m, 1),
                                fconst(c, f->dtype, INFINITY));
        LLVMValueRef r = LLVMBuildFAdd(c->b, m, math_log(c, f->dtype, s), "");
        /* an infinite maximum: itself, unless a NaN made the sums NaN */
        LLVMValueRef inf = select3v(c, fcmp(c, LLVMRealUNO, s, s), s, m);
        store_at(c, f->buf, f->dtype, ix->flat, select3v(c, fin, r, inf));
    } else {
        store_at(c, f->buf, f->dtype, ix->flat, cconst(c, f->dtype, f->value));
    }
}

static void gen_reduce(CG *c, const Kernel *k)
{
    Node *r = graph_node(c->g, k->node);
    Node *in = graph_node(c->g, r->in[0]);
    int dt = in->dtype;
    LLVMBasicBlockRef first = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "start");
    LLVMPositionBuilderAtEnd(c->b, first);
    c->kstart = first;
    c->nchecks = 0;
    LLVMValueRef begin = LLVMGetParam(c->fn, 1), end = LLVMGetParam(c->fn, 2);
    /* the outputs this range owns: all of them, or (split on a kept outer axis) rows */
    Shape outs = r->shape;
    Shape flat_out = {1, {shape_numel_at(&outs, 1)}};
    LLVMValueRef per_row = ci64(c, 1), obegin, oend;
    bool sym = false;
    for (int i = 0; i < outs.rank; i++)
        sym |= outs.d[i] < 0;
    LLVMValueRef ototal = ci64(c, 1);
    for (int i = 0; i < outs.rank; i++)
        ototal = LLVMBuildNSWMul(c->b, ototal, dim(c, outs.d[i]), "");
    (void)flat_out;
    (void)sym;
    if (k->parallel) { /* (the axes before k->outer are all reduced) */
        for (int i = k->outer + 1; i < in->shape.rank; i++)
            if (!((r->op == OP_ARGMAX ? 1u << r->idx : r->mask) & (1u << i)))
                per_row = LLVMBuildNSWMul(c->b, per_row, dim(c, in->shape.d[i]), "");
        obegin = LLVMBuildNSWMul(c->b, begin, per_row, "");
        oend = LLVMBuildNSWMul(c->b, end, per_row, "");
    } else {
        obegin = ci64(c, 0);
        oend = ototal;
    }
    Shape line = {1, {0}};
    line.d[0] = 1; /* placeholder: fills run flat over [obegin, oend) */
    int out = c->s->home[k->node];
    double init = r->op == OP_SUM || r->op == OP_MEAN ? 0 : -INFINITY;
    FillCtx f = {out,   r->op == OP_ARGMAX ? NND_I32 : dt, r->op == OP_ARGMAX ? 0 : init, 0, NULL,
                 k->aux};
    if (r->op == OP_LOGSUMEXP)
        f.value = 0; /* the sums start at 0, the maxima (aux) at -inf */
    loop_nest(c, &line, true, obegin, oend, fill_body, &f);
    if (k->aux >= 0) {
        FillCtx fa = {k->aux, dt, -INFINITY, 0, NULL, -1};
        loop_nest(c, &line, true, obegin, oend, fill_body, &fa);
    }
    ReduceCtx rc = {0, NULL};
    loop_nest_on(c, &k->domain, false, k->outer, begin, end, reduce_body, &rc);
    if (r->op == OP_LOGSUMEXP) {
        rc.pass = 1;
        loop_nest(c, &k->domain, false, begin, end, reduce_body, &rc);
        FillCtx fin = {out, dt, 0, OP_LOGSUMEXP, NULL, k->aux};
        loop_nest(c, &line, true, obegin, oend, fill_body, &fin);
    } else if (r->op == OP_MEAN) {
        LLVMValueRef cnt = ci64(c, 1);
        for (int i = 0; i < in->shape.rank; i++)
            if (r->mask & (1u << i))
                cnt = LLVMBuildNSWMul(c->b, cnt, dim(c, in->shape.d[i]), "");
        FillCtx fin = {out, dt, 0, OP_MEAN, LLVMBuildSIToFP(c->b, cnt, vtype(c, dt), ""), -1};
        loop_nest(c, &line, true, obegin, oend, fill_body, &fin);
    }
    flush_checks(c);
    LLVMBuildRetVoid(c->b);
    end_function(c, first);
}

/* ---- the entry function ---- */

static LLVMValueRef buffer_base(CG *c, NodeId id)
{
    Node *n = graph_node(c->g, id);
    if (n->op == OP_TENSOR && c->s->home[id] < 0)
        return c->tensor_globals[id];
    return buffer_ptr(c, c->s->home[id]);
}

/* An int64 array on the stack holding vals (the shape structs of the runtime). */
static LLVMValueRef i64_struct(CG *c, LLVMValueRef *vals, int n)
{
    LLVMValueRef mem = LLVMBuildArrayAlloca(c->b, c->i64, ci64(c, n), "");
    for (int i = 0; i < n; i++) {
        LLVMValueRef idx = ci64(c, i);
        LLVMBuildStore(c->b, vals[i], LLVMBuildGEP2(c->b, c->i64, mem, &idx, 1, ""));
    }
    return mem;
}

static void gen_conv(CG *c, const Kernel *k)
{
    Node *n = graph_node(c->g, k->node);
    /* x, w and y of the forward convolution, whatever this op computes */
    NodeId xn = n->op == OP_CONV2D_GX ? k->node : n->in[0];
    NodeId wn = n->op == OP_CONV2D_GW ? k->node : n->in[1];
    NodeId yn = n->op == OP_CONV2D ? k->node : n->op == OP_CONV2D_GX ? n->in[0] : n->in[1];
    const Shape *x = &graph_node(c->g, xn)->shape, *w = &graph_node(c->g, wn)->shape,
                *y = &graph_node(c->g, yn)->shape;
    ConvAttrs a = graph_conv_attrs(c->g, n);
    LLVMValueRef f[16] = {dim(c, x->d[0]), dim(c, x->d[1]), dim(c, x->d[2]), dim(c, x->d[3]),
                          dim(c, w->d[0]), dim(c, w->d[2]), dim(c, w->d[3]), dim(c, y->d[2]),
                          dim(c, y->d[3]), ci64(c, a.sh),   ci64(c, a.sw),   ci64(c, a.ph),
                          ci64(c, a.pw),   ci64(c, a.dh),   ci64(c, a.dw),   ci64(c, a.groups)};
    LLVMValueRef shape = i64_struct(c, f, 16);
    char name[64];
    snprintf(name, sizeof name, "nnd_conv2d%s_%s",
             n->op == OP_CONV2D      ? ""
             : n->op == OP_CONV2D_GX ? "_grad_input"
                                     : "_grad_weight",
             n->dtype == NND_F64 ? "f64"
             : c->g->bf16        ? "bf16"
                                 : "f32");
    LLVMValueRef pool = arg_field(c, c->args, offsetof(NndStepArgs, pool), c->ptr);
    LLVMValueRef args[] = {
        pool, shape, buffer_base(c, n->in[0]), buffer_base(c, n->in[1]), buffer_base(c, k->node),
        NULL, NULL};
    LLVMTypeRef t[] = {c->ptr, c->ptr, c->ptr, c->ptr, c->ptr, c->i32, c->ptr};
    if (!k->ep) {
        call(c, name, c->voidt, t, 5, args, false);
        return;
    }
    /* the forward with the loop after it as its epilogue (Kernel.ep): bias, relu */
    args[4] = buffer_ptr(c, k->stores.v[0].buf);
    args[5] = LLVMConstInt(c->i32, (unsigned)k->ep, 0);
    args[6] = k->ep_bias ? buffer_base(c, k->ep_bias) : LLVMConstNull(c->ptr);
    char ep_name[80];
    snprintf(ep_name, sizeof ep_name, "%s_ep", name);
    call(c, ep_name, c->voidt, t, 7, args, false);
}

static void gen_pool(CG *c, const Kernel *k)
{
    Node *n = graph_node(c->g, k->node);
    bool small_out = n->op == OP_POOLMAX || n->op == OP_POOLAVG;
    NodeId xn = small_out || n->op == OP_POOLMAX_T ? n->in[0] : k->node;
    NodeId yn = small_out ? k->node : n->in[n->nin - 1];
    const Shape *x = &graph_node(c->g, xn)->shape, *y = &graph_node(c->g, yn)->shape;
    PoolAttrs a = graph_pool_attrs(c->g, n);
    LLVMValueRef f[12] = {dim(c, x->d[0]), dim(c, x->d[1]), dim(c, x->d[2]), dim(c, x->d[3]),
                          dim(c, y->d[2]), dim(c, y->d[3]), ci64(c, a.kh),   ci64(c, a.kw),
                          ci64(c, a.sh),   ci64(c, a.sw),   ci64(c, a.ph),   ci64(c, a.pw)};
    LLVMValueRef shape = i64_struct(c, f, 12);
    bool f64 = n->dtype == NND_F64;
    static const char *names[4][2] = {{"nnd_maxpool_gather_f32", "nnd_maxpool_gather_f64"},
                                      {"nnd_maxpool_scatter_f32", "nnd_maxpool_scatter_f64"},
                                      {"nnd_avgpool_f32", "nnd_avgpool_f64"},
                                      {"nnd_avgpool_grad_f32", "nnd_avgpool_grad_f64"}};
    int which = n->op == OP_POOLMAX ? 0 : n->op == OP_POOLMAX_T ? 1 : n->op == OP_POOLAVG ? 2 : 3;
    LLVMValueRef pool = arg_field(c, c->args, offsetof(NndStepArgs, pool), c->ptr);
    LLVMValueRef args[7] = {pool, shape, buffer_base(c, n->in[0])};
    LLVMTypeRef t[7] = {c->ptr, c->ptr, c->ptr, c->ptr, c->ptr, c->i32, c->ptr};
    int na = 3;
    if (n->nin == 2)
        args[na++] = buffer_base(c, n->in[1]);
    if (!k->ep) {
        args[na++] = buffer_base(c, k->node);
        call(c, names[which][f64], c->voidt, t, na, args, false);
        return;
    }
    /* max pooling's adjoint (in[0], in[1]) with relu's mask as its epilogue (Kernel.ep):
     * C is the loop's value */
    args[na++] = buffer_ptr(c, k->stores.v[0].buf);
    args[na++] = LLVMConstInt(c->i32, (unsigned)k->ep, 0);
    args[na++] = buffer_base(c, k->ep_mask);
    call(c, f64 ? "nnd_maxpool_scatter_f64_ep" : "nnd_maxpool_scatter_f32_ep", c->voidt, t, na,
         args, false);
}

/* take / scatter_add: every index checked first; a bad one sets the status and the
 * rows are not touched */
static void gen_rows(CG *c, const Kernel *k)
{
    Node *n = graph_node(c->g, k->node);
    bool take = n->op == OP_TAKE;
    NodeId idxn = take ? n->in[1] : n->in[0], rowsn = take ? n->in[0] : n->in[1];
    Node *tbl = graph_node(c->g, take ? n->in[0] : k->node);
    Node *idx = graph_node(c->g, idxn);
    int64_t rows = tbl->shape.d[0], width = 1;
    for (int i = 1; i < tbl->shape.rank; i++)
        width *= tbl->shape.d[i];
    LLVMValueRef count = ci64(c, 1);
    for (int i = 0; i < idx->shape.rank; i++)
        count = LLVMBuildNSWMul(c->b, count, dim(c, idx->shape.d[i]), "");
    LLVMValueRef ip = buffer_base(c, idxn);
    /* bad = any index outside [0, rows) */
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(c->b);
    LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "chk");
    LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "chk_body");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "chk_done");
    LLVMBuildBr(c->b, head);
    LLVMPositionBuilderAtEnd(c->b, head);
    LLVMValueRef i = LLVMBuildPhi(c->b, c->i64, "");
    LLVMValueRef bad = LLVMBuildPhi(c->b, c->i1, "");
    LLVMValueRef badv = LLVMBuildPhi(c->b, c->i32, ""); /* the last index out of range */
    LLVMValueRef zero = ci64(c, 0), no = LLVMConstInt(c->i1, 0, 0),
                 zero32 = LLVMConstInt(c->i32, 0, 0);
    LLVMAddIncoming(i, &zero, &pre, 1);
    LLVMAddIncoming(bad, &no, &pre, 1);
    LLVMAddIncoming(badv, &zero32, &pre, 1);
    LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntSLT, i, count, ""), body, done);
    LLVMPositionBuilderAtEnd(c->b, body);
    LLVMValueRef l = LLVMBuildLoad2(c->b, c->i32, LLVMBuildGEP2(c->b, c->i32, ip, &i, 1, ""), "");
    LLVMValueRef out = LLVMBuildOr(
        c->b, LLVMBuildICmp(c->b, LLVMIntSLT, l, LLVMConstInt(c->i32, 0, 0), ""),
        LLVMBuildICmp(c->b, LLVMIntSGE, l, LLVMConstInt(c->i32, (unsigned long long)rows, 0), ""),
        "");
    LLVMValueRef bad2 = LLVMBuildOr(c->b, bad, out, "");
    LLVMValueRef badv2 = select3v(c, out, l, badv);
    LLVMValueRef i2 = LLVMBuildNSWAdd(c->b, i, ci64(c, 1), "");
    LLVMAddIncoming(i, &i2, &body, 1);
    LLVMAddIncoming(bad, &bad2, &body, 1);
    LLVMAddIncoming(badv, &badv2, &body, 1);
    LLVMBuildBr(c->b, head);
    LLVMPositionBuilderAtEnd(c->b, done);
    LLVMBasicBlockRef ok = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "rows_ok");
    LLVMBasicBlockRef after = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "rows_after");
    LLVMBasicBlockRef set = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "rows_bad");
    LLVMBuildCondBr(c->b, bad, set, ok);
    LLVMPositionBuilderAtEnd(c->b, set);
    store_status(c, NND_STATUS_INDEX_RANGE, badv, rows);
    LLVMBuildBr(c->b, after);
    LLVMPositionBuilderAtEnd(c->b, ok);
    bool f64 = n->dtype == NND_F64;
    if (take) {
        LLVMValueRef args[] = {buffer_base(c, rowsn), ip, count, ci64(c, width),
                               buffer_base(c, k->node)};
        LLVMTypeRef t[] = {c->ptr, c->ptr, c->i64, c->i64, c->ptr};
        call(c, f64 ? "nnd_take_rows_f64" : "nnd_take_rows_f32", c->voidt, t, 5, args, false);
    } else {
        LLVMValueRef args[] = {buffer_base(c, rowsn),  ip, count, ci64(c, width), ci64(c, rows),
                               buffer_base(c, k->node)};
        LLVMTypeRef t[] = {c->ptr, c->ptr, c->i64, c->i64, c->i64, c->ptr};
        call(c, f64 ? "nnd_scatter_rows_f64" : "nnd_scatter_rows_f32", c->voidt, t, 6, args, false);
    }
    LLVMBuildBr(c->b, after);
    LLVMPositionBuilderAtEnd(c->b, after);
}

static void gen_matmul(CG *c, const Kernel *k)
{
    Node *n = graph_node(c->g, k->node);
    Node *a = graph_node(c->g, n->in[0]), *b = graph_node(c->g, n->in[1]);
    int r = n->shape.rank, ra = a->shape.rank;
    LLVMValueRef M = dim(c, n->shape.d[r - 2]), N = dim(c, n->shape.d[r - 1]);
    LLVMValueRef K = dim(c, n->ta ? a->shape.d[ra - 2] : a->shape.d[ra - 1]);
    LLVMValueRef lda = dim(c, a->shape.d[ra - 1]), ldb = dim(c, b->shape.d[b->shape.rank - 1]);
    LLVMValueRef batch = ci64(c, 1);
    /* folded ([*L, M, K] @ [K, N]) and summed ([*L, M, K]^T @ [*L, M, N]) forms are one
     * product whose rows (or inner dimension) run over the leading axes too */
    LLVMValueRef lead = ci64(c, 1);
    for (int i = 0; i < ra - 2; i++)
        lead = LLVMBuildNSWMul(c->b, lead, dim(c, a->shape.d[i]), "");
    if (n->mask)
        K = LLVMBuildNSWMul(c->b, lead, dim(c, a->shape.d[ra - 2]), "");
    else if (ra > 2 && b->shape.rank == 2)
        M = LLVMBuildNSWMul(c->b, lead, M, "");
    else
        batch = lead;
    LLVMValueRef sa = LLVMBuildNSWMul(c->b, dim(c, a->shape.d[ra - 2]), lda, "");
    LLVMValueRef sb = LLVMBuildNSWMul(c->b, dim(c, b->shape.d[b->shape.rank - 2]), ldb, "");
    LLVMValueRef sc = LLVMBuildNSWMul(c->b, M, N, "");
    bool f64 = n->dtype == NND_F64;
    LLVMTypeRef ft = f64 ? c->f64 : c->f32;
    LLVMValueRef pool = arg_field(c, c->args, offsetof(NndStepArgs, pool), c->ptr);
    LLVMValueRef args[] = {pool,
                           LLVMConstInt(c->i32, n->ta, 0),
                           LLVMConstInt(c->i32, n->tb, 0),
                           M,
                           N,
                           K,
                           buffer_base(c, n->in[0]),
                           lda,
                           buffer_base(c, n->in[1]),
                           ldb,
                           LLVMConstReal(ft, 0),
                           buffer_base(c, k->node),
                           N,
                           batch,
                           sa,
                           sb,
                           sc};
    LLVMTypeRef types[] = {c->ptr, c->i32, c->i32, c->i64, c->i64, c->i64, c->ptr,
                           c->i64, c->ptr, c->i64, ft,     c->ptr, c->i64, c->i64,
                           c->i64, c->i64, c->i64, c->i32, c->ptr, c->ptr};
    const char *name = f64 ? "nnd_gemm_f64" : c->g->bf16 ? "nnd_gemm_bf16" : "nnd_gemm_f32";
    if (!k->ep) {
        call(c, name, c->voidt, types, 17, args, false);
        return;
    }
    /* with the loop after it as its epilogue (Kernel.ep): C is the loop's value */
    LLVMValueRef more[20];
    memcpy(more, args, sizeof args);
    more[11] = buffer_ptr(c, k->stores.v[0].buf);
    more[17] = LLVMConstInt(c->i32, (unsigned)k->ep, 0);
    more[18] = k->ep_bias ? buffer_base(c, k->ep_bias) : LLVMConstNull(c->ptr);
    more[19] = k->ep_mask ? buffer_base(c, k->ep_mask) : LLVMConstNull(c->ptr);
    char ep_name[32];
    snprintf(ep_name, sizeof ep_name, "%s_ep", name);
    call(c, ep_name, c->voidt, types, 20, more, false);
}

/* The number of items a kernel's range runs over. */
static LLVMValueRef kernel_extent(CG *c, const Kernel *k, bool flat)
{
    if (k->domain.rank == 0)
        return ci64(c, 1);
    if (flat) {
        LLVMValueRef n = ci64(c, 1);
        for (int i = 0; i < k->domain.rank; i++)
            n = LLVMBuildNSWMul(c->b, n, dim(c, k->domain.d[i]), "");
        return n;
    }
    return dim(c, k->domain.d[k->outer]);
}

static void scopes_for_function(CG *c, const char *fname)
{
    int nb = c->s->bufs.n;
    char name[256];
    snprintf(name, sizeof name, "%s.buffers", fname);
    LLVMMetadataRef dname = LLVMMDStringInContext2(c->ctx, name, strlen(name));
    LLVMMetadataRef domain = LLVMMDNodeInContext2(c->ctx, &dname, 1);
    for (int i = 0; i < nb; i++) {
        snprintf(name, sizeof name, "%s.buf%d", fname, i);
        LLVMMetadataRef ops[2] = {LLVMMDStringInContext2(c->ctx, name, strlen(name)), domain};
        c->scope[i] = LLVMMDNodeInContext2(c->ctx, ops, 2);
    }
    LLVMMetadataRef *others = xmalloc(sizeof(LLVMMetadataRef) * (size_t)(nb ? nb : 1));
    for (int i = 0; i < nb; i++) {
        c->scope_md[i] = LLVMMetadataAsValue(c->ctx, LLVMMDNodeInContext2(c->ctx, &c->scope[i], 1));
        int m = 0;
        for (int j = 0; j < nb; j++)
            if (j != i)
                others[m++] = c->scope[j];
        c->noalias_md[i] =
            LLVMMetadataAsValue(c->ctx, LLVMMDNodeInContext2(c->ctx, others, (size_t)m));
    }
    free(others);
}

static void gen_kernel_call(CG *c, const Kernel *k, int i, LLVMValueRef *kfn, const bool *kflat,
                            LLVMValueRef pool);

/* --check-numerics: after kernel k, each floating-point value it computed (in node
 * order, so the first op to go wrong is named) is counted by nnd_check_finite, which
 * records the node and the count in args; the function returns at the first bad one. */
static void check_kernel(CG *c, const Kernel *k)
{
    VEC(Store) vals = {0}; /* what the kernel made, and where */
    for (int i = 0; i < k->stores.n; i++) {
        Store st = k->stores.v[i];
        int home = c->s->home[st.node];
        if ((st.buf == home || home < 0) && c->s->bufs.v[st.buf].kind != BUF_OUT)
            vec_push(&vals, st);
    }
    for (int i = 0; i < k->accs.n; i++) {
        Store st = {k->accs.v[i].node, k->accs.v[i].buf};
        vec_push(&vals, st);
    }
    for (int i = 1; i < vals.n; i++) /* insertion sort by node: a handful */
        for (int j = i; j > 0 && vals.v[j - 1].node > vals.v[j].node; j--) {
            Store t = vals.v[j];
            vals.v[j] = vals.v[j - 1];
            vals.v[j - 1] = t;
        }
    for (int i = 0; i < vals.n; i++) {
        Node *n = graph_node(c->g, vals.v[i].node);
        const Buffer *bf = &c->s->bufs.v[vals.v[i].buf];
        if (!is_float(bf->dtype))
            continue;
        LLVMValueRef count = ci64(c, 1);
        for (int d = 0; d < n->shape.rank; d++)
            count = LLVMBuildMul(c->b, count, dim(c, n->shape.d[d]), "");
        LLVMValueRef a[] = {buffer_ptr(c, vals.v[i].buf), count,
                            LLVMConstInt(c->i32, (unsigned)bf->dtype, 0), c->args,
                            ci64(c, vals.v[i].node)};
        LLVMTypeRef t[] = {c->ptr, c->i64, c->i32, c->ptr, c->i64};
        LLVMValueRef bad = call(c, "nnd_check_finite", c->i64, t, 5, a, false);
        LLVMBasicBlockRef stop = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "nonfinite");
        LLVMBasicBlockRef go = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "finite");
        LLVMBuildCondBr(c->b, LLVMBuildICmp(c->b, LLVMIntNE, bad, ci64(c, 0), ""), stop, go);
        LLVMPositionBuilderAtEnd(c->b, stop);
        LLVMBuildRetVoid(c->b);
        LLVMPositionBuilderAtEnd(c->b, go);
    }
    vec_free(&vals);
}

/* Whether kernel k writes a parameter or a state (an update, layer state). */
static bool writes_model(const Schedule *s, const Kernel *k)
{
    for (int i = 0; i < k->stores.n; i++) {
        int b = k->stores.v[i].buf, kind = b >= 0 ? (int)s->bufs.v[b].kind : -1;
        if (kind == BUF_PARAM || kind == BUF_STATE)
            return true;
    }
    return false;
}

/* args->idle(args), when idle is set. */
static void gen_idle(CG *c)
{
    LLVMValueRef fp = arg_field(c, c->args, offsetof(NndStepArgs, idle), c->ptr);
    LLVMBasicBlockRef go = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "idle");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "idle_done");
    LLVMBuildCondBr(c->b, LLVMBuildIsNull(c->b, fp, ""), done, go);
    LLVMPositionBuilderAtEnd(c->b, go);
    LLVMTypeRef ft = LLVMFunctionType(LLVMVoidTypeInContext(c->ctx), &c->ptr, 1, 0);
    LLVMBuildCall2(c->b, ft, fp, &c->args, 1, "");
    LLVMBuildBr(c->b, done);
    LLVMPositionBuilderAtEnd(c->b, done);
}

/* args->ready(args, state) for each state of order, when ready is set. */
static void gen_ready(CG *c, const IntVec *order, int from, int to)
{
    if (from >= to)
        return;
    LLVMValueRef fp = arg_field(c, c->args, offsetof(NndStepArgs, ready), c->ptr);
    LLVMBasicBlockRef go = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "ready");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "ready_done");
    LLVMBuildCondBr(c->b, LLVMBuildIsNull(c->b, fp, ""), done, go);
    LLVMPositionBuilderAtEnd(c->b, go);
    LLVMTypeRef params[2] = {c->ptr, c->i32};
    LLVMTypeRef ft = LLVMFunctionType(LLVMVoidTypeInContext(c->ctx), params, 2, 0);
    for (int i = from; i < to; i++) {
        LLVMValueRef args[2] = {c->args, LLVMConstInt(c->i32, (unsigned long long)order->v[i], 0)};
        LLVMBuildCall2(c->b, ft, fp, args, 2, "");
    }
    LLVMBuildBr(c->b, done);
    LLVMPositionBuilderAtEnd(c->b, done);
}

static void gen_function(CG *c, const CodegenFunction *f)
{
    c->s = f->sched;
    c->fname = f->name;
    int nb = c->s->bufs.n;
    c->bufptr = xcalloc((size_t)(nb ? nb : 1), sizeof(LLVMValueRef));
    c->scope = xcalloc((size_t)(nb ? nb : 1), sizeof(LLVMMetadataRef));
    c->scope_md = xcalloc((size_t)(nb ? nb : 1), sizeof(LLVMValueRef));
    c->noalias_md = xcalloc((size_t)(nb ? nb : 1), sizeof(LLVMValueRef));
    scopes_for_function(c, f->name);
    int count = graph_count(c->g);
    c->memo = xcalloc((size_t)count, sizeof(LLVMValueRef));
    c->scalar = xcalloc((size_t)count, sizeof(LLVMValueRef));
    LLVMValueRef *kfn =
        xcalloc((size_t)(c->s->kernels.n ? c->s->kernels.n : 1), sizeof(LLVMValueRef));
    bool *kflat = xcalloc((size_t)(c->s->kernels.n ? c->s->kernels.n : 1), 1);
    for (int i = 0; i < c->s->kernels.n; i++) {
        const Kernel *k = &c->s->kernels.v[i];
        if (k->kind == KER_CALL)
            continue;
        char name[256];
        snprintf(name, sizeof name, "%s_k%d", f->name, i);
        c->k = k;
        memset(c->scalar, 0, sizeof(LLVMValueRef) * (size_t)count);
        begin_function(c, name, c->kernel_ty, true);
        if (k->kind == KER_LOOP) {
            gen_loop(c, k);
            kflat[i] = c->flat;
        } else {
            gen_reduce(c, k);
        }
        kfn[i] = c->fn;
    }
    /* the entry: kernels in order */
    c->k = NULL;
    memset(c->scalar, 0, sizeof(LLVMValueRef) * (size_t)count);
    begin_function(c, f->name, c->entry_ty, false);
    LLVMBasicBlockRef first = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "run");
    LLVMPositionBuilderAtEnd(c->b, first);
    LLVMValueRef pool = arg_field(c, c->args, offsetof(NndStepArgs, pool), c->ptr);
    LLVMValueRef profile =
        f->profile ? arg_field(c, c->args, offsetof(NndStepArgs, profile), c->ptr) : NULL;
    LLVMBasicBlockRef ret = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "ret");
    IntVec order = {0}, finisher = {0};
    if (f->notify)
        schedule_final_states(c->s, f->notify, f->nnotify, &order, &finisher);
    int notified = 0;
    for (int i = 0; i < c->s->kernels.n; i++) {
        const Kernel *k = &c->s->kernels.v[i];
        if (writes_model(c->s, k)) {
            /* bad data (a label or index out of range) found by an earlier kernel:
             * the model is left as it was, as the interpreter leaves it */
            LLVMValueRef st = arg_field(c, c->args, offsetof(NndStepArgs, status), c->i32);
            LLVMBasicBlockRef go = LLVMAppendBasicBlockInContext(c->ctx, c->fn, "update");
            LLVMBuildCondBr(
                c->b, LLVMBuildICmp(c->b, LLVMIntEQ, st, LLVMConstInt(c->i32, 0, 0), ""), go, ret);
            LLVMPositionBuilderAtEnd(c->b, go);
        }
        if (i == c->s->idle_at)
            gen_idle(c);
        LLVMValueRef t0 = profile ? call(c, "nnd_clock_ns", c->i64, NULL, 0, NULL, false) : NULL;
        gen_kernel_call(c, k, i, kfn, kflat, pool);
        if (f->check)
            check_kernel(c, k);
        int upto = notified;
        while (upto < order.n && finisher.v[upto] == i)
            upto++;
        gen_ready(c, &order, notified, upto);
        notified = upto;
        if (profile) {
            LLVMValueRef t1 = call(c, "nnd_clock_ns", c->i64, NULL, 0, NULL, false);
            LLVMValueRef idx = ci64(c, i);
            LLVMValueRef slot = LLVMBuildGEP2(c->b, c->i64, profile, &idx, 1, "");
            LLVMValueRef sum = LLVMBuildAdd(c->b, LLVMBuildLoad2(c->b, c->i64, slot, ""),
                                            LLVMBuildSub(c->b, t1, t0, ""), "");
            LLVMBuildStore(c->b, sum, slot);
        }
    }
    vec_free(&order);
    vec_free(&finisher);
    LLVMBuildBr(c->b, ret);
    LLVMPositionBuilderAtEnd(c->b, ret);
    LLVMBuildRetVoid(c->b);
    end_function(c, first);
    free(kfn);
    free(kflat);
    free(c->memo);
    free(c->scalar);
    free(c->bufptr);
    free(c->scope);
    free(c->scope_md);
    free(c->noalias_md);
    c->memo = c->scalar = NULL;
}

static void gen_kernel_call(CG *c, const Kernel *k, int i, LLVMValueRef *kfn, const bool *kflat,
                            LLVMValueRef pool)
{
    {
        if (k->kind == KER_CALL) {
            int op = graph_node(c->g, k->node)->op;
            if (op == OP_MATMUL)
                gen_matmul(c, k);
            else if (op == OP_CONV2D || op == OP_CONV2D_GX || op == OP_CONV2D_GW)
                gen_conv(c, k);
            else if (op == OP_TAKE || op == OP_SCATTER_ADD)
                gen_rows(c, k);
            else
                gen_pool(c, k);
            return;
        }
        LLVMValueRef n = kernel_extent(c, k, k->kind == KER_LOOP && kflat[i]);
        for (int a = 0; a < k->accs.n; a++) { /* the results start empty */
            Node *r = graph_node(c->g, k->accs.v[a].node);
            LLVMBuildStore(c->b, fconst(c, r->dtype, acc_init(r)), buffer_ptr(c, k->accs.v[a].buf));
        }
        if (k->parallel) {
            int64_t per_item = 1;
            if (!(k->kind == KER_LOOP && kflat[i]))
                for (int d = 0; d < k->domain.rank; d++)
                    if (d != k->outer)
                        per_item *= k->domain.d[d] < 0 ? c->s->max_batch : k->domain.d[d];
            int64_t grain = (4096 + per_item - 1) / per_item;
            LLVMValueRef a[] = {pool, kfn[i], c->args, n, ci64(c, grain)};
            LLVMTypeRef t[] = {c->ptr, c->ptr, c->ptr, c->i64, c->i64};
            call(c, "nnd_parallel_for", c->voidt, t, 5, a, false);
        } else {
            LLVMValueRef a[] = {c->args, ci64(c, 0), n};
            LLVMBuildCall2(c->b, c->kernel_ty, kfn[i], a, 3, "");
        }
    }
}

void codegen_module(LLVMContextRef ctx, LLVMModuleRef mod, Graph *g, const CodegenFunction *fns,
                    int nfns)
{
    CG c = {0};
    c.ctx = ctx;
    c.mod = mod;
    c.g = g;
    c.b = LLVMCreateBuilderInContext(ctx);
    c.i1 = LLVMInt1TypeInContext(ctx);
    c.i8 = LLVMInt8TypeInContext(ctx);
    c.i32 = LLVMInt32TypeInContext(ctx);
    c.i64 = LLVMInt64TypeInContext(ctx);
    c.f32 = LLVMFloatTypeInContext(ctx);
    c.f64 = LLVMDoubleTypeInContext(ctx);
    c.ptr = LLVMPointerTypeInContext(ctx, 0);
    c.voidt = LLVMVoidTypeInContext(ctx);
    LLVMTypeRef kp[3] = {c.ptr, c.i64, c.i64};
    c.kernel_ty = LLVMFunctionType(c.voidt, kp, 3, 0);
    c.entry_ty = LLVMFunctionType(c.voidt, &c.ptr, 1, 0);
    c.md_scope = LLVMGetMDKindIDInContext(ctx, "alias.scope", 11);
    c.md_noalias = LLVMGetMDKindIDInContext(ctx, "noalias", 7);
    /* literal tensors become constant globals */
    int count = graph_count(g);
    c.tensor_globals = xcalloc((size_t)count, sizeof(LLVMValueRef));
    for (int id = 1; id < count; id++) {
        Node *n = graph_node(g, (NodeId)id);
        if (n->op != OP_TENSOR)
            continue;
        int64_t cnt = shape_numel_at(&n->shape, 1);
        LLVMValueRef *vals = xmalloc(sizeof(LLVMValueRef) * (size_t)(cnt ? cnt : 1));
        for (int64_t i = 0; i < cnt; i++) {
            double v = g->fpool.v[n->pool + (uint32_t)i];
            vals[i] =
                n->dtype == NND_BOOL ? LLVMConstInt(c.i8, v != 0, 0) : cconst(&c, n->dtype, v);
        }
        LLVMTypeRef et = mtype(&c, n->dtype);
        LLVMValueRef init = LLVMConstArray2(et, vals, (uint64_t)cnt);
        char name[64];
        snprintf(name, sizeof name, "tensor%d", id);
        LLVMValueRef gv = LLVMAddGlobal(mod, LLVMTypeOf(init), name);
        LLVMSetInitializer(gv, init);
        LLVMSetGlobalConstant(gv, 1);
        LLVMSetLinkage(gv, LLVMPrivateLinkage);
        LLVMSetAlignment(gv, 64);
        c.tensor_globals[id] = gv;
        free(vals);
    }
    for (int i = 0; i < nfns; i++)
        gen_function(&c, &fns[i]);
    free(c.tensor_globals);
    LLVMDisposeBuilder(c.b);
}
