/* The request as handlers see it. server/http.c implements this on top of
 * libmicrohttpd; handlers never see libmicrohttpd itself.
 *
 * Strings returned by req_header/req_query live as long as the request.
 * A request is answered exactly once, by one of the req_reply_* calls. */
#ifndef REG_REQ_H
#define REG_REQ_H

#include <stddef.h>
#include <stdint.h>

struct req;
struct registry;
struct route;

const char *req_method(const struct req *r);
int req_is_head(const struct req *r);
const char *req_header(struct req *r, const char *name);
const char *req_query(struct req *r, const char *name);
struct registry *req_registry(struct req *r);
/* Every value of a repeated query parameter, at most max; returns the count. */
size_t req_query_all(struct req *r, const char *name, const char **out, size_t max);
/* The caller's address, for logs and throttling. */
const char *req_client(struct req *r);
/* Whether the caller may do action (ACL_* of auth/acl.h) on repo (NULL:
 * registry-wide). Always true without auth. */
int req_may(struct req *r, const char *repo, unsigned action);
/* The matched route (struct route of api/api.h). */
const struct route *req_route(struct req *r);

/* Per-request memory, freed when the request completes. NULL on failure. */
void *req_alloc(struct req *r, size_t size);
char *req_printf(struct req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Handler state, and the function that frees it when the request ends.
 * aborted is true when the client went away or the reply failed. */
void req_set_state(struct req *r, void *state, void (*done)(void *state, int aborted));
void *req_state(struct req *r);

/* Headers to send with the reply; value is copied. REG_E_NOMEM when value
 * is NULL (a req_printf that failed) or memory runs out. */
int req_set_header(struct req *r, const char *name, const char *value);

int req_replied(const struct req *r);
void req_reply(struct req *r, unsigned status);
/* buf is copied. */
void req_reply_buf(struct req *r, unsigned status, const char *content_type, const void *buf,
                   size_t len);
/* Takes buf (malloc'd): freed once sent. */
void req_reply_take(struct req *r, unsigned status, const char *content_type, void *buf,
                    size_t len);
/* A HEAD: the headers of a len-byte body, which is not sent. */
void req_reply_head(struct req *r, unsigned status, const char *content_type, uint64_t len);
/* A body made as it is sent (a blob that is not in a local file). read
 * puts up to max bytes of the body from pos into buf and returns how many
 * (at least 1), REQ_STREAM_END after the last byte, or REQ_STREAM_ERROR
 * (the connection is closed: the client sees a short body, never a wrong
 * one). len is the body's length, or REQ_STREAM_UNKNOWN. block is the
 * buffer size, held from the send_buffers budget while the body is sent:
 * REG_E_TOOMANY when that is spent (nothing queued; arg stays the
 * caller's). Otherwise done(arg) runs exactly once, when the reply is sent
 * or abandoned. */
#define REQ_STREAM_END (-1)
#define REQ_STREAM_ERROR (-2)
/* read has nothing yet and called req_suspend: asked again after the resume. */
#define REQ_STREAM_WAIT 0
#define REQ_STREAM_UNKNOWN UINT64_MAX
typedef long (*req_stream_fn)(void *arg, uint64_t pos, char *buf, size_t max);
int req_reply_stream(struct req *r, unsigned status, const char *content_type, uint64_t len,
                     size_t block, req_stream_fn read, void *arg, void (*done)(void *arg));
/* Stop serving r until req_resume(r), without holding a thread: from a
 * handler's begin (which runs again after the resume, with the same
 * req_state) or from a stream read (which returns REQ_STREAM_WAIT). The
 * caller makes sure req_resume follows exactly once: suspend under the
 * lock that whoever resumes takes first. req_resume may be called from any
 * thread. */
void req_suspend(struct req *r);
void req_resume(struct req *r);
/* Takes fd: the kernel sends len bytes from off (sendfile). */
void req_reply_fd(struct req *r, unsigned status, const char *content_type, int fd, uint64_t off,
                  uint64_t len);

#endif
