/* machine_out.c - the machine file attnsim calibrate writes (calibrate.h): the base machine with
 * the measured values in place, every line saying whether its value was measured or kept, and
 * only values the file format accepts (machine_write, the parser's own key table). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "calibrate.h"

/* What the machine file says of each key's value: measured, or kept from the base machine. */
typedef struct {
    const machine *base, *m;
    char buf[120];
} key_notes;

static const char *key_note(const char *key, void *ctx)
{
    key_notes *kn = ctx;
    static const char *const peaks[3] = {"peak_f32", "peak_f16", "peak_bf16"};
    for (int d = 0; d < 3; d++)
        if (!strcmp(key, peaks[d]))
            return kn->m->peak_flops[d] == kn->base->peak_flops[d]
                       ? "kept (no kernel of this type measured)"
                       : "measured: FA2 tiles, every rank at once";
    for (int t = 0; t < 2; t++) {
        char alpha[32], bw[32];
        snprintf(alpha, sizeof alpha, "%s_alpha", t ? "inter" : "intra");
        snprintf(bw, sizeof bw, "%s_bandwidth", t ? "inter" : "intra");
        if (!strcmp(key, alpha) || !strcmp(key, bw))
            return kn->m->measured[t] ? "measured: ring shift, robust fit" : "NOT MEASURED: kept";
    }
    if (!strcmp(key, "gpus_per_node")) return "measured: ranks per node";
    if (!strcmp(key, "sms")) {
        snprintf(kn->buf, sizeof kn->buf, "kept from %s", kn->base->name);
        return kn->buf;
    }
    if (!strcmp(key, "smem_per_sm") || !strcmp(key, "l2") || !strcmp(key, "gpus_per_nic"))
        return "kept";
    if (!strcmp(key, "hbm_bandwidth"))
        return "measured: memory copy (read + write), every rank at once";
    if (!strcmp(key, "sustained_fraction"))
        return "the peaks above are the kernels' measured forward rates";
    return NULL;
}

/* The machine file: base machine with the measured values in place, each line commented. */
void cal_write_machine(FILE *f, const machine *base, const machine *m, const char *host,
                       const char *when, int nodes, const char *backend, const char *comm)
{
    fprintf(f, "# Written by attnsim calibrate on %s (%s), %d node(s), backend %s, comm %s.\n",
            host, when, nodes, backend, comm);
    fprintf(f, "# Measured values say so; the others are kept from the base machine '%s'.\n",
            base->origin);
    key_notes kn = {base, m, ""};
    char text[4096];
    machine_write(m, MACHINE_REQUIRED | MACHINE_OPTIONAL, key_note, &kn, text, sizeof text);
    fputs(text, f);
}

/* 1 when v is within the range the machine file accepts for `key` (docs/machine.md). */
static int in_range(const char *key, double v, double *lo)
{
    double hi;
    if (machine_key_range(key, lo, &hi) != 0) return 0;
    return isfinite(v) && v >= *lo && v <= hi;
}

/* The machine file holds only values it reads back (docs/machine.md, "Ranges"): a fitted
 * latency below the range (under the timer's resolution, or a negative intercept) is written as
 * the smallest accepted value; any other fitted value out of range is not used (the base
 * machine's is kept, or the optional key left out). Says so on stdout. */
void cal_keep_in_range(machine *m, const machine *base)
{
    static const char *const tier[2] = {"intra", "inter"};
    static const char *const dn[3] = {"f32", "f16", "bf16"};
    double lo;
    char key[64];
    if (!in_range("hbm_bandwidth", m->hbm_bytes_per_s, &lo)) {
        printf("# note: memory copy %g B/s is outside the machine file's range; kept %s's\n",
               m->hbm_bytes_per_s, base->name);
        m->hbm_bytes_per_s = base->hbm_bytes_per_s;
    }
    for (int d = 0; d < 3; d++) {
        snprintf(key, sizeof key, "peak_%s", dn[d]);
        if (in_range(key, m->peak_flops[d], &lo)) continue;
        printf("# note: %s rate %g FLOP/s is outside the machine file's range; kept %s's\n", dn[d],
               m->peak_flops[d], base->name);
        m->peak_flops[d] = base->peak_flops[d];
    }
    for (int t = 0; t < 2; t++) {
        if (!m->measured[t]) continue;
        double *alphas[2] = {&m->alpha_s[t], &m->alpha_large_s[t]};
        for (int a = 0; a < (m->break_bytes[t] > 0 ? 2 : 1); a++) {
            snprintf(key, sizeof key, "%s_alpha", tier[t]);
            if (!in_range(key, *alphas[a], &lo) && isfinite(*alphas[a]) && *alphas[a] < lo) {
                printf("# note: %s-node latency fit %g s is below the timer's resolution; "
                       "written as %g s, the smallest accepted\n",
                       tier[t], *alphas[a], lo);
                *alphas[a] = lo;
            }
        }
        snprintf(key, sizeof key, "%s_alpha", tier[t]);
        int ok = in_range(key, m->alpha_s[t], &lo);
        snprintf(key, sizeof key, "%s_bandwidth", tier[t]);
        ok &= in_range(key, m->bytes_per_s[t], &lo);
        if (!ok) {
            printf("# note: the %s-node fit (%g s, %g B/s) is outside the machine file's range; "
                   "the tier is kept from %s and marked NOT MEASURED\n",
                   tier[t], m->alpha_s[t], m->bytes_per_s[t], base->name);
            m->measured[t] = 0;
            m->alpha_s[t] = base->alpha_s[t], m->bytes_per_s[t] = base->bytes_per_s[t];
            m->break_bytes[t] = 0;
            continue;
        }
        if (m->break_bytes[t] > 0) {
            snprintf(key, sizeof key, "%s_break", tier[t]);
            ok = in_range(key, m->break_bytes[t], &lo);
            snprintf(key, sizeof key, "%s_large_alpha", tier[t]);
            ok &= in_range(key, m->alpha_large_s[t], &lo);
            snprintf(key, sizeof key, "%s_large_bandwidth", tier[t]);
            ok &= in_range(key, m->bytes_per_s_large[t], &lo);
            if (!ok) {
                printf("# note: the %s-node large-message regime is outside the machine file's "
                       "range; one regime is written\n",
                       tier[t]);
                m->break_bytes[t] = 0;
            }
        }
    }
    if (m->kernel_overhead_s > 0 && !in_range("kernel_overhead", m->kernel_overhead_s, &lo)) {
        printf("# note: kernel overhead %g s is outside the machine file's range; left out\n",
               m->kernel_overhead_s);
        m->kernel_overhead_s = 0;
    }
    if (!in_range("backward_rate_ratio", m->backward_rate_ratio, &lo)) {
        printf("# note: backward rate ratio %g is outside the machine file's range; left out\n",
               m->backward_rate_ratio);
        m->backward_rate_ratio = 1.0;
    }
}
