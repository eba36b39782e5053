"""resdet's CfgNode: fvcore's (the class Detectron2's derives from) with the strict merges."""

from __future__ import annotations

from typing import List

from fvcore.common.config import CfgNode as _FvcoreCfgNode

from resdet.config.merging import merge_file, merge_opts


class CfgNode(_FvcoreCfgNode):
    """fvcore's CfgNode (the class Detectron2's CfgNode derives from), so both engines share it.

    ``merge_from_file`` and ``merge_from_list`` go through resdet's strict merges
    (:mod:`resdet.config.merging`): a mistyped key, a value of the wrong type or a missing file
    raises :class:`resdet.errors.UserError`.
    """

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        """Merge a YAML file (with ``_BASE_`` resolved relative to it) into this config.

        Args:
            cfg_filename: the YAML file.
            allow_unsafe: accepted for fvcore's signature; resdet reads YAML safely always.

        Raises:
            UserError: missing or unparsable file, unknown key, wrong value type.
        """
        merge_file(self, cfg_filename)

    def merge_from_list(self, cfg_list: List[str]) -> "CfgNode":
        """Merge ``[KEY, VALUE, KEY, VALUE, ...]`` (command-line opts) into this config.

        Returns:
            ``self``.

        Raises:
            UserError: unknown key, wrong value type, odd number of items.
        """
        merge_opts(self, cfg_list)
        return self


CN = CfgNode
