#include "builtins.h"

#include <math.h>
#include <string.h>

#include "graph.h"

#define COUNT_ARGS(...) (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *))

/* An FN op is a function of one argument, x, computing the op. */
#define BUILTIN_OP_FN(id, text, arity, kind)                                                       \
    [BI_##id] = {.name = text,                                                                     \
                 .required = 1,                                                                    \
                 .ctx = BCTX_ANY,                                                                  \
                 .params = {"x"},                                                                  \
                 .nparams = 1,                                                                     \
                 .op = OP_##id},
#define BUILTIN_OP_NOFN(id, text, arity, kind)

const BuiltinInfo builtin_info[BI_COUNT] = {
#define OP(id, text, arity, kind, infer, vjp, sem, ulps, fn) BUILTIN_OP_##fn(id, text, arity, kind)
#include "ops.def"
#undef OP
#define BI(id, nm, req, cx, ...)                                                                   \
    [BI_##id] = {.name = nm,                                                                       \
                 .required = req,                                                                  \
                 .ctx = BCTX_##cx,                                                                 \
                 .params = {__VA_ARGS__},                                                          \
                 .nparams = COUNT_ARGS(__VA_ARGS__),                                               \
                 .op = -1},
#include "builtins.def"
#undef BI
};
#undef BUILTIN_OP_FN
#undef BUILTIN_OP_NOFN

/* FN marks elementwise ops of one input only */
#define BUILTIN_OP_FN(id, text, arity, kind)                                                       \
    _Static_assert(arity == 1 && OPK_##kind == OPK_EW1, "ops.def: FN op " #id " is not EW1");
#define BUILTIN_OP_NOFN(id, text, arity, kind)
#define OP(id, text, arity, kind, infer, vjp, sem, ulps, fn) BUILTIN_OP_##fn(id, text, arity, kind)
#include "ops.def"
#undef OP
#undef BUILTIN_OP_FN
#undef BUILTIN_OP_NOFN

int builtin_find(const char *name)
{
    for (int i = 0; i < BI_COUNT; i++)
        if (strcmp(builtin_info[i].name, name) == 0)
            return i;
    return -1;
}

bool builtin_constant(const char *name, double *value)
{
    static const struct {
        const char *name;
        double value;
    } consts[] = {{"pi", 3.14159265358979323846}, {"e", 2.71828182845904523536}, {"inf", INFINITY}};
    for (size_t i = 0; i < sizeof consts / sizeof consts[0]; i++) {
        if (strcmp(consts[i].name, name) == 0) {
            *value = consts[i].value;
            return true;
        }
    }
    return false;
}

const char *const train_settings[TRAIN_SETTING_COUNT + 1] = {
#define X(name) #name,
    TRAIN_SETTINGS(X)
#undef X
        NULL};
const char *const log_families[LOG_FAMILY_COUNT + 1] = {
#define X(id, text) text,
    LOG_FAMILIES(X)
#undef X
        NULL};

/* Settings the language reserves whose behaviour is not built yet: rejected by name. */
const char *const train_settings_unsupported[] = {NULL};
