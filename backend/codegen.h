/* codegen: LLVM IR for scheduled kernels (LLVM 19 C API).
 *
 * Each function (step, eval, forward) is an entry `void NAME(NndStepArgs *)` that
 * runs its kernels in order; a loop or reduction kernel is a function
 * `NAME_kI(NndStepArgs *, i64 begin, i64 end)` over a range of its outermost axis,
 * called directly or through nnd_parallel_for.  Loops are plain counted loops over
 * contiguous memory, with one alias scope per buffer, so LLVM vectorizes them; the
 * code calls only the runtime functions NND_ABI_FUNCTIONS lists (nnd_abi.h). */
#ifndef NND_CODEGEN_H
#define NND_CODEGEN_H

#include <llvm-c/Core.h>

#include "jit.h"

/* Adds the functions to mod (created in ctx by the caller, who owns both). */
void codegen_module(LLVMContextRef ctx, LLVMModuleRef mod, Graph *g, const CodegenFunction *fns,
                    int nfns);

/* The runtime functions generated code may call, with their addresses. */
typedef struct RuntimeSymbol {
    const char *name;
    void *addr;
} RuntimeSymbol;
extern const RuntimeSymbol codegen_runtime_symbols[];
extern const int codegen_runtime_symbol_count;

#endif
