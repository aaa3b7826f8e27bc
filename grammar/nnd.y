/* nnd.y: the grammar.  A pure, reentrant LALR(1) parser with byte-span locations.
 *
 * Statements share one grammar wherever they appear (top level, layer, optimizer,
 * function block, train block); sema decides which are allowed where, so a
 * misplaced statement gets a precise message instead of a syntax error.  Errors
 * recover at the end of the statement, so one run reports several. */
%code requires {
#include "bridge.h"
}

%code provides {
int yylex(YYSTYPE *lvalp, YYLTYPE *llocp, void *scanner);
}

%code {
#include <ctype.h>
#include <string.h>

#define YYLLOC_DEFAULT(Cur, Rhs, N)                                                        \
    do {                                                                                   \
        if (N) {                                                                           \
            (Cur).file = YYRHSLOC(Rhs, 1).file;                                            \
            (Cur).start = YYRHSLOC(Rhs, 1).start;                                          \
            (Cur).end = YYRHSLOC(Rhs, N).end;                                              \
        } else {                                                                           \
            (Cur).file = YYRHSLOC(Rhs, 0).file;                                            \
            (Cur).start = (Cur).end = YYRHSLOC(Rhs, 0).end;                                \
        }                                                                                  \
    } while (0)

#define ARENA (&ls->module->arena)

static Ast *node(LexState *ls, AstKind k, Span s, Ast *a, Ast *b, Ast *c);
static Ast *binary(LexState *ls, Span s, AstOp op, Ast *a, Ast *b);
static Ast *named(LexState *ls, AstKind k, Span s, const char *name);
static AstList list1(LexState *ls, Ast *x);
static AstList list_add(LexState *ls, AstList l, Ast *x);
static void yyerror(YYLTYPE *loc, void *scanner, LexState *ls, const char *msg);
#define CHECK_DEPTH(n)                                                                     \
    do {                                                                                   \
        if ((n)->depth > PARSE_MAX_DEPTH && !ls->aborted) {                                \
            diag_error(ls->diags, (n)->span,                                               \
                       "expression nested more than %d levels deep", PARSE_MAX_DEPTH);      \
            ls->aborted = true;                                                            \
            YYABORT;                                                                       \
        }                                                                                  \
    } while (0)
}

%define api.pure full
%define parse.error custom
/* Lookahead correction: a syntax error is found before default reductions pop the
 * statement being parsed, so the expected tokens are exact and recovery at the end
 * of the statement still works after a stray token. */
%define parse.lac full
%locations
%lex-param {void *scanner}
%parse-param {void *scanner} {LexState *ls}
%expect 0

%union {
    Ast *ast;
    const char *str;
    AstList list;
    int op;
}

%token END 0 "end of file"
%token NL "end of line"
%token <str> IDENT "name"
%token <ast> NUMBER "number"
%token <ast> STRING "string"
%token ARROW "'->'" EQEQ "'=='" NEQ "'!='" LEQ "'<='" GEQ "'>='"
%token PLUSEQ "'+='" MINUSEQ "'-='" STAREQ "'*='" SLASHEQ "'/='"
%token KW_USE "'use'" KW_LET "'let'" KW_FN "'fn'" KW_LAYER "'layer'" KW_MODEL "'model'"
%token KW_PARAM "'param'" KW_STATE "'state'" KW_OPTIMIZER "'optimizer'" KW_TRAIN "'train'"
%token KW_DATA "'data'" KW_FREEZE "'freeze'" KW_EVAL "'eval'" KW_EVERY "'every'"
%token KW_SAVE "'save'" KW_CHECKPOINT "'checkpoint'" KW_IF "'if'" KW_THEN "'then'"
%token KW_ELSE "'else'" KW_AND "'and'" KW_OR "'or'" KW_NOT "'not'" KW_TRUE "'true'"
%token KW_FALSE "'false'" KW_FROM "'from'" KW_EXCEPT "'except'" KW_TO "'to'"
%token KW_KEEP "'keep'" KW_VJP "'vjp'"

%type <ast> stmt decl fn type expr or_expr and_expr not_expr cmp_expr add_expr mul_expr
%type <ast> unary pow_expr postfix primary arg index_item opt_expr fparam ret every path
%type <ast> opt_keep type_dim
%type <list> body stmts fparams fparam_list args arg_list exprs indices lparams except
%type <list> opt_exprs type_dims type_dim_list
%type <op> assignop cmpop
%type <str> dataname

%%

module
    : body                      { ls->module->items = $1; }
    ;

/* body: statements separated by ends of statement; the last needs none */
body
    : stmts                     { $$ = $1; }
    | stmts stmt                { $$ = list_add(ls, $1, $2); }
    | stmts error               { $$ = $1; } /* keeps the '}' that ends the block */
    ;

stmts
    : %empty                    { $$ = (AstList){0}; }
    | stmts NL                  { $$ = $1; }
    | stmts stmt NL             { $$ = list_add(ls, $1, $2); }
    | stmts error NL            { $$ = $1; yyerrok; }
    ;

stmt
    : decl
    | KW_LET IDENT '=' expr     { $$ = named(ls, AST_LET, @$, $2); $$->a = $4; }
    | KW_PARAM IDENT ':' type   { $$ = named(ls, AST_PARAM_DECL, @$, $2); $$->a = $4; }
    | KW_PARAM IDENT ':' type '=' expr
                                { $$ = named(ls, AST_PARAM_DECL, @$, $2); $$->a = $4; $$->b = $6; }
    | KW_STATE IDENT '=' expr   { $$ = named(ls, AST_STATE_DECL, @$, $2); $$->b = $4; }
    | KW_STATE IDENT ':' type '=' expr
                                { $$ = named(ls, AST_STATE_DECL, @$, $2); $$->a = $4; $$->b = $6; }
    | expr                      { $$ = $1; }
    | expr '=' expr             { $$ = node(ls, AST_ASSIGN, @$, $1, $3, NULL); $$->op = AOP_ASSIGN; }
    | expr assignop expr        { $$ = node(ls, AST_ASSIGN, @$, $1, $3, NULL); $$->op = $2; }
    | expr '=' expr KW_FROM expr except
                                { $$ = node(ls, AST_ASSIGN, @$, $1, $3, $5); $$->op = AOP_ASSIGN;
                                  $$->list = $6; }
    | IDENT path '=' expr       { $$ = node(ls, AST_OPT_GROUP, @$, $2, $4, NULL);
                                  $$->name = $1; }
    | KW_DATA dataname '=' expr { $$ = named(ls, AST_DATA, @$, $2); $$->a = $4; }
    | KW_FREEZE exprs except    { $$ = node(ls, AST_FREEZE, @$, NULL, NULL, NULL); $$->list = $2;
                                  $$->list2 = $3; }
    | KW_EVAL dataname every ':' args
                                { $$ = named(ls, AST_EVAL, @$, $2); $$->a = $3; $$->list = $5; }
    | IDENT every KW_TO expr ':' args
                                { $$ = named(ls, AST_LOG, @$, $1); $$->a = $2; $$->b = $4;
                                  $$->list = $6; }
    | IDENT every ':' args      { $$ = named(ls, AST_LOG, @$, $1); $$->a = $2; $$->list = $4; }
    | KW_CHECKPOINT every KW_TO expr opt_keep
                                { $$ = node(ls, AST_CHECKPOINT, @$, $2, $4, $5); }
    | KW_SAVE expr              { $$ = node(ls, AST_SAVE, @$, NULL, $2, NULL); }
    | KW_VJP '{' body '}'       { $$ = node(ls, AST_VJP, @$, NULL, NULL, NULL); $$->list2 = $3; }
    | KW_VJP '(' fparams ')' '{' body '}'
                                { $$ = node(ls, AST_VJP, @$, NULL, NULL, NULL); $$->list = $3;
                                  $$->list2 = $6; }
    ;

decl
    : KW_USE IDENT              { $$ = named(ls, AST_USE, @$, $2); }
    | KW_USE STRING             { $$ = named(ls, AST_USE, @$, $2->name); $$->op = 1; }
    | fn
    | KW_LAYER IDENT lparams '{' body '}'
                                { $$ = named(ls, AST_LAYER, @$, $2); $$->list = $3; $$->list2 = $5; }
    | KW_MODEL IDENT lparams '{' body '}'
                                { $$ = named(ls, AST_LAYER, @$, $2); $$->list = $3; $$->list2 = $5;
                                  $$->op = 1; }
    | KW_OPTIMIZER IDENT lparams '{' body '}'
                                { $$ = named(ls, AST_OPTIMIZER, @$, $2); $$->list = $3;
                                  $$->list2 = $5; }
    | KW_TRAIN '{' body '}'     { $$ = node(ls, AST_TRAIN, @$, NULL, NULL, NULL); $$->list2 = $3; }
    ;

fn
    : KW_FN IDENT '(' fparams ')' ret '=' expr
                                { $$ = named(ls, AST_FN, @$, $2); $$->list = $4; $$->a = $6; $$->b = $8; }
    | KW_FN IDENT '(' fparams ')' ret '{' body '}'
                                { $$ = named(ls, AST_FN, @$, $2); $$->list = $4; $$->a = $6;
                                  $$->list2 = $8; }
    ;

/* a data set's name; `train` is a keyword but also the usual name */
dataname
    : IDENT
    | KW_TRAIN                  { $$ = "train"; }
    ;

ret
    : %empty                    { $$ = NULL; }
    | ARROW type                { $$ = $2; }
    ;

lparams
    : %empty                    { $$ = (AstList){0}; }
    | '(' fparams ')'           { $$ = $2; }
    ;

fparams
    : %empty                    { $$ = (AstList){0}; }
    | fparam_list
    | fparam_list ','
    ;

fparam_list
    : fparam                    { $$ = list1(ls, $1); }
    | fparam_list ',' fparam    { $$ = list_add(ls, $1, $3); }
    ;

fparam
    : IDENT                     { $$ = named(ls, AST_FN_PARAM, @$, $1); }
    | IDENT ':' type            { $$ = named(ls, AST_FN_PARAM, @$, $1); $$->a = $3; }
    | IDENT '=' expr            { $$ = named(ls, AST_FN_PARAM, @$, $1); $$->b = $3; }
    | IDENT ':' type '=' expr   { $$ = named(ls, AST_FN_PARAM, @$, $1); $$->a = $3; $$->b = $5; }
    ;

/* A tensor type: a shape with an optional dtype, or a dtype alone. */
type
    : '[' type_dims ']'         { $$ = node(ls, AST_TYPE, @$, NULL, NULL, NULL); $$->list = $2;
                                  $$->has_shape = true; }
    | '[' type_dims ']' IDENT   { $$ = node(ls, AST_TYPE, @$, NULL, NULL, NULL); $$->list = $2;
                                  $$->has_shape = true; $$->name = $4; }
    | IDENT                     { $$ = node(ls, AST_TYPE, @$, NULL, NULL, NULL); $$->name = $1; }
    ;

/* Dimensions of a type: expressions, or `*S` for any number of leading
 * dimensions bound to S (written as a name node with op AOP_MUL). */
type_dims
    : %empty                    { $$ = (AstList){0}; }
    | type_dim_list
    | type_dim_list ','
    ;

type_dim_list
    : type_dim                  { $$ = list1(ls, $1); }
    | type_dim_list ',' type_dim
                                { $$ = list_add(ls, $1, $3); }
    ;

type_dim
    : expr
    | '*' IDENT                 { $$ = named(ls, AST_NAME, @$, $2); $$->op = AOP_MUL; }
    ;

assignop
    : PLUSEQ                    { $$ = AOP_ADD; }
    | MINUSEQ                   { $$ = AOP_SUB; }
    | STAREQ                    { $$ = AOP_MUL; }
    | SLASHEQ                   { $$ = AOP_DIV; }
    ;

path
    : IDENT                     { $$ = named(ls, AST_NAME, @$, $1); }
    | path '.' IDENT            { $$ = named(ls, AST_MEMBER, @$, $3); $$->a = $1; }
    ;

every
    : KW_EVERY IDENT            { $$ = named(ls, AST_EVERY, @$, $2); }
    | KW_EVERY NUMBER IDENT     { $$ = named(ls, AST_EVERY, @$, $3); $$->a = $2; }
    | KW_EVERY IDENT IDENT      { $$ = named(ls, AST_EVERY, @$, $3);
                                  $$->a = named(ls, AST_NAME, @2, $2); }
    ;

except
    : %empty                    { $$ = (AstList){0}; }
    | KW_EXCEPT exprs           { $$ = $2; }
    ;

opt_keep
    : %empty                    { $$ = NULL; }
    | KW_KEEP expr              { $$ = $2; }
    ;

/* Expressions, lowest precedence first.  Comparisons do not chain. */
expr
    : KW_IF expr KW_THEN expr KW_ELSE expr
                                { $$ = node(ls, AST_IF, @$, $2, $4, $6); CHECK_DEPTH($$); }
    | or_expr
    ;

or_expr
    : or_expr KW_OR and_expr    { $$ = binary(ls, @$, AOP_OR, $1, $3); CHECK_DEPTH($$); }
    | and_expr
    ;

and_expr
    : and_expr KW_AND not_expr  { $$ = binary(ls, @$, AOP_AND, $1, $3); CHECK_DEPTH($$); }
    | not_expr
    ;

not_expr
    : KW_NOT not_expr           { $$ = node(ls, AST_UNARY, @$, $2, NULL, NULL); $$->op = AOP_NOT;
                                  CHECK_DEPTH($$); }
    | cmp_expr
    ;

cmp_expr
    : add_expr
    | add_expr cmpop add_expr   { $$ = binary(ls, @$, $2, $1, $3); CHECK_DEPTH($$); }
    ;

cmpop
    : EQEQ                      { $$ = AOP_EQ; }
    | NEQ                       { $$ = AOP_NE; }
    | '<'                       { $$ = AOP_LT; }
    | LEQ                       { $$ = AOP_LE; }
    | '>'                       { $$ = AOP_GT; }
    | GEQ                       { $$ = AOP_GE; }
    ;

add_expr
    : add_expr '+' mul_expr     { $$ = binary(ls, @$, AOP_ADD, $1, $3); CHECK_DEPTH($$); }
    | add_expr '-' mul_expr     { $$ = binary(ls, @$, AOP_SUB, $1, $3); CHECK_DEPTH($$); }
    | mul_expr
    ;

mul_expr
    : mul_expr '*' unary        { $$ = binary(ls, @$, AOP_MUL, $1, $3); CHECK_DEPTH($$); }
    | mul_expr '/' unary        { $$ = binary(ls, @$, AOP_DIV, $1, $3); CHECK_DEPTH($$); }
    | mul_expr '@' unary        { $$ = binary(ls, @$, AOP_MATMUL, $1, $3); CHECK_DEPTH($$); }
    | unary
    ;

/* -x^2 is -(x^2); 2^-1 is allowed; ^ is right-associative. */
unary
    : '-' unary                 { $$ = node(ls, AST_UNARY, @$, $2, NULL, NULL); $$->op = AOP_NEG;
                                  CHECK_DEPTH($$); }
    | pow_expr
    ;

pow_expr
    : postfix '^' unary         { $$ = binary(ls, @$, AOP_POW, $1, $3); CHECK_DEPTH($$); }
    | postfix
    ;

postfix
    : primary
    | postfix '(' args ')'      { $$ = node(ls, AST_CALL, @$, $1, NULL, NULL); $$->list = $3;
                                  for (int i = 0; i < $3.n; i++)
                                      if ($3.v[i]->depth + 1 > $$->depth)
                                          $$->depth = $3.v[i]->depth + 1;
                                  CHECK_DEPTH($$); }
    | postfix '.' IDENT         { $$ = named(ls, AST_MEMBER, @$, $3); $$->a = $1;
                                  $$->depth = $1->depth + 1; CHECK_DEPTH($$); }
    | postfix '[' indices ']'   { $$ = node(ls, AST_INDEX, @$, $1, NULL, NULL); $$->list = $3;
                                  for (int i = 0; i < $3.n; i++)
                                      if ($3.v[i]->depth + 1 > $$->depth)
                                          $$->depth = $3.v[i]->depth + 1;
                                  CHECK_DEPTH($$); }
    ;

primary
    : NUMBER
    | STRING
    | KW_TRUE                   { $$ = node(ls, AST_BOOL, @$, NULL, NULL, NULL); $$->num = 1; }
    | KW_FALSE                  { $$ = node(ls, AST_BOOL, @$, NULL, NULL, NULL); $$->num = 0; }
    | IDENT                     { $$ = named(ls, AST_NAME, @$, $1); }
    | '(' expr ')'              { $$ = $2; $$->depth++; CHECK_DEPTH($$); }
    | '[' opt_exprs ']'         { $$ = node(ls, AST_LIST, @$, NULL, NULL, NULL); $$->list = $2;
                                  for (int i = 0; i < $2.n; i++)
                                      if ($2.v[i]->depth + 1 > $$->depth)
                                          $$->depth = $2.v[i]->depth + 1;
                                  CHECK_DEPTH($$); }
    ;

args
    : %empty                    { $$ = (AstList){0}; }
    | arg_list
    | arg_list ','
    ;

arg_list
    : arg                       { $$ = list1(ls, $1); }
    | arg_list ',' arg          { $$ = list_add(ls, $1, $3); }
    ;

arg
    : expr
    | IDENT '=' expr            { $$ = named(ls, AST_KWARG, @$, $1); $$->a = $3;
                                  $$->depth = $3->depth + 1; }
    ;

opt_exprs
    : %empty                    { $$ = (AstList){0}; }
    | exprs
    | exprs ','
    ;

exprs
    : expr                      { $$ = list1(ls, $1); }
    | exprs ',' expr            { $$ = list_add(ls, $1, $3); }
    ;

indices
    : index_item                { $$ = list1(ls, $1); }
    | indices ',' index_item    { $$ = list_add(ls, $1, $3); }
    ;

index_item
    : expr
    | opt_expr ':' opt_expr     { $$ = node(ls, AST_SLICE, @$, $1, $3, NULL); }
    | opt_expr ':' opt_expr ':' opt_expr
                                { $$ = node(ls, AST_SLICE, @$, $1, $3, $5); }
    ;

opt_expr
    : %empty                    { $$ = NULL; }
    | expr
    ;

%%

static Ast *node(LexState *ls, AstKind k, Span s, Ast *a, Ast *b, Ast *c)
{
    Ast *n = ast_new(ARENA, k, s);
    n->a = a;
    n->b = b;
    n->c = c;
    int d = 0;
    if (a && a->depth > d)
        d = a->depth;
    if (b && b->depth > d)
        d = b->depth;
    if (c && c->depth > d)
        d = c->depth;
    n->depth = d + 1;
    return n;
}

static Ast *binary(LexState *ls, Span s, AstOp op, Ast *a, Ast *b)
{
    Ast *n = node(ls, AST_BINARY, s, a, b, NULL);
    n->op = op;
    return n;
}

static Ast *named(LexState *ls, AstKind k, Span s, const char *name)
{
    Ast *n = ast_new(ARENA, k, s);
    n->name = name;
    return n;
}

static AstList list1(LexState *ls, Ast *x)
{
    AstList l = {0};
    ast_list_push(ARENA, &l, x);
    return l;
}

static AstList list_add(LexState *ls, AstList l, Ast *x)
{
    ast_list_push(ARENA, &l, x);
    return l;
}

static void yyerror(YYLTYPE *loc, void *scanner, LexState *ls, const char *msg)
{
    (void)scanner;
    if (ls->aborted)
        return;
    /* the parser's stack overflows on operators nested before their operand, like
     * thousands of unary minuses, before the depth check of an action can run */
    if (strcmp(msg, "memory exhausted") == 0)
        diag_error(ls->diags, *loc, "expression nested too deeply");
    else
        diag_error(ls->diags, *loc, "%s", msg);
}

/* How a token is named in a message: quoted source text, or its description. */
static void describe_token(const LexState *ls, const SourceFile *f, yysymbol_kind_t t, Span loc,
                           StrBuf *out)
{
    if (t == YYSYMBOL_YYEOF) {
        sb_puts(out, "end of file");
    } else if (t == YYSYMBOL_NL && f && loc.end == loc.start && loc.start < f->len &&
               (isalpha((unsigned char)f->text[loc.start]) || f->text[loc.start] == '_')) {
        /* the zero-width end of statement the scanner puts before a keyword that
         * closes brackets left open: name the keyword */
        uint32_t e = loc.start;
        while (e < f->len && (isalnum((unsigned char)f->text[e]) || f->text[e] == '_'))
            e++;
        sb_printf(out, "'%.*s'", (int)(e - loc.start), f->text + loc.start);
    } else if (t == YYSYMBOL_NL) {
        bool semi = f && loc.start < f->len && f->text[loc.start] == ';';
        sb_puts(out, semi ? "';'" : "end of line");
    } else if (f && loc.end > loc.start && loc.end - loc.start <= 40) {
        const char *kind = t == YYSYMBOL_IDENT ? "name " : t == YYSYMBOL_NUMBER ? "number "
                         : t == YYSYMBOL_STRING ? "string " : "";
        sb_printf(out, "%s'%.*s'", kind, (int)(loc.end - loc.start), f->text + loc.start);
    } else {
        sb_puts(out, yysymbol_name(t));
    }
    (void)ls;
}

static int yyreport_syntax_error(const yypcontext_t *ctx, void *scanner, LexState *ls)
{
    (void)scanner;
    if (ls->aborted)
        return 0;
    const SourceFile *f = NULL;
    for (int i = 0; i < ls->diags->sm->files.n; i++)
        if ((uint32_t)i == ls->file)
            f = ls->diags->sm->files.v[i];
    Span loc = *yypcontext_location(ctx);
    yysymbol_kind_t got = yypcontext_token(ctx);
    /* The end of the input is shown just after the last token, not on the empty
     * line after it. */
    if (got == YYSYMBOL_YYEOF && f)
        while (loc.start > 0 && f->text[loc.start - 1] &&
               strchr(" \t\r\n\f\v", f->text[loc.start - 1]))
            loc.start = loc.end = loc.start - 1;
    StrBuf msg = {0};
    sb_puts(&msg, "unexpected ");
    describe_token(ls, f, got, loc, &msg);
    yysymbol_kind_t exp[YYNTOKENS];
    int n = yypcontext_expected_tokens(ctx, exp, YYNTOKENS);
    /* Name what may come next: "an expression" where one can start; after a
     * complete expression, the tokens that end it, not every operator. */
    static const char *const continues[] = {
        "'+'", "'-'", "'*'", "'/'", "'^'", "'@'", "'<'", "'>'", "'=='", "'!='", "'<='",
        "'>='", "'and'", "'or'", "'('", "'['", "'.'", "'='", "'+='", "'-='", "'*='",
        "'/='", "'from'"};
    bool expr = false, end_line = false, operators = false;
    const char *shown[4];
    int nshown = 0;
    for (int i = 0; i < n; i++) {
        if (exp[i] == YYSYMBOL_NUMBER)
            expr = true;
        if (exp[i] == YYSYMBOL_NL)
            end_line = true;
        if (strcmp(yysymbol_name(exp[i]), "'+'") == 0)
            operators = true;
    }
    for (int i = 0; i < n && !expr && !end_line; i++) {
        const char *name = yysymbol_name(exp[i]);
        bool skip = false;
        for (size_t k = 0; operators && k < sizeof continues / sizeof continues[0]; k++)
            skip |= strcmp(name, continues[k]) == 0;
        if (skip)
            continue;
        if (nshown == 4) {
            nshown = 0;
            break;
        }
        shown[nshown++] = name;
    }
    /* At the end of the input the bracket left open is what matters. */
    char closer[4] = "";
    if (got == YYSYMBOL_YYEOF && ls->depth > 0) {
        char c = ls->brackets[ls->depth - 1];
        snprintf(closer, sizeof closer, "'%c'", c == '(' ? ')' : c == '[' ? ']' : '}');
        bool ok = false;
        for (int i = 0; i < n; i++)
            ok |= strcmp(yysymbol_name(exp[i]), closer) == 0;
        if (!ok)
            closer[0] = 0;
    }
    if (closer[0]) {
        sb_printf(&msg, "; expected %s", closer);
    } else if (expr) {
        sb_puts(&msg, "; expected an expression");
    } else if (end_line) {
        sb_puts(&msg, "; expected end of line");
    } else if (nshown > 0) {
        sb_puts(&msg, "; expected ");
        for (int i = 0; i < nshown; i++) {
            if (i)
                sb_puts(&msg, i == nshown - 1 ? " or " : ", ");
            sb_puts(&msg, shown[i]);
        }
    }
    int d = diag_error(ls->diags, loc, "%s", msg.s);
    sb_free(&msg);
    /* At the end of the input, point at the bracket that was never closed. */
    if (got == YYSYMBOL_YYEOF && ls->depth > 0 && d >= 0) {
        Span open = {ls->file, ls->open_at[ls->depth - 1], ls->open_at[ls->depth - 1] + 1};
        diag_note(ls->diags, open, "'%c' opened here is not closed", ls->brackets[ls->depth - 1]);
    }
    return 0;
}
