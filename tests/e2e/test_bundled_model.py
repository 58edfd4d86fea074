"""The real bundled model (SmolLM2-135M-Instruct on llama.cpp) through llm-gateway: the pipeline's
dry run yields a reply that passes every gate. Its content is poor; this proves the wiring."""

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from composer.settings import ComposerSettings
from evaluation.runner import build_pipeline
from llm_gateway.main import build_app
from llm_gateway.settings import GatewaySettings
from technoshare_common.schemas import Coverage, Evidence, Outcome, Snippet, Source
from tests.support.servers import ROOT, free_port, serve_in_thread, wait_until

pytestmark = [pytest.mark.model, pytest.mark.e2e]

MODEL_DIR = ROOT / ".cache" / "model"


def _model_file() -> Path:
    found = sorted(MODEL_DIR.rglob("*.gguf"))
    assert found, "bundled model missing: `make model` installs it (make test depends on it)"
    return found[0]


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    port = free_port()
    log = (tmp_path_factory.mktemp("model") / "model.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(_model_file()),
            "--model_alias",
            "smollm2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "4096",
            "--seed",
            "7",
            "--verbose",
            "False",
        ],
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}/v1"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/models", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, timeout=120, what="llama.cpp server")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _evidence() -> Evidence:
    paper = json.loads((ROOT / "data" / "samples" / "arxiv" / "2106.09685.json").read_text())
    url = "https://arxiv.org/abs/2106.09685"
    return Evidence(
        url=url,
        final_url=url,
        adapter_name="ArxivAdapter",
        coverage=Coverage.partial,
        title=paper["title"],
        authors=paper["authors"],
        text=paper["abstract"],
        snippets=[Snippet(text=paper["abstract"], source_url=url)],
        sources=[Source(url=url, title=paper["title"])],
    )


async def test_the_bundled_model_produces_a_reply_that_passes_the_gates(model_server: str) -> None:
    gateway_settings = GatewaySettings(LLM_UPSTREAM_BASE_URL=model_server, LLM_UPSTREAM_KIND="llamacpp")  # type: ignore[arg-type]
    with serve_in_thread(build_app(gateway_settings)) as gateway_url:
        settings = ComposerSettings(
            LLM_GATEWAY_URL=gateway_url,
            STAGE_A_MODEL="smollm2",
            STAGE_B_MODEL="smollm2",  # type: ignore[arg-type]
            STAGE_A_TOOLS=False,
            EVIDENCE_WINDOW_CHARS=1500,
            COMPOSE_MODE="extractive",  # what COMPOSE_MODE=auto picks for the bundled model (its stack alias)
        )
        composer, _, llm = build_pipeline(settings, "prod")  # the evaluation suite's in-process composing
        try:
            result = await composer.compose_evidence(
                "https://arxiv.org/abs/2106.09685", "LoRA for our adapters?", _evidence()
            )
        finally:
            await llm.aclose()
    failures = [f"{g.name}: {g.detail}" for g in result.gate_failures]
    print(
        f"bundled model: outcome={result.outcome} repaired={result.repaired} timings={result.timings} "
        f"usage={result.usage.model_dump()} failures={failures}"
    )
    assert result.outcome == Outcome.success, (result.error, failures)
    assert result.usage.completion_tokens > 0 and result.text is not None  # the model did pick the TL;DR
    assert result.compose_mode == "extractive"
