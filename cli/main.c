/* main: the nnd command line's options and its dispatch to the subcommands. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "jit.h"

static const char usage[] =
    "usage: nnd COMMAND [options] FILE.nnd\n"
    "\n"
    "commands:\n"
    "  run FILE        train the program's train block (compiled by LLVM)\n"
    "  predict FILE [--weights W] (--data NAME | --input F [--labels F]) [-o OUT] [--top K]\n"
    "                  [--batch N] [--metrics]: the model's forward over new data (eval\n"
    "                  mode); OUT.npy or OUT.csv (CSV to stdout without -o)\n"
    "  build FILE -o OUT.o|libOUT.a|libOUT.so [--weights W] [--header H] [--name N] [--train]\n"
    "                  [--batch N] [--target TRIPLE --cpu NAME]: the model's forward (with\n"
    "                  --train, also the step) compiled ahead of time for the runtime alone\n"
    "  sample FILE [--weights W] [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K]\n"
    "                  [--seed S] [--no-cache]: text from a byte-level language model "
    "(examples/gpt.nnd)\n"
    "  check FILE...   parse and check (names, types, shapes); exit 1 on errors;\n"
    "                  --verbose: which models of a file without a train block were checked\n"
    "  graph FILE      print the forward/backward/update graph after simplification\n"
    "  gradcheck FILE  compare autodiff gradients with finite differences (f64)\n"
    "  emit-llvm FILE  print the optimized LLVM IR of the step, eval and forward functions\n"
    "  compare FILE --opt RULE --opt RULE ...   (or --sweep NAME=V1,V2,...)\n"
    "                  train once per update rule (or value) from the same initial\n"
    "                  weights and batches; print loss, eval metric, steps/s\n"
    "  lrfind FILE     the learning-rate range test: --min (1e-7) --max (10) --steps (100);\n"
    "                  -o FILE.svg plots the loss against the rate\n"
    "  summary FILE    parameters (shapes, counts, trainable or frozen), optimizer and\n"
    "                  layer state, step memory and FLOPs per sample\n"
    "  explain FILE    each update rule as formulas, after expansion and simplification,\n"
    "                  with its memory traffic per parameter\n"
    "  plot DIR [-o FILE]  draw the scalars a `log` statement wrote to DIR/metrics.csv\n"
    "                  as an SVG (default DIR/plot.svg)\n"
    "  parse FILE      print the syntax tree\n"
    "\n"
    "options:\n"
    "  --set NAME=VALUE  override a setting or hyper-parameter (batch, epochs, steps,\n"
    "                    seed, shuffle, opt.lr, a `let` of the train block); once a name\n"
    "  --seed N          same as --set seed=N\n"
    "  --dtype f32|f64   the float type of the whole program (default f32)\n"
    "  --precision bf16  products in bf16 with f32 sums (also --set precision=bf16)\n"
    "  --name RUN        (run) log into DIR/RUN instead of DIR/YYYYMMDD-HHMMSS\n"
    "  --interp          run with the reference interpreter instead of compiled code\n"
    "  --threads N       threads that compute (default: one per CPU this process may use)\n"
    "  --time            print compile time, time per step and samples/s\n"
    "  --verbose         print the kernels, the planned memory, who gathers batches\n"
    "  --print-params    print the trained parameters (small ones in full)\n"
    "  --resume CKPT     continue from a checkpoint (a file, or the newest in a\n"
    "                    directory): same seed and threads give the same bits as a\n"
    "                    run never stopped\n"
    "  --profile         time every kernel of the compiled step; print where time went\n"
    "  --check-numerics  check every op's values in each step; stop at the first NaN or\n"
    "                    Inf and show the op, its line, the phase and the step\n"
    "  graph:      --dot (Graphviz), --all (also initializers, gradients, metrics),\n"
    "              --raw (before simplification), --stats, --no-spans (no `# file:line`),\n"
    "              --schedule (instead of the graph: every compiled function's kernels,\n"
    "              what each fuses, reads and stores, and the buffers; nothing is run)\n"
    "  gradcheck:  --batch N (4), --per-param N (24; 0 = every element), --eps E (1e-6)\n"
    "  --version, --help; `nnd COMMAND --help` for a command's own options\n";

int cli_usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "nnd: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(run `nnd --help` for usage)\n");
    return NND_EXIT_USAGE;
}

bool cli_parse_number(const char *s, double *out) { return compile_parse_number(s, out) == NULL; }

static int add_override(Options *o, const char *kv)
{
    Override ov;
    const char *why;
    if (!compile_parse_override(kv, &ov, &why)) {
        if (!why)
            return cli_usage_error("--set takes NAME=VALUE, got '%s'", kv);
        fprintf(stderr, "nnd: --set %s: %s\n", kv, why);
        return NND_EXIT_USAGE;
    }
    vec_push(&o->overrides, ov);
    return 0;
}

/* The option's place when it takes a string (--weights FILE), else NULL. */
static const char **string_option(Options *o, const char *a)
{
    const struct {
        const char *name;
        const char **field;
    } table[] = {{"--weights", &o->weights},   {"--data", &o->data},     {"--input", &o->input},
                 {"--labels", &o->labels},     {"--resume", &o->resume}, {"--header", &o->header},
                 {"--name", &o->name},         {"--target", &o->target}, {"--cpu", &o->cpu},
                 {"--features", &o->features}, {"--prompt", &o->prompt}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(a, table[i].name) == 0)
            return table[i].field;
    return NULL;
}

/* lrfind's and gradcheck's numbers (--min, --batch...): -1 when a is none of them,
 * else 0 or NND_EXIT_USAGE (after saying why).  Each value given is checked, 0
 * included: the defaults are set before. */
static int number_option(Options *o, const char *a, const char *next)
{
    double v;
    if (strcmp(a, "--min") == 0 || strcmp(a, "--max") == 0 ||
        (strcmp(a, "--steps") == 0 && strcmp(o->cmd, "lrfind") == 0)) {
        if (!next || !cli_parse_number(next, &v))
            return cli_usage_error("%s needs a number", a);
        if (a[2] == 's' && (v < 2 || v > 1e6 || v != floor(v)))
            return cli_usage_error("--steps needs a whole number from 2 to 1000000, got '%s'",
                                   next);
        if (a[2] == 's')
            o->lr_steps = (int64_t)v;
        else
            *(a[3] == 'i' ? &o->lr_min : &o->lr_max) = v;
    } else if (strcmp(a, "--batch") == 0 || strcmp(a, "--per-param") == 0) {
        /* --per-param 0 checks every element; a batch has at least one sample */
        double lo = a[2] == 'b';
        if (!next || !cli_parse_number(next, &v) || v < lo || v > 1e9 || v != floor(v))
            return cli_usage_error(
                lo ? "--batch needs a whole number from 1 to 1000000000, got '%s'"
                   : "--per-param needs a whole number from 0 to 1000000000, "
                     "got '%s'",
                next ? next : "");
        if (a[2] == 'b')
            o->gc.batch = (int)(o->batch = (int64_t)v);
        else
            o->gc.per_param = (int)v;
    } else if (strcmp(a, "--eps") == 0) {
        if (!next || !cli_parse_number(next, &v) || !(v > 0))
            return cli_usage_error("--eps needs a positive number, got '%s'", next ? next : "");
        o->gc.eps = v;
    } else {
        return -1;
    }
    return 0;
}

static int parse_args(int argc, char **argv, Options *o)
{
    o->dtype = NND_F32;
    o->gc = (GradcheckOptions){4, 24, 1e-6, 1e-5, 1e-3};
    o->lr_min = 1e-7, o->lr_max = 10, o->lr_steps = 100;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        const char **field;
        double v;
        int rc;
        if (strcmp(a, "--set") == 0) {
            if (!next)
                return cli_usage_error("%s needs NAME=VALUE", a);
            if (add_override(o, next))
                return NND_EXIT_USAGE;
            i++;
        } else if (strncmp(a, "--set=", 6) == 0) {
            if (add_override(o, a + 6))
                return NND_EXIT_USAGE;
        } else if (strcmp(a, "--seed") == 0) {
            if (!next || !cli_parse_number(next, &v))
                return cli_usage_error("%s needs a number", a);
            Override ov = {xstrdup("seed"), next, v, true, false};
            vec_push(&o->overrides, ov);
            i++;
        } else if (strcmp(a, "--precision") == 0) {
            /* the train block's precision setting, as --set precision=... */
            if (!next || (strcmp(next, "f32") && strcmp(next, "bf16")))
                return cli_usage_error("--precision takes bf16 or f32, got '%s'", next ? next : "");
            Override ov = {xstrdup("precision"), next, 0, false, false};
            vec_push(&o->overrides, ov);
            i++;
        } else if (strcmp(a, "--dtype") == 0) {
            if (!next || (strcmp(next, "f32") && strcmp(next, "f64")))
                return cli_usage_error("--dtype takes f32 or f64, got '%s'", next ? next : "");
            o->dtype = strcmp(next, "f64") == 0 ? NND_F64 : NND_F32;
            i++;
        } else if (strcmp(a, "--opt") == 0 || strcmp(a, "--sweep") == 0) {
            if (!next)
                return cli_usage_error("%s needs a value", a);
            if (a[2] == 'o')
                vec_push(&o->opts, next);
            else
                vec_push(&o->sweeps, next);
            i++;
        } else if ((rc = number_option(o, a, next)) >= 0) {
            if (rc)
                return rc;
            i++;
        } else if ((field = string_option(o, a))) {
            if (!next)
                return cli_usage_error("%s needs a value", a);
            *field = next;
            if (field == &o->resume)
                o->resume_at = i;
            i++;
        } else if (strcmp(a, "--top") == 0) {
            if (!next || !cli_parse_number(next, &v) || v < 1 || v > 1000 || v != floor(v))
                return cli_usage_error("--top needs a whole number from 1 to 1000, got '%s'",
                                       next ? next : "");
            o->top = (int)v;
            i++;
        } else if (strcmp(a, "--tokens") == 0 || strcmp(a, "--top-k") == 0 ||
                   strcmp(a, "--temperature") == 0) {
            if (!next || !cli_parse_number(next, &v) || !(v > 0) ||
                (a[3] != 'e' && (v != floor(v) || v > 1e9)))
                return cli_usage_error(
                    a[3] == 'e'   ? "--temperature needs a positive number, got '%s'"
                    : a[4] == 'k' ? "--tokens needs a whole number >= 1, got '%s'"
                                  : "--top-k needs a whole number >= 1, got '%s'",
                    next ? next : "");
            if (a[3] == 'e')
                o->temperature = v;
            else if (a[4] == 'k')
                o->tokens = (int64_t)v;
            else
                o->top_k = (int)v;
            i++;
        } else if (strcmp(a, "--metrics") == 0) {
            o->metrics = true;
        } else if (strcmp(a, "--train") == 0) {
            o->train = true;
        } else if (strcmp(a, "-o") == 0) {
            if (!next || !*next) /* "" names no file: found out only after the work */
                return cli_usage_error("%s needs a file name", a);
            o->output = next;
            i++;
        } else if (strcmp(a, "--no-cache") == 0) {
            o->no_cache = true;
        } else if (strcmp(a, "--interp") == 0) {
            o->interp = true;
        } else if (strcmp(a, "--time") == 0) {
            o->time = true;
        } else if (strcmp(a, "--print-params") == 0) {
            o->print_params = true;
        } else if (strcmp(a, "--profile") == 0) {
            o->profile = true;
        } else if (strcmp(a, "--check-numerics") == 0) {
            o->check_numerics = true;
        } else if (strcmp(a, "--verbose") == 0) {
            o->verbose = true;
        } else if (strcmp(a, "--threads") == 0) {
            if (!next || !cli_parse_number(next, &v) || v < 1 || v > 256 || v != floor(v))
                return cli_usage_error("--threads needs a whole number from 1 to 256, got '%s'",
                                       next ? next : "");
            o->threads = (int)v;
            i++;
        } else if (strcmp(a, "--dot") == 0) {
            o->dot = true;
        } else if (strcmp(a, "--all") == 0) {
            o->all = true;
        } else if (strcmp(a, "--raw") == 0) {
            o->raw = true;
        } else if (strcmp(a, "--stats") == 0) {
            o->stats = true;
        } else if (strcmp(a, "--schedule") == 0) {
            o->schedule = true;
        } else if (strcmp(a, "--no-spans") == 0) {
            o->no_spans = true;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("unknown option '%s'", a);
        } else {
            vec_push(&o->files, a);
        }
    }
    return 0;
}

Program *cli_compile(Frontend *fe, const Options *o, const char *path, const char *opt_text,
                     const char *opt_name, bool data)
{
    CompileOptions co = {o->dtype, o->overrides.v, o->overrides.n, opt_text,
                         opt_name, o->raw,         NULL,           o->dist != NULL};
    Program *p = compile(fe, path, NULL, &co);
    /* a program that would train nothing: refused by the commands that train */
    bool trains = strcmp(o->cmd, "run") == 0 || strcmp(o->cmd, "compare") == 0 ||
                  strcmp(o->cmd, "lrfind") == 0;
    if (p && program_report_idle(p, &fe->diags, trains)) {
        program_free(p);
        p = NULL;
    }
    if (p && data && !program_load_data(p, &fe->diags)) {
        program_free(p);
        p = NULL;
    }
    diags_print(&fe->diags, stderr);
    return p;
}

int cli_on_program(Options *o, bool data, ProgramCmd fn)
{
    if (o->files.n != 1)
        return cli_usage_error("%s takes one file", o->cmd);
    Frontend fe;
    frontend_init(&fe);
    Program *p = cli_compile(&fe, o, o->files.v[0], NULL, NULL, data);
    int rc = p ? fn(p, o) : NND_EXIT_ERROR;
    diags_print(&fe.diags, stderr);
    program_free(p);
    frontend_free(&fe);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? NND_EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("nnd %s\n", NND_PROJECT_VERSION);
        return 0;
    }
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            if (cli_help(argv[1]))
                return 0;
            return cli_usage_error("unknown command '%s'", argv[1]);
        }
    if (strcmp(argv[1], "help") == 0 && argc == 3 && cli_help(argv[2]))
        return 0;
    /* before anything else runs: OpenBLAS's idle threads would spin beside the
     * front end, the data's loading and the compile (cold compile 63 -> 57 ms) */
    nnd_blas_one_thread();
    nnd_guard_mapped_files();
    NndErr env;
    if (nnd_check_env(&env) != 0)
        return cli_usage_error("%s", env.msg);
    Options o = {0};
    o.cmd = argv[1];
    o.argc = argc;
    o.argv = argv;
    int rc = parse_args(argc, argv, &o);
    static const struct {
        const char *name;
        int (*fn)(Options *o);
    } commands[] = {
        {"check", cmd_check},         {"graph", cmd_graph},     {"run", cmd_run},
        {"gradcheck", cmd_gradcheck}, {"parse", cmd_parse},     {"emit-llvm", cmd_emit_llvm},
        {"compare", cmd_compare},     {"lrfind", cmd_lrfind},   {"explain", cmd_explain},
        {"plot", cmd_plot},           {"predict", cmd_predict}, {"build", cmd_build},
        {"sample", cmd_sample},       {"summary", cmd_summary},
    };
    if (rc == 0) {
        rc = -1;
        for (size_t i = 0; i < NND_ARRAY_LEN(commands) && rc < 0; i++)
            if (strcmp(o.cmd, commands[i].name) == 0)
                rc = commands[i].fn(&o);
        if (rc < 0)
            rc = cli_usage_error("unknown command '%s'", o.cmd);
    }
    jit_prewarm_end(); /* before the static destructors, which run under no thread */
    /* a usage error frees what parse_args gathered too */
    for (int i = 0; i < o.overrides.n; i++)
        free((char *)o.overrides.v[i].key);
    vec_free(&o.overrides);
    vec_free(&o.files);
    vec_free(&o.opts);
    vec_free(&o.sweeps);
    return rc;
}
