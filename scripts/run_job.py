"""The main job once: a signed Slack message event through ingest, then the reply it produced.

    python scripts/run_job.py [--url URL]

Reads the local signing secret and service token from .run/local.env (made by `make up`).
"""

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

import httpx
from slack_sdk.signature import SignatureVerifier

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "https://arxiv.org/abs/2106.09685"
CHANNEL = "C0LOCALDEMO"


def local_env() -> dict[str, str]:
    path = ROOT / ".run" / "local.env"
    if not path.exists():
        raise SystemExit("no .run/local.env: start the stack with `make up` first")
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def signed_event(secret: str, url: str) -> tuple[bytes, dict[str, str], str]:
    message_ts = f"{time.time():.6f}"
    payload = {
        "type": "event_callback",
        "team_id": "T0LOCAL",
        "api_app_id": "A0LOCAL",
        "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        "event": {
            "type": "message",
            "channel": CHANNEL,
            "user": "U0LOCALUSER",
            "text": f"Worth a read for the team <{url}>",
            "ts": message_ts,
        },
    }
    body = json.dumps(payload).encode()
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    headers = {
        "content-type": "application/json",
        "x-slack-request-timestamp": timestamp,
        "x-slack-signature": signature,
    }
    return body, headers, message_ts


def mlflow_run_link(job_id: str, timeout: float = 30.0) -> str | None:
    """The job's run in the MLflow UI; composer logs it in the background, so wait for it a little."""
    base = os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000").rstrip("/")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = httpx.get(
                f"{base}/api/2.0/mlflow/experiments/get-by-name",
                params={"experiment_name": "technoshare_commentator"},
                timeout=5,
            )
            if found.status_code == 200:
                experiment = found.json()["experiment"]["experiment_id"]
                search = {"experiment_ids": [experiment], "filter": f"tags.job_id = '{job_id}' and tags.outcome != ''"}
                runs = httpx.post(f"{base}/api/2.0/mlflow/runs/search", json=search, timeout=5).json().get("runs")
                if runs:
                    return f"{base}/#/experiments/{experiment}/runs/{runs[0]['info']['run_id']}"
        except httpx.HTTPError:
            return None
        time.sleep(1)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--ingest", default="http://127.0.0.1:3000")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    env = local_env()
    body, headers, message_ts = signed_event(env["SLACK_SIGNING_SECRET"], args.url or DEFAULT_URL)

    started = time.monotonic()
    response = httpx.post(f"{args.ingest}/slack/events", content=body, headers=headers, timeout=10)
    ack = time.monotonic() - started
    print(f"Slack event for {args.url or DEFAULT_URL}: HTTP {response.status_code} in {ack * 1000:.0f} ms")
    if response.status_code != 200:
        print(response.text)
        return 1

    auth = {"authorization": f"Bearer {env['TECHNOSHARE_INTERNAL_TOKEN']}"}
    params = {"channel_id": CHANNEL, "message_ts": message_ts}
    job = None
    while time.monotonic() - started < args.timeout:
        jobs = httpx.get(f"{args.ingest}/v1/jobs", params=params, headers=auth, timeout=10).json()["jobs"]
        if jobs and all(j["state"] == "done" for j in jobs):
            job = jobs[0]
            break
        time.sleep(1)
    if job is None:
        print(f"no finished job after {args.timeout:.0f}s")
        return 1

    print(
        f"job {job['id']}: outcome {job['outcome']} after {job['attempts']} attempt(s), "
        f"{time.monotonic() - started:.1f}s end to end"
    )
    print("stage timings (s): " + ", ".join(f"{k}={v:.2f}" for k, v in job["timings"].items()))
    if job["gate_failures"]:
        print("gate failures:\n  " + "\n  ".join(job["gate_failures"]))
    if job["error"]:
        print(f"error: {job['error']}")
    print("\n----- reply (Slack mrkdwn) -----")
    print(job["reply_text"] or "(no reply)")
    print("--------------------------------")
    posted = job["slack_message_ts"]
    print(f"posted in Slack as ts={posted}" if posted else "dry run: not posted (set SLACK_BOT_TOKEN to post)")
    link = mlflow_run_link(job["id"])
    print(f"MLflow run: {link}" if link else "MLflow run: not found (is MLflow up? see .run/logs/mlflow.log)")
    return 0 if job["outcome"] in ("success", "degraded", "gate_failed", "unreadable") else 1


if __name__ == "__main__":
    sys.exit(main())
