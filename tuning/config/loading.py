"""Reading a config file into a :class:`~tuning.config.schema.PipelineConfig`.

``load_config`` reads a YAML file (bounded: size, nesting, alias expansion, duplicate keys), applies
``key.path=value`` overrides from the command line, and returns a frozen :class:`PipelineConfig`. Every
problem becomes one :class:`~tuning.errors.ConfigError` line naming the file and the key path.

Paths: a relative path written in the config file (or a schema default it leaves out) is resolved
against the config file's folder, so a config works from any current folder; a path given on the
command line (an override) stays relative to the current folder, as users expect.
"""

from __future__ import annotations

import difflib
import os
import reprlib
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tuning.config.schema import PipelineConfig
from tuning.errors import ConfigError

# YAML bounds: a config is a few kB; these stop a hostile file long before memory or time run out.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_YAML_DEPTH = 32  # nesting of mappings and lists
MAX_YAML_NODES = 100_000  # values after expanding aliases (a 500-byte "billion laughs" expands to 10**9)
# Keys holding paths, resolved against the config file's folder when written there.
PATH_KEYS = ("model.path", "dataset.root", "output.model", "output.dir", "benchmark.reference_models", "gates.baseline")

LIST_PATH_KEYS = frozenset({"benchmark.reference_models"})  # the one path key holding a list of paths

Overrides = dict[str, Any]


def load_config(path: Path | None, overrides: Overrides | None = None, writes_outputs: bool = True) -> PipelineConfig:
    """Read ``path`` (or only the defaults when None), apply dotted-key overrides, validate.

    Paths from the file (and the defaults it leaves out) resolve against its folder; overrides stay as
    given. ``model.url``/``model.sha256`` describe the file's ``model.path``: when an override points
    ``model.path`` at another file, they are dropped unless overridden too (``--input-sha256``).
    ``writes_outputs`` False: the caller only reads ``output.model`` (``report -o``, ``gate -o``), so it may be
    one of the inputs (the zoo's int8 model reported as the int8 model).
    """
    source = str(path) if path is not None else "<defaults>"
    raw: dict[str, Any] = {} if path is None else _read_yaml(path)
    overrides = dict(overrides or {})
    _check_paths({key: value for key, value in overrides.items() if key in PATH_KEYS}, "--set ")
    folder = Path(path).parent if path is not None else Path()
    if path is not None:
        _resolve_paths(raw, folder, skip=set(overrides), source=source)
        _check_paths({key: _get_dotted(raw, key) for key in PATH_KEYS if key not in overrides}, f"{source}: ")
    _drop_checksum_of_another_model(raw, overrides, folder)
    for dotted_key, value in overrides.items():
        _set_dotted(raw, dotted_key, value, source)
    _refuse_booleans_as_numbers(raw, PipelineConfig, source)
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None
    if writes_outputs:
        _check_outputs_are_not_inputs(config, [] if path is None else [("the config file", Path(path))], source)
    return config


def parse_override(assignment: str) -> tuple[str, Any]:
    """Split ``key.path=value``; the value is read as YAML (``5``, ``0.01``, ``[1, 2]``, ``null``)."""
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {_short(assignment)}: expected KEY.PATH=VALUE, e.g. tuning.max_trials=5")
    return key.strip(), _parse_yaml(text.encode("utf-8"), f"--set {_short(assignment)}")


def output_input_clashes(outputs: list[tuple[str, Path]], inputs: list[tuple[str, Path]]) -> str | None:
    """The first output that is one of the inputs (through symlinks and hard links), as a message."""
    from tuning.files.inputs import same_file

    for output_name, output in outputs:
        for input_name, source in inputs:
            if same_file(output, source):
                return f"{output_name} ({output}) is {input_name} ({source}); refusing to overwrite an input"
    return None


def _check_outputs_are_not_inputs(config: PipelineConfig, extra_inputs: list[tuple[str, Path]], source: str) -> None:
    outputs = [
        ("output.model", config.output.model),
        ("output.dir/tuning_summary.json", config.output.dir and config.output.dir / "tuning_summary.json"),
    ]
    inputs = [("model.path", config.model.path), *extra_inputs]
    # Unset paths (no model.path yet: -m/--model will give it) have nothing to clash with.
    outputs = [(name, path) for name, path in outputs if path is not None]
    inputs = [(name, path) for name, path in inputs if path is not None]
    inputs += [(f"benchmark.reference_models[{i}]", p) for i, p in enumerate(config.benchmark.reference_models)]
    if config.gates.baseline is not None:
        inputs.append(("gates.baseline", config.gates.baseline))
    clash = output_input_clashes(outputs, inputs)
    if clash:
        raise ConfigError(f"{source}: {clash}")


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with bounds and without silent surprises.

    Nesting is limited while the document is composed (PyYAML's composer recurses, so a
    deeply nested file would otherwise end in RecursionError); aliases are counted as the values
    they expand to before anything is constructed; a key given twice in one mapping is an error
    (PyYAML keeps the last one); an integer too long to convert is an error at its line.
    """

    def __init__(self, stream: bytes) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_YAML_DEPTH} levels deep", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) or key is None:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {_short(key)}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):  # type: ignore[no-untyped-def]
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # Python refuses to convert integers of more than 4300 digits
            raise yaml.constructor.ConstructorError(
                None, None, f"integer of {len(node.value)} characters is out of range", node.start_mark
            ) from None


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand past the node or depth bounds, or refer to themselves.

    Sizes and depths are memoised per node, so this takes time proportional to the file, not to
    the expansion (a 500-byte "billion laughs" document expands to 10**9 values).
    """
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    in_progress: set[int] = set()
    # Iterative post-order walk: an alias chain may be deeper than Python's recursion limit.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if children_done:
            in_progress.discard(key)
            sizes[key] = min(1 + sum(sizes[id(child)] for child in children), MAX_YAML_NODES + 1)
            depths[key] = 1 + max((depths[id(child)] for child in children), default=0)
            continue
        in_progress.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in in_progress:
                raise yaml.composer.ComposerError(
                    None, None, "an alias refers to a value that contains it", child.start_mark
                )
            stack.append((child, False))
    if sizes[id(root)] > MAX_YAML_NODES:
        raise yaml.composer.ComposerError(
            None, None, f"aliases expand to more than {MAX_YAML_NODES} values; refusing to expand them", None
        )
    if depths[id(root)] > MAX_YAML_DEPTH + 1:  # +1: scalars count as a level here
        raise yaml.composer.ComposerError(
            None, None, f"aliases expand to values nested more than {MAX_YAML_DEPTH} levels deep", None
        )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _parse_yaml(text: bytes, source: str) -> Any:
    """Parse one YAML document within the bounds; every problem is one ConfigError line naming ``source``."""
    loader = None
    try:
        loader = _BoundedLoader(text)  # its reader already decodes and checks the first bytes
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from None
    except RecursionError:  # a bound above was not enough for some construct; never a traceback
        raise ConfigError(f"{source}: not valid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def _read_yaml(path: Path) -> dict[str, Any]:
    from tuning.files.inputs import read_bounded

    raw = read_bounded(Path(path), MAX_CONFIG_BYTES, "config file", ConfigError, "the config size limit")
    data = _parse_yaml(raw, str(path))
    if data is None:
        raise ConfigError(f"{path}: the config is empty; expected a mapping with sections such as 'model:'")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    return data


def _resolve_paths(raw: dict[str, Any], folder: Path, skip: set[str], source: str) -> None:
    """Make the file's relative paths (and the relative defaults it leaves out) relative to ``folder``."""
    for key in PATH_KEYS:
        if key in skip:
            continue
        section_name, name = key.split(".")
        section = raw.get(section_name, {})
        if not isinstance(section, dict):
            continue  # validation reports a section that is not a mapping
        value = section.get(name, PipelineConfig.model_fields[section_name].default.model_dump().get(name))
        if isinstance(value, (list, tuple)):
            resolved: Any = [_beside(folder, item) for item in value]
        else:
            resolved = _beside(folder, value)
        if resolved != value:
            _set_dotted(raw, key, resolved, source)


def _beside(folder: Path, value: Any) -> Any:
    if isinstance(value, (str, Path)) and str(value) and not Path(value).is_absolute():
        return os.path.normpath(folder / value)  # "configs/../models/x" reads as "models/x"
    return value


def _check_paths(values: dict[str, Any], where: str) -> None:
    """Every path a key holds passes :func:`~tuning.files.paths.user_path` (``where`` prefixes the key)."""
    from tuning.files.paths import user_path

    for key, value in values.items():
        listed = key in LIST_PATH_KEYS and isinstance(value, (list, tuple))
        for index, item in enumerate(value) if listed else [(None, value)]:
            if item is not None:
                user_path(item, f"{where}{key}" + (f"[{index}]" if index is not None else ""))


def _get_dotted(raw: dict[str, Any], dotted_key: str) -> Any:
    node: Any = raw
    for part in dotted_key.split("."):
        if not isinstance(node, dict):
            return None  # validation reports a section that is not a mapping
        node = node.get(part)
    return node


def _refuse_booleans_as_numbers(raw: Any, section: type[BaseModel], source: str, prefix: str = "") -> None:
    """``true`` for a float key is an error, as it is for an integer key (pydantic would read it as 1.0)."""
    if not isinstance(raw, dict):
        return
    for name, field_info in section.model_fields.items():
        if name not in raw:
            continue
        value, kinds = raw[name], _leaf_types(field_info.annotation)
        if isinstance(value, bool) and float in kinds and bool not in kinds:
            raise ConfigError(f"{source}: {prefix}{name}: expected a number, got {str(value).lower()}")
        nested = [kind for kind in kinds if isinstance(kind, type) and issubclass(kind, BaseModel)]
        if nested:
            _refuse_booleans_as_numbers(value, nested[0], source, f"{prefix}{name}.")


def _leaf_types(annotation: Any) -> set[Any]:
    """The plain types an annotation is made of (through Annotated, Optional, unions and lists)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        return _leaf_types(args[0])
    if args:
        return set().union(*(_leaf_types(arg) for arg in args))
    return {annotation}


def _drop_checksum_of_another_model(raw: dict[str, Any], overrides: Overrides, folder: Path) -> None:
    """A model.path override naming another file than the config's makes its url and sha256 not apply."""
    if "model.path" not in overrides or overrides["model.path"] is None:
        return
    model = raw.get("model")
    if not isinstance(model, dict):
        return
    configured = _beside(folder, model.get("path"))
    # Both paths passed user_path, so realpath meets no loop; it never raises, unlike Path.resolve().
    if isinstance(configured, (str, Path)) and _same_place(configured, overrides["model.path"]):
        return
    for key in ("url", "sha256"):
        if f"model.{key}" not in overrides:
            model.pop(key, None)


def _same_place(first: str | Path, second: str | Path) -> bool:
    return os.path.realpath(first) == os.path.realpath(second)


def _set_dotted(raw: dict[str, Any], dotted_key: str, value: Any, source: str) -> None:
    *parents, leaf = dotted_key.split(".")
    node = raw
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parents[: depth + 1])
            raise ConfigError(f"{source}: cannot override {dotted_key!r}: {where!r} is not a section")
        node = child
    node[leaf] = value


def _describe(exc: ValidationError) -> str:
    """One line for the first problem, naming the key path, expected and got."""
    error = exc.errors()[0]
    loc = tuple(str(part) for part in error["loc"])
    # A YAML key may hold a newline or control characters; the error stays one line.
    key = ".".join(part if part.isprintable() and part else repr(part) for part in loc)
    if not loc:  # a check across sections, whose message names its keys
        return error["msg"]
    if error["type"] == "extra_forbidden":
        valid = _valid_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], valid, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(valid)}"
        return f"unknown key {key!r} ({hint})"
    more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
    return f"{key}: {error['msg']}, got {_short(error['input'])}{more}"


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 60


def _short(value: Any) -> str:
    """A value as it may appear in an error line: cut to a few dozen characters, whatever its size."""
    return _SHORT.repr(value)


def _valid_keys(loc: tuple[str, ...]) -> list[str]:
    section: type[BaseModel] = PipelineConfig
    for part in loc:  # only sections nest, so every annotation on the way is a section class
        section = section.model_fields[part].annotation
    return list(section.model_fields)
