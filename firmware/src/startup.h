#ifndef FIRMWARE_STARTUP_H
#define FIRMWARE_STARTUP_H

#include <stdint.h>

/* Exit statuses of the firmware (the emulator's process exit status). */
enum {
    EXIT_OK = 0,
    EXIT_MISMATCH = 1, /* the output differs from the one computed on the host */
    EXIT_API_ERROR = 2, /* a kdruntime call failed */
    EXIT_FAULT = 3, /* a CPU fault (a kdruntime panic traps with an undefined instruction) */
};

/* Word written over the whole stack at reset. */
#define STACK_PAINT 0x5AC35AC3u

/* Paints the free part of the stack (below the caller's frame). */
void stack_paint(void);
/* Bytes of the stack that were written since reset (its high-water mark). */
uint32_t stack_used_bytes(void);

#endif
