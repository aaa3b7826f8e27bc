#include "compile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"
#include "sema.h"

/* [+-]? (DIGITS ("." [0-9]*)? EXP? | "." DIGITS EXP?), as grammar/nnd.l reads numbers */
static bool is_decimal(const char *s)
{
    s += *s == '+' || *s == '-';
    const char *d = s;
    while (*s >= '0' && *s <= '9')
        s++;
    bool digits = s > d;
    if (*s == '.') {
        const char *f = ++s;
        while (*s >= '0' && *s <= '9')
            s++;
        digits = digits || s > f;
    }
    if (!digits)
        return false;
    if (*s == 'e' || *s == 'E') {
        s++;
        s += *s == '+' || *s == '-';
        if (*s < '0' || *s > '9')
            return false;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    return !*s;
}

const char *compile_parse_number(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end)
        return "expected a number";
    if (!is_decimal(s)) /* nan, inf, 0x10, 0x1p3, " 5" */
        return isnan(v) || isinf(v) ? "expected a finite number" : "expected a decimal number";
    if (!isfinite(v))
        return "number is too large";
    *out = v; /* one too small for a double is 0, as in a .nnd file */
    return NULL;
}

bool compile_parse_override(const char *kv, Override *out, const char **why)
{
    if (why)
        *why = NULL;
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return false;
    const char *text = eq + 1;
    bool flag = strcmp(text, "true") == 0 || strcmp(text, "false") == 0;
    double v = flag && text[0] == 't';
    char *end;
    strtod(text, &end);
    bool number = flag || (end != text && !*end);
    /* what strtod reads must be a number as the language writes it: not nan, inf, 0x10 */
    const char *bad = number && !flag ? compile_parse_number(text, &v) : NULL;
    if (bad) {
        if (why)
            *why = bad;
        return false;
    }
    if (out)
        *out = (Override){xstrndup(kv, (size_t)(eq - kv)), text, v, number, false};
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
    /* one value per name: of two, neither would be right to drop */
    for (int i = 0; i < o->noverrides; i++)
        for (int k = 0; k < i; k++)
            if (strcmp(o->overrides[i].key, o->overrides[k].key) == 0) {
                diag_error(&fe->diags, span_none(), "--set %s: given twice, as %s=%s and %s=%s",
                           o->overrides[i].key, o->overrides[k].key, o->overrides[k].text,
                           o->overrides[i].key, o->overrides[i].text);
                return NULL;
            }
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
