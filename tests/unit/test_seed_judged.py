"""Notebook 07 judges the explainer the lab grew from (minicontainer/lab/seed.txt), as written: every sentence
quoted exactly, in the explainer's order, each with a prediction cell, an experiment and a verdict that
claims.VERDICTS (the score of exercise 7.1) agrees with."""

from __future__ import annotations

import json
import os
import re

from minicontainer.lab import claims

NOTEBOOK = os.path.join(os.path.dirname(__file__), "..", "..", "notebooks", "07-claims.ipynb")
HEADING = re.compile(r'^## (\d+)\. "(.*)"$', re.M)
VERDICT = re.compile(r"\*\*Verdict: (true|false|partly)\.\*\*")


def sections() -> list[tuple[int, str, list[dict]]]:
    """(number, quoted sentence, the cells up to the next heading of the notebook's), in notebook order."""
    found, current = [], None
    for cell in json.load(open(NOTEBOOK))["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and source.startswith("## "):
            heading = HEADING.search(source)
            current = (int(heading.group(1)), heading.group(2), []) if heading else None
            if current:
                found.append(current)
        elif current:
            current[2].append(cell)
    return found


def test_the_explainer_has_twenty_sentences_and_each_a_verdict():
    sentences = claims.seed_sentences()
    assert len(sentences) == 20
    assert set(claims.VERDICTS) == set(range(1, 21))
    assert sentences[0].startswith("cgroups are a core mechanism") and sentences[-1].endswith("Docker and Kubernetes")


def test_every_sentence_is_quoted_exactly_in_order_with_its_verdict():
    sentences = claims.seed_sentences()
    judged = sections()
    assert [(n, quote) for n, quote, _ in judged] == list(enumerate(sentences, 1))
    for number, _, cells in judged:
        sources = ["".join(c["source"]) for c in cells]
        assert f"predictions[{number}] = None" in sources[0], f"sentence {number}: no prediction cell first"
        assert any(c["cell_type"] == "code" and re.search(r"^\s*assert\b", "".join(c["source"]), re.M)
                   for c in cells), f"sentence {number}: no experiment with an assert"
        verdicts = [m.group(1) for s in sources for m in VERDICT.finditer(s)]
        assert verdicts == [claims.VERDICTS[number]], f"sentence {number}: verdicts {verdicts}"


def test_a_heading_of_the_explainer_is_no_sentence(tmp_path):
    seed = tmp_path / "seed.txt"
    seed.write_text("T\nT\nT\nFirst one. Second one.\nExamples:\nThird, no full stop\n")
    assert claims.seed_sentences(str(seed)) == ["First one.", "Second one.", "Third, no full stop"]


def test_the_score_counts_matches_and_names_the_rest():
    matched, differ = claims.score({1: "partly", 2: "True", 3: None})
    assert matched == 1 and differ == {2: ("true", "false")}
