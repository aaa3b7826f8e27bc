/* tools: the experiment commands built on the driver.
 *
 *   nnd compare   trains one program once per update rule (or per value of a
 *                 hyper-parameter) from the same initial weights and batches
 *   nnd lrfind    the learning-rate range test
 *   nnd explain   each update rule after expansion and simplification, as
 *                 formulas, with its memory traffic per parameter element */
#ifndef NND_TOOLS_H
#define NND_TOOLS_H

#include <stdio.h>

#include "driver.h"

/* Parses `text` as an expression (the --opt of nnd compare), from a source file
 * named `name` added to fe's source map.  Errors go to fe->diags; returns NULL
 * then.  The tree lives in *keep, which the caller frees (ast_module_free) after
 * elaborating with it. */
const Ast *tools_parse_expr(Frontend *fe, const char *name, const char *text, AstModule **keep);

typedef struct CompareRow {
    char label[160];
    bool ok;
    char err[1024];
    double final_loss;
    double steps_per_s;
    int64_t steps;
    /* the first metric of the first eval statement: its name, last value, best
     * value and the epoch (1-based, fractional for step intervals) it came at */
    char metric[96];
    bool have_metric, higher_better;
    double last, best, best_epoch;
} CompareRow;

/* Trains p (compiled, `threads` threads, silent) and fills row. */
void compare_run(Program *p, int threads, CompareRow *row);
void compare_print(const CompareRow *rows, int n, FILE *out);

/* The range test: `steps` steps with opt.lr rising exponentially from lo to hi;
 * prints the loss against the rate and a suggested rate, and with svg, plots them
 * there.  Returns an exit code. */
int lrfind_run(Program *p, int threads, int64_t steps, double lo, double hi, const char *svg,
               FILE *out);

/* Prints every optimizer group's update rule as formulas, for its first trainable
 * parameter, with the bytes it reads and writes per element. */
void explain_print(const Program *p, FILE *out);

#endif
