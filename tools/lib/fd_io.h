/*
 * Whole-buffer and whole-record I/O on a stream fd for tools and tests, bounded in time
 * so a peer that never answers fails the call instead of hanging it. Works on blocking and
 * non-blocking fds. Library: tlsnic_toolkit (tools/lib).
 */
#ifndef TLSNIC_TEST_FD_IO_H
#define TLSNIC_TEST_FD_IO_H

#include <stddef.h>
#include <stdint.h>

#define FD_IO_TIMEOUT_MS 5000

/* Writes all len bytes: 0, -ETIMEDOUT, or the negative errno of write(2). */
int fd_write_all(int fd, const void *buf, size_t len);

/* Reads exactly len bytes: 0, -ETIMEDOUT, -ECONNRESET (EOF first), or -errno of read(2). */
int fd_read_exact(int fd, void *buf, size_t len);

/*
 * Reads one whole TLS record (5-byte header, then the length it gives) into rec.
 * Returns its total length, -ENOBUFS if cap is too small (the record is not consumed past
 * its header), or an error of fd_read_exact.
 */
int fd_read_record(int fd, uint8_t *rec, size_t cap);

#endif
