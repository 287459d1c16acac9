/* Internal to src/host: tcpi_bytes_acked of a TCP socket (see tcpinfo.c). */
#ifndef TLSNIC_KTLS_TCPINFO_H
#define TLSNIC_KTLS_TCPINFO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef int (*tlsnic_getsockopt_fn)(int fd, int level, int optname, void *optval,
                                    socklen_t *optlen);

typedef int (*tlsnic_setsockopt_fn)(int fd, int level, int optname, const void *optval,
                                    socklen_t optlen);

/* 0 and *out, or -1 (errno set) / -2 (the kernel does not report it). */
int tlsnic_tcp_bytes_acked(int fd, tlsnic_getsockopt_fn getsockopt_fn, uint64_t *out);

/*
 * The TCP sequence number of the next byte the socket will queue (write_seq), read through
 * TCP_REPAIR / TCP_QUEUE_SEQ. Needs CAP_NET_ADMIN. 0, or -1 with errno (EPERM).
 */
int tlsnic_tcp_send_seq(int fd, tlsnic_setsockopt_fn setsockopt_fn,
                        tlsnic_getsockopt_fn getsockopt_fn, uint32_t *seq);

typedef int (*tlsnic_ioctl_fn)(int fd, unsigned long request, ...);

/*
 * The TCP sequence number of the next byte the program will read (copied_seq): rcv_nxt
 * read through TCP_REPAIR / TCP_QUEUE_SEQ on the receive queue, minus the bytes queued
 * unread (SIOCINQ, into *queued if not NULL), read again until no segment arrived in
 * between. Needs CAP_NET_ADMIN. 0, or -1 with errno (EPERM; EAGAIN if the stream never
 * held still).
 */
int tlsnic_tcp_recv_seq(int fd, tlsnic_setsockopt_fn setsockopt_fn,
                        tlsnic_getsockopt_fn getsockopt_fn, tlsnic_ioctl_fn ioctl_fn,
                        uint32_t *seq, uint32_t *queued);

/* The most a TCP receive buffer can grow to (net.ipv4.tcp_rmem's third value; 6 MB,
 * Linux's default, if it cannot be read). */
size_t tlsnic_tcp_rmem_max(void);

#endif
