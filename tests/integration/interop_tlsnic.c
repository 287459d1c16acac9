#include "interop_tlsnic.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "record_type_msg.h"
#include "stream_pattern.h"
#include "tlsnic/ktls.h"

ssize_t interop_send_typed(int fd, uint8_t type, const void *buf, size_t len)
{
    struct record_type_msg m;
    return tlsnic_sendmsg(fd, record_type_msg_to_send(&m, type, buf, len), 0);
}

ssize_t interop_recv_typed(int fd, void *buf, size_t len, int flags, uint8_t *type)
{
    struct record_type_msg m;
    ssize_t r = tlsnic_recvmsg(fd, record_type_msg_to_recv(&m, buf, len), flags);
    *type = r >= 0 ? record_type_msg_type(&m) : 0;
    return r;
}

int interop_send_stream(int fd)
{
    static uint8_t buf[131072];
    uint64_t off = 0;
    unsigned n = 0;
    while (off < STREAM_TOTAL) {
        size_t len = stream_write_size(n);
        if (len > STREAM_TOTAL - off)
            len = STREAM_TOTAL - off;
        stream_fill(off, buf, len);
        int flags = (n % 3 == 1 && off + len < STREAM_TOTAL) ? MSG_MORE : 0;
        size_t done = 0;
        while (done < len) {
            ssize_t w = tlsnic_send(fd, buf + done, len - done, flags);
            if (w <= 0)
                return 0;
            done += (size_t)w;
        }
        off += len;
        n++;
    }
    const uint8_t close_notify[2] = {1, 0};
    return interop_send_typed(fd, TLSNIC_CT_ALERT, close_notify, 2) == 2;
}

void interop_recv_stream(int fd, struct interop_received *got)
{
    static uint8_t buf[65536];
    unsigned n = 0;
    *got = (struct interop_received){0};
    for (;;) {
        got->end_len = interop_recv_typed(fd, buf, stream_read_size(n++), 0, &got->end_type);
        if (got->end_len <= 0) {
            got->bad = 1;
            break;
        }
        if (got->end_type != TLSNIC_CT_APPLICATION_DATA)
            break;
        if (!stream_check(got->bytes, buf, (size_t)got->end_len))
            got->bad = 2; /* read on: the sender must not block */
        got->bytes += (uint64_t)got->end_len;
    }
    got->end[0] = buf[0];
    got->end[1] = buf[1];
}

void interop_read_across_key_update(int fd, const union tlsnic_crypto_info *next,
                                    size_t next_len)
{
    uint8_t buf[256], type;
    assert_int_equal(interop_recv_typed(fd, buf, sizeof(buf), 0, &type), 6);
    assert_int_equal(type, TLSNIC_CT_APPLICATION_DATA);
    assert_memory_equal(buf, "before", 6);
    assert_int_equal(interop_recv_typed(fd, buf, sizeof(buf), 0, &type), 5);
    assert_int_equal(type, TLSNIC_CT_HANDSHAKE);
    assert_int_equal(buf[0], 24); /* KeyUpdate */
    assert_int_equal(buf[4], 0);  /* update_not_requested */
    errno = 0;
    assert_int_equal(tlsnic_recv(fd, buf, sizeof(buf), MSG_DONTWAIT), -1);
    assert_int_equal(errno, EKEYEXPIRED);
    assert_int_equal(tlsnic_setsockopt(fd, SOL_TLS, TLS_RX, next, (socklen_t)next_len), 0);
    assert_int_equal(tlsnic_recv(fd, buf, sizeof(buf), 0), 5);
    assert_memory_equal(buf, "after", 5);
}

void interop_write_across_key_update(int fd, const union tlsnic_crypto_info *next,
                                     size_t next_len)
{
    assert_int_equal(tlsnic_send(fd, "before", 6, 0), 6);
    const uint8_t key_update[5] = {24, 0, 0, 1, 0}; /* update_not_requested */
    assert_int_equal(interop_send_typed(fd, TLSNIC_CT_HANDSHAKE, key_update, 5), 5);
    assert_int_equal(tlsnic_setsockopt(fd, SOL_TLS, TLS_TX, next, (socklen_t)next_len), 0);
    assert_int_equal(tlsnic_send(fd, "after", 5, 0), 5);
}
