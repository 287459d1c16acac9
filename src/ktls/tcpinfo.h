/* Internal to src/ktls: tcpi_bytes_acked of a TCP socket (see tcpinfo.c). */
#ifndef TLSNIC_KTLS_TCPINFO_H
#define TLSNIC_KTLS_TCPINFO_H

#include <stdint.h>
#include <sys/socket.h>

typedef int (*tlsnic_getsockopt_fn)(int fd, int level, int optname, void *optval,
                                    socklen_t *optlen);

/* 0 and *out, or -1 (errno set) / -2 (the kernel does not report it). */
int tlsnic_tcp_bytes_acked(int fd, tlsnic_getsockopt_fn getsockopt_fn, uint64_t *out);

#endif
