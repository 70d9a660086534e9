"""The one log sanitiser: secrets out of every log record (original design §7.2.2).

Every record passes through `sanitise_record` before it is formatted, JSON or text
(`orchestra/logs.py`). It removes:

- the values of fields whose names say they are secret (the design's list, `password`,
  `apiKey`, `token`, `secret`, `key`, `creditCard`, `ssn`, `phone`, `email`, and
  `authorization`, `cookie`, `credential`, `signature`, `passwd`; `accessToken`,
  `refresh_token`, `privateKey`, `X-Api-Key`... by the same rule: the name, lower-cased
  without `_` and `-`, contains one of them, or ends with `key`), wherever they are: in a
  record's extra fields, in dict and list arguments, and in `name=value` / `"name": value`
  text of the message and of an exception's text;
- what looks like a token or a key, wherever it is: JSON Web Tokens, `Bearer ...` and
  `Basic ...` credentials, `sk-...` style API keys, PEM blocks, passwords in URLs
  (`redis://:pw@host`), hex runs of 40 digits or more, and base64 runs of 32 characters or
  more that mix upper- and lower-case letters (with a digit, or 40 long) and are not a
  file path. Ids (32 lower-case hex digits) and paths stay readable.

Numbers, booleans and None are left alone under any name (token counts are not secrets).
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "is_secret_name", "sanitise_record", "sanitise_text", "sanitise_value"]

MASK = "***"

_SECRET_WORDS = (
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "authorization",
    "cookie",
    "credential",
    "signature",
    "creditcard",
    "ssn",
    "phone",
    "email",
)

# From the secret word on (what comes before it in the name stays as it is); bounded, so
# that a long run of letters costs linear time.
_NAME = (
    r"(?:password|passwd|secret|token|api[_-]?key|private[_-]?key"
    r"|access[_-]?key|authorization|cookie|credential|signature)[A-Za-z0-9_-]{0,64}"
)
# `name=value`, `name: value`, `"name": "value"`, `'name': 'value'` (the value quoted, or
# up to a space, or a scheme and its credential: `Authorization: Bearer ...`).
_KEY_VALUE = re.compile(
    r"(?i)(?P<name>" + _NAME + r")(?P<sep>[\"']?\s*[:=]\s*)"
    r"(?P<value>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'"
    r"|(?:(?:bearer|basic|digest|negotiate|token)\s+)?[^\s,;&}\])]+)"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM blocks (private keys, certificates), also one cut short.
    (re.compile(r"-----BEGIN [A-Z0-9 ]+-----(?:[\s\S]*?-----END [A-Z0-9 ]+-----|[\s\S]*)"), MASK),
    # JSON Web Tokens: three base64url parts, the first one a JSON object ("eyJ").
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), MASK),
    # Authorization header values (`Basic` ones where the value is not a plain word).
    (re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9._~+/=-]{6,}"), r"\1\2" + MASK),
    (re.compile(r"\b(Basic)(\s+)(?=[a-z]*[A-Z0-9+/=])[A-Za-z0-9+/]{8,}={0,2}"), r"\1\2" + MASK),
    # API keys in the style of OpenAI's, Anthropic's and Stripe's (sk-..., sk-ant-...,
    # sk-proj-..., sk_live_...), GitHub's and Slack's.
    (re.compile(r"\bsk[-_][A-Za-z0-9_-]{12,}"), MASK),
    (re.compile(r"\b(?:ghp|gho|ghs|ghu|ghr|github_pat|xox[abprs])[-_][A-Za-z0-9_-]{12,}"), MASK),
    # A password in a URL: scheme://user:password@host.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/:@]*:)[^\s/@]+@"), r"\1" + MASK + "@"),
    # Long hex runs (keys, HMAC signatures, hashes): ids are 32 digits, these 40 or more.
    (re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{40,}(?![0-9A-Za-z])"), MASK),
)
# A run of base64 (standard or url-safe) characters long enough to be a key.
_BASE64_RUN = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{32,}={0,2}")
_UPPER, _LOWER, _DIGIT = re.compile(r"[A-Z]"), re.compile(r"[a-z]"), re.compile(r"[0-9]")


def is_secret_name(name: str) -> bool:
    """Whether a field called `name` holds a secret (see the module's docstring)."""
    folded = name.lower().replace("_", "").replace("-", "")
    return folded.endswith("key") or any(word in folded for word in _SECRET_WORDS)


def _looks_like_key(run: str) -> bool:
    if not (_UPPER.search(run) and _LOWER.search(run)):
        return False  # ids, words and names in one case
    if not (_DIGIT.search(run) or len(run) >= 40):
        return False
    if "/" in run and "+" not in run and not run.endswith("="):
        # A path: each part between slashes is too short to be a key on its own.
        return any(len(part) >= 32 for part in run.split("/"))
    return True


def _mask_key_value(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[:1] in ('"', "'") else ""
    return f"{match['name']}{match['sep']}{quote}{MASK}{quote}"


def _mask_run(match: re.Match[str]) -> str:
    run = match[0]
    return MASK if _looks_like_key(run) else run


def sanitise_text(text: str) -> str:
    """`text` without anything that looks like a secret."""
    text = _KEY_VALUE.sub(_mask_key_value, text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _BASE64_RUN.sub(_mask_run, text)


def sanitise_value(value: Any, name: str = "") -> Any:
    """A copy of `value` (a field called `name`) fit for a log: secret-named fields
    masked, strings cleaned, dicts and lists gone through."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if name and is_secret_name(name):
        return MASK
    if isinstance(value, str):
        return sanitise_text(value)
    if isinstance(value, bytes):
        return sanitise_text(value.decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return {k: sanitise_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [sanitise_value(v) for v in value]
    return value  # formatted with %s later: its text is cleaned with the message


#: what every LogRecord has; anything else on a record came in through `extra`
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
_DONE = "_orchestra_sanitised"


def sanitise_record(record: logging.LogRecord) -> logging.LogRecord:
    """Clean `record` in place (once): its message with its arguments, its exception and
    stack text, and its extra fields. The message is formatted here, so `record.msg` is
    the final text afterwards and `record.args` empty."""
    if getattr(record, _DONE, False):
        return record
    args = record.args
    if isinstance(args, Mapping):
        record.args = sanitise_value(args)
    elif args:
        record.args = tuple(
            sanitise_value(a) if isinstance(a, Mapping | list | tuple) else a for a in args
        )
    try:
        message = record.getMessage()
    except Exception:  # arguments that do not fit the format: show both, cleaned
        message = f"{record.msg!r} % {record.args!r}"
    record.msg, record.args = sanitise_text(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    if record.exc_text:
        record.exc_text = sanitise_text(record.exc_text)
    if record.stack_info:
        record.stack_info = sanitise_text(record.stack_info)
    for name, value in list(vars(record).items()):
        if name not in _STANDARD and not name.startswith("_"):
            setattr(record, name, sanitise_value(value, name))
    setattr(record, _DONE, True)
    return record
