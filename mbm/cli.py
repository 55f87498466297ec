"""What every command-line entry point shares: which scenario a command is for, and its output."""

from __future__ import annotations

import argparse
import json
import sys

SCENARIOS = ("voice_control", "portrait")  # every scenario with a trained checkpoint


def scenario_of(argv: list[str]) -> str | None:
    """The ``--scenario`` value in ``argv`` (None if absent or not a scenario); the rest is left alone."""
    chooser = argparse.ArgumentParser(add_help=False)
    chooser.add_argument("--scenario")
    value = chooser.parse_known_args(argv)[0].scenario
    return value if value in SCENARIOS else None


def print_result(result: dict, as_json: bool) -> None:
    """One JSON object on stdout, or one ``key: value`` line per metric."""
    if as_json:
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
