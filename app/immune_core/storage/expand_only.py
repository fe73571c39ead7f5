"""Expand/contract rule for migrations: after the first, a migration may only expand the schema.

Blue/green and canary releases run the previous release beside the new one on the newest schema, and a
rollback runs the previous release on it again. So a migration shipped in a release may only add:
new tables, new indexes, new nullable columns or new columns with a DEFAULT. Anything the previous
release's queries could trip over — dropping or renaming a table or column, changing a column's type,
tightening a column to NOT NULL, adding a NOT NULL column without a default, truncating — is a
"contract" step and belongs in a later release, once no running release reads the old shape
(the expand/contract or "parallel change" pattern: https://martinfowler.com/bliki/ParallelChange.html).
"""

from __future__ import annotations

import re

# Each entry: (why it breaks the previous release, pattern over one statement with comments removed).
_CONTRACT_STEPS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("drops a table or view", re.compile(r"^DROP\s+(TABLE|VIEW)\b")),
    # Relaxing NOT NULL expands; dropping a column, constraint or default breaks the previous writes.
    ("drops a column, constraint or default", re.compile(r"\bALTER\s+TABLE\b.*\bDROP\s+(?!NOT\s+NULL\b)")),
    ("renames a table or column", re.compile(r"\bRENAME\b")),
    ("changes a column's type", re.compile(r"\bALTER\s+(COLUMN\s+)?\w+\s+(SET\s+DATA\s+)?TYPE\b")),
    ("tightens a column to NOT NULL", re.compile(r"\bSET\s+NOT\s+NULL\b")),
    ("empties a table", re.compile(r"\bTRUNCATE\b")),
)
_ADD_COLUMN = re.compile(r"\bADD\s+(COLUMN\s+)?(IF\s+NOT\s+EXISTS\s+)?\w+\s+([^,]*)")


def _without_comments(statement: str) -> str:
    lines = [line.split("--", 1)[0] for line in statement.splitlines()]
    return " ".join(" ".join(lines).split()).upper()


def contract_steps(statements: list[str]) -> list[str]:
    """Why each statement that is not expand-only would break the previous release (empty: all expand).

    Input: the statements of one migration (``Migration.statements()``). Output: one message per offending
    statement, naming the rule and the statement's first 80 characters.
    """
    problems: list[str] = []
    for statement in statements:
        text = _without_comments(statement)
        reasons = [reason for reason, pattern in _CONTRACT_STEPS if pattern.search(text)]
        if text.startswith("ALTER TABLE"):
            for match in _ADD_COLUMN.finditer(text):
                definition = match.group(3)
                if "NOT NULL" in definition and "DEFAULT" not in definition:
                    reasons.append("adds a NOT NULL column without a DEFAULT")
        problems.extend(f"{reason}: {text[:80]}" for reason in dict.fromkeys(reasons))
    return problems
