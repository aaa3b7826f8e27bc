/* parse: runs the flex scanner and bison parser over one source file. */
#ifndef NND_PARSE_H
#define NND_PARSE_H

#include "ast.h"

/* Parses file (already in sm) into a new module; syntax errors go to diags.  Always
 * returns a module (possibly partial); the caller owns it and frees it with
 * ast_module_free. */
AstModule *parse_file(SourceMap *sm, uint32_t file, Diags *diags);
void ast_module_free(AstModule *m);

#endif
