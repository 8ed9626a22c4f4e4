"""Skin-lesion classifiers for the augmentation study: does synthetic data help a classifier?

Networks (Essipova et al.'s small CNN, ResNet-18), the classic transforms (Essipova et al.'s Keras augmentation set) in
batched torch, lesion-grouped stratified splits, a training loop with early stopping, scoring of predictions
and the statistics that compare conditions over seeds::

    from dermsynth.classify import build_classifier, split_dataset, train_classifier, predict_proba
    split = split_dataset(data, seed=0)                 # grouped by lesion, stratified by class
    parts = split.apply(data)                            # {"train": ..., "val": ..., "test": ...}
    model = build_classifier("smallcnn", data.num_classes, data.size, seed=0)
    fit = train_classifier(model, parts["train"].images, parts["train"].labels,
                           parts["val"].images, parts["val"].labels, epochs=100, transforms=True)
    metrics = score_predictions(predict_proba(fit.model, parts["test"].images),
                                parts["test"].labels, data.class_names)

The augmentation experiment (:mod:`experiment`, ``dermsynth augment``) runs conditions such as real only,
real + classic transforms, real + synthetic images from a :class:`SyntheticSource` (GAN checkpoint, sample
folder, callable), minority-class balancing and synthetic only, over K seeds, with the statistics above::

    cfg = AugmentExperimentConfig(data="../shared/data/ham10000", size=28, out="runs/aug",
                                  conditions=["real", "real+classic", "real+balance"], synthetic="runs/gan")
    result = run_augment_experiment(cfg)                # resumable; result.table, result.report
"""

from dermsynth.classify.transforms import ESSIPOVA2020_TRANSFORMS, TransformConfig, affine_matrices, transform_batch
from dermsynth.classify.scoring import (ClassificationMetrics, macro_auc, melanoma_index, per_class_auc,
                                       score_predictions)
from dermsynth.classify.experiment import AugmentExperimentResult, run_augment_experiment, run_in_folder
from dermsynth.classify.experiment_config import AugmentExperimentConfig, Condition, synthetic_counts
from dermsynth.classify.external import CLASS_ALIASES, canonical_class, map_to_training_classes
from dermsynth.classify.extractor import train_feature_extractor
from dermsynth.classify.fit import TrainedClassifier, class_weights, predict_proba, train_classifier
from dermsynth.models.classifiers import (CLASSIFIERS, ResNet18, SmallCNN, build_classifier, count_parameters,
                                         load_pretrained, register_classifier)
from dermsynth.data.splits import SPLIT_NAMES, Split, grouped_split, real_fraction_subset, split_dataset
from dermsynth.classify.stats import (BootstrapResult, PairedComparison, PermutationResult, Summary,
                                      bootstrap_auc_difference, compare_to_baseline, format_mean_std,
                                      paired_permutation_test, summarize, wilcoxon_test)
from dermsynth.classify.synthetic import (CallableSource, FolderSource, GeneratorSource, SyntheticImages,
                                          SyntheticSource, TranslationSource, open_source, phantom_source)

__all__ = [
    "AugmentExperimentConfig", "AugmentExperimentResult", "BootstrapResult", "CLASSIFIERS", "CLASS_ALIASES",
    "CallableSource", "ClassificationMetrics", "Condition", "ESSIPOVA2020_TRANSFORMS", "FolderSource",
    "GeneratorSource", "PairedComparison", "PermutationResult", "ResNet18", "SPLIT_NAMES", "SmallCNN", "Split",
    "Summary", "SyntheticImages", "SyntheticSource", "TrainedClassifier", "TransformConfig", "TranslationSource",
    "affine_matrices", "bootstrap_auc_difference", "build_classifier", "canonical_class", "class_weights",
    "compare_to_baseline", "count_parameters", "format_mean_std", "grouped_split", "load_pretrained", "macro_auc",
    "map_to_training_classes", "melanoma_index", "open_source", "paired_permutation_test", "per_class_auc",
    "phantom_source", "predict_proba", "real_fraction_subset", "register_classifier", "run_augment_experiment",
    "run_in_folder", "score_predictions",
    "split_dataset", "summarize", "synthetic_counts", "train_classifier", "train_feature_extractor",
    "transform_batch", "wilcoxon_test",
]
