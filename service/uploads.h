/* Upload sessions: bytes stream into <root>/uploads/<uuid> and through a
 * running hash as they arrive. A checkpoint (fdatasync, then the offset and
 * the hash state in the index) makes received bytes survive a crash, so a
 * session resumes after a restart without rehashing.
 *
 * One request at a time may hold a session: upload_create/upload_resume
 * acquire it, upload_release gives it back. */
#ifndef REG_UPLOADS_H
#define REG_UPLOADS_H

#include <stdint.h>

#include "../storage/digest.h"

struct blobstore;
struct index;

#define UPLOAD_UUID_LEN 36

struct uploads;
struct upload;

int uploads_new(struct blobstore *bs, struct index *ix, struct uploads **out);
void uploads_free(struct uploads *us);

/* Check that s[0..len) has the shape of a session id we hand out. */
int upload_uuid_valid(const char *s, size_t len);

/* Start a session for repo. persist=0 keeps it out of the index (a
 * monolithic upload that finishes in the same request). */
int upload_create(struct uploads *us, const char *repo, int persist, struct upload **out);

/* Take over an existing session of repo; uuid must pass upload_uuid_valid. REG_E_UPLOAD_UNKNOWN
 * when there is none (or it belongs to another repo), REG_E_UPLOAD_BUSY when another request holds
 * it. */
int upload_resume(struct uploads *us, const char *repo, const char *uuid, struct upload **out);

/* Offset of a session without taking it (GET on an upload). */
int upload_status(struct uploads *us, const char *repo, const char *uuid, uint64_t *offset);

const char *upload_uuid(const struct upload *u);
uint64_t upload_offset(const struct upload *u);

/* Append and hash. */
int upload_write(struct upload *u, const void *data, size_t len);

/* Make everything written so far durable and resumable. */
int upload_checkpoint(struct upload *u);

/* Verify the bytes against expect, commit the blob into the store and the
 * index (visible in the session's repo) and end the session. On a digest
 * mismatch the session is cancelled and REG_E_DIGEST_INVALID returned. The
 * blob's size is written to *size. The session must still be released. */
int upload_finish(struct upload *u, const struct digest *expect, uint64_t *size);

/* End the session and remove its bytes. Must still be released. */
int upload_cancel(struct upload *u);

/* Give the session back (no checkpoint) and free u. NULL is fine. */
void upload_release(struct upload *u);

/* What a GC pass over upload sessions removed (or, dry, would remove). */
struct uploads_swept {
    uint64_t sessions; /* idle sessions expired, with their files */
    uint64_t files;    /* files in uploads/ that no session names */
    uint64_t bytes;    /* bytes of both */
};

/* Expire sessions idle since before cutoff (unix seconds) and remove upload
 * files no session names. Sessions a request holds are left alone. */
int uploads_gc(struct uploads *us, int64_t cutoff, int dry, struct uploads_swept *out);

#endif
