"""OVHcloud's public price catalogue, read for the OVH adapter (providers/server/ovh.py).

``GET /order/catalog/public/cloud?ovhSubsidiary=FR`` needs no credentials. Each ``addons[]``
entry is a plan code (``d2-4.monthly.postpaid``, ``d2-4.consumption``,
``volume.classic.consumption``, ``snapshot.consumption``, ...) with ``pricings[]``; a pricing's
``price`` and ``tax`` (VAT) are integers in 10^-8 of ``locale.currencyCode``, per
``intervalUnit`` (``hour`` or ``month``), and for storage per GB.

Monthly figures: a monthly plan is taken as it is. Hourly plans (storage, and instances billed
by the hour) are multiplied by 730 hours, the month OVHcloud itself uses on its price pages.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from providers.server.base import Price, ServerError

HOURS_PER_MONTH = 730
UNIT = Decimal("0.00000001")  # the catalogue's prices are integers of 10^-8 currency units
SNAPSHOT_PLAN = "snapshot.consumption"
VOLUME_PLAN = "volume.classic.consumption"
# The subsidiary whose prices (and VAT) the catalogue lists, by API endpoint.
SUBSIDIARY = {"ovh-eu": "FR", "ovh-ca": "CA", "ovh-us": "US"}


class PriceCatalogue:
    def __init__(self, document: dict[str, Any]) -> None:
        self.currency = str(document.get("locale", {}).get("currencyCode", "EUR"))
        self._addons = {a["planCode"]: a for a in document.get("addons", []) if "planCode" in a}

    def monthly(self, plan_code: str | None) -> Price | None:
        """The gross monthly price of a plan; None when the catalogue does not list it."""
        pricing = self._pricing(plan_code)
        if pricing is None:
            return None
        gross = (Decimal(pricing["price"]) + Decimal(pricing.get("tax", 0))) * UNIT
        if pricing.get("intervalUnit") == "hour":
            gross *= HOURS_PER_MONTH
        return Price(gross, self.currency)

    def per_gb_month(self, plan_code: str | None, fallback: str) -> Price:
        """Storage (volumes, snapshots) is priced per GB; regional plan codes such as
        ``volume.classic.consumption.LZ.AF`` fall back to the general one."""
        for code in (plan_code, fallback):
            if (price := self.monthly(code)) is not None:
                return price
        raise ServerError(f"OVHcloud's price catalogue lists no {fallback}.", "service_error")

    def _pricing(self, plan_code: str | None) -> dict[str, Any] | None:
        addon = self._addons.get(plan_code or "")
        if addon is None:
            return None
        for pricing in addon.get("pricings", []):
            if pricing.get("intervalUnit") in {"hour", "month"} and "price" in pricing:
                found: dict[str, Any] = pricing
                return found
        return None
