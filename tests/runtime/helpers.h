/* helpers: file builders, error checks and a test allocator for the runtime tests.
 *
 * Files are written under NND_TEST_TMP; each test program prefixes its own names so
 * programs can run in parallel.  Failed writes fail the test (cmocka). */
#ifndef NND_TEST_HELPERS_H
#define NND_TEST_HELPERS_H

#include "nnd_train.h" /* and so nnd_abi.h, nnd_runtime.h */

#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer (malloc'd; bytes_free releases it). */
typedef struct Bytes {
    unsigned char *p;
    size_t n, cap;
} Bytes;

void bytes_put(Bytes *b, const void *p, size_t n);
void bytes_u8(Bytes *b, unsigned v);
void bytes_be32(Bytes *b, uint32_t v);
void bytes_le(Bytes *b, uint64_t v, int size);
void bytes_be(Bytes *b, uint64_t v, int size);
void bytes_str(Bytes *b, const char *s);
void bytes_free(Bytes *b);

/* NND_TEST_TMP "/" name, in one of 8 rotating static buffers. */
const char *tmp_path(const char *name);
void write_file(const char *path, const void *p, size_t n);
/* Writes p as one gzip member; append adds another member to the file. */
void write_gz(const char *path, const void *p, size_t n, int append);
/* Gzip-compresses p into a malloc'd buffer (the caller frees it). */
unsigned char *gzip_bytes(const void *p, size_t n, size_t *out_n);

/* Asserts rc == -1 and that the message starts with "path:" and contains needle. */
#define assert_load_error(rc, err, path, needle)                                                   \
    check_load_error((rc), (err), (path), (needle), __FILE__, __LINE__)
void check_load_error(int rc, const NndErr *err, const char *path, const char *needle,
                      const char *file, int line);

/* An allocator over malloc that counts calls, live blocks and the largest request,
 * and fails call number fail_at (1-based; 0: never). */
typedef struct TestAlloc {
    long calls;
    long fail_at;
    long live;
    size_t max_size;
    NndAllocator saved;
} TestAlloc;

void test_alloc_install(TestAlloc *ta, long fail_at);
void test_alloc_remove(TestAlloc *ta);

/* Thread pools for the tests that run on 1 to TEST_THREADS threads: pools[k] has k
 * threads, pools[0] is NULL (no pool).  setup_pools and teardown_pools are cmocka
 * group fixtures. */
enum { TEST_THREADS = 4 };
extern NndPool *pools[TEST_THREADS + 1];
int setup_pools(void **state);
int teardown_pools(void **state);

#endif
