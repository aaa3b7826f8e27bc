#include "util.h"

#include <ctype.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void nnd_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("nnd: fatal: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        nnd_fatal("out of memory (%zu bytes)", n);
    return p;
}

void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        nnd_fatal("out of memory (%zu x %zu bytes)", count, size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        nnd_fatal("out of memory (%zu bytes)", n);
    return q;
}

char *xstrndup(const char *s, size_t n)
{
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

char *xvasprintf(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        nnd_fatal("bad format string");
    char *s = xmalloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = xvasprintf(fmt, ap);
    va_end(ap);
    return s;
}

/* Arena chunks hold at least 64 KiB; larger requests get a chunk of their own. */
struct ArenaChunk {
    ArenaChunk *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
};

enum { ARENA_CHUNK = 64 * 1024 };

void *arena_alloc(Arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    ArenaChunk *c = a->head;
    if (!c || c->size - c->used < n) {
        size_t size = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        c = xmalloc(sizeof(ArenaChunk) + size);
        c->used = 0;
        c->size = size;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

char *arena_strndup(Arena *a, const char *s, size_t n)
{
    char *d = arena_alloc(a, n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *arena_strdup(Arena *a, const char *s) { return arena_strndup(a, s, strlen(s)); }

char *arena_printf(Arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *tmp = xvasprintf(fmt, ap);
    va_end(ap);
    char *s = arena_strdup(a, tmp);
    free(tmp);
    return s;
}

void arena_free(Arena *a)
{
    ArenaChunk *c = a->head;
    while (c) {
        ArenaChunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

static void sb_reserve(StrBuf *b, size_t extra)
{
    if (b->len + extra + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + extra + 1)
            cap *= 2;
        b->s = xrealloc(b->s, cap);
        b->cap = cap;
    }
}

void sb_putn(StrBuf *b, const char *s, size_t n)
{
    sb_reserve(b, n);
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

void sb_putc(StrBuf *b, char c) { sb_putn(b, &c, 1); }
void sb_puts(StrBuf *b, const char *s) { sb_putn(b, s, strlen(s)); }

void sb_printf(StrBuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = xvasprintf(fmt, ap);
    va_end(ap);
    sb_puts(b, s);
    free(s);
}

void sb_free(StrBuf *b)
{
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
}

int edit_distance(const char *a, const char *b, int cap, bool fold_case)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return cap + 1;
    if ((int)(la > lb ? la - lb : lb - la) > cap)
        return cap + 1;
    /* optimal string alignment: insertions, deletions, substitutions and swaps of
     * two neighbours (Dnese -> Dense) cost one each */
    int rows[3][65];
    int *pprev = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = (int)j;
#define CH(s, i) (fold_case ? tolower((unsigned char)(s)[i]) : (unsigned char)(s)[i])
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        int best = cur[0];
        for (size_t j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (CH(a, i - 1) != CH(b, j - 1));
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            int m = sub < del ? sub : del;
            m = m < ins ? m : ins;
            if (i > 1 && j > 1 && CH(a, i - 1) == CH(b, j - 2) && CH(a, i - 2) == CH(b, j - 1) &&
                pprev[j - 2] + 1 < m)
                m = pprev[j - 2] + 1;
            cur[j] = m;
            if (m < best)
                best = m;
        }
        if (best > cap)
            return cap + 1;
        int *tmp = pprev;
        pprev = prev;
        prev = cur;
        cur = tmp;
    }
#undef CH
    return prev[lb];
}

char *read_file(const char *path, size_t max, size_t *len, const char **why)
{
    /* O_NONBLOCK: a FIFO with no writer must not block the open; it is refused
     * below, like every file that is not a regular one (a device reads forever) */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        *why = strerror(errno);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        *why = S_ISDIR(st.st_mode) ? "it is a directory" : "it is not a regular file";
        close(fd);
        return NULL;
    }
    StrBuf b = {0};
    char chunk[65536];
    ssize_t n;
    bool big = false;
    while ((n = read(fd, chunk, sizeof chunk)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        if (b.len + (size_t)n > max) { /* the size is checked as it is read: files grow */
            big = true;
            break;
        }
        sb_putn(&b, chunk, (size_t)n);
    }
    int err = n < 0 ? errno : 0;
    close(fd);
    if (big || err) {
        sb_free(&b);
        *why = big ? "it is too large" : strerror(err);
        return NULL;
    }
    if (!b.s)
        sb_reserve(&b, 0), b.s[0] = 0;
    *len = b.len;
    return b.s;
}

void format_double(char *buf, size_t size, double v)
{
    if (v == (double)(long long)v && v > -1e15 && v < 1e15) {
        snprintf(buf, size, "%lld", (long long)v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

double clock_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

uint64_t fnv1a_str(uint64_t h, const char *s)
{
    return fnv1a(h, s ? s : "", s ? strlen(s) + 1 : 1);
}
