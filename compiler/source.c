#include "source.h"

#include <ctype.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void source_map_init(SourceMap *sm)
{
    memset(sm, 0, sizeof *sm);
    vec_push(&sm->files, NULL); /* index 0: no file */
}

void source_map_free(SourceMap *sm)
{
    for (int i = 1; i < sm->files.n; i++) {
        SourceFile *f = sm->files.v[i];
        free(f->path);
        free(f->text);
        free(f->line_starts);
        free(f);
    }
    vec_free(&sm->files);
}

uint32_t source_map_add(SourceMap *sm, const char *path, const char *text, size_t len)
{
    if (len > UINT32_MAX - 1)
        len = UINT32_MAX - 1; /* diagnostics elsewhere reject such files */
    SourceFile *f = xcalloc(1, sizeof *f);
    f->path = xstrdup(path);
    f->text = xmalloc(len + 1);
    memcpy(f->text, text, len);
    f->text[len] = 0;
    f->len = (uint32_t)len;
    int cap = 64;
    f->line_starts = xmalloc(sizeof(uint32_t) * (size_t)cap);
    f->line_starts[f->nlines++] = 0;
    for (uint32_t i = 0; i < f->len; i++) {
        if (f->text[i] == '\n') {
            if (f->nlines == cap) {
                cap *= 2;
                f->line_starts = xrealloc(f->line_starts, sizeof(uint32_t) * (size_t)cap);
            }
            f->line_starts[f->nlines++] = i + 1;
        }
    }
    vec_push(&sm->files, f);
    return (uint32_t)(sm->files.n - 1);
}

SourceFile *source_map_get(const SourceMap *sm, uint32_t file)
{
    if (file == 0 || (int)file >= sm->files.n)
        return NULL;
    return sm->files.v[file];
}

void source_line_col(const SourceFile *f, uint32_t offset, int *line, int *col)
{
    int lo = 0, hi = f->nlines - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (f->line_starts[mid] <= offset)
            lo = mid;
        else
            hi = mid - 1;
    }
    *line = lo + 1;
    *col = (int)(offset - f->line_starts[lo]) + 1;
}

void diags_init(Diags *d, SourceMap *sm)
{
    memset(d, 0, sizeof *d);
    d->sm = sm;
    d->max_errors = 50;
}

void diags_free(Diags *d)
{
    for (int i = 0; i < d->v.n; i++) {
        free(d->v.v[i].msg);
        free(d->v.v[i].label);
    }
    vec_free(&d->v);
}

/* A message with every run of more than LONG_WORD name characters (an identifier
 * or a path that a user made 5 MB long) shortened to its ends and its length:
 * diagnostics quote names, and a quote must stay readable.  Takes msg. */
enum { LONG_WORD = 200 };
static char *cap_words(char *msg)
{
    size_t n = strlen(msg), run = 0;
    bool long_run = false;
    for (size_t i = 0; i <= n && !long_run; i++) {
        bool w = i < n && (isalnum((unsigned char)msg[i]) || msg[i] == '_' || msg[i] == '/' ||
                           msg[i] == '.' || msg[i] == '-');
        run = w ? run + 1 : 0;
        long_run = run > LONG_WORD;
    }
    if (!long_run)
        return msg;
    StrBuf b = {0};
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && (isalnum((unsigned char)msg[j]) || msg[j] == '_' || msg[j] == '/' ||
                         msg[j] == '.' || msg[j] == '-'))
            j++;
        if (j - i > LONG_WORD)
            sb_printf(&b, "%.64s...%.64s (%zu bytes)", msg + i, msg + j - 64, j - i);
        else
            sb_putn(&b, msg + i, j - i);
        if (j < n)
            sb_putc(&b, msg[j]);
        i = j < n ? j + 1 : j;
    }
    free(msg);
    return b.s;
}

/* Notes that follow a dropped error are dropped with it. */
static int diag_add(Diags *d, DiagLevel level, Span span, const char *fmt, va_list ap)
{
    if (level == DIAG_ERROR) {
        d->nerrors++;
        if (d->nerrors > d->max_errors) {
            d->truncated = true;
            return -1;
        }
    } else if (d->truncated) {
        return -1;
    }
    Diag g = {level, span, span.start, cap_words(xvasprintf(fmt, ap)), NULL};
    vec_push(&d->v, g);
    return d->v.n - 1;
}

#define DIAG_FN(name, level)                                                                       \
    int name(Diags *d, Span span, const char *fmt, ...)                                            \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        int i = diag_add(d, level, span, fmt, ap);                                                 \
        va_end(ap);                                                                                \
        return i;                                                                                  \
    }
DIAG_FN(diag_error, DIAG_ERROR)
DIAG_FN(diag_warning, DIAG_WARNING)
DIAG_FN(diag_note, DIAG_NOTE)

void diag_label(Diags *d, int i, const char *fmt, ...)
{
    if (i < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    free(d->v.v[i].label);
    d->v.v[i].label = cap_words(xvasprintf(fmt, ap));
    va_end(ap);
}

void diag_set_caret(Diags *d, int i, uint32_t offset)
{
    if (i >= 0)
        d->v.v[i].caret = offset;
}

bool diags_has_errors(const Diags *d) { return d->nerrors > 0; }

/* Length of the UTF-8 sequence starting at s (at most n bytes), or 0 if invalid or
 * unsafe to print: C1 controls, and the bidirectional controls that can make a line
 * read differently from what it is. */
static int utf8_len(const unsigned char *s, uint32_t n)
{
    unsigned c = s[0];
    int len = c < 0x80             ? 1
              : (c & 0xE0) == 0xC0 ? 2
              : (c & 0xF0) == 0xE0 ? 3
              : (c & 0xF8) == 0xF0 ? 4
                                   : 0;
    if (len == 0 || (uint32_t)len > n || (len == 2 && c < 0xC2) || (len == 4 && c > 0xF4))
        return 0;
    unsigned cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    static const unsigned min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) ||
        (cp >= 0x80 && cp <= 0x9F) || (cp >= 0x202A && cp <= 0x202E) ||
        (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200E || cp == 0x200F || cp == 0x061C)
        return 0;
    return len;
}

enum { SHOW_MAX = 160 }; /* display columns of source shown around a span */

/* Prints the source line holding the diagnostic, and a marker line under it.
 * Control characters and invalid UTF-8 display as '?', tabs as one space, so one
 * byte or character is one column and the marker lines up. */
static void print_snippet(StrBuf *out, const SourceFile *f, const Diag *g, const char *c_on,
                          const char *c_off)
{
    int line, col;
    source_line_col(f, g->span.start, &line, &col);
    uint32_t ls = f->line_starts[line - 1];
    uint32_t le = line < f->nlines ? f->line_starts[line] - 1 : f->len;
    if (le > ls && f->text[le - 1] == '\r')
        le--;
    uint32_t s0 = g->span.start, s1 = g->span.end > le ? le : g->span.end;
    if (s1 <= s0)
        s1 = s0 + 1; /* at least one marker character */
    uint32_t caret = g->caret >= s0 && g->caret < s1 ? g->caret : s0;
    /* Window of bytes to show: clip very long lines around the span start. */
    uint32_t ws = ls, we = le;
    bool cut_left = false, cut_right = false;
    if (s0 > ls + SHOW_MAX / 2 && le - ls > SHOW_MAX) {
        ws = s0 - SHOW_MAX / 4;
        cut_left = true;
    }
    if (we > ws + SHOW_MAX) {
        we = ws + SHOW_MAX;
        cut_right = true;
    }
    StrBuf src = {0}, mark = {0};
    sb_puts(&src, "    ");
    sb_puts(&mark, "    ");
    if (cut_left) {
        sb_puts(&src, "...");
        sb_puts(&mark, "   ");
    }
    const unsigned char *t = (const unsigned char *)f->text;
    for (uint32_t i = ws; i < we;) {
        int n = utf8_len(t + i, we - i);
        char m = i >= s0 && i < s1 ? (i == caret ? '^' : '~') : ' ';
        if (n == 1 && t[i] >= 0x20 && t[i] < 0x7F)
            sb_putc(&src, (char)t[i]);
        else if (n > 1)
            sb_putn(&src, (const char *)t + i, (size_t)n);
        else {
            sb_putc(&src, t[i] == '\t' ? ' ' : '?');
            n = 1;
        }
        /* a marker for any byte of a multi-byte character counts once */
        if (n > 1)
            for (int k = 1; k < n; k++)
                if (i + (uint32_t)k == caret)
                    m = '^';
        sb_putc(&mark, m);
        i += (uint32_t)n;
    }
    if (we == le && s0 >= le) /* span at end of line: point just past it */
        sb_putc(&mark, '^');
    if (cut_right)
        sb_puts(&src, "...");
    while (mark.len && mark.s[mark.len - 1] == ' ')
        mark.s[--mark.len] = 0;
    sb_puts(out, src.s);
    sb_putc(out, '\n');
    sb_puts(out, c_on);
    sb_puts(out, mark.s);
    sb_puts(out, c_off);
    if (g->label) {
        sb_putc(out, ' ');
        sb_puts(out, g->label);
    }
    sb_putc(out, '\n');
    sb_free(&src);
    sb_free(&mark);
}

static void render(const Diags *d, int from, bool truncation, StrBuf *out, bool color)
{
    static const char *names[] = {"error", "warning", "note"};
    static const char *colors[] = {"\033[1;31m", "\033[1;35m", "\033[1;36m"};
    const char *bold = color ? "\033[1m" : "", *reset = color ? "\033[0m" : "";
    const char *green = color ? "\033[1;32m" : "";
    for (int i = from; i < d->v.n; i++) {
        const Diag *g = &d->v.v[i];
        const SourceFile *f = source_map_get(d->sm, g->span.file);
        sb_puts(out, bold);
        if (f) {
            int line, col;
            source_line_col(f, g->span.start, &line, &col);
            sb_printf(out, "%s:%d:%d: ", f->path, line, col);
        } else {
            sb_puts(out, "nnd: ");
        }
        sb_printf(out, "%s%s:%s%s %s%s\n", color ? colors[g->level] : "", names[g->level], reset,
                  bold, g->msg, reset);
        if (f)
            print_snippet(out, f, g, green, reset);
        else if (g->label)
            sb_printf(out, "    %s\n", g->label);
    }
    if (truncation && d->truncated)
        sb_printf(out, "nnd: too many errors (%d), stopping after the first %d\n", d->nerrors,
                  d->max_errors);
}

void diags_print(Diags *d, FILE *out)
{
    const char *nc = getenv("NO_COLOR");
    bool color = isatty(fileno(out)) && !(nc && *nc);
    StrBuf b = {0};
    if (d->printed > d->v.n) /* diagnostics were dropped (speculative elaboration) */
        d->printed = d->v.n;
    render(d, d->printed, !d->truncation_shown, &b, color);
    d->printed = d->v.n;
    d->truncation_shown |= d->truncated;
    if (b.s)
        fputs(b.s, out);
    sb_free(&b);
}

char *diags_render(const Diags *d)
{
    StrBuf b = {0};
    render(d, 0, true, &b, false);
    if (!b.s)
        return xstrdup("");
    return b.s;
}
