/* test_pyjson.c: pyjson against Python itself.
 *
 * The expected values were produced by Python 3.11's json module (see
 * tests/data/encoding/README.md): json.dumps of ~5000 doubles chosen to stress shortest
 * round-trip printing (every power of two, subnormals, the extremes, random bit patterns),
 * and json.loads' verdict on ~1500 texts (hand-written edge cases plus random mutations of
 * valid objects): invalid, not an object, or the members with their dumps text. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "text/pyjson.h"

static void test_float_repr(void) {
    const char *path = DSV4_SOURCE_DIR "/tests/data/encoding/pyjson_float_repr.txt";
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f) return;
    char line[128];
    int n = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        unsigned long long bits;
        char want[64];
        if (sscanf(line, "%llx %63s", &bits, want) != 2) continue;
        double x;
        memcpy(&x, &bits, sizeof x);
        char got[DSV4_PYJSON_DOUBLE_MAX];
        dsv4_pyjson_format_double(x, got);
        n++;
        if (strcmp(got, want) && bad++ < 10) CHECK(0, "bits %016llx: got %s, Python %s", bits, got, want);
    }
    fclose(f);
    CHECK(bad == 0, "%d of %d doubles print differently from Python", bad, n);
    CHECK(n > 4000, "only %d doubles read", n);
}

static bool member_matches(const dsv4_pyjson_member *m, const json_t *want) {
    const json_t *k = json_array_get(want, 0), *s = json_array_get(want, 1), *v = json_array_get(want, 2);
    return json_string_length(k) == m->key_len && !memcmp(json_string_value(k), m->key, m->key_len) &&
           json_is_true(s) == m->is_string && json_string_length(v) == m->value_len &&
           !memcmp(json_string_value(v), m->value, m->value_len);
}

static void test_loads(void) {
    const char *path = DSV4_SOURCE_DIR "/tests/data/encoding/pyjson_loads.jsonl";
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f) return;
    int n = 0, bad = 0;
    json_error_t err;
    json_t *c;
    while ((c = json_loadf(f, JSON_DISABLE_EOF_CHECK | JSON_ALLOW_NUL, &err))) {
        const json_t *text = json_object_get(c, "text"), *want = json_object_get(c, "result");
        dsv4_pyjson_object obj;
        char why[128] = "";
        dsv4_pyjson_result r = dsv4_pyjson_load_object(json_string_value(text), json_string_length(text), &obj,
                                                       why, sizeof why);
        bool ok;
        if (json_is_string(want)) {
            ok = !strcmp(json_string_value(want), "invalid") ? r == DSV4_PYJSON_INVALID : r == DSV4_PYJSON_NOT_OBJECT;
        } else {
            ok = r == DSV4_PYJSON_OBJECT && obj.count == json_array_size(want);
            for (size_t i = 0; ok && i < obj.count; i++) ok = member_matches(&obj.members[i], json_array_get(want, i));
        }
        /* The relaxed validator agrees with json.loads on every text. */
        bool valid = dsv4_pyjson_valid(json_string_value(text), json_string_length(text), false);
        ok = ok && valid == (r != DSV4_PYJSON_INVALID);
        if (!ok && bad++ < 10)
            CHECK(0, "json.loads(%s): result %d (%s) differs from Python", json_string_value(text), (int)r, why);
        if (r == DSV4_PYJSON_OBJECT) dsv4_pyjson_object_free(&obj);
        n++;
        json_decref(c);
    }
    fclose(f);
    CHECK(bad == 0, "%d of %d texts parse differently from Python", bad, n);
    CHECK(n > 1000, "only %d texts read", n);
}

static void expect_dump(const char *json_text, const char *want) {
    json_error_t err;
    json_t *v = json_loads(json_text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    CHECK(v != NULL, "jansson cannot read %s", json_text);
    if (!v) return;
    dsv4_strbuf b = DSV4_STRBUF_INIT;
    dsv4_pyjson_dump(&b, v);
    CHECK(b.len == strlen(want) && !memcmp(b.data, want, b.len), "dump(%s) = %s, want %s", json_text, b.data, want);
    dsv4_strbuf_free(&b);
    json_decref(v);
}

static void test_dump(void) {
    /* Expected strings are json.dumps(json.loads(x), ensure_ascii=False) from Python. */
    expect_dump("{\"b\":1,\"a\":[1.0,2.5e-7,-0.0,true,false,null],\"c\":{}}",
                "{\"b\": 1, \"a\": [1.0, 2.5e-07, -0.0, true, false, null], \"c\": {}}");
    expect_dump("\"\\u0000\\u001f\\u007f\\t\\n\\r\\b\\f\\\"\\\\/\u00e9\"",
                "\"\\u0000\\u001f\177\\t\\n\\r\\b\\f\\\"\\\\/\u00e9\"");
    expect_dump("[[], {}, [[]], 1e16, 1e15, 123456789012345678]",
                "[[], {}, [[]], 1e+16, 1000000000000000.0, 123456789012345678]");
    expect_dump("{\"k\\u0001ey\": \"v\\u0000\"}", "{\"k\\u0001ey\": \"v\\u0000\"}");
    CHECK(!dsv4_pyjson_valid("NaN", 3, true) && dsv4_pyjson_valid("NaN", 3, false), "strict rejects NaN");
    CHECK(!dsv4_pyjson_valid("[-Infinity]", 11, true), "strict rejects -Infinity");
    CHECK(dsv4_pyjson_valid(" [1, {\"a\": \"b\"}] ", 17, true), "strict accepts plain JSON");
}

static void test_truthy(void) {
    const char *falsy[] = {"null", "false", "0", "0.0", "\"\"", "[]", "{}"};
    const char *truthy[] = {"true", "1", "-0.5", "\" \"", "[0]", "{\"a\": null}"};
    for (size_t i = 0; i < sizeof falsy / sizeof *falsy; i++) {
        json_t *v = json_loads(falsy[i], JSON_DECODE_ANY, NULL);
        CHECK(!dsv4_pyjson_truthy(v), "%s is falsy in Python", falsy[i]);
        json_decref(v);
    }
    for (size_t i = 0; i < sizeof truthy / sizeof *truthy; i++) {
        json_t *v = json_loads(truthy[i], JSON_DECODE_ANY, NULL);
        CHECK(dsv4_pyjson_truthy(v), "%s is truthy in Python", truthy[i]);
        json_decref(v);
    }
}

int main(void) {
    test_float_repr();
    test_loads();
    test_dump();
    test_truthy();
    return check_done("test_pyjson");
}
