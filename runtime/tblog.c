/* tblog: training logs as TensorBoard event files and a CSV file.
 *
 * An event file is a sequence of TFRecords,
 *     u64 length, u32 masked CRC-32C of the length, data, u32 masked CRC-32C of data
 * (little-endian; mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8), each holding one
 * serialized tensorflow.Event protocol buffer:
 *     Event          { double wall_time = 1; int64 step = 2; string file_version = 3;
 *                      Summary summary = 5; }
 *     Summary        { repeated Value value = 1; }
 *     Summary.Value  { string tag = 1; float simple_value = 2; HistogramProto histo = 5; }
 *     HistogramProto { double min = 1, max = 2, num = 3, sum = 4, sum_squares = 5;
 *                      repeated double bucket_limit = 6 [packed]; repeated double bucket = 7
 * [packed]; } The first record carries file_version "brain.Event:2".  The few messages needed are
 * encoded by hand here.  Each record is written with one fwrite; nnd_log_flush pushes
 * what was written to the kernel, so a run killed between flushes leaves every flushed
 * record whole.  metrics.csv holds the same scalars, one per line:
 * step,epoch,tag,value. */
#define _POSIX_C_SOURCE 200809L

#include "nnd_runtime.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

struct NndLog {
    FILE *events, *csv;
    char *events_path;
};

/* ---- CRC-32C (Castagnoli), reflected, polynomial 0x82f63b78 ----
 * SSE 4.2's crc32 instruction computes this CRC, 8 bytes at a time: a histogram
 * record's 600 bytes took about 1 us a byte at a time through the table, which is
 * what other CPUs use. */

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_CRC_INSN 1

__attribute__((target("sse4.2"))) static uint32_t crc_insn(uint32_t c, const unsigned char *p,
                                                           size_t n)
{
    uint64_t c64 = c;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c64 = _mm_crc32_u64(c64, w);
    }
    c = (uint32_t)c64;
    for (; n > 0; n--, p++)
        c = _mm_crc32_u8(c, *p);
    return c;
}
#endif

static uint32_t crc_table[256];
static bool crc_by_insn;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_table[i] = c;
    }
#ifdef HAVE_CRC_INSN
    __builtin_cpu_init();
    crc_by_insn = __builtin_cpu_supports("sse4.2");
#endif
}

uint32_t nnd_crc32c(const void *data, size_t n)
{
    /* once per process, whichever thread or handle logs first */
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, crc_init);
    const unsigned char *p = data;
    uint32_t c = 0xffffffffu;
#ifdef HAVE_CRC_INSN
    if (crc_by_insn)
        return crc_insn(c, p, n) ^ 0xffffffffu;
#endif
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

static uint32_t masked_crc(const void *data, size_t n)
{
    uint32_t c = nnd_crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

/* ---- protocol buffer encoding ---- */

/* A growing byte buffer that starts in its own 1 KiB (a scalar's or a histogram's record fits:
 * no allocation per record); buf_free releases what it took from the heap. */
typedef struct Buf {
    unsigned char *p; /* NULL: small */
    size_t len, cap;
    int failed;
    unsigned char small[1024];
} Buf;

/* An empty buffer: the header only (= {0} would clear the 1 KiB as well, five times
 * a record). */
static void buf_init(Buf *b)
{
    b->p = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
}

static unsigned char *buf_data(Buf *b) { return b->p ? b->p : b->small; }
static const unsigned char *buf_bytes(const Buf *b) { return b->p ? b->p : b->small; }

static void buf_free(Buf *b) { free(b->p); }

static void put(Buf *b, const void *p, size_t n)
{
    if (b->failed)
        return;
    size_t cap = b->p ? b->cap : sizeof b->small;
    if (b->len + n > cap) {
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *q = b->p ? realloc(b->p, cap) : malloc(cap);
        if (!q) {
            b->failed = 1;
            return;
        }
        if (!b->p)
            memcpy(q, b->small, b->len);
        b->p = q;
        b->cap = cap;
    }
    memcpy(buf_data(b) + b->len, p, n);
    b->len += n;
}

static void put_varint(Buf *b, uint64_t v)
{
    unsigned char t[10];
    int n = 0;
    do {
        t[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    put(b, t, (size_t)n);
}

static void put_le(Buf *b, uint64_t v, int bytes)
{
    unsigned char t[8];
    for (int i = 0; i < bytes; i++)
        t[i] = (unsigned char)(v >> (8 * i));
    put(b, t, (size_t)bytes);
}

static void put_double(Buf *b, int field, double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    put_varint(b, (uint64_t)field << 3 | 1);
    put_le(b, u, 8);
}

/* field = the bytes of a nested message (or a string, or packed numbers) */
static void put_bytes(Buf *b, int field, const void *p, size_t n)
{
    put_varint(b, (uint64_t)field << 3 | 2);
    put_varint(b, n);
    put(b, p, n);
}

static double wall_time(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
}

/* Writes Event { wall_time, step, [file_version], [summary { value }] } as one record;
 * value is a serialized Summary.Value, or NULL. */
static int write_event(NndLog *l, int64_t step, const char *version, const Buf *value, NndErr *err)
{
    Buf ev, sum;
    buf_init(&ev);
    buf_init(&sum);
    put_double(&ev, 1, wall_time());
    put_varint(&ev, 2 << 3);
    put_varint(&ev, (uint64_t)step);
    if (version)
        put_bytes(&ev, 3, version, strlen(version));
    if (value) {
        put_bytes(&sum, 1, buf_bytes(value), value->len);
        put_bytes(&ev, 5, buf_bytes(&sum), sum.len);
    }
    int rc = 0;
    if (ev.failed || sum.failed || (value && value->failed)) {
        rc = nnd_err(err, "out of memory");
    } else {
        unsigned char head[12], tail[4];
        uint64_t n = ev.len;
        for (int i = 0; i < 8; i++)
            head[i] = (unsigned char)(n >> (8 * i));
        uint32_t c = masked_crc(head, 8);
        for (int i = 0; i < 4; i++)
            head[8 + i] = (unsigned char)(c >> (8 * i));
        c = masked_crc(buf_bytes(&ev), ev.len);
        for (int i = 0; i < 4; i++)
            tail[i] = (unsigned char)(c >> (8 * i));
        /* one write of the whole record, so that a flushed record is never torn */
        Buf rec;
        buf_init(&rec);
        put(&rec, head, 12);
        put(&rec, buf_bytes(&ev), ev.len);
        put(&rec, tail, 4);
        if (rec.failed)
            rc = nnd_err(err, "out of memory");
        else if (fwrite(buf_bytes(&rec), 1, rec.len, l->events) != rec.len)
            rc = nnd_err(err, "%s: cannot write: %s", l->events_path, strerror(errno));
        buf_free(&rec);
    }
    buf_free(&ev);
    buf_free(&sum);
    return rc;
}

/* ---- the API ---- */

static int make_dirs(const char *dir, NndErr *err)
{
    size_t n = strlen(dir);
    char *d = malloc(n + 1);
    if (!d)
        return nnd_err(err, "out of memory");
    memcpy(d, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (d[i] != '/' && d[i] != 0)
            continue;
        char c = d[i];
        d[i] = 0;
        if (mkdir(d, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            nnd_err(err, "cannot create the log directory %s: %s", d, strerror(e));
            free(d);
            return -1;
        }
        d[i] = c;
    }
    free(d);
    return 0;
}

NndLog *nnd_log_open(const char *dir, int append, NndErr *err)
{
    if (make_dirs(dir, err))
        return NULL;
    NndLog *l = calloc(1, sizeof *l);
    if (!l) {
        nnd_err(err, "out of memory");
        return NULL;
    }
    char host[64] = "localhost";
    gethostname(host, sizeof host - 1);
    for (char *c = host; *c; c++)
        if (*c == '/')
            *c = '_';
    size_t n = strlen(dir) + strlen(host) + 96;
    l->events_path = malloc(n);
    char *csv = malloc(strlen(dir) + 16);
    if (!l->events_path || !csv) {
        free(csv);
        nnd_log_close(l);
        nnd_err(err, "out of memory");
        return NULL;
    }
    snprintf(l->events_path, n, "%s/events.out.tfevents.%lld.%s.%ld", dir, (long long)wall_time(),
             host, (long)getpid());
    snprintf(csv, strlen(dir) + 16, "%s/metrics.csv", dir);
    l->events = fopen(l->events_path, "wb");
    if (!l->events) {
        nnd_err(err, "%s: cannot create: %s", l->events_path, strerror(errno));
        free(csv);
        nnd_log_close(l);
        return NULL;
    }
    struct stat sb;
    int fresh = !append || stat(csv, &sb) != 0 || sb.st_size == 0;
    l->csv = fopen(csv, fresh ? "w" : "a");
    if (!l->csv) {
        nnd_err(err, "%s: cannot create: %s", csv, strerror(errno));
        free(csv);
        nnd_log_close(l);
        return NULL;
    }
    free(csv);
    /* 64 KB buffers: the writes reach the files in large pieces, at nnd_log_flush
     * or when a buffer fills */
    setvbuf(l->events, NULL, _IOFBF, 1 << 16);
    setvbuf(l->csv, NULL, _IOFBF, 1 << 16);
    if (fresh)
        fputs("step,epoch,tag,value\n", l->csv);
    if (write_event(l, 0, "brain.Event:2", NULL, err) || nnd_log_flush(l, err)) {
        nnd_log_close(l);
        return NULL;
    }
    return l;
}

const char *nnd_log_events_path(const NndLog *l) { return l->events_path; }

int nnd_log_scalar(NndLog *l, const char *tag, int64_t step, int64_t epoch, double value,
                   NndErr *err)
{
    Buf v;
    buf_init(&v);
    put_bytes(&v, 1, tag, strlen(tag));
    float f = (float)value;
    uint32_t u;
    memcpy(&u, &f, 4);
    put_varint(&v, 2 << 3 | 5);
    put_le(&v, u, 4);
    int rc = write_event(l, step, NULL, &v, err);
    buf_free(&v);
    if (rc)
        return rc;
    if (fprintf(l->csv, "%lld,%lld,%s,%.9g\n", (long long)step, (long long)epoch, tag, value) < 0)
        return nnd_err(err, "cannot write metrics.csv: %s", strerror(errno));
    return 0;
}

int nnd_log_histogram(NndLog *l, const char *tag, int64_t step, const NndHistogram *hist,
                      NndErr *err)
{
    Buf h, v;
    buf_init(&h);
    buf_init(&v);
    put_double(&h, 1, hist->min);
    put_double(&h, 2, hist->max);
    put_double(&h, 3, hist->num);
    put_double(&h, 4, hist->sum);
    put_double(&h, 5, hist->sum_squares);
    for (int field = 6; field <= 7; field++) {
        put_varint(&h, (uint64_t)field << 3 | 2);
        put_varint(&h, NND_HIST_BUCKETS * 8);
        for (int b = 0; b < NND_HIST_BUCKETS; b++) {
            uint64_t u;
            memcpy(&u, field == 6 ? &hist->limit[b] : &hist->count[b], 8);
            put_le(&h, u, 8);
        }
    }
    put_bytes(&v, 1, tag, strlen(tag));
    put_bytes(&v, 5, buf_bytes(&h), h.len);
    int rc = h.failed ? nnd_err(err, "out of memory") : write_event(l, step, NULL, &v, err);
    buf_free(&h);
    buf_free(&v);
    return rc;
}

int nnd_log_flush(NndLog *l, NndErr *err)
{
    if (fflush(l->events) != 0 || fflush(l->csv) != 0)
        return nnd_err(err, "%s: cannot write: %s", l->events_path, strerror(errno));
    return 0;
}

void nnd_log_close(NndLog *l)
{
    if (!l)
        return;
    if (l->events)
        fclose(l->events);
    if (l->csv)
        fclose(l->csv);
    free(l->events_path);
    free(l);
}
