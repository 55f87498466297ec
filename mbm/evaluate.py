"""``python -m mbm.evaluate --scenario NAME ...``: the entry point of every scenario's evaluate.

The scenario registry (:mod:`mbm.scenarios`) says which function serves each scenario; this module
only picks it (an unknown scenario is a usage error listing the registered ones).

    python -m mbm.evaluate --scenario voice_control --data ../shared/data
"""

from __future__ import annotations

from mbm.cli import run_scenario_command


def main(argv: list[str] | None = None):
    """Run the evaluate entry point of ``--scenario``; returns what it returns."""
    return run_scenario_command("evaluate", argv, "Evaluate a scenario's checkpoint (mbm.scenarios lists them).")


if __name__ == "__main__":
    main()
