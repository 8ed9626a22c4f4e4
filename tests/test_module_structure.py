"""Module structure (issue 14, from a read of the code): no import cycle between the augmentation experiment and its
report, the experiment split into its configuration and its run loop, and the feature extractors free of the
classifier-training workflow. Read from the source (every import, also inside functions), not by importing."""

from __future__ import annotations

import ast
from pathlib import Path

import dermsynth

SRC = Path(dermsynth.__file__).parent


def _imports(module: str) -> set[str]:
    """Every dermsynth module imported anywhere in ``module`` (dotted name)."""
    tree = ast.parse((SRC / (module.removeprefix("dermsynth.").replace(".", "/") + ".py")).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dermsynth"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("dermsynth"))
    return found


def test_experiment_and_its_report_form_no_cycle():
    assert "dermsynth.classify.experiment" not in _imports("dermsynth.classify.experiment_report")
    assert "dermsynth.classify.experiment" not in _imports("dermsynth.classify.experiment_config")
    assert "dermsynth.classify.experiment_report" in _imports("dermsynth.classify.experiment")


def test_experiment_configuration_is_its_own_module():
    from dermsynth.classify import experiment, experiment_config

    for name in ("Condition", "AugmentExperimentConfig", "synthetic_counts", "build_training_set"):
        assert getattr(experiment_config, name).__module__ == "dermsynth.classify.experiment_config"
    assert not hasattr(experiment, "_allocate") and not hasattr(experiment, "_training_set")


def test_feature_extractors_do_not_import_the_training_workflow():
    imported = _imports("dermsynth.metrics.features")
    assert not imported & {"dermsynth.classify.fit", "dermsynth.classify.extractor", "dermsynth.classify",
                           "dermsynth.train.checkpoint"}, imported
    assert "dermsynth.classify.networks" in imported  # the network and checkpoint format only
    from dermsynth.classify.extractor import train_feature_extractor
    from dermsynth.metrics import features

    assert not hasattr(features, "train_feature_extractor")
    assert train_feature_extractor.__module__ == "dermsynth.classify.extractor"
