"""What the reply's quality costs and how often the fallback answers, on the examples of data/eval_dataset.json.

- relevance: CPU ms per job of the theme strengths, by shared words only and with meaning (the embedding model),
  on a fresh evidence index per job; the embedding model's load time and the process's peak memory after it;
- live scoring: CPU ms per job of the reply's measures (composer.quality.live) and its Prometheus series, the part
  on the job's path (the MLflow assessments are sent by the spool's thread afterwards);
- gates: CPU ms per job of every gate on the extractive reply, and of a long page (two of the dataset's pages, 35,000+
  characters) indexed, its extractive reply composed and gated;
- fallback share on the scripted upstream: every example composed abstractively against tests/support's scripted
  OpenAI-protocol model, which writes its LoRA reply whatever the link. On any other link that draft is invented
  content, refused by the gates after its repair, so the extractive fallback must answer: the share of links
  answered (outcome success) must be 100%.

    make bench   # or: .venv/bin/python benchmarks/quality_costs.py
"""

import asyncio
import json
import resource
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from local_server import serve_in_thread  # noqa: E402

from composer.compose import ReplyComposer  # noqa: E402
from composer.extractive import ExtractiveComposer, gates_for_source  # noqa: E402
from composer.llm import LLMClient  # noqa: E402
from composer.projects import load_projects  # noqa: E402
from composer.prompts import PromptStore  # noqa: E402
from composer.quality import semantic  # noqa: E402
from composer.quality.content import GateContext  # noqa: E402
from composer.quality.evidence import EvidenceIndex  # noqa: E402
from composer.quality.gates import GateConfig, GateReport, run_gates  # noqa: E402
from composer.quality.live import count_live, reply_quality  # noqa: E402
from composer.quality.themes import earned_themes, theme_strengths  # noqa: E402
from composer.settings import ComposerSettings  # noqa: E402
from technoshare_common.schemas import ComposedReply, ComposeResult, Evidence, Outcome  # noqa: E402
from tests.support.scripted_llm import ScriptedLLM  # noqa: E402

DATASET = ROOT / "data" / "eval_dataset.json"


def cpu_ms(function: object, *args: object) -> float:
    start = time.process_time()
    function(*args)  # type: ignore[operator]
    return (time.process_time() - start) * 1000


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"mean {statistics.fmean(values):.1f}, p50 {statistics.median(values):.1f}, p95 {p95:.1f}"


def main() -> None:
    examples = json.loads(DATASET.read_text())["examples"]
    settings = ComposerSettings(COMPOSE_MODE="extractive")
    projects = load_projects(settings.projects_file)
    evidence = {e["id"]: Evidence.model_validate(e["evidence"]) for e in examples}

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    semantic.encoder()
    semantic.similarities("warm up", ["the projects' embeddings are computed once"], projects)
    load_seconds = time.perf_counter() - start
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    lexical, meaning, gates, live = [], [], [], []
    config = GateConfig.from_settings(settings, [p.theme for p in projects])
    composer = ExtractiveComposer(settings, None, config.content.max_similarity, projects)

    def live_scoring(reply: ComposedReply, report: GateReport, index: EvidenceIndex) -> None:
        """What live scoring adds to a job before its post: the reply's measures and its Prometheus series."""
        result = ComposeResult(url="https://example.com", outcome=Outcome.success, app_version="bench")
        result.quality = reply_quality(reply, report.results, index, projects, config.content.min_support)
        count_live(result, "CBENCH")

    for ev in evidence.values():
        lexical.append(cpu_ms(theme_strengths, EvidenceIndex.from_evidence(ev), projects, False))
        meaning.append(cpu_ms(theme_strengths, EvidenceIndex.from_evidence(ev), projects, True))
        index = EvidenceIndex.from_evidence(ev)
        themes = earned_themes(index, projects, config.content.min_theme_strength)
        draft = asyncio.run(composer.compose(None, ev, index, themes))
        content = draft.reply.model_dump_json()
        gates.append(cpu_ms(run_gates, content, gates_for_source(config, index), GateContext(index, projects)))
        report = run_gates(content, gates_for_source(config, index), GateContext(index, projects))
        live.append(cpu_ms(live_scoring, draft.reply, report, index))

    def index_compose_and_gate(ev: Evidence) -> None:
        index = EvidenceIndex.from_evidence(ev)
        themes = earned_themes(index, projects, config.content.min_theme_strength)
        draft = asyncio.run(composer.compose(None, ev, index, themes))
        run_gates(draft.reply.model_dump_json(), gates_for_source(config, index), GateContext(index, projects))

    pages = "\n\n".join(evidence[k].text for k in ("web-go-swisstable", "web-uv-resolution"))
    long_evidence = evidence["web-go-swisstable"].model_copy(update={"text": pages})
    long_page = [cpu_ms(index_compose_and_gate, long_evidence) for _ in range(3)]

    print(f"quality costs on {len(evidence)} examples (CPU ms per job)")
    print(f"  theme strengths, shared words only: {summary(lexical)}")
    print(f"  theme strengths, words and meaning: {summary(meaning)}")
    print(f"  embedding model: loaded in {load_seconds:.2f} s; peak RSS {rss_before:.0f} -> {rss_after:.0f} MiB")
    print(f"  every gate on the extractive reply: {summary(gates)}")
    print(f"  live scoring (the reply's measures and its Prometheus series): {summary(live)}")
    print(f"  a {len(pages)}-character page indexed, its extractive reply and every gate: {summary(long_page)}")

    scripted = ScriptedLLM()
    with serve_in_thread(scripted.app) as url:
        abstractive = ComposerSettings(
            COMPOSE_MODE="abstractive", LLM_GATEWAY_URL=url, STAGE_A_MODEL="scripted", STAGE_B_MODEL="scripted"
        )
        composer_abstractive = ReplyComposer(
            abstractive, llm=LLMClient(abstractive), prompts=PromptStore(abstractive.prompts_dir), projects=projects
        )

        async def compose_all() -> list[tuple[str, str, str]]:
            """As a live job composes (a dry run never falls back)."""
            out = []
            for e in examples:
                result = ComposeResult(url=e["url"], outcome=Outcome.error)
                await composer_abstractive.compose(result, evidence[e["id"]], e["slack_text"])
                refused = result.refused_gates[0].name if result.refused_gates else "-"
                out.append((result.outcome.value, result.compose_mode or "-", refused))
            return out

        start = time.perf_counter()
        results = asyncio.run(compose_all())
        seconds = time.perf_counter() - start
    modes = Counter(mode for _, mode, _ in results)
    outcomes = Counter(outcome for outcome, _, _ in results)
    refused = Counter(gate for _, mode, gate in results if mode == "extractive_fallback")
    fallback = modes["extractive_fallback"] / len(results)
    print(f"scripted upstream, abstractive, {len(results)} links in {seconds:.0f} s")
    print(f"  outcomes {dict(outcomes)}; compose modes {dict(modes)}")
    print(f"  fallback share {fallback:.1%}; first refusing gate of the fallbacks {dict(refused)}")
    print(f"  answered: {outcomes['success']}/{len(results)}")


if __name__ == "__main__":
    main()
