"""The images the project builds itself (scripts/images.sh, cluster/images/, app/Dockerfile) really run,
are pushed to the local registry and are pullable there by digest; the daemon's status tells the truth.

Containers run with `--network host` on free loopback ports (servers are told to listen on 127.0.0.1
only) or `--network none` + `exec`; the securityContext the Pulumi program sets is reproduced with
`--user 10001:10001 --read-only --cap-drop ALL --security-opt no-new-privileges` and tmpfs where the
program mounts an emptyDir. Waits poll with generous deadlines; nothing asserts on speed.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from immune_infra import kafka as kafka_module
from immune_infra.config import StackSettings, parse_settings
from immune_infra.monitoring import prometheus_config
from immune_infra.render import stack_settings
from immune_infra.slo_rules import alert_rules

from tests.app.support import wait_for
from tests.cluster.images_support import ImageSet, build_and_push, free_port, images_script

pytestmark = pytest.mark.cluster

IMAGE_NAMES = (
    "python",
    "app",
    "redis",
    "postgres",
    "prometheus",
    "postgres-exporter",
    "redis-exporter",
    "kafka",
    "kafka-exporter",
)
# What the program's securityContext amounts to for `docker run`.
RESTRICTED = (
    "--user",
    "10001:10001",
    "--read-only",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
)
PASSWORD = "images-test-password"  # nosec B105 - a throwaway container's password


def emptydir(*paths: str) -> tuple[str, ...]:
    """tmpfs where the program mounts an emptyDir, writable by the pod's uid. (Docker copies the image
    directory's mode onto a tmpfs mounted over it, so `mode=` alone is not enough: the uid is given.)"""
    options = "uid=10001,gid=10001,mode=1777"
    return tuple(option for path in paths for option in ("--tmpfs", f"{path}:{options}"))


@pytest.fixture(scope="module")
def image_set() -> ImageSet:
    return build_and_push(IMAGE_NAMES)


@dataclass
class Containers:
    """Starts containers on the project's daemon and removes them all at teardown."""

    image_set: ImageSet
    started: list[str]

    def run(self, image: str, *args: str, options: tuple[str, ...] = ()) -> str:
        """`docker run -d` of IMAGE (a name from images.json) with OPTIONS before it and ARGS after."""
        done = self.image_set.docker("run", "-d", *options, self.image_set.images[image].ref, *args)
        container = done.stdout.strip()
        self.started.append(container)
        return container

    def logs(self, container: str) -> str:
        done = self.image_set.docker("logs", container, check=False)
        return done.stdout + done.stderr

    def exec(self, container: str, *args: str, check: bool = True) -> str:
        return self.image_set.docker("exec", container, *args, timeout=180, check=check).stdout

    def state(self, container: str) -> dict[str, object]:
        done = self.image_set.docker("inspect", "--format", "{{json .State}}", container)
        state: dict[str, object] = json.loads(done.stdout)
        return state


def _remove_all(running: Containers) -> None:
    for container in running.started:
        running.image_set.docker("rm", "-f", "-v", container, check=False)


@pytest.fixture
def containers(image_set: ImageSet) -> Iterator[Containers]:
    running = Containers(image_set, [])
    yield running
    _remove_all(running)


@pytest.fixture(scope="module")
def module_containers(image_set: ImageSet) -> Iterator[Containers]:
    """For what several tests share (one Kafka broker: its JVM takes a while to start)."""
    running = Containers(image_set, [])
    yield running
    _remove_all(running)


def http_get(url: str) -> tuple[int, str]:
    """(status, body) of a GET on loopback; (0, error) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # nosec B310 - loopback only
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")
    except OSError as error:
        return 0, str(error)


def answers(url: str, status: int = 200) -> Callable[[], bool]:
    return lambda: http_get(url)[0] == status


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of the first sample of NAME whose labels include LABELS, from a /metrics page."""
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(match.group(3))
    return None


# --------------------------------------------------------------------------------------------- python


def test_python_base_runs_debian_python_311(image_set: ImageSet) -> None:
    image = image_set.images["python"]
    done = image_set.docker(
        "run",
        "--rm",
        "--network",
        "none",
        image.ref,
        "python",
        "-c",
        "import ssl, sys, venv; print(sys.version_info[:2], ssl.OPENSSL_VERSION)",
    )
    assert done.stdout.startswith("(3, 11) OpenSSL 3."), done.stdout


def test_containers_get_no_network_but_loopback(image_set: ImageSet) -> None:
    """The daemon has no bridge: a container started without --network has only `lo`."""
    done = image_set.docker(
        "run",
        "--rm",
        image_set.images["python"].ref,
        "python",
        "-c",
        "import socket; print(sorted(name for _, name in socket.if_nameindex()))",
    )
    assert done.stdout.strip() == "['lo']"


# ------------------------------------------------------------------------------------------------ app


def test_app_serves_health_and_stops_cleanly_on_sigterm(containers: Containers) -> None:
    """The pod's way: `command: [immune-core, serve, ...]` replaces the entrypoint, restricted context."""
    port = free_port()
    container = containers.run(
        "app",
        "serve", "--host", "127.0.0.1", "--port", str(port),
        options=("--network", "host", *RESTRICTED, *emptydir("/tmp"), "--entrypoint", "immune-core"),
    )  # fmt: skip
    wait_for(answers(f"http://127.0.0.1:{port}/health/live"), timeout_s=120, what="the app's /health/live")
    status, body = http_get(f"http://127.0.0.1:{port}/health/live")
    assert status == 200 and json.loads(body)["status"] == "ok"
    containers.image_set.docker("stop", "--time", "60", container)
    state = containers.state(container)
    # Exit 0 after uvicorn's own shutdown, not 137 (SIGKILL after the grace period).
    assert state["ExitCode"] == 0, state
    assert "Finished server process [1]" in containers.logs(container)


def test_a_pid_1_without_sigterm_handler_is_killed_and_tini_fixes_it(containers: Containers) -> None:
    """What the app test rules out: Python as PID 1 with no handler ignores SIGTERM (docker then kills
    it: 137); under tini the signal reaches it and ends it (143)."""
    sleeper = ("python", "-c", "import time; time.sleep(3600)")
    bare = containers.run("python", *sleeper, options=("--network", "none"))
    wrapped = containers.run("python", "tini", "--", *sleeper, options=("--network", "none"))
    for container in (bare, wrapped):
        wait_for(lambda c=container: containers.state(c)["Running"], timeout_s=60, what="a running sleeper")
        containers.image_set.docker("stop", "--time", "3", container)
    assert containers.state(bare)["ExitCode"] == 137
    assert containers.state(wrapped)["ExitCode"] == 143


def test_a_tampered_lock_hash_fails_the_app_build(image_set: ImageSet, tmp_path: Path) -> None:
    """Every file is checked against requirements.lock: one package whose hashes all changed stops
    the build, with pip's own message, and no image is tagged."""
    done = images_script("context")
    assert done.returncode == 0, done.stderr
    context = tmp_path / "context"
    shutil.copytree(Path(done.stdout.strip()), context)
    lock = context / "requirements.lock"
    text = lock.read_text()
    block = re.search(r"^idna==\S+ \\\n(?:\s+--hash=sha256:[0-9a-f]{64}.*\n)+", text, flags=re.M)
    assert block, "idna is no longer in requirements.lock: pick another package"
    tampered = re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "f" * 64, block.group(0))
    lock.write_text(text.replace(block.group(0), tampered))
    tag = "immune/tampered-lock:test"
    build = image_set.docker(
        "build", "--force-rm", "--network", "none", "-f", str(context / "app" / "Dockerfile"),
        "--build-arg", f"BASE={image_set.images['python'].ref}",
        "--build-arg", "PIP_NO_INDEX=1", "--build-arg", "PIP_FIND_LINKS=/src",
        "-t", tag, str(context),
        timeout=900, check=False,
    )  # fmt: skip
    output = build.stdout + build.stderr
    assert build.returncode != 0
    assert "DO NOT MATCH THE HASHES" in output and "idna" in output, output[-2000:]
    assert image_set.docker("image", "inspect", tag, check=False).returncode != 0


# ------------------------------------------------------------------------------------------- postgres


def start_postgres(containers: Containers, port: int, **env: str) -> str:
    variables = {"POSTGRES_USER": "immune", "POSTGRES_DB": "immune", **env}
    options = [
        "--network", "host", *RESTRICTED, *emptydir("/var/run/postgresql", "/tmp"),
        "-e", "PGDATA=/var/lib/postgresql/data/pgdata",
    ]  # fmt: skip
    for name, value in variables.items():
        options += ["-e", f"{name}={value}"]
    return containers.run(
        "postgres",
        "postgres", "-c", f"port={port}", "-c", "listen_addresses=127.0.0.1",
        options=tuple(options),
    )  # fmt: skip


def test_postgres_initialises_from_env_and_answers_a_query(containers: Containers) -> None:
    port = free_port()
    container = start_postgres(containers, port, POSTGRES_PASSWORD=PASSWORD)
    # The program's readiness probe, verbatim but for the port.
    probe = f"pg_isready -h 127.0.0.1 -p {port} -U immune -d immune"
    wait_for(
        lambda: (
            containers.exec(container, "sh", "-c", probe, check=False)
            .strip()
            .endswith("accepting connections")
        ),
        timeout_s=120,
        what="pg_isready",
    )
    query = ("psql", "-h", "127.0.0.1", "-p", str(port), "-U", "immune", "-d", "immune", "-tAc")
    row = containers.exec(
        container, "env", f"PGPASSWORD={PASSWORD}", *query, "select current_user || ' ' || current_database()"
    )
    assert row.strip() == "immune immune"
    wrong = containers.image_set.docker(
        "exec", container, "env", "PGPASSWORD=wrong", *query, "select 1", check=False
    )
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr


def test_the_app_image_migrates_that_database(containers: Containers) -> None:
    """The program's migration Job: `immune-core migrate` with the app image against PostgreSQL."""
    port = free_port()
    postgres = start_postgres(containers, port, POSTGRES_PASSWORD=PASSWORD)
    wait_for(
        lambda: (
            "accepting"
            in containers.exec(postgres, "pg_isready", "-h", "127.0.0.1", "-p", str(port), check=False)
        ),
        timeout_s=120,
        what="postgres",
    )
    url = f"postgresql://immune:{PASSWORD}@127.0.0.1:{port}/immune"
    migrate = containers.image_set.docker(
        "run", "--rm", "--network", "host", *RESTRICTED, *emptydir("/tmp"), "--entrypoint", "immune-core",
        "-e", f"IMMUNE_DATABASE_URL={url}", containers.image_set.images["app"].ref, "migrate",
        timeout=300, check=False,
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    tables = containers.exec(
        postgres, "env", f"PGPASSWORD={PASSWORD}", "psql", "-h", "127.0.0.1", "-p", str(port), "-U", "immune",
        "-d", "immune", "-tAc", "select count(*) from pg_tables where schemaname = 'public'",
    )  # fmt: skip
    assert int(tables.strip()) > 0


def test_postgres_refuses_to_initialise_without_a_password(containers: Containers) -> None:
    container = start_postgres(containers, free_port())
    wait_for(lambda: not containers.state(container)["Running"], timeout_s=60, what="the container to exit")
    assert containers.state(container)["ExitCode"] == 1
    assert "POSTGRES_PASSWORD is not set" in containers.logs(container)


def test_postgres_exporter_reports_pg_up(containers: Containers) -> None:
    port, metrics_port, bad_port = free_port(), free_port(), free_port()
    postgres = start_postgres(containers, port, POSTGRES_PASSWORD=PASSWORD)
    wait_for(
        lambda: (
            "accepting"
            in containers.exec(postgres, "pg_isready", "-h", "127.0.0.1", "-p", str(port), check=False)
        ),
        timeout_s=120,
        what="postgres",
    )
    for listen, password in ((metrics_port, PASSWORD), (bad_port, "wrong")):
        containers.run(
            "postgres-exporter",
            f"--web.listen-address=127.0.0.1:{listen}",
            options=(
                "--network", "host", *RESTRICTED,
                "-e", f"DATA_SOURCE_URI=127.0.0.1:{port}/immune?sslmode=disable",
                "-e", "DATA_SOURCE_USER=immune", "-e", f"DATA_SOURCE_PASS={password}",
            ),
        )  # fmt: skip
    good = f"http://127.0.0.1:{metrics_port}/metrics"
    wait_for(answers(good), timeout_s=60, what="postgres-exporter /metrics")
    assert metric_value(http_get(good)[1], "pg_up") == 1
    # The program's probes ask for `/`.
    assert http_get(f"http://127.0.0.1:{metrics_port}/")[0] == 200
    bad = f"http://127.0.0.1:{bad_port}/metrics"
    wait_for(answers(bad), timeout_s=60, what="the second postgres-exporter")
    assert metric_value(http_get(bad)[1], "pg_up") == 0


# ---------------------------------------------------------------------------------------------- redis


def start_redis(containers: Containers, tmp_path: Path, port: int) -> str:
    """As the program runs it: `redis-server /etc/redis/redis.conf`, the file from a Secret."""
    config = tmp_path / "redis.conf"
    config.write_text(
        f"requirepass {PASSWORD}\nappendonly yes\nappendfsync everysec\ndir /data\n"
        f"protected-mode no\nport {port}\nbind 127.0.0.1\n"
    )
    config.chmod(0o644)
    return containers.run(
        "redis",
        "redis-server", "/etc/redis/redis.conf",
        options=(
            "--network", "host", *RESTRICTED, *emptydir("/tmp"),
            "-v", f"{config}:/etc/redis/redis.conf:ro", "-e", f"REDISCLI_AUTH={PASSWORD}",
        ),
    )  # fmt: skip


def test_redis_answers_ping_with_the_program_probe(containers: Containers, tmp_path: Path) -> None:
    port = free_port()
    container = start_redis(containers, tmp_path, port)
    probe = f"redis-cli -p {port} ping | grep -q PONG"  # the program's probe, plus the test's port
    wait_for(
        lambda: (
            containers.image_set.docker("exec", container, "sh", "-c", probe, check=False).returncode == 0
        ),
        timeout_s=60,
        what="redis PING",
    )
    assert containers.exec(container, "redis-cli", "-p", str(port), "set", "k", "v").strip() == "OK"
    assert containers.exec(container, "redis-cli", "-p", str(port), "get", "k").strip() == "v"
    anonymous = containers.exec(
        container, "env", "-u", "REDISCLI_AUTH", "redis-cli", "-p", str(port), "get", "k"
    )
    assert "NOAUTH" in anonymous


def test_redis_exporter_reports_redis_up(containers: Containers, tmp_path: Path) -> None:
    port, metrics_port, bad_port = free_port(), free_port(), free_port()
    redis = start_redis(containers, tmp_path, port)
    wait_for(
        lambda: "PONG" in containers.exec(redis, "redis-cli", "-p", str(port), "ping", check=False),
        timeout_s=60,
        what="redis",
    )
    for listen, password in ((metrics_port, PASSWORD), (bad_port, "wrong")):
        containers.run(
            "redis-exporter",
            f"--web.listen-address=127.0.0.1:{listen}",
            options=(
                "--network", "host", *RESTRICTED,
                "-e", f"REDIS_ADDR=redis://127.0.0.1:{port}", "-e", f"REDIS_PASSWORD={password}",
            ),
        )  # fmt: skip
    good = f"http://127.0.0.1:{metrics_port}"
    wait_for(answers(f"{good}/health"), timeout_s=60, what="redis-exporter /health")
    assert metric_value(http_get(f"{good}/metrics")[1], "redis_up") == 1
    bad = f"http://127.0.0.1:{bad_port}"
    wait_for(answers(f"{bad}/health"), timeout_s=60, what="the second redis-exporter")
    assert metric_value(http_get(f"{bad}/metrics")[1], "redis_up") == 0


# ----------------------------------------------------------------------------------------- prometheus


def test_prometheus_is_ready_and_scrapes_itself(containers: Containers, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: prometheus\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    config.chmod(0o644)
    containers.run(
        "prometheus",
        "--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus",
        "--storage.tsdb.retention.time=1d", f"--web.listen-address=127.0.0.1:{port}",
        options=("--network", "host", *RESTRICTED, "-v", f"{config}:/etc/prometheus/prometheus.yml:ro"),
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_for(answers(f"{base}/-/ready"), timeout_s=120, what="prometheus /-/ready")
    assert http_get(f"{base}/-/healthy")[0] == 200

    def self_scraped() -> bool:
        body = http_get(f"{base}/api/v1/query?query=up%7Bjob%3D%22prometheus%22%7D")[1]
        result = json.loads(body).get("data", {}).get("result", []) if body.startswith("{") else []
        return bool(result) and result[0]["value"][1] == "1"

    wait_for(self_scraped, timeout_s=120, what="up{job=prometheus} == 1")


def staging() -> StackSettings:
    return parse_settings(stack_settings("staging"))


def promtool_check(containers: Containers, tmp_path: Path, config: dict[str, object]) -> tuple[int, str]:
    """`promtool check config` of the image on CONFIG with the program's alert rules beside it."""
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "immune-core-slo.yaml").write_text(yaml.safe_dump(alert_rules(staging()), sort_keys=False))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    for path in (rules, *rules.iterdir(), tmp_path / "prometheus.yml"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    done = containers.image_set.docker(
        "run", "--rm", "--network", "none", *RESTRICTED, "--entrypoint", "promtool",
        "-v", f"{tmp_path / 'prometheus.yml'}:/etc/prometheus/prometheus.yml:ro",
        "-v", f"{rules}:/etc/prometheus/rules:ro",
        containers.image_set.images["prometheus"].ref, "check", "config", "/etc/prometheus/prometheus.yml",
        check=False,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def test_prometheus_accepts_the_programs_config_and_rules(containers: Containers, tmp_path: Path) -> None:
    """Debian's Prometheus (2.x, not the program's 3.x pin) reads what the program renders."""
    status, output = promtool_check(containers, tmp_path, prometheus_config(staging()))
    assert status == 0, output
    assert "SUCCESS" in output and "rules found" in output


def test_promtool_rejects_a_broken_config(containers: Containers, tmp_path: Path) -> None:
    config = prometheus_config(staging())
    config["scrape_configs"][0]["no_such_field"] = True  # type: ignore[index]
    status, output = promtool_check(containers, tmp_path, config)
    assert status != 0 and "no_such_field" in output


# ---------------------------------------------------------------------------------------------- kafka


@dataclass(frozen=True)
class KafkaBroker:
    container: str
    bootstrap: str


@pytest.fixture(scope="module")
def kafka_broker(module_containers: Containers) -> KafkaBroker:
    """The image's default command: a single KRaft node configured from KAFKA_* variables."""
    containers = module_containers
    port, controller = free_port(), free_port()
    container = containers.run(
        "kafka",
        options=(
            "--network", "host", *RESTRICTED, *emptydir("/var/run/kafka", "/tmp"),
            "-e", f"KAFKA_LISTENERS=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
            "-e", f"KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://127.0.0.1:{port}",
            "-e", f"KAFKA_CONTROLLER_QUORUM_VOTERS=1@127.0.0.1:{controller}",
            "-e", "KAFKA_HEAP_OPTS=-Xms256m -Xmx384m",
        ),
    )  # fmt: skip
    wait_for(
        lambda: (
            "Kafka Server started" in containers.logs(container) or not containers.state(container)["Running"]
        ),
        timeout_s=240,
        what="Kafka Server started",
    )
    assert containers.state(container)["Running"], containers.logs(container)[-3000:]
    return KafkaBroker(container, f"127.0.0.1:{port}")


def kafka_tool(containers: Containers, broker: KafkaBroker, tool: str, *args: str, stdin: str = "") -> str:
    """Runs one of the image's Kafka launchers against BROKER inside its container, small heap."""
    command = f"{tool} --bootstrap-server {broker.bootstrap} " + " ".join(args)
    if stdin:
        command = f"printf '{stdin}' | {command}"
    return containers.exec(broker.container, "env", "KAFKA_HEAP_OPTS=-Xmx128m", "sh", "-c", command)


def create_topic(containers: Containers, broker: KafkaBroker, topic: str) -> None:
    kafka_tool(containers, broker, "kafka-topics.sh", "--create", "--topic", topic,
               "--partitions", "1", "--replication-factor", "1")  # fmt: skip


def consume(containers: Containers, broker: KafkaBroker, topic: str, group: str, count: int) -> str:
    return kafka_tool(containers, broker, "kafka-console-consumer.sh", "--topic", topic, "--group", group,
                      "--from-beginning", "--max-messages", str(count), "--timeout-ms", "60000")  # fmt: skip


def test_kafka_produces_and_consumes_a_record(containers: Containers, kafka_broker: KafkaBroker) -> None:
    create_topic(containers, kafka_broker, "images-test")
    kafka_tool(containers, kafka_broker, "kafka-console-producer.sh", "--topic", "images-test",
               stdin="images-test-record\\n")  # fmt: skip
    assert (
        consume(containers, kafka_broker, "images-test", "images-test-group", 1).strip()
        == "images-test-record"
    )


def test_kafka_exporter_reports_offsets_and_lag(containers: Containers, kafka_broker: KafkaBroker) -> None:
    create_topic(containers, kafka_broker, "lagged")
    kafka_tool(
        containers, kafka_broker, "kafka-console-producer.sh", "--topic", "lagged", stdin="a\\nb\\nc\\n"
    )
    # The group reads one record of three and commits: its lag is 2.
    assert consume(containers, kafka_broker, "lagged", "lag-group", 1).strip() == "a"
    metrics_port, nothing_port = free_port(), free_port()
    containers.run(
        "kafka-exporter",
        f"--kafka.server={kafka_broker.bootstrap}", "--kafka.version=3.6.0",
        f"--web.listen-address=127.0.0.1:{metrics_port}",
        options=("--network", "host", *RESTRICTED),
    )  # fmt: skip
    url = f"http://127.0.0.1:{metrics_port}"
    wait_for(answers(f"{url}/healthz"), timeout_s=60, what="kafka-exporter /healthz")
    text = http_get(f"{url}/metrics")[1]
    group = {"consumergroup": "lag-group", "topic": "lagged"}
    assert metric_value(text, "kafka_exporter_scrape_success") == 1, text
    assert metric_value(text, "kafka_brokers") == 1
    assert metric_value(text, "kafka_topic_partitions", topic="lagged") == 1
    assert metric_value(text, "kafka_topic_partition_current_offset", topic="lagged", partition="0") == 3
    assert metric_value(text, "kafka_consumergroup_current_offset", **group) == 1
    assert metric_value(text, "kafka_consumergroup_lag", **group) == 2
    # Nothing listens there: a failed scrape, and no figures that would read as "no lag".
    containers.run(
        "kafka-exporter",
        f"--kafka.server=127.0.0.1:{free_port()}", "--kafka.timeout=3",
        f"--web.listen-address=127.0.0.1:{nothing_port}",
        options=("--network", "host", *RESTRICTED),
    )  # fmt: skip
    wait_for(answers(f"http://127.0.0.1:{nothing_port}/healthz"), timeout_s=60, what="the second exporter")
    unreachable = http_get(f"http://127.0.0.1:{nothing_port}/metrics")[1]
    assert metric_value(unreachable, "kafka_exporter_scrape_success") == 0
    assert metric_value(unreachable, "kafka_brokers") is None


def test_the_programs_kafka_scripts_run_in_the_image(containers: Containers, tmp_path: Path) -> None:
    """The StatefulSet's start script and the topics Job's script from infra/immune_infra/kafka.py, with
    the env the program gives them; the pod's DNS name points at the container's own loopback."""
    namespace = "immune-images-test"
    pod_dns = f"kafka-0.{kafka_module.HEADLESS_NAME}.{namespace}.svc.cluster.local"
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "start-kafka.sh").write_text(kafka_module.START_SCRIPT)
    (scripts / "create-topics.sh").write_text(kafka_module.TOPICS_SCRIPT)
    for path in (scripts, *scripts.iterdir()):
        path.chmod(0o755)
    env = {
        "POD_NAME": "kafka-0",
        "POD_NAMESPACE": namespace,
        "STATEFULSET_NAME": kafka_module.STATEFULSET_NAME,
        "HEADLESS_SERVICE": kafka_module.HEADLESS_NAME,
        "KAFKA_CLUSTER_ID": kafka_module.cluster_id(namespace),
        "KAFKA_BROKERS": "1",
        "KAFKA_PARTITIONS": "3",
        "KAFKA_REPLICATION_FACTOR": "1",
        "KAFKA_MIN_INSYNC_REPLICAS": "1",
        "KAFKA_HEAP_OPTS": "-Xms256m -Xmx384m",
        "LOG_DIR": "/var/run/kafka/logs",
    }
    options = [
        # The pod's own names, as kubelet's /etc/hosts and the cluster DNS give them.
        "--network", "none", "--hostname", "kafka-0", "--add-host", "kafka-0:127.0.0.1",
        "--add-host", f"{pod_dns}:127.0.0.1", *RESTRICTED,
        *emptydir("/var/run/kafka", "/tmp"), "-v", f"{scripts}:/opt/immune:ro", "--entrypoint", "/bin/sh",
    ]  # fmt: skip
    for name, value in env.items():
        options += ["-e", f"{name}={value}"]
    broker = containers.run("kafka", "/opt/immune/start-kafka.sh", options=tuple(options))
    wait_for(
        lambda: "Kafka Server started" in containers.logs(broker) or not containers.state(broker)["Running"],
        timeout_s=240,
        what="Kafka Server started",
    )
    assert containers.state(broker)["Running"], containers.logs(broker)[-3000:]
    topics = containers.exec(
        broker, "env", f"BOOTSTRAP={pod_dns}:{kafka_module.CLIENT_PORT}",
        "TOPICS=immunis.dlq vertice.threats.intel",
        "PARTITIONS=3", "REPLICATION_FACTOR=1", "MIN_INSYNC_REPLICAS=1", "KAFKA_HEAP_OPTS=-Xmx256m",
        "LOG_DIR=/tmp/kafka-logs", "/bin/sh", "/opt/immune/create-topics.sh",
    )  # fmt: skip
    assert "Topic: immunis.dlq" in topics and "Topic: vertice.threats.intel" in topics, topics
    assert "PartitionCount: 3" in topics


# ------------------------------------------------------------------------------------ registry, daemon


def _manifest_status(registry: str, repository: str, reference: str) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{reference}",
        method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # nosec B310 - loopback registry
            return response.status, response.headers.get("Docker-Content-Digest", "")
    except urllib.error.HTTPError as error:
        return error.code, ""


def test_pushed_image_is_pullable_by_digest(image_set: ImageSet) -> None:
    image = image_set.images["python"]
    repository = image.ref.split("/", 1)[1].split("@")[0]
    status, served = _manifest_status(image_set.registry, repository, image.digest)
    assert (status, served) == (200, image.digest)
    # Drop the digest name of the image, then pull it back by digest alone.
    local_id = image_set.docker("image", "inspect", "--format", "{{.Id}}", image.tag).stdout.strip()
    image_set.docker("rmi", image.ref, check=False)
    pulled = image_set.docker("pull", image.ref)
    assert image.digest in pulled.stdout
    assert image_set.docker("image", "inspect", "--format", "{{.Id}}", image.ref).stdout.strip() == local_id


def test_unknown_digest_is_not_pullable(image_set: ImageSet) -> None:
    image = image_set.images["python"]
    repository = image.ref.split("/", 1)[1].split("@")[0]
    bogus = "sha256:" + "0" * 64
    assert _manifest_status(image_set.registry, repository, bogus)[0] == 404
    pulled = image_set.docker("pull", f"{image_set.registry}/{repository}@{bogus}", check=False)
    assert pulled.returncode != 0
    assert "not found" in pulled.stderr.lower() or "unknown" in pulled.stderr.lower()


def test_images_json_names_every_image_by_digest(image_set: ImageSet) -> None:
    record = json.loads(image_set.images_json.read_text(encoding="utf-8"))
    assert record["registry"] == image_set.registry
    assert set(IMAGE_NAMES) <= set(record["images"])
    for name, entry in record["images"].items():
        assert entry["ref"] == f"{entry['tag'].rsplit(':', 1)[0]}@{entry['digest']}", name
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", entry["digest"]), name
        assert entry["tag"].startswith(f"{image_set.registry}/immune/"), name


def test_status_is_zero_when_daemon_and_registry_answer(image_set: ImageSet) -> None:
    done = images_script("status")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "dockerd running" in done.stdout and "registry running" in done.stdout


def test_status_is_nonzero_when_the_daemon_is_down(tmp_path: Path) -> None:
    """A state dir, socket and registry port where nothing runs: status must say so and fail."""
    env = {
        "IMMUNE_STATE_DIR": str(tmp_path / "state"),
        "IMAGES_DOCKER_SOCKET": str(tmp_path / "docker.sock"),
        "IMAGES_REGISTRY_PORT": str(free_port()),
    }
    done = images_script("status", env=env)
    assert done.returncode == 3
    assert "dockerd stopped" in done.stdout and "registry stopped" in done.stdout


def test_a_private_daemon_goes_up_and_down_leaving_nothing(tmp_path: Path) -> None:
    """up -> status 0 -> down -> status 3, and no mount, socket or exec root left behind."""
    state = tmp_path / "state"
    socket_path = f"/run/immune-docker-test-{free_port()}.sock"
    env = {
        "IMMUNE_STATE_DIR": str(state),
        "IMAGES_DOCKER_SOCKET": socket_path,
        "IMAGES_REGISTRY_PORT": str(free_port()),
    }
    try:
        up = images_script("up", env=env, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        assert images_script("status", env=env).returncode == 0
        # --bridge=none: the daemon made no interface (docker0 is what it would otherwise create).
        assert not Path("/sys/class/net/docker0").exists()
    finally:
        down = images_script("down", env=env, timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert images_script("status", env=env).returncode == 3
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(state) not in mounts
    assert not Path(socket_path).exists()
    assert not list(Path("/run").glob(f"immune-docker-{_exec_root_key(state)}*"))


def _exec_root_key(state: Path) -> str:
    return hashlib.sha256(str(state).encode()).hexdigest()[:8]


def test_a_rebuild_of_unchanged_sources_keeps_every_digest(image_set: ImageSet) -> None:
    """Contexts are staged with fixed mtimes, so the classic builder's cache holds across builds (and
    checkouts): the same sources give the same digests, and a second `pulumi up` has nothing to roll."""
    names = ("python", "app", "redis")
    rebuilt = build_and_push(names)
    for name in names:
        assert rebuilt.images[name].digest == image_set.images[name].digest, name
