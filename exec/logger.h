/* logger: the `log` statement at work.
 *
 * TensorBoard events and metrics.csv every N steps, eval metrics as they come, and
 * warnings about vanishing or exploding gradients and odd update sizes on every
 * logged step.  Install its hooks in TrainOptions. */
#ifndef NND_LOGGER_H
#define NND_LOGGER_H

#include "train.h"

/* What the warnings keep of one parameter. */
typedef struct ParamWatch {
    int gn, ratio; /* the index of its grad_norm and update_ratio in out[], or -1 */
    int range; /* of its weights.min/ (then .max, .sum, .sumsq), or -1 */
    const char *hist_tag; /* weights/NAME (in the program's arena) */
    bool constant; /* no update writes it (frozen): its histogram is made once */
    NndHistogram *hist; /* that histogram, once made */
    double gn_avg; /* the gradient norm's moving average */
    int64_t small_steps, tiny_steps; /* logged steps in a row with a tiny norm, update */
    unsigned warned; /* bits of the warnings given */
} ParamWatch;

typedef struct Logger {
    Program *p;
    Model *m;
    NndPool *pool; /* computes the histograms; NULL: the caller alone */
    NndLog *log; /* NULL: no log statement, warnings only */
    FILE *warn;
    bool interactive;
    ParamWatch *watch; /* one per parameter */
    NndHistRequest *requests; /* a logged step's histograms counted in parts */
    NndHistogram *parts_counted; /* their results, in the same order */
    NndHistogram *counted; /* by parameter: the small trained weights' histograms */
    int64_t logged; /* parameter checks so far */
    int64_t flushed_ns; /* when the log was last pushed to its files */
    bool failed;
    char err[1024];
} Logger;

bool logger_open(Logger *lg, Program *p, Model *m, const char *dir, bool append, FILE *warn,
                 bool interactive, char *err, size_t errlen);
void logger_hooks(Logger *lg, TrainOptions *to);
void logger_close(Logger *lg);

#endif
