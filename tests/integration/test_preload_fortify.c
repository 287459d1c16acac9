/*
 * A program built with _FORTIFY_SOURCE=2 (this file: -O2 -D_FORTIFY_SOURCE=2) calls
 * __read_chk, __recv_chk, __recvfrom_chk, __poll_chk instead of read, recv, recvfrom,
 * poll. Under libtlsnic-preload.so those must reach tlsnic too: before they were wrapped,
 * such a program read the ciphertext of its own TLS socket. (CTest's
 * fortify_binary_calls_the_chk_variants checks that this binary does call them.)
 */
#include <errno.h>
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

#include "tcp_pair.h"
#include "tlsnic/record.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

static volatile size_t asked = 64; /* not constants: the compiler keeps the _chk calls */
static volatile nfds_t one = 1;

static void fortified_read_recv_and_poll_carry_plaintext(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(tcp_pair(fds), 0);
    struct tls12_crypto_info_aes_gcm_128 ci;
    memset(&ci, 0x44, sizeof(ci));
    ci.info.version = TLS_1_3_VERSION;
    ci.info.cipher_type = TLS_CIPHER_AES_GCM_128;
    memset(ci.rec_seq, 0, sizeof(ci.rec_seq));
    tlsnic_rec_key *peer_tx;
    assert_int_equal(tlsnic_rec_key_new(&peer_tx, &ci, sizeof(ci)), 0);
    assert_int_equal(setsockopt(fds[0], SOL_TCP, TCP_ULP, "tls", sizeof("tls")), 0);
    assert_int_equal(setsockopt(fds[0], SOL_TLS, TLS_RX, &ci, sizeof(ci)), 0);
    const char *words[3] = {"read", "recv", "recvfrom"};
    for (int i = 0; i < 3; i++) {
        uint8_t rec[128];
        size_t n;
        assert_int_equal(tlsnic_rec_seal(peer_tx, 23, (const uint8_t *)words[i], strlen(words[i]),
                                         rec, sizeof(rec), &n), 0);
        assert_int_equal(write(fds[1], rec, n), (ssize_t)n);
    }
    struct pollfd p[1] = {{.fd = fds[0], .events = POLLIN}};
    assert_int_equal(poll(p, one, 2000), 1); /* __poll_chk */
    char buf[64];
    assert_int_equal(read(fds[0], buf, asked / 16), 4); /* __read_chk, one record */
    assert_memory_equal(buf, "read", 4);
    assert_int_equal(recv(fds[0], buf, asked / 16, 0), 4); /* __recv_chk */
    assert_memory_equal(buf, "recv", 4);
    assert_int_equal(recvfrom(fds[0], buf, asked, 0, NULL, NULL), 8); /* __recvfrom_chk */
    assert_memory_equal(buf, "recvfrom", 8);
    tlsnic_rec_key_free(peer_tx);
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fortified_read_recv_and_poll_carry_plaintext),
    };
    return cmocka_run_group_tests_name("preload_fortify", tests, NULL, NULL);
}
