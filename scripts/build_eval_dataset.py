"""Builds data/eval_dataset.json: real links from data/samples with their evidence recorded once.

Each example pins the evaluation's inputs: the link, the Slack message, the project theme a good reply
leads with, tags, and the evidence retrieval produced for it (fetched here from the bundled documents
through retrieval's own adapters, with the sample site standing in for arXiv, GitHub and the web).

    .venv/bin/python scripts/build_eval_dataset.py
"""

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

import sample_site  # scripts/, on the path as this script's own folder
from local_server import serve_in_thread

ROOT = Path(__file__).resolve().parent.parent

# (sample id, the team's project theme a good reply leads with, tags, the Slack message)
EXAMPLES: list[tuple[str, str, list[str], str]] = [
    ("arxiv:2106.09685", "Model training and fine-tuning", ["fine-tuning", "lora"], "LoRA, still the default? {url}"),
    ("arxiv:2305.14314", "Model training and fine-tuning", ["fine-tuning", "quantization"], "QLoRA for Forge? {url}"),
    ("arxiv:2402.03300", "Model training and fine-tuning", ["rl", "reasoning"], "The GRPO paper: {url}"),
    ("arxiv:2403.07691", "Model training and fine-tuning", ["alignment"], "ORPO, alignment without a ref model {url}"),
    ("arxiv:2309.17453", "LLM inference", ["long-context", "kv-cache"], "Attention sinks for long chats {url}"),
    ("arxiv:2006.11239", "Generative media", ["diffusion"], "The original DDPM paper, for the Canvas folks {url}"),
    ("arxiv:2212.09748", "Generative media", ["diffusion", "transformers"], "DiT: {url}"),
    ("arxiv:2307.01952", "Generative media", ["diffusion", "image-generation"], "SDXL report {url}"),
    ("github:jax-ml/jax", "ML platform", ["jax", "training-infra"], "Should Orbit support JAX? {url}"),
    ("github:huggingface/diffusers", "Generative media", ["diffusion", "library"], "{url} is what we build on"),
    ("github:karpathy/nanoGPT", "Model training and fine-tuning", ["training", "gpt"], "Tiny GPT trainer: {url}"),
    ("github:ollama/ollama", "LLM inference", ["local-models", "serving"], "Local LLMs, easy mode {url}"),
    ("github:astral-sh/uv", "Developer experience", ["python", "packaging"], "Time to move off pip? {url}"),
    ("github:redis/redis", "Infrastructure and observability", ["database", "cache"], "Redis 8 is out {url}"),
    ("github:fastapi/fastapi", "Backend services", ["python", "web-framework"], "{url}"),
    ("github:prometheus/prometheus", "Infrastructure and observability", ["monitoring"], "FYI {url}"),
    ("web:go-swisstable", "Backend services", ["go", "data-structures"], "Go maps got faster: {url}"),
    ("web:go-errors-are-values", "Backend services", ["go", "error-handling"], "A classic on errors {url}"),
    ("web:rust-async-await-stable", "Backend services", ["rust", "async"], "Rust async history {url}"),
    ("web:fastapi-concurrency-async-await", "Backend services", ["python", "async"], "async def or def? {url}"),
    ("web:vite-why-vite", "Developer experience", ["frontend", "build-tools"], "Why Vite {url}"),
    ("web:prometheus-querying-basics", "Infrastructure and observability", ["promql"], "PromQL refresher {url}"),
    ("web:terraform-core-architecture", "Infrastructure and observability", ["iac"], "How Terraform works {url}"),
    ("web:uv-resolution", "Developer experience", ["python", "packaging"], "How uv resolves deps {url}"),
]


def relabel(evidence: dict[str, Any], local: str, real: str) -> dict[str, Any]:
    """The evidence as if read from the real page: the sample site's address becomes the real link."""
    return json.loads(json.dumps(evidence).replace(local, real))


async def build(site: str) -> list[dict[str, Any]]:
    os.environ |= {
        "ARXIV_API_URL": f"{site}/arxiv/api/query",
        "ARXIV_HTML_URL": f"{site}/arxiv/html",
        "GITHUB_API_URL": f"{site}/github",
        "RETRIEVAL_ALLOWED_HOSTS": "127.0.0.1",
    }
    from retrieval.service import RetrievalService
    from retrieval.settings import RetrievalSettings

    samples = {entry["id"]: entry for entry in sample_site.index()}
    service = RetrievalService(RetrievalSettings())
    examples = []
    try:
        for sample_id, theme, tags, message in EXAMPLES:
            sample = samples[sample_id]
            kind, name = sample_id.split(":", 1)
            fetched = f"{site}/web/{name}.html" if kind == "web" else sample["url"]
            evidence = (await service.evidence(fetched)).model_dump(mode="json")
            if kind == "web":
                evidence = relabel(evidence, fetched, sample["url"])
            examples.append(
                {
                    "id": f"{kind}-{name.replace('/', '-').replace('.', '-')}",
                    "url": sample["url"],
                    "slack_text": message.format(url=f"<{sample['url']}>"),
                    "expected_theme": theme,
                    "tags": [kind, *tags],
                    "source": {"sample": sample_id, "origin": sample["source"], "license": sample["license"]},
                    "evidence": evidence,
                }
            )
            print(f"{examples[-1]['id']}: {evidence['adapter_name']}, {evidence['coverage']}")
    finally:
        await service.aclose()
    return examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=ROOT / "data" / "eval_dataset.json")
    args = parser.parse_args()
    with serve_in_thread(sample_site.app) as site:
        examples = asyncio.run(build(site))
    dataset = {
        "description": "TechnoShare Commentator evaluation set: real links with pinned evidence snapshots.",
        "built_by": "scripts/build_eval_dataset.py from data/samples (see data/samples/SOURCES.md for licences)",
        "examples": examples,
    }
    args.output.write_text(json.dumps(dataset, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(examples)} examples -> {args.output}")


if __name__ == "__main__":
    main()
