/* checkpoint: the whole training state in one safetensors file.
 *
 * Every parameter and every state (optimizer and layer state; not the gradient
 * sums, zero at every step's end) by name, and in the metadata the training point
 * (step, epoch, the epoch's running loss) with what a resumed run must share:
 * seed, batch size, the training set's size, accumulate.
 * With early_stop, early stopping's state too: the metric it watches, its best
 * value so far, where, the evaluations since without improvement (metadata
 * early_stop*), and the model at its best (tensors early_stop/NAME).  Written
 * atomically; a run resumed from one continues bit for bit. */
#ifndef NND_CHECKPOINT_H
#define NND_CHECKPOINT_H

#include <stdio.h>

#include "model.h"

/* Early stopping's state at a checkpoint: a resumed run goes on from it to stop
 * and restore the best weights where the run never stopped would. */
typedef struct EarlyState {
    bool have_best;
    double best; /* the watched metric's best value, at best_step (best_epoch, from 1) */
    int64_t best_step, best_epoch, bad; /* bad: evaluations since, without improvement */
    bool have_model; /* model holds the model at best_step (owned) */
    Model model;
} EarlyState;
void early_state_free(EarlyState *s);

/* Loads a checkpoint into m and its training point into *at.  path is a file, or a
 * checkpoint directory: its newest checkpoint of this program (notes about the
 * choice go to note, when not NULL); *used gets the file's path (malloc'd).  Every
 * tensor must be there with its shape; the seed, batch size, training set and
 * accumulate must be the run's; every field of the training point is checked
 * (a step before the run's end, its epoch, a finite loss).  With early_stop, and
 * early and have_early not NULL: *have_early says whether the checkpoint carries
 * early stopping's state for the metric this program watches (a warning on note
 * when not: early stopping starts over), and *early gets it (early_state_free). */
bool checkpoint_load(const Program *p, Model *m, const char *path, NndTrainPoint *at, char **used,
                     EarlyState *early, bool *have_early, FILE *note, char *err, size_t errlen);
/* Before a run with a checkpoint statement (from start: zeros, or where it
 * resumes): refuses when the directory holds another run's checkpoint at a step
 * this run would write (it would be lost), and warns (to warn) when it holds other
 * runs' checkpoints at all.  Checkpoints carry two identities in their metadata:
 * the program (what a resumed run must share, the same for 1 process and N ranks)
 * and the run
 * (the program with its length and hyper-parameter values); `keep` rotates only
 * this run's own. */
bool checkpoint_check_dir(const Program *p, const NndTrainPoint *start, FILE *warn, char *err,
                          size_t errlen);

/* The `checkpoint every N to DIR keep K` statement as the trainer's hook
 * (NndCheckpointFn, ctx a CheckpointTarget): writes DIR/step-NNNNNNNN.safetensors,
 * then removes all but the newest K. */
typedef struct CheckpointTarget {
    const Program *p;
    const Model *m;
    const EarlyState *early; /* with early_stop (borrowed), else NULL */
} CheckpointTarget;
int checkpoint_hook(void *ctx, const NndTrainPoint *at, NndErr *err);

/* A save or checkpoint killed midway leaves its temporary file; a temporary older
 * than this is no other process's save in progress. */
enum { STALE_TEMP_AGE_S = 60 };
/* Removes the stale temporaries of checkpoint files in p's checkpoint directory;
 * *removed gets their count. */
int checkpoint_remove_stale_temps(const Program *p, int *removed, char *err, size_t errlen);

#endif
