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
 * encoded by hand here.  metrics.csv holds the same scalars, one per line:
 * step,epoch,tag,value.  Each file gathers whole records (and lines) in a buffer of
 * its own and writes them with one system call when the next would not fit, or at
 * nnd_log_flush: the files only ever end between records, so a run killed at any
 * moment leaves every record it wrote readable and none torn (unless the kill lands
 * inside that write itself). */
#define _POSIX_C_SOURCE 200809L

#include "nnd_runtime.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

/* The files' buffers: 64 KB, written whole (stdio's own buffer wrote 4 KB pieces,
 * st_blksize: on two threads a write system call of 6 us every seventh histogram
 * record of 784-128-10, 0.9 us a record; and it cut records at its edges). */
enum { LOG_BUFFER = 1 << 16 };

typedef struct LogFile {
    FILE *f; /* unbuffered: each fwrite is one write */
    char *buf; /* LOG_BUFFER bytes: whole records not yet written */
    size_t n;
} LogFile;

struct NndLog {
    LogFile events, csv;
    char *events_path;
};

/* Writes what o holds.  0, or -1 with errno. */
static int out_drain(LogFile *o)
{
    size_t n = o->n;
    o->n = 0;
    return n && fwrite(o->buf, 1, n, o->f) != n ? -1 : 0;
}

/* Appends the record p[0, len) to o, after writing what o holds if it would not fit
 * (a record larger than the buffer goes out on its own).  0, or -1 with errno. */
static int out_put(LogFile *o, const void *p, size_t len)
{
    if (o->n + len > LOG_BUFFER && out_drain(o))
        return -1;
    if (len > LOG_BUFFER)
        return fwrite(p, 1, len, o->f) != len ? -1 : 0;
    memcpy(o->buf + o->n, p, len);
    o->n += len;
    return 0;
}

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

/* ---- protocol buffer encoding ----
 * A record is encoded in one pass into one buffer: the length of each nested message
 * is worked out first (they are known from the tag and the payload), so that nothing
 * is encoded twice or copied from one buffer into the next. */

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v > 0x7f) {
        v >>= 7;
        n++;
    }
    return n;
}

static unsigned char *put_varint(unsigned char *o, uint64_t v)
{
    while (v > 0x7f) {
        *o++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *o++ = (unsigned char)v;
    return o;
}

static unsigned char *put_le(unsigned char *o, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        *o++ = (unsigned char)(v >> (8 * i));
    return o;
}

/* field number and wire type in one byte (fields below 16) */
static unsigned char *put_key(unsigned char *o, int field, int wire)
{
    *o++ = (unsigned char)(field << 3 | wire);
    return o;
}

static unsigned char *put_double(unsigned char *o, int field, double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    return put_le(put_key(o, field, 1), u, 8);
}

/* The key and length of a length-delimited field of n bytes (a string, a nested
 * message, packed numbers): what put_head writes. */
static size_t head_len(size_t n) { return 1 + varint_len(n); }

static unsigned char *put_head(unsigned char *o, int field, size_t n)
{
    return put_varint(put_key(o, field, 2), n);
}

/* A HistogramProto's length: five doubles and two packed arrays of doubles. */
enum { HIST_PACKED = NND_HIST_BUCKETS * 8 };

static size_t histo_len(void) { return 5 * 9 + 2 * (head_len(HIST_PACKED) + HIST_PACKED); }

static unsigned char *put_histo(unsigned char *o, const NndHistogram *h)
{
    o = put_double(o, 1, h->min);
    o = put_double(o, 2, h->max);
    o = put_double(o, 3, h->num);
    o = put_double(o, 4, h->sum);
    o = put_double(o, 5, h->sum_squares);
    for (int field = 6; field <= 7; field++) {
        o = put_head(o, field, HIST_PACKED);
        const double *d = field == 6 ? h->limit : h->count;
        for (int b = 0; b < NND_HIST_BUCKETS; b++) {
            uint64_t u;
            memcpy(&u, &d[b], 8);
            o = put_le(o, u, 8);
        }
    }
    return o;
}

static double wall_time(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
}

/* Writes one record, Event { wall_time, step, file_version } when version is set, else
 * Event { wall_time, step, summary { value { tag, simple_value or histo } } } with the
 * histogram hist, or the scalar value when hist is NULL. */
static int write_event(NndLog *l, int64_t step, const char *version, const char *tag, double value,
                       const NndHistogram *hist, NndErr *err)
{
    size_t tag_n = tag ? strlen(tag) : 0, ver_n = version ? strlen(version) : 0;
    size_t payload = hist ? head_len(histo_len()) + histo_len() : 1 + 4;
    size_t val = head_len(tag_n) + tag_n + payload; /* Summary.Value */
    size_t sum = head_len(val) + val; /* Summary */
    size_t ev = 9 + 1 + varint_len((uint64_t)step) +
                (version ? head_len(ver_n) + ver_n : head_len(sum) + sum);
    size_t total = 12 + ev + 4;
    unsigned char small[1024], *rec = total <= sizeof small ? small : malloc(total);
    if (!rec)
        return nnd_err(err, "out of memory");
    unsigned char *o = put_le(rec, ev, 8);
    o = put_le(o, masked_crc(rec, 8), 4);
    o = put_double(o, 1, wall_time());
    o = put_varint(put_key(o, 2, 0), (uint64_t)step);
    if (version) {
        o = put_head(o, 3, ver_n);
        memcpy(o, version, ver_n);
        o += ver_n;
    } else {
        o = put_head(o, 5, sum);
        o = put_head(o, 1, val);
        o = put_head(o, 1, tag_n);
        memcpy(o, tag, tag_n);
        o += tag_n;
        if (hist) {
            o = put_head(o, 5, histo_len());
            o = put_histo(o, hist);
        } else {
            float f = (float)value;
            uint32_t u;
            memcpy(&u, &f, 4);
            o = put_le(put_key(o, 2, 5), u, 4);
        }
    }
    o = put_le(o, masked_crc(rec + 12, ev), 4);
    int rc = 0;
    if ((size_t)(o - rec) != total)
        rc = nnd_err(err, "log record: encoded %zu bytes, not %zu", (size_t)(o - rec), total);
    else if (out_put(&l->events, rec, total))
        rc = nnd_err(err, "%s: cannot write: %s", l->events_path, strerror(errno));
    if (rec != small)
        free(rec);
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
    l->events.f = fopen(l->events_path, "wb");
    if (!l->events.f) {
        nnd_err(err, "%s: cannot create: %s", l->events_path, strerror(errno));
        free(csv);
        nnd_log_close(l);
        return NULL;
    }
    struct stat sb;
    int fresh = !append || stat(csv, &sb) != 0 || sb.st_size == 0;
    l->csv.f = fopen(csv, fresh ? "w" : "a");
    if (!l->csv.f) {
        nnd_err(err, "%s: cannot create: %s", csv, strerror(errno));
        free(csv);
        nnd_log_close(l);
        return NULL;
    }
    free(csv);
    /* the files' own buffers, of whole records: stdio's left unbuffered */
    l->events.buf = malloc(LOG_BUFFER);
    l->csv.buf = malloc(LOG_BUFFER);
    if (!l->events.buf || !l->csv.buf) {
        nnd_err(err, "out of memory");
        nnd_log_close(l);
        return NULL;
    }
    setvbuf(l->events.f, NULL, _IONBF, 0);
    setvbuf(l->csv.f, NULL, _IONBF, 0);
    static const char head[] = "step,epoch,tag,value\n";
    if (fresh && out_put(&l->csv, head, sizeof head - 1)) {
        nnd_err(err, "cannot write metrics.csv: %s", strerror(errno));
        nnd_log_close(l);
        return NULL;
    }
    if (write_event(l, 0, "brain.Event:2", NULL, 0, NULL, err) || nnd_log_flush(l, err)) {
        nnd_log_close(l);
        return NULL;
    }
    return l;
}

const char *nnd_log_events_path(const NndLog *l) { return l->events_path; }

/* ---- metrics.csv lines ----
 * A line was one fprintf("%lld,%lld,%s,%.9g\n"): 0.76-1.19 us inside the training
 * loop (0.18 alone: glibc's printf and its multi-precision float conversion, cold
 * there), where the line's event record took 0.16-0.26.  The same bytes are now put
 * together here, printf taking only the values this cannot round for certain. */

/* The decimal digits of v (not negative) at o; returns the end. */
static char *put_uint(char *o, uint64_t v)
{
    char d[24];
    int n = 0;
    do {
        d[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *o++ = d[--n];
    return o;
}

static char *put_int(char *o, int64_t v)
{
    if (v < 0) {
        *o++ = '-';
        return put_uint(o, -(uint64_t)v);
    }
    return put_uint(o, (uint64_t)v);
}

/* The exact powers of ten a double holds. */
static const double pow10_exact[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* v as printf's "%.9g" writes it, at o (32 bytes at least); returns the end.
 * |v| * 10^(8 - e) for v's decimal exponent e, in one rounding (a power of ten a
 * double holds exactly, multiplied or divided by): off from the exact product by
 * less than 2^-53 of it, under 1.2e-7 below 10^9, so where its fraction is not
 * within 1e-6 of one half, rounding it to 9 digits rounds the exact value of v the
 * same way.  Elsewhere (near a half, 10^(8 - e) not exact, zero, infinities, NaN):
 * snprintf. */
static char *put_g9(char *o, double v)
{
    double a = fabs(v);
    int e = a > 0 && a <= DBL_MAX ? (int)floor(log10(a)) : 0;
    uint64_t digits = 0;
    for (int tries = 0; tries < 2 && digits == 0 && a > 0 && a <= DBL_MAX; tries++) {
        int k = 8 - e;
        if (k < -22 || k > 22)
            break;
        double m = k >= 0 ? a * pow10_exact[k] : a / pow10_exact[-k];
        if (m < 1e8 || m >= 1e9) { /* log10 rounded across a power of ten */
            e += m < 1e8 ? -1 : 1;
            continue;
        }
        double whole = floor(m), frac = m - whole;
        if (fabs(frac - 0.5) < 1e-6)
            break;
        digits = (uint64_t)whole + (frac > 0.5);
        if (digits == 1000000000) { /* 999999999.5 and up: 1.00000000 times 10^(e + 1) */
            digits = 100000000;
            e++;
        }
    }
    if (digits == 0)
        return o + snprintf(o, 32, "%.9g", v);
    char d[9];
    for (int i = 8; i >= 0; i--, digits /= 10)
        d[i] = (char)('0' + digits % 10);
    int last = 8; /* the last digit printed: trailing zeros go */
    while (last > 0 && d[last] == '0')
        last--;
    if (v < 0)
        *o++ = '-';
    if (e < -4 || e >= 9) { /* d.ddde+XX */
        *o++ = d[0];
        if (last > 0) {
            *o++ = '.';
            memcpy(o, d + 1, (size_t)last);
            o += last;
        }
        *o++ = 'e';
        *o++ = e < 0 ? '-' : '+';
        int x = e < 0 ? -e : e;
        if (x < 10)
            *o++ = '0';
        return put_uint(o, (uint64_t)x);
    }
    if (e < 0) { /* 0.000ddd */
        *o++ = '0';
        *o++ = '.';
        for (int i = -1; i > e; i--)
            *o++ = '0';
        memcpy(o, d, (size_t)last + 1);
        return o + last + 1;
    }
    memcpy(o, d, (size_t)e + 1); /* ddd.ddd */
    o += e + 1;
    if (last > e) {
        *o++ = '.';
        memcpy(o, d + e + 1, (size_t)(last - e));
        o += last - e;
    }
    return o;
}

int nnd_log_scalar(NndLog *l, const char *tag, int64_t step, int64_t epoch, double value,
                   NndErr *err)
{
    int rc = write_event(l, step, NULL, tag, value, NULL, err);
    if (rc)
        return rc;
    char line[512];
    size_t tag_n = strlen(tag);
    int bad;
    if (tag_n + 96 > sizeof line) { /* a long tag: printf */
        int n =
            snprintf(NULL, 0, "%lld,%lld,%s,%.9g\n", (long long)step, (long long)epoch, tag, value);
        char *big = n > 0 ? malloc((size_t)n + 1) : NULL;
        if (!big)
            return nnd_err(err, "out of memory");
        snprintf(big, (size_t)n + 1, "%lld,%lld,%s,%.9g\n", (long long)step, (long long)epoch, tag,
                 value);
        bad = out_put(&l->csv, big, (size_t)n);
        free(big);
    } else {
        char *o = put_int(line, step);
        *o++ = ',';
        o = put_int(o, epoch);
        *o++ = ',';
        memcpy(o, tag, tag_n);
        o += tag_n;
        *o++ = ',';
        o = put_g9(o, value);
        *o++ = '\n';
        bad = out_put(&l->csv, line, (size_t)(o - line));
    }
    if (bad)
        return nnd_err(err, "cannot write metrics.csv: %s", strerror(errno));
    return 0;
}

int nnd_log_histogram(NndLog *l, const char *tag, int64_t step, const NndHistogram *hist,
                      NndErr *err)
{
    return write_event(l, step, NULL, tag, 0, hist, err);
}

int nnd_log_flush(NndLog *l, NndErr *err)
{
    if (out_drain(&l->events))
        return nnd_err(err, "%s: cannot write: %s", l->events_path, strerror(errno));
    if (out_drain(&l->csv))
        return nnd_err(err, "cannot write metrics.csv: %s", strerror(errno));
    return 0;
}

void nnd_log_close(NndLog *l)
{
    if (!l)
        return;
    /* what the buffers still hold is written (nnd_log_flush reports errors first) */
    if (l->events.f) {
        if (l->events.buf)
            (void)out_drain(&l->events);
        fclose(l->events.f);
    }
    if (l->csv.f) {
        if (l->csv.buf)
            (void)out_drain(&l->csv);
        fclose(l->csv.f);
    }
    free(l->events.buf);
    free(l->csv.buf);
    free(l->events_path);
    free(l);
}
