#include "jit.h"

#include "codegen.h"
#include "target.h"

#include <llvm-c/BitWriter.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct Jit {
    LLVMOrcLLJITRef lljit; /* owns the compiled code */
    char *ir;
    double ir_seconds, opt_seconds, mc_seconds;
    bool cached; /* the object code came from the compile cache */
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

/* ---- the compile cache ----
 * An entry is DIR/KEY.o: a header (magic, the key, the object's length and
 * checksum) and the object file the optimized module became.  The key hashes the
 * unoptimized IR (which holds the program, its schedule and the ABI's offsets), the
 * optimization level, the CPU and its features and LLVM's version; an entry whose
 * header does not match (torn, corrupt, another key) is ignored and rebuilt. */
typedef struct CacheHeader {
    char magic[8];
    uint64_t key[2], len, sum;
} CacheHeader;

static const char cache_magic[8] = {'N', 'N', 'D', 'O', 'B', 'J', '0', '1'};

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

static void cache_key(LLVMModuleRef mod, LLVMTargetMachineRef tm, int opt, uint64_t key[2])
{
    /* the module's bitcode: what the text says, made in a fraction of the time */
    LLVMMemoryBufferRef bc = LLVMWriteBitcodeToMemoryBuffer(mod);
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
        key[k] = fnv1a(h, &opt, sizeof opt);
    }
    LLVMDisposeMemoryBuffer(bc);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(feat);
}

static char *cache_path(const char *dir, const uint64_t key[2])
{
    return xasprintf("%s/%016llx%016llx.o", dir, (unsigned long long)key[0],
                     (unsigned long long)key[1]);
}

/* The object of a valid entry as a memory buffer, or NULL. */
static LLVMMemoryBufferRef cache_load(const char *path, const uint64_t key[2])
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    CacheHeader h;
    char *data = NULL;
    bool ok = fread(&h, sizeof h, 1, f) == 1 && !memcmp(h.magic, cache_magic, 8) &&
              h.key[0] == key[0] && h.key[1] == key[1] && h.len > 0 && h.len < ((uint64_t)1 << 32);
    if (ok) {
        data = xmalloc((size_t)h.len + 1);
        ok = fread(data, 1, (size_t)h.len, f) == h.len && fgetc(f) == EOF &&
             fnv1a(FNV_OFFSET, data, (size_t)h.len) == h.sum;
    }
    fclose(f);
    LLVMMemoryBufferRef buf =
        ok ? LLVMCreateMemoryBufferWithMemoryRangeCopy(data, (size_t)h.len, "nnd-cached") : NULL;
    free(data);
    return buf;
}

static void cache_store(const char *dir, const char *path, const uint64_t key[2],
                        LLVMMemoryBufferRef obj)
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
    size_t n = LLVMGetBufferSize(obj);
    const char *start = LLVMGetBufferStart(obj);
    CacheHeader h = {{0}, {key[0], key[1]}, n, fnv1a(FNV_OFFSET, start, n)};
    memcpy(h.magic, cache_magic, 8);
    char *all = xmalloc(sizeof h + n);
    memcpy(all, &h, sizeof h);
    memcpy(all + sizeof h, start, n);
    NndErr e;
    (void)nnd_write_file_atomic(path, all, sizeof h + n, &e); /* a cache: best effort */
    free(all);
}

/* The object code of mod for tm: from the cache, or optimized and emitted (and
 * stored).  Takes mod.  NULL with a message. */
static LLVMMemoryBufferRef object_code(Jit *j, LLVMModuleRef mod, LLVMTargetMachineRef tm, int opt,
                                       bool keep_ir, char *err, size_t errlen)
{
    char *dir = keep_ir ? NULL : cache_dir(), *path = NULL;
    uint64_t key[2];
    LLVMMemoryBufferRef obj = NULL;
    if (dir) {
        double t0 = clock_seconds();
        cache_key(mod, tm, opt, key);
        path = cache_path(dir, key);
        obj = cache_load(path, key);
        j->ir_seconds += clock_seconds() - t0;
        j->cached = obj != NULL;
    }
    if (!obj) {
        double t1 = clock_seconds();
        bool ok = target_optimize(mod, tm, opt, err, errlen);
        j->opt_seconds = clock_seconds() - t1;
        if (ok && keep_ir)
            j->ir = target_ir_text(mod);
        char *msg = NULL;
        double t2 = clock_seconds();
        if (ok && LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMObjectFile, &msg, &obj)) {
            snprintf(err, errlen, "making machine code: %s", msg ? msg : "failed");
            obj = NULL;
        }
        LLVMDisposeMessage(msg);
        j->mc_seconds = clock_seconds() - t2;
        if (obj && path)
            cache_store(dir, path, key, obj);
    }
    LLVMDisposeModule(mod);
    free(dir);
    free(path);
    return obj;
}

Jit *jit_compile(Graph *g, const CodegenFunction *fns, int nfns, const JitOptions *o, void **addrs,
                 char *err, size_t errlen)
{
    int opt = o && o->opt_level >= 1 && o->opt_level <= 3 ? o->opt_level : 3;
    LLVMTargetMachineRef tm = target_machine(NULL, opt, true, err, errlen);
    if (!tm)
        return NULL;
    LLVMContextRef ctx = LLVMContextCreate();
    Jit *j = xcalloc(1, sizeof *j);
    LLVMModuleRef mod = target_module_ir(ctx, tm, g, fns, nfns, &j->ir_seconds, err, errlen);
    LLVMMemoryBufferRef obj =
        mod ? object_code(j, mod, tm, opt, o && o->keep_ir, err, errlen) : NULL;
    LLVMDisposeTargetMachine(tm);
    LLVMContextDispose(ctx);
    bool ok = obj != NULL && start_jit(j, opt, err, errlen);
    if (ok) {
        double t_mc = clock_seconds();
        LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(j->lljit);
        ok = !llvm_failed(LLVMOrcLLJITAddObjectFile(j->lljit, jd, obj), "adding the object", err,
                          errlen);
        obj = NULL;
        for (int i = 0; ok && i < nfns; i++) {
            LLVMOrcExecutorAddress addr = 0;
            ok = !llvm_failed(LLVMOrcLLJITLookup(j->lljit, &addr, fns[i].name), "linking", err,
                              errlen);
            addrs[i] = (void *)(uintptr_t)addr;
        }
        j->mc_seconds += clock_seconds() - t_mc;
    }
    if (obj)
        LLVMDisposeMemoryBuffer(obj);
    if (!ok) {
        jit_free(j);
        return NULL;
    }
    return j;
}

bool jit_cached(const Jit *j) { return j->cached; }

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
