/* Classic pcap writer (see pcap.h). */
#include "pcap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PCAP_MAGIC_USEC 0xa1b2c3d4u
#define PCAP_STDIO_BUFFER (1u << 20)

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

int tlsnic_pcap_open(struct tlsnic_pcap *pc, const char *path)
{
    memset(pc, 0, sizeof(*pc));
    /* 0600: the host capture holds plaintext records. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    pc->file = fdopen(fd, "w");
    if (pc->file == NULL) {
        int err = -errno;
        close(fd);
        return err;
    }
    pc->buffer = malloc(PCAP_STDIO_BUFFER);
    if (pc->buffer == NULL || setvbuf(pc->file, pc->buffer, _IOFBF, PCAP_STDIO_BUFFER) != 0) {
        tlsnic_pcap_close(pc);
        return -ENOMEM;
    }
    /* Written in host byte order: readers detect it from the magic. */
    struct pcap_file_header fh = {
        .magic = PCAP_MAGIC_USEC,
        .version_major = 2,
        .version_minor = 4,
        .snaplen = TLSNIC_PCAP_SNAPLEN,
        .linktype = TLSNIC_PCAP_LINKTYPE_RAW,
    };
    if (fwrite(&fh, sizeof(fh), 1, pc->file) != 1) {
        tlsnic_pcap_close(pc);
        return -EIO;
    }
    return 0;
}

int tlsnic_pcap_write(struct tlsnic_pcap *pc, const uint8_t *frame, size_t len)
{
    if (pc->file == NULL)
        return -EBADF;
    if (len > TLSNIC_PCAP_SNAPLEN)
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
    if (fwrite(&rh, sizeof(rh), 1, pc->file) != 1 ||
        (len > 0 && fwrite(frame, len, 1, pc->file) != 1))
        return -EIO;
    return 0;
}

int tlsnic_pcap_flush(struct tlsnic_pcap *pc)
{
    if (pc->file == NULL)
        return 0;
    return fflush(pc->file) == 0 ? 0 : -errno;
}

int tlsnic_pcap_close(struct tlsnic_pcap *pc)
{
    int err = 0;
    if (pc->file != NULL && fclose(pc->file) != 0)
        err = -errno;
    pc->file = NULL;
    free(pc->buffer);
    pc->buffer = NULL;
    return err;
}
