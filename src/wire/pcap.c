/* Classic pcap writer (see pcap.h). */
#include "pcap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PCAP_MAGIC_USEC 0xa1b2c3d4u
#define PCAP_BUFFER (1u << 20)

struct pcap_file_header {
    uint32_t magic;
    uint16_t version_major;
    uint16_t version_minor;
    int32_t thiszone;
    uint32_t sigfigs;
    uint32_t snaplen;
    uint32_t linktype;
};

struct pcap_record_header {
    uint32_t ts_sec;
    uint32_t ts_usec;
    uint32_t incl_len;
    uint32_t orig_len;
};

static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int tlsnic_pcap_open(struct tlsnic_pcap *pc, const char *path)
{
    memset(pc, 0, sizeof(*pc));
    pc->fd = -1;
    /* The buffer marks an open capture (a zeroed struct is a closed one). */
    pc->buffer = malloc(PCAP_BUFFER);
    if (pc->buffer == NULL)
        return -ENOMEM;
    /* 0600: the host capture holds plaintext records. */
    pc->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (pc->fd < 0) {
        int err = -errno;
        tlsnic_pcap_close(pc);
        return err;
    }
    /* Written in host byte order: readers detect it from the magic. */
    struct pcap_file_header fh = {
        .magic = PCAP_MAGIC_USEC,
        .version_major = 2,
        .version_minor = 4,
        .snaplen = TLSNIC_PCAP_SNAPLEN,
        .linktype = TLSNIC_PCAP_LINKTYPE_RAW,
    };
    int err = write_all(pc->fd, (const uint8_t *)&fh, sizeof(fh));
    if (err < 0)
        tlsnic_pcap_close(pc);
    return err;
}

int tlsnic_pcap_flush(struct tlsnic_pcap *pc)
{
    if (pc->buffer == NULL || pc->fd < 0 || pc->used == 0)
        return 0;
    int err = write_all(pc->fd, pc->buffer, pc->used);
    pc->used = 0;
    return err;
}

int tlsnic_pcap_write(struct tlsnic_pcap *pc, const uint8_t *frame, size_t len)
{
    if (pc->buffer == NULL)
        return -EBADF;
    if (len > TLSNIC_PCAP_SNAPLEN)
        return -EMSGSIZE;
    size_t need = sizeof(struct pcap_record_header) + len;
    if (need > PCAP_BUFFER - pc->used) {
        int err = tlsnic_pcap_flush(pc); /* whole records only reach the file */
        if (err < 0)
            return err;
    }
    if (need > PCAP_BUFFER)
        return -EMSGSIZE;
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0)
        return -errno;
    struct pcap_record_header rh = {
        .ts_sec = (uint32_t)now.tv_sec,
        .ts_usec = (uint32_t)(now.tv_nsec / 1000),
        .incl_len = (uint32_t)len,
        .orig_len = (uint32_t)len,
    };
    memcpy(pc->buffer + pc->used, &rh, sizeof(rh));
    if (len > 0)
        memcpy(pc->buffer + pc->used + sizeof(rh), frame, len);
    pc->used += need;
    return 0;
}

int tlsnic_pcap_close(struct tlsnic_pcap *pc)
{
    if (pc->buffer == NULL)
        return 0;
    int err = pc->fd >= 0 ? tlsnic_pcap_flush(pc) : 0;
    if (pc->fd >= 0 && close(pc->fd) != 0 && err == 0)
        err = -errno;
    free(pc->buffer);
    pc->buffer = NULL;
    pc->fd = -1;
    pc->used = 0;
    return err;
}
