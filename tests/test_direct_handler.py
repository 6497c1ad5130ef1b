"""The direct handler answers exactly as FastAPI's own would: the same app built twice, once with FastAPI's route
class and once with ours, asked the same requests (valid, invalid, unauthenticated, replayed), must give the
same status, headers and body. A FastAPI upgrade that changes what its handler does fails here."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Cookie, Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field

from aitbc.api.checked_route import CheckedRoute
from aitbc.api.direct_handler import direct_handler
from aitbc.api.errors import install_error_handlers
from aitbc.domain.errors import Unauthorized


class Item(BaseModel):
    name: str = Field(min_length=1, max_length=10)
    size: int = Field(default=1, ge=1, le=100)
    tags: list[str] = []


class ItemView(BaseModel):
    name: str
    size: int
    replayed: bool = False
    owner: str


class Caller(APIKeyHeader):
    def __init__(self) -> None:
        super().__init__(name="X-Api-Key", auto_error=False)

    async def __call__(self, request: Request) -> str:  # type: ignore[override]
        key = request.headers.get("X-Api-Key")
        if key != "good":
            raise Unauthorized("invalid API key")
        return "alice"


async def store(request: Request) -> dict[str, ItemView]:
    found: dict[str, ItemView] = request.app.state.items
    return found


CallerDep = Annotated[str, Depends(Caller())]
StoreDep = Annotated[dict[str, ItemView], Depends(store)]


def build(route_class: type[APIRoute]) -> FastAPI:
    app = FastAPI()
    app.state.items = {}
    router = APIRouter(route_class=route_class, prefix="/v1")

    @router.post("/items", status_code=201, response_model=ItemView)
    async def create(
        body: Item,
        owner: CallerDep,
        items: StoreDep,
        response: Response,
        key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=20)] = None,
    ) -> ItemView:
        if key is not None and key in items:
            response.status_code = 200
            response.headers["Idempotent-Replayed"] = "true"
            return items[key].model_copy(update={"replayed": True})
        view = ItemView(name=body.name, size=body.size, owner=owner)
        items[key or body.name] = view
        return view

    @router.get("/items/{name}", response_model=ItemView)
    async def read(name: str, owner: CallerDep, items: StoreDep) -> ItemView:
        if name not in items:
            return ItemView(name=name, size=0, owner=owner)
        return items[name]

    @router.get("/items")
    async def listing(
        owner: CallerDep,
        items: StoreDep,
        limit: Annotated[int, Query(ge=1, le=5)] = 2,
        tag: Annotated[list[str], Query()] = [],  # noqa: B006
    ) -> dict[str, Any]:
        names = sorted(items)[:limit]
        return {"owner": owner, "names": names, "tags": tag}

    @router.delete("/items/{name}", status_code=204)
    async def remove(name: str, _owner: CallerDep, items: StoreDep) -> None:
        items.pop(name, None)

    @router.post("/raw/{name}")
    async def raw(name: str, request: Request, _owner: CallerDep) -> JSONResponse:
        return JSONResponse({"name": name, "bytes": len(await request.body())}, status_code=202)

    app.router.routes.extend(router.routes)
    install_error_handlers(app)
    return app


GOOD = {"X-Api-Key": "good"}
REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/items", {"json": {"name": "a"}, "headers": GOOD}),
    ("POST", "/v1/items", {"json": {"name": "b", "size": 5}, "headers": {**GOOD, "Idempotency-Key": "k1"}}),
    ("POST", "/v1/items", {"json": {"name": "b", "size": 5}, "headers": {**GOOD, "Idempotency-Key": "k1"}}),
    ("POST", "/v1/items", {"json": {"name": "c"}, "headers": {**GOOD, "Idempotency-Key": ""}}),
    ("POST", "/v1/items", {"json": {"name": "c"}, "headers": {**GOOD, "Idempotency-Key": "x" * 21}}),
    ("POST", "/v1/items", {"json": {"name": ""}, "headers": GOOD}),
    ("POST", "/v1/items", {"json": {"name": "d", "size": 0, "tags": "x"}, "headers": GOOD}),
    ("POST", "/v1/items", {"json": ["not", "an", "object"], "headers": GOOD}),
    ("POST", "/v1/items", {"headers": GOOD}),
    ("POST", "/v1/items", {"content": b"name=e", "headers": {**GOOD, "Content-Type": "text/plain"}}),
    ("POST", "/v1/items", {"content": b'{"name": "f"}', "headers": GOOD}),
    ("POST", "/v1/items", {"content": b'{"name": "g"}', "headers": {**GOOD, "Content-Type": "application/x+json"}}),
    ("POST", "/v1/items", {"json": {"name": ""}}),
    ("POST", "/v1/items", {"content": b'{"name": ', "headers": {"Content-Type": "application/json"}}),
    ("POST", "/v1/items", {"content": b'{"name": ', "headers": {**GOOD, "Content-Type": "application/json"}}),
    ("POST", "/v1/items", {"json": {"name": "h"}, "headers": {"X-Api-Key": "bad"}}),
    ("GET", "/v1/items/a", {"headers": GOOD}),
    ("GET", "/v1/items/zz", {"headers": GOOD}),
    ("GET", "/v1/items/a", {}),
    ("GET", "/v1/items", {"headers": GOOD}),
    ("GET", "/v1/items", {"params": {"limit": 5, "tag": ["x", "y"]}, "headers": GOOD}),
    ("GET", "/v1/items", {"params": {"limit": 9}, "headers": GOOD}),
    ("GET", "/v1/items", {"params": {"limit": "many"}, "headers": GOOD}),
    ("DELETE", "/v1/items/a", {"headers": GOOD}),
    ("POST", "/v1/raw/z", {"content": b"12345", "headers": GOOD}),
]


def test_every_route_of_the_coordinator_takes_the_direct_handler(tmp_path: Any) -> None:
    """Not a silent fallback: a route that would lose the direct handler is named here."""
    from aitbc.api.app import create_app
    from aitbc.settings import Settings

    app = create_app(Settings(data_dir=tmp_path))
    routes = [route for route in app.routes if isinstance(route, APIRoute)]
    assert routes
    assert [f"{route.methods} {route.path}" for route in routes if direct_handler(route) is None] == []


def session() -> str:
    return "plain def: FastAPI runs it in its thread pool"


def test_a_route_with_what_the_direct_handler_does_not_do_keeps_fastapis() -> None:
    router = APIRouter(route_class=CheckedRoute)

    @router.get("/cookie")
    async def with_cookie(token: Annotated[str | None, Cookie()] = None) -> dict[str, str]:
        return {}

    @router.get("/sync")
    async def with_sync_dependency(value: Annotated[str, Depends(session)]) -> dict[str, str]:
        return {}

    for route in router.routes:
        assert isinstance(route, APIRoute)
        assert direct_handler(route) is None, route.path


class FastApiHandlerRoute(CheckedRoute):
    """Our route class (its checks, its JSON decoding) with FastAPI's own handler: the reference."""

    direct = False


async def test_the_direct_handler_answers_as_fastapis_own() -> None:
    fastapi_app, direct_app = build(FastApiHandlerRoute), build(CheckedRoute)
    assert all(direct_handler(route) is not None for route in direct_app.routes if isinstance(route, APIRoute)), (
        "the test app's routes must all take the direct handler"
    )
    transports = [httpx.ASGITransport(app=app) for app in (fastapi_app, direct_app)]
    async with (
        httpx.AsyncClient(transport=transports[0], base_url="http://test") as reference,
        httpx.AsyncClient(transport=transports[1], base_url="http://test") as direct,
    ):
        statuses = set()
        for method, path, options in REQUESTS:
            expected = await reference.request(method, path, **options)
            found = await direct.request(method, path, **options)
            where = f"{method} {path} {options}"
            assert found.status_code == expected.status_code, where
            assert found.content == expected.content, where
            assert sorted(found.headers.items()) == sorted(expected.headers.items()), where
            statuses.add(found.status_code)
    assert statuses == {200, 201, 202, 204, 401, 422}
