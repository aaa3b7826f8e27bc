/* Parser and scanner: the trees they build, line-end rules, precedence, error
 * recovery and hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the headers above, included before it */
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "parse.h"

typedef struct Parsed {
    SourceMap sm;
    Diags d;
    AstModule *m;
    char *dump;
    char *diag;
} Parsed;

static Parsed *parse_text(const char *text, size_t len)
{
    Parsed *p = xcalloc(1, sizeof *p);
    source_map_init(&p->sm);
    diags_init(&p->d, &p->sm);
    uint32_t f = source_map_add(&p->sm, "t.nnd", text, len);
    p->m = parse_file(&p->sm, f, &p->d);
    StrBuf b = {0};
    for (int i = 0; i < p->m->items.n; i++) {
        if (i)
            sb_putc(&b, '\n');
        ast_dump(p->m->items.v[i], &b);
    }
    p->dump = b.s ? b.s : xstrdup("");
    p->diag = diags_render(&p->d);
    return p;
}

static Parsed *parse(const char *text) { return parse_text(text, strlen(text)); }

static void parsed_free(Parsed *p)
{
    ast_module_free(p->m);
    diags_free(&p->d);
    source_map_free(&p->sm);
    free(p->dump);
    free(p->diag);
    free(p);
}

static void expect_tree(const char *src, const char *tree)
{
    Parsed *p = parse(src);
    if (strcmp(p->dump, tree) != 0 || p->d.nerrors)
        print_error("source: %s\nwant: %s\ngot:  %s\ndiagnostics: %s\n", src, tree, p->dump,
                    p->diag);
    assert_int_equal(p->d.nerrors, 0);
    assert_string_equal(p->dump, tree);
    parsed_free(p);
}

static void test_precedence(void **state)
{
    expect_tree("let a = 1 + 2 * 3", "(let a (binary + 1 (binary * 2 3)))");
    expect_tree("let a = -x^2", "(let a (unary neg (binary ^ x 2)))");
    expect_tree("let a = 2^-1", "(let a (binary ^ 2 (unary neg 1)))");
    expect_tree("let a = 2^3^2", "(let a (binary ^ 2 (binary ^ 3 2)))");
    expect_tree("let a = x @ W + b", "(let a (binary + (binary @ x W) b))");
    expect_tree("let a = not a < b and c or d",
                "(let a (binary or (binary and (unary not (binary < a b)) c) d))");
    expect_tree("let a = if c then 1 else 2 + 3", "(let a (if c 1 (binary + 2 3)))");
    expect_tree("let a = (1 + 2) * 3", "(let a (binary * (binary + 1 2) 3))");
}

static void test_postfix(void **state)
{
    expect_tree("let a = f(x, y = 2)(z)", "(let a (call (call f [ x (kwarg y 2) ]) [ z ]))");
    expect_tree("let a = net.fc1.W", "(let a (member W (member fc1 net)))");
    expect_tree("let a = x[:, 0:10, ::2, -1]",
                "(let a (index x [ (slice) (slice 0 10) (slice _ _ 2) (unary neg 1) ]))");
    expect_tree("let a = [[0, 1], [1, 0],]", "(let a (list [ (list [ 0 1 ]) (list [ 1 0 ]) ]))");
    expect_tree("let a = []", "(let a (list))");
}

static void test_declarations(void **state)
{
    expect_tree("use nn\nuse \"lib/x.nnd\"", "(use nn)\n(use lib/x.nnd)");
    expect_tree("fn f(x: [B, 784] f32, k = 2) -> [B] = x",
                "(fn f (type [ B ]) x [ (fparam x (type f32 [ B 784 ])) (fparam k _ 2) ])");
    expect_tree("fn g(x: [*S]) { let a = x\n a }",
                "(fn g [ (fparam x (type [ S ])) ] { (let a x) a })");
    expect_tree("layer L(n) {\n param W: [n, n] = 0\n fc = Dense(n, n)\n fn forward(x) = x\n}",
                "(layer L [ (fparam n) ] { (param W (type [ n n ]) 0) (assign = fc (call Dense [ n "
                "n ])) (fn forward _ x [ (fparam x) ]) })");
    expect_tree("optimizer O(lr = 0.1) { state m = 0; m += g; w -= lr * m }",
                "(optimizer O [ (fparam lr _ 0.1) ] { (state m _ 0) (assign + m g) (assign - w "
                "(binary * lr m)) })");
}

static void test_train(void **state)
{
    expect_tree(
        "train {\n data train = tensors(x = [1], y = [2])\n net = M() from \"a.st\" except fc2\n"
        " opt net.fc2 = SGD()\n freeze net.fc1, net.b\n eval test every 2 epochs: acc = f(x)\n"
        " log every 100 steps to \"runs\": loss\n checkpoint every epoch to \"ck\" keep 3\n"
        " save \"m.safetensors\"\n}",
        "(train { (data train (call tensors [ (kwarg x (list [ 1 ])) (kwarg y (list [ 2 ])) "
        "])) (assign = net (call M) \"a.st\" [ fc2 ]) (opt opt (member fc2 net) (call SGD)) "
        "(freeze [ (member fc1 net) (member b net) ]) (eval test (every epochs 2) [ (kwarg "
        "acc (call f [ x ])) ]) (log log (every steps 100) \"runs\" [ loss ]) (checkpoint "
        "(every epoch) \"ck\" 3) (save _ \"m.safetensors\") })");
}

/* Go-style line ends: a statement continues after an operator or inside brackets. */
static void test_line_ends(void **state)
{
    expect_tree("let a = 1 +\n  2", "(let a (binary + 1 2))");
    expect_tree("let a = f(1,\n  2\n)", "(let a (call f [ 1 2 ]))");
    expect_tree("let a = 1 \\\n + 2", "(let a (binary + 1 2))");
    expect_tree("let a = 1; let b = 2;\n\n\nlet c = 3 # comment",
                "(let a 1)\n(let b 2)\n(let c 3)");
    expect_tree("let a = 1", "(let a 1)"); /* no final newline */
    Parsed *p = parse("let a = 1\n+ 2");
    assert_true(p->d.nerrors > 0); /* a leading + starts a new statement */
    parsed_free(p);
}

static void test_numbers_strings(void **state)
{
    expect_tree("let a = 1e-3 + .5 + 5. + 2E+2",
                "(let a (binary + (binary + (binary + 0.001 0.5) 5) 200))");
    expect_tree("let s = \"a\\tb\\\\ \\\"q\\\"\"", "(let s \"a\tb\\ \"q\"\")");
    Parsed *p = parse("let a = 1");
    assert_true(p->m->items.v[0]->a->is_int);
    parsed_free(p);
    p = parse("let a = 1.0");
    assert_false(p->m->items.v[0]->a->is_int);
    parsed_free(p);
}

/* Several syntax errors in one file are all reported. */
static void test_recovery(void **state)
{
    Parsed *p = parse("let a = (1 +\nlet b = 2\nfn f(x) = x +* 2\nlet c = )\nlet d = 4\n");
    assert_true(p->d.nerrors >= 2);
    /* the good statement after the errors is still parsed */
    assert_non_null(strstr(p->dump, "(let d 4)"));
    parsed_free(p);
}

static void test_error_messages(void **state)
{
    Parsed *p = parse("fn f(x) = x +\n");
    assert_non_null(
        strstr(p->diag, "t.nnd:1:14: error: unexpected end of file; expected an expression"));
    parsed_free(p);
    p = parse("layer L {\n param W: [2] = 0\n");
    assert_non_null(strstr(p->diag, "unexpected end of file"));
    assert_non_null(strstr(p->diag, "t.nnd:1:9: note: '{' opened here is not closed"));
    parsed_free(p);
    p = parse("let a = b c");
    assert_non_null(strstr(p->diag, "t.nnd:1:11: error: unexpected name 'c'"));
    parsed_free(p);
    p = parse("let a = \"abc\nlet b = 1");
    assert_non_null(strstr(p->diag, "t.nnd:1:9: error: unterminated string"));
    parsed_free(p);
    p = parse("let a = 1e999");
    assert_non_null(strstr(p->diag, "number is too large"));
    parsed_free(p);
    p = parse("let a = 1 $ 2");
    assert_non_null(strstr(p->diag, "unexpected character '$'"));
    parsed_free(p);
    p = parse("let a = \"\\q\"");
    assert_non_null(strstr(p->diag, "unknown escape sequence '\\q'"));
    parsed_free(p);
    p = parse("let a = λ");
    assert_non_null(strstr(p->diag, "unexpected character 'λ' (U+03BB)"));
    parsed_free(p);
}

static void test_bad_bytes(void **state)
{
    const char nul[] = "let a = 1\0\0\0 + 2\n";
    Parsed *p = parse_text(nul, sizeof nul - 1);
    assert_int_equal(p->d.nerrors >= 1, 1);
    assert_non_null(strstr(p->diag, "t.nnd:1:10: error: NUL byte in source"));
    /* one diagnostic for the run of three NULs */
    assert_null(strstr(strstr(p->diag, "NUL byte") + 1, "NUL byte"));
    parsed_free(p);
    const char bad[] = "# comment \xff\xfe\nlet a = \"\xc3\x28\"\n";
    p = parse_text(bad, sizeof bad - 1);
    assert_non_null(strstr(p->diag, "t.nnd:1:11: error: invalid UTF-8 (byte 0xff)"));
    assert_non_null(strstr(p->diag, "t.nnd:2:10: error: invalid UTF-8 (byte 0xc3)"));
    parsed_free(p);
}

static void test_deep_nesting(void **state)
{
    /* brackets deeper than the limit: one clear error, no crash */
    StrBuf b = {0};
    sb_puts(&b, "let a = ");
    for (int i = 0; i < 5000; i++)
        sb_putc(&b, '(');
    sb_putc(&b, '1');
    for (int i = 0; i < 5000; i++)
        sb_putc(&b, ')');
    Parsed *p = parse(b.s);
    assert_int_equal(p->d.nerrors, 1);
    assert_non_null(strstr(p->diag, "brackets nested more than 128 levels deep"));
    parsed_free(p);
    sb_free(&b);
    /* a long flat chain is deep as a tree: limited too */
    sb_puts(&b, "let a = 1");
    for (int i = 0; i < 100000; i++)
        sb_puts(&b, "+1");
    p = parse(b.s);
    assert_int_equal(p->d.nerrors, 1);
    assert_non_null(strstr(p->diag, "expression nested more than 400 levels deep"));
    parsed_free(p);
    sb_free(&b);
}

static void test_huge_tokens(void **state)
{
    StrBuf b = {0};
    sb_puts(&b, "let ");
    for (int i = 0; i < 1 << 20; i++)
        sb_putc(&b, 'a');
    sb_puts(&b, " = 1");
    Parsed *p = parse(b.s);
    assert_int_equal(p->d.nerrors, 0);
    assert_int_equal((int)strlen(p->m->items.v[0]->name), 1 << 20);
    parsed_free(p);
    sb_free(&b);
}

/* Random bytes never crash the parser and always come back as diagnostics. */
static void test_garbage(void **state)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int round = 0; round < 300; round++) {
        size_t len = (size_t)(x % 2048);
        char *buf = xmalloc(len + 1);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            /* mostly language characters, some bytes of every kind */
            static const char alphabet[] = "letfnmodlayer (){}[],:;=+-*/^@<>\"#\n\t x y 0 1 .";
            buf[i] = (x & 7) ? alphabet[(x >> 8) % (sizeof alphabet - 1)] : (char)(x >> 16);
        }
        Parsed *p = parse_text(buf, len);
        assert_non_null(p->m);
        parsed_free(p);
        free(buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_precedence),   cmocka_unit_test(test_postfix),
        cmocka_unit_test(test_declarations), cmocka_unit_test(test_train),
        cmocka_unit_test(test_line_ends),    cmocka_unit_test(test_numbers_strings),
        cmocka_unit_test(test_recovery),     cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_bad_bytes),    cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_huge_tokens),  cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
