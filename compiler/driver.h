/* driver: training and checking a program with the reference interpreter. */
#ifndef NND_DRIVER_H
#define NND_DRIVER_H

#include <stdio.h>

#include "elab.h"
#include "interp.h"

/* Exit codes of `nnd run` and `nnd gradcheck`. */
enum {
    NND_EXIT_OK = 0,
    NND_EXIT_ERROR = 1, /* bad input, diagnostics printed */
    NND_EXIT_USAGE = 2,
    NND_EXIT_NONFINITE = 3, /* training stopped on a NaN or Inf loss */
};

/* The trained state of a program: one tensor per parameter and state. */
typedef struct Model {
    ITensor *params;
    ITensor *states;
    int nparams, nstates;
} Model;

/* Initializes parameters and states from their initializers (seeded). */
bool model_init(Program *p, Model *m, char *err, size_t errlen);
void model_free(Model *m);

typedef struct TrainResult {
    double final_loss; /* mean loss of the last epoch (or of the steps run) */
    int64_t steps;
    bool nonfinite;
} TrainResult;

/* Writes the parameters to a safetensors file, atomically, named as in the program
 * (`fc1.W`), in their dtypes. */
bool model_save(const Program *p, const Model *m, const char *path, int64_t steps, char *err,
                size_t errlen);

/* Trains with the interpreter; progress goes to out.  Returns an exit code. */
int driver_train_interp(Program *p, Model *m, FILE *out, TrainResult *res);

/* The mean of each metric of eval spec `which` over its data set. */
bool driver_evaluate(Program *p, Model *m, int which, double *values, char *err, size_t errlen);

typedef struct GradcheckOptions {
    int batch; /* samples in the batch (default 4) */
    int per_param; /* elements checked per parameter (default 24; 0: all) */
    double eps; /* central-difference step (default 1e-6) */
    double atol, rtol; /* |ad - fd| <= atol + rtol * |fd| (1e-5, 1e-3) */
} GradcheckOptions;

/* Compares autodiff gradients of the loss with central differences; p must be
 * elaborated in f64.  Prints a table to out; returns NND_EXIT_OK or NND_EXIT_ERROR. */
int driver_gradcheck(Program *p, const GradcheckOptions *o, FILE *out);

/* Total number of optimizer steps the program runs. */
int64_t program_total_steps(const Program *p);

#endif
