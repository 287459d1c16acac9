/*
 * tlsnic attach: the host socket layer (ktls.h) offloads to tlsnicd (src/daemon) on its
 * own. One call, made by the preload library at start and by any program using the tlsnic
 * API that wants the daemon:
 *
 *     tlsnic_attach_daemon(NULL);
 *
 * From then on every socket whose TLS_TX keys are set is offered to the daemon listening
 * at the control socket: $TLSNIC_CTL, else TLSNIC_ATTACH_DEFAULT_CTL. The first offer
 * connects (and later offers retry while no daemon was there). A daemon that is
 * reachable and accepts the flow puts TX in device mode, its records kept in a sealed
 * shared-memory store the daemon maps read-only (shmstore.h); otherwise TX stays in
 * software, and tlsnic_get_mode says why: TLSNIC_SW_REASON_DEVICE_UNREACHABLE (nobody
 * listens), DEVICE_GONE (the daemon went away), TABLE_FULL, DEVICE_REFUSED with the
 * daemon's errno, ...
 *
 * Restart: once connected, a watcher thread waits for the daemon to go away (its control
 * connection closes, e.g. SIGKILL). It then reconnects every TLSNIC_ATTACH_RETRY_MS and,
 * as soon as a daemon listens again, adds every device-mode context again from its first
 * unacknowledged record (tlsnic_device_readd). A daemon started with --state-file drops
 * the payload of those flows until then, so no plaintext leaves meanwhile.
 *
 * Environment: TLSNIC_CTL=path ("off": no daemon, tlsnic_attach_daemon returns 0 and
 * leaves the device unset); TLSNIC_SHM_SLOTS=n records per store at most (default 4096,
 * in 8 MB: the unacknowledged window must fit, else sends wait for ACKs); TLSNIC_ATTACH_DEBUG=1
 * one line on stderr per connection event.
 *
 * Errors: negative errno.
 */
#ifndef TLSNIC_ATTACH_H
#define TLSNIC_ATTACH_H

#include "tlsnic/devops.h"
#include "tlsnic/ktls.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TLSNIC_ATTACH_DEFAULT_CTL "/run/tlsnicd.sock"
#define TLSNIC_ATTACH_RETRY_MS 20
#define TLSNIC_ATTACH_DEFAULT_SLOTS 4096u

/*
 * Makes the daemon at path (NULL: from the environment, see above) the device that new
 * sockets of the host socket layer are bound to (tlsnic_set_default_offload, with the
 * shared-memory record store below). Nothing is connected yet.
 * 0, -EALREADY if attached already, -ENAMETOOLONG, -ENOMEM.
 */
int tlsnic_attach_daemon(const char *path);

/* The path in use ("" when not attached). */
const char *tlsnic_attach_path(void);

/*
 * The record store tlsnic_attach_daemon binds sockets to, for programs that pick their
 * device themselves (tlsnic_sock_set_offload): a shared-memory store (shm_writer.h) per offloaded
 * direction, framed in place, with the flags tlsnicd writes there. ctx: a uint32_t that
 * stays valid, the number of record slots of each store.
 */
extern const struct tlsnic_dev_store_ops tlsnic_attach_shm_store_ops;

/* Contexts re-added after daemon restarts so far (also the TlsnicTxDeviceReadd counter). */
unsigned long tlsnic_attach_restarts_seen(void);

#ifdef __cplusplus
}
#endif

#endif
