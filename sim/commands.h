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

#endif
