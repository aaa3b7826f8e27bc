/* fuzz_frontend: the front end on arbitrary program text: load and check
 * (compile_check), then elaboration and simplification (compile_module for a file
 * with a train block, compile_models for one without).  Nothing is written and
 * nothing trains.  The text is named as a file of examples/, so its relative paths
 * (data sets, `from` weights, `use "x.nnd"`) resolve there, and `use nn` finds the
 * tree's stdlib/.
 *
 * Random bytes rarely get past the parser, so the mutator works on the program's
 * lines and tokens: it swaps, duplicates and deletes lines, puts another of the
 * input's identifiers in an identifier's place, replaces numbers with interesting
 * ones (0, -1, 1e308, 2^63, 1e-45, ...), inserts, replaces and deletes tokens from
 * the dictionary (the -dict= file, nnd.dict), and copies token ranges; its
 * crossover splices top-level items (a model, a function, the train block) or lines
 * of another input.  One mutation in eight is libFuzzer's own.
 *
 * NND_FUZZ_PLAIN=1 leaves mutation to libFuzzer alone (to measure what the mutator
 * adds).  NND_FUZZ_STATS=1 prints, at exit, how many inputs passed the check and
 * reached elaboration, and how many elaborated without errors. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile.h"

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);
size_t LLVMFuzzerCustomCrossOver(const uint8_t *d1, size_t s1, const uint8_t *d2, size_t s2,
                                 uint8_t *out, size_t max_out, unsigned int seed);

static bool plain, stats;
static long n_inputs, n_checked, n_elaborated;

/* Inputs that passed the check, most recent first over the old: the mutator starts
 * from one of them half the time when its input did not pass, so that most of what
 * it makes is one mutation away from a program that elaborates. */
enum { POOL = 256 };
static struct {
    uint8_t *data;
    size_t size;
    uint64_t hash;
} pool[POOL];
static int npool, pool_next;

static uint64_t hash_of(const uint8_t *d, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ d[i]) * 1099511628211ull;
    return h;
}

static bool pool_has(uint64_t h)
{
    for (int i = 0; i < npool; i++)
        if (pool[i].hash == h)
            return true;
    return false;
}

static void pool_add(const uint8_t *d, size_t n)
{
    uint64_t h = hash_of(d, n);
    if (pool_has(h))
        return;
    int i = npool < POOL ? npool++ : pool_next++ % POOL;
    free(pool[i].data);
    pool[i].data = malloc(n ? n : 1);
    memcpy(pool[i].data, d, n);
    pool[i].size = n;
    pool[i].hash = h;
}

enum { MAX_DICT = 1024 };
static char *dict[MAX_DICT];
static int ndict;

static void stats_print(void)
{
    fprintf(stderr,
            "fuzz_frontend: %ld inputs, %ld (%.1f%%) passed the check and reached elaboration, "
            "%ld (%.1f%%) elaborated without errors\n",
            n_inputs, n_checked, n_inputs ? 100.0 * n_checked / n_inputs : 0.0, n_elaborated,
            n_inputs ? 100.0 * n_elaborated / n_inputs : 0.0);
}

/* One entry of a libFuzzer dictionary: name="text", with \\, \" and \xNN. */
static void dict_add_line(const char *line)
{
    const char *q = strchr(line, '"');
    if (line[0] == '#' || !q || ndict == MAX_DICT)
        return;
    char buf[256];
    size_t n = 0;
    for (q++; *q && *q != '"' && n < sizeof buf - 1; q++) {
        if (*q == '\\' && q[1] == 'x' && q[2] && q[3]) {
            char hex[3] = {q[2], q[3], 0};
            buf[n++] = (char)strtol(hex, NULL, 16);
            q += 3;
        } else if (*q == '\\' && q[1]) {
            buf[n++] = *++q;
        } else {
            buf[n++] = *q;
        }
    }
    if (n > 0)
        dict[ndict++] = strndup(buf, n);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    plain = getenv("NND_FUZZ_PLAIN") && strcmp(getenv("NND_FUZZ_PLAIN"), "0") != 0;
    stats = getenv("NND_FUZZ_STATS") && strcmp(getenv("NND_FUZZ_STATS"), "0") != 0;
    if (stats)
        atexit(stats_print);
    for (int i = 1; i < *argc; i++) {
        if (strncmp((*argv)[i], "-dict=", 6) != 0)
            continue;
        FILE *f = fopen((*argv)[i] + 6, "r");
        char line[512];
        while (f && fgets(line, sizeof line, f))
            dict_add_line(line);
        if (f)
            fclose(f);
    }
    static const char *const fallback[] = {"model", "fn", "train", "use", "let", "=", "(",
                                           ")",     "[",  "]",     "{",   "}",   ",", "\n"};
    if (ndict == 0) /* no -dict=: a few tokens still */
        for (size_t i = 0; i < sizeof fallback / sizeof *fallback; i++)
            dict[ndict++] = strdup(fallback[i]);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    Frontend fe;
    frontend_init(&fe);
    Module *m = compile_check(&fe, NND_SOURCE_DIR "/examples/fuzz-input.nnd", text);
    n_inputs++;
    if (m) {
        n_checked++;
        if (!plain)
            pool_add(data, size);
        bool ok;
        if (m->train) {
            Program *p = compile_module(&fe, m, NULL);
            ok = p != NULL;
            program_free(p);
        } else {
            StrBuf report = {0};
            ok = compile_models(&fe, m, NULL, &report);
            sb_free(&report);
        }
        n_elaborated += ok;
    }
    frontend_free(&fe);
    free(text);
    if (stats && (n_inputs & (n_inputs - 1)) == 0 && n_inputs >= 65536)
        stats_print();
    return 0;
}

/* ---- the mutator ------------------------------------------------------------------- */

typedef struct Piece {
    size_t at, len;
    char kind; /* 'i' identifier, 'n' number, 's' string, 'p' punctuation, ' ' blank */
} Piece;

enum { MAX_PIECES = 1 << 14 };
static Piece pieces[MAX_PIECES], lines[MAX_PIECES];
static uint8_t scratch[1 << 20];

static uint64_t rng_state;
static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return n ? (unsigned)(rng_state % n) : 0;
}

static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_id(int c) { return c == '_' || ((c | 32) >= 'a' && (c | 32) <= 'z') || is_digit(c); }

/* The input as tokens, roughly as grammar/nnd.l splits it. */
static int tokenize(const uint8_t *d, size_t n)
{
    int np = 0;
    for (size_t i = 0; i < n && np < MAX_PIECES;) {
        size_t j = i + 1;
        char kind = 'p';
        if (is_digit(d[i]) || (d[i] == '.' && i + 1 < n && is_digit(d[i + 1]))) {
            kind = 'n';
            while (j < n && (is_id(d[j]) || d[j] == '.' ||
                             ((d[j] == '-' || d[j] == '+') && (d[j - 1] | 32) == 'e')))
                j++;
        } else if (is_id(d[i])) {
            kind = 'i';
            while (j < n && is_id(d[j]))
                j++;
        } else if (d[i] == '"') {
            kind = 's';
            while (j < n && d[j] != '"' && d[j] != '\n')
                j++;
            j += j < n && d[j] == '"';
        } else if (d[i] == ' ' || d[i] == '\t' || d[i] == '\n' || d[i] == '\r') {
            kind = ' ';
        } else if (i + 1 < n && strchr("-=!<>+*/", d[i]) && (d[i + 1] == '=' || d[i + 1] == '>')) {
            j = i + 2;
        }
        pieces[np++] = (Piece){i, j - i, kind};
        i = j;
    }
    return np;
}

static int split_lines(const uint8_t *d, size_t n)
{
    int nl = 0;
    for (size_t i = 0; i < n && nl < MAX_PIECES;) {
        const uint8_t *e = memchr(d + i, '\n', n - i);
        size_t j = e ? (size_t)(e - d) + 1 : n;
        lines[nl++] = (Piece){i, j - i, 0};
        i = j;
    }
    return nl;
}

/* out := d[0, a) + ins + d[b, n); the new size, or 0 when it does not fit. */
static size_t splice(const uint8_t *d, size_t n, size_t a, size_t b, const void *ins, size_t len,
                     uint8_t *out, size_t max)
{
    if (a + len + (n - b) > max || a + len + (n - b) > sizeof scratch)
        return 0;
    memcpy(scratch, d, a);
    memcpy(scratch + a, ins, len);
    memcpy(scratch + a + len, d + b, n - b);
    memcpy(out, scratch, a + len + (n - b));
    return a + len + (n - b);
}

/* Indices of the pieces of one kind; how many. */
static int pieces_of(int np, char kind, int *idx)
{
    int k = 0;
    for (int i = 0; i < np; i++)
        if (pieces[i].kind == kind)
            idx[k++] = i;
    return k;
}

static const char *const numbers[] = {"0",
                                      "-1",
                                      "1",
                                      "2",
                                      "3",
                                      "0.5",
                                      "1e308",
                                      "1e309",
                                      "1e-45",
                                      "1e-320",
                                      "-0",
                                      "65536",
                                      "2147483647",
                                      "2147483648",
                                      "4294967296",
                                      "9223372036854775807",
                                      "9223372036854775808",
                                      "18446744073709551616",
                                      "99999999999999999999999",
                                      "1000000",
                                      "16777217",
                                      "1e6",
                                      "0.0"};

static size_t mutate_lines(uint8_t *d, size_t n, size_t max)
{
    int nl = split_lines(d, n);
    if (nl == 0)
        return 0;
    Piece a = lines[rnd((unsigned)nl)], b = lines[rnd((unsigned)nl)];
    switch (rnd(3)) {
    case 0: /* duplicate line a before line b */
        return splice(d, n, b.at, b.at, d + a.at, a.len, d, max);
    case 1: { /* delete lines a..b */
        size_t lo = a.at < b.at ? a.at : b.at, hi = a.at < b.at ? b.at + b.len : a.at + a.len;
        if (hi - lo > 1 && rnd(2))
            hi = lo + a.len; /* often just one */
        return splice(d, n, lo, hi, "", 0, d, max);
    }
    default: { /* swap lines a and b */
        if (a.at == b.at)
            return 0;
        if (a.at > b.at) {
            Piece t = a;
            a = b;
            b = t;
        }
        static uint8_t mid[1 << 20];
        size_t m = 0;
        memcpy(mid + m, d + b.at, b.len);
        m += b.len;
        if (b.len && d[b.at + b.len - 1] != '\n')
            mid[m++] = '\n';
        memcpy(mid + m, d + a.at + a.len, b.at - a.at - a.len);
        m += b.at - a.at - a.len;
        memcpy(mid + m, d + a.at, a.len);
        m += a.len;
        return splice(d, n, a.at, b.at + b.len, mid, m, d, max);
    }
    }
}

static size_t mutate_tokens(uint8_t *d, size_t n, size_t max)
{
    static int idx[MAX_PIECES];
    int np = tokenize(d, n);
    unsigned op = rnd(8); /* identifiers and numbers twice as often as the rest */
    op = op < 4 ? op / 2 : op - 2;
    if (op == 0) { /* an identifier in another identifier's place */
        int k = pieces_of(np, 'i', idx);
        if (k == 0)
            return 0;
        Piece to = pieces[idx[rnd((unsigned)k)]];
        if (rnd(4) == 0) {
            const char *w = dict[rnd((unsigned)ndict)];
            return splice(d, n, to.at, to.at + to.len, w, strlen(w), d, max);
        }
        Piece from = pieces[idx[rnd((unsigned)k)]];
        return splice(d, n, to.at, to.at + to.len, d + from.at, from.len, d, max);
    }
    if (op == 1) { /* an interesting number in a number's place */
        int k = pieces_of(np, 'n', idx);
        if (k == 0)
            return 0;
        Piece to = pieces[idx[rnd((unsigned)k)]];
        const char *w = numbers[rnd(sizeof numbers / sizeof *numbers)];
        return splice(d, n, to.at, to.at + to.len, w, strlen(w), d, max);
    }
    if (np == 0)
        return 0;
    Piece at = pieces[rnd((unsigned)np)];
    char buf[300];
    const char *w = dict[rnd((unsigned)ndict)];
    int len = snprintf(buf, sizeof buf, "%s%s%s", rnd(2) ? " " : "", w, rnd(2) ? " " : "");
    if (len < 0 || (size_t)len >= sizeof buf)
        return 0;
    switch (op) {
    case 2: /* a dictionary token inserted before a token */
        return splice(d, n, at.at, at.at, buf, (size_t)len, d, max);
    case 3: /* a token replaced by a dictionary token */
        return splice(d, n, at.at, at.at + at.len, buf, (size_t)len, d, max);
    case 4: /* a token deleted */ return splice(d, n, at.at, at.at + at.len, "", 0, d, max);
    default: { /* a range of up to 8 tokens copied before another token */
        int i = (int)rnd((unsigned)np), j = i + (int)rnd(8);
        j = j < np ? j : np - 1;
        size_t from = pieces[i].at, len2 = pieces[j].at + pieces[j].len - from;
        static uint8_t copy[1 << 20];
        memcpy(copy, d + from, len2);
        return splice(d, n, at.at, at.at, copy, len2, d, max);
    }
    }
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
    if (plain || size >= sizeof scratch || rnd(8) == 0)
        return LLVMFuzzerMutate(data, size, max_size);
    if (npool > 0 && rnd(2) && !pool_has(hash_of(data, size))) {
        int i = (int)rnd((unsigned)npool);
        if (pool[i].size <= max_size) {
            memcpy(data, pool[i].data, pool[i].size);
            size = pool[i].size;
        }
    }
    if (size == 0)
        return LLVMFuzzerMutate(data, size, max_size);
    for (int tries = 0; tries < 4; tries++) {
        size_t n =
            rnd(3) == 0 ? mutate_lines(data, size, max_size) : mutate_tokens(data, size, max_size);
        if (n > 0)
            return n;
    }
    return LLVMFuzzerMutate(data, size, max_size);
}

/* The top-level items of d: each from a line that starts in column 0 with neither
 * `}` nor a comment to the next such line. */
static int split_items(const uint8_t *d, size_t n, Piece *items)
{
    int nl = split_lines(d, n), k = 0;
    for (int i = 0; i < nl; i++) {
        uint8_t c = lines[i].len ? d[lines[i].at] : '\n';
        bool starts = !strchr(" \t\r\n}#)]", c);
        if (starts || k == 0)
            items[k++] = lines[i];
        else
            items[k - 1].len = lines[i].at + lines[i].len - items[k - 1].at;
    }
    return k;
}

/* Three times in four, a top-level item of d2 (a model, a function, the train block)
 * inserted before one of d1 or in its place; else lines [a, b) of d1 replaced by
 * lines [c, e) of d2.  Plain: a byte-level crossover, d1's start and d2's end. */
size_t LLVMFuzzerCustomCrossOver(const uint8_t *d1, size_t s1, const uint8_t *d2, size_t s2,
                                 uint8_t *out, size_t max_out, unsigned int seed)
{
    static Piece items[MAX_PIECES];
    rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
    if (plain || s1 >= sizeof scratch || s2 >= sizeof scratch) {
        size_t a = rnd((unsigned)s1 + 1), c = rnd((unsigned)s2 + 1);
        size_t n = a + (s2 - c) < max_out ? a + (s2 - c) : max_out;
        memcpy(out, d1, a < n ? a : n);
        if (n > a)
            memcpy(out + a, d2 + c, n - a);
        return n;
    }
    Piece a, c;
    if (rnd(4)) {
        int n2 = split_items(d2, s2, items);
        c = n2 ? items[rnd((unsigned)n2)] : (Piece){0, 0, 0};
        int n1 = split_items(d1, s1, items);
        a = n1 ? items[rnd((unsigned)n1)] : (Piece){0, 0, 0};
    } else {
        int n2 = split_lines(d2, s2);
        c = n2 ? lines[rnd((unsigned)n2)] : (Piece){0, 0, 0};
        for (int k = (int)rnd(4); k > 0 && c.at + c.len < s2; k--) {
            const uint8_t *nl = memchr(d2 + c.at + c.len, '\n', s2 - c.at - c.len);
            c.len = (nl ? (size_t)(nl - d2) + 1 : s2) - c.at;
        }
        int n1 = split_lines(d1, s1);
        a = n1 ? lines[rnd((unsigned)n1)] : (Piece){0, 0, 0};
    }
    size_t b = rnd(2) ? a.at : a.at + a.len; /* insert, or replace a */
    if (a.at + c.len + (s1 - b) > max_out)
        return 0;
    memcpy(out, d1, a.at);
    memcpy(out + a.at, d2 + c.at, c.len);
    memcpy(out + a.at + c.len, d1 + b, s1 - b);
    return a.at + c.len + (s1 - b);
}
