/* A connected loopback TCP pair for tests: fds[0] and fds[1], 5 s send/receive timeouts. */
#ifndef TLSNIC_TEST_TCP_PAIR_H
#define TLSNIC_TEST_TCP_PAIR_H

/* Returns 0 or a negative errno. */
int tcp_pair(int fds[2]);

/* A listening loopback socket on an ephemeral port (*port filled), or a negative errno. */
int tcp_listen_any(unsigned short *port);

#endif
