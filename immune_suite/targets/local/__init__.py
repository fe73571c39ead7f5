"""The embedded `local` target: blue/green releases of the service behind HAProxy on this machine.

`target.py` holds the target; `layout.py` its directories and ports, `releases.py` builds a release
(a virtualenv per commit), `supervisor.py` runs the programs, `haproxy.py` the Ingress (weights,
per-server counters), `dependencies.py` the URLs of the local services, `launch.py` starts a program
with its environment file.
"""

from immune_suite.targets.local.target import LocalTarget

__all__ = ["LocalTarget"]
