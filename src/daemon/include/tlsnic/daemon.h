/*
 * tlsnicd as a function: the daemon's command line, its packet path between two TUN
 * devices (fwd.h) with the device model (nic.h) as the frame hook, and its control server
 * (ctl_server.h). tlsnicd.c is main() around it; a test build passes a stand-in for the
 * device (tests/common/tlsnicd_test.c), so no test seam ships in tlsnicd.
 */
#ifndef TLSNIC_DAEMON_H
#define TLSNIC_DAEMON_H

#include <stddef.h>

#include "tlsnic/devops.h"
#include "tlsnic/fwd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a test build puts where the device model goes. Borrowed for the daemon's life. */
struct tlsnic_daemon_stand_in {
    const char *name;             /* for the start-up line ("xor test hook", ...) */
    tlsnic_frame_hook on_frame;   /* NULL: every frame passes untouched */
    void *hook_ctx;
    struct tlsnic_dev *dev;       /* the device behind the control channel (required) */
    /* Extra "name value\n" lines for STATS and the exit report (may be NULL). */
    int (*stats)(void *ctx, char *buf, size_t cap);
    void *stats_ctx;
};

/*
 * Parses argv as tlsnicd's command line (or `stats --ctl PATH`) and runs until SIGTERM /
 * SIGINT. stand_in NULL: the device model. Returns the process exit status.
 */
int tlsnic_daemon_main(int argc, char **argv, const struct tlsnic_daemon_stand_in *stand_in);

#ifdef __cplusplus
}
#endif

#endif
