"""One series of a node's metrics, read exactly: a series that is not exported fails, naming
it and the series of that metric that are, never reads as a silent 0 (a renamed reason, or one
never exported, would make every ``== 0`` check pass).

``value_of(samples, name, **labels)`` reads from prometheus samples: a registry's
(``registry_samples``) or a scraped ``/metrics`` text's (``text_samples``). The node exports
every known reason of its drops, refusals and bad input at 0 from the start
(``paradoxplex.node.metrics``), so those read 0 until counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from prometheus_client.samples import Sample

__all__ = ["NoSuchSeries", "registry_samples", "text_samples", "value_of"]


def series_name(name: str, labels: Mapping[str, str]) -> str:
    inside = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return f"{name}{{{inside}}}" if labels else name


class NoSuchSeries(LookupError):
    """A metric series that is not exported."""

    def __init__(self, name: str, labels: Mapping[str, str], existing: list[str]) -> None:
        self.series = series_name(name, labels)
        self.existing = existing
        there = ", ".join(existing) if existing else f"none: no {name} at all"
        super().__init__(f"no series {self.series}; the series of {name} are: {there}")


def value_of(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """The value of the series ``name{labels}`` (exactly those labels); ``NoSuchSeries`` when it
    is not among ``samples``."""
    existing: list[str] = []
    for sample in samples:
        if sample.name != name:
            continue
        if sample.labels == labels:
            return float(sample.value)
        existing.append(series_name(sample.name, sample.labels))
    raise NoSuchSeries(name, labels, sorted(existing))


def registry_samples(registry: CollectorRegistry) -> Iterator[Sample]:
    for family in registry.collect():
        yield from family.samples


def text_samples(text: str) -> Iterator[Sample]:
    """The samples of a ``/metrics`` page (Prometheus text format)."""
    for family in text_string_to_metric_families(text):
        yield from family.samples
