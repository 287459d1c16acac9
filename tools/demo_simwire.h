/* `tlsnic demo` without root: the device model on the simulated wire (demo_simwire.c). */
#ifndef TLSNIC_TOOLS_DEMO_SIMWIRE_H
#define TLSNIC_TOOLS_DEMO_SIMWIRE_H

/* Runs the six TLS version x cipher transfers, prints a table. 0 if all read back exactly. */
int tlsnic_demo_simwire(void);

#endif
