"""The docs' code samples run, as written.

Convention: in ``docs/*.md`` and ``README.md``, every fenced block opened with ```` ```python ````
is executed; the blocks of one page run in order, in one namespace, in a fresh working
directory, so a page reads (and runs) as one story. Blocks that are fragments or start a server
are fenced ```` ```py ```` instead: highlighted the same, not executed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("**/*.md")])
BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text(encoding="utf-8"))


#: Pages whose samples show a new key once, on purpose (see tests/leakcheck.py).
SHOWS_KEY = {"management-api.md": "response"}


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(
            p,
            marks=[pytest.mark.shows_key(SHOWS_KEY[p.name])] if p.name in SHOWS_KEY else [],
        )
        for p in PAGES
        if _blocks(p)
    ],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_if_a_page_is_run_then_its_python_samples_work(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for number, block in enumerate(_blocks(page), start=1):
        code = compile(block, f"{page.name}[block {number}]", "exec")
        exec(code, namespace)  # noqa: S102 - our own documentation
    closer = namespace.get("auth")
    if hasattr(closer, "close"):
        closer.close()  # type: ignore[union-attr]
