"""Reading YAML that a user (or a stranger) wrote: config files, sweep files, a run's stored files.

`yaml.safe_load` never runs code, but it still lets a 700-byte file of nested aliases
("billion laughs") stand for billions of values, lets a value refer to itself, and keeps the
last of two equal keys without a word. Here the document's node graph is checked before any
value is built: aliases may not expand to more than `MAX_VALUES` values, nothing may refer to
itself, and a key may appear only once in a mapping. The one reader (and writer) of YAML in mnistres.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnistres.errors import ConfigError, reason

MAX_BYTES = 1 << 20  # a config or sweep file is a few hundred bytes; a megabyte is a mistake or an attack
MAX_VALUES = 100_000  # values after expanding aliases; a sweep file with a long axis has hundreds
MAX_DEPTH = 100  # nesting; the composer itself recurses, and Python's stack is finite


def load(path: str | Path, what: str = "file", *, max_bytes: int = MAX_BYTES, max_values: int = MAX_VALUES) -> Any:
    """The document in `path`, or a ConfigError that names the file and the problem. The limits are for
    files a person writes; a file mnistres writes itself (sweep.yaml) is read with limits sized to the
    largest it writes."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ConfigError(f"{path} is {size:,} bytes, too large for a {what} (at most {max_bytes:,})")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read {what} {path}: {reason(error)}") from None
    return loads(text, str(path), max_values=max_values)


def loads(text: str, origin: str, *, max_values: int = MAX_VALUES) -> Any:
    import yaml

    # libyaml's loader when PyYAML was built with it: about six times faster (`mnistres runs` reads a
    # config.yaml per run); the same safe constructor and the same nodes to check.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check(node, origin, max_values)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{origin} is not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{origin} is nested too deeply to be a mnistres file") from None
    finally:
        loader.dispose()


def _check(root: Any, origin: str, max_values: int = MAX_VALUES) -> None:
    """Count the values the document stands for (an alias counts what it repeats), refuse cycles,
    deep nesting and repeated keys; each distinct node is visited once."""
    import yaml

    sizes: dict[int, int] = {}  # node -> values it expands to, once known
    open_nodes: set[int] = set()  # nodes whose children are being counted (a cycle comes back to one)

    def size(node: Any, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ConfigError(f"{origin} (line {node.start_mark.line + 1}): a value refers to itself through an alias")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{origin} is nested more than {MAX_DEPTH} levels deep")
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child, depth + 1)
                _limit(total, origin, max_values)
        elif isinstance(node, yaml.MappingNode):
            _no_repeated_keys(node, origin)
            for key_node, value_node in node.value:
                total += size(key_node, depth + 1) + size(value_node, depth + 1)
                _limit(total, origin, max_values)
        open_nodes.discard(key)
        sizes[key] = total
        return total

    _limit(size(root, 0), origin, max_values)


def _limit(total: int, origin: str, max_values: int) -> None:
    if total > max_values:
        raise ConfigError(f"{origin} stands for more than {max_values:,} values once its aliases (*name) are "
                          f"expanded; mnistres reads no file that large")


def _no_repeated_keys(node: Any, origin: str) -> None:
    import yaml

    seen: dict[tuple[str, str], int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *defaults` may be overridden by the keys beside it, as YAML intends
        where = key_node.start_mark.line + 1
        identity = (key_node.tag, key_node.value)
        if identity in seen:
            from mnistres.core.values import echo

            lines = f"lines {seen[identity]} and {where}" if seen[identity] != where else f"line {where}"
            raise ConfigError(f"{origin}: key {echo(key_node.value)} appears twice ({lines}); keep one")
        seen[identity] = where


def dump(data: Any) -> str:
    """`data` as YAML, keys in the order given (config.yaml, sweep.yaml, a sweep point's config file)."""
    import yaml

    # libyaml's emitter when PyYAML has it: the same text, written in C (a sweep.yaml of 10,000 points)
    return yaml.dump(data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False)
