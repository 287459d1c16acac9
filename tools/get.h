/*
 * `tlsnic get`: the CLI's own HTTPS client on the tlsnic socket layer (get.c).
 */
#ifndef TLSNIC_TOOLS_GET_H
#define TLSNIC_TOOLS_GET_H

/* argv is the whole command line (argv[1] is "get"). Returns the exit status. */
int tlsnic_cmd_get(int argc, char **argv);

#endif
