/* commands.h - the subcommands of attnsim. Each takes the subcommand's argv (argv[0] is its
 * name) and the whole command line (for provenance), and returns the exit status. */
#ifndef ATTNSIM_COMMANDS_H
#define ATTNSIM_COMMANDS_H

typedef struct {
    const char *name;
    const char *summary;
    int (*main)(int argc, char **argv, int full_argc, char **full_argv);
} attn_subcommand;

int cmd_run(int argc, char **argv, int full_argc, char **full_argv);
int cmd_model(int argc, char **argv, int full_argc, char **full_argv);
int cmd_kernels(int argc, char **argv, int full_argc, char **full_argv);
int cmd_calibrate(int argc, char **argv, int full_argc, char **full_argv);

/* Option handling of `kernels` and `model` on their own (defaults, parsing, every check that
 * needs no execution): 0 to go on, 1 after --help, 2 after an error line. The fuzzers call
 * these. */
#include "cli.h"
#include "machine.h"
int kernels_options(int argc, char **argv, attn_opts *o);
int model_options(int argc, char **argv, attn_opts *o, machine *m);

#endif
