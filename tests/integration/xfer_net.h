/*
 * What tlsnic-xfer and tlsnic-devxfer share: one TCP connection to or from a numeric
 * address and port. Errors are printed on stderr, prefixed with the tool's name (who).
 */
#ifndef TLSNIC_TEST_XFER_NET_H
#define TLSNIC_TEST_XFER_NET_H

/* A socket connected to addr:port, or -1. */
int xfer_connect(const char *who, const char *addr, const char *port);

/*
 * Listens on addr:port, prints "listening" on stderr once bound, and accepts one
 * connection: the connected socket (the listening one in *listener, for the caller to
 * close), or -1.
 */
int xfer_accept_one(const char *who, const char *addr, const char *port, int *listener);

#endif
