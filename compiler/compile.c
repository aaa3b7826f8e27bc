#include "compile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"
#include "sema.h"

bool compile_parse_override(const char *kv, Override *out)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return false;
    if (!out)
        return true;
    *out = (Override){0};
    out->key = xstrndup(kv, (size_t)(eq - kv));
    out->text = eq + 1;
    if (strcmp(out->text, "true") == 0 || strcmp(out->text, "false") == 0) {
        out->value = out->text[0] == 't';
        out->is_number = true;
        return true;
    }
    char *end;
    errno = 0;
    double v = strtod(out->text, &end);
    out->is_number = end != out->text && !*end && errno != ERANGE;
    if (out->is_number)
        out->value = v;
    return true;
}

Module *compile_check(Frontend *fe, const char *path, const char *text)
{
    Module *m = text ? frontend_load_text(fe, path, text, strlen(text))
                     : frontend_load(fe, path, span_none());
    if (m && !diags_has_errors(&fe->diags))
        sema_check(fe, m);
    return m && !diags_has_errors(&fe->diags) ? m : NULL;
}

/* `opt = TEXT` parses as one statement whose value is the expression, and reads
 * naturally where a diagnostic quotes the line.  The tree lives in *keep. */
static const Ast *parse_opt_expr(Frontend *fe, const char *name, const char *text, AstModule **keep)
{
    StrBuf src = {0};
    sb_printf(&src, "opt = %s\n", text);
    uint32_t f = source_map_add(&fe->sm, name, src.s, src.len);
    sb_free(&src);
    int errors = fe->diags.nerrors;
    AstModule *m = parse_file(&fe->sm, f, &fe->diags);
    *keep = m;
    if (fe->diags.nerrors > errors)
        return NULL;
    if (m->items.n != 1 || m->items.v[0]->kind != AST_ASSIGN || !m->items.v[0]->b) {
        diag_error(&fe->diags, (Span){f, 0, (uint32_t)strlen(text) + 6},
                   "expected one expression, like Adam(lr = 1e-3)");
        return NULL;
    }
    return m->items.v[0]->b;
}

bool compile_models(Frontend *fe, Module *m, const CompileOptions *o, StrBuf *report)
{
    ElabOptions eo = {o ? o->float_dtype : NND_F32, NULL, 0, NULL, false};
    return elab_check_models(fe, m, &eo, report);
}

Program *compile_module(Frontend *fe, Module *m, const CompileOptions *o)
{
    static const CompileOptions none = {0};
    if (!o)
        o = &none;
    AstModule *keep = NULL;
    ElabOptions eo = {o->float_dtype, o->overrides, o->noverrides, NULL, o->distributed};
    if (o->opt_text) {
        eo.opt_expr = parse_opt_expr(fe, o->opt_name ? o->opt_name : "--opt", o->opt_text, &keep);
        if (!eo.opt_expr) {
            ast_module_free(keep);
            return NULL;
        }
    }
    Program *p = elab_program(fe, m, &eo);
    if (!p)
        ast_module_free(keep);
    else
        p->opt_ast = keep; /* names in the program may point into it */
    if (p && !o->raw) {
        NodeRefVec roots = {0};
        program_roots(p, &roots);
        simplify_graph(&p->g, roots.v, roots.n, SIMPLIFY_FAST, o->stats);
        vec_free(&roots);
    }
    return p;
}

Program *compile(Frontend *fe, const char *path, const char *text, const CompileOptions *o)
{
    Module *m = compile_check(fe, path, text);
    return m ? compile_module(fe, m, o) : NULL;
}
