/* optim.h: DeepSeek-V4's optimisers, the router-bias rule and the learning-rate schedule.
 *
 * Which rule trains which tensor (V4 paper §2.4, shared/spec/mhc-engram-muon.md §2.9, §3.3):
 *   Muon   every matrix of the blocks: attention, compressor and indexer projections, the
 *          router, the experts, mHC's fn (hc_head_fn too), MTP's e_proj / h_proj.
 *          Each logically independent matrix on its own: every expert is its own tensor, and
 *          the grouped output projection wo_a is o_groups matrices stacked.
 *   AdamW  the token embedding, the LM head, every RMSNorm weight, mHC's static biases and
 *          gating factors (*_base, *_scale), the attention sinks and the compressors'
 *          position biases (ape). Weight decay on the embedding and the head only: norms,
 *          biases and gating factors are not decayed (as V4.1 states for its AdamW group).
 *   bias   gate.bias of the score-routed layers gets no gradient; after each step it moves
 *          by the auxiliary-loss-free rule b_e += speed * sign(mean load - load_e).
 *
 * Muon (V4 Algorithm 1): M <- mu M + G;  O = HybridNewtonSchulz(mu M + G) (Nesterov);
 *   W <- W (1 - lr wd) - lr * gamma * sqrt(max(rows, cols)) * O,
 * gamma = 0.18 making the update's RMS that of a typical AdamW update, so one learning rate
 * and schedule serve both rules. The hybrid Newton-Schulz runs 8 quintic steps with
 * (3.4445, -4.7750, 2.0315), which bring the singular values into about [0.7, 1.2] fast, then
 * 2 with (2, -1.5, 0.5), which pin them at 1; in fp32 here (sgemm), on the wide orientation.
 *
 * Everything is deterministic and independent of the thread count: tensors are updated in
 * parallel, each by one thread, and the gradient norm is summed per tensor then in table
 * order. */
#ifndef DSV4_TRAIN_OPTIM_H
#define DSV4_TRAIN_OPTIM_H

#include "train/train.h"

typedef enum { DSV4_RULE_MUON, DSV4_RULE_ADAMW, DSV4_RULE_ROUTER_BIAS } dsv4_opt_rule;

typedef struct dsv4_optim_opts {
    float weight_decay;      /* decoupled, times the learning rate: 0.1 */
    float momentum;          /* Muon's mu (Nesterov): 0.95 */
    float update_rms;        /* Muon's gamma: 0.18 */
    int ns_fast, ns_exact;   /* Newton-Schulz steps of the two polynomials: 8, 2 */
    float beta1, beta2, eps; /* AdamW: 0.9, 0.95, 1e-20 (V4's) */
    float clip;              /* bound on the global gradient norm; 0: none. 1.0 */
    float bias_speed;        /* the router-bias rule's step: 0.001 */
} dsv4_optim_opts;

void dsv4_optim_defaults(dsv4_optim_opts *o);

typedef struct dsv4_optim {
    dsv4_optim_opts o;
    long step;               /* updates done (AdamW's bias correction counts from it) */
    int n;                   /* parameters (tm->n_table) */
    dsv4_opt_rule *rule;     /* per parameter */
    int *blocks;             /* Muon: independent matrices stacked by rows (wo_a: o_groups) */
    bool *decay;             /* weight decay applies */
    float *m, *v;            /* laid out as tm->params: Muon's momentum in m, AdamW's moments */
    size_t n_floats;
} dsv4_optim;

dsv4_status dsv4_optim_new(const dsv4_tmodel *tm, const dsv4_optim_opts *o, dsv4_optim **out);
void dsv4_optim_free(dsv4_optim *opt);
const char *dsv4_opt_rule_name(dsv4_opt_rule r);

/* The L2 norm of all gradients. */
double dsv4_grad_norm(const dsv4_tmodel *tm);
/* One update at learning rate lr. gnorm is the gradient norm: with o.clip > 0 and gnorm above
 * it, the gradients are scaled by clip / gnorm first. */
dsv4_status dsv4_optim_step(dsv4_optim *opt, dsv4_tmodel *tm, float lr, double gnorm);
/* The auxiliary-loss-free rule on every score-routed layer (the MTP block's included):
 * loads[b * E + e] = the tokens block b sent to expert e during the step. */
void dsv4_router_bias_update(dsv4_tmodel *tm, const int64_t *loads, float speed);

/* Orthogonalise the rows x cols matrix X in place: X / (|X|_F + 1e-7), then `fast` quintic
 * steps and `exact` cubic steps (the hybrid schedule above). */
dsv4_status dsv4_newton_schulz(float *X, int rows, int cols, int fast, int exact);

/* The moments as F32 safetensors ("m", "v"), and back (the model must be the same). */
dsv4_status dsv4_optim_write(const dsv4_optim *opt, const char *path);
dsv4_status dsv4_optim_read(dsv4_optim *opt, const char *path);

/* ---- the learning-rate schedule ------------------------------------------------------------
 * Linear warm-up from 0 over `warmup` steps, constant, then from step decay_start * total a
 * cosine decay down to final_ratio * lr at the last step (V4: warm-up, constant, cosine to
 * 1/10 near the end). */
typedef struct dsv4_schedule {
    float lr;
    long warmup, total;
    float decay_start, final_ratio;
} dsv4_schedule;

float dsv4_schedule_lr(const dsv4_schedule *s, long step);
/* Whether step is in the decay (V4 drops the MTP weight from 0.3 to 0.1 there). */
bool dsv4_schedule_decaying(const dsv4_schedule *s, long step);

#endif
