"""The docs are navigable: every relative link and #anchor resolves, every page has a table of
contents, the README stays a short front page, and each alert's runbook_url names a section."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *DOCS]
PAGES += sorted((ROOT / "charts").glob("*/README.md"))

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.DOTALL | re.MULTILINE)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"(?<!\!)\[(?:[^\]\n]|\][^(])*?\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.MULTILINE)


def prose(text: str) -> str:
    """Text without fenced code blocks (links and headings there are not links or headings)."""
    return _FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lower-cased, punctuation dropped,
    spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, heading in _HEADING.findall(prose(path.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    return _LINK.findall(_CODE.sub("", prose(path.read_text(encoding="utf-8"))))


def broken_links(path: Path) -> list[str]:
    problems = []
    for target in links(path):
        parts = urlsplit(target)
        if parts.scheme or target.startswith("//"):
            continue  # the outside world is not ours to check offline
        dest = (path.parent / unquote(parts.path)).resolve() if parts.path else path
        if not dest.exists():
            problems.append(f"{target}: no such file")
            continue
        if parts.fragment:
            if dest.suffix != ".md":
                problems.append(f"{target}: an anchor into a file that is not Markdown")
            elif parts.fragment not in anchors(dest):
                problems.append(f"{target}: no heading #{parts.fragment} in {dest.name}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert page.exists(), page
    assert broken_links(page) == []


def test_the_link_checker_finds_a_broken_file_and_a_broken_anchor(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_text("# B\n\n## Real section\n")
    page = tmp_path / "a.md"
    page.write_text(
        "# A\n[ok](b.md#real-section) [gone](missing.md) [bad](b.md#nothing) [self](#a)\n"
        "```\n[in code](nowhere.md)\n```\n"
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "b.md#nothing: no heading #nothing in b.md",
    ]


def test_slugs_follow_githubs_rules() -> None:
    assert slug("`GET /orders/{order_id}?wait=N` — wait until final") == (
        "get-ordersorder_idwaitn--wait-until-final"
    )
    assert slug("Upstream: Juspay, Juspay's sandbox") == "upstream-juspay-juspays-sandbox"


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_docs_page_has_a_table_of_contents_of_its_sections(page: Path) -> None:
    text = prose(page.read_text(encoding="utf-8"))
    assert "\n## Contents\n" in text, f"{page.name} has no '## Contents'"
    toc = text.split("\n## Contents\n", 1)[1].split("\n## ", 1)[0]
    listed = {urlsplit(target).fragment for target in _LINK.findall(toc) if target.startswith("#")}
    sections = {slug(h) for level, h in _HEADING.findall(text) if level == "##"} - {"contents"}
    assert sections - listed == set(), f"{page.name}: sections missing from its contents"


def test_readme_is_a_short_front_page_with_the_two_commands_first() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    head = "\n".join(text.splitlines()[:20])
    assert "make demo" in head
    assert "make test" in head
    # The map reaches every page in docs/.
    linked = {Path(urlsplit(t).path).name for t in links(ROOT / "README.md")}
    assert {p.name for p in DOCS} - linked == set()


def test_every_alert_links_its_runbook_section() -> None:
    rules = yaml.safe_load((ROOT / "k8s" / "monitoring" / "rules.yaml").read_text())
    sections = anchors(ROOT / "docs" / "operations.md")
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert alerts
    for rule in alerts:
        # A path in this repository; the Helm chart prefixes a base URL where one is set.
        url = rule["annotations"]["runbook_url"]
        assert url == f"docs/operations.md#{slug(rule['alert'])}", (rule["alert"], url)
        assert slug(rule["alert"]) in sections, f"docs/operations.md has no {rule['alert']}"
