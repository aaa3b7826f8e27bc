/* alloc: error messages and the one allocation hook behind every runtime buffer.
 *
 * The hook is process-wide and not synchronised: install it before other threads
 * allocate, and only while nothing allocated by the previous hook is still live
 * (or with a hook whose free can release that memory too). */
#define _DEFAULT_SOURCE /* madvise hints */
#define _POSIX_C_SOURCE 200809L

#include "nnd_runtime.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

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

enum { HUGE_PAGE = 2 << 20, PAGE = 4096 };

static void *default_alloc(size_t size, void *ctx)
{
    void *p = NULL;
    /* posix_memalign, unlike C11 aligned_alloc, does not require size to be a
     * multiple of the alignment.  Large buffers (data sets, big parameters) are
     * aligned to 2 MiB and asked to be backed by huge pages: batches gather rows
     * from all over a data set, and with 4 KiB pages nearly every row is a TLB miss.
     * Buffers of a page or more start on a page, as the compiler's arena plan puts its
     * own (PAGE_ALIGN in compiler/schedule.c): a loop's streams then share their offset
     * within a page, and no load of one waits on a store to another a cache line
     * below it (4K aliasing; Adam over 784-128-10's first weight: 0.37 -> 0.285 ns a
     * value on Zen 4). */
    size_t align = size >= 2 * (size_t)HUGE_PAGE ? HUGE_PAGE : size >= PAGE ? PAGE : ALIGNMENT;
    if (posix_memalign(&p, align, size) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    if (align == HUGE_PAGE)
        madvise(p, size, MADV_HUGEPAGE);
#endif
    return p;
}

static void default_free(void *p, void *ctx) { free(p); }

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
void *nnd_alloc(size_t size) { return allocator.alloc(size ? size : 1, allocator.ctx); }

void nnd_free(void *p)
{
    if (p)
        allocator.free(p, allocator.ctx);
}
