#include "record_type_msg.h"

#include <linux/tls.h>
#include <string.h>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

struct msghdr *record_type_msg_to_send(struct record_type_msg *m, uint8_t type,
                                       const void *buf, size_t len)
{
    memset(m, 0, sizeof(*m));
    m->iov = (struct iovec){.iov_base = (void *)buf, .iov_len = len};
    m->msg = (struct msghdr){.msg_iov = &m->iov, .msg_iovlen = 1, .msg_control = m->cb.b,
                             .msg_controllen = sizeof(m->cb.b)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m->msg);
    c->cmsg_level = SOL_TLS;
    c->cmsg_type = TLS_SET_RECORD_TYPE;
    c->cmsg_len = CMSG_LEN(sizeof(uint8_t));
    *CMSG_DATA(c) = type;
    return &m->msg;
}

struct msghdr *record_type_msg_to_recv(struct record_type_msg *m, void *buf, size_t len)
{
    memset(m, 0, sizeof(*m));
    m->iov = (struct iovec){.iov_base = buf, .iov_len = len};
    m->msg = (struct msghdr){.msg_iov = &m->iov, .msg_iovlen = 1, .msg_control = m->cb.b,
                             .msg_controllen = sizeof(m->cb.b)};
    return &m->msg;
}

uint8_t record_type_msg_type(struct record_type_msg *m)
{
    struct cmsghdr *c = CMSG_FIRSTHDR(&m->msg);
    if (c && c->cmsg_level == SOL_TLS && c->cmsg_type == TLS_GET_RECORD_TYPE)
        return *CMSG_DATA(c);
    return 0;
}
