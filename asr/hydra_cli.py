"""The one way our Hydra commands start: register the schema, compose configs/, turn UserError into one line.

Before Hydra starts, the command line is composed and validated once with Hydra's own compose API, so that every
configuration error of the user's making (an unknown key, with or without `+`; a wrong type; a bad override
syntax; an unknown preset) is one line on stderr and exit status 2, instead of Hydra's multi-line report with
exit 1, and before Hydra creates any output folder.
"""
from __future__ import annotations

import errno
import logging
import os
import sys
from typing import Any, Callable, Optional

from omegaconf import DictConfig

from asr.errors import UserError

EXIT_USAGE = 2  # what argparse and our CLIs return for a usage error
# Storage failures of the user's environment: full disk or quota, read-only or forbidden folder.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def fail(prog: str, message: str) -> None:
    """Print `prog: error: message` (whitespace collapsed to one line) on stderr and exit 2."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _describe(exc: BaseException) -> str:
    """One line from a Hydra/OmegaConf composition error: the key, the cause, and the legal choices of a config
    group. Hydra's own advice to add '+' is left out: a '+' key must exist in the schema too."""
    from hydra.errors import MissingConfigException
    cause = exc.__cause__
    if cause is not None and getattr(cause, "full_key", None):
        return f"{cause.full_key}: {_first_line(cause)}"
    if isinstance(exc, MissingConfigException) and getattr(exc, "options", None):
        return f"{_first_line(exc)}; choose one of: {', '.join(exc.options)}"
    return _first_line(exc) + (f": {_first_line(cause)}" if cause is not None else "")


def precheck(prog: str, config_name: str, schema: type, argv: list[str]) -> Optional[list[str]]:
    """Compose `config_name` with the overrides in `argv` and validate it against `schema`; exit 2 with one line
    on error. Returns the parsed overrides, or None when `argv` is not a plain run (help, info, shell
    completion) or uses sweeps (each job of a multirun validates itself)."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from asr.config import config_dir, to_object
    try:
        args = get_args_parser().parse_args(argv)
    except SystemExit:  # Hydra reports its own argument errors the same way (argparse: exit 2)
        return None
    if args.help or args.hydra_help or args.info or args.shell_completion or args.cfg == "hydra":
        return None
    try:
        parsed = OverridesParser.create().parse_overrides(args.overrides)
    except HydraException as exc:
        fail(prog, f"cannot parse the command line: {_first_line(exc)}")
    if any(o.is_sweep_override() for o in parsed):
        return args.overrides
    plain = [o.input_line for o in parsed if not o.key_or_group.startswith("hydra.") and
             not o.key_or_group.startswith("hydra/")]
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name=args.config_name or config_name, overrides=plain)
        to_object(cfg, schema)
    except UserError as exc:
        fail(prog, str(exc))
    except (HydraException, OmegaConfBaseException) as exc:
        fail(prog, _describe(exc))
    return args.overrides


def _run_dir_override(overrides: list[str]) -> Optional[str]:
    """`run_dir=X` given without `hydra.run.dir=...`: Hydra must write its .hydra folder into X too."""
    if any(o.startswith(("hydra.run.dir=", "+hydra.run.dir=", "++hydra.run.dir=")) for o in overrides):
        return None
    for o in overrides:
        key, _, value = o.lstrip("+").partition("=")
        if key == "run_dir" and value not in ("", "null"):
            return value
    return None


def run(prog: str, config_name: str, schema_name: str, schema: type,
        main: Callable[[DictConfig], Any], report: Callable[[Any], None] | None = None) -> None:
    """Compose `configs/<config_name>.yaml` (which extends `schema_name`) with the command line and call `main`;
    a `UserError` prints `prog: error: ...` on stderr and exits 2, never a traceback."""
    import hydra
    from hydra.core.config_store import ConfigStore

    from asr.config import config_dir
    ConfigStore.instance().store(name=schema_name, node=schema)
    overrides = precheck(prog, config_name, schema, sys.argv[1:])
    if overrides is not None:
        run_dir = _run_dir_override(overrides)
        if run_dir is not None:
            sys.argv.insert(1, f"hydra.run.dir={run_dir}")

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=config_name)
    def _run(cfg: DictConfig) -> None:
        logging.getLogger().setLevel(logging.INFO)
        try:
            result = main(cfg)
        except UserError as exc:
            fail(prog, str(exc))
        if report is not None:
            report(result)

    # Hydra reports an exception of its own (creating its output folder, say) as a filtered multi-line
    # message and exit 1; let it raise instead, so a storage failure becomes our one line and exit 2.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        _run()
    except OSError as exc:
        if exc.errno not in STORAGE_ERRNOS:
            raise
        fail(prog, f"cannot write {exc.filename or 'the output folder'}: {exc.strerror or exc}; choose a writable "
                   "folder (run_dir=... or hydra.run.dir=...) or free space")
