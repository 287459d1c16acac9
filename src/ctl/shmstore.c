/* The host record store in shared memory (see shmstore.h). */
#include "tlsnic/shmstore.h"

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

#define MAX_DATA_BYTES (1u << 30)
#define READ_ATTEMPTS 3 /* per descriptor, when the writer changes it under the reader */

/* One retained record: where its bytes are in the data ring. */
struct desc {
    uint32_t gen;
    uint32_t tcp_seq;
    uint32_t len; /* 0: free */
    uint32_t off; /* into the data ring */
    uint64_t rec_seq;
};

struct store_hdr {
    uint32_t magic;
    uint32_t version;
    uint32_t n_desc;
    uint32_t data_bytes;
    uint32_t device_flags; /* written by the daemon only (see shmstore.h) */
    uint32_t max_record;
};

#define FLAGS_OFFSET 16u

static uint32_t *flags_word(uint8_t *map)
{
    return (uint32_t *)(map + FLAGS_OFFSET);
}

/* Where the data ring starts: after the descriptors, on a cache line. */
static size_t data_offset(uint32_t n_desc)
{
    return (TLSNIC_SHM_HDR_LEN + (size_t)n_desc * TLSNIC_SHM_DESC_LEN + 63) & ~(size_t)63;
}

/* ---- writer -------------------------------------------------------------------------- */

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
    int reserved;           /* a reservation is open at reserved_off */
    uint32_t reserved_off;
    uint32_t desc_touched;  /* descriptors ever written: [0, desc_touched) */
    uint32_t data_touched;  /* data bytes ever written: [0, data_touched) */
};

static struct desc *w_desc(const tlsnic_shm_writer *w, uint32_t i)
{
    return (struct desc *)(w->map + TLSNIC_SHM_HDR_LEN + (size_t)i * TLSNIC_SHM_DESC_LEN);
}

static bool seq_in(uint32_t seq, uint32_t start, uint32_t len)
{
    return (uint32_t)(seq - start) < len;
}

static int writer_get_record(void *priv, uint32_t tcp_seq, struct tlsnic_rec_ref *out)
{
    const tlsnic_shm_writer *w = priv;
    for (uint32_t n = 0; n < w->used; n++) {
        const struct desc *d = w_desc(w, (w->oldest + n) % w->n_desc);
        if (d->len != 0 && seq_in(tcp_seq, d->tcp_seq, d->len)) {
            *out = (struct tlsnic_rec_ref){.tcp_seq = d->tcp_seq, .len = d->len,
                                           .rec_seq = d->rec_seq, .bytes = w->data + d->off};
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
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static tlsnic_shm_writer *pool[POOL_MAX];
static int pool_n;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void writer_destroy(tlsnic_shm_writer *w);

static void pool_forget_in_child(void)
{
    for (int i = 0; i < pool_n; i++)
        writer_destroy(pool[i]);
    pool_n = 0;
    pthread_mutex_init(&pool_lock, NULL);
}

static void pool_init(void)
{
    (void)pthread_atfork(NULL, NULL, pool_forget_in_child);
}

static tlsnic_shm_writer *pool_take(uint32_t n_desc, uint32_t data_bytes)
{
    tlsnic_shm_writer *w = NULL;
    pthread_mutex_lock(&pool_lock);
    for (int i = 0; i < pool_n; i++) {
        if (pool[i]->n_desc == n_desc && pool[i]->data_bytes == data_bytes) {
            w = pool[i];
            pool[i] = pool[--pool_n];
            break;
        }
    }
    pthread_mutex_unlock(&pool_lock);
    return w;
}

int tlsnic_shm_writer_new(tlsnic_shm_writer **out, uint32_t n_records, uint32_t data_bytes)
{
    if (out == NULL || n_records == 0 || n_records > TLSNIC_SHM_MAX_RECORDS ||
        data_bytes > MAX_DATA_BYTES)
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
    w->map_len = data_offset(n_records) + data_bytes;
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
    w->data = w->map + data_offset(n_records);
    struct store_hdr h = {.magic = TLSNIC_SHM_MAGIC, .version = TLSNIC_SHM_VERSION,
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
    memset(w_desc(w, 0), 0, (size_t)w->desc_touched * TLSNIC_SHM_DESC_LEN);
    memset(w->data, 0, w->data_touched);
    w->oldest = w->used = w->head = w->desc_touched = w->data_touched = 0;
    w->reserved = 0;
    /* The next flow's device has not said anything yet. */
    __atomic_store_n(flags_word(w->map), 0, __ATOMIC_RELEASE);
}

uint32_t tlsnic_shm_writer_device_flags(const tlsnic_shm_writer *w)
{
    return __atomic_load_n(flags_word(w->map), __ATOMIC_ACQUIRE);
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
    int n = pool_n;
    pthread_mutex_unlock(&pool_lock);
    return n;
}

void tlsnic_shm_writer_free(tlsnic_shm_writer *w)
{
    if (w == NULL)
        return;
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

/* Seqlock writer: gen odd while the descriptor changes. */
static void desc_begin(struct desc *d)
{
    __atomic_store_n(&d->gen, d->gen + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

static void desc_end(struct desc *d)
{
    __atomic_store_n(&d->gen, d->gen + 1, __ATOMIC_RELEASE);
}

/* Where a record of len bytes can go in the data ring, or -ENOSPC. */
static int64_t place(const tlsnic_shm_writer *w, uint32_t len)
{
    if (w->used == 0)
        return 0;
    uint32_t tail = w_desc(w, w->oldest)->off; /* the oldest record's bytes */
    if (w->head > tail) { /* free: [head, end) and [0, tail) */
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
    *room = w->data + off;
    return 0;
}

void tlsnic_shm_writer_commit(tlsnic_shm_writer *w, uint32_t tcp_seq, uint64_t rec_seq,
                              uint32_t len)
{
    if (!w->reserved)
        return;
    w->reserved = 0;
    if (len == 0 || len > w->max_record || len > w->data_bytes - w->reserved_off)
        return; /* not what was reserved: the record stays out */
    uint32_t i = (w->oldest + w->used) % w->n_desc;
    struct desc *d = w_desc(w, i);
    desc_begin(d);
    d->tcp_seq = tcp_seq;
    d->rec_seq = rec_seq;
    d->off = w->reserved_off;
    d->len = len;
    desc_end(d);
    w->used++;
    w->head = w->reserved_off + len;
    if (i >= w->desc_touched)
        w->desc_touched = i + 1;
    if (w->head > w->data_touched)
        w->data_touched = w->head;
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
    memcpy(room, bytes, len);
    tlsnic_shm_writer_commit(w, tcp_seq, rec_seq, len);
    return 0;
}

void tlsnic_shm_writer_release(tlsnic_shm_writer *w, uint32_t acked_seq)
{
    while (w->used > 0) {
        struct desc *d = w_desc(w, w->oldest);
        uint32_t end = d->tcp_seq + d->len;
        if ((int32_t)(acked_seq - end) < 0)
            break;
        desc_begin(d); /* before its bytes can be reused: a reader copying them notices */
        d->len = 0;
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

/* ---- reader -------------------------------------------------------------------------- */

struct tlsnic_shm_reader {
    struct tlsnic_rec_store store;
    const uint8_t *map;
    size_t map_len;
    uint8_t *flags_page; /* the header's page, mapped writable: device_flags; may be NULL */
    size_t flags_page_len;
    uint32_t n_desc;
    uint32_t data_bytes;
    uint32_t max_record;
    const uint8_t *data;
    uint8_t *copy; /* max_record bytes: where get_record puts the record */
};

static const struct desc *r_desc(const tlsnic_shm_reader *r, uint32_t i)
{
    return (const struct desc *)(r->map + TLSNIC_SHM_HDR_LEN + (size_t)i * TLSNIC_SHM_DESC_LEN);
}

static int reader_get_record(void *priv, uint32_t tcp_seq, struct tlsnic_rec_ref *out)
{
    tlsnic_shm_reader *r = priv;
    for (uint32_t i = 0; i < r->n_desc; i++) {
        const struct desc *d = r_desc(r, i);
        for (int attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
            uint32_t g1 = __atomic_load_n(&d->gen, __ATOMIC_ACQUIRE);
            if (g1 & 1)
                continue; /* being written */
            struct desc h;
            memcpy(&h, d, sizeof(h));
            /* Host memory is input: a record past the ring is a corrupt descriptor, not a
             * read. */
            bool match = h.len != 0 && h.len <= r->max_record && h.off <= r->data_bytes &&
                         h.len <= r->data_bytes - h.off && seq_in(tcp_seq, h.tcp_seq, h.len);
            if (match)
                memcpy(r->copy, r->data + h.off, h.len);
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            if (__atomic_load_n(&d->gen, __ATOMIC_RELAXED) != g1)
                continue; /* changed under us: look again */
            if (!match)
                break;
            *out = (struct tlsnic_rec_ref){.tcp_seq = h.tcp_seq, .len = h.len,
                                           .rec_seq = h.rec_seq, .bytes = r->copy};
            return 0;
        }
    }
    return -ENOENT;
}

static const struct tlsnic_rec_store_ops reader_ops = {.get_record = reader_get_record};

int tlsnic_shm_reader_open(tlsnic_shm_reader **out, int memfd)
{
    if (out == NULL || memfd < 0)
        return -EINVAL;
    int seals = fcntl(memfd, F_GET_SEALS);
    if (seals < 0)
        return errno == EINVAL ? -EPERM : -errno; /* not a memfd: cannot be sealed */
    if (!(seals & F_SEAL_SHRINK))
        return -EPERM;
    struct stat st;
    if (fstat(memfd, &st) < 0)
        return -errno;
    if (st.st_size < (off_t)TLSNIC_SHM_HDR_LEN)
        return -EBADMSG;
    size_t size = (size_t)st.st_size;
    const uint8_t *map = mmap(NULL, size, PROT_READ, MAP_SHARED, memfd, 0);
    if (map == MAP_FAILED)
        return -errno;
    struct store_hdr h;
    memcpy(&h, map, sizeof(h));
    int err = 0;
    if (h.magic != TLSNIC_SHM_MAGIC || h.version != TLSNIC_SHM_VERSION || h.n_desc == 0 ||
        h.n_desc > TLSNIC_SHM_MAX_RECORDS || h.data_bytes == 0 || h.data_bytes > MAX_DATA_BYTES ||
        h.max_record == 0 || h.max_record > h.data_bytes ||
        (uint64_t)data_offset(h.n_desc) + (uint64_t)h.data_bytes > size)
        err = -EBADMSG;
    tlsnic_shm_reader *r = err == 0 ? calloc(1, sizeof(*r)) : NULL;
    if (err == 0 && r != NULL)
        r->copy = malloc(h.max_record);
    if (err == 0 && (r == NULL || r->copy == NULL)) {
        err = -ENOMEM;
        if (r != NULL)
            free(r);
    }
    if (err < 0) {
        munmap((void *)map, size);
        return err;
    }
    r->map = map;
    r->map_len = size;
    /* Only the header's page is writable here: the records stay out of the daemon's reach. */
    /* (A system whose pages are larger than the header maps nothing writable: its hosts
     * keep asking for the flags over the channel.) */
    r->flags_page_len = TLSNIC_SHM_HDR_LEN;
    void *fp = sysconf(_SC_PAGESIZE) == (long)TLSNIC_SHM_HDR_LEN
                   ? mmap(NULL, r->flags_page_len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0)
                   : MAP_FAILED;
    r->flags_page = fp == MAP_FAILED ? NULL : fp;
    r->n_desc = h.n_desc;
    r->data_bytes = h.data_bytes;
    r->max_record = h.max_record;
    r->data = map + data_offset(h.n_desc);
    r->store.ops = &reader_ops;
    r->store.priv = r;
    *out = r;
    return 0;
}

void tlsnic_shm_reader_free(tlsnic_shm_reader *r)
{
    if (r == NULL)
        return;
    munmap((void *)r->map, r->map_len);
    if (r->flags_page != NULL)
        munmap(r->flags_page, r->flags_page_len);
    if (r->copy != NULL) {
        memset(r->copy, 0, r->max_record); /* a plaintext record */
        free(r->copy);
    }
    free(r);
}

int tlsnic_shm_reader_publish_flags(tlsnic_shm_reader *r, uint32_t flags)
{
    if (r->flags_page == NULL)
        return -EACCES;
    __atomic_store_n(flags_word(r->flags_page), flags | TLSNIC_FLOW_F_LIVE, __ATOMIC_RELEASE);
    return 0;
}

const struct tlsnic_rec_store *tlsnic_shm_reader_store(tlsnic_shm_reader *r)
{
    return &r->store;
}
