"""Examples of the principals routes (their models live with the routes: `gateway.routes.principals`)."""

from __future__ import annotations

from typing import Any

PRINCIPAL: dict[str, Any] = {"id": "p_815573785a3cc2ce", "name": "icbc-wuxi", "role": "bank"}
CREATED: dict[str, Any] = {**PRINCIPAL, "token": "vbx_Ja7DjJ_FB_hynqDs4lw_iwXPwpBG5atmWxFgvh0tG3U"}
CREATE_REQUEST: dict[str, Any] = {"name": "icbc-wuxi", "role": "bank"}
STATE: dict[str, Any] = {**PRINCIPAL, "created_at": "2026-01-05T09:30:00Z", "created_by": "admin",
                         "expires_at": "2027-01-05T09:30:00Z", "disabled": False}
ROTATED: dict[str, Any] = {**STATE, "token": "vbx_q1n3Hc0mWf1xTz9pQeR5bVdL8kYs2uAaJ4oNgE7iXtM"}
EXPIRY_REQUEST: dict[str, Any] = {"expires_at": "2026-12-31T23:59:59Z"}
