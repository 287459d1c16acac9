/* Fences and the state file (see fence.h). */
#include "tlsnic/fence.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tlsnic/frame.h"

#define DEFAULT_MAX_FLOWS 4096u

enum slot_state { SLOT_FREE = 0, SLOT_USED = 1, SLOT_GONE = 2 /* tombstone */ };

struct fence_slot {
    uint8_t state;
    struct tlsnic_flow flow;
    uint64_t until_ns; /* 0: until lifted; else lifted by tlsnic_fence_expire from then on */
};

struct tlsnic_fence {
    struct fence_slot *slots;
    uint32_t mask;  /* capacity - 1, capacity a power of two >= 2 * max_flows */
    uint32_t max_flows;
    uint32_t count;
    uint32_t n_until;    /* fences with an expiry */
    uint64_t next_until; /* none of them expires before this */
    uint64_t lifted_by_syn;
    struct tlsnic_fence *rx; /* tlsnic_fence_link_rx: lifted by a host's SYN too */
};

static bool flow_equal(const struct tlsnic_flow *a, const struct tlsnic_flow *b)
{
    return a->family == b->family && a->local_port == b->local_port &&
           a->remote_port == b->remote_port && memcmp(a->local, b->local, 16) == 0 &&
           memcmp(a->remote, b->remote, 16) == 0;
}

static uint32_t flow_hash(const struct tlsnic_flow *flow)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    const uint8_t parts[5] = {flow->family, (uint8_t)flow->local_port,
                              (uint8_t)(flow->local_port >> 8), (uint8_t)flow->remote_port,
                              (uint8_t)(flow->remote_port >> 8)};
    for (size_t i = 0; i < sizeof(parts); i++)
        h = (h ^ parts[i]) * 16777619u;
    for (size_t i = 0; i < 16; i++)
        h = (h ^ flow->local[i]) * 16777619u;
    for (size_t i = 0; i < 16; i++)
        h = (h ^ flow->remote[i]) * 16777619u;
    return h;
}

/* Frees a used slot (a tombstone, or the whole table once no fence is left). */
static void lift_slot(tlsnic_fence *f, struct fence_slot *s)
{
    if (s->until_ns != 0)
        f->n_until--;
    s->state = SLOT_GONE;
    f->count--;
    if (f->count == 0) {
        memset(f->slots, 0, sizeof(*f->slots) * ((size_t)f->mask + 1)); /* drop tombstones */
        f->n_until = 0;
    }
}

/* The slot holding flow, or NULL. Probing is bounded by the capacity. */
static struct fence_slot *lookup(const tlsnic_fence *f, const struct tlsnic_flow *flow)
{
    uint32_t i = flow_hash(flow) & f->mask;
    for (uint32_t probes = 0; probes <= f->mask; probes++, i = (i + 1) & f->mask) {
        struct fence_slot *s = &f->slots[i];
        if (s->state == SLOT_FREE)
            return NULL;
        if (s->state == SLOT_USED && flow_equal(&s->flow, flow))
            return s;
    }
    return NULL;
}

int tlsnic_fence_new(tlsnic_fence **out, uint32_t max_flows)
{
    if (out == NULL)
        return -EINVAL;
    tlsnic_fence *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    f->max_flows = max_flows ? max_flows : DEFAULT_MAX_FLOWS;
    if (f->max_flows > (1u << 24)) {
        free(f);
        return -EINVAL;
    }
    uint32_t cap = 16;
    while (cap < 2 * f->max_flows)
        cap <<= 1;
    f->slots = calloc(cap, sizeof(*f->slots));
    if (f->slots == NULL) {
        free(f);
        return -ENOMEM;
    }
    f->mask = cap - 1;
    *out = f;
    return 0;
}

void tlsnic_fence_free(tlsnic_fence *f)
{
    if (f == NULL)
        return;
    free(f->slots);
    free(f);
}

int tlsnic_fence_add(tlsnic_fence *f, const struct tlsnic_flow *flow)
{
    return tlsnic_fence_add_until(f, flow, 0);
}

int tlsnic_fence_add_until(tlsnic_fence *f, const struct tlsnic_flow *flow, uint64_t until_ns)
{
    struct fence_slot *have = lookup(f, flow);
    if (have != NULL) { /* the later end wins; no expiry is the latest */
        if (have->until_ns != 0 && (until_ns == 0 || until_ns > have->until_ns)) {
            if (until_ns == 0)
                f->n_until--;
            have->until_ns = until_ns;
        }
        return 0;
    }
    if (f->count >= f->max_flows)
        return -ENOSPC;
    /* Load stays <= 1/2 counting live slots; tombstones are reused. */
    uint32_t i = flow_hash(flow) & f->mask;
    for (uint32_t probes = 0; probes <= f->mask; probes++, i = (i + 1) & f->mask) {
        struct fence_slot *s = &f->slots[i];
        if (s->state != SLOT_USED) {
            s->state = SLOT_USED;
            s->flow = *flow;
            s->until_ns = until_ns;
            f->count++;
            if (until_ns != 0) {
                if (f->n_until == 0 || until_ns < f->next_until)
                    f->next_until = until_ns;
                f->n_until++;
            }
            return 0;
        }
    }
    return -ENOSPC;
}

int tlsnic_fence_lift(tlsnic_fence *f, const struct tlsnic_flow *flow)
{
    struct fence_slot *s = lookup(f, flow);
    if (s == NULL)
        return -ENOENT;
    lift_slot(f, s);
    return 0;
}

uint32_t tlsnic_fence_expire(tlsnic_fence *f, uint64_t now_ns)
{
    if (f == NULL || f->n_until == 0 || now_ns < f->next_until)
        return 0;
    uint32_t lifted = 0;
    uint64_t next = UINT64_MAX;
    for (uint32_t i = 0; i <= f->mask && f->n_until > 0; i++) {
        struct fence_slot *s = &f->slots[i];
        if (s->state != SLOT_USED || s->until_ns == 0)
            continue;
        if (s->until_ns <= now_ns) {
            lift_slot(f, s); /* may clear the table: then n_until is 0 and the loop ends */
            lifted++;
        } else if (s->until_ns < next) {
            next = s->until_ns;
        }
    }
    f->next_until = next;
    return lifted;
}

uint32_t tlsnic_fence_count_expiring(const tlsnic_fence *f)
{
    return f != NULL ? f->n_until : 0;
}

int tlsnic_fence_contains(const tlsnic_fence *f, const struct tlsnic_flow *flow)
{
    return f != NULL && f->count > 0 && lookup(f, flow) != NULL;
}

uint32_t tlsnic_fence_count(const tlsnic_fence *f)
{
    return f->count;
}

void tlsnic_fence_foreach(const tlsnic_fence *f,
                          void (*cb)(void *ctx, const struct tlsnic_flow *flow), void *ctx)
{
    for (uint32_t i = 0; i <= f->mask; i++) {
        if (f->slots[i].state == SLOT_USED)
            cb(ctx, &f->slots[i].flow);
    }
}

static int blocks(const tlsnic_fence *f, const uint8_t *frame, size_t len, int to_host)
{
    if (f == NULL || f->count == 0)
        return 0;
    struct tlsnic_frame v;
    int kind = tlsnic_frame_parse(frame, len, &v);
    if (kind == TLSNIC_FRAME_OTHER)
        return 0;
    if (kind < 0)
        return 1; /* the device could not read it either: it may be a fenced flow's */
    if (v.payload_len == 0)
        return 0; /* no payload: no record bytes to leak */
    /* Towards the wire the source is the host's end of the flow, towards it the
     * destination. */
    struct tlsnic_flow flow = {.family = v.family, .local_port = to_host ? v.dport : v.sport,
                               .remote_port = to_host ? v.sport : v.dport};
    memcpy(flow.local, to_host ? v.dst : v.src, 16);
    memcpy(flow.remote, to_host ? v.src : v.dst, 16);
    return lookup(f, &flow) != NULL;
}

int tlsnic_fence_blocks(const tlsnic_fence *f, const uint8_t *frame, size_t len)
{
    return blocks(f, frame, len, 0);
}

int tlsnic_fence_blocks_to_host(const tlsnic_fence *f, const uint8_t *frame, size_t len)
{
    return blocks(f, frame, len, 1);
}

int tlsnic_fence_gate_to_host(const void *ctx, const uint8_t *frame, size_t len)
{
    return blocks(ctx, frame, len, 1);
}

void tlsnic_fence_link_rx(tlsnic_fence *f, tlsnic_fence *rx)
{
    if (f != NULL)
        f->rx = rx;
}

int tlsnic_fence_filter(tlsnic_fence *f, const uint8_t *frame, size_t len)
{
    if (f == NULL || (f->count == 0 && (f->rx == NULL || f->rx->count == 0)))
        return 0;
    struct tlsnic_frame v;
    int kind = tlsnic_frame_parse(frame, len, &v);
    if (kind != TLSNIC_FRAME_TCP || !(v.flags & TLSNIC_TCP_SYN))
        return tlsnic_fence_blocks(f, frame, len);
    /* A SYN (or SYN-ACK) of the host's on a fenced 4-tuple: a new connection, which the
     * host's stack opens only once no socket of the old one can send (a timewait socket
     * sends no payload) or take payload in (the linked RX fence: no reader is left for the
     * bytes the last device decided about). The records the fence kept back are gone with
     * it. */
    struct tlsnic_flow flow = {.family = v.family, .local_port = v.sport, .remote_port = v.dport};
    memcpy(flow.local, v.src, 16);
    memcpy(flow.remote, v.dst, 16);
    if (f->count > 0 && tlsnic_fence_lift(f, &flow) == 0)
        f->lifted_by_syn++;
    if (f->rx != NULL && f->rx->count > 0 && tlsnic_fence_lift(f->rx, &flow) == 0)
        f->rx->lifted_by_syn++;
    return 0;
}

uint64_t tlsnic_fence_lifted_by_syn(const tlsnic_fence *f)
{
    return f != NULL ? f->lifted_by_syn : 0;
}

int tlsnic_fence_gate(const void *ctx, const uint8_t *frame, size_t len)
{
    /* The context is the daemon's own fence, which a new connection's SYN changes. */
    return tlsnic_fence_filter((tlsnic_fence *)(uintptr_t)ctx, frame, len);
}

/* ------------------------------------------------------------------------------------------ */
/* State file.                                                                                */

int tlsnic_state_save(const char *path, const struct tlsnic_flow_dir *list, size_t n)
{
    char tmp[PATH_MAX];
    int len = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (len < 0 || (size_t)len >= sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    FILE *out = fdopen(fd, "w");
    if (out == NULL) {
        int err = -errno;
        close(fd);
        unlink(tmp);
        return err;
    }
    int err = 0;
    for (size_t i = 0; i < n && err == 0; i++) {
        const struct tlsnic_flow *fl = &list[i].flow;
        char l[INET6_ADDRSTRLEN], r[INET6_ADDRSTRLEN];
        if (inet_ntop(fl->family, fl->local, l, sizeof(l)) == NULL ||
            inet_ntop(fl->family, fl->remote, r, sizeof(r)) == NULL) {
            err = -EINVAL;
            break;
        }
        if (fprintf(out, "%s %d %s %u %s %u\n", list[i].dir == TLSNIC_DIR_TX ? "tx" : "rx",
                    fl->family == AF_INET ? 4 : 6, l, fl->local_port, r, fl->remote_port) < 0)
            err = -EIO;
    }
    /* fsync: after a crash the list must be the one of the last change, not an older one */
    if (fflush(out) != 0 || fsync(fileno(out)) != 0)
        err = err ? err : -errno;
    if (fclose(out) != 0 && err == 0)
        err = -errno;
    if (err == 0 && rename(tmp, path) != 0)
        err = -errno;
    if (err < 0)
        unlink(tmp);
    return err;
}

static int parse_port(const char *text, uint16_t *port)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v > 65535)
        return -EBADMSG;
    *port = (uint16_t)v;
    return 0;
}

static int parse_line(char *line, struct tlsnic_flow_dir *out)
{
    char *save = NULL;
    char *dir = strtok_r(line, " \n", &save);
    char *fam = strtok_r(NULL, " \n", &save);
    char *laddr = strtok_r(NULL, " \n", &save);
    char *lport = strtok_r(NULL, " \n", &save);
    char *raddr = strtok_r(NULL, " \n", &save);
    char *rport = strtok_r(NULL, " \n", &save);
    if (rport == NULL || strtok_r(NULL, " \n", &save) != NULL)
        return -EBADMSG;
    memset(out, 0, sizeof(*out));
    if (strcmp(dir, "tx") == 0)
        out->dir = TLSNIC_DIR_TX;
    else if (strcmp(dir, "rx") == 0)
        out->dir = TLSNIC_DIR_RX;
    else
        return -EBADMSG;
    if (strcmp(fam, "4") == 0)
        out->flow.family = AF_INET;
    else if (strcmp(fam, "6") == 0)
        out->flow.family = AF_INET6;
    else
        return -EBADMSG;
    if (inet_pton(out->flow.family, laddr, out->flow.local) != 1 ||
        inet_pton(out->flow.family, raddr, out->flow.remote) != 1 ||
        parse_port(lport, &out->flow.local_port) < 0 || parse_port(rport, &out->flow.remote_port) < 0)
        return -EBADMSG;
    return 0;
}

static int state_load(const char *path, tlsnic_fence *f, enum tlsnic_dir dir);

int tlsnic_state_load(const char *path, tlsnic_fence *f)
{
    return state_load(path, f, TLSNIC_DIR_TX);
}

int tlsnic_state_load_rx(const char *path, tlsnic_fence *f)
{
    return state_load(path, f, TLSNIC_DIR_RX);
}

static int state_load(const char *path, tlsnic_fence *f, enum tlsnic_dir dir)
{
    FILE *in = fopen(path, "re");
    if (in == NULL)
        return errno == ENOENT ? 0 : -errno;
    char line[256];
    int fenced = 0, err = 0;
    while (err == 0 && fgets(line, sizeof(line), in) != NULL) {
        if (strchr(line, '\n') == NULL && !feof(in)) {
            err = -EBADMSG; /* longer than any line we write */
            break;
        }
        struct tlsnic_flow_dir e;
        err = parse_line(line, &e);
        if (err == 0 && e.dir == dir) {
            err = tlsnic_fence_add(f, &e.flow);
            fenced += err == 0;
        }
    }
    if (err == 0 && ferror(in))
        err = -EIO;
    fclose(in);
    return err < 0 ? err : fenced;
}
