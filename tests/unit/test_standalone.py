"""Whether a sentence reads on its own, away from the page it came from."""

import pytest

from composer.extractive import quotable
from composer.quality.standalone import standalone_problem

BEFORE = ["LoRA freezes the pre-trained weights and trains small low-rank matrices."]


@pytest.mark.parametrize(
    ("sentence", "before"),
    [
        ("Ruff supports Python 3.8 and above.", []),
        ("That said, full fine-tuning still wins on some tasks.", BEFORE),
        ("This approach cuts trainable parameters by 10,000 times.", BEFORE),
        ("These updates keep the base model frozen.", BEFORE),
        ("Next.js 14 adds server actions.", []),
        ("The following models are supported: Llama, Mistral and Falcon.", []),
        ("This paper proposes LoRA.", []),
        ("It matches full fine-tuning on RoBERTa.", BEFORE),
        ("Ruff is 10 to 100 times faster than existing linters like Flake8 and Black.", []),
    ],
)
def test_a_sentence_that_reads_on_its_own_passes(sentence: str, before: list[str]) -> None:
    listed = frozenset({"Ruff is 10 to 100 times faster than existing linters like Flake8 and Black."})
    assert standalone_problem(sentence, before, listed) is None


@pytest.mark.parametrize(
    ("sentence", "before", "why"),
    [
        ("Below you can see a 16-slot backing array for a hash table.", [], "points outside"),
        ("As the figure below shows, LoRA injects matrices into each layer.", BEFORE, "points outside"),
        ("Table 2 lists the results on GLUE.", BEFORE, "points outside"),
        ("This improvement to probing behavior lowers the memory footprint.", BEFORE, "opens with"),
        ("It matches full fine-tuning on RoBERTa.", [], "opens with"),
        ("The former leads to greater consistency.", [], "opens with"),
        ("As a result, the allocated blocks are cached.", [], "opens with"),
        ("Meanwhile, the scheduler keeps running.", [], "opens with"),
        ("Convert Python types (str, int, float, bool, list, etc).", BEFORE, "list fragment"),
        ("Runs and installs tools published as Python packages.", BEFORE, "list item"),
        ("The command is:", BEFORE, "colon"),
    ],
)
def test_a_sentence_that_needs_its_context_is_refused(sentence: str, before: list[str], why: str) -> None:
    listed = frozenset({"Runs and installs tools published as Python packages."})
    problem = standalone_problem(sentence, before, listed)
    assert problem is not None and why in problem, problem


@pytest.mark.parametrize(
    "sentence",
    [
        "The latter is faster because it skips the check.",
        "Consequently, the scheduler is faster on every machine.",
        "The above results hold for every model size.",
        "Here we describe the design of the scheduler.",
        "If it is in use, the byte holds the lower bits of the hash.",
        "For a more complete example including more features, see the Tutorial - User Guide.",
    ],
)
def test_the_extractive_mode_never_quotes_a_sentence_that_leans_on_another(sentence: str) -> None:
    assert not quotable(sentence)
