"""The door every configuration passes: `to_object` validates a composed config (or a dict) against a dataclass
schema, so a wrong type or an unknown key (with or without Hydra's `+`) fails before any work with one error
naming the full key; cross-field rules live in each schema's `__post_init__` and use `check`.
"""
from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Any, Optional, get_type_hints

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from asr.errors import UserError, message_line


class ConfigError(UserError, ValueError):
    """A configuration value is out of range or inconsistent; the message names the key."""


def check(cond: bool, key: str, msg: str) -> None:
    """The one validation style: `check(lr > 0, "optim.lr", "must be > 0")` raises ConfigError("optim.lr: ...")."""
    if not cond:
        raise ConfigError(f"{key}: {msg}")


class Choice(str, Enum):
    """A closed set of names for a config field (`model.rnn_type=lstm`). Members are their names as strings:
    they compare equal to, hash and print as the plain value, and checkpoints store that value."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def names(cls) -> str:
        return ", ".join(m.value for m in cls)

    @classmethod
    def parse(cls, value: Any, key: str) -> "Choice":
        """`value` as a member (a member or its name), else ConfigError naming `key` and the legal names; for
        `__post_init__`, so a schema built directly in Python is checked like one composed by Hydra."""
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"{key}: {value!r} is not one of {cls.names()}") from None


def to_container(cfg: Any) -> dict:
    """A validated config as plain Python containers (Choice members as strings): what checkpoints store."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)


def config_dir() -> Path:
    """configs/ at the repository root (the package is installed editable from the checkout)."""
    env = os.environ.get("ASR_CONFIG_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent.parent / "configs"


def to_object(cfg: Any, schema: type) -> Any:
    """Validate a DictConfig (or dict) against `schema`, raising ConfigError naming the key."""
    try:
        if isinstance(cfg, schema):
            return cfg
        node = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
        unknown = _unknown_keys(node, schema)
        if unknown:
            raise ConfigError(f"{unknown}: unknown key (a typo?; `--cfg job` prints every valid key). A key added "
                              "with '+' must exist in the schema too (only user-named entries such as "
                              "manifests.NAME or data.dev_manifests.NAME may be new)")
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or _offending_key(cfg, schema)
        msg = message_line(exc)
        raise ConfigError(f"{key}: {msg}" if key else msg) from None


def _unknown_keys(node: Any, schema: type, prefix: str = "") -> Optional[str]:
    """The first key of `node` that `schema` does not define. Hydra's `+key=value` adds a key with struct mode
    off, and OmegaConf's merge then keeps it and `to_object` silently drops it: a typo would train as if unset.
    Fields typed as dicts (name -> value maps) take any key."""
    if not isinstance(node, DictConfig) or not hasattr(schema, "__dataclass_fields__"):
        return None
    hints = get_type_hints(schema)
    for name in node.keys():
        if name not in hints:
            return f"{prefix}{name}"
        sub = hints[name]
        if hasattr(sub, "__dataclass_fields__"):
            try:
                child = node[name]
            except OmegaConfBaseException:  # an interpolation that cannot resolve: the merge reports it
                continue
            found = _unknown_keys(child, sub, f"{prefix}{name}.")
            if found:
                return found
    return None


def _offending_key(cfg: Any, schema: type, prefix: str = "") -> Optional[str]:
    """OmegaConf reports no key when a whole node has the wrong kind (a list where a dict goes): find it by
    merging one field at a time."""
    try:
        node = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
    except OmegaConfBaseException:
        return prefix.rstrip(".") or None
    for name in node.keys():
        try:
            OmegaConf.merge(OmegaConf.structured(schema), {name: node[name]})
        except OmegaConfBaseException as exc:
            sub = get_type_hints(schema).get(name)
            inner = getattr(exc, "full_key", None)
            if inner:
                return prefix + str(inner)
            if hasattr(sub, "__dataclass_fields__") and isinstance(node[name], DictConfig):
                return _offending_key(node[name], sub, f"{prefix}{name}.") or f"{prefix}{name}"
            return f"{prefix}{name}"
    return None
