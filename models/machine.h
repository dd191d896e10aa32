/* machine.h - the machine description the time model uses (cost-model.md, "Machine
 * description"; format in docs/machine.md). A machine is nodes of gpus_per_node GPUs; ranks are
 * packed gpus_per_node per node in rank order. Plain-text files, one "key = value [unit]" per
 * line, '#' comments; every key is required, unknown keys and bad units are errors; numbers must
 * be finite and within the range of their kind, text must be printable UTF-8. */
#ifndef ATTNSIM_MACHINE_H
#define ATTNSIM_MACHINE_H

#include <stddef.h>
#include <stdint.h>

enum { TIER_INTRA = 0, TIER_INTER = 1 };

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
    char origin[300];            /* "preset NAME" or the file path */
} machine;

/* Time of one message of `bytes` on a tier whose bandwidth is shared by `sharing` senders. */
double machine_message_s(const machine *m, int tier, double bytes, double sharing);

/* Parses a machine description. `filename` names the text in messages. Returns 0, or -1 with
 * one line in err: "FILE:LINE: key 'k': what is wrong; accepted: ...". */
int machine_parse(const char *text, const char *filename, machine *m, char *err, size_t errlen);

/* The accepted range [lo, hi] of a numeric key's value in SI units (B, B/s, FLOP/s, s; a
 * fraction (0, 1] has lo 0). Returns 0, or -1 for an unknown or text key. */
int machine_key_range(const char *key, double *lo, double *hi);

/* A preset name (machine_preset_names) or a file path. Returns 0 or -1 with err. */
int machine_load(const char *name_or_path, machine *m, char *err, size_t errlen);

/* NULL-terminated list of the built-in presets, and the text of one (NULL if unknown). */
const char *const *machine_preset_names(void);
const char *machine_preset_text(const char *name);

/* Writes m in the file format (round-trips through machine_parse) from the parser's own key
 * table, in its order: the required keys, the optional ones that are set (`which`: either or
 * both); note(key, ctx), when given, returns a comment for the key's line (NULL: none). Returns
 * the bytes written (as snprintf: more than n when cut). */
enum { MACHINE_REQUIRED = 1, MACHINE_OPTIONAL = 2 };
typedef const char *(*machine_key_note)(const char *key, void *ctx);
size_t machine_write(const machine *m, int which, machine_key_note note, void *ctx, char *buf,
                     size_t n);
/* The required keys, and the optional keys that are set. */
size_t machine_format(const machine *m, char *buf, size_t n);
size_t machine_format_optional(const machine *m, char *buf, size_t n);

#endif
