"""Which lymph node (region) an antigen drains to."""

from __future__ import annotations

import ipaddress
import re

_TRAILING_INDEX = re.compile(r"[-_.]?\d+$")


def region_of(antigen_type: str, antigen: str, host_id: str | None = None) -> str:
    """Source addresses group by network (/24 for IPv4, /64 for IPv6); hosts and processes by the host's
    role, i.e. its name without a trailing index (``web-03`` -> ``web``)."""
    if antigen_type == "source_ip":
        try:
            address = ipaddress.ip_address(antigen)
        except ValueError:
            return "net:unknown"
        prefix = 24 if address.version == 4 else 64
        return f"net:{ipaddress.ip_network(f'{address}/{prefix}', strict=False)}"
    host = host_id or antigen.split(":", 1)[0]
    role = _TRAILING_INDEX.sub("", host) or host
    return f"hosts:{role.lower()}"
