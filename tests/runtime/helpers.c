#define _POSIX_C_SOURCE 200809L

#include "helpers.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* cmocka.h needs the headers above, included before it */
#include <cmocka.h>

void bytes_put(Bytes *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, p, n);
    b->n += n;
}

void bytes_u8(Bytes *b, unsigned v)
{
    unsigned char c = (unsigned char)v;
    bytes_put(b, &c, 1);
}

void bytes_be32(Bytes *b, uint32_t v) { bytes_be(b, v, 4); }

void bytes_le(Bytes *b, uint64_t v, int size)
{
    for (int i = 0; i < size; i++)
        bytes_u8(b, (unsigned)(v >> (8 * i)) & 0xff);
}

void bytes_be(Bytes *b, uint64_t v, int size)
{
    for (int i = size - 1; i >= 0; i--)
        bytes_u8(b, (unsigned)(v >> (8 * i)) & 0xff);
}

void bytes_str(Bytes *b, const char *s) { bytes_put(b, s, strlen(s)); }

void bytes_free(Bytes *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

const char *tmp_path(const char *name)
{
    static char bufs[8][512];
    static int next;
    char *buf = bufs[next++ % 8];
    mkdir(NND_TEST_TMP, 0777); /* the test function names it but may not create it */
    snprintf(buf, sizeof bufs[0], "%s/%s", NND_TEST_TMP, name);
    return buf;
}

void write_file(const char *path, const void *p, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    if (n)
        assert_int_equal(fwrite(p, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

unsigned char *gzip_bytes(const void *p, size_t n, size_t *out_n)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, (uLong)n);
    unsigned char *out = malloc(cap);
    assert_non_null(out);
    zs.next_in = (Bytef *)p;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_n = zs.total_out;
    deflateEnd(&zs);
    return out;
}

void write_gz(const char *path, const void *p, size_t n, int append)
{
    size_t gn;
    unsigned char *g = gzip_bytes(p, n, &gn);
    FILE *fp = fopen(path, append ? "ab" : "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(g, 1, gn, fp), gn);
    assert_int_equal(fclose(fp), 0);
    free(g);
}

void check_load_error(int rc, const NndErr *err, const char *path, const char *needle,
                      const char *file, int line)
{
    size_t plen = strlen(path);
    int ok = rc == -1 && strncmp(err->msg, path, plen) == 0 && err->msg[plen] == ':' &&
             strstr(err->msg, needle) != NULL;
    if (!ok)
        fail_msg("%s:%d: expected -1 and \"%s: ...%s...\", got %d and \"%s\"", file, line, path,
                 needle, rc, rc ? err->msg : "");
}

static void *test_alloc_fn(size_t size, void *ctx)
{
    TestAlloc *ta = ctx;
    ta->calls++;
    if (size > ta->max_size)
        ta->max_size = size;
    if (ta->calls == ta->fail_at)
        return NULL;
    void *p = NULL;
    if (posix_memalign(&p, 64, size) != 0)
        return NULL;
    ta->live++;
    return p;
}

static void test_free_fn(void *p, void *ctx)
{
    TestAlloc *ta = ctx;
    ta->live--;
    free(p);
}

void test_alloc_install(TestAlloc *ta, long fail_at)
{
    NndAllocator a = {test_alloc_fn, test_free_fn, ta};
    ta->calls = 0;
    ta->fail_at = fail_at;
    ta->live = 0;
    ta->max_size = 0;
    ta->saved = nnd_set_allocator(&a);
}

void test_alloc_remove(TestAlloc *ta) { nnd_set_allocator(&ta->saved); }

NndPool *pools[TEST_THREADS + 1];

int setup_pools(void **state)
{
    (void)state;
    NndErr err;
    for (int k = 1; k <= TEST_THREADS; k++)
        if (!(pools[k] = nnd_pool_create(k, &err)))
            return -1;
    return 0;
}

int teardown_pools(void **state)
{
    (void)state;
    for (int k = 1; k <= TEST_THREADS; k++) {
        nnd_pool_destroy(pools[k]);
        pools[k] = NULL;
    }
    return 0;
}
