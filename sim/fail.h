/* fail.h - the one error path of attnsim.
 *
 * Every MPI, HDF5, CUDA, NCCL and allocation call is checked through these macros; a failure
 * prints one line naming the rank, the call, where it was made and the reason, runs the
 * registered clean-ups (e.g. removing a half-written HDF5 copy) and ends the job: MPI_Abort
 * when MPI is running, exit(1) otherwise. Errors in the user's input are not failures: they are
 * reported by the CLI with exit status 2 before any work starts (cli.h).
 */
#ifndef ATTNSIM_FAIL_H
#define ATTNSIM_FAIL_H

#include <stdint.h>

/* Installs the hook for kernels/ and silences HDF5's own error printing (we print instead). */
void attn_fail_init(void);
/* The rank that failures name; -1 prints no rank (a single-process subcommand). */
void attn_fail_set_rank(int rank);
/* A clean-up to run on failure or on SIGINT/SIGTERM (at most 8; async-signal-safe). */
void attn_fail_on_exit(void (*cleanup)(void));

/* file NULL: no source location in the line (failures reported by kernels/, whose reason names
 * what failed). */
_Noreturn void attn_fail(const char *call, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* HDF5: a negative return is a failure; the reason comes from the HDF5 error stack. */
int64_t attn_check_h5(int64_t ret, const char *call, const char *file, int line);
#define H5CALL(call) attn_check_h5((int64_t)(call), #call, __FILE__, __LINE__)

/* MPI: anything but MPI_SUCCESS is a failure (with MPI_ERRORS_RETURN set on the communicator). */
void attn_check_mpi(int ret, const char *call, const char *file, int line);
#define MPICALL(call) attn_check_mpi((call), #call, __FILE__, __LINE__)

/* CUDA runtime (and kernels/cuda, which return a cudaError_t as int): 0 is success. Defined
 * where the build has CUDA. */
void attn_check_cuda(int ret, const char *call, const char *file, int line);
#define CUDACALL(call) attn_check_cuda((int)(call), #call, __FILE__, __LINE__)

/* POSIX calls that return -1 and set errno. */
#define SYSCHECK(call)                                                                             \
    do {                                                                                           \
        if ((call) == -1) attn_fail(#call, __FILE__, __LINE__, "%s", strerror(errno));             \
    } while (0)

/* Test hook: if ATTNSIM_KILL_AT is "name" or "name@N", the N-th (default first) arrival at the
 * point `name` sends SIGKILL to this process (SIGSTOP with ATTNSIM_KILL_SIGNAL=STOP; only on
 * rank ATTNSIM_KILL_RANK when that is set). Used by the crash-safety, killed-run and lock
 * tests. */
void attn_kill_point(const char *name);

#endif
