/* snapshot.h: save/restore/copy of a session's state (prefix caching, forks, disk KV). */
#ifndef DSV4_SNAPSHOT_H
#define DSV4_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "dsv4.h"

struct dsv4_model;

/* Identity of a model + numerics + row formats: snapshots load only where it matches. */
uint64_t dsv4_model_fingerprint(const struct dsv4_model *m);

size_t dsv4_session_snapshot_size(const dsv4_session *s);
dsv4_status dsv4_session_save(const dsv4_session *s, void *buf, size_t cap, size_t *used);
/* Replaces the session's state; on error the session is left reset. */
dsv4_status dsv4_session_restore(dsv4_session *s, const void *buf, size_t len);
/* dst <- src (same model; dst must have room for src's position). */
dsv4_status dsv4_session_copy(dsv4_session *dst, const dsv4_session *src);

#endif
