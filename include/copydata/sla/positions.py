"""YAML loading that remembers where every key and value starts, by dotted path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based

    @classmethod
    def of(cls, mark: yaml.Mark) -> Mark:
        return cls(mark.line + 1, mark.column + 1)


@dataclass(frozen=True)
class Position:
    key: Mark | None  # None for the document and list items
    value: Mark
    scalar: bool


@dataclass(frozen=True)
class DuplicateKey:
    path: Path
    mark: Mark
    first: Mark


class PositionMap:
    """Where each path (('applications', 0, 'name'), ...) starts in the file."""

    def __init__(self, positions: dict[Path, Position] | None = None) -> None:
        self._positions = positions or {}

    def __contains__(self, path: Path) -> bool:
        return path in self._positions

    def locate(self, path: Path, key: bool = False) -> Mark:
        """The value of path if it is a scalar, else its key (key=True: always the key); for a path that
        does not exist (a missing key), the key of its nearest existing parent."""
        for end in range(len(path), -1, -1):
            position = self._positions.get(path[:end])
            if position is not None:
                exact = end == len(path)
                if exact and position.scalar and not key:
                    return position.value
                return position.key or position.value
        return Mark(1, 1)


def load_yaml(text: str) -> tuple[Any, PositionMap, list[DuplicateKey]]:
    """Parse one YAML document with the safe loader: (data, positions, duplicate keys).

    yaml.YAMLError on a syntax error; data is None for an empty document."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, PositionMap(), []
        walker = _Walker(loader)
        walker.walk(node, (), None)
        return loader.construct_document(node), PositionMap(walker.positions), walker.duplicates
    finally:
        loader.dispose()


class _Walker:
    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.positions: dict[Path, Position] = {}
        self.duplicates: list[DuplicateKey] = []
        self._active: set[int] = set()  # guards against recursive aliases

    def walk(self, node: yaml.Node, path: Path, key: Mark | None) -> None:
        self.positions.setdefault(path, Position(key, Mark.of(node.start_mark),
                                                 isinstance(node, yaml.ScalarNode)))
        if id(node) in self._active:
            return
        self._active.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.walk(item, (*path, i), None)
        elif isinstance(node, yaml.MappingNode):
            self._walk_mapping(node, path)
        self._active.discard(id(node))

    def _walk_mapping(self, node: yaml.MappingNode, path: Path) -> None:
        seen: dict[Any, Mark] = {}
        for key_node, value_node in node.value:
            name = self._key(key_node)
            mark = Mark.of(key_node.start_mark)
            if name in seen:
                self.duplicates.append(DuplicateKey((*path, name), mark, seen[name]))
                self._forget((*path, name))  # the last value wins, as in PyYAML
            seen.setdefault(name, mark)
            self.walk(value_node, (*path, name), mark)

    def _forget(self, prefix: Path) -> None:
        for path in [p for p in self.positions if p[:len(prefix)] == prefix]:
            del self.positions[path]

    def _key(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            return f"<{node.id} key at line {node.start_mark.line + 1}>"
        return self.loader.construct_object(node)
