/* target: what JIT and ahead-of-time builds share: a target machine (this host's,
 * or one named by triple and CPU) and the optimized module of the scheduled
 * functions for it.  Private to the backend. */
#ifndef NND_TARGET_H
#define NND_TARGET_H

#include <llvm-c/TargetMachine.h>

#include "jit.h"

/* NULL fields: this host's triple, CPU and features.  A CPU without features gets
 * the CPU's own. */
typedef struct TargetSpec {
    const char *triple, *cpu, *features;
} TargetSpec;

/* A target machine at optimization level opt (1..3): for the JIT (its code model),
 * or for an object file (position-independent code, as PIE executables and shared
 * libraries need).  NULL with a message. */
LLVMTargetMachineRef target_machine(const TargetSpec *t, int opt, bool jit, char *err,
                                    size_t errlen);
/* Whether LLVM has a target for t's triple (this host's when it names none); false
 * with a message naming the triple. */
bool target_known_triple(const TargetSpec *t, char *err, size_t errlen);
/* Generates the functions into a new module of ctx for tm, verifies and optimizes
 * it; secs[0] and secs[1] get the seconds spent making IR and optimizing.  NULL
 * with a message (the module is then disposed). */
LLVMModuleRef target_module(LLVMContextRef ctx, LLVMTargetMachineRef tm, Graph *g,
                            const CodegenFunction *fns, int nfns, int opt, double secs[2],
                            char *err, size_t errlen);
/* The parts of target_module: the unoptimized module (secs: the seconds making
 * it), its verification (false with a message; a cached compile skips it) and its
 * optimization. */
LLVMModuleRef target_module_ir(LLVMContextRef ctx, LLVMTargetMachineRef tm, Graph *g,
                               const CodegenFunction *fns, int nfns, double *secs, char *err,
                               size_t errlen);
/* Sets a module made elsewhere (parsed IR) up as target_module_ir does its own: tm's
 * triple and data layout, and its CPU and features on every function. */
void target_prepare_module(LLVMContextRef ctx, LLVMModuleRef mod, LLVMTargetMachineRef tm);
bool target_verify(LLVMModuleRef mod, char *err, size_t errlen);
bool target_optimize(LLVMModuleRef mod, LLVMTargetMachineRef tm, int opt, char *err, size_t errlen);
/* The IR of a module as a malloc'd string. */
char *target_ir_text(LLVMModuleRef mod);

#endif
