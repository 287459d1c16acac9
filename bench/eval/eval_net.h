/*
 * What bench_eval (the sending side) and bench_rx (the receiving side) both do with
 * sockets and clocks: numeric address resolution, bounded socket I/O, time in seconds.
 */
#ifndef TLSNIC_BENCH_EVAL_NET_H
#define TLSNIC_BENCH_EVAL_NET_H

#include <netdb.h>
#include <sys/time.h>

/* CLOCK_MONOTONIC in seconds. */
double eval_now_s(void);

/* A struct timeval (getrusage's) in seconds. */
double eval_tv_s(struct timeval tv);

/* SO_RCVTIMEO and SO_SNDTIMEO of secs on fd: 0 or -errno. */
int eval_set_timeouts(int fd, long secs);

/* A numeric address and port (no DNS), for a stream socket; passive: for bind. 0 and
 * *out (free with freeaddrinfo), or -EINVAL with the reason on stderr. */
int eval_resolve(const char *addr, int port, int passive, struct addrinfo **out);

#endif
