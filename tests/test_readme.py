"""The README's Python quickstart runs as printed (with fewer rounds)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_quickstart_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no Python quickstart"
    code = blocks[0].replace("rounds=50", "rounds=2")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["new"].loss(namespace["X"], namespace["Y"]) <= namespace["net"].loss(namespace["X"], namespace["Y"]) + 1e-8
    assert len(namespace["result"].history) >= 1
