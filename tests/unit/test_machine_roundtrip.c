/* test_machine_roundtrip.c - every machine description attnsim records reads back: each preset,
 * and a fuzzed set of generated files (values spread log-uniformly far beyond the accepted
 * ranges, in every unit, with and without the optional keys), parse -> machine_format (+
 * optional keys, the text recorded in HDF5 runs and written by calibrate) -> parse gives the
 * same description, bit for bit. A generated file is accepted exactly when every value is
 * within the ranges docs/machine.md states; accepted values are finite. Strings that are not
 * printable UTF-8 are refused. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "machine.h"
#include "test_util.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(uint64_t n)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng % n;
}
static double unif(void)
{
    return (double)rnd(1ull << 53) / 9007199254740992.0;
}

typedef struct {
    double scale;
    const char *unit;
} unit;

/* The documented ranges (docs/machine.md, "Ranges"), in SI units, and the units of each kind. */
enum { COUNT, SIZE, BANDWIDTH, RATE, TIME, FRACTION, RATIO };
static const double lo_of[] = {1, 1, 1e3, 1e6, 1e-12, 0, 1e-3};
static const double hi_of[] = {1048576, 1099511627776.0, 1e15, 1e18, 10, 1, 1e3};
static const unit size_u[] = {{1, "B"},        {1e3, "kB"},        {1e6, "MB"}, {1e9, "GB"},
                              {1024.0, "KiB"}, {1048576.0, "MiB"}, {0, NULL}};
static const unit bw_u[] = {
    {1, "B/s"}, {1e6, "MB/s"}, {1e9, "GB/s"}, {1e12, "TB/s"}, {1099511627776.0, "TiB/s"},
    {0, NULL}};
static const unit rate_u[] = {
    {1, "FLOP/s"}, {1e9, "GFLOP/s"}, {1e12, "TFLOP/s"}, {1e15, "PFLOP/s"}, {0, NULL}};
static const unit time_u[] = {{1, "s"}, {1e-3, "ms"}, {1e-6, "us"}, {1e-9, "ns"}, {0, NULL}};
static const unit none_u[] = {{1, ""}, {0, NULL}};
static const unit *units_of[] = {none_u, size_u, bw_u, rate_u, time_u, none_u, none_u};

static const struct {
    const char *key;
    int kind;
} keys[] = {{"gpus_per_node", COUNT},
            {"sms", COUNT},
            {"smem_per_sm", SIZE},
            {"l2", SIZE},
            {"hbm_bandwidth", BANDWIDTH},
            {"peak_f32", RATE},
            {"peak_f16", RATE},
            {"peak_bf16", RATE},
            {"sustained_fraction", FRACTION},
            {"intra_alpha", TIME},
            {"intra_bandwidth", BANDWIDTH},
            {"inter_alpha", TIME},
            {"inter_bandwidth", BANDWIDTH},
            {"gpus_per_nic", COUNT}};
static const struct {
    const char *key;
    int kind;
} optional[] = {{"intra_break", SIZE},
                {"intra_large_alpha", TIME},
                {"intra_large_bandwidth", BANDWIDTH},
                {"kernel_overhead", TIME},
                {"backward_rate_ratio", RATIO}};

/* Appends "key = value unit" with a random value around the accepted range; returns whether
 * the value (in SI units, as the parser computes it) is accepted. */
static int add_value(char *text, size_t n, const char *key, int kind, double *count_out)
{
    const unit *u = units_of[kind];
    size_t nu = 0;
    while (u[nu].unit) nu++;
    const unit *pick = &u[rnd(nu)];
    double v;
    if (kind == COUNT) {
        v = (double)(rnd(8) == 0 ? rnd(1ull << 40) : 1 + rnd(64));
        if (rnd(20) == 0) v = 0;
    } else if (kind == FRACTION) {
        v = rnd(10) == 0 ? 1.0 + unif() : unif();
    } else if (rnd(10) != 0) { /* mostly log-uniform within the range, up to its very ends */
        double l = log10(lo_of[kind]), h = log10(hi_of[kind]);
        v = pow(10.0, l + (h - l) * unif()) / pick->scale;
        if (rnd(20) == 0) v = (rnd(2) ? lo_of[kind] : hi_of[kind]) / pick->scale;
    } else { /* or far outside: 10^-30 .. 10^30 around its middle, or at the ends of double */
        double mid = sqrt(lo_of[kind] * hi_of[kind]) / pick->scale;
        v = mid * pow(10.0, (unif() - 0.5) * 60.0);
        if (rnd(5) == 0) v = rnd(2) ? 1e300 : 1e-300;
    }
    char num[64];
    snprintf(num, sizeof num, kind == COUNT ? "%.0f" : "%.17g", v);
    v = strtod(num, NULL); /* the value the parser sees */
    size_t len = strlen(text);
    snprintf(text + len, n - len, "%s = %s%s%s\n", key, num, pick->unit[0] ? " " : "", pick->unit);
    double si = v * pick->scale;
    if (count_out) *count_out = v;
    if (kind == FRACTION) return v > 0 && v <= 1;
    return v > 0 && isfinite(si) && si >= lo_of[kind] && si <= hi_of[kind];
}

static int same(const machine *a, const machine *b)
{
    return memcmp(a, b, offsetof(machine, origin)) == 0;
}

int main(void)
{
    char err[600], text[8192], out[8192];
    machine m, back;
    int presets = 0;
    for (const char *const *n = machine_preset_names(); *n; n++, presets++) {
        CHECK(machine_load(*n, &m, err, sizeof err) == 0, "preset %s: %s", *n, err);
        size_t len = machine_format(&m, out, sizeof out);
        machine_format_optional(&m, out + len, sizeof out - len);
        CHECK(machine_parse(out, "recorded", &back, err, sizeof err) == 0, "preset %s: %s", *n,
              err);
        CHECK(same(&m, &back), "preset %s changed in the round trip", *n);
    }
    CHECK(presets >= 7, "%d presets", presets);

    int accepted = 0, refused = 0;
    for (int trial = 0; trial < 20000; trial++) {
        text[0] = '\0';
        snprintf(text, sizeof text, "name = fuzz %d\ngpu = g\n", trial);
        int ok = 1;
        double per_node = 0, per_nic = 0;
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            double *count = !strcmp(keys[k].key, "gpus_per_node")  ? &per_node
                            : !strcmp(keys[k].key, "gpus_per_nic") ? &per_nic
                                                                   : NULL;
            ok &= add_value(text, sizeof text, keys[k].key, keys[k].kind, count);
        }
        ok &= per_nic <= per_node;
        if (rnd(2)) { /* a large-message regime, kernel overhead, backward ratio, tiers */
            for (size_t k = 0; k < sizeof optional / sizeof optional[0]; k++)
                ok &= add_value(text, sizeof text, optional[k].key, optional[k].kind, NULL);
            strncat(text, "measured_tiers = intra\n", sizeof text - strlen(text) - 1);
        }
        int rc = machine_parse(text, "fuzz", &m, err, sizeof err);
        CHECK((rc == 0) == ok, "trial %d: parser %s, documented ranges say %s: %s\n%s", trial,
              rc == 0 ? "accepts" : "refuses", ok ? "accept" : "refuse", err, text);
        if (rc != 0) {
            refused++;
            CHECK(strchr(err, '\n') == NULL && strncmp(err, "fuzz", 4) == 0, "message: %s", err);
            continue;
        }
        accepted++;
        double *v[] = {&m.smem_per_sm_bytes,    &m.l2_bytes,          &m.hbm_bytes_per_s,
                       &m.peak_flops[0],        &m.peak_flops[1],     &m.peak_flops[2],
                       &m.alpha_s[0],           &m.alpha_s[1],        &m.bytes_per_s[0],
                       &m.bytes_per_s[1],       &m.break_bytes[0],    &m.alpha_large_s[0],
                       &m.bytes_per_s_large[0], &m.kernel_overhead_s, &m.backward_rate_ratio};
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
            CHECK(isfinite(*v[i]), "trial %d: value %zu not finite", trial, i);
        size_t len = machine_format(&m, out, sizeof out);
        machine_format_optional(&m, out + len, sizeof out - len);
        CHECK(machine_parse(out, "recorded", &back, err, sizeof err) == 0,
              "trial %d: the recorded description does not read back: %s\n%s", trial, err, out);
        CHECK(same(&m, &back), "trial %d: the round trip changed the description\n%s", trial, out);
    }
    CHECK(accepted > 500 && refused > 500, "fuzzed set too one-sided: %d accepted, %d refused",
          accepted, refused);

    /* text values: printable UTF-8 only */
    static const char *const bad[] = {"\xff\xfe", "caf\xc3", "\xc0\xaf",        "\xed\xa0\x80",
                                      "a\tb",     "\x7f",    "\xf4\x90\x80\x80"};
    static const char *const good[] = {"caf\xc3\xa9", "H100 \xe2\x80\x94 SXM", "\xf0\x9f\x9a\x80"};
    machine base;
    machine_load("dgx-h100", &base, err, sizeof err);
    size_t blen = machine_format(&base, out, sizeof out);
    const char *rest = strchr(out, '\n') + 1; /* everything after the name line */
    (void)blen;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "name = %s\n%s", bad[i], rest);
        CHECK(machine_parse(text, "utf8", &m, err, sizeof err) != 0 && strstr(err, "UTF-8"),
              "bad name %zu accepted (%s)", i, err);
    }
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        snprintf(text, sizeof text, "name = %s\n%s", good[i], rest);
        CHECK(machine_parse(text, "utf8", &m, err, sizeof err) == 0 && !strcmp(m.name, good[i]),
              "good name %zu refused: %s", i, err);
    }
    printf("machine round trip: %d presets, %d generated files accepted and read back, %d "
           "refused as documented\n",
           presets, accepted, refused);
    return test_finish("test_machine_roundtrip");
}
