/* chat_tools.c: the two places where tools enter the prompt.
 *
 * Definitions: a system or developer message carrying `tools` gets a "## Tools" section:
 * fixed instructions that show the DSML call syntax, then each function schema as one line
 * of json.dumps(schema, ensure_ascii=False) (pyjson.c writes exactly that).
 *
 * Calls: an assistant turn's tool_calls are written in DSML after its content:
 *
 *   \n\n<｜DSML｜tool_calls>
 *   <｜DSML｜invoke name="get_weather">
 *   <｜DSML｜parameter name="city" string="true">北京</｜DSML｜parameter>
 *   <｜DSML｜parameter name="days" string="false">3</｜DSML｜parameter>
 *   </｜DSML｜invoke>
 *   </｜DSML｜tool_calls>
 *
 * The OpenAI-style `arguments` is JSON text. Read as json.loads does, each member becomes a
 * parameter: a string value is written raw (no escaping at all) with string="true", any
 * other value as its json.dumps text with string="false". Text that is not JSON becomes
 * the single string parameter "arguments"; a value that is not a string at all becomes a
 * non-string parameter "arguments". JSON that is not an object is an error (the reference
 * fails on it). dsml.c parses this syntax back. */
#include <stdio.h>

#include "base/base.h"
#include "text/chat.h"
#include "text/pyjson.h"

#define DSML "｜DSML｜"

static const char tools_intro[] =
    "## Tools\n\n"
    "You have access to a set of tools to help answer the user's question. You can invoke tools "
    "by writing a \"<" DSML "tool_calls>\" block like the following:\n\n"
    "<" DSML "tool_calls>\n"
    "<" DSML "invoke name=\"$TOOL_NAME\">\n"
    "<" DSML "parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</" DSML "parameter>\n"
    "...\n"
    "</" DSML "invoke>\n"
    "<" DSML "invoke name=\"$TOOL_NAME2\">\n"
    "...\n"
    "</" DSML "invoke>\n"
    "</" DSML "tool_calls>\n\n"
    "String parameters should be specified as is and set `string=\"true\"`. For all other types "
    "(numbers, booleans, arrays, objects), pass the value in JSON format and set `string=\"false\"`.\n\n"
    "If thinking_mode is enabled (triggered by <think>), you MUST output your complete reasoning "
    "inside <think>...</think> BEFORE any tool calls or final response.\n\n"
    "Otherwise, output directly after </think> with tool calls or final response.\n\n"
    "### Available Tool Schemas\n\n";

static const char tools_outro[] =
    "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls.\n";

dsv4_status dsv4_chat_render_tools(dsv4_strbuf *out, const json_t *tools, const char *where) {
    if (!json_is_array(tools)) return dsv4_error(DSV4_EINVAL, "%s: expected a list of tools", where);
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        if (!json_is_object(t) || !json_object_get(t, "function"))
            return dsv4_error(DSV4_EINVAL, "%s[%zu]: expected {\"type\": \"function\", \"function\": {...}}",
                              where, i);
    }
    dsv4_strbuf_puts(out, tools_intro);
    json_array_foreach(tools, i, t) {
        if (i) dsv4_strbuf_putc(out, '\n');
        dsv4_pyjson_dump(out, json_object_get(t, "function"));
    }
    dsv4_strbuf_puts(out, tools_outro);
    return DSV4_OK;
}

static void put_parameter(dsv4_strbuf *out, const char *key, size_t key_len, bool is_string,
                          const char *value, size_t value_len) {
    dsv4_strbuf_puts(out, "<" DSML "parameter name=\"");
    dsv4_strbuf_append(out, key, key_len);
    dsv4_strbuf_puts(out, is_string ? "\" string=\"true\">" : "\" string=\"false\">");
    dsv4_strbuf_append(out, value, value_len);
    dsv4_strbuf_puts(out, "</" DSML "parameter>");
}

/* The parameter lines of one call (encode_arguments_to_dsml). */
static dsv4_status put_arguments(dsv4_strbuf *out, const json_t *args, const char *where, size_t k) {
    if (!json_is_string(args)) { /* json.loads raises TypeError: {"arguments": value} */
        dsv4_strbuf dumped = DSV4_STRBUF_INIT;
        dsv4_pyjson_dump(&dumped, args);
        put_parameter(out, "arguments", 9, false, dumped.data ? dumped.data : "", dumped.len);
        dsv4_status st = dsv4_strbuf_status(&dumped);
        dsv4_strbuf_free(&dumped);
        return st;
    }
    const char *text = json_string_value(args);
    size_t len = json_string_length(args);
    dsv4_pyjson_object obj;
    switch (dsv4_pyjson_load_object(text, len, &obj, NULL, 0)) {
    case DSV4_PYJSON_INVALID: /* not JSON: {"arguments": text} */
        put_parameter(out, "arguments", 9, true, text, len);
        return DSV4_OK;
    case DSV4_PYJSON_NOT_OBJECT:
        return dsv4_error(DSV4_EINVAL, "%s[%zu].function.arguments: JSON but not an object", where, k);
    case DSV4_PYJSON_NOMEM:
        return dsv4_error(DSV4_ENOMEM, "out of memory reading %s[%zu].function.arguments", where, k);
    case DSV4_PYJSON_OBJECT: break;
    }
    for (size_t i = 0; i < obj.count; i++) {
        const dsv4_pyjson_member *m = &obj.members[i];
        if (i) dsv4_strbuf_putc(out, '\n');
        put_parameter(out, m->key, m->key_len, m->is_string, m->value, m->value_len);
    }
    dsv4_pyjson_object_free(&obj);
    return DSV4_OK;
}

dsv4_status dsv4_chat_render_tool_calls(dsv4_strbuf *out, const json_t *tool_calls, const char *where) {
    if (!json_is_array(tool_calls)) return dsv4_error(DSV4_EINVAL, "%s: expected a list of tool calls", where);
    size_t k;
    const json_t *tc;
    json_array_foreach(tool_calls, k, tc) {
        const json_t *fn = json_object_get(tc, "function");
        if (!json_is_object(tc) || !json_is_object(fn))
            return dsv4_error(DSV4_EINVAL, "%s[%zu]: expected {\"function\": {\"name\": ..., \"arguments\": ...}}",
                              where, k);
        if (!json_is_string(json_object_get(fn, "name")))
            return dsv4_error(DSV4_EINVAL, "%s[%zu].function.name: expected a string", where, k);
        if (!json_object_get(fn, "arguments"))
            return dsv4_error(DSV4_EINVAL, "%s[%zu].function.arguments: missing", where, k);
    }
    dsv4_strbuf_puts(out, "\n\n<" DSML "tool_calls>\n");
    json_array_foreach(tool_calls, k, tc) {
        const json_t *fn = json_object_get(tc, "function"), *name = json_object_get(fn, "name");
        if (k) dsv4_strbuf_putc(out, '\n');
        dsv4_strbuf_puts(out, "<" DSML "invoke name=\"");
        dsv4_strbuf_append(out, json_string_value(name), json_string_length(name));
        dsv4_strbuf_puts(out, "\">\n");
        dsv4_status st = put_arguments(out, json_object_get(fn, "arguments"), where, k);
        if (st) return st;
        dsv4_strbuf_puts(out, "\n</" DSML "invoke>");
    }
    dsv4_strbuf_puts(out, "\n</" DSML "tool_calls>");
    return dsv4_strbuf_status(out);
}
