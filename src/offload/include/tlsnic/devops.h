/*
 * The contract between the host side (src/host) and a TLS offload device (the in-process
 * model in src/device, or tlsnicd in src/daemon reached over the control channel).
 * Part of the offload API (src/offload). Modelled on the kernel's
 * tlsdev_ops (add / del / resync) and tls_get_record(). Neither side includes the other's
 * headers; both include this one.
 *
 * Errors: negative errno, as in the kernel.
 */
#ifndef TLSNIC_DEVOPS_H
#define TLSNIC_DEVOPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum tlsnic_dir {
    TLSNIC_DIR_TX = 0, /* host -> wire: the device encrypts */
    TLSNIC_DIR_RX = 1, /* wire -> host: the device decrypts */
};

/* A TCP flow seen from the host: local is the host's end. */
struct tlsnic_flow {
    uint8_t family;       /* AF_INET or AF_INET6 */
    uint8_t local[16];    /* IPv4 addresses use the first 4 bytes, the rest is zero */
    uint8_t remote[16];
    uint16_t local_port;  /* host byte order */
    uint16_t remote_port; /* host byte order */
};

struct sockaddr_storage;

/*
 * The flow a connected TCP socket names (local = the socket's end). An IPv4 peer of an
 * AF_INET6 socket (v4-mapped) is named as the IPv4 flow the wire carries, on both sides:
 * the host and the daemon convert with these and nothing else. 0, -ENOTCONN (no peer),
 * -EAFNOSUPPORT (not IPv4 / IPv6, or the two ends disagree), -EINVAL, or getsockname's
 * -errno.
 */
int tlsnic_flow_from_socket(int fd, struct tlsnic_flow *flow);
int tlsnic_flow_from_sockaddrs(const struct sockaddr_storage *local,
                               const struct sockaddr_storage *remote, struct tlsnic_flow *flow);

/*
 * One record the host still retains (not yet acknowledged by the peer), exactly as the
 * host framed it for the device: header, explicit nonce, plaintext body, zeroed tag room.
 */
struct tlsnic_rec_ref {
    uint32_t tcp_seq;     /* TCP sequence number of the record's first header byte */
    uint32_t len;         /* whole record as on the wire, header and tag included */
    uint64_t rec_seq;     /* TLS record sequence number */
    const uint8_t *bytes; /* len bytes; valid until the host releases the record */
};

/*
 * The host record store as a device sees it: read only, the analog of DMA from host
 * memory. The host keeps every record that is not fully acknowledged.
 */
struct tlsnic_rec_store_ops {
    /* The retained record that contains TCP sequence tcp_seq: 0, or -ENOENT. */
    int (*get_record)(void *store, uint32_t tcp_seq, struct tlsnic_rec_ref *out);
};

struct tlsnic_rxs; /* rx_status.h */

/*
 * What the host hands the device in add. TX: the record store (ops, priv). RX: the RX
 * status the device writes (rx_status; rx_status.h), the analog of the per-packet
 * decrypted bit a NIC writes into its receive descriptors; ops is then NULL.
 */
struct tlsnic_rec_store {
    const struct tlsnic_rec_store_ops *ops;
    void *priv;
    struct tlsnic_rxs *rx_status; /* RX only; must stay valid until del */
};

/* rec_seq of a resync that answers a device's RX resync request with "no record starts
 * at that TCP sequence number" (a false header the device found inside a record). */
#define TLSNIC_RESYNC_REJECT UINT64_MAX

/* What a device tells the host about one flow and direction (tlsnic_dev_ops.flow_flags). */
#define TLSNIC_FLOW_F_INTEGRITY 0x1u /* retransmitted plaintext differed from the first
                                        transmission; packet dropped; host must abort */
#define TLSNIC_FLOW_F_NO_SYNC 0x2u   /* a packet was dropped for lack of resync data */
#define TLSNIC_FLOW_F_GONE 0x4u      /* the device no longer holds the context */
#define TLSNIC_FLOW_F_UNMAPPED 0x40000000u /* only in a record store's flags word: the
                                              device let go of the store (written just
                                              before it unmaps it); the host may reuse it */
#define TLSNIC_FLOW_F_LIVE 0x80000000u /* only in a flags word the device writes into host
                                          memory (a record store's): it has written it */

/* release flags */
#define TLSNIC_RELEASE_ABORT 0x1u /* end the connection with a reset, not a FIN */

struct tlsnic_dev;

/* tlsnic_dev_ops.caps */
#define TLSNIC_DEV_CAP_RX 0x1u /* decrypts received records (add with TLSNIC_DIR_RX, rekey) */

struct tlsnic_dev_ops {
    const char *name;
    /*
     * Offloads direction dir of the flow from TCP sequence start_tcp_seq on; the record
     * starting there has sequence number crypto_info->rec_seq. sockfd is the socket when
     * there is one (the daemon reads the 4-tuple from it and trusts nothing else), -1 on
     * the simulated wire. The device copies crypto_info; store must stay valid until del.
     * Errors: -ENOSPC (flow table full), -EEXIST, -EOPNOTSUPP (version, cipher or
     * direction not offloaded), -ENODEV (device gone), -EINVAL.
     */
    int (*add)(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
               enum tlsnic_dir dir, const void *crypto_info, size_t info_len,
               uint32_t start_tcp_seq, const struct tlsnic_rec_store *store);
    /* Removes the context and wipes its keys. -ENOENT if there is none. A device that
     * still has the socket's unacknowledged bytes to encrypt may keep the context until
     * they are acknowledged (-EINPROGRESS: tlsnicd); the store stays in use until then. */
    int (*del)(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
               enum tlsnic_dir dir);
    /*
     * The host tells the device that record rec_seq starts at TCP sequence tcp_seq. RX:
     * the answer to a resync request the device posted in the RX status (rec_seq
     * TLSNIC_RESYNC_REJECT: no record starts there), or unasked, where the next record
     * starts (the kernel's next-record hint). -ENOENT (no context), -EINVAL.
     */
    int (*resync)(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                  enum tlsnic_dir dir, uint32_t tcp_seq, uint64_t rec_seq);
    /* Reads the TLSNIC_FLOW_F_* flags the device raised for the flow. */
    int (*flow_flags)(struct tlsnic_dev *dev, const struct tlsnic_flow *flow,
                      enum tlsnic_dir dir, uint32_t *flags);
    /*
     * Optional (NULL: the host waits for the peer's ACKs itself, then deletes). The
     * application closed the socket (its last descriptor, in the process that added the
     * flow): the device takes the end of the connection over, as the kernel does for a
     * closed socket with queued data: it keeps the context, and the socket, until nothing
     * is left to send (a FIN after the queued bytes, all encrypted; or, with
     * TLSNIC_RELEASE_ABORT, a reset at once), then deletes the context itself. The caller
     * may close sockfd at once and must not call del. The store stays the device's until
     * it lets go (for a shared-memory store: TLSNIC_FLOW_F_UNMAPPED in its flags word).
     * 0, or -errno (not taken over: the caller ends the flow itself; -ENODEV: device gone).
     */
    int (*release)(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                   enum tlsnic_dir dir, unsigned flags);
    /*
     * TLS 1.3 KeyUpdate, RX (optional; NULL without TLSNIC_DEV_CAP_RX): the records from
     * the one starting at TCP sequence tcp_seq on are under the keys of crypto_info (same
     * version and cipher; its rec_seq is that record's). The device switches exactly at
     * that record boundary, and keeps the keys it had for bytes it decrypted before.
     * -ENOENT, -EINVAL, -EOPNOTSUPP (not TLS 1.3, other cipher), -ENODEV.
     */
    int (*rekey)(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                 enum tlsnic_dir dir, const void *crypto_info, size_t info_len,
                 uint32_t tcp_seq);
    uint32_t caps; /* TLSNIC_DEV_CAP_*: a host offers RX only to a device that says RX */
};

/* A device handle: ops plus the implementation's private state. */
struct tlsnic_dev {
    const struct tlsnic_dev_ops *ops;
    void *priv;
};

#ifdef __cplusplus
}
#endif

#endif
