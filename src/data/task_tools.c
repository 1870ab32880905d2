/* task_tools.c: tool calls in DSML, a tool's result, and an answer that uses it.
 *
 *   system     "You are a helpful assistant." + tools (1 to 4 of the six below, shuffled)
 *   user       "What's the weather in Paris?"
 *   assistant  (content "") tool_calls: get_weather({"city": "Paris"})
 *   tool       {"city": "Paris", "temperature": 18, "condition": "cloudy"}
 *   assistant  "It is 18 degrees and cloudy in Paris."
 *
 * The encoder renders the tools as the official "## Tools" section and the call as a DSML
 * block; the tool result travels in the next user turn as <tool_result>...</tool_result>.
 * The tools' answers are random (a made-up weather, a made-up exchange rate), so the final
 * answer can only come from reading the result, never from memory.
 *
 * Shapes: 7 in 10 examples make one call; 1 in 10 make two calls in one block (two cities,
 * or two tools) and answer both; 2 in 10 ask something no tool is needed for (a sum, a
 * greeting) and are answered directly although tools are offered. The evaluation asks for
 * single calls only (dsv4_task_opts.single_call). */
#include <stdio.h>

#include "base/base.h"
#include "data/task_internal.h"
#include "text/pyjson.h"

typedef enum tool_id { WEATHER, TIME, PRICE, CONVERT, PHONE, TIMER, N_TOOLS } tool_id;

static const struct {
    const char *name, *description, *parameters; /* parameters: JSON schema text */
} tools[N_TOOLS] = {
    {"get_weather", "Get the current weather in a city.",
     "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"The city name\"}}, "
     "\"required\": [\"city\"]}"},
    {"get_time", "Get the current local time in a city.",
     "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"The city name\"}}, "
     "\"required\": [\"city\"]}"},
    {"get_price", "Look up the price of an item in the shop, in dollars.",
     "{\"type\": \"object\", \"properties\": {\"item\": {\"type\": \"string\", \"description\": \"The item\"}}, "
     "\"required\": [\"item\"]}"},
    {"convert_currency", "Convert an amount of money from one currency to another.",
     "{\"type\": \"object\", \"properties\": {\"amount\": {\"type\": \"number\"}, \"from\": {\"type\": \"string\", "
     "\"description\": \"Currency code, e.g. USD\"}, \"to\": {\"type\": \"string\", \"description\": \"Currency "
     "code\"}}, \"required\": [\"amount\", \"from\", \"to\"]}"},
    {"get_phone_number", "Find the phone number of a contact.",
     "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\", \"description\": \"The contact's "
     "name\"}}, \"required\": [\"name\"]}"},
    {"set_timer", "Start a timer.",
     "{\"type\": \"object\", \"properties\": {\"minutes\": {\"type\": \"integer\"}, \"label\": {\"type\": "
     "\"string\", \"description\": \"What the timer is for\"}}, \"required\": [\"minutes\", \"label\"]}"},
};

static const char *const currencies[] = {"USD", "EUR", "GBP", "JPY", "CHF", "CAD"};
static const char *const timer_labels[] = {"tea", "pasta", "laundry", "a break", "the oven", "homework", "rice",
                                           "a walk"};

static json_t *tool_schema(tool_id t) {
    json_t *params = json_loads(tools[t].parameters, JSON_PRESERVE_ORDER, NULL);
    return json_pack("{s:s, s:{s:s, s:s, s:o}}", "type", "function", "function", "name", tools[t].name,
                     "description", tools[t].description, "parameters", params);
}

/* One call: the request, the arguments, the result, the answer, and the words a correct
 * answer must contain. */
typedef struct call {
    tool_id tool;
    char *request, *answer, *why;
    json_t *args, *result, *words;
} call;

static void call_free(call *c) {
    free(c->request);
    free(c->answer);
    free(c->why);
    json_decref(c->args);
    json_decref(c->result);
    json_decref(c->words);
}

static json_t *words(const char *a, const char *b) {
    json_t *w = json_array();
    json_array_append_new(w, json_string(a));
    if (b) json_array_append_new(w, json_string(b));
    return w;
}

static void make_call(dsv4_rng *r, tool_id t, call *c) {
    memset(c, 0, sizeof *c);
    c->tool = t;
    char num[32];
    switch (t) {
    case WEATHER: {
        const char *city = pick_word(r, &dsv4_words_cities), *cond = pick_word(r, &dsv4_words_weather);
        int temp = draw_in(r, -10, 35);
        static const char *const q[] = {"What's the weather in {0}?", "How is the weather in {0} today?",
                                        "Tell me the weather for {0}.", "Is it cold in {0} right now?",
                                        "weather in {0}?"};
        c->request = fill(PICK(r, q), (const char *[]){city});
        c->args = json_pack("{s:s}", "city", city);
        c->result = json_pack("{s:s, s:i, s:s}", "city", city, "temperature", temp, "condition", cond);
        c->answer = fmt("It is %d degrees and %s in %s.", temp, cond, city);
        c->why = fmt("The weather in %s: %d degrees, %s.", city, temp, cond);
        snprintf(num, sizeof num, "%d", temp);
        c->words = words(num, cond);
        break;
    }
    case TIME: {
        const char *city = pick_word(r, &dsv4_words_cities);
        char hhmm[8];
        snprintf(hhmm, sizeof hhmm, "%02d:%02d", draw_in(r, 0, 23), draw_in(r, 0, 59));
        static const char *const q[] = {"What time is it in {0}?", "What's the local time in {0}?",
                                        "Tell me the time in {0}.", "time in {0}?"};
        c->request = fill(PICK(r, q), (const char *[]){city});
        c->args = json_pack("{s:s}", "city", city);
        c->result = json_pack("{s:s, s:s}", "city", city, "time", hhmm);
        c->answer = fmt("It is %s in %s.", hhmm, city);
        c->why = fmt("The time in %s is %s.", city, hhmm);
        c->words = words(hhmm, NULL);
        break;
    }
    case PRICE: {
        const char *item = pick_word(r, &dsv4_words_items);
        int price = draw_in(r, 1, 500);
        static const char *const q[] = {"How much does a {0} cost?", "What's the price of a {0}?",
                                        "Look up the price of a {0}.", "How much is the {0}?"};
        c->request = fill(PICK(r, q), (const char *[]){item});
        c->args = json_pack("{s:s}", "item", item);
        c->result = json_pack("{s:s, s:i, s:s}", "item", item, "price", price, "currency", "USD");
        c->answer = fmt("The %s costs %d dollars.", item, price);
        c->why = fmt("The %s costs %d dollars.", item, price);
        snprintf(num, sizeof num, "%d", price);
        c->words = words(num, NULL);
        break;
    }
    case CONVERT: {
        uint32_t pair[2];
        draw_distinct(r, DSV4_ARRAY_LEN(currencies), 2, pair);
        const char *from = currencies[pair[0]], *to = currencies[pair[1]];
        int amount = draw_in(r, 1, 1000), result = draw_in(r, 1, 2000);
        char a[16];
        snprintf(a, sizeof a, "%d", amount);
        static const char *const q[] = {"Convert {0} {1} to {2}.", "How much is {0} {1} in {2}?",
                                        "What are {0} {1} worth in {2}?"};
        c->request = fill(PICK(r, q), (const char *[]){a, from, to});
        c->args = json_pack("{s:i, s:s, s:s}", "amount", amount, "from", from, "to", to);
        c->result = json_pack("{s:i, s:s, s:s, s:i}", "amount", amount, "from", from, "to", to, "result", result);
        c->answer = fmt("%d %s is %d %s.", amount, from, result, to);
        c->why = fmt("%d %s converts to %d %s.", amount, from, result, to);
        snprintf(num, sizeof num, "%d", result);
        c->words = words(num, NULL);
        break;
    }
    case PHONE: {
        const char *name = pick_word(r, &dsv4_words_names);
        char phone[16];
        snprintf(phone, sizeof phone, "555-%04d", draw_in(r, 100, 9999));
        static const char *const q[] = {"What is {0}'s phone number?", "Find the phone number of {0}.",
                                        "How can I call {0}?"};
        c->request = fill(PICK(r, q), (const char *[]){name});
        c->args = json_pack("{s:s}", "name", name);
        c->result = json_pack("{s:s, s:s}", "name", name, "phone", phone);
        c->answer = fmt("%s's phone number is %s.", name, phone);
        c->why = fmt("%s's number is %s.", name, phone);
        c->words = words(phone, NULL);
        break;
    }
    default: { /* TIMER */
        int minutes = draw_in(r, 1, 90);
        const char *label = PICK(r, timer_labels);
        char m[16];
        snprintf(m, sizeof m, "%d", minutes);
        static const char *const q[] = {"Set a timer for {0} minutes for {1}.", "Start a {0} minute timer for {1}.",
                                        "Remind me about {1} in {0} minutes."};
        c->request = fill(PICK(r, q), (const char *[]){m, label});
        c->args = json_pack("{s:i, s:s}", "minutes", minutes, "label", label);
        c->result = json_pack("{s:s, s:i, s:s}", "status", "started", "minutes", minutes, "label", label);
        c->answer = fmt("Done! The %d minute timer for %s is running.", minutes, label);
        c->why = fmt("The timer for %s is running.", label);
        c->words = words(m, NULL);
        break;
    }
    }
}

/* Python's json.dumps of a value (tool results read like what a Python tool would return). */
static char *py_dumps(const json_t *v) {
    dsv4_strbuf b = DSV4_STRBUF_INIT;
    dsv4_pyjson_dump(&b, v);
    return dsv4_strbuf_release(&b, NULL);
}

static json_t *tool_call(const call *c, int k) {
    char *args = py_dumps(c->args), id[24];
    snprintf(id, sizeof id, "call_%d", k);
    json_t *tc = args ? json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", id, "type", "function", "function", "name",
                                  tools[c->tool].name, "arguments", args)
                      : NULL;
    free(args);
    return tc;
}

static json_t *tool_result(const call *c, int k) {
    char *content = py_dumps(c->result), id[24];
    snprintf(id, sizeof id, "call_%d", k);
    json_t *m = content ? json_pack("{s:s, s:s, s:s}", "role", "tool", "tool_call_id", id, "content", content) : NULL;
    free(content);
    return m;
}

dsv4_status gen_tools(dsv4_taskgen *g, dsv4_rng *r, const dsv4_task_opts *o, bool thinking, dsv4_example *ex) {
    double u = dsv4_rng_uniform(r);
    int n_calls = o->single_call ? 1 : u < 0.7 ? 1 : u < 0.8 ? 2 : 0;

    call calls[2];
    uint32_t offered[N_TOOLS];
    uint32_t n_offered = (uint32_t)draw_in(r, 1, 4);
    draw_distinct(r, N_TOOLS, n_offered, offered);
    for (int i = 0; i < n_calls; i++) {
        tool_id t = i == 1 && chance(r, 0.5) ? calls[0].tool : (tool_id)offered[draw(r, n_offered)];
        make_call(r, t, &calls[i]);
    }

    json_t *m = ex->messages = json_array();
    json_t *schemas = json_array();
    for (uint32_t i = 0; i < n_offered; i++) json_array_append_new(schemas, tool_schema((tool_id)offered[i]));
    static const char *const systems[] = {"You are a helpful assistant.",
                                          "You are a helpful assistant with access to tools.",
                                          "You are a helpful assistant. Use the tools when they help."};
    json_array_append_new(m, json_pack("{s:s, s:s, s:o}", "role", "system", "content", PICK(r, systems), "tools",
                                       schemas));
    dsv4_status st = DSV4_OK;
    if (n_calls == 0) { /* no tool needed */
        exchange x = {0};
        st = chance(r, 0.5) ? arith_exchange(r, thinking, &x, ex) : chat_exchange(g, r, &x);
        if (!st) {
            json_array_append_new(m, msg("user", x.user));
            json_array_append_new(m, assistant(x.answer, thinking ? x.reasoning : NULL));
            ex->ask = (int)json_array_size(m) - 1;
        }
        exchange_free(&x);
        return st;
    }

    /* the request */
    char *request = n_calls == 1 ? fmt("%s", calls[0].request) : fmt("%s And %s", calls[0].request, calls[1].request);
    json_array_append_new(m, msg_own("user", request));
    /* the call */
    json_t *tcs = json_array();
    for (int i = 0; i < n_calls; i++) json_array_append_new(tcs, tool_call(&calls[i], i + 1));
    json_t *call_msg = json_pack("{s:s, s:s, s:o}", "role", "assistant", "content", "", "tool_calls", tcs);
    if (call_msg && thinking) {
        char *why = n_calls == 1 ? fmt("I need %s for this.", tools[calls[0].tool].name)
                                 : fmt("I need %s and %s for this.", tools[calls[0].tool].name,
                                       tools[calls[1].tool].name);
        json_object_set_new(call_msg, "reasoning_content", json_string(why ? why : ""));
        free(why);
    }
    json_array_append_new(m, call_msg);
    ex->ask = (int)json_array_size(m) - 1;
    /* the results, and the answer */
    for (int i = 0; i < n_calls; i++) json_array_append_new(m, tool_result(&calls[i], i + 1));
    char *answer = n_calls == 1 ? fmt("%s", calls[0].answer) : fmt("%s %s", calls[0].answer, calls[1].answer);
    char *why = !thinking ? NULL
                : n_calls == 1 ? fmt("%s", calls[0].why)
                               : fmt("%s %s", calls[0].why, calls[1].why);
    json_array_append_new(m, assistant_own(answer, why));

    ex->expect.kind = DSV4_EXPECT_WORDS;
    ex->expect.words = json_array();
    for (int i = 0; i < n_calls; i++) json_array_extend(ex->expect.words, calls[i].words);
    ex->expect.call = json_pack("{s:s, s:O}", "name", tools[calls[0].tool].name, "arguments", calls[0].args);
    if (json_array_size(m) != (size_t)(4 + n_calls) || !ex->expect.call)
        st = dsv4_error(DSV4_ENOMEM, "out of memory building a tool-call example");
    for (int i = 0; i < n_calls; i++) call_free(&calls[i]);
    return st;
}
