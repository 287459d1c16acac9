/*
 * Interop test support: a deterministic byte stream (byte i of the stream is known without
 * storing the stream, so 64 MB transfers are checked byte-exact) and the cycles of write and
 * read sizes that make the records come in many sizes.
 */
#ifndef TLSNIC_TEST_STREAM_PATTERN_H
#define TLSNIC_TEST_STREAM_PATTERN_H

#include <stddef.h>
#include <stdint.h>

#define STREAM_TOTAL (64u * 1024 * 1024) /* bytes per large transfer */

/* Copies stream bytes [off, off + len) into out. */
void stream_fill(uint64_t off, uint8_t *out, size_t len);

/* 1 if buf equals stream bytes [off, off + len). */
int stream_check(uint64_t off, const uint8_t *buf, size_t len);

/* The n-th write size (1 byte .. 128 KB, including 1457, 16383/16384/16385). */
size_t stream_write_size(unsigned n);

/* The n-th read size. */
size_t stream_read_size(unsigned n);

#endif
