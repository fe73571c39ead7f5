"""The promotion record: one signed JSON document per pipeline run.

It names what was shipped (versions, digest), where (stack, colours), every step's verdict with
values, thresholds and artifact hashes, the timeline, who approved, and how it ended. It is
signed (see `signing.py`), so the record is evidence, not a log anyone can rewrite.
"""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path
from typing import Any

from immune_suite.pipeline.run_state import RunState, now_iso, records_dir
from immune_suite.signing import sign_record, signing_key_for
from immune_suite.stack_config import StackConfig
from immune_suite.state_dir import read_json, write_json_atomic

SCHEMA = "active-immune-core/promotion-record/v1"


def build_record(run: RunState, stack: StackConfig, target: str) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "run_id": run.run_id,
        "kind": run.kind,
        "stack": stack.name,
        "target": target,
        "outcome": run.status,
        "failure": run.failure,
        "candidate": {
            **run.candidate.to_dict(),
            "color": run.candidate_color.value,
            "commit": run.source_commit,
        },
        "stable": {**run.stable.to_dict(), "color": run.stable_color.value} if run.stable else None,
        "image_digest": run.candidate.digest,
        "approvals": run.approvals,
        "stages": [
            {
                "id": step.id,
                "kind": step.kind.value,
                "params": step.params,
                **vars(run.result(step.id)),
            }
            for step in run.plan
            if step.id in run.steps
        ],
        "plan": [step.to_dict() for step in run.plan],
        "timeline": run.timeline,
        "metrics": run.metrics,
        "config": stack.model_dump(mode="json"),
        "started_at": run.started_at,
        "finished_at": run.finished_at or now_iso(),
        "produced_by": {
            "host": socket.gethostname(),
            "python": platform.python_version(),
            "owner": run.owner,
        },
    }


def write_signed_record(run: RunState, stack: StackConfig, target: str) -> Path:
    key = signing_key_for(stack.name, stack.signing_key_source, dict(os.environ))
    record = sign_record(build_record(run, stack, target), key)
    directory = records_dir(stack.name)
    path = directory / f"{run.run_id}.json"
    write_json_atomic(path, record, mode=0o644)
    index_path = directory / "index.json"
    index: list[dict[str, Any]] = read_json(index_path) if index_path.exists() else []
    index = [entry for entry in index if entry["run_id"] != run.run_id]
    index.append(
        {
            "run_id": run.run_id,
            "kind": run.kind,
            "outcome": run.status,
            "candidate": run.candidate.to_dict(),
            "stable": run.stable.to_dict() if run.stable else None,
            "finished_at": record["finished_at"],
            "path": str(path),
        }
    )
    write_json_atomic(index_path, index, mode=0o644)
    return path


def record_index(stack: str) -> list[dict[str, Any]]:
    path = records_dir(stack) / "index.json"
    return list(read_json(path)) if path.exists() else []


def resolve_record(reference: str, stack: str | None = None) -> Path:
    """A record by path, by run id, or `latest` (of `stack`)."""
    candidate = Path(reference)
    if candidate.is_file():
        return candidate
    if stack:
        index = record_index(stack)
        if reference == "latest" and index:
            return Path(index[-1]["path"])
        for entry in index:
            if entry["run_id"] == reference:
                return Path(entry["path"])
    hint = "" if stack else " (a run id or `latest` needs --stack NAME; or give the record's path)"
    raise FileNotFoundError(f"no promotion record {reference!r}{hint}")
