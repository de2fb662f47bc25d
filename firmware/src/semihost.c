#include "semihost.h"

#define SYS_WRITE0 0x04u
#define SYS_EXIT_EXTENDED 0x20u
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u

/* On M-profile cores a semihosting call is `bkpt 0xab` with the operation in r0 and the
 * argument in r1; the result comes back in r0. */
static uint32_t semihost(uint32_t op, const void *arg)
{
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void sh_puts(const char *s)
{
    semihost(SYS_WRITE0, s);
}

void sh_put_u32(uint32_t v)
{
    char buf[11];
    char *p = buf + sizeof buf;
    *--p = '\0';
    do {
        *--p = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0u);
    sh_puts(p);
}

void sh_put_i32(int32_t v)
{
    if (v < 0) {
        sh_puts("-");
        sh_put_u32(0u - (uint32_t)v);
    } else {
        sh_put_u32((uint32_t)v);
    }
}

void sh_exit(uint32_t code)
{
    /* SYS_EXIT_EXTENDED takes a two-word block: the reason and the exit status. */
    const uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, code};
    semihost(SYS_EXIT_EXTENDED, block);
    for (;;) {
    }
}
