"""Testing helpers for oupsish and its users: a reference model and hypothesis strategies.

:class:`ReferenceModel` is what a dataset must equal after any sequence of writes: the
rows of every write, concatenated, stably sorted on ``ordered_on`` (stored rows first for
equal values), with duplicates dropped keeping the last when asked. The strategies in
:mod:`oupsish.testing.strategies` (which need ``hypothesis``) generate frames and write
sequences that exercise appends, inserts into the past, equal values on row-group
boundaries and duplicates.
"""

from oupsish.testing.model import ReferenceModel, assert_same_rows

__all__ = ["ReferenceModel", "assert_same_rows"]
