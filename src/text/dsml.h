/* dsml.h: reading the model's answer back: reasoning, content and DSML tool calls.
 *
 * The inverse of the assistant turn the encoder writes (chat_tools.c):
 *
 *   {reasoning}</think>{content}\n\n<｜DSML｜tool_calls>
 *   <｜DSML｜invoke name="NAME">
 *   <｜DSML｜parameter name="KEY" string="true">raw text</｜DSML｜parameter>
 *   <｜DSML｜parameter name="KEY2" string="false">JSON</｜DSML｜parameter>
 *   </｜DSML｜invoke>
 *   </｜DSML｜tool_calls><｜end▁of▁sentence｜>
 *
 * The parser is incremental: feed it generated text in pieces of any size (one byte at a
 * time, splitting UTF-8 sequences and markup anywhere) and pull events after each feed:
 *
 *   dsv4_dsml *p; dsv4_dsml_new(prompt_ended_in_think, &p);
 *   for each piece: dsv4_dsml_feed(p, piece, n);
 *                   while (dsv4_dsml_next(p, &ev)) handle(&ev);
 *   dsv4_dsml_finish(p); while (dsv4_dsml_next(p, &ev)) handle(&ev);
 *   dsv4_dsml_free(p);
 *
 * Guarantees, whatever the text:
 *   - no markup reaches REASONING or CONTENT text: bytes that could begin a tag are held back
 *     until it is clear what they are (so a delta may lag by a few bytes);
 *   - every text is valid UTF-8 (invalid bytes become U+FFFD) and no delta splits a character;
 *   - every CALL_START is followed by exactly one CALL_END for the same call;
 *   - the CALL_ARGS deltas of a call concatenate to the arguments of its CALL_END, a JSON
 *     object: string="true" values as JSON strings, string="false" values as written (they
 *     must be JSON, RFC 8259; otherwise they become strings and an error is reported);
 *   - for well-formed text the results equal the official parse_message_from_completion_text.
 * Problems are reported as ERROR events and parsing goes on; nothing is fatal but ENOMEM. */
#ifndef DSV4_TEXT_DSML_H
#define DSV4_TEXT_DSML_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "dsv4.h"

typedef enum dsv4_dsml_kind {
    DSV4_DSML_REASONING,  /* text: the next piece of the reasoning (before </think>) */
    DSV4_DSML_CONTENT,    /* text: the next piece of the answer */
    DSV4_DSML_CALL_START, /* call, name: a tool call begins */
    DSV4_DSML_CALL_ARGS,  /* call, text: the next piece of its arguments JSON */
    DSV4_DSML_CALL_END,   /* call, name, text: the whole arguments JSON; complete */
    DSV4_DSML_ERROR,      /* error, offset, text: what could not be parsed */
} dsv4_dsml_kind;

typedef enum dsv4_dsml_error {
    DSV4_DSML_OK = 0,
    DSV4_DSML_E_NO_THINK_END,    /* the reasoning ended without </think> */
    DSV4_DSML_E_UNTERMINATED,    /* the text ended inside a tag, block, call or parameter */
    DSV4_DSML_E_BAD_TAG,         /* an unknown or malformed DSML tag: dropped */
    DSV4_DSML_E_MISPLACED_TAG,   /* a tag where it cannot be (stray close, nesting, invoke
                                    outside a block): repaired as well as possible */
    DSV4_DSML_E_NO_NAME,         /* an invoke or parameter without a name: skipped */
    DSV4_DSML_E_DUPLICATE_PARAM, /* a parameter repeated within a call: skipped */
    DSV4_DSML_E_BAD_JSON,        /* a string="false" value that is not JSON: kept as a string */
    DSV4_DSML_E_BAD_STRING_ATTR, /* string= missing or not true/false: JSON if it parses */
    DSV4_DSML_E_STRAY_TEXT,      /* text between tool-call elements or after the block */
    DSV4_DSML_E_AFTER_END,       /* text after <｜end▁of▁sentence｜>: ignored */
} dsv4_dsml_error;

typedef struct dsv4_dsml_event {
    dsv4_dsml_kind kind;
    const char *text;      /* delta, arguments or message; NUL-terminated UTF-8 */
    size_t len;            /* bytes of text */
    int call;              /* CALL_*: index of the call in the message, from 0 */
    const char *name;      /* CALL_START, CALL_END: the tool name */
    bool complete;         /* CALL_END: false when the text ended inside the call */
    dsv4_dsml_error error; /* ERROR */
    size_t offset;         /* ERROR: byte offset in the text fed so far */
} dsv4_dsml_event;

typedef struct dsv4_dsml dsv4_dsml;

/* in_reasoning: the prompt ended with <think> (thinking mode), so the text starts with
 * reasoning and </think> switches to content. Otherwise it is content from the start. */
dsv4_status dsv4_dsml_new(bool in_reasoning, dsv4_dsml **out);
void dsv4_dsml_free(dsv4_dsml *p);
/* Parse the next piece; events queue up for dsv4_dsml_next. */
dsv4_status dsv4_dsml_feed(dsv4_dsml *p, const char *text, size_t len);
/* The text is over: flush what was held back, close what is open (reporting it). */
dsv4_status dsv4_dsml_finish(dsv4_dsml *p);
/* Pop the next event; false when there is none. Its pointers stay valid until the next
 * feed, finish or free. */
bool dsv4_dsml_next(dsv4_dsml *p, dsv4_dsml_event *ev);

/* A stable name for an error code ("unterminated", "bad_json", ...). */
const char *dsv4_dsml_error_name(dsv4_dsml_error e);

/* Parse a whole completion into an OpenAI-style assistant message:
 * {"role": "assistant", "content": ..., "reasoning_content": ...,
 *  "tool_calls": [{"type": "function", "function": {"name": ..., "arguments": ...}}]}.
 * errors (may be NULL) receives a list of {"error", "offset", "message"} objects. */
dsv4_status dsv4_dsml_parse_message(const char *text, size_t len, bool in_reasoning, json_t **message,
                                    json_t **errors);

#endif
