"""Test helpers shared by the test suite and the benchmarks (no test framework needed).

`OpenAIServer` (and friends) live in `asclepius.testing.openai_server`; they are also
reachable from here, loaded on first use so `python -m asclepius.testing.openai_server`
does not import the module twice.
"""

_EXPORTS = ("BillingLog", "OpenAIServer", "default_responder", "messages_hash", "serve_in_subprocess")
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        from asclepius.testing import openai_server

        return getattr(openai_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
