"""A `WorkerHost` for tests that drive one worker adapter directly, without a daemon.

It records what the worker hands over, in order, and lets a test wait for an item:

    host = RecordingHost()
    worker = ClaudeWorker(spec, host)
    await worker.start()
    request = await host.wait_for_control("worker:permission")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent_client.workers.base import Refused
from tests.support.processes import wait_for


@dataclass
class Recorded:
    kind: str  # "output" or "control"
    event: str
    fields: dict[str, Any]


@dataclass
class RecordingHost:
    """Every output item and control event of one worker, in the order handed over."""

    records: list[Recorded] = field(default_factory=list)
    refuse: Callable[[str, dict[str, Any]], tuple[str, str] | None] | None = None
    """Optionally refuse a control event, as the gateway would: (code, message)."""

    def output(self, event: str, fields: dict[str, Any]) -> None:
        self.records.append(Recorded("output", event, fields))

    def control(
        self, event: str, fields: dict[str, Any], on_refused: Refused | None = None
    ) -> None:
        self.records.append(Recorded("control", event, fields))
        refusal = self.refuse(event, fields) if self.refuse is not None else None
        if refusal is not None and on_refused is not None:
            on_refused(*refusal)

    @property
    def outputs(self) -> list[dict[str, Any]]:
        """The `worker:output` items' fields, in order."""
        return [r.fields for r in self.records if r.event == "worker:output"]

    def of_type(self, output_type: str) -> list[dict[str, Any]]:
        return [item for item in self.outputs if item.get("type") == output_type]

    def controls(self, event: str) -> list[dict[str, Any]]:
        return [r.fields for r in self.records if r.kind == "control" and r.event == event]

    async def wait_for_output(
        self, output_type: str, predicate: Callable[[dict[str, Any]], bool] | None = None,
        *, count: int = 1, timeout_s: float = 60.0,
    ) -> dict[str, Any]:  # fmt: skip
        """The `count`-th `worker:output` item of `output_type` matching `predicate`."""

        def find() -> dict[str, Any] | None:
            found = [i for i in self.of_type(output_type) if predicate is None or predicate(i)]
            return found[count - 1] if len(found) >= count else None

        item: dict[str, Any] = await wait_for(
            find, timeout_s=timeout_s, what=f"worker:output {output_type} #{count}"
        )
        return item

    async def wait_for_control(
        self, event: str, *, count: int = 1, timeout_s: float = 60.0
    ) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            found = self.controls(event)
            return found[count - 1] if len(found) >= count else None

        control: dict[str, Any] = await wait_for(
            find, timeout_s=timeout_s, what=f"control {event} #{count}"
        )
        return control
