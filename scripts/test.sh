#!/usr/bin/env bash
# The project's test command (README line 2, called by .ci/run): sets up everything it needs, then runs
# the linters and every test against real PostgreSQL, Redis, Kafka, Prometheus and the Pulumi engine.
#   bash scripts/test.sh                  the full run, in phases (below)
#   bash scripts/test.sh <pytest args>    setup + lint, then ONE pytest invocation with those args
# IMMUNE_SKIP_ENGINE=1 skips building the Pulumi engine (and its tests skip, saying so).
# IMMUNE_MAIN_SERIAL=beside runs main-serial beside main instead of after it (faster, for a machine with room).
#
# Phases of the full run. The slow builds overlap the tests that need none of them: on a cold machine
# the engine's Go build (~30 min on 2 idle cores) would otherwise come before the first test.
#   build   the Pulumi engine starts in the BACKGROUND at once (log: out/logs/pulumi-engine.log), niced
#           so that the tests, which wait on real deadlines, keep the CPU they need
#   setup   venv, haproxy, the shared services, checkov; lint
#   main    pytest -m "not engine and not cluster and not serial"                  -> out/junit-main.xml
#   main-serial  after main (IMMUNE_MAIN_SERIAL=beside: beside it, main then niced 5) and after the
#           background builds: pytest -m "serial and not engine and not cluster", the tests that judge real
#           latencies, load windows or recovery deadlines (marker `serial`)  -> out/junit-main-serial.xml
#   beside those, niced (nice 10), side by side (log: out/logs/later-phases.log, shown at the end):
#   engine  waits for the build (its log tail on failure), then pytest -m engine   -> out/junit-engine.xml
#   cluster waits for the engine, `cluster.sh build` + `images.sh build` (started in the background with
#           the engine), then `cluster.sh up` once and pytest -m cluster in streams on that cluster
#           (cluster_phase below): images push, pulumi up staging+prod, smoke through the router,
#           promotions, idempotence, destroy, cluster down (tests/cluster/)
#           -> out/junit-cluster-{staging,rest,last}.xml
# Every phase runs even when an earlier one failed (one CI run shows every failure); any failing phase
# fails the run, and a phase that collects nothing (pytest exit 5) is a failure too. Timings are printed
# at the end and written to out/phases.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

mkdir -p out/logs

# ruff check, ruff format --check, mypy --strict (service, suite, gate tools, Pulumi program).
lint() {
  .venv/bin/ruff check . &&
    .venv/bin/ruff format --check . &&
    .venv/bin/mypy --strict app/immune_core immune_suite chaos/immune_chaos load/immune_load load/locustfile.py \
      infra/immune_infra infra/__main__.py &&
    # A second run: the policy pack's entry point is also a `__main__` module, which one run cannot hold twice.
    .venv/bin/mypy --strict infra/policy_pack/__main__.py
}

skip_engine="${IMMUNE_SKIP_ENGINE:-0}"

# ---- targeted run: as before, one pytest invocation with the caller's arguments --------------------------
if [ "$#" -gt 0 ]; then
  step "python environment"
  bash scripts/bootstrap.sh
  step "haproxy (the local stack's Ingress)"
  bash scripts/ensure-haproxy.sh
  step "local services: postgres redis kafka prometheus"
  bash scripts/services/up.sh postgres redis kafka prometheus >/dev/null
  if [ "$skip_engine" != "1" ]; then
    step "pulumi engine (built from Go modules, cached)"
    bash scripts/pulumi-engine.sh build
  fi
  step "checkov (own virtualenv, cached)"
  bash scripts/checkov.sh install
  step "actionlint (Go module, cached)"
  bash scripts/actionlint.sh >/dev/null
  step "lint: ruff check, ruff format --check, mypy --strict (service, suite, gate tools, Pulumi program)"
  lint
  step "pytest $*"
  set +e
  .venv/bin/python -m pytest -p no:cacheprovider --junitxml=out/junit.xml "$@"
  rc=$?
  set -e
  # pytest exits 5 when it collected nothing: that is a failure here, not a pass (the code is passed on).
  exit "$rc"
fi

# ---- full run, in phases ---------------------------------------------------------------------------------
run_start=$SECONDS
failed=0
summary=()

# record NAME START RC: one line of the timing summary; a non-zero RC fails the run.
record() {
  local verdict=ok
  if [ "$3" -ne 0 ]; then verdict="FAILED (exit $3)"; failed=1; fi
  summary+=("$(printf '%-13s %6ss  %s' "$1" "$(($SECONDS - $2))" "$verdict")")
}

# phase NAME CMD...: runs CMD, records its time and exit code without stopping the run.
phase() {
  local name="$1" start=$SECONDS rc=0
  shift
  step "$name: $*"
  "$@" || rc=$?
  record "$name" "$start" "$rc"
  return 0
}

# pytest_phase NAME MARK-EXPRESSION [pytest args]: one pytest run with its own JUnit XML (exit 5, nothing
# collected, fails), at niceness PYTEST_NICE (default 0, relative to the caller's).
pytest_phase() {
  phase "$1" nice -n "${PYTEST_NICE:-0}" .venv/bin/python -m pytest -p no:cacheprovider --durations=25 \
    --junitxml="out/junit-$1.xml" -m "$2" "${@:3}"
}

# pytest-xdist workers for the main and engine phases (IMMUNE_TEST_WORKERS=2: `-n 2 --dist loadgroup`; tests
# that share a module-scoped fixture stay on one worker, tests/conftest.py). One by default: 2 cores are
# shared with the engine and cluster phases (docs/architecture.md). main-serial never gets workers.
workers="${IMMUNE_TEST_WORKERS:-1}"
# main-serial runs after main (default) or, with IMMUNE_MAIN_SERIAL=beside, beside it: ~8 min faster when
# warm, but on 2 cores the timing-judging tests then share the CPU with main's outage and chaos tests, whose
# services detach into their own sessions (kernel autogroups), where `nice` does not reach them.
serial_mode="${IMMUNE_MAIN_SERIAL:-after}"
case "$serial_mode" in beside | after) ;; *) echo "IMMUNE_MAIN_SERIAL must be beside or after, not '$serial_mode'" >&2; exit 2 ;; esac
parallel=()
if [ "$workers" -gt 1 ]; then parallel=(-n "$workers" --dist loadgroup); fi

# bg NAME CMD...: starts CMD in the background, its output in out/logs/NAME.log and its exit code in
# out/logs/NAME.rc; bg_wait NAME waits for that file (so a background subshell can wait too, which `wait`
# cannot do for its parent's children) and shows the log's tail when it failed.
bg() {
  local name="$1"
  shift
  rm -f "out/logs/$name.rc"
  ( rc=0; "$@" >"out/logs/$name.log" 2>&1 || rc=$?; echo "$rc" >"out/logs/$name.rc" ) &
}
bg_wait() {
  local rc
  while [ ! -s "out/logs/$1.rc" ]; do sleep 2; done
  rc=$(cat "out/logs/$1.rc")
  if [ "$rc" -ne 0 ]; then
    echo "$1 FAILED (exit $rc); last lines of out/logs/$1.log:" >&2
    tail -n 40 "out/logs/$1.log" >&2
  fi
  return "$rc"
}

engine_start=$SECONDS
if [ "$skip_engine" != "1" ]; then
  step "build: pulumi engine in the background (log: out/logs/pulumi-engine.log)"
  bg pulumi-engine nice -n 10 bash scripts/pulumi-engine.sh build
fi
# The local Kubernetes cluster's binaries (scripts/cluster.sh build, cached by version), its router and the images
# (scripts/images.sh, cached) build next to it; the cluster phase waits for both.
cluster_start=$SECONDS
# The router (Traefik, a Go build of ~9 min cold) too: left to `cluster.sh up` it would be built inside the
# cluster tests' first fixture, past that test's timeout.
bg cluster-build nice -n 10 bash -c 'bash scripts/cluster.sh build && bash cluster/router/router.sh build'
bg images-build nice -n 10 bash -c 'bash scripts/images.sh up && bash scripts/images.sh build'

# The setup steps need nothing from each other: the services and checkov install (cold: Kafka's and
# checkov's downloads) while the project's venv does.
setup() {
  step "setup: haproxy + local services (postgres redis kafka prometheus), checkov (own venv), python venv"
  # The services are started here so a broken install fails fast; the tests take the URLs from their fixtures.
  bg services bash -c 'bash scripts/ensure-haproxy.sh && bash scripts/services/up.sh postgres redis kafka prometheus >/dev/null'
  bg checkov bash scripts/checkov.sh install
  bg actionlint bash scripts/actionlint.sh
  local rc=0
  bash scripts/bootstrap.sh || rc=$?
  bg_wait services || rc=$?
  bg_wait checkov || rc=$?
  bg_wait actionlint || rc=$?
  return "$rc"
}

setup_start=$SECONDS
setup_rc=0
setup || setup_rc=$?
record setup "$setup_start" "$setup_rc"

# later_phases: the engine phase and the cluster phase, side by side once their builds are done. It runs
# BESIDE the main phases: on a warm machine the builds are cached and these phases (mostly waiting on
# pods and `pulumi up`) would otherwise come after main. Niced, so that main's tests, which measure real
# latencies, keep the CPU. Its output goes to out/logs/later-phases.log and is shown after main; its
# timings are appended to out/later-phases.txt (a subshell cannot add to `summary`).
later_phases() {
  renice -n 10 -p "$BASHPID" >/dev/null
  summary=()
  failed=0
  rm -f out/engine-phase.txt
  local engine_pid="" cluster_rc=0 engine_rc=0
  if [ "$skip_engine" != "1" ]; then
    step "build: waiting for the pulumi engine"
    bg_wait pulumi-engine || engine_rc=$?
    record build "$engine_start" "$engine_rc"
    if [ "$engine_rc" -eq 0 ]; then
      tail -n 1 out/logs/pulumi-engine.log
      engine_phase >out/logs/engine-phase.log 2>&1 &
      engine_pid=$!
    fi
  else
    # IMMUNE_SKIP_ENGINE=1: the engine tests run and skip, saying why (tests/support/engine.py).
    engine_phase >out/logs/engine-phase.log 2>&1 &
    engine_pid=$!
  fi

  # The local Kubernetes cluster, BESIDE the engine tests (they share nothing: the engine tests' Docker
  # daemon is private, with no bridge and no iptables rules, and its mounts live under pytest's temporary
  # directory, which the cluster's host snapshot leaves out): its tests' session fixture runs
  # `cluster.sh up` (which starts the images daemon and the router) and `down`; tests/cluster/ pushes the
  # images, runs `pulumi up` of staging and prod (scripts/cluster-deploy.sh), promotes through the
  # pipeline, smoke-tests through the router and destroys (per-step times: --durations). `pulumi up`
  # needs the engine, so a failed engine build fails this phase too.
  step "build: waiting for the cluster binaries and the images"
  bg_wait cluster-build || cluster_rc=$?
  bg_wait images-build || cluster_rc=$?
  record cluster-build "$cluster_start" "$cluster_rc"
  if [ "$cluster_rc" -eq 0 ] && [ "$engine_rc" -eq 0 ]; then
    cluster_phase
  elif [ "$cluster_rc" -eq 0 ]; then
    record cluster "$SECONDS" 1
  fi
  if [ -n "$engine_pid" ]; then
    collect "the engine tests" "$engine_pid" out/logs/engine-phase.log out/engine-phase.txt
  fi
  printf '%s\n' "${summary[@]}" >out/later-phases.txt
  return "$failed"
}

# The cluster tests in streams on ONE cluster (tests/cluster/shared.py): the staging stack's modules (they
# deploy, promote and destroy the same Pulumi stack, so one at a time) beside the prod stack's (test_deploy's
# prod half, test_traffic) and the modules that deploy no stack; then, alone, the modules that stop parts of the
# cluster (test_status kills the API server, test_teardown runs `down`). One stream after the other took
# about an hour on 2 cores; the staging stream is now the longest part.
CLUSTER_STAGING=(tests/cluster/test_chaos.py tests/cluster/test_deploy.py tests/cluster/test_promote.py)
CLUSTER_LAST=(tests/cluster/test_status.py tests/cluster/test_teardown.py)

# cluster_rest: every other module of tests/cluster/ (a new module runs there unless listed above).
cluster_rest() {
  local file listed
  for file in tests/cluster/test_*.py; do
    listed=0
    for other in "${CLUSTER_STAGING[@]}" "${CLUSTER_LAST[@]}"; do
      [ "$file" = "$other" ] && listed=1
    done
    if [ "$listed" -eq 0 ] || [ "$file" = tests/cluster/test_deploy.py ]; then echo "$file"; fi
  done
}

# cluster_stream NAME STACKS FILES...: one pytest run of the cluster phase, keeping only the STACKS ("" for
# all) of test_deploy.py's parameters; its timing line goes to out/NAME.txt (it may run in the background).
cluster_stream() {
  local name="$1" stacks="$2"
  shift 2
  summary=()
  failed=0
  IMMUNE_CLUSTER_STACKS="$stacks" pytest_phase "$name" "cluster" "$@"
  printf '%s\n' "${summary[@]}" >"out/$name.txt"
  return "$failed"
}

# cluster_phase: host snapshot and `cluster.sh up` once, the two streams side by side, the last modules,
# then `cluster.sh down` (again: test_teardown's `down` may not have been reached).
cluster_phase() {
  local start=$SECONDS rc=0 staging_pid rest=()
  step "cluster: host snapshot, cluster.sh up (shared by the cluster streams)"
  rm -f out/cluster-*.txt
  if ! .venv/bin/python -m tests.cluster.shared up out/cluster-host-before-up.json; then
    record cluster-up "$start" 1
    return 0
  fi
  record cluster-up "$start" 0
  export IMMUNE_SHARED_CLUSTER="$PWD/out/cluster-host-before-up.json"
  mapfile -t rest < <(cluster_rest)
  step "cluster streams: staging (log: out/logs/cluster-staging.log) beside the rest"
  cluster_stream cluster-staging staging "${CLUSTER_STAGING[@]}" >out/logs/cluster-staging.log 2>&1 &
  staging_pid=$!
  # In subshells: a stream's own `summary` and `failed` must not replace this phase's.
  (cluster_stream cluster-rest prod "${rest[@]}") || failed=1
  add_summary out/cluster-rest.txt
  collect "the staging stream" "$staging_pid" out/logs/cluster-staging.log out/cluster-staging.txt
  (cluster_stream cluster-last "" "${CLUSTER_LAST[@]}") || failed=1
  add_summary out/cluster-last.txt
  unset IMMUNE_SHARED_CLUSTER
  bash scripts/cluster.sh down >/dev/null 2>&1 || rc=$?
  record cluster "$start" "$rc"
}

# engine_phase: the Pulumi engine tests (one pytest run); its timing goes to out/engine-phase.txt.
engine_phase() {
  summary=()
  failed=0
  pytest_phase engine "engine and not cluster" "${parallel[@]}"
  printf '%s\n' "${summary[@]}" >out/engine-phase.txt
  return "$failed"
}

# wait_for_builds: until the background builds are over. On a cold machine the Go builds (engine, cluster)
# fill both cores for half an hour: latencies measured beside them judge the builds, not the candidate (a
# harmless canary was rolled back on a p95 of 1 s), so main-serial starts after them: seconds on a warm
# machine. Build failures are reported by later_phases.
wait_for_builds() {
  step "main-serial: waiting for the background builds"
  local build
  for build in cluster-build images-build; do
    while [ ! -s "out/logs/$build.rc" ]; do sleep 2; done
  done
  if [ "$skip_engine" != "1" ]; then
    while [ ! -s "out/logs/pulumi-engine.rc" ]; do sleep 2; done
  fi
}

# main_serial (IMMUNE_MAIN_SERIAL=beside): the tests marked `serial` (they judge real latencies, load
# windows or recovery deadlines), one at a time in one process at full priority, BESIDE main, which runs
# niced, so that whenever both want the CPU these win it. Its output goes to out/logs/main-serial.log,
# shown after main; its timing to out/main-serial.txt.
main_serial() {
  summary=()
  failed=0
  wait_for_builds
  pytest_phase main-serial "serial and not engine and not cluster"
  printf '%s\n' "${summary[@]}" >out/main-serial.txt
  return "$failed"
}

# add_summary FILE: the timing lines a background stream wrote, added to this run's summary.
add_summary() {
  if [ -f "$1" ]; then
    while IFS= read -r line; do summary+=("$line"); done <"$1"
  fi
}

# collect NAME PID LOG TIMINGS: waits for a background stream, shows its log, adds its timing lines to this
# run's summary; a failed stream fails the run.
collect() {
  local rc=0
  step "waiting for $1"
  wait "$2" || rc=$?
  cat "$3"
  add_summary "$4"
  [ "$rc" -eq 0 ] || failed=1
}

if [ "$setup_rc" -eq 0 ]; then
  phase lint lint  # ruff check, ruff format --check, mypy --strict (service, suite, gate tools, Pulumi program)
  step "engine and cluster phases in the background (log: out/logs/later-phases.log)"
  rm -f out/later-phases.txt out/main-serial.txt
  later_phases >out/logs/later-phases.log 2>&1 &
  later_pid=$!
  if [ "$serial_mode" = beside ]; then
    step "main-serial in the background (log: out/logs/main-serial.log)"
    main_serial >out/logs/main-serial.log 2>&1 &
    serial_pid=$!
    PYTEST_NICE=5 pytest_phase main "not engine and not cluster and not serial" "${parallel[@]}"
    collect main-serial "$serial_pid" out/logs/main-serial.log out/main-serial.txt
  else
    # IMMUNE_MAIN_SERIAL=after (the default): one after the other.
    pytest_phase main "not engine and not cluster and not serial" "${parallel[@]}"
    wait_for_builds
    pytest_phase main-serial "serial and not engine and not cluster"
  fi
  collect "the engine and cluster phases" "$later_pid" out/logs/later-phases.log out/later-phases.txt
else
  echo "setup failed: no lint, no tests" >&2
  # The engine build is left to finish (it is cached for the next run) but not waited for.
fi

summary+=("$(printf '%-13s %6ss  %s' total "$((SECONDS - run_start))" "$([ "$failed" -eq 0 ] && echo ok || echo FAILED)")")
step "phase timings"
printf '%s\n' "${summary[@]}" | tee out/phases.txt
exit "$failed"
