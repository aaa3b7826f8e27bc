/* build: a Program compiled ahead of time (`nnd build`): its forward function
 * (and, for training, its step) as an object file with the descriptor the runtime
 * runs it by (nnd_aot.h), and a C header with typed entry points. */
#ifndef NND_BUILD_H
#define NND_BUILD_H

#include "aot.h"
#include "model.h"

typedef struct BuildOptions {
    const char *name; /* a C identifier: NAME_model, NAME_forward, ... */
    const char *source; /* the .nnd file, as the user named it */
    const char *object; /* the object file to write */
    const char *link_hint; /* for the header's comment: what to link */
    bool train; /* also the training step */
    bool embed; /* embed the model's values (weights were given, or train) */
    int64_t max_batch; /* 0: the program's batch */
    AotTarget target;
} BuildOptions;

/* Whether name can prefix C identifiers. */
bool build_name_ok(const char *name);
/* Writes the object file; header gets the header's text.  m holds the values to
 * embed (its parameters and states).  False with a message. */
bool build_object(Program *p, const Model *m, const BuildOptions *o, StrBuf *header, char *err,
                  size_t errlen);

#endif
