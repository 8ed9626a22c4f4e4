"""Skin-lesion classifiers for the augmentation study: does synthetic data help a classifier?

Networks (seed 002's small CNN, ResNet-18), seed 002's Keras augmentation set in batched torch,
lesion-grouped stratified splits, a training loop with early stopping, metrics and the statistics
that compare conditions over seeds::

    from dermsynth.classify import build_classifier, split_dataset, train_classifier, predict_proba
    split = split_dataset(data, seed=0)                 # grouped by lesion, stratified by class
    parts = split.apply(data)                            # {"train": ..., "val": ..., "test": ...}
    model = build_classifier("smallcnn", data.num_classes, data.size, seed=0)
    fit = train_classifier(model, parts["train"].images, parts["train"].labels,
                           parts["val"].images, parts["val"].labels, epochs=100, augment=True)
    metrics = evaluate_predictions(predict_proba(fit.model, parts["test"].images),
                                   parts["test"].labels, data.class_names)
"""

from dermsynth.classify.augment import SEED002_AUGMENT, AugmentConfig, affine_matrices, augment_batch
from dermsynth.classify.evaluate import (ClassificationMetrics, evaluate_predictions, macro_auc, melanoma_index,
                                         per_class_auc)
from dermsynth.classify.fit import TrainedClassifier, class_weights, predict_proba, train_classifier
from dermsynth.classify.networks import (CLASSIFIERS, ResNet18, SmallCNN, build_classifier, count_parameters,
                                         load_pretrained, register_classifier)
from dermsynth.classify.splits import SPLIT_NAMES, Split, grouped_split, split_dataset
from dermsynth.classify.stats import (BootstrapResult, PairedComparison, PermutationResult, Summary,
                                      bootstrap_auc_difference, compare_to_baseline, format_mean_std,
                                      paired_permutation_test, summarize, wilcoxon_test)

__all__ = [
    "CLASSIFIERS", "SEED002_AUGMENT", "SPLIT_NAMES", "AugmentConfig", "BootstrapResult", "ClassificationMetrics",
    "PairedComparison", "PermutationResult", "ResNet18", "SmallCNN", "Split", "Summary", "TrainedClassifier",
    "affine_matrices", "augment_batch", "bootstrap_auc_difference", "build_classifier", "class_weights",
    "compare_to_baseline", "count_parameters", "evaluate_predictions", "format_mean_std", "grouped_split",
    "load_pretrained", "macro_auc", "melanoma_index", "paired_permutation_test", "per_class_auc", "predict_proba",
    "register_classifier", "split_dataset", "summarize", "train_classifier", "wilcoxon_test",
]
