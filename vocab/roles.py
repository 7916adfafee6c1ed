"""Who may act: the principal roles, the parties of an agreement, and the role of the service itself.

A principal has exactly one `Role` (`gateway.identities` stores it, `policies.actor.Actor` carries it). A
`Party` is a principal's relation to one agreement (its owner, its grantee, or any regulator); the decision
table (`policies.decision.RULES`) says which parties may take each action. Not to be confused with a
*column* role (`catalog.columns.Role`: id, feature, never_output...), which describes data, not people.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ANALYSTS", "SYSTEM", "Party", "ReviewerKind", "Role"]


class Role(StrEnum):
    """The role of a principal (one per principal, fixed at creation)."""

    ADMIN = "admin"  # creates principals, manages the negative list, reads incidents
    OWNER = "owner"  # a data owner: registers datasets, proposes agreements, approves jobs and releases
    OPERATOR = "operator"  # an analyst: runs queries, training and custom code under an agreement
    BANK = "bank"  # an analyst that verifies, scores and intersects sets under an agreement
    REGULATOR = "regulator"  # reads every agreement, audit entry and report; changes nothing
    AUTHORITY = "authority"  # the data authority (数据主管部门): reviews and files (备案) agreements, suspends
    # any agreement, disables or re-enables any principal, issues rectification orders (整改)
    REVIEWER = "reviewer"  # a named reviewer (its `ReviewerKind`): signs off on the agreements under review the
    # authority assigned to it, and does nothing else


class ReviewerKind(StrEnum):
    """Who a named reviewer (role ``reviewer``) speaks for; the admin sets it when creating the principal."""

    EXPERT_COMMITTEE = "expert_committee"  # the expert committee (专家委员会)
    CYBERSPACE = "cyberspace"  # the cyberspace administration (网信)


#: The roles that may be the grantee of an agreement (the analysts).
ANALYSTS: frozenset[Role] = frozenset({Role.OPERATOR, Role.BANK})

#: The role recorded on audit entries the service writes itself (start-up, the worker, expiry sweeps).
SYSTEM = "system"


class Party(StrEnum):
    """A principal's relation to one agreement."""

    OWNER = "owner"  # the agreement's data owner
    GRANTEE = "grantee"  # the analyst the agreement grants access to
    REGULATOR = "regulator"  # any regulator (a party to every agreement, read-only)
    AUTHORITY = "authority"  # the data authority (a party to every agreement: review, filing, suspension, orders)
    REVIEWER = "reviewer"  # a named reviewer the authority assigned, while the agreement is under review
    CO_OWNER = "co_owner"  # an owner, besides the proposer, whose datasets the agreement lists (signs its part)
