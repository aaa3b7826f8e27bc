/* robustness: hostile inputs for `nnd check` must end in diagnostics, never a crash.
 *
 *   golden_robustness NND WORKDIR STDLIB EXAMPLES_DIR
 *
 * Writes each input to WORKDIR, runs `nnd check` on it (NND_STDLIB=STDLIB,
 * NO_COLOR=1) and requires: no signal, exit status 0 or 1 (1 exactly where the
 * input is wrong, with something on stderr), no sanitizer report.  Inputs: deep
 * nesting, very long expressions, identifiers, numbers and strings, NUL bytes,
 * invalid UTF-8, seeded random binary files, seeded random token soups, seeded
 * mutants of the examples and of the standard library, an empty file, a directory,
 * a missing file, a FIFO, /dev/zero and a file over the size limit.  Everything is deterministic;
 * NND_ROBUSTNESS_SEED changes the seed and NND_ROBUSTNESS_COUNT the number of random files and of
 * mutants. The input of a failing case is kept in WORKDIR for reproduction. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { TIMEOUT_S = 60 }; /* per run; generous for sanitizer builds on slow machines */
/* 50 errors at most, each a message, a clipped source line and notes */
enum { MAX_STDERR = 64 << 10 };

typedef enum Expect {
    EXPECT_ERROR, /* exit 1 with diagnostics */
    EXPECT_OK, /* exit 0, nothing on stderr */
    EXPECT_ANY, /* either, consistently */
} Expect;

static const char *nnd, *workdir, *stdlib_dir;
static int nfail, nrun;

/* ---- a small growable buffer ---- */

typedef struct Buf {
    char *p;
    size_t n, cap;
} Buf;

static void buf_put(Buf *b, const void *s, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            fprintf(stderr, "robustness: out of memory\n");
            exit(2);
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void buf_puts(Buf *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_rep(Buf *b, const char *s, size_t times)
{
    for (size_t i = 0; i < times; i++)
        buf_puts(b, s);
}

static void buf_fill(Buf *b, char c, size_t times)
{
    for (size_t i = 0; i < times; i++)
        buf_put(b, &c, 1);
}

/* ---- deterministic random numbers (splitmix64) ---- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t rnd_below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

/* ---- running nnd ---- */

static bool write_file(const char *path, const Buf *b)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = fwrite(b->p ? b->p : "", 1, b->n, f) == b->n;
    return fclose(f) == 0 && ok;
}

static Buf read_all(const char *path)
{
    Buf b = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return b;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_put(&b, chunk, n);
    fclose(f);
    buf_put(&b, "", 1);
    b.n--;
    return b;
}

static bool contains(const Buf *b, const char *needle)
{
    return b->p && strstr(b->p, needle) != NULL;
}

static void fail(const char *name, const char *input, const Buf *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL %s: ", name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n  input: %s\n", input);
    va_end(ap);
    if (err && err->p) {
        /* the first lines of what nnd said, shortened */
        size_t shown = 0;
        int lines = 0;
        for (const char *p = err->p; *p && lines < 12 && shown < 2000; p++, shown++) {
            fputc(*p, stderr);
            lines += *p == '\n';
        }
        if (shown && err->p[shown - 1] != '\n')
            fputc('\n', stderr);
    }
    nfail++;
}

/* Runs `nnd check path` and checks the outcome; removes the input when it passed
 * and keep_input is false. */
static void check_path(const char *name, const char *path, Expect expect, bool keep_input)
{
    char errpath[4096];
    snprintf(errpath, sizeof errpath, "%s/%s.stderr", workdir, name);
    nrun++;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        perror("robustness: fork");
        exit(2);
    }
    if (pid == 0) {
        int out = open("/dev/null", O_WRONLY);
        int err = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (out < 0 || err < 0)
            _exit(120);
        dup2(out, 1);
        dup2(err, 2);
        close(out);
        close(err);
        alarm(TIMEOUT_S);
        execl(nnd, "nnd", "check", path, (char *)NULL);
        _exit(121);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            perror("robustness: waitpid");
            exit(2);
        }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (secs > 1)
        fprintf(stderr, "robustness: %s took %.1f s\n", name, secs);
    Buf err = read_all(errpath);
    int before = nfail;
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        fail(name, path, &err, "killed by signal %d%s", sig, sig == SIGALRM ? " (timed out)" : "");
    } else if (!WIFEXITED(status)) {
        fail(name, path, &err, "did not exit normally");
    } else {
        int rc = WEXITSTATUS(status);
        bool sanitizer = contains(&err, "Sanitizer") || contains(&err, "runtime error:");
        if (rc == 120 || rc == 121)
            fail(name, path, &err, "could not run %s", nnd);
        else if (sanitizer)
            fail(name, path, &err, "sanitizer report (exit status %d)", rc);
        else if (rc != 0 && rc != 1)
            fail(name, path, &err, "exit status %d, expected 0 or 1", rc);
        else if (err.n > MAX_STDERR)
            fail(name, path, &err,
                 "%zu bytes of diagnostics (at most %d: long names are quoted "
                 "by their ends)",
                 err.n, MAX_STDERR);
        else if (rc == 1 && (err.n == 0 || !contains(&err, "error")))
            fail(name, path, &err, "exit status 1 without an error message");
        else if (rc == 0 && contains(&err, ": error: "))
            fail(name, path, &err, "exit status 0 after an error message");
        else if (expect == EXPECT_ERROR && rc != 1)
            fail(name, path, &err, "exit status %d, expected 1 with diagnostics", rc);
        else if (expect == EXPECT_OK && (rc != 0 || err.n != 0))
            fail(name, path, &err, "exit status %d, expected 0 and no output", rc);
    }
    free(err.p);
    if (nfail == before) {
        unlink(errpath);
        if (!keep_input)
            unlink(path);
    }
}

/* Writes the input to WORKDIR/name.nnd and checks it. */
static void check_input(const char *name, const Buf *input, Expect expect)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.nnd", workdir, name);
    if (!write_file(path, input)) {
        fprintf(stderr, "robustness: cannot write %s: %s\n", path, strerror(errno));
        exit(2);
    }
    check_path(name, path, expect, false);
}

/* ---- the inputs ---- */

enum { MB = 1 << 20 };

static void fixed_inputs(void)
{
    Buf b = {0};

    buf_puts(&b, "let a = ");
    buf_fill(&b, '(', 10000);
    buf_puts(&b, "1");
    buf_fill(&b, ')', 10000);
    buf_puts(&b, "\n");
    check_input("deep_parens", &b, EXPECT_ERROR);

    b.n = 0;
    buf_puts(&b, "let a = ");
    buf_fill(&b, '[', 10000);
    check_input("deep_brackets_unclosed", &b, EXPECT_ERROR);

    b.n = 0;
    buf_puts(&b, "let a = ");
    buf_fill(&b, '-', 100000);
    buf_puts(&b, "1\n");
    check_input("deep_unary", &b, EXPECT_ERROR);

    b.n = 0;
    buf_puts(&b, "let a = 1");
    buf_rep(&b, "+1", 99999);
    buf_puts(&b, "\n");
    check_input("long_sum", &b, EXPECT_ERROR);

    b.n = 0;
    buf_puts(&b, "let a = 2");
    buf_rep(&b, "^2", 99999);
    buf_puts(&b, "\n");
    check_input("long_power", &b, EXPECT_ERROR);

    b.n = 0;
    buf_puts(&b, "fn f(x) = x + ");
    buf_fill(&b, 'q', MB);
    buf_puts(&b, "\n");
    check_input("long_unknown_name", &b, EXPECT_ERROR);

    b.n = 0;
    buf_puts(&b, "let ");
    buf_fill(&b, 'q', MB);
    buf_puts(&b, " = 1\n");
    check_input("long_name", &b, EXPECT_OK);

    b.n = 0;
    buf_puts(&b, "let a = ");
    buf_fill(&b, '9', MB);
    buf_puts(&b, "\n");
    check_input("long_number", &b, EXPECT_ERROR);

    b.n = 0;
    buf_puts(&b, "let a = 0.");
    buf_fill(&b, '0', MB);
    buf_puts(&b, "1e5\n");
    check_input("long_fraction", &b, EXPECT_OK);

    b.n = 0;
    buf_puts(&b, "let a = \"");
    buf_fill(&b, 's', MB);
    buf_puts(&b, "\"\nlet b = = 1\n");
    check_input("long_string", &b, EXPECT_ERROR);

    b.n = 0;
    buf_puts(&b, "let a = \"");
    buf_rep(&b, "\\q", MB / 2);
    buf_puts(&b, "\"\n");
    check_input("long_string_bad_escapes", &b, EXPECT_ERROR);

    b.n = 0;
    buf_puts(&b, "let a = \"");
    buf_fill(&b, 's', MB);
    check_input("long_string_unterminated", &b, EXPECT_ERROR);

    b.n = 0;
    buf_puts(&b, "# ");
    buf_fill(&b, 'c', MB);
    buf_puts(&b, "\nlet b = = 1\n");
    check_input("long_comment", &b, EXPECT_ERROR);

    /* Kept small: the scanner rescans a token at every NUL byte in it, so a run of n
     * NULs costs O(n^2) (64 KiB of them take seconds). */
    b.n = 0;
    buf_fill(&b, '\0', 8192);
    check_input("nul_only", &b, EXPECT_ERROR);

    b.n = 0;
    buf_puts(&b, "let a = 1\n");
    for (int i = 0; i < 4096; i++) {
        unsigned char c = (unsigned char)(0x80 + rnd_below(0x80));
        buf_put(&b, &c, 1);
        if (i % 97 == 0)
            buf_puts(&b, "\n# \xff\xfe comment \xc3\n\"\xe2\x82\" ");
    }
    buf_puts(&b, "\n");
    check_input("invalid_utf8_runs", &b, EXPECT_ERROR);

    b.n = 0;
    buf_puts(&b, "let a = \"");
    buf_rep(&b, "\xc0\xaf\xed\xa0\x80\xf8\x88\x80\x80\x80", 1000); /* overlong, surrogate, 5-byte */
    buf_puts(&b, "\"\n");
    check_input("invalid_utf8_forms", &b, EXPECT_ERROR);

    b.n = 0;
    buf_rep(&b, "\r\n\t\v\f \\\n", 1000);
    buf_puts(&b, "let a = 1 \\");
    check_input("odd_whitespace", &b, EXPECT_ANY);

    b.n = 0;
    check_input("empty", &b, EXPECT_OK);

    b.n = 0;
    buf_rep(&b, "}", 1000);
    buf_rep(&b, ")]", 1000);
    check_input("closers_only", &b, EXPECT_ERROR);

    b.n = 0;
    for (int i = 0; i < 2000; i++)
        buf_puts(&b, "let = \n");
    check_input("many_errors", &b, EXPECT_ERROR);

    b.n = 0;
    buf_puts(&b, "use \"");
    buf_puts(&b, workdir);
    buf_puts(&b, "/self_use.nnd\"\nfn f(x) = x\n");
    {
        char path[4096];
        snprintf(path, sizeof path, "%s/self_use.nnd", workdir);
        write_file(path, &b);
        check_path("self_use", path, EXPECT_ERROR, false);
    }

    b.n = 0;
    buf_puts(&b, "use \"");
    buf_fill(&b, 'p', 8192);
    buf_puts(&b, ".nnd\"\n");
    check_input("long_use_path", &b, EXPECT_ERROR);

    /* a directory, a missing file */
    check_path("directory", workdir, EXPECT_ERROR, true);
    {
        char path[4096];
        snprintf(path, sizeof path, "%s/does-not-exist.nnd", workdir);
        unlink(path);
        check_path("missing_file", path, EXPECT_ERROR, true);
    }
    /* files that are not regular: a FIFO with no writer must not block, a device
     * that never ends must not be read without bound; and a file over the 16 MiB
     * limit is refused as it is read */
    {
        char path[4096];
        snprintf(path, sizeof path, "%s/fifo.nnd", workdir);
        unlink(path);
        if (mkfifo(path, 0600) != 0) {
            fprintf(stderr, "robustness: mkfifo %s: %s\n", path, strerror(errno));
            exit(2);
        }
        check_path("fifo", path, EXPECT_ERROR, false);
        check_path("dev_zero", "/dev/zero", EXPECT_ERROR, true);
    }
    b.n = 0;
    buf_fill(&b, '#', 17 * MB);
    check_input("over_16_mib", &b, EXPECT_ERROR);

    /* inlining that doubles at each of 30 levels: 2^30 nodes unless stopped */
    b.n = 0;
    buf_puts(&b, "use nn\nuse optim\nfn f0(x) = x * 2 + 1\n");
    for (int i = 1; i <= 30; i++) {
        char line[128];
        snprintf(line, sizeof line, "fn f%d(x) = f%d(x) + f%d(x * 0.5)\n", i, i - 1, i - 1);
        buf_puts(&b, line);
    }
    buf_puts(&b, "model M {\n    fc = Dense(1, 1)\n    fn forward(x) = f30(fc(x))\n}\n"
                 "train {\n    data train = tensors(x = [[1], [2]], y = [[2], [4]])\n"
                 "    net = M()\n    loss = mse(net(x), y)\n    opt = SGD()\n}\n");
    check_input("inlining_blowup", &b, EXPECT_ERROR);
    free(b.p);
}

static void random_binary(int count)
{
    Buf b = {0};
    for (int i = 0; i < count; i++) {
        b.n = 0;
        int flavour = i % 4; /* bytes; printable ASCII; high bytes; mostly blanks */
        /* High bytes are kept to 4 KiB: the scanner splits a run of them into
         * diagnostics with yyless, rescanning the rest of the run each time, so a
         * long run costs O(n^2). */
        size_t n = rnd_below((flavour == 2 ? 4 : 64) * 1024 + 1);
        for (size_t k = 0; k < n; k++) {
            unsigned char c = (unsigned char)rnd();
            if (flavour == 1)
                c = (unsigned char)(0x20 + c % 0x5f);
            else if (flavour == 2)
                c |= 0x80;
            else if (flavour == 3 && c % 8)
                c = " \n\t#(["[c % 6];
            buf_put(&b, &c, 1);
        }
        char name[64];
        snprintf(name, sizeof name, "random_%03d", i);
        /* an empty or all-blank file is a valid, empty program */
        check_input(name, &b, n == 0 || flavour == 3 ? EXPECT_ANY : EXPECT_ERROR);
    }
    free(b.p);
}

/* Random sequences of the language's tokens: they get past the scanner and exercise
 * the parser's recovery and sema. */
static void random_tokens(int count)
{
    static const char *const toks[] = {
        "use",        "nn",        "optim",  "let",  "fn",     "layer", "model",  "param",
        "state",      "optimizer", "train",  "data", "freeze", "eval",  "every",  "save",
        "checkpoint", "if",        "then",   "else", "and",    "or",    "not",    "true",
        "false",      "from",      "except", "to",   "keep",   "x",     "y",      "w",
        "g",          "t",         "net",    "loss", "opt",    "batch", "epochs", "steps",
        "Dense",      "Adam",      "SGD",    "mse",  "relu",   "mean",  "sum",    "reshape",
        "tensors",    "idx",       "B",      "N",    "fan_in", "*S",    "f32",    "i32",
        "0",          "1",         "2",      "-1",   "1e-3",   "0.5",   "\"s\"",  "->",
        "==",         "!=",        "<=",     ">=",   "+=",     "-=",    "*=",     "/=",
        "+",          "-",         "*",      "/",    "^",      "@",     "<",      ">",
        "=",          ",",         ":",      ".",    "(",      ")",     "[",      "]",
        "{",          "}",         "\n",     "\n",   "\n",     ";",     " ",      " ",
        " ",
    };
    const size_t ntok = sizeof toks / sizeof toks[0];
    Buf b = {0};
    for (int i = 0; i < count; i++) {
        b.n = 0;
        size_t n = rnd_below(600);
        for (size_t k = 0; k < n; k++) {
            buf_puts(&b, toks[rnd_below(ntok)]);
            buf_puts(&b, " ");
        }
        char name[64];
        snprintf(name, sizeof name, "tokens_%03d", i);
        check_input(name, &b, EXPECT_ANY);
    }
    free(b.p);
}

static void add_file(Buf *b, const char *path)
{
    Buf f = read_all(path);
    if (f.p)
        buf_put(b, f.p, f.n);
    free(f.p);
}

/* The .nnd files of a directory, sorted, so the inputs do not depend on readdir. */
static int list_nnd(const char *dir, char ***out)
{
    DIR *d = opendir(dir);
    int n = 0;
    *out = NULL;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".nnd") != 0)
            continue;
        *out = realloc(*out, sizeof(char *) * (size_t)(n + 1));
        size_t need = strlen(dir) + l + 2;
        (*out)[n] = malloc(need);
        snprintf((*out)[n], need, "%s/%s", dir, e->d_name);
        n++;
    }
    closedir(d);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp((*out)[j - 1], (*out)[j]) > 0; j--) {
            char *t = (*out)[j];
            (*out)[j] = (*out)[j - 1];
            (*out)[j - 1] = t;
        }
    return n;
}

static void mutants(const char *examples_dir, int count)
{
    char **ex, **std;
    int nex = list_nnd(examples_dir, &ex), nstd = list_nnd(stdlib_dir, &std);
    /* sources: all examples concatenated, then each example and stdlib file alone
     * (alone, a mutant can get through sema into elaboration) */
    int nsrc = 1 + nex + nstd;
    Buf *src = calloc((size_t)nsrc, sizeof *src);
    for (int i = 0; i < nex; i++) {
        add_file(&src[0], ex[i]);
        buf_puts(&src[0], "\n");
        add_file(&src[1 + i], ex[i]);
    }
    for (int i = 0; i < nstd; i++)
        add_file(&src[1 + nex + i], std[i]);
    if (nex == 0 || src[0].n == 0) {
        fprintf(stderr, "robustness: no examples in %s\n", examples_dir);
        nfail++;
    }
    Buf b = {0};
    for (int i = 0; i < count && src[0].n; i++) {
        /* half the mutants come from the concatenation */
        const Buf *s = i % 2 == 0 ? &src[0] : &src[1 + rnd_below((size_t)(nsrc - 1))];
        if (s->n == 0)
            s = &src[0];
        b.n = 0;
        buf_put(&b, s->p, s->n);
        int edits = 1 + (int)rnd_below(8);
        for (int k = 0; k < edits && b.n > 1; k++) {
            size_t at = rnd_below(b.n);
            switch (rnd_below(3)) {
            case 0: /* flip one byte to a random value */ b.p[at] = (char)rnd(); break;
            case 1: /* flip one bit */ b.p[at] ^= (char)(1u << rnd_below(8)); break;
            default: { /* delete a short run */
                size_t len = 1 + rnd_below(16);
                if (at + len > b.n)
                    len = b.n - at;
                memmove(b.p + at, b.p + at + len, b.n - at - len);
                b.n -= len;
                break;
            }
            }
        }
        char name[64];
        snprintf(name, sizeof name, "mutant_%03d", i);
        check_input(name, &b, EXPECT_ANY);
    }
    for (int i = 0; i < nsrc; i++)
        free(src[i].p);
    free(src);
    for (int i = 0; i < nex; i++)
        free(ex[i]);
    for (int i = 0; i < nstd; i++)
        free(std[i]);
    free(ex);
    free(std);
    free(b.p);
}

/* Sanitizers exit with status 1 by default, like a diagnostic: give them their own
 * statuses so a report cannot pass for an error message. */
static void sanitizer_env(const char *var, const char *opts)
{
    const char *old = getenv(var);
    char buf[4096];
    snprintf(buf, sizeof buf, "%s%s%s", old && *old ? old : "", old && *old ? ":" : "", opts);
    setenv(var, buf, 1);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s NND WORKDIR STDLIB EXAMPLES_DIR\n", argv[0]);
        return 2;
    }
    nnd = argv[1];
    workdir = argv[2];
    stdlib_dir = argv[3];
    if (mkdir(workdir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "robustness: cannot create %s: %s\n", workdir, strerror(errno));
        return 2;
    }
    setenv("NND_STDLIB", stdlib_dir, 1);
    setenv("NO_COLOR", "1", 1);
    sanitizer_env("ASAN_OPTIONS", "exitcode=86");
    sanitizer_env("UBSAN_OPTIONS", "exitcode=87:print_stacktrace=1");
    sanitizer_env("LSAN_OPTIONS", "exitcode=88");
    const char *seed = getenv("NND_ROBUSTNESS_SEED");
    rng_state = seed && *seed ? strtoull(seed, NULL, 0) : 20260101;
    const char *cnt = getenv("NND_ROBUSTNESS_COUNT");
    int count = cnt && *cnt ? atoi(cnt) : 200;

    fixed_inputs();
    random_binary(count);
    random_tokens(count / 2);
    mutants(argv[4], count);

    printf("robustness: %d runs, %d failed\n", nrun, nfail);
    return nfail ? 1 : 0;
}
