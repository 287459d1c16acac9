/* The host's end of the shared-memory record store (see shm_writer.h). */
#include "tlsnic/shm_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tlsnic/record.h"


struct tlsnic_shm_writer {
    struct tlsnic_rec_store store;
    int fd;
    uint8_t *map;
    size_t map_len;
    uint32_t n_desc;
    uint32_t data_bytes;
    uint32_t max_record;
    uint8_t *data;
    /* Records arrive in TCP order and leave in TCP order (cumulative ACKs): descriptors
     * [oldest, oldest + used) in a ring, their bytes one after the other in the data ring
     * (a record never wraps: one that does not fit before the end starts at 0). */
    uint32_t oldest;
    uint32_t used;
    uint32_t head;          /* data offset after the newest record */
    int reserved;           /* a reservation is open: reserved_len bytes at reserved_off */
    uint32_t reserved_off;
    uint32_t reserved_len;
    uint32_t desc_touched;  /* descriptors ever written: [0, desc_touched) */
    uint32_t data_touched;  /* data bytes ever written: [0, data_touched) */
    struct tlsnic_rxs rxs;  /* RX store: the host's view of the status (else n = 0) */
};

static struct tlsnic_shm_desc *w_desc(const tlsnic_shm_writer *w, uint32_t i)
{
    return (struct tlsnic_shm_desc *)(w->map + TLSNIC_SHM_HDR_LEN + (size_t)i * TLSNIC_SHM_DESC_LEN);
}

static int writer_get_record(void *priv, uint32_t tcp_seq, struct tlsnic_rec_ref *out)
{
    const tlsnic_shm_writer *w = priv;
    for (uint32_t n = 0; n < w->used; n++) {
        struct tlsnic_shm_desc *d = w_desc(w, (w->oldest + n) % w->n_desc);
        uint32_t len = tlsnic_shm_ld32(&d->len), start = tlsnic_shm_ld32(&d->tcp_seq);
        if (len != 0 && tlsnic_shm_seq_in(tcp_seq, start, len)) {
            *out = (struct tlsnic_rec_ref){.tcp_seq = start, .len = len,
                                           .rec_seq = tlsnic_shm_ld64(&d->rec_seq),
                                           .bytes = w->data + tlsnic_shm_ld32(&d->off)};
            return 0;
        }
    }
    return -ENOENT;
}

static const struct tlsnic_rec_store_ops writer_ops = {.get_record = writer_get_record};

/*
 * Stores of closed connections, kept for the next ones: a new store's pages are faulted
 * in one by one as records first touch them (8 MB of records: ~2000 faults,
 * more CPU than the records themselves on a short connection). A pooled store comes back
 * wiped and empty. Per process; a forked child forgets the pool (its mappings are shared
 * with the parent, which may hand the same store out again).
 */
#define POOL_MAX 8
/*
 * Stores given up while a device may still map them (tlsnic_shm_writer_retire): a device
 * that took a flow over at close keeps reading its records until the socket is done.
 * One comes back to the pool only once the device has written TLSNIC_FLOW_F_UNMAPPED into
 * its flags word; past RETIRING_MAX the oldest is dropped unwiped (its pages go when the
 * device unmaps them too), never reused.
 */
#define RETIRING_MAX 16
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static tlsnic_shm_writer *pool[POOL_MAX];
static int pool_n;
static tlsnic_shm_writer *retiring[RETIRING_MAX];
static int retiring_n;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void writer_destroy(tlsnic_shm_writer *w);
static void writer_wipe(tlsnic_shm_writer *w);

static void pool_forget_in_child(void)
{
    for (int i = 0; i < pool_n; i++)
        writer_destroy(pool[i]);
    for (int i = 0; i < retiring_n; i++)
        writer_destroy(retiring[i]);
    pool_n = retiring_n = 0;
    pthread_mutex_init(&pool_lock, NULL);
}

/* The device has let go of the store: it wrote UNMAPPED (with LIVE) as its last word. */
static int device_let_go(const tlsnic_shm_writer *w)
{
    uint32_t word = __atomic_load_n(tlsnic_shm_flags_word(w->map), __ATOMIC_ACQUIRE);
    const uint32_t done = TLSNIC_FLOW_F_LIVE | TLSNIC_FLOW_F_UNMAPPED;
    return (word & done) == done;
}

static void pool_init(void)
{
    (void)pthread_atfork(NULL, NULL, pool_forget_in_child);
}

static tlsnic_shm_writer *pool_take(uint32_t n_desc, uint32_t data_bytes)
{
    tlsnic_shm_writer *w = NULL;
    int from_retiring = 0;
    pthread_mutex_lock(&pool_lock);
    for (int i = 0; i < pool_n; i++) {
        if (pool[i]->n_desc == n_desc && pool[i]->data_bytes == data_bytes) {
            w = pool[i];
            pool[i] = pool[--pool_n];
            break;
        }
    }
    for (int i = 0; w == NULL && i < retiring_n; i++) {
        if (retiring[i]->n_desc == n_desc && retiring[i]->data_bytes == data_bytes &&
            device_let_go(retiring[i])) {
            w = retiring[i];
            retiring[i] = retiring[--retiring_n];
            from_retiring = 1;
        }
    }
    pthread_mutex_unlock(&pool_lock);
    if (from_retiring)
        writer_wipe(w); /* what the device read until it let go */
    return w;
}

int tlsnic_shm_writer_new(tlsnic_shm_writer **out, uint32_t n_records, uint32_t data_bytes)
{
    if (out == NULL || n_records == 0 || n_records > TLSNIC_SHM_MAX_RECORDS ||
        data_bytes > TLSNIC_SHM_MAX_DATA_BYTES)
        return -EINVAL;
    if (data_bytes == 0)
        data_bytes = TLSNIC_SHM_DEFAULT_DATA_BYTES;
    pthread_once(&pool_once, pool_init);
    tlsnic_shm_writer *pooled = pool_take(n_records, data_bytes);
    if (pooled != NULL) {
        *out = pooled;
        return 0;
    }
    tlsnic_shm_writer *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    w->n_desc = n_records;
    w->data_bytes = data_bytes;
    w->max_record = data_bytes < TLSNIC_REC_MAX_WIRE_LEN ? data_bytes : TLSNIC_REC_MAX_WIRE_LEN;
    w->map_len = tlsnic_shm_data_offset(n_records) + data_bytes;
    int err = 0;
    w->fd = memfd_create("tlsnic-rec-store", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (w->fd < 0 || ftruncate(w->fd, (off_t)w->map_len) < 0)
        err = -errno;
    if (err == 0) {
        w->map = mmap(NULL, w->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, w->fd, 0);
        if (w->map == MAP_FAILED) {
            w->map = NULL;
            err = -errno;
        }
    }
    /* Sealed: the daemon's mapping can never lose its pages under it (no SIGBUS). */
    if (err == 0 && fcntl(w->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
        err = -errno;
    if (err < 0) {
        writer_destroy(w);
        return err;
    }
    w->data = w->map + tlsnic_shm_data_offset(n_records);
    struct tlsnic_shm_hdr h = {.magic = TLSNIC_SHM_MAGIC, .version = TLSNIC_SHM_VERSION,
                          .n_desc = n_records, .data_bytes = data_bytes,
                          .max_record = w->max_record};
    memcpy(w->map, &h, sizeof(h));
    w->store.ops = &writer_ops;
    w->store.priv = w;
    *out = w;
    return 0;
}

/* Plaintext records: wiped before the pages go back or to the next connection (the
 * daemon may still map them until its DEL; it then sees no records). Only what was
 * written: touching the rest would fault in pages that never held anything. */
static void writer_wipe(tlsnic_shm_writer *w)
{
    /* Every descriptor, not only the ones this process wrote: a forked child that wrote the
     * store (before tlsnic refused inherited sockets) left live-looking descriptors whose
     * room the next connection then reuses under a reader's eyes. A few pages at most. */
    memset(w_desc(w, 0), 0, (size_t)w->n_desc * TLSNIC_SHM_DESC_LEN);
    memset(w->data, 0, w->data_touched);
    w->oldest = w->used = w->head = w->desc_touched = w->data_touched = 0;
    w->reserved = 0;
    /* The next flow's device has not said anything yet. */
    __atomic_store_n(tlsnic_shm_flags_word(w->map), 0, __ATOMIC_RELEASE);
}

int tlsnic_shm_writer_new_rx(tlsnic_shm_writer **out, uint32_t n_entries)
{
    if (out == NULL)
        return -EINVAL;
    if (n_entries == 0)
        n_entries = TLSNIC_RXS_DEFAULT_ENTRIES;
    if (n_entries < 16 || n_entries > TLSNIC_RXS_MAX_ENTRIES || (n_entries & (n_entries - 1)))
        return -EINVAL;
    if (n_entries > TLSNIC_SHM_MAX_RX_ENTRIES)
        n_entries = TLSNIC_SHM_MAX_RX_ENTRIES; /* what the daemon maps at most */
    tlsnic_shm_writer *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    size_t rx_bytes = tlsnic_shm_rx_bytes(n_entries);
    w->map_len = TLSNIC_SHM_RX_OFFSET + rx_bytes;
    int err = 0;
    w->fd = memfd_create("tlsnic-rx-status", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (w->fd < 0 || ftruncate(w->fd, (off_t)w->map_len) < 0)
        err = -errno;
    if (err == 0) {
        w->map = mmap(NULL, w->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, w->fd, 0);
        if (w->map == MAP_FAILED) {
            w->map = NULL;
            err = -errno;
        }
    }
    if (err == 0 && fcntl(w->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
        err = -errno;
    uint8_t *region = w->map ? w->map + TLSNIC_SHM_RX_OFFSET : NULL;
    if (err == 0)
        err = tlsnic_rxs_format(region, n_entries);
    if (err == 0)
        err = tlsnic_rxs_view(&w->rxs, region, rx_bytes, tlsnic_shm_rx_host(w->map));
    /* The status is the device's to write: read-only here from now on. */
    if (err == 0 && mprotect(region, rx_bytes, PROT_READ) < 0)
        err = -errno;
    if (err < 0) {
        writer_destroy(w);
        return err;
    }
    struct tlsnic_shm_hdr h = {.magic = TLSNIC_SHM_MAGIC, .version = TLSNIC_SHM_VERSION,
                               .rx_offset = TLSNIC_SHM_RX_OFFSET, .rx_bytes = (uint32_t)rx_bytes};
    memcpy(w->map, &h, sizeof(h));
    w->store.ops = &writer_ops;
    w->store.priv = w;
    w->store.rx_status = &w->rxs;
    *out = w;
    return 0;
}

struct tlsnic_rxs *tlsnic_shm_writer_rx_status(tlsnic_shm_writer *w)
{
    return w->rxs.n ? &w->rxs : NULL;
}

uint32_t tlsnic_shm_writer_device_flags(const tlsnic_shm_writer *w)
{
    return __atomic_load_n(tlsnic_shm_flags_word(w->map), __ATOMIC_ACQUIRE);
}

static void writer_destroy(tlsnic_shm_writer *w)
{
    if (w->map != NULL)
        munmap(w->map, w->map_len);
    if (w->fd >= 0)
        close(w->fd);
    free(w);
}

int tlsnic_shm_writers_kept(void)
{
    pthread_mutex_lock(&pool_lock);
    int n = pool_n + retiring_n;
    pthread_mutex_unlock(&pool_lock);
    return n;
}

void tlsnic_shm_writer_retire(tlsnic_shm_writer *w)
{
    if (w == NULL)
        return;
    if (w->map == NULL || w->rxs.n) {
        /* An RX store is never reused: the device may write its status until it lets go,
         * into pages nobody else will read. */
        writer_destroy(w);
        return;
    }
    if (device_let_go(w)) { /* already (a device that ended the flow at once) */
        tlsnic_shm_writer_free(w);
        return;
    }
    pthread_once(&pool_once, pool_init);
    tlsnic_shm_writer *evicted = NULL;
    pthread_mutex_lock(&pool_lock);
    if (retiring_n == RETIRING_MAX) {
        evicted = retiring[0];
        memmove(retiring, retiring + 1, sizeof(retiring[0]) * (RETIRING_MAX - 1));
        retiring_n--;
    }
    retiring[retiring_n++] = w;
    pthread_mutex_unlock(&pool_lock);
    if (evicted != NULL)
        writer_destroy(evicted); /* unwiped: the device may still read it */
}

void tlsnic_shm_writer_forget(tlsnic_shm_writer *w)
{
    if (w != NULL)
        writer_destroy(w); /* this process's mapping and descriptor; the bytes stay */
}

void tlsnic_shm_writer_free(tlsnic_shm_writer *w)
{
    if (w == NULL)
        return;
    if (w->rxs.n) { /* an RX store: not kept */
        writer_destroy(w);
        return;
    }
    if (w->map != NULL)
        writer_wipe(w);
    pthread_mutex_lock(&pool_lock);
    int pooled = w->map != NULL && pool_n < POOL_MAX;
    if (pooled)
        pool[pool_n++] = w;
    pthread_mutex_unlock(&pool_lock);
    if (!pooled)
        writer_destroy(w);
}

/* Seqlock writer: gen odd while the descriptor changes (the writer is gen's only writer,
 * so its own relaxed load is exact). Fields in between: relaxed atomic stores. The parity
 * is set, not toggled: a store that comes back from the pool may hold a descriptor another
 * process left half-written (gen odd), and toggling would then mark writes as stable. */
static void desc_begin(struct tlsnic_shm_desc *d)
{
    tlsnic_shm_st32(&d->gen, tlsnic_shm_ld32(&d->gen) | 1u);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

static void desc_end(struct tlsnic_shm_desc *d)
{
    __atomic_store_n(&d->gen, (tlsnic_shm_ld32(&d->gen) | 1u) + 1u, __ATOMIC_RELEASE);
}

/*
 * Where a record of len bytes can go in the data ring, or -ENOSPC. The ring's start is
 * taken again as soon as the room before the oldest record holds half the ring: a sender
 * with a small window (paced, or a small socket buffer) writes its records into the first
 * half, which stays warmer in the cache, instead of marching through all 8 MB of cold
 * memory (perf: the stores of the copy into the store were the largest part of device
 * mode's own cost per record). Any window of up to half the ring always fits.
 */
static int64_t place(const tlsnic_shm_writer *w, uint32_t len)
{
    if (w->used == 0)
        return 0;
    uint32_t tail = tlsnic_shm_ld32(&w_desc(w, w->oldest)->off); /* the oldest record's bytes */
    if (w->head > tail) { /* free: [head, end) and [0, tail) */
        /* Early, when the room before the oldest record holds half the ring and this
         * record: the ring is sized for a window of at most half of it (twice the largest
         * send buffer), so the records written there while the older ones drain always
         * fit. (Judged on the window held now, the new records could outgrow that room
         * while the old ones wait for ACKs, and a record that should fit was refused.) */
        if ((uint64_t)tail >= (uint64_t)w->data_bytes / 2 + len &&
            (uint64_t)tail > (uint64_t)(w->head - tail) + len)
            return 0;
        if (len <= w->data_bytes - w->head)
            return w->head;
        return len < tail ? 0 : -ENOSPC; /* <: head == tail would read as empty */
    }
    /* wrapped: free [head, tail); head == tail is full */
    return w->head < tail && len < tail - w->head ? (int64_t)w->head : -ENOSPC;
}

int tlsnic_shm_writer_reserve(tlsnic_shm_writer *w, uint32_t len, uint8_t **room)
{
    if (len == 0 || len > w->max_record || room == NULL)
        return -EMSGSIZE;
    if (w->reserved)
        return -EBUSY;
    if (w->used == w->n_desc)
        return -ENOSPC;
    int64_t off = place(w, len);
    if (off < 0)
        return (int)off;
    /* The descriptor stays free (len 0) until commit: readers cannot see the record, and
     * one still copying the bytes a released record had here sees that record's gen move. */
    w->reserved = 1;
    w->reserved_off = (uint32_t)off;
    w->reserved_len = len;
    *room = w->data + off;
    /* Orders the release of the record that had this room (its gen store) before every
     * byte the caller now writes here: a reader whose copy holds any of those bytes then
     * sees gen moved (its acquire fence pairs with this one), and throws the copy away.
     * Without it the new bytes may become visible first (the compiler may hoist them). */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    return 0;
}

int tlsnic_shm_writer_commit(tlsnic_shm_writer *w, uint32_t tcp_seq, uint64_t rec_seq,
                             uint32_t len)
{
    if (!w->reserved)
        return -EINVAL;
    w->reserved = 0;
    /* Only the room reserved is the record's: a longer one would run over the bytes of the
       records after it in the ring (or past the end), which place() never gave out. */
    if (len == 0 || len > w->reserved_len)
        return -EMSGSIZE; /* the record stays out */
    uint32_t i = (w->oldest + w->used) % w->n_desc;
    struct tlsnic_shm_desc *d = w_desc(w, i);
    desc_begin(d);
    tlsnic_shm_st32(&d->tcp_seq, tcp_seq);
    tlsnic_shm_st64(&d->rec_seq, rec_seq);
    tlsnic_shm_st32(&d->off, w->reserved_off);
    tlsnic_shm_st32(&d->len, len);
    desc_end(d);
    w->used++;
    w->head = w->reserved_off + len;
    if (i >= w->desc_touched)
        w->desc_touched = i + 1;
    if (w->head > w->data_touched)
        w->data_touched = w->head;
    return 0;
}

int tlsnic_shm_writer_put(tlsnic_shm_writer *w, uint32_t tcp_seq, uint64_t rec_seq,
                          const uint8_t *bytes, uint32_t len)
{
    uint8_t *room = NULL;
    if (bytes == NULL)
        return -EMSGSIZE;
    int rc = tlsnic_shm_writer_reserve(w, len, &room);
    if (rc < 0)
        return rc;
    tlsnic_shm_copy(room, (uint8_t *)bytes, len, 1); /* bytes a reader may be copying */
    return tlsnic_shm_writer_commit(w, tcp_seq, rec_seq, len);
}

void tlsnic_shm_writer_release(tlsnic_shm_writer *w, uint32_t acked_seq)
{
    while (w->used > 0) {
        struct tlsnic_shm_desc *d = w_desc(w, w->oldest);
        uint32_t end = tlsnic_shm_ld32(&d->tcp_seq) + tlsnic_shm_ld32(&d->len);
        if ((int32_t)(acked_seq - end) < 0)
            break;
        desc_begin(d); /* before its bytes can be reused: a reader copying them notices */
        tlsnic_shm_st32(&d->len, 0);
        desc_end(d);
        w->oldest = (w->oldest + 1) % w->n_desc;
        w->used--;
    }
    if (w->used == 0 && !w->reserved)
        w->head = 0;
}

const struct tlsnic_rec_store *tlsnic_shm_writer_store(tlsnic_shm_writer *w)
{
    return &w->store;
}

int tlsnic_shm_store_fd(const struct tlsnic_rec_store *store)
{
    if (store == NULL || store->ops != &writer_ops)
        return -1;
    return ((const tlsnic_shm_writer *)store->priv)->fd;
}

