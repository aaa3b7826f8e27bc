/* plot: SVG line plots, for `nnd plot` (plot.c) and `nnd lrfind -o` (compare.c). */
#ifndef NND_PLOT_H
#define NND_PLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "util.h"

typedef struct PlotLine {
    const char *name;
    const double *x, *y;
    int n;
} PlotLine;

/* One panel of lines against x (logarithmic when logx), a dashed vertical line at
 * mark (NAN: none), written atomically to path as SVG. */
int plot_xy(const char *path, const char *title, const char *xlabel, bool logx,
            const PlotLine *lines, int nlines, double mark, char *err, size_t errlen);
/* The scalars of a metrics.csv read from f (named csv in messages) drawn as one SVG
 * document into *out.  0, or -1 with a message naming the file and the line and
 * *out left empty.  (A fuzz target: tests/fuzz/fuzz_metrics_csv.c.) */
int plot_metrics_svg(const char *csv, FILE *f, StrBuf *out, char *err, size_t errlen);
typedef VEC(char *) PathVec;
/* The runs of a log directory, appended to runs (malloc'd paths): dir itself when it
 * holds a metrics.csv and itself is set, else its subdirectories that do, in name
 * order (start times in time order). */
void plot_find_runs(const char *dir, bool itself, PathVec *runs);
/* The scalars of each run's metrics.csv (what a `log` statement writes) drawn to
 * out_path (NULL: DIRS[0]/plot.svg), atomically, overlaid when there are several; the
 * path used goes to out_used.  A directory is a run when it holds a metrics.csv,
 * else each of its subdirectories that holds one is.  0, or -1 with a message naming
 * the file and the line. */
int plot_metrics(const char *const *dirs, int ndirs, const char *out_path, char *out_used,
                 size_t out_len, char *err, size_t errlen);

#endif
