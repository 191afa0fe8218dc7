"""README's usage snippet is executed so it cannot rot."""
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def test_readme_snippet_runs(capsys):
    text = README.read_text()
    block = re.search(r"<!-- readme-snippet[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert block, "README lost its executed snippet"
    namespace: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    sparsifier = namespace["sparsifier"]
    assert f"density {sparsifier.density():.4f}" in out
    assert abs(sparsifier.density() - 0.05) < 0.001
    assert sparsifier.exploration_rate() > sparsifier.density()
    assert len(sparsifier.update_history) == 3
