/* machine.h - the machine description the time model uses (cost-model.md, "Machine
 * description"; format in docs/machine.md). A machine is nodes of gpus_per_node GPUs; ranks are
 * packed gpus_per_node per node in rank order. Plain-text files, one "key = value [unit]" per
 * line, '#' comments; every key is required, unknown keys and bad units are errors; numbers must
 * be finite and within the range of their kind, text must be printable UTF-8. */
#ifndef ATTNSIM_MACHINE_H
#define ATTNSIM_MACHINE_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "profile.h"

enum { TIER_INTRA = 0, TIER_INTER = 1 };

/* One link rate: a message of m bytes takes alpha + m / bandwidth, and from break_bytes on
 * (when > 0) alpha_large + m / bandwidth_large. */
typedef struct {
    double alpha_s, bytes_per_s;
    double break_bytes, alpha_large_s, bytes_per_s_large;
} link_rate;

/* The rate of one communication pattern on a tier (machine files: link.TIER.PATTERN[.gN].FIELD,
 * docs/machine.md): one step of the pattern over a group of `group` members (0: any size), with
 * every group of its communicator busy at once, as the algorithms run it. Intra-node: the rate
 * of one rank's flow; inter-node: the rate of a NIC, divided among the ranks that cross through
 * it in the same step (gpus_per_nic), as the tier's own inter_bandwidth. */
#define MACHINE_MAX_LINKS 48
typedef struct {
    int tier;       /* TIER_INTRA, TIER_INTER */
    int pattern;    /* am_pattern (algo.h), never PAT_NONE */
    uint64_t group; /* members, or 0: any group size */
    link_rate r;
} machine_link;

typedef struct {
    char name[64];
    char gpu[64];
    uint64_t gpus_per_node;
    uint64_t sms;
    double smem_per_sm_bytes;
    double l2_bytes;
    double hbm_bytes_per_s;
    double peak_flops[3];      /* dense matrix FLOP/s by storage type: f32, f16, bf16 */
    double sustained_fraction; /* of peak, reached by a real attention kernel */
    double alpha_s[2];         /* latency per message, by tier */
    double bytes_per_s[2];     /* unidirectional bandwidth per GPU (intra) or per NIC (inter) */
    uint64_t gpus_per_nic;     /* GPUs sharing one NIC for inter-node traffic */
    /* Optional (absent in the presets; written by attnsim calibrate): */
    double break_bytes[2];       /* a tier's large-message regime starts here (0: one regime) */
    double alpha_large_s[2];     /* ... and has its own latency */
    double bytes_per_s_large[2]; /* ... and bandwidth */
    double kernel_overhead_s;    /* fixed cost of one local attention kernel call */
    double backward_rate_ratio;  /* backward FLOP rate over forward (1 when absent) */
    int calibrated;              /* the file says which tiers were measured (measured_tiers) */
    int measured[2];             /* tier measured by calibrate (meaningful when calibrated) */
    /* Optional: pattern-aware links (absent: every pattern gets its tier's rate above) */
    int n_links;
    machine_link links[MACHINE_MAX_LINKS];
    double injection_bytes_per_s[2]; /* all the flows one GPU sends at once, by tier (0: none) */
    /* Optional: overlap as attnsim calibrate measured it (a step that computes while its
     * transfer runs): the share of min(compute, transfer) that is hidden, by tier of the
     * transfer (< 0: not measured), and the compute time while a transfer runs over alone. */
    double overlap_hidden[2];
    double overlap_compute_ratio; /* 1 when not measured */
    /* The implementation profile predictions use (profile.h): attnsim's own unless --profile */
    impl_profile prof;
    char origin[300]; /* "preset NAME" or the file path */
} machine;

/* Time of one message of `bytes` on a tier whose bandwidth is shared by `sharing` senders. */
double machine_message_s(const machine *m, int tier, double bytes, double sharing);

/* The tier's own rate (intra_alpha, intra_bandwidth and its regime). */
link_rate machine_tier_rate(const machine *m, int tier);
/* Time of `bytes` at rate r with its bandwidth divided by `sharing` (>= 1). */
double link_rate_time(const link_rate *r, double bytes, double sharing);
/* The latency part of that time (the regime's alpha). */
double link_rate_alpha(const link_rate *r, double bytes);

/* The rate of one step of `pattern` over a group of g on `tier`: the pattern's line for g, else
 * its line for any group size, else (a return hop) the ring shift's, else the tier's own rate.
 * *which (may be NULL) gets the line used, or NULL for the tier's rate. */
link_rate machine_link_rate(const machine *m, int tier, int pattern, uint64_t g,
                            const machine_link **which);

/* The machine without its pattern lines and measured overlap, predicting with the ideal
 * profile: the one-rate-per-tier model every machine file had before pattern-aware links
 * (kept to compare against). */
void machine_tier_only(const machine *m, machine *out);

/* Parses a machine description. `filename` names the text in messages. Returns 0, or -1 with
 * one line in err: "FILE:LINE: key 'k': what is wrong; accepted: ...". */
int machine_parse(const char *text, const char *filename, machine *m, char *err, size_t errlen);

/* The accepted range [lo, hi] of a numeric key's value in SI units (B, B/s, FLOP/s, s; a
 * fraction (0, 1] has lo 0). Returns 0, or -1 for an unknown or text key. */
int machine_key_range(const char *key, double *lo, double *hi);

/* Opens a machine or profile file for reading: 0 and *f; -1 (errno) when it cannot be opened;
 * 1 and *what ("a FIFO (named pipe)", "a directory", ...) when it is not a regular file, which
 * is refused before any read (a FIFO without a writer or a device would wait or never end). */
int machine_open_regular(const char *path, FILE **f, const char **what);
/* A preset name (machine_preset_names) or a file path. Returns 0 or -1 with err. */
int machine_load(const char *name_or_path, machine *m, char *err, size_t errlen);

/* NULL-terminated list of the built-in presets, and the text of one (NULL if unknown). */
const char *const *machine_preset_names(void);
const char *machine_preset_text(const char *name);

/* Writes m in the file format (round-trips through machine_parse) from the parser's own key
 * table, in its order: the required keys, the optional ones that are set (`which`: either or
 * both; the optional ones end with the pattern lines); note(key, ctx), when given, returns a
 * comment for the key's line (NULL: none). Returns the bytes written (as snprintf: more than n
 * when cut). */
enum { MACHINE_REQUIRED = 1, MACHINE_OPTIONAL = 2 };
typedef const char *(*machine_key_note)(const char *key, void *ctx);
size_t machine_write(const machine *m, int which, machine_key_note note, void *ctx, char *buf,
                     size_t n);
/* The required keys, and the optional keys that are set (pattern lines and measured overlap
 * included). */
size_t machine_format(const machine *m, char *buf, size_t n);
size_t machine_format_optional(const machine *m, char *buf, size_t n);
/* The lines of one pattern line's fields (link.TIER.PATTERN[.gN].FIELD = value unit), each
 * starting with `prefix` ("# " writes them commented out); returns the bytes (as snprintf). */
size_t machine_format_link(const machine_link *l, const char *prefix, char *buf, size_t n);

#endif
