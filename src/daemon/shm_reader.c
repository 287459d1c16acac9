/* The daemon's end of the shared-memory record store (see shm_reader.h). */
#include "tlsnic/shm_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_ATTEMPTS 3 /* per descriptor, when the writer changes it under the reader */


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
    uint8_t *rx_map; /* RX store: the status region, mapped writable (the device's) */
    size_t rx_len;
    struct tlsnic_rxs rxs;
};

static const struct tlsnic_shm_desc *r_desc(const tlsnic_shm_reader *r, uint32_t i)
{
    return (const struct tlsnic_shm_desc *)(r->map + TLSNIC_SHM_HDR_LEN + (size_t)i * TLSNIC_SHM_DESC_LEN);
}

static int reader_get_record(void *priv, uint32_t tcp_seq, struct tlsnic_rec_ref *out)
{
    tlsnic_shm_reader *r = priv;
    for (uint32_t i = 0; i < r->n_desc; i++) {
        /* The map is read-only here; the accessors only load. */
        struct tlsnic_shm_desc *d = (struct tlsnic_shm_desc *)r_desc(r, i);
        for (int attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
            uint32_t g1 = __atomic_load_n(&d->gen, __ATOMIC_ACQUIRE);
            if (g1 & 1)
                continue; /* being written */
            struct tlsnic_shm_desc h = {
                .tcp_seq = tlsnic_shm_ld32(&d->tcp_seq), .len = tlsnic_shm_ld32(&d->len),
                .off = tlsnic_shm_ld32(&d->off), .rec_seq = tlsnic_shm_ld64(&d->rec_seq)};
            /* Host memory is input: a record past the ring is a corrupt descriptor, not a
             * read. */
            bool match = h.len != 0 && h.len <= r->max_record && h.off <= r->data_bytes &&
                         h.len <= r->data_bytes - h.off && tlsnic_shm_seq_in(tcp_seq, h.tcp_seq, h.len);
            if (match)
                tlsnic_shm_copy((uint8_t *)r->data + h.off, r->copy, h.len, 0);
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

/* Why a header cannot be a store's, or NULL if it can (its sizes within the limits, and
 * the store within the file): the header is host memory, checked once, from a copy. *rx
 * says whether it is an RX store (an RX status, no records) or a record store. */
static const char *header_problem(const struct tlsnic_shm_hdr *h, uint64_t file_size, int *rx,
                                  char *why, size_t cap)
{
    if (h->magic != TLSNIC_SHM_MAGIC || h->version != TLSNIC_SHM_VERSION) {
        snprintf(why, cap, "not a tlsnic store (magic %#x version %u)", h->magic, h->version);
        return why;
    }
    *rx = h->n_desc == 0 && h->data_bytes == 0 && h->rx_offset != 0;
    if (*rx) {
        if (h->rx_offset != TLSNIC_SHM_RX_OFFSET || h->max_record != 0) {
            snprintf(why, cap, "RX store with its status at %u (not %u) or records of %u bytes",
                     h->rx_offset, TLSNIC_SHM_RX_OFFSET, h->max_record);
            return why;
        }
        if (h->rx_bytes < tlsnic_shm_rx_bytes(16) || h->rx_bytes > TLSNIC_SHM_MAX_RX_BYTES ||
            h->rx_bytes % TLSNIC_SHM_HDR_LEN != 0) {
            snprintf(why, cap, "RX status of %u bytes (whole pages, %zu to %zu)", h->rx_bytes,
                     tlsnic_shm_rx_bytes(16), (size_t)TLSNIC_SHM_MAX_RX_BYTES);
            return why;
        }
        uint64_t need = (uint64_t)h->rx_offset + h->rx_bytes;
        if (need > file_size) {
            snprintf(why, cap, "the RX store needs %llu bytes, the memfd has %llu",
                     (unsigned long long)need, (unsigned long long)file_size);
            return why;
        }
        return NULL;
    }
    if (h->rx_offset != 0 || h->rx_bytes != 0) {
        snprintf(why, cap, "a record store with an RX status (at %u, %u bytes)", h->rx_offset,
                 h->rx_bytes);
        return why;
    }
    if (h->n_desc == 0 || h->n_desc > TLSNIC_SHM_MAX_RECORDS) {
        snprintf(why, cap, "%u descriptors (1 to %u)", h->n_desc, TLSNIC_SHM_MAX_RECORDS);
        return why;
    }
    if (h->data_bytes == 0 || h->data_bytes > TLSNIC_SHM_MAX_DATA_BYTES) {
        snprintf(why, cap, "data ring of %u bytes (1 to %u)", h->data_bytes,
                 TLSNIC_SHM_MAX_DATA_BYTES);
        return why;
    }
    if (h->max_record == 0 || h->max_record > h->data_bytes ||
        h->max_record > TLSNIC_SHM_MAX_RECORD_LEN) {
        snprintf(why, cap, "largest record of %u bytes (1 to the ring's %u and the largest "
                 "TLS record's %u)", h->max_record, h->data_bytes, TLSNIC_SHM_MAX_RECORD_LEN);
        return why;
    }
    uint64_t need = (uint64_t)tlsnic_shm_data_offset(h->n_desc) + h->data_bytes;
    if (need > file_size) {
        snprintf(why, cap, "the store needs %llu bytes, the memfd has %llu",
                 (unsigned long long)need, (unsigned long long)file_size);
        return why;
    }
    return NULL;
}

int tlsnic_shm_reader_open(tlsnic_shm_reader **out, int memfd)
{
    return tlsnic_shm_reader_open_why(out, memfd, NULL, 0);
}

int tlsnic_shm_reader_open_why(tlsnic_shm_reader **out, int memfd, char *why, size_t cap)
{
    char scratch[160];
    if (why == NULL || cap == 0) {
        why = scratch;
        cap = sizeof(scratch);
    }
    why[0] = '\0';
    if (out == NULL || memfd < 0) {
        snprintf(why, cap, "no memfd");
        return -EINVAL;
    }
    int seals = fcntl(memfd, F_GET_SEALS);
    if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
        int err = seals < 0 && errno != EINVAL ? -errno : -EPERM; /* EINVAL: not a memfd */
        snprintf(why, cap, "not a memfd sealed against shrinking");
        return err;
    }
    struct stat st;
    if (fstat(memfd, &st) < 0) {
        int err = -errno;
        snprintf(why, cap, "fstat: %s", strerror(-err));
        return err;
    }
    if (st.st_size < (off_t)TLSNIC_SHM_HDR_LEN) {
        snprintf(why, cap, "%lld bytes: shorter than a store's header", (long long)st.st_size);
        return -EBADMSG;
    }
    /* The header alone first: only what it says, once checked, is mapped, never the whole
     * file (the host chose its size). */
    struct tlsnic_shm_hdr h;
    if (pread(memfd, &h, sizeof(h), 0) != (ssize_t)sizeof(h)) {
        snprintf(why, cap, "the header cannot be read");
        return -EBADMSG;
    }
    int rx = 0;
    if (header_problem(&h, (uint64_t)st.st_size, &rx, why, cap) != NULL)
        return -EBADMSG;
    if (rx && sysconf(_SC_PAGESIZE) != (long)TLSNIC_SHM_HDR_LEN) {
        /* The RX status must be mapped writable apart from the header: its own pages. */
        snprintf(why, cap, "RX store on a system with pages of %ld bytes", sysconf(_SC_PAGESIZE));
        return -EBADMSG;
    }
    /* Read-only: the header page and, for a record store, the descriptors and the ring. */
    size_t size = rx ? TLSNIC_SHM_HDR_LEN : tlsnic_shm_data_offset(h.n_desc) + h.data_bytes;
    const uint8_t *map = mmap(NULL, size, PROT_READ, MAP_SHARED, memfd, 0);
    if (map == MAP_FAILED) {
        int err = -errno;
        snprintf(why, cap, "mmap of %zu bytes: %s", size, strerror(-err));
        return err;
    }
    tlsnic_shm_reader *r = calloc(1, sizeof(*r));
    if (r != NULL && !rx)
        r->copy = malloc(h.max_record);
    if (r == NULL || (!rx && r->copy == NULL)) {
        free(r);
        munmap((void *)map, size);
        snprintf(why, cap, "out of memory");
        return -ENOMEM;
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
    if (rx) {
        /* The device writes the status: its own pages (exactly rx_bytes of them, checked
         * above against the limit and the file), mapped writable. What it reads there (and
         * the host's words in the header page) stays input: the view checks the layout
         * once, the device checks every value it uses. */
        void *rm = r->flags_page ? mmap(NULL, h.rx_bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
                                        memfd, h.rx_offset)
                                 : MAP_FAILED;
        int err = rm == MAP_FAILED ? -EACCES : 0;
        if (err == 0) {
            r->rx_map = rm;
            r->rx_len = h.rx_bytes;
            err = tlsnic_rxs_view(&r->rxs, r->rx_map, r->rx_len,
                                  tlsnic_shm_rx_host(r->flags_page));
            if (err < 0)
                snprintf(why, cap, "RX status not formatted (%u bytes)", h.rx_bytes);
        } else {
            snprintf(why, cap, "RX status cannot be mapped writable");
        }
        if (err < 0) {
            tlsnic_shm_reader_free(r);
            return err;
        }
        r->store.rx_status = &r->rxs;
    }
    r->n_desc = h.n_desc;
    r->data_bytes = h.data_bytes;
    r->max_record = h.max_record;
    r->data = map + (rx ? TLSNIC_SHM_HDR_LEN : tlsnic_shm_data_offset(h.n_desc));
    r->store.ops = &reader_ops; /* an RX store has no descriptors: finds nothing */
    r->store.priv = r;
    *out = r;
    return 0;
}

void tlsnic_shm_reader_free(tlsnic_shm_reader *r)
{
    if (r == NULL)
        return;
    munmap((void *)r->map, r->map_len);
    if (r->rx_map != NULL)
        munmap(r->rx_map, r->rx_len);
    if (r->flags_page != NULL)
        munmap(r->flags_page, r->flags_page_len);
    if (r->copy != NULL) {
        memset(r->copy, 0, r->max_record); /* a plaintext record */
        free(r->copy);
    }
    free(r);
}

void tlsnic_shm_reader_let_go(tlsnic_shm_reader *r)
{
    if (r == NULL)
        return;
    /* The last word the device writes: after it, the host may wipe and reuse the store. */
    if (r->flags_page != NULL)
        __atomic_store_n(tlsnic_shm_flags_word(r->flags_page),
                         TLSNIC_FLOW_F_GONE | TLSNIC_FLOW_F_UNMAPPED | TLSNIC_FLOW_F_LIVE,
                         __ATOMIC_RELEASE);
    tlsnic_shm_reader_free(r);
}

int tlsnic_shm_reader_publish_flags(tlsnic_shm_reader *r, uint32_t flags)
{
    if (r->flags_page == NULL)
        return -EACCES;
    __atomic_store_n(tlsnic_shm_flags_word(r->flags_page), flags | TLSNIC_FLOW_F_LIVE, __ATOMIC_RELEASE);
    return 0;
}

const struct tlsnic_rec_store *tlsnic_shm_reader_store(tlsnic_shm_reader *r)
{
    return &r->store;
}
