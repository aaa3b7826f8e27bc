/* ast: the syntax tree the parser builds.
 *
 * One node struct for every kind; the comment on each kind says which fields it
 * uses.  All nodes, lists and strings live in the module's arena. */
#ifndef NND_AST_H
#define NND_AST_H

#include "source.h"

typedef enum AstKind {
    /* expressions */
    AST_NUM, /* num, is_int */
    AST_STR, /* name: decoded text */
    AST_BOOL, /* num: 0 or 1 */
    AST_NAME, /* name */
    AST_UNARY, /* op (AOP_NEG, AOP_NOT), a */
    AST_BINARY, /* op, a, b */
    AST_IF, /* a: condition, b: then, c: else */
    AST_CALL, /* a: callee, list: arguments (expressions or AST_KWARG) */
    AST_KWARG, /* name, a: value */
    AST_MEMBER, /* a: object, name: member */
    AST_INDEX, /* a: object, list: index items (expressions or AST_SLICE) */
    AST_SLICE, /* a: start, b: stop, c: step; each may be NULL */
    AST_LIST, /* list: elements of a bracket literal [a, b, ...] */
    AST_TYPE, /* list: dimensions (has_shape), name: dtype or NULL */
    /* declarations */
    AST_USE, /* name: module; op: 1 when written as a string path */
    AST_LET, /* name, a: value */
    AST_FN, /* name, list: AST_PARAM params, a: return type, b: result expression,
               list2: block statements before the result (AST_LET, AST_ASSIGN),
               c: its vjp block or NULL (linked after parsing) */
    AST_FN_PARAM, /* name, a: type, b: default */
    AST_LAYER, /* name, op: 1 for `model`, list: AST_FN_PARAM, list2: members */
    AST_PARAM_DECL, /* name, a: type, b: initializer or NULL */
    AST_STATE_DECL, /* name, a: type or NULL, b: initial value */
    AST_OPTIMIZER, /* name, list: AST_FN_PARAM, list2: body statements */
    AST_ASSIGN, /* a: target, op: AOP_ASSIGN or the compound operator, b: value;
                   in train: c: `from` path, list: `except` names */
    AST_TRAIN, /* list2: statements */
    /* train statements */
    AST_DATA, /* name, a: source expression */
    AST_OPT_GROUP, /* a: target path, b: optimizer expression */
    AST_FREEZE, /* list: paths, list2: the paths `except` keeps trained */
    AST_EVERY, /* a: count or NULL, name: unit as written (step, steps, epoch, epochs) */
    AST_EVAL, /* name: data set, a: AST_EVERY, list: metrics (expressions or AST_KWARG) */
    AST_LOG, /* a: AST_EVERY, b: directory, list: items */
    AST_CHECKPOINT, /* a: AST_EVERY, b: directory, c: keep count or NULL */
    AST_SAVE, /* b: path */
    AST_VJP, /* list: names for the output and its adjoint (default y, dy), list2: body;
                the gradient of the function declared just before it */
    AST_KIND_COUNT
} AstKind;

typedef enum AstOp {
    AOP_NONE,
    AOP_ADD,
    AOP_SUB,
    AOP_MUL,
    AOP_DIV,
    AOP_POW,
    AOP_MATMUL,
    AOP_EQ,
    AOP_NE,
    AOP_LT,
    AOP_LE,
    AOP_GT,
    AOP_GE,
    AOP_AND,
    AOP_OR,
    AOP_NEG,
    AOP_NOT,
    AOP_ASSIGN,
} AstOp;

typedef struct Ast Ast;
typedef struct AstList {
    Ast **v;
    int n, cap;
} AstList;

struct Ast {
    AstKind kind;
    AstOp op;
    Span span;
    int depth; /* height of the subtree, bounded by the parser */
    bool is_int;
    bool has_shape;
    double num;
    const char *name;
    Ast *a, *b, *c;
    AstList list, list2;
};

typedef struct AstModule {
    uint32_t file;
    AstList items;
    Arena arena; /* owns every node of this module */
} AstModule;

Ast *ast_new(Arena *arena, AstKind kind, Span span);
void ast_list_push(Arena *arena, AstList *l, Ast *x);
const char *ast_kind_name(AstKind k);
/* Writes an S-expression dump of the node (for tests and `nnd parse`). */
void ast_dump(const Ast *n, StrBuf *out);

#endif
