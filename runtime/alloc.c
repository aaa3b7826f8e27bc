/* alloc: error messages and the one allocation hook behind every runtime buffer.
 *
 * The hook is process-wide and not synchronised: install it before other threads
 * allocate, and only while nothing allocated by the previous hook is still live
 * (or with a hook whose free can release that memory too). */
#define _POSIX_C_SOURCE 200809L

#include "nnd_runtime.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int nnd_err(NndErr *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* 64 bytes: a cache line, and enough for any vector load the JIT emits. */
enum { ALIGNMENT = 64 };

static void *default_alloc(size_t size, void *ctx)
{
    void *p = NULL;
    /* posix_memalign, unlike C11 aligned_alloc, does not require size to be a
     * multiple of the alignment. */
    if (posix_memalign(&p, ALIGNMENT, size) != 0)
        return NULL;
    return p;
}

static void default_free(void *p, void *ctx)
{
    free(p);
}

static NndAllocator allocator = {default_alloc, default_free, NULL};

NndAllocator nnd_set_allocator(const NndAllocator *a)
{
    NndAllocator old = allocator;
    if (a && a->alloc && a->free)
        allocator = *a;
    else
        allocator = (NndAllocator){default_alloc, default_free, NULL};
    return old;
}

/* A zero-byte request still gets a distinct pointer, so NULL always means failure. */
void *nnd_alloc(size_t size)
{
    return allocator.alloc(size ? size : 1, allocator.ctx);
}

void nnd_free(void *p)
{
    if (p)
        allocator.free(p, allocator.ctx);
}
