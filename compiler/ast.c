#include "ast.h"

#include <string.h>

Ast *ast_new(Arena *arena, AstKind kind, Span span)
{
    Ast *n = arena_alloc(arena, sizeof *n);
    n->kind = kind;
    n->span = span;
    n->depth = 1;
    return n;
}

void ast_list_push(Arena *arena, AstList *l, Ast *x)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 4;
        Ast **v = arena_alloc(arena, sizeof(Ast *) * (size_t)cap);
        if (l->n)
            memcpy(v, l->v, sizeof(Ast *) * (size_t)l->n);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
}

static const char *kind_names[] = {
    "num",    "str",   "bool",  "name",       "unary",  "binary", "if",   "call", "kwarg",
    "member", "index", "slice", "list",       "type",   "use",    "let",  "fn",   "fparam",
    "layer",  "param", "state", "optimizer",  "assign", "train",  "data", "opt",  "freeze",
    "every",  "eval",  "log",   "checkpoint", "save",   "vjp",
};
_Static_assert(sizeof kind_names / sizeof kind_names[0] == AST_KIND_COUNT, "one name per AST kind");

const char *ast_kind_name(AstKind k) { return kind_names[k]; }

static const char *ast_op_text(AstOp op)
{
    static const char *t[] = {"?", "+",  "-", "*",  "/",   "^",  "@",   "==",  "!=",
                              "<", "<=", ">", ">=", "and", "or", "neg", "not", "="};
    return t[op];
}

static void dump_list(const AstList *l, StrBuf *out)
{
    for (int i = 0; i < l->n; i++) {
        sb_putc(out, ' ');
        ast_dump(l->v[i], out);
    }
}

void ast_dump(const Ast *n, StrBuf *out)
{
    if (!n) {
        sb_puts(out, "_");
        return;
    }
    char num[40];
    switch (n->kind) {
    case AST_NUM:
        format_double(num, sizeof num, n->num);
        sb_puts(out, num);
        return;
    case AST_STR: sb_printf(out, "\"%s\"", n->name); return;
    case AST_BOOL: sb_puts(out, n->num != 0 ? "true" : "false"); return;
    case AST_NAME: sb_puts(out, n->name); return;
    default: break;
    }
    sb_printf(out, "(%s", ast_kind_name(n->kind));
    if (n->op != AOP_NONE &&
        (n->kind == AST_UNARY || n->kind == AST_BINARY || n->kind == AST_ASSIGN))
        sb_printf(out, " %s", ast_op_text(n->op));
    if (n->name)
        sb_printf(out, " %s", n->name);
    /* a fn's c is the vjp block after it, dumped in its place */
    const Ast *c = n->kind == AST_FN ? NULL : n->c;
    if (n->a || n->b || c) {
        sb_putc(out, ' ');
        ast_dump(n->a, out);
        if (n->b || c) {
            sb_putc(out, ' ');
            ast_dump(n->b, out);
        }
        if (c) {
            sb_putc(out, ' ');
            ast_dump(c, out);
        }
    }
    if (n->list.n) {
        sb_puts(out, " [");
        dump_list(&n->list, out);
        sb_puts(out, " ]");
    }
    if (n->list2.n) {
        sb_puts(out, " {");
        dump_list(&n->list2, out);
        sb_puts(out, " }");
    }
    sb_putc(out, ')');
}
