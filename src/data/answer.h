/* answer.h: checking a model's answers against what a task example expects.
 *
 * The answers of the task families have fixed shapes ("37 + 58 = 95.", "Bob lives in Rome.",
 * a DSML call), so checking is literal and strict, with no judgment calls:
 *   - a number answer is right when the LAST integer written is the expected one ("37 + 58 =
 *     95." -> 95; "95, or maybe 96" -> 96, wrong);
 *   - a word answer is right when each expected word occurs as a whole word: "Rome" is found
 *     in "lives in Rome." but not in "Romeo", and "5" is not found in "15", "-5" or "5.5";
 *     and none of the excluded words does (a table answer naming every row is wrong);
 *   - a tool call is right when the message makes exactly one call, to the expected function,
 *     with arguments equal to the expected ones as JSON values (same keys, same values; key
 *     order and spacing do not matter, the value 25 is not "25"). */
#ifndef DSV4_DATA_ANSWER_H
#define DSV4_DATA_ANSWER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "data/tasks.h"

/* The last integer in text: a run of ASCII digits, with a '-' sign when the '-' directly
 * precedes it and does not follow a letter or digit ("64-13" has 64 and 13). False if none. */
bool dsv4_answer_last_number(const char *text, long long *out);

/* Whether word occurs in text as a whole word: not inside a longer run of letters and digits,
 * and, for a word that starts or ends with a digit, not part of a longer number (no '-' or
 * '.' attached before, no '.' and digit after). ASCII letters compare without case. */
bool dsv4_answer_has_word(const char *text, const char *word);

/* Whether answer text meets the expectation (number or words). An expectation of kind NONE
 * is never met: it cannot be checked. */
bool dsv4_answer_check(const dsv4_expect *e, const char *content);

/* Whether an assistant message ({"content", "tool_calls": [{"function": {"name", "arguments"}}]},
 * as dsv4_dsml_parse_message gives it) makes exactly the call `expected` ({"name": ...,
 * "arguments": {...}}). On false, `why` (may be NULL) says what differs. */
bool dsv4_answer_check_call(const json_t *message, const json_t *expected, char *why, size_t why_size);

#endif
