"""Builds the seven images (`make images`) tagged with the git revision, which each image also records.

The base is PYTHON_IMAGE when set, else python:3.11-slim-bookworm when it is present or can be pulled, else a
stand-in made from Debian's packages (base_image.sh) for machines that reach no container registry. The tags
built are written to .cache/images.json, which the chart rehearsal reads.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL_BASE = "python:3.11-slim-bookworm"
LOCAL_BASE = "technoshare/python-base:3.11-bookworm"
MANIFEST = ROOT / ".cache" / "images.json"


@dataclass(frozen=True)
class Image:
    name: str
    dockerfile: str
    build_args: tuple[tuple[str, str], ...] = ()


def _service(name: str, port: int) -> Image:
    args = (("SERVICE", name), ("MODULE", name.replace("-", "_")), ("PORT", str(port)))
    return Image(name, "services/Dockerfile", args)


IMAGES = (
    _service("ingest", 3000),
    _service("retrieval", 8001),
    _service("llm-gateway", 8002),
    _service("composer", 8003),
    _service("poster", 8004),
    Image("mlflow", "k8s/images/mlflow/Dockerfile"),
    Image("eval", "k8s/images/eval/Dockerfile"),
)


def git_revision() -> str:
    """HEAD's sha, with -dirty when the tree has uncommitted changes (the image is not that commit)."""
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    status = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=True)
    return sha.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def _docker(*args: str, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    if log is None:
        return subprocess.run(["docker", *args], capture_output=True, text=True)
    with log.open("w") as out:
        return subprocess.run(["docker", *args], stdout=out, stderr=subprocess.STDOUT, text=True)


def base_image(log_dir: Path) -> str:
    if configured := os.environ.get("PYTHON_IMAGE"):
        return configured
    if _docker("image", "inspect", OFFICIAL_BASE).returncode == 0:
        return OFFICIAL_BASE
    if _docker("pull", OFFICIAL_BASE).returncode == 0:
        return OFFICIAL_BASE
    if _docker("image", "inspect", LOCAL_BASE).returncode != 0:
        print(f"no registry answers: making {LOCAL_BASE} from Debian's packages", flush=True)
        log = log_dir / "base.log"
        with log.open("w") as out:
            made = subprocess.run([str(ROOT / "scripts/images/base_image.sh"), LOCAL_BASE], stdout=out, stderr=out)
        if made.returncode != 0:
            sys.exit(f"the base image failed; see {log}:\n{log.read_text()[-3000:]}")
    return LOCAL_BASE


def build(image: Image, tag: str, base: str, revision: str, log_dir: Path) -> None:
    args = [f"--build-arg={key}={value}" for key, value in (*image.build_args, ("GIT_REVISION", revision))]
    log = log_dir / f"{image.name}.log"
    started = time.monotonic()
    built = _docker(
        "build",
        "--network=host",
        f"--build-arg=PYTHON_IMAGE={base}",
        *args,
        "-f",
        image.dockerfile,
        "-t",
        tag,
        ".",
        log=log,
    )
    if built.returncode != 0:
        sys.exit(f"{image.name}: docker build failed; see {log}:\n{log.read_text()[-4000:]}")
    print(f"{tag}: built in {time.monotonic() - started:.0f}s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", default="technoshare", help="image name prefix (technoshare/<name>)")
    parser.add_argument("names", nargs="*", help="images to build (default: all seven)")
    options = parser.parse_args()
    unknown = set(options.names) - {image.name for image in IMAGES}
    if unknown:
        parser.error(f"unknown image(s): {', '.join(sorted(unknown))}")
    os.chdir(ROOT)
    log_dir = ROOT / ".cache" / "images"
    log_dir.mkdir(parents=True, exist_ok=True)
    revision = git_revision()
    base = base_image(log_dir)
    tags = json.loads(MANIFEST.read_text())["images"] if MANIFEST.exists() else {}
    for image in IMAGES:
        if options.names and image.name not in options.names:
            continue
        tag = f"{options.repository}/{image.name}:{revision[:12]}{'-dirty' if revision.endswith('-dirty') else ''}"
        build(image, tag, base, revision, log_dir)
        tags[image.name] = tag
    MANIFEST.write_text(json.dumps({"revision": revision, "base": base, "images": tags}, indent=2) + "\n")


if __name__ == "__main__":
    main()
