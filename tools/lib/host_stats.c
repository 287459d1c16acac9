/* The host counters to $TLSNIC_STATS_FILE (host_stats.h). */
#include "host_stats.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "tlsnic/ktls.h"

int tlsnic_write_host_stats(void)
{
    const char *path = getenv("TLSNIC_STATS_FILE");
    if (path == NULL || path[0] == '\0')
        return 0;
    char text[4096], tmp[4096];
    int n = tlsnic_stats_format(text, sizeof(text));
    if (n <= 0 || (size_t)n >= sizeof(text))
        return -ENOSPC;
    int t = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (t < 0 || (size_t)t >= sizeof(tmp))
        return -ENAMETOOLONG;
    FILE *f = fopen(tmp, "we");
    if (f == NULL)
        return -errno;
    int err = fwrite(text, 1, (size_t)n, f) == (size_t)n ? 0 : -EIO;
    if (fclose(f) != 0 && err == 0)
        err = -errno;
    if (err == 0 && rename(tmp, path) != 0)
        err = -errno;
    if (err < 0)
        unlink(tmp);
    return err;
}
