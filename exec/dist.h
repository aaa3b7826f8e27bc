/* dist: data-parallel training over MPI (Open MPI), for `mpirun -np N nnd run`.
 *
 * Every rank compiles the same program (dist_check_same refuses ranks that differ),
 * starts from the same weights (the same seed, or the same checkpoint) and keeps
 * them equal: each global batch is split across the ranks, each rank adds its
 * part's gradient to the gradient sums (the `accumulate` machinery, built for any
 * k when the program is compiled distributed), their sums over the ranks start as
 * non-blocking all-reduces while the backward pass still runs (dist_ready, called by
 * the compiled step as each gradient sum is final), dist_reduce waits for them, and
 * every rank applies the same update (Program.apply_updates).
 * Rank 0 alone prints, saves and writes checkpoints.
 *
 * Built with MPI when CMake finds it (NND_HAVE_MPI); without it, dist_init says how
 * to get it. */
#ifndef NND_DIST_H
#define NND_DIST_H

#include "nnd_abi.h"
#include "program.h"

typedef struct Dist Dist;

/* True when this process was started by mpirun (Open MPI's environment). */
bool dist_launched(void);
/* MPI_Init and this process's place; NULL with a message (a build without MPI). */
Dist *dist_init(char *err, size_t errlen);
/* MPI_Finalize.  Prints, on rank 0, the time spent in all-reduce when there was any. */
void dist_finish(Dist *d, FILE *out);
/* MPI_Abort: every rank stops with status rc. */
void dist_abort(Dist *d, int rc);
int dist_rank(const Dist *d);
int dist_ranks(const Dist *d);
/* Threads per rank when --threads is not given: the cores over the ranks on this
 * machine, at least 1. */
int dist_default_threads(const Dist *d);
/* false with a message naming the first difference when the ranks' programs or
 * settings differ (a different file or --set), or naming the ranks and their
 * samples when a rank's part of a batch holds 1 sample and the program keeps
 * statistics over the batch (batch norm, per rank); collective. */
bool dist_check_same(Dist *d, const Program *p, char *err, size_t errlen);
/* The gradient sums (states[i] their buffers) that dist_reduce sums, in order:
 * the order the accumulation step finishes them (Executable.grad_order), in which
 * their all-reduces start on every rank; early[k]: the step finishes sum k before
 * its last product (Executable.grad_early; what the run's last line counts). */
void dist_attach(Dist *d, const Program *p, void *const *states, const IntVec *order,
                 const bool *early);
/* NndStepArgs.ready (ready_ctx: the Dist): the compiled accumulation step has
 * finished the gradient sum of that state; its non-blocking all-reduce (and those of
 * any before it in the order) starts now, overlapping the rest of the backward
 * pass. */
void dist_ready(NndStepArgs *args, int32_t state);
/* NndTrainer.reduce: waits for the gradient sums' all-reduces (starting those not
 * started yet), and sums vals[0..n) over the ranks. */
int dist_reduce(void *ctx, double *vals, int n, NndErr *err);

#endif
