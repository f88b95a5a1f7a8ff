"""Errors that name the field at fault and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping


class SpecError(ValueError):
    """A spec or plan that cannot work. ``field`` names the input, ``fix`` says what to change."""

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        message = f"{field}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        # Rebuilt from its parts, so an error raised in a worker process (plan serve's pool) survives pickling.
        return (_rebuild, (type(self), self.field, self.problem, self.fix))


class InfeasibleError(SpecError):
    """A valid input with no feasible answer (a model that leaves no memory for its KV cache, say): the faces
    report it as infeasible (exit 1), not as an input error."""


def _rebuild(cls: type[SpecError], field: str, problem: str, fix: str) -> SpecError:
    err = cls.__new__(cls)
    SpecError.__init__(err, field, problem, fix)
    return err


class UnknownNameError(SpecError, KeyError):
    """A name that is not in a catalog; the message suggests the closest names."""

    def __init__(self, field: str, name: str, known: Iterable[str] | Mapping[str, str]) -> None:
        """``known`` lists the valid names, or maps every accepted spelling to its canonical name."""
        lookup = {k.lower(): v for k, v in known.items()} if isinstance(known, Mapping) else {k.lower(): k for k in known}
        close = difflib.get_close_matches(name.lower(), list(lookup), n=8, cutoff=0.5)
        suggestions = list(dict.fromkeys(lookup[c] for c in close))[:4]
        canonical = sorted(set(lookup.values()))
        if suggestions:
            fix = "did you mean " + ", ".join(suggestions) + "?"
        else:
            fix = f"known: {', '.join(canonical[:12])}{', ...' if len(canonical) > 12 else ''}"
        super().__init__(field, f"unknown {field} {name!r}", fix)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


def require(condition: bool, field: str, problem: str, fix: str = "") -> None:
    """Raise :class:`SpecError` unless ``condition`` holds."""
    if not condition:
        raise SpecError(field, problem, fix)


def divisors(n: int) -> list[int]:
    """The positive divisors of ``n``, for fix messages."""
    return [d for d in range(1, n + 1) if n % d == 0]
