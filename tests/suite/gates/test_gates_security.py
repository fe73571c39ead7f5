"""Each security tool run for real: on the repository, and on planted problems it must catch."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import ClassVar

import pytest

from immune_suite.gates.advisories import affects, locate_advisory_db, serve_osv
from immune_suite.gates.advisory_snapshot import SNAPSHOT_FILE
from immune_suite.gates.scanners import bandit, checkov, pip_audit, schemathesis, secrets
from immune_suite.gates.scanners.pip_audit import ReviewedIgnore, judge, load_ignores, read_lock
from immune_suite.gates.security import run_security_gate
from immune_suite.verdict import Status
from tests.suite.gates.gate_services import REPO_ROOT, RunningService

GATE_FILES = ("immune_suite/gates/", "chaos/", "load/")
TODAY = date.today()
FRESH = date(2024, 11, 1)  # within 90 days of the vendored snapshot: tests of other rules than its age


@pytest.fixture(autouse=True)
def offline_advisories(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same answer whether or not PyPI's JSON API is reachable from where the tests run.
    monkeypatch.setenv(pip_audit.SOURCE_ENV, "snapshot")


# --- bandit -----------------------------------------------------------------------------------------


def test_bandit_runs_on_the_repository_and_the_gates_themselves_are_clean(tmp_path: Path) -> None:
    result = bandit.scan(REPO_ROOT, tmp_path)
    assert result.error is None, result.error
    assert (tmp_path / "bandit.sarif").exists() and (tmp_path / "bandit.json").exists()
    assert result.details["files_scanned"] > 100 and result.details["errors"] == []
    ours = [f for f in result.details["findings"] if f["file"].startswith(GATE_FILES)]
    assert ours == []


def test_bandit_catches_an_insecure_snippet(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "app").mkdir(parents=True)
    (source / "app" / "runner.py").write_text(
        "import subprocess\n\n\ndef run(user_input: str) -> None:\n"
        "    subprocess.call(user_input, shell=True)\n"
    )
    result = bandit.scan(source, tmp_path)
    assert not result.passed
    assert [f["rule"] for f in result.details["findings"]] == ["B602"]


def test_bandit_fails_on_files_it_could_not_parse(tmp_path: Path) -> None:
    import shutil

    source = tmp_path / "src"
    shutil.copytree(REPO_ROOT / "app", source / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", source / "pyproject.toml")
    # One invalid UTF-8 byte hides a call bandit rates HIGH; a syntax error hides the whole module.
    (source / "app" / "immune_core" / "badbyte.py").write_bytes(
        b"import subprocess\n\n\ndef run(cmd: str) -> None:\n    # caf\xe9\n"
        b"    subprocess.call(cmd, shell=True)\n"
    )
    (source / "app" / "immune_core" / "broken.py").write_text("def broken(:\n    pass\n")
    result = bandit.scan(source, tmp_path / "out")
    assert not result.passed
    assert {e["file"] for e in result.details["errors"]} == {
        "app/immune_core/badbyte.py",
        "app/immune_core/broken.py",
    }
    assert result.error and "badbyte.py" in result.error and "broken.py" in result.error
    verdict = run_security_gate(source, tmp_path / "gate", None, None, lambda *a, **k: None)
    assert verdict.status is Status.FAIL and "bandit" in verdict.summary and "badbyte.py" in verdict.summary


def test_bandit_that_scanned_nothing_fails() -> None:
    empty = bandit.judge({"results": [], "errors": [], "metrics": {"_totals": {"loc": 0}}}, ["app"], [])
    assert not empty.passed and empty.error and "no Python file scanned" in empty.error


# --- pip-audit ----------------------------------------------------------------------------------------


def test_osv_range_semantics() -> None:
    advisory = {
        "id": "X",
        "affected": [
            {
                "package": {"name": "Demo_Pkg", "ecosystem": "PyPI"},
                "ranges": [
                    {
                        "type": "ECOSYSTEM",
                        "events": [
                            {"introduced": "1.0"},
                            {"fixed": "1.4"},
                            {"introduced": "2.0"},
                            {"last_affected": "2.1"},
                        ],
                    }
                ],
            }
        ],
    }
    assert affects(advisory, "demo-pkg", "1.0")
    assert affects(advisory, "demo.pkg", "1.3.9")
    assert not affects(advisory, "demo-pkg", "1.4")
    assert not affects(advisory, "demo-pkg", "0.9")
    assert affects(advisory, "demo-pkg", "2.1")
    assert not affects(advisory, "demo-pkg", "2.1.1")
    assert not affects({**advisory, "withdrawn": "2024-01-01T00:00:00Z"}, "demo-pkg", "1.0")
    listed = {
        "id": "Y",
        "affected": [{"package": {"name": "p", "ecosystem": "PyPI"}, "versions": ["0.5rc1"]}],
    }
    assert affects(listed, "p", "0.5rc1") and not affects(listed, "p", "0.5")


def test_snapshot_endpoint_answers_like_osv() -> None:
    import httpx

    snapshot = locate_advisory_db(REPO_ROOT)
    assert snapshot.path == REPO_ROOT / SNAPSHOT_FILE  # the vendored one: no ../shared needed
    with serve_osv(snapshot) as url:
        package = {"name": "requests", "ecosystem": "PyPI"}
        hit = httpx.post(url, json={"package": package, "version": "2.19.0"})
        miss = httpx.post(url, json={"package": package, "version": "2.32.3"})
    assert "PYSEC-2018-28" in {v["id"] for v in hit.json()["vulns"]}
    assert miss.json() == {}


def test_pip_audit_passes_the_locked_dependencies(tmp_path: Path) -> None:
    result = pip_audit.scan(REPO_ROOT, tmp_path, today=TODAY)
    assert result.error is None, result.error
    snapshot = locate_advisory_db(REPO_ROOT)
    assert result.details["source"]["snapshot_date"] == snapshot.date.isoformat()
    assert f"local snapshot of {snapshot.date.isoformat()}" in result.summary  # the date is printed
    # Every entry of both locks came back audited, and the lock that ships is hashed throughout.
    shipped = read_lock(REPO_ROOT / "requirements.lock", "ships")
    locks = result.details["locks"]
    assert locks["requirements.lock"]["audited"] == len(shipped.entries) > 30
    assert locks["requirements-dev.lock"]["audited"] == locks["requirements-dev.lock"]["entries"] > 100
    assert result.details["not_audited"] == []
    assert result.passed, result.details["vulnerabilities"]
    if (TODAY - snapshot.date).days > 90:  # an old snapshot passes only as an accepted, visible warning
        assert result.details["source"]["stale_accepted"]["reason"]
        assert result.warnings and "ACCEPTED" in result.warnings[0]


def _hashed(line: str) -> str:
    return f"{line} --hash=sha256:{'0' * 64}\n"


def test_pip_audit_catches_a_vulnerable_pin(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "requirements.lock").write_text(_hashed("requests==2.19.0"))
    result = pip_audit.scan(source, tmp_path, today=FRESH)
    assert not result.passed
    assert {v["id"] for v in result.details["vulnerabilities"]} >= {"PYSEC-2018-28"}


def test_a_lock_entry_pip_audit_did_not_audit_fails(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    # pip-audit drops an entry whose marker does not hold here: it ships on Windows, unaudited.
    (source / "requirements.lock").write_text(
        _hashed("idna==3.20") + _hashed('colorama==0.4.6 ; sys_platform == "win32"')
    )
    result = pip_audit.scan(source, tmp_path, today=FRESH)
    assert result.error is None, result.error
    assert not result.passed
    assert result.details["not_audited"] == ["colorama==0.4.6"]
    assert "1 lock entries not audited: colorama==0.4.6" in result.summary
    assert result.details["locks"]["requirements.lock"] == {
        "role": "ships",
        "entries": 2,
        "audited": 1,
        "not_audited": ["colorama==0.4.6"],
    }


def test_a_lock_that_ships_without_hashes_fails(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "requirements.lock").write_text(_hashed("idna==3.20") + "certifi==2026.10.19.post1\n")
    result = pip_audit.scan(source, tmp_path, today=FRESH)
    assert not result.passed and result.details["unhashed"] == ["certifi"]
    assert result.error and "without --hash: certifi" in result.error
    (source / "requirements.lock").write_text(_hashed("idna==3.20") + _hashed("certifi==2026.10.19.post1"))
    assert pip_audit.scan(source, tmp_path, today=FRESH).passed


def test_a_lock_entry_that_is_not_pinned_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "requirements.lock"
    path.write_text("idna>=3\n")
    with pytest.raises(ValueError, match="not pinned to one exact version"):
        read_lock(path, "ships")
    path.write_text(_hashed("idna==3.20") + _hashed("IDNA==3.20"))
    with pytest.raises(ValueError, match="appears twice"):
        read_lock(path, "ships")


def test_reviewed_ignores_apply_until_they_expire(tmp_path: Path) -> None:
    report = {
        "dependencies": [
            {
                "name": "requests",
                "version": "2.19.0",
                "vulns": [{"id": "PYSEC-2018-28", "aliases": ["CVE-2018-18074"], "fix_versions": ["2.20.0"]}],
            }
        ]
    }
    ignore = ReviewedIgnore(
        "CVE-2018-18074", "requests", "only talks to our own https endpoints", date(2026, 6, 30)
    )
    before = judge(report, [ignore], date(2026, 6, 30), {"service": "test"}, [])
    after = judge(report, [ignore], date(2026, 7, 1), {"service": "test"}, [])
    assert before.passed and before.details["ignored"][0]["id"] == "PYSEC-2018-28"
    assert not after.passed and after.details["expired_ignores"][0]["expired_on"] == "2026-06-30"


def test_an_ignore_without_reason_or_expiry_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "ignores.yaml"
    path.write_text("ignores:\n  - {id: PYSEC-1, package: x, reason: fine}\n")
    with pytest.raises(ValueError, match="expires"):
        load_ignores(path)
    path.write_text("ignores:\n  - {id: PYSEC-1, package: x, reason: ' ', expires: 2030-01-01}\n")
    with pytest.raises(ValueError, match="empty reason"):
        load_ignores(path)
    assert load_ignores(REPO_ROOT / "security" / "pip-audit-ignores.yaml") is not None


# --- detect-secrets ------------------------------------------------------------------------------------


def test_detect_secrets_runs_against_the_repository_baseline(tmp_path: Path) -> None:
    result = secrets.scan(REPO_ROOT, tmp_path)
    assert result.error is None, result.error
    assert result.details["confirmed_real"] == []


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def test_detect_secrets_catches_a_planted_secret(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    _git(source, "init", "-q")
    (source / "settings.py").write_text("TIMEOUT_S = 5\n")
    _git(source, "add", ".")
    baseline = subprocess.run(
        [sys.executable, "-m", "detect_secrets", "scan"],
        cwd=source,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    (source / ".secrets.baseline").write_text(baseline)
    clean = secrets.scan(source, tmp_path / "clean")
    assert clean.passed, clean.summary
    key_header = "-----BEGIN " + "RSA PRIVATE KEY-----"  # split so this file holds no key header itself
    (source / "deploy.py").write_text(f'KEY = """{key_header}\nMIIEow...\n"""\n')
    _git(source, "add", "deploy.py")
    dirty = secrets.scan(source, tmp_path / "dirty")
    assert not dirty.passed
    assert dirty.details["new"] == [{"file": "deploy.py", "line": 1, "type": "Private Key"}]
    # The candidate's own baseline was not rewritten by the scan.
    assert (source / ".secrets.baseline").read_text() == baseline


# --- schemathesis --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_schemathesis_fuzzes_a_running_service(
    mini_service: RunningService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(schemathesis.MAX_EXAMPLES_ENV, "10")
    result = schemathesis.scan(mini_service.url, mini_service.token, tmp_path)
    assert result.error is None, result.error
    assert result.passed, result.details
    assert result.details["operations"]["tested"] >= 5
    assert mini_service.token not in (tmp_path / "schemathesis.log").read_text()


@pytest.mark.slow
def test_schemathesis_reports_server_errors(
    start_mini_service: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(schemathesis.MAX_EXAMPLES_ENV, "5")
    service = start_mini_service(error_ratio=1.0)  # type: ignore[operator]
    result = schemathesis.scan(service.url, service.token, tmp_path)
    assert result.error is None, result.error
    assert not result.passed and result.findings


# --- the gate as a whole -------------------------------------------------------------------------------


def test_a_tool_that_cannot_run_fails_the_gate(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    verdict = run_security_gate(empty, tmp_path / "out", None, None, lambda *a, **k: None)
    assert verdict.status is Status.FAIL
    tools = verdict.details["tools"]
    assert all(tools[t]["error"] for t in ("bandit", "pip-audit", "detect-secrets", "checkov"))
    assert all(m.value is None and not m.passed for m in verdict.measurements)
    json.dumps(verdict.to_dict())  # the record stores it as JSON


# --- checkov ----------------------------------------------------------------------------------------------


def _tree_for_checkov(tmp_path: Path) -> Path:
    import shutil

    source = tmp_path / "candidate"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("infra", "security/checkov", "scripts"):
        shutil.copytree(REPO_ROOT / part, source / part, ignore=ignore)
    (source / "app").mkdir()
    shutil.copy(REPO_ROOT / "app" / "Dockerfile", source / "app" / "Dockerfile")
    for stack_file in REPO_ROOT.glob("Pulumi*.yaml"):
        shutil.copy(stack_file, source / stack_file.name)
    return source


@pytest.mark.slow
def test_checkov_passes_the_rendered_stacks_and_the_dockerfile(tmp_path: Path) -> None:
    # A hidden directory on the way, like the default state dir under ~/.local: checkov must still scan.
    result = checkov.scan(_tree_for_checkov(tmp_path), tmp_path / ".local" / "out")
    assert result.error is None, result.error
    assert result.passed, result.details
    assert result.details["manifests"] > 10
    scanned = result.details["results"]["kubernetes"]["resources"]
    assert scanned >= result.details["expected"]["resources"] > 10
    assert any(a.kind == "sarif" for a in result.artifacts)


@pytest.mark.slow
def test_checkov_catches_a_dockerfile_that_ends_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _tree_for_checkov(tmp_path)
    dockerfile = source / "app" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "\nUSER root\n")
    monkeypatch.chdir(tmp_path)  # a relative output directory, as `--out out/security` gives it
    result = checkov.scan(source, Path("out"))
    assert result.error is None, result.error
    assert not result.passed
    failed = {c["id"] for c in result.details["results"]["dockerfile"]["failed_checks"]}
    assert "CKV_DOCKER_8" in failed


@pytest.mark.slow
def test_checkov_fails_when_it_scanned_fewer_resources_than_were_rendered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    render = checkov.render_manifests

    def render_with_one_hidden(source_dir: Path, out_dir: Path) -> list[Path]:
        manifests = render(source_dir, out_dir, stacks=("staging",))
        # checkov skips files under a hidden directory without a word: this Deployment goes unchecked.
        victim = next(p for p in manifests if p.name.startswith("deployment-"))
        hidden = victim.parent / ".hidden" / victim.name
        hidden.parent.mkdir()
        victim.rename(hidden)
        return sorted((out_dir / "manifests").rglob("*.y*ml"))

    monkeypatch.setattr(checkov, "render_manifests", render_with_one_hidden)
    result = checkov.scan(_tree_for_checkov(tmp_path), tmp_path / "out")
    assert not result.passed
    assert result.error and "fewer than the" in result.error
    assert result.details["results"]["kubernetes"]["resources"] == result.details["expected"]["resources"] - 2


def test_checkov_expects_each_object_and_each_pod_template(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "kind: Deployment\nspec: {template: {spec: {containers: []}}}\n---\nkind: Service\n"
        "---\n# a comment only\n"
    )
    assert checkov.expected_resources([manifest]) == {"objects": 2, "pod_templates": 1, "resources": 3}


def test_checkov_without_a_renderable_program_fails(tmp_path: Path) -> None:
    source = _tree_for_checkov(tmp_path)
    (source / "infra" / "immune_infra" / "render.py").unlink()
    result = checkov.scan(source, tmp_path / "out")
    assert not result.passed and result.error and "cannot render" in result.error


@pytest.mark.slow
def test_api_fuzz_gate_alone(
    mini_service: RunningService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from immune_suite.gates.security import run_api_fuzz

    monkeypatch.setenv(schemathesis.MAX_EXAMPLES_ENV, "5")
    verdict = run_api_fuzz(mini_service.url, mini_service.token, tmp_path, lambda *a, **k: None)
    assert verdict.status is Status.PASS, verdict.summary
    assert verdict.gate == "api-fuzz"
    assert [m.name for m in verdict.measurements] == ["schemathesis findings"]
    assert verdict.details["tools"]["schemathesis"]["positive_cases"]["accepted"] > 0


def test_the_pipeline_fuzzes_with_the_one_api_fuzz_gate() -> None:
    from immune_suite.gates.security import run_api_fuzz
    from immune_suite.pipeline.gates import default_gates

    assert default_gates().fuzz is run_api_fuzz


class _RejectingApi:
    """A real HTTP API on a free port that answers 400 to every request but its OpenAPI document."""

    SPEC: ClassVar[dict[str, object]] = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/items": {
                "get": {
                    "parameters": [
                        {"name": "q", "in": "query", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": {"description": "refused"},
                    },
                }
            }
        },
    }

    def __enter__(self) -> str:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        spec = json.dumps(self.SPEC).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body, code = (spec, 200) if self.path == "/openapi.json" else (b'{"detail": "no"}', 400)
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_schemathesis_fails_when_every_positive_case_is_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(schemathesis.MAX_EXAMPLES_ENV, "5")
    with _RejectingApi() as url:
        result = schemathesis.scan(url, None, tmp_path)
    assert not result.passed
    assert result.error and "every positive case was rejected" in result.error
    assert result.details["positive_cases"]["accepted"] == 0 < result.details["positive_cases"]["rejected"]


def test_schemathesis_without_operations_or_positive_cases_fails() -> None:
    complete = {"complete": True, "stop_reason": "completed", "test_cases": {"generated": 3}}
    none_tested = schemathesis.judge({**complete, "operations": {"tested": 0}}, [])
    assert not none_tested.passed and "0 operations tested" in (none_tested.error or "")
    no_positive = schemathesis.judge(
        {
            **complete,
            "operations": {"tested": 2},
            "valid_rates": {"GET /a": {"coverage": {"accepted": 0, "rejected": 0}}},
        },
        [],
    )
    assert not no_positive.passed and "no positive" in (no_positive.error or "")
    good = schemathesis.judge(
        {
            **complete,
            "operations": {"tested": 1},
            "valid_rates": {"GET /a": {"coverage": {"accepted": 2, "rejected": 1}}},
        },
        [],
    )
    assert good.passed and good.details["positive_cases"]["accepted"] == 2
