/*
 * The host's side of the control channel: tlsnicd as a struct tlsnic_dev (devops.h), and
 * one-shot queries for tools. Host side only: it links no daemon or device code.
 *
 * Errors: negative errno.
 */
#ifndef TLSNIC_CTL_CLIENT_H
#define TLSNIC_CTL_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "tlsnic/ctl_chan.h"
#include "tlsnic/ctl_proto.h"
#include "tlsnic/devops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Host side: the daemon as a struct tlsnic_dev.                                              */

/*
 * Connects to the daemon at path. *out is a device whose ops send requests and wait for
 * the reply (at most timeout_ms, 0 = 5000; -ETIMEDOUT after). Thread-safe: one request
 * at a time. The add op needs the socket (sockfd >= 0, else -EBADF) and ignores the flow
 * argument (the daemon reads it from the socket). A store made by tlsnic_shm_writer_store
 * travels with the request (its memfd); any other store cannot cross processes and is
 * not sent (the device then has no host store for the flow). A lost connection gives
 * -ENODEV.
 */
int tlsnic_ctl_client_open(const char *path, int timeout_ms, struct tlsnic_dev **out);
void tlsnic_ctl_client_close(struct tlsnic_dev *dev);

/*
 * The connection's fd, to poll for the daemon going away (POLLHUP, or POLLIN with EOF):
 * then reconnect and re-add. Do not read or write it. -1 after a failed reconnect.
 */
int tlsnic_ctl_client_fd(struct tlsnic_dev *dev);

/*
 * Closes the connection and connects again to the same path (a restarted daemon). The
 * flows the old connection added are gone from the daemon: add them again. 0 or -errno
 * of connect (-ECONNREFUSED / -ENOENT while no daemon listens).
 */
int tlsnic_ctl_client_reconnect(struct tlsnic_dev *dev);

/* The text of the last refusal the daemon sent on this connection ("" if none). */
const char *tlsnic_ctl_client_last_error(struct tlsnic_dev *dev);

#ifdef __cplusplus
}
#endif

#endif
