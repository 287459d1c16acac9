/* bench_eval internals shared between its files (see bench_eval.c). */
#ifndef TLSNIC_BENCH_EVAL_H
#define TLSNIC_BENCH_EVAL_H

#include <stdint.h>

struct eval_retrans {
    uint64_t bytes_retrans; /* bytes the sender's TCP retransmitted */
    uint32_t total_retrans; /* segments retransmitted */
    uint32_t snd_mss;
    uint32_t segs_in;       /* segments the socket received (ACKs, for a sender) */
    uint32_t segs_out;      /* segments it sent (TSO frames count as their segments) */
};

/* Reads fd's TCP_INFO retransmission and segment figures. 0 or -errno. */
int eval_tcp_retrans(int fd, struct eval_retrans *out);

#endif
