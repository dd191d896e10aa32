/* fuzz_machine.c - libFuzzer harness: the machine-file parser on arbitrary text. It must accept
 * or refuse with one line naming the file and line, never crash; an accepted file must
 * round-trip through machine_format (the text recorded in HDF5 runs) to the same description. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "machine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) return 0;
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    machine m, back;
    char err[600];
    if (machine_parse(text, "fuzz.machine", &m, err, sizeof err) == 0) {
        char out[8192];
        size_t n = machine_format(&m, out, sizeof out);
        machine_format_optional(&m, out + n, sizeof out - n);
        if (machine_parse(out, "round-trip", &back, err, sizeof err) != 0) abort();
        /* the same description, bit for bit (origin aside) */
        if (memcmp(&back, &m, offsetof(machine, origin)) != 0) abort();
    } else if (strchr(err, '\n') || strncmp(err, "fuzz.machine", 12) != 0) {
        abort();
    }
    free(text);
    return 0;
}
