"""Solutions to the exercises of notebooks/07-claims.ipynb, and a named wrong attempt for each."""

from __future__ import annotations

from ...container import Container
from ...rootfs import DEFAULT_ROOTFS as IMAGE
from ...spec import ContainerSpec
from .. import claims


def claims_predictions():
    return dict(claims.VERDICTS)  # any word per sentence passes; these also score 20 of 20


def claims_experiment():
    """Sentence 11: a pod's second container in the first one's network namespace."""
    first = Container.start(ContainerSpec(IMAGE, ["sleep", "600"]))
    second = Container.start(ContainerSpec(IMAGE, ["sleep", "600"], join={"net": first.pid}))
    return 11, first, second


def only_the_first_sentences():
    return {1: "partly", 2: "false"}


def two_of_their_own():
    return 11, *(Container.start(ContainerSpec(IMAGE, ["sleep", "600"])) for _ in range(2))


SOLVERS = {
    "claims-predictions": claims_predictions,
    "claims-experiment": claims_experiment,
}

WRONG = {
    "claims-predictions": (only_the_first_sentences, "no prediction for sentence 3"),
    "claims-experiment": (two_of_their_own, "share no namespace"),
}
