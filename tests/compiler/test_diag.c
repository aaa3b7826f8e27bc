/* Diagnostics: positions, the source line with its marker, notes, limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the headers above, included before it */
#include <cmocka.h>

#include <string.h>

#include "source.h"

typedef struct Fixture {
    SourceMap sm;
    Diags d;
    uint32_t f;
} Fixture;

static Fixture *fixture(const char *text)
{
    Fixture *x = xcalloc(1, sizeof *x);
    source_map_init(&x->sm);
    diags_init(&x->d, &x->sm);
    x->f = source_map_add(&x->sm, "dir/file.nnd", text, strlen(text));
    return x;
}

static void fixture_free(Fixture *x)
{
    diags_free(&x->d);
    source_map_free(&x->sm);
    free(x);
}

static void expect_render(Fixture *x, const char *want)
{
    char *got = diags_render(&x->d);
    if (strcmp(got, want) != 0)
        print_error("want:\n%s\ngot:\n%s\n", want, got);
    assert_string_equal(got, want);
    free(got);
}

static void test_line_col(void **state)
{
    Fixture *x = fixture("ab\ncd\n\nef");
    SourceFile *f = source_map_get(&x->sm, x->f);
    int line, col;
    source_line_col(f, 0, &line, &col);
    assert_int_equal(line * 100 + col, 101);
    source_line_col(f, 4, &line, &col);
    assert_int_equal(line * 100 + col, 202);
    source_line_col(f, 6, &line, &col);
    assert_int_equal(line * 100 + col, 301);
    source_line_col(f, 8, &line, &col);
    assert_int_equal(line * 100 + col, 402);
    fixture_free(x);
}

static void test_span_and_label(void **state)
{
    Fixture *x = fixture("    fn forward(x) = x @ W + b\n");
    int d = diag_error(&x->d, (Span){x->f, 20, 25}, "matmul shapes do not agree");
    diag_set_caret(&x->d, d, 22);
    diag_label(&x->d, d, "inner dimensions %d and %d differ", 784, 748);
    expect_render(x, "dir/file.nnd:1:21: error: matmul shapes do not agree\n"
                     "        fn forward(x) = x @ W + b\n"
                     "                        ~~^~~ inner dimensions 784 and 748 differ\n");
    fixture_free(x);
}

static void test_notes_and_warnings(void **state)
{
    Fixture *x = fixture("let a = 1\nlet a = 2\n");
    diag_error(&x->d, (Span){x->f, 10, 19}, "'a' is defined twice");
    diag_note(&x->d, (Span){x->f, 0, 9}, "first defined here");
    diag_warning(&x->d, (Span){x->f, 14, 15}, "unused");
    diag_error(&x->d, span_none(), "no location");
    expect_render(x, "dir/file.nnd:2:1: error: 'a' is defined twice\n"
                     "    let a = 2\n"
                     "    ^~~~~~~~~\n"
                     "dir/file.nnd:1:1: note: first defined here\n"
                     "    let a = 1\n"
                     "    ^~~~~~~~~\n"
                     "dir/file.nnd:2:5: warning: unused\n"
                     "    let a = 2\n"
                     "        ^\n"
                     "nnd: error: no location\n");
    assert_int_equal(x->d.nerrors, 2);
    fixture_free(x);
}

/* Tabs and control bytes show as one column each, UTF-8 characters as one. */
static void test_odd_characters(void **state)
{
    Fixture *x = fixture("\tlet é = \x01 λ\n");
    diag_error(&x->d, (Span){x->f, 12, 14}, "here");
    expect_render(x, "dir/file.nnd:1:13: error: here\n"
                     "     let é = ? λ\n"
                     "               ^\n");
    fixture_free(x);
}

/* A span at the end of the file or of a line points just past the text. */
static void test_end_of_input(void **state)
{
    Fixture *x = fixture("fn f(x) = x +");
    diag_error(&x->d, (Span){x->f, 13, 13}, "unexpected end of file");
    expect_render(x, "dir/file.nnd:1:14: error: unexpected end of file\n"
                     "    fn f(x) = x +\n"
                     "                 ^\n");
    fixture_free(x);
}

/* A span over several lines is underlined to the end of its first line. */
static void test_multiline_span(void **state)
{
    Fixture *x = fixture("train {\n  loss = 1\n}\n");
    diag_error(&x->d, (Span){x->f, 0, 20}, "the train block sets no optimizer");
    expect_render(x, "dir/file.nnd:1:1: error: the train block sets no optimizer\n"
                     "    train {\n"
                     "    ^~~~~~~\n");
    fixture_free(x);
}

/* Very long lines are shown as a window around the span. */
static void test_long_line(void **state)
{
    StrBuf b = {0};
    sb_puts(&b, "let a = ");
    for (int i = 0; i < 1000; i++)
        sb_puts(&b, "1 + ");
    sb_puts(&b, "oops");
    Fixture *x = fixture(b.s);
    uint32_t at = (uint32_t)b.len - 4;
    diag_error(&x->d, (Span){x->f, at, at + 4}, "unknown name 'oops'");
    char *got = diags_render(&x->d);
    assert_non_null(strstr(got, "dir/file.nnd:1:4009: error"));
    assert_non_null(strstr(got, "    ...1 + 1 + "));
    assert_non_null(strstr(got, "oops\n"));
    assert_non_null(strstr(got, "^~~~\n"));
    assert_true(strlen(got) < 500);
    free(got);
    fixture_free(x);
    sb_free(&b);
}

static void test_error_limit(void **state)
{
    Fixture *x = fixture("x\n");
    for (int i = 0; i < 80; i++) {
        diag_error(&x->d, (Span){x->f, 0, 1}, "error %d", i);
        diag_note(&x->d, (Span){x->f, 0, 1}, "note %d", i);
    }
    assert_int_equal(x->d.nerrors, 80);
    char *got = diags_render(&x->d);
    assert_non_null(strstr(got, "error 49\n"));
    assert_null(strstr(got, "error 50\n"));
    assert_null(strstr(got, "note 50\n"));
    assert_non_null(strstr(got, "nnd: too many errors (80), stopping after the first 50\n"));
    free(got);
    fixture_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_col),           cmocka_unit_test(test_span_and_label),
        cmocka_unit_test(test_notes_and_warnings), cmocka_unit_test(test_odd_characters),
        cmocka_unit_test(test_end_of_input),       cmocka_unit_test(test_multiline_span),
        cmocka_unit_test(test_long_line),          cmocka_unit_test(test_error_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
