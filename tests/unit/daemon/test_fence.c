/*
 * Fences: after a restart the daemon drops the payload of every flow that was offloaded
 * until its host adds it again, and only that; the state file carries the list (and no
 * keys) from one daemon to the next.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tlsnic/fence.h"
#include "tlsnic/frame.h"

#define HOST4 "198.18.0.1"
#define PEER4 "198.18.0.2"

static struct tlsnic_flow flow4(uint16_t lport, uint16_t rport)
{
    struct tlsnic_flow f = {.family = AF_INET, .local_port = lport, .remote_port = rport};
    assert_int_equal(inet_pton(AF_INET, HOST4, f.local), 1);
    assert_int_equal(inet_pton(AF_INET, PEER4, f.remote), 1);
    return f;
}

static struct tlsnic_flow flow6(uint16_t lport, uint16_t rport)
{
    struct tlsnic_flow f = {.family = AF_INET6, .local_port = lport, .remote_port = rport};
    assert_int_equal(inet_pton(AF_INET6, "2001:db8:0:1::1", f.local), 1);
    assert_int_equal(inet_pton(AF_INET6, "2001:db8:0:1::2", f.remote), 1);
    return f;
}

/* An IPv4 or IPv6 TCP frame from src:sport to dst:dport with payload_len bytes. */
static size_t tcp_frame(uint8_t *buf, const struct tlsnic_flow *from_host, int reverse,
                        size_t payload_len)
{
    const uint8_t *src = reverse ? from_host->remote : from_host->local;
    const uint8_t *dst = reverse ? from_host->local : from_host->remote;
    uint16_t sport = reverse ? from_host->remote_port : from_host->local_port;
    uint16_t dport = reverse ? from_host->local_port : from_host->remote_port;
    size_t ip_len = from_host->family == AF_INET ? 20 : 40;
    size_t total = ip_len + 20 + payload_len;
    memset(buf, 0, total);
    if (from_host->family == AF_INET) {
        buf[0] = 0x45;
        buf[2] = (uint8_t)(total >> 8);
        buf[3] = (uint8_t)total;
        buf[8] = 64;
        buf[9] = IPPROTO_TCP;
        memcpy(buf + 12, src, 4);
        memcpy(buf + 16, dst, 4);
    } else {
        buf[0] = 0x60;
        buf[4] = (uint8_t)((total - 40) >> 8);
        buf[5] = (uint8_t)(total - 40);
        buf[6] = IPPROTO_TCP;
        buf[7] = 64;
        memcpy(buf + 8, src, 16);
        memcpy(buf + 24, dst, 16);
    }
    uint8_t *tcp = buf + ip_len;
    tcp[0] = (uint8_t)(sport >> 8);
    tcp[1] = (uint8_t)sport;
    tcp[2] = (uint8_t)(dport >> 8);
    tcp[3] = (uint8_t)dport;
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; /* PSH ACK */
    memset(tcp + 20, 'P', payload_len);
    return total;
}

static uint8_t frame[2048];

/* Whether the fence blocks a TCP frame of the flow (reverse: remote to local) carrying
 * payload_len bytes. */
static int blocks_frame_of(tlsnic_fence *f, const struct tlsnic_flow *fl, int reverse,
                           size_t payload_len)
{
    size_t len = tcp_frame(frame, fl, reverse, payload_len);
    return tlsnic_fence_blocks(f, frame, len);
}

static int setup(void **state)
{
    tlsnic_fence *f;
    assert_int_equal(tlsnic_fence_new(&f, 64), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    tlsnic_fence_free(*state);
    return 0;
}

static void payload_of_a_fenced_flow_is_blocked(void **state)
{
    tlsnic_fence *f = *state;
    struct tlsnic_flow fl = flow4(40000, 443);
    assert_int_equal(tlsnic_fence_add(f, &fl), 0);
    assert_int_equal(blocks_frame_of(f, &fl, 0, 100), 1);
}

static void a_pure_ack_of_a_fenced_flow_passes(void **state)
{
    tlsnic_fence *f = *state;
    struct tlsnic_flow fl = flow4(40000, 443);
    assert_int_equal(tlsnic_fence_add(f, &fl), 0);
    assert_int_equal(blocks_frame_of(f, &fl, 0, 0), 0);
}

static void other_flows_pass(void **state)
{
    tlsnic_fence *f = *state;
    struct tlsnic_flow fenced = flow4(40000, 443), other = flow4(40001, 443);
    assert_int_equal(tlsnic_fence_add(f, &fenced), 0);
    assert_int_equal(blocks_frame_of(f, &other, 0, 100), 0);
}

static void the_peers_frames_of_a_fenced_flow_are_not_matched(void **state)
{
    tlsnic_fence *f = *state;
    struct tlsnic_flow fl = flow4(40000, 443);
    assert_int_equal(tlsnic_fence_add(f, &fl), 0);
    assert_int_equal(blocks_frame_of(f, &fl, 1, 100), 0); /* remote -> local */
}

static void a_lifted_fence_lets_payload_pass(void **state)
{
    tlsnic_fence *f = *state;
    struct tlsnic_flow fl = flow4(40000, 443);
    assert_int_equal(tlsnic_fence_add(f, &fl), 0);
    assert_int_equal(tlsnic_fence_lift(f, &fl), 0);
    assert_int_equal(tlsnic_fence_lift(f, &fl), -ENOENT);
    assert_int_equal(blocks_frame_of(f, &fl, 0, 100), 0);
}

static void a_new_connection_on_a_fenced_4tuple_lifts_its_fence(void **state)
{
    tlsnic_fence *f = *state;
    struct tlsnic_flow fl = flow4(40000, 443), other = flow4(40001, 443);
    assert_int_equal(tlsnic_fence_add(f, &fl), 0);
    assert_int_equal(tlsnic_fence_add(f, &other), 0);
    size_t len = tcp_frame(frame, &fl, 0, 100);
    assert_int_equal(tlsnic_fence_filter(f, frame, len), 1); /* payload: still blocked */
    /* The host's SYN-ACK for a new connection on the same 4-tuple: the old one is gone. */
    len = tcp_frame(frame, &fl, 0, 0);
    frame[20 + 13] = TLSNIC_TCP_SYN | TLSNIC_TCP_ACK;
    assert_int_equal(tlsnic_fence_filter(f, frame, len), 0);
    assert_int_equal(tlsnic_fence_lifted_by_syn(f), 1);
    len = tcp_frame(frame, &fl, 0, 100);
    assert_int_equal(tlsnic_fence_filter(f, frame, len), 0);
    /* Only that 4-tuple, and only the host's SYN: the peer's is not a proof. */
    len = tcp_frame(frame, &other, 1, 0);
    frame[20 + 13] = TLSNIC_TCP_SYN;
    assert_int_equal(tlsnic_fence_filter(f, frame, len), 0);
    len = tcp_frame(frame, &other, 0, 100);
    assert_int_equal(tlsnic_fence_filter(f, frame, len), 1);
    assert_int_equal(tlsnic_fence_count(f), 1);
}

static void a_fence_with_an_expiry_blocks_until_it_expires(void **state)
{
    tlsnic_fence *f = *state;
    struct tlsnic_flow fl = flow4(40000, 443), other = flow4(40001, 443), kept = flow4(40002, 443);
    assert_int_equal(tlsnic_fence_add_until(f, &fl, 1000), 0);
    assert_int_equal(tlsnic_fence_add_until(f, &other, 3000), 0);
    assert_int_equal(tlsnic_fence_add(f, &kept), 0);
    assert_int_equal(tlsnic_fence_count_expiring(f), 2);
    size_t len = tcp_frame(frame, &fl, 0, 100);
    assert_int_equal(tlsnic_fence_expire(f, 999), 0);
    assert_int_equal(tlsnic_fence_filter(f, frame, len), 1);
    /* A later end wins: the flow is fenced again before the first one expired. */
    assert_int_equal(tlsnic_fence_add_until(f, &fl, 2000), 0);
    assert_int_equal(tlsnic_fence_add_until(f, &fl, 1500), 0);
    assert_int_equal(tlsnic_fence_expire(f, 1000), 0);
    assert_int_equal(tlsnic_fence_filter(f, frame, len), 1);
    assert_int_equal(tlsnic_fence_expire(f, 2000), 1);
    assert_int_equal(tlsnic_fence_filter(f, frame, len), 0);
    len = tcp_frame(frame, &other, 0, 100);
    assert_int_equal(tlsnic_fence_filter(f, frame, len), 1);
    /* A SYN lifts it before its time, as it lifts any fence. */
    len = tcp_frame(frame, &other, 0, 0);
    frame[20 + 13] = TLSNIC_TCP_SYN;
    assert_int_equal(tlsnic_fence_filter(f, frame, len), 0);
    assert_int_equal(tlsnic_fence_count_expiring(f), 0);
    /* A fence without expiry never expires, and one that gets no expiry keeps none. */
    assert_int_equal(tlsnic_fence_add_until(f, &kept, 10), 0);
    assert_int_equal(tlsnic_fence_add_until(f, &fl, 10), 0);
    assert_int_equal(tlsnic_fence_add(f, &fl), 0);
    assert_int_equal(tlsnic_fence_expire(f, UINT64_MAX), 0);
    assert_int_equal(tlsnic_fence_count(f), 2);
    len = tcp_frame(frame, &kept, 0, 100);
    assert_int_equal(tlsnic_fence_filter(f, frame, len), 1);
}

static void expired_fences_make_room(void **state)
{
    (void)state;
    tlsnic_fence *f;
    assert_int_equal(tlsnic_fence_new(&f, 8), 0);
    for (uint16_t i = 0; i < 8; i++) {
        struct tlsnic_flow fl = flow4((uint16_t)(40000 + i), 443);
        assert_int_equal(tlsnic_fence_add_until(f, &fl, 100 + i), 0);
    }
    struct tlsnic_flow more = flow4(41000, 443);
    assert_int_equal(tlsnic_fence_add_until(f, &more, 500), -ENOSPC);
    assert_int_equal(tlsnic_fence_expire(f, 103), 4);
    assert_int_equal(tlsnic_fence_add_until(f, &more, 500), 0);
    assert_int_equal(tlsnic_fence_expire(f, 499), 4);
    assert_int_equal(tlsnic_fence_count(f), 1);
    assert_int_equal(tlsnic_fence_expire(f, 500), 1);
    assert_int_equal(tlsnic_fence_count(f), 0);
    tlsnic_fence_free(f);
}

static void an_ipv6_flow_is_fenced(void **state)
{
    tlsnic_fence *f = *state;
    struct tlsnic_flow fl = flow6(40000, 443);
    assert_int_equal(tlsnic_fence_add(f, &fl), 0);
    assert_int_equal(blocks_frame_of(f, &fl, 0, 100), 1);
}

/* Inserts an 8-byte IPv6 destination-options header before the TCP header. */
static size_t with_dest_options(uint8_t *buf, size_t len)
{
    memmove(buf + 48, buf + 40, len - 40);
    memset(buf + 40, 0, 8);
    buf[40] = IPPROTO_TCP; /* the options' next header */
    buf[6] = 60;           /* IPv6 next header: destination options */
    size_t plen = len + 8 - 40;
    buf[4] = (uint8_t)(plen >> 8);
    buf[5] = (uint8_t)plen;
    return len + 8;
}

static void an_ipv6_flow_behind_extension_headers_is_fenced(void **state)
{
    tlsnic_fence *f = *state;
    struct tlsnic_flow fl = flow6(40000, 443);
    assert_int_equal(tlsnic_fence_add(f, &fl), 0);
    size_t len = with_dest_options(frame, tcp_frame(frame, &fl, 0, 100));
    /* The fence reads frames with the device's parser: what the device names, it names. */
    struct tlsnic_frame parsed;
    assert_int_equal(tlsnic_frame_parse(frame, len, &parsed), TLSNIC_FRAME_TCP);
    assert_int_equal(parsed.sport, 40000);
    assert_int_equal(parsed.payload_len, 100);
    assert_int_equal(tlsnic_fence_blocks(f, frame, len), 1);
}

static void unreadable_tcp_is_blocked_only_while_a_fence_is_up(void **state)
{
    tlsnic_fence *f = *state;
    struct tlsnic_flow fl = flow4(40000, 443), other = flow4(1, 2);
    size_t len = tcp_frame(frame, &other, 0, 100);
    frame[2] = 0xff; /* total length past the frame */
    assert_int_equal(tlsnic_fence_blocks(f, frame, len), 0);
    assert_int_equal(tlsnic_fence_add(f, &fl), 0);
    assert_int_equal(tlsnic_fence_blocks(f, frame, len), 1);
}

static void non_tcp_passes(void **state)
{
    tlsnic_fence *f = *state;
    struct tlsnic_flow fl = flow4(40000, 443);
    assert_int_equal(tlsnic_fence_add(f, &fl), 0);
    size_t len = tcp_frame(frame, &fl, 0, 100);
    frame[9] = IPPROTO_UDP;
    assert_int_equal(tlsnic_fence_blocks(f, frame, len), 0);
}

static void a_full_fence_set_is_refused_with_enospc(void **state)
{
    (void)state;
    tlsnic_fence *f;
    assert_int_equal(tlsnic_fence_new(&f, 2), 0);
    struct tlsnic_flow a = flow4(1, 443), b = flow4(2, 443), c = flow4(3, 443);
    assert_int_equal(tlsnic_fence_add(f, &a), 0);
    assert_int_equal(tlsnic_fence_add(f, &b), 0);
    assert_int_equal(tlsnic_fence_add(f, &c), -ENOSPC);
    assert_int_equal(tlsnic_fence_add(f, &a), 0); /* already fenced: no new slot */
    tlsnic_fence_free(f);
}

static void lookups_stay_right_across_many_lifts(void **state)
{
    tlsnic_fence *f = *state; /* 64 flows */
    for (uint16_t p = 1; p <= 64; p++) {
        struct tlsnic_flow fl = flow4(p, 443);
        assert_int_equal(tlsnic_fence_add(f, &fl), 0);
    }
    for (uint16_t p = 1; p <= 64; p += 2) {
        struct tlsnic_flow fl = flow4(p, 443);
        assert_int_equal(tlsnic_fence_lift(f, &fl), 0);
    }
    assert_int_equal(tlsnic_fence_count(f), 32);
    for (uint16_t p = 1; p <= 64; p++) {
        struct tlsnic_flow fl = flow4(p, 443);
        size_t len = tcp_frame(frame, &fl, 0, 10);
        assert_int_equal(tlsnic_fence_blocks(f, frame, len), p % 2 == 0);
    }
}

static void state_file_round_trip_fences_the_tx_flows(void **state)
{
    tlsnic_fence *f = *state;
    char path[] = "/tmp/tlsnic-state-test.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    struct tlsnic_flow_dir list[3] = {
        {.flow = flow4(40000, 443), .dir = TLSNIC_DIR_TX},
        {.flow = flow6(40001, 443), .dir = TLSNIC_DIR_TX},
        {.flow = flow4(40002, 443), .dir = TLSNIC_DIR_RX},
    };
    assert_int_equal(tlsnic_state_save(path, list, 3), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(tlsnic_state_load(path, f), 2);
    assert_int_equal(blocks_frame_of(f, &list[0].flow, 0, 10), 1);
    assert_int_equal(blocks_frame_of(f, &list[1].flow, 0, 10), 1);
    /* RX only: the host decrypts in software */
    assert_int_equal(blocks_frame_of(f, &list[2].flow, 0, 10), 0);
    unlink(path);
}

/* RX: the fence holds the peer's payload towards the host until the flow is added again. */
static void rx_fence_blocks_the_peers_payload_towards_the_host(void **state)
{
    tlsnic_fence *f = *state;
    struct tlsnic_flow fl = flow4(40000, 443);
    assert_int_equal(tlsnic_fence_add(f, &fl), 0);
    size_t len = tcp_frame(frame, &fl, 1, 100); /* remote -> local */
    assert_int_equal(tlsnic_fence_blocks_to_host(f, frame, len), 1);
    len = tcp_frame(frame, &fl, 1, 0); /* an ACK carries nothing to decide about */
    assert_int_equal(tlsnic_fence_blocks_to_host(f, frame, len), 0);
    len = tcp_frame(frame, &fl, 0, 100); /* the host's own frames are not the RX flow's */
    assert_int_equal(tlsnic_fence_blocks_to_host(f, frame, len), 0);
    assert_int_equal(tlsnic_fence_lift(f, &fl), 0);
    len = tcp_frame(frame, &fl, 1, 100);
    assert_int_equal(tlsnic_fence_blocks_to_host(f, frame, len), 0);
}

/* A host's SYN on a 4-tuple proves its old socket gone for RX too: no reader is left for the
 * bytes the last device decided about. The TX gate (which sees the host's frames) lifts the
 * linked RX fence, and only on the host's SYN, not the peer's. */
static void a_new_connection_lifts_the_linked_rx_fence_too(void **state)
{
    tlsnic_fence *tx = *state, *rx;
    assert_int_equal(tlsnic_fence_new(&rx, 64), 0);
    tlsnic_fence_link_rx(tx, rx);
    struct tlsnic_flow fl = flow4(40000, 443), other = flow4(40001, 443);
    assert_int_equal(tlsnic_fence_add(rx, &fl), 0); /* RX only: no TX fence at all */
    assert_int_equal(tlsnic_fence_add(rx, &other), 0);
    size_t len = tcp_frame(frame, &fl, 1, 100);
    assert_int_equal(tlsnic_fence_blocks_to_host(rx, frame, len), 1);
    len = tcp_frame(frame, &other, 1, 0);
    frame[20 + 13] = TLSNIC_TCP_SYN; /* the peer's SYN: no proof */
    assert_int_equal(tlsnic_fence_filter(tx, frame, len), 0);
    assert_int_equal(tlsnic_fence_count(rx), 2);
    len = tcp_frame(frame, &fl, 0, 0);
    frame[20 + 13] = TLSNIC_TCP_SYN; /* the host's */
    assert_int_equal(tlsnic_fence_filter(tx, frame, len), 0);
    assert_int_equal(tlsnic_fence_lifted_by_syn(rx), 1);
    assert_int_equal(tlsnic_fence_lifted_by_syn(tx), 0);
    len = tcp_frame(frame, &fl, 1, 100);
    assert_int_equal(tlsnic_fence_blocks_to_host(rx, frame, len), 0);
    len = tcp_frame(frame, &other, 1, 100);
    assert_int_equal(tlsnic_fence_blocks_to_host(rx, frame, len), 1);
    tlsnic_fence_link_rx(tx, NULL);
    tlsnic_fence_free(rx);
}

static void state_file_round_trip_fences_the_rx_flows_apart(void **state)
{
    tlsnic_fence *f = *state;
    char path[] = "/tmp/tlsnic-state-test.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    struct tlsnic_flow_dir list[2] = {
        {.flow = flow4(40000, 443), .dir = TLSNIC_DIR_TX},
        {.flow = flow6(40002, 443), .dir = TLSNIC_DIR_RX},
    };
    assert_int_equal(tlsnic_state_save(path, list, 2), 0);
    assert_int_equal(tlsnic_state_load_rx(path, f), 1);
    size_t len = tcp_frame(frame, &list[1].flow, 1, 10);
    assert_int_equal(tlsnic_fence_blocks_to_host(f, frame, len), 1);
    len = tcp_frame(frame, &list[0].flow, 1, 10);
    assert_int_equal(tlsnic_fence_blocks_to_host(f, frame, len), 0);
    unlink(path);
}

static void a_missing_state_file_fences_nothing(void **state)
{
    tlsnic_fence *f = *state;
    assert_int_equal(tlsnic_state_load("/tmp/tlsnic-no-such-state-file", f), 0);
    assert_int_equal(tlsnic_fence_count(f), 0);
}

static void a_malformed_state_file_is_refused(void **state)
{
    tlsnic_fence *f = *state;
    char path[] = "/tmp/tlsnic-state-test.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "tx 4 198.18.0.1 40000 198.18.0.2 443\ntx 4 198.18.0.1 99999 198.18.0.2 443\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(tlsnic_state_load(path, f), -EBADMSG);
    assert_int_equal(tlsnic_fence_count(f), 1); /* what came before the bad line stays fenced */
    unlink(path);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(payload_of_a_fenced_flow_is_blocked),
        T(a_pure_ack_of_a_fenced_flow_passes),
        T(other_flows_pass),
        T(the_peers_frames_of_a_fenced_flow_are_not_matched),
        T(a_lifted_fence_lets_payload_pass),
        T(a_new_connection_on_a_fenced_4tuple_lifts_its_fence),
        T(a_fence_with_an_expiry_blocks_until_it_expires),
        cmocka_unit_test(expired_fences_make_room),
        T(an_ipv6_flow_is_fenced),
        T(an_ipv6_flow_behind_extension_headers_is_fenced),
        T(unreadable_tcp_is_blocked_only_while_a_fence_is_up),
        T(non_tcp_passes),
        cmocka_unit_test(a_full_fence_set_is_refused_with_enospc),
        T(lookups_stay_right_across_many_lifts),
        T(state_file_round_trip_fences_the_tx_flows),
        T(a_missing_state_file_fences_nothing),
        T(rx_fence_blocks_the_peers_payload_towards_the_host),
        T(state_file_round_trip_fences_the_rx_flows_apart),
        T(a_new_connection_lifts_the_linked_rx_fence_too),
        T(a_malformed_state_file_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
