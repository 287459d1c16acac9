/*
 * Shared-memory record store: the daemon finds the retained record that contains any TCP
 * sequence number, never a released one, never a torn one, and refuses a store it could
 * not map safely.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tlsnic/rx_status.h"
#include "tlsnic/shm_reader.h"
#include "tlsnic/shm_writer.h"

struct pair {
    tlsnic_shm_writer *w;
    tlsnic_shm_reader *r;
};

static int setup(void **state)
{
    struct pair *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    assert_int_equal(tlsnic_shm_writer_new(&p->w, 4, 1024), 0);
    int fd = tlsnic_shm_store_fd(tlsnic_shm_writer_store(p->w));
    assert_true(fd >= 0);
    assert_int_equal(tlsnic_shm_reader_open(&p->r, fd), 0);
    *state = p;
    return 0;
}

static int teardown(void **state)
{
    struct pair *p = *state;
    tlsnic_shm_reader_free(p->r);
    tlsnic_shm_writer_free(p->w);
    free(p);
    return 0;
}

/* get_record of a reader's store for seq: its answer. */
static int reader_get(tlsnic_shm_reader *r, uint32_t seq, struct tlsnic_rec_ref *ref)
{
    const struct tlsnic_rec_store *st = tlsnic_shm_reader_store(r);
    return st->ops->get_record(st->priv, seq, ref);
}

static int get(struct pair *p, uint32_t seq, struct tlsnic_rec_ref *ref)
{
    return reader_get(p->r, seq, ref);
}

/* The memfd of a writer's store. */
static int store_fd(tlsnic_shm_writer *w)
{
    return tlsnic_shm_store_fd(tlsnic_shm_writer_store(w));
}

/* The whole store behind fd, mapped shared with prot; its length in *len. */
static uint8_t *map_store(int fd, int prot, size_t *len)
{
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    *len = (size_t)sb.st_size;
    uint8_t *map = mmap(NULL, *len, prot, MAP_SHARED, fd, 0);
    assert_true(map != MAP_FAILED);
    return map;
}

/* The connection gives its store up and the next one takes a store of the same size: the
 * pool hands it the same one (fd). */
static tlsnic_shm_writer *give_up_and_take_again(tlsnic_shm_writer *w, uint32_t slots,
                                                 uint32_t room, int fd)
{
    tlsnic_shm_writer_free(w);
    tlsnic_shm_writer *again = NULL;
    assert_int_equal(tlsnic_shm_writer_new(&again, slots, room), 0);
    assert_int_equal(store_fd(again), fd); /* the kept one */
    return again;
}

static void the_record_containing_a_sequence_is_found(void **state)
{
    struct pair *p = *state;
    uint8_t a[100], b[200];
    memset(a, 'a', sizeof(a));
    memset(b, 'b', sizeof(b));
    assert_int_equal(tlsnic_shm_writer_put(p->w, 1000, 7, a, sizeof(a)), 0);
    assert_int_equal(tlsnic_shm_writer_put(p->w, 1100, 8, b, sizeof(b)), 0);
    struct tlsnic_rec_ref ref;
    assert_int_equal(get(p, 1150, &ref), 0);
    assert_int_equal(ref.tcp_seq, 1100);
    assert_int_equal(ref.len, 200);
    assert_int_equal(ref.rec_seq, 8);
    assert_memory_equal(ref.bytes, b, sizeof(b));
    assert_int_equal(get(p, 1099, &ref), 0);
    assert_int_equal(ref.rec_seq, 7);
    assert_int_equal(get(p, 1300, &ref), -ENOENT);
    assert_int_equal(get(p, 999, &ref), -ENOENT);
}

static void released_records_are_gone_and_their_room_reused(void **state)
{
    struct pair *p = *state;
    uint8_t rec[50] = {0};
    for (uint32_t i = 0; i < 4; i++)
        assert_int_equal(tlsnic_shm_writer_put(p->w, 100 * i, i, rec, sizeof(rec)), 0);
    assert_int_equal(tlsnic_shm_writer_put(p->w, 400, 4, rec, sizeof(rec)), -ENOSPC);
    tlsnic_shm_writer_release(p->w, 150); /* ends at 50 and 150: released */
    struct tlsnic_rec_ref ref;
    assert_int_equal(get(p, 120, &ref), -ENOENT);
    assert_int_equal(get(p, 220, &ref), 0);
    assert_int_equal(tlsnic_shm_writer_put(p->w, 400, 4, rec, sizeof(rec)), 0);
    assert_int_equal(tlsnic_shm_writer_put(p->w, 500, 5, rec, sizeof(rec)), 0);
}

static void sequence_numbers_wrap(void **state)
{
    struct pair *p = *state;
    uint8_t rec[100] = {0};
    assert_int_equal(tlsnic_shm_writer_put(p->w, 0xffffffc0u, 1, rec, sizeof(rec)), 0);
    struct tlsnic_rec_ref ref;
    assert_int_equal(get(p, 0x10, &ref), 0);
    assert_int_equal(ref.tcp_seq, 0xffffffc0u);
    tlsnic_shm_writer_release(p->w, 0x10); /* before its end (0x24) */
    assert_int_equal(get(p, 0x10, &ref), 0);
    tlsnic_shm_writer_release(p->w, 0x24);
    assert_int_equal(get(p, 0x10, &ref), -ENOENT);
}

static void a_record_longer_than_the_store_allows_is_refused(void **state)
{
    struct pair *p = *state;
    static uint8_t big[1025];
    assert_int_equal(tlsnic_shm_writer_put(p->w, 0, 0, big, sizeof(big)), -EMSGSIZE);
    assert_int_equal(tlsnic_shm_writer_put(p->w, 0, 0, big, 0), -EMSGSIZE);
}

static void a_reserved_record_is_invisible_until_committed(void **state)
{
    struct pair *p = *state;
    uint8_t *room = NULL;
    struct tlsnic_rec_ref ref;
    assert_int_equal(tlsnic_shm_writer_reserve(p->w, 300, &room), 0);
    memset(room, 'r', 300);
    assert_int_equal(get(p, 2000, &ref), -ENOENT);
    tlsnic_shm_writer_commit(p->w, 2000, 9, 300);
    assert_int_equal(get(p, 2299, &ref), 0);
    assert_int_equal(ref.tcp_seq, 2000);
    assert_int_equal(ref.rec_seq, 9);
    assert_int_equal(ref.len, 300);
    assert_memory_equal(ref.bytes, room, 300);
}

static void a_committed_room_stays_put_until_released(void **state)
{
    struct pair *p = *state;
    uint8_t *room[4], *again = NULL;
    /* 4 records of 250 bytes fill the 4 descriptors and [0, 1000) of the 1024-byte ring. */
    for (uint32_t i = 0; i < 4; i++) {
        assert_int_equal(tlsnic_shm_writer_reserve(p->w, 250, &room[i]), 0);
        memset(room[i], 'a' + (int)i, 250);
        tlsnic_shm_writer_commit(p->w, 250 * i, i, 250);
    }
    for (uint32_t i = 1; i < 4; i++)
        assert_ptr_equal(room[i], room[i - 1] + 250);
    assert_int_equal(tlsnic_shm_writer_reserve(p->w, 10, &again), -ENOSPC);
    for (uint32_t i = 0; i < 4; i++)
        for (int b = 0; b < 250; b++)
            assert_int_equal(room[i][b], 'a' + (int)i);
    /* The first acknowledged: its bytes, and only they, are the next room. */
    tlsnic_shm_writer_release(p->w, 250);
    assert_int_equal(tlsnic_shm_writer_reserve(p->w, 200, &again), 0);
    assert_ptr_equal(again, room[0]);
    for (uint32_t i = 1; i < 4; i++)
        for (int b = 0; b < 250; b++)
            assert_int_equal(room[i][b], 'a' + (int)i);
}

static void reserve_refuses_a_second_reservation_and_bad_lengths(void **state)
{
    struct pair *p = *state;
    uint8_t *room = NULL, *other = NULL;
    assert_int_equal(tlsnic_shm_writer_reserve(p->w, 0, &room), -EMSGSIZE);
    assert_int_equal(tlsnic_shm_writer_reserve(p->w, 1025, &room), -EMSGSIZE);
    assert_int_equal(tlsnic_shm_writer_reserve(p->w, 10, &room), 0);
    assert_int_equal(tlsnic_shm_writer_reserve(p->w, 10, &other), -EBUSY);
    uint8_t rec[10] = {0};
    assert_int_equal(tlsnic_shm_writer_put(p->w, 0, 0, rec, sizeof(rec)), -EBUSY);
    tlsnic_shm_writer_commit(p->w, 0, 0, 10);
    assert_int_equal(tlsnic_shm_writer_put(p->w, 10, 1, rec, sizeof(rec)), 0);
}

static void a_store_given_up_comes_back_wiped_and_empty(void **state)
{
    (void)state;
    tlsnic_shm_writer *w = NULL, *again = NULL;
    assert_int_equal(tlsnic_shm_writer_new(&w, 3, 1200), 0);
    uint8_t rec[400];
    memset(rec, 'p', sizeof(rec));
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(tlsnic_shm_writer_put(w, 400 * i, i, rec, sizeof(rec)), 0);
    int fd = store_fd(w);
    tlsnic_shm_writer_free(w);
    assert_int_equal(tlsnic_shm_writer_new(&again, 3, 1200), 0);
    int fd_again = store_fd(again);
    tlsnic_shm_reader *r = NULL;
    assert_int_equal(tlsnic_shm_reader_open(&r, fd_again), 0);
    struct tlsnic_rec_ref ref;
    for (uint32_t seq = 0; seq < 1200; seq += 100)
        assert_int_equal(reader_get(r, seq, &ref), -ENOENT);
    assert_int_equal(fd_again, fd); /* the same store, kept: no page to fault in again */
    /* No byte of the old plaintext is left in it. */
    size_t map_len;
    uint8_t *map = map_store(fd_again, PROT_READ, &map_len);
    for (size_t i = 0; i < map_len; i++)
        assert_int_not_equal(map[i], 'p');
    munmap(map, map_len);
    /* Empty: all three slots take records again. */
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(tlsnic_shm_writer_put(again, 5000 + 400 * i, i, rec, sizeof(rec)), 0);
    assert_int_equal(tlsnic_shm_writer_put(again, 9000, 9, rec, sizeof(rec)), -ENOSPC);
    tlsnic_shm_reader_free(r);
    tlsnic_shm_writer_free(again);
}

/*
 * A forked child that wrote into a store and was killed between the two halves of a
 * descriptor update leaves its gen odd; the parent's pool hands the same memfd to its next
 * connection. The writer must still publish records with an even gen (a toggling writer
 * would mark them odd, unreadable, and mark its writes in progress as stable).
 */
static void a_pooled_store_left_half_written_by_another_process_still_publishes_records(void **state)
{
    (void)state;
    tlsnic_shm_writer *w = NULL;
    assert_int_equal(tlsnic_shm_writer_new(&w, 2, 1300), 0);
    int fd = store_fd(w);
    size_t map_len;
    uint8_t *map = map_store(fd, PROT_READ | PROT_WRITE, &map_len);
    struct tlsnic_shm_desc *d0 = (struct tlsnic_shm_desc *)(map + TLSNIC_SHM_HDR_LEN);
    d0->gen = 7; /* the other process's update, never finished */
    munmap(map, map_len);
    w = give_up_and_take_again(w, 2, 1300, fd);
    uint8_t rec[300];
    memset(rec, 'q', sizeof(rec));
    assert_int_equal(tlsnic_shm_writer_put(w, 100, 1, rec, sizeof(rec)), 0);
    tlsnic_shm_reader *r = NULL;
    assert_int_equal(tlsnic_shm_reader_open(&r, fd), 0);
    struct tlsnic_rec_ref ref;
    assert_int_equal(reader_get(r, 150, &ref), 0);
    assert_int_equal(ref.rec_seq, 1);
    assert_memory_equal(ref.bytes, rec, sizeof(rec));
    tlsnic_shm_reader_free(r);
    tlsnic_shm_writer_free(w);
}

/*
 * A forked child that put a record into the store (the parent's own counters never saw it)
 * leaves it in the shared pages. Given up and handed to the next connection, the store must
 * show no such record: a reader would otherwise serve it, and copy its room while the new
 * writer reuses it (a torn record the seqlock cannot see: nobody moves that gen).
 */
static void a_pooled_store_shows_no_record_another_process_left_in_it(void **state)
{
    (void)state;
    tlsnic_shm_writer *w = NULL;
    assert_int_equal(tlsnic_shm_writer_new(&w, 2, 1400), 0);
    int fd = store_fd(w);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        uint8_t rec[500];
        memset(rec, 'c', sizeof(rec));
        _exit(tlsnic_shm_writer_put(w, 7000, 3, rec, sizeof(rec)) == 0 ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    w = give_up_and_take_again(w, 2, 1400, fd);
    tlsnic_shm_reader *r = NULL;
    assert_int_equal(tlsnic_shm_reader_open(&r, fd), 0);
    struct tlsnic_rec_ref ref;
    assert_int_equal(reader_get(r, 7100, &ref), -ENOENT);
    tlsnic_shm_reader_free(r);
    tlsnic_shm_writer_free(w);
}

static void flags_the_reader_publishes_are_what_the_writer_reads(void **state)
{
    struct pair *p = *state;
    assert_int_equal(tlsnic_shm_writer_device_flags(p->w), 0);
    assert_int_equal(tlsnic_shm_reader_publish_flags(p->r, TLSNIC_FLOW_F_NO_SYNC), 0);
    assert_int_equal(tlsnic_shm_writer_device_flags(p->w), TLSNIC_FLOW_F_LIVE | TLSNIC_FLOW_F_NO_SYNC);
    /* Given up and taken again, the store forgets them: the next flow starts unpublished. */
    int fd = store_fd(p->w);
    tlsnic_shm_writer_free(p->w);
    assert_int_equal(tlsnic_shm_writer_new(&p->w, 4, 1024), 0);
    assert_int_equal(store_fd(p->w), fd);
    assert_int_equal(tlsnic_shm_writer_device_flags(p->w), 0);
}

static void only_a_writers_store_names_a_memfd(void **state)
{
    struct pair *p = *state;
    assert_true(store_fd(p->w) >= 0);
    assert_int_equal(tlsnic_shm_store_fd(tlsnic_shm_reader_store(p->r)), -1);
    assert_int_equal(tlsnic_shm_store_fd(NULL), -1);
}

static void an_unsealed_memfd_is_refused(void **state)
{
    (void)state;
    int fd = memfd_create("unsealed", MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 1 << 16), 0);
    tlsnic_shm_reader *r;
    assert_int_equal(tlsnic_shm_reader_open(&r, fd), -EPERM);
    close(fd);
    int pp[2];
    assert_int_equal(pipe(pp), 0);
    assert_int_equal(tlsnic_shm_reader_open(&r, pp[0]), -EPERM);
    close(pp[0]);
    close(pp[1]);
}

/* A sealed memfd holding hdr (and zeros up to size). */
static int crafted_store(const void *hdr, size_t hdr_len, size_t size)
{
    int fd = memfd_create("crafted", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    assert_int_equal(pwrite(fd, hdr, hdr_len, 0), (ssize_t)hdr_len);
    assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    return fd;
}

static void a_header_that_does_not_fit_the_file_is_refused(void **state)
{
    (void)state;
    uint32_t hdr[6] = {TLSNIC_SHM_MAGIC, TLSNIC_SHM_VERSION, 1000, 16384, 0, 16384};
    int fd = crafted_store(hdr, sizeof(hdr), 8192);
    tlsnic_shm_reader *r;
    assert_int_equal(tlsnic_shm_reader_open(&r, fd), -EBADMSG);
    close(fd);
    uint32_t bad_magic[6] = {0x12345678, TLSNIC_SHM_VERSION, 1, 64, 0, 64};
    fd = crafted_store(bad_magic, sizeof(bad_magic), 8192);
    assert_int_equal(tlsnic_shm_reader_open(&r, fd), -EBADMSG);
    close(fd);
    /* A largest record larger than the ring cannot be. */
    uint32_t big_record[6] = {TLSNIC_SHM_MAGIC, TLSNIC_SHM_VERSION, 1, 64, 0, 65};
    fd = crafted_store(big_record, sizeof(big_record), 8192);
    assert_int_equal(tlsnic_shm_reader_open(&r, fd), -EBADMSG);
    close(fd);
}

static void a_commit_longer_than_its_reservation_keeps_the_record_out(void **state)
{
    struct pair *p = *state;
    uint8_t *room = NULL, *next = NULL;
    struct tlsnic_rec_ref ref;
    /* Two 300-byte rooms back to back: a commit of 400 for the first would claim bytes of
     * the second. */
    assert_int_equal(tlsnic_shm_writer_reserve(p->w, 300, &room), 0);
    memset(room, 'a', 300);
    assert_int_equal(tlsnic_shm_writer_commit(p->w, 1000, 1, 400), -EMSGSIZE);
    assert_int_equal(get(p, 1000, &ref), -ENOENT);
    assert_int_equal(tlsnic_shm_writer_commit(p->w, 1000, 1, 300), -EINVAL); /* closed */
    assert_int_equal(tlsnic_shm_writer_reserve(p->w, 300, &room), 0);
    assert_int_equal(tlsnic_shm_writer_commit(p->w, 1000, 1, 0), -EMSGSIZE);
    /* The store is as it was: the same room again, taken at its length or shorter. */
    assert_int_equal(tlsnic_shm_writer_reserve(p->w, 300, &next), 0);
    assert_ptr_equal(next, room);
    assert_int_equal(tlsnic_shm_writer_commit(p->w, 1000, 1, 250), 0);
    assert_int_equal(get(p, 1249, &ref), 0);
    assert_int_equal(ref.len, 250);
    assert_int_equal(get(p, 1250, &ref), -ENOENT);
}

/* The refusal of a crafted header, with the reason the daemon would give. */
static int refused_header(uint32_t n_desc, uint32_t data_bytes, uint32_t max_record,
                          size_t file_size, char *why, size_t cap)
{
    uint32_t hdr[6] = {TLSNIC_SHM_MAGIC, TLSNIC_SHM_VERSION, n_desc, data_bytes, 0, max_record};
    int fd = crafted_store(hdr, sizeof(hdr), file_size);
    tlsnic_shm_reader *r = NULL;
    int rc = tlsnic_shm_reader_open_why(&r, fd, why, cap);
    if (rc == 0)
        tlsnic_shm_reader_free(r);
    close(fd);
    return rc;
}

static void absurd_headers_are_refused_with_a_reason(void **state)
{
    (void)state;
    char why[200];
    /* The largest record of a TLS stream is TLSNIC_SHM_MAX_RECORD_LEN: 1 GB is no record. */
    assert_int_equal(refused_header(4, 64u << 20, 1u << 30, TLSNIC_SHM_HDR_LEN + 4096, why,
                                    sizeof(why)), -EBADMSG);
    assert_non_null(strstr(why, "largest record of 1073741824 bytes"));
    assert_int_equal(refused_header(4, 1u << 20, TLSNIC_SHM_MAX_RECORD_LEN + 1,
                                    TLSNIC_SHM_HDR_LEN + 4096, why, sizeof(why)), -EBADMSG);
    assert_non_null(strstr(why, "largest record"));
    /* A data ring past any send buffer. */
    assert_int_equal(refused_header(4, TLSNIC_SHM_MAX_DATA_BYTES + 1, 1000,
                                    TLSNIC_SHM_HDR_LEN + 4096, why, sizeof(why)), -EBADMSG);
    assert_non_null(strstr(why, "data ring of"));
    /* Too many descriptors. */
    assert_int_equal(refused_header(TLSNIC_SHM_MAX_RECORDS + 1, 4096, 1000,
                                    TLSNIC_SHM_HDR_LEN + 4096, why, sizeof(why)), -EBADMSG);
    assert_non_null(strstr(why, "descriptors"));
    /* Within the limits but larger than the file. */
    assert_int_equal(refused_header(4, 1u << 20, 1000, TLSNIC_SHM_HDR_LEN + 4096, why,
                                    sizeof(why)), -EBADMSG);
    assert_non_null(strstr(why, "the store needs"));
    /* ... and the same sizes in a file that holds them are a store. */
    assert_int_equal(refused_header(4, 1u << 20, TLSNIC_SHM_MAX_RECORD_LEN,
                                    tlsnic_shm_data_offset(4) + (1u << 20), why, sizeof(why)), 0);
}

/* The length of this process's mapping of memfd `name`, or 0 if none. */
static size_t mapped_length(const char *name)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    assert_non_null(maps);
    char line[512];
    size_t len = 0;
    while (fgets(line, sizeof(line), maps) != NULL) {
        unsigned long lo, hi;
        if (strstr(line, name) != NULL && strstr(line, " r--s ") != NULL &&
            sscanf(line, "%lx-%lx", &lo, &hi) == 2)
            len += hi - lo;
    }
    fclose(maps);
    return len;
}

static void the_reader_maps_what_the_header_names_not_the_whole_file(void **state)
{
    (void)state;
    /* A 64 MB memfd whose header names a store of 4 descriptors and a 64 KB ring. */
    uint32_t hdr[6] = {TLSNIC_SHM_MAGIC, TLSNIC_SHM_VERSION, 4, 65536, 0, 16384};
    int fd = memfd_create("tlsnic-oversized", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 64 << 20), 0);
    assert_int_equal(pwrite(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
    assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    tlsnic_shm_reader *r = NULL;
    assert_int_equal(tlsnic_shm_reader_open(&r, fd), 0);
    size_t want = (tlsnic_shm_data_offset(4) + 65536 + 4095) & ~(size_t)4095;
    assert_int_equal(mapped_length("tlsnic-oversized"), want);
    tlsnic_shm_reader_free(r);
    assert_int_equal(mapped_length("tlsnic-oversized"), 0);
    close(fd);
}

/* An RX store's header (no records, an RX status at rx_offset of rx_bytes) in a memfd of
 * file_size bytes, the status formatted with n_entries entries when n_entries != 0. */
static int rx_store_image(uint32_t max_record, uint32_t rx_offset, uint32_t rx_bytes,
                          uint32_t n_entries, size_t file_size)
{
    struct tlsnic_shm_hdr h = {.magic = TLSNIC_SHM_MAGIC, .version = TLSNIC_SHM_VERSION,
                               .max_record = max_record, .rx_offset = rx_offset,
                               .rx_bytes = rx_bytes};
    int fd = memfd_create("tlsnic-rx-image", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)file_size), 0);
    assert_int_equal(pwrite(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
    if (n_entries != 0) {
        size_t len = tlsnic_rxs_region_len(n_entries);
        void *region = calloc(1, len);
        assert_non_null(region);
        assert_int_equal(tlsnic_rxs_format(region, n_entries), 0);
        assert_int_equal(pwrite(fd, region, len, rx_offset), (ssize_t)len);
        free(region);
    }
    assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    return fd;
}

static int open_why(int fd, char *why, size_t cap)
{
    tlsnic_shm_reader *r = NULL;
    int rc = tlsnic_shm_reader_open_why(&r, fd, why, cap);
    if (rc == 0)
        tlsnic_shm_reader_free(r);
    close(fd);
    return rc;
}

/* The RX status is host memory the daemon maps writable: its size is bounded like the
 * ring's (TLSNIC_SHM_MAX_RX_BYTES), and a store is an RX store or a record store, not both. */
static void rx_store_headers_past_the_limits_are_refused(void **state)
{
    (void)state;
    char why[200];
    const uint32_t ok_bytes = (uint32_t)tlsnic_shm_rx_bytes(64);
    /* A status larger than the limit, in a file that holds it. */
    uint32_t huge = TLSNIC_SHM_MAX_RX_BYTES + TLSNIC_SHM_HDR_LEN;
    assert_int_equal(open_why(rx_store_image(0, TLSNIC_SHM_RX_OFFSET, huge, 0,
                                             TLSNIC_SHM_RX_OFFSET + (size_t)huge), why, sizeof(why)),
                     -EBADMSG);
    assert_non_null(strstr(why, "RX status of"));
    /* Not whole pages; smaller than the smallest status. */
    assert_int_equal(open_why(rx_store_image(0, TLSNIC_SHM_RX_OFFSET, ok_bytes + 1, 0, 1u << 20),
                              why, sizeof(why)), -EBADMSG);
    assert_int_equal(open_why(rx_store_image(0, TLSNIC_SHM_RX_OFFSET, 0, 0, 1u << 20), why,
                              sizeof(why)), -EBADMSG);
    /* Elsewhere than the page after the header, or with records. */
    assert_int_equal(open_why(rx_store_image(0, 2 * TLSNIC_SHM_HDR_LEN, ok_bytes, 0, 1u << 20),
                              why, sizeof(why)), -EBADMSG);
    assert_non_null(strstr(why, "RX store"));
    assert_int_equal(open_why(rx_store_image(16384, TLSNIC_SHM_RX_OFFSET, ok_bytes, 64, 1u << 20),
                              why, sizeof(why)), -EBADMSG);
    /* Past the end of the file. */
    assert_int_equal(open_why(rx_store_image(0, TLSNIC_SHM_RX_OFFSET, ok_bytes, 0,
                                             TLSNIC_SHM_RX_OFFSET + ok_bytes - 4096), why, sizeof(why)),
                     -EBADMSG);
    assert_non_null(strstr(why, "needs"));
    /* A record store that also names an RX status. */
    uint32_t both[8] = {TLSNIC_SHM_MAGIC, TLSNIC_SHM_VERSION, 4, 65536, 0, 16384,
                        TLSNIC_SHM_RX_OFFSET, ok_bytes};
    assert_int_equal(open_why(crafted_store(both, sizeof(both), 1u << 20), why, sizeof(why)),
                     -EBADMSG);
    assert_non_null(strstr(why, "with an RX status"));
    /* ... and a good one, formatted, is an RX store. */
    assert_int_equal(open_why(rx_store_image(0, TLSNIC_SHM_RX_OFFSET, ok_bytes, 64,
                                             TLSNIC_SHM_RX_OFFSET + ok_bytes), why, sizeof(why)), 0);
    /* The host never asks for more than the daemon maps. */
    tlsnic_shm_writer *w;
    assert_int_equal(tlsnic_shm_writer_new_rx(&w, TLSNIC_RXS_MAX_ENTRIES), 0);
    assert_int_equal(tlsnic_shm_writer_rx_status(w)->n, TLSNIC_SHM_MAX_RX_ENTRIES);
    tlsnic_shm_reader *r;
    assert_int_equal(tlsnic_shm_reader_open(&r, tlsnic_shm_store_fd(tlsnic_shm_writer_store(w))), 0);
    assert_non_null(tlsnic_shm_reader_store(r)->rx_status);
    tlsnic_shm_reader_free(r);
    tlsnic_shm_writer_free(w);
}

/* The length of this process's shared mappings of memfd `name` (any protection), or 0. */
static size_t mapped_length_any(const char *name)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    assert_non_null(maps);
    char line[512];
    size_t len = 0;
    while (fgets(line, sizeof(line), maps) != NULL) {
        unsigned long lo, hi;
        if (strstr(line, name) != NULL && strstr(line, "s ") != NULL &&
            sscanf(line, "%lx-%lx", &lo, &hi) == 2)
            len += hi - lo;
    }
    fclose(maps);
    return len;
}

/* An RX store in a 64 MB memfd: the daemon maps its header page (read-only, and once more
 * writable: the host's words, device_flags) and the status the header names, nothing else. */
static void the_reader_maps_an_rx_stores_header_and_status_only(void **state)
{
    (void)state;
    const uint32_t rx_bytes = (uint32_t)tlsnic_shm_rx_bytes(64);
    int fd = rx_store_image(0, TLSNIC_SHM_RX_OFFSET, rx_bytes, 64, 64u << 20);
    tlsnic_shm_reader *r = NULL;
    assert_int_equal(tlsnic_shm_reader_open(&r, fd), 0);
    assert_int_equal(mapped_length_any("tlsnic-rx-image"),
                     TLSNIC_SHM_HDR_LEN + TLSNIC_SHM_HDR_LEN + rx_bytes);
    tlsnic_shm_reader_free(r);
    assert_int_equal(mapped_length_any("tlsnic-rx-image"), 0);
    close(fd);
}

/* A store image of one descriptor and a 64-byte ring; returns its sealed memfd. */
static int one_record_image(uint32_t tcp_seq, uint32_t len, uint32_t off)
{
    static uint8_t image[TLSNIC_SHM_HDR_LEN + 64 + 64];
    memset(image, 0, sizeof(image));
    uint32_t hdr[6] = {TLSNIC_SHM_MAGIC, TLSNIC_SHM_VERSION, 1, 64, 0, 64};
    memcpy(image, hdr, sizeof(hdr));
    uint32_t desc[4] = {0 /* gen */, tcp_seq, len, off};
    memcpy(image + TLSNIC_SHM_HDR_LEN, desc, sizeof(desc));
    return crafted_store(image, sizeof(image), sizeof(image));
}

static void a_descriptor_claiming_bytes_past_the_ring_is_not_read(void **state)
{
    (void)state;
    const uint32_t bad[][2] = {{1u << 30, 0}, {65, 0}, {10, 60}, {1, 64}, {8, 0xfffffffcu}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int fd = one_record_image(1000, bad[i][0], bad[i][1]);
        tlsnic_shm_reader *r;
        assert_int_equal(tlsnic_shm_reader_open(&r, fd), 0);
        struct tlsnic_rec_ref ref;
        assert_int_equal(reader_get(r, 1000, &ref), -ENOENT);
        tlsnic_shm_reader_free(r);
        close(fd);
    }
    /* ... while one inside it is read: the image is right. */
    int fd = one_record_image(1000, 10, 54);
    tlsnic_shm_reader *r;
    assert_int_equal(tlsnic_shm_reader_open(&r, fd), 0);
    struct tlsnic_rec_ref ref;
    assert_int_equal(reader_get(r, 1009, &ref), 0);
    assert_int_equal(ref.len, 10);
    tlsnic_shm_reader_free(r);
    close(fd);
}

static void records_are_packed_and_wrap_to_the_start_of_the_ring(void **state)
{
    (void)state;
    tlsnic_shm_writer *w;
    assert_int_equal(tlsnic_shm_writer_new(&w, 16, 1000), 0);
    uint8_t *room[5];
    uint32_t seq = 0;
    /* 3 x 300 bytes fill [0, 900); a 4th does not fit before the end nor before the
       oldest record: the store is full by bytes with descriptors to spare. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tlsnic_shm_writer_reserve(w, 300, &room[i]), 0);
        memset(room[i], 'a' + i, 300);
        tlsnic_shm_writer_commit(w, seq, (uint64_t)i, 300);
        seq += 300;
    }
    assert_ptr_equal(room[1], room[0] + 300);
    assert_ptr_equal(room[2], room[0] + 600);
    assert_int_equal(tlsnic_shm_writer_reserve(w, 300, &room[3]), -ENOSPC);
    /* The oldest acknowledged: the next record starts at the ring's start. */
    tlsnic_shm_writer_release(w, 300);
    assert_int_equal(tlsnic_shm_writer_reserve(w, 250, &room[3]), 0);
    assert_ptr_equal(room[3], room[0]);
    memset(room[3], 'd', 250);
    tlsnic_shm_writer_commit(w, seq, 3, 250);
    seq += 250;
    /* Between its end (250) and the oldest record (300) only 49 bytes are free. */
    assert_int_equal(tlsnic_shm_writer_reserve(w, 50, &room[4]), -ENOSPC);
    assert_int_equal(tlsnic_shm_writer_reserve(w, 40, &room[4]), 0);
    assert_ptr_equal(room[4], room[0] + 250);
    memset(room[4], 'e', 40);
    tlsnic_shm_writer_commit(w, seq, 4, 40);
    /* Every record still held reads back whole, by any of its sequence numbers. */
    tlsnic_shm_reader *r;
    assert_int_equal(tlsnic_shm_reader_open(&r, store_fd(w)), 0);
    const struct {
        uint32_t seq, len;
        char fill;
    } want[] = {{300, 300, 'b'}, {600, 300, 'c'}, {900, 250, 'd'}, {1150, 40, 'e'}};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        struct tlsnic_rec_ref ref;
        assert_int_equal(reader_get(r, want[i].seq + want[i].len - 1, &ref), 0);
        assert_int_equal(ref.tcp_seq, want[i].seq);
        assert_int_equal(ref.len, want[i].len);
        for (uint32_t b = 0; b < ref.len; b++)
            assert_int_equal(ref.bytes[b], want[i].fill);
    }
    struct tlsnic_rec_ref gone;
    assert_int_equal(reader_get(r, 0, &gone), -ENOENT);
    /* Everything acknowledged: the ring starts over at 0. */
    tlsnic_shm_writer_release(w, 1190);
    assert_int_equal(tlsnic_shm_writer_reserve(w, 1001, &room[0]), -EMSGSIZE);
    assert_int_equal(tlsnic_shm_writer_reserve(w, 1000, &room[1]), 0);
    assert_ptr_equal(room[1], room[3]);
    tlsnic_shm_writer_commit(w, 2000, 9, 1000);
    tlsnic_shm_reader_free(r);
    tlsnic_shm_writer_free(w);
}

/* A sender that keeps a small window: its records go back to the ring's start as soon as
 * the start holds the window, so they stay in a few times the window instead of walking
 * through the whole ring (which would take them out of the cache); every one reads back. */
static void records_of_a_small_window_stay_in_the_first_half_of_the_ring(void **state)
{
    (void)state;
    tlsnic_shm_writer *w;
    assert_int_equal(tlsnic_shm_writer_new(&w, 64, 100000), 0);
    tlsnic_shm_reader *r;
    assert_int_equal(tlsnic_shm_reader_open(&r, store_fd(w)), 0);
    uint8_t *base = NULL;
    size_t highest = 0;
    uint32_t seq = 0;
    for (int i = 0; i < 2000; i++) {
        uint8_t *room;
        uint32_t len = 100 + (uint32_t)(i % 7) * 10; /* 100..160 bytes */
        assert_int_equal(tlsnic_shm_writer_reserve(w, len, &room), 0);
        if (base == NULL)
            base = room;
        assert_true(room >= base);
        if ((size_t)(room - base) + len > highest)
            highest = (size_t)(room - base) + len;
        memset(room, (uint8_t)i, len);
        tlsnic_shm_writer_commit(w, seq, (uint64_t)i, len);
        struct tlsnic_rec_ref ref;
        assert_int_equal(reader_get(r, seq + len / 2, &ref), 0);
        assert_int_equal(ref.len, len);
        assert_int_equal(ref.bytes[0], (uint8_t)i);
        assert_int_equal(ref.bytes[len - 1], (uint8_t)i);
        seq += len;
        /* Acknowledged up to 4 records back: at most ~5 records (<= 800 bytes) held. */
        if (i >= 4)
            tlsnic_shm_writer_release(w, seq - 4 * 160);
    }
    /* 2000 records of ~130 bytes (260 KB) went through a 100 KB ring in little more than
     * its first half: the writer goes back to the start once the oldest record it holds
     * is half the ring (and a record) in, so at most a window (~800 bytes) past that. */
    assert_true(highest <= 50000 + 160 + 1000);
    assert_true(highest < 100000 - 20000); /* never the whole ring */
    tlsnic_shm_reader_free(r);
    tlsnic_shm_writer_free(w);
}

/*
 * The ring is sized for a window of at most half of it (twice the largest send buffer): a
 * record must always fit while what is held and the record stay within half the ring,
 * however records of all sizes come and go (the sender acknowledges in order, releasing
 * only when the next record would pass its window). An early return to the ring's start
 * judged on the window of the moment refused records in this regime (nginx under load:
 * SSL_sendfile failed with ENOBUFS after 5 s).
 */
static void a_window_of_up_to_half_the_ring_always_fits(void **state)
{
    (void)state;
    const uint32_t ring = 1u << 20;
    for (unsigned trial = 0; trial < 60; trial++) {
        tlsnic_shm_writer *w;
        assert_int_equal(tlsnic_shm_writer_new(&w, 4096, ring), 0);
        uint64_t rng = 0x9e3779b97f4a7c15ull * (trial + 1);
        size_t window = 1000 + (size_t)(trial * 8737u) % (ring / 2 - 17000);
        enum { Q = 4096 };
        static uint32_t q_seq[Q], q_len[Q];
        unsigned qh = 0, qt = 0;
        uint32_t seq = 7;
        size_t held = 0;
        for (int i = 0; i < 4000; i++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            uint32_t len = 29 + (uint32_t)(rng >> 33) % 16000;
            while (held + len > window && qh != qt) {
                held -= q_len[qh];
                tlsnic_shm_writer_release(w, q_seq[qh] + q_len[qh]);
                qh = (qh + 1) % Q;
            }
            uint8_t *room;
            int rc = tlsnic_shm_writer_reserve(w, len, &room);
            if (rc != 0)
                print_error("trial %u, record %d: %u bytes refused (%d) with %zu held of a %zu window\n",
                            trial, i, len, rc, held, window);
            assert_int_equal(rc, 0);
            memset(room, 0x5a, len);
            assert_int_equal(tlsnic_shm_writer_commit(w, seq, (uint64_t)i, len), 0);
            q_seq[qt] = seq;
            q_len[qt] = len;
            qt = (qt + 1) % Q;
            seq += len;
            held += len;
        }
        tlsnic_shm_writer_free(w);
    }
}

/*
 * A writer process rewrites one record as fast as it can, each version filled with one
 * byte value tied to its record number; every record the reader accepts must be whole.
 */
static void the_reader_never_returns_a_torn_record(void **state)
{
    (void)state;
    tlsnic_shm_writer *w;
    assert_int_equal(tlsnic_shm_writer_new(&w, 1, 4096), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        static uint8_t rec[4096];
        for (uint64_t n = 0; n < 2000000; n++) {
            memset(rec, (int)(n & 0xff), sizeof(rec));
            if (tlsnic_shm_writer_put(w, 5000, n, rec, sizeof(rec)) != 0)
                _exit(1);
            /* Now and then the record stays a while, so the reader surely also meets whole
             * records (put-then-release at full speed leaves it a window of a few cycles). */
            if ((n & 63) == 0) {
                struct timespec hold = {.tv_sec = 0, .tv_nsec = 20000};
                nanosleep(&hold, NULL);
            }
            tlsnic_shm_writer_release(w, 5000 + sizeof(rec));
        }
        _exit(0);
    }
    tlsnic_shm_reader *r;
    assert_int_equal(tlsnic_shm_reader_open(&r, store_fd(w)), 0);
    int whole = 0;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    /* Bounded: 2000 whole records or 3 seconds, whichever first. */
    for (long i = 0; whole < 2000; i++) {
        if ((i & 1023) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - start.tv_sec >= 3)
                break;
        }
        struct tlsnic_rec_ref ref;
        if (reader_get(r, 5100, &ref) != 0)
            continue;
        assert_int_equal(ref.len, 4096);
        uint8_t expect = (uint8_t)(ref.rec_seq & 0xff);
        for (uint32_t b = 0; b < ref.len; b++) {
            if (ref.bytes[b] != expect)
                fail_msg("torn record %llu at byte %u", (unsigned long long)ref.rec_seq, b);
        }
        whole++;
    }
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    assert_true(whole > 0);
    tlsnic_shm_reader_free(r);
    tlsnic_shm_writer_free(w);
}

struct writer_thread {
    tlsnic_shm_writer *w;
    atomic_int stop;
    int failed;
};

static void *rewrite_one_record(void *arg)
{
    struct writer_thread *t = arg;
    static uint8_t rec[4096];
    for (uint64_t n = 0; n < 2000000 && !atomic_load(&t->stop); n++) {
        memset(rec, (int)(n & 0xff), sizeof(rec));
        if (tlsnic_shm_writer_put(t->w, 5000, n, rec, sizeof(rec)) != 0) {
            t->failed = 1;
            break;
        }
        if ((n & 63) == 0) {
            struct timespec hold = {.tv_sec = 0, .tv_nsec = 20000};
            nanosleep(&hold, NULL);
        }
        tlsnic_shm_writer_release(t->w, 5000 + sizeof(rec));
    }
    return NULL;
}

/*
 * The same with the writer on a thread of this process, where ThreadSanitizer sees both
 * ends (scripts/test-tsan.sh): the seqlock must be free of data races, not only of torn
 * records.
 */
static void the_reader_never_returns_a_torn_record_from_a_writer_thread(void **state)
{
    (void)state;
    struct writer_thread t = {0};
    assert_int_equal(tlsnic_shm_writer_new(&t.w, 1, 4096), 0); /* the fork test's, pooled */
    tlsnic_shm_reader *r;
    assert_int_equal(tlsnic_shm_reader_open(&r, store_fd(t.w)), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, rewrite_one_record, &t), 0);
    const struct tlsnic_rec_store *st = tlsnic_shm_reader_store(r);
    int whole = 0;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long i = 0; whole < 500; i++) { /* bounded: 500 whole records or 3 seconds */
        if ((i & 1023) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - start.tv_sec >= 3)
                break;
        }
        struct tlsnic_rec_ref ref;
        if (st->ops->get_record(st->priv, 5100, &ref) != 0)
            continue;
        assert_int_equal(ref.len, 4096);
        uint8_t expect = (uint8_t)(ref.rec_seq & 0xff);
        for (uint32_t b = 0; b < ref.len; b++) {
            if (ref.bytes[b] != expect)
                fail_msg("torn record %llu at byte %u", (unsigned long long)ref.rec_seq, b);
        }
        whole++;
    }
    atomic_store(&t.stop, 1);
    pthread_join(th, NULL);
    assert_false(t.failed);
    assert_true(whole > 0);
    tlsnic_shm_reader_free(r);
    tlsnic_shm_writer_free(t.w);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(the_record_containing_a_sequence_is_found),
        T(released_records_are_gone_and_their_room_reused),
        T(sequence_numbers_wrap),
        T(a_record_longer_than_the_store_allows_is_refused),
        T(only_a_writers_store_names_a_memfd),
        T(flags_the_reader_publishes_are_what_the_writer_reads),
        T(a_reserved_record_is_invisible_until_committed),
        T(a_committed_room_stays_put_until_released),
        T(reserve_refuses_a_second_reservation_and_bad_lengths),
        T(a_commit_longer_than_its_reservation_keeps_the_record_out),
        cmocka_unit_test(a_store_given_up_comes_back_wiped_and_empty),
        cmocka_unit_test(a_pooled_store_left_half_written_by_another_process_still_publishes_records),
        cmocka_unit_test(a_pooled_store_shows_no_record_another_process_left_in_it),
        cmocka_unit_test(an_unsealed_memfd_is_refused),
        cmocka_unit_test(a_header_that_does_not_fit_the_file_is_refused),
        cmocka_unit_test(absurd_headers_are_refused_with_a_reason),
        cmocka_unit_test(the_reader_maps_what_the_header_names_not_the_whole_file),
        cmocka_unit_test(rx_store_headers_past_the_limits_are_refused),
        cmocka_unit_test(the_reader_maps_an_rx_stores_header_and_status_only),
        cmocka_unit_test(a_descriptor_claiming_bytes_past_the_ring_is_not_read),
        cmocka_unit_test(records_are_packed_and_wrap_to_the_start_of_the_ring),
        cmocka_unit_test(records_of_a_small_window_stay_in_the_first_half_of_the_ring),
        cmocka_unit_test(a_window_of_up_to_half_the_ring_always_fits),
        cmocka_unit_test(the_reader_never_returns_a_torn_record),
        cmocka_unit_test(the_reader_never_returns_a_torn_record_from_a_writer_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
