/* source: source files, byte spans and diagnostics.
 *
 * Every token, AST node and graph node carries a Span: a file index and a byte
 * range.  Diagnostics are collected in a Diags list and printed like a C compiler's:
 *
 *     file.nnd:7:18: error: message
 *         fn forward(x) = x @ W + b
 *                         ~~^~~ label
 */
#ifndef NND_SOURCE_H
#define NND_SOURCE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "util.h"

typedef struct Span {
    uint32_t file; /* index in the SourceMap; 0 means "no location" */
    uint32_t start, end; /* byte offsets, end exclusive */
} Span;

typedef struct SourceFile {
    char *path; /* as given by the user or resolved for `use` */
    char *text; /* NUL-terminated copy; may contain NUL bytes before len */
    uint32_t len;
    uint32_t *line_starts;
    int nlines;
} SourceFile;

/* Owns the files it holds. Index 0 is reserved for "no file". */
typedef struct SourceMap {
    VEC(SourceFile *) files;
} SourceMap;

void source_map_init(SourceMap *sm);
void source_map_free(SourceMap *sm);
/* Adds a copy of text (len bytes) under the name path; returns its file index. */
uint32_t source_map_add(SourceMap *sm, const char *path, const char *text, size_t len);
SourceFile *source_map_get(const SourceMap *sm, uint32_t file);
/* 1-based line and byte column of a byte offset. */
void source_line_col(const SourceFile *f, uint32_t offset, int *line, int *col);

static inline Span span_none(void) { return (Span){0, 0, 0}; }

typedef enum DiagLevel { DIAG_ERROR, DIAG_WARNING, DIAG_NOTE } DiagLevel;

typedef struct Diag {
    DiagLevel level;
    Span span; /* underlined with ~ */
    uint32_t caret; /* byte offset of the ^ inside span */
    char *msg; /* owned */
    char *label; /* owned, may be NULL: text printed after the caret */
} Diag;

typedef struct Diags {
    SourceMap *sm; /* borrowed */
    VEC(Diag) v;
    int nerrors;
    int max_errors; /* further errors are counted, not kept */
    bool truncated;
    int printed; /* diagnostics diags_print has shown */
    bool truncation_shown;
} Diags;

void diags_init(Diags *d, SourceMap *sm);
void diags_free(Diags *d);
/* Each returns the index of the new diagnostic.  Notes attach to the diagnostic
 * recorded just before them. */
int diag_error(Diags *d, Span span, const char *fmt, ...) NND_PRINTF(3, 4);
int diag_warning(Diags *d, Span span, const char *fmt, ...) NND_PRINTF(3, 4);
int diag_note(Diags *d, Span span, const char *fmt, ...) NND_PRINTF(3, 4);
/* Sets the text shown after the caret of diagnostic i, and where the caret is. */
void diag_label(Diags *d, int i, const char *fmt, ...) NND_PRINTF(3, 4);
void diag_set_caret(Diags *d, int i, uint32_t offset);
bool diags_has_errors(const Diags *d);
/* Prints the diagnostics not printed before; color when the stream is a terminal and
 * NO_COLOR unset. */
void diags_print(Diags *d, FILE *out);
/* Renders every diagnostic without color into a malloc'd string (for tests). */
char *diags_render(const Diags *d);

#endif
