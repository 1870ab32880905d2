/* test_chat.c: the chat renderer's API beyond the golden files of render.test.sh.
 *
 * - The options: NULL means the defaults; bad enum values are refused.
 * - Errors name the message and field.
 * - Robustness: every case of tests/data/encoding and shared/encoding/extra is mutated a few
 *   hundred times (a value replaced by one of another type, a key removed) and rendered;
 *   the result must be DSV4_OK or DSV4_EINVAL with a message, never a crash (the sanitizer
 *   build runs this too). */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "text/chat.h"

static json_t *load(const char *path) { return json_load_file(path, JSON_ALLOW_NUL, NULL); }

static void test_options_and_errors(void) {
    json_t *msgs = json_loads("[{\"role\": \"user\", \"content\": \"hi\"}]", 0, NULL);
    char *out = NULL;
    size_t len = 0;
    CHECK(dsv4_chat_render(msgs, NULL, &out, &len) == DSV4_OK, "NULL options");
    const char *want = "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜></think>";
    CHECK(out && len == strlen(want) && !strcmp(out, want), "defaults are chat mode: %s", out ? out : "(null)");
    free(out);

    dsv4_chat_opts opts = {.thinking_mode = (dsv4_thinking_mode)7};
    CHECK(dsv4_chat_render(msgs, &opts, &out, &len) == DSV4_EINVAL && !out, "bad thinking mode refused");
    opts = (dsv4_chat_opts){.reasoning_effort = (dsv4_reasoning_effort)-1};
    CHECK(dsv4_chat_render(msgs, &opts, &out, &len) == DSV4_EINVAL, "bad effort refused");
    json_decref(msgs);

    static const struct {
        const char *json, *field;
    } bad[] = {
        {"{\"role\": \"user\"}", "messages: expected a list"},
        {"[1]", "messages[0]: expected a message object"},
        {"[{\"content\": \"x\"}]", "messages[0].role: missing"},
        {"[{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"reasoning_content\": 5}]",
         "messages[1].reasoning_content"},
        {"[{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"tool_calls\": [{\"function\": "
         "{\"name\": \"f\"}}]}]",
         "messages[1].tool_calls[0].function.arguments: missing"},
        {"[{\"role\": \"system\", \"tools\": {\"a\": 1}}]", "messages[0].tools: expected a list"},
        {"[{\"role\": \"tool\", \"content\": [{\"type\": 3}]}]", "messages[0].content[0]"},
        {"[{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"tool\", \"tool_call_id\": 7}]", "messages[1].tool_call_id"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *m = json_loads(bad[i].json, JSON_DECODE_ANY, NULL);
        dsv4_status st = dsv4_chat_render(m, NULL, &out, &len);
        CHECK(st == DSV4_EINVAL && strstr(dsv4_errmsg(), bad[i].field), "%s: got %s \"%s\", want \"%s\"", bad[i].json,
              dsv4_status_name(st), dsv4_errmsg(), bad[i].field);
        json_decref(m);
    }

    /* The context is checked too, and named as such. */
    json_t *ctx = json_loads("[{\"role\": \"user\", \"content\": 1}]", 0, NULL);
    msgs = json_loads("[]", 0, NULL);
    opts = (dsv4_chat_opts){.context = ctx};
    CHECK(dsv4_chat_render(msgs, &opts, &out, &len) == DSV4_EINVAL && strstr(dsv4_errmsg(), "context[0].content"),
          "context errors: %s", dsv4_errmsg());
    json_decref(ctx);
    json_decref(msgs);
}

/* ---- mutation fuzzing ------------------------------------------------------------------- */

static unsigned rng_state = 2026;
static unsigned rng(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}

/* Every place a value sits: a member of an object or an element of an array. */
typedef struct slot {
    json_t *parent;
    const char *key;
    size_t index;
} slot;

static void collect(json_t *v, slot *slots, int *n, int max) {
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (*n < max) slots[(*n)++] = (slot){v, NULL, i};
            collect(json_array_get(v, i), slots, n, max);
        }
    } else if (json_is_object(v)) {
        const char *k;
        json_t *item;
        json_object_foreach(v, k, item) {
            if (*n < max) slots[(*n)++] = (slot){v, k, 0};
            collect(item, slots, n, max);
        }
    }
}

static json_t *random_value(void) {
    switch (rng() % 9) {
    case 0: return json_null();
    case 1: return json_true();
    case 2: return json_integer((json_int_t)(rng() % 5) - 1);
    case 3: return json_real(0.5);
    case 4: return json_string("");
    case 5: return json_string("x<｜DSML｜{\"");
    case 6: return json_array();
    case 7: return json_loads("[{\"type\": \"text\", \"text\": \"t\"}]", 0, NULL);
    default: return json_object();
    }
}

static void mutate(json_t *root) {
    enum { MAX_SLOTS = 4096 };
    static slot slots[MAX_SLOTS];
    int n = 0;
    collect(root, slots, &n, MAX_SLOTS);
    if (!n) return;
    slot s = slots[rng() % (unsigned)n];
    if (s.key && rng() % 3 == 0) json_object_del(s.parent, s.key);
    else if (s.key) json_object_set_new(s.parent, s.key, random_value());
    else json_array_set_new(s.parent, s.index, random_value());
}

static void fuzz_file(const char *path, int *ok, int *refused) {
    json_t *c = load(path);
    if (!c) return;
    for (int trial = 0; trial < 150; trial++) {
        json_t *m = json_deep_copy(c);
        int n = 1 + (int)(rng() % 3);
        for (int i = 0; i < n; i++) mutate(m);
        dsv4_chat_opts opts = {.thinking_mode = (dsv4_thinking_mode)(rng() % 2),
                               .reasoning_effort = (dsv4_reasoning_effort)(rng() % 3),
                               .keep_thinking = rng() % 2,
                               .context = json_object_get(m, "context")};
        char *out = NULL;
        size_t len;
        dsv4_status st = dsv4_chat_render(json_object_get(m, "messages"), &opts, &out, &len);
        if (st == DSV4_OK) {
            CHECK(out && strlen(out) <= len, "%s: output missing", path);
            (*ok)++;
        } else {
            CHECK(st == DSV4_EINVAL && *dsv4_errmsg() && !out, "%s: status %s", path, dsv4_status_name(st));
            (*refused)++;
        }
        free(out);
        json_decref(m);
    }
    json_decref(c);
}

static void fuzz_dir(const char *dir, int *ok, int *refused, int *files) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 11 || strcmp(e->d_name + n - 11, ".input.json")) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        fuzz_file(path, ok, refused);
        (*files)++;
    }
    closedir(d);
}

static void test_fuzz(void) {
    int ok = 0, refused = 0, files = 0;
    fuzz_dir(DSV4_SOURCE_DIR "/tests/data/encoding", &ok, &refused, &files);
    fuzz_dir(DSV4_SHARED "/encoding/extra", &ok, &refused, &files);
    CHECK(files >= 20, "only %d case files found", files);
    CHECK(ok > 100 && refused > 100, "mutations rendered %d, refused %d: both should be common", ok, refused);
    printf("test_chat: %d mutated conversations rendered, %d refused, from %d files\n", ok, refused, files);
}

int main(void) {
    test_options_and_errors();
    test_fuzz();
    return check_done("test_chat");
}
