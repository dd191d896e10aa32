/* fuzz_h5.c - libFuzzer harness: the check attnsim makes of an existing output file before it
 * appends (h5out_check_path: HDF5 signature, schema, layout) on arbitrary bytes written to a
 * file. A corrupted or foreign file must be refused with one line, not crash, hang or leak
 * attnsim. The check runs HDF5 in a child process, so libFuzzer sees attnsim's side (and the
 * outcome) but not the coverage inside HDF5: this harness tests the isolation. */
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fail.h"
#include "h5out.h"

static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    attn_fail_init();
    setenv("ATTNSIM_H5_CHECK_MS", "300", 1); /* hangs found cost 0.3 s, not 10 */
    snprintf(path, sizeof path, "/tmp/attnsim-fuzz-h5.%ld.h5", (long)getpid());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    fwrite(data, 1, size, f);
    fclose(f);
    char err[600];
    if (h5out_check_path(path, err, sizeof err) != 0 && strchr(err, '\n')) abort();
    unlink(path);
    return 0;
}
