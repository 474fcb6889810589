"""The result every ``yarn-gateway check`` item yields (:class:`Check`) and its statuses."""

from __future__ import annotations

from dataclasses import dataclass

OK, WARN, FAIL = "OK", "WARN", "FAIL"


@dataclass(frozen=True)
class Check:
    """The outcome of one check: ``status`` is OK, WARN or FAIL."""

    status: str
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status} {self.name}: {self.detail}"
