/* main.c - attnsim: one MPI program that executes and predicts distributed attention.
 * Dispatches to the subcommands (commands.h). */
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#ifdef ATTNSIM_HAVE_CUDA
#include "cuda_info.h"
#endif
#include "fail.h"
#include "provenance.h"

static const attn_subcommand subcommands[] = {
    {"run", "execute distributed attention under MPI and record measured + predicted", cmd_run},
    {"model", "predict only (no execution), any P, any machine", cmd_model},
    {"kernels", "single-device kernel study: correctness, time, measured + predicted HBM bytes",
     cmd_kernels},
    {"calibrate", "measure links and kernels on this machine, fit the model's parameters",
     cmd_calibrate},
};
#define NUM_SUBCOMMANDS (sizeof subcommands / sizeof subcommands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: attnsim <subcommand> [options]   (attnsim <subcommand> --help)\n\n");
    for (size_t i = 0; i < NUM_SUBCOMMANDS; i++)
        fprintf(f, "  %-10s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(f, "\n  --version  version, git commit and libraries\n  --help     this help\n");
}

static void version(void)
{
    char mpi[MPI_MAX_LIBRARY_VERSION_STRING] = "";
    int len = 0;
    MPI_Get_library_version(mpi, &len);
    mpi[strcspn(mpi, "\n")] = '\0';
    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    printf("attnsim %s (git %s)\n", attnsim_version, attnsim_git_commit);
    printf("MPI: %s\nHDF5: %u.%u.%u\n", mpi, maj, min, rel);
#ifdef ATTNSIM_HAVE_CUDA
    char cuda[2048];
    attn_cuda_describe(cuda, sizeof cuda);
    printf("%s\n", cuda);
#else
    printf("CUDA: not built\n");
#endif
}

int main(int argc, char **argv)
{
    attn_fail_init();
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--version") == 0 || strcmp(sub, "-V") == 0) {
        version();
        return 0;
    }
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < NUM_SUBCOMMANDS; i++)
        if (strcmp(sub, subcommands[i].name) == 0)
            return subcommands[i].main(argc - 1, argv + 1, argc, argv);
    fprintf(stderr,
            "attnsim: unknown subcommand '%s'; accepted: run, model, kernels, calibrate "
            "(see attnsim --help)\n",
            sub);
    return 2;
}
