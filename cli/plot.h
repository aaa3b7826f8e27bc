/* plot: `nnd plot DIR` renders DIR/metrics.csv (written by a `log` statement) as an
 * SVG file of panels: losses, eval metrics, learning rate, per-parameter gradient
 * norms, update ratios, weight norms. */
#ifndef NND_PLOT_H
#define NND_PLOT_H

#include <stddef.h>

/* Writes the plot to out_path (NULL: DIR/plot.svg), atomically; the path used goes
 * to out_used.  Returns 0, or -1 with a message naming the file and the problem. */
int plot_metrics(const char *dir, const char *out_path, char *out_used, size_t out_len, char *err,
                 size_t errlen);

#include <stdbool.h>

typedef struct PlotLine {
    const char *name;
    const double *x, *y;
    int n;
} PlotLine;

/* One panel of lines against x (logarithmic when logx), a dashed vertical line at
 * mark (NAN: none), written atomically to path as SVG. */
int plot_xy(const char *path, const char *title, const char *xlabel, bool logx, const PlotLine *lines,
            int nlines, double mark, char *err, size_t errlen);

#endif
