/* help: `nnd COMMAND --help` (or -h): each subcommand's own usage, its options and
 * an example, on standard output. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct Help {
    const char *cmd, *text;
} Help;

#define COMMON                                                                                     \
    "  --set NAME=VALUE  a setting, `let` or hyper-parameter (batch, steps, opt.lr); once a "      \
    "name\n"                                                                                       \
    "  --seed N          --set seed=N\n"                                                           \
    "  --dtype f32|f64   the program's float type (default f32)\n"                                 \
    "  --precision bf16  matrix products with bf16 inputs and f32 sums (default f32)\n"

static const Help helps[] = {
    {"run", "usage: nnd run FILE.nnd [options]\n"
            "Trains the program's train block with the compiled step (LLVM), with progress,\n"
            "evals, logs, checkpoints and `save` as the block says.\n\n" COMMON
            "  --threads N       threads that compute (default: one per CPU this process may\n"
            "                    use: its affinity mask, a cgroup CPU quota)\n"
            "  --interp          the reference interpreter instead of compiled code\n"
            "  --time            compile time, time per step, samples/s, what runs the products\n"
            "  --verbose         the kernels, the planned memory, the threads and the CPUs\n"
            "                    they were sized by, who gathers the batches, how each\n"
            "                    convolution is computed\n"
            "  --profile         where each step's time goes, kernel by kernel (products\n"
            "                    and convolutions with their GFLOP/s); with a log, the\n"
            "                    logged steps' own table\n"
            "  --print-params    the trained parameters\n"
            "  --resume CKPT     continue from a checkpoint (a file, or a directory's newest)\n"
            "  --name NAME       the run's subdirectory of the `log` directory (default: the\n"
            "                    date and time it starts; resumed: the newest run); one that\n"
            "                    holds a run's log already needs --resume\n"
            "  --check-numerics  stop at the first op that makes NaN or Inf, and show it\n\n"
            "Ctrl-C stops the run after the update it is in, with a checkpoint of it where\n"
            "the program writes checkpoints (continue with --resume); again: at once.\n\n"
            "Under mpirun (mpirun -np N nnd run FILE.nnd), data-parallel on N processes:\n"
            "see docs/distributed.md.\n\n"
            "example: nnd run examples/fashion_mnist_mlp.nnd --set epochs=1 --time\n"},
    {"predict",
     "usage: nnd predict FILE.nnd [--weights W] (--data NAME | --input FILE [--labels FILE])\n"
     "                   [-o OUT.npy|OUT.csv] [--batch N] [--top K] [--metrics]\n"
     "Runs the trained model's forward function (eval mode) over new data.\n\n"
     "  --weights W       safetensors weights (default: the file `save` names)\n"
     "  --data NAME       a data set of the program\n"
     "  --input FILE      NPY, CSV or IDX samples (read with the training data's scale)\n"
     "  --labels FILE     labels for --input: prints the top-1 accuracy\n"
     "  -o OUT            outputs as NPY or CSV (CSV to standard output without -o)\n"
     "  --top K           each sample's K likeliest classes and their probabilities\n"
     "  --metrics         the train block's eval metrics over the data\n"
     "  --batch N         samples per call of the compiled code\n"
     "  --interp, --threads N\n\n"
     "example: nnd predict examples/fashion_mnist_mlp.nnd --data test --top 3 -o top3.csv\n"},
    {"build",
     "usage: nnd build FILE.nnd -o OUT.o|libOUT.a|libOUT.so [options]\n"
     "Compiles the forward function (with --train, also the step) ahead of time into\n"
     "an object or library that needs only libnnd_runtime (nnd_aot.h).\n\n"
     "  --weights W       embed these weights (else load them at run time)\n"
     "  --header H        write a C header with typed entry points\n"
     "  --name N          the C name (default: from the output's file name)\n"
     "  --train           also the training step (starting values embedded)\n"
     "  --batch N         the largest batch of one call\n"
     "  --target TRIPLE --cpu NAME [--features F]   another machine (default: this)\n" COMMON
     "\nexample: nnd build examples/fashion_mnist_mlp.nnd --weights "
     "fashion_mnist_mlp.safetensors -o mlp.o --header mlp.h\n"},
    {"sample", "usage: nnd sample FILE.nnd [--weights W] [--prompt TEXT] [--tokens N]\n"
               "                  [--temperature T] [--top-k K] [--seed S] [--no-cache]\n"
               "Generates text from a byte-level language model (x: [B, T] i32 -> [B, T, 256]).\n\n"
               "  --weights W       the weights (default: the file `save` names)\n"
               "  --prompt TEXT     the text to continue, one byte or more (default a newline)\n"
               "  --tokens N        bytes to generate (default 200)\n"
               "  --temperature T   divides the logits (default 1)\n"
               "  --top-k K         draw among the K likeliest bytes only\n"
               "  --seed S          the draws' seed (the same text for the same seed)\n"
               "  --no-cache        a forward pass over the whole context per byte, instead\n"
               "                    of one position with the key/value cache\n"
               "  --threads N, --interp\n\n"
               "example: nnd sample examples/gpt.nnd --prompt \"Q: \" --top-k 40\n"},
    {"check", "usage: nnd check FILE.nnd... [--verbose]\n"
              "Parses and checks names, types and shapes; exit 1 with diagnostics.  A file\n"
              "without a train block has its models checked on their own.  The weights file\n"
              "of a `from` clause is read for its tensors' names and shapes, so it must exist.\n\n"
              "  --verbose         which models were checked, and why others were not\n\n"
              "example: nnd check examples/xor.nnd examples/gpt.nnd\n"},
    {"graph", "usage: nnd graph FILE.nnd [--dot] [--all] [--raw] [--stats] [--no-spans]\n"
              "       nnd graph FILE.nnd --schedule [--no-spans]\n"
              "The forward/backward/update graph after simplification, or (--schedule) the\n"
              "kernels and memory plan of every compiled function.\n\n"
              "  --dot             Graphviz instead of text\n"
              "  --all             also initializers, gradients and metrics\n"
              "  --raw             before simplification\n"
              "  --stats           what simplification did\n"
              "  --no-spans        no `# file:line` after each node\n" COMMON
              "\nexample: nnd graph examples/xor.nnd --schedule\n"},
    {"gradcheck", "usage: nnd gradcheck FILE.nnd [--batch N] [--per-param N] [--eps E]\n"
                  "Autodiff's gradients against central differences, in f64.\n\n"
                  "  --batch N         samples (default 4)\n"
                  "  --per-param N     elements checked per parameter (default 24; 0: all)\n"
                  "  --eps E           the step of the differences (default 1e-6)\n\n"
                  "example: nnd gradcheck examples/fashion_mnist_mlp.nnd\n"},
    {"emit-llvm", "usage: nnd emit-llvm FILE.nnd [--set NAME=VALUE]...\n"
                  "The optimized LLVM IR of the step, eval and forward functions.\n\n"
                  "example: nnd emit-llvm examples/xor.nnd | less\n"},
    {"compare", "usage: nnd compare FILE.nnd --opt RULE --opt RULE...\n"
                "       nnd compare FILE.nnd --sweep NAME=V1,V2,... [--sweep NAME=V1,V2,...]...\n"
                "Trains once per update rule (or combination of values) from the same initial\n"
                "weights and batches, and prints a table.\n\n"
                "  --opt RULE        an optimizer expression: \"AdamW(lr = 3e-4, wd = 0.1)\"\n"
                "  --sweep N=V1,V2   a setting or hyper-parameter per row; repeated, a row per\n"
                "                    combination of their values (100 at most)\n" COMMON
                "\nexample: nnd compare examples/fashion_mnist_mlp.nnd --opt \"Adam(lr = 1e-3)\" "
                "--opt \"SGD(lr = 0.1)\"\n"},
    {"lrfind", "usage: nnd lrfind FILE.nnd [--min 1e-7] [--max 10] [--steps 100] [-o lr.svg]\n"
               "The learning-rate range test, and a suggested rate.\n\n"
               "  --min, --max      the range of opt.lr\n"
               "  --steps N         steps at most\n"
               "  -o FILE.svg       the loss against the rate\n\n"
               "example: nnd lrfind examples/fashion_mnist_mlp.nnd -o lr.svg\n"},
    {"summary", "usage: nnd summary FILE.nnd [--set NAME=VALUE]... [--dtype f64]\n"
                "One row per parameter (shape, count, trainable or frozen) and layer state;\n"
                "the totals; the optimizer's state; the training step's planned memory per\n"
                "sample (activations, gradients, temporaries); and the FLOPs per sample of\n"
                "its products (matmul, convolution) forward and backward.\n\n"
                "example: nnd summary examples/fashion_mnist_cnn.nnd\n"},
    {"explain", "usage: nnd explain FILE.nnd\n"
                "Each update rule as formulas after expansion and simplification, and its\n"
                "memory traffic per parameter.  A group's parameters whose updates differ\n"
                "(AdamW without decay_vectors) are shown apart.\n\n"
                "example: nnd explain examples/fashion_mnist_mlp.nnd\n"},
    {"plot", "usage: nnd plot DIR... [-o FILE.svg]\n"
             "Draws the scalars a `log` statement wrote, one panel per family (default output\n"
             "DIR/plot.svg).  A DIR holding metrics.csv is one run; a log directory holds a\n"
             "run per subdirectory, and its runs (and those of every DIR) are overlaid, each\n"
             "labeled with its name.  Outliers are drawn at the axis' edge, with a note.\n\n"
             "example: nnd plot runs/fashion_mnist_mlp\n"},
    {"parse", "usage: nnd parse FILE.nnd\n"
              "Prints the syntax tree.\n\n"
              "example: nnd parse examples/xor.nnd\n"},
};

bool cli_help(const char *cmd)
{
    for (size_t i = 0; i < sizeof helps / sizeof helps[0]; i++)
        if (strcmp(helps[i].cmd, cmd) == 0) {
            fputs(helps[i].text, stdout);
            return true;
        }
    return false;
}
