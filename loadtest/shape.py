"""A load shape made of stages, each ``duration:users:spawn_rate``, given by the profile's
``stages`` setting (stress: a step ramp; spike: a jump and back; soak: long and steady).

Listed next to the locustfile only in the profiles that use it (``locustfile = a.py, b.py``),
so the web UI and the steady profiles keep their plain user count.
"""

from __future__ import annotations

from functools import cached_property

from locust import LoadTestShape
from locust.util.timespan import parse_timespan


def parse_stages(text: str) -> list[tuple[int, int, float]]:
    """``"30s:10:5, 1m:20:5"`` -> ``[(30, 10, 5.0), (60, 20, 5.0)]``."""
    stages = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        duration, users, rate = part.split(":")
        stages.append((parse_timespan(duration), int(users), float(rate)))
    if not stages:
        raise ValueError("the profile sets no stages (stages = duration:users:spawn_rate, ...)")
    return stages


class StagedShape(LoadTestShape):
    @cached_property
    def stages(self) -> list[tuple[int, int, float]]:
        return parse_stages(self.runner.environment.parsed_options.stages)

    def tick(self) -> tuple[int, float] | None:
        run_time, end = self.get_run_time(), 0
        for duration, users, rate in self.stages:
            end += duration
            if run_time < end:
                return users, rate
        return None  # the last stage is over: stop the test
