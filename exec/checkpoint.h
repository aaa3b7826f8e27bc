/* checkpoint: the whole training state in one safetensors file.
 *
 * Every parameter and every state (optimizer and layer state) by name, and in the
 * metadata the training point (step, epoch, the epoch's running loss) with what a
 * resumed run must share: seed, batch size, the training set's size, accumulate.
 * Written atomically; a run resumed from one continues bit for bit. */
#ifndef NND_CHECKPOINT_H
#define NND_CHECKPOINT_H

#include "model.h"

/* Loads a checkpoint into m (path: a file, or a checkpoint directory, whose newest
 * file is used; *used gets the file's path, malloc'd) and its point into *at.
 * Every tensor must be there with its shape; the seed, batch size and size of the
 * training set must be the run's. */
bool checkpoint_load(const Program *p, Model *m, const char *path, NndTrainPoint *at, char **used,
                     char *err, size_t errlen);

/* The `checkpoint every N to DIR keep K` statement as the trainer's hook
 * (NndCheckpointFn, ctx a CheckpointTarget): writes DIR/step-NNNNNNNN.safetensors,
 * then removes all but the newest K. */
typedef struct CheckpointTarget {
    const Program *p;
    const Model *m;
} CheckpointTarget;
int checkpoint_hook(void *ctx, const NndTrainPoint *at, NndErr *err);

/* A save or checkpoint killed midway leaves its temporary file; a temporary older
 * than this is no other process's save in progress. */
enum { STALE_TEMP_AGE_S = 60 };
/* Removes the stale temporaries of checkpoint files in p's checkpoint directory;
 * *removed gets their count. */
int checkpoint_remove_stale_temps(const Program *p, int *removed, char *err, size_t errlen);

#endif
