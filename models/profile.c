/* profile.c - implementation profiles: parser, presets, resolution (see profile.h,
 * docs/profiles.md). */
#include "profile.h"

#include "machine.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Presets: generated from models/profiles/NAME.profile (profile_presets.c, by CMake). */
extern const char *const profile_preset_name_table[];
extern const char *const profile_preset_text_table[];

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

void profile_default(impl_profile *p)
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "attnsim");
    snprintf(p->origin, sizeof p->origin, "default");
    for (int a = 0; a <= AM_NUM_ALGOS; a++) {
        p->collectives[a] = p->staircase[a] = -1;
        p->staircase_efficiency[a] = p->compute_scale[a] = -1.0;
        for (int k = 0; k < AM_NUM_PATTERNS; k++) p->link_fraction[a][k] = -1.0;
    }
    p->collective_alpha_s = p->kernel_overhead_s = -1.0;
}

/* ---- resolution ------------------------------------------------------------------------------ */

double profile_overlap(const impl_profile *p, am_algo a, am_phase_id phase)
{
    int best = -1, best_rank = -1;
    for (int i = 0; i < p->n_overlap; i++) {
        const prof_overlap *o = &p->overlap[i];
        int rank = o->algo == PROF_ALL ? 0 : o->phase < 0 ? 1 : 2;
        if (o->algo != PROF_ALL && o->algo != (int)a) continue;
        if (o->phase >= 0 && o->phase != phase) continue;
        if (rank > best_rank) best = i, best_rank = rank;
    }
    return best < 0 ? PROF_MEASURED : p->overlap[best].hidden;
}

static int pick_int(const int *v, am_algo a, int dflt)
{
    return v[a] >= 0 ? v[a] : v[PROF_ALL] >= 0 ? v[PROF_ALL] : dflt;
}

static double pick_double(const double *v, am_algo a, double dflt)
{
    return v[a] >= 0 ? v[a] : v[PROF_ALL] >= 0 ? v[PROF_ALL] : dflt;
}

prof_collectives profile_collectives(const impl_profile *p, am_algo a)
{
    return (prof_collectives)pick_int(p->collectives, a, COLL_RING);
}

prof_staircase profile_staircase(const impl_profile *p, am_algo a)
{
    return (prof_staircase)pick_int(p->staircase, a, STAIR_FUSED);
}

double profile_staircase_efficiency(const impl_profile *p, am_algo a)
{
    return pick_double(p->staircase_efficiency, a, 1.0);
}

double profile_compute_scale(const impl_profile *p, am_algo a)
{
    return pick_double(p->compute_scale, a, 1.0);
}

double profile_link_fraction(const impl_profile *p, am_algo a, am_pattern pat)
{
    double v = p->link_fraction[a][pat];
    if (v < 0) v = p->link_fraction[PROF_ALL][pat];
    return v < 0 ? 1.0 : v;
}

/* ---- parsing --------------------------------------------------------------------------------- */

static void trim(char **s)
{
    while (**s == ' ' || **s == '\t') (*s)++;
    char *e = *s + strlen(*s);
    while (e > *s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) *--e = '\0';
}

/* "number" in [lo, hi] (a share or fraction). */
static int parse_number(const char *value, double lo, int lo_open, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (end == value || *end || errno == ERANGE || !isfinite(v)) return -1;
    if (v < lo || (lo_open && v == lo) || v > hi) return -1;
    *out = v;
    return 0;
}

/* "number unit" with unit s, ms, us or ns, in [0, 10 s]. */
static int parse_time(const char *value, double *out)
{
    static const struct {
        const char *u;
        double scale;
    } units[] = {{"s", 1}, {"ms", 1e-3}, {"us", 1e-6}, {"ns", 1e-9}};
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (end == value || errno == ERANGE || !isfinite(v)) return -1;
    while (*end == ' ' || *end == '\t') end++;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(end, units[i].u) == 0) {
            double s = v * units[i].scale;
            if (!(s >= 0 && s <= 10)) return -1;
            *out = s;
            return 0;
        }
    return -1;
}

static int algo_index(const char *name)
{
    for (int a = 0; a < AM_NUM_ALGOS; a++)
        if (strcmp(name, am_algo_name((am_algo)a)) == 0) return a;
    return -1;
}

static void algo_list(char *buf, size_t n)
{
    buf[0] = '\0';
    for (int a = 0; a < AM_NUM_ALGOS; a++) {
        strncat(buf, a ? ", " : "", n - strlen(buf) - 1);
        strncat(buf, am_algo_name((am_algo)a), n - strlen(buf) - 1);
    }
}

/* Phase `name` of algorithm a, forward or backward: its id, or -1. With overlap_only, only a
 * phase that computes while it communicates. */
static int phase_id_of(int a, const char *name, char *names, size_t n)
{
    const am_algo_desc *d = am_algo_desc_of((am_algo)a);
    int found = -1;
    names[0] = '\0';
    for (int part = 0; part < 2; part++) {
        const am_phase_desc *const *t = part ? d->bwd : d->fwd;
        int count = part ? d->n_bwd : d->n_fwd;
        for (int i = 0; i < count; i++) {
            if (!t[i]->overlap) continue;
            if (strcmp(t[i]->name, name) == 0) found = t[i]->id;
            strncat(names, names[0] ? ", " : "", n - strlen(names) - 1);
            strncat(names, t[i]->name, n - strlen(names) - 1);
        }
    }
    return found;
}

static const char *const key_names[] = {"name",
                                        "overlap",
                                        "collectives",
                                        "collective_alpha",
                                        "staircase",
                                        "staircase_efficiency",
                                        "compute_scale",
                                        "link_fraction",
                                        "kernel_overhead",
                                        NULL};
enum {
    K_NAME,
    K_OVERLAP,
    K_COLLECTIVES,
    K_COLL_ALPHA,
    K_STAIRCASE,
    K_STAIR_EFF,
    K_COMPUTE_SCALE,
    K_LINK,
    K_OVERHEAD
};

int profile_parse(const char *text, const char *filename, impl_profile *p, char *err, size_t errlen)
{
    profile_default(p);
    int lineno = 0;
    const char *s = text;
    /* every full key once: remember the keys seen */
    enum { MAX_SEEN = 128 };
    char seen[MAX_SEEN][96];
    int seen_line[MAX_SEEN], n_seen = 0;
    char algos[200];
    algo_list(algos, sizeof algos);
    while (*s) {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        char line[512], where[400];
        lineno++;
        snprintf(where, sizeof where, "%s:%d", filename, lineno);
        if (len >= sizeof line)
            return errf(err, errlen, "%s: line longer than %zu characters", where, sizeof line - 1);
        memcpy(line, s, len);
        line[len] = '\0';
        s = nl ? nl + 1 : s + len;
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *t = line;
        trim(&t);
        if (!*t) continue;
        char *eq = strchr(t, '=');
        if (!eq)
            return errf(err, errlen,
                        "%s: '%s' is not 'key = value'; accepted: one 'key = value' per line, "
                        "'#' comments (docs/profiles.md)",
                        where, t);
        *eq = '\0';
        char *key = t, *value = eq + 1;
        trim(&key);
        trim(&value);
        if (strlen(key) >= 96) return errf(err, errlen, "%s: key longer than 95 characters", where);
        for (int i = 0; i < n_seen; i++)
            if (strcmp(seen[i], key) == 0)
                return errf(err, errlen,
                            "%s: key '%s' appears twice (first on line %d); accepted: each key "
                            "once",
                            where, key, seen_line[i]);
        if (n_seen == MAX_SEEN)
            return errf(err, errlen, "%s: more than %d keys; accepted: at most %d", where, MAX_SEEN,
                        MAX_SEEN);
        snprintf(seen[n_seen], sizeof seen[n_seen], "%s", key);
        seen_line[n_seen++] = lineno;
        if (!*value) return errf(err, errlen, "%s: key '%s' has no value", where, key);
        /* key[.a[.b]] */
        char kbuf[96], *part[4] = {0};
        snprintf(kbuf, sizeof kbuf, "%s", key);
        int np = 0;
        for (char *q = strtok(kbuf, "."); q && np < 4; q = strtok(NULL, ".")) part[np++] = q;
        int k = -1;
        for (int i = 0; key_names[i]; i++)
            if (np && strcmp(part[0], key_names[i]) == 0) k = i;
        if (k < 0 || np == 4 || strstr(key, "..") || key[strlen(key) - 1] == '.')
            return errf(
                err, errlen,
                "%s: '%s' is not a key of a profile; accepted: name, overlap[.ALGO[.PHASE]], "
                "collectives[.ALGO], collective_alpha, staircase[.ALGO], "
                "staircase_efficiency[.ALGO], compute_scale[.ALGO], "
                "link_fraction.PATTERN[.ALGO], kernel_overhead (docs/profiles.md)",
                where, key);
        /* the algorithm qualifier (and for link_fraction the pattern before it) */
        int pat = -1, ai = PROF_ALL, phase = -1;
        int first_q = 1;
        if (k == K_LINK) {
            if (np < 2)
                return errf(err, errlen,
                            "%s: key 'link_fraction' needs a pattern: link_fraction.PATTERN; "
                            "accepted patterns: ring_shift, allgather, reduce_scatter, return_hop, "
                            "pairwise, alltoall",
                            where);
            for (int i = 1; i < AM_NUM_PATTERNS; i++)
                if (strcmp(part[1], am_pattern_names[i]) == 0) pat = i;
            if (pat < 0)
                return errf(err, errlen,
                            "%s: key '%s': '%s' is not a pattern; accepted: ring_shift, allgather, "
                            "reduce_scatter, return_hop, pairwise, alltoall",
                            where, key, part[1]);
            first_q = 2;
        }
        int max_parts = k == K_OVERLAP ? 3 : k == K_LINK ? 3 : 2;
        if (k == K_NAME || k == K_COLL_ALPHA || k == K_OVERHEAD) max_parts = 1;
        if (np > max_parts)
            return errf(err, errlen, "%s: key '%s': too many qualifiers; accepted: %s", where, key,
                        k == K_OVERLAP   ? "overlap, overlap.ALGO or overlap.ALGO.PHASE"
                        : k == K_LINK    ? "link_fraction.PATTERN or link_fraction.PATTERN.ALGO"
                        : max_parts == 1 ? "the key alone"
                                         : "KEY or KEY.ALGO");
        if (np > first_q) {
            ai = algo_index(part[first_q]);
            if (ai < 0)
                return errf(err, errlen, "%s: key '%s': '%s' is not an algorithm; accepted: %s",
                            where, key, part[first_q], algos);
        }
        if (k == K_OVERLAP && np == 3) {
            char names[300];
            phase = phase_id_of(ai, part[2], names, sizeof names);
            if (phase < 0)
                return errf(err, errlen,
                            "%s: key '%s': '%s' is not an overlapped phase of %s; accepted: %s",
                            where, key, part[2], part[1], names[0] ? names : "(none)");
        }
        double v = 0;
        switch (k) {
        case K_NAME:
            if (strlen(value) >= sizeof p->name)
                return errf(err, errlen, "%s: key 'name': value longer than 63 characters", where);
            snprintf(p->name, sizeof p->name, "%s", value);
            break;
        case K_OVERLAP:
            if (!strcmp(value, "measured"))
                v = PROF_MEASURED;
            else if (!strcmp(value, "ideal") || !strcmp(value, "on"))
                v = 1.0;
            else if (!strcmp(value, "off"))
                v = 0.0;
            else if (parse_number(value, 0.0, 0, 1.0, &v))
                return errf(err, errlen,
                            "%s: key '%s': '%s' is not accepted; accepted: measured, ideal, off, "
                            "or the hidden share of a step's transfer, 0 ... 1",
                            where, key, value);
            if (p->n_overlap == PROF_MAX_RULES)
                return errf(err, errlen, "%s: more than %d overlap lines", where, PROF_MAX_RULES);
            p->overlap[p->n_overlap++] = (prof_overlap){ai, phase, v};
            break;
        case K_COLLECTIVES:
            if (!strcmp(value, "ring"))
                p->collectives[ai] = COLL_RING;
            else if (!strcmp(value, "nccl"))
                p->collectives[ai] = COLL_NCCL;
            else
                return errf(err, errlen, "%s: key '%s': '%s' is not accepted; accepted: ring, nccl",
                            where, key, value);
            break;
        case K_STAIRCASE:
            if (!strcmp(value, "fused"))
                p->staircase[ai] = STAIR_FUSED;
            else if (!strcmp(value, "split"))
                p->staircase[ai] = STAIR_SPLIT;
            else
                return errf(err, errlen,
                            "%s: key '%s': '%s' is not accepted; accepted: fused, split", where,
                            key, value);
            break;
        case K_STAIR_EFF:
        case K_COMPUTE_SCALE:
        case K_LINK:
            if (parse_number(value, 0.0, 1, k == K_COMPUTE_SCALE ? 100.0 : 1.0, &v))
                return errf(err, errlen, "%s: key '%s': '%s' is not accepted; accepted: %s", where,
                            key, value,
                            k == K_COMPUTE_SCALE
                                ? "a factor in (0, 100] on the machine's attention rate"
                                : "a fraction in (0, 1]");
            if (k == K_STAIR_EFF) p->staircase_efficiency[ai] = v;
            if (k == K_COMPUTE_SCALE) p->compute_scale[ai] = v;
            if (k == K_LINK) p->link_fraction[ai][pat] = v;
            break;
        case K_COLL_ALPHA:
        case K_OVERHEAD:
            if (parse_time(value, &v))
                return errf(err, errlen,
                            "%s: key '%s': '%s' is not accepted; accepted: a time 0 ... 10 s with "
                            "unit s, ms, us or ns",
                            where, key, value);
            if (k == K_COLL_ALPHA) p->collective_alpha_s = v;
            if (k == K_OVERHEAD) p->kernel_overhead_s = v;
            break;
        }
    }
    snprintf(p->origin, sizeof p->origin, "%s", filename);
    return 0;
}

const char *const *profile_preset_names(void)
{
    return profile_preset_name_table;
}

const char *profile_preset_text(const char *name)
{
    for (size_t i = 0; profile_preset_name_table[i]; i++)
        if (strcmp(name, profile_preset_name_table[i]) == 0) return profile_preset_text_table[i];
    return NULL;
}

int profile_load(const char *name_or_path, impl_profile *p, char *err, size_t errlen)
{
    const char *preset = profile_preset_text(name_or_path);
    if (preset) {
        char origin[96];
        snprintf(origin, sizeof origin, "preset %s", name_or_path);
        return profile_parse(preset, origin, p, err, errlen);
    }
    FILE *f;
    const char *what;
    if (machine_open_regular(name_or_path, &f, &what) > 0)
        return errf(err, errlen, "'%s' is %s; accepted: a profile preset or a regular profile file",
                    name_or_path, what);
    if (!f) {
        char names[400] = "";
        for (size_t i = 0; profile_preset_name_table[i]; i++) {
            strncat(names, i ? ", " : "", sizeof names - strlen(names) - 1);
            strncat(names, profile_preset_name_table[i], sizeof names - strlen(names) - 1);
        }
        return errf(err, errlen,
                    "'%s' is neither a profile preset nor a readable file (%s); accepted: %s, or "
                    "a profile file",
                    name_or_path, strerror(errno), names);
    }
    static char text[65536];
    size_t len = fread(text, 1, sizeof text - 1, f);
    int bad = ferror(f) || !feof(f);
    fclose(f);
    if (bad)
        return errf(err, errlen, "%s: read error or larger than 64 KiB; accepted: a profile file",
                    name_or_path);
    text[len] = '\0';
    if (strlen(text) != len)
        return errf(err, errlen, "%s: contains NUL bytes; accepted: a text profile file",
                    name_or_path);
    return profile_parse(text, name_or_path, p, err, errlen);
}

/* ---- writing --------------------------------------------------------------------------------- */

static size_t put(char *buf, size_t n, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static size_t put(char *buf, size_t n, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(len < n ? buf + len : NULL, len < n ? n - len : 0, fmt, ap);
    va_end(ap);
    return len + (w > 0 ? (size_t)w : 0);
}

static const char *qual(int a)
{
    return a == PROF_ALL ? "" : am_algo_name((am_algo)a);
}

size_t profile_format(const impl_profile *p, char *buf, size_t n)
{
    size_t len = 0;
    if (n) buf[0] = '\0';
    len = put(buf, n, len, "name = %s\n", p->name);
    for (int i = 0; i < p->n_overlap; i++) {
        const prof_overlap *o = &p->overlap[i];
        const char *ph = "";
        if (o->phase >= 0) {
            const am_algo_desc *d = am_algo_desc_of((am_algo)o->algo);
            for (int part = 0; part < 2; part++)
                for (int j = 0; j < (part ? d->n_bwd : d->n_fwd); j++) {
                    const am_phase_desc *x = (part ? d->bwd : d->fwd)[j];
                    if (x->id == o->phase) ph = x->name;
                }
        }
        char v[32];
        if (o->hidden == PROF_MEASURED)
            snprintf(v, sizeof v, "measured");
        else
            snprintf(v, sizeof v, "%.17g", o->hidden);
        len = put(buf, n, len, "overlap%s%s%s%s = %s\n", o->algo == PROF_ALL ? "" : ".",
                  qual(o->algo), o->phase >= 0 ? "." : "", ph, v);
    }
    for (int a = 0; a <= AM_NUM_ALGOS; a++) {
        const char *dot = a == PROF_ALL ? "" : ".";
        if (p->collectives[a] >= 0)
            len = put(buf, n, len, "collectives%s%s = %s\n", dot, qual(a),
                      p->collectives[a] == COLL_NCCL ? "nccl" : "ring");
        if (p->staircase[a] >= 0)
            len = put(buf, n, len, "staircase%s%s = %s\n", dot, qual(a),
                      p->staircase[a] == STAIR_SPLIT ? "split" : "fused");
        if (p->staircase_efficiency[a] >= 0)
            len = put(buf, n, len, "staircase_efficiency%s%s = %.17g\n", dot, qual(a),
                      p->staircase_efficiency[a]);
        if (p->compute_scale[a] >= 0)
            len =
                put(buf, n, len, "compute_scale%s%s = %.17g\n", dot, qual(a), p->compute_scale[a]);
        for (int k = 1; k < AM_NUM_PATTERNS; k++)
            if (p->link_fraction[a][k] >= 0)
                len = put(buf, n, len, "link_fraction.%s%s%s = %.17g\n", am_pattern_names[k], dot,
                          qual(a), p->link_fraction[a][k]);
    }
    if (p->collective_alpha_s >= 0)
        len = put(buf, n, len, "collective_alpha = %.17g s\n", p->collective_alpha_s);
    if (p->kernel_overhead_s >= 0)
        len = put(buf, n, len, "kernel_overhead = %.17g s\n", p->kernel_overhead_s);
    return len;
}
