"""``python -m mbm.train --scenario NAME ...``: the entry point of every scenario's train.

The scenario registry (:mod:`mbm.scenarios`) says which function serves each scenario; this module
only picks it (an unknown scenario is a usage error listing the registered ones).

    python -m mbm.train --scenario voice_control --data ../shared/data
    torchrun --standalone --nproc_per_node=2 -m mbm.train --scenario voice_control --data DIR   # DDP
"""

from __future__ import annotations

from mbm.cli import run_scenario_command


def main(argv: list[str] | None = None):
    """Run the train entry point of ``--scenario``; returns what it returns."""
    return run_scenario_command("train", argv, "Train a scenario's model (mbm.scenarios lists them).")


if __name__ == "__main__":
    main()
