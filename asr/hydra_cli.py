"""The one way our Hydra commands start: register the schema, compose configs/, turn UserError into one line."""
from __future__ import annotations

import logging
import sys
from typing import Any, Callable

from omegaconf import DictConfig

from asr.errors import UserError


def run(prog: str, config_name: str, schema_name: str, schema: type,
        main: Callable[[DictConfig], Any], report: Callable[[Any], None] | None = None) -> None:
    """Compose `configs/<config_name>.yaml` (which extends `schema_name`) with the command line and call `main`;
    a `UserError` prints `prog: error: ...` on stderr and exits 2, never a traceback."""
    import hydra
    from hydra.core.config_store import ConfigStore

    from asr.runtime import config_dir
    ConfigStore.instance().store(name=schema_name, node=schema)

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=config_name)
    def _run(cfg: DictConfig) -> None:
        logging.getLogger().setLevel(logging.INFO)
        try:
            result = main(cfg)
        except UserError as exc:
            print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
            sys.exit(2)
        if report is not None:
            report(result)

    _run()
