/* jit: compiles scheduled functions with LLVM 19 (new pass manager, host CPU) and
 * loads them through ORC LLJIT.  Only codegen.c and jit.c include llvm-c. */
#ifndef NND_JIT_H
#define NND_JIT_H

#include "schedule.h"

/* A function to generate: its name and its kernels. */
typedef struct CodegenFunction {
    const char *name;
    const Schedule *sched;
    bool profile; /* time each kernel into args->profile[kernel] */
    bool check; /* after each kernel, count the non-finite values it made (one per
                   op with a schedule built with check) and stop at the first */
    /* notify[i] (i < nnotify): after the last kernel that writes state i, call
     * args->ready(args, i) when it is set; NULL: never */
    const bool *notify;
    int nnotify;
} CodegenFunction;

typedef struct Jit Jit;

typedef struct JitOptions {
    bool keep_ir; /* keep the optimized IR as text (jit_ir) */
    int opt_level; /* 1..3; 0 means 3 */
} JitOptions;

/* Generates, verifies, optimizes and loads the functions; addrs[i] receives the
 * address of fns[i].  Returns NULL with a message on failure (an internal error:
 * user errors are caught before). */
Jit *jit_compile(Graph *g, const CodegenFunction *fns, int nfns, const JitOptions *o, void **addrs,
                 char *err, size_t errlen);
/* Whether the machine code came from the compile cache ($NND_CACHE_DIR, else
 * $XDG_CACHE_HOME/nnd or ~/.cache/nnd; NND_CACHE=0 turns it off; not with keep_ir). */
bool jit_cached(const Jit *j);
/* How many parts the module was compiled in, one thread each (1 for a small one). */
int jit_parts(const Jit *j);
/* The optimized IR (when kept), owned by the Jit. */
const char *jit_ir(const Jit *j);
/* Seconds spent generating IR, optimizing it, and making machine code. */
void jit_phases(const Jit *j, double *ir, double *opt, double *mc);
void jit_free(Jit *j);
/* Starts what every compile begins with (LLVM's target for this host, its CPU's name
 * and features, a target machine and a started JIT: 4 ms) on a thread of its own, for
 * a caller that will compile soon: it then overlaps the front end and the data's
 * reading instead of delaying the compile.  The thread goes on to warm LLVM up by
 * compiling a small module until a compile begins.  The first jit_compile at the
 * default optimization level takes what it made; every jit_compile stops the thread
 * and waits for it before it returns; harmless to call twice or not at all. */
void jit_prewarm(void);
/* Stops jit_prewarm's thread, waits for it and disposes of what it made and no
 * compile took.  Before the process exits: static destructors registered after the
 * thread began (LLVM's, of what it used first) must not run under it.  Also called
 * at exit; harmless to call twice. */
void jit_prewarm_end(void);

#endif
