/*
 * Classic pcap writer (not pcapng), LINKTYPE_RAW (101): each record is an L3 frame,
 * IPv4 or IPv6 told apart by the version nibble. GSO super-frames are written as the
 * kernel handed them (one record up to 64 KB, as tcpdump on a TSO interface shows them);
 * tshark and Wireshark read them. Internal to the daemon.
 *
 * Records are buffered and reach the file only whole, never split across two writes: a
 * daemon killed (SIGKILL) leaves a capture that readers take to its end, less the
 * records still in the buffer (flush often to bound that), and at most the last record
 * cut short if the kill landed inside the write() itself.
 */
#ifndef TLSNIC_CTL_PCAP_H
#define TLSNIC_CTL_PCAP_H

#include <stddef.h>
#include <stdint.h>

#define TLSNIC_PCAP_LINKTYPE_RAW 101u
#define TLSNIC_PCAP_SNAPLEN 262144u

struct tlsnic_pcap {
    int fd;           /* owned; -1 = closed */
    uint8_t *buffer;  /* owned: whole records waiting to be written */
    size_t used;
};

/* Creates or truncates path (mode 0600) and writes the file header. */
int tlsnic_pcap_open(struct tlsnic_pcap *pc, const char *path);

/* Appends one record stamped with the current time. len <= TLSNIC_PCAP_SNAPLEN. */
int tlsnic_pcap_write(struct tlsnic_pcap *pc, const uint8_t *frame, size_t len);

int tlsnic_pcap_flush(struct tlsnic_pcap *pc);

/* Flushes and closes; returns the first error. Safe on a closed (or zeroed) one. */
int tlsnic_pcap_close(struct tlsnic_pcap *pc);

#endif
