/*
 * tlsnic-kdevd: the "hardware" behind tlsnic.ko. It attaches two network devices through
 * /dev/tlsnic (kernel/tlsnic_kdev.h) and joins them by a wire: every frame one device's
 * kernel transmits goes through that device's model (tlsnic's device model, src/device: the
 * offloaded TLS records are encrypted in place) and then, unless the wire loses it, is
 * received by the other device's kernel. The offload contexts come from the kernel's own
 * net/tls/tls_device.c through the driver (ADD / DEL / RESYNC); for a segment out of order
 * the driver sends the kernel's records with it (tls_get_record), which serve as the
 * device's host record store for that one frame: the device model resyncs from its own
 * checkpoints where it can and re-seals the record's prefix where it cannot.
 *
 * RX: a frame the wire delivers to a device with RX-offloaded flows passes that device's
 * model, which decrypts record bodies in place and checks tags (tlsnic_nic_rx_pkt) and
 * writes what it did into the flow's RX status (rx_status.h). The frame goes to the kernel
 * marked decrypted only if that status shows every record byte in it decrypted, with the
 * tag of any record ending in it verified, and none of it forwarded before; otherwise it
 * goes as it came from the wire, unmarked, so each skb tells the kernel the truth about
 * its own bytes whichever copy TCP keeps (tlsnic_rxs_span_verified). The model's resync
 * requests go to the kernel (RESYNC_REQ), its answers back to the model. The model also
 * places headers after a gap itself (--rx-no-guess: never): for TLS 1.2 AES-GCM, the only
 * RX the kernel offloads, by the record's explicit nonce, which also alone makes the body's
 * keystream, so even a wrong guess of the record number decrypts the body as the kernel
 * would; only the tag check fails, and the kernel re-encrypts and checks that record.
 *
 *   tlsnic-kdevd --dev NAME --dev NAME [--loss P] [--seed N] [--no-checkpoints]
 *                [--rx-no-guess] [--pcap FILE] [--ready FILE]
 *
 * --loss drops that share of the frames on the wire (after the device: TCP retransmits and
 * the device must resync), from a seeded generator. --rx-no-guess: after a gap the RX model
 * does not place record headers itself (by explicit nonce or record length), so every RX
 * resync goes through the kernel (RESYNC_REQ, tls_dev_resync). --pcap writes what crosses the wire
 * (LINKTYPE_RAW, GSO frames whole). The device model's counters go to the driver every
 * 100 ms (ethtool -S) and to stderr at exit (SIGTERM / SIGINT). Root only.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/virtio_net.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "tlsnic/frame.h"
#include "tlsnic/nic.h"
#include "tlsnic/record.h"
#include "tlsnic/rx_status.h"
#include "tlsnic_kdev.h"

#define MSG_BUF (256 * 1024)
#define MAX_RECS 128
#define FLOW_BUCKETS 1024
#define BURST 64

/* The kernel's records sent with the frame being handled: the device's record store. */
struct frame_recs {
    uint32_t n;
    struct tlsnic_kdev_rec rec[MAX_RECS];
    const uint8_t *data[MAX_RECS];
    uint8_t *padded[MAX_RECS]; /* record-sized copies, zero past the prefix (lazily made) */
};

struct kflow {
    uint32_t id;
    uint8_t dir; /* TLSNIC_KDEV_DIR_* */
    struct tlsnic_flow flow;
    /* RX: the status the device model writes, the store that carries it to the model, and
     * the status's host end (resync requests seen, how far the kernel was handed bytes). */
    struct tlsnic_rxs *rxs;
    struct tlsnic_rec_store rx_store;
    struct tlsnic_rxs_reader reader;
    struct kflow *next;
    struct kflow *rx_next; /* the device's RX flows, for frames from the wire */
};

struct dev {
    const char *name;
    int fd;
    tlsnic_nic *nic;
    struct tlsnic_rec_store store;
    struct frame_recs recs;
    struct kflow *flows[FLOW_BUCKETS];
    uint64_t drop_unknown_flow, wire_drops, frames_in;
    struct kflow *rx_flows; /* RX-offloaded flows: frames for the kernel pass the RX model */
    struct dev *peer;
};

static volatile sig_atomic_t stop;
static double loss;
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static FILE *pcap;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static uint64_t rng_next(void)
{
    /* splitmix64: a reproducible wire from --seed */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ------------------------------------------------------------------------------------------ */
/* Flows by the driver's id                                                                   */

static struct kflow **flow_slot(struct dev *d, uint32_t id)
{
    struct kflow **s = &d->flows[id % FLOW_BUCKETS];
    while (*s && (*s)->id != id)
        s = &(*s)->next;
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* The record store over the frame's records                                                  */

static int store_get_record(void *priv, uint32_t tcp_seq, struct tlsnic_rec_ref *out)
{
    struct frame_recs *fr = priv;
    for (uint32_t i = 0; i < fr->n; i++) {
        const struct tlsnic_kdev_rec *r = &fr->rec[i];
        if ((uint32_t)(tcp_seq - r->start_seq) >= r->len)
            continue;
        if (!fr->padded[i]) {
            fr->padded[i] = malloc(TLSNIC_REC_MAX_WIRE_LEN + 256);
            if (!fr->padded[i])
                return -ENOMEM;
        }
        memcpy(fr->padded[i], fr->data[i], r->data_len);
        memset(fr->padded[i] + r->data_len, 0, r->len - r->data_len);
        out->tcp_seq = r->start_seq;
        out->len = r->len;
        out->rec_seq = r->rec_seq;
        out->bytes = fr->padded[i];
        return 0;
    }
    return -ENOENT;
}

static const struct tlsnic_rec_store_ops store_ops = {.get_record = store_get_record};

/* Parses the records of a FRAME message (bounds-checked); 0 or -EINVAL. */
static int parse_recs(struct frame_recs *fr, const uint8_t *p, size_t len, uint32_t n)
{
    fr->n = 0;
    if (n > MAX_RECS)
        return -EINVAL;
    size_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct tlsnic_kdev_rec r;
        if (len - off < sizeof(r))
            return -EINVAL;
        memcpy(&r, p + off, sizeof(r));
        off += sizeof(r);
        size_t padded = (r.data_len + 7u) & ~7u;
        if (r.data_len > r.len || r.len < TLSNIC_REC_HDR_LEN ||
            r.len > TLSNIC_REC_MAX_WIRE_LEN + 256 || len - off < padded)
            return -EINVAL;
        fr->rec[i] = r;
        fr->data[i] = p + off;
        off += padded;
    }
    if (off != len)
        return -EINVAL;
    fr->n = n;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Wire                                                                                       */

static void pcap_open(const char *path)
{
    pcap = fopen(path, "wb");
    if (!pcap) {
        perror(path);
        exit(1);
    }
    const uint32_t h[6] = {0xa1b2c3d4u, 0x00040002u, 0, 0, 262144, 101 /* LINKTYPE_RAW */};
    fwrite(h, sizeof(h), 1, pcap);
}

static void pcap_write(const uint8_t *frame, size_t len)
{
    if (!pcap)
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    const uint32_t h[4] = {(uint32_t)tv.tv_sec, (uint32_t)tv.tv_usec, (uint32_t)len,
                           (uint32_t)len};
    fwrite(h, sizeof(h), 1, pcap);
    fwrite(frame, len, 1, pcap);
    fflush(pcap); /* a killed daemon leaves every frame it sent in the capture */
}

/* Hands a frame to the kernel of device d (received there). */
static void deliver(struct dev *d, const struct virtio_net_hdr *vh, const uint8_t *frame,
                    size_t len, uint16_t flags)
{
    struct tlsnic_kdev_hdr h = {.type = TLSNIC_KDEV_MSG_FRAME, .flags = flags};
    struct tlsnic_kdev_frame f = {.vnet_len = sizeof(*vh), .frame_len = (uint32_t)len};
    static uint8_t out[MSG_BUF];
    size_t n = sizeof(h) + sizeof(f) + sizeof(*vh) + len;
    if (n > sizeof(out))
        return;
    h.len = (uint32_t)n;
    memcpy(out, &h, sizeof(h));
    memcpy(out + sizeof(h), &f, sizeof(f));
    memcpy(out + sizeof(h) + sizeof(f), vh, sizeof(*vh));
    memcpy(out + sizeof(h) + sizeof(f) + sizeof(*vh), frame, len);
    if (write(d->fd, out, n) < 0 && errno != EINVAL)
        fprintf(stderr, "tlsnic-kdevd: write to %s: %s\n", d->name, strerror(errno));
}

/* ------------------------------------------------------------------------------------------ */
/* RX                                                                                         */

/* The RX flow a frame from the wire belongs to (the host's end is the frame's destination). */
static struct kflow *rx_flow_of(struct dev *d, const struct tlsnic_frame *fr)
{
    size_t alen = fr->family == AF_INET ? 4 : 16;
    for (struct kflow *kf = d->rx_flows; kf; kf = kf->rx_next)
        if (kf->flow.family == fr->family && kf->flow.local_port == fr->dport &&
            kf->flow.remote_port == fr->sport && memcmp(kf->flow.local, fr->dst, alen) == 0 &&
            memcmp(kf->flow.remote, fr->src, alen) == 0)
            return kf;
    return NULL;
}

/* Passes the model's new resync request of flow kf (if any) to the kernel. */
static void rx_pass_request(struct dev *d, struct kflow *kf)
{
    uint32_t seq;
    if (!tlsnic_rxs_poll_request(&kf->reader, &seq))
        return;
    struct {
        struct tlsnic_kdev_hdr h;
        struct tlsnic_kdev_resync_req rq;
    } m = {.h = {.type = TLSNIC_KDEV_MSG_RESYNC_REQ, .len = sizeof(m)},
           .rq = {.flow_id = kf->id, .seq = seq}};
    /* ENOENT: the kernel deleted the flow meanwhile; its DEL is on its way. */
    if (write(d->fd, &m, sizeof(m)) < 0 && errno != ENOENT)
        fprintf(stderr, "tlsnic-kdevd: resync request to %s: %s\n", d->name, strerror(errno));
}

/*
 * A frame from the wire for device d's kernel. Without RX flows the model only reads its
 * ACK (the TX side's state); with them it decrypts what it can, and the frame is marked
 * decrypted or restored to what came from the wire (see the top of this file).
 */
static void rx_deliver(struct dev *d, const struct virtio_net_hdr *vh, uint8_t *frame,
                       size_t len)
{
    static uint8_t wire_copy[MSG_BUF];
    struct tlsnic_frame fr;
    struct kflow *kf = NULL;
    if (d->rx_flows && len <= sizeof(wire_copy) &&
        tlsnic_frame_parse(frame, len, &fr) == TLSNIC_FRAME_TCP && fr.payload_len > 0)
        kf = rx_flow_of(d, &fr);
    if (!kf) {
        tlsnic_nic_rx(d->nic, frame, len);
        deliver(d, vh, frame, len, 0);
        return;
    }
    memcpy(wire_copy, frame, len);
    uint32_t hi = 0;
    int later_copy = tlsnic_rxs_hi(kf->rxs, &hi) && (int32_t)(fr.seq - hi) < 0;
    struct tlsnic_pkt pkt = {
        .data = frame,
        .len = len,
        .gso_size = vh->gso_type != VIRTIO_NET_HDR_GSO_NONE ? vh->gso_size : 0,
        .csum = (vh->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) ? TLSNIC_CSUM_OFFLOAD : TLSNIC_CSUM_FULL,
    };
    int verdict = tlsnic_nic_rx_pkt(d->nic, &pkt);
    rx_pass_request(d, kf);
    if (verdict == TLSNIC_DROP)
        return;
    uint16_t flags = 0;
    if (verdict == TLSNIC_MODIFIED) {
        if (!later_copy && tlsnic_rxs_span_verified(kf->rxs, fr.seq, (uint32_t)fr.payload_len))
            flags = TLSNIC_KDEV_F_DECRYPTED;
        else
            memcpy(frame, wire_copy, len); /* any doubt: as it came from the wire */
    }
    if (!later_copy) {
        /* Entries of records that end before this frame are no longer needed: a later
         * copy of their bytes goes to the kernel as it came from the wire. */
        tlsnic_rxs_consume(&kf->reader, fr.seq);
    }
    deliver(d, vh, frame, len, flags);
}

/* A frame device d's kernel transmits: through d's device model, across the wire. */
static void on_frame(struct dev *d, uint8_t *m, size_t len)
{
    struct tlsnic_kdev_frame f;
    if (len < sizeof(f))
        return;
    memcpy(&f, m, sizeof(f));
    struct virtio_net_hdr vh;
    if (f.vnet_len != sizeof(vh) ||
        len != sizeof(f) + (size_t)f.rec_bytes + sizeof(vh) + (size_t)f.frame_len)
        return;
    uint8_t *recs = m + sizeof(f);
    memcpy(&vh, recs + f.rec_bytes, sizeof(vh));
    uint8_t *frame = recs + f.rec_bytes + sizeof(vh);
    d->frames_in++;
    if (f.flow_id && !*flow_slot(d, f.flow_id)) {
        d->drop_unknown_flow++; /* a context the device does not hold: never in clear */
        return;
    }
    if (parse_recs(&d->recs, recs, f.rec_bytes, f.nrec) < 0) {
        fprintf(stderr, "tlsnic-kdevd: %s: malformed records, frame dropped\n", d->name);
        return;
    }
    struct tlsnic_pkt pkt = {
        .data = frame,
        .len = f.frame_len,
        .gso_size = vh.gso_type != VIRTIO_NET_HDR_GSO_NONE ? vh.gso_size : 0,
        .csum = (vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) ? TLSNIC_CSUM_OFFLOAD : TLSNIC_CSUM_FULL,
    };
    int verdict = tlsnic_nic_tx(d->nic, &pkt);
    /* The records are plaintext the kernel keeps anyway; the padded copies are ours. */
    for (uint32_t i = 0; i < d->recs.n; i++)
        if (d->recs.padded[i])
            OPENSSL_cleanse(d->recs.padded[i], d->recs.rec[i].len);
    d->recs.n = 0;
    if (verdict == TLSNIC_DROP)
        return;
    if (loss > 0 && (double)(rng_next() >> 11) * 0x1.0p-53 < loss) {
        d->wire_drops++;
        return;
    }
    pcap_write(frame, f.frame_len);
    rx_deliver(d->peer, &vh, frame, f.frame_len);
}

/* ------------------------------------------------------------------------------------------ */
/* Control messages                                                                           */

/* An RX flow's status and its reader (after the model let go of it, or never had it). */
static void free_rx(struct kflow *kf)
{
    if (kf->reader.s)
        tlsnic_rxs_reader_cleanup(&kf->reader);
    tlsnic_rxs_free(kf->rxs);
    kf->rxs = NULL;
}

static void on_add(struct dev *d, uint8_t *m, size_t len)
{
    struct tlsnic_kdev_add a;
    if (len != sizeof(a))
        return;
    memcpy(&a, m, sizeof(a));
    OPENSSL_cleanse(m, len);
    struct kflow *kf = calloc(1, sizeof(*kf));
    if (!kf || a.info_len > sizeof(a.info) || (a.family != AF_INET && a.family != AF_INET6) ||
        (a.dir != TLSNIC_KDEV_DIR_TX && a.dir != TLSNIC_KDEV_DIR_RX) ||
        *flow_slot(d, a.flow_id)) {
        fprintf(stderr, "tlsnic-kdevd: %s: bad ADD of flow %u\n", d->name, a.flow_id);
        free(kf);
        OPENSSL_cleanse(&a, sizeof(a));
        return;
    }
    kf->id = a.flow_id;
    kf->dir = a.dir;
    kf->flow.family = a.family;
    memcpy(kf->flow.local, a.local, 16);
    memcpy(kf->flow.remote, a.remote, 16);
    kf->flow.local_port = a.local_port;
    kf->flow.remote_port = a.remote_port;
    int rc;
    if (kf->dir == TLSNIC_KDEV_DIR_TX) {
        rc = tlsnic_nic_add(d->nic, &kf->flow, TLSNIC_DIR_TX, a.info, a.info_len, a.start_seq,
                            &d->store);
    } else {
        rc = tlsnic_rxs_new(&kf->rxs, 0);
        kf->rx_store.rx_status = kf->rxs;
        if (rc == 0)
            rc = tlsnic_rxs_reader_init(&kf->reader, kf->rxs);
        if (rc == 0)
            rc = tlsnic_nic_add(d->nic, &kf->flow, TLSNIC_DIR_RX, a.info, a.info_len,
                                a.start_seq, &kf->rx_store);
    }
    OPENSSL_cleanse(&a, sizeof(a));
    if (rc < 0) {
        /* TX: the flow's frames are dropped (unknown flow), never sent in clear. RX: its
         * frames pass as they came, and the kernel decrypts them. */
        fprintf(stderr, "tlsnic-kdevd: %s: device refused flow %u: %s\n", d->name, kf->id,
                strerror(-rc));
        free_rx(kf);
        free(kf);
        return;
    }
    if (kf->dir == TLSNIC_KDEV_DIR_RX) {
        kf->rx_next = d->rx_flows;
        d->rx_flows = kf;
    }
    *flow_slot(d, kf->id) = kf;
}

static void on_del(struct dev *d, const uint8_t *m, size_t len)
{
    struct tlsnic_kdev_del del;
    if (len != sizeof(del))
        return;
    memcpy(&del, m, sizeof(del));
    struct kflow **s = flow_slot(d, del.flow_id);
    if (!*s)
        return;
    struct kflow *kf = *s;
    *s = kf->next;
    if (kf->dir == TLSNIC_KDEV_DIR_TX) {
        tlsnic_nic_del(d->nic, &kf->flow, TLSNIC_DIR_TX);
    } else {
        tlsnic_nic_del(d->nic, &kf->flow, TLSNIC_DIR_RX);
        free_rx(kf);
        for (struct kflow **p = &d->rx_flows; *p; p = &(*p)->rx_next)
            if (*p == kf) {
                *p = kf->rx_next;
                break;
            }
    }
    free(kf);
}

static void on_resync(struct dev *d, const uint8_t *m, size_t len)
{
    struct tlsnic_kdev_resync rs;
    if (len != sizeof(rs))
        return;
    memcpy(&rs, m, sizeof(rs));
    struct kflow *kf = *flow_slot(d, rs.flow_id);
    enum tlsnic_dir dir = kf && kf->dir == TLSNIC_KDEV_DIR_RX ? TLSNIC_DIR_RX : TLSNIC_DIR_TX;
    if (kf && tlsnic_nic_resync(d->nic, &kf->flow, dir, rs.seq, rs.rec_seq) < 0)
        fprintf(stderr, "tlsnic-kdevd: %s: resync of flow %u refused\n", d->name, rs.flow_id);
}

static void push_stats(struct dev *d)
{
    struct tlsnic_nic_stats s;
    tlsnic_nic_stats(d->nic, &s);
    struct {
        struct tlsnic_kdev_hdr h;
        struct tlsnic_kdev_stats st;
    } m = {.h = {.type = TLSNIC_KDEV_MSG_STATS, .len = sizeof(m)}};
    const uint64_t v[TLSNIC_KDEV_STATS_N] = {
        s.tx_tls_encrypted_packets, s.tx_tls_encrypted_bytes, s.tx_tls_ctx, s.tx_tls_del,
        s.tx_tls_ooo, s.tx_tls_ooo_ckpt, s.tx_tls_resync_bytes, s.tx_tls_dump_packets,
        s.tx_tls_dump_bytes, s.tx_tls_skip_no_sync_data,
        s.tx_tls_drop_no_sync_data + s.tx_tls_drop_integrity + s.tx_tls_drop_bad_frame,
        d->drop_unknown_flow, s.rx_tls_decrypted_packets, s.rx_tls_decrypted_bytes,
        s.rx_tls_ctx, s.rx_tls_del, s.rx_tls_err, s.rx_tls_resync_req_pkt,
        s.rx_tls_resync_req_start, s.rx_tls_resync_req_end, s.rx_tls_resync_res_ok,
        s.rx_tls_resync_res_skip,
    };
    memcpy(m.st.v, v, sizeof(v));
    if (write(d->fd, &m, sizeof(m)) < 0)
        fprintf(stderr, "tlsnic-kdevd: stats to %s: %s\n", d->name, strerror(errno));
}

static void print_stats(const struct dev *d)
{
    struct tlsnic_nic_stats s;
    tlsnic_nic_stats(d->nic, &s);
    fprintf(stderr,
            "tlsnic-kdevd: %s: frames %llu, encrypted packets %llu bytes %llu, ctx %llu del "
            "%llu, ooo %llu (ckpt %llu), resync bytes %llu, dump packets %llu, no-sync drops "
            "%llu, unknown-flow drops %llu, wire drops %llu; RX: ctx %llu, decrypted packets "
            "%llu bytes %llu, tag failures %llu, resync requests %llu answered %llu ok %llu\n",
            d->name, (unsigned long long)d->frames_in,
            (unsigned long long)s.tx_tls_encrypted_packets,
            (unsigned long long)s.tx_tls_encrypted_bytes, (unsigned long long)s.tx_tls_ctx,
            (unsigned long long)s.tx_tls_del, (unsigned long long)s.tx_tls_ooo,
            (unsigned long long)s.tx_tls_ooo_ckpt, (unsigned long long)s.tx_tls_resync_bytes,
            (unsigned long long)s.tx_tls_dump_packets,
            (unsigned long long)s.tx_tls_drop_no_sync_data,
            (unsigned long long)d->drop_unknown_flow, (unsigned long long)d->wire_drops,
            (unsigned long long)s.rx_tls_ctx, (unsigned long long)s.rx_tls_decrypted_packets,
            (unsigned long long)s.rx_tls_decrypted_bytes, (unsigned long long)s.rx_tls_err,
            (unsigned long long)s.rx_tls_resync_req_start,
            (unsigned long long)s.rx_tls_resync_req_end,
            (unsigned long long)s.rx_tls_resync_res_ok);
}

/* Reads and handles up to BURST messages of device d; -1 when its file failed. */
static int drain(struct dev *d)
{
    static uint8_t buf[MSG_BUF];
    for (int i = 0; i < BURST; i++) {
        ssize_t n = read(d->fd, buf, sizeof(buf));
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        struct tlsnic_kdev_hdr h;
        if ((size_t)n < sizeof(h))
            return -1;
        memcpy(&h, buf, sizeof(h));
        if (h.len != (size_t)n)
            return -1;
        uint8_t *body = buf + sizeof(h);
        size_t blen = (size_t)n - sizeof(h);
        switch (h.type) {
        case TLSNIC_KDEV_MSG_FRAME:
            on_frame(d, body, blen);
            break;
        case TLSNIC_KDEV_MSG_ADD:
            on_add(d, body, blen);
            break;
        case TLSNIC_KDEV_MSG_DEL:
            on_del(d, body, blen);
            break;
        case TLSNIC_KDEV_MSG_RESYNC:
            on_resync(d, body, blen);
            break;
        default:
            break;
        }
    }
    return 0;
}

static void attach(struct dev *d, int checkpoints_off, int rx_no_guess)
{
    d->fd = open("/dev/tlsnic", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (d->fd < 0) {
        perror("tlsnic-kdevd: /dev/tlsnic (is tlsnic.ko loaded?)");
        exit(1);
    }
    struct tlsnic_kdev_attach at = {0};
    snprintf(at.name, sizeof(at.name), "%s", d->name);
    if (ioctl(d->fd, TLSNIC_KDEV_ATTACH, &at) < 0) {
        fprintf(stderr, "tlsnic-kdevd: attach %s: %s\n", d->name, strerror(errno));
        exit(1);
    }
    struct tlsnic_nic_config cfg;
    tlsnic_nic_config_default(&cfg);
    cfg.checkpoints_off = (uint8_t)checkpoints_off;
    cfg.rx_no_guess = (uint8_t)rx_no_guess;
    if (tlsnic_nic_new(&d->nic, &cfg) < 0) {
        fprintf(stderr, "tlsnic-kdevd: no device model\n");
        exit(1);
    }
    d->store.ops = &store_ops;
    d->store.priv = &d->recs;
}

static void usage(void)
{
    fprintf(stderr, "usage: tlsnic-kdevd --dev NAME --dev NAME [--loss P] [--seed N] "
                    "[--no-checkpoints] [--rx-no-guess] [--pcap FILE] [--ready FILE]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static struct dev devs[2];
    int ndev = 0, checkpoints_off = 0, rx_no_guess = 0;
    const char *ready = NULL, *pcap_path = NULL;
    static const struct option opts[] = {
        {"dev", required_argument, NULL, 'd'},   {"loss", required_argument, NULL, 'l'},
        {"seed", required_argument, NULL, 's'},  {"no-checkpoints", no_argument, NULL, 'c'},
        {"pcap", required_argument, NULL, 'p'},  {"ready", required_argument, NULL, 'r'},
        {"rx-no-guess", no_argument, NULL, 'g'},
        {NULL, 0, NULL, 0},
    };
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (c) {
        case 'd':
            if (ndev == 2)
                usage();
            devs[ndev++].name = optarg;
            break;
        case 'l':
            loss = strtod(optarg, NULL);
            break;
        case 's':
            rng_state = strtoull(optarg, NULL, 0);
            break;
        case 'c':
            checkpoints_off = 1;
            break;
        case 'g':
            rx_no_guess = 1;
            break;
        case 'p':
            pcap_path = optarg;
            break;
        case 'r':
            ready = optarg;
            break;
        default:
            usage();
        }
    }
    if (ndev != 2 || optind != argc || loss < 0 || loss >= 1)
        usage();
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (pcap_path)
        pcap_open(pcap_path);
    for (int i = 0; i < 2; i++) {
        attach(&devs[i], checkpoints_off, rx_no_guess);
        devs[i].peer = &devs[1 - i];
    }
    if (ready) {
        FILE *f = fopen(ready, "w");
        if (f) {
            fprintf(f, "ready %s %s\n", devs[0].name, devs[1].name);
            fclose(f);
        }
    }
    struct timespec last = {0};
    int rc = 0;
    while (!stop) {
        struct pollfd p[2] = {{.fd = devs[0].fd, .events = POLLIN},
                              {.fd = devs[1].fd, .events = POLLIN}};
        if (poll(p, 2, 100) < 0 && errno != EINTR) {
            rc = 1;
            break;
        }
        for (int i = 0; i < 2; i++)
            if ((p[i].revents & (POLLIN | POLLERR)) && drain(&devs[i]) < 0) {
                fprintf(stderr, "tlsnic-kdevd: %s: %s\n", devs[i].name, strerror(errno));
                stop = 1;
                rc = 1;
            }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - last.tv_sec) * 1000 + (now.tv_nsec - last.tv_nsec) / 1000000 >= 100) {
            push_stats(&devs[0]);
            push_stats(&devs[1]);
            last = now;
        }
    }
    for (int i = 0; i < 2; i++) {
        push_stats(&devs[i]);
        print_stats(&devs[i]);
    }
    if (pcap)
        fclose(pcap);
    /* Closing the files destroys the devices: the kernel moves what is still offloaded to
     * its software fallback; frames queued for us are discarded, never sent. */
    for (int i = 0; i < 2; i++) {
        close(devs[i].fd);
        tlsnic_nic_free(devs[i].nic);
        for (uint32_t r = 0; r < MAX_RECS; r++)
            free(devs[i].recs.padded[r]);
        for (int b = 0; b < FLOW_BUCKETS; b++)
            for (struct kflow *kf = devs[i].flows[b], *next; kf; kf = next) {
                next = kf->next;
                free_rx(kf);
                free(kf);
            }
    }
    return rc;
}
