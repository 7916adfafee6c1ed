"""The bundled fonts: where the console and the PDF reports find them.

`make font` (run by `make demo` and `make test`) copies Droid Sans Fallback (CJK, Apache-2.0, Debian
``fonts-droid-fallback``) and DejaVu Sans (Latin, Greek, symbols; Debian ``fonts-dejavu-core``) into
``gateway/console/static/fonts/``. The console serves the CJK font under ``/console/static/fonts/`` (an
``@font-face`` in console.css, allowed by the CSP's ``font-src 'self'``); the PDF reports embed both (DejaVu for the
text, the CJK font as fallback for every character DejaVu lacks). A container image without the copy finds the same
files at their Debian paths.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CJK", "DIR", "SANS", "SANS_BOLD", "FontMissing", "path"]

DIR = Path(__file__).parent / "console" / "static" / "fonts"
CJK = "DroidSansFallbackFull.ttf"
SANS = "DejaVuSans.ttf"
SANS_BOLD = "DejaVuSans-Bold.ttf"
_DEBIAN = {CJK: Path("/usr/share/fonts/truetype/droid"), SANS: Path("/usr/share/fonts/truetype/dejavu"),
           SANS_BOLD: Path("/usr/share/fonts/truetype/dejavu")}


class FontMissing(RuntimeError):
    pass


def path(name: str) -> Path:
    """The bundled font ``name`` (`CJK`, `SANS`, `SANS_BOLD`); `FontMissing` when `make font` has not run."""
    for candidate in (DIR / name, _DEBIAN[name] / name):
        if candidate.is_file():
            return candidate
    raise FontMissing(f"font {name} is not installed: run `make font`")
