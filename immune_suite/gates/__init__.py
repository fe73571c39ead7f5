"""The promotion gates. Each runs its tool natively and returns one `immune_suite.verdict.Verdict`.

- `security.run_security_gate(source_dir, out_dir, base_url, token, progress)`: bandit, pip-audit,
  detect-secrets, checkov, schemathesis; `security.run_api_fuzz(base_url, token, out_dir,
  progress)` fuzzes a deployed candidate alone.
- `load.run_load(base_url, token, out_dir, shape, duration_s, progress)`: locust headless with
  k6-style thresholds; returns a `LoadRun` (verdict + samples per deployment colour).
- `chaos.run_chaos_gate(config, out_dir, experiments, progress)`: Chaos Toolkit experiments.

`python -m immune_suite.gates ...` runs one gate alone (see `__main__.py`).
"""
