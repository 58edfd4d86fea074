"""Set, move or show the aliases (`prod`, `staging`, `candidate`) of prompts in the MLflow Prompt Registry.

technoshare-prompt-alias show stage_b_compose_reply
technoshare-prompt-alias set stage_b_compose_reply candidate 4
technoshare-prompt-alias set stage_b_compose_reply prod 4      # composer follows within its TTL
"""

import argparse
import os

from composer.prompts import PromptRegistry

ALIASES = ("prod", "staging", "candidate")


def main(argv: list[str] | None = None) -> int:
    """The `technoshare-prompt-alias` command: aliases move by hand, or with technoshare-eval --promote."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"))
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show", help="the version each alias points at")
    show.add_argument("name")
    move = commands.add_parser("set", help="point an alias at a version")
    move.add_argument("name")
    move.add_argument("alias")
    move.add_argument("version", type=int)
    args = parser.parse_args(argv)
    registry = PromptRegistry(args.tracking_uri)
    if args.command == "set":
        before = registry.alias_version(args.name, args.alias)
        registry.set_alias(args.name, args.alias, args.version)
        print(f"{args.name}@{args.alias}: {before or '(unset)'} -> {args.version}")
        return 0
    for alias in ALIASES:
        print(f"{args.name}@{alias}: {registry.alias_version(args.name, alias) or '(unset)'}")
    return 0
