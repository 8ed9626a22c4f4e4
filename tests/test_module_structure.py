"""Module structure (issues 14 and 18, from a read of the code): the package's layers import only downwards, no
import cycle between the augmentation experiment and its report, the experiment split into its configuration and
its run loop, and the feature extractors free of the classifier-training workflow. Read from the source (every
import, also inside functions), not by importing."""

from __future__ import annotations

import ast
from pathlib import Path

import dermsynth

SRC = Path(dermsynth.__file__).parent

#: The layers of the package, lowest first: a module may import its own unit (top-level module or subpackage) and
#: the units of lower layers, never a unit of its own layer or of a higher one, at module level or inside a function.
#: ``checkpoint`` (the file format) and ``data.batch`` (dataset rows -> tensors) sit low because the trainer writes
#: what sampling, translating and editing read; the truncation sweep samples a checkpoint, so it is above ``sample``,
#: not in ``metrics``; the classifier networks live in ``models`` because the metrics' feature extractors load them;
#: ``report`` writes its figures and pages through ``io``'s atomic writer.
LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("io", "device", "defaults", "progress", "resources"),
    ("checkpoint", "models", "report"),
    ("data",),
    ("metrics",),
    ("sample",),
    ("train",),
    ("translate", "edit", "truncation"),
    ("evaluate", "demo", "classify", "vtt"),
    ("compare",),
    ("cli",),
    ("dermsynth",),  # the package itself: the public API, importing from everywhere
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def _module_name(path: Path, root: Path = SRC) -> str:
    parts = ["dermsynth", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    """``dermsynth.train.trainer`` -> ``train``; the package itself -> ``dermsynth``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "dermsynth"


def _all_imports(path: Path, root: Path = SRC) -> list[tuple[str, int]]:
    """(imported dermsynth module, line) for every import in ``path`` (a file under ``root``, the package folder),
    relative ones resolved."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names = [f"{base}.{node.module}" if node.module else base]
            else:
                names = [node.module or ""]
            if not node.level and node.module == "dermsynth":  # from dermsynth import x: x may be a unit
                names = [f"dermsynth.{a.name}" if (root / a.name).exists() or (root / f"{a.name}.py").exists()
                         else "dermsynth" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [(name, node.lineno) for name in names if name == "dermsynth" or name.startswith("dermsynth.")]
    return found


def test_every_unit_has_a_layer():
    units = {_unit(_module_name(p)) for p in SRC.rglob("*.py")}
    assert units <= set(RANK), f"add these to LAYERS: {sorted(units - set(RANK))}"


def test_layers_import_only_downwards():
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        unit = _unit(_module_name(path))
        for name, line in _all_imports(path):
            target = _unit(name)
            if target != unit and RANK[target] >= RANK[unit]:
                upward.append(f"{path.relative_to(SRC)}:{line} ({unit}, layer {RANK[unit]}) imports {name} "
                              f"({target}, layer {RANK[target]})")
    assert not upward, "\n".join(upward)


def test_the_layer_check_sees_function_local_and_relative_imports(tmp_path):
    """The scan itself: an upward import hidden inside a function, or written relatively, is found."""
    fake = tmp_path / "dermsynth"
    (fake / "models").mkdir(parents=True)
    (fake / "models" / "x.py").write_text("def f():\n    from dermsynth.data.maps import masked_subset\n"
                                          "    from ..sample import load_generator\n")
    found = [name for name, _ in _all_imports(fake / "models" / "x.py", root=fake)]
    assert found == ["dermsynth.data.maps", "dermsynth.sample"]
    assert RANK[_unit(found[0])] > RANK["models"] and RANK[_unit(found[1])] > RANK["models"]


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
                           "dermsynth.checkpoint"}, imported
    assert "dermsynth.models.classifiers" in imported  # the network and checkpoint format only
    from dermsynth.classify.extractor import train_feature_extractor
    from dermsynth.metrics import features

    assert not hasattr(features, "train_feature_extractor")
    assert train_feature_extractor.__module__ == "dermsynth.classify.extractor"
