/* speculative.h: taking back the tail of a forward step (V4.1 speculative decoding).
 *
 * A verification step feeds the anchor and the drafts; afterwards only the accepted prefix
 * may stay in the session. dsv4_step_mark saves what a step of n tokens will overwrite (the
 * window-ring slots of every layer and DSpark stage, the shared index-key slot); after the
 * step, dsv4_step_rollback keeps its first `keep` tokens and forgets the rest. n must not
 * exceed the window size. */
#ifndef DSV4_SPECULATIVE_H
#define DSV4_SPECULATIVE_H

#include <stddef.h>
#include <stdint.h>

#include "dsv4.h"

typedef struct dsv4_step_mark {
    int pos0, n, idx_slot;
    uint8_t *rings;  /* per state, the n ring slots the step overwrites */
    size_t *offset;  /* [n_states] where each state's saved slots start */
} dsv4_step_mark;

dsv4_status dsv4_step_mark_save(dsv4_session *s, int n, dsv4_step_mark *mk);
void dsv4_step_rollback(dsv4_session *s, const dsv4_step_mark *mk, int keep);
void dsv4_step_mark_free(dsv4_step_mark *mk);

#endif
