/*
 * tls_pair, the handshake every interop test stands on: it must negotiate exactly what it
 * was asked for, over a socketpair or a caller's loopback TCP pair, leave the fds as it
 * found them, and leave nothing in flight that would shift the record sequence numbers.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/tls.h>
#include <openssl/ssl.h>

#include "tls_pair.h"

static const struct {
    int version;
    uint16_t cipher;
    uint16_t iana_id; /* the suite libssl must have negotiated */
} combos[] = {
    {TLS1_2_VERSION, TLS_CIPHER_AES_GCM_128, 0xC02B},
    {TLS1_2_VERSION, TLS_CIPHER_AES_GCM_256, 0xC02C},
    {TLS1_2_VERSION, TLS_CIPHER_CHACHA20_POLY1305, 0xCCA9},
    {TLS1_3_VERSION, TLS_CIPHER_AES_GCM_128, 0x1301},
    {TLS1_3_VERSION, TLS_CIPHER_AES_GCM_256, 0x1302},
    {TLS1_3_VERSION, TLS_CIPHER_CHACHA20_POLY1305, 0x1303},
};
#define N_COMBOS (sizeof(combos) / sizeof(combos[0]))

/* A connected loopback TCP pair: fds[0] accepted (server), fds[1] connected (client). */
static void tcp_pair(int fds[2])
{
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(listener >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t addr_len = sizeof(addr);
    assert_int_equal(bind(listener, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(listener, 1), 0);
    assert_int_equal(getsockname(listener, (struct sockaddr *)&addr, &addr_len), 0);
    fds[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fds[1] >= 0);
    assert_int_equal(connect(fds[1], (struct sockaddr *)&addr, sizeof(addr)), 0);
    fds[0] = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    assert_true(fds[0] >= 0);
    close(listener);
}

static int fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static int bytes_waiting(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    return poll(&pfd, 1, 0) > 0;
}

static void negotiates_exactly_the_requested_version_and_suite(void **state)
{
    for (size_t i = 0; i < N_COMBOS; i++) {
        struct tls_pair p;
        assert_int_equal(tls_pair_new(&p, combos[i].version, combos[i].cipher, NULL), 0);
        assert_int_equal(SSL_version(p.client), combos[i].version);
        assert_int_equal(SSL_version(p.server), combos[i].version);
        assert_int_equal(SSL_CIPHER_get_protocol_id(SSL_get_current_cipher(p.client)),
                         combos[i].iana_id);
        assert_int_equal(SSL_CIPHER_get_protocol_id(SSL_get_current_cipher(p.server)),
                         combos[i].iana_id);
        tls_pair_free(&p);
    }
}

static void client_verified_the_server_certificate(void **state)
{
    struct tls_pair p;
    assert_int_equal(tls_pair_new(&p, TLS1_3_VERSION, TLS_CIPHER_AES_GCM_128, NULL), 0);
    X509 *peer = SSL_get1_peer_certificate(p.client);
    assert_non_null(peer);
    X509_free(peer);
    assert_int_equal(SSL_get_verify_result(p.client), X509_V_OK);
    tls_pair_free(&p);
}

static void nothing_is_in_flight_after_the_handshake(void **state)
{
    /* No session tickets, no stray records: the next record each way is the first
     * application record, the one keyexport.h's sequence numbers assume. */
    for (size_t i = 0; i < N_COMBOS; i++) {
        struct tls_pair p;
        assert_int_equal(tls_pair_new(&p, combos[i].version, combos[i].cipher, NULL), 0);
        assert_false(bytes_waiting(p.client_fd));
        assert_false(bytes_waiting(p.server_fd));
        tls_pair_free(&p);
    }
}

static void fds_are_blocking_again_after_the_handshake(void **state)
{
    struct tls_pair p;
    assert_int_equal(tls_pair_new(&p, TLS1_2_VERSION, TLS_CIPHER_AES_GCM_128, NULL), 0);
    assert_false(fcntl(p.server_fd, F_GETFL) & O_NONBLOCK);
    assert_false(fcntl(p.client_fd, F_GETFL) & O_NONBLOCK);
    tls_pair_free(&p);
}

static void handshakes_over_a_callers_loopback_tcp_pair_and_closes_it(void **state)
{
    for (size_t i = 0; i < N_COMBOS; i++) {
        int fds[2];
        tcp_pair(fds);
        struct tls_pair p;
        assert_int_equal(tls_pair_new(&p, combos[i].version, combos[i].cipher, fds), 0);
        assert_int_equal(p.server_fd, fds[0]);
        assert_int_equal(p.client_fd, fds[1]);
        const char msg[] = "over TCP";
        char got[sizeof(msg)];
        assert_int_equal(SSL_write(p.client, msg, sizeof(msg)), sizeof(msg));
        assert_int_equal(SSL_read(p.server, got, sizeof(got)), sizeof(msg));
        assert_memory_equal(got, msg, sizeof(msg));
        tls_pair_free(&p);
        assert_false(fd_is_open(fds[0]));
        assert_false(fd_is_open(fds[1]));
    }
}

static void unknown_cipher_is_einval_and_closes_the_given_fds(void **state)
{
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    struct tls_pair p;
    assert_int_equal(tls_pair_new(&p, TLS1_3_VERSION, TLS_CIPHER_SM4_GCM, fds), -EINVAL); /* no libssl suite */
    assert_false(fd_is_open(fds[0]));
    assert_false(fd_is_open(fds[1]));
    assert_null(p.server);
    assert_int_equal(p.server_fd, -1);
    tls_pair_free(&p); /* still safe */
}

static void unknown_version_is_einval(void **state)
{
    struct tls_pair p;
    assert_int_equal(tls_pair_new(&p, TLS1_1_VERSION, TLS_CIPHER_AES_GCM_128, NULL), -EINVAL);
    tls_pair_free(&p);
}

static void free_of_a_zeroed_pair_closes_no_fd(void **state)
{
    if (!fd_is_open(0))
        assert_int_equal(open("/dev/null", O_RDONLY), 0); /* fd 0 must exist to be at risk */
    struct tls_pair p;
    memset(&p, 0, sizeof(p));
    tls_pair_free(&p);
    assert_true(fd_is_open(0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(negotiates_exactly_the_requested_version_and_suite),
        cmocka_unit_test(client_verified_the_server_certificate),
        cmocka_unit_test(nothing_is_in_flight_after_the_handshake),
        cmocka_unit_test(fds_are_blocking_again_after_the_handshake),
        cmocka_unit_test(handshakes_over_a_callers_loopback_tcp_pair_and_closes_it),
        cmocka_unit_test(unknown_cipher_is_einval_and_closes_the_given_fds),
        cmocka_unit_test(unknown_version_is_einval),
        cmocka_unit_test(free_of_a_zeroed_pair_closes_no_fd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
