/* executable: a Program turned into functions that run.
 *
 * An Executable holds a step function (with, when asked for, its variants: the step
 * that also computes a log's statistics, and a micro-batch step of `accumulate`),
 * one function per eval statement, and a forward function, all behind the
 * runtime's NndStepFn ABI: either code compiled by the backend (one schedule per
 * function, one LLVM module, one scratch arena), or the reference interpreter
 * behind an adapter.  Both run in the runtime's training loop on the same buffers,
 * so they can be compared step by step. */
#ifndef NND_EXECUTABLE_H
#define NND_EXECUTABLE_H

#include "jit.h"
#include "nnd_abi.h"
#include "program.h"

typedef enum Engine { ENGINE_INTERP, ENGINE_JIT } Engine;

typedef struct ExecOptions {
    Engine engine;
    bool keep_ir; /* keep the optimized IR (emit-llvm) */
    int opt_level; /* LLVM 1..3, 0 for the default */
    bool profile; /* time every kernel of the step (see executable_profile) */
    bool check_numerics; /* the step checks every op's values (NND_STATUS_NONFINITE) */
    int64_t max_batch; /* the largest batch a call passes; 0: the program's batch */
    bool forward_only; /* only the forward function (nnd predict, nnd build) */
} ExecOptions;

typedef struct Executable {
    Program *p; /* borrowed */
    Engine engine;
    int64_t max_batch; /* the largest batch the functions take */
    bool forward_only; /* step and evals are NULL */
    NndStepFn step; /* the loss and the updates */
    NndStepFn step_full; /* the same plus the step outputs (a log's statistics), or NULL */
    void *step_full_user;
    NndStepFn step_accum; /* accumulate = k: a micro-batch that only adds its gradient */
    void *step_accum_user;
    NndStepFn step_apply; /* distributed: the updates from the gradient sums, no data */
    void *step_apply_user;
    NndStepFn step_apply_full; /* the same writing a log's statistics to out[0..], or NULL */
    void *step_apply_full_user;
    NndStepFn *evals; /* one per Program.evals */
    NndStepFn forward; /* NULL when the program has none */
    void *step_user, **eval_user, *forward_user;
    Jit *jit;
    Schedule step_sched, *eval_scheds, forward_sched, full_sched, accum_sched, apply_sched,
        apply_full_sched;
    char *arena;
    int64_t arena_bytes;
    double compile_seconds;
    int64_t *profile; /* nanoseconds per step kernel, when compiled for profiling */
    int64_t *profile_full; /* the same for the step with the log's statistics */
    /* distributed: which states are gradient sums (Program.states.n of them), and
     * the order in which the accumulation step finishes them (and calls
     * NndStepArgs.ready, compiled): the order their all-reduces start in */
    bool *grad_sums;
    IntVec grad_order;
    /* per entry of grad_order: the compiled accumulation step finishes that sum before
     * its last matrix product (or other call), so its all-reduce can overlap it */
    bool *grad_early;
} Executable;

/* Builds every function of p with the engine o asks for.  False with a message
 * (an internal error: user errors are diagnosed before); x is then empty. */
bool executable_build(Executable *x, Program *p, const ExecOptions *o, char *err, size_t errlen);
void executable_free(Executable *x);
/* The training step's planned memory (its arena: activations, gradients and
 * temporaries) for batches of up to `batch`, from its schedule alone (nothing is
 * compiled). */
bool executable_step_arena(Program *p, int64_t batch, int64_t *bytes, char *err, size_t errlen);
/* Plans every function executable_build would compile (the same schedules), and
 * generates no code: for `nnd graph --schedule`.  False with a message, x then
 * empty; otherwise executable_free frees it.  Borrows p. */
bool executable_plan(Executable *x, Program *p, const ExecOptions *o, char *err, size_t errlen);
/* Every planned function's schedule in full (schedule_dump), in the order they are
 * compiled: nnd_step, nnd_step_full, nnd_step_accum, nnd_step_apply, nnd_eval<i>,
 * nnd_forward. */
void executable_dump(const Executable *x, StrBuf *out);
/* A description of the step's kernels and memory plan. */
void executable_describe(const Executable *x, StrBuf *out);
/* Where a profiled executable's step time went, over the `steps` steps that ran the
 * plain step: each kernel, and the update kernels' nanoseconds per parameter value;
 * then the same for the `full_steps` that ran the step with the log's statistics. */
void executable_profile(const Executable *x, int64_t steps, int64_t full_steps, StrBuf *out);

#endif
