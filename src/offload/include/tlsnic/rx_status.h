/*
 * RX status: what a TLS offload device did to each byte range of a received TCP stream.
 * Written only by the device, read by the host. Part of the offload API (src/offload):
 * the device (src/device) writes it, the host (src/host) reads it, both compile this.
 *
 * It is the user-space analog of the kernel's per-skb `decrypted` bit, which a host
 * behind a socket never sees: the host reads a byte stream, so the device describes the
 * stream instead of the packets.
 *
 * The model. The device decrypts record bodies in place only on its fast path: a record it
 * entered at its first byte, in order, with a known record sequence number. For each such
 * record it publishes one entry: where the record starts (TCP sequence number), its
 * length as the device parsed it, the keystream it used (record sequence number, explicit
 * nonce, key epoch), how many body bytes from the body's start it decrypted (dec_len: the
 * whole body, or less when a gap ended the fast path inside the record), and the outcome
 * of its tag check. A byte that no entry's decrypted span
 *     [tcp_seq + hn, tcp_seq + hn + dec_len)
 * covers is untouched: as it was on the wire. Decrypted spans never overlap (a byte is
 * decrypted only where the device first forwards it), and entries are published in
 * stream order.
 *
 * Decided once. A byte's treatment is fixed when the device first forwards it. Every later
 * copy (retransmission, duplicate) gets the same: the device applies the same keystream
 * at the same positions again, or leaves the bytes alone. So whichever copy TCP keeps, the
 * entries describe the bytes the host reads. The device cannot prove that a later copy
 * carries the bytes it authenticated, so any later copy of a byte of a record whose tag it
 * checked turns the verdict into TLSNIC_RXS_RECHECK: the host checks that record itself.
 *
 * The host, for each record [a, a + len) it reads (tlsnic_rxs_record): the record is
 * device-verified iff exactly one entry touches it, that entry starts at a with length
 * len, decrypted the whole body, verdict OK, with the host's record sequence number,
 * explicit nonce and key epoch. Its plaintext is then used as it is (no host crypto).
 * Otherwise the host XORs the device's keystream back over every decrypted span inside
 * the record, which makes the record exactly what was on the wire, and opens it in
 * software (the kernel's tls_device_reencrypt). A device mistake (a wrong resync, a false
 * header) costs host CPU, never unauthenticated plaintext.
 *
 * Lifetime. The host publishes how far it has read (consumed_seq); the device releases
 * the entries of records that end at or before it (TCP discards any later copy of bytes
 * the host has read, so their treatment no longer matters) and reuses their slots.
 *
 * Resync requests (the kernel's device-request mode). A device that lost the record
 * boundaries (a gap over a header) and found a candidate header it cannot place posts
 * its TCP sequence number here (req_seq, then req_gen bumped). The host answers through
 * the device's resync op once its own reading reaches that point: the record sequence
 * number of the record that starts there, or TLSNIC_RESYNC_REJECT if none does.
 *
 * Memory. Both ends build a view (struct tlsnic_rxs) over their mapping of one region:
 * in process, host memory the device writes (tlsnic_rxs_new); through tlsnicd, the RX
 * region of the host's shared-memory store (shm_layout.h), which the daemon maps writable
 * and the host read-only. The host's own words (consumed_seq, epoch) live apart
 * (struct tlsnic_rxs_host) in memory the host may write. Native byte order (one machine).
 * The device reads the host's words as untrusted input: a wrong value only hurts that
 * host's own flow.
 *
 * Errors: negative errno.
 */
#ifndef TLSNIC_RX_STATUS_H
#define TLSNIC_RX_STATUS_H

#include <stddef.h>
#include <stdint.h>

#include "tlsnic/record.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TLSNIC_RXS_MAGIC 0x52585354u /* "RXST" */
#define TLSNIC_RXS_VERSION 1u
#define TLSNIC_RXS_HDR_LEN 64u
#define TLSNIC_RXS_ENTRY_LEN 40u
#define TLSNIC_RXS_MAX_ENTRIES (1u << 20)
#define TLSNIC_RXS_DEFAULT_ENTRIES 4096u /* a window of 6 MB (Linux's largest default
                                            receive buffer) in 1457-byte records */

/* Verdicts (state word, bits 24..27). */
enum tlsnic_rxs_verdict {
    TLSNIC_RXS_PENDING = 0, /* the tag was not checked (record not finished in order) */
    TLSNIC_RXS_OK = 1,      /* whole body decrypted in order, tag verified */
    TLSNIC_RXS_BAD = 2,     /* whole body decrypted in order, tag check failed */
    TLSNIC_RXS_RECHECK = 3, /* was OK or BAD; a later copy of its bytes was forwarded */
};

#define TLSNIC_RXS_DEC_MASK 0x000fffffu
#define TLSNIC_RXS_VERDICT_SHIFT 24
#define TLSNIC_RXS_STATE(dec_len, verdict)                                                    \
    (((uint32_t)(dec_len) & TLSNIC_RXS_DEC_MASK) | ((uint32_t)(verdict) << TLSNIC_RXS_VERDICT_SHIFT))
#define TLSNIC_RXS_STATE_DEC(state) ((state) & TLSNIC_RXS_DEC_MASK)
#define TLSNIC_RXS_STATE_VERDICT(state) (((state) >> TLSNIC_RXS_VERDICT_SHIFT) & 0xfu)

/* The region's header: written by the device (after the host formatted it). */
struct tlsnic_rxs_hdr {
    uint32_t magic;
    uint32_t version;
    uint32_t n_entries; /* a power of two */
    uint32_t dev_epoch; /* device: epoch of the key it decrypts with now */
    uint64_t head;      /* device: entries with id < head are published (release) */
    uint32_t req_seq;   /* device: TCP sequence number of a resync candidate */
    uint32_t req_gen;   /* device: bumped (release) after req_seq is written; 0 = none */
    uint32_t hi_seq;    /* device: the end of the highest byte it has forwarded ... */
    uint32_t hi_valid;  /* ... once it forwarded any (a device taking over after a
                           restart places everything before it as already decided) */
    uint32_t reserved[6];
};

/* One record the device decrypted (all of it, or a prefix of its body). */
struct tlsnic_rxs_entry {
    uint32_t tcp_seq;           /* first header byte */
    uint32_t len;               /* whole record, header and tag included, as parsed */
    uint64_t rec_seq;           /* record sequence number the device used */
    uint8_t explicit_nonce[8];  /* TLS 1.2 AES-GCM: the nonce the device used; else 0 */
    uint32_t state;             /* TLSNIC_RXS_STATE(dec_len, verdict); updated atomically */
    uint16_t epoch;             /* key generation (0 at add, +1 per rekey) */
    uint8_t hn;                 /* header + explicit nonce bytes (5 or 13) */
    uint8_t flags;              /* TLSNIC_RXS_F_* */
    uint32_t id;                /* low 32 bits of the entry id (a reused slot shows) */
    uint32_t gap_seq;           /* TLSNIC_RXS_F_AFTER_GAP: where it saw data again */
};

/* The first record the device decrypted after a gap (a loss, reordering): gap_seq is the
 * first byte it saw after the gap. The host, which knows every record boundary, counts
 * the records from the one holding gap_seq to this one: the resync distance (1: the
 * very next record, the best a device that cannot hold packets can do). */
#define TLSNIC_RXS_F_AFTER_GAP 0x1u

/* The host's words: written by the host only. */
struct tlsnic_rxs_host {
    uint32_t consumed_seq;   /* the host has read the stream up to (not including) here */
    uint32_t consumed_valid; /* 1 once consumed_seq was written */
    uint32_t epoch;          /* the host's key epoch (written before add / rekey) */
    uint32_t received_len;   /* written before add: bytes past the add's start sequence
                                number the host's TCP had already received (their first
                                copies passed the device before it had the flow) */
};

_Static_assert(sizeof(struct tlsnic_rxs_hdr) == TLSNIC_RXS_HDR_LEN, "RX status header");
_Static_assert(sizeof(struct tlsnic_rxs_entry) == TLSNIC_RXS_ENTRY_LEN, "RX status entry");

/* Bytes of a region with n entries (header + entries). */
static inline size_t tlsnic_rxs_region_len(uint32_t n_entries)
{
    return TLSNIC_RXS_HDR_LEN + (size_t)n_entries * TLSNIC_RXS_ENTRY_LEN;
}

/* A view over one RX status: what both ends hold. */
struct tlsnic_rxs {
    struct tlsnic_rxs_hdr *hdr;
    struct tlsnic_rxs_entry *ent;
    struct tlsnic_rxs_host *host;
    uint32_t n; /* entries (power of two) */
};

/* ------------------------------------------------------------------------------------------ */
/* Setting up (host side).                                                                    */

/*
 * Writes an empty status with n_entries entries (a power of two, 16 .. MAX) into region
 * (tlsnic_rxs_region_len bytes). -EINVAL otherwise.
 */
int tlsnic_rxs_format(void *region, uint32_t n_entries);

/*
 * Builds a view over region (len bytes) and the host's words (which may be anywhere).
 * Checks magic, version, n_entries and that the entries fit: 0 or -EBADMSG.
 */
int tlsnic_rxs_view(struct tlsnic_rxs *v, void *region, size_t len, struct tlsnic_rxs_host *host);

/* Entries for a connection whose receive buffer can grow to rcvbuf bytes: one per 1 KB
 * (a record per segment, the bulk case), a power of two, at least the default. A device
 * with no free entry leaves records untouched (rx_tls_no_room), so a status smaller than
 * the receive window costs host CPU whenever the program falls behind. */
uint32_t tlsnic_rxs_entries_for(size_t rcvbuf);

/* In-process: one allocation with region and host words, formatted; freed (wiped) with
 * tlsnic_rxs_free. n_entries 0 = TLSNIC_RXS_DEFAULT_ENTRIES. */
int tlsnic_rxs_new(struct tlsnic_rxs **out, uint32_t n_entries);
void tlsnic_rxs_free(struct tlsnic_rxs *s);

/* ------------------------------------------------------------------------------------------ */
/* The device's side.                                                                         */

/* Writes entry id (slot id % n) and then publishes it: head = id + 1 (release). */
void tlsnic_rxs_put(struct tlsnic_rxs *s, uint64_t id, const struct tlsnic_rxs_entry *e);

/* Updates the state word of entry id (release). */
void tlsnic_rxs_set_state(struct tlsnic_rxs *s, uint64_t id, uint32_t state);

/* Posts a resync candidate (req_seq, then req_gen + 1). */
void tlsnic_rxs_request(struct tlsnic_rxs *s, uint32_t tcp_seq);

/* The device's key epoch, for a person (and a device that adopts the status). */
void tlsnic_rxs_set_dev_epoch(struct tlsnic_rxs *s, uint32_t epoch);

/* The end of what the device has forwarded (hi_seq), for a device that takes over. */
void tlsnic_rxs_set_hi(struct tlsnic_rxs *s, uint32_t seq);
/* 1 and *seq if a device has published hi_seq, else 0. */
int tlsnic_rxs_hi(const struct tlsnic_rxs *s, uint32_t *seq);

/* Copies entry id out (its slot may have been reused: -ESTALE). For a device that takes
 * over an RX status after a restart: what it reads there is input, to be checked. */
int tlsnic_rxs_get(const struct tlsnic_rxs *s, uint64_t id, struct tlsnic_rxs_entry *out);

/* The host's consumed_seq: 1 and *seq if the host has written it, else 0. */
int tlsnic_rxs_consumed(const struct tlsnic_rxs *s, uint32_t *seq);

/* The host's key epoch (0 until written). */
uint32_t tlsnic_rxs_host_epoch(const struct tlsnic_rxs *s);

/* The host's received_len (0 until written): untrusted, like every host word. */
uint32_t tlsnic_rxs_host_received(const struct tlsnic_rxs *s);

/* ------------------------------------------------------------------------------------------ */
/* The host's side.                                                                           */

/* The keys a host can restore with: the current epoch's and the one before. */
struct tlsnic_rxs_keys {
    const tlsnic_rec_key *cur;
    const tlsnic_rec_key *prev; /* NULL if none */
    uint32_t epoch;             /* of cur */
};

/* A reader: a cursor over the entries, in stream order, and a keystream context. */
struct tlsnic_rxs_reader {
    struct tlsnic_rxs *s;
    uint64_t next;         /* first entry id that may concern bytes not yet read */
    uint32_t req_gen_seen; /* last resync request seen */
    struct tlsnic_rec_keystream ks;
};

int tlsnic_rxs_reader_init(struct tlsnic_rxs_reader *r, struct tlsnic_rxs *s);
void tlsnic_rxs_reader_cleanup(struct tlsnic_rxs_reader *r);

/*
 * Makes buf (the received bytes [seq, seq + len) of the stream) what was on the wire:
 * XORs the device's keystream back over every decrypted span inside the range. Returns
 * the number of bytes restored (0: the device left all of them alone), or -EBADMSG if a
 * span was decrypted under a key the host no longer has (epoch neither cur's nor prev's)
 * or an entry is inconsistent: the bytes cannot be trusted either way.
 */
int tlsnic_rxs_restore(struct tlsnic_rxs_reader *r, const struct tlsnic_rxs_keys *k,
                       uint32_t seq, uint8_t *buf, size_t len);

/* How the device treated one record (tlsnic_rxs_record). */
struct tlsnic_rxs_info {
    uint32_t restored;  /* bytes XORed back (decrypted by the device, not verified) */
    uint8_t device_bad; /* the device decrypted the whole body and its tag check failed */
    uint8_t entries;    /* entries that touched the record */
    uint8_t after_gap;  /* an entry starts the record: the first after a gap at gap_seq */
    uint32_t gap_seq;
};

/*
 * The host holds the whole record [seq, seq + len) in rec (header included), with bytes
 * [seq, seq + from) already restored (the header, read first). rec_seq is the record
 * sequence number the host expects there and k->epoch its key epoch. Returns 1 if the
 * device decrypted and verified exactly this record (rec holds its plaintext body: use it
 * as it is), 0 if not (rec is then exactly what was on the wire: open it in software), or
 * -EBADMSG (tlsnic_rxs_restore). info (may be NULL) says what was done.
 */
int tlsnic_rxs_record(struct tlsnic_rxs_reader *r, const struct tlsnic_rxs_keys *k,
                      uint32_t seq, uint8_t *rec, size_t len, size_t from, uint64_t rec_seq,
                      struct tlsnic_rxs_info *info);

/*
 * tlsnic_rxs_record's judgement for a record whose bytes the host placed apart (its body
 * in the program's buffer): 1 if the device decrypted and verified exactly the record
 * [seq, seq + len) with record sequence number rec_seq (explicit_nonce: the record's
 * TLS 1.2 AES-GCM explicit nonce as received, else NULL), 0 if not. Touches no bytes:
 * the caller must not use a record judged 0 (its bytes are not restored). As for
 * tlsnic_rxs_record, the judgement counts only if made after the bytes were read.
 */
int tlsnic_rxs_verified(struct tlsnic_rxs_reader *r, const struct tlsnic_rxs_keys *k,
                        uint32_t seq, size_t len, const uint8_t *explicit_nonce,
                        uint64_t rec_seq, struct tlsnic_rxs_info *info);

/*
 * A plan, not a judgement: the lengths of up to max consecutive records from seq (record
 * sequence numbers rec_seq, rec_seq + 1, ...) that the entries show decrypted whole and
 * verified under the current key now. Returns how many (lens[0..n)). The host may read
 * that many records in one go; each must still be judged (tlsnic_rxs_verified) after its
 * bytes are read.
 */
unsigned tlsnic_rxs_plan(struct tlsnic_rxs_reader *r, const struct tlsnic_rxs_keys *k,
                         uint32_t seq, uint64_t rec_seq, uint32_t *lens, unsigned max);

/*
 * Whether the record at seq (record sequence number rec_seq) is one the device entered
 * at its first byte under the current key and has not failed or revoked (verdict PENDING
 * or OK): 1 and its length (as the device parsed it), else 0. A hint for a host that
 * would rather wait for the whole record than take it in pieces; judge it afterwards.
 */
int tlsnic_rxs_pending(struct tlsnic_rxs_reader *r, const struct tlsnic_rxs_keys *k,
                       uint32_t seq, uint64_t rec_seq, uint32_t *len);

/* The host has read the stream up to seq (exclusive): the device may release what ends there. */
void tlsnic_rxs_consume(struct tlsnic_rxs_reader *r, uint32_t seq);

/* Writes the host's key epoch (before add, and before a rekey). */
void tlsnic_rxs_set_host_epoch(struct tlsnic_rxs *s, uint32_t epoch);

/* Writes received_len (before add): how many bytes past the add's start sequence number
 * the host's TCP already holds (SIOCINQ when the start was read); 0 for none. */
void tlsnic_rxs_set_host_received(struct tlsnic_rxs *s, uint32_t len);

/* A resync request the host has not seen yet: 1 and *seq, else 0. */
int tlsnic_rxs_poll_request(struct tlsnic_rxs_reader *r, uint32_t *seq);

/* ------------------------------------------------------------------------------------------ */
/* For a driver that marks packets (the kernel's skb->decrypted; tlsnic-kdevd).               */

/*
 * 1 if the entries show every byte of [seq, seq + len) inside a record the device
 * decrypted, with the body bytes in the range inside the record's decrypted prefix, no
 * record in it failed (BAD) or revoked (RECHECK), and the tag verified (OK) of every
 * record that ends in the range; else 0 (a byte no entry covers, body bytes left
 * undecrypted, a tag failed, revoked, or not yet checked where the record ends).
 * Headers and tags are clear on the wire and count as they are. This is what a packet's
 * decrypted mark promises the kernel: it trusts a record all of whose packets carry it,
 * and re-encrypts and checks a record whose packets are mixed. The caller decides about
 * later copies (bytes forwarded before) itself; call right after the device forwarded
 * the bytes, before their entries can be released.
 */
int tlsnic_rxs_span_verified(const struct tlsnic_rxs *s, uint32_t seq, uint32_t len);

#ifdef __cplusplus
}
#endif

#endif
