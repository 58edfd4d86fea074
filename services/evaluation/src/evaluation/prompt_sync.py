"""Register data/prompts/*.yaml in the MLflow Prompt Registry; a new version only when the content changed.

    technoshare-sync-prompts                      # MLFLOW_TRACKING_URI, else http://127.0.0.1:5000
    technoshare-sync-prompts --tracking-uri http://mlflow:5000 --prompts-dir data/prompts

Prints each prompt's name, version and content hash. A prompt that has no `prod` alias yet gets one on
the version just synced, so a new registry serves the pipeline at once; after that, aliases move
only with technoshare-prompt-alias (or technoshare-eval --promote).
"""

import argparse
import os
from pathlib import Path

from composer.prompts import PromptRegistry, load_local_prompts
from technoshare_common.settings import REPO_DATA_DIR


def main(argv: list[str] | None = None) -> int:
    """The `technoshare-sync-prompts` command (make up runs it, and so does the chart's prompt-sync hook Job)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"))
    data_dir = Path(os.environ.get("TECHNOSHARE_DATA_DIR", REPO_DATA_DIR))  # images set it; a checkout has data/
    parser.add_argument("--prompts-dir", type=Path, default=data_dir / "prompts")
    parser.add_argument("--message", default="synced from data/prompts")
    args = parser.parse_args(argv)
    registry = PromptRegistry(args.tracking_uri)
    print(f"{'prompt':<26} {'version':>7}  {'hash':<12}  {'change':<10}  prod")
    for name, prompt in load_local_prompts(args.prompts_dir).items():
        version, registered = registry.sync(prompt, args.message)
        prod = registry.alias_version(name, "prod")
        if prod is None:
            registry.set_alias(name, "prod", int(version))
            prod = version
        change = "registered" if registered else "unchanged"
        print(f"{name:<26} {version:>7}  {prompt.content_hash:<12}  {change:<10}  {prod}")
    return 0
