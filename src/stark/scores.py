"""Deprecated: moved to ``stark.method.scores`` (kept one release; importing it warns)."""

import warnings

from stark.method.scores import NORM_EPS, TeacherScores, normalize_rows, score_teacher

warnings.warn("stark.scores is deprecated: import from stark.method.scores", DeprecationWarning, stacklevel=2)

__all__ = ["NORM_EPS", "TeacherScores", "normalize_rows", "score_teacher"]
