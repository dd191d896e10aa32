/* fuzz_values.c - libFuzzer harness: the value parsers of the command line (counts with k/M/G
 * suffixes, count lists, choice lists, grids). The first byte picks the parser; the rest is the
 * text. Every input must give 0, or -1 with a message, and never crash or overflow. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096) return 0;
    char *text = malloc(size);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    char err[400];
    uint64_t v;
    cli_u64_list l;
    unsigned mask;
    int c;
    cli_grid g;
    int rc = 0;
    switch (data[0] % 6) {
    case 0:
        rc = cli_parse_count(text, UINT64_MAX, &v, err, sizeof err);
        break;
    case 1:
        rc = cli_parse_uint(text, 1ull << 40, &v, err, sizeof err);
        break;
    case 2:
        rc = cli_parse_count_list(text, 1ull << 40, &l, err, sizeof err);
        break;
    case 3:
        rc = cli_parse_choice_set(text, am_algo_names(), &mask, err, sizeof err);
        break;
    case 4:
        rc = cli_parse_choice(text, cli_dtype_names, &c, err, sizeof err);
        break;
    case 5:
        rc = cli_parse_grid(text, &g, err, sizeof err);
        break;
    }
    if (rc != 0 && (rc != -1 || err[0] == '\0'))
        abort(); /* -1 with a message (cli_error
                     makes it one line) */
    free(text);
    return 0;
}
