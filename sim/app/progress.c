/* progress.c - progress lines of long sweeps (see progress.h). */
#include "progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "timing.h"

static void fmt_duration(double s, char *buf, size_t n)
{
    if (s < 90)
        snprintf(buf, n, "%.1f s", s);
    else if (s < 5400)
        snprintf(buf, n, "%.1f min", s / 60);
    else
        snprintf(buf, n, "%.1f h", s / 3600);
}

static void fmt_amount(double v, char *buf, size_t n)
{
    static const char *const prefix[] = {"", "k", "M", "G", "T", "P", "E"};
    int i = 0;
    while (v >= 1000 && i < 6) v /= 1000, i++;
    snprintf(buf, n, i ? "%.3g %s" : "%.0f%s", v, prefix[i]);
}

static void show(progress *p, int last)
{
    double el = timing_now_s() - p->t0;
    double frac = p->total > 0 ? p->done / p->total : (double)p->runs / (double)p->total_runs;
    if (frac > 1) frac = 1;
    char done[32], total[32], elapsed[32], left[48] = "";
    fmt_amount(p->done, done, sizeof done);
    fmt_amount(p->total, total, sizeof total);
    fmt_duration(el, elapsed, sizeof elapsed);
    if (!last && frac > 0) {
        char t[32];
        fmt_duration(el * (1 - frac) / frac, t, sizeof t);
        snprintf(left, sizeof left, ", ~%s left", t);
    }
    fprintf(stderr, "%sattnsim %s: %5.1f%% of the work (%s of %s %s), %ld of %ld runs, %s%s%s%s",
            p->tty ? "\r" : "", p->cmd, 100 * frac, done, total, p->unit, p->runs, p->total_runs,
            elapsed, last ? " in all" : "", left, p->tty ? "\033[K" : "\n");
    if (p->tty && last) fputc('\n', stderr);
    fflush(stderr);
    p->shown = 1;
}

void progress_begin(progress *p, const char *cmd, int force, long total_runs, double total_work,
                    const char *unit)
{
    p->cmd = cmd;
    p->unit = unit;
    p->total = total_work;
    p->total_runs = total_runs > 0 ? total_runs : 1;
    p->done = 0;
    p->runs = 0;
    p->t0 = p->last = timing_now_s();
    p->tty = isatty(STDERR_FILENO);
    p->on = p->tty || force;
    p->shown = 0;
    /* at most four lines a second on a terminal, one off it (ATTNSIM_PROGRESS_SECONDS sets
     * the interval: more or fewer lines in a log) */
    const char *e = getenv("ATTNSIM_PROGRESS_SECONDS");
    char *end = NULL;
    double every = e ? strtod(e, &end) : -1;
    p->every = e && end && *end == '\0' && every >= 0 ? every : p->tty ? 0.25 : 1.0;
}

void progress_step(progress *p, double work)
{
    p->done += work;
    p->runs++;
    if (!p->on || p->runs >= p->total_runs) return; /* the last line is progress_end's */
    double t = timing_now_s();
    if (t - p->last < p->every) return;
    p->last = t;
    show(p, 0);
}

void progress_end(progress *p)
{
    if (p->on && (p->shown || !p->tty)) show(p, 1);
}
