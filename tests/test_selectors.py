"""Label selectors as the API defines them, and GPUPool namespaceSelector admission."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gpumix.planning import NamespaceAdmission
from gpumix.resources.selectors import LabelSelector, namespace_labels


def selector(**body: object) -> LabelSelector:
    return LabelSelector.model_validate(body)


@pytest.mark.parametrize(
    ("body", "labels", "expected"),
    [
        ({}, {}, True),  # an empty selector matches everything
        ({"matchLabels": {"team": "a"}}, {"team": "a", "x": "y"}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "b"}, False),
        ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]},
         {"team": "b"}, True),
        ({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]},
         {}, True),  # NotIn holds without the label, as in Kubernetes
        ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, {}, True),
        ({"matchLabels": {"team": "a"},
          "matchExpressions": [{"key": "tier", "operator": "In", "values": ["gpu"]}]},
         {"team": "a"}, False),  # every term must hold
    ],
)  # fmt: skip
def test_label_selector_semantics(body: dict, labels: dict, expected: bool) -> None:  # type: ignore[type-arg]
    assert selector(**body).matches(labels) is expected


def test_a_requirement_with_values_that_do_not_fit_its_operator_is_refused() -> None:
    with pytest.raises(ValidationError, match="In needs at least one value"):
        selector(matchExpressions=[{"key": "team", "operator": "In"}])
    with pytest.raises(ValidationError, match="Exists takes no values"):
        selector(matchExpressions=[{"key": "team", "operator": "Exists", "values": ["a"]}])


def test_admission_uses_the_namespace_labels_and_always_its_name() -> None:
    admission = NamespaceAdmission(
        selectors={
            "h100-team-a": selector(matchLabels={"team": "a"}),
            "l4-by-name": selector(matchLabels={"kubernetes.io/metadata.name": "research"}),
        },
        namespace_labels={"serving": {"team": "a"}},
    )
    assert admission.admits("h100-team-a", "serving")
    assert not admission.admits("h100-team-a", "research")  # labels unknown: name only
    assert admission.admits("l4-by-name", "research")
    assert admission.admits("any-other-pool", "research")
    assert namespace_labels("x", {"a": "b"}) == {"a": "b", "kubernetes.io/metadata.name": "x"}
