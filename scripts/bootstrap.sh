#!/usr/bin/env bash
# Creates the project's virtualenv (.venv) when missing and installs the project into it (`-e '.[dev]'`)
# only when pyproject.toml changed since the last successful install (a sha256 stamp kept inside the venv).
# The installer is uv (pinned below, in its own venv cached outside the repo by version): with a warm
# cache it sets up the venv in ~25 s where pip took 3-6 min on two cores, which every fresh clone pays.
# Silent when there is nothing to do. PYTHON picks the interpreter (3.11+), IMMUNE_VENV the location.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${IMMUNE_VENV:-$root/.venv}"
stamp="$venv/.pyproject.sha256"

pick_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.12 python3.11 python3; do
        [[ -n "$candidate" ]] || continue
        command -v "$candidate" >/dev/null || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    echo "bootstrap: Python 3.11 or newer is required (set PYTHON)" >&2
    return 1
}

UV_VERSION=0.13.9
uv_home="${XDG_CACHE_HOME:-$HOME/.cache}/active-immune-core/uv-$UV_VERSION"

# ensure_uv: prints the path of the pinned uv, installing it (from PyPI, into its own venv) when missing.
ensure_uv() {
    if [[ ! -x "$uv_home/bin/uv" ]]; then
        echo "bootstrap: installing uv $UV_VERSION into $uv_home" >&2
        rm -rf "$uv_home"
        "$(pick_python)" -m venv "$uv_home" >&2
        "$uv_home/bin/python" -m pip install -q "uv==$UV_VERSION" >&2
    fi
    printf '%s\n' "$uv_home/bin/uv"
}

bootstrap() {
    local uv
    # IMMUNE_UV: another uv binary (the tests pass a stand-in that records its arguments).
    uv="${IMMUNE_UV:-$(ensure_uv)}"
    if [[ ! -x "$venv/bin/python" ]]; then
        echo "bootstrap: creating $venv" >&2
        # --seed: pip in the venv, for the tests that build a release's own venv with it.
        "$uv" venv -q --seed --allow-existing -p "$(command -v "$(pick_python)")" "$venv"
    fi
    local wanted
    wanted="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
    [[ "$(cat "$stamp" 2>/dev/null || true)" == "$wanted" ]] && return 0
    echo "bootstrap: installing the project into $venv (pyproject.toml changed)" >&2
    # Build-backend chatter goes to a log that is shown only when the install fails.
    if ! "$uv" pip install -q --python "$venv/bin/python" -e "${root}[dev]" >"$venv/.bootstrap.log" 2>&1; then
        tail -n 40 "$venv/.bootstrap.log" >&2
        echo "bootstrap: uv pip install failed (full log: $venv/.bootstrap.log)" >&2
        return 1
    fi
    printf '%s\n' "$wanted" >"$stamp"
}

# One bootstrap at a time: parallel test sessions may call this together.
mkdir -p "$venv"
(
    flock -w 1800 9 || { echo "bootstrap: timed out waiting for $venv/.bootstrap.lock" >&2; exit 1; }
    bootstrap
) 9>"$venv/.bootstrap.lock"
