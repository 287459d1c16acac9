/*
 * Interop test support: what the interop tests do on tlsnic's end of a connection, the same
 * whichever TLS stack (libssl, GnuTLS) is the peer. fd is a socket with tlsnic's keys set in
 * the direction used. The functions that check assert with cmocka.
 */
#ifndef TLSNIC_TEST_INTEROP_TLSNIC_H
#define TLSNIC_TEST_INTEROP_TLSNIC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tlsnic/record.h"

/* One record of this type (TLSNIC_CT_*) through tlsnic_sendmsg: what it returns. */
ssize_t interop_send_typed(int fd, uint8_t type, const void *buf, size_t len);

/* tlsnic_recvmsg into buf; the record's type in *type (0 if none): what it returns. */
ssize_t interop_recv_typed(int fd, void *buf, size_t len, int flags, uint8_t *type);

/*
 * Sends the STREAM_TOTAL bytes of the stream (stream_pattern.h) in writes of
 * stream_write_size (every third one with MSG_MORE, but the last), then close_notify as an
 * alert record. 1 if all of it was sent, else 0.
 */
int interop_send_stream(int fd);

/* What tlsnic read of a peer's stream, up to the first record that is not data. */
struct interop_received {
    int bad;            /* 0; 1: a read failed or the stream ended; 2: bytes off the stream */
    uint64_t bytes;     /* stream bytes read */
    uint8_t end_type;   /* the type of the record that ended the stream */
    ssize_t end_len;    /* its length */
    uint8_t end[2];     /* its first two bytes */
};

/* Reads the stream with reads of stream_read_size until a record that is not data. */
void interop_recv_stream(int fd, struct interop_received *got);

/*
 * After the peer sent "before", a KeyUpdate (update_not_requested) and "after": tlsnic
 * reads "before" as data, the KeyUpdate as a handshake record, gets EKEYEXPIRED until the
 * next keys are set as TLS_RX, then reads "after".
 */
void interop_read_across_key_update(int fd, const union tlsnic_crypto_info *next,
                                    size_t next_len);

/*
 * tlsnic sends "before", a KeyUpdate (update_not_requested) as a handshake record, sets
 * the next keys as TLS_TX and sends "after": the peer must read both.
 */
void interop_write_across_key_update(int fd, const union tlsnic_crypto_info *next,
                                     size_t next_len);

#endif
