/* test_snapshot.c: a restored or copied session continues exactly as the original.
 *
 * Feeds a prefix, snapshots (save/restore and copy), then feeds the same continuation to the
 * original and to the restored sessions: the logits must be bit-identical, in both numerics
 * modes, at positions inside and past the window and across compression boundaries. Also checks
 * that corrupt or foreign snapshots are refused with a message. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dsv4.h"
#include "infer/snapshot.h"

#define MODEL DSV4_SHARED "/refvectors/models/tiny_v4flash_fp8"

static void run(dsv4_numerics mode) {
    dsv4_open_opts o = {0};
    o.numerics = mode;
    dsv4_model *m;
    if (dsv4_model_open(MODEL, &o, &m)) {
        CHECK(0, "open: %s", dsv4_errmsg());
        return;
    }
    int V = dsv4_model_vocab(m);
    enum { T = 140 };
    int32_t ids[T];
    unsigned x = 12345;
    for (int i = 0; i < T; i++) ids[i] = (int32_t)((x = x * 1103515245u + 12345u) >> 8) % V;
    /* inside the first window, past the window (16), across the first HCA row (127) */
    int cuts[] = {1, 17, 130};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        int P = cuts[c];
        dsv4_session *a, *b, *d;
        CHECK(!dsv4_session_new(m, T, &a) && !dsv4_session_new(m, T, &b) && !dsv4_session_new(m, T, &d), "sessions");
        CHECK(!dsv4_forward(a, ids, P, DSV4_LOGITS_NONE, NULL), "prefix: %s", dsv4_errmsg());
        size_t n = dsv4_session_snapshot_size(a), used = 0;
        unsigned char *buf = malloc(n);
        CHECK(!dsv4_session_save(a, buf, n, &used) && used == n, "save");
        CHECK(!dsv4_session_restore(b, buf, n), "restore: %s", dsv4_errmsg());
        CHECK(!dsv4_session_copy(d, a), "copy: %s", dsv4_errmsg());
        CHECK(dsv4_session_pos(b) == P && dsv4_session_pos(d) == P, "positions");
        float *la = malloc((size_t)(T - P) * V * sizeof(float)), *lb = malloc((size_t)(T - P) * V * sizeof(float));
        float *ld = malloc((size_t)(T - P) * V * sizeof(float));
        CHECK(!dsv4_forward(a, ids + P, T - P, DSV4_LOGITS_ALL, la), "cont a");
        CHECK(!dsv4_forward(b, ids + P, T - P, DSV4_LOGITS_ALL, lb), "cont b");
        CHECK(!dsv4_forward(d, ids + P, T - P, DSV4_LOGITS_ALL, ld), "cont d");
        CHECK(!memcmp(la, lb, (size_t)(T - P) * V * sizeof(float)), "restored session diverges (cut %d, mode %d)", P, mode);
        CHECK(!memcmp(la, ld, (size_t)(T - P) * V * sizeof(float)), "copied session diverges (cut %d, mode %d)", P, mode);
        /* corrupt snapshots */
        CHECK(dsv4_session_restore(b, buf, n - 1) == DSV4_EFORMAT, "truncated snapshot accepted");
        CHECK(strstr(dsv4_errmsg(), "truncated") || strstr(dsv4_errmsg(), "trailing"), "message: %s", dsv4_errmsg());
        buf[0] ^= 1;
        CHECK(dsv4_session_restore(b, buf, n) == DSV4_EFORMAT, "bad magic accepted");
        buf[0] ^= 1;
        buf[16] ^= 1; /* fingerprint */
        CHECK(dsv4_session_restore(b, buf, n) == DSV4_EINVAL, "foreign snapshot accepted");
        CHECK(dsv4_session_pos(b) == 0, "failed restore leaves the session reset");
        free(buf);
        free(la);
        free(lb);
        free(ld);
        dsv4_session_free(a);
        dsv4_session_free(b);
        dsv4_session_free(d);
    }
    dsv4_model_close(m);
}

int main(void) {
    run(DSV4_NUMERICS_EXACT);
    run(DSV4_NUMERICS_DEFAULT);
    return check_done("test_snapshot");
}
