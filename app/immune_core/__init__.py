"""Active Immune Core: a bio-inspired threat-detection service."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("active-immune-core")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
