/* build: `nnd build FILE -o OUT.o|libOUT.a|libOUT.so [--weights W] [--header H]
 * [--name N] [--train] [--batch N] [--target TRIPLE --cpu NAME [--features F]]`.
 *
 * Compiles the program's forward function (and with --train its step) ahead of
 * time into an object file that needs only the runtime library (exec/build.c), and
 * packs it as the output's extension asks: the object itself, a static archive
 * (`ar`), or a shared library (`cc -shared`; its runtime symbols are resolved
 * against libnnd_runtime when the program that loads it links that).  Every file
 * is written atomically. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "build.h"
#include "cli.h"

extern char **environ;

typedef enum OutKind { OUT_OBJECT, OUT_ARCHIVE, OUT_SHARED } OutKind;

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The model's C name from the output's file name: lib and the extension dropped,
 * other characters than letters, digits and _ made _. */
static char *default_name(const char *out)
{
    const char *base = strrchr(out, '/') ? strrchr(out, '/') + 1 : out;
    if (strncmp(base, "lib", 3) == 0 && (has_suffix(base, ".a") || has_suffix(base, ".so")))
        base += 3;
    char *name = xasprintf("%s%s", isdigit((unsigned char)base[0]) ? "_" : "", base);
    char *dot = strchr(name, '.');
    if (dot && dot != name)
        *dot = 0;
    for (char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_')
            *c = '_';
    return name;
}

/* Runs argv (found on PATH) and waits; false with a message when it fails. */
static bool run_tool(char *const argv[])
{
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
    if (rc != 0) {
        fprintf(stderr, "nnd: cannot run '%s': %s\n", argv[0], strerror(rc));
        return false;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "nnd: '%s' failed (status %d)\n", argv[0],
                WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return false;
    }
    return true;
}

/* The whole of a file, to copy it atomically into place. */
static bool copy_into_place(const char *from, const char *to)
{
    FILE *f = fopen(from, "rb");
    StrBuf b = {0};
    char chunk[65536];
    size_t n;
    while (f && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        sb_putn(&b, chunk, n);
    bool ok = f && !ferror(f);
    if (f)
        fclose(f);
    NndErr e;
    if (ok && nnd_write_file_atomic(to, b.s, b.len, &e) != 0) {
        fprintf(stderr, "nnd: %s\n", e.msg);
        ok = false;
    } else if (!ok) {
        fprintf(stderr, "nnd: cannot read %s\n", from);
    }
    sb_free(&b);
    return ok;
}

/* The object, packed as out asks (in a scratch directory, then into place). */
static bool pack(OutKind kind, const char *object, const char *dir, const char *out)
{
    char *packed = xasprintf("%s/packed", dir);
    const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
    bool ok;
    if (kind == OUT_ARCHIVE) {
        char *argv[] = {"ar", "rcs", packed, (char *)object, NULL};
        ok = run_tool(argv);
    } else {
        char *argv[] = {(char *)cc, "-shared", "-o", packed, (char *)object, NULL};
        ok = run_tool(argv);
    }
    ok = ok && copy_into_place(packed, out);
    unlink(packed);
    free(packed);
    return ok;
}

/* The values to embed: the initializers' (seeded), then the weights file's. */
static bool model_values(Program *p, const Options *o, Model *m)
{
    char err[1024] = "";
    int nopt;
    if (!model_init(p, m, err, sizeof err)) {
        fprintf(stderr, "nnd: %s\n", err);
        return false;
    }
    if (o->weights && !model_load_noting(p, m, o->weights, stderr, &nopt, err, sizeof err)) {
        fprintf(stderr, "nnd: %s\n", err);
        model_free(m);
        return false;
    }
    return true;
}

static void print_summary(const Program *p, const Options *o, const BuildOptions *bo,
                          const StrBuf *header)
{
    int64_t values = 0;
    for (int i = 0; i < p->params.n; i++)
        values += shape_numel_at(&graph_node((Graph *)&p->g, p->params.v[i].node)->shape, 0);
    const char *t = strstr(header->s, "Compiled for ");
    int tn = t ? (int)strcspn(t + 13, ";") : 0;
    fprintf(stderr, "built %s: %s_forward%s%s%s for %.*s, %lld parameter values %s\n", o->output,
            bo->name, bo->train ? " and " : "", bo->train ? bo->name : "", bo->train ? "_step" : "",
            tn, t ? t + 13 : "?", (long long)values,
            bo->embed ? "embedded" : "to load at run time (nnd_aot_load_weights)");
    if (o->header)
        fprintf(stderr, "wrote %s\n", o->header);
}

static int build_program(Program *p, Options *o)
{
    OutKind kind = has_suffix(o->output, ".a")    ? OUT_ARCHIVE
                   : has_suffix(o->output, ".so") ? OUT_SHARED
                                                  : OUT_OBJECT;
    BuildOptions bo = {.name = o->name ? o->name : default_name(o->output),
                       .source = o->files.v[0],
                       .train = o->train,
                       .embed = o->weights || o->train,
                       .max_batch = o->batch,
                       .target = {o->target, o->cpu, o->features, 0}};
    char *hint = xasprintf("cc main.c %s $(pkg-config --cflags --libs nnd-runtime)", o->output);
    bo.link_hint = hint;
    int rc = NND_EXIT_ERROR;
    char tmpl[] = "/tmp/nnd-build-XXXXXX";
    char *dir = NULL, *object = NULL;
    Model m = {0};
    if (!build_name_ok(bo.name)) {
        fprintf(stderr, "nnd: '%s' is not a C identifier: pass --name NAME\n", bo.name);
        goto done;
    }
    if (kind != OUT_OBJECT && !(dir = mkdtemp(tmpl))) {
        fprintf(stderr, "nnd: cannot make a scratch directory in /tmp: %s\n", strerror(errno));
        goto done;
    }
    object = kind == OUT_OBJECT ? xstrdup(o->output) : xasprintf("%s/%s.o", dir, bo.name);
    bo.object = kind == OUT_OBJECT ? o->output : object;
    if (!model_values(p, o, &m))
        goto done;
    StrBuf header = {0};
    char err[1024] = "";
    NndErr e;
    if (!build_object(p, &m, &bo, &header, err, sizeof err))
        fprintf(stderr, "nnd: %s\n", err);
    else if (kind != OUT_OBJECT && !pack(kind, object, dir, o->output))
        ;
    else if (o->header && nnd_write_file_atomic(o->header, header.s, header.len, &e) != 0)
        fprintf(stderr, "nnd: %s\n", e.msg);
    else {
        print_summary(p, o, &bo, &header);
        rc = NND_EXIT_OK;
    }
    sb_free(&header);
    model_free(&m);
done:
    if (dir) {
        if (object)
            unlink(object);
        rmdir(dir);
    }
    free(object);
    free(hint);
    if (!o->name)
        free((char *)bo.name);
    return rc;
}

int cmd_build(Options *o)
{
    if (!o->output)
        return cli_usage_error("%s", "build needs -o OUT.o, OUT.a or OUT.so");
    if (!has_suffix(o->output, ".o") && !has_suffix(o->output, ".a") &&
        !has_suffix(o->output, ".so"))
        return cli_usage_error("build -o writes OUT.o, OUT.a or OUT.so, got '%s'", o->output);
    if (o->features && !o->cpu)
        return cli_usage_error("%s", "--features goes with --cpu NAME");
    /* before the compile: what it makes would have nowhere to go */
    NndErr e;
    const char *outs[2] = {o->output, o->header};
    for (int i = 0; i < 2; i++)
        if (outs[i] && nnd_check_write_path(outs[i], &e) != 0) {
            fprintf(stderr, "nnd: build: %s\n", e.msg);
            return NND_EXIT_ERROR;
        }
    return cli_on_program(o, false, build_program);
}
