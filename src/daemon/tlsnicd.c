/* tlsnicd: the TLS offload device between two network namespaces (see daemon.c). */
#include "tlsnic/daemon.h"

int main(int argc, char **argv)
{
    return tlsnic_daemon_main(argc, argv, NULL);
}
