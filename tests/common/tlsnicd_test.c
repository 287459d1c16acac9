/*
 * tlsnicd-test: tlsnicd with test seams where the device model goes, for the packet-path
 * tests that must not depend on the device (tests/integration/daemon_forwarding.sh):
 *
 *   tlsnicd-test [--test-hook xor|xor-fullcsum|xor-stalecsum] [--device table] ARGS...
 *
 * --test-hook plugs the XOR test hook (xorhook.h) in: TCP payload towards the wire is
 * XORed with 0x5a, to prove that rewritten frames arrive intact. --device table (and the
 * hook) serve the control channel with a flow table alone (flowtable.h: no crypto, for
 * flows whose payload is not TLS). Every other argument is tlsnicd's.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "flowtable.h"
#include "tlsnic/daemon.h"
#include "xorhook.h"

#define MAX_ARGS 128

static int xor_stats(void *ctx, char *buf, size_t cap)
{
    const struct tlsnic_xor_hook *h = ctx;
    int n = snprintf(buf, cap,
                     "xor_frames_rewritten %llu\nxor_partial_converted %llu\n"
                     "xor_full_computed %llu\nxor_not_tcp %llu\n",
                     (unsigned long long)h->frames_rewritten,
                     (unsigned long long)h->partial_converted,
                     (unsigned long long)h->full_computed, (unsigned long long)h->not_tcp);
    return n < 0 || (size_t)n >= cap ? -ENOBUFS : n;
}

int main(int argc, char **argv)
{
    static struct tlsnic_xor_hook xor_hook = {.key = 0x5a};
    char *args[MAX_ARGS];
    int nargs = 0, use_hook = 0, use_table = 0;
    if (argc >= MAX_ARGS) {
        fprintf(stderr, "tlsnicd-test: too many arguments\n");
        return 2;
    }
    for (int i = 0; i < argc; i++) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--test-hook") == 0 && value != NULL) {
            use_hook = 1;
            if (strcmp(value, "xor") == 0)
                xor_hook.full_csum = 0;
            else if (strcmp(value, "xor-fullcsum") == 0)
                xor_hook.full_csum = 1;
            else if (strcmp(value, "xor-stalecsum") == 0)
                xor_hook.full_csum = 2;
            else {
                fprintf(stderr, "tlsnicd-test: unknown --test-hook %s\n", value);
                return 2;
            }
            i++;
        } else if (strcmp(argv[i], "--device") == 0 && value != NULL) {
            if (strcmp(value, "table") == 0)
                use_table = 1;
            else if (strcmp(value, "nic") != 0) {
                fprintf(stderr, "tlsnicd-test: unknown --device %s\n", value);
                return 2;
            }
            i++;
        } else {
            args[nargs++] = argv[i];
        }
    }
    args[nargs] = NULL;
    if (!use_hook && !use_table)
        return tlsnic_daemon_main(nargs, args, NULL);
    struct tlsnic_flowtable *table = NULL;
    int err = tlsnic_flowtable_new(&table, 0);
    if (err < 0) {
        fprintf(stderr, "tlsnicd-test: flow table: %s\n", strerror(-err));
        return 1;
    }
    struct tlsnic_daemon_stand_in stand_in = {
        .name = use_hook ? "xor test hook" : "flow table only",
        .on_frame = use_hook ? tlsnic_xor_hook : NULL,
        .hook_ctx = &xor_hook,
        .dev = tlsnic_flowtable_dev(table),
        .stats = use_hook ? xor_stats : NULL,
        .stats_ctx = &xor_hook,
    };
    int rc = tlsnic_daemon_main(nargs, args, &stand_in);
    tlsnic_flowtable_free(table);
    return rc;
}
