"""What every command-line entry point shares: which scenario a command is for, and its output."""

from __future__ import annotations

import argparse
import json
import sys

from mbm.scenarios import SCENARIOS


def run_scenario_command(which: str, argv: list[str] | None, description: str):
    """``python -m mbm.<which> --scenario NAME ...``: hand ``argv`` to that scenario's entry point.

    ``which`` is a field of :class:`mbm.scenarios.Scenario` (``"train"`` or ``"evaluate"``); a
    missing or unknown scenario is argparse's usage error listing the registered ones, and ``--help``
    says what each one takes and answers (``Scenario.describe``).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    chooser = argparse.ArgumentParser(description=description, add_help=False,
                                      formatter_class=argparse.RawDescriptionHelpFormatter,
                                      epilog="scenarios:\n" + "\n".join(f"  {s.describe()}" for s in SCENARIOS.values()))
    chooser.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    if argv in ([], ["-h"], ["--help"]):
        chooser.print_help()
        raise SystemExit(0 if argv else 2)
    name = chooser.parse_known_args(argv)[0].scenario
    return SCENARIOS[name].part(which)(argv)


def print_result(result: dict, as_json: bool) -> None:
    """One JSON object on stdout, or one ``key: value`` line per metric."""
    if as_json:
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


def read_recipe(parser: argparse.ArgumentParser, path) -> None:
    """Make a scenario's shipped recipe (a JSON object: option -> value) the defaults of ``parser``.

    Options given on the command line override single values; an unknown option in the file is a
    usage error naming it.
    """
    from pathlib import Path

    recipe = json.loads(Path(path).read_text(encoding="utf-8"))
    known = {a.dest for a in parser._actions}
    unknown = sorted(k for k in recipe if k not in known and k != "about")
    if unknown:
        parser.error(f"{path}: unknown recipe options {unknown}")
    parser.set_defaults(**{k: v for k, v in recipe.items() if k != "about"})
