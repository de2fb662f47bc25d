/* kdedge firmware: classifies a real photo compiled into flash with the model from model_data.c,
 * through kdruntime's C API (libkdruntime.a built for thumbv7em-none-eabihf, no heap, no libc),
 * and compares the raw output with the one kdrun computed on the host.
 *
 * Exit status: 0 equal, 1 output differs, 2 a kdruntime call failed, 3 CPU fault. */
#include <stddef.h>
#include <stdint.h>

#include "host_reference.h" /* generated: HOST_ARENA_SIZE, g_expected_output */
#include "kdruntime.h"
#include "model_data.h" /* kdedge_model_data, kdedge_model_data_len: the exporter's C array */
#include "semihost.h"
#include "startup.h"
#include "test_image.h" /* generated: the photo's RGB pixels */

/* The arena, sized by kdruntime's planner on the host; checked against the device's own plan. */
static uint8_t arena[HOST_ARENA_SIZE] __attribute__((aligned(16)));
static kd_interpreter interp;

/* Empty functions whose entry addresses the instruction-counting QEMU plugin
 * (tools/icount.c) watches: the counts between them are the cost of each phase. */
__attribute__((noinline)) void fw_mark_main(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) void fw_mark_init(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) void fw_mark_letterbox(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) void fw_mark_invoke(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) void fw_mark_done(void) { __asm__ volatile("" ::: "memory"); }

/* Reports a failed call by its status name (kd_interpreter_last_error would link the
 * formatting code that builds the detailed message; the status is enough here). */
static int check(kd_status s, const char *call)
{
    if (s == KD_STATUS_OK) {
        return 0;
    }
    sh_puts("firmware: ");
    sh_puts(call);
    sh_puts(" failed: ");
    sh_puts(kd_status_string((int32_t)s));
    sh_puts("\n");
    return 1;
}

int main(void)
{
    fw_mark_main();
    sh_puts("kdedge firmware: kdruntime ");
    sh_puts(kd_version());
    sh_puts(" on Cortex-M4F\n");

    size_t need = 0;
    fw_mark_init();
    if (check(kd_model_arena_size(kdedge_model_data, kdedge_model_data_len, &need),
              "kd_model_arena_size")) {
        return EXIT_API_ERROR;
    }
    sh_puts("model: ");
    sh_put_u32((uint32_t)kdedge_model_data_len);
    sh_puts(" bytes in flash; arena: ");
    sh_put_u32((uint32_t)need);
    sh_puts(" bytes (host plan: ");
    sh_put_u32((uint32_t)HOST_ARENA_SIZE);
    sh_puts(")\n");
    if (need > sizeof arena) {
        sh_puts("firmware: the device needs a larger arena than the host planned\n");
        return EXIT_API_ERROR;
    }
    if (check(kd_interpreter_init(&interp, kdedge_model_data, kdedge_model_data_len, arena,
                                  sizeof arena),
              "kd_interpreter_init")) {
        return EXIT_API_ERROR;
    }

    uint32_t stack_init = stack_used_bytes();
    stack_paint();

    kd_letterbox_info geo;
    fw_mark_letterbox();
    if (check(kd_letterbox(&interp, 0, g_test_image, sizeof g_test_image, TEST_IMAGE_HEIGHT,
                           TEST_IMAGE_WIDTH, TEST_IMAGE_WIDTH * 3u, KD_PIXEL_RGB, NULL, &geo),
              "kd_letterbox")) {
        return EXIT_API_ERROR;
    }
    fw_mark_invoke();
    kd_status st = kd_invoke(&interp);
    fw_mark_done();
    if (check(st, "kd_invoke")) {
        return EXIT_API_ERROR;
    }
    sh_puts("image: " TEST_IMAGE_NAME " ");
    sh_put_u32(TEST_IMAGE_WIDTH);
    sh_puts("x");
    sh_put_u32(TEST_IMAGE_HEIGHT);
    sh_puts(" letterboxed to ");
    sh_put_u32((uint32_t)geo.new_width);
    sh_puts("x");
    sh_put_u32((uint32_t)geo.new_height);
    sh_puts(" at (");
    sh_put_u32((uint32_t)geo.top);
    sh_puts(", ");
    sh_put_u32((uint32_t)geo.left);
    sh_puts(")\n");

    const uint8_t *out = NULL;
    size_t out_len = 0;
    if (check(kd_output_data(&interp, 0, &out, &out_len), "kd_output_data")) {
        return EXIT_API_ERROR;
    }
    size_t best = 0;
    size_t differ = 0;
    sh_puts("raw:");
    for (size_t i = 0; i < out_len; ++i) {
        int8_t v = (int8_t)out[i];
        sh_puts(" ");
        sh_put_i32(v);
        if (v > (int8_t)out[best]) {
            best = i;
        }
        if (i >= sizeof g_expected_output || out[i] != (uint8_t)g_expected_output[i]) {
            ++differ;
        }
    }
    sh_puts("\ntop-1: class ");
    sh_put_u32((uint32_t)best);
    sh_puts("\nstack used: ");
    sh_put_u32(stack_init);
    sh_puts(" bytes by init, ");
    sh_put_u32(stack_used_bytes());
    sh_puts(" by letterbox + invoke\n");
    if (out_len != sizeof g_expected_output || differ != 0) {
        sh_puts("FAIL: ");
        sh_put_u32((uint32_t)differ);
        sh_puts(" of ");
        sh_put_u32((uint32_t)out_len);
        sh_puts(" output bytes differ from the host's (expected ");
        sh_put_u32((uint32_t)sizeof g_expected_output);
        sh_puts(" bytes)\n");
        return EXIT_MISMATCH;
    }
    sh_puts("PASS: output equals the host's kdrun output byte for byte\n");
    return EXIT_OK;
}
