/* test_fail_oom.c - an allocation the kernels cannot make ends the program through the one
 * error path with one line that names the call and what was being allocated, and no made-up
 * source location; ctest matches the line. */
#include <stdint.h>
#include <stdio.h>

#include "fail.h"
#include "kn_common.h"

int main(void)
{
    attn_fail_init();
    void *p = kn_xmalloc(SIZE_MAX / 4, "the test buffer");
    printf("not reached: %p was allocated\n", p);
    return 0;
}
