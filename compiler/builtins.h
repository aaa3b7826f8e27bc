/* builtins: the functions and constants every .nnd file sees. */
#ifndef NND_BUILTINS_H
#define NND_BUILTINS_H

#include <stdbool.h>

/* Built-ins are ops.def's FN ops, exp(x) and the like (BI_EXP, ...), then
 * builtins.def's functions. */
#define BUILTIN_OP_FN(id) BI_##id,
#define BUILTIN_OP_NOFN(id)
typedef enum BuiltinId {
#define OP(id, text, arity, kind, infer, vjp, sem, ulps, fn) BUILTIN_OP_##fn(id)
#include "ops.def"
#undef OP
#define BI(id, name, req, ctx, ...) BI_##id,
#include "builtins.def"
#undef BI
    BI_COUNT
} BuiltinId;
#undef BUILTIN_OP_FN
#undef BUILTIN_OP_NOFN

typedef enum BuiltinCtx { BCTX_ANY, BCTX_INIT, BCTX_DATA } BuiltinCtx;

enum { BUILTIN_MAX_PARAMS = 10 };

typedef struct BuiltinInfo {
    const char *name;
    int required;
    BuiltinCtx ctx;
    const char *params[BUILTIN_MAX_PARAMS];
    int nparams;
    int op; /* an FN op of ops.def (an OpId): the built-in is op(x); -1 for the others */
} BuiltinInfo;

extern const BuiltinInfo builtin_info[BI_COUNT];

/* The builtin function called name, or -1. */
int builtin_find(const char *name);
/* Named constants: pi, e, inf.  Returns false if name is not one. */
bool builtin_constant(const char *name, double *value);
/* Settings of the train block (batch, epochs, ...), for sema and "did you mean";
 * sema keeps one slot per setting. */
#define TRAIN_SETTINGS(X)                                                                          \
    X(loss)                                                                                        \
    X(opt)                                                                                         \
    X(batch)                                                                                       \
    X(epochs)                                                                                      \
    X(steps)                                                                                       \
    X(seed)                                                                                        \
    X(shuffle)                                                                                     \
    X(clip_norm)                                                                                   \
    X(clip_value)                                                                                  \
    X(max_norm)                                                                                    \
    X(ema)                                                                                         \
    X(accumulate)                                                                                  \
    X(drop_last)                                                                                   \
    X(early_stop)                                                                                  \
    X(patience)                                                                                    \
    X(min_delta)                                                                                   \
    X(precision)
enum {
#define X(name) SETTING_##name,
    TRAIN_SETTINGS(X)
#undef X
        TRAIN_SETTING_COUNT
};
/* The settings' names in SETTING_ order, then NULL. */
extern const char *const train_settings[TRAIN_SETTING_COUNT + 1];
extern const char *const train_settings_unsupported[];
/* What `log` statements name (docs/language.md): LOGI_LOSS is the index of "loss"
 * in log_families, and program.h makes LOG_LOSS its bit. */
#define LOG_FAMILIES(X)                                                                            \
    X(LOSS, "loss")                                                                                \
    X(LR, "lr")                                                                                    \
    X(GRAD_NORM, "grad_norm")                                                                      \
    X(WEIGHT_NORM, "weight_norm")                                                                  \
    X(UPDATE_RATIO, "update_ratio")                                                                \
    X(MAX_GRAD, "max_grad")                                                                        \
    X(NONFINITE, "nonfinite")                                                                      \
    X(HISTOGRAMS, "histograms")
enum {
#define X(id, text) LOGI_##id,
    LOG_FAMILIES(X)
#undef X
        LOG_FAMILY_COUNT
};
/* The families' names in LOGI_ order, then NULL. */
extern const char *const log_families[LOG_FAMILY_COUNT + 1];

#endif
