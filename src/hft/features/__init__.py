"""Features: definitions (:mod:`.definitions`), numpy/pandas reference (:mod:`.reference`) and the
Spark implementation (:mod:`.spark`). The only place a feature formula lives."""

from hft.features.definitions import FeatureSpec

__all__ = ["FeatureSpec"]
