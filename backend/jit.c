#include "jit.h"

#include "codegen.h"
#include "target.h"

#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <stdlib.h>
#include <string.h>

struct Jit {
    LLVMOrcLLJITRef lljit; /* owns the compiled code */
    char *ir;
    double ir_seconds, opt_seconds, mc_seconds;
};

/* Takes ownership of e; writes its message. */
static bool llvm_failed(LLVMErrorRef e, const char *what, char *err, size_t errlen)
{
    if (!e)
        return false;
    char *msg = LLVMGetErrorMessage(e);
    snprintf(err, errlen, "%s: %s", what, msg);
    LLVMDisposeErrorMessage(msg);
    return true;
}

/* An LLJIT for this host whose code may call the runtime's listed functions and
 * nothing else. */
static bool start_jit(Jit *j, int opt, char *err, size_t errlen)
{
    /* the JIT gets a machine of its own, configured the same */
    LLVMTargetMachineRef jtm = target_machine(NULL, opt, true, err, errlen);
    if (!jtm)
        return false;
    LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(
        builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(jtm));
    if (llvm_failed(LLVMOrcCreateLLJIT(&j->lljit, builder), "starting the JIT", err, errlen))
        return false;
    int n = codegen_runtime_symbol_count;
    LLVMOrcCSymbolMapPair *syms = xcalloc((size_t)n, sizeof *syms);
    for (int i = 0; i < n; i++) {
        syms[i].Name = LLVMOrcLLJITMangleAndIntern(j->lljit, codegen_runtime_symbols[i].name);
        syms[i].Sym.Address = (LLVMOrcExecutorAddress)(uintptr_t)codegen_runtime_symbols[i].addr;
        syms[i].Sym.Flags.GenericFlags =
            LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable;
    }
    LLVMOrcMaterializationUnitRef mu = LLVMOrcAbsoluteSymbols(syms, (size_t)n);
    free(syms);
    LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(j->lljit);
    return !llvm_failed(LLVMOrcJITDylibDefine(jd, mu), "defining runtime symbols", err, errlen);
}

Jit *jit_compile(Graph *g, const CodegenFunction *fns, int nfns, const JitOptions *o, void **addrs,
                 char *err, size_t errlen)
{
    int opt = o && o->opt_level >= 1 && o->opt_level <= 3 ? o->opt_level : 3;
    LLVMTargetMachineRef tm = target_machine(NULL, opt, true, err, errlen);
    if (!tm)
        return NULL;
    LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
    LLVMContextRef ctx = LLVMOrcThreadSafeContextGetContext(tsc);
    double secs[2];
    LLVMModuleRef mod = target_module(ctx, tm, g, fns, nfns, opt, secs, err, errlen);
    LLVMDisposeTargetMachine(tm);
    Jit *j = xcalloc(1, sizeof *j);
    j->ir_seconds = secs[0];
    j->opt_seconds = secs[1];
    bool ok = mod != NULL;
    if (ok && o && o->keep_ir)
        j->ir = target_ir_text(mod);
    LLVMOrcThreadSafeModuleRef tsm = ok ? LLVMOrcCreateNewThreadSafeModule(mod, tsc) : NULL;
    LLVMOrcDisposeThreadSafeContext(tsc);
    ok = ok && start_jit(j, opt, err, errlen);
    if (ok) {
        LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(j->lljit);
        ok = !llvm_failed(LLVMOrcLLJITAddLLVMIRModule(j->lljit, jd, tsm), "adding the module", err,
                          errlen);
        tsm = NULL;
        double t_mc = clock_seconds();
        for (int i = 0; ok && i < nfns; i++) {
            LLVMOrcExecutorAddress addr = 0;
            ok = !llvm_failed(LLVMOrcLLJITLookup(j->lljit, &addr, fns[i].name), "linking", err,
                              errlen);
            addrs[i] = (void *)(uintptr_t)addr;
        }
        j->mc_seconds = clock_seconds() - t_mc;
    }
    if (tsm)
        LLVMOrcDisposeThreadSafeModule(tsm);
    if (!ok) {
        jit_free(j);
        return NULL;
    }
    return j;
}

const char *jit_ir(const Jit *j) { return j->ir; }

void jit_phases(const Jit *j, double *ir, double *opt, double *mc)
{
    *ir = j->ir_seconds;
    *opt = j->opt_seconds;
    *mc = j->mc_seconds;
}

void jit_free(Jit *j)
{
    if (!j)
        return;
    if (j->lljit) {
        LLVMErrorRef e = LLVMOrcDisposeLLJIT(j->lljit);
        if (e)
            LLVMConsumeError(e);
    }
    free(j->ir);
    free(j);
}
