/* test_fail_mpi.c - the error path under MPI: rank 1 makes an MPI call that fails; the job must
 * end (MPI_Abort) with one line naming rank 1, the call and MPI's reason. Run with mpirun -n 2;
 * ctest matches the line. */
#include <mpi.h>
#include <stdio.h>

#include "fail.h"

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    attn_fail_init();
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    attn_fail_set_rank(rank);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (rank == 1) {
        int x = 0;
        MPICALL(MPI_Send(&x, 1, MPI_INT, 99, 0, MPI_COMM_WORLD)); /* no rank 99: fails */
    }
    MPI_Barrier(MPI_COMM_WORLD); /* rank 0 waits here until the abort ends it */
    MPI_Finalize();
    printf("not reached: the job should have been aborted\n");
    return 0;
}
