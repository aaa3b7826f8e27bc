#include "target.h"

#include "codegen.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/Error.h>
#include <llvm-c/Support.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t native_once = PTHREAD_ONCE_INIT, all_once = PTHREAD_ONCE_INIT;

static void init_native(void)
{
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
    /* Two of LLVM's own settings, measured on the generated step (784-128-10: cold
     * compile 100 -> 75 ms, the same step time): loop strength reduction and a
     * vectorized epilogue after each vectorized loop cost compile time (a third
     * of instruction selection's input) and return nothing on these loops, whose
     * remainders are short and whose addressing is already simple.  Process-wide
     * (LLVM keeps its options global), set once. */
    const char *argv[] = {"nnd", "-disable-lsr", "-enable-epilogue-vectorization=false"};
    LLVMParseCommandLineOptions(3, argv, NULL);
}

/* This host's CPU name and features, asked once (LLVM reads them with cpuid and
 * parses them: 0.4 ms). */
static pthread_once_t host_once = PTHREAD_ONCE_INIT;
static char *host_cpu, *host_features;

static void init_host(void)
{
    pthread_once(&native_once, init_native);
    host_cpu = LLVMGetHostCPUName();
    host_features = LLVMGetHostCPUFeatures();
}

/* Every target LLVM was built with, for an ahead-of-time build that names one. */
static void init_all(void)
{
    LLVMInitializeAllTargetInfos();
    LLVMInitializeAllTargets();
    LLVMInitializeAllTargetMCs();
    LLVMInitializeAllAsmPrinters();
}

/* The target of t's triple (normalized; this host's when there is none) into
 * *target, and the triple, which the caller disposes (LLVMDisposeMessage); NULL
 * with a message when LLVM has no such target. */
static char *target_find(const TargetSpec *t, LLVMTargetRef *target, char *err, size_t errlen)
{
    pthread_once(&native_once, init_native);
    if (t && t->triple)
        pthread_once(&all_once, init_all);
    char *triple =
        t && t->triple ? LLVMNormalizeTargetTriple(t->triple) : LLVMGetDefaultTargetTriple();
    char *msg = NULL;
    if (LLVMGetTargetFromTriple(triple, target, &msg)) {
        snprintf(err, errlen, "no LLVM target for '%s': %s", triple, msg);
        LLVMDisposeMessage(msg);
        LLVMDisposeMessage(triple);
        return NULL;
    }
    return triple;
}

bool target_known_triple(const TargetSpec *t, char *err, size_t errlen)
{
    LLVMTargetRef target;
    char *triple = target_find(t, &target, err, errlen);
    if (!triple)
        return false;
    LLVMDisposeMessage(triple);
    return true;
}

LLVMTargetMachineRef target_machine(const TargetSpec *t, int opt, bool jit, char *err,
                                    size_t errlen)
{
    bool host = !t || (!t->triple && !t->cpu);
    if (host)
        pthread_once(&host_once, init_host);
    LLVMTargetRef target;
    char *triple = target_find(t, &target, err, errlen);
    if (!triple)
        return NULL;
    char *cpu = LLVMCreateMessage(host ? host_cpu : t->cpu ? t->cpu : "generic");
    char *features = LLVMCreateMessage(host ? host_features : t->features ? t->features : "");
    /* instruction selection at "less": the loops are already vectorized, and the
     * aggressive level costs more compile time than it returns */
    LLVMCodeGenOptLevel lv = opt >= 1 ? LLVMCodeGenLevelLess : LLVMCodeGenLevelNone;
    LLVMTargetMachineRef tm = LLVMCreateTargetMachine(
        target, triple, cpu, features, lv, jit ? LLVMRelocDefault : LLVMRelocPIC,
        jit ? LLVMCodeModelJITDefault : LLVMCodeModelDefault);
    if (!tm)
        snprintf(err, errlen, "cannot create a target machine for '%s' (CPU '%s')", triple, cpu);
    LLVMDisposeMessage(triple);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
    return tm;
}

/* Every function is compiled for the machine's CPU and features. */
static void mark_functions(LLVMContextRef ctx, LLVMModuleRef mod, LLVMTargetMachineRef tm)
{
    char *cpu = LLVMGetTargetMachineCPU(tm), *features = LLVMGetTargetMachineFeatureString(tm);
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f)) {
        if (LLVMIsDeclaration(f))
            continue;
        LLVMAddAttributeAtIndex(
            f, LLVMAttributeFunctionIndex,
            LLVMCreateStringAttribute(ctx, "target-cpu", 10, cpu, (unsigned)strlen(cpu)));
        if (*features)
            LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex,
                                    LLVMCreateStringAttribute(ctx, "target-features", 15, features,
                                                              (unsigned)strlen(features)));
    }
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
}

static bool optimize(LLVMModuleRef mod, LLVMTargetMachineRef tm, int opt, char *err, size_t errlen)
{
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(po, opt >= 2);
    LLVMPassBuilderOptionsSetLoopUnrolling(po, false);
    LLVMPassBuilderOptionsSetLoopInterleaving(po, opt >= 3);
    /* The generated loops are already simple (no allocas, one store per value), so
     * a short pipeline does what default<O3> would, in a fraction of the time:
     * clean up, rotate and hoist, vectorize.  Nothing is inlined: the functions
     * are a step calling its kernels, which stay functions (codegen.c). */
    const char *passes =
        opt >= 2 ? "function(mem2reg,early-cse,instcombine<no-verify-fixpoint>,"
                   "simplifycfg,loop-simplify,lcssa,loop-rotate,loop-mssa(licm),indvars,"
                   "loop-vectorize,instcombine<no-verify-fixpoint>,simplifycfg)"
                 : "function(mem2reg,early-cse,instcombine<no-verify-fixpoint>,"
                   "simplifycfg)";
    LLVMErrorRef e = LLVMRunPasses(mod, passes, tm, po);
    LLVMDisposePassBuilderOptions(po);
    if (!e)
        return true;
    char *msg = LLVMGetErrorMessage(e);
    snprintf(err, errlen, "optimizing: %s", msg);
    LLVMDisposeErrorMessage(msg);
    return false;
}

/* mod's triple and data layout: tm's. */
static void set_machine(LLVMModuleRef mod, LLVMTargetMachineRef tm)
{
    char *triple = LLVMGetTargetMachineTriple(tm);
    LLVMSetTarget(mod, triple);
    LLVMDisposeMessage(triple);
    LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(mod, dl);
    LLVMDisposeTargetData(dl);
}

void target_prepare_module(LLVMContextRef ctx, LLVMModuleRef mod, LLVMTargetMachineRef tm)
{
    set_machine(mod, tm);
    mark_functions(ctx, mod, tm);
}

LLVMModuleRef target_module_ir(LLVMContextRef ctx, LLVMTargetMachineRef tm, Graph *g,
                               const CodegenFunction *fns, int nfns, double *secs, char *err,
                               size_t errlen)
{
    LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("nnd", ctx);
    set_machine(mod, tm);
    double t0 = clock_seconds();
    codegen_module(ctx, mod, g, fns, nfns);
    mark_functions(ctx, mod, tm);
    *secs = clock_seconds() - t0;
    return mod;
}

bool target_verify(LLVMModuleRef mod, char *err, size_t errlen)
{
    char *msg = NULL;
    bool bad = LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg);
    if (bad)
        snprintf(err, errlen, "internal error: generated code does not verify: %.400s", msg);
    LLVMDisposeMessage(msg);
    return !bad;
}

bool target_optimize(LLVMModuleRef mod, LLVMTargetMachineRef tm, int opt, char *err, size_t errlen)
{
    return optimize(mod, tm, opt, err, errlen);
}

LLVMModuleRef target_module(LLVMContextRef ctx, LLVMTargetMachineRef tm, Graph *g,
                            const CodegenFunction *fns, int nfns, int opt, double secs[2],
                            char *err, size_t errlen)
{
    secs[1] = 0;
    LLVMModuleRef mod = target_module_ir(ctx, tm, g, fns, nfns, &secs[0], err, errlen);
    if (!target_verify(mod, err, errlen)) {
        LLVMDisposeModule(mod);
        return NULL;
    }
    double t1 = clock_seconds();
    bool ok = optimize(mod, tm, opt, err, errlen);
    secs[1] = clock_seconds() - t1;
    if (!ok) {
        LLVMDisposeModule(mod);
        return NULL;
    }
    return mod;
}

char *target_ir_text(LLVMModuleRef mod)
{
    char *text = LLVMPrintModuleToString(mod);
    char *copy = xstrdup(text);
    LLVMDisposeMessage(text);
    return copy;
}
