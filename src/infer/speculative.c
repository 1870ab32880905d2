/* speculative.c: greedy generation, plain or with DSpark speculation.
 *
 * A speculative step starts where plain decoding would: the next token (the anchor) is
 * chosen but not fed. DSpark drafts `block` tokens after it; the main model then feeds the
 * anchor and the drafts in one step and gives the logits after each. Draft i is accepted
 * when it is the main model's argmax after draft i-1 (after the anchor for i = 0), and the
 * first disagreement (or the argmax after the last draft) becomes the next anchor. So the
 * tokens are exactly plain greedy decoding's, one step of the main model yields 1 to
 * block+1 of them, and the verification step's rows compute what single-token steps would
 * (model_v41.c treats each row of a decode step as its own step).
 *
 * The rejected drafts were fed, so the session is rolled back to the last accepted token:
 * before the step we save the window-ring slots it will overwrite (main layers and DSpark
 * stages; at most block+1 slots each), and afterwards we restore the slots of the rejected
 * positions, shorten the compressed rows and index keys to the groups the kept positions
 * complete, and recompute the shared index-key slot. Compressor inputs are kept by position
 * and the Engram history is indexed by position, so neither needs restoring. */
#include <stdio.h>

#include "base/base.h"
#include "infer/speculative.h"
#include "infer/state.h"
#include "model/forward.h"
#include "model/model.h"

dsv4_status dsv4_step_mark_save(dsv4_session *s, int n, dsv4_step_mark *mk) {
    if (n > s->m->cfg.window_size || n > dsv4_csa2_slots(1) - 2)
        return dsv4_error(DSV4_EINVAL, "a step of %d tokens cannot be taken back (window of %d)", n, s->m->cfg.window_size);
    mk->pos0 = s->pos;
    mk->n = n;
    mk->idx_slot = s->idx_slot;
    mk->offset = malloc(((size_t)s->n_states + 1) * sizeof(size_t));
    size_t total = 0;
    for (int i = 0; mk->offset && i < s->n_states; i++) {
        mk->offset[i] = total;
        total += (size_t)n * s->layers[i].win.row_bytes;
    }
    mk->rings = malloc(total + 1);
    if (!mk->offset || !mk->rings) {
        free(mk->offset);
        free(mk->rings);
        return dsv4_error(DSV4_ENOMEM, "out of memory saving the session for a speculative step");
    }
    for (int i = 0; i < s->n_states; i++) {
        const dsv4_rowstore *w = &s->layers[i].win;
        for (int t = 0; t < n; t++)
            memcpy(mk->rings + mk->offset[i] + (size_t)t * w->row_bytes, w->data + (size_t)((mk->pos0 + t) % w->cap) * w->row_bytes,
                   w->row_bytes);
    }
    return DSV4_OK;
}

void dsv4_step_mark_free(dsv4_step_mark *mk) {
    free(mk->rings);
    free(mk->offset);
    mk->rings = NULL;
    mk->offset = NULL;
}

void dsv4_step_rollback(dsv4_session *s, const dsv4_step_mark *mk, int keep) {
    const struct dsv4_model *m = s->m;
    const struct dsv4_config *c = &m->cfg;
    int newpos = mk->pos0 + keep;
    for (int i = 0; i < s->n_states; i++) {
        dsv4_layer_state *ls = &s->layers[i];
        dsv4_rowstore *w = &ls->win;
        for (int t = keep; t < mk->n; t++)
            memcpy(w->data + (size_t)((mk->pos0 + t) % w->cap) * w->row_bytes, mk->rings + mk->offset[i] + (size_t)t * w->row_bytes,
                   w->row_bytes);
        if (i < c->n_layers && m->layers[i].attn.kv_source) {
            int r = m->layers[i].attn.ratio;
            ls->comp.n_rows = DSV4_MIN(ls->comp.n_rows, newpos / r);
            ls->idx.n_rows = DSV4_MIN(ls->idx.n_rows, newpos / r);
        }
    }
    s->idx_slot = mk->idx_slot;
    for (int q = newpos - 1; q >= mk->pos0; q--) {
        int v = dsv4_csa2_slot_after(m, q, false, 0);
        if (v >= 0) {
            s->idx_slot = v;
            break;
        }
    }
    s->pos = newpos;
}

static int argmax(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

dsv4_status dsv4_generate_greedy(dsv4_session *s, const int32_t *prompt, int n_prompt, int max_new, int32_t eos,
                                 int speculative, int32_t *out, int *n_out, dsv4_spec_stats *stats) {
    dsv4_model *m = s->m;
    const struct dsv4_config *c = &m->cfg;
    int V = c->vocab_size, B = speculative ? dsv4_model_dspark_block(m) : 0;
    dsv4_spec_stats st = {0};
    *n_out = 0;
    if (n_prompt < 1) return dsv4_error(DSV4_EINVAL, "greedy generation needs a prompt of at least one token");
    if (B > 0 && B + 1 > DSV4_MIN(c->window_size, dsv4_csa2_slots(1) - 2))
        return dsv4_error(DSV4_EUNSUPPORTED, "DSpark block of %d does not fit the window of %d", B, c->window_size);
    float *logits = malloc((size_t)(B + 1) * V * sizeof(float));
    int32_t *chunk = malloc((size_t)(B + 1) * sizeof(int32_t)), *drafts = malloc((size_t)(B + 1) * sizeof(int32_t));
    if (!logits || !chunk || !drafts) {
        free(logits);
        free(chunk);
        free(drafts);
        return dsv4_error(DSV4_ENOMEM, "out of memory for generation");
    }
    dsv4_status rc = dsv4_forward(s, prompt, n_prompt, DSV4_LOGITS_LAST, logits);
    int32_t next = rc ? 0 : argmax(logits, V);
    double t0 = dsv4_now();
    while (!rc && *n_out < max_new) {
        out[(*n_out)++] = next;
        if (next == eos || *n_out == max_new) break;
        int room = s->max_ctx - s->pos; /* tokens the session can still take */
        int k = DSV4_MIN(B, DSV4_MIN(max_new - *n_out, room - 1));
        if (k <= 0) { /* plain greedy step */
            double t1 = dsv4_now();
            rc = dsv4_forward(s, &next, 1, DSV4_LOGITS_LAST, logits);
            st.verify_seconds += dsv4_now() - t1;
            st.steps++;
            if (!rc) next = argmax(logits, V);
            continue;
        }
        double t1 = dsv4_now();
        if ((rc = dsv4_dspark_draft(s, next, drafts, NULL, NULL))) break;
        double t2 = dsv4_now();
        st.draft_seconds += t2 - t1;
        chunk[0] = next;
        memcpy(chunk + 1, drafts, (size_t)k * sizeof(int32_t));
        dsv4_step_mark mk;
        if ((rc = dsv4_step_mark_save(s, k + 1, &mk))) break;
        rc = dsv4_forward(s, chunk, k + 1, DSV4_LOGITS_ALL, logits);
        st.verify_seconds += dsv4_now() - t2;
        st.steps++;
        st.drafted += k;
        int acc = 0;
        bool stop = false;
        while (!rc && acc < k && drafts[acc] == argmax(logits + (size_t)acc * V, V)) {
            out[(*n_out)++] = drafts[acc];
            acc++;
            if (drafts[acc - 1] == eos || *n_out == max_new) {
                stop = true;
                break;
            }
        }
        st.accepted += acc;
        if (!rc) {
            dsv4_step_rollback(s, &mk, 1 + acc);
            next = argmax(logits + (size_t)acc * V, V);
        }
        dsv4_step_mark_free(&mk);
        if (stop) break;
    }
    st.generated = *n_out;
    st.seconds = dsv4_now() - t0;
    if (stats) *stats = st;
    free(logits);
    free(chunk);
    free(drafts);
    return rc;
}
