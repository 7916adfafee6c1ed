"""The console in zh-CN in a real browser: the header's switch turns the pages Chinese, and every Chinese character
on the regulator's home and monthly report is drawn with the bundled CJK font (no missing-glyph boxes), which the
console serves itself (CSP ``font-src 'self'``) rather than relying on the machine's fonts. Screenshots go to
test-artifacts/console/ (``zh-CN-*.png``)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from fontTools.ttLib import TTFont

from gateway import fonts
from tests.system.browser.test_console_browser import (  # noqa: F401  (browser: the module's one chromium)
    CHROMIUM,
    _shot,
    _sign_in,
    browser,
)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (run `make browser`)")

CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")
TITLE = "无锡市税务局授权运营协议：匿踪查询与核验（分类分级）"
FACE_LOADED = """async () => { await document.fonts.ready;
    const faces = [...document.fonts].filter(f => f.family.replace(/["']/g, '') === 'Veilbox CJK');
    await Promise.all(faces.map(f => f.load()));
    return faces.map(f => f.status); }"""


def _fonts_of(page: Any, selector: str) -> list[dict[str, Any]]:
    """The fonts Chromium actually drew the text of the elements matching ``selector`` with (DevTools:
    CSS.getPlatformFontsForNode)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    nodes = cdp.send("DOM.querySelectorAll", {"nodeId": root, "selector": selector})["nodeIds"]
    used = [f for n in nodes for f in cdp.send("CSS.getPlatformFontsForNode", {"nodeId": n})["fonts"]]
    cdp.detach()
    return used


def test_zh_cn_pages_draw_every_chinese_character_with_the_bundled_font(browser: Any, console: Any) -> None:  # noqa: F811
    """The check for missing-glyph boxes: (1) the console's @font-face loads (status "loaded": served under the
    CSP); (2) Chromium reports it drew the Chinese heading and the report's title cell with that custom font (DevTools
    platform fonts: "Droid Sans Fallback", custom); (3) every Chinese character on the page is in the font's cmap, so
    none can fall to a .notdef box; (4) a Chinese string measures exactly one em per character in the font, as its
    glyphs do (a box would not)."""
    console.parties.agreement(title=TITLE)
    with TTFont(str(fonts.path(fonts.CJK)), lazy=True) as font:
        cmap = font.getBestCmap()
    reg = _sign_in(browser, console, "regulator")
    reg.get_by_role("link", name="中文").click()
    reg.wait_for_load_state()
    assert reg.locator("html").get_attribute("lang") == "zh-CN"
    assert reg.get_by_role("link", name="月度报告", exact=True).is_visible()
    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    for name, path, cells in (("home", "/console/", ["h1"]),
                              ("report", f"/console/reports?month={month}", ["h1", "#report-agreements td.title"])):
        reg.goto(path)
        assert reg.evaluate(FACE_LOADED) == ["loaded"], name
        for selector in cells:
            used = _fonts_of(reg, selector)
            assert any(f["isCustomFont"] and "Droid" in f["familyName"] for f in used), (name, selector, used)
        text = reg.locator("body").inner_text()
        chinese = set(CJK.findall(text))
        assert len(chinese) > 10, name
        assert not [c for c in chinese if ord(c) not in cmap], name
        widths = reg.evaluate("""(s) => { const c = document.createElement('canvas').getContext('2d');
            c.font = "20px 'Veilbox CJK'"; return c.measureText(s).width; }""", "匿踪查询数源单位整改备案")
        assert widths == pytest.approx(12 * 20, abs=1), name
        _shot(reg, f"zh-CN-{name}")
    assert TITLE in reg.locator("#report-agreements").inner_text()
    reg.get_by_role("link", name="English").click()
    reg.wait_for_load_state()
    assert reg.locator("html").get_attribute("lang") == "en"
    assert reg.get_by_role("heading", name=re.compile("Monthly report")).is_visible()
