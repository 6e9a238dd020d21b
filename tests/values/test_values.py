"""``@value`` behaves as ``@dataclass(frozen=True, slots=True)`` does, with shared methods."""

from __future__ import annotations

import copy
import dataclasses
import gc
import importlib
import pickle
import pkgutil
import tracemalloc
from dataclasses import FrozenInstanceError, dataclass, field

import pytest

import bot
import handlers
import providers
import values
from values import value


@value
class Point:
    """A point."""

    x: int
    y: int = 0
    tags: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class DataPoint:
    """The same fields, made by dataclass."""

    x: int
    y: int = 0
    tags: tuple[str, ...] = field(default_factory=tuple)


@value
class Account:
    name: str
    key: str = field(repr=False)
    seen: int = field(default=0, compare=False)


@value(kw_only=True)
class Options:
    level: str = "INFO"
    retries: int


@value
class Checked:
    size: int
    half: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError("size must not be negative")
        object.__setattr__(self, "half", self.size // 2)


@value
class Point3(Point):
    z: int = 0


def test_it_is_built_as_dataclass_builds_it() -> None:
    assert Point(1) == Point(1, 0) == Point(x=1, y=0, tags=())
    assert Point(1, 2, ("a",)).tags == ("a",)
    assert repr(Point(1, 2)) == repr(DataPoint(1, 2)).replace("DataPoint", "Point")
    assert Point.__match_args__ == DataPoint.__match_args__ == ("x", "y", "tags")
    assert [f.name for f in dataclasses.fields(Point)] == ["x", "y", "tags"]
    assert dataclasses.is_dataclass(Point(1))
    assert Options(retries=3) == Options(level="INFO", retries=3)
    assert Point3(1, 2, (), 3).z == 3
    assert Checked(5).half == 2


WRONG_CALLS = [
    ((), {}),  # x is missing
    ((1, 2, (), 4), {}),  # too many
    ((1,), {"x": 1}),  # x twice
    ((1,), {"colour": "red"}),  # no such field
]


@pytest.mark.parametrize(("args", "kwargs"), WRONG_CALLS)
@pytest.mark.parametrize("cls", [Point, DataPoint])
def test_a_wrong_call_raises_type_error_as_dataclass_does(
    cls: type, args: tuple[object, ...], kwargs: dict[str, object]
) -> None:
    with pytest.raises(TypeError):
        cls(*args, **kwargs)


@pytest.mark.parametrize(
    "build",
    [
        # Mypy refuses each of them too: it reads a value class as a dataclass.
        lambda: Options(retries=1, level="INFO", extra=1),  # type: ignore[call-arg]
        lambda: Options("INFO", retries=1),  # type: ignore[call-arg]  # keyword-only
        lambda: Checked(4, 2),  # type: ignore[call-arg]  # half is not an argument
    ],
)
def test_a_wrong_call_of_kw_only_and_init_false_fields_raises_type_error(build: object) -> None:
    with pytest.raises(TypeError):
        build()  # type: ignore[operator]


def test_post_init_runs_and_may_refuse() -> None:
    with pytest.raises(ValueError, match="negative"):
        Checked(-1)


def test_a_default_factory_makes_a_new_object_for_each_instance() -> None:
    @value
    class Bag:
        items: list[int] = field(default_factory=list)

    one, two = Bag(), Bag()
    one.items.append(1)
    assert two.items == []


def test_a_field_kept_out_of_repr_is_not_shown() -> None:
    shown = repr(Account("backblaze", "K005-secret"))
    assert shown == "Account(name='backblaze', seen=0)"
    assert "secret" not in shown


def test_equality_and_hash_follow_the_compared_fields() -> None:
    assert Account("a", "k", seen=1) == Account("a", "k", seen=2)
    assert hash(Account("a", "k", seen=1)) == hash(Account("a", "k", seen=2))
    assert Account("a", "k") != Account("a", "other")
    assert len({Point(1), Point(1), Point(2)}) == 2
    assert Point(1) != DataPoint(1)  # type: ignore[comparison-overlap]  # another class
    assert Point(1) != Point3(1)
    assert (Point(1) == (1, 0, ())) is False  # type: ignore[comparison-overlap]


def test_a_value_cannot_be_changed() -> None:
    point = Point(1)
    with pytest.raises(FrozenInstanceError):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        del point.x
    with pytest.raises((FrozenInstanceError, AttributeError)):
        point.colour = "red"  # type: ignore[attr-defined]
    assert not hasattr(point, "__dict__")
    assert point == Point(1)


def test_dataclass_tools_pickle_and_copy_work() -> None:
    point = Point(1, 2, ("a",))
    assert dataclasses.replace(point, y=5) == Point(1, 5, ("a",))
    assert dataclasses.asdict(point) == {"x": 1, "y": 2, "tags": ("a",)}
    assert pickle.loads(pickle.dumps(point)) == point  # noqa: S301 - our own bytes
    assert copy.deepcopy(point) == point
    assert copy.copy(Checked(6)).half == 3
    match point:
        case Point(1, y):
            assert y == 2
        case _:
            pytest.fail("not matched by position")


def test_a_method_the_class_writes_itself_is_kept() -> None:
    @value
    class Loud:
        word: str

        def __repr__(self) -> str:
            return self.word.upper()

    assert repr(Loud("hi")) == "HI"
    with pytest.raises(TypeError, match="__setattr__"):

        @value
        class Mutable:
            word: str

            def __setattr__(self, name: str, item: object) -> None: ...


def test_a_class_that_writes_eq_still_hashes_and_one_that_refuses_hashing_is_kept() -> None:
    @value
    class Folded:  # noqa: PLW1641 - @value gives it __hash__, as dataclass would
        word: str

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Folded) and self.word.lower() == other.word.lower()

    @value
    class Unhashable:
        word: str
        __hash__ = None  # type: ignore[assignment]

    assert Folded("A") == Folded("a")
    assert hash(Folded("a")) == hash(Folded("a"))
    with pytest.raises(TypeError):
        hash(Unhashable("a"))


def test_a_value_class_costs_a_fraction_of_a_dataclass() -> None:
    """The reason for the module: measured with tracemalloc, not timed."""
    source = "class C:\n    a: int\n    b: str\n    c: int = 0\n"

    def cost(decorate: object, n: int = 40) -> float:
        gc.collect()
        tracemalloc.start()
        try:
            start = tracemalloc.get_traced_memory()[0]
            kept = []
            for _ in range(n):
                space: dict[str, object] = {}
                exec(source, {}, space)  # noqa: S102 - a fixed class body
                kept.append(decorate(space["C"]))  # type: ignore[operator]
            gc.collect()
            return (tracemalloc.get_traced_memory()[0] - start) / n
        finally:
            tracemalloc.stop()

    assert cost(value) < cost(dataclass(frozen=True, slots=True)) / 2


def _modules() -> list[str]:
    names = []
    for package in (bot, handlers, providers):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            # __main__ runs the command line; the migrations run inside Alembic only
            if not module.name.endswith(".__main__") and ".migrations" not in module.name:
                names.append(module.name)
    return names


def test_every_frozen_dataclass_of_steward_is_a_value() -> None:
    """A frozen dataclass written the long way would bring back its generated methods."""
    long_way = []
    for name in _modules():
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:  # an extra's SDK that is not installed
            continue
        for item in vars(module).values():
            if (
                isinstance(item, type)
                and item.__module__ == name
                and dataclasses.is_dataclass(item)
                and item.__dataclass_params__.frozen  # type: ignore[attr-defined]
                and item.__init__ is not values._init
            ):
                long_way.append(f"{name}.{item.__qualname__}")
    assert long_way == []


def test_post_init_runs_once_however_the_fields_are_given() -> None:
    @value
    class Counted:
        name: str
        calls: list[str] = field(default_factory=list)

        def __post_init__(self) -> None:
            self.calls.append(self.name)

    assert Counted("a").calls == ["a"]
    assert Counted("b", []).calls == ["b"]
    assert Counted(name="c").calls == ["c"]
