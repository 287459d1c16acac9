/* The daemon's end of the shared-memory record store (see shm_reader.h). */
#include "tlsnic/shm_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
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
        const struct tlsnic_shm_desc *d = r_desc(r, i);
        for (int attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
            uint32_t g1 = __atomic_load_n(&d->gen, __ATOMIC_ACQUIRE);
            if (g1 & 1)
                continue; /* being written */
            struct tlsnic_shm_desc h;
            memcpy(&h, d, sizeof(h));
            /* Host memory is input: a record past the ring is a corrupt descriptor, not a
             * read. */
            bool match = h.len != 0 && h.len <= r->max_record && h.off <= r->data_bytes &&
                         h.len <= r->data_bytes - h.off && tlsnic_shm_seq_in(tcp_seq, h.tcp_seq, h.len);
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
    struct tlsnic_shm_hdr h;
    memcpy(&h, map, sizeof(h));
    int err = 0;
    /* An RX store: an RX status and no records. */
    int rx = h.magic == TLSNIC_SHM_MAGIC && h.version == TLSNIC_SHM_VERSION && h.n_desc == 0 &&
             h.data_bytes == 0 && h.rx_offset != 0;
    if (rx) {
        if (h.rx_offset != TLSNIC_SHM_RX_OFFSET || h.rx_bytes < tlsnic_shm_rx_bytes(16) ||
            h.rx_bytes % TLSNIC_SHM_HDR_LEN || (uint64_t)h.rx_offset + h.rx_bytes > size ||
            sysconf(_SC_PAGESIZE) != (long)TLSNIC_SHM_HDR_LEN)
            err = -EBADMSG;
        h.max_record = 1;
    } else if (h.magic != TLSNIC_SHM_MAGIC || h.version != TLSNIC_SHM_VERSION || h.n_desc == 0 ||
        h.n_desc > TLSNIC_SHM_MAX_RECORDS || h.data_bytes == 0 || h.data_bytes > TLSNIC_SHM_MAX_DATA_BYTES ||
        h.max_record == 0 || h.max_record > h.data_bytes || h.rx_offset != 0 ||
        (uint64_t)tlsnic_shm_data_offset(h.n_desc) + (uint64_t)h.data_bytes > size)
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
    if (rx) {
        /* The device writes the status: its own pages, mapped writable. What it reads there
         * (and the host's words in the header page) stays input: the view checks the
         * layout once, the device checks every value it uses. */
        void *rm = r->flags_page ? mmap(NULL, h.rx_bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
                                        memfd, h.rx_offset)
                                 : MAP_FAILED;
        err = rm == MAP_FAILED ? -EACCES : 0;
        if (err == 0) {
            r->rx_map = rm;
            r->rx_len = h.rx_bytes;
            err = tlsnic_rxs_view(&r->rxs, r->rx_map, r->rx_len,
                                  tlsnic_shm_rx_host(r->flags_page));
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
    r->data = map + tlsnic_shm_data_offset(h.n_desc);
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
