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

#define MAX_SLOT_BYTES (1u << 20)
#define READ_ATTEMPTS 3 /* per slot, when the writer changes it under the reader */

struct slot_hdr {
    uint32_t gen;
    uint32_t tcp_seq;
    uint32_t len;
    uint32_t zero;
    uint64_t rec_seq;
};

struct store_hdr {
    uint32_t magic;
    uint32_t version;
    uint32_t n_slots;
    uint32_t slot_bytes;
    uint32_t device_flags; /* written by the daemon only (see shmstore.h) */
};

#define FLAGS_OFFSET 16u

static uint32_t *flags_word(uint8_t *map)
{
    return (uint32_t *)(map + FLAGS_OFFSET);
}

static size_t stride_of(uint32_t slot_bytes)
{
    return (TLSNIC_SHM_SLOT_HDR_LEN + (size_t)slot_bytes + 7) & ~(size_t)7;
}

/* ---- writer -------------------------------------------------------------------------- */

struct tlsnic_shm_writer {
    struct tlsnic_rec_store store;
    int fd;
    uint8_t *map;
    size_t map_len;
    uint32_t n_slots;
    uint32_t slot_bytes;
    size_t stride;
    /* Records arrive in TCP order and leave in TCP order (cumulative ACKs), so the used
     * slots are a ring: [oldest, oldest + used). Put and release touch only its ends. */
    uint32_t oldest;
    uint32_t used;
    int reserved;          /* a reservation is open on slot oldest + used */
    uint32_t touched;      /* slots ever written: [0, touched) (the ring fills from 0) */
    uint32_t longest;      /* longest record ever written: what a wipe must cover */
};

static struct slot_hdr *w_slot(const tlsnic_shm_writer *w, uint32_t i)
{
    return (struct slot_hdr *)(w->map + TLSNIC_SHM_HDR_LEN + (size_t)i * w->stride);
}

static bool seq_in(uint32_t seq, uint32_t start, uint32_t len)
{
    return (uint32_t)(seq - start) < len;
}

static int writer_get_record(void *priv, uint32_t tcp_seq, struct tlsnic_rec_ref *out)
{
    const tlsnic_shm_writer *w = priv;
    for (uint32_t n = 0; n < w->used; n++) {
        const struct slot_hdr *s = w_slot(w, (w->oldest + n) % w->n_slots);
        if (s->len != 0 && seq_in(tcp_seq, s->tcp_seq, s->len)) {
            *out = (struct tlsnic_rec_ref){.tcp_seq = s->tcp_seq, .len = s->len,
                                           .rec_seq = s->rec_seq,
                                           .bytes = (const uint8_t *)(s + 1)};
            return 0;
        }
    }
    return -ENOENT;
}

static const struct tlsnic_rec_store_ops writer_ops = {.get_record = writer_get_record};

/*
 * Stores of closed connections, kept for the next ones: a new store's pages are faulted
 * in one by one as records first touch them (a store of 1024 16 KB slots: ~4000 faults,
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

static tlsnic_shm_writer *pool_take(uint32_t n_slots, uint32_t slot_bytes)
{
    tlsnic_shm_writer *w = NULL;
    pthread_mutex_lock(&pool_lock);
    for (int i = 0; i < pool_n; i++) {
        if (pool[i]->n_slots == n_slots && pool[i]->slot_bytes == slot_bytes) {
            w = pool[i];
            pool[i] = pool[--pool_n];
            break;
        }
    }
    pthread_mutex_unlock(&pool_lock);
    return w;
}

int tlsnic_shm_writer_new(tlsnic_shm_writer **out, uint32_t n_slots, uint32_t slot_bytes)
{
    if (out == NULL || n_slots == 0 || n_slots > TLSNIC_SHM_MAX_SLOTS || slot_bytes > MAX_SLOT_BYTES)
        return -EINVAL;
    pthread_once(&pool_once, pool_init);
    tlsnic_shm_writer *pooled = pool_take(n_slots, slot_bytes ? slot_bytes : TLSNIC_REC_MAX_WIRE_LEN);
    if (pooled != NULL) {
        *out = pooled;
        return 0;
    }
    tlsnic_shm_writer *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    w->n_slots = n_slots;
    w->slot_bytes = slot_bytes ? slot_bytes : TLSNIC_REC_MAX_WIRE_LEN;
    w->stride = stride_of(w->slot_bytes);
    w->map_len = TLSNIC_SHM_HDR_LEN + (size_t)n_slots * w->stride;
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
    struct store_hdr h = {.magic = TLSNIC_SHM_MAGIC, .version = TLSNIC_SHM_VERSION,
                          .n_slots = n_slots, .slot_bytes = w->slot_bytes};
    memcpy(w->map, &h, sizeof(h));
    w->store.ops = &writer_ops;
    w->store.priv = w;
    *out = w;
    return 0;
}

/* Plaintext records: wiped before the pages go back or to the next connection (the
 * daemon may still map them until its DEL; it then sees empty slots). Only what was
 * written: touching the rest would fault in pages that never held anything. */
static void writer_wipe(tlsnic_shm_writer *w)
{
    for (uint32_t i = 0; i < w->touched; i++)
        memset(w_slot(w, i), 0, TLSNIC_SHM_SLOT_HDR_LEN + (size_t)w->longest);
    w->oldest = w->used = w->touched = w->longest = 0;
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

/* Seqlock writer: gen odd while the slot changes. */
static void slot_begin(struct slot_hdr *s)
{
    __atomic_store_n(&s->gen, s->gen + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

static void slot_end(struct slot_hdr *s)
{
    __atomic_store_n(&s->gen, s->gen + 1, __ATOMIC_RELEASE);
}

int tlsnic_shm_writer_reserve(tlsnic_shm_writer *w, uint32_t len, uint8_t **room)
{
    if (len == 0 || len > w->slot_bytes || room == NULL)
        return -EMSGSIZE;
    if (w->reserved)
        return -EBUSY;
    if (w->used == w->n_slots)
        return -ENOSPC;
    uint32_t i = (w->oldest + w->used) % w->n_slots;
    struct slot_hdr *s = w_slot(w, i);
    /* gen odd from here to commit: a reader that copied the slot's last record while it
     * was released sees the change and drops its copy. */
    slot_begin(s);
    w->reserved = 1;
    if (i >= w->touched)
        w->touched = i + 1;
    if (len > w->longest)
        w->longest = len;
    *room = (uint8_t *)(s + 1);
    return 0;
}

void tlsnic_shm_writer_commit(tlsnic_shm_writer *w, uint32_t tcp_seq, uint64_t rec_seq,
                              uint32_t len)
{
    if (!w->reserved)
        return;
    struct slot_hdr *s = w_slot(w, (w->oldest + w->used) % w->n_slots);
    s->tcp_seq = tcp_seq;
    s->rec_seq = rec_seq;
    s->len = len <= w->slot_bytes ? len : 0;
    slot_end(s);
    w->reserved = 0;
    if (s->len != 0)
        w->used++;
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
        struct slot_hdr *s = w_slot(w, w->oldest);
        uint32_t end = s->tcp_seq + s->len;
        if ((int32_t)(acked_seq - end) < 0)
            break;
        slot_begin(s);
        s->len = 0;
        slot_end(s);
        w->oldest = (w->oldest + 1) % w->n_slots;
        w->used--;
    }
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
    uint32_t n_slots;
    uint32_t slot_bytes;
    size_t stride;
    uint8_t *copy; /* slot_bytes: where get_record puts the record */
};

static const struct slot_hdr *r_slot(const tlsnic_shm_reader *r, uint32_t i)
{
    return (const struct slot_hdr *)(r->map + TLSNIC_SHM_HDR_LEN + (size_t)i * r->stride);
}

static int reader_get_record(void *priv, uint32_t tcp_seq, struct tlsnic_rec_ref *out)
{
    tlsnic_shm_reader *r = priv;
    for (uint32_t i = 0; i < r->n_slots; i++) {
        const struct slot_hdr *s = r_slot(r, i);
        for (int attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
            uint32_t g1 = __atomic_load_n(&s->gen, __ATOMIC_ACQUIRE);
            if (g1 & 1)
                continue; /* being written */
            struct slot_hdr h;
            memcpy(&h, s, sizeof(h));
            /* Host memory is input: a length past the slot is a corrupt slot, not a read. */
            bool match = h.len != 0 && h.len <= r->slot_bytes && seq_in(tcp_seq, h.tcp_seq, h.len);
            if (match)
                memcpy(r->copy, s + 1, h.len);
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            if (__atomic_load_n(&s->gen, __ATOMIC_RELAXED) != g1)
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
    if (h.magic != TLSNIC_SHM_MAGIC || h.version != TLSNIC_SHM_VERSION || h.n_slots == 0 ||
        h.n_slots > TLSNIC_SHM_MAX_SLOTS || h.slot_bytes == 0 || h.slot_bytes > MAX_SLOT_BYTES ||
        (uint64_t)TLSNIC_SHM_HDR_LEN + (uint64_t)h.n_slots * stride_of(h.slot_bytes) > size)
        err = -EBADMSG;
    tlsnic_shm_reader *r = err == 0 ? calloc(1, sizeof(*r)) : NULL;
    if (err == 0 && r != NULL)
        r->copy = malloc(h.slot_bytes);
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
    long page = sysconf(_SC_PAGESIZE);
    r->flags_page_len = page > 0 ? (size_t)page : 4096;
    if (r->flags_page_len > size)
        r->flags_page_len = size;
    void *fp = mmap(NULL, r->flags_page_len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    r->flags_page = fp == MAP_FAILED ? NULL : fp;
    r->n_slots = h.n_slots;
    r->slot_bytes = h.slot_bytes;
    r->stride = stride_of(h.slot_bytes);
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
        memset(r->copy, 0, r->slot_bytes); /* a plaintext record */
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
