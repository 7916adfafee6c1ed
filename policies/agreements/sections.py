"""The agreement document's contractual sections (授权运营协议): conditions, responsibilities, exit cases, ownership of
derived data and models, usage feedback — and what a document needs before the data authority files it.

These are fields of `policies.agreements.document.AgreementDocument` (docs/agreements.md, "The document, field by
field"). Each is optional and left out of the canonical JSON while unset, so every document written before the
sections existed keeps its canonical JSON and ``document_hash``:

- ``document_version``: the document schema version (`DOCUMENT_VERSION` today; 1, the default, when absent);
- ``conditions`` (授权条件): the conditions the grant is subject to, one text each;
- ``responsibilities`` (谁授权谁负责、谁运营谁负责、谁使用谁负责): the owner's, the operator's (the platform's) and
  the grantee's security responsibility, each a text and its listed security measures;
- ``exit_cases`` (退出情形): the cases in which the grant ends before ``valid_until`` (what then happens to the
  outputs is the exit clause's, ``exit``);
- ``derived`` (衍生数据和模型的归属): who owns derived data and trained models;
- ``feedback`` (使用反馈义务): what the grantee reports on its use, how often and to whom.

Proposing needs none of them. Filing (备案) does: `missing_for_filing` lists every section a document lacks, and the
owner's submission and the authority's filing are refused with ``INVALID_REQUEST``, one
``{"reason": "document.incomplete", "at": <field>}`` per missing section (`require_complete`). Texts are stripped;
lists are kept in the order written (a list of conditions or measures reads in order) but must not repeat.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from catalog.errors import invalid

__all__ = [
    "DOCUMENT_VERSION",
    "FILING_SECTIONS",
    "INCOMPLETE",
    "DerivedOwnership",
    "FeedbackDuty",
    "Responsibilities",
    "Responsibility",
    "missing_for_filing",
    "require_complete",
]

#: The document schema version this code writes (documents without ``document_version`` are version 1).
DOCUMENT_VERSION = 2
#: The sections a document needs before it can be submitted for filing and filed (备案), in document order.
FILING_SECTIONS = ("conditions", "responsibilities", "exit_cases", "derived", "feedback")
#: The reason of a refusal to submit or file a document lacking a section.
INCOMPLETE = "document.incomplete"

MAX_TEXT = 2000
MAX_ITEMS = 32


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _texts(v: tuple[str, ...], what: str) -> tuple[str, ...]:
    items = tuple(s.strip() for s in v)
    if any(not s or len(s) > MAX_TEXT for s in items):
        raise ValueError(f"each of {what} is a text of 1 to {MAX_TEXT} characters")
    if len(set(items)) != len(items):
        raise ValueError(f"{what} must not repeat")
    return items


class Responsibility(_Section):
    """One party's security responsibility: what it answers for, and the security measures it takes."""

    responsibility: str = Field(min_length=1, max_length=MAX_TEXT)
    measures: tuple[str, ...] = Field(min_length=1, max_length=MAX_ITEMS)

    @field_validator("measures")
    @classmethod
    def _measures(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _texts(v, "measures")


class Responsibilities(_Section):
    """Who answers for what: 谁授权谁负责 (``owner``), 谁运营谁负责 (``operator``, the platform running the
    service), 谁使用谁负责 (``grantee``)."""

    owner: Responsibility
    operator: Responsibility
    grantee: Responsibility


class DerivedOwnership(_Section):
    """Who owns what the grant produces (衍生数据和模型的归属): derived data (released results, aggregates) and
    trained models; ``note`` states any licence back or condition."""

    derived_data: Literal["owner", "grantee", "joint"]
    models: Literal["owner", "grantee", "joint"]
    note: str = Field("", max_length=MAX_TEXT)


class FeedbackDuty(_Section):
    """The grantee's usage-feedback duty (使用反馈义务): what it reports, every how many days, to whom."""

    every_days: int = Field(ge=1, le=366, strict=True)
    report_to: tuple[Literal["owner", "authority"], ...] = Field(min_length=1, max_length=2)
    contents: tuple[str, ...] = Field(min_length=1, max_length=MAX_ITEMS)

    @field_validator("report_to")
    @classmethod
    def _report_to(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            raise ValueError("report_to must not repeat")
        return tuple(sorted(v))

    @field_validator("contents")
    @classmethod
    def _contents(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _texts(v, "contents")


def section_texts(v: tuple[str, ...], what: str) -> tuple[str, ...]:
    """``conditions`` and ``exit_cases``: stripped, non-blank, at most 2000 characters each, no repeats."""
    return _texts(v, what)


def missing_for_filing(doc: object) -> list[str]:
    """The sections of `FILING_SECTIONS` that ``doc`` (an `AgreementDocument`) leaves empty, in document order."""
    return [name for name in FILING_SECTIONS if not getattr(doc, name, None)]


def require_complete(doc: object) -> None:
    """``INVALID_REQUEST`` naming every missing section when ``doc`` is not complete enough to file."""
    missing = missing_for_filing(doc)
    if missing:
        raise invalid(
            "the agreement document lacks sections filing requires",
            [{"reason": INCOMPLETE, "at": name, "message": f"the document has no {name} section"} for name in missing],
        )
