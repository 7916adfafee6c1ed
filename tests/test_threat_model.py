"""docs/THREAT_MODEL.md stays honest: every test it cites exists.

Every table of the threat model whose header has a `test` column names, in that column, at least one test
(`tests/.../test_x.py::test_name`, a file, or a bare `test_name` after a file in the same cell) or says
"(by construction: …)". Each cited file must exist and each cited test must be a function defined in the most
recent file of its cell (module level or in a class; a parametrized id `name[x]` counts by its base name).
Full `tests/...py::name` references anywhere else in the document are checked the same way.

Static only (ast, no imports of the test modules): runs in a fraction of a second."""

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "THREAT_MODEL.md"

TOKEN = re.compile(
    r"(?P<path>(?:[\w.-]+/)*[\w-]+\.(?:py|jsonl|json|md))"
    r"|(?P<dir>(?:tests|docs)/(?:[\w-]+/)+)"
    r"|(?P<name>(?<![\w./-])test_\w+)")
FULL_REF = re.compile(r"(tests/(?:[\w-]+/)*[\w-]+\.py)::(test_\w+)")


@cache
def _tests_by_name() -> dict[str, list[Path]]:
    by_name: dict[str, list[Path]] = {}
    for f in (ROOT / "tests").rglob("*.py"):
        by_name.setdefault(f.name, []).append(f)
    return by_name


@cache
def functions(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return frozenset(n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))


def resolve(token: str) -> Path | None:
    if "/" in token:
        p = ROOT / token
        return p if p.exists() else None
    found = _tests_by_name().get(token, [])
    return found[0] if len(found) == 1 else None


def split_row(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip())
    return [c.strip() for c in cells[1:-1]]


def tables(text: str):
    """Yield (line number, header, rows) of every markdown table; rows are (line number, cells)."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|[\s:|-]+\|$", lines[i + 1].strip()):
            header = [h.lower() for h in split_row(lines[i])]
            rows, j = [], i + 2
            while j < len(lines) and lines[j].startswith("|"):
                rows.append((j + 1, split_row(lines[j])))
                j += 1
            yield i + 1, header, rows
            i = j
        else:
            i += 1


def check_cell(cell: str, where: str) -> tuple[int, list[str]]:
    """Return (number of references, problems) of one test cell."""
    problems, refs, current = [], 0, None
    for m in TOKEN.finditer(cell):
        if m["path"]:
            p = resolve(m["path"])
            if p is None:
                problems.append(f"{where}: no file {m['path']!r} (or its name is ambiguous)")
                current = None
                continue
            if p.suffix == ".py":
                current = p
                refs += p.relative_to(ROOT).parts[0] == "tests"
        elif m["dir"]:
            if not (ROOT / m["dir"]).is_dir():
                problems.append(f"{where}: no directory {m['dir']!r}")
        else:
            name = m["name"]
            if current is None:
                problems.append(f"{where}: {name} has no file before it in its cell")
            elif name not in functions(current):
                problems.append(f"{where}: {current.relative_to(ROOT)} defines no {name}")
            else:
                refs += 1
    return refs, problems


def test_every_test_the_threat_model_cites_exists():
    text = DOC.read_text()
    problems, rows_checked = [], 0
    for _, header, rows in tables(text):
        if "test" not in header:
            continue
        col = header.index("test")
        for line, cells in rows:
            where = f"THREAT_MODEL.md:{line}"
            if len(cells) != len(header):
                problems.append(f"{where}: {len(cells)} cells for {len(header)} columns")
                continue
            refs, bad = check_cell(cells[col], where)
            problems += bad
            rows_checked += 1
            if refs == 0 and "(by construction" not in cells[col]:
                problems.append(f"{where}: the row names no test and does not say '(by construction'")
    for m in FULL_REF.finditer(text):
        path = ROOT / m[1]
        if not path.exists() or m[2] not in functions(path):
            problems.append(f"{m[1]}::{m[2]} does not exist")
    assert rows_checked > 50
    assert problems == []


def test_the_claims_are_numbered_in_order():
    text = DOC.read_text()
    claims = [t for t in tables(text) if t[1][:2] == ["#", "claim"]]
    assert len(claims) == 1
    numbers = [int(cells[0]) for _, cells in claims[0][2]]
    assert numbers == list(range(1, len(numbers) + 1))
