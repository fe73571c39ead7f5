"""The platform's API gateway on the local stack: ``/api/immune/*`` reaches the stable core.

A frontend of the local stack's HAProxy (``haproxy.render_config``) on ``gateway_port``:

* **routing**: ``/api/immune/<rest>`` → the stable colour's ``/api/v1/<rest>`` (the roles map names it,
  so a switch moves the gateway with it); ``/api/immune/health/{live,ready}`` → the core's own probes;
  anything else under the gateway answers 404 from the gateway itself;
* **aggregated health**: ``GET /health`` answers 200 ``{"status": "up", "services": {"immune_core":
  {"status": "up", "instances_up": N}}}`` while the stable colour has a server passing HAProxy's
  ``/health/ready`` check, else 503 with ``"status": "degraded"`` and the core ``"down"``;
* **authentication**: a request under ``/api/immune/`` (its probes excepted) without an
  ``Authorization: Bearer`` header is refused at the gateway (401, ``WWW-Authenticate: Bearer``) and
  never reaches the core; the token itself is checked by the core (its roles, docs/service.md
  "Roles"), so a wrong token is the core's 403;
* **rate limiting**: per client address, ``rate_limit_per_10s`` requests in a sliding 10 s window
  (HAProxy stick table, ``sc_http_req_rate``); beyond it 429 with ``Retry-After: 10``. The core's own
  limit (``IMMUNE_RATE_LIMIT_PER_S``, per token) still applies behind it; the gateway adds
  ``X-Forwarded-For`` so the core's per-address auth-failure throttling sees the real client.

HAProxy configuration manual (2.6): ``http-request return``/``deny`` with ``lf-string``/``string``
bodies (section 4.2), ``stick-table``/``track-sc0``/``sc_http_req_rate`` (7.3.3), ``nbsrv`` (7.3.2),
``map`` converter (7.3.1).
"""

from __future__ import annotations

from immune_suite.targets.base import TrafficState

GATEWAY = "gateway"
PREFIX = "/api/immune"
RATE_WINDOW_S = 10


def gateway_frontend(
    *, port: int, roles_map: str, traffic: TrafficState, rate_limit_per_10s: int, served_by: str
) -> list[str]:
    """The HAProxy lines of the gateway frontend (one list item per line)."""
    active = traffic.active.value
    stable = f"str(stable),map({roles_map},{active})"
    json_type = "content-type application/json"

    def health(color: str) -> str:
        body = (
            '{"status":"up","services":{"immune_core":{"status":"up","colour":"' + color + '",'
            f'"instances_up":%[nbsrv({color})]}}}}}}'
        )
        when = f"if gateway_health stable_{color} {color}_up"
        return f"    http-request return status 200 {json_type} lf-string '{body}' {when}"

    down = '{"status":"degraded","services":{"immune_core":{"status":"down","instances_up":0}}}'
    unauthorised = (
        '{"error":"unauthorized","message":"the gateway needs an Authorization: Bearer <token> header"}'
    )
    limited = '{"error":"rate_limited","message":"too many requests from this address (gateway limit)"}'
    not_here = '{"error":"not_found","message":"the gateway routes /api/immune/* and /health"}'
    return [
        f"frontend {GATEWAY}",
        f"    bind 127.0.0.1:{port}",
        served_by,
        "    option forwardfor",
        f"    stick-table type ip size 100k expire {RATE_WINDOW_S * 3}s"
        f" store http_req_rate({RATE_WINDOW_S}s)",
        "    http-request track-sc0 src",
        f"    acl immune_api path_beg {PREFIX}/",
        f"    acl immune_probe path {PREFIX}/health/live {PREFIX}/health/ready",
        "    acl gateway_health path /health",
        '    acl has_bearer req.hdr(authorization) -m reg -i "^bearer .+"',
        "    acl blue_up nbsrv(blue) ge 1",
        "    acl green_up nbsrv(green) ge 1",
        f"    acl stable_blue {stable} -m str blue",
        f"    acl stable_green {stable} -m str green",
        health("blue"),
        health("green"),
        f"    http-request return status 503 {json_type} string '{down}' if gateway_health",
        f"    http-request deny deny_status 429 {json_type} string '{limited}'"
        f" hdr Retry-After {RATE_WINDOW_S} if immune_api {{ sc_http_req_rate(0) gt {rate_limit_per_10s} }}",
        f"    http-request deny deny_status 401 {json_type} string '{unauthorised}'"
        " hdr WWW-Authenticate Bearer if immune_api !immune_probe !has_bearer",
        f"    http-request deny deny_status 404 {json_type} string '{not_here}' unless immune_api",
        f"    http-request replace-path ^{PREFIX}/health/(.*)$ /health/\\1 if immune_probe",
        f"    http-request replace-path ^{PREFIX}/(.*)$ /api/v1/\\1 if !immune_probe",
        f"    use_backend %[{stable}]",
        "",
    ]
