"""Where things live in the repository: the one definition of the repository root and the folders under it.

Every module that reads a file of the repository (stack configs, the locustfile, chaos experiments,
scripts) takes its path from here, so a move of a folder is a change of one line.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
STACKS_DIR = REPO_ROOT / "stacks"
SCRIPTS_DIR = REPO_ROOT / "scripts"
SERVICES_DIR = SCRIPTS_DIR / "services"
PULUMI_ENGINE_SCRIPT = SCRIPTS_DIR / "pulumi-engine.sh"
LOAD_DIR = REPO_ROOT / "load"
LOCUSTFILE = LOAD_DIR / "locustfile.py"
LOAD_THRESHOLDS = LOAD_DIR / "thresholds.yaml"
CHAOS_DIR = REPO_ROOT / "chaos"
CHAOS_EXPERIMENTS_DIR = CHAOS_DIR / "experiments"
