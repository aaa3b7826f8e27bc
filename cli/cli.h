/* cli: the nnd command line.
 *
 * main.c parses the options and dispatches to one function per subcommand:
 * inspect.c (check, parse, graph, emit-llvm, gradcheck, explain), run.c (run),
 * compare.c (compare, lrfind), plot.c (plot), predict.c (predict), build.c (build), sample.c
 * (sample).  Each compiles its file with compile() and prints what it found; none of them holds
 * pipeline logic. */
#ifndef NND_CLI_H
#define NND_CLI_H

#include "compile.h"
#include "gradcheck.h"
#include "train.h"

typedef struct Options {
    const char *cmd;
    int argc; /* the command line as given (run: how to go on after Ctrl-C); borrowed */
    char **argv;
    int resume_at; /* where --resume is in argv (its value after it); 0: not given */
    StrVec files;
    VEC(Override) overrides;
    NndDType dtype;
    bool interp, dot, all, raw, stats, schedule, no_spans, time, verbose, print_params, profile,
        check_numerics;
    int threads;
    const char *resume; /* run: a checkpoint file or directory */
    const char *output; /* plot, lrfind: -o FILE */
    StrVec opts; /* compare: --opt */
    StrVec sweeps; /* compare: --sweep NAME=V1,V2 (repeated) */
    double lr_min, lr_max; /* lrfind */
    int64_t lr_steps;
    const char *weights, *data, *input, *labels; /* predict (build: weights) */
    const char *header, *name, *target, *cpu, *features; /* build */
    bool train; /* build */
    const char *prompt; /* sample */
    int64_t tokens; /* sample: --tokens N */
    double temperature; /* sample */
    int top_k; /* sample: --top-k K */
    bool no_cache; /* sample: --no-cache */
    struct Dist *dist; /* run under mpirun: this process's rank (exec/dist.h), or NULL */
    bool dist_collective; /* the run failed on every rank alike (no MPI_Abort needed) */
    int top; /* predict: --top K */
    bool metrics; /* predict */
    int64_t batch; /* predict, gradcheck: --batch N */
    GradcheckOptions gc;
} Options;

/* Prints "nnd: " fmt (with arg) and a hint; returns NND_EXIT_USAGE. */
int cli_usage_error(const char *fmt, const char *arg);
/* A whole number or a decimal, all of s; false otherwise. */
bool cli_parse_number(const char *s, double *out);

/* Compiles path with o's settings (and opt_text replacing `opt`, when not NULL) and
 * prints the diagnostics, warnings included; loads the data sets when data is set.
 * NULL after errors.  The caller frees the program, then fe. */
Program *cli_compile(Frontend *fe, const Options *o, const char *path, const char *opt_text,
                     const char *opt_name, bool data);

/* A command on one file's program, compiled (its data sets loaded when data is
 * set), then fn; the diagnostics printed, all freed. */
typedef int (*ProgramCmd)(Program *p, Options *o);
int cli_on_program(Options *o, bool data, ProgramCmd fn);

/* Prints COMMAND's own usage (`nnd COMMAND --help`); false for no such command. */
bool cli_help(const char *cmd);

int cmd_check(Options *o);
int cmd_parse(Options *o);
int cmd_graph(Options *o);
int cmd_emit_llvm(Options *o);
int cmd_gradcheck(Options *o);
int cmd_explain(Options *o);
int cmd_run(Options *o);
int cmd_compare(Options *o);
int cmd_lrfind(Options *o);
int cmd_plot(Options *o);
int cmd_predict(Options *o);
int cmd_build(Options *o);
int cmd_sample(Options *o);
int cmd_summary(Options *o);

#endif
