/* builtins: the functions and constants every .nnd file sees. */
#ifndef NND_BUILTINS_H
#define NND_BUILTINS_H

#include <stdbool.h>

typedef enum BuiltinId {
#define BI(id, name, req, ctx, ...) BI_##id,
#include "builtins.def"
#undef BI
    BI_COUNT
} BuiltinId;

typedef enum BuiltinCtx { BCTX_ANY, BCTX_INIT, BCTX_DATA } BuiltinCtx;

enum { BUILTIN_MAX_PARAMS = 6 };

typedef struct BuiltinInfo {
    const char *name;
    int required;
    BuiltinCtx ctx;
    const char *params[BUILTIN_MAX_PARAMS];
    int nparams;
} BuiltinInfo;

extern const BuiltinInfo builtin_info[BI_COUNT];

/* The builtin function called name, or -1. */
int builtin_find(const char *name);
/* Named constants: pi, e, inf.  Returns false if name is not one. */
bool builtin_constant(const char *name, double *value);
/* Settings of the train block (batch, epochs, ...), for sema and "did you mean". */
extern const char *const train_settings[];
extern const char *const train_settings_unsupported[];
extern const char *const log_families[];
int log_family_count(void);

#endif
