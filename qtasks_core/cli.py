"""The ``qtasks`` command line."""

from __future__ import annotations


def main() -> None:
    raise SystemExit("qtasks: the CLI is not built yet")
