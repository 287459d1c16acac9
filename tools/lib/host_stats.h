/*
 * The host counters of this process (tlsnic_stats_format, /proc/net/tls_stat form) written
 * where programs under the preload library write theirs: the file TLSNIC_STATS_FILE names,
 * so `tlsnic stats --host` reads tlsnic's own tools like any other program.
 */
#ifndef TLSNIC_TOOLKIT_HOST_STATS_H
#define TLSNIC_TOOLKIT_HOST_STATS_H

/* Writes the counters to $TLSNIC_STATS_FILE, whole or not at all (a temporary file renamed
 * over it: a reader never sees half a file). 0 (also when the variable is unset or empty),
 * or -errno (-ENAMETOOLONG for a path that does not fit, -ENOSPC for counters that do not). */
int tlsnic_write_host_stats(void);

#endif
