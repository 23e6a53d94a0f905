"""The one way our Hydra commands start: register the schema, compose configs/, turn UserError into one line.

Before Hydra starts, the command line is composed and validated once with Hydra's own compose API, so that every
configuration error of the user's making (an unknown key, with or without `+`; a wrong type; a bad override
syntax; an unknown preset) is one line on stderr and exit status 2, instead of Hydra's multi-line report with
exit 1, and before Hydra creates any output folder.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable, Optional

from omegaconf import DictConfig

from asr.errors import UserError, message_line, storage_error

EXIT_USAGE = 2  # what argparse and our CLIs return for a usage error


def fail(prog: str, message: str) -> None:
    """Print `prog: error: message` (whitespace collapsed to one line) on stderr and exit 2."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def _describe(exc: BaseException) -> str:
    """One line from a Hydra/OmegaConf composition error: the key, the cause, and the legal choices of a config
    group. Hydra's own advice to add '+' is left out: a '+' key must exist in the schema too."""
    from hydra.errors import MissingConfigException
    cause = exc.__cause__
    if cause is not None and getattr(cause, "full_key", None):
        return f"{cause.full_key}: {message_line(cause)}"
    if isinstance(exc, MissingConfigException) and getattr(exc, "options", None):
        return f"{message_line(exc)}; choose one of: {', '.join(exc.options)}"
    return message_line(exc) + (f": {message_line(cause)}" if cause is not None else "")


def precheck(prog: str, config_name: str, schema: type, argv: list[str]):
    """Compose `config_name` with the overrides in `argv` and validate it against `schema`; exit 2 with one line
    on error. Returns Hydra's parsed arguments, or None when `argv` is not a plain run (help, info, shell
    completion; argparse errors are Hydra's to report, the same way). A multirun is validated on the first
    value of each sweep; `--cfg` only composes (printing a config needs no complete one); a config found only
    through --config-dir or hydra.searchpath is left to Hydra."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from asr.config import config_dir, to_object
    try:
        args = get_args_parser().parse_args(argv)
    except SystemExit:
        return None
    if args.help or args.hydra_help or args.info or args.shell_completion or args.cfg == "hydra":
        return None
    try:
        parsed = OverridesParser.create().parse_overrides(args.overrides)
    except HydraException as exc:
        fail(prog, f"cannot parse the command line: {message_line(exc)}")
    sweeps = [o.get_key_element() for o in parsed if o.is_sweep_override()]
    if sweeps and not args.multirun:
        fail(prog, f"{', '.join(sweeps)}: a list of values is a sweep; add -m (--multirun) to run one job per value")
    if args.config_dir or any(o.get_key_element().lstrip("+").startswith("hydra.searchpath") for o in parsed):
        return args
    plain = [f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}" if o.is_sweep_override()
             else o.input_line for o in parsed if not o.get_key_element().lstrip("+").startswith(("hydra.", "hydra/"))]
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name=args.config_name or config_name, overrides=plain)
        if not args.cfg:
            to_object(cfg, schema)
    except UserError as exc:
        fail(prog, str(exc))
    except (HydraException, OmegaConfBaseException) as exc:
        fail(prog, _describe(exc))
    return args


def _run_dir_override(overrides: list[str]) -> Optional[str]:
    """`run_dir=X` given without `hydra.run.dir=...`: Hydra must write its .hydra folder into X too."""
    if any(o.lstrip("+").startswith("hydra.run.dir=") for o in overrides):
        return None
    for o in overrides:
        key, _, value = o.lstrip("+").partition("=")
        if key == "run_dir" and value not in ("", "null"):
            return value
    return None


def _with_run_dir(prog: str, argv: list[str], args) -> list[str]:
    """argv with `hydra.run.dir=X` added after the other overrides when `run_dir=X` is given (Hydra's parser
    takes the overrides as one list: flags first, then every override). A multirun gives each job its own
    folder, so one fixed run_dir for all of them is refused (job 2 would resume job 1's checkpoints)."""
    run_dir = _run_dir_override(args.overrides)
    if run_dir is None:
        return argv
    if args.multirun:
        fail(prog, f"run_dir={run_dir}: a multirun gives each job its own folder under hydra.sweep.dir; drop "
                   "run_dir (one folder for every job would make each resume the one before)")
    overrides = set(args.overrides)
    flags = [a for a in argv[1:] if a not in overrides]
    return [argv[0], *flags, *args.overrides, f"hydra.run.dir={run_dir}"]


def run(prog: str, config_name: str, schema_name: str, schema: type,
        main: Callable[[DictConfig], Any], report: Callable[[Any], None] | None = None,
        output_keys: str = "run_dir=... or hydra.run.dir=...") -> None:
    """Compose `configs/<config_name>.yaml` (which extends `schema_name`) with the command line and call `main`;
    a `UserError` prints `prog: error: ...` on stderr and exits 2, never a traceback. So does a full disk or a
    read-only folder, naming the file and `output_keys` (the keys that choose where this command writes)."""
    import hydra
    from hydra.core.config_store import ConfigStore

    from asr.config import config_dir
    ConfigStore.instance().store(name=schema_name, node=schema)
    args = precheck(prog, config_name, schema, sys.argv[1:])
    if args is not None:
        sys.argv[:] = _with_run_dir(prog, sys.argv, args)

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=config_name)
    def _run(cfg: DictConfig) -> None:
        logging.getLogger().setLevel(logging.INFO)
        try:
            result = main(cfg)
        except UserError as exc:
            fail(prog, str(exc))
        except (OSError, ValueError) as exc:  # here, before Hydra logs "Error executing job" above our line
            cause = storage_error(exc)
            if cause is None:
                raise
            fail(prog, _storage_message(cause, output_keys))
        if report is not None:
            report(result)

    # Hydra reports an exception of its own (creating its output folder, a multirun job's composition) as a
    # filtered multi-line message and exit 1; let it raise instead, so it becomes our one line and exit 2.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException
    try:
        _run()
    except (HydraException, OmegaConfBaseException) as exc:
        fail(prog, _describe(exc))
    except (OSError, ValueError) as exc:
        # An OSError of its own, or wrapped: Hydra's logging set-up reports an unwritable log file as
        # ValueError("Unable to configure handler 'file'") caused by the PermissionError/EROFS underneath.
        cause = storage_error(exc)
        if cause is None:
            raise
        fail(prog, _storage_message(cause, output_keys))


def _storage_message(cause: OSError, output_keys: str) -> str:
    return (f"cannot write {cause.filename or 'the output folder'}: {cause.strerror or cause}; choose a writable "
            f"folder ({output_keys}) or free space")

