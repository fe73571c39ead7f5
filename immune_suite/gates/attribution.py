"""Which backend served a request, from the ingress's own view (never from the service's headers).

A candidate that crashes may answer without any header of its own, or not answer at all; a canary
that splits samples by a header the candidate sets would then lose exactly the failures it exists to
catch. The ingress knows which server it chose for every request, whatever that server did: on the
local stack HAProxy writes it into every response it sends, its own 502/503/504 included
(`http-after-response set-header X-Immune-Served-By "%b/%s"`, see targets/local/haproxy.py; HAProxy
replaces any header of that name a server sent, so a candidate cannot forge it).

`Attribution` carries that header's name and the server -> colour map; the load generator turns each
response into a sample coloured by it. A response the ingress could not attribute (no header: the
ingress itself was unreachable or the connection broke before its headers; `<NOSRV>`: no server was
available) is coloured `unattributed`: it is counted and judged (`unattributed_check`), never dropped.

HAProxy's `%b`/`%s` log-format variables: https://docs.haproxy.org/2.6/configuration.html#8.2.4
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from immune_suite.verdict import Measurement, Status, Verdict

SERVED_BY_HEADER = "X-Immune-Served-By"
ENV_VAR = "IMMUNE_LOAD_ATTRIBUTION"  # JSON of `Attribution.to_dict()`, read by load/locustfile.py
UNATTRIBUTED = "unattributed"
BASELINE = "baseline"  # the colour of fresh stable instances started for a canary (Kayenta's baseline)
NO_SERVER = "<NOSRV>"  # HAProxy's %s when it chose no server
# At most this share of a window's requests may lack an ingress attribution (0.1 %: one request in
# a thousand); more means the measurement itself is broken and the step fails.
MAX_UNATTRIBUTED_RATIO = 0.001


@dataclass(frozen=True)
class Attribution:
    """`header`: response header the ingress sets to `<backend>/<server>`; `servers`: server -> colour."""

    header: str = SERVED_BY_HEADER
    servers: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """`{"header": str, "servers": {server: colour}}`, the form `from_dict` reads back."""
        return {"header": self.header, "servers": dict(self.servers)}

    def to_env(self) -> dict[str, str]:
        """The environment that hands this attribution to a locust run: `{IMMUNE_LOAD_ATTRIBUTION: json}`."""
        return {ENV_VAR: json.dumps(self.to_dict(), sort_keys=True)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attribution:
        """Read `to_dict`'s form. Raises ValueError when the header name or a non-empty server map is
        missing (no attribution is better than one that attributes nothing)."""
        servers = data.get("servers")
        if not isinstance(data.get("header"), str) or not isinstance(servers, dict) or not servers:
            raise ValueError(f"attribution needs a header name and a non-empty server map: {data!r}")
        return cls(header=str(data["header"]), servers={str(k): str(v) for k, v in servers.items()})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Attribution | None:
        """The attribution in IMMUNE_LOAD_ATTRIBUTION, None when unset or blank. Raises ValueError when it is
        not valid JSON (json.JSONDecodeError) or not `to_dict`'s form."""
        raw = environ.get(ENV_VAR, "").strip()
        return cls.from_dict(json.loads(raw)) if raw else None

    def server_of(self, headers: Mapping[str, str] | None) -> str | None:
        """The server named by the ingress header (`backend/server` or `server`), or None."""
        value = (headers or {}).get(self.header)
        if not value:
            return None
        return str(value).rsplit("/", 1)[-1].strip() or None

    def color_of(self, headers: Mapping[str, str] | None) -> str:
        """The colour the ingress chose for this response, or `unattributed`."""
        server = self.server_of(headers)
        if server is None or server == NO_SERVER:
            return UNATTRIBUTED
        return self.servers.get(server, UNATTRIBUTED)


def count_by_color(paths: Iterable[Path]) -> dict[str, int]:
    """Samples per colour over samples files (JSON lines; a cut last line is skipped)."""
    counts: dict[str, int] = {}
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                color = str(json.loads(line).get("color") or UNATTRIBUTED)
            except (ValueError, AttributeError):
                continue
            counts[color] = counts.get(color, 0) + 1
    return counts


def unattributed_check(counts: Mapping[str, int], max_ratio: float = MAX_UNATTRIBUTED_RATIO) -> Measurement:
    """Pass when at most `max_ratio` of all requests (rounded down) lack an ingress attribution.

    No requests at all fails too: an empty window attributes nothing.
    """
    total = sum(counts.values())
    missing = counts.get(UNATTRIBUTED, 0)
    allowed = int(total * max_ratio)
    return Measurement(
        "unattributed_requests", missing, allowed, "<=", total > 0 and missing <= allowed, "requests"
    )


@dataclass(frozen=True)
class IngressCounters:
    """What the ingress counted for one group's servers over some time: responses, 5xx among them, and
    the failures it saw itself (connection/response errors, retries; what counts is the ingress's own
    definition: targets/local/haproxy.py, targets/kubernetes/router_metrics.py)."""

    responses: int = 0
    responses_5xx: int = 0
    failures: int = 0

    def __add__(self, other: IngressCounters) -> IngressCounters:
        return IngressCounters(
            self.responses + other.responses,
            self.responses_5xx + other.responses_5xx,
            self.failures + other.failures,
        )

    def __sub__(self, other: IngressCounters) -> IngressCounters:
        return IngressCounters(
            self.responses - other.responses,
            self.responses_5xx - other.responses_5xx,
            self.failures - other.failures,
        )

    def to_dict(self) -> dict[str, int]:
        """`{"responses": n, "responses_5xx": n, "failures": n}`: counts, as the step record keeps them."""
        return {"responses": self.responses, "responses_5xx": self.responses_5xx, "failures": self.failures}


def counter_deltas(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Per group, what the ingress counted between two `ingress_counters()` readings (as dicts)."""
    deltas: dict[str, dict[str, int]] = {}
    for group, now in after.items():
        then = before.get(group)
        deltas[group] = (now - then if then is not None else now).to_dict()
    return deltas


def judge_attribution(
    verdict: Verdict,
    samples_files: Iterable[Path],
    proxy_counters: Mapping[str, Mapping[str, int]] | None = None,
    max_ratio: float = MAX_UNATTRIBUTED_RATIO,
) -> Verdict:
    """`verdict` with the ingress-attribution check added: too many unattributed requests fail it.

    The requests per colour (as the ingress attributed them) and the proxy's own per-group counters
    over the window (requests, 5xx, connection/response errors, retries) go into the details, the
    evidence that the samples and the proxy agree on who failed.
    """
    counts = count_by_color(samples_files)
    check = unattributed_check(counts, max_ratio)
    details = {
        **verdict.details,
        "ingress_attribution": {
            "requests_by_color": counts,
            "unattributed_allowed": check.threshold,
            "proxy_counters": dict(proxy_counters or {}),
        },
    }
    measurements = [*verdict.measurements, check]
    if check.passed:
        return replace(verdict, measurements=measurements, details=details)
    total = sum(counts.values())
    summary = (
        f"{check.value:.0f} of {total} requests not attributed by the ingress (at most "
        f"{check.threshold:.0f} allowed); {verdict.summary}"
    )
    return replace(verdict, status=Status.FAIL, summary=summary, measurements=measurements, details=details)
