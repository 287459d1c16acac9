/*
 * `tlsnic serve`: the CLI's own HTTPS file server on the tlsnic socket layer (serve.c).
 */
#ifndef TLSNIC_TOOLS_SERVE_H
#define TLSNIC_TOOLS_SERVE_H

/* argv is the whole command line (argv[1] is "serve"). Returns the exit status. */
int tlsnic_cmd_serve(int argc, char **argv);

#endif
