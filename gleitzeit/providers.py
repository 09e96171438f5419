"""Writing your own provider: the public face of the provider registry.

A provider serves methods. Subclass :class:`BaseProvider`, declare its
methods as :class:`MethodSpec`\\ s, implement ``execute``, and pass it to the
client::

    from gleitzeit import GleitzeitClient
    from gleitzeit.providers import BaseProvider, Call, MethodSpec

    class Upper(BaseProvider):
        provider_id = "text"
        specs = (MethodSpec("text/upper", {"text": (str,)}, any_of=(("text",),)),)

        async def execute(self, call: Call) -> dict:
            return {"result": call.params["text"].upper()}

    async with GleitzeitClient(providers=[Upper()]) as client:
        await client.run_workflow(...)  # tasks may now use method: text/upper

Workflows are then validated against these specs like any built-in method.
"""

from __future__ import annotations

from ._providers import BaseProvider, Call, Provider, ProviderRegistry
from .core._methods import CheckHook, MethodSpec, MethodTable

__all__ = [
    "BaseProvider",
    "Call",
    "CheckHook",
    "MethodSpec",
    "MethodTable",
    "Provider",
    "ProviderRegistry",
]

for _cls in (BaseProvider, Call, Provider, ProviderRegistry, MethodSpec, MethodTable):
    _cls.__module__ = __name__
