/*
 * api/tools — function tools for chat models: the conversation rewritten in the model family's
 * tool format, the grammar that constrains the calls to the functions' JSON schemas, and the
 * parser that turns the generated text back into tool_calls (docs/api.md, "Tool calls").
 *
 * Formats:
 *   hermes  (ChatML families: Qwen, SmolLM, Hermes; and every family without a tool format of
 *           its own, documented as the generic format) — the tools are listed as JSON lines
 *           between <tools> and </tools> in the system turn; a call is
 *             <tool_call>\n{"name": "NAME", "arguments": {...}}\n</tool_call>
 *           and several calls follow each other on new lines; a tool's result goes back in a
 *           user turn between <tool_response> and </tool_response>.
 *   llama3  (Llama 3.x) — the tools as JSON in the system turn; a call is the bare JSON object
 *             {"name": "NAME", "parameters": {...}}
 *           (one per answer); a result is an "ipython" turn.
 * With tool_choice "required" or a named function the grammar applies from the first token;
 * with "auto" the model writes freely until its text opens a call (the trigger, after optional
 * white space), and from there the call is constrained.
 *
 * Ownership: a plan owns every string it holds; oai_tools_plan_free releases them (an empty
 * plan is fine).
 */
#ifndef SHOAL_API_TOOLS_H
#define SHOAL_API_TOOLS_H

#include <stdbool.h>
#include <stddef.h>

#include "api/oai_req.h"
#include "tokenizer/chat.h"

typedef enum oai_toolfmt { OAI_TOOLFMT_HERMES = 0, OAI_TOOLFMT_LLAMA3 } oai_toolfmt;

typedef struct oai_tools_plan {
    oai_toolfmt fmt;
    tok_chat_msg *msgs;    /* the conversation in the format's form, n_msgs of them */
    size_t n_msgs;
    char **owned;          /* the strings msgs point to that the plan made */
    size_t n_owned, cap_owned;
    char *gbnf;            /* the calls' grammar (GBNF); NULL when no call may be made */
    char *trigger;         /* auto: the text that opens a call; NULL when the grammar applies
                            * from the start (required, a named function) or there is none */
    bool calls;            /* a call may be made (tools given, tool_choice not "none") */
} oai_tools_plan;

/* The format of a chat family. */
oai_toolfmt oai_toolfmt_of(tok_chat_tmpl family);
const char *oai_toolfmt_name(oai_toolfmt f);

/* Builds the plan of request r (a chat or responses request) for a model of the given chat
 * family: always the rewritten messages (assistant tool_calls and tool results in the format's
 * form; the tool list in the system turn whenever tools are given, tool_choice "none"
 * included); and the grammar when calls may be made. A function's parameters schema that the grammar engine cannot enforce is a 400
 * naming tools[i].function.parameters and the keyword. 0, or -1 with e filled. */
int oai_tools_plan_init(const oai_request *r, tok_chat_tmpl family, oai_tools_plan *p, oai_error *e);
void oai_tools_plan_free(oai_tools_plan *p);

/* Parses generated text as the plan's calls. 1 with *calls (n_calls >= 1; ids made up) when the
 * text is one or more whole calls (optionally after white space), 0 when it is not (plain text,
 * or calls cut short); -1 on allocation failure. */
int oai_tools_parse(const oai_tools_plan *p, const char *text, size_t n, oai_tool_call **calls,
                    size_t *n_calls);

/* True when text[0..n) could still be the start of the trigger (after leading white space):
 * auto mode holds such text until it is decided. */
bool oai_tools_may_open(const oai_tools_plan *p, const char *text, size_t n);
/* True when text[0..n) starts (after white space) with the whole trigger. */
bool oai_tools_opens(const oai_tools_plan *p, const char *text, size_t n);

void oai_tool_calls_free(oai_tool_call *calls, size_t n); /* NULL is fine */

#endif
