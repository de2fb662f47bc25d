/* Arm semihosting (the debugger/emulator interface QEMU implements with
 * -semihosting-config enable=on): console output and the exit status. No libc. */
#ifndef FIRMWARE_SEMIHOST_H
#define FIRMWARE_SEMIHOST_H

#include <stdint.h>

/* Writes a NUL-terminated string to the host console (SYS_WRITE0). */
void sh_puts(const char *s);
/* Writes an unsigned / signed decimal number. */
void sh_put_u32(uint32_t v);
void sh_put_i32(int32_t v);
/* Ends the emulation with `code` as the host process's exit status (SYS_EXIT_EXTENDED with
 * ADP_Stopped_ApplicationExit). Never returns. */
__attribute__((noreturn)) void sh_exit(uint32_t code);

#endif
