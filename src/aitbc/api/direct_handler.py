"""A route's request handler without FastAPI's general dependency solver, for the routes whose dependencies
are all plain: each one an `async def` that takes the request alone (the caller's API key scheme, the
coordinator).

FastAPI resolves dependencies as a tree on every request: per node a recursive call, a cache key, a parse of
the cookies and four passes over parameter lists, most of them empty. For a status GET that was a quarter of
the event loop's time. Here the plan is made once per route: the dependencies are awaited in order, then the
path, query, header and body parameters are validated by FastAPI's own functions (the same checks and the
same 422 errors), then the endpoint runs and its value is serialized by FastAPI's own `serialize_response`.
A route with anything else (cookies, background tasks, security scopes, generator dependencies, dependency
overrides, streaming endpoints) keeps FastAPI's handler: `direct_handler` answers None for it.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi._compat import Undefined
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_body_to_args, request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.params import Form
from fastapi.routing import APIRoute, serialize_response
from fastapi.utils import is_body_allowed_for_status_code

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def _plain(dependency: Dependant) -> bool:
    """An `async def` dependency whose one parameter is the request."""
    call = dependency.call
    coroutine = inspect.iscoroutinefunction(call) or (
        not inspect.isroutine(call) and inspect.iscoroutinefunction(type(call).__call__)
    )
    return (
        call is not None
        and coroutine
        and dependency.request_param_name is not None
        and not dependency.dependencies
        and not (dependency.path_params or dependency.query_params or dependency.header_params)
        and not (dependency.cookie_params or dependency.body_params)
        and not (dependency.response_param_name or dependency.background_tasks_param_name)
        and not (dependency.security_scopes_param_name or dependency.http_connection_param_name)
        and not dependency.websocket_param_name
    )


def _eligible(route: APIRoute) -> bool:
    dependant = route.dependant
    call = dependant.call
    return (
        inspect.iscoroutinefunction(call)
        and not inspect.isasyncgenfunction(call)
        and not route.stream_item_field
        and not route.is_json_stream
        and getattr(route.strict_content_type, "value", route.strict_content_type) is True
        and all(_plain(each) for each in dependant.dependencies)
        and len({id(each.call) for each in dependant.dependencies}) == len(dependant.dependencies)
        and not dependant.cookie_params
        and not dependant.background_tasks_param_name
        and not dependant.security_scopes_param_name
        and not dependant.http_connection_param_name
        and not dependant.websocket_param_name
        and not (route.body_field is not None and isinstance(route.body_field.field_info, Form))
        and not getattr(route.dependency_overrides_provider, "dependency_overrides", None)
    )


def is_json(request: Request) -> bool:
    """A JSON body, as FastAPI tells one: `application/json` or any `application/…+json`."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def direct_handler(route: APIRoute) -> Handler | None:
    """The route's handler without the dependency solver, or None where FastAPI's own is needed."""
    if not _eligible(route):
        return None
    dependant = route.dependant
    endpoint: Callable[..., Awaitable[Any]] = dependant.call  # type: ignore[assignment]
    dependencies: list[tuple[str | None, Callable[..., Awaitable[Any]], str]] = [
        (each.name, each.call, str(each.request_param_name))  # type: ignore[misc]
        for each in dependant.dependencies
    ]
    sources: list[tuple[Any, Callable[[Request], Any]]] = [
        (dependant.path_params, lambda request: request.path_params),
        (dependant.query_params, lambda request: request.query_params),
        (dependant.header_params, lambda request: request.headers),
    ]
    parameters = [(fields, source) for fields, source in sources if fields]
    body_fields = dependant.body_params
    embed_body_fields = route._embed_body_fields
    request_name = dependant.request_param_name
    response_name = dependant.response_param_name
    response_field = route.response_field
    dump_json = response_field is not None and isinstance(route.response_class, DefaultPlaceholder)
    response_class: type[Response] = (
        route.response_class.value if isinstance(route.response_class, DefaultPlaceholder) else route.response_class
    )
    status_code = route.status_code

    async def handle(request: Request) -> Response:
        # FastAPI's order: the body read (and decoded) first, then the dependencies, then the parameters.
        body: Any = Undefined
        if body_fields:
            raw = await request.body()
            if raw:
                body = await request.json() if is_json(request) else raw
        values: dict[str, Any] = {}
        for name, call, parameter in dependencies:
            solved = await call(**{parameter: request})
            if name is not None:
                values[name] = solved
        errors: list[Any] = []
        for fields, source in parameters:
            found, wrong = request_params_to_args(fields, source(request))
            values.update(found)
            errors += wrong
        if body_fields:
            found, wrong = await request_body_to_args(
                body_fields=body_fields, received_body=body, embed_body_fields=embed_body_fields
            )
            values.update(found)
            errors += wrong
        if errors:
            raise RequestValidationError(errors, body=None if body is Undefined else body)
        if request_name:
            values[request_name] = request
        sub_response: Response | None = None
        if response_name:
            sub_response = Response()
            del sub_response.headers["content-length"]
            sub_response.status_code = None  # type: ignore[assignment]
            values[response_name] = sub_response
        answer = await endpoint(**values)
        if isinstance(answer, Response):
            return answer
        content = await serialize_response(
            field=response_field,
            response_content=answer,
            include=route.response_model_include,
            exclude=route.response_model_exclude,
            by_alias=route.response_model_by_alias,
            exclude_unset=route.response_model_exclude_unset,
            exclude_defaults=route.response_model_exclude_defaults,
            exclude_none=route.response_model_exclude_none,
            is_coroutine=True,
            dump_json=dump_json,
        )
        code = sub_response.status_code if sub_response is not None and sub_response.status_code else status_code
        arguments: dict[str, Any] = {} if code is None else {"status_code": code}
        if dump_json:
            response = Response(content=content, media_type="application/json", **arguments)
        else:
            response = response_class(content, **arguments)
        if not is_body_allowed_for_status_code(response.status_code):
            response.body = b""
        if sub_response is not None:
            response.headers.raw.extend(sub_response.headers.raw)
        return response

    return handle
