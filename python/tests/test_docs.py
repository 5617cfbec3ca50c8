"""The Python examples of docs/python.md run as written (from the repository root)."""

import re

from conftest import REPO


def python_blocks():
    text = (REPO / "docs" / "python.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_docs_examples_run(monkeypatch, capsys):
    blocks = python_blocks()
    assert len(blocks) >= 2
    monkeypatch.chdir(REPO)  # the examples name tests/data/toy.json
    for block in blocks:
        exec(compile(block, "docs/python.md", "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith("<dip.Model 'vlm-s' (vit, projector, llm), pp 4, tp 4, H800>")
    assert "batch[1][0] field 'images[0].width': expected an integer in [1, 2^40], got -3" in out
