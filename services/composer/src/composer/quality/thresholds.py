"""The content gates' calibrated thresholds, defined once: the gates' defaults, the settings' defaults and the
evaluation's calibration report (`technoshare-calibrate`, evaluation.calibration) all read them here.

Each sits between the good replies' worst score and the bad replies' best on data/eval_replies.json, measured on
sentences cut by technoshare_common.text (the table and what moved when the splitter changed: docs/quality.md).
"""

MIN_SUPPORT = 0.45  # grounded: good replies' lowest sentence 0.50; bad replies' lowest at most 0.40
MAX_SIMILARITY = 0.82  # no_repetition, no_padding: good replies' most similar pair 0.75; repeated pairs 0.88 and up
MIN_THEME_STRENGTH = 0.11  # earned_relevance: good and expected themes 0.13 and up; unearned ones 0.10 at most
PADDING_MARGIN = 0.25  # no_padding: good sentences match the projects no better than the evidence; padding 0.55+

# Semantic relevance (composer.quality.themes): calibrated on the dev split only (docs/quality.md).
SEMANTIC_OFFSET = 0.25  # all-MiniLM-L6-v2 cosine of a link and a project it is not about: about 0.1 to 0.3
SEMANTIC_MARGIN = 0.05  # projects this close to the most similar one are as near in meaning
