/* Startup for the Cortex-M4F of QEMU's mps2-an386: the vector table, the reset handler (FPU on,
 * .data copied from flash, .bss zeroed, the stack painted so main can report its high-water
 * mark) and fault handlers that report over semihosting and exit non-zero. */
#include <stdint.h>

#include "semihost.h"
#include "startup.h"

extern uint32_t __data_start[], __data_end[], __data_load[];
extern uint32_t __bss_start[], __bss_end[];
extern uint32_t __stack_bottom[], __stack_top[];

int main(void);
void Reset_Handler(void);
static void fault(const char *what);
static void NMI_Handler(void) { fault("NMI"); }
static void HardFault_Handler(void) { fault("HardFault (a kdruntime panic traps here)"); }
static void MemManage_Handler(void) { fault("MemManage"); }
static void BusFault_Handler(void) { fault("BusFault"); }
static void UsageFault_Handler(void) { fault("UsageFault"); }
static void Unexpected_Handler(void) { fault("unexpected exception"); }

typedef void (*vector_t)(void);

/* The 16 architectural entries; no peripheral interrupt is enabled. */
__attribute__((section(".vectors"), used)) static const vector_t vectors[16] = {
    (vector_t)(uintptr_t)__stack_top,
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    0, 0, 0, 0,
    Unexpected_Handler, /* SVCall */
    Unexpected_Handler, /* DebugMonitor */
    0,
    Unexpected_Handler, /* PendSV */
    Unexpected_Handler, /* SysTick */
};

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SCB_SHCSR (*(volatile uint32_t *)0xE000ED24u)

void Reset_Handler(void)
{
    /* Full access to CP10/CP11 (the FPU) before any floating-point instruction runs. */
    SCB_CPACR |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    /* MemManage, BusFault and UsageFault get their own handlers rather than HardFault. */
    SCB_SHCSR |= 0x7u << 16;

    for (uint32_t *src = __data_load, *dst = __data_start; dst < __data_end;) {
        *dst++ = *src++;
    }
    for (uint32_t *p = __bss_start; p < __bss_end; ++p) {
        *p = 0u;
    }
    stack_paint();
    sh_exit((uint32_t)main());
}

void stack_paint(void)
{
    /* Everything below the current frame (with a margin for this function) is free. */
    uint32_t *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (volatile uint32_t *p = __stack_bottom; p < sp - 16; ++p) {
        *p = STACK_PAINT;
    }
}

uint32_t stack_used_bytes(void)
{
    const uint32_t *p = __stack_bottom;
    while (p < __stack_top && *p == STACK_PAINT) {
        ++p;
    }
    return (uint32_t)((uintptr_t)__stack_top - (uintptr_t)p);
}

static void fault(const char *what)
{
    sh_puts("firmware: fault: ");
    sh_puts(what);
    sh_puts("\n");
    sh_exit(EXIT_FAULT);
}
