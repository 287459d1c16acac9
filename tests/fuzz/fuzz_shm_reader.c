/*
 * Fuzz target: the shared-memory record store as the daemon reads it, written by a hostile
 * host (src/daemon shm_reader.h, layout src/offload shm_layout.h). The input becomes a
 * memfd (header, descriptors, data ring, any size, sealed or not); the reader opens it
 * and serves get_record for sequence numbers the input names. Only the public API is used.
 *
 * Oracles:
 *   - never a read outside the store: the read-only mapping the reader asks for is an
 *     exactly-sized heap copy of the file (mmap is wrapped at link time: -Wl,--wrap=mmap),
 *     so ASan reports any read past its end, byte-exact (a real mapping would hide reads up
 *     to the end of the last page, where a guard page would start);
 *   - open: 0, or -EPERM for a memfd not sealed against shrinking (always), or -EBADMSG /
 *     -ENOMEM / -EINVAL;
 *   - a record returned is one the store holds: a descriptor of the file with that
 *     sequence number, length and record number, even generation, its bytes inside the
 *     data ring and no longer than the header's max_record, containing the asked sequence
 *     number; the bytes handed out are exactly the ring's;
 *   - a descriptor that is all of that (and no longer than a TLS record) is found: the
 *     device does not drop what the host offered;
 *   - publish_flags writes flags | LIVE into the header's device_flags word, nothing else;
 *   - an RX store (an RX status, no records: store format 4) is taken only as shm_layout.h
 *     says (no records, the status on the page after the header, whole pages within
 *     TLSNIC_SHM_MAX_RX_BYTES and the file); its status region is mapped as an exactly-sized
 *     heap copy too, and the device's reads of it (entries, the host's words) stay inside.
 * Input: u8 mode | 24 bytes of header (magic, version, n_desc, data_bytes, device_flags,
 * max_record: u32 native order) | u32 probe sequence | the rest from offset 4096 on
 * (descriptors, then the ring; or an RX status). Mode: bit 0 valid magic and version; bit 1
 * not sealed; bits 2-3 file size: input, layout (header's n_desc and data_bytes), layout +
 * byte 1 of the header as a signed delta, or u24 from the probe; bit 4 small header values;
 * bit 5 an RX store: rx_bytes is the input's device_flags word (device_flags 0), rx_offset
 * the page after the header, or with bit 6 the probe's top byte in pages (file size
 * "layout" is then rx_offset + rx_bytes).
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tlsnic/record.h"
#include "tlsnic/rx_status.h"
#include "tlsnic/shm_layout.h"
#include "tlsnic/shm_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap);

#define MAX_FILE (256u << 10) /* a store no larger than this (fuzzing speed: a header that
                                 claims more than the file holds is still tried) */
#define HDR_IN 24
#define PREFIX (1 + HDR_IN + 4)
#define MAX_PROBED_DESC 16

/* ------------------------------------------------------------------------------------------ */
/* Read-only mappings of a file as exactly-sized heap copies.                                 */

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __wrap_munmap(void *addr, size_t len);
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __real_munmap(void *addr, size_t len);

#define MAX_FAKE 8
static struct {
    void *p;
    size_t len;
} fakes[MAX_FAKE];
static int wrap_on; /* only while the target calls the reader */

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    /* Read-only mappings, and the RX status (writable, past the header page): the copy is
     * what the reader and the device read; their writes there need not reach the file.
     * The header page mapped writable (device_flags) stays a real mapping. */
    if (!wrap_on || fd < 0 || ((prot & PROT_WRITE) && off == 0) || addr != NULL || len == 0)
        return __real_mmap(addr, len, prot, flags, fd, off);
    for (int i = 0; i < MAX_FAKE; i++) {
        if (fakes[i].p != NULL)
            continue;
        void *p = NULL;
        if (posix_memalign(&p, 4096, len) != 0)
            return MAP_FAILED;
        /* What a mapping of the file shows: its bytes, zeros past its end. */
        ssize_t n = pread(fd, p, len, off);
        if (n < 0) {
            free(p);
            return MAP_FAILED;
        }
        if ((size_t)n < len)
            memset((uint8_t *)p + n, 0, len - (size_t)n);
        fakes[i].p = p;
        fakes[i].len = len;
        return p;
    }
    abort(); /* the reader maps more than expected at once */
}

int __wrap_munmap(void *addr, size_t len)
{
    for (int i = 0; i < MAX_FAKE; i++) {
        if (fakes[i].p != NULL && fakes[i].p == addr) {
            if (fakes[i].len != len)
                abort(); /* unmapping another length than was mapped */
            free(addr);
            fakes[i].p = NULL;
            return 0;
        }
    }
    return __real_munmap(addr, len);
}

/* ------------------------------------------------------------------------------------------ */

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The file as written, without holding it (a store can be megabytes of zeros): the header,
 * zeros to the end of its page, then the input's tail, then zeros up to size. */
struct store {
    struct tlsnic_shm_hdr h;
    const uint8_t *tail;
    size_t tail_len;
    size_t size;
};

/* The oracle's own loops are not worth the fuzzer's comparison tracing (they only slow it). */
#if defined(__clang__)
#define NO_COVERAGE __attribute__((no_sanitize("coverage")))
#else
#define NO_COVERAGE
#endif

/* Is descriptor d of the file a record the reader may hand out for seq? */
NO_COVERAGE static int desc_valid(const struct store *s, const struct tlsnic_shm_desc *d)
{
    return (d->gen & 1) == 0 && d->len != 0 && d->len <= s->h.max_record &&
           d->off <= s->h.data_bytes && d->len <= s->h.data_bytes - d->off;
}

/* 1 if the file's bytes [at, at + len) are p's. */
NO_COVERAGE static int file_equals(const struct store *s, size_t at, const uint8_t *p, size_t len)
{
    if (at > s->size || len > s->size - at)
        return 0;
    for (size_t i = 0; i < len; i++) {
        size_t x = at + i;
        uint8_t b = x < sizeof(s->h)            ? ((const uint8_t *)&s->h)[x]
                    : x < TLSNIC_SHM_HDR_LEN    ? 0
                    : x - TLSNIC_SHM_HDR_LEN < s->tail_len ? s->tail[x - TLSNIC_SHM_HDR_LEN]
                                                : 0;
        if (b != p[i])
            return 0;
    }
    return 1;
}

NO_COVERAGE static const struct tlsnic_shm_desc *file_desc(const struct store *s, uint32_t i,
                                                           struct tlsnic_shm_desc *tmp)
{
    size_t at = TLSNIC_SHM_HDR_LEN + (size_t)i * TLSNIC_SHM_DESC_LEN;
    if (at + sizeof(*tmp) > s->size)
        return NULL;
    memset(tmp, 0, sizeof(*tmp));
    size_t rel = at - TLSNIC_SHM_HDR_LEN;
    if (rel < s->tail_len)
        memcpy(tmp, s->tail + rel, s->tail_len - rel < sizeof(*tmp) ? s->tail_len - rel : sizeof(*tmp));
    return tmp;
}

NO_COVERAGE static void check_lookup(tlsnic_shm_reader *r, const struct store *s, uint32_t seq)
{
    const struct tlsnic_rec_store *st = tlsnic_shm_reader_store(r);
    struct tlsnic_rec_ref ref;
    memset(&ref, 0, sizeof(ref));
    int rc = st->ops->get_record(st->priv, seq, &ref);
    if (rc != 0 && rc != -ENOENT)
        abort();
    uint32_t n = s->h.n_desc;
    size_t ring = tlsnic_shm_data_offset(n);
    if (rc == 0) {
        if (ref.bytes == NULL || !tlsnic_shm_seq_in(seq, ref.tcp_seq, ref.len))
            abort();
        int found = 0;
        for (uint32_t i = 0; i < n && !found; i++) {
            struct tlsnic_shm_desc tmp;
            const struct tlsnic_shm_desc *d = file_desc(s, i, &tmp);
            found = d != NULL && desc_valid(s, d) && d->tcp_seq == ref.tcp_seq &&
                    d->len == ref.len && d->rec_seq == ref.rec_seq &&
                    file_equals(s, ring + d->off, ref.bytes, d->len);
        }
        if (!found)
            abort(); /* a record the store does not hold, or bytes from outside the ring */
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct tlsnic_shm_desc tmp;
        const struct tlsnic_shm_desc *d = file_desc(s, i, &tmp);
        if (d != NULL && desc_valid(s, d) && d->len <= TLSNIC_REC_MAX_WIRE_LEN &&
            tlsnic_shm_seq_in(seq, d->tcp_seq, d->len))
            abort(); /* the host offered the record and the device would not find it */
    }
}

/*
 * The memfd holding the store. Sealed ones are kept for the next input of the same size
 * (creating and destroying a memfd per input was most of the time): only what the last
 * input wrote is zeroed again.
 */
#define CACHED 64
static struct {
    int fd;
    size_t size, dirty; /* bytes from 0 that may not be zero */
} cache[CACHED];

static int store_file(const struct store *s, int sealed)
{
    size_t head = s->size < sizeof(s->h) ? s->size : sizeof(s->h);
    size_t dirty = s->tail_len ? TLSNIC_SHM_HDR_LEN + s->tail_len : head;
    static uint8_t zeros[MAX_FILE];
    int slot = (int)(s->size % CACHED), fd;
    if (sealed && cache[slot].fd > 0 && cache[slot].size == s->size) {
        fd = cache[slot].fd;
        size_t old = cache[slot].dirty;
        if (old > 0 && pwrite(fd, zeros, old, 0) != (ssize_t)old)
            abort();
    } else {
        fd = memfd_create("fuzz-store", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0 || ftruncate(fd, (off_t)s->size) != 0)
            abort();
        if (sealed && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
            abort();
        if (sealed) {
            if (cache[slot].fd > 0)
                close(cache[slot].fd);
            cache[slot].fd = fd;
            cache[slot].size = s->size;
        }
    }
    if (pwrite(fd, &s->h, head, 0) != (ssize_t)head ||
        pwrite(fd, s->tail, s->tail_len, TLSNIC_SHM_HDR_LEN) != (ssize_t)s->tail_len)
        abort();
    if (sealed) /* (the flags word the reader may publish is within the header: dirty) */
        cache[slot].dirty = dirty;
    return fd;
}

/* An RX store the reader took: the device's reads of its status (entries, the host's
 * words) stay within the status, whatever the host wrote there. */
NO_COVERAGE static void check_rx(tlsnic_shm_reader *r, const struct store *s)
{
    const struct tlsnic_rec_store *st = tlsnic_shm_reader_store(r);
    struct tlsnic_rxs *rxs = st->rx_status;
    if (rxs == NULL || rxs->n == 0 || tlsnic_rxs_region_len(rxs->n) > s->h.rx_bytes)
        abort(); /* taken as an RX store without a status that fits its pages */
    uint64_t head = __atomic_load_n(&rxs->hdr->head, __ATOMIC_RELAXED);
    for (uint64_t id = head > 8 ? head - 8 : 0; id < head + 2; id++) {
        struct tlsnic_rxs_entry e;
        (void)tlsnic_rxs_get(rxs, id, &e);
    }
    uint32_t seq;
    (void)tlsnic_rxs_consumed(rxs, &seq);
    (void)tlsnic_rxs_host_epoch(rxs);
    (void)tlsnic_rxs_hi(rxs, &seq);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < PREFIX)
        return 0;
    uint8_t mode = data[0];
    struct store s;
    memset(&s, 0, sizeof(s));
    memcpy(&s.h, data + 1, HDR_IN); /* the header's first six words; the RX ones below */
    if (mode & 1) {
        s.h.magic = TLSNIC_SHM_MAGIC;
        s.h.version = TLSNIC_SHM_VERSION;
    }
    if (mode & 16) {
        s.h.n_desc %= 64;
        s.h.data_bytes %= 4096;
        s.h.max_record %= 4096;
    }
    uint32_t probe = get32(data + 1 + HDR_IN);
    int rx = (mode & 32) != 0;
    if (rx) {
        s.h.rx_bytes = s.h.device_flags;
        s.h.device_flags = 0;
        s.h.rx_offset = (mode & 64) ? (probe >> 24) * TLSNIC_SHM_HDR_LEN : TLSNIC_SHM_RX_OFFSET;
    }
    size_t tail = size - PREFIX;
    size_t natural = TLSNIC_SHM_HDR_LEN + tail;
    size_t layout = rx ? (size_t)s.h.rx_offset + s.h.rx_bytes
                       : tlsnic_shm_data_offset(s.h.n_desc) + (size_t)s.h.data_bytes;
    switch ((mode >> 2) & 3) {
    case 0: s.size = natural; break;
    case 1: s.size = layout; break;
    case 2: s.size = layout + (size_t)(int8_t)data[2]; break;
    default: s.size = probe & 0xffffff; break;
    }
    if (s.size > MAX_FILE)
        s.size = natural;
    s.tail = data + PREFIX;
    s.tail_len = s.size > TLSNIC_SHM_HDR_LEN ? s.size - TLSNIC_SHM_HDR_LEN : 0;
    s.tail_len = tail < s.tail_len ? tail : s.tail_len;

    int sealed = !(mode & 2);
    int fd = store_file(&s, sealed);

    tlsnic_shm_reader *r = NULL;
    wrap_on = 1;
    int rc = tlsnic_shm_reader_open(&r, fd);
    if (rc == 0 && s.h.rx_offset != 0 && s.h.n_desc == 0 && s.h.data_bytes == 0) {
        if (!sealed)
            abort();
        if (s.h.max_record != 0 || s.h.rx_offset != TLSNIC_SHM_RX_OFFSET ||
            s.h.rx_bytes > TLSNIC_SHM_MAX_RX_BYTES || s.h.rx_bytes % TLSNIC_SHM_HDR_LEN != 0 ||
            (size_t)s.h.rx_offset + s.h.rx_bytes > s.size)
            abort(); /* an RX store shm_layout.h does not allow was taken */
        check_rx(r, &s);
        tlsnic_shm_reader_free(r);
    } else if (rc == 0) {
        if (!sealed)
            abort(); /* the host could shrink the file under the daemon */
        if (s.h.n_desc == 0 || tlsnic_shm_data_offset(s.h.n_desc) + (size_t)s.h.data_bytes > s.size)
            abort(); /* a header that does not fit the file was taken */
        if (s.h.rx_offset != 0 || s.h.rx_bytes != 0)
            abort(); /* a record store with an RX status was taken */
        /* Each lookup walks every descriptor (the reader's and the oracle's): with many of
           them, fewer lookups, or the fuzzer crawls. */
        uint32_t n = s.h.n_desc < MAX_PROBED_DESC ? s.h.n_desc : MAX_PROBED_DESC;
        if ((size_t)n * s.h.n_desc > 1024)
            n = 1024 / s.h.n_desc;
        for (uint32_t i = 0; i < n; i++) {
            struct tlsnic_shm_desc tmp;
            const struct tlsnic_shm_desc *d = file_desc(&s, i, &tmp);
            if (d == NULL)
                break;
            check_lookup(r, &s, d->tcp_seq);
            check_lookup(r, &s, d->tcp_seq + d->len / 2);
            check_lookup(r, &s, d->tcp_seq + d->len - 1);
            check_lookup(r, &s, d->tcp_seq + d->len);
        }
        if (s.h.n_desc <= 16384 || (probe & 0xf000) == 0)
            check_lookup(r, &s, probe);
        uint32_t flags = probe & 0x7;
        if (tlsnic_shm_reader_publish_flags(r, flags) == 0) {
            uint32_t word;
            if (pread(fd, &word, 4, TLSNIC_SHM_FLAGS_OFFSET) != 4 ||
                word != (flags | TLSNIC_FLOW_F_LIVE))
                abort();
            /* nothing but the flags word changed (in the page the daemon may write) */
            uint8_t now[TLSNIC_SHM_HDR_LEN];
            if (pread(fd, now, sizeof(now), 0) != (ssize_t)sizeof(now))
                abort();
            memcpy(now + TLSNIC_SHM_FLAGS_OFFSET, &s.h.device_flags, 4);
            if (!file_equals(&s, 0, now, sizeof(now)))
                abort();
        }
        tlsnic_shm_reader_free(r);
    } else if (rc != -EBADMSG && rc != -EPERM && rc != -ENOMEM && rc != -EINVAL) {
        abort();
    } else if (!sealed && rc != -EPERM) {
        abort();
    }
    wrap_on = 0;
    for (int i = 0; i < MAX_FAKE; i++)
        if (fakes[i].p != NULL)
            abort(); /* a mapping the reader did not give back */
    if (!sealed)
        close(fd);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Well-formed stores: four records in a 256-byte ring, and broken descriptors beside them.   */

size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap)
{
    if (i == 4 || i == 5) {
        /* RX stores: a formatted 16-entry status with two entries and a resync request
         * published (5: the same, its header naming a status one page longer than the file). */
        size_t rx_bytes = tlsnic_shm_rx_bytes(16);
        size_t len = PREFIX + rx_bytes;
        if (cap < len)
            return 0;
        memset(buf, 0, len);
        buf[0] = (uint8_t)(1 | 32); /* file size: the input's (5: a page short of the status) */
        struct tlsnic_shm_hdr h = {.magic = TLSNIC_SHM_MAGIC, .version = TLSNIC_SHM_VERSION,
                                   .device_flags = (uint32_t)(rx_bytes + (i == 5 ? 4096 : 0))};
        memcpy(buf + 1, &h, HDR_IN);
        static _Alignas(64) uint8_t region[4096]; /* (the input itself is not aligned) */
        if (rx_bytes > sizeof(region))
            abort();
        memset(region, 0, sizeof(region));
        if (tlsnic_rxs_format(region, 16) != 0)
            abort();
        struct tlsnic_rxs v;
        struct tlsnic_rxs_host host = {0};
        if (tlsnic_rxs_view(&v, region, rx_bytes, &host) != 0)
            abort();
        struct tlsnic_rxs_entry e = {.tcp_seq = 5000, .len = 100, .rec_seq = 7, .hn = 13,
                                     .state = TLSNIC_RXS_STATE(71, TLSNIC_RXS_OK)};
        tlsnic_rxs_put(&v, 0, &e);
        e.tcp_seq = 5100;
        e.rec_seq = 8;
        tlsnic_rxs_put(&v, 1, &e);
        tlsnic_rxs_request(&v, 5200);
        memcpy(buf + PREFIX, region, rx_bytes);
        return len;
    }
    if (i >= 4 || cap < PREFIX + 4 * 24 + 64 + 256)
        return 0;
    struct tlsnic_shm_hdr h = {.magic = TLSNIC_SHM_MAGIC, .version = TLSNIC_SHM_VERSION,
                               .n_desc = 4, .data_bytes = 256, .max_record = 128};
    memset(buf, 0, PREFIX + 4 * 24 + 64 + 256);
    buf[0] = (uint8_t)(i == 0 ? 1 << 2 : i == 1 ? 2 << 2 : i == 2 ? 0 : 2);
    memcpy(buf + 1, &h, sizeof(h));
    if (i == 1)
        buf[2] = (uint8_t)-1; /* layout - 1: one byte short */
    uint32_t probe = 5000 + 10;
    memcpy(buf + 1 + HDR_IN, &probe, 4);
    struct tlsnic_shm_desc d[4] = {
        {.gen = 2, .tcp_seq = 5000, .len = 100, .off = 0, .rec_seq = 7},
        {.gen = 4, .tcp_seq = 5100, .len = 100, .off = 100, .rec_seq = 8},
        {.gen = 3, .tcp_seq = 5200, .len = 50, .off = 200, .rec_seq = 9},  /* being written */
        {.gen = 0, .tcp_seq = 5250, .len = 80, .off = 200, .rec_seq = 10}, /* past the ring */
    };
    if (i == 2)
        d[1].len = 200; /* longer than max_record */
    memcpy(buf + PREFIX, d, sizeof(d));
    size_t ring_at = PREFIX + tlsnic_shm_data_offset(4) - TLSNIC_SHM_HDR_LEN;
    for (size_t k = 0; k < 256; k++)
        buf[ring_at + k] = (uint8_t)(k * 7 + 1);
    return ring_at + 256;
}
