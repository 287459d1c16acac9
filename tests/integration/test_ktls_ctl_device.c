/*
 * Device mode through the daemon's control channel: tlsnic's socket layer uses the
 * host-side ctl client (a struct tlsnic_dev that talks to tlsnicd over a Unix socket) the
 * same way it uses an in-process device. A ctl server with a flow-table device runs in a
 * thread of this process, as tlsnicd runs it.
 *   - TLS_TX goes to the daemon (mode device, one flow in its table); RX stays software;
 *   - a full flow table leaves the next socket in software with reason "table full";
 *   - close ends the flow in the daemon (deleted once the socket has nothing to send).
 * Needs root (device mode reads TCP sequence numbers with TCP_REPAIR): exit 77 otherwise.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tcp_pair.h"
#include "flowtable.h"
#include "tlsnic/ctl_client.h"
#include "tlsnic/ctl_server.h"
#include "tlsnic/ktls.h"

struct daemon {
    struct tlsnic_flowtable *table;
    tlsnic_ctl_server *server;
    char path[108];
    pthread_t thread;
    volatile int stop;
};

static void *serve(void *arg)
{
    struct daemon *d = arg;
    while (!d->stop) {
        struct pollfd pfd[16];
        int n = tlsnic_ctl_server_poll_setup(d->server, pfd, 16);
        /* as tlsnicd: processed after every wake-up, so finishing flows are looked at */
        if (poll(pfd, (nfds_t)n, 20) >= 0)
            tlsnic_ctl_server_process(d->server, pfd, n);
    }
    return NULL;
}

static struct daemon daemon_;
static struct tlsnic_dev *client;

static int setup(void **state)
{
    (void)state;
    struct daemon *d = &daemon_;
    memset(d, 0, sizeof(*d));
    snprintf(d->path, sizeof(d->path), "/tmp/tlsnic-ctl-test-%d.sock", (int)getpid());
    if (tlsnic_flowtable_new(&d->table, 1) < 0)
        return -1;
    struct tlsnic_ctl_server_config cfg = {.path = d->path,
                                           .dev = tlsnic_flowtable_dev(d->table)};
    if (tlsnic_ctl_server_new(&d->server, &cfg) < 0)
        return -1;
    if (pthread_create(&d->thread, NULL, serve, d) != 0)
        return -1;
    if (tlsnic_ctl_client_open(d->path, 2000, &client) < 0)
        return -1;
    tlsnic_set_default_offload(&(struct tlsnic_offload){.dev = client});
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tlsnic_set_default_offload(NULL);
    tlsnic_ctl_client_close(client);
    daemon_.stop = 1;
    pthread_join(daemon_.thread, NULL);
    tlsnic_ctl_server_free(daemon_.server);
    tlsnic_flowtable_free(daemon_.table);
    return 0;
}

static void key(struct tls12_crypto_info_aes_gcm_128 *ci)
{
    memset(ci, 0x5e, sizeof(*ci));
    ci->info.version = TLS_1_2_VERSION;
    ci->info.cipher_type = TLS_CIPHER_AES_GCM_128;
}

static void daemon_takes_tx_then_is_full_then_forgets_on_close(void **state)
{
    (void)state;
    struct tls12_crypto_info_aes_gcm_128 ci;
    key(&ci);
    int a[2], b[2];
    assert_int_equal(tcp_pair(a), 0);
    assert_int_equal(tcp_pair(b), 0);

    assert_int_equal(tlsnic_setsockopt(a[0], SOL_TCP, TCP_ULP, "tls", 4), 0);
    assert_int_equal(tlsnic_setsockopt(a[0], SOL_TLS, TLS_TX, &ci, sizeof(ci)), 0);
    assert_int_equal(tlsnic_setsockopt(a[0], SOL_TLS, TLS_RX, &ci, sizeof(ci)), 0);
    struct tlsnic_mode_info m;
    assert_int_equal(tlsnic_get_mode(a[0], TLSNIC_DIR_TX, &m), 0);
    assert_int_equal(m.mode, TLSNIC_MODE_DEVICE);
    assert_int_equal(tlsnic_get_mode(a[0], TLSNIC_DIR_RX, &m), 0);
    assert_int_equal(m.reason, TLSNIC_SW_REASON_RX_NOT_OFFERED);
    assert_int_equal(tlsnic_flowtable_count(daemon_.table), 1);

    /* the table holds one flow: the next socket stays in software, and says why */
    assert_int_equal(tlsnic_setsockopt(b[0], SOL_TCP, TCP_ULP, "tls", 4), 0);
    assert_int_equal(tlsnic_setsockopt(b[0], SOL_TLS, TLS_TX, &ci, sizeof(ci)), 0);
    assert_int_equal(tlsnic_get_mode(b[0], TLSNIC_DIR_TX, &m), 0);
    assert_int_equal(m.mode, TLSNIC_MODE_SW);
    assert_int_equal(m.reason, TLSNIC_SW_REASON_TABLE_FULL);
    assert_int_equal(m.dev_errno, -ENOSPC);

    tlsnic_close(a[0]);
    /* The daemon lets go once the socket has nothing more to send: the FIN acknowledged. */
    uint32_t flows = tlsnic_flowtable_count(daemon_.table);
    for (int i = 0; i < 300 && flows != 0; i++) { /* bounded: 3 s */
        usleep(10000);
        flows = tlsnic_flowtable_count(daemon_.table);
    }
    assert_int_equal(flows, 0);
    tlsnic_close(b[0]);
    close(a[1]);
    close(b[1]);
}

int main(void)
{
    if (geteuid() != 0) {
        printf("SKIP: device mode reads TCP sequence numbers with TCP_REPAIR (root)\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(daemon_takes_tx_then_is_full_then_forgets_on_close),
    };
    return cmocka_run_group_tests_name("ktls_ctl_device", tests, setup, teardown);
}
