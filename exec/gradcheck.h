/* gradcheck: autodiff's gradients of the loss against central differences.
 *
 * Runs on the reference interpreter in f64, on one batch of the training set, for a
 * random sample of each trainable parameter's elements. */
#ifndef NND_GRADCHECK_H
#define NND_GRADCHECK_H

#include <stdio.h>

#include "program.h"

typedef struct GradcheckOptions {
    int batch; /* samples in the batch (default 4) */
    int per_param; /* elements checked per parameter (default 24; 0: all) */
    double eps; /* central-difference step (default 1e-6) */
    double atol, rtol; /* |ad - fd| <= atol + rtol * |fd| (1e-5, 1e-3) */
} GradcheckOptions;

/* Compares the gradients; p must be elaborated in f64.  Prints a table to out;
 * returns NND_EXIT_OK or NND_EXIT_ERROR. */
int gradcheck_run(Program *p, const GradcheckOptions *o, FILE *out);

#endif
