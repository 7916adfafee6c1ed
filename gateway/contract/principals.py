"""Examples of the principals routes (their models live with the routes: `gateway.routes.principals`)."""

from __future__ import annotations

from typing import Any

PRINCIPAL: dict[str, Any] = {"id": "p_815573785a3cc2ce", "name": "icbc-wuxi", "role": "bank"}
CREATED: dict[str, Any] = {**PRINCIPAL, "token": "vbx_Ja7DjJ_FB_hynqDs4lw_iwXPwpBG5atmWxFgvh0tG3U"}
CREATE_REQUEST: dict[str, Any] = {"name": "icbc-wuxi", "role": "bank"}
