"""Evaluation: answers from local models or APIs, the paper's LLM judge, and the report.

Modules, one concern each:

- ``config``: the recipe/CLI dataclass shared by ``scripts/generate.py`` and ``scripts/judge.py``.
- ``prompting``: the prompt styles models are asked in (published template, Alpaca, ...).
- ``generation``: batched local generation with resume, and the API backend via the engine.
- ``judging``: the 1-4 rubric protocol: shuffled candidates, strict parsing, retries.
- ``statistics``: bootstrap intervals, win rates, position bias, ROUGE-L, lengths.
- ``decontamination``: evaluation notes that also occur in the training data.
- ``report``: ``results.json``, ``report.md`` and plots.
- ``model_index``: the results as ``model-index`` metadata in a model card.
- ``cards``: the dataset cards of the generation and judgement folders.
"""
