/* agree.h - the ranks of one MPI job agree before any work starts.
 *
 * Every rank parses its own command line (mpirun may start ranks with different ones: an MPMD
 * "A : B" line, a wrapper script). Before anything else the ranks compare what they parsed,
 * option by option, with rank 0 (a digest of each option's parsed value, --out and
 * --machine-out as absolute paths), and rank 0 learns every rank's outcome. Rank 0 then speaks
 * for the job in one line: its own error, else the first other rank's error (naming the ranks),
 * else the first option whose value differs (naming it, both values and the ranks). Every rank
 * returns the same status, so all exit together: nothing is written and nothing waits on a rank
 * that went another way.
 */
#ifndef ATTNSIM_AGREE_H
#define ATTNSIM_AGREE_H

#include <mpi.h>

#include "cli.h"

/* Call on every rank after cli_parse (with cli_defer(1) before it) with this rank's outcome
 * (0 go on, 1 help printed, 2 error kept). Ends the deferral. Returns, on every rank, 0 to go
 * on, 1 when the job printed its help (exit 0), 2 after rank 0 printed the error line. */
int agree_options(const attn_opts *o, int rc, MPI_Comm comm);

/* For a check whose answer may differ between ranks (each node's memory): call on every rank
 * with this rank's outcome (0, or 2 with its line kept by cli_error under cli_defer(1)). Ends
 * the deferral. Rank 0 prints the first failing rank's line, naming the ranks that failed.
 * Returns 0 or 2 on every rank. */
int agree_outcome(const attn_opts *o, int rc, MPI_Comm comm);

#endif
