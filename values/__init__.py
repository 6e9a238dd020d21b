"""``@value``: a frozen, slotted dataclass whose methods every value class shares.

A class decorated with ``@value`` is what ``@dataclass(frozen=True, slots=True)`` makes it, and
dataclasses' own tools work on it unchanged: ``fields``, ``replace``, ``asdict``, ``field(...)``
with ``default``, ``default_factory``, ``init``, ``repr``, ``compare``, ``hash`` and
``kw_only``, ``__post_init__`` and ``__match_args__``. Mypy reads it as a dataclass (PEP 681).

The difference is where the methods come from. For each class, ``dataclass`` writes
``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__`` and ``__delattr__`` out as
source and compiles them, at every start: Python 3.11 to 3.13 keep none of it in the bytecode
cache. That is 13 KB and 0.46 ms per class, and Steward defines about ninety. Here one set of
methods serves every class, reading the class's fields from tuples made once when the class is
made (docs/performance.md has the measurements).

Mutable dataclasses stay ``@dataclass``: they are few, and they are services, not values.

One difference shows to introspection only: ``__dataclass_params__`` says ``frozen=False`` and
``eq=False``, as dataclass was asked to make no methods; the class is frozen and compares all
the same. Nothing in Steward reads those flags.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import MISSING, Field, FrozenInstanceError, dataclass, field, fields
from operator import attrgetter
from reprlib import recursive_repr
from typing import Any, TypeVar, dataclass_transform, overload

__all__ = ["value"]

T = TypeVar("T")

# What the shared methods read from the class: made once, by ``_make``.
#   _value_init:    (name, default, factory, positional, init) for every field, in order
#   _value_max:     how many positional arguments __init__ takes
#   _value_repr:    the names __repr__ shows
#   _value_compare: the fields __eq__ compares, as a tuple
#   _value_hash:    the fields __hash__ hashes, as a tuple
#   _value_post:    whether the class has __post_init__
#   _value_all:     every field's name (pickling and copying)
_set = object.__setattr__


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    cls = type(self)
    if not kwargs and len(args) == cls._value_max == len(cls._value_all):  # every field given
        for name, item in zip(cls._value_all, args, strict=True):
            _set(self, name, item)
    else:
        _bind(self, cls, args, kwargs)
    if cls._value_post:
        self.__post_init__()


def _bind(self: object, cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if len(args) > cls._value_max:
        raise TypeError(
            f"{cls.__qualname__}() takes {cls._value_max} positional arguments "
            f"but {len(args)} were given"
        )
    given = 0
    missing = []
    for name, default, factory, positional, init in cls._value_init:
        if init and positional and given < len(args):
            if name in kwargs:
                raise TypeError(f"{cls.__qualname__}() got multiple values for argument {name!r}")
            _set(self, name, args[given])
            given += 1
        elif init and name in kwargs:
            _set(self, name, kwargs.pop(name))
        elif default is not MISSING:
            _set(self, name, default)
        elif factory is not MISSING:
            _set(self, name, factory())
        elif init:  # a field outside __init__ with no default is left for __post_init__
            missing.append(repr(name))
    if missing:
        raise TypeError(f"{cls.__qualname__}() missing required arguments: {', '.join(missing)}")
    if kwargs:
        raise TypeError(
            f"{cls.__qualname__}() got an unexpected keyword argument {next(iter(kwargs))!r}"
        )


@recursive_repr()
def _repr(self: Any) -> str:
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._value_repr)
    return f"{type(self).__qualname__}({shown})"


def _eq(self: Any, other: Any) -> object:
    if other.__class__ is not self.__class__:
        return NotImplemented
    key = self._value_compare
    return key(self) == key(other)


def _hash(self: Any) -> int:
    return hash(self._value_hash(self))


def _setattr(self: Any, name: str, _: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _getstate(self: Any) -> list[object]:
    return [getattr(self, name) for name in self._value_all]


def _setstate(self: Any, state: list[object]) -> None:
    for name, item in zip(self._value_all, state, strict=True):
        _set(self, name, item)


_SHARED: dict[str, Callable[..., Any]] = {
    "__init__": _init,
    "__repr__": _repr,
    "__eq__": _eq,
    "__getstate__": _getstate,
    "__setstate__": _setstate,
}


def _key(names: Iterable[str]) -> Callable[[object], tuple[object, ...]]:
    """A tuple of the named fields, as dataclass compares and hashes them."""
    names = tuple(names)
    if not names:
        return lambda _: ()
    # attrgetter gives a tuple for two names or more; a name twice keeps one name a tuple
    return attrgetter(*names) if len(names) > 1 else attrgetter(names[0], names[0])


def _make(cls: Any, kw_only: bool) -> Any:
    own = cls.__dict__  # a live view: read what the class wrote before adding to it
    # dataclass makes __hash__ for a frozen class unless the class wrote its own; a class that
    # wrote __eq__ alone has __hash__ = None from Python, which is not its own.
    hashes = "__hash__" not in own or (own["__hash__"] is None and "__eq__" in own)
    for name in ("__setattr__", "__delattr__"):
        if name in own:
            raise TypeError(f"{cls.__qualname__} is a value: it may not define {name}")
    for name, method in _SHARED.items():
        if name not in own:  # a method the class writes itself wins, as with dataclass
            setattr(cls, name, method)
    if hashes:
        cls.__hash__ = _hash
    cls.__setattr__ = _setattr
    cls.__delattr__ = _delattr
    if own.get("__doc__") is None:
        # dataclass would build it from the signature of __init__, which here is (*args, **kw)
        cls.__doc__ = f"{cls.__name__}({', '.join(own.get('__annotations__', ()))})"
    made = dataclass(cls, init=False, repr=False, eq=False, slots=True, kw_only=kw_only)
    every = fields(made)
    made._value_init = tuple(
        (f.name, f.default, f.default_factory, not f.kw_only, f.init) for f in every
    )
    made._value_max = sum(1 for f in every if f.init and not f.kw_only)
    made._value_repr = tuple(f.name for f in every if f.repr)
    made._value_compare = _key(f.name for f in every if f.compare)
    made._value_hash = _key(f.name for f in every if (f.compare if f.hash is None else f.hash))
    made._value_post = hasattr(made, "__post_init__")
    made._value_all = tuple(f.name for f in every)
    return made


@overload
def value(cls: type[T], /) -> type[T]: ...
@overload
def value(*, kw_only: bool = False) -> Callable[[type[T]], type[T]]: ...
@dataclass_transform(frozen_default=True, field_specifiers=(field, Field))
def value(cls: type[T] | None = None, /, *, kw_only: bool = False) -> Any:
    """``@value`` or ``@value(kw_only=True)`` on a class: see the module's docstring."""
    if cls is None:
        return lambda c: _make(c, kw_only)
    return _make(cls, kw_only)
