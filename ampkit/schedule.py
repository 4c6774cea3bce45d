"""The scheduling recipes (cron, systemd timer, Kubernetes CronJob, Cloud Scheduler + Cloud Run),
rendered for a cadence: `ampkit schedule KIND --interval-minutes N` (pure, but for reading the
templates shipped in ampkit/resources/recipes/). `scheduled/` in the repository holds them rendered
for the default, hourly (a test keeps the two the same).
"""
from __future__ import annotations

import dataclasses
import string
from importlib import resources

# Recipe kind -> (template file, the file name it is installed as).
RECIPES = {
    "cron": "crontab",
    "systemd-timer": "ampkit-hourly-sync.timer",
    "systemd-service": "ampkit-hourly-sync.service",
    "kubernetes": "kubernetes-cronjob.yaml",
    "cloud-scheduler": "cloud-scheduler.sh",
}
# A sub-hourly run stages its own rows (stage_in_run): a scheduled query at that cadence would read
# three days of event_logs every few minutes, and its rows would wait out the settle time.
# An hourly run starts at five past, after a scheduled staging query on the hour has committed
# (Google advises against exactly on the hour: it may fire twice); a sub-hourly one a minute in.
HOURLY_MINUTE = 5
SUB_HOURLY_MINUTE = 1


@dataclasses.dataclass(frozen=True)
class Cadence:
    """When runs start, every `minutes` (a divisor of 60, or whole hours dividing a day)."""

    minutes: int

    @property
    def minute(self) -> int:
        return HOURLY_MINUTE if self.minutes >= 60 else min(SUB_HOURLY_MINUTE, self.minutes - 1)

    def cron(self) -> str:
        """The five-field cron expression (cron, Kubernetes, Cloud Scheduler)."""
        if self.minutes < 60:
            return f"{self.minute}-59/{self.minutes} * * * *" if self.minutes > 1 else "* * * * *"
        hours = self.minutes // 60
        return f"{self.minute} * * * *" if hours == 1 else f"{self.minute} */{hours} * * *"

    def on_calendar(self) -> str:
        """systemd's OnCalendar= expression."""
        if self.minutes < 60:
            return f"*-*-* *:{self.minute:02d}/{self.minutes}:00"
        hours = self.minutes // 60
        return f"*-*-* *:{self.minute:02d}:00" if hours == 1 else f"*-*-* 00/{hours}:{self.minute:02d}:00"

    def when(self) -> str:
        if self.minutes == 60:
            return "at five past every hour, after the scheduled staging query has run"
        if self.minutes < 60:
            return f"every {self.minutes} minutes, from minute {self.minute} (each run stages its own rows: stage_in_run)"
        return f"every {self.minutes // 60} hours, at five past"

    def starting_deadline(self) -> int:
        """Seconds a missed start may still begin: half an interval (the next start is as good), at most 30 min."""
        return min(1800, self.minutes * 30)


def render(kind: str, minutes: int) -> str:
    """The recipe `kind` for runs every `minutes`."""
    if kind not in RECIPES:
        raise KeyError(kind)
    cadence = Cadence(minutes)
    template = resources.files("ampkit").joinpath("resources", "recipes", RECIPES[kind]).read_text(encoding="utf-8")
    return string.Template(template).substitute(
        interval=minutes, stage_in_run=str(minutes < 60).lower(), cron=cadence.cron(), on_calendar=cadence.on_calendar(), when=cadence.when(),
        starting_deadline=cadence.starting_deadline())
