/* fuzz_frontend: the front end (load, check, elaborate, simplify) on any text.
 *
 * Random bytes rarely get past the parser, so a custom mutator works on the
 * program's structure: it swaps, repeats, drops and splices whole lines, replaces
 * a name with another name of the same input, a number with an interesting one,
 * and inserts dictionary tokens at token boundaries (crossover splices lines of
 * two inputs); a third of the time it leaves the bytes to libFuzzer's own
 * mutations.  NND_FUZZ_STATS=1 prints, at exit, how many inputs parsed, passed
 * the checks and elaborated.  Nothing is written and nothing trains. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile.h"

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

static long runs, checked, elaborated;

static void print_stats(void)
{
    fprintf(stderr, "fuzz_frontend: %ld inputs, %ld passed the checks, %ld elaborated\n", runs,
            checked, elaborated);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setenv("NND_STDLIB", NND_SOURCE_DIR "/stdlib", 0);
    if (getenv("NND_FUZZ_STATS"))
        atexit(print_stats);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16)
        return 0;
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    Frontend fe;
    frontend_init(&fe);
    runs++;
    Module *m = compile_check(&fe, "fuzz.nnd", text);
    if (m) {
        checked++;
        Program *p = compile_module(&fe, m, NULL);
        elaborated += p != NULL;
        program_free(p);
    }
    frontend_free(&fe);
    free(text);
    return 0;
}

/* ---- the structure-aware mutator ---- */

typedef struct Lines {
    const char *at[512];
    size_t len[512];
    int n;
} Lines;

static void split_lines(const uint8_t *d, size_t size, Lines *l)
{
    l->n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= size && l->n < 512; i++)
        if (i == size || d[i] == '\n') {
            l->at[l->n] = (const char *)d + start;
            l->len[l->n++] = i - start;
            start = i + 1;
        }
}

/* Writes lines in the given order into out (at most max bytes); returns the size. */
static size_t join(const Lines *l, const int *order, int n, uint8_t *out, size_t max)
{
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        size_t k = l->len[order[i]];
        if (at + k + 1 > max)
            break;
        memcpy(out + at, l->at[order[i]], k);
        at += k;
        out[at++] = '\n';
    }
    return at;
}

static bool is_ident(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Replaces a token with text: the first name (or number, when number) at or after
 * a random place, so that most mutants still parse. */
static size_t replace_token(uint8_t *d, size_t size, size_t max, const char *text, unsigned r,
                            bool number)
{
    if (size == 0)
        return 0;
    size_t at = r % size;
    for (size_t tries = 0; tries < size; tries++, at = (at + 1) % size) {
        bool start = is_ident(d[at]) && (at == 0 || !is_ident(d[at - 1]));
        if (start && (d[at] >= '0' && d[at] <= '9') == number)
            break;
    }
    size_t end = at;
    while (end < size && (is_ident(d[end]) || (number && (d[end] == '.' || d[end] == '-'))))
        end++;
    size_t k = strlen(text);
    if (size - (end - at) + k > max)
        return size;
    memmove(d + at + k, d + end, size - end);
    memcpy(d + at, text, k);
    return size - (end - at) + k;
}

static const char *const interesting[] = {
    "0",     "-1",         "1",          "2",      "3",    "1e308", "1e-45", "-0.0",
    "65536", "2147483647", "4294967296", "1e100",  "0.5",  "nan",   "inf",   "-inf",
    "[]",    "[0]",        "[B]",        "[B, 0]", "[-1]", "\"\"",
};

/* A name found in d (a copy in buf), for renaming another. */
static const char *some_name(const uint8_t *d, size_t size, unsigned r, char *buf, size_t cap)
{
    for (int tries = 0; tries < 16 && size; tries++) {
        size_t at = (r + (unsigned)tries * 7919u) % size;
        while (at > 0 && is_ident(d[at - 1]))
            at--;
        size_t end = at;
        while (end < size && is_ident(d[end]) && end - at < cap - 1)
            end++;
        if (end > at && !(d[at] >= '0' && d[at] <= '9')) {
            memcpy(buf, d + at, end - at);
            buf[end - at] = 0;
            return buf;
        }
    }
    return "x";
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    unsigned r = seed * 2654435761u + 1;
    if (getenv("NND_FUZZ_PLAIN") || r % 3 == 0 || size == 0)
        return LLVMFuzzerMutate(data, size, max_size);
    Lines l;
    split_lines(data, size, &l);
    int order[1024], n = 0;
    for (int i = 0; i < l.n; i++)
        order[n++] = i;
    uint8_t *out = malloc(max_size + 1);
    size_t res = size;
    unsigned kind = (r >> 8) % 6, a = l.n ? (r >> 12) % (unsigned)l.n : 0,
             b = l.n ? (r >> 20) % (unsigned)l.n : 0;
    char name[64];
    switch (kind) {
    case 0: /* swap two lines */
        order[a] = (int)b;
        order[b] = (int)a;
        res = join(&l, order, n, out, max_size);
        break;
    case 1: /* repeat a line */
        memmove(order + a + 1, order + a, sizeof(int) * (size_t)(n - (int)a));
        n++;
        res = join(&l, order, n, out, max_size);
        break;
    case 2: /* drop a line */
        memmove(order + a, order + a + 1, sizeof(int) * (size_t)(n - (int)a - 1));
        n = n > 1 ? n - 1 : n;
        res = join(&l, order, n, out, max_size);
        break;
    case 3: /* a name for another */
        memcpy(out, data, size);
        res = replace_token(out, size, max_size, some_name(data, size, r >> 3, name, sizeof name),
                            r >> 5, false);
        break;
    default: /* an interesting number or shape */
        memcpy(out, data, size);
        res = replace_token(out, size, max_size,
                            interesting[(r >> 7) % (sizeof interesting / sizeof *interesting)],
                            r >> 11, true);
        break;
    }
    memcpy(data, out, res);
    free(out);
    return res;
}

size_t LLVMFuzzerCustomCrossOver(const uint8_t *d1, size_t s1, const uint8_t *d2, size_t s2,
                                 uint8_t *out, size_t max_out, unsigned int seed)
{
    Lines a, b;
    split_lines(d1, s1, &a);
    split_lines(d2, s2, &b);
    unsigned r = seed * 2654435761u + 7;
    int cut1 = a.n ? (int)(r % (unsigned)a.n) : 0,
        cut2 = b.n ? (int)((r >> 10) % (unsigned)b.n) : 0;
    size_t at = 0;
    for (int i = 0; i < cut1 && at + a.len[i] + 1 <= max_out; i++) {
        memcpy(out + at, a.at[i], a.len[i]);
        at += a.len[i];
        out[at++] = '\n';
    }
    for (int i = cut2; i < b.n && at + b.len[i] + 1 <= max_out; i++) {
        memcpy(out + at, b.at[i], b.len[i]);
        at += b.len[i];
        out[at++] = '\n';
    }
    return at;
}
