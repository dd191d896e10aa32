/* cli.h - attnsim's command line: value parsers and the per-subcommand option parser.
 *
 * Syntax (product.md): lists are comma separated; counts take k/M/G suffixes, powers of two
 * (4k = 4096). Every bad value produces one line on stderr that names the option, what is
 * wrong and what is accepted, and the command exits with status 2 before anything is written.
 */
#ifndef ATTNSIM_CLI_H
#define ATTNSIM_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "algo.h"

#define CLI_MAX_LIST 256

typedef struct {
    size_t n;
    uint64_t v[CLI_MAX_LIST];
} cli_u64_list;

/* A positive integer with an optional k, M or G suffix (x 2^10, 2^20, 2^30), at most `max`.
 * Returns 0, or -1 with a message (what is wrong; what is accepted) in err. */
int cli_parse_count(const char *text, uint64_t max, uint64_t *out, char *err, size_t errlen);
/* Like cli_parse_count but 0 is allowed (seeds). */
int cli_parse_uint(const char *text, uint64_t max, uint64_t *out, char *err, size_t errlen);
/* A comma-separated list of counts (no empty items, at most CLI_MAX_LIST). */
int cli_parse_count_list(const char *text, uint64_t max, cli_u64_list *out, char *err,
                         size_t errlen);
/* A number of seconds: a non-negative decimal number, at most `max`. */
int cli_parse_seconds(const char *text, double max, double *out, char *err, size_t errlen);
/* One of `names` (NULL-terminated): *out is its index. */
int cli_parse_choice(const char *text, const char *const *names, int *out, char *err,
                     size_t errlen);
/* A comma-separated list of `names`: *mask gets bit i for names[i]. */
int cli_parse_choice_set(const char *text, const char *const *names, unsigned *mask, char *err,
                         size_t errlen);

typedef struct {
    int is_auto; /* --grid auto */
    uint64_t rows, cols;
} cli_grid;
/* names (NULL-terminated) joined with ", " into buf. */
void cli_join_names(const char *const *names, char *buf, size_t n);
/* "RxC" with positive R and C, or "auto". */
int cli_parse_grid(const char *text, cli_grid *out, char *err, size_t errlen);

/* Choice tables, index = enum value. The algorithms, layouts and passes are the model's
 * (am_algo_names(), am_layout_names, am_pass_names: models/algo.h). */
extern const char *const cli_dtype_names[];   /* f32, f16, bf16 (= kn_dtype) */
extern const char *const cli_backend_names[]; /* cpu, cuda */
extern const char *const cli_comm_names[];    /* mpi, nccl */
extern const char *const cli_causal_names[];  /* no, yes, both */

enum { BACKEND_CPU, BACKEND_CUDA };
enum { COMM_MPI, COMM_NCCL };

/* Everything the subcommands take; each subcommand accepts a subset (cli_command.opts). */
typedef struct {
    const char *sub;                 /* subcommand name, for messages */
    unsigned algos;                  /* bit per am_algo */
    int layout;                      /* part_layout */
    cli_u64_list seq;                /* N (query tokens) */
    cli_u64_list seq_kv;             /* N_k; empty = same as seq */
    uint64_t batch, heads, kv_heads; /* kv_heads 0 = heads */
    cli_u64_list head_dim;
    unsigned causal; /* bit 0: non-causal, bit 1: causal */
    cli_grid grid;
    uint64_t ulysses_size; /* ranks per group of the grouped algorithms (0: ranks per node) */
    int pass;              /* am_pass */
    unsigned dtypes;       /* bit per cli_dtype_names */
    int backend, comm;
    const char *machine;
    int check;
    int dram;        /* kernels --backend cuda: DRAM bytes under ncu */
    int decode;      /* kernels: the decode kernels (one query token, a KV cache) */
    uint64_t slots;  /* kernels --decode: co-resident CTAs assumed (0 = the device's) */
    const char *out; /* NULL: no file */
    cli_u64_list procs;
    unsigned kernels;  /* bit per kernel name (kernels subcommand) */
    cli_u64_list sram; /* SRAM elements (kernels subcommand) */
    uint64_t reps, seed;
    uint64_t rank_arrays;    /* model: largest P stored with per-rank arrays */
    uint64_t max_message;    /* calibrate: largest message (bytes) */
    const char *machine_out; /* calibrate: machine file to write */
    double lock_timeout;     /* --lock-timeout seconds (lock_timeout_set: given) */
    int lock_timeout_set;
    int progress; /* --progress: progress lines even when stderr is not a terminal */
    /* the text of each option as given (the last occurrence; "" for one without a value),
     * NULL when not given: [id - OPT_ALGO] */
    const char *given[32];
} attn_opts;

typedef enum {
    OPT_ALGO = 256,
    OPT_LAYOUT,
    OPT_SEQ,
    OPT_SEQ_KV,
    OPT_BATCH,
    OPT_HEADS,
    OPT_KV_HEADS,
    OPT_HEAD_DIM,
    OPT_CAUSAL,
    OPT_GRID,
    OPT_PASS,
    OPT_DTYPE,
    OPT_BACKEND,
    OPT_COMM,
    OPT_MACHINE,
    OPT_CHECK,
    OPT_OUT,
    OPT_PROCS,
    OPT_KERNEL,
    OPT_SRAM,
    OPT_REPS,
    OPT_SEED,
    OPT_RANK_ARRAYS,
    OPT_MAX_MESSAGE,
    OPT_MACHINE_OUT,
    OPT_DRAM,
    OPT_DECODE,
    OPT_SLOTS,
    OPT_LOCK_TIMEOUT,
    OPT_PROGRESS,
    OPT_ULYSSES_SIZE,
    OPT_END
} opt_id;

typedef struct {
    const char *name;                /* "kernels" */
    const char *summary;             /* one line for `attnsim --help` */
    const char *usage;               /* paragraph printed by --help before the options */
    const opt_id *opts;              /* accepted options, OPT_END-terminated */
    const char *const *kernel_names; /* for --kernel, or NULL */
    uint64_t max_head_dim;
} cli_command;

/* Parses argv (argv[0] is the subcommand name) into o (defaults already set by the caller).
 * Returns 0 to go on, 1 when --help was printed (exit 0), 2 after printing an error line. */
int cli_parse(const cli_command *cmd, int argc, char **argv, attn_opts *o);

/* Every path the command writes (--out, --machine-out), checked before any work starts
 * (sim/out/outputs.h): an existing file must be what the option writes, no two options may name
 * the same file. Only where cli_set_root said so (rank 0). Returns 0, or 2 after the error line. */
int cli_check_outputs(const attn_opts *o);

/* Under MPI every rank parses the same command line, but only rank 0 speaks and only rank 0
 * looks at the output path (other nodes may not even see it): the caller then agrees on the
 * outcome with a reduction, so no rank hangs. */
void cli_set_root(int is_root);

/* Under MPI, messages wait until the ranks have compared outcomes (agree.h): with defer on,
 * cli_error keeps its line (cli_kept_line) on every rank instead of printing it. */
void cli_defer(int on);
const char *cli_kept_line(void);

/* A digest of the value of each option as parsed (not as typed: "--seq 512" and the default 512
 * agree), for comparing the ranks of one job: d[id - OPT_ALGO] for every option id. --out and
 * --machine-out are compared as absolute paths. */
#define CLI_NUM_OPTIONS (OPT_END - OPT_ALGO)
void cli_option_digests(const attn_opts *o, uint64_t d[CLI_NUM_OPTIONS]);
/* "--seq" for OPT_SEQ. */
const char *cli_option_name(opt_id id);
/* FNV-1a of n bytes, continuing from h (start with CLI_DIGEST_SEED). */
#define CLI_DIGEST_SEED 14695981039346656037ull
uint64_t cli_digest(uint64_t h, const void *p, size_t n);

/* --kv-heads: 0 (the default) becomes --heads; otherwise it must divide --heads. Returns 0, or 2
 * after printing the error line. */
int cli_resolve_kv_heads(attn_opts *o);

/* The --lock-timeout of o, or the default (h5out.h). */
double cli_lock_timeout(const attn_opts *o);

/* Prints "attnsim SUB: --opt: message" (one line) to stderr and returns 2. */
int cli_error(const attn_opts *o, const char *opt, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
