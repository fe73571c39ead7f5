"""Exit codes of `immune-suite` (documented in docs/pipeline.md); scripts and CI branch on them."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # promoted / command succeeded / record verified
    ERROR = 1  # unexpected error (a bug, or the environment is broken)
    USAGE = 2  # bad arguments or stack config
    GATE_FAILED = 3  # a gate failed: traffic is back on stable, candidate scaled away
    ABORTED = 4  # an operator aborted: traffic is back on stable, candidate scaled away
    AWAITING_APPROVAL = 5  # stopped before changing anything; `immune-suite approve` then `resume`
    LOCKED = 6  # another pipeline run holds this stack's lock
    VERIFY_FAILED = 7  # a record's signature (or an artifact hash) does not verify
    TARGET_ERROR = 8  # deploying or routing failed: rolled back to stable
    NOTHING_TO_DO = 9  # e.g. `rollback` with no earlier promotion, `resume` with no paused run
    # The rollback itself failed past its retries: traffic may still be split. The record says what is
    # where; the guard (local) or the retrying restore (Kubernetes) keeps at it until stable has it all.
    ROLLBACK_FAILED = 10
