/* The bounded L3/TCP frame parser and the TCP checksum. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "nic_testgen.h"
#include "tlsnic/frame.h"

static size_t v4(uint8_t *f, size_t cap, size_t plen)
{
    struct tlsnic_flow fl = tg_flow(AF_INET);
    static const uint8_t pay[2000];
    return tg_frame(f, cap, &fl, 0, 1000, 2000, TLSNIC_TCP_ACK, pay, plen);
}

static void test_ipv4_tcp_frame_parses_with_payload_bounds(void **state)
{
    uint8_t f[200];
    size_t n = v4(f, sizeof(f), 100);
    struct tlsnic_frame fr;
    assert_int_equal(tlsnic_frame_parse(f, n, &fr), TLSNIC_FRAME_TCP);
    assert_int_equal(fr.payload_off, 40);
    assert_int_equal(fr.payload_len, 100);
    assert_int_equal(fr.seq, 1000);
    assert_int_equal(fr.ack, 2000);
    assert_int_equal(fr.sport, 40000);
    assert_true(tlsnic_tcp_csum_ok(f, &fr));
}

static void test_trailing_padding_is_not_payload(void **state)
{
    uint8_t f[200];
    size_t n = v4(f, sizeof(f), 10);
    struct tlsnic_frame fr;
    assert_int_equal(tlsnic_frame_parse(f, n + 20, &fr), TLSNIC_FRAME_TCP);
    assert_int_equal(fr.payload_len, 10);
}

static void test_tcp_options_are_skipped(void **state)
{
    uint8_t f[200];
    size_t n = v4(f, sizeof(f), 12); /* reinterpret 12 payload bytes as options */
    f[20 + 12] = 8 << 4;
    struct tlsnic_frame fr;
    assert_int_equal(tlsnic_frame_parse(f, n, &fr), TLSNIC_FRAME_TCP);
    assert_int_equal(fr.tcp_hlen, 32);
    assert_int_equal(fr.payload_len, 0);
}

static void test_data_offset_past_the_end_is_malformed(void **state)
{
    uint8_t f[200];
    size_t n = v4(f, sizeof(f), 4);
    f[20 + 12] = 15 << 4;
    struct tlsnic_frame fr;
    assert_int_equal(tlsnic_frame_parse(f, n, &fr), -EBADMSG);
    f[20 + 12] = 4 << 4; /* below 20 bytes */
    assert_int_equal(tlsnic_frame_parse(f, n, &fr), -EBADMSG);
}

static void test_ipv4_length_beyond_frame_is_malformed(void **state)
{
    uint8_t f[200];
    size_t n = v4(f, sizeof(f), 50);
    struct tlsnic_frame fr;
    assert_int_equal(tlsnic_frame_parse(f, n - 1, &fr), -EBADMSG);
    f[0] = 0x44; /* IHL 16 bytes */
    assert_int_equal(tlsnic_frame_parse(f, n, &fr), -EBADMSG);
}

static void test_tcp_fragment_is_malformed_udp_is_other(void **state)
{
    uint8_t f[200];
    size_t n = v4(f, sizeof(f), 50);
    struct tlsnic_frame fr;
    f[6] = 0x20; /* MF */
    assert_int_equal(tlsnic_frame_parse(f, n, &fr), -EBADMSG);
    f[6] = 0x40;
    f[9] = 17;
    assert_int_equal(tlsnic_frame_parse(f, n, &fr), TLSNIC_FRAME_OTHER);
}

static void test_non_ip_is_other(void **state)
{
    uint8_t f[4] = {0x10, 0, 0, 0};
    struct tlsnic_frame fr;
    assert_int_equal(tlsnic_frame_parse(f, sizeof(f), &fr), TLSNIC_FRAME_OTHER);
}

static void test_ipv6_extension_headers_are_walked(void **state)
{
    uint8_t f[300];
    struct tlsnic_flow fl = tg_flow(AF_INET6);
    uint8_t pay[8 + 20 + 30];
    memset(pay, 0, sizeof(pay));
    size_t n = tg_frame(f, sizeof(f), &fl, 0, 5, 6, TLSNIC_TCP_ACK, pay, 30);
    /* Insert an 8-byte destination options header before TCP. */
    uint8_t g[300];
    memcpy(g, f, 40);
    g[6] = 60;
    g[4] = (uint8_t)((n - 40 + 8) >> 8), g[5] = (uint8_t)(n - 40 + 8);
    memset(g + 40, 0, 8);
    g[40] = 6;
    g[41] = 0;
    memcpy(g + 48, f + 40, n - 40);
    struct tlsnic_frame fr;
    assert_int_equal(tlsnic_frame_parse(g, n + 8, &fr), TLSNIC_FRAME_TCP);
    assert_int_equal(fr.l4_off, 48);
    assert_int_equal(fr.payload_len, 30);
    g[40] = 17;
    assert_int_equal(tlsnic_frame_parse(g, n + 8, &fr), TLSNIC_FRAME_OTHER);
    g[6] = 44; /* fragment header in front of TCP */
    g[40] = 6;
    assert_int_equal(tlsnic_frame_parse(g, n + 8, &fr), -EBADMSG);
}

static void test_checksum_detects_a_flipped_payload_bit(void **state)
{
    uint8_t f[200];
    size_t n = v4(f, sizeof(f), 33);
    struct tlsnic_frame fr;
    assert_int_equal(tlsnic_frame_parse(f, n, &fr), TLSNIC_FRAME_TCP);
    f[n - 1] ^= 0x10;
    assert_false(tlsnic_tcp_csum_ok(f, &fr));
    tlsnic_tcp_csum_fill(f, &fr);
    assert_true(tlsnic_tcp_csum_ok(f, &fr));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv4_tcp_frame_parses_with_payload_bounds),
        cmocka_unit_test(test_trailing_padding_is_not_payload),
        cmocka_unit_test(test_tcp_options_are_skipped),
        cmocka_unit_test(test_data_offset_past_the_end_is_malformed),
        cmocka_unit_test(test_ipv4_length_beyond_frame_is_malformed),
        cmocka_unit_test(test_tcp_fragment_is_malformed_udp_is_other),
        cmocka_unit_test(test_non_ip_is_other),
        cmocka_unit_test(test_ipv6_extension_headers_are_walked),
        cmocka_unit_test(test_checksum_detects_a_flipped_payload_bit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
