/* The device model plugged into tlsnicd's forwarding path (see fwd.h). */
#include <errno.h>
#include <stdio.h>

#include "tlsnic/check.h"
#include "tlsnic/ctl_proto.h"
#include "tlsnic/nichook.h"

int tlsnic_nic_frame_hook(void *ctx, int direction, uint8_t *frame, size_t len,
                          struct virtio_net_hdr *vh)
{
    tlsnic_nic *nic = ctx;
    if (direction == TLSNIC_FWD_TO_HOST) {
        /* RX offload: the device may decrypt the payload in place (checksum as for TX:
         * a NEEDS_CSUM frame keeps its partial sum, a full one is rewritten). */
        struct tlsnic_pkt pkt = {
            .data = frame,
            .len = len,
            .gso_size = vh->gso_type != VIRTIO_NET_HDR_GSO_NONE ? vh->gso_size : 0,
            .csum = (vh->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) ? TLSNIC_CSUM_OFFLOAD : TLSNIC_CSUM_FULL,
        };
        int v = tlsnic_nic_rx_pkt(nic, &pkt);
        if (v < 0)
            return v;
        return v == TLSNIC_DROP ? TLSNIC_FRAME_DROP : TLSNIC_FRAME_PASS;
    }
    struct tlsnic_pkt pkt = {
        .data = frame,
        .len = len,
        .gso_size = vh->gso_type != VIRTIO_NET_HDR_GSO_NONE ? vh->gso_size : 0,
        .csum = (vh->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) ? TLSNIC_CSUM_OFFLOAD : TLSNIC_CSUM_FULL,
    };
    int v = tlsnic_nic_tx(nic, &pkt);
    if (v < 0)
        return v;
    return v == TLSNIC_DROP ? TLSNIC_FRAME_DROP : TLSNIC_FRAME_PASS;
}

int tlsnic_nic_stats_format(const tlsnic_nic *nic, char *buf, size_t cap)
{
    struct tlsnic_nic_stats st;
    tlsnic_nic_stats(nic, &st);
    const struct {
        const char *name;
        uint64_t value;
    } rows[] = {
        {"tx_tls_encrypted_packets", st.tx_tls_encrypted_packets},
        {"tx_tls_encrypted_bytes", st.tx_tls_encrypted_bytes},
        {"tx_tls_ctx", st.tx_tls_ctx},
        {"tx_tls_del", st.tx_tls_del},
        {"tx_tls_ooo", st.tx_tls_ooo},
        {"tx_tls_ooo_ckpt", st.tx_tls_ooo_ckpt},
        {"tx_tls_ooo_crypto_bytes", st.tx_tls_ooo_crypto_bytes},
        {"tx_tls_resync_bytes", st.tx_tls_resync_bytes},
        {"tx_tls_dump_packets", st.tx_tls_dump_packets},
        {"tx_tls_dump_bytes", st.tx_tls_dump_bytes},
        {"tx_tls_skip_no_sync_data", st.tx_tls_skip_no_sync_data},
        {"tx_tls_drop_no_sync_data", st.tx_tls_drop_no_sync_data},
        {"tx_tls_drop_integrity", st.tx_tls_drop_integrity},
        {"tx_tls_drop_bad_frame", st.tx_tls_drop_bad_frame},
        {"tx_tls_ack_trims", st.tx_tls_ack_trims},
        {"rx_tls_decrypted_packets", st.rx_tls_decrypted_packets},
        {"rx_tls_decrypted_bytes", st.rx_tls_decrypted_bytes},
        {"rx_tls_ctx", st.rx_tls_ctx},
        {"rx_tls_del", st.rx_tls_del},
        {"rx_tls_err", st.rx_tls_err},
        {"rx_tls_resync_req_pkt", st.rx_tls_resync_req_pkt},
        {"rx_tls_resync_req_start", st.rx_tls_resync_req_start},
        {"rx_tls_resync_req_end", st.rx_tls_resync_req_end},
        {"rx_tls_resync_res_ok", st.rx_tls_resync_res_ok},
        {"rx_tls_resync_res_skip", st.rx_tls_resync_res_skip},
        {"rx_tls_rec_ok", st.rx_tls_rec_ok},
        {"rx_tls_rec_bytes", st.rx_tls_rec_bytes},
        {"rx_tls_ooo", st.rx_tls_ooo},
        {"rx_tls_resync_placed", st.rx_tls_resync_placed},
        {"rx_tls_resync_place_bad", st.rx_tls_resync_place_bad},
        {"rx_tls_recheck", st.rx_tls_recheck},
        {"rx_tls_no_room", st.rx_tls_no_room},
        {"rx_tls_drop_no_key", st.rx_tls_drop_no_key},
        {"rx_tls_rekey", st.rx_tls_rekey},
        {"rx_tls_hold", st.rx_tls_hold},
        {"rx_tls_drop_bad_frame", st.rx_tls_drop_bad_frame},
        {"tx_tls_flows", tlsnic_nic_flow_count(nic)},
    };
    size_t used = 0;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int n = snprintf(buf + used, cap - used, "%s %llu\n", rows[i].name,
                         (unsigned long long)rows[i].value);
        if (n < 0 || (size_t)n >= cap - used)
            return -ENOBUFS;
        used += (size_t)n;
    }
    return (int)used;
}

int tlsnic_nic_flow_counters(void *ctx, const struct tlsnic_flow *flow, enum tlsnic_dir dir,
                             uint64_t *out, size_t cap)
{
    struct tlsnic_nic_stats st;
    TLSNIC_ENSURE(ctx != NULL && out != NULL && cap >= TLSNIC_CTL_FLOW_COUNTERS, EINVAL);
    TLSNIC_TRY(tlsnic_nic_flow_stats(ctx, flow, dir, &st));
#define COPY_(name) out[TLSNIC_CTL_FC_##name] = st.name;
    TLSNIC_CTL_FLOW_COUNTER_LIST(COPY_)
#undef COPY_
    return 0;
}
