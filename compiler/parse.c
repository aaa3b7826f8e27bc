#include "parse.h"

#include <stdlib.h>

#include "../grammar/bridge.h"
#include "nnd.tab.h"
#include "nnd.yy.h"

/* Links each vjp block to the fn just before it (fn->c), in a list of items and in
 * the bodies of the layers among them. */
static void link_vjps(AstList *items, int depth)
{
    for (int i = 0; i < items->n; i++) {
        Ast *it = items->v[i];
        if (it->kind == AST_VJP && i > 0 && items->v[i - 1]->kind == AST_FN && !items->v[i - 1]->c)
            items->v[i - 1]->c = it;
        if (it->kind == AST_LAYER && depth == 0)
            link_vjps(&it->list2, 1);
    }
}

AstModule *parse_file(SourceMap *sm, uint32_t file, Diags *diags)
{
    SourceFile *f = source_map_get(sm, file);
    AstModule *m = xcalloc(1, sizeof *m);
    m->file = file;
    LexState ls = {0};
    ls.file = file;
    ls.diags = diags;
    ls.module = m;
    yyscan_t scanner;
    if (yylex_init_extra(&ls, &scanner) != 0)
        nnd_fatal("cannot start the scanner");
    YY_BUFFER_STATE buf = yy_scan_bytes(f->text, (int)f->len, scanner);
    yyparse(scanner, &ls);
    yy_delete_buffer(buf, scanner);
    yylex_destroy(scanner);
    sb_free(&ls.strbuf);
    link_vjps(&m->items, 0);
    return m;
}

void ast_module_free(AstModule *m)
{
    if (!m)
        return;
    arena_free(&m->arena);
    free(m);
}
