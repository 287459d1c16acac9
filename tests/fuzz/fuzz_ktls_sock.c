/*
 * Fuzz target: the socket layer the preload library maps an unmodified program's calls
 * onto (src/host ktls.h; preload/preload.c only dispatches to these): setsockopt /
 * getsockopt (TCP_ULP, SOL_TLS TLS_TX / TLS_RX / TLS_TX_ZEROCOPY_RO / TLS_RX_EXPECT_NO_PAD,
 * any other option) with hostile lengths and values, sendmsg with hostile control messages
 * (TLS_SET_RECORD_TYPE, malformed cmsg headers), send / write / writev / sendfile,
 * recvmsg / recv / read / readv with any flags, iovecs and control buffers, of a record
 * stream the peer mixes from genuine records and garbage, poll, flush, close.
 *
 * No real socket: the system-call seam (tlsnic_set_sys_ops) is a model of a connected TCP
 * socket in memory (what the program sent, what the peer sent, a send budget that runs
 * out (EAGAIN, partial writes) and comes back on poll, EINTR, a dead connection (EPIPE),
 * end of stream).
 *
 * Oracles:
 *   - every call returns a value in range, or -1 with an errno of the kernel's kTLS set for
 *     that call;
 *   - no plaintext leaves: every byte written to the socket after TLS_TX is a record that
 *     opens under a key the program set (in the order it set them), the plaintext of those
 *     records is exactly a prefix of the bytes the sends accepted, and the plaintext canary
 *     that fills every send never appears on the socket after TLS_TX;
 *   - only authenticated plaintext is returned: what recv returns (and MSG_PEEK shows) is
 *     exactly the next bytes of the genuine records the peer sent, of the record type the
 *     cmsg names (data when no cmsg); 0 only at end of stream;
 *   - getsockopt(TLS_TX / TLS_RX) gives back the version, cipher and key that were set;
 *   - ASan: no read or write outside any buffer the program handed in (each is an
 *     exactly-sized allocation).
 * Input: u8 config | ops, each an opcode byte and its arguments (see run_op).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "tlsnic/ktls.h"
#include "tlsnic/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap);

/*
 * Bugs of the socket layer this target found, now fixed (regressions in
 * tests/unit/host/test_ktls_fuzz_found.c). Set one to 1 to steer around its input again.
 */
#define KNOWN_BUG_ULP_GETSOCKOPT_NULL 0 /* getsockopt(TCP_ULP, NULL, &0): memcpy(NULL, .., 0) */
#define KNOWN_BUG_CMSG_LEN_PAST_CONTROL 0 /* sendmsg: a first cmsg whose cmsg_len runs past
                                             msg_controllen was read past the buffer (the
                                             kernel: EINVAL, CMSG_OK) */

#define FD 700          /* the model socket: a real descriptor (of /dev/null) that the
                           model's calls stand behind, so tlsnic's fstat and dup of it work */
#define FILE_FD 701     /* the model file sendfile reads */
#define MAX_OPS 48
#define MAX_OUT (2u << 20)
#define MAX_IN (1u << 20)
#define MAX_TX_KEYS MAX_OPS
#define MAX_GENUINE 256
#define CANARY "PLAINTEXT-CANARY"

/* An oracle failed: say which (the line) before aborting, for whoever reads the crash. */
static int last_op;
static long last_rc;
static int last_errno;

static void fail_at(int line)
{
    fprintf(stderr, "fuzz_ktls_sock: oracle at line %d failed (op %d: returned %ld, errno %d)\n",
            line, last_op, last_rc, last_errno);
    abort();
}
#define FAIL() fail_at(__LINE__)

static const uint16_t versions[2] = {TLS_1_2_VERSION, TLS_1_3_VERSION};
static const uint16_t ciphers[3] = {TLS_CIPHER_AES_GCM_128, TLS_CIPHER_AES_GCM_256,
                                    TLS_CIPHER_CHACHA20_POLY1305};

/* ------------------------------------------------------------------------------------------ */
/* The input.                                                                                 */

struct input {
    const uint8_t *p;
    size_t left;
};

static uint8_t in_u8(struct input *in)
{
    if (in->left == 0)
        return 0;
    in->left--;
    return *in->p++;
}

static uint16_t in_u16(struct input *in)
{
    return (uint16_t)(in_u8(in) | in_u8(in) << 8);
}

/* ------------------------------------------------------------------------------------------ */
/* The model of the kernel socket.                                                            */

static struct {
    int established, tcp, closed;
    uint8_t *out; /* bytes written to the socket */
    size_t out_len;
    size_t budget;  /* bytes the socket takes before EAGAIN; poll refills it */
    int dead;       /* sends fail with EPIPE from now on */
    int intr;       /* the next send or recv fails with EINTR */
    uint8_t *in;    /* bytes the peer sent */
    size_t in_len, in_off;
    int eof;
} k;

/* tlsnic's private duplicate of the socket (sock.c dup_private): the same model socket,
 * open until tlsnic closes it. -1 when there is none. */
static int model_kfd = -1;

/* fd names the model socket and is open: the program's FD, or tlsnic's duplicate. */
static int is_sock(int fd)
{
    return (fd == FD && !k.closed) || (fd == model_kfd && model_kfd >= 0);
}

static int intr_once(void)
{
    if (!k.intr)
        return 0;
    k.intr = 0;
    errno = EINTR;
    return 1;
}

static ssize_t k_send(int fd, const void *buf, size_t len, int flags)
{
    if (!is_sock(fd))
        return errno = EBADF, -1;
    if (intr_once())
        return -1;
    if (k.dead)
        return errno = EPIPE, -1;
    size_t n = len < k.budget ? len : k.budget;
    if (n > MAX_OUT - k.out_len)
        n = MAX_OUT - k.out_len;
    if (n == 0 && len > 0)
        return errno = EAGAIN, -1;
    memcpy(k.out + k.out_len, buf, n);
    k.out_len += n;
    k.budget -= n;
    return (ssize_t)n;
}

static ssize_t k_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    /* The kernel's own socket (no tlsnic): take the iovecs in order. */
    size_t total = 0;
    for (size_t i = 0; i < msg->msg_iovlen; i++) {
        if (msg->msg_iov[i].iov_len == 0)
            continue;
        ssize_t n = k_send(fd, msg->msg_iov[i].iov_base, msg->msg_iov[i].iov_len, flags);
        if (n < 0)
            return total ? (ssize_t)total : n;
        total += (size_t)n;
        if ((size_t)n < msg->msg_iov[i].iov_len)
            break;
    }
    return (ssize_t)total;
}

static ssize_t k_writev(int fd, const struct iovec *iov, int iovcnt)
{
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    return iovcnt < 0 ? (errno = EINVAL, -1) : k_sendmsg(fd, &m, 0);
}

static ssize_t k_recv(int fd, void *buf, size_t len, int flags)
{
    if (!is_sock(fd))
        return errno = EBADF, -1;
    if (intr_once())
        return -1;
    size_t avail = k.in_len - k.in_off;
    if (avail == 0 && len > 0)
        return k.eof ? 0 : (errno = EAGAIN, -1); /* blocking: as if SO_RCVTIMEO ran out */
    size_t n = len < avail ? len : avail;
    memcpy(buf, k.in + k.in_off, n);
    if (!(flags & MSG_PEEK))
        k.in_off += n;
    return (ssize_t)n;
}

static ssize_t k_recvmsg(int fd, struct msghdr *msg, int flags)
{
    if (flags & MSG_ERRQUEUE)
        return errno = EAGAIN, -1;
    msg->msg_controllen = 0; /* TCP has no control messages */
    msg->msg_flags = 0;
    size_t total = 0;
    for (size_t i = 0; i < msg->msg_iovlen; i++) {
        ssize_t n = k_recv(fd, msg->msg_iov[i].iov_base, msg->msg_iov[i].iov_len, flags);
        if (n < 0)
            return total ? (ssize_t)total : n;
        total += (size_t)n;
        if ((size_t)n < msg->msg_iov[i].iov_len)
            break;
    }
    return (ssize_t)total;
}

static ssize_t k_readv(int fd, const struct iovec *iov, int iovcnt)
{
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    return iovcnt < 0 ? (errno = EINVAL, -1) : k_recvmsg(fd, &m, 0);
}

/* The file sendfile reads: the canary pattern from file_base on, file_len bytes long. */
static size_t file_base, file_len;

static uint8_t tx_pattern(size_t i)
{
    return (uint8_t)CANARY[i % 16];
}

/* The canary stream from byte i on, for n <= 64 KB bytes (no per-byte loops: the fuzzer's
 * comparison tracing makes them slow). */
static const uint8_t *tx_pattern_at(size_t i)
{
    static uint8_t buf[(64 << 10) + 16];
    if (buf[0] == 0)
        for (size_t j = 0; j < sizeof(buf); j++)
            buf[j] = tx_pattern(j);
    return buf + i % 16;
}

static ssize_t k_pread(int fd, void *buf, size_t len, off_t off)
{
    if (fd != FILE_FD || off < 0)
        return errno = EBADF, -1;
    if ((size_t)off >= file_len)
        return 0;
    size_t n = file_len - (size_t)off < len ? file_len - (size_t)off : len;
    if (n > 64 << 10)
        n = 64 << 10;
    memcpy(buf, tx_pattern_at(file_base + (size_t)off), n);
    return (ssize_t)n;
}

static off_t file_pos;

static ssize_t k_fread(int fd, void *buf, size_t len)
{
    if (fd == FD || fd == model_kfd)
        return k_recv(fd, buf, len, 0);
    ssize_t n = k_pread(fd, buf, len, file_pos);
    if (n > 0)
        file_pos += n;
    return n;
}

static ssize_t k_sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
    return errno = EINVAL, -1; /* not reached: tlsnic reads the file itself */
}

static int k_poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    int n = 0;
    for (nfds_t i = 0; i < nfds; i++) {
        fds[i].revents = 0;
        if (fds[i].fd != FD && fds[i].fd != model_kfd)
            continue;
        if (k.budget == 0)
            k.budget = 1 << 16; /* the peer read: room again */
        fds[i].revents = (short)(fds[i].events & POLLOUT);
        if ((fds[i].events & POLLIN) && (k.in_off < k.in_len || k.eof))
            fds[i].revents |= POLLIN;
        n += fds[i].revents != 0;
    }
    return n;
}

static int k_setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen)
{
    if (!is_sock(fd))
        return errno = EBADF, -1;
    if (level == SOL_TLS)
        return errno = ENOPROTOOPT, -1; /* no "tls" ULP on this socket in the kernel */
    if (level == SOL_TCP && optname == TCP_ULP)
        return errno = ENOENT, -1; /* an upper layer the kernel does not know */
    if (optlen > 0 && optval == NULL)
        return errno = EFAULT, -1;
    return 0;
}

static int k_getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen)
{
    if (!is_sock(fd))
        return errno = EBADF, -1;
    if (optlen == NULL || (optval == NULL && *optlen > 0))
        return errno = EFAULT, -1;
    int v;
    if (level == SOL_SOCKET && (optname == SO_PROTOCOL || optname == SO_TYPE ||
                                optname == SO_REUSEADDR)) {
        v = optname == SO_PROTOCOL ? (k.tcp ? IPPROTO_TCP : IPPROTO_UDP)
            : optname == SO_TYPE   ? (k.tcp ? SOCK_STREAM : SOCK_DGRAM)
                                   : 0;
    } else if (level == IPPROTO_TCP && optname == TCP_INFO && k.tcp) {
        if (*optlen > 0) {
            memset(optval, 0, *optlen);
            ((uint8_t *)optval)[0] = (uint8_t)(k.established ? TCP_ESTABLISHED : TCP_CLOSE);
        }
        return 0;
    } else {
        return errno = ENOPROTOOPT, -1;
    }
    socklen_t n = *optlen < sizeof(v) ? *optlen : (socklen_t)sizeof(v);
    if (n > 0)
        memcpy(optval, &v, n);
    *optlen = n;
    return 0;
}

static int k_fcntl(int fd, int cmd, ...)
{
    if (cmd == F_DUPFD_CLOEXEC || cmd == F_DUPFD) {
        va_list ap;
        va_start(ap, cmd);
        int lowest = va_arg(ap, int);
        va_end(ap);
        if (!is_sock(fd))
            return errno = EBADF, -1;
        if (model_kfd >= 0)
            return errno = EMFILE, -1; /* one duplicate at a time is all tlsnic makes */
        int dup = fcntl(FD, cmd, lowest);
        if (dup >= 0)
            model_kfd = dup;
        return dup;
    }
    return cmd == F_GETFL ? O_RDWR : 0;
}

static int k_ioctl(int fd, unsigned long request, ...)
{
    if (request == SIOCOUTQ) {
        va_list ap;
        va_start(ap, request);
        int *outq = va_arg(ap, int *);
        va_end(ap);
        *outq = 0;
        return 0;
    }
    return errno = ENOTTY, -1;
}

static int k_close(int fd)
{
    if (fd == FD)
        k.closed = 1; /* the real FD stays open: the next input's socket */
    else if (fd == model_kfd && model_kfd >= 0) {
        close(model_kfd);
        model_kfd = -1;
    }
    return 0;
}

static const struct tlsnic_sys_ops model_ops = {
    .sendmsg = k_sendmsg, .send = k_send, .recvmsg = k_recvmsg, .recv = k_recv,
    .read = k_fread, .pread = k_pread, .sendfile = k_sendfile, .readv = k_readv,
    .writev = k_writev, .poll = k_poll, .setsockopt = k_setsockopt,
    .getsockopt = k_getsockopt, .fcntl = k_fcntl, .ioctl = k_ioctl, .close = k_close,
};

/* ------------------------------------------------------------------------------------------ */
/* Keys, and what the program and the peer did with them.                                     */

static size_t make_info(union tlsnic_crypto_info *ci, uint8_t combo, uint8_t index, int dir,
                        uint64_t rec_seq)
{
    memset(ci, 0x40 + index + 16 * dir, sizeof(*ci));
    ci->info.version = versions[combo % 2];
    ci->info.cipher_type = ciphers[(combo / 2) % 3];
    uint8_t seq[8];
    for (int i = 0; i < 8; i++)
        seq[i] = (uint8_t)(rec_seq >> (56 - 8 * i));
    switch (ci->info.cipher_type) {
    case TLS_CIPHER_AES_GCM_128: memcpy(ci->aes_gcm_128.rec_seq, seq, 8); break;
    case TLS_CIPHER_AES_GCM_256: memcpy(ci->aes_gcm_256.rec_seq, seq, 8); break;
    default: memcpy(ci->chacha20_poly1305.rec_seq, seq, 8); break;
    }
    return tlsnic_crypto_info_size(ci->info.cipher_type);
}

struct genuine {
    uint8_t type;
    uint32_t len;
    uint32_t first; /* offset of its content in the genuine content stream */
    uint32_t at;    /* offset of the record in the peer's bytes */
};

static struct {
    uint8_t combo;             /* from the config byte */
    int ulp, tx_set, rx_set;   /* what the program set successfully */
    /* TX: the keys set (in order), where TLS_TX first took effect on the socket, bytes accepted */
    union tlsnic_crypto_info tx_keys[MAX_TX_KEYS];
    size_t n_tx_keys;
    size_t tx_mark;
    size_t accepted;
    union tlsnic_crypto_info rx_key; /* the last TLS_RX set */
    /* RX: the peer's key (index, sequence), the genuine records it sent, the reader's place */
    uint8_t peer_index;
    tlsnic_rec_key *peer;
    struct genuine genuine[MAX_GENUINE];
    size_t n_genuine;
    uint8_t *content; /* all genuine content, concatenated */
    size_t content_len;
    size_t read_rec, read_off; /* next byte a recv must return */
    int rx_misaligned;         /* TLS_RX took effect inside a record or garbage */
} s;

/* The content of the peer's record rec: its own bytes (a 64 KB table, never 0). */
static const uint8_t *rx_pattern_at(size_t rec)
{
    static uint8_t buf[(64 << 10) + 4096];
    if (buf[0] == 0)
        for (size_t j = 0; j < sizeof(buf); j++)
            buf[j] = (uint8_t)(1 + (j * 7 + j / 251) % 255);
    return buf + (rec * 97) % 4096;
}

static void peer_key(void)
{
    if (s.peer != NULL)
        return;
    union tlsnic_crypto_info ci;
    size_t len = make_info(&ci, s.combo, s.peer_index, 1, 0);
    if (tlsnic_rec_key_new(&s.peer, &ci, len) != 0)
        FAIL();
}

/* ------------------------------------------------------------------------------------------ */
/* Oracles.                                                                                   */

static int errno_in(int e, const int *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (set[i] == e)
            return 1;
    return 0;
}

#define ERRNO_IN(e, ...)                                                                      \
    errno_in(e, (const int[]){__VA_ARGS__}, sizeof((const int[]){__VA_ARGS__}) / sizeof(int))

static void check_setsockopt(int rc, int e)
{
    last_rc = rc, last_errno = e;
    /* EPIPE, EBADMSG: a TLS 1.3 TX rekey first seals and sends the open record, and
       that can fail as a send does (dead connection, record numbers used up). */
    if (rc != 0 && (rc != -1 || !ERRNO_IN(e, EINVAL, EBUSY, EEXIST, ENOTCONN, ENOPROTOOPT,
                                          EOPNOTSUPP, ENOENT, EFAULT, ENOMEM, EPIPE,
                                          EBADMSG)))
        FAIL();
}

/* n bytes returned by a recv of type `type`: the next genuine content, record by record. */
static void check_received(const uint8_t *got, size_t n, uint8_t type, int peek)
{
    size_t rec = s.read_rec, off = s.read_off, at = 0;
    if (s.rx_misaligned && n > 0)
        FAIL(); /* plaintext from a stream that has no record boundary where TLS_RX began */
    while (at < n) {
        while (rec < s.n_genuine && off == s.genuine[rec].len) {
            rec++;
            off = 0;
        }
        if (rec == s.n_genuine || s.genuine[rec].type != type)
            FAIL(); /* plaintext the peer never sent, or of another record type */
        const struct genuine *g = &s.genuine[rec];
        size_t take = g->len - off < n - at ? g->len - off : n - at;
        if (memcmp(got + at, s.content + g->first + off, take) != 0)
            FAIL(); /* plaintext that is not the peer's, or out of order */
        at += take;
        off += take;
    }
    if (!peek) {
        s.read_rec = rec;
        s.read_off = off;
    }
}

/* Everything on the socket since TLS_TX: records under the program's keys, the accepted
 * bytes' prefix, no canary. */
static void check_sent(void)
{
    if (s.n_tx_keys == 0)
        return;
    const uint8_t *out = k.out + s.tx_mark;
    size_t len = k.out_len - s.tx_mark;
    if (memmem(out, len, "CANARY", 6) != NULL)
        FAIL(); /* plaintext on the socket */
    /* Opened with the streaming form, which shows the inner plaintext as sealed: a TLS 1.3
       record of type 0 (a program may ask for it; the kernel sends it too) would lose its
       type to tlsnic_rec_open's padding rule. */
    size_t key_i = 0, off = 0, plain = 0;
    uint64_t seq = 0;
    tlsnic_rec_key *key = NULL;
    struct tlsnic_rec_stream st;
    if (tlsnic_rec_stream_init(&st) != 0)
        FAIL();
    static uint8_t body[TLSNIC_REC_MAX_WIRE_LEN + 256];
    while (len - off >= TLSNIC_REC_HDR_LEN) {
        const uint8_t *rec = out + off;
        size_t rlen = TLSNIC_REC_HDR_LEN + ((size_t)rec[3] << 8 | rec[4]);
        if (rlen > len - off)
            break; /* the tail of a record still pending in user space */
        int opened = 0;
        while (!opened && key_i < s.n_tx_keys) {
            const union tlsnic_crypto_info *ci = &s.tx_keys[key_i];
            if (key == NULL) {
                if (tlsnic_rec_key_new(&key, ci, tlsnic_crypto_info_size(ci->info.cipher_type)) != 0)
                    FAIL();
                seq = tlsnic_rec_key_next_seq(key);
            }
            size_t nl = tlsnic_rec_key_explicit_nonce_len(key);
            int v13 = tlsnic_rec_key_version(key) == TLS_1_3_VERSION;
            size_t clen = 0;
            int begun = tlsnic_rec_stream_begin(&st, key, 0, seq, rec, nl ? rec + TLSNIC_REC_HDR_LEN : NULL);
            if (begun == -EOPNOTSUPP) {
                /* A software-only cipher (CCM, ARIA: no streaming form): the whole record,
                   opened in a copy at its sequence number; its content is the body less
                   TLS 1.3's type byte (tlsnic never pads), whatever the padding rule says. */
                static uint8_t copy[TLSNIC_REC_MAX_WIRE_LEN + 256];
                uint8_t type, *content;
                size_t rl = rlen <= sizeof(copy) ? rlen : 0, found;
                size_t over = TLSNIC_REC_HDR_LEN + nl + TLSNIC_REC_TAG_LEN + (v13 ? 1 : 0);
                memcpy(copy, rec, rl);
                if (rl >= over && tlsnic_rec_open_at(key, seq, copy, rl, &type, &content, &found) == 0) {
                    clen = rl - over;
                    memmove(body, copy + TLSNIC_REC_HDR_LEN + nl, clen);
                    opened = 1;
                } else if (rl >= over && v13 && ci->info.cipher_type == TLS_CIPHER_AES_CCM_128 &&
                           rl - over <= s.accepted - plain) {
                    /* TLS 1.3 type 0 (the padding rule finds no type): the record is the
                       program's next bytes sealed as type 0 at this sequence number. */
                    union tlsnic_crypto_info at = *ci;
                    for (int b = 0; b < 8; b++)
                        at.aes_ccm_128.rec_seq[b] = (uint8_t)(seq >> (56 - 8 * b));
                    tlsnic_rec_key *k0 = NULL;
                    size_t sl = 0;
                    clen = rl - over;
                    memcpy(body, tx_pattern_at(plain), clen);
                    if (tlsnic_rec_key_new(&k0, &at, sizeof(at.aes_ccm_128)) == 0 &&
                        tlsnic_rec_seal(k0, 0, body, clen, copy, sizeof(copy), &sl) == 0 &&
                        sl == rl && memcmp(copy, rec, rl) == 0)
                        opened = 1;
                    tlsnic_rec_key_free(k0);
                }
            } else if (begun == 0 &&
                tlsnic_rec_stream_update(&st, rec + TLSNIC_REC_HDR_LEN + nl, body, st.body_len) == 0 &&
                tlsnic_rec_stream_open_final(&st, rec + TLSNIC_REC_HDR_LEN + nl + st.body_len) == 0 &&
                (!v13 || st.body_len > 0)) {
                opened = 1;
                clen = st.body_len - (v13 ? 1 : 0);
            }
            if (opened) {
                seq++;
                if (clen > s.accepted - plain)
                    FAIL(); /* more plaintext than the program sent */
                if (memcmp(body, tx_pattern_at(plain), clen) != 0)
                    FAIL(); /* not the bytes the program sent, in its order */
                plain += clen;
            } else {
                /* not under this key: the program rekeyed (TLS 1.3) */
                tlsnic_rec_key_free(key);
                key = NULL;
                key_i++;
            }
        }
        if (!opened)
            FAIL(); /* bytes on the socket that are no record of the program's keys */
        off += rlen;
    }
    tlsnic_rec_stream_cleanup(&st);
    tlsnic_rec_key_free(key);
}

/* ------------------------------------------------------------------------------------------ */
/* Operations.                                                                                */

enum op {
    OP_ULP, OP_TLS_TX, OP_TLS_RX, OP_SETSOCKOPT, OP_GETSOCKOPT, OP_SENDMSG, OP_SEND_VARIANT,
    OP_SENDFILE, OP_RECVMSG, OP_RECV_VARIANT, OP_PEER_RECORD, OP_PEER_RAW, OP_MODEL, OP_COUNT
};

static void op_ulp(struct input *in)
{
    uint8_t sel = in_u8(in);
    char name[24] = "tls";
    socklen_t len = 4;
    if (sel & 1) { /* another name, or "tls" with an odd length */
        len = sel >> 3;
        for (socklen_t i = 0; i < len && i < sizeof(name); i++)
            name[i] = (char)in_u8(in);
    }
    char *opt = calloc(1, len ? len : 1);
    memcpy(opt, name, len < sizeof(name) ? len : sizeof(name));
    int rc = tlsnic_setsockopt(FD, SOL_TCP, TCP_ULP, (sel & 2) ? NULL : opt, len);
    int e = errno;
    free(opt);
    check_setsockopt(rc, e);
    if (rc == 0 && tlsnic_is_tls(FD))
        s.ulp = 1;
}

static void op_tls_key(struct input *in, int tx)
{
    uint8_t sel = in_u8(in);
    union tlsnic_crypto_info ci;
    uint8_t combo = s.combo, index = tx ? (uint8_t)s.n_tx_keys : s.peer_index;
    if (sel & 1)
        index = in_u8(in) % 8;
    if (sel & 2)
        combo = in_u8(in) % 6;
    uint64_t rec_seq = 0;
    if (sel & 4)
        rec_seq = (sel & 8) ? ~(uint64_t)0 - in_u8(in) % 4 : in_u8(in);
    size_t len = make_info(&ci, combo, index, tx ? 0 : 1, rec_seq);
    if (sel & 16) /* a version or cipher tlsnic may not know */
        ci.info.version = in_u16(in);
    if (sel & 32)
        ci.info.cipher_type = in_u16(in);
    switch ((sel >> 6) & 3) {
    case 1: len -= 1; break;
    case 2: len += 8; break;
    case 3: len = in_u8(in) % (sizeof(ci) + 9); break;
    default: break;
    }
    uint8_t *opt = malloc(len ? len : 1);
    memcpy(opt, &ci, len < sizeof(ci) ? len : sizeof(ci));
    if (len > sizeof(ci))
        memset(opt + sizeof(ci), 0, len - sizeof(ci));
    int rc = tlsnic_setsockopt(FD, SOL_TLS, tx ? TLS_TX : TLS_RX, opt, (socklen_t)len);
    int e = errno;
    free(opt);
    check_setsockopt(rc, e);
    if (rc != 0)
        return;
    if (!s.ulp)
        FAIL(); /* keys on a socket that is not a tlsnic socket */
    if (tx) {
        if (s.n_tx_keys == 0)
            s.tx_mark = k.out_len;
        if (s.n_tx_keys == MAX_TX_KEYS)
            FAIL(); /* more rekeys than ops allow */
        s.tx_keys[s.n_tx_keys++] = ci;
        s.tx_set = 1;
    } else {
        if (!s.rx_set) {
            /* The records start where the kernel's stream is now (the program may have
               read bytes itself before TLS_RX). */
            size_t r = 0;
            while (r < s.n_genuine && s.genuine[r].at < k.in_off)
                r++;
            s.read_rec = r;
            s.read_off = 0;
            s.rx_misaligned = r < s.n_genuine ? s.genuine[r].at != k.in_off : k.in_off != k.in_len;
        }
        s.rx_key = ci;
        s.rx_set = 1;
    }
}

static void op_setsockopt(struct input *in)
{
    static const int levels[4] = {SOL_TLS, SOL_TCP, SOL_SOCKET, 0};
    uint8_t sel = in_u8(in);
    int level = levels[sel & 3];
    if (level == 0)
        level = in_u8(in);
    int optname = (sel & 4) ? in_u8(in) : (sel & 8) ? TLS_TX_ZEROCOPY_RO : TLS_RX_EXPECT_NO_PAD;
    if (level == SOL_TCP && optname == TCP_ULP)
        optname = TCP_NODELAY;
    socklen_t len = in_u8(in) % 24;
    uint8_t *opt = malloc(len ? len : 1);
    for (socklen_t i = 0; i < len; i++)
        opt[i] = (sel & 16) ? in_u8(in) : (uint8_t)(i == 0 ? (sel >> 5) & 1 : 0);
    int rc = tlsnic_setsockopt(FD, level, optname, (sel & 64) ? NULL : opt, len);
    int e = errno;
    free(opt);
    check_setsockopt(rc, e);
}

static void check_key_info(const union tlsnic_crypto_info *got, size_t len,
                           const union tlsnic_crypto_info *set)
{
    if (got->info.version != set->info.version || got->info.cipher_type != set->info.cipher_type)
        FAIL();
    if (len == sizeof(struct tls_crypto_info))
        return;
    const uint8_t *a, *b;
    size_t n;
    switch (set->info.cipher_type) {
    case TLS_CIPHER_AES_GCM_128:
        a = got->aes_gcm_128.key, b = set->aes_gcm_128.key, n = sizeof(set->aes_gcm_128.key);
        break;
    case TLS_CIPHER_AES_GCM_256:
        a = got->aes_gcm_256.key, b = set->aes_gcm_256.key, n = sizeof(set->aes_gcm_256.key);
        break;
    /* The software-only ciphers (a cipher field the input chose: sel & 32), each at its
     * own layout. */
    case TLS_CIPHER_AES_CCM_128:
        a = got->aes_ccm_128.key, b = set->aes_ccm_128.key, n = sizeof(set->aes_ccm_128.key);
        break;
    case TLS_CIPHER_ARIA_GCM_128:
        a = got->aria_gcm_128.key, b = set->aria_gcm_128.key, n = sizeof(set->aria_gcm_128.key);
        break;
    case TLS_CIPHER_ARIA_GCM_256:
        a = got->aria_gcm_256.key, b = set->aria_gcm_256.key, n = sizeof(set->aria_gcm_256.key);
        break;
    case TLS_CIPHER_SM4_GCM:
        a = got->sm4_gcm.key, b = set->sm4_gcm.key, n = sizeof(set->sm4_gcm.key);
        break;
    case TLS_CIPHER_SM4_CCM:
        a = got->sm4_ccm.key, b = set->sm4_ccm.key, n = sizeof(set->sm4_ccm.key);
        break;
    default:
        a = got->chacha20_poly1305.key, b = set->chacha20_poly1305.key,
        n = sizeof(set->chacha20_poly1305.key);
        break;
    }
    if (len != tlsnic_crypto_info_size(set->info.cipher_type) || memcmp(a, b, n) != 0)
        FAIL();
}

static void op_getsockopt(struct input *in)
{
    static const int names[4] = {TLS_TX, TLS_RX, TLS_TX_ZEROCOPY_RO, TLS_RX_EXPECT_NO_PAD};
    uint8_t sel = in_u8(in);
    int level = (sel & 1) ? SOL_TCP : SOL_TLS;
    int optname = level == SOL_TCP ? ((sel & 2) ? TCP_ULP : in_u8(in)) : names[(sel >> 1) & 3];
    if (sel & 8)
        optname = in_u8(in);
    socklen_t len = (sel & 16) ? in_u8(in) % 80 : optname == TLS_TX || optname == TLS_RX
                                                      ? (socklen_t)sizeof(union tlsnic_crypto_info)
                                                      : 4;
    if (optname == TLS_TX || optname == TLS_RX) {
        const union tlsnic_crypto_info *set = optname == TLS_TX ? &s.tx_keys[s.n_tx_keys ? s.n_tx_keys - 1 : 0]
                                                                 : &s.rx_key;
        if (!(sel & 16) && (optname == TLS_TX ? s.tx_set : s.rx_set))
            len = (socklen_t)tlsnic_crypto_info_size(set->info.cipher_type);
    }
    socklen_t asked = len;
    if (KNOWN_BUG_ULP_GETSOCKOPT_NULL && level == SOL_TCP && optname == TCP_ULP && (sel & 32) &&
        !(sel & 64) && len == 0)
        return;
    uint8_t *opt = malloc(len ? len : 1);
    int rc = tlsnic_getsockopt(FD, level, optname, (sel & 32) ? NULL : opt, (sel & 64) ? NULL : &len);
    int e = errno;
    if (rc == 0) {
        if (len > asked)
            FAIL(); /* a length longer than the buffer */
        if (level == SOL_TLS && (optname == TLS_TX || optname == TLS_RX) && !(sel & 32)) {
            int set = optname == TLS_TX ? s.tx_set : s.rx_set;
            if (!set)
                FAIL(); /* keys reported for a direction that has none */
            union tlsnic_crypto_info got;
            memset(&got, 0, sizeof(got));
            memcpy(&got, opt, len < sizeof(got) ? len : sizeof(got));
            check_key_info(&got, len, optname == TLS_TX ? &s.tx_keys[s.n_tx_keys - 1] : &s.rx_key);
        }
    } else if (rc != -1 || !ERRNO_IN(e, EINVAL, EBUSY, ENOPROTOOPT, EFAULT)) {
        FAIL();
    }
    free(opt);
}

/* The iovecs of a send: lengths from the input, filled with the canary stream. */
static size_t fill_iov(struct input *in, struct iovec *iov, int n)
{
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        size_t len = in_u16(in) % 20000;
        if (len > 2000 && (len & 1))
            len %= 2000; /* mostly small */
        iov[i].iov_base = malloc(len ? len : 1);
        iov[i].iov_len = len;
        memcpy(iov[i].iov_base, tx_pattern_at(s.accepted + total), len);
        total += len;
    }
    return total;
}

static void free_iov(struct iovec *iov, int n)
{
    for (int i = 0; i < n; i++)
        free(iov[i].iov_base);
}

static void check_sent_ret(ssize_t rc, int e, size_t total)
{
    last_rc = rc, last_errno = e;
    if (rc >= 0) {
        if ((size_t)rc > total)
            FAIL();
        if (s.tx_set)
            s.accepted += (size_t)rc;
        return;
    }
    if (rc != -1 || !ERRNO_IN(e, EINVAL, EOPNOTSUPP, EAGAIN, EPIPE, EMSGSIZE, EBADF, EFAULT,
                              EBADMSG, ENOMEM, ECONNABORTED, EINTR))
        FAIL();
}

static void op_sendmsg(struct input *in)
{
    uint8_t sel = in_u8(in);
    int flags = ((sel & 1) ? MSG_MORE : 0) | ((sel & 2) ? MSG_DONTWAIT : 0) |
                ((sel & 4) ? MSG_EOR : 0) | ((sel & 8) ? MSG_NOSIGNAL : 0);
    if (sel & 16)
        flags |= 1 << (in_u8(in) % 31);
    int n = (sel >> 5) & 3;
    struct iovec iov[3];
    size_t total = fill_iov(in, iov, n);
    struct msghdr msg = {.msg_iov = n ? iov : NULL, .msg_iovlen = (size_t)n};
    uint8_t *control = NULL;
    if (sel & 128) {
        uint8_t csel = in_u8(in);
        size_t clen;
        if (csel & 1) { /* a well-formed TLS_SET_RECORD_TYPE */
            clen = CMSG_SPACE(1);
            control = calloc(1, clen);
            struct cmsghdr *c = (struct cmsghdr *)control;
            c->cmsg_level = SOL_TLS;
            c->cmsg_type = TLS_SET_RECORD_TYPE;
            c->cmsg_len = CMSG_LEN(1);
            *CMSG_DATA(c) = (csel & 2) ? TLSNIC_CT_HANDSHAKE : in_u8(in);
        } else { /* any bytes, any cmsg_len */
            clen = in_u8(in) % 64;
            control = malloc(clen ? clen : 1);
            for (size_t i = 0; i < clen; i++)
                control[i] = in_u8(in);
            if ((csel & 2) && clen >= sizeof(struct cmsghdr)) {
                struct cmsghdr c;
                memcpy(&c, control, sizeof(c));
                c.cmsg_level = SOL_TLS;
                c.cmsg_type = (csel & 4) ? TLS_SET_RECORD_TYPE : csel >> 3;
                memcpy(control, &c, sizeof(c));
            }
        }
        msg.msg_control = control;
        msg.msg_controllen = clen;
        struct cmsghdr first;
        if (KNOWN_BUG_CMSG_LEN_PAST_CONTROL && clen >= sizeof(first)) {
            memcpy(&first, control, sizeof(first));
            if (first.cmsg_len > clen) {
                free(control);
                free_iov(iov, n);
                return;
            }
        }
    }
    ssize_t rc = tlsnic_sendmsg(FD, &msg, flags);
    int e = errno;
    check_sent_ret(rc, e, total);
    free(control);
    free_iov(iov, n);
}

static void op_send_variant(struct input *in)
{
    uint8_t sel = in_u8(in);
    int n = 1 + (sel >> 2) % 3;
    struct iovec iov[3];
    size_t total = fill_iov(in, iov, n);
    ssize_t rc;
    switch (sel & 3) {
    case 0: rc = tlsnic_send(FD, iov[0].iov_base, iov[0].iov_len, (sel & 16) ? MSG_MORE : 0), total = iov[0].iov_len; break;
    case 1: rc = tlsnic_write(FD, iov[0].iov_base, iov[0].iov_len), total = iov[0].iov_len; break;
    case 2: rc = tlsnic_writev(FD, iov, n); break;
    default: rc = tlsnic_writev(FD, iov, -1), total = 0; break;
    }
    int e = errno;
    check_sent_ret(rc, e, total);
    free_iov(iov, n);
}

static void op_sendfile(struct input *in)
{
    uint8_t sel = in_u8(in);
    size_t count = in_u16(in) % 40000;
    file_base = s.accepted;
    file_len = (sel & 1) ? count / 2 : count;
    file_pos = 0;
    off_t off = 0;
    ssize_t rc = tlsnic_sendfile(FD, FILE_FD, (sel & 2) ? NULL : &off, count);
    int e = errno;
    check_sent_ret(rc, e, count);
    if (rc > 0 && !(sel & 2) && off != rc)
        FAIL(); /* the offset moved by another amount than was sent */
}

static void check_recv_ret(ssize_t rc, int e, size_t total, const uint8_t *got_type_cmsg,
                           struct iovec *iov, int n, int peek)
{
    last_rc = rc, last_errno = e;
    if (rc < 0) {
        if (rc != -1 || !ERRNO_IN(e, EAGAIN, EBADMSG, EMSGSIZE, EINVAL, EIO, EKEYEXPIRED,
                                  ENOMEM, EOVERFLOW, EBADF, EINTR))
            FAIL();
        return;
    }
    if ((size_t)rc > total)
        FAIL();
    if (rc == 0) {
        if (total > 0 && !k.eof)
            FAIL(); /* 0 is the end of the stream */
        return;
    }
    if (!s.rx_set)
        return; /* the kernel's bytes, before TLS_RX */
    uint8_t *got = malloc((size_t)rc);
    size_t at = 0;
    for (int i = 0; i < n && at < (size_t)rc; i++) {
        size_t take = iov[i].iov_len < (size_t)rc - at ? iov[i].iov_len : (size_t)rc - at;
        memcpy(got + at, iov[i].iov_base, take);
        at += take;
    }
    check_received(got, (size_t)rc, got_type_cmsg ? *got_type_cmsg : TLSNIC_CT_APPLICATION_DATA,
                   peek);
    free(got);
}

static int alloc_iov(struct input *in, struct iovec *iov, int n)
{
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        size_t len = in_u16(in) % 20000;
        if (len > 4000 && (len & 1))
            len %= 300;
        iov[i].iov_base = malloc(len ? len : 1);
        iov[i].iov_len = len;
        total += len;
    }
    return (int)total;
}

static void op_recvmsg(struct input *in)
{
    uint8_t sel = in_u8(in);
    int flags = ((sel & 1) ? MSG_PEEK : 0) | ((sel & 2) ? MSG_DONTWAIT : 0) |
                ((sel & 4) ? MSG_WAITALL : 0);
    if (sel & 8)
        flags |= 1 << (in_u8(in) % 31);
    int n = (sel >> 4) & 3;
    struct iovec iov[3];
    size_t total = (size_t)alloc_iov(in, iov, n);
    struct msghdr msg = {.msg_iov = n ? iov : NULL, .msg_iovlen = (size_t)n};
    uint8_t *control = NULL;
    size_t clen = 0;
    if (sel & 64) {
        clen = in_u8(in) % 64;
        control = malloc(clen ? clen : 1);
        memset(control, 0xee, clen ? clen : 1);
        msg.msg_control = control;
        msg.msg_controllen = clen;
    }
    ssize_t rc = tlsnic_recvmsg(FD, &msg, flags);
    int e = errno;
    const uint8_t *type = NULL;
    if (rc > 0 && control != NULL && msg.msg_controllen > clen)
        FAIL(); /* a control length past the buffer */
    if (rc >= 0 && control != NULL && msg.msg_controllen >= CMSG_LEN(1)) {
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        if (c == NULL || c->cmsg_level != SOL_TLS || c->cmsg_type != TLS_GET_RECORD_TYPE) {
            FAIL();
        }
        type = CMSG_DATA(c);
    }
    if (!(flags & MSG_ERRQUEUE)) /* else the kernel's error queue: not tlsnic's */
        check_recv_ret(rc, e, total, type, iov, n, flags & MSG_PEEK);
    free(control);
    free_iov(iov, n);
}

static void op_recv_variant(struct input *in)
{
    uint8_t sel = in_u8(in);
    int n = 1 + (sel >> 2) % 3;
    struct iovec iov[3];
    size_t total = (size_t)alloc_iov(in, iov, n);
    ssize_t rc;
    int peek = 0;
    switch (sel & 3) {
    case 0:
        peek = (sel & 16) != 0;
        rc = tlsnic_recv(FD, iov[0].iov_base, iov[0].iov_len, peek ? MSG_PEEK : 0);
        total = iov[0].iov_len;
        break;
    case 1: rc = tlsnic_read(FD, iov[0].iov_base, iov[0].iov_len), total = iov[0].iov_len; break;
    case 2: rc = tlsnic_readv(FD, iov, n); break;
    default: rc = tlsnic_readv(FD, iov, -1), total = 0; break;
    }
    int e = errno;
    check_recv_ret(rc, e, total, NULL, iov, n, peek);
    free_iov(iov, n);
}

static void append_in(const uint8_t *p, size_t n)
{
    if (n > MAX_IN - k.in_len)
        n = MAX_IN - k.in_len;
    memcpy(k.in + k.in_len, p, n);
    k.in_len += n;
}

static void op_peer_record(struct input *in)
{
    static const uint8_t types[4] = {TLSNIC_CT_APPLICATION_DATA, TLSNIC_CT_HANDSHAKE,
                                     TLSNIC_CT_ALERT, TLSNIC_CT_CHANGE_CIPHER_SPEC};
    uint8_t sel = in_u8(in);
    uint8_t type = (sel & 4) ? in_u8(in) : types[sel & 3];
    size_t len = in_u16(in) % 17000;
    if (len > 1500 && (len & 1))
        len %= 1500;
    if (type == 0)
        return; /* TLS 1.3 cannot carry it: the inner type would read as padding */
    if (type != TLSNIC_CT_APPLICATION_DATA && len == 0)
        len = 1; /* TLS has no empty record of another type (RFC 8446, 5.1) */
    if (s.n_genuine == MAX_GENUINE || len > TLSNIC_REC_MAX_PLAINTEXT)
        return;
    peer_key();
    size_t r = s.n_genuine;
    uint8_t *content = s.content + s.content_len;
    memcpy(content, rx_pattern_at(r), len);
    int key_update = (sel & 8) && len > 0;
    if (key_update)
        content[0] = 24; /* a TLS 1.3 KeyUpdate */
    static uint8_t rec[TLSNIC_REC_MAX_WIRE_LEN];
    size_t rec_len;
    if (tlsnic_rec_seal(s.peer, type, content, len, rec, sizeof(rec), &rec_len) != 0 ||
        rec_len > MAX_IN - k.in_len)
        return;
    append_in(rec, rec_len);
    s.genuine[r] = (struct genuine){.type = type, .len = (uint32_t)len,
                                    .first = (uint32_t)s.content_len,
                                    .at = (uint32_t)(k.in_len - rec_len)};
    s.n_genuine++;
    s.content_len += len;
    if (key_update && type == TLSNIC_CT_HANDSHAKE && versions[s.combo % 2] == TLS_1_3_VERSION) {
        tlsnic_rec_key_free(s.peer); /* the peer's later records are under its next key */
        s.peer = NULL;
        s.peer_index++;
    }
}

static void op_peer_raw(struct input *in)
{
    size_t n = in_u8(in);
    uint8_t buf[256];
    for (size_t i = 0; i < n; i++)
        buf[i] = in_u8(in);
    append_in(buf, n);
}

/* Returns 1 when the socket was closed (the input ends). */
static int op_model(struct input *in)
{
    uint8_t sel = in_u8(in);
    switch (sel % 8) {
    case 0: k.budget = in_u16(in); break;
    case 1: k.dead = 1; break;
    case 2: k.intr = 1; break;
    case 3: k.eof = 1; break;
    case 4: {
        struct pollfd p = {.fd = FD, .events = (short)((sel & 8) ? POLLIN : POLLOUT | POLLIN)};
        int rc = tlsnic_poll(&p, 1, 0);
        if (rc < 0 || rc > 1)
            FAIL();
        break;
    }
    case 5: {
        int rc = tlsnic_flush(FD);
        if (rc != 0 && (rc != -1 || !ERRNO_IN(errno, EAGAIN, EPIPE)))
            FAIL();
        break;
    }
    case 6: {
        size_t bytes = 0, records = 0;
        int rc = tlsnic_tx_retained(FD, &bytes, &records);
        if (rc != 0 && (rc != -1 || !ERRNO_IN(errno, EBADF, EINVAL)))
            FAIL();
        break;
    }
    default:
        return 1;
    }
    return 0;
}

static int run_op(struct input *in)
{
    last_op = in->left ? in->p[0] % OP_COUNT : 0;
    switch (in_u8(in) % OP_COUNT) {
    case OP_ULP: op_ulp(in); break;
    case OP_TLS_TX: op_tls_key(in, 1); break;
    case OP_TLS_RX: op_tls_key(in, 0); break;
    case OP_SETSOCKOPT: op_setsockopt(in); break;
    case OP_GETSOCKOPT: op_getsockopt(in); break;
    case OP_SENDMSG: op_sendmsg(in); break;
    case OP_SEND_VARIANT: op_send_variant(in); break;
    case OP_SENDFILE: op_sendfile(in); break;
    case OP_RECVMSG: op_recvmsg(in); break;
    case OP_RECV_VARIANT: op_recv_variant(in); break;
    case OP_PEER_RECORD: op_peer_record(in); break;
    case OP_PEER_RAW: op_peer_raw(in); break;
    default: return op_model(in);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int seam;
    if (!seam) {
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null < 0 || dup2(null, FD) != FD)
            FAIL();
        close(null);
        tlsnic_set_sys_ops(&model_ops);
        seam = 1;
    }
    static uint8_t *out_buf, *in_buf, *content_buf;
    if (out_buf == NULL) {
        out_buf = malloc(MAX_OUT);
        in_buf = malloc(MAX_IN);
        content_buf = malloc(MAX_IN);
        if (!out_buf || !in_buf || !content_buf)
            FAIL();
    }
    if (size < 1)
        return 0;
    struct input in = {data, size};
    uint8_t config = in_u8(&in);
    memset(&k, 0, sizeof(k));
    memset(&s, 0, sizeof(s));
    k.out = out_buf;
    k.in = in_buf;
    s.content = content_buf;
    k.established = !(config & 8);
    k.tcp = !(config & 16);
    k.budget = (config & 32) ? (size_t)(config >> 6) * 700 : (size_t)1 << 20;
    s.combo = (uint8_t)(config % 8 % 6);

    for (int i = 0; i < MAX_OPS && in.left > 0; i++)
        if (run_op(&in))
            break;
    /* close(2): sealed records are flushed (the model's poll makes room), the state freed */
    k.budget = k.dead ? 0 : (size_t)1 << 20;
    /* The peer reads everything from now on, so that what close(2) leaves to be sent goes
     * out at once (the background closer's waits would cost seconds per input). */
    k.budget = MAX_OUT;
    int rc = tlsnic_close(FD);
    if (rc != 0 || tlsnic_is_tls(FD))
        FAIL();
    if (tlsnic_close_pending(10000) != 0 || model_kfd >= 0)
        FAIL(); /* tlsnic let go of its own descriptor of the socket */
    check_sent();
    tlsnic_rec_key_free(s.peer);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Well-formed conversations to mutate.                                                       */

size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap)
{
    if (i >= 12 || cap < 256)
        return 0;
    uint8_t combo = (uint8_t)(i % 6);
    size_t n = 0;
    buf[n++] = combo;                               /* config: combination, connected TCP */
    buf[n++] = OP_ULP, buf[n++] = 0;                /* TCP_ULP "tls" */
    buf[n++] = OP_TLS_TX, buf[n++] = 0;             /* TLS_TX, key 0 */
    buf[n++] = OP_TLS_RX, buf[n++] = 0;             /* TLS_RX, the peer's key */
    buf[n++] = OP_SENDMSG, buf[n++] = 1 << 5 | 1;   /* 1 iovec, MSG_MORE */
    buf[n++] = 100, buf[n++] = 0;
    buf[n++] = OP_SENDMSG, buf[n++] = 1 << 5 | 128; /* 1 iovec + TLS_SET_RECORD_TYPE */
    buf[n++] = 60, buf[n++] = 0, buf[n++] = 3;
    buf[n++] = OP_PEER_RECORD, buf[n++] = 0;        /* a data record of 300 bytes */
    buf[n++] = 44, buf[n++] = 1;
    buf[n++] = OP_PEER_RECORD, buf[n++] = 1;        /* a handshake record */
    buf[n++] = 20, buf[n++] = 0;
    buf[n++] = OP_RECVMSG, buf[n++] = 1 << 4 | 64;  /* 1 iovec, control buffer */
    buf[n++] = 0, buf[n++] = 2, buf[n++] = 32;
    buf[n++] = OP_RECVMSG, buf[n++] = 1 << 4 | 64 | 1; /* peek */
    buf[n++] = 10, buf[n++] = 0, buf[n++] = 32;
    buf[n++] = OP_RECVMSG, buf[n++] = 1 << 4 | 64;
    buf[n++] = 10, buf[n++] = 0, buf[n++] = 32;
    if (i >= 6) { /* TLS 1.3 KeyUpdate from the peer, new keys; a TX rekey; short writes */
        buf[n++] = OP_PEER_RECORD, buf[n++] = 1 | 8;
        buf[n++] = 5, buf[n++] = 0;
        buf[n++] = OP_RECVMSG, buf[n++] = 1 << 4 | 64;
        buf[n++] = 10, buf[n++] = 0, buf[n++] = 32;
        buf[n++] = OP_TLS_RX, buf[n++] = 0;
        buf[n++] = OP_TLS_TX, buf[n++] = 0;
        buf[n++] = OP_MODEL, buf[n++] = 0, buf[n++] = 50, buf[n++] = 0; /* budget 50 */
        buf[n++] = OP_SEND_VARIANT, buf[n++] = 2 | 1 << 2;              /* writev, 2 */
        buf[n++] = 0, buf[n++] = 1, buf[n++] = 30, buf[n++] = 0;
        buf[n++] = OP_SENDFILE, buf[n++] = 0, buf[n++] = 0x10, buf[n++] = 0x27;
    }
    buf[n++] = OP_PEER_RAW, buf[n++] = 5;           /* garbage: the stream dies */
    buf[n++] = 0x17, buf[n++] = 3, buf[n++] = 3, buf[n++] = 0, buf[n++] = 40;
    buf[n++] = OP_RECVMSG, buf[n++] = 1 << 4;
    buf[n++] = 10, buf[n++] = 0;
    buf[n++] = OP_MODEL, buf[n++] = 7;              /* close */
    return n;
}
