#include "aot.h"

#include "codegen.h"
#include "nnd_aot.h"
#include "target.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The descriptor's C layout is a sequence of 8-byte fields (nnd_aot.h), which the
 * LLVM structs below mirror one for one. */
_Static_assert(sizeof(NndAotTensor) == 13 * 8, "NndAotTensor is 13 words");
_Static_assert(sizeof(NndAotModel) == 23 * 8 + 3 * sizeof(NndAotTensor),
               "NndAotModel is 23 words and 3 tensors");

typedef struct Desc {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMTypeRef i64, ptr, tensor_ty;
    const char *prefix;
    int count; /* globals made, for their names */
} Desc;

static LLVMValueRef i64c(Desc *d, int64_t v) { return LLVMConstInt(d->i64, (uint64_t)v, 1); }

static LLVMValueRef null_ptr(Desc *d) { return LLVMConstPointerNull(d->ptr); }

/* A private constant global initialized with init. */
static LLVMValueRef private_global(Desc *d, LLVMValueRef init, unsigned align)
{
    char name[64];
    snprintf(name, sizeof name, "%s.d%d", d->prefix, d->count++);
    LLVMValueRef gv = LLVMAddGlobal(d->mod, LLVMTypeOf(init), name);
    LLVMSetInitializer(gv, init);
    LLVMSetGlobalConstant(gv, 1);
    LLVMSetLinkage(gv, LLVMPrivateLinkage);
    LLVMSetAlignment(gv, align);
    return gv;
}

/* n bytes (a string with its NUL when text; tensor data 64-byte aligned). */
static LLVMValueRef bytes_global(Desc *d, const void *bytes, size_t n, bool text)
{
    return private_global(d, LLVMConstStringInContext2(d->ctx, bytes, n, !text), text ? 1 : 64);
}

static LLVMValueRef str(Desc *d, const char *s)
{
    return s ? bytes_global(d, s, strlen(s), true) : null_ptr(d);
}

/* An array of values of type ty. */
static LLVMValueRef array_global(Desc *d, LLVMTypeRef ty, LLVMValueRef *v, int n)
{
    return private_global(d, LLVMConstArray2(ty, v, (uint64_t)n), 8);
}

static LLVMValueRef tensor(Desc *d, const AotTensor *t)
{
    LLVMValueRef dims[NND_MAX_RANK];
    int64_t numel = 1;
    for (int k = 0; k < NND_MAX_RANK; k++) {
        dims[k] = i64c(d, k < t->rank ? t->shape[k] : 0);
        if (k < t->rank)
            numel *= t->shape[k];
    }
    LLVMValueRef data =
        t->data ? bytes_global(d, t->data, (size_t)numel * nnd_dtype_size(t->dtype), false)
                : null_ptr(d);
    LLVMValueRef f[] = {str(d, t->name),
                        i64c(d, t->dtype),
                        i64c(d, t->rank),
                        LLVMConstArray2(d->i64, dims, NND_MAX_RANK),
                        data,
                        i64c(d, t->optional)};
    return LLVMConstNamedStruct(d->tensor_ty, f, 6);
}

static LLVMValueRef tensors(Desc *d, const AotTensor *t, int n)
{
    if (n == 0)
        return null_ptr(d);
    LLVMValueRef *v = xcalloc((size_t)n, sizeof *v);
    for (int i = 0; i < n; i++)
        v[i] = tensor(d, &t[i]);
    LLVMValueRef gv = array_global(d, d->tensor_ty, v, n);
    free(v);
    return gv;
}

static LLVMValueRef fn_ref(Desc *d, const char *name)
{
    LLVMValueRef f = name ? LLVMGetNamedFunction(d->mod, name) : NULL;
    return f ? f : null_ptr(d);
}

/* The hyper-parameters' names, values and fixed flags. */
static void hypers(Desc *d, const AotModel *m, LLVMValueRef out[3])
{
    int n = m->nhypers;
    LLVMValueRef *names = xcalloc((size_t)n + 1, sizeof *names);
    LLVMValueRef *vals = xcalloc((size_t)n + 1, sizeof *vals);
    LLVMValueRef *fixed = xcalloc((size_t)n + 1, sizeof *fixed);
    LLVMTypeRef f64 = LLVMDoubleTypeInContext(d->ctx);
    for (int i = 0; i < n; i++) {
        names[i] = str(d, m->hyper_names[i]);
        vals[i] = LLVMConstReal(f64, m->hyper_values[i]);
        fixed[i] = i64c(d, m->hyper_fixed[i]);
    }
    out[0] = n ? array_global(d, d->ptr, names, n) : null_ptr(d);
    out[1] = n ? array_global(d, f64, vals, n) : null_ptr(d);
    out[2] = n ? array_global(d, d->i64, fixed, n) : null_ptr(d);
    free(names);
    free(vals);
    free(fixed);
}

/* `const NndAotModel NAME_model`, exported. */
static void add_descriptor(LLVMContextRef ctx, LLVMModuleRef mod, const AotModel *m,
                           const char *target)
{
    Desc d = {ctx,     mod, LLVMInt64TypeInContext(ctx), LLVMPointerTypeInContext(ctx, 0), NULL,
              m->name, 0};
    LLVMTypeRef tf[] = {d.ptr, d.i64, d.i64, LLVMArrayType2(d.i64, NND_MAX_RANK), d.ptr, d.i64};
    d.tensor_ty = LLVMStructCreateNamed(ctx, "NndAotTensor");
    LLVMStructSetBody(d.tensor_ty, tf, 6, 0);
    LLVMValueRef h[3];
    hypers(&d, m, h);
    LLVMValueRef f[] = {i64c(&d, NND_AOT_ABI),
                        str(&d, m->name),
                        str(&d, m->source),
                        str(&d, target),
                        i64c(&d, m->dtype),
                        i64c(&d, m->max_batch),
                        i64c(&d, m->arena_bytes),
                        i64c(&d, m->nparams),
                        i64c(&d, m->nstates),
                        i64c(&d, m->nhypers),
                        tensors(&d, m->params, m->nparams),
                        tensors(&d, m->states, m->nstates),
                        h[0],
                        h[1],
                        h[2],
                        i64c(&d, m->hyper_step),
                        i64c(&d, m->hyper_t),
                        i64c(&d, m->hyper_micro),
                        i64c(&d, m->hyper_accum),
                        i64c(&d, m->accumulate),
                        tensor(&d, &m->x),
                        tensor(&d, &m->y),
                        tensor(&d, &m->output),
                        fn_ref(&d, m->forward),
                        fn_ref(&d, m->step),
                        fn_ref(&d, m->step_accum)};
    int nf = (int)(sizeof f / sizeof f[0]);
    LLVMTypeRef *ft = xcalloc((size_t)nf, sizeof *ft);
    for (int i = 0; i < nf; i++)
        ft[i] = LLVMTypeOf(f[i]);
    LLVMTypeRef model_ty = LLVMStructCreateNamed(ctx, "NndAotModel");
    LLVMStructSetBody(model_ty, ft, (unsigned)nf, 0);
    free(ft);
    char name[256];
    snprintf(name, sizeof name, "%s_model", m->name);
    LLVMValueRef gv = LLVMAddGlobal(mod, model_ty, name);
    LLVMSetInitializer(gv, LLVMConstNamedStruct(model_ty, f, (unsigned)nf));
    LLVMSetGlobalConstant(gv, 1);
    LLVMSetAlignment(gv, 8);
}

/* Whether t's triple, CPU and features are ones LLVM knows.  LLVM only warns on
 * stderr about an unknown CPU, then may abort making code for it, and the C API
 * cannot list the CPUs; so a child process makes code for an empty function and the
 * parent reads what it printed.  The triple comes first: a CPU of a target LLVM does
 * not have is not the CPU's fault. */
static bool target_known(const TargetSpec *t, char *err, size_t errlen)
{
    if (!target_known_triple(t, err, errlen))
        return false;
    int fds[2];
    if (!t->cpu || pipe(fds) != 0)
        return true;
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        char e[256];
        LLVMTargetMachineRef tm = target_machine(t, 1, false, e, sizeof e);
        LLVMContextRef ctx = LLVMContextCreate();
        LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("probe", ctx);
        LLVMTypeRef ft = LLVMFunctionType(LLVMVoidTypeInContext(ctx), NULL, 0, 0);
        LLVMBuilderRef b = LLVMCreateBuilderInContext(ctx);
        LLVMPositionBuilderAtEnd(
            b, LLVMAppendBasicBlockInContext(ctx, LLVMAddFunction(mod, "probe", ft), "entry"));
        LLVMBuildRetVoid(b);
        char *msg = NULL;
        LLVMMemoryBufferRef buf = NULL;
        _exit(!tm || LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMObjectFile, &msg, &buf));
    }
    close(fds[1]);
    char out[2048];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof out - 1 && (r = read(fds[0], out + n, sizeof out - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = 0;
    close(fds[0]);
    int status = 0;
    bool ok = pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
              WEXITSTATUS(status) == 0 && !strstr(out, "not a recognized");
    if (!ok)
        snprintf(err, errlen, "LLVM does not know CPU '%s'%s%s for '%s'", t->cpu,
                 t->features ? " with features " : "", t->features ? t->features : "",
                 t->triple ? t->triple : "this host");
    return ok;
}

bool aot_emit(Graph *g, const CodegenFunction *fns, int nfns, const AotModel *m, const AotTarget *t,
              const char *path, char **target_desc, char *err, size_t errlen)
{
    int opt = t->opt_level >= 1 && t->opt_level <= 3 ? t->opt_level : 3;
    TargetSpec ts = {t->triple, t->cpu, t->features};
    if (!target_known(&ts, err, errlen))
        return false;
    LLVMTargetMachineRef tm = target_machine(&ts, opt, false, err, errlen);
    if (!tm)
        return false;
    char *triple = LLVMGetTargetMachineTriple(tm), *cpu = LLVMGetTargetMachineCPU(tm);
    *target_desc = xasprintf("%s (%s)", triple, cpu);
    LLVMDisposeMessage(triple);
    LLVMDisposeMessage(cpu);
    LLVMContextRef ctx = LLVMContextCreate();
    double secs[2];
    LLVMModuleRef mod = target_module(ctx, tm, g, fns, nfns, opt, secs, err, errlen);
    bool ok = mod != NULL;
    if (ok) {
        /* the descriptor is the object's one symbol: two models link side by side */
        for (int i = 0; i < nfns; i++)
            LLVMSetLinkage(LLVMGetNamedFunction(mod, fns[i].name), LLVMInternalLinkage);
        add_descriptor(ctx, mod, m, *target_desc);
        char *msg = NULL;
        LLVMMemoryBufferRef buf = NULL;
        ok = !LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMObjectFile, &msg, &buf);
        if (!ok)
            snprintf(err, errlen, "making machine code: %s", msg ? msg : "(no message)");
        LLVMDisposeMessage(msg);
        NndErr e;
        if (ok &&
            nnd_write_file_atomic(path, LLVMGetBufferStart(buf), LLVMGetBufferSize(buf), &e) != 0) {
            snprintf(err, errlen, "%s", e.msg);
            ok = false;
        }
        if (buf)
            LLVMDisposeMemoryBuffer(buf);
        LLVMDisposeModule(mod);
    }
    LLVMContextDispose(ctx);
    LLVMDisposeTargetMachine(tm);
    return ok;
}
