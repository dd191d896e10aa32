/* cmd_pending.c - `attnsim calibrate`: their options are parsed and checked
 * exactly as they will be (so scripts can be written against them now); the subcommands
 * themselves land with their issues and until then exit with status 2 and nothing written. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"

static const opt_id calibrate_opts[] = {OPT_BACKEND, OPT_COMM, OPT_GRID,
                                        OPT_MACHINE, OPT_OUT,  OPT_END};

static const cli_command pending[] = {
    {"calibrate", "measure links and kernels on this machine, fit the model's parameters",
     "Measures point-to-point and collective communication and kernel throughput on the\n"
     "ranks it is given and fits the machine description the model uses.",
     calibrate_opts, NULL, 1024},
};

static int pending_main(const cli_command *cmd, int argc, char **argv)
{
    attn_opts o;
    memset(&o, 0, sizeof o);
    o.batch = 1;
    o.heads = 1;
    int rc = cli_parse(cmd, argc, argv, &o);
    if (rc == 1) return 0;
    if (rc) return rc;
    if (o.kv_heads && (o.kv_heads > o.heads || o.heads % o.kv_heads != 0))
        return cli_error(&o, "--kv-heads",
                         "%llu does not divide --heads %llu; accepted: a "
                         "divisor of the query head count",
                         (unsigned long long)o.kv_heads, (unsigned long long)o.heads);
    return cli_error(&o, NULL,
                     "not implemented in attnsim %s yet; available now: attnsim "
                     "kernels",
                     "0.1");
}

int cmd_calibrate(int argc, char **argv, int full_argc, char **full_argv)
{
    (void)full_argc, (void)full_argv;
    return pending_main(&pending[0], argc, argv);
}
