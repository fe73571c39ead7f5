"""The documentation rule for the public surface of chaos activities, gates and clients (docs/architecture.md,
"House style"): every public function, class and method carries a docstring; one that takes or returns a
number of time or size says its unit; one that raises an exception itself names it.

`problems(source, where)` reads Python source text (never imports it) and lists what breaks the rule, one
`where:line name: what` string each, so a test can show every offender at once.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

# A parameter or function name that holds a time or a size (timeout_s, ramp_s, latency_ms, max_bytes,
# wait_seconds, deadline, ...); a bare `_s`/`_ms` suffix counts as well as a whole word.
_QUANTITY_NAME = re.compile(
    r"(^|_)(s|ms|us|ns|seconds?|millis|timeout|delay|interval|duration|latency|elapsed|period|deadline|"
    r"ttl|wait|age|days?|hours?|minutes?|bytes|kib|mib)($|_)",
    re.IGNORECASE,
)
# What counts as naming a unit in prose.
# A bare "s" counts only after a number ("30 s", "5s"): neither "the error's name" nor "k8s" names a unit.
_UNIT_WORD = re.compile(
    r"\b(ms|seconds?|milliseconds?|microseconds?|nanoseconds?|minutes?|hours?|days?|bytes?|"
    r"KiB|MiB|GiB|per second|rps|percent)\b|(?<![A-Za-z])\d+\s?s\b|%",
    re.IGNORECASE,
)
_NUMBER_TYPES = {"int", "float"}
FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


def problems(source: str, where: str) -> list[str]:
    """Every breach of the rule in one module's source text.

    `where` prefixes each finding (a path, say). Private names (leading `_`, dunders included) and functions
    nested in functions are not public surface and are not checked. Raises SyntaxError for text that is
    not Python.
    """
    tree = ast.parse(source)
    found: list[str] = []
    for node, qualified in _public_definitions(tree):
        doc = ast.get_docstring(node) or ""
        label = f"{where}:{node.lineno} {qualified}"
        if not doc.strip():
            found.append(f"{label}: no docstring")
            continue
        if isinstance(node, FunctionNode):
            quantities = _quantities(node)
            if quantities and not _UNIT_WORD.search(doc):
                quantity = ", ".join(quantities)
                found.append(f"{label}: takes or returns a time/size ({quantity}) but names no unit")
            for error in sorted(_raised(node) - set(re.findall(r"\w+", doc))):
                found.append(f"{label}: raises {error} but its docstring does not say so")
    return found


def _public_definitions(tree: ast.Module) -> Iterator[tuple[FunctionNode | ast.ClassDef, str]]:
    for node in tree.body:
        if isinstance(node, FunctionNode) and not node.name.startswith("_"):
            yield node, node.name
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            yield node, node.name
            for member in node.body:
                if isinstance(member, FunctionNode) and not member.name.startswith("_"):
                    yield member, f"{node.name}.{member.name}"


def _is_number(annotation: ast.expr | None) -> bool:
    """`int`, `float`, and the same under `| None` or `Optional[...]` (read as text: it may be a string)."""
    if annotation is None:
        return False
    text = ast.unparse(annotation).strip("'\"")
    parts = {part.strip() for part in re.split(r"[|\[\],]", text.replace("Optional", "")) if part.strip()}
    return bool(parts & _NUMBER_TYPES) and parts <= _NUMBER_TYPES | {"None"}


def _quantities(node: FunctionNode) -> list[str]:
    arguments = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
    named = [arg.arg for arg in arguments if _is_number(arg.annotation) and _QUANTITY_NAME.search(arg.arg)]
    if _is_number(node.returns) and _QUANTITY_NAME.search(node.name):
        named.append("return value")
    return named


def _raised(node: FunctionNode) -> set[str]:
    """Exception classes the function raises itself (`raise X(...)` / `raise X`), not re-raises and not
    those of functions nested in it."""
    names: set[str] = set()
    pending: list[ast.AST] = list(node.body)
    while pending:
        current = pending.pop()
        if isinstance(current, FunctionNode | ast.Lambda | ast.ClassDef):
            continue
        if isinstance(current, ast.Raise) and current.exc is not None:
            target = current.exc.func if isinstance(current.exc, ast.Call) else current.exc
            if isinstance(target, ast.Name) and target.id[:1].isupper():
                names.add(target.id)
            elif isinstance(target, ast.Attribute):
                names.add(target.attr)
        pending.extend(ast.iter_child_nodes(current))
    return names
