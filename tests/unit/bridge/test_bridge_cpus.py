"""The worker's CPU list option: parsing, and refusing CPUs the process may not use."""

from __future__ import annotations

import os

import pytest

from muster.bridge.process import parse_cpus, pin_to_cpus
from muster.errors import Invalid


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0", {0}), ("0,2", {0, 2}), ("0-3,6", {0, 1, 2, 3, 6}), (" 1 , 1-2 ", {1, 2})],
)
def test_cpu_lists_are_read_as_taskset_writes_them(text: str, cpus: set[int]) -> None:
    """Single CPUs, comma lists and inclusive ranges, in any mix."""
    assert parse_cpus(text) == frozenset(cpus)


@pytest.mark.parametrize(("text", "rule"), [("", "is not a CPU list"), ("a", "is not a CPU list"),
                                            ("1-", "is not a CPU list"), ("-1", "is not a CPU list"),
                                            ("0,,1", "is not a CPU list"), ("\u00b2", "is not a CPU list"),
                                            ("\u0663-\u0664", "is not a CPU list"), ("3-1", "runs backwards"),
                                            ("0-99999999", "beyond 8191"), ("8192", "beyond 8191")])  # fmt: skip
def test_a_malformed_cpu_list_names_the_field_and_the_rule(text: str, rule: str) -> None:
    """Anything else is refused as Invalid on the field ``cpus``."""
    with pytest.raises(Invalid) as caught:
        parse_cpus(text)
    assert caught.value.field == "cpus" and rule in caught.value.rule


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux-only")
def test_pinning_to_a_cpu_outside_the_allowed_set_is_refused_and_changes_nothing() -> None:
    """A CPU the process may not use is an Invalid ``cpus``, raised before any thread moves."""
    before = os.sched_getaffinity(0)
    with pytest.raises(Invalid) as caught:
        pin_to_cpus(frozenset({max(before) + 1}))
    assert caught.value.field == "cpus" and "subset" in caught.value.rule
    assert os.sched_getaffinity(0) == before


def test_a_pool_takes_pin_cpus_or_cpus_not_both() -> None:
    """WorkerPool refuses pin_cpus=True together with a fixed cpus list for every worker."""
    from muster.bridge import WorkerPool
    from muster.bridge.examples import ExampleAdapter

    with pytest.raises(Invalid) as caught:
        WorkerPool(2, ExampleAdapter, pin_cpus=True, cpus=[0])
    assert caught.value.field == "pin_cpus"


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux-only")
@pytest.mark.parametrize("cpus", [[], [4096]])
def test_a_worker_refuses_cpus_it_could_not_run_on_before_starting(cpus: list[int]) -> None:
    """Worker(cpus=...) checks the list when it is made: Invalid on cpus, no process started."""
    from muster.bridge import Worker
    from muster.bridge.examples import ExampleAdapter

    with pytest.raises(Invalid) as caught:
        Worker(ExampleAdapter, cpus=cpus)
    assert caught.value.field == "cpus"
