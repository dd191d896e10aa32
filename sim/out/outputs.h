/* outputs.h - every path a command writes, checked in one place before any work starts, and
 * the machine file written as results are: to a hidden copy next to it, then renamed over it.
 *
 * Each output option writes one kind of file: --out an attnsim/1 HDF5 file (created, or
 * appended to), --machine-out a machine file (created, or replaced). A path is accepted when its
 * directory exists and is writable and the file is new or already of the kind the option writes
 * (and writable); two options never name the same file (the same path, a link to it, or another
 * hard link). Anything else is refused with one line: what is wrong; accepted: what is. */
#ifndef ATTNSIM_OUTPUTS_H
#define ATTNSIM_OUTPUTS_H

#include <stddef.h>

typedef enum {
    OUTPUT_H5,     /* attnsim/1 results (sim/out/h5out.h) */
    OUTPUT_MACHINE /* machine description text (docs/machine.md) */
} output_kind;

typedef struct {
    const char *option; /* "--out", for messages */
    const char *path;   /* NULL: the option was not given */
    output_kind kind;
} output_path;

/* Checks every output of a command. Returns 0, or -1 with *bad naming the option at fault and
 * err one line (without the option). Reads only: nothing is created or changed. */
int outputs_check(const output_path *outs, size_t n, const char **bad, char *err, size_t errlen);

/* The check of an existing file at `path` for one kind; 0 when it is that kind of file, else -1
 * with a reason. */
int outputs_is_kind(const char *path, output_kind kind, char *err, size_t errlen);

/* Writes `text` as the file at `path`: a hidden temporary in the same directory, fsync'ed and
 * renamed over the path (atomic: a reader or a crash sees the old file or the new one), then
 * the directory fsync'ed. An existing file keeps its permission bits. Failures go through the
 * one error path (the temporary is removed). */
void outputs_write_text(const char *path, const char *text);

/* `path` for a message or a table: control characters and bytes that are not UTF-8 as escapes
 * (\n, \t, \xNN), so that a path always prints as one line. Returns buf. */
const char *outputs_display(const char *path, char *buf, size_t n);

#endif
