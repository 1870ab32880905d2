/* fuzz_config.c: libFuzzer target for the config.json parser.
 *
 * The input is the text of a config.json. On failure the message must name the file; on
 * success the config must satisfy the relations the forward pass relies on (positive sizes,
 * layer counts within the ratio table, products that fit in int), which the target re-checks
 * independently of config.c. Like fuzz_safetensors.c, the file is also built into a replay
 * tool that CTest runs over the seed corpus. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"

#define LABEL "fuzz/config.json"

#define REQUIRE(cond)                                                                  \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "fuzz_config: broken promise: %s (%s)\n", #cond,           \
                    dsv4_errmsg());                                                    \
            abort();                                                                   \
        }                                                                              \
    } while (0)

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    /* the parser takes a C string; text after an embedded NUL is simply not seen */
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    struct dsv4_config c;
    dsv4_status rc = dsv4_config_parse(text, LABEL, &c);
    free(text);
    if (rc != DSV4_OK) {
        REQUIRE(strstr(dsv4_errmsg(), LABEL) != NULL);
        return 0;
    }
    REQUIRE(c.vocab_size > 0 && c.dim > 0 && c.n_heads > 0 && c.head_dim > c.rope_head_dim);
    REQUIRE(c.n_layers > 0 && c.n_mtp_layers >= 0 && c.n_layers + c.n_mtp_layers <= DSV4_MAX_LAYERS);
    REQUIRE(c.n_activated_experts > 0 && c.n_activated_experts <= c.n_routed_experts);
    REQUIRE(c.hc_mult > 0 && c.o_groups > 0 && c.n_heads % c.o_groups == 0);
    REQUIRE((long long)c.n_heads * c.head_dim <= 0x7fffffff);
    REQUIRE((long long)c.hc_mult * c.dim <= 0x7fffffff);
    REQUIRE((long long)c.o_groups * c.o_lora_rank <= 0x7fffffff);
    REQUIRE((long long)c.vocab_size * c.n_activated_experts <= 0x7fffffff);
    for (int i = 0; i < c.n_layers + c.n_mtp_layers; i++) REQUIRE(c.compress_ratios[i] >= 0);
    return 0;
}
