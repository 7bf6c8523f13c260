"""Active learning and distillation from any ASE calculator (``mlcalc learn``).

>>> from mlcalc.learn import LearnConfig, learn
>>> result = learn(LearnConfig(teacher="emt", start="cu.xyz", max_labels=100))
>>> result.model_path          # a model for NEMPCalculator.from_checkpoint

See ``docs/learn.md``.
"""

from mlcalc.learn.config import LearnConfig
from mlcalc.learn.loop import ActiveLearning, LearnResult, learn
from mlcalc.learn.teachers import TeacherSpec

__all__ = ["ActiveLearning", "LearnConfig", "LearnResult", "TeacherSpec", "learn"]
