"""The asyncio client: the same calls, awaited."""

import asyncio

from plum_sdk import AsyncClient, Instance


async def main() -> None:
    async with AsyncClient.from_env() as plum:
        await plum.kv.put("app", "color", "red")
        print((await plum.discover("web")).endpoints)
        registrar = plum.registrar(ttl=5.0)
        await registrar.register(Instance("web-2", "web", 8081))
        async for change in plum.kv.watch("app", from_index=0):
            print(change.index)
            break


asyncio.run(main())
