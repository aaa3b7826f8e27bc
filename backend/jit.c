#include "jit.h"

#include "codegen.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct Jit {
    LLVMOrcLLJITRef lljit; /* owns the compiled code */
    char *ir;
    double ir_seconds, opt_seconds, mc_seconds;
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_llvm(void)
{
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
}

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

/* A target machine for this host: its triple, CPU name and features. */
static LLVMTargetMachineRef host_machine(int opt, char *err, size_t errlen)
{
    char *triple = LLVMGetDefaultTargetTriple();
    char *cpu = LLVMGetHostCPUName();
    char *features = LLVMGetHostCPUFeatures();
    LLVMTargetRef target;
    char *msg = NULL;
    LLVMTargetMachineRef tm = NULL;
    if (LLVMGetTargetFromTriple(triple, &target, &msg)) {
        snprintf(err, errlen, "no LLVM target for %s: %s", triple, msg);
        LLVMDisposeMessage(msg);
    } else {
        /* instruction selection at "less": the loops are already vectorized, and
         * the aggressive level costs more compile time than it returns */
        LLVMCodeGenOptLevel lv = opt >= 1 ? LLVMCodeGenLevelLess : LLVMCodeGenLevelNone;
        tm = LLVMCreateTargetMachine(target, triple, cpu, features, lv, LLVMRelocDefault,
                                     LLVMCodeModelJITDefault);
        if (!tm)
            snprintf(err, errlen, "cannot create a target machine for %s", triple);
    }
    LLVMDisposeMessage(triple);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
    return tm;
}

Jit *jit_compile(Graph *g, const CodegenFunction *fns, int nfns, const JitOptions *o, void **addrs,
                 char *err, size_t errlen)
{
    pthread_once(&init_once, init_llvm);
    int opt = o && o->opt_level >= 1 && o->opt_level <= 3 ? o->opt_level : 3;
    LLVMTargetMachineRef tm = host_machine(opt, err, errlen);
    if (!tm)
        return NULL;
    double j_ir_seconds;
    LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
    LLVMContextRef ctx = LLVMOrcThreadSafeContextGetContext(tsc);
    LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("nnd", ctx);
    char *triple = LLVMGetTargetMachineTriple(tm);
    LLVMSetTarget(mod, triple);
    LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(mod, dl);
    LLVMDisposeTargetData(dl);
    double t_ir = clock_seconds();
    codegen_module(ctx, mod, g, fns, nfns);
    j_ir_seconds = clock_seconds() - t_ir;
    /* every function is compiled for this CPU */
    char *cpu = LLVMGetTargetMachineCPU(tm), *features = LLVMGetTargetMachineFeatureString(tm);
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f)) {
        if (LLVMIsDeclaration(f))
            continue;
        LLVMAddAttributeAtIndex(
            f, LLVMAttributeFunctionIndex,
            LLVMCreateStringAttribute(ctx, "target-cpu", 10, cpu, (unsigned)strlen(cpu)));
        LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex,
                                LLVMCreateStringAttribute(ctx, "target-features", 15, features,
                                                          (unsigned)strlen(features)));
    }
    Jit *j = xcalloc(1, sizeof *j);
    j->ir_seconds = j_ir_seconds;
    LLVMDisposeMessage(triple);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
    char *msg = NULL;
    bool ok = true;
    if (LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg)) {
        snprintf(err, errlen, "internal error: generated code does not verify: %.400s", msg);
        ok = false;
    }
    LLVMDisposeMessage(msg);
    if (ok) {
        LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
        LLVMPassBuilderOptionsSetLoopVectorization(po, opt >= 2);
        LLVMPassBuilderOptionsSetLoopUnrolling(po, false);
        LLVMPassBuilderOptionsSetLoopInterleaving(po, opt >= 3);
        /* The generated loops are already simple (no allocas, one store per value), so
         * a short pipeline does what default<O3> would, in a fraction of the time:
         * inline the kernels, clean up, rotate and hoist, vectorize. */
        const char *passes =
            opt >= 2 ? "cgscc(inline),function(mem2reg,early-cse,instcombine<no-verify-fixpoint>,"
                       "simplifycfg,loop-simplify,lcssa,loop-rotate,loop-mssa(licm),indvars,"
                       "loop-vectorize,instcombine<no-verify-fixpoint>,simplifycfg)"
                     : "cgscc(inline),function(mem2reg,early-cse,instcombine<no-verify-fixpoint>,"
                       "simplifycfg)";
        double t_opt = clock_seconds();
        ok = !llvm_failed(LLVMRunPasses(mod, passes, tm, po), "optimizing", err, errlen);
        j->opt_seconds = clock_seconds() - t_opt;
        LLVMDisposePassBuilderOptions(po);
    }
    if (ok && o && o->keep_ir) {
        char *text = LLVMPrintModuleToString(mod);
        j->ir = xstrdup(text);
        LLVMDisposeMessage(text);
    }
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(mod, tsc);
    LLVMOrcDisposeThreadSafeContext(tsc);
    if (ok) {
        /* the JIT gets a machine of its own, configured the same */
        LLVMTargetMachineRef jtm = host_machine(opt, err, errlen);
        LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
        if (jtm)
            LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(
                builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(jtm));
        ok = jtm &&
             !llvm_failed(LLVMOrcCreateLLJIT(&j->lljit, builder), "starting the JIT", err, errlen);
        if (!jtm)
            LLVMOrcDisposeLLJITBuilder(builder);
    }
    if (ok) {
        /* the code may call the runtime's listed functions and nothing else */
        int n = codegen_runtime_symbol_count;
        LLVMOrcCSymbolMapPair *syms = xcalloc((size_t)n, sizeof *syms);
        for (int i = 0; i < n; i++) {
            syms[i].Name = LLVMOrcLLJITMangleAndIntern(j->lljit, codegen_runtime_symbols[i].name);
            syms[i].Sym.Address =
                (LLVMOrcExecutorAddress)(uintptr_t)codegen_runtime_symbols[i].addr;
            syms[i].Sym.Flags.GenericFlags =
                LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable;
        }
        LLVMOrcMaterializationUnitRef mu = LLVMOrcAbsoluteSymbols(syms, (size_t)n);
        free(syms);
        LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(j->lljit);
        ok = !llvm_failed(LLVMOrcJITDylibDefine(jd, mu), "defining runtime symbols", err, errlen);
        if (ok) {
            ok = !llvm_failed(LLVMOrcLLJITAddLLVMIRModule(j->lljit, jd, tsm), "adding the module",
                              err, errlen);
            tsm = NULL;
        }
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
    LLVMDisposeTargetMachine(tm);
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
