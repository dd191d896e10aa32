/* cli.c - the option parser (see cli.h): the option table and what reads it (help, parsing,
 * the digests ranks compare, the output paths); the value parsers are in cli_values.c. ~520
 * lines on purpose: every use of the option table is in this one file. */
#include "cli.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "outputs.h"

const char *const cli_dtype_names[] = {"f32", "f16", "bf16", NULL};
const char *const cli_backend_names[] = {"cpu", "cuda", NULL};
const char *const cli_comm_names[] = {"mpi", "nccl", NULL};
const char *const cli_causal_names[] = {"no", "yes", "both", NULL};

static int cli_root = 1;
static int cli_deferred;
static char cli_kept[1500];

void cli_set_root(int is_root)
{
    cli_root = is_root;
}

void cli_defer(int on)
{
    cli_deferred = on;
    if (on) cli_kept[0] = '\0';
}

const char *cli_kept_line(void)
{
    return cli_kept;
}

int cli_error(const attn_opts *o, const char *opt, const char *fmt, ...)
{
    if (!cli_root && !cli_deferred) return 2;
    char msg[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char shown[1400]; /* one line of text, whatever the user typed */
    outputs_display(msg, shown, sizeof shown);
    char line[sizeof cli_kept];
    if (opt)
        snprintf(line, sizeof line, "attnsim %s: %s: %s", o->sub, opt, shown);
    else
        snprintf(line, sizeof line, "attnsim %s: %s", o->sub, shown);
    if (cli_deferred) {
        if (!cli_kept[0]) snprintf(cli_kept, sizeof cli_kept, "%s", line); /* the first */
        return 2;
    }
    fprintf(stderr, "%s\n", line);
    return 2;
}

int cli_resolve_kv_heads(attn_opts *o)
{
    if (o->kv_heads == 0) o->kv_heads = o->heads;
    if (o->kv_heads > o->heads || o->heads % o->kv_heads != 0)
        return cli_error(o, "--kv-heads",
                         "%llu does not divide --heads %llu; accepted: a divisor of the query "
                         "head count",
                         (unsigned long long)o->kv_heads, (unsigned long long)o->heads);
    return 0;
}

/* ---- the option table ------------------------------------------------------------------ */

typedef struct {
    opt_id id;
    const char *name;
    int has_arg; /* no_argument, required_argument, optional_argument */
    const char *arg;
    const char *help;
} opt_info;

static const opt_info options[] = {
    {OPT_ALGO, "algo", required_argument, "LIST", NULL /* the registry's */},
    {OPT_LAYOUT, "layout", required_argument, "L", NULL /* the model's */},
    {OPT_KERNEL, "kernel", required_argument, "LIST", NULL /* per command */},
    {OPT_PASS, "pass", required_argument, "P", "fwd, bwd or train (fwd then bwd)"},
    {OPT_SEQ, "seq", required_argument, "LIST", "sequence lengths N (query tokens)"},
    {OPT_SEQ_KV, "seq-kv", required_argument, "LIST",
     "key/value lengths N_k (default: equal to N)"},
    {OPT_BATCH, "batch", required_argument, "B", "batch size"},
    {OPT_HEADS, "heads", required_argument, "H", "query heads"},
    {OPT_KV_HEADS, "kv-heads", required_argument, "G",
     "key/value heads; must divide H (default: H)"},
    {OPT_HEAD_DIM, "head-dim", required_argument, "LIST", "head dimensions d"},
    {OPT_CAUSAL, "causal", optional_argument, " [yes|no|both]",
     "causal mask, bottom-right aligned (--causal alone: yes; --causal=both works too)"},
    {OPT_GRID, "grid", required_argument, "RxC|auto", "device grid of Attention2D"},
    {OPT_ULYSSES_SIZE, "ulysses-size", required_argument, "U",
     "ranks per Ulysses group of the grouped algorithms, dividing P (default: ranks per node)"},
    {OPT_DTYPE, "dtype", required_argument, "LIST", "storage types: f32, f16, bf16"},
    {OPT_SRAM, "sram", required_argument, "LIST",
     "SRAM sizes M in elements (the kernels' block sizes follow from M and d)"},
    {OPT_PROCS, "procs", required_argument, "LIST", "device counts P to model"},
    {OPT_BACKEND, "backend", required_argument, "B", "device backend: cpu, cuda"},
    {OPT_COMM, "comm", required_argument, "C", "communication: mpi, nccl"},
    {OPT_MACHINE, "machine", required_argument, "NAME|FILE", "machine description"},
    {OPT_PROFILE, "profile", required_argument, "NAME|FILE",
     "implementation profile the times are predicted for (default attnsim; docs/profiles.md)"},
    {OPT_OVERLAP_PROBE, "overlap-probe", no_argument, NULL,
     "one more repetition with every overlapped step's transfer before its compute, to measure "
     "how much of it was hidden"},
    {OPT_CHECK, "check", no_argument, NULL, "compare with the float64 single-device reference"},
    {OPT_DRAM, "dram", no_argument, NULL,
     "cuda: DRAM bytes of each kernel under Nsight Compute (ncu), checked against the model"},
    {OPT_DECODE, "decode", no_argument, NULL,
     "decode kernels: one query token per sequence and head, a KV cache of --seq tokens"},
    {OPT_SLOTS, "slots", required_argument, "C",
     "decode: co-resident CTAs the schedules assume (cuda: at most what the GPU holds)"},
    {OPT_REPS, "reps", required_argument, "R", "timed repetitions (the median is reported)"},
    {OPT_SEED, "seed", required_argument, "S", "seed of the generated inputs"},
    {OPT_MAX_MESSAGE, "max-message", required_argument, "BYTES",
     "largest message measured, 1k ... 1G (k, M, G: powers of two)"},
    {OPT_MACHINE_OUT, "machine-out", required_argument, "FILE",
     "machine file to write (else it is printed)"},
    {OPT_RANK_ARRAYS, "rank-arrays", required_argument, "P",
     "store per-rank [P][F] arrays up to this P (above: the rows of 64 evenly spaced ranks)"},
    {OPT_OUT, "out", required_argument, "FILE.h5",
     "HDF5 file to create or append to (schema attnsim/1; a symlink: the file it names)"},
    {OPT_LOCK_TIMEOUT, "lock-timeout", required_argument, "SECONDS",
     "wait at most this long for another writer of the --out file (default 600; 0: do not "
     "wait); exit 1 when it expires"},
    {OPT_PROGRESS, "progress", no_argument, NULL,
     "progress and time left on stderr even when it is not a terminal"},
};
#define NUM_OPTIONS (sizeof options / sizeof options[0])

static const opt_info *find_option(opt_id id)
{
    for (size_t i = 0; i < NUM_OPTIONS; i++)
        if (options[i].id == id) return &options[i];
    return NULL;
}

static void print_help(const cli_command *cmd)
{
    printf("usage: attnsim %s [options]\n\n%s\n\noptions:\n", cmd->name, cmd->usage);
    for (const opt_id *id = cmd->opts; *id != OPT_END; id++) {
        const opt_info *oi = find_option(*id);
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", oi->name,
                 oi->has_arg == required_argument ? " " : "", oi->arg ? oi->arg : "");
        const char *help = oi->help;
        char names_help[200], all[160];
        if (*id == OPT_KERNEL || *id == OPT_ALGO || *id == OPT_LAYOUT) {
            cli_join_names(*id == OPT_KERNEL ? cmd->kernel_names
                           : *id == OPT_ALGO ? am_algo_names()
                                             : am_layout_names,
                           all, sizeof all);
            snprintf(names_help, sizeof names_help, "%s: %s",
                     *id == OPT_KERNEL ? "kernels"
                     : *id == OPT_ALGO ? "algorithms"
                                       : "sequence layout of the ring algorithms",
                     all);
            help = names_help;
        }
        printf("  %-24s %s\n", left, help);
    }
    printf("  %-24s %s\n", "-h, --help", "this help");
    printf("\nLists are comma separated; counts take k, M, G suffixes (powers of two: "
           "4k = 4096).\n");
}

static int apply(const cli_command *cmd, attn_opts *o, opt_id id, const char *arg)
{
    char err[400];
    const char *name = find_option(id)->name;
    char opt[40];
    snprintf(opt, sizeof opt, "--%s", name);
    int rc = 0, choice;
    switch (id) {
    case OPT_ALGO:
        rc = cli_parse_choice_set(arg, am_algo_names(), &o->algos, err, sizeof err);
        break;
    case OPT_LAYOUT:
        rc = cli_parse_choice(arg, am_layout_names, &o->layout, err, sizeof err);
        break;
    case OPT_KERNEL:
        rc = cli_parse_choice_set(arg, cmd->kernel_names, &o->kernels, err, sizeof err);
        break;
    case OPT_PASS:
        rc = cli_parse_choice(arg, am_pass_names, &o->pass, err, sizeof err);
        break;
    case OPT_SEQ:
        rc = cli_parse_count_list(arg, 1ull << 40, &o->seq, err, sizeof err);
        break;
    case OPT_SEQ_KV:
        rc = cli_parse_count_list(arg, 1ull << 40, &o->seq_kv, err, sizeof err);
        break;
    case OPT_BATCH:
        rc = cli_parse_count(arg, 1u << 20, &o->batch, err, sizeof err);
        break;
    case OPT_HEADS:
        rc = cli_parse_count(arg, 1u << 16, &o->heads, err, sizeof err);
        break;
    case OPT_KV_HEADS:
        rc = cli_parse_count(arg, 1u << 16, &o->kv_heads, err, sizeof err);
        break;
    case OPT_HEAD_DIM:
        rc = cli_parse_count_list(arg, cmd->max_head_dim, &o->head_dim, err, sizeof err);
        break;
    case OPT_CAUSAL:
        if (!arg) {
            o->causal = 2;
        } else if ((rc = cli_parse_choice(arg, cli_causal_names, &choice, err, sizeof err)) == 0) {
            o->causal = choice == 0 ? 1u : choice == 1 ? 2u : 3u;
        }
        break;
    case OPT_GRID:
        rc = cli_parse_grid(arg, &o->grid, err, sizeof err);
        break;
    case OPT_ULYSSES_SIZE:
        rc = cli_parse_count(arg, 1ull << 24, &o->ulysses_size, err, sizeof err);
        break;
    case OPT_DTYPE:
        rc = cli_parse_choice_set(arg, cli_dtype_names, &o->dtypes, err, sizeof err);
        break;
    case OPT_SRAM:
        rc = cli_parse_count_list(arg, 1ull << 34, &o->sram, err, sizeof err);
        break;
    case OPT_PROCS:
        rc = cli_parse_count_list(arg, 1ull << 24, &o->procs, err, sizeof err);
        break;
    case OPT_BACKEND:
        rc = cli_parse_choice(arg, cli_backend_names, &o->backend, err, sizeof err);
        break;
    case OPT_COMM:
        rc = cli_parse_choice(arg, cli_comm_names, &o->comm, err, sizeof err);
        break;
    case OPT_MACHINE:
        if (*arg == '\0')
            rc = -1, snprintf(err, sizeof err,
                              "the value is empty; accepted: a "
                              "preset name or a machine file");
        o->machine = arg;
        break;
    case OPT_PROFILE:
        if (*arg == '\0')
            rc = -1, snprintf(err, sizeof err,
                              "the value is empty; accepted: a profile preset name or a profile "
                              "file");
        o->profile = arg;
        break;
    case OPT_OVERLAP_PROBE:
        o->overlap_probe = 1;
        break;
    case OPT_CHECK:
        o->check = 1;
        break;
    case OPT_DRAM:
        o->dram = 1;
        break;
    case OPT_DECODE:
        o->decode = 1;
        break;
    case OPT_SLOTS:
        rc = cli_parse_count(arg, 1u << 20, &o->slots, err, sizeof err);
        break;
    case OPT_REPS:
        rc = cli_parse_count(arg, 1000000, &o->reps, err, sizeof err);
        break;
    case OPT_SEED:
        rc = cli_parse_uint(arg, UINT64_MAX, &o->seed, err, sizeof err);
        break;
    case OPT_MAX_MESSAGE: /* one range, stated once: the fits need both latency and bandwidth */
        rc = cli_parse_count(arg, UINT64_MAX, &o->max_message, err, sizeof err);
        if (rc == 0 && (o->max_message < 1024 || o->max_message > (1u << 30)))
            rc = -1, snprintf(err, sizeof err,
                              "'%s' is %s; accepted: 1k ... 1G bytes (the fit needs sizes on "
                              "both sides of the latency regime)",
                              arg, o->max_message < 1024 ? "below 1k" : "above 1G");
        break;
    case OPT_MACHINE_OUT:
        o->machine_out = arg; /* checked with every other output (cli_check_outputs) */
        break;
    case OPT_RANK_ARRAYS:
        rc = cli_parse_uint(arg, 1ull << 30, &o->rank_arrays, err, sizeof err);
        break;
    case OPT_LOCK_TIMEOUT:
        rc = cli_parse_seconds(arg, 1e9, &o->lock_timeout, err, sizeof err);
        o->lock_timeout_set = 1;
        break;
    case OPT_PROGRESS:
        o->progress = 1;
        break;
    case OPT_OUT:
        o->out = arg; /* checked with every other output (cli_check_outputs) */
        break;
    case OPT_END:
        break;
    }
    return rc ? cli_error(o, opt, "%s", err) : 0;
}

uint64_t cli_digest(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static uint64_t digest_list(const cli_u64_list *l)
{
    uint64_t h = cli_digest(CLI_DIGEST_SEED, &l->n, sizeof l->n);
    return cli_digest(h, l->v, l->n * sizeof l->v[0]);
}

/* A path as the file system sees it from here: relative paths made absolute. */
static uint64_t digest_path(const char *path)
{
    if (!path) return cli_digest(CLI_DIGEST_SEED, "", 1);
    uint64_t h = CLI_DIGEST_SEED;
    char cwd[4096];
    if (path[0] != '/' && getcwd(cwd, sizeof cwd))
        h = cli_digest(cli_digest(h, cwd, strlen(cwd)), "/", 1);
    return cli_digest(h, path, strlen(path) + 1);
}

_Static_assert(CLI_NUM_OPTIONS <= (int)(sizeof(((attn_opts *)0)->given) / sizeof(char *)),
               "attn_opts.given has a slot for every option");

#define DIGEST_OF(x) cli_digest(CLI_DIGEST_SEED, &(x), sizeof(x))

void cli_option_digests(const attn_opts *o, uint64_t d[CLI_NUM_OPTIONS])
{
    for (int id = OPT_ALGO; id < OPT_END; id++) {
        uint64_t h = 0;
        switch ((opt_id)id) {
        case OPT_ALGO:
            h = DIGEST_OF(o->algos);
            break;
        case OPT_LAYOUT:
            h = DIGEST_OF(o->layout);
            break;
        case OPT_SEQ:
            h = digest_list(&o->seq);
            break;
        case OPT_SEQ_KV:
            h = digest_list(&o->seq_kv);
            break;
        case OPT_BATCH:
            h = DIGEST_OF(o->batch);
            break;
        case OPT_HEADS:
            h = DIGEST_OF(o->heads);
            break;
        case OPT_KV_HEADS: { /* 0, the default, is --heads */
            uint64_t g = o->kv_heads ? o->kv_heads : o->heads;
            h = DIGEST_OF(g);
            break;
        }
        case OPT_HEAD_DIM:
            h = digest_list(&o->head_dim);
            break;
        case OPT_CAUSAL:
            h = DIGEST_OF(o->causal);
            break;
        case OPT_GRID:
            h = cli_digest(
                cli_digest(DIGEST_OF(o->grid.is_auto), &o->grid.rows, sizeof o->grid.rows),
                &o->grid.cols, sizeof o->grid.cols);
            break;
        case OPT_PASS:
            h = DIGEST_OF(o->pass);
            break;
        case OPT_DTYPE:
            h = DIGEST_OF(o->dtypes);
            break;
        case OPT_BACKEND:
            h = DIGEST_OF(o->backend);
            break;
        case OPT_COMM:
            h = DIGEST_OF(o->comm);
            break;
        case OPT_MACHINE:
            h = cli_digest(CLI_DIGEST_SEED, o->machine ? o->machine : "",
                           o->machine ? strlen(o->machine) + 1 : 1);
            break;
        case OPT_PROFILE:
            h = cli_digest(CLI_DIGEST_SEED, o->profile ? o->profile : "",
                           o->profile ? strlen(o->profile) + 1 : 1);
            break;
        case OPT_OVERLAP_PROBE:
            h = DIGEST_OF(o->overlap_probe);
            break;
        case OPT_CHECK:
            h = DIGEST_OF(o->check);
            break;
        case OPT_OUT:
            h = digest_path(o->out);
            break;
        case OPT_PROCS:
            h = digest_list(&o->procs);
            break;
        case OPT_KERNEL:
            h = DIGEST_OF(o->kernels);
            break;
        case OPT_SRAM:
            h = digest_list(&o->sram);
            break;
        case OPT_REPS:
            h = DIGEST_OF(o->reps);
            break;
        case OPT_SEED:
            h = DIGEST_OF(o->seed);
            break;
        case OPT_RANK_ARRAYS:
            h = DIGEST_OF(o->rank_arrays);
            break;
        case OPT_MAX_MESSAGE:
            h = DIGEST_OF(o->max_message);
            break;
        case OPT_MACHINE_OUT:
            h = digest_path(o->machine_out);
            break;
        case OPT_DRAM:
            h = DIGEST_OF(o->dram);
            break;
        case OPT_DECODE:
            h = DIGEST_OF(o->decode);
            break;
        case OPT_SLOTS:
            h = DIGEST_OF(o->slots);
            break;
        case OPT_ULYSSES_SIZE:
            h = DIGEST_OF(o->ulysses_size);
            break;
        case OPT_LOCK_TIMEOUT: {
            double t = cli_lock_timeout(o);
            h = DIGEST_OF(t);
            break;
        }
        case OPT_PROGRESS:
            h = DIGEST_OF(o->progress);
            break;
        case OPT_END:
            break;
        }
        d[id - OPT_ALGO] = h;
    }
}

const char *cli_option_name(opt_id id)
{
    static char name[48];
    const opt_info *oi = find_option(id);
    snprintf(name, sizeof name, "--%s", oi ? oi->name : "?");
    return name;
}

int cli_parse(const cli_command *cmd, int argc, char **argv, attn_opts *o)
{
    struct option longopts[NUM_OPTIONS + 2];
    size_t n = 0;
    for (const opt_id *id = cmd->opts; *id != OPT_END; id++) {
        const opt_info *oi = find_option(*id);
        longopts[n++] = (struct option){oi->name, oi->has_arg, NULL, (int)oi->id};
    }
    longopts[n++] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[n] = (struct option){NULL, 0, NULL, 0};
    o->sub = cmd->name;

    optind = 1;
    opterr = 0;
    for (;;) {
        int prev = optind;
        int c = getopt_long(argc, argv, ":h", longopts, NULL);
        if (c == -1) break;
        if (c == 'h') {
            if (cli_root) print_help(cmd);
            return 1;
        }
        if (c == '?') {
            const char *bad = argv[prev];
            return cli_error(o, NULL, "unknown option '%s'; see 'attnsim %s --help'", bad,
                             cmd->name);
        }
        if (c == ':') {
            const opt_info *oi = optopt >= OPT_ALGO ? find_option((opt_id)optopt) : NULL;
            return cli_error(o, NULL,
                             "option '--%s' needs a value (%s %s); see 'attnsim %s "
                             "--help'",
                             oi ? oi->name : "?", oi ? oi->arg : "", oi ? oi->help : "", cmd->name);
        }
        /* --causal takes its value as every other option does (--causal both) as well as
         * --causal=both; followed by another option (or nothing) it is yes. attnsim takes no
         * positional arguments, so a word after --causal can only be its value. */
        const char *arg = optarg;
        if (c == OPT_CAUSAL && !arg && optind < argc && argv[optind][0] != '-')
            arg = argv[optind++];
        if (c >= OPT_ALGO && c < OPT_END) o->given[c - OPT_ALGO] = arg ? arg : "";
        int rc = apply(cmd, o, (opt_id)c, arg);
        if (rc) return rc;
    }
    if (optind < argc)
        return cli_error(o, NULL,
                         "unexpected argument '%s'; options start with --; see "
                         "'attnsim %s --help'",
                         argv[optind], cmd->name);
    return 0;
}

int cli_check_outputs(const attn_opts *o)
{
    if (!cli_root) return 0;
    const output_path outs[] = {{"--out", o->out, OUTPUT_H5},
                                {"--machine-out", o->machine_out, OUTPUT_MACHINE}};
    const char *bad = NULL;
    char err[1200];
    if (outputs_check(outs, sizeof outs / sizeof outs[0], &bad, err, sizeof err))
        return cli_error(o, bad, "%s", err);
    return 0;
}
