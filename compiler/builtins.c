#include "builtins.h"

#include <math.h>
#include <string.h>

#define COUNT_ARGS(...) (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *))

const BuiltinInfo builtin_info[BI_COUNT] = {
#define BI(id, nm, req, cx, ...)                                                             \
    [BI_##id] = {.name = nm, .required = req, .ctx = BCTX_##cx, .params = {__VA_ARGS__},      \
                 .nparams = COUNT_ARGS(__VA_ARGS__)},
#include "builtins.def"
#undef BI
};

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

const char *const train_settings[] = {"loss", "opt", "batch", "epochs", "steps", "seed", "shuffle",
                                      "clip_norm", "clip_value", "max_norm", "ema", "accumulate", "drop_last",
                                      NULL};
const char *const log_families[LOG_FAMILY_COUNT + 1] = {
#define X(id, text) text,
    LOG_FAMILIES(X)
#undef X
    NULL};

/* Settings the language reserves whose behaviour is not built yet: rejected by name. */
const char *const train_settings_unsupported[] = {NULL};
