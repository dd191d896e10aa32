/* progress.h - progress of a long sweep on stderr: the share of the work done and an estimate
 * of the time left, from each run's amount of work (attention FLOPs executed, bytes read,
 * ranks predicted), not from the count of runs, so a sweep whose runs grow (N = 1k ... 1M)
 * is not promised to end early.
 *
 * Shown only when stderr is a terminal (one line rewritten in place, at most four times a
 * second) or when --progress is given (a line at most once a second, for logs;
 * ATTNSIM_PROGRESS_SECONDS sets another interval); nothing otherwise, so pipelines and tests
 * see no extra output.
 */
#ifndef ATTNSIM_PROGRESS_H
#define ATTNSIM_PROGRESS_H

typedef struct {
    const char *cmd;  /* "model", "run", "kernels" */
    const char *unit; /* of the work: "FLOP", "bytes", "rank predictions" */
    double total, done;
    long runs, total_runs;
    double t0, last, every;
    int on, tty, shown;
} progress;

/* Starts a report of total_runs runs doing total_work units of work; force: --progress. */
void progress_begin(progress *p, const char *cmd, int force, long total_runs, double total_work,
                    const char *unit);
/* One more run finished, which did `work` units. */
void progress_step(progress *p, double work);
/* The last line (when anything was shown). */
void progress_end(progress *p);

#endif
