"""Handlebars templates as SciCat renders them in job actions.

SciCat compiles a `url` action's url, headers and body (and email/log texts)
with handlebars.js 4.x and the helpers of `src/common/handlebars-helpers.ts`.
This module renders the same language: `{{ expr }}` (HTML-escaped with
handlebars' table), `{{{ expr }}}` and `{{& expr }}` (raw), comments,
`~` whitespace control, subexpressions `( ... )`, string/number/boolean/null
literals, `key=value` hash arguments, paths (`a.b`, `a/b`, `this`, `../a`,
`@index`, `@key`, `@first`, `@last`, `@root`, `[segment]`), the built-in block
helpers `#if`, `#unless`, `#each`, `#with` (with `{{else}}` and `{{else if}}`)
and the built-in `lookup`, and SciCat's helpers with their JavaScript
semantics (`jsonify` is `JSON.stringify(x, null, 3)`, `base64enc` is `btoa`,
`concat` joins like `Array.join`, `default` is `a || b`, ...).

Values are stringified as JavaScript does (`true`, `1`, `a,b`,
`[object Object]`; null and undefined give ''). A helper called with arguments
that does not exist is an error (`Missing helper: "x"`), as in handlebars.js.
Partials and decorators are not supported (a `TemplateError` at compile time).
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote


class TemplateError(Exception):
    """A template that handlebars.js would refuse to compile or to render."""


class Undefined:
    """JavaScript's `undefined` (a missing property), distinct from null (None)."""

    _instance: Undefined | None = None

    def __new__(cls) -> Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "undefined"


UNDEFINED = Undefined()


# --- JavaScript value semantics ------------------------------------------------------


def js_number(value: float) -> str:
    """`String(n)` for a JavaScript number."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        sign = "-" if exponent.startswith("-") else "+"
        return f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"
    return text


def js_string(value: Any) -> str:
    """`String(value)`; lists join with ',' (null/undefined items as ''), objects as
    `[object Object]`."""
    if value is None:
        return "null"
    if value is UNDEFINED:
        return "undefined"
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return js_number(value)
    if isinstance(value, list | tuple):
        return ",".join("" if v is None or v is UNDEFINED else js_string(v) for v in value)
    return "[object Object]"


def js_truthy(value: Any) -> bool:
    """JavaScript truthiness: '', 0, NaN, null, undefined and false are falsy; [] and {} are not."""
    if value is None or value is UNDEFINED or value is False:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0 and not (isinstance(value, float) and math.isnan(value))
    if isinstance(value, str):
        return value != ""
    return True


def handlebars_empty(value: Any) -> bool:
    """Handlebars' `Utils.isEmpty` (what `#if`/`#with` test): falsy or an empty array."""
    if isinstance(value, list | tuple):
        return len(value) == 0
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return True  # `#if` without includeZero treats 0 as empty
    return not js_truthy(value)


def js_strict_equal(a: Any, b: Any) -> bool:
    """`a === b`: same type and value for primitives, identity for objects."""
    primitive = (str, int, float, bool, type(None), Undefined)
    if isinstance(a, primitive) and isinstance(b, primitive):
        if isinstance(a, bool) or isinstance(b, bool):
            return type(a) is type(b) and a == b
        if isinstance(a, int | float) and isinstance(b, int | float):
            return a == b
        return type(a) is type(b) and a == b
    return a is b


def json_stringify(value: Any, indent: int | None = None) -> str | Undefined:
    """`JSON.stringify(value, null, indent)`; undefined for undefined."""
    if value is UNDEFINED:
        return UNDEFINED
    return json.dumps(
        _json_ready(value),
        indent=indent,
        ensure_ascii=False,
        separators=(",", ": ") if indent else (",", ":"),
    )


def _json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items() if v is not UNDEFINED}
    if isinstance(value, list | tuple):
        return [None if v is UNDEFINED else _json_ready(v) for v in value]
    if isinstance(value, float) and value == int(value) and abs(value) < 1e21:
        return int(value)
    return value


_HTML_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "'": "&#x27;",
        "`": "&#x60;",
        "=": "&#x3D;",
    }
)


def escape_expression(value: Any) -> str:
    """handlebars' `Utils.escapeExpression`."""
    if value is None or value is UNDEFINED:
        return ""
    if isinstance(value, SafeString):
        return value.text
    return js_string(value).translate(_HTML_ESCAPES)


@dataclass(frozen=True)
class SafeString:
    text: str


# --- SciCat's helpers (src/common/handlebars-helpers.ts) -----------------------------


@dataclass
class HelperOptions:
    """What handlebars passes a helper last: the hash, and for blocks fn/inverse."""

    hash: dict[str, Any] = field(default_factory=dict)
    fn: Callable[[Any], str] | None = None
    inverse: Callable[[Any], str] | None = None


def parse_boolean(value: Any) -> bool:
    """SciCat's `parseBoolean` (src/common/utils.ts)."""
    if value is True:
        return True
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 1:
        return True
    return value in ("true", "1", "on", "yes")


def format_camel_case(text: Any) -> str:
    words = re.sub(r"([A-Z])", r" \1", js_string(text))
    return words[:1].upper() + words[1:]


def unwrap_json(value: Any) -> Any:
    """SciCat's `unwrapJSON`: JSON as HTML for e-mails."""
    if value is None:
        return "Not specified"
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, int | float | str):
        return value
    if isinstance(value, list | tuple):
        items = "".join(
            f"<li style='margin-bottom: 1em'>{js_string(unwrap_json(v))}</li>" for v in value
        )
        return f"<ul style='padding-left: 1em'>{items}</ul>"
    if isinstance(value, Mapping):
        return "<br/>".join(
            f"{format_camel_case(k)}: {js_string(unwrap_json(v))}" for k, v in value.items()
        )
    return "Not specified"


def job_v3(job: Any) -> dict[str, Any]:
    """SciCat's `job_v3` helper: a v4 job in the v3 shape old archive systems expect."""
    job = job if isinstance(job, Mapping) else {}
    params = job.get("jobParams") if isinstance(job.get("jobParams"), Mapping) else {}
    view: dict[str, Any] = {
        "id": job.get("id") or job.get("_id", UNDEFINED),
        "emailJobInitiator": job.get("contactEmail", UNDEFINED),
        "type": job.get("type", UNDEFINED),
        "creationTime": job.get("createdAt", UNDEFINED),
        "jobParams": {**params, "username": job.get("createdBy", UNDEFINED)},
        "jobStatusMessage": job.get("statusCode", UNDEFINED),
        "datasetList": params.get("datasetList", UNDEFINED) if "datasetList" in params else [],
    }
    return view


def _encode_uri_component(value: Any) -> str:
    return quote(js_string(value), safe="-_.!~*'()")


def encode_uri(value: str) -> str:
    """JavaScript's `encodeURI` (SciCat applies it to a url action's rendered url)."""
    return quote(value, safe="-_.!~*'();/?:@&=+$,#")


def _btoa(value: Any) -> str:
    text = js_string(value)
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError as exc:
        msg = "InvalidCharacterError: Invalid character"
        raise TemplateError(msg) from exc
    return base64.b64encode(raw).decode("ascii")


def _atob(value: Any) -> str:
    text = re.sub(r"[\t\n\f\r ]", "", js_string(value))
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True).decode("latin-1")
    except ValueError as exc:
        msg = "InvalidCharacterError: The string to be decoded is not correctly encoded."
        raise TemplateError(msg) from exc


def _matches(query: Any, regex: Any, *args: Any) -> bool:
    flags = 0
    for flag in js_string(args[0]) if args and args[0] is not UNDEFINED else "":
        flags |= {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}.get(flag, 0)
    return re.search(js_string(regex), js_string(query), flags) is not None


_BYTE_PREFIXES = [
    ("", 1),
    *((p, 1000**i) for i, p in enumerate(["k", "M", "G", "T", "P", "E", "Z", "Y"], 1)),
    *((p, 1024**i) for i, p in enumerate(["Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"], 1)),
]
_SI_PREFIXES = [
    ("", 1),
    *((p, 10.0**e) for p, e in [("k", 3), ("M", 6), ("G", 9), ("T", 12), ("P", 15)]),
    *((p, 10.0**e) for p, e in [("m", -3), ("u", -6), ("n", -9), ("p", -12)]),
]


def _format_unit(value: Any, base_unit: Any, options: HelperOptions) -> str:
    """mathjs `unit(value, baseUnit).format({precision: 2, ...})`: the best prefix, then
    `precision` significant digits (bytes take SI and IEC prefixes)."""
    number = float(value)
    precision = int(options.hash.get("precision", 2))
    prefixes = _BYTE_PREFIXES if base_unit in ("B", "b", "bytes", "bits") else _SI_PREFIXES
    best, best_diff = prefixes[0], math.inf
    for prefix in prefixes:
        scaled = abs(number) / prefix[1]
        diff = abs(math.log10(scaled) - 1.2) if scaled > 0 else math.inf
        better = diff < best_diff or (diff == best_diff and len(prefix[0]) < len(best[0]))
        if better:
            best, best_diff = prefix, diff
    scaled = number / best[1]
    rounded = float(f"{scaled:.{precision}g}")
    return f"{js_number(rounded)} {best[0]}{base_unit}"


def _args(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Positional arguments without the trailing options object."""
    return args[:-1] if args and isinstance(args[-1], HelperOptions) else args


SCICAT_HELPERS: dict[str, Callable[..., Any]] = {
    "unwrapJSON": lambda json_value, *_: unwrap_json(json_value),
    "keyToWord": lambda text, *_: format_camel_case(text),
    "eq": lambda a, b, *_: js_strict_equal(a, b),
    "or": lambda *args: any(parse_boolean(a) for a in _args(args)),
    "and": lambda *args: all(parse_boolean(a) for a in _args(args)),
    "not": lambda a, *_: not parse_boolean(a),
    "concat": lambda *args: "".join(
        "" if a is None or a is UNDEFINED else js_string(a) for a in _args(args)
    ),
    "matches": lambda query, regex, *args: _matches(query, regex, *_args(args)),
    "default": lambda query, default, *_: query if js_truthy(query) else default,
    "jsonify": lambda context, *_: json_stringify(context, 3),
    "job_v3": lambda job, *_: job_v3(job),
    "urlencode": lambda context, *_: _encode_uri_component(context),
    "base64enc": lambda context, *_: _btoa(context),
    "base64dec": lambda context, *_: _atob(context),
    "formatUnit": _format_unit,
}


# --- parsing -------------------------------------------------------------------------

_TAG = re.compile(r"\{\{(~?)(\{|&|#|/|\^|!--|!|>)?(.*?)(\}?)(~?)\}\}", re.DOTALL)
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<open>\()|(?P<close>\))|
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|
        (?P<number>-?\d+(?:\.\d+)?(?=[\s)=]|$))|
        (?P<hash>[A-Za-z_@$][\w$-]*)=|
        (?P<path>(?:\.\./)*(?:@?[^\s()=\[\]]+|\[[^\]]*\])(?:[./](?:[^\s()=./\[\]]+|\[[^\]]*\]))*)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Path:
    depth: int
    data: bool
    parts: tuple[str, ...]
    original: str


@dataclass(frozen=True)
class Call:
    """A helper-or-path with its positional and hash arguments (a mustache or a subexpression)."""

    head: Path | Literal
    params: tuple[Any, ...]
    hash: tuple[tuple[str, Any], ...]


@dataclass
class Text:
    text: str


@dataclass
class Mustache:
    call: Call
    escaped: bool


@dataclass
class Block:
    call: Call
    body: list[Any]
    inverse: list[Any] | None


def _parse_path(text: str) -> Path:
    depth = 0
    rest = text
    while rest.startswith("../"):
        depth += 1
        rest = rest[3:]
    data = rest.startswith("@")
    rest = rest.removeprefix("@")
    parts: list[str] = []
    for match in re.finditer(r"\[([^\]]*)\]|([^./\[\]]+)", rest):
        segment = match.group(1) if match.group(1) is not None else match.group(2)
        parts.append(segment)
    if parts and parts[0] == "this" and not text.startswith("[this"):
        parts = parts[1:]
    if parts == ["."] or rest in (".", ""):
        parts = []
    return Path(depth, data, tuple(parts), text)


def _parse_call(source: str) -> Call:
    tokens: list[tuple[str, str]] = []
    position = 0
    source = source.strip()
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None or match.end() == position:
            msg = f"Parse error in expression {source!r} at {position}"
            raise TemplateError(msg)
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
        while position < len(source) and source[position].isspace():
            position += 1
    call, rest = _call_from_tokens(tokens)
    if rest:
        msg = f"Parse error in expression {source!r}"
        raise TemplateError(msg)
    return call


def _value_from_tokens(tokens: list[tuple[str, str]]) -> tuple[Any, list[tuple[str, str]]]:
    kind, text = tokens[0]
    if kind == "open":
        call, rest = _call_from_tokens(tokens[1:])
        if not rest or rest[0][0] != "close":
            msg = "Parse error: unclosed subexpression"
            raise TemplateError(msg)
        return call, rest[1:]
    if kind == "string":
        return Literal(text[1:-1].replace("\\" + text[0], text[0])), tokens[1:]
    if kind == "number":
        number = float(text)
        return Literal(int(number) if number == int(number) else number), tokens[1:]
    if kind == "path":
        keywords = {"true": True, "false": False, "null": None, "undefined": UNDEFINED}
        if text in keywords:
            return Literal(keywords[text]), tokens[1:]
        return _parse_path(text), tokens[1:]
    msg = f"Parse error: unexpected {text!r}"
    raise TemplateError(msg)


def _call_from_tokens(tokens: list[tuple[str, str]]) -> tuple[Call, list[tuple[str, str]]]:
    if not tokens:
        msg = "Parse error: empty expression"
        raise TemplateError(msg)
    head, rest = _value_from_tokens(tokens)
    if isinstance(head, Call):
        msg = "Parse error: a subexpression cannot be called"
        raise TemplateError(msg)
    params: list[Any] = []
    hash_args: list[tuple[str, Any]] = []
    while rest and rest[0][0] != "close":
        if rest[0][0] == "hash":
            key = rest[0][1]
            value, rest = _value_from_tokens(rest[1:])
            hash_args.append((key, value))
        else:
            value, rest = _value_from_tokens(rest)
            params.append(value)
    return Call(head, tuple(params), tuple(hash_args)), rest


def _strip_around(nodes: list[Any], index: int, left: bool, right: bool) -> None:
    if left and index > 0 and isinstance(nodes[index - 1], Text):
        nodes[index - 1].text = nodes[index - 1].text.rstrip()
    if right and index + 1 < len(nodes) and isinstance(nodes[index + 1], Text):
        nodes[index + 1].text = nodes[index + 1].text.lstrip()


def compile_template(template: str) -> Template:
    """Parse once; render many times (as `Handlebars.compile`)."""
    if not isinstance(template, str):
        msg = "You must pass a string or Handlebars AST to Handlebars.compile. "
        msg += f"You passed {template!r}"
        raise TemplateError(msg)
    root: list[Any] = []
    stack: list[tuple[str, list[Any], Block | None, bool]] = [("", root, None, False)]
    strip_next = False
    position = 0
    for match in _TAG.finditer(template):
        text = template[position : match.start()]
        position = match.end()
        current = stack[-1][1]
        if strip_next:
            text = text.lstrip()
        if match.group(1):
            text = text.rstrip()
        if text:
            current.append(Text(text))
        strip_next = bool(match.group(5))
        sigil, body = match.group(2) or "", match.group(3)
        if sigil in ("!", "!--"):
            continue
        if sigil == ">":
            msg = "Partials are not supported"
            raise TemplateError(msg)
        if sigil == "{":
            current.append(Mustache(_parse_call(body.strip()), escaped=False))
            continue
        if sigil == "&":
            current.append(Mustache(_parse_call(body.strip()), escaped=False))
            continue
        if sigil in ("#", "^"):
            call = _parse_call(body.strip())
            block = Block(call, [], None)
            if sigil == "^":  # inverted section: the body is the inverse
                block = Block(Call(Path(0, False, ("unless",), "unless"), (call,), ()), [], None)
            current.append(block)
            name = body.strip().split()[0] if body.strip() else ""
            stack.append((name, block.body, block, False))
            continue
        if sigil == "/":
            name = body.strip()
            while stack[-1][3]:  # an `else if` chain closes with its parent
                stack.pop()
            if len(stack) == 1 or stack[-1][0] != name:
                msg = f"{stack[-1][0] or 'nothing'} doesn't match {name}"
                raise TemplateError(msg)
            stack.pop()
            continue
        stripped = body.strip()
        if stripped == "else" or stripped.startswith("else "):
            _, _, block, _ = stack[-1]
            if block is None:
                msg = "Parse error: {{else}} outside a block"
                raise TemplateError(msg)
            block.inverse = []
            condition = stripped[4:].strip()
            if condition:  # `{{else if x}}`: a nested block inside the inverse
                nested = Block(_parse_call(condition), [], None)
                block.inverse.append(nested)
                name = stack[-1][0]
                stack.append((name, nested.body, nested, True))
            else:
                name, _, _, chained = stack.pop()
                stack.append((name, block.inverse, block, chained))
            continue
        current.append(Mustache(_parse_call(stripped), escaped=True))
    tail = template[position:]
    if strip_next:
        tail = tail.lstrip()
    if tail:
        stack[-1][1].append(Text(tail))
    while len(stack) > 1 and stack[-1][3]:
        stack.pop()
    if len(stack) > 1:
        msg = f"Parse error: unclosed block {stack[-1][0]}"
        raise TemplateError(msg)
    return Template(root)


# --- rendering -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Frame:
    context: Any
    data: Mapping[str, Any]
    parent: _Frame | None


class Template:
    def __init__(self, nodes: list[Any]) -> None:
        self._nodes = nodes

    def __call__(
        self, context: Any, helpers: Mapping[str, Callable[..., Any]] | None = None
    ) -> str:
        all_helpers = {**SCICAT_HELPERS, **(helpers or {})}
        frame = _Frame(context, {"root": context}, None)
        return _render(self._nodes, frame, all_helpers)


def _lookup(value: Any, key: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(key, UNDEFINED)
    if isinstance(value, list | tuple):
        if key == "length":
            return len(value)
        if key.isdigit() and int(key) < len(value):
            return value[int(key)]
    if isinstance(value, str) and key == "length":
        return len(value)
    return UNDEFINED


def _resolve_path(path: Path, frame: _Frame) -> Any:
    target = frame
    for _ in range(path.depth):
        target = target.parent or target
    if path.data:
        value: Any = target.data.get(path.parts[0], UNDEFINED) if path.parts else UNDEFINED
        parts = path.parts[1:]
    else:
        value, parts = target.context, path.parts
    for part in parts:
        if value is None or value is UNDEFINED:
            return value
        value = _lookup(value, part)
    return value


def _evaluate(value: Any, frame: _Frame, helpers: Mapping[str, Callable[..., Any]]) -> Any:
    if isinstance(value, Literal):
        return value.value
    if isinstance(value, Path):  # a parameter is always a path, never a helper call
        return _resolve_path(value, frame)
    return _call(value, frame, helpers, None)


def _call(
    call: Call,
    frame: _Frame,
    helpers: Mapping[str, Callable[..., Any]],
    block: Block | None,
) -> Any:
    head = call.head
    name = head.original if isinstance(head, Path) else None
    simple = isinstance(head, Path) and len(head.parts) == 1 and not head.data and not head.depth
    params = [_evaluate(p, frame, helpers) for p in call.params]
    options = HelperOptions(hash={k: _evaluate(v, frame, helpers) for k, v in call.hash})
    if block is not None:
        options.fn = lambda ctx, b=block: _render(b.body, _child(frame, ctx), helpers)
        options.inverse = lambda ctx, b=block: _render(b.inverse or [], _child(frame, ctx), helpers)
    if simple and name in _BUILTINS:
        return _BUILTINS[name](frame, helpers, params, options, block)
    if simple and name in helpers:
        return helpers[name](*params, options)
    if call.params or call.hash:
        msg = f'Missing helper: "{name}"'
        raise TemplateError(msg)
    value = _evaluate(head, frame, helpers)
    if block is not None:  # blockHelperMissing: a section over a value
        if value is True:
            return SafeString(_render(block.body, frame, helpers))
        if isinstance(value, list | tuple):
            return _builtin_each(frame, helpers, [value], options, block)
        if handlebars_empty(value):
            return SafeString(_render(block.inverse or [], frame, helpers))
        return SafeString(_render(block.body, _child(frame, value), helpers))
    return value


def _child(frame: _Frame, context: Any, data: Mapping[str, Any] | None = None) -> _Frame:
    return _Frame(context, {**frame.data, **(data or {})}, frame)


def _builtin_if(frame, helpers, params, options, block, negate=False):
    if len(params) != 1:
        msg = "#if requires exactly one argument"
        raise TemplateError(msg)
    value = params[0]
    empty = handlebars_empty(value)
    if options.hash.get("includeZero") and isinstance(value, int | float) and value == 0:
        empty = False
    if block is None:  # inline `{{if x}}` is not a thing in handlebars 4
        msg = "#if requires a block"
        raise TemplateError(msg)
    if empty != negate:
        return SafeString(options.inverse(frame.context))
    return SafeString(options.fn(frame.context))


def _builtin_unless(frame, helpers, params, options, block):
    return _builtin_if(frame, helpers, params, options, block, negate=True)


def _builtin_with(frame, helpers, params, options, block):
    value = params[0] if params else UNDEFINED
    if block is None:
        msg = "#with requires a block"
        raise TemplateError(msg)
    if handlebars_empty(value) and not (isinstance(value, int | float) and value == 0):
        return SafeString(_render(block.inverse or [], frame, helpers))
    return SafeString(_render(block.body, _child(frame, value), helpers))


def _builtin_each(frame, helpers, params, options, block):
    if block is None:
        msg = "Must pass iterator to #each"
        raise TemplateError(msg)
    value = params[0] if params else UNDEFINED
    out: list[str] = []
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            data = {"index": index, "first": index == 0, "last": index == len(value) - 1}
            out.append(_render(block.body, _child(frame, item, data), helpers))
    elif isinstance(value, Mapping):
        keys = list(value)
        for index, key in enumerate(keys):
            data = {"key": key, "index": index, "first": index == 0, "last": index == len(keys) - 1}
            out.append(_render(block.body, _child(frame, value[key], data), helpers))
    if not out:
        return SafeString(_render(block.inverse or [], frame, helpers))
    return SafeString("".join(out))


def _builtin_lookup(frame, helpers, params, options, block):
    if len(params) < 2 or params[0] is None or params[0] is UNDEFINED:
        return params[0] if params else UNDEFINED
    return _lookup(params[0], js_string(params[1]))


def _builtin_log(frame, helpers, params, options, block):
    return UNDEFINED


_BUILTINS: dict[str, Callable[..., Any]] = {
    "if": _builtin_if,
    "unless": _builtin_unless,
    "with": _builtin_with,
    "each": _builtin_each,
    "lookup": _builtin_lookup,
    "log": _builtin_log,
}


def _render(nodes: Sequence[Any], frame: _Frame, helpers: Mapping[str, Callable[..., Any]]) -> str:
    out: list[str] = []
    for node in nodes:
        if isinstance(node, Text):
            out.append(node.text)
        elif isinstance(node, Mustache):
            value = _call(node.call, frame, helpers, None)
            if node.escaped:
                out.append(escape_expression(value))
            elif isinstance(value, SafeString):
                out.append(value.text)
            elif value is not None and value is not UNDEFINED:
                out.append(js_string(value))
        else:
            value = _call(node.call, frame, helpers, node)
            if isinstance(value, SafeString):
                out.append(value.text)
            elif value is not None and value is not UNDEFINED:
                out.append(js_string(value))
    return "".join(out)


def render(template: str, context: Any) -> str:
    """Compile and render `template` once with SciCat's helpers."""
    return compile_template(template)(context)
