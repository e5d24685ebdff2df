"""Which keyword arguments a callable really accepts, also through ``**kwargs`` it hands on to another callable.

``Project.runner(model, **kwargs)`` passes ``kwargs`` to the runner's constructor and ``runner.train(**kwargs)`` to
Catalyst's ``train``: a signature alone says "anything goes" for both, so a misspelt argument would only fail once
the run is built (or never, when the receiver swallows it). :func:`forwards_kwargs` records where ``**kwargs`` go,
and :func:`accepted_keywords` follows that record, so a config can be checked before anything is built.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any, Callable, Iterable, List, Optional, Tuple

_FORWARDS = "_dnn_cool_forwards_kwargs_to"


def forwards_kwargs(target: str, exclude: Iterable[str] = ()) -> Callable:
    """Decorator: the function's ``**kwargs`` go to ``target`` (a dotted path, resolved lazily so that no import
    cycle is needed), minus the names in ``exclude`` (those the function passes itself).

    >>> @forwards_kwargs("builtins.print", exclude=("file",))
    ... def outer(x, **kwargs): ...
    >>> names, open_ended = accepted_keywords(outer)
    >>> names[:2], "file" in names, "sep" in names, open_ended
    (['x', 'sep'], False, True, False)
    """
    def mark(func: Callable) -> Callable:
        setattr(func, _FORWARDS, (target, tuple(exclude)))
        return func
    return mark


def _resolve(dotted: str) -> Any:
    module_name, _, rest = dotted.partition(".")
    obj = importlib.import_module(module_name)
    path = module_name
    for part in rest.split(".") if rest else []:
        try:
            obj = getattr(obj, part)
        except AttributeError:
            path = f"{path}.{part}"
            obj = importlib.import_module(path)
        else:
            path = f"{path}.{part}"
    return obj


def accepted_keywords(func: Callable, _seen: Optional[set] = None) -> Tuple[List[str], bool]:
    """``(names, open_ended)``: the keyword names ``func`` accepts (for a class: its constructor), in signature
    order, and whether it takes any name at all (``**kwargs`` going nowhere we know of).

    >>> accepted_keywords(lambda a, *, b=0, **kw: None)
    (['a', 'b'], True)
    """
    seen = set() if _seen is None else _seen
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return [], True  # a builtin without a signature: let the call decide
    names, open_ended = [], False
    for name, param in signature.parameters.items():
        if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY) and name not in ("self", "cls"):
            names.append(name)
        elif param.kind is param.VAR_KEYWORD:
            open_ended = True
    forwarded = getattr(func, _FORWARDS, None)
    if forwarded is None and inspect.isclass(func):
        forwarded = getattr(func.__init__, _FORWARDS, None)
    if open_ended and forwarded is not None and forwarded[0] not in seen:
        seen.add(forwarded[0])
        more, open_ended = accepted_keywords(_resolve(forwarded[0]), seen)
        names += [n for n in more if n not in names and n not in forwarded[1]]
    return names, open_ended


def closest(name: str, candidates: Iterable[str]) -> Optional[str]:
    """The candidate most like ``name`` (a likely typo), or ``None`` when none is close.

    >>> closest("num_epoch", ["lr", "num_epochs", "verbose"])
    'num_epochs'
    >>> closest("colour", ["lr", "verbose"]) is None
    True
    """
    matches = difflib.get_close_matches(str(name), list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_argument_message(name: str, accepted: List[str]) -> str:
    """``"no argument 'x' (did you mean 'y'?)"``, or the accepted names when none is close.

    >>> unknown_argument_message("num_epoch", ["num_epochs", "lr"])
    "no argument 'num_epoch' (did you mean 'num_epochs'?)"
    >>> unknown_argument_message("colour", ["lr"])
    "no argument 'colour' (it accepts: lr)"
    """
    suggestion = closest(name, accepted)
    if suggestion is not None:
        return f"no argument {name!r} (did you mean {suggestion!r}?)"
    return f"no argument {name!r} (it accepts: {', '.join(accepted) or 'none'})"
