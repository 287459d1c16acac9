/*
 * A msghdr for one record of a kTLS socket with its type: one iovec and room for the one
 * SOL_TLS control message that carries the type, TLS_SET_RECORD_TYPE on the way out,
 * TLS_GET_RECORD_TYPE on the way in. Written once here for every test that sends or reads
 * control records, whichever sendmsg / recvmsg it calls (tlsnic's, the kernel's, libc's
 * under the preload library).
 *
 * The msghdr points into the struct: keep the struct where it is while the msghdr is used.
 */
#ifndef TLSNIC_TEST_RECORD_TYPE_MSG_H
#define TLSNIC_TEST_RECORD_TYPE_MSG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct record_type_msg {
    struct msghdr msg;
    struct iovec iov;
    union {
        char b[CMSG_SPACE(sizeof(uint8_t))];
        struct cmsghdr align;
    } cb;
};

/* m->msg sends buf[0, len) as one record of this type; returns &m->msg. */
struct msghdr *record_type_msg_to_send(struct record_type_msg *m, uint8_t type,
                                       const void *buf, size_t len);

/* m->msg receives into buf[0, len) with room for the record type; returns &m->msg. */
struct msghdr *record_type_msg_to_recv(struct record_type_msg *m, void *buf, size_t len);

/* The record type a recvmsg with m->msg reported (TLS_GET_RECORD_TYPE), or 0 if none. */
uint8_t record_type_msg_type(struct record_type_msg *m);

#endif
