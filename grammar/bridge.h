/* bridge: what the flex scanner and the bison parser share.
 *
 * Locations are Spans (byte ranges).  The scanner inserts statement terminators at
 * line ends the way Go does: a newline ends a statement only after a token that can
 * end one (a name, a literal, `)`, `]`, `}`), and never inside `(...)` or `[...]`. */
#ifndef NND_GRAMMAR_BRIDGE_H
#define NND_GRAMMAR_BRIDGE_H

#include "../compiler/ast.h"
#include "../compiler/source.h"

#define YYLTYPE Span
#define YYLTYPE_IS_DECLARED 1
#define YYLTYPE_IS_TRIVIAL 1

enum { PARSE_MAX_NESTING = 128, PARSE_MAX_DEPTH = 400 };

typedef struct LexState {
    uint32_t file;
    uint32_t offset; /* byte offset of the next character to scan */
    Diags *diags; /* borrowed */
    AstModule *module; /* borrowed: receives items, owns the arena */
    int last_tok; /* last token returned, for newline insertion */
    char brackets[PARSE_MAX_NESTING];
    uint32_t open_at[PARSE_MAX_NESTING]; /* offsets of the open brackets */
    int depth;
    bool aborted; /* input the parser cannot go on with: stop, say nothing more */
    StrBuf strbuf; /* string literal being scanned */
    uint32_t str_start;
} LexState;

#endif
