/*
 * Control protocol: every message type survives encode -> decode, and decode refuses
 * every malformed message with its errno (ctl.h), never reading past the buffer.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "tlsnic/ctl_proto.h"

static uint8_t buf[TLSNIC_CTL_MAX_MSG];

static int encode(const struct tlsnic_ctl_msg *m)
{
    int len = tlsnic_ctl_encode(m, buf, sizeof(buf));
    assert_true(len >= TLSNIC_CTL_HDR_LEN);
    return len;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void add_round_trips(void **state)
{
    uint8_t info[40];
    for (size_t i = 0; i < sizeof(info); i++)
        info[i] = (uint8_t)i;
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_ADD, .id = 7, .dir = TLSNIC_DIR_RX,
                               .tcp_seq = 0xdeadbeef, .info = info, .info_len = sizeof(info)};
    int len = encode(&m);
    assert_int_equal(len, TLSNIC_CTL_HDR_LEN + 12 + sizeof(info));
    struct tlsnic_ctl_msg d;
    assert_int_equal(tlsnic_ctl_decode(buf, (size_t)len, &d), 0);
    assert_int_equal(d.type, TLSNIC_CTL_ADD);
    assert_int_equal(d.id, 7);
    assert_int_equal(d.dir, TLSNIC_DIR_RX);
    assert_int_equal(d.tcp_seq, 0xdeadbeef);
    assert_int_equal(d.info_len, sizeof(info));
    assert_memory_equal(d.info, info, sizeof(info));
}

static void rekey_round_trips(void **state)
{
    uint8_t info[40];
    for (size_t i = 0; i < sizeof(info); i++)
        info[i] = (uint8_t)(0x80 | i);
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_REKEY, .id = 8, .dir = TLSNIC_DIR_RX,
                               .tcp_seq = 0x12345678, .info = info, .info_len = sizeof(info)};
    int len = encode(&m);
    assert_int_equal(len, TLSNIC_CTL_HDR_LEN + 12 + sizeof(info));
    struct tlsnic_ctl_msg d;
    assert_int_equal(tlsnic_ctl_decode(buf, (size_t)len, &d), 0);
    assert_int_equal(d.type, TLSNIC_CTL_REKEY);
    assert_int_equal(d.dir, TLSNIC_DIR_RX);
    assert_int_equal(d.tcp_seq, 0x12345678);
    assert_int_equal(d.info_len, sizeof(info));
    assert_memory_equal(d.info, info, sizeof(info));
    m.info_len = TLSNIC_CTL_MAX_INFO + 1;
    assert_int_equal(tlsnic_ctl_encode(&m, buf, sizeof(buf)), -EMSGSIZE);
}

static void del_round_trips(void **state)
{
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_DEL, .id = 9, .dir = TLSNIC_DIR_TX};
    int len = encode(&m);
    struct tlsnic_ctl_msg d;
    assert_int_equal(tlsnic_ctl_decode(buf, (size_t)len, &d), 0);
    assert_int_equal(d.type, TLSNIC_CTL_DEL);
    assert_int_equal(d.id, 9);
    assert_int_equal(d.dir, TLSNIC_DIR_TX);
}

static void release_round_trips_with_its_flags(void **state)
{
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_RELEASE, .id = 10, .dir = TLSNIC_DIR_TX,
                               .release_flags = TLSNIC_CTL_RELEASE_ABORT};
    int len = encode(&m);
    assert_int_equal(len, TLSNIC_CTL_HDR_LEN + 4);
    struct tlsnic_ctl_msg d;
    assert_int_equal(tlsnic_ctl_decode(buf, (size_t)len, &d), 0);
    assert_int_equal(d.type, TLSNIC_CTL_RELEASE);
    assert_int_equal(d.id, 10);
    assert_int_equal(d.dir, TLSNIC_DIR_TX);
    assert_int_equal(d.release_flags, TLSNIC_CTL_RELEASE_ABORT);
    m.release_flags = 0;
    len = encode(&m);
    assert_int_equal(tlsnic_ctl_decode(buf, (size_t)len, &d), 0);
    assert_int_equal(d.release_flags, 0);
}

static void release_with_unknown_flags_is_refused(void **state)
{
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_RELEASE, .dir = TLSNIC_DIR_TX,
                               .release_flags = 0x2};
    assert_int_equal(tlsnic_ctl_encode(&m, buf, sizeof(buf)), -EINVAL);
    m.release_flags = 0;
    int len = encode(&m);
    buf[TLSNIC_CTL_HDR_LEN + 1] = 0x80; /* a flag nobody defined */
    struct tlsnic_ctl_msg d;
    assert_int_equal(tlsnic_ctl_decode(buf, (size_t)len, &d), -EINVAL);
    buf[TLSNIC_CTL_HDR_LEN + 1] = 0;
    buf[TLSNIC_CTL_HDR_LEN + 3] = 1; /* reserved */
    assert_int_equal(tlsnic_ctl_decode(buf, (size_t)len, &d), -EBADMSG);
}

static void resync_round_trips(void **state)
{
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_RESYNC, .id = 1, .dir = TLSNIC_DIR_TX,
                               .tcp_seq = 123456, .rec_seq = 0x0102030405060708ull};
    int len = encode(&m);
    struct tlsnic_ctl_msg d;
    assert_int_equal(tlsnic_ctl_decode(buf, (size_t)len, &d), 0);
    assert_int_equal(d.tcp_seq, 123456);
    assert_true(d.rec_seq == 0x0102030405060708ull);
}

static void flow_flags_round_trips(void **state)
{
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_FLOW_FLAGS, .id = 2, .dir = TLSNIC_DIR_TX};
    m.flow.family = AF_INET6;
    memset(m.flow.local, 0x20, 16);
    memset(m.flow.remote, 0x21, 16);
    m.flow.local_port = 443;
    m.flow.remote_port = 50000;
    int len = encode(&m);
    struct tlsnic_ctl_msg d;
    assert_int_equal(tlsnic_ctl_decode(buf, (size_t)len, &d), 0);
    assert_memory_equal(&d.flow, &m.flow, sizeof(m.flow));
}

static void stats_request_is_a_bare_header(void **state)
{
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_STATS, .id = 3};
    assert_int_equal(encode(&m), TLSNIC_CTL_HDR_LEN);
}

static void reply_carries_status_text_and_payload(void **state)
{
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_REPLY, .id = 4, .status = -EPERM,
                               .text = "not yours", .text_len = 9,
                               .payload = (const uint8_t *)"abc", .payload_len = 3};
    int len = encode(&m);
    struct tlsnic_ctl_msg d;
    assert_int_equal(tlsnic_ctl_decode(buf, (size_t)len, &d), 0);
    assert_int_equal(d.status, -EPERM);
    assert_int_equal(d.text_len, 9);
    assert_memory_equal(d.text, "not yours", 9);
    assert_int_equal(d.payload_len, 3);
    assert_memory_equal(d.payload, "abc", 3);
}

static void every_truncation_is_refused(void **state)
{
    uint8_t info[56] = {0};
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_ADD, .info = info, .info_len = sizeof(info)};
    int len = encode(&m);
    struct tlsnic_ctl_msg d;
    for (int cut = 0; cut < len; cut++) {
        /* The length field still claims the whole message, the buffer holds less. */
        assert_int_equal(tlsnic_ctl_decode(buf, (size_t)cut, &d), -EBADMSG);
    }
}

static void length_field_must_match_the_datagram(void **state)
{
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_DEL};
    int len = encode(&m);
    put_le32(buf, (uint32_t)len - 1);
    struct tlsnic_ctl_msg d;
    assert_int_equal(tlsnic_ctl_decode(buf, (size_t)len, &d), -EBADMSG);
}

static void trailing_bytes_are_refused(void **state)
{
    /* A DEL with a 4-tuple appended: the protocol has no such field, so it is refused. */
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_DEL};
    int len = encode(&m);
    memset(buf + len, 0xaa, 36);
    put_le32(buf, (uint32_t)len + 36);
    struct tlsnic_ctl_msg d;
    assert_int_equal(tlsnic_ctl_decode(buf, (size_t)len + 36, &d), -EBADMSG);
}

static void wrong_version_is_refused(void **state)
{
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_STATS};
    int len = encode(&m);
    buf[4] = 2;
    struct tlsnic_ctl_msg d;
    assert_int_equal(tlsnic_ctl_decode(buf, (size_t)len, &d), -EPROTO);
}

static void unknown_type_is_refused(void **state)
{
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_STATS};
    int len = encode(&m);
    buf[6] = 0x42;
    struct tlsnic_ctl_msg d;
    assert_int_equal(tlsnic_ctl_decode(buf, (size_t)len, &d), -EOPNOTSUPP);
}

static void nonzero_reserved_bytes_are_refused(void **state)
{
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_DEL};
    int len = encode(&m);
    buf[TLSNIC_CTL_HDR_LEN + 2] = 1;
    struct tlsnic_ctl_msg d;
    assert_int_equal(tlsnic_ctl_decode(buf, (size_t)len, &d), -EBADMSG);
}

static void direction_other_than_tx_rx_is_refused(void **state)
{
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_DEL};
    int len = encode(&m);
    buf[TLSNIC_CTL_HDR_LEN] = 2;
    struct tlsnic_ctl_msg d;
    assert_int_equal(tlsnic_ctl_decode(buf, (size_t)len, &d), -EINVAL);
    m.dir = 2;
    assert_int_equal(tlsnic_ctl_encode(&m, buf, sizeof(buf)), -EINVAL);
}

static void oversized_crypto_info_is_refused(void **state)
{
    uint8_t info[TLSNIC_CTL_MAX_INFO + 1] = {0};
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_ADD, .info = info, .info_len = TLSNIC_CTL_MAX_INFO};
    int len = encode(&m);
    /* Rewrite the info_len field to one past the limit, with the bytes present. */
    buf[TLSNIC_CTL_HDR_LEN + 8] = (uint8_t)(TLSNIC_CTL_MAX_INFO + 1);
    buf[len] = 0;
    put_le32(buf, (uint32_t)len + 1);
    struct tlsnic_ctl_msg d;
    assert_int_equal(tlsnic_ctl_decode(buf, (size_t)len + 1, &d), -EMSGSIZE);
    m.info_len = TLSNIC_CTL_MAX_INFO + 1;
    assert_int_equal(tlsnic_ctl_encode(&m, buf, sizeof(buf)), -EMSGSIZE);
}

static void reply_status_must_be_zero_or_negative_errno(void **state)
{
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_REPLY, .status = 0};
    int len = encode(&m);
    put_le32(buf + TLSNIC_CTL_HDR_LEN, 5);
    struct tlsnic_ctl_msg d;
    assert_int_equal(tlsnic_ctl_decode(buf, (size_t)len, &d), -EBADMSG);
}

static void flow_with_unknown_family_is_refused(void **state)
{
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_FLOW_FLAGS};
    m.flow.family = AF_INET;
    int len = encode(&m);
    buf[TLSNIC_CTL_HDR_LEN + 4] = AF_UNIX;
    struct tlsnic_ctl_msg d;
    assert_int_equal(tlsnic_ctl_decode(buf, (size_t)len, &d), -EBADMSG);
}

static void oversized_datagram_is_refused(void **state)
{
    static uint8_t big[TLSNIC_CTL_MAX_MSG + 1];
    struct tlsnic_ctl_msg d;
    assert_int_equal(tlsnic_ctl_decode(big, sizeof(big), &d), -EMSGSIZE);
}

static void encode_into_a_short_buffer_fails_cleanly(void **state)
{
    uint8_t small[TLSNIC_CTL_HDR_LEN + 3];
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_DEL};
    assert_int_equal(tlsnic_ctl_encode(&m, small, sizeof(small)), -ENOBUFS);
}

static void flow_stats_request_carries_the_first_entry_wanted(void **state)
{
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_FLOW_STATS, .id = 5, .first = 0x01020304};
    int len = encode(&m);
    assert_int_equal(len, TLSNIC_CTL_HDR_LEN + 8);
    struct tlsnic_ctl_msg d;
    assert_int_equal(tlsnic_ctl_decode(buf, (size_t)len, &d), 0);
    assert_int_equal(d.type, TLSNIC_CTL_FLOW_STATS);
    assert_int_equal(d.first, 0x01020304);
}

/* ---- flow pages ---- */

static struct tlsnic_ctl_flow_entry page_in[3], page_out[TLSNIC_CTL_FLOW_PAGE_MAX];

/* A page of two flows (IPv4 TX, ended; IPv6 RX) with distinct counters; returns its length. */
static int encode_page(struct tlsnic_ctl_flow_page *page, uint16_t n_counters)
{
    memset(page_in, 0, sizeof(page_in));
    page_in[0].flow = (struct tlsnic_flow){.family = AF_INET, .local = {198, 18, 0, 1},
                                           .remote = {198, 18, 0, 2}, .local_port = 4433,
                                           .remote_port = 40000};
    page_in[0].dir = TLSNIC_DIR_TX;
    page_in[0].flags = TLSNIC_CTL_FLOW_ENDED;
    page_in[0].owner_pid = 1234;
    page_in[1].flow = (struct tlsnic_flow){.family = AF_INET6, .local = {0x20, 0x01, 0x0d, 0xb8, [15] = 1},
                                           .remote = {0x20, 0x01, 0x0d, 0xb8, [15] = 2},
                                           .local_port = 443, .remote_port = 65535};
    page_in[1].dir = TLSNIC_DIR_RX;
    page_in[1].owner_pid = 99;
    for (int e = 0; e < 2; e++)
        for (unsigned k = 0; k < TLSNIC_CTL_FLOW_MAX_COUNTERS; k++)
            page_in[e].counters[k] = k < n_counters ? ((uint64_t)(e + 1) << 40) + k : 0;
    *page = (struct tlsnic_ctl_flow_page){.total = 7, .first = 5, .count = 2, .n_counters = n_counters};
    int len = tlsnic_ctl_flow_page_encode(page, page_in, buf, sizeof(buf));
    assert_int_equal(len, TLSNIC_CTL_FLOW_PAGE_HDR_LEN + 2 * TLSNIC_CTL_FLOW_ENTRY_LEN(n_counters));
    return len;
}

static void flow_page_round_trips_flows_directions_owners_and_counters(void **state)
{
    struct tlsnic_ctl_flow_page page, d;
    int len = encode_page(&page, TLSNIC_CTL_FLOW_COUNTERS);
    assert_int_equal(tlsnic_ctl_flow_page_decode(buf, (size_t)len, &d, page_out, 2), 0);
    assert_int_equal(d.total, 7);
    assert_int_equal(d.first, 5);
    assert_int_equal(d.count, 2);
    assert_int_equal(d.n_counters, TLSNIC_CTL_FLOW_COUNTERS);
    for (int e = 0; e < 2; e++) {
        assert_memory_equal(&page_out[e].flow, &page_in[e].flow, sizeof(page_in[e].flow));
        assert_int_equal(page_out[e].dir, page_in[e].dir);
        assert_int_equal(page_out[e].flags, page_in[e].flags);
        assert_int_equal(page_out[e].owner_pid, page_in[e].owner_pid);
        assert_memory_equal(page_out[e].counters, page_in[e].counters, sizeof(page_in[e].counters));
    }
}

static void flow_page_fits_a_reply_with_every_known_counter(void **state)
{
    /* The daemon sends at least a handful of flows per page. */
    assert_true((TLSNIC_CTL_MAX_PAYLOAD - TLSNIC_CTL_FLOW_PAGE_HDR_LEN) /
                    TLSNIC_CTL_FLOW_ENTRY_LEN(TLSNIC_CTL_FLOW_COUNTERS) >= 64);
    struct tlsnic_ctl_msg m = {.type = TLSNIC_CTL_REPLY, .payload = buf,
                               .payload_len = TLSNIC_CTL_MAX_PAYLOAD,
                               .text_len = TLSNIC_CTL_MAX_TEXT, .text = (const char *)buf};
    static uint8_t out[TLSNIC_CTL_MAX_MSG];
    assert_int_equal(tlsnic_ctl_encode(&m, out, sizeof(out)), TLSNIC_CTL_MAX_MSG);
}

static void flow_page_counter_names_are_the_devices(void **state)
{
    assert_string_equal(tlsnic_ctl_flow_counter_name(TLSNIC_CTL_FC_tx_tls_encrypted_bytes),
                        "tx_tls_encrypted_bytes");
    assert_string_equal(tlsnic_ctl_flow_counter_name(TLSNIC_CTL_FC_tx_tls_ack_trims),
                        "tx_tls_ack_trims");
    assert_null(tlsnic_ctl_flow_counter_name(TLSNIC_CTL_FLOW_COUNTERS));
}

static void flow_page_every_truncation_is_refused(void **state)
{
    struct tlsnic_ctl_flow_page page, d;
    int len = encode_page(&page, TLSNIC_CTL_FLOW_COUNTERS);
    for (int cut = 0; cut < len; cut++)
        assert_int_equal(tlsnic_ctl_flow_page_decode(buf, (size_t)cut, &d, page_out, 2), -EBADMSG);
}

static void flow_page_trailing_bytes_are_refused(void **state)
{
    struct tlsnic_ctl_flow_page page, d;
    int len = encode_page(&page, 4);
    buf[len] = 0;
    assert_int_equal(tlsnic_ctl_flow_page_decode(buf, (size_t)len + 1, &d, page_out, 2), -EBADMSG);
}

static void flow_page_with_more_entries_than_the_caller_has_room_for_is_refused(void **state)
{
    struct tlsnic_ctl_flow_page page, d;
    int len = encode_page(&page, 4);
    page_out[1].owner_pid = 0xabcd;
    assert_int_equal(tlsnic_ctl_flow_page_decode(buf, (size_t)len, &d, page_out, 1), -ENOBUFS);
    assert_int_equal(page_out[1].owner_pid, 0xabcd); /* nothing written past cap */
}

static void flow_page_with_too_many_counters_is_refused(void **state)
{
    struct tlsnic_ctl_flow_page page, d;
    int len = encode_page(&page, 0);
    buf[10] = TLSNIC_CTL_FLOW_MAX_COUNTERS + 1; /* n_counters */
    assert_int_equal(tlsnic_ctl_flow_page_decode(buf, (size_t)len, &d, page_out, 2), -EMSGSIZE);
    page.n_counters = TLSNIC_CTL_FLOW_MAX_COUNTERS + 1;
    assert_int_equal(tlsnic_ctl_flow_page_encode(&page, page_in, buf, sizeof(buf)), -EINVAL);
}

static void flow_page_count_past_the_total_is_refused(void **state)
{
    struct tlsnic_ctl_flow_page page, d;
    int len = encode_page(&page, 1);
    put_le32(buf, 6); /* total 6, first 5, count 2 */
    assert_int_equal(tlsnic_ctl_flow_page_decode(buf, (size_t)len, &d, page_out, 2), -EBADMSG);
    page.total = 6;
    assert_int_equal(tlsnic_ctl_flow_page_encode(&page, page_in, buf, sizeof(buf)), -EINVAL);
}

static void flow_page_count_that_disagrees_with_the_bytes_is_refused(void **state)
{
    struct tlsnic_ctl_flow_page page, d;
    int len = encode_page(&page, 1);
    buf[8] = 3; /* count 3, two entries present */
    put_le32(buf, 9);
    assert_int_equal(tlsnic_ctl_flow_page_decode(buf, (size_t)len, &d, page_out, 3), -EBADMSG);
}

static void flow_page_entry_with_bad_family_dir_flags_or_reserved_is_refused(void **state)
{
    const size_t at = TLSNIC_CTL_FLOW_PAGE_HDR_LEN + TLSNIC_CTL_FLOW_ENTRY_LEN(2); /* 2nd entry */
    const struct {
        size_t offset;
        uint8_t value;
    } bad[] = {
        {at + 0, AF_UNIX}, {at + 1, 2}, {at + 2, 0x80}, {at + 3, 1}, {at + 44, 1}, {12, 1},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct tlsnic_ctl_flow_page page, d;
        int len = encode_page(&page, 2);
        buf[bad[i].offset] = bad[i].value;
        assert_int_equal(tlsnic_ctl_flow_page_decode(buf, (size_t)len, &d, page_out, 2), -EBADMSG);
    }
}

static void flow_page_encode_into_a_short_buffer_fails_cleanly(void **state)
{
    struct tlsnic_ctl_flow_page page;
    encode_page(&page, 3);
    uint8_t small[TLSNIC_CTL_FLOW_PAGE_HDR_LEN + 10];
    assert_int_equal(tlsnic_ctl_flow_page_encode(&page, page_in, small, sizeof(small)), -ENOBUFS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(add_round_trips),
        cmocka_unit_test(rekey_round_trips),
        cmocka_unit_test(del_round_trips),
        cmocka_unit_test(release_round_trips_with_its_flags),
        cmocka_unit_test(release_with_unknown_flags_is_refused),
        cmocka_unit_test(resync_round_trips),
        cmocka_unit_test(flow_flags_round_trips),
        cmocka_unit_test(stats_request_is_a_bare_header),
        cmocka_unit_test(reply_carries_status_text_and_payload),
        cmocka_unit_test(every_truncation_is_refused),
        cmocka_unit_test(length_field_must_match_the_datagram),
        cmocka_unit_test(trailing_bytes_are_refused),
        cmocka_unit_test(wrong_version_is_refused),
        cmocka_unit_test(unknown_type_is_refused),
        cmocka_unit_test(nonzero_reserved_bytes_are_refused),
        cmocka_unit_test(direction_other_than_tx_rx_is_refused),
        cmocka_unit_test(oversized_crypto_info_is_refused),
        cmocka_unit_test(reply_status_must_be_zero_or_negative_errno),
        cmocka_unit_test(flow_with_unknown_family_is_refused),
        cmocka_unit_test(oversized_datagram_is_refused),
        cmocka_unit_test(encode_into_a_short_buffer_fails_cleanly),
        cmocka_unit_test(flow_stats_request_carries_the_first_entry_wanted),
        cmocka_unit_test(flow_page_round_trips_flows_directions_owners_and_counters),
        cmocka_unit_test(flow_page_fits_a_reply_with_every_known_counter),
        cmocka_unit_test(flow_page_counter_names_are_the_devices),
        cmocka_unit_test(flow_page_every_truncation_is_refused),
        cmocka_unit_test(flow_page_trailing_bytes_are_refused),
        cmocka_unit_test(flow_page_with_more_entries_than_the_caller_has_room_for_is_refused),
        cmocka_unit_test(flow_page_with_too_many_counters_is_refused),
        cmocka_unit_test(flow_page_count_past_the_total_is_refused),
        cmocka_unit_test(flow_page_count_that_disagrees_with_the_bytes_is_refused),
        cmocka_unit_test(flow_page_entry_with_bad_family_dir_flags_or_reserved_is_refused),
        cmocka_unit_test(flow_page_encode_into_a_short_buffer_fails_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
