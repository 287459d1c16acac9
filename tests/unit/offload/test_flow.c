/*
 * Naming a flow from its socket (devops.h): the one conversion that the host (when it
 * offers a socket) and the daemon (when it is handed one) share, so both name an IPv4
 * peer of a dual-stack socket as the IPv4 flow the wire carries.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tlsnic/devops.h"

/* A connected pair: a listener of family listen_family (dual-stack for AF_INET6) on the
 * loopback, and a client of family client_family. fds[0] accepted, fds[1] the client. */
static void loopback_pair(int listen_family, int client_family, int fds[2])
{
    int l = socket(listen_family, SOCK_STREAM, 0);
    assert_true(l >= 0);
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    if (listen_family == AF_INET6) {
        int off = 0;
        assert_int_equal(setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)), 0);
        struct sockaddr_in6 *a = (void *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_any;
        sl = sizeof(*a);
    } else {
        struct sockaddr_in *a = (void *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sl = sizeof(*a);
    }
    assert_int_equal(bind(l, (struct sockaddr *)&ss, sl), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&ss, &sl), 0);
    uint16_t port = listen_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                              : ((struct sockaddr_in *)&ss)->sin_port;
    int c = socket(client_family, SOCK_STREAM, 0);
    assert_true(c >= 0);
    struct sockaddr_storage to = {0};
    if (client_family == AF_INET6) {
        struct sockaddr_in6 *a = (void *)&to;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        a->sin6_port = port;
        sl = sizeof(*a);
    } else {
        struct sockaddr_in *a = (void *)&to;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a->sin_port = port;
        sl = sizeof(*a);
    }
    assert_int_equal(connect(c, (struct sockaddr *)&to, sl), 0);
    fds[0] = accept(l, NULL, NULL);
    assert_true(fds[0] >= 0);
    fds[1] = c;
    close(l);
}

static void an_ipv4_peer_of_a_dual_stack_socket_is_an_ipv4_flow(void **state)
{
    int fds[2];
    loopback_pair(AF_INET6, AF_INET, fds);
    struct sockaddr_in6 peer;
    socklen_t pl = sizeof(peer);
    assert_int_equal(getpeername(fds[0], (struct sockaddr *)&peer, &pl), 0);
    assert_int_equal(peer.sin6_family, AF_INET6); /* the socket sees it v4-mapped */
    assert_true(IN6_IS_ADDR_V4MAPPED(&peer.sin6_addr));

    struct tlsnic_flow server, client;
    assert_int_equal(tlsnic_flow_from_socket(fds[0], &server), 0);
    assert_int_equal(tlsnic_flow_from_socket(fds[1], &client), 0);
    assert_int_equal(server.family, AF_INET);
    const uint8_t lo[16] = {127, 0, 0, 1};
    assert_memory_equal(server.local, lo, 16);
    assert_memory_equal(server.remote, lo, 16);
    /* The two ends name the same 4-tuple, mirrored: as the wire carries it. */
    assert_int_equal(client.family, AF_INET);
    assert_int_equal(server.local_port, client.remote_port);
    assert_int_equal(server.remote_port, client.local_port);
    close(fds[0]);
    close(fds[1]);
}

static void an_ipv6_peer_is_an_ipv6_flow(void **state)
{
    int fds[2];
    loopback_pair(AF_INET6, AF_INET6, fds);
    struct tlsnic_flow flow;
    assert_int_equal(tlsnic_flow_from_socket(fds[0], &flow), 0);
    assert_int_equal(flow.family, AF_INET6);
    assert_memory_equal(flow.local, &in6addr_loopback, 16);
    assert_memory_equal(flow.remote, &in6addr_loopback, 16);
    close(fds[0]);
    close(fds[1]);
}

static void an_unconnected_socket_is_enotconn(void **state)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct tlsnic_flow flow;
    assert_int_equal(tlsnic_flow_from_socket(s, &flow), -ENOTCONN);
    close(s);
}

static void ends_of_different_families_are_refused(void **state)
{
    struct sockaddr_storage l = {0}, r = {0};
    ((struct sockaddr_in *)&l)->sin_family = AF_INET;
    struct sockaddr_in6 *r6 = (void *)&r;
    r6->sin6_family = AF_INET6;
    r6->sin6_addr = in6addr_loopback; /* a real IPv6 address, not v4-mapped */
    struct tlsnic_flow flow;
    assert_int_equal(tlsnic_flow_from_sockaddrs(&l, &r, &flow), -EAFNOSUPPORT);
    r.ss_family = AF_UNIX;
    assert_int_equal(tlsnic_flow_from_sockaddrs(&l, &r, &flow), -EAFNOSUPPORT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(an_ipv4_peer_of_a_dual_stack_socket_is_an_ipv4_flow),
        cmocka_unit_test(an_ipv6_peer_is_an_ipv6_flow),
        cmocka_unit_test(an_unconnected_socket_is_enotconn),
        cmocka_unit_test(ends_of_different_families_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
