/* fuzz_cli.c - libFuzzer harness: whole command lines of `attnsim kernels` and `attnsim model`
 * (arguments separated by NUL bytes; the first byte picks the subcommand): parsing and every
 * check that needs no execution. Must return 0, 1 (help) or 2 (error), never crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "fail.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    attn_fail_init();
    cli_set_root(0); /* no output: messages are checked by the CLI tests */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 2048) return 0;
    char *buf = malloc(size + 1);
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    char *argv[66];
    int argc = 0;
    argv[argc++] = data[0] & 1 ? "model" : "kernels";
    for (char *p = buf; p < buf + size - 1 && argc < 64; p += strlen(p) + 1) argv[argc++] = p;
    argv[argc] = NULL;
    attn_opts o;
    machine m;
    int rc = data[0] & 1 ? model_options(argc, argv, &o, &m) : kernels_options(argc, argv, &o);
    if (rc < 0 || rc > 2) abort();
    free(buf);
    return 0;
}
