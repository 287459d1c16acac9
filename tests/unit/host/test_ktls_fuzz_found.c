/*
 * Socket-layer bugs found by fuzz_ktls_sock (tests/fuzz), each stated as the kernel's
 * behaviour; both fixed (the memory errors showed under the sanitizer build), kept as
 * regressions, and the crashing inputs in tests/fuzz/regress/fuzz_ktls_sock/ replay them.
 *
 * Usage: test_ktls_fuzz_found [test name]   (no name: every test)
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tcp_pair.h"
#include "tlsnic/ktls.h"
#include "tlsnic/record.h"

/* A connected tlsnic socket with TLS 1.2 AES-128-GCM keys for TX, and its peer. */
static void tls_pair(int fds[2])
{
    assert_int_equal(tcp_pair(fds), 0);
    assert_int_equal(tlsnic_setsockopt(fds[0], SOL_TCP, TCP_ULP, "tls", 4), 0);
    struct tls12_crypto_info_aes_gcm_128 ci;
    memset(&ci, 0x33, sizeof(ci));
    ci.info.version = TLS_1_2_VERSION;
    ci.info.cipher_type = TLS_CIPHER_AES_GCM_128;
    memset(ci.rec_seq, 0, sizeof(ci.rec_seq));
    assert_int_equal(tlsnic_setsockopt(fds[0], SOL_TLS, TLS_TX, &ci, sizeof(ci)), 0);
}

/*
 * Bug 1 (sock.c, tlsnic_getsockopt): getsockopt(SOL_TCP, TCP_ULP) with a NULL buffer and a
 * zero length calls memcpy(NULL, "tls", 0): undefined behaviour (UBSan: "null pointer
 * passed as argument 1"). The kernel answers 0 with length 0.
 */
static void getsockopt_ulp_with_no_buffer_and_zero_length_answers_zero_length(void **state)
{
    (void)state;
    int fds[2];
    tls_pair(fds);
    socklen_t len = 0;
    assert_int_equal(tlsnic_getsockopt(fds[0], SOL_TCP, TCP_ULP, NULL, &len), 0);
    assert_int_equal(len, 0);
    tlsnic_close(fds[0]);
    close(fds[1]);
}

/*
 * Bug 2 (tx.c, parse_cmsgs): a first control message whose cmsg_len runs past
 * msg_controllen is read past the caller's buffer (CMSG_FIRSTHDR does not check cmsg_len;
 * ASan: heap-buffer-overflow reading CMSG_DATA). The kernel refuses it with EINVAL
 * (CMSG_OK in tls_process_cmsg) and sends nothing.
 */
static void sendmsg_with_a_cmsg_longer_than_its_buffer_is_EINVAL(void **state)
{
    (void)state;
    int fds[2];
    tls_pair(fds);
    struct cmsghdr *c = malloc(sizeof(*c)); /* exactly one header: no room for the data */
    assert_non_null(c);
    c->cmsg_level = SOL_TLS;
    c->cmsg_type = TLS_SET_RECORD_TYPE;
    c->cmsg_len = CMSG_LEN(1);
    char byte = 'x';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c,
                         .msg_controllen = sizeof(*c)};
    errno = 0;
    assert_int_equal(tlsnic_sendmsg(fds[0], &msg, 0), -1);
    assert_int_equal(errno, EINVAL);
    free(c);
    tlsnic_close(fds[0]);
    close(fds[1]);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(getsockopt_ulp_with_no_buffer_and_zero_length_answers_zero_length),
        cmocka_unit_test(sendmsg_with_a_cmsg_longer_than_its_buffer_is_EINVAL),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
