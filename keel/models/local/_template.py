"""The chat template the local server runs Qwen2.5-Coder with.

Qwen-Coder's shipped template asks for `<tool_call>` tags, but the models actually answer with
a fenced ```json {"name": …, "arguments": …}``` block, so the server saw 0/5 tool calls. The
llama.cpp server derives its tool-call parser from how the template renders an assistant tool
call, so this template renders (and asks for) exactly the fenced form the models emit.

After the last tool result the template adds one line asking for a plain-text answer, or,
after an error, for a corrected call. Without it the 0.5B model re-called a tool after 3 of 5
results (2/5 plain answers, 5/5 with it). Restating the question there made it worse: the
model re-ran its query instead of answering.
"""

# ruff: noqa: E501 - the template is data; its lines are kept as llama.cpp renders them

from __future__ import annotations

__all__ = ["CHAT_TEMPLATE", "TOOL_ERROR_HINT", "TOOL_RESULT_HINT"]

TOOL_RESULT_HINT = (
    "Use this result to answer the question in plain text. "
    "Do not call a tool again unless the result is not enough."
)
"""Appended after the last tool result of a conversation."""

TOOL_ERROR_HINT = (
    "The tool call failed. Read the error, then call the right tool again with corrected "
    "arguments. Do not answer with numbers you have not looked up."
)
"""Appended after a last tool result that is an error (Keel's tool errors start `Error:`)."""

_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

CHAT_TEMPLATE = (
    r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- '__DEFAULT_SYSTEM__' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call a function to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nTo call a function, reply with only a json object with the function name and arguments in a json code block:\n```json\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n```<|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\n__DEFAULT_SYSTEM__<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n```json\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n```' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last and message.content.startswith('Error') %}
            {{- '\n\n__TOOL_ERROR_HINT__' }}
        {%- elif loop.last %}
            {{- '\n\n__TOOL_RESULT_HINT__' }}
        {%- endif %}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
""".replace("__DEFAULT_SYSTEM__", _DEFAULT_SYSTEM)
    .replace("__TOOL_ERROR_HINT__", TOOL_ERROR_HINT)
    .replace("__TOOL_RESULT_HINT__", TOOL_RESULT_HINT)
)
"""Jinja chat template (Qwen ChatML) for the fenced-JSON tool-call form."""
