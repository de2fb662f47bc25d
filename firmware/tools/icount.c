/* QEMU TCG plugin counting executed guest instructions exactly, with marker addresses.
 *
 *   qemu-system-arm ... -plugin ./libicount.so,marks=0x1234:0x1240 -d plugin
 *
 * Every translated instruction gets an inline 64-bit add (no callback), so the count is exact
 * however blocks are chained. When an instruction at a marker address is about to execute, the
 * plugin prints "mark 0xADDR N" (N = instructions executed before it); at exit it prints
 * "total N". Marker addresses are function entries (the Thumb bit is ignored).
 *
 * QEMU's plugin API is C with a version number; Debian ships the emulator built with plugin
 * support but not the header, so the few declarations used are written out below, as the
 * stable API (QEMU_PLUGIN_VERSION 1, QEMU 7.x) defines them. */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS = 0 };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 = 0 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn, enum qemu_plugin_op op,
                                                void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

#define MAX_MARKS 16
static uint64_t count; /* one vCPU (a Cortex-M board) */
static uint64_t marks[MAX_MARKS];
static size_t n_marks;

static void on_mark(unsigned int vcpu, void *udata)
{
    (void)vcpu;
    char line[64];
    /* QEMU runs an instruction's callbacks before its inline operations, so `count` holds the
     * instructions executed before this one. */
    snprintf(line, sizeof line, "mark 0x%" PRIx64 " %" PRIu64 "\n", (uint64_t)(uintptr_t)udata,
             count);
    qemu_plugin_outs(line);
}

static void on_tb(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    for (size_t i = 0; i < qemu_plugin_tb_n_insns(tb); ++i) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &count, 1);
        uint64_t pc = qemu_plugin_insn_vaddr(insn);
        for (size_t m = 0; m < n_marks; ++m) {
            if (marks[m] == pc) {
                qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mark, QEMU_PLUGIN_CB_NO_REGS,
                                                       (void *)(uintptr_t)pc);
            }
        }
    }
}

static void on_atexit(qemu_plugin_id_t id, void *udata)
{
    (void)id;
    (void)udata;
    char line[48];
    snprintf(line, sizeof line, "total %" PRIu64 "\n", count);
    qemu_plugin_outs(line);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const qemu_info_t *info, int argc,
                                                               char **argv)
{
    (void)info;
    for (int i = 0; i < argc; ++i) {
        if (strncmp(argv[i], "marks=", 6) != 0) {
            fprintf(stderr, "icount: unknown argument '%s' (expected marks=ADDR:ADDR...)\n", argv[i]);
            return -1;
        }
        for (char *p = argv[i] + 6; *p != '\0';) {
            char *end;
            uint64_t a = strtoull(p, &end, 0);
            if (end == p || n_marks == MAX_MARKS) {
                fprintf(stderr, "icount: bad or too many marker addresses in '%s'\n", argv[i]);
                return -1;
            }
            marks[n_marks++] = a & ~(uint64_t)1;
            p = *end == ':' ? end + 1 : end;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb);
    qemu_plugin_register_atexit_cb(id, on_atexit, NULL);
    return 0;
}
