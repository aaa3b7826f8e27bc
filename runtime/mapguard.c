/* mapguard: a clear message, not a crash, when a mapped data file shrinks.
 *
 * A plain IDX or NPY data set is mapped into memory (data_map_rows), and a page of it
 * past the file's end, once the file was truncated by another process, faults with
 * SIGBUS when a batch reads it.  nnd_guard_mapped_files installs a handler that names
 * the file and exits with status 1 when the fault is in a mapped data file; any
 * other SIGBUS keeps its default action.  The table of mappings is written under a
 * mutex and read by the handler without one: each slot's range is published last. */
#define _POSIX_C_SOURCE 200809L

#include "data.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* more mapped files at once than MAX_MAPS: the later ones are not known to the
 * handler (their SIGBUS stays a crash); a longer path is cut */
enum { MAX_MAPS = 64, PATH_BYTES = 512 };

typedef struct Mapping {
    atomic_uintptr_t lo, hi; /* [lo, hi): the mapping; hi == 0: a free slot */
    char path[PATH_BYTES];
} Mapping;

static Mapping maps[MAX_MAPS];
static pthread_mutex_t maps_mu = PTHREAD_MUTEX_INITIALIZER;

void data_map_register(const void *p, size_t n, const char *path)
{
    pthread_mutex_lock(&maps_mu);
    for (int i = 0; i < MAX_MAPS; i++) {
        if (atomic_load(&maps[i].hi) != 0)
            continue;
        size_t len = strlen(path);
        if (len >= PATH_BYTES)
            len = PATH_BYTES - 1;
        memcpy(maps[i].path, path, len);
        maps[i].path[len] = 0;
        atomic_store(&maps[i].lo, (uintptr_t)p);
        atomic_store(&maps[i].hi, (uintptr_t)p + n);
        break;
    }
    pthread_mutex_unlock(&maps_mu);
}

void data_map_unregister(const void *p)
{
    pthread_mutex_lock(&maps_mu);
    for (int i = 0; i < MAX_MAPS; i++)
        if (atomic_load(&maps[i].lo) == (uintptr_t)p && atomic_load(&maps[i].hi) != 0) {
            atomic_store(&maps[i].hi, 0);
            atomic_store(&maps[i].lo, 0);
        }
    pthread_mutex_unlock(&maps_mu);
}

static void put(const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    uintptr_t at = (uintptr_t)si->si_addr;
    for (int i = 0; i < MAX_MAPS; i++) {
        uintptr_t hi = atomic_load(&maps[i].hi), lo = atomic_load(&maps[i].lo);
        if (hi != 0 && lo <= at && at < hi) {
            put("\nnnd: ");
            put(maps[i].path);
            put(": the file became shorter while this run read it (it is mapped into "
                "memory: a data file must not change during a run); stopped\n");
            _exit(1);
        }
    }
    /* not a data file's: the default action, as if no handler were there (a fault's
     * access runs again; a signal another process sent is sent again) */
    signal(sig, SIG_DFL);
    if (si->si_code <= 0)
        raise(sig);
}

int nnd_guard_mapped_files(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGBUS, &sa, NULL);
}
