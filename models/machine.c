/* machine.c - machine description parser (see machine.h, docs/machine.md). */
#include "machine.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Presets: generated from models/machines/NAME.machine (machine_presets.c, by CMake). */
extern const char *const machine_preset_name_table[];
extern const char *const machine_preset_text_table[];

typedef enum {
    V_STRING,
    V_COUNT,
    V_SIZE,
    V_BANDWIDTH,
    V_RATE,
    V_TIME,
    V_FRACTION,
    V_TIERS,
    V_RATIO,
    V_SHARE /* a number in [0, 1] */
} value_kind;

typedef struct {
    double scale;
    const char *unit;
} unit_def;

static const unit_def size_units[] = {
    {1, "B"},        {1e3, "kB"},        {1e6, "MB"},           {1e9, "GB"},
    {1024.0, "KiB"}, {1048576.0, "MiB"}, {1073741824.0, "GiB"}, {0, NULL}};
static const unit_def bandwidth_units[] = {{1, "B/s"},
                                           {1e3, "kB/s"},
                                           {1e6, "MB/s"},
                                           {1e9, "GB/s"},
                                           {1e12, "TB/s"},
                                           {1024.0, "KiB/s"},
                                           {1048576.0, "MiB/s"},
                                           {1073741824.0, "GiB/s"},
                                           {1099511627776.0, "TiB/s"},
                                           {0, NULL}};
static const unit_def rate_units[] = {
    {1, "FLOP/s"}, {1e9, "GFLOP/s"}, {1e12, "TFLOP/s"}, {1e15, "PFLOP/s"}, {0, NULL}};
static const unit_def time_units[] = {
    {1, "s"}, {1e-3, "ms"}, {1e-6, "us"}, {1e-9, "ns"}, {0, NULL}};

typedef struct {
    const char *key;
    value_kind kind;
    size_t offset;
    const char *help;
    int optional;
} key_def;

#define OFF(field) offsetof(machine, field)
static const key_def keys[] = {
    {"name", V_STRING, OFF(name), "a name", 0},
    {"gpu", V_STRING, OFF(gpu), "the GPU model", 0},
    {"gpus_per_node", V_COUNT, OFF(gpus_per_node), "GPUs per node", 0},
    {"sms", V_COUNT, OFF(sms), "streaming multiprocessors per GPU", 0},
    {"smem_per_sm", V_SIZE, OFF(smem_per_sm_bytes), "shared memory per SM", 0},
    {"l2", V_SIZE, OFF(l2_bytes), "L2 cache per GPU", 0},
    {"hbm_bandwidth", V_BANDWIDTH, OFF(hbm_bytes_per_s), "HBM bandwidth per GPU", 0},
    {"peak_f32", V_RATE, OFF(peak_flops[0]), "dense f32 peak", 0},
    {"peak_f16", V_RATE, OFF(peak_flops[1]), "dense f16 matrix peak", 0},
    {"peak_bf16", V_RATE, OFF(peak_flops[2]), "dense bf16 matrix peak", 0},
    {"sustained_fraction", V_FRACTION, OFF(sustained_fraction),
     "fraction of peak an attention kernel sustains", 0},
    {"intra_alpha", V_TIME, OFF(alpha_s[0]), "intra-node message latency", 0},
    {"intra_bandwidth", V_BANDWIDTH, OFF(bytes_per_s[0]),
     "intra-node unidirectional bandwidth per GPU", 0},
    {"inter_alpha", V_TIME, OFF(alpha_s[1]), "inter-node message latency", 0},
    {"inter_bandwidth", V_BANDWIDTH, OFF(bytes_per_s[1]),
     "inter-node unidirectional bandwidth per NIC", 0},
    {"gpus_per_nic", V_COUNT, OFF(gpus_per_nic), "GPUs sharing one NIC", 0},
    /* optional: a large-message regime per tier (all three keys or none), the cost of one
     * kernel call, and which tiers attnsim calibrate measured */
    {"intra_break", V_SIZE, OFF(break_bytes[0]), "intra-node large-message regime start", 1},
    {"intra_large_alpha", V_TIME, OFF(alpha_large_s[0]), "intra-node large-message latency", 1},
    {"intra_large_bandwidth", V_BANDWIDTH, OFF(bytes_per_s_large[0]),
     "intra-node large-message bandwidth", 1},
    {"inter_break", V_SIZE, OFF(break_bytes[1]), "inter-node large-message regime start", 1},
    {"inter_large_alpha", V_TIME, OFF(alpha_large_s[1]), "inter-node large-message latency", 1},
    {"inter_large_bandwidth", V_BANDWIDTH, OFF(bytes_per_s_large[1]),
     "inter-node large-message bandwidth", 1},
    {"backward_rate_ratio", V_RATIO, OFF(backward_rate_ratio),
     "backward FLOP rate over the forward's", 1},
    {"kernel_overhead", V_TIME, OFF(kernel_overhead_s), "fixed time of one kernel call", 1},
    {"measured_tiers", V_TIERS, OFF(measured),
     "tiers measured by attnsim calibrate: intra, inter, intra+inter or none", 1},
    {"intra_injection", V_BANDWIDTH, OFF(injection_bytes_per_s[0]),
     "what one GPU sends at once to several peers in a node, all flows together", 1},
    {"inter_injection", V_BANDWIDTH, OFF(injection_bytes_per_s[1]),
     "what one GPU sends at once to several other nodes, all flows together", 1},
    {"overlap.intra.hidden", V_SHARE, OFF(overlap_hidden[0]),
     "measured share of min(compute, transfer) hidden in an overlapped step, intra-node", 1},
    {"overlap.inter.hidden", V_SHARE, OFF(overlap_hidden[1]),
     "measured share of min(compute, transfer) hidden in an overlapped step, inter-node", 1},
    {"overlap.compute_ratio", V_RATIO, OFF(overlap_compute_ratio),
     "measured compute time of a step while its transfer runs over its time alone", 1},
};
#define KEY_GPUS_PER_NIC 15 /* index of gpus_per_nic, the last required key */
#define KEY_FIRST_REGIME 16 /* intra_break; the inter triple follows */
#define NUM_KEYS         (sizeof keys / sizeof keys[0])

/* Accepted range of each kind of value, in SI units (docs/machine.md, "Ranges"): wide enough for
 * any machine built or planned, narrow enough that every product and quotient the time model
 * forms stays finite. The text says it in the file's units. */
static const struct {
    double lo, hi;
    const char *text;
} ranges[] = {
    [V_COUNT] = {1, 1048576, "1 to 1048576"},
    [V_SIZE] = {1, 1099511627776.0, "1 B to 1024 GiB"},
    [V_BANDWIDTH] = {1e3, 1e15, "1 kB/s to 1000 TB/s"},
    [V_RATE] = {1e6, 1e18, "1e-3 GFLOP/s to 1000 PFLOP/s"},
    [V_TIME] = {1e-12, 10, "0.001 ns to 10 s"},
    [V_FRACTION] = {0, 1, "a fraction in (0, 1]"},
    [V_RATIO] = {1e-3, 1e3, "0.001 to 1000"},
    [V_SHARE] = {0, 1, "a share 0 ... 1"},
};

/* 1 when s is UTF-8 (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF) without
 * control characters. */
static int printable_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p, n, cp;
        if (c < 0x20 || c == 0x7f) return 0;
        if (c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            n = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            n = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            n = 3, cp = c & 0x07;
        else
            return 0;
        for (unsigned i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp < 0xa0))
            return 0;
        p += n + 1;
    }
    return 1;
}

static int errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static void list_units(const unit_def *u, char *buf, size_t n)
{
    buf[0] = '\0';
    for (size_t i = 0; u[i].unit; i++) {
        strncat(buf, i ? ", " : "", n - strlen(buf) - 1);
        strncat(buf, u[i].unit, n - strlen(buf) - 1);
    }
}

static const unit_def *units_of(value_kind k)
{
    switch (k) {
    case V_SIZE:
        return size_units;
    case V_BANDWIDTH:
        return bandwidth_units;
    case V_RATE:
        return rate_units;
    case V_TIME:
        return time_units;
    default:
        return NULL;
    }
}

/* Parses "number [unit]" for key k into *out (SI value). */
static int parse_value(const key_def *k, const char *value, const char *where, double *out,
                       char *err, size_t errlen)
{
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (end == value || errno == ERANGE || !isfinite(v))
        return errf(err, errlen, "%s: key '%s': '%s' is not a number; accepted: %s", where, k->key,
                    value, k->help);
    while (*end == ' ' || *end == '\t') end++;
    const unit_def *units = units_of(k->kind);
    double scale = 1.0;
    if (units) {
        char accepted[200];
        list_units(units, accepted, sizeof accepted);
        if (*end == '\0')
            return errf(err, errlen, "%s: key '%s': '%s' has no unit; accepted units: %s", where,
                        k->key, value, accepted);
        size_t i;
        for (i = 0; units[i].unit; i++)
            if (strcmp(end, units[i].unit) == 0) break;
        if (!units[i].unit)
            return errf(err, errlen, "%s: key '%s': unit '%s' is not accepted; accepted units: %s",
                        where, k->key, end, accepted);
        scale = units[i].scale;
    } else if (*end != '\0') {
        return errf(err, errlen, "%s: key '%s': '%s' has trailing '%s'; accepted: a plain number",
                    where, k->key, value, end);
    }
    /* a time (a latency, a call's overhead) may be zero: calibrate measures none on some links;
     * a share may be zero too */
    if (k->kind == V_TIME || k->kind == V_SHARE ? !(v >= 0) : !(v > 0))
        return errf(err, errlen, "%s: key '%s': %s must be %s", where, k->key, value,
                    k->kind == V_TIME || k->kind == V_SHARE ? "zero or positive" : "positive");
    if (k->kind == V_COUNT && v != floor(v))
        return errf(err, errlen,
                    "%s: key '%s': '%s' is not a whole number; accepted: a positive "
                    "integer",
                    where, k->key, value);
    if (k->kind == V_SHARE && (v < 0 || v > 1))
        return errf(err, errlen, "%s: key '%s': %s is outside [0, 1]; accepted: a share 0 ... 1",
                    where, k->key, value);
    if (k->kind == V_FRACTION && v > 1)
        return errf(err, errlen, "%s: key '%s': %s is above 1; accepted: a fraction in (0, 1]",
                    where, k->key, value);
    double si = v * scale;
    if (!isfinite(si) || (si < ranges[k->kind].lo && !(k->kind == V_TIME && si == 0)) ||
        si > ranges[k->kind].hi)
        return errf(err, errlen, "%s: key '%s': %s is out of range; accepted: %s (%s)", where,
                    k->key, value, ranges[k->kind].text, k->help);
    *out = si;
    return 0;
}

static void trim(char **s)
{
    while (**s == ' ' || **s == '\t') (*s)++;
    char *e = *s + strlen(*s);
    while (e > *s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) *--e = '\0';
}

/* The fields of a pattern line link.TIER.PATTERN[.gN].FIELD (docs/machine.md). */
static const key_def link_fields[] = {
    {"alpha", V_TIME, offsetof(link_rate, alpha_s), "latency of one step of the pattern", 0},
    {"bandwidth", V_BANDWIDTH, offsetof(link_rate, bytes_per_s),
     "bandwidth of one step (intra: per rank, inter: per NIC)", 0},
    {"break", V_SIZE, offsetof(link_rate, break_bytes), "large-message regime start", 1},
    {"large_alpha", V_TIME, offsetof(link_rate, alpha_large_s), "large-message latency", 1},
    {"large_bandwidth", V_BANDWIDTH, offsetof(link_rate, bytes_per_s_large),
     "large-message bandwidth", 1},
};
#define NUM_LINK_FIELDS 5
static const char *const tier_names[2] = {"intra", "inter"};
#define LINK_KEY_HELP                                                                              \
    "link.TIER.PATTERN[.gN].FIELD with TIER intra or inter, PATTERN ring_shift, allgather, "       \
    "reduce_scatter, return_hop, pairwise or alltoall, N >= 2 the group size, FIELD alpha, "       \
    "bandwidth, break, large_alpha or large_bandwidth"

/* A pattern line: finds or adds its entry, parses the value into the field. seen[i][f] is the
 * line of field f of entry i. */
static int parse_link_key(machine *m, const char *key, const char *value, const char *where,
                          int lineno, int (*seen)[NUM_LINK_FIELDS], char *err, size_t errlen)
{
    char buf[128], *part[6];
    int np = 0;
    if (strlen(key) >= sizeof buf)
        return errf(err, errlen, "%s: '%s' is not a pattern line; accepted: %s", where, key,
                    LINK_KEY_HELP);
    snprintf(buf, sizeof buf, "%s", key);
    for (char *q = buf, *dot; np < 6; q = dot + 1) {
        part[np++] = q;
        dot = strchr(q, '.');
        if (!dot) break;
        *dot = '\0';
    }
    int tier = -1, pattern = -1, field = -1;
    uint64_t group = 0;
    if (np == 4 || np == 5) {
        for (int t = 0; t < 2; t++)
            if (!strcmp(part[1], tier_names[t])) tier = t;
        for (int k = 1; k < AM_NUM_PATTERNS; k++)
            if (!strcmp(part[2], am_pattern_names[k])) pattern = k;
        for (int f = 0; f < NUM_LINK_FIELDS; f++)
            if (!strcmp(part[np - 1], link_fields[f].key)) field = f;
        if (np == 5) {
            char *end;
            errno = 0;
            unsigned long long g = part[3][0] == 'g' && isdigit((unsigned char)part[3][1])
                                       ? strtoull(part[3] + 1, &end, 10)
                                       : 0;
            if (g >= 2 && g <= 1048576 && errno == 0 && *end == '\0') group = g;
            if (!group) tier = -1;
        }
    }
    if (tier < 0 || pattern < 0 || field < 0)
        return errf(err, errlen, "%s: '%s' is not a pattern line; accepted: %s", where, key,
                    LINK_KEY_HELP);
    int i;
    for (i = 0; i < m->n_links; i++)
        if (m->links[i].tier == tier && m->links[i].pattern == pattern &&
            m->links[i].group == group)
            break;
    if (i == m->n_links) {
        if (m->n_links == MACHINE_MAX_LINKS)
            return errf(err, errlen,
                        "%s: more than %d pattern lines (tier, pattern, group); "
                        "accepted: at most %d",
                        where, MACHINE_MAX_LINKS, MACHINE_MAX_LINKS);
        memset(&m->links[i], 0, sizeof m->links[i]);
        memset(seen[i], 0, sizeof seen[i]);
        m->links[i].tier = tier, m->links[i].pattern = pattern, m->links[i].group = group;
        m->n_links++;
    }
    if (seen[i][field])
        return errf(err, errlen,
                    "%s: key '%s' appears twice (first on line %d); accepted: each key once", where,
                    key, seen[i][field]);
    seen[i][field] = lineno;
    key_def k = link_fields[field];
    k.key = key;
    double v;
    if (!*value)
        return errf(err, errlen, "%s: key '%s' has no value; accepted: %s", where, key, k.help);
    if (parse_value(&k, value, where, &v, err, errlen)) return -1;
    *(double *)((char *)&m->links[i].r + k.offset) = v;
    return 0;
}

int machine_parse(const char *text, const char *filename, machine *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    m->backward_rate_ratio = 1.0;
    m->overlap_hidden[0] = m->overlap_hidden[1] = -1.0;
    m->overlap_compute_ratio = 1.0;
    char perr[200];
    if (profile_load("attnsim", &m->prof, perr, sizeof perr)) profile_default(&m->prof);
    int link_seen[MACHINE_MAX_LINKS][NUM_LINK_FIELDS];
    int seen_line[NUM_KEYS] = {0};
    int lineno = 0;
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char line[512];
        lineno++;
        char where[400];
        snprintf(where, sizeof where, "%s:%d", filename, lineno);
        if (len >= sizeof line)
            return errf(err, errlen, "%s: line longer than %zu characters", where, sizeof line - 1);
        memcpy(line, p, len);
        line[len] = '\0';
        p = nl ? nl + 1 : p + len;
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *s = line;
        trim(&s);
        if (*s == '\0') continue;
        char *eq = strchr(s, '=');
        if (!eq)
            return errf(err, errlen,
                        "%s: '%s' is not 'key = value'; accepted: one 'key = value "
                        "[unit]' per line, '#' comments",
                        where, s);
        *eq = '\0';
        char *key = s, *value = eq + 1;
        trim(&key);
        trim(&value);
        if (!strncmp(key, "link.", 5)) {
            if (parse_link_key(m, key, value, where, lineno, link_seen, err, errlen)) return -1;
            continue;
        }
        size_t ki;
        for (ki = 0; ki < NUM_KEYS; ki++)
            if (strcmp(key, keys[ki].key) == 0) break;
        if (ki == NUM_KEYS) {
            char all[1400] = "";
            for (size_t i = 0; i < NUM_KEYS; i++) {
                strncat(all, i ? ", " : "", sizeof all - strlen(all) - 1);
                strncat(all, keys[i].key, sizeof all - strlen(all) - 1);
            }
            strncat(all, ", and pattern lines " LINK_KEY_HELP, sizeof all - strlen(all) - 1);
            return errf(err, errlen,
                        "%s: '%s' is not a key of a machine description; accepted "
                        "keys: %s",
                        where, key, all);
        }
        const key_def *k = &keys[ki];
        if (seen_line[ki])
            return errf(err, errlen,
                        "%s: key '%s' appears twice (first on line %d); accepted: "
                        "each key once",
                        where, k->key, seen_line[ki]);
        seen_line[ki] = lineno;
        if (*value == '\0')
            return errf(err, errlen, "%s: key '%s' has no value; accepted: %s", where, k->key,
                        k->help);
        char *field = (char *)m + k->offset;
        if (k->kind == V_TIERS) {
            int intra = !strcmp(value, "intra") || !strcmp(value, "intra+inter");
            int inter = !strcmp(value, "inter") || !strcmp(value, "intra+inter");
            if (!intra && !inter && strcmp(value, "none"))
                return errf(err, errlen,
                            "%s: key '%s': '%s' is not accepted; accepted: intra, "
                            "inter, intra+inter, none",
                            where, k->key, value);
            m->measured[0] = intra, m->measured[1] = inter, m->calibrated = 1;
            continue;
        }
        if (k->kind == V_STRING) {
            if (strlen(value) >= 64)
                return errf(err, errlen, "%s: key '%s': value longer than 63 characters", where,
                            k->key);
            if (!printable_utf8(value))
                return errf(err, errlen,
                            "%s: key '%s': the value is not printable UTF-8 text; accepted: "
                            "UTF-8 without control characters",
                            where, k->key);
            snprintf(field, 64, "%s", value);
            continue;
        }
        double v = 0.0;
        if (parse_value(k, value, where, &v, err, errlen)) return -1;
        if (k->kind == V_COUNT)
            *(uint64_t *)field = (uint64_t)v;
        else
            *(double *)field = v;
    }
    for (size_t ki = 0; ki < NUM_KEYS; ki++)
        if (!seen_line[ki] && !keys[ki].optional)
            return errf(err, errlen,
                        "%s: key '%s' is missing; accepted: every key of "
                        "docs/machine.md once (%s)",
                        filename, keys[ki].key, keys[ki].help);
    if (m->gpus_per_nic > m->gpus_per_node)
        return errf(err, errlen,
                    "%s:%d: key 'gpus_per_nic': %llu GPUs per NIC but %llu per node; "
                    "accepted: at most gpus_per_node",
                    filename, seen_line[KEY_GPUS_PER_NIC], (unsigned long long)m->gpus_per_nic,
                    (unsigned long long)m->gpus_per_node);
    for (int t = 0; t < 2; t++) { /* a regime is all three keys or none */
        size_t k0 = KEY_FIRST_REGIME + 3 * (size_t)t;
        int n = !!seen_line[k0] + !!seen_line[k0 + 1] + !!seen_line[k0 + 2];
        if (n != 0 && n != 3)
            return errf(err, errlen,
                        "%s: keys '%s', '%s' and '%s' go together; accepted: all "
                        "three or none",
                        filename, keys[k0].key, keys[k0 + 1].key, keys[k0 + 2].key);
    }
    for (int i = 0; i < m->n_links; i++) { /* alpha and bandwidth; a regime all or none */
        const machine_link *l = &m->links[i];
        char name[96];
        snprintf(name, sizeof name, "link.%s.%s", tier_names[l->tier],
                 am_pattern_names[l->pattern]);
        if (l->group)
            snprintf(name + strlen(name), sizeof name - strlen(name), ".g%llu",
                     (unsigned long long)l->group);
        int first = 0; /* the line of the entry's first key */
        for (int k = 0; k < NUM_LINK_FIELDS; k++)
            if (link_seen[i][k] && (!first || link_seen[i][k] < first)) first = link_seen[i][k];
        if (!link_seen[i][0] || !link_seen[i][1])
            return errf(err, errlen,
                        "%s:%d: pattern line %s has no %s; accepted: %s.alpha and %s.bandwidth, "
                        "and optionally .break, .large_alpha and .large_bandwidth together",
                        filename, first, name, link_seen[i][0] ? "bandwidth" : "alpha", name, name);
        int n = !!link_seen[i][2] + !!link_seen[i][3] + !!link_seen[i][4];
        if (n != 0 && n != 3)
            return errf(err, errlen,
                        "%s:%d: keys '%s.break', '%s.large_alpha' and '%s.large_bandwidth' go "
                        "together; accepted: all three or none",
                        filename, first, name, name, name);
    }
    snprintf(m->origin, sizeof m->origin, "%s", filename);
    return 0;
}

link_rate machine_tier_rate(const machine *m, int tier)
{
    link_rate r = {m->alpha_s[tier], m->bytes_per_s[tier], m->break_bytes[tier],
                   m->alpha_large_s[tier], m->bytes_per_s_large[tier]};
    return r;
}

double link_rate_alpha(const link_rate *r, double bytes)
{
    return r->break_bytes > 0 && bytes >= r->break_bytes ? r->alpha_large_s : r->alpha_s;
}

double link_rate_time(const link_rate *r, double bytes, double sharing)
{
    int large = r->break_bytes > 0 && bytes >= r->break_bytes;
    double bw = large ? r->bytes_per_s_large : r->bytes_per_s;
    return (large ? r->alpha_large_s : r->alpha_s) + bytes * (sharing > 1 ? sharing : 1.0) / bw;
}

link_rate machine_link_rate(const machine *m, int tier, int pattern, uint64_t g,
                            const machine_link **which)
{
    const machine_link *exact = NULL, *any = NULL, *shift = NULL;
    for (int i = 0; i < m->n_links; i++) {
        const machine_link *l = &m->links[i];
        if (l->tier != tier) continue;
        if (l->pattern == pattern && l->group == g) exact = l;
        if (l->pattern == pattern && l->group == 0) any = l;
        if (pattern == PAT_RETURN_HOP && l->pattern == PAT_RING_SHIFT &&
            (l->group == g || (l->group == 0 && !shift)))
            shift = l;
    }
    const machine_link *use = exact ? exact : any ? any : shift;
    if (which) *which = use;
    return use ? use->r : machine_tier_rate(m, tier);
}

void machine_tier_only(const machine *m, machine *out)
{
    *out = *m;
    out->n_links = 0;
    out->injection_bytes_per_s[0] = out->injection_bytes_per_s[1] = 0;
    out->overlap_hidden[0] = out->overlap_hidden[1] = -1.0;
    out->overlap_compute_ratio = 1.0;
    profile_default(&out->prof);
    out->prof.overlap[0] = (prof_overlap){PROF_ALL, -1, 1.0};
    out->prof.n_overlap = 1;
    snprintf(out->prof.name, sizeof out->prof.name, "ideal");
}

int machine_key_range(const char *key, double *lo, double *hi)
{
    for (size_t i = 0; i < NUM_KEYS; i++)
        if (strcmp(key, keys[i].key) == 0) {
            if (keys[i].kind == V_STRING || keys[i].kind == V_TIERS) return -1;
            *lo = ranges[keys[i].kind].lo, *hi = ranges[keys[i].kind].hi;
            return 0;
        }
    return -1;
}

double machine_message_s(const machine *m, int tier, double bytes, double sharing)
{
    int large = m->break_bytes[tier] > 0 && bytes >= m->break_bytes[tier];
    double alpha = large ? m->alpha_large_s[tier] : m->alpha_s[tier];
    double bw = large ? m->bytes_per_s_large[tier] : m->bytes_per_s[tier];
    if (tier == TIER_INTER && sharing > 1) bw /= sharing;
    return alpha + bytes / bw;
}

const char *const *machine_preset_names(void)
{
    return machine_preset_name_table;
}

const char *machine_preset_text(const char *name)
{
    for (size_t i = 0; machine_preset_name_table[i]; i++)
        if (strcmp(name, machine_preset_name_table[i]) == 0) return machine_preset_text_table[i];
    return NULL;
}

int machine_open_regular(const char *path, FILE **f, const char **what)
{
    /* refused before it is read: reading a FIFO without a writer, or a device, would wait or
     * never end */
    *f = NULL;
    *what = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0)
        *what = "a file whose type cannot be read";
    else if (!S_ISREG(st.st_mode))
        *what = S_ISDIR(st.st_mode)    ? "a directory"
                : S_ISFIFO(st.st_mode) ? "a FIFO (named pipe)"
                : S_ISCHR(st.st_mode)  ? "a character device"
                : S_ISBLK(st.st_mode)  ? "a block device"
                : S_ISSOCK(st.st_mode) ? "a socket"
                                       : "not a regular file";
    if (*what) {
        close(fd);
        return 1;
    }
    int flags = fcntl(fd, F_GETFL); /* a regular file: ordinary blocking reads from here on */
    if (flags != -1) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    *f = fdopen(fd, "rb");
    if (!*f) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return 0;
}

int machine_load(const char *name_or_path, machine *m, char *err, size_t errlen)
{
    const char *preset = machine_preset_text(name_or_path);
    if (preset) {
        char origin[96];
        snprintf(origin, sizeof origin, "preset %s", name_or_path);
        return machine_parse(preset, origin, m, err, errlen);
    }
    FILE *f;
    const char *what;
    if (machine_open_regular(name_or_path, &f, &what) > 0)
        return errf(err, errlen, "'%s' is %s; accepted: a preset name or a regular machine file",
                    name_or_path, what);
    if (!f) {
        char names[400] = "";
        for (size_t i = 0; machine_preset_name_table[i]; i++) {
            strncat(names, i ? ", " : "", sizeof names - strlen(names) - 1);
            strncat(names, machine_preset_name_table[i], sizeof names - strlen(names) - 1);
        }
        return errf(err, errlen,
                    "'%s' is neither a preset nor a readable file (%s); accepted: "
                    "%s, or a machine file",
                    name_or_path, strerror(errno), names);
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            if (cap > (1u << 20)) {
                fclose(f);
                free(text);
                return errf(err, errlen, "%s: larger than 1 MiB; accepted: a machine file",
                            name_or_path);
            }
            char *t = realloc(text, cap);
            if (!t) {
                fclose(f);
                free(text);
                return errf(err, errlen, "%s: out of memory", name_or_path);
            }
            text = t;
        }
        size_t n = fread(text + len, 1, 4096, f);
        len += n;
        if (n < 4096) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(text);
        return errf(err, errlen, "%s: read error", name_or_path);
    }
    text[len] = '\0';
    if (strlen(text) != len) {
        free(text);
        return errf(err, errlen, "%s: contains NUL bytes; accepted: a text machine file",
                    name_or_path);
    }
    int rc = machine_parse(text, name_or_path, m, err, errlen);
    free(text);
    return rc;
}

/* One line of key k (value in the base unit of its kind, full precision), with the note as a
 * comment; nothing for an optional key at its default (0; 1 for a ratio; below 0 for a share;
 * no measured_tiers unless calibrated) unless `set`. Returns the bytes snprintf would write. */
static size_t format_key(const machine *m, const key_def *k, int set, const char *note, char *buf,
                         size_t n)
{
    const char *field = (const char *)m + k->offset;
    char value[96];
    double v = k->kind == V_STRING || k->kind == V_COUNT || k->kind == V_TIERS
                   ? 0.0
                   : *(const double *)field;
    switch (k->kind) {
    case V_STRING:
        snprintf(value, sizeof value, "%s", field);
        break;
    case V_COUNT:
        snprintf(value, sizeof value, "%llu", (unsigned long long)*(const uint64_t *)field);
        break;
    case V_TIERS:
        if (!m->calibrated) return 0;
        snprintf(value, sizeof value, "%s",
                 m->measured[0] && m->measured[1] ? "intra+inter"
                 : m->measured[0]                 ? "intra"
                 : m->measured[1]                 ? "inter"
                                                  : "none");
        break;
    default: {
        static const char *const base_unit[] = {
            [V_SIZE] = " B",   [V_BANDWIDTH] = " B/s", [V_RATE] = " FLOP/s", [V_TIME] = " s",
            [V_FRACTION] = "", [V_RATIO] = "",         [V_SHARE] = ""};
        /* a share is unset below 0 (a measured share may be 0) */
        if (k->optional && !set &&
            (k->kind == V_RATIO   ? v == 1.0
             : k->kind == V_SHARE ? v < 0
                                  : !(v > 0)))
            return 0;
        snprintf(value, sizeof value, "%.17g%s", v, base_unit[k->kind]);
    }
    }
    if (note) return (size_t)snprintf(buf, n, "%s = %s   # %s\n", k->key, value, note);
    return (size_t)snprintf(buf, n, "%s = %s\n", k->key, value);
}

size_t machine_format_link(const machine_link *l, const char *prefix, char *buf, size_t n)
{
    size_t len = 0;
    char name[96];
    snprintf(name, sizeof name, "link.%s.%s", tier_names[l->tier], am_pattern_names[l->pattern]);
    if (l->group)
        snprintf(name + strlen(name), sizeof name - strlen(name), ".g%llu",
                 (unsigned long long)l->group);
    /* the fields as the parser's table names them, in SI units */
    for (int f = 0; f < (l->r.break_bytes > 0 ? NUM_LINK_FIELDS : 2); f++) {
        double v = *(const double *)((const char *)&l->r + link_fields[f].offset);
        const char *unit = link_fields[f].kind == V_TIME        ? "s"
                           : link_fields[f].kind == V_BANDWIDTH ? "B/s"
                                                                : "B";
        int w = snprintf(len < n ? buf + len : NULL, len < n ? n - len : 0, "%s%s.%s = %.17g %s\n",
                         prefix, name, link_fields[f].key, v, unit);
        len += w > 0 ? (size_t)w : 0;
    }
    return len;
}

size_t machine_write(const machine *m, int which, machine_key_note note, void *ctx, char *buf,
                     size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < NUM_KEYS; i++) {
        if (!(which & (keys[i].optional ? MACHINE_OPTIONAL : MACHINE_REQUIRED))) continue;
        const char *text = note ? note(keys[i].key, ctx) : NULL;
        /* a large-message regime's three keys go together (a zero latency included) */
        int regime = i >= KEY_FIRST_REGIME && i < KEY_FIRST_REGIME + 6;
        int set = regime && m->break_bytes[(i - KEY_FIRST_REGIME) / 3] > 0;
        if (regime && !set) continue;
        len +=
            format_key(m, &keys[i], set, text, len < n ? buf + len : NULL, len < n ? n - len : 0);
    }
    if (which & MACHINE_OPTIONAL) /* the pattern lines */
        for (int i = 0; i < m->n_links; i++)
            len += machine_format_link(&m->links[i], "", len < n ? buf + len : NULL,
                                       len < n ? n - len : 0);
    return len;
}

size_t machine_format(const machine *m, char *buf, size_t n)
{
    return machine_write(m, MACHINE_REQUIRED, NULL, NULL, buf, n);
}

size_t machine_format_optional(const machine *m, char *buf, size_t n)
{
    return machine_write(m, MACHINE_OPTIONAL, NULL, NULL, buf, n);
}
