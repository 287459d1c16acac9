// SPDX-License-Identifier: GPL-2.0
/*
 * tlsnic.ko: tlsnic's device model as a Linux TLS offload NIC.
 *
 * Each open file of /dev/tlsnic that asks TLSNIC_KDEV_ATTACH gets a network device with
 * NETIF_F_HW_TLS_TX and tlsdev_ops, so the kernel's own net/tls/tls_device.c offloads TX
 * of kTLS sockets routed through it. The driver does no crypto: like TUN it hands every
 * frame it is given to the file's reader (tlsnic-kdevd, which runs tlsnic's device model,
 * the NIC's "hardware"), together with the offload contexts (add / del / resync) and, for
 * a segment out of order, the kernel's records the segment belongs to. Frames written to
 * the file are received by the device. See tlsnic_kdev.h for the messages.
 *
 * TX path, as mlx5 does it (en_accel/ktls_tx.c): a per-flow expected TCP sequence number;
 * a segment at it goes out as it is (the fast path: the device continues the record it is
 * in); any other segment (retransmission, or new data after one) is looked up with
 * tls_get_record() under the offload context's lock, and every record it touches is sent
 * with it, from the record's first byte up to the end of the segment: the device re-seals
 * that prefix to rebuild its state (the paper's resync; mlx5's DUMP WQEs). Where there is
 * no record (already acknowledged and released, or the segment straddles the point where
 * offload started), the segment is dropped, never sent in the clear.
 *
 * RX path (NETIF_F_HW_TLS_RX, TLS 1.2 as the kernel offers it): the device decrypts in
 * place and says per frame whether every record byte in it is decrypted and verified
 * (TLSNIC_KDEV_F_DECRYPTED); the driver marks such skbs decrypted, so the kernel's
 * tls_device_decrypted() delivers a record all of whose skbs are marked without crypto,
 * and re-encrypts and checks a mixed one. Resync is the kernel's device-request mode
 * (TLS_OFFLOAD_SYNC_TYPE_DRIVER_REQ, mlx5's before its async variant): the device asks
 * with a candidate header's sequence number (RESYNC_REQ), the driver passes it on with
 * tls_offload_rx_resync_request(), and the kernel answers through tls_dev_resync when its
 * reading reaches a record starting there.
 *
 * The device lives as long as the file: close() unregisters it, and the kernel's
 * NETDEV_DOWN handler (tls_device_down) moves every offloaded socket to the kernel's
 * software fallback before the driver's contexts are deleted. Frames queued for the
 * reader are discarded at close, never sent.
 */
#include <linux/cdev.h>
#include <linux/ethtool.h>
#include <linux/idr.h>
#include <linux/if_arp.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/netdevice.h>
#include <linux/poll.h>
#include <linux/skbuff.h>
#include <linux/slab.h>
#include <linux/tcp.h>
#include <linux/uio.h>
#include <linux/unaligned.h>
#include <linux/virtio_net.h>
#include <net/inet_sock.h>
#include <net/ipv6.h>
#include <net/sock.h>
#include <net/tls.h>

#include "tlsnic_kdev.h"

#define TLSNIC_QLEN 1024	/* frames queued for the reader before the queue stops */
#define TLSNIC_MAX_RECS 128	/* records sent with one out-of-order segment */
#define TLSNIC_MAX_REC_BYTES (128 * 1024)

/* Driver counters, then the device model's (from the daemon): ethtool -S. */
enum {
	DRV_TX_TLS_PACKETS,	/* offloaded segments handed to the device */
	DRV_TX_TLS_BYTES,	/* their TCP payload bytes */
	DRV_TX_TLS_CTX,
	DRV_TX_TLS_DEL,
	DRV_TX_TLS_OOO,		/* segments not at the expected sequence number */
	DRV_TX_TLS_RESYNC_RECORDS, /* records looked up and sent with them */
	DRV_TX_TLS_RESYNC_BYTES,   /* record bytes sent with them */
	DRV_TX_TLS_SKIP_NO_SYNC_DATA, /* segments before the offload start: as they are */
	DRV_TX_TLS_DROP_NO_SYNC_DATA, /* segments without a record: dropped */
	DRV_TX_TLS_DROP_NO_CTX,	/* offloaded socket without a driver context: dropped */
	DRV_TX_QUEUE_DROPS,	/* no reader, or no memory */
	DRV_RX_TLS_CTX,
	DRV_RX_TLS_DEL,
	DRV_RX_TLS_DECRYPTED_PACKETS,	/* frames received marked decrypted */
	DRV_RX_TLS_RESYNC_REQ,	/* device requests passed to the kernel */
	DRV_RX_TLS_RESYNC,	/* the kernel's answers passed to the device */
	DRV_N
};

static const char * const drv_stat_names[DRV_N] = {
	"drv_tx_tls_packets", "drv_tx_tls_bytes", "drv_tx_tls_ctx", "drv_tx_tls_del",
	"drv_tx_tls_ooo", "drv_tx_tls_resync_records", "drv_tx_tls_resync_bytes",
	"drv_tx_tls_skip_no_sync_data", "drv_tx_tls_drop_no_sync_data",
	"drv_tx_tls_drop_no_ctx", "drv_tx_queue_drops", "drv_rx_tls_ctx", "drv_rx_tls_del",
	"drv_rx_tls_decrypted_packets", "drv_rx_tls_resync_req", "drv_rx_tls_resync",
};

static const char * const dev_stat_names[TLSNIC_KDEV_STATS_N] = {
	TLSNIC_KDEV_STATS_NAMES
};

struct tlsnic_priv {
	struct net_device *dev;
	spinlock_t lock;		/* queue, flows, detached, stats */
	struct sk_buff_head queue;	/* messages for the reader, in order */
	wait_queue_head_t wait;
	struct idr flows;		/* flow_id -> struct tlsnic_flow_ctx (TX and RX) */
	bool detached;			/* the file is closing: queue nothing more */
	u64 drv_stats[DRV_N];
	struct tlsnic_kdev_stats dev_stats;
};

/* One offloaded flow in one direction; tls_driver_ctx() of its socket points here. */
struct tlsnic_flow_ctx {
	u32 id;
	u8 dir;			/* TLSNIC_KDEV_DIR_* */
	u32 expected_seq;	/* TX: the highest sequence number sent so far, plus one */
	/* RX: for the device's resync requests. Valid while the context is in p->flows:
	 * tls_dev_del takes it out (under p->lock) before the kernel frees the socket's TLS
	 * context, and requests are passed on under p->lock.
	 */
	struct sock *sk;
};

/* What the driver notes on a queued message (skb->cb: the skb is ours after xmit). */
struct tlsnic_cb {
	u16 type;
	u32 flow_id;
	void *recs;		/* FRAME: records for a resync (kfree_sensitive) */
	u32 nrec;
	u32 rec_bytes;
};

static struct tlsnic_cb *tlsnic_cb(struct sk_buff *skb)
{
	BUILD_BUG_ON(sizeof(struct tlsnic_cb) > sizeof(skb->cb));
	return (struct tlsnic_cb *)skb->cb;
}

static void tlsnic_stat_add(struct tlsnic_priv *p, int i, u64 v)
{
	unsigned long flags;

	spin_lock_irqsave(&p->lock, flags);
	p->drv_stats[i] += v;
	spin_unlock_irqrestore(&p->lock, flags);
}

/* Frees a queued message; control messages may hold keys, record data plaintext. */
static void tlsnic_msg_free(struct sk_buff *skb)
{
	struct tlsnic_cb *cb = tlsnic_cb(skb);

	if (cb->type != TLSNIC_KDEV_MSG_FRAME)
		memzero_explicit(skb->data, skb->len);
	kfree_sensitive(cb->recs);
	cb->recs = NULL;
	kfree_skb(skb);
}

static void tlsnic_purge(struct tlsnic_priv *p)
{
	struct sk_buff *skb;
	unsigned long flags;

	for (;;) {
		spin_lock_irqsave(&p->lock, flags);
		skb = __skb_dequeue(&p->queue);
		spin_unlock_irqrestore(&p->lock, flags);
		if (!skb)
			break;
		tlsnic_msg_free(skb);
	}
}

/* Queues a message for the reader; frames count against the queue's length. */
static bool tlsnic_enqueue(struct tlsnic_priv *p, struct sk_buff *skb, bool frame)
{
	unsigned long flags;
	bool stop = false;

	spin_lock_irqsave(&p->lock, flags);
	if (p->detached) {
		spin_unlock_irqrestore(&p->lock, flags);
		return false;
	}
	__skb_queue_tail(&p->queue, skb);
	if (frame && skb_queue_len(&p->queue) >= TLSNIC_QLEN)
		stop = true;
	spin_unlock_irqrestore(&p->lock, flags);
	if (stop)
		netif_stop_queue(p->dev);
	wake_up_interruptible_poll(&p->wait, EPOLLIN | EPOLLRDNORM);
	return true;
}

static struct sk_buff *tlsnic_ctl_msg(u16 type, const void *body, size_t len, gfp_t gfp)
{
	struct sk_buff *skb = alloc_skb(len, gfp);

	if (!skb)
		return NULL;
	skb_put_data(skb, body, len);
	memset(skb->cb, 0, sizeof(skb->cb));
	tlsnic_cb(skb)->type = type;
	return skb;
}

/* ------------------------------------------------------------------------------------ */
/* tlsdev_ops                                                                            */

static int tlsnic_tls_dev_add(struct net_device *netdev, struct sock *sk,
			      enum tls_offload_ctx_dir direction,
			      struct tls_crypto_info *crypto_info, u32 start_offload_tcp_sn)
{
	struct tlsnic_priv *p = netdev_priv(netdev);
	struct tlsnic_kdev_add add = {};
	struct tlsnic_flow_ctx *ctx;
	struct sk_buff *skb;
	size_t info_len;
	int id;

	if (crypto_info->version != TLS_1_2_VERSION)
		return -EOPNOTSUPP;
	switch (crypto_info->cipher_type) {
	case TLS_CIPHER_AES_GCM_128:
		info_len = sizeof(struct tls12_crypto_info_aes_gcm_128);
		break;
	case TLS_CIPHER_AES_GCM_256:
		info_len = sizeof(struct tls12_crypto_info_aes_gcm_256);
		break;
	default:
		return -EOPNOTSUPP;
	}
	BUILD_BUG_ON(sizeof(struct tls12_crypto_info_aes_gcm_256) > sizeof(add.info));

	ctx = kzalloc(sizeof(*ctx), GFP_KERNEL);
	if (!ctx)
		return -ENOMEM;
	ctx->expected_seq = start_offload_tcp_sn;
	ctx->dir = direction == TLS_OFFLOAD_CTX_DIR_TX ? TLSNIC_KDEV_DIR_TX : TLSNIC_KDEV_DIR_RX;
	ctx->sk = direction == TLS_OFFLOAD_CTX_DIR_RX ? sk : NULL;

	idr_preload(GFP_KERNEL);
	spin_lock_bh(&p->lock);
	id = p->detached ? -ENODEV : idr_alloc_cyclic(&p->flows, ctx, 1, INT_MAX, GFP_NOWAIT);
	spin_unlock_bh(&p->lock);
	idr_preload_end();
	if (id < 0) {
		kfree(ctx);
		return id;
	}
	ctx->id = id;

	add.flow_id = id;
	add.dir = ctx->dir;
	add.local_port = ntohs(inet_sk(sk)->inet_sport);
	add.remote_port = ntohs(inet_sk(sk)->inet_dport);
#if IS_ENABLED(CONFIG_IPV6)
	if (sk->sk_family == AF_INET6 && !ipv6_addr_v4mapped(&sk->sk_v6_daddr)) {
		add.family = AF_INET6;
		memcpy(add.local, &sk->sk_v6_rcv_saddr, 16);
		memcpy(add.remote, &sk->sk_v6_daddr, 16);
	} else
#endif
	{
		add.family = AF_INET;
		memcpy(add.local, &inet_sk(sk)->inet_saddr, 4);
		memcpy(add.remote, &inet_sk(sk)->inet_daddr, 4);
	}
	add.start_seq = start_offload_tcp_sn;
	add.info_len = info_len;
	memcpy(add.info, crypto_info, info_len);

	skb = tlsnic_ctl_msg(TLSNIC_KDEV_MSG_ADD, &add, sizeof(add), GFP_KERNEL);
	memzero_explicit(&add, sizeof(add));
	if (!skb || !tlsnic_enqueue(p, skb, false)) {
		if (skb)
			tlsnic_msg_free(skb);
		spin_lock_bh(&p->lock);
		idr_remove(&p->flows, id);
		spin_unlock_bh(&p->lock);
		kfree(ctx);
		return skb ? -ENODEV : -ENOMEM;
	}
	*(struct tlsnic_flow_ctx **)tls_driver_ctx(sk, direction) = ctx;
	tlsnic_stat_add(p, ctx->dir == TLSNIC_KDEV_DIR_TX ? DRV_TX_TLS_CTX : DRV_RX_TLS_CTX, 1);
	return 0;
}

/*
 * Called once no offloaded skb of the flow can reach the driver any more (socket destroyed,
 * or after tls_device_down's synchronize_net()). Frames of the flow still queued for the
 * reader go first: DEL is queued behind them.
 */
static void tlsnic_tls_dev_del(struct net_device *netdev, struct tls_context *tls_ctx,
			       enum tls_offload_ctx_dir direction)
{
	struct tlsnic_priv *p = netdev_priv(netdev);
	struct tlsnic_flow_ctx **slot = __tls_driver_ctx(tls_ctx, direction);
	struct tlsnic_flow_ctx *ctx = *slot;
	struct tlsnic_kdev_del del = {};
	struct sk_buff *skb;

	if (!ctx)
		return;
	del.flow_id = ctx->id;
	del.dir = ctx->dir;
	skb = tlsnic_ctl_msg(TLSNIC_KDEV_MSG_DEL, &del, sizeof(del), GFP_KERNEL);
	if (skb && !tlsnic_enqueue(p, skb, false))
		tlsnic_msg_free(skb);
	spin_lock_bh(&p->lock);
	idr_remove(&p->flows, ctx->id);
	spin_unlock_bh(&p->lock);
	*slot = NULL;
	tlsnic_stat_add(p, ctx->dir == TLSNIC_KDEV_DIR_TX ? DRV_TX_TLS_DEL : DRV_RX_TLS_DEL, 1);
	kfree(ctx);
}

static int tlsnic_tls_dev_resync(struct net_device *netdev, struct sock *sk, u32 seq,
				 u8 *rcd_sn, enum tls_offload_ctx_dir direction)
{
	struct tlsnic_priv *p = netdev_priv(netdev);
	struct tlsnic_flow_ctx *ctx;
	struct tlsnic_kdev_resync rs = {};
	struct sk_buff *skb;

	ctx = *(struct tlsnic_flow_ctx **)tls_driver_ctx(sk, direction);
	if (!ctx)
		return -ENOENT;
	rs.flow_id = ctx->id;
	rs.dir = ctx->dir;
	/* RX (device-request mode): the kernel names a record by its header's last byte. */
	rs.seq = ctx->dir == TLSNIC_KDEV_DIR_RX ? seq - (TLS_HEADER_SIZE - 1) : seq;
	rs.rec_seq = be64_to_cpu(get_unaligned((__be64 *)rcd_sn));
	skb = tlsnic_ctl_msg(TLSNIC_KDEV_MSG_RESYNC, &rs, sizeof(rs), GFP_ATOMIC);
	if (!skb)
		return -ENOMEM;
	if (!tlsnic_enqueue(p, skb, false)) {
		tlsnic_msg_free(skb);
		return -ENODEV;
	}
	if (ctx->dir == TLSNIC_KDEV_DIR_TX)
		ctx->expected_seq = seq;
	else
		tlsnic_stat_add(p, DRV_RX_TLS_RESYNC, 1);
	return 0;
}

static const struct tlsdev_ops tlsnic_tlsdev_ops = {
	.tls_dev_add = tlsnic_tls_dev_add,
	.tls_dev_del = tlsnic_tls_dev_del,
	.tls_dev_resync = tlsnic_tls_dev_resync,
};

/* ------------------------------------------------------------------------------------ */
/* TX                                                                                    */

/* Copies len bytes of the record, from its start, into dst. */
static void tlsnic_copy_record(const struct tls_record_info *rec, u8 *dst, u32 len)
{
	int i;

	for (i = 0; i < rec->num_frags && len; i++) {
		const skb_frag_t *frag = &rec->frags[i];
		u32 n = min_t(u32, len, skb_frag_size(frag));

		/* Record pages come from page_frag (no highmem on the 64-bit kernels this
		 * driver is built for); a frag may span pages of one compound page.
		 */
		memcpy(dst, skb_frag_address(frag), n);
		dst += n;
		len -= n;
	}
}

enum { TLSNIC_SYNC_OK, TLSNIC_SYNC_SKIP, TLSNIC_SYNC_FAIL };

/*
 * The records an out-of-order segment [seq, seq + datalen) touches, from each record's start
 * up to the segment's end (at least header and explicit nonce), into cb->recs.
 */
static int tlsnic_tx_ooo(struct tlsnic_priv *p, struct tls_context *tls_ctx,
			 struct tlsnic_cb *cb, u32 seq, u32 datalen)
{
	struct tls_offload_context_tx *otx = tls_offload_ctx_tx(tls_ctx);
	u32 hn = tls_ctx->prot_info.prepend_size;
	u32 end = seq + datalen;
	struct tls_record_info *rec, *r;
	u32 nrec = 0, bytes = 0, off = 0;
	u64 copied = 0;
	unsigned long flags;
	u64 rcd_sn;
	u8 *buf;
	int ret = TLSNIC_SYNC_FAIL;

	spin_lock_irqsave(&otx->lock, flags);
	rec = tls_get_record(otx, seq, &rcd_sn);
	if (!rec)
		goto out;
	if (tls_record_is_start_marker(rec)) {
		/* Bytes from before the offload started pass as they are; a segment that
		 * straddles the start cannot happen (the kernel ends an skb there).
		 */
		if (before(end - 1, tls_record_start_seq(rec)))
			ret = TLSNIC_SYNC_SKIP;
		goto out;
	}
	if (before(end - 1, tls_record_start_seq(rec)))
		goto out;

	r = rec;
	list_for_each_entry_from(r, &otx->records_list, list) {
		u32 start = tls_record_start_seq(r);
		u32 want;

		if (!before(start, end) || nrec == TLSNIC_MAX_RECS)
			break;
		want = min_t(u32, r->len, max_t(u32, hn, end - start));
		if (bytes + sizeof(struct tlsnic_kdev_rec) + ALIGN(want, 8) > TLSNIC_MAX_REC_BYTES)
			break;
		bytes += sizeof(struct tlsnic_kdev_rec) + ALIGN(want, 8);
		nrec++;
	}
	buf = kzalloc(bytes, GFP_ATOMIC);
	if (!buf)
		goto out;
	r = rec;
	list_for_each_entry_from(r, &otx->records_list, list) {
		struct tlsnic_kdev_rec *kr = (struct tlsnic_kdev_rec *)(buf + off);
		u32 start = tls_record_start_seq(r);
		u32 want;

		if (off == bytes)
			break;
		want = min_t(u32, r->len, max_t(u32, hn, end - start));
		kr->start_seq = start;
		kr->len = r->len;
		kr->rec_seq = rcd_sn++;
		kr->data_len = want;
		tlsnic_copy_record(r, (u8 *)(kr + 1), want);
		off += sizeof(*kr) + ALIGN(want, 8);
		copied += want;
	}
	cb->recs = buf;
	cb->nrec = nrec;
	cb->rec_bytes = bytes;
	ret = TLSNIC_SYNC_OK;
out:
	spin_unlock_irqrestore(&otx->lock, flags);
	if (ret == TLSNIC_SYNC_OK) {
		tlsnic_stat_add(p, DRV_TX_TLS_RESYNC_RECORDS, nrec);
		tlsnic_stat_add(p, DRV_TX_TLS_RESYNC_BYTES, copied);
	}
	return ret;
}

/* An skb of an offloaded kTLS socket: note its flow, and its records when out of order. */
static bool tlsnic_tx_offloaded(struct tlsnic_priv *p, struct sk_buff *skb,
				struct tlsnic_cb *cb)
{
	struct tls_context *tls_ctx = tls_get_ctx(skb->sk);
	struct tlsnic_flow_ctx *ctx = *(struct tlsnic_flow_ctx **)
		__tls_driver_ctx(tls_ctx, TLS_OFFLOAD_CTX_DIR_TX);
	u32 seq, datalen;
	int ret;

	if (!ctx || !skb_transport_header_was_set(skb)) {
		tlsnic_stat_add(p, DRV_TX_TLS_DROP_NO_CTX, 1);
		return false;
	}
	datalen = skb->len - skb_tcp_all_headers(skb);
	if (!datalen)
		return true;	/* no payload: the device only reads its ACK */
	seq = ntohl(tcp_hdr(skb)->seq);
	cb->flow_id = ctx->id;
	tlsnic_stat_add(p, DRV_TX_TLS_PACKETS, 1);
	tlsnic_stat_add(p, DRV_TX_TLS_BYTES, datalen);
	if (likely(seq == ctx->expected_seq)) {
		ctx->expected_seq = seq + datalen;
		return true;
	}
	tlsnic_stat_add(p, DRV_TX_TLS_OOO, 1);
	ret = tlsnic_tx_ooo(p, tls_ctx, cb, seq, datalen);
	if (ret == TLSNIC_SYNC_SKIP) {
		cb->flow_id = 0;
		tlsnic_stat_add(p, DRV_TX_TLS_SKIP_NO_SYNC_DATA, 1);
		return true;
	}
	if (ret != TLSNIC_SYNC_OK) {
		tlsnic_stat_add(p, DRV_TX_TLS_DROP_NO_SYNC_DATA, 1);
		return false;
	}
	if (after(seq + datalen, ctx->expected_seq))
		ctx->expected_seq = seq + datalen;
	return true;
}

static netdev_tx_t tlsnic_xmit(struct sk_buff *skb, struct net_device *dev)
{
	struct tlsnic_priv *p = netdev_priv(dev);
	struct tlsnic_cb *cb = tlsnic_cb(skb);
	unsigned int len = skb->len;

	memset(cb, 0, sizeof(*cb));
	cb->type = TLSNIC_KDEV_MSG_FRAME;
	if (tls_is_skb_tx_device_offloaded(skb) && !tlsnic_tx_offloaded(p, skb, cb))
		goto drop;
	/* Held until the reader takes it, perhaps long: like TUN, let the socket go. */
	skb_orphan(skb);
	nf_reset_ct(skb);
	if (!tlsnic_enqueue(p, skb, true)) {
		tlsnic_stat_add(p, DRV_TX_QUEUE_DROPS, 1);
		goto drop;
	}
	dev_sw_netstats_tx_add(dev, 1, len);
	return NETDEV_TX_OK;
drop:
	DEV_STATS_INC(dev, tx_dropped);
	tlsnic_msg_free(skb);
	return NETDEV_TX_OK;
}

static const struct net_device_ops tlsnic_netdev_ops = {
	.ndo_start_xmit = tlsnic_xmit,
	.ndo_get_stats64 = dev_get_tstats64,
};

/* ------------------------------------------------------------------------------------ */
/* ethtool                                                                               */

static void tlsnic_get_drvinfo(struct net_device *dev, struct ethtool_drvinfo *info)
{
	strscpy(info->driver, "tlsnic", sizeof(info->driver));
	strscpy(info->bus_info, "tlsnic-kdevd", sizeof(info->bus_info));
}

static int tlsnic_get_sset_count(struct net_device *dev, int sset)
{
	return sset == ETH_SS_STATS ? DRV_N + TLSNIC_KDEV_STATS_N : -EOPNOTSUPP;
}

static void tlsnic_get_strings(struct net_device *dev, u32 sset, u8 *data)
{
	int i;

	if (sset != ETH_SS_STATS)
		return;
	for (i = 0; i < DRV_N; i++)
		ethtool_puts(&data, drv_stat_names[i]);
	for (i = 0; i < TLSNIC_KDEV_STATS_N; i++)
		ethtool_puts(&data, dev_stat_names[i]);
}

static void tlsnic_get_ethtool_stats(struct net_device *dev, struct ethtool_stats *stats,
				     u64 *data)
{
	struct tlsnic_priv *p = netdev_priv(dev);
	unsigned long flags;

	spin_lock_irqsave(&p->lock, flags);
	memcpy(data, p->drv_stats, sizeof(p->drv_stats));
	memcpy(data + DRV_N, p->dev_stats.v, sizeof(p->dev_stats.v));
	spin_unlock_irqrestore(&p->lock, flags);
}

static const struct ethtool_ops tlsnic_ethtool_ops = {
	.get_drvinfo = tlsnic_get_drvinfo,
	.get_link = ethtool_op_get_link,
	.get_sset_count = tlsnic_get_sset_count,
	.get_strings = tlsnic_get_strings,
	.get_ethtool_stats = tlsnic_get_ethtool_stats,
};

/* After unregister: every context was deleted on NETDEV_DOWN, nothing is queued. */
static void tlsnic_priv_destructor(struct net_device *dev)
{
	struct tlsnic_priv *p = netdev_priv(dev);

	tlsnic_purge(p);
	WARN_ON(!idr_is_empty(&p->flows));
	idr_destroy(&p->flows);
}

static void tlsnic_setup(struct net_device *dev)
{
	dev->netdev_ops = &tlsnic_netdev_ops;
	dev->ethtool_ops = &tlsnic_ethtool_ops;
	dev->tlsdev_ops = &tlsnic_tlsdev_ops;
	dev->needs_free_netdev = true;
	dev->priv_destructor = tlsnic_priv_destructor;
	dev->pcpu_stat_type = NETDEV_PCPU_STAT_TSTATS;
	dev->type = ARPHRD_NONE;
	dev->hard_header_len = 0;
	dev->addr_len = 0;
	dev->mtu = ETH_DATA_LEN;
	dev->min_mtu = 68;
	dev->max_mtu = 65535;
	dev->flags = IFF_POINTOPOINT | IFF_NOARP | IFF_MULTICAST;
	dev->tx_queue_len = 1000;
	/* TLS RX offload needs RXCSUM (netdev_fix_features); received frames keep their
	 * virtio header's checksum state, so the stack still checks what it must.
	 */
	dev->hw_features = NETIF_F_SG | NETIF_F_HW_CSUM | NETIF_F_HIGHDMA | NETIF_F_TSO |
			   NETIF_F_TSO6 | NETIF_F_RXCSUM | NETIF_F_HW_TLS_TX | NETIF_F_HW_TLS_RX;
	dev->features = dev->hw_features;
}

/* ------------------------------------------------------------------------------------ */
/* The character device                                                                  */

struct tlsnic_file {
	struct mutex lock;	/* attach against release */
	struct net_device *dev;	/* NULL until attached */
};

static int tlsnic_open(struct inode *inode, struct file *file)
{
	struct tlsnic_file *tf = kzalloc(sizeof(*tf), GFP_KERNEL);

	if (!tf)
		return -ENOMEM;
	mutex_init(&tf->lock);
	file->private_data = tf;
	return 0;
}

static int tlsnic_release(struct inode *inode, struct file *file)
{
	struct tlsnic_file *tf = file->private_data;
	struct net_device *dev = tf->dev;

	if (dev) {
		struct tlsnic_priv *p = netdev_priv(dev);

		spin_lock_bh(&p->lock);
		p->detached = true;
		spin_unlock_bh(&p->lock);
		tlsnic_purge(p);
		/* NETDEV_DOWN: tls_device_down moves the offloaded sockets to the software
		 * fallback, then deletes the contexts here (nothing is queued any more).
		 */
		unregister_netdev(dev);
	}
	kfree(tf);
	return 0;
}

static long tlsnic_attach(struct tlsnic_file *tf, void __user *argp)
{
	struct tlsnic_kdev_attach at;
	struct net_device *dev;
	struct tlsnic_priv *p;
	int err;

	if (copy_from_user(&at, argp, sizeof(at)))
		return -EFAULT;
	if (at.flags)
		return -EINVAL;
	at.name[sizeof(at.name) - 1] = '\0';
	if (!at.name[0])
		strscpy(at.name, "tlsnic%d", sizeof(at.name));
	if (!ns_capable(current->nsproxy->net_ns->user_ns, CAP_NET_ADMIN))
		return -EPERM;

	mutex_lock(&tf->lock);
	if (tf->dev) {
		err = -EBUSY;
		goto out;
	}
	dev = alloc_netdev(sizeof(*p), at.name, NET_NAME_USER, tlsnic_setup);
	if (!dev) {
		err = -ENOMEM;
		goto out;
	}
	dev_net_set(dev, current->nsproxy->net_ns);
	p = netdev_priv(dev);
	p->dev = dev;
	spin_lock_init(&p->lock);
	skb_queue_head_init(&p->queue);
	init_waitqueue_head(&p->wait);
	idr_init(&p->flows);
	err = register_netdev(dev);
	if (err) {
		free_netdev(dev);
		goto out;
	}
	tf->dev = dev;
	strscpy(at.name, dev->name, sizeof(at.name));
	at.ifindex = dev->ifindex;
	err = copy_to_user(argp, &at, sizeof(at)) ? -EFAULT : 0;
out:
	mutex_unlock(&tf->lock);
	return err;
}

static long tlsnic_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	if (cmd == TLSNIC_KDEV_ATTACH)
		return tlsnic_attach(file->private_data, (void __user *)arg);
	return -ENOTTY;
}

static struct tlsnic_priv *tlsnic_file_priv(struct file *file)
{
	struct tlsnic_file *tf = file->private_data;

	return tf->dev ? netdev_priv(tf->dev) : NULL;
}

static ssize_t tlsnic_put_msg(struct sk_buff *skb, struct iov_iter *to)
{
	struct tlsnic_cb *cb = tlsnic_cb(skb);
	struct tlsnic_kdev_hdr h = { .type = cb->type };
	struct tlsnic_kdev_frame fr = {};
	struct virtio_net_hdr vh;
	size_t len = sizeof(h);

	if (cb->type != TLSNIC_KDEV_MSG_FRAME) {
		len += skb->len;
		if (iov_iter_count(to) < len)
			return -EMSGSIZE;
		h.len = len;
		if (copy_to_iter(&h, sizeof(h), to) != sizeof(h) ||
		    copy_to_iter(skb->data, skb->len, to) != skb->len)
			return -EFAULT;
		return len;
	}
	if (virtio_net_hdr_from_skb(skb, &vh, true, false, 0))
		return -EINVAL;	/* a GSO type the header cannot carry: dropped */
	fr.flow_id = cb->flow_id;
	fr.nrec = cb->nrec;
	fr.vnet_len = sizeof(vh);
	fr.rec_bytes = cb->rec_bytes;
	fr.frame_len = skb->len;
	len += sizeof(fr) + cb->rec_bytes + sizeof(vh) + skb->len;
	if (iov_iter_count(to) < len)
		return -EMSGSIZE;
	h.len = len;
	if (copy_to_iter(&h, sizeof(h), to) != sizeof(h) ||
	    copy_to_iter(&fr, sizeof(fr), to) != sizeof(fr) ||
	    copy_to_iter(cb->recs, cb->rec_bytes, to) != cb->rec_bytes ||
	    copy_to_iter(&vh, sizeof(vh), to) != sizeof(vh) ||
	    skb_copy_datagram_iter(skb, 0, to, skb->len))
		return -EFAULT;
	return len;
}

static ssize_t tlsnic_read_iter(struct kiocb *iocb, struct iov_iter *to)
{
	struct tlsnic_priv *p = tlsnic_file_priv(iocb->ki_filp);
	struct sk_buff *skb;
	bool wake;
	ssize_t ret;

	if (!p)
		return -EBADFD;
	for (;;) {
		spin_lock_bh(&p->lock);
		skb = __skb_dequeue(&p->queue);
		wake = skb_queue_len(&p->queue) < TLSNIC_QLEN / 2;
		spin_unlock_bh(&p->lock);
		if (skb)
			break;
		if (iocb->ki_filp->f_flags & O_NONBLOCK || iocb->ki_flags & IOCB_NOWAIT)
			return -EAGAIN;
		ret = wait_event_interruptible(p->wait, !skb_queue_empty_lockless(&p->queue));
		if (ret)
			return ret;
	}
	if (wake && netif_queue_stopped(p->dev))
		netif_wake_queue(p->dev);
	ret = tlsnic_put_msg(skb, to);
	if (ret == -EMSGSIZE) {	/* the reader's buffer is too small: keep it */
		spin_lock_bh(&p->lock);
		__skb_queue_head(&p->queue, skb);
		spin_unlock_bh(&p->lock);
		return ret;
	}
	tlsnic_msg_free(skb);
	return ret;
}

static ssize_t tlsnic_write_frame(struct tlsnic_priv *p, struct iov_iter *from, size_t len,
				  u16 flags)
{
	struct net_device *dev = p->dev;
	struct tlsnic_kdev_frame fr;
	struct virtio_net_hdr vh;
	struct sk_buff *skb;
	u8 version;

	if (len < sizeof(fr) || !copy_from_iter_full(&fr, sizeof(fr), from))
		return -EINVAL;
	if ((flags & ~TLSNIC_KDEV_F_DECRYPTED) || fr.flow_id || fr.nrec || fr.rec_bytes ||
	    fr.vnet_len != sizeof(vh) ||
	    len != sizeof(fr) + sizeof(vh) + fr.frame_len || fr.frame_len < 1 ||
	    fr.frame_len > 65535 + sizeof(struct ipv6hdr))
		return -EINVAL;
	if (!copy_from_iter_full(&vh, sizeof(vh), from))
		return -EFAULT;
	skb = netdev_alloc_skb(dev, fr.frame_len);
	if (!skb)
		return -ENOMEM;
	if (!copy_from_iter_full(skb_put(skb, fr.frame_len), fr.frame_len, from)) {
		kfree_skb(skb);
		return -EFAULT;
	}
	version = skb->data[0] >> 4;
	if (version == 4)
		skb->protocol = htons(ETH_P_IP);
	else if (version == 6)
		skb->protocol = htons(ETH_P_IPV6);
	else
		goto drop;
	skb_reset_mac_header(skb);
	skb_reset_network_header(skb);
	if (virtio_net_hdr_to_skb(skb, &vh, true))
		goto drop;
	skb->dev = dev;
	skb->pkt_type = PACKET_HOST;
	skb_probe_transport_header(skb);
	if (flags & TLSNIC_KDEV_F_DECRYPTED) {
		/* Set before the stack sees it: TCP keeps decrypted and encrypted skbs apart
		 * (skb_cmp_decrypted), and kTLS trusts a record whose skbs are all marked.
		 */
		skb->decrypted = 1;
		tlsnic_stat_add(p, DRV_RX_TLS_DECRYPTED_PACKETS, 1);
	}
	dev_sw_netstats_rx_add(dev, fr.frame_len);
	netif_rx(skb);
	return 0;
drop:
	DEV_STATS_INC(dev, rx_dropped);
	kfree_skb(skb);
	return -EINVAL;
}

/*
 * The device asks where an RX flow's records are: passed to the kernel, which answers
 * through tls_dev_resync. -ENOENT if the flow is gone (a race with its deletion, harmless).
 */
static ssize_t tlsnic_write_resync_req(struct tlsnic_priv *p, struct iov_iter *from,
				       size_t len)
{
	struct tlsnic_kdev_resync_req rq;
	struct tlsnic_flow_ctx *ctx;
	ssize_t ret = -ENOENT;

	if (len != sizeof(rq) || !copy_from_iter_full(&rq, sizeof(rq), from))
		return -EINVAL;
	spin_lock_bh(&p->lock);
	ctx = idr_find(&p->flows, rq.flow_id);
	if (ctx && ctx->dir == TLSNIC_KDEV_DIR_RX) {
		/* The kernel matches a request against its record header's last byte. */
		tls_offload_rx_resync_request(ctx->sk, htonl(rq.seq + TLS_HEADER_SIZE - 1));
		p->drv_stats[DRV_RX_TLS_RESYNC_REQ]++;
		ret = 0;
	}
	spin_unlock_bh(&p->lock);
	return ret;
}

static ssize_t tlsnic_write_iter(struct kiocb *iocb, struct iov_iter *from)
{
	struct tlsnic_priv *p = tlsnic_file_priv(iocb->ki_filp);
	size_t total = iov_iter_count(from);
	struct tlsnic_kdev_hdr h;
	ssize_t ret;

	if (!p)
		return -EBADFD;
	if (total < sizeof(h) || !copy_from_iter_full(&h, sizeof(h), from) || h.len != total)
		return -EINVAL;
	switch (h.type) {
	case TLSNIC_KDEV_MSG_FRAME:
		ret = tlsnic_write_frame(p, from, total - sizeof(h), h.flags);
		break;
	case TLSNIC_KDEV_MSG_RESYNC_REQ:
		ret = tlsnic_write_resync_req(p, from, total - sizeof(h));
		break;
	case TLSNIC_KDEV_MSG_STATS: {
		struct tlsnic_kdev_stats st;

		if (total - sizeof(h) != sizeof(st) || !copy_from_iter_full(&st, sizeof(st), from))
			return -EINVAL;
		spin_lock_bh(&p->lock);
		p->dev_stats = st;
		spin_unlock_bh(&p->lock);
		ret = 0;
		break;
	}
	default:
		ret = -EINVAL;
	}
	return ret < 0 ? ret : total;
}

static __poll_t tlsnic_poll(struct file *file, poll_table *wait)
{
	struct tlsnic_priv *p = tlsnic_file_priv(file);
	__poll_t mask = EPOLLOUT | EPOLLWRNORM;

	if (!p)
		return EPOLLERR;
	poll_wait(file, &p->wait, wait);
	if (!skb_queue_empty_lockless(&p->queue))
		mask |= EPOLLIN | EPOLLRDNORM;
	return mask;
}

static const struct file_operations tlsnic_fops = {
	.owner = THIS_MODULE,
	.open = tlsnic_open,
	.release = tlsnic_release,
	.read_iter = tlsnic_read_iter,
	.write_iter = tlsnic_write_iter,
	.poll = tlsnic_poll,
	.unlocked_ioctl = tlsnic_ioctl,
};

static struct miscdevice tlsnic_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "tlsnic",
	.fops = &tlsnic_fops,
	.mode = 0600,
};

static int __init tlsnic_init(void)
{
	return misc_register(&tlsnic_misc);
}

static void __exit tlsnic_exit(void)
{
	misc_deregister(&tlsnic_misc);
}

module_init(tlsnic_init);
module_exit(tlsnic_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("tlsnic");
MODULE_DESCRIPTION("tlsnic: a TLS offload NIC whose hardware is tlsnic-kdevd");
