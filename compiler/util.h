/* util: allocation that never returns NULL, arenas, growable arrays, strings.
 *
 * The compiler treats running out of memory as fatal: xmalloc prints one line and
 * exits with status 1 (never a crash).  Arena memory is owned by the arena and freed
 * all at once with arena_free. */
#ifndef NND_UTIL_H
#define NND_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define NND_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define NND_MIN(a, b) ((a) < (b) ? (a) : (b))
#define NND_MAX(a, b) ((a) > (b) ? (a) : (b))

#if defined(__GNUC__)
#define NND_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define NND_NORETURN __attribute__((noreturn))
#else
#define NND_PRINTF(f, a)
#define NND_NORETURN
#endif

NND_NORETURN void nnd_fatal(const char *fmt, ...) NND_PRINTF(1, 2);
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Returns a malloc'd string; the caller owns it. */
char *xasprintf(const char *fmt, ...) NND_PRINTF(1, 2);

/* FNV-1a, 64 bits, over n bytes, continuing from h (start: FNV_OFFSET). */
#define FNV_OFFSET 1469598103934665603ull
uint64_t fnv1a(uint64_t h, const void *p, size_t n);
/* The same over s and its terminating 0 (NULL hashes as ""). */
uint64_t fnv1a_str(uint64_t h, const char *s);
char *xvasprintf(const char *fmt, va_list ap);

/* Arena: bump allocation in chunks; everything is freed by arena_free. */
typedef struct ArenaChunk ArenaChunk;
typedef struct Arena {
    ArenaChunk *head;
} Arena;

void *arena_alloc(Arena *a, size_t n); /* zeroed, 16-byte aligned */
char *arena_strdup(Arena *a, const char *s);
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_printf(Arena *a, const char *fmt, ...) NND_PRINTF(2, 3);
void arena_free(Arena *a);

/* Growable array of any element type: struct { T *v; int n, cap; }. */
#define VEC(T)                                                                                     \
    struct {                                                                                       \
        T *v;                                                                                      \
        int n, cap;                                                                                \
    }
#define vec_push(vec, x)                                                                           \
    do {                                                                                           \
        if ((vec)->n == (vec)->cap) {                                                              \
            (vec)->cap = (vec)->cap ? 2 * (vec)->cap : 8;                                          \
            (vec)->v = xrealloc((vec)->v, (size_t)(vec)->cap * sizeof(*(vec)->v));                 \
        }                                                                                          \
        (vec)->v[(vec)->n++] = (x);                                                                \
    } while (0)
#define vec_free(vec)                                                                              \
    do {                                                                                           \
        free((vec)->v);                                                                            \
        (vec)->v = NULL;                                                                           \
        (vec)->n = (vec)->cap = 0;                                                                 \
    } while (0)

typedef VEC(int) IntVec;
typedef VEC(double) DoubleVec;
typedef VEC(const char *) StrVec;

/* Growable byte string. */
typedef struct StrBuf {
    char *s;
    size_t len, cap;
} StrBuf;
void sb_putc(StrBuf *b, char c);
void sb_puts(StrBuf *b, const char *s);
void sb_putn(StrBuf *b, const char *s, size_t n);
void sb_printf(StrBuf *b, const char *fmt, ...) NND_PRINTF(2, 3);
void sb_free(StrBuf *b);

/* Edit distance with swaps of neighbours (optimal string alignment), capped:
 * returns a value > cap as soon as it exceeds cap; letters compared without case
 * when fold_case. */
int edit_distance(const char *a, const char *b, int cap, bool fold_case);

/* Reads a whole regular file of at most max bytes; returns a malloc'd
 * NUL-terminated buffer and its length, or NULL with the reason in *why ("it is a
 * directory", "it is too large", strerror).  Never blocks on a FIFO. */
char *read_file(const char *path, size_t max, size_t *len, const char **why);

/* Seconds on a monotonic clock. */
double clock_seconds(void);

/* Prints a double so that it reads back to the same value, shortest form. */
void format_double(char *buf, size_t size, double v);

#endif
