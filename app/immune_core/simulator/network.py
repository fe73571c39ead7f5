"""The simulated organisation: workstations, servers, their processes, and the internet they reach."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# Public-looking addresses outside the documentation/private ranges (which the NK cell treats as
# internal); the simulator never sends anything anywhere, it only writes them into events.
_INTERNET_PREFIXES = ("23.45", "34.117", "52.84", "104.18", "151.101", "172.217", "185.199", "142.250")
_ATTACKER_PREFIXES = ("45.133", "91.241", "185.220", "193.42", "80.82", "5.188")

WORKSTATION_PROCESSES = (
    "chrome.exe",
    "outlook.exe",
    "teams.exe",
    "explorer.exe",
    "code.exe",
    "slack.exe",
    "onedrive.exe",
    "winword.exe",
    "excel.exe",
    "powershell.exe",
    "git.exe",
    "python.exe",
    "zoom.exe",
    "notepad.exe",
    "acrord32.exe",
    "firefox.exe",
)
# Developer tools and odd utilities: workstations do run some unsigned software, which is normal there.
WORKSTATION_UNSIGNED = ("devbuild.exe", "portable-tool.exe", "keepass-portable.exe", "script-runner.exe")
SERVER_PROCESSES = ("sshd", "cron", "systemd-journald", "rsyslogd", "node_exporter", "logrotate")
SERVER_ROLE_PROCESSES = {
    "web": ("nginx", "gunicorn"),
    "db": ("postgres", "pg_dump"),
    "file": ("smbd", "nmbd"),
    "bastion": ("sshd-session", "sudo"),
    "dns": ("named", "unbound-anchor"),
}
SERVER_ROLE_PORTS = {"web": 443, "db": 5432, "file": 445, "bastion": 22, "dns": 53}


@dataclass(frozen=True, slots=True)
class Host:
    host_id: str
    ip: str
    role: str  # "workstation" or a server role
    user: str

    @property
    def is_server(self) -> bool:
        return self.role != "workstation"


@dataclass(slots=True)
class Network:
    workstations: list[Host]
    servers: dict[str, Host]
    internet: list[str]
    domains: dict[str, str] = field(default_factory=dict)

    @property
    def hosts(self) -> list[Host]:
        return [*self.workstations, *self.servers.values()]


def public_ip(rng: random.Random, prefixes: tuple[str, ...] = _INTERNET_PREFIXES) -> str:
    return f"{rng.choice(prefixes)}.{rng.randint(1, 254)}.{rng.randint(1, 254)}"


def attacker_ip(rng: random.Random) -> str:
    return public_ip(rng, _ATTACKER_PREFIXES)


def build_network(rng: random.Random, workstations: int = 12) -> Network:
    users = [
        "alice",
        "bob",
        "carol",
        "dave",
        "erin",
        "frank",
        "grace",
        "heidi",
        "ivan",
        "judy",
        "mallory",
        "niaj",
        "olivia",
        "peggy",
        "rupert",
        "sybil",
        "trent",
        "victor",
        "walter",
        "yolanda",
    ]
    hosts = [
        Host(f"ws-{index + 1:02d}", f"10.20.1.{index + 11}", "workstation", users[index % len(users)])
        for index in range(workstations)
    ]
    servers = {
        role: Host(
            f"srv-{role}-1", f"10.20.2.{10 + offset * 10}", role, "root" if role != "db" else "postgres"
        )
        for offset, role in enumerate(SERVER_ROLE_PROCESSES)
    }
    internet: list[str] = []
    while len(internet) < 60:
        address = public_ip(rng)
        if address not in internet:
            internet.append(address)
    domains = {address: f"cdn{index}.example-cdn.com" for index, address in enumerate(internet)}
    return Network(hosts, servers, internet, domains)
