"""The embedded default: every service as a local process, started in the background.

    python scripts/stack.py up      # start what is not running, wait until every /readyz answers
    python scripts/stack.py down    # stop everything this script started
    python scripts/stack.py env     # print the environment the services get
    python scripts/stack.py exec .venv/bin/technoshare-eval --limit 5   # a command with that environment

Without OPENAI_API_KEY the bundled SmolLM2-135M-Instruct model answers through llama.cpp; without
SLACK_BOT_TOKEN poster is a dry run. MLflow runs on :5000 (SQLite .run/mlflow.db, artifacts in
.run/mlartifacts); every job leaves a run there. SAMPLES=1 (the default) points the arXiv and GitHub adapters
at the local sample site, so the bundled sample links work offline; SAMPLES=0 uses the real APIs.
"""

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".run"
BIN = Path(sys.executable).parent
LOCAL_MODEL_ALIAS = "smollm2-135m-instruct"
MLFLOW_URL = "http://127.0.0.1:5000"


@dataclass
class Process:
    name: str
    command: list[str]
    ready_url: str
    env: dict[str, str] = field(default_factory=dict)
    startup_seconds: float = 90.0


def model_path() -> Path:
    found = sorted((ROOT / ".cache" / "model").rglob("*.gguf"))
    if not found:
        raise SystemExit("the bundled model is missing: run `make model` (or `make up`, which does it)")
    return found[0]


def local_secrets() -> dict[str, str]:
    """Per-checkout secrets for the embedded default, made once and kept in .run/local.env."""
    path = RUN / "local.env"
    if not path.exists():
        RUN.mkdir(exist_ok=True)
        path.write_text(
            f"SLACK_SIGNING_SECRET={secrets.token_hex(16)}\nTECHNOSHARE_INTERNAL_TOKEN={secrets.token_hex(24)}\n"
        )
        path.chmod(0o600)
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def service_env() -> dict[str, str]:
    env = {
        "LOG_LEVEL": "INFO",
        "JOB_STORE_DATABASE_URL": f"sqlite:///{RUN / 'jobs.db'}",
        "POSTER_DATABASE_URL": f"sqlite:///{RUN / 'poster.db'}",
        "LLM_SPEND_DATABASE_URL": f"sqlite:///{RUN / 'llm_spend.db'}",
        "TIKTOKEN_CACHE_DIR": str(ROOT / ".cache" / "tiktoken"),
        "MLFLOW_TRACKING_URI": MLFLOW_URL,
        "MLFLOW_SPOOL_DIR": str(RUN / "mlflow-spool"),
        **local_secrets(),
    }
    if not os.environ.get("OPENAI_API_KEY"):
        env |= {
            "LLM_UPSTREAM_BASE_URL": "http://127.0.0.1:8009/v1",
            "LLM_UPSTREAM_KIND": "llamacpp",
            "STAGE_A_MODEL": LOCAL_MODEL_ALIAS,
            "STAGE_B_MODEL": LOCAL_MODEL_ALIAS,
            "STAGE_A_TOOLS": "false",
            "EVIDENCE_WINDOW_CHARS": "1500",
        }
    if os.environ.get("SAMPLES", "1") == "1":
        env |= {
            "ARXIV_API_URL": "http://127.0.0.1:8010/arxiv/api/query",
            "ARXIV_HTML_URL": "http://127.0.0.1:8010/arxiv/html",
            "GITHUB_API_URL": "http://127.0.0.1:8010/github",
            "RETRIEVAL_ALLOWED_HOSTS": "127.0.0.1",
        }
    # Whatever the user exported wins over these defaults.
    return env | {
        k: v for k, v in os.environ.items() if k in env or k.startswith(("SLACK_", "OPENAI_", "STAGE_", "LLM_"))
    }


def service_command(module: str, port: int) -> list[str]:
    """How a service runs locally; the end-to-end tests start services with this same command."""
    return [str(BIN / "uvicorn"), "--factory", f"{module}.main:build_app", "--host", "127.0.0.1", "--port", str(port)]


def processes() -> list[Process]:
    env = service_env()

    def service(name: str, module: str, port: int) -> Process:
        return Process(name, service_command(module, port), f"http://127.0.0.1:{port}/readyz", env)

    stack = [
        Process(
            "mlflow",
            [str(ROOT / "scripts" / "start_mlflow.sh")],
            f"{MLFLOW_URL}/health",
            {
                "MLFLOW_BACKEND_STORE": f"sqlite:///{RUN / 'mlflow.db'}",
                "MLFLOW_ARTIFACT_ROOT": str(RUN / "mlartifacts"),
            },
            startup_seconds=180.0,
        )
    ]
    if env.get("LLM_UPSTREAM_KIND") == "llamacpp":
        stack.append(
            Process(
                "model",
                [
                    str(BIN / "python"),
                    "-m",
                    "llama_cpp.server",
                    "--model",
                    str(model_path()),
                    "--model_alias",
                    LOCAL_MODEL_ALIAS,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "8009",
                    "--n_ctx",
                    "4096",
                    "--verbose",
                    "False",
                ],
                "http://127.0.0.1:8009/v1/models",
            )
        )
    if os.environ.get("SAMPLES", "1") == "1":
        stack.append(
            Process(
                "samples",
                [str(BIN / "python"), str(ROOT / "scripts" / "sample_site.py"), "--port", "8010"],
                "http://127.0.0.1:8010/arxiv/api/query?id_list=2106.09685",
            )
        )
    stack += [
        service("retrieval", "retrieval", 8001),
        service("llm-gateway", "llm_gateway", 8002),
        service("poster", "poster", 8004),
        service("composer", "composer", 8003),
        service("ingest", "ingest", 3000),
    ]
    return stack


def pid_file(name: str) -> Path:
    return RUN / "pids" / f"{name}.pid"


def running_pid(name: str) -> int | None:
    path = pid_file(name)
    if not path.exists():
        return None
    pid = int(path.read_text())
    try:
        os.kill(pid, 0)
    except OSError:
        path.unlink()
        return None
    return pid


def wait_ready(process: Process) -> None:
    deadline = time.monotonic() + process.startup_seconds
    while time.monotonic() < deadline:
        if running_pid(process.name) is None:
            raise SystemExit(f"{process.name} exited during start-up; see {RUN / 'logs' / process.name}.log")
        try:
            if httpx.get(process.ready_url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{process.name} was not ready after {process.startup_seconds}s: {process.ready_url}")


def up() -> None:
    (RUN / "pids").mkdir(parents=True, exist_ok=True)
    (RUN / "logs").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    stack = processes()
    # Start everything, then wait: readiness checks poll, so the slow starters overlap.
    for process in stack:
        if running_pid(process.name) is None:
            log = (RUN / "logs" / f"{process.name}.log").open("ab")
            child = subprocess.Popen(
                process.command,
                cwd=ROOT,
                env=os.environ | process.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            pid_file(process.name).write_text(str(child.pid))
    for process in stack:
        wait_ready(process)
        print(f"  {process.name:<12} ready   {process.ready_url.rsplit('/', 1)[0]}")
        if process.name == "mlflow":
            # Register the YAML prompts (a new version only when they changed); composer loads @prod.
            sync = [str(BIN / "technoshare-sync-prompts"), "--tracking-uri", MLFLOW_URL]
            subprocess.run(sync, check=True, stdout=subprocess.DEVNULL)
    print(f"stack ready in {time.monotonic() - started:.1f}s (logs in {RUN / 'logs'})")


def down() -> None:
    for process in reversed(processes_for_down()):
        pid = running_pid(process)
        if pid is None:
            continue
        os.killpg(pid, signal.SIGTERM)
        for _ in range(50):
            if running_pid(process) is None:
                break
            time.sleep(0.1)
        else:
            os.killpg(pid, signal.SIGKILL)
        pid_file(process).unlink(missing_ok=True)
        print(f"  {process:<12} stopped")


def processes_for_down() -> list[str]:
    folder = RUN / "pids"
    return sorted(p.stem for p in folder.glob("*.pid")) if folder.exists() else []


def run_with_env(command: list[str]) -> None:
    """Replaces this process with `command` in the services' environment (make eval): what the caller exported
    wins over the stack's defaults, so an eval can point at another model or MLflow."""
    if not command:
        raise SystemExit("exec needs a command, e.g. exec .venv/bin/technoshare-eval")
    os.execvpe(command[0], command, service_env() | dict(os.environ))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "env", "exec"])
    parser.add_argument("argv", nargs=argparse.REMAINDER, help="exec: the command and its arguments")
    args = parser.parse_args()
    if args.command == "up":
        up()
    elif args.command == "down":
        down()
    elif args.command == "exec":
        run_with_env(args.argv)
    else:
        for key, value in sorted(service_env().items()):
            shown = "***" if any(s in key for s in ("SECRET", "TOKEN", "KEY")) else value
            print(f"{key}={shown}")


if __name__ == "__main__":
    main()
