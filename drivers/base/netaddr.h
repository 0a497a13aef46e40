/* Network address literals, as the station's servers and clients judge where a peer is. */
#ifndef ST_NETADDR_H
#define ST_NETADDR_H

#include <stddef.h>

/* Whether the n bytes at s are an IP address literal of this machine's loopback: 1 for
 * 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104; 0 for any other address; -1 when they are no
 * address at all (a name, brackets, a port). Any thread. */
int st_ip_is_loopback(const char *s, size_t n);

#endif
