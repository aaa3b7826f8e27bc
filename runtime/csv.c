/* csv: numbers separated by commas, under a header line of column names.
 *
 *   file   := (line '\n')* [line]       lines end in LF or CRLF
 *   header := name (',' name)*           the first non-blank line
 *   row    := number (',' number)*       as many fields as the header
 *
 * Blank lines are skipped; spaces around fields are ignored; a header name may be
 * wrapped in double quotes, but quoted data fields are not supported. */
#include "data.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct CsvText {
    const char *path; /* borrowed */
    const char *s; /* the whole file, NUL-terminated */
    int64_t len;
    int64_t pos;
    int64_t lineno; /* of the line last returned */
} CsvText;

typedef struct CsvSpan {
    const char *s;
    int64_t len;
} CsvSpan;

/* Returns the next line without its line ending, or 0 at the end of the text. */
static int csv_next_line(CsvText *t, CsvSpan *line)
{
    if (t->pos >= t->len)
        return 0;
    const char *start = t->s + t->pos;
    const char *nl = memchr(start, '\n', (size_t)(t->len - t->pos));
    int64_t n = nl ? nl - start : t->len - t->pos;
    t->pos += nl ? n + 1 : n;
    t->lineno++;
    if (n > 0 && start[n - 1] == '\r')
        n--;
    line->s = start;
    line->len = n;
    return 1;
}

static int csv_is_blank(CsvSpan line)
{
    for (int64_t i = 0; i < line.len; i++)
        if (line.s[i] != ' ' && line.s[i] != '\t')
            return 0;
    return 1;
}

static int csv_next_row(CsvText *t, CsvSpan *line)
{
    while (csv_next_line(t, line))
        if (!csv_is_blank(*line))
            return 1;
    return 0;
}

static int64_t csv_count_fields(CsvSpan line)
{
    int64_t n = 1;
    for (int64_t i = 0; i < line.len; i++)
        n += line.s[i] == ',';
    return n;
}

static CsvSpan csv_trim(CsvSpan f)
{
    while (f.len > 0 && (f.s[0] == ' ' || f.s[0] == '\t')) {
        f.s++;
        f.len--;
    }
    while (f.len > 0 && (f.s[f.len - 1] == ' ' || f.s[f.len - 1] == '\t'))
        f.len--;
    return f;
}

/* Splits off the field at *pos (trimmed) and moves *pos past its comma. */
static CsvSpan csv_field(CsvSpan line, int64_t *pos)
{
    CsvSpan f = {line.s + *pos, 0};
    while (*pos + f.len < line.len && f.s[f.len] != ',')
        f.len++;
    *pos += f.len + 1;
    return csv_trim(f);
}

/* Copies a field for a message: at most 40 characters, printable ones only. */
static void csv_quote(char *buf, size_t size, CsvSpan f)
{
    size_t n = 0;
    for (int64_t i = 0; i < f.len && n + 4 < size; i++) {
        unsigned char c = (unsigned char)f.s[i];
        buf[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
        if (n == 40 && i + 1 < f.len) {
            memcpy(buf + n, "...", 3);
            n += 3;
            break;
        }
    }
    buf[n] = 0;
}

/* Header names may be quoted: "sepal.length". */
static CsvSpan csv_name(CsvSpan f)
{
    if (f.len >= 2 && f.s[0] == '"' && f.s[f.len - 1] == '"') {
        f.s++;
        f.len -= 2;
    }
    return f;
}

static int csv_number_error(CsvText *t, int64_t col, CsvSpan name, CsvSpan field, const char *why,
                            NndErr *err)
{
    char nb[48], fb[48];
    csv_quote(nb, sizeof nb, name);
    csv_quote(fb, sizeof fb, field);
    return nnd_err(err, "%s:%lld: column %lld ('%s'): '%s' %s", t->path, (long long)t->lineno,
                   (long long)col + 1, nb, fb, why);
}

/* number := what strtod accepts in decimal (not hex: 0x10, 0x1p3), finite, and
 * nothing else in the field */
static int csv_number(CsvText *t, int64_t col, CsvSpan name, CsvSpan field, double *v, NndErr *err)
{
    char buf[128];
    if (field.len == 0) {
        char nb[48];
        csv_quote(nb, sizeof nb, name);
        return nnd_err(err, "%s:%lld: column %lld ('%s') is empty", t->path, (long long)t->lineno,
                       (long long)col + 1, nb);
    }
    if (field.s[0] == '"')
        return csv_number_error(t, col, name, field, "is quoted; quoted fields are not supported",
                                err);
    if (field.len >= (int64_t)sizeof buf)
        return csv_number_error(t, col, name, field, "is not a number", err);
    memcpy(buf, field.s, (size_t)field.len);
    buf[field.len] = 0;
    char *end;
    errno = 0;
    *v = strtod(buf, &end);
    if (end != buf + field.len || end == buf || strpbrk(buf, "xX"))
        return csv_number_error(t, col, name, field, "is not a number", err);
    if (!isfinite(*v))
        return csv_number_error(t, col, name, field,
                                errno == ERANGE ? "is out of range" : "is not a finite number",
                                err);
    return 0;
}

/* Stores v at index i of a float tensor; f32 must hold it (the conversion of a larger
 * finite double is undefined). */
static int csv_store(CsvText *t, NndTensor *out, int64_t i, double v, int64_t col, CsvSpan name,
                     CsvSpan field, NndErr *err)
{
    if (out->dtype == NND_F64) {
        ((double *)out->data)[i] = v;
        return 0;
    }
    if (fabs(v) > FLT_MAX)
        return csv_number_error(t, col, name, field, "is out of range for f32", err);
    ((float *)out->data)[i] = (float)v;
    return 0;
}

/* Finds the label column among the header names. */
static int csv_label_column(CsvText *t, const CsvSpan *names, int64_t ncols, const char *label,
                            int64_t *col, NndErr *err)
{
    if (!label) {
        *col = ncols - 1;
        return 0;
    }
    int64_t found = -1, count = 0;
    size_t llen = strlen(label);
    for (int64_t i = 0; i < ncols; i++) {
        if ((size_t)names[i].len == llen && memcmp(names[i].s, label, llen) == 0) {
            if (found < 0)
                found = i;
            count++;
        }
    }
    if (count > 1)
        return nnd_err(err, "%s:%lld: %lld columns are named '%s'", t->path, (long long)t->lineno,
                       (long long)count, label);
    if (found < 0) {
        char list[256];
        size_t n = 0;
        list[0] = 0;
        for (int64_t i = 0; i < ncols && n + 48 < sizeof list; i++) {
            char nb[48];
            csv_quote(nb, sizeof nb, names[i]);
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", nb);
        }
        return nnd_err(err, "%s:%lld: no label column named '%s' (the columns are: %s%s)", t->path,
                       (long long)t->lineno, label, list, n + 48 >= sizeof list ? ", ..." : "");
    }
    *col = found;
    return 0;
}

int nnd_csv_load(const char *path, const char *label, int classes, const NndLoadOptions *opts,
                 NndTensor *x, NndTensor *y, NndErr *err)
{
    memset(x, 0, sizeof *x);
    memset(y, 0, sizeof *y);
    NndLoadOptions o;
    if (data_options(path, opts, &o, err) != 0)
        return -1;
    DataFile f;
    if (data_open(&f, path, err) != 0)
        return -1;
    char *text;
    int64_t len;
    int rc = data_read_rest(&f, &text, &len, err);
    data_close(&f);
    if (rc != 0)
        return -1;

    CsvSpan *names = NULL;
    CsvText t = {path, text, len, 0, 0};
    /* A UTF-8 byte order mark is not part of the first name. */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        t.pos = 3;
    CsvSpan line;
    if (!csv_next_row(&t, &line)) {
        nnd_err(err, "%s: empty file: expected a header line of column names", path);
        goto fail;
    }
    int64_t header_line = t.lineno;
    int64_t ncols = csv_count_fields(line);
    if (ncols < 2) {
        nnd_err(err,
                "%s:%lld: the header names %lld column; a feature and a label column are "
                "needed",
                path, (long long)t.lineno, (long long)ncols);
        goto fail;
    }
    names = nnd_alloc(sizeof *names * (size_t)ncols);
    if (!names) {
        nnd_err(err, "%s: out of memory", path);
        goto fail;
    }
    int64_t pos = 0;
    for (int64_t i = 0; i < ncols; i++)
        names[i] = csv_name(csv_field(line, &pos));
    int64_t label_col = 0;
    if (csv_label_column(&t, names, ncols, label, &label_col, err) != 0)
        goto fail;

    /* First pass: count the rows and check their widths, before allocating. */
    int64_t body = t.pos, nrows = 0;
    while (csv_next_row(&t, &line)) {
        int64_t n = csv_count_fields(line);
        if (n != ncols) {
            /* A quoted comma is the likeliest cause of a ragged row in exported data. */
            int quoted = memchr(line.s, '"', (size_t)line.len) != NULL;
            nnd_err(err,
                    "%s:%lld: expected %lld fields, as in the header on line %lld, but "
                    "found %lld%s",
                    path, (long long)t.lineno, (long long)ncols, (long long)header_line,
                    (long long)n, quoted ? " (quoted fields are not supported)" : "");
            goto fail;
        }
        nrows++;
    }
    if (nrows == 0) {
        nnd_err(err, "%s: no data rows after the header", path);
        goto fail;
    }

    NndErr sub;
    int64_t xshape[2] = {nrows, ncols - 1}, yshape[2] = {nrows, 1};
    if (nnd_tensor_alloc(x, o.float_dtype, 2, xshape, &sub) != 0 ||
        nnd_tensor_alloc(y, classes ? NND_I32 : o.float_dtype, classes ? 1 : 2, yshape, &sub) !=
            0) {
        nnd_err(err, "%s: %s", path, sub.msg);
        goto fail;
    }

    t.pos = body;
    t.lineno = header_line;
    for (int64_t r = 0; csv_next_row(&t, &line); r++) {
        pos = 0;
        int64_t xi = r * (ncols - 1);
        for (int64_t c = 0; c < ncols; c++) {
            CsvSpan field = csv_field(line, &pos);
            double v = 0;
            if (csv_number(&t, c, names[c], field, &v, err) != 0)
                goto fail;
            if (c != label_col) {
                if (csv_store(&t, x, xi++, v * o.scale, c, names[c], field, err) != 0)
                    goto fail;
            } else if (!classes) {
                if (csv_store(&t, y, r, v, c, names[c], field, err) != 0)
                    goto fail;
            } else if (v < 0 || v != floor(v) || v > INT32_MAX) {
                csv_number_error(&t, c, names[c], field,
                                 "is not a class index (a whole number from 0 to 2^31-1)", err);
                goto fail;
            } else {
                ((int32_t *)y->data)[r] = (int32_t)v;
            }
        }
    }
    nnd_free(names);
    nnd_free(text);
    return 0;
fail:
    nnd_tensor_free(x);
    nnd_tensor_free(y);
    nnd_free(names);
    nnd_free(text);
    return -1;
}
