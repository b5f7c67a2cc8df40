"""The pure fact-map diff that history and the drift engine build on."""

from __future__ import annotations

from collector.domain.diff import ChangeKind, FactChange, diff_facts
from skewwatch.core.facts import FactValue


def test_changed_value_is_reported_with_before_and_after() -> None:
    assert diff_facts({"runtime.dtype": "float16"}, {"runtime.dtype": "float32"}) == [
        FactChange("runtime.dtype", ChangeKind.CHANGED, "float16", "float32")
    ]


def test_added_and_removed_keys_are_marked_and_sorted() -> None:
    changes = diff_facts(
        {"runtime.enforce_eager": True, "model.id": "m"},
        {"model.id": "m", "runtime.quantization": "fp8"},
    )
    assert [c.as_dict() for c in changes] == [
        {
            "key": "runtime.enforce_eager",
            "category": "runtime",
            "change": "removed",
            "before": True,
            "after": None,
        },
        {
            "key": "runtime.quantization",
            "category": "runtime",
            "change": "added",
            "before": None,
            "after": "fp8",
        },
    ]


def test_type_change_counts_even_when_python_equality_says_equal() -> None:
    changes = diff_facts(
        {"runtime.max_num_seqs": 1, "runtime.x": True}, {"runtime.max_num_seqs": 1.0, "runtime.x": 1}
    )
    assert [c.key for c in changes] == ["runtime.max_num_seqs", "runtime.x"]


def test_null_value_added_is_distinguishable_from_absence() -> None:
    (change,) = diff_facts({}, {"runtime.quantization": None})
    assert change.kind is ChangeKind.ADDED and change.after is None


def test_equal_maps_have_no_changes_regardless_of_order() -> None:
    a: dict[str, FactValue] = {
        "model.config.rope_scaling": {"type": "llama3", "factor": 8.0},
        "runtime.dtype": "bfloat16",
    }
    b: dict[str, FactValue] = {
        "runtime.dtype": "bfloat16",
        "model.config.rope_scaling": {"factor": 8.0, "type": "llama3"},
    }
    assert diff_facts(a, b) == []
