#include "jit.h"

#include "codegen.h"
#include "target.h"

#include <errno.h>
#include <limits.h>
#include <llvm-c/BitReader.h>
#include <llvm-c/BitWriter.h>
#include <llvm-c/Error.h>
#include <llvm-c/IRReader.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct Jit {
    LLVMOrcLLJITRef lljit; /* owns the compiled code */
    char *ir;
    double ir_seconds, opt_seconds, mc_seconds;
    bool cached; /* the object code came from the compile cache */
    int parts; /* compiled in this many parts, one thread each */
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
 * nothing else.  Takes jtm. */
static bool start_jit(Jit *j, LLVMTargetMachineRef jtm, char *err, size_t errlen)
{
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

/* ---- a head start ----
 * jit_prewarm's thread makes, beside the front end, what every compile starts with:
 * LLVM's native target and the host's CPU (target_machine, 2.4 ms the first time), a
 * target machine for the module (0.7 ms) and a started LLJIT with the runtime's
 * symbols (1.2 ms), for the default optimization level.  The first jit_compile at that
 * level takes them as soon as they are made.  The thread then goes on to warm LLVM
 * up: it optimizes and emits a small module like the generated ones (WARM_IR) with
 * a target machine of its own, while the main thread reads the training data.  A
 * process's first compile pays once for what LLVM sets up and pages in on first use
 * (pass pipelines, the instruction selector's tables): 18 ms for the small module
 * alone, 6-10 ms less for the program's own compile after it (784-128-10: 61.5 ->
 * 54.6 ms, medians of 12).  A compile that begins stops it (between its passes and
 * its machine code, or before it starts) and waits for the thread at its end, so
 * that it never runs beside the program.  At the process's end, jit_prewarm_end
 * waits for it before the static destructors run: LLVM's function-local statics
 * first used on the thread register theirs after any atexit of ours. */
enum { WARM_OPT = 3 };

static pthread_mutex_t warm_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t warm_cv = PTHREAD_COND_INITIALIZER;
static struct {
    pthread_t thread;
    bool started, made; /* made: tm and lljit are set (or failed) */
    bool stop; /* a compile has begun, or the process ends: no warming up */
    LLVMTargetMachineRef tm;
    LLVMOrcLLJITRef lljit;
} warm;

/* A loop as codegen makes them (noalias operands, a compare and select, a square
 * root, a sum, a call out), which the vectorizer and instruction selector handle
 * much as they do the program's own. */
static const char WARM_IR[] = "declare void @ext(ptr, i64)\n"
                              "declare float @llvm.sqrt.f32(float)\n"
                              "define float @warm(ptr noalias %a, ptr noalias %b, i64 %n) {\n"
                              "entry:\n"
                              "  %c = icmp sgt i64 %n, 0\n"
                              "  br i1 %c, label %body, label %done\n"
                              "body:\n"
                              "  %i = phi i64 [ 0, %entry ], [ %i1, %body ]\n"
                              "  %acc = phi float [ 0.0, %entry ], [ %acc1, %body ]\n"
                              "  %pa = getelementptr float, ptr %a, i64 %i\n"
                              "  %x = load float, ptr %pa, align 4\n"
                              "  %pb = getelementptr float, ptr %b, i64 %i\n"
                              "  %y = load float, ptr %pb, align 4\n"
                              "  %m = fmul float %x, %y\n"
                              "  %s = fadd float %m, 1.0\n"
                              "  %g = fcmp ogt float %s, 0.0\n"
                              "  %r = select i1 %g, float %s, float 0.0\n"
                              "  %q = call float @llvm.sqrt.f32(float %r)\n"
                              "  store float %q, ptr %pb, align 4\n"
                              "  %acc1 = fadd reassoc float %acc, %q\n"
                              "  %i1 = add nsw i64 %i, 1\n"
                              "  %e = icmp slt i64 %i1, %n\n"
                              "  br i1 %e, label %body, label %done\n"
                              "done:\n"
                              "  %sum = phi float [ 0.0, %entry ], [ %acc1, %body ]\n"
                              "  call void @ext(ptr %a, i64 %n)\n"
                              "  ret float %sum\n"
                              "}\n";

static void stop_warming(void)
{
    pthread_mutex_lock(&warm_mu);
    warm.stop = true;
    pthread_mutex_unlock(&warm_mu);
}

static bool warming_stopped(void)
{
    pthread_mutex_lock(&warm_mu);
    bool begun = warm.stop;
    pthread_mutex_unlock(&warm_mu);
    return begun;
}

/* Optimizes and emits WARM_IR for a target machine of its own, for the host and the
 * default level, and throws the code away; stops early once a compile has begun. */
static void warm_llvm(void)
{
    char err[256];
    LLVMTargetMachineRef tm = target_machine(NULL, WARM_OPT, true, err, sizeof err);
    if (!tm)
        return;
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMMemoryBufferRef buf =
        LLVMCreateMemoryBufferWithMemoryRangeCopy(WARM_IR, sizeof WARM_IR - 1, "warm");
    LLVMModuleRef mod = NULL;
    char *msg = NULL;
    if (!LLVMParseIRInContext(ctx, buf, &mod, &msg)) { /* takes buf */
        target_prepare_module(ctx, mod, tm);
        LLVMMemoryBufferRef obj = NULL;
        if (target_optimize(mod, tm, WARM_OPT, err, sizeof err) && !warming_stopped() &&
            !LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMObjectFile, &msg, &obj))
            LLVMDisposeMemoryBuffer(obj);
        LLVMDisposeModule(mod);
    }
    LLVMDisposeMessage(msg);
    LLVMContextDispose(ctx);
    LLVMDisposeTargetMachine(tm);
}

static void dispose_lljit(LLVMOrcLLJITRef lljit)
{
    LLVMErrorRef e = LLVMOrcDisposeLLJIT(lljit);
    if (e)
        LLVMConsumeError(e);
}

static void *prewarm_main(void *arg)
{
    (void)arg;
    char err[256];
    LLVMTargetMachineRef tm = target_machine(NULL, WARM_OPT, true, err, sizeof err);
    LLVMTargetMachineRef jtm = tm ? target_machine(NULL, WARM_OPT, true, err, sizeof err) : NULL;
    Jit j = {0};
    if (jtm && !start_jit(&j, jtm, err, sizeof err) && j.lljit) {
        dispose_lljit(j.lljit);
        j.lljit = NULL;
    }
    pthread_mutex_lock(&warm_mu);
    warm.tm = tm;
    warm.lljit = j.lljit;
    warm.made = true;
    pthread_cond_broadcast(&warm_cv);
    pthread_mutex_unlock(&warm_mu);
    /* on one core it would only take turns with the data's reading: the first-use
     * costs are paid once either way, and the small module is more work */
    if (tm && nnd_cpu_count() > 1 && !warming_stopped())
        warm_llvm();
    return NULL;
}

/* Waits until the thread has made them; *tm and *lljit get what it made (NULL:
 * nothing, or taken). */
static void take_warm(LLVMTargetMachineRef *tm, LLVMOrcLLJITRef *lljit)
{
    pthread_mutex_lock(&warm_mu);
    warm.stop = true;
    while (warm.started && !warm.made)
        pthread_cond_wait(&warm_cv, &warm_mu);
    *tm = warm.tm;
    *lljit = warm.lljit;
    warm.tm = NULL;
    warm.lljit = NULL;
    pthread_mutex_unlock(&warm_mu);
}

/* Stops the warming up and waits for the thread to end. */
static void prewarm_join(void)
{
    pthread_mutex_lock(&warm_mu);
    bool started = warm.started;
    warm.started = false;
    warm.stop = true;
    pthread_mutex_unlock(&warm_mu);
    if (started)
        pthread_join(warm.thread, NULL);
}

void jit_prewarm_end(void)
{
    prewarm_join();
    if (warm.tm)
        LLVMDisposeTargetMachine(warm.tm);
    if (warm.lljit)
        dispose_lljit(warm.lljit);
    warm.tm = NULL;
    warm.lljit = NULL;
}

void jit_prewarm(void)
{
    pthread_mutex_lock(&warm_mu);
    static bool once;
    if (!once && pthread_create(&warm.thread, NULL, prewarm_main, NULL) == 0) {
        warm.started = true;
        atexit(jit_prewarm_end);
    }
    once = true;
    pthread_mutex_unlock(&warm_mu);
}

/* ---- the compile cache ----
 * An entry is DIR/KEY.o: a header (magic, the key, how many parts, each part's
 * length, a checksum of all of them) and the object files the optimized module's
 * parts became, one after the other.  An entry whose header or checksum does not
 * match (torn, corrupt, another key) is ignored and rebuilt. */
enum { MAX_PARTS = 8 };

typedef struct CacheHeader {
    char magic[8];
    uint64_t key[2], nparts, len[MAX_PARTS], sum;
} CacheHeader;

static const char cache_magic[8] = {'N', 'N', 'D', 'O', 'B', 'J', '0', '2'};

/* The cache's directory (malloc'd), or NULL when off (NND_CACHE=0) or homeless. */
static char *cache_dir(void)
{
    const char *off = getenv("NND_CACHE");
    if (off && (!strcmp(off, "0") || !strcmp(off, "off")))
        return NULL;
    const char *d = getenv("NND_CACHE_DIR");
    if (d && *d)
        return xstrdup(d);
    const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (x && *x == '/')
        return xasprintf("%s/nnd", x);
    return home && *home ? xasprintf("%s/.cache/nnd", home) : NULL;
}

/* The key of a module's object code: its bitcode (the program, its schedule and the
 * ABI's offsets, made in a fraction of the time the text takes), the CPU, its
 * features, LLVM's version, the optimization level and how many parts it is
 * compiled in. */
static void cache_key(LLVMMemoryBufferRef bc, LLVMTargetMachineRef tm, int opt, int nparts,
                      uint64_t key[2])
{
    const char *ir = LLVMGetBufferStart(bc);
    size_t irn = LLVMGetBufferSize(bc);
    char *cpu = LLVMGetTargetMachineCPU(tm), *feat = LLVMGetTargetMachineFeatureString(tm);
    unsigned v[3];
    LLVMGetVersion(&v[0], &v[1], &v[2]);
    for (int k = 0; k < 2; k++) {
        uint64_t h = k ? 0x9e3779b97f4a7c15ull : FNV_OFFSET;
        h = fnv1a(h, ir, irn);
        h = fnv1a(h, cpu, strlen(cpu) + 1);
        h = fnv1a(h, feat, strlen(feat) + 1);
        h = fnv1a(h, v, sizeof v);
        h = fnv1a(h, &nparts, sizeof nparts);
        key[k] = fnv1a(h, &opt, sizeof opt);
    }
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(feat);
}

static char *cache_path(const char *dir, const uint64_t key[2])
{
    return xasprintf("%s/%016llx%016llx.o", dir, (unsigned long long)key[0],
                     (unsigned long long)key[1]);
}

/* The n objects of a valid entry as memory buffers; false when there is none. */
static bool cache_load(const char *path, const uint64_t key[2], int n, LLVMMemoryBufferRef *objs)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    CacheHeader h;
    char *data = NULL;
    uint64_t total = 0;
    bool ok = fread(&h, sizeof h, 1, f) == 1 && !memcmp(h.magic, cache_magic, 8) &&
              h.key[0] == key[0] && h.key[1] == key[1] && h.nparts == (uint64_t)n;
    for (int p = 0; ok && p < n; p++) {
        ok = h.len[p] > 0 && h.len[p] < ((uint64_t)1 << 32);
        total += h.len[p];
    }
    if (ok) {
        data = xmalloc((size_t)total + 1);
        ok = fread(data, 1, (size_t)total, f) == total && fgetc(f) == EOF &&
             fnv1a(FNV_OFFSET, data, (size_t)total) == h.sum;
    }
    fclose(f);
    size_t at = 0;
    for (int p = 0; ok && p < n; p++) {
        objs[p] =
            LLVMCreateMemoryBufferWithMemoryRangeCopy(data + at, (size_t)h.len[p], "nnd-cached");
        at += (size_t)h.len[p];
    }
    free(data);
    return ok;
}

/* Best effort, and cheap: a temporary file renamed over the entry, not synced (a
 * torn entry fails its checksum and is rebuilt). */
static void cache_store(const char *dir, const char *path, const uint64_t key[2], int n,
                        LLVMMemoryBufferRef *objs)
{
    /* the directory, and its parents */
    char *d = xstrdup(dir);
    for (char *p = d + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(d, 0777);
            *p = '/';
        }
    mkdir(d, 0777);
    free(d);
    CacheHeader h = {{0}, {key[0], key[1]}, (uint64_t)n, {0}, FNV_OFFSET};
    memcpy(h.magic, cache_magic, 8);
    for (int p = 0; p < n; p++) {
        h.len[p] = LLVMGetBufferSize(objs[p]);
        h.sum = fnv1a(h.sum, LLVMGetBufferStart(objs[p]), (size_t)h.len[p]);
    }
    char *tmp = xasprintf("%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fwrite(&h, sizeof h, 1, f) == 1;
    for (int p = 0; ok && p < n; p++)
        ok = fwrite(LLVMGetBufferStart(objs[p]), 1, (size_t)h.len[p], f) == h.len[p];
    if (f && fclose(f) != 0)
        ok = false;
    if (!ok || rename(tmp, path) != 0)
        unlink(tmp);
    free(tmp);
}

/* ---- compiling in parts ----
 * A cold compile is mostly LLVM's passes and instruction selection, one function
 * at a time.  A module big enough is split by function into as many parts as
 * there are cores (at most MAX_PARTS): every function gets external linkage, the
 * module goes to bitcode, and each thread reads the bitcode into a context of its
 * own and drops the bodies of the functions of the other parts, which become
 * declarations the JIT links across the parts' objects.  The functions go largest
 * first to the lightest part, so the plan depends only on the module and the core
 * count (part of the cache key). */
enum { MIN_PART_INSTRUCTIONS = 400 };

static long instruction_count(LLVMValueRef f)
{
    long n = 0;
    for (LLVMBasicBlockRef b = LLVMGetFirstBasicBlock(f); b; b = LLVMGetNextBasicBlock(b))
        for (LLVMValueRef i = LLVMGetFirstInstruction(b); i; i = LLVMGetNextInstruction(i))
            n++;
    return n;
}

/* Threads for a cold compile into *n: $NND_COMPILE_THREADS, else the CPUs the process
 * may use (nnd_cpu_count).
 * false with a message when the variable is set but not a whole number >= 1. */
static bool compile_threads(int *n, char *err, size_t errlen)
{
    const char *e = getenv("NND_COMPILE_THREADS");
    if (!e) {
        *n = nnd_cpu_count();
        return true;
    }
    char *end;
    errno = 0;
    long v = strtol(e, &end, 10);
    if (!*e || *end || v < 1 || errno == ERANGE || v > INT_MAX) {
        snprintf(err, errlen,
                 "NND_COMPILE_THREADS='%.40s' is not a thread count (a whole number >= 1)", e);
        return false;
    }
    *n = (int)v;
    return true;
}

/* How many parts to compile mod in; *part_of (malloc'd, one per defined function in
 * module order) says where each goes when more than one. */
static int plan_parts(LLVMModuleRef mod, int cores, int **part_of)
{
    int nf = 0;
    long total = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f))
        if (!LLVMIsDeclaration(f))
            nf++;
    long *size = xcalloc((size_t)nf + 1, sizeof *size);
    int k = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f))
        if (!LLVMIsDeclaration(f))
            total += size[k++] = instruction_count(f);
    long by_size = total / MIN_PART_INSTRUCTIONS;
    int n = cores < MAX_PARTS ? cores : MAX_PARTS;
    if (by_size < n)
        n = (int)by_size;
    if (nf < n)
        n = nf;
    *part_of = NULL;
    if (n <= 1) {
        free(size);
        return 1;
    }
    int *where = xcalloc((size_t)nf, sizeof *where);
    long load[MAX_PARTS] = {0};
    for (int done = 0; done < nf; done++) {
        int big = -1; /* the largest function not placed yet (ties: the first) */
        for (int i = 0; i < nf; i++)
            if (size[i] >= 0 && (big < 0 || size[i] > size[big]))
                big = i;
        int light = 0;
        for (int p = 1; p < n; p++)
            if (load[p] < load[light])
                light = p;
        where[big] = light;
        load[light] += size[big];
        size[big] = -1;
    }
    free(size);
    *part_of = where;
    return n;
}

typedef struct Part {
    LLVMMemoryBufferRef bc; /* the whole module, shared, read only */
    const int *part_of;
    int index, opt;
    LLVMMemoryBufferRef obj; /* out */
    double opt_seconds, mc_seconds;
    char err[256];
} Part;

/* Optimizes mod for tm and emits its object code (NULL with a message). */
static LLVMMemoryBufferRef emit_object(LLVMModuleRef mod, LLVMTargetMachineRef tm, int opt,
                                       char **ir, double *opt_s, double *mc_s, char *err,
                                       size_t errlen)
{
    double t1 = clock_seconds();
    bool ok = target_optimize(mod, tm, opt, err, errlen);
    *opt_s = clock_seconds() - t1;
    if (ok && ir)
        *ir = target_ir_text(mod);
    char *msg = NULL;
    LLVMMemoryBufferRef obj = NULL;
    double t2 = clock_seconds();
    if (ok && LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMObjectFile, &msg, &obj)) {
        snprintf(err, errlen, "making machine code: %s", msg ? msg : "failed");
        obj = NULL;
    }
    LLVMDisposeMessage(msg);
    *mc_s = clock_seconds() - t2;
    return obj;
}

/* Replaces the function f of mod by a declaration of the same name and type. */
static void declaration_only(LLVMModuleRef mod, LLVMValueRef f)
{
    size_t len;
    char *name = xstrdup(LLVMGetValueName2(f, &len));
    LLVMValueRef d = LLVMAddFunction(mod, "", LLVMGlobalGetValueType(f));
    LLVMReplaceAllUsesWith(f, d);
    LLVMDeleteFunction(f);
    LLVMSetValueName2(d, name, len);
    free(name);
}

static void *compile_part(void *arg)
{
    Part *pt = arg;
    LLVMTargetMachineRef tm = target_machine(NULL, pt->opt, true, pt->err, sizeof pt->err);
    if (!tm)
        return NULL;
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef mod = NULL;
    if (LLVMParseBitcodeInContext2(ctx, pt->bc, &mod)) {
        snprintf(pt->err, sizeof pt->err, "internal error: cannot read back the module's bitcode");
    } else {
        int i = 0;
        LLVMValueRef next;
        for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = next) {
            next = LLVMGetNextFunction(f);
            if (!LLVMIsDeclaration(f) && pt->part_of[i++] != pt->index)
                declaration_only(mod, f);
        }
        pt->obj = emit_object(mod, tm, pt->opt, NULL, &pt->opt_seconds, &pt->mc_seconds, pt->err,
                              sizeof pt->err);
        LLVMDisposeModule(mod);
    }
    LLVMContextDispose(ctx);
    LLVMDisposeTargetMachine(tm);
    return NULL;
}

/* Compiles the parts of bc, one thread each (part 0 on this one); false with the
 * first part's message when any fails. */
static bool compile_parts(Jit *j, LLVMMemoryBufferRef bc, const int *part_of, int n, int opt,
                          LLVMMemoryBufferRef *objs, char *err, size_t errlen)
{
    Part parts[MAX_PARTS];
    pthread_t tid[MAX_PARTS];
    bool started[MAX_PARTS] = {false};
    for (int p = 0; p < n; p++)
        parts[p] = (Part){.bc = bc, .part_of = part_of, .index = p, .opt = opt};
    for (int p = 1; p < n; p++)
        started[p] = pthread_create(&tid[p], NULL, compile_part, &parts[p]) == 0;
    compile_part(&parts[0]);
    for (int p = 1; p < n; p++) {
        if (started[p])
            pthread_join(tid[p], NULL);
        else
            compile_part(&parts[p]); /* no thread: here, after the others */
    }
    bool ok = true;
    for (int p = 0; p < n; p++) {
        objs[p] = parts[p].obj;
        if (!parts[p].obj && ok) {
            snprintf(err, errlen, "%s", parts[p].err[0] ? parts[p].err : "compiling failed");
            ok = false;
        }
        /* the slowest part is the wall time */
        if (parts[p].opt_seconds + parts[p].mc_seconds > j->opt_seconds + j->mc_seconds) {
            j->opt_seconds = parts[p].opt_seconds;
            j->mc_seconds = parts[p].mc_seconds;
        }
    }
    if (!ok)
        for (int p = 0; p < n; p++)
            if (objs[p]) {
                LLVMDisposeMemoryBuffer(objs[p]);
                objs[p] = NULL;
            }
    return ok;
}

/* The object code of mod for tm, in *nobjs parts: from the cache, or optimized and
 * emitted (and stored).  Takes mod.  false with a message. */
static bool object_code(Jit *j, LLVMModuleRef mod, LLVMTargetMachineRef tm, int opt, bool keep_ir,
                        LLVMMemoryBufferRef objs[MAX_PARTS], int *nobjs, char *err, size_t errlen)
{
    int threads;
    if (!compile_threads(&threads, err, errlen)) {
        LLVMDisposeModule(mod);
        return false;
    }
    char *dir = keep_ir ? NULL : cache_dir();
    int *part_of = NULL;
    int n = keep_ir ? 1 : plan_parts(mod, threads, &part_of);
    *nobjs = n;
    memset(objs, 0, sizeof(LLVMMemoryBufferRef) * MAX_PARTS);
    double t0 = clock_seconds();
    LLVMMemoryBufferRef bc = NULL;
    if (n > 1) /* every part links to the others' functions */
        for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f))
            if (!LLVMIsDeclaration(f))
                LLVMSetLinkage(f, LLVMExternalLinkage);
    if (dir || n > 1)
        bc = LLVMWriteBitcodeToMemoryBuffer(mod);
    uint64_t key[2];
    char *path = NULL;
    bool have = false;
    if (dir) {
        cache_key(bc, tm, opt, n, key);
        path = cache_path(dir, key);
        have = cache_load(path, key, n, objs);
    }
    j->ir_seconds += clock_seconds() - t0;
    j->cached = have;
    j->parts = n;
    bool ok = have;
    if (!have && target_verify(mod, err, errlen)) {
        if (n == 1) {
            objs[0] = emit_object(mod, tm, opt, keep_ir ? &j->ir : NULL, &j->opt_seconds,
                                  &j->mc_seconds, err, errlen);
            ok = objs[0] != NULL;
        } else {
            LLVMDisposeModule(mod); /* the parts read the bitcode */
            mod = NULL;
            ok = compile_parts(j, bc, part_of, n, opt, objs, err, errlen);
        }
    }
    if (ok && !have && dir)
        cache_store(dir, path, key, n, objs);
    if (mod)
        LLVMDisposeModule(mod);
    if (bc)
        LLVMDisposeMemoryBuffer(bc);
    free(part_of);
    free(path);
    free(dir);
    return ok;
}

Jit *jit_compile(Graph *g, const CodegenFunction *fns, int nfns, const JitOptions *o, void **addrs,
                 char *err, size_t errlen)
{
    int opt = o && o->opt_level >= 1 && o->opt_level <= 3 ? o->opt_level : 3;
    LLVMTargetMachineRef tm = NULL;
    LLVMOrcLLJITRef ready = NULL; /* started by jit_prewarm's thread */
    if (opt == WARM_OPT)
        take_warm(&tm, &ready);
    else
        stop_warming();
    if (!tm)
        tm = target_machine(NULL, opt, true, err, errlen);
    if (!tm) {
        if (ready)
            dispose_lljit(ready);
        return NULL;
    }
    LLVMContextRef ctx = LLVMContextCreate();
    Jit *j = xcalloc(1, sizeof *j);
    LLVMModuleRef mod = target_module_ir(ctx, tm, g, fns, nfns, &j->ir_seconds, err, errlen);
    LLVMMemoryBufferRef objs[MAX_PARTS];
    int nobjs = 0;
    bool ok = object_code(j, mod, tm, opt, o && o->keep_ir, objs, &nobjs, err, errlen);
    prewarm_join(); /* so that it does not run beside the program */
    LLVMContextDispose(ctx);
    int added = 0;
    if (ok && !ready) {
        ok = start_jit(j, tm, err, errlen); /* the JIT takes the machine */
    } else {
        LLVMDisposeTargetMachine(tm);
        j->lljit = ok ? ready : NULL;
        if (!ok && ready)
            dispose_lljit(ready);
    }
    if (ok) {
        double t_mc = clock_seconds();
        LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(j->lljit);
        for (; ok && added < nobjs; added++)
            ok = !llvm_failed(LLVMOrcLLJITAddObjectFile(j->lljit, jd, objs[added]),
                              "adding the object", err, errlen);
        for (int i = 0; ok && i < nfns; i++) {
            LLVMOrcExecutorAddress addr = 0;
            ok = !llvm_failed(LLVMOrcLLJITLookup(j->lljit, &addr, fns[i].name), "linking", err,
                              errlen);
            addrs[i] = (void *)(uintptr_t)addr;
        }
        j->mc_seconds += clock_seconds() - t_mc;
    }
    for (int p = added; p < nobjs; p++) /* the JIT took the ones it was given */
        LLVMDisposeMemoryBuffer(objs[p]);
    if (!ok) {
        jit_free(j);
        return NULL;
    }
    return j;
}

bool jit_cached(const Jit *j) { return j->cached; }

int jit_parts(const Jit *j) { return j->parts; }

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
    if (j->lljit)
        dispose_lljit(j->lljit);
    free(j->ir);
    free(j);
}
