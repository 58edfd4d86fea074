"""Agreement: a sentence that shares its evidence's words must also say what the evidence says."""

import pytest

from composer.quality.agreement import conflicts

LORA = (
    "LoRA performs on-par or better than fine-tuning in model quality on RoBERTa, DeBERTa, GPT-2, and GPT-3, "
    "despite having fewer trainable parameters, a higher training throughput, and, unlike adapters, no additional "
    "inference latency."
)
SAVINGS = (
    "Compared to GPT-3 175B fine-tuned with Adam, LoRA can reduce the number of trainable parameters by 10,000 "
    "times and the GPU memory requirement by 3 times."
)


@pytest.mark.parametrize(
    ("sentence", "evidence"),
    [
        ("Unlike adapters, LoRA adds no inference latency.", LORA),
        ("Inference latency does not increase with LoRA, unlike with adapters.", LORA),
        ("The cache never evicts pinned pages.", "Pinned pages are never evicted from the cache."),
        (
            "There is no need to download models manually.",
            "Models are downloaded automatically, so manual download is not needed.",
        ),
        (
            "Cargo works without an internet connection in offline mode.",
            "In offline mode, Cargo works without network access.",
        ),
        ("vLLM delivers 24x higher throughput.", "vLLM gives lower latency and up to 24x the throughput."),
        ("Text is normalized before it is compared.", "After normalization, text is compared."),
        ("The query looks at the last 5 minutes.", "The query covers the last 5m of samples."),
        ("LoRA cuts trainable parameters by 10,000 times and GPU memory by 3 times.", SAVINGS),
        (
            "QLoRA saves memory with innovations that do not sacrifice performance.",
            "QLoRA introduces innovations to save memory without sacrificing performance.",
        ),
    ],
)
def test_a_faithful_paraphrase_agrees(sentence: str, evidence: str) -> None:
    assert list(conflicts(sentence, [evidence])) == []


@pytest.mark.parametrize(
    ("sentence", "evidence", "why"),
    [
        ("Unlike fine-tuning, LoRA adds additional inference latency.", LORA, "opposite"),
        ("LoRA cuts trainable parameters by 3 times and GPU memory by 10,000 times.", SAVINGS, "other things"),
        ("LoRA has more trainable parameters and a lower training throughput.", LORA, "'more' where the evidence"),
        ("Accuracy fell by 5% on the benchmark.", "Accuracy rose by 5% on the benchmark.", "'fell'"),
        ("LoRA reduces trainable parameters by 10,000 GB.", SAVINGS, "10000 GB is 10000 times"),
        ("LoRA reduces trainable parameters by 20,000 times.", SAVINGS, "20000 is not in its supporting evidence"),
        ("The pages are not cached by the server.", "The pages are cached by the server.", "opposite"),
    ],
)
def test_a_sentence_that_says_otherwise_disagrees(sentence: str, evidence: str, why: str) -> None:
    found = list(conflicts(sentence, [evidence]))
    assert any(why in conflict for conflict in found), found


def test_a_verbatim_quote_always_agrees() -> None:
    assert list(conflicts(LORA, [LORA])) == []
