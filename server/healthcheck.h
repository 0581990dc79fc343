/* registry healthcheck: is the server this configuration describes answering? */
#ifndef REG_HEALTHCHECK_H
#define REG_HEALTHCHECK_H

/* GET /healthz from listen ("host:port", "[v6]:port"; a wildcard host means
 * loopback), over TLS without verifying the certificate when tls is set.
 * Returns the exit status: 0 healthy (200), 1 not, 2 bad address. */
int healthcheck_run(const char *listen, int tls);

#endif
