/* plot: `nnd plot DIR` draws the scalars a `log` statement wrote to DIR/metrics.csv
 * as one SVG file: a panel per family of tags (the loss and eval losses, the other
 * eval metrics, the learning rate, gradient norms, update ratios, weight norms,
 * ...), each series a polyline against the step.  Norms, ratios and magnitudes use
 * a logarithmic axis.  Written atomically (nnd_write_file_atomic). */
#define _POSIX_C_SOURCE 200809L
#include "plot.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nnd_runtime.h"
#include "util.h"

typedef struct Point {
    double step, value;
} Point;

typedef struct Series {
    char *tag;
    char *label; /* the legend's: the tag, or "run: tag" when runs are overlaid */
    VEC(Point) pts;
} Series;
typedef VEC(Series) SeriesVec;

typedef struct Panel {
    const char *title;
    bool log; /* logarithmic value axis */
    bool logx; /* logarithmic x axis (lrfind's learning rates) */
    const char *xlabel; /* NULL: "step" */
    double mark; /* x of a dashed vertical line, or NAN */
    VEC(int) series;
} Panel;

enum { PANELS = 9 };
static const char *const panel_title[PANELS] = {"loss",
                                                "eval metrics",
                                                "learning rate",
                                                "gradient norm ||g||",
                                                "update ratio ||dw|| / ||w||",
                                                "weight norm ||w||",
                                                "max |g|",
                                                "non-finite gradient values",
                                                "logged values"};
static const bool panel_log[PANELS] = {false, false, false, true, true, true, true, false, false};

static int panel_of(const char *tag)
{
    bool eval = strncmp(tag, "eval/", 5) == 0;
    if (strcmp(tag, "loss") == 0 || (eval && strstr(tag, "loss")))
        return 0;
    if (eval)
        return 1;
    if (strcmp(tag, "lr") == 0 || strncmp(tag, "lr/", 3) == 0)
        return 2;
    static const char *const prefix[] = {"grad_norm/", "update_ratio/", "weight_norm/", "max_grad/",
                                         "nonfinite/"};
    for (int i = 0; i < 5; i++)
        if (strncmp(tag, prefix[i], strlen(prefix[i])) == 0)
            return 3 + i;
    return 8;
}

/* Splits one CSV line "step,epoch,tag,value" (the tag has no comma). */
static bool parse_row(char *line, double *step, char **tag, double *value)
{
    char *f[4];
    int n = 0;
    for (char *p = line; n < 4; n++) {
        f[n] = p;
        char *c = strchr(p, ',');
        if (!c) {
            n++;
            break;
        }
        *c = 0;
        p = c + 1;
    }
    if (n != 4)
        return false;
    char *end;
    *step = strtod(f[0], &end);
    if (end == f[0] || *end || !(*step >= 0 && *step <= 9e15) || *step != floor(*step))
        return false; /* steps are counts: whole, finite, not negative */
    f[3][strcspn(f[3], "\r\n")] = 0;
    *value = strtod(f[3], &end);
    if (end == f[3] || *end || !*f[2])
        return false;
    *tag = f[2];
    return true;
}

static void svg_text(StrBuf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            sb_puts(b, "&lt;");
        else if (*s == '>')
            sb_puts(b, "&gt;");
        else if (*s == '&')
            sb_puts(b, "&amp;");
        else
            sb_putc(b, *s);
    }
}

/* Round tick values over [lo, hi]: 1, 2 or 5 times a power of ten apart. */
static double tick_step(double lo, double hi)
{
    double span = hi - lo;
    if (!(span > 0))
        return 1;
    double raw = span / 5, p = pow(10, floor(log10(raw)));
    double m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

enum { MAX_TICKS = 20 }; /* tick_step gives about 5; the bound only guards the loops */

enum { LEGEND_W = 260, LEGEND_LINES = 15 };

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Outliers: when the values span more than 4 times what their 5th to 95th
 * percentiles do (a bias's update ratio of 1e10 at step 1), the axis shows those
 * percentiles widened by half their span each way, and the values off it are drawn
 * at its edge.  Their count, or 0 (*lo, *hi unchanged). */
static int clip_range(double *v, int n, double *lo, double *hi)
{
    if (n < 20)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double q1 = v[n / 20], q99 = v[n - 1 - n / 20], span = q99 - q1;
    if (!(span > 0) || *hi - *lo <= 4 * span)
        return 0;
    double a = q1 - span / 2, b = q99 + span / 2;
    int off = 0;
    for (int i = 0; i < n; i++)
        off += v[i] < a || v[i] > b;
    if (off == 0)
        return 0;
    *lo = fmax(*lo, a);
    *hi = fmin(*hi, b);
    return off;
}

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

/* A point of a panel as drawn: x and the value, log10 of them on a log axis, the
 * value times vscale on a linear one; false for a point the panel leaves out. */
static bool panel_point(const Panel *pn, double vscale, const Point *q, double *x, double *v)
{
    double s = q->step, y = q->value;
    if (!isfinite(y) || !isfinite(s) || (pn->log && y <= 0) || (pn->logx && !(s > 0)))
        return false;
    *x = pn->logx ? log10(s) : s;
    *v = pn->log ? log10(y) : y * vscale;
    return true;
}

/* A panel's axes over its points: x from smin to smax, the values (as panel_point
 * gives them) from vmin to vmax; vscale brings values near the largest double
 * down (-1e308 and 1e308 would make a span that is not finite); clipped values are
 * off the axis (clip_range), nonfinite ones left out. */
typedef struct Axes {
    double smin, smax, vmin, vmax, vscale;
    int clipped, nonfinite;
} Axes;

static Axes panel_axes(const Panel *pn, const Series *ser)
{
    Axes a = {INFINITY, -INFINITY, INFINITY, -INFINITY, 1, 0, 0};
    VEC(double) vals = {0};
    for (int k = 0; k < pn->series.n; k++) {
        const Series *s = &ser[pn->series.v[k]];
        for (int i = 0; i < s->pts.n; i++) {
            double x, v;
            a.nonfinite += !isfinite(s->pts.v[i].value);
            if (!panel_point(pn, 1, &s->pts.v[i], &x, &v))
                continue;
            a.smin = fmin(a.smin, x);
            a.smax = fmax(a.smax, x);
            a.vmin = fmin(a.vmin, v);
            a.vmax = fmax(a.vmax, v);
            vec_push(&vals, v);
        }
    }
    if (a.vmax >= a.vmin && fmax(fabs(a.vmin), fabs(a.vmax)) > 1e300) {
        a.vscale = 1e-10;
        a.vmin *= a.vscale;
        a.vmax *= a.vscale;
        for (int i = 0; i < vals.n; i++)
            vals.v[i] *= a.vscale;
    }
    a.clipped = clip_range(vals.v, vals.n, &a.vmin, &a.vmax);
    vec_free(&vals);
    return a;
}

static void draw_panel(StrBuf *b, const Panel *pn, const Series *ser, double x0, double y0,
                       double w, double h)
{
    /* the legend goes right of the plot, never over a curve */
    const double left = 70, right = 10 + LEGEND_W, top = 28, bottom = 40;
    double pw = w - left - right, ph = h - top - bottom;
    Axes ax = panel_axes(pn, ser);
    double smin = ax.smin, smax = ax.smax, vmin = ax.vmin, vmax = ax.vmax, vscale = ax.vscale;
    sb_printf(b, "<g transform=\"translate(%.1f,%.1f)\">\n", x0, y0);
    sb_printf(b, "<text x=\"%.1f\" y=\"18\" font-size=\"14\" font-weight=\"bold\">", left);
    svg_text(b, pn->title);
    sb_puts(b, "</text>\n");
    sb_printf(b,
              "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
              "stroke=\"#888\"/>\n",
              left, top, pw, ph);
    if (!(smax >= smin)) {
        sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">no finite values</text>\n</g>\n",
                  left + 10, top + 20);
        return;
    }
    if (smax == smin) {
        smin -= 0.5;
        smax += 0.5;
    }
    if (vmax - vmin <= 1e-9 * fmax(fabs(vmin), fabs(vmax))) { /* a constant: a band around it */
        double d = pn->log ? 0.5 : vmin != 0 ? fabs(vmin) * 0.1 : 0.5;
        vmin -= d;
        vmax += d;
    }
    double pad = (vmax - vmin) * 0.05;
    vmin -= pad;
    vmax += pad;
#define SX(s) (left + ((s)-smin) / (smax - smin) * pw)
#define SY(v) (top + ph - (fmin(fmax(v, vmin), vmax) - vmin) / (vmax - vmin) * ph)
    /* value ticks: decades on a log axis */
    double vt = pn->log ? fmax(1, round(tick_step(vmin, vmax))) : tick_step(vmin, vmax);
    double v0 = ceil(vmin / vt) * vt;
    for (int i = 0; i < MAX_TICKS && v0 + i * vt <= vmax; i++) {
        double t = v0 + i * vt;
        sb_printf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n",
                  left, left + pw, SY(t), SY(t));
        sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">", left - 4,
                  SY(t) + 4);
        if (pn->log)
            sb_printf(b, "1e%d", (int)round(t));
        else
            sb_printf(b, "%.4g", fabs(t) < vt * 1e-6 ? 0.0 : t / vscale);
        sb_puts(b, "</text>\n");
    }
    double st = tick_step(smin, smax);
    st = fmax(1, round(st)); /* whole steps, or whole decades */
    double s0 = ceil(smin / st) * st;
    for (int i = 0; i < MAX_TICKS && s0 + i * st <= smax; i++) {
        double t = s0 + i * st;
        sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">", SX(t),
                  top + ph + 14);
        if (pn->logx)
            sb_printf(b, "1e%d</text>\n", (int)round(t));
        else
            sb_printf(b, "%.0f</text>\n", t);
    }
    sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">",
              left + pw / 2, top + ph + 30);
    svg_text(b, pn->xlabel ? pn->xlabel : "step");
    sb_puts(b, "</text>\n");
    if (isfinite(pn->mark) && (!pn->logx || pn->mark > 0)) {
        double mx = pn->logx ? log10(pn->mark) : pn->mark;
        if (mx >= smin && mx <= smax)
            sb_printf(b,
                      "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#444\" "
                      "stroke-dasharray=\"4,3\"/>\n",
                      SX(mx), SX(mx), top, top + ph);
    }
    int nlegend = pn->series.n > LEGEND_LINES ? LEGEND_LINES + 1 : pn->series.n;
    for (int k = 0; k < pn->series.n; k++) {
        const Series *s = &ser[pn->series.v[k]];
        const char *color = palette[k % (int)NND_ARRAY_LEN(palette)];
        /* at most ~2000 points a line: every stride-th */
        int stride = s->pts.n > 2000 ? (s->pts.n + 1999) / 2000 : 1;
        int drawn = 0;
        double x = 0, v = 0;
        sb_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", color);
        for (int i = 0; i < s->pts.n; i++) {
            if ((i % stride && i != s->pts.n - 1) || !panel_point(pn, vscale, &s->pts.v[i], &x, &v))
                continue;
            sb_printf(b, "%.1f,%.1f ", SX(x), SY(v));
            drawn++;
        }
        sb_puts(b, "\"/>\n");
        if (drawn == 1) /* a single point shows as a dot */
            sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", SX(x), SY(v),
                      color);
    }
    /* the legend, right of the plot, one line a series (the first LEGEND_LINES) */
    double lx = left + pw + 10;
    for (int j = 0; j < nlegend; j++) {
        const char *cj = palette[j % (int)NND_ARRAY_LEN(palette)];
        double ly = top + 10 + 14 * j;
        if (j == LEGEND_LINES) {
            sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">and %d more</text>\n",
                      lx + 14, ly, pn->series.n - LEGEND_LINES);
            break;
        }
        sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"10\" height=\"3\" fill=\"%s\"/>\n", lx,
                  ly - 4, cj);
        sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">", lx + 14, ly);
        svg_text(b, ser[pn->series.v[j]].label ? ser[pn->series.v[j]].label
                                               : ser[pn->series.v[j]].tag);
        sb_puts(b, "</text>\n");
    }
    if (ax.nonfinite)
        sb_printf(b,
                  "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#a33\">%d non-finite "
                  "value%s (nan, inf) left out</text>\n",
                  left + pw, top + ph + 30, ax.nonfinite, ax.nonfinite == 1 ? "" : "s");
    if (ax.clipped)
        sb_printf(b,
                  "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#a33\">%d value%s off the "
                  "axis, drawn at its edge</text>\n",
                  left + pw, 18.0, ax.clipped, ax.clipped == 1 ? "" : "s");
#undef SX
#undef SY
    sb_puts(b, "</g>\n");
}

static bool write_atomic(const char *path, const char *data, size_t len, char *err, size_t errlen)
{
    NndErr e;
    if (nnd_write_file_atomic(path, data, len, &e) == 0)
        return true;
    snprintf(err, errlen, "%s", e.msg);
    return false;
}

/* The rows of a metrics.csv read from f (named csv in messages) added to ser, each
 * series labeled "run: tag" when run is not NULL.  0, or -1 with a message. */
static int read_csv(const char *csv, FILE *f, const char *run, SeriesVec *ser, char *err,
                    size_t errlen)
{
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    int rc = 0, first = ser->n;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        if (lineno == 1) {
            if (strncmp(line, "step,epoch,tag,value", 20) != 0) {
                snprintf(err, errlen, "%s: line 1 is not the header step,epoch,tag,value", csv);
                rc = -1;
                break;
            }
            continue;
        }
        double step, value;
        char *tag;
        bool whole = strchr(line, '\n') != NULL;
        if (!parse_row(line, &step, &tag, &value)) {
            /* a run killed while writing may leave its last line cut short */
            if (!whole)
                break;
            snprintf(err, errlen, "%s:%ld: not a row step,epoch,tag,value (a whole step, a number)",
                     csv, lineno);
            rc = -1;
            break;
        }
        int k = first;
        while (k < ser->n && strcmp(ser->v[k].tag, tag))
            k++;
        if (k == ser->n) {
            Series sr = {xstrdup(tag), run ? xasprintf("%s: %s", run, tag) : NULL, {0}};
            vec_push(ser, sr);
        }
        Point pt = {step, value};
        vec_push(&ser->v[k].pts, pt);
    }
    free(line);
    if (rc == 0 && ser->n == first) {
        snprintf(err, errlen, "%s holds no scalars", csv);
        rc = -1;
    }
    return rc;
}

/* The series drawn as one SVG document: a panel per family of tags. */
static void render(const char *title, const SeriesVec *ser, StrBuf *out)
{
    Panel panels[PANELS] = {{0}};
    int used = 0;
    for (int i = 0; i < PANELS; i++) {
        panels[i].title = panel_title[i];
        panels[i].log = panel_log[i];
        panels[i].mark = NAN;
    }
    for (int k = 0; k < ser->n; k++)
        vec_push(&panels[panel_of(ser->v[k].tag)].series, k);
    for (int i = 0; i < PANELS; i++)
        used += panels[i].series.n > 0;
    const double pw = 560 + LEGEND_W, ph = 300;
    int rows = (used + 1) / 2;
    StrBuf b = {0};
    sb_printf(&b,
              "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
              "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
              "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" "
              "fill=\"white\"/>\n",
              2 * pw, rows * ph + 30);
    sb_puts(&b, "<text x=\"10\" y=\"20\" font-size=\"13\" fill=\"#444\">");
    svg_text(&b, title);
    sb_puts(&b, "</text>\n");
    int at = 0;
    for (int i = 0; i < PANELS; i++) {
        if (!panels[i].series.n)
            continue;
        draw_panel(&b, &panels[i], ser->v, (at % 2) * pw, 30 + (at / 2) * ph, pw, ph);
        at++;
    }
    sb_puts(&b, "</svg>\n");
    *out = b;
    for (int i = 0; i < PANELS; i++)
        vec_free(&panels[i].series);
}

static void series_free(SeriesVec *ser)
{
    for (int k = 0; k < ser->n; k++) {
        free(ser->v[k].tag);
        free(ser->v[k].label);
        vec_free(&ser->v[k].pts);
    }
    vec_free(ser);
}

int plot_metrics_svg(const char *csv, FILE *f, StrBuf *out, char *err, size_t errlen)
{
    SeriesVec ser = {0};
    int rc = read_csv(csv, f, NULL, &ser, err, errlen);
    if (rc == 0)
        render(csv, &ser, out);
    series_free(&ser);
    return rc;
}

static bool has_metrics(const char *dir)
{
    char *csv = xasprintf("%s/metrics.csv", dir);
    bool yes = access(csv, R_OK) == 0;
    free(csv);
    return yes;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void plot_find_runs(const char *dir, bool itself, PathVec *runs)
{
    if (itself && has_metrics(dir)) {
        vec_push(runs, xstrdup(dir));
        return;
    }
    DIR *d = opendir(dir);
    if (!d)
        return;
    int first = runs->n;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *sub = xasprintf("%s/%s", dir, e->d_name);
        if (has_metrics(sub))
            vec_push(runs, sub);
        else
            free(sub);
    }
    closedir(d);
    qsort(runs->v + first, (size_t)(runs->n - first), sizeof(char *), cmp_str);
}

/* A run's name in a legend: its path without the log directory given. */
static const char *run_name(const char *run, const char *dir)
{
    size_t n = strlen(dir);
    if (strncmp(run, dir, n) == 0 && run[n] == '/')
        return run + n + 1;
    return run;
}

int plot_metrics(const char *const *dirs, int ndirs, const char *out_path, char *out_used,
                 size_t out_len, char *err, size_t errlen)
{
    PathVec runs = {0};
    IntVec from = {0};
    for (int i = 0; i < ndirs; i++) {
        int before = runs.n;
        plot_find_runs(dirs[i], true, &runs);
        if (runs.n == before) {
            snprintf(err, errlen,
                     "%s holds no metrics.csv, nor do its subdirectories (a train block's `log "
                     "... to \"%s\"` writes one per run)",
                     dirs[i], dirs[i]);
            vec_free(&from);
            for (int k = 0; k < runs.n; k++)
                free(runs.v[k]);
            vec_free(&runs);
            return -1;
        }
        while (from.n < runs.n)
            vec_push(&from, i);
    }
    SeriesVec ser = {0};
    int rc = 0;
    for (int k = 0; k < runs.n && rc == 0; k++) {
        char *csv = xasprintf("%s/metrics.csv", runs.v[k]);
        FILE *f = fopen(csv, "r");
        if (!f) {
            snprintf(err, errlen, "cannot open %s: %s", csv, strerror(errno));
            rc = -1;
        } else {
            const char *name = runs.n > 1 ? run_name(runs.v[k], dirs[from.v[k]]) : NULL;
            rc = read_csv(csv, f, name, &ser, err, errlen);
            fclose(f);
        }
        free(csv);
    }
    StrBuf b = {0};
    if (rc == 0) {
        char *title = runs.n > 1 ? xasprintf("%d runs of %s", runs.n, dirs[0])
                                 : xasprintf("%s/metrics.csv", runs.v[0]);
        render(title, &ser, &b);
        free(title);
        char *path = out_path ? xstrdup(out_path) : xasprintf("%s/plot.svg", dirs[0]);
        if (write_atomic(path, b.s, b.len, err, errlen))
            snprintf(out_used, out_len, "%s", path);
        else
            rc = -1;
        free(path);
    }
    sb_free(&b);
    series_free(&ser);
    for (int k = 0; k < runs.n; k++)
        free(runs.v[k]);
    vec_free(&runs);
    vec_free(&from);
    return rc;
}

int plot_xy(const char *path, const char *title, const char *xlabel, bool logx,
            const PlotLine *lines, int nlines, double mark, char *err, size_t errlen)
{
    Series *ser = xcalloc((size_t)(nlines ? nlines : 1), sizeof(Series));
    Panel pn = {title, false, logx, xlabel, mark, {0}};
    for (int k = 0; k < nlines; k++) {
        ser[k].tag = (char *)lines[k].name;
        ser[k].label = NULL;
        for (int i = 0; i < lines[k].n; i++) {
            Point p = {lines[k].x[i], lines[k].y[i]};
            vec_push(&ser[k].pts, p);
        }
        vec_push(&pn.series, k);
    }
    const double w = 760, h = 420;
    StrBuf b = {0};
    sb_printf(
        &b,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
        "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
        w, h);
    draw_panel(&b, &pn, ser, 0, 0, w, h);
    sb_puts(&b, "</svg>\n");
    bool ok = write_atomic(path, b.s, b.len, err, errlen);
    sb_free(&b);
    for (int k = 0; k < nlines; k++)
        vec_free(&ser[k].pts);
    free(ser);
    vec_free(&pn.series);
    return ok ? 0 : -1;
}
