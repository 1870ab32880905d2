/* chat.h: DeepSeek-V4's chat format, messages in and one prompt string out.
 *
 * dsv4_chat_render is a C rendering of encode_messages() from the official
 * encoding/encoding_dsv4.py of the DeepSeek-V4 release: for every conversation that encoder
 * accepts, with fields of the types below, the output is byte for byte the same. The layout
 * (spec section 5.2) in one line:
 *
 *   <｜begin▁of▁sentence｜>{system}<｜User｜>{user}<｜Assistant｜></think>{answer}<｜end▁of▁sentence｜>...
 *
 * Messages are OpenAI-style objects in a JSON array:
 *   role               "system" | "user" | "assistant" | "tool" | "developer" | "latest_reminder"
 *   content            string or null (a tool's content may also be a list of
 *                      {"type": "text", "text": ...} blocks)
 *   reasoning_content  string or null (assistant)
 *   tool_calls         [{"id": ..., "type": "function",
 *                        "function": {"name": string, "arguments": JSON text}}] (assistant)
 *   tool_call_id       string (tool)
 *   tools              [{"type": "function", "function": {...schema...}}] (system, developer)
 *   response_format    any JSON value (system, developer)
 *   task               "action" | "query" | "authority" | "domain" | "title" | "read_url"
 *   wo_eos             truthy: an assistant turn without the closing EOS (a prefill)
 * Where the reference would print a Python object's str() (a number as content, say), we
 * return DSV4_EINVAL instead; where it prints str(None) (a tool result or latest_reminder
 * whose content is null) we print "None" as it does. Every error names the message index
 * and field ("messages[3].tool_calls[0].function.name: expected a string").
 */
#ifndef DSV4_TEXT_CHAT_H
#define DSV4_TEXT_CHAT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "dsv4.h"
#include "text/strbuf.h"

/* The special tokens of the format, as text. */
#define DSV4_TOK_BOS "<｜begin▁of▁sentence｜>"
#define DSV4_TOK_EOS "<｜end▁of▁sentence｜>"
#define DSV4_TOK_USER "<｜User｜>"
#define DSV4_TOK_ASSISTANT "<｜Assistant｜>"
#define DSV4_TOK_LATEST_REMINDER "<｜latest_reminder｜>"
#define DSV4_TOK_THINK "<think>"
#define DSV4_TOK_THINK_END "</think>"
#define DSV4_TOK_DSML "｜DSML｜"

typedef enum dsv4_thinking_mode {
    DSV4_MODE_CHAT = 0, /* "chat": every assistant header is <｜Assistant｜></think> */
    DSV4_MODE_THINKING, /* "thinking": the turn to generate opens with <｜Assistant｜><think> */
} dsv4_thinking_mode;

typedef enum dsv4_reasoning_effort {
    DSV4_EFFORT_NONE = 0, /* None */
    DSV4_EFFORT_HIGH,     /* "high": renders like None */
    DSV4_EFFORT_MAX,      /* "max": thinking mode prepends the fixed REASONING_EFFORT_MAX text */
} dsv4_reasoning_effort;

/* The parameters of encode_messages(). All-zero options are its defaults, in chat mode. */
typedef struct dsv4_chat_opts {
    dsv4_thinking_mode thinking_mode;
    dsv4_reasoning_effort reasoning_effort;
    bool keep_thinking;    /* drop_thinking=False: past turns keep their reasoning */
    bool no_default_bos;   /* add_default_bos_token=False */
    const json_t *context; /* messages already encoded before these (array or NULL); they are
                              not rendered but shape the rendering (no BOS, tool order, ...) */
} dsv4_chat_opts;

/* Render messages (a JSON array) into *out (malloc'ed, NUL-terminated, *len bytes). */
dsv4_status dsv4_chat_render(const json_t *messages, const dsv4_chat_opts *opts, char **out, size_t *len);

/* Append the DSML block of an assistant turn's tool_calls (OpenAI format), exactly as the
 * encoder writes it after the content: "\n\n<｜DSML｜tool_calls>\n...</｜DSML｜tool_calls>".
 * `where` names the array in error messages ("messages[2].tool_calls"). */
dsv4_status dsv4_chat_render_tool_calls(dsv4_strbuf *out, const json_t *tool_calls, const char *where);

/* The "## Tools" section for a list of tools in OpenAI format. */
dsv4_status dsv4_chat_render_tools(dsv4_strbuf *out, const json_t *tools, const char *where);

/* Option values by their Python spelling: "chat" / "thinking"; null, "high" / "max".
 * false for anything else. */
bool dsv4_chat_parse_mode(const char *s, dsv4_thinking_mode *out);
bool dsv4_chat_parse_effort(const char *s, dsv4_reasoning_effort *out);

#endif
